/* topo.c: discovers the node's topology with hwloc and plans where each local rank runs.
 *
 * Loading copies what the plan needs out of hwloc into the plain arrays of struct bt__topo
 * (topo.h) and drops the hwloc handle at once, so planning and printing never touch hwloc and
 * behave the same on a build without it. I/O discovery is on (KEEP_IMPORTANT: GPUs, NICs and
 * the PCI bridges above them). A GPU is a PCI device of vendor NVIDIA (0x10de) and class VGA
 * (0x0300) or 3D controller (0x0302); a BMC's VGA (ASPEED and the like) is not one. A NIC is
 * an OS device of type network (ens1f0, ib0), with the RDMA device under the same adapter.
 *
 * Locality of a device is that of its nearest non-I/O ancestor (a package, a NUMA node's
 * parent, or the machine when the firmware does not say), plus its chain of PCI bridges,
 * which tells "behind the same switch" from "behind the same host bridge".
 *
 * Without hwloc (BT_HAVE_HWLOC undefined) the topology is flat: one package, one NUMA node,
 * one core per CPU this process may run on, no GPU, no NIC; an XML file cannot be read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef BT_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "launcher/topo.h"
#include "common/log.h"
#include "common/param.h"

#define NVIDIA_VENDOR 0x10de

/* ---- small helpers, used with and without hwloc ---- */

static void *grow(void *arr, int n, size_t elem)
{
    /* Arrays grow by doubling at powers of two; n is the count before the new element. */
    if (n & (n - 1))
        return arr;
    size_t cap = n ? (size_t)n * 2 : 4;
    return realloc(arr, cap * elem);
}

#define PUSH(arr, n, rc, label)                                                                    \
    do {                                                                                           \
        void *bt__p_ = grow((arr), (n), sizeof(*(arr)));                                           \
        if (!bt__p_) {                                                                             \
            (rc) = bt__err_set(err, BT_ERR_SYSTEM, "topology: out of memory");                     \
            goto label;                                                                            \
        }                                                                                          \
        (arr) = bt__p_;                                                                            \
        memset(&(arr)[(n)], 0, sizeof(*(arr)));                                                    \
        (n)++;                                                                                     \
    } while (0)

char *bt__cpulist_format(const cpu_set_t *set, char *buf, size_t size)
{
    size_t off = 0;
    if (!size)
        return buf;
    buf[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE && off < size; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int last = c;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set))
            last++;
        int k = last == c ? snprintf(buf + off, size - off, "%s%d", off ? "," : "", c)
                          : snprintf(buf + off, size - off, "%s%d-%d", off ? "," : "", c, last);
        off += k > 0 ? (size_t)k : 0;
        c = last;
    }
    return buf;
}

static const char *const bind_names[] = {"none", "core", "numa", "gpu"};

int bt__bind_parse(const char *s, enum bt__bind *out)
{
    for (int i = 0; s && i < (int)(sizeof(bind_names) / sizeof(bind_names[0])); i++)
        if (!strcmp(s, bind_names[i])) {
            *out = (enum bt__bind)i;
            return 0;
        }
    return -1;
}

const char *bt__bind_name(enum bt__bind mode)
{
    return (unsigned)mode < sizeof(bind_names) / sizeof(bind_names[0]) ? bind_names[mode] : "?";
}

/* Parses "dddd:bb:dd.f" (or NVML's "dddddddd:BB:DD.F", or "bb:dd.f" in domain 0) into a
 * number; -1 when malformed. */
static long long busid_key(const char *s)
{
    unsigned dom = 0, bus, dev, fn;
    char tail;
    if (sscanf(s, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) != 4) {
        dom = 0;
        if (sscanf(s, "%x:%x.%x%c", &bus, &dev, &fn, &tail) != 3)
            return -1;
    }
    if (bus > 0xff || dev > 0x1f || fn > 7)
        return -1;
    return ((long long)dom << 16) | (bus << 8) | (dev << 3) | fn;
}

int bt__topo_gpu_by_busid(const struct bt__topo *topo, const char *busid)
{
    long long want = busid ? busid_key(busid) : -1;
    for (int i = 0; want >= 0 && i < topo->ngpus; i++)
        if (busid_key(topo->gpus[i].busid) == want)
            return i;
    return -1;
}

