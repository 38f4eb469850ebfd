/* coll.c: the public collectives: argument checks, sequence numbers, sticky errors, and the
 * choice of path (backend/backend.h): device buffers go to the device path (backend/cuda.h),
 * host buffers to Open MPI when the job runs under mpirun (backend/mpi.c), else to the
 * native path below.
 *
 * Native paths, by the shape of the job:
 *   one rank            local copies
 *   one node (shm)      the node's shared segment runs the whole collective (transport/shm.c)
 *   several nodes, or BATON_TRANSPORT=tcp
 *                       point-to-point algorithms over the TCP mesh of all ranks; allreduce
 *                       picks recursive doubling, Rabenseifner or the ring by size (below);
 *                       with several ranks per node (and ranks numbered node by node) the
 *                       allreduce is hierarchical: reduce to local rank 0 over shm, allreduce
 *                       across the node leaders over TCP, broadcast within the node over shm.
 *
 * float16/bfloat16 on the TCP path are widened to float32 for the whole algorithm and rounded
 * once at the end. BT_AVG is a sum followed by one division by the world size (integers:
 * the wrapped sum divided with truncation toward zero).
 *
 * Which algorithm runs is choose.c's: the cost model's cheapest (algo/cost.h) by default.
 * The earlier thresholds (BATON_ALGO=thresholds), from `BATON_ALGO=X baton run -n 4 --
 * build/bench/allreduce_bench --backend tcp -b 4K -e 16M -f 4 -n 20 -w 5` on the quiet 2-core
 * development VM (4 ranks on 2 cores; per-op medians in µs, the faster of two runs):
 *              4K   16K   64K  256K    1M    4M    16M
 *   rd        101    98   185   353  1192  9630  40650
 *   rabensf.  157   159   205   312   774  6493  27817
 *   ring      257   271   295   480  1326  6999  28957
 * so recursive doubling up to 64 KiB, Rabenseifner up to 4 MiB, the ring above (the two are
 * within noise at 16 MiB; at 2 ranks all three send the same bytes).
 *   bytes <= BT_RD_MAX_BYTES            recursive doubling (fewest messages)
 *   bytes <= BT_RABENSEIFNER_MAX_BYTES  Rabenseifner (log n messages, half the bytes of rd)
 *   larger                              ring (bandwidth-optimal, in 8 MiB segments)
 */
#include <stdlib.h>
#include <string.h>

#include "collectives/backend/backend.h"
#include "collectives/backend/cuda.h"
#include "collectives/flight.h"
#include "collectives/progress.h"
#include "collectives/reduce.h"
#include "collectives/algo/algo.h"
#include "collectives/algo/cost.h"
#include "common/log.h"

/* The checks of a call made in the calling thread: a live communicator without a sticky error. */
static int begin(bt_comm *c, const char *name)
{
    if (!c)
        return BT_ERR_INVALID_ARG;
    BT_CHECK(bt__comm_check_live(c, name));
    return atomic_load(&c->q->failed);
}

/* An argument error of call name, found in the calling thread (sticky). */
#define bad(c, name, what) bt__comm_usage((c), BT_ERR_INVALID_ARG, "%s: %s", (name), (what))

/* Checks dtype, op, count (elements times mult must fit) and buffers. */
static int check(bt_comm *c, const char *name, const void *send, const void *recv, size_t count,
                 size_t mult, bt_dtype dt, int op)
{
    if ((unsigned)dt >= BT_DTYPE_COUNT)
        return bad(c, name, "unknown dtype; hint: use a BT_FLOAT32 ... BT_UINT8 constant");
    if (op >= 0 && (unsigned)op >= BT_OP_COUNT)
        return bad(c, name, "unknown op; hint: use BT_SUM, BT_PROD, BT_MIN, BT_MAX or BT_AVG");
    if (count > SIZE_MAX / 16 / (mult ? mult : 1))
        return bad(c, name, "count too large");
    if (count > 0 && (!send || !recv))
        return bad(c, name, "NULL buffer with a non-zero count");
    return BT_OK;
}

static int check_root(bt_comm *c, const char *name, int root)
{
    if (root < 0 || root >= c->size)
        return bt__comm_usage(c, BT_ERR_INVALID_ARG,
                              "%s: root %d is not a rank of the communicator (size %d)", name, root,
                              c->size);
    return BT_OK;
}

static struct bt__group world(bt_comm *c)
{
    return (struct bt__group){.n = c->size, .me = c->rank, .ranks = c->world_ranks};
}

