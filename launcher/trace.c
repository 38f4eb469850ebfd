/* trace.c: flight-recorder dumps as text, their analysis, and `baton trace FILE...`.
 *
 * The analysis, communicator by communicator (the world first; each child's findings name it:
 * "... allreduce #7 on communicator c1a2b3c4 (world ranks 1, 3, 5) ..."), among the ranks
 * whose dumps describe it or hold a call of it:
 *   1. Lag. M is the highest call number any rank entered. A rank whose last entered call is
 *      below M and finished never entered the next one: "rank 3 never entered allreduce #1042
 *      (the 7 others did, 12.3 s ago); its last completed call was broadcast #1041". A rank
 *      still inside a call the others finished: "rank 3 is still in allreduce #1042 ...".
 *   2. Agreement. For every call number that several ranks recorded, the op, count, dtype,
 *      reduction and root must agree; the first call where one differs is named with the
 *      minority's values against the majority's: "ranks disagree on the count of allreduce #77
 *      (rank 2: 1000, others: 1024)".
 *   3. Otherwise, when every rank is inside the same call: "every rank is in allreduce #9
 *      (since 12.0 s)": a hang below baton (the network, a device).
 * Each check looks only at what every dump still holds (the rings are BT_FLIGHT_RING long).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cmds.h"
#include "launcher/trace.h"

#define TRACE_HEAD "# baton flight recorder 2"
#define TRACE_HEAD_V1 "# baton flight recorder 1"
#define LAG_NAMED_MAX 8            /* lagging ranks named one by one */
#define DISAGREE_MAX 3             /* disagreements named */
#define TRACE_FILE_MAX (64u << 20) /* bytes of one dump file read */

static const char *const dtype_names[] = {"float32", "float64", "float16", "bfloat16",
                                          "int32",   "int64",   "uint8"};
static const char *const redop_names[] = {"sum", "prod", "min", "max", "avg"};
static const char *const state_names[] = {"empty", "running", "done", "failed"};

#define NELEM(a) (int)(sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "-";
}

static int index_of(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return !strcmp(s, "-") ? 255 : -1;
}

static int by_start(const void *a, const void *b)
{
    const struct bt__flight_entry *x = a, *y = b;
    return x->start_ns < y->start_ns ? -1 : x->start_ns > y->start_ns;
}

/* "0" for the world, "c1a2b3c4" for a child. */
static const char *id_str(uint32_t id, char *buf, size_t n)
{
    snprintf(buf, n, id ? "c%08x" : "0", id);
    return buf;
}

/* The whole entries of the last max calls of every ring of h into *e (malloc'd, by start). */
static int collect(const struct bt__flight_hdr *h, int max, struct bt__flight_entry **e, int *n)
{
    *e = malloc(sizeof(**e) * (size_t)BT_FLIGHT_RINGS * (size_t)(max < 1 ? 1 : max));
    *n = 0;
    if (!*e)
        return -1;
    for (int k = 0; k < BT_FLIGHT_RINGS; k++) {
        uint64_t head = __atomic_load_n(&h->ring[k].head, __ATOMIC_ACQUIRE);
        uint64_t first = head > (uint64_t)max ? head - (uint64_t)max : 0;
        if (head - first > BT_FLIGHT_RING)
            first = head - BT_FLIGHT_RING;
        for (uint64_t i = first; i < head; i++)
            *n += bt__flight_read(h, k, i, &(*e)[*n]) == 0; /* skips one being written */
    }
    qsort(*e, (size_t)*n, sizeof(**e), by_start);
    return 0;
}

