/* test_icoll.c: the nonblocking calls and requests, ranks as threads, against the naive
 * reference of tests/coll_ref.h.
 *
 * Per world (1..8 ranks over shm, 2..5 and 7 over tcp, a hierarchical 2x2 and 3x2): every
 * rank issues a batch of nonblocking collectives of every kind, dtype and op (counts 0, 1, 7,
 * 1000) on two communicators at once, interleaved in an order that differs between even and
 * odd ranks across the two communicators (legal: only the order within one communicator must
 * agree), with a blocking call issued while requests are outstanding; it polls some with
 * bt_test, waits on the rest, checks every result, frees one request before it completes, and
 * finalizes one communicator with a request still outstanding. Also the usage errors: NULL
 * request pointer, a request waited twice, a communicator used after bt_finalize.
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
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_worlds.h"

#define MAXC 1000
#define NOPS 12 /* requests per batch and communicator */

/* One outstanding operation: its kind, buffers and what to compare afterwards. */
struct op {
    int kind; /* 0 allreduce, 1 reduce, 2 reduce_scatter, 3 allgather, 4 broadcast, 5 barrier */
    bt_dtype dt;
    bt_op rop;
    size_t count;
    int root;
    char *send, *recv, *want;
    size_t want_count; /* elements of recv to compare */
    bt_request *req;
};

/* Fills op i of a batch (seed varies kind, dtype, op and count) and issues it on c. */
static int issue(struct rank_ctx *x, bt_comm *c, struct op *o, int seed)
{
    static const size_t counts[] = {0, 1, 7, MAXC};
    int n = x->w->n;
    o->kind = seed % 6;
    o->dt = (bt_dtype)((seed / 6) % BT_DTYPE_COUNT);
    o->rop = (bt_op)((seed / 2) % BT_OP_COUNT);
    o->count = counts[(seed / 3) % 4];
    o->root = seed % n;
    size_t es = bt_dtype_size(o->dt), cnt = o->count;
    switch (o->kind) {
    case 0:
        fill(o->send, cnt, x->rank, o->dt, o->rop);
        for (size_t i = 0; i < cnt; i++)
            expect(o->want, i, i, n, o->dt, o->rop);
        o->want_count = cnt;
        return bt_iallreduce(c, o->send, o->recv, cnt, o->dt, o->rop, &o->req);
    case 1:
        fill(o->send, cnt, x->rank, o->dt, o->rop);
        for (size_t i = 0; i < cnt; i++)
            expect(o->want, i, i, n, o->dt, o->rop);
        o->want_count = x->rank == o->root ? cnt : 0;
        return bt_ireduce(c, o->send, o->recv, cnt, o->dt, o->rop, o->root, &o->req);
    case 2:
        fill(o->send, cnt * (size_t)n, x->rank, o->dt, o->rop);
        for (size_t i = 0; i < cnt; i++)
            expect(o->want, i, (size_t)x->rank * cnt + i, n, o->dt, o->rop);
        o->want_count = cnt;
        return bt_ireduce_scatter(c, o->send, o->recv, cnt, o->dt, o->rop, &o->req);
    case 3:
        fill(o->send, cnt, x->rank, o->dt, BT_SUM);
        for (int r = 0; r < n; r++)
            fill(o->want + (size_t)r * cnt * es, cnt, r, o->dt, BT_SUM);
        o->want_count = cnt * (size_t)n;
        return bt_iallgather(c, o->send, o->recv, cnt, o->dt, &o->req);
    case 4:
        fill(o->recv, cnt, x->rank, o->dt, BT_SUM);
        fill(o->want, cnt, o->root, o->dt, BT_SUM);
        o->want_count = cnt;
        return bt_ibroadcast(c, o->recv, cnt, o->dt, o->root, &o->req);
    default: o->want_count = 0; return bt_ibarrier(c, &o->req);
    }
}

