/* test_spec.c: cluster-spec detection with the exact env forms of shared/k8s-operator-facts.md,
 * the Slurm host-list parser, flag precedence, and bad inputs (each must be one clear
 * BT_ERR_INVALID_USAGE line naming the variable). The env is a NULL-terminated "K=V" array
 * seen through the lookup function, so nothing here touches the process environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/spec.h"
#include "launcher/spec_impl.h"

static const char *fake_getenv(const char *name, void *arg)
{
    const char *const *env = arg;
    size_t n = strlen(name);
    for (; *env; env++)
        if (!strncmp(*env, name, n) && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

static struct bt__spec S;
static struct bt__err E;

static struct bt__spec_flags noflags(void)
{
    struct bt__spec_flags f;
    bt__spec_flags_init(&f);
    return f;
}

static int detect_f(const struct bt__spec_flags *f, const char *const *env)
{
    memset(&E, 0, sizeof(E));
    return bt__spec_detect(f, fake_getenv, (void *)env, &S, &E);
}

static int detect(const char *const *env)
{
    struct bt__spec_flags f = noflags();
    return detect_f(&f, env);
}

/* Detection must fail with BT_ERR_INVALID_USAGE and a message that names each of words. */
#define EXPECT_BAD(rc, ...)                                                                        \
    do {                                                                                           \
        const char *w_[] = {__VA_ARGS__, NULL};                                                    \
        assert_int_equal((rc), BT_ERR_INVALID_USAGE);                                              \
        assert_int_equal(E.code, BT_ERR_INVALID_USAGE);                                            \
        assert_null(strchr(E.msg, '\n'));                                                          \
        for (const char **w = w_; *w; w++)                                                         \
            if (!strstr(E.msg, *w))                                                                \
                fail_msg("error '%s' does not name '%s'", E.msg, *w);                              \
    } while (0)

/* ---- PyTorchJob ---- */

#define PT_WORKER1                                                                                 \
    "MASTER_ADDR=pt-master-0", "MASTER_PORT=23456", "WORLD_SIZE=3", "RANK=2", "PET_NODE_RANK=2",   \
        "PET_NPROC_PER_NODE=auto", "PET_NNODES=3", "PYTHONUNBUFFERED=1",                           \
        "PET_MASTER_ADDR=pt-master-0", "PET_MASTER_PORT=23456"

static void test_pytorchjob_worker1(void **state)
{
    (void)state;
    const char *env[] = {PT_WORKER1, NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_PYTORCHJOB);
    assert_string_equal(S.job_id, "pt");
    assert_int_equal(S.role, BT_ROLE_WORKER);
    assert_int_equal(S.node_rank, 2);
    assert_int_equal(S.nnodes, 3);
    assert_int_equal(S.nproc_per_node, 0); /* auto */
    assert_int_equal(S.world_size, 0);
    assert_int_equal(S.first_rank, -1);
    assert_int_equal(S.elastic, 0);
    assert_string_equal(S.rdzv_host, "pt-master-0");
    assert_int_equal(S.rdzv_port, 23457);
    assert_string_equal(S.master_addr, "pt-master-0");
    assert_int_equal(S.master_port, 23456);
    assert_non_null(strstr(S.from, "MASTER_ADDR, MASTER_PORT, PET_NPROC_PER_NODE, RANK"));
    assert_non_null(strstr(S.from, "WORLD_SIZE"));
    assert_null(strstr(S.from, "PYTHONUNBUFFERED"));

    struct bt__spec_flags f = noflags();
    f.nproc_per_node = 2;
    assert_int_equal(detect_f(&f, env), BT_OK);
    assert_int_equal(S.world_size, 6);
    assert_int_equal(S.first_rank, 4);
    assert_non_null(strstr(S.from, "-n"));
}

static void test_pytorchjob_nproc4(void **state)
{
    (void)state;
    const char *env[] = {
        "MASTER_ADDR=pt-master-0", "MASTER_PORT=23456",    "WORLD_SIZE=12", "RANK=2",
        "PET_NODE_RANK=2",         "PET_NPROC_PER_NODE=4", "PET_NNODES=3",  NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.nnodes, 3);
    assert_int_equal(S.node_rank, 2);
    assert_int_equal(S.nproc_per_node, 4);
    assert_int_equal(S.world_size, 12);
    assert_int_equal(S.first_rank, 8);
    /* Without PET_NNODES the node count is WORLD_SIZE / nproc. */
    const char *env2[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=23456",
                          "WORLD_SIZE=12",           "RANK=0",
                          "PET_NPROC_PER_NODE=4",    NULL};
    assert_int_equal(detect(env2), BT_OK);
    assert_int_equal(S.nnodes, 3);
    assert_int_equal(S.node_rank, 0);
    assert_int_equal(S.first_rank, 0);
    /* "auto" counts as 1 in WORLD_SIZE */
    const char *env3[] = {"MASTER_ADDR=pt-master-0",
                          "MASTER_PORT=23456",
                          "WORLD_SIZE=3",
                          "RANK=1",
                          "PET_NPROC_PER_NODE=auto",
                          NULL};
    assert_int_equal(detect(env3), BT_OK);
    assert_int_equal(S.nnodes, 3);
    assert_int_equal(S.nproc_per_node, 0);
}

static void test_pytorchjob_rdzv_port_flag(void **state)
{
    (void)state;
    const char *env[] = {PT_WORKER1, NULL};
    struct bt__spec_flags f = noflags();
    f.rdzv_port = 30001;
    assert_int_equal(detect_f(&f, env), BT_OK);
    assert_int_equal(S.rdzv_port, 30001);
    assert_int_equal(S.master_port, 23456);
    assert_int_equal(S.source, BT_SPEC_PYTORCHJOB);
    /* MASTER_PORT=65535 leaves no +1 unless --rdzv-port says where */
    const char *env2[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=65535", "WORLD_SIZE=3", "RANK=1",
                          NULL};
    assert_int_equal(detect_f(&f, env2), BT_OK);
    EXPECT_BAD(detect(env2), "MASTER_PORT=65535", "--rdzv-port");
}