int bt__trace_format(const struct bt__flight_hdr *h, int node, const char *host, int max,
                     int64_t now_ns, char **out, size_t *len)
{
    struct bt__flight_entry *e;
    int n, ncomm = 0;
    char comms[BT_FLIGHT_RINGS * (BT_FLIGHT_NAME + 64)], id[16];
    size_t cl = 0;
    if (collect(h, max, &e, &n) != 0)
        return -1;
    for (int k = 0; k < BT_FLIGHT_RINGS - 1; k++) { /* the shared ring names no communicator */
        struct bt__flight_ring g;
        if (bt__flight_ring_read(h, k, &g) != 0 || !g.name[0])
            continue;
        cl += (size_t)snprintf(comms + cl, sizeof(comms) - cl, "comm=%s size=%d rank=%d name=%s\n",
                               id_str(g.comm_id, id, sizeof(id)), g.size, g.rank, g.name);
        ncomm++;
    }
    char *s = NULL;
    size_t sl = 0;
    FILE *f = open_memstream(&s, &sl);
    if (!f) {
        free(e);
        return -1;
    }
    fprintf(f,
            "%s\nrank=%d size=%d node=%d host=%.64s pid=%d dumped_ns=%" PRId64
            " entries=%d comms=%d\n%s",
            TRACE_HEAD, h->rank, h->size, node, host, h->pid, now_ns, n, ncomm, comms);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "seq=%" PRIu64 " comm=%s op=%s dtype=%s redop=%s count=%" PRIu64
                " root=%d peers=%d start_ns=%" PRId64 " end_ns=%" PRId64 " state=%s\n",
                e[i].seq, id_str(e[i].comm_id, id, sizeof(id)), bt__flight_op_name(e[i].op),
                name_of(dtype_names, NELEM(dtype_names), e[i].dtype),
                name_of(redop_names, NELEM(redop_names), e[i].redop), e[i].count, e[i].root,
                e[i].peers, e[i].start_ns, e[i].end_ns,
                name_of(state_names, NELEM(state_names), e[i].state));
    free(e);
    if (fclose(f) != 0) {
        free(s);
        return -1;
    }
    *out = s;
    *len = sl;
    return 0;
}

/* How much of line p an error quotes: up to 60 bytes, never past its end (one line). */
static int quote_len(const char *p)
{
    size_t n = strcspn(p, "\n");
    return n < 60 ? (int)n : 60;
}

/* The value of "key=" in line (up to a space; never a later line's) into out; 0 when found. */
static int field(const char *line, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    const char *eol = line + strcspn(line, "\n");
    for (const char *p = line; (p = strstr(p, key)) && p + kl < eol; p++)
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            p += kl + 1;
            snprintf(out, n, "%.*s", (int)strcspn(p, " \n"), p);
            return 0;
        }
    return -1;
}

static int field_ll(const char *line, const char *key, long long *v)
{
    char buf[32], *end;
    if (field(line, key, buf, sizeof(buf)) != 0 || !buf[0])
        return -1;
    errno = 0;
    *v = strtoll(buf, &end, 10);
    return *end || errno == ERANGE ? -1 : 0; /* out of range: not a number a dump writes */
}

/* A communicator id: "0", "c" and 8 hex digits, or (version 1) a small number. */
static int field_comm(const char *line, uint32_t *id)
{
    char buf[16], *end;
    if (field(line, "comm", buf, sizeof(buf)) != 0 || !buf[0])
        return -1;
    unsigned long v = buf[0] == 'c' ? strtoul(buf + 1, &end, 16) : strtoul(buf, &end, 10);
    if (*end || end == buf + (buf[0] == 'c') || v > UINT32_MAX)
        return -1;
    *id = (uint32_t)v;
    return 0;
}

/* "comm=ID size=S rank=R name=NAME": one communicator of the dump. */
static int parse_comm(const char *line, struct bt__trace_comm *c)
{
    long long size, rank;
    const char *nm = strstr(line, " name=");
    if (field_comm(line, &c->id) || field_ll(line, "size", &size) ||
        field_ll(line, "rank", &rank) || !nm || size < 1 || rank < 0 || rank >= size)
        return -1;
    c->size = (int)size, c->rank = (int)rank;
    snprintf(c->name, sizeof(c->name), "%.*s", (int)strcspn(nm + 6, "\n"), nm + 6);
    return 0;
}

