/* run.h: what the parts of `baton run` share. Not for use outside launcher/run*.c.
 *
 *   run.c          flags, the program's path, the generation loop, exit status
 *   run_rdzv.c     the launchers' rendezvous: hosting the store (node 0), joining, the
 *                  outcome key every launcher watches, the exit barrier
 *   run_spawn.c    worker env and fork/exec (process group, PDEATHSIG, pipes)
 *   run_output.c   `[rank] ` tagging of worker output, line by line; --log-dir files
 *   run_supervise.c  the one poll loop: pipes, signals (self-pipe), child exits, the watcher
 *   run_report.c   exit statuses in words, signal names, hints
 *   run_stall.c    hangs: stopped workers (/proc), the ranks' stall record, outcome H
 *   run_flight.c   the ranks' flight recorders: dumps, their analysis, stragglers
 *   run_metrics.c  --metrics-port: Prometheus text on /metrics
 *   run_timeline.c BATON_TIMELINE: Chrome trace-event JSON of the job, merged on node 0
 *   run_forensics.c  error files, stderr tails, failure records of every node, the root
 *                  cause by time and its summary, the termination message
 *   run_ps.c       parameter servers: `--ps N` children on node 0, a TF ps pod's own server
 *   run_bind.c     --bind: the topology plan, per-rank CPUs, GPU and NIC env
 *   run_tree.c     the job's process tree: subreaper, the job's cgroup, finding and signalling
 *                  every descendant, clearing what a generation left
 *   run_watchdog.c the process that cleans up the job when baton dies (kill -9, a crash)
 *   run_elastic.c  --nnodes MIN:MAX: generations formed from the nodes present, stable node
 *                  ranks, late joiners, the workers' BATON_ELASTIC_FILE
 *   run_torch.c    torchrun's flags, a .py/-m PROGRAM under Python, torchrun's worker env
 *
 * One generation (restart count g) is: join (claim l/<g>/node/<R>, wait for every node),
 * start the workers, supervise them until l/<g>/outcome is set, stop them. The outcome key
 * holds "K STATUS\tLINE": K is S (every worker on every node exited 0), F (a worker failed:
 * restartable), H (a worker failed because a collective timed out waiting for a stalled rank:
 * restartable; LINE names the stalled rank), L (a launcher lost contact with the store: not
 * restartable; in an elastic job: a membership change) M (elastic: nodes ask to join; the
 * generation closes to admit them) or T (a launcher was told to stop by a signal: not
 * restartable); STATUS is the exit
 * status every launcher exits with, LINE the root cause every launcher prints.
 */
#ifndef BT_LAUNCHER_RUN_H
#define BT_LAUNCHER_RUN_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "collectives/flight.h"
#include "launcher/topo.h"
#include "common/err.h"
#include "launcher/spec.h"
#include "rendezvous/store.h"

#define BT_RUN_LINE_MAX 65536   /* bytes: a longer line is split, each piece tagged */
#define BT_RUN_OUTCOME_MAX 1024 /* bytes of the outcome value */
#define BT_RUN_EXIT_LOST 129    /* 128 + SIGHUP: a launcher or the store went away */
#define BT_RUN_EXIT_LAUNCHER 1  /* baton itself could not run the job (auth, duplicate rank) */
#define BT_RUN_EXIT_PENDING                                                                        \
    142 /* 128 + SIGALRM: nodes still missing at --join-timeout (their                             \
           pods Pending?): retryable under restartPolicy ExitCode */
#define BT_RUN_EXIT_HANG                                                                           \
    142 /* 128 + SIGALRM: a collective timed out (BATON_TIMEOUT) waiting for a stalled rank:       \
           retryable, like the join timeout */
#define BT_RUN_TAIL_BYTES 4096  /* bytes of a worker's stderr kept for the failure summary */
#define BT_RUN_SUMMARY_MAX 8192 /* bytes of the failure summary */
#define BT_RUN_STRAG_WINDOW 100 /* calls of one op the straggler statistics look at */
#define BT_RUN_STRAG_RANKS 256  /* local ranks whose "last" counts are kept for /metrics */
#define BT_RUN_STRAG_COMMS 16   /* communicators whose calls the local ranks compare */
#define BT_RUN_XS_KEEP 1024     /* calls of a communicator a node keeps for the job-wide look */
#define BT_RUN_GPU_MAX 64       /* bytes of one CUDA_VISIBLE_DEVICES entry (index or UUID) */

