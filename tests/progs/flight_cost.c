/* flight_cost.c: the flight recorder's own cost per call, in a tight loop.
 *
 *   build/tests/progs/flight_cost [CALLS] [REPEATS]     (defaults: 2,000,000 and 7)
 *
 * Records CALLS world allreduces (bt__flight_begin then bt__flight_end, what progress.c's hook
 * does around every call: the call-shape hash, and the sample ring's copy of every 64th) into a
 * recorder in this process's memory, REPEATS times, and prints the fastest and the median ns per
 * call. The lower side of bench/flight_overhead.sh's bound: what a rank pays per collective,
 * without the collective. A helper program for the benchmark, not a test: it asserts nothing about
 * time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "baton.h"
#include "collectives/flight.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 2000000;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (calls < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: flight_cost [CALLS >= 1] [REPEATS 1..100]\n");
        return 2;
    }
    struct bt__flight_hdr *h = bt__flight_attach(0, 2);
    if (!h) {
        fprintf(stderr, "flight_cost: out of memory\n");
        return 1;
    }
    double ns[100];
    uint64_t seq = 0, hash = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (long i = 0; i < calls; i++) {
            hash = bt__flight_hash(hash, BT_FL_ALLREDUCE, BT_FLOAT32, BT_SUM, 1024, -1);
            uint64_t tok = bt__flight_begin(h, 0, 0, ++seq, BT_FL_ALLREDUCE, BT_FLOAT32, BT_SUM,
                                            1024, -1, 2);
            bt__flight_end(h, tok, BT_OK, 4096, hash);
        }
        ns[r] = (now_ns() - t0) / (double)calls;
    }
    qsort(ns, (size_t)reps, sizeof(double), cmp);
    printf("flight_cost: %ld calls x %d: %.1f ns per call fastest, %.1f median (begin + end, "
           "%llu recorded)\n",
           calls, reps, ns[0], ns[reps / 2], (unsigned long long)h->calls[BT_FL_ALLREDUCE]);
    return 0;
}
