/* test_ps.c: the parameter server with servers and workers as threads of this process.
 *
 * Sync mode against a naive double-precision reference of SGD, momentum and Adam applied to
 * the averaged gradients, for 1..3 servers x 1..4 workers, with a key split across servers;
 * async convergence on L2-regularised logistic regression; bounded staleness enforced;
 * checkpoint and reload; the store path (servers publish, workers find them); shutdown when
 * every worker closed; and every bad input: wrong magic, version, token, job shape, oversized,
 * malformed and unknown frames, unknown keys, shape mismatches, a dead worker in sync mode and
 * a dead server; pushes resent after a lost reply applied once (also across a restart of the
 * server from its checkpoint), generations taking the servers over, stale workers refused.
 * Placement arithmetic is checked on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baton_ps.h"
#include "collectives/ps/ps.h"
#include "common/sock.h"
#include "rendezvous/store.h"

/* ---- a cluster of in-process servers ---- */

struct cluster {
    int ns;
    struct bt__ps_server *srv[4];
    char ep[4][64];
    const char *eps[4];
};

static void start_cluster(struct cluster *c, int ns, double timeout_s, const char *ckpt_dir)
{
    memset(c, 0, sizeof(*c));
    c->ns = ns;
    for (int i = 0; i < ns; i++) {
        struct bt__ps_server_cfg cfg = {.host = "127.0.0.1",
                                        .index = i,
                                        .token = "tok",
                                        .timeout_s = timeout_s,
                                        .ckpt_dir = ckpt_dir};
        struct bt__err err = {0};
        int port = 0;
        assert_int_equal(bt__ps_server_create(&cfg, &c->srv[i], &port, &err), BT_OK);
        assert_int_equal(bt__ps_server_start(c->srv[i]), BT_OK);
        snprintf(c->ep[i], sizeof(c->ep[i]), "127.0.0.1:%d", port);
        c->eps[i] = c->ep[i];
    }
}

static void stop_cluster(struct cluster *c)
{
    for (int i = 0; i < c->ns; i++)
        bt__ps_server_destroy(c->srv[i]);
}

static int open_worker(struct cluster *c, int rank, int nworkers, int64_t part, double tmo,
                       bt_ps **ps)
{
    struct bt__ps_client_cfg cfg = {.rank = rank,
                                    .nworkers = nworkers,
                                    .nservers = c->ns,
                                    .endpoints = c->eps,
                                    .token = "tok",
                                    .timeout_s = tmo,
                                    .partition_bytes = part};
    return bt__ps_open_cfg(&cfg, ps);
}

/* ---- placement ---- */

static void test_place(void **state)
{
    (void)state;
    uint64_t loads[3] = {0, 0, 0};
    struct bt__ps_piece *p;
    uint32_t np;
    assert_int_equal(bt__ps_place(1000, 1024, 3, loads, &p, &np), BT_OK);
    assert_int_equal(np, 4); /* 4000 bytes in pieces of at most 1024 */
    uint64_t sum = 0;
    for (uint32_t i = 0; i < np; i++) {
        assert_int_equal(p[i].offset, sum);
        assert_true(p[i].count * 4 <= 1024);
        sum += p[i].count;
    }
    assert_int_equal(sum, 1000);
    assert_int_equal(p[0].server, 0);
    assert_int_equal(p[1].server, 1);
    assert_int_equal(p[2].server, 2);
    assert_int_equal(p[3].server, 0);
    char *t;
    assert_int_equal(bt__ps_place_fmt(p, np, 1000, &t), BT_OK);
    struct bt__ps_piece *q;
    uint32_t nq;
    uint64_t cnt;
    assert_int_equal(bt__ps_place_parse(t, 3, &q, &nq, &cnt), 0);
    assert_int_equal(nq, np);
    assert_int_equal(cnt, 1000);
    assert_memory_equal(p, q, np * sizeof(*p));
    assert_int_equal(bt__ps_place_parse(t, 2, &q, &nq, &cnt) == 0 ? 1 : 0, 0);
    assert_int_equal(bt__ps_place_parse("2 10 0:0:5 1:6:5", 2, &q, &nq, &cnt), -1);
    free(t);
    free(q);
    free(p);
    size_t counts[4] = {5, 50, 7, 50}, order[4];
    bt__ps_place_order(4, counts, order);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 2);
    assert_int_equal(order[3], 0);
    uint64_t l0[2] = {0, 0}; /* an empty key still has one (empty) piece */
    assert_int_equal(bt__ps_place(0, 1024, 2, l0, &p, &np), BT_OK);
    assert_int_equal(np, 1);
    free(p);
}

/* ---- sync mode against a reference ---- */

#define NKEYS 3
#define STEPS 5
static const char *const key_names[NKEYS] = {"adam.w", "mom.big", "sgd.b"};
static const size_t key_counts[NKEYS] = {37, 1000, 1}; /* mom.big splits at 1 KB partitions */

static void key_opt(int k, bt_ps_opt *o)
{
    bt_ps_opt_default(o);
    o->kind = k == 0 ? BT_PS_ADAM : k == 1 ? BT_PS_MOMENTUM : BT_PS_SGD;
    o->lr = k == 0 ? 0.05f : 0.1f;
}

static double init_val(int k, size_t i)
{
    return sin(0.37 * (double)i + k) * 0.5;
}