/* torchrun's flags (run_torch.c) and what baton derives from them. */
struct bt__run_torch {
    const char *rdzv_id, *master_addr, *role;    /* NULL: not given */
    int master_port;                             /* 0: not given */
    int standalone, module, no_python, run_path; /* 1: given */
    char run_id[128];                            /* TORCHELASTIC_RUN_ID; "" means the job id */
    char errdir[PATH_MAX]; /* TORCHELASTIC_ERROR_FILE's base folder, "" before it exists */
    int errdir_temp;       /* 1: baton made errdir (mkdtemp) and removes it at exit */
    char **argv_owned;     /* the python argv built for a .py PROGRAM, or NULL */
};

struct bt__run_opts {
    struct bt__spec_flags flags;
    int max_restarts;
    double restart_backoff_s; /* seconds before the first restart, doubled for each next (30 max) */
    double join_timeout_s;    /* seconds a launcher waits for the store and the other nodes */
    double last_call_s;       /* elastic: seconds a generation waits for more once MIN joined */
    const char *rdzv_backend; /* --rdzv-backend: NULL or "c10d" (own store), "etcd" */
    const char *rdzv_endpoint; /* --rdzv-endpoint: etcd's members, or the store (c10d) */
    double grace_s;            /* seconds between SIGTERM and SIGKILL */
    const char *log_dir;       /* NULL: no per-rank files */
    int tag_output;            /* 1: "[rank] " before each line */
    int nps;                   /* --ps N: parameter servers node 0 starts (0: none) */
    enum bt__bind bind;        /* --bind */
    const char *token_file;    /* --token-file: the job secret's file, or NULL */
    char **argv;               /* PROGRAM ARGS..., NULL-terminated; points into main's argv */
    int metrics_port;          /* --metrics-port: Prometheus /metrics (-1: off, 0: any port) */
    struct bt__run_torch torch;
};

/* Output of one worker stream, assembled into lines. */
struct bt__linebuf {
    int fd;      /* read end of the pipe, -1 once closed */
    int console; /* 1 or 2: where tagged lines go */
    size_t len;  /* bytes held in buf */
    char *buf;   /* BT_RUN_LINE_MAX bytes */
};

/* A child of the launcher: a worker (a rank), or a parameter server (--ps: not a rank). */
struct bt__worker {
    int local_rank, rank;
    int ps_index;     /* -1 for a worker; the server's index for a ps server */
    char tag[16];     /* "[3] " or "[ps0] " */
    const char *prog; /* what is executed: r->prog, or baton itself for a server */
    char *const *argv;
    char ps_argv_idx[12]; /* a server's "--index" value, which ps_argv points to */
    char *ps_argv[5];
    pid_t pid;   /* the worker's pid, also its process group id; 0 before it started */
    int running; /* 1 until reaped */
    int status;  /* waitpid status once reaped */
    int log_fd;  /* --log-dir file, or -1 */
    struct bt__linebuf out, err;
    char loader_err[160]; /* ld.so's "error while loading shared libraries: ..." from stderr */
    int stopped_seen;     /* seen in state T (run_stall.c): named once */
    char errfile[PATH_MAX + 64];  /* BATON_ERROR_FILE / TORCHELASTIC_ERROR_FILE, or "" */
    char tail[BT_RUN_TAIL_BYTES]; /* the last whole lines of its stderr */
    size_t tail_len;              /* bytes */
    int64_t end_ns;               /* wall clock when it was reaped */
    int64_t found_ns;             /* reaped with others (run_supervise.c's reap): its last sign
                                     of life, the time its failure takes without an error file
                                     (0: reaped alone, or no sign) */
    int64_t adopt_by; /* in place: ns deadline to take up the generation it was kept into, 0 */
    int replace;      /* in place: killed for missing adopt_by, started again when reaped */
    struct bt__flight_hdr *flight; /* its flight recorder, mapped read-only (run_flight.c) */
    int flight_fd;                 /* the recorder's memfd until the worker started, -1 */
    uint64_t stalls_seen;          /* its recorder's stall count when last looked at */
};

/* Straggler statistics of one op over the last BT_RUN_STRAG_WINDOW calls (run_flight.c). */
struct bt__strag_op {
    uint64_t n;                        /* calls accounted so far */
    int32_t last[BT_RUN_STRAG_WINDOW]; /* the rank that entered last: local index, or (job-wide
                                          on node 0) global rank */
    float lag_ms[BT_RUN_STRAG_WINDOW]; /* how long after the one before it */
};
/* One world call as a node saw it, for the job-wide comparison: its members' latest entry
 * time and the one before it (node 0's clock), who entered latest, the call's shape as its
 * first local member (srank) passed it, for the job-wide call-shape check, and for a sampled
 * call that member's call-shape hash (collectives/flight.h). */
