/* step_bench.c: the cost of one step of a point-to-point collective on this host, as the host
 * model of the simulator (tests/progs/collsim.c, `collsim verify`) is calibrated from it.
 * It calls the transport itself (bt__xfer, as the algorithms do), not a collective.
 *
 *   baton run -n N -- build/bench/step_bench --pattern pairs|ring|wake|pingpong|call
 *                                            [--partner xor|half]
 *                                            [-b 4K] [-e 16M] [-f 16] [-n 15] [-w 3]
 *
 *   pairs  after a barrier, every rank exchanges m bytes with its partner (rank^1, or with
 *          --partner half rank ± N/2: across the two nodes of a veth pair), sending and
 *          receiving at once, as a collective's step starts (allreduce_bench -s): with N ranks
 *          on C cores all N are busy, so the slowest rank's exchange is the CPU cost of a step
 *          (send m, receive m) times N/C when N > C;
 *   ring   a token of m bytes goes round the ranks (0 -> 1 -> ... -> N-1 -> 0): one rank
 *          is busy at a time, the others wait blocked; the time of a hop is the latency of a
 *          message to a rank that sleeps, with N ranks on the cores.
 *   wake   2 ranks, a ping-pong of -b bytes in which each rank, once it has a message, works
 *          (spins on the clock) D microseconds before it replies, for D = 0, 1, 2, 3, 4, 6
 *          ... 512: the other waits D, spinning in the transport and then blocked in poll()
 *          on a core of its own. The one-way time at D less that at 0 is what waking a
 *          blocked rank costs on top of a message caught while spinning, and the D where it
 *          appears is how long the transport spins before it blocks.
 *   pingpong  2 ranks, a plain ping-pong (D = 0) of each size: the one-way time through the
 *          collectives' own path (bt__xfer, as `baton tune`), where exchange_bench's bt_send
 *          and bt_recv spin and yield before they block (collectives/exchange.c).
 *   call   2 ranks, back to back: a 1-element bt_allreduce, then the bare 4-byte exchange it
 *          makes at 2 ranks (bt__xfer): the first less the second is what a collective call
 *          costs beyond its transfers (checks, the algorithm's choice, the flight record).
 *
 * Prints "BYTES MICROSECONDS" per size (rank 0): pairs, the median exchange (the largest of
 * the ranks' medians, as allreduce_bench times a call) and a third column, the CPU time a
 * rank's process spends in an exchange (the median per rank, averaged over the ranks: what
 * the step costs its rank's core, without the time it waits for one); ring, the median
 * round divided by N;
 * pingpong, the median one-way time; call, "call ALLREDUCE_US XFER_US" (the medians);
 * wake, "DELAY MICROSECONDS" per D: the median one-way time ((round - D) / 2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton.h"
#include "bench_util.h"
#include "collectives/comm.h"
#include "collectives/transport/transport.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* This process's CPU time (all its threads, user and system). */
static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int usage(const char *why)
{
    fprintf(stderr,
            "step_bench: %s\nusage: step_bench --pattern pairs|ring [--partner xor|half] "
            "[-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP]\n",
            why);
    return 2;
}

/* Spins until us microseconds have passed (work, not sleep: the core stays busy). */
static void spin_us(double us)
{
    double t0 = now_us();
    while (now_us() - t0 < us)
        ;
}

/* One round of the wake ping-pong: rank 0 sends, rank 1 replies after d us of work; rank 0
 * then works d us too (outside its timing), so that rank 1 has waited d for the next one. */
static int wake_round(bt_comm *c, char *s, char *r, size_t m, double d, double *us)
{
    int peer = c->rank ^ 1, rc;
    struct bt__xfer snd = {.send_to = peer, .sbuf = s, .slen = m, .recv_from = -1};
    struct bt__xfer rcv = {.send_to = -1, .recv_from = peer, .rbuf = r, .rlen = m};
    double t0 = now_us();
    if (c->rank == 0)
        rc = bt__xfer(c, &snd) || bt__xfer(c, &rcv);
    else
        rc = bt__xfer(c, &rcv);
    *us = now_us() - t0;
    spin_us(d);
    return rc || (c->rank == 1 && bt__xfer(c, &snd)) ? BT_ERR_INTERNAL : BT_OK;
}

