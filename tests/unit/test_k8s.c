/* test_k8s.c: the operator shim's model (k8s/k8s.h) and YAML tree (k8s/ytree.h): the pods a
 * job renders to (names, env, argv, restart, master role, exactly the facts file's examples),
 * TF_CONFIG byte for byte, the operator's validation errors, and hostile YAML; runPolicy, the
 * notes render prints and the gang-scheduling PodGroup; the pod names `baton run` gives the
 * nodes it waits for (launcher/run_pending.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"
#include "k8s/trainjob.h"
#include "k8s/ytree.h"
#include "launcher/run.h"

/* A job: kind, name, extra spec lines, then the replica specs (built with rs()). */
static char *job_text(const char *kind, const char *name, const char *extra, const char *specs)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    fprintf(f, "apiVersion: kubeflow.org/v1\nkind: %s\nmetadata:\n  name: %s\nspec:\n%s  %s:\n%s",
            kind, name, extra, !strcmp(kind, "TFJob") ? "tfReplicaSpecs" : "pytorchReplicaSpecs",
            specs);
    fclose(f);
    return s;
}

static void rs(char *buf, size_t n, const char *type, int replicas, const char *container,
               const char *restart)
{
    size_t l = strlen(buf);
    snprintf(buf + l, n - l,
             "    %s:\n      replicas: %d\n%s%s%s      template:\n        spec:\n"
             "          containers:\n            - name: %s\n              image: baton:latest\n"
             "              command: [baton, run, --, mnist_cnn]\n"
             "              args: [--epochs, \"1\"]\n",
             type, replicas, restart ? "      restartPolicy: " : "", restart ? restart : "",
             restart ? "\n" : "", container);
}

static int parse(const char *text, struct bt__k8s_job *job, struct bt__err *err)
{
    struct bt__k8s_opts opts = {0};
    bt__err_clear(err);
    return bt__k8s_job_parse(text, strlen(text), "job.yaml", &opts, job, err);
}

static const struct bt__k8s_pod *pod(const struct bt__k8s_job *job, const char *name)
{
    for (size_t i = 0; i < job->npods; i++)
        if (!strcmp(job->pods[i].name, name))
            return &job->pods[i];
    fail_msg("no pod %s", name);
    return NULL;
}

static void test_pytorch_facts_example(void **state)
{
    (void)state;
    char specs[4096] = "";
    rs(specs, sizeof(specs), "Master", 1, "pytorch", "ExitCode");
    rs(specs, sizeof(specs), "Worker", 2, "pytorch", NULL);
    char *text = job_text("PyTorchJob", "pt", "", specs);
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(text, &job, &err), BT_OK);
    assert_int_equal(job.npods, 3);
    const struct bt__k8s_pod *w1 = pod(&job, "pt-worker-1");
    static const char *const want[][2] = {{"MASTER_ADDR", "pt-master-0"},
                                          {"MASTER_PORT", "23456"},
                                          {"WORLD_SIZE", "3"},
                                          {"RANK", "2"},
                                          {"PET_NODE_RANK", "2"},
                                          {"PET_NPROC_PER_NODE", "auto"},
                                          {"PET_NNODES", "3"},
                                          {"PYTHONUNBUFFERED", "1"},
                                          {"PET_MASTER_ADDR", "pt-master-0"},
                                          {"PET_MASTER_PORT", "23456"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(bt__k8s_pod_env(w1, want[i][0]), want[i][1]);
    assert_int_equal(w1->nenv, 11); /* and BATON_TOKEN from the job's Secret */
    assert_string_equal(w1->rtype, "worker");
    assert_int_equal(w1->index, 1);
    assert_false(w1->master_role);
    assert_int_equal(w1->restart, BT_K8S_RESTART_ONFAILURE);
    assert_int_equal(w1->argc, 6);
    assert_string_equal(w1->argv[0], "baton");
    assert_string_equal(w1->argv[3], "mnist_cnn");
    assert_string_equal(w1->argv[5], "1");
    assert_null(w1->argv[6]);
    const struct bt__k8s_pod *m = pod(&job, "pt-master-0");
    assert_true(m->master_role);
    assert_int_equal(m->restart, BT_K8S_RESTART_EXITCODE);
    assert_string_equal(bt__k8s_pod_env(m, "RANK"), "0");
    assert_string_equal(bt__k8s_pod_env(pod(&job, "pt-worker-0"), "RANK"), "1");
    assert_string_equal(bt__yn_gets(bt__yn_get(m->pod, "spec"), "restartPolicy"), "Never");
    bt__k8s_job_free(&job);
    free(text);

    text = job_text("PyTorchJob", "pt", "  nprocPerNode: \"4\"\n", specs);
    assert_int_equal(parse(text, &job, &err), BT_OK);
    assert_string_equal(bt__k8s_pod_env(pod(&job, "pt-worker-1"), "WORLD_SIZE"), "12");
    assert_string_equal(bt__k8s_pod_env(pod(&job, "pt-worker-1"), "RANK"), "2");
    assert_string_equal(bt__k8s_pod_env(pod(&job, "pt-worker-1"), "PET_NPROC_PER_NODE"), "4");
    bt__k8s_job_free(&job);
    free(text);
}

static void test_pytorch_elastic(void **state)
{
    (void)state;
    char specs[4096] = "";
    rs(specs, sizeof(specs), "worker", 3, "pytorch", NULL); /* case as the defaulter allows */
    char *text = job_text("PyTorchJob", "el",
                          "  elasticPolicy:\n    minReplicas: 1\n    rdzvId: abc\n"
                          "    rdzvConf:\n      - {key: timeout, value: \"60\"}\n"
                          "      - {key: x, value: y}\n    standalone: true\n",
                          specs);
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(text, &job, &err), BT_OK);
    const struct bt__k8s_pod *w = pod(&job, "el-worker-2");
    assert_string_equal(bt__k8s_pod_env(w, "PET_RDZV_ENDPOINT"), "el-worker-0:23456");
    assert_string_equal(bt__k8s_pod_env(w, "PET_RDZV_BACKEND"), "c10d");
    assert_string_equal(bt__k8s_pod_env(w, "PET_NNODES"), "1:1"); /* max defaults to min */
    assert_string_equal(bt__k8s_pod_env(w, "PET_RDZV_ID"), "abc");
    assert_string_equal(bt__k8s_pod_env(w, "PET_RDZV_CONF"), "timeout=60,x=y");
    assert_string_equal(bt__k8s_pod_env(w, "PET_STANDALONE"), "");
    assert_null(bt__k8s_pod_env(w, "RANK"));
    assert_null(bt__k8s_pod_env(w, "MASTER_ADDR"));
    assert_true(pod(&job, "el-worker-0")->master_role);
    assert_false(w->master_role);
    bt__k8s_job_free(&job);
    free(text);
}

