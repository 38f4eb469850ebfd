/* gang.c: gang scheduling, as the training operator v1.9 does it when started with
 * --gang-scheduler-name (here: `baton k8s render --gang-scheduler NAME`), and Kueue's queue
 * label. Source: release-1.9 @ 078ec30f, pkg/controller.v1/common/job.go (ReconcileJobs: the
 * PodGroup's spec), common/scheduling.go (SyncPodGroup: named after the job, the job's
 * annotations), control/podgroup_control.go (DecoratePodTemplateSpec).
 *
 *   volcano   PodGroup scheduling.volcano.sh/v1beta1 <job>: minMember = schedulingPolicy
 *             .minAvailable (default: every replica), queue (default "default"),
 *             priorityClassName = priorityClass, minResources. Each pod: schedulerName
 *             volcano unless the template names one, annotations scheduling.k8s.io/group-name
 *             = <job> and volcano.sh/task-spec = <replica type>.
 *   any other name: the scheduler-plugins coscheduling PodGroup scheduling.x-k8s.io/v1alpha1
 *             <job>: minMember, minResources, scheduleTimeoutSeconds (queue and priorityClass
 *             are not used). Each pod: schedulerName NAME unless set, label
 *             scheduling.x-k8s.io/pod-group = <job>.
 * The operator computes minResources from the pods' requests when the policy gives none; the
 * shim leaves it out then (noted).
 *
 * Kueue: a job labelled kueue.x-k8s.io/queue-name is, under the operator, suspended and
 * resumed by Kueue as a whole; the operator does not copy the label to the pods. Bare pods
 * are admitted by Kueue's pod integration instead, as one group when they carry the queue
 * label, kueue.x-k8s.io/pod-group-name and the annotation kueue.x-k8s.io/pod-group-total-count
 * (kubernetes-sigs/kueue pkg/controller/jobs/pod/constants): the shim adds those three.
 */
#include <stdio.h>
#include <string.h>

#include "k8s/k8s_impl.h"

#define KUEUE_QUEUE "kueue.x-k8s.io/queue-name"

static int volcano(const struct bt__k8s_opts *opts)
{
    return opts && opts->gang_scheduler && !strcmp(opts->gang_scheduler, "volcano");
}

/* The map at key in m, made when absent. */
static struct bt__yn *map_at(struct bt__yn *m, const char *key)
{
    struct bt__yn *v = bt__yn_get(m, key);
    if (!v || v->kind != BT_YN_MAP) {
        bt__yn_set(m, key, bt__yn_new(BT_YN_MAP));
        v = bt__yn_get(m, key);
    }
    return v;
}

static const char *kueue_queue(const struct bt__k8s_job *job)
{
    return bt__yn_gets(bt__yn_get(bt__yn_get(job->doc, "metadata"), "labels"), KUEUE_QUEUE);
}

static void kueue_pod(const struct bt__k8s_job *job, struct bt__yn *md)
{
    const char *q = kueue_queue(job);
    char n[16];
    if (!q)
        return;
    struct bt__yn *labels = map_at(md, "labels");
    if (!bt__yn_get(labels, KUEUE_QUEUE))
        bt__yn_set(labels, KUEUE_QUEUE, bt__yn_str(q));
    bt__yn_set(labels, "kueue.x-k8s.io/pod-group-name", bt__yn_str(job->name));
    snprintf(n, sizeof(n), "%d", job->total_replicas);
    bt__yn_set(map_at(md, "annotations"), "kueue.x-k8s.io/pod-group-total-count", bt__yn_str(n));
}

void bt__k8s_gang_pod(const struct bt__k8s_job *job, const struct bt__k8s_replica *r,
                      struct bt__yn *pod, const struct bt__k8s_opts *opts)
{
    struct bt__yn *md = bt__yn_get(pod, "metadata"), *spec = bt__yn_get(pod, "spec");
    kueue_pod(job, md);
    if (!opts || !opts->gang_scheduler || !spec)
        return;
    if (!bt__yn_gets(spec, "schedulerName"))
        bt__yn_set(spec, "schedulerName", bt__yn_str(opts->gang_scheduler));
    if (volcano(opts)) {
        struct bt__yn *a = map_at(md, "annotations");
        bt__yn_set(a, "scheduling.k8s.io/group-name", bt__yn_str(job->name));
        bt__yn_set(a, "volcano.sh/task-spec", bt__yn_str(r->rtype));
    } else {
        bt__yn_set(map_at(md, "labels"), "scheduling.x-k8s.io/pod-group", bt__yn_str(job->name));
    }
}

