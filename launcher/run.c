/* run.c: `baton run`: flags, then the generation loop.
 *
 *   parse flags -> detect the cluster spec (a TF ps pod runs its parameter server instead:
 *   run_ps.c) -> resolve PROGRAM -> --bind plan (run_bind.c) -> token
 *   -> open the rendezvous (node 0 hosts the store) -> for each generation g = 0, 1, ...:
 *        join (claim node rank, wait for all nodes, ranks by prefix sums)
 *        -> start the workers (and node 0's --ps servers) -> supervise until the outcome
 *           is known
 *        -> on a worker failure with restarts left: next generation, else stop
 *   -> report the root cause -> exit barrier (node 0 keeps the store up for the others)
 *
 * Exit status: 0 when every worker on every node exited 0; the root cause's status
 * otherwise (the failing worker's exit code or 128 + signal; 129 when a launcher or the
 * store went away); 128 + signal when baton itself was stopped by a signal; 2 for a usage
 * error or a launcher that node 0 refused (another job id, node count or an old generation);
 * 127/126 when PROGRAM is missing / not executable; 142 when nodes were still missing at
 * --join-timeout (their pods Pending? retryable); 1 when baton could not run the job (rendezvous
 * refused, duplicate node rank, ...). The parts: see run.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/cmds.h"
#include "launcher/flags.h"
#include "launcher/run.h"

/* Generated from the flag table (launcher/flags.c), so it lists exactly what parse() takes. */
const char *bt__cmd_run_usage(void)
{
    static char text[4096];
    static const char head[] =
        "usage: baton run [OPTIONS] -- PROGRAM [ARGS...]\n"
        "\n"
        "Starts the workers of this node, joins the other nodes through the rendezvous\n"
        "store that node 0 hosts, tags their output, and tears the whole job down when\n"
        "any worker fails.\n"
        "\n";
    static const char tail[] =
        "\n"
        "On a TFJob ps pod (TF_CONFIG task type ps) baton runs the parameter server itself\n"
        "and PROGRAM is not started.\n"
        "Exit status: 0 when every worker exited 0; else the first failure's exit code or\n"
        "128+signal (129: a node was lost); 142 nodes still missing at --join-timeout\n"
        "(retryable); 2 usage; 1 baton could not run the job.\n"
        "example: baton run -n 4 -- ./build/examples/hello\n";
    if (!text[0]) {
        size_t n = (size_t)snprintf(text, sizeof(text), "%s", head);
        bt__flags_usage(BT_FLAGS_RUN, text + n, sizeof(text) - n);
        n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "%s", tail);
    }
    return text;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "baton run: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; see 'baton help run'\n");
    va_end(ap);
    return 2;
}

/* Parses argv (argv[0] is "run"); returns 0, 1 for --help (usage printed), or 2. */
static int parse(int argc, char **argv, struct bt__run_opts *o)
{
    int i = 1;
    for (; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--"))
            return i + 1 < argc ? (o->argv = argv + i + 1, 0) : usage_error("no PROGRAM after --");
        if (a[0] != '-' || !a[1])
            break; /* PROGRAM without -- */
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return fputs(bt__cmd_run_usage(), stdout), 1;
        struct bt__err err = {0};
        int rc = bt__flags_parse(BT_FLAGS_RUN, &o->flags, o, argc, argv, &i, &err);
        const char *near = rc == 0 ? bt__flags_nearest(BT_FLAGS_RUN, a) : NULL;
        if (rc == 0)
            return usage_error("unknown option '%.*s'%s%s%s", (int)strcspn(a, "="), a,
                               near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
        if (rc < 0)
            return usage_error("%s", err.msg);
    }
    if (i >= argc)
        return usage_error("no PROGRAM to run; usage: baton run [OPTIONS] -- PROGRAM "
                           "[ARGS...]");
    o->argv = argv + i;
    return 0;
}

/* Visible GPUs: entries of CUDA_VISIBLE_DEVICES, else /dev/nvidiaN; 0 when none. */
static int gpu_count(void)
{
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    int n = 0;
    if (cvd) { /* CUDA stops at the first invalid entry ("-1", "NoDevFiles", "") */
        for (const char *p = cvd; *p && *p != '-' && *p != ',' && *p != 'N';
             p += strcspn(p, ",") + (p[strcspn(p, ",")] ? 1 : 0))
            n++;
        return n;
    }
    glob_t g;
    if (glob("/dev/nvidia[0-9]*", 0, NULL, &g) == 0) {
        n = (int)g.gl_pathc;
        globfree(&g);
    }
    return n;
}

/* auto: one worker per visible GPU; without one, one per CPU when -n auto was given (torchrun's
 * meaning: spec->nproc_cpu, which `baton spec` prints too), else 1 (the default, and a spec's
 * "auto"). */
static int auto_nproc(const struct bt__spec *s)
{
    int n = gpu_count();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0)
        return n;
    return s->nproc_cpu && ncpu > 0 ? (int)(ncpu < 4096 ? ncpu : 4096) : 1;
}

