/* sock.h: all socket I/O goes through here.
 *
 * One progress/wait pair (bt__sock_progress, bt__sock_wait) handles short reads and writes,
 * EINTR/EAGAIN, peer close (BT_ERR_REMOTE), MSG_NOSIGNAL, deadlines and an abort flag.
 * Sockets are CLOEXEC, non-blocking, TCP_NODELAY, keepalive on. bt__sock_connect retries with
 * a new socket after every failure, with bounded backoff, and retries name resolution while
 * a name does not resolve yet (a Kubernetes headless Service before its pod is Ready).
 * This file knows nothing of any protocol.
 */
#ifndef BT_COMMON_SOCK_H
#define BT_COMMON_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/err.h"

#define BT_DEADLINE_NONE INT64_MAX

/* Monotonic clock in nanoseconds. */
int64_t bt__now_ns(void);
/* An absolute deadline seconds from now; seconds < 0 means none (BT_DEADLINE_NONE). */
int64_t bt__deadline_in(double seconds);
/* Milliseconds left until deadline, clamped to [0, INT32_MAX]; -1 for BT_DEADLINE_NONE. */
int bt__ms_left(int64_t deadline_ns);

enum bt__sock_op { BT_SOCK_SEND = 0, BT_SOCK_RECV = 1 };

/* Sets CLOEXEC-independent options on a connected socket: non-blocking, TCP_NODELAY and
 * keepalive (idle/interval/count from BATON_KEEPALIVE_*; defaults detect a dead peer in ~10 s).*/
void bt__sock_tune(int fd);

/* Listens on host (NULL or "" for all addresses) and port (0: an ephemeral one). *fd is
 * non-blocking and CLOEXEC; *bound_port (may be NULL) gets the port actually bound. */
int bt__sock_listen(const char *host, int port, int backlog, int *fd, int *bound_port,
                    struct bt__err *err);

/* Accepts one connection from a non-blocking listener: *fd = -1 when none is pending. */
int bt__sock_accept(int lfd, int *fd, struct bt__err *err);

struct bt__connect_opts {
    int64_t deadline_ns;     /* give up after this (BT_DEADLINE_NONE: never) */
    const char *what;        /* shown in errors, e.g. "rendezvous store" */
    const char *hint;        /* appended as "; hint: ..." to the final error, or NULL */
    double progress_every_s; /* call progress() at most this often (0: never) */
    void (*progress)(void *arg, int attempt, double waited_s, const char *why);
    void *progress_arg;
    const volatile int *abort_flag; /* stop early when it becomes non-zero (may be NULL) */
};

/* Connects to host:port, retrying refused/unreachable/unresolvable with a fresh socket and
 * backoff (50 ms doubling to 1 s) until opts->deadline_ns. The connected socket is tuned. */
int bt__sock_connect(const char *host, int port, const struct bt__connect_opts *opts, int *fd,
                     struct bt__err *err);

/* One non-blocking step of sending or receiving buf[*off..len). Advances *off. Returns BT_OK
 * (possibly with no progress: EAGAIN), BT_ERR_REMOTE when the peer closed or reset,
 * BT_ERR_SYSTEM on other errors. */
int bt__sock_progress(int fd, int op, void *buf, size_t len, size_t *off, struct bt__err *err);

/* Progresses until *off == len, waiting with poll between steps; BT_ERR_TIMEOUT at the
 * deadline, BT_ERR_REMOTE when *abort_flag becomes non-zero (checked every 100 ms). */
int bt__sock_wait(int fd, int op, void *buf, size_t len, size_t *off, int64_t deadline_ns,
                  const volatile int *abort_flag, struct bt__err *err);

static inline int bt__sock_send_all(int fd, const void *buf, size_t len, int64_t deadline_ns,
                                    struct bt__err *err)
{
    size_t off = 0;
    return bt__sock_wait(fd, BT_SOCK_SEND, (void *)buf, len, &off, deadline_ns, NULL, err);
}

static inline int bt__sock_recv_all(int fd, void *buf, size_t len, int64_t deadline_ns,
                                    struct bt__err *err)
{
    size_t off = 0;
    return bt__sock_wait(fd, BT_SOCK_RECV, buf, len, &off, deadline_ns, NULL, err);
}

/* "198.51.100.2:41234" for the peer of fd (or "?" when unknown). */
void bt__sock_peer_str(int fd, char *out, size_t cap);
/* "host:port" text of a sockaddr. */
void bt__sockaddr_str(const struct sockaddr *sa, char *out, size_t cap);

/* Splits "host:port" (or "[v6]:port") into host and port; -1 on a malformed endpoint. */
int bt__parse_endpoint(const char *s, char *host, size_t host_cap, int *port);

#endif
