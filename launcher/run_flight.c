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
 *  - The live look. Once a second (with the stall scan) the launcher reads, communicator by
 *    communicator (each local rank's ring descriptors say which it records), the calls that
 *    all of its local members finished since the last look, and compares their shape: a call
 *    whose op, count, dtype, reduction or root differ across the node's ranks is named at
 *    once in a WARN (the first DISAGREE_WARN_MAX), also when the collective itself does not
 *    fail.
 *  - Stragglers. In the same pass, for each world call, the rank that entered last and by how
 *    much after the one before it. Over the last STRAG_WINDOW calls of an op, a rank that was
 *    last far more often than chance (z >= STRAG_Z against 1/n, and a median lag of at least
 *    STRAG_MIN_LAG_MS) is named in a WARN every BATON_STRAGGLER_SECS, and in the final report.
 *    With one node n is its ranks; with several, each node publishes per world call its
 *    latest and second-latest entry (see "job-wide stragglers" below) and node 0 compares all
 *    ranks of the job.
 *  - Counters for /metrics (run_metrics.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "common/wire.h"
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

/* ---- the live look: calls compared across the local ranks, stragglers ---- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The ring of h that records communicator id (its descriptor into *g), or -1. The shared
 * ring is not looked at. */
static int ring_of(const struct bt__flight_hdr *h, uint32_t id, struct bt__flight_ring *g)
{
    for (int k = 0; h && k < BT_FLIGHT_RINGS - 1; k++)
        if (bt__flight_ring_read(h, k, g) == 0 && g->name[0] && g->comm_id == id)
            return k;
    return -1;
}

/* Call seq (communicator id, finished) of ring k of h into *out; 0 when found. Searches back
 * from the newest entry; the calls of interest are recent. */
static int entry_of(const struct bt__flight_hdr *h, int k, uint32_t id, uint64_t seq,
                    struct bt__flight_entry *out)
{
    uint64_t head = __atomic_load_n(&h->ring[k].head, __ATOMIC_ACQUIRE);
    if (head && bt__flight_read(h, k, head - 1, out) == 0 && out->comm_id == id &&
        out->seq >= seq && out->seq - seq < head) { /* where it is when the ring is all id's */
        uint64_t at = head - 1 - (out->seq - seq);
        if (head - at <= BT_FLIGHT_RING && bt__flight_read(h, k, at, out) == 0 &&
            out->comm_id == id && out->seq == seq)
            return out->state == BT_FL_DONE ? 0 : -1;
    }
    for (uint64_t i = head; i > 0 && head - i < BT_FLIGHT_RING; i--) {
        if (bt__flight_read(h, k, i - 1, out) != 0 || out->comm_id != id)
            continue;
        if (out->seq == seq)
            return out->state == BT_FL_DONE ? 0 : -1;
        if (out->seq < seq)
            return -1;
    }
    return -1;
}

/* The highest call number of communicator id that h finished (ring k). */
static uint64_t done_upto(const struct bt__flight_hdr *h, int k, uint32_t id)
{
    uint64_t head = __atomic_load_n(&h->ring[k].head, __ATOMIC_ACQUIRE);
    for (uint64_t j = head; j > 0 && head - j < 64; j--) {
        struct bt__flight_entry e;
        if (bt__flight_read(h, k, j - 1, &e) == 0 && e.comm_id == id && e.state == BT_FL_DONE)
            return e.seq;
    }
    return 0;
}

struct member {
    int i, k; /* local index, its ring of the communicator */
};

static int same_shape(const struct bt__flight_entry *a, const struct bt__flight_entry *b)
{
    return a->op == b->op && a->count == b->count && a->dtype == b->dtype && a->redop == b->redop &&
           a->root == b->root;
}

/* The local members m[0..n) of communicator g disagree on the shape of a call (e[]): one WARN
 * (the first few times), the same words as the failure analysis (launcher/trace.c). */
static void check_agreement(struct bt__run *r, const struct member *m, int n,
                            const struct bt__flight_ring *g, struct bt__flight_entry *e)
{
    int same = 1;
    for (int i = 1; i < n && same; i++)
        same = same_shape(&e[i], &e[0]);
    if (same || r->strag.disagreements >= DISAGREE_WARN_MAX)
        return;
    struct bt__trace_rank *t = calloc((size_t)n, sizeof(*t));
    char out[512];
    for (int i = 0; t && i < n; i++) {
        t[i] = (struct bt__trace_rank){
            .rank = r->w[m[i].i].rank, .size = r->world_size, .ncomm = 1, .n = 1, .e = &e[i]};
        t[i].comm[0] = (struct bt__trace_comm){.id = g->comm_id, .size = g->size};
        snprintf(t[i].comm[0].name, sizeof(t[i].comm[0].name), "%s", g->name);
    }
    if (t && bt__trace_analyze(t, n, bt__run_wall_ns(), out, sizeof(out)) > 0) {
        r->strag.disagreements++;
        fprintf(stderr, "baton: WARN: flight recorder: %.*s (node %d)\n", (int)strcspn(out, "\n"),
                out, r->spec.node_rank);
    }
    free(t);
}

/* World call seq as every local rank saw it (e[], m[] their local indexes): who entered last
 * and by how much; into the node's statistics, or (several nodes) into the record the node
 * publishes for node 0's job-wide look. how: ACC_ALL a call of a look that saw every call
 * since the last, ACC_GAP one of a look that skipped some (several nodes: not recorded, as the
 * other nodes' looks skip others), ACC_SAMPLE a call of the sample ring (several nodes only:
 * recorded, not counted again). */
enum { ACC_ALL = 1, ACC_GAP, ACC_SAMPLE };
static void strag_account(struct bt__run *r, const struct member *m, int n,
                          const struct bt__flight_entry *e, uint64_t seq, int how)
{
    struct bt__strag *s = &r->strag;
    int64_t first = 0, second = INT64_MIN;
    int last = -1, op = e[0].op;
    for (int i = 0; i < n; i++) {
        int64_t t = e[i].start_ns;
        if (last < 0 || t > first)
            second = last < 0 ? INT64_MIN : first, first = t, last = i;
        else if (t > second)
            second = t;
    }
    if (op < 0 || op >= BT_FL_NOPS || last < 0)
        return;
    if (how != ACC_SAMPLE && m[last].i < BT_RUN_STRAG_RANKS)
        __atomic_fetch_add(&s->last_total[m[last].i], 1, __ATOMIC_RELAXED);
    if (s->xnode) {
        if (how == ACC_GAP)
            return;
        s->xs[s->xs_n++ % BT_RUN_XS_KEEP] =
            (struct bt__xs_rec){.seq = seq,
                                .tmax = first - s->clock_off_ns,
                                .tsecond = second == INT64_MIN ? INT64_MIN
                                                               : second - s->clock_off_ns,
                                .last = r->w[m[last].i].rank,
                                .op = op,
                                .count = e[0].count,
                                .root = e[0].root,
                                .srank = r->w[m[0].i].rank,
                                .dtype = e[0].dtype,
                                .redop = e[0].redop};
        return;
    }
    if (n < 2)
        return;
    struct bt__strag_op *so = &s->op[op];
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = m[last].i;
    so->lag_ms[k] = (float)((double)(first - second) / 1e6);
    so->n++;
}

/* A call of sub-communicator sc as its n >= 2 local members saw it: who of them entered last,
 * by how much, into sc's statistics (its members on this node; those of other nodes are not
 * compared). */
static void strag_account_sub(struct bt__strag_comm *sc, const struct member *m, int n,
                              const struct bt__flight_entry *e)
{
    int last = 0, op = e[0].op;
    for (int i = 1; i < n; i++)
        last = e[i].start_ns > e[last].start_ns ? i : last;
    int64_t first = e[last].start_ns, second = INT64_MIN;
    for (int i = 0; i < n; i++)
        second = i != last && e[i].start_ns > second ? e[i].start_ns : second;
    if (op < 0 || op >= BT_FL_NOPS)
        return;
    struct bt__strag_op *so = &sc->op[op];
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = m[last].i;
    so->lag_ms[k] = (float)((double)(first - second) / 1e6);
    so->n++;
}

/* The straggler line of op into out (""/0 when none stands out): sc NULL, the world's: among
 * the local ranks, or on node 0 of several nodes among all ranks of the job; else
 * sub-communicator sc's, among its np local members. */
static int strag_line(const struct bt__run *r, const struct bt__strag_comm *sc, int np, int op,
                      char *out, size_t n)
{
    const struct bt__strag_op *so = sc ? &sc->op[op] : &r->strag.op[op];
    int w = so->n < BT_RUN_STRAG_WINDOW ? (int)so->n : BT_RUN_STRAG_WINDOW;
    int job = !sc && r->strag.xnode;
    np = sc ? np : job ? r->world_size : r->nproc;
    out[0] = '\0';
    if (w < 20 || np < 2)
        return 0;
    for (int i = 0; i < w; i++) {
        int who = so->last[i], c = 0, seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = so->last[j] == who;
        if (seen)
            continue;
        double lags[BT_RUN_STRAG_WINDOW];
        for (int j = 0; j < w; j++)
            if (so->last[j] == who)
                lags[c++] = so->lag_ms[j];
        double p = 1.0 / np, z = (c - w * p) / sqrt(w * p * (1 - p));
        if (z < STRAG_Z)
            continue;
        qsort(lags, (size_t)c, sizeof(double), cmp_dbl);
        double med = lags[c / 2];
        if (med < STRAG_MIN_LAG_MS)
            continue;
        int k = snprintf(out, n,
                         "rank %d arrived last in %d of the last %d %ss%s%s, median %.0f ms after "
                         "the others ",
                         job ? who : r->w[who].rank, c, w, bt__flight_op_name(op),
                         sc ? " on communicator " : "", sc ? sc->name : "", med);
        if (k > 0 && (size_t)k < n && sc)
            snprintf(out + k, n - (size_t)k, "(node %d, %d members here; chance would be %.0f)",
                     r->spec.node_rank, np, w * p);
        else if (k > 0 && (size_t)k < n)
            snprintf(out + k, n - (size_t)k,
                     job ? "(job-wide, %d nodes; chance would be %.0f)"
                         : "(node %d; chance would be %.0f)",
                     job ? r->spec.nnodes : r->spec.node_rank, w * p);
        return 1;
    }
    return 0;
}

/* Sampled world call seq (flight.h's BT_FLIGHT_SAMPLE) of h into *out: 0 found, 1 not yet
 * made, -1 gone from the sample ring. */
static int sample_of(const struct bt__flight_hdr *h, uint64_t seq, struct bt__flight_entry *out)
{
    uint64_t head = __atomic_load_n(&h->ring[BT_FLIGHT_RINGS].head, __ATOMIC_ACQUIRE);
    if (!head || bt__flight_read(h, BT_FLIGHT_RINGS, head - 1, out) != 0)
        return 1;
    if (out->seq < seq)
        return 1;
    uint64_t back = (out->seq - seq) / BT_FLIGHT_SAMPLE; /* where it is when none was missed */
    if (back < head && back < BT_FLIGHT_RING &&
        bt__flight_read(h, BT_FLIGHT_RINGS, head - 1 - back, out) == 0 && out->seq == seq)
        return 0;
    for (uint64_t i = head; i > 0 && head - i < BT_FLIGHT_RING; i--)
        if (bt__flight_read(h, BT_FLIGHT_RINGS, i - 1, out) == 0 && out->seq <= seq)
            return out->seq == seq ? 0 : -1;
    return -1;
}

/* Several nodes: the sampled world calls every local rank made since the last look, into the
 * node's records (the calls every node's records hold, whatever the call rate). */
static void scan_samples(struct bt__run *r)
{
    struct bt__strag *s = &r->strag;
    const struct bt__flight_hdr *h0 = rec(&r->w[0]);
    struct member *m = calloc((size_t)r->nproc, sizeof(*m));
    struct bt__flight_entry *e = calloc((size_t)r->nproc, sizeof(*e));
    uint64_t head = h0 ? __atomic_load_n(&h0->ring[BT_FLIGHT_RINGS].head, __ATOMIC_ACQUIRE) : 0;
    for (uint64_t i = head > BT_FLIGHT_RING ? head - BT_FLIGHT_RING : 0; m && e && i < head; i++) {
        if (bt__flight_read(h0, BT_FLIGHT_RINGS, i, &e[0]) != 0 || e[0].seq <= s->sample_seen)
            continue;
        uint64_t q = e[0].seq;
        int st = 0;
        for (int j = 0; j < r->nproc && st == 0; j++) {
            m[j] = (struct member){j, BT_FLIGHT_RINGS};
            const struct bt__flight_hdr *h = rec(&r->w[j]);
            st = h ? sample_of(h, q, &e[j]) : -1;
        }
        if (st > 0)
            break; /* a rank has not finished it yet: next look */
        if (st == 0)
            strag_account(r, m, r->nproc, e, q, ACC_SAMPLE);
        s->sample_seen = q;
    }
    free(m), free(e);
}

/* Adds the communicators the local ranks' rings describe to the ones compared. */
static void find_comms(struct bt__run *r)
{
    struct bt__strag *s = &r->strag;
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        for (int k = 0; h && k < BT_FLIGHT_RINGS - 1; k++) {
            struct bt__flight_ring g;
            if (bt__flight_ring_read(h, k, &g) != 0 || !g.name[0])
                continue;
            int known = 0;
            for (int c = 0; c < s->ncomm && !known; c++)
                known = s->comm[c].id == g.comm_id;
            if (!known && s->ncomm < BT_RUN_STRAG_COMMS) {
                struct bt__strag_comm *sc = &s->comm[s->ncomm++];
                memset(sc, 0, sizeof(*sc));
                sc->id = g.comm_id;
                snprintf(sc->name, sizeof(sc->name), "%s", g.name);
            }
        }
    }
}

/* The calls of communicator sc that its local members finished since the last look (the
 * most recent batch of them): their shapes compared, and for the world who entered last. */
static void scan_comm(struct bt__run *r, struct bt__strag_comm *sc, uint64_t batch)
{
    struct member *m = calloc((size_t)r->nproc, sizeof(*m));
    struct bt__flight_entry *e = calloc((size_t)r->nproc, sizeof(*e));
    struct bt__flight_ring g;
    int n = 0;
    uint64_t upto = UINT64_MAX;
    for (int i = 0; m && e && i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        int k = h ? ring_of(h, sc->id, &g) : -1;
        if (k < 0)
            continue;
        m[n++] = (struct member){i, k};
        uint64_t u = done_upto(h, k, sc->id);
        upto = u < upto ? u : upto;
    }
    if (n > 0 && upto != UINT64_MAX && upto > sc->seen) {
        uint64_t from = upto > sc->seen + batch ? upto - batch : sc->seen + 1;
        for (uint64_t q = from; q <= upto; q++) {
            int ok = 1;
            for (int j = 0; j < n && ok; j++)
                ok = entry_of(rec(&r->w[m[j].i]), m[j].k, sc->id, q, &e[j]) == 0;
            if (!ok)
                continue; /* fell out of a ring */
            if (n >= 2)
                check_agreement(r, m, n, &g, e);
            if (sc->id == 0 && n == r->nproc) /* a batch with a gap: only the samples go to
                                                 the records (see job-wide stragglers) */
                strag_account(r, m, n, e, q, from == sc->seen + 1 ? ACC_ALL : ACC_GAP);
            else if (sc->id != 0 && n >= 2)
                strag_account_sub(sc, m, n, e);
        }
        sc->seen = upto;
        sc->members = n;
    }
    free(m), free(e);
}

/* ---- job-wide stragglers (several nodes) ----
 *
 * Each node's launcher keeps, for the last BT_RUN_XS_KEEP world calls it saw finished by all
 * its ranks, a record {call number, its ranks' latest entry time and the one before it
 * (shifted to node 0's clock), who entered latest}: every call of a look that saw all calls
 * since the last, and every call numbered a multiple of BT_FLIGHT_SAMPLE from the ranks'
 * sample rings (flight.h), so that the nodes hold the same calls at any call rate. Every
 * XS_PERIOD (BATON_STRAGGLER_SECS / 2, 1 to 5 s) nodes other than 0 publish theirs (through
 * the watcher thread's connection: bt__run_flight_watch) as l/<g>/xs/<node> (version, count, then
 * 32-byte records, little-endian; XS_PUB_MAX at most, beyond which only calls numbered a multiple
 * of 2 * BT_FLIGHT_SAMPLE, 4 * ... are kept: the number alone decides, so every node keeps the
 * same); node 0 reads them and, for each call every node holds, takes the latest entry over the
 * nodes and the one before it over all ranks, into the same statistics and WARN as one node's. The
 * clocks: at the start of each generation every node measures its offset to node 0's through the
 * store (three round trips, the shortest kept; good to half of it), as the timeline does at the
 * end. */

#define XS_VERSION 2
#define XS_REC_BYTES 56
#define XS_PUB_MAX 256 /* records published at most (thinned by call number beyond) */

/* What node k > 0 publishes next: prepared by the main thread, sent by the watcher thread on
 * its own connection (bt__run_flight_watch), so that a store that stops answering never holds
 * up the supervision loop. */
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t pub_buf[8 + XS_REC_BYTES * XS_PUB_MAX];
static size_t pub_len;
static char pub_key[64];
#define XS_CLOCK_WAIT_S 5.0 /* how long the clock exchange waits for each node */
#define XS_PINGS 3

static double xs_period_s(void)
{
    double p = bt__param_straggler_secs() / 2;
    return p < 1 ? 1 : p > 5 ? 5 : p;
}

/* Node k > 0: one round trip j of the clock exchange; the offset into *off, 0 when it came. */
static int clock_ping(struct bt__run *r, int j, int64_t *off, int64_t *rtt)
{
    char key[64], val[32];
    void *v = NULL;
    size_t len;
    int64_t t0 = bt__run_wall_ns();
    snprintf(key, sizeof(key), "l/%d/xs/ping/%d/%d", r->restart, r->spec.node_rank, j);
    snprintf(val, sizeof(val), "%" PRId64, t0);
    if (bt__store_set(r->st, key, val, strlen(val)) != BT_OK)
        return -1;
    snprintf(key, sizeof(key), "l/%d/xs/pong/%d/%d", r->restart, r->spec.node_rank, j);
    if (bt__store_get(r->st, key, &v, &len, XS_CLOCK_WAIT_S) != BT_OK)
        return -1;
    int64_t t1 = bt__run_wall_ns(), T = strtoll(v, NULL, 10);
    free(v);
    *off = (t0 + t1) / 2 - T;
    *rtt = t1 - t0;
    return 0;
}

/* Node 0: answers round trip j of every other node (gone[k]: node k missed one; not waited
 * for again). */
static void clock_answer(struct bt__run *r, int j, char *gone)
{
    for (int k = 1; k < r->spec.nnodes; k++) {
        char key[64], val[32];
        void *v = NULL;
        size_t len;
        snprintf(key, sizeof(key), "l/%d/xs/ping/%d/%d", r->restart, k, j);
        if (gone[k] || bt__store_get(r->st, key, &v, &len, XS_CLOCK_WAIT_S) != BT_OK) {
            gone[k] = 1;
            continue;
        }
        free(v);
        snprintf(key, sizeof(key), "l/%d/xs/pong/%d/%d", r->restart, k, j);
        snprintf(val, sizeof(val), "%" PRId64, bt__run_wall_ns());
        bt__store_set(r->st, key, val, strlen(val));
    }
}

/* At the start of a generation of several nodes: the clock exchange; xnode on success. */
static void xs_start(struct bt__run *r)
{
    struct bt__strag *s = &r->strag;
    pthread_mutex_lock(&pub_mu); /* nothing of the last generation is sent */
    pub_len = 0;
    pthread_mutex_unlock(&pub_mu);
    if (r->spec.nnodes < 2 || !r->st || !flight_on())
        return;
    int64_t best = INT64_MAX;
    char *gone = calloc((size_t)r->spec.nnodes, 1);
    for (int j = 0; gone && j < XS_PINGS; j++) {
        int64_t off, rtt;
        if (r->spec.node_rank == 0)
            clock_answer(r, j, gone);
        else if (clock_ping(r, j, &off, &rtt) != 0)
            break;
        else if (rtt < best)
            best = rtt, s->clock_off_ns = off;
    }
    free(gone);
    s->xnode = r->spec.node_rank == 0 || best != INT64_MAX;
    BT_INFO(LAUNCH,
            "straggler look across %d nodes: %s (clock offset to node 0: %.3f ms, round "
            "trip %.3f ms)",
            r->spec.nnodes, s->xnode ? "on" : "off", (double)s->clock_off_ns / 1e6,
            best == INT64_MAX ? 0.0 : (double)best / 1e6);
}

static int by_seq(const void *a, const void *b)
{
    const struct bt__xs_rec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The node's records sorted by call number, each call once, into x; returns how many. */
static int xs_sorted(const struct bt__strag *s, struct bt__xs_rec *x)
{
    int n = (int)(s->xs_n < BT_RUN_XS_KEEP ? s->xs_n : BT_RUN_XS_KEEP), k = 0;
    memcpy(x, s->xs, sizeof(*x) * (size_t)n);
    qsort(x, (size_t)n, sizeof(*x), by_seq);
    for (int i = 0; i < n; i++)
        if (!k || x[i].seq != x[k - 1].seq)
            x[k++] = x[i];
    return k;
}

/* Node k > 0: its records, for the watcher to publish. */
static void xs_publish(struct bt__run *r)
{
    struct bt__strag *s = &r->strag;
    struct bt__xs_rec x[BT_RUN_XS_KEEP];
    int n = xs_sorted(s, x);
    uint64_t every = 1; /* thinning: calls numbered a multiple of BT_FLIGHT_SAMPLE * every */
    for (int c = n; c > XS_PUB_MAX; every *= 2) {
        c = 0;
        for (int i = 0; i < n; i++)
            c += x[i].seq % (BT_FLIGHT_SAMPLE * every * 2) == 0;
    }
    if (every > 1) { /* the same calls on every node: the call number alone decides */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (x[i].seq % (BT_FLIGHT_SAMPLE * every) == 0 && k < XS_PUB_MAX)
                x[k++] = x[i];
        n = k;
    }
    uint8_t buf[8 + XS_REC_BYTES * XS_PUB_MAX], *p = buf + 8;
    char key[64];
    bt__put_le32(buf, XS_VERSION);
    bt__put_le32(buf + 4, (uint32_t)n);
    for (int i = 0; i < n; i++, p += XS_REC_BYTES) {
        const struct bt__xs_rec *xr = &x[i];
        bt__put_le64(p, xr->seq);
        bt__put_le64(p + 8, (uint64_t)xr->tmax);
        bt__put_le64(p + 16, (uint64_t)xr->tsecond);
        bt__put_le32(p + 24, (uint32_t)xr->last);
        bt__put_le32(p + 28, (uint32_t)xr->op);
        bt__put_le64(p + 32, xr->count);
        bt__put_le32(p + 40, (uint32_t)xr->root);
        bt__put_le32(p + 44, (uint32_t)xr->srank);
        p[48] = xr->dtype, p[49] = xr->redop;
        memset(p + 50, 0, XS_REC_BYTES - 50);
    }
    snprintf(key, sizeof(key), "l/%d/xs/%d", r->restart, r->spec.node_rank);
    pthread_mutex_lock(&pub_mu);
    memcpy(pub_buf, buf, (size_t)(p - buf));
    pub_len = (size_t)(p - buf);
    snprintf(pub_key, sizeof(pub_key), "%s", key);
    pthread_mutex_unlock(&pub_mu);
}

void bt__run_flight_watch(struct bt__run *r, struct bt__store *st)
{
    uint8_t buf[sizeof(pub_buf)];
    char key[64];
    size_t len;
    (void)r;
    pthread_mutex_lock(&pub_mu);
    len = pub_len;
    memcpy(buf, pub_buf, len);
    snprintf(key, sizeof(key), "%s", pub_key);
    pub_len = 0;
    pthread_mutex_unlock(&pub_mu);
    if (len && bt__store_set(st, key, buf, len) != BT_OK)
        BT_INFO(LAUNCH, "publishing %s: %s", key, bt__store_error(st));
}

/* One node's published records (sorted by call number), or NULL (none yet, or not whole). */
static struct bt__xs_rec *xs_fetch(struct bt__run *r, int node, int *n)
{
    char key[64];
    void *v = NULL;
    size_t len = 0;
    snprintf(key, sizeof(key), "l/%d/xs/%d", r->restart, node);
    *n = 0;
    if (bt__store_get(r->st, key, &v, &len, 0) != BT_OK)
        return NULL;
    const uint8_t *p = v;
    uint32_t cnt = len >= 8 ? bt__le32(p + 4) : 0;
    struct bt__xs_rec *x = NULL;
    if (len >= 8 && bt__le32(p) == XS_VERSION && cnt <= XS_PUB_MAX &&
        len == 8 + (size_t)cnt * XS_REC_BYTES && (x = calloc(cnt + 1, sizeof(*x)))) {
        for (uint32_t i = 0; i < cnt; i++) {
            const uint8_t *q = p + 8 + (size_t)i * XS_REC_BYTES;
            x[i] = (struct bt__xs_rec){.seq = bt__le64(q),
                                       .tmax = (int64_t)bt__le64(q + 8),
                                       .tsecond = (int64_t)bt__le64(q + 16),
                                       .last = (int32_t)bt__le32(q + 24),
                                       .op = (int32_t)bt__le32(q + 28),
                                       .count = bt__le64(q + 32),
                                       .root = (int32_t)bt__le32(q + 40),
                                       .srank = (int32_t)bt__le32(q + 44),
                                       .dtype = q[48],
                                       .redop = q[49]};
        }
        *n = (int)cnt;
        qsort(x, cnt, sizeof(*x), by_seq); /* as published; xs_find needs it */
    }
    free(v);
    return x;
}

static const struct bt__xs_rec *xs_find(const struct bt__xs_rec *x, int n, uint64_t seq)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (x[mid].seq == seq)
            return &x[mid];
        if (x[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* World call a (node 0's record) with every other node's record of it (o[1..nn)): into the
 * job-wide statistics. */
static void xs_account(struct bt__run *r, const struct bt__xs_rec *a, const struct bt__xs_rec **o)
{
    int64_t first = a->tmax, second = a->tsecond;
    int last = a->last;
    for (int k = 1; k < r->spec.nnodes; k++) {
        if (o[k]->tmax > first) {
            second = first > o[k]->tsecond ? first : o[k]->tsecond;
            first = o[k]->tmax, last = o[k]->last;
        } else if (o[k]->tmax > second)
            second = o[k]->tmax;
    }
    if (a->op < 0 || a->op >= BT_FL_NOPS || second == INT64_MIN)
        return;
    struct bt__strag_op *so = &r->strag.op[a->op];
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = last;
    so->lag_ms[k] = (float)((double)(first - second) / 1e6);
    so->n++;
}

/* World call a (node 0's record) against every other node's (o[1..nn)): a shape that differs
 * is one WARN (the first DISAGREE_WARN_MAX of the generation), in the failure analysis' words,
 * each node speaking for its first local rank (differences within a node are the node's own
 * look's: check_agreement). */
static void xs_check_shape(struct bt__run *r, const struct bt__xs_rec *a,
                           const struct bt__xs_rec **o)
{
    int nn = r->spec.nnodes, same = 1;
    for (int k = 1; k < nn && same; k++)
        same = o[k]->op == a->op && o[k]->count == a->count && o[k]->dtype == a->dtype &&
               o[k]->redop == a->redop && o[k]->root == a->root;
    if (same || r->strag.disagreements >= DISAGREE_WARN_MAX)
        return;
    struct bt__trace_rank *t = calloc((size_t)nn, sizeof(*t));
    struct bt__flight_entry *e = calloc((size_t)nn, sizeof(*e));
    char out[512];
    for (int k = 0; t && e && k < nn; k++) {
        const struct bt__xs_rec *x = k ? o[k] : a;
        e[k] = (struct bt__flight_entry){.seq = x->seq,
                                         .count = x->count,
                                         .root = x->root,
                                         .peers = r->world_size,
                                         .op = (uint8_t)x->op,
                                         .dtype = x->dtype,
                                         .redop = x->redop,
                                         .state = BT_FL_DONE};
        t[k] = (struct bt__trace_rank){
            .rank = x->srank, .size = r->world_size, .ncomm = 1, .n = 1, .e = &e[k]};
        t[k].comm[0] = (struct bt__trace_comm){.id = 0, .size = r->world_size};
        snprintf(t[k].comm[0].name, sizeof(t[k].comm[0].name), "world");
    }
    if (t && e && bt__trace_analyze(t, nn, bt__run_wall_ns(), out, sizeof(out)) > 0) {
        r->strag.disagreements++;
        fprintf(stderr, "baton: WARN: flight recorder: %.*s (across %d nodes)\n",
                (int)strcspn(out, "\n"), out, nn);
    }
    free(t), free(e);
}

/* Node 0: the calls every node now holds, since the last look. */
static void xs_merge(struct bt__run *r)
{
    struct bt__strag *s = &r->strag;
    int nn = r->spec.nnodes;
    struct bt__xs_rec **x = calloc((size_t)nn, sizeof(*x));
    int *n = calloc((size_t)nn, sizeof(int));
    const struct bt__xs_rec **o = calloc((size_t)nn, sizeof(*o));
    uint64_t upto = UINT64_MAX;
    struct bt__xs_rec mine[BT_RUN_XS_KEEP];
    int nmine = xs_sorted(s, mine), matched = 0;
    for (int k = 1; x && n && o && k < nn; k++) {
        x[k] = xs_fetch(r, k, &n[k]);
        upto = n[k] > 0 && x[k][n[k] - 1].seq < upto ? x[k][n[k] - 1].seq : n[k] > 0 ? upto : 0;
    }
    for (int i = 0; x && n && o && upto != UINT64_MAX && i < nmine; i++) {
        const struct bt__xs_rec *a = &mine[i];
        if (a->seq <= s->xseen || a->seq > upto)
            continue;
        int all = 1;
        for (int k = 1; k < nn && all; k++)
            all = (o[k] = xs_find(x[k], n[k], a->seq)) != NULL;
        if (all) {
            xs_check_shape(r, a, o);
            xs_account(r, a, o), matched++;
        }
    }
    BT_INFO(LAUNCH, "job-wide straggler look: %d world call(s) compared across %d nodes", matched,
            nn);
    if (upto != UINT64_MAX && upto > s->xseen)
        s->xseen = upto;
    for (int k = 0; x && k < nn; k++)
        free(x[k]);
    free(x), free(n), free(o);
}

/* Several nodes: publish (k > 0) or read and compare (node 0), every XS_PERIOD or when forced. */
static void xs_step(struct bt__run *r, int force)
{
    struct bt__strag *s = &r->strag;
    int64_t now = bt__run_wall_ns();
    if (!s->xnode || !r->st || (!force && now < s->next_pub_ns))
        return;
    s->next_pub_ns = now + (int64_t)(xs_period_s() * 1e9);
    if (r->spec.node_rank > 0)
        xs_publish(r);
    else
        xs_merge(r);
}

/* The straggler lines of the world's ops, then of each sub-communicator's, after prefix. */
static void strag_lines(const struct bt__run *r, const char *prefix)
{
    char line[512];
    for (int op = 0; op < BT_FL_NOPS; op++)
        if (strag_line(r, NULL, 0, op, line, sizeof(line)))
            fprintf(stderr, "%s: %s\n", prefix, line);
    for (int c = 0; c < r->strag.ncomm; c++) {
        const struct bt__strag_comm *sc = &r->strag.comm[c];
        for (int op = 0; sc->id != 0 && op < BT_FL_NOPS; op++)
            if (strag_line(r, sc, sc->members, op, line, sizeof(line)))
                fprintf(stderr, "%s: %s\n", prefix, line);
    }
}

static void scan(struct bt__run *r, uint64_t batch, int force)
{
    struct bt__strag *s = &r->strag;
    find_comms(r);
    for (int c = 0; c < s->ncomm; c++)
        scan_comm(r, &s->comm[c], batch);
    if (s->xnode)
        scan_samples(r);
    xs_step(r, force);
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
    strag_lines(r, "baton: WARN: straggler");
}

void bt__run_flight_scan(struct bt__run *r)
{
    scan(r, STRAG_BATCH_MAX, 0);
}

void bt__run_flight_report(struct bt__run *r)
{
    scan(r, BT_FLIGHT_RING, 1); /* the last look: all the rings still hold */
    strag_lines(r, "baton: straggler");
}

void bt__run_flight_reset(struct bt__run *r)
{
    uint64_t keep[BT_RUN_STRAG_RANKS]; /* /metrics counts over the whole job */
    memcpy(keep, r->strag.last_total, sizeof(keep));
    memset(&r->strag, 0, sizeof(r->strag));
    memcpy(r->strag.last_total, keep, sizeof(keep));
    for (int i = 0; i < r->nchild; i++)
        r->w[i].stalls_seen = 0;
    xs_start(r);
}
