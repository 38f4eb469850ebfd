/* auth.c: the HMAC-SHA256 challenge-response of auth.h (OpenSSL libcrypto). The client half
 * does blocking socket I/O through common/sock.h; the server half does none. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/auth.h"
#include "common/sock.h"
#include "common/wire.h"

void bt__auth_key(const char *token, uint8_t key[BT__AUTH_KEY])
{
    unsigned int len = BT__AUTH_KEY;
    EVP_Digest(token ? token : "", token ? strlen(token) : 0, key, &len, EVP_sha256(), NULL);
}

int bt__auth_worker_token(const char *job_token, char out[BT__AUTH_WORKER_TOKEN])
{
    static const char label[] = "baton worker";
    const char *t = job_token ? job_token : "";
    uint8_t mac[32];
    unsigned mlen = 0;
    out[0] = '\0';
    if (!HMAC(EVP_sha256(), t, (int)strlen(t), (const uint8_t *)label, sizeof(label) - 1, mac,
              &mlen) ||
        mlen != sizeof(mac))
        return -1;
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

int bt__auth_random(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

int bt__auth_mac(const uint8_t key[BT__AUTH_KEY], const char *label, const uint8_t *a,
                 const uint8_t *b, uint8_t mac[BT__AUTH_MAC])
{
    uint8_t msg[64 + 2 * BT__AUTH_NONCE];
    size_t ll = strlen(label);
    if (ll > 64)
        ll = 64;
    memcpy(msg, label, ll);
    memcpy(msg + ll, a, BT__AUTH_NONCE);
    memcpy(msg + ll + BT__AUTH_NONCE, b, BT__AUTH_NONCE);
    unsigned int mlen = BT__AUTH_MAC;
    return HMAC(EVP_sha256(), key, BT__AUTH_KEY, msg, ll + 2 * BT__AUTH_NONCE, mac, &mlen) ? 0 : -1;
}

int bt__auth_mac_equal(const uint8_t *a, const uint8_t *b)
{
    return CRYPTO_memcmp(a, b, BT__AUTH_MAC) == 0;
}

void bt__auth_hello(const struct bt__auth_proto *p, const uint8_t *extra,
                    const uint8_t cnonce[BT__AUTH_NONCE], uint8_t *out)
{
    bt__put_le64(out, p->magic);
    bt__put_le32(out + 8, p->version);
    if (p->hello_extra)
        memcpy(out + 12, extra, p->hello_extra);
    memcpy(out + 12 + p->hello_extra, cnonce, BT__AUTH_NONCE);
}

void bt__auth_challenge(const struct bt__auth_proto *p, uint32_t status,
                        const uint8_t snonce[BT__AUTH_NONCE], uint8_t out[BT__AUTH_CHALLENGE_LEN])
{
    bt__put_le64(out, p->magic);
    bt__put_le32(out + 8, p->version);
    bt__put_le32(out + 12, status);
    memcpy(out + 16, snonce, BT__AUTH_NONCE);
}

/* ---- client half ---- */

/* HELLO out, CHALLENGE back: the server's nonce into sn. */
static int client_hello(int fd, const struct bt__auth_proto *p, const uint8_t *extra,
                        const uint8_t *cn, uint8_t *sn, int64_t dl, struct bt__auth_reply *rep,
                        struct bt__err *err)
{
    uint8_t hello[12 + BT__AUTH_EXTRA_MAX + BT__AUTH_NONCE], ch[BT__AUTH_CHALLENGE_LEN];
    bt__auth_hello(p, extra, cn, hello);
    if ((rep->io_rc = bt__sock_send_all(fd, hello, bt__auth_hello_len(p), dl, err)) != BT_OK ||
        (rep->io_rc = bt__sock_recv_all(fd, ch, sizeof(ch), dl, err)) != BT_OK)
        return BT__AUTH_IO;
    rep->version = bt__le32(ch + 8);
    rep->status = bt__le32(ch + 12);
    memcpy(sn, ch + 16, BT__AUTH_NONCE);
    if (bt__le64(ch) != p->magic)
        return BT__AUTH_NOT_PEER;
    if (rep->status == BT__ST_BAD_VERSION || rep->version != p->version)
        return BT__AUTH_VERSION;
    return rep->status == BT__ST_OK ? BT__AUTH_OK : BT__AUTH_REFUSED;
}

