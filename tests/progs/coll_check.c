/* coll_check.c: collectives in real processes, for tests/t_coll*.sh.
 *
 * Under `baton run` (or any BATON_* env) each rank joins with bt_init, checks every
 * collective against a reference on a few counts and dtypes, then runs --iters allreduces of
 * --count floats. With --fork N it is its own launcher: it hosts a store on 127.0.0.1 port 0
 * and forks N ranks with the BATON_* env (--nnodes K splits them into K "nodes"), which is
 * how the fault tests control exactly which rank dies and when.
 *
 *   --die-rank R --die-at I --signal KILL|STOP   rank R raises the signal before iteration I
 *                                                (--die-at split: before the --split)
 *   --requests K   each iteration issues K bt_iallreduce (slices of the buffer), all
 *                  outstanding at once, then waits on each; a failed wait prints
 *                  "rank R: request K failed after S s: <its bt_request_error>"
 *   --slow-rank R --slow-ms MS                   rank R sleeps MS before each iteration
 *                                                (R = all: every rank does)
 *   --bad-count-rank R --bad-count-at I          rank R passes count - 24 at iteration I
 *   --bad-op-rank R --bad-op-at I                rank R passes max for sum at iteration I
 *                                                (the call completes: nothing fails)
 *   --linger SEC                                 sleep SEC after the loop, before bt_finalize
 *   --record-failure 1                           a rank whose loop's collective fails writes
 *                                                the error to its error file (bt_error_record)
 *   --split M      the loop runs on a sub-communicator: bt_comm_split with color rank % M
 *                  (M = 2: the even and the odd ranks), made after the checks on the world
 *   --dups K       after the checks, K bt_comm_dup of the world, one allreduce on each, all
 *                  kept until the end (the flight recorder's rings run out after 6)
 *
 * Each rank prints "rank R ok" on success, or "rank R: <call> failed after S s: <code>:
 * <detail>" (S = seconds since the victim's planned death) and exits 3. The forking parent
 * reaps every child (SIGKILL to stopped or stuck ones after --deadline seconds) and prints
 * "child R: exit C" or "child R: signal S".
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"
#include "rendezvous/store.h"

#define SLOW_ALL (-2)     /* --slow-rank all */
#define DIE_AT_SPLIT (-2) /* --die-at split */

struct opts {
    int fork_n, nnodes, iters, die_rank, die_at, sig;
    int requests; /* > 0: each iteration is that many bt_iallreduce requests, then waits */
    int slow_rank, slow_ms, bad_rank, bad_at, badop_rank, badop_at;
    int split; /* > 0: the loop runs on the sub-communicator of color rank % split */
    int dups;  /* communicators bt_comm_dup'd and kept (at most 16) */
    double linger;
    int record; /* --record-failure */
    size_t count;
    double deadline;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int check_small(bt_comm *c, int rank, int size)
{
    static const size_t counts[] = {0, 1, 7, 1000, 65536 + 3};
    static float in[65536 + 3], out[65536 + 3];
    for (int k = 0; k < 5; k++) {
        size_t n = counts[k];
        for (size_t i = 0; i < n; i++)
            in[i] = (float)((rank * 31 + (int)i * 7) % 17);
        if (bt_allreduce(c, in, out, n, BT_FLOAT32, BT_SUM) != BT_OK)
            return -1;
        for (size_t i = 0; i < n; i++) {
            float want = 0;
            for (int r = 0; r < size; r++)
                want += (float)((r * 31 + (int)i * 7) % 17);
            if (out[i] != want) {
                printf("rank %d: allreduce count %zu element %zu: got %g want %g\n", rank, n, i,
                       (double)out[i], (double)want);
                return 1;
            }
        }
        for (size_t i = 0; i < n; i++)
            out[i] = rank == size - 1 ? (float)i : -1.0f;
        if (bt_broadcast(c, out, n, BT_FLOAT32, size - 1) != BT_OK)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (float)i) {
                printf("rank %d: broadcast count %zu element %zu wrong\n", rank, n, i);
                return 1;
            }
    }
    return bt_barrier(c) == BT_OK ? 0 : -1;
}

/* One iteration as o->requests nonblocking allreduces of slices of buf, all outstanding,
 * then a wait on each: every failed wait prints its own line, naming what its request saw. */
static int requests(bt_comm *c, const struct opts *o, float *buf, int rank, double t_die)
{
    bt_request *req[16] = {0};
    size_t per = o->count / (size_t)o->requests;
    int rc = 0, k;
    for (k = 0; k < o->requests; k++)
        if (bt_iallreduce(c, buf + (size_t)k * per, buf + (size_t)k * per, per, BT_FLOAT32, BT_SUM,
                          &req[k]) != BT_OK)
            break;
    for (int i = 0; i < o->requests; i++) {
        if (i >= k) {
            printf("rank %d: request %d not issued after %.2f s\n", rank, i,
                   t_die > 0 ? now_s() - t_die : 0.0);
            rc = -1;
            continue;
        }
        if (bt_wait(req[i]) != BT_OK) {
            printf("rank %d: request %d failed after %.2f s: %s\n", rank, i,
                   t_die > 0 ? now_s() - t_die : 0.0, bt_request_error(req[i]));
            rc = -1;
        }
        bt_request_free(req[i]);
    }
    return rc;
}