static void check_op(struct rank_ctx *x, struct op *o, int i)
{
    size_t es = bt_dtype_size(o->dt);
    if (o->want_count && memcmp(o->recv, o->want, o->want_count * es) != 0)
        failf(x, "rank %d n=%d %s op %d kind %d %s %s count %zu: wrong result", x->rank, x->w->n,
              x->w->transport, i, o->kind, dtn[o->dt], opn[o->rop], o->count);
}

static struct op *alloc_ops(int nops, int n)
{
    struct op *ops = calloc((size_t)nops, sizeof(*ops));
    size_t bytes = (size_t)MAXC * 8 * (size_t)n;
    for (int i = 0; i < nops; i++) {
        ops[i].send = malloc(bytes);
        ops[i].recv = malloc(bytes);
        ops[i].want = malloc(bytes);
    }
    return ops;
}

static void free_ops(struct op *ops, int nops)
{
    for (int i = 0; i < nops; i++)
        free(ops[i].send), free(ops[i].recv), free(ops[i].want);
    free(ops);
}

/* Two communicators, NOPS requests each, issued alternately (even ranks start with a, odd
 * ranks with b), a blocking allreduce on a in the middle. */
static void batch(struct rank_ctx *x, bt_comm *a, bt_comm *b, struct op *oa, struct op *ob,
                  int round)
{
    for (int i = 0; i < NOPS && !x->fail[0]; i++) {
        bt_comm *first = x->rank % 2 ? b : a, *second = x->rank % 2 ? a : b;
        struct op *o1 = x->rank % 2 ? &ob[i] : &oa[i], *o2 = x->rank % 2 ? &oa[i] : &ob[i];
        int rc = issue(x, first, o1, round * 31 + i * 7 + (first == b));
        if (rc == BT_OK)
            rc = issue(x, second, o2, round * 31 + i * 7 + (second == b));
        if (rc != BT_OK)
            failf(x, "rank %d: issue %d: %s", x->rank, i, bt_strerror(rc));
        if (i == NOPS / 2) {
            int32_t v = x->rank + 1, want = x->w->n * (x->w->n + 1) / 2;
            if (bt_allreduce(a, &v, &v, 1, BT_INT32, BT_SUM) != BT_OK || v != want)
                failf(x, "rank %d: blocking allreduce among requests: %d, want %d", x->rank, v,
                      want);
        }
    }
    for (int i = 0; i < NOPS && !x->fail[0]; i++) {
        int done = 0;
        /* poll the first few with bt_test until done (the progress thread runs them) */
        while (i < 3 && !done)
            if (bt_test(oa[i].req, &done) != BT_OK)
                break;
        int ra = bt_wait(oa[i].req), rb = bt_wait(ob[i].req);
        if (ra != BT_OK || rb != BT_OK)
            failf(x, "rank %d: wait %d: %s / %s: %s", x->rank, i, bt_strerror(ra), bt_strerror(rb),
                  bt_request_error(ra ? oa[i].req : ob[i].req));
        check_op(x, &oa[i], i);
        check_op(x, &ob[i], i);
        if (i == 0 && bt_wait(oa[i].req) != BT_ERR_INVALID_USAGE)
            failf(x, "rank %d: a request waited twice did not fail", x->rank);
        bt_request_free(oa[i].req);
        bt_request_free(ob[i].req);
    }
}

