/* ps/ckpt.c: a parameter server's checkpoint file.
 *
 * Layout (little-endian), version 2:
 *   header  {u64 magic (the bytes "BTONSPCK"), u32 version, u32 server index, u64 entries,
 *            u32 generation, u32 nworkers,
 *            nworkers x {u64 incarnation, u64 push_seq, u64 part_seq, u32 part_done}}
 *   entry   {str name, u32 piece, u32 npieces, u64 total, u64 offset, u32 count, opt (32),
 *            u64 applied, f32 w[count], f32 m[count], f32 v[count],
 *            u32 arrivals, u32 has_cnt, u64 cnt[nworkers] when has_cnt, f32 acc[count]}
 *   trailer {u32 crc32 of every byte before it}
 * Version 1 had neither the generation and workers nor the fields after v; it is still read.
 * The worker state is what makes a push exactly once across a restart of the server: which
 * pushes of each worker are in the file, and the half-summed sync step they went into.
 * It is written to "<path>.tmp.<pid>", fsync'd, renamed over path, and the directory fsync'd,
 * so a reader sees the old file or the new one, never half of one. A file with another
 * version, another server index or a bad CRC is refused with the reason; an empty file, one
 * without the magic, and a directory are named as such before the CRC is looked at.
 */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "collectives/ps/ps.h"

#define CKPT_MAGIC 0x4b4350534e4f5442ULL /* the bytes "BTONSPCK" */
#define CKPT_VERSION 2u

struct out {
    FILE *f;
    uLong crc;
    int bad;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->bad || n == 0)
        return;
    o->crc = crc32(o->crc, p, (uInt)n);
    if (fwrite(p, 1, n, o->f) != n)
        o->bad = 1;
}

static void put_big(struct out *o, const float *p, size_t n) /* crc32 takes uInt lengths */
{
    const uint8_t *b = (const uint8_t *)p;
    for (size_t left = n * 4, step; left; left -= step, b += step) {
        step = left > (1u << 30) ? (1u << 30) : left;
        put(o, b, step);
    }
}

static void put_u32(struct out *o, uint32_t v)
{
    uint8_t t[4];
    bt__put_le32(t, v);
    put(o, t, 4);
}

static void put_u64(struct out *o, uint64_t v)
{
    uint8_t t[8];
    bt__put_le64(t, v);
    put(o, t, 8);
}

static void put_entry(struct out *o, const struct bt__ps_ckpt_entry *e, uint32_t nworkers)
{
    struct bt__wbuf b = {0};
    bt__ps_opt_put(&b, &e->opt);
    put_u32(o, (uint32_t)strlen(e->name));
    put(o, e->name, strlen(e->name));
    put_u32(o, e->piece);
    put_u32(o, e->npieces);
    put_u64(o, e->total);
    put_u64(o, e->offset);
    put_u32(o, e->count);
    if (b.oom)
        o->bad = 1;
    put(o, b.p, b.len);
    bt__wbuf_free(&b);
    put_u64(o, e->applied);
    put_big(o, e->w, e->count);
    put_big(o, e->m, e->count);
    put_big(o, e->v, e->count);
    put_u32(o, e->arrivals);
    put_u32(o, e->cnt && nworkers);
    for (uint32_t w = 0; e->cnt && w < nworkers; w++)
        put_u64(o, e->cnt[w]);
    if (e->acc)
        put_big(o, e->acc, e->count);
    for (uint32_t i = 0, z[256] = {0}; !e->acc && i < e->count; i += 256)
        put(o, z, 4 * (size_t)(e->count - i < 256 ? e->count - i : 256));
}

static void put_state(struct out *o, const struct bt__ps_ckpt_state *st)
{
    uint32_t nw = st && st->w ? st->nworkers : 0;
    put_u32(o, st ? st->generation : 0);
    put_u32(o, nw);
    for (uint32_t w = 0; w < nw; w++) {
        put_u64(o, st->w[w].incarnation);
        put_u64(o, st->w[w].push_seq);
        put_u64(o, st->w[w].part_seq);
        put_u32(o, st->w[w].part_done);
    }
}

static void sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

