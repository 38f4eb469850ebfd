/* transport/tcp.c: point-to-point exchange between ranks over TCP.
 *
 * At creation every rank listens on the address of the chosen interface (port 0) and
 * publishes "host:port" in the store under "<prefix>tcp/<rank>". Rank i then connects
 * BATON_NSOCKS sockets to every rank j < i and accepts as many from every rank j > i: a full
 * mesh, so every algorithm can talk to any peer without setup on the collective path.
 *
 * Handshake, connector -> acceptor, 32 bytes little-endian:
 *   {u64 magic "BTNTCP01", u32 version, u32 rank, u32 socket index, u32 nsocks,
 *    u64 job cookie (FNV-1a of the token and the generation prefix)}
 * The acceptor checks every field; a stray connection (another job, a port scanner) is
 * dropped and logged, never crashes.
 *
 * Interface choice: BATON_SOCKET_IFNAME with NCCL's syntax ("eth,ib" prefixes, "^docker"
 * excludes, "=eth0" exact), else the address this host uses to reach the rendezvous store
 * (a UDP socket connected to it, then getsockname): that is the interface peers can reach.
 * Node 0's workers are handed the store as 127.0.0.1, so in a job of several nodes a loopback
 * answer is replaced by the route to MASTER_ADDR (node 0's address as the others know it);
 * `lo` remains only when every node reaches the store over loopback, i.e. all are on this
 * host. The choice is logged at INFO.
 *
 * Transfers carry no header: every rank runs the same algorithm, so both ends know each
 * message's length. A message of at least STRIPE_MIN bytes is cut into nsocks stripes (64-byte
 * aligned), one per socket, progressed together with non-blocking calls and poll(). Received
 * bytes that are to be reduced land in a small per-socket window and are reduced out of it as
 * they arrive, in pieces of at least REDUCE_MIN bytes, so reduction overlaps the transfer and
 * the received bytes never leave the cache. A closed or reset connection fails the
 * collective with BT_ERR_REMOTE naming the peer; keepalive and TCP_USER_TIMEOUT (common/sock.c)
 * bound how long a silent dead link can go unnoticed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "collectives/reduce.h"
#include "collectives/transport/transport.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"
#include "common/wire.h"

BT_PARAM_INT(nsocks, "BATON_NSOCKS", 2)
BT_PARAM_INT(sockbuf, "BATON_SOCKBUF", 4 << 20)
BT_PARAM_STR(ifname, "BATON_SOCKET_IFNAME", "")

#define TCP_MAGIC 0x31305043544e5442ULL /* "BTNTCP01" */
#define TCP_VERSION 1
#define HELLO_BYTES 32
#define MAX_SOCKS 16
#define STRIPE_MIN (256 * 1024)
#define REDUCE_MIN (128 * 1024)
#define WIN_BYTES (4 * REDUCE_MIN) /* per stripe: the ring buffer received reductions land in */

struct bt__tcp {
    int nsocks;
    int lfd;
    int *fds;  /* [rank * nsocks + k]; -1 for ourselves */
    char *win; /* nsocks * WIN_BYTES, pre-faulted: where bytes to be reduced are received */
    char addr[128];
};

/* ---- interface choice ---- */

/* NCCL's BATON_SOCKET_IFNAME syntax: "^" excludes the list, "=" asks for exact names. */
static int ifname_match(const char *spec, const char *name)
{
    int exclude = 0, exact = 0;
    if (*spec == '^')
        exclude = 1, spec++;
    if (*spec == '=')
        exact = 1, spec++;
    int hit = 0;
    while (*spec && !hit) {
        size_t len = strcspn(spec, ",");
        if (len > 0)
            hit = exact ? strlen(name) == len && strncmp(name, spec, len) == 0
                        : strncmp(name, spec, len) == 0;
        spec += len + (spec[len] == ',');
    }
    return exclude ? !hit : hit;
}

static void ifa_host(const struct ifaddrs *ifa, char *out, size_t cap)
{
    const void *a = ifa->ifa_addr->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ifa->ifa_addr)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr;
    inet_ntop(ifa->ifa_addr->sa_family, a, out, (socklen_t)cap);
}

static int usable(const struct ifaddrs *ifa)
{
    return ifa->ifa_addr && (ifa->ifa_flags & IFF_UP) &&
           (ifa->ifa_addr->sa_family == AF_INET || ifa->ifa_addr->sa_family == AF_INET6);
}

