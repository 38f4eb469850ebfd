/* fuzz_trace.c: `baton trace`'s reader of flight-recorder dumps (launcher/trace.c) and the
 * analysis it runs on them, the same code that reads the dumps other launchers publish in the
 * store after a failure.
 *
 * The input is up to 4 dumps separated by NUL bytes. Each is parsed; one that fails must say
 * why in one line and hold no entries; the ones that parse are analyzed together (as `baton
 * trace FILE...` does), whose findings must fit the buffer given, NUL-terminated.
 */
#include <string.h>

#include "launcher/trace.h"
#include "fuzz_util.h"

#define DUMPS_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bt__trace_rank t[DUMPS_MAX];
    char err[512], out[2048];
    int n = 0;
    size_t at = 0;
    while (at <= size && n < DUMPS_MAX) {
        const uint8_t *z = memchr(data + at, 0, size - at);
        size_t len = z ? (size_t)(z - data) - at : size - at;
        char *text = malloc(len + 1);
        if (!text)
            break;
        memcpy(text, data + at, len);
        text[len] = '\0';
        err[0] = '\0';
        if (bt__trace_parse(text, "dump", &t[n], err, sizeof(err)) == 0)
            n++;
        else if (!err[0] || strchr(err, '\n') || t[n].e)
            abort(); /* a failure says why, in one line, and keeps nothing */
        free(text);
        at += len + 1;
    }
    if (n > 0) {
        memset(out, 0x55, sizeof(out));
        int k = bt__trace_analyze(t, n, 0, out, sizeof(out));
        if (k < 0 || !memchr(out, '\0', sizeof(out)))
            abort();
    }
    for (int i = 0; i < n; i++)
        bt__trace_free(&t[i]);
    return 0;
}
