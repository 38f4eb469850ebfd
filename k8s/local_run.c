/* local_run.c: starts the pods of `baton k8s local`, relays their output, decides the job's
 * outcome by the training operator's rules, and stops what is left.
 *
 * One loop, woken every 100 ms or by output: read each pod's pipe and print whole lines as
 * "[<pod>] line"; reap exited children (waitpid on any pid: we are the subreaper, so orphaned
 * grandchildren come here too); start the next pod when its turn comes (--stagger apart), with
 * --netns publishing its names right after the fork (such a pod also has a UTS namespace of its
 * own with the pod name as host name, which its hosts file maps to its own address, so
 * gethostname() resolves as gloo and NCCL expect); then decide:
 *   - a pod exits non-zero (or by a signal): the job fails. The pod named is the root cause:
 *     the pod that `baton run`'s own report ("baton: job failed: rank R (node N, host H ...")
 *     names, by host name or by node rank, else the first pod that failed (a pod whose peer
 *     failed may end before the pod whose rank failed). No pod is restarted here; the report
 *     says whether the operator would have restarted it.
 *   - success (operator v1.9): PyTorchJob: the Master exited 0; without a Master, every
 *     Worker (with an elasticPolicy: any Worker). TFJob: the Chief (or Master) exited 0;
 *     without one, Worker 0 (successPolicy AllWorkers: every Worker). TrainJob: every pod
 *     (the JobSet's successPolicy All over its one Indexed Job).
 *   - --timeout passes, or SIGINT/SIGTERM/SIGHUP comes: the job fails (124 / 128+signal).
 * Once decided: on success PS and Evaluator pods (which never end by themselves) get SIGTERM
 * at once; the other pods have 10 s to end by themselves (after a failure, `baton run` in each
 * pod stops its workers and prints the report), then SIGTERM; after --timeout, a signal or a
 * pod that could not start, every pod gets SIGTERM at once. SIGKILL follows 5 s after SIGTERM.
 * Signals go to the pod's process group.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "k8s/local.h"

volatile sig_atomic_t bt__local_signal;

enum { UNDECIDED = 0, SUCCEEDED, FAILED };

struct run {
    struct bt__local *l;
    double t0;
    size_t next;       /* next entry of l->order to start */
    double next_start; /* when it may start */
    int outcome;
    const struct bt__local_pod *first;   /* the first pod that failed */
    const struct bt__local_pod *culprit; /* the root cause (see blame()) */
    char cause[512];                     /* the first "baton: job failed: " line's text */
    int signalled;                       /* a signal went to the pods (cause is then frozen) */
    const char *why;                     /* for a failure without a culprit */
    int rc;
    double decided_at, term_at; /* when SIGTERM went to the others (0: not yet) */
    int killed;
    int nexited;
    int servers_termed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_signal(int sig)
{
    bt__local_signal = sig;
}

static void set_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- starting a pod ---- */

static void child(const struct bt__local *l, const struct bt__local_pod *p, int wfd, pid_t parent)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(137);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(wfd, 1);
    dup2(wfd, 2);
    if (!l->netns) {
        execve(p->argv[0], p->argv, p->envp);
    } else if (unshare(CLONE_NEWUTS) != 0 || sethostname(p->k->name, strlen(p->k->name)) != 0) {
        dprintf(2, "baton k8s local: pod %s: its own host name (UTS namespace): %s\n", p->k->name,
                strerror(errno));
        _exit(127);
    } else {
        size_t n = 0;
        while (p->argv[n])
            n++;
        char **v = calloc(n + 5, sizeof(*v));
        if (v) {
            v[0] = "ip", v[1] = "netns", v[2] = "exec", v[3] = (char *)p->ns;
            memcpy(v + 4, p->argv, (n + 1) * sizeof(*v));
            /* ip's own path from our PATH; the pod's env goes to the program through ip */
            static const char *const ips[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
            for (size_t i = 0; i < 4; i++)
                execve(ips[i], v, p->envp);
        }
    }
    dprintf(2, "baton k8s local: cannot start %s: %s\n", p->argv[0], strerror(errno));
    _exit(127);
}

static int start_pod(struct run *r, struct bt__local_pod *p)
{
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) != 0) {
        perror("baton k8s local: pipe");
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child(r->l, p, fd[1], parent);
    close(fd[1]);
    if (pid < 0) {
        perror("baton k8s local: fork");
        close(fd[0]);
        return -1;
    }
    setpgid(pid, pid); /* also in the child: whichever runs first */
    fcntl(fd[0], F_SETFL, O_NONBLOCK);
    p->pid = pid;
    p->started = 1;
    p->out_fd = fd[0];
    printf("baton k8s local: %6.1f s  started %s (pid %d)%s%s%s\n", now_s() - r->t0, p->k->name,
           (int)pid, r->l->netns ? " in namespace " : "", p->ns,
           r->l->netns ? "; its names resolve from now on" : "");
    if (r->l->netns && bt__local_net_publish(r->l, p))
        return -1;
    return 0;
}

