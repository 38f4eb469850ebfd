/* main.c: the `baton` program's entry: dispatches to a subcommand. Nothing else lives here. */
#include <stdio.h>
#include <string.h>

#include "baton.h"
#include "launcher/cmds.h"

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *(*usage)(void);
    const char *summary;
};

static const struct cmd cmds[] = {
    {"run", bt__cmd_run, bt__cmd_run_usage, "start, supervise and report on training processes"},
    {"spec", bt__cmd_spec, bt__cmd_spec_usage, "print the cluster spec derived from this env"},
    {"topo", bt__cmd_topo, bt__cmd_topo_usage, "print the topology and the binding plan"},
    {"k8s", bt__cmd_k8s, bt__cmd_k8s_usage,
     "render|apply|delete|local: a PyTorchJob or TFJob without Kubeflow"},
    {"ps", bt__cmd_ps, bt__cmd_ps_usage, "run a parameter server (what `baton run` starts for ps)"},
    {"trace", bt__cmd_trace, bt__cmd_trace_usage, "analyse flight-recorder dumps of a failed job"},
    {"tune", bt__cmd_tune, bt__cmd_tune_usage, "measure alpha, beta, gamma for the cost model"},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *out)
{
    fprintf(out,
            "baton %s: distributed training launcher and runtime\n\nusage: baton COMMAND "
            "[ARGS]\n\ncommands:\n",
            BATON_VERSION_STRING);
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(out, "  %-6s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(out, "  help   baton help COMMAND (or baton COMMAND --help) shows its options\n\n"
                 "example: baton run -n 4 -- ./build/examples/mnist_cnn --epochs 2\n");
}

static const struct cmd *find(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (!strcmp(cmds[i].name, name))
            return &cmds[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("baton %s\n", BATON_VERSION_STRING);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        const struct cmd *c = argc > 2 ? find(argv[2]) : NULL;
        if (argc > 2 && !c) {
            fprintf(stderr, "baton: unknown command '%s'; see 'baton help'\n", argv[2]);
            return 2;
        }
        if (c)
            fputs(c->usage(), stdout);
        else
            usage(stdout);
        return 0;
    }
    const struct cmd *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "baton: unknown command '%s'; see 'baton help'\n", argv[1]);
        return 2;
    }
    if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        fputs(c->usage(), stdout); /* `baton CMD --help` is `baton help CMD` */
        return 0;
    }
    return c->fn(argc - 1, argv + 1);
}
