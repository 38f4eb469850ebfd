/* fuzz_idx.c: the trainer's IDX reader (examples/mnist/idx.c) on the input as a data file,
 * plain or gzip'd (zlib tells them apart by the gzip magic, as for a real file).
 *
 * The file is read as images (magic 0x803) when its fourth byte is 3, else as labels (0x801);
 * the first byte of the input is not part of the file: its low bit asks for 28x28 images (the
 * trainer's check) or any shape. A load that succeeds must hold count x rows x cols bytes.
 */
#include <string.h>

#include "../../examples/mnist/mnist.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char name[16], path[40], err[512];
    int fd = fz_memfile(data + 1, size - 1, name, path);
    uint32_t magic = size > 4 && data[4] == 1 ? 0x801 : 0x803;
    uint32_t want[2] = {data[0] & 1 ? 28 : 0, data[0] & 1 ? 28 : 0};
    uint8_t *px = NULL;
    uint32_t count = 0, rows = 0, cols = 0;
    if (mn_idx_load("/proc/self/fd", name, magic, want, &px, &count, &rows, &cols, err,
                    sizeof err) == 0) {
        size_t n = (size_t)count * rows * cols;
        if (n)
            (void)((volatile uint8_t *)px)[n - 1]; /* ASan: the buffer holds them all */
        free(px);
    } else if (px || !err[0]) {
        abort(); /* a failure frees, and says why */
    }
    close(fd);
    return 0;
}
