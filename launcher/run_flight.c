/* run_flight.c: the launcher's side of the flight recorder (collectives/flight.h).
 *
 * Each worker gets a memfd of BT_FLIGHT_BYTES (BATON_FLIGHT_FD; close-on-exec is cleared for
 * that worker only) that libbaton maps as its recorder; the launcher maps it too and reads it
 * whatever state the rank is in (running, stopped by SIGSTOP, dead). From it:
 *
 *  - Dumps. When a generation fails (outcome F or H), each launcher writes its ranks' rings
 *    to --log-dir as flight.<rank>.txt (launcher/trace.h's text) and publishes their last
 *    DUMP_STORE_ENTRIES calls as l/<g>/flight/<rank>; after the failure records settle
 *    (run_forensics.c) every launcher reads all ranks' dumps from the store and adds the
 *    analysis (bt__trace_analyze) to the summary. A rank that logs a stall warning
 *    (BATON_STALL_WARN) gets its node's rings written to --log-dir then, too.
 *  - Stragglers. Once a second (with the stall scan) the launcher reads the calls that every
 *    local rank finished since the last look; for each, the rank that entered last and by how
 *    much after the one before it. Over the last STRAG_WINDOW calls of an op, a rank that was
 *    last far more often than chance (z >= STRAG_Z against 1/n, and a median lag of at least
 *    STRAG_MIN_LAG_MS) is named in a WARN every BATON_STRAGGLER_SECS, and in the final report.
 *    Only the ranks of this node are compared (the launcher sees their clocks as one).
 *    The same pass compares the shape of each call across the node's ranks: a call whose op,
 *    count, dtype, reduction or root differ is named at once in a WARN (the first
 *    DISAGREE_WARN_MAX), also when the collective itself does not fail.
 *  - Counters for /metrics (run_metrics.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"
#include "launcher/trace.h"

#define DUMP_STORE_ENTRIES 256 /* calls of each rank published to the store */
#define STRAG_Z 4.0            /* how far above chance "last" must be */
#define STRAG_MIN_LAG_MS 1.0   /* a median lag below this is noise, not a straggler */
#define STRAG_BATCH_MAX 256    /* calls looked at per look (once a second) */
#define DISAGREE_WARN_MAX 3    /* disagreement WARNs per generation */

BT_PARAM_DBL(straggler_secs, "BATON_STRAGGLER_SECS", 30.0)
BT_PARAM_STR(flight, "BATON_FLIGHT", "on")

/* BATON_FLIGHT=off (or 0): no recorder, so the ranks' hook returns at once (the benchmark's
 * "off"; bench/flight_overhead.sh). */
static int flight_on(void)
{
    const char *v = bt__param_flight();
    return strcmp(v, "off") && strcmp(v, "0");
}

