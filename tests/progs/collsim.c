/* collsim.c: a discrete-event simulator of baton's point-to-point collectives.
 *
 * It runs the real algorithm functions (collectives/algo/: ring, recursive doubling,
 * Rabenseifner, the binomial and scatter+allgather broadcasts, the binomial reduce) once per
 * simulated rank against a recording transport: bt__xfer calls land in a list of steps per
 * rank (send to whom how many bytes, receive from whom how many, reduce or not), without
 * moving data. Schedules do not depend on the data, so the steps are those a real job takes.
 * Then a discrete-event loop plays the steps of all ranks over a modelled network:
 *
 *   - a message of b bytes between nodes occupies the sender, its link and the receiver's link
 *     for α + b·β and the sender node's uplink for b·β·oversub/ppn (ppn ranks share it,
 *     over-subscribed by --oversub); it has arrived when that time is over. The sender is busy
 *     for α too: on TCP most of α is the software cost of a message (system calls, wakeups),
 *     which a rank pays itself, so back-to-back sends (a tree's root) do not overlap it;
 *   - between ranks of one node (--ppn > 1), the node's shared memory bus is the resource,
 *     with α_shm and β_shm;
 *   - a receive that reduces costs b·γ after the message is in;
 *   - a rank starts its next step when its send has left and its receive has arrived.
 *
 * Up to --max-sim ranks (1,024 by default) it simulates; beyond, it evaluates the formulas of
 * algo/cost.c. Large sizes are recorded at a smaller count and the steps' bytes scaled (the
 * chunk arithmetic is linear); the ring's segments (each a whole ring allreduce) are
 * simulated once per segment size and added up.
 *
 *   collsim one ALGO N BYTES [--ppn P] [--oversub X] [--tune FILE]   one simulated time (s)
 *   collsim table [--tune FILE] [--max-sim N] [--size-step S] [--dat FILE]  the docs' table
 *   collsim check [--tune FILE]   the simulated times against the formulas: within 2 % for a
 *                                 power of two, 25 % otherwise (exit 1 when not). Where n is
 *                                 not a power of two the formulas are the approximation: a
 *                                 folded rank's receive link is still busy when its partner
 *                                 of the first step sends, and a tree's early leaves overlap.
 *   collsim verify FILE [--tol X] [-v] [--set NAME=VALUE,...]
 *                                 the host model (below) against bench/collsim_check.sh's
 *                                 measurements: calibrated from FILE's cal rows only, every
 *                                 row simulated; exit 1 when a row is off by more than X
 *                                 (0.15); --set overrides fitted parameters (exploration).
 * ALGO: ring rd rabenseifner tree_bcast sa_bcast tree_reduce.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/algo/algo.h"
#include "collectives/algo/cost.h"
#include "collectives/comm.h"
#include "collectives/transport/transport.h"

enum { PP_MAX = 24 }; /* points per calibration curve (collsim verify) */

struct step {
    int send_to, recv_from;
    float slen, rlen; /* bytes at the recorded size (scaled when played) */
    int reduce;
    int first; /* the first step of a call: it costs the call's own CPU (struct host: call) */
};

struct sched {
    struct step *s;
    size_t n, cap;
    size_t nb; /* the first nb steps are a barrier before the call: not scaled, not timed */
};

static struct sched *rec; /* the rank being recorded */

static int rec_sendrecv(struct bt_comm *c, const struct bt__xfer *x)
{
    (void)c;
    if (rec->n == rec->cap) {
        rec->cap = rec->cap ? rec->cap * 2 : 64;
        rec->s = realloc(rec->s, rec->cap * sizeof(*rec->s));
        if (!rec->s) {
            fprintf(stderr, "collsim: out of memory\n");
            exit(1);
        }
    }
    rec->s[rec->n++] = (struct step){x->send_to,     x->recv_from,       (float)x->slen,
                                     (float)x->rlen, x->red_dst != NULL, 0};
    return BT_OK;
}

/* rd.c reduces after its exchange (bt__reduce2, wrapped at link time: Makefile): a step of
 * local work, recorded instead of done (the data does not matter). */
void __wrap_bt__reduce2(bt_dtype dtype, bt_op op, void *dst, const void *a, const void *b,
                        size_t n);
void __wrap_bt__reduce2(bt_dtype dtype, bt_op op, void *dst, const void *a, const void *b, size_t n)
{
    (void)op, (void)dst, (void)a, (void)b;
    struct bt__xfer x = {.send_to = -1, .recv_from = -1, .rlen = n * bt_dtype_size(dtype)};
    x.red_dst = dst;
    rec_sendrecv(NULL, &x);
}

static const struct bt__transport_ops rec_ops = {.name = "record", .sendrecv = rec_sendrecv};

enum { A_RING, A_RD, A_RAB, A_TREE_BCAST, A_SA_BCAST, A_TREE_REDUCE, A_N };
static const char *const anames[] = {"ring",       "rd",       "rabenseifner",
                                     "tree_bcast", "sa_bcast", "tree_reduce"};

