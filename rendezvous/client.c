/* client.c: the rendezvous store client: blocking calls, each with a deadline.
 *
 * One request is in flight at a time: the client sends a frame and reads one reply frame
 * (proto.h). Blocking requests (GET, WAIT, MULTI_GET) carry their timeout to the server,
 * which parks them and answers TIMEOUT with the keys still missing; the client waits that
 * long plus BATON_RDZV_IO_TIMEOUT for the answer. Any socket failure or a reply that does
 * not parse leaves the connection out of sync, so the handle is marked broken and every
 * later call fails until the caller reconnects. This file does not retry requests.
 */
#include <math.h>
#include <stddef.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "rendezvous/proto.h"
#include "rendezvous/store.h"

/* Seconds a non-blocking request (and the handshake) may take; also the grace a blocking
 * request's reply gets after its own timeout. */
BT_PARAM_DBL(io_timeout_s, "BATON_RDZV_IO_TIMEOUT", 60.0)

struct bt__store {
    const struct bt__store_ops *ops; /* another backend (bt__store_wrap), or NULL */
    void *impl;                      /* its handle */
    int fd;
    int broken;    /* the connection is out of sync: every call fails */
    int timed_out; /* broken by a reply that did not come in time (the stream itself is fine) */
    int port;
    double io_s; /* seconds of grace for a reply; 0: BATON_RDZV_IO_TIMEOUT */
    char host[256];
    struct bt__err err;   /* the last call's error */
    struct bt__wbuf req;  /* the request being built */
    struct bt__wbuf resp; /* the last reply frame, less its length field */
};

/* A handle of another backend answers through its table. */
#define VIA_OPS(s, op, ...)                                                                        \
    do {                                                                                           \
        if ((s) && (s)->ops)                                                                       \
            return (s)->ops->op((s)->impl, __VA_ARGS__);                                           \
    } while (0)

int bt__store_wrap(const struct bt__store_ops *ops, void *impl, struct bt__store **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return BT_ERR_SYSTEM;
    (*out)->ops = ops;
    (*out)->impl = impl;
    (*out)->fd = -1;
    return BT_OK;
}

static double io_timeout(void)
{
    double t = bt__param_io_timeout_s();
    return t > 0 ? t : 60.0;
}

/* ---- connecting ---- */

/* Words the outcome of the handshake (common/auth.h) in the store's terms. */
static int handshake_error(const struct bt__store *s, int outcome, const struct bt__auth_reply *rep,
                           const struct bt__err *e, struct bt__err *err)
{
    switch (outcome) {
    case BT__AUTH_IO:
        if (rep->io_rc == BT_ERR_REMOTE)
            return bt__err_set(err, rep->io_rc,
                               "rendezvous store %s:%d closed the connection during the "
                               "handshake (%s); hint: is a baton store listening there, not "
                               "another service?",
                               s->host, s->port, e->msg);
        return bt__err_set(err, rep->io_rc, "rendezvous store %s:%d: handshake: %s", s->host,
                           s->port, e->msg);
    case BT__AUTH_NOT_PEER:
        return bt__err_set(err, BT_ERR_REMOTE,
                           "%s:%d is not a baton rendezvous store (bad magic in its answer)",
                           s->host, s->port);
    case BT__AUTH_VERSION:
        return bt__err_set(err, BT_ERR_AUTH,
                           "rendezvous store %s:%d speaks protocol version %u, we speak %u; "
                           "hint: are the launcher and the workers from different baton builds?",
                           s->host, s->port, rep->version, BT__RDZV_VERSION);
    case BT__AUTH_CRYPTO:
        return bt__err_set(err, BT_ERR_SYSTEM,
                           "rendezvous: no random bytes or HMAC-SHA256 "
                           "failed (OpenSSL)");
    }
    if (outcome == BT__AUTH_REFUSED && rep->status == BT__ST_BAD_TOKEN)
        return bt__err_set(err, BT_ERR_AUTH,
                           "rendezvous store %s:%d refused our token; hint: "
                           "is this pod from another job? (BATON_TOKEN / job id mismatch)",
                           s->host, s->port);
    return bt__err_set(err, BT_ERR_AUTH,
                       "rendezvous store %s:%d could not prove it holds "
                       "our job token; hint: is it another job's store? (BATON_TOKEN / "
                       "job id mismatch)",
                       s->host, s->port);
}

