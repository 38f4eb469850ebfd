/* rdzv_bench.c: how fast N clients join one rendezvous store.
 *
 *   rdzv_bench [--clients N] [--addr HOST:PORT] [--token T] [--window W]
 *
 * N simulated clients live in this one process on non-blocking sockets, driven by one epoll
 * loop that speaks the wire protocol itself (this file includes the internal headers
 * rendezvous/store.h and rendezvous/proto.h). Each client connects, does the HMAC handshake
 * (and checks the store's proof), SETs its address under its own key, ADDs 1 to a shared
 * counter, and WAITs for the key "done", which the client whose ADD returns N sets. The time
 * is from the first connect to the last WAIT answered: every client joined. At most W
 * clients are in their handshake at once (default 1024; the listen backlog holds 4096), the
 * way a real launcher would pace itself.
 *
 * --per-node K puts a node relay (rendezvous/relay.c, what every node's launcher runs) in front
 * of the store for every K clients, as `baton run -n K` on each node would: the clients dial
 * their relay's Unix socket, the relays hold one store connection each, and the store and the
 * relays run in a forked child, which prints the most connections the store held. As in
 * `baton run`, each relay's connection is made by its "launcher" (a direct connect handed over
 * with bt__store_relay_adopt), and before the clients start each node's launcher joins as two
 * channels of it (bt__store_connect_relay from this process): the main one claims its node
 * (COMPARE_SET), counts itself in (ADD) and leaves a last will; the watcher leaves two wills and
 * holds a heartbeat lease (600 s: the bench does not beat every second as the watcher does).
 * So the store holds one connection per node throughout, with 2 + K channels on each.
 *
 * Without --addr the store runs in this process on a thread; when the open-file hard limit
 * cannot hold both ends of N connections (2N descriptors) it runs in a forked child instead.
 * Without --clients it sweeps 128, 1024, 4096 and 10000 clients. After each round one
 * ordinary client checks the counter and the last address, so a wrong store fails the run.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netdb.h>

#include "common/param.h"
#include "rendezvous/proto.h"
#include "rendezvous/store.h"

enum {
    ST_CONNECT,
    ST_CHALLENGE,
    ST_RESULT,
    ST_SET,
    ST_ADD,
    ST_DONE_SET,
    ST_WAIT,
    ST_JOINED,
    ST_BYE,
    ST_CLOSED
};

struct sim {
    int fd, state, id;
    uint8_t cn[BT__AUTH_NONCE], sn[BT__AUTH_NONCE];
    uint8_t buf[64];
    size_t have; /* bytes in buf */
};

struct round {
    int n, window, started, inflight, joined, failed;
    int ep;
    struct sim *sims;
    uint8_t *seen; /* ADD results seen, 1..n */
    uint8_t key[32];
    struct addrinfo *ai;
    char prefix[32];
    int per_node; /* > 0: clients dial their node's relay (relay_addr[id / per_node]) */
    char **relay_addr;
};

