/* coll_sweep.c: every collective x dtype x op against a naive reference, in real processes,
 * for tests/t_coll_mpi.sh. It is tests/unit/test_coll.c's sweep for a program started by a
 * launcher (mpirun or `baton run`) instead of ranks as threads: bt_init, then for counts 0, 1,
 * 7 and 1000 (and, with --big, a 1M+3 sample) allreduce (in place and not), reduce (recv NULL
 * off the root), reduce_scatter (and in place), allgather (and in place) and broadcast, each
 * dtype and op, every rank checking its result bitwise. Inputs are small integers, so every
 * order of summation gives the same exact result.
 *
 *   mpirun -np 4 build/tests/progs/coll_sweep [--big] [--rounds N]
 *   coll_sweep --mismatch [--mismatch-log P]   rank 0 broadcasts 1000 floats, the others
 *                             expect 10: a collective error the backend must report, not crash
 *                             on; each rank prints its result, and with P also writes it to
 *                             file P.<rank> (mpirun, ending the job on the first non-zero exit,
 *                             may drop a rank's last stdout line: a loaded CI run did once)
 *
 * Prints "rank R sweep ok: N calls" and exits 0, or prints the first difference (or error)
 * and exits 4; a failed bt_init prints "bt_init failed: <detail>" and exits 3.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton.h"
#include "tests/coll_ref.h"

#define BIG (1048576 + 3)

struct ctx {
    bt_comm *c;
    int rank, n;
    long calls;
    char fail[512];
    char *send, *recv, *want; /* each maxc * 8 * n bytes */
};

/* ---- inputs and the reference (as in tests/unit/test_coll.c) ---- */

/* ---- checks ---- */

/* Records the first failure; returns 1 when the call failed or its result differs. */
static int verdict(struct ctx *x, int rc, const char *what, const void *got, size_t count,
                   bt_dtype dt, bt_op op)
{
    size_t es = bt_dtype_size(dt);
    x->calls++;
    if (x->fail[0])
        return 1;
    if (rc != BT_OK) {
        snprintf(x->fail, sizeof(x->fail), "rank %d: %s %s %s count %zu: %s: %s", x->rank, what,
                 dtn[dt], opn[op], count, bt_strerror(rc), bt_last_error(x->c));
        return 1;
    }
    for (size_t i = 0; got && i < count; i++)
        if (memcmp((const char *)got + i * es, x->want + i * es, es) != 0) {
            snprintf(x->fail, sizeof(x->fail),
                     "rank %d of %d: %s %s %s count %zu: element %zu "
                     "differs",
                     x->rank, x->n, what, dtn[dt], opn[op], count, i);
            return 1;
        }
    return 0;
}

