/* local.h: `baton k8s local`, a PyTorchJob or TFJob run on this machine, one process (or one
 * network namespace) per pod, with the env `baton k8s render` gives each pod.
 *
 * local.c reads the flags and makes the plan (each pod's argv and env, with the loopback
 * rewrite or the namespace addresses); local_net.c makes and removes the namespaces, the
 * bridge and the hosts files; local_run.c starts the pods, relays their output, applies the
 * operator's success rules and stops everything. Not for use outside k8s/.
 */
#ifndef BT_K8S_LOCAL_H
#define BT_K8S_LOCAL_H

#include <signal.h>
#include <sys/types.h>

#include "k8s/k8s.h"

#define BT_LOCAL_MAX_PODS 250 /* 198.51.100.2 .. .251 */

struct bt__local_pod {
    const struct bt__k8s_pod *k; /* the rendered pod (owned by the job) */
    char **argv;                 /* what runs, argv[0] an absolute path; NULL-ended, owned */
    char **envp;                 /* its whole environment, NULL-ended, owned */
    int port;                    /* loopback mode: this pod's port (port + 1 is also free) */
    char addr[32];               /* 127.0.0.1 or 198.51.100.N */
    char ns[32];                 /* --netns: bt-<pid>-<i>, else "" */
    pid_t pid;                   /* 0 before the start and after the reap */
    int started;
    int exited;      /* 0 while running, else the order of its exit (1, 2...) */
    int status;      /* exit code, or 128 + signal */
    int out_fd;      /* read end of its stdout+stderr pipe, -1 when closed */
    char line[1024]; /* a partial output line */
    size_t nline;
    int node; /* its `baton run`'s node rank, from "baton: node N (host H) exits ...", or -1 */
};

struct bt__local {
    struct bt__k8s_job *job;
    struct bt__local_pod *pods; /* job->npods of them, in the job's order */
    size_t npods;
    size_t *order;            /* start order: indices into pods */
    int netns;                /* --netns */
    char bridge[16], hub[32]; /* --netns: br-bt<pid> inside the namespace bt-<pid>-hub */
    int net_ready;            /* namespaces exist (cleanup has work to do) */
    double timeout_s;         /* 0: none */
    double stagger_s;         /* between two pod starts */
    unsigned seed;
    const char *workdir; /* volumes go under <workdir>/<pod>/<volume> */
};

/* The flag set by SIGINT/SIGTERM/SIGHUP (0 while none came). */
extern volatile sig_atomic_t bt__local_signal;

/* local_net.c. Creates the hub namespace with its bridge and one namespace per pod, linked to
 * the bridge by a veth, with lo up and /etc/netns/<ns>/{hosts,resolv.conf}. Prints the
 * failing command and returns -1 (what exists is left for bt__local_net_down). */
int bt__local_net_up(struct bt__local *l);
/* Appends pod's host names (pod, pod.ns.svc, pod.ns.svc.cluster.local, ...) to every pod
 * namespace's hosts file, in place (the running pods' bind mounts see the same inode). */
int bt__local_net_publish(struct bt__local *l, const struct bt__local_pod *pod);
/* Kills every process left in a pod namespace (by pid), then removes the namespaces, the
 * bridge, the veths (with their namespaces) and the hosts dirs. Safe on a half-made setup. */
void bt__local_net_down(struct bt__local *l);

/* local_run.c. Starts the pods in l->order, supervises them and decides the outcome; returns
 * the exit status of `baton k8s local`. Every child is reaped before it returns. */
int bt__local_run(struct bt__local *l);

/* local.c: `baton k8s local ...` (argv[0] is "local"). */
int bt__k8s_local(int argc, char **argv);

#endif
