/* cuda.h: device (CUDA) buffers in the collectives: where a call's buffers live, and the
 * device path (NCCL, or the staged copy through pinned host memory). Built from cuda.c when
 * CUDA is found (BT_HAVE_CUDA); without it every buffer is a host buffer.
 */
#ifndef BT_COLLECTIVES_CUDA_H
#define BT_COLLECTIVES_CUDA_H

#include "collectives/backend.h"

#if defined(BT_HAVE_CUDA)
/* Runs call a on the device path when its buffers are CUDA device memory: sets *handled to 1
 * and returns the result. Sets *handled to 0 (and returns BT_OK) when they are host memory.
 * Buffers that mix host and device memory fail the call with BT_ERR_INVALID_ARG. */
int bt__device_run(struct bt_comm *c, const struct bt__call *a, int *handled);
/* Frees what the device path hung on c (NCCL communicator, pinned buffers). NULL-safe. */
void bt__device_destroy(struct bt_comm *c);
#else
static inline int bt__device_run(struct bt_comm *c, const struct bt__call *a, int *handled)
{
    (void)c, (void)a;
    *handled = 0;
    return BT_OK;
}
static inline void bt__device_destroy(struct bt_comm *c)
{
    (void)c;
}
#endif

#endif
