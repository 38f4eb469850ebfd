/* droplog.c: counts dropped connections by reason and writes the summary lines (droplog.h). */
#include "common/droplog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/sock.h"

static const char *const labels[BT__DROP_N] = {
#define BT__DROP_LABEL(name, label) label,
    BT__DROP_REASONS(BT__DROP_LABEL)
#undef BT__DROP_LABEL
};

void bt__droplog_init(struct bt__droplog *d, unsigned subsys, const char *what)
{
    memset(d, 0, sizeof(*d));
    d->subsys = subsys;
    d->what = what;
    d->interval_ns = BT__DROP_INTERVAL_NS;
}

/* n with thousands separators: 4990 -> "4,990". */
static void with_commas(uint64_t n, char *out, size_t cap)
{
    char digits[24];
    int len = snprintf(digits, sizeof(digits), "%" PRIu64, n);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

void bt__droplog_flush(struct bt__droplog *d)
{
    uint64_t sum = 0;
    for (int r = 0; r < BT__DROP_N; r++)
        sum += d->held[r];
    if (sum > 0) {
        char line[512], num[32];
        size_t n = 0;
        for (int r = 0; r < BT__DROP_N && n < sizeof(line) - 64; r++) {
            if (!d->held[r])
                continue;
            with_commas(d->held[r], num, sizeof(num));
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %s", n ? ", " : "", num,
                                  labels[r]);
        }
        with_commas(sum, num, sizeof(num));
        BT_LOG(BT_LOG_WARN, d->subsys,
               "%s: ... and %s more connection(s) dropped in the last %.0f s without a line "
               "each: %s",
               d->what, num, (double)(bt__now_ns() - d->window_start) / 1e9, line);
    }
    memset(d->held, 0, sizeof(d->held));
    d->window_start = 0;
    d->shown = 0;
}

int bt__droplog_admit(struct bt__droplog *d, enum bt__drop_reason r)
{
    int64_t now = bt__now_ns();
    __atomic_fetch_add(&d->total[r], 1, __ATOMIC_RELAXED);
    if (d->window_start && now - d->window_start >= d->interval_ns)
        bt__droplog_flush(d);
    if (!d->window_start)
        d->window_start = now;
    if (d->shown < BT__DROP_BURST) {
        d->shown++;
        return 1;
    }
    d->held[r]++;
    return 0;
}

int64_t bt__droplog_tick(struct bt__droplog *d)
{
    if (!d->window_start)
        return -1;
    int64_t left = d->window_start + d->interval_ns - bt__now_ns();
    if (left > 0)
        return left;
    bt__droplog_flush(d); /* the window is over; with nothing held it just closes */
    return -1;
}

uint64_t bt__droplog_total(const struct bt__droplog *d, enum bt__drop_reason r)
{
    return __atomic_load_n(&d->total[r], __ATOMIC_RELAXED);
}
