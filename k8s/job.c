/* job.c: reads a PyTorchJob or TFJob (kubeflow.org/v1), applies the training operator's
 * defaults (replicas 1, the kind's restartPolicy, the default port) and its validation, then
 * hands over to render.c for the pods.
 *
 * The checks are the operator's own (v1.9 webhook): a known kind and replica types (matched
 * without regard to case, as its defaulter does), a container named pytorch / tensorflow with
 * an image in every replica type, exactly one Master replica in a PyTorchJob, at most one
 * Chief (or Master) in a TFJob. Each failure is one line naming the job and the replica type.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "k8s/k8s_impl.h"

static const struct bt__k8s_kind_info kinds[] = {
    [BT_K8S_PYTORCHJOB] = {"PyTorchJob", "pytorchReplicaSpecs", "pytorch", "pytorchjob-port", 23456,
                           "pytorchjob-controller", BT_K8S_RESTART_ONFAILURE},
    [BT_K8S_TFJOB] = {"TFJob", "tfReplicaSpecs", "tensorflow", "tfjob-port", 2222,
                      "tfjob-controller", BT_K8S_RESTART_NEVER},
    [BT_K8S_TRAINJOB] = {"TrainJob", "trainer", "node", NULL, 29500, "trainer",
                         BT_K8S_RESTART_ONFAILURE}, /* see trainjob.c */
};

static const char *const pytorch_types[] = {"Master", "Worker", NULL};
static const char *const tf_types[] = {"Chief", "Master", "Worker", "PS", "Evaluator", NULL};
static const char *const restart_names[] = {"Always", "OnFailure", "Never", "ExitCode"};

const struct bt__k8s_kind_info *bt__k8s_kind_info(enum bt__k8s_kind kind)
{
    return &kinds[kind];
}

struct bt__yn *bt__k8s_container(const struct bt__yn *podspec, const char *name)
{
    const struct bt__yn *cs = bt__yn_get(podspec, "containers");
    for (size_t i = 0; cs && cs->kind == BT_YN_SEQ && i < cs->n; i++) {
        const char *n = bt__yn_gets(cs->v[i], "name");
        if (n && !strcmp(n, name))
            return cs->v[i];
    }
    return NULL;
}

/* A DNS-1035 label (what Service names must be): [a-z]([-a-z0-9]*[a-z0-9])?, at most 63. */
static int dns1035(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* A plain decimal scalar in [0, 1e6]: replicas and ports. -1 when it is not one. */
static int plain_int(const struct bt__yn *v, int max)
{
    if (!v || v->kind != BT_YN_SCALAR || v->style != YAML_PLAIN_SCALAR_STYLE)
        return -1;
    size_t n = strlen(v->s);
    if (n == 0 || n > 7 || strspn(v->s, "0123456789") != n)
        return -1;
    int x = atoi(v->s);
    return x <= max ? x : -1;
}

/* One line "<Kind> '<job>': <what>" in err; returns BT_ERR_INVALID_USAGE. */
static int bad(struct bt__err *err, const struct bt__k8s_job *job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct bt__err *err, const struct bt__k8s_job *job, const char *fmt, ...)
{
    char line[BT__ERR_MSG_MAX - 80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s '%s': %s", kinds[job->kind].kind, job->name,
                       line);
}

static int canon_type(const struct bt__k8s_job *job, const char *key)
{
    const char *const *types = job->kind == BT_K8S_PYTORCHJOB ? pytorch_types : tf_types;
    for (int i = 0; types[i]; i++)
        if (!strcasecmp(key, types[i]))
            return i;
    return -1;
}

/* restartPolicy of one replica type: one of the four names, or the kind's default. */
static int read_restart(struct bt__k8s_job *job, struct bt__k8s_replica *r,
                        const struct bt__yn *spec, struct bt__err *err)
{
    const char *s = bt__yn_gets(spec, "restartPolicy");
    r->restart = kinds[job->kind].restart_default;
    if (!s)
        return BT_OK;
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, restart_names[i])) {
            r->restart = (enum bt__k8s_restart)i;
            return BT_OK;
        }
    return bad(err, job, "%s: restartPolicy '%s' is not one of Always, OnFailure, Never, ExitCode",
               r->type, s);
}