/* The challenge-response of proto.h: we prove we hold the token, then the store does. */
static int handshake(struct bt__store *s, const char *token, struct bt__err *err)
{
    struct bt__auth_reply rep;
    struct bt__err e = {0};
    uint8_t kind[4];
    bt__put_le32(kind, BT__RDZV_KIND_CLIENT);
    int outcome = bt__auth_client(s->fd, &bt__rdzv_auth, token, kind, bt__deadline_in(io_timeout()),
                                  &rep, &e);
    return outcome == BT__AUTH_OK ? BT_OK : handshake_error(s, outcome, &rep, &e, err);
}

int bt__store_connect(const char *host, int port, const char *token,
                      const struct bt__connect_opts *copts, struct bt__store **out,
                      struct bt__err *err)
{
    int rc;
    *out = NULL;
    struct bt__store *s = calloc(1, sizeof(*s));
    if (!s)
        return bt__err_set(err, BT_ERR_SYSTEM, "rendezvous: out of memory");
    s->fd = -1;
    s->port = port;
    snprintf(s->host, sizeof(s->host), "%s", host);
    struct bt__connect_opts def = {.deadline_ns = bt__deadline_in(30.0),
                                   .what = "rendezvous store"};
    BT_CHECK_GOTO(bt__sock_connect(host, port, copts ? copts : &def, &s->fd, err), rc, fail);
    BT_CHECK_GOTO(handshake(s, token, err), rc, fail);
    BT_INFO(RDZV, "joined rendezvous store %s:%d", host, port);
    *out = s;
    return BT_OK;
fail:
    bt__store_abandon(s);
    return rc;
}

/* One connect to the node relay at abstract address addr ("@name"); 0 or errno. */
static int relay_dial(const char *addr, int *fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(addr);
    if (addr[0] != '@' || n >= sizeof(sa.sun_path))
        return EINVAL;
    memcpy(sa.sun_path, addr, n);
    sa.sun_path[0] = '\0';
    *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return errno;
    if (connect(*fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n))) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return e;
    }
    fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static int relay_connect(const char *host, int port, const char *token, const char *relay,
                         struct bt__store **out, struct bt__err *err);

int bt__store_connect_worker(const char *host, int port, const char *token,
                             const struct bt__connect_opts *copts, struct bt__store **out,
                             struct bt__err *err)
{
    const char *relay = getenv("BATON_RDZV_RELAY");
    if (!relay || !relay[0])
        return bt__store_connect(host, port, token, copts, out, err);
    return bt__store_connect_relay(relay, host, port, token, copts, out, err);
}

int bt__store_connect_relay(const char *relay, const char *host, int port, const char *token,
                            const struct bt__connect_opts *copts, struct bt__store **out,
                            struct bt__err *err)
{
    int64_t dl = copts ? copts->deadline_ns : bt__deadline_in(30.0);
    double backoff = 0.05;
    for (;;) {
        int rc = relay_connect(host, port, token, relay, out, err);
        if (rc != BT_ERR_REMOTE || *out || strstr(err->msg, "cannot reach") ||
            (dl != BT_DEADLINE_NONE && bt__now_ns() + (int64_t)(backoff * 1e9) > dl))
            return rc;
        BT_INFO(RDZV, "this node's relay has no store yet (%s); retrying", err->msg);
        struct timespec ts = {(time_t)backoff, (long)((backoff - (double)(time_t)backoff) * 1e9)};
        nanosleep(&ts, NULL); /* tv_nsec must stay below 1e9: 1 s is {1, 0} */
        backoff = backoff * 2 < 1.0 ? backoff * 2 : 1.0;
    }
}

/* One attempt through the relay: dial it and do the store's handshake with it. */
static int relay_connect(const char *host, int port, const char *token, const char *relay,
                         struct bt__store **out, struct bt__err *err)
{
    *out = NULL;
    struct bt__store *s = calloc(1, sizeof(*s));
    if (!s)
        return bt__err_set(err, BT_ERR_SYSTEM, "rendezvous: out of memory");
    s->port = port;
    snprintf(s->host, sizeof(s->host), "%s", host);
    int e = relay_dial(relay, &s->fd);
    if (e != 0) {
        bt__store_abandon(s);
        return bt__err_set(err, BT_ERR_REMOTE,
                           "rendezvous store %s:%d: cannot reach this node's relay "
                           "(BATON_RDZV_RELAY=%s): %s; hint: is this node's `baton run` still "
                           "running?",
                           host, port, relay, strerror(e));
    }
    int rc = handshake(s, token, err);
    if (rc != BT_OK) {
        bt__store_abandon(s);
        return rc;
    }
    BT_INFO(RDZV, "joined rendezvous store %s:%d through this node's relay %s", host, port, relay);
    *out = s;
    return BT_OK;
}

