/* trace.h: flight-recorder dumps (collectives/flight.h) as text, and what they say together.
 *
 * A dump is one rank's recorder, written by its launcher (run_flight.c) to --log-dir and to the
 * store when the job fails, times out or stalls, and read back by the launchers and by
 * `baton trace FILE...`:
 *
 *   # baton flight recorder 2
 *   rank=3 size=8 node=1 host=h pid=812 dumped_ns=1764650000000000000 entries=2 comms=2
 *   comm=0 size=8 rank=3 name=world
 *   comm=c1a2b3c4 size=4 rank=1 name=c1a2b3c4 (world ranks 1, 3, 5, 7)
 *   seq=1041 comm=0 op=broadcast dtype=float32 redop=- count=1024 root=0 peers=8 start_ns=...
 * end_ns=... state=done
 *   ...
 *
 * One comm line per communicator the rank recorded (its id: 0 for the world, c + 8 hex digits
 * for a child, the same on every member; its size, the rank's rank in it, its name with the
 * members' world ranks); entries are in the order the rank started them. The analysis compares
 * the ranks' last calls communicator by communicator: who never entered the call the others
 * are in, and where the ranks disagree on a call's op, count, dtype, reduction or root.
 * Version 1 dumps (no comm lines) are read too.
 */
#ifndef BT_LAUNCHER_TRACE_H
#define BT_LAUNCHER_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "collectives/flight.h"

struct bt__trace_comm {
    uint32_t id; /* 0: the world */
    int size, rank;
    char name[BT_FLIGHT_NAME];
};

struct bt__trace_rank {
    int rank, size, node, pid; /* rank and size: in the world */
    char host[64];
    int64_t dumped_ns; /* when the dump was taken (CLOCK_REALTIME) */
    int ncomm;         /* communicators described */
    struct bt__trace_comm comm[BT_FLIGHT_RINGS];
    int n;                      /* entries */
    struct bt__flight_entry *e; /* n, in the order they started (malloc'd) */
};

/* The dump of h (the last max entries of each ring) as text into *out (malloc'd, NUL-terminated);
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
