/* straggler.c: the straggler rule (launcher/straggler.h): a binomial tail against chance and
 * a floor on the lag. What it does not do: gather the calls (run_flight.c) or print them.
 *
 * The tail sums the terms C(w, i) p^i (1 - p)^(w - i) for i = c..w, each computed in logs
 * (lgamma) so that w of a few hundred neither overflows nor loses the small terms that
 * matter here (1e-6 and below).
 */
#include <math.h>
#include <stdlib.h>

#include "launcher/straggler.h"

double bt__strag_tail(int w, int c, double p)
{
    if (c <= 0)
        return 1.0;
    if (c > w || p <= 0)
        return 0.0;
    if (p >= 1)
        return 1.0;
    double lw = lgamma(w + 1.0), lp = log(p), lq = log1p(-p), sum = 0;
    for (int i = c; i <= w; i++)
        sum += exp(lw - lgamma(i + 1.0) - lgamma(w - i + 1.0) + i * lp + (w - i) * lq);
    return sum < 1 ? sum : 1.0;
}

int64_t bt__strag_own_lag(int64_t lag_ns, int64_t gap_last, int64_t gap_others)
{
    if (gap_last == BT_STRAG_GAP_UNKNOWN || gap_last == BT_STRAG_GAP_NONE ||
        gap_others == BT_STRAG_GAP_UNKNOWN || gap_others == BT_STRAG_GAP_NONE)
        return lag_ns;
    if (gap_last <= gap_others)
        return 0;
    uint64_t own = (uint64_t)gap_last - (uint64_t)gap_others; /* no signed overflow */
    return lag_ns < 0 ? lag_ns : own < (uint64_t)lag_ns ? (int64_t)own : lag_ns;
}

int64_t bt__strag_gap_max(int64_t a, int64_t b)
{
    if (a == BT_STRAG_GAP_UNKNOWN || b == BT_STRAG_GAP_UNKNOWN)
        return BT_STRAG_GAP_UNKNOWN;
    if (a == BT_STRAG_GAP_NONE)
        return b;
    if (b == BT_STRAG_GAP_NONE)
        return a;
    return a > b ? a : b;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median lag (the upper one of an even count) of the calls in which who was last. */
static double median_lag(const int32_t *last, const float *lag_ms, int w, int who, double *tmp)
{
    int c = 0;
    for (int j = 0; j < w; j++)
        if (last[j] == who)
            tmp[c++] = lag_ms[j];
    qsort(tmp, (size_t)c, sizeof(*tmp), cmp_dbl);
    return c ? tmp[c / 2] : 0.0;
}

int bt__strag_judge(const int32_t *last, const float *lag_ms, int w, int np,
                    struct bt__strag_verdict *v)
{
    struct bt__strag_verdict top = {.who = -1};
    *v = top;
    if (w < BT_STRAG_MIN_CALLS || np < 2)
        return 0;
    double *tmp = malloc(sizeof(*tmp) * (size_t)w), pr = 1.0 / np;
    int found = 0;
    for (int i = 0; tmp && i < w; i++) {
        int who = last[i], c = 0, seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = last[j] == who;
        for (int j = i; j < w && !seen; j++)
            c += last[j] == who;
        if (seen || (found && c <= v->count))
            continue;
        struct bt__strag_verdict x = {.who = who,
                                      .count = c,
                                      .median_ms = median_lag(last, lag_ms, w, who, tmp),
                                      .chance = w * pr,
                                      .p = np * bt__strag_tail(w, c, pr)};
        x.p = x.p < 1 ? x.p : 1.0;
        if (x.p < BT_STRAG_ALPHA && x.median_ms >= BT_STRAG_MIN_LAG_MS)
            *v = x, found = 1;
        else if (c > top.count)
            top = x;
    }
    free(tmp);
    if (!found)
        *v = top;
    return found;
}