static void test_pytorchjob_elastic(void **state)
{
    (void)state;
    const char *env[] = {"PET_RDZV_ENDPOINT=el-worker-0:23456",
                         "PET_RDZV_BACKEND=c10d",
                         "PET_NNODES=2:4",
                         "PET_MAX_RESTARTS=3",
                         "PET_RDZV_ID=el-id",
                         "PET_NPROC_PER_NODE=2",
                         "PET_STANDALONE=",
                         "HOSTNAME=el-worker-1",
                         NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_PYTORCHJOB);
    assert_int_equal(S.elastic, 1);
    assert_int_equal(S.nnodes_min, 2);
    assert_int_equal(S.nnodes_max, 4);
    assert_int_equal(S.nnodes, 4);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nproc_per_node, 2);
    assert_int_equal(S.world_size, 0);
    assert_int_equal(S.first_rank, -1);
    assert_int_equal(S.max_restarts, 3);
    assert_string_equal(S.job_id, "el");
    assert_string_equal(S.rdzv_host, "el-worker-0");
    assert_int_equal(S.rdzv_port, 23457);
    assert_int_equal(S.master_port, 23456);
    assert_non_null(strstr(S.from, "HOSTNAME"));
    assert_non_null(strstr(S.from, "PET_RDZV_ENDPOINT"));

    const char *fixed[] = {"PET_RDZV_ENDPOINT=el-worker-0:23456", "PET_NNODES=3",
                           "PET_NPROC_PER_NODE=2", "HOSTNAME=el-worker-2", NULL};
    assert_int_equal(detect(fixed), BT_OK);
    assert_int_equal(S.nnodes, 3);
    assert_int_equal(S.world_size, 6);
    assert_int_equal(S.node_rank, 2);

    const char *bad_host[] = {"PET_RDZV_ENDPOINT=el-worker-0:23456", "PET_NNODES=2:4",
                              "HOSTNAME=laptop", NULL};
    EXPECT_BAD(detect(bad_host), "HOSTNAME", "laptop", "--node-rank");
    struct bt__spec_flags f = noflags();
    f.node_rank = 1;
    assert_int_equal(detect_f(&f, bad_host), BT_OK);
    assert_int_equal(S.node_rank, 1);

    const char *out_of_range[] = {"PET_RDZV_ENDPOINT=el-worker-0:23456", "PET_NNODES=2:4",
                                  "HOSTNAME=el-worker-4", NULL};
    EXPECT_BAD(detect(out_of_range), "HOSTNAME=el-worker-4", "PET_NNODES");
    const char *no_port[] = {"PET_RDZV_ENDPOINT=el-worker-0", "PET_NNODES=2",
                             "HOSTNAME=el-worker-1", NULL};
    EXPECT_BAD(detect(no_port), "PET_RDZV_ENDPOINT", "port");
}

static void test_pytorchjob_worker_only_plain(void **state)
{
    (void)state;
    const char *env[] = {"PET_NNODES=2", "PET_NPROC_PER_NODE=1", "HOSTNAME=w-worker-1", NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_PYTORCHJOB);
    assert_int_equal(S.elastic, 0);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.world_size, 2);
    assert_string_equal(S.rdzv_host, "w-worker-0");
    assert_int_equal(S.rdzv_port, 23457);
    assert_string_equal(S.job_id, "w");
}

static void test_pytorchjob_bad(void **state)
{
    (void)state;
    const char *rank_word[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=23456", "WORLD_SIZE=3",
                               "RANK=two", NULL};
    EXPECT_BAD(detect(rank_word), "RANK='two'", "not an integer");
    const char *rank_big[] = {"MASTER_ADDR=pt-master-0",
                              "MASTER_PORT=23456",
                              "WORLD_SIZE=3",
                              "RANK=3",
                              "PET_NNODES=3",
                              NULL};
    EXPECT_BAD(detect(rank_big), "RANK=3", "3 node");
    const char *rank_neg[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=23456", "WORLD_SIZE=3",
                              "RANK=-1", NULL};
    EXPECT_BAD(detect(rank_neg), "RANK=-1", ">= 0");
    const char *disagree[] = {"MASTER_ADDR=pt-master-0",
                              "MASTER_PORT=23456",
                              "WORLD_SIZE=3",
                              "RANK=1",
                              "PET_NODE_RANK=2",
                              NULL};
    EXPECT_BAD(detect(disagree), "RANK=1", "PET_NODE_RANK=2", "disagree");
    const char *ws_mult[] = {"MASTER_ADDR=pt-master-0",
                             "MASTER_PORT=23456",
                             "WORLD_SIZE=7",
                             "RANK=1",
                             "PET_NPROC_PER_NODE=4",
                             NULL};
    EXPECT_BAD(detect(ws_mult), "WORLD_SIZE=7", "multiple", "PET_NPROC_PER_NODE=4");
    const char *ws_nn[] = {"MASTER_ADDR=pt-master-0",
                           "MASTER_PORT=23456",
                           "WORLD_SIZE=6",
                           "RANK=1",
                           "PET_NNODES=3",
                           "PET_NPROC_PER_NODE=1",
                           NULL};
    EXPECT_BAD(detect(ws_nn), "WORLD_SIZE=6", "PET_NNODES=3");
    const char *port[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=70000", "WORLD_SIZE=3", "RANK=1",
                          NULL};
    EXPECT_BAD(detect(port), "MASTER_PORT=70000", "<= 65535");
    const char *no_port[] = {"MASTER_ADDR=pt-master-0", "WORLD_SIZE=3", "RANK=1", NULL};
    EXPECT_BAD(detect(no_port), "MASTER_PORT is not set");
    const char *nn[] = {"MASTER_ADDR=pt-master-0", "MASTER_PORT=1", "RANK=0", "PET_NNODES=4:2",
                        NULL};
    EXPECT_BAD(detect(nn), "PET_NNODES='4:2'");
    const char *nproc0[] = {"MASTER_ADDR=pt-master-0",
                            "MASTER_PORT=1",
                            "RANK=0",
                            "WORLD_SIZE=1",
                            "PET_NPROC_PER_NODE=0",
                            NULL};
    EXPECT_BAD(detect(nproc0), "PET_NPROC_PER_NODE=0");
    /* MASTER_ADDR and MASTER_PORT alone (a developer's shell) are not a PyTorchJob */
    const char *dev[] = {"MASTER_ADDR=localhost", "MASTER_PORT=29500", NULL};
    assert_int_equal(detect(dev), BT_OK);
    assert_int_equal(S.source, BT_SPEC_STANDALONE);
    struct bt__spec_flags f = noflags();
    f.source = BT_SPEC_PYTORCHJOB;
    const char *none[] = {NULL};
    EXPECT_BAD(detect_f(&f, none), "--spec pytorchjob", "MASTER_ADDR");
}