static int parse_entry(const char *line, struct bt__flight_entry *e)
{
    char op[32], dt[16], ro[16], st[16];
    long long seq, count, root, peers, s, end;
    uint32_t comm;
    if (field_ll(line, "seq", &seq) || field_comm(line, &comm) || field_ll(line, "count", &count) ||
        field_ll(line, "root", &root) || field_ll(line, "peers", &peers) ||
        field_ll(line, "start_ns", &s) || field_ll(line, "end_ns", &end) ||
        field(line, "op", op, sizeof(op)) || field(line, "dtype", dt, sizeof(dt)) ||
        field(line, "redop", ro, sizeof(ro)) || field(line, "state", st, sizeof(st)))
        return -1;
    int o = bt__flight_op_from_name(op), d = index_of(dtype_names, NELEM(dtype_names), dt);
    int r = index_of(redop_names, NELEM(redop_names), ro);
    int sv = index_of(state_names, NELEM(state_names), st);
    if (o < 0 || d < 0 || r < 0 || sv <= 0 || seq <= 0 || count < 0)
        return -1;
    *e = (struct bt__flight_entry){.seq = (uint64_t)seq,
                                   .start_ns = s,
                                   .end_ns = end,
                                   .count = (uint64_t)count,
                                   .comm_id = comm,
                                   .root = (int32_t)root,
                                   .peers = (int32_t)peers,
                                   .op = (uint8_t)o,
                                   .dtype = (uint8_t)d,
                                   .redop = (uint8_t)r,
                                   .state = (uint8_t)sv};
    return 0;
}

int bt__trace_parse(const char *text, const char *name, struct bt__trace_rank *t, char *err,
                    size_t errn)
{
    memset(t, 0, sizeof(*t));
    if (strncmp(text, TRACE_HEAD "\n", sizeof(TRACE_HEAD)) &&
        strncmp(text, TRACE_HEAD_V1 "\n", sizeof(TRACE_HEAD_V1))) {
        snprintf(err, errn, "%s: not a baton flight-recorder dump (its first line is not '%s')",
                 name, TRACE_HEAD);
        return -1;
    }
    const char *p = text + sizeof(TRACE_HEAD);
    long long v[5], entries, ncomm = 0;
    if (field_ll(p, "rank", &v[0]) || field_ll(p, "size", &v[1]) || field_ll(p, "node", &v[2]) ||
        field_ll(p, "pid", &v[3]) || field_ll(p, "dumped_ns", &v[4]) ||
        field_ll(p, "entries", &entries) || entries < 0 ||
        entries > BT_FLIGHT_RINGS * BT_FLIGHT_RING || v[0] < 0 || v[1] <= v[0] ||
        (field_ll(p, "comms", &ncomm) == 0 && (ncomm < 0 || ncomm > BT_FLIGHT_RINGS))) {
        snprintf(err, errn,
                 "%s: line 2: a torn or foreign rank line (want rank=R size=S node=N "
                 "host=H pid=P dumped_ns=T entries=K)",
                 name);
        return -1;
    }
    t->rank = (int)v[0], t->size = (int)v[1], t->node = (int)v[2], t->pid = (int)v[3];
    t->dumped_ns = v[4];
    field(p, "host", t->host, sizeof(t->host));
    t->e = calloc((size_t)entries + 1, sizeof(*t->e));
    if (!t->e) {
        snprintf(err, errn, "%s: out of memory", name);
        return -1;
    }
    p += strcspn(p, "\n");
    int ln = 3;
    for (; *p == '\n' && t->ncomm < ncomm; ln++) {
        p++;
        if (parse_comm(p, &t->comm[t->ncomm]) != 0) {
            snprintf(err, errn, "%s: line %d: a torn or foreign communicator line: '%.*s'", name,
                     ln, quote_len(p), p);
            bt__trace_free(t);
            return -1;
        }
        t->ncomm++;
        p += strcspn(p, "\n");
    }
    for (; *p == '\n' && p[1] && t->n < entries; ln++) {
        p++;
        if (parse_entry(p, &t->e[t->n]) != 0) {
            snprintf(err, errn, "%s: line %d: a torn or foreign entry: '%.*s'", name, ln,
                     quote_len(p), p);
            bt__trace_free(t);
            return -1;
        }
        t->n++;
        p += strcspn(p, "\n");
    }
    if (t->n != entries || t->ncomm != ncomm) {
        snprintf(err, errn,
                 "%s: torn: the rank line says %lld entries and %lld communicators, the file "
                 "holds %d and %d",
                 name, entries, ncomm, t->n, t->ncomm);
        bt__trace_free(t);
        return -1;
    }
    return 0;
}

