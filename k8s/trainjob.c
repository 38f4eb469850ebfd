/* trainjob.c: a Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1) with its
 * ClusterTrainingRuntime or TrainingRuntime: the checks, then the JobSet the Trainer controller
 * would create from them. trainjob_render.c goes on to the Jobs, Pods and Service.
 *
 * What the Trainer does, and where (kubeflow/trainer @ 8c0f5059bd51):
 *   - spec.runtimeRef: name; kind defaults to ClusterTrainingRuntime, apiGroup to
 *     trainer.kubeflow.org (pkg/apis/trainer/v1alpha1/trainjob_types.go RuntimeRef).
 *   - Pod count of the trainer's replicated job (label trainer.kubeflow.org/trainjob-ancestor-step
 *     = trainer): mlPolicy.numNodes, overridden by spec.trainer.numNodes
 *     (pkg/runtime/core/trainingruntime.go newRuntimeInfo; plugins/torch/torch.go
 *     EnforceMLPolicy); it becomes the Job's parallelism and completions, and the replicated
 *     job's replicas is forced to 1 (plugins/jobset/jobset.go syncParallelCount,
 *     plugins/jobset/builder.go Trainer).
 *   - spec.trainer.resourcesPerNode is merged into the `node` container's resources, key by key
 *     (trainingruntime.go, pkg/util/trainingruntime MergeResourceRequirements).
 *   - The `node` container gets trainer.image, .command, .args when set, then trainer.env
 *     upserted, then PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (valueFrom fieldRef
 *     metadata.annotations['batch.kubernetes.io/job-completion-index']), PET_MASTER_ADDR =
 *     <trainjob>-node-0-0.<trainjob>, PET_MASTER_PORT = 29500, and container port 29500
 *     (torch.go EnforceMLPolicy; pkg/constants/constants.go).
 *   - PET_NPROC_PER_NODE: trainer.numProcPerNode, else "auto"; "auto" with no GPU resource
 *     (a resource whose name contains "gpu") becomes max(1, CPU request, else CPU limit,
 *     rounded up), from trainer.resourcesPerNode or else the runtime's node container
 *     (torch.go getNumCPUPerNode; pkg/runtime/runtime.go GetNumGPUPerNode).
 *   - JobSet: name and namespace of the TrainJob, labels and annotations of the runtime's
 *     spec.template.metadata, spec = the runtime's spec.template.spec so changed
 *     (jobset.go Build). The TrainJob's UID owner reference is left out (not known before).
 *   - The JobSet webhook's defaults (jobset @ 08dfbdfd682 pkg/webhooks/jobset_webhook.go
 *     Default, and the CRD's): successPolicy operator All, startupPolicy AnyOrder,
 *     network.enableDNSHostnames and publishNotReadyAddresses true, completionMode Indexed,
 *     pod restartPolicy OnFailure, groupName "default".
 *
 * What baton does not take (one line naming the field, exit 2): runtimes other than torch
 * (mlPolicy.mpi needs the Trainer's ssh Secret and hostfile; jax, xgboost, flux are not
 * checked), torch.envInjection, podGroupPolicy, initializers and runtimePatches, more than the
 * one trainer replicated job (named `node`, as PET_MASTER_ADDR assumes), JobSet fields that
 * change names or networking (network.subdomain, enableDNSHostnames false, coordinator,
 * volumeClaimPolicies, dependsOn, ...), numNodes < 1, suspend: true.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "k8s/trainjob.h"

static const char api_trainer[] = "trainer.kubeflow.org/v1alpha1";

/* "<file>: <Kind> '<name>': <what>" in err; returns BT_ERR_INVALID_USAGE. */
static int bad(struct bt__err *err, const char *src, const struct bt__yn *doc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(struct bt__err *err, const char *src, const struct bt__yn *doc, const char *fmt, ...)
{
    char line[BT__ERR_MSG_MAX - 160];
    const char *kind = bt__yn_gets(doc, "kind");
    const char *name = bt__yn_gets(bt__yn_get(doc, "metadata"), "name");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: %s '%.60s': %s", src, kind ? kind : "?",
                       name ? name : "?", line);
}

int bt__k8s_is_trainjob(const struct bt__yn *doc)
{
    const char *k = bt__yn_gets(doc, "kind");
    return k && !strcmp(k, "TrainJob");
}