/* ---- TFJob ---- */

#define TF_CLUSTER                                                                                 \
    "{\"chief\":[\"mnist-chief-0.default.svc:2222\"],\"evaluator\":[\"mnist-evaluator-0."          \
    "default.svc:2222\"],\"ps\":[\"mnist-ps-0.default.svc:2222\"],\"worker\":[\"mnist-worker-"     \
    "0.default.svc:2222\",\"mnist-worker-1.default.svc:2222\"]}"
#define TF_CONFIG_FOR(type, index)                                                                 \
    "TF_CONFIG={\"cluster\":" TF_CLUSTER ",\"task\":{\"type\":\"" type "\",\"index\":" #index      \
    "},\"environment\":\"cloud\"}"

static void check_tf_common(void)
{
    assert_int_equal(S.source, BT_SPEC_TFJOB);
    assert_string_equal(S.job_id, "mnist");
    assert_int_equal(S.nnodes, 3);
    assert_string_equal(S.rdzv_host, "mnist-chief-0.default.svc");
    assert_int_equal(S.rdzv_port, 2223);
    assert_int_equal(S.master_port, 2222);
    assert_int_equal(S.nps, 1);
    assert_string_equal(S.ps_hosts[0], "mnist-ps-0.default.svc:2222");
    assert_string_equal(S.tf_cluster_json, TF_CLUSTER);
    assert_non_null(strstr(S.from, "TF_CONFIG"));
}

static void test_tf_worker(void **state)
{
    (void)state;
    const char *env[] = {TF_CONFIG_FOR("worker", 1), NULL};
    assert_int_equal(detect(env), BT_OK);
    check_tf_common();
    assert_int_equal(S.role, BT_ROLE_WORKER);
    assert_int_equal(S.node_rank, 2);
    assert_int_equal(S.tf_task_index, 1);
    const char *env0[] = {TF_CONFIG_FOR("worker", 0), NULL};
    assert_int_equal(detect(env0), BT_OK);
    assert_int_equal(S.node_rank, 1);
}

static void test_tf_chief(void **state)
{
    (void)state;
    const char *env[] = {TF_CONFIG_FOR("chief", 0), NULL};
    struct bt__spec_flags f = noflags();
    f.nproc_per_node = 2;
    assert_int_equal(detect_f(&f, env), BT_OK);
    check_tf_common();
    assert_int_equal(S.role, BT_ROLE_CHIEF);
    assert_int_equal(S.node_rank, 0);
    assert_int_equal(S.world_size, 6);
    assert_int_equal(S.first_rank, 0);
}

static void test_tf_ps_and_evaluator(void **state)
{
    (void)state;
    const char *ps[] = {TF_CONFIG_FOR("ps", 0), NULL};
    assert_int_equal(detect(ps), BT_OK);
    check_tf_common();
    assert_int_equal(S.role, BT_ROLE_PS);
    assert_int_equal(S.node_rank, -1);
    assert_int_equal(S.nproc_per_node, 1);
    assert_int_equal(S.first_rank, -1);
    assert_int_equal(S.tf_task_index, 0);
    const char *ev[] = {TF_CONFIG_FOR("evaluator", 0), NULL};
    assert_int_equal(detect(ev), BT_OK);
    check_tf_common();
    assert_int_equal(S.role, BT_ROLE_EVALUATOR);
    assert_int_equal(S.node_rank, -1);
}

static void test_tf_no_chief_and_master(void **state)
{
    (void)state;
    const char *env[] = {"TF_CONFIG={\"cluster\": {\"worker\": [\"tw-worker-0.ns.svc:2222\", "
                         "\"tw-worker-1.ns.svc:2222\"], \"ps\": [\"tw-ps-0.ns.svc:2222\", "
                         "\"tw-ps-1.ns.svc:2222\"]}, \"task\": {\"type\": \"worker\", "
                         "\"index\": 1}}",
                         NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 2);
    assert_string_equal(S.rdzv_host, "tw-worker-0.ns.svc");
    assert_int_equal(S.nps, 2);
    assert_string_equal(S.ps_hosts[1], "tw-ps-1.ns.svc:2222");
    assert_string_equal(S.job_id, "tw");
    const char *master[] = {"TF_CONFIG={\"cluster\":{\"master\":[\"lm-master-0.ns.svc:2222\"],"
                            "\"worker\":[\"lm-worker-0.ns.svc:2222\"]},"
                            "\"task\":{\"type\":\"master\",\"index\":0}}",
                            NULL};
    assert_int_equal(detect(master), BT_OK);
    assert_int_equal(S.role, BT_ROLE_CHIEF);
    assert_int_equal(S.node_rank, 0);
    assert_int_equal(S.nnodes, 2);
    assert_string_equal(S.rdzv_host, "lm-master-0.ns.svc");
    assert_string_equal(S.job_id, "lm");
}