void bt__trace_free(struct bt__trace_rank *t)
{
    free(t->e);
    t->e = NULL;
    t->n = 0;
    t->ncomm = 0;
}

/* ---- analysis ---- */

/* The entry of call seq in t (one communicator's view), or NULL. */
static const struct bt__flight_entry *find(const struct bt__trace_rank *t, uint64_t seq)
{
    for (int i = t->n - 1; i >= 0; i--)
        if (t->e[i].seq == seq)
            return &t->e[i];
    return NULL;
}

static uint64_t max_entered(const struct bt__trace_rank *t, const struct bt__flight_entry **last)
{
    uint64_t m = 0;
    *last = NULL;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].seq > m)
            m = t->e[i].seq, *last = &t->e[i];
    return m;
}

static const struct bt__flight_entry *last_done(const struct bt__trace_rank *t)
{
    const struct bt__flight_entry *d = NULL;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].state == BT_FL_DONE && (!d || t->e[i].seq > d->seq))
            d = &t->e[i];
    return d;
}

#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (k < cap)                                                                               \
            k += (size_t)snprintf(out + k, cap - k, __VA_ARGS__);                                  \
    } while (0)

/* One lagging rank t against the others, for call x. */
static size_t lag_line(const struct bt__trace_rank *all, int n, const struct bt__trace_rank *t,
                       const char *where, int64_t now, char *out, size_t cap)
{
    size_t k = 0;
    const struct bt__flight_entry *mine, *done = last_done(t), *ex = NULL;
    uint64_t me = max_entered(t, &mine);
    int running = mine && mine->state == BT_FL_RUNNING;
    uint64_t x = running ? me : me + 1;
    int others = 0;
    int64_t first = 0;
    for (int i = 0; i < n; i++) {
        const struct bt__flight_entry *e = &all[i] == t ? NULL : find(&all[i], x);
        if (!e)
            continue;
        others++;
        ex = ex ? ex : e;
        if (!first || e->start_ns < first)
            first = e->start_ns;
    }
    if (!ex)
        return 0;
    if (running)
        APPEND("rank %d is still in %s #%" PRIu64 "%s (entered %.1f s ago; %d other(s) finished "
               "it)",
               t->rank, bt__flight_op_name(ex->op), x, where, (double)(now - mine->start_ns) / 1e9,
               others);
    else
        APPEND("rank %d never entered %s #%" PRIu64 "%s (the %d other%s did, %.1f s ago)", t->rank,
               bt__flight_op_name(ex->op), x, where, others, others == 1 ? "" : "s",
               (double)(now - first) / 1e9);
    if (done)
        APPEND("; its last completed call was %s #%" PRIu64 "\n", bt__flight_op_name(done->op),
               done->seq);
    else
        APPEND("; it completed no call\n");
    return k < cap ? k : cap;
}

static int analyze_lag(const struct bt__trace_rank *t, int n, const char *where, int64_t now,
                       char *out, size_t cap, size_t *used)
{
    uint64_t m = 0;
    const struct bt__flight_entry *last;
    int found = 0;
    for (int i = 0; i < n; i++) {
        uint64_t me = max_entered(&t[i], &last);
        m = me > m ? me : m;
    }
    for (int i = 0; i < n && found < LAG_NAMED_MAX; i++) {
        uint64_t me = max_entered(&t[i], &last);
        int behind = me < m;
        if (!behind && last && last->state == BT_FL_RUNNING) { /* others finished it? */
            for (int j = 0; j < n && !behind; j++) {
                const struct bt__flight_entry *e = j == i ? NULL : find(&t[j], me);
                behind = e && e->state == BT_FL_DONE;
            }
        }
        if (!behind)
            continue;
        size_t k = lag_line(t, n, &t[i], where, now, out + *used, cap - *used);
        *used += k;
        found += k > 0;
    }
    return found;
}

