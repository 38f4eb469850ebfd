/* bench_util.h: what the allreduce benchmarks share so that they time and read their flags
 * exactly alike (allreduce_bench.c, and mpi_allreduce_bench.c, which mpicc builds alone):
 * sizes with K/M/G suffixes, the comparison that sorts samples for the median, and the
 * process's CPU time and context switches (-c: per op, summed over the ranks).
 */
#ifndef BT_BENCH_UTIL_H
#define BT_BENCH_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

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