struct bt__xs_rec {
    uint64_t seq;
    int64_t tmax, tsecond; /* ns; tsecond INT64_MIN when the node has one member */
    int32_t last;          /* global rank */
    int32_t op;
    uint64_t count;       /* elements */
    int32_t root, srank;  /* root (-1 none); the global rank whose shape this is */
    uint8_t dtype, redop; /* as in flight.h's entry */
    uint8_t has_hash;     /* 1: a sampled call, hash holds its call-shape hash */
    uint64_t hash;
    int64_t gap_last;  /* ns: rank last's gap before the call (straggler.h), or BT_STRAG_GAP_* */
    int64_t gap_other; /* ns: the longest gap of the node's other members of the communicator */
};
/* One communicator the local ranks record (or, on node 0, that another node's records name):
 * its calls compared up to seen. */
struct bt__strag_comm {
    uint32_t id;                        /* flight-recorder id, 0: the world */
    uint64_t seen;                      /* call number accounted up to */
    char name[BT_FLIGHT_NAME];          /* its ring's name, "c1a2b3c4 (world ranks 1, 3, 5)" */
    int members;                        /* its members among the local ranks, at the last look */
    int size;                           /* its members in all */
    struct bt__strag_op op[BT_FL_NOPS]; /* a sub-communicator's: its local members', or (job)
                                           all its members' (the world's are bt__strag's op) */
    int shape_warned;                   /* a WARN named its calls as differing */
    uint64_t hash_agreed, xhash_agreed; /* the last sampled call whose hashes agreed: among
                                           the local members; across nodes (node 0) */
    uint64_t sample_seen;               /* sampled call looked at up to (flight.h) */
    /* across nodes (r->strag.xnode, and members on other nodes) */
    int xs_on;                            /* 1: its calls go to records, not to op */
    int job, nodes;                       /* node 0: op holds all members' (sub-communicator),
                                             over this many nodes */
    struct bt__xs_rec xs[BT_RUN_XS_KEEP]; /* this node's last calls of it, a ring */
    uint64_t xs_n;                        /* records written to it so far */
    uint64_t xseen;                       /* node 0: call accounted job-wide up to */
};
struct bt__strag {
    struct bt__strag_op op[BT_FL_NOPS]; /* the world's: this node's ranks, or on node 0 of
                                           several the whole job's */
    struct bt__strag_comm comm[BT_RUN_STRAG_COMMS];
    int ncomm;
    int64_t next_warn_ns;                    /* wall clock of the next straggler check */
    int started;                             /* the first period began */
    int disagreements;                       /* WARNs about calls whose shape differs */
    uint64_t last_total[BT_RUN_STRAG_RANKS]; /* per local index: times last, whole job */
    /* job-wide (several nodes): each node publishes its records, node 0 compares */
    int xnode;            /* 1: this generation compares across nodes (the clocks measured) */
    int64_t clock_off_ns; /* this node's clock minus node 0's */
    int64_t next_pub_ns;  /* wall clock of the next publish (or read) */
    int64_t gen_ns;       /* when this generation began here (its samples start after) */
};

struct bt__outcome {
    char kind;  /* 0 (not yet), 'S', 'F', 'H', 'L', 'M', 'T' */
    int status; /* the exit status it implies */
    char line[BT_RUN_OUTCOME_MAX];
};

/* --bind plan of one local rank (run_bind.c). */
struct bt__run_place {
    struct bt__topo_place pl; /* pl.cpus: the plan's CPUs that baton may use (applied) */
    cpu_set_t planned;        /* the plan's CPUs as the topology gives them */
    char gpu[BT_RUN_GPU_MAX]; /* the GPU as CUDA_VISIBLE_DEVICES names it, "" for none */
};

/* The job's process tree (run_tree.c, run_watchdog.c). */
struct bt__run_tree {
    char cg[PATH_MAX];            /* the job's cgroup v2 folder, "" when none is used */
    char cg_procs[PATH_MAX + 16]; /* cg/cgroup.procs, which each child writes "0" to */
    pid_t dog;                    /* the watchdog's pid, 0 when there is none */
    int dog_fd;                   /* write end of the watchdog's pipe (only baton holds it), -1 */
};

/* One line of /proc/<pid>/stat. */
struct bt__proc {
    pid_t pid, ppid, pgrp, sid;
    char state;               /* 'R', 'S', 'Z', ... */
    unsigned long long start; /* clock ticks after boot */
};

