/* test_p2p.c: point-to-point and the exchange collectives, ranks as threads, against naive
 * references.
 *
 * Worlds 1..8 over shm, 2, 3, 5, 7 over tcp, hierarchical 2x2 and 3x2 (messages over shm
 * inside a "node" and TCP across), and the odd/even halves of each world (a sub-communicator).
 * Per world: a ring shift of 100,003 floats with isend/irecv (far more than a shm ring holds),
 * a blocking exchange between pairs (even ranks send first), a message to oneself; alltoall
 * over every dtype with counts 0, 1, 7, 1000, 20011 (over shm: the slots, in many rounds with
 * the tests' 512-byte slots, and CMA from 2000-byte blocks up); alltoallv and allgatherv with
 * counts that differ per pair (0 included); gather and scatter from every root. Every element is
 * checked. Bad input: a receive expecting another tag, a peer out of range, alltoall counts that
 * differ between ranks (shm and TCP). CMA reads that fail (BATON_TEST_CMA_FAIL): the shm alltoall
 * falls back to the slots with the same results. TCP_USER_TIMEOUT: BATON_TIMEOUT on the TCP
 * transport's peer connections, the keepalive span (9 s) on the store's.
 */
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "collectives/comm.h"
#include "common/param.h"
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_worlds.h"

#define SHIFT 100003

/* The value rank r sends to rank q at element i (an int32 pattern). */
static int32_t pat(int r, int q, size_t i)
{
    return (int32_t)(r * 1000003 + q * 1009 + (int)i);
}

static void ring_shift(struct rank_ctx *x, bt_comm *c, int n, int me, const char *what)
{
    float *s = malloc(SHIFT * sizeof(float)), *r = malloc(SHIFT * sizeof(float));
    for (size_t i = 0; i < SHIFT; i++)
        s[i] = (float)(me * 7 + (int)(i % 1000));
    bt_request *req[2];
    int to = (me + 1) % n, from = (me + n - 1) % n;
    int rc = bt_irecv(c, r, SHIFT, BT_FLOAT32, from, 5, &req[0]);
    if (rc == BT_OK)
        rc = bt_isend(c, s, SHIFT, BT_FLOAT32, to, 5, &req[1]);
    if (rc == BT_OK)
        rc = bt_waitall(2, req);
    if (rc != BT_OK)
        failf(x, "rank %d %s ring shift: %s: %s", x->rank, what, bt_strerror(rc), bt_last_error(c));
    for (size_t i = 0; i < SHIFT && rc == BT_OK; i++)
        if (r[i] != (float)(from * 7 + (int)(i % 1000))) {
            failf(x, "rank %d %s ring shift: element %zu is %g", x->rank, what, i, r[i]);
            break;
        }
    if (rc == BT_OK)
        bt_request_free(req[0]), bt_request_free(req[1]);
    free(s), free(r);
}

static void pairs(struct rank_ctx *x, bt_comm *c, int n, int me, const char *what)
{
    int32_t out[3] = {me, me * 2, me * 3}, in[3] = {-1, -1, -1}, self = -1;
    int peer = me ^ 1, rc = BT_OK;
    if (peer < n) {
        if (me % 2 == 0) {
            rc = bt_send(c, out, 3, BT_INT32, peer, 9);
            if (rc == BT_OK)
                rc = bt_recv(c, in, 3, BT_INT32, peer, 9);
        } else {
            rc = bt_recv(c, in, 3, BT_INT32, peer, 9);
            if (rc == BT_OK)
                rc = bt_send(c, out, 3, BT_INT32, peer, 9);
        }
        if (rc != BT_OK || in[0] != peer || in[2] != peer * 3)
            failf(x, "rank %d %s pair exchange: %s, got %d", x->rank, what, bt_strerror(rc), in[0]);
    }
    bt_request *req[2];
    rc = bt_isend(c, &out[1], 1, BT_INT32, me, 3, &req[0]);
    if (rc == BT_OK)
        rc = bt_irecv(c, &self, 1, BT_INT32, me, 3, &req[1]);
    if (rc != BT_OK || bt_waitall(2, req) != BT_OK || self != me * 2)
        failf(x, "rank %d %s send to self: %s, got %d", x->rank, what, bt_last_error(c), self);
    bt_request_free(req[0]), bt_request_free(req[1]);
}

