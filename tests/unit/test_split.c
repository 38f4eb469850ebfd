/* test_split.c: sub-communicators, ranks as threads.
 *
 * Worlds 1..8 over shm, 2..5 and 7 over tcp, hierarchical 2x2 and 4x2. Each rank splits the
 * world into halves, odd/even (key reversing the order), singletons, and "first three or
 * nothing" (color -1), dups it, and makes a group of the even ranks with
 * bt_comm_create_group (called by the members only). On every child: the accessors (rank,
 * size) against the expected layout, and an allreduce of the world ranks (sum and max), an
 * allgather of the world ranks (so the child's rank order is checked), a broadcast from the
 * child's last rank; with a nonblocking allreduce on the parent outstanding meanwhile. Each
 * child is destroyed and the parent still works afterwards. A split's child (one node or
 * spanning nodes, shm or TCP) has no store connection (no store round trip); a group has; a
 * group made on the dup connects the dup on demand. Bad input: color < -1, a group call by a
 * non-member, a duplicate rank. Reuse of a destroyed child's segment (shm, 2-4 ranks): a dup runs
 * on the last dup's segment, beside a nonblocking allreduce on the parent, a split into halves does
 * not; a dup that used point-to-point, or whose alltoall failed, leaves nothing to the next.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "collectives/comm.h"
#include "collectives/transport/transport.h"
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_worlds.h"

/* The members of rank r's child under split kind k, in child rank order; returns the count
 * (0: not a member). */
static int members(int k, int n, int r, int *out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        int j = k == 1 ? n - 1 - i : i; /* odd/even: key = -rank reverses the order */
        int in = k == 0   ? (j < n / 2) == (r < n / 2)
                 : k == 1 ? j % 2 == r % 2
                 : k == 2 ? j == r
                 : k == 3 ? j < 3 && r < 3
                 : k == 4 ? 1
                          : j % 2 == 0 && r % 2 == 0;
        if (in)
            out[m++] = j;
    }
    return m;
}

/* Runs the checks on child c whose members (world ranks, child order) are mem[0..m). */
static void check_child(struct rank_ctx *x, bt_comm *c, const int *mem, int m, int k)
{
    int rank = -1, size = -1, sum = 0, mx = 0, me = -1;
    for (int i = 0; i < m; i++) {
        sum += mem[i], mx = mem[i] > mx ? mem[i] : mx;
        me = mem[i] == x->rank ? i : me;
    }
    bt_comm_rank(c, &rank), bt_comm_size(c, &size);
    if (rank != me || size != m) {
        failf(x, "rank %d split %d: rank/size %d/%d, want %d/%d", x->rank, k, rank, size, me, m);
        return;
    }
    int32_t v[2] = {x->rank, x->rank}, g[8] = {0}, b = x->rank;
    int rc = bt_allreduce(c, v, v, 1, BT_INT32, BT_SUM);
    if (rc == BT_OK)
        rc = bt_allreduce(c, v + 1, v + 1, 1, BT_INT32, BT_MAX);
    if (rc == BT_OK)
        rc = bt_allgather(c, &b, g, 1, BT_INT32);
    if (rc == BT_OK)
        rc = bt_broadcast(c, &b, 1, BT_INT32, m - 1);
    if (rc != BT_OK) {
        failf(x, "rank %d split %d: %s: %s", x->rank, k, bt_strerror(rc), bt_last_error(c));
        return;
    }
    if (v[0] != sum || v[1] != mx || b != mem[m - 1])
        failf(x, "rank %d split %d: sum %d max %d bcast %d, want %d %d %d", x->rank, k, v[0], v[1],
              b, sum, mx, mem[m - 1]);
    for (int i = 0; i < m; i++)
        if (g[i] != mem[i])
            failf(x, "rank %d split %d: allgather[%d] = %d, want %d", x->rank, k, i, g[i], mem[i]);
}

static int make_child(struct rank_ctx *x, bt_comm *w, int k, bt_comm **c)
{
    int n = x->w->n, r = x->rank;
    switch (k) {
    case 0: return bt_comm_split(w, r < n / 2, r, c);
    case 1: return bt_comm_split(w, r % 2, -r, c);
    case 2: return bt_comm_split(w, r, 0, c);
    case 3: return bt_comm_split(w, r < 3 ? 7 : BT_UNDEFINED, r, c);
    case 4: return bt_comm_dup(w, c);
    default: {
        int ranks[8], m = 0;
        for (int i = 0; i < n; i += 2)
            ranks[m++] = i;
        *c = NULL;
        return r % 2 ? BT_OK : bt_comm_create_group(w, m, ranks, 42, c);
    }
    }
}

