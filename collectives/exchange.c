/* exchange.c: point-to-point and the exchange collectives built on it: bt_send/bt_recv
 * (bt_isend/bt_irecv), bt_alltoall, bt_alltoallv, bt_gather, bt_scatter, bt_allgatherv.
 *
 * The engine moves a set of messages at once: each message is a byte stream between this
 * rank and a peer, over the shared-memory ring of the pair when the peer is on this node
 * (transport/shm.c) and over the first socket of the TCP mesh otherwise (transport/tcp.c);
 * a message to oneself is a memcpy. On an Open MPI communicator each message is an
 * MPI_Isend/MPI_Irecv started and tested through the backend's p2p ops (backend/mpi.c), in
 * the same sets, without baton's header. Every message starts with a 16-byte header,
 * little-endian {u32 magic "BTP2", i32 tag, u64 bytes}: the receiver checks the tag and that
 * the message fits, so mismatched tags and counts between ranks are reported
 * (BT_ERR_INVALID_USAGE, naming both sides' numbers) instead of corrupting the next call.
 * All messages of a set progress together (non-blocking moves in turn; while nothing moves,
 * poll() for a set on sockets only, else spin, yield and short sleeps: idle_wait), so any set
 * whose sends and receives match completes: an
 * exchange collective is one set (every send and receive of the linear algorithm), and
 * consecutive isend/irecv requests of a communicator are run as one set (progress.c).
 * bt_alltoall on a communicator whose ranks are all on this node skips the rings: it runs over
 * the segment's slots or with cross-memory attach (bt__shm_alltoall, transport/shm.c).
 *
 * Ordering: messages between two ranks are matched in the order they were issued (tags are
 * checked, not searched). A send and its receive must sit at the same place among the other
 * calls of the communicator on both ranks (the streams are shared with the collectives), as
 * in NCCL: e.g. rank 0 `send(1); allreduce` with rank 1 `allreduce; recv(0)` is an error.
 * Blocking bt_send then bt_recv on both sides of a pair deadlocks once a message exceeds what
 * the stream buffers (32 KiB over shm, the socket buffers over TCP): use bt_isend/bt_irecv.
 */
#include <immintrin.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectives/progress.h"
#include "collectives/transport/transport.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/wire.h"

#define P2P_MAGIC 0x32505442u /* "BTP2" */
#define HDR 16
#define TAG_COLL (-0x7000) /* tags of the exchange collectives: TAG_COLL - kind */

struct msg {
    int peer, send, lpeer, fd; /* lpeer: local rank over shm, -1: tcp (fd) or self */
    int tag;
    char *buf;
    size_t len;   /* send: bytes; recv: capacity, then the bytes announced */
    size_t off;   /* payload bytes moved */
    size_t hoff;  /* header bytes moved */
    int have_hdr; /* recv: header checked */
    int done;
    void *h; /* Open MPI: the backend's handle of the started MPI_Isend/MPI_Irecv, or NULL */
    struct bt_request *req; /* the send/recv request this message completes, or NULL */
    uint8_t hdr[HDR];
};

struct mset {
    struct msg *m;
    int n, cap;
};

static int add(struct bt_comm *c, struct mset *s, int peer, int send, void *buf, size_t len,
               int tag)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        struct msg *m = realloc(s->m, sizeof(*m) * (size_t)cap);
        if (!m)
            return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
        s->m = m, s->cap = cap;
    }
    struct msg *x = &s->m[s->n++];
    *x = (struct msg){.peer = peer, .send = send, .tag = tag, .buf = buf, .len = len, .fd = -1};
    x->lpeer = peer == c->rank ? -1 : c->shm ? c->local_of[peer] : -1;
    if (peer != c->rank && x->lpeer < 0 && !c->mpi)
        x->fd = bt__tcp_fd(c, peer);
    if (send) {
        bt__put_le32(x->hdr, P2P_MAGIC);
        bt__put_le32(x->hdr + 4, (uint32_t)tag);
        bt__put_le64(x->hdr + 8, len);
    }
    return BT_OK;
}