/* The gradient a worker computes from the weights it pulled. */
static double grad_val(int k, size_t i, int rank, int t, double w)
{
    return 0.5 * w + cos(0.11 * (double)i + 0.7 * rank + 1.3 * t + k);
}

struct wargs {
    struct cluster *c;
    int rank, nworkers, fails;
    char why[600];
    float *final[NKEYS];
};

static void *sync_worker(void *arg)
{
    struct wargs *a = arg;
    bt_ps *ps = NULL;
    float *w[NKEYS], *g[NKEYS];
    const float *init[NKEYS];
    int rc = open_worker(a->c, a->rank, a->nworkers, 1024, 30, &ps);
    for (int k = 0; k < NKEYS; k++) {
        w[k] = a->final[k];
        g[k] = calloc(key_counts[k], sizeof(float));
        for (size_t i = 0; i < key_counts[k]; i++)
            w[k][i] = (float)init_val(k, i);
        init[k] = w[k];
    }
    for (int k = 0; k < NKEYS && rc == BT_OK; k++) {
        bt_ps_opt o;
        key_opt(k, &o);
        rc = bt_ps_init(ps, key_names[k], init[k], key_counts[k], &o);
    }
    for (int t = 0; t <= STEPS && rc == BT_OK; t++) {
        rc = bt_ps_pull_many(ps, NKEYS, key_names, w, key_counts);
        if (rc != BT_OK || t == STEPS)
            break;
        for (int k = 0; k < NKEYS; k++)
            for (size_t i = 0; i < key_counts[k]; i++)
                g[k][i] = (float)grad_val(k, i, a->rank, t, w[k][i]);
        rc = bt_ps_push_many(ps, NKEYS, key_names, (const float *const *)g, key_counts);
    }
    if (rc != BT_OK) {
        a->fails++;
        snprintf(a->why, sizeof(a->why), "worker %d: %s", a->rank, bt_ps_last_error(ps));
    }
    for (int k = 0; k < NKEYS; k++)
        free(g[k]);
    bt_ps_close(ps);
    return NULL;
}

/* The reference: one process, doubles, the optimizers written out again. */
static void reference(int nworkers, double *out[NKEYS])
{
    for (int k = 0; k < NKEYS; k++) {
        bt_ps_opt o;
        key_opt(k, &o);
        size_t n = key_counts[k];
        double *m = calloc(n, sizeof(double)), *v = calloc(n, sizeof(double)), *w = out[k];
        for (size_t i = 0; i < n; i++)
            w[i] = (float)init_val(k, i);
        for (int t = 0; t < STEPS; t++)
            for (size_t i = 0; i < n; i++) {
                double g = 0;
                for (int r = 0; r < nworkers; r++)
                    g += grad_val(k, i, r, t, w[i]);
                g /= nworkers;
                if (o.kind == BT_PS_SGD)
                    w[i] -= o.lr * g;
                else if (o.kind == BT_PS_MOMENTUM) {
                    m[i] = o.momentum * m[i] + g;
                    w[i] -= o.lr * m[i];
                } else {
                    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
                    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
                    double mh = m[i] / (1 - pow(o.beta1, t + 1)),
                           vh = v[i] / (1 - pow(o.beta2, t + 1));
                    w[i] -= o.lr * mh / (sqrt(vh) + o.eps);
                }
            }
        free(m);
        free(v);
    }
}

static void run_sync(int ns, int nw)
{
    struct cluster c;
    struct wargs a[4];
    pthread_t th[4];
    start_cluster(&c, ns, 30, NULL);
    memset(a, 0, sizeof(a));
    for (int r = 0; r < nw; r++) {
        a[r] = (struct wargs){.c = &c, .rank = r, .nworkers = nw};
        for (int k = 0; k < NKEYS; k++)
            a[r].final[k] = calloc(key_counts[k], sizeof(float));
    }
    for (int r = 0; r < nw; r++)
        pthread_create(&th[r], NULL, sync_worker, &a[r]);
    for (int r = 0; r < nw; r++)
        pthread_join(th[r], NULL);
    double *ref[NKEYS];
    for (int k = 0; k < NKEYS; k++)
        ref[k] = calloc(key_counts[k], sizeof(double));
    reference(nw, ref);
    for (int r = 0; r < nw; r++) {
        if (a[r].fails)
            fail_msg("%d servers x %d workers: %s", ns, nw, a[r].why);
        for (int k = 0; k < NKEYS; k++)
            for (size_t i = 0; i < key_counts[k]; i++)
                if (fabs(a[r].final[k][i] - ref[k][i]) > 1e-4 * (1 + fabs(ref[k][i])))
                    fail_msg("%d servers x %d workers: worker %d key %s[%zu] = %.7f, reference "
                             "%.7f",
                             ns, nw, r, key_names[k], i, a[r].final[k][i], ref[k][i]);
    }
    for (int k = 0; k < NKEYS; k++)
        free(ref[k]);
    for (int r = 0; r < nw; r++)
        for (int k = 0; k < NKEYS; k++)
            free(a[r].final[k]);
    stop_cluster(&c);
}

static void test_sync_sweep(void **state)
{
    (void)state;
    for (int ns = 1; ns <= 3; ns++)
        for (int nw = 1; nw <= 4; nw++)
            run_sync(ns, nw);
}

/* ---- async: logistic regression converges to the reference loss ---- */