struct bt__yn *bt__k8s_gang_podgroup(const struct bt__k8s_job *job, const struct bt__k8s_opts *opts)
{
    const struct bt__yn *sp = job->policy.scheduling, *jmd = bt__yn_get(job->doc, "metadata");
    if (!opts || !opts->gang_scheduler)
        return NULL;
    struct bt__yn *pg = bt__yn_new(BT_YN_MAP), *md = bt__yn_new(BT_YN_MAP);
    struct bt__yn *spec = bt__yn_new(BT_YN_MAP);
    bt__yn_set(pg, "apiVersion",
               bt__yn_str(volcano(opts) ? "scheduling.volcano.sh/v1beta1"
                                        : "scheduling.x-k8s.io/v1alpha1"));
    bt__yn_set(pg, "kind", bt__yn_str("PodGroup"));
    bt__yn_set(md, "name", bt__yn_str(job->name));
    bt__yn_set(md, "namespace", bt__yn_str(job->ns));
    if (bt__yn_get(jmd, "annotations"))
        bt__yn_set(md, "annotations", bt__yn_copy(bt__yn_get(jmd, "annotations")));
    bt__yn_set(pg, "metadata", md);
    bt__yn_set(spec, "minMember", bt__yn_int(job->policy.min_available));
    if (volcano(opts)) {
        const char *q = bt__yn_gets(sp, "queue"), *pc = bt__yn_gets(sp, "priorityClass");
        bt__yn_set(spec, "queue", bt__yn_str(q && q[0] ? q : "default"));
        if (pc && pc[0])
            bt__yn_set(spec, "priorityClassName", bt__yn_str(pc));
    }
    if (bt__yn_get(sp, "minResources"))
        bt__yn_set(spec, "minResources", bt__yn_copy(bt__yn_get(sp, "minResources")));
    if (!volcano(opts) && bt__yn_get(sp, "scheduleTimeoutSeconds"))
        bt__yn_set(spec, "scheduleTimeoutSeconds",
                   bt__yn_copy(bt__yn_get(sp, "scheduleTimeoutSeconds")));
    bt__yn_set(pg, "spec", spec);
    return pg;
}

void bt__k8s_gang_notes(const struct bt__k8s_job *job, const struct bt__k8s_opts *opts, FILE *out,
                        const char *head)
{
    const struct bt__yn *sp = job->policy.scheduling;
    const char *g = opts ? opts->gang_scheduler : NULL;
    if (sp && !g)
        fprintf(out,
                "%srunPolicy.schedulingPolicy: ignored, as by an operator started without "
                "--gang-scheduler-name; give --gang-scheduler volcano (or the scheduler-plugins "
                "scheduler's name) to render the PodGroup and the pods' scheduler fields\n",
                head);
    if (g && !bt__yn_get(sp, "minResources"))
        fprintf(out,
                "%sPodGroup %s: rendered for --gang-scheduler %s with minMember %d and no "
                "minResources (the operator computes them from the pods' requests)\n",
                head, job->name, g, job->policy.min_available);
    if (g && !volcano(opts) && (bt__yn_get(sp, "queue") || bt__yn_get(sp, "priorityClass")))
        fprintf(out,
                "%srunPolicy.schedulingPolicy queue/priorityClass: not used with the "
                "scheduler-plugins PodGroup (as by the operator)\n",
                head);
    if (kueue_queue(job))
        fprintf(out,
                "%slabel %s=%s: put on each Pod with kueue.x-k8s.io/pod-group-name=%s and "
                "pod-group-total-count=%d, so Kueue's pod integration admits the pods as one "
                "group (under the operator Kueue suspends and resumes the job instead)\n",
                head, KUEUE_QUEUE, kueue_queue(job), job->name, job->total_replicas);
}
