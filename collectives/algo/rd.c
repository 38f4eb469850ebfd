/* algo/rd.c: recursive-doubling allreduce, the fold that makes any group size a power of
 * two (shared with algo/rabenseifner.c), and the binomial-tree broadcast.
 *
 * Fold (Thakur, Rabenseifner and Gropp, "Optimization of collective communication operations
 * in MPICH", IJHPCA 2005): let p be the largest power of two <= n and r = n - p. Members
 * 0 .. 2r-1 pair up: even member 2k sends its whole buffer to 2k+1, which reduces it (even's
 * data first) and carries on as "new rank" k; the even one sits out. Members >= 2r become new
 * rank i - r. After the power-of-two algorithm, each odd member 2k+1 sends the result back to
 * 2k (the unfold).
 *
 * Recursive doubling over the p new ranks, log2 p steps: at step with distance d = 1, 2, 4,
 * ... new rank q exchanges its whole buffer with q ^ d and both compute op(lower member's
 * data, higher member's data), so both hold the same bits. Latency log2 p messages, but each
 * member sends the whole buffer every step: for small messages.
 *
 * Binomial broadcast (relative rank v = (i - root) mod n): v receives from v - 2^k where 2^k
 * is v's lowest set bit, then sends to v + 2^j for every 2^j below that bit (largest first).
 */
#include <string.h>

#include "collectives/reduce.h"
#include "collectives/algo/algo.h"

void bt__fold_plan(int n, int me, struct bt__fold *f)
{
    int p = 1;
    while (p * 2 <= n)
        p *= 2;
    f->p = p;
    f->r = n - p;
    if (me < 2 * f->r)
        f->newrank = me % 2 ? me / 2 : -1;
    else
        f->newrank = me - f->r;
}

int bt__fold_member(const struct bt__fold *f, int newrank)
{
    return newrank < f->r ? newrank * 2 + 1 : newrank + f->r;
}

int bt__fold_in(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f, void *buf,
                size_t count, bt_dtype dt, bt_op op)
{
    size_t bytes = count * bt_dtype_size(dt);
    if (g->me >= 2 * f->r)
        return BT_OK;
    if (g->me % 2 == 0) {
        struct bt__xfer x = {.send_to = g->ranks[g->me + 1],
                             .sbuf = buf,
                             .slen = bytes,
                             .recv_from = -1};
        return bt__xfer(c, &x);
    }
    struct bt__xfer x = {.send_to = -1,
                         .recv_from = g->ranks[g->me - 1],
                         .rlen = bytes,
                         .red_dst = buf,
                         .dtype = dt,
                         .op = op,
                         .incoming_first = 1};
    return bt__xfer(c, &x);
}

int bt__fold_out(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f, void *buf,
                 size_t bytes)
{
    if (g->me >= 2 * f->r)
        return BT_OK;
    struct bt__xfer x = {.send_to = -1, .recv_from = -1};
    if (g->me % 2 == 0)
        x.recv_from = g->ranks[g->me + 1], x.rbuf = buf, x.rlen = bytes;
    else
        x.send_to = g->ranks[g->me - 1], x.sbuf = buf, x.slen = bytes;
    return bt__xfer(c, &x);
}

int bt__rd_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                     bt_dtype dt, bt_op op)
{
    struct bt__fold f;
    size_t bytes = count * bt_dtype_size(dt);
    bt__fold_plan(g->n, g->me, &f);
    BT_CHECK(bt__fold_in(c, g, &f, buf, count, dt, op));
    if (f.newrank >= 0) {
        void *tmp = bt__scratch(c, 1, bytes);
        if (!tmp && bytes)
            return c->err.code;
        for (int d = 1; d < f.p; d *= 2) {
            int partner = bt__fold_member(&f, f.newrank ^ d);
            int peer = g->ranks[partner];
            struct bt__xfer x = {.send_to = peer,
                                 .sbuf = buf,
                                 .slen = bytes,
                                 .recv_from = peer,
                                 .rbuf = tmp,
                                 .rlen = bytes};
            BT_CHECK(bt__xfer(c, &x));
            if (partner < g->me)
                bt__reduce2(dt, op, buf, tmp, buf, count);
            else
                bt__reduce2(dt, op, buf, buf, tmp, count);
        }
    }
    return bt__fold_out(c, g, &f, buf, bytes);
}

int bt__tree_broadcast(struct bt_comm *c, const struct bt__group *g, void *buf, size_t bytes,
                       int root)
{
    int n = g->n, v = (g->me - root + n) % n, mask = 1;
    while (mask < n) {
        if (v & mask) {
            struct bt__xfer x = {.send_to = -1,
                                 .recv_from = g->ranks[(v - mask + root) % n],
                                 .rbuf = buf,
                                 .rlen = bytes};
            BT_CHECK(bt__xfer(c, &x));
            break;
        }
        mask <<= 1;
    }
    for (mask >>= 1; mask > 0; mask >>= 1) {
        if (v + mask >= n)
            continue;
        struct bt__xfer x = {.send_to = g->ranks[(v + mask + root) % n],
                             .sbuf = buf,
                             .slen = bytes,
                             .recv_from = -1};
        BT_CHECK(bt__xfer(c, &x));
    }
    return BT_OK;
}