#define LR_N 2000
#define LR_D 10
#define LR_L2 0.01
static float lr_x[LR_N][LR_D], lr_y[LR_N];

static void lr_data(void)
{
    unsigned s = 12345;
    double wt[LR_D];
    for (int j = 0; j < LR_D; j++)
        wt[j] = (double)((s = s * 1103515245 + 12345) >> 16 & 0x7fff) / 16384.0 - 1.0;
    for (int i = 0; i < LR_N; i++) {
        double z = 0;
        for (int j = 0; j < LR_D; j++) {
            lr_x[i][j] = (float)(((s = s * 1103515245 + 12345) >> 16 & 0x7fff) / 16384.0 - 1.0);
            z += wt[j] * lr_x[i][j];
        }
        double u = ((s = s * 1103515245 + 12345) >> 16 & 0x7fff) / 32768.0;
        lr_y[i] = u < 1 / (1 + exp(-2 * z)) ? 1.0f : 0.0f;
    }
}

/* Mean loss (and its gradient when g != NULL) over samples [lo, hi). */
static double lr_loss(const float *w, int lo, int hi, double *g)
{
    double loss = 0;
    if (g)
        memset(g, 0, LR_D * sizeof(double));
    for (int i = lo; i < hi; i++) {
        double z = 0;
        for (int j = 0; j < LR_D; j++)
            z += w[j] * lr_x[i][j];
        double p = 1 / (1 + exp(-z));
        loss += -(lr_y[i] * log(p + 1e-12) + (1 - lr_y[i]) * log(1 - p + 1e-12));
        for (int j = 0; g && j < LR_D; j++)
            g[j] += (p - lr_y[i]) * lr_x[i][j] / (hi - lo);
    }
    double reg = 0;
    for (int j = 0; j < LR_D; j++) {
        reg += 0.5 * LR_L2 * w[j] * w[j];
        if (g)
            g[j] += LR_L2 * w[j];
    }
    return loss / (hi - lo) + reg;
}

struct lrargs {
    struct cluster *c;
    int rank, nworkers, fails;
    char why[600];
};

static void *lr_worker(void *arg)
{
    struct lrargs *a = arg;
    bt_ps *ps = NULL;
    float w[LR_D] = {0}, g[LR_D];
    double gd[LR_D];
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    /* Async SGD ends where the last stale shard gradients left it: that noise grows with lr
     * (at 0.5 and 400 steps, 1 run in ~16 ended over 1% above the reference; at 0.25 and 800
     * steps 1 in 20 on an idle machine); half the rate over twice the steps halves it again:
     * 20 idle runs 0.03-0.62% over. Under load the workers also run at different speeds, and
     * async SGD then leans toward the faster workers' shards (each push moves the weights
     * toward its own shard's optimum): 16 runs two at a time ended 0.01-0.97% over (a make
     * check under load, at 0.25 and 800 steps, 1.43%), hence the 2% bound in the test. */
    o.lr = 0.125f;
    o.consistency = BT_PS_ASYNC;
    int rc = open_worker(a->c, a->rank, a->nworkers, 16, 30, &ps); /* 4 floats a piece */
    if (rc == BT_OK)
        rc = bt_ps_init(ps, "lr.w", w, LR_D, &o);
    int lo = LR_N * a->rank / a->nworkers, hi = LR_N * (a->rank + 1) / a->nworkers;
    for (int t = 0; t < 1600 && rc == BT_OK; t++) {
        rc = bt_ps_pull(ps, "lr.w", w, LR_D);
        lr_loss(w, lo, hi, gd);
        for (int j = 0; j < LR_D; j++)
            g[j] = (float)gd[j];
        if (rc == BT_OK)
            rc = bt_ps_push(ps, "lr.w", g, LR_D);
    }
    if (rc != BT_OK) {
        a->fails++;
        snprintf(a->why, sizeof(a->why), "%s", bt_ps_last_error(ps));
    }
    bt_ps_close(ps);
    return NULL;
}

static void test_async_logreg(void **state)
{
    (void)state;
    lr_data();
    float w[LR_D] = {0};
    double gd[LR_D];
    for (int t = 0; t < 3000; t++) { /* the reference: full-batch gradient descent */
        lr_loss(w, 0, LR_N, gd);
        for (int j = 0; j < LR_D; j++)
            w[j] -= (float)(0.5 * gd[j]);
    }
    double ref = lr_loss(w, 0, LR_N, NULL);
    struct cluster c;
    struct lrargs a[4];
    pthread_t th[4];
    start_cluster(&c, 2, 30, NULL);
    for (int r = 0; r < 4; r++) {
        a[r] = (struct lrargs){.c = &c, .rank = r, .nworkers = 4};
        pthread_create(&th[r], NULL, lr_worker, &a[r]);
    }
    for (int r = 0; r < 4; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 4; r++)
        if (a[r].fails)
            fail_msg("worker %d: %s", r, a[r].why);
    bt_ps *ps;
    assert_int_equal(open_worker(&c, 0, 4, 16, 30, &ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "lr.w", w, LR_D, NULL), BT_OK); /* adopts the trained one */
    assert_int_equal(bt_ps_pull(ps, "lr.w", w, LR_D), BT_OK);
    double got = lr_loss(w, 0, LR_N, NULL);
    print_message("async logistic regression: loss %.6f, reference %.6f\n", got, ref);
    assert_true(got <= ref * 1.02); /* lr_worker says why 2% */
    bt_ps_close(ps);
    stop_cluster(&c);
}