struct field_get {
    const char *what;
    long long (*get)(const struct bt__flight_entry *e);
    int kind; /* 0 number, 1 op, 2 dtype, 3 redop */
};
static long long g_op(const struct bt__flight_entry *e)
{
    return e->op;
}
static long long g_count(const struct bt__flight_entry *e)
{
    return (long long)e->count;
}
static long long g_dtype(const struct bt__flight_entry *e)
{
    return e->dtype;
}
static long long g_redop(const struct bt__flight_entry *e)
{
    return e->redop;
}
static long long g_root(const struct bt__flight_entry *e)
{
    return e->root;
}

static const char *val_str(int kind, long long v, char *buf, size_t n)
{
    if (kind == 1)
        return bt__flight_op_name((int)v);
    if (kind == 2)
        return name_of(dtype_names, NELEM(dtype_names), (int)v);
    if (kind == 3)
        return name_of(redop_names, NELEM(redop_names), (int)v);
    snprintf(buf, n, "%lld", v);
    return buf;
}

/* Call seq: does field f agree? If not, names the minority into out; returns bytes. */
static size_t disagree(const struct bt__trace_rank *t, int n, uint64_t seq,
                       const struct field_get *f, const char *where, char *out, size_t cap)
{
    long long vals[LAG_NAMED_MAX * 8];
    int ranks[LAG_NAMED_MAX * 8], m = 0, best = -1, bestc = 0;
    const struct bt__flight_entry *ref = NULL;
    for (int i = 0; i < n && m < NELEM(vals); i++) {
        const struct bt__flight_entry *e = find(&t[i], seq);
        if (e)
            vals[m] = f->get(e), ranks[m++] = t[i].rank, ref = ref ? ref : e;
    }
    for (int i = 0; i < m; i++) { /* the majority value */
        int c = 0;
        for (int j = 0; j < m; j++)
            c += vals[j] == vals[i];
        if (c > bestc)
            bestc = c, best = i;
    }
    if (m < 2 || bestc == m)
        return 0;
    size_t k = 0;
    char b1[32], b2[32];
    APPEND("ranks disagree on the %s of %s #%" PRIu64 "%s (", f->what,
           f->kind == 1 ? "call" : bt__flight_op_name(ref->op), seq, where);
    int named = 0;
    for (int i = 0; i < m && named < LAG_NAMED_MAX; i++)
        if (vals[i] != vals[best])
            APPEND("%srank %d: %s", named++ ? ", " : "", ranks[i],
                   val_str(f->kind, vals[i], b1, sizeof(b1)));
    if (bestc == 1) /* one against one: both by name */
        APPEND(", rank %d: %s)\n", ranks[best], val_str(f->kind, vals[best], b2, sizeof(b2)));
    else
        APPEND(", others: %s)\n", val_str(f->kind, vals[best], b2, sizeof(b2)));
    return k < cap ? k : cap;
}

static int by_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int analyze_agreement(const struct bt__trace_rank *t, int n, const char *where, char *out,
                             size_t cap, size_t *used)
{
    static const struct field_get fields[] = {
        {"op", g_op, 1},           {"count", g_count, 0}, {"dtype", g_dtype, 2},
        {"reduction", g_redop, 3}, {"root", g_root, 0},
    };
    int found = 0;
    size_t total = 0, ns = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)t[i].n;
    uint64_t *seqs = malloc(sizeof(*seqs) * (total ? total : 1));
    for (int i = 0; seqs && i < n; i++)
        for (int j = 0; j < t[i].n; j++)
            seqs[ns++] = t[i].e[j].seq;
    if (seqs)
        qsort(seqs, ns, sizeof(*seqs), by_u64);
    /* the calls the dumps hold, each once (not every number between: a foreign dump's
     * seq=9223372036854775807 would take forever) */
    for (size_t q = 0; q < ns && found < DISAGREE_MAX; q++) {
        uint64_t s = seqs[q];
        if (q && s == seqs[q - 1])
            continue;
        for (int f = 0; f < NELEM(fields) && found < DISAGREE_MAX; f++) {
            size_t k = disagree(t, n, s, &fields[f], where, out + *used, cap - *used);
            *used += k;
            if (k) {
                found++;
                break; /* the first field that differs says enough about this call */
            }
        }
    }
    free(seqs);
    return found;
}

