/* comm.c: the communicator: bt_init from the launcher's env, bt__comm_create for everything
 * else (tests build one per thread), accessors, error detail, scratch space, and the waiting
 * discipline every transport follows (timeout, stall warning, the launcher's failure notice).
 *
 * bt_init reads the env contract of DESIGN.md (BATON_RANK, BATON_WORLD_SIZE, BATON_RDZV,
 * BATON_TOKEN, ...), connects to the store that node 0's launcher hosts, and sets up the
 * transports. A process with no BATON_* env is a job of one and needs no store. Store keys of
 * workers live under "w/<restart count>/" so a restarted generation never sees its
 * predecessor's keys.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectives/backend/backend.h"
#include "collectives/comm.h"
#include "collectives/flight.h"
#include "collectives/backend/cuda.h"
#include "collectives/progress.h"
#include "collectives/transport/transport.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"

BT_PARAM_DBL(timeout_s, "BATON_TIMEOUT", 300.0)
BT_PARAM_DBL(stall_warn_s, "BATON_STALL_WARN", 60.0)
BT_PARAM_STR(transport, "BATON_TRANSPORT", "auto")
BT_PARAM_STR(algo, "BATON_ALGO", "auto")
BT_PARAM_STR(backend, "BATON_BACKEND", "auto")

static __thread struct bt__err init_err;

/* ---- the live communicators: a call on a freed one is a usage error, not a crash ---- */

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct bt_comm **live;
static size_t nlive, live_cap;

static int live_add(const struct bt_comm *c)
{
    pthread_mutex_lock(&live_mu);
    if (nlive == live_cap) {
        size_t cap = live_cap ? live_cap * 2 : 16;
        const struct bt_comm **p = realloc(live, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&live_mu);
            return BT_ERR_SYSTEM;
        }
        live = p, live_cap = cap;
    }
    live[nlive++] = c;
    pthread_mutex_unlock(&live_mu);
    return BT_OK;
}

static void live_remove(const struct bt_comm *c)
{
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < nlive; i++)
        if (live[i] == c) {
            live[i] = live[--nlive];
            break;
        }
    if (nlive == 0) {
        free(live);
        live = NULL, live_cap = 0;
    }
    pthread_mutex_unlock(&live_mu);
}

static int is_live(const struct bt_comm *c)
{
    int found = 0;
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < nlive && !found; i++)
        found = live[i] == c;
    pthread_mutex_unlock(&live_mu);
    return found;
}

int bt__comm_check_live(const struct bt_comm *c, const char *call)
{
    if (is_live(c))
        return BT_OK;
    BT_WARN(COLL,
            "%s: communicator %p is not live (freed by bt_finalize or bt_comm_destroy, or "
            "never made); hint: do not use a communicator after freeing it",
            call, (const void *)c);
    return BT_ERR_INVALID_USAGE;
}

size_t bt_dtype_size(bt_dtype dtype)
{
    static const size_t sizes[BT_DTYPE_COUNT] = {4, 8, 2, 2, 4, 8, 1};
    return (unsigned)dtype < BT_DTYPE_COUNT ? sizes[dtype] : 0;
}

double bt__comm_timeout_s(void)
{
    return bt__param_timeout_s();
}

double bt__comm_stall_warn_s(void)
{
    return bt__param_stall_warn_s();
}

/* ---- env (bt_init) ---- */

/* Reads a non-negative integer env variable; a missing one takes deflt (-1: required). */
static int env_int(const char *name, int deflt, int *out)
{
    const char *s = getenv(name);
    int64_t v;
    if (!s || !*s) {
        if (deflt < 0)
            return bt__err_set(&init_err, BT_ERR_INVALID_USAGE,
                               "%s is not set; hint: start the program with `baton run`", name);
        *out = deflt;
        return BT_OK;
    }
    if (bt__parse_int(s, &v) != 0 || v < 0 || v > 1 << 24)
        return bt__err_set(&init_err, BT_ERR_INVALID_USAGE, "%s='%s' is not a non-negative integer",
                           name, s);
    *out = (int)v;
    return BT_OK;
}

