/* ytree.c: load YAML into struct bt__yn with libyaml's document API, and emit it back with
 * libyaml's event emitter. See ytree.h for the contract.
 *
 * Loading expands aliases (libyaml's document API shares the aliased node), so a hostile file
 * could ask for an exponential tree ("billion laughs"): the conversion counts nodes and stops
 * at BT_YN_MAX_NODES, and at a nesting depth of BT_YN_MAX_DEPTH.
 *
 * Deep nesting is refused before libyaml builds a document: libyaml's scanner does work in
 * proportion to the nesting depth for every token (it walks its stack of possible simple keys),
 * so 200 KB of `[` took 26 s. check_depth walks the events once and stops at the first
 * collection deeper than BT_YN_MAX_DEPTH, so loading stays linear in the input.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "k8s/ytree.h"

#define BT_YN_MAX_NODES 50000 /* a real job file has a few hundred */
#define BT_YN_MAX_DEPTH 64

struct bt__yn *bt__yn_new(enum bt__yn_kind kind)
{
    struct bt__yn *n = calloc(1, sizeof(*n));
    if (n)
        n->kind = kind;
    return n;
}

static struct bt__yn *scalar(const char *s, size_t len, int style)
{
    struct bt__yn *n = bt__yn_new(BT_YN_SCALAR);
    if (!n)
        return NULL;
    n->style = style;
    n->s = malloc(len + 1);
    if (!n->s) {
        free(n);
        return NULL;
    }
    memcpy(n->s, s, len);
    n->s[len] = '\0';
    return n;
}

/* Plain is safe for a string when YAML 1.1 (libyaml, PyYAML, go-yaml) cannot read it as a
 * null, bool or number: it starts with a letter, holds only name characters, and is not one
 * of the 1.1 words for true/false/null. */
static int plain_is_string(const char *s)
{
    static const char *const words[] = {"y",     "n",  "yes", "no",  "true",
                                        "false", "on", "off", "null"};
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-", *p))
            return 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcasecmp(s, words[i]))
            return 0;
    return 1;
}

struct bt__yn *bt__yn_str(const char *s)
{
    int style = plain_is_string(s) ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    return scalar(s, strlen(s), style);
}

struct bt__yn *bt__yn_int(long long v)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%lld", v);
    return scalar(buf, (size_t)len, YAML_PLAIN_SCALAR_STYLE);
}

struct bt__yn *bt__yn_bool(int v)
{
    return scalar(v ? "true" : "false", v ? 4 : 5, YAML_PLAIN_SCALAR_STYLE);
}

void bt__yn_free(struct bt__yn *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        bt__yn_free(n->v[i]);
    free(n->v);
    free(n->s);
    free(n);
}

struct bt__yn *bt__yn_copy(const struct bt__yn *n)
{
    if (!n)
        return NULL;
    struct bt__yn *c = n->kind == BT_YN_SCALAR ? scalar(n->s, strlen(n->s), n->style)
                                               : bt__yn_new(n->kind);
    if (!c)
        return NULL;
    c->line = n->line;
    for (size_t i = 0; i < n->n; i++)
        bt__yn_push(c, bt__yn_copy(n->v[i])); /* a map's pairs are copied in order */
    return c;
}

void bt__yn_push(struct bt__yn *seq, struct bt__yn *item)
{
    if (!seq) {
        bt__yn_free(item);
        return;
    }
    if (!item) {
        seq->bad = 1;
        return;
    }
    if (seq->n == seq->cap) {
        size_t cap = seq->cap ? seq->cap * 2 : 8;
        struct bt__yn **v = realloc(seq->v, cap * sizeof(*v));
        if (!v) {
            seq->bad = 1;
            bt__yn_free(item);
            return;
        }
        seq->v = v;
        seq->cap = cap;
    }
    seq->v[seq->n++] = item;
}

static size_t find_key(const struct bt__yn *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (map->v[i]->kind == BT_YN_SCALAR && !strcmp(map->v[i]->s, key))
            return i;
    return (size_t)-1;
}

