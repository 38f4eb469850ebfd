/* baton.h: the one public header of libbaton.
 *
 * A worker started by `baton run` (or by mpirun, or by hand with the BATON_* env set) calls
 * bt_init() to join its job and gets a communicator over which it runs collectives. Every call
 * returns an int error code from the table below; outputs come back through pointers. Errors
 * on a communicator are sticky: after the first failure every later call on it returns the
 * same code, and bt_last_error() tells the story (which call, which peer, errno, a hint).
 *
 * The library never exits and never prints to stdout; it logs to stderr (or BATON_DEBUG_FILE)
 * at the level BATON_DEBUG sets.
 */
#ifndef BATON_H
#define BATON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BT_API __attribute__((visibility("default")))
#else
#define BT_API
#endif

#define BATON_VERSION_MAJOR 0
#define BATON_VERSION_MINOR 1
#define BATON_VERSION_PATCH 0
#define BATON_VERSION_STRING "0.1.0"

/* The error table: name, value, message. bt_strerror() and the enum both come from here. */
#define BT_ERROR_TABLE(X)                                                                          \
    X(BT_OK, 0, "success")                                                                         \
    X(BT_ERR_INVALID_ARG, 1, "invalid argument")                                                   \
    X(BT_ERR_INVALID_USAGE, 2, "invalid usage")                                                    \
    X(BT_ERR_SYSTEM, 3, "system error")                                                            \
    X(BT_ERR_REMOTE, 4, "a remote peer failed or closed the connection")                           \
    X(BT_ERR_TIMEOUT, 5, "timed out")                                                              \
    X(BT_ERR_AUTH, 6, "authentication failed")                                                     \
    X(BT_ERR_INTERNAL, 7, "internal error")

typedef enum {
#define BT_X_ENUM(name, value, msg) name = value,
    BT_ERROR_TABLE(BT_X_ENUM)
#undef BT_X_ENUM
} bt_result;

/* Static message for a code; never NULL ("unknown error code" for values outside the table). */
BT_API const char *bt_strerror(int rc);

typedef enum {
    BT_FLOAT32 = 0,
    BT_FLOAT64 = 1,
    BT_FLOAT16 = 2,  /* IEEE half; reduced in float32 */
    BT_BFLOAT16 = 3, /* bfloat16; reduced in float32 */
    BT_INT32 = 4,
    BT_INT64 = 5,
    BT_UINT8 = 6,
    BT_DTYPE_COUNT
} bt_dtype;

typedef enum { BT_SUM = 0, BT_PROD = 1, BT_MIN = 2, BT_MAX = 3, BT_AVG = 4, BT_OP_COUNT } bt_op;

/* Bytes of one element of dtype, or 0 for an unknown dtype. */
BT_API size_t bt_dtype_size(bt_dtype dtype);

typedef struct bt_comm bt_comm;

/* Joins the job described by the environment (BATON_RANK, BATON_WORLD_SIZE, BATON_RDZV,
 * BATON_TOKEN, ... as `baton run` sets them; a process with none of them set is a job of one)
 * and returns a communicator in *comm, owned by the caller until bt_finalize(). On failure
 * *comm is NULL and the reason is logged at WARN and kept for bt_last_error(NULL). */
BT_API int bt_init(bt_comm **comm);

/* Leaves the job and frees comm (NULL is accepted). Requests still outstanding on comm are
 * completed first (as bt_waitall would; those not freed stay valid for bt_wait/bt_test and
 * must still be freed). Returns the communicator's sticky error code, if any, so a program
 * can tell whether its last collectives really succeeded. Using comm afterwards returns
 * BT_ERR_INVALID_USAGE (until the address is reused by a new communicator). */
BT_API int bt_finalize(bt_comm *comm);

/* Accessors: global rank and size, rank and size within this node, node rank and count. */
BT_API int bt_comm_rank(const bt_comm *comm, int *rank);
BT_API int bt_comm_size(const bt_comm *comm, int *size);
BT_API int bt_comm_local_rank(const bt_comm *comm, int *local_rank);
BT_API int bt_comm_local_size(const bt_comm *comm, int *local_size);
BT_API int bt_comm_node_rank(const bt_comm *comm, int *node_rank);
BT_API int bt_comm_nnodes(const bt_comm *comm, int *nnodes);

