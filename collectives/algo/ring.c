/* algo/ring.c: ring reduce-scatter, ring allgather, and the ring allreduce made of the two.
 *
 * The group's members form a ring in group order (rank order, so the ranks of one node are
 * neighbours); member i sends to i+1 and receives from i-1 (mod n). The buffer is cut into n
 * chunks: for the allreduce as evenly as bt__chunk() allows (count need not divide by n), for
 * the reduce-scatter and allgather collectives into n blocks of `block` elements.
 *
 * Reduce-scatter, n-1 steps; at step s (0-based) member i
 *   sends chunk (i - s - 1) mod n to i+1,
 *   receives chunk (i - s - 2) mod n from i-1 and reduces it into its own copy of that chunk
 *   (incoming partial first, so every chunk is combined in one fixed order).
 * After step n-2 member i holds chunk i fully reduced: it was started by member i+1 and went
 * once round the ring.
 *
 * Allgather, n-1 steps; at step s member i sends chunk (i - s) mod n to i+1 and receives chunk
 * (i - s - 1) mod n from i-1 straight into place. Every member ends with the bits member j
 * computed for chunk j, so all ranks agree bit for bit.
 *
 * Each member sends and receives 2 (n-1)/n of the buffer in total, the bandwidth optimum
 * (Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations",
 * JPDC 2009). The allreduce runs segment by segment (c->ring_seg_bytes, 8 MiB; a segment is
 * cut into n chunks as above): a chunk reduced in the reduce-scatter is sent on by the
 * allgather while it is still in cache, which over loopback TCP on the development VM made
 * 64 MiB and 256 MiB allreduces 15-25% faster than one pass over the whole buffer. Within a step
 * the transport stripes the chunk over BATON_NSOCKS sockets and reduces each received piece while
 * later pieces are still on the wire, so a step's reduction overlaps its transfer; gloo's
 * allreduce_ring_chunked does the same by segments.
 */
#include <string.h>

#include "collectives/algo/algo.h"
#include "collectives/flight.h"

struct layout {
    size_t count; /* elements in the buffer */
    size_t block; /* > 0: chunk i is [i * block, (i + 1) * block); 0: bt__chunk(count) */
};

static void chunk(const struct layout *l, int n, int i, size_t *off, size_t *len)
{
    int j = ((i % n) + n) % n;
    if (l->block) {
        *off = (size_t)j * l->block;
        *len = l->block;
    } else {
        bt__chunk(l->count, n, j, off, len);
    }
}

static int ring_rs(struct bt_comm *c, const struct bt__group *g, char *buf, const struct layout *l,
                   bt_dtype dt, bt_op op)
{
    int n = g->n, me = g->me;
    size_t es = bt_dtype_size(dt);
    for (int s = 0; s < n - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(l, n, me - s - 1, &so, &sl);
        chunk(l, n, me - s - 2, &ro, &rl);
        struct bt__xfer x = {.send_to = g->ranks[(me + 1) % n],
                             .sbuf = buf + so * es,
                             .slen = sl * es,
                             .recv_from = g->ranks[(me + n - 1) % n],
                             .rlen = rl * es,
                             .red_dst = buf + ro * es,
                             .dtype = dt,
                             .op = op,
                             .incoming_first = 1};
        BT_CHECK(bt__xfer(c, &x));
    }
    return BT_OK;
}

static int ring_ag(struct bt_comm *c, const struct bt__group *g, char *buf, const struct layout *l,
                   size_t es)
{
    int n = g->n, me = g->me;
    for (int s = 0; s < n - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(l, n, me - s, &so, &sl);
        chunk(l, n, me - s - 1, &ro, &rl);
        struct bt__xfer x = {.send_to = g->ranks[(me + 1) % n],
                             .sbuf = buf + so * es,
                             .slen = sl * es,
                             .recv_from = g->ranks[(me + n - 1) % n],
                             .rbuf = buf + ro * es,
                             .rlen = rl * es};
        BT_CHECK(bt__xfer(c, &x));
    }
    return BT_OK;
}

int bt__ring_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                       bt_dtype dtype, bt_op op)
{
    size_t es = bt_dtype_size(dtype), seg = c->ring_seg_bytes / es;
    if (seg < (size_t)g->n)
        seg = (size_t)g->n;
    for (size_t off = 0; off < count; off += seg) {
        size_t m = count - off < seg ? count - off : seg;
        struct layout l = {m, 0};
        char *b = (char *)buf + off * es;
        BT_CHECK(ring_rs(c, g, b, &l, dtype, op));
        if (off == 0) /* the timeline's phases: the first segment's two halves */
            bt__flight_phase(c, 0, BT_FL_PHASE_RING);
        BT_CHECK(ring_ag(c, g, b, &l, es));
        if (off == 0)
            bt__flight_phase(c, 1, BT_FL_PHASE_RING);
    }
    return BT_OK;
}

int bt__ring_reduce_scatter(struct bt_comm *c, const struct bt__group *g, void *buf, size_t block,
                            bt_dtype dtype, bt_op op)
{
    struct layout l = {block * (size_t)g->n, block};
    return ring_rs(c, g, buf, &l, dtype, op);
}

int bt__ring_allgather(struct bt_comm *c, const struct bt__group *g, void *buf, size_t block,
                       size_t esize)
{
    struct layout l = {block * (size_t)g->n, block};
    return ring_ag(c, g, buf, &l, esize);
}

int bt__ring_allgather_bytes(struct bt_comm *c, const struct bt__group *g, void *buf, size_t bytes)
{
    struct layout l = {bytes, 0};
    return ring_ag(c, g, buf, &l, 1);
}