static int move(struct bt_comm *c, struct msg *x, char *buf, size_t len, size_t *off)
{
    if (x->lpeer >= 0)
        return bt__shm_p2p_move(c, x->lpeer, x->send, buf, len, off);
    struct bt__err e = {0};
    if (bt__sock_progress(x->fd, x->send ? BT_SOCK_SEND : BT_SOCK_RECV, buf, len, off, &e) != BT_OK)
        return bt__comm_fail(c, BT_ERR_REMOTE,
                             "%s #%llu on communicator %s: rank %d: %s; hint: that rank died or "
                             "its network went away, see its log",
                             c->coll_name, (unsigned long long)c->coll_seq, c->name, x->peer,
                             e.msg);
    return BT_OK;
}

/* The receiver's checks of a header. */
static int check_hdr(struct bt_comm *c, struct msg *x)
{
    uint32_t magic = bt__le32(x->hdr);
    int tag = (int)bt__le32(x->hdr + 4);
    uint64_t bytes = bt__le64(x->hdr + 8);
    if (magic != P2P_MAGIC)
        return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                             "%s #%llu: the stream from rank %d is out of step (no message "
                             "header); hint: a send and its recv must be at the same place "
                             "among the communicator's calls on both ranks",
                             c->coll_name, (unsigned long long)c->coll_seq, x->peer);
    if (tag != x->tag || bytes > x->len || (tag < 0 && bytes != x->len))
        return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                             "%s #%llu: the next message from rank %d has tag %d and %llu bytes, "
                             "this rank expects tag %d and %s%zu bytes; hint: messages "
                             "between two ranks match in issue order, with the same tag and a "
                             "count that fits (mismatched counts between ranks?)",
                             c->coll_name, (unsigned long long)c->coll_seq, x->peer, tag,
                             (unsigned long long)bytes, x->tag, tag < 0 ? "" : "at most ", x->len);
    x->len = (size_t)bytes;
    x->have_hdr = 1;
    return BT_OK;
}

/* On Open MPI: starts x (no header: MPI carries the tag and size), then tests it. */
static int mpi_step(struct bt_comm *c, struct msg *x, int *moved)
{
    int done = 0;
    if (!x->h) {
        BT_CHECK(c->mpi->p2p_start(c, x->send, x->buf, x->len, x->peer, x->tag, &x->h));
        *moved = 1;
    }
    int rc = c->mpi->p2p_test(c, x->h, &done);
    if (rc != BT_OK || done) /* the handle is freed either way */
        x->h = NULL, *moved = 1;
    x->done = rc == BT_OK && done;
    return rc;
}

/* One non-blocking step of x; *moved when bytes moved. */
static int step(struct bt_comm *c, struct msg *x, int *moved)
{
    size_t h = x->hoff, o = x->off;
    if (x->peer == c->rank)
        return BT_OK; /* waits for match_self */
    if (c->mpi)
        return mpi_step(c, x, moved);
    if (x->hoff < HDR)
        BT_CHECK(move(c, x, (char *)x->hdr, HDR, &x->hoff));
    if (x->hoff == HDR && !x->send && !x->have_hdr)
        BT_CHECK(check_hdr(c, x));
    if (x->hoff == HDR && x->off < x->len)
        BT_CHECK(move(c, x, x->buf, x->len, &x->off));
    x->done = x->hoff == HDR && x->off == x->len;
    *moved |= x->hoff != h || x->off != o;
    return BT_OK;
}