/* fds 0-2 open, so that pipes and sockets never land on them. */
static void std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return;
}

static int fail_launcher(struct bt__run *r, const struct bt__err *err, const char *what)
{
    if (bt__run_stop_sig) {
        fprintf(stderr, "baton: %s received %s while %s; exit %d\n", r->host,
                bt__signal_name(bt__run_stop_sig), what, 128 + bt__run_stop_sig);
        return 128 + bt__run_stop_sig;
    }
    if (r->refused) { /* another job's node 0: a configuration error, not retryable */
        fprintf(stderr, "baton: node %d (host %s): %s; exit 2\n", r->spec.node_rank, r->host,
                err->msg);
        return 2;
    }
    int pending = err->code == BT_ERR_TIMEOUT; /* nodes missing at --join-timeout */
    fprintf(stderr, "baton: node %d (host %s): %s", r->spec.node_rank, r->host, err->msg);
    if (pending)
        fprintf(stderr, "; exit %d (retryable)", BT_RUN_EXIT_PENDING);
    fputc('\n', stderr);
    return pending ? BT_RUN_EXIT_PENDING : BT_RUN_EXIT_LAUNCHER;
}

static void close_workers(struct bt__run *r)
{
    for (int i = 0; i < r->nchild; i++)
        if (!bt__run_child_kept(r, r->w[i].pid)) /* a server that outlives it keeps its pipes */
            bt__run_output_close(r, &r->w[i]);
}

/* One generation: start, supervise, stop. Returns BT_OK with *o set, or a launcher error. */
static int generation(struct bt__run *r, struct bt__outcome *o, struct bt__err *err)
{
    o->kind = 0;
    r->fails_len = 0;
    bt__run_flight_reset(r);
    __atomic_store_n(&r->metrics.running, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&r->metrics.succeeded, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&r->metrics.failed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&r->metrics.generation, r->restart, __ATOMIC_RELAXED);
    BT_CHECK(bt__run_watch_start(r, err));
    if (bt__run_torch_generation(r, err) != BT_OK || bt__run_spawn_all(r, err) != BT_OK) {
        o->kind = 'F';
        o->status = BT_RUN_EXIT_LAUNCHER;
        snprintf(o->line, sizeof(o->line), "node %d (host %s) could not start its workers: %s",
                 r->spec.node_rank, r->host, err->msg);
        bt__run_post_outcome(r, o);
    }
    bt__run_supervise(r, o);
    bt__run_timeline_generation_end(r);
    bt__run_tree_clear(r); /* what the workers left behind, and the job's shm names */
    bt__run_watch_stop(r);
    bt__run_forensics_settle(r, o); /* every node's failures: the earliest is the root cause */
    close_workers(r);
    return BT_OK;
}

static int report(struct bt__run *r, const struct bt__outcome *o)
{
    int status = bt__run_stop_sig ? 128 + bt__run_stop_sig : o->status;
    bt__run_flight_report(r);
    if (o->kind == 'S' && !bt__run_stop_sig) {
        if (r->store_lost) /* this node's part succeeded; the rest is not known here */
            fprintf(stderr, "baton: %s\n", o->line);
        return 0;
    }
    fprintf(stderr, "baton: job failed: %s\n", o->line);
    fputs(r->summary, stderr);
    fprintf(stderr, "baton: node %d (host %s) exits with status %d\n", r->spec.node_rank, r->host,
            status);
    bt__run_forensics_report(r, o, status);
    return status;
}

