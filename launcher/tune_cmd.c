/* tune_cmd.c: `baton tune`: measures the α, β, γ of the cost model (collectives/algo/cost.h)
 * on this machine and writes them to a file that jobs read through BATON_TUNE_FILE.
 *
 * `baton tune -o FILE` runs itself twice under `baton run -n 2`: once with
 * BATON_TRANSPORT=tcp (ping-pong of 8 bytes and of 4 MiB between the two ranks: one-way time
 * t(m) = α + m·β; γ from timing a float32 sum of 4 MiB) and once over shared memory (a whole
 * allreduce of 2 ranks at 8 bytes and 4 MiB, which the model prices 2α + m(2β + γ)). Medians
 * of repeated runs. To tune between two nodes, run the measuring step on them yourself:
 * `BATON_TRANSPORT=tcp BATON_TUNE_PHASE=tcp baton run --nnodes 2 ... -- baton tune -o FILE`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"
#include "collectives/algo/cost.h"
#include "collectives/comm.h"
#include "collectives/reduce.h"
#include "collectives/transport/transport.h"
#include "launcher/cmds.h"

#define SMALL 8
#define LARGE (4u << 20)
#define REPS_SMALL 301
#define REPS_LARGE 15

const char *bt__cmd_tune_usage(void)
{
    return "usage: baton tune [-o FILE]\n"
           "Measures alpha (seconds per message), beta (seconds per byte) and gamma (seconds\n"
           "per byte reduced) of TCP and of shared memory on this machine, with two ranks\n"
           "under `baton run -n 2`, and writes them to FILE (default baton-tune.txt). Jobs\n"
           "read it with BATON_TUNE_FILE=FILE: the collectives then pick the algorithm the\n"
           "cost model predicts fastest (docs/collectives.md).\n";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    return v[n / 2];
}

/* One-way time of m bytes between ranks 0 and 1 (half the median round trip). */
static double pingpong(bt_comm *c, char *buf, size_t m, int reps)
{
    double *t = malloc((size_t)reps * sizeof(*t));
    int peer = 1 - c->rank;
    for (int i = 0; i < reps && t; i++) {
        struct bt__xfer s = {.send_to = peer, .sbuf = buf, .slen = m, .recv_from = -1};
        struct bt__xfer r = {.send_to = -1, .recv_from = peer, .rbuf = buf, .rlen = m};
        double t0 = now_s();
        if (c->rank == 0 ? bt__xfer(c, &s) || bt__xfer(c, &r) : bt__xfer(c, &r) || bt__xfer(c, &s))
            break;
        t[i] = (now_s() - t0) / 2;
    }
    double med = t ? median(t, reps) : 0;
    free(t);
    return med;
}

static double allreduce_time(bt_comm *c, float *buf, size_t m, int reps)
{
    double *t = malloc((size_t)reps * sizeof(*t));
    for (int i = 0; i < reps && t; i++) {
        bt_barrier(c);
        double t0 = now_s();
        bt_allreduce(c, buf, buf, m / 4, BT_FLOAT32, BT_SUM);
        t[i] = now_s() - t0;
    }
    double med = t ? median(t, reps) : 0;
    free(t);
    return med;
}

static double gamma_of(float *a, float *b)
{
    double t[REPS_LARGE];
    for (int i = 0; i < REPS_LARGE; i++) {
        double t0 = now_s();
        bt__reduce2(BT_FLOAT32, BT_SUM, a, a, b, LARGE / 4);
        t[i] = now_s() - t0;
    }
    return median(t, REPS_LARGE) / LARGE;
}

/* The measuring step, in each of the two ranks. */
static int measure(const char *phase, const char *file)
{
    bt_comm *c = NULL;
    int rc = bt_init(&c);
    if (rc != BT_OK) {
        fprintf(stderr, "baton tune: bt_init: %s\n", bt_strerror(rc));
        return 1;
    }
    float *a = calloc(LARGE / 4, sizeof(float)), *b = calloc(LARGE / 4, sizeof(float));
    struct bt__cost_model m;
    struct bt__err err = {0};
    bt__cost_defaults(&m);
    if (access(file, R_OK) == 0)
        bt__cost_load(file, &m, &err);
    int tcp = !strcmp(phase, "tcp");
    if (tcp && (c->size != 2 || !c->inter)) {
        fprintf(stderr, "baton tune: the tcp step wants 2 ranks over TCP (BATON_TRANSPORT=tcp)\n");
        rc = 1;
    } else if (a && b && tcp) {
        pingpong(c, (char *)a, LARGE, 3); /* warm up the connections */
        double t8 = pingpong(c, (char *)a, SMALL, REPS_SMALL);
        double tl = pingpong(c, (char *)a, LARGE, REPS_LARGE);
        m.tcp.alpha = t8;
        m.tcp.beta = (tl - t8) / LARGE;
        m.tcp.gamma = m.shm.gamma = gamma_of(a, b);
    } else if (a && b) {
        allreduce_time(c, a, LARGE, 3);
        double t8 = allreduce_time(c, a, SMALL, REPS_SMALL);
        double tl = allreduce_time(c, a, LARGE, REPS_LARGE);
        m.shm.alpha = t8 / 2;
        double per = (tl - t8) / LARGE; /* 2 beta + gamma */
        m.shm.beta = per > m.shm.gamma ? (per - m.shm.gamma) / 2 : per / 2;
    }
    if (rc == BT_OK && c->rank == 0 && bt__cost_save(file, &m, &err) != BT_OK) {
        fprintf(stderr, "baton tune: %s\n", err.msg);
        rc = 1;
    }
    free(a);
    free(b);
    bt_finalize(c);
    return rc;
}

/* Runs `baton run -n 2 -- baton tune -o FILE` with the phase's env; its exit status. */
static int run_phase(const char *phase, const char *file)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    pid_t pid = fork();
    if (pid == 0) {
        setenv("BATON_TUNE_PHASE", phase, 1);
        setenv("BATON_TRANSPORT", phase, 1);
        unsetenv("BATON_TUNE_FILE");
        execl(self, self, "run", "-n", "2", "--", self, "tune", "-o", file, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int bt__cmd_tune(int argc, char **argv)
{
    const char *file = "baton-tune.txt";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            file = argv[++i];
        } else {
            fprintf(stderr, "baton tune: unknown argument '%s'; usage: baton tune [-o FILE]\n",
                    argv[i]);
            return 2;
        }
    }
    const char *phase = getenv("BATON_TUNE_PHASE");
    if (phase && getenv("BATON_RANK"))
        return measure(phase, file);
    unlink(file);
    int rc = run_phase("tcp", file);
    if (rc == 0)
        rc = run_phase("shm", file);
    if (rc != 0) {
        fprintf(stderr, "baton tune: a measuring run failed (exit %d)\n", rc);
        return 1;
    }
    FILE *f = fopen(file, "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        fputs(line, stdout);
    if (f)
        fclose(f);
    return 0;
}