static const char facts_tf[] =
    "{\"cluster\":{\"chief\":[\"mnist-chief-0.default.svc:2222\"],\"evaluator\":[\"mnist-"
    "evaluator-0.default.svc:2222\"],\"ps\":[\"mnist-ps-0.default.svc:2222\"],\"worker\":[\"mnist-"
    "worker-0.default.svc:2222\",\"mnist-worker-1.default.svc:2222\"]},\"task\":{\"type\":\"worker\","
    "\"index\":1},\"environment\":\"cloud\"}";

static void test_tf_config_facts_example(void **state)
{
    (void)state;
    char specs[4096] = "";
    rs(specs, sizeof(specs), "Worker", 2, "tensorflow", NULL); /* file order is not key order */
    rs(specs, sizeof(specs), "PS", 1, "tensorflow", NULL);
    rs(specs, sizeof(specs), "Chief", 1, "tensorflow", NULL);
    rs(specs, sizeof(specs), "Evaluator", 1, "tensorflow", NULL);
    char *text = job_text("TFJob", "mnist", "", specs);
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(text, &job, &err), BT_OK);
    assert_int_equal(job.npods, 5);
    const struct bt__k8s_pod *w1 = pod(&job, "mnist-worker-1");
    assert_string_equal(bt__k8s_pod_env(w1, "TF_CONFIG"), facts_tf);
    assert_int_equal(w1->nenv, 2); /* and BATON_TOKEN from the job's Secret */
    assert_int_equal(w1->restart, BT_K8S_RESTART_NEVER);
    assert_true(pod(&job, "mnist-chief-0")->master_role);
    assert_false(pod(&job, "mnist-worker-0")->master_role);
    struct bt__k8s_opts opts = {.cluster_domain = "cluster.local"};
    char *tf = bt__k8s_tf_config(&job, "ps", 0, &opts);
    assert_non_null(strstr(tf, "\"ps\":[\"mnist-ps-0.default.svc.cluster.local:2222\"]"));
    assert_non_null(strstr(tf, "\"task\":{\"type\":\"ps\",\"index\":0}"));
    free(tf);
    bt__k8s_job_free(&job);
    free(text);
}