static int is_runtime(const struct bt__yn *doc)
{
    const char *k = bt__yn_gets(doc, "kind");
    return k && (!strcmp(k, "TrainingRuntime") || !strcmp(k, "ClusterTrainingRuntime"));
}

/* A DNS-1035 label of at most max characters. */
static int label_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* The first key of map m that is not in allowed (a NULL-ended list), or NULL. */
static const char *unknown_key(const struct bt__yn *m, const char *const *allowed)
{
    for (size_t i = 0; m && m->kind == BT_YN_MAP && i + 1 < m->n; i += 2) {
        size_t k = 0;
        while (allowed[k] && (m->v[i]->kind != BT_YN_SCALAR || strcmp(m->v[i]->s, allowed[k])))
            k++;
        if (!allowed[k])
            return m->v[i]->kind == BT_YN_SCALAR ? m->v[i]->s : "?";
    }
    return NULL;
}

/* A whole number scalar into *out; 0 when it is one (negative allowed), -1 otherwise. */
static int whole(const struct bt__yn *v, long *out)
{
    char *end;
    if (!v || v->kind != BT_YN_SCALAR || v->style != YAML_PLAIN_SCALAR_STYLE)
        return -1;
    errno = 0;
    *out = strtol(v->s, &end, 10);
    return errno || end == v->s || *end ? -1 : 0;
}

/* ---- reading ---- */

static int read_file(const char *path, char **buf, size_t *len, struct bt__err *err)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 20;
    *len = 0;
    if (!f)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "--runtime %s: %s", path, strerror(errno));
    *buf = malloc(cap);
    if (*buf)
        *len = fread(*buf, 1, cap, f);
    int rc = !*buf         ? bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory", path)
             : ferror(f)   ? bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: read error", path)
             : *len == cap ? bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: larger than 1 MiB", path)
                           : BT_OK;
    fclose(f);
    return rc;
}

/* Adds the documents of --runtime FILE to tj->docs. */
static int load_runtime_file(struct bt__k8s_trainjob *tj, const char *path, struct bt__err *err)
{
    size_t len = 0, n = 0;
    BT_CHECK(read_file(path, &tj->runtime_buf, &len, err));
    BT_CHECK(bt__yn_load(tj->runtime_buf, len, path, tj->docs + tj->ndocs,
                         BT_TJ_MAX_DOCS - tj->ndocs, &n, err));
    for (size_t i = 0; i < n; i++)
        tj->src[tj->ndocs + i] = path;
    tj->ndocs += n;
    return BT_OK;
}

/* ---- the TrainJob ---- */

static int check_trainjob(struct bt__k8s_job *job, const char *src, struct bt__err *err)
{
    static const char *const spec_keys[] = {"runtimeRef", "trainer", "suspend", "managedBy", NULL};
    static const char *const trainer_keys[] = {"image",          "command",
                                               "args",           "env",
                                               "numNodes",       "resourcesPerNode",
                                               "numProcPerNode", NULL};
    const struct bt__yn *d = job->doc, *md = bt__yn_get(d, "metadata");
    const struct bt__yn *spec = bt__yn_get(d, "spec"), *tr = bt__yn_get(spec, "trainer");
    const char *api = bt__yn_gets(d, "apiVersion"), *name = bt__yn_gets(md, "name");
    const char *ns = bt__yn_gets(md, "namespace"), *k, *susp = bt__yn_gets(spec, "suspend");
    if (!api || strcmp(api, api_trainer))
        return bad(err, src, d, "apiVersion '%s'; a TrainJob is %s", api ? api : "(none)",
                   api_trainer);
    if (!label_ok(name, 63 - 9)) /* the host name <name>-node-0-<i> is a 63-character label */
        return bad(err, src, d,
                   "metadata.name is not a DNS-1035 label of at most 54 characters (the pods' "
                   "host names are <name>-node-0-<index>)");
    if (ns && !label_ok(ns, 63))
        return bad(err, src, d, "metadata.namespace '%s' is not a valid namespace", ns);
    snprintf(job->name, sizeof(job->name), "%s", name);
    snprintf(job->ns, sizeof(job->ns), "%s", ns ? ns : "default");
    if ((k = unknown_key(spec, spec_keys)))
        return bad(err, src, d,
                   "spec.%s: not supported by baton k8s (it takes runtimeRef and "
                   "trainer)",
                   k);
    if ((k = unknown_key(tr, trainer_keys)))
        return bad(err, src, d, "spec.trainer.%s: not a field baton k8s supports", k);
    if (susp && strcmp(susp, "false"))
        return bad(err, src, d, "spec.suspend: %s: baton k8s renders running jobs only", susp);
    if (!bt__yn_gets(bt__yn_get(spec, "runtimeRef"), "name"))
        return bad(err, src, d, "spec.runtimeRef.name is missing");
    return BT_OK;
}

