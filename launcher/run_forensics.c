/* run_forensics.c: the root cause of a failed job, in the failing program's own words.
 *
 * Every worker gets an error file (BATON_ERROR_FILE and TORCHELASTIC_ERROR_FILE, one path in a
 * folder of this launcher's: /tmp/baton-<pid>-XXXXXX/rank.<R>.json). PyTorch's @record writes
 * its exception there (torchelastic's JSON: message, py_callstack, timestamp); a C program
 * writes it with bt_error_record(). run_output.c keeps the last lines of each worker's stderr.
 *
 * When a worker ends badly on its own (a non-zero exit, a signal baton did not send, or any
 * end after it wrote its error file), this launcher makes a failure record: the time it failed
 * (the error file's mtime when there is one, else when it was reaped, or, reaped together with
 * others, its last sign of life in its flight recorder; wall clock, ns), rank,
 * node, exit status, the one-line description (run_report.c), the host, the message and the
 * last traceback frames (from the error file, else from the stderr tail: a Python traceback
 * there gives its last line as the message), and where the rank's full output is: `kubectl
 * logs POD` inside Kubernetes, else its --log-dir file, else this node's console.
 *
 * At the end of a generation that failed (outcome F), each launcher publishes its node's
 * records as l/<g>/fails/<node> (possibly empty) and counts itself in l/<g>/settled; the last
 * one sets l/<g>/allsettled. Then every launcher reads every node's records, so all of them
 * see the same set and name the same root cause: the earliest failure by time. Its status
 * becomes the job's exit status on every node; the others are listed as consequences. A node
 * that does not settle within --grace + SETTLE_EXTRA_S is left out.
 *
 * Inside a pod (KUBERNETES_SERVICE_HOST set) or when BATON_TERMINATION_LOG names a file, the
 * summary is also written to the container's termination-message path (default
 * /dev/termination-log), so `kubectl describe pod` shows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "launcher/run.h"

#define SETTLE_EXTRA_S 3.0  /* beyond --grace: how long launchers wait for each other's records */
#define SETTLE_POLL_S 0.25  /* how often that wait looks for lost nodes */
#define FRAMES_SHOWN 3      /* traceback frames in the summary */
#define TAIL_LINES_SHOWN 10 /* stderr lines in the summary when there is no error file */
#define DETAIL_MAX 2048     /* bytes of traceback or stderr tail kept per record */
#define MSG_MAX 1024        /* bytes of the message kept per record */
#define RECS_MAX 64         /* records read back from the store */
#define TERMLOG_MAX 4096    /* bytes: Kubernetes keeps this much of a termination message */
#define FS '\x1f'           /* between fields of a record */
#define RS '\x1e'           /* after each record */

static const char *now_utc(int64_t ns, char *out, size_t n)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, n, "%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03d UTC", (int)(ns / 1000000 % 1000));
    return out;
}

int64_t bt__run_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int bt__run_forensics_setup(struct bt__run *r)
{
    if (r->o.torch.errdir[0])
        return 0; /* the ranks' files go where torchrun puts them (run_torch.c) */
    snprintf(r->errdir, sizeof(r->errdir), "/tmp/baton-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(r->errdir)) {
        fprintf(stderr,
                "baton: WARN: cannot make a folder for the workers' error files (%s): %s; "
                "failure summaries will show stderr only\n",
                r->errdir, strerror(errno));
        r->errdir[0] = '\0';
    }
    return 0;
}

void bt__run_forensics_close(struct bt__run *r)
{
    char path[PATH_MAX];
    if (r->errdir[0]) {
        for (int i = 0; r->w && i < r->nchild; i++)
            if (r->w[i].errfile[0])
                unlink(r->w[i].errfile);
        snprintf(path, sizeof(path), "%s", r->errdir);
        if (rmdir(path) != 0)
            BT_INFO(LAUNCH, "removing %s: %s", path, strerror(errno));
    }
    free(r->fails);
    r->fails = NULL;
    r->fails_len = 0;
}

