/* spec_pytorch.c: PyTorchJob (training-operator v1) and Kubeflow Trainer v2 env.
 *
 * PyTorchJob with a Master: MASTER_ADDR=<job>-master-0, MASTER_PORT, RANK=PET_NODE_RANK = the
 * pod's rank (master 0, worker i is i+1), WORLD_SIZE = pods * nprocPerNode (a word such as
 * "auto" counts as 1), PET_NNODES = pods, PET_NPROC_PER_NODE. RANK is a pod rank: baton makes
 * process ranks node_rank * nproc_per_node + local rank. The store listens on MASTER_PORT + 1
 * so the program keeps MASTER_PORT.
 *
 * Worker-only PyTorchJob: no MASTER_ADDR/RANK/WORLD_SIZE. With an elasticPolicy the operator
 * sets PET_RDZV_ENDPOINT=<host>:<port>, PET_NNODES="min:max" (or "n"), PET_MAX_RESTARTS,
 * PET_RDZV_ID; the pod's index comes from its hostname <job>-worker-<i>. The store listens on
 * the endpoint's port + 1, as in the master case. Without an elasticPolicy (PET_NNODES only)
 * the endpoint is <job>-worker-0 on the operator's default port 23456.
 *
 * Trainer v2 (TrainJob on JobSet): PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
 * PET_MASTER_ADDR=<job>-node-0-0.<job> (kubeflow/trainer @ 8c0f5059bd51 torch.go; releases
 * before it named the replicated job trainer-node), PET_MASTER_PORT, and no MASTER_ADDR.
 */
#include <limits.h>
#include <string.h>

#include "launcher/spec_impl.h"

/* PET_NPROC_PER_NODE: a count, or a word (auto, cpu, gpu) that leaves the count to baton
 * (spec 0 = auto). *env_n is what the operator multiplied WORLD_SIZE by: the count, else 1. */
static int pet_nproc(struct bt__spec_ctx *c, int *env_n)
{
    const char *v = bt__spec_use(c, "PET_NPROC_PER_NODE");
    *env_n = 1;
    if (!v)
        return BT_OK;
    if ((v[0] >= '0' && v[0] <= '9') || v[0] == '-') {
        BT_CHECK(bt__spec_int(c, "PET_NPROC_PER_NODE", v, 1, 1 << 20, env_n));
        c->spec->nproc_per_node = *env_n;
    } else {
        c->spec->nproc_per_node = 0;
    }
    return BT_OK;
}

/* PET_NNODES: "n" or "min:max". */
static int pet_nnodes(struct bt__spec_ctx *c, const char *v, int *min, int *max)
{
    const char *colon = strchr(v, ':');
    if (!colon) {
        BT_CHECK(bt__spec_int(c, "PET_NNODES", v, 1, INT_MAX, min));
        *max = *min;
        return BT_OK;
    }
    char lo[32];
    size_t len = (size_t)(colon - v);
    if (len >= sizeof(lo))
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "PET_NNODES='%s' is not N or MIN:MAX", v);
    memcpy(lo, v, len);
    lo[len] = '\0';
    BT_CHECK(bt__spec_int(c, "PET_NNODES (min)", lo, 1, INT_MAX, min));
    BT_CHECK(bt__spec_int(c, "PET_NNODES (max)", colon + 1, 1, INT_MAX, max));
    if (*min > *max)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "PET_NNODES='%s': the minimum exceeds the maximum", v);
    return BT_OK;
}

/* label = first DNS label of host; job = label minus suffix when it ends so, else label. */
static void job_from_host(const char *host, const char *suffix, char *job, size_t n)
{
    bt__spec_first_label(host, job, n);
    size_t len = strlen(job), sl = strlen(suffix);
    if (len > sl && !strcmp(job + len - sl, suffix))
        job[len - sl] = '\0';
}

static int present(struct bt__spec_ctx *c)
{
    if (bt__spec_env(c, "MASTER_ADDR"))
        return bt__spec_env(c, "RANK") || bt__spec_env(c, "WORLD_SIZE") ||
               bt__spec_env(c, "PET_NODE_RANK");
    if (bt__spec_env(c, "PET_RDZV_ENDPOINT"))
        return 1;
    return bt__spec_env(c, "PET_NNODES") && !bt__spec_env(c, "PET_MASTER_ADDR");
}