int bt__run_flight_spawn(struct bt__run *r, struct bt__worker *w)
{
    pthread_mutex_lock(&r->metrics_mu); /* the /metrics thread reads the mappings */
    if (w->flight) {
        munmap(w->flight, BT_FLIGHT_BYTES);
        w->flight = NULL;
    }
    pthread_mutex_unlock(&r->metrics_mu);
    w->flight_fd = -1;
    if (w->ps_index >= 0 || !flight_on())
        return 0;
    int fd = memfd_create("baton-flight", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, BT_FLIGHT_BYTES) != 0) {
        BT_INFO(LAUNCH, "flight recorder of rank %d: %s; it stays in the rank's memory", w->rank,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    void *p = mmap(NULL, BT_FLIGHT_BYTES, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return 0;
    }
    pthread_mutex_lock(&r->metrics_mu);
    w->flight = p;
    pthread_mutex_unlock(&r->metrics_mu);
    w->flight_fd = fd;
    return 0;
}

void bt__run_flight_spawned(struct bt__worker *w)
{
    if (w->flight_fd >= 0)
        close(w->flight_fd);
    w->flight_fd = -1;
}

void bt__run_flight_close(struct bt__run *r)
{
    pthread_mutex_lock(&r->metrics_mu);
    for (int i = 0; r->w && i < r->nchild; i++)
        if (r->w[i].flight) {
            munmap(r->w[i].flight, BT_FLIGHT_BYTES);
            r->w[i].flight = NULL;
        }
    pthread_mutex_unlock(&r->metrics_mu);
}

/* The recorder of w, when its rank attached it (NULL before bt_init). */
static const struct bt__flight_hdr *rec(const struct bt__worker *w)
{
    return w->flight && __atomic_load_n(&w->flight->magic, __ATOMIC_ACQUIRE) == BT_FLIGHT_MAGIC
               ? w->flight
               : NULL;
}

const struct bt__flight_hdr *bt__run_flight_of(const struct bt__worker *w)
{
    return rec(w);
}

/* Writes every local rank's ring to DIR/flight.<rank>.txt; the first failure is one line. */
static void dump_files(struct bt__run *r, int64_t now)
{
    static int warned;
    if (!r->o.log_dir)
        return;
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        char *text = NULL, path[PATH_MAX];
        size_t len = 0;
        if (!h ||
            bt__trace_format(h, r->spec.node_rank, r->host, BT_FLIGHT_RING, now, &text, &len) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/flight.%d.txt", r->o.log_dir, r->w[i].rank);
        FILE *f = fopen(path, "we");
        int bad = !f || fwrite(text, 1, len, f) != len;
        if (f)
            bad |= fclose(f) != 0;
        if (bad && !warned++)
            fprintf(stderr, "baton: WARN: cannot write the flight-recorder dump %s: %s\n", path,
                    strerror(errno));
        free(text);
    }
}

void bt__run_flight_publish(struct bt__run *r)
{
    int64_t now = bt__run_wall_ns();
    dump_files(r, now);
    for (int i = 0; r->st && i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        char *text = NULL, key[64];
        size_t len = 0;
        if (!h || bt__trace_format(h, r->spec.node_rank, r->host, DUMP_STORE_ENTRIES, now, &text,
                                   &len) != 0)
            continue;
        snprintf(key, sizeof(key), "l/%d/flight/%d", r->restart, r->w[i].rank);
        if (bt__store_set(r->st, key, text, len) != BT_OK)
            BT_INFO(LAUNCH, "publishing %s: %s", key, bt__store_error(r->st));
        free(text);
    }
}

void bt__run_flight_analyze(struct bt__run *r, char *out, size_t cap)
{
    struct bt__trace_rank *t = calloc((size_t)r->world_size + 1, sizeof(*t));
    int n = 0;
    char err[256];
    out[0] = '\0';
    for (int g = 0; t && r->st && g < r->world_size; g++) {
        char key[64];
        void *v = NULL;
        size_t len;
        snprintf(key, sizeof(key), "l/%d/flight/%d", r->restart, g);
        if (bt__store_get(r->st, key, &v, &len, 0) == BT_OK &&
            bt__trace_parse(v, key, &t[n], err, sizeof(err)) == 0)
            n++;
        free(v);
    }
    if (n >= 2) {
        char *lines = malloc(cap);
        if (lines && bt__trace_analyze(t, n, bt__run_wall_ns(), lines, cap) > 0) {
            size_t k = 0;
            for (char *p = lines; *p && k < cap;) {
                size_t l = strcspn(p, "\n");
                k += (size_t)snprintf(out + k, cap - k, "baton: flight recorder: %.*s\n", (int)l,
                                      p);
                p += l + (p[l] == '\n');
            }
        }
        free(lines);
    }
    for (int i = 0; i < n; i++)
        bt__trace_free(&t[i]);
    free(t);
}

/* ---- stragglers ---- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Call seq (comm 0, finished) of h into *out; 0 when found. Searches back from the newest
 * entry; the calls of interest are recent. */
static int entry_of(const struct bt__flight_hdr *h, uint64_t seq, struct bt__flight_entry *out)
{
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
    if (head && bt__flight_read(h, head - 1, out) == 0 && out->seq >= seq &&
        out->seq - seq < head) { /* where it is when every call since was on comm 0 */
        uint64_t at = head - 1 - (out->seq - seq);
        if (head - at <= BT_FLIGHT_RING && bt__flight_read(h, at, out) == 0 && out->comm_id == 0 &&
            out->seq == seq)
            return out->state == BT_FL_DONE ? 0 : -1;
    }
    for (uint64_t i = head; i > 0 && head - i < BT_FLIGHT_RING; i--) {
        if (bt__flight_read(h, i - 1, out) != 0 || out->comm_id != 0)
            continue;
        if (out->seq == seq)
            return out->state == BT_FL_DONE ? 0 : -1;
        if (out->seq < seq)
            return -1;
    }
    return -1;
}

/* The ranks of this node disagree on the shape of call seq: one WARN (the first few times),
 * the same words as the failure analysis (launcher/trace.c). */
static void check_agreement(struct bt__run *r, const struct bt__flight_entry *e)
{
    if (r->strag.disagreements >= DISAGREE_WARN_MAX)
        return;
    for (int i = 1; i < r->nproc; i++)
        if (e[i].op != e[0].op || e[i].count != e[0].count || e[i].dtype != e[0].dtype ||
            e[i].redop != e[0].redop || e[i].root != e[0].root)
            break;
        else if (i == r->nproc - 1)
            return;
    struct bt__trace_rank t[BT_RUN_STRAG_RANKS];
    struct bt__flight_entry copy[BT_RUN_STRAG_RANKS];
    char out[512];
    int n = r->nproc < BT_RUN_STRAG_RANKS ? r->nproc : BT_RUN_STRAG_RANKS;
    for (int i = 0; i < n; i++) {
        copy[i] = e[i];
        t[i] = (struct bt__trace_rank){.rank = r->w[i].rank,
                                       .size = r->world_size,
                                       .n = 1,
                                       .e = &copy[i]};
    }
    if (bt__trace_analyze(t, n, bt__run_wall_ns(), out, sizeof(out)) > 0) {
        r->strag.disagreements++;
        fprintf(stderr, "baton: WARN: flight recorder: %.*s (node %d)\n", (int)strcspn(out, "\n"),
                out, r->spec.node_rank);
    }
}

/* The highest call number (comm 0) every local rank finished. */
static uint64_t all_done_upto(struct bt__run *r)
{
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        if (!h)
            return 0;
        uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE), best = 0;
        for (uint64_t j = head; j > 0 && head - j < 64; j--) {
            struct bt__flight_entry e;
            if (bt__flight_read(h, j - 1, &e) == 0 && e.comm_id == 0 && e.state == BT_FL_DONE) {
                best = e.seq;
                break;
            }
        }
        m = best < m ? best : m;
    }
    return m == UINT64_MAX ? 0 : m;
}

