/* run_timeline.c: BATON_TIMELINE=PATH, the job as Chrome trace-event JSON (Perfetto,
 * chrome://tracing): one process per node, one track (thread) per rank and one for the
 * launcher.
 *
 * The ranks' collectives come from their flight recorders (run_flight.c), which the launcher
 * reads once a second (and at the end of each generation): each finished call becomes a
 * complete event ("X") "allreduce #15" with its count, dtype and bytes, nested inside the span
 * "generation G" of its rank (the worker's life: start to reap). The launcher's own track has
 * "rendezvous G" (from joining to the layout) and an instant event "restart G". A recorder
 * holds the last 1,024 calls, so a rank making more calls than that per second loses some;
 * their number is in otherData.calls_skipped.
 *
 * At the end every node's launcher turns its events to JSON text; nodes other than 0 measure
 * their clock against node 0's through the store (one round trip: node k sets l/tl/ping/<k> =
 * its time t0, node 0 answers l/tl/pong/<k> = its time T, node k reads it at t1: offset =
 * T - (t0 + t1) / 2, good to half the round trip) and publish their events, shifted by that
 * offset, as l/tl/events/<k>. Node 0 writes PATH with every node's events (each node's sorted
 * by time; pid = node rank + 1, tid = global rank + 1, the launcher tid 0).
 * A path that cannot be written is one WARN line; the job's result is unchanged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "launcher/run.h"
#include "launcher/trace.h"

#define TL_WAIT_S 10.0 /* how long node 0 waits for each other node's events */

struct tl_ev {
    int64_t ts_ns, dur_ns; /* dur_ns < 0: an instant event */
    int tid;               /* global rank, or -1 for the launcher */
    int phase;             /* 1, 2, ...: a phase of a call (category "phase"); 0 not */
    char *name, *args;     /* args: JSON object text or NULL */
};

struct bt__timeline {
    struct tl_ev *ev;
    size_t n, cap;
    uint64_t skipped;
    uint64_t next[BT_RUN_STRAG_RANKS][BT_FLIGHT_RINGS]; /* per local index and ring: read up to */
    char track[BT_RUN_STRAG_RANKS][BT_FLIGHT_RINGS][BT_FLIGHT_NAME]; /* sub-comm tracks' names */
    int64_t gen_start[BT_RUN_STRAG_RANKS];
    int64_t rdzv_start;
};

static const char *path(void)
{
    const char *p = getenv("BATON_TIMELINE");
    return p && *p ? p : NULL;
}