/* RANK and PET_NODE_RANK are the same number in a PyTorchJob: the pod's rank. */
static int node_rank(struct bt__spec_ctx *c, const char **var)
{
    int rank = -1, pet = -1;
    BT_CHECK(bt__spec_env_int(c, "RANK", 0, INT_MAX, &rank, NULL));
    BT_CHECK(bt__spec_env_int(c, "PET_NODE_RANK", 0, INT_MAX, &pet, NULL));
    if (rank >= 0 && pet >= 0 && rank != pet)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "RANK=%d and PET_NODE_RANK=%d disagree: both are this pod's node rank "
                           "in a PyTorchJob",
                           rank, pet);
    if (rank < 0 && pet < 0 && c->flags->node_rank < 0)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "RANK is not set (PyTorchJob with MASTER_ADDR: RANK is the pod's rank)");
    *var = rank >= 0 ? "RANK" : "PET_NODE_RANK";
    c->spec->node_rank = rank >= 0 ? rank : pet;
    return BT_OK;
}

/* Node count from PET_NNODES and WORLD_SIZE = nodes * env_n; both given must agree. */
static int master_nnodes(struct bt__spec_ctx *c, int env_n)
{
    struct bt__spec *s = c->spec;
    int ws = -1, min = 0, max = 0;
    const char *nn = bt__spec_use(c, "PET_NNODES");
    BT_CHECK(bt__spec_env_int(c, "WORLD_SIZE", 1, INT_MAX, &ws, NULL));
    if (ws > 0 && ws % env_n)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "WORLD_SIZE=%d is not a multiple of PET_NPROC_PER_NODE=%d", ws, env_n);
    if (nn) {
        BT_CHECK(pet_nnodes(c, nn, &min, &max));
        s->elastic = min != max;
    } else if (ws > 0) {
        min = max = ws / env_n;
    } else {
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "neither PET_NNODES nor WORLD_SIZE is set: the node count is unknown");
    }
    if (nn && ws > 0 && !s->elastic && ws / env_n != max)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "WORLD_SIZE=%d disagrees with PET_NNODES=%s x PET_NPROC_PER_NODE=%d", ws,
                           nn, env_n);
    s->nnodes = max;
    s->nnodes_min = min;
    s->nnodes_max = max;
    return BT_OK;
}

static int fill_master(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *addr = bt__spec_use(c, "MASTER_ADDR"), *rank_var = "RANK";
    int mport = 0, env_n;
    char job[128];
    BT_CHECK(bt__spec_env_int(c, "MASTER_PORT", 1, 65535, &mport, "PyTorchJob with MASTER_ADDR"));
    BT_CHECK(pet_nproc(c, &env_n));
    BT_CHECK(node_rank(c, &rank_var));
    BT_CHECK(master_nnodes(c, env_n));
    if (s->node_rank >= s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "%s=%d is out of range: the job has %d node(s) (PET_NNODES/WORLD_SIZE)",
                           rank_var, s->node_rank, s->nnodes);
    BT_CHECK(
        bt__spec_hostport(c, "MASTER_ADDR", addr, s->rdzv_host, sizeof(s->rdzv_host), &mport, 0));
    bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    s->master_port = mport;
    BT_CHECK(bt__spec_store_port(c, "MASTER_PORT", mport, &s->rdzv_port));
    job_from_host(addr, "-master-0", job, sizeof(job));
    bt__spec_set_job(c, job);
    return BT_OK;
}

/* The pod's index from its hostname <job>-worker-<i>. */
static int worker_index(struct bt__spec_ctx *c, char *job, size_t jobsz)
{
    struct bt__spec *s = c->spec;
    char hn[BT_SPEC_HOST_MAX] = "";
    int idx;
    if (bt__spec_hostname(c, hn, sizeof(hn)) == 0 &&
        bt__spec_split_name(hn, "worker", job, jobsz, &idx) == 0) {
        if (idx >= s->nnodes_max)
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                               "HOSTNAME=%s: worker index %d is out of range for PET_NNODES "
                               "(at most %d nodes)",
                               hn, idx, s->nnodes_max);
        s->node_rank = idx;
        return BT_OK;
    }
    if (c->flags->node_rank >= 0)
        return BT_OK;
    return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                       "worker-only PyTorchJob: HOSTNAME='%s' is not of the form <job>-worker-<i>, "
                       "so this pod's index is unknown; pass --node-rank",
                       hn);
}