static void alltoall(struct rank_ctx *x, bt_comm *c, int n, int me, const char *what)
{
    static const size_t counts[] = {0, 1, 7, 1000, 20011};
    size_t maxb = 20011 * 8 * (size_t)n;
    char *s = malloc(maxb), *r = malloc(maxb), *want = malloc(maxb);
    for (int dt = 0; dt < BT_DTYPE_COUNT; dt++)
        for (int k = 0; k < 5; k++) {
            size_t cnt = counts[k], es = bt_dtype_size((bt_dtype)dt);
            for (int q = 0; q < n; q++) { /* block q of mine: val(me, q * cnt + i) */
                for (size_t i = 0; i < cnt; i++)
                    put(s, (size_t)q * cnt + i, (bt_dtype)dt,
                        val(me, (size_t)q * cnt + i, (bt_dtype)dt, BT_SUM));
                for (size_t i = 0; i < cnt; i++)
                    put(want, (size_t)q * cnt + i, (bt_dtype)dt,
                        val(q, (size_t)me * cnt + i, (bt_dtype)dt, BT_SUM));
            }
            int rc = bt_alltoall(c, s, r, cnt, (bt_dtype)dt);
            if (rc != BT_OK || memcmp(r, want, cnt * (size_t)n * es) != 0) {
                failf(x, "rank %d %s alltoall %s count %zu: %s", x->rank, what, dtn[dt], cnt,
                      rc ? bt_last_error(c) : "wrong result");
                goto out;
            }
        }
out:
    free(s), free(r), free(want);
}

/* alltoallv: rank r sends (r + q) % 3 * 5 elements to q; allgatherv: rank r has r % 4 * 3. */
static void vcalls(struct rank_ctx *x, bt_comm *c, int n, int me, const char *what)
{
    size_t sc[8] = {0}, sd[8] = {0}, rc_[8] = {0}, rd[8] = {0}, so = 0, ro = 0;
    int32_t s[8 * 10] = {0}, r[8 * 10] = {0}, g[8 * 10] = {0};
    for (int q = 0; q < n; q++) {
        sc[q] = (size_t)((me + q) % 3 * 5), sd[q] = so, so += sc[q];
        rc_[q] = (size_t)((q + me) % 3 * 5), rd[q] = ro, ro += rc_[q];
        for (size_t i = 0; i < sc[q]; i++)
            s[sd[q] + i] = pat(me, q, i);
    }
    int rc = bt_alltoallv(c, s, sc, sd, r, rc_, rd, BT_INT32);
    for (int q = 0; q < n && rc == BT_OK; q++)
        for (size_t i = 0; i < rc_[q]; i++)
            if (r[rd[q] + i] != pat(q, me, i)) {
                failf(x, "rank %d %s alltoallv: from %d element %zu", x->rank, what, q, i);
                return;
            }
    size_t gc[8], gd[8], off = 0;
    for (int q = 0; q < n; q++)
        gc[q] = (size_t)(q % 4 * 3), gd[q] = off, off += gc[q];
    for (size_t i = 0; i < gc[me]; i++)
        s[i] = pat(me, 0, i);
    if (rc == BT_OK)
        rc = bt_allgatherv(c, s, gc[me], g, gc, gd, BT_INT32);
    for (int q = 0; q < n && rc == BT_OK; q++)
        for (size_t i = 0; i < gc[q]; i++)
            if (g[gd[q] + i] != pat(q, 0, i)) {
                failf(x, "rank %d %s allgatherv: from %d element %zu", x->rank, what, q, i);
                return;
            }
    if (rc != BT_OK)
        failf(x, "rank %d %s v-calls: %s", x->rank, what, bt_last_error(c));
}