/* The grouped allreduce: buffers of 0, 1, 7 and 1000 elements fused, blocking and not. */
static void multi(struct rank_ctx *x, bt_comm *c)
{
    static const size_t counts[] = {0, 1, 7, MAXC};
    int n = x->w->n;
    for (int dt = 0; dt < BT_DTYPE_COUNT; dt++) {
        char *bufs[4], *want[4];
        for (int i = 0; i < 4; i++) {
            bufs[i] = malloc(MAXC * 8), want[i] = malloc(MAXC * 8);
            fill(bufs[i], counts[i], x->rank + i, (bt_dtype)dt, BT_MAX);
            for (size_t j = 0; j < counts[i]; j++) {
                double m = val(i, j, (bt_dtype)dt, BT_MAX);
                for (int r = 1; r < n; r++)
                    m = m > val(r + i, j, (bt_dtype)dt, BT_MAX)
                            ? m
                            : val(r + i, j, (bt_dtype)dt, BT_MAX);
                put(want[i], j, (bt_dtype)dt, m);
            }
        }
        bt_request *req = NULL;
        int rc = dt % 2
                     ? bt_allreduce_multi(c, 4, (void *const *)bufs, counts, (bt_dtype)dt, BT_MAX)
                     : bt_iallreduce_multi(c, 4, (void *const *)bufs, counts, (bt_dtype)dt, BT_MAX,
                                           &req);
        if (rc == BT_OK && req)
            rc = bt_wait(req);
        bt_request_free(req);
        for (int i = 0; i < 4; i++) {
            if (rc != BT_OK || memcmp(bufs[i], want[i], counts[i] * bt_dtype_size((bt_dtype)dt)))
                failf(x, "rank %d: allreduce_multi %s buffer %d: %s", x->rank, dtn[dt], i,
                      rc ? bt_last_error(c) : "wrong result");
            free(bufs[i]), free(want[i]);
        }
    }
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    int n = x->w->n;
    bt_comm *a = rank_comm(x, 0), *b = a ? rank_comm(x, 1) : NULL;
    if (!b) {
        bt_finalize(a);
        return NULL;
    }
    struct op *oa = alloc_ops(NOPS, n), *ob = alloc_ops(NOPS, n);
    for (int round = 0; round < 3 && !x->fail[0]; round++)
        batch(x, a, b, oa, ob, round);
    /* freed before completion, then finalize with one outstanding: both still complete */
    float v[4] = {1, 2, 3, 4}, u[4] = {1, 1, 1, 1};
    bt_request *freed = NULL, *pending = NULL;
    if (bt_iallreduce(b, v, v, 4, BT_FLOAT32, BT_SUM, &freed) != BT_OK)
        failf(x, "rank %d: iallreduce to free", x->rank);
    bt_request_free(freed);
    if (bt_iallreduce(b, u, u, 4, BT_FLOAT32, BT_SUM, &pending) != BT_OK)
        failf(x, "rank %d: iallreduce left pending", x->rank);
    if (bt_finalize(b) != BT_OK)
        failf(x, "rank %d: finalize with a request outstanding failed", x->rank);
    if (bt_wait(pending) != BT_OK || u[0] != (float)n || v[3] != 4.0f * (float)n)
        failf(x, "rank %d: requests outstanding at finalize: %g %g", x->rank, u[0], v[3]);
    bt_request_free(pending);
    if (bt_barrier(b) != BT_ERR_INVALID_USAGE)
        failf(x, "rank %d: a finalized communicator was accepted", x->rank);
    multi(x, a);
    if (bt_iallreduce(a, v, v, 4, BT_FLOAT32, BT_SUM, NULL) != BT_ERR_INVALID_ARG)
        failf(x, "rank %d: NULL request pointer accepted", x->rank);
    if (bt_finalize(a) != BT_OK)
        failf(x, "rank %d: finalize: %s", x->rank, "error");
    free_ops(oa, NOPS);
    free_ops(ob, NOPS);
    return NULL;
}

static void test_shm(void **state)
{
    (void)state;
    run_shm_worlds(rank_main);
}

static void test_tcp(void **state)
{
    (void)state;
    static const struct world ws[] = {
        {2, 1, "tcp", 0}, {3, 1, "tcp", 0}, {4, 1, "tcp", 0}, {5, 1, "tcp", 0}, {7, 1, "tcp", 0}};
    run_worlds(ws, (int)(sizeof(ws) / sizeof(ws[0])), rank_main);
}

static void test_hierarchical(void **state)
{
    (void)state;
    static const struct world ws[] = {{4, 2, "auto", 0}, {6, 3, "auto", 0}};
    run_worlds(ws, 2, rank_main);
}

int main(void)
{
    setenv("BATON_TIMEOUT", "120", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shm),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_hierarchical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
