/* render.c: the Pods and headless Services the training operator (v1.9) makes for a parsed
 * PyTorchJob or TFJob, and the env it injects. Does not read files or check the job: job.c
 * did that.
 *
 * Per replica type R (lower case r) and index i, the operator creates:
 *   Service <job>-<r>-<i>: clusterIP None, selector and labels = the operator's labels
 *     (operator-name, job-name, replica-type, replica-index), ports = the framework
 *     container's ports. baton adds publishNotReadyAddresses: true, so the name resolves as
 *     soon as the pod has an address (baton retries resolution itself: no init container).
 *   Pod <job>-<r>-<i>: the template's metadata and spec, labels + the operator's labels (and
 *     job-role=master on the master role), restartPolicy from the replica (ExitCode -> Never),
 *     the default port added to the framework container when it has no port of that name, and
 *     the env below appended to each container's env.
 * PyTorchJob env (every container): PYTHONUNBUFFERED=1; with a Master: MASTER_PORT,
 *   PET_MASTER_PORT (the master's port), MASTER_ADDR, PET_MASTER_ADDR (<job>-master-0),
 *   WORLD_SIZE = replicas * nprocPerNode (non-numbers count 1), RANK = PET_NODE_RANK = pod rank
 *   (master 0, worker i is i+1); with elasticPolicy the PET_RDZV_* set and PET_NNODES=min:max,
 *   else PET_NNODES = replicas; PET_NPROC_PER_NODE.
 * TFJob env (the tensorflow container only, and only when the job has more than one replica):
 *   TF_CONFIG, Go's json.Marshal of {cluster, task, environment} (see bt__k8s_tf_config).
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "k8s/k8s_impl.h"

static const struct bt__k8s_replica *find_rs(const struct bt__k8s_job *job, const char *type)
{
    for (size_t i = 0; i < job->nrs; i++)
        if (!strcmp(job->rs[i].type, type))
            return &job->rs[i];
    return NULL;
}

/* ---- TF_CONFIG ---- */

static void tf_host(FILE *f, const struct bt__k8s_job *job, const struct bt__k8s_replica *r, int i,
                    const struct bt__k8s_opts *opts)
{
    fprintf(f, "\"%s-%s-%d.%s.svc%s%s:%d\"", job->name, r->rtype, i, job->ns,
            opts && opts->cluster_domain ? "." : "",
            opts && opts->cluster_domain ? opts->cluster_domain : "", r->port);
}

/* Dense form: {"cluster":{<type>:[hosts]...},"task":{"type":t,"index":i},"environment":"cloud"}
 * with the cluster's keys sorted (Go marshals a map in key order). */
