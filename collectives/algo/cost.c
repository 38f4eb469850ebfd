/* algo/cost.c: the α–β–γ formulas of the algorithms in this folder, counted from their
 * schedules, and the choice of the cheapest.
 *
 * Notation: n ranks, m bytes, p the largest power of two <= n, r = n - p, L = log2 p,
 * ⌈log2 n⌉ = L + (r > 0). A step in which a rank sends and receives at once (bt__xfer) costs
 * one α plus the larger of the two byte counts times β (full-duplex links).
 *
 *   fold (rd.c), only when r > 0: the even member of a folded pair sends m (α + mβ), the odd
 *     one reduces it (mγ); after the algorithm it sends the result back (α + mβ).
 *   recursive doubling: L steps, each exchanging and reducing all m:  L(α + mβ + mγ) + fold.
 *   Rabenseifner: recursive halving (L steps of m/2, m/4, ...) then recursive doubling of the
 *     halves back: 2Lα + 2(p-1)/p·mβ + (p-1)/p·mγ + fold.
 *   ring (ring.c) in segments of S bytes (s = ⌈m/S⌉ of them, each a whole ring allreduce):
 *     s·2(n-1)α + 2(n-1)/n·mβ + (n-1)/n·mγ. The segments keep the scratch small, but each
 *     costs 2(n-1) messages: at n = 4,096 the ring is latency-bound up to gigabytes.
 *   binomial broadcast: ⌈log2 n⌉(α + mβ) on the path of the last leaf.
 *   scatter + allgather broadcast (bcast.c): a binomial scatter (⌈log2 n⌉α + (n-1)/n·mβ)
 *     then a ring allgather ((n-1)α + (n-1)/n·mβ) (van de Geijn).
 *   binomial reduce (bcast.c): ⌈log2 n⌉(α + mβ + mγ).
 *   hierarchical allreduce: node reduce over shm (α_s + m(β_s + γ)), the flat algorithm across
 *     the nnodes leaders over TCP, node broadcast over shm (α_s + mβ_s).
 *
 * The lower bound is ⌈log2 n⌉α (the result depends on every rank: a tree of depth at least
 * ⌈log2 n⌉) + 2(n-1)/n·mβ (each rank must send and receive that much: Patarasuk and Yuan,
 * "Bandwidth optimal all-reduce algorithms", JPDC 2009) + (n-1)/n·mγ.
 *
 * The defaults come from the 2-core development VM (loopback TCP): α = 25 µs and γ = 0.06 ns/B
 * from `baton tune` (2026-12-02, load average 20), β = 0.5 ns/B from the 2.2 GB/s busbw the
 * quiet VM reached (docs/performance.md; under that load `baton tune` measured 3.6 ns/B).
 * Shared memory: α = 5 µs, β = 0.25 ns/B, round figures below TCP's. A cluster should run
 * `baton tune` and pass its file (docs/collectives.md).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "collectives/algo/cost.h"

void bt__cost_defaults(struct bt__cost_model *m)
{
    m->tcp = (struct bt__link_cost){25e-6, 0.5e-9, 0.06e-9};
    m->shm = (struct bt__link_cost){5e-6, 0.25e-9, 0.06e-9};
    m->seg_bytes = 8.0 * 1024 * 1024;
}

static const struct {
    const char *name;
    size_t off;
} fields[] = {
    {"tcp_alpha", offsetof(struct bt__cost_model, tcp.alpha)},
    {"tcp_beta", offsetof(struct bt__cost_model, tcp.beta)},
    {"tcp_gamma", offsetof(struct bt__cost_model, tcp.gamma)},
    {"shm_alpha", offsetof(struct bt__cost_model, shm.alpha)},
    {"shm_beta", offsetof(struct bt__cost_model, shm.beta)},
    {"shm_gamma", offsetof(struct bt__cost_model, shm.gamma)},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

int bt__cost_load(const char *path, struct bt__cost_model *m, struct bt__err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "BATON_TUNE_FILE=%s: %s; hint: write one with `baton tune -o FILE`",
                           path, strerror(errno));
    char line[256];
    int lineno = 0, rc = BT_OK;
    while (rc == BT_OK && fgets(line, sizeof(line), f)) {
        char name[64];
        double v;
        lineno++;
        if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (sscanf(line, "%63s %lf", name, &v) != 2 || !(v >= 0) || !isfinite(v)) {
            rc = bt__err_set(err, BT_ERR_INVALID_USAGE,
                             "BATON_TUNE_FILE=%s line %d: want 'NAME SECONDS' with a number >= 0",
                             path, lineno);
            break;
        }
        for (size_t i = 0; i < NFIELDS; i++)
            if (!strcmp(name, fields[i].name))
                *(double *)(void *)((char *)m + fields[i].off) = v;
    }
    fclose(f);
    return rc;
}

int bt__cost_save(const char *path, const struct bt__cost_model *m, struct bt__err *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: %s", path, strerror(errno));
    fprintf(f, "# baton tune: alpha seconds per message, beta seconds per byte, gamma seconds "
               "per byte reduced\n");
    for (size_t i = 0; i < NFIELDS; i++)
        fprintf(f, "%s %.6g\n", fields[i].name,
                *(const double *)(const void *)((const char *)m + fields[i].off));
    if (fclose(f) != 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: %s", path, strerror(errno));
    return BT_OK;
}

static int floor_log2(int n)
{
    int l = 0;
    while ((2 << l) <= n)
        l++;
    return l;
}

static int ceil_log2(int n)
{
    int l = floor_log2(n);
    return (1 << l) < n ? l + 1 : l;
}

/* The fold's cost for n ranks (0 when n is a power of two). */
static double fold(const struct bt__link_cost *l, int n, double b)
{
    int p = 1 << floor_log2(n);
    return p == n ? 0 : 2 * (l->alpha + b * l->beta) + b * l->gamma;
}

