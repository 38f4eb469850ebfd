/* run_rdzv.c: how the launchers of a job find each other and agree on how it ended.
 *
 * Node 0's launcher hosts the store (rendezvous/store.h) on a background thread; every
 * launcher, node 0's too, has two clients of it: a main one (requests of the main loop; it
 * carries the last will) and a watcher (a thread blocked in GET of the outcome). Both are
 * channels of the one connection that its node's relay holds for the workers too (below:
 * one connection per node), or connections of their own with BATON_RDZV_RELAY_ON=0.
 * Keys of generation g (the restart count) live under "l/<g>/" (workers use "w/<g>/"):
 *
 *   l/job            "G NNODES JOB_ID": node 0 sets it before each generation; the others
 *                    compare it with their own before they claim (admission, below)
 *   l/refused        counter of refused launchers; l/refused/<k> the k-th one's line, which
 *                    node 0 prints
 *   l/<g>/node/<R>   "NPROC PID MASTER_PORT HOST": COMPARE_SET from empty claims node rank R;
 *                    a second claimant is refused, naming the first one's host and pid
 *   l/<g>/joined     counter of launchers that claimed a rank (for progress lines)
 *   l/<g>/outcome    "K STATUS\tLINE" (see run.h): COMPARE_SET from empty, first one wins.
 *                    Each launcher's last will posts "L 129\tnode R ... lost contact" there,
 *                    on both connections; the watcher connection also holds a heartbeat lease
 *                    (HEARTBEAT, BATON_HEARTBEAT_TIMEOUT): its GET every second is the beat, so
 *                    a launcher that is alive but frozen loses its lease and its will fires
 *   l/<g>/done       counter of nodes whose workers all exited 0; the last one posts S
 *   l/<g>/exited     counter of launchers about to exit; the last one sets l/<g>/allexited,
 *                    which node 0 waits for (a few seconds at most) before the store goes
 *
 * Global ranks are prefix sums of the nodes' NPROC in node-rank order, so nodes may run
 * different numbers of workers. Roles that are not ranks (TF ps, evaluator) do not join.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "launcher/run.h"

#define EXIT_BARRIER_S 3.0 /* node 0 keeps the store up this long for the others at most */
#define PROGRESS_EVERY_S 5.0
#define HEARTBEAT_EVERY_S 1.0 /* the watcher's GET timeout: one frame (a beat) per second */
#define ELASTIC_BEAT_S 0.25   /* elastic: the watcher also looks for joiners this often */

/* Seconds of silence after which the store declares a launcher lost (its lease), and after
 * which a launcher declares the store lost (no answer to a request). */
BT_PARAM_DBL(heartbeat_timeout_s, "BATON_HEARTBEAT_TIMEOUT", 5.0)

double bt__run_heartbeat_timeout(void)
{
    double t = bt__param_heartbeat_timeout_s();
    return t >= 2 * HEARTBEAT_EVERY_S ? t : 2 * HEARTBEAT_EVERY_S;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* Reads the job secret from path into out: the file's bytes less trailing whitespace. A file
 * that group or others may read is refused (a secret in a file is only as private as its mode:
 * chmod 600; in Kubernetes, a Secret volume with defaultMode 0400). Returns 0, or -1 with one
 * line in err. */
static int token_file(const char *path, const char *how, char *out, size_t n, struct bt__err *err)
{
    struct stat st;
    FILE *f = fopen(path, "re");
    if (!f)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s %s: %s", how, path, strerror(errno)), -1;
    int rc = -1;
    size_t len = 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        bt__err_set(err, BT_ERR_INVALID_USAGE, "%s %s: not a regular file", how, path);
    else if (st.st_mode & 077)
        bt__err_set(err, BT_ERR_INVALID_USAGE,
                    "%s %s: readable by others (mode %03o); hint: chmod 600 %s (in Kubernetes: "
                    "defaultMode: 0400 on the Secret volume)",
                    how, path, (unsigned)(st.st_mode & 0777), path);
    else if ((len = fread(out, 1, n - 1, f)) == n - 1 && fgetc(f) != EOF)
        bt__err_set(err, BT_ERR_INVALID_USAGE, "%s %s: longer than %zu bytes", how, path, n - 2);
    else if (ferror(f))
        bt__err_set(err, BT_ERR_INVALID_USAGE, "%s %s: %s", how, path, strerror(errno));
    else
        rc = 0;
    fclose(f);
    out[rc == 0 ? len : 0] = '\0';
    while (rc == 0 && len > 0 && strchr(" \t\r\n", out[len - 1]))
        out[--len] = '\0';
    if (rc == 0 && (len == 0 || memchr(out, '\0', len)))
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s %s: %s", how, path,
                           len ? "holds a NUL byte" : "empty (no secret in it)"),
               -1;
    return rc;
}

/* The job secret: --token-file, else BATON_TOKEN, else BATON_TOKEN_FILE; else SHA-256("baton:"
 * job id) when several nodes (or a TFJob's ps pods) must agree without talking (guessable: a
 * WARN says so), else (one node) 128 random bits. Also settles the job id workers see.
 * Returns 0, 2 (a token file that cannot be used: one line in err) or 1 (getrandom). */
