/* ps/server.c: the parameter server: one epoll loop on one thread, speaking the protocol of
 * ps.h to the workers, holding its pieces of the keys and applying the optimizer to them.
 *
 * Steps and consistency. For every piece the server keeps `applied` (updates applied so far)
 * and, per worker w, cnt[w] (pushes of w accepted). A push of w is push number cnt[w]:
 *   sync       accepted when cnt[w] == applied (a worker ahead is held back); the gradients of
 *              step `applied` are summed, and when all nworkers have arrived their average is
 *              applied once and `applied` grows by one. A pull of w is held until
 *              applied >= cnt[w], so it returns the value after the worker's last step.
 *   async      every push is applied on arrival; pulls are never held.
 *   bounded:S  like async, but a push of w is held while cnt[w] - min(cnt) > S: no worker runs
 *              more than S pushes ahead of the slowest.
 * A held request keeps its connection: the server reads nothing more from it until the
 * request completes. After every change the held requests are retried. A request held longer
 * than the timeout fails with BT_ERR_TIMEOUT naming the workers the piece still waits for
 * (and since when they are disconnected); in sync mode the piece's step then stays failed, so
 * every worker learns it at once.
 *
 * Exactly once. Every numbered PUSH (ps.h) of worker w moves ws[w].push_seq on once it is
 * applied in full; a PUSH with a number at or below it is a resend after a lost reply and gets
 * OK without being applied again. A PUSH held half-way records how far it got (part_seq,
 * part_done), so its resend on a new connection goes on from there. The numbers belong to one
 * client (its incarnation) and one generation. With --checkpoint-sync the checkpoint, which
 * holds these numbers and the half-summed sync steps, is written before any reply that
 * acknowledges a change leaves (one write per loop iteration for all of them), so a server
 * killed at any point and restarted from it applies every push once.
 *
 * Generations. The server serves one generation of the job at a time: the first worker of a
 * newer generation (its BATON_RESTART_COUNT) makes it that generation's server, with that
 * generation's worker count; the keys keep their values and optimizer state, the old
 * generation's connections are dropped and its unfinished sync steps forgotten. A worker of an
 * older generation is refused in the handshake (BT__ST_STALE).
 *
 * This file does not do the client side (ps/client.c), the placement of pieces (ps/shard.c),
 * the optimizer arithmetic (ps/opt.c) or the checkpoint file format (ps/ckpt.c).
 */
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collectives/comm.h"
#include "collectives/ps/ps.h"
#include "common/droplog.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"
#include "rendezvous/store.h"

enum { ST_HELLO, ST_PROOF, ST_FRAMES, ST_CLOSING };
enum { ACCEPTED, HELD };

struct piece {
    struct bt__hnode node; /* first: in s->tab (common/hash.h) */
    char *name;
    uint32_t idx, npieces;
    uint64_t total, offset; /* elements of the whole key; first element of this piece */
    uint32_t count;         /* elements in this piece */
    bt_ps_opt opt;
    uint64_t applied;       /* updates applied */
    uint64_t base;          /* pushes counted before this process (checkpoint reload) */
    uint32_t arrivals;      /* sync: gradients summed into acc for step `applied` */
    uint64_t *cnt;          /* per worker: pushes accepted (NULL until nworkers is known) */
    float *w, *m, *v, *acc; /* count floats each, one allocation */
    char *failed;           /* sync step that timed out: sticky error text */
};

struct conn {
    struct conn *next, *prev;
    int fd, state;
    uint32_t rank;
    struct bt__auth_server auth; /* the handshake's nonces */
    uint8_t *in;                 /* the message being read: in[0..need) */
    size_t in_cap, in_len, need;
    struct bt__wbuf out;
    size_t out_off;
    int have_hdr;               /* FRAMES: the header is read, need is the whole frame */
    int held;                   /* a request waits: nothing more is read */
    uint32_t resume;            /* PUSH: first piece not yet accepted */
    int64_t held_since;         /* ns */
    struct piece *wait_on;      /* the piece it waits for */
    uint32_t events;            /* epoll interest now */
    uint32_t gen;               /* the generation of its worker */
    uint32_t h_nworkers, h_gen; /* HELLO's, checked once the token is */
    uint64_t h_inc;
    int doomed; /* of a generation the server left: dropped at the end of the iteration */
    char peer[64];
};

struct bt__ps_server {
    int lfd, epfd, wakefd;
    int index;
    uint64_t instance;
    uint8_t key[BT__AUTH_KEY]; /* SHA-256 of the job token */
    struct bt__htab tab;       /* struct piece by (name, index); tab.n pieces */
    struct conn *conns;
    uint32_t nworkers;               /* 0 until the first worker of the generation says */
    uint32_t gen;                    /* the generation served */
    struct bt__ps_ckpt_worker *ws;   /* per worker: push sequence numbers */
    struct bt__ps_ckpt_state loaded; /* what the checkpoint said (during the reload) */
    uint8_t *closed;                 /* per worker: said CLOSE */
    int64_t *gone_ns; /* per worker: when its connection dropped without CLOSE (0: no) */
    uint32_t nclosed;
    int done, changed, exit_when_done;
    volatile int stop;
    double timeout_s;
    char *ckpt_path;
    double ckpt_secs;
    int64_t ckpt_steps, last_ckpt_ns;
    uint64_t max_applied, last_ckpt_step;
    int ckpt_sync, dirty; /* dirty: a change not yet in the checkpoint (with ckpt_sync) */
    int64_t drop_reply;   /* BATON_PS_FAULT_DROP_REPLY */
    uint64_t pushes_done, dups;
    pthread_t thr;
    int started;
    char addr[300];
    struct bt__droplog drops; /* the WARN lines for dropped connections, rate-limited */
};

/* The level of the line for a connection dropped for reason r: WARN within the burst of
 * common/droplog.h, TRACE after it (the summary counts those). */
static int drop_level(struct bt__ps_server *s, enum bt__drop_reason r)
{
    return bt__droplog_admit(&s->drops, r) ? BT_LOG_WARN : BT_LOG_TRACE;
}

/* ---- pieces ---- */

static uint64_t hash(const char *name, uint32_t idx)
{
    return bt__fnv1a_str(BT_FNV1A_INIT ^ idx, name);
}

