/* backend/nccl.c: the NCCL backend: collectives on device buffers, one GPU per rank.
 *
 * cuda.c makes the communicator on the first collective call with device buffers, once it
 * knows (collectively) that every rank has a GPU of its own; every rank is then in the same
 * call, which NCCL's init needs:
 *   1. Rank 0 makes an ncclUniqueId. The record shared is 129 bytes: a status byte (1: made)
 *      and the id, so a failing ncclGetUniqueId fails every rank at once instead of leaving
 *      them waiting. With a store (baton run), rank 0 sets "<prefix>nccl/id", the others get
 *      it, and after a host barrier rank 0 deletes the key, so that a later communicator of
 *      the same generation never reads a stale id. Without a store (Open MPI) the record goes
 *      out by a host broadcast from rank 0.
 *   2. ncclCommInitRankConfig on the current device (cuda.c made it the device of the
 *      buffers) in non-blocking mode, polled with ncclCommGetAsyncError.
 * A collective is enqueued on the backend's own stream (a blocking stream: it starts after
 * work queued before it on the legacy default stream) and polled until done:
 * ncclCommGetAsyncError (the enqueue itself may still be in progress in non-blocking mode, or
 * the communicator may have failed) and then cudaStreamQuery. Every polling loop calls
 * bt__wait_tick, so BATON_TIMEOUT, the stall warning and the launcher's failure notice apply.
 * A failure or a timeout aborts the communicator (ncclCommAbort) and fails c (sticky).
 *
 * Sub-communicators: when a communicator with an NCCL communicator is split (bt_comm_split,
 * bt_comm_dup; split.c), every rank of it calls nccl_split, which makes the child's with
 * ncclCommSplit (NCCL >= 2.18; color -1 is NCCL_SPLIT_NOCOLOR; ranks ordered by key, then by
 * parent rank, as baton's own split orders them) on the parent's GPU, with a stream of its
 * own, instead of a new unique id through the store on the child's first device call.
 * bt_comm_create_group (members only) cannot use ncclCommSplit, which needs every rank of the
 * parent: such a child makes its communicator from a unique id as the world does.
 * Grouped calls (group.c): a fused group of device allreduces is enqueued between
 * ncclGroupStart and ncclGroupEnd (nccl_run_group) and waited for once.
 *
 * Types and ops map one to one (float16 -> ncclHalf, bfloat16 -> ncclBfloat16, avg -> ncclAvg).
 * NCCL's own arithmetic applies: half types accumulate in their own precision and a float avg
 * pre-multiplies by 1/n, so results can differ in the last bits from the host path's.
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectives/backend/cuda.h"
#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "common/log.h"

#define ID_BYTES (1 + NCCL_UNIQUE_ID_BYTES) /* status byte + ncclUniqueId */
#define FINALIZE_MAX_S 30.0                 /* bt_finalize waits this long for NCCL at most */

struct nccl_state {
    ncclComm_t comm;     /* NULL before init and once aborted */
    cudaStream_t stream; /* this backend's stream, on dev */
    int dev;             /* CUDA device of the communicator */
};

static const char *cname(const struct bt_comm *c)
{
    return c->coll_name ? c->coll_name : "nccl";
}

static void abort_comm(struct nccl_state *s)
{
    if (s && s->comm) {
        ncclCommAbort(s->comm);
        s->comm = NULL;
    }
}

static int nccl_code(ncclResult_t r)
{
    switch (r) {
    case ncclInvalidArgument: return BT_ERR_INVALID_ARG;
    case ncclInvalidUsage: return BT_ERR_INVALID_USAGE;
    case ncclRemoteError: return BT_ERR_REMOTE;
    case ncclInternalError: return BT_ERR_INTERNAL;
    default: return BT_ERR_SYSTEM;
    }
}

/* Fails c with NCCL's words for r and aborts the communicator. */
static int nccl_fail(struct bt_comm *c, struct nccl_state *s, ncclResult_t r, const char *what)
{
    const char *last = ncclGetLastError(s ? s->comm : NULL);
    int rc = bt__comm_fail(c, nccl_code(r), "%s #%llu: %s: %s%s%s", cname(c),
                           (unsigned long long)c->coll_seq, what, ncclGetErrorString(r),
                           last && *last ? ": " : "", last ? last : "");
    abort_comm(s);
    return rc;
}

static int cuda_fail(struct bt_comm *c, struct nccl_state *s, cudaError_t e, const char *what)
{
    cudaGetLastError();
    int rc = bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: %s: %s: %s", cname(c),
                           (unsigned long long)c->coll_seq, what, cudaGetErrorName(e),
                           cudaGetErrorString(e));
    abort_comm(s);
    return rc;
}

