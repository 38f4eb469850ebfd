/* test_strag.c: the straggler rule (launcher/straggler.h) on synthetic arrivals. Equally
 * placed ranks, whoever is last by chance, are never named over thousands of seeded windows,
 * lags well above the floor included; a rank last in 87 of 100 calls 41 ms after the others is
 * named, and only it; the edges: 2 ranks, few calls, lockstep lags under the floor, the
 * counts at which 2, 4 and 8 ranks of 100 calls tip over (straggler.h's comment says them),
 * and a count the old z >= 4 rule named that chance explains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "launcher/straggler.h"

#define W 100

static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64: the same arrivals on every machine */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static float uniform(double lo, double hi)
{
    return (float)(lo + (hi - lo) * (double)(rng() >> 11) / 9007199254740992.0);
}

static void test_tail(void **st)
{
    (void)st;
    assert_true(bt__strag_tail(20, 0, 0.5) == 1.0);
    assert_true(bt__strag_tail(20, 21, 0.5) == 0.0);
    assert_true(fabs(bt__strag_tail(20, 20, 0.5) - 1.0 / (1 << 20)) < 1e-18);
    assert_true(fabs(bt__strag_tail(2, 1, 0.5) - 0.75) < 1e-12);
    /* the tail of 3 of 10 at 1/4 by hand: 1 - P(0) - P(1) - P(2) */
    double q = 0.75, p0 = pow(q, 10), p1 = 10 * 0.25 * pow(q, 9), p2 = 45 * 0.0625 * pow(q, 8);
    assert_true(fabs(bt__strag_tail(10, 3, 0.25) - (1 - p0 - p1 - p2)) < 1e-12);
    double t = bt__strag_tail(100, 87, 0.25);
    assert_true(t > 0 && t < 1e-30);
    for (int c = 1; c <= W; c++) /* never grows with c */
        assert_true(bt__strag_tail(W, c, 0.125) <= bt__strag_tail(W, c - 1, 0.125));
}

/* Every rank equally likely to be last, lags 0 to 50 ms (a median far above the floor, as on
 * an oversubscribed machine): over 20,000 windows of 2 to 16 ranks, nobody is named. */
static void test_chance_never_warns(void **st)
{
    (void)st;
    static const int nps[] = {2, 3, 4, 6, 8, 16};
    static const int ws[] = {20, 21, 50, 100};
    int32_t last[W];
    float lag[W];
    int windows = 0;
    for (uint64_t seed = 1; seed <= 1000; seed++)
        for (size_t a = 0; a < sizeof(nps) / sizeof(nps[0]); a++)
            for (size_t b = 0; b < sizeof(ws) / sizeof(ws[0]); b++) {
                struct bt__strag_verdict v;
                rng_state = seed * 1000003 + a * 101 + b;
                for (int i = 0; i < ws[b]; i++)
                    last[i] = (int32_t)(rng() % (uint64_t)nps[a]), lag[i] = uniform(0, 50);
                if (bt__strag_judge(last, lag, ws[b], nps[a], &v))
                    fail_msg("seed %llu, %d ranks, %d calls: rank %d named (%d, p %g)",
                             (unsigned long long)seed, nps[a], ws[b], v.who, v.count, v.p);
                windows++;
            }
    assert_int_equal(windows, 24000);
}

/* np ranks; rank slow is last in the first nslow calls (lag 41 ms, give or take 5), the
 * others in random order (lags 0.2 to 3 ms); shuffled. */
static void window(int32_t *last, float *lag, int np, int slow, int nslow)
{
    for (int i = 0; i < W; i++) {
        int other = (int)(rng() % (uint64_t)(np - 1));
        last[i] = i < nslow ? slow : other >= slow ? other + 1 : other;
        lag[i] = i < nslow ? uniform(36, 46) : uniform(0.2, 3);
    }
    for (int i = W - 1; i > 0; i--) {
        int j = (int)(rng() % (uint64_t)(i + 1));
        int32_t tl = last[i];
        float tg = lag[i];
        last[i] = last[j], lag[i] = lag[j], last[j] = tl, lag[j] = tg;
    }
}

static void test_straggler_named_alone(void **st)
{
    (void)st;
    int32_t last[W];
    float lag[W];
    for (int np = 2; np <= 16; np *= 2)
        for (uint64_t seed = 1; seed <= 50; seed++) {
            struct bt__strag_verdict v = {0};
            int slow = (int)(seed % (uint64_t)np);
            rng_state = seed;
            window(last, lag, np, slow, 87);
            assert_int_equal(bt__strag_judge(last, lag, W, np, &v), 1);
            assert_int_equal(v.who, slow);
            assert_int_equal(v.count, 87);
            assert_true(v.median_ms >= 36 && v.median_ms < 46);
            assert_true(fabs(v.chance - (double)W / np) < 1e-9);
            assert_true(v.p < BT_STRAG_ALPHA);
        }
    /* the example exactly: 41 ms in each of its 87 calls, 4 ranks */
    rng_state = 7;
    window(last, lag, 4, 1, 87);
    for (int i = 0; i < W; i++)
        if (last[i] == 1)
            lag[i] = 41;
    struct bt__strag_verdict v;
    assert_int_equal(bt__strag_judge(last, lag, W, 4, &v), 1);
    assert_int_equal(v.who, 1);
    assert_int_equal(v.count, 87);
    assert_true(fabs(v.median_ms - 41) < 1e-9);
}