int bt__auth_client(int fd, const struct bt__auth_proto *p, const char *token,
                    const uint8_t *hello_extra, int64_t deadline, struct bt__auth_reply *reply,
                    struct bt__err *err)
{
    uint8_t key[BT__AUTH_KEY], cn[BT__AUTH_NONCE], sn[BT__AUTH_NONCE], mac[BT__AUTH_MAC];
    uint8_t proof[BT__AUTH_PROOF_LEN], res[4 + BT__AUTH_EXTRA_MAX + BT__AUTH_MAC];
    memset(reply, 0, sizeof(*reply));
    bt__auth_key(token, key);
    if (bt__auth_random(cn, sizeof(cn)) != 0)
        return BT__AUTH_CRYPTO;
    int rc = client_hello(fd, p, hello_extra, cn, sn, deadline, reply, err);
    if (rc != BT__AUTH_OK)
        return rc;
    if (bt__auth_mac(key, p->label_client, cn, sn, proof) != 0)
        return BT__AUTH_CRYPTO;
    if ((reply->io_rc = bt__sock_send_all(fd, proof, sizeof(proof), deadline, err)) != BT_OK ||
        (reply->io_rc = bt__sock_recv_all(fd, res, bt__auth_result_len(p), deadline, err)) != BT_OK)
        return BT__AUTH_IO;
    reply->status = bt__le32(res);
    memcpy(reply->extra, res + 4, p->result_extra);
    if (reply->status != BT__ST_OK)
        return BT__AUTH_REFUSED;
    if (bt__auth_mac(key, p->label_server, sn, cn, mac) != 0 ||
        !bt__auth_mac_equal(mac, res + 4 + p->result_extra))
        return BT__AUTH_UNPROVEN;
    return BT__AUTH_OK;
}

/* ---- server half ---- */

int bt__auth_server_hello(struct bt__auth_server *a, const struct bt__auth_proto *p,
                          const uint8_t *hello, uint8_t out[BT__AUTH_CHALLENGE_LEN])
{
    if (bt__le64(hello) != p->magic)
        return BT__AUTH_NOT_PEER;
    memset(a->snonce, 0, sizeof(a->snonce));
    if (bt__le32(hello + 8) != p->version) {
        bt__auth_challenge(p, BT__ST_BAD_VERSION, a->snonce, out);
        return BT__AUTH_VERSION;
    }
    memcpy(a->cnonce, hello + 12 + p->hello_extra, BT__AUTH_NONCE);
    if (bt__auth_random(a->snonce, BT__AUTH_NONCE) != 0)
        return BT__AUTH_CRYPTO;
    bt__auth_challenge(p, BT__ST_OK, a->snonce, out);
    return BT__AUTH_OK;
}

int bt__auth_server_proof(const struct bt__auth_server *a, const struct bt__auth_proto *p,
                          const uint8_t key[BT__AUTH_KEY], const uint8_t *proof)
{
    uint8_t want[BT__AUTH_MAC];
    return bt__auth_mac(key, p->label_client, a->cnonce, a->snonce, want) == 0 &&
           bt__auth_mac_equal(want, proof);
}

uint32_t bt__auth_result(const struct bt__auth_server *a, const struct bt__auth_proto *p,
                         const uint8_t key[BT__AUTH_KEY], uint32_t status, const uint8_t *extra,
                         uint8_t *out)
{
    uint8_t *mac = out + 4 + p->result_extra;
    memset(out, 0, bt__auth_result_len(p));
    if (p->result_extra)
        memcpy(out + 4, extra, p->result_extra);
    if (status == BT__ST_OK && bt__auth_mac(key, p->label_server, a->snonce, a->cnonce, mac) != 0) {
        memset(mac, 0, BT__AUTH_MAC);
        status = BT__ST_BAD_TOKEN;
    }
    bt__put_le32(out, status);
    return status;
}
