/* bench_util.h: what the allreduce benchmarks share so that they time and read their flags
 * exactly alike (allreduce_bench.c, and mpi_allreduce_bench.c, which mpicc builds alone):
 * sizes with K/M/G suffixes, and the comparison that sorts samples for the median.
 */
#ifndef BT_BENCH_UTIL_H
#define BT_BENCH_UTIL_H

#include <stddef.h>
#include <stdlib.h>

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

#endif
