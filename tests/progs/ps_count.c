/* ps_count.c: a parameter-server worker whose key counts the updates applied to it, for the
 * exactly-once tests (tests/t_ps_elastic.sh).
 *
 * usage: ps_count KEY STEPS COUNT [sync|async|bounded:S]
 * Env as for ps_train (BATON_RDZV, BATON_TOKEN, BATON_RANK, BATON_WORLD_SIZE,
 * BATON_RESTART_COUNT, BATON_PS_SERVERS). Declares KEY (COUNT floats, 0) with SGD lr 1 and
 * pushes a gradient of -1 STEPS times, pulling after each push: every update applied adds
 * exactly 1 to every element (sync: one update per step, the workers' -1s averaged; async and
 * bounded: one per push). Prints "start KEY V" after the first pull and "step T V" after each
 * step. Fails (exit 3, one line) when, in sync mode, the elements differ or the value after
 * step T is not start + T + 1: a push applied twice or lost. (In async and bounded mode the
 * pieces on different servers see the other workers' pushes at different times, so only a
 * reader after the run, STEPS 0, checks that the elements agree.) Ends with "final KEY V".
 * PS_COUNT_END=leave|shutdown|close (default close) picks how it says goodbye. With
 * PS_COUNT_STOP=FILE it stops once FILE holds a count N and the value reached N (STEPS is then
 * a bound): in sync mode every worker sees the same values, so all stop after the same step.
 * With PS_COUNT_HOLD=T:FILE it waits after step T until FILE exists (60 s at most, then exit 3
 * with a line): the test kills a server while the workers are held, so the kill lands mid-run
 * however fast the workers step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baton_ps.h"

static int die(bt_ps *ps, const char *what, int rc)
{
    fprintf(stderr, "ps_count: %s: %s: %s\n", what, bt_strerror(rc), bt_ps_last_error(ps));
    bt_ps_close(ps);
    return 1;
}

/* The count in the file named by PS_COUNT_STOP, or -1 (no such variable or file yet). */
static double stop_at(void)
{
    const char *path = getenv("PS_COUNT_STOP");
    double n = -1;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f && fscanf(f, "%lf", &n) != 1)
        n = -1;
    if (f)
        fclose(f);
    return n;
}

/* After step t: 0 at once unless PS_COUNT_HOLD names step t; then 0 once its file exists, -1
 * (and a line) after 60 s. */
static int hold(int t)
{
    const char *h = getenv("PS_COUNT_HOLD"), *colon = h ? strchr(h, ':') : NULL;
    if (!colon || atoi(h) != t)
        return 0;
    for (int i = 0; i < 6000; i++) {
        if (access(colon + 1, F_OK) == 0)
            return 0;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    fprintf(stderr, "ps_count: held after step %d for 60 s: %s never appeared\n", t, colon + 1);
    return -1;
}

/* The common value of v[0..n), or -1 (and a line) when they differ. */
static double uniform(const float *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[0]) {
            fprintf(stderr, "ps_count: element %zu is %g, element 0 is %g\n", i, v[i], v[0]);
            return -1;
        }
    return n ? v[0] : 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: ps_count KEY STEPS COUNT [sync|async|bounded:S]\n");
        return 2;
    }
    const char *key = argv[1], *end = getenv("PS_COUNT_END");
    int steps = atoi(argv[2]);
    size_t n = (size_t)atol(argv[3]);
    bt_ps *ps = NULL;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.lr = 1.0f;
    if (argc > 4 && bt_ps_consistency_parse(argv[4], &o) != BT_OK) {
        fprintf(stderr, "ps_count: bad consistency '%s'\n", argv[4]);
        return 2;
    }
    float *w = calloc(n ? n : 1, sizeof(float)), *g = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] = -1.0f;
    int rc = bt_ps_open(&ps);
    if (rc != BT_OK)
        return die(NULL, "bt_ps_open", rc);
    if ((rc = bt_ps_init(ps, key, w, n, &o)) != BT_OK)
        return die(ps, "bt_ps_init", rc);
    if ((rc = bt_ps_pull(ps, key, w, n)) != BT_OK)
        return die(ps, "bt_ps_pull", rc);
    int sync = o.consistency == BT_PS_SYNC;
    double start = sync || steps == 0 ? uniform(w, n) : w[0], v = start;
    printf("start %s %.0f\n", key, start);
    fflush(stdout);
    for (int t = 0; t < steps && v >= 0; t++) {
        double stop = stop_at();
        if (stop >= 0 && v >= stop)
            break;
        if ((rc = bt_ps_push(ps, key, g, n)) != BT_OK)
            return die(ps, "bt_ps_push", rc);
        if ((rc = bt_ps_pull(ps, key, w, n)) != BT_OK)
            return die(ps, "bt_ps_pull", rc);
        v = sync ? uniform(w, n) : w[0];
        printf("step %d %.0f\n", t, v);
        fflush(stdout);
        if (sync && v >= 0 && v != start + t + 1) {
            fprintf(stderr,
                    "ps_count: step %d: value %.0f, want %.0f (an update applied twice "
                    "or lost)\n",
                    t, v, start + t + 1);
            v = -1;
        }
        if (v >= 0 && hold(t) != 0)
            v = -1;
    }
    if (v < 0) {
        bt_ps_close(ps);
        return 3;
    }
    printf("final %s %.0f\n", key, v);
    fflush(stdout);
    rc = end && !strcmp(end, "leave")      ? bt_ps_leave(ps)
         : end && !strcmp(end, "shutdown") ? bt_ps_shutdown(ps)
                                           : bt_ps_close(ps);
    free(w);
    free(g);
    return rc == BT_OK ? 0 : 1;
}
