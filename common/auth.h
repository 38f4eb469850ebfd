/* auth.h: the one HMAC-SHA256 challenge-response that opens every authenticated baton
 * connection (the rendezvous store, the parameter server), client and server halves.
 *
 *   client -> server  HELLO      {u64 magic, u32 version, extra[hello_extra], u8 cnonce[32]}
 *   server -> client  CHALLENGE  {u64 magic, u32 version, u32 status, u8 snonce[32]}    48
 *   client -> server  PROOF      {u8 mac[32]}  HMAC(K, label_client cnonce snonce)      32
 *   server -> client  RESULT     {u32 status, extra[result_extra], u8 mac[32]}
 *                                mac = HMAC(K, label_server snonce cnonce), zeros unless OK
 *
 * K = SHA-256(job token), so an empty token still gives a valid key. Each side checks the
 * other's MAC with CRYPTO_memcmp: the server learns the client holds the token, the client
 * that it reached its own job's server. A wrong magic gets no answer; a wrong version gets a
 * CHALLENGE with status BAD_VERSION (and a zero nonce), then the server closes. What the
 * `extra` fields mean is the protocol's business (rendezvous/proto.h, collectives/ps/ps.h).
 *
 * The client half is blocking (one call with a deadline); the server half is two pure steps
 * that a non-blocking server calls once it holds a whole HELLO, then a whole PROOF. Nothing
 * here logs; the callers word the errors in their own terms.
 */
#ifndef BT_COMMON_AUTH_H
#define BT_COMMON_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define BT__AUTH_KEY 32
#define BT__AUTH_NONCE 32
#define BT__AUTH_MAC 32
#define BT__AUTH_CHALLENGE_LEN 48
#define BT__AUTH_PROOF_LEN 32
#define BT__AUTH_EXTRA_MAX 32 /* bytes of a protocol's extra fields, either message */

/* One protocol's handshake. */
struct bt__auth_proto {
    uint64_t magic;
    uint32_t version;
    const char *label_client, *label_server; /* at most 64 bytes each */
    size_t hello_extra, result_extra;        /* bytes; at most BT__AUTH_EXTRA_MAX */
};

/* HELLO and RESULT sizes in bytes; the extra fields of a HELLO start at offset 12. */
static inline size_t bt__auth_hello_len(const struct bt__auth_proto *p)
{
    return 12 + p->hello_extra + BT__AUTH_NONCE;
}
static inline size_t bt__auth_result_len(const struct bt__auth_proto *p)
{
    return 4 + p->result_extra + BT__AUTH_MAC;
}

/* ---- pieces ---- */

/* K = SHA-256(token); token NULL is "". */
void bt__auth_key(const char *token, uint8_t key[BT__AUTH_KEY]);
/* The worker token of a job: hex HMAC-SHA256(job token, "baton worker"), NUL-terminated. The
 * launchers hold the job token and hand workers this one, which the rendezvous store also
 * accepts, with a narrower capability (no writes under "l/"). 0 on success. */
#define BT__AUTH_WORKER_TOKEN 65 /* bytes, with the NUL */
int bt__auth_worker_token(const char *job_token, char out[BT__AUTH_WORKER_TOKEN]);
/* Fills buf with n random bytes (OpenSSL's RAND_bytes); 0 on success. */
int bt__auth_random(uint8_t *buf, size_t n);
/* mac = HMAC-SHA256(key, label || a || b), a and b BT__AUTH_NONCE bytes each; 0 on success
 * (a failure must be treated as a mismatch, never compared). */
int bt__auth_mac(const uint8_t key[BT__AUTH_KEY], const char *label, const uint8_t *a,
                 const uint8_t *b, uint8_t mac[BT__AUTH_MAC]);
/* Constant-time comparison of two MACs: 1 when equal. */
int bt__auth_mac_equal(const uint8_t *a, const uint8_t *b);
/* Writes a HELLO (bt__auth_hello_len bytes) and a CHALLENGE. */
void bt__auth_hello(const struct bt__auth_proto *p, const uint8_t *extra,
                    const uint8_t cnonce[BT__AUTH_NONCE], uint8_t *out);
void bt__auth_challenge(const struct bt__auth_proto *p, uint32_t status,
                        const uint8_t snonce[BT__AUTH_NONCE], uint8_t out[BT__AUTH_CHALLENGE_LEN]);

/* What a handshake step came to. */
enum bt__auth_outcome {
    BT__AUTH_OK = 0,
    BT__AUTH_IO,       /* client: a socket error (reply.io_rc, detail in err) */
    BT__AUTH_NOT_PEER, /* wrong magic: not a peer of this protocol */
    BT__AUTH_VERSION,  /* the other side speaks another version */
    BT__AUTH_REFUSED,  /* client: the server answered a non-OK status (reply.status) */
    BT__AUTH_UNPROVEN, /* client: the server's MAC does not match our token */
    BT__AUTH_CRYPTO,   /* no random bytes, or HMAC failed (OpenSSL) */
};

/* ---- client half (blocking) ---- */

struct bt__auth_reply {
    int io_rc;                         /* BT__AUTH_IO: the socket call's code */
    uint32_t version;                  /* the server's, from its CHALLENGE */
    uint32_t status;                   /* the last status the server sent */
    uint8_t extra[BT__AUTH_EXTRA_MAX]; /* RESULT's extra fields */
};

/* Runs the client half on connected socket fd: sends HELLO with hello_extra, checks the
 * CHALLENGE, sends the PROOF, checks the RESULT and the server's MAC, all before deadline
 * (ns, bt__deadline_in). Returns an enum bt__auth_outcome; reply says more. */
int bt__auth_client(int fd, const struct bt__auth_proto *p, const char *token,
                    const uint8_t *hello_extra, int64_t deadline, struct bt__auth_reply *reply,
                    struct bt__err *err);

/* ---- server half (non-blocking servers) ---- */

struct bt__auth_server {
    uint8_t cnonce[BT__AUTH_NONCE], snonce[BT__AUTH_NONCE];
};

/* Step 1, on a whole HELLO. Returns BT__AUTH_OK (CHALLENGE in out: send it, then read the
 * PROOF), BT__AUTH_VERSION (a refusing CHALLENGE in out: send it, then close),
 * BT__AUTH_NOT_PEER or BT__AUTH_CRYPTO (close without a word). */
int bt__auth_server_hello(struct bt__auth_server *a, const struct bt__auth_proto *p,
                          const uint8_t *hello, uint8_t out[BT__AUTH_CHALLENGE_LEN]);
/* Step 2, on a whole PROOF: 1 when the client proved it holds key. */
int bt__auth_server_proof(const struct bt__auth_server *a, const struct bt__auth_proto *p,
                          const uint8_t key[BT__AUTH_KEY], const uint8_t *proof);
/* Writes the RESULT (bt__auth_result_len bytes) with status and extra; with status OK also
 * the server's MAC (when HMAC fails, status becomes BAD_TOKEN). Returns the status written. */
uint32_t bt__auth_result(const struct bt__auth_server *a, const struct bt__auth_proto *p,
                         const uint8_t key[BT__AUTH_KEY], uint32_t status, const uint8_t *extra,
                         uint8_t *out);

#endif
