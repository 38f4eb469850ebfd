/* ckpt.c: reads the trainer's model and checkpoint files (model.bin, checkpoint.bin); the
 * layout is in mnist.h, and train.c writes them. Every failure is one line naming the file and
 * what is wrong with it (a directory, too short, another program's file, a bad checksum);
 * nothing here exits or prints.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "mnist.h"

/* The header, the floats and the checksum, in that order; -1 with err set on a failure. */
static int read_body(FILE *f, const char *path, struct mn_ckpt_header *h, float *params,
                     float *adam_state, char *err, size_t errlen)
{
    size_t n = sizeof(float) * MN_NUM_PARAMS;
    uint32_t c32 = 0;
    if (fread(h, sizeof *h, 1, f) != 1) {
        snprintf(err, errlen, "%s: truncated: shorter than its %zu-byte header", path, sizeof *h);
        return -1;
    }
    if (memcmp(h->magic, MN_CKPT_MAGIC, sizeof MN_CKPT_MAGIC) || h->version < 1 ||
        h->version > MN_CKPT_VERSION || h->n_params != MN_NUM_PARAMS) {
        snprintf(err, errlen,
                 "%s: not an mnist_cnn model or checkpoint (version %d, %d parameters)", path,
                 MN_CKPT_VERSION, MN_NUM_PARAMS);
        return -1;
    }
    if (fread(params, n, 1, f) != 1 || fread(adam_state, 2 * n, 1, f) != 1 ||
        fread(&c32, 4, 1, f) != 1) {
        snprintf(err, errlen, "%s: truncated", path);
        return -1;
    }
    uLong crc = crc32(0, (const Bytef *)h, sizeof *h);
    crc = crc32(crc, (const Bytef *)params, (uInt)n);
    crc = crc32(crc, (const Bytef *)adam_state, (uInt)(2 * n));
    if ((uint32_t)crc != c32) {
        snprintf(err, errlen, "%s: checksum mismatch: corrupt", path);
        return -1;
    }
    if (fgetc(f) != EOF) {
        snprintf(err, errlen, "%s: longer than a checkpoint: bytes after its checksum", path);
        return -1;
    }
    if (h->version == 1) /* it counted steps; a step was global_batch images */
        h->epoch_pos = (uint32_t)((uint64_t)h->epoch_pos * h->global_batch);
    return 0;
}

int mn_ckpt_read(const char *path, struct mn_ckpt_header *h, float *params, float *adam_state,
                 char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT)
        return 1;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: is a directory, not a model or checkpoint file", path);
        rc = -1;
    } else {
        rc = read_body(f, path, h, params, adam_state, err, errlen);
    }
    fclose(f);
    return rc;
}