#define RESTART_BACKOFF_CAP_S 30.0 /* the longest wait between restarts (unless the base is) */

/* Seconds to wait before restart n (1-based): base, 2 base, 4 base, ... up to the cap, so a
 * worker that fails at once does not spin through its restarts. */
static double restart_delay(double base_s, int n)
{
    double cap = base_s > RESTART_BACKOFF_CAP_S ? base_s : RESTART_BACKOFF_CAP_S;
    double d = base_s;
    for (int i = 1; i < n && d < cap; i++)
        d *= 2;
    return d < cap ? d : cap;
}

/* Sleeps seconds in short slices; returns early (nonzero) once a stop signal arrived. */
static int backoff_wait(double seconds)
{
    int64_t end = bt__now_ns() + (int64_t)(seconds * 1e9);
    while (!bt__run_stop_sig) {
        int64_t left = end - bt__now_ns();
        if (left <= 0)
            return 0;
        struct timespec ts = {0, left < 50000000 ? (long)left : 50000000L};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* The job ended (l/end) while this launcher waited to join: its status, one line. */
static int ended(struct bt__run *r, const struct bt__err *err)
{
    fprintf(stderr, "baton: node %d (host %s): %s; exit %d\n", r->node_id, r->host, err->msg,
            r->ended_status);
    bt__run_rdzv_close(r, 0);
    return r->ended_status;
}

/* Elastic: after a generation, 1 when the job goes on at once with a new membership (a node
 * lost or joining: no restart used up; or this launcher lost the store and reconnected), 0
 * when the usual restart rules decide, -1 (err set) when the store cannot be reached again. */
static int elastic_again(struct bt__run *r, const struct bt__outcome *o, struct bt__err *err)
{
    if (bt__run_stop_sig || o->kind == 'S' || o->kind == 'T')
        return 0;
    if (r->store_lost) {
        bt__run_elastic_next(r, o);
        return bt__run_elastic_reconnect(r, err) == BT_OK ? 1 : -1;
    }
    if (o->kind != 'L' && o->kind != 'M')
        return 0;
    bt__run_elastic_next(r, o);
    return 1;
}

static int run_job(struct bt__run *r)
{
    struct bt__err err = {0};
    struct bt__outcome o = {0};
    if (r->inplace && bt__run_elastic_early(r, &err) != BT_OK) /* import while it joins */
        return fail_launcher(r, &err, "starting the workers");
    if (bt__run_rdzv_open(r, &err) != BT_OK)
        return fail_launcher(r, &err, "joining the rendezvous");
    bt__run_timeline_start(r);
    for (;;) {
        bt__run_timeline_join(r, 0);
        if (bt__run_join(r, &err) != BT_OK)
            return r->ended_status >= 0 ? ended(r, &err)
                                        : fail_launcher(r, &err, "waiting for the other nodes");
        bt__run_timeline_join(r, 1);
        if (generation(r, &o, &err) != BT_OK)
            return fail_launcher(r, &err, "starting the workers");
        int again = r->elastic ? elastic_again(r, &o, &err) : 0;
        if (again < 0)
            return fail_launcher(r, &err, "reconnecting to the rendezvous store");
        if (again)
            continue;
        if ((o.kind != 'F' && o.kind != 'H') || r->failures >= r->o.max_restarts ||
            bt__run_stop_sig)
            break;
        double delay = restart_delay(r->o.restart_backoff_s, r->failures + 1);
        char in[48] = "";
        if (delay > 0)
            snprintf(in, sizeof(in), " in %g s", delay);
        fprintf(stderr, "baton: restarting the workers%s (restart %d of %d) after: %s\n", in,
                r->failures + 1, r->o.max_restarts, o.line);
        if (backoff_wait(delay))
            break; /* report() names the signal: 128 + sig */
        r->failures++;
        if (r->elastic)
            bt__run_elastic_next(r, &o);
        else
            r->restart++;
    }
    bt__run_servers_stop(r); /* those that outlived the last generation */
    if (r->elastic)
        bt__run_elastic_end(r, &o);
    int status = report(r, &o);
    r->final_kind = o.kind;
    if (o.kind != 'L')
        bt__run_timeline_finish(r); /* node 0 gathers the others': before the store goes */
    bt__run_rdzv_close(r, 1);
    return status;
}

/* --ps: node 0 runs the servers (etcd: node rank 0); a TFJob's ps tasks are pods of their own. */
static int ps_layout(struct bt__run *r, int ranked)
{
    const struct bt__spec *s = &r->spec;
    if (r->o.nps > 0 && s->nps > 0)
        return usage_error("--ps %d: this TFJob already has %d ps task(s) of its own (TF_CONFIG); "
                           "drop --ps",
                           r->o.nps, s->nps);
    r->nps_job = !ranked ? 0 : s->nps > 0 ? s->nps : r->o.nps;
    /* etcd: whichever node is node rank 0 of a generation runs them (run_ps.c) */
    r->nchild = r->nproc + (ranked && (s->node_rank == 0 || r->etcd) ? r->o.nps : 0);
    return 0;
}

/* An unusable --log-dir costs the per-rank files, not the job: one line, and on without. */
static void check_log_dir(struct bt__run_opts *o)
{
    if (!o->log_dir)
        return;
    if ((mkdir(o->log_dir, 0755) != 0 && errno != EEXIST) || access(o->log_dir, W_OK | X_OK) != 0) {
        fprintf(stderr,
                "baton run: WARN: --log-dir %s: %s; the job runs without per-rank log files and "
                "flight-recorder dumps\n",
                o->log_dir, strerror(errno));
        o->log_dir = NULL;
    }
}

/* --nnodes MIN:MAX (or an elastic PyTorchJob): the node rank given is the node's identity. */
static int elastic_setup(struct bt__run *r, int ranked)
{
    const struct bt__spec *s = &r->spec;
    const char *tmp = getenv("TMPDIR");
    r->node_id = s->node_rank;
    if (!ranked || ((!s->elastic || s->nnodes_min >= s->nnodes_max) && !r->etcd))
        return 0;
    if (s->node_rank < 0)
        return usage_error("--nnodes %d:%d needs --node-rank R: the node's identity (node 0 "
                           "hosts the rendezvous store)",
                           s->nnodes_min, s->nnodes_max);
    r->elastic = 1;
    r->inplace = bt__run_elastic_inplace();
    r->expect = s->nnodes_max;
    if (!s->nnodes_min)
        r->spec.nnodes_min = r->spec.nnodes_max = s->nnodes; /* etcd, N nodes: N:N */
    snprintf(r->elastic_file, sizeof(r->elastic_file), "%s/baton-elastic-%d",
             tmp && *tmp ? tmp : "/tmp", (int)getpid());
    BT_INFO(LAUNCH, "elastic: %d..%d nodes, last call %g s, workers' file %s", s->nnodes_min,
            s->nnodes_max, r->o.last_call_s, r->elastic_file);
    return 0;
}

/* --rdzv-backend and --rdzv-endpoint, before the spec is detected. */
static int backend_flags(struct bt__run *r)
{
    struct bt__run_opts *o = &r->o;
    const char *b = o->rdzv_backend ? o->rdzv_backend : "c10d";
    char first[BT_SPEC_HOST_MAX + 8];
    r->etcd = !strcmp(b, "etcd");
    if (!r->etcd && strcmp(b, "c10d") && strcmp(b, "static"))
        return usage_error("--rdzv-backend '%s': want c10d (node 0 hosts the store) or etcd", b);
    if (r->etcd && !o->rdzv_endpoint)
        return usage_error("--rdzv-backend etcd needs --rdzv-endpoint HOST:PORT[,HOST:PORT...] "
                           "(the etcd members' client URLs)");
    if (!o->rdzv_endpoint || o->flags.rdzv)
        return 0;
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(o->rdzv_endpoint, ","), o->rdzv_endpoint);
    if (!r->etcd && strcmp(first, o->rdzv_endpoint))
        return usage_error("--rdzv-endpoint '%s': the c10d backend takes one HOST:PORT",
                           o->rdzv_endpoint);
    static char ep[BT_SPEC_HOST_MAX + 8]; /* the spec's --rdzv: the first member's host */
    snprintf(ep, sizeof(ep), "%s", first);
    o->flags.rdzv = ep;
    return 0;
}

static int setup(struct bt__run *r)
{
    struct bt__err err = {0};
    if (backend_flags(r) != 0)
        return 2;
    int rc = bt__run_torch_flags(&r->o, gpu_count());
    if (rc)
        return rc;
    if (bt__spec_detect(&r->o.flags, NULL, NULL, &r->spec, &err) != BT_OK) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return 2;
    }
    bt__run_torch_spec(r);
    if (r->spec.role == BT_ROLE_PS)
        return -1; /* the caller runs the server instead */
    if ((rc = bt__run_torch_argv(&r->o)) != 0)
        return rc;
    rc = bt__run_resolve_prog(r->o.argv[0], r->prog, sizeof(r->prog), &err);
    if (rc) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return rc;
    }
    int ranked = r->spec.role == BT_ROLE_WORKER || r->spec.role == BT_ROLE_CHIEF;
    r->nproc = !ranked                      ? 1
               : r->spec.nproc_per_node > 0 ? r->spec.nproc_per_node
                                            : auto_nproc(&r->spec);
    if (ps_layout(r, ranked) != 0)
        return 2;
    if (!ranked)
        r->o.bind = BT_BIND_NONE; /* an evaluator is not a local rank */
    if ((rc = bt__run_bind_setup(r)) != 0)
        return rc;
    if ((rc = elastic_setup(r, ranked)) != 0)
        return rc;
    if (gethostname(r->host, sizeof(r->host) - 1) != 0)
        snprintf(r->host, sizeof(r->host), "?");
    if ((rc = bt__run_token(r, &err)) != 0) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return rc;
    }
    check_log_dir(&r->o); /* before the error files' folder, which goes under it */
    if (bt__run_torch_errdir(r, &err) != BT_OK) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return BT_RUN_EXIT_LAUNCHER;
    }
    bt__run_torch_omp_note(r);
    if (bt__run_signals_install(&err) != BT_OK) {
        fprintf(stderr, "baton run: cannot set up: %s\n", err.msg);
        return BT_RUN_EXIT_LAUNCHER;
    }
    r->w = calloc((size_t)r->nchild, sizeof(*r->w));
    if (!r->w) {
        fprintf(stderr, "baton run: out of memory\n");
        return BT_RUN_EXIT_LAUNCHER;
    }
    if (bt__run_ps_setup(r, &err) != BT_OK) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return BT_RUN_EXIT_LAUNCHER;
    }
    bt__run_forensics_setup(r);
    return bt__run_tree_setup(r); /* last: no child may start before the watchdog */
}

