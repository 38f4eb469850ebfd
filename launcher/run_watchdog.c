/* run_watchdog.c: the process that cleans up a job whose baton died without doing so.
 *
 * PR_SET_PDEATHSIG reaches the workers, not what they started; a kill -9 (or a crash) of baton
 * would leave those running, and the shared-memory name of a node whose ranks had not all
 * attached in /dev/shm. So before any child, baton forks the watchdog:
 *
 *   - in its own process group (a Ctrl-C or a kill of baton's group does not reach it), outside
 *     the job's cgroup, with no fd of baton's but stderr and the read end of a pipe whose write
 *     end only baton holds (close-on-exec, so no worker inherits it). It ignores SIGINT and
 *     SIGHUP and blocks in read() on that pipe: it costs no CPU;
 *   - baton writes one record per event: 'S' pid when it started a child, 'R' pid when it reaped
 *     one, 'X' when it has cleaned up and is about to exit;
 *   - at EOF after 'X' it exits 0 (baton then reaps it). At EOF without 'X' (baton is gone) it
 *     SIGKILLs the job: every member of the job's cgroup (cgroup.kill, and the pids in
 *     cgroup.procs) until it is empty, and it removes the folder; without a cgroup, every process
 *     whose process group or session is one of the unreaped children's, or whose environment
 *     holds BATON_LAUNCHER_PID=<baton's pid> and which started after baton did (the job's mark:
 *     every child gets it and what they start inherits it). Then it unlinks /dev/shm/baton-<P>-*
 *     for P = baton and each unreaped child, prints one line on stderr, and exits.
 *
 * It ends only processes of the job: members of the job's cgroup, or processes identified by
 * pid (the children baton named, checked to be unreaped) and the job's mark; never by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/run.h"

#define KILL_ROUNDS 300   /* rounds of SIGKILL until the job is empty, 10 ms apart */
#define ENV_MAX (1 << 20) /* bytes of a process's environment read to look for the mark */
#define FD_SCAN_MAX 65536 /* fds closed in the watchdog (beyond: none are baton's) */

struct rec {
    char kind; /* 'S' started, 'R' reaped, 'X' baton cleaned up and exits */
    int32_t pid;
};

struct dog {
    pid_t baton;
    unsigned long long baton_start; /* clock ticks after boot (field 22 of /proc/pid/stat) */
    const char *cg;                 /* the job's cgroup folder, "" when none */
    pid_t *kids;                    /* children started and not reaped */
    int nkids, cap;
    int clean; /* 'X' received */
};

static void note(struct dog *d, const struct rec *m)
{
    if (m->kind == 'X')
        d->clean = 1;
    for (int i = 0; m->kind == 'R' && i < d->nkids; i++)
        if (d->kids[i] == m->pid)
            d->kids[i] = d->kids[--d->nkids];
    if (m->kind != 'S')
        return;
    if (d->nkids == d->cap) {
        pid_t *v = realloc(d->kids, sizeof(pid_t) * (size_t)(d->cap ? 2 * d->cap : 64));
        if (!v)
            return; /* not remembered: the cgroup or the mark still finds it */
        d->kids = v;
        d->cap = d->cap ? 2 * d->cap : 64;
    }
    d->kids[d->nkids++] = m->pid;
}

