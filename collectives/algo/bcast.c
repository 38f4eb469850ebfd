/* algo/bcast.c: the broadcast for large messages (scatter + allgather) and the binomial
 * reduce, so that bt_reduce over TCP no longer runs a whole allreduce.
 *
 * Scatter + allgather broadcast (van de Geijn; Thakur, Rabenseifner and Gropp, IJHPCA 2005):
 * with relative ranks v = (i - root) mod n and the buffer cut into n chunks (bt__chunk; chunk
 * v belongs to v), a binomial scatter sends each subtree its chunks: for mask from the top
 * power of two down, v with v mod 2·mask = 0 sends chunks [v + mask, v + 2·mask) to v + mask,
 * which received them from v - mask at its lowest set bit. Then a ring allgather over the
 * relative order gives every rank every chunk. Each rank sends and receives about 2m bytes
 * (the binomial tree sends m per level), at ⌈log2 n⌉ + n - 1 messages: for large m.
 *
 * Binomial reduce: v receives from v + 2^k for every 2^k below its lowest set bit (smallest
 * first) and reduces (own data first: the lower rank's on the left), then sends its partial
 * result to v - lowbit(v). ⌈log2 n⌉ steps on the critical path, m bytes each, and every
 * rank but the root sends exactly once: half the traffic of an allreduce.
 */
#include <stdlib.h>

#include "collectives/algo/algo.h"

/* Byte offset of chunk i (0 .. n) when bytes are cut into n chunks. */
static size_t chunk_at(size_t bytes, int n, int i)
{
    size_t off, len;
    if (i >= n)
        return bytes;
    bt__chunk(bytes, n, i, &off, &len);
    return off;
}

static int scatter(struct bt_comm *c, const struct bt__group *g, char *buf, size_t bytes, int root)
{
    int n = g->n, v = (g->me - root + n) % n, top = 1;
    while (top < n)
        top <<= 1;
    for (int mask = top >> 1; mask > 0; mask >>= 1) {
        int lo, hi, peer;
        if (v % (2 * mask) == mask) {
            lo = v, hi = v + mask < n ? v + mask : n, peer = v - mask;
        } else if (v % (2 * mask) == 0 && v + mask < n) {
            lo = v + mask, hi = v + 2 * mask < n ? v + 2 * mask : n, peer = v + mask;
        } else {
            continue;
        }
        size_t off = chunk_at(bytes, n, lo), len = chunk_at(bytes, n, hi) - off;
        struct bt__xfer x = {.send_to = -1, .recv_from = -1};
        if (peer < v)
            x.recv_from = g->ranks[(peer + root) % n], x.rbuf = buf + off, x.rlen = len;
        else
            x.send_to = g->ranks[(peer + root) % n], x.sbuf = buf + off, x.slen = len;
        BT_CHECK(bt__xfer(c, &x));
    }
    return BT_OK;
}

int bt__scatter_allgather_broadcast(struct bt_comm *c, const struct bt__group *g, void *buf,
                                    size_t bytes, int root)
{
    int n = g->n;
    if (bytes < (size_t)n) /* some chunks would be empty: the tree does it in fewer steps */
        return bt__tree_broadcast(c, g, buf, bytes, root);
    BT_CHECK(scatter(c, g, buf, bytes, root));
    int *rel = malloc((size_t)n * sizeof(*rel));
    if (!rel)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "broadcast: out of memory");
    for (int i = 0; i < n; i++)
        rel[i] = g->ranks[(i + root) % n];
    struct bt__group rg = {.n = n, .me = (g->me - root + n) % n, .ranks = rel};
    int rc = bt__ring_allgather_bytes(c, &rg, buf, bytes);
    free(rel);
    return rc;
}

int bt__tree_reduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                    bt_dtype dt, bt_op op, int root)
{
    int n = g->n, v = (g->me - root + n) % n;
    size_t bytes = count * bt_dtype_size(dt);
    for (int mask = 1; mask < n; mask <<= 1) {
        struct bt__xfer x = {.send_to = -1, .recv_from = -1};
        if (v & mask) {
            x.send_to = g->ranks[(v - mask + root) % n], x.sbuf = buf, x.slen = bytes;
            return bt__xfer(c, &x);
        }
        if (v + mask >= n)
            continue;
        x.recv_from = g->ranks[(v + mask + root) % n];
        x.rlen = bytes;
        x.red_dst = buf;
        x.dtype = dt;
        x.op = op;
        BT_CHECK(bt__xfer(c, &x));
    }
    return BT_OK;
}