/* The detail of the last error on comm (or of the last failed bt_init when comm is NULL):
 * a static-lifetime-until-next-call string owned by the library; "" when there was none. */
BT_API const char *bt_last_error(const bt_comm *comm);

/* Records why this process is about to fail, printf-style, in the error file `baton run` gives
 * each worker (BATON_ERROR_FILE, else TORCHELASTIC_ERROR_FILE; torchelastic's JSON format, as
 * PyTorch's @record writes it). The launcher puts the message in the job's failure summary on
 * every node. Call it before exiting non-zero; a later call replaces the earlier message.
 * Without either variable set it does nothing. Returns BT_OK, or BT_ERR_SYSTEM when the file
 * cannot be written. */
BT_API int bt_error_record(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Pauses (paused = 1) or resumes (0) this process's flight recorder (docs/launcher.md): calls
 * that start while it is paused are not recorded, so no dump, straggler look, call-shape check
 * or /metrics counter sees them. A measuring tool (bench/flight_bench.c times alternating
 * blocks with and without it in one job); the ranks of a job pause at the same call, or the
 * launcher's looks find calls that some ranks did not record. Without a recorder (not under
 * `baton run`, or BATON_FLIGHT=off) it does nothing. Returns BT_OK. */
BT_API int bt_flight_pause(int paused);

/* Collectives. All ranks call them in the same order with the same count, dtype and op.
 * Buffers are owned by the caller; the library keeps no pointer after the call returns
 * (inside a group, until bt_group_end returns: see "Grouped calls" below).
 * Each blocking call is its nonblocking form (below) followed by bt_wait: one code path. */

/* recv[i] = op over ranks of send[i], for i < count. send == recv means in place. */
BT_API int bt_allreduce(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                        bt_op op);
/* buf (count elements) of root is copied to every rank's buf. */
BT_API int bt_broadcast(bt_comm *comm, void *buf, size_t count, bt_dtype dtype, int root);
/* recv (count * size elements) holds every rank's send (count elements), in rank order. */
BT_API int bt_allgather(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype);
/* send holds recv_count * size elements; rank r gets the reduction of block r in recv. */
BT_API int bt_reduce_scatter(bt_comm *comm, const void *send, void *recv, size_t recv_count,
                             bt_dtype dtype, bt_op op);
/* Like bt_allreduce, but only root's recv is written (recv may be NULL on other ranks). */
BT_API int bt_reduce(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                     bt_op op, int root);
/* Returns once every rank has entered the barrier. */
BT_API int bt_barrier(bt_comm *comm);

/* ---- Nonblocking calls and requests ----
 *
 * bt_iX(comm, ..., &req) issues collective X and returns at once with a request in *req,
 * owned by the caller until bt_request_free(req). The buffers are the library's from the
 * call until the request completes (bt_wait returned, or bt_test said done): do not write
 * send or read recv in between.
 *
 * Ordering: calls on one communicator, blocking or not, run one at a time in the order this
 * rank issued them, and complete in that order; every rank must issue a communicator's calls
 * in the same order. Calls on different communicators are independent. A background
 * progress thread per communicator (started by its first nonblocking call; it inherits the
 * calling thread's CPU affinity) runs them without the caller's help; bt_wait also runs the
 * requests ahead of its own itself rather than sleep.
 *
 * Threads: the calls on a communicator may come from several threads (they queue in the
 * order they take the communicator's lock); bt_finalize must not race with other calls on
 * it, and a request may be waited, tested or freed by one thread at a time.
 *
 * Errors: a failure (timeout, a dead peer, the node's abort) fails the running request and,
 * being sticky, every request after it; bt_wait returns the code and bt_request_error()
 * (and bt_last_error(comm)) the story. An argument error is returned by the bt_iX call
 * itself (no request is made) and is sticky on the communicator. */
typedef struct bt_request bt_request;

BT_API int bt_iallreduce(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                         bt_op op, bt_request **req);
BT_API int bt_ibroadcast(bt_comm *comm, void *buf, size_t count, bt_dtype dtype, int root,
                         bt_request **req);
BT_API int bt_iallgather(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                         bt_request **req);
BT_API int bt_ireduce_scatter(bt_comm *comm, const void *send, void *recv, size_t recv_count,
                              bt_dtype dtype, bt_op op, bt_request **req);
BT_API int bt_ireduce(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                      bt_op op, int root, bt_request **req);
BT_API int bt_ibarrier(bt_comm *comm, bt_request **req);

