/* layers.c: the CNN's layers, forward and backward, its parameter layout and initialisation,
 * and the Adam update. Single-threaded; main.c runs one mn_acts per thread.
 *
 * The model (the Kubeflow/Keras tutorial CNN), shapes per image, channels last:
 *   x (28,28,1) -conv1 3x3,32,relu-> a1 (26,26,32) -maxpool 2x2-> p1 (13,13,32)
 *   -conv2 3x3,64,relu-> a2 (11,11,64) -maxpool 2x2-> p2 (5,5,64)
 *   -conv3 3x3,64,relu-> a3 (3,3,64) -flatten-> (576) -dense1 64,relu-> h4 (64)
 *   -dense2 10-> z5 (10) -softmax + cross-entropy-> loss
 * A convolution is im2col then one GEMM over the whole batch (M = B*OH*OW rows); its weight
 * gradient is col^T dout and its input gradient dout W^T followed by col2im. conv1's input
 * gradient is never needed and never computed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mnist.h"

/* ---- convolution helpers: 3x3, stride 1, valid ---- */

/* col (B*OH*OW, 9*C): row (b, oh, ow) holds x[b, oh+kh, ow+kw, c] in (kh, kw, c) order; for a
 * fixed kh the 3*C values are contiguous in x, so each row is three copies. */
void mn_im2col3(const float *x, int B, int H, int W, int C, float *col)
{
    int OH = H - 2, OW = W - 2;
    size_t run = (size_t)3 * C;
    for (int b = 0; b < B; b++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *src = x + (((size_t)b * H + oh) * W + ow) * C;
                for (int kh = 0; kh < 3; kh++, col += run)
                    memcpy(col, src + (size_t)kh * W * C, sizeof(float) * run);
            }
}

/* The adjoint of mn_im2col3: dx (B, H, W, C) = sum of the rows' entries where they came from. */
void mn_col2im3(const float *col, int B, int H, int W, int C, float *dx)
{
    int OH = H - 2, OW = W - 2;
    size_t run = (size_t)3 * C;
    memset(dx, 0, sizeof(float) * B * H * W * C);
    for (int b = 0; b < B; b++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float *dst = dx + (((size_t)b * H + oh) * W + ow) * C;
                for (int kh = 0; kh < 3; kh++, col += run) {
                    float *restrict d = dst + (size_t)kh * W * C;
                    const float *restrict s = col;
                    for (size_t i = 0; i < run; i++)
                        d[i] += s[i];
                }
            }
}

void mn_linear_relu_fwd(struct mn_gemm_ws *ws, const float *in, const float *w, const float *b,
                        float *out, int M, int K, int N, int relu)
{
    mn_gemm(ws, M, N, K, in, K, 1, w, N, 1, out, N, 0);
    for (int i = 0; i < M; i++) {
        float *restrict o = out + (size_t)i * N;
        if (relu) {
            for (int j = 0; j < N; j++)
                o[j] = fmaxf(o[j] + b[j], 0.0f);
        } else {
            for (int j = 0; j < N; j++)
                o[j] += b[j];
        }
    }
}

void mn_linear_bwd(struct mn_gemm_ws *ws, const float *in, const float *w, const float *dout,
                   float *dw, float *db, float *din, int M, int K, int N)
{
    /* dw (K, N) = in^T (K, M) dout (M, N): A(i=k, k=m) = in[m*K + k] */
    mn_gemm(ws, K, N, M, in, 1, K, dout, N, 1, dw, N, 0);
    memset(db, 0, sizeof(float) * N);
    for (int i = 0; i < M; i++) {
        const float *restrict d = dout + (size_t)i * N;
        for (int j = 0; j < N; j++)
            db[j] += d[j];
    }
    /* din (M, K) = dout (M, N) w^T (N, K): B(k=n, j=k) = w[k*N + n] */
    if (din)
        mn_gemm(ws, M, K, N, dout, N, 1, w, 1, N, din, K, 0);
}

void mn_relu_bwd(const float *a, float *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(a[i] > 0.0f))
            d[i] = 0.0f;
}

void mn_maxpool_fwd(const float *x, int B, int H, int W, int C, float *y, int32_t *idx)
{
    int OH = H / 2, OW = W / 2;
    for (int b = 0; b < B; b++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                size_t base = (((size_t)b * H + 2 * oh) * W + 2 * ow) * C;
                size_t off[4] = {0, (size_t)C, (size_t)W * C, (size_t)W * C + C};
                for (int c = 0; c < C; c++) {
                    size_t best = base + c;
                    for (int q = 1; q < 4; q++)
                        if (x[base + off[q] + c] > x[best])
                            best = base + off[q] + c;
                    *y++ = x[best];
                    *idx++ = (int32_t)best;
                }
            }
}

