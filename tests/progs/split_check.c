/* split_check.c: sub-communicators and grouped calls in real processes, for
 * tests/t_coll_mpi.sh (under mpirun: the Open MPI backend, MPI_Comm_split/_dup/_create_group)
 * and usable under `baton run` too (the native path).
 *
 * Each rank: splits the world by parity with key -rank (reversed order) and checks the
 * child's size and rank, an allgather of world ranks (the order) and an allreduce; dups the
 * world; rank 0 passes color -1 in a second split and must get NULL; the members {0, n-1}
 * make a group with bt_comm_create_group; a nonblocking allreduce on the world and one on the
 * parity child are outstanding at once, issued in opposite orders on even and odd ranks; a
 * group of three small allreduces on the dup (fused); alltoall, allgatherv (uneven counts),
 * gather and scatter on the world and the parity child; point-to-point on both (a ring shift
 * of 100,003 floats with isend/irecv, a message to oneself, a blocking send and receive in a
 * group: MPI_Isend/MPI_Irecv under mpirun); every child destroyed, then the world
 * still works. Prints "rank R split ok" or "rank R: WHAT: DETAIL" and exits 3.
 *
 * --shm-names (under `baton run` over shared memory, one node): once every child has been
 * used, before any is destroyed, rank 0 finds no /dev/shm/baton-<BATON_LAUNCHER_PID>-* name
 * left: the last rank to map a segment (the world's, each child's) removed its name.
 *
 * --mpi-bad (under mpirun, 2 ranks or more: the Open MPI backend's point-to-point limits), each
 * on a dup of its own (the errors are sticky): rank 0's send of INT_MAX + 1 bytes and its send
 * with tag INT_MAX (over MPI_TAG_UB unless that is INT_MAX: then it is received, and said) are
 * BT_ERR_INVALID_ARG; rank 1's receive of 4 int32 for rank 0's 8 is BT_ERR_INVALID_USAGE
 * (MPI_ERR_TRUNCATE) while the send succeeds. Prints "rank R mpi-bad ok".
 *
 * --listen-fail R (under `baton run` with BATON_TRANSPORT=tcp): rank R leaves itself no free
 * descriptor (RLIMIT_NOFILE at its lowest free one) while the world is dup'ed, so it cannot
 * open the child's listening socket; every rank's bt_comm_dup must fail, and each prints
 * "rank R listen-fail: CODE: MESSAGE" (a dup that succeeds is a failure, exit 3).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "baton.h"

static int rank_, size_;

static int fail(bt_comm *c, const char *what, int rc)
{
    printf("rank %d: %s: %s: %s\n", rank_, what, bt_strerror(rc), bt_last_error(c));
    return 3;
}

static int bad_(const char *what)
{
    printf("rank %d: %s: wrong result\n", rank_, what);
    return 3;
}

static int bad(const char *what, long got, long want)
{
    printf("rank %d: %s: got %ld, want %ld\n", rank_, what, got, want);
    return 3;
}

/* The parity child: size, rank (key -rank: reversed), order of world ranks, a sum. */
static int check_parity(bt_comm *w, bt_comm *par)
{
    int cr = -1, cs = -1, rc, n = size_, want_size = (n - rank_ % 2 + 1) / 2;
    bt_comm_rank(par, &cr);
    bt_comm_size(par, &cs);
    if (cs != want_size)
        return bad("parity child size", cs, want_size);
    int32_t me = rank_, *all = calloc((size_t)cs, 4), sum = 0, v = rank_;
    if ((rc = bt_allgather(par, &me, all, 1, BT_INT32)) != BT_OK)
        return fail(par, "allgather on the parity child", rc);
    int mine = -1;
    for (int i = 0; i < cs; i++) { /* highest world rank first */
        int want = (n - 1) - i * 2 - ((n - 1) % 2 != rank_ % 2);
        if (all[i] != want)
            return bad("parity child order", all[i], want);
        sum += all[i];
        mine = all[i] == rank_ ? i : mine;
    }
    free(all);
    if (cr != mine)
        return bad("parity child rank", cr, mine);
    bt_request *rq[2] = {0};
    int32_t wv = 1;
    if (rank_ % 2) { /* opposite issue orders across the two communicators */
        rc = bt_iallreduce(par, &v, &v, 1, BT_INT32, BT_SUM, &rq[0]);
        rc = rc ? rc : bt_iallreduce(w, &wv, &wv, 1, BT_INT32, BT_SUM, &rq[1]);
    } else {
        rc = bt_iallreduce(w, &wv, &wv, 1, BT_INT32, BT_SUM, &rq[1]);
        rc = rc ? rc : bt_iallreduce(par, &v, &v, 1, BT_INT32, BT_SUM, &rq[0]);
    }
    rc = rc ? rc : bt_waitall(2, rq);
    bt_request_free(rq[0]), bt_request_free(rq[1]);
    if (rc != BT_OK)
        return fail(par, "iallreduce on the world and the child at once", rc);
    if (v != sum)
        return bad("allreduce on the parity child", v, sum);
    if (wv != n)
        return bad("allreduce on the world beside the child", wv, n);
    return 0;
}

