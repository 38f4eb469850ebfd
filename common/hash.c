/* hash.c: the chained hash table of hash.h (buckets only; elements belong to the caller). */
#include <stdlib.h>

#include "common/hash.h"

int bt__htab_init(struct bt__htab *t, size_t nb)
{
    size_t n = 1;
    while (n < nb)
        n *= 2;
    t->b = calloc(n, sizeof(*t->b));
    t->nb = t->b ? n : 0;
    t->n = 0;
    return t->b ? 0 : -1;
}

void bt__htab_free(struct bt__htab *t)
{
    free(t->b);
    t->b = NULL;
    t->nb = t->n = 0;
}

static void grow(struct bt__htab *t)
{
    struct bt__htab g;
    if (bt__htab_init(&g, t->nb * 2) != 0)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nb; i++)
        for (struct bt__hnode *e = t->b[i], *nx; e; e = nx) {
            nx = e->next;
            e->next = g.b[bt__htab_slot(&g, e->hash)];
            g.b[bt__htab_slot(&g, e->hash)] = e;
        }
    free(t->b);
    t->b = g.b;
    t->nb = g.nb;
}

void bt__htab_insert(struct bt__htab *t, struct bt__hnode *node, uint64_t hash)
{
    if (t->n >= t->nb)
        grow(t);
    struct bt__hnode **b = &t->b[bt__htab_slot(t, hash)];
    node->hash = hash;
    node->next = *b;
    *b = node;
    t->n++;
}

void bt__htab_remove(struct bt__htab *t, struct bt__hnode *node)
{
    struct bt__hnode **pp = &t->b[bt__htab_slot(t, node->hash)];
    while (*pp != node)
        pp = &(*pp)->next;
    *pp = node->next;
    t->n--;
}
