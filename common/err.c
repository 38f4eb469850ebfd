/* err.c: the error table's strings and the sticky per-handle error detail. */
#include <stdio.h>
#include <string.h>

#include "common/err.h"

const char *bt_strerror(int rc)
{
    switch (rc) {
#define BT_X_CASE(name, value, msg)                                                                \
    case value: return msg;
        BT_ERROR_TABLE(BT_X_CASE)
#undef BT_X_CASE
    }
    return "unknown error code";
}

static int err_vset(struct bt__err *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

int bt__err_set(struct bt__err *err, int code, const char *fmt, ...)
{
    if (!err || err->code != BT_OK)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int bt__err_reset(struct bt__err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void bt__err_clear(struct bt__err *err)
{
    if (!err)
        return;
    err->code = BT_OK;
    err->msg[0] = '\0';
}
