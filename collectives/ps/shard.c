/* ps/shard.c: where the pieces of a key live.
 *
 * A key of `count` floats is cut into ceil(bytes / partition) pieces of near-equal size (the
 * first `count % npieces` pieces one element longer), as BytePS partitions tensors so that one
 * large layer does not make one server the bottleneck. Each piece goes to the server with the
 * least bytes so far (ties: lowest index), largest piece first; keys declared together are
 * placed largest first too (bt__ps_place_order). This is the greedy LPT rule; it is a pure
 * function of the loads and the keys, so workers that declare the same keys in the same order
 * compute the same map. With a store, the first placement of a key is kept there and is
 * authoritative, so workers can never disagree about where a piece lives.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/ps/ps.h"

static int least_loaded(int nservers, const uint64_t *loads)
{
    int best = 0;
    for (int s = 1; s < nservers; s++)
        if (loads[s] < loads[best])
            best = s;
    return best;
}

int bt__ps_place(uint64_t count, int64_t partition_bytes, int nservers, uint64_t *loads,
                 struct bt__ps_piece **pieces, uint32_t *npieces)
{
    uint64_t per = partition_bytes >= 4 ? (uint64_t)partition_bytes / 4 : 1;
    if (per > UINT32_MAX)
        per = UINT32_MAX;
    uint64_t np = count ? (count + per - 1) / per : 1;
    if (np > BT__PS_MAX_PIECES || nservers < 1)
        return BT_ERR_INVALID_ARG;
    struct bt__ps_piece *p = calloc(np, sizeof(*p));
    if (!p)
        return BT_ERR_SYSTEM;
    uint64_t base = count / np, extra = count % np, off = 0;
    for (uint64_t i = 0; i < np; i++) { /* pieces come largest first already */
        p[i].offset = off;
        p[i].count = (uint32_t)(base + (i < extra));
        off += p[i].count;
        p[i].server = (uint32_t)least_loaded(nservers, loads);
        loads[p[i].server] += (uint64_t)p[i].count * 4 + 64; /* 64: a key's fixed cost */
    }
    *pieces = p;
    *npieces = (uint32_t)np;
    return BT_OK;
}

void bt__ps_place_order(size_t n, const size_t *counts, size_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++) { /* insertion sort: stable, n is small */
        size_t x = order[i], j = i;
        while (j > 0 && counts[order[j - 1]] < counts[x]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

int bt__ps_place_fmt(const struct bt__ps_piece *p, uint32_t np, uint64_t count, char **text)
{
    size_t cap = 48 + (size_t)np * 48, n;
    char *t = malloc(cap);
    if (!t)
        return BT_ERR_SYSTEM;
    n = (size_t)snprintf(t, cap, "%" PRIu32 " %" PRIu64, np, count);
    for (uint32_t i = 0; i < np; i++)
        n += (size_t)snprintf(t + n, cap - n, " %" PRIu32 ":%" PRIu64 ":%" PRIu32, p[i].server,
                              p[i].offset, p[i].count);
    *text = t;
    return BT_OK;
}

int bt__ps_place_parse(const char *text, int nservers, struct bt__ps_piece **out, uint32_t *np,
                       uint64_t *count)
{
    char *end;
    unsigned long long n = strtoull(text, &end, 10), c = strtoull(end, &end, 10), off = 0;
    if (n == 0 || n > BT__PS_MAX_PIECES)
        return -1;
    struct bt__ps_piece *p = calloc(n, sizeof(*p));
    if (!p)
        return -1;
    for (unsigned long long i = 0; i < n; i++) {
        unsigned long long s = strtoull(end, &end, 10), o, k;
        if (*end != ':' || (o = strtoull(end + 1, &end, 10), *end != ':'))
            goto bad;
        k = strtoull(end + 1, &end, 10);
        if (s >= (unsigned long long)nservers || o != off || k > UINT32_MAX)
            goto bad;
        p[i] = (struct bt__ps_piece){.server = (uint32_t)s, .offset = o, .count = (uint32_t)k};
        off += k;
    }
    if (off != c || *end)
        goto bad;
    *out = p;
    *np = (uint32_t)n;
    *count = c;
    return 0;
bad:
    free(p);
    return -1;
}