static int run_algo(bt_comm *c, const struct bt__group *g, void *buf, size_t count, bt_dtype dt,
                    bt_op op)
{
    if (g->n == 1 || count == 0)
        return BT_OK;
    switch (bt__choose_allreduce(c, g->n, count * bt_dtype_size(dt))) {
    case BT_ALGO_RD: return bt__rd_allreduce(c, g, buf, count, dt, op);
    case BT_ALGO_RABENSEIFNER: return bt__rabenseifner_allreduce(c, g, buf, count, dt, op);
    default: return bt__ring_allreduce(c, g, buf, count, dt, op);
    }
}

/* In-place allreduce of buf over group g with point-to-point algorithms; AVG divides by div. */
static int p2p_allreduce(bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                         bt_dtype dt, bt_op op, int div)
{
    bt_op rop = op == BT_AVG ? BT_SUM : op;
    int d = op == BT_AVG ? div : 1;
    if (!bt__is_half(dt)) {
        BT_CHECK(run_algo(c, g, buf, count, dt, rop));
        bt__reduce_div(dt, buf, count, d);
        return BT_OK;
    }
    float *f = bt__scratch(c, 0, count * sizeof(float));
    if (!f && count)
        return c->err.code;
    bt__half_widen(dt, f, buf, count);
    BT_CHECK(run_algo(c, g, f, count, BT_FLOAT32, rop));
    bt__reduce_div(BT_FLOAT32, f, count, d);
    bt__half_narrow(dt, buf, f, count);
    return BT_OK;
}

/* Node sum to local rank 0 over shm, allreduce across node leaders, broadcast in the node. */
static int hier_allreduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                          bt_op op)
{
    struct bt__coll_args a = {.send = send,
                              .recv = recv,
                              .count = count,
                              .dtype = dt,
                              .op = op == BT_AVG ? BT_SUM : op,
                              .root = 0,
                              .div = 1};
    BT_CHECK(c->intra->reduce(c, &a));
    bt__flight_phase(c, 0, BT_FL_PHASE_HIER); /* the timeline's phases (flight.h) */
    if (c->local_rank == 0) {
        struct bt__group lg = {.n = c->nnodes, .me = c->node_rank, .ranks = c->leader_ranks};
        BT_CHECK(p2p_allreduce(c, &lg, recv, count, dt, op, c->size));
    }
    bt__flight_phase(c, 1, BT_FL_PHASE_HIER);
    return c->intra->broadcast(c, &a);
}

static int allreduce_impl(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                          bt_op op)
{
    size_t bytes = count * bt_dtype_size(dt);
    if (c->size == 1 || (!c->inter && c->intra) || c->hierarchical) {
        if (c->size == 1) {
            if (send != recv && bytes)
                memmove(recv, send, bytes);
            return BT_OK;
        }
        if (c->hierarchical)
            return hier_allreduce(c, send, recv, count, dt, op);
        struct bt__coll_args a = {.send = send,
                                  .recv = recv,
                                  .count = count,
                                  .dtype = dt,
                                  .op = op == BT_AVG ? BT_SUM : op,
                                  .root = -1,
                                  .div = op == BT_AVG ? c->size : 1};
        return c->intra->reduce(c, &a);
    }
    if (send != recv && bytes)
        memmove(recv, send, bytes);
    struct bt__group g = world(c);
    return p2p_allreduce(c, &g, recv, count, dt, op, c->size);
}

/* ---- the native path: one function per collective, arguments already checked ---- */

/* A reduce over the TCP mesh by a binomial tree (algo/bcast.c): in a working copy (float32
 * for the half types), divided and narrowed at the root only. */
static int tree_reduce(bt_comm *c, const struct bt__call *a)
{
    bt_dtype dt = a->dtype, wdt = bt__is_half(dt) ? BT_FLOAT32 : dt;
    size_t n = a->count, wes = bt_dtype_size(wdt);
    int root = c->rank == a->root;
    void *work = root && !bt__is_half(dt) ? a->recv : bt__scratch(c, 2, n * wes);
    if (!work && n)
        return c->err.code;
    if (bt__is_half(dt))
        bt__half_widen(dt, work, a->send, n);
    else if (work != a->send && n)
        memmove(work, a->send, n * wes);
    struct bt__group g = world(c);
    BT_CHECK(bt__tree_reduce(c, &g, work, n, wdt, a->op == BT_AVG ? BT_SUM : a->op, a->root));
    if (!root)
        return BT_OK;
    bt__reduce_div(wdt, work, n, a->op == BT_AVG ? c->size : 1);
    if (bt__is_half(dt))
        bt__half_narrow(dt, a->recv, work, n);
    return BT_OK;
}