static void strag_account(struct bt__run *r, uint64_t seq)
{
    struct bt__strag *s = &r->strag;
    struct bt__flight_entry e[BT_RUN_STRAG_RANKS];
    int64_t first = 0, second = 0;
    int last = -1, op = 0;
    if (r->nproc > BT_RUN_STRAG_RANKS)
        return;
    for (int i = 0; i < r->nproc; i++) {
        if (entry_of(rec(&r->w[i]), seq, &e[i]) != 0)
            return; /* fell out of a ring, or not on comm 0 everywhere */
        int64_t t = e[i].start_ns;
        op = e[i].op;
        if (last < 0 || t > first)
            second = last < 0 ? t : first, first = t, last = i;
        else if (t > second)
            second = t;
    }
    check_agreement(r, e);
    if (op < 0 || op >= BT_FL_NOPS)
        return;
    struct bt__strag_op *so = &s->op[op];
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = (int16_t)last;
    so->lag_ms[k] = (float)((double)(first - second) / 1e6);
    so->n++;
    if (last < BT_RUN_STRAG_RANKS)
        __atomic_fetch_add(&s->last_total[last], 1, __ATOMIC_RELAXED);
}

/* The straggler line of op into out (""/0 when none stands out). */
static int strag_line(const struct bt__run *r, int op, char *out, size_t n)
{
    const struct bt__strag_op *so = &r->strag.op[op];
    int w = so->n < BT_RUN_STRAG_WINDOW ? (int)so->n : BT_RUN_STRAG_WINDOW, np = r->nproc;
    out[0] = '\0';
    if (w < 20 || np < 2)
        return 0;
    for (int rank = 0; rank < np; rank++) {
        int c = 0;
        double lags[BT_RUN_STRAG_WINDOW];
        for (int i = 0; i < w; i++)
            if (so->last[i] == rank)
                lags[c++] = so->lag_ms[i];
        double p = 1.0 / np, z = (c - w * p) / sqrt(w * p * (1 - p));
        if (z < STRAG_Z || c == 0)
            continue;
        qsort(lags, (size_t)c, sizeof(double), cmp_dbl);
        double med = lags[c / 2];
        if (med < STRAG_MIN_LAG_MS)
            continue;
        snprintf(out, n,
                 "rank %d arrived last in %d of the last %d %ss, median %.0f ms after the others "
                 "(node %d; chance would be %.0f)",
                 r->w[rank].rank, c, w, bt__flight_op_name(op), med, r->spec.node_rank, w * p);
        return 1;
    }
    return 0;
}