/* ---- output ---- */

/* What baton k8s local reads in a pod's output: the pod's node rank from its `baton run`'s own
 * lines ("baton: node N (host H) ..."), and the job's root cause from the first "baton: job
 * failed: " line, which every `baton run` of the job prints alike (the first failure posted
 * to the store wins). Only lines read before any signal went to the pods count as the cause: a
 * later one may be a pod's reaction to that signal. */
static void note_line(struct run *r, struct bt__local_pod *p)
{
    static const char failed[] = "baton: job failed: ";
    const char *s = p->line;
    size_t n = p->nline, fl = sizeof(failed) - 1;
    int node;
    if (n > 13 && !strncmp(s, "baton: node ", 12) && sscanf(s + 12, "%d (host ", &node) == 1 &&
        node >= 0)
        p->node = node;
    if (!r->cause[0] && !r->signalled && n > fl && !strncmp(s, failed, fl))
        snprintf(r->cause, sizeof(r->cause), "%.*s", (int)(n - fl - (s[n - 1] == '\n')), s + fl);
}

static void flush_line(struct run *r, struct bt__local_pod *p, int partial)
{
    if (!p->nline)
        return;
    note_line(r, p);
    char buf[sizeof(p->line) + 80];
    int n = snprintf(buf, sizeof(buf), "[%s] %.*s%s", p->k->name, (int)p->nline, p->line,
                     partial ? "\n" : "");
    fflush(stdout);
    (void)!write(1, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    p->nline = 0;
}

/* Reads what the pod wrote; prints whole lines. Closes the pipe at its end. Returns the bytes
 * read (0 at the end, -1 when there is nothing now). */
static ssize_t read_pod(struct run *r, struct bt__local_pod *p)
{
    char buf[4096];
    ssize_t n = read(p->out_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return -1;
    for (ssize_t i = 0; i < n; i++) {
        p->line[p->nline++] = buf[i];
        if (buf[i] == '\n' || p->nline == sizeof(p->line) - 1)
            flush_line(r, p, buf[i] != '\n');
    }
    if (n <= 0) {
        flush_line(r, p, 1);
        close(p->out_fd);
        p->out_fd = -1;
    }
    return n < 0 ? 0 : n;
}

static void poll_output(struct run *r, int timeout_ms)
{
    struct bt__local *l = r->l;
    struct pollfd *fds = calloc(l->npods, sizeof(*fds));
    size_t n = 0;
    for (size_t i = 0; fds && i < l->npods; i++)
        if (l->pods[i].out_fd >= 0)
            fds[n++] = (struct pollfd){.fd = l->pods[i].out_fd, .events = POLLIN};
    if (poll(fds, n, timeout_ms) > 0)
        for (size_t i = 0, k = 0; i < l->npods; i++)
            if (l->pods[i].out_fd >= 0 && fds[k++].revents)
                read_pod(r, &l->pods[i]);
    free(fds);
}

/* ---- exits and the outcome ---- */

static void reap(struct run *r)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (size_t i = 0; i < r->l->npods; i++) {
            struct bt__local_pod *p = &r->l->pods[i];
            if (p->pid != pid)
                continue;
            p->exited = ++r->nexited; /* the order of exits */
            p->pid = 0;
            /* what it wrote before its end (its failure report) is read before deciding;
             * bounded: a pipe holds 64 KiB, and a grandchild may still be writing */
            for (int k = 0; k < 64 && p->out_fd >= 0 && read_pod(r, p) > 0; k++)
                ;
            p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            printf("baton k8s local: %6.1f s  %s exited %s %d%s%s\n", now_s() - r->t0, p->k->name,
                   WIFEXITED(st) ? "with status" : "by signal",
                   WIFEXITED(st) ? p->status : WTERMSIG(st),
                   r->term_at && (p->status == 128 + SIGTERM || p->status == 128 + SIGKILL)
                       ? " (stopped by baton k8s local)"
                       : "",
                   WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && !r->killed ? " (SIGKILL: OOM "
                                                                              "killer or kill -9?)"
                                                                            : "");
        }
}

static int is_type(const struct bt__local_pod *p, const char *rtype)
{
    return !strcmp(p->k->rtype, rtype);
}

/* The operator's success rule (see the file comment). */
static int succeeded(const struct bt__local *l)
{
    const struct bt__k8s_job *j = l->job;
    int has_chief = 0, any_worker_ok = 0, all_workers_ok = 1, worker0_ok = 0;
    for (size_t i = 0; j->kind == BT_K8S_TRAINJOB && i < l->npods; i++)
        if (!l->pods[i].exited || l->pods[i].status != 0)
            return 0; /* JobSet successPolicy All: every Job, so every index, succeeded */
    if (j->kind == BT_K8S_TRAINJOB)
        return 1;
    for (size_t i = 0; i < l->npods; i++) {
        const struct bt__local_pod *p = &l->pods[i];
        int ok = p->exited && p->status == 0;
        if (is_type(p, "master") || is_type(p, "chief")) {
            has_chief = 1;
            if (ok)
                return 1;
        } else if (is_type(p, "worker")) {
            any_worker_ok |= ok;
            all_workers_ok &= ok;
            worker0_ok |= ok && p->k->index == 0;
        }
    }
    if (has_chief)
        return 0;
    if (j->kind == BT_K8S_PYTORCHJOB)
        return j->elastic ? any_worker_ok : all_workers_ok;
    const char *sp = bt__yn_gets(bt__yn_get(j->doc, "spec"), "successPolicy");
    return sp && !strcmp(sp, "AllWorkers") ? all_workers_ok : worker0_ok;
}

static void decide(struct run *r, double now)
{
    struct bt__local *l = r->l;
    if (r->outcome)
        return;
    for (size_t i = 0; i < l->npods; i++)
        if (l->pods[i].exited && l->pods[i].status != 0 &&
            (!r->first || l->pods[i].exited < r->first->exited))
            r->first = &l->pods[i];
    if (r->first) {
        r->outcome = FAILED;
        r->rc = r->first->status;
    }
    if (!r->outcome && succeeded(l))
        r->outcome = SUCCEEDED;
    if (!r->outcome && bt__local_signal) {
        r->outcome = FAILED;
        r->why = "interrupted";
        r->rc = 128 + bt__local_signal;
    }
    if (!r->outcome && l->timeout_s > 0 && now - r->t0 >= l->timeout_s) {
        r->outcome = FAILED;
        r->why = "--timeout passed";
        r->rc = 124;
    }
    if (r->outcome)
        r->decided_at = now;
}

static void signal_pods(struct run *r, int sig, int only_servers)
{
    r->signalled = 1;
    for (size_t i = 0; i < r->l->npods; i++) {
        const struct bt__local_pod *p = &r->l->pods[i];
        if (p->pid > 0 && (!only_servers || is_type(p, "ps") || is_type(p, "evaluator")))
            kill(-p->pid, sig);
    }
}

/* After the outcome: SIGTERM (on success servers at once; after a timeout, a signal or a failed
 * start everything at once; else the rest after 10 s, in which a `baton run` pod whose peer
 * failed ends by itself and prints its report), SIGKILL 5 s later. */
static void wind_down(struct run *r, double now)
{
    if (r->outcome == SUCCEEDED && !r->servers_termed) {
        signal_pods(r, SIGTERM, 1); /* once: a second SIGTERM makes baton run SIGKILL */
        r->servers_termed = 1;
    }
    if (!r->term_at && (r->why || bt__local_signal || now - r->decided_at >= 10)) {
        signal_pods(r, SIGTERM, 0);
        r->term_at = now;
    }
    if (r->term_at && !r->killed && now - r->term_at >= 5) {
        signal_pods(r, SIGKILL, 0);
        r->killed = 1;
    }
}

static int all_done(const struct bt__local *l, int killed)
{
    for (size_t i = 0; i < l->npods; i++)
        if (l->pods[i].pid > 0 || (l->pods[i].out_fd >= 0 && !killed))
            return 0;
    return 1;
}

/* ---- the report ---- */

static const char *restart_note(const struct bt__local_pod *p)
{
    switch (p->k->restart) {
    case BT_K8S_RESTART_EXITCODE:
        return p->status >= 128 ? "; restartPolicy ExitCode: the operator would restart it "
                                  "(status >= 128 is retryable)"
                                : "; restartPolicy ExitCode: a permanent failure (status < 128)";
    case BT_K8S_RESTART_ONFAILURE:
    case BT_K8S_RESTART_ALWAYS:
        return "; the operator would restart it (restartPolicy), baton k8s local does not";
    default: return "";
    }
}

/* The pod a `baton run` failure line names ("rank R (node N, host H, ...", "node N (host H,
 * ..."): the pod whose name is H (its host name under --netns and on a cluster), else the pod
 * whose `baton run` said it is node N; NULL when neither. */
static const struct bt__local_pod *cause_pod(const struct bt__local *l, const char *cause)
{
    const char *s = cause;
    while ((s = strstr(s, "node ")) && (s[5] < '0' || s[5] > '9'))
        s += 5;
    const char *h = s ? strstr(s, "host ") : NULL;
    size_t hl = h ? strcspn(h + 5, ",) ") : 0;
    for (size_t i = 0; h && i < l->npods; i++)
        if (strlen(l->pods[i].k->name) == hl && !strncmp(l->pods[i].k->name, h + 5, hl))
            return &l->pods[i];
    for (size_t i = 0; s && i < l->npods; i++)
        if (l->pods[i].node >= 0 && l->pods[i].node == atoi(s + 5))
            return &l->pods[i];
    return NULL;
}

/* The root cause: the failed pod that baton run's report names, else the first pod to fail
 * (a pod that exits once its peer died may well exit before the pod whose rank failed). */
static void blame(struct run *r)
{
    const struct bt__local_pod *c = r->cause[0] ? cause_pod(r->l, r->cause) : NULL;
    r->culprit = c && c->exited && c->status != 0 ? c : r->first;
    if (r->culprit)
        r->rc = r->culprit->status;
}

static void report(const struct run *r)
{
    const struct bt__local *l = r->l;
    double t = now_s() - r->t0;
    if (r->outcome == SUCCEEDED) {
        printf("baton k8s local: job %s succeeded in %.1f s\n", l->job->name, t);
        return;
    }
    if (r->culprit) {
        int sig = r->culprit->status > 128 ? r->culprit->status - 128 : 0;
        fprintf(stderr, "baton k8s local: job %s failed: pod %s exited with status %d%s%s%s%s",
                l->job->name, r->culprit->k->name, r->culprit->status, sig ? " (" : "",
                sig ? strsignal(sig) : "", sig ? ")" : "", restart_note(r->culprit));
        if (r->cause[0])
            fprintf(stderr, "; baton run's report: %s", r->cause);
        if (r->first != r->culprit)
            fprintf(stderr, "; the first pod to fail was %s (status %d)", r->first->k->name,
                    r->first->status);
        fprintf(stderr, "\n");
        return;
    }
    fprintf(stderr, "baton k8s local: job %s failed: %s after %.1f s; pods still running then:",
            l->job->name, r->why, t);
    for (size_t i = 0; i < l->npods; i++)
        if (l->pods[i].started && (!l->pods[i].exited || l->pods[i].status))
            fprintf(stderr, " %s", l->pods[i].k->name);
    fprintf(stderr, "\n");
}

/* Kills and reaps what is left: pods, and orphans handed to us as the subreaper. */
static void kill_leftovers(struct bt__local *l)
{
    for (size_t i = 0; i < l->npods; i++)
        if (l->pods[i].pid > 0) {
            kill(-l->pods[i].pid, SIGKILL);
            kill(l->pods[i].pid, SIGKILL);
        }
    for (size_t i = 0; i < l->npods; i++) {
        if (l->pods[i].pid > 0)
            while (waitpid(l->pods[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (l->pods[i].out_fd >= 0)
            close(l->pods[i].out_fd);
        l->pods[i].out_fd = -1;
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void step(struct run *r)
{
    struct bt__local *l = r->l;
    double now = now_s();
    if (!r->outcome && r->next < l->npods && now >= r->next_start) {
        if (start_pod(r, &l->pods[l->order[r->next]]) != 0) {
            r->outcome = FAILED;
            r->why = "a pod could not be started";
            r->rc = 1;
            r->decided_at = now;
        }
        r->next++;
        r->next_start = now + l->stagger_s;
    }
    poll_output(r, r->next < l->npods && !r->outcome && l->stagger_s == 0 ? 0 : 100);
    reap(r);
    decide(r, now_s());
    if (r->outcome)
        wind_down(r, now_s());
}

int bt__local_run(struct bt__local *l)
{
    struct run r = {.l = l, .t0 = now_s()};
    set_signals();
    if (l->netns && bt__local_net_up(l) != 0) {
        bt__local_net_down(l);
        return bt__local_signal ? 128 + bt__local_signal : 1;
    }
    r.t0 = now_s();
    r.next_start = r.t0;
    while (!all_done(l, r.killed) || (!r.outcome && r.next < l->npods) ||
           (r.outcome == UNDECIDED && r.next == 0))
        step(&r);
    kill_leftovers(l);
    if (!r.outcome) {
        r.outcome = FAILED;
        r.why = "every pod ended but the success rule was not met";
        r.rc = 1;
    }
    if (r.first)
        blame(&r);
    report(&r);
    bt__local_net_down(l);
    return r.outcome == SUCCEEDED ? 0 : r.rc ? r.rc : 1;
}
