/* server.c: the rendezvous store server: one epoll loop, no thread per client.
 *
 * Every connection is a small state machine: HELLO (waiting for the 48-byte hello), PROOF
 * (challenge sent, waiting for the client's HMAC), READY (frames). Sockets are non-blocking;
 * bytes are read into one shared scratch buffer and parsed in place, and only a partial frame
 * is copied into the connection's own input buffer, so 10,000 idle clients cost a few hundred
 * bytes each. Replies go to a per-connection output buffer that is flushed at once and, when
 * the socket is full, again on EPOLLOUT.
 *
 * Keys live in the chained hash table of common/hash.h. A key that does not exist yet can
 * still have an entry: the requests parked on it (GET, WAIT, MULTI_GET) hang off the entry as a
 * list of waiter nodes, one node per (request, key). A SET marks the nodes present and a request
 * whose last missing key arrived is queued on the ready list; DELETE marks them missing again.
 * Deadlines (a parked request's timeout, an unauthenticated connection's handshake limit, a
 * partial frame's limit, the heartbeat lease of a client that asked for one) sit in one binary
 * min-heap of timers, two per connection, and epoll_wait sleeps until the earliest. A lease is
 * renewed by every frame the client sends; when it runs out, the client is treated as gone although
 * its socket is still open (a SIGSTOPped process, a frozen VM, a network that dropped without a
 * reset): the connection is closed and its last will fires, as if it had died.
 *
 * Admission: what a client can make the store hold is bounded (a frame's size, its deadline,
 * one budget for every connection's buffers: "the buffer budget" below), and a client that
 * proved the worker token instead of the job token may not write launcher keys (may_write).
 *
 * Nothing is freed while an event batch may still point at it: a connection that must go is
 * marked dead (its waiter cancelled, its last will applied, its timer removed) and closed
 * when the batch is done. This file does not know the client side (client.c) or the frame
 * layout details (proto.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/droplog.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/param.h"
#include "rendezvous/proto.h"
#include "rendezvous/store.h"

/* Seconds an accepted connection has to complete the handshake. */
BT_PARAM_DBL(auth_timeout_s, "BATON_RDZV_AUTH_TIMEOUT", 5.0)
/* Seconds a frame may take to arrive whole once its first byte is in (the client's own limit
 * for a reply, client.c, is the same knob). */
BT_PARAM_DBL(frame_timeout_s, "BATON_RDZV_IO_TIMEOUT", 60.0)
/* MiB of input and output the store buffers across all its connections. */
BT_PARAM_INT(max_buffered_mb, "BATON_RDZV_MAX_BUFFERED_MB", 256)

#define SCRATCH_BYTES (64 * 1024)
#define WILLS_MAX 2                   /* last wills per connection (on different keys) */
#define MAX_PENDING_INPUT (64 * 1024) /* bytes a client may send while parked */
#define KEEP_BUFFER 4096              /* bytes of an emptied buffer's capacity kept */
#define ACCEPTS_PER_EVENT 256

enum { CS_HELLO, CS_PROOF, CS_READY };

struct wnode;
struct conn;

/* A deadline in srv->heap. */
struct timer {
    struct conn *c;
    int64_t deadline; /* ns, meaningful while idx >= 0 */
    int idx;          /* in srv->heap, or -1 */
};

struct entry {
    struct bt__hnode node; /* first: in srv->tab (common/hash.h) */
    uint8_t *val;          /* owned; NULL while the key does not exist */
    size_t vlen;           /* bytes */
    int has_val;
    struct wnode *waiters; /* requests parked on this key */
    size_t klen;           /* bytes */
    char key[];            /* klen bytes and a NUL */
};

struct waiter;

struct wnode {
    struct wnode *prev, *next; /* in e->waiters */
    struct entry *e;
    struct waiter *w;
    int present; /* e has a value */
};

struct waiter {
    struct conn *c;
    uint8_t cmd; /* GET, WAIT or MULTI_GET */
    uint32_t n, missing;
    struct wnode nodes[]; /* one per requested key, in request order */
};

struct conn {
    struct conn *prev, *next; /* srv->conns */
    struct conn *dead_next;   /* srv->dead */
    struct conn *ready_next;  /* srv->ready */
    int fd, state;
    int dead, closing, queued;
    int mute;                 /* its peer went away while we sent: replies are dropped */
    int worker;               /* authenticated with the worker token: no writes under "l/" */
    struct timer tmo;         /* a parked request's timeout, or the handshake's limit */
    struct timer lease;       /* HEARTBEAT: when the client's silence becomes its death */
    int64_t lease_ns;         /* the lease's length; 0: no lease */
    uint32_t events;          /* registered with epoll */
    uint64_t nread;           /* bytes received so far (for logs) */
    struct bt__wbuf in, out;  /* partial input frame; unsent output */
    size_t out_off;           /* bytes of out already sent */
    size_t charged;           /* bytes of in.cap + out.cap counted in srv->buffered */
    struct waiter *w;         /* the parked request, or NULL */
    uint8_t *will[WILLS_MAX]; /* each key NUL value (one allocation), or NULL */
    size_t will_klen[WILLS_MAX], will_vlen[WILLS_MAX];
    struct bt__auth_server auth; /* the handshake's nonces */
    char peer[96];
    /* Channels (proto.h MUX): a worker's connection to its node's relay, carried on the
     * relay's one connection. A channel has no socket (fd -1) and is not in srv->conns. */
    struct conn *parent;    /* a channel: the relay connection it rides on (NULL once cut) */
    struct conn *chans;     /* a relay connection: its channels, linked by chan_next */
    struct conn *chan_next; /* in parent->chans */
    uint32_t chan;          /* a channel: its id on the relay connection */
    int nchans;             /* a relay connection: how many channels it holds */
};

struct bt__store_server {
    int lfd, epfd, evfd, spare_fd;
    uint8_t key[32];  /* SHA-256 of the job token: a launcher */
    uint8_t wkey[32]; /* SHA-256 of the worker token (bt__auth_worker_token): a worker */
    int64_t auth_timeout_ns, frame_timeout_ns;
    size_t max_frame;    /* bytes after a frame's length field, per connection */
    size_t max_buffered; /* bytes of buffer capacity, all connections together */
    size_t buffered;     /* bytes held now; read by other threads with __atomic */
    struct bt__htab tab; /* struct entry by key */
    struct conn *conns, *dead, *ready;
    struct timer **heap;
    size_t nheap, heap_cap;
    int nclients, nwaiting; /* read by other threads with __atomic */
    int stopping;
    int thread_started;
    pthread_t thread;
    int64_t last_emfile_warn;
    struct bt__droplog drops;   /* the WARN lines for dropped connections, rate-limited */
    char tag_listen, tag_event; /* epoll markers */
    uint8_t scratch[SCRATCH_BYTES];
};

