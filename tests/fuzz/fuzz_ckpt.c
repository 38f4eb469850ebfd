/* fuzz_ckpt.c: the two checkpoint readers on the input as a file: the parameter server's
 * (collectives/ps/ckpt.c, bt__ps_ckpt_read) and the trainer's (examples/mnist/ckpt.c,
 * mn_ckpt_read).
 *
 * A PS checkpoint ends in a CRC32 of everything before it, which random bytes never match, so
 * the PS reader gets the input twice: as it is, and with the right CRC appended (the input is
 * then a checkpoint less its trailer, and the entries behind the CRC get fuzzed too). Each
 * entry handed to add() must have count floats readable in w, m and v.
 */
#include <string.h>
#include <zlib.h>

#include "../../examples/mnist/mnist.h"
#include "collectives/ps/ps.h"
#include "fuzz_util.h"

static volatile float sink;

static int add(void *arg, const struct bt__ps_ckpt_entry *e)
{
    if (!e->name || strlen(e->name) > BT__PS_MAX_NAME)
        abort();
    if (e->count) /* ASan: each view holds count floats */
        sink = e->w[e->count - 1] + e->m[e->count - 1] + e->v[e->count - 1];
    ++*(int *)arg;
    return BT_OK;
}

static void ps_read(const uint8_t *data, size_t size)
{
    char name[16], path[40];
    int fd = fz_memfile(data, size, name, path), found = 0, n = 0;
    struct bt__err err = {0};
    if (bt__ps_ckpt_read(path, 0, &found, NULL, add, &n, &err) != BT_OK && !err.msg[0])
        abort(); /* a refusal says why */
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float *params, *adam;
    if (!params) {
        fz_quiet();
        params = malloc(sizeof(float) * MN_NUM_PARAMS);
        adam = malloc(sizeof(float) * 2 * MN_NUM_PARAMS);
        if (!params || !adam)
            abort();
    }
    ps_read(data, size);
    uint8_t *withcrc = malloc(size + 4);
    if (!withcrc)
        return 0;
    memcpy(withcrc, data, size);
    bt__put_le32(withcrc + size, (uint32_t)crc32(crc32(0, NULL, 0), data, (uInt)size));
    ps_read(withcrc, size + 4);
    free(withcrc);

    char name[16], path[40], err[512];
    struct mn_ckpt_header h;
    int fd = fz_memfile(data, size, name, path);
    if (mn_ckpt_read(path, &h, params, adam, err, sizeof err) < 0 && !err[0])
        abort();
    close(fd);
    return 0;
}
