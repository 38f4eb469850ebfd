/* store.h: the rendezvous key-value store, client and server.
 *
 * The server is one epoll loop (no thread per client) that holds 10,000+ clients. The wire
 * protocol is in proto.h: fixed-width little-endian frames, a magic+version handshake and an
 * HMAC-SHA256 challenge-response over the job token. Keys are strings, values are bytes.
 *
 * A client handle is used by one thread at a time; every blocking call has a timeout. Errors
 * are kept in the handle (bt__store_error()); the client is not sticky: a timed-out GET can
 * be retried on the same handle, but a BT_ERR_REMOTE/BT_ERR_AUTH/BT_ERR_SYSTEM leaves it
 * unusable (close it and connect again).
 */
#ifndef BT_RENDEZVOUS_STORE_H
#define BT_RENDEZVOUS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/droplog.h"
#include "common/err.h"
#include "common/sock.h"

/* ---- client ---- */

struct bt__store;

/* Connects and authenticates with token (any length; "" is allowed but then anyone can join).
 * copts bounds the retries (see bt__sock_connect); NULL means 30 s. On failure *out is NULL
 * and err holds why (BT_ERR_AUTH: wrong token or version). The caller owns *out. */
int bt__store_connect(const char *host, int port, const char *token,
                      const struct bt__connect_opts *copts, struct bt__store **out,
                      struct bt__err *err);
/* bt__store_connect for a worker: through this node's relay (relay.c) when BATON_RDZV_RELAY
 * names one (the launcher sets it), else directly. Errors name the store's host:port as
 * always; one that cannot reach the relay says so and names its launcher. */
int bt__store_connect_worker(const char *host, int port, const char *token,
                             const struct bt__connect_opts *copts, struct bt__store **out,
                             struct bt__err *err);
/* bt__store_connect_worker through the relay at address relay ("@baton-relay-..."), whatever
 * BATON_RDZV_RELAY says: how a launcher's own connections ride on its relay's. */
int bt__store_connect_relay(const char *relay, const char *host, int port, const char *token,
                            const struct bt__connect_opts *copts, struct bt__store **out,
                            struct bt__err *err);
/* Frees s but keeps its connected, authenticated socket, which is returned (the relay's). */
int bt__store_detach(struct bt__store *s);
/* Says goodbye (clearing any last will) and frees s. NULL is accepted. */
void bt__store_close(struct bt__store *s);
/* Frees s without saying goodbye, as if the process had died (tests of last wills). */
void bt__store_abandon(struct bt__store *s);
/* The detail of the last error on s. */
const char *bt__store_error(const struct bt__store *s);

int bt__store_set(struct bt__store *s, const char *key, const void *val, size_t len);
/* Blocks until key exists or timeout_s passes (BT_ERR_TIMEOUT). *val is malloc'd (NUL
 * terminated one past *len, so text values are C strings) and owned by the caller. */
int bt__store_get(struct bt__store *s, const char *key, void **val, size_t *len, double timeout_s);
/* Atomically adds delta to the int64 counter at key (missing: 0) and returns the new value. */
int bt__store_add(struct bt__store *s, const char *key, int64_t delta, int64_t *result);
/* If key's value equals expected (a missing key equals an empty expected, elen 0), sets it to
 * desired. *actual (malloc'd, may be NULL to ignore) gets the value after the call. */
int bt__store_compare_set(struct bt__store *s, const char *key, const void *expected, size_t elen,
                          const void *desired, size_t dlen, void **actual, size_t *alen);
/* Blocks until every key exists; on timeout the error names the keys still missing. */
int bt__store_wait(struct bt__store *s, const char *const *keys, int nkeys, double timeout_s);
/* Blocks until every key exists, then returns all values (each malloc'd, owned by caller). */
int bt__store_multi_get(struct bt__store *s, const char *const *keys, int nkeys, void **vals,
                        size_t *lens, double timeout_s);
int bt__store_multi_set(struct bt__store *s, const char *const *keys, int nkeys,
                        const void *const *vals, const size_t *lens);
/* *deleted (may be NULL) is 1 when the key existed. */
int bt__store_delete(struct bt__store *s, const char *key, int *deleted);
int bt__store_ping(struct bt__store *s);
/* This end's address of the connection, numeric ("10.0.0.5"), into out; 0, or -1. What the
 * other nodes can reach this one at (elastic jobs: MASTER_ADDR of the node that is rank 0). */
int bt__store_local_addr(const struct bt__store *s, char *out, size_t n);
/* Registers a last will: when this connection drops without bt__store_close(), the server
 * sets key to val unless key already exists (first failure wins). len 0 cancels it. */
int bt__store_last_will(struct bt__store *s, const char *key, const void *val, size_t len);

/* Asks the store to treat this connection as lost (close it, fire its last will) when it
 * sends no frame for ttl_s seconds; every request renews the lease. 0 cancels it. */
int bt__store_heartbeat(struct bt__store *s, double ttl_s);
/* Sets the seconds a request on s may take beyond its own timeout (default
 * BATON_RDZV_IO_TIMEOUT): how long a silent store is waited for before the call fails. */
void bt__store_set_io_timeout(struct bt__store *s, double io_s);
/* 1 when s failed in a way that left it unusable (a socket error or a store that did not
 * answer in time), 0 when the last error was an answer (a key still missing, a refusal). */
int bt__store_broken(const struct bt__store *s);