int bt__topo_keep_gpus(struct bt__topo *topo, const char *const *busids, int n)
{
    int kept = 0;
    for (int i = 0; i < topo->ngpus; i++) {
        long long key = busid_key(topo->gpus[i].busid);
        int keep = 0;
        for (int j = 0; j < n && !keep; j++)
            keep = busids[j] && busid_key(busids[j]) == key;
        if (keep)
            topo->gpus[kept++] = topo->gpus[i];
    }
    topo->ngpus = kept;
    return kept;
}

void bt__topo_destroy(struct bt__topo *topo)
{
    if (!topo)
        return;
    free(topo->packages);
    free(topo->numas);
    free(topo->cores);
    free(topo->gpus);
    free(topo->nics);
    free(topo);
}

/* ---- the flat topology (no hwloc) ---- */

static int load_flat(struct bt__topo *t, struct bt__err *err)
{
    int rc = BT_OK;
    if (sched_getaffinity(0, sizeof(t->cpus), &t->cpus) < 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        CPU_ZERO(&t->cpus);
        for (long c = 0; c < (n > 0 ? n : 1) && c < CPU_SETSIZE; c++)
            CPU_SET(c, &t->cpus);
    }
    PUSH(t->packages, t->npackages, rc, out);
    t->packages[0].cpus = t->cpus;
    PUSH(t->numas, t->nnumas, rc, out);
    t->numas[0].cpus = t->cpus;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &t->cpus))
            continue;
        PUSH(t->cores, t->ncores, rc, out);
        CPU_SET(c, &t->cores[t->ncores - 1].cpus);
    }
    t->npus = t->ncores;
out:
    return rc;
}

#ifdef BT_HAVE_HWLOC
/* ---- hwloc discovery ---- */

static void to_cpuset(hwloc_const_bitmap_t bm, cpu_set_t *out)
{
    CPU_ZERO(out);
    int id;
    hwloc_bitmap_foreach_begin(id, bm)
    {
        if (id < CPU_SETSIZE)
            CPU_SET(id, out);
    }
    hwloc_bitmap_foreach_end();
}

static int numa_by_os(const struct bt__topo *t, unsigned os)
{
    for (int i = 0; i < t->nnumas; i++)
        if (t->numas[i].os_index == (int)os)
            return i;
    return -1;
}

static int package_of(hwloc_topology_t h, hwloc_obj_t obj)
{
    hwloc_obj_t p = obj->type == HWLOC_OBJ_PACKAGE
                        ? obj
                        : hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_PACKAGE, obj);
    return p ? (int)p->logical_index : -1;
}

/* Locality of I/O object io: its nearest non-I/O ancestor and its PCI bridges, top first. */
static void locality(hwloc_topology_t h, const struct bt__topo *t, hwloc_obj_t io,
                     struct bt__topo_locality *loc)
{
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(h, io);
    to_cpuset(anc->cpuset, &loc->cpus);
    loc->package = package_of(h, anc);
    loc->numa = hwloc_bitmap_weight(anc->nodeset) == 1
                    ? numa_by_os(t, (unsigned)hwloc_bitmap_first(anc->nodeset))
                    : -1;
    unsigned long long path[64];
    int n = 0;
    for (hwloc_obj_t p = io->parent; p && hwloc_obj_type_is_io(p->type) && n < 64; p = p->parent)
        if (p->type == HWLOC_OBJ_BRIDGE)
            path[n++] = p->gp_index;
    loc->io_depth = n < BT__TOPO_IO_DEPTH ? n : BT__TOPO_IO_DEPTH;
    for (int i = 0; i < loc->io_depth; i++)
        loc->io_path[i] = path[n - 1 - i];
}

