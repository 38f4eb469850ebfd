/* run_elastic.c: elastic membership (--nnodes MIN:MAX, PET_NNODES=min:max): each generation is
 * formed from the nodes present, and a lost node or a new one starts the next generation.
 *
 * A launcher's identity is the node rank it was given (--node-rank, the pod's index): node 0
 * hosts the store, two launchers may not hold one identity in one generation. Its node rank
 * in a generation is assigned by the rendezvous. Keys (generation g = BATON_RESTART_COUNT):
 *
 *   l/job           "E MIN MAX JOB_ID": the first launcher sets it; another job is refused
 *   l/gen           the newest generation any launcher entered; a launcher that finds it ahead
 *                   of its own moves up, one that is ahead (a store that restarted empty)
 *                   moves it up
 *   l/<g>/id/<ID>   "PID HOST": COMPARE_SET from empty claims identity ID in g
 *   l/<g>/joined    counter: the join order k of each launcher
 *   l/<g>/m/<k>     "ID NPROC PID MASTER_PORT WPORT PREV_GEN PREV_RANK ADDR HOST": the k-th
 *                   record (WPORT: etcd jobs, the node's store for workers; else 0)
 *   l/<g>/closed    "N": COMPARE_SET from empty by the first launcher that sees the generation
 *                   complete: N == MAX, N == the nodes expected (the survivors of the last
 *                   generation, plus its joiners), or N >= MIN and the last call (--rdzv-last-
 *                   call, from the moment MIN were there) is over. Records k <= N are in it;
 *                   a later one waits for g + 1
 *   l/<g>/joinreq   counter of launchers waiting for g + 1; the nodes of g tell their workers
 *                   (BATON_ELASTIC_FILE: state=closing), wait BATON_ELASTIC_GRACE, then post
 *                   outcome M; sooner when every node's workers acknowledged (each created
 *                   BATON_ELASTIC_FILE.ack.<local rank>; the node counts itself in l/<g>/acked)
 *   l/end           the job's final outcome, for a launcher still waiting to join
 *
 * Node ranks are dense (0..N-1) and stable: a node of the last generation keeps its rank when
 * it is below N (first come, first kept); the others take the free ranks in the order of their
 * old rank, then identity. Global ranks follow as prefix sums of NPROC. MASTER_ADDR and
 * MASTER_PORT are node rank 0's (its address as the store saw it, a port free there).
 *
 * Outcomes L (a node lost: its will, or its heartbeat lease ran out) and M end a generation
 * without using up --max-restarts; F and H do. Fewer than MIN nodes for --join-timeout: exit
 * 142 (retryable) naming the nodes of the last generation that did not come back.
 *
 * In place (BATON_ELASTIC_INPLACE=1): L and M leave the workers running (run_supervise.c keeps
 * them as it keeps the --ps servers); BATON_ELASTIC_FILE then tells them the new generation,
 * their first rank and MASTER_ADDR/MASTER_PORT (a new free port each generation), and they
 * re-form their process group themselves. Each worker says it took up generation g by writing
 * g to BATON_ELASTIC_FILE.gen.<local rank>; a kept one that has not within BATON_ELASTIC_ADOPT
 * is killed and started again (run_supervise.c). The launcher starts its workers before it
 * joins (state=waiting: bt__run_elastic_early), so their start overlaps the rendezvous.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

#define POLL_S 0.1 /* forming: how long one GET of l/<g>/closed blocks before the next look */
#define PROGRESS_EVERY_S 5.0
#define MEMBERS_TIMEOUT_S 5.0 /* the records of a closed generation are there by then */

/* Seconds the workers get between "state=closing" in BATON_ELASTIC_FILE and the end of the
 * generation that admits a joiner. */
BT_PARAM_DBL(elastic_grace_s, "BATON_ELASTIC_GRACE", 2.0)
/* In place: seconds a worker kept from the last generation gets to write the new generation to
 * BATON_ELASTIC_FILE.gen.<local rank> (it left the old process group and is joining the new
 * one) before it is killed and started again. */
BT_PARAM_DBL(elastic_adopt_s, "BATON_ELASTIC_ADOPT", 30.0)

double bt__run_elastic_adopt_s(void)
{
    return bt__param_elastic_adopt_s();
}

/* 1: membership changes keep the workers running (in place); see docs/elastic.md. */
BT_PARAM_INT(elastic_inplace, "BATON_ELASTIC_INPLACE", 0)

