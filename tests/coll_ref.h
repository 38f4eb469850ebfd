/* coll_ref.h: the inputs and the naive reference that every collective correctness test
 * checks against (tests/unit/test_coll.c, test_staged.c, tests/progs/coll_sweep.c,
 * cuda_check.c).
 *
 * Rank r's element i is val(r, i): small integers, so sums, products, mins and maxes are exact
 * in every dtype (products of +-1 and 2, wrapped to 8 bits for uint8), and the expected result
 * is the combination over ranks in double, rounded once to the dtype. BT_AVG rounds the way
 * the library promises: float types divide once in float32 (float64 in double), integer types
 * truncate toward zero. float16 is stored through the compiler's _Float16, an implementation
 * independent of the library's converters.
 *
 * Also the helpers those tests share: short dtype and op names for messages, and a
 * first-failure recorder for rank threads (only a rank's first failure is kept).
 */
#ifndef BT_TESTS_COLL_REF_H
#define BT_TESTS_COLL_REF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "baton.h"

/* Short names for messages, indexed by bt_dtype and bt_op. */
static const char *const dtn[] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8"};
static const char *const opn[] = {"sum", "prod", "min", "max", "avg"};

/* Records a printf-style failure in buf[cap] unless it holds one already. */
static inline void __attribute__((format(printf, 3, 4), unused))
first_fail(char *buf, size_t cap, const char *fmt, ...)
{
    if (buf[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}
/* first_fail into a rank context's fail[] array. */
#define failf(x, ...) first_fail((x)->fail, sizeof((x)->fail), __VA_ARGS__)

static inline double val(int rank, size_t i, bt_dtype dt, bt_op op)
{
    if (op == BT_PROD) {
        double v = ((size_t)rank + i) % 3 == 0 ? 2 : 1;
        if (dt != BT_UINT8 && ((size_t)rank * 7 + i) % 5 == 0)
            v = -v;
        return v;
    }
    double v = (double)(((size_t)rank * 31 + i * 7) % 17);
    return dt == BT_UINT8 ? v : v - 8;
}

/* float32 -> bfloat16, round to nearest even (no NaN among the test values). */
static inline uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Stores v as dtype at p[i]. */
static inline void put(void *p, size_t i, bt_dtype dt, double v)
{
    float f = (float)v;
    switch (dt) {
    case BT_FLOAT32: ((float *)p)[i] = f; break;
    case BT_FLOAT64: ((double *)p)[i] = v; break;
    case BT_FLOAT16: {
        _Float16 h = (_Float16)f;
        memcpy((uint16_t *)p + i, &h, 2);
        break;
    }
    case BT_BFLOAT16: ((uint16_t *)p)[i] = to_bf16(f); break;
    case BT_INT32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break;
    case BT_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
    default: ((uint8_t *)p)[i] = (uint8_t)(int64_t)v; break;
    }
}

static inline double combine(bt_op op, double a, double b)
{
    switch (op) {
    case BT_PROD: return a * b;
    case BT_MIN: return a < b ? a : b;
    case BT_MAX: return a > b ? a : b;
    default: return a + b;
    }
}

/* The expected value of element i over n ranks, stored as dtype into out[j]. */
static inline void expect(void *out, size_t j, size_t i, int n, bt_dtype dt, bt_op op)
{
    double acc = val(0, i, dt, op);
    for (int r = 1; r < n; r++)
        acc = combine(op, acc, val(r, i, dt, op));
    if (dt == BT_UINT8 && op == BT_PROD)
        acc = (double)((int64_t)acc & 0xff);
    if (op == BT_AVG) {
        if (dt == BT_FLOAT64)
            acc = acc / n;
        else if (dt == BT_FLOAT32 || dt == BT_FLOAT16 || dt == BT_BFLOAT16)
            acc = (double)((float)acc / (float)n);
        else
            acc = (double)((int64_t)acc / n);
    }
    put(out, j, dt, acc);
}

/* Rank rank's input: count elements of val(rank, i). */
static inline void fill(void *p, size_t count, int rank, bt_dtype dt, bt_op op)
{
    for (size_t i = 0; i < count; i++)
        put(p, i, dt, val(rank, i, dt, op));
}

#endif