static int native_reduce(bt_comm *c, const struct bt__call *a)
{
    if (c->size > 1 && c->intra && !c->inter) {
        struct bt__coll_args ca = {.send = a->send,
                                   .recv = a->recv,
                                   .count = a->count,
                                   .dtype = a->dtype,
                                   .op = a->op == BT_AVG ? BT_SUM : a->op,
                                   .root = a->root,
                                   .div = a->op == BT_AVG ? c->size : 1};
        return c->intra->reduce(c, &ca);
    }
    if (c->size > 1 && !c->hierarchical &&
        bt__choose_reduce(c, c->size, a->count * bt_dtype_size(a->dtype)) == BT_COST_TREE)
        return tree_reduce(c, a);
    void *buf = a->recv;
    if (c->rank != a->root && !(buf = bt__scratch(c, 2, a->count * bt_dtype_size(a->dtype))) &&
        a->count)
        return c->err.code;
    return allreduce_impl(c, a->send, buf, a->count, a->dtype, a->op);
}

static int p2p_reduce_scatter(bt_comm *c, const void *send, void *recv, size_t rc, bt_dtype dt,
                              bt_op op)
{
    size_t n = (size_t)c->size, wes = bt__is_half(dt) ? 4 : bt_dtype_size(dt);
    bt_dtype wdt = bt__is_half(dt) ? BT_FLOAT32 : dt;
    if (rc == 0)
        return BT_OK;
    char *work = bt__scratch(c, 2, n * rc * wes);
    struct bt__group g = world(c);
    if (!work)
        return c->err.code;
    if (bt__is_half(dt))
        bt__half_widen(dt, (float *)(void *)work, send, n * rc);
    else
        memcpy(work, send, n * rc * wes);
    BT_CHECK(bt__ring_reduce_scatter(c, &g, work, rc, wdt, op == BT_AVG ? BT_SUM : op));
    char *mine = work + (size_t)c->rank * rc * wes;
    bt__reduce_div(wdt, mine, rc, op == BT_AVG ? c->size : 1);
    if (bt__is_half(dt))
        bt__half_narrow(dt, recv, (const float *)(const void *)mine, rc);
    else
        memcpy(recv, mine, rc * wes);
    return BT_OK;
}

static int native_reduce_scatter(bt_comm *c, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype);
    if (c->size == 1) {
        if (a->send != a->recv && a->count)
            memmove(a->recv, a->send, a->count * es);
        return BT_OK;
    }
    if (c->intra && !c->inter) {
        struct bt__coll_args ca = {.send = a->send,
                                   .recv = a->recv,
                                   .count = a->count,
                                   .dtype = a->dtype,
                                   .op = a->op == BT_AVG ? BT_SUM : a->op,
                                   .root = -1,
                                   .div = a->op == BT_AVG ? c->size : 1};
        return c->intra->reduce_scatter(c, &ca);
    }
    return p2p_reduce_scatter(c, a->send, a->recv, a->count, a->dtype, a->op);
}

static int native_allgather(bt_comm *c, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype);
    char *mine = (char *)a->recv + (size_t)c->rank * a->count * es;
    if (c->size > 1 && c->intra && !c->inter) {
        struct bt__coll_args ca = {.send = a->send,
                                   .recv = a->recv,
                                   .count = a->count,
                                   .dtype = a->dtype};
        return c->intra->allgather(c, &ca);
    }
    if (a->send != mine && a->count)
        memmove(mine, a->send, a->count * es);
    if (c->size == 1)
        return BT_OK;
    struct bt__group g = world(c);
    return bt__ring_allgather(c, &g, a->recv, a->count, es);
}

static int native_broadcast(bt_comm *c, const struct bt__call *a)
{
    if (c->size == 1 || a->count == 0)
        return BT_OK;
    if (c->intra && !c->inter) {
        struct bt__coll_args ca = {.recv = a->recv,
                                   .count = a->count,
                                   .dtype = a->dtype,
                                   .root = a->root};
        return c->intra->broadcast(c, &ca);
    }
    struct bt__group g = world(c);
    size_t bytes = a->count * bt_dtype_size(a->dtype);
    if (bt__choose_broadcast(c, g.n, bytes) == BT_COST_SCATTER_ALLGATHER)
        return bt__scatter_allgather_broadcast(c, &g, a->recv, bytes, a->root);
    return bt__tree_broadcast(c, &g, a->recv, bytes, a->root);
}

