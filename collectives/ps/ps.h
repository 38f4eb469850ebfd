/* ps.h: the parameter server's insides, shared by its client, server, optimizers, sharding and
 * checkpoint files (the files of collectives/ps/), the `baton ps` command and the tests.
 *
 * Wire format (every field fixed-width little-endian; floats are IEEE-754 binary32 LE):
 *
 *   client -> server  HELLO      {u64 magic, u32 version, u32 rank, u32 nworkers,
 *                                 u32 generation, u32 flags, u64 incarnation,
 *                                 u8 cnonce[32]}                                         68
 *   server -> client  CHALLENGE  {u64 magic, u32 version, u32 status, u8 snonce[32]}      48
 *   client -> server  PROOF      {u8 mac[32]}  HMAC(K, "baton-ps-client" cnonce snonce)    32
 *   server -> client  RESULT     {u32 status, u32 server index, u64 instance,
 *                                 u32 generation, u8 mac[32]}                            52
 *                                 mac = HMAC(K, "baton-ps-server" snonce cnonce)
 *
 * This is the handshake of common/auth.h (bt__ps_auth below: HELLO's extra fields are rank,
 * nworkers, generation, flags, incarnation; RESULT's are server index, instance, the
 * generation the server serves). K = SHA-256(job token). A wrong magic gets no answer; a wrong
 * version, token, worker rank or an old generation gets its status (enum bt__wire_status of
 * common/wire.h, the codec every field is written with), then the server closes.
 * `instance` is random per server process, so a client can tell a restarted server;
 * `incarnation` is random per client (bt_ps_open), so a server can tell a new client of the
 * same rank from a reconnecting one. `generation` is the worker's BATON_RESTART_COUNT: a
 * newer one makes the server serve it from then on (the older workers are dropped), an older
 * one is refused (BT__ST_STALE).
 *
 * Then frames {u32 length, u8 command_or_status, payload}, length counting the byte after it
 * plus the payload, at most BT__PS_MAX_FRAME. One request at a time per connection; the server
 * may hold a reply back (a sync pull waiting for its step).
 *
 *   INIT   str name, u32 piece, u32 npieces, u64 total, u64 offset, u32 count, opt (32 bytes),
 *          f32 value[count]                                   -> OK {u64 applied, u32 created}
 *   PUSH   u64 seq, u32 n, n x {str name, u32 piece, u32 count, f32 grad[count]}
 *                                                                               -> OK
 *          seq: 1, 2, ... per client and server (0: not numbered). A PUSH whose seq the
 *          server has applied already (a resend after a lost reply) gets OK, unapplied.
 *   PULL   u32 n, n x {str name, u32 piece, u32 count}          -> OK {n x f32 value[count]}
 *   CLOSE  u32 flags (1: the job is done, exit now; 2: the worker leaves for a new
 *          generation, which does not count as closing)      -> OK, then the server closes
 *   PING                                                        -> OK
 *
 *   opt   = {u32 kind, u32 consistency, u32 staleness, f32 lr, momentum, beta1, beta2, eps}
 *   ERROR = {u32 baton error code, str message}; the connection stays usable unless the frame
 *           itself was malformed or oversized.
 */
#ifndef BT_COLLECTIVES_PS_H
#define BT_COLLECTIVES_PS_H

#include <stddef.h>
#include <stdint.h>

#include "baton_ps.h"
#include "common/err.h"
#include "common/auth.h"
#include "common/wire.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the parameter server sends floats as they lie in memory: little-endian hosts only"
#endif

#define BT__PS_MAGIC 0x565253504e4f5442ULL /* "BTONPSRV" little-endian */
#define BT__PS_VERSION 2u
#define BT__PS_HELLO_LEN 68
#define BT__PS_CHALLENGE_LEN BT__AUTH_CHALLENGE_LEN
#define BT__PS_PROOF_LEN BT__AUTH_PROOF_LEN
#define BT__PS_RESULT_LEN 52
#define BT__PS_LABEL_CLIENT "baton-ps-client"
#define BT__PS_LABEL_SERVER "baton-ps-server"

#define BT__PS_MAX_NAME 255u             /* bytes of a key name */
#define BT__PS_MAX_FRAME (1u << 30)      /* bytes after the length field */
#define BT__PS_CLIENT_FRAME (256u << 20) /* a client batches pieces up to this per frame */
#define BT__PS_MAX_PIECES 65536u         /* pieces in one PUSH or PULL */
#define BT__PS_MAX_WORKERS 65536u
#define BT__PS_OPT_LEN 32

