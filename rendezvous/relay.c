/* relay.c: a node's store relay: the workers of a node reach the store through it.
 *
 * Without it every worker holds its own TCP connection to the store, so a job of 12,500
 * nodes of 8 ranks holds 112,500 connections (and as many handshakes) on one process. The
 * relay runs on a thread of each node's launcher: it listens on an abstract Unix socket
 * (named in the workers' BATON_RDZV_RELAY), speaks the store's own protocol to the workers
 * (the same handshake, so a worker proves the worker token or the job token to the relay),
 * and carries each worker's frames on its one connection to the store as MUX frames of a
 * channel (proto.h). The store keeps every rule per channel: a worker channel may not write
 * l/ keys, its blocking requests park and time out there, its last will fires when it goes.
 * The relay itself holds no keys and parks nothing; its only state is a buffer per side.
 *
 * Its launcher rides on it too: it dials the store itself and hands the connection over
 * (bt__store_relay_adopt), then opens its own two clients as job-token channels through the
 * Unix socket (bt__store_connect_relay), so the store holds one connection per node. A new
 * connection handed over (after the store's host was lost) replaces the old one, whose
 * channels are hung up on.
 *
 * Failures keep their shape: when the store's connection goes, the relay hangs up on every
 * worker (they see the store close their connection, as before) and dials again for the
 * next worker that connects; when the relay's launcher dies, the workers' sockets close and
 * their next request fails with BT_ERR_REMOTE; a worker that cannot reach the relay at all
 * is told which address and to check its launcher (client.c). While the store cannot be
 * reached, the relay hangs up on a worker's handshake unanswered, and the worker's client
 * tries again until its deadline, as it retries a store that refuses connections. Handshakes with
 * workers have the store's deadline (BATON_RDZV_AUTH_TIMEOUT); replies are bounded by the worker's
 * own.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/log.h"
#include "common/param.h"
#include "rendezvous/proto.h"
#include "rendezvous/store.h"

BT_PARAM_DBL(relay_auth_timeout_s, "BATON_RDZV_AUTH_TIMEOUT", 5.0)

enum { LS_HELLO, LS_PROOF, LS_READY };

/* One worker connected to the relay. */
struct local {
    struct local *next;
    int fd, state, dead, worker;
    uint32_t chan;           /* its channel on the store connection */
    int64_t deadline;        /* ns: the handshake's end (LS_HELLO, LS_PROOF) */
    struct bt__wbuf in, out; /* partial input; unsent output */
    size_t out_off;          /* bytes of out sent */
    struct bt__auth_server auth;
};

struct bt__store_relay {
    int lfd, epfd, evfd, up; /* up: the store connection, -1 while down */
    int adopt;               /* a connection handed over by bt__store_relay_adopt, or -1 */
    char host[256];
    int port;
    char token[256];
    uint8_t key[BT__AUTH_KEY], wkey[BT__AUTH_KEY];
    struct bt__wbuf up_in, up_out;
    size_t up_off;
    struct local *locals;
    uint32_t next_chan;
    int nlocal;    /* read by other threads with __atomic */
    int nconnects; /* store connections made, for tests */
    int stopping;
    pthread_t thread;
    int thread_started;
    int64_t auth_ns;
    char addr[108]; /* "@baton-relay-..." (abstract socket) */
    char tag_listen, tag_event, tag_up;
};

static void ep_set(struct bt__store_relay *r, int fd, void *ptr, uint32_t ev, int op)
{
    struct epoll_event e = {.events = ev, .data.ptr = ptr};
    epoll_ctl(r->epfd, op, fd, &e);
}

/* ---- the store side ---- */

static void local_close(struct bt__store_relay *r, struct local *l, int tell_store);

