/* staged.h: the staged path for device buffers: copied to host memory by segment, reduced
 * by the host path (native shm/TCP or Open MPI), copied back, with the copies of neighbouring
 * segments overlapping the host collective (staged.c).
 *
 * The pipeline never calls CUDA itself: it drives a copy engine, a small table of functions
 * (start an asynchronous copy, wait for a slot's copies, allocate staging memory). cuda.c
 * provides the CUDA engine (cudaMemcpyAsync on two streams, one event per slot, pinned
 * memory from cudaHostAlloc); tests provide a memcpy engine that runs the copies late, at the
 * wait, so a missing wait shows up as a wrong result. This file builds with or without CUDA.
 */
#ifndef BT_COLLECTIVES_STAGED_H
#define BT_COLLECTIVES_STAGED_H

#include <stddef.h>

#include "collectives/backend/backend.h"

#define BT_STAGE_SLOTS 3 /* host buffers in flight: segment i uses slot i % 3 */

/* Every function gets the engine's ctx. Errors are recorded on c with bt__comm_fail() and
 * their code returned. */
struct bt__copy_engine {
    void *ctx;
    /* Starts copying rows x width bytes, row r from src + r * spitch to dst + r * dpitch
     * (pitches are unused when rows == 1). to_host: device to host, else host to device.
     * The copy belongs to slot; it may run at any time until wait(slot) returns. */
    int (*copy)(struct bt_comm *c, void *ctx, int slot, int to_host, void *dst, size_t dpitch,
                const void *src, size_t spitch, size_t width, size_t rows);
    /* Returns when every copy started on slot so far has finished. */
    int (*wait)(struct bt_comm *c, void *ctx, int slot);
    /* bytes of host memory the copies can use (pinned, for CUDA); NULL with c's error set. */
    void *(*host_alloc)(struct bt_comm *c, void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *p); /* accepts NULL */
};

/* One communicator's staging state: the engine and its host buffers, kept between calls
 * (allocating pinned memory is slow, so it is done once and grown only when needed). */
struct bt__stage {
    struct bt__copy_engine eng;
    size_t seg_bytes;  /* bytes per segment (all its rows); 0: BATON_STAGE_BYTES */
    char *host;        /* BT_STAGE_SLOTS slots x 2 halves (in, out) of half_bytes each */
    size_t half_bytes; /* bytes */
};

/* Runs the checked call a, whose buffers the engine can copy (device memory for the CUDA
 * engine), through host buffers and bt__host_run(). Every rank of the job must take this path
 * for the call, with the same segment size (BATON_STAGE_BYTES). */
int bt__staged_run(struct bt_comm *c, struct bt__stage *st, const struct bt__call *a);

/* Frees st's host buffers (st itself is the caller's). Call only when no copy is in flight. */
void bt__stage_free(struct bt__stage *st);

/* BATON_STAGE_BYTES: bytes per staged segment (default 4 MiB; must be the same on every rank). */
size_t bt__stage_bytes(void);

#endif
