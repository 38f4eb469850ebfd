/* backend/mpi.c: the Open MPI backend: every host collective of a job that mpirun started
 * runs as one MPI collective on a duplicate of MPI_COMM_WORLD.
 *
 * bt_init (comm.c) decides that this backend is used and calls bt__mpi_attach; from then on
 * coll.c hands each checked call to mpi_run. There is no store, no shm segment and no TCP
 * mesh: Open MPI moves the bytes, and mpirun, not baton, tears the job down when a rank dies.
 * This file does not launch anything and never calls MPI_Abort.
 *
 * How calls map (each MPI's blocking collective, or its MPI_I* form polled; see Waiting):
 *   allreduce       MPI_Allreduce (send == recv: MPI_IN_PLACE)
 *   broadcast       MPI_Bcast
 *   allgather       this rank's block copied into place, then MPI_Allgather(MPI_IN_PLACE)
 *   reduce_scatter  MPI_Reduce_scatter_block (send == recv: MPI_IN_PLACE)
 *   reduce          MPI_Reduce (send == recv on the root: MPI_IN_PLACE; recv unused elsewhere)
 *   barrier         MPI_Barrier
 *   alltoall(v)     MPI_Alltoall, MPI_Alltoallv (counts and displacements as ints)
 *   allgatherv      MPI_Allgatherv
 *   gather, scatter MPI_Gather, MPI_Scatter
 *   send, recv      MPI_Isend, MPI_Irecv of MPI_BYTE (at most INT_MAX bytes), started and
 *                   tested by exchange.c through p2p_start/p2p_test, so that consecutive
 *                   isend/irecv requests progress together as on baton's own transports. MPI
 *                   matches a receive to the first message from that peer with its tag (not
 *                   to the next message whatever its tag, as baton's streams do), and keeps
 *                   point-to-point apart from collectives.
 *
 * Waiting: each communicator's requests run one at a time on its runner (progress.c);
 * runners of different communicators (a split, a dup) may call MPI at the same time.
 *   - With MPI_THREAD_MULTIPLE (baton asks for it) the runner makes MPI's blocking call, which
 *     Open MPI runs with its tuned algorithms (its nonblocking ones go through libnbc
 *     schedules, up to 4x slower here). A watchdog thread ticks every call in flight every
 *     100 ms (bt__wait_tick: the stall warning, BATON_TIMEOUT). A blocking MPI call cannot be
 *     abandoned, so at BATON_TIMEOUT the watchdog logs the timeout and ends the process with
 *     status 142, and mpirun ends the job; the program does not get the error back.
 *   - With less (or BATON_MPI_POLL=1, which every rank must then have) the runner starts the
 *     MPI_I* form and polls it with MPI_Test (spin, then yield, then 50 us sleeps), calling
 *     bt__wait_tick between polls, so a timeout returns BT_ERR_TIMEOUT to the program (the
 *     call is left to MPI: the communicator has failed, and the process then exits without
 *     MPI_Finalize). Where MPI gives less than MPI_THREAD_MULTIPLE (or the program initialised
 *     MPI with less), every MPI call of this file takes one process-wide lock, which polling
 *     holds only for an MPI_Test, so two communicators still progress in turn; a blocking
 *     call would hold it for the whole call and could deadlock communicators whose calls
 *     ranks issue in different orders, which is why blocking needs MPI_THREAD_MULTIPLE.
 *   One mode for the whole process, chosen when MPI's first communicator is made, and the
 *   same on every rank (agree_mode: where one rank polls, all do): MPI does not match a
 *   blocking collective with a nonblocking one. The split itself (below) is a blocking call
 *   in both modes, holding the lock while it runs; with blocking calls the watchdog bounds it
 *   too.
 *
 * Sub-communicators (bt_comm_split, bt_comm_dup, bt_comm_create_group on an Open MPI
 * communicator; split.c calls mpi_derive in the parent's runner): MPI_Comm_split (color -1 is
 * MPI_UNDEFINED; key then parent rank orders the child, as in baton's own split),
 * MPI_Comm_dup, and MPI_Comm_create_group (members only; baton's 64-bit tag folded into
 * MPI's tag range). The child gets its own half ops, node layout and name, and counts as a
 * user of MPI like any communicator.
 * dtypes: float32/64, int32/64 and uint8 are MPI's own types with MPI's built-in ops.
 * float16 and bfloat16 travel as MPI_UINT16_T and are combined by user-defined ops (made once
 * per communicator) that widen each pair to float32, combine and round back to nearest even
 * (bt__reduce2), as NCCL does; so a sum of halves is rounded at each step of MPI's algorithm,
 * where the native path rounds once. BT_AVG is a sum, then one division by the world size
 * (bt__reduce_div: in float32 for halves, truncating for integers), so it is rounded once
 * after the sum like on the native path.
 *
 * Counts: MPI counts are int. allreduce, reduce and broadcast go in pieces of at most
 * CHUNK_ELEMS elements; allgather and reduce_scatter take at most INT_MAX elements per rank.
 *
 * Errors: the duplicate communicator returns errors (MPI_ERRORS_RETURN; so does
 * MPI_COMM_WORLD when baton initialised MPI, see start_mpi); each becomes a baton
 * code by its MPI error class, with MPI's error string, the collective and its number, through
 * bt__comm_fail (sticky). A communicator that failed is not finalised collectively: its
 * process then exits without MPI_Finalize, and mpirun ends the rest of the job.
 *
 * MPI itself: bt_init calls MPI_Init_thread(MPI_THREAD_MULTIPLE) unless the program has
 * initialised MPI; the last communicator of those calls MPI_Finalize when it is destroyed.
 * A program that calls MPI_Init itself keeps MPI after bt_finalize. (The counter below assumes
 * communicators are made and destroyed by one thread at a time.)
 */
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collectives/backend/backend.h"
#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "collectives/reduce.h"
#include "common/log.h"
#include "common/param.h"

