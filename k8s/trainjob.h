/* trainjob.h: what k8s/trainjob.c (reading and checking a TrainJob and its runtime, building
 * the JobSet) and k8s/trainjob_render.c (the Jobs, Pods and Service of that JobSet) share.
 * Not for use outside k8s/.
 *
 * Sources (read, not remembered): kubeflow/trainer @ 8c0f5059bd51ec3ba6d6a6a7b2e1471de7bc13b3,
 * kubernetes-sigs/jobset @ 08dfbdfd682714a9ab929633eca8dc95315187e7, kubernetes/kubernetes
 * pkg/controller/job (indexed_job_utils.go, job_controller.go) @ 037091284e21. The file
 * comments of trainjob.c and trainjob_render.c name the functions each step follows.
 */
#ifndef BT_K8S_TRAINJOB_H
#define BT_K8S_TRAINJOB_H

#include "k8s/k8s_impl.h"

#define BT_TJ_MAX_DOCS 16
#define BT_TJ_PORT 29500      /* trainer constants.ContainerTrainerPort */
#define BT_TJ_MAX_NODES 10000 /* numNodes baton renders */

struct bt__k8s_trainjob {
    struct bt__yn *docs[BT_TJ_MAX_DOCS]; /* what was read, owned (the TrainJob is job->doc) */
    const char *src[BT_TJ_MAX_DOCS];     /* the file each came from */
    size_t ndocs;
    char *runtime_buf;            /* --runtime FILE's bytes (src points at opts->runtime) */
    const struct bt__yn *runtime; /* the (Cluster)TrainingRuntime used */
    const char *runtime_src;
    char runtime_kind[32];
    char runtime_name[254];
    int num_nodes;         /* trainer.numNodes, else mlPolicy.numNodes, else 1 */
    char nproc[24];        /* PET_NPROC_PER_NODE as the Torch plugin computes it */
    struct bt__yn *jobset; /* the JobSet the Trainer creates (with the JobSet webhook's defaults) */
    struct bt__yn *svc;    /* the headless Service the JobSet controller creates */
    struct bt__yn *jobobj; /* the one Job (<job>-node-0) */
};

/* trainjob_render.c: from tj->jobset, the Service, the Job, and job->pods. */
int bt__k8s_trainjob_render(struct bt__k8s_job *job, struct bt__err *err);

#endif
