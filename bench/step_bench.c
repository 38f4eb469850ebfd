/* step_bench.c: the cost of one step of a point-to-point collective on this host, as the host
 * model of the simulator (tests/progs/collsim.c, `collsim verify`) is calibrated from it.
 * It calls the transport itself (bt__xfer, as the algorithms do), not a collective.
 *
 *   baton run -n N -- build/bench/step_bench --pattern pairs|ring [--partner xor|half]
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
 *
 * Prints "BYTES MICROSECONDS" per size (rank 0): pairs, the median exchange (the largest of
 * the ranks' medians, as allreduce_bench times a call); ring, the median round divided by N. */
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

static int usage(const char *why)
{
    fprintf(stderr,
            "step_bench: %s\nusage: step_bench --pattern pairs|ring [--partner xor|half] "
            "[-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP]\n",
            why);
    return 2;
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

int main(int argc, char **argv)
{
    size_t minb = 4096, maxb = 16u << 20;
    double factor = 16;
    int iters = 15, warmup = 3, ring = -1, half = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("every flag wants a value");
        i++;
        if (!strcmp(o, "--pattern") && (!strcmp(v, "pairs") || !strcmp(v, "ring")))
            ring = v[0] == 'r';
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
        return usage("--pattern is pairs or ring");
    bt_comm *c = NULL;
    if (bt_init(&c) != BT_OK) {
        fprintf(stderr, "step_bench: bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int n = c->size, me = c->rank;
    if (n < 2 || n % 2 || !c->inter) {
        fprintf(stderr,
                "step_bench: wants an even number of ranks over TCP (BATON_TRANSPORT=tcp)\n");
        bt_finalize(c);
        return 1;
    }
    int partner = half ? (me + n / 2) % n : me ^ 1;
    char *s = malloc(maxb), *r = malloc(maxb);
    double *t = malloc((size_t)iters * sizeof(double));
    if (!s || !r || !t) {
        fprintf(stderr, "step_bench: out of memory\n");
        return 1;
    }
    memset(s, 1, maxb), memset(r, 0, maxb);
    int rc = 0;
    for (size_t m = minb; m <= maxb && !rc; m = (size_t)((double)m * factor)) {
        for (int i = 0; i < warmup && !rc; i++)
            rc = one(c, ring, partner, s, r, m);
        if (!rc)
            rc = bt_barrier(c);
        for (int i = 0; i < iters && !rc; i++) {
            if (!ring)
                rc = bt_barrier(c);
            double t0 = now_us();
            rc = one(c, ring, partner, s, r, m);
            t[i] = (now_us() - t0) / (ring ? n : 1);
        }
        qsort(t, (size_t)iters, sizeof(double), bench_cmp_dbl);
        /* ring: rank 0's round is the one that starts and ends with the token */
        double med = me == 0 || !ring ? t[iters / 2] : 0;
        if (!rc)
            rc = bt_allreduce(c, &med, &med, 1, BT_FLOAT64, BT_MAX);
        if (!rc && me == 0)
            printf("%zu %.3f\n", m, med);
        fflush(stdout);
    }
    if (rc)
        fprintf(stderr, "step_bench: %s\n", bt_last_error(c));
    free(s), free(r), free(t);
    bt_finalize(c);
    return rc ? 1 : 0;
}
