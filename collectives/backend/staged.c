/* staged.c: collectives on device buffers through host memory, pipelined by segment.
 *
 * Used for device buffers when NCCL cannot run the call: built without NCCL, BATON_BACKEND=baton,
 * two ranks on one GPU, or fewer GPUs than ranks. It does not touch CUDA: the copies go
 * through a copy engine (staged.h), so tests run this exact code with a memcpy engine.
 *
 * The call is cut into segments. A segment is `seg` elements of each row of the call: one row
 * for allreduce, reduce and broadcast; for allgather the n rows are the n blocks of recv, and
 * for reduce-scatter the n blocks of send (a segment takes the same stretch of every block,
 * so it is itself a smaller allgather / reduce-scatter of seg elements per rank). seg is
 * BATON_STAGE_BYTES / (element size x rows), at least 1. Each segment goes through one of
 * three host slots (segment i: slot i % 3); a slot has an "in" half (what the device sends)
 * and an "out" half (what the host collective writes, when not in place).
 *
 * With D(i) the device->host copy of segment i, C(i) the host collective on it and U(i) the
 * host->device copy of its result:
 *
 *     D(0)
 *     for i = 0 .. nseg-1:
 *         wait for slot (i+1) % 3, i.e. U(i-2)   (its host buffer is about to be reused)
 *         start D(i+1)
 *         wait for slot i % 3, i.e. D(i)
 *         C(i)                                   (blocking: the CPU and the network)
 *         start U(i)
 *     wait for every slot
 *
 * so while the host runs C(i), the copy engines run D(i+1) and U(i-1); the wait before
 * D(i+1) is for U(i-2), started a whole collective earlier, and rarely blocks. Which copies
 * run: broadcast copies in on the root only and out on the others; reduce copies out on the
 * root only. Every rank cuts the same segments (same count, world size and BATON_STAGE_BYTES),
 * so the host collectives match up one for one across ranks. Results are those of the host
 * path on each segment: for allreduce, element i is reduced by the same kernels in possibly
 * another order than one whole call would use (identical for exactly representable sums).
 */
#include <string.h>

#include "collectives/backend/staged.h"
#include "common/log.h"
#include "common/param.h"

#define BT_STAGE_DEFAULT (4 << 20)

BT_PARAM_INT(stage_bytes, "BATON_STAGE_BYTES", BT_STAGE_DEFAULT)

size_t bt__stage_bytes(void)
{
    static int warned;
    int64_t v = bt__param_stage_bytes();
    if (v >= 1)
        return (size_t)v;
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        BT_WARN(COLL, "BATON_STAGE_BYTES=%lld is not a positive size; using %d", (long long)v,
                BT_STAGE_DEFAULT);
    return BT_STAGE_DEFAULT;
}

/* How one call is cut and copied. */
struct plan {
    size_t es;                  /* bytes per element */
    size_t count;               /* elements per row */
    size_t seg;                 /* elements per row per segment */
    size_t nseg;                /* segments */
    int in_rows, out_rows;      /* rows copied to / from the host per segment (0: none) */
    size_t in_pitch, out_pitch; /* bytes between rows in the device buffer */
    size_t half;                /* bytes of one slot half: seg * es * rows */
};

static void make_plan(const struct bt_comm *c, const struct bt__call *a, size_t stage,
                      struct plan *p)
{
    int n = c->size;
    int blocks = a->kind == BT_COLL_ALLGATHER || a->kind == BT_COLL_REDUCE_SCATTER;
    size_t rows = blocks ? (size_t)n : 1;
    p->es = bt_dtype_size(a->dtype);
    p->count = a->count;
    p->seg = stage / (p->es * rows);
    if (p->seg == 0)
        p->seg = 1;
    if (p->seg > p->count)
        p->seg = p->count;
    p->nseg = p->seg ? (p->count + p->seg - 1) / p->seg : 0;
    p->half = p->seg * p->es * rows;
    p->in_rows = p->out_rows = 1;
    p->in_pitch = p->out_pitch = p->count * p->es;
    if (a->kind == BT_COLL_BROADCAST) {
        p->in_rows = c->rank == a->root;
        p->out_rows = c->rank != a->root;
    } else if (a->kind == BT_COLL_REDUCE) {
        p->out_rows = c->rank == a->root;
    } else if (a->kind == BT_COLL_ALLGATHER) {
        p->out_rows = n;
    } else if (a->kind == BT_COLL_REDUCE_SCATTER) {
        p->in_rows = n;
    }
}

/* Makes every slot half at least bytes long (only between calls: no copy is in flight). */
static int ensure_host(struct bt_comm *c, struct bt__stage *st, size_t bytes)
{
    if (bytes <= st->half_bytes)
        return BT_OK;
    bt__stage_free(st);
    char *p = st->eng.host_alloc(c, st->eng.ctx, bytes * 2 * BT_STAGE_SLOTS);
    if (!p)
        return c->err.code != BT_OK ? c->err.code
                                    : bt__comm_fail(c, BT_ERR_SYSTEM,
                                                    "%s #%llu: no staging "
                                                    "memory for %zu bytes",
                                                    c->coll_name, (unsigned long long)c->coll_seq,
                                                    bytes * 2 * BT_STAGE_SLOTS);
    st->host = p;
    st->half_bytes = bytes;
    BT_INFO(COLL, "rank %d: %zu bytes of staging memory (%d slots of 2 x %zu)", c->rank,
            bytes * 2 * BT_STAGE_SLOTS, BT_STAGE_SLOTS, bytes);
    return BT_OK;
}

