/* spec.c: cluster-spec detection, the driver and the helpers every source shares.
 *
 * bt__spec_detect() works in four steps:
 *   1. pick a source: --spec names one; auto tries the table below in order and falls back to
 *      a standalone single-node job;
 *   2. the source's fill() derives the spec from its env (spec_pytorch.c, spec_tf.c, ...);
 *   3. the flags are laid over it (flag > env; a flag that contradicts the env wins with a
 *      warning). In auto mode any of --nnodes/--node-rank/--rdzv makes the source FLAGS, but
 *      what the env said (job id, the rest of the topology) is still used where no flag is;
 *   4. world size and first rank are computed and the result is checked as a whole.
 * Nothing here prints to stdout or exits; errors are one line in err, BT_ERR_INVALID_USAGE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "launcher/spec_impl.h"

static const struct bt__spec_source_ops standalone_ops;

/* Auto mode tries these in order. */
static const struct bt__spec_source_ops *const auto_order[] = {
    &bt__spec_pytorch_ops, &bt__spec_tf_ops,      &bt__spec_mpi_ops,     &bt__spec_slurm_ops,
    &bt__spec_jax_ops,     &bt__spec_trainer_ops, &bt__spec_indexed_ops,
};
#define N_AUTO (sizeof(auto_order) / sizeof(auto_order[0]))

/* The --spec names, in the order `baton run --help` lists them; an alias names the source
 * of the entry before it. FLAGS is what detection reports, never a --spec value. */
static const struct {
    enum bt__spec_source source;
    const char *name;
    int alias;
} names[] = {
    {BT_SPEC_AUTO, "auto", 0},
    {BT_SPEC_STANDALONE, "standalone", 0},
    {BT_SPEC_PYTORCHJOB, "pytorchjob", 0},
    {BT_SPEC_TFJOB, "tfjob", 0},
    {BT_SPEC_MPI, "mpi", 0},
    {BT_SPEC_SLURM, "slurm", 0},
    {BT_SPEC_INDEXED, "indexed", 0},
    {BT_SPEC_JAXJOB, "jaxjob", 0},
    {BT_SPEC_TRAINER_V2, "trainer", 0},
    {BT_SPEC_TRAINER_V2, "trainer-v2", 1},
    {BT_SPEC_TRAINER_V2, "trainjob", 1},
    {BT_SPEC_FLAGS, "flags", 0},
};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

const char *bt__spec_source_name(enum bt__spec_source src)
{
    for (size_t i = 0; i < N_NAMES; i++)
        if (names[i].source == src)
            return names[i].name;
    return "unknown";
}

int bt__spec_source_parse(const char *s)
{
    if (!s)
        return -1;
    for (size_t i = 0; i < N_NAMES; i++)
        if (names[i].source != BT_SPEC_FLAGS && !strcmp(names[i].name, s))
            return (int)names[i].source;
    return -1;
}

void bt__spec_source_list(char *out, size_t cap, const char *sep, const char *last)
{
    size_t n = 0, count = 0, k = 0;
    for (size_t i = 0; i < N_NAMES; i++)
        count += !names[i].alias && names[i].source != BT_SPEC_FLAGS;
    out[0] = '\0';
    for (size_t i = 0; i < N_NAMES && n < cap; i++) {
        if (names[i].alias || names[i].source == BT_SPEC_FLAGS)
            continue;
        const char *s = k == 0 ? "" : k + 1 == count ? last : sep;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", s, names[i].name);
        k++;
    }
}

const char *bt__role_name(enum bt__role role)
{
    switch (role) {
    case BT_ROLE_WORKER: return "worker";
    case BT_ROLE_CHIEF: return "chief";
    case BT_ROLE_PS: return "ps";
    case BT_ROLE_EVALUATOR: return "evaluator";
    }
    return "unknown";
}

/* ---- helpers shared by the sources ---- */