#define CHUNK_ELEMS ((size_t)1 << 30)
#define NHALF_OPS 4 /* sum, prod, min, max */

struct mpi_state {
    MPI_Comm comm;                 /* duplicate of MPI_COMM_WORLD, MPI_ERRORS_RETURN */
    MPI_Op half_ops[2][NHALF_OPS]; /* [0 float16, 1 bfloat16][op]; MPI_OP_NULL until made */
    int counted;                   /* this communicator is one of mpi_users */
};

static _Atomic int mpi_users; /* communicators alive since MPI was initialised (or found so) */
static int mpi_owned;         /* baton called MPI_Init_thread: the last user calls MPI_Finalize */
static int mpi_multiple;      /* MPI_THREAD_MULTIPLE provided: no lock needed */
static int mpi_blocking;      /* collectives are MPI's blocking calls, under the watchdog */
static int mpi_mode_new;      /* this attach chose mpi_blocking: it agrees it with the others */
static pthread_mutex_t mpi_mu = PTHREAD_MUTEX_INITIALIZER;

BT_PARAM_INT(mpi_poll, "BATON_MPI_POLL", 0)

static void lock(void)
{
    if (!mpi_multiple)
        pthread_mutex_lock(&mpi_mu);
}

static void unlock(void)
{
    if (!mpi_multiple)
        pthread_mutex_unlock(&mpi_mu);
}

/* Runs one MPI call under the lock: LOCKED(MPI_Iallreduce(...)). */
#define LOCKED(call) (lock(), locked_rc = (call), unlock(), locked_rc)
static __thread int locked_rc;

/* ---- float16/bfloat16 ops: inout[i] = in[i] op inout[i], in float32 ---- */

#define HALF_OP(name, dt, op)                                                                      \
    static void name(void *in, void *inout, int *len, MPI_Datatype *type)                          \
    {                                                                                              \
        (void)type;                                                                                \
        bt__reduce2(dt, op, inout, in, inout, (size_t)*len);                                       \
    }
HALF_OP(f16_sum, BT_FLOAT16, BT_SUM)
HALF_OP(f16_prod, BT_FLOAT16, BT_PROD)
HALF_OP(f16_min, BT_FLOAT16, BT_MIN)
HALF_OP(f16_max, BT_FLOAT16, BT_MAX)
HALF_OP(bf16_sum, BT_BFLOAT16, BT_SUM)
HALF_OP(bf16_prod, BT_BFLOAT16, BT_PROD)
HALF_OP(bf16_min, BT_BFLOAT16, BT_MIN)
HALF_OP(bf16_max, BT_BFLOAT16, BT_MAX)

static MPI_User_function *const half_fns[2][NHALF_OPS] = {
    {f16_sum, f16_prod, f16_min, f16_max},
    {bf16_sum, bf16_prod, bf16_min, bf16_max},
};

/* ---- errors ---- */

/* Baton's code for an MPI error, and a hint: bad arguments reaching MPI are baton's own bug;
 * a truncated message means the ranks disagree on the call. */
static int code_of(int mpi_rc, const char **hint)
{
    int cls = MPI_ERR_OTHER;
    MPI_Error_class(mpi_rc, &cls);
    *hint = "mpirun's output names the rank or host that failed";
    switch (cls) {
    case MPI_ERR_NO_MEM: return BT_ERR_SYSTEM;
    case MPI_ERR_TRUNCATE:
        *hint = "do all ranks make the same collective with the same count, dtype and root?";
        return BT_ERR_INVALID_USAGE;
    case MPI_ERR_ARG:
    case MPI_ERR_COUNT:
    case MPI_ERR_TYPE:
    case MPI_ERR_BUFFER:
    case MPI_ERR_ROOT:
    case MPI_ERR_OP:
    case MPI_ERR_COMM:
    case MPI_ERR_INTERN:
        *hint = "this is a bug in baton's MPI backend; please report it";
        return BT_ERR_INTERNAL;
    default: return BT_ERR_REMOTE; /* a peer gone, the network: the job's state */
    }
}

static void mpi_text(int mpi_rc, char *out, int cap)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mpi_rc, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof(s), "MPI error %d", mpi_rc);
    snprintf(out, (size_t)cap, "%s", s);
}

/* BT_OK, or the failure of the running collective (sticky on c). */
static int check(struct bt_comm *c, int mpi_rc, const char *call)
{
    if (mpi_rc == MPI_SUCCESS)
        return BT_OK;
    char s[MPI_MAX_ERROR_STRING];
    const char *hint;
    int code = code_of(mpi_rc, &hint);
    mpi_text(mpi_rc, s, sizeof(s));
    return bt__comm_fail(c, code, "%s #%llu: %s failed: %s; hint: %s", c->coll_name,
                         (unsigned long long)c->coll_seq, call, s, hint);
}

