/* sock.c: the socket progress/wait layer, listen/accept/connect with retries. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"

BT_PARAM_INT(ka_idle, "BATON_KEEPALIVE_IDLE", 3)
BT_PARAM_INT(ka_intvl, "BATON_KEEPALIVE_INTVL", 2)
BT_PARAM_INT(ka_cnt, "BATON_KEEPALIVE_CNT", 3)

int64_t bt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t bt__deadline_in(double seconds)
{
    if (seconds < 0)
        return BT_DEADLINE_NONE;
    return bt__now_ns() + (int64_t)(seconds * 1e9);
}

int bt__ms_left(int64_t deadline_ns)
{
    if (deadline_ns == BT_DEADLINE_NONE)
        return -1;
    int64_t left = (deadline_ns - bt__now_ns() + 999999) / 1000000;
    if (left < 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

void bt__sock_tune(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    int idle = (int)bt__param_ka_idle(), intvl = (int)bt__param_ka_intvl();
    int cnt = (int)bt__param_ka_cnt();
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    /* Unacknowledged data also fails the connection after this long (a pulled cable). */
    unsigned user_to = (unsigned)((idle + intvl * cnt) * 1000);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_to, sizeof(user_to));
}

void bt__sockaddr_str(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

void bt__sock_peer_str(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    bt__sockaddr_str((struct sockaddr *)&ss, out, cap);
}

int bt__parse_endpoint(const char *s, char *host, size_t host_cap, int *port)
{
    if (!s || !*s)
        return -1;
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= host_cap)
        return -1;
    int64_t p;
    if (bt__parse_int(colon + 1, &p) != 0 || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int bt__sock_listen(const char *host, int port, int backlog, int *fd, int *bound_port,
                    struct bt__err *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (gai != 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "listen on %s:%d: %s", host ? host : "*", port,
                           gai_strerror(gai));
    /* Prefer IPv4 when listening on all addresses: pods and netns tests are IPv4. */
    struct addrinfo *ai = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            ai = a;
            break;
        }
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) {
        freeaddrinfo(res);
        return bt__err_set(err, BT_ERR_SYSTEM, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, ai->ai_addr, ai->ai_addrlen) != 0 || listen(s, backlog) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(s);
        return bt__err_set(err, BT_ERR_SYSTEM, "listen on %s:%d: %s%s", host ? host : "*", port,
                           strerror(e),
                           e == EADDRINUSE ? "; hint: another job or program holds this port, "
                                             "pick another with --rdzv-port"
                                           : "");
    }
    freeaddrinfo(res);
    if (bound_port) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        getsockname(s, (struct sockaddr *)&ss, &len);
        *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd = s;
    return BT_OK;
}

int bt__sock_accept(int lfd, int *fd, struct bt__err *err)
{
    int s;
    do {
        s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    } while (s < 0 && errno == EINTR);
    if (s < 0) {
        *fd = -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO)
            return BT_OK;
        return bt__err_set(err, BT_ERR_SYSTEM, "accept: %s", strerror(errno));
    }
    bt__sock_tune(s);
    *fd = s;
    return BT_OK;
}

/* One connect attempt to one resolved address, bounded by deadline (and at most 5 s), given up
 * within 100 ms of *abort_flag becoming non-zero (ECANCELED). 0 on success, else errno. */
static int connect_once(const struct addrinfo *ai, int64_t deadline_ns,
                        const volatile int *abort_flag, int *fd)
{
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return errno;
    int rc = connect(s, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(s);
        return e;
    }
    if (rc != 0) {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int64_t attempt_dl = bt__now_ns() + 5000000000LL;
        if (attempt_dl > deadline_ns)
            attempt_dl = deadline_ns;
        int n, ms;
        do {
            if (abort_flag && *abort_flag) {
                close(s);
                return ECANCELED;
            }
            ms = bt__ms_left(attempt_dl);
            n = poll(&p, 1, abort_flag && (ms < 0 || ms > 100) ? 100 : ms);
        } while ((n < 0 && errno == EINTR) || (n == 0 && ms != 0 && bt__ms_left(attempt_dl) != 0));
        int soerr = ETIMEDOUT;
        socklen_t sl = sizeof(soerr);
        if (n == 1)
            getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            close(s);
            return soerr;
        }
    }
    bt__sock_tune(s);
    *fd = s;
    return 0;
}

static int sleep_backoff(int64_t deadline_ns, int *backoff_ms, const volatile int *abort_flag)
{
    int ms = *backoff_ms;
    int left = bt__ms_left(deadline_ns);
    if (left >= 0 && left < ms)
        ms = left;
    for (int slept = 0; slept < ms; slept += 50) {
        if (abort_flag && *abort_flag)
            return -1;
        struct timespec ts = {0, (ms - slept < 50 ? ms - slept : 50) * 1000000L};
        nanosleep(&ts, NULL);
    }
    *backoff_ms = *backoff_ms * 2 > 1000 ? 1000 : *backoff_ms * 2;
    return 0;
}