struct bt__run {
    struct bt__run_opts o;
    struct bt__spec spec;
    char host[256];  /* this machine's name, for reports */
    char token[256]; /* the job token: BATON_TOKEN, or hex */
    char job_id[128];
    char prog[PATH_MAX]; /* PROGRAM resolved against PATH */
    int nproc;           /* workers on this node: w[0 .. nproc) */
    int nchild;          /* workers and the parameter servers this node runs: w[nproc ..) */
    int nps_job;         /* BATON_PS_SERVERS for the workers (0: not set) */
    int ps_keep; /* the --ps servers outlive the generation that is ending (run_supervise.c) */
    int w_keep;  /* in place: the workers outlive the generation that is ending */
    char self_exe[PATH_MAX];     /* baton itself, which servers run as `baton ps` */
    struct bt__run_place *place; /* --bind: nproc plans, or NULL */
    int restart;                 /* generation: BATON_RESTART_COUNT */
    char final_kind; /* the last generation's outcome kind ('L': one launcher is gone) */

    /* layout of the current generation, from the rendezvous */
    int world_size, first_rank;
    int *node_first; /* nnodes + 1: node i runs global ranks node_first[i] .. node_first[i+1) */
    char master_addr[BT_SPEC_HOST_MAX];
    int master_port;
    char rdzv_env[BT_SPEC_HOST_MAX + 16]; /* BATON_RDZV for this node's workers */

    /* rendezvous */
    struct bt__store_server *srv;  /* node 0 only */
    struct bt__store *st;          /* main thread's connection; carries the last will */
    struct bt__store *wst;         /* the watcher thread's connection */
    struct bt__store_relay *relay; /* this node's workers reach the store through it (or NULL) */
    char relay_for[BT_SPEC_HOST_MAX + 16]; /* the store host:port the relay dials */
    int relay_own; /* st and wst are channels of the relay's connection, which is this launcher's */
    char self_addr[64]; /* this node's address as the store saw it (bt__store_local_addr) */
    char store_host[BT_SPEC_HOST_MAX];
    int store_port;
    pthread_t watcher;
    int watcher_on;
    volatile int watcher_stop;
    int store_lost;         /* the watcher found the store silent or gone (set before notify_fd) */
    volatile int node_done; /* this node's workers all exited 0 and it counted itself done */
    int notify_fd;          /* eventfd: the watcher has a result */
    int refused;            /* node 0 runs another job (l/job): exit 2 */
    int64_t refusals_seen;  /* node 0: the l/refused lines printed so far */
    struct bt__outcome watched; /* written by the watcher before it signals notify_fd */

    struct bt__worker *w; /* nchild of them */
    char *obuf;           /* scratch for tagged output */
    size_t obuf_cap;
    int console_dead[3]; /* stdout/stderr gone (EPIPE): drop console output */
    struct bt__run_tree tree;

    /* failure forensics (run_forensics.c) */
    char errdir[64];                    /* folder of the workers' error files, "" none */
    char *fails;                        /* this node's failure records of the generation */
    size_t fails_len, fails_cap;        /* bytes */
    char summary[BT_RUN_SUMMARY_MAX];   /* "baton: root cause: ..." lines, or "" */
    struct bt__strag strag;             /* run_flight.c */
    char flight_lines[2048];            /* the flight recorder's findings of the last failure */
    struct bt__metrics {                /* run_metrics.c; changed with atomics */
        int running, succeeded, failed; /* workers of this node in this generation */
        int generation;                 /* the running generation */
    } metrics;
    pthread_mutex_t metrics_mu; /* held while the recorders are mapped or read */
    int metrics_fd;             /* listening socket, -1 when not serving */
    int metrics_stop[2];        /* pipe that stops the thread */
    pthread_t metrics_thread;
    struct bt__timeline *tl; /* BATON_TIMELINE's events (run_timeline.c), or NULL */

    /* elastic (--nnodes MIN:MAX, run_elastic.c). spec.node_rank and spec.nnodes are then the
     * current generation's (assigned by the rendezvous); node_id is the launcher's identity. */
    int elastic;
    int etcd;                      /* --rdzv-backend etcd: st and wst are etcd handles */
    struct bt__store_server *wsrv; /* etcd: this node's store for workers (node rank 0's */
    int wport;                     /* is the generation's), and its port */
    int node_id;             /* the node rank given (--node-rank, pod index): 0 hosts the store */
    int failures;            /* restarts used up by failures (F, H): what --max-restarts bounds */
    int prev_gen, prev_rank; /* the last generation this node ran in and its node rank there */
    int expect;              /* nodes the next generation expects: it closes once they joined */
    volatile int closing;    /* the watcher announced the end of this generation (joiners) */
    struct bt__elastic_member *members; /* the current generation's nodes, by node rank */
    int nmembers;
    char elastic_file[PATH_MAX]; /* BATON_ELASTIC_FILE */
    int inplace;      /* BATON_ELASTIC_INPLACE=1: workers stay across membership changes */
    int early;        /* in place: the running workers were started before this generation formed */
    int ended_status; /* -1; else the job ended (l/end) before this node joined: its status */
};

