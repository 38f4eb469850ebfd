/* run_pending.c: naming the nodes a launcher is still waiting for, and the line it gives up
 * with. A node that never joins is, on Kubernetes, most often a pod still Pending (no node has
 * the CPU, memory or GPUs it asks for, or its gang is not admitted yet), so the lines name
 * each missing node by rank and, where the spec tells, by pod name, and say so.
 *
 * Pod names come from node 0's host in the spec (the rendezvous host, the operator's names):
 *   <job>-master-0 or <job>-chief-0   node 0 is that pod, node R >= 1 is <job>-worker-<R-1>
 *                                     (PyTorchJob with a Master, TFJob with a Chief/Master)
 *   <prefix>-0                        node R is <prefix>-<R> (worker-only PyTorchJob and TFJob,
 *                                     JAXJob, Indexed Job, Trainer v2 <job>-trainer-node-0-<R>)
 * only for specs that come from Kubernetes; otherwise nodes are named by rank alone.
 * The missing ranks come from the store's answer to WAIT: the keys still missing, in request
 * order (the first BT__RDZV_MAX_LISTED of them), and how many there are in all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/run.h"

static int from_k8s(enum bt__spec_source src)
{
    return src == BT_SPEC_PYTORCHJOB || src == BT_SPEC_TFJOB || src == BT_SPEC_INDEXED ||
           src == BT_SPEC_JAXJOB || src == BT_SPEC_TRAINER_V2;
}

static int ends_with(const char *s, size_t len, const char *tail)
{
    size_t t = strlen(tail);
    return len >= t && !memcmp(s + len - t, tail, t);
}

void bt__run_node_name(const struct bt__spec *s, int rank, char *out, size_t n)
{
    const char *h0 = s->rdzv_host[0] ? s->rdzv_host : s->master_addr;
    size_t len = strcspn(h0, ".:"); /* the first DNS label: the pod's own name */
    out[0] = '\0';
    if (!from_k8s(s->source) || len < 3 || !ends_with(h0, len, "-0"))
        return;
    if (ends_with(h0, len, "-master-0") || ends_with(h0, len, "-chief-0")) {
        size_t job = len - (ends_with(h0, len, "-master-0") ? 9 : 8);
        if (rank == 0)
            snprintf(out, n, "%.*s", (int)len, h0);
        else
            snprintf(out, n, "%.*s-worker-%d", (int)job, h0, rank - 1);
        return;
    }
    snprintf(out, n, "%.*s-%d", (int)(len - 2), h0, rank);
}

int bt__run_missing_ranks(const char *store_err, int gen, int *ranks, int max, int *total)
{
    const char *p = strstr(store_err, "still missing ");
    char prefix[32];
    int n = 0, len = snprintf(prefix, sizeof(prefix), "l/%d/node/", gen);
    *total = 0;
    if (!p || sscanf(p, "still missing %d", total) != 1)
        return 0;
    for (p = strstr(p, prefix); p && n < max; p = strstr(p + len, prefix))
        ranks[n++] = atoi(p + len);
    return n;
}

/* "node 2 (pod mnist-worker-1)" or "node 2" into out at *used. */
static void name_one(const struct bt__run *r, int rank, int first, char *out, size_t n,
                     size_t *used)
{
    char pod[BT_SPEC_HOST_MAX];
    bt__run_node_name(&r->spec, rank, pod, sizeof(pod));
    if (*used >= n)
        return;
    int k = snprintf(out + *used, n - *used, "%snode %d%s%s%s", first ? "" : ", ", rank,
                     pod[0] ? " (pod " : "", pod, pod[0] ? ")" : "");
    *used += k > 0 ? (size_t)k : 0;
}

int bt__run_missing_line(const struct bt__run *r, const char *store_err, char *out, size_t n)
{
    int ranks[64], total = 0;
    int listed = bt__run_missing_ranks(store_err, r->restart, ranks, 64, &total);
    size_t used = 0;
    int k = snprintf(out, n, "%d of %d nodes to join: ", total, r->spec.nnodes);
    used = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < listed; i++)
        name_one(r, ranks[i], i == 0, out, n, &used);
    if (total > listed && used < n)
        snprintf(out + used, n - used, " and %d more", total - listed);
    if (listed == 0 && used < n)
        snprintf(out + used, n - used, "(which ones: %s)", store_err);
    return total;
}

/* The first missing node's pod, for the hint's `kubectl describe pod NAME`. */
static void first_pod(const struct bt__run *r, const char *store_err, char *out, size_t n)
{
    int rank = 0, total = 0;
    out[0] = '\0';
    if (bt__run_missing_ranks(store_err, r->restart, &rank, 1, &total) == 1)
        bt__run_node_name(&r->spec, rank, out, n);
}

void bt__run_pending_hint(const struct bt__run *r, const char *store_err, char *out, size_t n)
{
    char pod[BT_SPEC_HOST_MAX];
    first_pod(r, store_err, pod, sizeof(pod));
    snprintf(out, n,
             "hint: a node that never joins is often a pod still Pending (unschedulable: not "
             "enough free CPU, memory or GPUs, or its gang not admitted)%s%s%s",
             pod[0] ? ": kubectl describe pod " : "", pod,
             pod[0] ? ""
                    : "; are all launchers "
                      "running, with this --rdzv?");
}
