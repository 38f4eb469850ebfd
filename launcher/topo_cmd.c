/* topo_cmd.c: `baton topo`, which prints this machine's topology (or an hwloc XML file's):
 * packages, NUMA nodes, cores, GPUs and NICs with their locality, and the plan for N local
 * ranks: local rank -> GPU -> NUMA node -> CPUs -> NIC (launcher/topo.h has the rules).
 * Packages and NUMA nodes are shown by their OS numbers (those numactl and lstopo's P# use);
 * GPUs by their index in PCI bus order. Applying the plan is `baton run --bind`'s job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/topo.h"
#include "common/param.h"
#include "launcher/cmds.h"

#define MAX_RANKS 4096

static const char usage_text[] =
    "usage: baton topo [--xml FILE] [-n N|auto] [--bind none|core|numa|gpu] [--json]\n"
    "\n"
    "Prints the packages, NUMA nodes, cores, GPUs and NICs hwloc finds, each device with the\n"
    "package, NUMA node and CPUs nearest to it, then the plan `baton run --bind` applies:\n"
    "local rank -> GPU -> NUMA node -> CPUs -> NIC. Exit 2 (one line on stderr) when the\n"
    "topology file cannot be read or an option is wrong.\n"
    "\n"
    "  --xml FILE        read an hwloc XML topology (`lstopo --of xml`) instead of this\n"
    "                    machine's (default: $BATON_TOPO_XML when set)\n"
    "  -n, --nproc-per-node N|auto   local ranks to plan for (auto, the default: one per\n"
    "                    GPU, else 1)\n"
    "  --bind MODE       CPUs of each rank: gpu (the CPUs near its GPU; default when there\n"
    "                    are GPUs), core (an even share of its NUMA node's cores; default\n"
    "                    otherwise), numa (its NUMA node's CPUs), none\n"
    "  --json            one JSON object: source, host, packages, numa_nodes, cores, pus,\n"
    "                    gpus, nics, plan {local_size, bind, ranks[]}\n";

const char *bt__cmd_topo_usage(void)
{
    return usage_text;
}

struct opts {
    const char *xml; /* NULL: BATON_TOPO_XML or this machine */
    int nranks;      /* 0: auto */
    int bind;        /* an enum bt__bind, or -1 for the default */
    int json;
};

/* ---- options ---- */

static int opt_value(struct opts *o, const char *flag, const char *v)
{
    if (!strcmp(flag, "--xml")) {
        o->xml = v;
        return 0;
    }
    if (!strcmp(flag, "--bind")) {
        enum bt__bind b;
        if (bt__bind_parse(v, &b) != 0) {
            fprintf(stderr, "baton topo: --bind '%s': expected none, core, numa or gpu\n", v);
            return -1;
        }
        o->bind = (int)b;
        return 0;
    }
    int64_t n;
    if (!strcmp(v, "auto")) {
        o->nranks = 0;
        return 0;
    }
    if (strspn(v, "0123456789") != strlen(v) || bt__parse_int(v, &n) != 0 || n < 1 ||
        n > MAX_RANKS) {
        fprintf(stderr, "baton topo: %s '%s': expected auto or a number of local ranks in 1..%d\n",
                flag, v, MAX_RANKS);
        return -1;
    }
    o->nranks = (int)n;
    return 0;
}

/* Returns 0 to go on, 1 after --help, -1 after a usage error (already printed). */
static int parse(int argc, char **argv, struct opts *o)
{
    static const char *const valued[] = {"--xml", "-n", "--nproc-per-node", "--bind"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 1;
        }
        size_t k = 0;
        while (k < 4 && (strlen(valued[k]) != len || strncmp(a, valued[k], len)))
            k++;
        if (k == 4) {
            fprintf(stderr, "baton topo: unknown option '%s'; see 'baton help topo'\n", a);
            return -1;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "baton topo: %s needs a value; see 'baton help topo'\n", valued[k]);
            return -1;
        }
        if (opt_value(o, valued[k], eq ? eq + 1 : argv[++i]) != 0)
            return -1;
    }
    return 0;
}

/* ---- text output ---- */

static int pkg_os(const struct bt__topo *t, int i)
{
    return i >= 0 && i < t->npackages ? t->packages[i].os_index : -1;
}

static int numa_os(const struct bt__topo *t, int i)
{
    return i >= 0 && i < t->nnumas ? t->numas[i].os_index : -1;
}

/* "3" or "-" for unknown; buf holds 16 bytes. */
static const char *num(int v, char *buf)
{
    if (v < 0)
        return "-";
    snprintf(buf, 16, "%d", v);
    return buf;
}

