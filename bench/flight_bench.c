/* flight_bench.c: what the flight recorder costs allreduce, measured inside one job.
 *
 *   baton run -n 2 -- build/bench/flight_bench [--backend shm|tcp] [-s SIZE] [-B BLOCK]
 *                                              [-p PAIRS] [-w WARMUP] [-t SECONDS]
 *
 * A job run twice, once with the recorder and once without, cannot show a 1% difference on a
 * shared machine: two runs of one setting differ by more than that. So this program times both
 * in one job, at fine grain. It runs PAIRS pairs of blocks, each block BLOCK in-place float32
 * sum allreduces of SIZE bytes; in one block of each pair the recorder is paused
 * (bt_flight_pause: those calls are not recorded), in the other it records, and the order
 * swaps from pair to pair (on off, off on, ...), so a drift of the machine's speed falls on
 * both alike. Every rank pauses at the same call. A block's time is the slowest rank's (the
 * ranks' block times are max-reduced at the end). For each pair the difference on - off per
 * call is one sample; printed: the mean time per call with and without, the mean difference in
 * ns per call with its 95% confidence interval (Student's t over the pairs), and the ratio
 * on / off with the interval carried over (1 + CI / off). An interval that holds 0 means the
 * recorder's cost is below what this run can resolve; its upper end bounds the cost.
 * A shared machine's hiccups (a block that a neighbour's burst stretches by 30%) make the
 * differences heavy-tailed, which widens Student's interval for the mean. So each pair also
 * gives its ratio on / off, and printed are the median of those ratios with a 95% bootstrap
 * interval (BOOT resamples of the pairs, percentiles 2.5 and 97.5; a fixed seed), once for
 * the block's wall time (the slowest rank's) and once for its CPU time (the process CPU time
 * of every rank, summed: time a rank is descheduled or stolen by the hypervisor is not in it,
 * time it spins waiting for a peer is). -t stops
 * after the pair during which rank 0's clock passed SECONDS (the ranks agree on it through one
 * untimed allreduce after each pair), so that a job lasts about as long on any machine
 * (bench/flight_overhead.sh's launcher measurement).
 *
 * What it does not see: the launcher's once-a-second look at the rings (straggler accounting,
 * call-shape checks) runs in another process whichever block is running, so it falls on on
 * and off blocks alike; bench/flight_overhead.sh measures that process's CPU per second
 * separately. Before timing, one allreduce is checked against the exact sums (#wrong); the
 * timed ones reduce zeros (no overflow, no denormals). Without a recorder (BATON_FLIGHT=off,
 * or not under `baton run`) both halves run the same code: the interval then shows the method's
 * own resolution. Only rank 0 prints.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"
#include "bench_util.h"

struct args {
    size_t bytes;
    int block, pairs, warmup;
    double secs; /* -t: stop after this long (0: run all pairs) */
};

#define BOOT 2000 /* bootstrap resamples of the median ratio */

/* This process's CPU time (all its threads), us. */
static double cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int usage(const char *why)
{
    return bench_usage("flight_bench", why,
                       "[--backend shm|tcp] [-s SIZE] [-B BLOCK] [-p PAIRS] [-w WARMUP] "
                       "[-t SECONDS]");
}

static int parse(int argc, char **argv, struct args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("an option lacks its value");
        i++;
        if (!strcmp(o, "--backend")) {
            if (strcmp(v, "shm") && strcmp(v, "tcp") && strcmp(v, "auto"))
                return usage("--backend is shm, tcp or auto");
            setenv("BATON_TRANSPORT", v, 1);
        } else if (!strcmp(o, "-s")) {
            if (bench_parse_size(v, &a->bytes) || a->bytes < 4)
                return usage("bad -s size (4 bytes or more: 4, 4K, 64M)");
        } else if (!strcmp(o, "-B")) {
            a->block = atoi(v);
        } else if (!strcmp(o, "-p")) {
            a->pairs = atoi(v);
        } else if (!strcmp(o, "-w")) {
            a->warmup = atoi(v);
        } else if (!strcmp(o, "-t")) {
            a->secs = atof(v);
        } else {
            return usage("unknown option");
        }
    }
    if (a->block < 1 || a->pairs < 2 || a->pairs > 10000000 || a->warmup < 0 || a->secs < 0)
        return usage("need -B >= 1, 2 <= -p <= 10000000, -w >= 0, -t >= 0");
    return 0;
}