static int read_env(struct bt__comm_cfg *c)
{
    BT_CHECK(env_int("BATON_WORLD_SIZE", -1, &c->size));
    BT_CHECK(env_int("BATON_RANK", -1, &c->rank));
    BT_CHECK(env_int("BATON_LOCAL_RANK", c->rank, &c->local_rank));
    BT_CHECK(env_int("BATON_LOCAL_WORLD_SIZE", c->size, &c->local_size));
    BT_CHECK(env_int("BATON_NODE_RANK", 0, &c->node_rank));
    BT_CHECK(env_int("BATON_NNODES", 1, &c->nnodes));
    BT_CHECK(env_int("BATON_RESTART_COUNT", 0, &c->generation));
    return BT_OK;
}

static int read_rdzv(struct bt__comm_cfg *c, char *host, size_t cap)
{
    const char *rdzv = getenv("BATON_RDZV");
    if (!rdzv || bt__parse_endpoint(rdzv, host, cap, &c->store_port) != 0 || c->store_port == 0)
        return bt__err_set(&init_err, BT_ERR_INVALID_USAGE,
                           "BATON_RDZV='%s' is not HOST:PORT; hint: start the program with "
                           "`baton run`",
                           rdzv ? rdzv : "");
    c->store_host = host;
    const char *token = getenv("BATON_TOKEN");
    c->token = token ? token : "";
    return BT_OK;
}

/* ---- Open MPI (bt_init under mpirun) ----
 * A process that mpirun started (OMPI_COMM_WORLD_* or PMIX_RANK in its env) and that is not a
 * `baton run` worker (no BATON_RANK/BATON_WORLD_SIZE) is a rank of MPI_COMM_WORLD: its
 * communicator needs no store and no transports, and every host collective goes to Open MPI
 * (backend/mpi.c). BATON_BACKEND=mpi insists on that; BATON_BACKEND=baton refuses it. */

static int finish_comm(struct bt_comm *c, struct bt__err *err);
static int comm_free(struct bt_comm *c);

static int started_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_RANK") || getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
}

/* Sets *use to 1 when this process's communicator is MPI_COMM_WORLD. */
static int want_mpi(int choice, int *use)
{
    int baton_env = getenv("BATON_WORLD_SIZE") || getenv("BATON_RANK");
    *use = 0;
    if (choice == BT_BACKEND_MPI && baton_env)
        return bt__err_set(&init_err, BT_ERR_INVALID_USAGE,
                           "BATON_BACKEND=mpi but this process was started by `baton run` "
                           "(BATON_RANK is set); hint: start it with mpirun, or unset "
                           "BATON_BACKEND");
    if (choice == BT_BACKEND_MPI && !started_by_mpirun())
        return bt__err_set(&init_err, BT_ERR_INVALID_USAGE,
                           "BATON_BACKEND=mpi but this process was not started by mpirun (no "
                           "OMPI_COMM_WORLD_RANK or PMIX_RANK); hint: run it as `mpirun -np N "
                           "PROGRAM`, or unset BATON_BACKEND");
    const char *np = getenv("OMPI_COMM_WORLD_SIZE");
    if (choice == BT_BACKEND_BATON && !baton_env && np && atoi(np) > 1)
        return bt__err_set(&init_err, BT_ERR_INVALID_USAGE,
                           "BATON_BACKEND=baton but mpirun started this process as one of %s "
                           "ranks, not `baton run`: each would be a job of one; hint: unset "
                           "BATON_BACKEND, or run `mpirun ... baton run -n N -- PROGRAM`",
                           np);
    *use = !baton_env && started_by_mpirun() && choice != BT_BACKEND_BATON;
    return BT_OK;
}

