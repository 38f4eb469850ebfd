/* idx.c: reads the IDX files MNIST and Fashion-MNIST ship in, plain or gzip'd (zlib's gzread
 * reads both). An IDX file is a big-endian header {u8 0, u8 0, u8 type (0x08 = ubyte),
 * u8 ndims; u32 dim[ndims]} followed by the product of the dims bytes. Every failure gives one
 * line naming the file and what is wrong with it; nothing here exits or prints.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "mnist.h"

#define MN_IDX_MAX_ITEMS (1u << 24)   /* a cap on what a header may claim */
#define MN_IDX_MAX_BYTES (1ull << 30) /* Fashion-MNIST's training images are 47 MB */
#define MN_IDX_CHUNK (1u << 20)       /* the first allocation; it doubles as data arrives */

/* DIR/NAME if it exists, else DIR/NAME.gz if it exists; -1 when neither does. */
static int find_file(const char *dir, const char *name, char *path, size_t len)
{
    struct stat st;
    snprintf(path, len, "%s/%s", dir, name);
    if (stat(path, &st) == 0)
        return 0;
    snprintf(path, len, "%s/%s.gz", dir, name);
    if (stat(path, &st) == 0)
        return 0;
    snprintf(path, len, "%s/%s[.gz]", dir, name);
    return -1;
}

/* Reads exactly n bytes; returns the count read (short on end of file or error). */
static size_t read_full(gzFile f, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, (char *)buf + got, (unsigned)want);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Header: magic, then ndims = magic & 0xff dimensions; rows x cols must be want_rows x
 * want_cols when those are not 0, and the data at most MN_IDX_MAX_BYTES. */
static int read_header(gzFile f, const char *path, uint32_t magic, const uint32_t want[2],
                       uint32_t dim[3], char *err, size_t errlen)
{
    unsigned char h[16];
    unsigned ndims = magic & 0xff;
    size_t hlen = 4 + 4 * (size_t)ndims;
    size_t got = read_full(f, h, hlen);
    if (got >= 4 && be32(h) != magic) {
        snprintf(err, errlen,
                 "%s: bad magic 0x%08x (want 0x%08x, an IDX %s file); hint: is it the right "
                 "file, and a whole one?",
                 path, be32(h), magic, ndims == 3 ? "image" : "label");
        return -1;
    }
    if (got < hlen) {
        int zerr;
        const char *zmsg = gzerror(f, &zerr);
        if (zerr < 0 && zerr != Z_BUF_ERROR)
            snprintf(err, errlen, "%s: not a valid gzip file: %s", path, zmsg);
        else
            snprintf(err, errlen, "%s: truncated: the header needs %zu bytes, the file has %zu",
                     path, hlen, got);
        return -1;
    }
    for (unsigned i = 0; i < 3; i++)
        dim[i] = i < ndims ? be32(h + 4 + 4 * i) : 1;
    if (dim[0] > MN_IDX_MAX_ITEMS || dim[1] > 4096 || dim[2] > 4096) {
        snprintf(err, errlen, "%s: implausible dimensions %u x %u x %u", path, dim[0], dim[1],
                 dim[2]);
        return -1;
    }
    if (ndims == 3 && want[0] && (dim[1] != want[0] || dim[2] != want[1])) {
        snprintf(err, errlen, "%s: images are %ux%u, the model wants %ux%u", path, dim[1], dim[2],
                 want[0], want[1]);
        return -1;
    }
    if ((uint64_t)dim[0] * dim[1] * dim[2] > MN_IDX_MAX_BYTES) {
        snprintf(err, errlen,
                 "%s: the header claims %llu bytes of data, more than the %llu allowed", path,
                 (unsigned long long)dim[0] * dim[1] * dim[2],
                 (unsigned long long)MN_IDX_MAX_BYTES);
        return -1;
    }
    return 0;
}

/* Reads up to n bytes into *data, growing it as bytes arrive, so a header that claims more
 * than the file holds costs no more memory than the file does. Returns the count read, or
 * (size_t)-1 when out of memory. */
static size_t read_data(gzFile f, uint8_t **data, size_t n)
{
    size_t got = 0, cap = n < MN_IDX_CHUNK ? n : MN_IDX_CHUNK;
    *data = malloc(cap ? cap : 1);
    if (!*data)
        return (size_t)-1;
    for (;;) {
        got += read_full(f, *data + got, cap - got);
        if (got < cap || cap == n)
            return got;
        size_t ncap = cap * 2 < n ? cap * 2 : n;
        uint8_t *p = realloc(*data, ncap);
        if (!p)
            return (size_t)-1;
        *data = p;
        cap = ncap;
    }
}

int mn_idx_load(const char *dir, const char *name, uint32_t magic, const uint32_t want[2],
                uint8_t **data, uint32_t *count, uint32_t *rows, uint32_t *cols, char *err,
                size_t errlen)
{
    char path[4096];
    uint32_t dim[3];
    int rc = -1;
    *data = NULL;
    if (find_file(dir, name, path, sizeof path) != 0) {
        snprintf(err, errlen,
                 "%s: not found; hint: install dataset-fashion-mnist or pass "
                 "--data DIR",
                 path);
        return -1;
    }
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
        return -1;
    }
    if (read_header(f, path, magic, want, dim, err, errlen) != 0)
        goto out;
    size_t n = (size_t)dim[0] * dim[1] * dim[2];
    size_t got = read_data(f, data, n);
    if (got == (size_t)-1) {
        snprintf(err, errlen, "%s: out of memory for %zu bytes", path, n);
        goto out;
    }
    if (got < n) {
        int zerr;
        const char *zmsg = gzerror(f, &zerr);
        snprintf(err, errlen,
                 "%s: truncated: the header promises %zu bytes of data, the file "
                 "has %zu%s%s",
                 path, n, got, zerr < 0 ? "; zlib: " : "", zerr < 0 ? zmsg : "");
        goto out;
    }
    *count = dim[0];
    *rows = dim[1];
    *cols = dim[2];
    rc = 0;
out:
    if (rc != 0) {
        free(*data);
        *data = NULL;
    }
    gzclose(f);
    return rc;
}