void bt__spec_copy(char *dst, size_t n, const char *src)
{
    if (!n)
        return;
    size_t len = src ? strnlen(src, n - 1) : 0;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

const char *bt__spec_env(struct bt__spec_ctx *c, const char *name)
{
    const char *v = c->getenv_fn ? c->getenv_fn(name, c->arg) : getenv(name);
    return v && *v ? v : NULL;
}

void bt__spec_from(struct bt__spec *spec, const char *what)
{
    size_t len = strlen(spec->from), wl = strlen(what);
    const char *p = spec->from;
    while ((p = strstr(p, what))) { /* already listed? */
        if ((p == spec->from || p[-1] == ' ') && (p[wl] == ',' || p[wl] == '\0'))
            return;
        p += wl;
    }
    if (len + wl + 3 >= sizeof(spec->from))
        return;
    snprintf(spec->from + len, sizeof(spec->from) - len, "%s%s", len ? ", " : "", what);
}

const char *bt__spec_use(struct bt__spec_ctx *c, const char *name)
{
    const char *v = bt__spec_env(c, name);
    if (v)
        bt__spec_from(c->spec, name);
    return v;
}

static int parse_dec(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 12)
        return -1;
    *out = strtoll(s, NULL, 10);
    return 0;
}

int bt__spec_int(struct bt__spec_ctx *c, const char *name, const char *val, int min, int max,
                 int *out)
{
    long long v;
    if (parse_dec(val, &v) != 0)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s' is not an integer", name, val);
    if (v < min)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s=%s is out of range: must be >= %d",
                           name, val, min);
    if (v > max)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s=%s is out of range: must be <= %d",
                           name, val, max);
    *out = (int)v;
    return BT_OK;
}

int bt__spec_env_int(struct bt__spec_ctx *c, const char *name, int min, int max, int *out,
                     const char *required_why)
{
    const char *v = bt__spec_use(c, name);
    if (!v) {
        if (required_why)
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s is not set (%s)", name,
                               required_why);
        return BT_OK;
    }
    return bt__spec_int(c, name, v, min, max, out);
}

int bt__spec_hostport(struct bt__spec_ctx *c, const char *what, const char *val, char *host,
                      size_t hostsz, int *port, int port_required)
{
    const char *colon, *h = val;
    size_t hl;
    if (val[0] == '[') { /* [v6]:port */
        const char *rb = strchr(val, ']');
        if (!rb)
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s': missing ']'", what, val);
        h = val + 1;
        hl = (size_t)(rb - h);
        colon = rb[1] == ':' ? rb + 1 : NULL;
        if (rb[1] && !colon)
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s': expected [HOST]:PORT", what,
                               val);
    } else {
        colon = strrchr(val, ':');
        hl = colon ? (size_t)(colon - val) : strlen(val);
        if (colon && memchr(val, ':', hl))
            return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                               "%s='%s': write an IPv6 address as [ADDR]:PORT", what, val);
    }
    if (hl == 0 || hl >= hostsz)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s': %s host name", what, val,
                           hl ? "too long a" : "empty");
    if (!colon && port_required)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "%s='%s' has no port; expected HOST:PORT",
                           what, val);
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon)
        return bt__spec_int(c, what, colon + 1, 0, 65535, port);
    return BT_OK;
}

int bt__spec_store_port(struct bt__spec_ctx *c, const char *what, int base, int *out)
{
    if (c->flags->rdzv_port >= 0) {
        *out = c->flags->rdzv_port;
        return BT_OK;
    }
    if (base >= 65535)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "%s=%d leaves no port for the store (it listens on %s+1); "
                           "pass --rdzv-port",
                           what, base, what);
    *out = base + 1;
    return BT_OK;
}

