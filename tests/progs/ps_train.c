/* ps_train.c: a parameter-server worker for the shell tests: least squares on one key.
 *
 * usage: ps_train STEPS COUNT [sync|async|bounded:S]
 * Env as `baton run --ps N` sets it (BATON_RDZV, BATON_TOKEN, BATON_RANK, BATON_WORLD_SIZE,
 * BATON_PS_SERVERS). Minimises 0.5 |w - target|^2 with SGD (lr 0.1) through the servers:
 * pull, gradient w - target, push. Prints "step T loss L" each step; rank 0 tells the servers
 * the job is done when PS_TRAIN_SHUTDOWN=1. Exits 1 with the library's error on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baton_ps.h"

static int die(bt_ps *ps, const char *what, int rc)
{
    fprintf(stderr, "ps_train: %s: %s: %s\n", what, bt_strerror(rc), bt_ps_last_error(ps));
    bt_ps_close(ps);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ps_train STEPS COUNT [sync|async|bounded:S]\n");
        return 2;
    }
    int steps = atoi(argv[1]);
    size_t n = (size_t)atol(argv[2]);
    bt_ps *ps = NULL;
    bt_ps_opt o;
    bt_ps_opt_default(&o);
    o.lr = 0.1f;
    if (argc > 3 && bt_ps_consistency_parse(argv[3], &o) != BT_OK) {
        fprintf(stderr, "ps_train: bad consistency '%s'\n", argv[3]);
        return 2;
    }
    float *w = calloc(n, sizeof(float)), *g = calloc(n, sizeof(float));
    int rc = bt_ps_open(&ps);
    if (rc != BT_OK)
        return die(NULL, "bt_ps_open", rc);
    if ((rc = bt_ps_init(ps, "w", w, n, &o)) != BT_OK)
        return die(ps, "bt_ps_init", rc);
    for (int t = 0; t < steps; t++) {
        if ((rc = bt_ps_pull(ps, "w", w, n)) != BT_OK)
            return die(ps, "bt_ps_pull", rc);
        double loss = 0;
        for (size_t i = 0; i < n; i++) {
            g[i] = w[i] - (float)(i % 7);
            loss += 0.5 * g[i] * g[i];
        }
        printf("step %d loss %.6g\n", t, loss);
        fflush(stdout);
        if ((rc = bt_ps_push(ps, "w", g, n)) != BT_OK)
            return die(ps, "bt_ps_push", rc);
        nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL); /* a step of "compute" */
    }
    const char *sd = getenv("PS_TRAIN_SHUTDOWN");
    rc = sd && !strcmp(sd, "1") ? bt_ps_shutdown(ps) : bt_ps_close(ps);
    free(w);
    free(g);
    return rc == BT_OK ? 0 : 1;
}
