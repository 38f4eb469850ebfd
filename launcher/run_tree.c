/* run_tree.c: baton owns every process its job starts, however deep and wherever it moved.
 *
 * Three layers, set up once before the first child starts (bt__run_tree_setup):
 *  1. Subreaper. baton sets PR_SET_CHILD_SUBREAPER: a process whose parent dies (the program
 *     that `sh -c 'prog & exec ...'` left in the background once the shell exited, a double
 *     fork that daemonizes) is reparented to baton instead of init. So while baton lives every
 *     process of the job is a descendant of baton, and the supervise loop's waitpid(-1) reaps
 *     it.
 *  2. One cgroup v2 per job where the machine allows it (BATON_CGROUP=auto, a cgroup2 mount
 *     that baton may write): <baton's own cgroup>/baton-<pid>. Each child joins it between fork
 *     and exec (bt__run_tree_join), and what it forks stays in it whatever setsid or setpgid it
 *     does. Whether it works is decided by a probe child that tries to join it; if not, the
 *     folder is removed and baton says so at INFO (subsystem LAUNCH).
 *  3. The watchdog (run_watchdog.c): a process forked before any child that cleans up when
 *     baton dies without doing so itself (kill -9, a crash).
 *
 * bt__run_tree_signal sends a signal to every process of the job that the signal to its worker
 * process groups did not reach already (SIGKILL and SIGCONT: to all): the members of the cgroup
 * and, always, every descendant of baton found by walking /proc/<pid>/stat (its parent chain
 * leads to baton; the watchdog is excluded). bt__run_tree_clear, after each generation,
 * SIGKILLs and reaps whatever is left and removes the shared-memory names of the job
 * (/dev/shm/baton-<baton's pid>-*: collectives/transport/shm.c names its segment after
 * BATON_LAUNCHER_PID). This file does not decide when: run_supervise.c does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

BT_PARAM_STR(cgroup, "BATON_CGROUP", "auto")

#define PROCS_MAX (1 << 20) /* processes a /proc walk reads at most */
#define CLEAR_TRIES 300     /* bt__run_tree_clear: rounds of kill, reap, look (10 ms apart) */
#define DEPTH_MAX 256       /* generations of descendants a walk follows */

static int parse_stat(const char *buf, struct bt__proc *p)
{
    const char *e = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!e)
        return -1;
    int n = sscanf(e + 1,
                   " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
                   "%llu",
                   &p->state, &p->ppid, &p->pgrp, &p->sid, &p->start);
    return n == 5 ? 0 : -1;
}

int bt__run_proc_read(pid_t pid, struct bt__proc *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    p->pid = pid;
    return parse_stat(buf, p);
}

int bt__run_procs(struct bt__proc **out)
{
    DIR *d = opendir("/proc");
    int n = 0, cap = 0;
    struct bt__proc *v = NULL;
    struct dirent *de;
    *out = NULL;
    if (!d)
        return -1;
    while ((de = readdir(d)) && n < PROCS_MAX) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        if (n == cap) {
            struct bt__proc *nv = realloc(v, sizeof(*v) * (size_t)(cap = cap ? 2 * cap : 512));
            if (!nv)
                break;
            v = nv;
        }
        n += bt__run_proc_read((pid_t)pid, &v[n]) == 0;
    }
    closedir(d);
    *out = v;
    return n;
}

static int in_list(pid_t pid, const pid_t *v, int n)
{
    for (int i = 0; i < n; i++)
        if (v[i] == pid)
            return 1;
    return 0;
}

/* Descendants of root in p[0..n) (the subtrees of `skip` and of the --ps servers that outlive
 * this generation left out) into *out; returns how many, -1 when out of memory. Each round adds
 * the processes whose parent is already in. */
static int descendants(const struct bt__run *r, const struct bt__proc *p, int n, pid_t root,
                       pid_t skip, pid_t **out)
{
    pid_t *in = malloc(sizeof(pid_t) * (size_t)(n + 1));
    int k = 1, added = 1;
    if (!in)
        return -1;
    in[0] = root;
    for (int round = 0; added && round < DEPTH_MAX; round++) {
        added = 0;
        for (int i = 0; i < n; i++)
            if (p[i].pid != skip && p[i].pid != root && in_list(p[i].ppid, in, k) &&
                !in_list(p[i].pid, in, k) && !bt__run_child_kept(r, p[i].pid))
                in[k++] = p[i].pid, added = 1;
    }
    memmove(in, in + 1, sizeof(pid_t) * (size_t)(k - 1));
    *out = in;
    return k - 1;
}

/* Whether a process of group pgrp already got sig: run_supervise.c signals each running
 * worker's process group first, and a second SIGTERM would reach a program inside its handler's
 * clean-up (torch's @record writing its error file, cut short by the second one). SIGKILL and
 * SIGCONT are sent again: twice does no harm there. */