/* First address (IPv4 first) of an interface matching spec. */
static int addr_by_spec(struct bt_comm *c, const char *spec, char *host, size_t cap, char *ifn,
                        size_t ifcap)
{
    struct ifaddrs *all = NULL;
    BT_SYSCHECK(getifaddrs(&all), "getifaddrs", &c->err);
    char seen[256] = "";
    int found = 0;
    for (int fam = 0; fam < 2 && !found; fam++)
        for (struct ifaddrs *i = all; i && !found; i = i->ifa_next) {
            if (!usable(i) || i->ifa_addr->sa_family != (fam ? AF_INET6 : AF_INET))
                continue;
            if (!fam && strlen(seen) + strlen(i->ifa_name) + 3 < sizeof(seen))
                snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), "%s%s",
                         seen[0] ? ", " : "", i->ifa_name);
            if (!ifname_match(spec, i->ifa_name))
                continue;
            ifa_host(i, host, cap);
            snprintf(ifn, ifcap, "%s", i->ifa_name);
            found = 1;
        }
    freeifaddrs(all);
    if (!found)
        return bt__err_set(&c->err, BT_ERR_INVALID_USAGE,
                           "BATON_SOCKET_IFNAME='%s' matches no interface that is up (have: "
                           "%s); hint: use a prefix such as eth, ^lo to exclude, =eth0 exact",
                           spec, seen);
    return BT_OK;
}

/* Name of the interface holding address host ("?" if none). */
static void ifname_of(const char *host, char *ifn, size_t cap)
{
    struct ifaddrs *all = NULL;
    snprintf(ifn, cap, "?");
    if (getifaddrs(&all) != 0)
        return;
    for (struct ifaddrs *i = all; i; i = i->ifa_next) {
        char h[INET6_ADDRSTRLEN];
        if (!usable(i))
            continue;
        ifa_host(i, h, sizeof(h));
        if (strcmp(h, host) == 0) {
            snprintf(ifn, cap, "%s", i->ifa_name);
            break;
        }
    }
    freeifaddrs(all);
}

/* The local address the kernel would use to reach host (a UDP socket connected to it). */
static int addr_by_route(struct bt_comm *c, const char *to, char *host, size_t cap, char *ifn,
                         size_t ifcap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", c->rdzv_port ? c->rdzv_port : 9);
    int gai = getaddrinfo(to, port, &hints, &res);
    if (gai != 0)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "resolving %s: %s", to, gai_strerror(gai));
    int s = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int ok = s >= 0 && connect(s, res->ai_addr, res->ai_addrlen) == 0 &&
             getsockname(s, (struct sockaddr *)&ss, &len) == 0;
    int e = errno;
    if (s >= 0)
        close(s);
    freeaddrinfo(res);
    if (!ok)
        return bt__err_set(&c->err, BT_ERR_SYSTEM,
                           "no route to %s: %s; hint: set "
                           "BATON_SOCKET_IFNAME",
                           to, strerror(e));
    const void *a = ss.ss_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, a, host, (socklen_t)cap);
    ifname_of(host, ifn, ifcap);
    return BT_OK;
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

/* The route to the store; node 0's launcher hands its own workers 127.0.0.1, so when that
 * gives a loopback address in a job of several nodes, the route to MASTER_ADDR (the address
 * the other nodes use for node 0) decides instead. */
static int addr_auto(struct bt_comm *c, char *host, size_t cap, char *ifn, size_t ifcap)
{
    BT_CHECK(addr_by_route(c, c->rdzv_host, host, cap, ifn, ifcap));
    const char *master = getenv("MASTER_ADDR");
    if (is_loopback(host) && c->nnodes > 1 && master && *master &&
        addr_by_route(c, master, host, cap, ifn, ifcap) != BT_OK) {
        bt__err_clear(&c->err);
        return addr_by_route(c, c->rdzv_host, host, cap, ifn, ifcap);
    }
    return BT_OK;
}

