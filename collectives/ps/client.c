/* ps/client.c: the worker's side of the parameter server (include/baton_ps.h).
 *
 * A client holds one connection per server. A call (init, push, pull) builds, for every
 * server that holds a piece of its keys, the frames it needs (PUSH and PULL batch every piece
 * of the call into one frame per server, up to BT__PS_CLIENT_FRAME bytes; INIT is one frame
 * per piece), then runs one round trip over all servers at once: a poll loop sends each
 * server its frames and reads its replies, one per frame, in order. A connection that fails
 * mid-call is reopened (the address is read again from the store, so a server restarted on
 * another port is found) with backoff until the call's deadline, and the frames not yet
 * answered are sent again. Past the deadline the call fails with BT_ERR_REMOTE naming the
 * server and a key piece it holds.
 *
 * Exactly once: every PUSH frame to a server carries the next number of this client's sequence
 * for that server; a resend after a lost reply carries the same bytes, so the server, which
 * remembers the last number it applied, acknowledges it without applying it twice.
 *
 * Placement: with a store, the first worker to declare a key writes its placement to
 * ps/key/<name> (COMPARE_SET); later declarations adopt it (or fail on another shape). The
 * servers' addresses are ps/server/<index>. Neither depends on the generation: the workers of
 * every generation of the job find the same servers and placement.
 * Without a store (bt__ps_open_cfg with endpoints) each worker computes it the same way.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collectives/comm.h"
#include "collectives/ps/ps.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"
#include "rendezvous/store.h"

struct key {
    struct bt__hnode node; /* first: in ps->tab (common/hash.h) */
    char *name;
    uint64_t count;
    uint32_t np;
    struct bt__ps_piece *pc;
};

struct item { /* one piece in a request */
    const struct key *k;
    uint32_t piece;
    float *dst; /* PULL: where its floats go */
};

struct conn {
    int fd;
    char ep[300];      /* host:port */
    uint64_t instance; /* of the server process last connected */
    uint64_t seq;      /* of the last PUSH frame built for this server */
    /* the request of the call in progress */
    struct bt__wbuf tx;
    size_t tx_off;
    size_t *fstart;   /* tx offset of each frame */
    uint32_t *ffirst; /* first item of each frame, plus one past the last */
    uint32_t nframes, fcap, nrecv;
    struct item *it;
    uint32_t nit, itcap;
    uint8_t hdr[5];
    size_t hdr_off;
    uint8_t *rx;
    size_t rx_cap, rx_need, rx_off;
    int in_payload;
};

struct bt_ps {
    int rank, nworkers, nservers, gen;
    uint64_t incarnation; /* random: this client, as the servers tell it from an earlier one */
    struct conn *srv;
    struct bt__store *store;
    char *token;
    double timeout_s;
    int64_t partition_bytes;
    struct bt__htab tab; /* struct key by name */
    uint64_t *loads;     /* bytes placed on each server by this client's view */
    const char *call;    /* name of the public call in progress, for errors */
    struct bt__err err;
    int sticky;
};

static __thread struct bt__err open_err;

/* ---- errors ---- */

static int fail(bt_ps *ps, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(bt_ps *ps, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!ps->sticky)
        bt__err_reset(&ps->err, code, "%s: %s", ps->call, msg);
    if (code == BT_ERR_REMOTE || code == BT_ERR_TIMEOUT || code == BT_ERR_AUTH)
        ps->sticky = 1;
    BT_INFO(PS, "%s", ps->err.msg);
    return ps->sticky ? ps->err.code : code;
}

/* ---- keys ---- */

static uint64_t hash(const char *s)
{
    return bt__fnv1a_str(BT_FNV1A_INIT, s);
}

static struct key *find_key(const bt_ps *ps, const char *name)
{
    uint64_t h = hash(name);
    for (struct bt__hnode *nd = bt__htab_chain(&ps->tab, h); nd; nd = nd->next)
        if (nd->hash == h && !strcmp(((struct key *)nd)->name, name))
            return (struct key *)nd;
    return NULL;
}

/* ---- handshake and connections ---- */

const struct bt__auth_proto bt__ps_auth = {
    .magic = BT__PS_MAGIC,
    .version = BT__PS_VERSION,
    .label_client = BT__PS_LABEL_CLIENT,
    .label_server = BT__PS_LABEL_SERVER,
    .hello_extra = 24,  /* u32 rank, u32 nworkers, u32 generation, u32 flags, u64 incarnation */
    .result_extra = 16, /* u32 server index, u64 instance, u32 generation */
};

