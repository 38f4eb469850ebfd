/* flight.c: the flight recorder's writer side and the helpers both sides use (flight.h).
 *
 * bt__flight_begin fills the next ring entry as RUNNING with the call's shape and start time;
 * bt__flight_end sets its end time and state and adds the call to the per-op counters and the
 * latency histogram. Both are a clock read and a few stores (no lock, no system call), cheap
 * enough to stay on: bench/flight_overhead.sh measures them on allreduce.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "collectives/backend/backend.h"
#include "collectives/comm.h"
#include "collectives/flight.h"
#include "common/log.h"

static const char *const op_names[BT_FL_NOPS] = {
    "allreduce", "broadcast", "allgather", "reduce_scatter", "reduce", "barrier", "other",
};

const char *bt__flight_op_name(int op)
{
    return op >= 0 && op < BT_FL_NOPS ? op_names[op] : "?";
}

int bt__flight_op_from_name(const char *name)
{
    for (int i = 0; i < BT_FL_NOPS; i++)
        if (!strcmp(name, op_names[i]))
            return i;
    return -1;
}

double bt__flight_bucket_s(int i)
{
    return 10e-6 * (double)(1u << i);
}

int bt__flight_read(const struct bt__flight_hdr *h, int k, uint64_t i, struct bt__flight_entry *out)
{
    const struct bt__flight_entry *e = bt__flight_entries(h, k) + (i & (BT_FLIGHT_RING - 1));
    uint64_t v1 = __atomic_load_n(&e->ver, __ATOMIC_ACQUIRE);
    if (v1 & 1)
        return -1;
    memcpy(out, (const void *)e, sizeof(*out));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&e->ver, __ATOMIC_RELAXED) == v1 && out->state != BT_FL_EMPTY ? 0 : -1;
}

int bt__flight_ring_read(const struct bt__flight_hdr *h, int k, struct bt__flight_ring *out)
{
    const struct bt__flight_ring *g = &h->ring[k];
    uint64_t v1 = __atomic_load_n(&g->ver, __ATOMIC_ACQUIRE);
    if (v1 & 1)
        return -1;
    memcpy(out, (const void *)g, sizeof(*out));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    out->name[BT_FLIGHT_NAME - 1] = '\0';
    out->head = __atomic_load_n(&g->head, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&g->ver, __ATOMIC_RELAXED) == v1 ? 0 : -1;
}

static int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The recorder's clock: CLOCK_REALTIME in ns, read through the TSC where it is invariant
 * (constant_tsc and nonstop_tsc in /proc/cpuinfo), since clock_gettime costs ~90 ns in a VM
 * and two of them per call were most of the recorder's cost. Each thread anchors the TSC to
 * clock_gettime (ns per tick first from a 1 ms spin, then from the span since its first
 * anchor, which grows) and re-anchors every ~100 ms, so a rank's times stay within a few
 * microseconds of CLOCK_REALTIME and comparable with the other ranks' (and never go back
 * within a thread). Elsewhere:
 * clock_gettime. */
#if defined(__x86_64__)
#include <x86intrin.h>
#define RECAL_NS 100000000.0 /* re-anchor after this long */
static int tsc_ok = -1;      /* -1: not looked yet */
static __thread struct {
    int64_t base_ns, first_ns, last;
    uint64_t base_tsc, first_tsc, next_tsc;
    double ns_per_tick;
} tc;

static int tsc_usable(void)
{
    char line[4096];
    int ok = 0;
    FILE *f = fopen("/proc/cpuinfo", "re");
    while (f && !ok && fgets(line, sizeof(line), f))
        ok = !strncmp(line, "flags", 5) && strstr(line, " constant_tsc") &&
             strstr(line, " nonstop_tsc");
    if (f)
        fclose(f);
    return ok;
}