enum bt__ps_cmd {
    BT__PS_INIT = 1,
    BT__PS_PUSH = 2,
    BT__PS_PULL = 3,
    BT__PS_CLOSE = 4,
    BT__PS_PING = 5
};
/* Reply and handshake status: enum bt__wire_status (OK, ERROR, BAD_VERSION, BAD_TOKEN,
 * BAD_WORKER, STALE). */
#define BT__PS_CLOSE_DONE 1u
#define BT__PS_CLOSE_LEAVE 2u

/* The parameter server's handshake (common/auth.h); ps/client.c. */
extern const struct bt__auth_proto bt__ps_auth;

/* ---- optimizers (ps/opt.c) ---- */

/* Applies one update to count weights w with gradient g scaled by scale (1/nworkers in sync
 * mode). m and v are the optimizer state (momentum uses m; Adam m and v); t is the 1-based
 * number of this update (Adam's bias correction). */
void bt__ps_opt_apply(const bt_ps_opt *o, float *w, float *m, float *v, const float *g,
                      size_t count, float scale, uint64_t t);
/* Checks an optimizer's fields: BT_OK, or BT_ERR_INVALID_ARG with the reason in why. */
int bt__ps_opt_check(const bt_ps_opt *o, char *why, size_t cap);
void bt__ps_opt_put(struct bt__wbuf *b, const bt_ps_opt *o);
void bt__ps_opt_get(struct bt__rbuf *r, bt_ps_opt *o);
/* "adam(lr=0.001) sync" */
void bt__ps_opt_str(const bt_ps_opt *o, char *out, size_t cap);

/* ---- sharding (ps/shard.c) ---- */

struct bt__ps_piece {
    uint32_t server; /* index of the server holding it */
    uint64_t offset; /* first element within the key */
    uint32_t count;  /* elements */
};

/* Splits a key of count floats into pieces of at most partition_bytes and places each on the
 * least loaded server (loads[] in bytes, updated), largest piece first, ties to the lowest
 * index. *pieces is malloc'd (owned by the caller); *npieces >= 1 (a key of 0 floats has one
 * empty piece). Deterministic: the same loads and keys give the same placement everywhere. */
int bt__ps_place(uint64_t count, int64_t partition_bytes, int nservers, uint64_t *loads,
                 struct bt__ps_piece **pieces, uint32_t *npieces);
/* Order in which n keys of the given counts are placed: largest first, ties by index. */
void bt__ps_place_order(size_t n, const size_t *counts, size_t *order);
/* Placement as text for the store ("1 100 0:0:60 1:60:40": npieces count server:off:len ...)
 * and back; parse returns -1 on malformed text. *pieces is malloc'd. */
int bt__ps_place_fmt(const struct bt__ps_piece *p, uint32_t np, uint64_t count, char **text);
int bt__ps_place_parse(const char *text, int nservers, struct bt__ps_piece **p, uint32_t *np,
                       uint64_t *count);

/* ---- server (ps/server.c) ---- */

struct bt__ps_server_cfg {
    const char *host;      /* address to bind; NULL or "": all */
    int port;              /* 0: ephemeral */
    const char *advertise; /* address published in the store; NULL: found from the route to it */
    int index;             /* this server's index (-1: take the next one from the store) */
    const char *token;     /* job token (NULL: "") */
    const char *rdzv;      /* store HOST:PORT to publish in (NULL: do not publish) */
    int generation;        /* the generation it serves at first (BATON_RESTART_COUNT); newer
                              workers move it on */
    double timeout_s;      /* how long a held-back request waits (BATON_TIMEOUT) */
    const char *ckpt_dir;  /* NULL: no checkpoints */
    double ckpt_secs;      /* checkpoint every this many seconds (0: never) */
    int64_t ckpt_steps;    /* ... or every this many steps of the most-advanced key (0: never) */
    int ckpt_sync;         /* write the checkpoint before acknowledging any change (pushes,
                              declarations): exactly once across a crash of the server */
    int exit_when_done;    /* stop once every worker has closed (1 for `baton ps`) */
    int64_t drop_reply;    /* test fault: drop the reply of every Nth applied PUSH (0: none) */
};

struct bt__ps_server;

/* Fills cfg from the env and defaults (BATON_RDZV, BATON_TOKEN, BATON_RESTART_COUNT,
 * BATON_TIMEOUT, BATON_PS_INDEX, BATON_PS_HOST, BATON_PS_PORT, BATON_PS_CKPT_DIR,
 * BATON_PS_CKPT_SECS, BATON_PS_CKPT_STEPS, BATON_PS_CKPT_SYNC, BATON_PS_FAULT_DROP_REPLY).
 * Strings point into the environment. */
