/* test_coll.c: every collective x dtype x op against a naive reference, ranks as threads.
 *
 * Each world (1..8 ranks, including 5 and 7) runs in one process: an in-process store server
 * on 127.0.0.1 port 0, and one thread per rank building its communicator with
 * bt__comm_create. Transports: shm (one node, a tiny slot so counts of 7 and 1000 already run
 * several pipelined rounds), tcp with each allreduce algorithm forced, and a hierarchical
 * layout (2 or 3 "nodes" in one process: shm within, tcp across). Inputs are small integers,
 * so every summation order gives exact results and the reference comparison is bitwise.
 * Counts 0, 1, 7, 1000 for everything; 1M+3 for a sample. Also: the float16/bfloat16
 * conversions against the compiler's _Float16, argument errors and their stickiness.
 */
#include <math.h>
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
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_threads.h"

#define BIG (1048576 + 3)

struct world {
    int n, nnodes;
    const char *transport, *algo;
    size_t slot;
    size_t ring_seg; /* bytes per ring allreduce segment; 0: the default (8 MiB) */
    int big;         /* also run the 1M+3 sample */
    int port;
};

struct rank_ctx {
    struct world *w;
    int rank;
    pthread_t th;
    char fail[512]; /* first failure, "" if none */
    long calls;
};

/* ---- inputs and the reference ---- */

/* ---- one rank's sweep ---- */

struct bufs {
    char *send, *recv, *want;
};

static int cmp_out(struct rank_ctx *x, const char *what, const void *got, const void *want,
                   size_t count, bt_dtype dt, bt_op op)
{
    size_t es = bt_dtype_size(dt);
    for (size_t i = 0; i < count; i++)
        if (memcmp((const char *)got + i * es, (const char *)want + i * es, es) != 0) {
            failf(x, "rank %d n=%d %s %s %s %s count=%zu: element %zu differs", x->rank, x->w->n,
                  x->w->transport, what, dtn[dt], opn[op], count, i);
            return 1;
        }
    return 0;
}