double bt__cost_allreduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int algo,
                          int n, double b)
{
    if (n <= 1)
        return 0;
    int L = floor_log2(n);
    double p = (double)(1 << L), nn = n;
    switch (algo) {
    case BT_COST_RD: return L * (l->alpha + b * l->beta + b * l->gamma) + fold(l, n, b);
    case BT_COST_RABENSEIFNER:
        return 2 * L * l->alpha + 2 * (p - 1) / p * b * l->beta + (p - 1) / p * b * l->gamma +
               fold(l, n, b);
    case BT_COST_RING: {
        double seg = m->seg_bytes > 4 * nn ? m->seg_bytes : 4 * nn;
        double s = b > 0 ? ceil(b / seg) : 1;
        return s * 2 * (nn - 1) * l->alpha + 2 * (nn - 1) / nn * b * l->beta +
               (nn - 1) / nn * b * l->gamma;
    }
    }
    return INFINITY;
}

double bt__cost_allreduce_bound(const struct bt__link_cost *l, int n, double b)
{
    double nn = n;
    if (n <= 1)
        return 0;
    return ceil_log2(n) * l->alpha + 2 * (nn - 1) / nn * b * l->beta + (nn - 1) / nn * b * l->gamma;
}

double bt__cost_hier_allreduce(const struct bt__cost_model *m, int algo, int nnodes, int ppn,
                               double b)
{
    double node = 0;
    if (ppn > 1)
        node = 2 * m->shm.alpha + b * (2 * m->shm.beta + m->shm.gamma);
    return node + bt__cost_allreduce(m, &m->tcp, algo, nnodes, b);
}

double bt__cost_broadcast(const struct bt__link_cost *l, int algo, int n, double b)
{
    double nn = n;
    if (n <= 1)
        return 0;
    if (algo == BT_COST_TREE)
        return ceil_log2(n) * (l->alpha + b * l->beta);
    if (algo == BT_COST_SCATTER_ALLGATHER)
        return (ceil_log2(n) + nn - 1) * l->alpha + 2 * (nn - 1) / nn * b * l->beta;
    return INFINITY;
}

double bt__cost_reduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int algo,
                       int n, double b)
{
    if (n <= 1)
        return 0;
    if (algo == BT_COST_TREE)
        return ceil_log2(n) * (l->alpha + b * l->beta + b * l->gamma);
    if (algo == BT_COST_ALLREDUCE)
        return bt__cost_allreduce(m, l, bt__cost_pick_allreduce(m, l, n, b, NULL), n, b);
    return INFINITY;
}

/* The cheapest of algos[0..k) by cost(); ties go to the first listed. */
#define PICK(k, algos, cost_expr)                                                                  \
    do {                                                                                           \
        double best_t = INFINITY;                                                                  \
        int best = (algos)[0];                                                                     \
        for (int i_ = 0; i_ < (k); i_++) {                                                         \
            int algo = (algos)[i_];                                                                \
            double t_ = (cost_expr);                                                               \
            if (t_ < best_t)                                                                       \
                best_t = t_, best = algo;                                                          \
        }                                                                                          \
        if (t)                                                                                     \
            *t = best_t;                                                                           \
        return best;                                                                               \
    } while (0)

int bt__cost_pick_allreduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int n,
                            double b, double *t)
{
    static const int algos[] = {BT_COST_RD, BT_COST_RABENSEIFNER, BT_COST_RING};
    PICK(3, algos, bt__cost_allreduce(m, l, algo, n, b));
}

int bt__cost_pick_broadcast(const struct bt__link_cost *l, int n, double b, double *t)
{
    static const int algos[] = {BT_COST_TREE, BT_COST_SCATTER_ALLGATHER};
    PICK(2, algos, bt__cost_broadcast(l, algo, n, b));
}

int bt__cost_pick_reduce(const struct bt__cost_model *m, const struct bt__link_cost *l, int n,
                         double b, double *t)
{
    static const int algos[] = {BT_COST_TREE, BT_COST_ALLREDUCE};
    PICK(2, algos, bt__cost_reduce(m, l, algo, n, b));
}

const char *bt__cost_algo_name(int algo)
{
    static const char *const names[] = {
        "ring", "rd", "rabenseifner", "tree", "scatter_allgather", "allreduce"};
    return algo >= 0 && algo < BT_COST_NALGO ? names[algo] : "?";
}
