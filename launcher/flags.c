/* flags.c: the table of `baton run`'s flags (flags.h), their one parser and their usage lines.
 *
 * Each row names the flag, its value, the commands that take it, how the value is checked
 * (kind and range) and where it goes (an offset into struct bt__spec_flags for the spec
 * flags, into struct bt__run_opts for the rest). Integers are strict decimal (no sign, no
 * k/M suffix): they count nodes, workers and restarts, not bytes.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/param.h"
#include "launcher/flags.h"

enum kind {
    K_COUNT,    /* int in [min, max], or "auto" (stored as 0) */
    K_INT,      /* int in [min, max] */
    K_SECONDS,  /* double in [min, 1e7]; min in milliseconds */
    K_SOURCE,   /* a --spec source name */
    K_ENDPOINT, /* HOST:PORT, port 1..65535 (the string is kept) */
    K_DIR,      /* a non-empty path (the string is kept): a folder or a file */
    K_BIND,     /* none|core|numa|gpu */
    K_OFF,      /* no value: sets an int to 0 */
    K_NNODES,   /* N, or MIN:MAX (elastic): nnodes = MAX, nnodes_min = MIN */
    K_ON,       /* no value: sets an int to 1 */
};

struct flag {
    const char *name, *alias; /* alias: a one-letter form, or NULL */
    const char *metavar;      /* NULL for K_OFF */
    unsigned cmds;
    enum kind kind;
    int min, max;
    size_t off;       /* in struct bt__spec_flags (BT_FLAGS_SPEC) or struct bt__run_opts */
    const char *help; /* '\n' starts a continuation line */
};

#define SF(f) offsetof(struct bt__spec_flags, f)
#define RO(f) offsetof(struct bt__run_opts, f)
#define SPEC (BT_FLAGS_SPEC | BT_FLAGS_RUN)
#define RUN BT_FLAGS_RUN

/* Ranges: `baton spec` shows what `baton run` would derive, so both take what run takes.
 * -n stops at 4096 workers per node like `baton topo -n`; a node rank is below --nnodes. */
