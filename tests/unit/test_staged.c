/* test_staged.c: the staged path's pipeline (collectives/backend/staged.c), without a GPU.
 *
 * The pipeline is the exact code device buffers take when NCCL cannot run a call; here its
 * copy engine is memcpy, and by default a lazy one: a copy runs only when its slot is waited
 * for, newest first (a valid schedule for two asynchronous streams), and staging memory
 * starts out as garbage,
 * so a missing or misplaced wait gives wrong results instead of passing by luck. Ranks are
 * threads over an in-process store (as in test_coll.c): shm and tcp at 2 and 4 ranks, and a
 * job of one. Every collective x dtype x op, counts 0, 1, 7, around the test's segment size
 * (64 bytes: 16 float32, 8 float64, 64 uint8, and 64 / (4 n) per block for allgather and
 * reduce-scatter) and a many-segment 1000; results must equal the naive reference and, bit
 * for bit, the host path run on the same input without staging. Plus: one-element segments,
 * the default segment size on a large call, an eager engine, and a copy failure mid-pipeline
 * (the error comes back and every started copy is waited for).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "collectives/comm.h"
#include "collectives/reduce.h"
#include "collectives/backend/staged.h"
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_threads.h"

#define QMAX 8 /* copies pending on one slot */
#define MAXC 1000
#define BIG (1048576 + 3)

/* ---- the memcpy copy engine ---- */

struct pending {
    void *dst;
    const void *src;
    size_t dpitch, spitch, width, rows;
};

struct memeng {
    int eager;    /* copy at once instead of at the wait */
    long fail_at; /* fail the copy with this number (1-based), 0: never */
    long copies;  /* started */
    int overflow; /* more than QMAX copies pending on a slot: a pipeline bug */
    struct pending q[BT_STAGE_SLOTS][QMAX];
    int nq[BT_STAGE_SLOTS];
};

static void run_copy(const struct pending *p)
{
    for (size_t r = 0; r < p->rows; r++)
        memcpy((char *)p->dst + r * p->dpitch, (const char *)p->src + r * p->spitch, p->width);
}

static int me_copy(struct bt_comm *c, void *ctx, int slot, int to_host, void *dst, size_t dpitch,
                   const void *src, size_t spitch, size_t width, size_t rows)
{
    struct memeng *m = ctx;
    struct pending p = {dst, src, dpitch, spitch, width, rows};
    (void)to_host;
    if (++m->copies == m->fail_at)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "test engine: copy %ld fails", m->copies);
    if (m->eager) {
        run_copy(&p);
        return BT_OK;
    }
    if (m->nq[slot] == QMAX) {
        m->overflow = 1;
        return bt__comm_fail(c, BT_ERR_INTERNAL, "test engine: slot %d overflows", slot);
    }
    m->q[slot][m->nq[slot]++] = p;
    return BT_OK;
}

/* Runs the slot's pending copies newest first: on a GPU the two directions are two streams,
 * so copies of one slot may run in any order, and newest first is the order that breaks a
 * pipeline that reuses a slot before its last copy out is done. */
static int me_wait(struct bt_comm *c, void *ctx, int slot)
{
    struct memeng *m = ctx;
    (void)c;
    for (int i = m->nq[slot] - 1; i >= 0; i--)
        run_copy(&m->q[slot][i]);
    m->nq[slot] = 0;
    return BT_OK;
}

static void *me_alloc(struct bt_comm *c, void *ctx, size_t bytes)
{
    (void)c, (void)ctx;
    void *p = malloc(bytes);
    if (p)
        memset(p, 0xa5, bytes); /* garbage a missed copy would leave behind */
    return p;
}

static void me_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static int me_idle(const struct memeng *m)
{
    for (int k = 0; k < BT_STAGE_SLOTS; k++)
        if (m->nq[k])
            return 0;
    return !m->overflow;
}

/* ---- inputs and the reference (as in test_coll.c: small integers, exact in every dtype) ---- */

/* ---- one rank ---- */

struct world {
    int n;
    const char *transport;
    int port;
};