static void anchor(uint64_t c)
{
    int64_t ns = clock_ns();
    c = __rdtsc();
    if (!tc.first_tsc) { /* a first rate from a 1 ms spin */
        tc.first_ns = ns, tc.first_tsc = c;
        int64_t end;
        uint64_t c2;
        do
            end = clock_ns(), c2 = __rdtsc();
        while (end - ns < 1000000);
        tc.ns_per_tick = (double)(end - ns) / (double)(c2 - c);
        ns = end, c = c2;
    } else if (c > tc.first_tsc)
        tc.ns_per_tick = (double)(ns - tc.first_ns) / (double)(c - tc.first_tsc);
    tc.base_ns = ns, tc.base_tsc = c;
    tc.next_tsc = c + (uint64_t)(RECAL_NS / tc.ns_per_tick);
}

static int64_t wall_ns(void)
{
    int ok = __atomic_load_n(&tsc_ok, __ATOMIC_RELAXED);
    if (ok < 0)
        __atomic_store_n(&tsc_ok, ok = tsc_usable(), __ATOMIC_RELAXED);
    if (!ok)
        return clock_ns();
    uint64_t c = __rdtsc();
    if (c >= tc.next_tsc || c < tc.base_tsc)
        anchor(c), c = __rdtsc();
    int64_t t = tc.base_ns + (int64_t)((double)(c - tc.base_tsc) * tc.ns_per_tick);
    tc.last = t > tc.last ? t : tc.last; /* never back, also across a re-anchor */
    return tc.last;
}
#else
static int64_t wall_ns(void)
{
    return clock_ns();
}
#endif