static int group_signalled(const struct bt__run *r, pid_t pgrp, int sig)
{
    if (sig == SIGKILL || sig == SIGCONT)
        return 0;
    for (int i = 0; i < r->nchild; i++)
        if (r->w[i].pid == pgrp && r->w[i].running && !bt__run_child_kept(r, pgrp))
            return 1;
    return 0;
}

/* Signals every descendant of baton but the watchdog (and but those of a group that got sig
 * already); returns how many there were. */
static int signal_descendants(const struct bt__run *r, int sig)
{
    struct bt__proc *p;
    pid_t *d = NULL;
    int n = bt__run_procs(&p), k = n > 0 ? descendants(r, p, n, getpid(), r->tree.dog, &d) : 0;
    for (int i = 0; i < k && sig; i++) {
        pid_t pgrp = 0;
        for (int j = 0; j < n && !pgrp; j++)
            pgrp = p[j].pid == d[i] ? p[j].pgrp : 0;
        if (!group_signalled(r, pgrp, sig))
            kill(d[i], sig);
    }
    free(p);
    free(d);
    return k > 0 ? k : 0;
}

/* The pids listed in cgroup folder cg into *out (malloc'd); returns how many, -1 on error. */
int bt__run_cg_pids(const char *cg, pid_t **out)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
    FILE *f = fopen(path, "re");
    int n = 0, cap = 0;
    long pid;
    *out = NULL;
    if (!f)
        return -1;
    while (n < PROCS_MAX && fscanf(f, "%ld", &pid) == 1) {
        if (n == cap) {
            pid_t *nv = realloc(*out, sizeof(pid_t) * (size_t)(cap = cap ? 2 * cap : 64));
            if (!nv)
                break;
            *out = nv;
        }
        (*out)[n++] = (pid_t)pid;
    }
    fclose(f);
    return n;
}

int bt__run_cg_signal(const char *cg, int sig)
{
    pid_t *v;
    int n = bt__run_cg_pids(cg, &v);
    char path[PATH_MAX + 16];
    for (int i = 0; i < n; i++)
        kill(v[i], sig);
    free(v);
    snprintf(path, sizeof(path), "%s/cgroup.kill", cg);
    int fd = sig == SIGKILL ? open(path, O_WRONLY | O_CLOEXEC) : -1;
    if (fd >= 0) { /* kernel 5.14+: also what forks while we read the list */
        (void)!write(fd, "1", 1);
        close(fd);
    }
    return n > 0 ? n : 0;
}

void bt__run_tree_signal(struct bt__run *r, int sig)
{
    if (r->tree.cg[0] && !r->w_keep) { /* in place, kept workers are in the cgroup too */
        pid_t *v;
        int n = bt__run_cg_pids(r->tree.cg, &v);
        struct bt__proc p;
        for (int i = 0; i < n; i++)
            if (!(bt__run_proc_read(v[i], &p) == 0 && group_signalled(r, p.pgrp, sig)))
                kill(v[i], sig);
        free(v);
        if (sig == SIGKILL)
            bt__run_cg_signal(r->tree.cg, sig); /* and cgroup.kill: what forks meanwhile */
    }
    signal_descendants(r, sig);
}

void bt__run_tree_join(const struct bt__run *r)
{
    if (!r->tree.cg[0])
        return;
    int fd = open(r->tree.cg_procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "0", 1);
        close(fd);
    }
}

int bt__run_unlink_shm(pid_t pid)
{
    char pat[64];
    glob_t g;
    int n = 0;
    snprintf(pat, sizeof(pat), "/dev/shm/baton-%d-*", (int)pid);
    if (glob(pat, GLOB_NOSORT, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++)
        n += unlink(g.gl_pathv[i]) == 0;
    globfree(&g);
    return n;
}

/* Reaps what is there (orphans the subreaper inherited); the watchdog's end is noted, and so
 * is a --ps server's that ended between generations (the next one starts it again). */
static void reap_strays(struct bt__run *r)
{
    pid_t pid;
    int st;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == r->tree.dog)
            r->tree.dog = 0;
        for (int i = 0; i < r->nchild; i++)
            if (r->w[i].pid == pid && r->w[i].running) { /* a server, or a worker kept in place */
                r->w[i].running = 0;
                r->w[i].status = st;
                BT_INFO(LAUNCH, "%s %d (pid %d) ended with status %d between generations",
                        i < r->nproc ? "rank" : "server ps",
                        i < r->nproc ? r->w[i].rank : r->w[i].ps_index, (int)pid,
                        bt__run_exit_status(st));
            }
    }
}

static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

