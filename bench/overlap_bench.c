/* overlap_bench.c: how much of a nonblocking allreduce the progress thread hides behind the
 * caller's computation, as the trainer's buckets rely on (collectives/progress.c).
 *
 *   baton run -n N [--bind core] -- build/bench/overlap_bench [-b 64K] [-e 16M] [-f 4]
 *                                                             [-n 15] [-w 3]
 *
 * Per size, float32 sum: A, the blocking bt_allreduce alone; C, a computation of about the
 * same length alone (a dependent chain of float multiply-adds on this rank's core, sized from A
 * at the start of the size); T, bt_iallreduce, the same computation without touching the
 * request, then bt_wait. Each time is the median over -n iterations of the largest of the
 * ranks' times (a barrier before each). hidden = (A + C - T) / A: 1 when the allreduce ran
 * entirely behind the computation, 0 when the wait took as long as the call alone (nothing ran
 * without the caller). With more ranks than idle cores the progress thread competes with the
 * computation for the rank's core, and hidden says what that leaves. The results are checked
 * after timing (#wrong, over all ranks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton.h"
#include "bench_util.h"

static int rank_, size_;
static volatile float sink;

static int usage(const char *why)
{
    return bench_usage("overlap_bench", why,
                       "[-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS] [-w WARMUP]");
}

/* About iters multiply-adds of a dependent chain: the caller's computation. */
static void compute(long iters)
{
    float x = 1.0f;
    for (long i = 0; i < iters; i++)
        x = x * 0.999999f + 1e-7f;
    sink = x;
}

/* The largest of the ranks' t (everyone gets it). */
static double slowest(bt_comm *c, double t)
{
    bt_allreduce(c, &t, &t, 1, BT_FLOAT64, BT_MAX);
    return t;
}

enum { T_ALONE, T_COMPUTE, T_OVERLAP };

/* One timed sample of kind k (a barrier before it). */
static double sample(bt_comm *c, int k, float *buf, size_t n, long work)
{
    bt_request *req = NULL;
    bt_barrier(c);
    double t0 = bench_now_us();
    if (k == T_ALONE) {
        bt_allreduce(c, buf, buf, n, BT_FLOAT32, BT_SUM);
    } else if (k == T_COMPUTE) {
        compute(work);
    } else {
        bt_iallreduce(c, buf, buf, n, BT_FLOAT32, BT_SUM, &req);
        compute(work);
        bt_wait(req);
        bt_request_free(req);
    }
    return slowest(c, bench_now_us() - t0);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof(double), bench_cmp_dbl);
    return t[n / 2];
}

/* Multiply-adds that take about us microseconds here (measured, then scaled). */
static long calibrate(bt_comm *c, double us)
{
    long probe = 1000000;
    double t0 = bench_now_us();
    compute(probe);
    double per = (bench_now_us() - t0) / (double)probe;
    per = slowest(c, per); /* the slowest core's rate, so every rank computes alike */
    return (long)(us / per) + 1;
}

static long check(bt_comm *c, float *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)((i + (size_t)rank_) % 7);
    bt_allreduce(c, buf, buf, n, BT_FLOAT32, BT_SUM);
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int r = 0; r < size_; r++)
            want += (float)((i + (size_t)r) % 7);
        bad += buf[i] != want;
    }
    bt_allreduce(c, &bad, &bad, 1, BT_INT64, BT_SUM);
    return bad;
}

int main(int argc, char **argv)
{
    struct bench_args a = {
        .minb = 64 << 10, .maxb = 16u << 20, .factor = 4, .iters = 15, .warmup = 3};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage("an option lacks its value");
        int t = bench_parse_common(argv[i], argv[i + 1], &a);
        if (t < 0)
            return usage("a bad value");
        if (t == 0)
            return usage("an unknown option");
    }
    if (a.minb > a.maxb || a.factor <= 1 || a.iters < 1 || a.warmup < 0)
        return usage("want -b <= -e, -f > 1, -n >= 1, -w >= 0");
    bt_comm *c;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "overlap_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    bt_comm_rank(c, &rank_);
    bt_comm_size(c, &size_);
    float *buf = malloc(a.maxb);
    double *t = malloc(sizeof(double) * (size_t)a.iters);
    if (!buf || !t) {
        fprintf(stderr, "overlap_bench: out of memory\n");
        return 1;
    }
    memset(buf, 0, a.maxb); /* fault the pages in before timing */
    if (rank_ == 0)
        printf("# overlap_bench: %d ranks, float32 sum, median of %d (largest over ranks)\n"
               "#%11s %12s %12s %12s %8s %7s\n",
               size_, a.iters, "bytes", "alone_us", "compute_us", "overlap_us", "hidden", "#wrong");
    for (double bytes = (double)a.minb; bytes <= (double)a.maxb; bytes *= a.factor) {
        size_t n = (size_t)bytes / sizeof(float);
        double m[3];
        for (int i = 0; i < a.warmup; i++)
            sample(c, T_ALONE, buf, n, 0);
        for (int i = 0; i < a.iters; i++)
            t[i] = sample(c, T_ALONE, buf, n, 0);
        m[T_ALONE] = median(t, a.iters);
        long work = calibrate(c, m[T_ALONE]);
        for (int k = T_COMPUTE; k <= T_OVERLAP; k++) {
            for (int i = 0; i < a.warmup; i++)
                sample(c, k, buf, n, work);
            for (int i = 0; i < a.iters; i++)
                t[i] = sample(c, k, buf, n, work);
            m[k] = median(t, a.iters);
        }
        long bad = check(c, buf, n);
        if (rank_ == 0)
            printf("%12zu %12.1f %12.1f %12.1f %8.2f %7ld\n", (size_t)bytes, m[T_ALONE],
                   m[T_COMPUTE], m[T_OVERLAP],
                   (m[T_ALONE] + m[T_COMPUTE] - m[T_OVERLAP]) / m[T_ALONE], bad);
    }
    free(buf), free(t);
    bt_finalize(c);
    return 0;
}
