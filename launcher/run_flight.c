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
 *    fail. Across nodes, node 0 compares the calls' shapes in the records below
 *    (xs_check_shape). Calls no look saw (a fast job's): the ranks' call-shape hashes
 *    (flight.h), carried by every 64th call's copy in the sample ring, compared among the
 *    local members (check_hashes) and across nodes (xs_check_hash).
 *  - Stragglers. In the same pass, for each call, the rank that entered last and by how much
 *    after the one before it, as far as its own gap before the call explains (straggler.h:
 *    not what it owes to leaving the previous call late). Over the last BT_RUN_STRAG_WINDOW
 *    calls of an op, a rank that was last far more often than chance (launcher/straggler.h's
 *    rule: a binomial tail against 1/n and a floor on its median lag) is named in a WARN every
 *    BATON_STRAGGLER_SECS, and in the final report.
 *    For the world, with one node n is its ranks; with several (elastic and etcd jobs too),
 *    each node publishes per world call its latest and second-latest entry (see "job-wide
 *    stragglers" below) and node 0 compares all ranks of the job. A sub-communicator's calls
 *    are compared among its members: on their node when all are on one, else job-wide on
 *    node 0 like the world's.
 *  - Counters for /metrics (run_metrics.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
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
#include "launcher/straggler.h"
#include "launcher/trace.h"

#define DUMP_STORE_ENTRIES 256 /* calls of each rank published to the store */
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

int64_t bt__run_flight_last_ns(const struct bt__worker *w)
{
    const struct bt__flight_hdr *h = rec(w);
    int64_t last = 0;
    struct bt__flight_entry e;
    for (int k = 0; h && k < BT_FLIGHT_RINGS; k++) {
        uint64_t head = __atomic_load_n(&h->ring[k].head, __ATOMIC_ACQUIRE);
        if (head && bt__flight_read(h, k, head - 1, &e) == 0) {
            int64_t t = e.end_ns > e.start_ns ? e.end_ns : e.start_ns;
            last = t > last ? t : last;
        }
    }
    return last;
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

static int by_call(const void *a, const void *b)
{
    const struct bt__flight_entry *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int same_shape(const struct bt__flight_entry *a, const struct bt__flight_entry *b)
{
    return a->op == b->op && a->count == b->count && a->dtype == b->dtype && a->redop == b->redop &&
           a->root == b->root;
}

/* The local members m[0..n) of communicator g disagree on the shape of a call (e[]): one WARN
 * (the first few times), the same words as the failure analysis (launcher/trace.c). */
static void check_agreement(struct bt__run *r, struct bt__strag_comm *sc, const struct member *m,
                            int n, const struct bt__flight_ring *g, struct bt__flight_entry *e)
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
        sc->shape_warned = 1;
        fprintf(stderr, "baton: WARN: flight recorder: %.*s (node %d)\n", (int)strcspn(out, "\n"),
                out, r->spec.node_rank);
    }
    free(t);
}

/* Communicator sc's statistics of op: the world's are r->strag.op. */
static struct bt__strag_op *strag_op(struct bt__run *r, struct bt__strag_comm *sc, int op)
{
    return sc->id == 0 ? &r->strag.op[op] : &sc->op[op];
}

/* A call of communicator sc as its n local members saw it (e[], m[] their local indexes; gap[]
 * their gaps before it, straggler.h): who entered last and by how much of its own. Into the
 * node's statistics of sc, or, when sc is compared across nodes (sc->xs_on), into the record
 * the node publishes for node 0's job-wide look. how: ACC_ALL a call of a look that saw every
 * call since the last, ACC_GAP one of a look that skipped some (across nodes: not recorded, as
 * the other nodes' looks skip others), ACC_SAMPLE a call of the sample ring, with its
 * call-shape hash (across nodes only: recorded, not counted again). */
enum { ACC_ALL = 1, ACC_GAP, ACC_SAMPLE };
static void strag_account(struct bt__run *r, struct bt__strag_comm *sc, const struct member *m,
                          int n, const struct bt__flight_entry *e, const int64_t *gap, int how)
{
    struct bt__strag *s = &r->strag;
    int64_t first = 0, second = INT64_MIN, others = BT_STRAG_GAP_NONE;
    int last = -1, op = e[0].op;
    for (int i = 0; i < n; i++) {
        int64_t t = e[i].start_ns;
        if (last < 0 || t > first)
            second = last < 0 ? INT64_MIN : first, first = t, last = i;
        else if (t > second)
            second = t;
    }
    if (op >= BT_FL_NOPS || last < 0)
        return;
    for (int i = 0; i < n; i++)
        if (i != last)
            others = bt__strag_gap_max(others, gap[i]);
    if (sc->id == 0 && how != ACC_SAMPLE && m[last].i < BT_RUN_STRAG_RANKS)
        __atomic_fetch_add(&s->last_total[m[last].i], 1, __ATOMIC_RELAXED);
    if (sc->xs_on) {
        if (how != ACC_GAP)
            sc->xs[sc->xs_n++ % BT_RUN_XS_KEEP] =
                (struct bt__xs_rec){.seq = e[0].seq,
                                    .tmax = first - s->clock_off_ns,
                                    .tsecond = second == INT64_MIN ? INT64_MIN
                                                                   : second - s->clock_off_ns,
                                    .last = r->w[m[last].i].rank,
                                    .op = op,
                                    .count = e[0].count,
                                    .root = e[0].root,
                                    .srank = r->w[m[0].i].rank,
                                    .dtype = e[0].dtype,
                                    .redop = e[0].redop,
                                    .has_hash = how == ACC_SAMPLE,
                                    .hash = how == ACC_SAMPLE ? bt__flight_sample_hash(&e[0]) : 0,
                                    .gap_last = gap[last],
                                    .gap_other = others};
        return;
    }
    if (how == ACC_SAMPLE || n < 2)
        return;
    struct bt__strag_op *so = strag_op(r, sc, op);
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = m[last].i;
    so->lag_ms[k] = (float)((double)bt__strag_own_lag(first - second, gap[last], others) / 1e6);
    so->n++;
}

/* The straggler line of op of communicator sc into out (""/0 when none stands out): the world's
 * among the local ranks, or on node 0 of several nodes among all ranks of the job; a
 * sub-communicator's among its local members, or (sc->job, node 0) among all its members. */
static int strag_line(const struct bt__run *r, const struct bt__strag_comm *sc, int op, char *out,
                      size_t n, int info)
{
    int sub = sc->id != 0;
    const struct bt__strag_op *so = sub ? &sc->op[op] : &r->strag.op[op];
    int w = so->n < BT_RUN_STRAG_WINDOW ? (int)so->n : BT_RUN_STRAG_WINDOW;
    int job = sub ? sc->job : r->strag.xnode;
    int np = sub ? (job ? sc->size : sc->members) : job ? r->world_size : r->nproc;
    struct bt__strag_verdict v;
    out[0] = '\0';
    if (!bt__strag_judge(so->last, so->lag_ms, w, np, &v)) {
        if (info && v.count > 0) /* how near chance came: what a doubtful WARN is judged by */
            BT_INFO(LAUNCH,
                    "straggler look: %ss%s%s: none named; last most often: rank %d, %d of %d "
                    "(chance %.0f, p %.2g), median %.1f ms after the others",
                    bt__flight_op_name(op), sub ? " on communicator " : "", sub ? sc->name : "",
                    job ? v.who : r->w[v.who].rank, v.count, w, v.chance, v.p, v.median_ms);
        return 0;
    }
    int k = snprintf(out, n,
                     "rank %d arrived last in %d of the last %d %ss%s%s, median %.0f ms after "
                     "the others ",
                     job ? v.who : r->w[v.who].rank, v.count, w, bt__flight_op_name(op),
                     sub ? " on communicator " : "", sub ? sc->name : "", v.median_ms);
    if (k > 0 && (size_t)k < n && job)
        snprintf(out + k, n - (size_t)k, "(job-wide, %d nodes; chance would be %.0f)",
                 sub ? sc->nodes : r->spec.nnodes, v.chance);
    else if (k > 0 && (size_t)k < n && sub)
        snprintf(out + k, n - (size_t)k, "(node %d, %d members here; chance would be %.0f)",
                 r->spec.node_rank, np, v.chance);
    else if (k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, "(node %d; chance would be %.0f)", r->spec.node_rank,
                 v.chance);
    return 1;
}

/* The sample-ring entries of communicator id in h after call seen (flight.h's
 * BT_FLIGHT_SAMPLE) that started in this generation (since since_ns: a worker kept across an
 * in-place re-form still holds the last one's) into v (BT_FLIGHT_RING at most), by call
 * number; returns how many. */
static int samples_of(const struct bt__flight_hdr *h, uint32_t id, uint64_t seen, int64_t since_ns,
                      struct bt__flight_entry *v)
{
    uint64_t head = __atomic_load_n(&h->ring[BT_FLIGHT_RINGS].head, __ATOMIC_ACQUIRE);
    int n = 0;
    for (uint64_t i = head > BT_FLIGHT_RING ? head - BT_FLIGHT_RING : 0; i < head; i++)
        if (bt__flight_read(h, BT_FLIGHT_RINGS, i, &v[n]) == 0 && v[n].comm_id == id &&
            v[n].seq > seen && v[n].start_ns >= since_ns)
            n++;
    qsort(v, (size_t)n, sizeof(*v), by_call); /* a ring that wrapped while read */
    return n;
}

/* A WARN (once per communicator, within the generation's DISAGREE_WARN_MAX) that the
 * call-shape hashes of ranks ra and rb differ at sampled call e of sc: a call up to it had
 * another shape on one of them, though no look compared that call itself. agreed: the last
 * sampled call where they agreed (0: none seen). */
static void hash_warn(struct bt__run *r, struct bt__strag_comm *sc, int ra, int rb, uint64_t seq,
                      int op, uint64_t agreed, const char *where)
{
    char since[64] = "";
    if (sc->shape_warned || r->strag.disagreements >= DISAGREE_WARN_MAX)
        return;
    sc->shape_warned = 1;
    r->strag.disagreements++;
    if (agreed)
        snprintf(since, sizeof(since), " after #%" PRIu64 ", where they agreed", agreed);
    fprintf(
        stderr,
        "baton: WARN: flight recorder: ranks disagree on the shape of a call%s%s up to %s #%" PRIu64
        " (rank %d passed another op, count, dtype, reduction or root than rank %d to a call%s; "
        "their call-shape hashes differ) (%s)\n",
        sc->id ? " on communicator " : "", sc->id ? sc->name : "", bt__flight_op_name(op), seq, ra,
        rb, since, where);
}

/* Sampled call e[0].seq of sc as its n local members made it: their hashes must agree. */
static void check_hashes(struct bt__run *r, struct bt__strag_comm *sc, const struct member *m,
                         int n, const struct bt__flight_entry *e)
{
    int j = 1;
    while (j < n && bt__flight_sample_hash(&e[j]) == bt__flight_sample_hash(&e[0]))
        j++;
    if (j == n) {
        sc->hash_agreed = e[0].seq;
        return;
    }
    char where[32];
    snprintf(where, sizeof(where), "node %d", r->spec.node_rank);
    hash_warn(r, sc, r->w[m[j].i].rank, r->w[m[0].i].rank, e[0].seq, e[0].op, sc->hash_agreed,
              where);
}

/* The local members of sc (local index, ring) into m; returns how many (g: a descriptor). */
static int members_of(const struct bt__run *r, const struct bt__strag_comm *sc, struct member *m,
                      struct bt__flight_ring *g)
{
    int n = 0;
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        int k = h ? ring_of(h, sc->id, g) : -1;
        if (k >= 0)
            m[n++] = (struct member){i, k};
    }
    return n;
}

/* The sampled calls of communicator sc (flight.h's BT_FLIGHT_SAMPLE) that all its local members
 * made since the last look, whatever the call rate: their call-shape hashes compared, and when
 * sc is compared across nodes, into the node's records with the first member's hash. */
static void scan_samples(struct bt__run *r, struct bt__strag_comm *sc)
{
    struct member *m = calloc((size_t)r->nproc, sizeof(*m));
    struct bt__flight_entry *e = calloc((size_t)r->nproc, sizeof(*e)), **v = NULL;
    int *nv = calloc((size_t)r->nproc * 2, sizeof(int)), *at = nv ? nv + r->nproc : NULL, n = 0;
    int64_t *gap = calloc((size_t)r->nproc, sizeof(*gap));
    struct bt__flight_ring g;
    if (m && e && nv && gap && (n = members_of(r, sc, m, &g)) > 0)
        v = calloc((size_t)n, sizeof(*v));
    for (int j = 0; v && j < n; j++)
        if ((v[j] = malloc(sizeof(**v) * BT_FLIGHT_RING)))
            nv[j] = samples_of(rec(&r->w[m[j].i]), sc->id, sc->sample_seen, r->strag.gen_ns, v[j]);
    for (int a = 0; v && v[0] && a < nv[0]; a++) {
        int st = 0;
        e[0] = v[0][a];
        for (int j = 1; j < n && st == 0; j++) {
            while (v[j] && at[j] < nv[j] && v[j][at[j]].seq < e[0].seq)
                at[j]++;
            st = !v[j] || at[j] == nv[j] ? 1 : v[j][at[j]].seq == e[0].seq ? 0 : -1;
            if (st == 0)
                e[j] = v[j][at[j]];
        }
        if (st > 0)
            break; /* a member has not finished it yet: next look */
        if (st == 0 && n >= 2)
            check_hashes(r, sc, m, n, e);
        if (st == 0 && sc->xs_on && (sc->id != 0 || n == r->nproc)) {
            for (int j = 0; j < n; j++) { /* a library before version 4 wrote peers there */
                const struct bt__flight_hdr *h = rec(&r->w[m[j].i]);
                gap[j] = !h || h->version < BT_FLIGHT_VERSION_GAP ||
                                 e[j].gap_us == BT_FLIGHT_GAP_UNKNOWN
                             ? BT_STRAG_GAP_UNKNOWN
                             : (int64_t)e[j].gap_us * 1000;
            }
            strag_account(r, sc, m, n, e, gap, ACC_SAMPLE);
        }
        sc->sample_seen = e[0].seq;
    }
    for (int j = 0; v && j < n; j++)
        free(v[j]);
    free(v), free(m), free(e), free(nv), free(gap);
}

/* Communicator id among the ones compared (name: its ring's), added when new; NULL when full. */
static struct bt__strag_comm *comm_find_add(struct bt__strag *s, uint32_t id, const char *name)
{
    for (int c = 0; c < s->ncomm; c++)
        if (s->comm[c].id == id)
            return &s->comm[c];
    if (s->ncomm == BT_RUN_STRAG_COMMS)
        return NULL;
    struct bt__strag_comm *sc = &s->comm[s->ncomm++];
    memset(sc, 0, sizeof(*sc));
    sc->id = id;
    snprintf(sc->name, sizeof(sc->name), "%s", name);
    return sc;
}

/* Adds the communicators the local ranks' rings describe to the ones compared. */
static void find_comms(struct bt__run *r)
{
    for (int i = 0; i < r->nproc; i++) {
        const struct bt__flight_hdr *h = rec(&r->w[i]);
        for (int k = 0; h && k < BT_FLIGHT_RINGS - 1; k++) {
            struct bt__flight_ring g;
            if (bt__flight_ring_read(h, k, &g) == 0 && g.name[0])
                comm_find_add(&r->strag, g.comm_id, g.name);
        }
    }
}

/* The calls of communicator sc that its local members finished since the last look (the
 * most recent batch of them): their shapes compared, and who entered last. A communicator
 * with members on other nodes is compared across nodes (sc->xs_on) when the clocks were
 * measured: the world's calls when all local ranks are in it, a sub-communicator's always. */
static void scan_comm(struct bt__run *r, struct bt__strag_comm *sc, uint64_t batch)
{
    struct member *m = calloc((size_t)r->nproc, sizeof(*m));
    struct bt__flight_entry *buf = calloc((size_t)r->nproc * 2, sizeof(*buf)), *e = buf,
                            *pe = buf ? buf + r->nproc : NULL, *t;
    uint64_t prev = 0; /* the call pe holds for every member (0: none) */
    int64_t *gap = calloc((size_t)r->nproc, sizeof(*gap));
    struct bt__flight_ring g;
    int n = m && e && gap ? members_of(r, sc, m, &g) : 0;
    uint64_t upto = UINT64_MAX;
    for (int j = 0; j < n; j++) {
        uint64_t u = done_upto(rec(&r->w[m[j].i]), m[j].k, sc->id);
        upto = u < upto ? u : upto;
    }
    if (n > 0) {
        sc->members = n, sc->size = g.size;
        sc->xs_on = r->strag.xnode && n < g.size;
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
                check_agreement(r, sc, m, n, &g, e);
            for (int j = 0; j < n; j++) /* the previous call (this loop's last, or read) */
                gap[j] = q > 1 && (prev == q - 1 ||
                                   entry_of(rec(&r->w[m[j].i]), m[j].k, sc->id, q - 1, &pe[j]) == 0)
                             ? e[j].start_ns - pe[j].end_ns
                             : BT_STRAG_GAP_UNKNOWN;
            if (sc->id != 0 || n == r->nproc) /* a batch with a gap: across nodes only the
                                                 samples go to the records */
                strag_account(r, sc, m, n, e, gap, from == sc->seen + 1 ? ACC_ALL : ACC_GAP);
            t = pe, pe = e, e = t, prev = q;
        }
        sc->seen = upto;
    }
    free(m), free(buf), free(gap);
}

/* ---- job-wide stragglers and call shapes (several nodes) ----
 *
 * For each communicator with members on other nodes (the world, and a sub-communicator that
 * spans nodes), each node's launcher keeps, for the last BT_RUN_XS_KEEP calls it saw finished
 * by all its members of it, a record {call number, its members' latest entry time and the one
 * before it (shifted to node 0's clock), who entered latest, the call's shape as its first
 * local member passed it, for a sampled call that member's call-shape hash, and the gap before
 * the call (straggler.h) of the one who entered latest and the longest of the others'}: every
 * call of a look that saw all calls since the last, and every call numbered a multiple of
 * BT_FLIGHT_SAMPLE from the ranks' sample rings (flight.h), so that the nodes hold the same
 * calls at any call rate. Every XS_PERIOD (BATON_STRAGGLER_SECS / 2, 1 to 5 s) nodes other
 * than 0 publish theirs (through the watcher thread's connection: bt__run_flight_watch) as
 * l/<g>/xs/<node>: version, the number of sections, then per communicator a section {id, size,
 * its members on the node, records, name} and its XS_REC_BYTES records, little-endian: the
 * latest XS_PUB_WORLD records of the world and XS_PUB_SUB of each other (until 2026-12-02 a
 * node thinned all it kept to calls numbered a multiple of 128, 256, ..., which left a job
 * of 50 calls a second a few compared calls a second once it had made 256). Node 0 reads them with
 * its own and, for each communicator whose sections count all its members over at least two nodes,
 * and each call all those nodes hold, takes the latest entry over the nodes and the one before it
 * over all members, into the same statistics and WARN as one node's, and compares the nodes' shapes
 * of it and their hashes. The clocks: at the start of each generation every node measures its
 * offset to node 0's through the store (three round trips, the shortest kept; good to half of it:
 * through etcd, milliseconds), as the timeline does at the end. */

#define XS_VERSION 4
#define XS_REC_BYTES 80
#define XS_SEC_BYTES (16 + BT_FLIGHT_NAME)
#define XS_PUB_WORLD 256 /* world records published at most (thinned by call number beyond) */
#define XS_PUB_SUB 128   /* records of each other communicator */
#define XS_BUF_MAX                                                                                 \
    (8 + BT_RUN_STRAG_COMMS * XS_SEC_BYTES +                                                       \
     (XS_PUB_WORLD + (BT_RUN_STRAG_COMMS - 1) * XS_PUB_SUB) * XS_REC_BYTES)

/* What node k > 0 publishes next: prepared by the main thread, sent by the watcher thread on
 * its own connection (bt__run_flight_watch), so that a store that stops answering never holds
 * up the supervision loop. */
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t pub_buf[XS_BUF_MAX];
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

/* sc's records sorted by call number, each call once (the sample's, with its hash, when a
 * look saw the call too), into x; returns how many. */
static int xs_sorted(const struct bt__strag_comm *sc, struct bt__xs_rec *x)
{
    int n = (int)(sc->xs_n < BT_RUN_XS_KEEP ? sc->xs_n : BT_RUN_XS_KEEP), k = 0;
    memcpy(x, sc->xs, sizeof(*x) * (size_t)n);
    qsort(x, (size_t)n, sizeof(*x), by_seq);
    for (int i = 0; i < n; i++)
        if (!k || x[i].seq != x[k - 1].seq)
            x[k++] = x[i];
        else if (x[i].has_hash)
            x[k - 1] = x[i];
    return k;
}

/* The latest max of x[0..n) (sorted) moved to its front; returns how many. The nodes' calls
 * are in step (each is a collective of them all), so their latest records overlap; calls a
 * look did not see all of are recorded only when sampled (every BT_FLIGHT_SAMPLE-th), which
 * every node records whatever the call rate. */
static int xs_latest(struct bt__xs_rec *x, int n, int max)
{
    if (n <= max)
        return n;
    memmove(x, x + (n - max), sizeof(*x) * (size_t)max);
    return max;
}

static uint8_t *put_rec(uint8_t *p, const struct bt__xs_rec *x)
{
    bt__put_le64(p, x->seq);
    bt__put_le64(p + 8, (uint64_t)x->tmax);
    bt__put_le64(p + 16, (uint64_t)x->tsecond);
    bt__put_le32(p + 24, (uint32_t)x->last);
    bt__put_le32(p + 28, (uint32_t)x->op);
    bt__put_le64(p + 32, x->count);
    bt__put_le32(p + 40, (uint32_t)x->root);
    bt__put_le32(p + 44, (uint32_t)x->srank);
    p[48] = x->dtype, p[49] = x->redop, p[50] = x->has_hash;
    memset(p + 51, 0, 5);
    bt__put_le64(p + 56, x->hash);
    bt__put_le64(p + 64, (uint64_t)x->gap_last);
    bt__put_le64(p + 72, (uint64_t)x->gap_other);
    return p + XS_REC_BYTES;
}

static struct bt__xs_rec get_rec(const uint8_t *q)
{
    return (struct bt__xs_rec){.seq = bt__le64(q),
                               .tmax = (int64_t)bt__le64(q + 8),
                               .tsecond = (int64_t)bt__le64(q + 16),
                               .last = (int32_t)bt__le32(q + 24),
                               .op = (int32_t)bt__le32(q + 28),
                               .count = bt__le64(q + 32),
                               .root = (int32_t)bt__le32(q + 40),
                               .srank = (int32_t)bt__le32(q + 44),
                               .dtype = q[48],
                               .redop = q[49],
                               .has_hash = q[50] != 0,
                               .hash = bt__le64(q + 56),
                               .gap_last = (int64_t)bt__le64(q + 64),
                               .gap_other = (int64_t)bt__le64(q + 72)};
}

/* This node's records of every communicator compared across nodes, in the published format,
 * into buf (XS_BUF_MAX bytes); returns the length. */
static size_t xs_serialize(const struct bt__run *r, uint8_t *buf)
{
    static struct bt__xs_rec x[BT_RUN_XS_KEEP]; /* the main thread's only */
    uint8_t *p = buf + 8;
    uint32_t nsec = 0;
    for (int c = 0; c < r->strag.ncomm; c++) {
        const struct bt__strag_comm *sc = &r->strag.comm[c];
        if (!sc->xs_on || !sc->xs_n)
            continue;
        int n = xs_latest(x, xs_sorted(sc, x), sc->id ? XS_PUB_SUB : XS_PUB_WORLD);
        bt__put_le32(p, sc->id);
        bt__put_le32(p + 4, (uint32_t)sc->size);
        bt__put_le32(p + 8, (uint32_t)sc->members);
        bt__put_le32(p + 12, (uint32_t)n);
        memcpy(p + 16, sc->name, BT_FLIGHT_NAME);
        p += XS_SEC_BYTES;
        for (int i = 0; i < n; i++)
            p = put_rec(p, &x[i]);
        nsec++;
    }
    bt__put_le32(buf, XS_VERSION);
    bt__put_le32(buf + 4, nsec);
    return (size_t)(p - buf);
}

/* Node k > 0: its records, for the watcher to publish. */
static void xs_publish(struct bt__run *r)
{
    pthread_mutex_lock(&pub_mu);
    pub_len = xs_serialize(r, pub_buf);
    snprintf(pub_key, sizeof(pub_key), "l/%d/xs/%d", r->restart, r->spec.node_rank);
    pthread_mutex_unlock(&pub_mu);
}

void bt__run_flight_watch(struct bt__run *r, struct bt__store *st)
{
    static uint8_t buf[XS_BUF_MAX]; /* the watcher thread's only */
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

/* One node's records of one communicator, as published. */
struct xs_sec {
    uint32_t id;
    int size, nlocal, n; /* the communicator's size, its members on the node, records */
    char name[BT_FLIGHT_NAME];
    struct bt__xs_rec *x; /* n, by call number (malloc'd) */
};

/* The sections of one node's published records into sec (max at most); returns how many, or
 * 0 when the value is not whole. */
static int xs_parse(const uint8_t *p, size_t len, struct xs_sec *sec, int max)
{
    if (len < 8 || bt__le32(p) != XS_VERSION || bt__le32(p + 4) > (uint32_t)max)
        return 0;
    int nsec = (int)bt__le32(p + 4), k = 0;
    size_t at = 8;
    for (; k < nsec && at + XS_SEC_BYTES <= len; k++) {
        struct xs_sec *s = &sec[k];
        const uint8_t *q = p + at;
        uint32_t n = bt__le32(q + 12);
        if (n > XS_PUB_WORLD || at + XS_SEC_BYTES + (size_t)n * XS_REC_BYTES > len ||
            !(s->x = calloc(n + 1, sizeof(*s->x))))
            break;
        s->id = bt__le32(q), s->size = (int)bt__le32(q + 4), s->nlocal = (int)bt__le32(q + 8);
        s->n = (int)n;
        memcpy(s->name, q + 16, BT_FLIGHT_NAME);
        s->name[BT_FLIGHT_NAME - 1] = '\0';
        at += XS_SEC_BYTES;
        for (uint32_t i = 0; i < n; i++, at += XS_REC_BYTES)
            s->x[i] = get_rec(p + at);
        qsort(s->x, n, sizeof(*s->x), by_seq); /* as published; xs_find needs it */
    }
    if (k == nsec)
        return k;
    for (int i = 0; i < k; i++)
        free(sec[i].x);
    return 0;
}

int bt__run_flight_xs_check(const uint8_t *p, size_t len)
{
    struct xs_sec sec[BT_RUN_STRAG_COMMS];
    int n = xs_parse(p, len, sec, BT_RUN_STRAG_COMMS), bad = 0;
    for (int i = 0; i < n; i++) {
        bad |= sec[i].n < 0 || sec[i].n > XS_PUB_WORLD || !memchr(sec[i].name, 0, BT_FLIGHT_NAME);
        for (int j = 1; j < sec[i].n; j++)
            bad |= sec[i].x[j - 1].seq > sec[i].x[j].seq; /* xs_find needs them sorted */
        free(sec[i].x);
    }
    return bad ? -1 : n;
}

/* Node k's sections from the store into sec; returns how many. */
static int xs_fetch(struct bt__run *r, int node, struct xs_sec *sec, int max)
{
    char key[64];
    void *v = NULL;
    size_t len = 0;
    snprintf(key, sizeof(key), "l/%d/xs/%d", r->restart, node);
    if (bt__store_get(r->st, key, &v, &len, 0) != BT_OK)
        return 0;
    int n = xs_parse(v, len, sec, max);
    free(v);
    return n;
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

/* A call of sc as nh nodes recorded it (o[]): into the job-wide statistics. */
static void xs_account(struct bt__run *r, struct bt__strag_comm *sc, const struct bt__xs_rec **o,
                       int nh)
{
    int64_t first = o[0]->tmax, second = o[0]->tsecond, others = BT_STRAG_GAP_NONE;
    int last = o[0]->last, at = 0;
    for (int k = 1; k < nh; k++) {
        if (o[k]->tmax > first) {
            second = first > o[k]->tsecond ? first : o[k]->tsecond;
            first = o[k]->tmax, last = o[k]->last, at = k;
        } else if (o[k]->tmax > second)
            second = o[k]->tmax;
    }
    if (o[0]->op < 0 || o[0]->op >= BT_FL_NOPS || second == INT64_MIN)
        return;
    for (int k = 0; k < nh; k++) /* the longest gap of all members but the last */
        others = bt__strag_gap_max(others,
                                   k == at ? o[k]->gap_other
                                           : bt__strag_gap_max(o[k]->gap_last, o[k]->gap_other));
    struct bt__strag_op *so = strag_op(r, sc, o[0]->op);
    int k = so->n % BT_RUN_STRAG_WINDOW;
    so->last[k] = last;
    so->lag_ms[k] = (float)((double)bt__strag_own_lag(first - second, o[at]->gap_last, others) /
                            1e6);
    so->n++;
}

/* A call of sc as nh nodes recorded it (o[]): a shape that differs is one WARN (the first
 * DISAGREE_WARN_MAX of the generation), in the failure analysis' words, each node speaking for
 * its first local member (differences within a node are the node's own look's:
 * check_agreement). */
static void xs_check_shape(struct bt__run *r, struct bt__strag_comm *sc,
                           const struct bt__xs_rec **o, int nh)
{
    const struct bt__xs_rec *a = o[0];
    int same = 1;
    for (int k = 1; k < nh && same; k++)
        same = o[k]->op == a->op && o[k]->count == a->count && o[k]->dtype == a->dtype &&
               o[k]->redop == a->redop && o[k]->root == a->root;
    if (same || r->strag.disagreements >= DISAGREE_WARN_MAX)
        return;
    struct bt__trace_rank *t = calloc((size_t)nh, sizeof(*t));
    struct bt__flight_entry *e = calloc((size_t)nh, sizeof(*e));
    char out[512];
    for (int k = 0; t && e && k < nh; k++) {
        e[k] = (struct bt__flight_entry){.seq = o[k]->seq,
                                         .count = o[k]->count,
                                         .comm_id = sc->id,
                                         .root = o[k]->root,
                                         .peers = sc->size,
                                         .op = (uint8_t)o[k]->op,
                                         .dtype = o[k]->dtype,
                                         .redop = o[k]->redop,
                                         .state = BT_FL_DONE};
        t[k] = (struct bt__trace_rank){
            .rank = o[k]->srank, .size = r->world_size, .ncomm = 1, .n = 1, .e = &e[k]};
        t[k].comm[0] = (struct bt__trace_comm){.id = sc->id, .size = sc->size};
        snprintf(t[k].comm[0].name, sizeof(t[k].comm[0].name), "%s", sc->name);
    }
    if (t && e && bt__trace_analyze(t, nh, bt__run_wall_ns(), out, sizeof(out)) > 0) {
        r->strag.disagreements++;
        sc->shape_warned = 1;
        fprintf(stderr, "baton: WARN: flight recorder: %.*s (across %d nodes)\n",
                (int)strcspn(out, "\n"), out, nh);
    }
    free(t), free(e);
}

/* A sampled call of sc as nh nodes recorded it (o[]): their first members' hashes must agree. */
static void xs_check_hash(struct bt__run *r, struct bt__strag_comm *sc, const struct bt__xs_rec **o,
                          int nh)
{
    int k = 0;
    while (k < nh && o[k]->has_hash)
        k++;
    if (k < nh)
        return;
    for (k = 1; k < nh && o[k]->hash == o[0]->hash;)
        k++;
    if (k == nh) {
        sc->xhash_agreed = o[0]->seq;
        return;
    }
    char where[32];
    snprintf(where, sizeof(where), "across %d nodes", nh);
    hash_warn(r, sc, o[k]->srank, o[0]->srank, o[0]->seq, o[0]->op, sc->xhash_agreed, where);
}

/* Node 0: the calls of communicator id that every node holding its members now holds, since
 * the last look (sec[0..ns): all nodes' sections); returns how many were compared, -1 when the
 * communicator is not compared across nodes (yet). */
static int xs_merge_comm(struct bt__run *r, const struct xs_sec *sec, int ns, uint32_t id)
{
    const struct xs_sec **h = calloc((size_t)ns, sizeof(*h));
    const struct bt__xs_rec **o = calloc((size_t)ns, sizeof(*o));
    struct bt__strag_comm *sc = NULL;
    int nh = 0, members = 0, matched = -1;
    for (int i = 0; h && o && i < ns; i++)
        if (sec[i].id == id)
            h[nh++] = &sec[i], members += sec[i].nlocal;
    if (nh >= 2 && members == h[0]->size && (sc = comm_find_add(&r->strag, id, h[0]->name))) {
        uint64_t upto = UINT64_MAX;
        for (int k = 0; k < nh; k++)
            upto = h[k]->n == 0                      ? 0
                   : h[k]->x[h[k]->n - 1].seq < upto ? h[k]->x[h[k]->n - 1].seq
                                                     : upto;
        sc->job = id != 0, sc->nodes = nh, sc->size = h[0]->size, matched = 0;
        for (int i = 0; i < h[0]->n; i++) {
            const struct bt__xs_rec *a = &h[0]->x[i];
            int all = a->seq > sc->xseen && a->seq <= upto;
            o[0] = a;
            for (int k = 1; k < nh && all; k++)
                all = (o[k] = xs_find(h[k]->x, h[k]->n, a->seq)) != NULL;
            if (all) {
                xs_check_shape(r, sc, o, nh);
                xs_check_hash(r, sc, o, nh);
                xs_account(r, sc, o, nh), matched++;
            }
        }
        sc->xseen = upto > sc->xseen ? upto : sc->xseen;
    }
    free(h), free(o);
    return matched;
}

/* Node 0: its own records and every other node's, compared communicator by communicator. */
static void xs_merge(struct bt__run *r)
{
    int max = BT_RUN_STRAG_COMMS, cap = r->spec.nnodes * max, ns = 0;
    struct xs_sec *sec = calloc((size_t)cap, sizeof(*sec));
    uint8_t *own = malloc(XS_BUF_MAX);
    if (sec && own)
        ns = xs_parse(own, xs_serialize(r, own), sec, max);
    for (int k = 1; sec && k < r->spec.nnodes; k++)
        ns += xs_fetch(r, k, sec + ns, max);
    for (int i = 0; i < ns; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = sec[j].id == sec[i].id;
        int n = dup ? -1 : xs_merge_comm(r, sec, ns, sec[i].id);
        if (n >= 0 && sec[i].id == 0)
            BT_INFO(LAUNCH, "job-wide straggler look: %d world call(s) compared across %d nodes", n,
                    r->spec.nnodes);
        else if (n >= 0)
            BT_INFO(LAUNCH,
                    "job-wide straggler look: %d call(s) of communicator %s compared across "
                    "nodes",
                    n, sec[i].name);
    }
    for (int i = 0; i < ns; i++)
        free(sec[i].x);
    free(sec), free(own);
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

/* The straggler lines of the world's ops, then of each sub-communicator's, after prefix; info:
 * an INFO line for each op with none named (the periodic look's). */
static void strag_lines(const struct bt__run *r, const char *prefix, int info)
{
    char line[512];
    for (int c = 0; c < r->strag.ncomm; c++)
        for (int op = 0; op < BT_FL_NOPS; op++)
            if (strag_line(r, &r->strag.comm[c], op, line, sizeof(line), info))
                fprintf(stderr, "%s: %s\n", prefix, line);
}

static void scan(struct bt__run *r, uint64_t batch, int force)
{
    struct bt__strag *s = &r->strag;
    find_comms(r);
    for (int c = 0; c < s->ncomm; c++)
        scan_comm(r, &s->comm[c], batch);
    for (int c = 0; c < s->ncomm; c++)
        scan_samples(r, &s->comm[c]);
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
    strag_lines(r, "baton: WARN: straggler", 1);
}

void bt__run_flight_scan(struct bt__run *r)
{
    scan(r, STRAG_BATCH_MAX, 0);
}

void bt__run_flight_report(struct bt__run *r)
{
    scan(r, BT_FLIGHT_RING, 1); /* the last look: all the rings still hold */
    strag_lines(r, "baton: straggler", 0);
}

void bt__run_flight_reset(struct bt__run *r)
{
    uint64_t keep[BT_RUN_STRAG_RANKS]; /* /metrics counts over the whole job */
    memcpy(keep, r->strag.last_total, sizeof(keep));
    memset(&r->strag, 0, sizeof(r->strag));
    memcpy(r->strag.last_total, keep, sizeof(keep));
    r->strag.gen_ns = bt__run_wall_ns();
    for (int i = 0; i < r->nchild; i++)
        r->w[i].stalls_seen = 0;
    xs_start(r);
}
