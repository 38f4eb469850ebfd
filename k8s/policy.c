/* policy.c: a job's runPolicy, and what the shim does with each field where no operator
 * (controller) watches the pods. render and apply print one note per field on stderr saying
 * what happens instead (bt__k8s_job_notes); the decisions, field by field, follow the training
 * operator v1.9 (release-1.9 @ 078ec30f):
 *
 *   backoffLimit       operator: fails the job once the pods' container restarts reach it
 *                      (pkg/core/job.go PastBackoffLimit; common/job.go ReconcileJobs).
 *                      shim: not honoured (nothing counts restarts); noted.
 *   restartPolicy      operator: the pod gets the replica's policy, ExitCode as Never
 *                      (pkg/core/pod.go SetRestartPolicy); a pod in phase Failed is deleted and
 *                      recreated under ExitCode when its exit code is >= 128, and under
 *                      OnFailure/Always (common/pod.go ReconcilePods).
 *                      shim: the same pod policy; nothing recreates a failed, deleted or evicted
 *                      pod; noted for ExitCode, OnFailure and Always.
 *   activeDeadlineSeconds  operator: fails the job that long after its status.startTime and
 *                      deletes its pods (pkg/core/job.go PastActiveDeadline).
 *                      shim: honoured per pod: set as each Pod's spec.activeDeadlineSeconds (the
 *                      smaller one when the template has its own), which kubelet enforces
 *                      from the pod's own start; noted.
 *   ttlSecondsAfterFinished  operator: deletes the job (and with it its pods and services) that
 *                      long after it finished (common/job.go CleanupJob). shim: not honoured.
 *   cleanPodPolicy     operator: when the job ends deletes all pods (All), the running and
 *                      pending ones (Running) or none (None, the default) (common/job.go
 *                      DeletePodsAndServices). shim: as None; noted for Running and All.
 *   suspend            operator: creates no pods, deletes running ones (common/job.go).
 *                      shim: honoured: render writes and apply applies nothing.
 *   schedulingPolicy   operator: used only when started with --gang-scheduler-name (gang.c).
 *                      shim: the same with --gang-scheduler NAME; else ignored, noted.
 *   managedBy          operator: leaves a job managed by another controller alone. shim:
 *                      renders it anyway; noted.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "k8s/k8s_impl.h"

/* runPolicy.<key>: a plain whole number in [min, INT32_MAX], or -1 when absent. */
static int policy_int(const struct bt__k8s_job *job, const struct bt__yn *rp, const char *key,
                      long long min, long long *out, struct bt__err *err)
{
    const struct bt__yn *v = bt__yn_get(rp, key);
    char *end = NULL;
    long long x = -1;
    *out = -1;
    if (!v || bt__yn_is_null(v))
        return BT_OK;
    if (v->kind == BT_YN_SCALAR && v->style == YAML_PLAIN_SCALAR_STYLE)
        x = strtoll(v->s, &end, 10);
    if (!end || end == v->s || *end || x < min || x > INT32_MAX)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s '%s': runPolicy.%s '%s' is not a whole number of at least %lld",
                           bt__k8s_kind_info(job->kind)->kind, job->name, key,
                           v->kind == BT_YN_SCALAR ? v->s : "?", min);
    *out = x;
    return BT_OK;
}

static int policy_word(const struct bt__k8s_job *job, const struct bt__yn *rp, const char *key,
                       const char *const *words, int *out, struct bt__err *err)
{
    const char *s = bt__yn_gets(rp, key);
    *out = 0;
    if (!s)
        return BT_OK;
    for (int i = 0; words[i]; i++)
        if (!strcmp(s, words[i])) {
            *out = i;
            return BT_OK;
        }
    char list[64] = "";
    for (int i = 0; words[i]; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", words[i]);
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s '%s': runPolicy.%s '%s' is not one of %s",
                       bt__k8s_kind_info(job->kind)->kind, job->name, key, s, list);
}

static const char *const clean_words[] = {"None", "Running", "All", NULL};
static const char *const bool_words[] = {"false", "true", NULL};

int bt__k8s_read_run_policy(struct bt__k8s_job *job, struct bt__err *err)
{
    struct bt__k8s_run_policy *p = &job->policy;
    const struct bt__yn *rp = bt__yn_get(bt__yn_get(job->doc, "spec"), "runPolicy");
    BT_CHECK(policy_int(job, rp, "backoffLimit", 0, &p->backoff_limit, err));
    BT_CHECK(policy_int(job, rp, "activeDeadlineSeconds", 1, &p->active_deadline_s, err));
    BT_CHECK(policy_int(job, rp, "ttlSecondsAfterFinished", 0, &p->ttl_after_finished_s, err));
    BT_CHECK(policy_word(job, rp, "cleanPodPolicy", clean_words, &p->clean_pod_policy, err));
    BT_CHECK(policy_word(job, rp, "suspend", bool_words, &p->suspend, err));
    p->scheduling = bt__yn_get(rp, "schedulingPolicy");
    p->managed_by = bt__yn_gets(rp, "managedBy");
    if (p->scheduling && p->scheduling->kind != BT_YN_MAP)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s '%s': runPolicy.schedulingPolicy is not a mapping",
                           bt__k8s_kind_info(job->kind)->kind, job->name);
    long long min_avail;
    BT_CHECK(policy_int(job, p->scheduling, "minAvailable", 0, &min_avail, err));
    p->min_available = min_avail >= 0 ? (int)min_avail : job->total_replicas;
    return BT_OK;
}