static void bad_input(struct rank_ctx *x)
{
    struct bt__comm_cfg cfg = {.size = 1, .local_size = 1, .nnodes = 1};
    struct bt__err err = {0};
    bt_comm *c = NULL, *child = NULL;
    if (bt__comm_create(&cfg, &c, &err) != BT_OK) {
        failf(x, "create: %s", err.msg);
        return;
    }
    int zero = 0, twice[2] = {0, 0};
    if (bt_comm_split(c, -2, 0, &child) != BT_ERR_INVALID_ARG || child ||
        !strstr(bt_last_error(c), "color"))
        failf(x, "color -2 accepted");
    bt_finalize(c);
    bt__comm_create(&cfg, &c, &err);
    if (bt_comm_create_group(c, 2, twice, 1, &child) != BT_ERR_INVALID_ARG)
        failf(x, "a group with a rank twice accepted");
    bt_finalize(c);
    bt__comm_create(&cfg, &c, &err);
    if (bt_comm_create_group(c, 1, &zero, 1, &child) != BT_OK || !child)
        failf(x, "a group of one failed: %s", bt_last_error(c));
    bt_comm_destroy(child);
    if (bt_barrier(c) != BT_OK)
        failf(x, "the parent after destroying its child: %s", bt_last_error(c));
    bt_finalize(c);
}

/* A split's child has made no store connection, over shm on one node, over TCP, across
 * nodes (its segment names derived, its TCP addresses allgathered over the parent); a group
 * has. On the dup, a group of all its ranks connects it on demand (groups publish through it). */
static void store_use(struct rank_ctx *x, bt_comm *c, int k)
{
    int split = k != 5, all[8], n = 0, r = -1;
    if (split != (c->store == NULL))
        failf(x, "rank %d split %d (%d nodes, %s): a store connection %s", x->rank, k, c->nnodes,
              c->shm ? "shm" : "no shm", split ? "on a split's child" : "missing on a group");
    if (k != 4)
        return;
    bt_comm_size(c, &n), bt_comm_rank(c, &r);
    for (int i = 0; i < n; i++)
        all[i] = i;
    bt_comm *g = NULL;
    int32_t v = r;
    if (bt_comm_create_group(c, n, all, 9, &g) != BT_OK ||
        bt_allreduce(g, &v, &v, 1, BT_INT32, BT_SUM) != BT_OK || v != n * (n - 1) / 2)
        failf(x, "rank %d: a group of the dup: %s", x->rank, bt_last_error(c));
    if (!c->store || (g && !g->store))
        failf(x, "rank %d: the dup's store %p, its group's %p", x->rank, (void *)c->store,
              g ? (void *)g->store : NULL);
    bt_comm_destroy(g);
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    struct world *w = x->w;
    bt_comm *world = rank_comm(x, 0);
    if (!world)
        return NULL;
    for (int k = 0; k < 6 && !x->fail[0]; k++) {
        int mem[8], m = members(k, w->n, x->rank, mem);
        bt_comm *c = NULL;
        int rc = make_child(x, world, k, &c);
        if (rc != BT_OK || (m > 0) != (c != NULL)) {
            failf(x, "rank %d split %d: %s (child %p): %s", x->rank, k, bt_strerror(rc), (void *)c,
                  bt_last_error(world));
            break;
        }
        float v = 1;
        bt_request *req = NULL;
        if (bt_iallreduce(world, &v, &v, 1, BT_FLOAT32, BT_SUM, &req) != BT_OK)
            failf(x, "rank %d: iallreduce on the parent", x->rank);
        if (c)
            check_child(x, c, mem, m, k);
        if (c && m > 1)
            store_use(x, c, k);
        if (bt_wait(req) != BT_OK || v != (float)w->n)
            failf(x, "rank %d: the parent's request beside split %d: %g", x->rank, k, v);
        bt_request_free(req);
        if (c && bt_comm_destroy(c) != BT_OK)
            failf(x, "rank %d split %d: destroy reported an error", x->rank, k);
    }
    if (bt_barrier(world) != BT_OK)
        failf(x, "rank %d: the parent after its children: %s", x->rank, bt_last_error(world));
    bt_finalize(world);
    if (x->rank == 0)
        bad_input(x);
    return NULL;
}

static void test_shm(void **state)
{
    (void)state;
    run_shm_worlds(rank_main);
}

/* An allreduce of the world ranks on child c of the members mem[0..m), beside a nonblocking
 * allreduce on the parent w (the two run at once). */
static void both(struct rank_ctx *x, bt_comm *w, bt_comm *c, const int *mem, int m, int k)
{
    float v = 1;
    bt_request *req = NULL;
    if (bt_iallreduce(w, &v, &v, 1, BT_FLOAT32, BT_SUM, &req) != BT_OK)
        failf(x, "rank %d: iallreduce on the parent", x->rank);
    check_child(x, c, mem, m, k);
    if (bt_wait(req) != BT_OK || v != (float)x->w->n)
        failf(x, "rank %d: the parent's request beside child %d: %g", x->rank, k, v);
    bt_request_free(req);
}

/* Destroys c (and sets *c to NULL), which returns rc; seg gets the name of its segment. */
static void gone_rc(struct rank_ctx *x, bt_comm **c, char *seg, int rc)
{
    snprintf(seg, 96, "%s", bt__shm_name(*c));
    if (*c && bt_comm_destroy(*c) != rc)
        failf(x, "rank %d: destroy did not return %s", x->rank, bt_strerror(rc));
    *c = NULL;
}