static void test_tf_sparse(void **state)
{
    (void)state;
    const char *env[] = {
        "TF_CONFIG={\"cluster\":{\"worker\":{\"1\":\"sp-worker-1.default.svc:2222\"},"
        "\"ps\":[\"sp-ps-0.default.svc:2222\"]},\"task\":{\"type\":\"worker\","
        "\"index\":1}}",
        "BATON_NNODES=3", NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_TFJOB);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 3);
    assert_string_equal(S.rdzv_host, "sp-worker-0.default.svc");
    assert_int_equal(S.rdzv_port, 2223);
    assert_string_equal(S.job_id, "sp");
    assert_int_equal(S.nps, 1);
    assert_non_null(strstr(S.from, "BATON_NNODES"));
    const char *no_n[] = {env[0], NULL};
    EXPECT_BAD(detect(no_n), "TF_CONFIG", "BATON_NNODES");
}

static void test_tf_bad(void **state)
{
    (void)state;
    static const struct {
        const char *tf, *word;
    } bad[] = {
        {"TF_CONFIG=not json {", "not a JSON object"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]}", "not valid JSON"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\",\"index\":0}}}",
         "not valid JSON"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]}}", "no \"task\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":\"worker\"}", "\"task\" is not"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"index\":0}}", "no \"type\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\"}}",
         "no \"index\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\",\"index\":5}}",
         "out of range"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\",\"index\":-1}}",
         "index"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"boss\",\"index\":0}}",
         "unknown task type 'boss'"},
        {"TF_CONFIG={\"cluster\":[\"a:1\"],\"task\":{\"type\":\"worker\",\"index\":0}}",
         "\"cluster\" is not an object"},
        {"TF_CONFIG={\"task\":{\"type\":\"worker\",\"index\":0}}", "no \"cluster\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a\"]},\"task\":{\"type\":\"worker\",\"index\":0}}",
         "has no port"},
        {"TF_CONFIG={\"cluster\":{\"ps\":[\"p:1\"]},\"task\":{\"type\":\"ps\",\"index\":0}}",
         "no chief, master or worker"},
        {"TF_CONFIG=[1,2]", "not a JSON object"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\",\"index\":0}",
         "not valid JSON"},
        /* a second "task" must not silently win (or lose) */
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\",\"b:1\"]},\"task\":{\"type\":\"worker\","
         "\"index\":0},\"task\":{\"type\":\"worker\",\"index\":1}}",
         "duplicate key \"task\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"],\"worker\":[\"b:1\"]},\"task\":{\"type\":"
         "\"worker\",\"index\":0}}",
         "duplicate key \"worker\""},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\",\"b:1\"]},\"task\":{\"type\":\"worker\","
         "\"index\":\"1\"}}",
         "\"task.index\" is the string \"1\"; want a number"},
        {"TF_CONFIG={\"cluster\":{\"worker\":\"a:1\"},\"task\":{\"type\":\"worker\",\"index\":0}}",
         "\"cluster.worker\" is not a list"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"],\"ps\":\"p:1\"},\"task\":{\"type\":"
         "\"worker\",\"index\":0}}",
         "\"cluster.ps\" is not a list"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\",[\"b:1\"]]},\"task\":{\"type\":\"worker\","
         "\"index\":0}}",
         "\"cluster.worker[1]\" is not a \"host:port\" string"},
        {"TF_CONFIG={\"cluster\":{\"worker\":[\"a:1\"]},\"task\":{\"type\":\"worker\",\"index\":0},"
         "\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
         "nested deeper than 16 levels"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *env[] = {bad[i].tf, NULL};
        int rc = detect(env);
        if (rc != BT_ERR_INVALID_USAGE || !strstr(E.msg, "TF_CONFIG") ||
            !strstr(E.msg, bad[i].word))
            fail_msg("%s: rc %d, '%s' (want '%s')", bad[i].tf, rc, E.msg, bad[i].word);
    }
    struct bt__spec_flags f = noflags();
    f.source = BT_SPEC_TFJOB;
    const char *none[] = {NULL};
    EXPECT_BAD(detect_f(&f, none), "TF_CONFIG is not set");
}

/* Every truncation and many one-byte mutations of the operator's TF_CONFIG either parse or
 * give one TF_CONFIG line: never a crash (run under ASan), never another kind of error. */
static void test_tf_mutations(void **state)
{
    (void)state;
    static const char full[] = TF_CONFIG_FOR("worker", 1);
    static const char subst[] = "{}[]\",:0-x \\";
    char buf[sizeof(full)];
    const char *env[] = {buf, NULL};
    size_t n = strlen(full), pre = strlen("TF_CONFIG=");
    int ok = 0;
    for (size_t cut = pre + 1; cut <= n; cut++) { /* cut == pre: unset */
        memcpy(buf, full, cut);
        buf[cut] = '\0';
        int rc = detect(env);
        ok += rc == BT_OK;
        if (rc != BT_OK && (rc != BT_ERR_INVALID_USAGE || !strstr(E.msg, "TF_CONFIG")))
            fail_msg("cut at %zu: rc %d '%s'", cut, rc, E.msg);
    }
    assert_int_equal(ok, 1); /* only the whole text */
    for (size_t i = pre; i < n; i++) {
        for (const char *c = subst; *c; c++) {
            memcpy(buf, full, n + 1);
            buf[i] = *c;
            int rc = detect(env);
            if (rc != BT_OK && (rc != BT_ERR_INVALID_USAGE || !strstr(E.msg, "TF_CONFIG")))
                fail_msg("byte %zu -> '%c': rc %d '%s'", i, *c, rc, E.msg);
        }
    }
}