/* Three allreduces in one group on c (they fuse into one transfer). */
static int check_group(bt_comm *c)
{
    float a[3] = {1, 2, 3}, b[1] = {(float)rank_}, d[5] = {1, 1, 1, 1, 1};
    int rc = bt_group_start();
    rc = rc ? rc : bt_allreduce(c, a, a, 3, BT_FLOAT32, BT_SUM);
    rc = rc ? rc : bt_allreduce(c, b, b, 1, BT_FLOAT32, BT_SUM);
    rc = rc ? rc : bt_allreduce(c, d, d, 5, BT_FLOAT32, BT_SUM);
    int end = bt_group_end();
    if (rc != BT_OK || end != BT_OK)
        return fail(c, "grouped allreduces", rc ? rc : end);
    float n = (float)size_;
    if (a[2] != 3 * n || b[0] != n * (n - 1) / 2 || d[4] != n)
        return bad("grouped allreduces (a[2], b, d[4])", (long)(a[2] + b[0] + d[4]),
                   (long)(3 * n + n * (n - 1) / 2 + n));
    return 0;
}

/* An alltoall of BIG elements per block (over shm the CMA path with BATON_SHM_CMA_BYTES=64K,
 * as t_coll sets it), every element checked. */
#define BIG 20011
static int check_big_alltoall(bt_comm *c, int r, int n)
{
    int32_t *s = malloc((size_t)n * BIG * 4), *d = malloc((size_t)n * BIG * 4);
    int rc = s && d ? BT_OK : BT_ERR_SYSTEM, bad = 0;
    for (size_t i = 0; rc == BT_OK && i < (size_t)n * BIG; i++)
        s[i] = (int32_t)((size_t)r * 7919 + i); /* block p, element j: r * 7919 + p * BIG + j */
    if (rc == BT_OK)
        rc = bt_alltoall(c, s, d, BIG, BT_INT32);
    for (int p = 0; rc == BT_OK && p < n; p++)
        for (size_t j = 0; j < BIG; j++)
            bad |= d[(size_t)p * BIG + j] != (int32_t)((size_t)p * 7919 + (size_t)r * BIG + j);
    free(s), free(d);
    return rc != BT_OK ? rc : bad ? -1 : 0;
}

/* alltoall (one element, and BIG), allgatherv (rank r contributes r + 1 elements), gather and
 * scatter (root: the last rank) on c, every element checked. */
