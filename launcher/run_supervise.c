/* run_supervise.c: the launcher's one event loop for a generation.
 *
 * One poll() over: the self-pipe that the signal handlers write (SIGCHLD: reap; SIGINT,
 * SIGTERM, SIGHUP: stop the job), the eventfd of the outcome watcher (run_rdzv.c), and every
 * worker's stdout/stderr pipe. No busy waiting: the only timeouts are the SIGKILL deadline of
 * a teardown, the bounded drain of pipes after the last worker is reaped, and a look at the
 * workers' states once a second while the generation runs (run_stall.c: stopped workers).
 * A teardown sends SIGCONT after its signal, so a stopped worker receives it at once.
 *
 * A generation ends when its outcome is known and every local worker is reaped:
 *  - a worker exits non-zero or by a signal (and no teardown is under way): it is the root
 *    cause candidate (unless a rank recorded a collective timeout: then the stalled rank is,
 *    outcome H, and this worker is its consequence); it is posted as outcome F (the first posted,
 * from any node, wins), the other workers get SIGTERM to their process group, SIGKILL after
 * --grace;
 *  - the watcher reports an outcome posted elsewhere: the same teardown;
 *  - baton gets SIGINT/SIGTERM/SIGHUP: outcome T, the signal is forwarded (SIGHUP as
 *    SIGTERM), a second signal sends SIGKILL at once;
 *  - every local worker exited 0: the node is counted done; the last node posts S.
 * Parameter servers (--ps, node 0) are children too, but not ranks: one that fails while the
 * job runs is a root cause like a worker; one that exits 0 by itself (every worker closed,
 * or the chief said done) is fine. Once the outcome is S, a server still running gets
 * SERVER_LINGER_S to exit by itself, then SIGTERM (it checkpoints and exits 0), SIGKILL
 * after --grace; how a server ends after S no longer changes the job's status. When another
 * generation follows (a membership change L or M in an elastic job, a failure F or H with
 * --max-restarts left), the servers outlive this one (r->ps_keep): the teardown stops the
 * workers only, the generation ends once they are reaped, and the servers go on running with
 * their keys in memory into the next generation (run_spawn.c starts only those that ended).
 * bt__run_servers_stop stops them when the job ends. In place (BATON_ELASTIC_INPLACE=1) the
 * workers outlive a membership change (L, M) the same way (r->w_keep), and a kept worker that
 * does not take up the next generation in time is killed and started again (check_adoption,
 * respawn: no failure); bt__run_servers_stop also stops workers kept or started early.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

#define DRAIN_S 1.0         /* after the last worker is reaped, wait this long for pipes to close */
#define SERVER_LINGER_S 2.0 /* after success, servers get this long to exit by themselves */
#define SCAN_EVERY_S 1.0    /* how often the workers' states are looked at (run_stall.c) */

volatile sig_atomic_t bt__run_stop_sig;
volatile int bt__run_abort;
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int e = errno;
    unsigned char b = (unsigned char)sig;
    if (sig != SIGCHLD) {
        if (!bt__run_stop_sig)
            bt__run_stop_sig = sig;
        bt__run_abort = 1;
    }
    (void)!write(sig_pipe[1], &b, 1);
    errno = e;
}

int bt__run_signals_install(struct bt__err *err)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
    struct sigaction sa;
    if (sig_pipe[0] < 0)
        BT_SYSCHECK(pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK), "pipe", err);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return BT_OK;
}

int bt__run_signal_fd(void)
{
    return sig_pipe[0];
}

struct sup {
    struct bt__run *r;
    struct bt__outcome *o; /* kind 0 until this generation's outcome is known */
    int running;           /* children (workers and servers) not yet reaped */
    int workers;           /* workers not yet reaped */
    int stopping;          /* teardown started */
    int killed;            /* SIGKILL sent */
    int done_posted;
    int stop_signals;
    int64_t kill_at;         /* ns: SIGKILL deadline of the teardown */
    int64_t drain_until;     /* ns: after the last reap, pipes get this long */
    int64_t linger_until;    /* ns: after success, when servers still running get SIGTERM */
    int64_t scan_at;         /* ns: next look at the workers' states */
    struct bt__outcome held; /* elastic: a worker's failure, posted at held_until unless the */
    int64_t held_until;      /* watcher brings a lost node's outcome first (0: none held) */
};