/* ---- bounded staleness: a fast worker blocks S pushes ahead ---- */

struct bargs {
    struct cluster *c;
    int rank, pushes, fails;
    volatile int done; /* pushes completed */
};

static void *bounded_worker(void *arg)
{
    struct bargs *a = arg;
    bt_ps *ps = NULL;
    float w[8] = {0}, g[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    int rc = bt_ps_consistency_parse("bounded:2", &o);
    if (rc == BT_OK)
        rc = open_worker(a->c, a->rank, 2, 0, 30, &ps);
    if (rc == BT_OK)
        rc = bt_ps_init(ps, "b.w", w, 8, &o);
    for (int t = 0; t < a->pushes && rc == BT_OK; t++) {
        rc = bt_ps_push(ps, "b.w", g, 8);
        __atomic_store_n(&a->done, t + 1, __ATOMIC_RELEASE);
    }
    a->fails += rc != BT_OK;
    bt_ps_close(ps);
    return NULL;
}

static int wait_count(volatile int *v, int want, double secs)
{
    int64_t dl = bt__deadline_in(secs);
    while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want && bt__ms_left(dl) > 0)
        usleep(2000);
    return __atomic_load_n(v, __ATOMIC_ACQUIRE);
}

static void test_bounded(void **state)
{
    (void)state;
    struct cluster c;
    struct bargs fast = {.rank = 0, .pushes = 8}, slow = {.rank = 1, .pushes = 1};
    pthread_t tf, tslow;
    start_cluster(&c, 1, 30, NULL);
    fast.c = slow.c = &c;
    pthread_create(&tf, NULL, bounded_worker, &fast);
    assert_int_equal(wait_count(&fast.done, 3, 10), 3); /* pushes 0, 1, 2: S = 2 ahead */
    usleep(300 * 1000);                                 /* and no further */
    assert_int_equal(__atomic_load_n(&fast.done, __ATOMIC_ACQUIRE), 3);
    pthread_create(&tslow, NULL, bounded_worker, &slow); /* the slow one pushes once */
    pthread_join(tslow, NULL);
    assert_int_equal(wait_count(&fast.done, 4, 10), 4); /* which lets exactly one more in */
    usleep(300 * 1000);
    assert_int_equal(__atomic_load_n(&fast.done, __ATOMIC_ACQUIRE), 4);
    slow.pushes = 7; /* the slow one catches up: the fast one finishes */
    pthread_create(&tslow, NULL, bounded_worker, &slow);
    pthread_join(tslow, NULL);
    pthread_join(tf, NULL);
    assert_int_equal(fast.done, 8);
    assert_int_equal(slow.fails + fast.fails, 0);
    stop_cluster(&c);
}

/* ---- bad input ---- */

static int raw_connect(struct cluster *c, int s)
{
    char host[64];
    int port, fd;
    struct bt__err err = {0};
    bt__parse_endpoint(c->ep[s], host, sizeof(host), &port);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5), .what = "test"};
    assert_int_equal(bt__sock_connect(host, port, &o, &fd, &err), BT_OK);
    return fd;
}

static int raw_worker(struct cluster *c, uint32_t rank, uint32_t nw)
{
    int fd = raw_connect(c, 0);
    uint32_t idx;
    uint64_t inst;
    struct bt__err err = {0};
    assert_int_equal(bt__ps_handshake(fd, rank, nw, "tok", bt__deadline_in(5), &idx, &inst, &err),
                     BT_OK);
    return fd;
}

/* Sends a frame and reads the reply: its status, and for ERROR its code and message. */
static int raw_call(int fd, const struct bt__wbuf *b, int *code, char *msg, size_t cap)
{
    struct bt__err err = {0};
    uint8_t hdr[5], body[2048];
    int64_t dl = bt__deadline_in(5);
    if (bt__sock_send_all(fd, b->p, b->len, dl, &err) != BT_OK ||
        bt__sock_recv_all(fd, hdr, 5, dl, &err) != BT_OK)
        return -1;
    uint32_t len = bt__le32(hdr) - 1;
    assert_true(len <= sizeof(body));
    if (bt__sock_recv_all(fd, body, len, dl, &err) != BT_OK)
        return -1;
    if (hdr[4] == BT__ST_ERROR) {
        *code = (int)bt__le32(body);
        snprintf(msg, cap, "%.*s", (int)bt__le32(body + 4), (char *)body + 8);
    }
    return hdr[4];
}

static int closed_by_peer(int fd)
{
    uint8_t b[64];
    struct bt__err err = {0};
    size_t off = 0;
    int rc;
    /* drain whatever the server said last, then expect the close */
    while ((rc = bt__sock_wait(fd, BT_SOCK_RECV, b, sizeof(b), &off, bt__deadline_in(5), NULL,
                               &err)) == BT_OK)
        off = 0;
    return rc == BT_ERR_REMOTE;
}

static uint64_t frame_seq; /* the sequence number frame() gives a PUSH (0: none) */