static int native_barrier(bt_comm *c)
{
    if (c->size == 1)
        return BT_OK;
    if (c->intra && !c->inter)
        return c->intra->barrier(c);
    uint8_t token = 0;
    return allreduce_impl(c, &token, &token, 1, BT_UINT8, BT_MAX);
}

int bt__host_run(bt_comm *c, const struct bt__call *a)
{
    if (c->mpi)
        return c->mpi->run(c, a);
    switch (a->kind) {
    case BT_COLL_ALLREDUCE: return allreduce_impl(c, a->send, a->recv, a->count, a->dtype, a->op);
    case BT_COLL_BROADCAST: return native_broadcast(c, a);
    case BT_COLL_ALLGATHER: return native_allgather(c, a);
    case BT_COLL_REDUCE_SCATTER: return native_reduce_scatter(c, a);
    case BT_COLL_REDUCE: return native_reduce(c, a);
    case BT_COLL_BARRIER: return native_barrier(c);
    default: break; /* exchange.c runs the others itself */
    }
    return bt__err_set(&c->err, BT_ERR_INTERNAL, "unknown collective kind %d", (int)a->kind);
}

size_t bt__call_send_count(const bt_comm *c, const struct bt__call *a)
{
    if (a->kind == BT_COLL_BARRIER)
        return 0;
    return a->kind == BT_COLL_REDUCE_SCATTER ? a->count * (size_t)c->size : a->count;
}

size_t bt__call_recv_count(const bt_comm *c, const struct bt__call *a)
{
    if (a->kind == BT_COLL_BARRIER || (a->kind == BT_COLL_REDUCE && c->rank != a->root))
        return 0;
    return a->kind == BT_COLL_ALLGATHER ? a->count * (size_t)c->size : a->count;
}

/* Where the buffers live is decided first: device buffers go to the device path, host
 * buffers to MPI or the native path. */
int bt__coll_dispatch(bt_comm *c, const struct bt__call *a)
{
    int dev = -1;
    BT_CHECK(bt__device_locate(c, a, &dev));
    if (dev >= 0)
        return bt__device_run(c, a, dev);
    if (c->backend_choice == BT_BACKEND_NCCL && a->kind != BT_COLL_BARRIER &&
        bt__call_send_count(c, a) > 0)
        return bt__err_set(&c->err, BT_ERR_INVALID_ARG,
                           "%s #%llu: BATON_BACKEND=nccl takes device (CUDA) buffers, this one "
                           "is host memory; hint: pass cudaMalloc'ed buffers or unset "
                           "BATON_BACKEND",
                           c->coll_name, (unsigned long long)c->coll_seq);
    return bt__host_run(c, a);
}

/* ---- the public calls: check in the caller's thread, then one queue (progress.c) ---- */

static int iallreduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
                      bt_request **req)
{
    BT_CHECK(begin(c, "allreduce"));
    BT_CHECK(check(c, "allreduce", send, recv, count, 1, dt, (int)op));
    struct bt__call a = {.kind = BT_COLL_ALLREDUCE,
                         .send = send,
                         .recv = recv,
                         .count = count,
                         .dtype = dt,
                         .op = op};
    return bt__coll_submit(c, "allreduce", bt__coll_dispatch, &a, req);
}

static int ireduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
                   int root, bt_request **req)
{
    BT_CHECK(begin(c, "reduce"));
    BT_CHECK(check_root(c, "reduce", root));
    BT_CHECK(check(c, "reduce", send, c->rank == root ? recv : send, count, 1, dt, (int)op));
    struct bt__call a = {.kind = BT_COLL_REDUCE,
                         .send = send,
                         .recv = recv,
                         .count = count,
                         .dtype = dt,
                         .op = op,
                         .root = root};
    return bt__coll_submit(c, "reduce", bt__coll_dispatch, &a, req);
}