/* For bt_init: BT_OK, or a one-line reason in err. */
static int init_check(struct bt__err *err, int mpi_rc, const char *call)
{
    if (mpi_rc == MPI_SUCCESS)
        return BT_OK;
    char s[MPI_MAX_ERROR_STRING];
    const char *hint;
    int code = code_of(mpi_rc, &hint);
    mpi_text(mpi_rc, s, sizeof(s));
    return bt__err_set(err, code, "bt_init (Open MPI backend): %s failed: %s", call, s);
}

/* ---- waiting for a started call ---- */

static void who_mpi(void *arg, char *out, size_t cap)
{
    (void)arg;
    snprintf(out, cap, "? (Open MPI does not say which)");
}

/* Polls req (started by call) until it completes; BT_OK, or the failure (sticky). */
static int await(struct bt_comm *c, MPI_Request *req, int mpi_rc, const char *call)
{
    struct bt__wait w;
    BT_CHECK(check(c, mpi_rc, call));
    bt__wait_start(c, &w);
    for (unsigned idle = 0;; idle++) {
        int done = 0;
        BT_CHECK(check(c, LOCKED(MPI_Test(req, &done, MPI_STATUS_IGNORE)), call));
        if (done)
            return BT_OK;
        BT_CHECK(bt__wait_tick(c, &w, who_mpi, NULL));
        if (idle < 256)
            continue;
        if (idle < 4096) {
            sched_yield();
        } else {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- blocking calls and their watchdog ---- */

/* A blocking MPI call in flight (watch_begin .. watch_end), on the watchdog's list. */
struct watch {
    struct bt_comm *c;
    struct bt__wait w;
    const char *call; /* "MPI_Allreduce" */
    struct watch *prev, *next;
};

static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER; /* the list and the thread */
static pthread_cond_t watch_cv;
static struct watch *watching;
static pthread_t watchdog;
static int watchdog_up, watchdog_stop;

/* A call that stays in MPI for BATON_TIMEOUT cannot be abandoned: its waiter leaves the
 * process with this status (128 + SIGALRM, as baton run's for a hung collective). */
#define HUNG_EXIT 142

static _Noreturn void give_up(const struct watch *x)
{
    BT_WARN(COLL,
            "rank %d: %s is a blocking Open MPI call and cannot be abandoned: exiting with "
            "status %d so that mpirun ends the job (BATON_MPI_POLL=1 makes calls return the "
            "error to the program instead)",
            x->c->rank, x->call, HUNG_EXIT);
    fflush(stdout);
    fflush(stderr);
    _exit(HUNG_EXIT);
}

/* Every 100 ms, the waits of the calls in flight take a tick (bt__wait_tick: the stall
 * warning, BATON_TIMEOUT) as a polled call's do between polls. The runner of a call is in
 * MPI until the call returns, and watch_end takes watch_mu, so the tick has the
 * communicator's error and call number to itself. */
static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&watch_mu);
    while (!watchdog_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&watch_cv, &watch_mu, &ts);
        for (struct watch *x = watching; x && !watchdog_stop; x = x->next)
            if (bt__wait_tick(x->c, &x->w, who_mpi, NULL) != BT_OK)
                give_up(x);
    }
    pthread_mutex_unlock(&watch_mu);
    return NULL;
}

static int watchdog_start(struct bt__err *err)
{
    pthread_condattr_t ca;
    if (watchdog_up)
        return BT_OK;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&watch_cv, &ca);
    pthread_condattr_destroy(&ca);
    watchdog_stop = 0;
    if (pthread_create(&watchdog, NULL, watchdog_main, NULL) != 0) {
        pthread_cond_destroy(&watch_cv);
        return bt__err_set(err, BT_ERR_SYSTEM,
                           "bt_init (Open MPI backend): cannot start the watchdog thread");
    }
    watchdog_up = 1;
    return BT_OK;
}

static void watchdog_end(void)
{
    if (!watchdog_up)
        return;
    pthread_mutex_lock(&watch_mu);
    watchdog_stop = 1;
    pthread_cond_signal(&watch_cv);
    pthread_mutex_unlock(&watch_mu);
    pthread_join(watchdog, NULL);
    pthread_cond_destroy(&watch_cv);
    watchdog_up = 0;
}

static void watch_begin(struct watch *x, struct bt_comm *c, const char *call)
{
    x->c = c;
    x->call = call;
    bt__wait_start(c, &x->w);
    pthread_mutex_lock(&watch_mu);
    x->prev = NULL;
    x->next = watching;
    if (watching)
        watching->prev = x;
    watching = x;
    pthread_mutex_unlock(&watch_mu);
}

static void watch_end(struct watch *x)
{
    pthread_mutex_lock(&watch_mu);
    if (x->prev)
        x->prev->next = x->next;
    else
        watching = x->next;
    if (x->next)
        x->next->prev = x->prev;
    pthread_mutex_unlock(&watch_mu);
}

/* Runs one collective and sets rc (BT_OK, or the failure, sticky): MPI_<Name>(args...) where
 * calls block (mpi_blocking: under the watchdog), else MPI_I<name>(args..., &rq) polled by
 * await. CALL(rc, c, Allreduce, allreduce, sb, recv, n, type, op, comm). */