/* One node of an elastic generation, as it registered (l/<g>/m/<k>). */
struct bt__elastic_member {
    int id, nproc, pid, mport, wport; /* wport: etcd jobs, its workers' store */
    int prev_gen, prev_rank;          /* where it ran before (-1: nowhere) */
    int k;                            /* its join order (1-based) */
    int rank;                         /* assigned node rank */
    char addr[64]; /* its address as the store saw it (MASTER_ADDR when rank 0) */
    char host[64];
};

/* Signals (run_supervise.c): SIGINT/SIGTERM/SIGHUP and SIGCHLD write a byte to a self-pipe;
 * bt__run_stop_sig is the first stop signal received (0: none). */
extern volatile sig_atomic_t bt__run_stop_sig;
extern volatile int bt__run_abort;
int bt__run_signals_install(struct bt__err *err);
int bt__run_signal_fd(void);

/* run_rdzv.c */
int bt__run_token(struct bt__run *r, struct bt__err *err);
int bt__run_rdzv_open(struct bt__run *r, struct bt__err *err);
int bt__run_join(struct bt__run *r, struct bt__err *err);
/* BATON_HEARTBEAT_TIMEOUT (at least 2 s): the lease each launcher holds with the store, and
 * how long a launcher waits for the store's answer before it declares the store lost. */
double bt__run_heartbeat_timeout(void);
int bt__run_watch_start(struct bt__run *r, struct bt__err *err);
void bt__run_watch_stop(struct bt__run *r);
/* Posts o as this generation's outcome unless one exists; *o becomes the outcome that won. */
void bt__run_post_outcome(struct bt__run *r, struct bt__outcome *o);
/* The success outcome S, with its line. */
void bt__run_success(const struct bt__run *r, struct bt__outcome *o);
/* This node's workers all exited 0: counts it; the last node posts the success outcome. */
void bt__run_post_done(struct bt__run *r, struct bt__outcome *o);
void bt__run_rdzv_close(struct bt__run *r, int final);
int bt__run_outcome_parse(const char *s, struct bt__outcome *o);

/* run_rdzv.c helpers run_elastic.c shares: connect (retrying, up to timeout_s), the last will
 * of generation r->restart, a port free now, a refused launcher's line for node 0. */
/* Opens st and wst: with the relay on (not etcd) as two channels of one connection, which the
 * relay also carries the workers on; else two connections. Errors as bt__run_connect's. */
int bt__run_store_open(struct bt__run *r, double timeout_s, struct bt__err *err);
/* This node's address as the store sees it (elastic: MASTER_ADDR), into out; 0, or -1. */
int bt__run_local_addr(struct bt__run *r, char *out, size_t n);
/* BATON_RDZV_RELAY_ON (run_spawn.c). */
int bt__run_relay_on(void);
int bt__run_connect(struct bt__run *r, double timeout_s, struct bt__store **out,
                    struct bt__err *err);
void bt__run_lost_will(const struct bt__run *r, char *key, size_t kn, char *will, size_t wn);
int bt__run_free_port(void);
void bt__run_post_refusal(struct bt__run *r, const char *line);

/* rdzv_etcd.c: a store handle on the etcd cluster at list ("HOST:PORT[,HOST:PORT...]"),
 * keys under /baton/<job>/, retrying an unreachable cluster up to timeout_s (a line every 5 s).
 * BT_ERR_INVALID_USAGE for a bad list or a build without libcurl/cJSON. */
int bt__run_etcd_connect(const char *list, const char *job, double timeout_s,
                         struct bt__store **out, struct bt__err *err);
/* Seconds from a launcher's death to its will at the latest, under etcd: the lease's TTL
 * (BATON_HEARTBEAT_TIMEOUT, whole seconds), etcd's expiry sweep, the deletion's delivery. */
double bt__run_etcd_lost_s(void);

/* run_elastic.c. elastic_open: l/job for an elastic job (any node may set it first; another
 * job's launcher is refused). elastic_join: joins the newest generation (or waits for the
 * next one when it runs), closes it with the nodes present, assigns stable node ranks.
 * elastic_watch: the watcher's look between beats (nodes asking to join: tell the workers,
 * then after BATON_ELASTIC_GRACE end the generation with M). elastic_next: after a
 * generation, whether the job goes on (1) and with how many nodes expected. elastic_reconnect:
 * the store went silent: new connections (retrying up to --join-timeout). elastic_end: the
 * job's final outcome for late joiners. elastic_file: (re)writes BATON_ELASTIC_FILE. */