static void scan(struct bt__run *r, uint64_t batch)
{
    struct bt__strag *s = &r->strag;
    uint64_t upto = all_done_upto(r);
    uint64_t from = s->seen + 1;
    if (upto > s->seen + batch)
        from = upto - batch; /* more than one look should read: the most recent */
    for (uint64_t q = from; q <= upto; q++)
        strag_account(r, q);
    if (upto > s->seen)
        s->seen = upto;
    for (int i = 0; i < r->nproc; i++) { /* a stall warning: dump now, while it waits */
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        uint64_t st = h ? __atomic_load_n(&h->stalls, __ATOMIC_RELAXED) : 0;
        if (st > r->w[i].stalls_seen) {
            r->w[i].stalls_seen = st;
            dump_files(r, bt__run_wall_ns());
        }
    }
    int64_t now = bt__run_wall_ns();
    if (now < s->next_warn_ns)
        return;
    s->next_warn_ns = now + (int64_t)(bt__param_straggler_secs() * 1e9);
    if (!s->started) { /* the first period starts now: no warning from a half window */
        s->started = 1;
        return;
    }
    char line[256];
    for (int op = 0; op < BT_FL_NOPS; op++)
        if (strag_line(r, op, line, sizeof(line)))
            fprintf(stderr, "baton: WARN: straggler: %s\n", line);
}

void bt__run_flight_scan(struct bt__run *r)
{
    scan(r, STRAG_BATCH_MAX);
}

void bt__run_flight_report(struct bt__run *r)
{
    char line[256];
    scan(r, BT_FLIGHT_RING); /* the last look: all the rings still hold */
    for (int op = 0; op < BT_FL_NOPS; op++)
        if (strag_line(r, op, line, sizeof(line)))
            fprintf(stderr, "baton: straggler: %s\n", line);
}

void bt__run_flight_reset(struct bt__run *r)
{
    memset(&r->strag, 0, sizeof(r->strag.op));
    r->strag.seen = 0;
    r->strag.next_warn_ns = 0;
    r->strag.started = 0;
    r->strag.disagreements = 0;
    for (int i = 0; i < r->nchild; i++)
        r->w[i].stalls_seen = 0;
}