/* trainer.env may not set what the Torch plugin injects (torch.go Validate). */
static int check_reserved_env(const struct bt__k8s_job *job, const char *src, struct bt__err *err)
{
    static const char *const reserved[] = {"PET_NNODES",      "PET_NPROC_PER_NODE", "PET_NODE_RANK",
                                           "PET_MASTER_ADDR", "PET_MASTER_PORT",    NULL};
    const struct bt__yn *env = bt__yn_get(bt__yn_get(bt__yn_get(job->doc, "spec"), "trainer"),
                                          "env");
    for (size_t i = 0; env && env->kind == BT_YN_SEQ && i < env->n; i++)
        for (size_t r = 0; reserved[r]; r++) {
            const char *n = bt__yn_gets(env->v[i], "name");
            if (n && !strcmp(n, reserved[r]))
                return bad(err, src, job->doc,
                           "spec.trainer.env: %s is reserved (the Trainer's torch plugin sets it)",
                           n);
        }
    return BT_OK;
}

/* The runtime spec.runtimeRef names, among the documents; a clear line when it is not there. */
static int find_runtime(struct bt__k8s_job *job, const char *src, struct bt__err *err)
{
    struct bt__k8s_trainjob *tj = job->tj;
    const struct bt__yn *ref = bt__yn_get(bt__yn_get(job->doc, "spec"), "runtimeRef");
    const char *name = bt__yn_gets(ref, "name"), *kind = bt__yn_gets(ref, "kind");
    const char *group = bt__yn_gets(ref, "apiGroup"), *other = NULL;
    kind = kind ? kind : "ClusterTrainingRuntime";
    if (group && strcmp(group, "trainer.kubeflow.org"))
        return bad(err, src, job->doc,
                   "spec.runtimeRef.apiGroup '%s': a runtime is in "
                   "trainer.kubeflow.org",
                   group);
    if (strcmp(kind, "ClusterTrainingRuntime") && strcmp(kind, "TrainingRuntime"))
        return bad(err, src, job->doc,
                   "spec.runtimeRef.kind '%s' is not ClusterTrainingRuntime "
                   "or TrainingRuntime",
                   kind);
    for (size_t i = 0; i < tj->ndocs; i++) {
        const struct bt__yn *d = tj->docs[i], *md = bt__yn_get(d, "metadata");
        const char *n = bt__yn_gets(md, "name"), *ns = bt__yn_gets(md, "namespace");
        if (!d || !is_runtime(d) || !n || strcmp(n, name))
            continue;
        if (strcmp(bt__yn_gets(d, "kind"), kind))
            other = bt__yn_gets(d, "kind");
        else if (!strcmp(kind, "TrainingRuntime") && ns && strcmp(ns, job->ns))
            other = "TrainingRuntime in another namespace";
        else if (!tj->runtime) {
            tj->runtime = d;
            tj->runtime_src = tj->src[i];
        }
    }
    snprintf(tj->runtime_kind, sizeof(tj->runtime_kind), "%s", kind);
    snprintf(tj->runtime_name, sizeof(tj->runtime_name), "%s", name);
    if (!tj->runtime)
        return bad(err, src, job->doc,
                   "spec.runtimeRef: %s '%s' is not in %s%s (give it in the same file or with "
                   "--runtime FILE)%s%s%s",
                   kind, name, src, tj->runtime_buf ? " or --runtime" : "",
                   other ? "; there is a " : "", other ? other : "",
                   other ? " of that name (check runtimeRef.kind)" : "");
    return BT_OK;
}

/* ---- the runtime ---- */

