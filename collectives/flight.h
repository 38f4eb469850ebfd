/* flight.h: the flight recorder, shared by libbaton (which writes it) and the launcher (which
 * reads it while the rank runs, is stopped, or is gone).
 *
 * Each rank has one recorder: a header with counters (collectives, bytes and a latency
 * histogram per op, for /metrics) and BT_FLIGHT_RINGS rings of BT_FLIGHT_RING calls each
 * (sequence number, communicator, op, dtype, reduction, count, root, peers, start and end
 * times, state). Each communicator records into a ring of its own: the world into ring 0, a
 * sub-communicator (bt_comm_split, bt_comm_dup, bt_comm_create_group) into the first free one
 * of rings 1..BT_FLIGHT_RINGS-2, claimed when the child is made and given back when it is
 * destroyed; the last ring is shared by the communicators that find none free. A ring's
 * descriptor names its communicator: its id (0 for the world; a child's is the id split.c
 * derives from the parent's prefix, the split's number and the color, or from the tag and
 * member list of create_group, so it is the same on every member), its size, this rank's rank
 * in it and its name with the members' world ranks. Every entry carries the id too (the shared
 * ring, and a ring's earlier owner). Under `baton run` the recorder lives in a memfd the
 * launcher made and handed over as BATON_FLIGHT_FD, mapped by both: the launcher reads a
 * rank's last calls without the rank's help (a SIGSTOPped or crashed rank cannot dump anything
 * itself). Without the variable it is plain memory of the process.
 *
 * Writers claim an entry with an atomic add on their ring's `head` (the shared ring has
 * several writers, which may run in several threads) and bump counters with plain atomic loads and
 * stores (exact for one communicator; two finishing at the same instant may lose an update);
 * readers copy an entry and check its `ver` before and after (a seqlock: odd while being written),
 * so a torn read is detected and skipped, never misread. Times are CLOCK_REALTIME ns, so ranks of
 * different nodes compare (as well as their clocks agree).
 */
#ifndef BT_COLLECTIVES_FLIGHT_H
#define BT_COLLECTIVES_FLIGHT_H

#include <stddef.h>
#include <stdint.h>

#define BT_FLIGHT_MAGIC 0x31544847494c4642ull /* "BFLIGHT1" */
#define BT_FLIGHT_VERSION 4     /* 4: a sample copy carries gap_us where an entry has peers */
#define BT_FLIGHT_VERSION_GAP 4 /* the first version whose sample copies carry gap_us */
#define BT_FLIGHT_RING 1024     /* calls kept per ring (a power of two) */
#define BT_FLIGHT_RINGS 8       /* rings per rank: the world, 6 sub-communicators, 1 shared */
#define BT_FLIGHT_NAME 96       /* bytes of a ring's communicator name */
#define BT_FLIGHT_SAMPLE                                                                           \
    64 /* calls numbered a multiple of this (of any communicator) are also copied, once done,      \
          to the sample ring BT_FLIGHT_RINGS (65,536 world calls back when only the world          \
          calls), with the communicator's call-shape hash in phase[]: the calls the launchers      \
          of a job compare across nodes, whatever the call rate */
#define BT_FLIGHT_GAP_UNKNOWN INT32_MIN /* gap_us of a sample whose previous call is gone */
#define BT_FLIGHT_NHIST 16              /* latency buckets: < 10 us * 2^i ..., the last unbounded */

/* Ops recorded, in this order (names: bt__flight_op_name). */
enum bt__flight_op {
    BT_FL_ALLREDUCE = 0,
    BT_FL_BROADCAST,
    BT_FL_ALLGATHER,
    BT_FL_REDUCE_SCATTER,
    BT_FL_REDUCE,
    BT_FL_BARRIER,
    BT_FL_OTHER, /* any other call of the communicator (send/recv, alltoall, split, ...) */
    BT_FL_NOPS
};

enum bt__flight_state { BT_FL_EMPTY = 0, BT_FL_RUNNING, BT_FL_DONE, BT_FL_FAILED };