/* Hangs up on every worker and closes the store connection. */
static void up_lost(struct bt__store_relay *r, const char *why)
{
    BT_WARN(RDZV, "relay: lost the rendezvous store %s:%d (%s); hanging up on %d worker(s)",
            r->host, r->port, why, r->nlocal);
    for (struct local *l = r->locals; l; l = l->next)
        if (l->state == LS_READY) /* one mid-handshake has no channel yet */
            local_close(r, l, 0);
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->up, NULL);
    close(r->up);
    r->up = -1;
    r->up_in.len = r->up_out.len = r->up_off = 0;
}

static void up_flush(struct bt__store_relay *r)
{
    struct bt__err e = {0};
    if (r->up < 0)
        return;
    if (r->up_out.oom ||
        bt__sock_progress(r->up, BT_SOCK_SEND, r->up_out.p, r->up_out.len, &r->up_off, &e)) {
        up_lost(r, r->up_out.oom ? "out of memory" : e.msg);
        return;
    }
    int done = r->up_off == r->up_out.len;
    if (done)
        r->up_out.len = r->up_off = 0;
    ep_set(r, r->up, &r->tag_up, done ? EPOLLIN : EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

/* Starts a MUX frame for channel id with command cmd; finish with bt__wbuf_frame_end. */
static size_t up_begin(struct bt__store_relay *r, uint32_t id, uint8_t cmd)
{
    size_t f = bt__wbuf_frame_begin(&r->up_out, BT__RDZV_MUX);
    bt__wbuf_u32(&r->up_out, id);
    bt__wbuf_u8(&r->up_out, cmd);
    return f;
}

/* Dials the store (the launcher's job token). */
static int up_connect(struct bt__store_relay *r)
{
    struct bt__err e = {0};
    struct bt__store *s = NULL;
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5.0),
                                 .what = "rendezvous store",
                                 .abort_flag = &r->stopping}; /* destroy does not wait 5 s */
    if (bt__store_connect(r->host, r->port, r->token, &o, &s, &e) != BT_OK) {
        BT_WARN(RDZV, "relay: %s", e.msg);
        return -1;
    }
    r->up = bt__store_detach(s);
    r->nconnects++;
    ep_set(r, r->up, &r->tag_up, EPOLLIN, EPOLL_CTL_ADD);
    return 0;
}

/* A connection bt__store_relay_adopt handed over replaces the store connection (whose
 * channels it hangs up on): called before anything reads r->up. */
static void up_take(struct bt__store_relay *r)
{
    int fd = __atomic_exchange_n(&r->adopt, -1, __ATOMIC_ACQ_REL);
    if (fd < 0)
        return;
    if (r->up >= 0)
        up_lost(r, "replaced by its launcher's new connection");
    r->up = fd;
    r->nconnects++;
    ep_set(r, r->up, &r->tag_up, EPOLLIN, EPOLL_CTL_ADD);
}

static struct local *local_find(struct bt__store_relay *r, uint32_t id)
{
    for (struct local *l = r->locals; l; l = l->next)
        if (l->chan == id && !l->dead && l->state == LS_READY)
            return l;
    return NULL;
}

static void local_flush(struct bt__store_relay *r, struct local *l);

/* One MUX reply from the store: to its worker, or the store closed the channel. */
static void up_frame(struct bt__store_relay *r, const uint8_t *p, uint32_t len)
{
    if (len < 6 || p[0] != BT__RDZV_MUX) {
        up_lost(r, "the store sent a frame that is not a channel's reply");
        return;
    }
    struct local *l = local_find(r, bt__le32(p + 1));
    if (!l)
        return; /* its worker hung up already */
    if (p[5] == BT__RDZV_CHAN_CLOSED) {
        local_close(r, l, 0);
        return;
    }
    size_t f = bt__wbuf_frame_begin(&l->out, p[5]);
    bt__wbuf_put(&l->out, p + 6, len - 6);
    bt__wbuf_frame_end(&l->out, f);
    local_flush(r, l);
}

