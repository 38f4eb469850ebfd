/* progress.c: requests, the per-communicator queue and its progress thread; bt_test, bt_wait,
 * bt_waitall, bt_request_free.
 *
 * Ordering: requests of one communicator run one at a time in issue order (the queue is FIFO
 * and a single "busy" flag admits one runner), which is the order every rank must issue them
 * in, like MPI's collective ordering rule. Requests of different communicators run
 * independently: each communicator that ever saw a nonblocking call (or a group, group.c) has
 * its own progress thread, so a rank can have requests outstanding on several communicators
 * issued in different orders on different ranks without deadlock.
 *
 * Who runs a request: the progress thread, or a thread in bt_wait (or in a blocking call),
 * which runs the requests ahead of its own and then its own rather than sleep while the
 * runner is free. bt_test never runs anything (it does not block).
 *
 * The progress thread is created with the default attributes, so it inherits the CPU
 * affinity of the thread that made the first nonblocking call: the cores `baton run --bind`
 * gave the rank. It sleeps on a condition variable when there is nothing to do; while it
 * runs a collective it waits for peers the way a blocking call does (spin, yield, futex).
 *
 * Errors: the runner copies the communicator's sticky error into the request and into the
 * public copy (pub, failed) that callers read; a request issued after a failure fails with
 * the same code without running.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/flight.h"
#include "collectives/progress.h"
#include "common/log.h"

int bt__queue_init(struct bt_comm *c)
{
    struct bt__queue *q = calloc(1, sizeof(*q));
    if (!q)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "bt_init: out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->done, NULL);
    pthread_cond_init(&q->work, NULL);
    c->q = q;
    return BT_OK;
}

int bt__comm_usage(struct bt_comm *c, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    BT_WARN(COLL, "rank %d: %s", c->rank, msg);
    pthread_mutex_lock(&c->q->mu);
    if (c->q->pub.code == BT_OK) {
        bt__err_set(&c->q->pub, code, "%s", msg);
        atomic_store(&c->q->failed, code);
    }
    pthread_mutex_unlock(&c->q->mu);
    return code;
}

static int is_p2p(const struct bt_request *r)
{
    return r->call.kind == BT_COLL_SEND || r->call.kind == BT_COLL_RECV;
}

/* Runs r on c in this thread (the queue lock is not held). */
static void execute(struct bt_comm *c, struct bt_request *r, int failed)
{
    c->coll_seq = r->seq;
    c->coll_name = r->name;
    if (c->err.code == BT_OK && failed != BT_OK) {
        /* a usage error in a calling thread: the communicator is failed from now on */
        pthread_mutex_lock(&c->q->mu);
        bt__err_set(&c->err, c->q->pub.code, "%s", c->q->pub.msg);
        pthread_mutex_unlock(&c->q->mu);
    }
    if (is_p2p(r)) { /* completes r, and the requests it takes along, itself */
        bt__p2p_serve(c, r);
        return;
    }
    if (c->err.code != BT_OK) { /* sticky: this request does not run */
        bt__err_reset(&r->err, c->err.code, "%s #%llu not run, the communicator failed before: %s",
                      r->name, (unsigned long long)r->seq, c->err.msg);
        return;
    }
    uint64_t fl = r->call.local ? UINT64_MAX /* the flight recorder */
                                : bt__flight_call_begin(c, r->name, &r->call);
    c->flight_token = fl; /* for bt__flight_phase */
    int rc = r->run(c, &r->call);
    c->flight_token = UINT64_MAX;
    bt__flight_call_end(c, fl, rc, &r->call);
    if (rc != BT_OK)
        bt__err_reset(&r->err, rc, "%s", c->err.code != BT_OK ? c->err.msg : bt_strerror(rc));
}

static void unlink_live(struct bt__queue *q, struct bt_request *r)
{
    if (r->prev_l)
        r->prev_l->next_l = r->next_l;
    else if (q->live == r)
        q->live = r->next_l;
    if (r->next_l)
        r->next_l->prev_l = r->prev_l;
}

static void free_req(struct bt_request *r)
{
    free(r->members); /* a fused request's members and parts arrays (one block) */
    free(r);
}

static void complete_locked(struct bt__queue *q, struct bt_request *r)
{
    for (int i = 0; i < r->nmembers; i++) { /* a fused request: its parts end with it */
        struct bt_request *m = r->members[i];
        if (r->err.code != BT_OK)
            bt__err_reset(&m->err, r->err.code, "%s", r->err.msg);
        complete_locked(q, m);
    }
    r->state = BT_REQ_DONE;
    if (r->freed && !r->on_stack) {
        unlink_live(q, r);
        free_req(r);
    }
    if (q->nwaiting)
        pthread_cond_broadcast(&q->done);
}

