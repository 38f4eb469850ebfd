/* gemm.c: single-precision matrix product for the CNN, C [+]= A B with A and B given by
 * strides, so one routine serves the forward (NN), the input gradient (NT) and the weight
 * gradient (TN) without materialising any transpose.
 *
 * The algorithm is the BLIS/GotoBLAS one (Goto & van de Geijn, "Anatomy of high-performance
 * matrix multiplication", 2008), cut down to one thread:
 *   for each NC-wide column block of B and C:
 *     for each KC-deep slice of K:
 *       pack B (KC x NC) into NR-wide panels, k-major: each k holds NR consecutive floats
 *       for each MC-tall row block of A:
 *         pack A (MC x KC) into MR-tall panels, k-major: each k holds MR consecutive floats
 *         for each MR x NR tile of C: the micro-kernel runs over the KC slice with the tile in
 *         registers (MR*NR/16 vector accumulators), one broadcast of A and NR/16 loads of B
 *         per row and k, and adds the tile into C once at the end.
 * Edges are packed with zeros, so the micro-kernel always does a full tile; a partial tile
 * goes through a small buffer. The kernel is written once with GCC vector extensions and
 * compiled three times (AVX-512, AVX2+FMA, generic); the CPU picks at first use.
 * No allocation happens here: the packing space comes from a struct mn_gemm_ws.
 */
#include <stdlib.h>
#include <string.h>

#include "mnist.h"

#define MR MN_GEMM_MR
#define NR MN_GEMM_NR
#define MC MN_GEMM_MC
#define KC MN_GEMM_KC
#define NC MN_GEMM_NC

_Static_assert(NR == 32, "the micro-kernel holds a row of the tile in two 16-float vectors");
_Static_assert(MC % MR == 0 && NC % NR == 0, "blocks are whole panels");

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4))); /* unaligned access */

int mn_gemm_ws_init(struct mn_gemm_ws *ws)
{
    ws->apack = aligned_alloc(64, sizeof(float) * MC * KC);
    ws->bpack = aligned_alloc(64, sizeof(float) * KC * NC);
    if (!ws->apack || !ws->bpack) {
        mn_gemm_ws_free(ws);
        return -1;
    }
    return 0;
}

void mn_gemm_ws_free(struct mn_gemm_ws *ws)
{
    free(ws->apack);
    free(ws->bpack);
    ws->apack = ws->bpack = NULL;
}

/* ---- the micro-kernel: tile (MR x NR) = sum over k of a[k*MR + i] * b[k*NR + j] ---- */

static inline __attribute__((always_inline)) void
kernel_body(int kc, const float *restrict a, const float *restrict b, float *restrict tile)
{
    v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v16 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        v16 b0 = *(const v16 *)b, b1 = *(const v16 *)(b + 16);
        c00 += a[0] * b0;
        c01 += a[0] * b1;
        c10 += a[1] * b0;
        c11 += a[1] * b1;
        c20 += a[2] * b0;
        c21 += a[2] * b1;
        c30 += a[3] * b0;
        c31 += a[3] * b1;
        c40 += a[4] * b0;
        c41 += a[4] * b1;
        c50 += a[5] * b0;
        c51 += a[5] * b1;
    }
    v16 *t = (v16 *)tile;
    t[0] = c00;
    t[1] = c01;
    t[2] = c10;
    t[3] = c11;
    t[4] = c20;
    t[5] = c21;
    t[6] = c30;
    t[7] = c31;
    t[8] = c40;
    t[9] = c41;
    t[10] = c50;
    t[11] = c51;
}

__attribute__((target("avx512f,fma"))) static void kernel_avx512(int kc, const float *a,
                                                                 const float *b, float *tile)
{
    kernel_body(kc, a, b, tile);
}
/* AVX2 has 16 256-bit registers: kernel_body's 12 accumulators of 16 floats would be 24 of
 * them, and the spills made the whole trainer ~40x slower than on AVX-512 (78 images/s on one
 * rank). So this kernel runs the tile as two halves of 16 columns, each 6 rows x 2 8-float
 * accumulators (12 registers, plus 2 for B and 1 for the broadcast of A): the same packed
 * panels, the same sums in the same order per element, so results are bit-identical. */
typedef float v8 __attribute__((vector_size(32)));

__attribute__((target("avx2,fma"))) static void half_avx2(int kc, const float *a, const float *b,
                                                          float *tile, int off)
{
    v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        v8 b0 = *(const v8 *)(b + off), b1 = *(const v8 *)(b + off + 8);
        c00 += a[0] * b0;
        c01 += a[0] * b1;
        c10 += a[1] * b0;
        c11 += a[1] * b1;
        c20 += a[2] * b0;
        c21 += a[2] * b1;
        c30 += a[3] * b0;
        c31 += a[3] * b1;
        c40 += a[4] * b0;
        c41 += a[4] * b1;
        c50 += a[5] * b0;
        c51 += a[5] * b1;
    }
    const v8 c[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; i++) {
        *(v8 *)(tile + i * NR + off) = c[i][0];
        *(v8 *)(tile + i * NR + off + 8) = c[i][1];
    }
}

__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *a, const float *b,
                                                            float *tile)
{
    half_avx2(kc, a, b, tile, 0);
    half_avx2(kc, a, b, tile, 16);
}
static void kernel_generic(int kc, const float *a, const float *b, float *tile)
{
    kernel_body(kc, a, b, tile);
}

