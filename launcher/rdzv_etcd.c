/* rdzv_etcd.c: the launchers' rendezvous in an etcd cluster (--rdzv-backend etcd
 * --rdzv-endpoint HOST:PORT[,HOST:PORT...]), behind the store calls of rendezvous/store.h
 * (bt__store_wrap), so run_rdzv.c and run_elastic.c work unchanged on it.
 *
 * It speaks etcd's v3 API through its JSON gateway (etcd 3.4: POST /v3/kv/range, /v3/kv/put,
 * /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/watch; keys and values base64) with
 * libcurl and cJSON. Every key lives under /baton/<job id>/. A request that cannot reach an
 * endpoint goes to the next one, so one member of the cluster may die.
 *
 *   SET, COMPARE_SET, ADD   put, and transactions on create/mod revision or value (ADD retries
 *                           its compare-and-swap until it wins)
 *   GET with a timeout      a range, then a watch from the revision after it until the key is
 *                           put or the timeout passes: no polling
 *   heartbeat and last will one lease per launcher (TTL BATON_HEARTBEAT_TIMEOUT), renewed
 *                           every quarter of its TTL by a thread of its own (the keeper), so
 *                           that no request of the others, however long it blocks, delays it. A
 *                           will is a key w/<id> = "KEY\nVALUE" under the lease. When the
 *                           launcher dies or stops, the lease expires and etcd deletes the key;
 *                           every watch asks for the previous value of deleted keys, and
 *                           whichever launcher sees the deletion first writes VALUE at KEY
 *                           unless KEY exists (first failure wins, as with baton's own store).
 *                           A launcher whose own lease expired is told its handle is broken
 *                           (it was declared lost).
 *
 * Not here: the workers' store. In an etcd job each launcher hosts a baton store for workers,
 * and a generation's workers use the one of its node rank 0 (run_elastic.c).
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

/* etcd revokes expired leases in a sweep every 0.5 s (its lessor); the deletion then reaches a
 * watch, which ends to post the will (a put), and the waiting launcher's next range reads it. */
#define EXPIRY_SWEEP_S 0.5
#define WILL_DELIVERY_S 1.5

double bt__run_etcd_lost_s(void)
{
    return ceil(bt__run_heartbeat_timeout()) + EXPIRY_SWEEP_S + WILL_DELIVERY_S;
}

#if BT_HAVE_ETCD

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/socket.h>

#define MAX_EP 16
#define KEY_MAX 512
#define WILLS_MAX 2 /* last wills per handle, as baton's store allows */

struct etcd {
    char eps[MAX_EP][BT_SPEC_HOST_MAX + 16]; /* "http://host:port" */
    int neps, cur;
    char prefix[160]; /* "/baton/<job>/" */
    CURL *c;
    struct bt__err err;
    int broken;
    double io_s; /* seconds one request may take */
    /* The first revision no watch of this handle has seen (set by its first range): the next
     * watch starts there, so a will deleted while no watch ran (between two) is still seen. */
    int64_t next_rev;
    char will[WILLS_MAX][64];          /* "w/<pid>.<n>": a will's etcd key, "" before one */
    char will_key[WILLS_MAX][KEY_MAX]; /* the store key each will sets */
    char local_ip[64];                 /* our address on the last request */
    const int *stop;                   /* the keeper's: set, its requests give up */
};

/* The launcher's lease, shared by its handles (main thread and watcher), and renewed by a
 * thread of its own, the keeper, on a handle of its own: a renewal never waits behind the
 * others' requests, which may block longer than the TTL (a get of 5 s, workers stopped with a
 * longer --grace), so only a launcher that is gone, stopped or cut off loses it. */
static struct {
    pthread_mutex_t mu;
    int64_t id;       /* 0: none */
    double ttl;       /* seconds */
    int expired;      /* etcd said it is gone: this launcher was declared lost */
    pthread_t keeper; /* runs while keeping */
    int keeping, stop;
} lease = {.mu = PTHREAD_MUTEX_INITIALIZER};
static int handles;

/* ---- base64 (OpenSSL) ---- */

static char *b64(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* Decodes s into a malloc'd, NUL-terminated buffer; *n its length. */
static char *unb64(const char *s, size_t *n)
{
    size_t len = s ? strlen(s) : 0;
    char *out = malloc(3 * (len / 4) + 1);
    if (!out)
        return NULL;
    int k = len ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len) : 0;
    if (k < 0)
        k = 0;
    while (k > 0 && len > 0 && s[len - 1] == '=')
        k--, len--;
    out[k] = '\0';
    *n = (size_t)k;
    return out;
}

/* ---- requests ---- */