/* Messages to oneself: the k-th send meets the k-th receive. */
static int match_self(struct bt_comm *c, struct mset *s, int strict)
{
    for (int i = 0; i < s->n; i++) {
        struct msg *snd = &s->m[i];
        if (snd->peer != c->rank || !snd->send || snd->done)
            continue;
        struct msg *rcv = NULL;
        for (int j = 0; j < s->n && !rcv; j++)
            if (s->m[j].peer == c->rank && !s->m[j].send && !s->m[j].done)
                rcv = &s->m[j];
        if (!rcv && !strict)
            continue;
        if (!rcv || rcv->tag != snd->tag || rcv->len < snd->len)
            return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                                 "%s #%llu: a send to this rank itself (tag %d, %zu bytes) has no "
                                 "matching receive in the same group of requests",
                                 c->coll_name, (unsigned long long)c->coll_seq, snd->tag, snd->len);
        if (snd->len)
            memmove(rcv->buf, snd->buf, snd->len);
        rcv->len = snd->len;
        snd->done = rcv->done = 1;
    }
    for (int j = 0; j < s->n && strict; j++)
        if (s->m[j].peer == c->rank && !s->m[j].done)
            return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                                 "%s #%llu: a receive from this rank itself has no matching send "
                                 "in the same group of requests",
                                 c->coll_name, (unsigned long long)c->coll_seq);
    return BT_OK;
}

static void pending_names(void *arg, char *out, size_t cap)
{
    struct mset *s = arg;
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < s->n && k + 32 < cap; i++)
        if (!s->m[i].done)
            k += (size_t)snprintf(out + k, cap - k, "%s%d (%s it)", k ? ", " : "", s->m[i].peer,
                                  s->m[i].send ? "sending to" : "receiving from");
}

/* While nothing moves: the node's abort flag and dead local peers, timeout, stall. */
static int slow_checks(struct bt_comm *c, struct mset *s, struct bt__wait *w)
{
    for (int i = 0; i < s->n; i++)
        if (!s->m[i].done && s->m[i].lpeer >= 0)
            BT_CHECK(bt__shm_p2p_check(c, s->m[i].lpeer));
    return bt__wait_tick(c, w, pending_names, s);
}

/* While nothing moves. A set whose pending messages are all on sockets spins 8 rounds, then
 * sleeps in poll() until one is ready, as transport/tcp.c does: every round of a socket set
 * is a recv/send syscall, and with both ranks on one core (more ranks than cores) a long spin
 * of syscalls kept the peer that would send from running (a 4 KiB ping-pong took 345 us on
 * one core, 15 us on two). A set with shared-memory messages spins on memory (cheap), then
 * yields, then takes short sleeps. */
static void idle_wait(struct mset *s, int idle)
{
    int shm = 0;
    for (int i = 0; i < s->n && !shm; i++)
        shm = !s->m[i].done && s->m[i].fd < 0;
    if (shm) {
        if (idle < 256) {
            _mm_pause();
        } else if (idle < 4096) {
            sched_yield();
        } else {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
        return;
    }
    if (idle < 8)
        return;
    struct pollfd p[64];
    int np = 0;
    for (int i = 0; i < s->n && np < 64; i++)
        if (!s->m[i].done)
            p[np++] = (struct pollfd){.fd = s->m[i].fd, .events = s->m[i].send ? POLLOUT : POLLIN};
    poll(p, (nfds_t)np, 100);
}

static int add_call(struct bt_comm *c, struct mset *s, struct bt_request *r)
{
    const struct bt__call *a = &r->call;
    int send = a->kind == BT_COLL_SEND;
    BT_CHECK(add(c, s, a->peer, send, send ? (void *)a->send : a->recv,
                 a->count * bt_dtype_size(a->dtype), a->tag));
    s->m[s->n - 1].req = r;
    return BT_OK;
}

/* Serving: takes the send/recv requests queued meanwhile into the set. */
static int absorb(struct bt_comm *c, struct mset *s)
{
    struct bt_request *r;
    int took = 0;
    while ((r = bt__queue_take_p2p(c))) {
        c->coll_seq = r->seq;
        int rc = add_call(c, s, r);
        if (rc != BT_OK) {
            bt__queue_complete(c, r, rc);
            return rc;
        }
        took = 1;
    }
    return took ? match_self(c, s, 0) : BT_OK;
}

/* Completes the requests of messages that are done (serving). */
static void complete_done(struct bt_comm *c, struct mset *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->m[i].done && s->m[i].req) {
            bt__queue_complete(c, s->m[i].req, BT_OK);
            s->m[i].req = NULL;
        }
}