void bt__run_forensics_spawn(struct bt__run *r, struct bt__worker *w)
{
    w->errfile[0] = '\0';
    w->tail_len = 0;
    w->end_ns = 0;
    if (r->o.torch.errdir[0] && w->ps_index < 0)
        bt__run_torch_error_path(r, w->local_rank, w->errfile, sizeof(w->errfile));
    else if (r->o.torch.errdir[0])
        snprintf(w->errfile, sizeof(w->errfile), "%s/ps.%d.json", r->o.torch.errdir, w->ps_index);
    else if (!r->errdir[0])
        return;
    else if (w->ps_index >= 0)
        snprintf(w->errfile, sizeof(w->errfile), "%s/ps.%d.json", r->errdir, w->ps_index);
    else
        snprintf(w->errfile, sizeof(w->errfile), "%s/rank.%d.json", r->errdir, w->rank);
    unlink(w->errfile); /* a previous generation's */
}

void bt__run_forensics_tail(struct bt__worker *w, const char *p, size_t n)
{
    if (n > BT_RUN_TAIL_BYTES / 2)
        p += n - BT_RUN_TAIL_BYTES / 2, n = BT_RUN_TAIL_BYTES / 2;
    if (w->tail_len + n > BT_RUN_TAIL_BYTES) { /* drop whole lines from the front */
        size_t drop = w->tail_len + n - BT_RUN_TAIL_BYTES;
        char *nl = memchr(w->tail + drop, '\n', w->tail_len - drop);
        drop = nl ? (size_t)(nl - w->tail) + 1 : w->tail_len;
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
    memcpy(w->tail + w->tail_len, p, n);
    w->tail_len += n;
    if (n && p[n - 1] != '\n' && w->tail_len < BT_RUN_TAIL_BYTES)
        w->tail[w->tail_len++] = '\n';
}

/* ---- a tiny reader for torchelastic's error file: one JSON object, strings found by key ---- */

/* Decodes the JSON string starting after its opening quote at *pp into out; *pp moves past
 * the closing quote. Returns 0, or -1 when the string is not terminated. */
static int json_string(const char **pp, char *out, size_t n)
{
    const char *p = *pp;
    size_t k = 0;
    for (; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && p[1]) {
            p++;
            c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
            if (*p == 'u' && strlen(p) >= 5) {
                unsigned v = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
                c = v < 0x80 ? (char)v : '?';
                p += 4;
            }
        }
        if (k + 1 < n)
            out[k++] = c;
    }
    if (n)
        out[k] = '\0';
    if (*p != '"')
        return -1;
    *pp = p + 1;
    return 0;
}

/* The string value of the first "key": "..." in the text (any depth); 0 when found. */
static int json_find(const char *text, const char *key, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    for (const char *p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
        const char *q = p + strlen(pat);
        q += strspn(q, " \t\r\n");
        if (*q != ':')
            continue;
        q++;
        q += strspn(q, " \t\r\n");
        if (*q == '"') {
            q++;
            return json_string(&q, out, n);
        }
    }
    return -1;
}

/* Reads w's error file: the message and the call stack; returns 0 and *mtime_ns when there is
 * one with a message. */