static int ireduce_scatter(bt_comm *c, const void *send, void *recv, size_t recv_count, bt_dtype dt,
                           bt_op op, bt_request **req)
{
    BT_CHECK(begin(c, "reduce_scatter"));
    BT_CHECK(check(c, "reduce_scatter", send, recv, recv_count, (size_t)c->size, dt, (int)op));
    struct bt__call a = {.kind = BT_COLL_REDUCE_SCATTER,
                         .send = send,
                         .recv = recv,
                         .count = recv_count,
                         .dtype = dt,
                         .op = op};
    return bt__coll_submit(c, "reduce_scatter", bt__coll_dispatch, &a, req);
}

static int iallgather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                      bt_request **req)
{
    BT_CHECK(begin(c, "allgather"));
    BT_CHECK(check(c, "allgather", send, recv, count, (size_t)c->size, dt, -1));
    struct bt__call a = {
        .kind = BT_COLL_ALLGATHER, .send = send, .recv = recv, .count = count, .dtype = dt};
    return bt__coll_submit(c, "allgather", bt__coll_dispatch, &a, req);
}

static int ibroadcast(bt_comm *c, void *buf, size_t count, bt_dtype dt, int root, bt_request **req)
{
    BT_CHECK(begin(c, "broadcast"));
    BT_CHECK(check_root(c, "broadcast", root));
    BT_CHECK(check(c, "broadcast", buf, buf, count, 1, dt, -1));
    struct bt__call a = {.kind = BT_COLL_BROADCAST,
                         .send = buf,
                         .recv = buf,
                         .count = count,
                         .dtype = dt,
                         .root = root};
    return bt__coll_submit(c, "broadcast", bt__coll_dispatch, &a, req);
}

static int ibarrier(bt_comm *c, bt_request **req)
{
    BT_CHECK(begin(c, "barrier"));
    struct bt__call a = {.kind = BT_COLL_BARRIER};
    return bt__coll_submit(c, "barrier", bt__coll_dispatch, &a, req);
}

/* The blocking calls: the nonblocking ones with the request on the caller's stack. */

int bt_allreduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op)
{
    return iallreduce(c, send, recv, count, dt, op, NULL);
}

int bt_reduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
              int root)
{
    return ireduce(c, send, recv, count, dt, op, root, NULL);
}

int bt_reduce_scatter(bt_comm *c, const void *send, void *recv, size_t recv_count, bt_dtype dt,
                      bt_op op)
{
    return ireduce_scatter(c, send, recv, recv_count, dt, op, NULL);
}

int bt_allgather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt)
{
    return iallgather(c, send, recv, count, dt, NULL);
}

int bt_broadcast(bt_comm *c, void *buf, size_t count, bt_dtype dt, int root)
{
    return ibroadcast(c, buf, count, dt, root, NULL);
}

int bt_barrier(bt_comm *c)
{
    return ibarrier(c, NULL);
}

/* The public nonblocking calls: the same, with a request the caller must have asked for. */

#define NEED_REQ(req)                                                                              \
    do {                                                                                           \
        if (!(req))                                                                                \
            return BT_ERR_INVALID_ARG;                                                             \
        *(req) = NULL;                                                                             \
    } while (0)

int bt_iallreduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
                  bt_request **req)
{
    NEED_REQ(req);
    return iallreduce(c, send, recv, count, dt, op, req);
}

int bt_ireduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
               int root, bt_request **req)
{
    NEED_REQ(req);
    return ireduce(c, send, recv, count, dt, op, root, req);
}

int bt_ireduce_scatter(bt_comm *c, const void *send, void *recv, size_t recv_count, bt_dtype dt,
                       bt_op op, bt_request **req)
{
    NEED_REQ(req);
    return ireduce_scatter(c, send, recv, recv_count, dt, op, req);
}

int bt_iallgather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                  bt_request **req)
{
    NEED_REQ(req);
    return iallgather(c, send, recv, count, dt, req);
}

int bt_ibroadcast(bt_comm *c, void *buf, size_t count, bt_dtype dt, int root, bt_request **req)
{
    NEED_REQ(req);
    return ibroadcast(c, buf, count, dt, root, req);
}

int bt_ibarrier(bt_comm *c, bt_request **req)
{
    NEED_REQ(req);
    return ibarrier(c, req);
}

/* ---- the grouped allreduce: many small buffers fused into one transfer ----
 * The buffers are packed into one temporary (in order), reduced by one allreduce on the host
 * path (so one set of messages instead of n), and unpacked. */