static int read_rec(int fd, struct rec *m)
{
    size_t got = 0;
    while (got < sizeof(*m)) {
        ssize_t n = read(fd, (char *)m + got, sizeof(*m) - got);
        if (n == 0 || (n < 0 && errno != EINTR))
            return -1;
        got += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

/* Whether pid's environment holds mark ("BATON_LAUNCHER_PID=<baton>") as a whole entry. */
static int has_mark(pid_t pid, const char *mark)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;
    char *buf = fd >= 0 ? malloc(ENV_MAX) : NULL;
    size_t len = 0, ml = strlen(mark) + 1; /* with its NUL */
    ssize_t n = 0;
    while (buf && len < ENV_MAX && (n = read(fd, buf + len, ENV_MAX - len)) > 0)
        len += (size_t)n;
    for (size_t i = 0; buf && !found && i + ml <= len; i += strnlen(buf + i, len - i) + 1)
        found = !memcmp(buf + i, mark, ml);
    free(buf);
    if (fd >= 0)
        close(fd);
    return found;
}

/* Without a cgroup: whether p belongs to the job (see the file's header). */
static int of_job(const struct dog *d, const struct bt__proc *p, const char *mark)
{
    for (int i = 0; i < d->nkids; i++)
        if (p->pgrp == d->kids[i] || p->sid == d->kids[i] || p->pid == d->kids[i])
            return 1;
    return p->start >= d->baton_start && has_mark(p->pid, mark);
}

/* One round without a cgroup: SIGKILLs what of_job finds; returns how many. */
static int kill_marked(const struct dog *d)
{
    char mark[48];
    struct bt__proc *p;
    int n = bt__run_procs(&p), k = 0;
    snprintf(mark, sizeof(mark), "BATON_LAUNCHER_PID=%d", (int)d->baton);
    for (int i = 0; i < n; i++)
        if (p[i].pid != getpid() && p[i].state != 'Z' && of_job(d, &p[i], mark))
            k += kill(p[i].pid, SIGKILL) == 0;
    free(p);
    return k;
}

static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* SIGKILLs the job until nothing of it is left (bounded); returns how many were found. */
static int kill_job(const struct dog *d, int *left)
{
    int total = 0, k = 0;
    for (int i = 0; i < KILL_ROUNDS; i++) {
        k = d->cg[0] ? bt__run_cg_signal(d->cg, SIGKILL) : kill_marked(d);
        total += i == 0 ? k : 0;
        if (k == 0)
            break;
        pause_ms(10);
    }
    *left = k;
    if (d->cg[0])
        for (int i = 0; rmdir(d->cg) != 0 && errno == EBUSY && i < 100; i++)
            pause_ms(10);
    return total;
}

static void clean_up(const struct dog *d)
{
    int left = 0, killed = kill_job(d, &left);
    int shm = bt__run_unlink_shm(d->baton);
    for (int i = 0; i < d->nkids; i++)
        shm += bt__run_unlink_shm(d->kids[i]);
    fprintf(stderr,
            "baton watchdog: baton (pid %d) ended without stopping its job; sent SIGKILL to %d "
            "process(es) of it (%s%s), removed %d /dev/shm/baton-* name(s)%s\n",
            (int)d->baton, killed, d->cg[0] ? "cgroup " : "process groups, sessions, mark", d->cg,
            shm, left ? "; some are still there (uninterruptible?)" : "");
}

/* The watchdog's life: blocks in read() until baton's end of the pipe closes. */
static int watch(int fd, pid_t baton, const char *cg)
{
    struct dog d = {.baton = baton, .cg = cg};
    struct bt__proc bp;
    struct rec m;
    if (bt__run_proc_read(baton, &bp) == 0)
        d.baton_start = bp.start;
    while (read_rec(fd, &m) == 0) /* ends at EOF: baton exited, however */
        note(&d, &m);
    if (!d.clean)
        clean_up(&d);
    free(d.kids);
    return 0;
}

/* In the watchdog right after fork: signals, process group, fds, name. */
static void detach(int keep)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    setpgid(0, 0);
    prctl(PR_SET_NAME, "baton-watchdog");
    int nul = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 2 && nul >= 0; fd++)
        dup2(nul, fd);
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < (max > 0 && max < FD_SCAN_MAX ? max : FD_SCAN_MAX); fd++)
        if (fd != keep)
            close(fd);
}

int bt__run_watchdog_start(struct bt__run *r)
{
    int p[2];
    sigset_t all, old;
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t baton = getpid();
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        detach(p[0]);
        sigprocmask(SIG_SETMASK, &old, NULL);
        _exit(watch(p[0], baton, r->tree.cg));
    }
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        errno = e;
        return -1;
    }
    r->tree.dog = pid;
    r->tree.dog_fd = p[1];
    return 0;
}

static void tell(struct bt__run *r, char kind, pid_t pid)
{
    struct rec m;
    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.pid = (int32_t)pid;
    if (r->tree.dog_fd >= 0 && write(r->tree.dog_fd, &m, sizeof(m)) != (ssize_t)sizeof(m)) {
        close(r->tree.dog_fd); /* the watchdog is gone: carry on without it */
        r->tree.dog_fd = -1;
    }
}

void bt__run_tree_started(struct bt__run *r, pid_t pid)
{
    tell(r, 'S', pid);
}

void bt__run_tree_reaped(struct bt__run *r, pid_t pid)
{
    tell(r, 'R', pid);
}

void bt__run_watchdog_stop(struct bt__run *r)
{
    struct bt__run_tree *t = &r->tree;
    int st;
    tell(r, 'X', 0);
    if (t->dog_fd >= 0)
        close(t->dog_fd);
    t->dog_fd = -1;
    for (int i = 0; t->dog > 0 && i < 200; i++) { /* it exits at once; 2 s at most */
        pid_t w = waitpid(t->dog, &st, WNOHANG);
        if (w == t->dog || (w < 0 && errno == ECHILD))
            break;
        pause_ms(10);
    }
    t->dog = 0;
}