int bt__cmd_run(int argc, char **argv)
{
    static struct bt__run r; /* the signal handlers and the watcher see it for the whole run */
    memset(&r, 0, sizeof(r));
    r.notify_fd = -1;
    r.tree.dog_fd = -1;
    r.o.flags = (struct bt__spec_flags){BT_SPEC_AUTO, -1, -1, -1, NULL, -1, 0};
    r.o.join_timeout_s = 300;
    r.o.grace_s = 10;
    r.o.restart_backoff_s = 1;
    r.o.last_call_s = 5;
    r.ended_status = -1;
    r.prev_gen = r.prev_rank = -1;
    r.o.tag_output = 1;
    r.o.metrics_port = -1;
    r.metrics_fd = -1;
    pthread_mutex_init(&r.metrics_mu, NULL);
    int rc = parse(argc, argv, &r.o);
    if (rc)
        return rc == 1 ? 0 : rc;
    std_fds();
    rc = setup(&r);
    if (rc < 0)
        return bt__run_ps_pod(&r);
    if (rc == 0) {
        bt__run_metrics_start(&r);
        rc = run_job(&r);
        bt__run_servers_stop(&r); /* a job that ended early (a rendezvous error) */
        bt__run_metrics_stop(&r);
        bt__run_tree_close(&r);
        bt__run_forensics_close(&r);
        bt__run_flight_close(&r);
    } else
        bt__run_rdzv_close(&r, 0);
    if (r.srv || r.st)
        bt__run_rdzv_close(&r, 0);
    bt__run_torch_close(&r);
    free(r.w);
    free(r.obuf);
    free(r.place);
    free(r.members);
    if (r.elastic_file[0])
        unlink(r.elastic_file);
    return rc;
}