int bt__store_detach(struct bt__store *s)
{
    int fd = s->fd;
    s->fd = -1;
    bt__store_abandon(s);
    return fd;
}

/* ---- one request, one reply ---- */

static int fail(struct bt__store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct bt__store *s, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return bt__err_reset(&s->err, code, "rendezvous store %s:%d: %s", s->host, s->port, msg);
}

/* Starts building a request; every call begins here (it also clears the last error). */
static size_t req_begin(struct bt__store *s, uint8_t cmd)
{
    bt__err_clear(&s->err);
    s->req.len = 0;
    return bt__wbuf_frame_begin(&s->req, cmd);
}

/* Sends the request and reads one reply frame into s->resp. A failure leaves the stream
 * out of sync, so the handle is broken from then on. */
static int roundtrip(struct bt__store *s, size_t frame, const char *what, int64_t dl)
{
    struct bt__err e = {0};
    uint8_t hdr[4];
    int rc;
    if (s->broken)
        return fail(s, BT_ERR_REMOTE,
                    "%s: the connection failed earlier; close it and "
                    "connect again",
                    what);
    bt__wbuf_frame_end(&s->req, frame);
    if (s->req.oom)
        return fail(s, BT_ERR_SYSTEM, "%s: out of memory", what);
    if (s->req.len - 4 > BT__RDZV_MAX_FRAME)
        return fail(s, BT_ERR_INVALID_ARG,
                    "%s: request of %zu bytes is over the frame cap of "
                    "%u bytes",
                    what, s->req.len, BT__RDZV_MAX_FRAME);
    rc = bt__sock_send_all(s->fd, s->req.p, s->req.len, dl, &e);
    if (rc == BT_OK)
        rc = bt__sock_recv_all(s->fd, hdr, 4, dl, &e);
    uint32_t len = rc == BT_OK ? bt__le32(hdr) : 0;
    if (rc == BT_OK && (len == 0 || len > BT__RDZV_MAX_FRAME)) {
        rc = BT_ERR_REMOTE;
        snprintf(e.msg, sizeof(e.msg), "reply frame of %u bytes is malformed", len);
    }
    if (rc == BT_OK && bt__wbuf_reserve(&s->resp, len) != 0) {
        rc = BT_ERR_SYSTEM;
        snprintf(e.msg, sizeof(e.msg), "out of memory for a %u-byte reply", len);
    }
    if (rc == BT_OK)
        rc = bt__sock_recv_all(s->fd, s->resp.p, len, dl, &e);
    if (rc != BT_OK) {
        s->broken = 1;
        s->timed_out = rc == BT_ERR_TIMEOUT;
        return fail(s, rc, "%s: %s", what, e.msg);
    }
    s->resp.len = len;
    return BT_OK;
}

/* The reply's payload after its status byte. */
static struct bt__rbuf reply_body(const struct bt__store *s)
{
    struct bt__rbuf r = {s->resp.p + 1, s->resp.len - 1, 0};
    return r;
}

/* Turns a TIMEOUT reply into an error that names the missing keys. */
static int timeout_error(struct bt__store *s, const char *what, double timeout_s)
{
    struct bt__rbuf r = reply_body(s);
    uint32_t total = bt__rbuf_u32(&r), listed = bt__rbuf_u32(&r);
    char keys[BT__ERR_MSG_MAX] = "";
    size_t used = 0;
    for (uint32_t i = 0; i < listed && !r.bad && used < sizeof(keys) - 1; i++) {
        size_t kl;
        const uint8_t *k = bt__rbuf_bytes(&r, BT__RDZV_MAX_KEY, &kl);
        int n = snprintf(keys + used, sizeof(keys) - used, "%s%.*s", i ? ", " : "", (int)kl,
                         k ? (const char *)k : "");
        used += n > 0 ? (size_t)n : 0;
    }
    if (used >= sizeof(keys) - 1)
        used = sizeof(keys) - 1;
    if (total > listed)
        snprintf(keys + used, sizeof(keys) - used, " and %u more", total - listed);
    return fail(s, BT_ERR_TIMEOUT, "%s timed out after %.1f s; still missing %u key(s): %s", what,
                timeout_s, total, keys);
}

