/* run_stall.c: a hang in words. Which rank stalled, where, and who waited for it.
 *
 * Two sources meet here. Each launcher looks at its own workers once a second
 * (/proc/PID/stat): a worker in state T (stopped: SIGSTOP, SIGTSTP, a job-control stop) is
 * named on stderr once and published as l/<g>/stopped/<rank> = "node N, host H, pid P", so a
 * launcher on another node can name its state too. And a rank whose collective waited past
 * BATON_STALL_WARN or BATON_TIMEOUT records, first one wins, w/<g>/stall =
 * "RANK\tNODE\tCOLL #SEQ\tSECONDS\tNAMES" (collectives/comm.c): NAMES is the transport's list
 * of the ranks it waited for, each entry "R (detail)".
 *
 * When a worker then fails while a stall record exists, the failure is a consequence, not the
 * cause: the outcome is H (hang, exit BT_RUN_EXIT_HANG) and its line names the stalled ranks
 * (node, and where this launcher or the store knows them: host, pid, stopped), the collective
 * they were awaited in, and the failed worker as a consequence. This file does not decide when
 * the job ends: BATON_TIMEOUT in the ranks does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/log.h"
#include "launcher/run.h"

#define STALL_RANKS_MAX 8 /* stalled ranks named in one line */

/* The state letter of /proc/PID/stat (R, S, D, T, t, Z, ...), or 0 when unreadable. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    return p && p[1] == ' ' ? p[2] : 0;
}

/* l/<g>/stopped = the first rank any launcher found stopped (first writer wins): the cause a
 * hang names, whichever rank's collective timed out first (in a hierarchical collective that
 * is often a rank waiting for its node leader, itself waiting for the stopped rank). */
static void publish_first_stopped(struct bt__run *r, int rank)
{
    char key[48], val[16];
    snprintf(key, sizeof(key), "l/%d/stopped", r->restart);
    snprintf(val, sizeof(val), "%d", rank);
    if (bt__store_compare_set(r->st, key, "", 0, val, strlen(val), NULL, NULL) != BT_OK)
        BT_INFO(LAUNCH, "publishing %s: %s", key, bt__store_error(r->st));
}

void bt__run_stall_scan(struct bt__run *r)
{
    for (int i = 0; i < r->nproc; i++) {
        struct bt__worker *w = &r->w[i];
        if (!w->running || w->pid <= 0 || w->stopped_seen || proc_state(w->pid) != 'T')
            continue;
        w->stopped_seen = 1;
        fprintf(stderr,
                "baton: rank %d (node %d, pid %d) is stopped (state T: SIGSTOP or a job-control "
                "stop); the others wait for it until it is continued (SIGCONT) or BATON_TIMEOUT "
                "ends the job\n",
                w->rank, r->spec.node_rank, (int)w->pid);
        if (!r->st)
            continue;
        char key[64], val[BT_SPEC_HOST_MAX + 64];
        snprintf(key, sizeof(key), "l/%d/stopped/%d", r->restart, w->rank);
        snprintf(val, sizeof(val), "node %d, host %s, pid %d", r->spec.node_rank, r->host,
                 (int)w->pid);
        if (bt__store_set(r->st, key, val, strlen(val)) != BT_OK)
            BT_INFO(LAUNCH, "publishing %s: %s", key, bt__store_error(r->st));
        publish_first_stopped(r, w->rank);
    }
}

/* The ranks at the start of NAMES' entries ("2 (pid 9, ...), 3 (...)"), up to max; detail[i]
 * points at the text in entry i's parentheses. */
static int parse_ranks(const char *names, int *ranks, const char **detail, int max)
{
    int n = 0;
    for (const char *p = names; *p && n < max; p++) {
        if (p != names && strncmp(p - 2, ", ", 2) != 0)
            continue;
        char *end;
        long v = strtol(p, &end, 10);
        if (end != p && strncmp(end, " (", 2) == 0 && v >= 0 && v < 1 << 24) {
            detail[n] = end + 2;
            ranks[n++] = (int)v;
        }
    }
    return n;
}

/* The node of global rank g, from the layout of this generation; -1 when out of range. */
static int node_of(const struct bt__run *r, int g)
{
    for (int i = 0; r->node_first && i < r->spec.nnodes; i++)
        if (g >= r->node_first[i] && g < r->node_first[i + 1])
            return i;
    return r->node_first ? -1 : 0;
}

/* "rank 2 (node 0, host h, pid 9, stopped: SIGSTOP; at collective #4)" into out: what this
 * launcher or the store knows, then what the waiting rank saw (detail, up to its ')'). */
