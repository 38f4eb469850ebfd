/* comm.h: the communicator's insides, shared by the files of collectives/.
 *
 * A communicator is built from a bt__comm_cfg: bt_init() fills one from the launcher's env,
 * tests fill one per thread (ranks as threads over an in-process store). It owns a store
 * client, and the transports the layout of the job needs: shared memory between the ranks of
 * a node (transport/shm.c) and a TCP mesh between all ranks (transport/tcp.c) when there is
 * more than one node or BATON_TRANSPORT=tcp. coll.c runs the collectives over them.
 */
#ifndef BT_COLLECTIVES_COMM_H
#define BT_COLLECTIVES_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "baton.h"
#include "common/err.h"
#include "rendezvous/store.h"

/* BATON_ALGO (choose.c): auto is the cost model's choice, thresholds the earlier one by size. */
enum bt__algo {
    BT_ALGO_AUTO = 0,
    BT_ALGO_RING,
    BT_ALGO_RD,
    BT_ALGO_RABENSEIFNER,
    BT_ALGO_THRESHOLDS,
    BT_ALGO_TREE,
    BT_ALGO_SCATTER_ALLGATHER
};
enum bt__transport_kind { BT_TRANSPORT_AUTO = 0, BT_TRANSPORT_SHM, BT_TRANSPORT_TCP };

/* What a communicator is made from. Strings are copied; zero/NULL fields take the env knob. */
struct bt__comm_cfg {
    int rank, size;             /* global */
    int local_rank, local_size; /* within this node */
    int node_rank, nnodes;
    int generation;         /* restart count: store keys live under "w/<generation>/" */
    const char *store_host; /* rendezvous store; unused when size == 1 */
    int store_port;
    const char *token;     /* job token ("" allowed) */
    const char *transport; /* "auto" | "shm" | "tcp"; NULL: BATON_TRANSPORT */
    const char *algo;      /* a BATON_ALGO value (choose.c); NULL: BATON_ALGO */
    size_t shm_slot_bytes; /* bytes per shm slot buffer; 0: BATON_SHM_SLOT_BYTES */
    int nsocks;            /* sockets per TCP peer; 0: BATON_NSOCKS */
    size_t ring_seg_bytes; /* ring allreduce segment; 0: BT_RING_SEG_BYTES (tests shrink it) */
    /* sub-communicators (split.c); zero for a world communicator */
    const char *prefix;  /* store keys live under this instead of "w/<generation>/" */
    const int *world_of; /* [size]: the world rank of each rank (for messages) */
    const int *node_of;  /* [size]: the node of each rank; NULL: ranks numbered node by node */
    const char *name;    /* for messages: "c1a2b... (world ranks 0, 2, 4)" */
    uint64_t id;         /* the child's id, the same on every member (split.c); 0: a world */
    int job_node;        /* a child's: its world's node_rank (the launcher's node) */
    /* a one-node child's shm segment name (bt__shm_child_name): set up with no store round
     * trip, and the store connected only when something needs it (bt__comm_store) */
    const char *shm_name;
    uint64_t shm_key;          /* its key for the pool of kept segments (bt__shm_key), or 0 */
    struct bt__shm *shm_reuse; /* a kept segment every member agreed to run on, or NULL */
    /* a child's TCP addresses, exchanged over its parent (split.c), or NULL: through the store.
     * With shm_name (or no local peer) the child makes no store round trip at all. */
    struct bt__tcp_preset *tcp_preset;
};

#define BT_RING_SEG_BYTES (8u << 20)

struct bt__shm;
struct bt__tcp;
struct bt__transport_ops;
struct bt__backend_ops;
struct bt__plugin;
struct bt__queue;

