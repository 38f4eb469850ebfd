/* mpi_exchange_bench.c: Open MPI's MPI_Alltoall, MPI_Send/MPI_Recv ping-pong and
 * MPI_Allgatherv timed exactly like exchange_bench.c (same sizes, pattern, table), the
 * baseline of `bench/compare.sh --op OP`.
 *
 *   mpirun -np 2 build/bench/mpi_exchange_bench --op alltoall|sendrecv|allgatherv [-b 4K]
 *                                               [-e 64M] [-f 2] [-n 20] [-w 5]
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static int rank_, size_;

/* One call of the op on blocks of blk elements; cnt/dsp: allgatherv's layout (ints). */
static void one(int op, float *s, float *r, size_t blk, int *cnt, int *dsp)
{
    if (op == BENCH_ALLTOALL) {
        MPI_Alltoall(s, (int)blk, MPI_FLOAT, r, (int)blk, MPI_FLOAT, MPI_COMM_WORLD);
    } else if (op == BENCH_ALLGATHERV) {
        MPI_Allgatherv(s, cnt[rank_], MPI_FLOAT, r, cnt, dsp, MPI_FLOAT, MPI_COMM_WORLD);
    } else if (rank_ == 0) {
        MPI_Send(s, (int)blk, MPI_FLOAT, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(r, (int)blk, MPI_FLOAT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank_ == 1) {
        MPI_Recv(r, (int)blk, MPI_FLOAT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(s, (int)blk, MPI_FLOAT, 0, 0, MPI_COMM_WORLD);
    }
}

static long check(int op, float *s, float *r, size_t blk, size_t rem, int *cnt, int *dsp)
{
    size_t ns = op == BENCH_ALLTOALL ? blk * (size_t)size_ : (size_t)cnt[rank_];
    int peer = rank_ == 0 ? 1 : 0;
    for (size_t i = 0; i < ns; i++)
        s[i] = op == BENCH_ALLTOALL
                   ? bench_val(rank_, (int)(i / (blk ? blk : 1)), i % (blk ? blk : 1))
               : op == BENCH_SENDRECV ? bench_val(rank_, peer, i)
                                      : bench_val(rank_, 0, i);
    memset(r, 0xff, (op == BENCH_SENDRECV ? blk : blk * (size_t)size_ + rem) * 4);
    one(op, s, r, blk, cnt, dsp);
    long wrong = 0;
    if (op == BENCH_SENDRECV) {
        for (size_t i = 0; rank_ < 2 && i < blk; i++)
            wrong += r[i] != bench_val(peer, rank_, i);
    } else {
        for (int p = 0; p < size_; p++)
            for (size_t i = 0; i < (op == BENCH_ALLTOALL ? blk : (size_t)cnt[p]); i++)
                wrong += r[(op == BENCH_ALLTOALL ? (size_t)p * blk : (size_t)dsp[p]) + i] !=
                         bench_val(p, op == BENCH_ALLTOALL ? rank_ : 0, i);
    }
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return wrong;
}

int main(int argc, char **argv)
{
    struct bench_args a = BENCH_ARGS_DEFAULT;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    for (int i = 1; i + 1 < argc; i += 2)
        if (bench_parse_common(argv[i], argv[i + 1], &a) <= 0) {
            if (rank_ == 0)
                fprintf(stderr, "mpi_exchange_bench: bad option %s %s\n", argv[i], argv[i + 1]);
            MPI_Finalize();
            return 2;
        }
    if (a.op == BENCH_SENDRECV && size_ < 2) {
        if (rank_ == 0)
            fprintf(stderr, "mpi_exchange_bench: --op sendrecv needs 2 ranks or more\n");
        MPI_Finalize();
        return 2;
    }
    size_t maxe = a.maxb / 4 + (size_t)size_;
    float *s = calloc(maxe, 4), *r = calloc(maxe, 4);
    int *cnt = calloc((size_t)size_, sizeof(int)), *dsp = calloc((size_t)size_, sizeof(int));
    double *t = malloc(sizeof(double) * (size_t)a.iters), bw_sum = 0;
    if (rank_ == 0)
        bench_header("mpi_exchange_bench", "Open MPI", a.op, size_);
    int nsizes = 0, rc = 0;
    for (double sz = (double)a.minb; sz <= (double)a.maxb * 1.0001; sz *= a.factor) {
        size_t blk = bench_block(a.op, (size_t)sz, size_);
        size_t rem = a.op == BENCH_ALLGATHERV ? (size_t)sz / 4 - blk * (size_t)size_ : 0;
        size_t bytes = (a.op == BENCH_SENDRECV ? blk : blk * (size_t)size_ + rem) * 4;
        for (int p = 0; p < size_; p++)
            cnt[p] = (int)(blk + (p == size_ - 1 ? rem : 0)), dsp[p] = (int)((size_t)p * blk);
        for (int i = 0; i < a.warmup; i++)
            one(a.op, s, r, blk, cnt, dsp);
        for (int i = 0; i < a.iters; i++) {
            double t0 = MPI_Wtime();
            one(a.op, s, r, blk, cnt, dsp);
            t[i] = (MPI_Wtime() - t0) * 1e6 / (a.op == BENCH_SENDRECV ? 2 : 1);
        }
        qsort(t, (size_t)a.iters, sizeof(double), bench_cmp_dbl);
        double us = t[a.iters / 2];
        MPI_Allreduce(MPI_IN_PLACE, &us, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        long wrong = check(a.op, s, r, blk, rem, cnt, dsp);
        rc |= wrong != 0;
        nsizes++;
        if (rank_ == 0)
            bench_row(a.op, bytes, us, wrong, size_, &bw_sum);
    }
    if (rank_ == 0 && nsizes)
        printf("# Avg bus bandwidth    : %.3f\n", bw_sum / nsizes);
    free(s), free(r), free(cnt), free(dsp), free(t);
    MPI_Finalize();
    return rc;
}