static int check_exchange(bt_comm *c, const char *what)
{
    int r = -1, n = 0, rc, bad = 0;
    bt_comm_rank(c, &r), bt_comm_size(c, &n);
    int32_t *s = calloc((size_t)n * (size_t)n + 8, 4), *d = calloc((size_t)n * (size_t)n + 8, 4);
    size_t *cnt = calloc((size_t)n, sizeof(size_t)), *dsp = calloc((size_t)n, sizeof(size_t));
    for (int p = 0; p < n; p++)
        s[p] = r * 100 + p, cnt[p] = (size_t)p + 1, dsp[p] = p ? dsp[p - 1] + cnt[p - 1] : 0;
    if ((rc = bt_alltoall(c, s, d, 1, BT_INT32)) != BT_OK)
        return fail(c, what, rc);
    for (int p = 0; p < n; p++)
        bad |= d[p] != p * 100 + r;
    if ((rc = check_big_alltoall(c, r, n)) > 0)
        return fail(c, what, rc);
    bad |= rc;
    for (int i = 0; i <= r; i++)
        s[i] = r * 10 + i;
    if ((rc = bt_allgatherv(c, s, (size_t)r + 1, d, cnt, dsp, BT_INT32)) != BT_OK)
        return fail(c, what, rc);
    for (int p = 0; p < n; p++)
        for (int i = 0; i <= p; i++)
            bad |= d[dsp[p] + (size_t)i] != p * 10 + i;
    int32_t one = r * 3, got = -1;
    if ((rc = bt_gather(c, &one, d, 1, BT_INT32, n - 1)) != BT_OK)
        return fail(c, what, rc);
    for (int p = 0; p < n && r == n - 1; p++)
        bad |= d[p] != p * 3;
    for (int p = 0; p < n; p++)
        s[p] = p * 5 + 1;
    if ((rc = bt_scatter(c, s, &got, 1, BT_INT32, n - 1)) != BT_OK)
        return fail(c, what, rc);
    bad |= got != r * 5 + 1;
    free(s), free(d), free(cnt), free(dsp);
    return bad ? bad_(what) : 0;
}

/* Point-to-point on c: a shift around the ring of SHIFT floats (isend/irecv, beyond any
 * stream's buffering), a message to oneself, and a blocking send then receive around the
 * ring inside a group, every element checked. */
#define SHIFT 100003
static int check_p2p(bt_comm *c, const char *what)
{
    int r = -1, n = 0, rc, bad = 0;
    bt_comm_rank(c, &r), bt_comm_size(c, &n);
    float *s = malloc(SHIFT * sizeof(float)), *d = malloc(SHIFT * sizeof(float));
    if (!s || !d)
        return fail(c, what, BT_ERR_SYSTEM);
    for (size_t i = 0; i < SHIFT; i++)
        s[i] = (float)(r * 7 + (int)(i % 1000)), d[i] = -1;
    int to = (r + 1) % n, from = (r + n - 1) % n;
    int32_t me = r * 3, self = -1, in[2] = {-1, -1}, out[2] = {r, r * 2};
    bt_request *q[4];
    if ((rc = bt_irecv(c, d, SHIFT, BT_FLOAT32, from, 5, &q[0])) != BT_OK ||
        (rc = bt_isend(c, s, SHIFT, BT_FLOAT32, to, 5, &q[1])) != BT_OK ||
        (rc = bt_isend(c, &me, 1, BT_INT32, r, 6, &q[2])) != BT_OK ||
        (rc = bt_irecv(c, &self, 1, BT_INT32, r, 6, &q[3])) != BT_OK ||
        (rc = bt_waitall(4, q)) != BT_OK)
        return fail(c, what, rc);
    for (int i = 0; i < 4; i++)
        bt_request_free(q[i]);
    for (size_t i = 0; i < SHIFT; i++)
        bad |= d[i] != (float)(from * 7 + (int)(i % 1000));
    bad |= self != r * 3;
    bt_group_start(); /* blocking calls, the same on every rank, so that call numbers agree */
    bt_send(c, out, 2, BT_INT32, to, 9), bt_recv(c, in, 2, BT_INT32, from, 9);
    if ((rc = bt_group_end()) != BT_OK)
        return fail(c, what, rc);
    bad |= in[0] != from || in[1] != from * 2;
    free(s), free(d);
    return bad ? bad_(what) : 0;
}

/* Rank 0: the /dev/shm names of this job's segments (baton-<launcher pid>-*), each printed;
 * 3 when there is one. */
