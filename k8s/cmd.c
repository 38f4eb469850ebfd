/* cmd.c: `baton k8s render|apply|delete`, the operator shim's command line.
 *
 * render writes the Services and Pods of a PyTorchJob or TFJob to stdout; apply renders first
 * (so an invalid job applies nothing) and pipes the result to `kubectl apply -f -`; delete
 * runs `kubectl delete pods,services,secrets -l training.kubeflow.org/job-name=<job>` in the job's
 * namespace. kubectl is found as --kubectl PATH, else $KUBECTL, else `kubectl` on PATH.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "k8s/k8s.h"
#include "k8s/local.h"
#include "launcher/cmds.h"

static const char usage_text[] =
    "usage: baton k8s render JOB.yaml [--cluster-domain DOMAIN] [--gang-scheduler NAME]\n"
    "                        [--runtime RUNTIME.yaml] [--token VALUE]\n"
    "       baton k8s apply  JOB.yaml [--kubectl PATH] [--gang-scheduler NAME] [-- ARGS...]\n"
    "       baton k8s delete JOB.yaml [--kubectl PATH] [-- KUBECTL-ARGS...]\n"
    "       baton k8s local  JOB.yaml [--netns] [--set-args \"ARGS\"] [--add-args \"ARGS\"]\n"
    "                        [--timeout SEC] [--seed N] [--order POD,...] [--stagger SEC]\n"
    "                        [--workdir DIR] [--baton PATH] [--runtime RUNTIME.yaml]\n"
    "\n"
    "The Kubeflow training operator's work, for clusters without it. JOB.yaml is a PyTorchJob\n"
    "or TFJob (kubeflow.org/v1; \"-\" reads stdin), or a Kubeflow Trainer v2 TrainJob with its\n"
    "ClusterTrainingRuntime or TrainingRuntime (in the same file, or in --runtime RUNTIME.yaml):\n"
    "render prints the JobSet, headless Service, Job and Pods the Trainer and JobSet\n"
    "controllers would create (PET_* env); local runs them (render and local only).\n"
    "  render  print the headless Services and Pods the operator (v1.9) would create: same\n"
    "          names, labels, ports, env (MASTER_ADDR, RANK, PET_*, TF_CONFIG...), restart\n"
    "          policy (ExitCode -> Never), plus publishNotReadyAddresses on the Services\n"
    "  apply   render | kubectl apply -f - (nothing is applied when the job is invalid)\n"
    "  delete  kubectl delete pods,services,secrets -l training.kubeflow.org/job-name=JOB -n NS\n"
    "  local   run every pod here as a process with the env render gives it (pod names and\n"
    "          ports rewritten to 127.0.0.1), or with --netns (root) each in its own network\n"
    "          namespace, 198.51.100.0/24, names in /etc/netns/<ns>/hosts once started;\n"
    "          exits 0 when the job succeeds by the operator's rules, else the failed pod's\n"
    "          status (see docs/kubernetes.md)\n"
    "options:\n"
    "  --cluster-domain D  TF_CONFIG hosts end in .svc.D (the operator's CUSTOM_CLUSTER_DOMAIN)\n"
    "  --kubectl PATH      the kubectl to run (default: $KUBECTL, else kubectl on PATH)\n"
    "  --runtime FILE      TrainJob: the file with its ClusterTrainingRuntime/TrainingRuntime\n"
    "  --token VALUE       the job's secret (Secret <job>-baton-token, env BATON_TOKEN of\n"
    "                      every pod); default: 32 random bytes, new on every render, so a\n"
    "                      kubectl apply of a re-render rotates it\n"
    "  --gang-scheduler NAME  as the operator's --gang-scheduler-name: volcano, or the\n"
    "                      scheduler-plugins scheduler's name: a PodGroup <job> and the pods'\n"
    "                      schedulerName and group annotation/label\n"
    "render and apply say on stderr, one line per field, which runPolicy and restartPolicy\n"
    "fields they cannot honour without the operator and what happens instead; a job with\n"
    "runPolicy.suspend true renders and applies nothing.\n"
    "Exit status: 0; 2 for a usage error or an invalid job (one line saying why); 127 when\n"
    "kubectl is missing; else kubectl's own status.\n";

const char *bt__cmd_k8s_usage(void)
{
    return usage_text;
}

struct k8s_args {
    const char *verb, *job, *kubectl;
    struct bt__k8s_opts opts;
    char **extra; /* after "--": handed to kubectl */
    int nextra;
};