int bt__run_elastic_inplace(void)
{
    return bt__param_elastic_inplace() != 0;
}

static int store_err(struct bt__run *r, struct bt__err *err)
{
    return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
}

/* GET with no wait: 1 and *v (malloc'd) when key exists, 0 when not, -1 on a store error. */
static int peek(struct bt__store *st, const char *key, char **v)
{
    size_t len;
    void *val = NULL;
    int rc = bt__store_get(st, key, &val, &len, 0);
    *v = val;
    return rc == BT_OK ? 1 : rc == BT_ERR_TIMEOUT && !bt__store_broken(st) ? 0 : -1;
}

static int peek_int(struct bt__store *st, const char *key, int *out)
{
    char *v = NULL;
    int rc = peek(st, key, &v);
    if (rc == 1)
        *out = atoi(v);
    free(v);
    return rc;
}

/* ---- the job's identity ---- */

int bt__run_elastic_open(struct bt__run *r, struct bt__err *err)
{
    char mine[sizeof(r->job_id) + 48], line[BT__ERR_MSG_MAX];
    void *v = NULL;
    size_t len;
    snprintf(mine, sizeof(mine), "E %d %d %s", r->spec.nnodes_min, r->spec.nnodes_max, r->job_id);
    if (bt__store_compare_set(r->st, "l/job", "", 0, mine, strlen(mine), &v, &len) != BT_OK)
        return store_err(r, err);
    int same = !strcmp(v, mine);
    snprintf(line, sizeof(line),
             "node %d (host %.64s, pid %d) says the job is '%.100s' with --nnodes %d:%d; the "
             "store holds '%.200s' (E MIN MAX JOB_ID for an elastic job)",
             r->node_id, r->host, (int)getpid(), r->job_id, r->spec.nnodes_min, r->spec.nnodes_max,
             (char *)v);
    free(v);
    if (same && r->etcd && peek(r->st, "l/end", (char **)&v) == 1) { /* etcd outlives jobs */
        free(v);
        r->refused = 1;
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "etcd already holds a finished job '%s' (its key l/end); hint: give "
                           "each run its own job id (BATON_JOB_ID) or remove the old one: "
                           "etcdctl del --prefix /baton/%s/",
                           r->job_id, r->job_id);
    }
    if (same)
        return BT_OK;
    bt__run_post_refusal(r, line);
    r->refused = 1;
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "refused by the rendezvous: %s; hint: give every node the same "
                       "--nnodes MIN:MAX and job name, or another --rdzv",
                       line);
}

/* ---- the workers' file ---- */

void bt__run_elastic_file(const struct bt__run *r, const char *state, const char *reason,
                          double grace_s)
{
    char tmp[PATH_MAX + 8];
    struct timespec now;
    if (!r->elastic_file[0])
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(tmp, sizeof(tmp), "%s.tmp", r->elastic_file);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return;
    fprintf(f,
            "generation=%d\nstate=%s\nnnodes=%d\nworld_size=%d\nnode_rank=%d\ndeadline=%.3f\n"
            "reason=%s\nfirst_rank=%d\nlocal_world_size=%d\nmaster_addr=%s\nmaster_port=%d\n"
            "rdzv=%s\n",
            r->restart, state, r->spec.nnodes, r->world_size, r->spec.node_rank,
            grace_s > 0 ? (double)now.tv_sec + now.tv_nsec / 1e9 + grace_s : 0.0, reason,
            r->first_rank, r->nproc, r->master_addr, r->master_port, r->rdzv_env);
    if (fclose(f) == 0)
        rename(tmp, r->elastic_file);
    else
        unlink(tmp);
}

/* ---- forming a generation ---- */

/* l/gen against this launcher's generation: moves r->restart up to the store's, or the store's
 * up to r->restart (a store that came back empty). */
static int sync_gen(struct bt__run *r, struct bt__err *err)
{
    for (int tries = 0; tries < 100; tries++) {
        int g = -1;
        char want[16], have[16];
        if (peek_int(r->st, "l/gen", &g) < 0)
            return store_err(r, err);
        if (g >= r->restart) {
            r->restart = g;
            return BT_OK;
        }
        snprintf(have, sizeof(have), "%d", g);
        snprintf(want, sizeof(want), "%d", r->restart);
        if (bt__store_compare_set(r->st, "l/gen", g < 0 ? "" : have, g < 0 ? 0 : strlen(have), want,
                                  strlen(want), NULL, NULL) != BT_OK)
            return store_err(r, err);
    }
    return bt__err_set(err, BT_ERR_INTERNAL, "l/gen keeps moving");
}

