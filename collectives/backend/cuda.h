/* cuda.h: device (CUDA) buffers in the collectives: where a call's buffers live, and the
 * device path (NCCL, or the staged copy through pinned host memory). Built from cuda.c when
 * CUDA is found (BT_HAVE_CUDA); without it every buffer is a host buffer. The NCCL backend is
 * backend/nccl.c (BT_HAVE_NCCL), the staged pipeline staged.c (built always).
 */
#ifndef BT_COLLECTIVES_CUDA_H
#define BT_COLLECTIVES_CUDA_H

#include "collectives/backend/backend.h"

#if defined(BT_HAVE_CUDA)
/* Called once when a communicator is made (after its host path is set up): looks for CUDA
 * devices and checks BATON_BACKEND=nccl against what is there; err gets a one-line reason. */
int bt__device_init(struct bt_comm *c, struct bt__err *err);
/* Runs call a on the device path when its buffers are CUDA device memory: sets *handled to 1
 * and returns the result. Sets *handled to 0 (and returns BT_OK) when they are host memory.
 * Buffers that mix host and device memory fail the call with BT_ERR_INVALID_ARG. */
int bt__device_run(struct bt_comm *c, const struct bt__call *a, int *handled);
/* Frees what the device path hung on c (NCCL communicator, pinned buffers). NULL-safe. */
void bt__device_destroy(struct bt_comm *c);

/* ---- between cuda.c and backend/nccl.c ---- */
#if defined(BT_HAVE_NCCL)
#define BT__NCCL_BUILT 1
/* Makes c's NCCL communicator on CUDA device dev and sets c->nccl and c->nccl_state. It is
 * collective: every rank calls it in the same collective call (the first one on device
 * buffers). The ncclUniqueId goes through c->store when there is one, else through a host
 * broadcast. Errors are set on c (bt__comm_fail). */
int bt__nccl_create(struct bt_comm *c, int dev);
#else
#define BT__NCCL_BUILT 0
static inline int bt__nccl_create(struct bt_comm *c, int dev)
{
    (void)dev;
    return bt__err_set(&c->err, BT_ERR_INTERNAL, "this libbaton was built without NCCL");
}
#endif
#else
static inline int bt__device_init(struct bt_comm *c, struct bt__err *err)
{
    if (c->backend_choice == BT_BACKEND_NCCL)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "BATON_BACKEND=nccl but this libbaton was built without CUDA; hint: "
                           "rebuild where CUDA and NCCL are found, or unset BATON_BACKEND");
    return BT_OK;
}
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
