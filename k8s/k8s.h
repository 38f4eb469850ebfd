/* k8s.h: the operator shim's model of a job: what the Kubeflow training operator (v1.9,
 * kubeflow.org/v1) would create for a PyTorchJob or TFJob, pod by pod.
 *
 * bt__k8s_job_parse() checks the job as the operator's webhook does and fills one
 * struct bt__k8s_pod per replica: its name, replica type and index, the env of the framework
 * container (the template's env followed by what the operator injects), the command line, and
 * the finished Pod and headless Service objects. `baton k8s render` emits the objects;
 * `baton k8s local` (later) runs argv with env, one process (or network namespace) per pod.
 * The facts this follows are in shared/k8s-operator-facts.md.
 */
#ifndef BT_K8S_K8S_H
#define BT_K8S_K8S_H

#include <stddef.h>
#include <stdio.h>

#include "common/err.h"
#include "k8s/ytree.h"

#define BT_K8S_NAME_MAX 64 /* a DNS-1035 label: 63 characters and the NUL */

/* BT_K8S_TRAINJOB: a Kubeflow Trainer v2 TrainJob with its runtime (k8s/trainjob.c). */
enum bt__k8s_kind { BT_K8S_PYTORCHJOB = 0, BT_K8S_TFJOB, BT_K8S_TRAINJOB };

/* A replica's restartPolicy as written in the job (ExitCode becomes pod Never). */
enum bt__k8s_restart {
    BT_K8S_RESTART_ALWAYS = 0,
    BT_K8S_RESTART_ONFAILURE,
    BT_K8S_RESTART_NEVER,
    BT_K8S_RESTART_EXITCODE
};

struct bt__k8s_env {
    char *name;
    char *value; /* NULL when the variable comes from valueFrom (not known before the pod runs) */
};

struct bt__k8s_pod {
    char name[BT_K8S_NAME_MAX];      /* <job>-<type>-<index>: pod, service and host name; for a
                                      * TrainJob the host name <job>-node-0-<index> */
    char subdomain[BT_K8S_NAME_MAX]; /* TrainJob: the headless Service (DNS name
                                      * <name>.<subdomain>); "" for the v1 kinds */
    char rtype[16];                  /* lower-case replica type: master, worker, chief, ps, ... */
    int index;                       /* index within the replica type */
    int master_role;                 /* carries training.kubeflow.org/job-role=master */
    enum bt__k8s_restart restart;
    struct bt__k8s_env *env; /* framework container's env, in order (later wins) */
    size_t nenv;
    char **argv;        /* command + args of the framework container, NULL-ended; */
    size_t argc;        /* argc 0 when it has neither (the image's entrypoint runs) */
    struct bt__yn *pod; /* the Pod object */
    struct bt__yn *svc; /* the headless Service object */
};

#define BT_K8S_MAX_REPLICA_TYPES 8

/* One entry of pytorchReplicaSpecs / tfReplicaSpecs, with the operator's defaults applied. */
struct bt__k8s_replica {
    char type[16];                /* canonical: Master, Worker, Chief, PS, Evaluator */
    char rtype[16];               /* lower case, as in names and labels */
    int replicas;                 /* default 1 */
    enum bt__k8s_restart restart; /* default OnFailure (PyTorchJob) or Never (TFJob) */
    int port;                     /* the framework container's default port (name *job-port) */
    const struct bt__yn *tmpl;    /* the pod template (points into the job's doc) */
};

/* spec.runPolicy as written (what the shim does with each field: k8s/policy.c). */
struct bt__k8s_run_policy {
    long long backoff_limit;         /* -1: not given */
    long long active_deadline_s;     /* -1: not given; else >= 1, set on every Pod */
    long long ttl_after_finished_s;  /* -1: not given */
    int clean_pod_policy;            /* 0 None (default), 1 Running, 2 All */
    int suspend;                     /* 1: the operator creates no pods: nothing is rendered */
    const struct bt__yn *scheduling; /* schedulingPolicy, or NULL (points into doc) */
    int min_available;               /* schedulingPolicy.minAvailable, else total replicas */
    const char *managed_by;          /* managedBy, or NULL (points into doc) */
};
struct bt__k8s_trainjob;