static void frame(struct bt__wbuf *b, uint8_t cmd, uint32_t n, const char *name, uint32_t piece,
                  uint32_t count, int with_data)
{
    b->len = 0;
    size_t st = bt__wbuf_frame_begin(b, cmd);
    if (cmd == BT__PS_PUSH)
        bt__wbuf_u64(b, frame_seq);
    bt__wbuf_u32(b, n);
    for (uint32_t i = 0; i < n; i++) {
        bt__wbuf_bytes(b, name, strlen(name));
        bt__wbuf_u32(b, piece);
        bt__wbuf_u32(b, count);
        for (uint32_t j = 0; with_data && j < count; j++)
            bt__wbuf_u32(b, 0);
    }
    bt__wbuf_frame_end(b, st);
}

static void test_bad_frames(void **state)
{
    (void)state;
    struct cluster c;
    start_cluster(&c, 1, 30, NULL);
    bt_ps *good;
    float w[4] = {1, 2, 3, 4};
    assert_int_equal(open_worker(&c, 0, 2, 0, 5, &good), BT_OK);
    assert_int_equal(bt_ps_init(good, "k", w, 4, NULL), BT_OK);
    struct bt__wbuf b = {0};
    int code = 0;
    char msg[1024] = "";

    /* wrong magic: no answer, closed */
    int fd = raw_connect(&c, 0);
    uint8_t junk[BT__PS_HELLO_LEN] = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(bt__sock_send_all(fd, junk, sizeof(junk), bt__deadline_in(5),
                                       &(struct bt__err){0}),
                     BT_OK);
    assert_true(closed_by_peer(fd));
    close(fd);

    /* unknown key, then the connection still works */
    fd = raw_worker(&c, 1, 2);
    frame(&b, BT__PS_PULL, 1, "nope", 0, 4, 0);
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_ERROR);
    assert_int_equal(code, BT_ERR_INVALID_ARG);
    assert_non_null(strstr(msg, "unknown key 'nope'"));
    /* a shape mismatch */
    frame(&b, BT__PS_PUSH, 1, "k", 0, 5, 1);
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_ERROR);
    assert_non_null(
        strstr(msg, "shape mismatch: key 'k' piece 0/1 holds 4 floats, the push has 5"));
    b.len = 0;
    bt__wbuf_frame_end(&b, bt__wbuf_frame_begin(&b, BT__PS_PING));
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_OK);
    /* a malformed PUSH (says 3 items, carries 1): error, then closed */
    frame(&b, BT__PS_PUSH, 1, "k", 0, 4, 1);
    bt__put_le32(b.p + 13, 3);
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_ERROR);
    assert_non_null(strstr(msg, "malformed PUSH"));
    assert_true(closed_by_peer(fd));
    close(fd);

    /* an oversized frame: refused before anything is allocated for it, then closed */
    fd = raw_worker(&c, 1, 2);
    uint8_t big[5];
    bt__put_le32(big, 0x7fffffffu);
    big[4] = BT__PS_PUSH;
    b.len = 0;
    bt__wbuf_put(&b, big, 5);
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_ERROR);
    assert_non_null(strstr(msg, "over the limit"));
    assert_true(closed_by_peer(fd));
    close(fd);

    /* an unknown command */
    fd = raw_worker(&c, 1, 2);
    b.len = 0;
    bt__wbuf_frame_end(&b, bt__wbuf_frame_begin(&b, 99));
    assert_int_equal(raw_call(fd, &b, &code, msg, sizeof(msg)), BT__ST_ERROR);
    close(fd);

    /* a wrong token, a wrong job shape, a rank out of range */
    struct bt__ps_client_cfg cfg = {.rank = 1,
                                    .nworkers = 2,
                                    .nservers = 1,
                                    .endpoints = c.eps,
                                    .token = "other-job",
                                    .timeout_s = 2};
    bt_ps *bad = NULL;
    assert_int_equal(bt__ps_open_cfg(&cfg, &bad), BT_ERR_AUTH);
    assert_non_null(strstr(bt_ps_last_error(NULL), "refused our token"));
    cfg.token = "tok", cfg.nworkers = 3;
    assert_int_equal(bt__ps_open_cfg(&cfg, &bad), BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(bt_ps_last_error(NULL), "another number of workers"));
    fd = raw_connect(&c, 0);
    uint32_t idx;
    uint64_t inst;
    struct bt__err err = {0};
    assert_int_equal(bt__ps_handshake(fd, 5, 2, "tok", bt__deadline_in(5), &idx, &inst, &err),
                     BT_ERR_INVALID_USAGE);
    close(fd);

    /* the client's own checks: a shape mismatch at declaration and at push, unknown keys,
     * a bad optimizer */
    bt_ps *second;
    float w5[5] = {0}, got[4];
    assert_int_equal(open_worker(&c, 1, 2, 0, 5, &second), BT_OK);
    assert_int_equal(bt_ps_init(second, "k", w5, 5, NULL), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_ps_last_error(second), "first declared with 4 floats"));
    assert_int_equal(bt_ps_init(second, "k", w5, 4, NULL), BT_OK); /* first one wins */
    assert_int_equal(bt_ps_push(second, "k", w5, 5), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_ps_pull(second, "zz", got, 4), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_ps_last_error(second), "not declared"));
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.lr = -1;
    assert_int_equal(bt_ps_init(second, "k2", w, 4, &o), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_ps_consistency_parse("bounded:x", &o), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_ps_consistency_parse("eventual", &o), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_ps_init(good, "", w, 4, NULL), BT_ERR_INVALID_ARG);

    /* and the good worker is still served */
    assert_int_equal(bt_ps_pull(good, "k", got, 4), BT_OK);
    assert_memory_equal(got, w, sizeof(w));
    bt_ps_close(second);
    bt_ps_close(good);
    bt__wbuf_free(&b);
    stop_cluster(&c);
}