static void up_readable(struct bt__store_relay *r)
{
    uint8_t buf[65536];
    ssize_t n = recv(r->up, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        up_lost(r, n == 0 ? "connection closed by the store" : strerror(errno));
        return;
    }
    bt__wbuf_put(&r->up_in, buf, (size_t)n);
    size_t off = 0;
    while (r->up >= 0 && r->up_in.len - off >= 4) {
        uint32_t len = bt__le32(r->up_in.p + off);
        if (len == 0 || len > BT__RDZV_MAX_FRAME + 5) {
            up_lost(r, "malformed frame from the store");
            return;
        }
        if (r->up_in.len - off - 4 < len)
            break;
        up_frame(r, r->up_in.p + off + 4, len);
        off += 4 + (size_t)len;
    }
    if (r->up < 0)
        return;
    memmove(r->up_in.p, r->up_in.p + off, r->up_in.len - off);
    r->up_in.len -= off;
}

/* ---- the workers' side ---- */

static void local_close(struct bt__store_relay *r, struct local *l, int tell_store)
{
    if (l->dead)
        return;
    if (tell_store && l->state == LS_READY && r->up >= 0) {
        bt__wbuf_frame_end(&r->up_out, up_begin(r, l->chan, BT__RDZV_CHAN_LOST));
        up_flush(r);
    }
    l->dead = 1;
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    close(l->fd);
    __atomic_fetch_sub(&r->nlocal, 1, __ATOMIC_RELAXED);
}

