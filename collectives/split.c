/* split.c: sub-communicators: bt_comm_split, bt_comm_dup, bt_comm_create_group,
 * bt_comm_destroy.
 *
 * A child is a communicator like any other (comm.c builds it with bt__comm_create), so it
 * runs the same algorithms over the same transports: shared memory among its members on one
 * node, TCP across nodes, hierarchical allreduce when its members are spread evenly over
 * nodes and numbered node by node. What it does not do: share the parent's TCP connections
 * or shared segment (parent and child would have to take turns); a child has its own segment
 * and mesh, set up under its own key prefix "w/<generation>/c<id>/", where id hashes the
 * parent's prefix with the split's number and color (or with the tag and member list of
 * bt_comm_create_group), so children never see each other's keys. A split's or dup's child on
 * one node makes no store round trip: its segment's name is derived from the parent's and the
 * id (bt__shm_child_name), and it connects to the store only when needed (bt__comm_store).
 * On a one-node parent over shm a split has a second step (spare_segment): the members of a
 * child whose earlier twin (the same members) was destroyed cleanly agree, with one allgather
 * over the parent, to run on that twin's segment instead of creating one (transport/shm.c).
 *
 * bt_comm_split is a call on the parent like a collective (every rank of the parent calls it,
 * in the same order as its other calls): one allgather of {color, key, node} over the parent,
 * then the members of each color build their child. Child rank order: key, then parent rank.
 * Nodes of the child are numbered in the order their first member appears; local ranks
 * likewise.
 *
 * bt_comm_create_group is called by the members only (torch's new_group), so it takes no call
 * number of the parent (the parent's numbers stay alike on every rank) and is not in the
 * flight recorder; each member publishes its node under the child's prefix and reads the others'
 * (one set, one multi-get on the store), then builds the child; child rank i is ranks[i].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectives/backend/cuda.h"
#include "collectives/flight.h"
#include "collectives/progress.h"
#include "collectives/transport/transport.h"
#include "common/hash.h"
#include "common/log.h"

/* Fills cfg's node layout for member me of n whose nodes are node[0..n). */
static void layout(struct bt__comm_cfg *g, int n, const int *node, int me)
{
    int nn = 0, mynode = -1, local = 0, lsize = 0;
    for (int i = 0; i < n; i++) {
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = node[j] != node[i];
        if (node[i] == node[me] && mynode < 0 && first)
            mynode = nn;
        nn += first;
        if (node[i] == node[me]) {
            local += i < me;
            lsize++;
        }
    }
    g->nnodes = nn, g->node_rank = mynode, g->local_rank = local, g->local_size = lsize;
}