/* Words a refusal status of the ps server. */
static int hs_status(uint32_t st, const char *what, const struct bt__ps_hello *h,
                     struct bt__err *err)
{
    if (st == BT__ST_STALE)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s serves generation %u of this job, and this worker (rank %u) is "
                           "of generation %u: a stale worker of an old generation is refused; "
                           "hint: the job re-formed without this process, stop it (its "
                           "launcher restarts the workers of the current generation)",
                           what, h->server_generation, h->rank, h->generation);
    if (st == BT__ST_BAD_VERSION)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s speaks another ps protocol version "
                           "(this client: %u); hint: use the same baton build everywhere",
                           what, BT__PS_VERSION);
    if (st == BT__ST_BAD_TOKEN)
        return bt__err_set(err, BT_ERR_AUTH,
                           "%s refused our token; hint: is it another job's "
                           "server (BATON_TOKEN differs)?",
                           what);
    if (st == BT__ST_BAD_WORKER)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s serves a job with another number of "
                           "workers, or this rank is out of range (check BATON_RANK and "
                           "BATON_WORLD_SIZE)",
                           what);
    return st == BT__ST_OK ? BT_OK : bt__err_set(err, BT_ERR_AUTH, "%s: status %u", what, st);
}

int bt__ps_handshake_ex(int fd, const char *token, int64_t deadline, struct bt__ps_hello *h,
                        struct bt__err *err)
{
    uint8_t extra[24] = {0};
    struct bt__auth_reply rep;
    bt__put_le32(extra, h->rank);
    bt__put_le32(extra + 4, h->nworkers);
    bt__put_le32(extra + 8, h->generation);
    bt__put_le64(extra + 16, h->incarnation);
    int outcome = bt__auth_client(fd, &bt__ps_auth, token, extra, deadline, &rep, err);
    if (outcome == BT__AUTH_OK || outcome == BT__AUTH_REFUSED) {
        h->index = bt__le32(rep.extra);
        h->instance = bt__le64(rep.extra + 4);
        h->server_generation = bt__le32(rep.extra + 12);
    }
    switch (outcome) {
    case BT__AUTH_OK: return BT_OK;
    case BT__AUTH_IO: return rep.io_rc;
    case BT__AUTH_NOT_PEER:
        return bt__err_set(err, BT_ERR_AUTH, "the peer is not a baton ps server");
    case BT__AUTH_VERSION: return hs_status(BT__ST_BAD_VERSION, "the ps server", h, err);
    case BT__AUTH_REFUSED: return hs_status(rep.status, "the ps server", h, err);
    case BT__AUTH_CRYPTO: return bt__err_set(err, BT_ERR_SYSTEM, "no random bytes or HMAC failed");
    default:
        return bt__err_set(err, BT_ERR_AUTH, "the ps server could not prove it holds our token");
    }
}

int bt__ps_handshake(int fd, uint32_t rank, uint32_t nworkers, const char *token, int64_t deadline,
                     uint32_t *index, uint64_t *instance, struct bt__err *err)
{
    struct bt__ps_hello h = {.rank = rank, .nworkers = nworkers};
    bt__auth_random((uint8_t *)&h.incarnation, sizeof(h.incarnation));
    int rc = bt__ps_handshake_ex(fd, token, deadline, &h, err);
    *index = h.index;
    *instance = h.instance;
    return rc;
}

/* Reads the address of server s from the store (when there is one). */
static int lookup(bt_ps *ps, int s, int64_t deadline, struct bt__err *err)
{
    if (!ps->store)
        return BT_OK;
    char key[64];
    void *v = NULL;
    size_t len;
    snprintf(key, sizeof(key), "ps/server/%d", s);
    double left = (double)bt__ms_left(deadline) / 1e3;
    int rc = bt__store_get(ps->store, key, &v, &len, left > 0.001 ? left : 0.001);
    if (rc != BT_OK)
        return bt__err_set(err, rc,
                           "no address for ps server %d in the store (%s): %s; hint: "
                           "is BATON_PS_SERVERS right, and are the servers running?",
                           s, key, bt__store_error(ps->store));
    snprintf(ps->srv[s].ep, sizeof(ps->srv[s].ep), "%s", (char *)v);
    free(v);
    return BT_OK;
}

static int connect_once(bt_ps *ps, int s, int64_t deadline, struct bt__err *err)
{
    struct conn *c = &ps->srv[s];
    char host[256], what[64];
    int port, fd = -1;
    struct bt__ps_hello h = {.rank = (uint32_t)ps->rank,
                             .nworkers = (uint32_t)ps->nworkers,
                             .generation = (uint32_t)ps->gen,
                             .incarnation = ps->incarnation};
    BT_CHECK(lookup(ps, s, deadline, err));
    if (bt__parse_endpoint(c->ep, host, sizeof(host), &port) != 0)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "ps server %d: '%s' is not HOST:PORT", s,
                           c->ep);
    snprintf(what, sizeof(what), "ps server %d", s);
    int64_t short_dl = bt__deadline_in(ps->store ? 1.0 : 1e9);
    struct bt__connect_opts o = {.deadline_ns = short_dl < deadline ? short_dl : deadline,
                                 .what = what,
                                 .hint = "is the ps task running?"};
    BT_CHECK(bt__sock_connect(host, port, &o, &fd, err));
    int rc = bt__ps_handshake_ex(fd, ps->token, deadline, &h, err);
    if (rc == BT_OK && h.index != (uint32_t)s)
        rc = bt__err_set(err, BT_ERR_INVALID_USAGE, "%s at %s says it is ps server %u", what, c->ep,
                         h.index);
    if (rc != BT_OK) {
        close(fd);
        return rc;
    }
    if (c->instance && c->instance != h.instance)
        BT_WARN(PS, "ps server %d at %s restarted; going on with its state", s, c->ep);
    c->instance = h.instance;
    c->fd = fd;
    return BT_OK;
}