static void test_tf_sparse_and_single(void **state)
{
    (void)state;
    char specs[4096] = "";
    rs(specs, sizeof(specs), "Worker", 2, "tensorflow", NULL);
    rs(specs, sizeof(specs), "PS", 1, "tensorflow", NULL);
    char *text = job_text("TFJob", "d", "  enableDynamicWorker: true\n", specs);
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(text, &job, &err), BT_OK);
    assert_string_equal(
        bt__k8s_pod_env(pod(&job, "d-worker-1"), "TF_CONFIG"),
        "{\"cluster\":{\"worker\":{\"1\":\"d-worker-1.default.svc:2222\"},\"ps\":"
        "[\"d-ps-0.default.svc:2222\"]},\"task\":{\"type\":\"worker\",\"index\":1}}");
    assert_string_equal(bt__k8s_pod_env(pod(&job, "d-ps-0"), "TF_CONFIG"),
                        "{\"cluster\":{\"worker\":{},\"ps\":[\"d-ps-0.default.svc:2222\"]},"
                        "\"task\":{\"type\":\"ps\",\"index\":0}}");
    bt__k8s_job_free(&job);
    free(text);
    specs[0] = '\0';
    rs(specs, sizeof(specs), "Worker", 1, "tensorflow", NULL);
    text = job_text("TFJob", "one", "", specs);
    assert_int_equal(parse(text, &job, &err), BT_OK);
    assert_null(bt__k8s_pod_env(pod(&job, "one-worker-0"), "TF_CONFIG"));
    bt__k8s_job_free(&job);
    free(text);
}

/* The template's own port named pytorchjob-port moves MASTER_PORT and the service port. */
static void test_custom_port_and_namespace(void **state)
{
    (void)state;
    const char *text =
        "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: cp, namespace: ml}\n"
        "spec:\n  pytorchReplicaSpecs:\n    Master:\n      template:\n        spec:\n"
        "          containers:\n          - name: pytorch\n            image: x\n"
        "            ports: [{name: pytorchjob-port, containerPort: 30000}]\n"
        "          - name: sidecar\n            image: y\n";
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(text, &job, &err), BT_OK);
    const struct bt__k8s_pod *m = pod(&job, "cp-master-0");
    assert_string_equal(bt__k8s_pod_env(m, "MASTER_PORT"), "30000");
    assert_string_equal(bt__k8s_pod_env(m, "WORLD_SIZE"), "1");
    assert_int_equal(m->argc, 0);
    assert_string_equal(job.ns, "ml");
    const struct bt__yn *ports = bt__yn_get(bt__yn_get(m->svc, "spec"), "ports");
    assert_int_equal(ports->n, 1);
    assert_string_equal(bt__yn_gets(ports->v[0], "port"), "30000");
    /* the sidecar gets the PyTorch env too (the operator sets it on every container) */
    const struct bt__yn *cs = bt__yn_get(bt__yn_get(m->pod, "spec"), "containers");
    assert_int_equal(bt__yn_get(cs->v[1], "env")->n, 10);
    assert_null(bt__yn_get(cs->v[1], "ports"));
    bt__k8s_job_free(&job);
}

static void expect_invalid(const char *text, const char *needle)
{
    struct bt__k8s_job job;
    struct bt__err err;
    int rc = parse(text, &job, &err);
    if (rc != BT_ERR_INVALID_USAGE || !strstr(err.msg, needle))
        fail_msg("want an error with '%s', got rc %d: %s", needle, rc, err.msg);
    assert_null(strchr(err.msg, '\n'));
    bt__k8s_job_free(&job);
}

static void test_validation(void **state)
{
    (void)state;
    char s[4096] = "", *t;
    rs(s, sizeof(s), "Master", 2, "pytorch", NULL);
    expect_invalid(t = job_text("PyTorchJob", "a", "", s), "PyTorchJob 'a': Master has 2 replicas");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Master", 1, "pytorch", NULL);
    rs(s, sizeof(s), "Launcher", 1, "pytorch", NULL);
    expect_invalid(t = job_text("PyTorchJob", "b", "", s), "unknown replica type 'Launcher'");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Worker", 1, "main", NULL);
    expect_invalid(t = job_text("PyTorchJob", "c", "", s), "Worker: no container named 'pytorch'");
    free(t);
    expect_invalid(t = job_text("MPIJob", "d", "", s), "unknown kind 'MPIJob'");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Chief", 2, "tensorflow", NULL);
    expect_invalid(t = job_text("TFJob", "e", "", s), "TFJob 'e': Chief has 2 replicas");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Chief", 1, "tensorflow", NULL);
    rs(s, sizeof(s), "Master", 1, "tensorflow", NULL);
    expect_invalid(t = job_text("TFJob", "f", "", s), "both Chief and Master");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Worker", 1, "tensorflow", NULL);
    rs(s, sizeof(s), "worker", 1, "tensorflow", NULL);
    expect_invalid(t = job_text("TFJob", "g", "", s), "replica type Worker is given twice");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Worker", -1, "tensorflow", NULL);
    expect_invalid(t = job_text("TFJob", "h", "", s), "replicas '-1' is not a whole number");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Worker", 1, "tensorflow", "Sometimes");
    expect_invalid(t = job_text("TFJob", "i", "", s), "restartPolicy 'Sometimes'");
    free(t);
    expect_invalid(t = job_text("TFJob", "Bad_Name", "", s), "metadata.name 'Bad_Name'");
    free(t);
    s[0] = '\0';
    rs(s, sizeof(s), "Worker", 1, "pytorch", NULL);
    expect_invalid(t = job_text("PyTorchJob",
                                "a-very-long-job-name-that-goes-on-and-on-and-on-and-on-x", "", s),
                   "longer than 63 characters");
    free(t);
    expect_invalid("apiVersion: kubeflow.org/v1\nkind: TFJob\nmetadata: {name: x}\n",
                   "spec.tfReplicaSpecs is missing");
    expect_invalid("apiVersion: v1\nkind: PyTorchJob\n", "apiVersion 'v1'");
    expect_invalid("[1, 2", "job.yaml:");
    expect_invalid("a: 1\n---\nb: 2\n", "more than one YAML document");
    expect_invalid("", "empty");
    expect_invalid("just a string", "not a Kubernetes object");
}

