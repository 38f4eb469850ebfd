/* reduce.h: element-wise reduction kernels and the float16/bfloat16 conversions.
 *
 * Every kernel works on whole elements of one dtype. float16 and bfloat16 are widened to
 * float32, reduced in float32 and rounded back to nearest-even once at the end. BT_AVG is not
 * an op here: callers reduce with BT_SUM and divide once with bt__reduce_div(), so that an
 * average is rounded exactly once whatever the algorithm. Integer sums and products wrap
 * (two's complement); min and max of floats are `a < b ? a : b` in the order given, so a
 * fixed order of operands gives the same bits on every rank.
 */
#ifndef BT_COLLECTIVES_REDUCE_H
#define BT_COLLECTIVES_REDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "baton.h"

/* dst[i] = a[i] op b[i] for i < n. dst may be a or b (exactly, not partially overlapping). */
void bt__reduce2(bt_dtype dtype, bt_op op, void *dst, const void *a, const void *b, size_t n);

/* dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[nsrc-1][i], left to right, then divided by
 * div when div > 1 (the average). float16/bfloat16 accumulate in float32 across all sources and
 * are rounded once. dst may be one of the sources. nsrc >= 1. */
void bt__reduce_n(bt_dtype dtype, bt_op op, void *dst, const void *const *srcs, int nsrc, size_t n,
                  int div);

/* buf[i] = buf[i] / div: float types divide (rounded once), integer types truncate toward 0. */
void bt__reduce_div(bt_dtype dtype, void *buf, size_t n, int div);

/* Conversions, round-to-nearest-even, NaN kept NaN (quiet), infinities and subnormals exact. */
void bt__f16_to_f32(float *dst, const uint16_t *src, size_t n);
void bt__f32_to_f16(uint16_t *dst, const float *src, size_t n);
void bt__bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void bt__f32_to_bf16(uint16_t *dst, const float *src, size_t n);

/* float16/bfloat16 (chosen by dt) to float32 and back, n elements. */
void bt__half_widen(bt_dtype dt, float *dst, const void *src, size_t n);
void bt__half_narrow(bt_dtype dt, void *dst, const float *src, size_t n);
static inline int bt__is_half(bt_dtype dt)
{
    return dt == BT_FLOAT16 || dt == BT_BFLOAT16;
}

/* Scalar reference conversions (also used by tests). */
float bt__half_to_float(uint16_t h);
uint16_t bt__float_to_half(float f);

#endif