/* Records algo over n ranks with count float32 elements into s[0..n). */
static void record(int algo, int n, size_t count, struct sched *s)
{
    struct bt_comm *c = calloc(1, sizeof(*c));
    int *ranks = malloc((size_t)n * sizeof(int));
    float *buf = calloc(count ? count : 1, sizeof(float));
    if (!c || !ranks || !buf) {
        fprintf(stderr, "collsim: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < n; i++)
        ranks[i] = i;
    c->inter = &rec_ops;
    c->size = n;
    c->ring_seg_bytes = (size_t)1 << 62; /* one segment: collsim adds segments up */
    c->coll_name = "simulated";
    for (int me = 0; me < n; me++) {
        struct bt__group g = {.n = n, .me = me, .ranks = ranks};
        rec = &s[me];
        rec->n = 0;
        switch (algo) {
        case A_RING: bt__ring_allreduce(c, &g, buf, count, BT_FLOAT32, BT_SUM); break;
        case A_RD: bt__rd_allreduce(c, &g, buf, count, BT_FLOAT32, BT_SUM); break;
        case A_RAB: bt__rabenseifner_allreduce(c, &g, buf, count, BT_FLOAT32, BT_SUM); break;
        case A_TREE_BCAST: bt__tree_broadcast(c, &g, buf, count * 4, 0); break;
        case A_SA_BCAST: bt__scatter_allgather_broadcast(c, &g, buf, count * 4, 0); break;
        case A_TREE_REDUCE: bt__tree_reduce(c, &g, buf, count, BT_FLOAT32, BT_SUM, 0); break;
        }
        if (rec->n > 0)
            rec->s[0].first = 1;
    }
    for (int i = 0; i < 3; i++)
        free(c->scratch[i]);
    free(c);
    free(ranks);
    free(buf);
}

/* ---- the network and the event loop ---- */

struct host;

struct net {
    struct bt__link_cost tcp, shm;
    int ppn;
    double oversub;
    const struct host *host; /* non-NULL: the host model (play_host) instead of links */
    int barrier;             /* >= 0: the host model times the call after a barrier, a
                                1-element allreduce by this algorithm (allreduce_bench -s) */
    int prev;                /* the host model: calls played (untimed) before that barrier */
};

struct msg {
    int src;
    double arrival;
};

struct rank_state {
    size_t pc;
    int waiting;      /* blocked on a receive */
    double send_done; /* when its current send left */
    struct msg *q;    /* messages that arrived or are on their way, unmatched */
    size_t nq, qcap;
};

struct ev {
    double t;
    int r;
};

static struct ev *heap;
static size_t nheap;

static void heap_push(double t, int r)
{
    size_t i = nheap++;
    while (i > 0 && heap[(i - 1) / 2].t > t) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = (struct ev){t, r};
}

static struct ev heap_pop(void)
{
    struct ev top = heap[0], last = heap[--nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l + 1, k = i;
        double kt = last.t;
        if (l < nheap && heap[l].t < kt)
            k = l, kt = heap[l].t;
        if (m < nheap && heap[m].t < kt)
            k = m;
        if (k == i)
            break;
        heap[i] = heap[k];
        i = k;
    }
    heap[i] = last;
    return top;
}

/* Finishes r's current step once its message from step.recv_from is matched. */
static void finish(const struct net *nw, struct rank_state *st, const struct step *sp, int r,
                   double arrival, double scale)
{
    double done = st[r].send_done > arrival ? st[r].send_done : arrival;
    const struct bt__link_cost *l = sp->recv_from >= 0 && sp->recv_from / nw->ppn == r / nw->ppn
                                        ? &nw->shm
                                        : &nw->tcp;
    if (sp->reduce)
        done += sp->rlen * scale * l->gamma;
    st[r].waiting = 0;
    st[r].pc++;
    heap_push(done, r);
}

static int take(struct rank_state *s, int src, double *arrival)
{
    for (size_t i = 0; i < s->nq; i++)
        if (s->q[i].src == src) {
            *arrival = s->q[i].arrival;
            memmove(&s->q[i], &s->q[i + 1], (s->nq - i - 1) * sizeof(s->q[0]));
            s->nq--;
            return 1;
        }
    return 0;
}

/* Plays the schedules of n ranks; returns when the last rank finished (seconds). */
static double play(const struct net *nw, const struct sched *sc, int n, double scale)
{
    struct rank_state *st = calloc((size_t)n, sizeof(*st));
    int nodes = (n + nw->ppn - 1) / nw->ppn;
    double *out = calloc((size_t)n, sizeof(double)), *in = calloc((size_t)n, sizeof(double));
    double *up = calloc((size_t)nodes, sizeof(double)),
           *bus = calloc((size_t)nodes, sizeof(double));
    heap = malloc((size_t)n * sizeof(*heap));
    nheap = 0;
    for (int r = 0; r < n; r++)
        heap_push(0, r);
    double end = 0;
    while (nheap > 0) {
        struct ev e = heap_pop();
        int r = e.r;
        struct rank_state *s = &st[r];
        if (s->pc >= sc[r].n) {
            end = e.t > end ? e.t : end;
            continue;
        }
        const struct step *sp = &sc[r].s[s->pc];
        s->send_done = e.t;
        if (sp->send_to >= 0) {
            int d = sp->send_to, same = d / nw->ppn == r / nw->ppn;
            double b = sp->slen * scale, start = e.t, dur;
            if (same) {
                double *m = &bus[r / nw->ppn];
                start = *m > start ? *m : start;
                dur = nw->shm.alpha + b * nw->shm.beta;
                *m = start + dur;
            } else {
                double *u = &up[r / nw->ppn];
                double ub = nw->tcp.beta * nw->oversub / nw->ppn;
                start = fmax(fmax(start, out[r]), fmax(in[d], *u));
                dur = nw->tcp.alpha + b * fmax(nw->tcp.beta, ub);
                out[r] = in[d] = start + dur;
                *u = start + b * ub;
            }
            s->send_done = start + dur;
            struct rank_state *ds = &st[d];
            if (ds->nq == ds->qcap) {
                ds->qcap = ds->qcap ? 2 * ds->qcap : 8;
                ds->q = realloc(ds->q, ds->qcap * sizeof(*ds->q));
            }
            ds->q[ds->nq++] = (struct msg){r, start + dur};
            double arr;
            if (ds->waiting && sc[d].s[ds->pc].recv_from == r && take(ds, r, &arr))
                finish(nw, st, &sc[d].s[ds->pc], d, arr, scale);
        }
        double arr;
        if (sp->recv_from < 0)
            finish(nw, st, sp, r, s->send_done, scale);
        else if (take(s, sp->recv_from, &arr))
            finish(nw, st, sp, r, arr, scale);
        else
            s->waiting = 1;
    }
    for (int r = 0; r < n; r++) {
        if (st[r].pc < sc[r].n) {
            fprintf(stderr, "collsim: rank %d stuck at step %zu (a schedule that deadlocks)\n", r,
                    st[r].pc);
            exit(1);
        }
        free(st[r].q);
    }
    free(st), free(out), free(in), free(up), free(bus), free(heap);
    return end;
}

/* ---- the host model: ranks share their node's cores ----
 *
 * On one machine (loopback) or on namespaces pinned to cores (veth), a "link" is the kernel
 * copying bytes on the ranks' own CPUs: every byte sent costs its sender c seconds of CPU and
 * every byte received costs its receiver c, every message costs each side o, every reduced byte
 * γ, and every step with a receive of a rank on a node with more ranks than cores 2w more (it
 * blocks for its message, and a core switches from one rank to another: in the one-core
 * ping-pong that calibrates w every receive blocks once, two switches a round trip of four
 * steps, so 2w a receive and nothing a send). The ranks of a node that have work share the
 * node's cores as the kernel's scheduler does: a rank runs until it blocks or its time slice is
 * over (the kernel's default slice; the bursts of a small collective's step, microseconds, run
 * whole), the others of its node wait their turn, first come first served (with slice 0:
 * processor sharing, k ranks on C cores each at min(1, C/k)). A receive's work is released when
 * its sender starts the step that sends it (a rank that had no work waits for the first bytes);
 * a step is over when its rank's work is done, the matching send's rank has done its work (no
 * byte is received before it is sent), and, for a send larger than the socket buffers, when the
 * receiver has done its work (the sender blocks until the bytes are read). A rank with nothing
 * to do spins in the transport, then blocks in poll(): when a message wakes it after it was
 * idle for u, it runs the wake-up's cost for u later (the wake rows: none while it spins, more
 * once the idle core has gone to sleep). Between nodes a message also crosses the node's uplink
 * (bytes·β_link, first come first served, through a token bucket of the tbf's burst) and
 * arrives λ later. On a node with more ranks than cores a message arrives a wakeup latency
 * later too (no CPU: the wait for a core). The timed call is played after the call before it
 * and a barrier (allreduce_bench -s), so that the ranks enter the barrier as that call left
 * them, some early, some late, and the bucket is as it left it. */
struct host {
    int cores, ppn;   /* cores per node, ranks per node */
    double o;         /* CPU seconds per message, on each side */
    double cs, cr;    /* CPU seconds per byte sent, per byte received */
    double gamma;     /* CPU seconds per byte reduced */
    double w;         /* half a core switch (s): 2w per step with a receive where a node has
                         more ranks than cores */
    double lat;       /* one-way latency on top of the CPU work (s) */
    double link_beta; /* s per byte on a node's uplink (0: none) */
    double burst;     /* the uplink's token bucket (tbf burst, bytes): within it a message
                         passes at once (0: every byte at link_beta) */
    double sockbuf;   /* bytes a send can leave in the kernel before its receiver reads */
    double slat;      /* wakeup latency on a node with more ranks than cores (s, no CPU) */
    double call;      /* CPU seconds a collective call costs beyond its transfers (checks,
                         the algorithm's choice, the flight record), at its first step */
    double slice;     /* the scheduler's time slice (s): a rank runs until it blocks or its
                         slice is over, the others of its node wait in turn (0: processor
                         sharing, every runnable rank at cores/runnable) */
    int nwake;        /* wake-up costs by idle time (step_bench --pattern wake; 0: none) */
    double wake_idle[PP_MAX], wake_cost[PP_MAX]; /* a rank idle at least wake_idle[k] (s) when its
                                            message arrives has it wake_cost[k] later */
};

struct hrank {
    size_t pc;
    double rem;     /* CPU work left in the current step */
    int recv_wait;  /* its receive's work not yet released (the sender has not started) */
    int done_wait;  /* own work done, waiting for partners */
    double ready;   /* when the current step may complete at the earliest (arrival) */
    double opstart; /* when it began the timed call (after the barrier's steps) */
    double idle;    /* when it last ran out of work (-1: it has work) */
    double wake;    /* it may run from then (a wake-up under way) */
    int run;        /* 0 no work, 1 waiting for a core, 2 on a core */
    int woke;       /* the current step's end has had its wake-up */
    long seq;       /* its place in its node's queue (run == 1) */
    double qend;    /* when its slice is over (run == 2) */
    double *start;  /* per step: when it started (-1: not yet) */
    double *arr;    /* per step: when its send has crossed the uplink (or its start) */
    double *own;    /* per step: when its work was done (-1: not yet) */
    int *match; /* per step: the partner's step index (recv: the sender's; send: the receiver's) */
    int *smatch;
};

static double host_work_recv(const struct host *h, const struct step *sp, double scale)
{
    double b = sp->rlen * scale;
    return h->o + b * h->cr + (sp->reduce ? b * h->gamma : 0);
}

/* When r's current step (its own work done) can end; *ok = 0 while a partner's work is not. */
static double host_fin(const struct host *h, const struct sched *sc, const struct hrank *st, int r,
                       double scale, int *ok)
{
    const struct hrank *R = &st[r];
    const struct step *sp = &sc[r].s[R->pc];
    double fin = fmax(R->own[R->pc], R->ready);
    *ok = 1;
    if (sp->recv_from >= 0) {
        double o2 = st[sp->recv_from].own[R->match[R->pc]];
        *ok &= o2 >= 0;
        fin = fmax(fin, o2);
    }
    double b = sp->slen * (R->pc < sc[r].nb ? 1 : scale);
    if (sp->send_to >= 0 && b > h->sockbuf) {
        double o2 = st[sp->send_to].own[R->smatch[R->pc]];
        *ok &= o2 >= 0;
        fin = fmax(fin, o2);
    }
    if (sp->send_to >= 0) /* the sender's last bytes are in the kernel once the rest has left */
        fin = fmax(fin, R->arr[R->pc] - fmin(b, h->sockbuf) * h->link_beta);
    return fin;
}

/* Index of the ord-th step of rank r receiving from src (recv) or sending to dst (!recv). */
static int nth_step(const struct sched *sc, int r, int peer, int recv, int ord)
{
    for (size_t k = 0; k < sc[r].n; k++)
        if ((recv ? sc[r].s[k].recv_from : sc[r].s[k].send_to) == peer && ord-- == 0)
            return (int)k;
    return -1;
}

/* Gives R work (CPU seconds): it is no longer idle. */
static void host_give(struct hrank *R, double work)
{
    if (work <= 0)
        return;
    R->rem += work;
    R->idle = -1;
}

/* Starts r's next step at time t (or notes the end of its schedule). */
static void begin_step(const struct host *h, const struct sched *sc, struct hrank *st, int r,
                       double t, double scale, int over, double *end, double *up, double *tok)
{
    struct hrank *R = &st[r];
    if (R->pc == sc[r].nb)
        R->opstart = t;
    if (R->pc >= sc[r].n) {
        *end = fmax(*end, t - R->opstart);
        return;
    }
    const struct step *sp = &sc[r].s[R->pc];
    double k = R->pc < sc[r].nb ? 1 : scale;
    R->start[R->pc] = t;
    R->ready = t;
    R->done_wait = 0;
    R->woke = 0;
    double work = over && sp->recv_from >= 0 ? 2 * h->w : 0;
    if (sp->first)
        work += h->call;
    if (sp->send_to < 0 && sp->recv_from < 0)
        work += sp->rlen * k * h->gamma;
    if (sp->send_to >= 0)
        work += h->o + sp->slen * k * h->cs;
    host_give(R, work);
    R->arr[R->pc] = t + h->o; /* the first bytes are in the kernel after the send's o */
    if (sp->send_to >= 0 && sp->send_to / h->ppn != r / h->ppn && h->link_beta > 0) {
        /* the uplink, first come first served, a token bucket of h->burst bytes (tbf): the
         * bytes the bucket holds pass at once, the rest at link_beta */
        int nd = r / h->ppn;
        double *u = &up[2 * nd], *last = &up[2 * nd + 1], b = sp->slen * k;
        double s0 = fmax(*u, t + h->o);
        tok[nd] = fmin(h->burst, tok[nd] + (s0 - *last) / h->link_beta);
        *last = s0;
        if (b <= tok[nd]) {
            tok[nd] -= b;
            *u = s0;
        } else {
            *u = s0 + (b - tok[nd]) * h->link_beta;
            tok[nd] = 0;
            *last = *u;
        }
        R->arr[R->pc] = *u;
    }
    R->recv_wait = sp->recv_from >= 0;
    if (R->rem <= 0 && R->idle < 0)
        R->idle = t;
}

/* Whether r's node has no idle core at t: as many of its other ranks as it has cores have
 * work they may run. */
static int node_busy(const struct host *h, const struct sched *sc, const struct hrank *st, int n,
                     int r, double t)
{
    int lo = r / h->ppn * h->ppn, hi = lo + h->ppn < n ? lo + h->ppn : n, k = 0;
    for (int i = lo; i < hi; i++)
        k += i != r && st[i].pc < sc[i].n && st[i].rem > 0 && st[i].wake <= t;
    return k >= h->cores;
}

/* What waking r, which had nothing to do for u seconds, costs at t: it spun in the transport
 * and then blocked in poll(), and a blocked rank runs a wake-up later (the wake rows' step
 * function of the idle time; 0 while it still spins). The wake rows measure a rank woken onto
 * an idle core (2 ranks on 2 cores), which on the development VM has halted and must be
 * woken first; where every core of r's node has other work, r only joins a run queue, and its
 * wait for a core is the scheduler's, played by host_rates (2026-12-03: without this, 8 ranks
 * on 2 cores paid the idle core's wake-up at every step; 99 to 104 rows of the quiet table
 * within 15%, 96 to 105 of the table with the CPU column). */
static double host_wake(const struct host *h, const struct sched *sc, const struct hrank *st, int n,
                        int r, double t, double u)
{
    double extra = 0;
    if (node_busy(h, sc, st, n, r, t))
        return 0;
    for (int k = 0; k < h->nwake && u >= h->wake_idle[k]; k++)
        extra = h->wake_cost[k];
    return extra;
}

/* Each rank's share of a core from t on (rate) and when that next changes for a reason other
 * than a rank's work running out (a wake-up done, a slice over). Processor sharing (slice 0):
 * the runnable ranks of a node at min(1, cores/runnable). Time slices: a runnable rank waits
 * in its node's queue (first come, first served) for a free core, then runs at 1 until its
 * work is done (it blocks) or its slice is over (back to the queue). A rank being woken is not
 * runnable before its wake-up is done. */
static double host_rates(const struct host *h, const struct sched *sc, struct hrank *st, int n,
                         double t, double *rate, long *seq)
{
    double next = INFINITY;
    int nodes = (n + h->ppn - 1) / h->ppn;
    for (int r = 0; r < n; r++) {
        struct hrank *R = &st[r];
        int can = R->pc < sc[r].n && R->rem > 0 && R->wake <= t;
        if (R->pc < sc[r].n && R->rem > 0 && R->wake > t)
            next = fmin(next, R->wake);
        if (!can)
            R->run = 0;
        else if (R->run == 0)
            R->run = 1, R->seq = ++*seq;
        rate[r] = 0;
    }
    for (int nd = 0; nd < nodes; nd++) {
        int lo = nd * h->ppn, hi = lo + h->ppn < n ? lo + h->ppn : n, k = 0, on = 0;
        for (int r = lo; r < hi; r++)
            k += st[r].run > 0, on += st[r].run == 2;
        if (!(h->slice > 0)) {
            for (int r = lo; r < hi; r++)
                rate[r] = st[r].run ? fmin(1.0, (double)h->cores / k) : 0;
            continue;
        }
        for (; on < h->cores; on++) { /* the queue's head onto a free core */
            int best = -1;
            for (int r = lo; r < hi; r++)
                if (st[r].run == 1 && (best < 0 || st[r].seq < st[best].seq))
                    best = r;
            if (best < 0)
                break;
            st[best].run = 2, st[best].qend = t + h->slice;
        }
        for (int r = lo; r < hi; r++)
            if (st[r].run == 2)
                rate[r] = 1, next = fmin(next, st[r].qend);
    }
    return next;
}

static double play_host(const struct host *h, const struct sched *sc, int n, double scale)
{
    struct hrank *st = calloc((size_t)n, sizeof(*st));
    int nodes = (n + h->ppn - 1) / h->ppn;
    /* per node: the uplink's free time and its bucket's last fill (up), its tokens (tok) */
    double *up = calloc(2 * (size_t)nodes, sizeof(double)),
           *tok = calloc((size_t)nodes, sizeof(double));
    int *cnt = calloc((size_t)n * (size_t)n, sizeof(int)),
        *rcnt = calloc((size_t)n * (size_t)n, sizeof(int));
    for (int r = 0; r < n; r++) {
        st[r].start = malloc((sc[r].n + 1) * sizeof(double));
        st[r].arr = calloc(sc[r].n + 1, sizeof(double));
        st[r].own = malloc((sc[r].n + 1) * sizeof(double));
        st[r].match = malloc((sc[r].n + 1) * sizeof(int));
        st[r].smatch = malloc((sc[r].n + 1) * sizeof(int));
        for (size_t k = 0; k < sc[r].n; k++) {
            const struct step *sp = &sc[r].s[k];
            st[r].start[k] = st[r].own[k] = -1;
            st[r].match[k] = st[r].smatch[k] = -1;
            if (sp->recv_from >= 0)
                st[r].match[k] = nth_step(sc, sp->recv_from, r, 0, rcnt[sp->recv_from * n + r]++);
            if (sp->send_to >= 0)
                st[r].smatch[k] = nth_step(sc, sp->send_to, r, 1, cnt[r * n + sp->send_to]++);
        }
    }
    free(cnt), free(rcnt);
    int over = h->ppn > h->cores;
    double t = 0, end = 0, *rate = calloc((size_t)n, sizeof(double));
    long seq = 0;
    for (int r = 0; r < n; r++)
        begin_step(h, sc, st, r, t, scale, over, &end, up, tok);
    for (int guard = 0;; guard++) {
        /* release receives whose sender has started; complete steps whose partners are done */
        int changed = 1;
        while (changed) {
            changed = 0;
            for (int r = 0; r < n; r++) {
                struct hrank *R = &st[r];
                if (R->pc >= sc[r].n)
                    continue;
                const struct step *sp = &sc[r].s[R->pc];
                if (R->recv_wait && st[sp->recv_from].start[R->match[R->pc]] >= 0) {
                    int src = sp->recv_from;
                    double k = R->pc < sc[r].nb ? 1 : scale;
                    R->recv_wait = 0;
                    /* it has the bytes λ after they left (or crossed the uplink), and returns
                     * its own o after that at the earliest; a rank without work since idle
                     * is woken by them */
                    double first = st[src].arr[R->match[R->pc]] + h->lat;
                    double arr = first + h->o + (over ? h->slat : 0);
                    if (R->idle >= 0 && R->rem <= 0) {
                        double x = host_wake(h, sc, st, n, r, t, first - R->idle);
                        R->wake = fmax(t, first + x);
                        arr += x;
                    }
                    host_give(R, host_work_recv(h, sp, k));
                    R->ready = fmax(R->ready, arr);
                    changed = 1;
                }
                if (!R->recv_wait && R->rem <= 0 && !R->done_wait) {
                    R->own[R->pc] = t;
                    R->done_wait = 1;
                    changed = 1;
                }
                if (R->done_wait) {
                    int ok;
                    double fin = host_fin(h, sc, st, r, scale, &ok);
                    /* blocked since its work was done: woken when the step can end */
                    double x = ok && fin <= t && !R->woke
                                   ? host_wake(h, sc, st, n, r, t, fin - R->own[R->pc])
                                   : 0;
                    if (x > 0) {
                        R->ready = fin + x;
                        R->woke = 1;
                        changed = 1;
                    } else if (ok && fin <= t) {
                        R->pc++;
                        begin_step(h, sc, st, r, t, scale, over, &end, up, tok);
                        changed = 1;
                    }
                }
            }
        }
        /* the next event: a rank's work done, its slice over, its wake-up done, a step's end */
        double next = host_rates(h, sc, st, n, t, rate, &seq);
        for (int r = 0; r < n; r++) {
            struct hrank *R = &st[r];
            if (R->pc >= sc[r].n)
                continue;
            if (R->rem > 0 && rate[r] > 0) {
                next = fmin(next, t + R->rem / rate[r]);
            } else if (R->done_wait) {
                int ok;
                double fin = host_fin(h, sc, st, r, scale, &ok);
                if (ok && fin > t)
                    next = fmin(next, fin);
            }
        }
        if (next == INFINITY)
            break;
        for (int r = 0; r < n; r++)
            if (st[r].pc < sc[r].n && st[r].rem > 0 && rate[r] > 0) {
                st[r].rem -= (next - t) * rate[r];
                if (st[r].rem < 1e-12)
                    st[r].rem = 0, st[r].idle = next, st[r].run = 0;
                else if (st[r].run == 2 && next >= st[r].qend) /* to the back of the queue */
                    st[r].run = 1, st[r].seq = ++seq;
            }
        t = next;
        if (guard > 100000000) {
            fprintf(stderr, "collsim: the host model does not progress\n");
            exit(1);
        }
    }
    for (int r = 0; r < n; r++) {
        if (st[r].pc < sc[r].n) {
            fprintf(stderr, "collsim: rank %d stuck at step %zu (host model)\n", r, st[r].pc);
            exit(1);
        }
        free(st[r].start), free(st[r].arr), free(st[r].own), free(st[r].match), free(st[r].smatch);
    }
    free(st), free(up), free(tok), free(rate);
    return end;
}

/* Appends steps s[0..k) to sc (scaled by scale: untimed steps are played at scale 1). */
static void append_steps(struct sched *sc, const struct step *s, size_t k, double scale)
{
    struct step *all = realloc(sc->s, (sc->n + k + 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "collsim: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < k; i++) {
        all[sc->n + i] = s[i];
        all[sc->n + i].slen = (float)(s[i].slen * scale);
        all[sc->n + i].rlen = (float)(s[i].rlen * scale);
    }
    sc->s = all;
    sc->n += k;
    sc->cap = sc->n;
}

/* Puts before the call of sc (recorded, its steps to be scaled by scale) what
 * allreduce_bench -s runs before it, untimed: a barrier, then nw->prev times the call and a
 * barrier, so that the ranks enter the timed call's barrier as the call before left them, some
 * early, some late (for a ring of several segments, the call before is one segment). */
static void prepend_untimed(const struct net *nw, struct sched *sc, int n, double scale)
{
    struct sched *b = calloc((size_t)n, sizeof(*b)), *pre = calloc((size_t)n, sizeof(*pre));
    if (!b || !pre) {
        fprintf(stderr, "collsim: out of memory\n");
        exit(1);
    }
    record(nw->barrier, n, 1, b);
    for (int i = 0; i < n; i++) {
        append_steps(&pre[i], b[i].s, b[i].n, 1);
        for (int p = 0; p < nw->prev; p++) {
            append_steps(&pre[i], sc[i].s, sc[i].n, scale);
            append_steps(&pre[i], b[i].s, b[i].n, 1);
        }
        pre[i].nb = pre[i].n;
        append_steps(&pre[i], sc[i].s, sc[i].n, 1);
        free(sc[i].s), free(b[i].s);
        sc[i] = pre[i];
    }
    free(b), free(pre);
}

/* Records and plays algo over n ranks for bytes (recorded at most at 2^16 elements per
 * rank's share ... and scaled). */
static double sim_once(const struct net *nw, int algo, int n, double bytes)
{
    size_t want = (size_t)(bytes / 4), cap = (size_t)n * 64 > 65536 ? (size_t)n * 64 : 65536;
    size_t count = want < cap ? want : cap;
    if (count == 0)
        count = 1;
    double scale = bytes / 4 / (double)count;
    struct sched *sc = calloc((size_t)n, sizeof(*sc));
    record(algo, n, count, sc);
    if (nw->host && nw->barrier >= 0) /* the barrier (and calls before it) first */
        prepend_untimed(nw, sc, n, scale);
    for (int i = 0; nw->host && i < n; i++) /* tcp.c moves nothing for an empty message */
        for (size_t k = 0; k < sc[i].n; k++) {
            if (sc[i].s[k].slen == 0)
                sc[i].s[k].send_to = -1;
            if (sc[i].s[k].rlen == 0)
                sc[i].s[k].recv_from = -1;
        }
    double t = nw->host ? play_host(nw->host, sc, n, scale) : play(nw, sc, n, scale);
    for (int i = 0; i < n; i++)
        free(sc[i].s);
    free(sc);
    return t;
}

static double simulate(const struct net *nw, const struct bt__cost_model *m, int algo, int n,
                       double bytes)
{
    if (n <= 1)
        return 0;
    if (algo != A_RING)
        return sim_once(nw, algo, n, bytes);
    double seg = m->seg_bytes > 4.0 * n ? m->seg_bytes : 4.0 * n;
    double full = floor(bytes / seg), rest = bytes - full * seg, t = 0;
    struct net after = *nw; /* a barrier before the first segment only */
    after.barrier = -1;
    if (full > 0)
        t += sim_once(nw, algo, n, seg) +
             (full - 1) * (full > 1 ? sim_once(&after, algo, n, seg) : 0);
    if (rest > 0)
        t += sim_once(full > 0 ? &after : nw, algo, n, rest);
    return t;
}

static double formula(const struct bt__cost_model *m, int algo, int n, double b)
{
    switch (algo) {
    case A_RING: return bt__cost_allreduce(m, &m->tcp, BT_COST_RING, n, b);
    case A_RD: return bt__cost_allreduce(m, &m->tcp, BT_COST_RD, n, b);
    case A_RAB: return bt__cost_allreduce(m, &m->tcp, BT_COST_RABENSEIFNER, n, b);
    case A_TREE_BCAST: return bt__cost_broadcast(&m->tcp, BT_COST_TREE, n, b);
    case A_SA_BCAST:
        if (b < n)
            return bt__cost_broadcast(&m->tcp, BT_COST_TREE, n, b);
        return bt__cost_broadcast(&m->tcp, BT_COST_SCATTER_ALLGATHER, n, b);
    case A_TREE_REDUCE: return bt__cost_reduce(m, &m->tcp, BT_COST_TREE, n, b);
    }
    return NAN;
}

/* ---- commands ---- */

struct opts {
    struct bt__cost_model m;
    struct net nw;
    int max_sim;
    double size_step; /* table: sizes 4 KiB, 4 KiB * step, ... up to 1 GiB */
    const char *dat;
};

static int parse_opts(int argc, char **argv, int i, struct opts *o)
{
    bt__cost_defaults(&o->m);
    o->nw.ppn = 1;
    o->nw.barrier = -1;
    o->nw.oversub = 1;
    o->max_sim = 1024;
    o->size_step = 4;
    for (; i < argc; i++) {
        struct bt__err err = {0};
        if (!strcmp(argv[i], "--tune") && i + 1 < argc) {
            if (bt__cost_load(argv[++i], &o->m, &err) != BT_OK) {
                fprintf(stderr, "collsim: %s\n", err.msg);
                return 2;
            }
        } else if (!strcmp(argv[i], "--ppn") && i + 1 < argc) {
            o->nw.ppn = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--oversub") && i + 1 < argc) {
            o->nw.oversub = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--max-sim") && i + 1 < argc) {
            o->max_sim = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--size-step") && i + 1 < argc) {
            o->size_step = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--dat") && i + 1 < argc) {
            o->dat = argv[++i];
        } else {
            fprintf(stderr, "collsim: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (o->nw.ppn < 1 || !(o->nw.oversub >= 1) || !(o->size_step >= 2)) {
        fprintf(stderr, "collsim: --ppn wants >= 1, --oversub >= 1, --size-step >= 2\n");
        return 2;
    }
    o->nw.tcp = o->m.tcp;
    o->nw.shm = o->m.shm;
    return 0;
}

static void size_str(double b, char *out, size_t cap)
{
    if (b >= 1 << 30)
        snprintf(out, cap, "%gG", b / (1 << 30));
    else if (b >= 1 << 20)
        snprintf(out, cap, "%gM", b / (1 << 20));
    else
        snprintf(out, cap, "%gK", b / 1024);
}

/* Predicted allreduce times per algorithm, n = 64 .. 16,384 and 4 KiB .. 1 GiB; the pick's
 * distance from the best; the hierarchical time for 8 ranks per node; the goals. */
static int cmd_table(struct opts *o)
{
    static const int algos[] = {A_RING, A_RD, A_RAB};
    FILE *dat = o->dat ? fopen(o->dat, "w") : NULL;
    int bad = 0;
    printf("%6s %6s %11s %11s %11s %11s %11s %-13s %6s %11s %s\n", "n", "size", "ring", "rd",
           "rabenseifner", "bound", "pick", "(algo)", "/best", "hier(ppn8)", "how");
    for (int n = 64; n <= 16384; n *= 4) {
        for (double b = 4096; b <= 1024.0 * 1024 * 1024; b *= o->size_step) {
            double t[3], best = INFINITY;
            int sim = n <= o->max_sim;
            for (int k = 0; k < 3; k++) {
                t[k] = sim ? simulate(&o->nw, &o->m, algos[k], n, b)
                           : formula(&o->m, algos[k], n, b);
                best = fmin(best, t[k]);
            }
            int pick = bt__cost_pick_allreduce(&o->m, &o->m.tcp, n, b, NULL);
            int pk = pick == BT_COST_RD ? 1 : pick == BT_COST_RABENSEIFNER ? 2 : 0;
            double bound = bt__cost_allreduce_bound(&o->m.tcp, n, b);
            int hp = bt__cost_pick_allreduce(&o->m, &o->m.tcp, n / 8, b, NULL);
            double hier = bt__cost_hier_allreduce(&o->m, hp, n / 8, 8, b);
            char sz[16];
            size_str(b, sz, sizeof(sz));
            double ratio = t[pk] / best;
            bad |= ratio > 1.10;
            printf("%6d %6s %11.4g %11.4g %11.4g %11.4g %11.4g %-13s %6.3f %11.4g %s\n", n, sz,
                   t[0], t[1], t[2], bound, t[pk], bt__cost_algo_name(pick), ratio, hier,
                   sim ? "simulated" : "formula");
            if (dat)
                fprintf(dat, "%d %.0f %g %g %g %g %g %g\n", n, b, t[0], t[1], t[2], bound, t[pk],
                        hier);
        }
        if (dat)
            fprintf(dat, "\n\n");
    }
    if (dat)
        fclose(dat);
    /* The goals at n = 4,096 (formulas: beyond the simulated range unless --max-sim). */
    int n = 4096;
    double t64 = INFINITY, t4 = INFINITY;
    bt__cost_pick_allreduce(&o->m, &o->m.tcp, n, 64.0 * 1024 * 1024, &t64);
    bt__cost_pick_allreduce(&o->m, &o->m.tcp, n, 4096, &t4);
    double b64 = bt__cost_allreduce_bound(&o->m.tcp, n, 64.0 * 1024 * 1024);
    double lat = 2 * 12 * o->m.tcp.alpha;
    printf("goal n=4096 64M: pick %.4g s, bound %.4g s, ratio %.3f (want <= 1.2)\n", t64, b64,
           t64 / b64);
    printf("goal n=4096 4K: pick %.4g s, 2*log2(n)*alpha %.4g s, ratio %.3f (want <= 1.2)\n", t4,
           lat, t4 / lat);
    printf("goal pick within 10%% of the best everywhere: %s\n", bad ? "NO" : "yes");
    return bad || t64 / b64 > 1.2 || t4 / lat > 1.2;
}

/* The simulator and the formulas agree (flat network, ppn 1) where the formulas are exact. */
static int cmd_check(struct opts *o)
{
    static const int ns[] = {2, 3, 4, 7, 8, 16, 33, 64, 256};
    static const double bs[] = {4096, 65536, 1 << 20, 16 << 20};
    int bad = 0;
    for (int a = 0; a < A_N; a++)
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
            for (size_t j = 0; j < sizeof(bs) / sizeof(bs[0]); j++) {
                double s = simulate(&o->nw, &o->m, a, ns[i], bs[j]);
                double f = formula(&o->m, a, ns[i], bs[j]);
                double d = fabs(s - f) / f;
                int pow2 = (ns[i] & (ns[i] - 1)) == 0;
                if (d > 0.02)
                    printf("%-13s n=%-4d %9.0f B: simulated %.4g s, formula %.4g s (%.1f%%)%s\n",
                           anames[a], ns[i], bs[j], s, f, 100 * d,
                           pow2 || d > 0.25 ? " TOO FAR" : "");
                bad |= d > (pow2 ? 0.02 : 0.25);
            }
    printf("%s\n", bad ? "simulator and formulas disagree" : "simulator and formulas agree");
    return bad;
}

/* ---- collsim verify: the host model against measured times ----
 *
 * FILE is bench/collsim_check.sh's table: "cores C", "sockbuf BYTES", "veth_burst BYTES",
 * "cal NET CORES α β γ" (2-rank TCP ping-pongs: one-way time α + m·β; γ a float32 sum), "pp NET
 * CORES BYTES SECONDS" (ping-pongs by size), "step lo N pairs|ring BYTES SECONDS [CPU]"
 * (bench/step_bench; CPU: a rank's CPU time in a pairs exchange), "wake", "call" and "row NET
 * N ALGO BYTES SECONDS RUNS". The model's parameters come from
 * the calibration lines only, never the rows (fit_host); each row is then simulated and
 * compared. */
struct cal {
    int have;
    double alpha, beta, gamma;
};

struct pp { /* one-way times of a 2-rank ping-pong by size (or step_bench's times) */
    int n;
    double bytes[PP_MAX], secs[PP_MAX];
};

struct measured {
    int cores;
    double sockbuf, burst;
    struct cal lo2, lo1, veth;
    struct pp pp2, pp1;      /* loopback, two cores and one core */
    struct pp xc[4], hop[4]; /* step_bench over loopback at 2, 4, 8, 16 ranks: pairs, ring */
    struct pp xcpu[4];       /* pairs: the CPU time a rank spends in its exchange, where given */
    struct pp wake[2]; /* step_bench --pattern wake, loopback and veth: one-way time by delay */
    double call[2];    /* step_bench --pattern call: a 1-element allreduce, its bare exchange */
};

/* The index of n ranks in measured's step rows (2, 4, 8, 16), or -1. */
static int step_index(int n)
{
    return n == 2 ? 0 : n == 4 ? 1 : n == 8 ? 2 : n == 16 ? 3 : -1;
}

/* The step rows for n ranks, or NULL when there are fewer than two sizes. */
static const struct pp *step_rows(const struct pp *v, int n)
{
    int i = step_index(n);
    return i >= 0 && v[i].n >= 2 ? &v[i] : NULL;
}

/* The ping-pong's cost per byte at a working set of b bytes: the slope from the smallest size
 * to each size of 1 MiB and up, interpolated in log(b) (the copy is cheaper where the buffer
 * stays in the caches); def where there are too few sizes. */
static double pp_slope(const struct pp *p, double b, double def)
{
    double x[PP_MAX], y[PP_MAX];
    int k = 0;
    for (int i = 1; i < p->n; i++)
        if (p->bytes[i] >= 1 << 20 && p->bytes[i] > p->bytes[0])
            x[k] = log(p->bytes[i]),
            y[k++] = (p->secs[i] - p->secs[0]) / (p->bytes[i] - p->bytes[0]);
    if (k < 2)
        return def;
    double lb = log(b);
    if (lb <= x[0])
        return y[0];
    for (int i = 1; i < k; i++)
        if (lb <= x[i])
            return y[i - 1] + (y[i] - y[i - 1]) * (lb - x[i - 1]) / (x[i] - x[i - 1]);
    return y[k - 1];
}

/* The model's parameters for NET from the calibration pings (nothing from the rows). A
 * one-way message of m bytes in the model takes 2o + λ (the sender's o, then the receiver's)
 * and m·max(c_s, c_r) more on two cores, where the two sides copy at once; on one core both
 * sides' work shares the CPU, plus w each for the switches: 2o + 2w + m(c_s + c_r). So:
 *   two cores (lo2): o = α2/2 (λ = 0 on loopback); β2 = max(c_s, c_r), taken as the
 *     sender's (which on loopback also runs the receiving TCP stack in its softirq), within
 *     [β1/2, β1];
 *   one core (lo1): w = (α1 − α2)/2, half of a core's switch from one rank to another, one
 *     switch per receive (2w), where a node has more ranks than cores; c_s + c_r = β1;
 *   veth: the uplink's β_link is the ping's β (the tbf rate limits it), λ = α_veth − α2.
 * β1 and β2 are those of the ping-pongs by size (pp rows) at the call's size where the file
 * has them (the copy is cheaper where a buffer stays in the caches: on the development VM
 * half the 4 MiB cost at 1 MiB, 1.65 times it at 256 MiB), else the tune's 4 MiB ones. */
static void fit_steps(const struct measured *m, int n, double bytes, struct host *h);

/* The wake-up costs from the wake rows (step_bench --pattern wake: a 2-rank ping-pong in which
 * each rank works D before it replies, so the other is idle D plus a one-way time t(0) when
 * its message comes): a rank idle at least D + t(0) pays t(D) - t(0) more. Where the
 * transport still spins that is 0; past its spin it is the wake-up of a rank blocked in
 * poll(), and where the idle core has gone to sleep, the core's wake-up too. */
static void fit_wake(const struct pp *w, struct host *h)
{
    h->nwake = 0;
    for (int k = 1; w->n >= 2 && w->bytes[0] == 0 && k < w->n; k++) {
        h->wake_idle[h->nwake] = w->bytes[k] + w->secs[0];
        h->wake_cost[h->nwake++] = fmax(0, w->secs[k] - w->secs[0]);
    }
}

static void fit_host(const struct measured *m, const char *net, int n, double bytes, struct host *h)
{
    memset(h, 0, sizeof(*h));
    h->o = m->lo2.alpha / 2;
    h->w = fmax(0, (m->lo1.alpha - m->lo2.alpha) / 2);
    double b1 = pp_slope(&m->pp1, bytes, m->lo1.beta), b2 = pp_slope(&m->pp2, bytes, m->lo2.beta);
    h->cs = fmin(b1, fmax(b1 / 2, b2));
    h->cr = b1 - h->cs;
    h->gamma = m->lo2.gamma;
    h->sockbuf = m->sockbuf;
    h->call = fmax(0, m->call[0] - m->call[1]); /* the call's own CPU: loopback's, on veth too */
    /* the scheduler's slice, from first principles: Linux's EEVDF default base slice, 0.75 ms
     * times 1 + log2 of the online CPUs (at most 8), the machine's, pinned or not (the
     * development VM's kernel has no debugfs to read it from) */
    h->slice = 0.75e-3 * (1 + floor(log2(m->cores < 1 ? 1 : m->cores < 8 ? m->cores : 8)));
    if (!strcmp(net, "veth")) {
        h->cores = 1;
        h->ppn = n / 2 > 0 ? n / 2 : 1;
        h->link_beta = m->veth.beta;
        h->burst = m->burst;
        h->lat = fmax(0, m->veth.alpha - m->lo2.alpha);
    } else {
        h->cores = m->cores;
        h->ppn = n;
    }
    fit_steps(m, n, bytes, h);
    fit_wake(&m->wake[!strcmp(net, "veth")], h);
}

/* With step_bench rows (bench/collsim_check.sh), the CPU costs where a node holds ppn ranks
 * on its cores come from the loopback runs with as many ranks per core, q (n ranks on the
 * machine's cores: a veth namespace holds n/2 ranks on one core, loopback n on two):
 *   - pairs: a rank's CPU for an exchange of m bytes (send m and receive m at once, all ranks
 *     after a barrier) is E(m) = X(m) / max(1, q): every rank exchanges, so where q > 1 the
 *     ranks share the cores. Where q > 1 the rest of E(m₀) beyond the two messages' o and
 *     bytes is 2w, the per-step cost of sharing (an exchange has a receive). Where the rows
 *     have step_bench's CPU column (the CPU time of a rank's process in the exchange), w comes
 *     from that instead: a small exchange's time shared out counts the ranks' idle waits as
 *     CPU, while a large one keeps the cores busy;
 *   - c_s + c_r, the CPU a byte costs: the 2-rank exchange's cost per byte at the call's size
 *     at every q, as for the ping-pongs (pp_slope: the slope from the smallest size, cheaper
 *     where the buffers stay in the caches). A byte costs what it costs however many ranks
 *     share the cores; the sharing is host_rates'. E's own slope is not that cost where q > 1:
 *     each rank's clock starts when it leaves the barrier, and one waiting for a core leaves
 *     late, so at 1 MiB 4 ranks took 148 µs to 2 ranks' 183 (E = 74 µs), while 8 ranks took
 *     1,142 (E = 286 µs); at 16-256 MiB the three's E are within 12% of each other (2026-12-03:
 * taken from E, 104 rows of the quiet table within 15%, from 2 ranks 112; the table with the CPU
 * column 105 and 112. The CPU column's own slope was 7-30% below the time's at 16-256 MiB, for a
 *     reason not found, so the cost per byte is the time's);
 *   - the split of c_s + c_r: the 2-core ping-pong's slope (one-way: the larger of the two,
 *     taken as the sender's, as without step rows) over the 2-rank exchange's, within [½, 1];
 *   - ring: where q > 1, a message to a rank that sleeps arrives later than on a core of its
 *     own, by the token's hop at n ranks less its hop at 2 (no CPU: the wait for a core). */
static void fit_steps(const struct measured *m, int n, double bytes, struct host *h)
{
    const struct pp *x = step_rows(m->xc, n), *x1 = step_rows(m->xc, 2);
    const struct pp *u = step_rows(m->xcpu, n), *u1 = step_rows(m->xcpu, 2);
    if (!x || !x1)
        return;
    double q = (double)h->ppn / h->cores;
    struct pp e = *x;
    for (int i = 0; i < x->n; i++)
        e.secs[i] = x->secs[i] / fmax(1, q);
    double per = pp_slope(x1, bytes, NAN);
    if (u && u1) /* w from the CPU measured: a small exchange's wall time has idle waits in it */
        e = *u;
    if (!(per > 0))
        return;
    double fs = fmin(1, fmax(0.5, pp_slope(&m->pp2, bytes, m->lo2.beta) / per));
    h->cs = per * fs;
    h->cr = per * (1 - fs);
    if (q > 1) {
        h->w = fmax(0, e.secs[0] - 2 * h->o - e.bytes[0] * per) / 2;
        const struct pp *r = step_rows(m->hop, n), *r1 = step_rows(m->hop, 2);
        if (r && r1)
            h->slat = fmax(0, r->secs[0] - r1->secs[0]);
    }
}

/* --set NAME=VALUE,...: overrides of the fitted parameters (to explore the model). */
static int host_set(struct host *h, const char *spec)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return -1;
        *eq = '\0';
        double v = atof(eq + 1);
        if (!strcmp(kv, "o"))
            h->o = v;
        else if (!strcmp(kv, "cs"))
            h->cs = v;
        else if (!strcmp(kv, "cr"))
            h->cr = v;
        else if (!strcmp(kv, "gamma"))
            h->gamma = v;
        else if (!strcmp(kv, "w"))
            h->w = v;
        else if (!strcmp(kv, "lat"))
            h->lat = v;
        else if (!strcmp(kv, "link"))
            h->link_beta = v;
        else if (!strcmp(kv, "sockbuf"))
            h->sockbuf = v;
        else if (!strcmp(kv, "burst"))
            h->burst = v;
        else if (!strcmp(kv, "slat"))
            h->slat = v;
        else if (!strcmp(kv, "slice"))
            h->slice = v;
        else if (!strcmp(kv, "call"))
            h->call = v;
        else if (!strcmp(kv, "cores"))
            h->cores = (int)v;
        else
            return -1;
    }
    return 0;
}

static int cmd_verify(const char *file, double tol, int verbose, const char *set)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "collsim verify: cannot open %s\n", file);
        return 2;
    }
    struct measured m = {.cores = 2, .sockbuf = 8 << 20};
    char line[512];
    struct row {
        char net[16], algo[24];
        int n;
        double bytes, secs, sim;
    } *rows = NULL;
    size_t nrows = 0, cap = 0;
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char net[16], algo[24];
        int n, runs;
        double a, b, g, bytes, secs;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "cores %d", &m.cores) == 1 ||
            sscanf(line, "sockbuf %lf", &m.sockbuf) == 1 ||
            sscanf(line, "veth_burst %lf", &m.burst) == 1)
            continue;
        char pat[16];
        double cpu;
        int k = sscanf(line, "step lo %d %15s %lf %lf %lf", &n, pat, &bytes, &secs, &cpu);
        if (k >= 4) {
            struct pp *v = !strcmp(pat, "pairs") ? m.xc : !strcmp(pat, "ring") ? m.hop : NULL;
            struct pp *p = v && step_index(n) >= 0 ? &v[step_index(n)] : NULL;
            struct pp *u = k == 5 && v == m.xc && p ? &m.xcpu[step_index(n)] : NULL;
            if (!p || p->n >= PP_MAX) {
                fprintf(stderr,
                        "collsim verify: %s line %d: a step row wants n 2/4/8/16 and "
                        "pairs or ring\n",
                        file, lineno);
                fclose(f);
                free(rows);
                return 2;
            }
            p->bytes[p->n] = bytes, p->secs[p->n++] = secs;
            if (u && u->n < PP_MAX)
                u->bytes[u->n] = bytes, u->secs[u->n++] = cpu;
            continue;
        }
        if (sscanf(line, "cal %15s %d %lf %lf %lf", net, &n, &a, &b, &g) == 5) {
            struct cal *c = !strcmp(net, "veth") ? &m.veth : n == 1 ? &m.lo1 : &m.lo2;
            *c = (struct cal){1, a, b, g};
            continue;
        }
        if (sscanf(line, "pp %15s %d %lf %lf", net, &n, &bytes, &secs) == 4) {
            struct pp *p = !strcmp(net, "lo") ? (n == 1 ? &m.pp1 : &m.pp2) : NULL;
            if (p && p->n < PP_MAX) /* sizes in increasing order, as collsim_check.sh writes them */
                p->bytes[p->n] = bytes, p->secs[p->n++] = secs;
            continue;
        }
        if (sscanf(line, "row %15s %d %23s %lf %lf %d", net, &n, algo, &bytes, &secs, &runs) == 6) {
            if (nrows == cap) {
                cap = cap ? 2 * cap : 64;
                rows = realloc(rows, cap * sizeof(*rows));
                if (!rows)
                    exit(1);
            }
            struct row *r = &rows[nrows++];
            snprintf(r->net, sizeof(r->net), "%s", net);
            snprintf(r->algo, sizeof(r->algo), "%s", algo);
            r->n = n, r->bytes = bytes, r->secs = secs, r->sim = 0;
            continue;
        }
        if (sscanf(line, "call lo 2 %lf %lf", &m.call[0], &m.call[1]) == 2)
            continue;
        if (sscanf(line, "wake %15s 2 %lf %lf", net, &bytes, &secs) == 3) {
            struct pp *p = &m.wake[!strcmp(net, "veth")];
            if (p->n < PP_MAX) /* delays in increasing order, as collsim_check.sh writes them */
                p->bytes[p->n] = bytes, p->secs[p->n++] = secs;
            continue;
        }
        fprintf(
            stderr,
            "collsim verify: %s line %d: not a cal, pp, step, wake, call, row, cores or sockbuf "
            "line\n",
            file, lineno);
        fclose(f);
        free(rows);
        return 2;
    }
    fclose(f);
    if (!m.lo1.have || !m.lo2.have) {
        fprintf(stderr, "collsim verify: %s lacks the cal lo 1 and cal lo 2 lines\n", file);
        free(rows);
        return 2;
    }
    double worst = 0;
    size_t within = 0, bad = 0;
    for (size_t i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        int algo = -1;
        for (int a = 0; a < A_N; a++)
            if (!strcmp(r->algo, anames[a]))
                algo = a;
        if (algo < 0 || (!strcmp(r->net, "veth") && !m.veth.have)) {
            fprintf(stderr, "collsim verify: row %zu: unknown algorithm or no veth calibration\n",
                    i + 1);
            bad++;
            continue;
        }
        struct host h;
        fit_host(&m, r->net, r->n, r->bytes, &h);
        if (host_set(&h, set)) {
            fprintf(stderr,
                    "collsim verify: --set wants NAME=VALUE,... (o cs cr gamma w lat slat link "
                    "burst sockbuf slice call cores)\n");
            free(rows);
            return 2;
        }
        struct opts o = {0};
        bt__cost_defaults(&o.m);
        o.nw.ppn = h.ppn;
        o.nw.oversub = 1;
        o.nw.host = &h;
        o.nw.barrier = algo == A_RING || algo == A_RD || algo == A_RAB ? algo : A_RD;
        o.nw.prev = 1;
        double sim = simulate(&o.nw, &o.m, algo, r->n, r->bytes);
        r->sim = sim;
        double ratio = r->secs / sim, d = fabs(ratio - 1);
        worst = fmax(worst, d);
        within += d <= tol;
        if (verbose || d > tol)
            printf("%-4s n=%d %-13s %10.0f B: real %-11.4g simulated %-11.4g ratio %.3f%s\n",
                   r->net, r->n, r->algo, r->bytes, r->secs, sim, ratio, d > tol ? " OUTSIDE" : "");
    }
    /* per net and n: rows within, the worst */
    static const char *const nets[] = {"lo", "veth"};
    for (int ni = 0; ni < 2; ni++)
        for (int n = 2; n <= 8; n *= 2) {
            size_t k = 0, in = 0;
            double w = 0;
            for (size_t i = 0; i < nrows; i++)
                if (!strcmp(rows[i].net, nets[ni]) && rows[i].n == n && rows[i].sim > 0) {
                    double d = fabs(rows[i].secs / rows[i].sim - 1);
                    k++, in += d <= tol, w = fmax(w, d);
                }
            if (k)
                printf("%-4s n=%d: %zu of %zu rows within %.0f%%, worst %.3f\n", nets[ni], n, in, k,
                       100 * tol, w);
        }
    printf("%zu rows: %zu within %.0f%%, worst |real/simulated - 1| = %.3f\n", nrows, within,
           100 * tol, worst);
    free(rows);
    return bad || within < nrows ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    if (argc >= 5 && !strcmp(argv[1], "one")) {
        int algo = -1;
        for (int a = 0; a < A_N; a++)
            if (!strcmp(argv[2], anames[a]))
                algo = a;
        char *end1, *end2;
        long n = strtol(argv[3], &end1, 10);
        double b = strtod(argv[4], &end2);
        if (algo < 0 || *end1 || *end2 || n < 1 || n > (1 << 20) || !(b >= 0)) {
            fprintf(stderr, "collsim one: want ALGO N BYTES (ALGO: ring, rd, rabenseifner, "
                            "tree_bcast, sa_bcast, tree_reduce)\n");
            return 2;
        }
        int rc = parse_opts(argc, argv, 5, &o);
        if (rc)
            return rc;
        printf("%.6g %.6g\n", simulate(&o.nw, &o.m, algo, (int)n, b),
               formula(&o.m, algo, (int)n, b));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "verify")) {
        double tol = 0.15;
        int verbose = 0;
        const char *set = NULL;
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--tol") && i + 1 < argc)
                tol = atof(argv[++i]);
            else if (!strcmp(argv[i], "-v"))
                verbose = 1;
            else if (!strcmp(argv[i], "--set") && i + 1 < argc)
                set = argv[++i];
            else
                return fprintf(stderr, "collsim verify: unknown option '%s'\n", argv[i]), 2;
        }
        return cmd_verify(argv[2], tol, verbose, set);
    }
    if (argc >= 2 && (!strcmp(argv[1], "table") || !strcmp(argv[1], "check"))) {
        int rc = parse_opts(argc, argv, 2, &o);
        if (rc)
            return rc;
        return argv[1][0] == 't' ? cmd_table(&o) : cmd_check(&o);
    }
    fprintf(stderr,
            "usage: collsim one ALGO N BYTES [--ppn P] [--oversub X] [--tune FILE]\n"
            "       collsim table [--tune FILE] [--max-sim N] [--size-step S] [--dat FILE]\n"
            "       collsim check [--tune FILE]\n"
            "       collsim verify FILE [--tol X] [-v] [--set NAME=VALUE,...]\n");
    return 2;
}
