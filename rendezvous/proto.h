/* proto.h: the rendezvous store's wire format, shared by the client, the server and the
 * benchmark. Every field is fixed-width little-endian; every length read from a peer is
 * checked against a hard cap before anything is allocated for it.
 *
 * Handshake (all sizes in bytes):
 *
 *   client -> server  HELLO      {u64 magic, u32 version, u32 kind, u8 cnonce[32]}      48
 *   server -> client  CHALLENGE  {u64 magic, u32 version, u32 status, u8 snonce[32]}    48
 *   client -> server  PROOF      {u8 mac[32]}  HMAC(K, "baton-rdzv-client" cnonce snonce) 32
 *   server -> client  RESULT     {u32 status, u8 mac[32]}                               36
 *                                mac = HMAC(K, "baton-rdzv-server" snonce cnonce)
 *
 * This is the handshake of common/auth.h (bt__rdzv_auth below); the extra HELLO field is
 * `kind`, RESULT has none. K = SHA-256(job token), or SHA-256(worker token) for a worker (see
 * bt__auth_worker_token): the server tries both and then knows which capability the client
 * has; `kind` is informational only. A status other than OK (wrong version in
 * CHALLENGE, wrong token in RESULT) is the server's last word before it closes, so the client
 * can say which it was. A peer with a wrong magic gets no answer at all. The fields are
 * written with the codec of common/wire.h; statuses are its enum bt__wire_status.
 *
 * After the handshake, requests and replies are frames:
 *
 *   {u32 length, u8 command_or_status, payload}     length counts the byte after it + payload
 *
 * Payload fields: str/bytes = {u32 n, n bytes}; timeout = u32 milliseconds (NO_TIMEOUT: none).
 *
 *   SET          key, value                      -> OK
 *   GET          timeout, key                    -> OK value | TIMEOUT missing
 *   ADD          key, i64 delta                  -> OK i64 new value (stored as decimal text)
 *   COMPARE_SET  key, expected, desired          -> OK value after the call ("" if missing)
 *   WAIT         timeout, u32 n, n keys          -> OK | TIMEOUT missing
 *   MULTI_GET    timeout, u32 n, n keys          -> OK u32 n, n values | TIMEOUT missing
 *   MULTI_SET    u32 n, n x (key, value)         -> OK
 *   DELETE       key                             -> OK u32 existed
 *   PING                                         -> OK
 *   LAST_WILL    key, value (empty: cancel)      -> OK
 *   GOODBYE                                      -> OK, then the server closes
 *   HEARTBEAT    u32 ttl_ms (0: cancel)          -> OK; from then on, a connection that sends
 *                no frame for ttl_ms is closed as lost (its last will fires)
 *
 *   MUX          u32 chan, u8 command, payload   -> MUX u32 chan, u8 status, payload
 *                a node relay's request on behalf of one of its workers (relay.c; only with
 *                the job token). Inside MUX, two more commands:
 *     CHAN_OPEN  u8 worker, str label            (no reply) opens channel chan
 *     CHAN_LOST                                  (no reply) its worker hung up: drop it
 *                and the store closes a channel with the reply status CHAN_CLOSED.
 *
 *   missing = {u32 total, u32 listed, listed x key}  (at most BT__RDZV_MAX_LISTED named)
 *   ERROR   = {str message}: a request the server refused (key too long, a worker writing
 *             an l/ key, ...); the connection stays usable unless the frame itself was
 *             malformed.
 */
#ifndef BT_RENDEZVOUS_PROTO_H
#define BT_RENDEZVOUS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/auth.h"
#include "common/wire.h"

#define BT__RDZV_MAGIC 0x565a44524e4f5442ULL /* "BTONRDZV" little-endian */
#define BT__RDZV_VERSION 1u
#define BT__RDZV_KIND_CLIENT 1u
#define BT__RDZV_KIND_BENCH 2u

#define BT__RDZV_HELLO_LEN 48 /* bytes; bt__auth_hello_len(&bt__rdzv_auth) */
#define BT__RDZV_CHALLENGE_LEN BT__AUTH_CHALLENGE_LEN
#define BT__RDZV_PROOF_LEN BT__AUTH_PROOF_LEN
#define BT__RDZV_RESULT_LEN 36 /* bytes; bt__auth_result_len(&bt__rdzv_auth) */

#define BT__RDZV_MAX_KEY 1024u         /* bytes */
#define BT__RDZV_MAX_VALUE (16u << 20) /* bytes */
#define BT__RDZV_MAX_KEYS 16384u       /* keys in one WAIT / MULTI_* */
#define BT__RDZV_MAX_FRAME (64u << 20) /* bytes after the length field */
#define BT__RDZV_MAX_LISTED 32u        /* missing keys named in a TIMEOUT reply */
#define BT__RDZV_NO_TIMEOUT 0xffffffffu

enum bt__rdzv_cmd {
    BT__RDZV_SET = 1,
    BT__RDZV_GET = 2,
    BT__RDZV_ADD = 3,
    BT__RDZV_COMPARE_SET = 4,
    BT__RDZV_WAIT = 5,
    BT__RDZV_MULTI_GET = 6,
    BT__RDZV_MULTI_SET = 7,
    BT__RDZV_DELETE = 8,
    BT__RDZV_PING = 9,
    BT__RDZV_LAST_WILL = 10,
    BT__RDZV_GOODBYE = 11,
    BT__RDZV_HEARTBEAT = 12,
    BT__RDZV_MUX = 13,
    BT__RDZV_CHAN_OPEN = 0xf0, /* only inside MUX */
    BT__RDZV_CHAN_LOST = 0xf1, /* only inside MUX */
};

/* MUX reply status: the store closed this channel (the relay hangs up on its worker). */
#define BT__RDZV_CHAN_CLOSED 0xffu

/* Handshake status (CHALLENGE, RESULT) and reply status (frames): enum bt__wire_status
 * (common/wire.h): OK, TIMEOUT, ERROR, BAD_VERSION, BAD_TOKEN. */

#define BT__RDZV_LABEL_CLIENT "baton-rdzv-client"
#define BT__RDZV_LABEL_SERVER "baton-rdzv-server"

/* The store's handshake (common/auth.h). */
extern const struct bt__auth_proto bt__rdzv_auth;

/* A HELLO of another version or kind than a client's (the benchmark, tests of refusals). */
void bt__rdzv_hello(uint8_t out[BT__RDZV_HELLO_LEN], uint32_t version, uint32_t kind,
                    const uint8_t cnonce[BT__AUTH_NONCE]);

#endif