#define CALL(rc, c, Name, name, ...)                                                               \
    do {                                                                                           \
        if (mpi_blocking) {                                                                        \
            struct watch wt_;                                                                      \
            watch_begin(&wt_, (c), "MPI_" #Name);                                                  \
            int m_ = LOCKED(MPI_##Name(__VA_ARGS__));                                              \
            watch_end(&wt_);                                                                       \
            (rc) = check((c), m_, "MPI_" #Name);                                                   \
        } else {                                                                                   \
            MPI_Request rq = MPI_REQUEST_NULL;                                                     \
            (rc) = await((c), &rq, LOCKED(MPI_I##name(__VA_ARGS__, &rq)), "MPI_I" #name);          \
        }                                                                                          \
    } while (0)

/* CALL, returning the failure: RUN(c, Bcast, bcast, buf, n, type, root, comm). */
#define RUN(c, Name, name, ...)                                                                    \
    do {                                                                                           \
        int rc_;                                                                                   \
        CALL(rc_, c, Name, name, __VA_ARGS__);                                                     \
        BT_CHECK(rc_);                                                                             \
    } while (0)

/* ---- types and ops ---- */

static MPI_Datatype mpi_type(bt_dtype dt)
{
    switch (dt) {
    case BT_FLOAT32: return MPI_FLOAT;
    case BT_FLOAT64: return MPI_DOUBLE;
    case BT_INT32: return MPI_INT32_T;
    case BT_INT64: return MPI_INT64_T;
    case BT_UINT8: return MPI_UINT8_T;
    default: return MPI_UINT16_T; /* float16, bfloat16: combined by the half ops */
    }
}

/* The MPI op that sums for BT_AVG (the division comes after). */
static MPI_Op mpi_op(const struct mpi_state *s, bt_dtype dt, bt_op op)
{
    int i = op == BT_AVG ? BT_SUM : (int)op;
    if (bt__is_half(dt))
        return s->half_ops[dt == BT_BFLOAT16][i];
    switch (i) {
    case BT_PROD: return MPI_PROD;
    case BT_MIN: return MPI_MIN;
    case BT_MAX: return MPI_MAX;
    default: return MPI_SUM;
    }
}

/* ---- the collectives ---- */

static int overlap(const void *a, const void *b, size_t bytes)
{
    const char *x = a, *y = b;
    return bytes && x < y + bytes && y < x + bytes;
}

static void finish_avg(struct bt_comm *c, const struct bt__call *a, void *buf, size_t n)
{
    if (a->op == BT_AVG && buf)
        bt__reduce_div(a->dtype, buf, n, c->size);
}

/* Allreduce in pieces of at most CHUNK_ELEMS; a recv that partly overlaps send is made the
 * in-place case first. */
static int mpi_allreduce(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype);
    char *recv = a->recv;
    int inplace = a->send == a->recv;
    if (!inplace && overlap(a->send, a->recv, a->count * es)) {
        memmove(recv, a->send, a->count * es);
        inplace = 1;
    }
    for (size_t off = 0; off < a->count; off += CHUNK_ELEMS) {
        size_t n = a->count - off < CHUNK_ELEMS ? a->count - off : CHUNK_ELEMS;
        const void *sb = inplace ? MPI_IN_PLACE : (const char *)a->send + off * es;
        RUN(c, Allreduce, allreduce, sb, recv + off * es, (int)n, mpi_type(a->dtype),
            mpi_op(s, a->dtype, a->op), s->comm);
    }
    finish_avg(c, a, recv, a->count);
    return BT_OK;
}

static int mpi_reduce(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype);
    int root = c->rank == a->root;
    char *recv = root ? a->recv : NULL;
    int inplace = root && a->send == a->recv;
    if (root && !inplace && overlap(a->send, recv, a->count * es)) {
        memmove(recv, a->send, a->count * es);
        inplace = 1;
    }
    for (size_t off = 0; off < a->count; off += CHUNK_ELEMS) {
        size_t n = a->count - off < CHUNK_ELEMS ? a->count - off : CHUNK_ELEMS;
        const void *sb = inplace ? MPI_IN_PLACE : (const char *)a->send + off * es;
        RUN(c, Reduce, reduce, sb, recv ? recv + off * es : NULL, (int)n, mpi_type(a->dtype),
            mpi_op(s, a->dtype, a->op), a->root, s->comm);
    }
    finish_avg(c, a, recv, a->count);
    return BT_OK;
}

static int mpi_broadcast(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    size_t es = bt_dtype_size(a->dtype);
    for (size_t off = 0; off < a->count; off += CHUNK_ELEMS) {
        size_t n = a->count - off < CHUNK_ELEMS ? a->count - off : CHUNK_ELEMS;
        RUN(c, Bcast, bcast, (char *)a->recv + off * es, (int)n, mpi_type(a->dtype), a->root,
            s->comm);
    }
    return BT_OK;
}

static int too_large(struct bt_comm *c, size_t count)
{
    if (count <= INT_MAX)
        return BT_OK;
    return bt__comm_fail(c, BT_ERR_INVALID_ARG,
                         "%s #%llu: count %zu is more than the Open MPI backend takes per rank "
                         "(%d); hint: split the call",
                         c->coll_name, (unsigned long long)c->coll_seq, count, INT_MAX);
}

static int mpi_allgather(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    size_t bytes = a->count * bt_dtype_size(a->dtype);
    char *mine = (char *)a->recv + (size_t)c->rank * bytes;
    BT_CHECK(too_large(c, a->count));
    if (a->send != mine)
        memmove(mine, a->send, bytes);
    RUN(c, Allgather, allgather, MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, a->recv, (int)a->count,
        mpi_type(a->dtype), s->comm);
    return BT_OK;
}

/* send holds count * size elements; recv gets this rank's count. A recv that partly overlaps
 * send gets its input from a copy. */
static int mpi_reduce_scatter(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    size_t bytes = a->count * (size_t)c->size * bt_dtype_size(a->dtype);
    const void *send = a->send == a->recv ? MPI_IN_PLACE : a->send;
    BT_CHECK(too_large(c, a->count));
    if (send != MPI_IN_PLACE && overlap(a->send, a->recv, bytes)) {
        void *copy = bt__scratch(c, 2, bytes);
        if (!copy)
            return c->err.code;
        send = memcpy(copy, a->send, bytes);
    }
    RUN(c, Reduce_scatter_block, reduce_scatter_block, send, a->recv, (int)a->count,
        mpi_type(a->dtype), mpi_op(s, a->dtype, a->op), s->comm);
    finish_avg(c, a, a->recv, a->count);
    return BT_OK;
}

/* ---- the exchange collectives (exchange.c hands them here on an Open MPI communicator) ---- */

/* MPI's int counts and displacements of the size_t arrays v[0..size), into out. */
static int to_ints(struct bt_comm *c, const size_t *v, int *out)
{
    for (int p = 0; p < c->size; p++) {
        BT_CHECK(too_large(c, v[p]));
        out[p] = (int)v[p];
    }
    return BT_OK;
}

/* alltoallv (scounts/sdispls and rcounts/rdispls) and allgatherv (rcounts/rdispls). */
static int mpi_vcall(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    MPI_Datatype t = mpi_type(a->dtype);
    int *iv = malloc(sizeof(int) * 4 * (size_t)c->size), rc;
    if (!iv)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: out of memory", c->coll_name,
                             (unsigned long long)c->coll_seq);
    int *sc = iv, *sd = iv + c->size, *rcn = iv + 2 * c->size, *rd = iv + 3 * c->size;
    BT_CHECK_GOTO(to_ints(c, a->rcounts, rcn), rc, out);
    BT_CHECK_GOTO(to_ints(c, a->rdispls, rd), rc, out);
    if (a->kind == BT_COLL_ALLGATHERV) {
        BT_CHECK_GOTO(too_large(c, a->count), rc, out);
        CALL(rc, c, Allgatherv, allgatherv, a->send, (int)a->count, t, a->recv, rcn, rd, t,
             s->comm);
        goto out;
    }
    BT_CHECK_GOTO(to_ints(c, a->scounts, sc), rc, out);
    BT_CHECK_GOTO(to_ints(c, a->sdispls, sd), rc, out);
    CALL(rc, c, Alltoallv, alltoallv, a->send, sc, sd, t, a->recv, rcn, rd, t, s->comm);
out:
    free(iv);
    return rc;
}

/* alltoall, gather, scatter: count elements per block. */
static int mpi_blocks(struct bt_comm *c, struct mpi_state *s, const struct bt__call *a)
{
    MPI_Datatype t = mpi_type(a->dtype);
    int n = (int)a->count;
    BT_CHECK(too_large(c, a->count));
    if (a->kind == BT_COLL_ALLTOALL)
        RUN(c, Alltoall, alltoall, a->send, n, t, a->recv, n, t, s->comm);
    else if (a->kind == BT_COLL_GATHER)
        RUN(c, Gather, gather, a->send, n, t, a->recv, n, t, a->root, s->comm);
    else
        RUN(c, Scatter, scatter, a->send, n, t, a->recv, n, t, a->root, s->comm);
    return BT_OK;
}

static int mpi_run(struct bt_comm *c, const struct bt__call *a)
{
    struct mpi_state *s = c->mpi_state;
    if (a->kind == BT_COLL_BARRIER) {
        RUN(c, Barrier, barrier, s->comm);
        return BT_OK;
    }
    if (a->kind == BT_COLL_ALLTOALLV || a->kind == BT_COLL_ALLGATHERV)
        return mpi_vcall(c, s, a);                          /* counts differ between ranks */
    if (a->kind == BT_COLL_SEND || a->kind == BT_COLL_RECV) /* exchange.c uses p2p_start */
        return bt__err_set(&c->err, BT_ERR_INTERNAL, "point-to-point reached mpi_run");
    if (a->count == 0) /* the same count on every rank: nothing to move anywhere */
        return BT_OK;
    switch (a->kind) {
    case BT_COLL_ALLREDUCE: return mpi_allreduce(c, s, a);
    case BT_COLL_BROADCAST: return mpi_broadcast(c, s, a);
    case BT_COLL_ALLGATHER: return mpi_allgather(c, s, a);
    case BT_COLL_REDUCE_SCATTER: return mpi_reduce_scatter(c, s, a);
    case BT_COLL_REDUCE: return mpi_reduce(c, s, a);
    case BT_COLL_ALLTOALL:
    case BT_COLL_GATHER:
    case BT_COLL_SCATTER: return mpi_blocks(c, s, a);
    default:
        return bt__err_set(&c->err, BT_ERR_INTERNAL, "unknown collective kind %d", (int)a->kind);
    }
}

/* ---- point-to-point (exchange.c runs the sets; see backend.h) ---- */

static int tag_ub(struct mpi_state *s)
{
    static int ub; /* MPI_TAG_UB: the same on every communicator */
    int *v = NULL, flag = 0;
    if (!ub && LOCKED(MPI_Comm_get_attr(s->comm, MPI_TAG_UB, &v, &flag)) == MPI_SUCCESS)
        ub = flag && v ? *v : 32767; /* the least MPI promises */
    return ub ? ub : 32767;
}

static int mpi_p2p_start(struct bt_comm *c, int send, void *buf, size_t bytes, int peer, int tag,
                         void **handle)
{
    struct mpi_state *s = c->mpi_state;
    const char *call = send ? "MPI_Isend" : "MPI_Irecv";
    if (bytes > INT_MAX || tag > tag_ub(s))
        return bt__comm_fail(c, BT_ERR_INVALID_ARG,
                             "%s #%llu: %zu bytes with tag %d; hint: on the Open MPI backend a "
                             "message holds at most %d bytes and tags go up to MPI_TAG_UB (%d)",
                             c->coll_name, (unsigned long long)c->coll_seq, bytes, tag, INT_MAX,
                             tag_ub(s));
    MPI_Request *rq = malloc(sizeof(*rq));
    if (!rq)
        return bt__comm_fail(c, BT_ERR_SYSTEM, "%s: out of memory", c->coll_name);
    *rq = MPI_REQUEST_NULL;
    int rc = send ? LOCKED(MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, s->comm, rq))
                  : LOCKED(MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, s->comm, rq));
    if (rc != MPI_SUCCESS) {
        free(rq);
        return check(c, rc, call);
    }
    *handle = rq;
    return BT_OK;
}