static int worker(const struct opts *o)
{
    bt_comm *c = NULL;
    int rank = -1, size = 0;
    if (bt_init(&c) != BT_OK) {
        printf("bt_init failed: %s\n", bt_last_error(NULL));
        return 3;
    }
    bt_comm_rank(c, &rank);
    bt_comm_size(c, &size);
    int rc = check_small(c, rank, size);
    if (rc > 0)
        return 4;
    bt_comm *dup[16] = {0};
    for (int i = 0; i < o->dups; i++) {
        float x = 1;
        if (bt_comm_dup(c, &dup[i]) != BT_OK ||
            bt_allreduce(dup[i], &x, &x, 1, BT_FLOAT32, BT_SUM) != BT_OK) {
            printf("rank %d: dup %d failed: %s\n", rank, i, bt_last_error(c));
            return 3;
        }
    }
    bt_comm *lc = c; /* the loop's communicator */
    if (o->die_at == DIE_AT_SPLIT && rank == o->die_rank) {
        printf("rank %d: stopping before the split\n", rank);
        fflush(stdout);
        raise(o->sig);
    }
    if (o->split > 0 && bt_comm_split(c, rank % o->split, rank, &lc) != BT_OK) {
        printf("rank %d: comm_split failed: %s\n", rank, bt_last_error(c));
        return 3;
    }
    float *buf = calloc(o->count ? o->count : 1, sizeof(float));
    double t_die = 0;
    printf("rank %d: loop started\n", rank);
    fflush(stdout);
    for (int it = 0; rc == 0 && it < o->iters; it++) {
        if (it == o->die_at) {
            t_die = now_s();
            if (rank == o->die_rank) {
                fflush(stdout);
                raise(o->sig);
            }
        }
        for (size_t i = 0; i < o->count; i += 4096)
            buf[i] = 1.0f;
        if (rank == o->slow_rank || o->slow_rank == SLOW_ALL) {
            struct timespec ts = {o->slow_ms / 1000, (long)(o->slow_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        size_t n = rank == o->bad_rank && it == o->bad_at && o->count > 24 ? o->count - 24
                                                                           : o->count;
        if (o->requests > 0) /* one allreduce per iteration: as requests, or blocking */
            rc = requests(lc, o, buf, rank, t_die);
        else
            rc = bt_allreduce(lc, buf, buf, n, BT_FLOAT32,
                              rank == o->badop_rank && it == o->badop_at ? BT_MAX : BT_SUM) == BT_OK
                     ? 0
                     : -1;
    }
    if (rc != 0) {
        printf("rank %d: collective failed after %.2f s: %s\n", rank,
               t_die > 0 ? now_s() - t_die : 0.0, bt_last_error(lc));
        if (o->record && bt_error_record("%s", bt_last_error(lc)) != BT_OK)
            printf("rank %d: bt_error_record failed\n", rank);
        if (lc != c)
            bt_comm_destroy(lc);
        printf("rank %d: code %s\n", rank, bt_strerror(bt_finalize(c)));
        free(buf);
        return 3;
    }
    printf("rank %d ok\n", rank);
    fflush(stdout);
    if (o->linger > 0) {
        struct timespec ts = {(time_t)o->linger,
                              (long)((o->linger - (double)(time_t)o->linger) * 1e9)};
        nanosleep(&ts, NULL);
    }
    free(buf);
    for (int i = 0; i < o->dups; i++)
        if (bt_comm_destroy(dup[i]) != BT_OK)
            return 3;
    if (lc != c && bt_comm_destroy(lc) != BT_OK)
        return 3;
    return bt_finalize(c) == BT_OK ? 0 : 3;
}

/* ---- --fork N: a tiny launcher ---- */

static void set_env_int(const char *name, int v)
{
    char s[32];
    snprintf(s, sizeof(s), "%d", v);
    setenv(name, s, 1);
}

static pid_t spawn(const struct opts *o, int rank, int port)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int per = o->fork_n / o->nnodes;
    char rdzv[64];
    snprintf(rdzv, sizeof(rdzv), "127.0.0.1:%d", port);
    set_env_int("BATON_RANK", rank);
    set_env_int("BATON_WORLD_SIZE", o->fork_n);
    set_env_int("BATON_LOCAL_RANK", rank % per);
    set_env_int("BATON_LOCAL_WORLD_SIZE", per);
    set_env_int("BATON_NODE_RANK", rank / per);
    set_env_int("BATON_NNODES", o->nnodes);
    setenv("BATON_RDZV", rdzv, 1);
    setenv("BATON_TOKEN", "coll-check", 1);
    fflush(stdout);
    _exit(worker(o));
}

/* Waits for all children; those still there at the deadline are killed (stopped ones too). */
static int reap(const struct opts *o, pid_t *pids)
{
    int left = o->fork_n, worst = 0;
    double end = now_s() + o->deadline;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p <= 0) {
            if (now_s() > end) {
                for (int r = 0; r < o->fork_n; r++)
                    if (pids[r] > 0)
                        kill(pids[r], SIGKILL);
                end = now_s() + 60;
            }
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
            continue;
        }
        for (int r = 0; r < o->fork_n; r++) {
            if (pids[r] != p)
                continue;
            pids[r] = 0;
            left--;
            if (WIFEXITED(st))
                printf("child %d: exit %d\n", r, WEXITSTATUS(st));
            else
                printf("child %d: signal %d\n", r, WTERMSIG(st));
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            worst = code > worst ? code : worst;
        }
        /* Once every other rank is done, a stopped victim is killed. SIGKILL alone ends a
         * stopped process; a SIGCONT first let it run, and under load it sometimes failed its
         * own collective and said so before the SIGKILL landed (a third "collective failed"). */
        if (left == 1 && o->die_rank >= 0 && pids[o->die_rank] > 0 && o->sig == SIGSTOP)
            kill(pids[o->die_rank], SIGKILL);
    }
    return worst;
}