/* The median one-way time of m bytes with delay d (wake_round), printed by rank 0 after key. */
static int oneway(bt_comm *c, char *s, char *r, size_t m, double d, int iters, int warmup,
                  double *t, double key)
{
    int rc = BT_OK;
    double us;
    for (int i = 0; i < warmup && !rc; i++)
        rc = wake_round(c, s, r, m, d, &us);
    for (int i = 0; i < iters && !rc; i++) {
        rc = wake_round(c, s, r, m, d, &us);
        t[i] = (us - d) / 2;
    }
    qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
    if (!rc)
        rc = bt_barrier(c);
    if (!rc && c->rank == 0)
        printf("%.0f %.3f\n", key, t[iters / 2]);
    fflush(stdout);
    return rc;
}

/* The wake pattern: the median one-way time of m bytes per delay, printed by rank 0. */
static int wake(bt_comm *c, char *s, char *r, size_t m, int iters, int warmup, double *t)
{
    static const double delays[] = {0,  1,  2,  3,  4,   6,   8,   12,  16, 24,
                                    32, 48, 64, 96, 128, 192, 256, 384, 512};
    int rc = BT_OK;
    for (size_t k = 0; k < sizeof(delays) / sizeof(delays[0]) && !rc; k++)
        rc = oneway(c, s, r, m, delays[k], iters, warmup, t, delays[k]);
    return rc;
}

/* One exchange (pairs) or one round of the token (ring) of m bytes. */
static int one(bt_comm *c, int ring, int partner, char *s, char *r, size_t m)
{
    int n = c->size, me = c->rank;
    if (!ring) {
        struct bt__xfer x = {
            .send_to = partner, .sbuf = s, .slen = m, .recv_from = partner, .rbuf = r, .rlen = m};
        return bt__xfer(c, &x);
    }
    struct bt__xfer snd = {.send_to = (me + 1) % n, .sbuf = s, .slen = m, .recv_from = -1};
    struct bt__xfer rcv = {.send_to = -1, .recv_from = (me + n - 1) % n, .rbuf = r, .rlen = m};
    if (me == 0)
        return bt__xfer(c, &snd) || bt__xfer(c, &rcv);
    return bt__xfer(c, &rcv) || bt__xfer(c, &snd);
}

/* The call pattern: rank 0 prints the median of a 1-element bt_allreduce and of the bare 4-byte
 * exchange with the other rank (what that allreduce sends at 2 ranks), run in turn. */
static int call(bt_comm *c, char *s, char *r, int iters, int warmup, double *t)
{
    int rc = BT_OK;
    double med[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < warmup + iters && !rc; i++) {
            double t0 = now_us();
            if (k == 0)
                rc = bt_allreduce(c, s, r, 1, BT_FLOAT32, BT_SUM);
            else
                rc = one(c, 0, c->rank ^ 1, s, r, 4);
            if (i >= warmup)
                t[i - warmup] = now_us() - t0;
        }
        qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
        med[k] = t[iters / 2];
    }
    if (!rc)
        rc = bt_allreduce(c, med, med, 2, BT_FLOAT64, BT_MAX);
    if (!rc && c->rank == 0)
        printf("call %.3f %.3f\n", med[0], med[1]);
    return rc;
}

