/* trace.h: flight-recorder dumps (collectives/flight.h) as text, and what they say together.
 *
 * A dump is one rank's recorder, written by its launcher (run_flight.c) to --log-dir and to the
 * store when the job fails, times out or stalls, and read back by the launchers and by
 * `baton trace FILE...`:
 *
 *   # baton flight recorder 1
 *   rank=3 size=8 node=1 host=h pid=812 dumped_ns=1764650000000000000 entries=2
 *   seq=1041 comm=0 op=broadcast dtype=float32 redop=- count=1024 root=0 peers=8 start_ns=...
 * end_ns=... state=done
 *   ...
 *
 * Entries are in the order the rank ran them. The analysis compares the ranks' last calls on
 * the world communicator: who never entered the call the others are in, and where the ranks
 * disagree on a call's op, count, dtype, reduction or root.
 */
#ifndef BT_LAUNCHER_TRACE_H
#define BT_LAUNCHER_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "collectives/flight.h"

struct bt__trace_rank {
    int rank, size, node, pid;
    char host[64];
    int64_t dumped_ns;          /* when the dump was taken (CLOCK_REALTIME) */
    int n;                      /* entries */
    struct bt__flight_entry *e; /* n, in the order they ran (malloc'd) */
};

/* The dump of h (its last max entries) as text into *out (malloc'd, NUL-terminated);
 * returns 0, or -1 (out of memory). */
int bt__trace_format(const struct bt__flight_hdr *h, int node, const char *host, int max,
                     int64_t now_ns, char **out, size_t *len);
/* Parses one dump (name: for messages); returns 0, or -1 with one line in err ("FILE: line
 * 3: ..."). t->e is malloc'd; free with bt__trace_free. */
int bt__trace_parse(const char *text, const char *name, struct bt__trace_rank *t, char *err,
                    size_t errn);
void bt__trace_free(struct bt__trace_rank *t);
/* The findings (lines, each ending in '\n') into out; returns how many. now_ns: the time the
 * "... s ago" figures count to (the latest dump's time when 0). */
int bt__trace_analyze(const struct bt__trace_rank *t, int n, int64_t now_ns, char *out, size_t cap);

#endif
