/* transport/transport.h: the transports behind one ops table (shm.c, tcp.c).
 *
 * A transport either moves bytes between two ranks (sendrecv: tcp) or runs whole collectives
 * over the ranks of one node at once (shm, where every rank reads its peers' data directly
 * from one shared segment). NULL entries are what the transport does not do; coll.c and the
 * algorithms pick the entry they need. Ranks in an xfer are global ranks; roots in the group
 * collectives are local ranks of the node.
 */
#ifndef BT_COLLECTIVES_TRANSPORT_TRANSPORT_H
#define BT_COLLECTIVES_TRANSPORT_TRANSPORT_H

#include <stddef.h>

#include "collectives/comm.h"

/* One step of a point-to-point algorithm: send sbuf to send_to while receiving rbuf from
 * recv_from (either may be -1: none). With red_dst set, the rlen bytes received are instead
 * reduced into red_dst as they arrive (the transport stages them in buffers of its own; rbuf
 * is unused): red_dst = op(incoming, red_dst) when incoming_first, else op(red_dst,
 * incoming); rlen is a whole number of dtype elements. */
struct bt__xfer {
    int send_to;
    const void *sbuf;
    size_t slen; /* bytes */
    int recv_from;
    void *rbuf;  /* unused when red_dst is set */
    size_t rlen; /* bytes */
    void *red_dst;
    bt_dtype dtype;
    bt_op op; /* never BT_AVG here */
    int incoming_first;
};

/* A collective over the ranks of one node. Counts are in elements. */
struct bt__coll_args {
    const void *send;
    void *recv;
    size_t count;
    bt_dtype dtype;
    bt_op op; /* reductions: BT_AVG is done by the transport (div) */
    int root; /* local rank for reduce/broadcast; -1: every rank gets the result */
    int div;  /* reductions: divide the result by this when > 1 (the average) */
};

struct bt__transport_ops {
    const char *name;
    int (*sendrecv)(struct bt_comm *c, const struct bt__xfer *x);
    /* root < 0: allreduce; root >= 0: reduce to that local rank only (others' recv unused) */
    int (*reduce)(struct bt_comm *c, const struct bt__coll_args *a);
    /* send: count * local_size elements; local rank r gets block r in recv (count elements) */
    int (*reduce_scatter)(struct bt_comm *c, const struct bt__coll_args *a);
    int (*allgather)(struct bt_comm *c, const struct bt__coll_args *a);
    int (*broadcast)(struct bt_comm *c, const struct bt__coll_args *a); /* buf is recv */
    int (*barrier)(struct bt_comm *c);
    void (*destroy)(struct bt_comm *c);
};

extern const struct bt__transport_ops bt__shm_ops;
extern const struct bt__transport_ops bt__tcp_ops;

/* Set up at communicator creation; both publish and read their addresses in the store. */
/* key: a one-node split's child (bt__shm_key), whose segment is kept for reuse when it is
 * destroyed cleanly, else 0; reuse: such a kept segment that every member agreed on (split.c),
 * used instead of a new one. */
int bt__shm_create(struct bt_comm *c, size_t slot_bytes, const char *name, uint64_t key,
                   struct bt__shm *reuse);
/* The pool of kept segments (shm.c says when a segment is kept and reused): the key of the
 * child of p with the n world ranks world_of[] on this node, this rank being the me-th; take
 * the newest kept segment of that key out of the pool (NULL and *token 0 when none); give one
 * back unused; unmap them all. */
uint64_t bt__shm_key(const struct bt_comm *p, int n, const int *world_of, int me);
struct bt__shm *bt__shm_pool_take(uint64_t key, uint64_t *token);
void bt__shm_pool_give(struct bt__shm *s);
void bt__shm_pool_clear(void);
/* The name of c's segment ("" without one): which segment a child runs on (tests). */
const char *bt__shm_name(const struct bt_comm *c);
/* The segment name of p's child id on this node (a one-node child: its members derive the same
 * name, and bt__shm_create(c, ..., name) attaches with no store round trip). */
void bt__shm_child_name(const struct bt_comm *p, uint64_t id, char *out, size_t cap);
/* A child's TCP addresses exchanged over its parent instead of the store (split.c): this
 * rank's listening socket and every child rank's "host:port" (BT__TCP_ADDR_BYTES each, by
 * child rank). */
#define BT__TCP_ADDR_BYTES 64
struct bt__tcp_preset {
    int lfd;
    const char *addrs;
};
/* pre: NULL, the addresses go through the store; else the mesh is built from pre, which
 * gives up its lfd to c. */
int bt__tcp_create(struct bt_comm *c, int nsocks, struct bt__tcp_preset *pre);
/* Listens where c's TCP mesh would (BATON_SOCKET_IFNAME or the route to the store) and
 * writes "host:port" to addr (BT__TCP_ADDR_BYTES). */
int bt__tcp_listen(struct bt_comm *c, int *lfd, char *addr);
/* bt_alltoall over shm when every rank of c is on this node (shm.c says how): blk bytes per
 * block, send and recv hold size blocks. */
int bt__shm_alltoall(struct bt_comm *c, const void *send, void *recv, size_t blk);

/* Point-to-point over shm (exchange.c): moves what fits of buf[*off..len) into the ring to
 * local rank lpeer (send) or out of the ring from it (recv), never blocking; *off advances. */
int bt__shm_p2p_move(struct bt_comm *c, int lpeer, int send, char *buf, size_t len, size_t *off);
/* BT_OK, or the failure (sticky) when the node aborted or local rank lpeer's process died. */
int bt__shm_p2p_check(struct bt_comm *c, int lpeer);
/* The first socket to rank peer of the TCP mesh (point-to-point, exchange.c). */
int bt__tcp_fd(struct bt_comm *c, int peer);
/* Sets the node's shared abort flag with msg (no-op without shm). */
void bt__shm_abort(struct bt_comm *c, const char *msg);

/* Element range of chunk i when count elements are split as evenly as possible in n chunks
 * (the first count % n chunks get one more). */
static inline void bt__chunk(size_t count, int n, int i, size_t *off, size_t *len)
{
    size_t base = count / (size_t)n, rem = count % (size_t)n, ui = (size_t)i;
    *off = ui * base + (ui < rem ? ui : rem);
    *len = base + (ui < rem ? 1 : 0);
}

/* Sends/receives through the inter-node transport (tcp). */
static inline int bt__xfer(struct bt_comm *c, const struct bt__xfer *x)
{
    return c->inter->sendrecv(c, x);
}

#endif