int bt__run_elastic_open(struct bt__run *r, struct bt__err *err);
int bt__run_elastic_join(struct bt__run *r, struct bt__err *err);
void bt__run_elastic_watch(struct bt__run *r, struct bt__store *st);
int bt__run_elastic_next(struct bt__run *r, const struct bt__outcome *o);
int bt__run_elastic_reconnect(struct bt__run *r, struct bt__err *err);
void bt__run_elastic_end(struct bt__run *r, const struct bt__outcome *o);
void bt__run_elastic_file(const struct bt__run *r, const char *state, const char *reason,
                          double grace_s);
/* In place (BATON_ELASTIC_INPLACE=1). early: before a join, starts the workers that do not
 * run (state=waiting: they start Python, import, then wait for state=running); adopted: 1 once
 * local rank i wrote the current generation to BATON_ELASTIC_FILE.gen.<i>; adopt_s: how long a
 * kept worker gets for it (BATON_ELASTIC_ADOPT). */
int bt__run_elastic_early(struct bt__run *r, struct bt__err *err);
int bt__run_elastic_adopted(const struct bt__run *r, int i);
double bt__run_elastic_adopt_s(void);
int bt__run_elastic_inplace(void);
/* Seconds a failed worker's outcome waits for a lost node's (elastic): its peers fail when it
 * goes, and the failure is the membership change's consequence, not a root cause. With etcd
 * a dead launcher is seen only when its lease expires: bt__run_etcd_lost_s(). */
#define BT_RUN_ELASTIC_SETTLE_S 1.0

/* run_pending.c. node_name: node rank's pod name where the spec tells ("" otherwise).
 * missing_ranks: the node ranks a WAIT timeout (store_err, generation gen) names, up to max;
 * *total gets how many are missing in all. missing_line: "2 of 4 nodes: node 2 (pod
 * mnist-worker-1), node 3 (pod mnist-worker-2)" into out; returns the count missing.
 * pending_hint: the "hint: ... Pending ..." that follows it. */
void bt__run_node_name(const struct bt__spec *s, int rank, char *out, size_t n);
int bt__run_missing_ranks(const char *store_err, int gen, int *ranks, int max, int *total);
int bt__run_missing_line(const struct bt__run *r, const char *store_err, char *out, size_t n);
void bt__run_pending_hint(const struct bt__run *r, const char *store_err, char *out, size_t n);

/* run_spawn.c. resolve_prog returns 0, or the exit status for a program that is not there
 * (127) or not executable (126), with the reason in err. */
int bt__run_resolve_prog(const char *name, char *out, size_t n, struct bt__err *err);
int bt__run_spawn_all(struct bt__run *r, struct bt__err *err);
/* Starts worker w again (in place: it missed its adopt_by and was killed), with the current
 * generation's env; its old pipes are closed first. */
int bt__run_respawn(struct bt__run *r, struct bt__worker *w, struct bt__err *err);

/* run_output.c */
int bt__run_output_open(struct bt__run *r, struct bt__worker *w, struct bt__err *err);
/* Reads what is there on lb; returns 0, or -1 at EOF (lb closed, partial line flushed). */
int bt__run_output_read(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb);
/* Reads and emits what w's pipes hold right now, without waiting (a worker that just exited:
 * its last words come before the report that describes its end). */
void bt__run_output_drain(struct bt__run *r, struct bt__worker *w);
/* Emits what lb holds as a last line and closes it (a pipe a straggler still holds open). */
void bt__run_output_eof(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb);
void bt__run_output_close(struct bt__run *r, struct bt__worker *w);

/* run_supervise.c: runs until this generation's outcome is known and every worker is gone.
 * o->kind must be 0 on entry, or an outcome already decided (then the workers are stopped). */
int bt__run_supervise(struct bt__run *r, struct bt__outcome *o);
/* Stops the --ps servers that outlived the last generation (SIGTERM, --grace, SIGKILL), once
 * the job ends; nothing when none runs. */
void bt__run_servers_stop(struct bt__run *r);
/* Whether pid is a --ps server, or (in place) a worker, that outlives the generation now
 * ending: teardowns and the clean-up after a generation leave it alone. */
int bt__run_child_kept(const struct bt__run *r, pid_t pid);

/* run_ps.c. ps_setup prepares the server children w[nproc .. nchild) of node 0 (--ps);
 * ps_rdzv writes the servers' BATON_RDZV (an address every node can reach); ps_pod runs a TF ps
 * pod's server in this process and returns the exit status. */
int bt__run_ps_setup(struct bt__run *r, struct bt__err *err);
/* Whether this launcher runs the --ps servers in its current generation: node 0 (its
 * identity), or under etcd the node at node rank 0 of the generation. */