/* Maps a reply's status to a code; on OK the caller parses the body. */
static int reply_status(struct bt__store *s, const char *what, double timeout_s)
{
    uint8_t st = s->resp.p[0];
    if (st == BT__ST_OK)
        return BT_OK;
    if (st == BT__ST_TIMEOUT)
        return timeout_error(s, what, timeout_s);
    if (st == BT__ST_ERROR) {
        struct bt__rbuf r = reply_body(s);
        size_t ml;
        const uint8_t *m = bt__rbuf_bytes(&r, 1024, &ml);
        return fail(s, BT_ERR_INVALID_ARG, "%s refused: %.*s", what, (int)ml,
                    m ? (const char *)m : "(no reason given)");
    }
    s->broken = 1;
    return fail(s, BT_ERR_REMOTE, "%s: unexpected reply status %u", what, st);
}

static int malformed(struct bt__store *s, const char *what)
{
    s->broken = 1;
    return fail(s, BT_ERR_REMOTE, "%s: malformed reply (%zu bytes)", what, s->resp.len);
}

static double grace(const struct bt__store *s)
{
    return s->io_s > 0 ? s->io_s : io_timeout();
}

static int64_t io_deadline(const struct bt__store *s)
{
    return bt__deadline_in(grace(s));
}

/* The deadline of a blocking request: its timeout plus the grace for the server's answer. */
static int64_t wait_deadline(const struct bt__store *s, double timeout_s)
{
    return timeout_s < 0 ? BT_DEADLINE_NONE : bt__deadline_in(timeout_s + grace(s));
}

static uint32_t timeout_ms(double timeout_s)
{
    if (timeout_s < 0)
        return BT__RDZV_NO_TIMEOUT;
    double ms = ceil(timeout_s * 1000.0);
    return ms >= (double)(BT__RDZV_NO_TIMEOUT - 1) ? BT__RDZV_NO_TIMEOUT - 1 : (uint32_t)ms;
}

/* Checks a key and a value against the store's caps before anything is sent. */
static int check_kv(struct bt__store *s, const char *key, size_t vlen)
{
    if (!s)
        return BT_ERR_INVALID_ARG;
    size_t kl = key ? strlen(key) : 0;
    if (kl == 0 || kl > BT__RDZV_MAX_KEY)
        return fail(s, BT_ERR_INVALID_ARG,
                    "key '%.40s%s' has %zu bytes; keys must have 1 to "
                    "%u bytes",
                    key ? key : "(null)", kl > 40 ? "..." : "", kl, BT__RDZV_MAX_KEY);
    if (vlen > BT__RDZV_MAX_VALUE)
        return fail(s, BT_ERR_INVALID_ARG,
                    "value for key '%.40s' has %zu bytes, over the "
                    "store's cap of %u bytes",
                    key, vlen, BT__RDZV_MAX_VALUE);
    return BT_OK;
}

static void *dup_bytes(const uint8_t *p, size_t n)
{
    char *v = malloc(n + 1);
    if (v) {
        if (n)
            memcpy(v, p, n);
        v[n] = '\0';
    }
    return v;
}

/* ---- the calls ---- */

/* A request of one key and one value (SET, LAST_WILL) whose reply is a bare status. */
static int kv_request(struct bt__store *s, int op, const char *name, const char *key,
                      const void *val, size_t len)
{
    BT_CHECK(check_kv(s, key, len));
    size_t f = req_begin(s, op);
    bt__wbuf_bytes(&s->req, key, strlen(key));
    bt__wbuf_bytes(&s->req, val, len);
    BT_CHECK(roundtrip(s, f, name, io_deadline(s)));
    return reply_status(s, name, 0);
}

int bt__store_set(struct bt__store *s, const char *key, const void *val, size_t len)
{
    VIA_OPS(s, set, key, val, len);
    return kv_request(s, BT__RDZV_SET, "SET", key, val, len);
}