/* The findings about one communicator: t[0..n) are its members' views (their entries of it
 * only, size = its size); where: "" for the world, " on communicator NAME" for a child. */
static int analyze_comm(const struct bt__trace_rank *t, int n, const char *where, int64_t now_ns,
                        char *out, size_t cap, size_t *used)
{
    size_t k = *used;
    int found = analyze_agreement(t, n, where, out, cap, &k);
    found += analyze_lag(t, n, where, now_ns, out, cap, &k);
    if (!found && n > 0) { /* every rank inside one call? */
        const struct bt__flight_entry *l0;
        uint64_t s0 = max_entered(&t[0], &l0);
        int all = l0 && l0->state == BT_FL_RUNNING;
        int64_t first = all ? l0->start_ns : 0;
        for (int i = 1; i < n && all; i++) {
            const struct bt__flight_entry *l;
            all = max_entered(&t[i], &l) == s0 && l && l->state == BT_FL_RUNNING;
            first = all && l->start_ns < first ? l->start_ns : first;
        }
        if (all && n == t[0].size) {
            APPEND("every rank is in %s #%" PRIu64 "%s (since %.1f s): the wait is below baton's "
                   "calls (network, device, a peer process outside the job)\n",
                   bt__flight_op_name(l0->op), s0, where, (double)(now_ns - first) / 1e9);
            found++;
        }
    }
    *used = k;
    return found;
}

#define COMMS_MAX 64 /* communicators analyzed */

/* The ids of the communicators in t (descriptors and entries), the world first; returns how
 * many. */
static int comm_ids(const struct bt__trace_rank *t, int n, uint32_t *ids)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        for (int j = -t[i].ncomm; j < t[i].n; j++) {
            uint32_t id = j < 0 ? t[i].comm[-j - 1].id : t[i].e[j].comm_id;
            int seen = 0;
            for (int q = 0; q < m && !seen; q++)
                seen = ids[q] == id;
            if (!seen && m < COMMS_MAX)
                ids[m++] = id;
        }
    for (int q = 1; q < m; q++) /* the world (0) first, then by id */
        for (int p = q; p > 0 && ids[p] < ids[p - 1]; p--) {
            uint32_t x = ids[p];
            ids[p] = ids[p - 1], ids[p - 1] = x;
        }
    return m;
}

static const struct bt__trace_comm *comm_of(const struct bt__trace_rank *t, uint32_t id)
{
    for (int j = 0; j < t->ncomm; j++)
        if (t->comm[j].id == id)
            return &t->comm[j];
    return NULL;
}

/* v[i]: rank t[i]'s view of communicator id (when it is a member: it describes it or has an
 * entry of it); returns the members; names it into where. v[].e are malloc'd. */
static int views(const struct bt__trace_rank *t, int n, uint32_t id, struct bt__trace_rank *v,
                 char *where, size_t wn)
{
    int m = 0;
    where[0] = '\0';
    for (int i = 0; i < n; i++) {
        const struct bt__trace_comm *c = comm_of(&t[i], id);
        int k = 0, size = c ? c->size : 0;
        struct bt__flight_entry *e = malloc(sizeof(*e) * (size_t)(t[i].n + 1));
        for (int j = 0; e && j < t[i].n; j++)
            if (t[i].e[j].comm_id == id) {
                e[k++] = t[i].e[j];
                size = size ? size : t[i].e[j].peers;
            }
        if (!e || (!c && !k)) {
            free(e);
            continue;
        }
        if (id && !where[0] && c && c->name[0])
            snprintf(where, wn, " on communicator %s", c->name);
        v[m++] = (struct bt__trace_rank){.rank = t[i].rank,
                                         .size = id ? size : t[i].size,
                                         .dumped_ns = t[i].dumped_ns,
                                         .n = k,
                                         .e = e};
    }
    if (id && !where[0]) /* no rank describes it: its id */
        snprintf(where, wn, " on communicator c%08x", id);
    return m;
}