static int mpi_comm_create(int choice, bt_comm **out, struct bt__err *err)
{
    int rc;
    struct bt_comm *c = calloc(1, sizeof(*c));
    if (!c)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    c->size = c->local_size = c->nnodes = 1;
    c->backend_choice = choice;
    c->algo = BT_ALGO_AUTO;
    snprintf(c->prefix, sizeof(c->prefix), "w/0/");
    snprintf(c->name, sizeof(c->name), "world");
    BT_CHECK_GOTO(bt__mpi_attach(c, err), rc, fail);
    BT_CHECK_GOTO(finish_comm(c, err), rc, fail);
    *out = c;
    return BT_OK;
fail:
    /* Sticky on c too, so that c->mpi->destroy leaves MPI_Finalize out: the other ranks may
     * not fail alike, and they would wait for this one in MPI_Finalize. */
    bt__err_set(&c->err, rc, "%s", err->msg);
    live_remove(c);
    comm_free(c);
    return rc;
}

int bt__mpi_comm_derive(struct bt_comm *p, const struct bt__mpi_derive *how, bt_comm **out,
                        struct bt__err *err)
{
    int rc, member = 0;
    *out = NULL;
    struct bt_comm *c = calloc(1, sizeof(*c));
    if (!c)
        return bt__err_set(err, BT_ERR_SYSTEM, "%s: out of memory", p->coll_name);
    c->size = c->local_size = c->nnodes = 1;
    c->backend_choice = p->backend_choice;
    c->algo = BT_ALGO_AUTO;
    c->generation = p->generation;
    snprintf(c->prefix, sizeof(c->prefix), "%s", p->prefix);
    BT_CHECK_GOTO(bt__mpi_derive(p, c, how, &member, err), rc, fail);
    if (!member) {
        comm_free(c);
        return BT_OK;
    }
    BT_CHECK_GOTO(finish_comm(c, err), rc, fail);
    *out = c;
    return BT_OK;
fail:
    bt__err_set(&c->err, rc, "%s", err->msg); /* no MPI_Finalize: see mpi_comm_create */
    live_remove(c);
    comm_free(c);
    return rc;
}

int bt_init(bt_comm **out)
{
    if (!out)
        return BT_ERR_INVALID_ARG;
    *out = NULL;
    bt__err_clear(&init_err);
    struct bt__comm_cfg cfg = {.size = 1, .local_size = 1, .nnodes = 1};
    char host[256];
    int rc = BT_OK, choice = BT_BACKEND_AUTO, use_mpi = 0;
    BT_CHECK_GOTO(bt__backend_choice(&choice, &init_err), rc, fail);
    BT_CHECK_GOTO(want_mpi(choice, &use_mpi), rc, fail);
    if (use_mpi) {
        BT_CHECK_GOTO(mpi_comm_create(choice, out, &init_err), rc, fail);
        return BT_OK;
    }
    if (getenv("BATON_WORLD_SIZE") || getenv("BATON_RANK")) {
        BT_CHECK_GOTO(read_env(&cfg), rc, fail);
        if (cfg.size > 1)
            BT_CHECK_GOTO(read_rdzv(&cfg, host, sizeof(host)), rc, fail);
    }
    BT_CHECK_GOTO(bt__comm_create(&cfg, out, &init_err), rc, fail);
    return BT_OK;
fail:
    BT_WARN(INIT, "bt_init failed: %s", init_err.msg);
    return rc;
}

/* ---- construction ---- */

int bt__backend_choice(int *out, struct bt__err *err)
{
    static const char *const names[] = {"auto", "baton", "mpi", "nccl"};
    const char *s = bt__param_backend();
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return BT_OK;
        }
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "BATON_BACKEND='%s' is not one of auto|baton|mpi|nccl", s);
}

static int parse_choice(const char *what, const char *s, const char *const *names, int n, int *out,
                        struct bt__err *err)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return BT_OK;
        }
    return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s='%s' is not one of %s|%s|%s%s%s", what, s,
                       names[0], names[1], names[2], n > 3 ? "|" : "", n > 3 ? names[3] : "");
}