static struct piece *find_piece(struct bt__ps_server *s, const char *name, uint32_t idx)
{
    uint64_t h = hash(name, idx);
    for (struct bt__hnode *nd = bt__htab_chain(&s->tab, h); nd; nd = nd->next) {
        struct piece *p = (struct piece *)nd;
        if (nd->hash == h && p->idx == idx && !strcmp(p->name, name))
            return p;
    }
    return NULL;
}

static void free_piece(struct piece *p)
{
    free(p->name);
    free(p->cnt);
    free(p->w);
    free(p->failed);
    free(p);
}

/* A new piece from its declaration (or a checkpoint entry); w is copied, m and v may be NULL. */
static struct piece *add_piece(struct bt__ps_server *s, const struct bt__ps_ckpt_entry *e,
                               const void *w)
{
    struct piece *p = calloc(1, sizeof(*p));
    size_t n = e->count ? e->count : 1;
    if (!p || !(p->name = strdup(e->name)) || !(p->w = calloc(4 * n, sizeof(float)))) {
        if (p)
            free_piece(p);
        return NULL;
    }
    p->idx = e->piece, p->npieces = e->npieces, p->total = e->total, p->offset = e->offset;
    p->count = e->count, p->opt = e->opt, p->applied = p->base = e->applied;
    p->m = p->w + n, p->v = p->m + n, p->acc = p->v + n;
    memcpy(p->w, w, (size_t)e->count * 4);
    if (e->m)
        memcpy(p->m, e->m, (size_t)e->count * 4);
    if (e->v)
        memcpy(p->v, e->v, (size_t)e->count * 4);
    if (e->acc)
        memcpy(p->acc, e->acc, (size_t)e->count * 4);
    p->arrivals = e->arrivals;
    if (e->cnt && s->loaded.nworkers) {
        if (!(p->cnt = malloc(s->loaded.nworkers * sizeof(*p->cnt)))) {
            free_piece(p);
            return NULL;
        }
        memcpy(p->cnt, e->cnt, s->loaded.nworkers * sizeof(*p->cnt));
    }
    bt__htab_insert(&s->tab, &p->node, hash(p->name, p->idx));
    if (p->applied > s->max_applied)
        s->max_applied = s->last_ckpt_step = p->applied;
    return p;
}

static int ensure_cnt(struct bt__ps_server *s, struct piece *p)
{
    if (p->cnt)
        return BT_OK;
    if (!(p->cnt = malloc(s->nworkers * sizeof(*p->cnt))))
        return BT_ERR_SYSTEM;
    for (uint32_t w = 0; w < s->nworkers; w++)
        p->cnt[w] = p->base;
    return BT_OK;
}

static uint64_t min_cnt(const struct bt__ps_server *s, const struct piece *p)
{
    uint64_t m = UINT64_MAX;
    for (uint32_t w = 0; w < s->nworkers; w++)
        m = p->cnt[w] < m ? p->cnt[w] : m;
    return m;
}

/* ---- replies ---- */

static void reply_ok(struct conn *c, const void *payload, size_t n)
{
    size_t st = bt__wbuf_frame_begin(&c->out, BT__ST_OK);
    bt__wbuf_put(&c->out, payload, n);
    bt__wbuf_frame_end(&c->out, st);
}

static void reply_err(struct bt__ps_server *s, struct conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err(struct bt__ps_server *s, struct conn *c, int code, const char *fmt, ...)
{
    char msg[768];
    int n = snprintf(msg, sizeof(msg), "ps server %d (%s): ", s->index, s->addr);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    BT_INFO(PS, "to worker %u at %s: %s", c->rank, c->peer, msg);
    size_t st = bt__wbuf_frame_begin(&c->out, BT__ST_ERROR);
    bt__wbuf_u32(&c->out, (uint32_t)code);
    bt__wbuf_bytes(&c->out, msg, strlen(msg));
    bt__wbuf_frame_end(&c->out, st);
}

/* A frame that cannot be parsed: say so and close, since its framing cannot be trusted. */
static void reply_malformed(struct bt__ps_server *s, struct conn *c, const char *what)
{
    int level = drop_level(s, BT__DROP_MALFORMED);
    BT_LOG(level, BT_SUB_PS, "worker %u at %s sent a malformed %s frame; closing its connection",
           c->rank, c->peer, what);
    reply_err(s, c, BT_ERR_INVALID_ARG, "malformed %s request; the connection is closed", what);
    c->state = ST_CLOSING;
}

/* ---- the missing workers of a held request ---- */

static void who_is_missing(struct bt__ps_server *s, const struct piece *p, char *out, size_t cap)
{
    size_t n = 0;
    uint64_t lo = p->opt.consistency == BT_PS_SYNC ? p->applied : min_cnt(s, p);
    int64_t now = bt__now_ns();
    out[0] = '\0';
    for (uint32_t w = 0; w < s->nworkers && n + 64 < cap; w++) {
        if (p->cnt[w] > lo)
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? ", " : "", w);
        if (s->gone_ns[w])
            n += (size_t)snprintf(out + n, cap - n, " (disconnected %.1f s ago)",
                                  (double)(now - s->gone_ns[w]) / 1e9);
        else if (s->closed[w])
            n += (size_t)snprintf(out + n, cap - n, " (closed its client)");
    }
}

static void fail_held(struct bt__ps_server *s, struct conn *c)
{
    struct piece *p = c->wait_on;
    char who[400], msg[600];
    who_is_missing(s, p, who, sizeof(who));
    snprintf(msg, sizeof(msg),
             "key '%s' piece %u/%u: step %llu still waits for worker(s) %s after %.0f s (%s); "
             "hint: a worker died or stopped pushing this key",
             p->name, p->idx, p->npieces, (unsigned long long)p->applied, who, s->timeout_s,
             p->opt.consistency == BT_PS_SYNC ? "sync" : "bounded staleness");
    BT_WARN(PS, "%s", msg);
    if (p->opt.consistency == BT_PS_SYNC && !p->failed)
        p->failed = strdup(msg);
    reply_err(s, c, BT_ERR_TIMEOUT, "%s", msg);
    c->held = 0;
    s->changed = 1;
}

/* ---- requests ---- */