/* libcurl's sockets are not close-on-exec: every worker and --ps server the launcher started
 * while one was open held a copy of it, so a connection that curl closed (a watch it gave up
 * on) stayed open in etcd as long as that child lived. Each handle makes its sockets with
 * SOCK_CLOEXEC instead (no window for a fork in another thread). */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)arg, (void)purpose;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static CURL *handle_new(void)
{
    CURL *c = curl_easy_init();
    if (c)
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    return c;
}

static int fail(struct etcd *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct etcd *e, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    if (e->broken) /* sticky: the first error is the one that counts */
        return e->err.code;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bt__err_reset(&e->err, code, "%s", msg);
    if (code != BT_ERR_TIMEOUT)
        e->broken = 1;
    return code;
}

struct buf {
    char *p;
    size_t len, cap;
};

static size_t on_data(char *p, size_t sz, size_t nm, void *arg)
{
    struct buf *b = arg;
    size_t n = sz * nm;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return 0;
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static const char *endpoints(const struct etcd *e, char *out, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < e->neps && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%s", i ? "," : "", e->eps[i] + 7);
    return out;
}

static int64_t num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v)   ? strtoll(v->valuestring, NULL, 10)
           : cJSON_IsNumber(v) ? (int64_t)v->valuedouble
                               : 0;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An answer that says "not now" rather than "no": etcd gives 503 while its members elect a
 * leader or its disk lags (etcdserver: leader changed, no leader, request timed out), 429 when
 * its apply lags its commits (too many requests). */
static int transient(long code)
{
    return code >= 500 || code == 429;
}

/* etcd's own reason in an error answer ({"error": "...", "code": 14}), or "". */
static void reason(const char *body, char *out, size_t n)
{
    cJSON *j = cJSON_Parse(body ? body : "");
    const char *m = str(j, "error") ? str(j, "error") : str(j, "message");
    snprintf(out, n, m ? " (%.200s)" : "", m);
    cJSON_Delete(j);
}

/* POSTs body to path on the current endpoint, then the others; *resp the parsed answer. A
 * member that cannot be reached is left for the next one; a 5xx or 429 answer is asked again,
 * of the next member, a round through them every 0.1 s, until e->io_s passed since the first
 * try; any other answer but 200 is final. */
static int post(struct etcd *e, const char *path, const char *body, cJSON **resp)
{
    char url[BT_SPEC_HOST_MAX + 64], eps[512], busy_url[BT_SPEC_HOST_MAX + 64], why[256] = "";
    CURLcode cc = CURLE_OK;
    long code = 0, busy = 0;
    int64_t t0 = bt__now_ns(), dl = t0 + (int64_t)(e->io_s * 1e9);
    *resp = NULL;
    for (int t = 1;; t++) {
        struct buf b = {0};
        snprintf(url, sizeof(url), "%s%s", e->eps[e->cur], path);
        curl_easy_setopt(e->c, CURLOPT_URL, url);
        curl_easy_setopt(e->c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e->c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e->c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e->c, CURLOPT_TIMEOUT_MS, (long)(e->io_s * 1000));
        cc = curl_easy_perform(e->c);
        code = 0;
        curl_easy_getinfo(e->c, CURLINFO_RESPONSE_CODE, &code);
        if (cc == CURLE_OK && code == 200) {
            char *ip = NULL;
            if (curl_easy_getinfo(e->c, CURLINFO_LOCAL_IP, &ip) == CURLE_OK && ip)
                snprintf(e->local_ip, sizeof(e->local_ip), "%s", ip);
            *resp = cJSON_Parse(b.p ? b.p : "");
            free(b.p);
            return *resp ? BT_OK : fail(e, BT_ERR_REMOTE, "etcd %s: unreadable answer", url);
        }
        if (cc == CURLE_OK) { /* an answer, but an error */
            reason(b.p, why, sizeof(why));
            if (!transient(code)) {
                free(b.p);
                return fail(e, BT_ERR_REMOTE, "etcd %s: HTTP %ld%s", url, code, why);
            }
            busy = code;
            snprintf(busy_url, sizeof(busy_url), "%s", url);
        }
        free(b.p);
        e->cur = (e->cur + 1) % e->neps;
        if (t % e->neps != 0)
            continue;
        if (!busy) /* a round in which no member answered */
            break;
        if (bt__now_ns() >= dl || (e->stop && *e->stop))
            return fail(e, BT_ERR_REMOTE,
                        "etcd %s: HTTP %ld%s, still after %.1f s of retries "
                        "(BATON_HEARTBEAT_TIMEOUT); hint: is the etcd cluster electing a leader, "
                        "or is its disk too slow (etcd's log: 'slow fdatasync')?",
                        busy_url, busy, why, (double)(bt__now_ns() - t0) / 1e9);
        busy = 0;
        usleep(100 * 1000);
    }
    return fail(e, BT_ERR_REMOTE,
                "etcd at %s: %s%s; hint: is etcd running and reachable there? (--rdzv-endpoint)",
                endpoints(e, eps, sizeof(eps)), curl_easy_strerror(cc),
                cc == CURLE_OPERATION_TIMEDOUT ? " (no answer in time: a stopped, overloaded or "
                                                 "unreachable etcd?)"
                                               : "");
}