static void do_allreduce(struct ctx *x, size_t count, bt_dtype dt, bt_op op, int inplace)
{
    fill(x->send, count, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(x->want, i, i, x->n, dt, op);
    char *out = inplace ? x->send : x->recv;
    int rc = bt_allreduce(x->c, x->send, out, count, dt, op);
    verdict(x, rc, inplace ? "allreduce(in place)" : "allreduce", out, count, dt, op);
}

static void do_reduce(struct ctx *x, size_t count, bt_dtype dt, bt_op op, int root)
{
    fill(x->send, count, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(x->want, i, i, x->n, dt, op);
    int me = x->rank == root;
    int rc = bt_reduce(x->c, x->send, me ? x->recv : NULL, count, dt, op, root);
    verdict(x, rc, "reduce", me ? x->recv : NULL, count, dt, op);
}

static void do_reduce_scatter(struct ctx *x, size_t count, bt_dtype dt, bt_op op, int inplace)
{
    fill(x->send, count * (size_t)x->n, x->rank, dt, op);
    for (size_t i = 0; i < count; i++)
        expect(x->want, i, (size_t)x->rank * count + i, x->n, dt, op);
    char *out = inplace ? x->send : x->recv;
    int rc = bt_reduce_scatter(x->c, x->send, out, count, dt, op);
    verdict(x, rc, inplace ? "reduce_scatter(in place)" : "reduce_scatter", out, count, dt, op);
}

/* In place: the input already sits in this rank's block of recv. */
static void do_allgather(struct ctx *x, size_t count, bt_dtype dt, int inplace)
{
    size_t es = bt_dtype_size(dt);
    char *mine = x->recv + (size_t)x->rank * count * es;
    fill(inplace ? mine : x->send, count, x->rank, dt, BT_SUM);
    for (int r = 0; r < x->n; r++)
        fill(x->want + (size_t)r * count * es, count, r, dt, BT_SUM);
    int rc = bt_allgather(x->c, inplace ? mine : x->send, x->recv, count, dt);
    verdict(x, rc, inplace ? "allgather(in place)" : "allgather", x->recv, count * (size_t)x->n, dt,
            BT_SUM);
}

static void do_broadcast(struct ctx *x, size_t count, bt_dtype dt, int root)
{
    fill(x->send, count, x->rank == root ? root : 99, dt, BT_SUM);
    fill(x->want, count, root, dt, BT_SUM);
    int rc = bt_broadcast(x->c, x->send, count, dt, root);
    verdict(x, rc, "broadcast", x->send, count, dt, BT_SUM);
}

static void sweep_count(struct ctx *x, size_t count)
{
    for (int dt = 0; dt < BT_DTYPE_COUNT && !x->fail[0]; dt++) {
        for (int op = 0; op < BT_OP_COUNT && !x->fail[0]; op++) {
            do_allreduce(x, count, (bt_dtype)dt, (bt_op)op, 1);
            do_allreduce(x, count, (bt_dtype)dt, (bt_op)op, 0);
            do_reduce(x, count, (bt_dtype)dt, (bt_op)op, (dt + op) % x->n);
            do_reduce_scatter(x, count, (bt_dtype)dt, (bt_op)op, op % 2);
        }
        do_allgather(x, count, (bt_dtype)dt, dt % 2);
        do_broadcast(x, count, (bt_dtype)dt, (dt * 3) % x->n);
    }
}

static void sweep_big(struct ctx *x)
{
    do_allreduce(x, BIG, BT_FLOAT32, BT_SUM, 1);
    do_allreduce(x, BIG, BT_BFLOAT16, BT_AVG, 0);
    do_allreduce(x, BIG, BT_INT64, BT_MAX, 1);
    do_allreduce(x, BIG, BT_FLOAT16, BT_SUM, 1);
    do_reduce_scatter(x, BIG / (size_t)x->n, BT_FLOAT32, BT_SUM, 0);
    do_allgather(x, BIG / (size_t)x->n, BT_FLOAT16, 1);
    do_broadcast(x, BIG, BT_FLOAT64, x->n - 1);
}

/* Rank 0 broadcasts more than the others expect: the backend must return an error. The
 * result to stdout, and with log (not NULL) to the file log.<rank>. */
static int mismatch(struct ctx *x, const char *log)
{
    size_t count = x->rank == 0 ? 1000 : 10;
    int rc = bt_broadcast(x->c, x->send, count, BT_FLOAT32, 0);
    char line[1024], path[4096];
    snprintf(line, sizeof(line), "rank %d: mismatched broadcast: %s: %s\n", x->rank,
             bt_strerror(rc), rc == BT_OK ? "" : bt_last_error(x->c));
    fputs(line, stdout);
    fflush(stdout); /* before the exit that makes mpirun end the job: it may not drain the pipe */
    snprintf(path, sizeof(path), "%s.%d", log ? log : "", x->rank);
    FILE *f = log ? fopen(path, "w") : NULL;
    if (f) {
        fputs(line, f);
        fclose(f);
    } else if (log)
        printf("rank %d: %s: cannot write it\n", x->rank, path);
    return rc == BT_OK ? 0 : 5;
}

int main(int argc, char **argv)
{
    struct ctx x = {0};
    int big = 0, rounds = 1, mism = 0;
    const char *mism_log = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--big"))
            big = 1;
        else if (!strcmp(argv[i], "--mismatch"))
            mism = 1;
        else if (!strcmp(argv[i], "--mismatch-log") && i + 1 < argc)
            mism_log = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "coll_sweep: unknown option %s\nusage: coll_sweep [--big] "
                    "[--rounds N] [--mismatch [--mismatch-log P]]\n",
                    argv[i]);
            return 2;
        }
    }
    if (bt_init(&x.c) != BT_OK) {
        printf("bt_init failed: %s\n", bt_last_error(NULL));
        return 3;
    }
    bt_comm_rank(x.c, &x.rank);
    bt_comm_size(x.c, &x.n);
    size_t maxc = big ? BIG : 1000, bytes = maxc * 8 * (size_t)x.n;
    x.send = malloc(bytes), x.recv = malloc(bytes), x.want = malloc(bytes);
    if (!x.send || !x.recv || !x.want) {
        printf("rank %d: out of memory\n", x.rank);
        return 4;
    }
    int rc = 0;
    if (mism) {
        rc = mismatch(&x, mism_log);
    } else {
        static const size_t counts[] = {0, 1, 7, 1000};
        for (int r = 0; r < rounds; r++)
            for (size_t k = 0; k < 4 && !x.fail[0]; k++)
                sweep_count(&x, counts[k]);
        if (big && !x.fail[0])
            sweep_big(&x);
        if (!x.fail[0] && bt_barrier(x.c) != BT_OK)
            snprintf(x.fail, sizeof(x.fail), "rank %d: barrier: %s", x.rank, bt_last_error(x.c));
        if (x.fail[0])
            printf("%s\n", x.fail), rc = 4;
        else
            printf("rank %d sweep ok: %ld calls\n", x.rank, x.calls);
    }
    free(x.send), free(x.recv), free(x.want);
    if (bt_finalize(x.c) != BT_OK && rc == 0)
        rc = 4;
    return rc;
}
