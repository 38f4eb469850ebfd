/* backend/backend.h: backends that run whole collectives themselves, and how coll.c picks one.
 *
 * coll.c checks every call's arguments, numbers it, asks where its buffers live (cuda.h:
 * bt__device_locate), and then hands it, as one bt__call, to exactly one of:
 *   the native path   baton's own algorithms over shm and TCP (coll.c, algo/, transport/)
 *   Open MPI          every host buffer, when the job was started by mpirun (backend/mpi.c)
 *   NCCL              device (CUDA) buffers, when the NCCL plugin loads and every rank has a
 *                     GPU of its own (backend/nccl.c)
 *   the staged path   device buffers otherwise: copied to pinned host memory by segment,
 *                     reduced by the host path (native or MPI), copied back (staged.c)
 * Open MPI, CUDA and NCCL are plugins loaded on demand (plugin.h).
 * A backend gets arguments that are already checked; BT_AVG is its to handle. Its errors go
 * through bt__comm_fail so they are sticky and name the collective.
 *
 * BATON_BACKEND (auto | baton | mpi | nccl) forces a choice; see bt__backend_choice().
 */
#ifndef BT_COLLECTIVES_BACKEND_H
#define BT_COLLECTIVES_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "baton.h"
#include "collectives/comm.h"

enum bt__coll_kind {
    BT_COLL_ALLREDUCE,
    BT_COLL_BROADCAST,
    BT_COLL_ALLGATHER,
    BT_COLL_REDUCE_SCATTER,
    BT_COLL_REDUCE,
    BT_COLL_BARRIER,
    /* exchange.c: handed to the Open MPI backend only (send and recv through its p2p ops) */
    BT_COLL_SEND,
    BT_COLL_RECV,
    BT_COLL_ALLTOALL,
    BT_COLL_ALLTOALLV,
    BT_COLL_GATHER,
    BT_COLL_SCATTER,
    BT_COLL_ALLGATHERV,
};

/* One collective call, as the public API received it (after the checks). count is the public
 * call's count: elements of send for allreduce, reduce, allgather (recv holds count * size)
 * and broadcast (send == recv == the buffer); elements of recv for reduce_scatter (send holds
 * count * size). recv may be NULL on non-root ranks of reduce; op is unused by broadcast,
 * allgather and barrier, root by all but broadcast and reduce. */
struct bt__call {
    enum bt__coll_kind kind;
    const void *send;
    void *recv;
    size_t count;
    bt_dtype dtype;
    bt_op op;
    int root;
    /* the calls of split.c and exchange.c (unused by the backends) */
    int color, key;        /* split */
    int peer, tag;         /* send, recv */
    const size_t *scounts; /* [size] elements: alltoallv, allgatherv, ... */
    const size_t *sdispls;
    const size_t *rcounts;
    const size_t *rdispls;
    void *out; /* split: the bt_comm ** to fill */
    /* a call that only some ranks make (bt_comm_create_group): it takes no call number and is
     * not in the flight recorder, so the communicator's numbers stay the same on every rank */
    int local;
    /* a fused call of a group (group.c): the allreduces it runs as one */
    const struct bt__call *const *parts;
    int nparts;
};

struct bt__backend_ops {
    const char *name;
    int (*run)(struct bt_comm *c, const struct bt__call *a);
    void (*destroy)(struct bt_comm *c); /* frees what the backend hung on c; NULL-safe state */
    /* Optional (NULL: the parts run one by one): runs calls[0..n) as one group, e.g. NCCL
     * between ncclGroupStart and ncclGroupEnd. */
    int (*run_group)(struct bt_comm *c, int n, const struct bt__call *const *calls);
    /* Optional point-to-point (exchange.c; NULL: refused). p2p_start starts a nonblocking
     * send (send = 1) of bytes at buf to peer, or a receive of at most bytes from peer, with
     * tag; *handle is the backend's until p2p_test sets *done or fails (either frees it) or
     * p2p_cancel frees it. buf stays the caller's to keep valid until then. Errors are sticky
     * on c (bt__comm_fail). */
    int (*p2p_start)(struct bt_comm *c, int send, void *buf, size_t bytes, int peer, int tag,
                     void **handle);
    int (*p2p_test)(struct bt_comm *c, void *handle, int *done);
    void (*p2p_cancel)(struct bt_comm *c, void *handle);
};

/* BATON_BACKEND, parsed: which backend a communicator may use. */
enum bt__backend_choice {
    BT_BACKEND_AUTO = 0, /* mpi under mpirun (when built), nccl for device buffers, else baton */
    BT_BACKEND_BATON,    /* native host path; device buffers staged */
    BT_BACKEND_MPI,      /* Open MPI for host buffers; an error when not under mpirun */
    BT_BACKEND_NCCL,     /* NCCL for device buffers; host buffers are an error */
};

/* Parses BATON_BACKEND into *out; BT_ERR_INVALID_USAGE with a one-line reason in err when it
 * is not one of the four names. */
int bt__backend_choice(int *out, struct bt__err *err);

/* Runs a checked call on the host path: Open MPI when c->mpi is set, else the native path. */
int bt__host_run(struct bt_comm *c, const struct bt__call *a);

/* Elements of send and of recv that call a touches on this rank. */
size_t bt__call_send_count(const struct bt_comm *c, const struct bt__call *a);
size_t bt__call_recv_count(const struct bt_comm *c, const struct bt__call *a);

/* ---- Open MPI (the plugin libbaton-mpi.so, backend/mpi.c; loaded by backend/plugin.c) ---- */
/* Makes c, freshly allocated by bt_init with nothing else set up, a communicator over
 * MPI_COMM_WORLD: initialises MPI unless the program already did (bt_finalize then leaves MPI
 * running), works on a duplicate of MPI_COMM_WORLD that returns errors, and fills rank, size,
 * local_rank/local_size (ranks sharing memory) and node_rank/nnodes. Sets c->mpi and
 * c->mpi_state as soon as there is state to free, so bt_finalize(c) cleans up after a failure
 * here too. err gets a one-line reason, also when the plugin cannot be loaded. */
int bt__mpi_attach(struct bt_comm *c, struct bt__err *err);

/* How a child of an Open MPI communicator is made (split.c): MPI_Comm_split (color < 0 is
 * MPI_UNDEFINED), MPI_Comm_dup, or MPI_Comm_create_group of ranks[0..n) with tag. */
enum bt__mpi_how { BT_MPI_SPLIT, BT_MPI_DUP, BT_MPI_GROUP };
struct bt__mpi_derive {
    enum bt__mpi_how how;
    int color, key;   /* split */
    const int *ranks; /* group: parent ranks, ranks[i] gets rank i */
    int n;
    uint64_t tag; /* group */
};
/* Makes child (freshly allocated, nothing set up) a communicator over the MPI communicator
 * that how derives from parent's; collective over parent (over the members for a group).
 * *member is 0 when this rank is in no child (split with color < 0): child is then unused.
 * Runs in parent's runner thread; errors go to err (and, for MPI failures, parent's sticky
 * error). */
int bt__mpi_derive(struct bt_comm *parent, struct bt_comm *child, const struct bt__mpi_derive *how,
                   int *member, struct bt__err *err);

#endif
