/* param.c: env parsing for param.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/param.h"

int bt__parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return -1;
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default: break;
    }
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    if (shift && (v > (INT64_MAX >> shift) || v < (INT64_MIN >> shift)))
        return -1;
    *out = (int64_t)v * ((int64_t)1 << shift);
    return 0;
}

int bt__parse_dbl(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int64_t bt__env_int(const char *name, int64_t deflt)
{
    const char *s = getenv(name);
    int64_t v;
    if (!s || !*s)
        return deflt;
    if (bt__parse_int(s, &v) != 0) {
        BT_WARN(INIT, "%s='%s' is not an integer; using the default %lld", name, s,
                (long long)deflt);
        return deflt;
    }
    BT_INFO(INIT, "%s=%lld (from env)", name, (long long)v);
    return v;
}

double bt__env_dbl(const char *name, double deflt)
{
    const char *s = getenv(name);
    double v;
    if (!s || !*s)
        return deflt;
    if (bt__parse_dbl(s, &v) != 0) {
        BT_WARN(INIT, "%s='%s' is not a number; using the default %g", name, s, deflt);
        return deflt;
    }
    BT_INFO(INIT, "%s=%g (from env)", name, v);
    return v;
}

const char *bt__env_str(const char *name, const char *deflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return deflt;
    BT_INFO(INIT, "%s=%s (from env)", name, s);
    return s;
}