int bt__spec_hostname(struct bt__spec_ctx *c, char *buf, size_t n)
{
    const char *h = bt__spec_env(c, "HOSTNAME");
    if (h) {
        bt__spec_from(c->spec, "HOSTNAME");
        bt__spec_copy(buf, n, h);
        return 0;
    }
    if (c->getenv_fn || gethostname(buf, n) != 0)
        return -1;
    buf[n - 1] = '\0';
    bt__spec_from(c->spec, "hostname");
    return 0;
}

void bt__spec_first_label(const char *host, char *out, size_t n)
{
    size_t len = strcspn(host, ".:");
    if (len >= n)
        len = n - 1;
    memcpy(out, host, len);
    out[len] = '\0';
}

int bt__spec_split_name(const char *host, const char *type, char *job, size_t jobsz, int *index)
{
    char label[BT_SPEC_HOST_MAX];
    bt__spec_first_label(host, label, sizeof(label));
    size_t len = strlen(label), tl = strlen(type), d = len;
    while (d > 0 && label[d - 1] >= '0' && label[d - 1] <= '9')
        d--;
    /* label = job "-" type "-" digits, with a non-empty job and at most 9 digits */
    if (d == len || len - d > 9 || d < tl + 3 || label[d - 1] != '-' ||
        memcmp(label + d - 1 - tl, type, tl) != 0 || label[d - 2 - tl] != '-')
        return -1;
    *index = atoi(label + d);
    size_t jl = d - 2 - tl;
    if (jl >= jobsz)
        jl = jobsz - 1;
    memcpy(job, label, jl);
    job[jl] = '\0';
    return 0;
}

void bt__spec_set_job(struct bt__spec_ctx *c, const char *id)
{
    const char *own = bt__spec_use(c, "BATON_JOB_ID");
    bt__spec_copy(c->spec->job_id, sizeof(c->spec->job_id), own ? own : id ? id : "");
}

int bt__spec_baton_rdzv(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    const char *ep = bt__spec_use(c, "BATON_RDZV");
    if (ep) {
        BT_CHECK(bt__spec_hostport(c, "BATON_RDZV", ep, s->rdzv_host, sizeof(s->rdzv_host),
                                   &s->rdzv_port, 1));
        return 1;
    }
    const char *h = bt__spec_use(c, "BATON_RDZV_HOST");
    if (!h)
        return 0;
    bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), h);
    s->rdzv_port = BT_SPEC_DEFAULT_MASTER_PORT + 1;
    BT_CHECK(bt__spec_env_int(c, "BATON_RDZV_PORT", 0, 65535, &s->rdzv_port, NULL));
    return 1;
}

static int topology_flags(const struct bt__spec_flags *f)
{
    return f->nnodes > 0 || f->node_rank >= 0 || f->rdzv;
}

/* ---- standalone: one node, the store on 127.0.0.1 at a port the kernel picks ---- */

static int standalone_present(struct bt__spec_ctx *c)
{
    (void)c;
    return 1;
}

static int standalone_fill(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    s->nnodes = 1;
    s->node_rank = 0;
    bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), "127.0.0.1");
    s->rdzv_port = 0;
    /* FLAGS without an env: a job of several nodes, all with the same default id */
    int flags_job = c->flags->source == BT_SPEC_FLAGS ||
                    (c->flags->source == BT_SPEC_AUTO && topology_flags(c->flags));
    bt__spec_set_job(c, flags_job ? "baton" : "standalone");
    return BT_OK;
}

static const struct bt__spec_source_ops standalone_ops = {BT_SPEC_STANDALONE, standalone_present,
                                                          standalone_fill};

/* ---- the driver ---- */

static void spec_init(struct bt__spec *s)
{
    memset(s, 0, sizeof(*s));
    s->role = BT_ROLE_WORKER;
    s->node_rank = -1;
    s->nnodes = 0;
    s->nproc_per_node = -1; /* the source sets it when its env says; else auto */
    s->first_rank = -1;
    s->tf_task_index = -1;
    s->max_restarts = -1;
}