/* The port named <kind>job-port on the framework container, else the kind's default. */
static int read_port(struct bt__k8s_job *job, struct bt__k8s_replica *r,
                     const struct bt__yn *container, struct bt__err *err)
{
    const struct bt__yn *ports = bt__yn_get(container, "ports");
    r->port = kinds[job->kind].port;
    for (size_t i = 0; ports && ports->kind == BT_YN_SEQ && i < ports->n; i++) {
        const char *n = bt__yn_gets(ports->v[i], "name");
        if (!n || strcmp(n, kinds[job->kind].port_name))
            continue;
        r->port = plain_int(bt__yn_get(ports->v[i], "containerPort"), 65535);
        if (r->port <= 0)
            return bad(err, job, "%s: port %s has no valid containerPort (1-65535)", r->type,
                       kinds[job->kind].port_name);
    }
    return BT_OK;
}

/* The pod template: a spec with the framework container, and an image on every container. */
static int read_template(struct bt__k8s_job *job, struct bt__k8s_replica *r,
                         const struct bt__yn *spec, struct bt__err *err)
{
    const char *cname = kinds[job->kind].container;
    r->tmpl = bt__yn_get(spec, "template");
    const struct bt__yn *podspec = bt__yn_get(r->tmpl, "spec");
    const struct bt__yn *c = bt__k8s_container(podspec, cname);
    if (!c)
        return bad(err, job,
                   "%s: no container named '%s' in template.spec.containers (the training "
                   "operator requires one)",
                   r->type, cname);
    const struct bt__yn *cs = bt__yn_get(podspec, "containers");
    for (size_t i = 0; i < cs->n; i++)
        if (!bt__yn_gets(cs->v[i], "image"))
            return bad(err, job, "%s: container '%s' has no image", r->type,
                       bt__yn_gets(cs->v[i], "name") ? bt__yn_gets(cs->v[i], "name") : "?");
    return read_port(job, r, c, err);
}

static int read_replica(struct bt__k8s_job *job, const struct bt__yn *key,
                        const struct bt__yn *spec, struct bt__err *err)
{
    const char *const *types = job->kind == BT_K8S_PYTORCHJOB ? pytorch_types : tf_types;
    int t = key->kind == BT_YN_SCALAR ? canon_type(job, key->s) : -1;
    if (t < 0)
        return bad(err, job, "unknown replica type '%s' (%s)",
                   key->kind == BT_YN_SCALAR ? key->s : "?",
                   job->kind == BT_K8S_PYTORCHJOB ? "a PyTorchJob has Master and Worker"
                                                  : "a TFJob has Chief, Master, Worker, PS and "
                                                    "Evaluator");
    for (size_t i = 0; i < job->nrs; i++)
        if (!strcmp(job->rs[i].type, types[t]))
            return bad(err, job, "replica type %s is given twice", types[t]);
    if (spec->kind != BT_YN_MAP)
        return bad(err, job, "%s: the replica spec is not a mapping", types[t]);
    struct bt__k8s_replica *r = &job->rs[job->nrs++];
    snprintf(r->type, sizeof(r->type), "%s", types[t]);
    for (size_t i = 0; r->type[i]; i++)
        r->rtype[i] = (char)(r->type[i] | 0x20); /* ASCII letters to lower case */
    const struct bt__yn *n = bt__yn_get(spec, "replicas");
    r->replicas = n && !bt__yn_is_null(n) ? plain_int(n, 100000) : 1;
    if (r->replicas < 0)
        return bad(err, job, "%s: replicas '%s' is not a whole number (0-100000)", r->type,
                   n->kind == BT_YN_SCALAR ? n->s : "?");
    job->total_replicas += r->replicas;
    BT_CHECK(read_restart(job, r, spec, err));
    return read_template(job, r, spec, err);
}

