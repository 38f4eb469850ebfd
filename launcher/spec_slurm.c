/* spec_slurm.c: Slurm env, for `srun --ntasks-per-node=1 baton run ...`.
 *
 * One srun task per node: node_rank = SLURM_NODEID, nnodes = SLURM_NNODES (or
 * SLURM_JOB_NUM_NODES). When srun starts more tasks than nodes (SLURM_NTASKS > SLURM_NNODES)
 * each task is one "node" of one worker, as under mpirun: node_rank = SLURM_PROCID, nnodes =
 * SLURM_NTASKS, nproc_per_node 1. The store runs on the first host of the node list
 * (SLURM_STEP_NODELIST, else SLURM_JOB_NODELIST, else SLURM_NODELIST) on BATON_RDZV_PORT, else
 * MASTER_PORT + 1, else 29501; BATON_RDZV=HOST:PORT overrides both.
 *
 * Node lists are Slurm hostlist expressions: comma-separated items, each text with bracketed
 * ranges, e.g. "gpu[01-04,07]" (zero padding kept: the width of the range's low end),
 * "a[1-3],b5", "rack[1-2]-n[1-2]" (several brackets: the product, leftmost slowest).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/spec_impl.h"

#define MAX_EXPAND 1000000 /* names in one expression: a bound against "n[0-999999999]" */

struct expand {
    char (*names)[BT_SPEC_HOST_MAX];
    int max, count;
};

static int emit(struct expand *e, const char *name)
{
    if (++e->count > MAX_EXPAND)
        return -1;
    if (e->names && e->count <= e->max)
        bt__spec_copy(e->names[e->count - 1], BT_SPEC_HOST_MAX, name);
    return 0;
}

static int expand_item(struct expand *e, const char *s, size_t len, char *buf, size_t used);

/* One range "lo" or "lo-hi" of a bracket, each value followed by the rest of the item. */
static int expand_range(struct expand *e, const char *r, size_t rl, const char *rest,
                        size_t restlen, char *buf, size_t used)
{
    const char *dash = memchr(r, '-', rl);
    size_t lol = dash ? (size_t)(dash - r) : rl, hil = dash ? rl - lol - 1 : rl;
    const char *hi = dash ? dash + 1 : r;
    if (!lol || !hil || lol > 9 || hil > 9 || strspn(r, "0123456789") < lol ||
        (dash && strspn(hi, "0123456789") < hil))
        return -1;
    long a = strtol(r, NULL, 10), b = strtol(hi, NULL, 10);
    int width = r[0] == '0' ? (int)lol : 1;
    if (b < a || b - a >= MAX_EXPAND)
        return -1;
    for (long v = a; v <= b; v++) {
        int n = snprintf(buf + used, BT_SPEC_HOST_MAX - used, "%0*ld", width, v);
        if (n < 0 || used + (size_t)n >= BT_SPEC_HOST_MAX)
            return -1;
        if (expand_item(e, rest, restlen, buf, used + (size_t)n) != 0)
            return -1;
    }
    return 0;
}

/* s[0..len): text and brackets; buf[0..used) is the prefix built so far. */
static int expand_item(struct expand *e, const char *s, size_t len, char *buf, size_t used)
{
    const char *lb = memchr(s, '[', len);
    size_t lit = lb ? (size_t)(lb - s) : len;
    if (memchr(s, ']', lit) || used + lit >= BT_SPEC_HOST_MAX)
        return -1;
    memcpy(buf + used, s, lit);
    used += lit;
    if (!lb) {
        buf[used] = '\0';
        return used ? emit(e, buf) : -1;
    }
    const char *rb = memchr(lb, ']', len - lit);
    if (!rb || memchr(lb + 1, '[', (size_t)(rb - lb - 1)) || rb == lb + 1)
        return -1;
    const char *rest = rb + 1;
    size_t restlen = len - (size_t)(rest - s);
    for (const char *r = lb + 1; r < rb;) {
        const char *comma = memchr(r, ',', (size_t)(rb - r));
        const char *end = comma ? comma : rb;
        if (expand_range(e, r, (size_t)(end - r), rest, restlen, buf, used) != 0)
            return -1;
        r = end + (comma ? 1 : 0);
        if (comma && r == rb)
            return -1; /* "[1,]" */
    }
    return 0;
}