void mn_maxpool_bwd(const float *dy, const int32_t *idx, size_t n_out, float *dx, size_t n_in)
{
    memset(dx, 0, sizeof(float) * n_in);
    for (size_t i = 0; i < n_out; i++)
        dx[idx[i]] += dy[i];
}

double mn_softmax_xent(const float *logits, const uint8_t *labels, int B, int classes, float scale,
                       float *dlogits, int *correct)
{
    double loss = 0.0;
    int ok = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * classes;
        float *d = dlogits ? dlogits + (size_t)b * classes : NULL;
        int arg = 0;
        for (int j = 1; j < classes; j++)
            if (z[j] > z[arg])
                arg = j;
        double sum = 0.0;
        for (int j = 0; j < classes; j++)
            sum += exp((double)z[j] - z[arg]);
        double logsum = log(sum) + z[arg];
        loss += logsum - z[labels[b]];
        ok += arg == labels[b];
        if (!d)
            continue;
        for (int j = 0; j < classes; j++)
            d[j] = (float)(exp((double)z[j] - logsum) - (j == labels[b])) * scale;
    }
    *correct = ok;
    return loss;
}

/* ---- the model ---- */

void mn_point_params(struct mn_params *p, float *base)
{
    /* clang-format off */
#define MN_X_POINT(name, count) p->name = base; base += (count);
    /* clang-format on */
    MN_PARAM_TABLE(MN_X_POINT)
#undef MN_X_POINT
}

/* glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); for a KHxKW kernel both fans
 * include the receptive field (Keras: fan_in = KH*KW*C_in, fan_out = KH*KW*C_out). */
static void glorot(float *w, size_t n, double fan_in, double fan_out, uint64_t *rng)
{
    double l = sqrt(6.0 / (fan_in + fan_out));
    for (size_t i = 0; i < n; i++)
        w[i] = (float)((2.0 * mn_rng_uniform(rng) - 1.0) * l);
}

void mn_init_params(float *base, uint64_t seed)
{
    struct mn_params p;
    uint64_t rng = seed;
    memset(base, 0, sizeof(float) * MN_NUM_PARAMS); /* biases */
    mn_point_params(&p, base);
    glorot(p.conv1_w, 9 * 32, 9 * 1, 9 * 32, &rng);
    glorot(p.conv2_w, 9 * 32 * 64, 9 * 32, 9 * 64, &rng);
    glorot(p.conv3_w, 9 * 64 * 64, 9 * 64, 9 * 64, &rng);
    glorot(p.dense1_w, 576 * 64, 576, 64, &rng);
    glorot(p.dense2_w, 64 * 10, 64, 10, &rng);
}

int mn_acts_init(struct mn_acts *a, int B)
{
    /* float views in order, sizes per image */
    static const size_t per_image[] = {784,      676 * 9, 676 * 32, 169 * 32, 121 * 288,
                                       121 * 64, 25 * 64, 9 * 576,  576,      64,
                                       10,       10,      64,       576};
    size_t total = 0;
    for (size_t i = 0; i < sizeof per_image / sizeof *per_image; i++)
        total += per_image[i] * B;
    memset(a, 0, sizeof *a);
    a->max_batch = B;
    a->mem = aligned_alloc(64, (sizeof(float) * total + 63) / 64 * 64); /* C11: a multiple */
    a->idx1 = malloc(sizeof(int32_t) * B * (169 * 32 + 25 * 64));
    if (!a->mem || !a->idx1 || mn_gemm_ws_init(&a->gemm) != 0) {
        mn_acts_free(a);
        return -1;
    }
    a->idx2 = a->idx1 + (size_t)B * 169 * 32;
    float **views[] = {&a->x,    &a->col1, &a->a1, &a->p1, &a->col2, &a->a2,  &a->p2,
                       &a->col3, &a->a3,   &a->h4, &a->z5, &a->dz5,  &a->dh4, &a->da3};
    float *m = a->mem;
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) {
        *views[i] = m;
        m += per_image[i] * B;
    }
    return 0;
}

void mn_acts_free(struct mn_acts *a)
{
    free(a->mem);
    free(a->idx1);
    mn_gemm_ws_free(&a->gemm);
    memset(a, 0, sizeof *a);
}