/* Moves every message of s; returns when all are done or one failed. serve: s holds
 * send/recv requests, to complete one by one, and takes those queued meanwhile. */
static int run_set(struct bt_comm *c, struct mset *s, int serve)
{
    struct bt__wait w;
    int64_t next_slow = 0;
    BT_CHECK(match_self(c, s, !serve));
    bt__wait_start(c, &w);
    for (int idle = 0;;) {
        int moved = 0, done = 1;
        for (int i = 0; i < s->n; i++)
            if (!s->m[i].done) {
                BT_CHECK(step(c, &s->m[i], &moved));
                done &= s->m[i].done;
            }
        if (serve) {
            complete_done(c, s);
            if (idle > 0 || done)
                BT_CHECK(absorb(c, s));
            done = 1;
            for (int i = 0; i < s->n && done; i++)
                done = s->m[i].done;
        }
        if (done)
            return BT_OK;
        if (moved) {
            idle = 0;
            continue;
        }
        idle_wait(s, ++idle);
        if (idle >= 8) {
            int64_t now = bt__now_ns();
            if (now >= next_slow) {
                next_slow = now + 20000000;
                BT_CHECK(slow_checks(c, s, &w));
            }
        }
    }
}

/* ---- the calls, as sets of messages ---- */

static int need_p2p(struct bt_comm *c)
{
    if (c->size > 1 && !c->shm && !c->tcp && !(c->mpi && c->mpi->p2p_start))
        return bt__err_set(&c->err, BT_ERR_INTERNAL, "%s: no transport for point-to-point",
                           c->coll_name);
    return BT_OK;
}

/* Cancels the MPI sends and receives of s still outstanding (after a failure). */
static void drop_started(struct bt_comm *c, struct mset *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->m[i].h) {
            c->mpi->p2p_cancel(c, s->m[i].h);
            s->m[i].h = NULL;
        }
}

void bt__p2p_serve(struct bt_comm *c, struct bt_request *first)
{
    struct mset s = {0};
    int rc = c->err.code != BT_OK ? c->err.code : need_p2p(c), added = 0;
    if (rc == BT_OK && (rc = add_call(c, &s, first)) == BT_OK)
        added = 1;
    if (rc == BT_OK)
        rc = run_set(c, &s, 1);
    if (!added)
        bt__queue_complete(c, first, rc); /* never made it into the set */
    drop_started(c, &s);
    for (int i = 0; i < s.n; i++)
        if (s.m[i].req)
            bt__queue_complete(c, s.m[i].req, rc);
    free(s.m);
}

static int run_p2p(struct bt_comm *c, const struct bt__call *a)
{
    (void)c, (void)a; /* never called: progress.c hands send/recv to bt__p2p_serve */
    return BT_ERR_INTERNAL;
}

/* alltoallv, and alltoall/allgatherv/gather/scatter expressed as one: rank p gets
 * scounts[p] elements from send + sdispls[p] and sends us rcounts[p] into recv + rdispls[p].
 * NULL count arrays mean "nothing to send" / "nothing to receive". */
static int run_v(struct bt_comm *c, const struct bt__call *a, const size_t *sc, const size_t *sd,
                 const size_t *rc_, const size_t *rd)
{
    size_t es = bt_dtype_size(a->dtype);
    struct mset s = {0};
    int rc = need_p2p(c), tag = TAG_COLL - (int)a->kind;
    for (int k = 0; k < c->size && rc == BT_OK; k++) { /* to me+k, from me-k: spread the load */
        int to = (c->rank + k) % c->size, from = (c->rank - k + c->size) % c->size;
        if (sc)
            rc = add(c, &s, to, 1, (char *)a->send + sd[to] * es, sc[to] * es, tag);
        if (rc == BT_OK && rc_)
            rc = add(c, &s, from, 0, (char *)a->recv + rd[from] * es, rc_[from] * es, tag);
    }
    if (rc == BT_OK)
        rc = run_set(c, &s, 0);
    free(s.m);
    return rc;
}

