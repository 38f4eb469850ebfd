/* mnist.h: the pieces of the example CNN trainer (examples/mnist/), shared by its files and by
 * tests/unit/test_mnist*.c. Nothing here knows about baton: the layers, the packed GEMM, the
 * IDX reader and the optimizer are plain single-process code; main.c adds the job.
 *
 * Tensors are float32, row-major, images channels-last (NHWC), so that a convolution is one
 * GEMM of its im2col matrix (B*OH*OW, KH*KW*C_in) by its kernel (KH*KW*C_in, C_out) and writes
 * its output (B, OH, OW, C_out) directly. Kernels keep Keras' layout (KH, KW, C_in, C_out) and
 * dense weights (in, out), so a Keras model's weights could be loaded as they are.
 */
#ifndef MNIST_H
#define MNIST_H

#include <stddef.h>
#include <stdint.h>

/* ---- GEMM (gemm.c) ---- */

/* Blocking: the micro-kernel computes an MR x NR tile of C from an MR-tall panel of A and an
 * NR-wide panel of B; A is packed MC x KC at a time (fits L2), B KC x NC at a time. */
#define MN_GEMM_MR 6
#define MN_GEMM_NR 32
#define MN_GEMM_MC 96
#define MN_GEMM_KC 256
#define MN_GEMM_NC 576

/* Packing space for one thread's GEMMs; allocate once, reuse for every call. */
struct mn_gemm_ws {
    float *apack; /* MN_GEMM_MC * MN_GEMM_KC floats, 64-byte aligned */
    float *bpack; /* MN_GEMM_KC * MN_GEMM_NC floats, 64-byte aligned */
};
int mn_gemm_ws_init(struct mn_gemm_ws *ws);
void mn_gemm_ws_free(struct mn_gemm_ws *ws);

/* C (M x N, row stride ldc) = [C +] A B, where element (i, k) of A is a[i*rsa + k*csa] and
 * element (k, j) of B is b[k*rsb + j*csb]: the strides express the transposes (NN, NT, TN).
 * accumulate = 0 overwrites C (no need to clear it first). */
void mn_gemm(struct mn_gemm_ws *ws, int M, int N, int K, const float *a, long rsa, long csa,
             const float *b, long rsb, long csb, float *c, long ldc, int accumulate);
/* The same product, by three plain loops: the reference the tests hold mn_gemm to. */
void mn_gemm_ref(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                 long csb, float *c, long ldc, int accumulate);
/* Which micro-kernel mn_gemm uses on this CPU: "avx512", "avx2" or "generic". */
const char *mn_gemm_kernel_name(void);

/* ---- layers (layers.c) ---- */

/* 3x3 'valid' convolution, stride 1, NHWC. */
void mn_im2col3(const float *x, int B, int H, int W, int C, float *col);
void mn_col2im3(const float *col, int B, int H, int W, int C, float *dx);
/* out (M, N) = relu(in (M, K) w (K, N) + b): the forward of a conv (in = im2col) or dense. */
void mn_linear_relu_fwd(struct mn_gemm_ws *ws, const float *in, const float *w, const float *b,
                        float *out, int M, int K, int N, int relu);
/* Backward of mn_linear_relu_fwd given dout (M, N) (relu's mask already applied):
 * dw (K, N) = in^T dout, db (N) = column sums of dout, din (M, K) = dout w^T (if din). */
void mn_linear_bwd(struct mn_gemm_ws *ws, const float *in, const float *w, const float *dout,
                   float *dw, float *db, float *din, int M, int K, int N);
/* d *= (a > 0): ReLU's backward, given its output a. */
void mn_relu_bwd(const float *a, float *d, size_t n);
/* 2x2 max pool, stride 2, floor (an odd last row/column is dropped, as Keras does).
 * idx (B, H/2, W/2, C) records the flat input index of each max, for the backward. */
void mn_maxpool_fwd(const float *x, int B, int H, int W, int C, float *y, int32_t *idx);
void mn_maxpool_bwd(const float *dy, const int32_t *idx, size_t n_out, float *dx, size_t n_in);
/* The backward of ReLU then 2x2 max pool, in place on a (see layers.c). */
void mn_pool_relu_bwd(float *a, size_t n_in, float *dy, const int32_t *idx, size_t n_out);
/* Softmax + sparse categorical cross-entropy over B rows of 10 logits. Writes
 * dlogits = (softmax - onehot) * scale; returns the summed loss and counts correct argmaxes. */
double mn_softmax_xent(const float *logits, const uint8_t *labels, int B, int classes, float scale,
                       float *dlogits, int *correct);

/* ---- the model (layers.c) ---- */

/* Every parameter tensor, in buffer order: name, element count, shape comment. The
 * parameter, gradient and Adam buffers each hold them back to back (llm.c style). */
#define MN_PARAM_TABLE(X)                                                                          \
    X(conv1_w, 3 * 3 * 1 * 32)  /* (3, 3, 1, 32): KH, KW, C_in, C_out */                           \
    X(conv1_b, 32)              /* (32) */                                                         \
    X(conv2_w, 3 * 3 * 32 * 64) /* (3, 3, 32, 64) */                                               \
    X(conv2_b, 64)              /* (64) */                                                         \
    X(conv3_w, 3 * 3 * 64 * 64) /* (3, 3, 64, 64) */                                               \
    X(conv3_b, 64)              /* (64) */                                                         \
    X(dense1_w, 576 * 64)       /* (576, 64): in = 3*3*64 flattened HWC, out */                    \
    X(dense1_b, 64)             /* (64) */                                                         \
    X(dense2_w, 64 * 10)        /* (64, 10) */                                                     \
    X(dense2_b, 10)             /* (10) */