/* The grouped allreduce: bufs[i] (counts[i] elements each, in place) for i < n, fused into one
 * transfer (packed in order, one allreduce, unpacked): for many small tensors, one set of
 * messages instead of n. The same reduction as n bt_allreduce calls (float results may differ
 * in the last bit: the algorithm is chosen by the fused size). In the nonblocking form the
 * bufs and counts arrays, like the buffers, stay the caller's to keep until completion.
 * Host buffers only. */
BT_API int bt_allreduce_multi(bt_comm *comm, int n, void *const *bufs, const size_t *counts,
                              bt_dtype dtype, bt_op op);
BT_API int bt_iallreduce_multi(bt_comm *comm, int n, void *const *bufs, const size_t *counts,
                               bt_dtype dtype, bt_op op, bt_request **req);

/* ---- Grouped calls (as NCCL's ncclGroupStart/ncclGroupEnd) ----
 *
 * Calls made by this thread between bt_group_start() and bt_group_end(), on any
 * communicators, are checked at once (argument errors are returned by the call itself) but
 * issued only by bt_group_end:
 *   - on each communicator, its collectives first, in the order made, where every run of two
 *     or more consecutive allreduces (bt_allreduce/bt_iallreduce) with the same dtype and op
 *     is fused into one transfer as bt_allreduce_multi does (on NCCL: one ncclGroupStart/End);
 *   - then all of its sends and receives as one set, so that a send and a receive between two
 *     ranks in one group never deadlock, whatever their order or size.
 * Every rank must make the same grouped calls on a communicator, as for all calls.
 * A nonblocking call returns its request at once; bt_wait or bt_test on it before
 * bt_group_end is BT_ERR_INVALID_USAGE (it is not issued yet). A blocking call returns BT_OK
 * at once and runs at bt_group_end, which waits for the group's blocking calls and returns
 * the first error among them (the nonblocking ones are waited for as usual).
 * Ownership: the buffers (and the bufs/counts/displacement arrays) of a grouped call stay the
 * caller's to keep unchanged until its request completes; for a blocking call, until
 * bt_group_end returns.
 * Groups are per thread and do not nest: bt_group_start inside an open group, and
 * bt_group_end without one, are BT_ERR_INVALID_USAGE (with the story in bt_last_error(NULL)),
 * as are bt_comm_split, bt_comm_dup and bt_comm_create_group inside a group (sticky on the
 * communicator). bt_finalize of a communicator inside a group fails the group's calls on it
 * (BT_ERR_INVALID_USAGE). */
BT_API int bt_group_start(void);
BT_API int bt_group_end(void);

/* Sets *done to 1 when req has completed (then returns its result), else 0 and BT_OK. Never
 * blocks and never runs a collective. */
BT_API int bt_test(bt_request *req, int *done);
/* Blocks until req completes and returns its result. A second bt_wait on the same request
 * returns BT_ERR_INVALID_USAGE. The request stays allocated until bt_request_free. */
BT_API int bt_wait(bt_request *req);
/* bt_wait on each of reqs[0..n) (NULL entries are skipped); returns the first error. */
BT_API int bt_waitall(int n, bt_request *const *reqs);
/* The story of req's failure ("" while it runs or when it succeeded); owned by req. */
BT_API const char *bt_request_error(const bt_request *req);
/* Frees req (NULL is accepted). A request freed before it completed still runs, and is freed
 * when it completes: its buffers must stay valid until then (bt_finalize waits for it). */
BT_API void bt_request_free(bt_request *req);

/* ---- Point-to-point and the exchange collectives (host buffers) ----
 *
 * bt_send/bt_recv move count elements to/from rank peer of comm with a tag >= 0. Messages
 * between two ranks match in the order they were issued; the tag is checked, not searched
 * for: a receive whose next message has another tag, or more elements than it has room for,
 * fails with BT_ERR_INVALID_USAGE naming both. A receive may be larger than the message.
 * Sends and receives are ordered with the communicator's other calls: a send and its
 * receive must sit at the same place among the collectives of the two ranks (as in NCCL).
 * Consecutive bt_isend/bt_irecv calls on a communicator progress together, so exchanging
 * with a peer (isend + irecv on both sides) or shifting around a ring never deadlocks;
 * blocking bt_send then bt_recv on both sides of a pair does once a message exceeds the
 * stream's buffering (32 KiB over shared memory). */