static int pick_address(struct bt_comm *c, char *host, size_t cap)
{
    char ifn[IF_NAMESIZE + 1];
    const char *spec = bt__param_ifname();
    if (*spec)
        BT_CHECK(addr_by_spec(c, spec, host, cap, ifn, sizeof(ifn)));
    else
        BT_CHECK(addr_auto(c, host, cap, ifn, sizeof(ifn)));
    BT_INFO(NET, "rank %d: TCP on interface %s address %s (%s)", c->rank, ifn, host,
            *spec ? "BATON_SOCKET_IFNAME" : "the route to the rendezvous store");
    return BT_OK;
}

/* ---- connection setup ---- */

static uint64_t job_cookie(const struct bt_comm *c)
{
    return bt__fnv1a_str(bt__fnv1a_str(BT_FNV1A_INIT, c->token_hash), c->prefix);
}

static void set_bufs(int fd)
{
    int b = (int)bt__param_sockbuf();
    if (b > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof(b));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof(b));
    }
}

/* A peer connection's TCP_USER_TIMEOUT: the collective's timeout (BATON_TIMEOUT) when that is
 * longer than the keepalive knobs' (9 s). Linux applies it to a zero window too: a peer that is
 * alive but not reading (a rank 10 s late into a large allreduce, a checkpoint) would otherwise
 * abort the connection with ETIMEDOUT, failing a collective that still had minutes to wait. A
 * dead peer is still noticed: keepalive on idle links, the launchers' heartbeats, the timeout. */
static void set_user_timeout(int fd)
{
    unsigned ms = 0;
    socklen_t len = sizeof(ms);
    double coll = bt__comm_timeout_s() * 1000.0;
    if (getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len) == 0 && coll > ms) {
        ms = coll < 4e9 ? (unsigned)coll : 4000000000u;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
}

static int connect_peer(struct bt_comm *c, int peer, const char *addrs, int64_t deadline)
{
    struct bt__tcp *t = c->tcp;
    char key[96], host[256];
    void *v = NULL;
    size_t len;
    int port;
    snprintf(key, sizeof(key), "%stcp/%d", c->prefix, peer);
    if (addrs) /* a child's, exchanged over its parent (split.c) */
        v = strndup(addrs + (size_t)peer * BT__TCP_ADDR_BYTES, BT__TCP_ADDR_BYTES - 1);
    else if (bt__store_get(c->store, key, &v, &len, bt__comm_timeout_s()) != BT_OK)
        return bt__err_set(&c->err, BT_ERR_REMOTE, "waiting for rank %d's TCP address: %s", peer,
                           bt__store_error(c->store));
    int bad = !v || bt__parse_endpoint(v, host, sizeof(host), &port);
    free(v);
    if (bad)
        return bt__err_set(&c->err, BT_ERR_INTERNAL, "rank %d published a bad address", peer);
    for (int k = 0; k < t->nsocks; k++) {
        struct bt__connect_opts o = {.deadline_ns = deadline, .what = "peer rank"};
        struct bt__err e = {0};
        int fd, rc = bt__sock_connect(host, port, &o, &fd, &e);
        if (rc != BT_OK)
            return bt__err_set(&c->err, rc, "rank %d: %s", peer, e.msg);
        t->fds[peer * t->nsocks + k] = fd;
        set_bufs(fd);
        set_user_timeout(fd);
        uint8_t h[HELLO_BYTES] = {0};
        bt__put_le64(h, TCP_MAGIC);
        bt__put_le32(h + 8, TCP_VERSION);
        bt__put_le32(h + 12, (uint32_t)c->rank);
        bt__put_le32(h + 16, (uint32_t)k);
        bt__put_le32(h + 20, (uint32_t)t->nsocks);
        bt__put_le64(h + 24, job_cookie(c));
        if (bt__sock_send_all(fd, h, sizeof(h), deadline, &e) != BT_OK)
            return bt__err_set(&c->err, BT_ERR_REMOTE, "hello to rank %d: %s", peer, e.msg);
    }
    return BT_OK;
}