static int hw_numas_cores(hwloc_topology_t h, struct bt__topo *t, struct bt__err *err)
{
    int rc = BT_OK;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_PACKAGE, o))) {
        PUSH(t->packages, t->npackages, rc, out);
        t->packages[t->npackages - 1].os_index = (int)o->os_index;
        to_cpuset(o->cpuset, &t->packages[t->npackages - 1].cpus);
    }
    while ((o = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_NUMANODE, o))) {
        PUSH(t->numas, t->nnumas, rc, out);
        struct bt__topo_numa *n = &t->numas[t->nnumas - 1];
        n->os_index = (int)o->os_index;
        n->package = package_of(h, o);
        n->mem = (unsigned long long)o->attr->numanode.local_memory;
        to_cpuset(o->cpuset, &n->cpus);
    }
    /* A machine without cores in its topology (some VMs) gets one core per PU. */
    hwloc_obj_type_t ctype = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                             : HWLOC_OBJ_PU;
    while ((o = hwloc_get_next_obj_by_type(h, ctype, o))) {
        PUSH(t->cores, t->ncores, rc, out);
        struct bt__topo_core *c = &t->cores[t->ncores - 1];
        to_cpuset(o->cpuset, &c->cpus);
        for (int i = 0; i < t->nnumas; i++)
            if (hwloc_bitmap_isincluded(
                    o->cpuset, hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, (unsigned)i)->cpuset)) {
                c->numa = i;
                break;
            }
    }
    t->npus = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PU);
out:
    return rc;
}

static void gpu_name(hwloc_obj_t pci, char *buf, size_t size)
{
    for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling) {
        const char *model = hwloc_obj_get_info_by_name(c, "GPUModel");
        if (model) {
            snprintf(buf, size, "%s", model);
            return;
        }
    }
    const char *dev = hwloc_obj_get_info_by_name(pci, "PCIDevice");
    if (dev)
        snprintf(buf, size, "%s", dev);
    else
        snprintf(buf, size, "NVIDIA [%04x:%04x]", pci->attr->pcidev.vendor_id,
                 pci->attr->pcidev.device_id);
}

static void format_busid(hwloc_obj_t pci, char *buf)
{
    snprintf(buf, BT__TOPO_BUSID_MAX, "%04x:%02x:%02x.%01x",
             (unsigned)pci->attr->pcidev.domain & 0xffff, pci->attr->pcidev.bus,
             pci->attr->pcidev.dev, pci->attr->pcidev.func & 7);
}

static int by_busid(const void *a, const void *b)
{
    return strcmp(((const struct bt__topo_gpu *)a)->busid, ((const struct bt__topo_gpu *)b)->busid);
}

static int hw_gpus(hwloc_topology_t h, struct bt__topo *t, struct bt__err *err)
{
    int rc = BT_OK;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_pcidev(h, o))) {
        unsigned cls = o->attr->pcidev.class_id;
        if (o->attr->pcidev.vendor_id != NVIDIA_VENDOR || (cls != 0x0300 && cls != 0x0302))
            continue;
        PUSH(t->gpus, t->ngpus, rc, out);
        struct bt__topo_gpu *g = &t->gpus[t->ngpus - 1];
        format_busid(o, g->busid);
        g->vendor = o->attr->pcidev.vendor_id;
        g->device = o->attr->pcidev.device_id;
        gpu_name(o, g->name, sizeof(g->name));
        locality(h, t, o, &g->loc);
    }
    if (t->ngpus > 1)
        qsort(t->gpus, (size_t)t->ngpus, sizeof(*t->gpus), by_busid);
out:
    return rc;
}

static int hw_nics(hwloc_topology_t h, struct bt__topo *t, struct bt__err *err)
{
    int rc = BT_OK;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_osdev(h, o))) {
        if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_NETWORK || !o->name)
            continue;
        PUSH(t->nics, t->nnics, rc, out);
        struct bt__topo_nic *n = &t->nics[t->nnics - 1];
        snprintf(n->name, sizeof(n->name), "%s", o->name);
        hwloc_obj_t pci = o->parent;
        while (pci && pci->type != HWLOC_OBJ_PCI_DEVICE && hwloc_obj_type_is_io(pci->type))
            pci = pci->parent;
        if (pci && pci->type == HWLOC_OBJ_PCI_DEVICE) {
            format_busid(pci, n->busid);
            for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling)
                if (c->type == HWLOC_OBJ_OS_DEVICE &&
                    c->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS && c->name && !n->rdma[0])
                    snprintf(n->rdma, sizeof(n->rdma), "%s", c->name);
        }
        locality(h, t, o, &n->loc);
    }
out:
    return rc;
}

