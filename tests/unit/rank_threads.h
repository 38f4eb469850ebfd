/* rank_threads.h: ranks as threads over an in-process store, for the unit tests that sweep
 * collectives (test_coll.c, test_staged.c): start the store, run one thread per rank, join
 * them and print every rank's first failure.
 *
 * A test's rank context is its own struct; it must have a `pthread_t th` and a `char fail[]`
 * (the first failure, "" if none, as tests/coll_ref.h's failf records it). RT_RUN finds them.
 */
#ifndef BT_TESTS_UNIT_RANK_THREADS_H
#define BT_TESTS_UNIT_RANK_THREADS_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "collectives/comm.h"
#include "rendezvous/store.h"

/* A store on 127.0.0.1 at a free port (in *port), token "t", serving from its own thread. */
/* The configuration of rank `rank` of n, spread evenly over nnodes simulated nodes, meeting at the
 * in-process store on port; a test sets what else it varies (algorithm, slot size, ...). */
static inline struct bt__comm_cfg rt_cfg(int rank, int n, int nnodes, int port,
                                         const char *transport)
{
    int per = n / nnodes;
    return (struct bt__comm_cfg){.rank = rank,
                                 .size = n,
                                 .local_rank = rank % per,
                                 .local_size = per,
                                 .node_rank = rank / per,
                                 .nnodes = nnodes,
                                 .store_host = "127.0.0.1",
                                 .store_port = port,
                                 .token = "t",
                                 .transport = transport};
}

static struct bt__store_server *rt_store_start(int *port)
{
    struct bt__store_server *srv = NULL;
    struct bt__err err = {0};
    assert_int_equal(bt__store_server_create("127.0.0.1", 0, "t", &srv, port, &err), BT_OK);
    assert_int_equal(bt__store_server_start(srv), BT_OK);
    return srv;
}

/* Runs fn on n threads, thread r getting (char *)ctx + r * stride, and joins them all; prints
 * each rank's failure and sets *bad when there was one. Returns the seconds it took. */
static double rt_run(int n, void *(*fn)(void *), void *ctx, size_t stride, size_t th_off,
                     size_t fail_off, int *bad)
{
    struct timespec t0, t1;
    char *base = ctx;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < n; r++) {
        pthread_t *th = (pthread_t *)(void *)(base + (size_t)r * stride + th_off);
        assert_int_equal(pthread_create(th, NULL, fn, base + (size_t)r * stride), 0);
    }
    *bad = 0;
    for (int r = 0; r < n; r++) {
        char *x = base + (size_t)r * stride;
        pthread_join(*(pthread_t *)(void *)(x + th_off), NULL);
        if (x[fail_off]) {
            print_message("%s\n", x + fail_off);
            *bad = 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* rt_run over the array x[0..n) of rank contexts. */
#define RT_RUN(n, fn, x, bad)                                                                      \
    rt_run((n), (fn), (x), sizeof(*(x)), offsetof(__typeof__(*(x)), th),                           \
           offsetof(__typeof__(*(x)), fail), (bad))

#endif
