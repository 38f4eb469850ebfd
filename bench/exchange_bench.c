/* exchange_bench.c: baton's alltoall, send/recv ping-pong and allgatherv timed like nccl-tests
 * (alltoall_perf, sendrecv_perf, all_gather_perf); bench/mpi_exchange_bench.c is its Open MPI
 * twin, and `bench/compare.sh --op OP` runs the two side by side.
 *
 *   baton run -n 2 -- build/bench/exchange_bench --op alltoall|sendrecv|allgatherv
 *                     [--backend shm|tcp|auto] [-b 4K] [-e 64M] [-f 2] [-n ITERS] [-w WARMUP]
 *
 * float32, host buffers. Every size runs WARMUP untimed then ITERS timed calls, each timed
 * alone; the table shows the median (the largest of the ranks' medians). Sizes and bus
 * bandwidth as bench_util.h says. After timing, each size is checked once against the
 * pattern bench_val(src, dst, i) (#wrong counts bad elements over all ranks). allgatherv
 * gives the last rank the remainder of the division, so the counts differ between ranks.
 * Only rank 0 prints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"
#include "bench_util.h"

static int rank_, size_;

static int usage(const char *why)
{
    return bench_usage("exchange_bench", why,
                       "--op alltoall|sendrecv|allgatherv [--backend shm|tcp|auto] [-b "
                       "MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS] [-w WARMUP]");
}

static int parse(int argc, char **argv, struct bench_args *a)
{
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage("an option lacks its value");
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--backend")) {
            if (strcmp(v, "shm") && strcmp(v, "tcp") && strcmp(v, "auto"))
                return usage("--backend is shm, tcp or auto");
            setenv("BATON_TRANSPORT", v, 1);
            continue;
        }
        int k = bench_parse_common(o, v, a);
        if (k <= 0)
            return usage(k < 0 ? "a bad value" : "unknown option");
    }
    if (a->minb < 4 || a->maxb < a->minb)
        return usage("need 4 <= -b <= -e");
    return 0;
}

/* The allgatherv layout for blocks of blk elements: the last rank adds the remainder rem. */
static void v_layout(size_t blk, size_t rem, size_t *cnt, size_t *dsp)
{
    for (int p = 0; p < size_; p++) {
        cnt[p] = blk + (p == size_ - 1 ? rem : 0);
        dsp[p] = (size_t)p * blk;
    }
}

/* One call of the op on blocks of blk elements (rem: allgatherv's remainder). */
static int one(bt_comm *c, int op, float *s, float *r, size_t blk, size_t rem, size_t *cnt,
               size_t *dsp)
{
    if (op == BENCH_ALLTOALL)
        return bt_alltoall(c, s, r, blk, BT_FLOAT32);
    if (op == BENCH_ALLGATHERV)
        return bt_allgatherv(c, s, cnt[rank_], r, cnt, dsp, BT_FLOAT32);
    (void)rem;
    if (rank_ == 0) {
        int rc = bt_send(c, s, blk, BT_FLOAT32, 1, 0);
        return rc ? rc : bt_recv(c, r, blk, BT_FLOAT32, 1, 0);
    }
    if (rank_ == 1) {
        int rc = bt_recv(c, r, blk, BT_FLOAT32, 0, 0);
        return rc ? rc : bt_send(c, s, blk, BT_FLOAT32, 0, 0);
    }
    return BT_OK;
}

/* Fills s for the op, runs it once, counts wrong elements of r (summed over ranks). */
static long check(bt_comm *c, int op, float *s, float *r, size_t blk, size_t rem, size_t *cnt,
                  size_t *dsp)
{
    size_t ns = op == BENCH_ALLTOALL ? blk * (size_t)size_ : cnt[rank_];
    int peer = rank_ == 0 ? 1 : 0;
    for (size_t i = 0; i < ns; i++)
        s[i] = op == BENCH_ALLTOALL
                   ? bench_val(rank_, (int)(i / (blk ? blk : 1)), i % (blk ? blk : 1))
               : op == BENCH_SENDRECV ? bench_val(rank_, peer, i)
                                      : bench_val(rank_, 0, i);
    memset(r, 0xff, (op == BENCH_SENDRECV ? blk : blk * (size_t)size_ + rem) * 4);
    if (one(c, op, s, r, blk, rem, cnt, dsp) != BT_OK)
        return -1;
    long wrong = 0;
    if (op == BENCH_SENDRECV) {
        for (size_t i = 0; rank_ < 2 && size_ > 1 && i < blk; i++)
            wrong += r[i] != bench_val(peer, rank_, i);
    } else {
        for (int p = 0; p < size_; p++)
            for (size_t i = 0; i < (op == BENCH_ALLTOALL ? blk : cnt[p]); i++)
                wrong += r[(op == BENCH_ALLTOALL ? (size_t)p * blk : dsp[p]) + i] !=
                         bench_val(p, op == BENCH_ALLTOALL ? rank_ : 0, i);
    }
    int64_t w = wrong;
    return bt_allreduce(c, &w, &w, 1, BT_INT64, BT_SUM) == BT_OK ? (long)w : -1;
}

