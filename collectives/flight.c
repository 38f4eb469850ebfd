/* flight.c: the flight recorder's writer side and the helpers both sides use (flight.h).
 *
 * bt__flight_begin fills the next ring entry as RUNNING with the call's shape and start time;
 * bt__flight_end sets its end time and state and adds the call to the per-op counters and the
 * latency histogram. Both are a clock read and a few stores (no lock, no system call), cheap
 * enough to stay on: bench/flight_overhead.sh measures them on allreduce.
 */
#include <errno.h>
#include <pthread.h>
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

int bt__flight_read(const struct bt__flight_hdr *h, uint64_t i, struct bt__flight_entry *out)
{
    const struct bt__flight_entry *e = (const struct bt__flight_entry *)(h + 1) +
                                       (i & (BT_FLIGHT_RING - 1));
    uint64_t v1 = __atomic_load_n(&e->ver, __ATOMIC_ACQUIRE);
    if (v1 & 1)
        return -1;
    memcpy(out, (const void *)e, sizeof(*out));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&e->ver, __ATOMIC_RELAXED) == v1 && out->state != BT_FL_EMPTY ? 0 : -1;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void init_hdr(struct bt__flight_hdr *h, int rank, int size)
{
    h->version = BT_FLIGHT_VERSION;
    h->entry_size = sizeof(struct bt__flight_entry);
    h->nentries = BT_FLIGHT_RING;
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

uint64_t bt__flight_begin(struct bt__flight_hdr *h, uint32_t comm_id, uint64_t seq, int op,
                          int dtype, int redop, uint64_t count, int root, int peers)
{
    uint64_t i = __atomic_fetch_add(&h->head, 1, __ATOMIC_ACQ_REL); /* threads of sub-comms */
    struct bt__flight_entry *e = (struct bt__flight_entry *)(h + 1) + (i & (BT_FLIGHT_RING - 1));
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
    __atomic_store_n(&e->ver, v + 1, __ATOMIC_RELEASE);
    return i;
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

void bt__flight_end(struct bt__flight_hdr *h, uint64_t token, int rc, uint64_t bytes)
{
    struct bt__flight_entry *e = (struct bt__flight_entry *)(h + 1) +
                                 (token & (BT_FLIGHT_RING - 1));
    int64_t end = wall_ns(), start = e->start_ns;
    int op = e->op < BT_FL_NOPS ? e->op : BT_FL_OTHER;
    if (h->head - token <= BT_FLIGHT_RING) { /* not yet reused by a later call */
        uint64_t v = e->ver + 1;
        __atomic_store_n(&e->ver, v, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        e->end_ns = end;
        e->state = rc == 0 ? BT_FL_DONE : BT_FL_FAILED;
        __atomic_store_n(&e->ver, v + 1, __ATOMIC_RELEASE);
    }
    int64_t lat = end - start;
    if (rc != 0)
        bump(&h->failed[op], 1);
    bump(&h->bytes[op], bytes);
    bump(&h->lat_ns[op], (uint64_t)(lat > 0 ? lat : 0));
    bump(&h->hist[op][bucket(lat)], 1);
    bump(&h->calls[op], 1);
}

/* ---- the hook at the collectives' one start/end point (coll.c) ---- */

static struct bt__flight_hdr *the_rec;  /* NULL: no recorder (not under `baton run`) */
static const struct bt_comm *the_world; /* the first communicator that called: comm 0 */

uint64_t bt__flight_call_begin(const struct bt_comm *c, const char *name, const struct bt__call *a)
{
    static int tried;
    if (!__atomic_load_n(&tried, __ATOMIC_ACQUIRE)) {
        static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&mu);
        if (!tried && getenv("BATON_FLIGHT_FD")) {
            the_world = c;
            the_rec = bt__flight_attach(c->rank, c->size);
        }
        __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&mu);
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
    return bt__flight_begin(the_rec, c == the_world ? 0 : 1, c->coll_seq, op,
                            other ? 255 : (int)a->dtype, redop, other ? 0 : a->count, root,
                            c->size);
}

void bt__flight_call_end(const struct bt_comm *c, uint64_t token, int rc, const struct bt__call *a)
{
    if (token == UINT64_MAX || !the_rec)
        return;
    /* the op this thread wrote in _begin (the slot is reused only 1,024 calls later) */
    int op = ((const struct bt__flight_entry *)(the_rec + 1))[token & (BT_FLIGHT_RING - 1)].op;
    uint64_t n = op == BT_FL_OTHER || op == BT_FL_BARRIER ? 0 : a->count;
    if (op == BT_FL_ALLGATHER || op == BT_FL_REDUCE_SCATTER)
        n *= (uint64_t)c->size; /* the whole buffer: recv of allgather, send of reduce-scatter */
    bt__flight_end(the_rec, token, rc, n * bt_dtype_size(a->dtype));
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
