/* allreduce_bench.c: baton's allreduce timed like nccl-tests' all_reduce_perf.
 *
 *   baton run -n 2 -- build/bench/allreduce_bench [--backend shm|tcp|nccl|staged] [-b 4K]
 *                                                 [-e 256M] [-f 2] [-n ITERS] [-w WARMUP] [-o]
 *                                                 [-c] [-s] [-T SECS]
 *                                                 [--op allreduce|broadcast|reduce]
 *
 * float32 sum, in place (-o: out of place). -c adds a "# cpu" line per size: user and system
 * CPU time and context switches per timed op, summed over the ranks (bench_util.h). Every size runs
 * WARMUP untimed then ITERS timed allreduces; each op is timed alone and the table shows the median
 * (the largest of the ranks' medians). algbw = bytes / time, busbw = algbw * 2 (n-1) / n. After
 * timing, each size is checked once against the exact expected sums (#wrong counts bad elements
 * over all ranks). Only rank 0 prints. --backend shm|tcp sets BATON_TRANSPORT for this process
 * before bt_init.
 * --backend nccl|staged put the buffers on the GPU (cudaMalloc; local rank % devices, or the
 * device BATON_GPU made current): nccl sets BATON_BACKEND=nccl (NCCL, one GPU per rank; the
 * bench's own small reductions then go through the GPU too), staged sets BATON_BACKEND=baton
 * (device buffers copied through pinned host memory by segment, reduced on the host path).
 * The pattern is written on the host and copied in; results are copied back for #wrong.
 * Without a GPU (or built without CUDA) they stop with one line and exit status 2.
 * --op broadcast|reduce times bt_broadcast or bt_reduce (root 0; broadcast always in place)
 * instead, checked likewise (reduce: the root's result). -T SECS bounds the timed ops of a
 * size: fewer than ITERS (at least 3) where the warm-up's time per op says ITERS would take
 * longer than SECS (bench/collsim_check.sh keeps its 256 MiB runs short with it). -s puts a
 * barrier before each timed op, so that each starts from ranks in step: without it a root
 * that returns once its data is in the socket buffers starts the next broadcast early, and
 * the times are a pipeline's, not one call's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"
#include "bench_util.h"

#if defined(BT_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

struct args {
    size_t minb, maxb;
    double factor;
    int iters, warmup, oop;
    int cpu;          /* -c: print CPU time and context switches per op */
    int sync;         /* -s: a barrier before each timed op */
    int op;           /* --op: OP_ALLREDUCE, OP_BROADCAST or OP_REDUCE (root 0) */
    double budget;    /* -T: seconds of timed ops per size (0: no bound) */
    int gpu;          /* --backend nccl|staged: buffers in device memory */
    const char *name; /* the backend as printed */
};

/* ---- buffers on the host or the GPU (device buffers only where built with CUDA) ---- */

#if defined(BT_HAVE_CUDA)
static int gpu_setup(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        fprintf(stderr,
                "allreduce_bench: --backend nccl|staged needs a GPU, and there is none "
                "(cudaGetDeviceCount: %s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return -1;
    }
    const char *lr = getenv("BATON_LOCAL_RANK");
    if (!getenv("BATON_GPU") && cudaSetDevice((lr ? atoi(lr) : 0) % n) != cudaSuccess) {
        fprintf(stderr, "allreduce_bench: cudaSetDevice failed\n");
        return -1;
    }
    return 0;
}

static void *buf_alloc(int gpu, size_t bytes)
{
    void *p = NULL;
    if (!gpu)
        return malloc(bytes);
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
}

static void buf_free(int gpu, void *p)
{
    if (gpu)
        cudaFree(p);
    else
        free(p);
}