/* mlPolicy: torch (without envInjection); numNodes. */
static int check_mlpolicy(struct bt__k8s_trainjob *tj, struct bt__err *err)
{
    static const char *const fw[] = {"mpi", "jax", "xgboost", "flux", NULL};
    const struct bt__yn *rt = tj->runtime, *ml = bt__yn_get(bt__yn_get(rt, "spec"), "mlPolicy");
    const struct bt__yn *torch = bt__yn_get(ml, "torch");
    for (size_t i = 0; fw[i] && !torch; i++)
        if (bt__yn_get(ml, fw[i]))
            return bad(err, tj->runtime_src, rt,
                       "spec.mlPolicy.%s: baton k8s renders torch runtimes only (mlPolicy.torch)%s",
                       fw[i],
                       !strcmp(fw[i], "mpi") ? "; an MPI TrainJob needs the Trainer's ssh Secret "
                                               "and hostfile, as an MPIJob needs the mpi-operator"
                                             : "");
    if (!torch)
        return bad(err, tj->runtime_src, rt,
                   "spec.mlPolicy has no known framework (torch or mpi); baton k8s renders "
                   "mlPolicy.torch runtimes");
    if (bt__yn_get(torch, "envInjection"))
        return bad(err, tj->runtime_src, rt,
                   "spec.mlPolicy.torch.envInjection: not supported by baton k8s");
    if (bt__yn_get(bt__yn_get(rt, "spec"), "podGroupPolicy"))
        return bad(err, tj->runtime_src, rt,
                   "spec.podGroupPolicy: gang scheduling is not supported by baton k8s");
    return BT_OK;
}

/* numNodes: trainer.numNodes, else mlPolicy.numNodes, else 1; at least 1. */
static int num_nodes(struct bt__k8s_job *job, const char *src, struct bt__err *err)
{
    struct bt__k8s_trainjob *tj = job->tj;
    const struct bt__yn *tn = bt__yn_get(bt__yn_get(bt__yn_get(job->doc, "spec"), "trainer"),
                                         "numNodes");
    const struct bt__yn *rn = bt__yn_get(bt__yn_get(bt__yn_get(tj->runtime, "spec"), "mlPolicy"),
                                         "numNodes");
    const struct bt__yn *n = tn ? tn : rn;
    long v = 1;
    if (n && (whole(n, &v) || v < 1 || v > BT_TJ_MAX_NODES))
        return bad(err, tn ? src : tj->runtime_src, tn ? job->doc : tj->runtime,
                   "%s is %s; a TrainJob needs 1 to %d nodes",
                   tn ? "spec.trainer.numNodes" : "spec.mlPolicy.numNodes",
                   n->kind == BT_YN_SCALAR ? n->s : "not a number", BT_TJ_MAX_NODES);
    tj->num_nodes = (int)v;
    return BT_OK;
}

/* The JobSet spec of the runtime: only fields baton renders faithfully; one replicated job,
 * `node`, the trainer's, with a container `node`. Returns its index in *rj. */