static int full_key(struct etcd *e, const char *key, char *out)
{
    if ((size_t)snprintf(out, KEY_MAX, "%s%s", e->prefix, key) >= KEY_MAX)
        return fail(e, BT_ERR_INVALID_ARG, "etcd: key too long: %s", key);
    return BT_OK;
}

/* ---- the lease ---- */

/* One renewal of lease id on k: 1 alive, 0 expired (etcd gave no TTL), -1 no answer. */
static int renew(struct etcd *k, int64_t id)
{
    char body[64];
    cJSON *r;
    k->broken = 0; /* the keeper's handle serves one request at a time; each starts afresh */
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", id);
    if (post(k, "/v3/lease/keepalive", body, &r) != BT_OK) {
        BT_INFO(LAUNCH, "etcd: renewing the lease: %s", k->err.msg);
        return -1;
    }
    int64_t ttl = num(cJSON_GetObjectItemCaseSensitive(r, "result"), "TTL");
    cJSON_Delete(r);
    return ttl > 0;
}

#define KEEPER_TICK_US (50 * 1000)

/* The keeper: renews the lease every quarter of its TTL (every tick after a renewal that got
 * no answer) until the last handle closes or etcd says the lease is gone. */
static void *keeper_main(void *arg)
{
    struct etcd *k = arg;
    int64_t next = 0;
    pthread_mutex_lock(&lease.mu);
    while (!__atomic_load_n(&lease.stop, __ATOMIC_RELAXED) && !lease.expired) {
        int64_t id = lease.id, every = (int64_t)(lease.ttl * 0.25e9);
        pthread_mutex_unlock(&lease.mu);
        usleep(KEEPER_TICK_US);
        int alive = 1;
        if (bt__now_ns() >= next && (alive = renew(k, id)) != 0)
            next = bt__now_ns() + (alive > 0 ? every : 0);
        pthread_mutex_lock(&lease.mu);
        if (!alive && id == lease.id)
            lease.expired = 1;
    }
    pthread_mutex_unlock(&lease.mu);
    curl_easy_cleanup(k->c);
    free(k);
    return NULL;
}

/* The keeper's requests end when it is asked to stop (the launcher closes its last handle). */
static int keeper_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)arg, (void)a, (void)b, (void)c, (void)d;
    return __atomic_load_n(&lease.stop, __ATOMIC_RELAXED);
}