void bt__stage_free(struct bt__stage *st)
{
    if (st->host)
        st->eng.host_free(st->eng.ctx, st->host);
    st->host = NULL;
    st->half_bytes = 0;
}

/* Segment i: where it starts (elements into each row), how long it is, its slot's halves. */
struct seg {
    size_t off, len;
    int slot;
    char *in, *out;
};

static struct seg seg_at(const struct bt__stage *st, const struct plan *p, size_t i)
{
    struct seg s = {.off = i * p->seg, .slot = (int)(i % BT_STAGE_SLOTS)};
    s.len = p->count - s.off < p->seg ? p->count - s.off : p->seg;
    s.in = st->host + (size_t)s.slot * 2 * st->half_bytes;
    s.out = s.in + st->half_bytes;
    return s;
}

static int copy_in(struct bt_comm *c, struct bt__stage *st, const struct plan *p,
                   const struct bt__call *a, size_t i)
{
    struct seg s = seg_at(st, p, i);
    size_t w = s.len * p->es;
    if (!p->in_rows)
        return BT_OK;
    return st->eng.copy(c, st->eng.ctx, s.slot, 1, s.in, w, (const char *)a->send + s.off * p->es,
                        p->in_pitch, w, (size_t)p->in_rows);
}

/* Allreduce and broadcast run in place in the "in" half; the others write the "out" half. */
static int in_place(const struct bt__call *a)
{
    return a->kind == BT_COLL_ALLREDUCE || a->kind == BT_COLL_BROADCAST;
}

static int copy_out(struct bt_comm *c, struct bt__stage *st, const struct plan *p,
                    const struct bt__call *a, size_t i)
{
    struct seg s = seg_at(st, p, i);
    size_t w = s.len * p->es;
    if (!p->out_rows)
        return BT_OK;
    return st->eng.copy(c, st->eng.ctx, s.slot, 0, (char *)a->recv + s.off * p->es, p->out_pitch,
                        in_place(a) ? s.in : s.out, w, w, (size_t)p->out_rows);
}

/* The host collective on segment i, on the slot's halves. */
static int host_seg(struct bt_comm *c, struct bt__stage *st, const struct plan *p,
                    const struct bt__call *a, size_t i)
{
    struct seg s = seg_at(st, p, i);
    struct bt__call h = *a;
    h.count = s.len;
    h.send = s.in;
    h.recv = in_place(a) ? s.in : s.out;
    if (a->kind == BT_COLL_REDUCE && c->rank != a->root)
        h.recv = NULL;
    return bt__host_run(c, &h);
}

/* Waits for every slot, keeping the first error. */
static int drain(struct bt_comm *c, struct bt__stage *st, int rc)
{
    for (int k = 0; k < BT_STAGE_SLOTS; k++) {
        int w = st->eng.wait(c, st->eng.ctx, k);
        if (rc == BT_OK)
            rc = w;
    }
    return rc;
}

/* The pipeline of the file header. */
int bt__staged_run(struct bt_comm *c, struct bt__stage *st, const struct bt__call *a)
{
    struct plan p;
    make_plan(c, a, st->seg_bytes ? st->seg_bytes : bt__stage_bytes(), &p);
    if (a->kind == BT_COLL_BARRIER || p.nseg == 0)
        return bt__host_run(c, a);
    BT_CHECK(ensure_host(c, st, p.half));
    BT_TRACE(COLL, "rank %d: %s #%llu staged: %zu segment(s) of %zu x %zu elements", c->rank,
             c->coll_name, (unsigned long long)c->coll_seq, p.nseg, p.seg,
             a->kind == BT_COLL_ALLGATHER || a->kind == BT_COLL_REDUCE_SCATTER ? (size_t)c->size
                                                                               : (size_t)1);
    int rc = copy_in(c, st, &p, a, 0);
    for (size_t i = 0; i < p.nseg && rc == BT_OK; i++) {
        if (i + 1 < p.nseg) {
            if (i + 1 >= BT_STAGE_SLOTS)
                rc = st->eng.wait(c, st->eng.ctx, (int)((i + 1) % BT_STAGE_SLOTS));
            if (rc == BT_OK)
                rc = copy_in(c, st, &p, a, i + 1);
        }
        if (rc == BT_OK)
            rc = st->eng.wait(c, st->eng.ctx, (int)(i % BT_STAGE_SLOTS));
        if (rc == BT_OK)
            rc = host_seg(c, st, &p, a, i);
        if (rc == BT_OK)
            rc = copy_out(c, st, &p, a, i);
    }
    return drain(c, st, rc);
}
