/* ps_bench.c: parameter-server push+pull throughput next to bt_allreduce of the same bytes.
 *
 * usage: ps_bench [--sizes 100K,4M,64M] [--servers 1,2] [--iters N]
 *
 * For each model size and server count: a rendezvous store in this process, S `baton ps`
 * servers and 2 workers as forked processes over loopback TCP, sync mode, SGD. Each worker
 * declares one key of the model's size (split into 4 MB pieces over the servers), checks the
 * arithmetic first (gradients of ones, lr 0.5: after k steps every weight is -0.5 k; #wrong
 * counts the weights that are not), then times push+pull steps. Then 2 ranks run bt_allreduce
 * (BATON_TRANSPORT=tcp) of the same bytes, checked, then timed.
 *
 *   time      seconds per step (push + pull, or one allreduce)
 *   GB/s      PS: bytes pushed + pulled by one worker per second (2 x size / time);
 *             allreduce: algbw = size / time, busbw = algbw * 2(n-1)/n (nccl-tests)
 *
 * The benchmark hosts the store through baton's internal store entry point, to stand the job up
 * in one command (bench/rdzv_bench.c does the same), and runs each server as `baton ps`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baton.h"
#include "baton_ps.h"
#include "common/param.h"
#include "common/sock.h"
#include "rendezvous/store.h"

struct result {
    double secs; /* per step */
    long wrong;
    int rc;
};

static int gen_next = 100;
/* The key the workers of one run declare: "model.<generation>", new in every run, since the
 * store, which all runs share, keeps each key's shape and placement (ps/key/NAME) for good. */
static char key_name[32];

static void set_env(const char *rdzv, int gen, int rank, int nservers)
{
    char b[32];
    setenv("BATON_RDZV", rdzv, 1);
    setenv("BATON_TOKEN", "bench", 1);
    setenv("BATON_WORLD_SIZE", "2", 1);
    snprintf(b, sizeof(b), "%d", rank);
    setenv("BATON_RANK", b, 1);
    snprintf(b, sizeof(b), "%d", gen);
    setenv("BATON_RESTART_COUNT", b, 1);
    snprintf(b, sizeof(b), "%d", nservers);
    setenv("BATON_PS_SERVERS", b, 1);
    setenv("BATON_TRANSPORT", "tcp", 1);
}

static long check(const float *w, size_t n, float want)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += w[i] != want;
    return bad;
}

static int ps_worker(size_t n, int iters, struct result *r)
{
    bt_ps *ps;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.lr = 0.5f;
    float *w = calloc(n, 4), *g = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        g[i] = 1.0f;
    int rc = bt_ps_open(&ps);
    if (rc == BT_OK)
        rc = bt_ps_init(ps, key_name, w, n, &o);
    for (int k = 0; k < 3 && rc == BT_OK; k++) /* warm up, then check the arithmetic */
        if ((rc = bt_ps_push(ps, key_name, g, n)) == BT_OK)
            rc = bt_ps_pull(ps, key_name, w, n);
    r->wrong = check(w, n, -1.5f);
    int64_t t0 = bt__now_ns();
    for (int k = 0; k < iters && rc == BT_OK; k++)
        if ((rc = bt_ps_push(ps, key_name, g, n)) == BT_OK)
            rc = bt_ps_pull(ps, key_name, w, n);
    r->secs = (double)(bt__now_ns() - t0) / 1e9 / iters;
    if (rc != BT_OK)
        fprintf(stderr, "ps_bench: %s\n", bt_ps_last_error(ps));
    r->rc = rc;
    bt_ps_close(ps);
    free(w);
    free(g);
    return rc;
}

static int ar_worker(size_t n, int iters, struct result *r)
{
    bt_comm *c;
    float *a = malloc(n * 4);
    int rank = 0, rc = bt_init(&c);
    if (rc == BT_OK)
        bt_comm_rank(c, &rank);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)rank + 1.0f;
    if (rc == BT_OK)
        rc = bt_allreduce(c, a, a, n, BT_FLOAT32, BT_SUM); /* 1 + 2 */
    r->wrong = check(a, n, 3.0f);
    int64_t t0 = bt__now_ns();
    for (int k = 0; k < iters && rc == BT_OK; k++)
        rc = bt_allreduce(c, a, a, n, BT_FLOAT32, BT_SUM);
    r->secs = (double)(bt__now_ns() - t0) / 1e9 / iters;
    if (rc != BT_OK)
        fprintf(stderr, "ps_bench: allreduce: %s\n", bt_last_error(c));
    r->rc = rc;
    bt_finalize(c);
    free(a);
    return rc;
}

/* Forks one process; its result comes back through a pipe. */
static pid_t spawn(int (*fn)(size_t, int, struct result *), size_t n, int iters, int *rfd)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        struct result r = {0};
        close(p[0]);
        fn(n, iters, &r);
        ssize_t w = write(p[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) && r.rc == BT_OK ? 0 : 1);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