static void who_nccl(void *arg, char *out, size_t cap)
{
    (void)arg;
    snprintf(out, cap, "? (NCCL does not say which)");
}

/* Polls until the communicator is idle (init or enqueue finished) and, when stream is set,
 * until the stream has run everything queued on it. */
static int nccl_wait(struct bt_comm *c, struct nccl_state *s, int stream, const char *what)
{
    struct bt__wait w;
    bt__wait_start(c, &w);
    for (unsigned spins = 0;; spins++) {
        ncclResult_t st = ncclSuccess, r = ncclCommGetAsyncError(s->comm, &st);
        if (r != ncclSuccess)
            st = r;
        if (st != ncclSuccess && st != ncclInProgress)
            return nccl_fail(c, s, st, what);
        if (st == ncclSuccess) {
            if (!stream)
                return BT_OK;
            cudaError_t q = cudaStreamQuery(s->stream);
            if (q == cudaSuccess)
                return BT_OK;
            if (q != cudaErrorNotReady)
                return cuda_fail(c, s, q, what);
        }
        int rc = bt__wait_tick(c, &w, who_nccl, NULL);
        if (rc != BT_OK) {
            abort_comm(s);
            return rc;
        }
        if (spins >= 64)
            sched_yield();
    }
}

/* ---- the unique id ---- */

static void who_root(void *arg, char *out, size_t cap)
{
    (void)arg;
    snprintf(out, cap, "0 (its NCCL id)");
}

static int store_get_id(struct bt_comm *c, const char *key, unsigned char *rec)
{
    struct bt__wait w;
    bt__wait_start(c, &w);
    for (;;) {
        void *v = NULL;
        size_t len = 0;
        int rc = bt__store_get(c->store, key, &v, &len, 0.2);
        if (rc == BT_OK) {
            int good = len == ID_BYTES;
            if (good)
                memcpy(rec, v, ID_BYTES);
            free(v);
            return good ? BT_OK
                        : bt__comm_fail(c, BT_ERR_INTERNAL,
                                        "%s #%llu: store key %s holds %zu "
                                        "bytes, not an NCCL id record of %d",
                                        cname(c), (unsigned long long)c->coll_seq, key, len,
                                        ID_BYTES);
        }
        if (rc != BT_ERR_TIMEOUT)
            return bt__comm_fail(c, rc, "%s #%llu: getting %s from the store: %s", cname(c),
                                 (unsigned long long)c->coll_seq, key, bt__store_error(c->store));
        BT_CHECK(bt__wait_tick(c, &w, who_root, NULL));
    }
}

static int id_by_store(struct bt_comm *c, unsigned char *rec)
{
    char key[64];
    snprintf(key, sizeof(key), "%snccl/id", c->prefix);
    if (c->rank == 0) {
        int rc = bt__store_set(c->store, key, rec, ID_BYTES);
        if (rc != BT_OK)
            return bt__comm_fail(c, rc, "%s #%llu: setting %s in the store: %s", cname(c),
                                 (unsigned long long)c->coll_seq, key, bt__store_error(c->store));
    } else {
        BT_CHECK(store_get_id(c, key, rec));
    }
    struct bt__call barrier = {.kind = BT_COLL_BARRIER};
    BT_CHECK(bt__host_run(c, &barrier)); /* everyone has read the key */
    if (c->rank == 0)
        bt__store_delete(c->store, key, NULL);
    return BT_OK;
}

/* Rank 0 makes the id; every rank ends with the record in rec. */
static int share_id(struct bt_comm *c, unsigned char *rec)
{
    ncclResult_t made = ncclSuccess;
    memset(rec, 0, ID_BYTES);
    if (c->rank == 0) {
        ncclUniqueId id;
        memset(&id, 0, sizeof(id));
        made = ncclGetUniqueId(&id);
        rec[0] = made == ncclSuccess;
        memcpy(rec + 1, &id, sizeof(id));
    }
    if (c->size > 1 && c->store) {
        BT_CHECK(id_by_store(c, rec));
    } else if (c->size > 1) {
        struct bt__call b = {.kind = BT_COLL_BROADCAST,
                             .send = rec,
                             .recv = rec,
                             .count = ID_BYTES,
                             .dtype = BT_UINT8,
                             .root = 0};
        BT_CHECK(bt__host_run(c, &b));
    }
    if (rec[0] == 1)
        return BT_OK;
    if (c->rank == 0)
        return nccl_fail(c, NULL, made, "ncclGetUniqueId");
    return bt__comm_fail(c, BT_ERR_REMOTE,
                         "%s #%llu: rank 0 could not make the NCCL unique id "
                         "(ncclGetUniqueId failed there; see its log)",
                         cname(c), (unsigned long long)c->coll_seq);
}

/* ---- the communicator ---- */

