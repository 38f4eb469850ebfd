/* test_group.c: grouped calls (bt_group_start/bt_group_end), ranks as threads, against the
 * naive reference of tests/coll_ref.h.
 *
 * Per world (1..8 ranks over shm, 2, 3, 5 over tcp, a hierarchical 2x2):
 *   - fusion: for every dtype and op, a group of allreduces (counts 0, 1, 7, 1000, in place and
 *     out of place, blocking and not) fused into one request (the communicator's call count
 *     grows by one), then a broadcast and two allreduces of another op in the same group, not
 *     fused with them; every result checked;
 *   - point-to-point: blocking bt_send then bt_recv of 100,000 floats around the ring inside a
 *     group (without the group this deadlocks: it exceeds the streams' buffering), with an
 *     allreduce between them placed differently on even and odd ranks, and a group spanning
 *     two communicators;
 *   - bad usage: bt_group_end without a group, a nested bt_group_start, bt_wait and bt_test on
 *     a request of the open group, bt_comm_split inside a group: BT_ERR_INVALID_USAGE with a
 *     message, and the group still works afterwards.
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
#include "collectives/progress.h"
#include "rendezvous/store.h"
#include "tests/coll_ref.h"
#include "tests/unit/rank_worlds.h"

#define MAXC 1000
#define NP2P 100000 /* floats: 400 KB, more than shm's 32 KiB stream and TCP's socket buffers */

static uint64_t issued(bt_comm *c)
{
    pthread_mutex_lock(&c->q->mu);
    uint64_t n = c->q->issued;
    pthread_mutex_unlock(&c->q->mu);
    return n;
}

/* One grouped allreduce: buffers and what to expect. */
struct part {
    size_t count;
    char send[MAXC * 8], recv[MAXC * 8], want[MAXC * 8];
    bt_request *req;
};