static int read_errfile(const struct bt__worker *w, char *msg, size_t mn, char *stack, size_t sn,
                        int64_t *mtime_ns)
{
    struct stat st;
    char *text = NULL;
    int rc = -1;
    if (!w->errfile[0] || stat(w->errfile, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (1 << 20))
        return -1;
    FILE *f = fopen(w->errfile, "re");
    if (f && (text = calloc(1, (size_t)st.st_size + 1)) &&
        fread(text, 1, (size_t)st.st_size, f) == (size_t)st.st_size) {
        /* {"message": {"message": "...", ...}}: the inner one is the text; an older format
         * has "message" as the string itself */
        const char *inner = strstr(text, "\"message\"");
        inner = inner ? strstr(inner + 9, "\"message\"") : NULL;
        rc = json_find(inner ? inner : text, "message", msg, mn);
        if (json_find(text, "py_callstack", stack, sn) != 0)
            stack[0] = '\0';
        *mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    if (f)
        fclose(f);
    free(text);
    return rc == 0 && msg[0] ? 0 : -1;
}

/* From a Python traceback (in an error file's py_callstack, or a stderr tail), the last
 * FRAMES_SHOWN frames ("  File ..." and the code line under it) into out, and, when msg is
 * empty, the exception line (the last non-empty line after "Traceback"). Text that holds no
 * traceback gives its last TAIL_LINES_SHOWN lines. */
static void frames_of(const char *text, char *msg, size_t mn, char *out, size_t n)
{
    const char *tb = NULL, *p;
    out[0] = '\0';
    for (p = strstr(text, "Traceback (most recent call last):"); p;
         p = strstr(p + 1, "Traceback (most recent call last):"))
        tb = p;
    if (!tb) { /* no traceback: the last lines as they are */
        int lines = 0;
        size_t len = strlen(text);
        const char *s = text + len;
        while (s > text && lines <= TAIL_LINES_SHOWN)
            if (*--s == '\n' && s + 1 < text + len)
                lines++;
        if (lines > TAIL_LINES_SHOWN)
            s++;
        snprintf(out, n, "%s", s);
        return;
    }
    const char *frames[FRAMES_SHOWN] = {0}, *last_line = NULL, *end = tb + strlen(tb);
    int nf = 0;
    for (p = tb; p < end; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : end) {
        if (!strncmp(p, "  File ", 7))
            frames[nf++ % FRAMES_SHOWN] = p;
        if (*p && *p != '\n' && *p != ' ' && strncmp(p, "Traceback", 9))
            last_line = p;
    }
    const char *first = nf > FRAMES_SHOWN ? frames[nf % FRAMES_SHOWN] : frames[0];
    if (first) {
        const char *stop = last_line && last_line > first ? last_line : end;
        snprintf(out, n, "%.*s", (int)(stop - first), first);
    }
    if (!msg[0] && last_line)
        snprintf(msg, mn, "%.*s", (int)strcspn(last_line, "\n"), last_line);
}

/* Where the rank's whole output is. */
static void where_output(const struct bt__run *r, const struct bt__worker *w, char *out, size_t n)
{
    const char *pod = getenv("HOSTNAME");
    char abs[PATH_MAX];
    if (getenv("KUBERNETES_SERVICE_HOST"))
        snprintf(out, n, "kubectl logs %s", pod && *pod ? pod : r->host);
    else if (r->o.log_dir && w->log_fd >= 0)
        snprintf(out, n, "%s/%s.%d.log", realpath(r->o.log_dir, abs) ? abs : r->o.log_dir,
                 w->ps_index >= 0 ? "ps" : "rank", w->ps_index >= 0 ? w->ps_index : w->rank);
    else
        snprintf(out, n, "the console of node %d (host %s), lines tagged %.*s", r->spec.node_rank,
                 r->host, (int)strlen(w->tag) - 1, w->tag);
}

/* Appends text to the record with separator sep, s's own separator bytes replaced. */
static int rec_add(char **buf, size_t *len, size_t *cap, const char *s, char sep)
{
    size_t n = strlen(s);
    if (*len + n + 2 > *cap) {
        size_t c = *cap ? *cap * 2 : 8192;
        while (c < *len + n + 2)
            c *= 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -1;
        *buf = p, *cap = c;
    }
    for (size_t i = 0; i < n; i++)
        (*buf)[(*len)++] = s[i] == FS || s[i] == RS ? ' ' : s[i];
    (*buf)[(*len)++] = sep;
    (*buf)[*len] = '\0';
    return 0;
}

void bt__run_forensics_failed(struct bt__run *r, struct bt__worker *w, int during_teardown)
{
    char msg[MSG_MAX] = "", stack[DETAIL_MAX * 4] = "", detail[DETAIL_MAX] = "";
    char line[BT_RUN_OUTCOME_MAX], where[PATH_MAX + 64], num[5][32];
    int64_t t = w->end_ns, mt = 0;
    int has_file = read_errfile(w, msg, sizeof(msg), stack, sizeof(stack), &mt) == 0;
    int sig = WIFSIGNALED(w->status) ? WTERMSIG(w->status) : 0;
    int by_us = during_teardown && (sig == SIGTERM || sig == SIGKILL);
    /* Ended by baton's own teardown without a word: not a failure. With its error file
     * written, it was failing when the teardown reached it: its own status is unknown (-1). */
    if (w->status == 0 || (by_us && !has_file))
        return;
    if (has_file && mt > 0 && mt < t)
        t = mt;
    else if (!has_file && w->found_ns > 0 && w->found_ns < t)
        t = w->found_ns; /* found dead with others: when it was last seen alive */
    if (!has_file) {
        snprintf(stack, sizeof(stack), "%.*s", (int)w->tail_len, w->tail);
        msg[0] = '\0';
    }
    frames_of(stack, msg, sizeof(msg), detail, sizeof(detail));
    bt__run_describe(r, w, line, sizeof(line));
    if (by_us)
        snprintf(line + strcspn(line, ")") + 1, sizeof(line) - strcspn(line, ")") - 1,
                 " wrote its error file and was then stopped by baton (%s) as the job was torn "
                 "down",
                 bt__signal_name(sig));
    where_output(r, w, where, sizeof(where));
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)t);
    snprintf(num[1], sizeof(num[1]), "%d", w->ps_index >= 0 ? -1 - w->ps_index : w->rank);
    snprintf(num[2], sizeof(num[2]), "%d", r->spec.node_rank);
    snprintf(num[3], sizeof(num[3]), "%d", by_us ? -1 : bt__run_exit_status(w->status));
    snprintf(num[4], sizeof(num[4]), "%s", has_file ? "file" : "stderr");
    const char *f[] = {num[0], num[1], num[2], num[3], num[4], line, r->host, msg, detail, where};
    size_t cap = r->fails_cap;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (rec_add(&r->fails, &r->fails_len, &cap, f[i],
                    i + 1 < sizeof(f) / sizeof(f[0]) ? FS : RS))
            break;
    r->fails_cap = cap;
}