static int check_jobset_spec(struct bt__k8s_trainjob *tj, struct bt__err *err)
{
    static const char *const js_keys[] = {"replicatedJobs",          "network",
                                          "successPolicy",           "startupPolicy",
                                          "failurePolicy",           "suspend",
                                          "ttlSecondsAfterFinished", NULL};
    static const char *const net_keys[] = {"enableDNSHostnames", "publishNotReadyAddresses", NULL};
    static const char *const rj_keys[] = {"name", "replicas", "groupName", "template", NULL};
    const struct bt__yn *rt = tj->runtime, *tmpl = bt__yn_get(bt__yn_get(rt, "spec"), "template");
    const struct bt__yn *js = bt__yn_get(tmpl, "spec"), *rjs = bt__yn_get(js, "replicatedJobs");
    const char *k, *dns = bt__yn_gets(bt__yn_get(js, "network"), "enableDNSHostnames");
    const char *op = bt__yn_gets(bt__yn_get(js, "successPolicy"), "operator");
    if ((k = unknown_key(js, js_keys)))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.%s: a JobSet field baton k8s does not support", k);
    if ((k = unknown_key(bt__yn_get(js, "network"), net_keys)))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.network.%s: a JobSet field baton k8s does not support "
                   "(PET_MASTER_ADDR is <trainjob>-node-0-0.<trainjob>)",
                   k);
    if (dns && strcmp(dns, "true"))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.network.enableDNSHostnames: "
                   "false is not supported (PET_MASTER_ADDR needs the pods' DNS names)");
    if (op && strcmp(op, "All"))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.successPolicy.operator '%s': "
                   "baton k8s supports All",
                   op);
    if (!rjs || rjs->kind != BT_YN_SEQ || rjs->n != 1)
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.replicatedJobs: baton k8s takes exactly one, the trainer's "
                   "(has %zu; initializers and launchers are not supported)",
                   rjs && rjs->kind == BT_YN_SEQ ? rjs->n : (size_t)0);
    const struct bt__yn *rj = rjs->v[0], *jt = bt__yn_get(rj, "template");
    const char *name = bt__yn_gets(rj, "name"), *rep = bt__yn_gets(rj, "replicas");
    const char *anc = bt__yn_gets(bt__yn_get(bt__yn_get(jt, "metadata"), "labels"),
                                  "trainer.kubeflow.org/trainjob-ancestor-step");
    if ((k = unknown_key(rj, rj_keys)))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.replicatedJobs[0].%s: a JobSet "
                   "field baton k8s does not support",
                   k);
    if (!name || strcmp(name, "node") || !anc || strcmp(anc, "trainer"))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.replicatedJobs[0]: must be named node and labelled "
                   "trainer.kubeflow.org/trainjob-ancestor-step: trainer (the Torch plugin's "
                   "PET_MASTER_ADDR is <trainjob>-node-0-0.<trainjob>)");
    if (rep && strcmp(rep, "1"))
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.replicatedJobs[0].replicas: %s; "
                   "the Trainer sets it to 1",
                   rep);
    const struct bt__yn *ps = bt__yn_get(bt__yn_get(bt__yn_get(jt, "spec"), "template"), "spec");
    const struct bt__yn *c = bt__k8s_container(ps, "node");
    if (!c)
        return bad(err, tj->runtime_src, rt,
                   "spec.template.spec.replicatedJobs[0]: no container "
                   "named node (the Trainer's trainer container)");
    return BT_OK;
}

/* ---- PET_NPROC_PER_NODE ---- */

/* A resource quantity rounded up to a whole number, as resource.Quantity.Value() does. */
static long qty_ceil(const char *s)
{
    static const struct {
        const char *sfx;
        double mul;
    } sfx[] = {{"", 1},    {"m", 1e-3},    {"k", 1e3},      {"M", 1e6},
               {"G", 1e9}, {"Ki", 1024.0}, {"Mi", 1 << 20}, {"Gi", 1 << 30}};
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s)
        return 0;
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
        if (!strcmp(end, sfx[i].sfx))
            return (long)ceil(v * sfx[i].mul - 1e-9);
    return 0;
}

/* The count of a resource whose name contains "gpu", in list m, or 0. */
static long gpus(const struct bt__yn *m)
{
    for (size_t i = 0; m && m->kind == BT_YN_MAP && i + 1 < m->n; i += 2)
        if (m->v[i]->kind == BT_YN_SCALAR && strcasestr(m->v[i]->s, "gpu") &&
            m->v[i + 1]->kind == BT_YN_SCALAR)
            return qty_ceil(m->v[i + 1]->s);
    return 0;
}

static void nproc(struct bt__k8s_job *job, const struct bt__yn *node)
{
    struct bt__k8s_trainjob *tj = job->tj;
    const struct bt__yn *tr = bt__yn_get(bt__yn_get(job->doc, "spec"), "trainer");
    const struct bt__yn *res = bt__yn_get(tr, "resourcesPerNode");
    const char *np = bt__yn_gets(tr, "numProcPerNode");
    if (!res)
        res = bt__yn_get(node, "resources");
    const struct bt__yn *rq = bt__yn_get(res, "requests"), *lim = bt__yn_get(res, "limits");
    long g = gpus(rq) ? gpus(rq) : gpus(lim);
    long cpu = qty_ceil(bt__yn_gets(rq, "cpu"));
    if (cpu == 0)
        cpu = qty_ceil(bt__yn_gets(lim, "cpu"));
    if (np)
        snprintf(tj->nproc, sizeof(tj->nproc), "%.15s", np);
    else if (g == 0)
        snprintf(tj->nproc, sizeof(tj->nproc), "%ld", cpu > 1 ? cpu : 1);
    else
        snprintf(tj->nproc, sizeof(tj->nproc), "auto");
}