struct bt_comm {
    int rank, size;             /* global */
    int local_rank, local_size; /* within this node */
    int node_rank, nnodes;
    int generation;          /* BATON_RESTART_COUNT: keys live under "w/<generation>/" */
    char prefix[32];         /* "w/<generation>/" */
    struct bt__store *store; /* NULL in a job of one, and in a one-node child until needed */
    int store_tried;         /* bt__comm_store failed once: optional uses stop trying */
    char rdzv_host[256];     /* the store's host: TCP picks the interface that reaches it */
    int rdzv_port;
    char token_hash[17];   /* hex FNV-1a of the token: checked in TCP handshakes */
    uint64_t coll_seq;     /* collectives started so far; the running one is #coll_seq */
    const char *coll_name; /* name of the running collective, for messages */
    int algo;              /* enum bt__algo: forced algorithm or auto */
    size_t ring_seg_bytes; /* bytes per segment of the ring allreduce (algo/ring.c) */
    int hierarchical;      /* allreduce: shm within nodes + tcp across node leaders */
    struct bt__shm *shm;   /* this node's segment, NULL when no local peer uses shm */
    struct bt__tcp *tcp;   /* mesh to every rank, NULL when not needed */
    const struct bt__transport_ops *intra; /* &bt__shm_ops or NULL */
    const struct bt__transport_ops *inter; /* &bt__tcp_ops or NULL */
    void *scratch[3];                      /* grown on demand, kept: 0 float16 widening, 1 algorithm
                                              temps, 2 working copies (reduce, reduce-scatter) */
    size_t scratch_cap[3];                 /* bytes */
    int *world_ranks;                      /* [size]: i -> i, the group of flat algorithms */
    int *leader_ranks;                 /* [nnodes]: node leaders (local rank 0) when hierarchical */
    int backend_choice;                /* enum bt__backend_choice (backend.h): BATON_BACKEND */
    const struct bt__backend_ops *mpi; /* Open MPI for host buffers (backend/mpi.c), or NULL */
    void *mpi_state;
    const struct bt__backend_ops *nccl; /* NCCL for device buffers, made on first use, or NULL */
    void *nccl_state;
    const struct bt__plugin *cuda; /* the CUDA plugin (backend/device.c), or NULL */
    void *cuda_state;              /* backend/cuda.c: devices, staging buffers; NULL: none */
    struct bt__err err;            /* sticky: the first error fails every later call; owned by
                                      the thread running a request (progress.h) */
    struct bt__queue *q;           /* requests in issue order, the progress thread */
    /* what sub-communicators inherit (split.c) */
    char *token;               /* the job token, for the child's store connection */
    const char *transport_req; /* "auto" | "shm" | "tcp" as chosen at creation */
    const char *algo_req;      /* BATON_ALGO as given, which children inherit (comm.c's names) */
    size_t shm_slot_req;       /* cfg.shm_slot_bytes */
    int nsocks_req;            /* cfg.nsocks */
    int *world_of;             /* [size]: world rank of each rank; NULL: the identity */
    int *local_of;             /* [size]: local rank of the ranks on my node, -1 for the others */
    uint64_t nsplits;          /* bt_comm_split/dup calls so far (names children) */
    char name[128];            /* "world", or a child's name: in timeout and stall messages */
    uint64_t id;               /* cfg.id: 0 for a world, a child's id (split.c) */
    int job_node;              /* the launcher's node rank (a child's: its world's node_rank) */
    uint32_t flight_id;        /* its id in the flight recorder (flight.c) */
    int flight_ring;           /* its ring in the flight recorder + 1; 0: none claimed yet */
    uint64_t flight_token;     /* the running call's recorder token (UINT64_MAX: none) */
    uint64_t flight_hash;      /* the shapes of its calls so far, hashed (flight.h) */
};

/* Builds a communicator from cfg (connecting to the store and setting up the transports).
 * On failure *out is NULL and err (may be NULL) holds why. The caller owns *out and frees it
 * with bt_finalize(). */
int bt__comm_create(const struct bt__comm_cfg *cfg, bt_comm **out, struct bt__err *err);

/* A child of the Open MPI communicator p (split.c), made by the MPI plugin (bt__mpi_derive,
 * backend.h); *out is NULL when this rank is in no child. err gets the reason on failure. */
struct bt__mpi_derive;
int bt__mpi_comm_derive(struct bt_comm *p, const struct bt__mpi_derive *how, bt_comm **out,
                        struct bt__err *err);

/* BT_OK when c is a communicator that bt_finalize has not freed; else BT_ERR_INVALID_USAGE
 * (logged, naming call). */
int bt__comm_check_live(const struct bt_comm *c, const char *call);

/* c's store client, connected now if c was made without one (a one-node child); NULL when
 * c has no peers or the connection failed (err set on c when required, else logged at INFO
 * and not tried again). required: the caller needs it (waits up to BATON_TIMEOUT); else an
 * optional use (failure records, the launcher's notice) that waits 2 s at most. */
struct bt__store *bt__comm_store(struct bt_comm *c, int required);

/* BATON_TIMEOUT: seconds a collective or the store may wait for a peer (default 300). */
double bt__comm_timeout_s(void);
/* BATON_STALL_WARN: seconds before a waiting rank names the ranks it waits for (default 60). */
double bt__comm_stall_warn_s(void);

/* Records a runtime failure of the running collective on c (sticky), logs it at WARN, and
 * tells the node's other ranks through the shared segment so they fail at once too. */
int bt__comm_fail(struct bt_comm *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A scratch buffer of at least bytes (slot 0, 1 or 2), kept for later calls; NULL when out of
 * memory (the error is then set on c). */
void *bt__scratch(struct bt_comm *c, int slot, size_t bytes);

/* choose.c: the algorithm a collective over a group of n ranks runs for bytes. Loads
 * BATON_TUNE_FILE once (bt__choose_init reports a bad one). */
int bt__choose_init(struct bt__err *err);
int bt__choose_allreduce(const struct bt_comm *c, int n, size_t bytes); /* enum bt__algo */
int bt__choose_broadcast(const struct bt_comm *c, int n, size_t bytes); /* BT_COST_TREE, ... */
int bt__choose_reduce(const struct bt_comm *c, int n, size_t bytes);    /* TREE or ALLREDUCE */

/* ---- waiting for peers ----
 * Every loop that waits for a peer calls bt__wait_tick() at least every ~100 ms. It enforces
 * BATON_TIMEOUT, logs the stall warning once after BATON_STALL_WARN seconds, and about once a
 * second looks for the launcher's failure notice ("l/<gen>/outcome") in the store. who() writes
 * the ranks being waited for ("3, 5") into out. */
struct bt__wait {
    int64_t start_ns, deadline_ns, next_tick_ns, next_poll_ns;
    int warned;
};
void bt__wait_start(struct bt_comm *c, struct bt__wait *w);
/* BT_OK to keep waiting, else the error now set on c. Cheap when called more often. */
int bt__wait_tick(struct bt_comm *c, struct bt__wait *w,
                  void (*who)(void *arg, char *out, size_t cap), void *arg);

#endif