static int check_shm_names(void)
{
    char pre[64];
    int left = 0;
    snprintf(pre, sizeof(pre), "baton-%s-",
             getenv("BATON_LAUNCHER_PID") ? getenv("BATON_LAUNCHER_PID") : "?");
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, pre, strlen(pre)))
            printf("rank %d: shm name left: /dev/shm/%s\n", rank_, e->d_name), left++;
    if (d)
        closedir(d);
    return d ? (left ? 3 : 0) : bad_("opendir /dev/shm");
}

/* rc must be want and c's error must name what: else a line and 3. */
static int expect(bt_comm *c, const char *call, int rc, int want, const char *what)
{
    if (rc == want && strstr(bt_last_error(c), what))
        return 0;
    printf("rank %d: %s: %s (%s), want %s naming %s\n", rank_, call, bt_strerror(rc),
           bt_last_error(c), bt_strerror(want), what);
    return 3;
}

static int check_mpi_bad(bt_comm *w)
{
    bt_comm *d[3] = {NULL, NULL, NULL};
    int rc, e = 0;
    int32_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, accepted = 0;
    for (int i = 0; i < 3; i++)
        if ((rc = bt_comm_dup(w, &d[i])) != BT_OK)
            return fail(w, "bt_comm_dup", rc);
    if (rank_ == 0) {
        size_t big = (size_t)INT_MAX + 1;
        char *b = malloc(big); /* never touched: refused before MPI sees it */
        rc = b ? bt_send(d[0], b, big, BT_UINT8, 1, 1) : BT_ERR_SYSTEM;
        free(b);
        e |= expect(d[0], "a send of INT_MAX + 1 bytes", rc, BT_ERR_INVALID_ARG, "MPI_TAG_UB");
        rc = bt_send(d[1], v, 1, BT_INT32, 1, INT_MAX);
        accepted = rc == BT_OK;
        if (accepted)
            printf("rank 0: tag INT_MAX accepted: MPI_TAG_UB is INT_MAX here\n");
        else
            e |= expect(d[1], "a send with tag INT_MAX", rc, BT_ERR_INVALID_ARG, "MPI_TAG_UB");
        if ((rc = bt_send(w, &accepted, 1, BT_INT32, 1, 7)) != BT_OK)
            return fail(w, "telling rank 1", rc);
        if ((rc = bt_send(d[2], v, 8, BT_INT32, 1, 3)) != BT_OK)
            return fail(d[2], "a send of 8 int32 to a receive of 4", rc);
    } else if (rank_ == 1) {
        if ((rc = bt_recv(w, &accepted, 1, BT_INT32, 0, 7)) != BT_OK)
            return fail(w, "hearing from rank 0", rc);
        if (accepted && (rc = bt_recv(d[1], v, 1, BT_INT32, 0, INT_MAX)) != BT_OK)
            return fail(d[1], "the receive with tag INT_MAX", rc);
        rc = bt_recv(d[2], v, 4, BT_INT32, 0, 3);
        e |= expect(d[2], "a receive of 4 int32 for 8", rc, BT_ERR_INVALID_USAGE,
                    "MPI_ERR_TRUNCATE");
    }
    for (int i = 0; i < 3; i++)
        bt_comm_destroy(d[i]);
    return e;
}

