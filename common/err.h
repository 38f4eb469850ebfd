/* err.h: error detail and the three check macros.
 *
 * A bt__err is a code plus a one-line story (call, peer, errno text, attempt, hint). It is
 * embedded in every handle (communicator, store client, ...). Once a handle holds an error it
 * is sticky: bt__err_set() keeps the first one. This file does not log; callers decide.
 */
#ifndef BT_COMMON_ERR_H
#define BT_COMMON_ERR_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "baton.h"

#define BT__ERR_MSG_MAX 512

struct bt__err {
    int code;                  /* BT_OK while no error has happened */
    char msg[BT__ERR_MSG_MAX]; /* "" or the detail of the first error */
};

/* Records code and a printf-style detail in err unless it already holds an error (sticky).
 * err may be NULL. Returns code so callers can `return bt__err_set(...)`. */
int bt__err_set(struct bt__err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like bt__err_set but overwrites a previous error (for handles that are not sticky). */
int bt__err_reset(struct bt__err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bt__err_clear(struct bt__err *err);

/* BT_CHECK(call): return the call's error code when it is not BT_OK. */
#define BT_CHECK(call)                                                                             \
    do {                                                                                           \
        int bt__rc_ = (call);                                                                      \
        if (bt__rc_ != BT_OK)                                                                      \
            return bt__rc_;                                                                        \
    } while (0)

/* BT_CHECK_GOTO(call, rc, label): store the call's code in rc and jump to label on error. */
#define BT_CHECK_GOTO(call, rc, label)                                                             \
    do {                                                                                           \
        (rc) = (call);                                                                             \
        if ((rc) != BT_OK)                                                                         \
            goto label;                                                                            \
    } while (0)

/* BT_SYSCHECK(stmt, name, err): run a system call statement (its value < 0 on failure),
 * retrying on EINTR; on failure record "name: strerror" in err and return BT_ERR_SYSTEM. */
#define BT_SYSCHECK(stmt, name, err)                                                               \
    do {                                                                                           \
        int bt__s_;                                                                                \
        do {                                                                                       \
            bt__s_ = (int)(stmt);                                                                  \
        } while (bt__s_ < 0 && errno == EINTR);                                                    \
        if (bt__s_ < 0)                                                                            \
            return bt__err_set((err), BT_ERR_SYSTEM, "%s: %s", (name), strerror(errno));           \
    } while (0)

#endif