/* ---- the JobSet ---- */

static struct bt__yn *env_var(const char *name, const char *value)
{
    struct bt__yn *e = bt__yn_new(BT_YN_MAP);
    bt__yn_set(e, "name", bt__yn_str(name));
    bt__yn_set(e, "value", bt__yn_str(value));
    return e;
}

/* The field map m[key], made (an empty map or seq) when absent. */
static struct bt__yn *get_or_make(struct bt__yn *m, const char *key, enum bt__yn_kind kind)
{
    struct bt__yn *v = bt__yn_get(m, key);
    if (!v || v->kind != kind) {
        bt__yn_set(m, key, bt__yn_new(kind));
        v = bt__yn_get(m, key);
    }
    return v;
}

/* apply.UpsertEnvVars: replaces the entry of the same name in place, else appends. */
static void upsert_env(struct bt__yn *c, struct bt__yn *e)
{
    struct bt__yn *env = get_or_make(c, "env", BT_YN_SEQ);
    const char *name = bt__yn_gets(e, "name");
    for (size_t i = 0; env && name && i < env->n; i++) {
        const char *n = bt__yn_gets(env->v[i], "name");
        if (n && !strcmp(n, name)) {
            bt__yn_free(env->v[i]);
            env->v[i] = e;
            return;
        }
    }
    bt__yn_push(env, e);
}

/* trainer.resourcesPerNode merged into the container's resources, resource by resource. */
static void merge_resources(struct bt__yn *c, const struct bt__yn *per_node)
{
    static const char *const lists[] = {"limits", "requests"};
    if (!per_node)
        return;
    struct bt__yn *res = get_or_make(c, "resources", BT_YN_MAP);
    for (int l = 0; l < 2; l++) {
        const struct bt__yn *src = bt__yn_get(per_node, lists[l]);
        struct bt__yn *dst = src ? get_or_make(res, lists[l], BT_YN_MAP) : NULL;
        for (size_t i = 0; dst && src->kind == BT_YN_MAP && i + 1 < src->n; i += 2)
            if (src->v[i]->kind == BT_YN_SCALAR)
                bt__yn_set(dst, src->v[i]->s, bt__yn_copy(src->v[i + 1]));
    }
}

/* Port 29500 on the node container unless it has it (apply.UpsertPort). */
static void trainer_port(struct bt__yn *c)
{
    struct bt__yn *ports = get_or_make(c, "ports", BT_YN_SEQ);
    for (size_t i = 0; ports && i < ports->n; i++) {
        const char *p = bt__yn_gets(ports->v[i], "containerPort");
        if (p && atoi(p) == BT_TJ_PORT)
            return;
    }
    struct bt__yn *p = bt__yn_new(BT_YN_MAP);
    bt__yn_set(p, "containerPort", bt__yn_int(BT_TJ_PORT));
    bt__yn_push(ports, p);
}

/* The node container: trainer image/command/args/env/resources, the PET_* env, the port. */
static void node_container(struct bt__k8s_job *job, struct bt__yn *c)
{
    const struct bt__yn *tr = bt__yn_get(bt__yn_get(job->doc, "spec"), "trainer");
    const struct bt__yn *env = bt__yn_get(tr, "env");
    static const char *const over[] = {"image", "command", "args"};
    char b[160];
    nproc(job, c); /* from the runtime's resources, before the merge (torch.go) */
    for (int i = 0; i < 3; i++)
        if (bt__yn_get(tr, over[i]))
            bt__yn_set(c, over[i], bt__yn_copy(bt__yn_get(tr, over[i])));
    merge_resources(c, bt__yn_get(tr, "resourcesPerNode"));
    for (size_t i = 0; env && env->kind == BT_YN_SEQ && i < env->n; i++)
        upsert_env(c, bt__yn_copy(env->v[i]));
    snprintf(b, sizeof(b), "%d", job->tj->num_nodes);
    upsert_env(c, env_var("PET_NNODES", b));
    upsert_env(c, env_var("PET_NPROC_PER_NODE", job->tj->nproc));
    struct bt__yn *rank = bt__yn_new(BT_YN_MAP), *from = bt__yn_new(BT_YN_MAP);
    struct bt__yn *fr = bt__yn_new(BT_YN_MAP);
    bt__yn_set(fr, "fieldPath",
               bt__yn_str("metadata.annotations['batch.kubernetes.io/job-completion-index']"));
    bt__yn_set(from, "fieldRef", fr);
    bt__yn_set(rank, "name", bt__yn_str("PET_NODE_RANK"));
    bt__yn_set(rank, "valueFrom", from);
    upsert_env(c, rank);
    snprintf(b, sizeof(b), "%s-node-0-0.%s", job->name, job->name);
    upsert_env(c, env_var("PET_MASTER_ADDR", b));
    snprintf(b, sizeof(b), "%d", BT_TJ_PORT);
    upsert_env(c, env_var("PET_MASTER_PORT", b));
    trainer_port(c);
}