int bt__run_token(struct bt__run *r, struct bt__err *err)
{
    const char *env = getenv("BATON_TOKEN"), *file = getenv("BATON_TOKEN_FILE");
    unsigned char d[SHA256_DIGEST_LENGTH];
    snprintf(r->job_id, sizeof(r->job_id), "%s", r->spec.job_id[0] ? r->spec.job_id : "job");
    if (r->o.token_file || (!(env && *env) && file && *file)) {
        int flag = r->o.token_file != NULL;
        if (token_file(flag ? r->o.token_file : file, flag ? "--token-file" : "BATON_TOKEN_FILE",
                       r->token, sizeof(r->token), err) != 0)
            return 2;
    } else if (env && *env) {
        snprintf(r->token, sizeof(r->token), "%s", env);
    } else if (r->spec.nnodes > 1 || r->spec.node_rank > 0 || r->spec.nps > 0) {
        char seed[sizeof(r->job_id) + 8];
        snprintf(seed, sizeof(seed), "baton:%s", r->job_id);
        SHA256((const unsigned char *)seed, strlen(seed), d);
        hex(d, sizeof(d), r->token);
        fprintf(stderr,
                "baton: WARN: job '%s' has no secret (no --token-file, BATON_TOKEN_FILE or "
                "BATON_TOKEN): its token derives from the job name, so anyone who can reach the "
                "store's port and knows the job name can join or end this job; give every node "
                "the same secret with --token-file or BATON_TOKEN\n",
                r->job_id);
    } else {
        if (getrandom(d, 16, 0) != 16)
            return bt__err_set(err, BT_ERR_SYSTEM, "getrandom: %s", strerror(errno)), 1;
        hex(d, 16, r->token);
    }
    return 0;
}

int bt__run_outcome_parse(const char *s, struct bt__outcome *o)
{
    int st, off = 0;
    if (!s || !strchr("SFHLMT", s[0]) || !s[0] || sscanf(s + 1, " %d%n", &st, &off) != 1 ||
        s[1 + off] != '\t')
        return -1;
    o->kind = s[0];
    o->status = st;
    snprintf(o->line, sizeof(o->line), "%s", s + 2 + off);
    return 0;
}

/* "node 0 (pod mnist-master-0)", or "node 0", into out. */
static void node0(const struct bt__run *r, char *out, size_t n)
{
    char pod[BT_SPEC_HOST_MAX];
    bt__run_node_name(&r->spec, 0, pod, sizeof(pod));
    snprintf(out, n, "node 0%s%s%s", pod[0] ? " (pod " : "", pod, pod[0] ? ")" : "");
}

static void progress(void *arg, int attempt, double waited_s, const char *why)
{
    const struct bt__run *r = arg;
    char who[BT_SPEC_HOST_MAX + 16];
    node0(r, who, sizeof(who));
    fprintf(stderr,
            "baton: waiting for rendezvous at %s:%d (%.0f s, attempt %d: %s); %s, which hosts "
            "it, is not up yet: is its pod still Pending?\n",
            r->store_host, r->store_port, waited_s, attempt, why, who);
}

/* The store never answered: node 0 is the node missing. A retryable end (BT_ERR_TIMEOUT). */
static int node0_missing(struct bt__run *r, struct bt__err *err)
{
    char why[BT__ERR_MSG_MAX], who[BT_SPEC_HOST_MAX + 16];
    snprintf(why, sizeof(why), "%s", err->msg);
    if (strstr(why, "; hint: "))
        *strstr(why, "; hint: ") = '\0'; /* the hint below replaces the generic one */
    node0(r, who, sizeof(who));
    return bt__err_reset(err, BT_ERR_TIMEOUT,
                         "gave up after %.0f s (--join-timeout) waiting for 1 of %d nodes: %s "
                         "never started the rendezvous store: %s; hint: its pod may be Pending "
                         "(unschedulable)",
                         r->o.join_timeout_s, r->spec.nnodes, who, why);
}