static const struct bt__k8s_replica *find_rs(const struct bt__k8s_job *job, const char *type)
{
    for (size_t i = 0; i < job->nrs; i++)
        if (!strcmp(job->rs[i].type, type))
            return &job->rs[i];
    return NULL;
}

/* Checks across replica types: Master exactly 1 (PyTorchJob); one Chief or Master (TFJob). */
static int check_roles(struct bt__k8s_job *job, struct bt__err *err)
{
    const struct bt__k8s_replica *m = find_rs(job, "Master"), *c = find_rs(job, "Chief");
    const struct bt__k8s_replica *e = find_rs(job, "Evaluator"), *chief = c ? c : m;
    if (job->kind == BT_K8S_PYTORCHJOB) {
        if (m && m->replicas != 1)
            return bad(err, job, "Master has %d replicas; a PyTorchJob needs exactly 1",
                       m->replicas);
        if (job->elastic && !find_rs(job, "Worker"))
            return bad(err, job, "elasticPolicy is set but there is no Worker replica type");
        return BT_OK;
    }
    if (m && c)
        return bad(err, job, "both Chief and Master are given; a TFJob has one chief");
    if (chief && chief->replicas > 1)
        return bad(err, job, "%s has %d replicas; a TFJob has at most one chief", chief->type,
                   chief->replicas);
    if (e && e->replicas > 1)
        return bad(err, job, "Evaluator has %d replicas; a TFJob has at most one", e->replicas);
    return BT_OK;
}

/* apiVersion, kind, metadata.name and .namespace. */
static int read_header(struct bt__k8s_job *job, const char *what, struct bt__err *err)
{
    const struct bt__yn *d = job->doc;
    const char *api = bt__yn_gets(d, "apiVersion"), *kind = bt__yn_gets(d, "kind");
    const struct bt__yn *md = bt__yn_get(d, "metadata");
    const char *name = bt__yn_gets(md, "name"), *ns = bt__yn_gets(md, "namespace");
    if (d->kind != BT_YN_MAP)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: not a Kubernetes object (a mapping)",
                           what);
    if (!kind || (strcmp(kind, "PyTorchJob") && strcmp(kind, "TFJob")))
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s: unknown kind '%s'; baton k8s takes a PyTorchJob or TFJob "
                           "(kubeflow.org/v1)%s",
                           what, kind ? kind : "(none)",
                           kind && !strcmp(kind, "MPIJob") ? " (an MPIJob needs the mpi-operator)"
                                                           : "");
    job->kind = !strcmp(kind, "TFJob") ? BT_K8S_TFJOB : BT_K8S_PYTORCHJOB;
    if (!api || strcmp(api, "kubeflow.org/v1"))
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s: apiVersion '%s' for %s; baton k8s takes kubeflow.org/v1", what,
                           api ? api : "(none)", kind);
    if (!name || !dns1035(name))
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s: metadata.name '%s' is not a DNS-1035 label (lower-case letters, "
                           "digits and '-', starting with a letter, at most 63)",
                           what, name ? name : "(none)");
    snprintf(job->name, sizeof(job->name), "%s", name);
    if (ns && !dns1035(ns))
        return bad(err, job, "metadata.namespace '%s' is not a valid namespace", ns);
    snprintf(job->ns, sizeof(job->ns), "%s", ns ? ns : "default");
    return BT_OK;
}