/* Small integers in, one allreduce, wrong elements over all ranks; -1 on error. */
static long check(bt_comm *c, float *buf, size_t count, int rank, int size)
{
    for (size_t i = 0; i < count; i++)
        buf[i] = (float)((rank + (int)(i % 7)) % 5);
    if (bt_allreduce(c, buf, buf, count, BT_FLOAT32, BT_SUM) != BT_OK)
        return -1;
    int64_t wrong = 0;
    for (size_t i = 0; i < count; i++) {
        float want = 0;
        for (int r = 0; r < size; r++)
            want += (float)((r + (int)(i % 7)) % 5);
        wrong += buf[i] != want;
    }
    if (bt_allreduce(c, &wrong, &wrong, 1, BT_INT64, BT_SUM) != BT_OK)
        return -1;
    return (long)wrong;
}

/* The pairs: t[2p] the block with the recorder, t[2p + 1] without, us per call (this rank);
 * cpu[] the same in this process's CPU time. Returns how many pairs ran, or -1. */
static int run_pairs(bt_comm *c, float *buf, size_t count, const struct args *a, double *t,
                     double *cpu)
{
    for (int i = 0; i < a->warmup; i++)
        if (bt_allreduce(c, buf, buf, count, BT_FLOAT32, BT_SUM) != BT_OK)
            return -1;
    double start = bench_now_us();
    int p;
    for (p = 0; p < a->pairs; p++) {
        int32_t stop = a->secs > 0 && p >= 2 && bench_now_us() - start > a->secs * 1e6;
        if (a->secs > 0 && bt_allreduce(c, &stop, &stop, 1, BT_INT32, BT_MAX) != BT_OK)
            return -1;
        if (stop)
            break;
        for (int h = 0; h < 2; h++) {
            int off = (p + h) % 2; /* pair 0: on, off; pair 1: off, on; ... */
            bt_flight_pause(off);
            double t0 = bench_now_us(), c0 = cpu_us();
            for (int i = 0; i < a->block; i++)
                if (bt_allreduce(c, buf, buf, count, BT_FLOAT32, BT_SUM) != BT_OK)
                    return -1;
            t[2 * p + off] = (bench_now_us() - t0) / a->block;
            cpu[2 * p + off] = (cpu_us() - c0) / a->block;
        }
    }
    bt_flight_pause(0);
    return p;
}

/* Student's t quantile 0.975 for df degrees of freedom (within 0.2% from df = 3 up). */
static double t975(int df)
{
    return 1.95996 + 2.37227 / df + 2.82250 / ((double)df * df) + 2.56 / ((double)df * df * df);
}

/* xorshift64*: the bootstrap's resampling, seeded the same every run. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x >> 12, *x ^= *x << 25, *x ^= *x >> 27;
    return *x * 2685821657736338717ull;
}

/* The median of v[0..n) (sorted in place). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), bench_cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median over the pairs of x[2p] / x[2p + 1] into m[0], its 95% bootstrap interval into
 * m[1], m[2]; -1 when out of memory. */
static int median_ratio(const double *x, int pairs, double m[3])
{
    double *r = malloc(sizeof(double) * (size_t)pairs), *s = malloc(sizeof(double) * (size_t)pairs);
    double *boot = malloc(sizeof(double) * BOOT);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    if (!r || !s || !boot) {
        free(r), free(s), free(boot);
        return -1;
    }
    for (int p = 0; p < pairs; p++)
        r[p] = x[2 * p] / x[2 * p + 1];
    for (int b = 0; b < BOOT; b++) {
        for (int p = 0; p < pairs; p++)
            s[p] = r[next_rand(&seed) % (uint64_t)pairs];
        boot[b] = median(s, pairs);
    }
    m[0] = median(r, pairs);
    qsort(boot, BOOT, sizeof(double), bench_cmp_dbl);
    m[1] = boot[BOOT * 25 / 1000], m[2] = boot[BOOT * 975 / 1000];
    free(r), free(s), free(boot);
    return 0;
}