static void endpoint(char *out, size_t n, const char *host, int port)
{
    snprintf(out, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

int bt__run_connect(struct bt__run *r, double timeout_s, struct bt__store **out,
                    struct bt__err *err)
{
    if (r->etcd)
        return bt__run_etcd_connect(r->o.rdzv_endpoint, r->job_id, timeout_s, out, err);
    struct bt__connect_opts co = {
        .deadline_ns = bt__deadline_in(timeout_s),
        .what = "rendezvous store",
        .hint = r->spec.node_rank ? "is node 0's launcher running? (--join-timeout)" : NULL,
        .progress_every_s = PROGRESS_EVERY_S,
        .progress = progress,
        .progress_arg = r,
        .abort_flag = &bt__run_abort,
    };
    int rc = bt__store_connect(r->store_host, r->store_port, r->token, &co, out, err);
    if (rc == BT_ERR_AUTH) {
        char why[BT__ERR_MSG_MAX];
        snprintf(why, sizeof(why), "%s", err->msg);
        bt__err_reset(err, rc, "refused by the rendezvous store: %s", why);
    }
    return rc;
}

/* ---- one connection per node ----
 *
 * The store would otherwise hold three connections per node: the relay's (the workers'
 * channels), the main thread's and the watcher's. Instead the launcher makes one connection
 * itself (bt__run_connect: its retries, progress lines, refusals and hints), hands it to this
 * node's relay (bt__store_relay_adopt), and reaches the store as two channels of it over the
 * relay's Unix socket, with the job token: the main one with its last will, the watcher's with
 * its lease and wills. Each keeps its rules on the store, per channel: a frozen launcher
 * freezes its relay too, so the watcher channel's lease runs out and its wills fire; a dead
 * one closes the connection, which takes every channel's will along. After the store's host
 * is lost (elastic), the same again: a new connection replaces the old in the relay. */

/* A channel of the relay's connection for this launcher (job token); waits up to timeout_s. */
static int own_channel(struct bt__run *r, double timeout_s, struct bt__store **out,
                       struct bt__err *err)
{
    struct bt__connect_opts co = {.deadline_ns = bt__deadline_in(timeout_s),
                                  .what = "rendezvous store"};
    return bt__store_connect_relay(bt__store_relay_address(r->relay), r->store_host, r->store_port,
                                   r->token, &co, out, err);
}

/* Hands d to this node's relay (made now if need be) and opens st and wst through it. 1 when
 * there is no relay (d untouched), else BT_OK or an error (d is gone). */
static int relay_own(struct bt__run *r, struct bt__store *d, struct bt__err *err)
{
    struct bt__err e = {0};
    if (r->etcd || !bt__run_relay_on())
        return 1;
    if (!r->relay) {
        /* tried for this store, made or not: relay_ensure (run_spawn.c) does not try again */
        snprintf(r->relay_for, sizeof(r->relay_for), "%s", r->rdzv_env);
        if (bt__store_relay_create(r->store_host, r->store_port, r->token, &r->relay, &e) !=
            BT_OK) {
            fprintf(stderr, "baton: WARN: no store relay on this node (%s); connecting directly\n",
                    e.msg);
            return 1;
        }
    }
    if (bt__store_local_addr(d, r->self_addr, sizeof(r->self_addr)) != 0)
        r->self_addr[0] = '\0';
    bt__store_relay_adopt(r->relay, bt__store_detach(d));
    r->relay_own = 1;
    BT_CHECK(own_channel(r, 30.0, &r->st, err));
    return own_channel(r, 30.0, &r->wst, err);
}

int bt__run_store_open(struct bt__run *r, double timeout_s, struct bt__err *err)
{
    struct bt__store *d = NULL;
    BT_CHECK(bt__run_connect(r, timeout_s, &d, err));
    int rc = relay_own(r, d, err);
    if (rc != 1)
        return rc;
    r->relay_own = 0;
    r->st = d;
    return bt__run_connect(r, 30.0, &r->wst, err);
}

int bt__run_local_addr(struct bt__run *r, char *out, size_t n)
{
    if (!r->relay_own)
        return bt__store_local_addr(r->st, out, n);
    snprintf(out, n, "%s", r->self_addr);
    return r->self_addr[0] ? 0 : -1;
}

/* Where node 0's store listens: the first address the rendezvous host resolves to that is
 * this machine's (bind() to it with port 0 succeeds), as a numeric string in out; "" (every
 * address) when none is, e.g. a name that resolves to a load balancer or a Service's cluster
 * IP, and a loopback that no --rdzv asked for (the spec's default on node 0). One node:
 * loopback. Returns out. */
static const char *bind_host(const struct bt__spec *s, char *out, size_t n)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    snprintf(out, n, "%s", s->nnodes > 1 ? "" : "127.0.0.1");
    int by_default = !strcmp(s->rdzv_host, "127.0.0.1") && !strstr(s->from, "--rdzv");
    if (s->nnodes <= 1 || !s->rdzv_host[0] || by_default ||
        getaddrinfo(s->rdzv_host, NULL, &hints, &ai) != 0)
        return out;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
        if (fd >= 0) {
            ok = bind(fd, a->ai_addr, a->ai_addrlen) == 0; /* port 0 as resolved: any */
            close(fd);
        }
        if (ok &&
            getnameinfo(a->ai_addr, a->ai_addrlen, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) == 0)
            break;
        out[0] = '\0';
    }
    freeaddrinfo(ai);
    return out;
}