void mn_forward(const struct mn_params *p, struct mn_acts *a, int B)
{
    struct mn_gemm_ws *ws = &a->gemm;
    mn_im2col3(a->x, B, 28, 28, 1, a->col1);
    mn_linear_relu_fwd(ws, a->col1, p->conv1_w, p->conv1_b, a->a1, B * 676, 9, 32, 1);
    mn_maxpool_fwd(a->a1, B, 26, 26, 32, a->p1, a->idx1);
    mn_im2col3(a->p1, B, 13, 13, 32, a->col2);
    mn_linear_relu_fwd(ws, a->col2, p->conv2_w, p->conv2_b, a->a2, B * 121, 288, 64, 1);
    mn_maxpool_fwd(a->a2, B, 11, 11, 64, a->p2, a->idx2);
    mn_im2col3(a->p2, B, 5, 5, 64, a->col3);
    mn_linear_relu_fwd(ws, a->col3, p->conv3_w, p->conv3_b, a->a3, B * 9, 576, 64, 1);
    mn_linear_relu_fwd(ws, a->a3, p->dense1_w, p->dense1_b, a->h4, B, 576, 64, 1);
    mn_linear_relu_fwd(ws, a->h4, p->dense2_w, p->dense2_b, a->z5, B, 64, 10, 0);
}

/* Max pool followed (in the forward) by nothing but preceded by ReLU: the backward of both,
 * in place. Pool windows are disjoint (stride = size), so each input gets at most one value:
 * a[j] = dy[i] if j is window i's argmax and a[j] > 0, else 0. a holds the ReLU output on entry
 * and its gradient on return; dy is clobbered. */
void mn_pool_relu_bwd(float *a, size_t n_in, float *dy, const int32_t *idx, size_t n_out)
{
    for (size_t i = 0; i < n_out; i++)
        if (!(a[idx[i]] > 0.0f))
            dy[i] = 0.0f;
    memset(a, 0, sizeof(float) * n_in);
    for (size_t i = 0; i < n_out; i++)
        a[idx[i]] = dy[i];
}

/* Buffers are reused once their forward value is consumed: col3 and col2 take their own
 * gradients (the weight gradient reads them first, in a separate GEMM), p2 and p1 take the
 * pools' output gradients, a2 and a1 their input gradients in place (see mn_pool_relu_bwd). */
void mn_backward_ready(const struct mn_params *p, const struct mn_params *g, struct mn_acts *a,
                       int B, void (*ready)(void *arg, const float *w, size_t n), void *arg)
{
    struct mn_gemm_ws *ws = &a->gemm;
#define READY(w, b, nb)                                                                            \
    do {                                                                                           \
        if (ready)                                                                                 \
            ready(arg, g->w, (size_t)(g->b - g->w) + (nb));                                        \
    } while (0)
    mn_linear_bwd(ws, a->h4, p->dense2_w, a->dz5, g->dense2_w, g->dense2_b, a->dh4, B, 64, 10);
    READY(dense2_w, dense2_b, 10);
    mn_relu_bwd(a->h4, a->dh4, (size_t)B * 64);
    mn_linear_bwd(ws, a->a3, p->dense1_w, a->dh4, g->dense1_w, g->dense1_b, a->da3, B, 576, 64);
    READY(dense1_w, dense1_b, 64);
    mn_relu_bwd(a->a3, a->da3, (size_t)B * 576);
    mn_linear_bwd(ws, a->col3, p->conv3_w, a->da3, g->conv3_w, g->conv3_b, a->col3, B * 9, 576, 64);
    READY(conv3_w, conv3_b, 64);
    mn_col2im3(a->col3, B, 5, 5, 64, a->p2);
    mn_pool_relu_bwd(a->a2, (size_t)B * 121 * 64, a->p2, a->idx2, (size_t)B * 25 * 64);
    mn_linear_bwd(ws, a->col2, p->conv2_w, a->a2, g->conv2_w, g->conv2_b, a->col2, B * 121, 288,
                  64);
    READY(conv2_w, conv2_b, 64);
    mn_col2im3(a->col2, B, 13, 13, 32, a->p1);
    mn_pool_relu_bwd(a->a1, (size_t)B * 676 * 32, a->p1, a->idx1, (size_t)B * 169 * 32);
    mn_linear_bwd(ws, a->col1, p->conv1_w, a->a1, g->conv1_w, g->conv1_b, NULL, B * 676, 9, 32);
    READY(conv1_w, conv1_b, 32);
#undef READY
}

void mn_backward(const struct mn_params *p, const struct mn_params *g, struct mn_acts *a, int B)
{
    mn_backward_ready(p, g, a, B, NULL, NULL);
}

/* ---- Adam ---- */

void mn_adam_step(struct mn_adam *opt, float *p, const float *g, float *m, float *v, size_t n)
{
    opt->t++;
    double t = (double)opt->t;
    float lr_t = (float)(opt->lr * sqrt(1.0 - pow(opt->beta2, t)) / (1.0 - pow(opt->beta1, t)));
    float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= lr_t * m[i] / (sqrtf(v[i]) + eps);
    }
}

void mn_shuffle(uint32_t *perm, uint32_t n, uint64_t *rng)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(mn_rng_next(rng) % i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