static int mpi_p2p_test(struct bt_comm *c, void *handle, int *done)
{
    MPI_Request *rq = handle;
    MPI_Status st;
    memset(&st, 0, sizeof(st));
    st.MPI_SOURCE = -1; /* in case MPI does not fill it on an error */
    int rc = LOCKED(MPI_Test(rq, done, &st));
    if (rc == MPI_SUCCESS && !*done)
        return BT_OK;
    free(rq);
    if (rc == MPI_ERR_IN_STATUS)
        rc = st.MPI_ERROR;
    int cls = MPI_ERR_OTHER;
    if (rc != MPI_SUCCESS && MPI_Error_class(rc, &cls) == MPI_SUCCESS && cls == MPI_ERR_TRUNCATE)
        return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                             "%s #%llu: the message from rank %d is larger than this receive "
                             "(MPI_ERR_TRUNCATE); hint: a receive must hold the whole message",
                             c->coll_name, (unsigned long long)c->coll_seq, st.MPI_SOURCE);
    return check(c, rc, "MPI_Test");
}

static void mpi_p2p_cancel(struct bt_comm *c, void *handle)
{
    (void)c;
    MPI_Request *rq = handle;
    if (*rq != MPI_REQUEST_NULL) {
        (void)LOCKED(MPI_Cancel(rq));
        (void)LOCKED(MPI_Request_free(rq));
    }
    free(rq);
}

