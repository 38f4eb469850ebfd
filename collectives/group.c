/* group.c: grouped calls, bt_group_start and bt_group_end (NCCL's ncclGroupStart/End).
 *
 * Between the two, every call a thread makes on any communicator is checked as usual and then
 * recorded instead of queued (bt__coll_submit hands it here): a nonblocking call returns its
 * request at once (state GROUPED), a blocking call returns BT_OK at once and is owned by the
 * group. bt_group_end then issues the recorded calls, communicator by communicator (in the
 * order each first appeared in the group), each communicator's calls pushed onto its queue
 * under one hold of its lock:
 *   1. the collectives, in issue order, where every run of two or more consecutive
 *      bt_allreduce/bt_iallreduce calls with the same dtype and op becomes one fused request
 *      (coll.c's bt__coll_run_fused: packed into one buffer, one allreduce, unpacked; on NCCL
 *      the parts go between ncclGroupStart and ncclGroupEnd instead);
 *   2. then every send and receive of the group, together, so they run as one set of messages
 *      (exchange.c): a send and a receive between the same two ranks in one group never
 *      deadlock, whatever the order or size.
 * Every rank must make the same grouped calls on a communicator (as for all its calls), so
 * every rank fuses and orders them alike.
 *
 * bt_group_end waits for the blocking calls of the group and returns the first error among
 * them; the nonblocking ones are waited for as usual. The group is per thread; groups do not
 * nest. Bad usage (end without start, a start inside an open group, bt_wait/bt_test on a
 * request of the open group, a split inside a group) is BT_ERR_INVALID_USAGE with a WARN line
 * and the story in bt_last_error(NULL) (group calls have no communicator).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/progress.h"
#include "common/log.h"

struct gitem {
    struct bt_comm *c;
    struct bt_request *r;
};

static __thread struct {
    int open;
    struct gitem *v;
    int n, cap;
} grp;

static int usage(const char *msg)
{
    BT_WARN(COLL, "%s", msg);
    bt__thread_error(BT_ERR_INVALID_USAGE, msg);
    return BT_ERR_INVALID_USAGE;
}

int bt__group_open(void)
{
    return grp.open;
}

int bt_group_start(void)
{
    if (grp.open)
        return usage("bt_group_start: a group is already open in this thread (groups do not "
                     "nest); hint: call bt_group_end first");
    grp.open = 1;
    grp.n = 0;
    return BT_OK;
}

int bt__group_add(struct bt_comm *c, const char *name, bt__run_fn run, const struct bt__call *a,
                  bt_request **out)
{
    if (grp.n == grp.cap) {
        int cap = grp.cap ? 2 * grp.cap : 16;
        struct gitem *v = realloc(grp.v, sizeof(*v) * (size_t)cap);
        if (!v)
            return bt__comm_usage(c, BT_ERR_SYSTEM, "%s: out of memory in a group", name);
        grp.v = v, grp.cap = cap;
    }
    struct bt_request *r = bt__request_grouped(c, name, run, a);
    if (!r)
        return bt__comm_usage(c, BT_ERR_SYSTEM, "%s: out of memory for a request", name);
    r->grouped = !out;
    grp.v[grp.n++] = (struct gitem){c, r};
    if (out)
        *out = r;
    return BT_OK;
}

void bt__group_forget(struct bt_comm *c)
{
    int k = 0;
    for (int i = 0; i < grp.n; i++) {
        struct bt_request *r = grp.v[i].r;
        if (grp.v[i].c != c) {
            grp.v[k++] = grp.v[i];
            continue;
        }
        bt__err_reset(&r->err, BT_ERR_INVALID_USAGE,
                      "%s: its communicator was finalized inside the open group that held it",
                      r->name);
        r->state = BT_REQ_DONE;
        if (r->grouped)
            bt_request_free(r); /* the group's own: nobody else holds it */
    }
    grp.n = k;
}

static int is_p2p(const struct bt_request *r)
{
    return r->call.kind == BT_COLL_SEND || r->call.kind == BT_COLL_RECV;
}

/* An allreduce that may be fused with the one before it (same dtype and op). */
static int fusable(const struct bt_request *r, const struct bt_request *prev)
{
    return r->run == bt__coll_dispatch && r->call.kind == BT_COLL_ALLREDUCE && prev &&
           prev->run == bt__coll_dispatch && prev->call.kind == BT_COLL_ALLREDUCE &&
           prev->call.dtype == r->call.dtype && prev->call.op == r->call.op;
}

