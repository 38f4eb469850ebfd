/* k8s_impl.h: what k8s/job.c (reading and checking a job) and k8s/render.c (making its Pods
 * and Services) share. Not for use outside k8s/. */
#ifndef BT_K8S_K8S_IMPL_H
#define BT_K8S_K8S_IMPL_H

#include "k8s/k8s.h"

/* Per kind: the framework container, its default port, and the operator's names. */
struct bt__k8s_kind_info {
    const char *kind;       /* "PyTorchJob" */
    const char *specs_key;  /* "pytorchReplicaSpecs" */
    const char *container;  /* "pytorch" */
    const char *port_name;  /* "pytorchjob-port" */
    int port;               /* 23456 */
    const char *controller; /* "pytorchjob-controller" */
    enum bt__k8s_restart restart_default;
};

const struct bt__k8s_kind_info *bt__k8s_kind_info(enum bt__k8s_kind kind);

/* The container named name in a pod spec's containers, or NULL. */
struct bt__yn *bt__k8s_container(const struct bt__yn *podspec, const char *name);

/* Fills job->pods from job->rs (job is parsed and valid). */
int bt__k8s_render_pods(struct bt__k8s_job *job, const struct bt__k8s_opts *opts,
                        struct bt__err *err);

/* policy.c: reads spec.runPolicy into job->policy (errors as bt__k8s_job_parse's); sets a
 * Pod spec's activeDeadlineSeconds from it. */
int bt__k8s_read_run_policy(struct bt__k8s_job *job, struct bt__err *err);
void bt__k8s_policy_pod(const struct bt__k8s_job *job, struct bt__yn *podspec);

/* gang.c: a pod's gang-scheduling and Kueue fields; the PodGroup (NULL without a gang
 * scheduler); the notes on them. */
void bt__k8s_gang_pod(const struct bt__k8s_job *job, const struct bt__k8s_replica *r,
                      struct bt__yn *pod, const struct bt__k8s_opts *opts);
struct bt__yn *bt__k8s_gang_podgroup(const struct bt__k8s_job *job,
                                     const struct bt__k8s_opts *opts);
void bt__k8s_gang_notes(const struct bt__k8s_job *job, const struct bt__k8s_opts *opts, FILE *out,
                        const char *head);

/* pod->env and pod->argv from container c of the finished Pod object pod; an env entry with
 * valueFrom.fieldRef to the pod's metadata (name, namespace, labels['k'], annotations['k']) gets
 * that value, as the kubelet would give it. */
int bt__k8s_pod_collect(struct bt__k8s_pod *p, const struct bt__yn *pod, const struct bt__yn *c);
/* The job's Secret <job>-baton-token (job->secret, job->token): --token's value, else 32 random
 * bytes in base64, new on every render. BT_OK, or an error in err. */
int bt__k8s_secret_make(struct bt__k8s_job *job, struct bt__err *err);
/* Gives container c of a pod env BATON_TOKEN from the job's Secret (secretKeyRef). */
void bt__k8s_secret_env(const struct bt__k8s_job *job, struct bt__yn *c);
/* After bt__k8s_pod_collect: the collected BATON_TOKEN is the Secret's value (what the kubelet
 * would resolve), for `local`. BT_OK or BT_ERR_SYSTEM. */
int bt__k8s_secret_resolve(const struct bt__k8s_job *job, struct bt__k8s_pod *p);

/* trainjob.c: a TrainJob among docs (ndocs documents of what, taken over: freed here or with the
 * job), its runtime found there or in opts->runtime; checked, turned into the JobSet the Trainer
 * makes and the Jobs, Service and Pods the JobSet and Job controllers make. */
int bt__k8s_trainjob_parse(struct bt__k8s_job *job, struct bt__yn **docs, size_t ndocs,
                           const char *what, const struct bt__k8s_opts *opts, struct bt__err *err);
/* 1 when doc is a TrainJob (kind TrainJob). */
int bt__k8s_is_trainjob(const struct bt__yn *doc);
/* The JobSet, the Service, the Jobs and the Pods as one YAML stream. */
int bt__k8s_trainjob_emit(const struct bt__k8s_job *job, FILE *out, struct bt__err *err);
void bt__k8s_trainjob_free(struct bt__k8s_trainjob *tj); /* accepts NULL */

#endif