static void rooted(struct rank_ctx *x, bt_comm *c, int n, int me, const char *what)
{
    int32_t s[8 * 7], r[8 * 7];
    for (int root = 0; root < n; root++) {
        for (int i = 0; i < 7; i++)
            s[i] = pat(me, root, (size_t)i);
        int rc = bt_gather(c, s, r, 7, BT_INT32, root);
        for (int q = 0; q < n && rc == BT_OK && me == root; q++)
            for (int i = 0; i < 7; i++)
                if (r[q * 7 + i] != pat(q, root, (size_t)i)) {
                    failf(x, "rank %d %s gather to %d: block %d", x->rank, what, root, q);
                    return;
                }
        for (int q = 0; q < n && me == root; q++)
            for (int i = 0; i < 7; i++)
                s[q * 7 + i] = pat(root, q, (size_t)i);
        if (rc == BT_OK)
            rc = bt_scatter(c, s, r, 7, BT_INT32, root);
        for (int i = 0; i < 7 && rc == BT_OK; i++)
            if (r[i] != pat(root, me, (size_t)i)) {
                failf(x, "rank %d %s scatter from %d: element %d", x->rank, what, root, i);
                return;
            }
        if (rc != BT_OK) {
            failf(x, "rank %d %s gather/scatter: %s", x->rank, what, bt_last_error(c));
            return;
        }
    }
}

static void all_calls(struct rank_ctx *x, bt_comm *c, const char *what)
{
    int n, me;
    bt_comm_size(c, &n), bt_comm_rank(c, &me);
    ring_shift(x, c, n, me, what);
    pairs(x, c, n, me, what);
    alltoall(x, c, n, me, what);
    vcalls(x, c, n, me, what);
    rooted(x, c, n, me, what);
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0), *half = NULL;
    if (!c)
        return NULL;
    all_calls(x, c, "world");
    if (!x->fail[0] && bt_comm_split(c, x->rank % 2, x->rank, &half) != BT_OK)
        failf(x, "rank %d: split: %s", x->rank, bt_last_error(c));
    if (!x->fail[0])
        all_calls(x, half, "half");
    bt_comm_destroy(half);
    if (bt_barrier(c) != BT_OK)
        failf(x, "rank %d: final barrier: %s", x->rank, bt_last_error(c));
    bt_finalize(c);
    return NULL;
}

/* Two ranks: a receive that expects another tag; a peer out of range. */
static void *bad_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0);
    if (!c)
        return NULL;
    int32_t v[4] = {1, 2, 3, 4};
    /* both attached before rank 0 may finalize (and remove the segment's name) */
    if (bt_barrier(c) != BT_OK)
        failf(x, "rank %d: barrier: %s", x->rank, bt_last_error(c));
    if (x->rank == 0) {
        if (bt_send(c, v, 4, BT_INT32, 1, 1) != BT_OK)
            failf(x, "the sender failed: %s", bt_last_error(c));
        if (bt_send(c, v, 1, BT_INT32, 7, 1) != BT_ERR_INVALID_ARG ||
            !strstr(bt_last_error(c), "peer 7"))
            failf(x, "peer 7 of 2 accepted: %s", bt_last_error(c));
    } else {
        int rc = bt_recv(c, v, 4, BT_INT32, 0, 2);
        if (rc != BT_ERR_INVALID_USAGE || !strstr(bt_last_error(c), "tag 1"))
            failf(x, "a tag mismatch: %s: %s", bt_strerror(rc), bt_last_error(c));
    }
    bt_finalize(c);
    return NULL;
}

/* Over shm, CMA reads that fail (BATON_TEST_CMA_FAIL): the first large alltoall falls back
 * to the slots on every rank, with the right result, and so do the later ones. */
