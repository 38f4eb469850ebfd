/* spec_tf.c: TFJob's TF_CONFIG.
 *
 * TF_CONFIG is JSON, read with libyaml (JSON is YAML for these inputs). libyaml loads one
 * document and stops, so `{"a":1}}` would pass: a second load must find the end of the stream.
 * The operator's form:
 *   {"cluster":{"chief":["j-chief-0.ns.svc:2222"],"evaluator":[...],"ps":[...],
 *    "worker":["j-worker-0.ns.svc:2222",...]},"task":{"type":"worker","index":1},
 *    "environment":"cloud"}
 * and the sparse form (enableDynamicWorker), where a pod sees only itself among the workers:
 *   {"cluster":{"worker":{"1":"host:port"},"ps":[...]},"task":{"type":"worker","index":1}}
 *
 * Ranks: the chief (or legacy master) is node 0, worker i is node i + (number of chiefs).
 * ps and evaluator tasks are not ranks: role PS/EVALUATOR, node_rank -1, one process.
 * nnodes = chiefs + workers; the sparse form does not say how many workers there are, so it
 * needs BATON_NNODES (chief + workers) from the manifest. The store listens on chief 0's port
 * + 1 (worker 0's without a chief; in the sparse form worker 0's name is made from this
 * worker's, <job>-worker-0.<ns>.svc:<port>). The "cluster" object is kept verbatim for run.c,
 * which gives each process its own TF_CONFIG.
 *
 * JSON rules YAML does not enforce are checked here: a key appears once per object (libyaml
 * keeps both, and map_get would take the first); task.index is a number, not a string; each
 * cluster entry is a list (or, for workers, the sparse map) of "host:port" strings. Nesting
 * deeper than TF_MAX_DEPTH is refused before the document is built (libyaml's scanner slows
 * down with depth: 128 KB of `[` took seconds).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "k8s/ytree.h"
#include "launcher/spec_impl.h"

struct tf {
    yaml_document_t doc;
    const char *src;
    yaml_node_t *cluster;
    const char *type; /* this task's */
    int index;
    int sparse; /* workers given as {"i": "host:port"} */
};

#define TF_MAX_DEPTH 16 /* the operator's TF_CONFIG nests 3 deep */

#define TF_ERR(c, ...) bt__err_set((c)->err, BT_ERR_INVALID_USAGE, "TF_CONFIG: " __VA_ARGS__)

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *map_get(struct tf *t, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(&t->doc, p->key));
        if (k && !strcmp(k, key))
            return yaml_document_get_node(&t->doc, p->value);
    }
    return NULL;
}

/* The host:port of task type[index], or NULL. */
static const char *task_host(struct tf *t, const char *type, int index)
{
    yaml_node_t *l = map_get(t, t->cluster, type);
    if (l && l->type == YAML_MAPPING_NODE) {
        char key[16];
        snprintf(key, sizeof(key), "%d", index);
        return scalar(map_get(t, l, key));
    }
    if (!l || l->type != YAML_SEQUENCE_NODE || index < 0 ||
        index >= l->data.sequence.items.top - l->data.sequence.items.start)
        return NULL;
    return scalar(yaml_document_get_node(&t->doc, l->data.sequence.items.start[index]));
}

/* Tasks listed for type: a list's length; -1 for a sparse map; 0 when absent. */
static int task_count(struct tf *t, const char *type)
{
    yaml_node_t *l = map_get(t, t->cluster, type);
    if (l && l->type == YAML_MAPPING_NODE)
        return -1;
    return l && l->type == YAML_SEQUENCE_NODE
               ? (int)(l->data.sequence.items.top - l->data.sequence.items.start)
               : 0;
}

/* An error when a collection opens deeper than TF_MAX_DEPTH (k8s/ytree.c walks the events).
 * Syntax errors are left to the load that follows. */
static int check_depth(struct bt__spec_ctx *c, const char *v)
{
    size_t line = 0, offset = 0;
    if (!bt__yn_too_deep(v, strlen(v), TF_MAX_DEPTH, &line, &offset))
        return BT_OK;
    return TF_ERR(c, "nested deeper than %d levels at byte %zu", TF_MAX_DEPTH, offset);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that appears twice in one object: the first such key in sort order, or NULL. keys has
 * room for every pair of the map. */
static const char *duplicate_key(struct tf *t, yaml_node_t *map, const char **keys)
{
    size_t n = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(&t->doc, p->key));
        if (k)
            keys[n++] = k;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            return keys[i];
    return NULL;
}