/* ---- setup and teardown ---- */

static void destroy_locked(struct bt_comm *c);

static void mpi_destroy(struct bt_comm *c)
{
    lock();
    destroy_locked(c);
    unlock();
}

static void destroy_locked(struct bt_comm *c)
{
    struct mpi_state *s = c->mpi_state;
    if (!s)
        return;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NHALF_OPS; i++)
            if (s->half_ops[d][i] != MPI_OP_NULL)
                MPI_Op_free(&s->half_ops[d][i]);
    if (s->comm != MPI_COMM_NULL)
        MPI_Comm_free(&s->comm);
    if (s->counted && --mpi_users == 0)
        watchdog_end();
    if (s->counted && mpi_users == 0 && mpi_owned) {
        /* MPI_Finalize waits for every rank; after a failure the others may never come, so
         * the process leaves without it and mpirun ends the job. */
        if (c->err.code == BT_OK)
            MPI_Finalize();
        else
            BT_WARN(INIT,
                    "rank %d: not calling MPI_Finalize after an error, so that mpirun "
                    "ends the job",
                    c->rank);
        mpi_owned = 0;
    }
    free(s);
    c->mpi_state = NULL;
}

static const struct bt__backend_ops mpi_ops = {.name = "mpi",
                                               .run = mpi_run,
                                               .destroy = mpi_destroy,
                                               .p2p_start = mpi_p2p_start,
                                               .p2p_test = mpi_p2p_test,
                                               .p2p_cancel = mpi_p2p_cancel};

/* Initialises MPI unless the program did; counts this communicator as a user. */
static int start_mpi(struct mpi_state *s, int *provided, struct bt__err *err)
{
    int inited = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "bt_init (Open MPI backend): MPI was already finalised (by an earlier "
                           "bt_finalize or the program); hint: call MPI_Init before the first "
                           "bt_init and MPI_Finalize after the last bt_finalize");
    MPI_Initialized(&inited);
    if (!inited) {
        BT_CHECK(init_check(err, MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, provided),
                            "MPI_Init_thread"));
        mpi_owned = 1;
        /* Open MPI reports an error that MPI_Test finds in a nonblocking collective's
         * schedule on MPI_COMM_WORLD's handler, not on the request's communicator: without
         * this, a truncated message would abort the job instead of becoming a baton error.
         * (A program that initialised MPI itself keeps its own handler.) */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    } else {
        MPI_Query_thread(provided);
    }
    mpi_multiple = *provided >= MPI_THREAD_MULTIPLE;
    mpi_mode_new = mpi_users == 0;
    if (mpi_mode_new) { /* one way for every communicator while MPI is in use */
        mpi_blocking = mpi_multiple && bt__param_mpi_poll() == 0;
        if (mpi_blocking)
            BT_CHECK(watchdog_start(err));
    }
    s->counted = 1;
    mpi_users++;
    return BT_OK;
}