static void *cma_fail_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0);
    if (!c)
        return NULL;
    int n, me;
    bt_comm_size(c, &n), bt_comm_rank(c, &me);
    alltoall(x, c, n, me, "cma failing");
    alltoall(x, c, n, me, "cma off");
    bt_finalize(c);
    return NULL;
}

/* Alltoall counts that differ between ranks: every rank fails, naming the mismatch. */
static void *mismatch_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0);
    if (!c)
        return NULL;
    int32_t s[2 * 4000] = {0}, r[2 * 4000];
    size_t cnt = x->rank == 0 ? 3 : 4000; /* slots on one side, CMA on the other */
    int rc = bt_alltoall(c, s, r, cnt, BT_INT32);
    if (rc != BT_ERR_INVALID_USAGE ||
        (!strstr(bt_last_error(c), "bytes") && !strstr(bt_last_error(c), "counts")))
        failf(x, "rank %d: mismatched alltoall counts: %s: %s", x->rank, bt_strerror(rc),
              bt_last_error(c));
    bt_finalize(c);
    return NULL;
}

/* The six collectives over shm with shapes that differ between ranks (shm.c check_shape):
 * every rank fails with BT_ERR_INVALID_USAGE naming the other's shape, none returns BT_OK
 * with a partly reduced result (10 against 7 elements did) and none hangs (100,000 against 10
 * did: a different number of rounds). Rank 1 is the odd one out. */
static int shape_case;

static void *shape_main(void *arg)
{
    static float a[100000], b[100000];
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0);
    if (!c)
        return NULL;
    int odd = x->rank == 1, rc = BT_OK;
    const char *want = "count";
    switch (shape_case) {
    case 0: /* 10 against 7: was BT_OK with 3 elements unreduced on rank 0 */
        rc = bt_allreduce(c, a, b, odd ? 7 : 10, BT_FLOAT32, BT_SUM);
        break;
    case 1: /* 100,000 against 10: was a hang (rank 0 ran more rounds) */
        rc = bt_allreduce(c, a, b, odd ? 10 : 100000, BT_FLOAT32, BT_SUM);
        break;
    case 2:
        rc = bt_allreduce(c, a, b, 16, BT_FLOAT32, odd ? BT_MAX : BT_SUM);
        want = "op";
        break;
    case 3:
        rc = bt_broadcast(c, a, 16, BT_FLOAT32, odd ? 1 : 0);
        want = "root";
        break;
    case 4:
        rc = bt_allreduce(c, a, b, 16, odd ? BT_INT32 : BT_FLOAT32, BT_SUM);
        want = "dtype";
        break;
    default: /* another collective: an allgather against an allreduce */
        rc = odd ? bt_allgather(c, a, b, 16, BT_FLOAT32)
                 : bt_allreduce(c, a, b, 16, BT_FLOAT32, BT_SUM);
        want = "another collective";
    }
    const char *e = bt_last_error(c);
    if (rc != BT_ERR_INVALID_USAGE || !strstr(e, want) || !strstr(e, "hint: every rank passes"))
        failf(x, "rank %d case %d: %s: %s", x->rank, shape_case, bt_strerror(rc), e);
    bt_finalize(c);
    return NULL;
}

static void test_mismatch_shape(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "shm", 0}, {3, 1, "shm", 0}};
    for (shape_case = 0; shape_case < 6; shape_case++)
        run_worlds(ws, 2, shape_main);
}

/* Port of the socket's local (peer 0) or remote (peer 1) address. */
static int sock_port(int fd, int peer)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int rc = peer ? getpeername(fd, (struct sockaddr *)&a, &len)
                  : getsockname(fd, (struct sockaddr *)&a, &len);
    return rc == 0 && a.sin_family == AF_INET ? ntohs(a.sin_port) : -1;
}

