/* run_metrics.c: `baton run --metrics-port PORT`: Prometheus text format on /metrics.
 *
 * One thread: a listening socket on every address (so a pod's port is scrapable), poll() on
 * it and on a stop pipe; each connection is read (one request line, bounded in bytes and time),
 * answered and closed. Only GET /metrics is served (404 otherwise). The numbers:
 *
 *   baton_workers{state}                 workers of this node: running, succeeded, failed
 *   baton_restarts_total                 restarts of the job so far
 *   baton_generation                     BATON_RESTART_COUNT of the running generation
 *   baton_collectives_total{rank,op}     completed calls, from the ranks' flight recorders
 *   baton_collective_bytes_total{rank,op}  their bytes (count times the dtype's size)
 *   baton_collective_failures_total{rank,op}
 *   baton_collective_seconds{rank,op}    latency histogram (10 us doubling, 16 buckets)
 *   baton_stalls_total{rank}             stall warnings (BATON_STALL_WARN)
 *   baton_straggler_last_total{rank}     calls this rank entered last (run_flight.c)
 *
 * The recorder counters restart at 0 with each generation (a counter reset, which Prometheus
 * handles). The thread reads the recorders under r->metrics_mu, which run_flight.c takes
 * when it maps or unmaps them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "launcher/run.h"

#define REQ_MAX 4096        /* bytes of a request read */
#define REQ_TIMEOUT_MS 2000 /* a client that sends no request line in this time is dropped */

struct text {
    char *p;
    size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->p ? vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        char *p = realloc(t->p, cap);
        if (!p)
            return;
        t->p = p, t->cap = cap;
    }
}

static void help(struct text *t, const char *name, const char *type, const char *what)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, what, name, type);
}

static void recorder_metrics(struct bt__run *r, struct text *t)
{
    static const struct {
        const char *name, *what;
        size_t off;
    } sums[] = {
        {"baton_collectives_total", "Collective calls completed, per rank and op.",
         offsetof(struct bt__flight_hdr, calls)},
        {"baton_collective_bytes_total", "Bytes of the completed collective calls.",
         offsetof(struct bt__flight_hdr, bytes)},
        {"baton_collective_failures_total", "Collective calls that returned an error.",
         offsetof(struct bt__flight_hdr, failed)},
    };
    for (size_t k = 0; k < sizeof(sums) / sizeof(sums[0]); k++) {
        help(t, sums[k].name, "counter", sums[k].what);
        for (int i = 0; i < r->nproc; i++) {
            const struct bt__flight_hdr *h = bt__run_flight_of(&r->w[i]);
            const uint64_t *v = h ? (const uint64_t *)((const char *)h + sums[k].off) : NULL;
            for (int op = 0; v && op < BT_FL_NOPS; op++)
                put(t, "%s{rank=\"%d\",op=\"%s\"} %llu\n", sums[k].name, r->w[i].rank,
                    bt__flight_op_name(op),
                    (unsigned long long)__atomic_load_n(&v[op], __ATOMIC_RELAXED));
        }
    }
    help(t, "baton_collective_seconds", "histogram", "Latency of completed collective calls.");
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = bt__run_flight_of(&r->w[i]);
        for (int op = 0; h && op < BT_FL_NOPS; op++) {
            uint64_t cum = 0;
            for (int b = 0; b < BT_FLIGHT_NHIST; b++) {
                cum += __atomic_load_n(&h->hist[op][b], __ATOMIC_RELAXED);
                char le[32];
                if (b == BT_FLIGHT_NHIST - 1)
                    snprintf(le, sizeof(le), "+Inf");
                else
                    snprintf(le, sizeof(le), "%g", bt__flight_bucket_s(b));
                put(t, "baton_collective_seconds_bucket{rank=\"%d\",op=\"%s\",le=\"%s\"} %llu\n",
                    r->w[i].rank, bt__flight_op_name(op), le, (unsigned long long)cum);
            }
            put(t, "baton_collective_seconds_sum{rank=\"%d\",op=\"%s\"} %.9f\n", r->w[i].rank,
                bt__flight_op_name(op),
                (double)__atomic_load_n(&h->lat_ns[op], __ATOMIC_RELAXED) / 1e9);
            put(t, "baton_collective_seconds_count{rank=\"%d\",op=\"%s\"} %llu\n", r->w[i].rank,
                bt__flight_op_name(op), (unsigned long long)cum);
        }
    }
    help(t, "baton_stalls_total", "counter", "Stall warnings of the rank (BATON_STALL_WARN).");
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = bt__run_flight_of(&r->w[i]);
        if (h)
            put(t, "baton_stalls_total{rank=\"%d\"} %llu\n", r->w[i].rank,
                (unsigned long long)__atomic_load_n(&h->stalls, __ATOMIC_RELAXED));
    }
}