static void tf_dense(FILE *f, const struct bt__k8s_job *job, const struct bt__k8s_opts *opts)
{
    const struct bt__k8s_replica *sorted[BT_K8S_MAX_REPLICA_TYPES];
    for (size_t i = 0; i < job->nrs; i++) { /* insertion sort by lower-case type */
        size_t j = i;
        for (; j > 0 && strcmp(sorted[j - 1]->rtype, job->rs[i].rtype) > 0; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = &job->rs[i];
    }
    fputs("{\"cluster\":{", f);
    for (size_t t = 0; t < job->nrs; t++) {
        fprintf(f, "%s\"%s\":[", t ? "," : "", sorted[t]->rtype);
        for (int i = 0; i < sorted[t]->replicas; i++) {
            if (i)
                fputc(',', f);
            tf_host(f, job, sorted[t], i, opts);
        }
        fputc(']', f);
    }
    fputs("}", f);
}

/* Sparse form (enableDynamicWorker): {"cluster":{"worker":{"<i>":host},"ps":[hosts]},"task":..}
 * where "worker" holds only this task itself (whatever its type), and no environment. */
static void tf_sparse(FILE *f, const struct bt__k8s_job *job, const struct bt__k8s_replica *self,
                      int index, const struct bt__k8s_opts *opts)
{
    const struct bt__k8s_replica *ps = find_rs(job, "PS");
    fputs("{\"cluster\":{\"worker\":{", f);
    if (self != ps) {
        fprintf(f, "\"%d\":", index);
        tf_host(f, job, self, index, opts);
    }
    fputs("},\"ps\":[", f);
    for (int i = 0; ps && i < ps->replicas; i++) {
        if (i)
            fputc(',', f);
        tf_host(f, job, ps, i, opts);
    }
    fputs("]}", f);
}

char *bt__k8s_tf_config(const struct bt__k8s_job *job, const char *rtype, int index,
                        const struct bt__k8s_opts *opts)
{
    const struct bt__k8s_replica *self = NULL;
    for (size_t i = 0; i < job->nrs; i++)
        if (!strcmp(job->rs[i].rtype, rtype))
            self = &job->rs[i];
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f)
        return NULL;
    if (job->dynamic_worker && self)
        tf_sparse(f, job, self, index, opts);
    else
        tf_dense(f, job, opts);
    fprintf(f, ",\"task\":{\"type\":\"%s\",\"index\":%d}%s}", rtype, index,
            job->dynamic_worker ? "" : ",\"environment\":\"cloud\"");
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* ---- env ---- */

static void add_env(struct bt__yn *container, const char *name, const char *value)
{
    struct bt__yn *env = bt__yn_get(container, "env");
    if (!env || env->kind != BT_YN_SEQ) {
        bt__yn_set(container, "env", bt__yn_new(BT_YN_SEQ));
        env = bt__yn_get(container, "env");
    }
    struct bt__yn *e = bt__yn_new(BT_YN_MAP);
    bt__yn_set(e, "name", bt__yn_str(name));
    bt__yn_set(e, "value", bt__yn_str(value));
    bt__yn_push(env, e);
}

static void add_env_int(struct bt__yn *container, const char *name, long long v)
{
    char b[32];
    snprintf(b, sizeof(b), "%lld", v);
    add_env(container, name, b);
}

/* nprocPerNode as written ("auto" by default), and as a number for WORLD_SIZE. */
static const char *nproc(const struct bt__k8s_job *job, int *as_int)
{
    const struct bt__yn *spec = bt__yn_get(job->doc, "spec");
    const char *s = bt__yn_gets(spec, "nprocPerNode");
    if (!s)
        s = bt__yn_gets(job->elastic, "nProcPerNode"); /* deprecated spelling */
    if (!s)
        s = "auto";
    size_t n = strlen(s);
    *as_int = n > 0 && n < 6 && strspn(s, "0123456789") == n && atoi(s) > 0 ? atoi(s) : 1;
    return s;
}

/* PET_RDZV_* for elasticPolicy: the endpoint (rdzvHost or <job>-worker-0, rdzvPort or the
 * worker's port), backend (c10d), PET_NNODES=min:max (each defaulting to the other, or to the
 * worker replicas), and the optional ones. */
static void elastic_env(const struct bt__k8s_job *job, struct bt__yn *c)
{
    const struct bt__yn *ep = job->elastic;
    const struct bt__k8s_replica *w = find_rs(job, "Worker");
    const char *host = bt__yn_gets(ep, "rdzvHost"), *port = bt__yn_gets(ep, "rdzvPort");
    const char *mn = bt__yn_gets(ep, "minReplicas"), *mx = bt__yn_gets(ep, "maxReplicas");
    char b[512];
    if (host)
        snprintf(b, sizeof(b), "%s:", host);
    else
        snprintf(b, sizeof(b), "%s-worker-0:", job->name);
    if (port)
        snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s", port);
    else
        snprintf(b + strlen(b), sizeof(b) - strlen(b), "%d", w->port);
    add_env(c, "PET_RDZV_ENDPOINT", b);
    add_env(c, "PET_RDZV_BACKEND",
            bt__yn_gets(ep, "rdzvBackend") ? bt__yn_gets(ep, "rdzvBackend") : "c10d");
    char wr[16];
    snprintf(wr, sizeof(wr), "%d", w->replicas);
    snprintf(b, sizeof(b), "%s:%s", mn ? mn : mx ? mx : wr, mx ? mx : mn ? mn : wr);
    add_env(c, "PET_NNODES", b);
    if (bt__yn_gets(ep, "maxRestarts"))
        add_env(c, "PET_MAX_RESTARTS", bt__yn_gets(ep, "maxRestarts"));
    if (bt__yn_gets(ep, "rdzvId"))
        add_env(c, "PET_RDZV_ID", bt__yn_gets(ep, "rdzvId"));
    const struct bt__yn *conf = bt__yn_get(ep, "rdzvConf");
    b[0] = '\0';
    for (size_t i = 0; conf && conf->kind == BT_YN_SEQ && i < conf->n; i++) {
        const char *k = bt__yn_gets(conf->v[i], "key"), *v = bt__yn_gets(conf->v[i], "value");
        size_t l = strlen(b);
        snprintf(b + l, sizeof(b) - l, "%s%s=%s", l ? "," : "", k ? k : "", v ? v : "");
    }
    if (b[0])
        add_env(c, "PET_RDZV_CONF", b);
    const char *sa = bt__yn_gets(ep, "standalone");
    if (sa && !strcmp(sa, "true"))
        add_env(c, "PET_STANDALONE", "");
}

static void pytorch_env(const struct bt__k8s_job *job, const struct bt__k8s_replica *r, int i,
                        struct bt__yn *c)
{
    const struct bt__k8s_replica *m = find_rs(job, "Master");
    int np;
    const char *nps = nproc(job, &np);
    add_env(c, "PYTHONUNBUFFERED", "1");
    if (m) {
        char addr[BT_K8S_NAME_MAX + 16];
        snprintf(addr, sizeof(addr), "%s-master-0", job->name);
        add_env_int(c, "MASTER_PORT", m->port);
        add_env_int(c, "PET_MASTER_PORT", m->port);
        add_env(c, "MASTER_ADDR", addr);
        add_env(c, "PET_MASTER_ADDR", addr);
        int rank = !strcmp(r->type, "Worker") ? i + 1 : i;
        add_env_int(c, "WORLD_SIZE", (long long)job->total_replicas * np);
        add_env_int(c, "RANK", rank);
        add_env_int(c, "PET_NODE_RANK", rank);
    }
    if (job->elastic)
        elastic_env(job, c);
    else
        add_env_int(c, "PET_NNODES", job->total_replicas);
    add_env(c, "PET_NPROC_PER_NODE", nps);
}

/* ---- objects ---- */

static struct bt__yn *op_labels(const struct bt__k8s_job *job, const struct bt__k8s_replica *r,
                                int i)
{
    struct bt__yn *l = bt__yn_new(BT_YN_MAP);
    char idx[16];
    snprintf(idx, sizeof(idx), "%d", i);
    bt__yn_set(l, "training.kubeflow.org/operator-name",
               bt__yn_str(bt__k8s_kind_info(job->kind)->controller));
    bt__yn_set(l, "training.kubeflow.org/job-name", bt__yn_str(job->name));
    bt__yn_set(l, "training.kubeflow.org/replica-type", bt__yn_str(r->rtype));
    bt__yn_set(l, "training.kubeflow.org/replica-index", bt__yn_str(idx));
    return l;
}

/* PyTorch: the Master, else worker 0. TF: the Chief (or Master), else worker 0. */
static int master_role(const struct bt__k8s_job *job, const struct bt__k8s_replica *r, int i)
{
    int has = find_rs(job, "Master") || (job->kind == BT_K8S_TFJOB && find_rs(job, "Chief"));
    if (has)
        return !strcmp(r->type, "Master") || !strcmp(r->type, "Chief");
    return !strcmp(r->type, "Worker") && i == 0;
}

static struct bt__yn *object(const char *kind, const char *name, const char *ns,
                             struct bt__yn *labels)
{
    struct bt__yn *o = bt__yn_new(BT_YN_MAP), *md = bt__yn_new(BT_YN_MAP);
    bt__yn_set(o, "apiVersion", bt__yn_str("v1"));
    bt__yn_set(o, "kind", bt__yn_str(kind));
    bt__yn_set(md, "name", bt__yn_str(name));
    bt__yn_set(md, "namespace", bt__yn_str(ns));
    bt__yn_set(md, "labels", labels);
    bt__yn_set(o, "metadata", md);
    return o;
}

static struct bt__yn *service(const struct bt__k8s_job *job, const struct bt__k8s_replica *r, int i,
                              const char *name, const struct bt__yn *container)
{
    struct bt__yn *svc = object("Service", name, job->ns, op_labels(job, r, i));
    struct bt__yn *spec = bt__yn_new(BT_YN_MAP), *ports = bt__yn_new(BT_YN_SEQ);
    bt__yn_set(spec, "clusterIP", bt__yn_str("None"));
    bt__yn_set(spec, "publishNotReadyAddresses", bt__yn_bool(1));
    bt__yn_set(spec, "selector", op_labels(job, r, i));
    const struct bt__yn *cp = bt__yn_get(container, "ports");
    for (size_t k = 0; cp && cp->kind == BT_YN_SEQ && k < cp->n; k++) {
        struct bt__yn *p = bt__yn_new(BT_YN_MAP);
        if (bt__yn_get(cp->v[k], "name"))
            bt__yn_set(p, "name", bt__yn_copy(bt__yn_get(cp->v[k], "name")));
        bt__yn_set(p, "port", bt__yn_copy(bt__yn_get(cp->v[k], "containerPort")));
        bt__yn_push(ports, p);
    }
    bt__yn_set(spec, "ports", ports);
    bt__yn_set(svc, "spec", spec);
    return svc;
}

/* Adds {name: <kind>job-port, containerPort: <default>} unless a port of that name exists. */
static void default_port(const struct bt__k8s_job *job, struct bt__yn *c)
{
    const struct bt__k8s_kind_info *ki = bt__k8s_kind_info(job->kind);
    struct bt__yn *ports = bt__yn_get(c, "ports");
    for (size_t i = 0; ports && ports->kind == BT_YN_SEQ && i < ports->n; i++) {
        const char *n = bt__yn_gets(ports->v[i], "name");
        if (n && !strcmp(n, ki->port_name))
            return;
    }
    if (!ports || ports->kind != BT_YN_SEQ) {
        bt__yn_set(c, "ports", bt__yn_new(BT_YN_SEQ));
        ports = bt__yn_get(c, "ports");
    }
    struct bt__yn *p = bt__yn_new(BT_YN_MAP);
    bt__yn_set(p, "name", bt__yn_str(ki->port_name));
    bt__yn_set(p, "containerPort", bt__yn_int(ki->port));
    bt__yn_push(ports, p);
}

/* The template's metadata (less name and namespace) with the operator's labels laid over it. */
static void pod_metadata(struct bt__yn *pod, const struct bt__k8s_job *job,
                         const struct bt__k8s_replica *r, int i)
{
    struct bt__yn *md = bt__yn_get(pod, "metadata"), *labels = bt__yn_get(md, "labels");
    const struct bt__yn *tmd = bt__yn_get(r->tmpl, "metadata");
    const struct bt__yn *tl = bt__yn_get(tmd, "labels");
    for (size_t k = 0; tl && tl->kind == BT_YN_MAP && k + 1 < tl->n; k += 2)
        if (tl->v[k]->kind == BT_YN_SCALAR && !bt__yn_get(labels, tl->v[k]->s))
            bt__yn_set(labels, tl->v[k]->s, bt__yn_copy(tl->v[k + 1]));
    if (master_role(job, r, i))
        bt__yn_set(labels, "training.kubeflow.org/job-role", bt__yn_str("master"));
    for (size_t k = 0; tmd && tmd->kind == BT_YN_MAP && k + 1 < tmd->n; k += 2) {
        const char *key = tmd->v[k]->s;
        if (key && strcmp(key, "name") && strcmp(key, "namespace") && strcmp(key, "labels") &&
            strcmp(key, "generateName"))
            bt__yn_set(md, key, bt__yn_copy(tmd->v[k + 1]));
    }
}

static const char *const pod_restart[] = {"Always", "OnFailure", "Never", "Never"};

static struct bt__yn *pod_object(const struct bt__k8s_job *job, const struct bt__k8s_replica *r,
                                 int i, const char *name, const struct bt__k8s_opts *opts)
{
    const struct bt__k8s_kind_info *ki = bt__k8s_kind_info(job->kind);
    struct bt__yn *pod = object("Pod", name, job->ns, op_labels(job, r, i));
    pod_metadata(pod, job, r, i);
    struct bt__yn *spec = bt__yn_copy(bt__yn_get(r->tmpl, "spec"));
    bt__yn_set(pod, "spec", spec);
    if (!spec)
        return pod;
    bt__yn_set(spec, "restartPolicy", bt__yn_str(pod_restart[r->restart]));
    bt__k8s_policy_pod(job, spec);
    bt__k8s_gang_pod(job, r, pod, opts);
    struct bt__yn *cs = bt__yn_get(spec, "containers");
    for (size_t k = 0; k < cs->n; k++) {
        const char *cname = bt__yn_gets(cs->v[k], "name");
        int fw = cname && !strcmp(cname, ki->container);
        if (fw) {
            default_port(job, cs->v[k]);
            bt__k8s_secret_env(job, cs->v[k]);
        }
        if (job->kind == BT_K8S_PYTORCHJOB) {
            pytorch_env(job, r, i, cs->v[k]);
        } else if (fw && job->total_replicas > 1) {
            char *tf = bt__k8s_tf_config(job, r->rtype, i, opts);
            if (tf)
                add_env(cs->v[k], "TF_CONFIG", tf);
            else
                cs->v[k]->bad = 1;
            free(tf);
        }
    }
    return pod;
}

/* ---- the job's secret ----
 *
 * One Secret per job, <job>-baton-token (type Opaque, data.token: the secret in base64), which
 * every pod's framework container reads as BATON_TOKEN (env valueFrom.secretKeyRef), so that
 * the launchers of one job, and only they, share a token nobody can derive from the job's
 * name. Without --token every render makes a new one: a `kubectl apply` of a re-render rotates
 * it (and pods already running keep the old one: apply a job's render once, or give --token). */

#define SECRET_BYTES 32

int bt__k8s_secret_make(struct bt__k8s_job *job, struct bt__err *err)
{
    unsigned char raw[SECRET_BYTES];
    unsigned char b64[2 * BT_K8S_TOKEN_MAX];
    char name[BT_K8S_NAME_MAX + 16];
    if (job->token_opt) {
        size_t n = strlen(job->token_opt);
        if (!n || n >= sizeof(job->token))
            return bt__err_set(err, BT_ERR_INVALID_USAGE, "--token: want 1 to %zu bytes, got %zu",
                               sizeof(job->token) - 1, n);
        memcpy(job->token, job->token_opt, n + 1);
    } else {
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
            return bt__err_set(err, BT_ERR_SYSTEM, "getrandom failed for the job's secret");
        EVP_EncodeBlock((unsigned char *)job->token, raw, sizeof(raw));
    }
    EVP_EncodeBlock(b64, (const unsigned char *)job->token, (int)strlen(job->token));
    snprintf(name, sizeof(name), "%s-baton-token", job->name);
    struct bt__yn *l = bt__yn_new(BT_YN_MAP), *data = bt__yn_new(BT_YN_MAP);
    bt__yn_set(l, "training.kubeflow.org/job-name", bt__yn_str(job->name));
    job->secret = object("Secret", name, job->ns, l);
    bt__yn_set(job->secret, "type", bt__yn_str("Opaque"));
    bt__yn_set(data, "token", bt__yn_str((const char *)b64));
    bt__yn_set(job->secret, "data", data);
    if (bt__yn_bad(job->secret))
        return bt__err_set(err, BT_ERR_SYSTEM, "rendering Secret %s: out of memory", name);
    return BT_OK;
}

void bt__k8s_secret_env(const struct bt__k8s_job *job, struct bt__yn *c)
{
    char name[BT_K8S_NAME_MAX + 16];
    snprintf(name, sizeof(name), "%s-baton-token", job->name);
    struct bt__yn *env = bt__yn_get(c, "env");
    if (!env || env->kind != BT_YN_SEQ) {
        bt__yn_set(c, "env", bt__yn_new(BT_YN_SEQ));
        env = bt__yn_get(c, "env");
    }
    /* The shipped manifests already read BATON_TOKEN from this Secret (optional, for a cluster
     * without it): the render's entry replaces theirs, so each container has one. */
    size_t kept = 0;
    for (size_t i = 0; i < env->n; i++) {
        const char *en = bt__yn_gets(env->v[i], "name");
        if (en && !strcmp(en, "BATON_TOKEN"))
            bt__yn_free(env->v[i]);
        else
            env->v[kept++] = env->v[i];
    }
    env->n = kept;
    struct bt__yn *e = bt__yn_new(BT_YN_MAP), *vf = bt__yn_new(BT_YN_MAP);
    struct bt__yn *ref = bt__yn_new(BT_YN_MAP);
    bt__yn_set(ref, "name", bt__yn_str(name));
    bt__yn_set(ref, "key", bt__yn_str("token"));
    bt__yn_set(vf, "secretKeyRef", ref);
    bt__yn_set(e, "name", bt__yn_str("BATON_TOKEN"));
    bt__yn_set(e, "valueFrom", vf);
    bt__yn_push(env, e);
}

int bt__k8s_secret_resolve(const struct bt__k8s_job *job, struct bt__k8s_pod *p)
{
    for (size_t i = 0; i < p->nenv; i++)
        if (!strcmp(p->env[i].name, "BATON_TOKEN") && !p->env[i].value &&
            !(p->env[i].value = strdup(job->token)))
            return BT_ERR_SYSTEM;
    return BT_OK;
}

/* ---- the pod model for `local` ---- */

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = 1;
    return d;
}