int main(int argc, char **argv)
{
    size_t minb = 4096, maxb = 16u << 20;
    double factor = 16;
    int iters = 15, warmup = 3, half = 0;
    int ring = -1; /* the pattern: 0 pairs, 1 ring, 2 wake, 3 pingpong, 4 call */
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("every flag wants a value");
        i++;
        if (!strcmp(o, "--pattern") && (!strcmp(v, "pairs") || !strcmp(v, "ring")))
            ring = v[0] == 'r';
        else if (!strcmp(o, "--pattern") && !strcmp(v, "wake"))
            ring = 2;
        else if (!strcmp(o, "--pattern") && !strcmp(v, "pingpong"))
            ring = 3;
        else if (!strcmp(o, "--pattern") && !strcmp(v, "call"))
            ring = 4;
        else if (!strcmp(o, "--partner") && (!strcmp(v, "xor") || !strcmp(v, "half")))
            half = v[0] == 'h';
        else if (!strcmp(o, "-b") && !bench_parse_size(v, &minb))
            ;
        else if (!strcmp(o, "-e") && !bench_parse_size(v, &maxb))
            ;
        else if (!strcmp(o, "-f") && (factor = atof(v)) > 1)
            ;
        else if (!strcmp(o, "-n") && (iters = atoi(v)) > 0)
            ;
        else if (!strcmp(o, "-w") && (warmup = atoi(v)) >= 0)
            ;
        else
            return usage("bad flag or value");
    }
    if (ring < 0)
        return usage("--pattern is pairs, ring, wake, pingpong or call");
    bt_comm *c = NULL;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "step_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int n = c->size, me = c->rank;
    if (n < 2 || n % 2 || !c->inter || (ring >= 2 && n != 2)) {
        fprintf(stderr, "step_bench: wants an even number of ranks over TCP "
                        "(BATON_TRANSPORT=tcp), 2 for wake, pingpong and call\n");
        bt_finalize(c);
        return 1;
    }
    int partner = half ? (me + n / 2) % n : me ^ 1;
    char *s = malloc(maxb), *r = malloc(maxb);
    double *t = malloc((size_t)iters * sizeof(double));
    double *u = malloc((size_t)iters * sizeof(double));
    if (!s || !r || !t || !u) {
        fprintf(stderr, "step_bench: out of memory\n");
        return 1;
    }
    memset(s, 1, maxb), memset(r, 0, maxb);
    int rc = ring == 2   ? wake(c, s, r, minb, iters, warmup, t)
             : ring == 4 ? call(c, s, r, iters, warmup, t)
                         : 0;
    for (size_t m = minb; ring == 3 && m <= maxb && !rc; m = (size_t)((double)m * factor))
        rc = oneway(c, s, r, m, 0, iters, warmup, t, (double)m);
    for (size_t m = minb; ring < 2 && m <= maxb && !rc; m = (size_t)((double)m * factor)) {
        for (int i = 0; i < warmup && !rc; i++)
            rc = one(c, ring, partner, s, r, m);
        if (!rc)
            rc = bt_barrier(c);
        for (int i = 0; i < iters && !rc; i++) {
            if (!ring)
                rc = bt_barrier(c);
            double u0 = cpu_us(), t0 = now_us();
            rc = one(c, ring, partner, s, r, m);
            t[i] = (now_us() - t0) / (ring ? n : 1);
            u[i] = cpu_us() - u0;
        }
        qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
        qsort(u, (size_t)iters, sizeof(double), bench_cmp_dbl);
        /* ring: rank 0's round is the one that starts and ends with the token */
        double med = me == 0 || !ring ? t[iters / 2] : 0, cpu = u[iters / 2];
        if (!rc)
            rc = bt_allreduce(c, &med, &med, 1, BT_FLOAT64, BT_MAX);
        if (!rc)
            rc = bt_allreduce(c, &cpu, &cpu, 1, BT_FLOAT64, BT_SUM);
        if (!rc && me == 0 && !ring)
            printf("%zu %.3f %.3f\n", m, med, cpu / n);
        else if (!rc && me == 0)
            printf("%zu %.3f\n", m, med);
        fflush(stdout);
    }
    if (rc)
        fprintf(stderr, "step_bench: %s\n", bt_last_error(c));
    free(s), free(r), free(t), free(u);
    bt_finalize(c);
    return rc ? 1 : 0;
}