/* Every object in the document: no key twice (JSON parsers disagree on which one wins). */
static int check_duplicates(struct bt__spec_ctx *c, struct tf *t)
{
    size_t most = 0;
    for (yaml_node_t *n = t->doc.nodes.start; n < t->doc.nodes.top; n++)
        if (n->type == YAML_MAPPING_NODE &&
            (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start) > most)
            most = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    const char **keys = malloc((most ? most : 1) * sizeof(*keys));
    if (!keys)
        return bt__err_set(c->err, BT_ERR_SYSTEM, "TF_CONFIG: out of memory");
    int rc = BT_OK;
    for (yaml_node_t *n = t->doc.nodes.start; rc == BT_OK && n < t->doc.nodes.top; n++) {
        const char *dup = n->type == YAML_MAPPING_NODE ? duplicate_key(t, n, keys) : NULL;
        if (dup)
            rc = TF_ERR(c, "duplicate key \"%s\" in the object at byte %zu", dup,
                        n->start_mark.index);
    }
    free(keys);
    return rc;
}

static int load(struct bt__spec_ctx *c, struct tf *t, const char *v)
{
    BT_CHECK(check_depth(c, v));
    yaml_parser_t p;
    yaml_document_t tail;
    int rc = BT_OK;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)v, strlen(v));
    if (!yaml_parser_load(&p, &t->doc)) {
        rc = TF_ERR(c, "not valid JSON: %s at byte %zu", p.problem ? p.problem : "parse error",
                    p.problem_mark.index);
        yaml_parser_delete(&p);
        return rc;
    }
    if (!yaml_parser_load(&p, &tail))
        rc = TF_ERR(c, "not valid JSON: %s at byte %zu", p.problem ? p.problem : "parse error",
                    p.problem_mark.index);
    else if (yaml_document_get_root_node(&tail))
        rc = TF_ERR(c, "not valid JSON: text after the object");
    if (rc == BT_OK)
        yaml_document_delete(&tail);
    yaml_parser_delete(&p);
    if (rc == BT_OK)
        rc = check_duplicates(c, t);
    if (rc != BT_OK)
        yaml_document_delete(&t->doc);
    return rc;
}

static int read_task(struct bt__spec_ctx *c, struct tf *t, yaml_node_t *root)
{
    static const char *const types[] = {"chief", "master", "worker", "ps", "evaluator"};
    yaml_node_t *task = map_get(t, root, "task");
    if (!task)
        return TF_ERR(c, "no \"task\" key (expected \"task\":{\"type\":...,\"index\":...})");
    if (task->type != YAML_MAPPING_NODE)
        return TF_ERR(c, "\"task\" is not an object");
    t->type = scalar(map_get(t, task, "type"));
    yaml_node_t *in = map_get(t, task, "index");
    const char *idx = scalar(in);
    if (!t->type)
        return TF_ERR(c, "\"task\" has no \"type\"");
    if (!idx)
        return TF_ERR(c, "\"task\" has no \"index\"");
    if (in->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return TF_ERR(c, "\"task.index\" is the string \"%s\"; want a number", idx);
    BT_CHECK(bt__spec_int(c, "TF_CONFIG task index", idx, 0, INT_MAX, &t->index));
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(t->type, types[i]))
            return BT_OK;
    return TF_ERR(c, "unknown task type '%s' (expected chief, master, worker, ps or evaluator)",
                  t->type);
}

/* cluster.TYPE: a list of "host:port" strings, or (workers only, the sparse form) a map of
 * index to "host:port". Anything else is named: a string would otherwise count as 0 tasks. */