static const struct flag flags[] = {
    {"--nproc-per-node", "-n", "N|auto", SPEC, K_COUNT, 1, 4096, SF(nproc_per_node),
     "workers on this node (auto: one per GPU, else\n"
     "one per CPU; also torchrun's cpu and gpu)"},
    {"--nnodes", NULL, "N|MIN:MAX", SPEC, K_NNODES, 1, 1 << 20, SF(nnodes),
     "nodes in the job; MIN:MAX: elastic (docs/elastic.md)"},
    {"--node-rank", NULL, "R", SPEC, K_INT, 0, (1 << 20) - 1, SF(node_rank),
     "this node's rank (0..N-1); node 0 hosts the store"},
    {"--rdzv", NULL, "HOST:PORT", SPEC, K_ENDPOINT, 0, 0, SF(rdzv), "node 0's store endpoint"},
    {"--rdzv-port", NULL, "P", SPEC, K_INT, 0, 65535, SF(rdzv_port),
     "the store's port (default: the master's port + 1)"},
    {"--spec", NULL, "SRC", SPEC, K_SOURCE, 0, 0, SF(source), "where the cluster spec comes from:"},
    {"--max-restarts", NULL, "K", RUN, K_INT, 0, 1000000, RO(max_restarts),
     "restart all workers after a failure, up to K times"},
    {"--restart-backoff", NULL, "SEC", RUN, K_SECONDS, 0, 0, RO(restart_backoff_s),
     "wait SEC before the first restart, doubling for\n"
     "each next one up to 30 s (1; 0: at once)"},
    {"--join-timeout", NULL, "SEC", RUN, K_SECONDS, 1, 0, RO(join_timeout_s),
     "wait this long for the store and the nodes (300)"},
    {"--rdzv-backend", NULL, "c10d|static|etcd", RUN, K_DIR, 0, 0, RO(rdzv_backend),
     "c10d (or static): node 0 hosts the store (default);\netcd: the rendezvous lives in etcd (docs/elastic.md)"},
    {"--rdzv-endpoint", NULL, "HOST:PORT[,...]", RUN, K_DIR, 0, 0, RO(rdzv_endpoint),
     "etcd: its members; c10d: as --rdzv"},
    {"--rdzv-last-call", NULL, "SEC", RUN, K_SECONDS, 0, 0, RO(last_call_s),
     "elastic: once MIN nodes joined, wait SEC for more (5)"},
    {"--grace", NULL, "SEC", RUN, K_SECONDS, 0, 0, RO(grace_s),
     "SIGTERM, then SIGKILL after SEC (10)"},
    {"--log-dir", NULL, "DIR", RUN, K_DIR, 0, 0, RO(log_dir),
     "also write each rank's output to DIR/rank.<r>.log"},
    {"--no-tag-output", NULL, NULL, RUN, K_OFF, 0, 0, RO(tag_output),
     "no [rank] prefix (without --log-dir the workers\n"
     "write straight to baton's stdout and stderr)"},
    {"--ps", NULL, "N", RUN, K_INT, 0, BT_SPEC_MAX_PS, RO(nps),
     "start N parameter servers on node 0 (`baton ps`);\n"
     "workers get BATON_PS_SERVERS=N (same N on every node)"},
    {"--token-file", NULL, "FILE", RUN, K_DIR, 0, 0, RO(token_file),
     "the job's secret, the same file on every node\n"
     "(mode 600; else BATON_TOKEN or BATON_TOKEN_FILE)"},
    {"--metrics-port", NULL, "PORT", RUN, K_INT, 0, 65535, RO(metrics_port),
     "serve Prometheus metrics on every address's\n"
     "PORT at /metrics (0: any free port, printed)"},
    {"--bind", NULL, "MODE", RUN, K_BIND, 0, 0, RO(bind),
     "none|core|numa|gpu: pin each worker by the node's\n"
     "topology (see `baton topo`); gpu also sets\n"
     "CUDA_VISIBLE_DEVICES (default none)"},
    /* torchrun's own flags (launcher/run_torch.c; docs/pytorch.md has the table) */
    {"--rdzv-id", NULL, "ID", RUN, K_DIR, 0, 0, RO(torch.rdzv_id),
     "the job's id (TORCHELASTIC_RUN_ID, BATON_JOB_ID)"},
    {"--standalone", NULL, NULL, RUN, K_ON, 0, 0, RO(torch.standalone),
     "one node, a random run id (torchrun)"},
    {"--master-addr", NULL, "HOST", RUN, K_DIR, 0, 0, RO(torch.master_addr),
     "MASTER_ADDR for the workers; the store at\n"
     "--master-port + 1 unless --rdzv says"},
    {"--master-port", NULL, "P", RUN, K_INT, 1, 65534, RO(torch.master_port),
     "MASTER_PORT for the workers"},
    {"--role", NULL, "NAME", RUN, K_DIR, 0, 0, RO(torch.role), "ROLE_NAME (default: default)"},
    {"--module", "-m", NULL, RUN, K_ON, 0, 0, RO(torch.module),
     "PROGRAM is a Python module: python3 -u -m PROGRAM"},
    {"--no-python", NULL, NULL, RUN, K_ON, 0, 0, RO(torch.no_python),
     "run a .py PROGRAM directly, not under python3"},
    {"--run-path", NULL, NULL, RUN, K_ON, 0, 0, RO(torch.run_path),
     "run the .py PROGRAM with runpy.run_path"},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* One line in err: "NAME 'VALUE': why". Returns -1. */
static int bad(struct bt__err *err, const char *name, const char *v, const char *why)
{
    bt__err_set(err, BT_ERR_INVALID_USAGE, "%s '%s': %s", name, v, why);
    return -1;
}

static int set_int(const struct flag *f, const char *name, const char *v, int *out,
                   struct bt__err *err)
{
    int64_t x;
    char why[64];
    if (f->kind == K_COUNT && !strcmp(v, "auto"))
        return *out = 0, 1;
    if (f->kind == K_COUNT && !strcmp(v, "gpu")) /* torchrun's: resolved by run.c */
        return *out = BT_FLAGS_NPROC_GPU, 1;
    if (f->kind == K_COUNT && !strcmp(v, "cpu")) { /* torchrun's: os.cpu_count() */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return *out = n > 0 ? (n < f->max ? (int)n : f->max) : 1, 1;
    }
    if (!*v || strspn(v, "0123456789") != strlen(v) || bt__parse_int(v, &x) != 0 || x < f->min ||
        x > f->max) {
        snprintf(why, sizeof(why), "want %san integer in %d..%d",
                 f->kind == K_COUNT ? "auto, cpu, gpu or " : "", f->min, f->max);
        return bad(err, name, v, why);
    }
    return *out = (int)x, 1;
}

/* N or MIN:MAX into the spec flags' nnodes (MAX) and nnodes_min (MIN; 0 for plain N). */
static int set_nnodes(const struct flag *f, const char *name, const char *v, int *dst,
                      struct bt__err *err)
{
    struct bt__spec_flags *sf = (struct bt__spec_flags *)((char *)dst - f->off);
    const char *colon = strchr(v, ':');
    char lo[16];
    if (!colon)
        return sf->nnodes_min = 0, set_int(f, name, v, dst, err);
    snprintf(lo, sizeof(lo), "%.*s", (int)(colon - v), v);
    if (!*lo || strspn(lo, "0123456789") != strlen(lo) || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return bad(err, name, v, "want N or MIN:MAX (e.g. 2:4)");
    struct bt__err e = {0};
    if (set_int(f, name, lo, &sf->nnodes_min, &e) < 0 || set_int(f, name, colon + 1, dst, &e) < 0)
        return bad(err, name, v, "want MIN:MAX with 1 <= MIN <= MAX (e.g. 2:4)");
    if (sf->nnodes_min > *dst)
        return bad(err, name, v, "MIN exceeds MAX; want MIN:MAX with MIN <= MAX (e.g. 2:4)");
    return 1;
}

/* Checks v as row f's value (the flag spelt name) and stores it at dst; 1, or -1. */
static int set_value(const struct flag *f, const char *name, const char *v, void *dst,
                     struct bt__err *err)
{
    char host[256], why[192];
    int port, src;
    double x;
    switch (f->kind) {
    case K_COUNT:
    case K_INT: return set_int(f, name, v, dst, err);
    case K_SECONDS:
        if (bt__parse_dbl(v, &x) != 0 || !(x >= f->min / 1000.0) || x > 1e7)
            return bad(err, name, v, "want a number of seconds");
        return *(double *)dst = x, 1;
    case K_SOURCE:
        if ((src = bt__spec_source_parse(v)) < 0) {
            memcpy(why, "want ", 5);
            bt__spec_source_list(why + 5, sizeof(why) - 5, ", ", " or ");
            return bad(err, name, v, why);
        }
        return *(enum bt__spec_source *)dst = (enum bt__spec_source)src, 1;
    case K_ENDPOINT:
        if (bt__parse_endpoint(v, host, sizeof(host), &port) != 0 || port <= 0)
            return bad(err, name, v, "want HOST:PORT with a port in 1..65535");
        return *(const char **)dst = v, 1;
    case K_DIR:
        if (!*v)
            return bad(err, name, v, "empty path");
        return *(const char **)dst = v, 1;
    case K_BIND:
        return bt__bind_parse(v, dst) == 0 ? 1 : bad(err, name, v, "want none, core, numa or gpu");
    case K_OFF: return *(int *)dst = 0, 1;
    case K_ON: return *(int *)dst = 1, 1;
    case K_NNODES: return set_nnodes(f, name, v, dst, err);
    }
    return -1;
}

/* a's name (before any '=') with torchrun's underscores as dashes (--nproc_per_node) into
 * out (cap bytes); returns its length. */
static size_t dashed(const char *a, char *out, size_t cap)
{
    size_t len = strcspn(a, "=");
    len = len < cap ? len : cap - 1;
    for (size_t k = 0; k < len; k++)
        out[k] = k >= 2 && a[k] == '_' ? '-' : a[k];
    out[len] = '\0';
    return len;
}

/* The row argv's flag a names (with its value's start in *v when attached), or NULL. */
static const struct flag *lookup(unsigned cmds, const char *arg, const char **v)
{
    const char *eq = strchr(arg, '=');
    char a[64];
    size_t len = dashed(arg, a, sizeof(a));
    if (len >= sizeof(a) - 1)
        return NULL;
    for (size_t k = 0; k < NFLAGS; k++) {
        const struct flag *f = &flags[k];
        if (!(f->cmds & cmds))
            continue;
        if ((strlen(f->name) == len && !strncmp(a, f->name, len)) ||
            (f->alias && strlen(f->alias) == len && !strncmp(a, f->alias, len))) {
            *v = eq ? eq + 1 : NULL;
            return f;
        }
        if (f->alias && f->kind != K_ON && !eq && !strncmp(arg, f->alias, 2) && arg[2]) {
            *v = arg + 2; /* -n4 */
            return f;
        }
    }
    return NULL;
}

int bt__flags_parse(unsigned cmds, struct bt__spec_flags *sf, struct bt__run_opts *ro, int argc,
                    char **argv, int *i, struct bt__err *err)
{
    const char *v = NULL;
    const struct flag *f = lookup(ro ? cmds : cmds & BT_FLAGS_SPEC, argv[*i], &v);
    if (!f)
        return 0;
    const char *shown = f->alias && !strncmp(argv[*i], f->alias, 2) ? f->alias : f->name;
    if ((f->kind == K_OFF || f->kind == K_ON) && v)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s takes no value", f->name), -1;
    if (f->kind != K_OFF && f->kind != K_ON && !v) {
        if (*i + 1 >= argc)
            return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s needs a value", shown), -1;
        v = argv[++*i];
    }
    void *dst = (f->cmds & BT_FLAGS_SPEC) ? (char *)sf + f->off : (char *)ro + f->off;
    return set_value(f, shown, v ? v : "", dst, err);
}

/* Appends one usage row: "  -n, --name META" padded to column 31, then the help lines. */
static size_t usage_row(const struct flag *f, char *out, size_t cap)
{
    char left[64], list[160];
    size_t n;
    snprintf(left, sizeof(left), "  %s%s%s%s", f->alias ? f->alias : "", f->alias ? ", " : "    ",
             f->name, f->metavar ? " " : "");
    snprintf(left + strlen(left), sizeof(left) - strlen(left), "%s", f->metavar ? f->metavar : "");
    n = (size_t)snprintf(out, cap, "%-29s  ", left);
    for (const char *h = f->help; *h && n < cap;) {
        size_t l = strcspn(h, "\n");
        n += (size_t)snprintf(out + n, cap > n ? cap - n : 0, "%.*s\n", (int)l, h);
        h += l + (h[l] == '\n');
        if (*h && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%31s", "");
    }
    if (f->kind == K_SOURCE && n < cap) {
        bt__spec_source_list(list, sizeof(list), "|", "|");
        n += (size_t)snprintf(out + n, cap - n, "%31s%s\n", "", list);
    }
    return n;
}

/* Levenshtein distance of a and b (each shorter than 64 bytes). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

const char *bt__flags_nearest(unsigned cmds, const char *arg)
{
    char a[64];
    const char *best = NULL;
    size_t bd = (size_t)-1;
    dashed(arg, a, sizeof(a));
    for (size_t k = 0; k < NFLAGS; k++) {
        size_t d = distance(a, flags[k].name);
        if ((flags[k].cmds & cmds) && d < bd)
            bd = d, best = flags[k].name;
    }
    return bd <= strlen(a) / 2 ? best : NULL;
}

void bt__flags_usage(unsigned cmds, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t k = 0; k < NFLAGS && n < cap; k++)
        if (flags[k].cmds & cmds)
            n += usage_row(&flags[k], out + n, cap - n);
}
