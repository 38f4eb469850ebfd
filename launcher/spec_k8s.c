/* spec_k8s.c: JAXJob and plain Kubernetes Indexed Job env.
 *
 * JAXJob: COORDINATOR_ADDRESS=<job>-worker-0 (a "host:port" is accepted too),
 * COORDINATOR_PORT (6666), NUM_PROCESSES = pods, PROCESS_ID = this pod's index. The store
 * listens on the coordinator's port + 1.
 *
 * Indexed Job (batch/v1, completionMode Indexed): JOB_COMPLETION_INDEX is the node rank; the
 * rest comes from baton's own env in the manifest: BATON_NNODES (the Job's completions) and
 * BATON_RDZV=HOST:PORT (the store's endpoint on index 0's pod, e.g. through a headless
 * Service) or BATON_RDZV_HOST [+ BATON_RDZV_PORT, default 29501]. The job id is BATON_JOB_ID,
 * else the pod's hostname without its index: <job>-<index> or <job>-<index>-<suffix>. Auto
 * mode takes JOB_COMPLETION_INDEX alone (an Indexed Job of independent tasks) as standalone.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "launcher/spec_impl.h"

/* ---- JAXJob ---- */

static int jax_present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "COORDINATOR_ADDRESS") && bt__spec_env(c, "NUM_PROCESSES");
}

static int jax_fill(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *addr = bt__spec_use(c, "COORDINATOR_ADDRESS"), *why = "JAXJob";
    int port = -1, idx;
    char job[128];
    if (!addr)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "--spec jaxjob: COORDINATOR_ADDRESS is not set");
    BT_CHECK(bt__spec_hostport(c, "COORDINATOR_ADDRESS", addr, s->rdzv_host, sizeof(s->rdzv_host),
                               &port, 0));
    if (port < 0)
        BT_CHECK(bt__spec_env_int(c, "COORDINATOR_PORT", 1, 65535, &port, why));
    BT_CHECK(bt__spec_env_int(c, "NUM_PROCESSES", 1, INT_MAX, &s->nnodes, why));
    BT_CHECK(bt__spec_env_int(c, "PROCESS_ID", 0, INT_MAX, &s->node_rank,
                              c->flags->node_rank < 0 ? why : NULL));
    if (s->node_rank >= s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "PROCESS_ID=%d is out of range: NUM_PROCESSES=%d", s->node_rank,
                           s->nnodes);
    bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    s->master_port = port;
    BT_CHECK(bt__spec_store_port(c, "COORDINATOR_PORT", port, &s->rdzv_port));
    if (bt__spec_split_name(addr, "worker", job, sizeof(job), &idx) != 0)
        bt__spec_first_label(addr, job, sizeof(job));
    bt__spec_set_job(c, job);
    return BT_OK;
}

const struct bt__spec_source_ops bt__spec_jax_ops = {BT_SPEC_JAXJOB, jax_present, jax_fill};

/* ---- Indexed Job ---- */

static int indexed_present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "JOB_COMPLETION_INDEX") &&
           (bt__spec_env(c, "BATON_NNODES") || bt__spec_env(c, "BATON_RDZV") ||
            bt__spec_env(c, "BATON_RDZV_HOST"));
}

/* The job's name from an Indexed Job pod's hostname: <job>-<index>[-<suffix>]. */
static void indexed_job(struct bt__spec_ctx *c, int index, char *job, size_t n)
{
    char hn[BT_SPEC_HOST_MAX], label[BT_SPEC_HOST_MAX], tail[24];
    job[0] = '\0';
    if (bt__spec_hostname(c, hn, sizeof(hn)) != 0)
        return;
    bt__spec_first_label(hn, label, sizeof(label));
    int tl = snprintf(tail, sizeof(tail), "-%d", index);
    for (char *p = strstr(label, tail); p; p = strstr(p + 1, tail)) {
        const char *after = p + tl;
        if (p > label &&
            (*after == '\0' || (*after == '-' && after[1] && !strchr(after + 1, '-')))) {
            bt__spec_copy(job, (size_t)(p - label) + 1 < n ? (size_t)(p - label) + 1 : n, label);
            return;
        }
    }
    bt__spec_copy(job, n, label);
}

static int indexed_fill(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *why = "Indexed Job: set it in the manifest to the Job's completions";
    char job[128] = "";
    BT_CHECK(bt__spec_env_int(c, "JOB_COMPLETION_INDEX", 0, INT_MAX, &s->node_rank,
                              c->flags->node_rank < 0 ? "--spec indexed" : NULL));
    BT_CHECK(bt__spec_env_int(c, "BATON_NNODES", 1, INT_MAX, &s->nnodes,
                              c->flags->nnodes < 0 ? why : NULL));
    if (s->nnodes > 0 && s->node_rank >= s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "JOB_COMPLETION_INDEX=%d is out of range: BATON_NNODES=%d", s->node_rank,
                           s->nnodes);
    int found = bt__spec_baton_rdzv(c);
    if (found < 0)
        return found;
    if (!found && s->nnodes > 1 && !c->flags->rdzv)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "Indexed Job with BATON_NNODES=%d: set BATON_RDZV=HOST:PORT (index "
                           "0's pod, e.g. <job>-0.<service>:29501) or pass --rdzv",
                           s->nnodes);
    if (!found)
        bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), "127.0.0.1");
    else if (c->flags->rdzv_port >= 0)
        s->rdzv_port = c->flags->rdzv_port;
    if (!bt__spec_env(c, "BATON_JOB_ID"))
        indexed_job(c, s->node_rank, job, sizeof(job));
    bt__spec_set_job(c, job[0] ? job : "indexed");
    return BT_OK;
}

const struct bt__spec_source_ops bt__spec_indexed_ops = {BT_SPEC_INDEXED, indexed_present,
                                                         indexed_fill};