static int check_entry(struct bt__spec_ctx *c, struct tf *t, yaml_node_t *l, const char *type)
{
    if (l->type == YAML_MAPPING_NODE && !strcmp(type, "worker")) {
        for (yaml_node_pair_t *p = l->data.mapping.pairs.start; p < l->data.mapping.pairs.top; p++)
            if (!scalar(yaml_document_get_node(&t->doc, p->value)))
                return TF_ERR(c, "\"cluster.worker\" holds a value that is not a \"host:port\" "
                                 "string");
        return BT_OK;
    }
    if (l->type != YAML_SEQUENCE_NODE)
        return TF_ERR(c, "\"cluster.%s\" is not a list (want [\"host:port\", ...])", type);
    for (yaml_node_item_t *it = l->data.sequence.items.start; it < l->data.sequence.items.top; it++)
        if (!scalar(yaml_document_get_node(&t->doc, *it)))
            return TF_ERR(c, "\"cluster.%s[%zu]\" is not a \"host:port\" string", type,
                          (size_t)(it - l->data.sequence.items.start));
    return BT_OK;
}

static int check_cluster(struct bt__spec_ctx *c, struct tf *t)
{
    static const char *const types[] = {"chief", "master", "worker", "ps", "evaluator"};
    if (!t->cluster)
        return TF_ERR(c, "no \"cluster\" key");
    if (t->cluster->type != YAML_MAPPING_NODE)
        return TF_ERR(c, "\"cluster\" is not an object");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        yaml_node_t *l = map_get(t, t->cluster, types[i]);
        if (l)
            BT_CHECK(check_entry(c, t, l, types[i]));
    }
    if (!task_host(t, t->type, t->index)) {
        int n = task_count(t, t->type);
        if (n < 0)
            return TF_ERR(c, "task %s:%d is not listed in the cluster", t->type, t->index);
        return TF_ERR(c, "task index %d is out of range: the cluster has %d %s task(s)", t->index,
                      n, t->type);
    }
    t->sparse = task_count(t, "worker") < 0; /* check_entry allowed a map only there */
    return BT_OK;
}

static int role_and_rank(struct bt__spec_ctx *c, struct tf *t)
{
    struct bt__spec *s = c->spec;
    int nchief = task_count(t, "chief") + task_count(t, "master");
    s->tf_task_index = t->index;
    if (!strcmp(t->type, "chief")) {
        s->role = BT_ROLE_CHIEF;
        s->node_rank = t->index;
    } else if (!strcmp(t->type, "master")) {
        s->role = BT_ROLE_CHIEF;
        s->node_rank = task_count(t, "chief") + t->index;
    } else if (!strcmp(t->type, "worker")) {
        s->node_rank = nchief + t->index;
    } else {
        s->role = !strcmp(t->type, "ps") ? BT_ROLE_PS : BT_ROLE_EVALUATOR;
        s->node_rank = -1;
    }
    if (!t->sparse) {
        s->nnodes = nchief + task_count(t, "worker");
    } else if (bt__spec_env_int(c, "BATON_NNODES", 1, INT_MAX, &s->nnodes, NULL) != BT_OK) {
        return BT_ERR_INVALID_USAGE;
    } else if (s->nnodes < 1) {
        return TF_ERR(c, "workers are given as a map (sparse form, enableDynamicWorker), which "
                         "does not say how many there are: set BATON_NNODES (chief + workers)");
    }
    if (s->nnodes < 1)
        return TF_ERR(c, "the cluster has no chief, master or worker task");
    if (s->node_rank >= s->nnodes)
        return TF_ERR(c, "task %s:%d is node %d but BATON_NNODES=%d", t->type, t->index,
                      s->node_rank, s->nnodes);
    return BT_OK;
}

/* Sparse form on a worker: only this worker is listed, but the operator's names are regular,
 * so worker 0 of <job>-worker-<i>.<ns>.svc:<port> is <job>-worker-0.<ns>.svc:<port>. */
static int derive_worker0(struct tf *t, char *out, size_t n)
{
    const char *own = task_host(t, t->type, t->index);
    char job[128];
    int idx;
    if (strcmp(t->type, "worker") || bt__spec_split_name(own, "worker", job, sizeof(job), &idx))
        return -1;
    snprintf(out, n, "%s-worker-0%s", job, own + strcspn(own, ".:"));
    return 0;
}

