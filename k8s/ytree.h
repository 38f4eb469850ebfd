/* ytree.h: a small YAML tree for the operator shim: load a document with libyaml, look things
 * up, build and edit objects, and emit them again as a `---`-separated YAML stream.
 *
 * Scalars keep the style they were written in (plain, quoted, literal...), so a value's type
 * survives a round trip: `containerPort: 23456` stays an integer and `value: "1"` stays a
 * string. Scalars that the shim makes itself go through bt__yn_str (a string: plain only when
 * plain cannot be read as anything else) or bt__yn_int (an integer). Anchors and aliases are
 * expanded on load. Ownership: a node owns its children; bt__yn_push/bt__yn_set take ownership
 * of the child they are given. An allocation failure marks the tree "bad" instead of failing
 * each call; bt__yn_bad() says so once the object is built.
 */
#ifndef BT_K8S_YTREE_H
#define BT_K8S_YTREE_H

#include <stddef.h>
#include <stdio.h>

#include "common/err.h"

enum bt__yn_kind { BT_YN_SCALAR = 0, BT_YN_SEQ, BT_YN_MAP };

struct bt__yn {
    enum bt__yn_kind kind;
    int style;     /* scalar: a yaml_scalar_style_t (plain, double-quoted, ...) */
    int bad;       /* an allocation failed somewhere below this node */
    int line;      /* 1-based line in the source, 0 for made nodes */
    char *s;       /* scalar: the text, NUL-terminated */
    size_t n, cap; /* SEQ: items; MAP: 2 * pairs (key, value, key, value, ...) */
    struct bt__yn **v;
};

/* Constructors: NULL when out of memory (a NULL child handed to push/set marks its parent
 * bad). bt__yn_str picks plain or double-quoted style so the text always reads as a string. */
struct bt__yn *bt__yn_new(enum bt__yn_kind kind);
struct bt__yn *bt__yn_str(const char *s);
struct bt__yn *bt__yn_int(long long v);
struct bt__yn *bt__yn_bool(int v);
struct bt__yn *bt__yn_copy(const struct bt__yn *n);
void bt__yn_free(struct bt__yn *n); /* accepts NULL */

/* seq: append item. map: set key to val, replacing (and freeing) an existing value. */
void bt__yn_push(struct bt__yn *seq, struct bt__yn *item);
void bt__yn_set(struct bt__yn *map, const char *key, struct bt__yn *val);
/* Map lookup: the value for key, or NULL (also when map is NULL or not a map). */
struct bt__yn *bt__yn_get(const struct bt__yn *map, const char *key);
/* The text of a scalar value for key, or NULL when absent or not a scalar. */
const char *bt__yn_gets(const struct bt__yn *map, const char *key);
/* 1 when the tree (or any node below) hit an allocation failure. */
int bt__yn_bad(const struct bt__yn *n);
/* 1 when the scalar was written plain and reads as null (`~`, `null`, empty). */
int bt__yn_is_null(const struct bt__yn *n);

/* Loads every document of buf (len bytes) into docs (up to max); *ndocs gets the count.
 * what names the source in errors ("job.yaml"). A syntax error is BT_ERR_INVALID_USAGE with
 * "what:LINE:COL: problem". */
/* One pass over buf's YAML events, before building anything (libyaml's scanner works harder
 * the deeper it is nested, so a deep input must be refused first): 1, with the 1-based line
 * and the byte offset of the first collection opened deeper than max, else 0. A syntax error
 * counts as 0: the load that follows reports it. */
int bt__yn_too_deep(const char *buf, size_t len, int max, size_t *line, size_t *offset);

int bt__yn_load(const char *buf, size_t len, const char *what, struct bt__yn **docs, size_t max,
                size_t *ndocs, struct bt__err *err);
/* Writes docs as a YAML stream, each document opened by `---`. */
int bt__yn_emit(FILE *out, struct bt__yn *const *docs, size_t ndocs, struct bt__err *err);

#endif