/* A handle of its own for the keeper: e's endpoints, a fresh connection. */
static struct etcd *keeper_handle(const struct etcd *e, double ttl)
{
    struct etcd *k = calloc(1, sizeof(*k));
    if (!k || !(k->c = handle_new()))
        return free(k), NULL;
    memcpy(k->eps, e->eps, sizeof(k->eps));
    k->neps = e->neps;
    k->cur = e->cur;
    k->io_s = ttl / 2; /* time for a second try before the lease runs out */
    k->stop = &lease.stop;
    curl_easy_setopt(k->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k->c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(k->c, CURLOPT_XFERINFOFUNCTION, keeper_progress);
    curl_easy_setopt(k->c, CURLOPT_CONNECTTIMEOUT_MS, (long)(k->io_s * 1000));
    return k;
}

/* Grants the lease and starts its keeper; lease.mu held. */
static int lease_grant(struct etcd *e, double ttl)
{
    char body[64];
    cJSON *r;
    snprintf(body, sizeof(body), "{\"TTL\":\"%d\"}", (int)(ttl + 0.999));
    BT_CHECK(post(e, "/v3/lease/grant", body, &r));
    int64_t id = strtoll(str(r, "ID") ? str(r, "ID") : "0", NULL, 10);
    cJSON_Delete(r);
    if (!id)
        return fail(e, BT_ERR_REMOTE, "etcd: lease grant gave no ID");
    struct etcd *k = keeper_handle(e, ttl);
    lease.id = id;
    lease.ttl = ttl;
    lease.expired = 0;
    lease.stop = 0;
    if (!k || pthread_create(&lease.keeper, NULL, keeper_main, k) != 0) {
        if (k)
            curl_easy_cleanup(k->c);
        free(k);
        lease.id = 0;
        return fail(e, BT_ERR_SYSTEM, "etcd: cannot start the thread that renews the lease");
    }
    lease.keeping = 1;
    return BT_OK;
}

/* Fails once etcd said this launcher's lease is gone: it was declared lost. */
static int beat(struct etcd *e)
{
    int rc = BT_OK;
    pthread_mutex_lock(&lease.mu);
    if (lease.expired)
        rc = fail(e, BT_ERR_REMOTE,
                  "etcd: this launcher's lease expired (it was silent for more than %g s: "
                  "stopped, or cut off?), so the others declared it lost",
                  lease.ttl);
    pthread_mutex_unlock(&lease.mu);
    return rc;
}

/* ---- key-value calls ---- */

/* One key: *val (malloc'd) and 1 when it exists, 0 when not; *rev the store's revision. */
static int range1(struct etcd *e, const char *key, char **val, size_t *len, int64_t *rev)
{
    char fk[KEY_MAX], *k64, *body;
    cJSON *r;
    *val = NULL;
    BT_CHECK(full_key(e, key, fk));
    if (!(k64 = b64(fk, strlen(fk))) || asprintf(&body, "{\"key\":\"%s\"}", k64) < 0)
        return free(k64), fail(e, BT_ERR_SYSTEM, "out of memory");
    free(k64);
    int rc = post(e, "/v3/kv/range", body, &r);
    free(body);
    if (rc != BT_OK)
        return -1;
    *rev = num(cJSON_GetObjectItemCaseSensitive(r, "header"), "revision");
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(r, "kvs");
    const cJSON *kv = cJSON_IsArray(kvs) ? cJSON_GetArrayItem(kvs, 0) : NULL;
    if (kv)
        *val = unb64(str(kv, "value"), len);
    cJSON_Delete(r);
    return kv ? 1 : 0;
}

static int e_set(void *impl, const char *key, const void *val, size_t len)
{
    struct etcd *e = impl;
    char fk[KEY_MAX], *k64, *v64, *body = NULL;
    cJSON *r;
    BT_CHECK(beat(e));
    BT_CHECK(full_key(e, key, fk));
    k64 = b64(fk, strlen(fk)), v64 = b64(val, len);
    if (!k64 || !v64 || asprintf(&body, "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64) < 0)
        body = NULL;
    free(k64), free(v64);
    if (!body)
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    int rc = post(e, "/v3/kv/put", body, &r);
    free(body);
    if (rc == BT_OK)
        cJSON_Delete(r);
    return rc;
}

/* Transaction: if key's create revision (expect NULL: missing) or value equals, put desired
 * (with lease when lid); *ok whether it did, *actual (malloc'd) the value after. */
static int txn(struct etcd *e, const char *key, const char *cmp, const void *desired, size_t dlen,
               int64_t lid, int *ok, char **actual, size_t *alen)
{
    char fk[KEY_MAX], lease_s[48] = "", *k64, *v64, *body = NULL;
    cJSON *r;
    BT_CHECK(full_key(e, key, fk));
    if (lid)
        snprintf(lease_s, sizeof(lease_s), ",\"lease\":\"%" PRId64 "\"", lid);
    k64 = b64(fk, strlen(fk)), v64 = b64(desired, dlen);
    if (!k64 || !v64 ||
        asprintf(&body,
                 "{\"compare\":[{\"key\":\"%s\",%s}],\"success\":[{\"request_put\":{\"key\":\"%s\","
                 "\"value\":\"%s\"%s}}],\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
                 k64, cmp, k64, v64, lease_s, k64) < 0)
        body = NULL;
    free(k64), free(v64);
    if (!body)
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    int rc = post(e, "/v3/kv/txn", body, &r);
    free(body);
    if (rc != BT_OK)
        return rc;
    *ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "succeeded"));
    if (actual && *ok) {
        *actual = malloc(dlen + 1);
        if (*actual)
            memcpy(*actual, desired, dlen), (*actual)[dlen] = '\0';
        *alen = dlen;
    } else if (actual) {
        const cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
        const cJSON *rr = cJSON_GetObjectItemCaseSensitive(rs, "response_range");
        const cJSON *kv = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rr, "kvs"), 0);
        *actual = unb64(kv ? str(kv, "value") : "", alen);
    }
    cJSON_Delete(r);
    return actual && !*actual ? fail(e, BT_ERR_SYSTEM, "out of memory") : BT_OK;
}

#define CMP_MISSING "\"result\":\"EQUAL\",\"target\":\"CREATE\",\"create_revision\":\"0\""
#define CMP_ANY "\"result\":\"GREATER\",\"target\":\"CREATE\",\"create_revision\":\"-1\""

/* The compare of a transaction: the key holds v (n bytes), or is missing (n 0). malloc'd. */
static char *cmp_value(const void *v, size_t n)
{
    char *v64, *cmp = NULL;
    if (n == 0)
        return strdup(CMP_MISSING);
    if ((v64 = b64(v, n)) &&
        asprintf(&cmp, "\"result\":\"EQUAL\",\"target\":\"VALUE\",\"value\":\"%s\"", v64) < 0)
        cmp = NULL;
    free(v64);
    return cmp;
}

