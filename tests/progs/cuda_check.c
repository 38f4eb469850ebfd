/* cuda_check.c: collectives on device (cudaMalloc'ed) buffers, for tests/t_cuda.sh.
 *
 *   cuda_check --probe     prints "cuda devices: N", or the reason there are none and exits 77
 *   baton run -n N -- cuda_check [--mixed | --split-group]
 *
 * Each rank picks GPU local_rank % devices (unless BATON_GPU is set: bt_init made it current),
 * then checks every collective x dtype x op on device buffers against a host reference, for
 * counts 0, 1, 7, 1000, 65539 and an allreduce of 1M+3 floats (several staging segments).
 * Inputs are small integers, so results are exact; only a floating-point average may differ
 * in its last bits (NCCL pre-multiplies by 1/n). --mixed instead passes a device send and a
 * host recv and expects BT_ERR_INVALID_ARG. --split-group adds, after the sweep, a dup of the
 * communicator (ncclCommSplit on NCCL) and a group of three device allreduces on the dup and
 * on the world (ncclGroupStart/End on NCCL). Prints "rank R ok" (exit 0) or what differed
 * (exit 3). Exit 77 means: no GPU here (built without CUDA, no driver or no device).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton.h"
#include "tests/coll_ref.h"

#if defined(BT_HAVE_CUDA)
#include <cuda_runtime.h>

#define BIG (1048576 + 3)

static double get(const void *p, size_t i, bt_dtype dt)
{
    uint32_t x;
    float f;
    switch (dt) {
    case BT_FLOAT32: return ((const float *)p)[i];
    case BT_FLOAT64: return ((const double *)p)[i];
    case BT_FLOAT16: {
        _Float16 h;
        memcpy(&h, (const uint16_t *)p + i, 2);
        return (double)h;
    }
    case BT_BFLOAT16:
        x = (uint32_t)((const uint16_t *)p)[i] << 16;
        memcpy(&f, &x, 4);
        return f;
    case BT_INT32: return ((const int32_t *)p)[i];
    case BT_INT64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

struct ctx {
    bt_comm *c;
    int rank, size;
    char *h_in, *h_out, *h_want; /* host */
    void *d_in, *d_out;          /* device */
};

static int cuda_ok(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 1;
    printf("cuda_check: %s: %s\n", what, cudaGetErrorString(e));
    return 0;
}

/* Compares n elements of h_out with h_want: exact, or close for a floating-point average. */
static int compare(struct ctx *x, const char *what, size_t count, size_t n, bt_dtype dt, bt_op op)
{
    size_t es = bt_dtype_size(dt);
    int fl = dt == BT_FLOAT32 || dt == BT_FLOAT64 || dt == BT_FLOAT16 || dt == BT_BFLOAT16;
    double tol = dt == BT_BFLOAT16 ? 1e-2 : dt == BT_FLOAT16 ? 1e-3 : 1e-6;
    for (size_t i = 0; i < n; i++) {
        if (!memcmp(x->h_out + i * es, x->h_want + i * es, es))
            continue;
        double g = get(x->h_out, i, dt), w = get(x->h_want, i, dt);
        if (op == BT_AVG && fl && fabs(g - w) <= tol * (fabs(w) > 1 ? fabs(w) : 1))
            continue;
        printf("rank %d: %s %s %s count %zu: element %zu is %g, want %g\n", x->rank, what, dtn[dt],
               opn[op], count, i, g, w);
        return 1;
    }
    return 0;
}

static int call(struct ctx *x, int kind, size_t count, bt_dtype dt, bt_op op, int root)
{
    switch (kind) {
    case 0: return bt_allreduce(x->c, x->d_in, x->d_out, count, dt, op);
    case 1: return bt_allreduce(x->c, x->d_in, x->d_in, count, dt, op);
    case 2: return bt_reduce(x->c, x->d_in, x->rank == root ? x->d_out : NULL, count, dt, op, root);
    case 3: return bt_reduce_scatter(x->c, x->d_in, x->d_out, count, dt, op);
    case 4: return bt_allgather(x->c, x->d_in, x->d_out, count, dt);
    default: return bt_broadcast(x->c, x->d_in, count, dt, root);
    }
}