int bt__run_ps_here(const struct bt__run *r);
void bt__run_ps_rdzv(const struct bt__run *r, char *out, size_t n);
int bt__run_ps_pod(struct bt__run *r);

/* run_bind.c. bind_setup loads the topology and plans each local rank (--bind other than
 * none); returns 0, or an exit status after one line on stderr (2: no GPU for --bind gpu, a
 * topology that does not load). bind_vars adds a worker's GPU/NIC env ("NAME=value",
 * malloc'd) to v and returns how many (at most 4), or -1. bind_apply binds the calling child
 * (between fork and exec: async-signal-safe). */
int bt__run_bind_setup(struct bt__run *r);
int bt__run_bind_vars(const struct bt__run *r, const struct bt__worker *w, char **v);
void bt__run_bind_apply(const struct bt__run *r, const struct bt__worker *w);

/* run_tree.c. tree_setup (before any child; after the signal handlers): subreaper, the job's
 * cgroup when the machine allows it, the watchdog; says at INFO which is used; returns 0.
 * tree_join: in a child between fork and exec (async-signal-safe), joins the job's cgroup.
 * tree_signal: sig to every process of the job (cgroup members, baton's descendants; not the
 * watchdog). tree_clear: after a generation, SIGKILLs and reaps what is left (bounded) and
 * unlinks /dev/shm/baton-<baton's pid>-*. tree_close: tree_clear, removes the cgroup, stops
 * the watchdog (baton is about to exit normally). */
int bt__run_tree_setup(struct bt__run *r);
void bt__run_tree_join(const struct bt__run *r);
void bt__run_tree_signal(struct bt__run *r, int sig);
void bt__run_tree_clear(struct bt__run *r);
void bt__run_tree_close(struct bt__run *r);
/* Helpers the watchdog shares. procs: every process of /proc into *out (malloc'd), returns
 * how many (-1: no /proc). proc_read: one. cg_pids: the pids in cgroup.procs of cg (malloc'd),
 * -1 on error. cg_signal: sig to each of them (SIGKILL: also cgroup.kill); returns how many.
 * unlink_shm: removes /dev/shm/baton-<pid>-*; returns how many. */
int bt__run_procs(struct bt__proc **out);
int bt__run_proc_read(pid_t pid, struct bt__proc *p);
int bt__run_cg_pids(const char *cg, pid_t **out);
int bt__run_cg_signal(const char *cg, int sig);
int bt__run_unlink_shm(pid_t pid);

/* run_watchdog.c. watchdog_start forks it (0, or -1 with errno); tree_started / tree_reaped
 * tell it a child's pid; watchdog_stop tells it baton cleaned up, closes the pipe and reaps
 * it. */
int bt__run_watchdog_start(struct bt__run *r);
void bt__run_tree_started(struct bt__run *r, pid_t pid);
void bt__run_tree_reaped(struct bt__run *r, pid_t pid);
void bt__run_watchdog_stop(struct bt__run *r);
/* run_stall.c. stall_scan names (once) and publishes local workers found stopped;
 * stall_outcome: when a rank recorded a collective timeout, the failure of w is its
 * consequence: sets *o to outcome H naming the stalled ranks and returns 1; else 0. */
void bt__run_stall_scan(struct bt__run *r);
int bt__run_stall_outcome(struct bt__run *r, const struct bt__worker *w, struct bt__outcome *o);

/* run_torch.c. torch_flags: before the spec is detected (ngpu: GPUs on this node); returns 0
 * or 2 after one line. torch_spec: after it (job id, master). torch_argv: a .py/-m PROGRAM
 * under python; 0, 2 or 127 after one line. torch_errdir: the error files' folder.
 * torch_generation: makes attempt_<g>/<local rank>/ for each worker. torch_vars: torchrun's
 * env of one worker into v (at most 11, malloc'd); returns how many, or -1. torch_omp_note:
 * logs OMP_NUM_THREADS=1 at INFO. torch_error_msg: the message a @record-decorated worker left
 * in its error file, "" when none. torch_close: removes a temporary errdir. */
int bt__run_torch_flags(struct bt__run_opts *o, int ngpu);
void bt__run_torch_spec(struct bt__run *r);
int bt__run_torch_argv(struct bt__run_opts *o);
int bt__run_torch_errdir(struct bt__run *r, struct bt__err *err);
int bt__run_torch_generation(struct bt__run *r, struct bt__err *err);
int bt__run_torch_vars(const struct bt__run *r, const struct bt__worker *w, char **v);
void bt__run_torch_omp_note(const struct bt__run *r);
void bt__run_torch_error_msg(const struct bt__run *r, const struct bt__worker *w, char *out,
                             size_t n);