static int comm_init(struct bt_comm *c, struct nccl_state *s, const unsigned char *idb)
{
    ncclUniqueId id;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    memcpy(&id, idb, sizeof(id));
    ncclResult_t r = ncclCommInitRankConfig(&s->comm, c->size, id, c->rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress)
        return nccl_fail(c, s, r, "ncclCommInitRankConfig");
    BT_CHECK(nccl_wait(c, s, 0, "ncclCommInitRankConfig"));
    int version = 0;
    ncclGetVersion(&version);
    BT_INFO(COLL, "rank %d: NCCL %d communicator of %d rank(s) on GPU %d", c->rank, version,
            c->size, s->dev);
    return BT_OK;
}

static int nccl_run(struct bt_comm *c, const struct bt__call *a);
static int nccl_run_group(struct bt_comm *c, int n, const struct bt__call *const *calls);
static void nccl_destroy(struct bt_comm *c);

static const struct bt__backend_ops nccl_ops = {.name = "nccl",
                                                .run = nccl_run,
                                                .destroy = nccl_destroy,
                                                .run_group = nccl_run_group};

static int nccl_create(struct bt_comm *c, int dev)
{
    unsigned char rec[ID_BYTES];
    struct nccl_state *s = calloc(1, sizeof(*s));
    if (!s)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", cname(c));
    s->dev = dev;
    c->nccl_state = s;
    c->nccl = &nccl_ops; /* from here bt__device_destroy frees s, made or not */
    BT_CHECK(share_id(c, rec));
    cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamDefault);
    if (e != cudaSuccess)
        return cuda_fail(c, s, e, "creating the NCCL stream");
    return comm_init(c, s, rec + 1);
}

/* ---- collectives ---- */

static const ncclDataType_t nccl_types[BT_DTYPE_COUNT] = {
    [BT_FLOAT32] = ncclFloat32,   [BT_FLOAT64] = ncclFloat64, [BT_FLOAT16] = ncclFloat16,
    [BT_BFLOAT16] = ncclBfloat16, [BT_INT32] = ncclInt32,     [BT_INT64] = ncclInt64,
    [BT_UINT8] = ncclUint8,
};

static const ncclRedOp_t nccl_ops_of[BT_OP_COUNT] = {
    [BT_SUM] = ncclSum, [BT_PROD] = ncclProd, [BT_MIN] = ncclMin,
    [BT_MAX] = ncclMax, [BT_AVG] = ncclAvg,
};

static ncclResult_t enqueue(struct bt_comm *c, struct nccl_state *s, const struct bt__call *a)
{
    ncclDataType_t t = nccl_types[a->dtype];
    ncclRedOp_t op = nccl_ops_of[(unsigned)a->op < BT_OP_COUNT ? a->op : BT_SUM];
    switch (a->kind) {
    case BT_COLL_ALLREDUCE:
        return ncclAllReduce(a->send, a->recv, a->count, t, op, s->comm, s->stream);
    case BT_COLL_BROADCAST:
        return ncclBroadcast(a->send, a->recv, a->count, t, a->root, s->comm, s->stream);
    case BT_COLL_ALLGATHER: return ncclAllGather(a->send, a->recv, a->count, t, s->comm, s->stream);
    case BT_COLL_REDUCE_SCATTER:
        return ncclReduceScatter(a->send, a->recv, a->count, t, op, s->comm, s->stream);
    case BT_COLL_REDUCE:
        return ncclReduce(a->send, c->rank == a->root ? a->recv : NULL, a->count, t, op, a->root,
                          s->comm, s->stream);
    default: return ncclInvalidUsage; /* barriers never come here (no buffers) */
    }
}

static int nccl_run(struct bt_comm *c, const struct bt__call *a)
{
    struct nccl_state *s = c->nccl_state;
    if (!s || !s->comm)
        return bt__comm_fail(c, BT_ERR_INTERNAL, "%s #%llu: the NCCL communicator is gone",
                             cname(c), (unsigned long long)c->coll_seq);
    ncclResult_t r = enqueue(c, s, a);
    if (r != ncclSuccess && r != ncclInProgress)
        return nccl_fail(c, s, r, "enqueueing on NCCL");
    return nccl_wait(c, s, 1, "NCCL");
}

/* The calls of a group between ncclGroupStart and ncclGroupEnd, then one wait. */
static int nccl_run_group(struct bt_comm *c, int n, const struct bt__call *const *calls)
{
    struct nccl_state *s = c->nccl_state;
    if (!s || !s->comm)
        return bt__comm_fail(c, BT_ERR_INTERNAL, "%s #%llu: the NCCL communicator is gone",
                             cname(c), (unsigned long long)c->coll_seq);
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < n && (r == ncclSuccess || r == ncclInProgress); i++)
        r = enqueue(c, s, calls[i]);
    ncclResult_t e = ncclGroupEnd();
    if (r == ncclSuccess || r == ncclInProgress)
        r = e;
    if (r != ncclSuccess && r != ncclInProgress)
        return nccl_fail(c, s, r, "enqueueing a group on NCCL");
    return nccl_wait(c, s, 1, "NCCL group");
}

