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
 * K = SHA-256(job token), so an empty token still gives a valid HMAC key. Each side checks
 * the other's MAC with CRYPTO_memcmp: the server learns the client holds the token, and the
 * client learns it reached its own job's store, not a stale one from another job. A status
 * other than OK (wrong version in CHALLENGE, wrong token in RESULT) is the server's last word
 * before it closes, so the client can say which it was. A peer with a wrong magic gets no
 * answer at all.
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
 *
 *   missing = {u32 total, u32 listed, listed x key}  (at most BT__RDZV_MAX_LISTED named)
 *   ERROR   = {str message}: a request the server refused (key too long, ...); the
 *             connection stays usable unless the frame itself was malformed.
 */
#ifndef BT_RENDEZVOUS_PROTO_H
#define BT_RENDEZVOUS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define BT__RDZV_MAGIC       0x565a44524e4f5442ULL /* "BTONRDZV" little-endian */
#define BT__RDZV_VERSION     1u
#define BT__RDZV_KIND_CLIENT 1u
#define BT__RDZV_KIND_BENCH  2u

#define BT__RDZV_NONCE         32
#define BT__RDZV_MAC           32
#define BT__RDZV_HELLO_LEN     48
#define BT__RDZV_CHALLENGE_LEN 48
#define BT__RDZV_PROOF_LEN     32
#define BT__RDZV_RESULT_LEN    36

#define BT__RDZV_MAX_KEY    1024u       /* bytes */
#define BT__RDZV_MAX_VALUE  (16u << 20) /* bytes */
#define BT__RDZV_MAX_KEYS   16384u      /* keys in one WAIT / MULTI_* */
#define BT__RDZV_MAX_FRAME  (64u << 20) /* bytes after the length field */
#define BT__RDZV_MAX_LISTED 32u         /* missing keys named in a TIMEOUT reply */
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
};

/* Handshake status (CHALLENGE, RESULT) and reply status (frames). */
enum bt__rdzv_status {
    BT__RDZV_OK = 0,
    BT__RDZV_TIMEOUT = 1,
    BT__RDZV_ERROR = 2,
    BT__RDZV_BAD_VERSION = 3,
    BT__RDZV_BAD_TOKEN = 4,
};

/* A growable output buffer. On allocation failure oom is set and later writes are dropped,
 * so a sequence of puts needs one check at the end. */
struct bt__wbuf {
    uint8_t *p;
    size_t len, cap; /* bytes */
    int oom;
};

int bt__wbuf_reserve(struct bt__wbuf *b, size_t more);
void bt__wbuf_put(struct bt__wbuf *b, const void *data, size_t n);
void bt__wbuf_u8(struct bt__wbuf *b, uint8_t v);
void bt__wbuf_u32(struct bt__wbuf *b, uint32_t v);
void bt__wbuf_u64(struct bt__wbuf *b, uint64_t v);
/* {u32 n, n bytes} */
void bt__wbuf_bytes(struct bt__wbuf *b, const void *data, size_t n);
/* Starts a frame {u32 length, u8 code}; returns the offset to pass to bt__wbuf_frame_end. */
size_t bt__wbuf_frame_begin(struct bt__wbuf *b, uint8_t code);
void bt__wbuf_frame_end(struct bt__wbuf *b, size_t start);
void bt__wbuf_free(struct bt__wbuf *b);

/* A bounds-checked reader: reading past the end sets bad and yields zeros/NULL. */
struct bt__rbuf {
    const uint8_t *p;
    size_t left; /* bytes */
    int bad;
};

uint32_t bt__rbuf_u32(struct bt__rbuf *r);
uint64_t bt__rbuf_u64(struct bt__rbuf *r);
/* {u32 n, n bytes} with n <= cap; NULL (and bad set) when truncated or over cap. */
const uint8_t *bt__rbuf_bytes(struct bt__rbuf *r, size_t cap, size_t *n);

static inline uint32_t bt__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bt__le64(const uint8_t *p)
{
    return (uint64_t)bt__le32(p) | (uint64_t)bt__le32(p + 4) << 32;
}
static inline void bt__put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void bt__put_le64(uint8_t *p, uint64_t v)
{
    bt__put_le32(p, (uint32_t)v);
    bt__put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- handshake pieces ---- */

/* K = SHA-256(token). */
void bt__rdzv_key(const char *token, uint8_t key[32]);
/* Fills buf with n random bytes (OpenSSL's RAND_bytes); 0 on success. */
int bt__rdzv_random(uint8_t *buf, size_t n);
/* mac = HMAC-SHA256(key, label || a || b), a and b BT__RDZV_NONCE bytes each; 0 on success
 * (a failure must be treated as a mismatch, never compared). */
int bt__rdzv_mac(const uint8_t key[32], const char *label, const uint8_t *a, const uint8_t *b,
                 uint8_t mac[BT__RDZV_MAC]);
/* Constant-time comparison of two MACs: 1 when equal. */
int bt__rdzv_mac_equal(const uint8_t *a, const uint8_t *b);

#define BT__RDZV_LABEL_CLIENT "baton-rdzv-client"
#define BT__RDZV_LABEL_SERVER "baton-rdzv-server"

void bt__rdzv_hello(uint8_t out[BT__RDZV_HELLO_LEN], uint32_t version, uint32_t kind,
                    const uint8_t cnonce[BT__RDZV_NONCE]);
void bt__rdzv_challenge(uint8_t out[BT__RDZV_CHALLENGE_LEN], uint32_t status,
                        const uint8_t snonce[BT__RDZV_NONCE]);

#endif