/* ---- settling: every node's records, the earliest one ---- */

struct frec {
    long long t;
    int rank, node, status;
    char *src, *line, *host, *msg, *detail, *where;
};

/* Splits buf (records as rec_add wrote them) into recs; returns how many (at most max). */
static int parse_recs(char *buf, struct frec *recs, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *rec = strtok_r(buf, "\x1e", &save); rec && n < max;
         rec = strtok_r(NULL, "\x1e", &save)) {
        char *f[10];
        int k = 0;
        for (char *p = rec; k < 10; k++) {
            f[k] = p;
            char *e = strchr(p, FS);
            if (!e) {
                k++;
                break;
            }
            *e = '\0';
            p = e + 1;
        }
        if (k != 10)
            continue; /* torn or foreign: skipped */
        recs[n] = (struct frec){atoll(f[0]), atoi(f[1]), atoi(f[2]), atoi(f[3]), f[4],
                                f[5],        f[6],       f[7],       f[8],       f[9]};
        n++;
    }
    return n;
}

/* 1 when key exists in the store now. */
static int exists(struct bt__run *r, const char *key)
{
    void *v = NULL;
    size_t len;
    int rc = bt__store_get(r->st, key, &v, &len, 0);
    free(v);
    return rc == BT_OK;
}

/* Publishes this node's records and waits (bounded) until every node did or is lost: a node
 * whose launcher lost the store (its watcher's last will set l/<g>/lost/<node>) never will. */
static void settle(struct bt__run *r)
{
    char key[64], all[64];
    int64_t n = 0;
    snprintf(key, sizeof(key), "l/%d/fails/%d", r->restart, r->spec.node_rank);
    if (bt__store_set(r->st, key, r->fails ? r->fails : "", r->fails_len) != BT_OK)
        return;
    snprintf(key, sizeof(key), "l/%d/settled", r->restart);
    snprintf(all, sizeof(all), "l/%d/allsettled", r->restart);
    if (bt__store_add(r->st, key, 1, &n) != BT_OK)
        return;
    if (n >= r->spec.nnodes)
        bt__store_set(r->st, all, "1", 1);
    int nn = r->spec.nnodes, left = nn - 1;
    char *known = calloc((size_t)nn, 1); /* 1: settled or lost */
    int64_t dl = bt__now_ns() + (int64_t)((r->o.grace_s + SETTLE_EXTRA_S) * 1e9);
    for (;;) {
        void *v = NULL;
        size_t len;
        double slice = (double)(dl - bt__now_ns()) / 1e9;
        int rc = bt__store_get(r->st, all, &v, &len, slice < SETTLE_POLL_S ? slice : SETTLE_POLL_S);
        free(v);
        if (rc != BT_ERR_TIMEOUT || !known || bt__now_ns() >= dl) {
            if (rc != BT_OK)
                BT_INFO(LAUNCH, "waiting for the other nodes' failure records: %s",
                        bt__store_error(r->st));
            break;
        }
        for (int node = 0; node < nn; node++) {
            if (node == r->spec.node_rank || known[node])
                continue;
            snprintf(key, sizeof(key), "l/%d/fails/%d", r->restart, node);
            if (exists(r, key)) {
                known[node] = 1, left--;
                continue;
            }
            snprintf(key, sizeof(key), "l/%d/lost/%d", r->restart, node);
            if (exists(r, key)) {
                known[node] = 1, left--;
                BT_INFO(LAUNCH,
                        "node %d lost contact with the store: not waiting for its failure "
                        "records",
                        node);
            }
        }
        if (left <= 0)
            break;
    }
    free(known);
}

