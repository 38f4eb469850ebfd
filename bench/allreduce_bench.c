/* allreduce_bench.c: baton's allreduce timed like nccl-tests' all_reduce_perf.
 *
 *   baton run -n 2 -- build/bench/allreduce_bench [--backend shm|tcp] [-b 4K] [-e 256M]
 *                                                 [-f 2] [-n ITERS] [-w WARMUP] [-o]
 *
 * float32 sum, in place (-o: out of place). Every size runs WARMUP untimed then ITERS timed
 * allreduces; each op is timed alone and the table shows the median (the largest of the
 * ranks' medians). algbw = bytes / time, busbw = algbw * 2 (n-1) / n. After timing, each size
 * is checked once against the exact expected sums (#wrong counts bad elements over all ranks).
 * Only rank 0 prints. --backend sets BATON_TRANSPORT for this process before bt_init.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"

struct args {
    size_t minb, maxb;
    double factor;
    int iters, warmup, oop;
};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1024, end++;
    else if (*end == 'M' || *end == 'm') mult = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mult = 1024.0 * 1024 * 1024, end++;
    if (end == s || *end || v <= 0)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

static int usage(const char *why)
{
    fprintf(stderr, "allreduce_bench: %s\nusage: allreduce_bench [--backend shm|tcp] "
                    "[-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS] [-w WARMUP] [-o]\n",
            why);
    return 2;
}

static int parse(int argc, char **argv, struct args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-o")) {
            a->oop = 1;
            continue;
        }
        if (!v)
            return usage("an option lacks its value");
        i++;
        if (!strcmp(o, "--backend")) {
            if (strcmp(v, "shm") && strcmp(v, "tcp") && strcmp(v, "auto"))
                return usage("--backend is shm, tcp or auto");
            setenv("BATON_TRANSPORT", v, 1);
        } else if (!strcmp(o, "-b") || !strcmp(o, "--minbytes")) {
            if (parse_size(v, &a->minb)) return usage("bad -b size (e.g. 4K, 64M)");
        } else if (!strcmp(o, "-e") || !strcmp(o, "--maxbytes")) {
            if (parse_size(v, &a->maxb)) return usage("bad -e size (e.g. 4K, 64M)");
        } else if (!strcmp(o, "-f") || !strcmp(o, "--stepfactor")) {
            a->factor = atof(v);
        } else if (!strcmp(o, "-n") || !strcmp(o, "--iters")) {
            a->iters = atoi(v);
        } else if (!strcmp(o, "-w") || !strcmp(o, "--warmup_iters")) {
            a->warmup = atoi(v);
        } else {
            return usage("unknown option");
        }
    }
    if (a->factor <= 1 || a->iters < 1 || a->warmup < 0 || a->minb < 4 || a->maxb < a->minb)
        return usage("need -f > 1, -n >= 1, -w >= 0, 4 <= -b <= -e");
    return 0;
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Median microseconds per op (max over ranks), or < 0 on error. */
static double time_size(bt_comm *c, float *buf, float *out, size_t count, const struct args *a,
                        double *t)
{
    for (int i = 0; i < a->warmup; i++)
        if (bt_allreduce(c, buf, out, count, BT_FLOAT32, BT_SUM) != BT_OK)
            return -1;
    for (int i = 0; i < a->iters; i++) {
        double t0 = now_us();
        if (bt_allreduce(c, buf, out, count, BT_FLOAT32, BT_SUM) != BT_OK)
            return -1;
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)a->iters, sizeof(double), cmp_dbl);
    double med = t[a->iters / 2];
    if (bt_allreduce(c, &med, &med, 1, BT_FLOAT64, BT_MAX) != BT_OK)
        return -1;
    return med;
}

/* Fills with small integers (exact sums), allreduces once, counts wrong elements. */
static long check_size(bt_comm *c, float *buf, float *out, size_t count, int rank, int size)
{
    for (size_t i = 0; i < count; i++)
        buf[i] = (float)((rank + (int)(i % 7)) % 5);
    if (bt_allreduce(c, buf, out, count, BT_FLOAT32, BT_SUM) != BT_OK)
        return -1;
    long wrong = 0;
    for (size_t i = 0; i < count; i++) {
        float want = 0;
        for (int r = 0; r < size; r++)
            want += (float)((r + (int)(i % 7)) % 5);
        wrong += out[i] != want;
    }
    int64_t w = wrong;
    if (bt_allreduce(c, &w, &w, 1, BT_INT64, BT_SUM) != BT_OK)
        return -1;
    return (long)w;
}

int main(int argc, char **argv)
{
    struct args a = {.minb = 4096, .maxb = 256u << 20, .factor = 2, .iters = 20, .warmup = 5};
    if (parse(argc, argv, &a))
        return 2;
    bt_comm *c = NULL;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "allreduce_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int rank, size;
    bt_comm_rank(c, &rank);
    bt_comm_size(c, &size);
    size_t maxc = a.maxb / 4;
    float *buf = malloc(maxc * 4), *out = a.oop ? malloc(maxc * 4) : NULL;
    double *t = malloc(sizeof(double) * (size_t)a.iters);
    if (!buf || (a.oop && !out) || !t) {
        fprintf(stderr, "allreduce_bench: out of memory\n");
        return 1;
    }
    memset(buf, 0, maxc * 4); /* fault every page in before timing */
    if (out)
        memset(out, 0, maxc * 4);
    if (rank == 0)
        printf("# baton allreduce_bench: %d ranks, transport %s, float32 sum, %s\n"
               "#%12s %12s %8s %6s %10s %8s %8s %7s\n"
               "#%12s %12s %8s %6s %10s %8s %8s %7s\n",
               size, getenv("BATON_TRANSPORT") ? getenv("BATON_TRANSPORT") : "auto",
               a.oop ? "out of place" : "in place", "size", "count", "type", "redop", "time",
               "algbw", "busbw", "#wrong", "(B)", "(elements)", "", "", "(us)", "(GB/s)",
               "(GB/s)", "");
    double bw_sum = 0;
    int nsizes = 0, rc = 0;
    for (double sz = (double)a.minb; sz <= (double)a.maxb * 1.0001; sz *= a.factor) {
        size_t count = (size_t)sz / 4, bytes = count * 4;
        float *o = a.oop ? out : buf;
        double us = time_size(c, buf, o, count, &a, t);
        long wrong = us < 0 ? -1 : check_size(c, buf, o, count, rank, size);
        if (us < 0 || wrong < 0) {
            fprintf(stderr, "rank %d: allreduce failed: %s\n", rank, bt_last_error(c));
            rc = 1;
            break;
        }
        double algbw = (double)bytes / us / 1e3, busbw = algbw * 2.0 * (size - 1) / size;
        bw_sum += busbw;
        nsizes++;
        rc |= wrong != 0;
        if (rank == 0)
            printf(" %12zu %12zu %8s %6s %10.2f %8.2f %8.2f %7ld\n", bytes, count, "float",
                   "sum", us, algbw, busbw, wrong);
    }
    if (rank == 0 && nsizes)
        printf("# Avg bus bandwidth    : %.3f\n", bw_sum / nsizes);
    free(buf), free(out), free(t);
    int frc = bt_finalize(c);
    return rc || frc ? 1 : 0;
}
