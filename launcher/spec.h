/* spec.h: the cluster spec, what `baton run` derives from flags and the orchestrator's env.
 *
 * Sources, in order: explicit flags; PyTorchJob (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK,
 * PET_*; elastic worker-only jobs from PET_* and the hostname); TF_CONFIG (TFJob); Open MPI /
 * PMIx; Slurm; JAXJob; Kubeflow Trainer v2; Kubernetes Indexed Job (JOB_COMPLETION_INDEX plus
 * BATON_* env from the manifest); otherwise a standalone single-node job. Env is read through
 * a lookup function so tests can pass any environment. Exact forms: shared/k8s-operator-facts.md.
 */
#ifndef BT_LAUNCHER_SPEC_H
#define BT_LAUNCHER_SPEC_H

#include <stdio.h>

#include "common/err.h"

#define BT_SPEC_HOST_MAX 256
#define BT_SPEC_MAX_PS 64

enum bt__spec_source {
    BT_SPEC_AUTO = 0,
    BT_SPEC_STANDALONE,
    BT_SPEC_PYTORCHJOB, /* master + workers, or worker-only elastic */
    BT_SPEC_TFJOB,
    BT_SPEC_MPI, /* Open MPI / PMIx: one process per rank, started by mpirun */
    BT_SPEC_SLURM,
    BT_SPEC_INDEXED, /* batch/v1 Indexed Job */
    BT_SPEC_JAXJOB,
    BT_SPEC_TRAINER_V2, /* Kubeflow Trainer v2 TrainJob (JobSet) */
    BT_SPEC_FLAGS       /* everything from --nnodes/--node-rank/--rdzv */
};

enum bt__role { BT_ROLE_WORKER = 0, BT_ROLE_CHIEF, BT_ROLE_PS, BT_ROLE_EVALUATOR };

/* What the user typed; -1 / NULL / BT_SPEC_AUTO for "not given". */
struct bt__spec_flags {
    enum bt__spec_source source;
    int nproc_per_node; /* -1: not given; 0: "auto" (one per GPU, else one per CPU) */
    int nnodes;
    int node_rank;
    const char *rdzv; /* "host:port" */
    int rdzv_port;    /* --rdzv-port: the store's port when the spec gives only the master's */
    int nnodes_min;   /* --nnodes MIN:MAX: MIN (nnodes holds MAX); 0: not elastic */
};

typedef const char *(*bt__getenv_fn)(const char *name, void *arg);

struct bt__spec {
    enum bt__spec_source source;
    char job_id[128]; /* the job's name (k8s job name, Slurm job id, ...) */
    enum bt__role role;
    int node_rank;      /* this node's (pod's) rank among the nodes that run workers */
    int nnodes;         /* nodes that run workers (ps and evaluator pods excluded) */
    int nproc_per_node; /* workers started on this node; 0 = auto, resolved by run */
    int nproc_cpu;      /* auto: 1 when -n auto was typed (no GPU: one per CPU), else one */
    int world_size;     /* processes in the job; 0 = unknown until rendezvous */
    int first_rank;     /* global rank of local rank 0 when fixed by the spec, else -1 */
    int elastic;        /* worker-only PyTorchJob: ranks assigned by the rendezvous */
    int nnodes_min, nnodes_max;
    char rdzv_host[BT_SPEC_HOST_MAX]; /* where node 0's launcher hosts the store */
    int rdzv_port;
    char master_addr[BT_SPEC_HOST_MAX]; /* MASTER_ADDR given to workers (a port baton leaves */
    int master_port;                    /* free for the program: MASTER_PORT) */
    int tf_task_index;                  /* TFJob: this task's index within its type, else -1 */
    char tf_cluster_json[16384];        /* TFJob: TF_CONFIG's "cluster" object, verbatim, or "" */
    char tf_environment[32];            /* TFJob: TF_CONFIG's "environment" ("cloud"), or "" */
    int nps;                            /* TFJob: ps tasks, and their endpoints */
    char ps_hosts[BT_SPEC_MAX_PS][BT_SPEC_HOST_MAX];
    char from[512];   /* the env variables (and flags) the spec came from */
    int max_restarts; /* PET_MAX_RESTARTS (elastic PyTorchJob), else -1 */
};

/* Fills spec from flags and the env seen through getenv_fn (NULL: the real getenv). On a
 * malformed or contradictory env returns BT_ERR_INVALID_USAGE with one line in err naming the
 * variable and the problem. */
int bt__spec_detect(const struct bt__spec_flags *flags, bt__getenv_fn getenv_fn, void *arg,
                    struct bt__spec *spec, struct bt__err *err);

const char *bt__spec_source_name(enum bt__spec_source src);
const char *bt__role_name(enum bt__role role);
/* Parses "auto", "pytorchjob", ... (the --spec values); -1 when unknown. */
int bt__spec_source_parse(const char *s);
/* The --spec values (aliases left out) into out: "auto" sep "standalone" ... last "trainer". */
void bt__spec_source_list(char *out, size_t cap, const char *sep, const char *last);

/* Flags "not given": source auto, every number -1, rdzv NULL. */
void bt__spec_flags_init(struct bt__spec_flags *f);
/* Parses the spec flag at argv[*i] (--spec, -n/--nproc-per-node N|auto, --nnodes, --node-rank,
 * --rdzv, --rdzv-port; value in the next argument, after '=', or for -n attached: -n4),
 * advancing *i past its value. Returns 1 when consumed, 0 when argv[*i] is no spec flag, -1
 * with one line in err when its value is bad. The spec-flag subset of launcher/flags.c's
 * table, which `baton run` parses whole. */
int bt__spec_parse_flag(struct bt__spec_flags *f, int argc, char **argv, int *i,
                        struct bt__err *err);

/* Human-readable report (`baton spec`) and one JSON object (`baton spec --json`). */
void bt__spec_print(const struct bt__spec *spec, FILE *out);
void bt__spec_print_json(const struct bt__spec *spec, FILE *out);

#endif
