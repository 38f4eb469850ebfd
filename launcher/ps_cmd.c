/* ps_cmd.c: `baton ps`, a parameter server (collectives/ps/server.c) as a command.
 *
 * Flags override the env (BATON_PS_*, BATON_RDZV, BATON_TOKEN, BATON_TIMEOUT) that `baton run`
 * sets for the servers it starts (`--ps N`, TFJob ps pods). The server publishes its address
 * in the store, serves every generation of the job, and exits 0 once every worker of the
 * current generation has closed, the chief said the job is done, or on SIGTERM/SIGINT (after
 * writing its checkpoint when a directory is set).
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/ps/ps.h"
#include "common/log.h"
#include "common/param.h"
#include "launcher/cmds.h"

const char *bt__cmd_ps_usage(void)
{
    return "usage: baton ps [options]\n"
           "Runs a parameter server for the workers of this job (what `baton run --ps N` and a\n"
           "TFJob ps pod run). It publishes its address in the rendezvous store under\n"
           "ps/server/<index>; the workers of every generation find it there.\n\n"
           "  --index I              this server's index, 0..N-1 (BATON_PS_INDEX; default: the\n"
           "                         next free one from the store; give it for restartable servers)\n"
           "  --rdzv HOST:PORT       the rendezvous store (BATON_RDZV)\n"
           "  --host ADDR            address to bind and publish (BATON_PS_HOST; default: all,\n"
           "                         publishing the address of the route to the store)\n"
           "  --port P               port (BATON_PS_PORT; default 0: any free one)\n"
           "  --checkpoint-dir DIR   write DIR/ps-<index>.ckpt and reload it at start\n"
           "                         (BATON_PS_CKPT_DIR)\n"
           "  --checkpoint-secs S    checkpoint every S seconds (BATON_PS_CKPT_SECS; 0: only at\n"
           "                         exit and on SIGTERM)\n"
           "  --checkpoint-steps N   checkpoint every N steps (BATON_PS_CKPT_STEPS)\n"
           "  --checkpoint-sync      write the checkpoint before acknowledging any push, so a\n"
           "                         restarted server applies every push exactly once\n"
           "                         (BATON_PS_CKPT_SYNC=1)\n"
           "  --timeout SEC          how long a sync step waits for a missing worker\n"
           "                         (BATON_TIMEOUT, default 300)\n"
           "  --keep-running         do not exit when every worker has closed\n"
           "The job token comes from BATON_TOKEN. Exit status 0 when the job is done.\n";
}

static int bad(const char *flag, const char *val, const char *why)
{
    fprintf(stderr, "baton ps: --%s '%s': %s; see 'baton help ps'\n", flag, val, why);
    return 2;
}

static int num(const char *flag, const char *s, double lo, double hi, double *out)
{
    if (bt__parse_dbl(s, out) != 0 || *out < lo || *out > hi)
        return bad(flag, s, "not a number in range");
    return 0;
}

static int parse(int argc, char **argv, struct bt__ps_server_cfg *cfg)
{
    static const struct option opts[] = {{"index", 1, 0, 'i'},
                                         {"rdzv", 1, 0, 'r'},
                                         {"host", 1, 0, 'H'},
                                         {"port", 1, 0, 'p'},
                                         {"checkpoint-dir", 1, 0, 'd'},
                                         {"checkpoint-secs", 1, 0, 's'},
                                         {"checkpoint-steps", 1, 0, 'n'},
                                         {"checkpoint-sync", 0, 0, 'S'},
                                         {"timeout", 1, 0, 't'},
                                         {"keep-running", 0, 0, 'k'},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    double v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        const char *a = optarg, *flag = opts[0].name;
        for (int k = 0; opts[k].name; k++)
            if (opts[k].val == c)
                flag = opts[k].name;
        int rc = 0;
        switch (c) {
        case 'i': rc = num(flag, a, 0, 65535, &v), cfg->index = (int)v; break;
        case 'p': rc = num(flag, a, 0, 65535, &v), cfg->port = (int)v; break;
        case 's': rc = num(flag, a, 0, 1e9, &v), cfg->ckpt_secs = v; break;
        case 'n': rc = num(flag, a, 0, 1e15, &v), cfg->ckpt_steps = (int64_t)v; break;
        case 't': rc = num(flag, a, 0.001, 1e9, &v), cfg->timeout_s = v; break;
        case 'r': cfg->rdzv = a; break;
        case 'H': cfg->host = cfg->advertise = a; break;
        case 'd': cfg->ckpt_dir = a; break;
        case 'k': cfg->exit_when_done = 0; break;
        case 'S': cfg->ckpt_sync = 1; break;
        case 'h': fputs(bt__cmd_ps_usage(), stdout); return -1;
        default:
            fprintf(stderr, "baton ps: unknown or incomplete option '%s'; see 'baton help ps'\n",
                    argv[optind - 1]);
            return 2;
        }
        if (rc)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "baton ps: unexpected argument '%s'; see 'baton help ps'\n", argv[optind]);
        return 2;
    }
    return 0;
}

int bt__cmd_ps(int argc, char **argv)
{
    struct bt__ps_server_cfg cfg;
    bt__ps_server_cfg_env(&cfg);
    int rc = parse(argc, argv, &cfg);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!cfg.rdzv || !*cfg.rdzv)
        fprintf(stderr, "baton ps: no rendezvous store (--rdzv or BATON_RDZV): the workers "
                        "cannot find this server unless they are given its address\n");
    return bt__ps_process_main(&cfg);
}

/* ---- the server process: what a process that is only a parameter server sets up ---- */

static struct bt__ps_server *volatile sig_srv;

static void on_signal(int sig)
{
    (void)sig;
    if (sig_srv)
        bt__ps_server_stop(sig_srv);
}

int bt__ps_process_main(const struct bt__ps_server_cfg *cfg)
{
    struct bt__err err = {0};
    struct bt__ps_server *s;
    /* A server process receives many large frames: keep freed buffers in the heap for reuse
     * instead of glibc mmap()ing each one afresh and faulting every page in again (first-touch
     * page faults dominated a 64 MB push on a VM). This process is only a server. */
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    if (bt__ps_server_create(cfg, &s, NULL, &err) != BT_OK) {
        BT_WARN(PS, "baton ps: %s", err.msg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal}, old_term, old_int;
    sigemptyset(&sa.sa_mask);
    sig_srv = s;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    signal(SIGPIPE, SIG_IGN);
    int rc = bt__ps_server_run(s);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sig_srv = NULL;
    bt__ps_server_destroy(s);
    return rc == BT_OK ? 0 : 1;
}