/* Aliases that expand exponentially, and deep nesting, end in an error, not a hang. */
/* Lines of the notes render prints for text (with gang scheduler g, or none). */
static int notes(const char *text, const char *g, char **out)
{
    struct bt__k8s_job job;
    struct bt__err err = {0};
    struct bt__k8s_opts opts = {.gang_scheduler = g};
    size_t n = 0;
    int lines = 0;
    FILE *f = open_memstream(out, &n);
    assert_int_equal(bt__k8s_job_parse(text, strlen(text), "job.yaml", &opts, &job, &err), BT_OK);
    bt__k8s_job_notes(&job, &opts, f, "N: ");
    fclose(f);
    for (const char *p = *out; *p; p++)
        lines += *p == '\n';
    bt__k8s_job_free(&job);
    return lines;
}

static void test_run_policy(void **state)
{
    (void)state;
    char specs[2048] = "", *out = NULL;
    rs(specs, sizeof(specs), "Master", 1, "pytorch", "ExitCode");
    rs(specs, sizeof(specs), "Worker", 3, "pytorch", NULL);
    char *t = job_text("PyTorchJob", "rp",
                       "  runPolicy:\n    backoffLimit: 2\n    activeDeadlineSeconds: 90\n"
                       "    cleanPodPolicy: Running\n    schedulingPolicy:\n"
                       "      minAvailable: 3\n      queue: q1\n",
                       specs);
    struct bt__k8s_job job;
    struct bt__err err;
    assert_int_equal(parse(t, &job, &err), BT_OK);
    assert_int_equal(job.policy.backoff_limit, 2);
    assert_int_equal(job.policy.active_deadline_s, 90);
    assert_int_equal(job.policy.ttl_after_finished_s, -1);
    assert_int_equal(job.policy.clean_pod_policy, 1);
    assert_int_equal(job.policy.min_available, 3);
    assert_null(job.podgroup); /* no gang scheduler: none */
    assert_string_equal(bt__yn_gets(bt__yn_get(pod(&job, "rp-worker-2")->pod, "spec"),
                                    "activeDeadlineSeconds"),
                        "90");
    bt__k8s_job_free(&job);
    /* backoffLimit, activeDeadlineSeconds, cleanPodPolicy, ExitCode, OnFailure, scheduling */
    assert_int_equal(notes(t, NULL, &out), 6);
    assert_non_null(strstr(out, "N: PyTorchJob 'rp': runPolicy.backoffLimit 2: not honoured"));
    assert_non_null(strstr(out, "restartPolicy OnFailure (Worker): kubelet restarts"));
    free(out);
    /* volcano: the schedulingPolicy note becomes the PodGroup's minResources note */
    assert_int_equal(notes(t, "volcano", &out), 6);
    assert_non_null(strstr(out, "PodGroup rp: rendered for --gang-scheduler volcano with "
                                "minMember 3"));
    free(out);
    free(t);
}

