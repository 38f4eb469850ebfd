/* spec_cmd.c: `baton spec`, which prints the cluster spec baton derives from this environment
 * and where each part came from. Its flags are the spec subset of launcher/flags.c's table. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/param.h"
#include "launcher/cmds.h"
#include "launcher/flags.h"
#include "launcher/spec.h"

static const char usage_text[] =
    "usage: baton spec [--spec SOURCE] [-n N|auto] [--nnodes N|MIN:MAX] [--node-rank R]\n"
    "                  [--rdzv HOST:PORT] [--rdzv-port PORT] [--json]\n"
    "\n"
    "Prints the cluster spec that `baton run` would derive from this environment with these\n"
    "flags, and the env variables and flags it came from. Exit 2 (one line on stderr) when the\n"
    "env is malformed or contradictory.\n"
    "\n"
    "  --spec SOURCE     auto (default), pytorchjob, tfjob, mpi, slurm, indexed, jaxjob, trainer,\n"
    "                    standalone\n"
    "  -n, --nproc-per-node N|auto   workers per node (auto: one per GPU, else one per CPU;\n"
    "                    without -n: one per GPU, else 1)\n"
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
    f->nnodes_min = 0;
}

int bt__spec_parse_flag(struct bt__spec_flags *f, int argc, char **argv, int *i,
                        struct bt__err *err)
{
    return bt__flags_parse(BT_FLAGS_SPEC, f, NULL, argc, argv, i, err);
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