int bt__store_get(struct bt__store *s, const char *key, void **val, size_t *len, double timeout_s)
{
    VIA_OPS(s, get, key, val, len, timeout_s);
    char what[96];
    *val = NULL;
    *len = 0;
    BT_CHECK(check_kv(s, key, 0));
    snprintf(what, sizeof(what), "GET '%.60s'", key);
    size_t f = req_begin(s, BT__RDZV_GET);
    bt__wbuf_u32(&s->req, timeout_ms(timeout_s));
    bt__wbuf_bytes(&s->req, key, strlen(key));
    BT_CHECK(roundtrip(s, f, what, wait_deadline(s, timeout_s)));
    BT_CHECK(reply_status(s, what, timeout_s));
    struct bt__rbuf r = reply_body(s);
    size_t n;
    const uint8_t *v = bt__rbuf_bytes(&r, BT__RDZV_MAX_VALUE, &n);
    if (r.bad || r.left)
        return malformed(s, what);
    if (!(*val = dup_bytes(v, n)))
        return fail(s, BT_ERR_SYSTEM, "%s: out of memory", what);
    *len = n;
    return BT_OK;
}

int bt__store_add(struct bt__store *s, const char *key, int64_t delta, int64_t *result)
{
    VIA_OPS(s, add, key, delta, result);
    BT_CHECK(check_kv(s, key, 0));
    size_t f = req_begin(s, BT__RDZV_ADD);
    bt__wbuf_bytes(&s->req, key, strlen(key));
    bt__wbuf_u64(&s->req, (uint64_t)delta);
    BT_CHECK(roundtrip(s, f, "ADD", io_deadline(s)));
    BT_CHECK(reply_status(s, "ADD", 0));
    struct bt__rbuf r = reply_body(s);
    int64_t v = (int64_t)bt__rbuf_u64(&r);
    if (r.bad || r.left)
        return malformed(s, "ADD");
    if (result)
        *result = v;
    return BT_OK;
}

int bt__store_compare_set(struct bt__store *s, const char *key, const void *expected, size_t elen,
                          const void *desired, size_t dlen, void **actual, size_t *alen)
{
    VIA_OPS(s, compare_set, key, expected, elen, desired, dlen, actual, alen);
    if (actual)
        *actual = NULL;
    if (alen)
        *alen = 0;
    BT_CHECK(check_kv(s, key, dlen > elen ? dlen : elen));
    size_t f = req_begin(s, BT__RDZV_COMPARE_SET);
    bt__wbuf_bytes(&s->req, key, strlen(key));
    bt__wbuf_bytes(&s->req, expected, elen);
    bt__wbuf_bytes(&s->req, desired, dlen);
    BT_CHECK(roundtrip(s, f, "COMPARE_SET", io_deadline(s)));
    BT_CHECK(reply_status(s, "COMPARE_SET", 0));
    struct bt__rbuf r = reply_body(s);
    size_t n;
    const uint8_t *v = bt__rbuf_bytes(&r, BT__RDZV_MAX_VALUE, &n);
    if (r.bad || r.left)
        return malformed(s, "COMPARE_SET");
    if (actual && !(*actual = dup_bytes(v, n)))
        return fail(s, BT_ERR_SYSTEM, "COMPARE_SET: out of memory");
    if (alen)
        *alen = n;
    return BT_OK;
}

/* Builds a WAIT or MULTI_GET request for keys; BT_OK or an argument error. */
static int keys_request(struct bt__store *s, uint8_t cmd, const char *const *keys, int nkeys,
                        double timeout_s, size_t *frame)
{
    if (!s || nkeys < 0 || (nkeys > 0 && !keys))
        return s ? fail(s, BT_ERR_INVALID_ARG, "bad key list (%d keys)", nkeys)
                 : BT_ERR_INVALID_ARG;
    if ((uint32_t)nkeys > BT__RDZV_MAX_KEYS)
        return fail(s, BT_ERR_INVALID_ARG, "%d keys in one request; at most %u", nkeys,
                    BT__RDZV_MAX_KEYS);
    for (int i = 0; i < nkeys; i++)
        BT_CHECK(check_kv(s, keys[i], 0));
    *frame = req_begin(s, cmd);
    bt__wbuf_u32(&s->req, timeout_ms(timeout_s));
    bt__wbuf_u32(&s->req, (uint32_t)nkeys);
    for (int i = 0; i < nkeys; i++)
        bt__wbuf_bytes(&s->req, keys[i], strlen(keys[i]));
    return BT_OK;
}