static void test_gang_podgroup(void **state)
{
    (void)state;
    char specs[2048] = "";
    rs(specs, sizeof(specs), "Chief", 1, "tensorflow", NULL);
    rs(specs, sizeof(specs), "Worker", 2, "tensorflow", NULL);
    char *t = job_text("TFJob", "tg",
                       "  runPolicy:\n    schedulingPolicy:\n      queue: q1\n"
                       "      priorityClass: high\n      scheduleTimeoutSeconds: 60\n",
                       specs);
    struct bt__k8s_opts v = {.gang_scheduler = "volcano"}, sp = {.gang_scheduler = "sp"};
    struct bt__k8s_job job;
    struct bt__err err = {0};
    assert_int_equal(bt__k8s_job_parse(t, strlen(t), "j", &v, &job, &err), BT_OK);
    const struct bt__yn *spec = bt__yn_get(job.podgroup, "spec");
    assert_string_equal(bt__yn_gets(job.podgroup, "apiVersion"), "scheduling.volcano.sh/v1beta1");
    assert_string_equal(bt__yn_gets(spec, "minMember"), "3");
    assert_string_equal(bt__yn_gets(spec, "queue"), "q1");
    assert_string_equal(bt__yn_gets(spec, "priorityClassName"), "high");
    assert_null(bt__yn_get(spec, "scheduleTimeoutSeconds")); /* scheduler-plugins only */
    const struct bt__yn *md = bt__yn_get(pod(&job, "tg-chief-0")->pod, "metadata");
    assert_string_equal(bt__yn_gets(bt__yn_get(md, "annotations"), "volcano.sh/task-spec"),
                        "chief");
    bt__k8s_job_free(&job);
    assert_int_equal(bt__k8s_job_parse(t, strlen(t), "j", &sp, &job, &err), BT_OK);
    spec = bt__yn_get(job.podgroup, "spec");
    assert_string_equal(bt__yn_gets(job.podgroup, "apiVersion"), "scheduling.x-k8s.io/v1alpha1");
    assert_null(bt__yn_get(spec, "queue"));
    assert_string_equal(bt__yn_gets(spec, "scheduleTimeoutSeconds"), "60");
    md = bt__yn_get(pod(&job, "tg-worker-1")->pod, "metadata");
    assert_string_equal(bt__yn_gets(bt__yn_get(md, "labels"), "scheduling.x-k8s.io/pod-group"),
                        "tg");
    assert_string_equal(bt__yn_gets(bt__yn_get(pod(&job, "tg-worker-1")->pod, "spec"),
                                    "schedulerName"),
                        "sp");
    bt__k8s_job_free(&job);
    free(t);
}

