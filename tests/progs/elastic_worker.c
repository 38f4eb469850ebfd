/* elastic_worker.c: a worker for the elastic launcher tests (tests/t_launch_elastic*.sh).
 *
 *   elastic_worker DIR [--ack]
 *
 * Joins the job (bt_init), then allreduces a 1 every 50 ms and checks the sum is the world
 * size. After its first good allreduce it writes DIR/up.<BATON_RESTART_COUNT>.<RANK> holding
 * "world=W nnodes=N node_rank=R pid=P" (written atomically), which is what the tests wait on. When
 * BATON_ELASTIC_FILE says state=closing it writes DIR/ckpt.<RESTART>.<RANK> once (where a real
 * program checkpoints) and, with --ack, creates BATON_ELASTIC_FILE.ack.<LOCAL_RANK> so that the
 * generation ends before BATON_ELASTIC_GRACE is over. It exits 0 once DIR/stop exists, 1 when an
 * allreduce fails (a peer went away) or gives a wrong sum, and dies by SIGTERM when the launcher
 * stops it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"

static int env_int(const char *name)
{
    const char *v = getenv(name);
    return v ? atoi(v) : -1;
}

static void put(const char *dir, const char *what, int gen, int rank, const char *text)
{
    char tmp[1024], path[1024];
    snprintf(tmp, sizeof(tmp), "%s/.%s.%d.%d.tmp", dir, what, gen, rank);
    snprintf(path, sizeof(path), "%s/%s.%d.%d", dir, what, gen, rank);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%s\n", text);
    fclose(f);
    rename(tmp, path);
}

/* 1 when BATON_ELASTIC_FILE says state=closing. */
static int closing(void)
{
    const char *p = getenv("BATON_ELASTIC_FILE");
    char line[256];
    int yes = 0;
    FILE *f = p ? fopen(p, "r") : NULL;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        yes |= !strcmp(line, "state=closing\n");
    fclose(f);
    return yes;
}

/* Tells the launcher this worker is ready for the generation to end: with --ack only. */
static int want_ack;
static void ack(void)
{
    char path[1024];
    const char *p = getenv("BATON_ELASTIC_FILE");
    if (!want_ack || !p)
        return;
    snprintf(path, sizeof(path), "%s.ack.%s", p, getenv("BATON_LOCAL_RANK"));
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

int main(int argc, char **argv)
{
    want_ack = argc == 3 && !strcmp(argv[2], "--ack");
    if (argc != 2 && !want_ack) {
        fprintf(stderr, "usage: elastic_worker DIR [--ack]\n");
        return 2;
    }
    const char *dir = argv[1];
    int gen = env_int("BATON_RESTART_COUNT"), ckpt = 0;
    char stop[1024], text[128];
    snprintf(stop, sizeof(stop), "%s/stop", dir);
    bt_comm *comm;
    if (bt_init(&comm) != BT_OK) {
        fprintf(stderr, "bt_init: %s\n", bt_last_error(NULL));
        return 1;
    }
    int rank, size;
    bt_comm_rank(comm, &rank);
    bt_comm_size(comm, &size);
    for (long step = 0;; step++) {
        int one = 1, sum = 0;
        int rc = bt_allreduce(comm, &one, &sum, 1, BT_INT32, BT_SUM);
        if (rc != BT_OK || sum != size) {
            fprintf(stderr, "allreduce: %s (sum %d, world %d)\n", bt_strerror(rc), sum, size);
            return 1;
        }
        if (step == 0) {
            snprintf(text, sizeof(text), "world=%d nnodes=%d node_rank=%d pid=%d", size,
                     env_int("BATON_NNODES"), env_int("BATON_NODE_RANK"), (int)getpid());
            put(dir, "up", gen, rank, text);
        }
        if (!ckpt && closing()) {
            put(dir, "ckpt", gen, rank, "checkpointed");
            ckpt = 1;
            ack();
        }
        int done = access(stop, F_OK) == 0, all = 0;
        if (bt_allreduce(comm, &done, &all, 1, BT_INT32, BT_MAX) != BT_OK)
            return 1;
        if (all)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    bt_finalize(comm);
    return 0;
}
