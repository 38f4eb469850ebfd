/* topo.h: the node's topology (hwloc) and the placement plan of its local ranks.
 *
 * bt__topo_load() discovers this machine (or reads an hwloc XML file: BATON_TOPO_XML) into
 * plain arrays: packages, NUMA nodes, cores, NVIDIA GPUs and NICs, each device with its
 * locality. bt__topo_plan() then says, for local rank i of N, which GPU, NUMA node, CPUs and
 * NIC it should use; the launcher applies it (bt__topo_apply() in the child before exec, and
 * CUDA_VISIBLE_DEVICES / BATON_GPU from place.gpu) and the TCP transport uses place.nic unless
 * BATON_SOCKET_IFNAME is set. Planning reads only the arrays, never hwloc, so it is the same
 * with and without hwloc (without it, load gives one package, one NUMA node, the CPUs this
 * process may run on, and no GPU or NIC).
 *
 * What this file does not do: call CUDA (a GPU is named by its PCI bus id, which CUDA's
 * cudaDeviceGetPCIBusId gives; see bt__topo_gpu_by_busid), or set any env.
 */
#ifndef BT_COLLECTIVES_TOPO_H
#define BT_COLLECTIVES_TOPO_H

#include <sched.h>

#include "common/err.h"

#define BT__TOPO_NAME_MAX 64  /* a device, model or interface name, NUL included */
#define BT__TOPO_BUSID_MAX 16 /* "0000:3b:00.0" and its NUL */
#define BT__TOPO_IO_DEPTH 8   /* PCI bridges kept per device path */

/* --bind: how a rank's CPUs are chosen (see bt__topo_plan). */
enum bt__bind {
    BT_BIND_NONE = 0, /* no affinity is set */
    BT_BIND_CORE,     /* an even share of its NUMA node's cores */
    BT_BIND_NUMA,     /* every CPU of its NUMA node */
    BT_BIND_GPU       /* every CPU near its GPU (the GPU's package or NUMA node) */
};

struct bt__topo_package {
    int os_index;
    cpu_set_t cpus;
};

struct bt__topo_numa {
    int os_index;
    int package;            /* index into topo->packages, -1 when above any package */
    unsigned long long mem; /* bytes of local memory, 0 when unknown */
    cpu_set_t cpus;
};

struct bt__topo_core {
    int numa;       /* index into topo->numas */
    cpu_set_t cpus; /* its PUs (hardware threads) */
};

/* Where a PCI device sits: the CPUs and memory nearest to it, and its chain of PCI bridges
 * from the host bridge down (two devices sharing more of the chain are closer: same switch
 * beats same host bridge). */
struct bt__topo_locality {
    int package;    /* index into topo->packages, -1 when unknown (attached to the machine) */
    int numa;       /* index into topo->numas, -1 when unknown */
    cpu_set_t cpus; /* cpuset of the nearest non-I/O ancestor */
    int io_depth;
    unsigned long long io_path[BT__TOPO_IO_DEPTH]; /* hwloc gp_index of each bridge */
};

struct bt__topo_gpu {
    char busid[BT__TOPO_BUSID_MAX]; /* "0000:3b:00.0", lower case */
    unsigned vendor, device;        /* PCI ids, vendor 0x10de */
    char name[BT__TOPO_NAME_MAX];   /* model, e.g. "NVIDIA A100-SXM4-40GB" */
    struct bt__topo_locality loc;
};

struct bt__topo_nic {
    char name[BT__TOPO_NAME_MAX];   /* network interface, e.g. "ens1f0" */
    char rdma[BT__TOPO_NAME_MAX];   /* its RDMA device ("mlx5_0") or "" */
    char busid[BT__TOPO_BUSID_MAX]; /* PCI bus id of the adapter */
    struct bt__topo_locality loc;
};

/* A loaded topology. Arrays are owned by the struct, in discovery order except gpus, which
 * are sorted by PCI bus id (the order CUDA_DEVICE_ORDER=PCI_BUS_ID numbers them). */
