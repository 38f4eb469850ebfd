/* backend/cuda.c: the CUDA plugin (libbaton-cuda.so, see plugin.h): which calls have device
 * buffers, and the device path they take. Built only when CUDA is found; the core loads it at
 * bt_init (backend/device.c), so libbaton itself never links libcudart.
 *
 * At bt_init (cuda_init, through bt__device_init) the process's CUDA devices are counted once; an
 * error (no driver, no device) counts as none and is logged at INFO. With none, c->cuda_state stays
 * NULL and the collective path makes no CUDA call at all: every buffer is host memory.
 *
 * With devices, each call's buffers (those the call touches on this rank) are looked up with
 * cudaPointerGetAttributes: device and managed memory are "device"; unregistered and
 * cudaHostAlloc'ed memory are host. All host: the host path runs the call. Mixed:
 * BT_ERR_INVALID_ARG. Device: the device path, chosen once, collectively, on the first call
 * with device buffers (every rank makes that call):
 *   NCCL    (backend/nccl.c) when its plugin loads, BATON_BACKEND is not baton, and every rank
 *           has a GPU of its own: the ranks allgather their GPU's UUID over the host path,
 *           since NCCL cannot put two ranks on one GPU
 *   staged  (staged.c, with the CUDA copy engine below) otherwise; with BATON_BACKEND=nccl a
 *           shared GPU is an error instead.
 * The GPU of the device path is the one that holds the first device buffers (the program's
 * choice; a later call with buffers elsewhere is an error). BATON_GPU, set by the launcher's
 * --bind, is made the current device at bt_init so that a program that never picks a device
 * allocates on its own GPU; without it bt_init leaves the current device (and any CUDA
 * context) alone.
 *
 * Ordering: baton's streams are blocking streams, so they start after work queued before them
 * on the legacy default stream. A program that fills its buffers on streams of its own must
 * synchronise them before the call. Every call returns with its results in recv.
 */
#include <cuda_runtime.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/backend/cuda.h"
#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "collectives/backend/staged.h"
#include "common/log.h"
#include "common/param.h"

/* ---- the process's devices, counted once ---- */

static struct {
    pthread_once_t once;
    int n;
    char why[192]; /* why there are none, when n == 0 */
} devices = {PTHREAD_ONCE_INIT, 0, ""};

static void count_devices(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(devices.why, sizeof(devices.why), "cudaGetDeviceCount returned %d (%s)", (int)e,
                 cudaGetErrorString(e));
        cudaGetLastError();
        n = 0;
    } else if (n == 0) {
        snprintf(devices.why, sizeof(devices.why), "cudaGetDeviceCount found no device");
    }
    devices.n = n;
}

static int device_count(const char **why)
{
    pthread_once(&devices.once, count_devices);
    *why = devices.why;
    return devices.n;
}

/* ---- errors ---- */

static int cuda_fail(struct bt_comm *c, cudaError_t e, const char *what)
{
    cudaGetLastError(); /* clears the error unless it is sticky */
    return bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: %s: %s: %s",
                         c->coll_name ? c->coll_name : "device path",
                         (unsigned long long)c->coll_seq, what, cudaGetErrorName(e),
                         cudaGetErrorString(e));
}

/* ---- the CUDA copy engine of the staged path ---- */

struct cuda_engine {
    int ready;
    cudaStream_t in, out;           /* device->host and host->device copies (blocking streams) */
    cudaEvent_t ev[BT_STAGE_SLOTS]; /* the last copy started on each slot */
};

struct bt__cuda {
    int dev;      /* GPU of the device path: that of the first device buffers; -1 before */
    int use_nccl; /* the device path is NCCL, else staged */
    struct cuda_engine eng;
    struct bt__stage stage;
};

static int ce_copy(struct bt_comm *c, void *ctx, int slot, int to_host, void *dst, size_t dpitch,
                   const void *src, size_t spitch, size_t width, size_t rows)
{
    struct cuda_engine *e = ctx;
    cudaStream_t s = to_host ? e->in : e->out;
    cudaError_t r = cudaSuccess;
    for (size_t i = 0; i < rows && r == cudaSuccess; i++)
        r = cudaMemcpyAsync((char *)dst + i * dpitch, (const char *)src + i * spitch, width,
                            cudaMemcpyDefault, s);
    if (r == cudaSuccess)
        r = cudaEventRecord(e->ev[slot], s);
    if (r != cudaSuccess)
        return cuda_fail(c, r, to_host ? "staging copy to host" : "staging copy to device");
    return BT_OK;
}

static void who_self(void *arg, char *out, size_t cap)
{
    snprintf(out, cap, "%d (a copy on its own GPU)", *(const int *)arg);
}