struct item {
    struct piece *p;
    const uint8_t *data; /* PUSH: count floats, unaligned */
};

/* Parses n x {str name, u32 piece, u32 count [, f32 data[count]]}; 0 when every item names a
 * known piece of the right size, -1 after replying with the error. */
static int parse_items(struct bt__ps_server *s, struct conn *c, struct bt__rbuf *r, int push,
                       struct item **items, uint32_t *n)
{
    *n = bt__rbuf_u32(r);
    if (r->bad || *n > BT__PS_MAX_PIECES || !(*items = calloc(*n ? *n : 1, sizeof(**items)))) {
        reply_malformed(s, c, push ? "PUSH" : "PULL");
        return -1;
    }
    for (uint32_t i = 0; i < *n; i++) {
        size_t nl;
        char name[BT__PS_MAX_NAME + 1];
        const uint8_t *np = bt__rbuf_bytes(r, BT__PS_MAX_NAME, &nl);
        uint32_t idx = bt__rbuf_u32(r), count = bt__rbuf_u32(r);
        if (push && !r->bad && r->left >= (size_t)count * 4) {
            (*items)[i].data = r->p;
            r->p += (size_t)count * 4, r->left -= (size_t)count * 4;
        } else if (push)
            r->bad = 1;
        if (!np || r->bad) {
            reply_malformed(s, c, push ? "PUSH" : "PULL");
            return -1;
        }
        memcpy(name, np, nl);
        name[nl] = '\0';
        struct piece *p = find_piece(s, name, idx);
        if (!p) {
            reply_err(s, c, BT_ERR_INVALID_ARG,
                      "unknown key '%s' (piece %u); hint: declare it "
                      "with bt_ps_init first (or the server restarted without a checkpoint)",
                      name, idx);
            return -1;
        }
        if (p->count != count) {
            reply_err(s, c, BT_ERR_INVALID_ARG,
                      "shape mismatch: key '%s' piece %u/%u holds %u "
                      "floats, the %s has %u",
                      name, idx, p->npieces, p->count, push ? "push" : "pull", count);
            return -1;
        }
        if (p->failed) {
            reply_err(s, c, BT_ERR_TIMEOUT, "%s", p->failed);
            return -1;
        }
        if (ensure_cnt(s, p) != BT_OK) {
            reply_err(s, c, BT_ERR_SYSTEM, "out of memory");
            return -1;
        }
        (*items)[i].p = p;
    }
    if (r->left)
        reply_malformed(s, c, push ? "PUSH" : "PULL");
    return r->left ? -1 : 0;
}

static void apply(struct bt__ps_server *s, struct piece *p, float scale)
{
    bt__ps_opt_apply(&p->opt, p->w, p->m, p->v, p->acc, p->count, scale, p->applied + 1);
    p->applied++;
    if (p->applied > s->max_applied)
        s->max_applied = p->applied;
    s->changed = 1;
}

static int accept_push(struct bt__ps_server *s, struct piece *p, uint32_t w, const uint8_t *g)
{
    size_t n = p->count;
    if (p->opt.consistency == BT_PS_SYNC) {
        if (p->cnt[w] > p->applied)
            return HELD; /* this worker is a step ahead: wait for the others */
        s->dirty = 1;
        for (size_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, g + 4 * i, 4);
            p->acc[i] += x;
        }
        p->cnt[w]++;
        if (++p->arrivals == s->nworkers) {
            apply(s, p, 1.0f / (float)s->nworkers);
            memset(p->acc, 0, n * 4);
            p->arrivals = 0;
        }
        return ACCEPTED;
    }
    if (p->opt.consistency == BT_PS_BOUNDED && p->cnt[w] - min_cnt(s, p) > p->opt.staleness)
        return HELD;
    s->dirty = 1;
    memcpy(p->acc, g, n * 4);
    p->cnt[w]++;
    apply(s, p, 1.0f);
    return ACCEPTED;
}

static void hold(struct conn *c, struct piece *p)
{
    if (!c->held)
        c->held_since = bt__now_ns();
    c->held = 1;
    c->wait_on = p;
}

/* The reply of an applied PUSH: OK, or, every BATON_PS_FAULT_DROP_REPLY-th time, nothing and
 * a closed connection (a test of the resend). */
static void push_done(struct bt__ps_server *s, struct conn *c, uint64_t seq)
{
    if (s->drop_reply > 0 && ++s->pushes_done % (uint64_t)s->drop_reply == 0) {
        BT_INFO(PS,
                "fault injection (BATON_PS_FAULT_DROP_REPLY=%lld): worker %u's push %llu is "
                "applied and its reply dropped",
                (long long)s->drop_reply, c->rank, (unsigned long long)seq);
        c->state = ST_CLOSING;
        return;
    }
    reply_ok(c, NULL, 0);
}

static void do_push(struct bt__ps_server *s, struct conn *c, struct bt__rbuf *r)
{
    struct item *it = NULL;
    uint32_t n;
    uint64_t seq = bt__rbuf_u64(r);
    struct bt__ps_ckpt_worker *w = &s->ws[c->rank];
    if (parse_items(s, c, r, 1, &it, &n) != 0)
        c->held = 0, c->resume = 0;
    else if (seq && seq <= w->push_seq) { /* a resend of an applied push */
        s->dups++;
        BT_INFO(PS, "worker %u resent push %llu (applied: up to %llu): acknowledged, not applied",
                c->rank, (unsigned long long)seq, (unsigned long long)w->push_seq);
        c->held = 0, c->resume = 0;
        reply_ok(c, NULL, 0);
    } else {
        uint32_t i = !seq ? c->resume : seq == w->part_seq ? w->part_done : 0;
        while (i < n && accept_push(s, it[i].p, c->rank, it[i].data) == ACCEPTED)
            i++;
        if (i < n) {
            c->resume = i;
            if (seq)
                w->part_seq = seq, w->part_done = i;
            hold(c, it[i].p);
        } else {
            c->resume = 0, c->held = 0;
            if (seq)
                w->push_seq = seq, w->part_seq = 0, w->part_done = 0;
            push_done(s, c, seq);
        }
    }
    free(it);
}