static int run(bt_comm *w, int shm_names)
{
    bt_comm *par = NULL, *dup = NULL, *none = NULL, *grp = NULL;
    int rc, e;
    if ((rc = bt_comm_split(w, rank_ % 2, -rank_, &par)) != BT_OK)
        return fail(w, "bt_comm_split", rc);
    if ((e = check_parity(w, par)))
        return e;
    if ((e = check_exchange(w, "exchange collectives on the world")) ||
        (e = check_exchange(par, "exchange collectives on the parity child")) ||
        (e = check_p2p(w, "point-to-point on the world")) ||
        (e = check_p2p(par, "point-to-point on the parity child")))
        return e;
    if ((rc = bt_comm_dup(w, &dup)) != BT_OK)
        return fail(w, "bt_comm_dup", rc);
    int dr = -1, ds = -1;
    bt_comm_rank(dup, &dr), bt_comm_size(dup, &ds);
    if (dr != rank_ || ds != size_)
        return bad("dup rank*size", dr * 1000L + ds, rank_ * 1000L + size_);
    if ((e = check_group(dup)))
        return e;
    if ((rc = bt_comm_split(w, rank_ == 0 ? BT_UNDEFINED : 1, 0, &none)) != BT_OK)
        return fail(w, "bt_comm_split with color -1", rc);
    if ((rank_ == 0) != (none == NULL))
        return bad("child of color -1 is NULL", none == NULL, rank_ == 0);
    int ranks[2] = {0, size_ - 1};
    if (size_ > 1 && (rank_ == 0 || rank_ == size_ - 1)) {
        if ((rc = bt_comm_create_group(w, 2, ranks, 42, &grp)) != BT_OK)
            return fail(w, "bt_comm_create_group", rc);
        int32_t v = rank_;
        if ((rc = bt_allreduce(grp, &v, &v, 1, BT_INT32, BT_MAX)) != BT_OK)
            return fail(grp, "allreduce on the group", rc);
        if (v != size_ - 1)
            return bad("allreduce on the group", v, size_ - 1);
    }
    if (shm_names) { /* every child used on every rank: each was mapped by all its members */
        if ((rc = bt_barrier(w)) != BT_OK)
            return fail(w, "barrier before looking at /dev/shm", rc);
        if (rank_ == 0 && (e = check_shm_names()))
            return e;
    }
    bt_comm_destroy(grp), bt_comm_destroy(none), bt_comm_destroy(par);
    if ((rc = bt_comm_destroy(dup)) != BT_OK)
        return fail(NULL, "destroying the dup", rc);
    int32_t v = 1;
    if ((rc = bt_allreduce(w, &v, &v, 1, BT_INT32, BT_SUM)) != BT_OK || v != size_)
        return rc ? fail(w, "world after the children", rc) : bad("world sum", v, size_);
    return 0;
}

static int check_listen_fail(bt_comm *w, int who)
{
    struct rlimit old, low;
    if (getrlimit(RLIMIT_NOFILE, &old) != 0)
        return bad_("getrlimit");
    if (rank_ == who) {
        int fd = open("/dev/null", O_RDONLY); /* the lowest free descriptor */
        if (fd < 0)
            return bad_("open /dev/null");
        close(fd);
        low = old;
        low.rlim_cur = (rlim_t)fd;
        if (setrlimit(RLIMIT_NOFILE, &low) != 0)
            return bad_("setrlimit");
    }
    bt_comm *d = NULL;
    int rc = bt_comm_dup(w, &d);
    if (rank_ == who)
        setrlimit(RLIMIT_NOFILE, &old);
    if (rc == BT_OK) {
        bt_comm_destroy(d);
        return bad_("--listen-fail: the dup succeeded");
    }
    printf("rank %d listen-fail: %s: %s\n", rank_, bt_strerror(rc), bt_last_error(w));
    return 0;
}

int main(int argc, char **argv)
{
    bt_comm *w = NULL;
    int rc = bt_init(&w);
    if (rc != BT_OK) {
        printf("bt_init failed: %s\n", bt_last_error(NULL));
        return 3;
    }
    bt_comm_rank(w, &rank_);
    bt_comm_size(w, &size_);
    if (argc > 1 && !strcmp(argv[1], "--mpi-bad")) {
        int e = size_ > 1 ? check_mpi_bad(w) : bad_("--mpi-bad on one rank");
        if (e == 0)
            printf("rank %d mpi-bad ok\n", rank_);
        fflush(stdout);
        rc = bt_finalize(w);
        return e ? e : rc == BT_OK ? 0 : 3;
    }
    if (argc > 2 && !strcmp(argv[1], "--listen-fail")) {
        int e = check_listen_fail(w, atoi(argv[2]));
        fflush(stdout);
        bt_finalize(w); /* w failed with the dup: its error is the one printed */
        return e;
    }
    int e = run(w, argc > 1 && !strcmp(argv[1], "--shm-names"));
    if (e == 0)
        printf("rank %d split ok\n", rank_);
    fflush(stdout);
    rc = bt_finalize(w);
    return e ? e : rc == BT_OK ? 0 : 3;
}