static int make_half_ops(struct mpi_state *s, struct bt__err *err)
{
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NHALF_OPS; i++)
            BT_CHECK(init_check(err, MPI_Op_create(half_fns[d][i], 1, &s->half_ops[d][i]),
                                "MPI_Op_create"));
    return BT_OK;
}

/* local_rank/local_size from the ranks that share memory with this one; node_rank numbers
 * the nodes by their lowest global rank (each node's local rank 0 is its leader). */
static int find_nodes(struct bt_comm *c, struct mpi_state *s, struct bt__err *err)
{
    MPI_Comm node = MPI_COMM_NULL;
    int leader = c->rank, mine = 0, rc;
    int *leaders = malloc(sizeof(int) * (size_t)c->size);
    if (!leaders)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    BT_CHECK_GOTO(init_check(err,
                             MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, c->rank,
                                                 MPI_INFO_NULL, &node),
                             "MPI_Comm_split_type"),
                  rc, out);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    BT_CHECK_GOTO(init_check(err, MPI_Bcast(&leader, 1, MPI_INT, 0, node), "MPI_Bcast"), rc, out);
    mine = c->local_rank == 0;
    BT_CHECK_GOTO(init_check(err, MPI_Allgather(&mine, 1, MPI_INT, leaders, 1, MPI_INT, s->comm),
                             "MPI_Allgather"),
                  rc, out);
    c->nnodes = c->node_rank = 0;
    for (int r = 0; r < c->size; r++) {
        c->nnodes += leaders[r];
        c->node_rank += leaders[r] && r < leader;
    }
out:
    if (node != MPI_COMM_NULL)
        MPI_Comm_free(&node);
    free(leaders);
    return rc;
}

/* "Open MPI v4.1.4" out of MPI's multi-line library version. */
static void library_name(char *out, size_t cap)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS)
        snprintf(v, sizeof(v), "MPI");
    v[strcspn(v, ",\n")] = '\0';
    snprintf(out, cap, "%.100s", v);
}

/* Every rank must wait the same way (MPI never matches a blocking collective with a
 * nonblocking one): where one rank polls (BATON_MPI_POLL=1, or less than MPI_THREAD_MULTIPLE),
 * every rank does, and the ranks that would have blocked say why. */
static int agree_mode(struct bt_comm *c, struct mpi_state *s, struct bt__err *err)
{
    int mine = mpi_blocking, all = 0;
    BT_CHECK(
        init_check(err, MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, s->comm), "MPI_Allreduce"));
    if (all == mine)
        return BT_OK;
    watchdog_end();
    mpi_blocking = 0;
    BT_WARN(INIT,
            "rank %d: another rank polls its MPI calls (BATON_MPI_POLL=1 there, or MPI gave it "
            "less than MPI_THREAD_MULTIPLE), so every rank does; hint: give every rank the same "
            "BATON_MPI_POLL (mpirun -x BATON_MPI_POLL)",
            c->rank);
    return BT_OK;
}

static int mpi_attach(struct bt_comm *c, struct bt__err *err)
{
    int provided = 0;
    char lib[128];
    struct mpi_state *s = calloc(1, sizeof(*s));
    if (!s)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    s->comm = MPI_COMM_NULL;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NHALF_OPS; i++)
            s->half_ops[d][i] = MPI_OP_NULL;
    c->mpi = &mpi_ops;
    c->mpi_state = s;
    BT_CHECK(start_mpi(s, &provided, err));
    BT_CHECK(init_check(err, MPI_Comm_dup(MPI_COMM_WORLD, &s->comm), "MPI_Comm_dup"));
    BT_CHECK(init_check(err, MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN),
                        "MPI_Comm_set_errhandler"));
    MPI_Comm_rank(s->comm, &c->rank);
    MPI_Comm_size(s->comm, &c->size);
    bt__log_set_rank(c->rank);
    if (mpi_mode_new)
        BT_CHECK(agree_mode(c, s, err));
    BT_CHECK(make_half_ops(s, err));
    BT_CHECK(find_nodes(c, s, err));
    library_name(lib, sizeof(lib));
    BT_INFO(INIT,
            "rank %d: backend mpi (%s, MPI_COMM_WORLD of %d ranks on %d node%s, thread "
            "level %d%s, %s)",
            c->rank, lib, c->size, c->nnodes, c->nnodes == 1 ? "" : "s", provided,
            mpi_owned ? "" : ", MPI initialised by the program",
            mpi_blocking ? "blocking calls under a watchdog" : "nonblocking calls polled");
    return BT_OK;
}

/* ---- sub-communicators ---- */