struct rank_ctx {
    struct world *w;
    int rank;
    pthread_t th;
    char fail[512];
    long calls;
    struct memeng eng;
    struct bt__stage st;
    char *send, *dev, *host, *want; /* dev: the staged output ("device"), host: host path's */
};

static const char *kindn[] = {"allreduce", "broadcast", "allgather", "reduce_scatter", "reduce"};

/* Runs a on the staged path (into x->dev) and on the host path (into x->host); send was
 * filled by the caller (a->send points at x->send or, in place, at the output). */
static int run_both(struct rank_ctx *x, bt_comm *c, const struct bt__call *a, size_t in_bytes,
                    int inplace)
{
    struct bt__call s = *a, h = *a;
    memcpy(x->dev, x->send, in_bytes);
    memcpy(x->host, x->send, in_bytes);
    s.send = inplace ? x->dev : x->send;
    h.send = inplace ? x->host : x->send;
    s.recv = (a->kind == BT_COLL_REDUCE && c->rank != a->root) ? NULL : x->dev;
    h.recv = s.recv ? x->host : NULL;
    c->coll_seq++;
    c->coll_name = "staged";
    int rc = bt__staged_run(c, &x->st, &s);
    x->calls++;
    if (rc != BT_OK || !me_idle(&x->eng)) {
        failf(x, "rank %d staged %s: %s: %s%s", x->rank, kindn[a->kind], bt_strerror(rc),
              bt_last_error(c), me_idle(&x->eng) ? "" : " (copies left pending)");
        return 1;
    }
    c->coll_seq++;
    c->coll_name = "host";
    if ((rc = bt__host_run(c, &h)) != BT_OK) {
        failf(x, "rank %d host %s: %s", x->rank, kindn[a->kind], bt_last_error(c));
        return 1;
    }
    return 0;
}

/* Checks x->dev against want and, bit for bit, against the host path's x->host. */
static void check(struct rank_ctx *x, const struct bt__call *a, size_t n_out, const char *what)
{
    size_t es = bt_dtype_size(a->dtype);
    for (size_t i = 0; i < n_out; i++) {
        const char *g = x->dev + i * es;
        if (memcmp(g, x->want + i * es, es) || memcmp(g, x->host + i * es, es)) {
            failf(x,
                  "rank %d n=%d %s %s %s %s count=%zu seg=%zu: element %zu differs from "
                  "the %s",
                  x->rank, x->w->n, x->w->transport, what, dtn[a->dtype], opn[a->op], a->count,
                  x->st.seg_bytes, i, memcmp(g, x->want + i * es, es) ? "reference" : "host path");
            return;
        }
    }
}

static void do_reducing(struct rank_ctx *x, bt_comm *c, enum bt__coll_kind kind, size_t count,
                        bt_dtype dt, bt_op op, int inplace)
{
    int n = x->w->n, root = ((int)dt + (int)op) % n;
    size_t es = bt_dtype_size(dt), nin = kind == BT_COLL_REDUCE_SCATTER ? count * (size_t)n : count;
    struct bt__call a = {.kind = kind, .count = count, .dtype = dt, .op = op, .root = root};
    fill(x->send, nin, x->rank, dt, op);
    size_t base = kind == BT_COLL_REDUCE_SCATTER ? (size_t)x->rank * count : 0;
    for (size_t i = 0; i < count; i++)
        expect(x->want, i, base + i, n, dt, op);
    if (run_both(x, c, &a, nin * es, inplace))
        return;
    if (kind != BT_COLL_REDUCE || x->rank == root)
        check(x, &a, count, inplace ? "allreduce (in place)" : kindn[kind]);
}

static void do_allgather(struct rank_ctx *x, bt_comm *c, size_t count, bt_dtype dt)
{
    int n = x->w->n;
    size_t es = bt_dtype_size(dt);
    struct bt__call a = {.kind = BT_COLL_ALLGATHER, .count = count, .dtype = dt};
    fill(x->send, count, x->rank, dt, BT_SUM);
    for (int r = 0; r < n; r++)
        fill(x->want + (size_t)r * count * es, count, r, dt, BT_SUM);
    if (!run_both(x, c, &a, count * es, 0))
        check(x, &a, count * (size_t)n, "allgather");
}