static void print_cpu_objs(const struct bt__topo *t)
{
    char cl[1024], b[16];
    printf("packages:\n");
    for (int i = 0; i < t->npackages; i++)
        printf("  package %-3d cpus %s\n", t->packages[i].os_index,
               bt__cpulist_format(&t->packages[i].cpus, cl, sizeof(cl)));
    printf("NUMA nodes:\n");
    for (int i = 0; i < t->nnumas; i++)
        printf("  numa %-6d package %-3s cpus %-20s memory %.1f GiB\n", t->numas[i].os_index,
               num(pkg_os(t, t->numas[i].package), b),
               bt__cpulist_format(&t->numas[i].cpus, cl, sizeof(cl)),
               (double)t->numas[i].mem / (1 << 30));
}

static void print_loc(const struct bt__topo *t, const struct bt__topo_locality *l)
{
    char cl[1024], b1[16], b2[16];
    printf("package %-3s numa %-3s cpus %s\n", num(pkg_os(t, l->package), b1),
           num(numa_os(t, l->numa), b2), bt__cpulist_format(&l->cpus, cl, sizeof(cl)));
}

static void print_devices(const struct bt__topo *t)
{
    printf("GPUs:%s\n", t->ngpus ? "" : " none");
    for (int i = 0; i < t->ngpus; i++) {
        const struct bt__topo_gpu *g = &t->gpus[i];
        printf("  gpu %-3d %s  %-24s ", i, g->busid, g->name);
        print_loc(t, &g->loc);
    }
    printf("NICs:%s\n", t->nnics ? "" : " none");
    for (int i = 0; i < t->nnics; i++) {
        const struct bt__topo_nic *n = &t->nics[i];
        char what[2 * BT__TOPO_NAME_MAX + 4];
        snprintf(what, sizeof(what), "%s%s%s%s", n->name, n->rdma[0] ? " (" : "", n->rdma,
                 n->rdma[0] ? ")" : "");
        printf("  %-20s %-12s ", what, n->busid[0] ? n->busid : "-");
        print_loc(t, &n->loc);
    }
}

static void print_plan(const struct bt__topo *t, const struct bt__topo_place *pl, int n)
{
    char cl[1024], b1[16], b2[16];
    printf("plan for %d local rank%s (--bind %s):\n", n, n == 1 ? "" : "s",
           bt__bind_name(pl[0].bind));
    printf("  %-5s %-4s %-13s %-5s %-24s %s\n", "rank", "gpu", "gpu bus id", "numa", "cpus", "nic");
    for (int r = 0; r < n; r++)
        printf("  %-5d %-4s %-13s %-5s %-24s %s\n", r, num(pl[r].gpu, b1),
               pl[r].gpu_busid[0] ? pl[r].gpu_busid : "-", num(pl[r].numa_os, b2),
               pl[r].ncpus ? bt__cpulist_format(&pl[r].cpus, cl, sizeof(cl)) : "(not bound)",
               pl[r].nic_name[0] ? pl[r].nic_name : "-");
    if (n > 0 && pl[0].gpu_shared)
        printf("note: %d ranks on %d GPUs: rank i uses GPU i mod %d, so GPUs are shared\n", n,
               t->ngpus, t->ngpus);
}

static void print_text(const struct bt__topo *t, const struct bt__topo_place *pl, int n)
{
    printf("topology of %s%s%s%s: %d package%s, %d NUMA node%s, %d cores, %d CPUs, %d GPU%s, "
           "%d NIC%s\n",
           t->source, t->host[0] ? " (host " : "", t->host, t->host[0] ? ")" : "", t->npackages,
           t->npackages == 1 ? "" : "s", t->nnumas, t->nnumas == 1 ? "" : "s", t->ncores, t->npus,
           t->ngpus, t->ngpus == 1 ? "" : "s", t->nnics, t->nnics == 1 ? "" : "s");
    print_cpu_objs(t);
    print_devices(t);
    print_plan(t, pl, n);
}

/* ---- JSON output ---- */

