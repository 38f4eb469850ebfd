/* proto.c: encoding helpers and the HMAC handshake pieces of the rendezvous wire format
 * (the format itself is described in proto.h). No I/O happens here. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "rendezvous/proto.h"

int bt__wbuf_reserve(struct bt__wbuf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->cap - b->len >= more) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void bt__wbuf_put(struct bt__wbuf *b, const void *data, size_t n)
{
    if (n == 0 || bt__wbuf_reserve(b, n) != 0) return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void bt__wbuf_u8(struct bt__wbuf *b, uint8_t v)
{
    bt__wbuf_put(b, &v, 1);
}

void bt__wbuf_u32(struct bt__wbuf *b, uint32_t v)
{
    uint8_t t[4];
    bt__put_le32(t, v);
    bt__wbuf_put(b, t, 4);
}

void bt__wbuf_u64(struct bt__wbuf *b, uint64_t v)
{
    uint8_t t[8];
    bt__put_le64(t, v);
    bt__wbuf_put(b, t, 8);
}

void bt__wbuf_bytes(struct bt__wbuf *b, const void *data, size_t n)
{
    bt__wbuf_u32(b, (uint32_t)n);
    bt__wbuf_put(b, data, n);
}

size_t bt__wbuf_frame_begin(struct bt__wbuf *b, uint8_t code)
{
    size_t start = b->len;
    bt__wbuf_u32(b, 0);
    bt__wbuf_u8(b, code);
    return start;
}

void bt__wbuf_frame_end(struct bt__wbuf *b, size_t start)
{
    if (!b->oom) bt__put_le32(b->p + start, (uint32_t)(b->len - start - 4));
}

void bt__wbuf_free(struct bt__wbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

uint32_t bt__rbuf_u32(struct bt__rbuf *r)
{
    if (r->bad || r->left < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = bt__le32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

uint64_t bt__rbuf_u64(struct bt__rbuf *r)
{
    if (r->bad || r->left < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = bt__le64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

const uint8_t *bt__rbuf_bytes(struct bt__rbuf *r, size_t cap, size_t *n)
{
    size_t len = bt__rbuf_u32(r);
    if (r->bad || len > cap || len > r->left) {
        r->bad = 1;
        *n = 0;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += len;
    r->left -= len;
    *n = len;
    return p;
}

void bt__rdzv_key(const char *token, uint8_t key[32])
{
    unsigned int len = 32;
    EVP_Digest(token ? token : "", token ? strlen(token) : 0, key, &len, EVP_sha256(), NULL);
}

int bt__rdzv_random(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

int bt__rdzv_mac(const uint8_t key[32], const char *label, const uint8_t *a, const uint8_t *b,
                 uint8_t mac[BT__RDZV_MAC])
{
    uint8_t msg[64 + 2 * BT__RDZV_NONCE];
    size_t ll = strlen(label);
    if (ll > 64) ll = 64;
    memcpy(msg, label, ll);
    memcpy(msg + ll, a, BT__RDZV_NONCE);
    memcpy(msg + ll + BT__RDZV_NONCE, b, BT__RDZV_NONCE);
    unsigned int mlen = BT__RDZV_MAC;
    return HMAC(EVP_sha256(), key, 32, msg, ll + 2 * BT__RDZV_NONCE, mac, &mlen) ? 0 : -1;
}

int bt__rdzv_mac_equal(const uint8_t *a, const uint8_t *b)
{
    return CRYPTO_memcmp(a, b, BT__RDZV_MAC) == 0;
}

void bt__rdzv_hello(uint8_t out[BT__RDZV_HELLO_LEN], uint32_t version, uint32_t kind,
                    const uint8_t cnonce[BT__RDZV_NONCE])
{
    bt__put_le64(out, BT__RDZV_MAGIC);
    bt__put_le32(out + 8, version);
    bt__put_le32(out + 12, kind);
    memcpy(out + 16, cnonce, BT__RDZV_NONCE);
}

void bt__rdzv_challenge(uint8_t out[BT__RDZV_CHALLENGE_LEN], uint32_t status,
                        const uint8_t snonce[BT__RDZV_NONCE])
{
    bt__put_le64(out, BT__RDZV_MAGIC);
    bt__put_le32(out + 8, BT__RDZV_VERSION);
    bt__put_le32(out + 12, status);
    memcpy(out + 16, snonce, BT__RDZV_NONCE);
}