void bt__run_torch_close(struct bt__run *r);
/* torchrun's error file of a local rank (<errdir>/attempt_<g>/<local rank>/error.json), which
 * run_forensics.c gives the worker as BATON_ERROR_FILE and TORCHELASTIC_ERROR_FILE. */
void bt__run_torch_error_path(const struct bt__run *r, int local_rank, char *out, size_t n);

/* run_forensics.c. setup makes the error-file folder (a WARN when it cannot); spawn gives w
 * its error file; tail keeps a line of w's stderr; failed makes w's failure record (nothing
 * when baton's teardown ended it without a word); settle (after a failed generation) gathers
 * every node's records, names the earliest as the root cause in o (its status and line) and
 * prepares the summary (r->summary); report writes the termination message; close
 * removes the folder. wall_ns: CLOCK_REALTIME in ns. */
int bt__run_forensics_setup(struct bt__run *r);
void bt__run_forensics_spawn(struct bt__run *r, struct bt__worker *w);
void bt__run_forensics_tail(struct bt__worker *w, const char *p, size_t n);
void bt__run_forensics_failed(struct bt__run *r, struct bt__worker *w, int during_teardown);
void bt__run_forensics_settle(struct bt__run *r, struct bt__outcome *o);
void bt__run_forensics_report(struct bt__run *r, const struct bt__outcome *o, int status);
void bt__run_forensics_close(struct bt__run *r);
int64_t bt__run_wall_ns(void);

/* run_flight.c. flight_spawn makes w's recorder memfd (w->flight_fd, for BATON_FLIGHT_FD) and
 * maps it; flight_spawned closes the fd once the worker has it. flight_of: w's recorder once
 * its rank attached it, else NULL. publish writes the local ranks' dumps to --log-dir and the
 * store; analyze reads every rank's from the store and writes "baton: flight recorder: ..."
 * lines into out. scan (once a second): straggler accounting and WARN, dumps on a stall
 * warning. report: the straggler lines of the final report. reset: a new generation. */
int bt__run_flight_spawn(struct bt__run *r, struct bt__worker *w);
void bt__run_flight_spawned(struct bt__worker *w);
const struct bt__flight_hdr *bt__run_flight_of(const struct bt__worker *w);
/* The last sign of life in w's recorder: the latest start or end of a call it holds (wall
 * clock, ns); 0 without one. Orders workers found dead together (run_supervise.c's reap). */
int64_t bt__run_flight_last_ns(const struct bt__worker *w);
void bt__run_flight_publish(struct bt__run *r);
void bt__run_flight_analyze(struct bt__run *r, char *out, size_t cap);
void bt__run_flight_scan(struct bt__run *r);
void bt__run_flight_report(struct bt__run *r);
void bt__run_flight_reset(struct bt__run *r);
void bt__run_flight_close(struct bt__run *r);
/* The watcher thread, once a beat, on its own connection st: publishes what the job-wide
 * straggler look of a node other than 0 prepared (run_flight.c). */
void bt__run_flight_watch(struct bt__run *r, struct bt__store *st);
/* The records another node published for the job-wide looks (l/<g>/xs/<node>), parsed as node
 * 0 parses them: the number of sections, 0 when the value is not whole, -1 when a parsed
 * section breaks what the looks rely on (tests/fuzz/fuzz_xs.c). */
int bt__run_flight_xs_check(const uint8_t *p, size_t len);

/* run_timeline.c (BATON_TIMELINE=PATH): start at the job's start; join(0) before and join(1)
 * after each rendezvous; scan once a second; generation_end after each generation; finish at
 * the end (node 0 writes PATH, the others publish their events through the store). */
struct bt__timeline;
void bt__run_timeline_start(struct bt__run *r);
void bt__run_timeline_join(struct bt__run *r, int done);
void bt__run_timeline_scan(struct bt__run *r);
void bt__run_timeline_generation_end(struct bt__run *r);
void bt__run_timeline_finish(struct bt__run *r);

/* run_metrics.c: start serves /metrics on --metrics-port from a thread (a port that cannot be
 * bound is one WARN line, and the job runs without it); stop ends it. */
void bt__run_metrics_start(struct bt__run *r);
void bt__run_metrics_stop(struct bt__run *r);

/* run_report.c */
const char *bt__signal_name(int sig);
/* Exit status baton uses for a waitpid status: the code, or 128 + signal. */
int bt__run_exit_status(int wstatus);
/* "rank 3 (node 1, host h, pid 12) exited with code 3; hint: ..." ("ps server 0 (...)") */
void bt__run_describe(const struct bt__run *r, const struct bt__worker *w, char *out, size_t n);

#endif