static void gkey(const struct bt__run *r, char *out, size_t n, const char *what)
{
    snprintf(out, n, "l/%d/%s", r->restart, what);
}

/* "node 1 (host h, pid 12)" for each node of the last generation not in ids[0..n), or "". */
static void missing_nodes(const struct bt__run *r, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < r->nmembers; i++) {
        const struct bt__elastic_member *m = &r->members[i];
        char key[64], *v = NULL;
        snprintf(key, sizeof(key), "l/%d/id/%d", r->restart, m->id);
        int here = peek(r->st, key, &v) == 1;
        free(v);
        char pod[BT_SPEC_HOST_MAX];
        bt__run_node_name(&r->spec, m->id, pod, sizeof(pod));
        if (!here && k < cap)
            k += (size_t)snprintf(out + k, cap - k, "%snode %d (%s%.64s%shost %s, pid %d)",
                                  k ? ", " : "", m->id, pod[0] ? "pod " : "", pod,
                                  pod[0] ? ", " : "", m->host, m->pid);
    }
}

static int too_few(struct bt__run *r, int n, struct bt__err *err)
{
    char who[BT__ERR_MSG_MAX / 2];
    missing_nodes(r, who, sizeof(who));
    return bt__err_set(err, BT_ERR_TIMEOUT,
                       "gave up after %.0f s (--join-timeout) with %d of at least %d nodes "
                       "(--nnodes %d:%d) in generation %d; missing: %s; hint: restart the lost "
                       "nodes or lower MIN",
                       r->o.join_timeout_s, n, r->spec.nnodes_min, r->spec.nnodes_min,
                       r->spec.nnodes_max, r->restart,
                       who[0] ? who : "nodes that never joined (none of an earlier generation)");
}

enum { ADMITTED = 0, NEXT = 1 };

/* The job ended while this launcher waited (l/end): -1 with err, r->ended_status its status;
 * else 0. */
static int job_ended(struct bt__run *r, struct bt__err *err)
{
    char *v = NULL;
    struct bt__outcome o;
    int rc = peek(r->st, "l/end", &v);
    if (rc == 1 && bt__run_outcome_parse(v, &o) == 0) {
        r->ended_status = o.status;
        bt__err_set(err, BT_ERR_INVALID_USAGE, "the job ended before node %d could join: %s",
                    r->node_id, o.line);
    }
    free(v);
    return rc == 1 ? -1 : 0;
}

/* Generation r->restart runs already: ask for the next one and wait for its start. */
static int wait_next(struct bt__run *r, int64_t dl, struct bt__err *err)
{
    char key[64];
    int64_t n = 0;
    gkey(r, key, sizeof(key), "joinreq");
    if (bt__store_add(r->st, key, 1, &n) != BT_OK)
        return store_err(r, err);
    fprintf(stderr,
            "baton: node %d: generation %d is running; asked to join the next one (the "
            "running workers get BATON_ELASTIC_GRACE to checkpoint)\n",
            r->node_id, r->restart);
    if (bt__run_elastic_early(r, err) != BT_OK)
        return -1;
    gkey(r, key, sizeof(key), "outcome");
    for (;;) {
        void *v = NULL;
        size_t len;
        int rc = bt__store_get(r->st, key, &v, &len, 1.0);
        free(v);
        if (rc == BT_OK)
            break;
        if (rc != BT_ERR_TIMEOUT || bt__store_broken(r->st))
            return store_err(r, err);
        if (job_ended(r, err) < 0)
            return -1;
        if (bt__run_abort)
            return bt__err_set(err, BT_ERR_REMOTE, "interrupted while waiting to join");
        if (bt__now_ns() >= dl)
            return bt__err_set(err, BT_ERR_TIMEOUT,
                               "gave up after %.0f s (--join-timeout) waiting for generation %d "
                               "to admit node %d",
                               r->o.join_timeout_s, r->restart, r->node_id);
    }
    r->restart++;
    return NEXT;
}