static const char *const skipped_components[] = {"pci", "opencl", "gl"};

/* Opens xml (or this machine when NULL) with I/O discovery on. */
static int hw_open(const char *xml, const char *label, hwloc_topology_t *out, struct bt__err *err)
{
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) < 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "hwloc_topology_init: %s", strerror(errno));
    hwloc_topology_set_io_types_filter(h, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
#if HWLOC_API_VERSION >= 0x00020100
    /* Linux's own sysfs discovery finds PCI devices, their classes and the NICs; the pci
     * plugin (libpciaccess) adds only device names and leaks ~1 KiB per load, and the opencl
     * and gl plugins would start GPU drivers and X clients in the launcher. */
    for (size_t i = 0; i < sizeof(skipped_components) / sizeof(skipped_components[0]); i++)
        hwloc_topology_set_components(h, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
                                      skipped_components[i]);
#endif
    errno = 0;
    if ((xml && hwloc_topology_set_xml(h, xml) < 0) || hwloc_topology_load(h) < 0) {
        int e = errno;
        hwloc_topology_destroy(h);
        if (!xml)
            return bt__err_set(err, BT_ERR_SYSTEM, "hwloc could not discover this machine: %s",
                               strerror(e));
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "cannot load topology from %s: %s; hint: write one with "
                           "`lstopo --of xml FILE` (hwloc 2.x)",
                           label,
                           e && e != EINVAL ? strerror(e) : "not a valid hwloc XML topology");
    }
    *out = h;
    return BT_OK;
}

static int load_hwloc(const char *xml, const char *label, struct bt__topo *t, struct bt__err *err)
{
    hwloc_topology_t h = NULL;
    BT_CHECK(hw_open(xml, label, &h, err));
    hwloc_obj_t root = hwloc_get_root_obj(h);
    const char *host = hwloc_obj_get_info_by_name(root, "HostName");
    if (host)
        snprintf(t->host, sizeof(t->host), "%s", host);
    to_cpuset(root->cpuset, &t->cpus);
    int rc = BT_OK;
    BT_CHECK_GOTO(hw_numas_cores(h, t, err), rc, out);
    BT_CHECK_GOTO(hw_gpus(h, t, err), rc, out);
    BT_CHECK_GOTO(hw_nics(h, t, err), rc, out);
    if (t->npackages == 0) { /* some VMs show no package: the machine is one */
        PUSH(t->packages, t->npackages, rc, out);
        t->packages[0].cpus = t->cpus;
        for (int i = 0; i < t->nnumas; i++)
            t->numas[i].package = 0;
    }
    if (hwloc_bitmap_weight(root->cpuset) > CPU_SETSIZE)
        BT_WARN(INIT, "topology: %d CPUs, only the first %d can be bound",
                hwloc_bitmap_weight(root->cpuset), CPU_SETSIZE);
out:
    hwloc_topology_destroy(h);
    return rc;
}
#endif /* BT_HAVE_HWLOC */

/* ---- load ---- */

/* label is the file's name as messages show it: "FILE" or "FILE (BATON_TOPO_XML)". */
static int check_file(const char *xml, const char *label, struct bt__err *err)
{
    struct stat st;
    if (!*xml)
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "cannot load topology from an empty file "
                           "name; hint: BATON_TOPO_XML=FILE");
    if (stat(xml, &st) < 0 || access(xml, R_OK) < 0)
        return bt__err_set(err, BT_ERR_INVALID_ARG, "cannot load topology from %s: %s", label,
                           strerror(errno));
    if (!S_ISREG(st.st_mode))
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "cannot load topology from %s: not a regular file", label);
    return BT_OK;
}