static void gone(struct rank_ctx *x, bt_comm **c, char *seg)
{
    gone_rc(x, c, seg, BT_OK);
}

/* A one-node split's child destroyed cleanly leaves its segment for the next child of the same
 * members (transport/shm.c): a second dup runs on the first one's segment, used beside the
 * parent; a split into halves (other members) does not; a dup that used point-to-point, or
 * whose calls failed (alltoall counts that differ), leaves nothing to the next. The parent
 * works after each destroy. */
static void *reuse_main(void *arg)
{
    struct rank_ctx *x = arg;
    int n = x->w->n, r = x->rank, all[8], mem[8], m = members(0, n, r, mem);
    bt_comm *w = rank_comm(x, 0), *d = NULL, *h = NULL;
    if (!w)
        return NULL;
    for (int i = 0; i < n; i++)
        all[i] = i;
    char seg[96] = "", hseg[96] = "";
    for (int round = 0; round < 3 && !x->fail[0]; round++) {
        if (bt_comm_dup(w, &d) != BT_OK || !d) {
            failf(x, "rank %d: dup: %s", r, bt_last_error(w));
            break;
        }
        if (round > 0 && strcmp(bt__shm_name(d), seg))
            failf(x, "rank %d: dup %d runs on segment %s, not the last dup's %s", r, round,
                  bt__shm_name(d), seg);
        both(x, w, d, all, n, 4);
        gone(x, &d, seg);
        if (bt_comm_split(w, r < n / 2, r, &h) != BT_OK || !h) {
            failf(x, "rank %d: split: %s", r, bt_last_error(w));
            break;
        }
        if (!strcmp(bt__shm_name(h), seg) || (round > 0 && m > 1 && strcmp(bt__shm_name(h), hseg)))
            failf(x, "rank %d: halves %d run on segment %s (dup's %s, last halves' %s)", r, round,
                  bt__shm_name(h), seg, hseg);
        both(x, w, h, mem, m, 0);
        gone(x, &h, hseg);
        if (bt_barrier(w) != BT_OK)
            failf(x, "rank %d: the parent after destroying its children: %s", r, bt_last_error(w));
    }
    /* point-to-point on the dup: its segment is not kept */
    bt_comm_dup(w, &d);
    int32_t out = r, in = -1;
    bt_request *q[2] = {NULL, NULL};
    if (!d || bt_isend(d, &out, 1, BT_INT32, (r + 1) % n, 3, &q[0]) != BT_OK ||
        bt_irecv(d, &in, 1, BT_INT32, (r + n - 1) % n, 3, &q[1]) != BT_OK ||
        bt_waitall(2, q) != BT_OK || in != (r + n - 1) % n)
        failf(x, "rank %d: a ring shift on the dup: %d", r, in);
    bt_request_free(q[0]), bt_request_free(q[1]);
    gone(x, &d, seg);
    bt_comm_dup(w, &d);
    if (!d || !strcmp(bt__shm_name(d), seg))
        failf(x, "rank %d: a dup after one that used point-to-point reuses its segment", r);
    /* a failed call on the dup: its segment is not kept */
    int32_t a2s[2 * 8] = {0}, a2r[2 * 8];
    if (d && bt_alltoall(d, a2s, a2r, r == 0 ? 1 : 2, BT_INT32) != BT_ERR_INVALID_USAGE)
        failf(x, "rank %d: alltoall with counts that differ did not fail", r);
    gone_rc(x, &d, seg, BT_ERR_INVALID_USAGE); /* the sticky error */
    bt_comm_dup(w, &d);
    if (!d || !strcmp(bt__shm_name(d), seg))
        failf(x, "rank %d: a dup after one that failed reuses its segment", r);
    else
        both(x, w, d, all, n, 4);
    gone(x, &d, seg);
    if (bt_barrier(w) != BT_OK)
        failf(x, "rank %d: the parent at the end: %s", r, bt_last_error(w));
    bt_finalize(w);
    return NULL;
}

static void test_reuse(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "shm", 0}, {3, 1, "shm", 0}, {4, 1, "shm", 0}};
    run_worlds(ws, 3, reuse_main);
}

static void test_tcp(void **state)
{
    (void)state;
    static const struct world ws[] = {{2, 1, "tcp", 0},
                                      {3, 1, "tcp", 0},
                                      {5, 1, "tcp", 0},
                                      {7, 1, "tcp", 0}};
    run_worlds(ws, (int)(sizeof(ws) / sizeof(ws[0])), rank_main);
}

static void test_hierarchical(void **state)
{
    (void)state;
    static const struct world ws[] = {{4, 2, "auto", 0}, {8, 4, "auto", 0}};
    run_worlds(ws, 2, rank_main);
}

int main(void)
{
    setenv("BATON_TIMEOUT", "120", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shm),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_hierarchical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