static int fork_job(const struct opts *o)
{
    struct bt__store_server *srv = NULL;
    struct bt__err err = {0};
    int port = 0;
    if (bt__store_server_create("127.0.0.1", 0, "coll-check", &srv, &port, &err) != BT_OK) {
        printf("store: %s\n", err.msg);
        return 1;
    }
    pid_t *pids = calloc((size_t)o->fork_n, sizeof(pid_t));
    for (int r = 0; r < o->fork_n; r++)
        pids[r] = spawn(o, r, port);
    bt__store_server_start(srv);
    int worst = reap(o, pids);
    bt__store_server_destroy(srv);
    free(pids);
    return worst;
}

static int usage(const char *why)
{
    fprintf(stderr,
            "coll_check: %s\nusage: coll_check [--fork N [--nnodes K]] [--count N] "
            "[--iters N] [--die-rank R --die-at I --signal KILL|STOP] "
            "[--requests K] "
            "[--slow-rank R --slow-ms MS] [--bad-count-rank R --bad-count-at I] "
            "[--bad-op-rank R --bad-op-at I] [--linger SEC] [--record-failure 1] "
            "[--split M] [--dups K] "
            "[--deadline SEC]\n",
            why);
    return 2;
}

int main(int argc, char **argv)
{
    struct opts o = {.nnodes = 1,
                     .iters = 3,
                     .die_rank = -1,
                     .die_at = -1,
                     .sig = SIGKILL,
                     .count = 1 << 20,
                     .deadline = 60,
                     .slow_rank = -1,
                     .bad_rank = -1,
                     .bad_at = -1,
                     .badop_rank = -1,
                     .badop_at = -1};
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("an option lacks its value");
        i++;
        if (!strcmp(a, "--fork"))
            o.fork_n = atoi(v);
        else if (!strcmp(a, "--nnodes"))
            o.nnodes = atoi(v);
        else if (!strcmp(a, "--count"))
            o.count = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--iters"))
            o.iters = atoi(v);
        else if (!strcmp(a, "--die-rank"))
            o.die_rank = atoi(v);
        else if (!strcmp(a, "--die-at"))
            o.die_at = !strcmp(v, "split") ? DIE_AT_SPLIT : atoi(v);
        else if (!strcmp(a, "--requests"))
            o.requests = atoi(v);
        else if (!strcmp(a, "--deadline"))
            o.deadline = atof(v);
        else if (!strcmp(a, "--linger"))
            o.linger = atof(v);
        else if (!strcmp(a, "--record-failure"))
            o.record = atoi(v);
        else if (!strcmp(a, "--slow-rank"))
            o.slow_rank = !strcmp(v, "all") ? SLOW_ALL : atoi(v);
        else if (!strcmp(a, "--slow-ms"))
            o.slow_ms = atoi(v);
        else if (!strcmp(a, "--bad-count-rank"))
            o.bad_rank = atoi(v);
        else if (!strcmp(a, "--bad-count-at"))
            o.bad_at = atoi(v);
        else if (!strcmp(a, "--bad-op-rank"))
            o.badop_rank = atoi(v);
        else if (!strcmp(a, "--bad-op-at"))
            o.badop_at = atoi(v);
        else if (!strcmp(a, "--dups"))
            o.dups = atoi(v);
        else if (!strcmp(a, "--split"))
            o.split = atoi(v);
        else if (!strcmp(a, "--signal"))
            o.sig = !strcmp(v, "STOP") ? SIGSTOP : SIGKILL;
        else
            return usage("unknown option");
    }
    if (o.requests < 0 || o.requests > 16)
        return usage("--requests takes 0..16");
    if (o.dups < 0 || o.dups > 16)
        return usage("--dups takes 0..16");
    if (o.fork_n > 0) {
        if (o.nnodes < 1 || o.fork_n % o.nnodes)
            return usage("--fork N must be a multiple of --nnodes");
        return fork_job(&o);
    }
    return worker(&o);
}
