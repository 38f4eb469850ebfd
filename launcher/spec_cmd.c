/* spec_cmd.c: `baton spec`, which prints the cluster spec baton derives from this environment
 * and where each part came from; and the parser of the spec flags that `baton run` shares. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/param.h"
#include "launcher/cmds.h"
#include "launcher/spec.h"

static const char usage_text[] =
    "usage: baton spec [--spec SOURCE] [-n N|auto] [--nnodes N] [--node-rank R]\n"
    "                  [--rdzv HOST:PORT] [--rdzv-port PORT] [--json]\n"
    "\n"
    "Prints the cluster spec that `baton run` would derive from this environment with these\n"
    "flags, and the env variables and flags it came from. Exit 2 (one line on stderr) when the\n"
    "env is malformed or contradictory.\n"
    "\n"
    "  --spec SOURCE     auto (default), pytorchjob, tfjob, mpi, slurm, indexed, jaxjob, trainer,\n"
    "                    standalone\n"
    "  -n, --nproc-per-node N|auto   workers per node (auto: one per GPU, else 1)\n"
    "  --nnodes N        number of nodes (overrides the env)\n"
    "  --node-rank R     this node's rank (overrides the env)\n"
    "  --rdzv HOST:PORT  the rendezvous store's endpoint (node 0's address)\n"
    "  --rdzv-port PORT  the store's port (default: the master's port + 1)\n"
    "  --json            one JSON object: source, job_id, role, node_rank, nnodes,\n"
    "                    nproc_per_node (0 = auto), world_size (0 = not known yet), rdzv_host,\n"
    "                    rdzv_port, master_addr, master_port, elastic, nps, ps_hosts, from, ...\n";

const char *bt__cmd_spec_usage(void)
{
    return usage_text;
}

void bt__spec_flags_init(struct bt__spec_flags *f)
{
    f->source = BT_SPEC_AUTO;
    f->nproc_per_node = -1;
    f->nnodes = -1;
    f->node_rank = -1;
    f->rdzv = NULL;
    f->rdzv_port = -1;
}

static int flag_int(const char *flag, const char *v, int min, int max, int *out,
                    struct bt__err *err)
{
    int64_t x;
    if (strspn(v, "0123456789") != strlen(v) || bt__parse_int(v, &x) != 0 || x < min ||
        x > max) {
        bt__err_set(err, BT_ERR_INVALID_USAGE, "%s '%s': expected an integer in %d..%d", flag, v,
                    min, max);
        return -1;
    }
    *out = (int)x;
    return 1;
}

static int flag_value(struct bt__spec_flags *w, const char *flag, const char *v,
                      struct bt__err *err)
{
    if (!strcmp(flag, "--spec")) {
        int s = bt__spec_source_parse(v);
        if (s < 0) {
            bt__err_set(err, BT_ERR_INVALID_USAGE,
                        "--spec '%s': expected auto, pytorchjob, tfjob, mpi, slurm, indexed, "
                        "jaxjob, trainer or standalone", v);
            return -1;
        }
        w->source = (enum bt__spec_source)s;
        return 1;
    }
    if (!strcmp(flag, "-n") || !strcmp(flag, "--nproc-per-node")) {
        if (!strcmp(v, "auto")) {
            w->nproc_per_node = 0;
            return 1;
        }
        return flag_int(flag, v, 1, 1 << 20, &w->nproc_per_node, err);
    }
    if (!strcmp(flag, "--nnodes"))
        return flag_int(flag, v, 1, INT_MAX, &w->nnodes, err);
    if (!strcmp(flag, "--node-rank"))
        return flag_int(flag, v, 0, INT_MAX, &w->node_rank, err);
    if (!strcmp(flag, "--rdzv-port"))
        return flag_int(flag, v, 0, 65535, &w->rdzv_port, err);
    w->rdzv = v; /* --rdzv: checked by bt__spec_detect */
    return 1;
}

int bt__spec_parse_flag(struct bt__spec_flags *f, int argc, char **argv, int *i,
                        struct bt__err *err)
{
    static const char *const flags[] = {"--spec",      "-n",     "--nproc-per-node", "--nnodes",
                                        "--node-rank", "--rdzv", "--rdzv-port"};
    const char *a = argv[*i], *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
        if (strlen(flags[k]) != len || strncmp(a, flags[k], len))
            continue;
        if (!eq && *i + 1 >= argc) {
            bt__err_set(err, BT_ERR_INVALID_USAGE, "%s needs a value", flags[k]);
            return -1;
        }
        const char *v = eq ? eq + 1 : argv[++*i];
        return flag_value(f, flags[k], v, err);
    }
    return 0;
}

int bt__cmd_spec(int argc, char **argv)
{
    struct bt__spec_flags f;
    struct bt__err err = {0};
    struct bt__spec *spec;
    int json = 0, rc;
    bt__spec_flags_init(&f);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        rc = bt__spec_parse_flag(&f, argc, argv, &i, &err);
        if (rc == 0)
            bt__err_set(&err, BT_ERR_INVALID_USAGE, "unknown option '%s'; see 'baton help spec'",
                        argv[i]);
        if (rc <= 0) {
            fprintf(stderr, "baton spec: %s\n", err.msg);
            return 2;
        }
    }
    if (!(spec = malloc(sizeof(*spec)))) {
        fprintf(stderr, "baton spec: out of memory\n");
        return 1;
    }
    rc = bt__spec_detect(&f, NULL, NULL, spec, &err);
    if (rc != BT_OK)
        fprintf(stderr, "baton spec: %s\n", err.msg);
    else if (json)
        bt__spec_print_json(spec, stdout);
    else
        bt__spec_print(spec, stdout);
    free(spec);
    return rc == BT_OK ? 0 : 2;
}