static void do_pull(struct bt__ps_server *s, struct conn *c, struct bt__rbuf *r)
{
    struct item *it = NULL;
    uint32_t n, i;
    if (parse_items(s, c, r, 0, &it, &n) != 0)
        c->held = 0;
    else {
        for (i = 0; i < n; i++) /* sync: the value after this worker's last step */
            if (it[i].p->opt.consistency == BT_PS_SYNC && it[i].p->applied < it[i].p->cnt[c->rank])
                break;
        if (i < n)
            hold(c, it[i].p);
        else {
            c->held = 0;
            size_t st = bt__wbuf_frame_begin(&c->out, BT__ST_OK);
            for (i = 0; i < n; i++)
                bt__wbuf_put(&c->out, it[i].p->w, (size_t)it[i].p->count * 4);
            bt__wbuf_frame_end(&c->out, st);
        }
    }
    free(it);
}

/* Checks a declaration against the piece that exists, or creates the piece. */
static void do_init(struct bt__ps_server *s, struct conn *c, struct bt__rbuf *r)
{
    struct bt__ps_ckpt_entry e = {0};
    size_t nl;
    char name[BT__PS_MAX_NAME + 1], why[128];
    const uint8_t *np = bt__rbuf_bytes(r, BT__PS_MAX_NAME, &nl);
    e.piece = bt__rbuf_u32(r), e.npieces = bt__rbuf_u32(r);
    e.total = bt__rbuf_u64(r), e.offset = bt__rbuf_u64(r), e.count = bt__rbuf_u32(r);
    bt__ps_opt_get(r, &e.opt);
    if (!np || r->bad || r->left != (size_t)e.count * 4 || e.piece >= e.npieces ||
        e.offset + e.count > e.total)
        return reply_malformed(s, c, "INIT");
    memcpy(name, np, nl);
    name[nl] = '\0';
    e.name = name;
    if (nl == 0)
        return reply_err(s, c, BT_ERR_INVALID_ARG, "a key name must not be empty");
    if (bt__ps_opt_check(&e.opt, why, sizeof(why)) != BT_OK)
        return reply_err(s, c, BT_ERR_INVALID_ARG, "key '%s': %s", name, why);
    struct piece *p = find_piece(s, name, e.piece);
    uint8_t ans[12];
    if (p && (p->total != e.total || p->offset != e.offset || p->count != e.count ||
              p->npieces != e.npieces))
        return reply_err(s, c, BT_ERR_INVALID_ARG,
                         "shape mismatch: key '%s' was first declared with %llu floats, this "
                         "declaration has %llu; hint: every worker must declare a key with the "
                         "same shape",
                         name, (unsigned long long)p->total, (unsigned long long)e.total);
    int created = !p;
    if (!p && !(p = add_piece(s, &e, r->p)))
        return reply_err(s, c, BT_ERR_SYSTEM, "out of memory for key '%s'", name);
    s->dirty |= created;
    bt__put_le64(ans, p->applied);
    bt__put_le32(ans + 8, (uint32_t)created);
    BT_TRACE(PS, "worker %u declared '%s' piece %u/%u (%u floats)", c->rank, name, e.piece,
             e.npieces, e.count);
    reply_ok(c, ans, sizeof(ans));
}

static void do_close(struct bt__ps_server *s, struct conn *c, struct bt__rbuf *r)
{
    uint32_t flags = bt__rbuf_u32(r);
    if (flags & BT__PS_CLOSE_LEAVE) { /* not the end of the job: the next generation comes */
        BT_INFO(PS, "worker %u leaves generation %u; serving on", c->rank, s->gen);
        reply_ok(c, NULL, 0);
        c->state = ST_CLOSING;
        return;
    }
    if (!s->closed[c->rank]) {
        s->closed[c->rank] = 1;
        s->nclosed++;
    }
    BT_INFO(PS, "worker %u closed (%u of %u)%s", c->rank, s->nclosed, s->nworkers,
            (flags & BT__PS_CLOSE_DONE) ? "; it says the job is done" : "");
    if (((flags & BT__PS_CLOSE_DONE) || s->nclosed == s->nworkers) && s->exit_when_done)
        s->done = 1;
    reply_ok(c, NULL, 0);
    c->state = ST_CLOSING;
}

static void on_frame(struct bt__ps_server *s, struct conn *c)
{
    struct bt__rbuf r = {.p = c->in + 5, .left = c->need - 5};
    switch (c->in[4]) {
    case BT__PS_INIT: do_init(s, c, &r); break;
    case BT__PS_PUSH: do_push(s, c, &r); break;
    case BT__PS_PULL: do_pull(s, c, &r); break;
    case BT__PS_CLOSE: do_close(s, c, &r); break;
    case BT__PS_PING: reply_ok(c, NULL, 0); break;
    default: reply_malformed(s, c, "unknown-command"); break;
    }
    if (!c->held)
        c->in_len = 0, c->need = 5, c->have_hdr = 0;
}

/* ---- handshake ---- */

static void on_hello(struct bt__ps_server *s, struct conn *c)
{
    uint8_t out[BT__AUTH_CHALLENGE_LEN];
    int outcome = bt__auth_server_hello(&c->auth, &bt__ps_auth, c->in, out);
    if (outcome == BT__AUTH_NOT_PEER || outcome == BT__AUTH_CRYPTO) {
        int level = outcome == BT__AUTH_CRYPTO ? BT_LOG_WARN : drop_level(s, BT__DROP_BAD_MAGIC);
        BT_LOG(level, BT_SUB_PS, "%s is not a baton ps client (%s); closing", c->peer,
               outcome == BT__AUTH_CRYPTO ? "no random bytes for its challenge" : "wrong magic");
        c->state = ST_CLOSING;
        return;
    }
    bt__wbuf_put(&c->out, out, sizeof(out));
    if (outcome == BT__AUTH_VERSION) {
        int level = drop_level(s, BT__DROP_VERSION);
        BT_LOG(level, BT_SUB_PS, "%s speaks ps protocol version %u, this server %u; closing",
               c->peer, bt__le32(c->in + 8), BT__PS_VERSION);
        c->state = ST_CLOSING;
        return;
    }
    c->rank = bt__le32(c->in + 12);
    c->state = ST_PROOF;
    c->need = BT__PS_PROOF_LEN;
    c->h_nworkers = bt__le32(c->in + 16);
    c->h_gen = bt__le32(c->in + 20);
    c->h_inc = bt__le64(c->in + 28);
}