/* The JobSet webhook's defaults on the spec and the replicated job. */
static void jobset_defaults(struct bt__yn *spec, struct bt__yn *rj, struct bt__yn *podspec)
{
    if (!bt__yn_get(spec, "successPolicy"))
        bt__yn_set(get_or_make(spec, "successPolicy", BT_YN_MAP), "operator", bt__yn_str("All"));
    if (!bt__yn_get(spec, "startupPolicy"))
        bt__yn_set(get_or_make(spec, "startupPolicy", BT_YN_MAP), "startupPolicyOrder",
                   bt__yn_str("AnyOrder"));
    struct bt__yn *net = get_or_make(spec, "network", BT_YN_MAP);
    if (!bt__yn_get(net, "enableDNSHostnames"))
        bt__yn_set(net, "enableDNSHostnames", bt__yn_bool(1));
    if (!bt__yn_get(net, "publishNotReadyAddresses"))
        bt__yn_set(net, "publishNotReadyAddresses", bt__yn_bool(1));
    if (!bt__yn_get(rj, "groupName"))
        bt__yn_set(rj, "groupName", bt__yn_str("default"));
    bt__yn_set(rj, "replicas", bt__yn_int(1)); /* builder.go Trainer */
    struct bt__yn *jspec = bt__yn_get(bt__yn_get(rj, "template"), "spec");
    if (!bt__yn_get(jspec, "completionMode"))
        bt__yn_set(jspec, "completionMode", bt__yn_str("Indexed"));
    if (!bt__yn_gets(podspec, "restartPolicy"))
        bt__yn_set(podspec, "restartPolicy", bt__yn_str("OnFailure"));
}

/* Copies map src's entries (labels, annotations) into a new map; NULL when src has none. */
static struct bt__yn *copy_map(const struct bt__yn *src)
{
    return src && src->kind == BT_YN_MAP && src->n ? bt__yn_copy(src) : NULL;
}

static int build_jobset(struct bt__k8s_job *job, struct bt__err *err)
{
    struct bt__k8s_trainjob *tj = job->tj;
    const struct bt__yn *tmpl = bt__yn_get(bt__yn_get(tj->runtime, "spec"), "template");
    const struct bt__yn *tmd = bt__yn_get(tmpl, "metadata");
    struct bt__yn *js = bt__yn_new(BT_YN_MAP), *md = bt__yn_new(BT_YN_MAP);
    struct bt__yn *spec = bt__yn_copy(bt__yn_get(tmpl, "spec"));
    tj->jobset = js;
    bt__yn_set(js, "apiVersion", bt__yn_str("jobset.x-k8s.io/v1alpha2"));
    bt__yn_set(js, "kind", bt__yn_str("JobSet"));
    bt__yn_set(md, "name", bt__yn_str(job->name));
    bt__yn_set(md, "namespace", bt__yn_str(job->ns));
    struct bt__yn *l = copy_map(bt__yn_get(tmd, "labels")),
                  *a = copy_map(bt__yn_get(tmd, "annotations"));
    if (l)
        bt__yn_set(md, "labels", l);
    if (a)
        bt__yn_set(md, "annotations", a);
    bt__yn_set(js, "metadata", md);
    bt__yn_set(js, "spec", spec);
    struct bt__yn *rj = spec ? bt__yn_get(spec, "replicatedJobs")->v[0] : NULL;
    struct bt__yn *jspec = bt__yn_get(bt__yn_get(rj, "template"), "spec");
    struct bt__yn *podspec = bt__yn_get(bt__yn_get(jspec, "template"), "spec");
    if (!podspec || bt__yn_bad(js))
        return bt__err_set(err, BT_ERR_SYSTEM, "TrainJob %s: out of memory", job->name);
    bt__yn_set(jspec, "parallelism", bt__yn_int(tj->num_nodes)); /* jobset.go syncParallelCount */
    bt__yn_set(jspec, "completions", bt__yn_int(tj->num_nodes));
    jobset_defaults(spec, rj, podspec);
    node_container(job, bt__k8s_container(podspec, "node"));
    if (bt__yn_bad(js))
        return bt__err_set(err, BT_ERR_SYSTEM, "TrainJob %s: out of memory", job->name);
    return BT_OK;
}

