/* coll.c: the public collectives: argument checks, sequence numbers, sticky errors, and the
 * choice of path.
 *
 * Paths, by the shape of the job:
 *   one rank            local copies
 *   one node (shm)      the node's shared segment runs the whole collective (transport_shm.c)
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
 * Algorithm thresholds (allreduce over TCP, auto), from `BATON_ALGO=X baton run -n 4 --
 * build/bench/allreduce_bench --backend tcp -b 4K -e 4M -f 4` on the 2-core development VM
 * (loaded, so rough): rd was fastest to 16-64 KiB, Rabenseifner from 64 KiB to 1 MiB, the
 * ring from 4 MiB; re-measure on a quiet machine.
 *   bytes <= BT_RD_MAX_BYTES            recursive doubling (fewest messages)
 *   bytes <= BT_RABENSEIFNER_MAX_BYTES  Rabenseifner (log n messages, half the bytes of rd)
 *   larger                              ring (bandwidth-optimal, pipelined within each step)
 */
#include <string.h>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "common/log.h"

#define BT_RD_MAX_BYTES (32 * 1024)
#define BT_RABENSEIFNER_MAX_BYTES (1024 * 1024)

static int begin(bt_comm *c, const char *name)
{
    if (!c)
        return BT_ERR_INVALID_ARG;
    if (c->err.code != BT_OK)
        return c->err.code;
    c->coll_seq++;
    c->coll_name = name;
    return BT_OK;
}

static int bad(bt_comm *c, const char *what)
{
    BT_WARN(COLL, "rank %d: %s #%llu: %s", c->rank, c->coll_name,
            (unsigned long long)c->coll_seq, what);
    return bt__err_set(&c->err, BT_ERR_INVALID_ARG, "%s #%llu: %s", c->coll_name,
                       (unsigned long long)c->coll_seq, what);
}

/* Checks dtype, op, count (elements times mult must fit) and buffers. */
static int check(bt_comm *c, const void *send, const void *recv, size_t count, size_t mult,
                 bt_dtype dt, int op)
{
    if ((unsigned)dt >= BT_DTYPE_COUNT)
        return bad(c, "unknown dtype; hint: use a BT_FLOAT32 ... BT_UINT8 constant");
    if (op >= 0 && (unsigned)op >= BT_OP_COUNT)
        return bad(c, "unknown op; hint: use BT_SUM, BT_PROD, BT_MIN, BT_MAX or BT_AVG");
    if (count > SIZE_MAX / 16 / (mult ? mult : 1))
        return bad(c, "count too large");
    if (count > 0 && (!send || !recv))
        return bad(c, "NULL buffer with a non-zero count");
    return BT_OK;
}

static int check_root(bt_comm *c, int root)
{
    if (root < 0 || root >= c->size)
        return bad(c, "root is not a rank of the job");
    return BT_OK;
}

static struct bt__group world(bt_comm *c)
{
    return (struct bt__group){.n = c->size, .me = c->rank, .ranks = c->world_ranks};
}

static int pick_algo(bt_comm *c, size_t bytes)
{
    if (c->algo != BT_ALGO_AUTO)
        return c->algo;
    if (bytes <= BT_RD_MAX_BYTES)
        return BT_ALGO_RD;
    return bytes <= BT_RABENSEIFNER_MAX_BYTES ? BT_ALGO_RABENSEIFNER : BT_ALGO_RING;
}

static int run_algo(bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                    bt_dtype dt, bt_op op)
{
    if (g->n == 1 || count == 0)
        return BT_OK;
    switch (pick_algo(c, count * bt_dtype_size(dt))) {
    case BT_ALGO_RD:
        return bt__rd_allreduce(c, g, buf, count, dt, op);
    case BT_ALGO_RABENSEIFNER:
        return bt__rabenseifner_allreduce(c, g, buf, count, dt, op);
    default:
        return bt__ring_allreduce(c, g, buf, count, dt, op);
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
    struct bt__coll_args a = {.send = send, .recv = recv, .count = count, .dtype = dt,
                              .op = op == BT_AVG ? BT_SUM : op, .root = 0, .div = 1};
    BT_CHECK(c->intra->reduce(c, &a));
    if (c->local_rank == 0) {
        struct bt__group lg = {.n = c->nnodes, .me = c->node_rank, .ranks = c->leader_ranks};
        BT_CHECK(p2p_allreduce(c, &lg, recv, count, dt, op, c->size));
    }
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
        struct bt__coll_args a = {.send = send, .recv = recv, .count = count, .dtype = dt,
                                  .op = op == BT_AVG ? BT_SUM : op, .root = -1,
                                  .div = op == BT_AVG ? c->size : 1};
        return c->intra->reduce(c, &a);
    }
    if (send != recv && bytes)
        memmove(recv, send, bytes);
    struct bt__group g = world(c);
    return p2p_allreduce(c, &g, recv, count, dt, op, c->size);
}