/* Serves generation gen of nworkers from now on: new worker tables, the old generation's
 * connections doomed, the pieces' step counts restarted at their applied updates. */
static int new_generation(struct bt__ps_server *s, uint32_t gen, uint32_t nworkers)
{
    uint8_t *closed = calloc(nworkers, 1);
    int64_t *gone = calloc(nworkers, sizeof(*gone));
    struct bt__ps_ckpt_worker *ws = calloc(nworkers, sizeof(*ws));
    if (!closed || !gone || !ws) {
        free(closed), free(gone), free(ws);
        return -1;
    }
    if (s->nworkers)
        BT_WARN(PS,
                "ps server %d: generation %u of the job (%u workers) replaces generation %u "
                "(%u workers); the keys keep their values and optimizer state",
                s->index, gen, nworkers, s->gen, s->nworkers);
    for (struct conn *c = s->conns; c; c = c->next)
        c->doomed |= c->state >= ST_FRAMES;
    for (size_t i = 0; i < s->tab.nb; i++)
        for (struct piece *p = (struct piece *)s->tab.b[i]; p; p = (struct piece *)p->node.next) {
            free(p->cnt);
            free(p->failed);
            p->cnt = NULL, p->failed = NULL;
            p->base = p->applied, p->arrivals = 0;
            memset(p->acc, 0, (size_t)p->count * 4);
        }
    free(s->closed), free(s->gone_ns), free(s->ws);
    s->closed = closed, s->gone_ns = gone, s->ws = ws;
    s->nworkers = nworkers, s->gen = gen, s->nclosed = 0, s->dirty = 1, s->changed = 1;
    BT_INFO(PS, "serving a job of %u workers (generation %u)", nworkers, gen);
    return 0;
}

/* The worker's generation, rank and world must fit the job; the first worker of a generation
 * fixes its size. */
static uint32_t check_worker(struct bt__ps_server *s, struct conn *c)
{
    uint32_t nworkers = c->h_nworkers;
    if (c->h_gen < s->gen) {
        BT_WARN(PS,
                "%s: worker %u is of generation %u, this server serves generation %u: a "
                "stale worker; refused",
                c->peer, c->rank, c->h_gen, s->gen);
        return BT__ST_STALE;
    }
    if (nworkers == 0 || nworkers > BT__PS_MAX_WORKERS || c->rank >= nworkers ||
        (c->h_gen == s->gen && s->nworkers && s->nworkers != nworkers)) {
        BT_WARN(PS, "%s: worker %u of %u does not fit this job of %u workers; closing", c->peer,
                c->rank, nworkers, s->nworkers);
        return BT__ST_BAD_WORKER;
    }
    if ((c->h_gen > s->gen || !s->nworkers) && new_generation(s, c->h_gen, nworkers) != 0)
        return BT__ST_BAD_WORKER;
    struct bt__ps_ckpt_worker *w = &s->ws[c->rank];
    if (w->incarnation != c->h_inc) { /* a new client: its pushes are numbered from 1 */
        if (w->incarnation)
            BT_INFO(PS, "worker %u is a new client; its push numbers start again", c->rank);
        *w = (struct bt__ps_ckpt_worker){.incarnation = c->h_inc};
        s->dirty = 1;
    }
    c->gen = c->h_gen;
    s->gone_ns[c->rank] = 0;
    return BT__ST_OK;
}

static void on_proof(struct bt__ps_server *s, struct conn *c)
{
    uint8_t extra[16], out[BT__PS_RESULT_LEN];
    uint32_t st = BT__ST_OK;
    if (!bt__auth_server_proof(&c->auth, &bt__ps_auth, s->key, c->in)) {
        int level = drop_level(s, BT__DROP_AUTH);
        BT_LOG(level, BT_SUB_PS,
               "%s (worker %u) failed authentication (wrong BATON_TOKEN: another job?); "
               "closing",
               c->peer, c->rank);
        st = BT__ST_BAD_TOKEN;
    } else
        st = check_worker(s, c);
    bt__put_le32(extra, (uint32_t)s->index);
    bt__put_le64(extra + 4, s->instance);
    bt__put_le32(extra + 12, s->gen);
    st = bt__auth_result(&c->auth, &bt__ps_auth, s->key, st, extra, out);
    bt__wbuf_put(&c->out, out, sizeof(out));
    c->state = st == BT__ST_OK ? ST_FRAMES : ST_CLOSING;
    c->need = 5;
    if (st == BT__ST_OK)
        BT_INFO(PS, "worker %u connected from %s", c->rank, c->peer);
}

/* A complete message lies in c->in[0..need). */
static void on_message(struct bt__ps_server *s, struct conn *c)
{
    if (c->state != ST_FRAMES) {
        if (c->state == ST_HELLO)
            on_hello(s, c);
        else
            on_proof(s, c);
        c->in_len = 0;
        return;
    }
    if (!c->have_hdr) { /* a frame header: check it, then read the rest */
        uint32_t len = bt__le32(c->in);
        if (len == 0 || len > BT__PS_MAX_FRAME) {
            int level = drop_level(s, BT__DROP_MALFORMED);
            BT_LOG(level, BT_SUB_PS, "worker %u at %s sent a frame of %u bytes (limit %u); closing",
                   c->rank, c->peer, len, BT__PS_MAX_FRAME);
            reply_err(s, c, BT_ERR_INVALID_ARG,
                      "frame of %u bytes is over the limit of %u "
                      "bytes (or empty); the connection is closed",
                      len, BT__PS_MAX_FRAME);
            c->state = ST_CLOSING;
            return;
        }
        c->have_hdr = 1;
        c->need = (size_t)len + 4;
        if (c->need > 5)
            return;
    }
    on_frame(s, c);
}

/* ---- connections ---- */

/* With --checkpoint-sync no reply leaves before the change it acknowledges is on disk. */
static int hold_replies(const struct bt__ps_server *s)
{
    return s->ckpt_sync && s->ckpt_path && s->dirty;
}