/* Pod spec.activeDeadlineSeconds: the runPolicy's, or the template's own when smaller. */
void bt__k8s_policy_pod(const struct bt__k8s_job *job, struct bt__yn *podspec)
{
    long long d = job->policy.active_deadline_s;
    const char *own = bt__yn_gets(podspec, "activeDeadlineSeconds");
    if (d < 1 || (own && atoll(own) >= 1 && atoll(own) <= d))
        return;
    bt__yn_set(podspec, "activeDeadlineSeconds", bt__yn_int(d));
}

/* ---- notes: one line per field the shim cannot honour, or honours differently ---- */

/* The replica types whose restartPolicy is rp, as "Master, Worker"; "" when none. */
static void types_with(const struct bt__k8s_job *job, enum bt__k8s_restart rp, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < job->nrs; i++)
        if (job->rs[i].restart == rp)
            snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? ", " : "",
                     job->rs[i].type);
}

static void restart_notes(const struct bt__k8s_job *job, FILE *out, const char *head)
{
    char t[128];
    types_with(job, BT_K8S_RESTART_EXITCODE, t, sizeof(t));
    if (t[0])
        fprintf(out,
                "%srestartPolicy ExitCode (%s): the pods get restartPolicy Never, as the "
                "operator's do, but no controller recreates a pod that exits >= 128: a failed "
                "pod stays failed (baton run --max-restarts K retries inside the pod)\n",
                head, t);
    for (int rp = BT_K8S_RESTART_ALWAYS; rp <= BT_K8S_RESTART_ONFAILURE; rp++) {
        types_with(job, (enum bt__k8s_restart)rp, t, sizeof(t));
        if (t[0])
            fprintf(out,
                    "%srestartPolicy %s (%s): kubelet restarts the container in place, as "
                    "under the operator, but without a backoffLimit, and a pod that is "
                    "deleted or evicted (node drain, preemption) is not recreated\n",
                    head, rp == BT_K8S_RESTART_ALWAYS ? "Always" : "OnFailure", t);
    }
}

static void limit_notes(const struct bt__k8s_job *job, FILE *out, const char *head)
{
    const struct bt__k8s_run_policy *p = &job->policy;
    if (p->backoff_limit >= 0)
        fprintf(out,
                "%srunPolicy.backoffLimit %lld: not honoured (no controller counts restarts): "
                "OnFailure/Always pods restart without limit, a failed ExitCode/Never pod "
                "stays failed\n",
                head, p->backoff_limit);
    if (p->active_deadline_s >= 1)
        fprintf(out,
                "%srunPolicy.activeDeadlineSeconds %lld: set on each Pod as "
                "spec.activeDeadlineSeconds: kubelet fails each pod %lld s after it started "
                "(the operator fails the whole job %lld s after the job started)\n",
                head, p->active_deadline_s, p->active_deadline_s, p->active_deadline_s);
    if (p->ttl_after_finished_s >= 0)
        fprintf(out,
                "%srunPolicy.ttlSecondsAfterFinished %lld: not honoured: finished pods and "
                "services stay until 'baton k8s delete JOB.yaml'\n",
                head, p->ttl_after_finished_s);
    if (p->clean_pod_policy > 0)
        fprintf(out,
                "%srunPolicy.cleanPodPolicy %s: not honoured (as None): nothing deletes the "
                "pods when the job ends; pods that never exit (ps) keep running until "
                "'baton k8s delete JOB.yaml'\n",
                head, clean_words[p->clean_pod_policy]);
    if (p->suspend)
        fprintf(out,
                "%srunPolicy.suspend true: honoured: the operator creates no pods for a "
                "suspended job, so nothing is rendered or applied\n",
                head);
    if (p->managed_by && strcmp(p->managed_by, "kubeflow.org/training-operator"))
        fprintf(out,
                "%srunPolicy.managedBy %s: the training operator leaves this job to that "
                "controller; rendered anyway\n",
                head, p->managed_by);
}

void bt__k8s_job_notes(const struct bt__k8s_job *job, const struct bt__k8s_opts *opts, FILE *out,
                       const char *prefix)
{
    char head[BT_K8S_NAME_MAX + 96];
    snprintf(head, sizeof(head), "%s%s '%s': ", prefix, bt__k8s_kind_info(job->kind)->kind,
             job->name);
    limit_notes(job, out, head);
    restart_notes(job, out, head);
    bt__k8s_gang_notes(job, opts, out, head);
}