static void local_flush(struct bt__store_relay *r, struct local *l)
{
    struct bt__err e = {0};
    if (l->dead)
        return;
    if (l->out.oom ||
        bt__sock_progress(l->fd, BT_SOCK_SEND, l->out.p, l->out.len, &l->out_off, &e)) {
        local_close(r, l, 1);
        return;
    }
    int done = l->out_off == l->out.len;
    if (done)
        l->out.len = l->out_off = 0;
    ep_set(r, l->fd, l, done ? EPOLLIN : EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

/* The handshake of proto.h, as the store does it; then the channel opens upstream. */
static void local_auth(struct bt__store_relay *r, struct local *l, const uint8_t *q)
{
    if (l->state == LS_HELLO) {
        uint8_t out[BT__AUTH_CHALLENGE_LEN];
        int outcome = bt__auth_server_hello(&l->auth, &bt__rdzv_auth, q, out);
        if (outcome == BT__AUTH_NOT_PEER || outcome == BT__AUTH_CRYPTO) {
            local_close(r, l, 0);
            return;
        }
        bt__wbuf_put(&l->out, out, sizeof(out));
        local_flush(r, l);
        if (outcome == BT__AUTH_VERSION)
            local_close(r, l, 0);
        l->state = LS_PROOF;
        return;
    }
    uint8_t out[BT__RDZV_RESULT_LEN];
    up_take(r);
    int ok = bt__auth_server_proof(&l->auth, &bt__rdzv_auth, r->key, q);
    if (!ok && bt__auth_server_proof(&l->auth, &bt__rdzv_auth, r->wkey, q))
        ok = l->worker = 1;
    if (ok && r->up < 0 && up_connect(r) != 0) {
        local_close(r, l, 0); /* no answer: the worker's client retries (client.c) */
        return;
    }
    const uint8_t *key = l->worker ? r->wkey : r->key;
    ok = bt__auth_result(&l->auth, &bt__rdzv_auth, key, ok ? BT__ST_OK : BT__ST_BAD_TOKEN, NULL,
                         out) == BT__ST_OK;
    bt__wbuf_put(&l->out, out, sizeof(out));
    local_flush(r, l);
    if (!ok) {
        BT_WARN(RDZV, "relay: refused a local client (wrong token, or no store)");
        local_close(r, l, 0);
        return;
    }
    l->state = LS_READY;
    l->chan = r->next_chan++;
    struct ucred cr = {0};
    socklen_t cl = sizeof(cr);
    getsockopt(l->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    char label[32];
    int ll = snprintf(label, sizeof(label), "%spid %d", l->worker ? "" : "launcher ", (int)cr.pid);
    size_t f = up_begin(r, l->chan, BT__RDZV_CHAN_OPEN);
    bt__wbuf_u8(&r->up_out, (uint8_t)l->worker);
    bt__wbuf_bytes(&r->up_out, label, (size_t)ll);
    bt__wbuf_frame_end(&r->up_out, f);
    up_flush(r);
}

/* Parses l's whole messages; returns the bytes used. */
static size_t local_parse(struct bt__store_relay *r, struct local *l)
{
    size_t off = 0;
    while (!l->dead) {
        const uint8_t *q = l->in.p + off;
        size_t avail = l->in.len - off;
        if (l->state != LS_READY) {
            size_t need = l->state == LS_HELLO ? BT__RDZV_HELLO_LEN : BT__RDZV_PROOF_LEN;
            if (avail < need)
                break;
            local_auth(r, l, q);
            off += need;
            continue;
        }
        if (avail < 4)
            break;
        uint32_t len = bt__le32(q);
        if (len == 0 || len > BT__RDZV_MAX_FRAME - 5) {
            local_close(r, l, 1);
            break;
        }
        if (avail - 4 < len)
            break;
        size_t f = up_begin(r, l->chan, q[4]);
        bt__wbuf_put(&r->up_out, q + 5, len - 1);
        bt__wbuf_frame_end(&r->up_out, f);
        off += 4 + (size_t)len;
    }
    return off;
}

static void local_readable(struct bt__store_relay *r, struct local *l)
{
    uint8_t buf[65536];
    ssize_t n = recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        local_close(r, l, 1);
        return;
    }
    bt__wbuf_put(&l->in, buf, (size_t)n);
    size_t used = local_parse(r, l);
    if (l->dead)
        return;
    memmove(l->in.p, l->in.p + used, l->in.len - used);
    l->in.len -= used;
    if (l->in.oom)
        local_close(r, l, 1);
    up_flush(r);
}

static void accept_locals(struct bt__store_relay *r)
{
    for (;;) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        struct local *l = calloc(1, sizeof(*l));
        if (!l) {
            close(fd);
            continue;
        }
        l->fd = fd;
        l->deadline = bt__now_ns() + r->auth_ns;
        l->next = r->locals;
        r->locals = l;
        __atomic_fetch_add(&r->nlocal, 1, __ATOMIC_RELAXED);
        ep_set(r, fd, l, EPOLLIN, EPOLL_CTL_ADD);
    }
}

/* Frees closed locals and closes handshakes past their deadline. */
static void sweep(struct bt__store_relay *r)
{
    int64_t now = bt__now_ns();
    for (struct local **pp = &r->locals; *pp;) {
        struct local *l = *pp;
        if (!l->dead && l->state != LS_READY && now > l->deadline) {
            BT_WARN(RDZV, "relay: a local client did not finish its handshake in time");
            local_close(r, l, 0);
        }
        if (l->dead) {
            *pp = l->next;
            bt__wbuf_free(&l->in);
            bt__wbuf_free(&l->out);
            free(l);
        } else {
            pp = &l->next;
        }
    }
}

static void *relay_thread(void *arg)
{
    struct bt__store_relay *r = arg;
    struct epoll_event evs[64];
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(r->epfd, evs, 64, 250);
        up_take(r);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            uint64_t drain;
            if (p == &r->tag_listen)
                accept_locals(r);
            else if (p == &r->tag_event)
                (void)!read(r->evfd, &drain, sizeof(drain)); /* a stop or an adoption */
            else if (p == &r->tag_up && (evs[i].events & EPOLLOUT))
                up_flush(r);
            else if (p == &r->tag_up)
                up_readable(r);
            else if (evs[i].events & EPOLLOUT)
                local_flush(r, p);
            else
                local_readable(r, p);
        }
        sweep(r); /* after the batch: nothing in it points at a freed local */
    }
    return NULL;
}

