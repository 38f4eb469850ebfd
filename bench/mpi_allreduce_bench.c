/* mpi_allreduce_bench.c: Open MPI's MPI_Allreduce timed exactly like allreduce_bench.c, the
 * baseline of bench/compare.sh.
 *
 *   mpirun -np 2 --mca btl self,vader build/bench/mpi_allreduce_bench [-b 4K] [-e 256M]
 *                                                                    [-f 2] [-n 20] [-w 5]
 *                                                                    [-c] [-i]
 *
 * float32 sum, MPI_IN_PLACE, median per op (max over ranks), then one checked run per size.
 * -c: a "# cpu" line per size, as allreduce_bench's (CPU time and context switches per op,
 * summed over the ranks; Open MPI polls while it waits, so its CPU time is about the wall
 * time of every rank).
 * -i: each call is MPI_Iallreduce polled with MPI_Test (on a duplicate of MPI_COMM_WORLD, with
 * MPI_THREAD_MULTIPLE asked for), as libbaton's Open MPI backend makes them: what Open MPI's
 * nonblocking collectives cost without baton.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

/* One in-place float32 sum: blocking, or (nonblocking) started and polled to completion. */
static void allreduce(float *buf, int count, MPI_Comm comm, int nonblocking)
{
    if (!nonblocking) {
        MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, comm);
        return;
    }
    MPI_Request rq;
    int done = 0;
    MPI_Iallreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, comm, &rq);
    while (!done)
        MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
}

int main(int argc, char **argv)
{
    size_t minb = 4096, maxb = 256u << 20;
    double factor = 2;
    int iters = 20, warmup = 5, rank, size, cpu_line = 0, nonblocking = 0, level;
    for (int i = 1; i < argc; i++)
        nonblocking |= !strcmp(argv[i], "-i");
    MPI_Init_thread(&argc, &argv, nonblocking ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE, &level);
    MPI_Comm comm = MPI_COMM_WORLD;
    if (nonblocking)
        MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "-i")) {
            cpu_line |= !strcmp(argv[i], "-c");
            i--;
            continue;
        }
        if (i + 1 >= argc)
            break;
        if (!strcmp(argv[i], "-b"))
            bench_parse_size(argv[i + 1], &minb);
        else if (!strcmp(argv[i], "-e"))
            bench_parse_size(argv[i + 1], &maxb);
        else if (!strcmp(argv[i], "-f"))
            factor = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "-n"))
            iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-w"))
            warmup = atoi(argv[i + 1]);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t maxc = maxb / 4;
    float *buf = malloc(maxc * 4);
    double *t = malloc(sizeof(double) * (size_t)iters);
    memset(buf, 0, maxc * 4);
    if (rank == 0)
        printf("# mpi_allreduce_bench: %d ranks, float32 sum, in place%s\n"
               "#%12s %12s %8s %6s %10s %8s %8s %7s\n",
               size, nonblocking ? ", MPI_Iallreduce + MPI_Test" : "", "size", "count", "type",
               "redop", "time", "algbw", "busbw", "#wrong");
    double bw_sum = 0;
    int nsizes = 0;
    for (double sz = (double)minb; sz <= (double)maxb * 1.0001; sz *= factor) {
        int count = (int)((size_t)sz / 4);
        for (int i = 0; i < warmup; i++)
            allreduce(buf, count, comm, nonblocking);
        double cpu[4], r0[4];
        bench_rusage(r0);
        for (int i = 0; i < iters; i++) {
            double t0 = MPI_Wtime();
            allreduce(buf, count, comm, nonblocking);
            t[i] = (MPI_Wtime() - t0) * 1e6;
        }
        bench_rusage(cpu);
        for (int k = 0; k < 4; k++)
            cpu[k] -= r0[k];
        MPI_Allreduce(MPI_IN_PLACE, cpu, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
        double us = t[iters / 2];
        MPI_Allreduce(MPI_IN_PLACE, &us, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        for (int i = 0; i < count; i++)
            buf[i] = (float)((rank + i % 7) % 5);
        allreduce(buf, count, comm, nonblocking);
        long wrong = 0;
        for (int i = 0; i < count; i++) {
            float want = 0;
            for (int r = 0; r < size; r++)
                want += (float)((r + i % 7) % 5);
            wrong += buf[i] != want;
        }
        MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        double algbw = (double)count * 4 / us / 1e3, busbw = algbw * 2.0 * (size - 1) / size;
        bw_sum += busbw;
        nsizes++;
        if (rank == 0)
            printf(" %12zu %12d %8s %6s %10.2f %8.2f %8.2f %7ld\n", (size_t)count * 4, count,
                   "float", "sum", us, algbw, busbw, wrong);
        if (rank == 0 && cpu_line)
            bench_cpu_print((size_t)count * 4, cpu, iters);
    }
    if (rank == 0 && nsizes)
        printf("# Avg bus bandwidth    : %.3f\n", bw_sum / nsizes);
    free(buf);
    free(t);
    if (nonblocking)
        MPI_Comm_free(&comm);
    MPI_Finalize();
    return 0;
}