static void fill_part(struct rank_ctx *x, struct part *p, size_t count, bt_dtype dt, bt_op op)
{
    p->count = count, p->req = NULL;
    fill(p->send, count, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(p->want, i, i, x->w->n, dt, op);
}

/* Parts 0..3 (op) fuse; part 4 is a broadcast; parts 5, 6 use another op and fuse together. */
static void fusion(struct rank_ctx *x, bt_comm *c, struct part *p, bt_dtype dt, bt_op op)
{
    static const size_t counts[] = {0, 1, 7, MAXC};
    bt_op op2 = (bt_op)((op + 1) % BT_OP_COUNT);
    size_t es = bt_dtype_size(dt);
    for (int i = 0; i < 4; i++)
        fill_part(x, &p[i], counts[i], dt, op);
    fill_part(x, &p[5], 3, dt, op2);
    fill_part(x, &p[6], 5, dt, op2);
    fill(p[4].recv, 9, x->rank, dt, BT_SUM);
    fill(p[4].want, 9, 0, dt, BT_SUM);
    memcpy(p[1].recv, p[1].send, es); /* part 1 in place */
    uint64_t before = issued(c);
    int rc = bt_group_start();
    rc = rc ? rc : bt_iallreduce(c, p[0].send, p[0].recv, 0, dt, op, &p[0].req);
    rc = rc ? rc : bt_allreduce(c, p[1].recv, p[1].recv, 1, dt, op); /* blocking: at end */
    rc = rc ? rc : bt_iallreduce(c, p[2].send, p[2].recv, 7, dt, op, &p[2].req);
    rc = rc ? rc : bt_allreduce(c, p[3].send, p[3].recv, MAXC, dt, op);
    rc = rc ? rc : bt_ibroadcast(c, p[4].recv, 9, dt, 0, &p[4].req);
    rc = rc ? rc : bt_iallreduce(c, p[5].send, p[5].recv, 3, dt, op2, &p[5].req);
    rc = rc ? rc : bt_allreduce(c, p[6].send, p[6].recv, 5, dt, op2);
    int end = bt_group_end();
    if (rc != BT_OK || end != BT_OK) {
        failf(x, "rank %d: group %s %s: %s / %s: %s", x->rank, dtn[dt], opn[op], bt_strerror(rc),
              bt_strerror(end), bt_last_error(c));
        return;
    }
    if (issued(c) - before != 3)
        failf(x, "rank %d: group %s %s: %llu requests queued, want 3 (4 fused, 1, 2 fused)",
              x->rank, dtn[dt], opn[op], (unsigned long long)(issued(c) - before));
    for (int i = 0; i < 7; i++) {
        if (p[i].req && bt_wait(p[i].req) != BT_OK)
            failf(x, "rank %d: group part %d: %s", x->rank, i, bt_request_error(p[i].req));
        bt_request_free(p[i].req);
        size_t n = i == 4 ? 9 : p[i].count;
        if (memcmp(p[i].recv, p[i].want, n * es) != 0)
            failf(x, "rank %d n=%d %s: group %s %s part %d (count %zu): wrong result", x->rank,
                  x->w->n, x->w->transport, dtn[dt], opn[op], i, n);
    }
}

/* Blocking send and receive around the ring in one group, an allreduce between them placed
 * differently on even and odd ranks; the same shift on comm b in the same group. */
static void ring(struct rank_ctx *x, bt_comm *a, bt_comm *b)
{
    int n = x->w->n, me = x->rank, to = (me + 1) % n, from = (me + n - 1) % n;
    float *s = malloc(NP2P * 4), *r = malloc(NP2P * 4), *s2 = malloc(64), *r2 = malloc(64);
    int32_t v = me + 1;
    for (int i = 0; i < NP2P; i++)
        s[i] = (float)(me * 1000 + i % 1000), r[i] = -1;
    for (int i = 0; i < 16; i++)
        s2[i] = (float)(me + i), r2[i] = -1;
    int rc = bt_group_start(), rc2 = BT_OK;
    if (me % 2) {
        rc = rc ? rc : bt_recv(a, r, NP2P, BT_FLOAT32, from, 5);
        rc = rc ? rc : bt_allreduce(a, &v, &v, 1, BT_INT32, BT_SUM);
        rc = rc ? rc : bt_send(a, s, NP2P, BT_FLOAT32, to, 5);
    } else {
        rc = rc ? rc : bt_send(a, s, NP2P, BT_FLOAT32, to, 5);
        rc = rc ? rc : bt_allreduce(a, &v, &v, 1, BT_INT32, BT_SUM);
        rc = rc ? rc : bt_recv(a, r, NP2P, BT_FLOAT32, from, 5);
    }
    rc2 = bt_send(b, s2, 16, BT_FLOAT32, from, 6); /* the other way round, on comm b */
    rc2 = rc2 ? rc2 : bt_recv(b, r2, 16, BT_FLOAT32, to, 6);
    int end = bt_group_end();
    if (rc || rc2 || end)
        failf(x, "rank %d: p2p group: %s %s %s: %s", x->rank, bt_strerror(rc), bt_strerror(rc2),
              bt_strerror(end), bt_last_error(a));
    for (int i = 0; i < NP2P && !x->fail[0]; i++)
        if (r[i] != (float)(from * 1000 + i % 1000))
            failf(x, "rank %d n=%d: p2p group: element %d is %g", x->rank, n, i, r[i]);
    for (int i = 0; i < 16 && !x->fail[0]; i++)
        if (r2[i] != (float)(to + i))
            failf(x, "rank %d n=%d: p2p group on comm b: element %d is %g", x->rank, n, i, r2[i]);
    if (v != n * (n + 1) / 2)
        failf(x, "rank %d: allreduce among grouped sends: %d", x->rank, v);
    free(s), free(r), free(s2), free(r2);
}

static void expect_usage(struct rank_ctx *x, const char *what, int rc, const char *words)
{
    if (rc != BT_ERR_INVALID_USAGE)
        failf(x, "rank %d: %s: %s, want invalid usage", x->rank, what, bt_strerror(rc));
    else if (!strstr(bt_last_error(NULL), words))
        failf(x, "rank %d: %s: message '%s' lacks '%s'", x->rank, what, bt_last_error(NULL), words);
}

static void bad_usage(struct rank_ctx *x, bt_comm *a)
{
    expect_usage(x, "end without start", bt_group_end(), "no group is open");
    if (bt_group_start() != BT_OK)
        failf(x, "rank %d: bt_group_start", x->rank);
    expect_usage(x, "nested start", bt_group_start(), "already open");
    float f[3] = {1, 2, 3};
    bt_request *req = NULL;
    int done = 1;
    if (bt_iallreduce(a, f, f, 3, BT_FLOAT32, BT_SUM, &req) != BT_OK)
        failf(x, "rank %d: iallreduce in a group", x->rank);
    expect_usage(x, "wait inside the open group", bt_wait(req), "still open");
    expect_usage(x, "test inside the open group", bt_test(req, &done), "still open");
    if (done)
        failf(x, "rank %d: bt_test said done for a request of the open group", x->rank);
    if (bt_group_end() != BT_OK || bt_wait(req) != BT_OK || f[2] != 3.0f * (float)x->w->n)
        failf(x, "rank %d: the group after bad usage: %g", x->rank, f[2]);
    bt_request_free(req);
}

static void *rank_main(void *arg)
{
    struct rank_ctx *x = arg;
    bt_comm *a = rank_comm(x, 0), *b = a ? rank_comm(x, 1) : NULL;
    struct part *p = calloc(7, sizeof(*p));
    if (!b || !p)
        goto out;
    for (int dt = 0; dt < BT_DTYPE_COUNT && !x->fail[0]; dt++)
        for (int op = 0; op < BT_OP_COUNT && !x->fail[0]; op++)
            fusion(x, a, p, (bt_dtype)dt, (bt_op)op);
    ring(x, a, b);
    bad_usage(x, a);
    /* a split inside a group: invalid usage, sticky on b */
    bt_comm *child = NULL;
    bt_group_start();
    if (bt_comm_split(b, 0, 0, &child) != BT_ERR_INVALID_USAGE || child)
        failf(x, "rank %d: bt_comm_split inside a group was accepted", x->rank);
    if (bt_group_end() != BT_OK)
        failf(x, "rank %d: an empty group failed", x->rank);
    if (!strstr(bt_last_error(b), "inside a group"))
        failf(x, "rank %d: split in a group: '%s'", x->rank, bt_last_error(b));
out:
    free(p);
    bt_finalize(b);
    if (a && bt_finalize(a) != BT_OK)
        failf(x, "rank %d: finalize: %s", x->rank, "error");
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
    static const struct world ws[] = {{2, 1, "tcp", 0}, {3, 1, "tcp", 0}, {5, 1, "tcp", 0}};
    run_worlds(ws, 3, rank_main);
}

static void test_hierarchical(void **state)
{
    (void)state;
    static const struct world ws[] = {{4, 2, "auto", 0}};
    run_worlds(ws, 1, rank_main);
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
