/* bench_util.h: what the benchmarks share so that they time and read their flags exactly
 * alike (allreduce_bench.c and exchange_bench.c, and their Open MPI twins
 * mpi_allreduce_bench.c and mpi_exchange_bench.c, which mpicc builds alone): sizes with K/M/G
 * suffixes, the comparison that sorts samples for the median, the process's CPU time and
 * context switches (-c of the allreduce benchmarks: per op, summed over the ranks), and for the
 * exchange benchmarks their flags, block sizes, bus bandwidth factors, test pattern and table.
 */
#ifndef BT_BENCH_UTIL_H
#define BT_BENCH_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Microseconds on the monotonic clock. */
static inline double bench_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* "who: why" and the usage line on stderr; 2, the exit status of a bad command line. */
static inline int bench_usage(const char *who, const char *why, const char *synopsis)
{
    fprintf(stderr, "%s: %s\nusage: %s %s\n", who, why, who, synopsis);
    return 2;
}

/* "64K", "1M", "2G" or a plain number of bytes (powers of 1024); -1 when not a size > 0. */
static inline int bench_parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end), mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024.0 * 1024 * 1024, end++;
    if (end == s || *end || v <= 0)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

/* qsort comparison of doubles, ascending. */
static inline int bench_cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* ---- the exchange benchmarks (exchange_bench.c, mpi_exchange_bench.c) ----
 * As nccl-tests counts them: alltoall and allgatherv "size" is the bytes each rank receives
 * in all (size / ranks from each), busbw = algbw * (n-1)/n; sendrecv is a ping-pong between
 * ranks 0 and 1 (other ranks idle), time = half the round trip, busbw = algbw. */
enum bench_op { BENCH_ALLTOALL, BENCH_SENDRECV, BENCH_ALLGATHERV, BENCH_NOPS };
static const char *const bench_op_names[BENCH_NOPS] = {"alltoall", "sendrecv", "allgatherv"};

struct bench_args {
    size_t minb, maxb;
    double factor;
    int iters, warmup, op;
};

#define BENCH_ARGS_DEFAULT                                                                         \
    {                                                                                              \
        .minb = 4096, .maxb = 64u << 20, .factor = 2, .iters = 20, .warmup = 5                     \
    }

/* One flag of the common set: 1 when o (with value v) was taken, 0 when o is not one of them,
 * -1 when its value is bad. */
static inline int bench_parse_common(const char *o, const char *v, struct bench_args *a)
{
    if (!strcmp(o, "-b"))
        return bench_parse_size(v, &a->minb) ? -1 : 1;
    if (!strcmp(o, "-e"))
        return bench_parse_size(v, &a->maxb) ? -1 : 1;
    if (!strcmp(o, "-f"))
        return (a->factor = atof(v)) > 1 ? 1 : -1;
    if (!strcmp(o, "-n"))
        return (a->iters = atoi(v)) >= 1 ? 1 : -1;
    if (!strcmp(o, "-w"))
        return (a->warmup = atoi(v)) >= 0 ? 1 : -1;
    if (!strcmp(o, "--op")) {
        for (int i = 0; i < BENCH_NOPS; i++)
            if (!strcmp(v, bench_op_names[i]))
                return a->op = i, 1;
        return -1;
    }
    return 0;
}

/* Elements (float32) per block: from each rank (alltoall, allgatherv), or the message. */
static inline size_t bench_block(int op, size_t bytes, int n)
{
    return op == BENCH_SENDRECV ? bytes / 4 : bytes / 4 / (size_t)n;
}

static inline double bench_busbw(int op, double algbw, int n)
{
    return op == BENCH_SENDRECV ? algbw : algbw * (n - 1) / n;
}

/* Element i of the block rank src sends rank dst: small integers, exact in float. */
static inline float bench_val(int src, int dst, size_t i)
{
    return (float)((src * 7 + dst * 3 + (int)(i % 11)) % 13);
}

static inline void bench_header(const char *who, const char *what, int op, int n)
{
    printf("# %s: %s, %d ranks, %s float32\n"
           "#%12s %12s %8s %6s %10s %8s %8s %7s\n"
           "#%12s %12s %8s %6s %10s %8s %8s %7s\n",
           who, bench_op_names[op], n, what, "size", "count", "type", "redop", "time", "algbw",
           "busbw", "#wrong", "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "");
}

/* One row; bytes is what a rank receives in all (sendrecv: the message). */
static inline void bench_row(int op, size_t bytes, double us, long wrong, int n, double *bw_sum)
{
    double algbw = (double)bytes / us / 1e3, busbw = bench_busbw(op, algbw, n);
    *bw_sum += busbw;
    printf(" %12zu %12zu %8s %6s %10.2f %8.2f %8.2f %7ld\n", bytes, bytes / 4, "float", "none", us,
           algbw, busbw, wrong);
}

/* This process's CPU time and context switches so far: {user us, system us, voluntary,
 * involuntary}. -c prints the difference over the timed iterations, summed over the ranks,
 * per op: figures that, unlike wall time, barely depend on how busy the machine is. */
static inline void bench_rusage(double out[4])
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    out[0] = (double)r.ru_utime.tv_sec * 1e6 + (double)r.ru_utime.tv_usec;
    out[1] = (double)r.ru_stime.tv_sec * 1e6 + (double)r.ru_stime.tv_usec;
    out[2] = (double)r.ru_nvcsw;
    out[3] = (double)r.ru_nivcsw;
}

/* The -c line: cpu[4] is the ranks' sum of bench_rusage differences over iters ops. */
static inline void bench_cpu_print(size_t bytes, const double cpu[4], int iters)
{
    double n = iters;
    printf("# cpu %12zu B: user %.1f us, sys %.1f us, total %.1f us per op (all ranks); context "
           "switches %.2f voluntary, %.2f involuntary per op\n",
           bytes, cpu[0] / n, cpu[1] / n, (cpu[0] + cpu[1]) / n, cpu[2] / n, cpu[3] / n);
}

#endif
