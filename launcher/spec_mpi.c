/* spec_mpi.c: Open MPI and PMIx env, for `mpirun ... baton run ...`.
 *
 * Each process mpirun starts is one "node" of the baton job: node_rank = OMPI_COMM_WORLD_RANK
 * (or PMIX_RANK), nnodes = OMPI_COMM_WORLD_SIZE (or PMI_SIZE / SLURM_NTASKS under PMIx), and it
 * runs one worker (nproc_per_node 1, so the worker's rank is the MPI rank: first_rank) unless
 * -n says more. MPI's env does not say where rank 0 runs, so the store's endpoint comes from
 * --rdzv, or BATON_RDZV / BATON_RDZV_HOST[+BATON_RDZV_PORT] (pass them with `mpirun -x`), or is
 * 127.0.0.1:29501 when every rank is on this host (LOCAL_SIZE == SIZE).
 */
#include <limits.h>
#include <string.h>

#include "launcher/spec_impl.h"

static int present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "OMPI_COMM_WORLD_RANK") || bt__spec_env(c, "PMIX_RANK");
}

static int rank_and_size(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"};
    const char *rank_var = bt__spec_env(c, "OMPI_COMM_WORLD_RANK") ? "OMPI_COMM_WORLD_RANK"
                                                                   : "PMIX_RANK";
    const char *size_var = NULL;
    BT_CHECK(bt__spec_env_int(c, rank_var, 0, INT_MAX, &s->node_rank, "MPI job"));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && !size_var; i++)
        if (bt__spec_env(c, sizes[i]))
            size_var = sizes[i];
    if (!size_var)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "%s is set but the job size is not: none of OMPI_COMM_WORLD_SIZE, "
                           "PMI_SIZE, SLURM_NTASKS",
                           rank_var);
    BT_CHECK(bt__spec_env_int(c, size_var, 1, INT_MAX, &s->nnodes, NULL));
    if (s->node_rank >= s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s=%d is out of range: %s=%d", rank_var,
                           s->node_rank, size_var, s->nnodes);
    return BT_OK;
}

static int endpoint(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    int found = bt__spec_baton_rdzv(c), lsize = -1;
    if (found < 0)
        return found;
    if (found || c->flags->rdzv)
        return BT_OK;
    BT_CHECK(bt__spec_env_int(c, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, INT_MAX, &lsize, NULL));
    if (lsize != s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "MPI job on several hosts (OMPI_COMM_WORLD_LOCAL_SIZE=%d of "
                           "%d ranks): set BATON_RDZV=HOST:PORT (mpirun -x BATON_RDZV) or pass "
                           "--rdzv HOST:PORT with rank 0's host",
                           lsize, s->nnodes);
    bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), "127.0.0.1");
    s->master_port = BT_SPEC_DEFAULT_MASTER_PORT;
    return bt__spec_store_port(c, "the default master port", s->master_port, &s->rdzv_port);
}

static int fill(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *id;
    if (!present(c))
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "--spec mpi: neither OMPI_COMM_WORLD_RANK nor PMIX_RANK is set "
                           "(start baton under mpirun)");
    BT_CHECK(rank_and_size(c));
    BT_CHECK(bt__spec_env_int(c, "OMPI_COMM_WORLD_LOCAL_RANK", 0, INT_MAX, &(int){0}, NULL));
    BT_CHECK(endpoint(c));
    s->nproc_per_node = 1;
    id = bt__spec_use(c, "PMIX_NAMESPACE");
    if (!id)
        id = bt__spec_use(c, "OMPI_MCA_ess_base_jobid");
    bt__spec_set_job(c, id ? id : "mpi");
    return BT_OK;
}

const struct bt__spec_source_ops bt__spec_mpi_ops = {BT_SPEC_MPI, present, fill};