static const char *kind_name[] = {"allreduce",      "allreduce(in place)", "reduce",
                                  "reduce_scatter", "allgather",           "broadcast"};

/* One collective: fill, copy in, run, copy out, compare. */
static int one(struct ctx *x, int kind, size_t count, bt_dtype dt, bt_op op)
{
    int n = x->size, root = ((int)dt + (int)op) % n;
    size_t es = bt_dtype_size(dt), nin = kind == 3 ? count * (size_t)n : count, nout = count;
    int src_rank = kind == 5 ? (x->rank == root ? root : 99) : x->rank;
    for (size_t i = 0; i < nin; i++)
        put(x->h_in, i, dt, val(src_rank, i, dt, kind >= 4 ? BT_SUM : op));
    if (kind == 4) {
        nout = count * (size_t)n;
        for (int r = 0; r < n; r++)
            for (size_t i = 0; i < count; i++)
                put(x->h_want, (size_t)r * count + i, dt, val(r, i, dt, BT_SUM));
    } else if (kind == 5) {
        for (size_t i = 0; i < count; i++)
            put(x->h_want, i, dt, val(root, i, dt, BT_SUM));
    } else {
        size_t base = kind == 3 ? (size_t)x->rank * count : 0;
        for (size_t i = 0; i < count; i++)
            expect(x->h_want, i, base + i, n, dt, op);
    }
    if (!cuda_ok(cudaMemcpy(x->d_in, x->h_in, nin * es, cudaMemcpyHostToDevice), "copy in"))
        return 1;
    int rc = call(x, kind, count, dt, op, root);
    if (rc != BT_OK) {
        printf("rank %d: %s %s %s count %zu failed: %s: %s\n", x->rank, kind_name[kind], dtn[dt],
               opn[op], count, bt_strerror(rc), bt_last_error(x->c));
        return 1;
    }
    if (kind == 2 && x->rank != root)
        return 0;
    const void *res = kind == 1 || kind == 5 ? x->d_in : x->d_out;
    if (!cuda_ok(cudaMemcpy(x->h_out, res, nout * es, cudaMemcpyDeviceToHost), "copy out"))
        return 1;
    return compare(x, kind_name[kind], count, nout, dt, kind >= 4 ? BT_SUM : op);
}

static int sweep(struct ctx *x)
{
    static const size_t counts[] = {0, 1, 7, 1000, 65539};
    for (int k = 0; k < 5; k++)
        for (int dt = 0; dt < BT_DTYPE_COUNT; dt++)
            for (int kind = 0; kind < 6; kind++)
                for (int op = 0; op < (kind >= 4 ? 1 : BT_OP_COUNT); op++)
                    if (one(x, kind, counts[k], (bt_dtype)dt, (bt_op)op))
                        return 1;
    return one(x, 1, BIG, BT_FLOAT32, BT_SUM) || one(x, 0, BIG, BT_BFLOAT16, BT_MAX);
}

static int mixed(struct ctx *x)
{
    int rc = bt_allreduce(x->c, x->d_in, x->h_out, 8, BT_FLOAT32, BT_SUM);
    if (rc != BT_ERR_INVALID_ARG || !strstr(bt_last_error(x->c), "host memory")) {
        printf("rank %d: mixed host/device buffers: got %s (%s), want invalid argument\n", x->rank,
               bt_strerror(rc), bt_last_error(x->c));
        return 1;
    }
    printf("rank %d: mixed buffers rejected: %s\n", x->rank, bt_last_error(x->c));
    return 0;
}

/* --split-group: after the sweep, a dup of the communicator (on NCCL: ncclCommSplit) and, on
 * it and on the parent, a group of three device allreduces (on NCCL: one ncclGroupStart/End). */