int bt__run_rdzv_open(struct bt__run *r, struct bt__err *err)
{
    const struct bt__spec *s = &r->spec;
    if (s->role == BT_ROLE_PS || s->role == BT_ROLE_EVALUATOR) {
        endpoint(r->rdzv_env, sizeof(r->rdzv_env), s->rdzv_host, s->rdzv_port);
        return BT_OK; /* not a rank: runs its program on its own, no store */
    }
    if (r->etcd) { /* no node hosts the launchers' store; each one hosts its workers' */
        BT_CHECK(bt__store_server_create(NULL, 0, r->token, &r->wsrv, &r->wport, err));
        if (bt__store_server_start(r->wsrv) != BT_OK)
            return bt__err_set(err, BT_ERR_SYSTEM, "cannot start the workers' store thread");
        snprintf(r->store_host, sizeof(r->store_host), "%s", r->o.rdzv_endpoint);
    } else if (s->node_rank == 0) {
        int port = s->rdzv_port > 0 ? s->rdzv_port : 0;
        char host[BT_SPEC_HOST_MAX];
        bind_host(s, host, sizeof(host));
        BT_CHECK(bt__store_server_create(host[0] ? host : NULL, port, r->token, &r->srv,
                                         &r->store_port, err));
        if (bt__store_server_start(r->srv) != BT_OK)
            return bt__err_set(err, BT_ERR_SYSTEM, "cannot start the rendezvous store thread");
        BT_INFO(LAUNCH, "the rendezvous store listens on %s:%d", host[0] ? host : "every address",
                r->store_port);
        snprintf(r->store_host, sizeof(r->store_host), "%s", host[0] ? host : "127.0.0.1");
    } else {
        snprintf(r->store_host, sizeof(r->store_host), "%s", s->rdzv_host);
        r->store_port = s->rdzv_port;
    }
    endpoint(r->rdzv_env, sizeof(r->rdzv_env), r->store_host, r->store_port);
    int rc = bt__run_store_open(r, r->o.join_timeout_s, err);
    if (rc == BT_ERR_TIMEOUT && !r->st && s->node_rank > 0 && !bt__run_abort && !r->etcd)
        return node0_missing(r, err);
    BT_CHECK(rc);
    BT_SYSCHECK(r->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd", err);
    return r->elastic ? bt__run_elastic_open(r, err) : BT_OK;
}

/* A port free right now on every address, that baton does not hold (for MASTER_PORT). */
/* A port free now, none of the last RECENT_PORTS this launcher handed out: the kernel may give
 * a port again once it is closed, and in place a generation's MASTER_PORT must be one that no
 * process group of an earlier generation can still be listening on. */
#define RECENT_PORTS 16
int bt__run_free_port(void)
{
    static int recent[RECENT_PORTS], next;
    int fd, port = 0, again = 1;
    struct bt__err e = {0};
    for (int t = 0; again && t < 32; t++) {
        if (bt__sock_listen(NULL, 0, 1, &fd, &port, &e) != BT_OK)
            return 0;
        close(fd);
        again = 0;
        for (int i = 0; i < RECENT_PORTS; i++)
            again |= recent[i] == port;
    }
    recent[next++ % RECENT_PORTS] = port;
    return port;
}

/* The last will of this launcher's connections: the outcome a lost launcher leaves. */
void bt__run_lost_will(const struct bt__run *r, char *key, size_t kn, char *will, size_t wn)
{
    snprintf(key, kn, "l/%d/outcome", r->restart);
    snprintf(will, wn,
             "L %d\tnode %d (host %s, pid %d) lost contact with the rendezvous store (its "
             "connection closed, or no heartbeat for %.0f s); hint: its launcher died, was "
             "stopped (SIGSTOP, a debugger, a frozen VM), or its network went away",
             BT_RUN_EXIT_LOST, r->node_id, r->host, (int)getpid(), bt__run_heartbeat_timeout());
}

/* Claims node rank R for this generation; a second claimant learns who holds it. */
static int claim(struct bt__run *r, struct bt__err *err)
{
    char key[64], rec[BT_SPEC_HOST_MAX + 64];
    void *actual = NULL;
    size_t alen = 0;
    int mport = r->spec.node_rank == 0 && r->spec.master_port <= 0 ? bt__run_free_port() : 0;
    snprintf(key, sizeof(key), "l/%d/node/%d", r->restart, r->spec.node_rank);
    snprintf(rec, sizeof(rec), "%d %d %d %s", r->nproc, (int)getpid(), mport, r->host);
    if (bt__store_compare_set(r->st, key, "", 0, rec, strlen(rec), &actual, &alen) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
    int taken = strcmp(actual, rec) != 0;
    int pid = 0;
    char other[BT_SPEC_HOST_MAX] = "?";
    if (taken)
        sscanf(actual, "%*d %d %*d %255s", &pid, other);
    free(actual);
    if (taken)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "node rank %d is already taken by host %s (pid %d) in job '%s'; "
                           "hint: give each node its own --node-rank (0..%d)",
                           r->spec.node_rank, other, pid, r->job_id, r->spec.nnodes - 1);
    char will[BT_RUN_OUTCOME_MAX];
    bt__run_lost_will(r, key, sizeof(key), will, sizeof(will));
    /* An earlier generation's will goes first (a connection holds at most two). */
    if (bt__store_last_will(r->st, "x", "", 0) != BT_OK ||
        bt__store_last_will(r->st, key, will, strlen(will)) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
    return BT_OK;
}

/* ---- admission: the job's identity ----
 *
 * Independently of the token (many jobs may share one secret, or the derived token of one job
 * name), node 0 publishes l/job = "GEN NNODES JOB_ID" before it claims each generation; every
 * other launcher reads it (waiting up to --join-timeout) before it claims anything, and a
 * launcher whose job id or node count differ, or that is at an older generation (it started
 * after the job restarted), is refused: it writes its one-line reason to l/refused/<k> (k from
 * the l/refused counter) and exits 2; node 0 prints each such line once and carries on. A
 * launcher at a newer generation than l/job may just be ahead of node 0: it goes on. */

/* Node 0 hosts the store but never said which job it runs: it never claimed (pending). */
static int missing_error_identity(struct bt__run *r, struct bt__err *err)
{
    return bt__err_set(err, BT_ERR_TIMEOUT,
                       "gave up after %.0f s (--join-timeout) waiting for node 0 to say which job "
                       "it runs (l/job)",
                       r->o.join_timeout_s);
}

/* Node 0: l/job for this generation. */
static int publish_identity(struct bt__run *r, struct bt__err *err)
{
    char v[sizeof(r->job_id) + 32];
    snprintf(v, sizeof(v), "%d %d %s", r->restart, r->spec.nnodes, r->job_id);
    if (bt__store_set(r->st, "l/job", v, strlen(v)) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
    return BT_OK;
}

/* Leaves this launcher's refusal where node 0 finds it (best effort). */
void bt__run_post_refusal(struct bt__run *r, const char *line)
{
    char key[64];
    int64_t k = 0;
    if (bt__store_add(r->st, "l/refused", 1, &k) != BT_OK)
        return;
    snprintf(key, sizeof(key), "l/refused/%" PRId64, k);
    bt__store_set(r->st, key, line, strlen(line));
}

/* Any node: compares l/job with this launcher's job id, node count and generation. */
static int check_identity(struct bt__run *r, struct bt__err *err)
{
    void *v = NULL;
    size_t len = 0;
    int gen = 0, nn = 0, off = 0;
    if (r->spec.node_rank == 0)
        return publish_identity(r, err);
    int64_t dl = bt__deadline_in(r->o.join_timeout_s);
    int rc; /* a second at a time, so that signals are noticed */
    while ((rc = bt__store_get(r->st, "l/job", &v, &len, 1.0)) == BT_ERR_TIMEOUT) {
        if (bt__run_abort)
            return bt__err_set(err, BT_ERR_REMOTE, "interrupted while waiting for node 0");
        if (bt__now_ns() >= dl)
            return missing_error_identity(r, err);
    }
    if (rc != BT_OK)
        return bt__err_set(err, rc, "%s", bt__store_error(r->st));
    const char *id = "";
    if (sscanf(v, "%d %d %n", &gen, &nn, &off) == 2)
        id = (const char *)v + off;
    char line[BT__ERR_MSG_MAX];
    line[0] = '\0';
    if (strcmp(id, r->job_id) != 0 || nn != r->spec.nnodes)
        snprintf(line, sizeof(line),
                 "node %d (host %.64s, pid %d) says the job is '%.100s' with %d nodes; node 0 "
                 "runs '%.100s' with %d nodes",
                 r->spec.node_rank, r->host, (int)getpid(), r->job_id, r->spec.nnodes, id, nn);
    else if (r->restart < gen)
        snprintf(line, sizeof(line),
                 "node %d (host %.64s, pid %d) joins generation %d; node 0 runs generation %d of "
                 "job '%.100s' (did this launcher start after the job restarted?)",
                 r->spec.node_rank, r->host, (int)getpid(), r->restart, gen, id);
    free(v);
    if (!line[0])
        return BT_OK;
    bt__run_post_refusal(r, line);
    r->refused = 1;
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "refused by node 0: %s; hint: check --nnodes, the job name and --rdzv on "
                       "every node",
                       line);
}

/* Node 0: prints the refusals other launchers left since the last look, one line each. */
static void log_refusals(struct bt__run *r, struct bt__store *st)
{
    int64_t n = 0;
    if (!r->srv || bt__store_add(st, "l/refused", 0, &n) != BT_OK)
        return;
    for (; r->refusals_seen < n; r->refusals_seen++) {
        char key[64];
        void *v = NULL;
        size_t len;
        snprintf(key, sizeof(key), "l/refused/%" PRId64, r->refusals_seen + 1);
        if (bt__store_get(st, key, &v, &len, 1.0) != BT_OK)
            break; /* its line is not there yet: the next look */
        fprintf(stderr, "baton: node 0 refused a launcher: %s\n", (char *)v);
        free(v);
    }
}

/* Every PROGRESS_EVERY_S: which nodes have not joined yet, by rank and pod name. */
static void missing_progress(const struct bt__run *r, double waited_s)
{
    char line[BT__ERR_MSG_MAX], hint[BT__ERR_MSG_MAX];
    bt__run_missing_line(r, bt__store_error(r->st), line, sizeof(line));
    bt__run_pending_hint(r, bt__store_error(r->st), hint, sizeof(hint));
    fprintf(stderr, "baton: node %d still waiting (%.0f s of %.0f s) for %s; %s\n",
            r->spec.node_rank, waited_s, r->o.join_timeout_s, line, hint);
}

/* The join timeout passed with nodes missing: one line naming them (BT_ERR_TIMEOUT, which
 * the launcher exits with as BT_RUN_EXIT_PENDING: retryable). */
static int missing_error(struct bt__run *r, struct bt__err *err)
{
    char line[BT__ERR_MSG_MAX / 2], hint[BT__ERR_MSG_MAX / 2];
    bt__run_missing_line(r, bt__store_error(r->st), line, sizeof(line));
    bt__run_pending_hint(r, bt__store_error(r->st), hint, sizeof(hint));
    return bt__err_set(err, BT_ERR_TIMEOUT,
                       "gave up after %.0f s (--join-timeout) waiting for %s; %s",
                       r->o.join_timeout_s, line, hint);
}

/* Waits for every node's claim, a second at a time (so signals are noticed), with a
 * progress line every few seconds that names the missing nodes. */
static int wait_nodes(struct bt__run *r, char **keys, struct bt__err *err)
{
    int n = r->spec.nnodes;
    int64_t t0 = bt__now_ns(), dl = bt__deadline_in(r->o.join_timeout_s), last = t0;
    for (;;) {
        int rc = bt__store_wait(r->st, (const char *const *)keys, n, 1.0);
        if (rc == BT_OK)
            return BT_OK;
        if (rc != BT_ERR_TIMEOUT)
            return bt__err_set(err, rc, "%s", bt__store_error(r->st));
        if (bt__run_abort)
            return bt__err_set(err, BT_ERR_REMOTE, "interrupted while waiting for the nodes");
        int64_t now = bt__now_ns();
        if (now >= dl)
            return missing_error(r, err);
        if (now - last >= (int64_t)(PROGRESS_EVERY_S * 1e9)) {
            missing_progress(r, (double)(now - t0) / 1e9);
            last = now;
        }
        log_refusals(r, r->st); /* last: the lines above read the WAIT's error */
    }
}

/* Reads every node's record: ranks are prefix sums of NPROC; MASTER_PORT from node 0. */
static int layout(struct bt__run *r, char **keys, struct bt__err *err)
{
    int n = r->spec.nnodes, rc = BT_OK;
    void **vals = calloc((size_t)n, sizeof(void *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    if (!vals || !lens) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
        goto out;
    }
    if (bt__store_multi_get(r->st, (const char *const *)keys, n, vals, lens, 30.0) != BT_OK) {
        rc = bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
        goto out;
    }
    r->world_size = r->first_rank = 0;
    int *nf = realloc(r->node_first, sizeof(int) * ((size_t)n + 1));
    if (!nf) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
        goto out;
    }
    r->node_first = nf;
    for (int i = 0; i < n; i++) {
        nf[i] = r->world_size;
        int np = 0, mport = 0;
        if (sscanf(vals[i], "%d %*d %d", &np, &mport) != 2 || np < 1) {
            rc = bt__err_set(err, BT_ERR_REMOTE, "%s: malformed record '%s'", keys[i],
                             (char *)vals[i]);
            goto out;
        }
        if (i < r->spec.node_rank)
            r->first_rank += np;
        r->world_size += np;
        if (i == 0)
            r->master_port = r->spec.master_port > 0 ? r->spec.master_port : mport;
    }
    nf[n] = r->world_size;
out:
    for (int i = 0; vals && i < n; i++)
        free(vals[i]);
    free(vals);
    free(lens);
    return rc;
}

static char **node_keys(const struct bt__run *r)
{
    int n = r->spec.nnodes;
    char **keys = calloc((size_t)n, sizeof(char *));
    for (int i = 0; keys && i < n; i++)
        if (asprintf(&keys[i], "l/%d/node/%d", r->restart, i) < 0)
            keys[i] = NULL;
    return keys;
}

static int join_local(struct bt__run *r)
{
    r->world_size = r->nproc;
    r->first_rank = 0;
    r->master_port = r->spec.master_port > 0 ? r->spec.master_port : bt__run_free_port();
    return BT_OK;
}

int bt__run_join(struct bt__run *r, struct bt__err *err)
{
    int rc, n = r->spec.nnodes;
    int64_t joined = 0;
    snprintf(r->master_addr, sizeof(r->master_addr), "%s",
             r->spec.master_addr[0] ? r->spec.master_addr
             : r->srv               ? "127.0.0.1"
                                    : r->store_host);
    if (!r->st)
        return join_local(r);
    if (r->elastic)
        return bt__run_elastic_join(r, err);
    BT_CHECK(check_identity(r, err));
    BT_CHECK(claim(r, err));
    char key[64];
    snprintf(key, sizeof(key), "l/%d/joined", r->restart);
    if (bt__store_add(r->st, key, 1, &joined) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->st));
    BT_INFO(LAUNCH, "node %d joined generation %d (%" PRId64 " of %d nodes so far)",
            r->spec.node_rank, r->restart, joined, n);
    char **keys = node_keys(r);
    if (!keys)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory");
    rc = wait_nodes(r, keys, err);
    if (rc == BT_OK)
        rc = layout(r, keys, err);
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    return rc;
}

/* ---- the outcome ---- */

static void encode(const struct bt__outcome *o, char *out, size_t n)
{
    snprintf(out, n, "%c %d\t%s", o->kind, o->status, o->line);
}

void bt__run_post_outcome(struct bt__run *r, struct bt__outcome *o)
{
    char key[64], val[BT_RUN_OUTCOME_MAX + 32];
    void *actual = NULL;
    size_t alen;
    struct bt__outcome won;
    if (!r->st)
        return;
    snprintf(key, sizeof(key), "l/%d/outcome", r->restart);
    encode(o, val, sizeof(val));
    if (bt__store_compare_set(r->st, key, "", 0, val, strlen(val), &actual, &alen) != BT_OK) {
        BT_INFO(LAUNCH, "posting the outcome: %s", bt__store_error(r->st));
        return; /* the watcher reports the lost store in the job's terms */
    }
    if (bt__run_outcome_parse(actual, &won) == 0)
        *o = won;
    free(actual);
}

void bt__run_success(const struct bt__run *r, struct bt__outcome *o)
{
    o->kind = 'S';
    o->status = 0;
    snprintf(o->line, sizeof(o->line), "every worker on %d node(s) exited 0 (%d worker(s))",
             r->spec.nnodes, r->world_size);
}

void bt__run_post_done(struct bt__run *r, struct bt__outcome *o)
{
    char key[64];
    int64_t n = 0;
    bt__run_success(r, o);
    if (!r->st)
        return;
    r->node_done = 1;
    snprintf(key, sizeof(key), "l/%d/done", r->restart);
    if (bt__store_add(r->st, key, 1, &n) != BT_OK) {
        BT_INFO(LAUNCH, "counting this node done: %s", bt__store_error(r->st));
        n = 0;
    }
    if (n == r->spec.nnodes)
        bt__run_post_outcome(r, o);
    else
        o->kind = 0; /* the other nodes are still running: the watcher will tell */
}

/* ---- the watcher thread ---- */

/* The store did not answer (or the connection broke): this launcher lost it. The line says
 * so in the job's terms; a timeout is worded as the heartbeat bound, not as socket detail. */
static void store_lost(struct bt__run *r, struct bt__outcome *o, int rc)
{
    char why[BT__ERR_MSG_MAX];
    /* etcd: a request the watcher made after its look timed out may have broken the handle;
     * its error says why (an HTTP 503 after retries, a member that did not answer) */
    if (rc == BT_ERR_TIMEOUT && !(r->etcd && bt__store_broken(r->wst) && *bt__store_error(r->wst)))
        snprintf(why, sizeof(why), "no answer within %.0f s (BATON_HEARTBEAT_TIMEOUT)",
                 bt__run_heartbeat_timeout());
    else
        snprintf(why, sizeof(why), "%s", bt__store_error(r->wst));
    o->kind = 'L';
    o->status = BT_RUN_EXIT_LOST;
    r->store_lost = 1;
    if (r->etcd) { /* no node hosts it: etcd itself went silent */
        snprintf(o->line, sizeof(o->line),
                 "node %d (host %.64s) lost contact with etcd at %.200s: %.400s%s", r->node_id,
                 r->host, r->o.rdzv_endpoint, why,
                 strstr(why, "hint:") ? "" /* the reason has its own */
                                      : "; hint: is etcd running (not stopped, e.g. SIGSTOP) and "
                                        "reachable? (--rdzv-endpoint)");
        return;
    }
    snprintf(
        o->line, sizeof(o->line),
        "node %d (host %.64s) lost contact with the rendezvous store at %.64s:%d: %.400s; hint: "
        "node 0's launcher hosts it: did it die or stop (SIGSTOP), or did the network go "
        "away?",
        r->spec.node_rank, r->host, r->store_host, r->store_port, why);
}

static int lease_start(struct bt__run *r, struct bt__err *err);

/* Node 0 hosts the store in its own process: a store that did not answer there means this
 * process itself was stopped, not that the store is gone. A fresh connection, and go on. */
static int rejoin_own_store(struct bt__run *r)
{
    struct bt__err err = {0};
    struct bt__store *fresh = NULL;
    if (!r->srv)
        return -1;
    int rc = r->relay_own ? own_channel(r, bt__run_heartbeat_timeout(), &fresh, &err)
                          : bt__run_connect(r, bt__run_heartbeat_timeout(), &fresh, &err);
    if (rc != BT_OK)
        return -1;
    bt__store_close(r->wst); /* a goodbye behind the late request: its will does not fire */
    r->wst = fresh;
    BT_WARN(LAUNCH, "node 0 did not hear its own rendezvous store in time (was this launcher "
                    "stopped?); reconnected");
    return lease_start(r, &err) == BT_OK ? 0 : -1;
}

/* Every node counted itself done, but the last count's ADD may have reached a store that was
 * stopped, whose sender then gave up on it: this node, done itself, posts S. */
static void check_all_done(struct bt__run *r)
{
    char key[64];
    void *v = NULL;
    size_t len;
    snprintf(key, sizeof(key), "l/%d/done", r->restart);
    if (!r->node_done || bt__store_get(r->wst, key, &v, &len, 0) != BT_OK)
        return;
    if (atoi(v) >= r->spec.nnodes) {
        char val[BT_RUN_OUTCOME_MAX + 32];
        struct bt__outcome d;
        bt__run_success(r, &d);
        encode(&d, val, sizeof(val));
        snprintf(key, sizeof(key), "l/%d/outcome", r->restart);
        bt__store_compare_set(r->wst, key, "", 0, val, strlen(val), NULL, NULL);
    }
    free(v);
}

static void *watch_main(void *arg)
{
    struct bt__run *r = arg;
    struct bt__outcome *o = &r->watched;
    char key[64];
    snprintf(key, sizeof(key), "l/%d/outcome", r->restart);
    o->kind = 0;
    while (!r->watcher_stop) {
        void *val = NULL;
        size_t len;
        int rc = bt__store_get(r->wst, key, &val, &len,
                               r->elastic ? ELASTIC_BEAT_S : HEARTBEAT_EVERY_S);
        if (rc == BT_OK) {
            if (bt__run_outcome_parse(val, o) != 0)
                o->kind = 0;
            free(val);
            break;
        }
        if (rc == BT_ERR_TIMEOUT && bt__store_broken(r->wst) && rejoin_own_store(r) == 0)
            continue;
        if (rc == BT_ERR_TIMEOUT && !bt__store_broken(r->wst)) {
            check_all_done(r);
            log_refusals(r, r->wst);
            bt__run_flight_watch(r, r->wst); /* the straggler records of this node */
            if (r->elastic)
                bt__run_elastic_watch(r, r->wst);
        }
        if (rc != BT_ERR_TIMEOUT || bt__store_broken(r->wst)) {
            store_lost(r, o, rc);
            break;
        }
    }
    uint64_t one = 1;
    (void)!write(r->notify_fd, &one, sizeof(one));
    return NULL;
}

/* The watcher connection carries this generation's heartbeat lease and a last will; the
 * store answers within BATON_HEARTBEAT_TIMEOUT or is lost. */
static int lease_start(struct bt__run *r, struct bt__err *err)
{
    char key[64], will[BT_RUN_OUTCOME_MAX];
    double hb = bt__run_heartbeat_timeout();
    bt__store_set_io_timeout(r->wst, hb);
    bt__store_set_io_timeout(r->st, hb);
    bt__run_lost_will(r, key, sizeof(key), will, sizeof(will));
    if (bt__store_last_will(r->wst, key, will, strlen(will)) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->wst));
    /* A second will marks this node lost whatever the outcome: the others' failure reports
     * (run_forensics.c) stop waiting for its records. */
    snprintf(key, sizeof(key), "l/%d/lost/%d", r->restart, r->spec.node_rank);
    if (bt__store_last_will(r->wst, key, will, strlen(will)) != BT_OK ||
        bt__store_heartbeat(r->wst, hb) != BT_OK)
        return bt__err_set(err, BT_ERR_REMOTE, "%s", bt__store_error(r->wst));
    return BT_OK;
}