static void do_broadcast(struct rank_ctx *x, bt_comm *c, size_t count, bt_dtype dt)
{
    int root = ((int)dt * 3) % x->w->n;
    struct bt__call a = {.kind = BT_COLL_BROADCAST, .count = count, .dtype = dt, .root = root};
    fill(x->send, count, x->rank == root ? root : 99, dt, BT_SUM);
    fill(x->want, count, root, dt, BT_SUM);
    if (!run_both(x, c, &a, count * bt_dtype_size(dt), 1))
        check(x, &a, count, "broadcast");
}

static void sweep(struct rank_ctx *x, bt_comm *c, size_t count)
{
    for (int dt = 0; dt < BT_DTYPE_COUNT && !x->fail[0]; dt++) {
        for (int op = 0; op < BT_OP_COUNT && !x->fail[0]; op++) {
            do_reducing(x, c, BT_COLL_ALLREDUCE, count, (bt_dtype)dt, (bt_op)op, 1);
            do_reducing(x, c, BT_COLL_ALLREDUCE, count, (bt_dtype)dt, (bt_op)op, 0);
            do_reducing(x, c, BT_COLL_REDUCE, count, (bt_dtype)dt, (bt_op)op, 0);
            do_reducing(x, c, BT_COLL_REDUCE_SCATTER, count, (bt_dtype)dt, (bt_op)op, 0);
        }
        do_allgather(x, c, count, (bt_dtype)dt);
        do_broadcast(x, c, count, (bt_dtype)dt);
    }
}

/* A large call with the default segment size (BATON_STAGE_BYTES, set small by main()). */
static void sweep_big(struct rank_ctx *x, bt_comm *c)
{
    x->st.seg_bytes = 0;
    do_reducing(x, c, BT_COLL_ALLREDUCE, BIG, BT_FLOAT32, BT_SUM, 1);
    do_reducing(x, c, BT_COLL_ALLREDUCE, BIG, BT_BFLOAT16, BT_AVG, 0);
    do_reducing(x, c, BT_COLL_REDUCE_SCATTER, BIG / (size_t)x->w->n, BT_INT32, BT_MAX, 0);
    do_allgather(x, c, BIG / (size_t)x->w->n, BT_FLOAT64);
    do_broadcast(x, c, BIG, BT_UINT8);
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    struct world *w = x->w;
    struct bt__comm_cfg cfg = rt_cfg(x->rank, w->n, 1, w->port, w->transport);
    cfg.shm_slot_bytes = 4096;
    struct bt__err err = {0};
    bt_comm *c = NULL;
    if (bt__comm_create(&cfg, &c, &err) != BT_OK) {
        failf(x, "rank %d: create: %s", x->rank, err.msg);
        return NULL;
    }
    x->st.eng = (struct bt__copy_engine){.ctx = &x->eng,
                                         .copy = me_copy,
                                         .wait = me_wait,
                                         .host_alloc = me_alloc,
                                         .host_free = me_free};
    static const size_t counts[] = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 65, MAXC};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]) && !x->fail[0]; k++) {
        x->st.seg_bytes = 64;
        sweep(x, c, counts[k]);
    }
    x->st.seg_bytes = 1; /* one element per segment (per block) */
    for (size_t k = 0; k < 4 && !x->fail[0]; k++)
        sweep(x, c, counts[k]);
    x->eng.eager = 1;
    x->st.seg_bytes = 48;
    if (!x->fail[0])
        sweep(x, c, 100);
    x->eng.eager = 0;
    if (!x->fail[0])
        sweep_big(x, c);
    if (bt_barrier(c) != BT_OK)
        failf(x, "rank %d barrier: %s", x->rank, bt_last_error(c));
    bt__stage_free(&x->st);
    if (bt_finalize(c) != BT_OK)
        failf(x, "rank %d: finalize reported an error", x->rank);
    return NULL;
}