static void conn_kill(struct bt__store_server *srv, struct conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_drop(struct bt__store_server *srv, struct conn *c, enum bt__drop_reason r,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void conn_flush(struct bt__store_server *srv, struct conn *c);
static void chan_flush(struct bt__store_server *srv, struct conn *c);
static void chan_cut(struct bt__store_server *srv, struct conn *c);

/* ---- hash table ---- */

static uint64_t hash_key(const void *k, size_t n)
{
    return bt__fnv1a(BT_FNV1A_INIT, k, n);
}

static struct entry *tab_find(struct bt__store_server *srv, const void *k, size_t n)
{
    uint64_t h = hash_key(k, n);
    for (struct bt__hnode *nd = bt__htab_chain(&srv->tab, h); nd; nd = nd->next) {
        struct entry *e = (struct entry *)nd;
        if (nd->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
            return e;
    }
    return NULL;
}

/* The entry for k, created without a value when missing; NULL when out of memory. */
static struct entry *tab_get(struct bt__store_server *srv, const void *k, size_t n)
{
    struct entry *e = tab_find(srv, k, n);
    if (e)
        return e;
    e = calloc(1, sizeof(*e) + n + 1);
    if (!e)
        return NULL;
    e->klen = n;
    memcpy(e->key, k, n);
    bt__htab_insert(&srv->tab, &e->node, hash_key(k, n));
    return e;
}

/* Frees e once it holds neither a value nor a waiter. */
static void tab_release(struct bt__store_server *srv, struct entry *e)
{
    if (e->has_val || e->waiters)
        return;
    bt__htab_remove(&srv->tab, &e->node);
    free(e);
}

/* ---- timers: a binary min-heap of connections by deadline ---- */

static void heap_swap(struct bt__store_server *srv, size_t a, size_t b)
{
    struct timer *t = srv->heap[a];
    srv->heap[a] = srv->heap[b];
    srv->heap[b] = t;
    srv->heap[a]->idx = (int)a;
    srv->heap[b]->idx = (int)b;
}

static void heap_fix(struct bt__store_server *srv, size_t i)
{
    while (i > 0 && srv->heap[(i - 1) / 2]->deadline > srv->heap[i]->deadline) {
        heap_swap(srv, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < srv->nheap && srv->heap[l]->deadline < srv->heap[m]->deadline)
            m = l;
        if (r < srv->nheap && srv->heap[r]->deadline < srv->heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(srv, i, m);
        i = m;
    }
}

static void heap_remove(struct bt__store_server *srv, struct timer *t)
{
    if (t->idx < 0)
        return;
    size_t i = (size_t)t->idx;
    t->idx = -1;
    srv->nheap--;
    if (i == srv->nheap)
        return;
    srv->heap[i] = srv->heap[srv->nheap];
    srv->heap[i]->idx = (int)i;
    heap_fix(srv, i);
}

static int heap_add(struct bt__store_server *srv, struct timer *t, int64_t deadline)
{
    heap_remove(srv, t);
    if (srv->nheap == srv->heap_cap) {
        size_t cap = srv->heap_cap ? srv->heap_cap * 2 : 1024;
        struct timer **h = realloc(srv->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        srv->heap = h;
        srv->heap_cap = cap;
    }
    t->deadline = deadline;
    t->idx = (int)srv->nheap;
    srv->heap[srv->nheap++] = t;
    heap_fix(srv, (size_t)t->idx);
    return 0;
}

/* ---- values and waiters ---- */

static void ready_push(struct bt__store_server *srv, struct conn *c)
{
    if (c->queued || c->dead)
        return;
    c->queued = 1;
    c->ready_next = srv->ready;
    srv->ready = c;
}

/* Gives e the value val (copied); wakes the requests parked on it. -1 when out of memory. */
static int entry_set(struct bt__store_server *srv, struct entry *e, const void *val, size_t n)
{
    uint8_t *v = malloc(n ? n : 1);
    if (!v)
        return -1;
    memcpy(v, val, n);
    free(e->val);
    e->val = v;
    e->vlen = n;
    if (e->has_val)
        return 0;
    e->has_val = 1;
    for (struct wnode *nd = e->waiters; nd; nd = nd->next)
        if (!nd->present) {
            nd->present = 1;
            if (--nd->w->missing == 0)
                ready_push(srv, nd->w->c);
        }
    return 0;
}

static void entry_delete(struct bt__store_server *srv, struct entry *e)
{
    if (!e->has_val)
        return;
    free(e->val);
    e->val = NULL;
    e->vlen = 0;
    e->has_val = 0;
    for (struct wnode *nd = e->waiters; nd; nd = nd->next)
        if (nd->present) {
            nd->present = 0;
            nd->w->missing++;
        }
    tab_release(srv, e);
}

/* Unlinks c's parked request from every key and frees it. */
static void waiter_release(struct bt__store_server *srv, struct conn *c)
{
    struct waiter *w = c->w;
    if (!w)
        return;
    for (uint32_t i = 0; i < w->n; i++) {
        struct wnode *nd = &w->nodes[i];
        if (!nd->e)
            continue;
        if (nd->prev)
            nd->prev->next = nd->next;
        else
            nd->e->waiters = nd->next;
        if (nd->next)
            nd->next->prev = nd->prev;
        tab_release(srv, nd->e); /* the last node of a duplicated key frees it */
    }
    free(w);
    c->w = NULL;
    heap_remove(srv, &c->tmo);
    __atomic_fetch_sub(&srv->nwaiting, 1, __ATOMIC_RELAXED);
}

/* ---- the buffer budget ----
 *
 * What a client can make the store hold is bounded three ways: a frame is at most max_frame
 * bytes (its length is checked before any of it is buffered), the whole of a partial frame
 * must be sent within frame_timeout_ns of the moment the store started holding it, and the
 * capacity of every connection's input and output buffers together stays within
 * max_buffered: a partial frame is given room for all of it at once, or its connection is
 * dropped. Capacity, not length, is counted, since that is what the store's memory holds. */

/* Brings srv->buffered up to date with c's buffers. */
static void conn_charge(struct bt__store_server *srv, struct conn *c)
{
    size_t now = c->in.cap + c->out.cap;
    if (now != c->charged)
        __atomic_fetch_add(&srv->buffered, now - c->charged, __ATOMIC_RELAXED); /* mod 2^n */
    c->charged = now;
}

/* The bytes c will hold once p[0..n) is appended to its input: at least the whole frame that
 * input starts, once its length is known (a length over the cap is left to conn_parse). */
static size_t input_need(const struct bt__store_server *srv, const struct conn *c, const uint8_t *p,
                         size_t n)
{
    size_t have = c->in.len + n;
    if (c->state != CS_READY || have < 4)
        return have;
    uint8_t hdr[4];
    for (size_t i = 0; i < 4; i++)
        hdr[i] = i < c->in.len ? c->in.p[i] : p[i - c->in.len];
    size_t frame = (size_t)bt__le32(hdr) + 4;
    return frame > have && frame <= srv->max_frame + 4 ? frame : have;
}

/* Makes room in c's input for p[0..n) and the rest of its frame, within the budget; kills c
 * and returns 0 when the budget does not hold it. */
static int input_admit(struct bt__store_server *srv, struct conn *c, const uint8_t *p, size_t n)
{
    size_t need = input_need(srv, c, p, n);
    if (need <= c->in.cap)
        return 1;
    size_t others = __atomic_load_n(&srv->buffered, __ATOMIC_RELAXED) - c->in.cap;
    if (others + need > srv->max_buffered) {
        conn_drop(srv, c, BT__DROP_CAP,
                  "its %zu-byte frame does not fit the store's buffer budget (%zu of %zu bytes "
                  "held for %d connections); hint: BATON_RDZV_MAX_BUFFERED_MB",
                  need, others, srv->max_buffered, bt__store_server_nclients(srv));
        return 0;
    }
    uint8_t *q = realloc(c->in.p, need);
    if (!q) {
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for its %zu-byte frame", need);
        return 0;
    }
    c->in.p = q;
    c->in.cap = need;
    conn_charge(srv, c);
    return 1;
}

/* A partial frame in c's input must arrive whole before a deadline, set when it starts (the
 * timer is free then: a parked request holds it only while the input is not parsed, and a
 * frame that completes clears it, on_frame). */
static void frame_deadline(struct bt__store_server *srv, struct conn *c)
{
    if (c->dead || c->state != CS_READY || c->w)
        return;
    if (c->in.len == 0)
        heap_remove(srv, &c->tmo);
    else if (c->tmo.idx < 0 && heap_add(srv, &c->tmo, bt__now_ns() + srv->frame_timeout_ns) != 0)
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for its timer");
}

/* ---- output ---- */

/* A client that does not read its replies: its unsent output may hold a reply of the largest
 * frame and one more, and no more than what the budget has left. */
static void output_check(struct bt__store_server *srv, struct conn *c)
{
    size_t unsent = c->out.len - c->out_off;
    size_t held = __atomic_load_n(&srv->buffered, __ATOMIC_RELAXED);
    if (c->out.oom)
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for %zu bytes of replies", unsent);
    else if (unsent > 2 * (srv->max_frame + 4))
        conn_drop(srv, c, BT__DROP_CAP,
                  "does not read its replies: %zu bytes unsent (at most %zu are kept)", unsent,
                  2 * (srv->max_frame + 4));
    else if (held > srv->max_buffered)
        conn_drop(srv, c, BT__DROP_CAP,
                  "does not read its replies: its %zu unsent bytes pass the store's buffer "
                  "budget (%zu of %zu bytes held); hint: BATON_RDZV_MAX_BUFFERED_MB",
                  unsent, held, srv->max_buffered);
}

static void conn_set_events(struct bt__store_server *srv, struct conn *c, uint32_t ev)
{
    if (c->events == ev || c->dead)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static void conn_flush(struct bt__store_server *srv, struct conn *c)
{
    if (c->dead)
        return;
    if (c->fd < 0) {
        chan_flush(srv, c);
        return;
    }
    if (c->out.oom) {
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for its reply");
        return;
    }
    struct bt__err err = {0};
    int rc = c->mute
                 ? BT_OK
                 : bt__sock_progress(c->fd, BT_SOCK_SEND, c->out.p, c->out.len, &c->out_off, &err);
    if (rc != BT_OK) {
        /* The peer closed while we sent. What it sent before still counts, as at its EOF
         * (conn_eof): a GOODBYE among it clears a will, a relay connection's channels' too;
         * so replies are dropped from now on and reading goes on to the end. */
        BT_TRACE(RDZV, "%s: lost while sending (%s); reading what it sent", c->peer, err.msg);
        c->mute = 1;
    }
    if (c->mute)
        c->out_off = c->out.len;
    if (c->out_off < c->out.len) {
        conn_charge(srv, c);
        output_check(srv, c);
        if (!c->dead)
            conn_set_events(srv, c, EPOLLIN | EPOLLOUT);
        return;
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > KEEP_BUFFER)
        bt__wbuf_free(&c->out);
    conn_charge(srv, c);
    conn_set_events(srv, c, EPOLLIN);
    if (c->closing)
        conn_kill(srv, c, BT_LOG_TRACE, "said goodbye");
}

static void reply_status(struct bt__store_server *srv, struct conn *c, uint8_t status)
{
    size_t f = bt__wbuf_frame_begin(&c->out, status);
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

static void reply_error(struct bt__store_server *srv, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(struct bt__store_server *srv, struct conn *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    BT_INFO(RDZV, "refused a request from %s: %s", c->peer, msg);
    size_t f = bt__wbuf_frame_begin(&c->out, BT__ST_ERROR);
    bt__wbuf_bytes(&c->out, msg, strlen(msg));
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

/* ---- parked requests ---- */

/* Replies to c's parked request: its values (OK) or the keys still missing (TIMEOUT). */
static void waiter_finish(struct bt__store_server *srv, struct conn *c, uint8_t status)
{
    struct waiter *w = c->w;
    struct bt__wbuf *o = &c->out;
    size_t total = 8;
    if (status == BT__ST_OK && w->cmd == BT__RDZV_MULTI_GET)
        for (uint32_t i = 0; i < w->n; i++)
            total += 4 + w->nodes[i].e->vlen;
    if (total > BT__RDZV_MAX_FRAME) {
        waiter_release(srv, c);
        reply_error(srv, c,
                    "MULTI_GET values total %zu bytes, more than one reply holds (%u); "
                    "fetch them with GET",
                    total, BT__RDZV_MAX_FRAME);
        return;
    }
    size_t f = bt__wbuf_frame_begin(o, status);
    if (status == BT__ST_OK && w->cmd == BT__RDZV_GET) {
        bt__wbuf_bytes(o, w->nodes[0].e->val, w->nodes[0].e->vlen);
    } else if (status == BT__ST_OK && w->cmd == BT__RDZV_MULTI_GET) {
        bt__wbuf_u32(o, w->n);
        for (uint32_t i = 0; i < w->n; i++)
            bt__wbuf_bytes(o, w->nodes[i].e->val, w->nodes[i].e->vlen);
    } else if (status == BT__ST_TIMEOUT) {
        uint32_t listed = w->missing < BT__RDZV_MAX_LISTED ? w->missing : BT__RDZV_MAX_LISTED;
        bt__wbuf_u32(o, w->missing);
        bt__wbuf_u32(o, listed);
        for (uint32_t i = 0; i < w->n && listed > 0; i++)
            if (!w->nodes[i].present) {
                bt__wbuf_bytes(o, w->nodes[i].e->key, w->nodes[i].e->klen);
                listed--;
            }
    }
    bt__wbuf_frame_end(o, f);
    waiter_release(srv, c);
    conn_flush(srv, c);
    if (c->in.len > 0)
        ready_push(srv, c); /* it sent more while parked: resume parsing */
}

/* Counts the keys of a GET/WAIT/MULTI_GET payload and checks their sizes. */
static int parse_keys(struct bt__rbuf r, uint32_t n, const char **why)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t kl;
        bt__rbuf_bytes(&r, BT__RDZV_MAX_FRAME, &kl);
        if (r.bad)
            return -1;
        if (kl == 0 || kl > BT__RDZV_MAX_KEY)
            *why = kl == 0 ? "an empty key" : "a key over 1024 bytes";
    }
    return r.left == 0 ? 0 : -1;
}

/* Links node nd of w to the entry of key k; -1 when out of memory. */
static int waiter_link(struct bt__store_server *srv, struct waiter *w, struct wnode *nd,
                       const uint8_t *k, size_t kl)
{
    struct entry *e = tab_get(srv, k, kl);
    if (!e)
        return -1;
    nd->e = e;
    nd->w = w;
    nd->present = e->has_val;
    nd->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = nd;
    e->waiters = nd;
    if (!nd->present)
        w->missing++;
    return 0;
}

/* GET, WAIT, MULTI_GET: reply now when every key exists, else park until they do or the
 * request's timeout passes. */
static void do_blocking(struct bt__store_server *srv, struct conn *c, uint8_t cmd,
                        struct bt__rbuf *r)
{
    uint32_t tmo = bt__rbuf_u32(r);
    uint32_t n = cmd == BT__RDZV_GET ? 1 : bt__rbuf_u32(r);
    const char *why = NULL;
    struct bt__rbuf keys = *r;
    if (r->bad || n == 0 || n > BT__RDZV_MAX_KEYS || parse_keys(keys, n, &why) != 0) {
        r->bad = 1;
        return;
    }
    r->left = 0; /* parse_keys checked the rest of the payload */
    if (why) {
        reply_error(srv, c, "request has %s", why);
        return;
    }
    struct waiter *w = calloc(1, sizeof(*w) + n * sizeof(w->nodes[0]));
    if (!w) {
        reply_error(srv, c, "server out of memory");
        return;
    }
    w->c = c;
    w->cmd = cmd;
    w->n = n;
    c->w = w;
    __atomic_fetch_add(&srv->nwaiting, 1, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < n; i++) {
        size_t kl;
        const uint8_t *k = bt__rbuf_bytes(&keys, BT__RDZV_MAX_KEY, &kl);
        if (waiter_link(srv, w, &w->nodes[i], k, kl) != 0) {
            waiter_release(srv, c);
            reply_error(srv, c, "server out of memory");
            return;
        }
    }
    if (w->missing == 0)
        waiter_finish(srv, c, BT__ST_OK);
    else if (tmo == 0)
        waiter_finish(srv, c, BT__ST_TIMEOUT);
    else if (tmo != BT__RDZV_NO_TIMEOUT &&
             heap_add(srv, &c->tmo, bt__now_ns() + (int64_t)tmo * 1000000) != 0)
        waiter_finish(srv, c, BT__ST_TIMEOUT);
}

/* ---- simple commands ---- */

/* Stores (k, v) and wakes the requests waiting for k; -1 when out of memory. */
static int store_put(struct bt__store_server *srv, const void *k, size_t kl, const void *v,
                     size_t vl)
{
    struct entry *e = tab_get(srv, k, kl);
    if (!e)
        return -1;
    if (entry_set(srv, e, v, vl) != 0) {
        tab_release(srv, e);
        return -1;
    }
    return 0;
}

/* Replies ERROR and returns 0 when a well-formed request carries a key or value over the caps. */
static int sizes_ok(struct bt__store_server *srv, struct conn *c, size_t kl, size_t vl)
{
    if (kl == 0 || kl > BT__RDZV_MAX_KEY) {
        reply_error(srv, c, "key of %zu bytes; keys must have 1 to %u bytes", kl, BT__RDZV_MAX_KEY);
        return 0;
    }
    if (vl > BT__RDZV_MAX_VALUE) {
        reply_error(srv, c, "value of %zu bytes is over the cap of %u bytes", vl,
                    BT__RDZV_MAX_VALUE);
        return 0;
    }
    return 1;
}

/* Capabilities: a connection that proved the worker token (a rank, a parameter server) may
 * read every key but not write the launchers' ("l/..."): their outcome, their membership and
 * their last wills are the launchers' word. Replies ERROR and returns 0 when c may not. */
static int may_write(struct bt__store_server *srv, struct conn *c, const uint8_t *k, size_t kl)
{
    if (!c->worker || kl < 2 || memcmp(k, "l/", 2) != 0)
        return 1;
    reply_error(srv, c, "key '%.*s' is a launcher's (l/...); a worker's token may not write it",
                (int)kl, (const char *)k);
    return 0;
}

static void do_set(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    size_t kl, vl;
    const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
    const uint8_t *v = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &vl);
    if (r->bad || r->left || !sizes_ok(srv, c, kl, vl) || !may_write(srv, c, k, kl))
        return;
    if (store_put(srv, k, kl, v, vl) != 0)
        reply_error(srv, c, "server out of memory");
    else
        reply_status(srv, c, BT__ST_OK);
}

/* Parses a stored counter: decimal text of an int64. -1 when it is not one. */
static int parse_counter(const struct entry *e, int64_t *out)
{
    char buf[32];
    if (e->vlen == 0 || e->vlen >= sizeof(buf))
        return -1;
    memcpy(buf, e->val, e->vlen);
    buf[e->vlen] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static void do_add(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    size_t kl;
    const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
    int64_t delta = (int64_t)bt__rbuf_u64(r), cur = 0, sum;
    if (r->bad || r->left || !sizes_ok(srv, c, kl, 0) || !may_write(srv, c, k, kl))
        return;
    struct entry *e = tab_find(srv, k, kl);
    if (e && e->has_val && parse_counter(e, &cur) != 0) {
        reply_error(srv, c, "ADD on key '%.*s' whose value is not an integer", (int)kl, k);
        return;
    }
    if (__builtin_add_overflow(cur, delta, &sum)) {
        reply_error(srv, c, "ADD on key '%.*s' overflows int64", (int)kl, k);
        return;
    }
    char txt[32];
    int tl = snprintf(txt, sizeof(txt), "%" PRId64, sum);
    if (store_put(srv, k, kl, txt, (size_t)tl) != 0) {
        reply_error(srv, c, "server out of memory");
        return;
    }
    size_t f = bt__wbuf_frame_begin(&c->out, BT__ST_OK);
    bt__wbuf_u64(&c->out, (uint64_t)sum);
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

static void do_compare_set(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    size_t kl, el, dl;
    const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
    const uint8_t *ex = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &el);
    const uint8_t *de = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &dl);
    if (r->bad || r->left || !sizes_ok(srv, c, kl, dl) || !may_write(srv, c, k, kl))
        return;
    struct entry *e = tab_find(srv, k, kl);
    int exists = e && e->has_val;
    int match = exists ? e->vlen == el && (el == 0 || memcmp(e->val, ex, el) == 0) : el == 0;
    if (match && store_put(srv, k, kl, de, dl) != 0) {
        reply_error(srv, c, "server out of memory");
        return;
    }
    e = tab_find(srv, k, kl);
    size_t f = bt__wbuf_frame_begin(&c->out, BT__ST_OK);
    if (e && e->has_val)
        bt__wbuf_bytes(&c->out, e->val, e->vlen);
    else
        bt__wbuf_bytes(&c->out, NULL, 0);
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

static void do_multi_set(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    uint32_t n = bt__rbuf_u32(r);
    struct bt__rbuf all = *r;
    size_t kl = 1, vl = 0, bad_kl = 1, bad_vl = 0, l_kl = 0;
    const uint8_t *l_key = NULL; /* a launcher key among them */
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
        bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &vl);
        if (k && kl >= 2 && memcmp(k, "l/", 2) == 0) {
            l_key = k;
            l_kl = kl;
        }
        if (kl == 0 || kl > BT__RDZV_MAX_KEY || vl > BT__RDZV_MAX_VALUE) {
            bad_kl = kl;
            bad_vl = vl;
        }
    }
    if (r->bad || r->left || n > BT__RDZV_MAX_KEYS) {
        r->bad = 1;
        return;
    }
    if (!sizes_ok(srv, c, bad_kl, bad_vl) || (l_key && !may_write(srv, c, l_key, l_kl)))
        return;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *k = bt__rbuf_bytes(&all, BT__RDZV_MAX_KEY, &kl);
        const uint8_t *v = bt__rbuf_bytes(&all, BT__RDZV_MAX_VALUE, &vl);
        if (store_put(srv, k, kl, v, vl) != 0) {
            reply_error(srv, c, "server out of memory after %u of %u keys", i, n);
            return;
        }
    }
    reply_status(srv, c, BT__ST_OK);
}

static void do_delete(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    size_t kl;
    const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
    if (r->bad || r->left || !sizes_ok(srv, c, kl, 0) || !may_write(srv, c, k, kl))
        return;
    struct entry *e = tab_find(srv, k, kl);
    int existed = e && e->has_val;
    if (existed)
        entry_delete(srv, e);
    size_t f = bt__wbuf_frame_begin(&c->out, BT__ST_OK);
    bt__wbuf_u32(&c->out, (uint32_t)existed);
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

/* Frees c's last wills (GOODBYE, an empty LAST_WILL, the connection's end). */
static void wills_clear(struct conn *c)
{
    for (int i = 0; i < WILLS_MAX; i++) {
        free(c->will[i]);
        c->will[i] = NULL;
    }
}

/* LAST_WILL: a will for a key already willed replaces it; another key takes a free slot (at
 * most WILLS_MAX); an empty value cancels them all. */
static void do_last_will(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    size_t kl, vl;
    const uint8_t *k = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &kl);
    const uint8_t *v = bt__rbuf_bytes(r, BT__RDZV_MAX_FRAME, &vl);
    if (r->bad || r->left || !sizes_ok(srv, c, kl, vl) || (vl > 0 && !may_write(srv, c, k, kl)))
        return;
    if (vl == 0) {
        wills_clear(c);
        reply_status(srv, c, BT__ST_OK);
        return;
    }
    int slot = -1;
    for (int i = 0; i < WILLS_MAX && slot < 0; i++)
        if (c->will[i] && c->will_klen[i] == kl && !memcmp(c->will[i], k, kl))
            slot = i;
    for (int i = 0; i < WILLS_MAX && slot < 0; i++)
        if (!c->will[i])
            slot = i;
    if (slot < 0) {
        reply_error(srv, c, "a connection may leave at most 2 last wills (on different keys)");
        return;
    }
    uint8_t *w = malloc(kl + 1 + vl);
    if (!w) {
        reply_error(srv, c, "server out of memory");
        return;
    }
    memcpy(w, k, kl);
    w[kl] = '\0';
    memcpy(w + kl + 1, v, vl);
    free(c->will[slot]);
    c->will[slot] = w;
    c->will_klen[slot] = kl;
    c->will_vlen[slot] = vl;
    reply_status(srv, c, BT__ST_OK);
}

/* Applies c's last wills: each key := value unless the key exists already (first failure
 * wins). */
static void will_fire(struct bt__store_server *srv, struct conn *c)
{
    for (int i = 0; i < WILLS_MAX; i++) {
        if (!c->will[i])
            continue;
        struct entry *e = tab_get(srv, c->will[i], c->will_klen[i]);
        if (!e || e->has_val) {
            BT_INFO(RDZV, "%s left without goodbye; its last will for '%s' is moot (key exists)",
                    c->peer, (char *)c->will[i]);
            continue;
        }
        BT_INFO(RDZV, "%s left without goodbye; its last will sets '%s'", c->peer,
                (char *)c->will[i]);
        if (entry_set(srv, e, c->will[i] + c->will_klen[i] + 1, c->will_vlen[i]) != 0)
            tab_release(srv, e);
    }
}

/* HEARTBEAT: from now on, a silence of ttl (any frame counts as a beat) kills c; 0 cancels. */
static void do_heartbeat(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    uint32_t ttl_ms = bt__rbuf_u32(r);
    if (r->bad || r->left)
        return;
    c->lease_ns = (int64_t)ttl_ms * 1000000;
    heap_remove(srv, &c->lease);
    if (ttl_ms && heap_add(srv, &c->lease, bt__now_ns() + c->lease_ns) != 0) {
        c->lease_ns = 0;
        reply_error(srv, c, "server out of memory");
        return;
    }
    reply_status(srv, c, BT__ST_OK);
}

/* ---- channels: a node's relay multiplexes its workers on one connection ----
 *
 * A relay (relay.c) runs in every node's launcher and holds one connection to the store,
 * authenticated with the job token. Each worker that connects to the relay becomes a channel
 * here: MUX {chan, CHAN_OPEN, u8 worker, label} makes a connection-like record with no socket
 * whose requests arrive as MUX {chan, command, payload} and whose replies leave as
 * MUX {chan, status, payload} on the relay's connection. A channel is a client like any
 * other: its requests park, time out and fire last wills, and a worker channel may not write
 * l/ keys. One request per channel is in flight (each worker's client waits for its reply),
 * so a parked GET holds only its own channel. The store tells the relay that a channel is
 * gone with the status CHAN_CLOSED (after a GOODBYE, a malformed request); the relay tells
 * the store with CHAN_LOST (its worker hung up). When the relay's connection goes, every
 * channel on it goes too, with its last will. */

#define MAX_CHANS 65536 /* channels on one relay connection */

static void on_frame(struct bt__store_server *srv, struct conn *c, uint8_t cmd, const uint8_t *p,
                     size_t n);

static struct conn *chan_find(struct conn *c, uint32_t id)
{
    for (struct conn *ch = c->chans; ch; ch = ch->chan_next)
        if (ch->chan == id)
            return ch;
    return NULL;
}

/* Tells relay connection c that channel id is closed. */
static void chan_closed(struct bt__store_server *srv, struct conn *c, uint32_t id)
{
    size_t f = bt__wbuf_frame_begin(&c->out, BT__RDZV_MUX);
    bt__wbuf_u32(&c->out, id);
    bt__wbuf_u8(&c->out, BT__RDZV_CHAN_CLOSED);
    bt__wbuf_frame_end(&c->out, f);
    conn_flush(srv, c);
}

/* Moves channel c's reply frames onto its relay connection, each wrapped in a MUX frame. */
static void chan_flush(struct bt__store_server *srv, struct conn *c)
{
    struct conn *p = c->parent;
    for (size_t off = 0; p && !p->dead && off + 4 <= c->out.len;) {
        uint32_t len = bt__le32(c->out.p + off);
        size_t f = bt__wbuf_frame_begin(&p->out, BT__RDZV_MUX);
        bt__wbuf_u32(&p->out, c->chan);
        bt__wbuf_put(&p->out, c->out.p + off + 4, len);
        bt__wbuf_frame_end(&p->out, f);
        off += 4 + (size_t)len;
    }
    c->out.len = 0;
    if (c->out.cap > KEEP_BUFFER)
        bt__wbuf_free(&c->out);
    if (p && !p->dead)
        conn_flush(srv, p);
    if (c->closing)
        conn_kill(srv, c, BT_LOG_TRACE, "said goodbye");
}

/* Part of conn_kill: a dying relay connection takes its channels along (their last wills
 * fire); a dying channel leaves its relay connection, which hears CHAN_CLOSED. */
static void chan_cut(struct bt__store_server *srv, struct conn *c)
{
    while (c->chans) {
        struct conn *ch = c->chans;
        c->chans = ch->chan_next;
        ch->parent = NULL;
        conn_kill(srv, ch, BT_LOG_INFO, "its node's relay connection %s closed", c->peer);
    }
    struct conn *p = c->parent;
    if (!p)
        return;
    for (struct conn **pp = &p->chans; *pp; pp = &(*pp)->chan_next)
        if (*pp == c) {
            *pp = c->chan_next;
            break;
        }
    p->nchans--;
    c->parent = NULL;
    if (!p->dead)
        chan_closed(srv, p, c->chan);
}

/* CHAN_OPEN: payload {u8 worker, str label}. */
static void chan_open(struct bt__store_server *srv, struct conn *c, uint32_t id, struct bt__rbuf *r)
{
    uint8_t worker = bt__rbuf_u8(r);
    size_t ll;
    const uint8_t *label = bt__rbuf_bytes(r, 64, &ll);
    if (r->bad || r->left)
        return;
    struct conn *ch = chan_find(c, id) || c->nchans >= MAX_CHANS ? NULL : calloc(1, sizeof(*ch));
    if (!ch) {
        reply_error(srv, c, "channel %u: already open, over %d channels, or out of memory", id,
                    MAX_CHANS);
        return;
    }
    ch->fd = -1;
    ch->state = CS_READY;
    ch->worker = worker != 0;
    ch->tmo = (struct timer){ch, 0, -1};
    ch->lease = (struct timer){ch, 0, -1};
    ch->parent = c;
    ch->chan = id;
    snprintf(ch->peer, sizeof(ch->peer), "%.*s via relay %.48s", (int)(ll < 32 ? ll : 32),
             (const char *)label, c->peer);
    ch->chan_next = c->chans;
    c->chans = ch;
    c->nchans++;
    BT_TRACE(RDZV, "%s joined as a %s", ch->peer, ch->worker ? "worker" : "launcher");
}

/* MUX {u32 chan, u8 command, payload}: a relayed request (or CHAN_OPEN / CHAN_LOST). */
static void do_mux(struct bt__store_server *srv, struct conn *c, struct bt__rbuf *r)
{
    uint32_t id = bt__rbuf_u32(r);
    uint8_t cmd = bt__rbuf_u8(r);
    if (r->bad)
        return;
    if (c->worker || c->fd < 0) {
        r->left = 0;
        reply_error(srv, c, "MUX is a node relay's command (the launcher's token)");
        return;
    }
    if (cmd == BT__RDZV_CHAN_OPEN) {
        chan_open(srv, c, id, r);
        return;
    }
    struct conn *ch = chan_find(c, id);
    if (cmd == BT__RDZV_CHAN_LOST) {
        r->left = 0;
        if (ch) {
            chan_cut(srv, ch); /* the relay forgot it already: no CHAN_CLOSED back */
            conn_kill(srv, ch, BT_LOG_INFO, "left without goodbye (said its relay)");
        }
        return;
    }
    const uint8_t *p = r->p;
    size_t n = r->left;
    r->left = 0;
    if (ch && ch->w && cmd == BT__RDZV_GOODBYE)
        waiter_release(srv, ch); /* its client gave up on the parked request and closes
                                  * (bt__store_close): as at a direct connection's EOF */
    if (!ch)
        chan_closed(srv, c, id);
    else if (ch->w || ch->closing)
        conn_drop(srv, ch, BT__DROP_MALFORMED, "sent a request while its last one was pending");
    else
        on_frame(srv, ch, cmd, p, n);
}

static const char *cmd_name(uint8_t cmd)
{
    static const char *names[] = {"?",         "SET",       "GET",       "ADD",    "COMPARE_SET",
                                  "WAIT",      "MULTI_GET", "MULTI_SET", "DELETE", "PING",
                                  "LAST_WILL", "GOODBYE",   "HEARTBEAT", "MUX"};
    return cmd < sizeof(names) / sizeof(names[0]) ? names[cmd] : "unknown";
}

static void on_frame(struct bt__store_server *srv, struct conn *c, uint8_t cmd, const uint8_t *p,
                     size_t n)
{
    struct bt__rbuf r = {p, n, 0};
    heap_remove(srv, &c->tmo); /* the frame's deadline: it came whole */
    if (c->lease_ns && heap_add(srv, &c->lease, bt__now_ns() + c->lease_ns) != 0)
        heap_remove(srv, &c->lease); /* out of memory: the lease lapses, never fires early */
    switch (cmd) {
    case BT__RDZV_SET: do_set(srv, c, &r); break;
    case BT__RDZV_GET:
    case BT__RDZV_WAIT:
    case BT__RDZV_MULTI_GET: do_blocking(srv, c, cmd, &r); break;
    case BT__RDZV_ADD: do_add(srv, c, &r); break;
    case BT__RDZV_COMPARE_SET: do_compare_set(srv, c, &r); break;
    case BT__RDZV_MULTI_SET: do_multi_set(srv, c, &r); break;
    case BT__RDZV_DELETE: do_delete(srv, c, &r); break;
    case BT__RDZV_LAST_WILL: do_last_will(srv, c, &r); break;
    case BT__RDZV_HEARTBEAT: do_heartbeat(srv, c, &r); break;
    case BT__RDZV_MUX: do_mux(srv, c, &r); break;
    case BT__RDZV_PING:
    case BT__RDZV_GOODBYE:
        if (n != 0) {
            r.bad = 1;
            break;
        }
        if (cmd == BT__RDZV_GOODBYE) {
            wills_clear(c);
            c->lease_ns = 0;
            heap_remove(srv, &c->lease);
            c->closing = 1;
        }
        reply_status(srv, c, BT__ST_OK);
        break;
    default:
        conn_drop(srv, c, BT__DROP_MALFORMED, "sent unknown command %u (a newer client?)", cmd);
        return;
    }
    if (r.bad || r.left)
        conn_drop(srv, c, BT__DROP_MALFORMED, "sent a malformed %s request (%zu payload bytes)",
                  cmd_name(cmd), n);
}

/* ---- handshake ---- */

static void on_hello(struct bt__store_server *srv, struct conn *c, const uint8_t *q)
{
    uint8_t out[BT__AUTH_CHALLENGE_LEN];
    int outcome = bt__auth_server_hello(&c->auth, &bt__rdzv_auth, q, out);
    if (outcome == BT__AUTH_NOT_PEER) {
        conn_drop(srv, c, BT__DROP_BAD_MAGIC,
                  "bad magic 0x%016" PRIx64 ": not a baton rendezvous client (a port scanner, "
                  "an HTTP probe, or another program pointed at this port?)",
                  bt__le64(q));
        return;
    }
    if (outcome == BT__AUTH_CRYPTO) {
        conn_kill(srv, c, BT_LOG_WARN, "no random bytes for its challenge (OpenSSL RAND_bytes)");
        return;
    }
    bt__wbuf_put(&c->out, out, sizeof(out));
    conn_flush(srv, c);
    if (outcome == BT__AUTH_VERSION) {
        conn_drop(srv, c, BT__DROP_VERSION,
                  "speaks rendezvous protocol version %u, this store speaks %u; hint: are the "
                  "launcher and the workers from different baton builds?",
                  bt__le32(q + 8), BT__RDZV_VERSION);
        return;
    }
    c->state = CS_PROOF;
}

static void on_proof(struct bt__store_server *srv, struct conn *c, const uint8_t *q)
{
    uint8_t out[BT__RDZV_RESULT_LEN];
    int ok = bt__auth_server_proof(&c->auth, &bt__rdzv_auth, srv->key, q);
    if (!ok && bt__auth_server_proof(&c->auth, &bt__rdzv_auth, srv->wkey, q))
        ok = c->worker = 1;
    const uint8_t *key = c->worker ? srv->wkey : srv->key;
    ok = bt__auth_result(&c->auth, &bt__rdzv_auth, key, ok ? BT__ST_OK : BT__ST_BAD_TOKEN, NULL,
                         out) == BT__ST_OK;
    bt__wbuf_put(&c->out, out, sizeof(out));
    if (!ok) {
        conn_flush(srv, c);
        conn_drop(srv, c, BT__DROP_AUTH,
                  "refused: wrong job token (its HMAC does not match); "
                  "hint: a pod from another job, or a different BATON_TOKEN?");
        return;
    }
    c->state = CS_READY;
    heap_remove(srv, &c->tmo);
    BT_TRACE(RDZV, "%s authenticated as a %s", c->peer, c->worker ? "worker" : "launcher");
    conn_flush(srv, c);
}

/* ---- input ---- */

/* Parses as many whole messages of p[0..n) as c's state allows; returns the bytes used. */
static size_t conn_parse(struct bt__store_server *srv, struct conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (!c->dead && !c->closing && !c->w) {
        const uint8_t *q = p + off;
        size_t avail = n - off;
        if (c->state == CS_HELLO || c->state == CS_PROOF) {
            size_t need = c->state == CS_HELLO ? BT__RDZV_HELLO_LEN : BT__RDZV_PROOF_LEN;
            if (avail < need)
                break;
            if (c->state == CS_HELLO)
                on_hello(srv, c, q);
            else
                on_proof(srv, c, q);
            off += need;
            continue;
        }
        if (avail < 4)
            break;
        uint32_t len = bt__le32(q);
        if (len == 0 || len > srv->max_frame) {
            conn_drop(srv, c, BT__DROP_MALFORMED, "sent a frame of length %u (1 to %zu allowed)",
                      len, srv->max_frame);
            break;
        }
        if (avail - 4 < len)
            break;
        on_frame(srv, c, q[4], q + 5, len - 1);
        off += 4 + (size_t)len;
    }
    return off;
}

/* Parses what c has buffered (after new bytes, or after its parked request finished). */
static void conn_consume(struct bt__store_server *srv, struct conn *c)
{
    size_t used = conn_parse(srv, c, c->in.p, c->in.len);
    if (c->dead)
        return;
    memmove(c->in.p, c->in.p + used, c->in.len - used);
    c->in.len -= used;
    if (c->in.len == 0 && c->in.cap > KEEP_BUFFER)
        bt__wbuf_free(&c->in);
    conn_charge(srv, c);
    frame_deadline(srv, c);
}

/* Takes n new bytes from c's socket: whole frames are parsed where they lie, and only the
 * rest is copied into c's input, within the budget (input_admit). */
static void conn_input(struct bt__store_server *srv, struct conn *c, const uint8_t *p, size_t n)
{
    c->nread += n;
    int fresh = c->in.len == 0;
    if (fresh) {
        size_t used = conn_parse(srv, c, p, n);
        p += used;
        n -= used;
    }
    if (c->dead || n == 0 || !input_admit(srv, c, p, n))
        return;
    bt__wbuf_put(&c->in, p, n);
    if (!fresh)
        conn_consume(srv, c);
    if (c->dead)
        return;
    if (c->in.oom)
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for its %zu-byte frame", c->in.len);
    else if ((c->w || c->closing) && c->in.len > MAX_PENDING_INPUT)
        conn_drop(srv, c, BT__DROP_CAP, "sent %zu bytes while its blocking request was pending",
                  c->in.len);
    conn_charge(srv, c);
    frame_deadline(srv, c);
}

/* c's peer closed or reset: say how far it got. */
static void conn_lost(struct bt__store_server *srv, struct conn *c, const char *why)
{
    if (c->state == CS_HELLO && c->nread == 0)
        conn_kill(srv, c, BT_LOG_INFO, "closed before its hello (a TCP probe?): %s", why);
    else if (c->state != CS_READY)
        conn_drop(srv, c, BT__DROP_LOST, "lost during the handshake after %" PRIu64 " bytes: %s",
                  c->nread, why);
    else if (c->in.len > 0)
        conn_drop(srv, c, BT__DROP_LOST, "lost mid-frame (%zu bytes of a %u-byte frame): %s",
                  c->in.len, c->in.len >= 4 ? bt__le32(c->in.p) + 4 : 0, why);
    else
        conn_kill(srv, c, BT_LOG_INFO, "left without goodbye: %s", why);
}

/* c's peer closed its end. What it sent before still counts (a GOODBYE among it clears its
 * last will): a parked request is dropped (nobody will read its reply) and the rest parsed. */
static void conn_eof(struct bt__store_server *srv, struct conn *c, const char *why)
{
    if (c->state == CS_READY && c->w && c->in.len > 0) {
        waiter_release(srv, c);
        conn_consume(srv, c);
    }
    if (!c->dead)
        conn_lost(srv, c, why);
}

/* Reads what c's socket holds, a scratch buffer at a time (at most 4, then other clients get
 * their turn; epoll is level-triggered, so the rest comes next round). This is the one place
 * that calls recv itself instead of bt__sock_progress: that one drains until EAGAIN, which
 * costs an extra syscall per message, measured at 17% of the CPU time of 10,000 joins; here
 * a short read ends the round. */
static void conn_readable(struct bt__store_server *srv, struct conn *c)
{
    for (int round = 0; round < 4 && !c->dead; round++) {
        ssize_t n = recv(c->fd, srv->scratch, sizeof(srv->scratch), MSG_DONTWAIT);
        if (n > 0)
            conn_input(srv, c, srv->scratch, (size_t)n);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            conn_eof(srv, c, n == 0 ? "connection closed by the peer" : strerror(errno));
            return;
        }
        if (n < (ssize_t)sizeof(srv->scratch))
            return;
    }
}

/* ---- connection life ---- */

static void conn_kill(struct bt__store_server *srv, struct conn *c, int level, const char *fmt, ...)
{
    if (c->dead)
        return;
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    BT_LOG(level, BT_SUB_RDZV, "closing connection from %s: %s", c->peer, why);
    c->dead = 1;
    heap_remove(srv, &c->tmo);
    heap_remove(srv, &c->lease);
    waiter_release(srv, c);
    if (c->state == CS_READY)
        will_fire(srv, c);
    chan_cut(srv, c);
    c->dead_next = srv->dead;
    srv->dead = c;
}

/* conn_kill for a peer that broke the protocol or a limit: counted by reason, and logged at
 * WARN only within the burst of common/droplog.h (at TRACE after it, for the summary). */
static void conn_drop(struct bt__store_server *srv, struct conn *c, enum bt__drop_reason r,
                      const char *fmt, ...)
{
    if (c->dead)
        return;
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    int level = bt__droplog_admit(&srv->drops, r) ? BT_LOG_WARN : BT_LOG_TRACE;
    conn_kill(srv, c, level, "%s", why);
}

static void conn_free(struct bt__store_server *srv, struct conn *c)
{
    while (c->chans) { /* the store is going away (destroy): no last wills */
        struct conn *ch = c->chans;
        c->chans = ch->chan_next;
        ch->parent = NULL;
        if (!ch->dead)
            conn_free(srv, ch);
    }
    if (c->fd < 0) { /* a channel: no socket, not in srv->conns */
        bt__wbuf_free(&c->out);
        wills_clear(c);
        free(c->w);
        free(c);
        return;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    /* Remove the fd from the epoll set before closing it: close() alone leaves the entry (and
     * its pointer to c) alive while any other process still holds the socket, e.g. a child
     * forked by the program hosting the store, and the loop would then see events for a freed
     * connection on a reused fd number. */
    epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    __atomic_fetch_sub(&srv->nclients, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&srv->buffered, c->charged, __ATOMIC_RELAXED);
    bt__wbuf_free(&c->in);
    bt__wbuf_free(&c->out);
    wills_clear(c);
    free(c->w);
    free(c);
}

static void conn_new(struct bt__store_server *srv, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (!c || epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        BT_WARN(RDZV, "cannot take a new client: %s", c ? strerror(errno) : "out of memory");
        close(fd);
        free(c);
        return;
    }
    c->fd = fd;
    c->events = EPOLLIN;
    c->tmo = (struct timer){c, 0, -1};
    c->lease = (struct timer){c, 0, -1};
    c->state = CS_HELLO;
    bt__sock_peer_str(fd, c->peer, sizeof(c->peer));
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    __atomic_fetch_add(&srv->nclients, 1, __ATOMIC_RELAXED);
    if (heap_add(srv, &c->tmo, bt__now_ns() + srv->auth_timeout_ns) != 0)
        conn_drop(srv, c, BT__DROP_OOM, "out of memory for its timer");
}

/* The listener stays readable while we are out of descriptors: accept into the spare
 * descriptor's slot and close at once, so the loop does not spin and the client hears a
 * close instead of hanging in the backlog. */
static void accept_failed(struct bt__store_server *srv, const struct bt__err *err)
{
    if (srv->spare_fd >= 0) {
        close(srv->spare_fd);
        int fd = -1;
        bt__sock_accept(srv->lfd, &fd, NULL);
        if (fd >= 0)
            close(fd);
        srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    int64_t now = bt__now_ns();
    if (now - srv->last_emfile_warn > 1000000000LL) {
        srv->last_emfile_warn = now;
        BT_WARN(RDZV,
                "cannot accept a new client (%s) with %d connected; hint: raise the "
                "open-file limit (ulimit -n)",
                err->msg, bt__store_server_nclients(srv));
    }
}

static void accept_all(struct bt__store_server *srv)
{
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd;
        struct bt__err err = {0};
        if (bt__sock_accept(srv->lfd, &fd, &err) != BT_OK) {
            accept_failed(srv, &err);
            return;
        }
        if (fd < 0)
            return;
        conn_new(srv, fd);
    }
}

/* Fires every deadline that has passed: parked requests time out, handshakes expire, and a
 * client silent for its whole lease is treated as gone (its last will fires). */
static void expire(struct bt__store_server *srv)
{
    int64_t now = bt__now_ns();
    while (srv->nheap > 0 && srv->heap[0]->deadline <= now) {
        struct timer *t = srv->heap[0];
        struct conn *c = t->c;
        heap_remove(srv, t);
        if (t == &c->lease)
            conn_drop(srv, c, BT__DROP_STALL,
                      "sent nothing for %.1f s, the heartbeat lease it asked for; treating it "
                      "as gone (a stopped or frozen process, or a network that went away)",
                      (double)c->lease_ns / 1e9);
        else if (c->w)
            waiter_finish(srv, c, BT__ST_TIMEOUT);
        else if (c->state != CS_READY)
            conn_drop(srv, c, BT__DROP_STALL,
                      "no complete handshake within %.1f s (%" PRIu64 " bytes received); "
                      "hint: BATON_RDZV_AUTH_TIMEOUT",
                      (double)srv->auth_timeout_ns / 1e9, c->nread);
        else
            conn_drop(srv, c, BT__DROP_STALL,
                      "stalled mid-frame: %zu bytes of a %u-byte frame after %.1f s (a stopped "
                      "client, or one holding the store's memory); hint: BATON_RDZV_IO_TIMEOUT",
                      c->in.len, c->in.len >= 4 ? bt__le32(c->in.p) + 4 : 0,
                      (double)srv->frame_timeout_ns / 1e9);
    }
}

/* Finishes requests whose keys all arrived, resumes their connections' input, and frees the
 * connections that died during this round. */
static void settle(struct bt__store_server *srv)
{
    while (srv->ready || srv->dead) {
        struct conn *c;
        while ((c = srv->ready)) {
            srv->ready = c->ready_next;
            c->queued = 0;
            if (c->dead)
                continue;
            if (c->w && c->w->missing == 0)
                waiter_finish(srv, c, BT__ST_OK);
            else if (!c->w && c->in.len > 0)
                conn_consume(srv, c);
        }
        while ((c = srv->dead)) {
            srv->dead = c->dead_next;
            conn_free(srv, c);
        }
    }
}

static void conn_event(struct bt__store_server *srv, struct conn *c, uint32_t ev)
{
    if (c->dead)
        return;
    if (ev & EPOLLOUT)
        conn_flush(srv, c);
    if (!c->dead && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_readable(srv, c);
}

/* ---- the server's life ---- */

/* The loop woke up late by more than this: the store itself was not running. */
#define SELF_STALL_NS 1000000000LL

/* The store itself did not run for a while (its process was stopped, its VM paused): the
 * silence of its clients during that time is its own, so every lease starts again, and so
 * does every partial frame's deadline. */
static void renew_leases(struct bt__store_server *srv, int64_t late_ns)
{
    int n = 0;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (!c->dead && c->lease_ns && heap_add(srv, &c->lease, bt__now_ns() + c->lease_ns) == 0)
            n++;
        for (struct conn *ch = c->chans; ch; ch = ch->chan_next) /* a launcher's, via its relay */
            if (!ch->dead && ch->lease_ns &&
                heap_add(srv, &ch->lease, bt__now_ns() + ch->lease_ns) == 0)
                n++;
        if (!c->dead && c->state == CS_READY && !c->w && c->in.len > 0)
            heap_add(srv, &c->tmo,
                     bt__now_ns() + srv->frame_timeout_ns); /* in the heap: no growth */
    }
    if (n)
        BT_WARN(RDZV,
                "the store did not run for %.1f s (its process was stopped?); renewed %d "
                "heartbeat lease(s) instead of declaring those clients lost",
                (double)late_ns / 1e9, n);
}

int bt__store_server_run(struct bt__store_server *srv)
{
    struct epoll_event evs[256];
    srv->stopping = 0;
    while (!srv->stopping) {
        int ms = srv->nheap > 0 ? bt__ms_left(srv->heap[0]->deadline) : -1;
        int64_t summary_ns = bt__droplog_tick(&srv->drops);
        if (summary_ns >= 0) {
            int sms = (int)(summary_ns / 1000000) + 1;
            ms = ms < 0 || sms < ms ? sms : ms;
        }
        int64_t due = bt__now_ns() + (int64_t)ms * 1000000;
        int n = epoll_wait(srv->epfd, evs, 256, ms);
        if (ms >= 0 && bt__now_ns() - due > SELF_STALL_NS)
            renew_leases(srv, bt__now_ns() - due);
        if (n < 0 && errno != EINTR) {
            BT_WARN(RDZV, "rendezvous store stops: epoll_wait: %s", strerror(errno));
            return BT_ERR_SYSTEM;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &srv->tag_listen) {
                accept_all(srv);
            } else if (evs[i].data.ptr == &srv->tag_event) {
                uint64_t v;
                ssize_t rd = read(srv->evfd, &v, sizeof(v));
                (void)rd;
                srv->stopping = 1;
            } else {
                conn_event(srv, evs[i].data.ptr, evs[i].events);
            }
        }
        expire(srv);
        settle(srv);
    }
    return BT_OK;
}

static void *server_thread(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the main thread's business */
    bt__store_server_run(arg);
    return NULL;
}

int bt__store_server_start(struct bt__store_server *srv)
{
    if (srv->thread_started)
        return BT_ERR_INVALID_USAGE;
    if (pthread_create(&srv->thread, NULL, server_thread, srv) != 0)
        return BT_ERR_SYSTEM;
    srv->thread_started = 1;
    return BT_OK;
}

void bt__store_server_stop(struct bt__store_server *srv)
{
    uint64_t one = 1;
    ssize_t wr = write(srv->evfd, &one, sizeof(one)); /* async-signal-safe */
    (void)wr;
}

double bt__store_server_cpu_s(const struct bt__store_server *srv)
{
    clockid_t cid;
    struct timespec ts;
    if (!srv->thread_started || pthread_getcpuclockid(srv->thread, &cid) != 0 ||
        clock_gettime(cid, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bt__store_server_nclients(const struct bt__store_server *srv)
{
    return __atomic_load_n(&srv->nclients, __ATOMIC_RELAXED);
}

int bt__store_server_nwaiting(const struct bt__store_server *srv)
{
    return __atomic_load_n(&srv->nwaiting, __ATOMIC_RELAXED);
}

size_t bt__store_server_buffered(const struct bt__store_server *srv)
{
    return __atomic_load_n(&srv->buffered, __ATOMIC_RELAXED);
}

void bt__store_server_set_limits(struct bt__store_server *srv, const struct bt__store_limits *l)
{
    if (l->frame_timeout_s > 0)
        srv->frame_timeout_ns = (int64_t)(l->frame_timeout_s * 1e9);
    if (l->max_frame > 0 && l->max_frame <= BT__RDZV_MAX_FRAME)
        srv->max_frame = l->max_frame;
    if (l->max_buffered > 0)
        srv->max_buffered = l->max_buffered;
    if (l->drop_log_interval_s > 0)
        srv->drops.interval_ns = (int64_t)(l->drop_log_interval_s * 1e9);
}

uint64_t bt__store_server_drops(const struct bt__store_server *srv, enum bt__drop_reason r)
{
    return bt__droplog_total(&srv->drops, r);
}

/* Raises the soft open-file limit to the hard one: each client holds a descriptor. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        BT_INFO(RDZV, "raised the open-file limit from %llu to %llu", (unsigned long long)old,
                (unsigned long long)rl.rlim_max);
}

static int server_fds(struct bt__store_server *srv, struct bt__err *err)
{
    struct epoll_event l = {.events = EPOLLIN, .data.ptr = &srv->tag_listen};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &srv->tag_event};
    BT_SYSCHECK(srv->epfd = epoll_create1(EPOLL_CLOEXEC), "epoll_create1", err);
    BT_SYSCHECK(srv->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd", err);
    BT_SYSCHECK(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &l), "epoll_ctl", err);
    BT_SYSCHECK(epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->evfd, &e), "epoll_ctl", err);
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return BT_OK;
}

int bt__store_server_create(const char *host, int port, const char *token,
                            struct bt__store_server **out, int *bound_port, struct bt__err *err)
{
    int rc;
    *out = NULL;
    struct bt__store_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return bt__err_set(err, BT_ERR_SYSTEM, "rendezvous store: out of memory");
    srv->lfd = srv->epfd = srv->evfd = srv->spare_fd = -1;
    bt__droplog_init(&srv->drops, BT_SUB_RDZV, "rendezvous store");
    raise_nofile();
    double auth_s = bt__param_auth_timeout_s();
    srv->auth_timeout_ns = (int64_t)((auth_s > 0 ? auth_s : 5.0) * 1e9);
    double frame_s = bt__param_frame_timeout_s();
    srv->frame_timeout_ns = (int64_t)((frame_s > 0 ? frame_s : 60.0) * 1e9);
    int64_t mb = bt__param_max_buffered_mb();
    srv->max_buffered = (size_t)(mb > 0 ? mb : 256) << 20;
    srv->max_frame = BT__RDZV_MAX_FRAME;
    bt__auth_key(token, srv->key);
    char wtoken[BT__AUTH_WORKER_TOKEN];
    if (bt__auth_worker_token(token, wtoken) != 0) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "rendezvous store: HMAC failed (OpenSSL)");
        goto fail;
    }
    bt__auth_key(wtoken, srv->wkey);
    if (bt__htab_init(&srv->tab, 1024) != 0) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "rendezvous store: out of memory");
        goto fail;
    }
    BT_CHECK_GOTO(bt__sock_listen(host, port, 65535, &srv->lfd, bound_port, err), rc, fail);
    BT_CHECK_GOTO(server_fds(srv, err), rc, fail);
    *out = srv;
    return BT_OK;
fail:
    bt__store_server_destroy(srv);
    return rc;
}

void bt__store_server_destroy(struct bt__store_server *srv)
{
    if (!srv)
        return;
    if (srv->thread_started) {
        bt__store_server_stop(srv);
        pthread_join(srv->thread, NULL);
    }
    while (srv->conns)
        conn_free(srv, srv->conns); /* no last wills: the store itself is going away */
    bt__droplog_flush(&srv->drops);
    for (size_t i = 0; i < srv->tab.nb; i++)
        for (struct bt__hnode *nd = srv->tab.b[i], *nx; nd; nd = nx) {
            nx = nd->next;
            free(((struct entry *)nd)->val);
            free(nd);
        }
    bt__htab_free(&srv->tab);
    free(srv->heap);
    int fds[] = {srv->lfd, srv->epfd, srv->evfd, srv->spare_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(srv);
}