typedef void (*kernel_fn)(int, const float *, const float *, float *);

static kernel_fn pick_kernel(const char **name)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *name = "avx512";
        return kernel_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return kernel_avx2;
    }
    *name = "generic";
    return kernel_generic;
}

static const char *kernel_name;
static kernel_fn kernel_ptr;

static kernel_fn kernel(void)
{
    kernel_fn k = __atomic_load_n(&kernel_ptr, __ATOMIC_ACQUIRE);
    if (!k) { /* racing threads pick the same function: harmless */
        const char *name;
        k = pick_kernel(&name);
        __atomic_store_n(&kernel_name, name, __ATOMIC_RELAXED);
        __atomic_store_n(&kernel_ptr, k, __ATOMIC_RELEASE);
    }
    return k;
}

const char *mn_gemm_kernel_name(void)
{
    kernel();
    return kernel_name;
}

/* ---- packing ---- */

/* B rows [k0, k0+kc), columns [j0, j0+nc) into NR-wide panels, zero-padded to whole panels. */
static void pack_b(float *restrict dst, const float *b, long rsb, long csb, int k0, int kc, int j0,
                   int nc)
{
    for (int jp = 0; jp < nc; jp += NR) {
        int w = nc - jp < NR ? nc - jp : NR;
        for (int k = 0; k < kc; k++, dst += NR) {
            const float *src = b + (long)(k0 + k) * rsb + (long)(j0 + jp) * csb;
            if (csb == 1) {
                memcpy(dst, src, sizeof(float) * w);
            } else {
                for (int j = 0; j < w; j++)
                    dst[j] = src[j * csb];
            }
            for (int j = w; j < NR; j++)
                dst[j] = 0.0f;
        }
    }
}

/* A rows [i0, i0+mc), columns [k0, k0+kc) into MR-tall panels, zero-padded. */
static void pack_a(float *restrict dst, const float *a, long rsa, long csa, int i0, int mc, int k0,
                   int kc)
{
    for (int ip = 0; ip < mc; ip += MR) {
        int h = mc - ip < MR ? mc - ip : MR;
        const float *src = a + (long)(i0 + ip) * rsa + (long)k0 * csa;
        if (csa == 1 && h == MR) { /* row-major A: gather MR rows, k at a time */
            for (int k = 0; k < kc; k++, dst += MR)
                for (int i = 0; i < MR; i++)
                    dst[i] = src[i * rsa + k];
            continue;
        }
        for (int k = 0; k < kc; k++, dst += MR) {
            for (int i = 0; i < h; i++)
                dst[i] = src[i * rsa + k * csa];
            for (int i = h; i < MR; i++)
                dst[i] = 0.0f;
        }
    }
}

/* Adds (or stores, when first) an h x w corner of a computed tile into C. */
static void store_tile(const float *tile, float *c, long ldc, int h, int w, int first)
{
    for (int i = 0; i < h; i++) {
        float *restrict ci = c + i * ldc;
        const float *restrict ti = tile + i * NR;
        if (first) {
            for (int j = 0; j < w; j++)
                ci[j] = ti[j];
        } else {
            for (int j = 0; j < w; j++)
                ci[j] += ti[j];
        }
    }
}

/* The MC x NC block of C at (i0, j0) from the packed panels. */
static void macro_block(kernel_fn kfn, const float *ap, const float *bp, int mc, int nc, int kc,
                        float *c, long ldc, int first)
{
    float tile[MR * NR] __attribute__((aligned(64)));
    for (int jp = 0; jp < nc; jp += NR) {
        int w = nc - jp < NR ? nc - jp : NR;
        for (int ip = 0; ip < mc; ip += MR) {
            int h = mc - ip < MR ? mc - ip : MR;
            kfn(kc, ap + (long)ip * kc, bp + (long)jp * kc, tile);
            store_tile(tile, c + ip * ldc + jp, ldc, h, w, first);
        }
    }
}

void mn_gemm(struct mn_gemm_ws *ws, int M, int N, int K, const float *a, long rsa, long csa,
             const float *b, long rsb, long csb, float *c, long ldc, int accumulate)
{
    kernel_fn kfn = kernel();
    if (K == 0 && !accumulate) {
        for (int i = 0; i < M; i++)
            memset(c + i * ldc, 0, sizeof(float) * N);
        return;
    }
    for (int j0 = 0; j0 < N; j0 += NC) {
        int nc = N - j0 < NC ? N - j0 : NC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            int first = !accumulate && k0 == 0;
            pack_b(ws->bpack, b, rsb, csb, k0, kc, j0, nc);
            for (int i0 = 0; i0 < M; i0 += MC) {
                int mc = M - i0 < MC ? M - i0 : MC;
                pack_a(ws->apack, a, rsa, csa, i0, mc, k0, kc);
                macro_block(kfn, ws->apack, ws->bpack, mc, nc, kc, c + i0 * ldc + j0, ldc, first);
            }
        }
    }
}

void mn_gemm_ref(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                 long csb, float *c, long ldc, int accumulate)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = accumulate ? c[i * ldc + j] : 0.0;
            for (int k = 0; k < K; k++)
                s += (double)a[i * rsa + k * csa] * b[k * rsb + j * csb];
            c[i * ldc + j] = (float)s;
        }
}