/* The value a valueFrom.fieldRef to the pod's own metadata resolves to (metadata.name,
 * .namespace, .labels['k'], .annotations['k']), or NULL (other sources: not known here). */
static const char *field_ref(const struct bt__yn *pod, const struct bt__yn *value_from)
{
    const char *fp = bt__yn_gets(bt__yn_get(value_from, "fieldRef"), "fieldPath");
    const struct bt__yn *md = bt__yn_get(pod, "metadata");
    char key[256];
    if (!fp || strncmp(fp, "metadata.", 9))
        return NULL;
    fp += 9;
    if (!strcmp(fp, "name") || !strcmp(fp, "namespace"))
        return bt__yn_gets(md, fp);
    const char *map = !strncmp(fp, "labels['", 8)         ? "labels"
                      : !strncmp(fp, "annotations['", 13) ? "annotations"
                                                          : NULL;
    const char *k = map ? strchr(fp, '\'') + 1 : NULL;
    size_t kl = k ? strcspn(k, "'") : 0;
    if (!map || kl >= sizeof(key) || strcmp(k + kl, "']"))
        return NULL;
    snprintf(key, sizeof(key), "%.*s", (int)kl, k);
    return bt__yn_gets(bt__yn_get(md, map), key);
}

int bt__k8s_pod_collect(struct bt__k8s_pod *p, const struct bt__yn *pod, const struct bt__yn *c)
{
    const struct bt__yn *env = bt__yn_get(c, "env");
    const struct bt__yn *cmd = bt__yn_get(c, "command"), *args = bt__yn_get(c, "args");
    size_t ne = env && env->kind == BT_YN_SEQ ? env->n : 0;
    size_t nc = cmd && cmd->kind == BT_YN_SEQ ? cmd->n : 0;
    size_t na = args && args->kind == BT_YN_SEQ ? args->n : 0;
    int oom = 0;
    p->env = calloc(ne + 1, sizeof(*p->env));
    p->argv = calloc(nc + na + 1, sizeof(*p->argv));
    if (!p->env || !p->argv)
        return BT_ERR_SYSTEM;
    for (size_t k = 0; k < ne; k++) {
        const char *n = bt__yn_gets(env->v[k], "name"), *v = bt__yn_gets(env->v[k], "value");
        const struct bt__yn *from = bt__yn_get(env->v[k], "valueFrom");
        if (!n)
            continue;
        struct bt__k8s_env *e = &p->env[p->nenv++];
        e->name = dup_or_null(n, &oom);
        /* no value and no valueFrom: Kubernetes sets it empty */
        e->value = dup_or_null(v ? v : from ? field_ref(pod, from) : "", &oom);
    }
    for (size_t k = 0; k < nc + na; k++) {
        const struct bt__yn *a = k < nc ? cmd->v[k] : args->v[k - nc];
        p->argv[p->argc++] = dup_or_null(a->kind == BT_YN_SCALAR ? a->s : "", &oom);
    }
    return oom ? BT_ERR_SYSTEM : BT_OK;
}