void bt__yn_set(struct bt__yn *map, const char *key, struct bt__yn *val)
{
    if (!map || map->kind != BT_YN_MAP) {
        bt__yn_free(val);
        return;
    }
    if (!val) {
        map->bad = 1;
        return;
    }
    size_t i = find_key(map, key);
    if (i != (size_t)-1) {
        bt__yn_free(map->v[i + 1]);
        map->v[i + 1] = val;
        return;
    }
    struct bt__yn *k = scalar(key, strlen(key), YAML_PLAIN_SCALAR_STYLE);
    if (!k) {
        map->bad = 1;
        bt__yn_free(val);
        return;
    }
    bt__yn_push(map, k);
    bt__yn_push(map, val);
}

struct bt__yn *bt__yn_get(const struct bt__yn *map, const char *key)
{
    if (!map || map->kind != BT_YN_MAP)
        return NULL;
    size_t i = find_key(map, key);
    return i == (size_t)-1 ? NULL : map->v[i + 1];
}

const char *bt__yn_gets(const struct bt__yn *map, const char *key)
{
    const struct bt__yn *v = bt__yn_get(map, key);
    return v && v->kind == BT_YN_SCALAR && !bt__yn_is_null(v) ? v->s : NULL;
}

int bt__yn_is_null(const struct bt__yn *n)
{
    if (!n || n->kind != BT_YN_SCALAR || n->style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return !n->s[0] || !strcmp(n->s, "~") || !strcasecmp(n->s, "null");
}

int bt__yn_bad(const struct bt__yn *n)
{
    if (!n || n->bad)
        return 1;
    for (size_t i = 0; i < n->n; i++)
        if (bt__yn_bad(n->v[i]))
            return 1;
    return 0;
}

/* ---- loading ---- */

struct conv {
    yaml_document_t *doc;
    size_t budget; /* nodes still allowed */
};

static struct bt__yn *convert(struct conv *c, yaml_node_t *yn, int depth)
{
    if (!yn || depth > BT_YN_MAX_DEPTH || c->budget == 0)
        return NULL;
    c->budget--;
    struct bt__yn *n = NULL;
    if (yn->type == YAML_SCALAR_NODE) {
        n = scalar((const char *)yn->data.scalar.value, yn->data.scalar.length,
                   yn->data.scalar.style);
    } else if (yn->type == YAML_SEQUENCE_NODE) {
        n = bt__yn_new(BT_YN_SEQ);
        for (yaml_node_item_t *it = yn->data.sequence.items.start;
             n && it < yn->data.sequence.items.top && !n->bad; it++)
            bt__yn_push(n, convert(c, yaml_document_get_node(c->doc, *it), depth + 1));
    } else if (yn->type == YAML_MAPPING_NODE) {
        n = bt__yn_new(BT_YN_MAP);
        for (yaml_node_pair_t *p = yn->data.mapping.pairs.start;
             n && p < yn->data.mapping.pairs.top && !n->bad; p++) {
            bt__yn_push(n, convert(c, yaml_document_get_node(c->doc, p->key), depth + 1));
            bt__yn_push(n, convert(c, yaml_document_get_node(c->doc, p->value), depth + 1));
        }
    }
    if (n)
        n->line = (int)yn->start_mark.line + 1;
    if (n && n->bad) {
        bt__yn_free(n);
        return NULL;
    }
    return n;
}

static int load_error(yaml_parser_t *p, const char *what, struct bt__err *err)
{
    if (p->error == YAML_MEMORY_ERROR)
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory while parsing", what);
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s:%zu:%zu: YAML %s%s%s", what,
                       p->problem_mark.line + 1, p->problem_mark.column + 1,
                       p->problem ? p->problem : "syntax error", p->context ? " " : "",
                       p->context ? p->context : "");
}

int bt__yn_too_deep(const char *buf, size_t len, int max, size_t *line, size_t *offset)
{
    yaml_parser_t p;
    int depth = 0, deep = 0, done = 0;
    if (!yaml_parser_initialize(&p))
        return 0;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done && !deep) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev))
            break; /* a syntax error: the load that follows reports it */
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth > max) {
                deep = 1;
                *line = ev.start_mark.line + 1;
                *offset = ev.start_mark.index;
            }
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return deep;
}