/* The store runs beside chief 0 (or master 0, or worker 0): its port + 1. */
static int rdzv(struct bt__spec_ctx *c, struct tf *t)
{
    struct bt__spec *s = c->spec;
    const char *h = task_host(t, "chief", 0), *what = "TF_CONFIG chief 0";
    char w0[BT_SPEC_HOST_MAX + 32];
    int port = 0;
    if (!h) {
        h = task_host(t, "master", 0);
        what = "TF_CONFIG master 0";
    }
    if (!h) {
        h = task_host(t, "worker", 0);
        what = "TF_CONFIG worker 0";
    }
    if (!h && derive_worker0(t, w0, sizeof(w0)) == 0) {
        h = w0;
        what = "TF_CONFIG worker 0 (from this task's host name)";
    }
    if (!h) {
        if (c->flags->rdzv)
            return BT_OK;
        return TF_ERR(c, "no chief and no worker 0 listed, so the rendezvous host is unknown; "
                         "pass --rdzv HOST:PORT");
    }
    BT_CHECK(bt__spec_hostport(c, what, h, s->rdzv_host, sizeof(s->rdzv_host), &port, 1));
    bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    s->master_port = port;
    return bt__spec_store_port(c, "TF_CONFIG chief/worker 0 port", port, &s->rdzv_port);
}

static int ps_and_cluster(struct bt__spec_ctx *c, struct tf *t)
{
    struct bt__spec *s = c->spec;
    int nps = task_count(t, "ps");
    if (nps > BT_SPEC_MAX_PS)
        return TF_ERR(c, "%d ps tasks; baton supports at most %d", nps, BT_SPEC_MAX_PS);
    for (int i = 0; i < nps; i++) {
        const char *h = task_host(t, "ps", i);
        if (!h || strlen(h) >= BT_SPEC_HOST_MAX)
            return TF_ERR(c, "ps task %d is not a \"host:port\" string", i);
        bt__spec_copy(s->ps_hosts[i], BT_SPEC_HOST_MAX, h);
    }
    s->nps = nps;
    size_t a = t->cluster->start_mark.index, b = t->cluster->end_mark.index;
    if (b - a >= sizeof(s->tf_cluster_json))
        return TF_ERR(c, "the \"cluster\" object is %zu bytes; baton keeps at most %zu", b - a,
                      sizeof(s->tf_cluster_json) - 1);
    memcpy(s->tf_cluster_json, t->src + a, b - a);
    s->tf_cluster_json[b - a] = '\0';
    return BT_OK;
}

/* Job name from this task's host (<job>-<type>-<i>.<ns>.svc:port), else from node 0's. */
static void job_id(struct bt__spec_ctx *c, struct tf *t)
{
    char job[128];
    int idx;
    const char *own = task_host(t, t->type, t->index);
    if (bt__spec_split_name(own, t->type, job, sizeof(job), &idx) != 0)
        bt__spec_first_label(own, job, sizeof(job));
    bt__spec_set_job(c, job);
}

static int present(struct bt__spec_ctx *c)
{
    return bt__spec_env(c, "TF_CONFIG") != NULL;
}

static int fill(struct bt__spec_ctx *c)
{
    const char *v = bt__spec_use(c, "TF_CONFIG");
    struct tf t = {.src = v};
    if (!v)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--spec tfjob: TF_CONFIG is not set");
    BT_CHECK(load(c, &t, v));
    yaml_node_t *root = yaml_document_get_root_node(&t.doc);
    int rc = BT_OK;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = TF_ERR(c, "not a JSON object");
        goto out;
    }
    t.cluster = map_get(&t, root, "cluster");
    BT_CHECK_GOTO(read_task(c, &t, root), rc, out);
    BT_CHECK_GOTO(check_cluster(c, &t), rc, out);
    BT_CHECK_GOTO(role_and_rank(c, &t), rc, out);
    BT_CHECK_GOTO(rdzv(c, &t), rc, out);
    BT_CHECK_GOTO(ps_and_cluster(c, &t), rc, out);
    job_id(c, &t);
    /* "environment" (the operator writes "cloud"), kept when it is a plain word, so the
     * per-process TF_CONFIG baton gives each worker can carry it on unescaped */
    const char *env = scalar(map_get(&t, root, "environment"));
    if (env && strspn(env, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                   strlen(env))
        bt__spec_copy(c->spec->tf_environment, sizeof(c->spec->tf_environment), env);
out:
    yaml_document_delete(&t.doc);
    return rc;
}

const struct bt__spec_source_ops bt__spec_tf_ops = {BT_SPEC_TFJOB, present, fill};