/* Polls the slot's event; bt__wait_tick bounds a GPU that never finishes by BATON_TIMEOUT. */
static int ce_wait(struct bt_comm *c, void *ctx, int slot)
{
    struct cuda_engine *e = ctx;
    struct bt__wait w;
    cudaError_t r = cudaEventQuery(e->ev[slot]);
    if (r == cudaErrorNotReady)
        bt__wait_start(c, &w);
    for (unsigned spins = 0; r == cudaErrorNotReady; spins++) {
        BT_CHECK(bt__wait_tick(c, &w, who_self, &c->rank));
        if (spins >= 64)
            sched_yield();
        r = cudaEventQuery(e->ev[slot]);
    }
    return r == cudaSuccess ? BT_OK : cuda_fail(c, r, "staging copy");
}

static void *ce_alloc(struct bt_comm *c, void *ctx, size_t bytes)
{
    void *p = NULL;
    (void)ctx;
    cudaError_t r = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (r != cudaSuccess) {
        cuda_fail(c, r, "cudaHostAlloc of staging memory");
        return NULL;
    }
    return p;
}

static void ce_free(void *ctx, void *p)
{
    (void)ctx;
    if (p)
        cudaFreeHost(p);
}

static void engine_close(struct cuda_engine *e)
{
    for (int k = 0; k < BT_STAGE_SLOTS; k++)
        if (e->ev[k])
            cudaEventDestroy(e->ev[k]);
    if (e->in)
        cudaStreamDestroy(e->in);
    if (e->out)
        cudaStreamDestroy(e->out);
    memset(e, 0, sizeof(*e));
}

/* Streams and events on the current device (the device path's). */
static int engine_open(struct bt_comm *c, struct cuda_engine *e)
{
    cudaError_t r = cudaStreamCreateWithFlags(&e->in, cudaStreamDefault);
    if (r == cudaSuccess)
        r = cudaStreamCreateWithFlags(&e->out, cudaStreamDefault);
    for (int k = 0; k < BT_STAGE_SLOTS && r == cudaSuccess; k++)
        r = cudaEventCreateWithFlags(&e->ev[k], cudaEventDisableTiming);
    if (r != cudaSuccess) {
        int rc = cuda_fail(c, r, "creating the staging streams");
        engine_close(e);
        return rc;
    }
    e->ready = 1;
    return BT_OK;
}

/* ---- bt_init: devices, the NCCL plugin and BATON_GPU ---- */

static struct {
    int ok;
    char why[512];
} nccl;

static void ask_nccl(void)
{
    nccl.ok = bt__nccl_available(nccl.why, sizeof(nccl.why));
}

/* PCI bus id of device d, "" when CUDA does not say. */
static void bus_id(int d, char *out, int cap)
{
    if (cudaDeviceGetPCIBusId(out, cap, d) != cudaSuccess) {
        cudaGetLastError();
        out[0] = 0;
    }
}

/* The ordinal of the CUDA device that is idx-th in PCI bus order (the launcher's order). */
static int ordinal_by_bus(int64_t idx, int n)
{
    char a[32], b[32];
    for (int d = 0; d < n; d++) {
        int64_t before = 0;
        bus_id(d, a, sizeof(a));
        for (int e = 0; e < n; e++) {
            bus_id(e, b, sizeof(b));
            before += strcmp(b, a) < 0;
        }
        if (before == idx)
            return d;
    }
    return -1;
}

/* BATON_GPU names the rank's GPU as CUDA_VISIBLE_DEVICES does (launcher/run_bind.c): an
 * entry of CUDA_VISIBLE_DEVICES when that is set, else an index in PCI bus order. Returns
 * its CUDA ordinal, or -1. */
static int gpu_ordinal(const char *name, int n)
{
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    int64_t idx;
    if (cvd && *cvd) {
        size_t nl = strlen(name);
        for (int i = 0; *cvd; i++) {
            size_t len = strcspn(cvd, ",");
            if (len == nl && strncmp(cvd, name, len) == 0)
                return i < n ? i : -1;
            cvd += len + (cvd[len] == ',');
        }
        return -1;
    }
    if (bt__parse_int(name, &idx) != 0 || idx < 0 || idx >= n)
        return -1;
    return ordinal_by_bus(idx, n);
}

static void apply_baton_gpu(const struct bt_comm *c, int n)
{
    const char *name = getenv("BATON_GPU");
    if (!name || !*name)
        return;
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    int d = gpu_ordinal(name, n);
    cudaError_t r = d >= 0 ? cudaSetDevice(d) : cudaSuccess;
    if (d < 0 || r != cudaSuccess) {
        cudaGetLastError();
        BT_WARN(INIT,
                "rank %d: BATON_GPU='%s' is none of the %d CUDA device(s) this rank "
                "sees (CUDA_VISIBLE_DEVICES='%s'%s%s); ignored",
                c->rank, name, n, cvd ? cvd : "", r != cudaSuccess ? ", cudaSetDevice: " : "",
                r != cudaSuccess ? cudaGetErrorString(r) : "");
        return;
    }
    BT_INFO(INIT, "rank %d: BATON_GPU=%s is CUDA device %d, now the current device", c->rank, name,
            d);
}