/* "c1a2b3c4 (world ranks 0, 2, 4)", truncated with "..." */
static void child_name(char *out, size_t cap, uint64_t id, int n, const int *world_of)
{
    size_t k = (size_t)snprintf(out, cap, "c%08llx (world ranks ", (unsigned long long)(id >> 32));
    for (int i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%d", i ? ", " : "", world_of[i]);
    snprintf(out + k, cap - k, "%s)", k + 16 >= cap ? " ..." : "");
}

/* Builds the child of p whose ranks are the parent ranks prank[0..n) on nodes node[0..n);
 * I am member me. derived: id is never reused on p (a split's), so a one-node child may take
 * a segment name derived from it; a group's id repeats when the same list and tag are used
 * again, and a member still attaching to the last group's segment would find the new one's
 * name taken, so groups publish theirs through the store. */
static int make_child(struct bt_comm *p, int n, const int *prank, const int *node, int me,
                      uint64_t id, int derived, uint64_t shm_key, struct bt__shm *reuse,
                      struct bt__tcp_preset *tcp, bt_comm **out)
{
    int *world_of = malloc(sizeof(int) * (size_t)n);
    if (!world_of)
        return bt__comm_fail(p, BT_ERR_SYSTEM, "%s: out of memory", p->coll_name);
    for (int i = 0; i < n; i++)
        world_of[i] = p->world_of ? p->world_of[prank[i]] : prank[i];
    char prefix[32], name[128], shm_name[96];
    snprintf(prefix, sizeof(prefix), "w/%d/c%016llx/", p->generation, (unsigned long long)id);
    child_name(name, sizeof(name), id, n, world_of);
    struct bt__comm_cfg g = {.rank = me,
                             .size = n,
                             .generation = p->generation,
                             .store_host = p->rdzv_host,
                             .store_port = p->rdzv_port,
                             .token = p->token,
                             .transport = p->transport_req,
                             .algo = p->algo_req,
                             .shm_slot_bytes = p->shm_slot_req,
                             .nsocks = p->nsocks_req,
                             .ring_seg_bytes = p->ring_seg_bytes,
                             .prefix = prefix,
                             .world_of = world_of,
                             .node_of = node,
                             .name = name,
                             .id = id,
                             .job_node = p->job_node,
                             .shm_key = shm_key,
                             .shm_reuse = reuse,
                             .tcp_preset = tcp};
    layout(&g, n, node, me);
    if (derived && g.local_size > 1 && p->shm) { /* the segment of this node: no store */
        bt__shm_child_name(p, id, shm_name, sizeof(shm_name));
        g.shm_name = shm_name;
    }
    struct bt__err err = {0};
    int rc = bt__comm_create(&g, out, &err);
    free(world_of);
    if (rc != BT_OK)
        return bt__comm_fail(p, rc, "%s #%llu: making communicator %s: %s", p->coll_name,
                             (unsigned long long)p->coll_seq, name, err.msg);
    bt__flight_comm_open(*out); /* its ring, named before its first call */
    BT_INFO(INIT, "rank %d: communicator %s: rank %d of %d (local %d of %d, node %d of %d)",
            p->rank, name, me, n, g.local_rank, g.local_size, g.node_rank, g.nnodes);
    return BT_OK;
}

/* ---- bt_comm_split ---- */

struct member {
    int32_t color, key, node, prank;
};

static int by_key(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->prank < y->prank ? -1 : x->prank > y->prank;
}

/* A child of an Open MPI communicator, made by the MPI plugin (MPI_Comm_split, _dup or
 * _create_group). */
static int mpi_child(struct bt_comm *c, const struct bt__mpi_derive *how, bt_comm **out)
{
    struct bt__err err = {0};
    int rc = bt__mpi_comm_derive(c, how, out, &err);
    if (rc != BT_OK)
        return bt__comm_fail(c, rc, "%s #%llu: %s", c->coll_name, (unsigned long long)c->coll_seq,
                             err.msg);
    return BT_OK;
}

/* On a one-node parent over shm, the second step of a split: every rank of c takes out of the
 * pool of kept segments (transport/shm.c) the one of its child's key, if any, and the ranks
 * allgather the tokens of what they took (0: none, or no child); a child whose members all
 * took the same segment runs on it (*spare), else each gives its own back. *key is the child's
 * key (0 when it is not to be kept: a parent spanning nodes, or a child of one rank). */
static int spare_segment(struct bt_comm *c, int m, const int *prank, int me, uint64_t *key,
                         struct bt__shm **spare)
{
    *key = 0, *spare = NULL;
    if (c->nnodes != 1 || !c->shm) /* the same on every rank of c */
        return BT_OK;
    uint64_t token = 0, *tokens = calloc((size_t)c->size, sizeof(*tokens));
    int *world = malloc(sizeof(int) * (size_t)(m ? m : 1));
    if (!tokens || !world) {
        free(tokens), free(world);
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
    }
    if (m > 1) {
        for (int i = 0; i < m; i++)
            world[i] = c->world_of ? c->world_of[prank[i]] : prank[i];
        *key = bt__shm_key(c, m, world, me);
        *spare = bt__shm_pool_take(*key, &token);
    }
    struct bt__call ag = {
        .kind = BT_COLL_ALLGATHER, .send = &token, .recv = tokens, .count = 1, .dtype = BT_INT64};
    int rc = bt__host_run(c, &ag);
    for (int i = 0; i < m && *spare; i++)
        if (rc != BT_OK || tokens[prank[i]] != token) {
            bt__shm_pool_give(*spare);
            *spare = NULL;
        }
    free(tokens), free(world);
    return rc;
}

/* A child's TCP addresses without the store: every rank of c whose child takes a TCP mesh
 * (member) listens where the mesh would, and the addresses (empty for the others) are
 * allgathered over c, so a child spanning nodes makes no store round trip. *addrs (malloc'd)
 * holds the child's m addresses in child rank order, and pre the listening socket. A member
 * that cannot listen sends "!" and its reason instead of an address, so that every rank of c
 * fails the split at once, naming it, rather than the others waiting out the timeout. */
static int share_addresses(struct bt_comm *c, int member, int m, const int *prank,
                           struct bt__tcp_preset *pre, char **addrs)
{
    char mine[BT__TCP_ADDR_BYTES] = "";
    char *every = calloc((size_t)c->size, BT__TCP_ADDR_BYTES);
    *addrs = calloc((size_t)(m > 0 ? m : 1), BT__TCP_ADDR_BYTES);
    if (!every || !*addrs) {
        free(every);
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
    }
    if (member && bt__tcp_listen(c, &pre->lfd, mine) != BT_OK) {
        char *hint = strstr(c->err.msg, "; hint:"); /* the reason only: it is cut at 62 */
        snprintf(mine, sizeof(mine), "!%.*s", (int)(hint ? hint - c->err.msg : 62), c->err.msg);
        bt__err_clear(&c->err); /* not failed yet: the allgather below tells every rank */
    }
    struct bt__call ag = {.kind = BT_COLL_ALLGATHER,
                          .send = mine,
                          .recv = every,
                          .count = BT__TCP_ADDR_BYTES,
                          .dtype = BT_UINT8};
    int rc = bt__host_run(c, &ag);
    for (int r = 0; rc == BT_OK && r < c->size; r++) {
        const char *x = every + (size_t)r * BT__TCP_ADDR_BYTES;
        if (x[0] == '!')
            rc = bt__comm_fail(c, r == c->rank ? BT_ERR_SYSTEM : BT_ERR_REMOTE,
                               "%s #%llu: rank %d could not open a listening socket for the "
                               "child: %.*s; hint: see that rank's open-file limit and network",
                               c->coll_name, (unsigned long long)c->coll_seq, r,
                               BT__TCP_ADDR_BYTES - 1, x + 1);
    }
    for (int i = 0; rc == BT_OK && i < m; i++)
        memcpy(*addrs + (size_t)i * BT__TCP_ADDR_BYTES,
               every + (size_t)prank[i] * BT__TCP_ADDR_BYTES, BT__TCP_ADDR_BYTES);
    free(every);
    if (rc != BT_OK || !member) {
        free(*addrs);
        *addrs = NULL;
    }
    return rc;
}

static int run_split(struct bt_comm *c, const struct bt__call *a)
{
    bt_comm **out = a->out;
    if (c->mpi) {
        struct bt__mpi_derive how = {.how = a->tag ? BT_MPI_DUP : BT_MPI_SPLIT,
                                     .color = a->color,
                                     .key = a->key};
        return mpi_child(c, &how, out);
    }
    int n = c->size, m = 0, me = -1;
    uint64_t key = 0;
    struct bt__shm *spare = NULL;
    struct bt__tcp_preset tcp = {.lfd = -1};
    char *addrs = NULL;
    struct member *all = calloc((size_t)n, sizeof(*all));
    int *prank = malloc(sizeof(int) * (size_t)n), *node = malloc(sizeof(int) * (size_t)n);
    int rc = BT_OK;
    if (!all || !prank || !node) {
        rc = bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
        goto out;
    }
    struct member mine = {a->color, a->key, c->node_rank, c->rank};
    struct bt__call ag = {.kind = BT_COLL_ALLGATHER,
                          .send = &mine,
                          .recv = all,
                          .count = sizeof(mine) / 4,
                          .dtype = BT_INT32};
    BT_CHECK_GOTO(bt__host_run(c, &ag), rc, out);
    uint64_t id = bt__fnv1a_str(BT_FNV1A_INIT, c->prefix);
    id = bt__fnv1a(id, &c->nsplits, sizeof(c->nsplits));
    c->nsplits++;
    id = bt__fnv1a(id, &a->color, sizeof(a->color));
    for (int i = 0; i < n && a->color >= 0; i++) /* color < 0: a member of no child */
        if (all[i].color == a->color)
            all[m++] = all[i];
    qsort(all, (size_t)m, sizeof(*all), by_key);
    for (int i = 0; i < m; i++) {
        prank[i] = all[i].prank, node[i] = all[i].node;
        me = all[i].prank == c->rank ? i : me;
    }
    rc = spare_segment(c, m, prank, me, &key, &spare);
    int spans = 0; /* this rank's child: does it take a TCP mesh (transports() in comm.c)? */
    for (int i = 1; i < m; i++)
        spans |= node[i] != node[0];
    if (rc == BT_OK && c->tcp) /* a child may span nodes: its TCP addresses over c */
        rc = share_addresses(c,
                             a->color >= 0 && m > 1 && (spans || !strcmp(c->transport_req, "tcp")),
                             m, prank, &tcp, &addrs);
    tcp.addrs = addrs;
    if (rc == BT_OK && a->color >= 0)
        rc = make_child(c, m, prank, node, me, id, 1, key, spare, addrs ? &tcp : NULL, out);
    else if (spare)
        bt__shm_pool_give(spare);
out:
    if (tcp.lfd >= 0) /* not taken by a TCP mesh */
        close(tcp.lfd);
    free(all), free(prank), free(node), free(addrs);
    if (rc == BT_OK && c->nccl) /* every rank of c, members of no child included */
        rc = bt__nccl_split(c, *out, a->color, a->key);
    return rc;
}

static int split(bt_comm *c, int color, int key, int dup, bt_comm **newcomm)
{
    if (!c || !newcomm)
        return BT_ERR_INVALID_ARG;
    *newcomm = NULL;
    BT_CHECK(bt__comm_check_live(c, "bt_comm_split"));
    BT_CHECK(atomic_load(&c->q->failed));
    if (bt__group_open())
        return bt__comm_usage(c, BT_ERR_INVALID_USAGE,
                              "comm_split: called inside a group; hint: split before "
                              "bt_group_start or after bt_group_end");
    if (color < -1)
        return bt__comm_usage(c, BT_ERR_INVALID_ARG,
                              "comm_split: color %d; hint: use a color >= 0, or -1 (BT_UNDEFINED) "
                              "to be in no child",
                              color);
    struct bt__call a = {.color = color, .key = key, .tag = dup, .out = newcomm};
    return bt__coll_submit(c, dup ? "comm_dup" : "comm_split", run_split, &a, NULL);
}

int bt_comm_split(bt_comm *c, int color, int key, bt_comm **newcomm)
{
    return split(c, color, key, 0, newcomm);
}

int bt_comm_dup(bt_comm *c, bt_comm **newcomm)
{
    int rank = 0;
    if (!newcomm)
        return BT_ERR_INVALID_ARG;
    *newcomm = NULL;
    BT_CHECK(bt_comm_rank(c, &rank));
    return split(c, 0, rank, 1, newcomm);
}

/* ---- bt_comm_create_group ---- */

static int run_group(struct bt_comm *c, const struct bt__call *a)
{
    int n = (int)a->count, me = a->root, rc = BT_OK;
    const int *ranks = a->send;
    if (c->mpi) {
        struct bt__mpi_derive how = {.how = BT_MPI_GROUP,
                                     .ranks = ranks,
                                     .n = n,
                                     .tag = (uint64_t)(uint32_t)a->color << 32 | (uint32_t)a->key};
        return mpi_child(c, &how, a->out);
    }
    char prefix[32], key[64];
    uint64_t id = bt__fnv1a_str(BT_FNV1A_INIT, c->prefix);
    id = bt__fnv1a(id, "group", 5);
    int32_t tag[2] = {a->color, a->key}; /* the caller's 64-bit tag */
    id = bt__fnv1a(id, tag, sizeof(tag));
    id = bt__fnv1a(id, ranks, sizeof(int) * (size_t)n);
    snprintf(prefix, sizeof(prefix), "w/%d/c%016llx/", c->generation, (unsigned long long)id);
    int *node = calloc((size_t)n, sizeof(int));
    char **keys = calloc((size_t)n, sizeof(char *));
    void **vals = calloc((size_t)n, sizeof(void *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    if (!node || !keys || !vals || !lens) {
        rc = bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
        goto out;
    }
    for (int i = 0; i < n && rc == BT_OK; i++)
        if (!(keys[i] = malloc(64)))
            rc = bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
        else
            snprintf(keys[i], 64, "%snode/%d", prefix, i);
    if (rc != BT_OK || n == 1)
        goto build;
    snprintf(key, sizeof(key), "%d", c->node_rank);
    if (!bt__comm_store(c, 1)) {
        rc = c->err.code != BT_OK ? c->err.code : BT_ERR_REMOTE; /* set by bt__comm_store */
        goto out;
    }
    if (bt__store_set(c->store, keys[me], key, strlen(key)) != BT_OK ||
        bt__store_multi_get(c->store, (const char *const *)keys, n, vals, lens,
                            bt__comm_timeout_s()) != BT_OK) {
        rc = bt__comm_fail(c, BT_ERR_REMOTE,
                           "%s #%llu: waiting for the other members: %s; hint: every rank in "
                           "ranks[] must call bt_comm_create_group with the same list and tag",
                           c->coll_name, (unsigned long long)c->coll_seq,
                           bt__store_error(c->store));
        goto out;
    }
    for (int i = 0; i < n; i++)
        node[i] = atoi(vals[i]);
build:
    if (rc == BT_OK)
        rc = make_child(c, n, ranks, node, me, id, 0, 0, NULL, NULL, a->out);
out:
    for (int i = 0; i < n; i++)
        free(keys ? keys[i] : NULL), free(vals ? vals[i] : NULL);
    free(node), free(keys), free(vals), free(lens);
    return rc;
}

/* The index of c->rank in ranks[0..n), after checking the list; -1 on an error (set). */
static int check_group(bt_comm *c, int n, const int *ranks)
{
    int me = -1;
    if (n < 1 || n > c->size || !ranks) {
        bt__comm_usage(c, BT_ERR_INVALID_ARG,
                       "comm_create_group: %d ranks (the communicator has %d); hint: pass 1..size "
                       "distinct ranks",
                       n, c->size);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (ranks[j] == ranks[i]) {
                bt__comm_usage(c, BT_ERR_INVALID_ARG, "comm_create_group: rank %d twice in ranks[]",
                               ranks[i]);
                return -1;
            }
        if (ranks[i] < 0 || ranks[i] >= c->size) {
            bt__comm_usage(c, BT_ERR_INVALID_ARG,
                           "comm_create_group: ranks[%d] = %d is not a rank of the communicator "
                           "(size %d)",
                           i, ranks[i], c->size);
            return -1;
        }
        me = ranks[i] == c->rank ? i : me;
    }
    if (me < 0)
        bt__comm_usage(c, BT_ERR_INVALID_USAGE,
                       "comm_create_group: rank %d is not in ranks[]; hint: only the members call "
                       "it",
                       c->rank);
    return me;
}

int bt_comm_create_group(bt_comm *c, int nranks, const int *ranks, uint64_t tag, bt_comm **newcomm)
{
    if (!c || !newcomm)
        return BT_ERR_INVALID_ARG;
    *newcomm = NULL;
    BT_CHECK(bt__comm_check_live(c, "bt_comm_create_group"));
    BT_CHECK(atomic_load(&c->q->failed));
    if (bt__group_open())
        return bt__comm_usage(c, BT_ERR_INVALID_USAGE,
                              "comm_create_group: called inside a group; hint: make groups "
                              "before bt_group_start or after bt_group_end");
    int me = check_group(c, nranks, ranks);
    if (me < 0)
        return atomic_load(&c->q->failed);
    struct bt__call a = {.send = ranks,
                         .count = (size_t)nranks,
                         .root = me,
                         .color = (int)(uint32_t)(tag >> 32),
                         .key = (int)(uint32_t)tag,
                         .local = 1, /* members only: no call number of the parent */
                         .out = newcomm};
    return bt__coll_submit(c, "comm_create_group", run_group, &a, NULL);
}

int bt_comm_destroy(bt_comm *c)
{
    return bt_finalize(c);
}
