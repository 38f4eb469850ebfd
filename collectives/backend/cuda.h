/* cuda.h: device (CUDA) buffers in the collectives, as the core sees them: where a call's
 * buffers live (decided before dispatch, coll.c), and the device path that runs a call whose
 * buffers are on a GPU. The CUDA work is in the plugin libbaton-cuda.so (backend/cuda.c),
 * loaded at bt_init; backend/device.c is the core's side. Without the plugin, or without a
 * CUDA device, every buffer is a host buffer and no CUDA call is made.
 *
 * The device path is NCCL (plugin libbaton-nccl.so, backend/nccl.c) when every rank has a GPU
 * of its own, else the staged copy through pinned host memory (backend/staged.c, in the core,
 * with the CUDA copy engine of the plugin).
 */
#ifndef BT_COLLECTIVES_BACKEND_CUDA_H
#define BT_COLLECTIVES_BACKEND_CUDA_H

#include <stddef.h>

#include "collectives/backend/backend.h"

/* Called once when a communicator is made (after its host path is set up): loads the CUDA
 * plugin and lets it count the devices and apply BATON_GPU. Only BATON_BACKEND=nccl makes a
 * missing plugin or device an error (BT_ERR_INVALID_USAGE with one line in err). */
int bt__device_init(struct bt_comm *c, struct bt__err *err);
/* *dev: the GPU that holds call a's buffers, or -1 when they are host memory (always -1 with
 * no device path). Buffers split between host and device are BT_ERR_INVALID_ARG on c. */
int bt__device_locate(struct bt_comm *c, const struct bt__call *a, int *dev);
/* Runs call a, whose buffers are on GPU dev, on the device path. */
int bt__device_run(struct bt_comm *c, const struct bt__call *a, int dev);
/* Frees what the device path hung on c (NCCL communicator, pinned buffers). NULL-safe. */
void bt__device_destroy(struct bt_comm *c);

/* ---- the NCCL plugin, for the CUDA plugin (backend/plugin.c) ---- */
/* 1 when libbaton-nccl.so can be loaded; else 0 with the reason in why. */
int bt__nccl_available(char *why, size_t cap);
/* Makes c's NCCL communicator on CUDA device dev and sets c->nccl and c->nccl_state. It is
 * collective: every rank calls it on its first device call. Errors are sticky on c. */
int bt__nccl_create(struct bt_comm *c, int dev);
/* When parent has an NCCL communicator: ncclCommSplit of it (collective over every rank of
 * parent; color < 0 is NCCL_SPLIT_NOCOLOR and child is then NULL), giving child its NCCL
 * communicator on the same GPU, so its first device call makes none. Errors are sticky on
 * parent. */
int bt__nccl_split(struct bt_comm *parent, struct bt_comm *child, int color, int key);

#endif