static const struct bt__spec_source_ops *find_ops(enum bt__spec_source src)
{
    if (src == BT_SPEC_STANDALONE)
        return &standalone_ops;
    for (size_t i = 0; i < N_AUTO; i++)
        if (auto_order[i]->source == src)
            return auto_order[i];
    return NULL;
}

static const struct bt__spec_source_ops *choose(struct bt__spec_ctx *c)
{
    if (c->flags->source == BT_SPEC_FLAGS) /* flags only: the env is not read */
        return &standalone_ops;
    if (c->flags->source != BT_SPEC_AUTO)
        return find_ops(c->flags->source);
    for (size_t i = 0; i < N_AUTO; i++)
        if (auto_order[i]->present(c))
            return auto_order[i];
    return &standalone_ops;
}

static int check_flags(struct bt__spec_ctx *c)
{
    const struct bt__spec_flags *f = c->flags;
    if (f->nnodes == 0 || f->nnodes < -1)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--nnodes %d: must be >= 1", f->nnodes);
    if (f->node_rank < -1)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--node-rank %d: must be >= 0",
                           f->node_rank);
    if (f->nproc_per_node < -1)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "-n %d: must be >= 1 (or auto)",
                           f->nproc_per_node);
    if (f->rdzv_port < -1 || f->rdzv_port > 65535)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--rdzv-port %d: must be in 0..65535",
                           f->rdzv_port);
    if (!find_ops(f->source) && f->source != BT_SPEC_AUTO && f->source != BT_SPEC_FLAGS)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--spec: unknown source %d",
                           (int)f->source);
    return BT_OK;
}

/* Flag > env. A flag that changes what a detected env said is worth a warning: the two
 * disagree, and the user may have copied a command line from another job. */
static void overlay_int(struct bt__spec_ctx *c, const char *flag, int val, int *field, int had_env)
{
    if (val < 0)
        return;
    if (had_env && *field >= 0 && *field != val)
        BT_WARN(LAUNCH, "%s %d overrides %d from the %s env", flag, val, *field,
                bt__spec_source_name(c->spec->source));
    *field = val;
    bt__spec_from(c->spec, flag);
}

static int overlay_flags(struct bt__spec_ctx *c, int had_env)
{
    const struct bt__spec_flags *f = c->flags;
    struct bt__spec *s = c->spec;
    if (f->nnodes > 0 && f->nnodes_min > 0 && f->nnodes_min < f->nnodes) {
        s->elastic = 1; /* --nnodes MIN:MAX */
        s->nnodes_min = f->nnodes_min;
        s->nnodes_max = f->nnodes;
    } else if (f->nnodes > 0 && s->elastic && s->nnodes != f->nnodes) {
        s->elastic = 0; /* an explicit node count ends elasticity */
        s->nnodes_min = s->nnodes_max = f->nnodes;
    }
    overlay_int(c, "--nnodes", f->nnodes, &s->nnodes, had_env);
    overlay_int(c, "--node-rank", f->node_rank, &s->node_rank, had_env);
    if (f->nproc_per_node >= 0) {
        s->nproc_per_node = f->nproc_per_node;
        s->nproc_cpu = f->nproc_per_node == 0;
        bt__spec_from(s, "-n");
    }
    if (f->rdzv) {
        char host[BT_SPEC_HOST_MAX];
        int port = -1;
        BT_CHECK(bt__spec_hostport(c, "--rdzv", f->rdzv, host, sizeof(host), &port, 1));
        if (had_env && s->rdzv_host[0] && (strcmp(host, s->rdzv_host) || port != s->rdzv_port))
            BT_WARN(LAUNCH, "--rdzv %s overrides %s:%d from the %s env", f->rdzv, s->rdzv_host,
                    s->rdzv_port, bt__spec_source_name(s->source));
        bt__spec_copy(s->rdzv_host, sizeof(s->rdzv_host), host);
        s->rdzv_port = port;
        bt__spec_from(s, "--rdzv");
    }
    if (f->rdzv_port >= 0) {
        s->rdzv_port = f->rdzv_port;
        bt__spec_from(s, "--rdzv-port");
    }
    return BT_OK;
}