static void set_events(struct bt__ps_server *s, struct conn *c)
{
    uint32_t ev = EPOLLRDHUP;
    if (!c->held && c->state != ST_CLOSING)
        ev |= EPOLLIN;
    if (c->out_off < c->out.len && !hold_replies(s))
        ev |= EPOLLOUT;
    if (ev != c->events) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &e);
        c->events = ev;
    }
}

static void drop(struct bt__ps_server *s, struct conn *c)
{
    if (c->state >= ST_FRAMES && !c->doomed && s->nworkers && c->rank < s->nworkers &&
        !s->closed[c->rank]) {
        s->gone_ns[c->rank] = bt__now_ns();
        BT_INFO(PS, "worker %u at %s disconnected without closing", c->rank, c->peer);
    }
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bt__wbuf_free(&c->out);
    free(c->in);
    free(c);
}

/* Sends what is pending; 0 to keep the connection, -1 when it was dropped. */
static int flush(struct bt__ps_server *s, struct conn *c)
{
    struct bt__err err = {0};
    if (hold_replies(s)) { /* sent after the checkpoint (flush_all) */
        set_events(s, c);
        return 0;
    }
    if (c->out_off < c->out.len &&
        bt__sock_progress(c->fd, BT_SOCK_SEND, c->out.p, c->out.len, &c->out_off, &err) != BT_OK) {
        drop(s, c);
        return -1;
    }
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        if (c->out.cap > (64u << 20)) /* do not keep a big pull's buffer forever */
            bt__wbuf_free(&c->out);
        if (c->state == ST_CLOSING) {
            drop(s, c);
            return -1;
        }
    }
    set_events(s, c);
    return 0;
}

/* Reads while there is something to read and no request is held. -1: dropped. */
static int on_readable(struct bt__ps_server *s, struct conn *c)
{
    struct bt__err err = {0};
    while (!c->held && c->state != ST_CLOSING) {
        if (c->in_cap < c->need) {
            uint8_t *p = realloc(c->in, c->need);
            if (!p) {
                int level = drop_level(s, BT__DROP_OOM);
                BT_LOG(level, BT_SUB_PS, "out of memory for a frame of %zu bytes from %s", c->need,
                       c->peer);
                drop(s, c);
                return -1;
            }
            c->in = p, c->in_cap = c->need;
        }
        size_t before = c->in_len;
        if (bt__sock_progress(c->fd, BT_SOCK_RECV, c->in, c->need, &c->in_len, &err) != BT_OK) {
            drop(s, c);
            return -1;
        }
        if (c->in_len == c->need)
            on_message(s, c);
        else if (c->in_len == before)
            break;
    }
    return flush(s, c);
}

static void on_accept(struct bt__ps_server *s)
{
    for (;;) {
        int fd;
        struct bt__err err = {0};
        if (bt__sock_accept(s->lfd, &fd, &err) != BT_OK || fd < 0)
            return;
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd, c->state = ST_HELLO, c->need = BT__PS_HELLO_LEN, c->rank = UINT32_MAX;
        bt__sock_peer_str(fd, c->peer, sizeof(c->peer));
        c->events = EPOLLIN | EPOLLRDHUP;
        struct epoll_event e = {.events = c->events, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
    }
}

/* Retries held requests after a change, and fails those held past the timeout. */
static void retry_held(struct bt__ps_server *s)
{
    int64_t now = bt__now_ns(), limit = (int64_t)(s->timeout_s * 1e9);
    for (int round = 0; round < 64; round++) {
        int timed_out = 0;
        for (struct conn *c = s->conns; c; c = c->next)
            if (c->held && now - c->held_since > limit)
                timed_out = 1;
        if (!s->changed && !timed_out)
            return;
        s->changed = 0;
        for (struct conn *c = s->conns, *nx; c; c = nx) {
            nx = c->next;
            if (!c->held || c->doomed)
                continue;
            on_frame(s, c);
            if (c->held && now - c->held_since > limit)
                fail_held(s, c);
            if (!c->held)
                on_readable(s, c); /* flushes the reply, reads what came meanwhile */
        }
    }
}

/* ---- checkpoint ---- */

int bt__ps_server_checkpoint(struct bt__ps_server *s, struct bt__err *err)
{
    if (!s->ckpt_path)
        return BT_OK;
    struct bt__ps_ckpt_entry *e = calloc(s->tab.n ? s->tab.n : 1, sizeof(*e));
    if (!e)
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < s->tab.nb; i++)
        for (struct piece *p = (struct piece *)s->tab.b[i]; p; p = (struct piece *)p->node.next)
            e[n++] = (struct bt__ps_ckpt_entry){.name = p->name,
                                                .piece = p->idx,
                                                .npieces = p->npieces,
                                                .total = p->total,
                                                .offset = p->offset,
                                                .count = p->count,
                                                .opt = p->opt,
                                                .applied = p->applied,
                                                .w = p->w,
                                                .m = p->m,
                                                .v = p->v,
                                                .arrivals = p->arrivals,
                                                .cnt = p->cnt,
                                                .acc = p->acc};
    struct bt__ps_ckpt_state st = {.generation = s->gen, .nworkers = s->nworkers, .w = s->ws};
    int rc = bt__ps_ckpt_write(s->ckpt_path, (uint32_t)s->index, &st, e, n, err);
    free(e);
    if (rc == BT_OK && !s->ckpt_sync)
        BT_INFO(PS, "checkpoint of %zu pieces at step %llu written to %s", n,
                (unsigned long long)s->max_applied, s->ckpt_path);
    if (rc == BT_OK)
        s->dirty = 0;
    s->last_ckpt_ns = bt__now_ns();
    s->last_ckpt_step = s->max_applied;
    return rc;
}

static void maybe_checkpoint(struct bt__ps_server *s)
{
    if (!s->ckpt_path)
        return;
    int due = (s->ckpt_secs > 0 &&
               bt__now_ns() - s->last_ckpt_ns >= (int64_t)(s->ckpt_secs * 1e9)) ||
              (s->ckpt_steps > 0 && s->max_applied - s->last_ckpt_step >= (uint64_t)s->ckpt_steps);
    struct bt__err err = {0};
    if (due && bt__ps_server_checkpoint(s, &err) != BT_OK)
        BT_WARN(PS, "%s", err.msg);
}