static int run_multi(bt_comm *c, const struct bt__call *a)
{
    void *const *bufs = a->out;
    size_t es = bt_dtype_size(a->dtype), total = 0, off = 0;
    for (size_t i = 0; i < a->count; i++)
        total += a->scounts[i];
    char *pack = malloc(total ? total * es : 1);
    if (!pack)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: out of memory for %zu bytes",
                             c->coll_name, (unsigned long long)c->coll_seq, total * es);
    for (size_t i = 0; i < a->count; off += a->scounts[i++] * es)
        memcpy(pack + off, bufs[i], a->scounts[i] * es);
    struct bt__call one = {.kind = BT_COLL_ALLREDUCE,
                           .send = pack,
                           .recv = pack,
                           .count = total,
                           .dtype = a->dtype,
                           .op = a->op};
    int rc = bt__host_run(c, &one);
    off = 0;
    for (size_t i = 0; rc == BT_OK && i < a->count; off += a->scounts[i++] * es)
        memcpy(bufs[i], pack + off, a->scounts[i] * es);
    free(pack);
    return rc;
}

static int iallreduce_multi(bt_comm *c, int n, void *const *bufs, const size_t *counts, bt_dtype dt,
                            bt_op op, bt_request **req)
{
    BT_CHECK(begin(c, "allreduce_multi"));
    if (n < 0 || (n > 0 && (!bufs || !counts)))
        return bad(c, "allreduce_multi", "n < 0, or NULL bufs/counts");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        BT_CHECK(check(c, "allreduce_multi", bufs[i], bufs[i], counts[i], 1, dt, (int)op));
        total += counts[i];
        if (total > SIZE_MAX / 16)
            return bad(c, "allreduce_multi", "total count too large");
    }
    struct bt__call a = {.kind = BT_COLL_ALLREDUCE,
                         .count = (size_t)n,
                         .dtype = dt,
                         .op = op,
                         .scounts = counts,
                         .out = (void *)bufs};
    return bt__coll_submit(c, "allreduce_multi", run_multi, &a, req);
}

int bt_allreduce_multi(bt_comm *c, int n, void *const *bufs, const size_t *counts, bt_dtype dt,
                       bt_op op)
{
    return iallreduce_multi(c, n, bufs, counts, dt, op, NULL);
}

int bt_iallreduce_multi(bt_comm *c, int n, void *const *bufs, const size_t *counts, bt_dtype dt,
                        bt_op op, bt_request **req)
{
    NEED_REQ(req);
    return iallreduce_multi(c, n, bufs, counts, dt, op, req);
}

/* ---- a fused group of allreduces (group.c): parts of one dtype and op, each in place or not.
 * Host buffers: every part's send packed in order into one temporary, one allreduce on the
 * host path, unpacked into every part's recv. Device buffers: NCCL's group call when the
 * NCCL backend runs the communicator and has one, else the parts one by one. */

static int run_parts(bt_comm *c, const struct bt__call *a, int ndev)
{
    if (ndev == a->nparts && c->nccl && c->nccl->run_group)
        return c->nccl->run_group(c, a->nparts, a->parts);
    for (int i = 0; i < a->nparts; i++)
        BT_CHECK(bt__coll_dispatch(c, a->parts[i]));
    return BT_OK;
}

int bt__coll_run_fused(bt_comm *c, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype), off = 0;
    int ndev = 0;
    for (int i = 0; i < a->nparts; i++) {
        int dev = -1;
        BT_CHECK(bt__device_locate(c, a->parts[i], &dev));
        ndev += dev >= 0;
    }
    if (ndev > 0)
        return run_parts(c, a, ndev);
    char *pack = malloc(a->count ? a->count * es : 1);
    if (!pack)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: out of memory for %zu bytes",
                             c->coll_name, (unsigned long long)c->coll_seq, a->count * es);
    for (int i = 0; i < a->nparts; off += a->parts[i++]->count * es)
        if (a->parts[i]->count)
            memcpy(pack + off, a->parts[i]->send, a->parts[i]->count * es);
    struct bt__call one = {.kind = BT_COLL_ALLREDUCE,
                           .send = pack,
                           .recv = pack,
                           .count = a->count,
                           .dtype = a->dtype,
                           .op = a->op};
    int rc = bt__host_run(c, &one);
    off = 0;
    for (int i = 0; rc == BT_OK && i < a->nparts; off += a->parts[i++]->count * es)
        if (a->parts[i]->count)
            memcpy(a->parts[i]->recv, pack + off, a->parts[i]->count * es);
    free(pack);
    return rc;
}