static int read_specs(struct bt__k8s_job *job, struct bt__err *err)
{
    const struct bt__yn *spec = bt__yn_get(job->doc, "spec");
    const char *key = kinds[job->kind].specs_key;
    const struct bt__yn *rs = bt__yn_get(spec, key);
    if (!rs || rs->kind != BT_YN_MAP || rs->n == 0)
        return bad(err, job, "spec.%s is missing or empty", key);
    if (rs->n / 2 > BT_K8S_MAX_REPLICA_TYPES)
        return bad(err, job, "spec.%s has too many replica types", key);
    if (job->kind == BT_K8S_PYTORCHJOB)
        job->elastic = bt__yn_get(spec, "elasticPolicy");
    const char *dyn = bt__yn_gets(spec, "enableDynamicWorker");
    job->dynamic_worker = job->kind == BT_K8S_TFJOB && dyn && !strcmp(dyn, "true");
    for (size_t i = 0; i + 1 < rs->n; i += 2)
        BT_CHECK(read_replica(job, rs->v[i], rs->v[i + 1], err));
    BT_CHECK(check_roles(job, err));
    if (job->total_replicas > 100000)
        return bad(err, job, "more than 100000 replicas in all");
    return BT_OK;
}

int bt__k8s_job_parse(const char *buf, size_t len, const char *what,
                      const struct bt__k8s_opts *opts, struct bt__k8s_job *job, struct bt__err *err)
{
    struct bt__yn *docs[16];
    size_t ndocs = 0;
    memset(job, 0, sizeof(*job));
    job->token_opt = opts ? opts->token : NULL;
    BT_CHECK(bt__yn_load(buf, len, what, docs, 16, &ndocs, err));
    for (size_t i = 0; i < ndocs; i++) /* a TrainJob comes with its runtime: trainjob.c */
        if (bt__k8s_is_trainjob(docs[i]))
            return bt__k8s_trainjob_parse(job, docs, ndocs, what, opts, err);
    if (ndocs != 1) {
        const char *why = ndocs ? "more than one YAML document" : "empty";
        while (ndocs > 0)
            bt__yn_free(docs[--ndocs]);
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s: %s; baton k8s takes one job (one YAML document) per file", what,
                           why);
    }
    job->doc = docs[0];
    BT_CHECK(read_header(job, what, err));
    BT_CHECK(read_specs(job, err));
    BT_CHECK(bt__k8s_read_run_policy(job, err));
    return bt__k8s_render_pods(job, opts, err);
}

int bt__k8s_job_load(const char *path, const struct bt__k8s_opts *opts, struct bt__k8s_job *job,
                     struct bt__err *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    memset(job, 0, sizeof(*job));
    if (!f)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap || cap >= (16u << 20))
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    int rc = BT_OK;
    if (!buf)
        rc = bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory", path);
    else if (ferror(f))
        rc = bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: read error", path);
    else if (len == cap)
        rc = bt__err_set(err, BT_ERR_INVALID_USAGE, "%s: larger than 16 MiB", path);
    if (f != stdin)
        fclose(f);
    if (rc == BT_OK)
        rc = bt__k8s_job_parse(buf, len, path, opts, job, err);
    free(buf);
    return rc;
}

void bt__k8s_job_free(struct bt__k8s_job *job)
{
    for (size_t i = 0; job->pods && i < job->npods; i++) {
        struct bt__k8s_pod *p = &job->pods[i];
        for (size_t j = 0; j < p->nenv; j++) {
            free(p->env[j].name);
            free(p->env[j].value);
        }
        free(p->env);
        for (size_t j = 0; j < p->argc; j++)
            free(p->argv[j]);
        free(p->argv);
        bt__yn_free(p->pod);
        bt__yn_free(p->svc);
    }
    free(job->pods);
    bt__yn_free(job->podgroup);
    bt__yn_free(job->secret);
    bt__k8s_trainjob_free(job->tj);
    bt__yn_free(job->doc);
    memset(job, 0, sizeof(*job));
}

const char *bt__k8s_pod_env(const struct bt__k8s_pod *pod, const char *name)
{
    for (size_t i = pod->nenv; i > 0; i--)
        if (!strcmp(pod->env[i - 1].name, name))
            return pod->env[i - 1].value;
    return NULL;
}