static int reload(void *arg, const struct bt__ps_ckpt_entry *e)
{
    return add_piece(arg, e, e->w) ? BT_OK : BT_ERR_SYSTEM;
}

/* --checkpoint-sync: one checkpoint for every change of this iteration, then the replies
 * that acknowledge them. */
static void commit(struct bt__ps_server *s)
{
    struct bt__err err = {0};
    if (!hold_replies(s))
        return;
    if (bt__ps_server_checkpoint(s, &err) != BT_OK) {
        BT_WARN(PS, "%s; replying anyway (a crash now may lose these pushes)", err.msg);
        s->dirty = 0;
    }
    for (struct conn *c = s->conns, *nx; c; c = nx) {
        nx = c->next;
        if (!c->doomed)
            flush(s, c);
    }
}

/* Drops the connections of a generation the server has left. */
static void sweep(struct bt__ps_server *s)
{
    for (struct conn *c = s->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->doomed) {
            BT_INFO(PS, "dropping worker %u of generation %u (%s): a newer generation is served",
                    c->rank, c->gen, c->peer);
            drop(s, c);
        }
    }
}

/* ---- the loop ---- */

static void on_event(struct bt__ps_server *s, struct epoll_event *ev)
{
    if (ev->data.ptr == &s->lfd)
        return on_accept(s);
    if (ev->data.ptr == &s->wakefd) {
        uint64_t v;
        if (read(s->wakefd, &v, sizeof(v)) < 0) {
            /* nothing: the flag is what counts */
        }
        return;
    }
    struct conn *c = ev->data.ptr;
    if (c->doomed)
        return;
    if (c->held && (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !(ev->events & EPOLLOUT))
        return drop(s, c);
    if (ev->events & EPOLLOUT && flush(s, c) != 0)
        return;
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        on_readable(s, c);
}

int bt__ps_server_run(struct bt__ps_server *s)
{
    struct epoll_event ev[64];
    BT_INFO(PS, "ps server %d listening on %s", s->index, s->addr);
    while (!s->stop && !s->done) {
        int n = epoll_wait(s->epfd, ev, 64, 100);
        if (n < 0 && errno != EINTR) {
            BT_WARN(PS, "epoll_wait: %s", strerror(errno));
            return BT_ERR_SYSTEM;
        }
        for (int i = 0; i < n; i++)
            on_event(s, &ev[i]);
        sweep(s);
        retry_held(s);
        commit(s);
        maybe_checkpoint(s);
        bt__droplog_tick(&s->drops);
    }
    bt__droplog_flush(&s->drops);
    struct bt__err err = {0};
    if (s->ckpt_path && bt__ps_server_checkpoint(s, &err) != BT_OK)
        BT_WARN(PS, "%s", err.msg);
    for (struct conn *c = s->conns, *nx; c; c = nx) { /* last replies (CLOSE's OK) */
        nx = c->next;
        if (c->out_off < c->out.len && !c->doomed)
            bt__sock_wait(c->fd, BT_SOCK_SEND, c->out.p, c->out.len, &c->out_off,
                          bt__deadline_in(1.0), NULL, &(struct bt__err){0});
    }
    BT_INFO(PS, "ps server %d stops (%s)", s->index, s->done ? "every worker closed" : "asked to");
    return BT_OK;
}

static void *thread_main(void *arg)
{
    bt__ps_server_run(arg);
    return NULL;
}

int bt__ps_server_start(struct bt__ps_server *s)
{
    if (pthread_create(&s->thr, NULL, thread_main, s) != 0)
        return BT_ERR_SYSTEM;
    s->started = 1;
    return BT_OK;
}

void bt__ps_server_stop(struct bt__ps_server *s)
{
    uint64_t one = 1;
    s->stop = 1;
    if (write(s->wakefd, &one, sizeof(one)) < 0) {
        /* the loop also polls the flag every 100 ms */
    }
}

int bt__ps_server_index(const struct bt__ps_server *s)
{
    return s->index;
}

void bt__ps_server_destroy(struct bt__ps_server *s)
{
    if (!s)
        return;
    if (s->started) {
        bt__ps_server_stop(s);
        pthread_join(s->thr, NULL);
    }
    while (s->conns)
        drop(s, s->conns);
    for (size_t i = 0; i < s->tab.nb; i++)
        for (struct bt__hnode *nd = s->tab.b[i], *nx; nd; nd = nx) {
            nx = nd->next;
            free_piece((struct piece *)nd);
        }
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->wakefd >= 0)
        close(s->wakefd);
    bt__htab_free(&s->tab);
    free(s->closed);
    free(s->gone_ns);
    free(s->ws);
    free(s->loaded.w);
    free(s->ckpt_path);
    free(s);
}

/* ---- creation, publication in the store, and the `baton ps` entry ---- */

/* The local address of the route to host: what the workers, who reach the store the same
 * way, can most likely reach this server at. No packet is sent (a UDP connect only). */
static void route_addr(const char *host, int port, char *out, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
    char ps[16];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    snprintf(ps, sizeof(ps), "%d", port);
    snprintf(out, cap, "127.0.0.1");
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return;
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
}