static int check_cfg(const struct bt__comm_cfg *g, struct bt__err *err)
{
    if (g->size < 1 || g->rank < 0 || g->rank >= g->size || g->local_size < 1 ||
        g->local_rank < 0 || g->local_rank >= g->local_size || g->nnodes < 1 || g->node_rank < 0 ||
        g->node_rank >= g->nnodes || g->local_size > g->size)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "inconsistent env: BATON_RANK=%d BATON_WORLD_SIZE=%d "
                           "BATON_LOCAL_RANK=%d BATON_LOCAL_WORLD_SIZE=%d BATON_NODE_RANK=%d "
                           "BATON_NNODES=%d",
                           g->rank, g->size, g->local_rank, g->local_size, g->node_rank, g->nnodes);
    return BT_OK;
}

static int connect_store(struct bt_comm *c, const struct bt__comm_cfg *g, struct bt__err *err,
                         double secs)
{
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(secs),
                                 .what = "rendezvous store",
                                 .hint = "is the launcher of node 0 running?"};
    struct bt__err e = {0};
    if (!g->store_host)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "rank %d: no rendezvous store given",
                           g->rank);
    int rc = bt__store_connect_worker(g->store_host, g->store_port, g->token ? g->token : "", &o,
                                      &c->store, &e);
    if (rc != BT_OK)
        return bt__err_set(err, rc, "rank %d: %s", g->rank, e.msg);
    return BT_OK;
}

struct bt__store *bt__comm_store(struct bt_comm *c, int required)
{
    if (c->store || c->size < 2 || !c->rdzv_host[0] || (c->store_tried && !required))
        return c->store;
    struct bt__comm_cfg g = {.rank = c->rank,
                             .store_host = c->rdzv_host,
                             .store_port = c->rdzv_port,
                             .token = c->token};
    struct bt__err e = {0};
    if (connect_store(c, &g, &e, required ? bt__comm_timeout_s() : 2.0) != BT_OK) {
        c->store_tried = 1;
        if (required)
            bt__comm_fail(c, e.code, "%s #%llu: connecting to the store: %s", c->coll_name,
                          (unsigned long long)c->coll_seq, e.msg);
        else
            BT_INFO(COLL, "communicator %s: no store connection: %s", c->name, e.msg);
    }
    return c->store;
}

static void hash_token(struct bt_comm *c, const char *token)
{
    uint64_t h = bt__fnv1a_str(BT_FNV1A_INIT, token);
    snprintf(c->token_hash, sizeof(c->token_hash), "%016llx", (unsigned long long)h);
}

static int make_groups(struct bt_comm *c, struct bt__err *err)
{
    c->world_ranks = malloc(sizeof(int) * (size_t)c->size);
    c->leader_ranks = malloc(sizeof(int) * (size_t)c->nnodes);
    if (!c->world_ranks || !c->leader_ranks)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    for (int i = 0; i < c->size; i++)
        c->world_ranks[i] = i;
    for (int i = 0; i < c->nnodes; i++)
        c->leader_ranks[i] = i * c->local_size;
    return BT_OK;
}

/* The last steps of every communicator, native or Open MPI: groups, devices, the request
 * queue, the log line. */
static int finish_comm(struct bt_comm *c, struct bt__err *err)
{
    BT_CHECK(make_groups(c, err));
    if (bt__queue_init(c) != BT_OK || live_add(c) != BT_OK)
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    BT_CHECK(bt__device_init(c, err));
    BT_INFO(INIT, "rank %d of %d (local %d of %d, node %d of %d) joined", c->rank, c->size,
            c->local_rank, c->local_size, c->node_rank, c->nnodes);
    return BT_OK;
}

/* Which transports this rank needs. */
static void transports(const struct bt_comm *c, int kind, int *use_shm, int *use_tcp)
{
    *use_tcp = c->size > 1 && (c->nnodes > 1 || kind == BT_TRANSPORT_TCP);
    *use_shm = c->local_size > 1 && kind != BT_TRANSPORT_TCP;
}

