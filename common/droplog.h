/* droplog.h: rate-limited WARN lines for the connections a server drops.
 *
 * A port scanner, a health check pointed at the wrong port or a job with the wrong token can
 * open thousands of connections, and a WARN line for each buries everything else. A server
 * counts each dropped connection by reason: the first BT__DROP_BURST of an interval (60 s) are
 * logged in full by the caller, the rest only counted, and once the interval is over one
 * summary line names how many were held back and why ("... 4,990 more connections dropped in
 * the last 60 s without a line each: 4,990 bad magic, 3 stalls"). The totals since the server
 * started stay readable for tests and stats.
 *
 * Not thread-safe except bt__droplog_total: one server thread admits, ticks and flushes.
 */
#ifndef BT_COMMON_DROPLOG_H
#define BT_COMMON_DROPLOG_H

#include <stdint.h>

/* Each reason, and how the summary names it. */
#define BT__DROP_REASONS(X)                                                                        \
    X(BAD_MAGIC, "bad magic")                                                                      \
    X(VERSION, "wrong protocol version")                                                           \
    X(AUTH, "failed auth")                                                                         \
    X(MALFORMED, "malformed frames")                                                               \
    X(STALL, "stalls")                                                                             \
    X(CAP, "over a cap")                                                                           \
    X(LOST, "lost mid-protocol")                                                                   \
    X(OOM, "out of memory")

enum bt__drop_reason {
#define BT__DROP_ENUM(name, label) BT__DROP_##name,
    BT__DROP_REASONS(BT__DROP_ENUM)
#undef BT__DROP_ENUM
        BT__DROP_N
};

#define BT__DROP_BURST 10                        /* lines in full per interval */
#define BT__DROP_INTERVAL_NS (60 * 1000000000LL) /* the default interval */

struct bt__droplog {
    unsigned subsys;            /* log.h's BT_SUB_* for the summary */
    const char *what;           /* "rendezvous store": the summary's subject (static) */
    int64_t interval_ns;        /* ns; set before the server thread starts */
    int64_t window_start;       /* ns; 0: no window open */
    int shown;                  /* lines in full in this window */
    uint64_t held[BT__DROP_N];  /* counted but not logged in this window */
    uint64_t total[BT__DROP_N]; /* every drop since init; written with __atomic */
};

void bt__droplog_init(struct bt__droplog *d, unsigned subsys, const char *what);
/* Counts one drop for reason r; returns 1 when the caller should log it in full at WARN, 0
 * when it is held back for the summary. */
int bt__droplog_admit(struct bt__droplog *d, enum bt__drop_reason r);
/* Writes the summary once the window is over; returns the ns until it should be called again,
 * or -1 when nothing is held. Call it from the server's loop. */
int64_t bt__droplog_tick(struct bt__droplog *d);
/* Writes the summary now if anything is held (the server stops). */
void bt__droplog_flush(struct bt__droplog *d);
/* Drops for reason r since init; safe from any thread. */
uint64_t bt__droplog_total(const struct bt__droplog *d, enum bt__drop_reason r);

#endif