/* Rank 0 looks at every connected TCP socket of the process (both ranks' and the store's): one
 * with the store's port at either end is a store connection and has the keepalive span (9 s) as
 * its TCP_USER_TIMEOUT (common/sock.c), every other one is a peer connection of the TCP
 * transport and has BATON_TIMEOUT when that is longer (main: 60 s; transport/tcp.c). */
static void *user_timeout_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *c = rank_comm(x, 0);
    if (!c)
        return NULL;
    pairs(x, c, 2, x->rank, "user timeout"); /* the peer connections are up */
    if (bt_barrier(c) != BT_OK)
        failf(x, "rank %d: barrier: %s", x->rank, bt_last_error(c));
    int64_t idle = bt__env_int("BATON_KEEPALIVE_IDLE", 3);
    int64_t intvl = bt__env_int("BATON_KEEPALIVE_INTVL", 2),
            cnt = bt__env_int("BATON_KEEPALIVE_CNT", 3);
    unsigned span = (unsigned)((idle + intvl * cnt) * 1000);
    unsigned coll = (unsigned)(bt__env_dbl("BATON_TIMEOUT", 300) * 1000);
    DIR *d = x->rank == 0 ? opendir("/proc/self/fd") : NULL;
    int npeer = 0, nstore = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        int fd = atoi(e->d_name), type = 0, listening = 1;
        unsigned ms = 0;
        struct stat st;
        socklen_t len = sizeof(type);
        if (e->d_name[0] == '.' || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening ||
            sock_port(fd, 1) < 0)
            continue;
        len = sizeof(ms);
        getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len);
        int store = sock_port(fd, 0) == x->w->port || sock_port(fd, 1) == x->w->port;
        unsigned want = store ? span : coll > span ? coll : span;
        if (ms != want)
            failf(x, "%s socket %d:%d: TCP_USER_TIMEOUT %u ms, want %u", store ? "store" : "peer",
                  sock_port(fd, 0), sock_port(fd, 1), ms, want);
        store ? nstore++ : npeer++;
    }
    if (d && (npeer < 2 || nstore < 2))
        failf(x, "%d peer and %d store sockets, want 2 or more of each", npeer, nstore);
    if (d)
        closedir(d);
    if (bt_barrier(c) != BT_OK)
        failf(x, "rank %d: barrier: %s", x->rank, bt_last_error(c));
    bt_finalize(c);
    return NULL;
}

static void test_user_timeout(void **state)
{
    (void)state;
    struct world w = {2, 1, "tcp", 0};
    run_world(&w, user_timeout_main);
}

static void test_cma_fallback(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "shm", 0}, {3, 1, "shm", 0}};
    setenv("BATON_TEST_CMA_FAIL", "1", 1);
    run_worlds(ws, 2, cma_fail_main);
    unsetenv("BATON_TEST_CMA_FAIL");
}

static void test_mismatch(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "shm", 0}, {2, 1, "tcp", 0}};
    run_worlds(ws, 2, mismatch_main);
}

static void test_shm(void **state)
{
    (void)state;
    run_shm_worlds(rank_main);
}

static void test_tcp(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "tcp", 0},
                                      {3, 1, "tcp", 0},
                                      {5, 1, "tcp", 0},
                                      {7, 1, "tcp", 0}};
    run_worlds(ws, 4, rank_main);
}

static void test_hierarchical(void **state)
{
    (void)state;
    static const struct world ws[] = {{4, 2, "auto", 0}, {6, 3, "auto", 0}};
    run_worlds(ws, 2, rank_main);
}

static void test_bad(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "shm", 0}, {2, 1, "tcp", 0}};
    run_worlds(ws, 2, bad_main);
}

int main(void)
{
    setenv("BATON_TIMEOUT", "60", 0);
    setenv("BATON_SHM_CMA_BYTES", "2000", 0); /* alltoall blocks of 2000 bytes up by CMA */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shm),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_hierarchical),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_cma_fallback),
        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_mismatch_shape),
        cmocka_unit_test(test_user_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