struct mn_params {
#define MN_X_FIELD(name, count) float *name;
    MN_PARAM_TABLE(MN_X_FIELD)
#undef MN_X_FIELD
};
#define MN_X_SUM(name, count) +(count)
enum { MN_NUM_PARAMS = 0 MN_PARAM_TABLE(MN_X_SUM) }; /* 93,322, as Keras' summary says */
#undef MN_X_SUM

/* Points the views of p into base (MN_NUM_PARAMS floats). */
void mn_point_params(struct mn_params *p, float *base);
/* Keras' default initialisation: glorot_uniform kernels, zero biases, from seed. */
void mn_init_params(float *base, uint64_t seed);

/* Activations and their gradients for up to max_batch images: one allocation, with views. */
struct mn_acts {
    int max_batch;
    float *mem;
    float *x;      /* (B, 28, 28, 1) input scaled to [0, 1] */
    float *col1;   /* (B*26*26, 9) im2col of x */
    float *a1;     /* (B, 26, 26, 32) relu(conv1); reused for its gradient */
    float *p1;     /* (B, 13, 13, 32) maxpool(a1); reused for its gradient */
    float *col2;   /* (B*11*11, 288) im2col of p1; reused for its gradient */
    float *a2;     /* (B, 11, 11, 64) */
    float *p2;     /* (B, 5, 5, 64) */
    float *col3;   /* (B*3*3, 576) */
    float *a3;     /* (B, 3, 3, 64) = flatten (B, 576) */
    float *h4;     /* (B, 64) relu(dense1) */
    float *z5;     /* (B, 10) logits */
    float *dz5;    /* (B, 10) */
    float *dh4;    /* (B, 64) */
    float *da3;    /* (B, 576) */
    int32_t *idx1; /* (B, 13, 13, 32) argmax of pool 1 */
    int32_t *idx2; /* (B, 5, 5, 64) argmax of pool 2 */
    struct mn_gemm_ws gemm;
};
int mn_acts_init(struct mn_acts *a, int max_batch);
void mn_acts_free(struct mn_acts *a);

/* Forward pass of B images already in a->x; logits land in a->z5. */
void mn_forward(const struct mn_params *p, struct mn_acts *a, int B);
/* Backward pass from a->dz5 (set by mn_softmax_xent); writes every gradient in g. */
void mn_backward(const struct mn_params *p, const struct mn_params *g, struct mn_acts *a, int B);

/* ---- Adam, as Keras applies it (layers.c) ---- */
struct mn_adam {
    float lr, beta1, beta2, eps;
    uint64_t t; /* steps taken */
};
/* One step over n parameters: m, v updated; p -= lr_t m / (sqrt(v) + eps) with
 * lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t). */
void mn_adam_step(struct mn_adam *opt, float *p, const float *g, float *m, float *v, size_t n);

/* ---- IDX files (idx.c) ---- */
/* Loads DIR/NAME or DIR/NAME.gz (plain or gzip'd) with the given magic (0x803 images,
 * 0x801 labels). Images must be want[0] x want[1] pixels unless want[0] is 0; that and the
 * size are checked before anything is allocated, and memory grows only with the data read.
 * On success *data (malloc'd, caller frees) holds count*rows*cols bytes. On failure returns
 * -1 with one line naming the file and the problem in err. */
int mn_idx_load(const char *dir, const char *name, uint32_t magic, const uint32_t want[2],
                uint8_t **data, uint32_t *count, uint32_t *rows, uint32_t *cols, char *err,
                size_t errlen);

/* ---- checkpoints (ckpt.c) ----
 * A file is {struct mn_ckpt_header; params (N floats); m (N); v (N); u32 crc32 of all before},
 * host byte order (little-endian on every machine baton targets); train.c writes them. */
#define MN_CKPT_MAGIC "BTMNIST"
#define MN_CKPT_VERSION 2 /* 1: step_in_epoch counted steps of global_batch (still read) */

struct mn_ckpt_header {
    char magic[8];        /* "BTMNIST\0" */
    uint32_t version;     /* MN_CKPT_VERSION */
    uint32_t n_params;    /* MN_NUM_PARAMS */
    uint64_t global_step; /* steps taken */
    uint64_t adam_t;      /* Adam's step count */
    uint64_t rng;         /* shuffle generator at the start of `epoch` */
    uint64_t seed;
    uint32_t epoch;        /* the epoch to continue (0-based) */
    uint32_t epoch_pos;    /* images of that epoch's order already trained on */
    uint32_t global_batch; /* images per step over all ranks when it was written */
    float last_loss;       /* mean training loss of the last epoch run */
};

/* Reads path into h, params (MN_NUM_PARAMS floats) and adam_state (2 * MN_NUM_PARAMS);
 * returns 0, 1 when the file does not exist, or -1 with one line naming path in err. */
int mn_ckpt_read(const char *path, struct mn_ckpt_header *h, float *params, float *adam_state,
                 char *err, size_t errlen);

/* ---- random numbers ---- */
static inline uint64_t mn_rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double mn_rng_uniform(uint64_t *s) /* [0, 1) */
{
    return (double)(mn_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}
/* Fisher-Yates shuffle of perm[0..n). */
void mn_shuffle(uint32_t *perm, uint32_t n, uint64_t *rng);

#endif /* MNIST_H */