static pid_t store_child = -1; /* the forked store, if any */
static int srv_port;           /* the store's port (--per-node's child dials it) */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    if (store_child > 0) {
        kill(store_child, SIGKILL);
        waitpid(store_child, NULL, 0);
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rdzv_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void sim_fail(struct round *r, struct sim *s, const char *why)
{
    if (r->failed++ < 5)
        fprintf(stderr, "rdzv_bench: client %d failed in state %d: %s\n", s->id, s->state, why);
    if (s->state <= ST_RESULT)
        r->inflight--;
    close(s->fd);
    s->fd = -1;
    s->state = ST_CLOSED;
}

static int sim_send(struct round *r, struct sim *s, const void *p, size_t n)
{
    ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
    if (w != (ssize_t)n) { /* a few dozen bytes on an idle socket always fit */
        sim_fail(r, s, w < 0 ? strerror(errno) : "short send");
        return -1;
    }
    return 0;
}

/* Sends one request frame: cmd with a key and, for SET, a value; for ADD a delta. */
static void sim_request(struct round *r, struct sim *s, uint8_t cmd, const char *key,
                        const char *val)
{
    struct bt__wbuf b = {0};
    uint8_t stack[256];
    b.p = stack;
    b.cap = sizeof(stack);
    size_t f = bt__wbuf_frame_begin(&b, cmd);
    if (cmd == BT__RDZV_WAIT) {
        bt__wbuf_u32(&b, BT__RDZV_NO_TIMEOUT);
        bt__wbuf_u32(&b, 1);
    }
    if (cmd != BT__RDZV_GOODBYE)
        bt__wbuf_bytes(&b, key, strlen(key));
    if (cmd == BT__RDZV_SET)
        bt__wbuf_bytes(&b, val, strlen(val));
    if (cmd == BT__RDZV_ADD)
        bt__wbuf_u64(&b, 1);
    bt__wbuf_frame_end(&b, f);
    s->have = 0;
    sim_send(r, s, b.p, b.len);
}

static void sim_start(struct round *r, struct sim *s)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const struct sockaddr *sa = r->ai->ai_addr;
    socklen_t salen = r->ai->ai_addrlen;
    if (r->per_node) { /* "@name": an abstract Unix socket */
        const char *a = r->relay_addr[s->id / r->per_node];
        size_t n = strlen(a);
        memcpy(un.sun_path, a, n);
        un.sun_path[0] = '\0';
        sa = (const struct sockaddr *)&un;
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket: %s (client %d; raise ulimit -n)", strerror(errno), s->id);
    r->inflight++;
    s->state = ST_CONNECT;
    if (connect(s->fd, sa, salen) != 0 && errno != EINPROGRESS && errno != EAGAIN) {
        sim_fail(r, s, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void sim_connected(struct round *r, struct sim *s)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) {
        sim_fail(r, s, strerror(soerr));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, s->fd, &ev);
    uint8_t hello[BT__RDZV_HELLO_LEN];
    bt__auth_random(s->cn, sizeof(s->cn));
    bt__rdzv_hello(hello, BT__RDZV_VERSION, BT__RDZV_KIND_BENCH, s->cn);
    s->state = ST_CHALLENGE;
    s->have = 0;
    sim_send(r, s, hello, sizeof(hello));
}

/* The client's next step once a whole message sits in s->buf. */
static void sim_step(struct round *r, struct sim *s)
{
    char key[64], val[64];
    uint8_t mac[BT__AUTH_MAC];
    const uint8_t *b = s->buf;
    switch (s->state) {
    case ST_CHALLENGE:
        if (bt__le64(b) != BT__RDZV_MAGIC || bt__le32(b + 12) != BT__ST_OK) {
            sim_fail(r, s, "challenge refused");
            return;
        }
        memcpy(s->sn, b + 16, BT__AUTH_NONCE);
        bt__auth_mac(r->key, BT__RDZV_LABEL_CLIENT, s->cn, s->sn, mac);
        s->state = ST_RESULT;
        s->have = 0;
        sim_send(r, s, mac, sizeof(mac));
        return;
    case ST_RESULT:
        bt__auth_mac(r->key, BT__RDZV_LABEL_SERVER, s->sn, s->cn, mac);
        if (bt__le32(b) != BT__ST_OK || !bt__auth_mac_equal(mac, b + 4)) {
            sim_fail(r, s, "token refused or store proof wrong");
            return;
        }
        r->inflight--;
        s->state = ST_SET;
        snprintf(key, sizeof(key), "%s/addr/%d", r->prefix, s->id);
        snprintf(val, sizeof(val), "10.%d.%d.%d:29500", s->id >> 16 & 255, s->id >> 8 & 255,
                 s->id & 255);
        sim_request(r, s, BT__RDZV_SET, key, val);
        return;
    default: break;
    }
    if (b[4] != BT__ST_OK) {
        sim_fail(r, s, "request refused");
        return;
    }
    snprintf(key, sizeof(key), "%s/done", r->prefix);
    if (s->state == ST_SET) {
        s->state = ST_ADD;
        snprintf(key, sizeof(key), "%s/joined", r->prefix);
        sim_request(r, s, BT__RDZV_ADD, key, NULL);
    } else if (s->state == ST_ADD) {
        int64_t v = (int64_t)bt__le64(b + 5);
        if (v < 1 || v > r->n || r->seen[v - 1]++) {
            sim_fail(r, s, "ADD returned a wrong or repeated count");
            return;
        }
        s->state = v == r->n ? ST_DONE_SET : ST_WAIT;
        sim_request(r, s, v == r->n ? BT__RDZV_SET : BT__RDZV_WAIT, key, "1");
    } else if (s->state == ST_DONE_SET) {
        s->state = ST_WAIT;
        sim_request(r, s, BT__RDZV_WAIT, key, NULL);
    } else if (s->state == ST_WAIT) {
        s->state = ST_JOINED;
        r->joined++;
    }
}

/* Bytes the message now expected needs in total (0: not known yet). */
static size_t sim_need(const struct sim *s)
{
    if (s->state == ST_CHALLENGE)
        return BT__RDZV_CHALLENGE_LEN;
    if (s->state == ST_RESULT)
        return BT__RDZV_RESULT_LEN;
    return s->have >= 4 ? 4 + (size_t)bt__le32(s->buf) : 0;
}

static void sim_readable(struct round *r, struct sim *s)
{
    ssize_t n = recv(s->fd, s->buf + s->have, sizeof(s->buf) - s->have, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (s->state == ST_BYE) { /* the store closed after our goodbye */
            close(s->fd);
            s->fd = -1;
            s->state = ST_CLOSED;
            r->joined--;
            return;
        }
        sim_fail(r, s, n == 0 ? "closed by the store" : strerror(errno));
        return;
    }
    s->have += (size_t)n;
    size_t need = sim_need(s);
    if (need > sizeof(s->buf)) {
        sim_fail(r, s, "reply too long");
        return;
    }
    if (need && s->have >= need && s->state != ST_BYE)
        sim_step(r, s);
}

static void drive(struct round *r, int64_t deadline, int until_joined)
{
    struct epoll_event evs[1024];
    for (;;) {
        if (until_joined ? r->joined + r->failed >= r->n : r->joined <= 0)
            return;
        while (until_joined && r->inflight < r->window && r->started < r->n)
            sim_start(r, &r->sims[r->started++]);
        if (bt__now_ns() > deadline)
            die("%d clients: only %d joined (%d failed) before the deadline", r->n, r->joined,
                r->failed);
        int k = epoll_wait(r->ep, evs, 1024, 100);
        for (int i = 0; i < k; i++) {
            struct sim *s = evs[i].data.ptr;
            if (s->state == ST_CONNECT)
                sim_connected(r, s);
            else if (s->state != ST_CLOSED)
                sim_readable(r, s);
        }
    }
}

/* Checks the store with an ordinary client: the counter reached n and the last address is
 * there. */
static void verify(const char *host, int port, const char *token, const struct round *r)
{
    struct bt__store *st;
    struct bt__err err = {0};
    char key[64], want[64];
    void *v;
    size_t len;
    if (bt__store_connect(host, port, token, NULL, &st, &err) != BT_OK)
        die("verify: %s", err.msg);
    snprintf(key, sizeof(key), "%s/joined", r->prefix);
    snprintf(want, sizeof(want), "%d", r->n);
    if (bt__store_get(st, key, &v, &len, 5.0) != BT_OK || strcmp(v, want) != 0)
        die("verify: %s is not %s: %s", key, want, bt__store_error(st));
    free(v);
    int last = r->n - 1;
    snprintf(key, sizeof(key), "%s/addr/%d", r->prefix, last);
    snprintf(want, sizeof(want), "10.%d.%d.%d:29500", last >> 16 & 255, last >> 8 & 255,
             last & 255);
    if (bt__store_get(st, key, &v, &len, 5.0) != BT_OK || strcmp(v, want) != 0)
        die("verify: %s is not %s", key, want);
    free(v);
    bt__store_close(st);
}

static double run_round(const char *host, int port, const char *token, int n, int window,
                        int round_no, int per_node, char **relay_addr)
{
    struct round r = {.n = n, .window = window, .per_node = per_node, .relay_addr = relay_addr};
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &r.ai) != 0)
        die("cannot resolve %s", host);
    snprintf(r.prefix, sizeof(r.prefix), "bench%d", round_no);
    bt__auth_key(token, r.key);
    r.sims = calloc((size_t)n, sizeof(*r.sims));
    r.seen = calloc((size_t)n, 1);
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!r.sims || !r.seen || r.ep < 0)
        die("out of memory or descriptors");
    for (int i = 0; i < n; i++)
        r.sims[i] = (struct sim){.fd = -1, .state = ST_CONNECT, .id = i};
    int64_t t0 = bt__now_ns();
    drive(&r, t0 + 120000000000LL, 1);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    if (r.failed)
        die("%d of %d clients failed", r.failed, n);
    verify(host, port, token, &r);
    /* Goodbye from everyone; the store closes first, so its side holds the TIME_WAITs. */
    for (int i = 0; i < n; i++) {
        r.sims[i].state = ST_BYE;
        sim_request(&r, &r.sims[i], BT__RDZV_GOODBYE, NULL, NULL);
    }
    drive(&r, bt__now_ns() + 60000000000LL, 0);
    close(r.ep);
    free(r.sims);
    free(r.seen);
    freeaddrinfo(r.ai);
    return took;
}