void bt__ps_server_cfg_env(struct bt__ps_server_cfg *cfg);
/* Listens, reloads the checkpoint of cfg->ckpt_dir if one exists, and publishes
 * ps/server/<index> = host:port in the store when cfg->rdzv is set (one key for every
 * generation: the workers of each generation find the same servers). */
int bt__ps_server_create(const struct bt__ps_server_cfg *cfg, struct bt__ps_server **out,
                         int *bound_port, struct bt__err *err);
/* Runs the loop on a background thread until stopped or done. */
int bt__ps_server_start(struct bt__ps_server *srv);
/* Runs the loop on the calling thread; returns BT_OK when stopped or when every worker closed. */
int bt__ps_server_run(struct bt__ps_server *srv);
/* Async-signal-safe: asks the loop to stop (it checkpoints first when configured). */
void bt__ps_server_stop(struct bt__ps_server *srv);
/* Joins the thread (if started), closes every connection and frees srv. NULL accepted. */
void bt__ps_server_destroy(struct bt__ps_server *srv);
int bt__ps_server_index(const struct bt__ps_server *srv);
/* Writes the checkpoint now (from the loop's thread, or when the loop is not running). */
int bt__ps_server_checkpoint(struct bt__ps_server *srv, struct bt__err *err);

/* ---- checkpoint (ps/ckpt.c): the file format, used by the server ---- */

struct bt__ps_ckpt_entry {
    const char *name;
    uint32_t piece, npieces;
    uint64_t total, offset;
    uint32_t count;
    bt_ps_opt opt;
    uint64_t applied;  /* updates applied */
    float *w, *m, *v;  /* count floats each */
    uint32_t arrivals; /* sync: gradients summed into acc for step `applied` */
    uint64_t *cnt;     /* per worker (state.nworkers): pushes accepted; NULL: none recorded */
    float *acc;        /* count floats: the sum of step `applied` so far; NULL: zeros */
};

/* Per worker: the sequence numbers of its pushes (exactly once, ps/server.c). */
struct bt__ps_ckpt_worker {
    uint64_t incarnation; /* of the client (bt_ps_open) these numbers belong to */
    uint64_t push_seq;    /* last PUSH applied in full */
    uint64_t part_seq;    /* a PUSH applied in part (held), 0: none */
    uint32_t part_done;   /* ... its first item not yet applied */
};

/* The server's own state in a checkpoint: the generation it serves and its workers. */
struct bt__ps_ckpt_state {
    uint32_t generation, nworkers;
    struct bt__ps_ckpt_worker *w; /* nworkers (NULL when 0) */
};

/* Writes entries and st (NULL: no workers) atomically to path (temp file + fsync + rename +
 * fsync of the dir). */
int bt__ps_ckpt_write(const char *path, uint32_t server_index, const struct bt__ps_ckpt_state *st,
                      const struct bt__ps_ckpt_entry *e, size_t n, struct bt__err *err);
/* Reads path and calls add() for each entry (its pointers valid during the call only). st
 * (may be NULL) gets the server's state, st->w malloc'd (the caller frees it). A missing file
 * is BT_OK with *found 0. Version 1 files (no worker state) are read too. */
int bt__ps_ckpt_read(const char *path, uint32_t server_index, int *found,
                     struct bt__ps_ckpt_state *st,
                     int (*add)(void *arg, const struct bt__ps_ckpt_entry *e), void *arg,
                     struct bt__err *err);

/* ---- client (ps/client.c) ---- */

struct bt__ps_client_cfg {
    int rank, nworkers;
    int nservers;
    const char *const *endpoints; /* nservers "host:port"; NULL: read from the store */
    const char *token;
    double timeout_s;
    int64_t partition_bytes;
    int generation; /* the job's generation (BATON_RESTART_COUNT) */
};

/* Opens a client to the given servers (no store: the placement is computed locally, so every
 * worker must declare keys in the same order). The caller owns *out. */
int bt__ps_open_cfg(const struct bt__ps_client_cfg *cfg, bt_ps **out);
/* Handshake on a connected socket as worker rank of nworkers, generation 0, a new
 * incarnation; *index and *instance get the server's. Used by tests that speak the protocol
 * by hand. */
int bt__ps_handshake(int fd, uint32_t rank, uint32_t nworkers, const char *token,
                     int64_t deadline_ns, uint32_t *index, uint64_t *instance, struct bt__err *err);

/* What a worker says and learns in the handshake. */
struct bt__ps_hello {
    uint32_t rank, nworkers, generation;
    uint64_t incarnation;
    /* out */
    uint32_t index;    /* the server's */
    uint64_t instance; /* the server process's */
    uint32_t server_generation;
};
int bt__ps_handshake_ex(int fd, const char *token, int64_t deadline_ns, struct bt__ps_hello *h,
                        struct bt__err *err);

#endif