static int run_exchange(struct bt_comm *c, const struct bt__call *a)
{
    if (c->mpi) /* Open MPI runs the exchange collectives itself (backend/mpi.c) */
        return bt__host_run(c, a);
    size_t es = bt_dtype_size(a->dtype), blk = a->count * es;
    if (a->kind == BT_COLL_ALLTOALL && c->shm && c->local_size == c->size)
        return bt__shm_alltoall(c, a->send, a->recv, blk); /* one node: over the segment */
    int tag = TAG_COLL - (int)a->kind, rc = need_p2p(c);
    struct mset s = {0};
    switch (a->kind) {
    case BT_COLL_ALLTOALLV:
        if (rc == BT_OK)
            rc = run_v(c, a, a->scounts, a->sdispls, a->rcounts, a->rdispls);
        return rc;
    case BT_COLL_ALLTOALL:
    case BT_COLL_ALLGATHERV: /* my count to everyone; rcounts[p] from p */
        for (int k = 0; k < c->size && rc == BT_OK; k++) {
            int to = (c->rank + k) % c->size, from = (c->rank - k + c->size) % c->size;
            size_t soff = a->kind == BT_COLL_ALLTOALL ? (size_t)to * blk : 0;
            char *rbuf = (char *)a->recv +
                         (a->kind == BT_COLL_ALLTOALL ? (size_t)from * blk : a->rdispls[from] * es);
            size_t rlen = a->kind == BT_COLL_ALLTOALL ? blk : a->rcounts[from] * es;
            rc = add(c, &s, to, 1, (char *)a->send + soff, blk, tag);
            if (rc == BT_OK)
                rc = add(c, &s, from, 0, rbuf, rlen, tag);
        }
        break;
    case BT_COLL_GATHER: /* every rank's block to root, in rank order */
        if (rc == BT_OK)
            rc = add(c, &s, a->root, 1, (void *)a->send, blk, tag);
        for (int p = 0; p < c->size && rc == BT_OK && c->rank == a->root; p++)
            rc = add(c, &s, p, 0, (char *)a->recv + (size_t)p * blk, blk, tag);
        break;
    default: /* scatter: root's block p to rank p */
        for (int p = 0; p < c->size && rc == BT_OK && c->rank == a->root; p++)
            rc = add(c, &s, p, 1, (char *)a->send + (size_t)p * blk, blk, tag);
        if (rc == BT_OK)
            rc = add(c, &s, a->root, 0, a->recv, blk, tag);
        break;
    }
    if (rc == BT_OK)
        rc = run_set(c, &s, 0);
    free(s.m);
    return rc;
}

/* ---- the public calls ---- */

static int begin(bt_comm *c, const char *name)
{
    if (!c)
        return BT_ERR_INVALID_ARG;
    BT_CHECK(bt__comm_check_live(c, name));
    return atomic_load(&c->q->failed);
}

#define bad(c, ...) bt__comm_usage((c), BT_ERR_INVALID_ARG, __VA_ARGS__)

static int check_buf(bt_comm *c, const char *name, const void *buf, size_t count, bt_dtype dt)
{
    if ((unsigned)dt >= BT_DTYPE_COUNT)
        return bad(c, "%s: unknown dtype; hint: use a BT_FLOAT32 ... BT_UINT8 constant", name);
    if (count > SIZE_MAX / 16 / (size_t)c->size)
        return bad(c, "%s: count too large", name);
    if (count > 0 && !buf)
        return bad(c, "%s: NULL buffer with a non-zero count", name);
    return BT_OK;
}

static int check_rank(bt_comm *c, const char *name, const char *what, int r)
{
    if (r < 0 || r >= c->size)
        return bad(c, "%s: %s %d is not a rank of the communicator (size %d)", name, what, r,
                   c->size);
    return BT_OK;
}