/* --per-node K: a child process holds the store (on a thread) and one relay per node of K
 * clients (rendezvous/relay.c, each on its thread, as each node's launcher would), sends the
 * relays' addresses up the pipe, and counts the store's connections until the parent writes
 * to ctl; then it prints the most it saw and exits. */
static void relay_child(struct bt__store_server *srv, const char *token, int nodes, int up, int ctl)
{
    if (bt__store_server_start(srv) != BT_OK)
        _exit(1);
    struct bt__store_relay **rl = calloc((size_t)nodes, sizeof(*rl));
    for (int i = 0; i < nodes; i++) {
        struct bt__err err = {0};
        struct bt__store *d = NULL;
        if (!rl || bt__store_relay_create("127.0.0.1", srv_port, token, &rl[i], &err) != BT_OK ||
            bt__store_connect("127.0.0.1", srv_port, token, NULL, &d, &err) != BT_OK) {
            fprintf(stderr, "rdzv_bench: relay %d: %s\n", i, err.msg);
            _exit(1);
        }
        bt__store_relay_adopt(rl[i], bt__store_detach(d)); /* the launcher's connection */
        dprintf(up, "%s\n", bt__store_relay_address(rl[i]));
    }
    close(up);
    int most = 0;
    struct pollfd pf = {.fd = ctl, .events = POLLIN};
    for (;;) {
        char mark;
        int p = poll(&pf, 1, 5);
        int n = bt__store_server_nclients(srv);
        most = n > most ? n : most;
        if (p > 0 && read(ctl, &mark, 1) != 1)
            break; /* the parent is done */
        if (p > 0) /* a byte: the launchers joined, the clients start */
            printf("rdzv_bench: store thread CPU %.3f s once the launchers joined\n",
                   bt__store_server_cpu_s(srv));
        fflush(stdout);
    }
    printf("rdzv_bench: the store held at most %d connections for %d nodes; store thread CPU "
           "%.3f s\n",
           most, nodes, bt__store_server_cpu_s(srv));
    fflush(stdout);
    for (int i = 0; i < nodes; i++)
        bt__store_relay_destroy(rl[i]);
    bt__store_server_destroy(srv);
    _exit(0);
}