/* Whether setting c up takes the store: a segment whose name is not derived (shm_name), or a
 * TCP mesh whose addresses were not exchanged over the parent (tcp_preset). */
static int needs_store(const struct bt_comm *c, const struct bt__comm_cfg *g, int kind)
{
    int use_shm, use_tcp;
    transports(c, kind, &use_shm, &use_tcp);
    return (use_shm && !g->shm_name) || (use_tcp && !g->tcp_preset);
}

/* Decides which transports this rank needs and sets them up. */
static int setup_transports(struct bt_comm *c, const struct bt__comm_cfg *g, int kind,
                            struct bt__err *err)
{
    int use_shm, use_tcp;
    transports(c, kind, &use_shm, &use_tcp);
    if (kind == BT_TRANSPORT_SHM && c->nnodes > 1)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "BATON_TRANSPORT=shm but the job has %d nodes; hint: unset it",
                           c->nnodes);
    int rc = BT_OK;
    if (use_shm &&
        (rc = bt__shm_create(c, g->shm_slot_bytes, g->shm_name, g->shm_key, g->shm_reuse)) == BT_OK)
        c->intra = &bt__shm_ops;
    if (rc == BT_OK && use_tcp && (rc = bt__tcp_create(c, g->nsocks, g->tcp_preset)) == BT_OK)
        c->inter = &bt__tcp_ops;
    if (rc != BT_OK)
        return bt__err_set(err, rc, "%s", c->err.msg);
    c->hierarchical = c->intra && c->inter && c->size == c->nnodes * c->local_size &&
                      c->rank == c->node_rank * c->local_size + c->local_rank;
    BT_INFO(INIT, "rank %d: transports %s%s%s%s", c->rank, c->intra ? "shm" : "",
            c->intra && c->inter ? "+" : "", c->inter ? "tcp" : "",
            c->hierarchical ? " (hierarchical allreduce)" : "");
    return BT_OK;
}

/* What a child made from c will need, and a sub-communicator's own prefix and names. */
static int inherit(struct bt_comm *c, const struct bt__comm_cfg *g, const char *tname,
                   struct bt__err *err)
{
    c->token = strdup(g->token ? g->token : "");
    c->transport_req = tname;
    c->shm_slot_req = g->shm_slot_bytes;
    c->nsocks_req = g->nsocks;
    snprintf(c->name, sizeof(c->name), "%s", g->name ? g->name : "world");
    if (g->prefix)
        snprintf(c->prefix, sizeof(c->prefix), "%s", g->prefix);
    if (g->world_of && (c->world_of = malloc(sizeof(int) * (size_t)c->size)))
        memcpy(c->world_of, g->world_of, sizeof(int) * (size_t)c->size);
    if (!c->token || (g->world_of && !c->world_of) ||
        !(c->local_of = malloc(sizeof(int) * (size_t)c->size)))
        return bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
    for (int r = 0, k = 0; r < c->size; r++) {
        int same = g->node_of ? g->node_of[r] == g->node_of[c->rank]
                              : r - (c->rank - c->local_rank) >= 0 &&
                                    r - (c->rank - c->local_rank) < c->local_size;
        c->local_of[r] = same ? k++ : -1;
    }
    return BT_OK;
}

/* g->shm_reuse becomes the new communicator's; when creation fails before it was taken, it
 * goes back to the pool of kept segments (no call ran on it, so it is as it was). */