/* The pod names `baton run` gives missing nodes, from node 0's host in the spec. */
static void test_pending_pod_names(void **state)
{
    (void)state;
    static const struct {
        enum bt__spec_source src;
        const char *host0;
        int rank;
        const char *want;
    } cases[] = {
        {BT_SPEC_PYTORCHJOB, "mnist-master-0", 0, "mnist-master-0"},
        {BT_SPEC_PYTORCHJOB, "mnist-master-0", 3, "mnist-worker-2"},
        {BT_SPEC_PYTORCHJOB, "el-worker-0", 3, "el-worker-3"},
        {BT_SPEC_TFJOB, "tf-chief-0.default.svc", 2, "tf-worker-1"},
        {BT_SPEC_TFJOB, "tf-worker-0.ns.svc.cluster.local", 1, "tf-worker-1"},
        {BT_SPEC_INDEXED, "mnist-indexed-0.mnist-indexed", 2, "mnist-indexed-2"},
        {BT_SPEC_TRAINER_V2, "tj-trainer-node-0-0.tj", 5, "tj-trainer-node-0-5"},
        {BT_SPEC_FLAGS, "host-0", 1, ""},
        {BT_SPEC_PYTORCHJOB, "127.0.0.1", 1, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bt__spec s;
        char name[BT_SPEC_HOST_MAX];
        memset(&s, 0, sizeof(s));
        s.source = cases[i].src;
        snprintf(s.rdzv_host, sizeof(s.rdzv_host), "%s", cases[i].host0);
        bt__run_node_name(&s, cases[i].rank, name, sizeof(name));
        assert_string_equal(name, cases[i].want);
    }
    int ranks[4], total;
    const char *e = "WAIT timed out after 1.0 s; still missing 7 key(s): l/2/node/1, l/2/node/5,"
                    " l/2/node/6, l/2/node/9 and 3 more";
    assert_int_equal(bt__run_missing_ranks(e, 2, ranks, 4, &total), 4);
    assert_int_equal(total, 7);
    assert_int_equal(ranks[0], 1);
    assert_int_equal(ranks[3], 9);
    assert_int_equal(bt__run_missing_ranks("connection reset", 0, ranks, 4, &total), 0);
}

static void test_hostile_yaml(void **state)
{
    (void)state;
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    fputs("a: &a [x, x, x, x, x, x, x, x, x, x]\n", f);
    for (char c = 'b'; c <= 'j'; c++)
        fprintf(f, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", c, c, c - 1,
                c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    fclose(f);
    expect_invalid(s, "too large or too deeply nested");
    free(s);
    s = calloc(1, 4001);
    memset(s, '[', 2000);
    memset(s + 2000, ']', 2000);
    expect_invalid(s, "job.yaml:1: YAML nested deeper than 64 levels");
    free(s);
}

/* Scalars keep their type through load and emit; made strings are quoted when plain would
 * read as another type. */
static void test_ytree_roundtrip(void **state)
{
    (void)state;
    const char *in = "a: 1\nb: \"1\"\nc: 'true'\nd: true\ne: [x, \"y z\"]\nf: |\n  two\n  lines\n";
    struct bt__yn *docs[2];
    size_t nd;
    struct bt__err err = {0};
    assert_int_equal(bt__yn_load(in, strlen(in), "t", docs, 2, &nd, &err), BT_OK);
    assert_int_equal(nd, 1);
    struct bt__yn *d = docs[0];
    bt__yn_set(d, "g", bt__yn_str("3"));
    bt__yn_set(d, "h", bt__yn_str("yes"));
    bt__yn_set(d, "i", bt__yn_str("pt-master-0"));
    bt__yn_set(d, "j", bt__yn_int(23456));
    bt__yn_set(d, "a", bt__yn_str("replaced"));
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    assert_int_equal(bt__yn_emit(f, docs, 1, &err), BT_OK);
    fclose(f);
    assert_string_equal(out,
                        "---\na: replaced\nb: \"1\"\nc: 'true'\nd: true\ne:\n- x\n- \"y z\"\n"
                        "f: |\n  two\n  lines\ng: \"3\"\nh: \"yes\"\ni: pt-master-0\nj: 23456\n");
    free(out);
    bt__yn_free(d);
}

/* ---- Kubeflow Trainer v2: TrainJob + runtime ---- */

/* A TrainingRuntime `rt` (runtime_extra: lines under its node container; ml: the mlPolicy
 * body) and a TrainJob `tj` (trainer: lines under spec.trainer), one file. */
static char *tj_text(const char *ml, const char *runtime_extra, const char *trainer)
{
    size_t cap = 8192;
    char *s = malloc(cap);
    assert_non_null(s);
    snprintf(
        s, cap,
        "apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainingRuntime\nmetadata:\n"
        "  name: rt\n  namespace: team\nspec:\n  mlPolicy:\n%s  template:\n"
        "    metadata:\n      labels: {owner: ml}\n    spec:\n      replicatedJobs:\n"
        "        - name: node\n          template:\n            metadata:\n"
        "              labels: {trainer.kubeflow.org/trainjob-ancestor-step: trainer}\n"
        "            spec:\n              template:\n                spec:\n"
        "                  containers:\n                    - name: node\n"
        "                      image: baton:latest\n"
        "                      command: [baton, run, --]\n%s"
        "---\napiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\nmetadata:\n"
        "  name: tj\n  namespace: team\nspec:\n  runtimeRef: {name: rt, kind: TrainingRuntime}\n"
        "  trainer:\n%s",
        ml, runtime_extra, trainer);
    return s;
}

static const struct bt__yn *tj_container(const struct bt__k8s_pod *p)
{
    const struct bt__yn *cs = bt__yn_get(bt__yn_get(p->pod, "spec"), "containers");
    assert_non_null(cs);
    return cs->v[0];
}

static void test_trainjob_render(void **state)
{
    (void)state;
    struct bt__k8s_job job;
    struct bt__err err;
    char *t = tj_text("    numNodes: 2\n    torch: {}\n",
                      "                      resources: {requests: {cpu: 1500m}}\n",
                      "    numNodes: 3\n    args: [hello]\n    env: [{name: A, value: b}]\n");
    assert_int_equal(parse(t, &job, &err), BT_OK);
    assert_int_equal(job.kind, BT_K8S_TRAINJOB);
    assert_string_equal(job.name, "tj");
    assert_string_equal(job.ns, "team");
    assert_int_equal(job.npods, 3); /* trainer.numNodes wins over mlPolicy.numNodes */
    for (int i = 0; i < 3; i++) {
        char host[32], rank[8];
        const struct bt__k8s_pod *p = &job.pods[i];
        snprintf(host, sizeof(host), "tj-node-0-%d", i);
        snprintf(rank, sizeof(rank), "%d", i);
        assert_string_equal(p->name, host);
        assert_string_equal(p->subdomain, "tj");
        /* PET_NODE_RANK is a fieldRef to the completion index annotation: resolved per pod */
        assert_string_equal(bt__k8s_pod_env(p, "PET_NODE_RANK"), rank);
        assert_string_equal(bt__k8s_pod_env(p, "JOB_COMPLETION_INDEX"), rank);
        assert_string_equal(bt__k8s_pod_env(p, "PET_NNODES"), "3");
        assert_string_equal(bt__k8s_pod_env(p, "PET_NPROC_PER_NODE"), "2"); /* ceil(1.5) cpu */
        assert_string_equal(bt__k8s_pod_env(p, "PET_MASTER_ADDR"), "tj-node-0-0.tj");
        assert_string_equal(bt__k8s_pod_env(p, "PET_MASTER_PORT"), "29500");
        assert_string_equal(bt__k8s_pod_env(p, "A"), "b");
        assert_int_equal(p->argc, 4);
        assert_string_equal(p->argv[3], "hello");
        const struct bt__yn *md = bt__yn_get(p->pod, "metadata"),
                            *spec = bt__yn_get(p->pod, "spec");
        snprintf(host, sizeof(host), "tj-node-0-%d-", i);
        assert_string_equal(bt__yn_gets(md, "generateName"), host);
        assert_null(bt__yn_get(md, "name"));
        host[strlen(host) - 1] = '\0';
        assert_string_equal(bt__yn_gets(spec, "hostname"), host);
        assert_string_equal(bt__yn_gets(spec, "subdomain"), "tj");
        assert_string_equal(bt__yn_gets(spec, "restartPolicy"), "OnFailure");
        const struct bt__yn *l = bt__yn_get(md, "labels");
        assert_string_equal(bt__yn_gets(l, "jobset.sigs.k8s.io/jobset-name"), "tj");
        assert_string_equal(bt__yn_gets(l, "jobset.sigs.k8s.io/replicatedjob-name"), "node");
        assert_string_equal(bt__yn_gets(l, "jobset.sigs.k8s.io/job-index"), "0");
        /* sha1("team/tj-node-0") */
        assert_string_equal(bt__yn_gets(l, "jobset.sigs.k8s.io/job-key"),
                            "39bde4014ccbebea68b618f3ef7ec01f330176fd");
        assert_string_equal(bt__yn_gets(l, "batch.kubernetes.io/job-completion-index"), rank);
        /* the replicated job's labels go on the Job, not its pods (constructJob) */
        assert_null(bt__yn_gets(l, "trainer.kubeflow.org/trainjob-ancestor-step"));
        const struct bt__yn *ports = bt__yn_get(tj_container(p), "ports");
        assert_int_equal(ports->n, 1);
        assert_string_equal(bt__yn_gets(ports->v[0], "containerPort"), "29500");
    }
    /* the env order: template, trainer.env, then the PET_* set; JOB_COMPLETION_INDEX last */
    const struct bt__k8s_pod *p0 = &job.pods[0];
    assert_string_equal(p0->env[0].name, "A");
    assert_string_equal(p0->env[1].name, "PET_NNODES");
    assert_string_equal(p0->env[5].name, "PET_MASTER_PORT");
    assert_string_equal(p0->env[6].name, "JOB_COMPLETION_INDEX");
    const struct bt__k8s_trainjob *tj = job.tj;
    assert_string_equal(bt__yn_gets(bt__yn_get(tj->svc, "metadata"), "name"), "tj");
    assert_string_equal(bt__yn_gets(bt__yn_get(tj->svc, "spec"), "clusterIP"), "None");
    const struct bt__yn *jmd = bt__yn_get(tj->jobobj, "metadata");
    assert_string_equal(bt__yn_gets(jmd, "name"), "tj-node-0");
    assert_string_equal(bt__yn_gets(bt__yn_get(jmd, "labels"),
                                    "trainer.kubeflow.org/trainjob-ancestor-step"),
                        "trainer");
    const struct bt__yn *jspec = bt__yn_get(tj->jobobj, "spec");
    assert_string_equal(bt__yn_gets(jspec, "parallelism"), "3");
    assert_string_equal(bt__yn_gets(jspec, "completions"), "3");
    assert_string_equal(bt__yn_gets(jspec, "completionMode"), "Indexed");
    const struct bt__yn *jsmd = bt__yn_get(tj->jobset, "metadata");
    assert_string_equal(bt__yn_gets(bt__yn_get(jsmd, "labels"), "owner"), "ml");
    bt__k8s_job_free(&job);
    free(t);
}

static void test_trainjob_nproc(void **state)
{
    (void)state;
    struct bt__k8s_job job;
    struct bt__err err;
    static const struct {
        const char *res, *trainer, *want;
    } cases[] = {
        {"", "    numNodes: 1\n", "1"}, /* no resources: max(1, 0) */
        {"                      resources: {limits: {cpu: 4}}\n", "    numNodes: 1\n", "4"},
        {"                      resources: {limits: {nvidia.com/gpu: 2}}\n", "    numNodes: 1\n",
         "auto"},
        {"", "    numProcPerNode: 3\n", "3"},
        {"", "    resourcesPerNode: {requests: {cpu: 250m}}\n", "1"},
        {"                      resources: {requests: {cpu: 8}}\n",
         "    resourcesPerNode: {requests: {cpu: 2}}\n", "2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = tj_text("    torch: {}\n", cases[i].res, cases[i].trainer);
        assert_int_equal(parse(t, &job, &err), BT_OK);
        assert_string_equal(bt__k8s_pod_env(&job.pods[0], "PET_NPROC_PER_NODE"), cases[i].want);
        bt__k8s_job_free(&job);
        free(t);
    }
}

static void expect_tj_invalid(const char *ml, const char *extra, const char *trainer,
                              const char *needle)
{
    struct bt__k8s_job job;
    struct bt__err err;
    char *t = tj_text(ml, extra, trainer);
    assert_int_equal(parse(t, &job, &err), BT_ERR_INVALID_USAGE);
    if (!strstr(err.msg, needle))
        fail_msg("'%s' not in '%s'", needle, err.msg);
    assert_null(strchr(err.msg, '\n'));
    bt__k8s_job_free(&job);
    free(t);
}

static void test_trainjob_invalid(void **state)
{
    (void)state;
    const char *torch = "    torch: {}\n";
    expect_tj_invalid(torch, "", "    numNodes: 0\n",
                      "job.yaml: TrainJob 'tj': spec.trainer.numNodes is 0");
    expect_tj_invalid(torch, "", "    numNodes: -2\n", "spec.trainer.numNodes is -2");
    expect_tj_invalid("    numNodes: 0\n    torch: {}\n", "", "    args: [x]\n",
                      "TrainingRuntime 'rt': spec.mlPolicy.numNodes is 0");
    expect_tj_invalid("    mpi: {}\n", "", "    numNodes: 1\n",
                      "TrainingRuntime 'rt': spec.mlPolicy.mpi: baton k8s renders torch");
    expect_tj_invalid("    numNodes: 1\n", "", "    numNodes: 1\n",
                      "spec.mlPolicy has no known framework (torch or mpi)");
    expect_tj_invalid(torch, "", "    env: [{name: PET_NNODES, value: '9'}]\n",
                      "spec.trainer.env: PET_NNODES is reserved");
    expect_tj_invalid(torch, "", "    numNodes: 1\n    bogus: 1\n", "spec.trainer.bogus");
    /* a runtime of another kind or name is not the one */
    struct bt__k8s_job job;
    struct bt__err err;
    char *t = tj_text(torch, "", "    numNodes: 1\n");
    const char *ref = "{name: rt, kind: TrainingRuntime}";
    char *k = strstr(t, ref);
    memset(k, ' ', strlen(ref)); /* the same place, default kind ClusterTrainingRuntime */
    memcpy(k, "{name: rt}", 10);
    char *t2 = strdup(t);
    assert_int_equal(parse(t2, &job, &err), BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(err.msg, "spec.runtimeRef: ClusterTrainingRuntime 'rt' is not in "
                                    "job.yaml"));
    assert_non_null(strstr(err.msg, "there is a TrainingRuntime of that name"));
    bt__k8s_job_free(&job);
    free(t2);
    free(t);
}

static void test_trainjob_jobset_fields(void **state)
{
    (void)state;
    struct bt__k8s_job job;
    struct bt__err err;
    char *t = tj_text("    torch: {}\n", "", "    numNodes: 1\n");
    char *u = malloc(strlen(t) + 64);
    const char *at = strstr(t, "      replicatedJobs:");
    assert_non_null(u);
    sprintf(u, "%.*s      coordinator: {replicatedJob: node}\n%s", (int)(at - t), t, at);
    assert_int_equal(parse(u, &job, &err), BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(err.msg, "TrainingRuntime 'rt': spec.template.spec.coordinator: a "
                                    "JobSet field baton k8s does not support"));
    bt__k8s_job_free(&job);
    free(u);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_facts_example),
        cmocka_unit_test(test_pytorch_elastic),
        cmocka_unit_test(test_tf_config_facts_example),
        cmocka_unit_test(test_tf_sparse_and_single),
        cmocka_unit_test(test_custom_port_and_namespace),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_run_policy),
        cmocka_unit_test(test_gang_podgroup),
        cmocka_unit_test(test_pending_pod_names),
        cmocka_unit_test(test_hostile_yaml),
        cmocka_unit_test(test_ytree_roundtrip),
        cmocka_unit_test(test_trainjob_render),
        cmocka_unit_test(test_trainjob_nproc),
        cmocka_unit_test(test_trainjob_invalid),
        cmocka_unit_test(test_trainjob_jobset_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