/* Median microseconds per op (max over ranks; sendrecv: half the round trip), or < 0. */
static double time_size(bt_comm *c, const struct bench_args *a, float *s, float *r, size_t blk,
                        size_t rem, size_t *cnt, size_t *dsp, double *t)
{
    for (int i = 0; i < a->warmup; i++)
        if (one(c, a->op, s, r, blk, rem, cnt, dsp) != BT_OK)
            return -1;
    for (int i = 0; i < a->iters; i++) {
        double t0 = bench_now_us();
        if (one(c, a->op, s, r, blk, rem, cnt, dsp) != BT_OK)
            return -1;
        t[i] = (bench_now_us() - t0) / (a->op == BENCH_SENDRECV ? 2 : 1);
    }
    qsort(t, (size_t)a->iters, sizeof(double), bench_cmp_dbl);
    double med = t[a->iters / 2];
    return bt_allreduce(c, &med, &med, 1, BT_FLOAT64, BT_MAX) == BT_OK ? med : -1;
}

int main(int argc, char **argv)
{
    struct bench_args a = BENCH_ARGS_DEFAULT;
    if (parse(argc, argv, &a))
        return 2;
    bt_comm *c = NULL;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "exchange_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    bt_comm_rank(c, &rank_);
    bt_comm_size(c, &size_);
    if (a.op == BENCH_SENDRECV && size_ < 2) {
        fprintf(stderr, "exchange_bench: --op sendrecv needs 2 ranks or more\n");
        bt_finalize(c);
        return 2;
    }
    size_t maxe = a.maxb / 4 + (size_t)size_;
    float *s = calloc(maxe, 4), *r = calloc(maxe, 4);
    size_t *cnt = calloc((size_t)size_, sizeof(size_t)),
           *dsp = calloc((size_t)size_, sizeof(size_t));
    double *t = malloc(sizeof(double) * (size_t)a.iters), bw_sum = 0;
    if (!s || !r || !cnt || !dsp || !t) {
        fprintf(stderr, "exchange_bench: out of memory\n");
        return 1;
    }
    if (rank_ == 0)
        bench_header("baton exchange_bench",
                     getenv("BATON_TRANSPORT") ? getenv("BATON_TRANSPORT") : "auto", a.op, size_);
    int nsizes = 0, rc = 0;
    for (double sz = (double)a.minb; sz <= (double)a.maxb * 1.0001; sz *= a.factor) {
        size_t blk = bench_block(a.op, (size_t)sz, size_);
        size_t rem = a.op == BENCH_ALLGATHERV ? (size_t)sz / 4 - blk * (size_t)size_ : 0;
        size_t bytes = (a.op == BENCH_SENDRECV ? blk : blk * (size_t)size_ + rem) * 4;
        v_layout(blk, rem, cnt, dsp);
        double us = time_size(c, &a, s, r, blk, rem, cnt, dsp, t);
        long wrong = us < 0 ? -1 : check(c, a.op, s, r, blk, rem, cnt, dsp);
        if (us < 0 || wrong < 0) {
            fprintf(stderr, "rank %d: %s failed: %s\n", rank_, bench_op_names[a.op],
                    bt_last_error(c));
            rc = 1;
            break;
        }
        rc |= wrong != 0;
        nsizes++;
        if (rank_ == 0)
            bench_row(a.op, bytes, us, wrong, size_, &bw_sum);
    }
    if (rank_ == 0 && nsizes)
        printf("# Avg bus bandwidth    : %.3f\n", bw_sum / nsizes);
    free(s), free(r), free(cnt), free(dsp), free(t);
    int frc = bt_finalize(c);
    return rc || frc ? 1 : 0;
}