int bt__comm_create(const struct bt__comm_cfg *g, bt_comm **out, struct bt__err *err)
{
    static const char *const tnames[] = {"auto", "shm", "tcp"};
    static const char *const anames[] = {
        "auto", "ring", "rd", "rabenseifner", "thresholds", "tree", "scatter_allgather"};
    *out = NULL;
    int kind = 0, rc;
    struct bt_comm *c = NULL;
    BT_CHECK_GOTO(check_cfg(g, err), rc, fail);
    BT_CHECK_GOTO(parse_choice("BATON_TRANSPORT",
                               g->transport ? g->transport : bt__param_transport(), tnames, 3,
                               &kind, err),
                  rc, fail);
    if (!(c = calloc(1, sizeof(*c)))) {
        rc = bt__err_set(err, BT_ERR_SYSTEM, "bt_init: out of memory");
        goto fail;
    }
    c->rank = g->rank, c->size = g->size, c->local_rank = g->local_rank;
    c->local_size = g->local_size, c->node_rank = g->node_rank, c->nnodes = g->nnodes;
    c->generation = g->generation;
    c->id = g->id;
    c->flight_token = UINT64_MAX; /* no call running */
    c->job_node = g->prefix ? g->job_node : g->node_rank;
    c->ring_seg_bytes = g->ring_seg_bytes ? g->ring_seg_bytes : BT_RING_SEG_BYTES;
    BT_CHECK_GOTO(bt__backend_choice(&c->backend_choice, err), rc, fail);
    snprintf(c->prefix, sizeof(c->prefix), "w/%d/", c->generation);
    BT_CHECK_GOTO(inherit(c, g, tnames[kind], err), rc, fail);
    BT_CHECK_GOTO(parse_choice("BATON_ALGO", g->algo ? g->algo : bt__param_algo(), anames, 7,
                               &c->algo, err),
                  rc, fail);
    c->algo_req = anames[c->algo];
    BT_CHECK_GOTO(bt__choose_init(err), rc, fail);
    if (!g->prefix)
        bt__log_set_rank(c->rank);
    if (c->size > 1) { /* a split's child connects later, if at all (bt__comm_store) */
        if (needs_store(c, g, kind))
            BT_CHECK_GOTO(connect_store(c, g, err, bt__comm_timeout_s()), rc, fail);
        snprintf(c->rdzv_host, sizeof(c->rdzv_host), "%s", g->store_host ? g->store_host : "");
        c->rdzv_port = g->store_port;
        hash_token(c, g->token ? g->token : "");
    }
    BT_CHECK_GOTO(setup_transports(c, g, kind, err), rc, fail);
    BT_CHECK_GOTO(finish_comm(c, err), rc, fail);
    *out = c;
    return BT_OK;
fail:;
    int taken = c && g->shm_reuse && c->shm == g->shm_reuse;
    if (c) {
        live_remove(c);
        comm_free(c);
    }
    if (g->shm_reuse && !taken)
        bt__shm_pool_give(g->shm_reuse);
    return rc;
}

/* Frees c, live or half-built. */
static int comm_free(struct bt_comm *c)
{
    bt__queue_destroy(c); /* completes what is outstanding; c->err is ours again */
    /* Only now, with the progress thread joined: a request still queued at bt_finalize records
     * its call (reading c->flight_ring) and would claim a ring again after an earlier close. */
    bt__flight_comm_close(c);
    int rc = c->err.code;
    bt__device_destroy(c);
    if (c->mpi)
        c->mpi->destroy(c);
    if (c->tcp)
        bt__tcp_ops.destroy(c);
    if (c->shm)
        bt__shm_ops.destroy(c);
    bt__store_close(c->store);
    for (int i = 0; i < 3; i++)
        free(c->scratch[i]);
    free(c->world_ranks);
    free(c->leader_ranks);
    free(c->world_of);
    free(c->local_of);
    free(c->token);
    free(c);
    return rc;
}

int bt_finalize(bt_comm *c)
{
    if (!c)
        return BT_OK;
    BT_CHECK(bt__comm_check_live(c, "bt_finalize"));
    bt__group_forget(c);
    live_remove(c);
    int rc = comm_free(c);
    pthread_mutex_lock(&live_mu);
    int last = nlive == 0;
    pthread_mutex_unlock(&live_mu);
    if (last) /* no communicator left: the segments kept for reuse are unmapped */
        bt__shm_pool_clear();
    return rc;
}