static int parse_args(int argc, char **argv, struct k8s_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--")) {
            a->extra = argv + i + 1;
            a->nextra = argc - i - 1;
            break;
        } else if (!strcmp(s, "--cluster-domain") || !strcmp(s, "--kubectl") ||
                   !strcmp(s, "--gang-scheduler") || !strcmp(s, "--runtime") ||
                   !strcmp(s, "--token")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "baton k8s: %s needs a value\n", s);
                return 2;
            }
            *(!strcmp(s, "--kubectl")          ? &a->kubectl
              : !strcmp(s, "--gang-scheduler") ? &a->opts.gang_scheduler
              : !strcmp(s, "--runtime")        ? &a->opts.runtime
              : !strcmp(s, "--token")          ? &a->opts.token
                                               : &a->opts.cluster_domain) = argv[++i];
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(usage_text, stdout);
            return -1;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "baton k8s: unknown option '%s'; see 'baton help k8s'\n", s);
            return 2;
        } else if (!a->verb) {
            a->verb = s;
        } else if (!a->job) {
            a->job = s;
        } else {
            fprintf(stderr, "baton k8s: one JOB.yaml at a time ('%s' is extra)\n", s);
            return 2;
        }
    }
    if (!a->verb || !a->job) {
        fprintf(stderr, "baton k8s: usage: baton k8s render|apply|delete|local JOB.yaml "
                        "(see 'baton help k8s')\n");
        return 2;
    }
    const char *d = a->opts.cluster_domain;
    if (d && (!d[0] || strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(d))) {
        fprintf(stderr, "baton k8s: --cluster-domain '%s' is not a DNS domain\n", d);
        return 2;
    }
    return 0;
}

/* The kubectl to run: --kubectl, $KUBECTL, or the first executable kubectl on PATH. Fills buf
 * and returns 0, or prints why and returns 127. */
static int find_kubectl(const char *given, char *buf, size_t n)
{
    const char *k = given ? given : getenv("KUBECTL");
    if (k && k[0]) {
        snprintf(buf, n, "%s", k);
        if (strchr(k, '/') ? access(k, X_OK) == 0 : 1)
            return 0;
    } else {
        const char *path = getenv("PATH");
        for (const char *p = path ? path : ""; *p;) {
            size_t len = strcspn(p, ":");
            snprintf(buf, n, "%.*s/kubectl", (int)len, p);
            if (len && access(buf, X_OK) == 0)
                return 0;
            p += len + (p[len] == ':');
        }
        snprintf(buf, n, "kubectl");
    }
    fprintf(stderr,
            "baton k8s: %s not found (%s); install kubectl or pass --kubectl PATH, or "
            "write the objects with 'baton k8s render JOB.yaml > objects.yaml' and "
            "apply them where kubectl works\n",
            buf,
            given       ? "--kubectl"
            : k && k[0] ? "$KUBECTL"
                        : "not on PATH");
    return 127;
}

/* Runs kubectl argv with input (len bytes) on its stdin (input NULL: stdin untouched), waits,
 * and returns its exit status (128+signal when killed, 127 when it cannot be started). */