/* Writes ring k's descriptor: communicator id, size, rank, name. */
static void describe(struct bt__flight_hdr *h, int k, uint32_t id, int size, int rank,
                     const char *name)
{
    struct bt__flight_ring *g = &h->ring[k];
    uint64_t v = g->ver + 1;
    __atomic_store_n(&g->ver, v, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    g->comm_id = id, g->size = size, g->rank = rank;
    snprintf(g->name, sizeof(g->name), "%.*s", BT_FLIGHT_NAME - 1, name);
    __atomic_store_n(&g->ver, v + 1, __ATOMIC_RELEASE);
}

static void init_hdr(struct bt__flight_hdr *h, int rank, int size)
{
    h->version = BT_FLIGHT_VERSION;
    h->entry_size = sizeof(struct bt__flight_entry);
    h->nentries = BT_FLIGHT_RING;
    h->nrings = BT_FLIGHT_RINGS;
    describe(h, BT_FLIGHT_RINGS - 1, UINT32_MAX, 0, -1, "(shared)");
    h->ring[BT_FLIGHT_RINGS - 1].used = 1;
    h->rank = rank;
    h->size = size;
    h->pid = (int)getpid();
    __atomic_store_n(&h->magic, BT_FLIGHT_MAGIC, __ATOMIC_RELEASE);
}

/* BATON_FLIGHT_FD: a memfd of BT_FLIGHT_BYTES the launcher made; NULL when unset or unusable
 * (then the recorder is the process's own memory). */
static struct bt__flight_hdr *map_launcher_fd(void)
{
    const char *v = getenv("BATON_FLIGHT_FD");
    char *end;
    if (!v || !*v)
        return NULL;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > 1 << 20)
        return NULL;
    void *p = mmap(NULL, BT_FLIGHT_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    if (p == MAP_FAILED) {
        BT_INFO(INIT, "flight recorder: BATON_FLIGHT_FD=%s: %s; keeping it in process memory", v,
                strerror(errno));
        return NULL;
    }
    close((int)fd); /* the mapping keeps it; the fd is not for the program */
    return p;
}

struct bt__flight_hdr *bt__flight_attach(int rank, int size)
{
    static struct bt__flight_hdr *h;
    if (h)
        return h;
    struct bt__flight_hdr *p = map_launcher_fd();
    if (!p)
        p = calloc(1, BT_FLIGHT_BYTES);
    if (!p)
        return NULL;
    init_hdr(p, rank, size);
    h = p;
    return h;
}

/* A token: the ring in the top byte, the entry's index below. */
#define TOKEN(k, i) ((uint64_t)(k) << 56 | (i))
#define TOKEN_RING(t) (int)((t) >> 56)
#define TOKEN_INDEX(t) ((t) & ((1ull << 56) - 1))

static struct bt__flight_entry *entry_at(struct bt__flight_hdr *h, int k, uint64_t i)
{
    return (struct bt__flight_entry *)(h + 1) + (size_t)k * BT_FLIGHT_RING +
           (i & (BT_FLIGHT_RING - 1));
}

uint64_t bt__flight_begin(struct bt__flight_hdr *h, int k, uint32_t comm_id, uint64_t seq, int op,
                          int dtype, int redop, uint64_t count, int root, int peers)
{
    /* an atomic add: the shared ring has writers in several threads */
    uint64_t i = __atomic_fetch_add(&h->ring[k].head, 1, __ATOMIC_ACQ_REL);
    struct bt__flight_entry *e = entry_at(h, k, i);
    uint64_t v = e->ver + 1;
    __atomic_store_n(&e->ver, v, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    e->seq = seq;
    e->start_ns = wall_ns();
    e->end_ns = 0;
    e->count = count;
    e->comm_id = comm_id;
    e->root = root;
    e->peers = peers;
    e->op = (uint8_t)op;
    e->dtype = (uint8_t)dtype;
    e->redop = (uint8_t)redop;
    e->state = BT_FL_RUNNING;
    e->phase[0] = e->phase[1] = 0;
    __atomic_store_n(&e->ver, v + 1, __ATOMIC_RELEASE);
    return TOKEN(k, i);
}

/* A counter += v as an atomic load and store, not a locked add: calls of one communicator
 * run one at a time, so the counters are exact for it; two communicators finishing calls at
 * the same instant in two threads may lose one update (a counter, never the ring). */
static inline void bump(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static int bucket(int64_t ns)
{
    int b = 0;
    for (int64_t lim = 10000; b < BT_FLIGHT_NHIST - 1 && ns >= lim; lim *= 2)
        b++;
    return b;
}

/* The time from the end of the call before entry i of ring k (the same communicator's, the
 * entry before it in its own ring) to e's start, in us: BT_FLIGHT_GAP_UNKNOWN when that call is
 * not in the ring (the first, the shared ring's interleaved calls, one reused) or not done. */
static int32_t gap_before(const struct bt__flight_hdr *h, int k, uint64_t i,
                          const struct bt__flight_entry *e)
{
    struct bt__flight_entry p;
    if (i == 0 || bt__flight_read(h, k, i - 1, &p) != 0 || p.seq + 1 != e->seq ||
        p.comm_id != e->comm_id || p.end_ns == 0)
        return BT_FLIGHT_GAP_UNKNOWN;
    int64_t us = (e->start_ns - p.end_ns) / 1000;
    return us > INT32_MAX ? INT32_MAX : us <= INT32_MIN ? INT32_MIN + 1 : (int32_t)us;
}

/* A copy of the done call e (entry i of ring k) into the sample ring with the call-shape hash
 * and the rank's gap before it (flight.h's BT_FLIGHT_SAMPLE). */
static void sample(struct bt__flight_hdr *h, int k, uint64_t i, const struct bt__flight_entry *e,
                   uint64_t hash)
{
    int32_t gap = gap_before(h, k, i, e);
    uint64_t j = __atomic_fetch_add(&h->ring[BT_FLIGHT_RINGS].head, 1, __ATOMIC_ACQ_REL);
    struct bt__flight_entry *s = entry_at(h, BT_FLIGHT_RINGS, j);
    uint64_t v = s->ver + 1;
    __atomic_store_n(&s->ver, v, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy((char *)s + sizeof(s->ver), (const char *)e + sizeof(e->ver),
           sizeof(*s) - sizeof(s->ver));
    s->phase[0] = (uint32_t)hash, s->phase[1] = (uint32_t)(hash >> 32);
    s->gap_us = gap;
    __atomic_store_n(&s->ver, v + 1, __ATOMIC_RELEASE);
}

void bt__flight_end(struct bt__flight_hdr *h, uint64_t token, int rc, uint64_t bytes, uint64_t hash)
{
    int k = TOKEN_RING(token);
    uint64_t i = TOKEN_INDEX(token);
    struct bt__flight_entry *e = entry_at(h, k, i);
    int64_t end = wall_ns(), start = e->start_ns;
    int op = e->op < BT_FL_NOPS ? e->op : BT_FL_OTHER;
    if (__atomic_load_n(&h->ring[k].head, __ATOMIC_RELAXED) - i <= BT_FLIGHT_RING) {
        /* not yet reused by a later call */
        uint64_t v = e->ver + 1;
        __atomic_store_n(&e->ver, v, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        e->end_ns = end;
        e->state = rc == 0 ? BT_FL_DONE : BT_FL_FAILED;
        __atomic_store_n(&e->ver, v + 1, __ATOMIC_RELEASE);
        if (e->seq % BT_FLIGHT_SAMPLE == 0 && rc == 0)
            sample(h, k, i, e, hash);
    }
    int64_t lat = end - start;
    if (rc != 0)
        bump(&h->failed[op], 1);
    bump(&h->bytes[op], bytes);
    bump(&h->lat_ns[op], (uint64_t)(lat > 0 ? lat : 0));
    bump(&h->hist[op][bucket(lat)], 1);
    bump(&h->calls[op], 1);
}

/* ---- the hook at the collectives' one start/end point (progress.c) ---- */

static struct bt__flight_hdr *the_rec; /* NULL: no recorder (not under `baton run`) */
static int paused;                     /* bt_flight_pause */

BT_API int bt_flight_pause(int p)
{
    __atomic_store_n(&paused, p != 0, __ATOMIC_RELAXED);
    return BT_OK;
}

/* BATON_TEST_FLIGHT_LATE_END=R:MS (tests only): world rank R marks each of its world calls done
 * MS ms after the collective completed, as a rank woken late from its wait would be, so that it
 * enters the next call late by as much without any work of its own (the straggler looks must
 * not name it: launcher/straggler.h). Read once, when the recorder is attached. */
static int late_rank = -1, late_ms;

static void attach_once(const struct bt_comm *c)
{
    static int tried;
    if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE))
        return;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    const char *late = getenv("BATON_TEST_FLIGHT_LATE_END");
    if (!tried && late && (sscanf(late, "%d:%d", &late_rank, &late_ms) != 2 || late_ms < 0))
        late_rank = -1, late_ms = 0;
    if (!tried && getenv("BATON_FLIGHT_FD"))
        the_rec = bt__flight_attach(c->rank, c->size);
    __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&mu);
}

/* c's id in the recorder: 0 for a world, the top half of a child's id (never 0). */
static uint32_t comm_id(const struct bt_comm *c)
{
    uint32_t id = (uint32_t)(c->id >> 32);
    return c->id && !id ? 1 : id;
}

/* Claims a ring for c (c->flight_ring = ring + 1): the world ring 0 when free, else the first
 * free one of 1..RINGS-2, else the shared last one. */
static void claim(struct bt_comm *c)
{
    uint32_t id = comm_id(c);
    int k = BT_FLIGHT_RINGS - 1;
    for (int i = id ? 1 : 0; i < BT_FLIGHT_RINGS - 1; i++) {
        uint32_t free_ = 0;
        if (__atomic_compare_exchange_n(&the_rec->ring[i].used, &free_, 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            k = i;
            describe(the_rec, k, id, c->size, c->rank, c->name);
            break;
        }
    }
    c->flight_id = id;
    c->flight_ring = k + 1;
}

void bt__flight_comm_open(struct bt_comm *c)
{
    attach_once(c);
    if (the_rec && !c->flight_ring)
        claim(c);
}

void bt__flight_comm_close(struct bt_comm *c)
{
    int k = c->flight_ring - 1;
    if (the_rec && k >= 0 && k < BT_FLIGHT_RINGS - 1) /* the descriptor stays: dumps name it */
        __atomic_store_n(&the_rec->ring[k].used, 0, __ATOMIC_RELEASE);
    c->flight_ring = 0;
}

/* The call's shape is hashed also while the recorder is paused, so that members that pause at
 * different calls still agree (flight.h's bt__flight_hash). */
uint64_t bt__flight_call_begin(struct bt_comm *c, const char *name, const struct bt__call *a)
{
    if (!c->flight_ring) {
        attach_once(c);
        if (!the_rec)
            return UINT64_MAX;
        claim(c);
    }
    if (!the_rec)
        return UINT64_MAX;
    int op = name ? bt__flight_op_from_name(name) : -1;
    op = op < 0 ? BT_FL_OTHER : op;
    int other = op == BT_FL_OTHER || op == BT_FL_BARRIER; /* no count or dtype of their own */
    int redop = op == BT_FL_ALLREDUCE || op == BT_FL_REDUCE || op == BT_FL_REDUCE_SCATTER
                    ? (int)a->op
                    : 255;
    int root = op == BT_FL_BROADCAST || op == BT_FL_REDUCE ? a->root : -1;
    int dtype = other ? 255 : (int)a->dtype;
    uint64_t count = other ? 0 : a->count;
    c->flight_hash = bt__flight_hash(c->flight_hash, op, dtype, redop, count, root);
    if (__atomic_load_n(&paused, __ATOMIC_RELAXED))
        return UINT64_MAX;
    return bt__flight_begin(the_rec, c->flight_ring - 1, c->flight_id, c->coll_seq, op, dtype,
                            redop, count, root, c->size);
}

void bt__flight_call_end(const struct bt_comm *c, uint64_t token, int rc, const struct bt__call *a)
{
    if (token == UINT64_MAX || !the_rec)
        return;
    /* the op this thread wrote in _begin (the slot is reused only 1,024 calls later) */
    int op = entry_at(the_rec, TOKEN_RING(token), TOKEN_INDEX(token))->op;
    uint64_t n = op == BT_FL_OTHER || op == BT_FL_BARRIER ? 0 : a->count;
    if (op == BT_FL_ALLGATHER || op == BT_FL_REDUCE_SCATTER)
        n *= (uint64_t)c->size; /* the whole buffer: recv of allgather, send of reduce-scatter */
    if (late_ms > 0 && rc == 0 && c->flight_id == 0 && the_rec->rank == late_rank) {
        struct timespec ts = {late_ms / 1000, (long)(late_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    bt__flight_end(the_rec, token, rc, n * bt_dtype_size(a->dtype), c->flight_hash);
}

void bt__flight_phase(const struct bt_comm *c, int i, unsigned kind)
{
    uint64_t token = c->flight_token;
    if (token == UINT64_MAX || !the_rec || i < 0 || i > 1)
        return;
    struct bt__flight_entry *e = entry_at(the_rec, TOKEN_RING(token), TOKEN_INDEX(token));
    uint32_t p0 = __atomic_load_n(&e->phase[0], __ATOMIC_RELAXED);
    if (p0 && kind != BT_FL_PHASE_HIER && BT_FL_PHASE_KIND(p0) != kind) /* the outer's stay */
        return;
    int64_t d = (wall_ns() - e->start_ns) / BT_FL_PHASE_UNIT_NS;
    uint32_t max = (1u << BT_FL_PHASE_SHIFT) - 1;
    d = d < 1 ? 1 : d > (int64_t)max ? (int64_t)max : d; /* 0 means none */
    /* one aligned 4-byte store: a reader sees the old or the new boundary, never a mix */
    __atomic_store_n(&e->phase[i], kind << BT_FL_PHASE_SHIFT | (uint32_t)d, __ATOMIC_RELAXED);
}

void bt__flight_comm_stall(void)
{
    bt__flight_stall(the_rec);
}

void bt__flight_stall(struct bt__flight_hdr *h)
{
    if (h)
        __atomic_fetch_add(&h->stalls, 1, __ATOMIC_RELAXED);
}