static int render_one(struct bt__k8s_job *job, const struct bt__k8s_replica *r, int i,
                      const struct bt__k8s_opts *opts, struct bt__err *err)
{
    struct bt__k8s_pod *p = &job->pods[job->npods++];
    int n = snprintf(p->name, sizeof(p->name), "%s-%s-%d", job->name, r->rtype, i);
    if (n >= (int)sizeof(p->name) || n > 63)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s '%s': the name %s-%s-%d is longer than 63 characters (a Service "
                           "name); shorten the job's name",
                           bt__k8s_kind_info(job->kind)->kind, job->name, job->name, r->rtype, i);
    snprintf(p->rtype, sizeof(p->rtype), "%s", r->rtype);
    p->index = i;
    p->master_role = master_role(job, r, i);
    p->restart = r->restart;
    p->pod = pod_object(job, r, i, p->name, opts);
    const struct bt__yn *c = bt__k8s_container(bt__yn_get(p->pod, "spec"),
                                               bt__k8s_kind_info(job->kind)->container);
    p->svc = service(job, r, i, p->name, c);
    if (bt__yn_bad(p->pod) || bt__yn_bad(p->svc) || bt__k8s_pod_collect(p, p->pod, c) != BT_OK ||
        bt__k8s_secret_resolve(job, p) != BT_OK)
        return bt__err_set(err, BT_ERR_SYSTEM, "rendering %s: out of memory", p->name);
    return BT_OK;
}