BT_API int bt_send(bt_comm *comm, const void *buf, size_t count, bt_dtype dtype, int peer, int tag);
BT_API int bt_recv(bt_comm *comm, void *buf, size_t count, bt_dtype dtype, int peer, int tag);
BT_API int bt_isend(bt_comm *comm, const void *buf, size_t count, bt_dtype dtype, int peer, int tag,
                    bt_request **req);
BT_API int bt_irecv(bt_comm *comm, void *buf, size_t count, bt_dtype dtype, int peer, int tag,
                    bt_request **req);

/* Collectives over point-to-point, every message checked against the count the receiver
 * expects (mismatched counts between ranks are BT_ERR_INVALID_USAGE naming both).
 * alltoall: send and recv hold count * size elements; block p of send goes to rank p, block
 * p of recv comes from rank p. */
BT_API int bt_alltoall(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype);
BT_API int bt_ialltoall(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                        bt_request **req);
/* alltoallv: scounts[p] elements at send + sdispls[p] go to rank p; rcounts[p] elements from
 * rank p land at recv + rdispls[p] (counts and displacements in elements, arrays of size). */
BT_API int bt_alltoallv(bt_comm *comm, const void *send, const size_t *scounts,
                        const size_t *sdispls, void *recv, const size_t *rcounts,
                        const size_t *rdispls, bt_dtype dtype);
BT_API int bt_ialltoallv(bt_comm *comm, const void *send, const size_t *scounts,
                         const size_t *sdispls, void *recv, const size_t *rcounts,
                         const size_t *rdispls, bt_dtype dtype, bt_request **req);
/* allgatherv: rank p's count (= rcounts[p]) elements land at recv + rdispls[p] everywhere. */
BT_API int bt_allgatherv(bt_comm *comm, const void *send, size_t count, void *recv,
                         const size_t *rcounts, const size_t *rdispls, bt_dtype dtype);
BT_API int bt_iallgatherv(bt_comm *comm, const void *send, size_t count, void *recv,
                          const size_t *rcounts, const size_t *rdispls, bt_dtype dtype,
                          bt_request **req);
/* gather: root's recv (count * size) holds every rank's send (count) in rank order; recv is
 * unused elsewhere. scatter: block p of root's send (count * size) lands in rank p's recv. */
BT_API int bt_gather(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                     int root);
BT_API int bt_igather(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                      int root, bt_request **req);
BT_API int bt_scatter(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                      int root);
BT_API int bt_iscatter(bt_comm *comm, const void *send, void *recv, size_t count, bt_dtype dtype,
                       int root, bt_request **req);

/* ---- Sub-communicators ----
 *
 * A child communicator is independent of its parent once made: it has its own transports
 * (shared memory among its members on a node, TCP across nodes, hierarchical allreduce when
 * its members are spread evenly over nodes), its own request queue and sticky error, and is
 * freed with bt_comm_destroy (or bt_finalize); destroying it leaves the parent intact, and
 * the parent may be destroyed first. The accessors answer for the child (rank and size
 * within it, its nodes). Timeout and stall messages name the communicator and the world
 * ranks of its members. */

/* Every rank of comm calls it, in the same order as comm's other calls. Ranks with the same
 * color >= 0 form one child, ordered by key, then by rank in comm; *newcomm is the caller's
 * child (owned by the caller), or NULL for color BT_UNDEFINED (-1). */
#define BT_UNDEFINED (-1)
BT_API int bt_comm_split(bt_comm *comm, int color, int key, bt_comm **newcomm);
/* A child with every rank of comm in the same order (bt_comm_split with one color). */
BT_API int bt_comm_dup(bt_comm *comm, bt_comm **newcomm);
/* Called by the members only: ranks[0..nranks) (distinct ranks of comm, the caller among
 * them) form a child in which ranks[i] has rank i. Every member passes the same list and the
 * same tag; different groups made concurrently need different tags or lists. */
BT_API int bt_comm_create_group(bt_comm *comm, int nranks, const int *ranks, uint64_t tag,
                                bt_comm **newcomm);
/* Frees a communicator made by the calls above (same as bt_finalize). */
BT_API int bt_comm_destroy(bt_comm *comm);

#ifdef __cplusplus
}
#endif
#endif /* BATON_H */