/* FLAGS source without an env: what the flags leave open gets single-node defaults, which
 * are only right when there is one node. */
static int flags_defaults(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    if (s->nnodes > 1 && !c->flags->rdzv)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "--nnodes %d needs --rdzv HOST:PORT (node 0's address)", s->nnodes);
    if (s->nnodes > 1 && c->flags->node_rank < 0)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "--nnodes %d needs --node-rank R (0..%d)",
                           s->nnodes, s->nnodes - 1);
    if (s->nnodes < 1)
        s->nnodes = 1;
    return BT_OK;
}

static int finish(struct bt__spec_ctx *c)
{
    struct bt__spec *s = c->spec;
    int ranked = s->role == BT_ROLE_WORKER || s->role == BT_ROLE_CHIEF;
    int nproc = s->nproc_per_node < 0 ? 0 : s->nproc_per_node; /* 0: auto, resolved by run */
    /* A ps or evaluator pod runs one process that is not a rank; the world is the workers'
     * (known here only when -n gives their count). */
    s->nproc_per_node = ranked ? nproc : 1;
    if (s->nnodes < 1)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE, "the %s env gives no node count",
                           bt__spec_source_name(s->source));
    if (ranked && !s->elastic && (s->node_rank < 0 || s->node_rank >= s->nnodes))
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "node rank %d is out of range for %d node(s) (from %s)", s->node_rank,
                           s->nnodes, s->from[0] ? s->from : "defaults");
    if (s->rdzv_port == 0 && s->nnodes > 1)
        return bt__err_set(c->err, BT_ERR_INVALID_USAGE,
                           "rendezvous port 0 (pick any) works only for one node; %d nodes need "
                           "a fixed port: pass --rdzv HOST:PORT or --rdzv-port",
                           s->nnodes);
    if (!s->nnodes_min)
        s->nnodes_min = s->nnodes_max = s->nnodes;
    int fixed = !s->elastic || s->nnodes_min == s->nnodes_max;
    s->world_size = fixed && nproc > 0 ? s->nnodes * nproc : 0;
    if (ranked && !s->elastic && nproc > 0)
        s->first_rank = s->node_rank * nproc;
    else
        s->first_rank = -1;
    if (!s->master_addr[0])
        bt__spec_copy(s->master_addr, sizeof(s->master_addr), s->rdzv_host);
    return BT_OK;
}

int bt__spec_detect(const struct bt__spec_flags *flags, bt__getenv_fn getenv_fn, void *arg,
                    struct bt__spec *spec, struct bt__err *err)
{
    static const struct bt__spec_flags none = {BT_SPEC_AUTO, -1, -1, -1, NULL, -1, 0};
    struct bt__spec_ctx c = {flags ? flags : &none, getenv_fn, arg, spec, err};
    spec_init(spec);
    BT_CHECK(check_flags(&c));
    const struct bt__spec_source_ops *ops = choose(&c);
    spec->source = ops->source;
    BT_CHECK(ops->fill(&c));
    int had_env = ops != &standalone_ops;
    BT_CHECK(overlay_flags(&c, had_env));
    if (c.flags->source == BT_SPEC_FLAGS ||
        (c.flags->source == BT_SPEC_AUTO && topology_flags(c.flags))) {
        spec->source = BT_SPEC_FLAGS;
        if (!had_env)
            BT_CHECK(flags_defaults(&c));
    }
    BT_CHECK(finish(&c));
    BT_INFO(LAUNCH, "spec: %s job '%s' node %d/%d, %d proc/node, rdzv %s:%d (from %s)",
            bt__spec_source_name(spec->source), spec->job_id, spec->node_rank, spec->nnodes,
            spec->nproc_per_node, spec->rdzv_host, spec->rdzv_port, spec->from);
    return BT_OK;
}