static int fill_worker_only(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *ep = bt__spec_use(c, "PET_RDZV_ENDPOINT"), *nn = bt__spec_use(c, "PET_NNODES");
    const char *id;
    char job[128] = "";
    int env_n, eport = BT_SPEC_PYTORCHJOB_PORT;
    if (!nn)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "PET_NNODES is not set (PyTorchJob without MASTER_ADDR)");
    BT_CHECK(pet_nnodes(c, nn, &s->nnodes_min, &s->nnodes_max));
    s->nnodes = s->nnodes_max;
    s->elastic = ep || s->nnodes_min != s->nnodes_max;
    BT_CHECK(pet_nproc(c, &env_n));
    BT_CHECK(bt__spec_env_int(c, "PET_MAX_RESTARTS", 0, INT_MAX, &s->max_restarts, NULL));
    BT_CHECK(worker_index(c, job, sizeof(job)));
    if (ep) {
        BT_CHECK(bt__spec_hostport(c, "PET_RDZV_ENDPOINT", ep, s->rdzv_host, sizeof(s->rdzv_host),
                                   &eport, 1));
    } else if (job[0]) {
        snprintf(s->rdzv_host, sizeof(s->rdzv_host), "%s-worker-0", job);
        bt__spec_from(s, "default endpoint <job>-worker-0:23456");
    } else {
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "worker-only PyTorchJob without PET_RDZV_ENDPOINT: set it or pass "
                           "--rdzv HOST:PORT");
    }
    if (!job[0] && (id = bt__spec_use(c, "PET_RDZV_ID")))
        bt__spec_copy(job, sizeof(job), id);
    if (!job[0])
        job_from_host(s->rdzv_host, "-worker-0", job, sizeof(job));
    bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    s->master_port = eport;
    BT_CHECK(bt__spec_store_port(c, "PET_RDZV_ENDPOINT's port", eport, &s->rdzv_port));
    bt__spec_set_job(c, job);
    return BT_OK;
}

static int fill(struct bt__spec_ctx *c)
{
    if (bt__spec_env(c, "MASTER_ADDR"))
        return fill_master(c);
    if (bt__spec_env(c, "PET_RDZV_ENDPOINT") || bt__spec_env(c, "PET_NNODES"))
        return fill_worker_only(c);
    return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                       "--spec pytorchjob: none of MASTER_ADDR, PET_RDZV_ENDPOINT, PET_NNODES is "
                       "set");
}

const struct bt__spec_source_ops bt__spec_pytorch_ops = {BT_SPEC_PYTORCHJOB, present, fill};

/* ---- Kubeflow Trainer v2 ---- */

static int trainer_present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "PET_MASTER_ADDR") && !bt__spec_env(c, "MASTER_ADDR");
}

static int trainer_fill(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *addr = bt__spec_use(c, "PET_MASTER_ADDR"), *nn;
    const char *why = "Trainer v2 TrainJob";
    int env_n, port = 0;
    char job[128];
    if (!addr)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "PET_MASTER_ADDR is not set (%s)", why);
    BT_CHECK(bt__spec_env_int(c, "PET_MASTER_PORT", 1, 65535, &port, why));
    if (!(nn = bt__spec_use(c, "PET_NNODES")))
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "PET_NNODES is not set (%s)", why);
    BT_CHECK(pet_nnodes(c, nn, &s->nnodes_min, &s->nnodes_max));
    s->nnodes = s->nnodes_max;
    s->elastic = s->nnodes_min != s->nnodes_max;
    BT_CHECK(pet_nproc(c, &env_n));
    BT_CHECK(bt__spec_env_int(c, "PET_NODE_RANK", 0, INT_MAX, &s->node_rank,
                              c->flags->node_rank < 0 ? why : NULL));
    if (s->node_rank >= s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "PET_NODE_RANK=%d is out of range: PET_NNODES=%s", s->node_rank, nn);
    BT_CHECK(bt__spec_hostport(c, "PET_MASTER_ADDR", addr, s->rdzv_host, sizeof(s->rdzv_host),
                               &port, 0));
    bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    s->master_port = port;
    BT_CHECK(bt__spec_store_port(c, "PET_MASTER_PORT", port, &s->rdzv_port));
    const char *dot = strchr(addr, '.'); /* <job>-node-0-0.<job>: the subdomain is the job */
    if (dot && dot[1] && dot[1] != ':')
        bt__spec_first_label(dot + 1, job, sizeof(job));
    else
        job_from_host(addr, "-node-0-0", job, sizeof(job));
    bt__spec_set_job(c, job);
    return BT_OK;
}

const struct bt__spec_source_ops bt__spec_trainer_ops = {BT_SPEC_TRAINER_V2, trainer_present,
                                                         trainer_fill};