struct bt__flight_entry { /* 64 bytes */
    uint64_t ver;         /* seqlock: odd while the writer changes the entry */
    uint64_t seq;         /* the call's number on its communicator (1, 2, ...) */
    int64_t start_ns;     /* CLOCK_REALTIME when the rank entered the call */
    int64_t end_ns;       /* when it returned; 0 while running */
    uint64_t count;       /* elements */
    uint32_t comm_id;     /* the communicator's id: 0 the world (flight.h's head) */
    int32_t root;         /* -1 when the op has none */
    union {
        int32_t peers;  /* ranks of the communicator */
        int32_t gap_us; /* in a sample-ring copy (BT_FLIGHT_SAMPLE): the time from the end of
                           the rank's previous call of the communicator to the start of this one,
                           in us (clamped; BT_FLIGHT_GAP_UNKNOWN when that call is not at hand):
                           the rank's own time between the calls, which the launchers' straggler
                           looks weigh its late arrival by */
    };
    uint8_t op, dtype, redop, state; /* bt__flight_op, bt_dtype, bt_op (255: none), state */
    uint32_t phase[2];               /* phase boundaries: BT_FL_PHASE_* in the top 2 bits, the
                                        time since start_ns in 100 ns below (0: none) */
};

/* Phases of a call (bt__flight_phase), the kind in the top bits of phase[]:
 * BT_FL_PHASE_HIER: the hierarchical allreduce (coll.c), phase[0] ends the intra-node reduce,
 * phase[1] the inter-node allreduce of the node leaders; the intra-node broadcast follows.
 * BT_FL_PHASE_RING: the ring allreduce (algo/ring.c), phase[0] ends the reduce-scatter of its
 * first segment, phase[1] that segment's allgather; the later segments (a buffer over
 * c->ring_seg_bytes, 8 MiB) and the division of avg follow.
 * BT_FL_PHASE_RABEN: Rabenseifner's allreduce (algo/rabenseifner.c), phase[0] ends the fold and
 * the reduce-scatter by recursive halving, phase[1] the allgather by recursive doubling; the
 * unfold follows.
 * The ring or Rabenseifner allreduce that the node leaders run inside a hierarchical allreduce
 * does not write over its phases (only BT_FL_PHASE_HIER replaces another kind). */
#define BT_FL_PHASE_HIER 1u
#define BT_FL_PHASE_RING 2u
#define BT_FL_PHASE_RABEN 3u
#define BT_FL_PHASE_SHIFT 30
#define BT_FL_PHASE_UNIT_NS 100
#define BT_FL_PHASE_KIND(v) ((v) >> BT_FL_PHASE_SHIFT)
#define BT_FL_PHASE_NS(v) ((int64_t)((v) & ((1u << BT_FL_PHASE_SHIFT) - 1)) * BT_FL_PHASE_UNIT_NS)

/* Which communicator a ring records. Written while ver is odd (a seqlock, as entries). */
struct bt__flight_ring {
    uint64_t head;             /* entries written so far */
    uint64_t ver;              /* odd while the descriptor is being (re)written */
    uint32_t comm_id;          /* the communicator's id (0: the world) */
    int32_t size, rank;        /* its size, this rank's rank in it */
    uint32_t used;             /* 1 while a live communicator owns it (the shared one: always) */
    char name[BT_FLIGHT_NAME]; /* "world", "c1a2b3c4 (world ranks 1, 3, 5)"; "" none yet */
};

struct bt__flight_hdr { /* followed by (BT_FLIGHT_RINGS + 1) x BT_FLIGHT_RING entries */
    uint64_t magic;
    uint32_t version, entry_size, nentries, nrings; /* nentries: per ring */
    int32_t rank, size, pid, pad1;
    struct bt__flight_ring ring[BT_FLIGHT_RINGS + 1]; /* + the sample ring */
    uint64_t calls[BT_FL_NOPS];                       /* completed calls per op */
    uint64_t bytes[BT_FL_NOPS];                       /* bytes of those calls (count * dtype) */
    uint64_t failed[BT_FL_NOPS];                      /* calls that returned an error */
    uint64_t hist[BT_FL_NOPS][BT_FLIGHT_NHIST];       /* latency histogram */
    uint64_t lat_ns[BT_FL_NOPS];                      /* sum of latencies */
    uint64_t stalls;                                  /* BATON_STALL_WARN warnings */
};

#define BT_FLIGHT_BYTES                                                                            \
    (sizeof(struct bt__flight_hdr) +                                                               \
     (size_t)(BT_FLIGHT_RINGS + 1) * BT_FLIGHT_RING * sizeof(struct bt__flight_entry))

/* The upper bound of histogram bucket i in seconds (10 us * 2^i); the last is +Inf. */
double bt__flight_bucket_s(int i);
const char *bt__flight_op_name(int op);
/* The op from its name ("allreduce"), or -1. */
int bt__flight_op_from_name(const char *name);