/* The robust line of x (wall or CPU time per call of the blocks): "[0] median WHAT off on
 * ratio lo hi" (means of the blocks in us). */
static void report_median(const char *what, const double *x, int pairs)
{
    double on = 0, off = 0, m[3];
    for (int p = 0; p < pairs; p++)
        on += x[2 * p], off += x[2 * p + 1];
    if (median_ratio(x, pairs, m) == 0)
        printf(" median %-4s %10.3f %10.3f %7.4f [%.4f, %.4f]\n", what, off / pairs, on / pairs,
               m[0], m[1], m[2]);
}

static void report(const double *t, const struct args *a0, int pairs, int size)
{
    struct args aa = *a0, *a = &aa;
    a->pairs = pairs;
    double on = 0, off = 0, d = 0, ss = 0;
    for (int p = 0; p < a->pairs; p++)
        on += t[2 * p], off += t[2 * p + 1], d += t[2 * p] - t[2 * p + 1];
    on /= a->pairs, off /= a->pairs, d /= a->pairs;
    for (int p = 0; p < a->pairs; p++) {
        double x = t[2 * p] - t[2 * p + 1] - d;
        ss += x * x;
    }
    double ci = t975(a->pairs - 1) * sqrt(ss / (a->pairs - 1)) / sqrt((double)a->pairs);
    printf("# flight_bench: %d ranks, transport %s, allreduce float32 sum in place, %d pairs of "
           "%d-call blocks (recorder on / paused, order swapped each pair)\n",
           size, getenv("BATON_TRANSPORT") ? getenv("BATON_TRANSPORT") : "auto", a->pairs,
           a->block);
    printf("#%11s %10s %10s %22s %22s\n", "size (B)", "off (us)", "on (us)",
           "on-off ns/call (95% CI)", "on/off (95% CI)");
    printf(" %11zu %10.3f %10.3f %8.1f [%.1f, %.1f] %7.4f [%.4f, %.4f]\n", a->bytes, off, on,
           d * 1e3, (d - ci) * 1e3, (d + ci) * 1e3, on / off, 1 + (d - ci) / off,
           1 + (d + ci) / off);
}

int main(int argc, char **argv)
{
    struct args a = {.bytes = 4096, .block = 100, .pairs = 100, .warmup = 100};
    if (parse(argc, argv, &a))
        return 2;
    bt_comm *c = NULL;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "flight_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int rank, size, rc = 0;
    bt_comm_rank(c, &rank);
    bt_comm_size(c, &size);
    size_t count = a.bytes / 4;
    float *buf = malloc(count * 4);
    double *t = malloc(sizeof(double) * 2 * (size_t)a.pairs);
    double *cpu = malloc(sizeof(double) * 2 * (size_t)a.pairs);
    if (!buf || !t || !cpu) {
        fprintf(stderr, "flight_bench: out of memory\n");
        return 1;
    }
    long wrong = check(c, buf, count, rank, size);
    memset(buf, 0, count * 4);
    int pairs = wrong == 0 ? run_pairs(c, buf, count, &a, t, cpu) : -1;
    if (pairs < 2 || bt_allreduce(c, t, t, 2 * (size_t)pairs, BT_FLOAT64, BT_MAX) != BT_OK ||
        bt_allreduce(c, cpu, cpu, 2 * (size_t)pairs, BT_FLOAT64, BT_SUM) != BT_OK) {
        fprintf(stderr, "rank %d: %s%s\n", rank,
                wrong > 0 ? "wrong sums; " : "allreduce failed: ", bt_last_error(c));
        rc = 1;
    } else if (rank == 0) {
        report(t, &a, pairs, size);
        printf("#%11s %10s %10s %22s (median of the pairs' ratios, 95%% bootstrap CI)\n", "",
               "off (us)", "on (us)", "on/off");
        report_median("wall", t, pairs);
        report_median("cpu", cpu, pairs);
    }
    free(buf), free(t), free(cpu);
    int frc = bt_finalize(c);
    return rc || frc ? 1 : 0;
}