/* Every node's records, concatenated (malloc'd). */
static char *gather(struct bt__run *r, size_t *out_len)
{
    char *all = NULL;
    size_t len = 0, cap = 0;
    for (int node = 0; node < r->spec.nnodes; node++) {
        char key[64];
        void *v = NULL;
        size_t vl = 0;
        snprintf(key, sizeof(key), "l/%d/fails/%d", r->restart, node);
        if (node == r->spec.node_rank) {
            v = r->fails ? strdup(r->fails) : NULL, vl = r->fails_len;
        } else if (!r->st || bt__store_get(r->st, key, &v, &vl, 0) != BT_OK) {
            free(v);
            continue;
        }
        if (v && vl && (len + vl + 1 > cap)) {
            cap = (len + vl + 1) * 2;
            char *p = realloc(all, cap);
            if (!p) {
                free(v);
                break;
            }
            all = p;
        }
        if (v && vl) {
            memcpy(all + len, v, vl);
            len += vl;
            all[len] = '\0';
        }
        free(v);
    }
    *out_len = len;
    return all;
}

static void indent(char *out, size_t n, size_t *k, const char *text, const char *prefix)
{
    for (const char *p = text; *p && *k < n;) {
        size_t l = strcspn(p, "\n");
        if (l)
            *k += (size_t)snprintf(out + *k, n - *k, "%s%.*s\n", prefix, (int)l, p);
        p += l + (p[l] == '\n');
    }
    if (*k > n)
        *k = n;
}

static void who(const struct frec *f, char *out, size_t n)
{
    if (f->rank >= 0)
        snprintf(out, n, "rank %d", f->rank);
    else
        snprintf(out, n, "ps server %d", -1 - f->rank);
}

static const char *status_words(int status, char *out, size_t n)
{
    if (status < 0)
        snprintf(out, n, "stopped by baton after writing its error file");
    else
        snprintf(out, n, "status %d", status);
    return out;
}

/* The summary block (lines "baton: ...") of recs[root] and its consequences into r->summary. */
static void summarize(struct bt__run *r, struct frec *recs, int nrec, int root)
{
    const struct frec *c = &recs[root];
    char *s = r->summary, name[32], when[32], st[64];
    size_t n = sizeof(r->summary), k = 0;
    who(c, name, sizeof(name));
    k += (size_t)snprintf(s + k, n - k, "baton: root cause: %s on node %d (host %s) at %s%s%s\n",
                          name, c->node, c->host, now_utc(c->t, when, sizeof(when)),
                          c->msg[0] ? ": " : "", c->msg);
    if (k < n && c->detail[0]) {
        k += (size_t)snprintf(s + k, n - k, "baton:   %s:\n",
                              !strcmp(c->src, "file") || strstr(c->detail, "  File ")
                                  ? "last frames"
                                  : "last lines of its stderr");
        indent(s, n, &k, c->detail, "baton:   | ");
    }
    if (k < n)
        k += (size_t)snprintf(s + k, n - k, "baton:   full output: %s\n", c->where);
    for (int i = 0; i < nrec && k < n; i++) {
        if (i == root)
            continue;
        who(&recs[i], name, sizeof(name));
        k += (size_t)snprintf(
            s + k, n - k, "baton: consequence: %s on node %d failed %.3f s later (%s)%s%.300s\n",
            name, recs[i].node, (double)(recs[i].t - c->t) / 1e9,
            status_words(recs[i].status, st, sizeof(st)), recs[i].msg[0] ? ": " : "", recs[i].msg);
    }
    if (k >= n) /* cut: end on a whole line */
        snprintf(s + n - 16, 16, "...\n");
}