int bt__ps_ckpt_write(const char *path, uint32_t index, const struct bt__ps_ckpt_state *st,
                      const struct bt__ps_ckpt_entry *e, size_t n, struct bt__err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    struct out o = {.f = fopen(tmp, "wbe"), .crc = crc32(0, NULL, 0)};
    if (!o.f)
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: cannot create %s: %s", tmp,
                           strerror(errno));
    put_u64(&o, CKPT_MAGIC);
    put_u32(&o, CKPT_VERSION);
    put_u32(&o, index);
    put_u64(&o, n);
    put_state(&o, st);
    for (size_t i = 0; i < n; i++)
        put_entry(&o, &e[i], st && st->w ? st->nworkers : 0);
    put_u32(&o, (uint32_t)o.crc);
    int bad = o.bad || fflush(o.f) != 0 || fsync(fileno(o.f)) != 0;
    int saved = errno;
    bad |= fclose(o.f) != 0;
    if (bad || rename(tmp, path) != 0) {
        saved = bad ? saved : errno;
        unlink(tmp);
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: cannot write %s: %s", path,
                           strerror(saved));
    }
    sync_dir(path);
    return BT_OK;
}

static int slurp(const char *path, uint8_t **buf, size_t *len, int *found, struct bt__err *err)
{
    FILE *f = fopen(path, "rbe");
    *found = f != NULL;
    if (!f)
        return errno == ENOENT ? BT_OK
                               : bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: cannot open %s: %s",
                                             path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "checkpoint %s is a directory, not a checkpoint file; hint: move it "
                           "away to start from the initial values",
                           path);
    }
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *b = malloc(cap);
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!b)
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: %s: out of memory", path);
    *buf = b;
    *len = n;
    return BT_OK;
}

/* Parses one entry up to v; pointers point into the file buffer, so floats are copied out. */
static int read_entry(struct bt__rbuf *r, struct bt__ps_ckpt_entry *e, char *name,
                      const uint8_t **data)
{
    size_t nl;
    const uint8_t *np = bt__rbuf_bytes(r, BT__PS_MAX_NAME, &nl);
    if (!np)
        return -1;
    memcpy(name, np, nl);
    name[nl] = '\0';
    e->name = name;
    e->piece = bt__rbuf_u32(r);
    e->npieces = bt__rbuf_u32(r);
    e->total = bt__rbuf_u64(r);
    e->offset = bt__rbuf_u64(r);
    e->count = bt__rbuf_u32(r);
    bt__ps_opt_get(r, &e->opt);
    e->applied = bt__rbuf_u64(r);
    size_t bytes = (size_t)e->count * 12;
    if (r->bad || r->left < bytes)
        return -1;
    *data = r->p;
    r->p += bytes;
    r->left -= bytes;
    return 0;
}

/* Version 2's fields after v: copies the counts into cnt (nworkers) and acc (count floats). */
static int read_tail(struct bt__rbuf *r, struct bt__ps_ckpt_entry *e, uint32_t nworkers,
                     uint64_t *cnt, float *acc)
{
    e->arrivals = bt__rbuf_u32(r);
    uint32_t has_cnt = bt__rbuf_u32(r);
    if (r->bad || has_cnt > 1 || (has_cnt && !nworkers))
        return -1;
    for (uint32_t w = 0; has_cnt && w < nworkers; w++)
        cnt[w] = bt__rbuf_u64(r);
    e->cnt = has_cnt ? cnt : NULL;
    if (r->bad || r->left < (size_t)e->count * 4 || e->arrivals > nworkers)
        return -1;
    memcpy(acc, r->p, (size_t)e->count * 4);
    r->p += (size_t)e->count * 4, r->left -= (size_t)e->count * 4;
    e->acc = acc;
    return 0;
}

/* Version 2's generation and workers; st->w malloc'd. */
static int read_state(struct bt__rbuf *r, struct bt__ps_ckpt_state *st)
{
    st->generation = bt__rbuf_u32(r);
    st->nworkers = bt__rbuf_u32(r);
    if (r->bad || st->nworkers > BT__PS_MAX_WORKERS || r->left / 28 < st->nworkers)
        return -1;
    if (st->nworkers && !(st->w = calloc(st->nworkers, sizeof(*st->w))))
        return -1;
    for (uint32_t w = 0; w < st->nworkers; w++) {
        st->w[w].incarnation = bt__rbuf_u64(r);
        st->w[w].push_seq = bt__rbuf_u64(r);
        st->w[w].part_seq = bt__rbuf_u64(r);
        st->w[w].part_done = bt__rbuf_u32(r);
    }
    return r->bad ? -1 : 0;
}

