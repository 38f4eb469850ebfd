/* flags.h: the one table of `baton run`'s flags, of which the spec flags (--spec, -n,
 * --nnodes, --node-rank, --rdzv, --rdzv-port) are the subset `baton spec` also takes. One
 * parser reads them for both commands and `baton run --help` is generated from the same
 * table, so the ranges, the spellings and the usage text cannot disagree. */
#ifndef BT_LAUNCHER_FLAGS_H
#define BT_LAUNCHER_FLAGS_H

#include <stddef.h>

#include "launcher/run.h"

/* Which commands a flag belongs to. */
#define BT_FLAGS_SPEC 1u /* `baton spec` and `baton run`: fields of struct bt__spec_flags */
#define BT_FLAGS_RUN 2u  /* `baton run` only: fields of struct bt__run_opts */

/* Parses the flag at argv[*i] if it is one of cmds' (value in the next argument, after '=',
 * or attached to a one-letter flag: -n4), advancing *i past its value. sf receives the spec
 * flags, ro (NULL for `baton spec`) the others. Returns 1 when consumed, 0 when argv[*i] is
 * none of cmds' flags, -1 with one line in err when its value is bad or missing. */
int bt__flags_parse(unsigned cmds, struct bt__spec_flags *sf, struct bt__run_opts *ro, int argc,
                    char **argv, int *i, struct bt__err *err);
/* --nproc-per-node gpu as parsed (torchrun's spelling): run.c counts the GPUs. */
#define BT_FLAGS_NPROC_GPU (-2)
/* The flag of cmds nearest to the unknown arg (torchrun's underscores read as dashes), or NULL
 * when none is close: for "unknown option '--nproc-per-nod'; did you mean --nproc-per-node?" */
const char *bt__flags_nearest(unsigned cmds, const char *arg);
/* The option lines of the usage of the flags of cmds, one per flag (continuations indented). */
void bt__flags_usage(unsigned cmds, char *out, size_t cap);

#endif