static void describe_stalled(const struct bt__run *r, int g, const char *detail, char *out,
                             size_t n)
{
    int local = g - r->first_rank, dl = (int)strcspn(detail, ")");
    if (local >= 0 && local < r->nproc) {
        const struct bt__worker *w = &r->w[local];
        char st = w->running ? proc_state(w->pid) : 0;
        snprintf(out, n, "rank %d (node %d, host %.64s, pid %d%s%s%.*s)", g, r->spec.node_rank,
                 r->host, (int)w->pid, st == 'T' || w->stopped_seen ? ", stopped: SIGSTOP" : "",
                 dl ? "; " : "", dl < 96 ? dl : 96, detail);
        return;
    }
    char key[64];
    void *v = NULL;
    size_t len;
    snprintf(key, sizeof(key), "l/%d/stopped/%d", r->restart, g);
    if (r->st && bt__store_get(r->st, key, &v, &len, 0) == BT_OK)
        snprintf(out, n, "rank %d (%.160s, stopped: SIGSTOP%s%.*s)", g, (char *)v, dl ? "; " : "",
                 dl < 64 ? dl : 64, detail);
    else
        snprintf(out, n, "rank %d (node %d%s%.*s)", g, node_of(r, g), dl ? "; " : "",
                 dl < 96 ? dl : 96, detail);
    free(v);
}

/* The line of outcome H from a stall record (see the file's header) and the worker w whose
 * failure is its consequence; stopped >= 0: a rank a launcher found stopped, named as the
 * cause instead of the ranks the record's rank waited for. */
static void hang_line(const struct bt__run *r, char *rec, int stopped, const struct bt__worker *w,
                      struct bt__outcome *o)
{
    char *f[5] = {0}, *save = NULL, who[BT_RUN_OUTCOME_MAX / 2] = "", one[256];
    int nf = 0, ranks[STALL_RANKS_MAX];
    const char *detail[STALL_RANKS_MAX];
    for (char *t = strtok_r(rec, "\t", &save); t && nf < 5; t = strtok_r(NULL, "\t", &save))
        f[nf++] = t;
    if (nf < 5) {
        snprintf(who, sizeof(who), "rank(s) %s", rec);
        f[0] = "?", f[1] = "?", f[2] = "a collective", f[3] = "?";
    } else if (stopped >= 0) { /* with what the waiting rank saw of it, when it names it */
        int k = parse_ranks(f[4], ranks, detail, STALL_RANKS_MAX), i = 0;
        while (i < k && ranks[i] != stopped)
            i++;
        describe_stalled(r, stopped, i < k ? detail[i] : "", who, sizeof(who));
    } else {
        int k = parse_ranks(f[4], ranks, detail, STALL_RANKS_MAX);
        size_t used = 0;
        for (int i = 0; i < k && used < sizeof(who) - 1; i++) {
            describe_stalled(r, ranks[i], detail[i], one, sizeof(one));
            used += (size_t)snprintf(who + used, sizeof(who) - used, "%s%s", i ? ", " : "", one);
        }
        if (k == 0)
            snprintf(who, sizeof(who), "rank(s) %s", f[4]);
    }
    snprintf(o->line, sizeof(o->line),
             "job hung: %s stalled; rank %s (node %s) waited for it in %s for %s s; rank %d "
             "(node %d, pid %d) %s %d because of it (a consequence, not the cause); hint: a "
             "stopped or stuck process, or a rank that never called that collective "
             "(BATON_TIMEOUT sets the limit)",
             who, f[0], f[1], f[2], f[3], w->rank, r->spec.node_rank, (int)w->pid,
             WIFSIGNALED(w->status) ? "was killed by signal" : "exited with code",
             WIFSIGNALED(w->status) ? WTERMSIG(w->status) : WEXITSTATUS(w->status));
}

/* The rank in l/<g>/stopped, or -1. */
static int first_stopped(const struct bt__run *r)
{
    char key[48];
    void *v = NULL;
    size_t len;
    int rank = -1;
    snprintf(key, sizeof(key), "l/%d/stopped", r->restart);
    if (bt__store_get(r->st, key, &v, &len, 0) == BT_OK)
        rank = atoi(v);
    free(v);
    return rank;
}

int bt__run_stall_outcome(struct bt__run *r, const struct bt__worker *w, struct bt__outcome *o)
{
    char key[64];
    void *v = NULL;
    size_t len;
    if (!r->st || w->ps_index >= 0)
        return 0;
    snprintf(key, sizeof(key), "w/%d/stall", r->restart);
    if (bt__store_get(r->st, key, &v, &len, 0) != BT_OK)
        return 0;
    o->kind = 'H';
    o->status = BT_RUN_EXIT_HANG;
    hang_line(r, v, first_stopped(r), w, o);
    free(v);
    return 1;
}