static int buf_copy(int gpu, void *dst, const void *src, size_t bytes)
{
    if (!gpu) {
        memcpy(dst, src, bytes);
        return 0;
    }
    return cudaMemcpy(dst, src, bytes, cudaMemcpyDefault) == cudaSuccess ? 0 : -1;
}
#else
static int gpu_setup(void)
{
    fprintf(stderr, "allreduce_bench: --backend nccl|staged needs a GPU, and this build has no "
                    "CUDA (rebuild where /usr/local/cuda is found)\n");
    return -1;
}

static void *buf_alloc(int gpu, size_t bytes)
{
    (void)gpu;
    return malloc(bytes);
}

static void buf_free(int gpu, void *p)
{
    (void)gpu;
    free(p);
}

static int buf_copy(int gpu, void *dst, const void *src, size_t bytes)
{
    (void)gpu;
    memcpy(dst, src, bytes);
    return 0;
}
#endif

enum { OP_ALLREDUCE, OP_BROADCAST, OP_REDUCE };
static const char *const op_names[] = {"allreduce", "broadcast", "reduce"};

/* The timed collective: float32 sum; broadcast and reduce with root 0. */
static int run_op(bt_comm *c, int op, float *buf, float *out, size_t count)
{
    switch (op) {
    case OP_BROADCAST: return bt_broadcast(c, buf, count, BT_FLOAT32, 0);
    case OP_REDUCE: return bt_reduce(c, buf, out, count, BT_FLOAT32, BT_SUM, 0);
    }
    return bt_allreduce(c, buf, out, count, BT_FLOAT32, BT_SUM);
}

/* The bench's own small allreduces (median, #wrong): through a device scratch with --backend
 * nccl (BATON_BACKEND=nccl takes device buffers only), else on the host. */
static void *small_dev;

static int small_allreduce(bt_comm *c, void *v, bt_dtype dt, bt_op op)
{
    if (!small_dev)
        return bt_allreduce(c, v, v, 1, dt, op);
    if (buf_copy(1, small_dev, v, 8) || bt_allreduce(c, small_dev, small_dev, 1, dt, op) != BT_OK ||
        buf_copy(1, v, small_dev, 8))
        return -1;
    return BT_OK;
}

static int usage(const char *why)
{
    return bench_usage("allreduce_bench", why,
                       "[--backend shm|tcp|auto|nccl|staged] [-b MINBYTES] [-e MAXBYTES] "
                       "[-f FACTOR] [-n ITERS] [-w WARMUP] [-T SECS] [--op "
                       "allreduce|broadcast|reduce] [-o] [-c] [-s]");
}

/* shm|tcp|auto choose the host transport; nccl|staged put the buffers on the GPU. */
static int set_backend(struct args *a, const char *v)
{
    a->name = v;
    if (!strcmp(v, "nccl") || !strcmp(v, "staged")) {
        a->gpu = 1;
        setenv("BATON_BACKEND", !strcmp(v, "nccl") ? "nccl" : "baton", 1);
        return 0;
    }
    if (strcmp(v, "shm") && strcmp(v, "tcp") && strcmp(v, "auto"))
        return usage("--backend is shm, tcp, auto, nccl or staged");
    setenv("BATON_TRANSPORT", v, 1);
    return 0;
}