int bt__topo_load(const char *xml, struct bt__topo **out, struct bt__err *err)
{
    char label[300];
    *out = NULL;
    snprintf(label, sizeof(label), "%s", xml ? xml : "");
    if (!xml && (xml = bt__env_str("BATON_TOPO_XML", NULL)))
        snprintf(label, sizeof(label), "%s (BATON_TOPO_XML)", xml);
    if (xml)
        BT_CHECK(check_file(xml, label, err));
    struct bt__topo *t = calloc(1, sizeof(*t));
    if (!t)
        return bt__err_set(err, BT_ERR_SYSTEM, "topology: out of memory");
    int rc;
#ifdef BT_HAVE_HWLOC
    snprintf(t->source, sizeof(t->source), "%s", xml ? xml : "this machine");
    struct bt__err hwerr = {0};
    rc = load_hwloc(xml, label, t, xml ? err : &hwerr);
    if (rc != BT_OK && !xml) { /* no /sys, say: planning still works on a flat machine */
        BT_WARN(INIT, "topology: %s; using a flat topology (one package, no GPU, no NIC)",
                hwerr.msg);
        bt__topo_destroy(t);
        t = calloc(1, sizeof(*t));
        if (!t)
            return bt__err_set(err, BT_ERR_SYSTEM, "topology: out of memory");
        snprintf(t->source, sizeof(t->source), "this machine (flat: hwloc failed)");
        rc = load_flat(t, err);
    }
#else
    snprintf(t->source, sizeof(t->source), "this machine (built without hwloc)");
    rc = xml ? bt__err_set(err, BT_ERR_INVALID_ARG,
                           "cannot load topology from %s: baton was built without hwloc; "
                           "hint: install libhwloc-dev and rebuild",
                           label)
             : load_flat(t, err);
#endif
    if (rc == BT_OK && !t->host[0] && !xml)
        gethostname(t->host, sizeof(t->host) - 1);
    if (rc == BT_OK && (t->nnumas == 0 || t->ncores == 0 || CPU_COUNT(&t->cpus) == 0))
        rc = bt__err_set(err, BT_ERR_INVALID_ARG,
                         "cannot load topology from %s: it has no "
                         "usable CPU or NUMA node",
                         t->source);
    if (rc != BT_OK) {
        bt__topo_destroy(t);
        return rc;
    }
    BT_INFO(INIT, "topology of %s: %d packages, %d NUMA nodes, %d cores, %d GPUs, %d NICs",
            t->source, t->npackages, t->nnumas, t->ncores, t->ngpus, t->nnics);
    *out = t;
    return BT_OK;
}

/* ---- the plan ---- */

/* NUMA node of rank r of n that has GPU g (-1 for none): the GPU's, else its package's first,
 * else a block split over the nodes that have CPUs. */
static int plan_numa(const struct bt__topo *t, int g, int r, int n)
{
    if (g >= 0 && t->gpus[g].loc.numa >= 0)
        return t->gpus[g].loc.numa;
    if (g >= 0 && t->gpus[g].loc.package >= 0)
        for (int i = 0; i < t->nnumas; i++)
            if (t->numas[i].package == t->gpus[g].loc.package && CPU_COUNT(&t->numas[i].cpus))
                return i;
    int withcpu = 0;
    for (int i = 0; i < t->nnumas; i++)
        withcpu += CPU_COUNT(&t->numas[i].cpus) > 0;
    int want = withcpu ? (int)((long long)r * withcpu / n) : 0;
    for (int i = 0; i < t->nnumas; i++)
        if (CPU_COUNT(&t->numas[i].cpus) > 0 && want-- == 0)
            return i;
    return 0;
}

static int plan_gpu(const struct bt__topo *t, int r)
{
    return t->ngpus ? r % t->ngpus : -1;
}

/* --bind core: the cores of NUMA node m are split evenly among the ranks planned on m, in
 * rank order; rank k of c on a node of ncore cores gets cores [k*ncore/c, (k+1)*ncore/c),
 * at least one (ranks share cores when there are more ranks than cores). */
static void plan_cores(const struct bt__topo *t, int m, int r, int n, cpu_set_t *out)
{
    int k = 0, c = 0, ncore = 0;
    for (int j = 0; j < n; j++)
        if (plan_numa(t, plan_gpu(t, j), j, n) == m) {
            k = j == r ? c : k;
            c++;
        }
    for (int i = 0; i < t->ncores; i++)
        ncore += t->cores[i].numa == m;
    CPU_ZERO(out);
    if (!ncore) { /* a node without cores: its CPUs, if any */
        *out = t->numas[m].cpus;
        return;
    }
    int lo = (int)((long long)k * ncore / c), hi = (int)((long long)(k + 1) * ncore / c);
    if (hi <= lo)
        hi = lo + 1;
    for (int i = 0, idx = 0; i < t->ncores; i++) {
        if (t->cores[i].numa != m)
            continue;
        if (idx >= lo && idx < hi)
            CPU_OR(out, out, &t->cores[i].cpus);
        idx++;
    }
}