void bt__thread_error(int code, const char *msg)
{
    bt__err_reset(&init_err, code, "%s", msg);
}

const char *bt_last_error(const bt_comm *c)
{
    if (!c)
        return init_err.msg;
    if (bt__comm_check_live(c, "bt_last_error") != BT_OK)
        return "bt_last_error: this communicator was freed (or never made)";
    struct bt__queue *q = c->q;
    pthread_mutex_lock(&q->mu);
    if (!q->busy && q->pub.code == BT_OK && c->err.code != BT_OK) /* set outside a request */
        bt__err_set(&q->pub, c->err.code, "%s", c->err.msg);
    pthread_mutex_unlock(&q->mu);
    return q->pub.msg;
}

#define BT_ACCESSOR(fn, field)                                                                     \
    int fn(const bt_comm *c, int *v)                                                               \
    {                                                                                              \
        if (!c || !v)                                                                              \
            return BT_ERR_INVALID_ARG;                                                             \
        BT_CHECK(bt__comm_check_live(c, #fn));                                                     \
        *v = c->field;                                                                             \
        return BT_OK;                                                                              \
    }
BT_ACCESSOR(bt_comm_rank, rank)
BT_ACCESSOR(bt_comm_size, size)
BT_ACCESSOR(bt_comm_local_rank, local_rank)
BT_ACCESSOR(bt_comm_local_size, local_size)
BT_ACCESSOR(bt_comm_node_rank, node_rank)
BT_ACCESSOR(bt_comm_nnodes, nnodes)

/* ---- failure, scratch ---- */

/* The first rank to fail a collective records why under "<prefix>coll/failure"; a rank that
 * fails later (often because the first one closed its sockets) adds that first cause, so every
 * message names the rank that really died. */
static void first_failure(struct bt_comm *c, char *msg, size_t cap)
{
    char key[64], mine[BT__ERR_MSG_MAX + 32];
    void *actual = NULL;
    size_t alen = 0;
    if (c->err.code != BT_OK || !bt__comm_store(c, 0))
        return;
    snprintf(key, sizeof(key), "%scoll/failure", c->prefix);
    snprintf(mine, sizeof(mine), "rank %d: %.480s", c->rank, msg);
    if (bt__store_compare_set(c->store, key, "", 0, mine, strlen(mine), &actual, &alen) == BT_OK &&
        actual && strcmp(actual, mine) != 0) {
        size_t n = strlen(msg);
        snprintf(msg + n, cap - n, " (first failure in the job: %s)", (char *)actual);
    }
    free(actual);
}

int bt__comm_fail(struct bt_comm *c, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    first_failure(c, msg, sizeof(msg));
    if (c->err.code == BT_OK) {
        BT_WARN(COLL, "rank %d: %s", c->rank, msg);
        bt__shm_abort(c, msg);
    }
    return bt__err_set(&c->err, code, "%s", msg);
}

void *bt__scratch(struct bt_comm *c, int slot, size_t bytes)
{
    if (bytes <= c->scratch_cap[slot])
        return c->scratch[slot];
    size_t cap = bytes < 65536 ? 65536 : bytes + bytes / 4;
    void *p = realloc(c->scratch[slot], cap);
    if (!p) {
        bt__comm_fail(c, BT_ERR_SYSTEM, "%s #%llu: out of memory for %zu bytes of scratch",
                      c->coll_name, (unsigned long long)c->coll_seq, cap);
        return NULL;
    }
    c->scratch[slot] = p;
    c->scratch_cap[slot] = cap;
    return p;
}

/* ---- waiting ---- */

void bt__wait_start(struct bt_comm *c, struct bt__wait *w)
{
    (void)c;
    w->start_ns = bt__now_ns();
    w->deadline_ns = bt__deadline_in(bt__comm_timeout_s());
    w->next_tick_ns = w->start_ns + 100000000LL;
    w->next_poll_ns = w->start_ns + 1000000000LL;
    w->warned = 0;
}

/* The launchers post the job's outcome as "l/<gen>/outcome" = "K STATUS\tLINE" (launcher/run.h):
 * K is S when every worker succeeded, else the job failed and LINE is its root cause. */
static int launcher_failure(struct bt_comm *c)
{
    char key[64];
    void *v = NULL;
    size_t len;
    if (!bt__comm_store(c, 0))
        return BT_OK;
    snprintf(key, sizeof(key), "l/%d/outcome", c->generation);
    if (bt__store_get(c->store, key, &v, &len, 0.001) != BT_OK)
        return BT_OK;
    const char *text = v, *line = strchr(text, '\t');
    if (text[0] == 'S') {
        free(v);
        return BT_OK;
    }
    bt__comm_fail(c, BT_ERR_REMOTE, "%s #%llu: the job failed: %s", c->coll_name,
                  (unsigned long long)c->coll_seq, line ? line + 1 : text);
    free(v);
    return BT_ERR_REMOTE;
}

/* Records, first one wins, what this rank timed out in and whom it waited for, as
 * "w/<gen>/stall" = "RANK\tNODE\tCOLL #SEQ\tSECONDS\tNAMES" (RANK and NODE: the world's
 * and the launcher's; COLL #SEQ names a sub-communicator: "allreduce #4 on communicator c...
 * (world ranks 1, 3, 5)"; NAMES: the transport's list, entries "R (detail)"). The launchers read it
 * to name the stalled rank as the hang's cause and the ranks that fail afterwards as its
 * consequences (launcher/run_stall.c). */
static void record_stall(struct bt_comm *c, double waited, const char *names)
{
    char key[64], val[512];
    if (c->err.code != BT_OK || !bt__comm_store(c, 0))
        return;
    snprintf(key, sizeof(key), "w/%d/stall", c->generation);
    snprintf(val, sizeof(val), "%d\t%d\t%s #%llu%s%s\t%.0f\t%s",
             c->world_of ? c->world_of[c->rank] : c->rank, c->job_node, c->coll_name,
             (unsigned long long)c->coll_seq, c->world_of ? " on communicator " : "",
             c->world_of ? c->name : "", waited, names);
    if (bt__store_compare_set(c->store, key, "", 0, val, strlen(val), NULL, NULL) != BT_OK)
        BT_INFO(COLL, "recording the stall: %s", bt__store_error(c->store));
}

int bt__wait_tick(struct bt_comm *c, struct bt__wait *w,
                  void (*who)(void *arg, char *out, size_t cap), void *arg)
{
    int64_t now = bt__now_ns();
    if (now < w->next_tick_ns)
        return BT_OK;
    w->next_tick_ns = now + 100000000LL;
    double waited = (double)(now - w->start_ns) / 1e9;
    char names[256] = "?";
    if (now >= w->next_poll_ns) {
        w->next_poll_ns = now + 1000000000LL;
        BT_CHECK(launcher_failure(c));
    }
    if (now >= w->deadline_ns) {
        who(arg, names, sizeof(names));
        record_stall(c, waited, names);
        return bt__comm_fail(c, BT_ERR_TIMEOUT,
                             "%s #%llu on communicator %s timed out after %.0f s waiting for "
                             "rank(s) %s; hint: is that rank stopped or stuck? BATON_TIMEOUT "
                             "sets the limit",
                             c->coll_name, (unsigned long long)c->coll_seq, c->name, waited, names);
    }
    if (!w->warned && waited >= bt__comm_stall_warn_s()) {
        who(arg, names, sizeof(names));
        BT_WARN(COLL, "%s #%llu on communicator %s: still waiting after %.0f s for rank(s) %s",
                c->coll_name, (unsigned long long)c->coll_seq, c->name, waited, names);
        w->warned = 1;
        bt__flight_comm_stall(); /* the launcher dumps the recorders now (run_flight.c) */
    }
    return BT_OK;
}
