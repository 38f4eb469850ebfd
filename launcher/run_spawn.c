/* run_spawn.c: starts the workers of one generation.
 *
 * Each worker gets the env contract of DESIGN.md (BATON_* and the torchrun names, plus a
 * per-process TF_CONFIG for TF roles), its own process group (so a signal reaches whatever it
 * forks), the job's cgroup when there is one (run_tree.c: so baton finds whatever it forks,
 * wherever that moves; the watchdog hears of each child's pid), PR_SET_PDEATHSIG=SIGKILL (so a
 * SIGKILL of baton leaves no worker behind; getppid() is checked after setting it, closing the race
 * with a parent that died before), and pipes for stdout and stderr unless output goes straight to
 * baton's own fds (--no-tag-output without --log-dir). Parameter servers (--ps, run_ps.c) are
 * children started the same way, running `baton ps --index I`; with --bind the child binds itself
 * to its planned CPUs (run_bind.c) before exec. Everything the child needs is prepared before fork:
 * between fork and exec the child only calls async-signal-safe functions, since baton has threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/param.h"
#include "launcher/run.h"
#include "rendezvous/store.h"

extern char **environ;

/* Names baton sets for a worker; the same names in baton's own env are dropped. */
static const char *const set_names[] = {
    "BATON_RANK",
    "BATON_WORLD_SIZE",
    "BATON_LOCAL_RANK",
    "BATON_LOCAL_WORLD_SIZE",
    "BATON_NODE_RANK",
    "BATON_NNODES",
    "BATON_ROLE",
    "BATON_RDZV",
    "BATON_JOB_ID",
    "BATON_TOKEN",
    "BATON_RESTART_COUNT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TF_CONFIG",
    "BATON_LAUNCHER_PID",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_ERROR_FILE",
    "ROLE_NAME",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "BATON_ERROR_FILE",
    "BATON_RDZV_RELAY",
};
#define NSET (sizeof(set_names) / sizeof(set_names[0]))

BT_PARAM_INT(relay_on, "BATON_RDZV_RELAY_ON", 1)

int bt__run_relay_on(void)
{
    return bt__param_relay_on() != 0;
}

static int is_set_name(const char *kv)
{
    size_t n = strcspn(kv, "=");
    for (size_t i = 0; i < NSET; i++)
        if (strlen(set_names[i]) == n && !strncmp(kv, set_names[i], n))
            return 1;
    return 0;
}

static int resolve_one(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 127;
    if (S_ISDIR(sb.st_mode) || access(path, X_OK) != 0)
        return 126;
    return 0;
}

int bt__run_resolve_prog(const char *name, char *out, size_t n, struct bt__err *err)
{
    int rc = 127;
    if (strchr(name, '/')) {
        snprintf(out, n, "%s", name);
        rc = resolve_one(out);
    } else {
        const char *path = getenv("PATH");
        path = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
        for (const char *p = path; rc != 0; p += strcspn(p, ":") + 1) {
            int dl = (int)strcspn(p, ":");
            snprintf(out, n, "%.*s%s%s", dl, dl ? p : ".", "/", name);
            int r1 = resolve_one(out);
            rc = r1 == 0 ? 0 : (r1 == 126 && rc == 127 ? 126 : rc);
            if (!p[dl])
                break;
        }
    }
    if (rc == 127)
        bt__err_set(err, BT_ERR_INVALID_USAGE,
                    "%s: program not found%s; hint: check the path "
                    "after --",
                    name, strchr(name, '/') ? "" : " in PATH");
    else if (rc == 126)
        bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: not an executable file (permission denied)",
                    name);
    return rc;
}

#define NVARS (NSET + 17) /* room for every name worker_vars may set */

/* A parameter server's env: not a rank; BATON_RDZV that every node can reach. Like a worker,
 * it gets the worker token (its store keys are ps/...; its clients are workers). */
static int server_vars(const struct bt__run *r, const char *wtoken, char **v)
{
    char rdzv[BT_SPEC_HOST_MAX + 16];
    int n = 0, ok = 1;
    bt__run_ps_rdzv(r, rdzv, sizeof(rdzv));
#define ADD(...) ok &= asprintf(&v[n++], __VA_ARGS__) >= 0
    ADD("BATON_ROLE=ps");
    ADD("BATON_RDZV=%s", rdzv);
    if (r->relay) /* it publishes its address through this node's relay, as a worker */
        ADD("BATON_RDZV_RELAY=%s", bt__store_relay_address(r->relay));
    ADD("BATON_JOB_ID=%s", r->job_id);
    ADD("BATON_TOKEN=%s", wtoken);
    ADD("BATON_RESTART_COUNT=%d", r->restart);
    ADD("BATON_LAUNCHER_PID=%d", (int)getpid());
    ADD("BATON_PS_SERVERS=%d", r->nps_job);
#undef ADD
    return ok ? n : -1;
}