static int common_prefix(const struct bt__topo_locality *a, const struct bt__topo_locality *b)
{
    int n = 0;
    while (n < a->io_depth && n < b->io_depth && a->io_path[n] == b->io_path[n])
        n++;
    return n;
}

/* The NIC nearest GPU g (or, with g -1, NUMA node m / package p): most PCI bridges in
 * common, then same NUMA node, then same package, then the first. */
static int plan_nic(const struct bt__topo *t, int g, int m, int p)
{
    int best = -1, bestkey = -1;
    for (int i = 0; i < t->nnics; i++) {
        const struct bt__topo_locality *l = &t->nics[i].loc;
        int key = (g >= 0 ? common_prefix(&t->gpus[g].loc, l) : 0) * 4 +
                  (l->numa >= 0 && l->numa == m) * 2 + (l->package >= 0 && l->package == p);
        if (key > bestkey) {
            best = i;
            bestkey = key;
        }
    }
    return best;
}

static void plan_cpus(const struct bt__topo *t, struct bt__topo_place *pl)
{
    CPU_ZERO(&pl->cpus);
    if (pl->bind == BT_BIND_NUMA)
        pl->cpus = t->numas[pl->numa].cpus;
    else if (pl->bind == BT_BIND_GPU)
        pl->cpus = t->gpus[pl->gpu].loc.cpus;
    else if (pl->bind == BT_BIND_CORE)
        plan_cores(t, pl->numa, pl->local_rank, pl->local_size, &pl->cpus);
    if (pl->bind != BT_BIND_NONE && CPU_COUNT(&pl->cpus) == 0)
        pl->cpus = t->cpus; /* a CPU-less node or device: anywhere rather than nowhere */
    pl->ncpus = CPU_COUNT(&pl->cpus);
}

int bt__topo_plan(const struct bt__topo *t, int local_rank, int local_size, enum bt__bind mode,
                  struct bt__topo_place *out, struct bt__err *err)
{
    if (local_size < 1 || local_rank < 0 || local_rank >= local_size)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "topology plan: local rank %d of %d is out of range", local_rank,
                           local_size);
    if ((unsigned)mode > BT_BIND_GPU)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "topology plan: unknown bind mode %d",
                           (int)mode);
    if (mode == BT_BIND_GPU && t->ngpus == 0)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "--bind gpu: no GPU found on this node (hwloc saw none); use "
                           "--bind core or none");
    memset(out, 0, sizeof(*out));
    out->local_rank = local_rank;
    out->local_size = local_size;
    out->bind = mode;
    out->gpu = plan_gpu(t, local_rank);
    out->gpu_shared = t->ngpus > 0 && local_size > t->ngpus;
    if (out->gpu >= 0)
        snprintf(out->gpu_busid, sizeof(out->gpu_busid), "%s", t->gpus[out->gpu].busid);
    out->numa = plan_numa(t, out->gpu, local_rank, local_size);
    out->numa_os = t->numas[out->numa].os_index;
    out->package = out->gpu >= 0 && t->gpus[out->gpu].loc.package >= 0
                       ? t->gpus[out->gpu].loc.package
                       : t->numas[out->numa].package;
    plan_cpus(t, out);
    out->nic = plan_nic(t, out->gpu, out->numa, out->package);
    if (out->nic >= 0)
        snprintf(out->nic_name, sizeof(out->nic_name), "%s", t->nics[out->nic].name);
    return BT_OK;
}

int bt__topo_apply(const struct bt__topo_place *place, struct bt__err *err)
{
    if (place->ncpus == 0)
        return BT_OK;
    if (sched_setaffinity(0, sizeof(place->cpus), &place->cpus) < 0)
        return bt__err_set(err, BT_ERR_SYSTEM,
                           "sched_setaffinity (--bind %s, local rank %d): %s; hint: the CPUs "
                           "planned may be outside this container's cpuset, try --bind none",
                           bt__bind_name(place->bind), place->local_rank, strerror(errno));
    return BT_OK;
}