/* ---- MPI ---- */

static void test_mpi(void **state)
{
    (void)state;
    const char *env[] = {"OMPI_COMM_WORLD_RANK=3",       "OMPI_COMM_WORLD_SIZE=4",
                         "OMPI_COMM_WORLD_LOCAL_RANK=1", "OMPI_COMM_WORLD_LOCAL_SIZE=2",
                         "BATON_RDZV=node0:29601",       NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_MPI);
    assert_int_equal(S.node_rank, 3);
    assert_int_equal(S.nnodes, 4);
    assert_int_equal(S.nproc_per_node, 1);
    assert_int_equal(S.world_size, 4);
    assert_int_equal(S.first_rank, 3);
    assert_string_equal(S.rdzv_host, "node0");
    assert_int_equal(S.rdzv_port, 29601);
    assert_string_equal(S.job_id, "mpi");
    const char *local[] = {"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2",
                           "OMPI_COMM_WORLD_LOCAL_RANK=0", "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL};
    assert_int_equal(detect(local), BT_OK);
    assert_string_equal(S.rdzv_host, "127.0.0.1");
    assert_int_equal(S.rdzv_port, 29501);
    const char *pmix[] = {"PMIX_RANK=1", "PMI_SIZE=2", "PMIX_NAMESPACE=ns7", "BATON_RDZV_HOST=h0",
                          NULL};
    assert_int_equal(detect(pmix), BT_OK);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 2);
    assert_string_equal(S.job_id, "ns7");
    assert_string_equal(S.rdzv_host, "h0");
    assert_int_equal(S.rdzv_port, 29501);

    const char *multi[] = {"OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=4",
                           "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL};
    EXPECT_BAD(detect(multi), "BATON_RDZV", "--rdzv");
    const char *big[] = {"OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4", NULL};
    EXPECT_BAD(detect(big), "OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4");
    const char *nosize[] = {"PMIX_RANK=0", NULL};
    EXPECT_BAD(detect(nosize), "PMIX_RANK", "size");
}

/* ---- Slurm ---- */

static void expect_list(const char *expr, const char *const *want)
{
    char names[16][BT_SPEC_HOST_MAX];
    int n = 0;
    while (want[n])
        n++;
    int got = bt__slurm_nodelist_expand(expr, names, 16);
    if (got != n)
        fail_msg("%s: %d names, want %d", expr, got, n);
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], want[i]))
            fail_msg("%s: name %d is '%s', want '%s'", expr, i, names[i], want[i]);
}

static void test_slurm_nodelist(void **state)
{
    (void)state;
    expect_list("gpu[01-04,07]",
                (const char *[]){"gpu01", "gpu02", "gpu03", "gpu04", "gpu07", NULL});
    expect_list("node1,node[3-5]", (const char *[]){"node1", "node3", "node4", "node5", NULL});
    expect_list("a[001-003]", (const char *[]){"a001", "a002", "a003", NULL});
    expect_list("a[1-3],b5", (const char *[]){"a1", "a2", "a3", "b5", NULL});
    expect_list("n[8-11]", (const char *[]){"n8", "n9", "n10", "n11", NULL});
    expect_list("r[1-2]-n[1-2]", (const char *[]){"r1-n1", "r1-n2", "r2-n1", "r2-n2", NULL});
    expect_list("single", (const char *[]){"single", NULL});
    expect_list("x[7]", (const char *[]){"x7", NULL});
    assert_int_equal(bt__slurm_nodelist_expand("a[1-100000]", NULL, 0), 100000);
    static const char *const bad[] = {
        "",      "a[1-",   "a[3-1]", "a]",       ",a",   "a,",    "a[]",
        "a[1,]", "a[[1]]", "a[x]",   "a[1-2-3]", "a,,b", "a[-1]", "n[0-999999999]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (bt__slurm_nodelist_expand(bad[i], NULL, 0) != -1)
            fail_msg("'%s' accepted", bad[i]);
}

static void test_slurm(void **state)
{
    (void)state;
    const char *env[] = {"SLURM_JOB_ID=4242",
                         "SLURM_NODEID=1",
                         "SLURM_NNODES=5",
                         "SLURM_NTASKS=5",
                         "SLURM_PROCID=1",
                         "SLURM_JOB_NODELIST=gpu[01-04,07]",
                         NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_SLURM);
    assert_string_equal(S.job_id, "4242");
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 5);
    assert_string_equal(S.rdzv_host, "gpu01");
    assert_int_equal(S.rdzv_port, 29501);
    assert_int_equal(S.nproc_per_node, 0);
    const char *port[] = {"SLURM_JOB_ID=7",        "SLURM_NODEID=0",
                          "SLURM_JOB_NUM_NODES=2", "SLURM_JOB_NODELIST=node1,node[3-5]",
                          "MASTER_PORT=12345",     NULL};
    assert_int_equal(detect(port), BT_OK);
    assert_string_equal(S.rdzv_host, "node1");
    assert_int_equal(S.rdzv_port, 12346);
    assert_int_equal(S.master_port, 12345);
    const char *tasks[] = {"SLURM_JOB_ID=7",
                           "SLURM_NODEID=1",
                           "SLURM_NNODES=2",
                           "SLURM_NTASKS=8",
                           "SLURM_PROCID=5",
                           "SLURM_NODELIST=a[001-003]",
                           NULL};
    assert_int_equal(detect(tasks), BT_OK);
    assert_int_equal(S.node_rank, 5);
    assert_int_equal(S.nnodes, 8);
    assert_int_equal(S.nproc_per_node, 1);
    assert_int_equal(S.first_rank, 5);
    assert_string_equal(S.rdzv_host, "a001");

    const char *nodeid[] = {"SLURM_JOB_ID=7", "SLURM_NODEID=5", "SLURM_NNODES=2",
                            "SLURM_JOB_NODELIST=a[1-2]", NULL};
    EXPECT_BAD(detect(nodeid), "SLURM_NODEID=5", "SLURM_NNODES=2");
    const char *list[] = {"SLURM_JOB_ID=7", "SLURM_NODEID=0", "SLURM_NNODES=2",
                          "SLURM_JOB_NODELIST=gpu[01-", NULL};
    EXPECT_BAD(detect(list), "SLURM_JOB_NODELIST='gpu[01-'");
    const char *few[] = {"SLURM_JOB_ID=7", "SLURM_NODEID=0", "SLURM_NNODES=3",
                         "SLURM_JOB_NODELIST=a[1-2]", NULL};
    EXPECT_BAD(detect(few), "SLURM_JOB_NODELIST", "2 node");
}