int bt__store_wait(struct bt__store *s, const char *const *keys, int nkeys, double timeout_s)
{
    VIA_OPS(s, wait, keys, nkeys, timeout_s);
    char what[96];
    size_t f;
    BT_CHECK(keys_request(s, BT__RDZV_WAIT, keys, nkeys, timeout_s, &f));
    if (nkeys == 0)
        return BT_OK;
    snprintf(what, sizeof(what), "WAIT for %d key(s)", nkeys);
    BT_CHECK(roundtrip(s, f, what, wait_deadline(s, timeout_s)));
    BT_CHECK(reply_status(s, what, timeout_s));
    return s->resp.len == 1 ? BT_OK : malformed(s, what);
}

int bt__store_multi_get(struct bt__store *s, const char *const *keys, int nkeys, void **vals,
                        size_t *lens, double timeout_s)
{
    VIA_OPS(s, multi_get, keys, nkeys, vals, lens, timeout_s);
    char what[96];
    size_t f;
    for (int i = 0; i < nkeys; i++)
        vals[i] = NULL, lens[i] = 0;
    BT_CHECK(keys_request(s, BT__RDZV_MULTI_GET, keys, nkeys, timeout_s, &f));
    if (nkeys == 0)
        return BT_OK;
    snprintf(what, sizeof(what), "MULTI_GET of %d key(s)", nkeys);
    BT_CHECK(roundtrip(s, f, what, wait_deadline(s, timeout_s)));
    BT_CHECK(reply_status(s, what, timeout_s));
    struct bt__rbuf r = reply_body(s);
    int ok = bt__rbuf_u32(&r) == (uint32_t)nkeys;
    for (int i = 0; i < nkeys && ok; i++) {
        const uint8_t *v = bt__rbuf_bytes(&r, BT__RDZV_MAX_VALUE, &lens[i]);
        ok = !r.bad && (vals[i] = dup_bytes(v, lens[i])) != NULL;
    }
    if (ok && !r.left)
        return BT_OK;
    for (int i = 0; i < nkeys; i++) {
        free(vals[i]);
        vals[i] = NULL;
        lens[i] = 0;
    }
    return r.bad || r.left ? malformed(s, what) : fail(s, BT_ERR_SYSTEM, "%s: out of memory", what);
}

int bt__store_multi_set(struct bt__store *s, const char *const *keys, int nkeys,
                        const void *const *vals, const size_t *lens)
{
    if (!s || nkeys < 0 || (uint32_t)nkeys > BT__RDZV_MAX_KEYS || (nkeys && (!keys || !vals)))
        return s ? fail(s, BT_ERR_INVALID_ARG, "MULTI_SET: bad key list (%d keys, at most %u)",
                        nkeys, BT__RDZV_MAX_KEYS)
                 : BT_ERR_INVALID_ARG;
    for (int i = 0; i < nkeys; i++)
        BT_CHECK(check_kv(s, keys[i], lens[i]));
    size_t f = req_begin(s, BT__RDZV_MULTI_SET);
    if (nkeys == 0)
        return BT_OK;
    bt__wbuf_u32(&s->req, (uint32_t)nkeys);
    for (int i = 0; i < nkeys; i++) {
        bt__wbuf_bytes(&s->req, keys[i], strlen(keys[i]));
        bt__wbuf_bytes(&s->req, vals[i], lens[i]);
    }
    BT_CHECK(roundtrip(s, f, "MULTI_SET", io_deadline(s)));
    return reply_status(s, "MULTI_SET", 0);
}

int bt__store_delete(struct bt__store *s, const char *key, int *deleted)
{
    VIA_OPS(s, del, key, deleted);
    BT_CHECK(check_kv(s, key, 0));
    size_t f = req_begin(s, BT__RDZV_DELETE);
    bt__wbuf_bytes(&s->req, key, strlen(key));
    BT_CHECK(roundtrip(s, f, "DELETE", io_deadline(s)));
    BT_CHECK(reply_status(s, "DELETE", 0));
    struct bt__rbuf r = reply_body(s);
    uint32_t existed = bt__rbuf_u32(&r);
    if (r.bad || r.left)
        return malformed(s, "DELETE");
    if (deleted)
        *deleted = existed != 0;
    return BT_OK;
}