static int p2p(bt_comm *c, int send, void *buf, size_t count, bt_dtype dt, int peer, int tag,
               bt_request **req)
{
    const char *name = send ? "send" : "recv";
    BT_CHECK(begin(c, name));
    BT_CHECK(check_buf(c, name, buf, count, dt));
    BT_CHECK(check_rank(c, name, "peer", peer));
    if (tag < 0)
        return bad(c, "%s: tag %d; hint: tags are >= 0", name, tag);
    struct bt__call a = {.kind = send ? BT_COLL_SEND : BT_COLL_RECV,
                         .send = buf,
                         .recv = buf,
                         .count = count,
                         .dtype = dt,
                         .peer = peer,
                         .tag = tag};
    return bt__coll_submit(c, name, run_p2p, &a, req);
}

int bt_isend(bt_comm *c, const void *buf, size_t count, bt_dtype dt, int peer, int tag,
             bt_request **req)
{
    if (!req)
        return BT_ERR_INVALID_ARG;
    return p2p(c, 1, (void *)buf, count, dt, peer, tag, req);
}

int bt_irecv(bt_comm *c, void *buf, size_t count, bt_dtype dt, int peer, int tag, bt_request **req)
{
    if (!req)
        return BT_ERR_INVALID_ARG;
    return p2p(c, 0, buf, count, dt, peer, tag, req);
}

int bt_send(bt_comm *c, const void *buf, size_t count, bt_dtype dt, int peer, int tag)
{
    return p2p(c, 1, (void *)buf, count, dt, peer, tag, NULL);
}

int bt_recv(bt_comm *c, void *buf, size_t count, bt_dtype dt, int peer, int tag)
{
    return p2p(c, 0, buf, count, dt, peer, tag, NULL);
}

static int exchange(bt_comm *c, const char *name, struct bt__call *a, bt_request **req)
{
    return bt__coll_submit(c, name, run_exchange, a, req);
}

static int ialltoall(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                     bt_request **req)
{
    BT_CHECK(begin(c, "alltoall"));
    BT_CHECK(check_buf(c, "alltoall", send, count, dt));
    BT_CHECK(check_buf(c, "alltoall", recv, count, dt));
    struct bt__call a = {
        .kind = BT_COLL_ALLTOALL, .send = send, .recv = recv, .count = count, .dtype = dt};
    return exchange(c, "alltoall", &a, req);
}

static int check_v(bt_comm *c, const char *name, const void *buf, const size_t *cnt,
                   const size_t *dsp, bt_dtype dt)
{
    if (!cnt || !dsp)
        return bad(c, "%s: NULL count or displacement array", name);
    for (int p = 0; p < c->size; p++) {
        if (cnt[p] > SIZE_MAX / 16 / (size_t)c->size || dsp[p] > SIZE_MAX / 16 / (size_t)c->size)
            return bad(c, "%s: count or displacement of rank %d too large", name, p);
        BT_CHECK(check_buf(c, name, buf, cnt[p], dt));
    }
    return BT_OK;
}

static int ialltoallv(bt_comm *c, const void *send, const size_t *sc, const size_t *sd, void *recv,
                      const size_t *rc, const size_t *rd, bt_dtype dt, bt_request **req)
{
    BT_CHECK(begin(c, "alltoallv"));
    BT_CHECK(check_v(c, "alltoallv", send, sc, sd, dt));
    BT_CHECK(check_v(c, "alltoallv", recv, rc, rd, dt));
    struct bt__call a = {.kind = BT_COLL_ALLTOALLV,
                         .send = send,
                         .recv = recv,
                         .dtype = dt,
                         .scounts = sc,
                         .sdispls = sd,
                         .rcounts = rc,
                         .rdispls = rd};
    return exchange(c, "alltoallv", &a, req);
}

