/* trainjob_render.c: from the JobSet a TrainJob becomes (trainjob.c), what the JobSet and Job
 * controllers create: the headless Service, the Job, and one Pod per node; and the pod model
 * (env, argv) that `baton k8s local` runs. Reads no files and checks nothing.
 *
 * JobSet controller (kubernetes-sigs/jobset @ 08dfbdfd682, pkg/controllers/jobset_controller.go):
 *   - Job <jobset>-<replicatedJob>-<jobIndex> (placement.GenJobName), here <job>-node-0, with
 *     the replicated job's template; labels and annotations, on the Job and on its pod template
 *     (labelAndAnnotateObject): jobset.sigs.k8s.io/jobset-name, replicatedjob-name,
 *     restart-attempt "0", replicatedjob-replicas, global-replicas, job-index, job-key
 *     (sha1 hex of "<ns>/<job name>", jobHashKey), job-global-index, group-name,
 *     group-replicas, job-group-index. jobset-uid is left out: the API server makes the UID.
 *   - pod template subdomain = the JobSet's name (GetSubdomain, enableDNSHostnames), and
 *     spec.suspend false (constructJob).
 *   - Service <jobset name>: clusterIP None, selector jobset.sigs.k8s.io/jobset-name,
 *     publishNotReadyAddresses (default true), no labels, no ports
 *     (createHeadlessSvcIfNecessary).
 * Job controller (kubernetes/kubernetes @ 037091284e21, pkg/controller/job): for completion
 * index i a Pod with generateName <job>-<i>- (the API server adds 5 random characters: the
 * rendered Pod has generateName and no name), hostname <job>-<i>, annotation and label
 * batch.kubernetes.io/job-completion-index=i, env JOB_COMPLETION_INDEX (fieldRef
 * metadata.labels['batch.kubernetes.io/job-completion-index'], feature PodIndexLabel) on every
 * container that lacks it; the API server's Job defaulting adds the labels
 * batch.kubernetes.io/job-name and job-name (controller-uid: left out, a UID).
 * So pod i's DNS name is <job>-node-0-<i>.<job> (.<ns>.svc.cluster.local), and
 * PET_MASTER_ADDR, <job>-node-0-0.<job>, is pod 0's.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/trainjob.h"

static struct bt__yn *object(const char *api, const char *kind, const char *name, const char *ns)
{
    struct bt__yn *o = bt__yn_new(BT_YN_MAP), *md = bt__yn_new(BT_YN_MAP);
    bt__yn_set(o, "apiVersion", bt__yn_str(api));
    bt__yn_set(o, "kind", bt__yn_str(kind));
    if (name)
        bt__yn_set(md, "name", bt__yn_str(name));
    bt__yn_set(md, "namespace", bt__yn_str(ns));
    bt__yn_set(o, "metadata", md);
    return o;
}

static struct bt__yn *make_map(struct bt__yn *m, const char *key)
{
    if (!bt__yn_get(m, key) || bt__yn_get(m, key)->kind != BT_YN_MAP)
        bt__yn_set(m, key, bt__yn_new(BT_YN_MAP));
    return bt__yn_get(m, key);
}

static void set_int_str(struct bt__yn *m, const char *key, long v)
{
    char b[24];
    snprintf(b, sizeof(b), "%ld", v);
    bt__yn_set(m, key, bt__yn_str(b));
}

/* jobHashKey: the SHA1 of "<ns>/<job name>" in hex (40 characters + NUL). */
static int job_key(const char *ns, const char *name, char hex[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char in[2 * BT_K8S_NAME_MAX + 16];
    snprintf(in, sizeof(in), "%s/%s", ns, name);
    if (!EVP_Digest(in, strlen(in), md, &n, EVP_sha1(), NULL) || n != 20)
        return -1;
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* labelAndAnnotateObject: the JobSet's keys into the labels and the annotations of md. */
static void jobset_keys(struct bt__yn *md, const struct bt__k8s_job *job, const char *key)
{
    static const char *const maps[] = {"labels", "annotations"};
    for (int m = 0; m < 2; m++) {
        struct bt__yn *l = make_map(md, maps[m]);
        bt__yn_set(l, "jobset.sigs.k8s.io/jobset-name", bt__yn_str(job->name));
        bt__yn_set(l, "jobset.sigs.k8s.io/replicatedjob-name", bt__yn_str("node"));
        bt__yn_set(l, "jobset.sigs.k8s.io/restart-attempt", bt__yn_str("0"));
        bt__yn_set(l, "jobset.sigs.k8s.io/replicatedjob-replicas", bt__yn_str("1"));
        bt__yn_set(l, "jobset.sigs.k8s.io/global-replicas", bt__yn_str("1"));
        bt__yn_set(l, "jobset.sigs.k8s.io/job-index", bt__yn_str("0"));
        bt__yn_set(l, "jobset.sigs.k8s.io/job-key", bt__yn_str(key));
        bt__yn_set(l, "jobset.sigs.k8s.io/job-global-index", bt__yn_str("0"));
        bt__yn_set(l, "jobset.sigs.k8s.io/group-name", bt__yn_str("default"));
        bt__yn_set(l, "jobset.sigs.k8s.io/group-replicas", bt__yn_str("1"));
        bt__yn_set(l, "jobset.sigs.k8s.io/job-group-index", bt__yn_str("0"));
    }
}

/* Copies the entries of map src (the template's labels or annotations) into dst. */
static void merge_map(struct bt__yn *dst, const struct bt__yn *src)
{
    for (size_t i = 0; src && src->kind == BT_YN_MAP && i + 1 < src->n; i += 2)
        if (src->v[i]->kind == BT_YN_SCALAR)
            bt__yn_set(dst, src->v[i]->s, bt__yn_copy(src->v[i + 1]));
}

static struct bt__yn *service(const struct bt__k8s_job *job)
{
    const struct bt__yn *net = bt__yn_get(bt__yn_get(job->tj->jobset, "spec"), "network");
    const char *pub = bt__yn_gets(net, "publishNotReadyAddresses");
    struct bt__yn *svc = object("v1", "Service", job->name, job->ns);
    struct bt__yn *spec = make_map(svc, "spec"), *sel = bt__yn_new(BT_YN_MAP);
    bt__yn_set(spec, "clusterIP", bt__yn_str("None"));
    bt__yn_set(sel, "jobset.sigs.k8s.io/jobset-name", bt__yn_str(job->name));
    bt__yn_set(spec, "selector", sel);
    bt__yn_set(spec, "publishNotReadyAddresses", bt__yn_bool(!pub || !strcmp(pub, "true")));
    return svc;
}

/* constructJob: the replicated job's template with the JobSet's labels and annotations. */
static struct bt__yn *job_object(const struct bt__k8s_job *job, const char *jobname,
                                 const char *key)
{
    const struct bt__yn *rj = bt__yn_get(bt__yn_get(job->tj->jobset, "spec"), "replicatedJobs");
    const struct bt__yn *jt = bt__yn_get(rj->v[0], "template");
    const struct bt__yn *jmd = bt__yn_get(jt, "metadata");
    struct bt__yn *o = object("batch/v1", "Job", jobname, job->ns);
    struct bt__yn *md = bt__yn_get(o, "metadata");
    merge_map(make_map(md, "labels"), bt__yn_get(jmd, "labels"));
    merge_map(make_map(md, "annotations"), bt__yn_get(jmd, "annotations"));
    jobset_keys(md, job, key);
    struct bt__yn *spec = bt__yn_copy(bt__yn_get(jt, "spec"));
    bt__yn_set(o, "spec", spec);
    struct bt__yn *pt = make_map(spec, "template");
    jobset_keys(make_map(pt, "metadata"), job, key);
    bt__yn_set(make_map(pt, "spec"), "subdomain", bt__yn_str(job->name));
    bt__yn_set(spec, "suspend", bt__yn_bool(0));
    return o;
}

/* JOB_COMPLETION_INDEX on container c unless it has it (addCompletionIndexEnvVariable). */
static void completion_env(struct bt__yn *c)
{
    struct bt__yn *env = bt__yn_get(c, "env");
    for (size_t i = 0; env && env->kind == BT_YN_SEQ && i < env->n; i++) {
        const char *n = bt__yn_gets(env->v[i], "name");
        if (n && !strcmp(n, "JOB_COMPLETION_INDEX"))
            return;
    }
    if (!env || env->kind != BT_YN_SEQ) {
        bt__yn_set(c, "env", bt__yn_new(BT_YN_SEQ));
        env = bt__yn_get(c, "env");
    }
    struct bt__yn *e = bt__yn_new(BT_YN_MAP), *from = bt__yn_new(BT_YN_MAP);
    struct bt__yn *fr = bt__yn_new(BT_YN_MAP);
    bt__yn_set(fr, "fieldPath",
               bt__yn_str("metadata.labels['batch.kubernetes.io/job-completion-index']"));
    bt__yn_set(from, "fieldRef", fr);
    bt__yn_set(e, "name", bt__yn_str("JOB_COMPLETION_INDEX"));
    bt__yn_set(e, "valueFrom", from);
    bt__yn_push(env, e);
}

/* The Pod the Job controller creates for completion index i. */
static struct bt__yn *pod_object(const struct bt__k8s_job *job, const char *jobname, int i)
{
    const struct bt__yn *pt = bt__yn_get(bt__yn_get(job->tj->jobobj, "spec"), "template");
    const struct bt__yn *pmd = bt__yn_get(pt, "metadata");
    char b[BT_K8S_NAME_MAX + 32];
    struct bt__yn *pod = object("v1", "Pod", NULL, job->ns);
    struct bt__yn *md = bt__yn_get(pod, "metadata");
    snprintf(b, sizeof(b), "%s-%d-", jobname, i);
    bt__yn_set(md, "generateName", bt__yn_str(b));
    struct bt__yn *l = make_map(md, "labels"), *a = make_map(md, "annotations");
    merge_map(l, bt__yn_get(pmd, "labels"));
    bt__yn_set(l, "batch.kubernetes.io/job-name", bt__yn_str(jobname));
    bt__yn_set(l, "job-name", bt__yn_str(jobname));
    set_int_str(l, "batch.kubernetes.io/job-completion-index", i);
    merge_map(a, bt__yn_get(pmd, "annotations"));
    set_int_str(a, "batch.kubernetes.io/job-completion-index", i);
    struct bt__yn *spec = bt__yn_copy(bt__yn_get(pt, "spec"));
    bt__yn_set(pod, "spec", spec);
    snprintf(b, sizeof(b), "%s-%d", jobname, i);
    bt__yn_set(spec, "hostname", bt__yn_str(b));
    static const char *const lists[] = {"initContainers", "containers"};
    for (int k = 0; k < 2; k++) {
        struct bt__yn *cs = bt__yn_get(spec, lists[k]);
        for (size_t j = 0; cs && cs->kind == BT_YN_SEQ && j < cs->n; j++)
            completion_env(cs->v[j]);
    }
    return pod;
}

static enum bt__k8s_restart restart_of(const struct bt__yn *pod)
{
    const char *r = bt__yn_gets(bt__yn_get(pod, "spec"), "restartPolicy");
    return !r || !strcmp(r, "OnFailure") ? BT_K8S_RESTART_ONFAILURE
           : !strcmp(r, "Always")        ? BT_K8S_RESTART_ALWAYS
                                         : BT_K8S_RESTART_NEVER;
}

static int render_pod(struct bt__k8s_job *job, const char *jobname, int i, struct bt__err *err)
{
    struct bt__k8s_pod *p = &job->pods[job->npods++];
    char host[BT_K8S_NAME_MAX + 16];
    if (snprintf(host, sizeof(host), "%s-%d", jobname, i) > 63)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "TrainJob '%s': the host name %s is longer than 63 characters; shorten "
                           "the TrainJob's name",
                           job->name, host);
    snprintf(p->name, sizeof(p->name), "%.63s", host);
    snprintf(p->subdomain, sizeof(p->subdomain), "%s", job->name);
    snprintf(p->rtype, sizeof(p->rtype), "node");
    p->index = i;
    p->master_role = i == 0;
    p->pod = pod_object(job, jobname, i);
    p->restart = restart_of(p->pod);
    const struct bt__yn *c = bt__k8s_container(bt__yn_get(p->pod, "spec"), "node");
    if (c)
        bt__k8s_secret_env(job, (struct bt__yn *)c);
    if (bt__yn_bad(p->pod) || !c || bt__k8s_pod_collect(p, p->pod, c) != BT_OK ||
        bt__k8s_secret_resolve(job, p) != BT_OK)
        return bt__err_set(err, BT_ERR_SYSTEM, "rendering %s: out of memory", p->name);
    return BT_OK;
}

int bt__k8s_trainjob_render(struct bt__k8s_job *job, struct bt__err *err)
{
    struct bt__k8s_trainjob *tj = job->tj;
    char jobname[BT_K8S_NAME_MAX + 8], key[41];
    snprintf(jobname, sizeof(jobname), "%s-node-0", job->name);
    if (job_key(job->ns, jobname, key))
        return bt__err_set(err, BT_ERR_SYSTEM, "SHA1 (libcrypto) failed for the job-key label");
    BT_CHECK(bt__k8s_secret_make(job, err));
    tj->svc = service(job);
    tj->jobobj = job_object(job, jobname, key);
    if (bt__yn_bad(tj->svc) || bt__yn_bad(tj->jobobj))
        return bt__err_set(err, BT_ERR_SYSTEM, "TrainJob %s: out of memory", job->name);
    job->pods = calloc((size_t)tj->num_nodes, sizeof(*job->pods));
    if (!job->pods)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory for %d pods", tj->num_nodes);
    job->total_replicas = tj->num_nodes;
    for (int i = 0; i < tj->num_nodes; i++)
        BT_CHECK(render_pod(job, jobname, i, err));
    return BT_OK;
}

int bt__k8s_trainjob_emit(const struct bt__k8s_job *job, FILE *out, struct bt__err *err)
{
    const struct bt__k8s_trainjob *tj = job->tj;
    struct bt__yn **docs = calloc(job->npods + 4, sizeof(*docs));
    if (!docs)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    docs[0] = job->secret;
    docs[1] = tj->jobset;
    docs[2] = tj->svc;
    docs[3] = tj->jobobj;
    for (size_t i = 0; i < job->npods; i++)
        docs[4 + i] = job->pods[i].pod;
    int rc = bt__yn_emit(out, docs, job->npods + 4, err);
    free(docs);
    return rc;
}