/* Reads and checks one connector's hello; files the socket under its rank and index. */
static int accept_one(struct bt_comm *c, int fd, int64_t deadline)
{
    struct bt__tcp *t = c->tcp;
    uint8_t h[HELLO_BYTES];
    struct bt__err e = {0};
    char peer[64];
    bt__sock_peer_str(fd, peer, sizeof(peer));
    int64_t dl = bt__deadline_in(10);
    if (bt__sock_recv_all(fd, h, sizeof(h), dl < deadline ? dl : deadline, &e) != BT_OK) {
        BT_WARN(NET, "rank %d: dropped a connection from %s: %s", c->rank, peer, e.msg);
        close(fd);
        return BT_OK;
    }
    uint32_t r = bt__le32(h + 12), k = bt__le32(h + 16);
    if (bt__le64(h) != TCP_MAGIC || bt__le32(h + 8) != TCP_VERSION ||
        bt__le64(h + 24) != job_cookie(c) || bt__le32(h + 20) != (uint32_t)t->nsocks ||
        r <= (uint32_t)c->rank || r >= (uint32_t)c->size || k >= (uint32_t)t->nsocks ||
        t->fds[r * t->nsocks + k] >= 0) {
        BT_WARN(NET,
                "rank %d: dropped a connection from %s: not a peer of this job (or "
                "BATON_NSOCKS differs)",
                c->rank, peer);
        close(fd);
        return BT_OK;
    }
    t->fds[r * t->nsocks + k] = fd;
    set_user_timeout(fd);
    return BT_OK;
}

static int accept_peers(struct bt_comm *c, int64_t deadline)
{
    struct bt__tcp *t = c->tcp;
    int want = (c->size - 1 - c->rank) * t->nsocks, have = 0;
    while (have < want) {
        struct pollfd p = {.fd = t->lfd, .events = POLLIN};
        int ms = bt__ms_left(deadline);
        if (ms == 0)
            return bt__err_set(&c->err, BT_ERR_TIMEOUT,
                               "rank %d: only %d of %d TCP connections from higher ranks "
                               "arrived; hint: is a firewall in the way of %s?",
                               c->rank, have, want, t->addr);
        if (poll(&p, 1, ms < 0 || ms > 100 ? 100 : ms) <= 0)
            continue;
        int fd;
        struct bt__err e = {0};
        if (bt__sock_accept(t->lfd, &fd, &e) != BT_OK)
            return bt__err_set(&c->err, BT_ERR_SYSTEM, "%s", e.msg);
        if (fd < 0)
            continue;
        BT_CHECK(accept_one(c, fd, deadline));
        have = 0;
        for (int i = (c->rank + 1) * t->nsocks; i < c->size * t->nsocks; i++)
            have += t->fds[i] >= 0;
    }
    return BT_OK;
}

int bt__tcp_listen(struct bt_comm *c, int *lfd, char *addr)
{
    char host[INET6_ADDRSTRLEN];
    int port;
    struct bt__err e = {0};
    BT_CHECK(pick_address(c, host, sizeof(host)));
    if (bt__sock_listen(host, 0, 1024, lfd, &port, &e) != BT_OK)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "%s", e.msg);
    set_bufs(*lfd);
    snprintf(addr, BT__TCP_ADDR_BYTES, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    return BT_OK;
}

static int listen_and_publish(struct bt_comm *c, struct bt__tcp_preset *pre)
{
    struct bt__tcp *t = c->tcp;
    char key[96];
    if (pre) {
        t->lfd = pre->lfd;
        pre->lfd = -1;
        snprintf(t->addr, sizeof(t->addr), "%.*s", BT__TCP_ADDR_BYTES - 1,
                 pre->addrs + (size_t)c->rank * BT__TCP_ADDR_BYTES);
        return BT_OK;
    }
    BT_CHECK(bt__tcp_listen(c, &t->lfd, t->addr));
    snprintf(key, sizeof(key), "%stcp/%d", c->prefix, c->rank);
    if (bt__store_set(c->store, key, t->addr, strlen(t->addr)) != BT_OK)
        return bt__err_set(&c->err, BT_ERR_REMOTE, "publishing the TCP address: %s",
                           bt__store_error(c->store));
    return BT_OK;
}