static void run_world(struct world *w)
{
    struct bt__store_server *srv = rt_store_start(&w->port);
    struct rank_ctx *x = calloc((size_t)w->n, sizeof(*x));
    size_t bytes = (size_t)BIG * 8 + 64;
    assert_non_null(x);
    for (int r = 0; r < w->n; r++) {
        x[r].w = w, x[r].rank = r;
        x[r].send = malloc(bytes), x[r].dev = malloc(bytes);
        x[r].host = malloc(bytes), x[r].want = malloc(bytes);
        assert_true(x[r].send && x[r].dev && x[r].host && x[r].want);
    }
    int bad;
    double secs = RT_RUN(w->n, rank_main, x, &bad);
    for (int r = 0; r < w->n; r++)
        free(x[r].send), free(x[r].dev), free(x[r].host), free(x[r].want);
    print_message("# staged n=%d %s: %ld staged calls per rank, %.2f s\n", w->n, w->transport,
                  x[0].calls, secs);
    free(x);
    bt__store_server_destroy(srv);
    assert_false(bad);
}

static void test_one_rank(void **state)
{
    (void)state;
    struct world w = {.n = 1, .transport = "auto"};
    run_world(&w);
}

static void test_shm(void **state)
{
    (void)state;
    for (int n = 2; n <= 4; n += 2) {
        struct world w = {.n = n, .transport = "shm"};
        run_world(&w);
    }
}

static void test_tcp(void **state)
{
    (void)state;
    for (int n = 2; n <= 4; n += 2) {
        struct world w = {.n = n, .transport = "tcp"};
        run_world(&w);
    }
}

/* A copy that fails mid-pipeline: the call fails with the engine's error (sticky), and every
 * copy it started was waited for before it returned. */
static void test_copy_failure(void **state)
{
    (void)state;
    struct bt__comm_cfg cfg = {.size = 1, .local_size = 1, .nnodes = 1};
    struct bt__err err = {0};
    bt_comm *c = NULL;
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_OK);
    struct memeng m = {.fail_at = 4};
    struct bt__stage st = {.eng = {.ctx = &m,
                                   .copy = me_copy,
                                   .wait = me_wait,
                                   .host_alloc = me_alloc,
                                   .host_free = me_free},
                           .seg_bytes = 16};
    float in[40], out[40];
    for (int i = 0; i < 40; i++)
        in[i] = (float)i, out[i] = -1;
    struct bt__call a = {.kind = BT_COLL_ALLREDUCE,
                         .send = in,
                         .recv = out,
                         .count = 40,
                         .dtype = BT_FLOAT32,
                         .op = BT_SUM};
    c->coll_seq++;
    c->coll_name = "allreduce";
    assert_int_equal(bt__staged_run(c, &st, &a), BT_ERR_SYSTEM);
    assert_true(me_idle(&m));
    assert_non_null(strstr(bt_last_error(c), "copy 4 fails"));
    assert_true(out[0] == 0 && out[3] == 3); /* segment 0 was reduced and copied back, */
    assert_true(out[4] == -1);               /* segment 1 never reached the host path */
    assert_int_equal(bt_allreduce(c, in, out, 1, BT_FLOAT32, BT_SUM), BT_ERR_SYSTEM); /* sticky */
    bt__stage_free(&st);
    bt_finalize(c);
}

static void test_stage_bytes_knob(void **state)
{
    (void)state;
    assert_int_equal(bt__stage_bytes(), 3000); /* main() set BATON_STAGE_BYTES=3000 */
}

int main(void)
{
    setenv("BATON_TIMEOUT", "120", 0);
    setenv("BATON_STAGE_BYTES", "3000", 1); /* the default-size calls: a few hundred segments */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_bytes_knob),
        cmocka_unit_test(test_copy_failure),
        cmocka_unit_test(test_one_rank),
        cmocka_unit_test(test_shm),
        cmocka_unit_test(test_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