static int e_compare_set(void *impl, const char *key, const void *expected, size_t elen,
                         const void *desired, size_t dlen, void **actual, size_t *alen)
{
    struct etcd *e = impl;
    char *cmp, *act = NULL;
    size_t al = 0;
    int ok = 0;
    BT_CHECK(beat(e));
    if (!(cmp = cmp_value(expected, elen)))
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    int rc = txn(e, key, cmp, desired, dlen, 0, &ok, &act, &al);
    free(cmp);
    if (actual)
        *actual = act, *alen = al;
    else
        free(act);
    return rc;
}

/* Read, then compare-and-swap the new count; again when another launcher was faster. */
static int e_add(void *impl, const char *key, int64_t delta, int64_t *result)
{
    struct etcd *e = impl;
    BT_CHECK(beat(e));
    for (int tries = 0; tries < 1000; tries++) {
        char *v = NULL, nv[32], *cmp;
        size_t len = 0;
        int64_t rev;
        int ok = 0, have = range1(e, key, &v, &len, &rev);
        if (have < 0)
            return e->err.code;
        int64_t cur = have ? strtoll(v, NULL, 10) : 0;
        cmp = cmp_value(v, have ? len : 0);
        free(v);
        if (delta == 0 || !cmp) {
            free(cmp);
            *result = cur;
            return cmp || delta == 0 ? BT_OK : fail(e, BT_ERR_SYSTEM, "out of memory");
        }
        snprintf(nv, sizeof(nv), "%" PRId64, cur + delta);
        int rc = txn(e, key, cmp, nv, strlen(nv), 0, &ok, NULL, NULL);
        free(cmp);
        BT_CHECK(rc);
        if (ok)
            return *result = cur + delta, BT_OK;
    }
    return fail(e, BT_ERR_REMOTE, "etcd: ADD %s kept losing its compare-and-swap", key);
}

/* ---- watches ---- */

struct watch {
    struct etcd *e;
    const char *key; /* full key waited for */
    struct buf b;
    size_t used;
    char *val; /* the value once put */
    size_t vlen;
    int found, again; /* again: etcd cancelled the watch (its start was compacted away) */
    cJSON *wills;     /* deleted wills' values (base64), fired once the transfer ends (the handle
                         is busy inside it): the first one ends it */
};

/* A deleted will (its launcher's lease expired): posts its value unless the key exists. */
static void fire_will(struct etcd *e, const char *prev64)
{
    size_t n = 0;
    char *w = unb64(prev64, &n), *nl = w ? memchr(w, '\n', n) : NULL;
    if (nl && nl[1]) {
        int ok = 0;
        *nl = '\0';
        txn(e, w, CMP_MISSING, nl + 1, n - (size_t)(nl + 1 - w), 0, &ok, NULL, NULL);
        if (ok)
            BT_INFO(LAUNCH, "etcd: a launcher's lease expired; posted its last will at %s", w);
    }
    free(w);
}

static void on_event(struct watch *w, const cJSON *ev)
{
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(ev, "kv");
    const char *type = str(ev, "type");
    size_t kl = 0;
    char *k = unb64(str(kv, "key"), &kl), wills[KEY_MAX];
    int64_t mod = num(kv, "mod_revision");
    if (mod + 1 > w->e->next_rev)
        w->e->next_rev = mod + 1;
    snprintf(wills, sizeof(wills), "%sw/", w->e->prefix);
    const char *prev = str(cJSON_GetObjectItemCaseSensitive(ev, "prev_kv"), "value");
    if (k && type && !strcmp(type, "DELETE") && !strncmp(k, wills, strlen(wills)) && prev &&
        (w->wills || (w->wills = cJSON_CreateArray())))
        cJSON_AddItemToArray(w->wills, cJSON_CreateString(prev));
    else if (k && !w->found && (!type || strcmp(type, "DELETE")) && !strcmp(k, w->key)) {
        w->val = unb64(str(kv, "value"), &w->vlen);
        w->found = w->val != NULL;
    }
    free(k);
}

static size_t on_watch(char *p, size_t sz, size_t nm, void *arg)
{
    struct watch *w = arg;
    if (on_data(p, sz, nm, &w->b) != sz * nm)
        return 0;
    for (;;) {
        const char *end = NULL;
        const char *s = w->b.p + w->used;
        while (*s == '\n' || *s == ' ' || *s == '\r')
            s++;
        if (!*s)
            break;
        cJSON *m = cJSON_ParseWithOpts(s, &end, 0);
        if (!m)
            break; /* incomplete: wait for more */
        w->used = (size_t)(end - w->b.p);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(m, "result");
        const cJSON *evs = cJSON_GetObjectItemCaseSensitive(res, "events"), *ev;
        int64_t compacted = num(res, "compact_revision");
        cJSON_ArrayForEach(ev, evs) on_event(w, ev);
        cJSON_Delete(m);
        if (compacted > 0) { /* etcd cancelled it: history before that is gone */
            w->e->next_rev = compacted;
            w->again = 1;
        }
    }
    /* 0 ends the transfer once the key came, or a will is to be fired (a lost launcher's
     * outcome is posted at once, not when this watch would have timed out), or etcd cancelled
     * the watch */
    return w->found || w->wills || w->again ? 0 : sz * nm;
}