int bt__tcp_create(struct bt_comm *c, int nsocks, struct bt__tcp_preset *pre)
{
    struct bt__tcp *t = calloc(1, sizeof(*t));
    if (!t)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "tcp: out of memory");
    c->tcp = t;
    t->lfd = -1;
    t->nsocks = nsocks > 0 ? nsocks : (int)bt__param_nsocks();
    if (t->nsocks < 1 || t->nsocks > MAX_SOCKS)
        return bt__err_set(&c->err, BT_ERR_INVALID_USAGE, "BATON_NSOCKS=%d is not in 1..%d",
                           t->nsocks, MAX_SOCKS);
    t->fds = malloc(sizeof(int) * (size_t)c->size * (size_t)t->nsocks);
    if (!t->fds)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "tcp: out of memory");
    for (int i = 0; i < c->size * t->nsocks; i++)
        t->fds[i] = -1;
    if (!(t->win = malloc((size_t)t->nsocks * WIN_BYTES)))
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "tcp: out of memory");
    memset(t->win, 0, (size_t)t->nsocks * WIN_BYTES); /* fault the pages in now, not later */
    int64_t deadline = bt__deadline_in(bt__comm_timeout_s());
    BT_CHECK(listen_and_publish(c, pre));
    for (int p = 0; p < c->rank; p++)
        BT_CHECK(connect_peer(c, p, pre ? pre->addrs : NULL, deadline));
    BT_CHECK(accept_peers(c, deadline));
    BT_INFO(NET, "rank %d: TCP mesh up, %d socket(s) per peer, listening on %s", c->rank, t->nsocks,
            t->addr);
    return BT_OK;
}

static void tcp_destroy(struct bt_comm *c)
{
    struct bt__tcp *t = c->tcp;
    if (!t)
        return;
    for (int i = 0; t->fds && i < c->size * t->nsocks; i++)
        if (t->fds[i] >= 0)
            close(t->fds[i]);
    if (t->lfd >= 0)
        close(t->lfd);
    free(t->fds);
    free(t->win);
    free(t);
    c->tcp = NULL;
}

/* ---- transfers ---- */

/* A stripe is one socket's share of a message. Bytes that are to be reduced are not received
 * into the caller's rbuf but into a small per-socket ring window (WIN_BYTES, pre-faulted and
 * reused), and reduced out of it into red_dst as they arrive: the window stays in cache, where
 * receiving a 32 MiB chunk into a 32 MiB temporary would stream it through memory twice. */
struct stripe {
    int fd, peer, op;     /* op: BT_SOCK_SEND or BT_SOCK_RECV */
    char *buf;            /* send: the bytes; recv: where they land; reducing recv: the window */
    size_t len, off, red; /* bytes: length, moved, reduced (recv) */
    char *red_dst;
};

struct xfer_state {
    struct stripe st[2 * MAX_SOCKS];
    int n;
};

/* Cuts len bytes into stripes for peer: 1 below STRIPE_MIN, else nsocks, 64-byte aligned. */
static void add_stripes(struct bt__tcp *t, struct xfer_state *x, int peer, int op, char *buf,
                        size_t len, char *red_dst)
{
    int ns = len < STRIPE_MIN ? 1 : t->nsocks;
    size_t per = ((len + (size_t)ns - 1) / (size_t)ns + 63) & ~(size_t)63;
    for (int k = 0; k < ns; k++) {
        size_t a = (size_t)k * per < len ? (size_t)k * per : len;
        size_t b = a + per < len ? a + per : len;
        if (b == a && len > 0)
            continue;
        struct stripe *s = &x->st[x->n++];
        *s = (struct stripe){.fd = t->fds[peer * t->nsocks + k],
                             .peer = peer,
                             .op = op,
                             .buf = red_dst ? t->win + (size_t)k * WIN_BYTES : buf + a,
                             .len = b - a,
                             .red_dst = red_dst ? red_dst + a : NULL};
    }
}

/* Receives into the window what fits: up to its end, never over unreduced bytes. */
static int recv_window(struct stripe *s, struct bt__err *e)
{
    size_t w = s->off % WIN_BYTES, n = s->len - s->off, got = 0;
    if (n > WIN_BYTES - w)
        n = WIN_BYTES - w;
    if (n > WIN_BYTES - (s->off - s->red))
        n = WIN_BYTES - (s->off - s->red);
    int rc = bt__sock_progress(s->fd, BT_SOCK_RECV, s->buf + w, n, &got, e);
    s->off += got;
    return rc;
}

/* Reduces what arrived, in pieces of at least REDUCE_MIN bytes (all of it at the end). The
 * window's size and every stripe's start are multiples of the element size, so a piece that
 * reaches the window's end ends on an element boundary. */