/* Claims identity r->node_id in this generation; a second launcher with it is refused. */
static int claim_id(struct bt__run *r, struct bt__err *err)
{
    char key[64], rec[BT_SPEC_HOST_MAX + 32], *v = NULL;
    size_t len;
    snprintf(key, sizeof(key), "l/%d/id/%d", r->restart, r->node_id);
    snprintf(rec, sizeof(rec), "%d %s", (int)getpid(), r->host);
    if (bt__store_compare_set(r->st, key, "", 0, rec, strlen(rec), (void **)&v, &len) != BT_OK)
        return store_err(r, err);
    int pid = 0;
    char other[BT_SPEC_HOST_MAX] = "?";
    int taken = strcmp(v, rec) != 0;
    if (taken)
        sscanf(v, "%d %255s", &pid, other);
    free(v);
    if (!taken)
        return BT_OK;
    r->refused = 1;
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "node %d is already taken in generation %d of job '%s' by host %s (pid "
                       "%d)%s; hint: give each launcher its own --node-rank",
                       r->node_id, r->restart, r->job_id, other, pid,
                       r->prev_gen >= 0 ? " (this launcher was declared lost earlier: stopped "
                                          "or cut off? a replacement took its place)"
                                        : "");
}

/* The generation runs: is this launcher's identity one of its nodes already? Its holder may
 * be dead and not yet declared lost (a pod replaced at once): the generation's outcome is
 * waited for (the heartbeat timeout and 2 s), then NEXT; a holder still alive then is a
 * second launcher with the same identity: -1 (refused). 0: free. */
static int id_held(struct bt__run *r, struct bt__err *err)
{
    char key[64], *v = NULL;
    void *o = NULL;
    size_t len;
    int pid = 0;
    snprintf(key, sizeof(key), "l/%d/id/%d", r->restart, r->node_id);
    int rc = peek(r->st, key, &v);
    if (rc == 1 && sscanf(v, "%d", &pid) == 1 && pid == (int)getpid())
        rc = 0;
    free(v);
    if (rc <= 0)
        return rc < 0 ? store_err(r, err), -1 : 0;
    gkey(r, key, sizeof(key), "outcome");
    int64_t dl = bt__deadline_in(bt__run_heartbeat_timeout() + 2);
    while ((rc = bt__store_get(r->st, key, &o, &len, 0.5)) == BT_ERR_TIMEOUT &&
           !bt__store_broken(r->st) && !bt__run_abort && bt__now_ns() < dl)
        ;
    free(o);
    if (rc == BT_OK) {
        r->restart++;
        return NEXT;
    }
    if (rc != BT_ERR_TIMEOUT)
        return store_err(r, err), -1;
    return claim_id(r, err) == BT_OK ? 0 : -1; /* refused, naming the holder */
}

/* Registers this launcher's record; *k gets its join order. */
static int register_member(struct bt__run *r, int64_t *k, struct bt__err *err)
{
    char key[64], rec[BT_SPEC_HOST_MAX + 160], addr[64] = "127.0.0.1", will[BT_RUN_OUTCOME_MAX];
    bt__run_lost_will(r, key, sizeof(key), will, sizeof(will));
    /* An earlier generation's will goes first (a connection holds at most two). */
    if (bt__store_last_will(r->st, "x", "", 0) != BT_OK ||
        bt__store_last_will(r->st, key, will, strlen(will)) != BT_OK)
        return store_err(r, err);
    gkey(r, key, sizeof(key), "joined");
    if (bt__store_add(r->st, key, 1, k) != BT_OK)
        return store_err(r, err);
    if (bt__run_local_addr(r, addr, sizeof(addr)) != 0)
        snprintf(addr, sizeof(addr), "%.63s", r->store_host);
    snprintf(rec, sizeof(rec), "%d %d %d %d %d %d %d %s %.64s", r->node_id, r->nproc, (int)getpid(),
             r->spec.master_port > 0 && !r->inplace ? r->spec.master_port : bt__run_free_port(),
             r->wport, r->prev_gen, r->prev_rank, addr, r->host);
    snprintf(key, sizeof(key), "l/%d/m/%" PRId64, r->restart, *k);
    if (bt__store_set(r->st, key, rec, strlen(rec)) != BT_OK)
        return store_err(r, err);
    BT_INFO(LAUNCH, "node %d joined generation %d (number %" PRId64 ")", r->node_id, r->restart,
            *k);
    return BT_OK;
}