/* ---- sub-communicators: ncclCommSplit ---- */

#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
/* Polls the parent until a split it took part in without a child (NOCOLOR) has finished. */
static int wait_parent(struct bt_comm *p, struct nccl_state *ps)
{
    struct bt__wait w;
    bt__wait_start(p, &w);
    for (;;) {
        ncclResult_t st = ncclSuccess, r = ncclCommGetAsyncError(ps->comm, &st);
        if (r != ncclSuccess)
            st = r;
        if (st == ncclSuccess)
            return BT_OK;
        if (st != ncclInProgress)
            return nccl_fail(p, ps, st, "ncclCommSplit");
        BT_CHECK(bt__wait_tick(p, &w, who_nccl, NULL));
        sched_yield();
    }
}

static int nccl_split(struct bt_comm *p, struct bt_comm *c, int color, int key)
{
    struct nccl_state *ps = p->nccl_state, *s = NULL;
    if (!ps || !ps->comm)
        return BT_OK; /* the parent's failed already: the child makes its own when used */
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t nc = NULL;
    if (c && !(s = calloc(1, sizeof(*s))))
        return bt__comm_fail(p, BT_ERR_SYSTEM, "%s: out of memory", cname(p));
    ncclResult_t r = ncclCommSplit(ps->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &nc,
                                   &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        free(s);
        return nccl_fail(p, ps, r, "ncclCommSplit");
    }
    if (!c)
        return wait_parent(p, ps);
    s->comm = nc, s->dev = ps->dev;
    c->nccl_state = s;
    c->nccl = &nccl_ops; /* from here the child's destroy frees s */
    int prev = -1;
    cudaError_t e = cudaGetDevice(&prev);
    if (e == cudaSuccess && prev != s->dev)
        e = cudaSetDevice(s->dev);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&s->stream, cudaStreamDefault);
    if (prev >= 0 && prev != s->dev)
        cudaSetDevice(prev);
    if (e != cudaSuccess)
        return cuda_fail(p, s, e, "creating the NCCL stream of a split");
    BT_CHECK(nccl_wait(c, s, 0, "ncclCommSplit"));
    BT_INFO(COLL, "rank %d: communicator %s: NCCL communicator by ncclCommSplit on GPU %d", p->rank,
            c->name, s->dev);
    return BT_OK;
}
#else
static int nccl_split(struct bt_comm *p, struct bt_comm *c, int color, int key)
{
    (void)p, (void)c, (void)color, (void)key;
    return BT_OK; /* no ncclCommSplit before NCCL 2.18: children make their own when used */
}
#endif

/* ---- teardown ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Finalizes (flushing outstanding work, bounded by FINALIZE_MAX_S) and destroys; aborts when
 * the communicator failed or finalizing does not finish. */
static void close_comm(struct bt_comm *c, struct nccl_state *s)
{
    if (c->err.code != BT_OK) {
        abort_comm(s);
        return;
    }
    ncclResult_t st = ncclCommFinalize(s->comm);
    double end = now_s() + FINALIZE_MAX_S;
    struct timespec ms = {0, 1000000};
    while (st == ncclInProgress && now_s() < end) {
        nanosleep(&ms, NULL);
        if (ncclCommGetAsyncError(s->comm, &st) != ncclSuccess)
            break;
    }
    if (st != ncclSuccess) {
        BT_WARN(COLL, "rank %d: NCCL finalize: %s; aborting the communicator", c->rank,
                ncclGetErrorString(st));
        abort_comm(s);
        return;
    }
    ncclCommDestroy(s->comm);
    s->comm = NULL;
}

static void nccl_destroy(struct bt_comm *c)
{
    struct nccl_state *s = c->nccl_state;
    if (s) {
        int prev = -1;
        if (cudaGetDevice(&prev) == cudaSuccess && prev != s->dev)
            cudaSetDevice(s->dev);
        if (s->comm)
            close_comm(c, s);
        if (s->stream)
            cudaStreamDestroy(s->stream);
        if (prev >= 0 && prev != s->dev)
            cudaSetDevice(prev);
        cudaGetLastError();
        free(s);
    }
    c->nccl_state = NULL;
    c->nccl = NULL;
}

const struct bt__plugin bt__plugin_self = {
    .abi = BT_PLUGIN_ABI,
    .comm_bytes = sizeof(struct bt_comm),
    .name = "nccl",
    .nccl_create = nccl_create,
    .nccl_split = nccl_split,
};
