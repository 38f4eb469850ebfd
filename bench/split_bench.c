/* split_bench.c: the time bt_comm_split and bt_comm_dup take (bench/split_bench.sh runs it at
 * 2-8 ranks over shm, TCP and Open MPI).
 *
 *   baton run -n N -- build/bench/split_bench [--backend shm|tcp|auto] [-n ITERS]
 *   mpirun -np N build/bench/split_bench [-n ITERS]          (the Open MPI backend)
 *
 * Each iteration: a barrier, then split into halves (timed until the child is made), one
 * allreduce on the child (so a child that is not usable is caught: #wrong), destroy; the
 * same with bt_comm_dup. Prints on rank 0 one line per call: the median over iterations of
 * the slowest rank's time, with min-max, in microseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"
#include "bench_util.h"

/* One timed split (dup when dup is set); *wrong counts a bad allreduce on the child. */
static int once(bt_comm *w, int rank, int size, int dup, double *us, long *wrong)
{
    bt_comm *child = NULL;
    int rc = bt_barrier(w);
    double t0 = bench_now_us();
    if (rc == BT_OK)
        rc = dup ? bt_comm_dup(w, &child) : bt_comm_split(w, rank < size / 2, rank, &child);
    *us = bench_now_us() - t0;
    int32_t v = 1, want = dup ? size : rank < size / 2 ? size / 2 : size - size / 2;
    if (rc == BT_OK)
        rc = bt_allreduce(child, &v, &v, 1, BT_INT32, BT_SUM);
    *wrong += rc == BT_OK && v != want;
    int d = bt_comm_destroy(child);
    if (rc == BT_OK && d != BT_OK)
        rc = d;
    if (rc == BT_OK)
        rc = bt_allreduce(w, us, us, 1, BT_FLOAT64, BT_MAX);
    return rc;
}

int main(int argc, char **argv)
{
    int iters = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n") && atoi(argv[i + 1]) > 0) {
            iters = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--backend")) {
            setenv("BATON_TRANSPORT", argv[i + 1], 1);
        } else {
            fprintf(stderr, "usage: split_bench [--backend shm|tcp|auto] [-n ITERS]\n");
            return 2;
        }
    }
    bt_comm *w = NULL;
    if (bt_init(&w) != BT_OK) {
        fprintf(stderr, "split_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int rank, size, rc = BT_OK;
    bt_comm_rank(w, &rank);
    bt_comm_size(w, &size);
    double *t = malloc(sizeof(double) * (size_t)iters);
    const char *what = getenv("OMPI_COMM_WORLD_SIZE") && !getenv("BATON_RANK") ? "mpi"
                       : getenv("BATON_TRANSPORT") ? getenv("BATON_TRANSPORT")
                                                   : "auto";
    if (rank == 0)
        printf("# split_bench: %d ranks, %s, %d iterations\n#%5s %8s %10s %10s %10s %7s\n", size,
               what, iters, "ranks", "call", "median_us", "min_us", "max_us", "#wrong");
    for (int dup = 0; dup < 2 && rc == BT_OK; dup++) {
        long wrong = 0;
        for (int i = 0; i < iters && rc == BT_OK; i++)
            rc = once(w, rank, size, dup, &t[i], &wrong);
        if (rc != BT_OK)
            break;
        int64_t wr = wrong;
        rc = bt_allreduce(w, &wr, &wr, 1, BT_INT64, BT_SUM);
        qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
        if (rank == 0)
            printf(" %5d %8s %10.1f %10.1f %10.1f %7ld\n", size, dup ? "dup" : "split",
                   t[iters / 2], t[0], t[iters - 1], (long)wr);
    }
    if (rc != BT_OK)
        fprintf(stderr, "rank %d: split_bench: %s: %s\n", rank, bt_strerror(rc), bt_last_error(w));
    free(t);
    int frc = bt_finalize(w);
    return rc || frc ? 1 : 0;
}
