/* wire.h: the one fixed-width little-endian codec every baton wire format uses (the
 * rendezvous store, the parameter server, the TCP transport's hello, the checkpoint files).
 *
 * Three layers: put/get of u8/u16/u32/u64 at a byte pointer (the caller owns the bounds);
 * a growable writer (bt__wbuf) whose puts need one out-of-memory check at the end; and a
 * bounds-checked reader (bt__rbuf) whose gets past the end set `bad` and yield zeros, so a
 * parser checks once after its last get. Lengths are u32 on the wire, never size_t. Also the
 * status codes every baton reply and handshake carries. No I/O happens here.
 */
#ifndef BT_COMMON_WIRE_H
#define BT_COMMON_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* The status byte of a reply frame and the u32 status of a handshake answer, the same values
 * in every baton protocol (a protocol uses the subset it needs). */
enum bt__wire_status {
    BT__ST_OK = 0,
    BT__ST_TIMEOUT = 1,     /* rendezvous: a blocking request's keys did not all arrive */
    BT__ST_ERROR = 2,       /* the request was refused; the body says why */
    BT__ST_BAD_VERSION = 3, /* handshake: another protocol version */
    BT__ST_BAD_TOKEN = 4,   /* handshake: the peer's HMAC does not match (another job) */
    BT__ST_BAD_WORKER = 5,  /* ps handshake: the worker's rank or world does not fit the job */
    BT__ST_STALE = 6,       /* ps handshake: the worker is of an older generation of the job */
};

/* ---- fixed-width fields at a pointer ---- */

static inline uint16_t bt__le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t bt__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bt__le64(const uint8_t *p)
{
    return (uint64_t)bt__le32(p) | (uint64_t)bt__le32(p + 4) << 32;
}
static inline void bt__put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
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

/* ---- writer ---- */

/* A growable output buffer. On allocation failure oom is set and later writes are dropped,
 * so a sequence of puts needs one check at the end. A zeroed struct is an empty buffer. */
struct bt__wbuf {
    uint8_t *p;
    size_t len, cap; /* bytes */
    int oom;
};

int bt__wbuf_reserve(struct bt__wbuf *b, size_t more);
void bt__wbuf_put(struct bt__wbuf *b, const void *data, size_t n);
void bt__wbuf_u8(struct bt__wbuf *b, uint8_t v);
void bt__wbuf_u16(struct bt__wbuf *b, uint16_t v);
void bt__wbuf_u32(struct bt__wbuf *b, uint32_t v);
void bt__wbuf_u64(struct bt__wbuf *b, uint64_t v);
/* {u32 n, n bytes} */
void bt__wbuf_bytes(struct bt__wbuf *b, const void *data, size_t n);
/* Starts a frame {u32 length, u8 code}; returns the offset to pass to bt__wbuf_frame_end,
 * which patches the length (the bytes after the length field). */
size_t bt__wbuf_frame_begin(struct bt__wbuf *b, uint8_t code);
void bt__wbuf_frame_end(struct bt__wbuf *b, size_t start);
void bt__wbuf_free(struct bt__wbuf *b);

/* ---- reader ---- */

/* A bounds-checked reader over p[0..left): reading past the end sets bad and yields
 * zeros/NULL. */
struct bt__rbuf {
    const uint8_t *p;
    size_t left; /* bytes */
    int bad;
};

uint8_t bt__rbuf_u8(struct bt__rbuf *r);
uint16_t bt__rbuf_u16(struct bt__rbuf *r);
uint32_t bt__rbuf_u32(struct bt__rbuf *r);
uint64_t bt__rbuf_u64(struct bt__rbuf *r);
/* n raw bytes; NULL (and bad set) when fewer are left. */
const uint8_t *bt__rbuf_take(struct bt__rbuf *r, size_t n);
/* {u32 n, n bytes} with n <= cap; NULL (and bad set) when truncated or over cap. */
const uint8_t *bt__rbuf_bytes(struct bt__rbuf *r, size_t cap, size_t *n);

#endif