/* One fused request of c for the n allreduces m[0..n); NULL when out of memory. */
static struct bt_request *fuse(struct bt_comm *c, struct bt_request **m, int n)
{
    void *block = malloc((sizeof(struct bt_request *) + sizeof(struct bt__call *)) * (size_t)n);
    if (!block)
        return NULL;
    struct bt_request **members = block;
    const struct bt__call **parts = (const struct bt__call **)(members + n);
    struct bt__call a = {.kind = BT_COLL_ALLREDUCE, .dtype = m[0]->call.dtype, .op = m[0]->call.op};
    for (int i = 0; i < n; i++) {
        members[i] = m[i], parts[i] = &m[i]->call;
        a.count += m[i]->call.count;
    }
    a.parts = parts, a.nparts = n;
    struct bt_request *f = bt__request_grouped(c, "allreduce_group", bt__coll_run_fused, &a);
    if (!f) {
        free(block);
        return NULL;
    }
    f->members = members, f->nmembers = n, f->freed = 1;
    return f;
}

/* The requests to queue on c for the group's items of c: collectives (fused), then p2p.
 * Writes them to out (room for grp.n) and returns how many, or -1 when out of memory. */
static int plan(struct bt_comm *c, struct bt_request **out, struct bt_request **run)
{
    int k = 0;
    for (int i = 0; i < grp.n; i++) {
        if (grp.v[i].c != c || is_p2p(grp.v[i].r))
            continue;
        int nrun = 0;
        struct bt_request *r = grp.v[i].r;
        run[nrun++] = r;
        for (int j = i + 1; j < grp.n; j++) { /* the consecutive calls of c that fuse with r */
            if (grp.v[j].c != c || is_p2p(grp.v[j].r))
                continue; /* sends and receives go last anyway */
            if (!fusable(grp.v[j].r, run[nrun - 1]))
                break;
            run[nrun++] = grp.v[j].r;
            grp.v[j].c = NULL; /* taken */
        }
        if (nrun == 1) {
            out[k++] = r;
        } else if (!(out[k++] = fuse(c, run, nrun))) {
            return -1;
        }
    }
    for (int i = 0; i < grp.n; i++)
        if (grp.v[i].c == c && is_p2p(grp.v[i].r))
            out[k++] = grp.v[i].r;
    return k;
}

/* Issues the group's calls, communicator by communicator. */
static int issue_all(void)
{
    struct bt_request **out = malloc(sizeof(*out) * (size_t)grp.n * 2);
    if (!out && grp.n)
        return usage("bt_group_end: out of memory");
    struct bt_comm **done = calloc((size_t)grp.n + 1, sizeof(*done));
    int ndone = 0, rc = BT_OK;
    for (int i = 0; i < grp.n && done; i++) {
        struct bt_comm *c = grp.v[i].c;
        int seen = !c;
        for (int j = 0; j < ndone && !seen; j++)
            seen = done[j] == c;
        if (seen)
            continue;
        done[ndone++] = c;
        int k = plan(c, out, out + grp.n);
        if (k < 0) {
            rc = bt__comm_usage(c, BT_ERR_SYSTEM, "bt_group_end: out of memory");
            k = 0;
        }
        bt__queue_push(c, out, k);
    }
    if (!done)
        rc = usage("bt_group_end: out of memory");
    free(done);
    free(out);
    return rc;
}

int bt_group_end(void)
{
    if (!grp.open)
        return usage("bt_group_end: no group is open in this thread; hint: call bt_group_start "
                     "first");
    int n = grp.n;
    struct bt_request **keep = malloc(sizeof(*keep) * (size_t)(n ? n : 1));
    for (int i = 0; keep && i < n; i++)
        keep[i] = grp.v[i].r;
    int rc = keep ? issue_all() : usage("bt_group_end: out of memory");
    free(grp.v); /* thread-local: nothing would free it when the thread ends */
    grp.v = NULL;
    grp.open = grp.n = grp.cap = 0;
    int first = rc;
    for (int i = 0; keep && i < n; i++) {
        if (!keep[i]->grouped)
            continue;
        int w = bt_wait(keep[i]);
        if (w != BT_OK && first == BT_OK)
            first = w;
        bt_request_free(keep[i]);
    }
    free(keep);
    return first;
}
