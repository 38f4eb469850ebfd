/* algo/algo.h: point-to-point algorithms over a group of ranks (ring.c, rd.c, rabenseifner.c,
 * bcast.c); cost.h prices them.
 *
 * Each algorithm moves bytes only through bt__xfer (the inter-node transport's sendrecv), so
 * it runs unchanged over any transport that can send and receive between two ranks. coll.c
 * picks one by size; each file's header has the steps and the paper.
 */
#ifndef BT_COLLECTIVES_ALGO_ALGO_H
#define BT_COLLECTIVES_ALGO_ALGO_H

#include <stddef.h>

#include "collectives/transport/transport.h"

/* A group of global ranks the algorithm runs over. */
struct bt__group {
    int n;            /* members */
    int me;           /* my index */
    const int *ranks; /* global rank of member i */
};

/* In-place allreduce of buf over the group, op never AVG, dtype never float16/bfloat16. */
int bt__ring_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                       bt_dtype dtype, bt_op op);
/* Ring reduce-scatter over buf (n blocks of block elements): member i ends with block i
 * reduced, in place in buf. */
int bt__ring_reduce_scatter(struct bt_comm *c, const struct bt__group *g, void *buf, size_t block,
                            bt_dtype dtype, bt_op op);
/* Ring allgather in place: member i contributes block i of buf (n blocks of block elems). */
int bt__ring_allgather(struct bt_comm *c, const struct bt__group *g, void *buf, size_t block,
                       size_t esize);
int bt__rd_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                     bt_dtype dtype, bt_op op);
int bt__rabenseifner_allreduce(struct bt_comm *c, const struct bt__group *g, void *buf,
                               size_t count, bt_dtype dtype, bt_op op);
/* Binomial-tree broadcast of bytes from member root. */
int bt__tree_broadcast(struct bt_comm *c, const struct bt__group *g, void *buf, size_t bytes,
                       int root);
/* Ring allgather in place of bytes cut into n chunks by bt__chunk: member i has chunk i. */
int bt__ring_allgather_bytes(struct bt_comm *c, const struct bt__group *g, void *buf, size_t bytes);
/* Broadcast of bytes from member root: binomial scatter, then ring allgather (bcast.c). */
int bt__scatter_allgather_broadcast(struct bt_comm *c, const struct bt__group *g, void *buf,
                                    size_t bytes, int root);
/* Binomial-tree reduce of buf (count elements) to member root, in place: root's buf gets the
 * result; the others' buf is used as scratch (clobbered). op never AVG, no half dtypes. */
int bt__tree_reduce(struct bt_comm *c, const struct bt__group *g, void *buf, size_t count,
                    bt_dtype dtype, bt_op op, int root);

/* The fold of a group of n members onto p = 2^k (rd.c): members below 2r = 2 (n - p)
 * pair up, the even one of each pair handing its data to the odd one and sitting out. */
struct bt__fold {
    int p, r;    /* power of two, and n - p */
    int newrank; /* my rank among the p, or -1 while folded away */
};
void bt__fold_plan(int n, int me, struct bt__fold *f);
/* The member index of new rank q. */
int bt__fold_member(const struct bt__fold *f, int q);
int bt__fold_in(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f, void *buf,
                size_t count, bt_dtype dt, bt_op op);
int bt__fold_out(struct bt_comm *c, const struct bt__group *g, const struct bt__fold *f, void *buf,
                 size_t bytes);

#endif