/* w calls, who last in the first c of them (lag ms), the others spread over the rest. */
static int judge_count(int np, int w, int c, double lag_ms, struct bt__strag_verdict *v)
{
    int32_t last[W];
    float lag[W];
    for (int i = 0; i < w; i++) {
        last[i] = i < c ? 0 : 1 + (np > 1 ? i % (np - 1) : 0);
        lag[i] = (float)lag_ms;
    }
    return bt__strag_judge(last, lag, w, np, v);
}

static void test_edges(void **st)
{
    (void)st;
    struct bt__strag_verdict v;
    /* 2 ranks: 20 of 20 is 1 in 2^20 for each, twice that for either: not enough; 21 of 21 is */
    assert_int_equal(judge_count(2, 20, 20, 20, &v), 0);
    assert_int_equal(judge_count(2, 21, 21, 20, &v), 1);
    assert_int_equal(v.who, 0);
    /* few calls: 19 of 19 among 8 ranks names none (BT_STRAG_MIN_CALLS) */
    assert_int_equal(judge_count(8, BT_STRAG_MIN_CALLS - 1, BT_STRAG_MIN_CALLS - 1, 20, &v), 0);
    assert_int_equal(judge_count(8, BT_STRAG_MIN_CALLS, BT_STRAG_MIN_CALLS, 20, &v), 1);
    assert_int_equal(judge_count(1, 100, 100, 20, &v), 0);
    assert_int_equal(judge_count(4, 0, 0, 20, &v), 0);
    /* lockstep: last in every call, by less than the floor */
    assert_int_equal(judge_count(4, W, W, BT_STRAG_MIN_LAG_MS * 0.9, &v), 0);
    assert_int_equal(judge_count(4, W, W, BT_STRAG_MIN_LAG_MS, &v), 1);
    /* where 100 calls tip over (straggler.h): 2 ranks 75, 4 ranks 49, 8 ranks 33 */
    static const int tip[][2] = {{2, 75}, {4, 49}, {8, 33}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(judge_count(tip[i][0], W, tip[i][1] - 1, 20, &v), 0);
        assert_int_equal(judge_count(tip[i][0], W, tip[i][1], 20, &v), 1);
        assert_int_equal(v.count, tip[i][1]);
    }
    /* 26 of 100 among 8 ranks is 4.08 standard deviations above 12.5, which the old rule
     * (z >= 4) named; chance gives it to some rank about once in 650 windows */
    assert_int_equal(judge_count(8, W, 26, 20, &v), 0);
    assert_true(8 * bt__strag_tail(W, 26, 0.125) > 1e-4);
}

/* A rank last in lockstep (60 of 100, by 0.1 ms: under the floor) does not hide a straggler
 * last less often (35 of 100 among 8, 20 ms late); with none named, *v holds the rank last
 * most often, let go. */
static void test_floor_then_straggler(void **st)
{
    (void)st;
    int32_t last[W];
    float lag[W];
    for (int i = 0; i < W; i++) {
        last[i] = i < 60 ? 0 : i < 95 ? 5 : 1 + i % 4;
        lag[i] = i < 60 ? 0.1f : 20;
    }
    struct bt__strag_verdict v;
    assert_int_equal(bt__strag_judge(last, lag, W, 8, &v), 1);
    assert_int_equal(v.who, 5);
    assert_int_equal(v.count, 35);
    for (int i = 60; i < 95; i++)
        last[i] = 1 + i % 7; /* no second rank stands out: the lockstep one is let go */
    assert_int_equal(bt__strag_judge(last, lag, W, 8, &v), 0);
    assert_int_equal(v.who, 0);
    assert_int_equal(v.count, 60);
    assert_true(v.median_ms < BT_STRAG_MIN_LAG_MS && v.p < BT_STRAG_ALPHA);
    assert_int_equal(bt__strag_judge(last, lag, BT_STRAG_MIN_CALLS - 1, 8, &v), 0);
    assert_int_equal(v.who, -1);
    assert_int_equal(v.count, 0);
}

/* Two ranks of 8 both slow: the one last more often is named (one line per op). */
static void test_two_slow(void **st)
{
    (void)st;
    int32_t last[W];
    float lag[W];
    for (int i = 0; i < W; i++)
        last[i] = i < 40 ? 5 : i < 95 ? 2 : i % 8, lag[i] = 20;
    struct bt__strag_verdict v;
    assert_int_equal(bt__strag_judge(last, lag, W, 8, &v), 1);
    assert_int_equal(v.who, 2);
    assert_true(v.count >= 55);
}