int bt__trace_analyze(const struct bt__trace_rank *t, int n, int64_t now_ns, char *out, size_t cap)
{
    size_t k = 0;
    int found = 0;
    uint32_t ids[COMMS_MAX];
    struct bt__trace_rank *v = calloc((size_t)n + 1, sizeof(*v));
    if (cap)
        out[0] = '\0';
    for (int i = 0; !now_ns && i < n; i++)
        now_ns = t[i].dumped_ns > now_ns ? t[i].dumped_ns : now_ns;
    int nid = v ? comm_ids(t, n, ids) : 0;
    for (int q = 0; q < nid; q++) {
        char where[BT_FLIGHT_NAME + 32];
        int m = views(t, n, ids[q], v, where, sizeof(where));
        if (m >= 1)
            found += analyze_comm(v, m, where, now_ns, out, cap, &k);
        for (int i = 0; i < m; i++)
            free(v[i].e);
    }
    free(v);
    return found;
}

/* ---- baton trace FILE... ---- */

const char *bt__cmd_trace_usage(void)
{
    return "usage: baton trace FILE...\n"
           "\n"
           "Reads flight-recorder dumps (the flight.<rank>.txt files `baton run --log-dir DIR`\n"
           "writes when a job fails, times out or stalls) and prints what they say together:\n"
           "which rank never entered the collective the others are in, and where the ranks\n"
           "disagree on a collective's op, count, dtype, reduction or root.\n"
           "Exit status: 0 (findings or none), 2 for a file that cannot be read or is not a\n"
           "whole dump.\n"
           "example: baton trace logs/flight.*.txt\n";
}

static char *slurp(const char *path, char *err, size_t errn)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errn, "%s: cannot open: %m", path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (len < cap || len >= TRACE_FILE_MAX)
            break;
        char *p = realloc(buf, cap * 2 + 1);
        if (!p)
            free(buf);
        buf = p, cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || len >= TRACE_FILE_MAX) {
        snprintf(err, errn, "%s: %s", path,
                 !buf  ? "out of memory"
                 : bad ? "read error"
                       : "too large for a dump");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        snprintf(err, errn, "%s: not a baton flight-recorder dump (binary data)", path);
        free(buf);
        return NULL;
    }
    return buf;
}

int bt__cmd_trace(int argc, char **argv)
{
    char err[512];
    if (argc < 2) {
        fprintf(stderr, "baton trace: no FILE; usage: baton trace FILE...\n");
        return 2;
    }
    struct bt__trace_rank *t = calloc((size_t)argc, sizeof(*t));
    int n = 0, rc = 0;
    for (int i = 1; t && i < argc; i++) {
        char *text = slurp(argv[i], err, sizeof(err));
        if (!text || bt__trace_parse(text, argv[i], &t[n], err, sizeof(err)) != 0) {
            fprintf(stderr, "baton trace: %s\n", err);
            rc = 2;
        } else
            n++;
        free(text);
    }
    if (!t || rc) {
        for (int i = 0; i < n; i++)
            bt__trace_free(&t[i]);
        free(t);
        return 2;
    }
    size_t cap = 64 * 1024;
    char *out = malloc(cap);
    int found = out ? bt__trace_analyze(t, n, 0, out, cap) : 0;
    printf("%d dump(s), ranks", n);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : " ", t[i].rank);
    printf("\n%s", found ? out : "no finding: the dumps agree and no rank lags\n");
    free(out);
    for (int i = 0; i < n; i++)
        bt__trace_free(&t[i]);
    free(t);
    return 0;
}