static int parse(int argc, char **argv, struct args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-o") || !strcmp(o, "-c") || !strcmp(o, "-s")) {
            *(o[1] == 'o' ? &a->oop : o[1] == 'c' ? &a->cpu : &a->sync) = 1;
            continue;
        }
        if (!v)
            return usage("an option lacks its value");
        i++;
        if (!strcmp(o, "--backend")) {
            if (set_backend(a, v))
                return 2;
        } else if (!strcmp(o, "-b") || !strcmp(o, "--minbytes")) {
            if (bench_parse_size(v, &a->minb))
                return usage("bad -b size (e.g. 4K, 64M)");
        } else if (!strcmp(o, "-e") || !strcmp(o, "--maxbytes")) {
            if (bench_parse_size(v, &a->maxb))
                return usage("bad -e size (e.g. 4K, 64M)");
        } else if (!strcmp(o, "-f") || !strcmp(o, "--stepfactor")) {
            a->factor = atof(v);
        } else if (!strcmp(o, "-n") || !strcmp(o, "--iters")) {
            a->iters = atoi(v);
        } else if (!strcmp(o, "-w") || !strcmp(o, "--warmup_iters")) {
            a->warmup = atoi(v);
        } else if (!strcmp(o, "-T")) {
            a->budget = atof(v);
        } else if (!strcmp(o, "--op")) {
            a->op = -1;
            for (int k = 0; k < 3; k++)
                if (!strcmp(v, op_names[k]))
                    a->op = k;
            if (a->op < 0)
                return usage("--op is allreduce, broadcast or reduce");
        } else {
            return usage("unknown option");
        }
    }
    if (a->factor <= 1 || a->iters < 1 || a->warmup < 0 || a->minb < 4 || a->maxb < a->minb ||
        !(a->budget >= 0))
        return usage("need -f > 1, -n >= 1, -w >= 0, 4 <= -b <= -e, -T >= 0");
    return 0;
}

/* Median microseconds per op (max over ranks), or < 0 on error; cpu gets the ranks' summed
 * CPU time and context switches over the timed ops (bench_rusage). With -T the ops timed are
 * fewer than -n where the warm-up says -n would take longer than the budget (at least 3; the
 * ranks agree on the count). */
static double time_size(bt_comm *c, float *buf, float *out, size_t count, const struct args *a,
                        double *t, double cpu[4], int *used)
{
    double r0[4], w0 = bench_now_us();
    for (int i = 0; i < a->warmup; i++)
        if (run_op(c, a->op, buf, out, count) != BT_OK)
            return -1;
    int iters = a->iters;
    if (a->budget > 0 && a->warmup > 0) {
        double per = (bench_now_us() - w0) / a->warmup;
        if (small_allreduce(c, &per, BT_FLOAT64, BT_MAX) != BT_OK)
            return -1;
        double fit = a->budget * 1e6 / (per > 1 ? per : 1);
        if (fit < iters)
            iters = fit < 3 ? 3 : (int)fit;
        iters = iters < a->iters ? iters : a->iters;
    }
    *used = iters;
    bench_rusage(r0);
    for (int i = 0; i < iters; i++) {
        if (a->sync && bt_barrier(c) != BT_OK)
            return -1;
        double t0 = bench_now_us();
        if (run_op(c, a->op, buf, out, count) != BT_OK)
            return -1;
        t[i] = bench_now_us() - t0;
    }
    bench_rusage(cpu);
    for (int k = 0; k < 4; k++) {
        cpu[k] -= r0[k];
        if (small_allreduce(c, &cpu[k], BT_FLOAT64, BT_SUM) != BT_OK)
            return -1;
    }
    qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
    double med = t[iters / 2];
    if (small_allreduce(c, &med, BT_FLOAT64, BT_MAX) != BT_OK)
        return -1;
    return med;
}

/* Fills with small integers (exact sums), runs the op once, counts wrong elements (the root's
 * result for reduce, every rank's for broadcast and allreduce). host is a host buffer of
 * count floats (buf/out are on the GPU with --backend nccl|staged). */
static long check_size(bt_comm *c, int op, float *buf, float *out, float *host, size_t count,
                       int rank, int size, int gpu)
{
    for (size_t i = 0; i < count; i++)
        host[i] = op == OP_BROADCAST && rank != 0 ? -1.0f : (float)((rank + (int)(i % 7)) % 5);
    if (op == OP_BROADCAST)
        out = buf;
    if (buf_copy(gpu, buf, host, count * 4) || run_op(c, op, buf, out, count) != BT_OK ||
        buf_copy(gpu, host, out, count * 4))
        return -1;
    out = host;
    long wrong = 0;
    float want[7] = {0};
    for (int k = 0; k < 7; k++)
        for (int r = 0; r < (op == OP_BROADCAST ? 1 : size); r++)
            want[k] += (float)((r + k) % 5);
    for (size_t i = 0; i < count && (op != OP_REDUCE || rank == 0); i++)
        wrong += out[i] != want[i % 7];
    int64_t w = wrong;
    if (small_allreduce(c, &w, BT_INT64, BT_SUM) != BT_OK)
        return -1;
    return (long)w;
}