static void do_allreduce(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count, bt_dtype dt,
                         bt_op op, int inplace)
{
    int n = x->w->n;
    fill(b->send, count, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(b->want, i, i, n, dt, op);
    char *out = inplace ? b->send : b->recv;
    int rc = bt_allreduce(c, b->send, out, count, dt, op);
    x->calls++;
    if (rc != BT_OK) {
        failf(x, "rank %d allreduce: %s: %s", x->rank, bt_strerror(rc), bt_last_error(c));
        return;
    }
    cmp_out(x, inplace ? "allreduce(in place)" : "allreduce", out, b->want, count, dt, op);
}

static void do_reduce(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count, bt_dtype dt,
                      bt_op op, int root)
{
    int n = x->w->n;
    fill(b->send, count, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(b->want, i, i, n, dt, op);
    int rc = bt_reduce(c, b->send, x->rank == root ? b->recv : NULL, count, dt, op, root);
    x->calls++;
    if (rc != BT_OK)
        failf(x, "rank %d reduce: %s: %s", x->rank, bt_strerror(rc), bt_last_error(c));
    else if (x->rank == root)
        cmp_out(x, "reduce", b->recv, b->want, count, dt, op);
}

static void do_reduce_scatter(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count,
                              bt_dtype dt, bt_op op)
{
    int n = x->w->n;
    fill(b->send, count * (size_t)n, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(b->want, i, (size_t)x->rank * count + i, n, dt, op);
    int rc = bt_reduce_scatter(c, b->send, b->recv, count, dt, op);
    x->calls++;
    if (rc != BT_OK)
        failf(x, "rank %d reduce_scatter: %s: %s", x->rank, bt_strerror(rc), bt_last_error(c));
    else
        cmp_out(x, "reduce_scatter", b->recv, b->want, count, dt, op);
}

static void do_allgather(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count, bt_dtype dt)
{
    int n = x->w->n;
    size_t es = bt_dtype_size(dt);
    fill(b->send, count, x->rank, dt, BT_SUM);
    for (int r = 0; r < n; r++)
        fill(b->want + (size_t)r * count * es, count, r, dt, BT_SUM);
    int rc = bt_allgather(c, b->send, b->recv, count, dt);
    x->calls++;
    if (rc != BT_OK)
        failf(x, "rank %d allgather: %s: %s", x->rank, bt_strerror(rc), bt_last_error(c));
    else
        cmp_out(x, "allgather", b->recv, b->want, count * (size_t)n, dt, BT_SUM);
}

static void do_broadcast(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count, bt_dtype dt,
                         int root)
{
    fill(b->send, count, x->rank == root ? root : 99, dt, BT_SUM);
    fill(b->want, count, root, dt, BT_SUM);
    int rc = bt_broadcast(c, b->send, count, dt, root);
    x->calls++;
    if (rc != BT_OK)
        failf(x, "rank %d broadcast: %s: %s", x->rank, bt_strerror(rc), bt_last_error(c));
    else
        cmp_out(x, "broadcast", b->send, b->want, count, dt, BT_SUM);
}

static void sweep_count(struct rank_ctx *x, bt_comm *c, struct bufs *b, size_t count)
{
    int n = x->w->n;
    for (int dt = 0; dt < BT_DTYPE_COUNT && !x->fail[0]; dt++) {
        for (int op = 0; op < BT_OP_COUNT && !x->fail[0]; op++) {
            do_allreduce(x, c, b, count, (bt_dtype)dt, (bt_op)op, 1);
            do_allreduce(x, c, b, count, (bt_dtype)dt, (bt_op)op, 0);
            do_reduce(x, c, b, count, (bt_dtype)dt, (bt_op)op, (dt + op) % n);
            do_reduce_scatter(x, c, b, count, (bt_dtype)dt, (bt_op)op);
        }
        do_allgather(x, c, b, count, (bt_dtype)dt);
        do_broadcast(x, c, b, count, (bt_dtype)dt, (dt * 3) % n);
    }
}

static void sweep_big(struct rank_ctx *x, bt_comm *c, struct bufs *b)
{
    do_allreduce(x, c, b, BIG, BT_FLOAT32, BT_SUM, 1);
    do_allreduce(x, c, b, BIG, BT_BFLOAT16, BT_AVG, 0);
    do_allreduce(x, c, b, BIG, BT_INT64, BT_MAX, 1);
    do_allreduce(x, c, b, BIG, BT_FLOAT16, BT_SUM, 1);
    do_reduce_scatter(x, c, b, BIG / (size_t)x->w->n, BT_FLOAT32, BT_SUM);
    do_broadcast(x, c, b, BIG, BT_FLOAT64, x->w->n - 1);
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    struct world *w = x->w;
    struct bt__comm_cfg cfg = rt_cfg(x->rank, w->n, w->nnodes, w->port, w->transport);
    cfg.algo = w->algo;
    cfg.shm_slot_bytes = w->slot;
    cfg.ring_seg_bytes = w->ring_seg;
    struct bt__err err = {0};
    bt_comm *c = NULL;
    if (bt__comm_create(&cfg, &c, &err) != BT_OK) {
        failf(x, "rank %d: create: %s", x->rank, err.msg);
        return NULL;
    }
    size_t maxc = w->big ? BIG : 1000;
    struct bufs b = {malloc(maxc * 8 * (size_t)w->n), malloc(maxc * 8 * (size_t)w->n),
                     malloc(maxc * 8 * (size_t)w->n)};
    static const size_t counts[] = {0, 1, 7, 1000};
    for (size_t k = 0; k < 4 && !x->fail[0]; k++)
        sweep_count(x, c, &b, counts[k]);
    if (w->big && !x->fail[0])
        sweep_big(x, c, &b);
    int rc = bt_barrier(c);
    if (rc != BT_OK)
        failf(x, "rank %d barrier: %s", x->rank, bt_last_error(c));
    if (bt_finalize(c) != BT_OK && !x->fail[0])
        failf(x, "rank %d: finalize reported an error", x->rank);
    free(b.send), free(b.recv), free(b.want);
    return NULL;
}

static void run_world(struct world *w)
{
    struct bt__store_server *srv = rt_store_start(&w->port);
    struct rank_ctx *x = calloc((size_t)w->n, sizeof(*x));
    assert_non_null(x);
    for (int r = 0; r < w->n; r++)
        x[r].w = w, x[r].rank = r;
    int bad;
    double secs = RT_RUN(w->n, rank_main, x, &bad);
    print_message("# n=%d nodes=%d %s algo=%s slot=%zu: %ld calls per rank, %.2f s\n", w->n,
                  w->nnodes, w->transport, w->algo ? w->algo : "auto", w->slot, x[0].calls, secs);
    free(x);
    bt__store_server_destroy(srv);
    assert_false(bad);
}

static void test_shm(void **state)
{
    (void)state;
    for (int n = 1; n <= 8; n++) {
        struct world w = {.n = n, .nnodes = 1, .transport = "shm", .slot = 256};
        run_world(&w);
    }
    for (int n = 2; n <= 8; n += 3) { /* the 1M+3 sample, 64 KiB slots: still many rounds */
        struct world w = {.n = n, .nnodes = 1, .transport = "shm", .slot = 65536, .big = 1};
        run_world(&w);
    }
}

static void test_tcp(void **state)
{
    (void)state;
    static const char *algos[] = {"ring",       "rd",   "rabenseifner",     "auto",
                                  "thresholds", "tree", "scatter_allgather"};
    for (int a = 0; a < 7; a++)
        for (int n = 2; n <= 8; n += a < 4 ? 1 : 3) { /* the newer choices: 2, 5, 8 ranks */
            /* odd n with the ring: 256-byte segments, so 1000 elements take many segments
             * (the sweep's count of 1 leaves chunks empty, as before) */
            struct world w = {.n = n,
                              .nnodes = 1,
                              .transport = "tcp",
                              .algo = algos[a],
                              .ring_seg = a == 0 && n % 2 ? 256 : 0,
                              .big = (a == 3 && (n == 3 || n == 7)) || (a == 0 && n == 4)};
            run_world(&w);
        }
}

static void test_hierarchical(void **state)
{
    (void)state;
    static const int shapes[][2] = {{4, 2}, {6, 3}, {6, 2}, {8, 4}};
    for (int s = 0; s < 4; s++) {
        struct world w = {.n = shapes[s][0],
                          .nnodes = shapes[s][1],
                          .transport = "auto",
                          .slot = s == 1 ? 65536 : 512,
                          .big = s == 1};
        run_world(&w);
    }
}

static void test_half_conversions(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 ref;
        uint16_t hh = (uint16_t)h;
        memcpy(&ref, &hh, 2);
        float f = bt__half_to_float(hh);
        if (!isnan(f))
            assert_true(f == (float)ref);
        if (!isnan(f))
            assert_int_equal(bt__float_to_half(f), hh);
    }
    uint32_t seed = 12345;
    float in[1000], back[1000];
    uint16_t mine[1000];
    for (int i = 0; i < 1000; i++) {
        seed = seed * 1664525u + 1013904223u;
        uint32_t bits = seed;
        memcpy(&in[i], &bits, 4);
        if (isnan(in[i]))
            in[i] = 1.0f;
        in[i] = i % 2 ? in[i] : ldexpf((float)(seed >> 8) / 16777216.0f, (int)(seed % 40) - 26);
    }
    bt__f32_to_f16(mine, in, 1000);
    for (int i = 0; i < 1000; i++) {
        _Float16 r = (_Float16)in[i];
        uint16_t rb;
        memcpy(&rb, &r, 2);
        assert_int_equal(mine[i], rb);
        assert_int_equal(bt__float_to_half(in[i]), rb);
    }
    bt__f16_to_f32(back, mine, 1000);
    for (int i = 0; i < 1000; i++)
        assert_true(back[i] == bt__half_to_float(mine[i]));
    float nan = NAN;
    uint16_t bn;
    bt__f32_to_bf16(&bn, &nan, 1);
    assert_true((bn & 0x7f80) == 0x7f80 && (bn & 0x7f));
}

static void test_bad_args_sticky(void **state)
{
    (void)state;
    bt_comm *c = NULL;
    struct bt__comm_cfg cfg = {.size = 1, .local_size = 1, .nnodes = 1};
    struct bt__err err = {0};
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_OK);
    float v[4] = {1, 2, 3, 4};
    assert_int_equal(bt_allreduce(c, v, v, 4, BT_FLOAT32, BT_SUM), BT_OK);
    assert_true(v[3] == 4);
    assert_int_equal(bt_allreduce(NULL, v, v, 4, BT_FLOAT32, BT_SUM), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_allreduce(c, v, v, 4, (bt_dtype)42, BT_SUM), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_last_error(c), "dtype"));
    assert_int_equal(bt_broadcast(c, v, 4, BT_FLOAT32, 0), BT_ERR_INVALID_ARG); /* sticky */
    assert_int_equal(bt_finalize(c), BT_ERR_INVALID_ARG);
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_OK);
    assert_int_equal(bt_reduce(c, v, v, 4, BT_FLOAT32, BT_SUM, 1), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_last_error(c), "root"));
    bt_finalize(c);
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_OK);
    assert_int_equal(bt_allreduce(c, NULL, v, 4, BT_FLOAT32, BT_SUM), BT_ERR_INVALID_ARG);
    bt_finalize(c);
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_OK);
    assert_int_equal(bt_allreduce(c, NULL, NULL, 0, BT_FLOAT32, BT_SUM), BT_OK);
    assert_int_equal(bt_barrier(c), BT_OK);
    bt_finalize(c);
    cfg.transport = "carrier-pigeon";
    assert_int_equal(bt__comm_create(&cfg, &c, &err), BT_ERR_INVALID_USAGE);
    assert_null(c);
    assert_non_null(strstr(err.msg, "BATON_TRANSPORT"));
}

int main(void)
{
    setenv("BATON_TIMEOUT", "120", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_bad_args_sticky),
        cmocka_unit_test(test_shm),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_hierarchical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