int bt__sock_connect(const char *host, int port, const struct bt__connect_opts *opts, int *fd,
                     struct bt__err *err)
{
    char portstr[16], why[256] = "not tried";
    snprintf(portstr, sizeof(portstr), "%d", port);
    int64_t start = bt__now_ns(), last_progress = start;
    int backoff_ms = 50;
    const char *what = opts && opts->what ? opts->what : "peer";
    int64_t deadline = opts ? opts->deadline_ns : BT_DEADLINE_NONE;
    *fd = -1;
    for (int attempt = 1;; attempt++) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int gai = getaddrinfo(host, portstr, &hints, &res);
        if (gai != 0) {
            snprintf(why, sizeof(why), "name '%s' does not resolve (%s)", host,
                     gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        } else {
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int e = connect_once(ai, deadline, opts ? opts->abort_flag : NULL, fd);
                if (e == 0)
                    break;
                snprintf(why, sizeof(why), "%s", strerror(e));
            }
            freeaddrinfo(res);
            if (*fd >= 0) {
                BT_INFO(NET, "connected to %s %s:%d after %d attempt(s)", what, host, port,
                        attempt);
                return BT_OK;
            }
        }
        int64_t now = bt__now_ns();
        if (opts && opts->progress && opts->progress_every_s > 0 &&
            now - last_progress >= (int64_t)(opts->progress_every_s * 1e9)) {
            opts->progress(opts->progress_arg, attempt, (double)(now - start) / 1e9, why);
            last_progress = now;
        }
        if (now >= deadline ||
            sleep_backoff(deadline, &backoff_ms, opts ? opts->abort_flag : NULL) != 0 ||
            bt__now_ns() >= deadline)
            return bt__err_set(err, BT_ERR_TIMEOUT,
                               "connect to %s %s:%d: %s, attempt %d, gave up after %.1f s%s%s",
                               what, host, port, why, attempt, (double)(bt__now_ns() - start) / 1e9,
                               opts && opts->hint ? "; hint: " : "",
                               opts && opts->hint ? opts->hint : "");
    }
}

int bt__sock_progress(int fd, int op, void *buf, size_t len, size_t *off, struct bt__err *err)
{
    while (*off < len) {
        ssize_t n = op == BT_SOCK_SEND
                        ? send(fd, (char *)buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(fd, (char *)buf + *off, len - *off, MSG_DONTWAIT);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n == 0 && op == BT_SOCK_RECV) {
            char peer[64];
            bt__sock_peer_str(fd, peer, sizeof(peer));
            return bt__err_set(err, BT_ERR_REMOTE, "connection closed by peer %s", peer);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return BT_OK;
        int e = errno;
        char peer[64];
        bt__sock_peer_str(fd, peer, sizeof(peer));
        if (e == ECONNRESET || e == EPIPE || e == ETIMEDOUT || e == EHOSTUNREACH ||
            e == ENETUNREACH || e == ENOTCONN)
            return bt__err_set(err, BT_ERR_REMOTE, "%s peer %s: %s",
                               op == BT_SOCK_SEND ? "send to" : "recv from", peer, strerror(e));
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: %s", op == BT_SOCK_SEND ? "send" : "recv",
                           strerror(e));
    }
    return BT_OK;
}

int bt__sock_wait(int fd, int op, void *buf, size_t len, size_t *off, int64_t deadline_ns,
                  const volatile int *abort_flag, struct bt__err *err)
{
    for (;;) {
        BT_CHECK(bt__sock_progress(fd, op, buf, len, off, err));
        if (*off >= len)
            return BT_OK;
        if (abort_flag && *abort_flag)
            return bt__err_set(err, BT_ERR_REMOTE, "aborted while waiting on a peer");
        int ms = bt__ms_left(deadline_ns);
        if (ms == 0)
            return bt__err_set(err, BT_ERR_TIMEOUT, "%s timed out (%zu of %zu bytes)",
                               op == BT_SOCK_SEND ? "send" : "recv", *off, len);
        if (abort_flag && (ms < 0 || ms > 100))
            ms = 100;
        struct pollfd p = {.fd = fd, .events = op == BT_SOCK_SEND ? POLLOUT : POLLIN};
        int n = poll(&p, 1, ms);
        if (n < 0 && errno != EINTR)
            return bt__err_set(err, BT_ERR_SYSTEM, "poll: %s", strerror(errno));
    }
}