/* Another backend behind the same calls (the launcher's etcd rendezvous): a table of the calls
 * above, each taking the backend's own handle. close(impl, goodbye): goodbye 0 is abandon. */
struct bt__store_ops {
    int (*set)(void *impl, const char *key, const void *val, size_t len);
    int (*get)(void *impl, const char *key, void **val, size_t *len, double timeout_s);
    int (*add)(void *impl, const char *key, int64_t delta, int64_t *result);
    int (*compare_set)(void *impl, const char *key, const void *expected, size_t elen,
                       const void *desired, size_t dlen, void **actual, size_t *alen);
    int (*wait)(void *impl, const char *const *keys, int nkeys, double timeout_s);
    int (*multi_get)(void *impl, const char *const *keys, int nkeys, void **vals, size_t *lens,
                     double timeout_s);
    int (*del)(void *impl, const char *key, int *deleted);
    int (*local_addr)(void *impl, char *out, size_t n);
    int (*last_will)(void *impl, const char *key, const void *val, size_t len);
    int (*heartbeat)(void *impl, double ttl_s);
    void (*set_io_timeout)(void *impl, double io_s);
    int (*broken)(void *impl);
    const char *(*error)(void *impl);
    void (*close)(void *impl, int goodbye);
};
/* A store handle whose calls go to ops with impl; the handle owns impl (freed by close).
 * Calls the table lacks (multi_set, ping) are not used on such a handle. */
int bt__store_wrap(const struct bt__store_ops *ops, void *impl, struct bt__store **out);

/* ---- relay (relay.c): a node's workers reach the store through one connection ---- */

struct bt__store_relay;

/* Starts a relay to the store at host:port with the job token: an abstract Unix socket
 * (bt__store_relay_address, for the workers' BATON_RDZV_RELAY) served by a thread. It dials
 * the store when its first worker connects, and again after the store's connection is lost.
 * The caller owns *out. */
int bt__store_relay_create(const char *host, int port, const char *token,
                           struct bt__store_relay **out, struct bt__err *err);
/* Hands the relay fd, a connection to its store authenticated with the job token (from
 * bt__store_detach), which it uses from now on instead of dialing: the launcher's own, so that
 * its connections (bt__store_connect_relay) and its workers' are channels of one. A connection
 * the relay held before is closed and its channels hung up on. The relay owns fd. */
void bt__store_relay_adopt(struct bt__store_relay *r, int fd);
/* "@baton-relay-PID-NONCE"; valid while r lives. */
const char *bt__store_relay_address(const struct bt__store_relay *r);
/* Workers connected to the relay now (for tests). */
int bt__store_relay_nclients(const struct bt__store_relay *r);
/* Stops the thread, hangs up on every worker, closes the store connection. NULL accepted. */
void bt__store_relay_destroy(struct bt__store_relay *r);

/* ---- server ---- */

struct bt__store_server;

/* Creates a server listening on host (NULL: all addresses) and port (0: ephemeral; the port
 * bound is in *bound_port). Raises RLIMIT_NOFILE where allowed. The caller owns *out. */
int bt__store_server_create(const char *host, int port, const char *token,
                            struct bt__store_server **out, int *bound_port, struct bt__err *err);
/* Runs the epoll loop on a background thread until bt__store_server_stop(). */
int bt__store_server_start(struct bt__store_server *srv);
/* Runs the loop on the calling thread until bt__store_server_stop() from another thread or a
 * signal handler (async-signal-safe: it writes an eventfd). */
int bt__store_server_run(struct bt__store_server *srv);
void bt__store_server_stop(struct bt__store_server *srv);
/* Stops (if running), joins the thread, closes every client and frees srv. NULL accepted. */
void bt__store_server_destroy(struct bt__store_server *srv);
/* CPU seconds the server's thread has used (bt__store_server_start), or -1; for the benchmark. */
double bt__store_server_cpu_s(const struct bt__store_server *srv);
/* Number of connected clients (for tests and the benchmark). */
int bt__store_server_nclients(const struct bt__store_server *srv);
/* Number of requests parked on missing keys (GET/WAIT/MULTI_GET); for tests. */
int bt__store_server_nwaiting(const struct bt__store_server *srv);
/* Bytes of buffer capacity the server holds for its connections' input and output now (what
 * BATON_RDZV_MAX_BUFFERED_MB bounds); for tests. */
size_t bt__store_server_buffered(const struct bt__store_server *srv);

/* Admission limits; a field of 0 keeps the current value. */
struct bt__store_limits {
    double frame_timeout_s;     /* a frame must arrive whole within this (BATON_RDZV_IO_TIMEOUT) */
    size_t max_frame;           /* bytes after a frame's length, at most BT__RDZV_MAX_FRAME */
    size_t max_buffered;        /* bytes of all connections' buffers (BATON_RDZV_MAX_BUFFERED_MB) */
    double drop_log_interval_s; /* seconds between summaries of dropped connections (60) */
};
/* Sets limits before bt__store_server_start/run (tests lower them). */
void bt__store_server_set_limits(struct bt__store_server *srv, const struct bt__store_limits *l);
/* Connections dropped for reason r since the server was created (common/droplog.h: the first
 * few of each minute are logged in full, the rest in one summary line); for tests. */
uint64_t bt__store_server_drops(const struct bt__store_server *srv, enum bt__drop_reason r);

#endif