void bt__run_tree_clear(struct bt__run *r)
{
    int left = 0, cg = 0;
    for (int i = 0; i < CLEAR_TRIES; i++) {
        pid_t *v = NULL;
        cg = r->tree.cg[0] && !r->w_keep ? bt__run_cg_pids(r->tree.cg, &v) : 0;
        for (int k = 0; k < cg; k++)
            kill(v[k], SIGKILL);
        free(v);
        left = signal_descendants(r, SIGKILL);
        reap_strays(r);
        if (left + (cg > 0 ? cg : 0) == 0)
            break;
        pause_ms(10);
    }
    if (left + (cg > 0 ? cg : 0) > 0)
        BT_WARN(LAUNCH,
                "%d process(es) of the job still there after SIGKILL and %d s (uninterruptible "
                "sleep? see ps -o pid,stat,wchan)",
                left + (cg > 0 ? cg : 0), CLEAR_TRIES / 100);
    int n = bt__run_unlink_shm(getpid());
    if (n)
        BT_INFO(LAUNCH, "removed %d shared-memory name(s) /dev/shm/baton-%d-* of the job", n,
                (int)getpid());
}

/* "0::/path" of /proc/self/cgroup and the cgroup2 mount point make baton's cgroup folder. */
static int own_cgroup(char *out, size_t n)
{
    char line[PATH_MAX + 64], mnt[PATH_MAX] = "", rel[PATH_MAX] = "";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && !mnt[0] && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - cgroup2 ");
        if (sep && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            mnt[0] = 0;
        if (!sep)
            mnt[0] = 0;
    }
    if (f)
        fclose(f);
    f = fopen("/proc/self/cgroup", "re");
    while (f && !rel[0] && fgets(line, sizeof(line), f))
        if (!strncmp(line, "0::", 3))
            snprintf(rel, sizeof(rel), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
    if (f)
        fclose(f);
    if (!mnt[0] || !rel[0])
        return -1;
    int k = snprintf(out, n, "%s%s", mnt, strcmp(rel, "/") ? rel : "");
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* A child that joins the cgroup and exits: 0 when it could. */
static int probe(const struct bt__run *r)
{
    pid_t pid = fork();
    int st = 0;
    if (pid == 0) {
        int fd = open(r->tree.cg_procs, O_WRONLY | O_CLOEXEC);
        _exit(fd >= 0 && write(fd, "0", 1) == 1 ? 0 : 1);
    }
    if (pid < 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Makes and tests the job's cgroup; why not into why when it cannot be used. */
static int cgroup_setup(struct bt__run *r, char *why, size_t n)
{
    struct bt__run_tree *t = &r->tree;
    char base[PATH_MAX];
    if (!strcmp(bt__param_cgroup(), "off") || !strcmp(bt__param_cgroup(), "0"))
        return snprintf(why, n, "BATON_CGROUP=%s", bt__param_cgroup()), -1;
    if (own_cgroup(base, sizeof(base)) != 0)
        return snprintf(why, n, "no cgroup2 mount or no 0:: line in /proc/self/cgroup"), -1;
    if (snprintf(t->cg, sizeof(t->cg), "%s/baton-%d", base, (int)getpid()) >= (int)sizeof(t->cg))
        return snprintf(why, n, "cgroup path too long"), t->cg[0] = 0, -1;
    snprintf(t->cg_procs, sizeof(t->cg_procs), "%s/cgroup.procs", t->cg);
    if (mkdir(t->cg, 0755) != 0 && errno != EEXIST) {
        snprintf(why, n, "mkdir %s: %s", t->cg, strerror(errno));
        t->cg[0] = 0;
        return -1;
    }
    if (probe(r) != 0) {
        snprintf(why, n, "a process cannot join %s", t->cg);
        rmdir(t->cg);
        t->cg[0] = 0;
        return -1;
    }
    return 0;
}

int bt__run_tree_setup(struct bt__run *r)
{
    char why[PATH_MAX + 64] = "";
    r->tree.dog_fd = -1;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        BT_WARN(LAUNCH, "prctl(PR_SET_CHILD_SUBREAPER): %s; orphans of the workers go to init",
                strerror(errno));
    int cg = cgroup_setup(r, why, sizeof(why));
    if (bt__run_watchdog_start(r) != 0)
        BT_WARN(LAUNCH, "no watchdog (%s): a kill -9 of baton may leave the job's descendants",
                strerror(errno));
    if (cg == 0)
        BT_INFO(LAUNCH,
                "process tree: cgroup v2 %s holds every process of the job; watchdog pid %d",
                r->tree.cg, (int)r->tree.dog);
    else
        BT_INFO(LAUNCH,
                "process tree: no cgroup (%s); the job is found by process group, session, "
                "ancestry and BATON_LAUNCHER_PID; watchdog pid %d",
                why, (int)r->tree.dog);
    return 0;
}

void bt__run_tree_close(struct bt__run *r)
{
    struct bt__run_tree *t = &r->tree;
    bt__run_tree_clear(r);
    for (int i = 0; t->cg[0] && rmdir(t->cg) != 0 && errno == EBUSY && i < 100; i++)
        pause_ms(10); /* the last member's exit is still being accounted */
    t->cg[0] = 0;
    bt__run_watchdog_stop(r);
}