/* Builds "NAME=value" strings of one worker's contract; returns how many (< NVARS). BATON_TOKEN
 * is the worker token (common/auth.h), not the job token: the store lets a worker write
 * everything but the launchers' keys. */
static int worker_vars(const struct bt__run *r, const struct bt__worker *w, char **v)
{
    const struct bt__spec *s = &r->spec;
    int n = 0, ok = 1;
    char wtoken[BT__AUTH_WORKER_TOKEN];
    if (bt__auth_worker_token(r->token, wtoken) != 0)
        return -1;
    if (w->ps_index >= 0)
        return server_vars(r, wtoken, v);
#define ADD(...) ok &= asprintf(&v[n++], __VA_ARGS__) >= 0
    ADD("BATON_ROLE=%s", bt__role_name(s->role));
    ADD("BATON_RDZV=%s", r->rdzv_env);
    if (r->relay)
        ADD("BATON_RDZV_RELAY=%s", bt__store_relay_address(r->relay));
    ADD("BATON_JOB_ID=%s", r->job_id);
    ADD("BATON_TOKEN=%s", wtoken);
    ADD("BATON_RESTART_COUNT=%d", r->restart);
    ADD("BATON_LAUNCHER_PID=%d", (int)getpid());
    if (w->flight_fd >= 0)
        ADD("BATON_FLIGHT_FD=%d", w->flight_fd);
    if (w->errfile[0]) {
        ADD("BATON_ERROR_FILE=%s", w->errfile);
        ADD("TORCHELASTIC_ERROR_FILE=%s", w->errfile);
    }
    if (s->role == BT_ROLE_PS || s->role == BT_ROLE_EVALUATOR)
        goto tf; /* not a rank: no rank variables, so bt_init does not take it for one */
    ADD("BATON_RANK=%d", w->rank);
    ADD("BATON_WORLD_SIZE=%d", r->world_size);
    ADD("BATON_LOCAL_RANK=%d", w->local_rank);
    ADD("BATON_LOCAL_WORLD_SIZE=%d", r->nproc);
    ADD("BATON_NODE_RANK=%d", s->node_rank);
    ADD("BATON_NNODES=%d", s->nnodes);
    ADD("RANK=%d", w->rank);
    ADD("WORLD_SIZE=%d", r->world_size);
    ADD("LOCAL_RANK=%d", w->local_rank);
    ADD("LOCAL_WORLD_SIZE=%d", r->nproc);
    ADD("GROUP_RANK=%d", s->node_rank);
    ADD("GROUP_WORLD_SIZE=%d", s->nnodes);
    ADD("MASTER_ADDR=%s", r->master_addr);
    ADD("MASTER_PORT=%d", r->master_port);
    if (r->nps_job > 0)
        ADD("BATON_PS_SERVERS=%d", r->nps_job);
    if (r->elastic_file[0])
        ADD("BATON_ELASTIC_FILE=%s", r->elastic_file);
    int nb = bt__run_bind_vars(r, w, v + n);
    ok &= nb >= 0;
    n += nb > 0 ? nb : 0;
    nb = bt__run_torch_vars(r, w, v + n);
    ok &= nb >= 0;
    n += nb > 0 ? nb : 0;
tf:
    if (s->tf_cluster_json[0])
        ADD("TF_CONFIG={\"cluster\":%s,\"task\":{\"type\":\"%s\",\"index\":%d}%s%s%s}",
            s->tf_cluster_json, bt__role_name(s->role),
            s->tf_task_index >= 0 ? s->tf_task_index : 0,
            s->tf_environment[0] ? ",\"environment\":\"" : "", s->tf_environment,
            s->tf_environment[0] ? "\"" : "");
#undef ADD
    return ok ? n : -1;
}

/* Whether environ entry kv is replaced: a name baton always owns, or one set in v[0..n). */
static int replaced(const char *kv, char *const *v, int n)
{
    size_t len = strcspn(kv, "=");
    if (is_set_name(kv))
        return 1;
    for (int i = 0; i < n; i++)
        if (!strncmp(kv, v[i], len) && v[i][len] == '=')
            return 1;
    return 0;
}

/* environ less the names baton sets, then the worker's own; NULL-terminated, malloc'd.
 * *nown is how many entries (at the end) are malloc'd. */