/* The world rank of each rank of s->comm in c->world_of, and c's name from them. */
static int name_child(struct bt_comm *c, struct mpi_state *s, const struct bt_comm *p,
                      struct bt__err *err)
{
    int wr = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    if (!(c->world_of = malloc(sizeof(int) * (size_t)c->size)))
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory", p->coll_name);
    BT_CHECK(init_check(err, MPI_Allgather(&wr, 1, MPI_INT, c->world_of, 1, MPI_INT, s->comm),
                        "MPI_Allgather"));
    size_t k = (size_t)snprintf(c->name, sizeof(c->name), "mpi child of %.40s (world ranks ",
                                p->name);
    for (int i = 0; i < c->size && k + 16 < sizeof(c->name); i++)
        k += (size_t)snprintf(c->name + k, sizeof(c->name) - k, "%s%d", i ? ", " : "",
                              c->world_of[i]);
    snprintf(c->name + k, sizeof(c->name) - k, "%s)", k + 16 >= sizeof(c->name) ? " ..." : "");
    return BT_OK;
}

/* MPI's tag for baton's 64-bit group tag: folded into 0..32767 (MPI_TAG_UB is at least that). */
static int group_tag(uint64_t tag)
{
    return (int)((tag ^ (tag >> 15) ^ (tag >> 30) ^ (tag >> 45) ^ (tag >> 60)) & 0x7fff);
}

/* The derived MPI communicator in *out (MPI_COMM_NULL: not a member). */
static int derive_comm(struct mpi_state *ps, const struct bt__mpi_derive *how, MPI_Comm *out,
                       struct bt__err *err)
{
    int rc;
    MPI_Group all = MPI_GROUP_NULL, mine = MPI_GROUP_NULL;
    switch (how->how) {
    case BT_MPI_DUP: rc = init_check(err, MPI_Comm_dup(ps->comm, out), "MPI_Comm_dup"); break;
    case BT_MPI_SPLIT:
        rc = init_check(err,
                        MPI_Comm_split(ps->comm, how->color < 0 ? MPI_UNDEFINED : how->color,
                                       how->key, out),
                        "MPI_Comm_split");
        break;
    default:
        rc = init_check(err, MPI_Comm_group(ps->comm, &all), "MPI_Comm_group");
        if (rc == BT_OK)
            rc = init_check(err, MPI_Group_incl(all, how->n, how->ranks, &mine), "MPI_Group_incl");
        if (rc == BT_OK)
            rc = init_check(err, MPI_Comm_create_group(ps->comm, mine, group_tag(how->tag), out),
                            "MPI_Comm_create_group");
        if (mine != MPI_GROUP_NULL)
            MPI_Group_free(&mine);
        if (all != MPI_GROUP_NULL)
            MPI_Group_free(&all);
        break;
    }
    return rc;
}

static int derive(struct bt_comm *p, struct bt_comm *c, const struct bt__mpi_derive *how,
                  int *member, struct bt__err *err)
{
    MPI_Comm nc = MPI_COMM_NULL;
    *member = 0;
    BT_CHECK(derive_comm(p->mpi_state, how, &nc, err));
    if (nc == MPI_COMM_NULL)
        return BT_OK;
    *member = 1;
    struct mpi_state *s = calloc(1, sizeof(*s));
    if (!s) {
        MPI_Comm_free(&nc);
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory", p->coll_name);
    }
    s->comm = nc;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NHALF_OPS; i++)
            s->half_ops[d][i] = MPI_OP_NULL;
    c->mpi = &mpi_ops;
    c->mpi_state = s;
    s->counted = 1;
    mpi_users++;
    BT_CHECK(init_check(err, MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN),
                        "MPI_Comm_set_errhandler"));
    MPI_Comm_rank(s->comm, &c->rank);
    MPI_Comm_size(s->comm, &c->size);
    BT_CHECK(make_half_ops(s, err));
    BT_CHECK(find_nodes(c, s, err));
    BT_CHECK(name_child(c, s, p, err));
    BT_INFO(INIT, "rank %d: communicator %s (%s): rank %d of %d on %d node%s", p->rank, c->name,
            how->how == BT_MPI_DUP     ? "MPI_Comm_dup"
            : how->how == BT_MPI_SPLIT ? "MPI_Comm_split"
                                       : "MPI_Comm_create_group",
            c->rank, c->size, c->nnodes, c->nnodes == 1 ? "" : "s");
    return BT_OK;
}

/* The whole derivation under the lock (it is made of blocking MPI calls); with blocking calls
 * the watchdog bounds it as it does a collective. */
static int mpi_derive(struct bt_comm *p, struct bt_comm *c, const struct bt__mpi_derive *how,
                      int *member, struct bt__err *err)
{
    struct watch wt = {0};
    if (mpi_blocking)
        watch_begin(&wt, p,
                    how->how == BT_MPI_DUP     ? "MPI_Comm_dup"
                    : how->how == BT_MPI_SPLIT ? "MPI_Comm_split"
                                               : "MPI_Comm_create_group");
    lock();
    int rc = derive(p, c, how, member, err);
    unlock();
    if (mpi_blocking)
        watch_end(&wt);
    return rc;
}

const struct bt__plugin bt__plugin_self = {
    .abi = BT_PLUGIN_ABI,
    .comm_bytes = sizeof(struct bt_comm),
    .name = "mpi",
    .mpi_attach = mpi_attach,
    .mpi_derive = mpi_derive,
};