/* watch()'s other answers: BUSY, a member answered 5xx or 429 (the next one is asked); AGAIN,
 * it ended to fire a will, or etcd cancelled it (the key is looked for again) */
#define WATCH_BUSY 1
#define WATCH_AGAIN 2

/* Watches the job's prefix from rev until w->key is put or timeout_s passes. */
static int watch(struct etcd *e, struct watch *w, int64_t rev, double timeout_s)
{
    char end[KEY_MAX], *p64 = b64(e->prefix, strlen(e->prefix)), *e64, *body = NULL, url[600];
    snprintf(end, sizeof(end), "%s", e->prefix);
    end[strlen(end) - 1]++; /* "/baton/job/" -> "/baton/job0": the prefix's range end */
    e64 = b64(end, strlen(end));
    if (!p64 || !e64 ||
        asprintf(&body,
                 "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\",\"start_revision\":"
                 "\"%" PRId64 "\",\"prev_kv\":true}}",
                 p64, e64, rev) < 0)
        body = NULL;
    free(p64), free(e64);
    if (!body)
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    snprintf(url, sizeof(url), "%s/v3/watch", e->eps[e->cur]);
    curl_easy_setopt(e->c, CURLOPT_URL, url);
    curl_easy_setopt(e->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e->c, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(e->c, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(e->c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000) + 1);
    CURLcode cc = curl_easy_perform(e->c);
    long code = 0;
    char why[256] = "";
    curl_easy_getinfo(e->c, CURLINFO_RESPONSE_CODE, &code);
    if (code && code != 200)
        reason(w->b.p, why, sizeof(why));
    free(body);
    free(w->b.p);
    const cJSON *one;
    int again = w->wills != NULL || w->again;
    cJSON_ArrayForEach(one, w->wills) fire_will(e, one->valuestring);
    cJSON_Delete(w->wills);
    if (w->found)
        return BT_OK;
    if (again && (!code || code == 200))
        return WATCH_AGAIN;
    if (code && code != 200) {
        e->cur = (e->cur + 1) % e->neps;
        if (transient(code))
            return WATCH_BUSY;
        return fail(e, BT_ERR_REMOTE, "etcd %s: watch: HTTP %ld%s", url, code, why);
    }
    if (cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_OK)
        return fail(e, BT_ERR_TIMEOUT, "etcd: key %s not set within %g s", w->key, timeout_s);
    e->cur = (e->cur + 1) % e->neps; /* the next call tries another member */
    return fail(e, BT_ERR_REMOTE, "etcd %s: watch: %s", url, curl_easy_strerror(cc));
}

/* A range, then a watch until the key is put; a member that fails mid-watch (killed, cut
 * off) is left for the next one, within the same timeout. */
static int e_get(void *impl, const char *key, void **val, size_t *len, double timeout_s)
{
    struct etcd *e = impl;
    char fk[KEY_MAX], *v = NULL;
    int64_t rev = 0, dl = bt__deadline_in(timeout_s);
    *val = NULL, *len = 0;
    BT_CHECK(beat(e));
    BT_CHECK(full_key(e, key, fk));
    for (int t = 0;; t++) {
        int have = range1(e, key, &v, len, &rev);
        if (have < 0)
            return e->err.code;
        if (have)
            return *val = v, BT_OK;
        double left = (double)(dl - bt__now_ns()) / 1e9;
        if (left <= 0)
            return fail(e, BT_ERR_TIMEOUT, "etcd: key %s not set", key);
        struct watch w = {.e = e, .key = fk};
        if (!e->next_rev || e->next_rev > rev + 1)
            e->next_rev = rev + 1;
        int64_t from = e->next_rev;
        int rc = watch(e, &w, from, left);
        if (rc == WATCH_AGAIN) { /* a range again at once: a will may have set the key */
            t--;
            continue;
        }
        if (rc == WATCH_BUSY) { /* a range again, 0.1 s later, within the same timeout */
            double nap = (double)(dl - bt__now_ns()) / 1e9;
            usleep(nap <= 0 ? 0 : nap < 0.1 ? (useconds_t)(nap * 1e6) : 100 * 1000);
            t--;
            continue;
        }
        if (rc == BT_OK)
            *val = w.val, *len = w.vlen;
        if (rc != BT_ERR_REMOTE || t + 1 >= e->neps)
            return rc;
        BT_INFO(LAUNCH, "%s; trying the next etcd member", e->err.msg);
        e->broken = 0;
    }
}

static int e_multi_get(void *impl, const char *const *keys, int nkeys, void **vals, size_t *lens,
                       double timeout_s)
{
    int64_t dl = bt__deadline_in(timeout_s);
    for (int i = 0; i < nkeys; i++) {
        double left = (double)(dl - bt__now_ns()) / 1e9;
        int rc = e_get(impl, keys[i], &vals[i], &lens[i], left > 0 ? left : 0);
        if (rc != BT_OK) {
            for (int j = 0; j < i; j++)
                free(vals[j]), vals[j] = NULL;
            return rc;
        }
    }
    return BT_OK;
}

static int e_wait(void *impl, const char *const *keys, int nkeys, double timeout_s)
{
    void **v = calloc((size_t)nkeys + 1, sizeof(void *));
    size_t *l = calloc((size_t)nkeys + 1, sizeof(size_t));
    int rc = v && l ? e_multi_get(impl, keys, nkeys, v, l, timeout_s) : BT_ERR_SYSTEM;
    for (int i = 0; rc == BT_OK && i < nkeys; i++)
        free(v[i]);
    free(v), free(l);
    return rc;
}

static int e_del(void *impl, const char *key, int *deleted)
{
    struct etcd *e = impl;
    char fk[KEY_MAX], *k64, *body = NULL;
    cJSON *r;
    BT_CHECK(full_key(e, key, fk));
    if (!(k64 = b64(fk, strlen(fk))) || asprintf(&body, "{\"key\":\"%s\"}", k64) < 0)
        body = NULL;
    free(k64);
    if (!body)
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    int rc = post(e, "/v3/kv/deleterange", body, &r);
    free(body);
    if (rc == BT_OK) {
        if (deleted)
            *deleted = num(r, "deleted") > 0;
        cJSON_Delete(r);
    }
    return rc;
}

static int e_heartbeat(void *impl, double ttl_s)
{
    struct etcd *e = impl;
    int rc = BT_OK;
    if (ttl_s <= 0)
        return BT_OK; /* the lease is the launcher's: it lives while any handle works */
    pthread_mutex_lock(&lease.mu);
    if (!lease.id && !lease.expired)
        rc = lease_grant(e, ttl_s);
    pthread_mutex_unlock(&lease.mu);
    return rc == BT_OK ? beat(e) : rc;
}

/* One will per store key (WILLS_MAX of them, as baton's store allows), each an etcd key
 * under the launcher's lease; an empty value cancels them all. */
static int e_last_will(void *impl, const char *key, const void *val, size_t len)
{
    struct etcd *e = impl;
    static int seq;
    if (!len) {
        int rc = BT_OK;
        for (int i = 0; i < WILLS_MAX && rc == BT_OK; i++)
            if (e->will[i][0] && e->will_key[i][0]) {
                int ok = 0;
                rc = txn(e, e->will[i], CMP_ANY, "", 0, lease.id, &ok, NULL, NULL);
                e->will_key[i][0] = '\0';
            }
        return rc;
    }
    int slot = -1;
    for (int i = 0; i < WILLS_MAX && slot < 0; i++)
        if (e->will_key[i][0] && !strcmp(e->will_key[i], key))
            slot = i;
    for (int i = 0; i < WILLS_MAX && slot < 0; i++)
        if (!e->will_key[i][0])
            slot = i;
    if (slot < 0)
        return fail(e, BT_ERR_INVALID_USAGE, "at most %d last wills per connection", WILLS_MAX);
    char *w = malloc(strlen(key) + len + 2);
    int ok = 0;
    if (!w)
        return fail(e, BT_ERR_SYSTEM, "out of memory");
    if (!e->will[slot][0])
        snprintf(e->will[slot], sizeof(e->will[slot]), "w/%d.%d", (int)getpid(),
                 __sync_add_and_fetch(&seq, 1));
    int n = sprintf(w, "%s\n", key);
    memcpy(w + n, val, len);
    int rc = e_heartbeat(e, bt__run_heartbeat_timeout());
    if (rc == BT_OK)
        rc = txn(e, e->will[slot], CMP_ANY, w, (size_t)n + len, lease.id, &ok, NULL, NULL);
    if (rc == BT_OK)
        snprintf(e->will_key[slot], sizeof(e->will_key[slot]), "%s", key);
    free(w);
    return rc;
}

static int e_local_addr(void *impl, char *out, size_t n)
{
    struct etcd *e = impl;
    snprintf(out, n, "%s", e->local_ip);
    return out[0] ? 0 : -1;
}

static void e_set_io_timeout(void *impl, double io_s)
{
    struct etcd *e = impl;
    e->io_s = io_s > 0 ? io_s : 5.0;
}

static int e_broken(void *impl)
{
    return ((struct etcd *)impl)->broken;
}

static const char *e_error(void *impl)
{
    return ((struct etcd *)impl)->err.msg;
}

static void e_close(void *impl, int goodbye)
{
    struct etcd *e = impl;
    if (goodbye && !e->broken)
        e_last_will(e, "x", "", 0);
    curl_easy_cleanup(e->c);
    free(e);
    pthread_mutex_lock(&lease.mu);
    if (--handles == 0 && lease.keeping) { /* the launcher's last handle: its keeper ends */
        __atomic_store_n(&lease.stop, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&lease.mu);
        pthread_join(lease.keeper, NULL);
        pthread_mutex_lock(&lease.mu);
        lease.keeping = 0;
    }
    if (handles == 0) { /* a reconnect starts a new lease */
        lease.id = 0;
        lease.expired = 0;
    }
    pthread_mutex_unlock(&lease.mu);
}

static const struct bt__store_ops etcd_ops = {
    e_set,        e_get,       e_add,       e_compare_set,    e_wait,   e_multi_get, e_del,
    e_local_addr, e_last_will, e_heartbeat, e_set_io_timeout, e_broken, e_error,     e_close,
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int bt__run_etcd_parse(const char *list, char eps[][BT_SPEC_HOST_MAX + 16], int max,
                       struct bt__err *err);

int bt__run_etcd_connect(const char *list, const char *job, double timeout_s,
                         struct bt__store **out, struct bt__err *err)
{
    struct etcd *e = calloc(1, sizeof(*e));
    *out = NULL;
    if (!e)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    pthread_once(&curl_once, curl_init);
    if ((e->neps = bt__run_etcd_parse(list, e->eps, MAX_EP, err)) <= 0 || !(e->c = handle_new()))
        return free(e), bt__err_set(err, BT_ERR_INVALID_USAGE,
                                    "--rdzv-endpoint '%s': want HOST:PORT[,HOST:PORT...]", list);
    snprintf(e->prefix, sizeof(e->prefix), "/baton/%.140s/", job);
    e->io_s = 5.0;
    curl_easy_setopt(e->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    pthread_mutex_lock(&lease.mu);
    handles++;
    pthread_mutex_unlock(&lease.mu);
    /* Reachable? Retried (a member starting, a name not resolvable yet) up to timeout_s. */
    int64_t dl = bt__deadline_in(timeout_s), next = 0;
    for (int attempt = 1;; attempt++) {
        char *v = NULL, eps[512];
        size_t len;
        int64_t rev;
        e->broken = 0;
        if (range1(e, "l/job", &v, &len, &rev) >= 0) {
            free(v);
            break;
        }
        if (bt__now_ns() >= dl || bt__run_abort) {
            bt__err_set(err, BT_ERR_TIMEOUT, "gave up after %.0f s (--join-timeout): %s", timeout_s,
                        e->err.msg);
            e_close(e, 0);
            return err->code;
        }
        if (bt__now_ns() >= next) {
            fprintf(stderr, "baton: waiting for etcd at %s (attempt %d: %s)\n",
                    endpoints(e, eps, sizeof(eps)), attempt, e->err.msg);
            next = bt__deadline_in(5.0);
        }
        usleep(200 * 1000);
    }
    e->broken = 0;
    bt__err_clear(&e->err);
    if (bt__store_wrap(&etcd_ops, e, out) != BT_OK) {
        e_close(e, 0);
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    }
    return BT_OK;
}

#else /* no libcurl or cJSON */

int bt__run_etcd_connect(const char *list, const char *job, double timeout_s,
                         struct bt__store **out, struct bt__err *err)
{
    (void)list, (void)job, (void)timeout_s;
    *out = NULL;
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "--rdzv-backend etcd: this baton was built without libcurl and cJSON; "
                       "install libcurl4-openssl-dev and libcjson-dev (make deps) and rebuild");
}

#endif

/* "h1:p1,h2:p2" into "http://h1:p1", ...; returns how many, or -1 (err set). */
int bt__run_etcd_parse(const char *list, char eps[][BT_SPEC_HOST_MAX + 16], int max,
                       struct bt__err *err)
{
    int n = 0;
    const char *p = list;
    while (p && *p) {
        size_t l = strcspn(p, ",");
        char one[BT_SPEC_HOST_MAX + 8], host[BT_SPEC_HOST_MAX];
        int port = 0;
        snprintf(one, sizeof(one), "%.*s", (int)l, p);
        if (n >= max || bt__parse_endpoint(one, host, sizeof(host), &port) != 0 || port <= 0)
            return bt__err_set(err, BT_ERR_INVALID_USAGE,
                               "--rdzv-endpoint '%s': '%s' is not HOST:PORT (at most %d)", list,
                               one, max),
                   -1;
        snprintf(eps[n++], BT_SPEC_HOST_MAX + 16,
                 strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
        p += l + (p[l] == ',');
    }
    return n;
}