#define BT_K8S_TOKEN_MAX 256 /* bytes of the job's secret, with its NUL */

struct bt__k8s_job {
    enum bt__k8s_kind kind;
    char name[BT_K8S_NAME_MAX];
    char ns[BT_K8S_NAME_MAX];
    struct bt__k8s_replica rs[BT_K8S_MAX_REPLICA_TYPES]; /* in the file's order */
    size_t nrs;
    int total_replicas;           /* over every replica type */
    const struct bt__yn *elastic; /* PyTorchJob spec.elasticPolicy, or NULL */
    int dynamic_worker;           /* TFJob spec.enableDynamicWorker: sparse TF_CONFIG */
    struct bt__k8s_pod *pods;     /* in the order of the replica types in the file */
    size_t npods;
    struct bt__yn *doc; /* the job as read */
    struct bt__k8s_run_policy policy;
    struct bt__yn *podgroup;      /* with opts.gang_scheduler: the PodGroup <job>, else NULL */
    struct bt__k8s_trainjob *tj;  /* TrainJob: its runtime and JobSet (trainjob.c), else NULL */
    const char *token_opt;        /* opts->token as parsed (not owned), or NULL */
    char token[BT_K8S_TOKEN_MAX]; /* the job's secret (base64 of 32 random bytes, or --token) */
    struct bt__yn *secret;        /* the Secret <job>-baton-token that holds it */
};

struct bt__k8s_opts {
    const char *cluster_domain; /* appended to TF_CONFIG hosts after ".svc" (NULL: none) */
    const char *gang_scheduler; /* the operator's --gang-scheduler-name: "volcano", another
                                   name (scheduler-plugins), or NULL (no gang scheduling) */
    const char *runtime;        /* TrainJob: a file holding its (Cluster)TrainingRuntime */
    const char *token;          /* --token: the job's secret, NULL: 32 random bytes per render */
};

/* Parses and renders the job in buf (len bytes; what names it in errors) into job, which the
 * caller releases with bt__k8s_job_free (also after an error). Invalid jobs return
 * BT_ERR_INVALID_USAGE with one line in err naming the job, the replica type and the problem. */
int bt__k8s_job_parse(const char *buf, size_t len, const char *what,
                      const struct bt__k8s_opts *opts, struct bt__k8s_job *job,
                      struct bt__err *err);
/* Reads path ("-": stdin) and calls bt__k8s_job_parse. */
int bt__k8s_job_load(const char *path, const struct bt__k8s_opts *opts, struct bt__k8s_job *job,
                     struct bt__err *err);
void bt__k8s_job_free(struct bt__k8s_job *job);

/* Writes the PodGroup (if any), every Service and Pod of the job as one YAML stream
 * (`kubectl apply -f -` input). */
int bt__k8s_job_emit(const struct bt__k8s_job *job, FILE *out, struct bt__err *err);

/* Writes one line per runPolicy / restartPolicy / scheduling field that the shim, having no
 * controller, cannot honour or honours differently, each starting with prefix. */
void bt__k8s_job_notes(const struct bt__k8s_job *job, const struct bt__k8s_opts *opts, FILE *out,
                       const char *prefix);

/* The value of name in pod's env (the last one wins, as in Kubernetes), or NULL. */
const char *bt__k8s_pod_env(const struct bt__k8s_pod *pod, const char *name);

/* TF_CONFIG for task (rtype, index) of a TFJob, exactly as the operator writes it: a malloc'd
 * string the caller frees, or NULL when out of memory. */
char *bt__k8s_tf_config(const struct bt__k8s_job *job, const char *rtype, int index,
                        const struct bt__k8s_opts *opts);

#endif