/* Connects to server s, retrying until deadline; wrong token or job shape fail at once. */
static int reconnect(bt_ps *ps, int s, int64_t deadline, struct bt__err *err)
{
    struct conn *c = &ps->srv[s];
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    for (int attempt = 1;; attempt++) {
        struct bt__err e = {0};
        int rc = connect_once(ps, s, deadline, &e);
        if (rc == BT_OK)
            return BT_OK;
        if (rc == BT_ERR_AUTH || rc == BT_ERR_INVALID_USAGE || bt__ms_left(deadline) == 0)
            return bt__err_set(err, rc == BT_ERR_TIMEOUT ? BT_ERR_REMOTE : rc, "%s (attempt %d)",
                               e.msg, attempt);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- requests: building ---- */

static void req_reset(struct conn *c)
{
    c->tx.len = c->tx_off = 0;
    c->nframes = c->nrecv = c->nit = 0;
    c->hdr_off = c->rx_off = 0;
    c->in_payload = 0;
}

static int add_frame(struct conn *c, uint8_t cmd)
{
    if (c->nframes + 2 > c->fcap) {
        uint32_t cap = c->fcap ? c->fcap * 2 : 8;
        size_t *fs = realloc(c->fstart, cap * sizeof(*fs));
        uint32_t *ff = fs ? realloc(c->ffirst, cap * sizeof(*ff)) : NULL;
        if (fs)
            c->fstart = fs;
        if (!ff)
            return BT_ERR_SYSTEM;
        c->ffirst = ff, c->fcap = cap;
    }
    c->fstart[c->nframes] = bt__wbuf_frame_begin(&c->tx, cmd);
    c->ffirst[c->nframes] = c->nit;
    c->nframes++;
    c->ffirst[c->nframes] = c->nit;
    if (cmd == BT__PS_PUSH)
        bt__wbuf_u64(&c->tx, ++c->seq);
    if (cmd == BT__PS_PUSH || cmd == BT__PS_PULL)
        bt__wbuf_u32(&c->tx, 0); /* item count, patched by end_frames */
    return c->tx.oom ? BT_ERR_SYSTEM : BT_OK;
}

static int add_item(struct conn *c, const struct key *k, uint32_t piece, float *dst)
{
    if (c->nit == c->itcap) {
        uint32_t cap = c->itcap ? c->itcap * 2 : 16;
        struct item *it = realloc(c->it, cap * sizeof(*it));
        if (!it)
            return BT_ERR_SYSTEM;
        c->it = it, c->itcap = cap;
    }
    c->it[c->nit++] = (struct item){.k = k, .piece = piece, .dst = dst};
    c->ffirst[c->nframes] = c->nit;
    return BT_OK;
}

static void end_frames(struct conn *c, uint8_t cmd)
{
    if (c->tx.oom)
        return;
    for (uint32_t f = 0; f < c->nframes; f++) {
        size_t end = f + 1 < c->nframes ? c->fstart[f + 1] : c->tx.len;
        bt__put_le32(c->tx.p + c->fstart[f], (uint32_t)(end - c->fstart[f] - 4));
        if (cmd == BT__PS_PUSH || cmd == BT__PS_PULL)
            bt__put_le32(c->tx.p + c->fstart[f] + (cmd == BT__PS_PUSH ? 13 : 5),
                         c->ffirst[f + 1] - c->ffirst[f]);
    }
}

/* Appends one piece of a PUSH or PULL to its server's batch; grad NULL for a PULL. */
static int add_piece_req(struct conn *c, uint8_t cmd, const struct key *k, uint32_t j,
                         const float *grad, float *dst)
{
    const struct bt__ps_piece *p = &k->pc[j];
    size_t bytes = 16 + strlen(k->name) + (grad ? (size_t)p->count * 4 : 0);
    if (c->nframes == 0 || c->tx.len - c->fstart[c->nframes - 1] + bytes > BT__PS_CLIENT_FRAME)
        BT_CHECK(add_frame(c, cmd));
    bt__wbuf_bytes(&c->tx, k->name, strlen(k->name));
    bt__wbuf_u32(&c->tx, j);
    bt__wbuf_u32(&c->tx, p->count);
    if (grad)
        bt__wbuf_put(&c->tx, grad + p->offset, (size_t)p->count * 4);
    return c->tx.oom ? BT_ERR_SYSTEM : add_item(c, k, j, dst);
}

/* ---- requests: the round trip ---- */

/* A reply for frame c->nrecv arrived in c->rx[0..rx_need): status in hdr[4]. */
static int on_reply(bt_ps *ps, struct conn *c, uint8_t cmd, int *first_rc)
{
    struct bt__rbuf r = {.p = c->rx, .left = c->rx_need};
    uint32_t f = c->nrecv++;
    if (c->hdr[4] == BT__ST_ERROR) {
        uint32_t code = bt__rbuf_u32(&r);
        size_t n;
        const uint8_t *m = bt__rbuf_bytes(&r, 4096, &n);
        if (*first_rc == BT_OK)
            *first_rc = fail(ps, code > BT_ERR_INTERNAL || code == 0 ? BT_ERR_INTERNAL : (int)code,
                             "%.*s", (int)n, m ? (const char *)m : "");
        return BT_OK;
    }
    if (cmd != BT__PS_PULL)
        return BT_OK;
    size_t off = 0;
    for (uint32_t i = c->ffirst[f]; i < c->ffirst[f + 1]; i++) {
        const struct bt__ps_piece *p = &c->it[i].k->pc[c->it[i].piece];
        if (off + (size_t)p->count * 4 > c->rx_need)
            break;
        memcpy(c->it[i].dst + p->offset, c->rx + off, (size_t)p->count * 4);
        off += (size_t)p->count * 4;
    }
    if (off != c->rx_need && *first_rc == BT_OK)
        *first_rc = fail(ps, BT_ERR_INTERNAL, "ps server reply of %zu bytes, expected %zu",
                         c->rx_need, off);
    return BT_OK;
}

/* One non-blocking step on server connection c: send, then read replies. */
static int step(bt_ps *ps, struct conn *c, uint8_t cmd, int *first_rc, struct bt__err *err)
{
    BT_CHECK(bt__sock_progress(c->fd, BT_SOCK_SEND, c->tx.p, c->tx.len, &c->tx_off, err));
    for (;;) {
        size_t before = c->in_payload ? c->rx_off : c->hdr_off;
        if (!c->in_payload) {
            BT_CHECK(bt__sock_progress(c->fd, BT_SOCK_RECV, c->hdr, 5, &c->hdr_off, err));
            if (c->hdr_off < 5)
                return BT_OK;
            uint32_t len = bt__le32(c->hdr);
            if (len == 0 || len > BT__PS_MAX_FRAME)
                return bt__err_set(err, BT_ERR_REMOTE, "malformed reply (length %u)", len);
            c->rx_need = len - 1, c->rx_off = 0, c->in_payload = 1;
            if (c->rx_cap < c->rx_need) {
                uint8_t *p = realloc(c->rx, c->rx_need);
                if (!p)
                    return bt__err_set(err, BT_ERR_SYSTEM, "out of memory for a reply");
                c->rx = p, c->rx_cap = c->rx_need;
            }
        }
        BT_CHECK(bt__sock_progress(c->fd, BT_SOCK_RECV, c->rx, c->rx_need, &c->rx_off, err));
        if (c->rx_off < c->rx_need) {
            if (c->rx_off == before)
                return BT_OK;
            continue;
        }
        BT_CHECK(on_reply(ps, c, cmd, first_rc));
        c->hdr_off = 0, c->in_payload = 0;
        if (c->nrecv == c->nframes)
            return BT_OK;
    }
}

static int server_failed(bt_ps *ps, int s, const char *why)
{
    struct conn *c = &ps->srv[s];
    const struct item *it = c->nit ? &c->it[c->ffirst[c->nrecv < c->nframes ? c->nrecv : 0]] : NULL;
    if (it)
        return fail(ps, BT_ERR_REMOTE, "ps server %d (%s), holding key '%s' piece %u/%u: %s", s,
                    c->ep, it->k->name, it->piece, it->k->np, why);
    return fail(ps, BT_ERR_REMOTE, "ps server %d (%s): %s", s, c->ep, why);
}

/* After a failure on server s: reconnect and resend the frames not yet answered. */
static int recover(bt_ps *ps, int s, int64_t deadline, const char *why)
{
    struct conn *c = &ps->srv[s];
    struct bt__err err = {0};
    int64_t own = bt__deadline_in(ps->timeout_s);
    BT_WARN(PS, "ps server %d (%s): %s; reconnecting", s, c->ep, why);
    if (reconnect(ps, s, own < deadline ? own : deadline, &err) != BT_OK) {
        char msg[BT__ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%.200s; then: %.300s", why, err.msg);
        return server_failed(ps, s, msg);
    }
    c->tx_off = c->nrecv < c->nframes ? c->fstart[c->nrecv] : c->tx.len;
    c->hdr_off = c->rx_off = 0, c->in_payload = 0;
    return BT_OK;
}

/* Sends every server its frames and reads all replies; the first error wins. */
static int roundtrip(bt_ps *ps, uint8_t cmd)
{
    int64_t deadline = bt__deadline_in(ps->timeout_s + 5.0);
    int rc = BT_OK;
    struct pollfd *pf = calloc((size_t)ps->nservers, sizeof(*pf));
    if (!pf)
        return fail(ps, BT_ERR_SYSTEM, "out of memory");
    for (;;) {
        int active = 0;
        for (int s = 0; s < ps->nservers; s++) {
            struct conn *c = &ps->srv[s];
            struct bt__err err = {0};
            pf[s] = (struct pollfd){.fd = -1};
            if (c->nrecv == c->nframes)
                continue;
            if ((c->fd < 0 || step(ps, c, cmd, &rc, &err) != BT_OK) &&
                recover(ps, s, deadline, c->fd < 0 ? "not connected" : err.msg) != BT_OK) {
                free(pf);
                return ps->err.code;
            }
            if (c->nrecv == c->nframes)
                continue;
            active++;
            pf[s] = (struct pollfd){.fd = c->fd,
                                    .events = POLLIN | (c->tx_off < c->tx.len ? POLLOUT : 0)};
        }
        if (!active)
            break;
        int ms = bt__ms_left(deadline);
        if (ms == 0) {
            for (int s = 0; s < ps->nservers; s++)
                if (pf[s].fd >= 0) {
                    server_failed(ps, s,
                                  "no reply within BATON_TIMEOUT; hint: is the server "
                                  "stopped or overloaded?");
                    close(ps->srv[s].fd);
                    ps->srv[s].fd = -1;
                    break;
                }
            free(pf);
            return ps->err.code;
        }
        poll(pf, (nfds_t)ps->nservers, ms > 1000 ? 1000 : ms);
    }
    free(pf);
    return rc;
}

/* ---- calls ---- */

static int begin(bt_ps *ps, const char *call)
{
    if (!ps)
        return BT_ERR_INVALID_ARG;
    ps->call = call;
    for (int s = 0; s < ps->nservers; s++)
        req_reset(&ps->srv[s]);
    return ps->sticky ? ps->err.code : BT_OK;
}

static int check_key(bt_ps *ps, const char *name, const void *buf, size_t count, struct key **k)
{
    if (!name || (!buf && count))
        return fail(ps, BT_ERR_INVALID_ARG, "name and buffer must not be NULL");
    if (!(*k = find_key(ps, name)))
        return fail(ps, BT_ERR_INVALID_ARG,
                    "key '%s' was not declared by this worker; hint: "
                    "call bt_ps_init first",
                    name);
    if ((*k)->count != count)
        return fail(ps, BT_ERR_INVALID_ARG, "key '%s' holds %llu floats, the call passes %zu", name,
                    (unsigned long long)(*k)->count, count);
    return BT_OK;
}

static int xfer(bt_ps *ps, const char *call, uint8_t cmd, size_t n, const char *const *names,
                const float *const *src, float *const *dst, const size_t *counts)
{
    BT_CHECK(begin(ps, call));
    if (n && (!names || !counts || (!src && !dst)))
        return fail(ps, BT_ERR_INVALID_ARG, "NULL list");
    for (size_t i = 0; i < n; i++) {
        struct key *k = NULL;
        BT_CHECK(check_key(ps, names[i], src ? (const void *)src[i] : (const void *)dst[i],
                           counts[i], &k));
        for (uint32_t j = 0; j < k->np; j++)
            if (add_piece_req(&ps->srv[k->pc[j].server], cmd, k, j, src ? src[i] : NULL,
                              dst ? dst[i] : NULL) != BT_OK)
                return fail(ps, BT_ERR_SYSTEM, "out of memory building a request");
    }
    for (int s = 0; s < ps->nservers; s++)
        end_frames(&ps->srv[s], cmd);
    return roundtrip(ps, cmd);
}

int bt_ps_push_many(bt_ps *ps, size_t n, const char *const *names, const float *const *grads,
                    const size_t *counts)
{
    return xfer(ps, "bt_ps_push", BT__PS_PUSH, n, names, grads, NULL, counts);
}

int bt_ps_pull_many(bt_ps *ps, size_t n, const char *const *names, float *const *outs,
                    const size_t *counts)
{
    return xfer(ps, "bt_ps_pull", BT__PS_PULL, n, names, NULL, outs, counts);
}

int bt_ps_push(bt_ps *ps, const char *name, const float *grad, size_t count)
{
    return bt_ps_push_many(ps, 1, &name, &grad, &count);
}

int bt_ps_pull(bt_ps *ps, const char *name, float *out, size_t count)
{
    return bt_ps_pull_many(ps, 1, &name, &out, &count);
}

/* ---- declaration ---- */

/* The placement of a new key: ours, or the one the store already holds. */
static int place_key(bt_ps *ps, const char *name, uint64_t count, struct key *k)
{
    char *mine = NULL, skey[BT__PS_MAX_NAME + 64];
    void *theirs = NULL;
    size_t tl = 0;
    uint64_t tc;
    if (bt__ps_place(count, ps->partition_bytes, ps->nservers, ps->loads, &k->pc, &k->np) != BT_OK)
        return fail(ps, BT_ERR_INVALID_ARG, "key '%s' of %llu floats needs too many pieces", name,
                    (unsigned long long)count);
    if (!ps->store)
        return BT_OK;
    if (bt__ps_place_fmt(k->pc, k->np, count, &mine) != BT_OK)
        return fail(ps, BT_ERR_SYSTEM, "out of memory");
    snprintf(skey, sizeof(skey), "ps/key/%s", name);
    int rc = bt__store_compare_set(ps->store, skey, "", 0, mine, strlen(mine), &theirs, &tl);
    if (rc == BT_OK && strcmp(theirs, mine)) {
        for (uint32_t j = 0; j < k->np; j++) /* their placement, not ours, loads the servers */
            ps->loads[k->pc[j].server] -= (uint64_t)k->pc[j].count * 4 + 64;
        free(k->pc);
        k->pc = NULL;
        if (bt__ps_place_parse(theirs, ps->nservers, &k->pc, &k->np, &tc) != 0)
            rc = fail(ps, BT_ERR_INVALID_USAGE,
                      "placement of key '%s' in the store ('%s') does "
                      "not fit %d servers; hint: is BATON_PS_SERVERS the same everywhere?",
                      name, (char *)theirs, ps->nservers);
        else if (tc != count)
            rc = fail(ps, BT_ERR_INVALID_ARG,
                      "shape mismatch: key '%s' was first declared "
                      "with %llu floats, this declaration has %llu",
                      name, (unsigned long long)tc, (unsigned long long)count);
        for (uint32_t j = 0; rc == BT_OK && j < k->np; j++)
            ps->loads[k->pc[j].server] += (uint64_t)k->pc[j].count * 4 + 64;
    } else if (rc != BT_OK)
        rc = fail(ps, rc, "store: %s", bt__store_error(ps->store));
    free(mine);
    free(theirs);
    return rc;
}

static int declare(bt_ps *ps, const char *name, uint64_t count, struct key **out)
{
    struct key *k = find_key(ps, name);
    if (k) {
        *out = k;
        return k->count == count
                   ? BT_OK
                   : fail(ps, BT_ERR_INVALID_ARG,
                          "shape mismatch: key '%s' was "
                          "declared with %llu floats, now %llu",
                          name, (unsigned long long)k->count, (unsigned long long)count);
    }
    if (!*name || strlen(name) > BT__PS_MAX_NAME)
        return fail(ps, BT_ERR_INVALID_ARG, "key name '%.40s' must be 1 to %u bytes", name,
                    BT__PS_MAX_NAME);
    if (!(k = calloc(1, sizeof(*k))) || !(k->name = strdup(name))) {
        free(k);
        return fail(ps, BT_ERR_SYSTEM, "out of memory");
    }
    k->count = count;
    int rc = place_key(ps, name, count, k);
    if (rc != BT_OK) {
        free(k->pc);
        free(k->name);
        free(k);
        return rc;
    }
    bt__htab_insert(&ps->tab, &k->node, hash(name));
    *out = k;
    return BT_OK;
}

/* Forgets a key whose declaration the servers refused, so it can be declared again. */
static void forget_key(bt_ps *ps, const char *name)
{
    struct key *k = find_key(ps, name);
    if (!k)
        return;
    bt__htab_remove(&ps->tab, &k->node);
    for (uint32_t j = 0; j < k->np; j++)
        ps->loads[k->pc[j].server] -= (uint64_t)k->pc[j].count * 4 + 64;
    free(k->pc);
    free(k->name);
    free(k);
}

static int add_init(bt_ps *ps, const struct key *k, const float *init, const bt_ps_opt *o)
{
    for (uint32_t j = 0; j < k->np; j++) {
        const struct bt__ps_piece *p = &k->pc[j];
        struct conn *c = &ps->srv[p->server];
        if (add_frame(c, BT__PS_INIT) != BT_OK)
            return fail(ps, BT_ERR_SYSTEM, "out of memory");
        bt__wbuf_bytes(&c->tx, k->name, strlen(k->name));
        bt__wbuf_u32(&c->tx, j);
        bt__wbuf_u32(&c->tx, k->np);
        bt__wbuf_u64(&c->tx, k->count);
        bt__wbuf_u64(&c->tx, p->offset);
        bt__wbuf_u32(&c->tx, p->count);
        bt__ps_opt_put(&c->tx, o);
        bt__wbuf_put(&c->tx, init + p->offset, (size_t)p->count * 4);
        if (add_item(c, k, j, NULL) != BT_OK || c->tx.oom)
            return fail(ps, BT_ERR_SYSTEM, "out of memory");
    }
    return BT_OK;
}

int bt_ps_init_many(bt_ps *ps, size_t n, const char *const *names, const float *const *inits,
                    const size_t *counts, const bt_ps_opt *opt)
{
    bt_ps_opt o;
    char why[128];
    BT_CHECK(begin(ps, "bt_ps_init"));
    if (n && (!names || !inits || !counts))
        return fail(ps, BT_ERR_INVALID_ARG, "NULL list");
    if (opt)
        o = *opt;
    else
        bt_ps_opt_default(&o);
    if (bt__ps_opt_check(&o, why, sizeof(why)) != BT_OK)
        return fail(ps, BT_ERR_INVALID_ARG, "%s", why);
    size_t *order = malloc((n ? n : 1) * sizeof(*order) * 2), i;
    if (!order)
        return fail(ps, BT_ERR_SYSTEM, "out of memory");
    size_t *fresh = order + (n ? n : 1), nfresh = 0; /* keys new to this client */
    bt__ps_place_order(n, counts, order);
    int rc = BT_OK;
    for (i = 0; i < n && rc == BT_OK; i++) {
        size_t x = order[i];
        struct key *k = NULL;
        if (!names[x] || (!inits[x] && counts[x])) {
            rc = fail(ps, BT_ERR_INVALID_ARG, "name and init must not be NULL");
            break;
        }
        int is_new = !find_key(ps, names[x]);
        if ((rc = declare(ps, names[x], counts[x], &k)) != BT_OK)
            break;
        if (is_new)
            fresh[nfresh++] = x;
        rc = add_init(ps, k, inits[x], &o);
    }
    for (int s = 0; s < ps->nservers; s++)
        end_frames(&ps->srv[s], BT__PS_INIT);
    if (rc == BT_OK)
        rc = roundtrip(ps, BT__PS_INIT);
    for (i = 0; rc != BT_OK && i < nfresh; i++)
        forget_key(ps, names[fresh[i]]);
    free(order);
    return rc;
}

int bt_ps_init(bt_ps *ps, const char *name, const float *init, size_t count, const bt_ps_opt *opt)
{
    return bt_ps_init_many(ps, 1, &name, &init, &count, opt);
}

/* ---- open and close ---- */

static void free_ps(bt_ps *ps)
{
    for (int s = 0; ps->srv && s < ps->nservers; s++) {
        struct conn *c = &ps->srv[s];
        if (c->fd >= 0)
            close(c->fd);
        bt__wbuf_free(&c->tx);
        free(c->fstart);
        free(c->ffirst);
        free(c->it);
        free(c->rx);
    }
    for (size_t i = 0; i < ps->tab.nb; i++)
        for (struct key *k = (struct key *)ps->tab.b[i], *nx; k; k = nx) {
            nx = (struct key *)k->node.next;
            free(k->name);
            free(k->pc);
            free(k);
        }
    bt__store_close(ps->store);
    free(ps->srv);
    bt__htab_free(&ps->tab);
    free(ps->loads);
    free(ps->token);
    free(ps);
}

static int open_common(const struct bt__ps_client_cfg *cfg, struct bt__store *store, int gen,
                       bt_ps **out)
{
    bt_ps *ps = calloc(1, sizeof(*ps));
    if (!ps || cfg->nservers < 1 || cfg->nworkers < 1 || cfg->rank < 0 ||
        cfg->rank >= cfg->nworkers) {
        free(ps);
        bt__store_close(store);
        return bt__err_set(&open_err, BT_ERR_INVALID_ARG,
                           "bt_ps_open: worker %d of %d, %d "
                           "servers: out of range (or out of memory)",
                           cfg->rank, cfg->nworkers, cfg->nservers);
    }
    ps->rank = cfg->rank, ps->nworkers = cfg->nworkers, ps->nservers = cfg->nservers;
    ps->store = store, ps->gen = gen, ps->call = "bt_ps_open";
    bt__auth_random((uint8_t *)&ps->incarnation, sizeof(ps->incarnation));
    ps->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 300;
    ps->partition_bytes = cfg->partition_bytes > 0 ? cfg->partition_bytes : 4 << 20;
    ps->token = strdup(cfg->token ? cfg->token : "");
    ps->srv = calloc((size_t)cfg->nservers, sizeof(*ps->srv));
    ps->loads = calloc((size_t)cfg->nservers, sizeof(*ps->loads));
    if (!ps->token || !ps->srv || !ps->loads || bt__htab_init(&ps->tab, 256) != 0) {
        free_ps(ps);
        return bt__err_set(&open_err, BT_ERR_SYSTEM, "bt_ps_open: out of memory");
    }
    int64_t deadline = bt__deadline_in(ps->timeout_s);
    for (int s = 0; s < ps->nservers; s++) {
        struct bt__err err = {0};
        ps->srv[s].fd = -1;
        if (cfg->endpoints)
            snprintf(ps->srv[s].ep, sizeof(ps->srv[s].ep), "%s", cfg->endpoints[s]);
        if (reconnect(ps, s, deadline, &err) != BT_OK) {
            int rc = bt__err_set(&open_err, err.code, "bt_ps_open: worker %d: %s", ps->rank,
                                 err.msg);
            free_ps(ps);
            return rc;
        }
    }
    BT_INFO(PS, "worker %d of %d connected to %d ps servers", ps->rank, ps->nworkers, ps->nservers);
    *out = ps;
    return BT_OK;
}

int bt__ps_open_cfg(const struct bt__ps_client_cfg *cfg, bt_ps **out)
{
    if (!out || !cfg || !cfg->endpoints)
        return BT_ERR_INVALID_ARG;
    *out = NULL;
    bt__err_clear(&open_err);
    return open_common(cfg, NULL, cfg->generation, out);
}

static int env_store(struct bt__store **st, double timeout_s)
{
    const char *rdzv = getenv("BATON_RDZV");
    char host[256];
    int port;
    struct bt__err err = {0};
    if (!rdzv || bt__parse_endpoint(rdzv, host, sizeof(host), &port) != 0)
        return bt__err_set(&open_err, BT_ERR_INVALID_USAGE,
                           "bt_ps_open: BATON_RDZV='%s' is "
                           "not HOST:PORT; hint: start the workers with `baton run --ps N`",
                           rdzv ? rdzv : "");
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(timeout_s),
                                 .what = "rendezvous store",
                                 .hint = "is the launcher of node 0 running?"};
    if (bt__store_connect(host, port, bt__env_str("BATON_TOKEN", ""), &o, st, &err) != BT_OK)
        return bt__err_set(&open_err, err.code, "bt_ps_open: %s", err.msg);
    return BT_OK;
}

int bt_ps_open(bt_ps **out)
{
    if (!out)
        return BT_ERR_INVALID_ARG;
    *out = NULL;
    bt__err_clear(&open_err);
    struct bt__ps_client_cfg cfg = {.rank = (int)bt__env_int("BATON_RANK", 0),
                                    .nworkers = (int)bt__env_int("BATON_WORLD_SIZE", 1),
                                    .nservers = (int)bt__env_int("BATON_PS_SERVERS", 1),
                                    .token = bt__env_str("BATON_TOKEN", ""),
                                    .timeout_s = bt__comm_timeout_s(),
                                    .partition_bytes = bt__env_int("BATON_PS_PARTITION_BYTES",
                                                                   4 << 20)};
    struct bt__store *st = NULL;
    if (cfg.nservers < 1 || cfg.nservers > 4096)
        return bt__err_set(&open_err, BT_ERR_INVALID_USAGE,
                           "bt_ps_open: BATON_PS_SERVERS=%d "
                           "is not in 1..4096",
                           cfg.nservers);
    BT_CHECK(env_store(&st, cfg.timeout_s));
    int rc = open_common(&cfg, st, (int)bt__env_int("BATON_RESTART_COUNT", 0), out);
    if (rc != BT_OK) /* a usage error (a stale worker, a wrong env): the caller says it */
        BT_LOG(rc == BT_ERR_INVALID_USAGE ? BT_LOG_INFO : BT_LOG_WARN, BT_SUB_PS, "%s",
               open_err.msg);
    return rc;
}

static int say_goodbye(bt_ps *ps, uint32_t flags)
{
    if (!ps)
        return BT_OK;
    int rc = ps->sticky ? ps->err.code : BT_OK;
    ps->call = "bt_ps_close";
    for (int s = 0; s < ps->nservers; s++) {
        struct conn *c = &ps->srv[s];
        struct bt__err err = {0};
        uint8_t r[5];
        if (c->fd < 0)
            continue;
        req_reset(c);
        size_t f = bt__wbuf_frame_begin(&c->tx, BT__PS_CLOSE);
        bt__wbuf_u32(&c->tx, flags);
        bt__wbuf_frame_end(&c->tx, f);
        int64_t dl = bt__deadline_in(5.0);
        if ((c->tx.oom && bt__err_set(&err, BT_ERR_SYSTEM, "out of memory")) ||
            bt__sock_send_all(c->fd, c->tx.p, c->tx.len, dl, &err) != BT_OK ||
            bt__sock_recv_all(c->fd, r, sizeof(r), dl, &err) != BT_OK)
            BT_INFO(PS, "closing ps server %d (%s): %s", s, c->ep, err.msg);
    }
    free_ps(ps);
    return rc;
}

int bt_ps_close(bt_ps *ps)
{
    return say_goodbye(ps, 0);
}

int bt_ps_shutdown(bt_ps *ps)
{
    return say_goodbye(ps, BT__PS_CLOSE_DONE);
}

int bt_ps_leave(bt_ps *ps)
{
    return say_goodbye(ps, BT__PS_CLOSE_LEAVE);
}

const char *bt_ps_last_error(const bt_ps *ps)
{
    return ps ? ps->err.msg : open_err.msg;
}