/* ---- JAXJob, Trainer v2, Indexed Job, standalone ---- */

static void test_jaxjob(void **state)
{
    (void)state;
    const char *env[] = {"COORDINATOR_ADDRESS=jx-worker-0", "COORDINATOR_PORT=6666",
                         "NUM_PROCESSES=4", "PROCESS_ID=2", NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_JAXJOB);
    assert_string_equal(S.job_id, "jx");
    assert_int_equal(S.node_rank, 2);
    assert_int_equal(S.nnodes, 4);
    assert_string_equal(S.rdzv_host, "jx-worker-0");
    assert_int_equal(S.rdzv_port, 6667);
    assert_int_equal(S.master_port, 6666);
    const char *bad[] = {"COORDINATOR_ADDRESS=jx-worker-0", "COORDINATOR_PORT=6666",
                         "NUM_PROCESSES=4", "PROCESS_ID=4", NULL};
    EXPECT_BAD(detect(bad), "PROCESS_ID=4", "NUM_PROCESSES=4");
    const char *noport[] = {"COORDINATOR_ADDRESS=jx-worker-0", "NUM_PROCESSES=4", "PROCESS_ID=0",
                            NULL};
    EXPECT_BAD(detect(noport), "COORDINATOR_PORT");
}

static void test_trainer_v2(void **state)
{
    (void)state;
    const char *env[] = {"PET_NNODES=2",
                         "PET_NPROC_PER_NODE=4",
                         "PET_NODE_RANK=1",
                         "PET_MASTER_ADDR=tj-trainer-node-0-0.tj",
                         "PET_MASTER_PORT=29500",
                         "JOB_COMPLETION_INDEX=1",
                         NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_TRAINER_V2);
    assert_string_equal(S.job_id, "tj");
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 2);
    assert_int_equal(S.world_size, 8);
    assert_int_equal(S.first_rank, 4);
    assert_string_equal(S.rdzv_host, "tj-trainer-node-0-0.tj");
    assert_int_equal(S.rdzv_port, 29501);
    const char *bad[] = {"PET_NNODES=2", "PET_NODE_RANK=2",
                         "PET_MASTER_ADDR=tj-trainer-node-0-0.tj", "PET_MASTER_PORT=29500", NULL};
    EXPECT_BAD(detect(bad), "PET_NODE_RANK=2", "PET_NNODES=2");
    /* The Trainer today (kubeflow/trainer @ 8c0f5059bd51 torch.go): <job>-node-0-0.<job>, the
     * replicated job is `node`; the job id is the subdomain, also for a job named like one. */
    const char *now[] = {"PET_NNODES=2",
                         "PET_NPROC_PER_NODE=1",
                         "PET_NODE_RANK=0",
                         "PET_MASTER_ADDR=mnist-node-0-0.mnist",
                         "PET_MASTER_PORT=29500",
                         "JOB_COMPLETION_INDEX=0",
                         NULL};
    assert_int_equal(detect(now), BT_OK);
    assert_int_equal(S.source, BT_SPEC_TRAINER_V2);
    assert_string_equal(S.job_id, "mnist");
    assert_string_equal(S.rdzv_host, "mnist-node-0-0.mnist");
    assert_int_equal(S.world_size, 2);
    const char *nodot[] = {"PET_NNODES=1",          "PET_NPROC_PER_NODE=1",
                           "PET_NODE_RANK=0",       "PET_MASTER_ADDR=a-node-node-0-0",
                           "PET_MASTER_PORT=29500", NULL};
    assert_int_equal(detect(nodot), BT_OK);
    assert_string_equal(S.job_id, "a-node");
}