/* ---- life ---- */

static int relay_listen(struct bt__store_relay *r, struct bt__err *err)
{
    uint8_t nonce[8];
    if (bt__auth_random(nonce, sizeof(nonce)) != 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "relay: no random bytes (OpenSSL)");
    snprintf(r->addr, sizeof(r->addr), "@baton-relay-%d-%016" PRIx64, (int)getpid(),
             bt__le64(nonce));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(r->addr);
    memcpy(sa.sun_path, r->addr, n);
    sa.sun_path[0] = '\0'; /* abstract: nothing in the file system to clean up */
    r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r->lfd < 0 ||
        bind(r->lfd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) ||
        listen(r->lfd, 4096))
        return bt__err_set(err, BT_ERR_SYSTEM, "relay: listen on %s: %s", r->addr, strerror(errno));
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->epfd < 0 || r->evfd < 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "relay: epoll: %s", strerror(errno));
    ep_set(r, r->lfd, &r->tag_listen, EPOLLIN, EPOLL_CTL_ADD);
    ep_set(r, r->evfd, &r->tag_event, EPOLLIN, EPOLL_CTL_ADD);
    return BT_OK;
}

int bt__store_relay_create(const char *host, int port, const char *token,
                           struct bt__store_relay **out, struct bt__err *err)
{
    int rc;
    *out = NULL;
    struct bt__store_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return bt__err_set(err, BT_ERR_SYSTEM, "relay: out of memory");
    r->lfd = r->epfd = r->evfd = r->up = r->adopt = -1;
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->token, sizeof(r->token), "%s", token);
    r->port = port;
    double a = bt__param_relay_auth_timeout_s();
    r->auth_ns = (int64_t)((a > 0 ? a : 5.0) * 1e9);
    bt__auth_key(token, r->key);
    char wtoken[BT__AUTH_WORKER_TOKEN];
    if (bt__auth_worker_token(token, wtoken) != 0) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "relay: HMAC failed (OpenSSL)");
        goto fail;
    }
    bt__auth_key(wtoken, r->wkey);
    BT_CHECK_GOTO(relay_listen(r, err), rc, fail);
    if (pthread_create(&r->thread, NULL, relay_thread, r) != 0) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "relay: cannot start its thread");
        goto fail;
    }
    r->thread_started = 1;
    BT_INFO(RDZV, "relay for the store %s:%d listens on %s", host, port, r->addr);
    *out = r;
    return BT_OK;
fail:
    bt__store_relay_destroy(r);
    return rc;
}

const char *bt__store_relay_address(const struct bt__store_relay *r)
{
    return r->addr;
}

void bt__store_relay_adopt(struct bt__store_relay *r, int fd)
{
    int old = __atomic_exchange_n(&r->adopt, fd, __ATOMIC_ACQ_REL);
    if (old >= 0)
        close(old); /* handed over twice before the thread took the first */
    uint64_t one = 1;
    ssize_t w = write(r->evfd, &one, sizeof(one));
    (void)w;
}

int bt__store_relay_nclients(const struct bt__store_relay *r)
{
    return __atomic_load_n(&r->nlocal, __ATOMIC_RELAXED);
}

void bt__store_relay_destroy(struct bt__store_relay *r)
{
    if (!r)
        return;
    if (r->thread_started) {
        __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
        uint64_t one = 1;
        ssize_t w = write(r->evfd, &one, sizeof(one));
        (void)w;
        pthread_join(r->thread, NULL);
    }
    for (struct local *l = r->locals; l; l = l->next)
        local_close(r, l, 0);
    sweep(r);
    int fds[] = {r->lfd, r->epfd, r->evfd, r->up, r->adopt};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    bt__wbuf_free(&r->up_in);
    bt__wbuf_free(&r->up_out);
    explicit_bzero(r->token, sizeof(r->token));
    free(r);
}