static uint32_t crc_of(const uint8_t *b, size_t n) /* crc32 takes uInt lengths */
{
    uLong crc = crc32(0, NULL, 0);
    for (size_t step; n; n -= step, b += step) {
        step = n > (1u << 30) ? (1u << 30) : n;
        crc = crc32(crc, b, (uInt)step);
    }
    return (uint32_t)crc;
}

static int parse(const char *path, const uint8_t *b, size_t len, uint32_t index,
                 struct bt__ps_ckpt_state *st, int (*add)(void *, const struct bt__ps_ckpt_entry *),
                 void *arg, struct bt__err *err)
{
    if (len == 0)
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "checkpoint %s: empty file; hint: move it away to start from the "
                           "initial values",
                           path);
    if (len < 8 || bt__le64(b) != CKPT_MAGIC)
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "checkpoint %s: not a baton ps checkpoint (bad magic); hint: is "
                           "--checkpoint-dir the right folder?",
                           path);
    if (len < 28 || bt__le32(b + len - 4) != crc_of(b, len - 4))
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "checkpoint %s is truncated or corrupt (CRC mismatch); hint: move it "
                           "away to start from the initial values",
                           path);
    struct bt__rbuf r = {.p = b, .left = len - 4};
    uint64_t magic = bt__rbuf_u64(&r);
    uint32_t ver = bt__rbuf_u32(&r), idx = bt__rbuf_u32(&r);
    uint64_t n = bt__rbuf_u64(&r);
    if (magic != CKPT_MAGIC || ver < 1 || ver > CKPT_VERSION || idx != index)
        return bt__err_set(err, BT_ERR_INVALID_ARG,
                           "checkpoint %s: %s (version %u, server %u; this is version %u, "
                           "server %u)",
                           path,
                           magic != CKPT_MAGIC ? "not a baton ps checkpoint"
                                               : "written by another version or server",
                           ver, idx, CKPT_VERSION, index);
    if (ver >= 2 && read_state(&r, st) != 0)
        return bt__err_set(err, BT_ERR_INVALID_ARG, "checkpoint %s: its worker table is malformed",
                           path);
    char name[BT__PS_MAX_NAME + 1];
    uint64_t *cnt = calloc(st->nworkers ? st->nworkers : 1, sizeof(*cnt));
    if (!cnt)
        return bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: out of memory");
    int rc = BT_OK;
    for (uint64_t i = 0; i < n && rc == BT_OK; i++) {
        struct bt__ps_ckpt_entry e = {0};
        const uint8_t *data;
        float *f = NULL;
        if (read_entry(&r, &e, name, &data) != 0 || !(f = malloc((size_t)e.count * 16 + 4)) ||
            (ver >= 2 && read_tail(&r, &e, st->nworkers, cnt, f + 3 * (size_t)e.count) != 0)) {
            rc = f ? bt__err_set(err, BT_ERR_INVALID_ARG, "checkpoint %s: entry %llu is malformed",
                                 path, (unsigned long long)i)
                   : bt__err_set(err, BT_ERR_SYSTEM, "checkpoint: out of memory");
            free(f);
            break;
        }
        memcpy(f, data, (size_t)e.count * 12);
        e.w = f, e.m = f + e.count, e.v = f + 2 * (size_t)e.count;
        rc = add(arg, &e);
        free(f);
    }
    free(cnt);
    return rc;
}

int bt__ps_ckpt_read(const char *path, uint32_t index, int *found, struct bt__ps_ckpt_state *st,
                     int (*add)(void *arg, const struct bt__ps_ckpt_entry *e), void *arg,
                     struct bt__err *err)
{
    uint8_t *b = NULL;
    size_t len = 0;
    struct bt__ps_ckpt_state own;
    if (!st)
        st = &own;
    memset(st, 0, sizeof(*st));
    BT_CHECK(slurp(path, &b, &len, found, err));
    if (!*found)
        return BT_OK;
    int rc = parse(path, b, len, index, st, add, arg, err);
    free(b);
    if (st == &own || rc != BT_OK) {
        free(st->w);
        st->w = NULL, st->nworkers = 0;
    }
    return rc;
}