static void jstr(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* An integer, or null when negative (unknown). */
static void jint(int v)
{
    if (v < 0)
        printf("null");
    else
        printf("%d", v);
}

static void jcpus(const cpu_set_t *set)
{
    char cl[4096];
    jstr(bt__cpulist_format(set, cl, sizeof(cl)));
}

static void json_loc(const struct bt__topo *t, const struct bt__topo_locality *l)
{
    printf(", \"package\": ");
    jint(pkg_os(t, l->package));
    printf(", \"numa\": ");
    jint(numa_os(t, l->numa));
    printf(", \"cpus\": ");
    jcpus(&l->cpus);
}

static void json_cpu_objs(const struct bt__topo *t)
{
    printf(", \"packages\": [");
    for (int i = 0; i < t->npackages; i++) {
        printf("%s{\"os_index\": %d, \"cpus\": ", i ? ", " : "", t->packages[i].os_index);
        jcpus(&t->packages[i].cpus);
        printf("}");
    }
    printf("], \"numa_nodes\": [");
    for (int i = 0; i < t->nnumas; i++) {
        printf("%s{\"os_index\": %d, \"package\": ", i ? ", " : "", t->numas[i].os_index);
        jint(pkg_os(t, t->numas[i].package));
        printf(", \"memory_bytes\": %llu, \"cpus\": ", t->numas[i].mem);
        jcpus(&t->numas[i].cpus);
        printf("}");
    }
    printf("], \"cores\": %d, \"pus\": %d", t->ncores, t->npus);
}

static void json_devices(const struct bt__topo *t)
{
    printf(", \"gpus\": [");
    for (int i = 0; i < t->ngpus; i++) {
        const struct bt__topo_gpu *g = &t->gpus[i];
        printf("%s{\"index\": %d, \"busid\": \"%s\", \"vendor\": \"0x%04x\", \"device\": "
               "\"0x%04x\", \"name\": ",
               i ? ", " : "", i, g->busid, g->vendor, g->device);
        jstr(g->name);
        json_loc(t, &g->loc);
        printf("}");
    }
    printf("], \"nics\": [");
    for (int i = 0; i < t->nnics; i++) {
        const struct bt__topo_nic *n = &t->nics[i];
        printf("%s{\"name\": ", i ? ", " : "");
        jstr(n->name);
        printf(", \"rdma\": ");
        jstr(n->rdma);
        printf(", \"busid\": \"%s\"", n->busid);
        json_loc(t, &n->loc);
        printf("}");
    }
    printf("]");
}

static void json_rank(const struct bt__topo *t, const struct bt__topo_place *p)
{
    printf("{\"local_rank\": %d, \"gpu\": ", p->local_rank);
    jint(p->gpu);
    printf(", \"gpu_busid\": \"%s\", \"gpu_shared\": %s, \"numa\": ", p->gpu_busid,
           p->gpu_shared ? "true" : "false");
    jint(p->numa_os);
    printf(", \"package\": ");
    jint(pkg_os(t, p->package));
    printf(", \"cpus\": ");
    jcpus(&p->cpus);
    printf(", \"nic\": ");
    jstr(p->nic_name);
    printf("}");
}

static void print_json(const struct bt__topo *t, const struct bt__topo_place *pl, int n)
{
    printf("{\"source\": ");
    jstr(t->source);
    printf(", \"host\": ");
    jstr(t->host);
    json_cpu_objs(t);
    json_devices(t);
    printf(", \"plan\": {\"local_size\": %d, \"bind\": \"%s\", \"ranks\": [", n,
           bt__bind_name(pl[0].bind));
    for (int r = 0; r < n; r++) {
        printf("%s", r ? ", " : "");
        json_rank(t, &pl[r]);
    }
    printf("]}}\n");
}

/* ---- the command ---- */

static int plan_all(const struct bt__topo *t, const struct opts *o, struct bt__topo_place **out,
                    int *n, struct bt__err *err)
{
    *n = o->nranks ? o->nranks : (t->ngpus ? t->ngpus : 1);
    enum bt__bind mode = o->bind >= 0 ? (enum bt__bind)o->bind
                                      : (t->ngpus ? BT_BIND_GPU : BT_BIND_CORE);
    *out = calloc((size_t)*n, sizeof(**out));
    if (!*out)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    for (int r = 0; r < *n; r++)
        BT_CHECK(bt__topo_plan(t, r, *n, mode, &(*out)[r], err));
    return BT_OK;
}

int bt__cmd_topo(int argc, char **argv)
{
    struct opts o = {.xml = NULL, .nranks = 0, .bind = -1, .json = 0};
    struct bt__err err = {0};
    struct bt__topo *t = NULL;
    struct bt__topo_place *pl = NULL;
    int n = 0, rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    rc = bt__topo_load(o.xml, &t, &err);
    if (rc == BT_OK)
        rc = plan_all(t, &o, &pl, &n, &err);
    if (rc == BT_OK && o.json)
        print_json(t, pl, n);
    else if (rc == BT_OK)
        print_text(t, pl, n);
    else
        fprintf(stderr, "baton topo: %s\n", err.msg);
    free(pl);
    bt__topo_destroy(t);
    if (rc == BT_OK)
        return fflush(stdout) == 0 ? 0 : 1;
    return rc == BT_ERR_INVALID_ARG || rc == BT_ERR_INVALID_USAGE ? 2 : 1;
}