/* "3" for rank 3, "ps0" for server 0 (the tag without brackets). */
static const char *child_name(const struct bt__worker *w, char *buf, size_t n)
{
    snprintf(buf, n, "%.*s", (int)strlen(w->tag) - 3, w->tag + 1);
    return buf;
}

int bt__run_child_kept(const struct bt__run *r, pid_t pid)
{
    for (int i = 0; (r->ps_keep || r->w_keep) && i < r->nchild; i++)
        if (r->w[i].pid == pid && r->w[i].running)
            return i < r->nproc ? r->w_keep : r->ps_keep;
    return 0;
}

static void signal_groups(struct sup *s, int sig, int all)
{
    for (int i = 0; i < s->r->nchild; i++) {
        struct bt__worker *w = &s->r->w[i];
        if (w->pid > 0 && (w->running || all) && !bt__run_child_kept(s->r, w->pid))
            kill(-w->pid, sig);
    }
    bt__run_tree_signal(s->r, sig); /* what left the groups: setsid, setpgid, orphans */
}

/* Children whose end this generation waits for: those that do not outlive it. */
static int live(const struct sup *s)
{
    int n = 0;
    for (int i = 0; i < s->r->nchild; i++)
        n += s->r->w[i].running && !bt__run_child_kept(s->r, s->r->w[i].pid);
    return n;
}

/* Whether the servers outlive a generation that ends with outcome kind: another generation
 * follows, whose workers find them with their keys in memory. */
static int servers_stay(const struct sup *s, char kind)
{
    const struct bt__run *r = s->r;
    if (r->nchild == r->nproc || bt__run_stop_sig)
        return 0;
    if (r->etcd && r->store_lost)
        return 0; /* it rejoins like a new node: node rank 0 runs them (run_ps.c) */
    if (kind == 'L' || kind == 'M')
        return r->elastic;
    return (kind == 'F' || kind == 'H') && r->failures < r->o.max_restarts;
}

/* In place (BATON_ELASTIC_INPLACE=1): whether the workers outlive a generation that ends with
 * outcome kind: a membership change, this launcher still in the job. */
static int workers_stay(const struct sup *s, char kind)
{
    const struct bt__run *r = s->r;
    return r->inplace && !r->store_lost && !bt__run_stop_sig && (kind == 'L' || kind == 'M');
}

static void teardown(struct sup *s, int sig)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->kill_at = bt__deadline_in(s->r->o.grace_s);
    /* A held failure may be a lost node's consequence: the servers stay until that is known. */
    s->r->ps_keep = servers_stay(s, s->o->kind ? s->o->kind : s->held_until ? 'L' : 0);
    s->r->w_keep = workers_stay(s, s->o->kind ? s->o->kind : s->held_until ? 'L' : 0);
    if (s->r->w_keep && s->workers)
        fprintf(stderr,
                "baton: node %d keeps its %d worker(s) running into the next generation "
                "(BATON_ELASTIC_INPLACE=1)\n",
                s->r->spec.node_rank, s->workers);
    if (live(s) == 0)
        return;
    char servers[48] = "";
    if (s->running > s->workers && !s->r->ps_keep)
        snprintf(servers, sizeof(servers), " and %d ps server(s)", s->running - s->workers);
    fprintf(stderr, "baton: stopping %d worker(s)%s on node %d (%s; SIGKILL after %g s)\n",
            s->r->w_keep ? 0 : s->workers, servers, s->r->spec.node_rank, bt__signal_name(sig),
            s->r->o.grace_s);
    signal_groups(s, sig, 0);
    signal_groups(s, SIGCONT, 0); /* a stopped worker gets the signal now, not at SIGKILL */
}

/* The outcome is known after the teardown began: when no generation follows after all (or,
 * in place, it is no membership change), the servers and workers that were kept get the
 * teardown's signal now. */
static void servers_decide(struct sup *s)
{
    struct bt__run *r = s->r;
    int drop_ps = r->ps_keep && !servers_stay(s, s->o->kind);
    int drop_w = r->w_keep && !workers_stay(s, s->o->kind);
    if (!s->stopping || (!drop_ps && !drop_w))
        return;
    for (int i = 0; i < r->nchild; i++)
        if (r->w[i].running && (i < r->nproc ? drop_w : drop_ps)) {
            kill(-r->w[i].pid, SIGTERM);
            kill(-r->w[i].pid, SIGCONT);
        }
    r->ps_keep &= !drop_ps;
    r->w_keep &= !drop_w;
    s->killed = 0;
    s->kill_at = bt__deadline_in(r->o.grace_s);
}