static int iallgatherv(bt_comm *c, const void *send, size_t count, void *recv, const size_t *rc,
                       const size_t *rd, bt_dtype dt, bt_request **req)
{
    BT_CHECK(begin(c, "allgatherv"));
    BT_CHECK(check_buf(c, "allgatherv", send, count, dt));
    BT_CHECK(check_v(c, "allgatherv", recv, rc, rd, dt));
    if (rc[c->rank] != count)
        return bad(c,
                   "allgatherv: count %zu but rcounts[%d] = %zu; hint: rcounts[r] is rank r's "
                   "count",
                   count, c->rank, rc[c->rank]);
    struct bt__call a = {.kind = BT_COLL_ALLGATHERV,
                         .send = send,
                         .recv = recv,
                         .count = count,
                         .dtype = dt,
                         .rcounts = rc,
                         .rdispls = rd};
    return exchange(c, "allgatherv", &a, req);
}

static int rooted(bt_comm *c, int kind, const char *name, const void *send, void *recv,
                  size_t count, bt_dtype dt, int root, bt_request **req)
{
    BT_CHECK(begin(c, name));
    BT_CHECK(check_rank(c, name, "root", root));
    int gather = kind == BT_COLL_GATHER, mine_root = c->rank == root;
    BT_CHECK(check_buf(c, name, gather || mine_root ? send : recv, count, dt));
    BT_CHECK(check_buf(c, name, !gather || mine_root ? recv : send, count, dt));
    struct bt__call a = {.kind = (enum bt__coll_kind)kind,
                         .send = send,
                         .recv = recv,
                         .count = count,
                         .dtype = dt,
                         .root = root};
    return exchange(c, name, &a, req);
}

#define NEED_REQ(req)                                                                              \
    do {                                                                                           \
        if (!(req))                                                                                \
            return BT_ERR_INVALID_ARG;                                                             \
    } while (0)

int bt_ialltoall(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt,
                 bt_request **req)
{
    NEED_REQ(req);
    return ialltoall(c, send, recv, count, dt, req);
}

int bt_alltoall(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt)
{
    return ialltoall(c, send, recv, count, dt, NULL);
}

int bt_ialltoallv(bt_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                  void *recv, const size_t *rcounts, const size_t *rdispls, bt_dtype dt,
                  bt_request **req)
{
    NEED_REQ(req);
    return ialltoallv(c, send, scounts, sdispls, recv, rcounts, rdispls, dt, req);
}

int bt_alltoallv(bt_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                 void *recv, const size_t *rcounts, const size_t *rdispls, bt_dtype dt)
{
    return ialltoallv(c, send, scounts, sdispls, recv, rcounts, rdispls, dt, NULL);
}

int bt_iallgatherv(bt_comm *c, const void *send, size_t count, void *recv, const size_t *rcounts,
                   const size_t *rdispls, bt_dtype dt, bt_request **req)
{
    NEED_REQ(req);
    return iallgatherv(c, send, count, recv, rcounts, rdispls, dt, req);
}

int bt_allgatherv(bt_comm *c, const void *send, size_t count, void *recv, const size_t *rcounts,
                  const size_t *rdispls, bt_dtype dt)
{
    return iallgatherv(c, send, count, recv, rcounts, rdispls, dt, NULL);
}

int bt_igather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, int root,
               bt_request **req)
{
    NEED_REQ(req);
    return rooted(c, BT_COLL_GATHER, "gather", send, recv, count, dt, root, req);
}

int bt_gather(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, int root)
{
    return rooted(c, BT_COLL_GATHER, "gather", send, recv, count, dt, root, NULL);
}

int bt_iscatter(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, int root,
                bt_request **req)
{
    NEED_REQ(req);
    return rooted(c, BT_COLL_SCATTER, "scatter", send, recv, count, dt, root, req);
}

int bt_scatter(bt_comm *c, const void *send, void *recv, size_t count, bt_dtype dt, int root)
{
    return rooted(c, BT_COLL_SCATTER, "scatter", send, recv, count, dt, root, NULL);
}