/* Takes the head of the queue and runs it; called and returns with q->mu held. */
static void run_head(struct bt_comm *c)
{
    struct bt__queue *q = c->q;
    struct bt_request *r = q->head;
    q->head = r->next;
    if (!q->head)
        q->tail = NULL;
    r->state = BT_REQ_RUNNING;
    q->busy = 1;
    int failed = atomic_load(&q->failed), p2p = is_p2p(r);
    pthread_mutex_unlock(&q->mu);
    execute(c, r, failed);
    pthread_mutex_lock(&q->mu);
    if (c->err.code != BT_OK && q->pub.code == BT_OK) {
        bt__err_set(&q->pub, c->err.code, "%s", c->err.msg);
        atomic_store(&q->failed, c->err.code);
    }
    if (!p2p)
        complete_locked(q, r);
    q->busy = 0;
    if (q->nwaiting)
        pthread_cond_broadcast(&q->done);
    if (q->head && q->thread_idle)
        pthread_cond_signal(&q->work);
}

struct bt_request *bt__queue_take_p2p(struct bt_comm *c)
{
    struct bt__queue *q = c->q;
    pthread_mutex_lock(&q->mu);
    struct bt_request *r = q->head && is_p2p(q->head) ? q->head : NULL;
    if (r) {
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        r->state = BT_REQ_RUNNING;
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

void bt__queue_complete(struct bt_comm *c, struct bt_request *r, int rc)
{
    struct bt__queue *q = c->q;
    if (rc != BT_OK)
        bt__err_reset(&r->err, rc, "%s", c->err.code != BT_OK ? c->err.msg : bt_strerror(rc));
    pthread_mutex_lock(&q->mu);
    complete_locked(q, r);
    pthread_mutex_unlock(&q->mu);
}

/* Runs or sleeps until r is done; called and returns with q->mu held. */
static void wait_locked(struct bt_comm *c, struct bt_request *r)
{
    struct bt__queue *q = c->q;
    while (r->state != BT_REQ_DONE) {
        if (!q->busy && q->head) {
            run_head(c);
            continue;
        }
        q->nwaiting++;
        pthread_cond_wait(&q->done, &q->mu);
        q->nwaiting--;
    }
}

static void *progress_main(void *arg)
{
    struct bt_comm *c = arg;
    struct bt__queue *q = c->q;
    pthread_mutex_lock(&q->mu);
    while (!q->stop) {
        if (!q->busy && q->head) {
            run_head(c);
            continue;
        }
        q->thread_idle = 1;
        pthread_cond_wait(&q->work, &q->mu);
        q->thread_idle = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Starts the progress thread (q->mu held); a failure leaves requests to bt_wait. */
static void start_thread(struct bt_comm *c)
{
    struct bt__queue *q = c->q;
    if (q->thread_up)
        return;
    int e = pthread_create(&q->thread, NULL, progress_main, c);
    if (e != 0) {
        BT_WARN(COLL, "rank %d: no progress thread (%s): requests run in bt_wait", c->rank,
                strerror(e));
        return;
    }
    q->thread_up = 1;
}

static void enqueue(struct bt__queue *q, struct bt_request *r)
{
    r->seq = r->call.local ? q->issued : ++q->issued;
    r->state = BT_REQ_QUEUED;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
}

void bt__queue_push(struct bt_comm *c, struct bt_request *const *reqs, int n)
{
    struct bt__queue *q = c->q;
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < n; i++) {
        enqueue(q, reqs[i]);
        for (int k = 0; k < reqs[i]->nmembers; k++)
            reqs[i]->members[k]->seq = reqs[i]->seq, reqs[i]->members[k]->state = BT_REQ_QUEUED;
    }
    if (n > 0) {
        start_thread(c);
        if (q->thread_idle)
            pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->mu);
}

/* Links a heap request into c's list of live requests (q->mu held). */
static void link_live(struct bt__queue *q, struct bt_request *r)
{
    r->next_l = q->live;
    if (q->live)
        q->live->prev_l = r;
    q->live = r;
}

struct bt_request *bt__request_grouped(struct bt_comm *c, const char *name, bt__run_fn run,
                                       const struct bt__call *a)
{
    struct bt_request *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->comm = c, r->call = *a, r->run = run, r->name = name, r->state = BT_REQ_GROUPED;
    pthread_mutex_lock(&c->q->mu);
    link_live(c->q, r);
    pthread_mutex_unlock(&c->q->mu);
    return r;
}

int bt__coll_submit(struct bt_comm *c, const char *name, bt__run_fn run, const struct bt__call *a,
                    bt_request **out)
{
    struct bt__queue *q = c->q;
    if (bt__group_open())
        return bt__group_add(c, name, run, a, out);
    struct bt_request mine = {0}, *r = &mine;
    if (out) {
        *out = NULL;
        if (!(r = calloc(1, sizeof(*r))))
            return bt__comm_usage(c, BT_ERR_SYSTEM, "%s: out of memory for a request", name);
    }
    r->comm = c, r->call = *a, r->run = run, r->name = name, r->on_stack = !out;
    pthread_mutex_lock(&q->mu);
    enqueue(q, r);
    if (out) {
        link_live(q, r);
        start_thread(c);
        if (q->thread_idle)
            pthread_cond_signal(&q->work);
        *out = r;
        pthread_mutex_unlock(&q->mu);
        return BT_OK;
    }
    wait_locked(c, r);
    pthread_mutex_unlock(&q->mu);
    return r->err.code;
}

void bt__queue_destroy(struct bt_comm *c)
{
    struct bt__queue *q = c->q;
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    while (q->head || q->busy) {
        if (!q->busy) {
            run_head(c);
            continue;
        }
        q->nwaiting++;
        pthread_cond_wait(&q->done, &q->mu);
        q->nwaiting--;
    }
    q->stop = 1;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    if (q->thread_up)
        pthread_join(q->thread, NULL);
    if (q->pub.code != BT_OK) /* a usage error no request ran into yet */
        bt__err_set(&c->err, q->pub.code, "%s", q->pub.msg);
    for (struct bt_request *r = q->live, *n; r; r = n) {
        n = r->next_l;
        r->comm = NULL;
        r->prev_l = r->next_l = NULL;
    }
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->done);
    pthread_mutex_destroy(&q->mu);
    free(q);
    c->q = NULL;
}

/* ---- the public request calls ---- */

/* bt_wait or bt_test on a request of a group that is still open: it would never complete. */
static int in_open_group(bt_request *r, const char *call)
{
    char msg[BT__ERR_MSG_MAX];
    snprintf(msg, sizeof(msg),
             "%s: request (%s) belongs to a group that is still open; it is issued by "
             "bt_group_end; hint: call bt_group_end first, then wait",
             call, r->name);
    BT_WARN(COLL, "%s", msg);
    bt__thread_error(BT_ERR_INVALID_USAGE, msg);
    return BT_ERR_INVALID_USAGE;
}

int bt_test(bt_request *r, int *done)
{
    if (!r || !done)
        return BT_ERR_INVALID_ARG;
    if (!r->comm) { /* orphaned by bt_finalize: complete */
        *done = 1;
        return r->err.code;
    }
    struct bt__queue *q = r->comm->q;
    pthread_mutex_lock(&q->mu);
    if (r->state == BT_REQ_GROUPED) {
        pthread_mutex_unlock(&q->mu);
        *done = 0;
        return in_open_group(r, "bt_test");
    }
    *done = r->state == BT_REQ_DONE;
    int rc = *done ? r->err.code : BT_OK;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int bt_wait(bt_request *r)
{
    if (!r)
        return BT_ERR_INVALID_ARG;
    struct bt_comm *c = r->comm;
    if (c)
        pthread_mutex_lock(&c->q->mu);
    int rc;
    if (r->state == BT_REQ_GROUPED) {
        pthread_mutex_unlock(&c->q->mu);
        return in_open_group(r, "bt_wait");
    }
    if (r->waited) {
        rc = bt__err_reset(&r->err, BT_ERR_INVALID_USAGE,
                           "bt_wait: request #%llu (%s) was already waited for; hint: wait once, "
                           "then bt_request_free it",
                           (unsigned long long)r->seq, r->name);
        BT_WARN(COLL, "%s", r->err.msg);
    } else {
        if (c)
            wait_locked(c, r);
        r->waited = 1;
        rc = r->err.code;
    }
    if (c)
        pthread_mutex_unlock(&c->q->mu);
    return rc;
}

int bt_waitall(int n, bt_request *const *reqs)
{
    if (n < 0 || (n > 0 && !reqs))
        return BT_ERR_INVALID_ARG;
    int first = BT_OK;
    for (int i = 0; i < n; i++) {
        int rc = reqs[i] ? bt_wait(reqs[i]) : BT_OK;
        if (rc != BT_OK && first == BT_OK)
            first = rc;
    }
    return first;
}

const char *bt_request_error(const bt_request *r)
{
    if (!r)
        return "";
    if (!r->comm)
        return r->err.msg;
    pthread_mutex_lock(&r->comm->q->mu);
    const char *m = r->state == BT_REQ_DONE ? r->err.msg : "";
    pthread_mutex_unlock(&r->comm->q->mu);
    return m;
}

void bt_request_free(bt_request *r)
{
    if (!r)
        return;
    struct bt_comm *c = r->comm;
    if (!c) {
        free_req(r);
        return;
    }
    pthread_mutex_lock(&c->q->mu);
    if (r->state == BT_REQ_DONE) {
        unlink_live(c->q, r);
        free_req(r);
    } else {
        r->freed = 1;
    }
    pthread_mutex_unlock(&c->q->mu);
}