static void set_addr(struct bt__ps_server *s, const char *host, int port)
{
    snprintf(s->addr, sizeof(s->addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* Takes an index from the store when none was given, and sets ps/server/<index> (the same key for
 * every generation). */
static int publish(struct bt__ps_server *s, const struct bt__ps_server_cfg *cfg, int port,
                   struct bt__err *err)
{
    char host[256], adv[256], key[96];
    int rport, rc;
    struct bt__store *st = NULL;
    if (bt__parse_endpoint(cfg->rdzv, host, sizeof(host), &rport) != 0)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "BATON_RDZV='%s' is not HOST:PORT",
                           cfg->rdzv);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(s->timeout_s),
                                 .what = "rendezvous store",
                                 .hint = "is the launcher of node 0 running?"};
    /* Through its node's relay when `baton run` started it (BATON_RDZV_RELAY), as a worker. */
    BT_CHECK(bt__store_connect_worker(host, rport, cfg->token ? cfg->token : "", &o, &st, err));
    if (s->index < 0) {
        int64_t v = 0;
        snprintf(key, sizeof(key), "ps/next_index");
        BT_CHECK_GOTO(bt__store_add(st, key, 1, &v), rc, fail);
        s->index = (int)v - 1;
    }
    if (cfg->advertise && *cfg->advertise)
        snprintf(adv, sizeof(adv), "%s", cfg->advertise);
    else
        route_addr(host, rport, adv, sizeof(adv));
    set_addr(s, adv, port);
    snprintf(key, sizeof(key), "ps/server/%d", s->index);
    BT_CHECK_GOTO(bt__store_set(st, key, s->addr, strlen(s->addr)), rc, fail);
    BT_INFO(PS, "published %s = %s", key, s->addr);
    bt__store_close(st);
    return BT_OK;
fail:
    bt__err_set(err, rc, "publishing ps server %d in the store: %s", s->index, bt__store_error(st));
    bt__store_close(st);
    return rc;
}

static int open_checkpoint(struct bt__ps_server *s, const struct bt__ps_server_cfg *cfg,
                           struct bt__err *err)
{
    size_t n = strlen(cfg->ckpt_dir) + 32;
    int found = 0;
    if (!(s->ckpt_path = malloc(n)))
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    snprintf(s->ckpt_path, n, "%s/ps-%d.ckpt", cfg->ckpt_dir, s->index);
    if (mkdir(cfg->ckpt_dir, 0755) != 0 && errno != EEXIST)
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint dir %s: %s", cfg->ckpt_dir,
                           strerror(errno));
    BT_CHECK(
        bt__ps_ckpt_read(s->ckpt_path, (uint32_t)s->index, &found, &s->loaded, reload, s, err));
    if (found)
        BT_WARN(PS, "ps server %d resumed from %s: %zu pieces, step %llu, generation %u", s->index,
                s->ckpt_path, s->tab.n, (unsigned long long)s->max_applied, s->loaded.generation);
    if (s->loaded.nworkers && s->loaded.generation >= s->gen) { /* its workers come back */
        s->closed = calloc(s->loaded.nworkers, 1);
        s->gone_ns = calloc(s->loaded.nworkers, sizeof(*s->gone_ns));
        if (!s->closed || !s->gone_ns)
            return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
        s->ws = s->loaded.w, s->loaded.w = NULL;
        s->nworkers = s->loaded.nworkers, s->gen = s->loaded.generation;
    }
    s->ckpt_sync = cfg->ckpt_sync;
    s->ckpt_secs = cfg->ckpt_secs, s->ckpt_steps = cfg->ckpt_steps;
    s->last_ckpt_ns = bt__now_ns();
    return BT_OK;
}

static int setup(struct bt__ps_server *s, const struct bt__ps_server_cfg *cfg, int *port,
                 struct bt__err *err)
{
    BT_CHECK(bt__sock_listen(cfg->host, cfg->port, 1024, &s->lfd, port, err));
    struct epoll_event a = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event b = {.events = EPOLLIN, .data.ptr = &s->wakefd};
    BT_SYSCHECK(s->epfd = epoll_create1(EPOLL_CLOEXEC), "ps server: epoll_create1", err);
    BT_SYSCHECK(s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "ps server: eventfd", err);
    BT_SYSCHECK(epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &a), "ps server: epoll_ctl", err);
    BT_SYSCHECK(epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd, &b), "ps server: epoll_ctl", err);
    if (cfg->rdzv && *cfg->rdzv)
        BT_CHECK(publish(s, cfg, *port, err));
    else {
        s->index = s->index < 0 ? 0 : s->index;
        set_addr(s,
                 cfg->advertise && *cfg->advertise ? cfg->advertise
                 : cfg->host && *cfg->host         ? cfg->host
                                                   : "127.0.0.1",
                 *port);
    }
    if (cfg->ckpt_dir && *cfg->ckpt_dir)
        BT_CHECK(open_checkpoint(s, cfg, err));
    return BT_OK;
}

int bt__ps_server_create(const struct bt__ps_server_cfg *cfg, struct bt__ps_server **out,
                         int *bound_port, struct bt__err *err)
{
    struct bt__ps_server *s = calloc(1, sizeof(*s));
    int port = 0, rc;
    *out = NULL;
    if (!s || bt__htab_init(&s->tab, 64) != 0) {
        free(s);
        return bt__err_set(err, BT_ERR_SYSTEM, "ps server: out of memory");
    }
    s->lfd = s->epfd = s->wakefd = -1;
    bt__droplog_init(&s->drops, BT_SUB_PS, "ps server");
    s->index = cfg->index;
    s->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : bt__comm_timeout_s();
    s->exit_when_done = cfg->exit_when_done;
    s->gen = cfg->generation > 0 ? (uint32_t)cfg->generation : 0;
    s->drop_reply = cfg->drop_reply;
    bt__auth_key(cfg->token ? cfg->token : "", s->key);
    bt__auth_random((uint8_t *)&s->instance, sizeof(s->instance));
    BT_CHECK_GOTO(setup(s, cfg, &port, err), rc, fail);
    if (bound_port)
        *bound_port = port;
    *out = s;
    return BT_OK;
fail:
    bt__ps_server_destroy(s);
    return rc;
}

void bt__ps_server_cfg_env(struct bt__ps_server_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = bt__env_str("BATON_PS_HOST", NULL);
    cfg->advertise = cfg->host;
    cfg->port = (int)bt__env_int("BATON_PS_PORT", 0);
    cfg->index = (int)bt__env_int("BATON_PS_INDEX", -1);
    cfg->token = bt__env_str("BATON_TOKEN", "");
    cfg->rdzv = bt__env_str("BATON_RDZV", NULL);
    cfg->generation = (int)bt__env_int("BATON_RESTART_COUNT", 0);
    cfg->timeout_s = bt__comm_timeout_s();
    cfg->ckpt_dir = bt__env_str("BATON_PS_CKPT_DIR", NULL);
    cfg->ckpt_secs = bt__env_dbl("BATON_PS_CKPT_SECS", 0.0);
    cfg->ckpt_steps = bt__env_int("BATON_PS_CKPT_STEPS", 0);
    cfg->ckpt_sync = (int)bt__env_int("BATON_PS_CKPT_SYNC", 0) != 0;
    cfg->drop_reply = bt__env_int("BATON_PS_FAULT_DROP_REPLY", 0);
    cfg->exit_when_done = 1;
}