static void kill_now(struct sup *s)
{
    char ranks[256] = "", name[16];
    size_t n = 0;
    for (int i = 0; i < s->r->nchild && n < sizeof(ranks) - 16; i++)
        if (s->r->w[i].running && !bt__run_child_kept(s->r, s->r->w[i].pid))
            n += (size_t)snprintf(ranks + n, sizeof(ranks) - n, "%s%s", n ? "," : "",
                                  child_name(&s->r->w[i], name, sizeof(name)));
    if (n)
        fprintf(stderr, "baton: rank(s) %s still running; sent SIGKILL\n", ranks);
    signal_groups(s, SIGKILL, 0);
    s->killed = 1;
}

/* A local rank 0 that dies while its node's ranks are still attaching leaves its shared-memory
 * segment's name behind (collectives/transport/shm.c names it "/baton-<its pid>-..." and the
 * last rank to map it unlinks it); nothing else would remove it, so the launcher does. */
static void unlink_shm_of(pid_t pid)
{
    char pat[64];
    glob_t g;
    snprintf(pat, sizeof(pat), "/dev/shm/baton-%d-*", (int)pid);
    if (glob(pat, GLOB_NOSORT, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++)
        if (unlink(g.gl_pathv[i]) == 0)
            BT_INFO(LAUNCH, "removed %s, left behind by pid %d", g.gl_pathv[i], (int)pid);
    globfree(&g);
}

static void teardown(struct sup *s, int sig);

/* In place: worker w, killed for not taking up the generation, starts again from scratch;
 * BATON_ELASTIC_FILE gives it this generation. Failing that, the generation fails (F). */
static void respawn(struct sup *s, struct bt__worker *w)
{
    struct bt__err e = {0};
    if (bt__run_respawn(s->r, w, &e) == BT_OK) {
        s->running++;
        s->workers++;
        return;
    }
    struct bt__outcome f = {'F', BT_RUN_EXIT_LAUNCHER, ""};
    snprintf(f.line, sizeof(f.line), "node %d (host %s) could not start rank %d again: %s",
             s->r->spec.node_rank, s->r->host, w->rank, e.msg);
    bt__run_post_outcome(s->r, &f);
    *s->o = f;
    teardown(s, SIGTERM);
}

/* In place: a kept worker that has not written this generation to BATON_ELASTIC_FILE.gen.<i>
 * by its adopt_by (stuck in a collective of the old one?) is killed, and started again when
 * reaped (respawn): it never talks to the new generation as a member of the old one. */
static void check_adoption(struct sup *s)
{
    struct bt__run *r = s->r;
    for (int i = 0; i < r->nproc; i++) {
        struct bt__worker *w = &r->w[i];
        if (!w->running || !w->adopt_by || w->replace)
            continue;
        if (bt__run_elastic_adopted(r, i)) {
            w->adopt_by = 0;
            continue;
        }
        if (bt__now_ns() < w->adopt_by)
            continue;
        fprintf(stderr,
                "baton: rank %d (pid %d) stayed in place but did not take up generation %d "
                "within %g s (BATON_ELASTIC_ADOPT); killing it and starting it again\n",
                w->rank, (int)w->pid, r->restart, bt__run_elastic_adopt_s());
        w->replace = 1;
        kill(-w->pid, SIGKILL);
    }
}

/* Child w ended with status. stopping: whether the teardown had begun when it was reaped (its
 * batch's, reap: a worker that was already dead then was not stopped by it). */
static void on_exit_status(struct sup *s, struct bt__worker *w, int status, int stopping)
{
    char name[16];
    w->running = 0;
    w->status = status;
    w->end_ns = bt__run_wall_ns();
    if (w->ps_index < 0) {
        __atomic_fetch_sub(&s->r->metrics.running, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(status == 0 ? &s->r->metrics.succeeded : &s->r->metrics.failed, 1,
                           __ATOMIC_RELAXED);
    }
    unlink_shm_of(w->pid);
    bt__run_tree_reaped(s->r, w->pid);
    s->running--;
    s->workers -= w->ps_index < 0;
    BT_INFO(LAUNCH, "%s %s (pid %d) ended with status %d", w->ps_index < 0 ? "rank" : "server",
            child_name(w, name, sizeof(name)), (int)w->pid, bt__run_exit_status(status));
    if (w->replace && !s->stopping && !s->o->kind) { /* in place: it missed its adopt_by */
        respawn(s, w);
        return;
    }
    if (live(s) == 0) {
        signal_groups(s, SIGKILL, 1); /* whatever the workers left behind in their groups */
        s->drain_until = bt__deadline_in(DRAIN_S);
    }
    if (status == 0)
        return;
    bt__run_output_drain(s->r, w); /* its last lines, e.g. the dynamic loader's complaint */
    bt__run_forensics_failed(s->r, w, stopping || w->replace); /* replace: baton killed it */
    if (s->stopping || s->o->kind || s->held_until)
        return;
    struct bt__outcome f = {'F', bt__run_exit_status(status), ""};
    if (!bt__run_stall_outcome(s->r, w, &f)) /* a hang's consequence names the hang */
        bt__run_describe(s->r, w, f.line, sizeof(f.line));
    if (s->r->elastic) { /* a peer node's loss fails its peers: wait for its outcome first */
        s->held = f;
        s->held_until = bt__deadline_in(s->r->etcd ? bt__run_etcd_lost_s()
                                                   : BT_RUN_ELASTIC_SETTLE_S);
        teardown(s, SIGTERM);
        return;
    }
    bt__run_post_outcome(s->r, &f);
    *s->o = f;
    teardown(s, SIGTERM);
}

/* The held failure's time is up and no other outcome came: it is the root cause. */
static void post_held(struct sup *s)
{
    if (!s->held_until || bt__ms_left(s->held_until) > 0)
        return;
    s->held_until = 0;
    if (s->o->kind)
        return;
    bt__run_post_outcome(s->r, &s->held);
    *s->o = s->held;
    servers_decide(s);
}

/* A child found exited by one reap, with its last sign of life (bt__run_flight_last_ns). */
struct dead {
    struct bt__worker *w;
    int status, at; /* at: its place in waitpid's order */
    int64_t last_ns;
};

/* By last sign of life; those without one (no recorder: a ps server, a program without
 * libbaton) after them, in waitpid's order. */
static int by_last_sign(const void *a, const void *b)
{
    const struct dead *x = a, *y = b;
    if (x->last_ns != y->last_ns && x->last_ns && y->last_ns)
        return x->last_ns < y->last_ns ? -1 : 1;
    if (!x->last_ns != !y->last_ns)
        return x->last_ns ? -1 : 1;
    return (x->at > y->at) - (x->at < y->at);
}

BT_PARAM_INT(test_reap_late_ms, "BATON_TEST_REAP_LATE_MS", 0)

/* BATON_TEST_REAP_LATE_MS (tests only): the first reap that finds a worker exited waits this
 * long before it reaps, as a launcher that a loaded machine runs late (the workers and the
 * store's thread go on). */
static void reap_late(const struct bt__run *r)
{
    static int done;
    int64_t late = bt__param_test_reap_late_ms();
    siginfo_t si = {0};
    if (late <= 0 || done || waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return;
    for (int i = 0; i < r->nproc && !done; i++)
        done = si.si_pid != 0 && r->w[i].pid == si.si_pid;
    struct timespec ts = {(time_t)(late / 1000), (long)(late % 1000) * 1000000L};
    while (done && nanosleep(&ts, &ts) != 0 && errno == EINTR) /* a SIGCHLD wakes it */
        ;
}

/* The children that exited, all reaped before any is handled: when the launcher ran late (a
 * loaded machine) and finds several dead at once, waitpid gives them in spawn order, not in the
 * order they died. They are handled by their last sign of life in the flight recorder (the
 * rank SIGKILLed after call #14 before the one that failed call #15 on its death), a failure
 * without an error file takes that as its time (found_ns; one with a file, the file's), and
 * none counts as stopped by a teardown that one of them begins. */
static void reap(struct sup *s)
{
    struct bt__run *r = s->r;
    reap_late(r);
    struct dead *d = calloc((size_t)(r->nchild > 0 ? r->nchild : 1), sizeof(*d));
    int status, n = 0, stopping = s->stopping;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < r->nchild; i++) {
            if (r->w[i].pid != pid || !r->w[i].running)
                continue;
            if (d && n < r->nchild)
                d[n] = (struct dead){&r->w[i], status, n, bt__run_flight_last_ns(&r->w[i])}, n++;
            else /* no memory for the batch: as found */
                on_exit_status(s, &r->w[i], status, stopping);
            break;
        }
    if (n > 1)
        qsort(d, (size_t)n, sizeof(*d), by_last_sign);
    for (int k = 0; k < n; k++) {
        d[k].w->found_ns = n > 1 ? d[k].last_ns : 0;
        on_exit_status(s, d[k].w, d[k].status, stopping);
    }
    free(d);
}

static void on_stop_signal(struct sup *s, int sig)
{
    struct bt__run *r = s->r;
    if (++s->stop_signals > 1 && s->stopping) {
        if (!s->killed)
            kill_now(s);
        return;
    }
    struct bt__outcome t = {'T', 128 + sig, ""};
    snprintf(t.line, sizeof(t.line),
             "baton on node %d (host %s) received %s; the workers were "
             "stopped",
             r->spec.node_rank, r->host, bt__signal_name(sig));
    if (!s->o->kind) {
        bt__run_post_outcome(r, &t);
        *s->o = t;
    }
    teardown(s, sig == SIGHUP ? SIGTERM : sig);
}

static void on_signal_bytes(struct sup *s)
{
    unsigned char b[64];
    ssize_t n;
    while ((n = read(bt__run_signal_fd(), b, sizeof(b))) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (b[i] == SIGCHLD)
                reap(s);
            else
                on_stop_signal(s, b[i]);
        }
}

static void on_watcher(struct sup *s)
{
    struct bt__run *r = s->r;
    bt__run_watch_stop(r); /* the thread has ended: join it */
    struct bt__outcome w = r->watched;
    if (!w.kind) {
        w.kind = 'L';
        w.status = BT_RUN_EXIT_LOST;
        snprintf(w.line, sizeof(w.line), "the rendezvous store holds an unreadable outcome");
    }
    if (r->store_lost && s->done_posted && !s->o->kind) {
        /* Every worker here exited 0 before the store went silent: this node succeeded. */
        w.kind = 'S';
        w.status = 0;
        snprintf(w.line, sizeof(w.line),
                 "every worker on node %d exited 0; then the rendezvous store (node 0) stopped "
                 "answering, so the other nodes' result is not known here: %.600s",
                 r->spec.node_rank, r->watched.line);
    }
    if (!s->o->kind)
        *s->o = w;
    s->held_until = 0; /* the watcher's outcome explains a held failure */
    servers_decide(s);
    if (w.kind != 'S')
        teardown(s, SIGTERM);
}

/* Whether this generation drains child i's pipes: not when it outlives the generation. */
static int drained(const struct sup *s, int i)
{
    return !bt__run_child_kept(s->r, s->r->w[i].pid);
}

static int open_pipes(const struct sup *s)
{
    int n = 0;
    for (int i = 0; i < s->r->nchild; i++)
        n += drained(s, i) * ((s->r->w[i].out.fd >= 0) + (s->r->w[i].err.fd >= 0));
    return n;
}

/* Poll timeout: the SIGKILL deadline, the servers' linger, the drain deadline, the next look
 * at the workers' states while the generation runs, else none. */
static int timeout_ms(const struct sup *s)
{
    int ms = -1;
    if (!s->o->kind && !s->stopping && s->workers)
        ms = bt__ms_left(s->scan_at);
    if (s->stopping && !s->killed && live(s))
        ms = bt__ms_left(s->kill_at);
    if (s->linger_until && !s->stopping && s->running)
        ms = bt__ms_left(s->linger_until);
    if (live(s) == 0 && open_pipes(s)) {
        int d = bt__ms_left(s->drain_until);
        ms = ms < 0 || d < ms ? d : ms;
    }
    if (s->held_until) {
        int d = bt__ms_left(s->held_until);
        ms = ms < 0 || d < ms ? d : ms;
    }
    return ms;
}

static void flush_pipes(struct sup *s)
{
    for (int i = 0; i < s->r->nchild; i++) {
        if (!drained(s, i))
            continue;
        bt__run_output_eof(s->r, &s->r->w[i], &s->r->w[i].out);
        bt__run_output_eof(s->r, &s->r->w[i], &s->r->w[i].err);
    }
}

static int build_pollfds(struct sup *s, struct pollfd *p, struct bt__worker **who,
                         struct bt__linebuf **lbs)
{
    int n = 0;
    p[n++] = (struct pollfd){bt__run_signal_fd(), POLLIN, 0};
    p[n++] = (struct pollfd){s->r->watcher_on ? s->r->notify_fd : -1, POLLIN, 0};
    for (int i = 0; i < s->r->nchild; i++) {
        struct bt__worker *w = &s->r->w[i];
        struct bt__linebuf *two[2] = {&w->out, &w->err};
        for (int k = 0; k < 2; k++)
            if (two[k]->fd >= 0) {
                who[n] = w;
                lbs[n] = two[k];
                p[n++] = (struct pollfd){two[k]->fd, POLLIN, 0};
            }
    }
    return n;
}

/* The job succeeded and servers still run: a while for them to exit by themselves, then
 * SIGTERM. */
static void stop_servers(struct sup *s)
{
    if (s->o->kind != 'S' || s->running == 0 || s->stopping)
        return;
    if (!s->linger_until)
        s->linger_until = bt__deadline_in(SERVER_LINGER_S);
    if (bt__ms_left(s->linger_until) > 0)
        return;
    s->stopping = 1;
    s->kill_at = bt__deadline_in(s->r->o.grace_s);
    fprintf(stderr,
            "baton: the workers are done; stopping %d ps server(s) on node %d (SIGTERM; "
            "SIGKILL after %g s)\n",
            s->running, s->r->spec.node_rank, s->r->o.grace_s);
    signal_groups(s, SIGTERM, 0);
}

static int finished(struct sup *s)
{
    post_held(s);
    if (s->workers == 0 && !s->done_posted && !s->o->kind && !s->held_until) {
        struct bt__outcome d;
        s->done_posted = 1;
        bt__run_post_done(s->r, &d);
        if (d.kind)
            *s->o = d;
    }
    stop_servers(s);
    if (live(s) || !s->o->kind)
        return 0;
    if (open_pipes(s) && bt__ms_left(s->drain_until) > 0)
        return 0;
    flush_pipes(s);
    return 1;
}

int bt__run_supervise(struct bt__run *r, struct bt__outcome *o)
{
    struct sup s = {.r = r, .o = o, .running = 0, .scan_at = bt__deadline_in(SCAN_EVERY_S)};
    size_t cap = 2 + 2 * (size_t)r->nchild;
    struct pollfd *p = calloc(cap, sizeof(*p));
    struct bt__worker **who = calloc(cap, sizeof(*who));
    struct bt__linebuf **lbs = calloc(cap, sizeof(*lbs));
    if (!p || !who || !lbs) {
        free(p), free(who), free(lbs);
        return BT_ERR_SYSTEM;
    }
    r->ps_keep = r->w_keep = 0; /* decided again when this generation ends */
    for (int i = 0; i < r->nchild; i++) {
        s.running += r->w[i].running;
        s.workers += r->w[i].running && r->w[i].ps_index < 0;
    }
    if (o->kind) /* the caller already knows how this ends (workers failed to start) */
        teardown(&s, SIGTERM);
    reap(&s);
    while (!finished(&s)) {
        int n = build_pollfds(&s, p, who, lbs);
        int k = poll(p, (nfds_t)n, timeout_ms(&s));
        if (k < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            on_signal_bytes(&s);
        if (p[1].fd >= 0 && p[1].revents)
            on_watcher(&s);
        for (int i = 2; k > 0 && i < n; i++)
            if (p[i].revents && lbs[i]->fd == p[i].fd)
                bt__run_output_read(r, who[i], lbs[i]);
        if (s.stopping && !s.killed && live(&s) && bt__ms_left(s.kill_at) == 0)
            kill_now(&s);
        if (!s.o->kind && !s.stopping && bt__ms_left(s.scan_at) == 0) {
            check_adoption(&s);
            bt__run_stall_scan(r);
            bt__run_flight_scan(r);
            bt__run_timeline_scan(r);
            s.scan_at = bt__deadline_in(SCAN_EVERY_S);
        }
    }
    free(p), free(who), free(lbs);
    return BT_OK;
}

void bt__run_servers_stop(struct bt__run *r)
{
    struct bt__outcome o = {'T', 0, "the job ended"};
    int running = 0;
    r->ps_keep = r->w_keep = 0;
    for (int i = 0; i < r->nchild; i++) /* workers too: kept in place, or started early */
        running += r->w[i].running;
    if (running == 0)
        return;
    bt__run_supervise(r, &o); /* o is decided: the teardown stops them; reaped and drained */
    for (int i = 0; i < r->nchild; i++)
        bt__run_output_close(r, &r->w[i]);
}