int main(int argc, char **argv)
{
    struct args a = {.minb = 4096, .maxb = 256u << 20, .factor = 2, .iters = 20, .warmup = 5};
    if (parse(argc, argv, &a))
        return 2;
    if (a.gpu && gpu_setup())
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
    float *buf = buf_alloc(a.gpu, maxc * 4), *out = a.oop ? buf_alloc(a.gpu, maxc * 4) : NULL;
    float *host = malloc(maxc * 4);
    double *t = malloc(sizeof(double) * (size_t)a.iters);
    int nccl = a.gpu && !strcmp(a.name, "nccl");
    if (nccl)
        small_dev = buf_alloc(1, 8);
    if (!buf || (a.oop && !out) || !t || !host || (nccl && !small_dev)) {
        fprintf(stderr, "allreduce_bench: out of %s memory\n", a.gpu ? "GPU or host" : "host");
        return 1;
    }
    memset(host, 0, maxc * 4); /* fault every page in before timing */
    buf_copy(a.gpu, buf, host, maxc * 4);
    if (out)
        buf_copy(a.gpu, out, host, maxc * 4);
    if (rank == 0)
        printf("# baton allreduce_bench: %s, %d ranks, %s %s, float32 sum, %s\n"
               "#%12s %12s %8s %6s %10s %8s %8s %7s\n"
               "#%12s %12s %8s %6s %10s %8s %8s %7s\n",
               op_names[a.op], size, a.gpu ? "backend" : "transport",
               a.gpu                       ? a.name
               : getenv("BATON_TRANSPORT") ? getenv("BATON_TRANSPORT")
                                           : "auto",
               a.oop ? "out of place" : "in place", "size", "count", "type", "redop", "time",
               "algbw", "busbw", "#wrong", "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)",
               "");
    double bw_sum = 0;
    int nsizes = 0, rc = 0;
    for (double sz = (double)a.minb; sz <= (double)a.maxb * 1.0001; sz *= a.factor) {
        size_t count = (size_t)sz / 4, bytes = count * 4;
        float *o = a.oop ? out : buf;
        double cpu[4];
        int used = a.iters;
        double us = time_size(c, buf, o, count, &a, t, cpu, &used);
        long wrong = us < 0 ? -1 : check_size(c, a.op, buf, o, host, count, rank, size, a.gpu);
        if (us < 0 || wrong < 0) {
            fprintf(stderr, "rank %d: %s failed: %s\n", rank, op_names[a.op], bt_last_error(c));
            rc = 1;
            break;
        }
        double algbw = (double)bytes / us / 1e3, busbw = algbw * 2.0 * (size - 1) / size;
        bw_sum += busbw;
        nsizes++;
        rc |= wrong != 0;
        if (rank == 0)
            printf(" %12zu %12zu %8s %6s %10.2f %8.2f %8.2f %7ld\n", bytes, count, "float", "sum",
                   us, algbw, busbw, wrong);
        if (rank == 0 && a.cpu)
            bench_cpu_print(bytes, cpu, used);
    }
    if (rank == 0 && nsizes)
        printf("# Avg bus bandwidth    : %.3f\n", bw_sum / nsizes);
    buf_free(a.gpu, buf);
    if (out)
        buf_free(a.gpu, out);
    if (small_dev)
        buf_free(1, small_dev);
    free(host), free(t);
    int frc = bt_finalize(c);
    return rc || frc ? 1 : 0;
}