/* BT_ERR_INVALID_USAGE naming the line when a collection opens deeper than BT_YN_MAX_DEPTH. */
static int check_depth(const char *buf, size_t len, const char *what, struct bt__err *err)
{
    size_t line = 0, offset = 0;
    if (!bt__yn_too_deep(buf, len, BT_YN_MAX_DEPTH, &line, &offset))
        return BT_OK;
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s:%zu: YAML nested deeper than %d levels", what,
                       line, BT_YN_MAX_DEPTH);
}

int bt__yn_load(const char *buf, size_t len, const char *what, struct bt__yn **docs, size_t max,
                size_t *ndocs, struct bt__err *err)
{
    yaml_parser_t p;
    struct conv c = {.budget = BT_YN_MAX_NODES};
    *ndocs = 0;
    int rc = check_depth(buf, len, what, err);
    if (rc != BT_OK)
        return rc;
    if (!yaml_parser_initialize(&p))
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: cannot start the YAML parser", what);
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&p, &doc)) {
            rc = load_error(&p, what, err);
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) { /* end of the stream */
            yaml_document_delete(&doc);
            break;
        }
        c.doc = &doc;
        struct bt__yn *n = *ndocs < max ? convert(&c, root, 0) : NULL;
        int full = *ndocs >= max;
        yaml_document_delete(&doc);
        if (full || !n) {
            rc = bt__err_set(err, BT_ERR_INVALID_USAGE,
                             full ? "%s: more than %zu YAML documents"
                                  : "%s: YAML document %zu is too large or too deeply nested",
                             what, full ? max : *ndocs + 1);
            break;
        }
        docs[(*ndocs)++] = n;
    }
    yaml_parser_delete(&p);
    if (rc != BT_OK) {
        while (*ndocs > 0)
            bt__yn_free(docs[--*ndocs]);
    }
    return rc;
}

/* ---- emitting ---- */

static int emit_node(yaml_emitter_t *e, const struct bt__yn *n)
{
    yaml_event_t ev;
    int ok;
    if (n->kind == BT_YN_SCALAR) {
        ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)n->s, (int)strlen(n->s),
                                          1, 1, (yaml_scalar_style_t)n->style);
        return ok && yaml_emitter_emit(e, &ev);
    }
    if (n->kind == BT_YN_SEQ)
        ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    else
        ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    if (!ok || !yaml_emitter_emit(e, &ev))
        return 0;
    for (size_t i = 0; i < n->n; i++)
        if (!emit_node(e, n->v[i]))
            return 0;
    ok = n->kind == BT_YN_SEQ ? yaml_sequence_end_event_initialize(&ev)
                              : yaml_mapping_end_event_initialize(&ev);
    return ok && yaml_emitter_emit(e, &ev);
}

static int emit_stream(yaml_emitter_t *e, struct bt__yn *const *docs, size_t ndocs)
{
    yaml_event_t ev;
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || !yaml_emitter_emit(e, &ev))
        return 0;
    for (size_t i = 0; i < ndocs; i++) {
        if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0) ||
            !yaml_emitter_emit(e, &ev) || !emit_node(e, docs[i]) ||
            !yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(e, &ev))
            return 0;
    }
    return yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) &&
           yaml_emitter_flush(e);
}

int bt__yn_emit(FILE *out, struct bt__yn *const *docs, size_t ndocs, struct bt__err *err)
{
    yaml_emitter_t e;
    if (!yaml_emitter_initialize(&e))
        return bt__err_set(err, BT_ERR_SYSTEM, "cannot start the YAML emitter");
    yaml_emitter_set_output_file(&e, out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1); /* never fold long lines such as TF_CONFIG */
    yaml_emitter_set_indent(&e, 2);
    int ok = emit_stream(&e, docs, ndocs);
    int rc = ok ? BT_OK
                : bt__err_set(err, BT_ERR_SYSTEM, "writing YAML: %s",
                              e.problem ? e.problem : "output error");
    yaml_emitter_delete(&e);
    return rc;
}