/* ---- failures: a dead worker in sync mode, a dead server ---- */

static void test_sync_dead_worker(void **state)
{
    (void)state;
    struct cluster c;
    start_cluster(&c, 2, 1.0, NULL); /* servers wait 1 s for a step */
    bt_ps *w0, *w1;
    float w[300] = {0}, g[300] = {0};
    assert_int_equal(open_worker(&c, 0, 2, 400, 5, &w0), BT_OK);
    assert_int_equal(open_worker(&c, 1, 2, 400, 5, &w1), BT_OK);
    assert_int_equal(bt_ps_init(w0, "s", w, 300, NULL), BT_OK);
    assert_int_equal(bt_ps_init(w1, "s", w, 300, NULL), BT_OK);
    bt_ps_close(w1); /* worker 1 goes away without pushing */
    assert_int_equal(bt_ps_push(w0, "s", g, 300), BT_OK);
    int64_t t0 = bt__now_ns();
    assert_int_equal(bt_ps_pull(w0, "s", w, 300), BT_ERR_TIMEOUT);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    print_message("sync step with a dead worker failed after %.2f s: %s\n", took,
                  bt_ps_last_error(w0));
    assert_true(took < 4);
    assert_non_null(strstr(bt_ps_last_error(w0), "waits for worker(s) 1"));
    assert_int_equal(bt_ps_push(w0, "s", g, 300), BT_ERR_TIMEOUT); /* sticky */
    bt_ps_close(w0);
    stop_cluster(&c);
}

static void test_dead_server(void **state)
{
    (void)state;
    struct cluster c;
    start_cluster(&c, 2, 30, NULL);
    bt_ps *ps;
    float w[1000] = {0};
    assert_int_equal(open_worker(&c, 0, 1, 1024, 1.0, &ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "d", w, 1000, NULL), BT_OK);
    bt__ps_server_destroy(c.srv[1]);
    c.srv[1] = NULL;
    int64_t t0 = bt__now_ns();
    assert_int_equal(bt_ps_pull(ps, "d", w, 1000), BT_ERR_REMOTE);
    print_message("dead server reported after %.2f s: %s\n", (double)(bt__now_ns() - t0) / 1e9,
                  bt_ps_last_error(ps));
    assert_non_null(strstr(bt_ps_last_error(ps), "ps server 1 ("));
    assert_non_null(strstr(bt_ps_last_error(ps), "holding key 'd' piece"));
    bt_ps_close(ps);
    stop_cluster(&c);
}

/* ---- exactly once, generations ---- */

/* A worker's raw connection to c's server 0 as rank of nw in generation gen, client inc. */
static int gen_worker(struct cluster *c, uint32_t rank, uint32_t nw, uint32_t gen, uint64_t inc,
                      struct bt__ps_hello *h, struct bt__err *err)
{
    int fd = raw_connect(c, 0);
    *h = (struct bt__ps_hello){.rank = rank, .nworkers = nw, .generation = gen, .incarnation = inc};
    int rc = bt__ps_handshake_ex(fd, "tok", bt__deadline_in(5), h, err);
    if (rc != BT_OK) {
        close(fd);
        return -rc;
    }
    return fd;
}

/* PUSH {seq, key "x" piece 0, one float g}: the reply's status. */
static int push_x(int fd, uint64_t seq, float g)
{
    struct bt__wbuf b = {0};
    int code = 0;
    char msg[256];
    size_t st = bt__wbuf_frame_begin(&b, BT__PS_PUSH);
    bt__wbuf_u64(&b, seq);
    bt__wbuf_u32(&b, 1);
    bt__wbuf_bytes(&b, "x", 1);
    bt__wbuf_u32(&b, 0);
    bt__wbuf_u32(&b, 1);
    bt__wbuf_put(&b, &g, 4);
    bt__wbuf_frame_end(&b, st);
    int rc = raw_call(fd, &b, &code, msg, sizeof(msg));
    bt__wbuf_free(&b);
    return rc;
}

static float pull_x(int fd)
{
    struct bt__wbuf b = {0};
    struct bt__err err = {0};
    uint8_t hdr[5];
    float v = -1;
    frame(&b, BT__PS_PULL, 1, "x", 0, 1, 0);
    int64_t dl = bt__deadline_in(5);
    assert_int_equal(bt__sock_send_all(fd, b.p, b.len, dl, &err), BT_OK);
    assert_int_equal(bt__sock_recv_all(fd, hdr, 5, dl, &err), BT_OK);
    assert_int_equal(hdr[4], BT__ST_OK);
    assert_int_equal(bt__le32(hdr), 5);
    assert_int_equal(bt__sock_recv_all(fd, &v, 4, dl, &err), BT_OK);
    bt__wbuf_free(&b);
    return v;
}

/* A resent push (same number) is acknowledged and not applied, on the same connection, on a
 * new one, and after the server restarted from its checkpoint; a new client's numbers start
 * again; a newer generation takes the server over with another worker count and the value;
 * a worker of the older generation is refused as stale. SGD with lr 1 and gradient -1: the
 * value counts the pushes applied. */