/* Copies entry i of ring k of h into *out if it is whole (not being written); returns 0, or
 * -1. */
int bt__flight_read(const struct bt__flight_hdr *h, int k, uint64_t i,
                    struct bt__flight_entry *out);
/* Copies ring k's descriptor (head, id, size, rank, name) into *out if whole; 0, or -1. */
int bt__flight_ring_read(const struct bt__flight_hdr *h, int k, struct bt__flight_ring *out);
/* The entries of ring k (BT_FLIGHT_RING of them). */
static inline const struct bt__flight_entry *bt__flight_entries(const struct bt__flight_hdr *h,
                                                                int k)
{
    return (const struct bt__flight_entry *)(h + 1) + (size_t)k * BT_FLIGHT_RING;
}

/* The call-shape hash: every rank folds the shape (op, dtype, reduction, count, root) of each
 * call of a communicator into a running 64-bit hash (bt_comm's flight_hash), also while the
 * recorder is paused, and the sample ring's copy of a call carries the hash of that call and
 * all before it (phase[0] its low half, phase[1] its high half). Two members whose hashes
 * differ at call S passed a different shape to some call up to S, even if no launcher looked
 * at that call. One multiply-xor round per field. */
static inline uint64_t bt__flight_hash(uint64_t h, int op, int dtype, int redop, uint64_t count,
                                       int root)
{
    uint64_t v[3] = {(uint64_t)op << 16 | (uint64_t)(dtype & 0xff) << 8 | (uint64_t)(redop & 0xff),
                     count, (uint64_t)(uint32_t)root};
    for (int i = 0; i < 3; i++)
        h = (h ^ v[i]) * 0x100000001b3ull, h ^= h >> 29;
    return h;
}
/* The hash a sample entry carries. */
static inline uint64_t bt__flight_sample_hash(const struct bt__flight_entry *e)
{
    return (uint64_t)e->phase[1] << 32 | e->phase[0];
}

/* ---- the writer (libbaton) ---- */
struct bt_comm;
/* Attaches the process's recorder: BATON_FLIGHT_FD's memfd, else memory of its own. Called by
 * the first communicator; returns the header (never NULL after success) or NULL. */
struct bt__flight_hdr *bt__flight_attach(int rank, int size);
/* Records the start of call #seq of communicator comm_id in ring k; returns a token for
 * _end. */
uint64_t bt__flight_begin(struct bt__flight_hdr *h, int k, uint32_t comm_id, uint64_t seq, int op,
                          int dtype, int redop, uint64_t count, int root, int peers);
/* Records its end with result rc (BT_OK or an error code); bytes for the counters; hash: the
 * communicator's call-shape hash up to this call, which a sampled call's copy carries. */
void bt__flight_end(struct bt__flight_hdr *h, uint64_t token, int rc, uint64_t bytes,
                    uint64_t hash);
/* Counts a stall warning (h may be NULL). */
void bt__flight_stall(struct bt__flight_hdr *h);

/* The hook at the collectives' one start/end point (progress.c execute): begin records call a
 * of c (its number is c->coll_seq) in c's ring and returns a token for end, which records its
 * result rc (name: the call's, "allreduce" ...; one flight.c does not know is recorded as
 * "other"). Under `baton run` (BATON_FLIGHT_FD set) the first communicator that calls
 * attaches the recorder. A communicator claims its ring at its first call, or before at
 * comm_open (split.c, for a child as it is made, so that a member that never calls it still
 * names it); comm_close gives it back (bt_finalize). Without the variable all of them do
 * nothing. comm_stall counts a stall warning of any communicator. */
struct bt__call;
uint64_t bt__flight_call_begin(struct bt_comm *c, const char *name, const struct bt__call *a);
void bt__flight_call_end(const struct bt_comm *c, uint64_t token, int rc, const struct bt__call *a);
void bt__flight_comm_open(struct bt_comm *c);
/* Ends phase i (0 or 1) of kind (BT_FL_PHASE_*) of c's running call (c->flight_token): one
 * clock read and a store; nothing without a recorder, nor when the call's phase[0] already
 * holds another kind (an algorithm nested in a hierarchical allreduce). */
void bt__flight_phase(const struct bt_comm *c, int i, unsigned kind);
void bt__flight_comm_close(struct bt_comm *c);
void bt__flight_comm_stall(void);

#endif