int bt__k8s_render_pods(struct bt__k8s_job *job, const struct bt__k8s_opts *opts,
                        struct bt__err *err)
{
    BT_CHECK(bt__k8s_secret_make(job, err));
    job->pods = calloc((size_t)job->total_replicas + 1, sizeof(*job->pods));
    if (!job->pods)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory for %d pods", job->total_replicas);
    for (size_t t = 0; t < job->nrs; t++)
        for (int i = 0; i < job->rs[t].replicas; i++)
            BT_CHECK(render_one(job, &job->rs[t], i, opts, err));
    job->podgroup = bt__k8s_gang_podgroup(job, opts);
    if (job->podgroup && bt__yn_bad(job->podgroup))
        return bt__err_set(err, BT_ERR_SYSTEM, "rendering PodGroup %s: out of memory", job->name);
    return BT_OK;
}

int bt__k8s_job_emit(const struct bt__k8s_job *job, FILE *out, struct bt__err *err)
{
    if (job->kind == BT_K8S_TRAINJOB)
        return bt__k8s_trainjob_emit(job, out, err);
    struct bt__yn **docs = calloc(2 * job->npods + 3, sizeof(*docs));
    size_t n = 0;
    if (!docs)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    docs[n++] = job->secret; /* the Secret before the pods that read it */
    if (job->podgroup)       /* the PodGroup before the pods that join it */
        docs[n++] = job->podgroup;
    for (size_t i = 0; i < job->npods; i++) { /* each pod's Service first, then the pod */
        docs[n++] = job->pods[i].svc;
        docs[n++] = job->pods[i].pod;
    }
    int rc = bt__yn_emit(out, docs, n, err);
    free(docs);
    return rc;
}
