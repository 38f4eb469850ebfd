/* algo/cost.h: the α–β–γ cost model of the point-to-point algorithms, and the choice of the
 * cheapest one for a call.
 *
 * A message of m bytes between two ranks costs α + m·β (α: seconds per message, β: seconds
 * per byte); reducing m bytes costs m·γ. Each algorithm's time is a formula in (n, m) from
 * its schedule (cost.c, with the schedule it counts); the parameters come per transport from
 * `baton tune` (BATON_TUNE_FILE) or the defaults measured on the development VM. The model
 * knows nothing about the data: it is the same on every rank, so every rank picks the same
 * algorithm (the tune file must be the same on every rank, like BATON_NSOCKS).
 */
#ifndef BT_COLLECTIVES_ALGO_COST_H
#define BT_COLLECTIVES_ALGO_COST_H

#include <stddef.h>

#include "common/err.h"

struct bt__link_cost {
    double alpha; /* seconds per message */
    double beta;  /* seconds per byte */
    double gamma; /* seconds per byte reduced */
};

struct bt__cost_model {
    struct bt__link_cost tcp; /* between nodes (or BATON_TRANSPORT=tcp) */
    struct bt__link_cost shm; /* within a node: a whole-node collective over the segment */
    double seg_bytes;         /* the ring allreduce's segment (comm.h ring_seg_bytes) */
};

/* Algorithms the model prices. Allreduce: RING, RD, RABENSEIFNER (and HIER: a node reduce
 * over shm, one of the three across node leaders, a node broadcast). Broadcast: TREE
 * (binomial) or SCATTER_ALLGATHER. Reduce: TREE (binomial) or ALLREDUCE (the whole
 * allreduce, kept for comparison). */
enum bt__cost_algo {
    BT_COST_RING = 0,
    BT_COST_RD,
    BT_COST_RABENSEIFNER,
    BT_COST_TREE,
    BT_COST_SCATTER_ALLGATHER,
    BT_COST_ALLREDUCE,
    BT_COST_NALGO
};

/* The defaults (cost.c: how they were measured). */
void bt__cost_defaults(struct bt__cost_model *m);
/* Reads a tune file (`baton tune`'s output: "tcp_alpha 1.2e-05" lines; unknown names and
 * '#' comments are skipped). Fields it does not name keep their value in m. */
int bt__cost_load(const char *path, struct bt__cost_model *m, struct bt__err *err);
int bt__cost_save(const char *path, const struct bt__cost_model *m, struct bt__err *err);

/* Predicted seconds of one flat allreduce (RING, RD, RABENSEIFNER) of bytes over n ranks. */
double bt__cost_allreduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int algo,
                          int n, double bytes);
/* The α–β–γ lower bound of an allreduce over n ranks: ⌈log2 n⌉ messages on the critical
 * path, 2(n-1)/n·bytes through each rank's link, (n-1)/n·bytes reduced by each rank. */
double bt__cost_allreduce_bound(const struct bt__link_cost *l, int n, double bytes);
/* Hierarchical allreduce: nnodes nodes of ppn ranks, algo across the node leaders. */
double bt__cost_hier_allreduce(const struct bt__cost_model *m, int algo, int nnodes, int ppn,
                               double bytes);
double bt__cost_broadcast(const struct bt__link_cost *l, int algo, int n, double bytes);
double bt__cost_reduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int algo,
                       int n, double bytes);

/* The cheapest flat allreduce algorithm for (n, bytes) over link l; *t (may be NULL) gets
 * its predicted time. */
int bt__cost_pick_allreduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int n,
                            double bytes, double *t);
int bt__cost_pick_broadcast(const struct bt__link_cost *l, int n, double bytes, double *t);
int bt__cost_pick_reduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int n,
                         double bytes, double *t);
const char *bt__cost_algo_name(int algo);

#endif
