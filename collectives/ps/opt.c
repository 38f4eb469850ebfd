/* ps/opt.c: the optimizers a parameter server applies (SGD, momentum, Adam), their checks and
 * their wire encoding. The formulas are in include/baton_ps.h; they are PyTorch's (momentum
 * without dampening, Adam with bias correction). No I/O here. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "collectives/ps/ps.h"

void bt_ps_opt_default(bt_ps_opt *o)
{
    if (!o)
        return;
    *o = (bt_ps_opt){.kind = BT_PS_SGD,
                     .lr = 0.01f,
                     .momentum = 0.9f,
                     .beta1 = 0.9f,
                     .beta2 = 0.999f,
                     .eps = 1e-8f,
                     .consistency = BT_PS_SYNC,
                     .staleness = 0};
}

int bt_ps_consistency_parse(const char *s, bt_ps_opt *o)
{
    if (!s || !o)
        return BT_ERR_INVALID_ARG;
    if (!strcmp(s, "sync") || !strcmp(s, "async")) {
        o->consistency = s[0] == 's' ? BT_PS_SYNC : BT_PS_ASYNC;
        o->staleness = 0;
        return BT_OK;
    }
    char *end;
    if (strncmp(s, "bounded:", 8) || s[8] < '0' || s[8] > '9')
        return BT_ERR_INVALID_ARG;
    unsigned long v = strtoul(s + 8, &end, 10);
    if (*end || v > 1000000)
        return BT_ERR_INVALID_ARG;
    o->consistency = BT_PS_BOUNDED;
    o->staleness = (unsigned)v;
    return BT_OK;
}

static void sgd(const bt_ps_opt *o, float *w, const float *g, size_t n, float scale)
{
    float a = o->lr * scale;
    for (size_t i = 0; i < n; i++)
        w[i] -= a * g[i];
}

static void momentum(const bt_ps_opt *o, float *w, float *m, const float *g, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        m[i] = o->momentum * m[i] + scale * g[i];
        w[i] -= o->lr * m[i];
    }
}

static void adam(const bt_ps_opt *o, float *w, float *m, float *v, const float *g, size_t n,
                 float scale, uint64_t t)
{
    float c1 = 1.0f - powf(o->beta1, (float)t), c2 = 1.0f - powf(o->beta2, (float)t);
    for (size_t i = 0; i < n; i++) {
        float gi = scale * g[i];
        m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * gi;
        v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * gi * gi;
        w[i] -= o->lr * (m[i] / c1) / (sqrtf(v[i] / c2) + o->eps);
    }
}

void bt__ps_opt_apply(const bt_ps_opt *o, float *w, float *m, float *v, const float *g, size_t n,
                      float scale, uint64_t t)
{
    switch (o->kind) {
    case BT_PS_MOMENTUM: momentum(o, w, m, g, n, scale); break;
    case BT_PS_ADAM: adam(o, w, m, v, g, n, scale, t ? t : 1); break;
    default: sgd(o, w, g, n, scale); break;
    }
}

int bt__ps_opt_check(const bt_ps_opt *o, char *why, size_t cap)
{
    const char *bad = NULL;
    if ((unsigned)o->kind > BT_PS_ADAM)
        bad = "optimizer kind is not SGD, momentum or Adam";
    else if ((unsigned)o->consistency > BT_PS_BOUNDED)
        bad = "consistency is not sync, async or bounded";
    else if (!isfinite(o->lr) || o->lr < 0)
        bad = "lr must be a finite number >= 0";
    else if (o->kind == BT_PS_MOMENTUM && !(o->momentum >= 0 && o->momentum < 1))
        bad = "momentum must be in [0, 1)";
    else if (o->kind == BT_PS_ADAM && !(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 &&
                                        o->beta2 < 1 && o->eps > 0 && isfinite(o->eps)))
        bad = "Adam needs beta1, beta2 in [0, 1) and eps > 0";
    if (bad)
        snprintf(why, cap, "%s", bad);
    return bad ? BT_ERR_INVALID_ARG : BT_OK;
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void bt__ps_opt_put(struct bt__wbuf *b, const bt_ps_opt *o)
{
    bt__wbuf_u32(b, (uint32_t)o->kind);
    bt__wbuf_u32(b, (uint32_t)o->consistency);
    bt__wbuf_u32(b, o->staleness);
    bt__wbuf_u32(b, f2u(o->lr));
    bt__wbuf_u32(b, f2u(o->momentum));
    bt__wbuf_u32(b, f2u(o->beta1));
    bt__wbuf_u32(b, f2u(o->beta2));
    bt__wbuf_u32(b, f2u(o->eps));
}

void bt__ps_opt_get(struct bt__rbuf *r, bt_ps_opt *o)
{
    o->kind = (bt_ps_optimizer)bt__rbuf_u32(r);
    o->consistency = (bt_ps_consistency)bt__rbuf_u32(r);
    o->staleness = bt__rbuf_u32(r);
    o->lr = u2f(bt__rbuf_u32(r));
    o->momentum = u2f(bt__rbuf_u32(r));
    o->beta1 = u2f(bt__rbuf_u32(r));
    o->beta2 = u2f(bt__rbuf_u32(r));
    o->eps = u2f(bt__rbuf_u32(r));
}

void bt__ps_opt_str(const bt_ps_opt *o, char *out, size_t cap)
{
    static const char *const kinds[] = {"sgd", "momentum", "adam"};
    const char *k = (unsigned)o->kind <= BT_PS_ADAM ? kinds[o->kind] : "?";
    if (o->consistency == BT_PS_BOUNDED)
        snprintf(out, cap, "%s(lr=%g) bounded:%u", k, (double)o->lr, o->staleness);
    else
        snprintf(out, cap, "%s(lr=%g) %s", k, (double)o->lr,
                 o->consistency == BT_PS_ASYNC ? "async" : "sync");
}