/* 1 when the NCCL plugin loads; else 0 with the reason in why (asked once per process). */
static int nccl_ok(const char **why)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ask_nccl);
    *why = nccl.why;
    return nccl.ok;
}

static int cuda_init(struct bt_comm *c, struct bt__err *err)
{
    const char *why;
    if (c->backend_choice == BT_BACKEND_NCCL && !nccl_ok(&why))
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "BATON_BACKEND=nccl but the NCCL backend is missing: %s", why);
    int n = device_count(&why);
    if (n == 0) {
        if (c->backend_choice == BT_BACKEND_NCCL)
            return bt__err_set(err, BT_ERR_INVALID_USAGE,
                               "BATON_BACKEND=nccl but rank %d sees no CUDA device: %s; hint: "
                               "run on a GPU node, or unset BATON_BACKEND",
                               c->rank, why);
        BT_INFO(INIT, "rank %d: no CUDA device (%s): host buffers only", c->rank, why);
        return BT_OK;
    }
    apply_baton_gpu(c, n);
    struct bt__cuda *cu = calloc(1, sizeof(*cu));
    if (!cu)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    cu->dev = -1;
    cu->stage.eng = (struct bt__copy_engine){.ctx = &cu->eng,
                                             .copy = ce_copy,
                                             .wait = ce_wait,
                                             .host_alloc = ce_alloc,
                                             .host_free = ce_free};
    c->cuda_state = cu;
    BT_INFO(INIT, "rank %d: %d CUDA device(s): device buffers take %s", c->rank, n,
            c->backend_choice == BT_BACKEND_BATON
                ? "the staged path"
                : "NCCL when every rank has a GPU of its own, else the staged path");
    return BT_OK;
}

/* ---- one call: where its buffers are ---- */

/* 1 when p is device (or managed) memory, with its GPU in *dev; 0 for host memory. */
static int on_device(const void *p, int *dev)
{
    struct cudaPointerAttributes at;
    memset(&at, 0, sizeof(at));
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
        return 0;
    *dev = at.device;
    return 1;
}

/* *dev: the GPU of the call's buffers, or -1 when they are host memory. */
static int locate(struct bt_comm *c, const struct bt__call *a, int *dev)
{
    size_t ns = bt__call_send_count(c, a), nr = bt__call_recv_count(c, a);
    int sd = -1, rd = -1;
    int s = ns && on_device(a->send, &sd), r = nr && on_device(a->recv, &rd);
    *dev = -1;
    if (!s && !r)
        return BT_OK;
    if ((ns && !s) || (nr && !r))
        return bt__comm_fail(c, BT_ERR_INVALID_ARG,
                             "%s #%llu: %s is device memory but %s is host memory; hint: pass "
                             "both on the GPU, or both in host memory",
                             c->coll_name, (unsigned long long)c->coll_seq, s ? "send" : "recv",
                             s ? "recv" : "send");
    if (s && r && sd != rd)
        return bt__comm_fail(c, BT_ERR_INVALID_ARG,
                             "%s #%llu: send is on GPU %d but recv on GPU %d; hint: keep a "
                             "rank's buffers on one GPU",
                             c->coll_name, (unsigned long long)c->coll_seq, sd, rd);
    *dev = s ? sd : rd;
    return BT_OK;
}

/* ---- the first device call: NCCL or staged ---- */

struct gpu_rec {
    uint8_t ok; /* 1 when uuid is known */
    uint8_t pad[15];
    uint8_t uuid[16];
}; /* 32 bytes per rank on the wire */

/* Allgathers every rank's GPU UUID; *r0 (and *r1) get the first rank without a known GPU, or
 * the first two ranks on one GPU; -1 when every rank has a GPU of its own. O(n^2) compares,
 * once per communicator. */
static int shared_gpu(struct bt_comm *c, int dev, int *r0, int *r1)
{
    struct gpu_rec mine;
    struct cudaDeviceProp prop;
    memset(&mine, 0, sizeof(mine));
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
        mine.ok = 1;
        memcpy(mine.uuid, prop.uuid.bytes, sizeof(mine.uuid));
    } else {
        cudaGetLastError();
    }
    struct gpu_rec *all = malloc(sizeof(*all) * (size_t)c->size);
    if (!all)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
    struct bt__call g = {.kind = BT_COLL_ALLGATHER,
                         .send = &mine,
                         .recv = all,
                         .count = sizeof(mine),
                         .dtype = BT_UINT8};
    int rc = bt__host_run(c, &g);
    *r0 = *r1 = -1;
    for (int i = 0; rc == BT_OK && i < c->size && *r0 < 0; i++) {
        if (!all[i].ok)
            *r0 = i;
        for (int j = i + 1; *r0 < 0 && j < c->size; j++)
            if (all[j].ok && memcmp(all[i].uuid, all[j].uuid, sizeof(all[i].uuid)) == 0)
                *r0 = i, *r1 = j;
    }
    free(all);
    return rc;
}

