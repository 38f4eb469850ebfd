/* progress.h: requests, their per-communicator queue, and the progress thread (progress.c).
 *
 * Every call on a communicator, blocking or not, becomes a request that coll.c queues here
 * (bt__coll_run). Requests of one communicator run one at a time, in the order they were
 * issued, by whichever thread gets there first: the communicator's progress thread (started
 * by the first nonblocking call), or a thread waiting for a request, which runs the requests
 * ahead of its own itself instead of sleeping (so a blocking call on an idle communicator
 * runs in the caller's thread with no hand-off).
 *
 * The thread that runs a request owns the communicator's insides (transports, scratch,
 * c->err) while it does; callers see only the queue, under its lock, and the public copy of
 * the sticky error (pub), which the runner updates after each request.
 */
#ifndef BT_COLLECTIVES_PROGRESS_H
#define BT_COLLECTIVES_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>

#include "collectives/backend/backend.h"

/* GROUPED: issued inside an open bt_group_start/bt_group_end (group.c), not queued yet. */
enum bt__req_state { BT_REQ_GROUPED, BT_REQ_QUEUED, BT_REQ_RUNNING, BT_REQ_DONE };

/* Runs a checked call on c (coll.c's dispatch, split.c, exchange.c). */
typedef int (*bt__run_fn)(struct bt_comm *c, const struct bt__call *a);

struct bt_request {
    struct bt_comm *comm; /* NULL once bt_finalize orphaned the request */
    struct bt__call call;
    bt__run_fn run;
    const char *name; /* static: "allreduce" */
    uint64_t seq;     /* the communicator's call number */
    enum bt__req_state state;
    int on_stack; /* a blocking call's own request: never freed here */
    int freed;    /* bt_request_free before completion: freed when done */
    int waited;   /* bt_wait returned its result once */
    int grouped;  /* a blocking call made inside a group: bt_group_end waits for it and frees it */
    struct bt_request **members; /* a fused request (group.c): the requests it completes */
    int nmembers;
    struct bt__err err;
    struct bt_request *next;            /* queue */
    struct bt_request *prev_l, *next_l; /* every live heap request of the communicator */
};

struct bt__queue {
    pthread_mutex_t mu;
    pthread_cond_t done;            /* a request completed (waiters) */
    pthread_cond_t work;            /* a request was queued (the progress thread) */
    struct bt_request *head, *tail; /* issued, not started */
    struct bt_request *live;        /* heap requests not freed */
    uint64_t issued;                /* requests issued so far */
    int busy;                       /* a thread is running a request */
    int nwaiting;                   /* threads asleep on done */
    int thread_up, thread_idle, stop;
    pthread_t thread;
    _Atomic int failed; /* the sticky code callers see (pub.code) */
    struct bt__err pub; /* what bt_last_error shows */
};

int bt__queue_init(struct bt_comm *c);
/* Completes every request still outstanding (helping to run them), stops the thread, and
 * orphans the requests the caller has not freed. */
void bt__queue_destroy(struct bt_comm *c);

/* Issues a checked call. With out, a heap request is returned in *out (nonblocking: the
 * progress thread runs it); without, the call runs (or waits its turn) before returning. */
int bt__coll_submit(struct bt_comm *c, const char *name, bt__run_fn run, const struct bt__call *a,
                    bt_request **out);

/* Queues reqs[0..n) (heap requests of c made by bt__group_add, in the order given) at once,
 * under one hold of the lock, and starts the progress thread: bt_group_end's way in. */
void bt__queue_push(struct bt_comm *c, struct bt_request *const *reqs, int n);

/* A heap request of c in state GROUPED (linked into c's live list, not queued); NULL when out
 * of memory. */
struct bt_request *bt__request_grouped(struct bt_comm *c, const char *name, bt__run_fn run,
                                       const struct bt__call *a);
/* A usage error with no communicator to hold it (group calls): logged by the caller, kept for
 * bt_last_error(NULL) in this thread (comm.c). */
void bt__thread_error(int code, const char *msg);

/* ---- grouped calls (group.c) ---- */
/* 1 while this thread is between bt_group_start and bt_group_end. */
int bt__group_open(void);
/* Records a checked call made inside this thread's open group: a heap request in state
 * GROUPED, returned in *out (nonblocking) or kept by the group (blocking: bt_group_end
 * waits for it). */
int bt__group_add(struct bt_comm *c, const char *name, bt__run_fn run, const struct bt__call *a,
                  bt_request **out);
/* bt_finalize(c) inside an open group: the group's calls on c fail (BT_ERR_INVALID_USAGE)
 * and leave the group. */
void bt__group_forget(struct bt_comm *c);
/* coll.c: the dispatch of the six collectives, and the run of a fused group of allreduces
 * (a->parts[0..a->nparts), same dtype and op, each in or out of place). */
int bt__coll_dispatch(struct bt_comm *c, const struct bt__call *a);
int bt__coll_run_fused(struct bt_comm *c, const struct bt__call *a);

/* Runs the point-to-point request first (exchange.c), taking along the point-to-point
 * requests queued behind it while it runs (bt__queue_take_p2p), so that an isend and the
 * irecv issued after it progress together; completes each (bt__queue_complete) as its
 * message is done. */
void bt__p2p_serve(struct bt_comm *c, struct bt_request *first);
/* The head of the queue if it is a send or recv (now running), else NULL. */
struct bt_request *bt__queue_take_p2p(struct bt_comm *c);
/* Marks r done with rc (its story from c->err) and wakes its waiters; r may be freed. */
void bt__queue_complete(struct bt_comm *c, struct bt_request *r, int rc);

/* An argument error found in the calling thread: sticky on c, logged, returns code. */
int bt__comm_usage(struct bt_comm *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