int bt__store_local_addr(const struct bt__store *s, char *out, size_t n)
{
    VIA_OPS(s, local_addr, out, n);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    out[0] = '\0';
    if (!s || s->fd < 0 || getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
        return -1;
    return 0;
}

int bt__store_ping(struct bt__store *s)
{
    if (!s)
        return BT_ERR_INVALID_ARG;
    size_t f = req_begin(s, BT__RDZV_PING);
    BT_CHECK(roundtrip(s, f, "PING", io_deadline(s)));
    return reply_status(s, "PING", 0);
}

int bt__store_last_will(struct bt__store *s, const char *key, const void *val, size_t len)
{
    VIA_OPS(s, last_will, key, val, len);
    return kv_request(s, BT__RDZV_LAST_WILL, "LAST_WILL", key, val, len);
}

int bt__store_heartbeat(struct bt__store *s, double ttl_s)
{
    VIA_OPS(s, heartbeat, ttl_s);
    if (!s || ttl_s < 0)
        return BT_ERR_INVALID_ARG;
    size_t f = req_begin(s, BT__RDZV_HEARTBEAT);
    bt__wbuf_u32(&s->req, ttl_s > 0 ? timeout_ms(ttl_s) : 0);
    BT_CHECK(roundtrip(s, f, "HEARTBEAT", io_deadline(s)));
    return reply_status(s, "HEARTBEAT", 0);
}

void bt__store_set_io_timeout(struct bt__store *s, double io_s)
{
    if (s && s->ops) {
        s->ops->set_io_timeout(s->impl, io_s);
        return;
    }
    if (s)
        s->io_s = io_s;
}

int bt__store_broken(const struct bt__store *s)
{
    if (s && s->ops)
        return s->ops->broken(s->impl);
    return !s || s->broken;
}

const char *bt__store_error(const struct bt__store *s)
{
    if (s && s->ops)
        return s->ops->error(s->impl);
    return s ? s->err.msg : "no store handle";
}

/* ---- closing ---- */

void bt__store_abandon(struct bt__store *s)
{
    if (s && s->ops) {
        s->ops->close(s->impl, 0);
        free(s);
        return;
    }
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    bt__wbuf_free(&s->req);
    bt__wbuf_free(&s->resp);
    free(s);
}

/* A connection left out of sync by a reply that came too late (a stopped store): the store
 * still has our requests queued. A GOODBYE behind them, and the replies read and dropped
 * until the store closes, end it as a goodbye, not as a lost client (its last will stays
 * unfired), when the store runs again within the deadline; else it is abandoned. */
static void goodbye_out_of_sync(struct bt__store *s, double timeout_s)
{
    struct bt__err e = {0};
    uint8_t b;
    int64_t dl = bt__deadline_in(timeout_s);
    size_t f = req_begin(s, BT__RDZV_GOODBYE);
    bt__wbuf_frame_end(&s->req, f);
    if (bt__sock_send_all(s->fd, s->req.p, s->req.len, dl, &e) != BT_OK)
        return;
    for (int i = 0; i < (int)BT__RDZV_MAX_FRAME; i++)
        if (bt__sock_recv_all(s->fd, &b, 1, dl, &e) != BT_OK)
            return; /* the store closed (after our goodbye), or the deadline passed */
}

void bt__store_close(struct bt__store *s)
{
    if (s && s->ops) {
        s->ops->close(s->impl, 1);
        free(s);
        return;
    }
    if (!s)
        return;
    if (s->fd >= 0 && s->broken && s->timed_out)
        goodbye_out_of_sync(s, 1.0);
    /* Wait for the answer: closing with it unread would reset the connection, and a reset
     * can reach the server before it reads our goodbye, firing the last will. */
    if (s->fd >= 0 && !s->broken) {
        size_t f = req_begin(s, BT__RDZV_GOODBYE);
        double t = io_timeout() < 5.0 ? io_timeout() : 5.0;
        if (roundtrip(s, f, "GOODBYE", bt__deadline_in(t)) != BT_OK)
            BT_INFO(RDZV, "%s", s->err.msg);
    }
    bt__store_abandon(s);
}