static void add(struct bt__run *r, int tid, int64_t ts, int64_t dur, char *name, char *args)
{
    struct bt__timeline *t = r->tl;
    if (!t || !name) {
        free(name), free(args);
        return;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        struct tl_ev *p = realloc(t->ev, cap * sizeof(*p));
        if (!p) {
            free(name), free(args);
            return;
        }
        t->ev = p, t->cap = cap;
    }
    t->ev[t->n++] = (struct tl_ev){ts, dur, tid, 0, name, args};
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

void bt__run_timeline_start(struct bt__run *r)
{
    if (!path() || r->tl)
        return;
    r->tl = calloc(1, sizeof(*r->tl));
}

void bt__run_timeline_join(struct bt__run *r, int done)
{
    if (!r->tl)
        return;
    int64_t now = bt__run_wall_ns();
    if (!done) {
        r->tl->rdzv_start = now;
        return;
    }
    add(r, -1, r->tl->rdzv_start, now - r->tl->rdzv_start, fmt("rendezvous %d", r->restart),
        fmt("{\"generation\": %d, \"nodes\": %d}", r->restart, r->spec.nnodes));
    if (r->restart > 0)
        add(r, -1, r->tl->rdzv_start, -1, fmt("restart %d", r->restart), NULL);
    for (int i = 0; i < r->nproc && i < BT_RUN_STRAG_RANKS; i++) {
        memset(r->tl->next[i], 0, sizeof(r->tl->next[i]));
        r->tl->gen_start[i] = now;
    }
}

/* The track of a call: tid rank + 1 for the world's calls, rank + 1 + TRACK_STEP * ring for a
 * sub-communicator's (named "rank R: NAME"), so calls of two communicators that overlap in
 * time (nonblocking calls, threads) never share a track. */
#define TRACK_STEP 1000000

/* The phases of call e (flight.h's BT_FL_PHASE_*) as events nested in it: the hierarchical
 * allreduce's intra-node reduce, inter-node allreduce (of the node leaders; the others wait)
 * and intra-node broadcast; the ring allreduce's reduce-scatter and allgather of its first
 * segment, then its later segments; Rabenseifner's reduce-scatter (with the fold), allgather,
 * unfold. Only a call that finished with both boundaries of one kind has them. */
static void add_phases(struct bt__run *r, int tid, const struct bt__flight_entry *e)
{
    static const char *const names[4][3] = {
        {"", "", ""},
        {"reduce (intra-node)", "allreduce (inter-node)", "broadcast (intra-node)"},
        {"reduce-scatter (ring)", "allgather (ring)", "later segments (ring)"},
        {"reduce-scatter (halving)", "allgather (doubling)", "unfold"},
    };
    unsigned kind = BT_FL_PHASE_KIND(e->phase[0]);
    if (e->state != BT_FL_DONE || kind < BT_FL_PHASE_HIER || kind > BT_FL_PHASE_RABEN ||
        BT_FL_PHASE_KIND(e->phase[1]) != kind)
        return;
    const char *const *name = names[kind];
    int64_t dur = e->end_ns - e->start_ns,
            b[4] = {0, BT_FL_PHASE_NS(e->phase[0]), BT_FL_PHASE_NS(e->phase[1]), dur};
    for (int i = 1; i < 4; i++) /* in order and inside the call, whatever the rounding did */
        b[i] = b[i] < b[i - 1] ? b[i - 1] : b[i] > dur ? dur : b[i];
    for (int i = 0; i < 3; i++) {
        size_t n = r->tl->n;
        add(r, tid, e->start_ns + b[i], b[i + 1] - b[i], fmt("%s", name[i]),
            fmt("{\"phase\": %d, \"of\": \"%s #%" PRIu64 "\"}", i + 1, bt__flight_op_name(e->op),
                e->seq));
        if (r->tl->n > n)
            r->tl->ev[n].phase = i + 1;
    }
}

/* Ring k of local rank i: its finished calls since the last look. */
static void scan_ring(struct bt__run *r, int i, const struct bt__flight_hdr *h, int k)
{
    struct bt__timeline *t = r->tl;
    struct bt__flight_ring g;
    if (bt__flight_ring_read(h, k, &g) != 0)
        return;
    uint64_t head = g.head, *next = &t->next[i][k];
    if (head > *next + BT_FLIGHT_RING) {
        t->skipped += head - BT_FLIGHT_RING - *next;
        *next = head - BT_FLIGHT_RING;
    }
    for (; *next < head; (*next)++) {
        struct bt__flight_entry e;
        if (bt__flight_read(h, k, *next, &e) != 0 || e.state == BT_FL_RUNNING)
            break; /* look again next time */
        int tid = r->w[i].rank;
        char comm[BT_FLIGHT_NAME + 8] = "world";
        if (e.comm_id) {
            tid += TRACK_STEP * (k + 1);
            snprintf(comm, sizeof(comm), "c%08x", e.comm_id);
            if (!t->track[i][k][0])
                snprintf(t->track[i][k], sizeof(t->track[i][k]), "%s",
                         k == BT_FLIGHT_RINGS - 1 ? "other communicators" : g.name);
        }
        add(r, tid, e.start_ns, e.end_ns - e.start_ns,
            fmt("%s #%" PRIu64, bt__flight_op_name(e.op), e.seq),
            fmt("{\"seq\": %" PRIu64 ", \"count\": %" PRIu64 ", \"comm\": \"%s\", \"state\": "
                "\"%s\"}",
                e.seq, e.count, comm, e.state == BT_FL_DONE ? "done" : "failed"));
        add_phases(r, tid, &e);
    }
}

void bt__run_timeline_scan(struct bt__run *r)
{
    for (int i = 0; r->tl && i < r->nproc && i < BT_RUN_STRAG_RANKS; i++) {
        const struct bt__flight_hdr *h = bt__run_flight_of(&r->w[i]);
        for (int k = 0; h && k < BT_FLIGHT_RINGS; k++)
            scan_ring(r, i, h, k);
    }
}

void bt__run_timeline_generation_end(struct bt__run *r)
{
    if (!r->tl)
        return;
    bt__run_timeline_scan(r);
    for (int i = 0; i < r->nproc && i < BT_RUN_STRAG_RANKS; i++) {
        const struct bt__worker *w = &r->w[i];
        if (w->pid <= 0 || !w->end_ns)
            continue;
        add(r, w->rank, r->tl->gen_start[i], w->end_ns - r->tl->gen_start[i],
            fmt("generation %d", r->restart),
            fmt("{\"pid\": %d, \"exit\": %d}", (int)w->pid, bt__run_exit_status(w->status)));
    }
}

static int cmp_ev(const void *a, const void *b)
{
    const struct tl_ev *x = a, *y = b;
    if (x->ts_ns != y->ts_ns)
        return x->ts_ns < y->ts_ns ? -1 : 1;
    if (x->phase && y->phase) /* phases of one call: in order, also an empty one */
        return x->phase - y->phase;
    if (x->dur_ns != y->dur_ns)
        return (x->dur_ns < y->dur_ns) - (x->dur_ns > y->dur_ns); /* the longer (outer) first */
    return x->phase - y->phase; /* a call before its phase as long as itself */
}

/* Timestamps count from the start of the UTC day (otherData.day_start_ns), so that a double
 * holds them to the nanosecond; every node's clock is first shifted to node 0's. */
#define DAY_NS (86400LL * 1000000000LL)
static int64_t day_start(int64_t ns)
{
    return ns - ns % DAY_NS;
}

/* This node's events as JSON array elements (",\n" separated, no brackets), shifted by off. */
static char *node_json(struct bt__run *r, int64_t off, size_t *len)
{
    struct bt__timeline *t = r->tl;
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f)
        return NULL;
    int node = r->spec.node_rank + 1; /* trace pids start at 1 */
    fprintf(f,
            "{\"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"name\": \"process_name\", \"args\": "
            "{\"name\": \"node %d (%s)\"}}",
            node, node - 1, r->host);
    fprintf(f,
            ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"name\": \"thread_name\", \"args\": "
            "{\"name\": \"launcher\"}}",
            node);
    for (int i = 0; i < r->nproc; i++) {
        fprintf(f,
                ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"name\": \"thread_name\", "
                "\"args\": {\"name\": \"rank %d\"}}",
                node, r->w[i].rank + 1, r->w[i].rank);
        for (int k = 0; i < BT_RUN_STRAG_RANKS && k < BT_FLIGHT_RINGS; k++)
            if (t->track[i][k][0])
                fprintf(f,
                        ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"name\": "
                        "\"thread_name\", \"args\": {\"name\": \"rank %d: %s\"}}",
                        node, r->w[i].rank + 1 + TRACK_STEP * (k + 1), r->w[i].rank,
                        t->track[i][k]);
    }
    qsort(t->ev, t->n, sizeof(*t->ev), cmp_ev);
    for (size_t i = 0; i < t->n; i++) {
        const struct tl_ev *e = &t->ev[i];
        double ts = (double)(e->ts_ns + off - day_start(e->ts_ns + off)) / 1e3;
        fprintf(f, ",\n{\"ph\": \"%s\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, ",
                e->dur_ns < 0 ? "i" : "X", node, e->tid + 1, ts);
        if (e->dur_ns >= 0)
            fprintf(f, "\"dur\": %.3f, ", (double)e->dur_ns / 1e3);
        else
            fprintf(f, "\"s\": \"t\", ");
        fprintf(f, "\"cat\": \"%s\", \"name\": \"%s\"",
                e->tid < 0 ? "launcher"
                : e->phase ? "phase"
                           : "rank",
                e->name);
        if (e->args)
            fprintf(f, ", \"args\": %s", e->args);
        fputs("}", f);
    }
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    *len = n;
    return s;
}