static char **worker_env(const struct bt__run *r, const struct bt__worker *w, int *nown)
{
    size_t ne = 0, k = 0;
    char *v[NVARS];
    while (environ[ne])
        ne++;
    int nv = worker_vars(r, w, v);
    char **env = nv < 0 ? NULL : calloc(ne + (size_t)nv + 1, sizeof(char *));
    if (!env) { /* out of memory: what asprintf left is not freed */
        for (int i = 0; nv > 0 && i < nv; i++)
            free(v[i]);
        return NULL;
    }
    for (size_t i = 0; i < ne; i++)
        if (!replaced(environ[i], v, nv))
            env[k++] = environ[i];
    memcpy(env + k, v, (size_t)nv * sizeof(char *));
    *nown = nv;
    return env;
}

static void free_env(char **env, int nown)
{
    size_t n = 0;
    while (env[n])
        n++;
    for (size_t i = n - (size_t)nown; i < n; i++)
        free(env[i]);
    free(env);
}

/* The child between fork and exec: async-signal-safe calls only. */
static void child(const struct bt__run *r, const struct bt__worker *w, char **env, const int *po,
                  const int *pe, pid_t parent, const sigset_t *mask)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &dfl, NULL);
    setpgid(0, 0);
    if (w->ps_index < 0)      /* a --ps server may outlive a generation: not in the job's cgroup, */
        bt__run_tree_join(r); /* whose every member a teardown signals */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(BT_RUN_EXIT_LAUNCHER);
    if (po[1] >= 0 && (dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0))
        _exit(BT_RUN_EXIT_LAUNCHER);
    bt__run_bind_apply(r, w);
    if (w->flight_fd >= 0) /* its own recorder only: the others' stay close-on-exec */
        fcntl(w->flight_fd, F_SETFD, 0);
    sigprocmask(SIG_SETMASK, mask, NULL);
    execve(w->prog, w->argv, env);
    int e = errno;
    static const char m1[] = "baton: cannot execute ", m2[] = ": exec failed (errno ";
    char num[8] = {0};
    int d = e, k = 6;
    do
        num[k--] = (char)('0' + d % 10);
    while ((d /= 10) && k >= 0);
    (void)!write(2, m1, sizeof(m1) - 1);
    (void)!write(2, w->prog, strlen(w->prog));
    (void)!write(2, m2, sizeof(m2) - 1);
    (void)!write(2, num + k + 1, (size_t)(6 - k));
    (void)!write(2, ")\n", 2);
    _exit(e == ENOENT ? 127 : 126);
}

static void close_pair(int *p)
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            close(p[i]);
    p[0] = p[1] = -1;
}

static int spawn_one(struct bt__run *r, struct bt__worker *w, char **env, struct bt__err *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    int piped = r->o.tag_output || r->o.log_dir;
    if (piped && (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0)) {
        int e = errno;
        close_pair(po);
        return bt__err_set(err, BT_ERR_SYSTEM, "pipe for %s: %s", w->tag, strerror(e));
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child(r, w, env, po, pe, parent, &old);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        close_pair(po);
        close_pair(pe);
        return bt__err_set(err, BT_ERR_SYSTEM, "fork for %s: %s", w->tag, strerror(e));
    }
    setpgid(pid, pid); /* also in the child: whichever runs first */
    w->pid = pid;
    w->running = 1;
    if (w->ps_index < 0)
        __atomic_fetch_add(&r->metrics.running, 1, __ATOMIC_RELAXED);
    bt__run_tree_started(r, pid);
    if (piped) {
        close(po[1]);
        close(pe[1]);
        w->out.fd = po[0];
        w->err.fd = pe[0];
        fcntl(po[0], F_SETFL, O_NONBLOCK);
        fcntl(pe[0], F_SETFL, O_NONBLOCK);
    }
    return BT_OK;
}

/* Children in order: the servers first (the workers look for them in the store), then the
 * workers. */
/* The node's store relay (rendezvous/relay.c), unless BATON_RDZV_RELAY_ON=0. With baton's own
 * store the launcher made it when it connected (run_rdzv.c: its own connection is the relay's).
 * With --rdzv-backend etcd the workers' store is node rank 0's of the generation (BATON_RDZV):
 * a relay to it, made here before the first generation's workers and again when that store
 * moved (a new node rank 0); the launchers' own traffic goes to etcd, not through it. A relay
 * that could not start for a store (relay_own's or this function's WARN) is not tried again
 * for it: one WARN, and the workers connect directly in every generation. */
