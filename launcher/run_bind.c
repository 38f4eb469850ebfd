/* run_bind.c: `baton run --bind none|core|numa|gpu`: the topology plan applied to the workers.
 *
 * Before any worker starts, the launcher loads the node's topology once (this machine, or the
 * hwloc XML file named by BATON_TOPO_XML) and plans every local rank (launcher/topo.h):
 * GPU, NUMA node, CPUs, NIC. Then, for each worker:
 *   CPUs  the plan's CPUs intersected with the CPUs this launcher may run on (a container's
 *         cpuset, taskset, or a fixture topology that is not this machine); the child binds
 *         to them with sched_setaffinity between fork and exec. A rank whose intersection is
 *         empty is not bound, and one warning line says so (once per launcher).
 *   GPU   BATON_GPU = the rank's GPU as CUDA_VISIBLE_DEVICES names it: its index in PCI
 *         order, or the entry of the user's own CUDA_VISIBLE_DEVICES list. With --bind gpu
 *         also CUDA_DEVICE_ORDER=PCI_BUS_ID and CUDA_VISIBLE_DEVICES=<that GPU>, so the rank
 *         sees its GPU as device 0.
 *   NIC   BATON_SOCKET_IFNAME==<nic> (exact name) when the job has several nodes, the plan
 *         found a NIC and the user did not set BATON_SOCKET_IFNAME.
 * --bind none (the default) loads nothing and sets nothing.
 *
 * A user's CUDA_VISIBLE_DEVICES of numeric indices restricts the topology to those GPUs
 * (taken in PCI order, so their locality is right); a list of UUIDs cannot be matched to bus
 * ids without CUDA, so then rank i's GPU is the list's entry (plan gpu mod length).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

#define CVD_MAX 64 /* entries of a user's CUDA_VISIBLE_DEVICES we look at */

struct cvd {
    int n;       /* entries; -1 when CUDA_VISIBLE_DEVICES is unset */
    int numeric; /* every entry is an index < ngpus */
    char ent[CVD_MAX][BT_RUN_GPU_MAX];
    char busid[CVD_MAX][BT__TOPO_BUSID_MAX]; /* numeric: the bus id of each entry's GPU */
};

/* Splits the user's CUDA_VISIBLE_DEVICES; CUDA stops at the first invalid entry ("-1"). */
static void cvd_parse(const char *s, const struct bt__topo *t, struct cvd *c)
{
    c->n = -1;
    c->numeric = 1;
    if (!s)
        return;
    c->n = 0;
    for (const char *p = s; *p && c->n < CVD_MAX;
         p += strcspn(p, ",") + (p[strcspn(p, ",")] != 0)) {
        int len = (int)strcspn(p, ",");
        int64_t v;
        if (len == 0 || *p == '-' || len >= BT_RUN_GPU_MAX)
            break;
        snprintf(c->ent[c->n], BT_RUN_GPU_MAX, "%.*s", len, p);
        if (bt__parse_int(c->ent[c->n], &v) != 0 || v < 0 || v >= t->ngpus)
            c->numeric = 0;
        else
            snprintf(c->busid[c->n], BT__TOPO_BUSID_MAX, "%s", t->gpus[v].busid);
        c->n++;
        if (!p[len])
            break;
    }
}

/* Restricts topo to the user's GPUs when they are indices (or to none for an empty list). */
static void cvd_restrict(struct bt__topo *t, const struct cvd *c)
{
    const char *ids[CVD_MAX];
    if (c->n < 0 || (c->n > 0 && !c->numeric))
        return;
    for (int i = 0; i < c->n; i++)
        ids[i] = c->busid[i];
    bt__topo_keep_gpus(t, ids, c->n);
}

/* The CUDA_VISIBLE_DEVICES name of GPU g of the (restricted) topology. */
static void gpu_name(const struct bt__topo *t, const struct cvd *c, int g, char *out)
{
    int k = c->n > 0 ? g % c->n : 0;
    if (c->n <= 0) {
        snprintf(out, BT_RUN_GPU_MAX, "%d", g);
        return;
    }
    for (int i = 0; c->numeric && i < c->n; i++) /* the entry naming GPU g's bus id */
        if (!strcmp(c->busid[i], t->gpus[g].busid))
            k = i;
    snprintf(out, BT_RUN_GPU_MAX, "%s", c->ent[k]);
}

