/* algo/rabenseifner.c: Rabenseifner's allreduce, a reduce-scatter by recursive halving then
 * an allgather by recursive doubling (R. Rabenseifner, "Optimization of collective reduction
 * operations", ICCS 2004; Thakur, Rabenseifner and Gropp, IJHPCA 2005).
 *
 * A group size that is not a power of two is folded first (algo/rd.c): p = 2^k members
 * remain, numbered by their new rank q. The buffer is cut into p blocks with bt__chunk().
 *
 * Reduce-scatter, k steps with distance d = p/2, p/4, ..., 1: member q holds a range of
 * blocks [lo, hi) (first all p). It splits the range at mid; if q & d is 0 it keeps the lower
 * half and sends the upper half to q ^ d, else the reverse, receiving the partner's copy of the
 * half it keeps and reducing it in (lower member's data first, as it arrives). After k steps
 * member q holds block q reduced over all p members.
 *
 * Allgather, k steps with d = 1, 2, ..., p/2: member q sends the range it holds to q ^ d and
 * receives the partner's range next to it, doubling its range.
 *
 * Each member sends about 2 (p-1)/p of the buffer in 2 log2 p messages: the bandwidth of the
 * ring with the latency of recursive doubling, for medium messages. Then the unfold.
 */
#include <string.h>

#include "collectives/algo/algo.h"
#include "collectives/flight.h"

/* Element offset of block b of p (b == p: the end). */
static size_t block_off(size_t count, int p, int b)
{
    size_t off, len;
    bt__chunk(count, p, b, &off, &len);
    return off;
}

static int halving(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f,
                   char *buf, size_t count, bt_dtype dt, bt_op op, int *lo, int *hi)
{
    size_t es = bt_dtype_size(dt);
    for (int d = f->p / 2; d >= 1; d /= 2) {
        int partner = bt__fold_member(f, f->newrank ^ d), mid = (*lo + *hi) / 2;
        int keep_lo = (f->newrank & d) ? mid : *lo, keep_hi = (f->newrank & d) ? *hi : mid;
        int send_lo = (f->newrank & d) ? *lo : mid, send_hi = (f->newrank & d) ? mid : *hi;
        size_t so = block_off(count, f->p, send_lo), se = block_off(count, f->p, send_hi);
        size_t ko = block_off(count, f->p, keep_lo), ke = block_off(count, f->p, keep_hi);
        struct bt__xfer x = {.send_to = g->ranks[partner],
                             .sbuf = buf + so * es,
                             .slen = (se - so) * es,
                             .recv_from = g->ranks[partner],
                             .rlen = (ke - ko) * es,
                             .red_dst = buf + ko * es,
                             .dtype = dt,
                             .op = op,
                             .incoming_first = partner < g->me};
        BT_CHECK(bt__xfer(c, &x));
        *lo = keep_lo, *hi = keep_hi;
    }
    return BT_OK;
}

static int doubling(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f,
                    char *buf, size_t count, size_t es, int lo, int hi)
{
    for (int d = 1; d < f->p; d *= 2) {
        int partner = bt__fold_member(f, f->newrank ^ d), w = hi - lo;
        int plo = (f->newrank & d) ? lo - w : hi, phi = plo + w;
        size_t so = block_off(count, f->p, lo), se = block_off(count, f->p, hi);
        size_t ro = block_off(count, f->p, plo), re = block_off(count, f->p, phi);
        struct bt__xfer x = {.send_to = g->ranks[partner],
                             .sbuf = buf + so * es,
                             .slen = (se - so) * es,
                             .recv_from = g->ranks[partner],
                             .rbuf = buf + ro * es,
                             .rlen = (re - ro) * es};
        BT_CHECK(bt__xfer(c, &x));
        lo = lo < plo ? lo : plo;
        hi = hi > phi ? hi : phi;
    }
    return BT_OK;
}

int bt__rabenseifner_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf,
                               size_t count, bt_dtype dt, bt_op op)
{
    struct bt__fold f;
    size_t es = bt_dtype_size(dt);
    bt__fold_plan(g->n, g->me, &f);
    BT_CHECK(bt__fold_in(c, g, &f, buf, count, dt, op));
    if (f.newrank >= 0) {
        int lo = 0, hi = f.p;
        BT_CHECK(halving(c, g, &f, buf, count, dt, op, &lo, &hi));
        bt__flight_phase(c, 0, BT_FL_PHASE_RABEN); /* the timeline's phases (flight.h) */
        BT_CHECK(doubling(c, g, &f, buf, count, es, lo, hi));
    } else
        bt__flight_phase(c, 0, BT_FL_PHASE_RABEN); /* folded away: it waits for the unfold */
    bt__flight_phase(c, 1, BT_FL_PHASE_RABEN);
    return bt__fold_out(c, g, &f, buf, count * es);
}