/* Node k > 0: its clock minus node 0's, through the store (see the file's header). */
static int64_t measure_offset(struct bt__run *r)
{
    char key[64], val[32];
    void *v = NULL;
    size_t len;
    int64_t t0 = bt__run_wall_ns();
    snprintf(key, sizeof(key), "l/tl/ping/%d", r->spec.node_rank);
    snprintf(val, sizeof(val), "%" PRId64, t0);
    if (bt__store_set(r->st, key, val, strlen(val)) != BT_OK)
        return 0;
    snprintf(key, sizeof(key), "l/tl/pong/%d", r->spec.node_rank);
    if (bt__store_get(r->st, key, &v, &len, TL_WAIT_S) != BT_OK)
        return 0;
    int64_t t1 = bt__run_wall_ns(), T = strtoll(v, NULL, 10);
    free(v);
    return (t0 + t1) / 2 - T;
}

static void write_file(struct bt__run *r, const char *p, char **parts, size_t *lens, int n)
{
    FILE *f = fopen(p, "we");
    int bad = !f;
    if (f) {
        fprintf(f,
                "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"job\": \"%s\", "
                "\"nodes\": %d, \"world_size\": %d, \"calls_skipped\": %" PRIu64 ", "
                "\"day_start_ns\": %" PRId64 "},\n\"traceEvents\": [\n",
                r->job_id, r->spec.nnodes, r->world_size, r->tl->skipped,
                day_start(bt__run_wall_ns()));
        int first = 1;
        for (int i = 0; i < n; i++)
            if (parts[i] && lens[i]) {
                fprintf(f, "%s%.*s", first ? "" : ",\n", (int)lens[i], parts[i]);
                first = 0;
            }
        fputs("\n]}\n", f);
        bad |= ferror(f);
        bad |= fclose(f) != 0;
    }
    if (bad)
        fprintf(stderr, "baton: WARN: BATON_TIMELINE=%s: cannot write it: %s\n", p,
                strerror(errno));
}

