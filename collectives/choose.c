/* choose.c: which point-to-point algorithm a collective over TCP runs.
 *
 * BATON_ALGO=auto (the default) asks the cost model (algo/cost.h) for the cheapest predicted
 * algorithm for (group size, bytes) with the TCP parameters of BATON_TUNE_FILE (`baton tune`),
 * or the defaults measured on the development VM. BATON_ALGO=thresholds is the earlier
 * choice by size alone (tuned at 2-4 ranks): recursive doubling up to 64 KiB, Rabenseifner up
 * to 4 MiB, the ring above; a binomial broadcast; a reduce that runs the whole allreduce.
 * A named algorithm forces it for the collectives it applies to: ring, rd, rabenseifner (the
 * allreduce, and the reduce through it), tree (the broadcast and the reduce),
 * scatter_allgather (the broadcast). The choice depends only on values every rank has (the
 * group size, the byte count and the tune file, which must be the same everywhere), so all
 * ranks choose alike.
 */
#include <pthread.h>

#include "collectives/algo/cost.h"
#include "collectives/comm.h"
#include "common/log.h"
#include "common/param.h"

BT_PARAM_STR(tune_file, "BATON_TUNE_FILE", "")

#define BT_RD_MAX_BYTES (64 * 1024)
#define BT_RABENSEIFNER_MAX_BYTES (4 * 1024 * 1024)

static struct bt__cost_model model;
static struct bt__err load_err;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    bt__cost_defaults(&model);
    const char *path = bt__param_tune_file();
    if (path && path[0] && bt__cost_load(path, &model, &load_err) == BT_OK)
        BT_INFO(COLL, "cost model from %s: tcp alpha %.3g s beta %.3g s/B gamma %.3g s/B", path,
                model.tcp.alpha, model.tcp.beta, model.tcp.gamma);
}

int bt__choose_init(struct bt__err *err)
{
    pthread_once(&once, load);
    if (load_err.code)
        return bt__err_set(err, load_err.code, "%s", load_err.msg);
    return BT_OK;
}

const struct bt__cost_model *bt__choose_model(void)
{
    pthread_once(&once, load);
    return &model;
}

int bt__choose_allreduce(const bt_comm *c, int n, size_t bytes)
{
    switch (c->algo) {
    case BT_ALGO_RING:
    case BT_ALGO_RD:
    case BT_ALGO_RABENSEIFNER: return c->algo;
    case BT_ALGO_THRESHOLDS:
        if (bytes <= BT_RD_MAX_BYTES)
            return BT_ALGO_RD;
        return bytes <= BT_RABENSEIFNER_MAX_BYTES ? BT_ALGO_RABENSEIFNER : BT_ALGO_RING;
    }
    const struct bt__cost_model *m = bt__choose_model();
    switch (bt__cost_pick_allreduce(m, &m->tcp, n, (double)bytes, NULL)) {
    case BT_COST_RD: return BT_ALGO_RD;
    case BT_COST_RABENSEIFNER: return BT_ALGO_RABENSEIFNER;
    default: return BT_ALGO_RING;
    }
}

int bt__choose_broadcast(const bt_comm *c, int n, size_t bytes)
{
    if (c->algo == BT_ALGO_TREE || c->algo == BT_ALGO_THRESHOLDS)
        return BT_COST_TREE;
    if (c->algo == BT_ALGO_SCATTER_ALLGATHER)
        return BT_COST_SCATTER_ALLGATHER;
    const struct bt__cost_model *m = bt__choose_model();
    return bt__cost_pick_broadcast(&m->tcp, n, (double)bytes, NULL);
}

int bt__choose_reduce(const bt_comm *c, int n, size_t bytes)
{
    if (c->algo == BT_ALGO_TREE)
        return BT_COST_TREE;
    if (c->algo != BT_ALGO_AUTO && c->algo != BT_ALGO_SCATTER_ALLGATHER)
        return BT_COST_ALLREDUCE;
    const struct bt__cost_model *m = bt__choose_model();
    return bt__cost_pick_reduce(m, &m->tcp, n, (double)bytes, NULL);
}