static void test_indexed(void **state)
{
    (void)state;
    const char *env[] = {"JOB_COMPLETION_INDEX=2", "BATON_NNODES=4", "BATON_RDZV=ix-0.ix:29501",
                         "HOSTNAME=ix-2-abcde", NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_INDEXED);
    assert_string_equal(S.job_id, "ix");
    assert_int_equal(S.node_rank, 2);
    assert_int_equal(S.nnodes, 4);
    assert_string_equal(S.rdzv_host, "ix-0.ix");
    assert_int_equal(S.rdzv_port, 29501);
    const char *short_host[] = {"JOB_COMPLETION_INDEX=12",      "BATON_NNODES=16",
                                "BATON_RDZV_HOST=my-job-0.svc", "BATON_RDZV_PORT=4000",
                                "HOSTNAME=my-job-12",           NULL};
    assert_int_equal(detect(short_host), BT_OK);
    assert_string_equal(S.job_id, "my-job");
    assert_int_equal(S.rdzv_port, 4000);
    const char *own_id[] = {"JOB_COMPLETION_INDEX=0", "BATON_NNODES=1", "BATON_JOB_ID=custom",
                            "HOSTNAME=zz-0-abcde", NULL};
    assert_int_equal(detect(own_id), BT_OK);
    assert_string_equal(S.job_id, "custom");
    assert_string_equal(S.rdzv_host, "127.0.0.1");

    const char *alone[] = {"JOB_COMPLETION_INDEX=3", NULL};
    assert_int_equal(detect(alone), BT_OK);
    assert_int_equal(S.source, BT_SPEC_STANDALONE);
    const char *no_rdzv[] = {"JOB_COMPLETION_INDEX=1", "BATON_NNODES=4", NULL};
    EXPECT_BAD(detect(no_rdzv), "BATON_RDZV");
    const char *big[] = {"JOB_COMPLETION_INDEX=5", "BATON_NNODES=4", "BATON_RDZV=h:1", NULL};
    EXPECT_BAD(detect(big), "JOB_COMPLETION_INDEX=5", "BATON_NNODES=4");
    const char *rdzv[] = {"JOB_COMPLETION_INDEX=1", "BATON_NNODES=4", "BATON_RDZV=h:x", NULL};
    EXPECT_BAD(detect(rdzv), "BATON_RDZV='x'");
    struct bt__spec_flags f = noflags();
    f.source = BT_SPEC_INDEXED;
    const char *none[] = {"JOB_COMPLETION_INDEX=0", NULL};
    EXPECT_BAD(detect_f(&f, none), "BATON_NNODES");
}

static void test_standalone(void **state)
{
    (void)state;
    const char *env[] = {NULL};
    assert_int_equal(detect(env), BT_OK);
    assert_int_equal(S.source, BT_SPEC_STANDALONE);
    assert_int_equal(S.nnodes, 1);
    assert_int_equal(S.node_rank, 0);
    assert_int_equal(S.nproc_per_node, 0);
    assert_int_equal(S.world_size, 0);
    assert_string_equal(S.rdzv_host, "127.0.0.1");
    assert_int_equal(S.rdzv_port, 0);
    assert_string_equal(S.job_id, "standalone");
    assert_string_equal(S.from, "");
    struct bt__spec_flags f = noflags();
    f.nproc_per_node = 4;
    assert_int_equal(detect_f(&f, env), BT_OK);
    assert_int_equal(S.world_size, 4);
    assert_int_equal(S.first_rank, 0);
    /* --spec standalone ignores a PyTorchJob env */
    const char *pt[] = {PT_WORKER1, NULL};
    f.source = BT_SPEC_STANDALONE;
    assert_int_equal(detect_f(&f, pt), BT_OK);
    assert_int_equal(S.source, BT_SPEC_STANDALONE);
    assert_int_equal(S.node_rank, 0);
}

/* ---- flags ---- */

static void test_flags(void **state)
{
    (void)state;
    const char *none[] = {NULL};
    struct bt__spec_flags f = noflags();
    f.nnodes = 2;
    f.node_rank = 1;
    f.rdzv = "127.0.0.1:5555";
    assert_int_equal(detect_f(&f, none), BT_OK);
    assert_int_equal(S.source, BT_SPEC_FLAGS);
    assert_int_equal(S.nnodes, 2);
    assert_int_equal(S.node_rank, 1);
    assert_string_equal(S.rdzv_host, "127.0.0.1");
    assert_int_equal(S.rdzv_port, 5555);
    assert_string_equal(S.from, "--nnodes, --node-rank, --rdzv");

    /* flags win over a PyTorchJob env, whose job id is kept */
    const char *pt[] = {PT_WORKER1, NULL};
    f.rdzv = NULL;
    assert_int_equal(detect_f(&f, pt), BT_OK);
    assert_int_equal(S.source, BT_SPEC_FLAGS);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 2);
    assert_string_equal(S.job_id, "pt");
    assert_string_equal(S.rdzv_host, "pt-master-0");
    assert_non_null(strstr(S.from, "--node-rank"));
    assert_non_null(strstr(S.from, "RANK"));
    /* an explicit source keeps its name; flags still win */
    f.source = BT_SPEC_PYTORCHJOB;
    f.nnodes = -1;
    assert_int_equal(detect_f(&f, pt), BT_OK);
    assert_int_equal(S.source, BT_SPEC_PYTORCHJOB);
    assert_int_equal(S.node_rank, 1);
    assert_int_equal(S.nnodes, 3);

    f = noflags();
    f.nnodes = 2;
    f.node_rank = 0;
    EXPECT_BAD(detect_f(&f, none), "--nnodes 2", "--rdzv");
    f.node_rank = -1;
    f.rdzv = "h:1";
    EXPECT_BAD(detect_f(&f, none), "--node-rank");
    f.node_rank = 2;
    EXPECT_BAD(detect_f(&f, none), "node rank 2", "2 node");
    f.node_rank = 1;
    f.rdzv = "h:0";
    EXPECT_BAD(detect_f(&f, none), "port 0");
    f.rdzv = "h";
    EXPECT_BAD(detect_f(&f, none), "--rdzv='h'", "no port");
    f = noflags();
    f.nnodes = 0;
    EXPECT_BAD(detect_f(&f, none), "--nnodes 0");
    /* source FLAGS: the env is not read, but BATON_JOB_ID still names the job */
    const char *pt_id[] = {PT_WORKER1, "BATON_JOB_ID=mine", NULL};
    f = noflags();
    f.source = BT_SPEC_FLAGS;
    assert_int_equal(detect_f(&f, pt_id), BT_OK);
    assert_int_equal(S.source, BT_SPEC_FLAGS);
    assert_int_equal(S.nnodes, 1);
    assert_int_equal(S.node_rank, 0);
    assert_string_equal(S.job_id, "mine");
    assert_string_equal(S.rdzv_host, "127.0.0.1");
}