static void render(struct bt__run *r, struct text *t)
{
    struct bt__metrics *m = &r->metrics;
    help(t, "baton_workers", "gauge", "Workers of this node by state.");
    put(t, "baton_workers{state=\"running\"} %d\n", __atomic_load_n(&m->running, __ATOMIC_RELAXED));
    put(t, "baton_workers{state=\"succeeded\"} %d\n",
        __atomic_load_n(&m->succeeded, __ATOMIC_RELAXED));
    put(t, "baton_workers{state=\"failed\"} %d\n", __atomic_load_n(&m->failed, __ATOMIC_RELAXED));
    help(t, "baton_restarts_total", "counter", "Restarts of the job's workers so far.");
    put(t, "baton_restarts_total %d\n", __atomic_load_n(&m->generation, __ATOMIC_RELAXED));
    help(t, "baton_generation", "gauge", "The running generation (BATON_RESTART_COUNT).");
    put(t, "baton_generation %d\n", __atomic_load_n(&m->generation, __ATOMIC_RELAXED));
    pthread_mutex_lock(&r->metrics_mu);
    recorder_metrics(r, t);
    pthread_mutex_unlock(&r->metrics_mu);
    help(t, "baton_straggler_last_total", "counter",
         "Collective calls the rank entered last among its node's ranks.");
    for (int i = 0; i < r->nproc && i < BT_RUN_STRAG_RANKS; i++)
        put(t, "baton_straggler_last_total{rank=\"%d\"} %llu\n", r->w[i].rank,
            (unsigned long long)__atomic_load_n(&r->strag.last_total[i], __ATOMIC_RELAXED));
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        struct pollfd pf = {fd, POLLOUT, 0};
        ssize_t k = write(fd, p, n);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (poll(&pf, 1, REQ_TIMEOUT_MS) <= 0)
                return;
            continue;
        }
        if (k <= 0)
            return;
        p += k, n -= (size_t)k;
    }
}

static void serve(struct bt__run *r, int fd)
{
    char req[REQ_MAX + 1];
    size_t len = 0;
    int64_t end = bt__deadline_in(REQ_TIMEOUT_MS / 1000.0);
    while (len < REQ_MAX && !memmem(req, len, "\r\n\r\n", 4) && !memmem(req, len, "\n\n", 2)) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, bt__ms_left(end)) <= 0)
            return;
        ssize_t k = read(fd, req + len, REQ_MAX - len);
        if (k <= 0)
            return;
        len += (size_t)k;
    }
    req[len] = '\0';
    struct text body = {0};
    const char *status = "200 OK";
    if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13))
        render(r, &body);
    else {
        status = "404 Not Found";
        put(&body, "baton serves GET /metrics only\n");
    }
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, body.len);
    write_all(fd, head, (size_t)hl);
    if (body.p)
        write_all(fd, body.p, body.len);
    free(body.p);
}

static void *metrics_main(void *arg)
{
    struct bt__run *r = arg;
    for (;;) {
        struct pollfd p[2] = {{r->metrics_fd, POLLIN, 0}, {r->metrics_stop[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        int fd = -1;
        struct bt__err err = {0};
        if (p[0].revents && bt__sock_accept(r->metrics_fd, &fd, &err) == BT_OK && fd >= 0) {
            serve(r, fd);
            close(fd);
        }
    }
    return NULL;
}

void bt__run_metrics_start(struct bt__run *r)
{
    struct bt__err err = {0};
    int port = 0;
    r->metrics_fd = -1;
    if (r->o.metrics_port < 0)
        return;
    if (bt__sock_listen(NULL, r->o.metrics_port, 16, &r->metrics_fd, &port, &err) != BT_OK) {
        fprintf(stderr, "baton: WARN: --metrics-port %d: %s; the job runs without /metrics\n",
                r->o.metrics_port, err.msg);
        r->metrics_fd = -1;
        return;
    }
    if (pipe2(r->metrics_stop, O_CLOEXEC) != 0 ||
        pthread_create(&r->metrics_thread, NULL, metrics_main, r) != 0) {
        fprintf(stderr, "baton: WARN: --metrics-port %d: cannot start its thread: %s\n",
                r->o.metrics_port, strerror(errno));
        close(r->metrics_fd);
        r->metrics_fd = -1;
        return;
    }
    BT_INFO(LAUNCH, "metrics: http://0.0.0.0:%d/metrics", port);
    if (r->o.metrics_port == 0)
        fprintf(stderr, "baton: serving metrics on port %d (/metrics)\n", port);
}

void bt__run_metrics_stop(struct bt__run *r)
{
    if (r->metrics_fd < 0)
        return;
    (void)!write(r->metrics_stop[1], "x", 1);
    pthread_join(r->metrics_thread, NULL);
    close(r->metrics_fd);
    close(r->metrics_stop[0]);
    close(r->metrics_stop[1]);
    r->metrics_fd = -1;
}