/* Closes the generation with n nodes unless someone already did; *closed gets the count. */
static int close_gen(struct bt__run *r, int64_t n, int *closed, struct bt__err *err)
{
    char key[64], val[24];
    void *v = NULL;
    size_t len;
    gkey(r, key, sizeof(key), "closed");
    snprintf(val, sizeof(val), "%" PRId64, n);
    if (bt__store_compare_set(r->st, key, "", 0, val, strlen(val), &v, &len) != BT_OK)
        return store_err(r, err);
    *closed = atoi(v);
    free(v);
    return BT_OK;
}

/* Once MIN are there: close at once when every node expected came, else after the last call. */
static int should_close(struct bt__run *r, int64_t n, int64_t *t_min)
{
    int64_t now = bt__now_ns();
    if (n < r->spec.nnodes_min)
        return 0;
    if (!*t_min) {
        *t_min = now;
        if (n < r->spec.nnodes_max && n < r->expect && r->o.last_call_s > 0)
            fprintf(stderr,
                    "baton: generation %d: %" PRId64 " of %d..%d nodes joined; last call for "
                    "more: %g s (--rdzv-last-call)\n",
                    r->restart, n, r->spec.nnodes_min, r->spec.nnodes_max, r->o.last_call_s);
    }
    return n >= r->spec.nnodes_max || n >= r->expect ||
           now - *t_min >= (int64_t)(r->o.last_call_s * 1e9);
}

/* Waits until the generation is closed (*closed: its size), or it ended or moved (NEXT). */
static int wait_closed(struct bt__run *r, int64_t dl, int *closed, struct bt__err *err)
{
    char kclosed[64], kjoined[64], kout[64];
    int64_t t_min = 0, t0 = bt__now_ns(), last = t0;
    gkey(r, kclosed, sizeof(kclosed), "closed");
    gkey(r, kjoined, sizeof(kjoined), "joined");
    gkey(r, kout, sizeof(kout), "outcome");
    for (;;) {
        void *v = NULL;
        size_t len;
        int64_t n = 0;
        int rc = bt__store_get(r->st, kclosed, &v, &len, POLL_S), g = -1;
        if (rc == BT_OK) {
            *closed = atoi(v);
            free(v);
            return ADMITTED;
        }
        if (rc != BT_ERR_TIMEOUT || bt__store_broken(r->st))
            return store_err(r, err);
        char *o = NULL;
        int ended = peek(r->st, kout, &o);
        free(o);
        if (ended == 1 || (peek_int(r->st, "l/gen", &g) == 1 && g > r->restart)) {
            r->restart = ended == 1 ? r->restart + 1 : g; /* a node died while it formed */
            return NEXT;
        }
        if (bt__store_add(r->st, kjoined, 0, &n) != BT_OK)
            return store_err(r, err);
        if (should_close(r, n, &t_min))
            return close_gen(r, n, closed, err) == BT_OK ? ADMITTED : -1;
        if (job_ended(r, err) < 0)
            return -1;
        if (bt__run_abort)
            return bt__err_set(err, BT_ERR_REMOTE, "interrupted while waiting for the nodes");
        int64_t now = bt__now_ns();
        if (n < r->spec.nnodes_min && now >= dl)
            return too_few(r, (int)n, err);
        if (now - last >= (int64_t)(PROGRESS_EVERY_S * 1e9)) {
            fprintf(stderr,
                    "baton: node %d still waiting (%.0f s of %.0f s): %" PRId64 " of at least "
                    "%d nodes in generation %d\n",
                    r->node_id, (double)(now - t0) / 1e9, r->o.join_timeout_s, n,
                    r->spec.nnodes_min, r->restart);
            last = now;
        }
    }
}

/* ---- ranks ---- */

static int member_parse(const char *v, int k, struct bt__elastic_member *m)
{
    memset(m, 0, sizeof(*m));
    m->k = k;
    m->rank = -1;
    return sscanf(v, "%d %d %d %d %d %d %d %63s %63s", &m->id, &m->nproc, &m->pid, &m->mport,
                  &m->wport, &m->prev_gen, &m->prev_rank, m->addr, m->host) == 9 &&
                   m->nproc > 0
               ? 0
               : -1;
}

/* Where a node that keeps no rank goes in the queue for the free ones. */
static int queue_cmp(const struct bt__elastic_member *a, const struct bt__elastic_member *b, int pg)
{
    int ra = a->prev_gen == pg && a->prev_rank >= 0 ? a->prev_rank : 1 << 30;
    int rb = b->prev_gen == pg && b->prev_rank >= 0 ? b->prev_rank : 1 << 30;
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return a->k < b->k ? -1 : a->k > b->k;
}