static int group_on(struct ctx *x, bt_comm *c, const char *what)
{
    static const size_t counts[3] = {1, 7, 1000};
    float *d = x->d_in, *h = (float *)(void *)x->h_in;
    for (size_t i = 0; i < 1008; i++)
        h[i] = (float)((x->rank + (int)i) % 5);
    if (!cuda_ok(cudaMemcpy(d, h, 1008 * 4, cudaMemcpyHostToDevice), "cudaMemcpy"))
        return 1;
    int rc = bt_group_start();
    for (size_t k = 0, off = 0; k < 3 && rc == BT_OK; off += counts[k++])
        rc = bt_allreduce(c, d + off, d + off, counts[k], BT_FLOAT32, BT_SUM);
    int end = bt_group_end();
    if (rc != BT_OK || end != BT_OK) {
        printf("rank %d: group on %s: %s\n", x->rank, what, bt_last_error(c));
        return 1;
    }
    if (!cuda_ok(cudaMemcpy(h, d, 1008 * 4, cudaMemcpyDeviceToHost), "cudaMemcpy"))
        return 1;
    for (size_t i = 0; i < 1008; i++) {
        float want = 0;
        for (int r = 0; r < x->size; r++)
            want += (float)((r + (int)i) % 5);
        if (h[i] != want) {
            printf("rank %d: group on %s: element %zu is %g, want %g\n", x->rank, what, i, h[i],
                   want);
            return 1;
        }
    }
    return 0;
}

static int split_group(struct ctx *x)
{
    bt_comm *child = NULL;
    int rc = bt_comm_dup(x->c, &child);
    if (rc != BT_OK) {
        printf("rank %d: dup: %s\n", x->rank, bt_last_error(x->c));
        return 1;
    }
    int bad = group_on(x, child, "the dup") || group_on(x, x->c, "the world");
    if (bt_comm_destroy(child) != BT_OK && !bad) {
        printf("rank %d: destroying the dup failed\n", x->rank);
        bad = 1;
    }
    return bad;
}

static int pick_device(int local_rank)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("no CUDA device: cudaGetDeviceCount returned %d (%s), %d device(s)\n", (int)e,
               cudaGetErrorString(e), n);
        return -1;
    }
    if (!getenv("BATON_GPU") && !cuda_ok(cudaSetDevice(local_rank % n), "cudaSetDevice"))
        return -1;
    return n;
}

int main(int argc, char **argv)
{
    int probe = argc > 1 && !strcmp(argv[1], "--probe");
    int want_mixed = argc > 1 && !strcmp(argv[1], "--mixed");
    int want_split = argc > 1 && !strcmp(argv[1], "--split-group");
    const char *lr = getenv("BATON_LOCAL_RANK");
    int ndev = pick_device(lr ? atoi(lr) : 0);
    if (ndev < 0)
        return 77;
    if (probe) {
        printf("cuda devices: %d\n", ndev);
        return 0;
    }
    struct ctx x = {0};
    if (bt_init(&x.c) != BT_OK) {
        printf("cuda_check: bt_init: %s\n", bt_last_error(NULL));
        return 3;
    }
    bt_comm_rank(x.c, &x.rank);
    bt_comm_size(x.c, &x.size);
    size_t bytes = (size_t)BIG * 8 * (size_t)x.size;
    x.h_in = malloc(bytes), x.h_out = malloc(bytes), x.h_want = malloc(bytes);
    if (!x.h_in || !x.h_out || !x.h_want || !cuda_ok(cudaMalloc(&x.d_in, bytes), "cudaMalloc") ||
        !cuda_ok(cudaMalloc(&x.d_out, bytes), "cudaMalloc"))
        return 3;
    int bad = want_mixed ? mixed(&x) : sweep(&x);
    if (!bad && want_split)
        bad = split_group(&x);
    if (!bad && !want_mixed && bt_barrier(x.c) != BT_OK)
        bad = 1;
    if (!bad)
        printf("rank %d ok\n", x.rank);
    bt_finalize(x.c);
    cudaFree(x.d_in), cudaFree(x.d_out);
    free(x.h_in), free(x.h_out), free(x.h_want);
    return bad ? 3 : 0;
}
#else
int main(void)
{
    printf("no CUDA device: this cuda_check was built without CUDA\n");
    return 77;
}
#endif