static void test_parse_flags(void **state)
{
    (void)state;
    char *argv[] = {"spec", "--spec", "tfjob", "-n",          "auto", "--nnodes=3", "--node-rank",
                    "2",    "--rdzv", "h:5",   "--rdzv-port", "77",   "--json"};
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    struct bt__spec_flags f = noflags();
    struct bt__err err = {0};
    int i;
    for (i = 1; i < argc - 1; i++)
        assert_int_equal(bt__spec_parse_flag(&f, argc, argv, &i, &err), 1);
    assert_int_equal(bt__spec_parse_flag(&f, argc, argv, &i, &err), 0);
    assert_int_equal(f.source, BT_SPEC_TFJOB);
    assert_int_equal(f.nproc_per_node, 0);
    assert_int_equal(f.nnodes, 3);
    assert_int_equal(f.node_rank, 2);
    assert_string_equal(f.rdzv, "h:5");
    assert_int_equal(f.rdzv_port, 77);

    char *bad1[] = {"spec", "--nnodes", "0"};
    i = 1;
    assert_int_equal(bt__spec_parse_flag(&f, 3, bad1, &i, &err), -1);
    assert_non_null(strstr(err.msg, "--nnodes '0'"));
    char *bad2[] = {"spec", "--spec", "k8s"};
    memset(&err, 0, sizeof(err));
    i = 1;
    assert_int_equal(bt__spec_parse_flag(&f, 3, bad2, &i, &err), -1);
    assert_non_null(strstr(err.msg, "--spec 'k8s'"));
    char *bad3[] = {"spec", "-n"};
    memset(&err, 0, sizeof(err));
    i = 1;
    assert_int_equal(bt__spec_parse_flag(&f, 2, bad3, &i, &err), -1);
    assert_non_null(strstr(err.msg, "-n needs a value"));
    char *bad4[] = {"spec", "-n", "4k"};
    memset(&err, 0, sizeof(err));
    i = 1;
    assert_int_equal(bt__spec_parse_flag(&f, 3, bad4, &i, &err), -1);

    assert_int_equal(bt__spec_source_parse("pytorchjob"), BT_SPEC_PYTORCHJOB);
    assert_int_equal(bt__spec_source_parse("trainer"), BT_SPEC_TRAINER_V2);
    assert_int_equal(bt__spec_source_parse("jaxjob"), BT_SPEC_JAXJOB);
    assert_int_equal(bt__spec_source_parse("flags"), -1);
    assert_int_equal(bt__spec_source_parse("nope"), -1);
    assert_string_equal(bt__spec_source_name(BT_SPEC_INDEXED), "indexed");
    assert_string_equal(bt__role_name(BT_ROLE_EVALUATOR), "evaluator");
}

static void test_json(void **state)
{
    (void)state;
    const char *env[] = {TF_CONFIG_FOR("worker", 1), NULL};
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(detect(env), BT_OK);
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    bt__spec_print_json(&S, out);
    fclose(out);
    assert_non_null(strstr(buf, "{\"source\":\"tfjob\",\"job_id\":\"mnist\",\"role\":\"worker\","
                                "\"node_rank\":2,\"nnodes\":3,"));
    assert_non_null(strstr(buf, "\"rdzv_host\":\"mnist-chief-0.default.svc\",\"rdzv_port\":2223"));
    assert_non_null(strstr(buf, "\"tf_cluster\":\"{\\\"chief\\\":"));
    assert_non_null(strstr(buf, "\"ps_hosts\":[\"mnist-ps-0.default.svc:2222\"]"));
    assert_int_equal(buf[len - 1], '\n');
    assert_true(strchr(buf, '\n') == buf + len - 1); /* one line */
    free(buf);
    buf = NULL;
    out = open_memstream(&buf, &len);
    bt__spec_print(&S, out);
    fclose(out);
    assert_non_null(strstr(buf, "node rank       2 of 3 node(s)"));
    assert_non_null(strstr(buf, "from            TF_CONFIG"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorchjob_worker1),
        cmocka_unit_test(test_pytorchjob_nproc4),
        cmocka_unit_test(test_pytorchjob_rdzv_port_flag),
        cmocka_unit_test(test_pytorchjob_elastic),
        cmocka_unit_test(test_pytorchjob_worker_only_plain),
        cmocka_unit_test(test_pytorchjob_bad),
        cmocka_unit_test(test_tf_worker),
        cmocka_unit_test(test_tf_chief),
        cmocka_unit_test(test_tf_ps_and_evaluator),
        cmocka_unit_test(test_tf_no_chief_and_master),
        cmocka_unit_test(test_tf_sparse),
        cmocka_unit_test(test_tf_bad),
        cmocka_unit_test(test_tf_mutations),
        cmocka_unit_test(test_mpi),
        cmocka_unit_test(test_slurm_nodelist),
        cmocka_unit_test(test_slurm),
        cmocka_unit_test(test_jaxjob),
        cmocka_unit_test(test_trainer_v2),
        cmocka_unit_test(test_indexed),
        cmocka_unit_test(test_standalone),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_parse_flags),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
