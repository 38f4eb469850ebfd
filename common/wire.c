/* wire.c: the growable writer and the bounds-checked reader of wire.h. No I/O happens here. */
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

int bt__wbuf_reserve(struct bt__wbuf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->cap - b->len >= more)
        return 0;
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
    if (n == 0 || bt__wbuf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void bt__wbuf_u8(struct bt__wbuf *b, uint8_t v)
{
    bt__wbuf_put(b, &v, 1);
}

void bt__wbuf_u16(struct bt__wbuf *b, uint16_t v)
{
    uint8_t t[2];
    bt__put_le16(t, v);
    bt__wbuf_put(b, t, 2);
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
    if (!b->oom)
        bt__put_le32(b->p + start, (uint32_t)(b->len - start - 4));
}

void bt__wbuf_free(struct bt__wbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

const uint8_t *bt__rbuf_take(struct bt__rbuf *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t bt__rbuf_u8(struct bt__rbuf *r)
{
    const uint8_t *p = bt__rbuf_take(r, 1);
    return p ? p[0] : 0;
}

uint16_t bt__rbuf_u16(struct bt__rbuf *r)
{
    const uint8_t *p = bt__rbuf_take(r, 2);
    return p ? bt__le16(p) : 0;
}

uint32_t bt__rbuf_u32(struct bt__rbuf *r)
{
    const uint8_t *p = bt__rbuf_take(r, 4);
    return p ? bt__le32(p) : 0;
}

uint64_t bt__rbuf_u64(struct bt__rbuf *r)
{
    const uint8_t *p = bt__rbuf_take(r, 8);
    return p ? bt__le64(p) : 0;
}

const uint8_t *bt__rbuf_bytes(struct bt__rbuf *r, size_t cap, size_t *n)
{
    size_t len = bt__rbuf_u32(r);
    if (r->bad || len > cap || len > r->left) {
        r->bad = 1;
        *n = 0;
        return NULL;
    }
    *n = len;
    return bt__rbuf_take(r, len);
}