/* Starts relay_child; returns the relays' addresses; *ctl is the pipe that ends it. */
static char **start_relays(struct bt__store_server *srv, const char *token, int nodes, int *ctl)
{
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        die("pipe: %s", strerror(errno));
    fflush(stdout);
    store_child = fork();
    if (store_child < 0)
        die("fork: %s", strerror(errno));
    if (store_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(up[0]);
        close(down[1]);
        relay_child(srv, token, nodes, up[1], down[0]);
    }
    close(up[1]);
    close(down[0]);
    *ctl = down[1];
    char **addr = calloc((size_t)nodes, sizeof(*addr));
    FILE *f = fdopen(up[0], "r");
    char line[128];
    for (int i = 0; i < nodes; i++) {
        if (!addr || !f || !fgets(line, sizeof(line), f))
            die("the relay process did not start %d relays", nodes);
        line[strcspn(line, "\n")] = '\0';
        addr[i] = strdup(line);
    }
    fclose(f);
    return addr;
}

/* Each node's launcher joins as `baton run`'s does: two channels of its relay's connection (the
 * main one: claim, count, last will; the watcher: two wills and a lease), one node after
 * another. Returns the handles (2 per node) for launchers_leave. */
static struct bt__store **launchers_join(const char *token, int nodes, char **addr)
{
    struct bt__store **h = calloc(2 * (size_t)nodes, sizeof(*h));
    if (!h)
        die("out of memory");
    for (int i = 0; i < nodes; i++) {
        struct bt__err err = {0};
        char key[64], rec[64], will[96];
        int64_t n;
        void *actual = NULL;
        size_t alen;
        snprintf(key, sizeof(key), "l/0/node/%d", i);
        snprintf(rec, sizeof(rec), "8 %d 0 node-%d", 1000 + i, i);
        snprintf(will, sizeof(will), "L 129\tnode %d lost contact with the rendezvous store", i);
        for (int k = 0; k < 2; k++)
            if (bt__store_connect_relay(addr[i], "127.0.0.1", srv_port, token, NULL, &h[2 * i + k],
                                        &err) != BT_OK)
                die("launcher %d: %s", i, err.msg);
        struct bt__store *m = h[2 * i], *w = h[2 * i + 1];
        if (bt__store_compare_set(m, key, "", 0, rec, strlen(rec), &actual, &alen) != BT_OK ||
            bt__store_last_will(m, "l/0/outcome", will, strlen(will)) != BT_OK ||
            bt__store_add(m, "l/0/joined", 1, &n) != BT_OK || n != i + 1)
            die("launcher %d (main): %s", i, bt__store_error(m));
        free(actual);
        snprintf(key, sizeof(key), "l/0/lost/%d", i);
        if (bt__store_last_will(w, "l/0/outcome", will, strlen(will)) != BT_OK ||
            bt__store_last_will(w, key, will, strlen(will)) != BT_OK ||
            bt__store_heartbeat(w, 600.0) != BT_OK)
            die("launcher %d (watcher): %s", i, bt__store_error(w));
    }
    return h;
}