static void reduce_arrived(const struct bt__xfer *x, struct stripe *s)
{
    size_t es = bt_dtype_size(x->dtype), avail = s->off - s->red;
    if (avail < REDUCE_MIN && s->off < s->len)
        return;
    avail -= avail % es;
    while (avail > 0) {
        size_t w = s->red % WIN_BYTES, n = avail < WIN_BYTES - w ? avail : WIN_BYTES - w;
        void *in = s->buf + w, *dst = s->red_dst + s->red;
        if (x->incoming_first)
            bt__reduce2(x->dtype, x->op, dst, in, dst, n / es);
        else
            bt__reduce2(x->dtype, x->op, dst, dst, in, n / es);
        s->red += n;
        avail -= n;
    }
}

/* One non-blocking pass over every unfinished stripe: *moved when any byte moved. */
static int progress_all(struct bt_comm *c, const struct bt__xfer *x, struct xfer_state *xs,
                        int *moved, int *done)
{
    *done = 1;
    for (int i = 0; i < xs->n; i++) {
        struct stripe *s = &xs->st[i];
        if (s->off == s->len && (!s->red_dst || s->red == s->len))
            continue;
        size_t before = s->off;
        struct bt__err e = {0};
        int rc = s->red_dst ? recv_window(s, &e)
                            : bt__sock_progress(s->fd, s->op, s->buf, s->len, &s->off, &e);
        if (rc != BT_OK)
            return bt__comm_fail(c, BT_ERR_REMOTE,
                                 "%s #%llu: rank %d: %s; hint: that rank died or its network "
                                 "went away, see its log",
                                 c->coll_name, (unsigned long long)c->coll_seq, s->peer, e.msg);
        *moved |= s->off != before;
        if (s->red_dst)
            reduce_arrived(x, s);
        if (s->off < s->len || (s->red_dst && s->red < s->len))
            *done = 0;
    }
    return BT_OK;
}

static void stripe_names(void *arg, char *out, size_t cap)
{
    struct xfer_state *xs = arg;
    size_t n = 0;
    int last = -1;
    out[0] = '\0';
    for (int i = 0; i < xs->n && n + 32 < cap; i++) {
        struct stripe *s = &xs->st[i];
        if (s->off == s->len || s->peer == last)
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%d (%s)", n ? ", " : "", s->peer,
                              s->op == BT_SOCK_SEND ? "sending to it" : "receiving from it");
        last = s->peer;
    }
}

static int wait_ready(struct bt_comm *c, struct xfer_state *xs, struct bt__wait *w)
{
    struct pollfd p[2 * MAX_SOCKS];
    int np = 0;
    for (int i = 0; i < xs->n; i++)
        if (xs->st[i].off < xs->st[i].len)
            p[np++] = (struct pollfd){.fd = xs->st[i].fd,
                                      .events = xs->st[i].op == BT_SOCK_SEND ? POLLOUT : POLLIN};
    if (np > 0)
        poll(p, (nfds_t)np, 100);
    return bt__wait_tick(c, w, stripe_names, xs);
}

static int tcp_sendrecv(struct bt_comm *c, const struct bt__xfer *x)
{
    struct bt__tcp *t = c->tcp;
    struct xfer_state xs = {.n = 0};
    if (x->send_to >= 0 && x->slen > 0)
        add_stripes(t, &xs, x->send_to, BT_SOCK_SEND, (char *)x->sbuf, x->slen, NULL);
    if (x->recv_from >= 0 && x->rlen > 0)
        add_stripes(t, &xs, x->recv_from, BT_SOCK_RECV, x->rbuf, x->rlen, x->red_dst);
    struct bt__wait w;
    int started = 0;
    for (int idle = 0;;) {
        int moved = 0, done;
        BT_CHECK(progress_all(c, x, &xs, &moved, &done));
        if (done)
            return BT_OK;
        if (moved) {
            idle = 0;
            continue;
        }
        if (++idle < 8)
            continue;
        if (!started) {
            bt__wait_start(c, &w);
            started = 1;
        }
        BT_CHECK(wait_ready(c, &xs, &w));
        idle = 0;
    }
}

int bt__tcp_fd(struct bt_comm *c, int peer)
{
    return c->tcp->fds[peer * c->tcp->nsocks];
}

const struct bt__transport_ops bt__tcp_ops = {
    .name = "tcp",
    .sendrecv = tcp_sendrecv,
    .destroy = tcp_destroy,
};
