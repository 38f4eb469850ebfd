/* rank_worlds.h: the worlds test_icoll.c, test_split.c, test_p2p.c and test_group.c run their
 * rank threads in (n ranks on nnodes simulated nodes over a transport), the communicator of a
 * rank of one (rank_comm), and the one way to run a list of them: a store, one thread per rank
 * (rank_threads.h), every rank's failure printed. Include tests/coll_ref.h (failf) and
 * collectives/comm.h first.
 */
#ifndef BT_TESTS_UNIT_RANK_WORLDS_H
#define BT_TESTS_UNIT_RANK_WORLDS_H

#include "tests/unit/rank_threads.h"

struct world {
    int n, nnodes;
    const char *transport; /* "shm", "tcp" or "auto" (hierarchical across nodes) */
    int port;              /* the store's, set by run_world */
};

struct rank_ctx {
    struct world *w;
    int rank;
    pthread_t th;
    char fail[512];
};

/* Rank x's communicator of generation generation in its world (NULL and failf on error). */
static inline bt_comm *rank_comm(struct rank_ctx *x, int generation)
{
    struct world *w = x->w;
    struct bt__comm_cfg cfg = rt_cfg(x->rank, w->n, w->nnodes, w->port, w->transport);
    cfg.generation = generation;
    cfg.shm_slot_bytes = 512;
    struct bt__err err = {0};
    bt_comm *c = NULL;
    if (bt__comm_create(&cfg, &c, &err) != BT_OK)
        failf(x, "rank %d: create: %s", x->rank, err.msg);
    return c;
}

/* Runs fn (a struct rank_ctx *) on each rank of w; fails the test when a rank failed. */
static void run_world(struct world *w, void *(*fn)(void *))
{
    struct bt__store_server *srv = rt_store_start(&w->port);
    struct rank_ctx *x = calloc((size_t)w->n, sizeof(*x));
    assert_non_null(x);
    for (int r = 0; r < w->n; r++)
        x[r].w = w, x[r].rank = r;
    int bad;
    double secs = RT_RUN(w->n, fn, x, &bad);
    print_message("# n=%d nodes=%d %s: %.2f s\n", w->n, w->nnodes, w->transport, secs);
    free(x);
    bt__store_server_destroy(srv);
    assert_false(bad);
}

/* run_world for each of the nw worlds of ws (copied: run_world writes the port). */
static void run_worlds(const struct world *ws, int nw, void *(*fn)(void *))
{
    for (int i = 0; i < nw; i++) {
        struct world w = ws[i];
        run_world(&w, fn);
    }
}

/* 1 to 8 ranks on one node over shared memory: each of these tests' first sweep. */
static void run_shm_worlds(void *(*fn)(void *))
{
    for (int n = 1; n <= 8; n++) {
        struct world w = {n, 1, "shm", 0};
        run_world(&w, fn);
    }
}

#endif