static void collect(pid_t pid, int fd, struct result *r)
{
    int st;
    if (read(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
        r->rc = BT_ERR_INTERNAL;
    close(fd);
    waitpid(pid, &st, 0);
}

/* Starts `baton ps` (build/baton, beside this program's folder) as server index, the way
 * `baton run --ps N` does; -1 when it cannot be started. */
static pid_t start_server(const char *rdzv, int gen, int index)
{
    char exe[4096], baton[4200], idx[16], g[16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(baton, sizeof(baton), "%s/../baton", exe);
    snprintf(idx, sizeof(idx), "%d", index);
    snprintf(g, sizeof(g), "%d", gen);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("BATON_TOKEN", "bench", 1);
        setenv("BATON_RESTART_COUNT", g, 1);
        setenv("BATON_TIMEOUT", "120", 1);
        execl(baton, baton, "ps", "--rdzv", rdzv, "--host", "127.0.0.1", "--index", idx,
              (char *)NULL);
        fprintf(stderr, "ps_bench: cannot run %s: %s\n", baton, strerror(errno));
        _exit(127);
    }
    return pid;
}

static void run(const char *rdzv, size_t bytes, int nservers, int iters, int allreduce)
{
    size_t n = bytes / 4;
    int gen = gen_next++, fd[2];
    snprintf(key_name, sizeof(key_name), "model.%d", gen);
    pid_t srv[4], w[2];
    struct result r[2];
    for (int s = 0; s < nservers; s++)
        srv[s] = start_server(rdzv, gen, s);
    for (int k = 0; k < 2; k++) {
        set_env(rdzv, gen, k, nservers);
        w[k] = spawn(allreduce ? ar_worker : ps_worker, n, iters, &fd[k]);
    }
    for (int k = 0; k < 2; k++)
        collect(w[k], fd[k], &r[k]);
    for (int s = 0; s < nservers; s++)
        waitpid(srv[s], NULL, 0);
    double t = r[0].secs > r[1].secs ? r[0].secs : r[1].secs;
    long wrong = r[0].wrong + r[1].wrong;
    char sv[16] = "-";
    if (!allreduce)
        snprintf(sv, sizeof(sv), "%d", nservers);
    if (r[0].rc != BT_OK || r[1].rc != BT_OK) /* no figures: the run failed (the reason above) */
        printf("%10zu %9s %7s %10s %9s %8s %8s %7s  FAILED\n", bytes, sv,
               allreduce ? "allred" : "ps", "-", "-", "-", "-", "-");
    else if (allreduce)
        printf("%10zu %9s %7s %10.6f %9.1f %8.3f %8.3f %7ld\n", bytes, "-", "allred", t, 1 / t,
               bytes / t / 1e9, bytes / t / 1e9, wrong);
    else
        printf("%10zu %9d %7s %10.6f %9.1f %8.3f %8s %7ld\n", bytes, nservers, "ps", t, 1 / t,
               2.0 * bytes / t / 1e9, "-", wrong);
    fflush(stdout);
}

static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    char buf[256], *save, *tok;
    snprintf(buf, sizeof(buf), "%s", s);
    for (tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save))
        if (bt__parse_int(tok, &out[n++]) != 0 || out[n - 1] <= 0)
            return -1;
    return n;
}

int main(int argc, char **argv)
{
    int64_t sizes[8], servers[4];
    int ns = parse_list("100K,4M,64M", sizes, 8), nsv = parse_list("1,2", servers, 4);
    int64_t iters = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sizes"))
            ns = parse_list(argv[i + 1], sizes, 8);
        else if (!strcmp(argv[i], "--servers"))
            nsv = parse_list(argv[i + 1], servers, 4);
        else if (!strcmp(argv[i], "--iters"))
            bt__parse_int(argv[i + 1], &iters);
    }
    if (ns < 0 || nsv < 0 || (argc % 2) == 0) {
        fprintf(stderr, "usage: ps_bench [--sizes 100K,4M,64M] [--servers 1,2] [--iters N]\n");
        return 2;
    }
    struct bt__store_server *st;
    struct bt__err err = {0};
    int port;
    char rdzv[64];
    if (bt__store_server_create("127.0.0.1", 0, "bench", &st, &port, &err) != BT_OK ||
        bt__store_server_start(st) != BT_OK) {
        fprintf(stderr, "ps_bench: store: %s\n", err.msg);
        return 1;
    }
    snprintf(rdzv, sizeof(rdzv), "127.0.0.1:%d", port);
    printf(
        "# 2 workers, sync SGD, loopback TCP; PS GB/s = (push + pull bytes) / time per worker\n");
    printf("%10s %9s %7s %10s %9s %8s %8s %7s\n", "size(B)", "servers", "what", "time(s)",
           "steps/s", "GB/s", "busbw", "#wrong");
    for (int i = 0; i < ns; i++) {
        int it = iters > 0               ? (int)iters
                 : sizes[i] <= (1 << 20) ? 200
                 : sizes[i] <= (8 << 20) ? 30
                                         : 5;
        for (int s = 0; s < nsv; s++)
            run(rdzv, (size_t)sizes[i], (int)servers[s], it, 0);
        run(rdzv, (size_t)sizes[i], 0, it, 1);
    }
    bt__store_server_destroy(st);
    return 0;
}
