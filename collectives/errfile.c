/* errfile.c: bt_error_record, the worker's own words about why it fails.
 *
 * `baton run` gives every worker an error file path in BATON_ERROR_FILE and
 * TORCHELASTIC_ERROR_FILE (the same path). PyTorch's @record writes its JSON there on an
 * uncaught exception; a C program calls bt_error_record() before it exits. The launcher reads
 * the file when the worker fails and puts its message in the job's failure summary
 * (launcher/run_forensics.c). The format is torchelastic's, so either side reads the other's:
 *
 *   {"message": {"message": "TEXT", "extraInfo": {"py_callstack": "", "timestamp": "SECONDS"}}}
 *
 * The file is written whole to a temporary name and renamed, so a reader never sees half of
 * it. Outside `baton run` (neither variable set) the call does nothing and returns BT_OK.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"
#include "common/err.h"

#define ERRFILE_MSG_MAX 4096 /* bytes of the message kept */

/* s as a JSON string body (no quotes) into out; control bytes as \u00XX. */
static void json_escape(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[k++] = '\\', out[k++] = (char)c;
        else if (c == '\n')
            out[k++] = '\\', out[k++] = 'n';
        else if (c < 0x20)
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", c);
        else
            out[k++] = (char)c;
    }
    out[k] = '\0';
}

static const char *error_file_path(void)
{
    const char *p = getenv("BATON_ERROR_FILE");
    if (!p || !*p)
        p = getenv("TORCHELASTIC_ERROR_FILE");
    return p && *p ? p : NULL;
}

BT_API int bt_error_record(const char *fmt, ...)
{
    char msg[ERRFILE_MSG_MAX], esc[2 * ERRFILE_MSG_MAX], tmp[4096];
    const char *path = error_file_path();
    if (!fmt)
        return BT_ERR_INVALID_ARG;
    if (!path)
        return BT_OK;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_escape(msg, esc, sizeof(esc));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
        return BT_ERR_INVALID_ARG;
    FILE *f = fopen(tmp, "we");
    if (!f)
        return BT_ERR_SYSTEM;
    fprintf(f,
            "{\"message\": {\"message\": \"%s\", \"extraInfo\": {\"py_callstack\": \"\", "
            "\"timestamp\": \"%lld\"}}}\n",
            esc, (long long)time(NULL));
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return BT_ERR_SYSTEM;
    }
    return BT_OK;
}