int bt__slurm_nodelist_expand(const char *expr, char (*names)[BT_SPEC_HOST_MAX], int max)
{
    struct expand e = {names, max, 0};
    char buf[BT_SPEC_HOST_MAX];
    const char *item = expr;
    int depth = 0;
    if (!expr || !*expr)
        return -1;
    for (const char *p = expr;; p++) {
        if (*p == '[')
            depth++;
        else if (*p == ']')
            depth--;
        if (depth < 0 || depth > 1)
            return -1;
        if ((*p == ',' && depth == 0) || *p == '\0') {
            if (p == item || expand_item(&e, item, (size_t)(p - item), buf, 0) != 0)
                return -1;
            item = p + 1;
        }
        if (*p == '\0')
            break;
    }
    return depth == 0 ? e.count : -1;
}

static int present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "SLURM_JOB_ID") && bt__spec_env(c, "SLURM_NODEID");
}

static int rank_and_size(struct bt__spec_ctx *c, int *per_task)
{
    struct bt__spec *s = c->spec;
    const char *nn_var = bt__spec_env(c, "SLURM_NNODES") ? "SLURM_NNODES" : "SLURM_JOB_NUM_NODES";
    int ntasks = -1, nnodes = 0;
    BT_CHECK(bt__spec_env_int(c, nn_var, 1, INT_MAX, &nnodes, "Slurm job"));
    BT_CHECK(bt__spec_env_int(c, "SLURM_NTASKS", 1, INT_MAX, &ntasks, NULL));
    *per_task = ntasks > nnodes;
    if (*per_task) {
        s->nnodes = ntasks;
        BT_CHECK(bt__spec_env_int(c, "SLURM_PROCID", 0, INT_MAX, &s->node_rank,
                                  "Slurm job with more tasks than nodes"));
        if (s->node_rank >= ntasks)
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                               "SLURM_PROCID=%d is out of range: SLURM_NTASKS=%d", s->node_rank,
                               ntasks);
        s->nproc_per_node = 1;
        return BT_OK;
    }
    s->nnodes = nnodes;
    BT_CHECK(bt__spec_env_int(c, "SLURM_NODEID", 0, INT_MAX, &s->node_rank, "Slurm job"));
    if (s->node_rank >= nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "SLURM_NODEID=%d is out of range: %s=%d",
                           s->node_rank, nn_var, nnodes);
    return BT_OK;
}

static int endpoint(struct bt__spec_ctx *c, int per_task)
{
    static const char *const lists[] = {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                                        "SLURM_NODELIST"};
    struct bt__spec *s = c->spec;
    char first[1][BT_SPEC_HOST_MAX];
    const char *var = NULL, *v = NULL;
    int found = bt__spec_baton_rdzv(c);
    if (found)
        return found < 0 ? found : BT_OK;
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]) && !v; i++)
        v = bt__spec_use(c, var = lists[i]);
    if (!v)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "SLURM_JOB_NODELIST is not set: the rendezvous host is unknown");
    int n = bt__slurm_nodelist_expand(v, first, 1);
    if (n < 0)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "%s='%s' is not a Slurm host list (e.g. gpu[01-04,07],b5)", var, v);
    if (!per_task && n < s->nnodes)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s' names %d node(s), fewer than %d",
                           var, v, n, s->nnodes);
    bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), first[0]);
    s->master_port = BT_SPEC_DEFAULT_MASTER_PORT;
    BT_CHECK(bt__spec_env_int(c, "MASTER_PORT", 1, 65535, &s->master_port, NULL));
    s->rdzv_port = -1;
    BT_CHECK(bt__spec_env_int(c, "BATON_RDZV_PORT", 1, 65535, &s->rdzv_port, NULL));
    if (s->rdzv_port < 0 || c->flags->rdzv_port >= 0)
        BT_CHECK(bt__spec_store_port(c, "MASTER_PORT", s->master_port, &s->rdzv_port));
    return BT_OK;
}

static int fill(struct bt__spec_ctx *c)
{
    int per_task;
    const char *id = bt__spec_use(c, "SLURM_JOB_ID");
    if (!id)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--spec slurm: SLURM_JOB_ID is not set");
    BT_CHECK(rank_and_size(c, &per_task));
    BT_CHECK(endpoint(c, per_task));
    bt__spec_set_job(c, id);
    return BT_OK;
}

const struct bt__spec_source_ops bt__spec_slurm_ops = {BT_SPEC_SLURM, present, fill};