/* ---- the whole ---- */

/* Sorts the documents: exactly one TrainJob (job->doc), the rest runtimes. */
static int take_docs(struct bt__k8s_job *job, struct bt__yn **docs, size_t ndocs, const char *what,
                     struct bt__err *err)
{
    struct bt__k8s_trainjob *tj = job->tj;
    int rc = BT_OK;
    for (size_t i = 0; i < ndocs; i++) {
        if (rc == BT_OK && bt__k8s_is_trainjob(docs[i]) && job->doc)
            rc = bad(err, what, docs[i], "a second TrainJob in the file; give one at a time");
        else if (rc == BT_OK && !bt__k8s_is_trainjob(docs[i]) && !is_runtime(docs[i]))
            rc = bt__err_set(err, BT_ERR_INVALID_USAGE,
                             "%s: document %zu is a %s; next to a TrainJob only "
                             "ClusterTrainingRuntime and TrainingRuntime documents are taken",
                             what, i + 1,
                             bt__yn_gets(docs[i], "kind") ? bt__yn_gets(docs[i], "kind")
                                                          : "document without a kind");
        if (bt__k8s_is_trainjob(docs[i]) && !job->doc) {
            job->doc = docs[i];
            continue;
        }
        tj->src[tj->ndocs] = what;
        tj->docs[tj->ndocs++] = docs[i];
    }
    return rc;
}

int bt__k8s_trainjob_parse(struct bt__k8s_job *job, struct bt__yn **docs, size_t ndocs,
                           const char *what, const struct bt__k8s_opts *opts, struct bt__err *err)
{
    job->kind = BT_K8S_TRAINJOB;
    job->tj = calloc(1, sizeof(*job->tj));
    if (!job->tj) {
        while (ndocs > 0)
            bt__yn_free(docs[--ndocs]);
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    }
    BT_CHECK(take_docs(job, docs, ndocs, what, err));
    BT_CHECK(check_trainjob(job, what, err));
    BT_CHECK(check_reserved_env(job, what, err));
    if (opts && opts->runtime)
        BT_CHECK(load_runtime_file(job->tj, opts->runtime, err));
    BT_CHECK(find_runtime(job, what, err));
    const char *rapi = bt__yn_gets(job->tj->runtime, "apiVersion");
    if (!rapi || strcmp(rapi, api_trainer))
        return bad(err, job->tj->runtime_src, job->tj->runtime, "apiVersion '%s'; a runtime is %s",
                   rapi ? rapi : "(none)", api_trainer);
    BT_CHECK(check_mlpolicy(job->tj, err));
    BT_CHECK(num_nodes(job, what, err));
    BT_CHECK(check_jobset_spec(job->tj, err));
    BT_CHECK(build_jobset(job, err));
    return bt__k8s_trainjob_render(job, err);
}

void bt__k8s_trainjob_free(struct bt__k8s_trainjob *tj)
{
    if (!tj)
        return;
    for (size_t i = 0; i < tj->ndocs; i++)
        bt__yn_free(tj->docs[i]);
    bt__yn_free(tj->jobset);
    bt__yn_free(tj->svc);
    bt__yn_free(tj->jobobj);
    free(tj->runtime_buf);
    free(tj);
}