/* Node 0: answers each node's clock ping, then collects its events. */
static void gather(struct bt__run *r, char **parts, size_t *lens)
{
    for (int k = 1; k < r->spec.nnodes; k++) {
        char key[64], val[32];
        void *v = NULL;
        size_t len;
        snprintf(key, sizeof(key), "l/tl/ping/%d", k);
        if (bt__store_get(r->st, key, &v, &len, TL_WAIT_S) != BT_OK)
            continue;
        free(v);
        snprintf(key, sizeof(key), "l/tl/pong/%d", k);
        snprintf(val, sizeof(val), "%" PRId64, bt__run_wall_ns());
        bt__store_set(r->st, key, val, strlen(val));
        snprintf(key, sizeof(key), "l/tl/events/%d", k);
        if (bt__store_get(r->st, key, &v, &len, TL_WAIT_S) == BT_OK)
            parts[k] = v, lens[k] = len;
    }
}

void bt__run_timeline_finish(struct bt__run *r)
{
    const char *p = path();
    if (!r->tl || !p)
        return;
    int nn = r->spec.nnodes > 0 ? r->spec.nnodes : 1, me = r->spec.node_rank;
    char **parts = calloc((size_t)nn, sizeof(char *));
    size_t *lens = calloc((size_t)nn, sizeof(size_t));
    if (parts && lens && me > 0 && r->st) {
        size_t len = 0;
        char key[64], *s = node_json(r, -measure_offset(r), &len);
        snprintf(key, sizeof(key), "l/tl/events/%d", me);
        if (s && bt__store_set(r->st, key, s, len) != BT_OK)
            BT_INFO(LAUNCH, "publishing the timeline: %s", bt__store_error(r->st));
        free(s);
    } else if (parts && lens && me == 0) {
        parts[0] = node_json(r, 0, &lens[0]);
        if (r->st && nn > 1)
            gather(r, parts, lens);
        write_file(r, p, parts, lens, nn);
    }
    for (int i = 0; parts && i < nn; i++)
        free(parts[i]);
    free(parts), free(lens);
    for (size_t i = 0; i < r->tl->n; i++)
        free(r->tl->ev[i].name), free(r->tl->ev[i].args);
    free(r->tl->ev);
    free(r->tl);
    r->tl = NULL;
}