static int first_use(struct bt_comm *c, struct bt__cuda *cu)
{
    int r0 = -1, r1 = -1;
    const char *why = "BATON_BACKEND=baton";
    if (c->nccl) { /* a child split from an NCCL communicator has its own already */
        cu->use_nccl = 1;
        return BT_OK;
    }
    if (c->backend_choice == BT_BACKEND_BATON || !nccl_ok(&why)) {
        BT_INFO(COLL, "rank %d: device buffers on GPU %d take the staged path (%s)", c->rank,
                cu->dev, why);
        return BT_OK;
    }
    if (c->size > 1)
        BT_CHECK(shared_gpu(c, cu->dev, &r0, &r1));
    if (r0 >= 0 && c->backend_choice == BT_BACKEND_NCCL) {
        char what[96];
        if (r1 >= 0)
            snprintf(what, sizeof(what), "ranks %d and %d share one GPU", r0, r1);
        else
            snprintf(what, sizeof(what), "rank %d cannot name its GPU", r0);
        return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                             "%s #%llu: BATON_BACKEND=nccl but %s; NCCL needs a GPU of its own "
                             "per rank; hint: run one rank per GPU (baton run --bind gpu), or "
                             "unset BATON_BACKEND to stage through host memory",
                             c->coll_name, (unsigned long long)c->coll_seq, what);
    }
    if (r0 >= 0) {
        BT_INFO(COLL, "rank %d: device buffers on GPU %d take the staged path (rank %d %s)",
                c->rank, cu->dev, r0,
                r1 >= 0 ? "shares a GPU with another rank" : "cannot name its GPU");
        return BT_OK;
    }
    BT_CHECK(bt__nccl_create(c, cu->dev));
    cu->use_nccl = 1;
    return BT_OK;
}

/* ---- the device path ---- */

static int run_on_dev(struct bt_comm *c, struct bt__cuda *cu, const struct bt__call *a)
{
    if (cu->use_nccl)
        return c->nccl->run(c, a);
    if (!cu->eng.ready)
        BT_CHECK(engine_open(c, &cu->eng));
    return bt__staged_run(c, &cu->stage, a);
}

static int cuda_run(struct bt_comm *c, const struct bt__call *a, int dev)
{
    struct bt__cuda *cu = c->cuda_state;
    int prev = -1;
    if (cu->dev >= 0 && dev != cu->dev)
        return bt__comm_fail(c, BT_ERR_INVALID_ARG,
                             "%s #%llu: buffers on GPU %d, but this rank's device path runs on "
                             "GPU %d (where its first device buffers were); hint: keep a rank's "
                             "buffers on one GPU",
                             c->coll_name, (unsigned long long)c->coll_seq, dev, cu->dev);
    cudaError_t r = cudaGetDevice(&prev);
    if (r == cudaSuccess && prev != dev)
        r = cudaSetDevice(dev);
    if (r != cudaSuccess)
        return cuda_fail(c, r, "cudaSetDevice");
    int rc = BT_OK;
    if (cu->dev < 0) {
        cu->dev = dev;
        rc = first_use(c, cu);
    }
    if (rc == BT_OK)
        rc = run_on_dev(c, cu, a);
    if (prev != dev)
        cudaSetDevice(prev);
    return rc;
}

static void cuda_destroy(struct bt_comm *c)
{
    struct bt__cuda *cu = c->cuda_state;
    int prev = -1;
    if (c->nccl)
        c->nccl->destroy(c);
    if (!cu)
        return;
    if (cu->dev >= 0 && cudaGetDevice(&prev) == cudaSuccess && prev != cu->dev)
        cudaSetDevice(cu->dev);
    bt__stage_free(&cu->stage); /* cudaFreeHost waits for copies still in flight */
    engine_close(&cu->eng);
    if (prev >= 0 && prev != cu->dev)
        cudaSetDevice(prev);
    cudaGetLastError();
    free(cu);
    c->cuda_state = NULL;
}

const struct bt__plugin bt__plugin_self = {
    .abi = BT_PLUGIN_ABI,
    .comm_bytes = sizeof(struct bt_comm),
    .name = "cuda",
    .device_init = cuda_init,
    .device_locate = locate,
    .device_run = cuda_run,
    .device_destroy = cuda_destroy,
};