static void launchers_leave(struct bt__store **h, int nodes)
{
    for (int i = 0; h && i < 2 * nodes; i++)
        bt__store_close(h[i]);
    free(h);
}

static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_max;
}

int main(int argc, char **argv)
{
    int sweep[] = {128, 1024, 4096, 10000}, nsweep = 4, one = 0, window = 1024, port = 0;
    int per_node = 0, ctl = -1, nodes = 0;
    char **relay_addr = NULL;
    struct bt__store **launchers = NULL;
    char host[256] = "127.0.0.1";
    const char *token = bt__env_str("BATON_TOKEN", "rdzv-bench-token");
    for (int i = 1; i < argc; i++) {
        int64_t v;
        if (!strcmp(argv[i], "--clients") && i + 1 < argc && !bt__parse_int(argv[++i], &v) &&
            v > 0 && v <= 1000000)
            one = (int)v;
        else if (!strcmp(argv[i], "--window") && i + 1 < argc && !bt__parse_int(argv[++i], &v) &&
                 v > 0)
            window = (int)v;
        else if (!strcmp(argv[i], "--addr") && i + 1 < argc &&
                 !bt__parse_endpoint(argv[++i], host, sizeof(host), &port))
            ;
        else if (!strcmp(argv[i], "--token") && i + 1 < argc)
            token = argv[++i];
        else if (!strcmp(argv[i], "--per-node") && i + 1 < argc && !bt__parse_int(argv[++i], &v) &&
                 v > 0 && v <= 4096)
            per_node = (int)v;
        else {
            fprintf(stderr,
                    "usage: rdzv_bench [--clients N] [--addr HOST:PORT] [--token T] "
                    "[--window W] [--per-node K]\n(bad or unknown argument '%s')\n",
                    argv[i]);
            return 2;
        }
    }
    if (one) {
        sweep[0] = one;
        nsweep = 1;
    }
    int maxn = sweep[nsweep - 1];
    rlim_t lim = raise_nofile();
    struct bt__store_server *srv = NULL;
    if (per_node && (port != 0 || nsweep != 1))
        die("--per-node wants --clients N and no --addr (it starts the store and the relays)");
    if (port == 0) {
        struct bt__err err = {0};
        if (bt__store_server_create("127.0.0.1", 0, token, &srv, &port, &err) != BT_OK)
            die("%s", err.msg);
        srv_port = port;
        if (per_node) {
            nodes = (maxn + per_node - 1) / per_node;
            relay_addr = start_relays(srv, token, nodes, &ctl);
            printf("rdzv_bench: %d clients through %d relays of %d (one per node), store and "
                   "relays in a child process\n",
                   maxn, nodes, per_node);
            bt__store_server_destroy(srv);
            srv = NULL;
            int64_t t0 = bt__now_ns();
            launchers = launchers_join(token, nodes, relay_addr);
            printf("rdzv_bench: %d launchers joined as 2 channels each of their relay's "
                   "connection in %.3f s (one after another)\n",
                   nodes, (double)(bt__now_ns() - t0) / 1e9);
            fflush(stdout);
            if (write(ctl, "m", 1) != 1)
                die("the relay process went away");
        } else if ((rlim_t)(2 * maxn + 64) > lim) {
            printf("rdzv_bench: store in a child process (open-file limit %llu < 2 x %d)\n",
                   (unsigned long long)lim, maxn);
            fflush(stdout);
            pid_t parent = getpid();
            store_child = fork();
            if (store_child < 0)
                die("fork: %s", strerror(errno));
            if (store_child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bench */
                if (getppid() != parent)
                    _exit(1);
                _exit(bt__store_server_run(srv) == BT_OK ? 0 : 1);
            }
            bt__store_server_destroy(srv); /* the parent's copies */
            srv = NULL;
        } else if (bt__store_server_start(srv) != BT_OK) {
            die("cannot start the store thread");
        }
    } else if ((rlim_t)(maxn + 64) > lim) {
        die("open-file limit %llu is too low for %d clients", (unsigned long long)lim, maxn);
    }
    for (int i = 0; i < nsweep; i++) {
        double t = run_round(host, port, token, sweep[i], window, i, per_node, relay_addr);
        printf("rdzv_bench: %d clients joined in %.3f s\n", sweep[i], t);
        fflush(stdout);
    }
    bt__store_server_destroy(srv);
    launchers_leave(launchers, nodes);
    if (ctl >= 0) { /* the relay child reports and exits */
        close(ctl);
        waitpid(store_child, NULL, 0);
    } else if (store_child > 0) {
        struct rusage ru;
        kill(store_child, SIGTERM);
        if (wait4(store_child, NULL, 0, &ru) == store_child)
            printf("rdzv_bench: store process CPU %.3f s\n",
                   (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6);
    }
    return 0;
}