static void log_plan(const struct bt__run *r, const struct bt__run_place *p)
{
    char want[256], got[256];
    bt__cpulist_format(&p->planned, want, sizeof(want));
    bt__cpulist_format(&p->pl.cpus, got, sizeof(got));
    BT_INFO(LAUNCH, "--bind %s: local rank %d: gpu %s%s%s, numa %d, cpus %s (bound: %s), nic %s",
            bt__bind_name(r->o.bind), p->pl.local_rank, p->gpu[0] ? p->gpu : "none",
            p->pl.gpu_busid[0] ? " " : "", p->pl.gpu_busid, p->pl.numa_os, want,
            p->pl.ncpus ? got : "no", p->pl.nic_name[0] ? p->pl.nic_name : "none");
}

/* Plans local rank i into r->place[i]; warns (once) when its CPUs are not ours. */
static int plan_one(struct bt__run *r, const struct bt__topo *t, const struct cvd *c,
                    const cpu_set_t *allowed, int i, struct bt__err *err)
{
    struct bt__run_place *p = &r->place[i];
    static int warned;
    BT_CHECK(bt__topo_plan(t, i, r->nproc, r->o.bind, &p->pl, err));
    if (p->pl.gpu >= 0)
        gpu_name(t, c, p->pl.gpu, p->gpu);
    p->planned = p->pl.cpus;
    CPU_AND(&p->pl.cpus, &p->planned, allowed);
    int planned = p->pl.ncpus;
    p->pl.ncpus = planned ? CPU_COUNT(&p->pl.cpus) : 0; /* 0: bt__topo_apply binds nothing */
    if (planned && !p->pl.ncpus && !warned++) {
        char want[256], have[256];
        fprintf(stderr,
                "baton: --bind %s: local rank %d's planned CPUs %s (topology: %s) are not "
                "among the CPUs baton may use (%s); ranks like it are not bound\n",
                bt__bind_name(r->o.bind), i, bt__cpulist_format(&p->planned, want, sizeof(want)),
                t->source, bt__cpulist_format(allowed, have, sizeof(have)));
    }
    log_plan(r, p);
    return BT_OK;
}

int bt__run_bind_setup(struct bt__run *r)
{
    struct bt__err err = {0};
    struct bt__topo *t = NULL;
    struct cvd c;
    cpu_set_t allowed;
    int rc = 0;
    if (r->o.bind == BT_BIND_NONE)
        return 0;
    if (bt__topo_load(NULL, &t, &err) != BT_OK) {
        fprintf(stderr, "baton run: --bind %s: %s\n", bt__bind_name(r->o.bind), err.msg);
        return 2;
    }
    cvd_parse(getenv("CUDA_VISIBLE_DEVICES"), t, &c);
    cvd_restrict(t, &c);
    if (r->o.bind == BT_BIND_GPU && c.n >= 0 && t->ngpus == 0) {
        fprintf(stderr,
                "baton run: --bind gpu: CUDA_VISIBLE_DEVICES='%s' leaves no GPU of this "
                "node; use --bind core or none\n",
                getenv("CUDA_VISIBLE_DEVICES"));
        bt__topo_destroy(t);
        return 2;
    }
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        allowed = t->cpus;
    r->place = calloc((size_t)r->nproc, sizeof(*r->place));
    if (!r->place) {
        fprintf(stderr, "baton run: out of memory\n");
        rc = BT_RUN_EXIT_LAUNCHER;
    }
    for (int i = 0; !rc && i < r->nproc; i++)
        if (plan_one(r, t, &c, &allowed, i, &err) != BT_OK) {
            fprintf(stderr, "baton run: %s\n", err.msg);
            rc = 2;
        }
    bt__topo_destroy(t);
    return rc;
}

int bt__run_bind_vars(const struct bt__run *r, const struct bt__worker *w, char **v)
{
    const struct bt__run_place *p;
    int n = 0, ok = 1;
    if (!r->place || w->ps_index >= 0)
        return 0;
    p = &r->place[w->local_rank];
#define ADD(...) ok &= asprintf(&v[n++], __VA_ARGS__) >= 0
    if (p->gpu[0])
        ADD("BATON_GPU=%s", p->gpu);
    if (p->gpu[0] && r->o.bind == BT_BIND_GPU) {
        ADD("CUDA_DEVICE_ORDER=PCI_BUS_ID");
        ADD("CUDA_VISIBLE_DEVICES=%s", p->gpu);
    }
    if (p->pl.nic_name[0] && r->spec.nnodes > 1 && !getenv("BATON_SOCKET_IFNAME"))
        ADD("BATON_SOCKET_IFNAME==%s", p->pl.nic_name);
#undef ADD
    return ok ? n : -1;
}

void bt__run_bind_apply(const struct bt__run *r, const struct bt__worker *w)
{
    struct bt__err err; /* written only on failure; the CPUs were checked against ours */
    if (!r->place || w->ps_index >= 0)
        return;
    bt__topo_apply(&r->place[w->local_rank].pl, &err); /* no allocation, no locks */
}
