/* hash.h: FNV-1a (Fowler, Noll, Vo), the project's one non-cryptographic hash (the TCP
 * handshake's job cookie, the token's short form), and the one hash table built on it: the
 * store's keys, the parameter server's pieces and its client's keys.
 * 64-bit; not for anything an attacker chooses to collide (the store authenticates first).
 *
 * The table is intrusive and chained: an element embeds a struct bt__hnode as its first
 * member, so a node pointer is the element pointer. The table never allocates elements and
 * never compares keys: a lookup walks bt__htab_chain(t, h) and compares node->hash, then the
 * caller's key. Buckets are a power of two and double when there are as many elements as
 * buckets (a failed doubling only makes chains longer).
 */
#ifndef BT_COMMON_HASH_H
#define BT_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define BT_FNV1A_INIT 1469598103934665603ULL

/* Continues hash h over n bytes at p (start with BT_FNV1A_INIT). */
static inline uint64_t bt__fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Continues hash h over the bytes of the string s (without its NUL). */
static inline uint64_t bt__fnv1a_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct bt__hnode {
    struct bt__hnode *next; /* in its bucket */
    uint64_t hash;
};

struct bt__htab {
    struct bt__hnode **b; /* nb buckets */
    size_t nb, n;         /* buckets (a power of two), elements */
};

/* Allocates nb buckets (rounded up to a power of two); 0, or -1 when out of memory. */
int bt__htab_init(struct bt__htab *t, size_t nb);
/* Frees the buckets (not the elements: walk t->b first). */
void bt__htab_free(struct bt__htab *t);
void bt__htab_insert(struct bt__htab *t, struct bt__hnode *node, uint64_t hash);
/* node must be in t. */
void bt__htab_remove(struct bt__htab *t, struct bt__hnode *node);

static inline size_t bt__htab_slot(const struct bt__htab *t, uint64_t h)
{
    return (size_t)(h ^ (h >> 29)) & (t->nb - 1);
}

/* The first node of hash h's bucket; walk on with ->next. */
static inline struct bt__hnode *bt__htab_chain(const struct bt__htab *t, uint64_t h)
{
    return t->b[bt__htab_slot(t, h)];
}

#endif
