/* baton_ps.h: the parameter-server client of libbaton (after ps-lite/BytePS and Li et al.,
 * "Scaling Distributed Machine Learning with the Parameter Server", OSDI 2014).
 *
 * Keys are named float32 tensors held by the ps servers (`baton ps`, or what `baton run`
 * starts for `--ps N` and for TFJob ps pods). A worker opens a client from its env, declares
 * its keys with their initial values and optimizer, then pushes gradients and pulls values.
 * The servers apply the optimizer; the worker never holds optimizer state.
 *
 *   bt_ps *ps;  bt_ps_open(&ps);
 *   bt_ps_opt o; bt_ps_opt_default(&o); o.kind = BT_PS_ADAM; o.lr = 1e-3f;
 *   bt_ps_init(ps, "fc1.w", w, n, &o);      // first declaration wins, later ones must match
 *   for (step...) { grad(w, g); bt_ps_push(ps, "fc1.w", g, n); bt_ps_pull(ps, "fc1.w", w, n); }
 *   bt_ps_close(ps);                        // servers exit 0 once every worker closed
 *
 * Exactly once: a push whose reply was lost is resent, and the server acknowledges a resent
 * push without applying it again (each push carries a per-worker sequence number).
 * Generations: the client says its BATON_RESTART_COUNT; the servers serve every generation of
 * the job (a newer one replaces the older, keeping the keys' values and optimizer state) and
 * refuse a worker of an older one (BT_ERR_INVALID_USAGE, "a stale worker").
 *
 * Steps: the server counts each worker's pushes per key. In sync mode push number t of every
 * worker is averaged into update t, applied once, and a pull that follows a worker's push
 * number t waits until update t is applied. Async applies each push on arrival; bounded:S
 * blocks a push of a worker that is more than S pushes ahead of the slowest worker.
 *
 * Errors: every call returns a code from baton.h; bt_ps_last_error() has the detail (key,
 * piece, server, worker). Bad input (unknown key, shape mismatch) leaves the handle usable;
 * a server that stayed unreachable for BATON_TIMEOUT (BT_ERR_REMOTE) or a failed sync step
 * (BT_ERR_TIMEOUT, naming the missing workers) is sticky: every later call returns it.
 * A handle is used by one thread at a time. Buffers are the caller's; none is kept.
 */
#ifndef BATON_PS_H
#define BATON_PS_H

#include <stddef.h>

#include "baton.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bt_ps bt_ps;

typedef enum { BT_PS_SGD = 0, BT_PS_MOMENTUM = 1, BT_PS_ADAM = 2 } bt_ps_optimizer;
typedef enum { BT_PS_SYNC = 0, BT_PS_ASYNC = 1, BT_PS_BOUNDED = 2 } bt_ps_consistency;

/* Optimizer and consistency of a key, fixed by its first declaration.
 *   SGD:      w -= lr * g
 *   momentum: v = momentum * v + g;  w -= lr * v
 *   Adam:     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr * m^ / (sqrt(v^) + eps)
 *             with m^ = m / (1 - b1^t), v^ = v / (1 - b2^t), t = updates applied so far + 1.
 * In sync mode g is the average of the workers' gradients for the step. */
typedef struct {
    bt_ps_optimizer kind;
    float lr, momentum, beta1, beta2, eps;
    bt_ps_consistency consistency;
    unsigned staleness; /* S of bounded:S (pushes a worker may run ahead of the slowest) */
} bt_ps_opt;

/* SGD, lr 0.01, momentum 0.9, beta1 0.9, beta2 0.999, eps 1e-8, sync. */
BT_API void bt_ps_opt_default(bt_ps_opt *opt);
/* Sets opt's consistency from "sync", "async" or "bounded:S"; BT_ERR_INVALID_ARG otherwise. */
BT_API int bt_ps_consistency_parse(const char *text, bt_ps_opt *opt);

/* Opens a client from the env `baton run` sets: BATON_RDZV, BATON_TOKEN, BATON_RANK,
 * BATON_WORLD_SIZE (workers), BATON_RESTART_COUNT, and BATON_PS_SERVERS (how many servers to
 * wait for in the store, default 1). Waits up to BATON_TIMEOUT for the servers to publish
 * their addresses. The caller owns *out until bt_ps_close(). */
BT_API int bt_ps_open(bt_ps **out);

/* Declares key name (at most 255 bytes) with count floats of initial value init (copied).
 * opt NULL means bt_ps_opt_default(). The first declaration of a name wins: a later one with
 * the same count adopts the stored value; another count is BT_ERR_INVALID_ARG. */
BT_API int bt_ps_init(bt_ps *ps, const char *name, const float *init, size_t count,
                      const bt_ps_opt *opt);
/* Declares n keys at once; they are placed on the servers largest first. Every worker must
 * declare the same keys in the same order for the placement to be balanced (it is always
 * consistent: the first placement of a key is kept in the store). */
BT_API int bt_ps_init_many(bt_ps *ps, size_t n, const char *const *names, const float *const *inits,
                           const size_t *counts, const bt_ps_opt *opt);

/* Pushes count floats of gradient for a declared key. */
BT_API int bt_ps_push(bt_ps *ps, const char *name, const float *grad, size_t count);
/* Pulls the current value of a key into out (count floats). */
BT_API int bt_ps_pull(bt_ps *ps, const char *name, float *out, size_t count);
/* The same for n keys, with one round trip per server. */
BT_API int bt_ps_push_many(bt_ps *ps, size_t n, const char *const *names, const float *const *grads,
                           const size_t *counts);
BT_API int bt_ps_pull_many(bt_ps *ps, size_t n, const char *const *names, float *const *outs,
                           const size_t *counts);

/* Says goodbye to every server and frees ps (NULL is accepted). Servers exit 0 once every
 * worker has closed. Returns the handle's sticky error, if any. */
BT_API int bt_ps_close(bt_ps *ps);
/* Like bt_ps_close, and tells the servers the job is done: they exit 0 now (the chief's call). */
BT_API int bt_ps_shutdown(bt_ps *ps);
/* Like bt_ps_close, but this worker only leaves its generation of an elastic job (it was asked
 * to stop, e.g. SIGTERM before the job re-forms): the servers do not count it as closed and
 * serve the next generation, whose workers find them and their state. */
BT_API int bt_ps_leave(bt_ps *ps);

/* Detail of the last error on ps (or of the last failed bt_ps_open when ps is NULL); "" when
 * none. Valid until the next call on ps. */
BT_API const char *bt_ps_last_error(const bt_ps *ps);

#ifdef __cplusplus
}
#endif
#endif /* BATON_PS_H */