static void test_exactly_once_generations(void **state)
{
    (void)state;
    char dir[] = "/tmp/bt-ps-once-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cluster c;
    struct bt__ps_hello h;
    struct bt__err err = {0};
    start_cluster(&c, 1, 30, dir);
    bt_ps *ps;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.lr = 1.0f;
    o.consistency = BT_PS_ASYNC;
    float zero = 0;
    assert_int_equal(open_worker(&c, 0, 1, 0, 5, &ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "x", &zero, 1, &o), BT_OK);
    bt_ps_close(ps);

    int fd = gen_worker(&c, 0, 1, 0, 7, &h, &err);
    assert_true(fd >= 0);
    assert_int_equal(push_x(fd, 1, -1), BT__ST_OK);
    assert_int_equal(push_x(fd, 1, -1), BT__ST_OK); /* resent: not applied */
    assert_true(pull_x(fd) == 1.0f);
    assert_int_equal(push_x(fd, 2, -1), BT__ST_OK);
    close(fd);
    fd = gen_worker(&c, 0, 1, 0, 7, &h, &err); /* the same client, reconnected */
    assert_int_equal(push_x(fd, 2, -1), BT__ST_OK);
    assert_true(pull_x(fd) == 2.0f);
    assert_int_equal(push_x(fd, 0, -1), BT__ST_OK); /* unnumbered: always applied */
    assert_true(pull_x(fd) == 3.0f);
    close(fd);
    stop_cluster(&c); /* writes the checkpoint, with the numbers */
    start_cluster(&c, 1, 30, dir);
    fd = gen_worker(&c, 0, 1, 0, 7, &h, &err);
    assert_int_equal(push_x(fd, 2, -1), BT__ST_OK); /* applied before the restart */
    assert_true(pull_x(fd) == 3.0f);
    close(fd);
    fd = gen_worker(&c, 0, 1, 0, 8, &h, &err); /* a new client: its numbers start at 1 */
    assert_int_equal(push_x(fd, 1, -1), BT__ST_OK);
    assert_true(pull_x(fd) == 4.0f);

    /* generation 1, two workers: the value stays, the generation-0 connection is dropped */
    int fd1 = gen_worker(&c, 1, 2, 1, 9, &h, &err);
    assert_true(fd1 >= 0);
    assert_int_equal(h.server_generation, 1);
    assert_true(closed_by_peer(fd));
    close(fd);
    assert_true(pull_x(fd1) == 4.0f);
    assert_int_equal(push_x(fd1, 1, -1), BT__ST_OK);
    assert_true(pull_x(fd1) == 5.0f);
    /* a stale worker of generation 0 is refused, with the generations named */
    assert_int_equal(gen_worker(&c, 0, 1, 0, 10, &h, &err), -BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(err.msg, "serves generation 1 of this job, and this worker (rank 0) "
                                    "is of generation 0: a stale worker"));
    close(fd1);
    stop_cluster(&c);
    char path[128];
    snprintf(path, sizeof(path), "%s/ps-0.ckpt", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- checkpoint and reload, in process ---- */

static void test_checkpoint_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/bt-ps-ckpt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cluster c;
    start_cluster(&c, 2, 30, dir);
    bt_ps *ps;
    float w[600], g[600], before[600], after[600];
    for (int i = 0; i < 600; i++)
        w[i] = (float)i, g[i] = 1.0f;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.kind = BT_PS_ADAM;
    assert_int_equal(open_worker(&c, 0, 1, 1024, 5, &ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "c", w, 600, &o), BT_OK);
    for (int t = 0; t < 3; t++)
        assert_int_equal(bt_ps_push(ps, "c", g, 600), BT_OK);
    assert_int_equal(bt_ps_pull(ps, "c", before, 600), BT_OK);
    stop_cluster(&c); /* stopping writes the checkpoint */
    start_cluster(&c, 2, 30, dir);
    bt_ps_close(ps);
    assert_int_equal(open_worker(&c, 0, 1, 1024, 5, &ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "c", w, 600, &o), BT_OK); /* the checkpoint's value wins */
    assert_int_equal(bt_ps_pull(ps, "c", after, 600), BT_OK);
    assert_memory_equal(before, after, sizeof(before));
    assert_int_equal(bt_ps_push(ps, "c", g, 600), BT_OK); /* Adam state came back too */
    assert_int_equal(bt_ps_pull(ps, "c", after, 600), BT_OK);
    for (int i = 0; i < 600; i++)
        assert_true(fabsf(after[i] - (before[i] - 0.01f)) < 1e-4f); /* |step| = lr for g const */
    bt_ps_close(ps);
    stop_cluster(&c);
    char path[128];
    FILE *f;
    snprintf(path, sizeof(path), "%s/ps-0.ckpt", dir);
    assert_non_null(f = fopen(path, "r+b")); /* a corrupt checkpoint is refused by name */
    fseek(f, 40, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    struct bt__ps_server_cfg cfg = {.host = "127.0.0.1", .index = 0, .ckpt_dir = dir};
    struct bt__ps_server *s = NULL;
    struct bt__err err = {0};
    assert_int_not_equal(bt__ps_server_create(&cfg, &s, NULL, &err), BT_OK);
    assert_non_null(strstr(err.msg, "corrupt"));
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/ps-%d.ckpt", dir, i);
        unlink(path);
    }
    rmdir(dir);
}

static int count_entry(void *arg, const struct bt__ps_ckpt_entry *e)
{
    (void)e;
    ++*(int *)arg;
    return BT_OK;
}

/* ckpt_read on what the file is: empty, another file's bytes, a directory, a short file. */
static void expect_ckpt_error(const char *path, const char *want)
{
    struct bt__err err = {0};
    int found = 0, n = 0;
    assert_int_equal(bt__ps_ckpt_read(path, 0, &found, NULL, count_entry, &n, &err),
                     BT_ERR_INVALID_ARG);
    if (!strstr(err.msg, want))
        fail_msg("%s: '%s' (want '%s')", path, err.msg, want);
    assert_int_equal(n, 0);
}

static void test_checkpoint_bad_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/bt-ps-ckbad-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/empty", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    expect_ckpt_error(path, "empty file");
    snprintf(path, sizeof(path), "%s/text", dir);
    assert_non_null(f = fopen(path, "wb"));
    fputs("a text file, long enough to have a CRC where the trailer would be\n", f);
    fclose(f);
    expect_ckpt_error(path, "not a baton ps checkpoint (bad magic)");
    snprintf(path, sizeof(path), "%s/short", dir);
    assert_non_null(f = fopen(path, "wb"));
    fputs("BTONSPCK\x01", f); /* the magic, then nothing whole */
    fclose(f);
    expect_ckpt_error(path, "truncated or corrupt (CRC mismatch)");
    snprintf(path, sizeof(path), "%s/ps-0.ckpt", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    expect_ckpt_error(path, "is a directory");
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- the store path and shutdown ---- */

static void *run_server(void *arg)
{
    bt__ps_server_run(arg);
    return NULL;
}

static void test_store_and_shutdown(void **state)
{
    (void)state;
    struct bt__store_server *st;
    struct bt__err err = {0};
    int sport;
    char rdzv[64];
    assert_int_equal(bt__store_server_create("127.0.0.1", 0, "tok", &st, &sport, &err), BT_OK);
    assert_int_equal(bt__store_server_start(st), BT_OK);
    snprintf(rdzv, sizeof(rdzv), "127.0.0.1:%d", sport);
    struct bt__ps_server *srv[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) { /* indices from the store, loops on our threads */
        struct bt__ps_server_cfg cfg = {.host = "127.0.0.1",
                                        .index = -1,
                                        .token = "tok",
                                        .rdzv = rdzv,
                                        .timeout_s = 30,
                                        .exit_when_done = 1};
        assert_int_equal(bt__ps_server_create(&cfg, &srv[i], NULL, &err), BT_OK);
        assert_int_equal(bt__ps_server_index(srv[i]), i);
        pthread_create(&th[i], NULL, run_server, srv[i]);
    }
    setenv("BATON_RDZV", rdzv, 1);
    setenv("BATON_TOKEN", "tok", 1);
    setenv("BATON_PS_SERVERS", "2", 1);
    setenv("BATON_PS_PARTITION_BYTES", "1K", 1);
    setenv("BATON_WORLD_SIZE", "2", 1);
    setenv("BATON_RANK", "0", 1);
    bt_ps *ps, *other;
    float w[700], g[700], got[700];
    for (int i = 0; i < 700; i++)
        w[i] = (float)i, g[i] = 1;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.consistency = BT_PS_ASYNC; /* worker 1 pushes nothing here */
    assert_int_equal(bt_ps_open(&ps), BT_OK);
    assert_int_equal(bt_ps_init(ps, "st", w, 700, &o), BT_OK);
    assert_int_equal(bt_ps_push(ps, "st", g, 700), BT_OK);
    assert_int_equal(bt_ps_pull(ps, "st", got, 700), BT_OK);
    for (int i = 0; i < 700; i++)
        assert_true(fabsf(got[i] - (w[i] - 0.01f)) < 1e-5f);
    setenv("BATON_PS_PARTITION_BYTES", "64K", 1); /* another placement: the store's wins */
    setenv("BATON_RANK", "1", 1);
    assert_int_equal(bt_ps_open(&other), BT_OK);
    assert_int_equal(bt_ps_init(other, "st", w, 600, &o), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_ps_last_error(other), "first declared with 700 floats"));
    assert_int_equal(bt_ps_init(other, "st", w, 700, &o), BT_OK);
    assert_int_equal(bt_ps_pull(other, "st", w, 700), BT_OK);
    assert_memory_equal(w, got, sizeof(got));
    bt_ps_close(other);
    assert_int_equal(bt_ps_close(ps), BT_OK); /* every worker closed: the servers end */
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        bt__ps_server_destroy(srv[i]);
    }
    unsetenv("BATON_RDZV");
    unsetenv("BATON_RANK");
    unsetenv("BATON_WORLD_SIZE");
    unsetenv("BATON_PS_SERVERS");
    unsetenv("BATON_PS_PARTITION_BYTES");
    assert_int_equal(bt_ps_open(&ps), BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(bt_ps_last_error(NULL), "BATON_RDZV"));
    bt__store_server_destroy(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_place),
        cmocka_unit_test(test_sync_sweep),
        cmocka_unit_test(test_async_logreg),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_sync_dead_worker),
        cmocka_unit_test(test_dead_server),
        cmocka_unit_test(test_exactly_once_generations),
        cmocka_unit_test(test_checkpoint_reload),
        cmocka_unit_test(test_checkpoint_bad_files),
        cmocka_unit_test(test_store_and_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
