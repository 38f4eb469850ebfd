/* straggler.h: the rule that names a straggler (launcher/straggler.c), apart from how the
 * launcher gathers the calls it judges (run_flight.c), so that a unit test can feed it
 * synthetic arrivals (tests/unit/test_strag.c).
 *
 * Given w calls of one op among np ranks, who entered each last and by how much after the one
 * before it, a rank is a straggler when both hold:
 *  - chance cannot explain its count: were every rank equally likely to be last in each call
 *    (1/np, independently), the probability that any of the np ranks is last in as many of
 *    the w calls as it was (np times the binomial upper tail, a union bound over the ranks) is
 *    below BT_STRAG_ALPHA;
 *  - it costs the others: the median lag of the calls it was last in is BT_STRAG_MIN_LAG_MS or
 *    more (calls in lockstep are always last by someone, by microseconds).
 * Fewer than BT_STRAG_MIN_CALLS calls, or fewer than 2 ranks, name none. With 2 ranks and 21
 * calls it takes 21 of 21; with 2 and 100, 75; with 4 and 100, 49; with 8 and 100, 33. Calls
 * of an oversubscribed machine are not independent (a rank descheduled now is more likely
 * late next), which is what the lag floor and the small alpha leave room for.
 */
#ifndef BT_LAUNCHER_STRAGGLER_H
#define BT_LAUNCHER_STRAGGLER_H

#include <stdint.h>

#define BT_STRAG_MIN_CALLS 20   /* calls of an op looked at before any is named */
#define BT_STRAG_ALPHA 1e-6     /* chance, over all ranks, that equal ranks would do as badly */
#define BT_STRAG_MIN_LAG_MS 1.0 /* a median lag below this is noise, not a straggler */

struct bt__strag_verdict {
    int who;          /* as last[] names it */
    int count;        /* calls it entered last */
    double median_ms; /* the median of those calls' lags */
    double chance;    /* calls it would be last in by chance: w / np */
    double p;         /* np * P(Binomial(w, 1/np) >= count), at most 1 */
};

/* What of a call's lag the last rank owes to itself. A rank's gap before a call is the time from
 * the end of its previous call of the communicator to this one's start: its own work between
 * the two. A rank that left the previous call last (woken last from a wait inside it: on an
 * oversubscribed machine one rank can be, call after call) enters this one last by as much
 * without being any slower. So a lag counts only as far as the last rank's
 * gap exceeds the longest gap of the others: min(lag_ns, gap_last - gap_others), at least 0; the
 * whole lag when either gap is not known (the first call, a previous call fallen out of the
 * recorder). */
#define BT_STRAG_GAP_UNKNOWN INT64_MIN    /* a gap not known */
#define BT_STRAG_GAP_NONE (INT64_MIN + 1) /* the longest gap of no ranks (a node's only member) */
int64_t bt__strag_own_lag(int64_t lag_ns, int64_t gap_last, int64_t gap_others);
/* The longer of two gaps (as gap_others takes them): unknown when either is, NONE adds none. */
int64_t bt__strag_gap_max(int64_t a, int64_t b);

/* P(X >= c) for X ~ Binomial(w, p), 0 <= p <= 1; 1 for c <= 0, 0 for c > w. */
double bt__strag_tail(int w, int c, double p);

/* Judges w calls (last[i]: who entered call i last, any int id; lag_ms[i]: how long after the
 * one before it) among np ranks: the straggler into *v and 1, or 0 when none stands out. When
 * more than one would, the one last most often (the first of them in last[] on a tie). With
 * none, *v holds the rank last most often, judged and let go (for an INFO line; who -1 and
 * count 0 when too few calls or ranks were given). */
int bt__strag_judge(const int32_t *last, const float *lag_ms, int w, int np,
                    struct bt__strag_verdict *v);

#endif