int bt_allreduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op)
{
    BT_CHECK(begin(c, "allreduce"));
    BT_CHECK(check(c, send, recv, count, 1, dt, (int)op));
    return allreduce_impl(c, send, recv, count, dt, op);
}

int bt_reduce(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, bt_op op,
              int root)
{
    BT_CHECK(begin(c, "reduce"));
    BT_CHECK(check_root(c, root));
    BT_CHECK(check(c, send, c->rank == root ? recv : send, count, 1, dt, (int)op));
    if (c->size > 1 && c->intra && !c->inter) {
        struct bt__coll_args a = {.send = send, .recv = recv, .count = count, .dtype = dt,
                                  .op = op == BT_AVG ? BT_SUM : op, .root = root,
                                  .div = op == BT_AVG ? c->size : 1};
        return c->intra->reduce(c, &a);
    }
    void *buf = recv;
    if (c->rank != root && !(buf = bt__scratch(c, 2, count * bt_dtype_size(dt))) && count)
        return c->err.code;
    return allreduce_impl(c, send, buf, count, dt, op);
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

int bt_reduce_scatter(bt_comm *c, const void *send, void *recv, size_t recv_count, bt_dtype dt,
                      bt_op op)
{
    BT_CHECK(begin(c, "reduce_scatter"));
    BT_CHECK(check(c, send, recv, recv_count, (size_t)c->size, dt, (int)op));
    size_t es = bt_dtype_size(dt);
    if (c->size == 1) {
        if (send != recv && recv_count)
            memmove(recv, send, recv_count * es);
        return BT_OK;
    }
    if (c->intra && !c->inter) {
        struct bt__coll_args a = {.send = send, .recv = recv, .count = recv_count,
                                  .dtype = dt, .op = op == BT_AVG ? BT_SUM : op, .root = -1,
                                  .div = op == BT_AVG ? c->size : 1};
        return c->intra->reduce_scatter(c, &a);
    }
    return p2p_reduce_scatter(c, send, recv, recv_count, dt, op);
}

int bt_allgather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt)
{
    BT_CHECK(begin(c, "allgather"));
    BT_CHECK(check(c, send, recv, count, (size_t)c->size, dt, -1));
    size_t es = bt_dtype_size(dt);
    char *mine = (char *)recv + (size_t)c->rank * count * es;
    if (c->size > 1 && c->intra && !c->inter) {
        struct bt__coll_args a = {.send = send, .recv = recv, .count = count, .dtype = dt};
        return c->intra->allgather(c, &a);
    }
    if (send != mine && count)
        memmove(mine, send, count * es);
    if (c->size == 1)
        return BT_OK;
    struct bt__group g = world(c);
    return bt__ring_allgather(c, &g, recv, count, es);
}

int bt_broadcast(bt_comm *c, void *buf, size_t count, bt_dtype dt, int root)
{
    BT_CHECK(begin(c, "broadcast"));
    BT_CHECK(check_root(c, root));
    BT_CHECK(check(c, buf, buf, count, 1, dt, -1));
    if (c->size == 1 || count == 0)
        return BT_OK;
    if (c->intra && !c->inter) {
        struct bt__coll_args a = {.recv = buf, .count = count, .dtype = dt, .root = root};
        return c->intra->broadcast(c, &a);
    }
    struct bt__group g = world(c);
    return bt__tree_broadcast(c, &g, buf, count * bt_dtype_size(dt), root);
}

int bt_barrier(bt_comm *c)
{
    BT_CHECK(begin(c, "barrier"));
    if (c->size == 1)
        return BT_OK;
    if (c->intra && !c->inter)
        return c->intra->barrier(c);
    uint8_t token = 0;
    return allreduce_impl(c, &token, &token, 1, BT_UINT8, BT_MAX);
}