/* Dense, stable node ranks for m[0..n) (in join order); see the file's header. */
static void assign_ranks(struct bt__elastic_member *m, int n)
{
    int pg = -1;
    char *taken = calloc((size_t)n, 1);
    if (!taken)
        return;
    for (int i = 0; i < n; i++)
        pg = m[i].prev_gen > pg ? m[i].prev_gen : pg;
    for (int i = 0; pg >= 0 && i < n; i++)
        if (m[i].prev_gen == pg && m[i].prev_rank >= 0 && m[i].prev_rank < n &&
            !taken[m[i].prev_rank])
            taken[m[i].rank = m[i].prev_rank] = 1;
    for (int free_rank = 0;;) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (m[i].rank < 0 && (best < 0 || queue_cmp(&m[i], &m[best], pg) < 0))
                best = i;
        if (best < 0)
            break;
        while (taken[free_rank])
            free_rank++;
        taken[free_rank] = 1;
        m[best].rank = free_rank;
    }
    free(taken);
}

static int by_rank(const void *a, const void *b)
{
    const struct bt__elastic_member *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* The generation's layout from its n records: ranks, prefix sums, this node's place. */
static int layout(struct bt__run *r, struct bt__elastic_member *m, int n, struct bt__err *err)
{
    int *nf = realloc(r->node_first, sizeof(int) * ((size_t)n + 1)), me = -1;
    if (!nf)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    r->node_first = nf;
    assign_ranks(m, n);
    qsort(m, (size_t)n, sizeof(*m), by_rank);
    r->world_size = 0;
    for (int i = 0; i < n; i++) {
        nf[i] = r->world_size;
        r->world_size += m[i].nproc;
        if (m[i].id == r->node_id && m[i].pid == (int)getpid())
            me = i;
    }
    nf[n] = r->world_size;
    if (me < 0)
        return bt__err_set(err, BT_ERR_INTERNAL, "this node is not in its generation's records");
    r->first_rank = nf[me];
    r->spec.node_rank = me;
    r->spec.nnodes = n;
    r->master_port = m[0].mport;
    snprintf(r->master_addr, sizeof(r->master_addr), "%s", m[0].addr);
    if (r->etcd) /* the workers' store: node rank 0's */
        snprintf(r->rdzv_env, sizeof(r->rdzv_env), strchr(m[0].addr, ':') ? "[%s]:%d" : "%s:%d",
                 m[0].addr, m[0].wport);
    free(r->members);
    r->members = m;
    r->nmembers = n;
    return BT_OK;
}

static int read_members(struct bt__run *r, int n, struct bt__err *err)
{
    int rc = BT_OK;
    char **keys = calloc((size_t)n, sizeof(char *));
    void **vals = calloc((size_t)n, sizeof(void *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    struct bt__elastic_member *m = calloc((size_t)n, sizeof(*m));
    for (int i = 0; keys && i < n; i++)
        if (asprintf(&keys[i], "l/%d/m/%d", r->restart, i + 1) < 0)
            keys[i] = NULL;
    if (!keys || !vals || !lens || !m || !keys[n - 1]) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
        goto out;
    }
    if (bt__store_multi_get(r->st, (const char *const *)keys, n, vals, lens, MEMBERS_TIMEOUT_S) !=
        BT_OK) {
        rc = store_err(r, err);
        goto out;
    }
    for (int i = 0; i < n && rc == BT_OK; i++)
        if (member_parse(vals[i], i + 1, &m[i]) != 0)
            rc = bt__err_set(err, BT_ERR_REMOTE, "%s: malformed record '%s'", keys[i],
                             (char *)vals[i]);
    if (rc == BT_OK && (rc = layout(r, m, n, err)) == BT_OK)
        m = NULL; /* r->members owns it */
out:
    for (int i = 0; i < n; i++) {
        free(keys ? keys[i] : NULL);
        free(vals ? vals[i] : NULL);
    }
    free(keys), free(vals), free(lens), free(m);
    return rc;
}

static void announce(const struct bt__run *r)
{
    char ids[512];
    size_t k = 0;
    for (int i = 0; i < r->nmembers && k < sizeof(ids); i++)
        k += (size_t)snprintf(ids + k, sizeof(ids) - k, "%s%d", i ? "," : "", r->members[i].id);
    fprintf(stderr,
            "baton: generation %d: %d node(s) (nodes %s by node rank), world size %d; node %d "
            "has node rank %d, ranks %d..%d\n",
            r->restart, r->spec.nnodes, ids, r->world_size, r->node_id, r->spec.node_rank,
            r->first_rank, r->first_rank + r->nproc - 1);
}

/* One try at generation r->restart: ADMITTED, NEXT, or -1 with err. */
static int try_gen(struct bt__run *r, int64_t dl, struct bt__err *err)
{
    char key[64], *v = NULL;
    int64_t k = 0;
    int closed = 0, rc;
    BT_CHECK(sync_gen(r, err));
    gkey(r, key, sizeof(key), "closed");
    if ((rc = peek(r->st, key, &v)) < 0)
        return store_err(r, err);
    free(v);
    if (rc == 1 && (rc = id_held(r, err)) != 0) /* it runs: a node of it already? */
        return rc;
    if (peek(r->st, key, &v) == 1) /* it runs: wait for the next one */
        return free(v), wait_next(r, dl, err);
    BT_CHECK(claim_id(r, err));
    BT_CHECK(register_member(r, &k, err));
    if ((rc = wait_closed(r, dl, &closed, err)) != ADMITTED)
        return rc;
    if (k > closed) { /* came after the count that closed it */
        bt__store_last_will(r->st, "x", "", 0);
        return wait_next(r, dl, err);
    }
    if ((rc = read_members(r, closed, err)) != BT_OK) {
        struct bt__outcome o = {'L', BT_RUN_EXIT_LOST, ""};
        snprintf(o.line, sizeof(o.line), "generation %d: a node's record is missing: %s",
                 r->restart, err->msg);
        bt__run_post_outcome(r, &o); /* the others stop too; the next generation retries */
        bt__err_clear(err);
        r->restart++;
        return NEXT;
    }
    announce(r);
    return ADMITTED;
}

static void clear_acks(const struct bt__run *r);

int bt__run_elastic_join(struct bt__run *r, struct bt__err *err)
{
    int64_t dl = bt__deadline_in(r->o.join_timeout_s);
    for (;;) {
        int rc = try_gen(r, dl, err);
        if (rc == ADMITTED)
            break;
        if (rc != NEXT)
            return err->code ? err->code : BT_ERR_REMOTE;
    }
    clear_acks(r);
    bt__run_elastic_file(r, "running", "", 0);
    return BT_OK;
}

/* ---- while a generation runs ---- */

/* Every local worker created BATON_ELASTIC_FILE.ack.<local rank> (it checkpointed). */
static int acked(const struct bt__run *r)
{
    char path[PATH_MAX + 32];
    for (int i = 0; i < r->nproc; i++) {
        snprintf(path, sizeof(path), "%s.ack.%d", r->elastic_file, i);
        if (access(path, F_OK) != 0)
            return 0;
    }
    return 1;
}

static void clear_acks(const struct bt__run *r)
{
    char path[PATH_MAX + 32];
    for (int i = 0; i < r->nproc && r->elastic_file[0]; i++) {
        snprintf(path, sizeof(path), "%s.ack.%d", r->elastic_file, i);
        unlink(path);
    }
}

/* ---- in place (BATON_ELASTIC_INPLACE=1) ---- */

int bt__run_elastic_adopted(const struct bt__run *r, int i)
{
    char path[PATH_MAX + 32], buf[32] = "";
    snprintf(path, sizeof(path), "%s.gen.%d", r->elastic_file, i);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int ok = fgets(buf, sizeof(buf), f) && atoi(buf) == r->restart;
    fclose(f);
    return ok;
}

int bt__run_elastic_early(struct bt__run *r, struct bt__err *err)
{
    int idle = 0;
    for (int i = 0; i < r->nproc; i++)
        idle += !r->w[i].running;
    if (!r->inplace || idle == 0)
        return BT_OK;
    bt__run_elastic_file(r, "waiting", "this node waits to be admitted", 0);
    r->early = 1; /* spawn_all starts only those that do not run */
    if (bt__run_spawn_all(r, err) != BT_OK)
        return BT_ERR_SYSTEM;
    r->early = 1; /* the generation's spawn_all keeps them without a deadline */
    BT_INFO(LAUNCH, "in place: started %d worker(s) before their generation formed", idle);
    return BT_OK;
}

/* This node's workers all acknowledged: counted once in l/<g>/acked; 1 when every node's did. */
static int all_acked(struct bt__run *r, struct bt__store *st)
{
    static int counted_gen = -1;
    char key[64];
    int64_t n = 0;
    gkey(r, key, sizeof(key), "acked");
    if (counted_gen != r->restart && acked(r)) {
        if (bt__store_add(st, key, 1, &n) != BT_OK)
            return 0;
        counted_gen = r->restart;
    } else if (bt__store_add(st, key, 0, &n) != BT_OK) {
        return 0;
    }
    return n >= r->spec.nnodes;
}

void bt__run_elastic_watch(struct bt__run *r, struct bt__store *st)
{
    static int64_t end_at;
    char key[64], reason[160];
    int n = 0;
    if (!r->closing) {
        gkey(r, key, sizeof(key), "joinreq");
        if (peek_int(st, key, &n) != 1 || n <= 0)
            return;
        double grace = bt__param_elastic_grace_s();
        snprintf(reason, sizeof(reason), "%d node(s) ask to join", n);
        bt__run_elastic_file(r, "closing", reason, grace);
        fprintf(stderr,
                "baton: node %d: %s; generation %d ends in %g s (BATON_ELASTIC_GRACE; the "
                "workers were told in BATON_ELASTIC_FILE)\n",
                r->node_id, reason, r->restart, grace);
        end_at = bt__deadline_in(grace);
        r->closing = 1;
    }
    if (bt__now_ns() < end_at && !all_acked(r, st))
        return;
    struct bt__outcome o = {'M', 0, ""};
    char val[BT_RUN_OUTCOME_MAX + 32];
    snprintf(o.line, sizeof(o.line), "generation %d closed to admit the node(s) asking to join",
             r->restart);
    snprintf(val, sizeof(val), "M 0\t%s", o.line);
    gkey(r, key, sizeof(key), "outcome");
    bt__store_compare_set(st, key, "", 0, val, strlen(val), NULL, NULL);
}

int bt__run_elastic_next(struct bt__run *r, const struct bt__outcome *o)
{
    int n = r->spec.nnodes;
    char key[64];
    r->prev_gen = r->restart;
    r->prev_rank = r->spec.node_rank;
    if (o->kind == 'L' && !r->store_lost) {
        r->expect = n - 1; /* a store that went away comes back with its node: n */
    } else if (o->kind == 'M') {
        int j = 0;
        gkey(r, key, sizeof(key), "joinreq");
        if (r->st)
            peek_int(r->st, key, &j);
        r->expect = n + j;
    } else {
        r->expect = n;
    }
    if (r->expect > r->spec.nnodes_max)
        r->expect = r->spec.nnodes_max;
    if (o->kind == 'L' || o->kind == 'M')
        fprintf(stderr,
                "baton: node %d: generation %d ended: %s; re-forming (membership changes do not "
                "count against --max-restarts)\n",
                r->node_id, r->restart, o->line);
    r->restart++;
    return 1;
}

int bt__run_elastic_reconnect(struct bt__run *r, struct bt__err *err)
{
    bt__store_close(r->wst);
    bt__store_close(r->st);
    r->wst = r->st = NULL;
    if (r->etcd)
        fprintf(stderr,
                "baton: node %d: lost etcd (%s); retrying it for up to %.0f s "
                "(--join-timeout)\n",
                r->node_id, r->o.rdzv_endpoint, r->o.join_timeout_s);
    else
        fprintf(stderr,
                "baton: node %d: lost the rendezvous store at %s:%d; retrying it for up to %.0f "
                "s (--join-timeout)\n",
                r->node_id, r->store_host, r->store_port, r->o.join_timeout_s);
    BT_CHECK(bt__run_store_open(r, r->o.join_timeout_s, err));
    return bt__run_elastic_open(r, err);
}

void bt__run_elastic_end(struct bt__run *r, const struct bt__outcome *o)
{
    char val[BT_RUN_OUTCOME_MAX + 32];
    if (!r->st || bt__store_broken(r->st))
        return;
    snprintf(val, sizeof(val), "%c %d\t%s", o->kind, o->status, o->line);
    bt__store_compare_set(r->st, "l/end", "", 0, val, strlen(val), NULL, NULL);
    if (r->elastic_file[0])
        unlink(r->elastic_file);
    clear_acks(r);
    for (int i = 0; i < r->nproc && r->elastic_file[0]; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s.gen.%d", r->elastic_file, i);
        unlink(path);
    }
}