static int run_kubectl(char **argv, const char *input, size_t len)
{
    int fd[2] = {-1, -1};
    if (input && pipe(fd) != 0) {
        perror("baton k8s: pipe");
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (input) {
            dup2(fd[0], 0);
            close(fd[0]);
            close(fd[1]);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "baton k8s: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (input) {
        close(fd[0]);
        void (*old)(int) = signal(SIGPIPE, SIG_IGN); /* kubectl may exit before reading all */
        for (size_t off = 0; pid > 0 && off < len;) {
            ssize_t w = write(fd[1], input + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(fd[1]);
        signal(SIGPIPE, old);
    }
    if (pid < 0) {
        perror("baton k8s: fork");
        return 1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* argv for kubectl: kubectl, the verb's words, then the user's extra arguments. */
static int kubectl_argv(const struct k8s_args *a, const char *kubectl, const char *const *words,
                        char ***out)
{
    int nw = 0;
    while (words[nw])
        nw++;
    char **v = calloc((size_t)(nw + a->nextra + 2), sizeof(*v));
    if (!v)
        return -1;
    v[0] = (char *)kubectl;
    for (int i = 0; i < nw; i++)
        v[1 + i] = (char *)words[i];
    for (int i = 0; i < a->nextra; i++)
        v[1 + nw + i] = a->extra[i];
    *out = v;
    return 0;
}

static int do_apply(const struct k8s_args *a, const struct bt__k8s_job *job)
{
    char kubectl[4096], *text = NULL;
    size_t len = 0;
    struct bt__err err = {0};
    int rc = find_kubectl(a->kubectl, kubectl, sizeof(kubectl));
    if (rc)
        return rc;
    FILE *m = open_memstream(&text, &len);
    if (!m || bt__k8s_job_emit(job, m, &err) != BT_OK || fclose(m) != 0) {
        fprintf(stderr, "baton k8s: %s\n", err.msg[0] ? err.msg : "out of memory");
        free(text);
        return 1;
    }
    static const char *const words[] = {"apply", "-f", "-", NULL};
    char **argv = NULL;
    rc = kubectl_argv(a, kubectl, words, &argv) ? 1 : run_kubectl(argv, text, len);
    free(argv);
    free(text);
    return rc;
}

static int do_delete(const struct k8s_args *a, const struct bt__k8s_job *job)
{
    char kubectl[4096], sel[160];
    int rc = find_kubectl(a->kubectl, kubectl, sizeof(kubectl));
    if (rc)
        return rc;
    snprintf(sel, sizeof(sel), "training.kubeflow.org/job-name=%s", job->name);
    const char *const words[] = {"delete", "pods,services,secrets", "-n", job->ns, "-l", sel, NULL};
    char **argv = NULL;
    rc = kubectl_argv(a, kubectl, words, &argv) ? 1 : run_kubectl(argv, NULL, 0);
    free(argv);
    return rc;
}

/* A TrainJob is only rendered or run locally, without --gang-scheduler: 1 (after one line
 * saying why) when a is something else. */
static int trainjob_refusal(const struct k8s_args *a)
{
    if (strcmp(a->verb, "render")) {
        fprintf(stderr,
                "baton k8s %s: a TrainJob is applied with kubectl where the Trainer runs "
                "(kubectl %s -f %s); baton k8s renders it and runs it locally\n",
                a->verb, a->verb, a->job);
        return 1;
    }
    if (a->opts.gang_scheduler) {
        fprintf(stderr,
                "baton k8s render: --gang-scheduler is for PyTorchJob and TFJob; a TrainJob's "
                "gang scheduling is its runtime's podGroupPolicy, which baton does not render\n");
        return 1;
    }
    return 0;
}

int bt__cmd_k8s(int argc, char **argv)
{
    struct k8s_args a;
    for (int i = 2; argc > 1 && !strcmp(argv[1], "local") && i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
    }
    if (argc > 1 && !strcmp(argv[1], "local"))
        return bt__k8s_local(argc - 1, argv + 1);
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc; /* -1: --help was shown */
    if (strcmp(a.verb, "render") && strcmp(a.verb, "apply") && strcmp(a.verb, "delete")) {
        fprintf(stderr, "baton k8s: unknown action '%s' (render, apply, delete or local)\n",
                a.verb);
        return 2;
    }
    struct bt__k8s_job job;
    struct bt__err err = {0};
    if (bt__k8s_job_load(a.job, &a.opts, &job, &err) != BT_OK) {
        fprintf(stderr, "baton k8s %s: %s\n", a.verb, err.msg);
        bt__k8s_job_free(&job);
        return err.code == BT_ERR_INVALID_USAGE ? 2 : 1;
    }
    int done = 0; /* 1: rc is decided before rendering */
    if (job.kind == BT_K8S_TRAINJOB) {
        done = trainjob_refusal(&a);
        rc = done ? 2 : 0;
    } else if (strcmp(a.verb, "delete")) {
        bt__k8s_job_notes(&job, &a.opts, stderr,
                          !strcmp(a.verb, "apply") ? "baton k8s apply: " : "baton k8s render: ");
        done = job.policy.suspend; /* the operator creates nothing, nor do we (noted above) */
        rc = 0;
    }
    if (!done && !strcmp(a.verb, "render")) {
        rc = bt__k8s_job_emit(&job, stdout, &err) == BT_OK && fflush(stdout) == 0 ? 0 : 1;
        if (rc)
            fprintf(stderr, "baton k8s render: %s\n", err.msg[0] ? err.msg : "write error");
    } else if (!done) {
        rc = !strcmp(a.verb, "apply") ? do_apply(&a, &job) : do_delete(&a, &job);
    }
    bt__k8s_job_free(&job);
    return rc;
}