static void relay_ensure(struct bt__run *r)
{
    char host[BT_SPEC_HOST_MAX];
    int port = 0;
    if (!bt__param_relay_on() || r->relay_own || !strcmp(r->rdzv_env, r->relay_for))
        return; /* tried for this store already: made, or one WARN said why not */
    bt__store_relay_destroy(r->relay);
    r->relay = NULL;
    struct bt__err e = {0};
    snprintf(r->relay_for, sizeof(r->relay_for), "%s", r->rdzv_env);
    if (bt__parse_endpoint(r->rdzv_env, host, sizeof(host), &port) != 0 || port <= 0)
        return; /* the workers' store is not HOST:PORT: they say so themselves */
    if (bt__store_relay_create(host, port, r->token, &r->relay, &e) != BT_OK)
        fprintf(stderr, "baton: WARN: no store relay on this node (%s); workers connect directly\n",
                e.msg);
}

/* Starts child w with this generation's env. */
static int start_child(struct bt__run *r, struct bt__worker *w, struct bt__err *err)
{
    int nown = 0;
    w->pid = 0;
    w->running = 0;
    w->status = 0;
    w->adopt_by = 0;
    w->replace = 0;
    BT_CHECK(bt__run_output_open(r, w, err));
    bt__run_forensics_spawn(r, w);
    bt__run_flight_spawn(r, w);
    char **env = worker_env(r, w, &nown);
    if (!env)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory building %.*s's env",
                           (int)strlen(w->tag) - 1, w->tag);
    int rc = spawn_one(r, w, env, err);
    bt__run_flight_spawned(w);
    free_env(env, nown);
    return rc;
}

/* In place: worker w runs on from the last generation (or was started before this one formed,
 * early: then it has no previous generation to leave, and no deadline). */
static void keep_worker(struct bt__run *r, struct bt__worker *w, int early)
{
    w->rank = r->first_rank + w->local_rank;
    snprintf(w->tag, sizeof(w->tag), "[%d] ", w->rank);
    w->adopt_by = early ? 0 : bt__deadline_in(bt__run_elastic_adopt_s());
    __atomic_fetch_add(&r->metrics.running, 1, __ATOMIC_RELAXED);
    if (!early)
        fprintf(stderr,
                "baton: rank %d (pid %d) stays in place into generation %d (BATON_ELASTIC_FILE "
                "tells it its new rank; BATON_ELASTIC_ADOPT %g s to take it up)\n",
                w->rank, (int)w->pid, r->restart, bt__run_elastic_adopt_s());
}

int bt__run_spawn_all(struct bt__run *r, struct bt__err *err)
{
    relay_ensure(r);
    for (int k = 0; k < r->nchild; k++) {
        int i = (k + r->nproc) % r->nchild;
        struct bt__worker *w = &r->w[i];
        if (i < r->nproc && w->running) { /* in place: kept, or started early */
            keep_worker(r, w, r->early);
            continue;
        }
        if (i < r->nproc) {
            w->ps_index = -1;
            w->local_rank = i;
            w->rank = r->first_rank + i;
            w->prog = r->prog;
            w->argv = r->o.argv;
            snprintf(w->tag, sizeof(w->tag), "[%d] ", w->rank);
        } else if (w->running) { /* kept from the last generation, its keys in memory */
            fprintf(stderr,
                    "baton: ps server %d (pid %d) keeps running into generation %d with its "
                    "keys in memory\n",
                    w->ps_index, (int)w->pid, r->restart);
            continue;
        } else if (!bt__run_ps_here(r)) {
            continue; /* etcd: node rank 0 of the generation runs them */
        } else {
            if (w->pid == 0 && r->restart > 0)
                fprintf(stderr,
                        "baton: node %d is node rank 0 of generation %d: starting ps server %d "
                        "here (it reloads its shards from its checkpoint, BATON_PS_CKPT_DIR)\n",
                        r->node_id, r->restart, w->ps_index);
            if (w->pid > 0)
                fprintf(stderr,
                        "baton: ps server %d (pid %d) ended; starting it again for generation "
                        "%d (it reloads its shards from its checkpoint, BATON_PS_CKPT_DIR)\n",
                        w->ps_index, (int)w->pid, r->restart);
            w->local_rank = w->rank = -1;
            snprintf(w->tag, sizeof(w->tag), "[ps%d] ", w->ps_index);
        }
        BT_CHECK(start_child(r, w, err));
    }
    r->early = 0;
    return BT_OK;
}

int bt__run_respawn(struct bt__run *r, struct bt__worker *w, struct bt__err *err)
{
    bt__run_output_drain(r, w);
    bt__run_output_close(r, w);
    fprintf(stderr, "baton: starting rank %d again for generation %d\n", w->rank, r->restart);
    return start_child(r, w, err);
}