int bt__run_watch_start(struct bt__run *r, struct bt__err *err)
{
    if (!r->wst)
        return BT_OK;
    uint64_t drain;
    (void)!read(r->notify_fd, &drain, sizeof(drain));
    r->watcher_stop = 0;
    r->store_lost = 0;
    r->node_done = 0;
    r->closing = 0;
    BT_CHECK(lease_start(r, err));
    if (pthread_create(&r->watcher, NULL, watch_main, r) != 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "cannot start the outcome watcher thread");
    r->watcher_on = 1;
    return BT_OK;
}

void bt__run_watch_stop(struct bt__run *r)
{
    if (!r->watcher_on)
        return;
    r->watcher_stop = 1; /* noticed within one GET timeout when no outcome came */
    pthread_join(r->watcher, NULL);
    r->watcher_on = 0;
    if (bt__store_broken(r->wst))
        return;
    /* The outcome is known: no more beats come from this connection until the next
     * generation, so its lease and will end here. */
    if (bt__store_heartbeat(r->wst, 0) != BT_OK || bt__store_last_will(r->wst, "x", "", 0) != BT_OK)
        BT_INFO(LAUNCH, "ending the heartbeat lease: %s", bt__store_error(r->wst));
}

/* Final: count this launcher out; node 0 keeps the store up until all are (bounded). */
static void exit_barrier(struct bt__run *r)
{
    char key[64], all[64];
    int64_t n = 0, want = r->spec.nnodes - (r->final_kind == 'L'); /* the lost one never will */
    snprintf(key, sizeof(key), "l/%d/exited", r->restart);
    snprintf(all, sizeof(all), "l/%d/allexited", r->restart);
    if (bt__store_add(r->st, key, 1, &n) != BT_OK)
        return;
    if (n >= want)
        bt__store_set(r->st, all, "1", 1);
    if (r->srv && r->spec.nnodes > 1) {
        void *v = NULL;
        size_t len;
        if (bt__store_get(r->st, all, &v, &len, EXIT_BARRIER_S) == BT_OK)
            free(v);
    }
}

void bt__run_rdzv_close(struct bt__run *r, int final)
{
    bt__run_watch_stop(r);
    if (final && r->st)
        exit_barrier(r);
    bt__store_close(r->wst);
    bt__store_close(r->st);
    r->wst = r->st = NULL;
    if (final) {
        bt__store_relay_destroy(r->relay); /* before the store: its workers are gone */
        r->relay = NULL;
    }
    bt__store_server_destroy(r->srv);
    bt__store_server_destroy(r->wsrv);
    r->srv = r->wsrv = NULL;
    free(r->node_first);
    r->node_first = NULL;
    if (r->notify_fd > 0)
        close(r->notify_fd);
    r->notify_fd = -1;
}