struct bt__topo {
    char source[256]; /* "this machine", "this machine (no hwloc)" or the XML path */
    char host[BT__TOPO_NAME_MAX];
    int npackages, nnumas, ncores, npus, ngpus, nnics;
    struct bt__topo_package *packages;
    struct bt__topo_numa *numas;
    struct bt__topo_core *cores;
    struct bt__topo_gpu *gpus;
    struct bt__topo_nic *nics;
    cpu_set_t cpus; /* every usable CPU */
};

/* The plan for one local rank. */
struct bt__topo_place {
    int local_rank, local_size;
    enum bt__bind bind;
    int gpu;                            /* index into topo->gpus, -1 when there is none */
    int gpu_shared;                     /* 1 when more ranks than GPUs: GPU is rank mod ngpus */
    char gpu_busid[BT__TOPO_BUSID_MAX]; /* "" when gpu is -1 */
    int numa;                           /* index into topo->numas */
    int numa_os;                        /* its OS number (numactl's), -1 when unknown */
    int package;                        /* index into topo->packages, -1 when unknown */
    cpu_set_t cpus;                     /* the CPUs to bind to */
    int ncpus;                          /* CPU_COUNT(&cpus); 0 for --bind none */
    int nic;                            /* index into topo->nics, -1 when there is none */
    char nic_name[BT__TOPO_NAME_MAX];   /* "" when nic is -1 */
};

/* Loads the topology of xml (an hwloc XML file), or when xml is NULL of the file named by
 * BATON_TOPO_XML, or when that is unset of this machine, into *out (owned by the caller until
 * bt__topo_destroy). A file that is missing or does not parse, or xml without hwloc, is
 * BT_ERR_INVALID_ARG with "cannot load topology from FILE: why" in err; *out is then NULL. */
int bt__topo_load(const char *xml, struct bt__topo **out, struct bt__err *err);

/* Frees topo; NULL is accepted. */
void bt__topo_destroy(struct bt__topo *topo);

/* Plans local rank local_rank of local_size:
 *   GPU   rank i -> GPU i; with more ranks than GPUs, GPU i mod ngpus (gpu_shared = 1);
 *   NUMA  the GPU's NUMA node; without a GPU (or one of unknown locality) a block split,
 *         rank i -> node i * nnumas / local_size, so neighbouring ranks share a node;
 *   CPUs  by mode: none -> none; numa -> the node's CPUs; gpu -> the CPUs near the GPU;
 *         core -> the node's cores split evenly among the ranks planned on that node;
 *   NIC   the one sharing most PCI bridges with the GPU (same switch, then same host bridge),
 *         then one in the same NUMA node, then the same package, then the first.
 * --bind gpu without a GPU and a rank outside [0, local_size) are BT_ERR_INVALID_USAGE. */
int bt__topo_plan(const struct bt__topo *topo, int local_rank, int local_size, enum bt__bind mode,
                  struct bt__topo_place *out, struct bt__err *err);

/* Binds the calling process to place->cpus (nothing for ncpus 0). Uses no allocation and no
 * locks, so the launcher may call it in the child between fork and exec. */
int bt__topo_apply(const struct bt__topo_place *place, struct bt__err *err);

/* Parses "none", "core", "numa" or "gpu"; 0 on success, -1 otherwise. */
int bt__bind_parse(const char *s, enum bt__bind *out);
const char *bt__bind_name(enum bt__bind mode);

/* Index of the GPU with PCI bus id busid ("0000:3b:00.0", "00000000:3B:00.0" as NVML writes
 * it, or "3b:00.0"), or -1. */
int bt__topo_gpu_by_busid(const struct bt__topo *topo, const char *busid);

/* Keeps only the GPUs whose bus id is in busids[0..n) (any form bt__topo_gpu_by_busid takes),
 * in PCI order, and returns how many are left. For the CUDA code: hwloc reads sysfs, which in
 * a container shows every GPU of the host, while CUDA sees only those given to the pod; call
 * this with cudaDeviceGetPCIBusId of each visible device before planning. */
int bt__topo_keep_gpus(struct bt__topo *topo, const char *const *busids, int n);

/* Writes set as a list ("0-7,16-23"; "" for an empty set) into buf, truncated to fit, and
 * returns buf. */
char *bt__cpulist_format(const cpu_set_t *set, char *buf, size_t size);

#endif