/* After a hang (outcome H, whose line names the stalled rank): every failure is listed as
 * a consequence, with its delay after the first. */
static void consequences(struct bt__run *r, struct frec *recs, int nrec)
{
    char name[32], st[64];
    size_t n = sizeof(r->summary), k = 0;
    long long first = recs[0].t;
    for (int i = 1; i < nrec; i++)
        first = recs[i].t < first ? recs[i].t : first;
    for (int i = 0; i < nrec && k < n; i++) {
        who(&recs[i], name, sizeof(name));
        k += (size_t)snprintf(r->summary + k, n - k,
                              "baton: consequence: %s on node %d failed at +%.3f s (%s)%s%.300s\n",
                              name, recs[i].node, (double)(recs[i].t - first) / 1e9,
                              status_words(recs[i].status, st, sizeof(st)),
                              recs[i].msg[0] ? ": " : "", recs[i].msg);
    }
}

void bt__run_forensics_settle(struct bt__run *r, struct bt__outcome *o)
{
    r->summary[0] = '\0';
    if (o->kind != 'F' && o->kind != 'H')
        return;
    bt__run_flight_publish(r);
    if (r->st)
        settle(r);
    size_t len = 0;
    char *all = gather(r, &len);
    size_t used = strlen(r->summary);
    bt__run_flight_analyze(r, r->flight_lines, sizeof(r->flight_lines));
    if (!all) {
        snprintf(r->summary + used, sizeof(r->summary) - used, "%s", r->flight_lines);
        return;
    }
    struct frec recs[RECS_MAX];
    int nrec = parse_recs(all, recs, RECS_MAX), root = -1;
    for (int i = 0; i < nrec; i++)
        if (root < 0 || recs[i].t < recs[root].t ||
            (recs[i].t == recs[root].t && recs[i].rank < recs[root].rank))
            root = i;
    if (root >= 0 && o->kind == 'H') { /* the stalled rank is the cause: these followed it */
        consequences(r, recs, nrec);
        used = strlen(r->summary);
        snprintf(r->summary + used, sizeof(r->summary) - used, "%s", r->flight_lines);
    } else if (root >= 0) {
        summarize(r, recs, nrec, root);
        used = strlen(r->summary);
        snprintf(r->summary + used, sizeof(r->summary) - used, "%s", r->flight_lines);
        /* A hang's line names the stalled rank: kept. A root cause that baton's teardown
         * stopped has no status of its own: the job's is then the first failure posted (the
         * same on every node), never a race between its exit and the teardown. */
        if (o->kind == 'F' && recs[root].status >= 0)
            o->status = recs[root].status;
        if (o->kind == 'F')
            snprintf(o->line, sizeof(o->line), "%s", recs[root].line);
    }
    free(all);
}

/* BATON_TERMINATION_LOG, or /dev/termination-log inside a pod; NULL outside one. */
static const char *termlog_path(void)
{
    const char *p = getenv("BATON_TERMINATION_LOG");
    if (p && *p)
        return p;
    return getenv("KUBERNETES_SERVICE_HOST") ? "/dev/termination-log" : NULL;
}

void bt__run_forensics_report(struct bt__run *r, const struct bt__outcome *o, int status)
{
    char text[TERMLOG_MAX + 1];
    const char *path = termlog_path();
    if (!path)
        return;
    int n = snprintf(text, sizeof(text),
                     "baton: job failed: %s\n%sbaton: node %d (host %s) exits "
                     "with status %d\n",
                     o->line, r->summary, r->spec.node_rank, r->host, status);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len)
        fprintf(stderr,
                "baton: WARN: cannot write the failure summary to the termination-message path "
                "%s: %s; hint: set BATON_TERMINATION_LOG to the pod's terminationMessagePath\n",
                path, strerror(errno));
    if (fd >= 0)
        close(fd);
}