static void test_own_lag_rule(void **st)
{
    (void)st;
    const int64_t ms = 1000000, unk = BT_STRAG_GAP_UNKNOWN, none = BT_STRAG_GAP_NONE;
    assert_true(bt__strag_own_lag(5 * ms, unk, 3 * ms) == 5 * ms); /* not known: all of it */
    assert_true(bt__strag_own_lag(5 * ms, 9 * ms, unk) == 5 * ms);
    assert_true(bt__strag_own_lag(5 * ms, 9 * ms, none) == 5 * ms);
    assert_true(bt__strag_own_lag(5 * ms, 3 * ms, 3 * ms) == 0); /* it left late: none its own */
    assert_true(bt__strag_own_lag(5 * ms, 2 * ms, 3 * ms) == 0);
    assert_true(bt__strag_own_lag(5 * ms, 6 * ms, 3 * ms) == 3 * ms);  /* part of it */
    assert_true(bt__strag_own_lag(5 * ms, 30 * ms, 1 * ms) == 5 * ms); /* never more than lag */
    assert_true(bt__strag_own_lag(5 * ms, INT64_MAX, INT64_MIN + 2) == 5 * ms); /* no overflow */
    assert_true(bt__strag_own_lag(5 * ms, -1 * ms, -4 * ms) == 3 * ms); /* overlapped calls */
    assert_true(bt__strag_gap_max(none, 7) == 7 && bt__strag_gap_max(7, none) == 7);
    assert_true(bt__strag_gap_max(none, none) == none);
    assert_true(bt__strag_gap_max(unk, 7) == unk && bt__strag_gap_max(none, unk) == unk);
    assert_true(bt__strag_gap_max(-3, 2) == 2);
}

/* 4 ranks each working 2 ms between calls (+-20 us), calls of 1 ms; slow (>= 0) works 20 ms;
 * rank 0 leaves every call but a third of them 2 ms after the others (woken late from its wait,
 * as on an oversubscribed machine), so it enters the next one last by as much. The window of
 * 100 calls judged by arrival lags, or by the part the last rank's own work explains. */
static int judge_window(int slow, int own, struct bt__strag_verdict *v)
{
    int32_t last[W];
    float lag[W];
    int64_t end[4] = {0, 0, 0, 0}, start[4], gap[4];
    for (int i = 0; i < W; i++) {
        int64_t done = 0;
        for (int r = 0; r < 4; r++) {
            gap[r] = (r == slow ? 20000000 : 2000000) + (int64_t)uniform(-20000, 20000);
            start[r] = end[r] + gap[r];
        }
        int at = 0;
        for (int r = 1; r < 4; r++)
            at = start[r] > start[at] ? r : at;
        int64_t second = INT64_MIN, others = BT_STRAG_GAP_NONE;
        for (int r = 0; r < 4; r++) {
            if (r != at)
                second = start[r] > second ? start[r] : second;
            if (r != at)
                others = bt__strag_gap_max(others, gap[r]);
            done = start[r] > done ? start[r] : done;
        }
        last[i] = at;
        int64_t l = start[at] - second;
        lag[i] = (float)((double)(own ? bt__strag_own_lag(l, gap[at], others) : l) / 1e6);
        for (int r = 0; r < 4; r++) /* all leave 1 ms after the last entered; rank 0 later */
            end[r] = done + 1000000 + (int64_t)uniform(0, 10000) + (r == 0 && i % 3 ? 2000000 : 0);
    }
    return bt__strag_judge(last, lag, W, 4, v);
}

/* Rank 0 last in two thirds of the calls only because it left the one before late: the arrival
 * lags name it, its own lags (0) do not; a rank that works 20 ms between calls is named either
 * way, with its ~16 ms (18 less rank 0's late leaving, in two calls of three). */
static void test_left_late_not_named(void **st)
{
    (void)st;
    struct bt__strag_verdict v;
    rng_state = 11;
    assert_int_equal(judge_window(-1, 0, &v), 1);
    assert_int_equal(v.who, 0);
    assert_true(v.count >= 60 && v.median_ms > 1.5);
    assert_int_equal(judge_window(-1, 1, &v), 0);
    assert_int_equal(v.who, 0);
    assert_true(v.count >= 60 && v.median_ms < 0.1);
    assert_int_equal(judge_window(1, 1, &v), 1);
    assert_int_equal(v.who, 1);
    assert_true(v.count >= 95 && v.median_ms > 15 && v.median_ms < 19);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail),
        cmocka_unit_test(test_chance_never_warns),
        cmocka_unit_test(test_straggler_named_alone),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_floor_then_straggler),
        cmocka_unit_test(test_two_slow),
        cmocka_unit_test(test_own_lag_rule),
        cmocka_unit_test(test_left_late_not_named),
    };
    return cmocka_run_group_tests_name("strag", tests, NULL, NULL);
}
