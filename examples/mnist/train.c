/* train.c: the training loop of mnist_cnn: threads over the batch, the gradient exchange
 * (behind struct exchange_ops: allreduce, parameter server, or none for a job of one),
 * sharded evaluation, checkpoints, and what rank 0 prints.
 * See main.c for the walk through what a baton program does.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "baton.h"
#include "baton_ps.h"
#include "mnist.h"
#include "train.h"

/* The exchanged gradient is fixed point: each piece of MN_PIECE images (or fewer) has its
 * float gradient rounded to int64 units of 2^-MN_FIXED_BITS and added in integers. Integer
 * sums do not depend on their order, so however the global batch is cut into ranks and
 * pieces, every rank gets bit for bit the same gradient: 1, 2 and 4 ranks take identical
 * steps (float sums in a ring would differ in the last bit, and Adam, which divides by
 * sqrt(v), grows such bits into visible differences within tens of steps). The resolution,
 * 1.5e-11, is far below what float32 gradients of this model carry; the range, +-1.3e8, far
 * above them. */
#define MN_FIXED_BITS 36
#define MN_PIECE 32
/* The exchange buffer's tail: summed loss, correct count, and two requests added up over the
 * ranks (allreduce mode), so that every rank acts on them after the same step: stop (a rank
 * got SIGTERM) and save (the launcher's BATON_ELASTIC_FILE says the generation is closing). */
enum { MN_NUM_STATS = 4, MN_STAT_STOP = 2, MN_STAT_SAVE = 3 };

struct trainer;

/* How the ranks' gradients become one update; one entry per --mode. */
struct exchange_ops {
    const char *name;
    /* Makes every rank's parameters (and optimizer state) rank 0's. */
    int (*sync_state)(struct trainer *tr);
    /* Turns this rank's fixed-point gradient sum (tr->xgrads, MN_NUM_PARAMS + MN_NUM_STATS)
     * into the job's mean gradient (tr->grads) and updates tr->params; afterwards the tail
     * of xgrads holds the job's loss sum and correct count. */
    int (*apply)(struct trainer *tr);
    /* After an epoch's steps (NULL: nothing to do): makes stats (this rank's summed per-step
     * loss and accuracy) the job's, and every rank's parameters the same. */
    int (*epoch_end)(struct trainer *tr, double stats[2]);
};

#define MN_X_ONE(name, count) +1
enum { MN_NUM_TENSORS = 0 MN_PARAM_TABLE(MN_X_ONE) };
#undef MN_X_ONE

enum job { JOB_TRAIN, JOB_EVAL, JOB_QUIT };

/* Overlap buckets: the 5 layers' (kernel, bias) and the statistics. */
#define MN_BUCKETS 6

struct worker {
    struct trainer *tr;
    int id;
    pthread_t th;
    struct mn_acts acts;
    float *fgrads;      /* (MN_NUM_PARAMS) one piece's float gradient */
    struct mn_params g; /* views of fgrads */
    int64_t *acc;       /* (MN_NUM_PARAMS + MN_NUM_STATS) fixed-point sum of its pieces */
    uint8_t *labels;    /* (acts.max_batch) */
    int begin, count;   /* JOB_TRAIN: slice of the rank's batch; JOB_EVAL: of the eval range */
    double loss;        /* summed over its images */
    long correct;
};

struct trainer {
    const struct mn_opts *o;
    const struct mn_data *d;
    bt_comm *comm;
    const struct exchange_ops *xchg;
    int rank, world, batch, global_batch;
    float *params;     /* (MN_NUM_PARAMS) */
    float *grads;      /* (MN_NUM_PARAMS) the job's mean gradient this step */
    int64_t *xgrads;   /* (MN_NUM_PARAMS + MN_NUM_STATS) what the ranks exchange */
    float *adam_state; /* (2, MN_NUM_PARAMS): m then v */
    float *m, *v;
    struct mn_params p;
    struct mn_adam adam;
    /* where training stands; what a checkpoint records */
    uint32_t epoch, epoch_pos; /* epoch_pos: images of the epoch's order trained on */
    uint64_t global_step;
    uint64_t rng; /* the shuffle generator at the start of `epoch` */
    float last_loss;
    uint32_t *order;    /* (n_train) this epoch's order of training images */
    uint32_t *step_idx; /* (batch) this rank's images this step */
    /* the eval job: images idx[begin..end) (idx NULL: begin..end themselves) of x, y */
    const uint8_t *ex, *ey;
    const uint32_t *eidx;
    /* threads */
    int nthreads;
    struct worker *workers;
    pthread_barrier_t go, done;
    enum job job;
    double comm_s; /* seconds inside collectives (or push + pull) during training steps; with
                      overlap, the seconds waited for the requests after backward */
    int overlap;   /* start each layer's allreduce as backward produces it (one thread) */
    bt_request *req[MN_BUCKETS];
    int nreq, req_rc; /* requests of this step; the first issue error */
    /* elastic: BATON_ELASTIC_FILE (NULL: none) and the mtime last seen */
    const char *elastic_file;
    struct timespec elastic_mtime;
    int stopping; /* the run ends on a stop request: exit 143, leave (not close) the servers */
    /* --mode ps: one key per tensor, views of params and grads */
    bt_ps *ps;
    bt_ps_opt ps_opt;
    const char *ps_names[MN_NUM_TENSORS];
    size_t ps_counts[MN_NUM_TENSORS];
    float *ps_vals[MN_NUM_TENSORS], *ps_grads[MN_NUM_TENSORS];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int coll_failed(struct trainer *tr, const char *what, int rc)
{
    fprintf(stderr, "mnist_cnn: rank %d: %s: %s: %s\n", tr->rank, what, bt_strerror(rc),
            bt_last_error(tr->comm));
    return 1;
}

/* ---- fixed point ---- */

static void add_fixed(int64_t *restrict acc, const float *restrict g, size_t n)
{
    const double scale = (double)(1ull << MN_FIXED_BITS), lim = 9.0e18;
    for (size_t i = 0; i < n; i++) {
        double x = (double)g[i] * scale;
        x = x > lim ? lim : x < -lim ? -lim : x; /* NaN stays NaN: llrint gives INT64_MIN */
        acc[i] += llrint(x);
    }
}

static void from_fixed(const int64_t *restrict acc, float *restrict g, size_t n)
{
    const double inv = 1.0 / (double)(1ull << MN_FIXED_BITS);
    for (size_t i = 0; i < n; i++)
        g[i] = (float)((double)acc[i] * inv);
}

/* ---- the allreduce exchange ---- */

static int allreduce_sync_state(struct trainer *tr)
{
    int rc = bt_broadcast(tr->comm, tr->params, MN_NUM_PARAMS, BT_FLOAT32, 0);
    if (rc == BT_OK)
        rc = bt_broadcast(tr->comm, tr->adam_state, 2 * (size_t)MN_NUM_PARAMS, BT_FLOAT32, 0);
    return rc == BT_OK ? 0 : coll_failed(tr, "bt_broadcast of the parameters", rc);
}

/* Without overlap: one allreduce for the whole buffer after backward. With overlap (the
 * default with one thread per rank), train_slice started one nonblocking allreduce per layer
 * as backward produced it, like DDP's buckets, and one for the statistics; here we wait for
 * them before the optimizer step. The sums are int64 (fixed point), so bucketing changes no
 * bit of the result. */
static int allreduce_apply(struct trainer *tr)
{
    double t0 = now_s();
    int rc;
    if (tr->overlap) {
        rc = tr->req_rc != BT_OK ? tr->req_rc : bt_waitall(tr->nreq, tr->req);
        for (int i = 0; i < tr->nreq; i++)
            bt_request_free(tr->req[i]);
        tr->nreq = 0, tr->req_rc = BT_OK;
    } else {
        rc = bt_allreduce(tr->comm, tr->xgrads, tr->xgrads, MN_NUM_PARAMS + MN_NUM_STATS, BT_INT64,
                          BT_SUM);
    }
    tr->comm_s += now_s() - t0;
    if (rc != BT_OK)
        return coll_failed(tr, "bt_allreduce of the gradients", rc);
    from_fixed(tr->xgrads, tr->grads, MN_NUM_PARAMS);
    mn_adam_step(&tr->adam, tr->params, tr->grads, tr->m, tr->v, MN_NUM_PARAMS);
    return 0;
}

/* A job of one: nothing to exchange. */
static int local_sync_state(struct trainer *tr)
{
    (void)tr;
    return 0;
}
static int local_apply(struct trainer *tr)
{
    from_fixed(tr->xgrads, tr->grads, MN_NUM_PARAMS);
    mn_adam_step(&tr->adam, tr->params, tr->grads, tr->m, tr->v, MN_NUM_PARAMS);
    return 0;
}

static const struct exchange_ops xchg_allreduce = {"allreduce", allreduce_sync_state,
                                                   allreduce_apply, NULL};
static const struct exchange_ops xchg_local = {"local", local_sync_state, local_apply, NULL};

/* ---- the parameter-server exchange ----
 * Every tensor of MN_PARAM_TABLE is a key (so a server count above one spreads the layers
 * over the servers). The servers hold the parameters and Adam's state and apply Adam; a rank
 * holds no optimizer state. Every step a rank pushes the mean gradient over its own images
 * and pulls the parameters back: in sync mode the servers average the ranks' gradients into
 * one update (the same step allreduce mode takes, up to float rounding) and the pull waits
 * for it; async applies each push as it arrives, bounded:S lets a rank run S pushes ahead. */

static int ps_failed(struct trainer *tr, const char *what, int rc)
{
    fprintf(stderr, "mnist_cnn: rank %d: %s: %s: %s\n", tr->rank, what, bt_strerror(rc),
            bt_ps_last_error(tr->ps));
    return 1;
}

/* Opens the client from the env `baton run --ps N` sets; 0 or an exit status (reported). */
static int ps_open(struct trainer *tr)
{
#define MN_X_KEY(name, count) {#name, count},
    static const struct {
        const char *name;
        size_t count;
    } keys[] = {MN_PARAM_TABLE(MN_X_KEY)};
#undef MN_X_KEY
    size_t off = 0;
    for (int k = 0; k < MN_NUM_TENSORS; k++) {
        tr->ps_names[k] = keys[k].name;
        tr->ps_counts[k] = keys[k].count;
        tr->ps_vals[k] = tr->params + off;
        tr->ps_grads[k] = tr->grads + off;
        off += keys[k].count;
    }
    bt_ps_opt_default(&tr->ps_opt);
    tr->ps_opt.kind = BT_PS_ADAM;
    tr->ps_opt.lr = (float)tr->o->lr;
    tr->ps_opt.beta1 = tr->adam.beta1;
    tr->ps_opt.beta2 = tr->adam.beta2;
    tr->ps_opt.eps = tr->adam.eps;
    const char *cons = tr->o->ps_consistency ? tr->o->ps_consistency : "sync";
    if (bt_ps_consistency_parse(cons, &tr->ps_opt) != BT_OK)
        return 2; /* main checked it */
    int rc = bt_ps_open(&tr->ps);
    if (rc != BT_OK) {
        fprintf(stderr, "mnist_cnn: rank %d: bt_ps_open: %s: %s\n", tr->rank, bt_strerror(rc),
                bt_ps_last_error(NULL));
        return rc == BT_ERR_INVALID_USAGE ? 2 : 1; /* the env is wrong: a usage error */
    }
    return 0;
}

/* Rank 0's parameters (fresh, or its checkpoint) declare the keys; the first declaration
 * wins, so servers that already hold the model (reloaded from their own checkpoint, or
 * serving a job that restarted) keep theirs, and the pull gives every rank the servers'. */
static int ps_sync_state(struct trainer *tr)
{
    int rc = tr->world > 1 ? bt_broadcast(tr->comm, tr->params, MN_NUM_PARAMS, BT_FLOAT32, 0)
                           : BT_OK;
    if (rc != BT_OK)
        return coll_failed(tr, "bt_broadcast of the parameters", rc);
    rc = bt_ps_init_many(tr->ps, MN_NUM_TENSORS, tr->ps_names, (const float *const *)tr->ps_vals,
                         tr->ps_counts, &tr->ps_opt);
    if (rc != BT_OK)
        return ps_failed(tr, "bt_ps_init_many", rc);
    memcpy(tr->grads, tr->params, sizeof(float) * MN_NUM_PARAMS);
    rc = bt_ps_pull_many(tr->ps, MN_NUM_TENSORS, tr->ps_names, tr->ps_vals, tr->ps_counts);
    if (rc != BT_OK)
        return ps_failed(tr, "bt_ps_pull_many", rc);
    if (tr->rank == 0 && memcmp(tr->grads, tr->params, sizeof(float) * MN_NUM_PARAMS) != 0)
        printf("mnist_cnn: the ps servers already hold the model (their checkpoint, or an "
               "earlier run); training goes on from their parameters and Adam state\n");
    return 0;
}

static int ps_apply(struct trainer *tr)
{
    /* xgrads is this rank's share of the global mean; times world, the mean of its images */
    from_fixed(tr->xgrads, tr->grads, MN_NUM_PARAMS);
    const float scale = (float)tr->world;
    for (size_t i = 0; i < MN_NUM_PARAMS; i++)
        tr->grads[i] *= scale;
    double t0 = now_s();
    int rc = bt_ps_push_many(tr->ps, MN_NUM_TENSORS, tr->ps_names,
                             (const float *const *)tr->ps_grads, tr->ps_counts);
    if (rc != BT_OK)
        return ps_failed(tr, "bt_ps_push_many of the gradients", rc);
    rc = bt_ps_pull_many(tr->ps, MN_NUM_TENSORS, tr->ps_names, tr->ps_vals, tr->ps_counts);
    tr->comm_s += now_s() - t0;
    if (rc != BT_OK)
        return ps_failed(tr, "bt_ps_pull_many of the parameters", rc);
    /* the loss and accuracy of this rank's images stand for the job's until epoch_end */
    tr->xgrads[MN_NUM_PARAMS] *= tr->world;
    tr->xgrads[MN_NUM_PARAMS + 1] *= tr->world;
    return 0;
}

/* Once every rank is inside the allreduce, every rank has pushed its last gradient of the
 * epoch, and no rank pushes again before every rank is inside the evaluation's allreduce:
 * the pull in between gives all ranks the same parameters (async and bounded too). */
static int ps_epoch_end(struct trainer *tr, double stats[2])
{
    if (tr->world == 1)
        return 0;
    int rc = bt_allreduce(tr->comm, stats, stats, 2, BT_FLOAT64, BT_AVG);
    if (rc != BT_OK)
        return coll_failed(tr, "bt_allreduce of the epoch's loss", rc);
    rc = bt_ps_pull_many(tr->ps, MN_NUM_TENSORS, tr->ps_names, tr->ps_vals, tr->ps_counts);
    return rc == BT_OK ? 0 : ps_failed(tr, "bt_ps_pull_many of the parameters", rc);
}

static const struct exchange_ops xchg_ps = {"ps", ps_sync_state, ps_apply, ps_epoch_end};

/* ---- work for the threads ---- */

/* x (n, 28, 28, 1) = images idx[first + i] (or first + i) scaled to [0, 1]; labels likewise. */
static void gather(struct worker *w, const uint8_t *x, const uint8_t *y, const uint32_t *idx,
                   uint32_t first, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t k = idx ? idx[first + i] : first + (uint32_t)i;
        const uint8_t *src = x + (size_t)k * 784;
        float *restrict dst = w->acts.x + (size_t)i * 784;
        for (int j = 0; j < 784; j++)
            dst[j] = (float)src[j] / 255.0f;
        w->labels[i] = y[k];
    }
}

/* Starts the allreduce of acc[off, off + n) (overlap: worker 0's acc is tr->xgrads). */
static void start_bucket(struct trainer *tr, size_t off, size_t n)
{
    if (tr->req_rc != BT_OK || tr->nreq == MN_BUCKETS)
        return;
    tr->req_rc = bt_iallreduce(tr->comm, tr->xgrads + off, tr->xgrads + off, n, BT_INT64, BT_SUM,
                               &tr->req[tr->nreq]);
    if (tr->req_rc == BT_OK)
        tr->nreq++;
}

/* mn_backward_ready's callback in the last piece: the layer's gradient is final. */
static void layer_ready(void *arg, const float *g, size_t n)
{
    struct worker *w = arg;
    size_t off = (size_t)(g - w->fgrads);
    add_fixed(w->acc + off, g, n);
    start_bucket(w->tr, off, n);
}

/* The worker's slice of the rank's batch, a piece at a time: each piece's gradient of the
 * global mean loss, rounded and summed in w->acc (see MN_FIXED_BITS). With overlap, the last
 * piece adds and starts each layer's bucket as soon as backward has produced it. */
static void train_slice(struct worker *w)
{
    struct trainer *tr = w->tr;
    double loss = 0;
    long correct = 0;
    memset(w->acc, 0, sizeof(int64_t) * (MN_NUM_PARAMS + MN_NUM_STATS));
    for (int i = w->begin; i < w->begin + w->count; i += w->acts.max_batch) {
        int n = w->begin + w->count - i < w->acts.max_batch ? w->begin + w->count - i
                                                            : w->acts.max_batch,
            ok;
        gather(w, tr->d->train_x, tr->d->train_y, tr->step_idx, (uint32_t)i, n);
        mn_forward(&tr->p, &w->acts, n);
        loss += mn_softmax_xent(w->acts.z5, w->labels, n, 10, 1.0f / (float)tr->global_batch,
                                w->acts.dz5, &ok);
        correct += ok;
        if (tr->overlap && i + n == w->begin + w->count) {
            mn_backward_ready(&tr->p, &w->g, &w->acts, n, layer_ready, w);
            continue;
        }
        mn_backward(&tr->p, &w->g, &w->acts, n);
        add_fixed(w->acc, w->fgrads, MN_NUM_PARAMS);
    }
    float fl = (float)loss;
    add_fixed(w->acc + MN_NUM_PARAMS, &fl, 1);
    w->acc[MN_NUM_PARAMS + 1] = correct;
}

static void eval_slice(struct worker *w)
{
    struct trainer *tr = w->tr;
    int chunk = w->acts.max_batch;
    w->loss = 0;
    w->correct = 0;
    for (int i = w->begin; i < w->begin + w->count; i += chunk) {
        int n = w->begin + w->count - i < chunk ? w->begin + w->count - i : chunk;
        int correct;
        gather(w, tr->ex, tr->ey, tr->eidx, (uint32_t)i, n);
        mn_forward(&tr->p, &w->acts, n);
        w->loss += mn_softmax_xent(w->acts.z5, w->labels, n, 10, 1.0f, NULL, &correct);
        w->correct += correct;
    }
}

static void run_job(struct worker *w)
{
    if (w->tr->job == JOB_TRAIN)
        train_slice(w);
    else if (w->tr->job == JOB_EVAL)
        eval_slice(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        pthread_barrier_wait(&w->tr->go);
        if (w->tr->job == JOB_QUIT)
            return NULL;
        run_job(w);
        pthread_barrier_wait(&w->tr->done);
    }
}

/* Runs tr->job on every worker (worker 0 is this thread) and waits for all of them. */
static void run_all(struct trainer *tr)
{
    if (tr->nthreads > 1)
        pthread_barrier_wait(&tr->go);
    run_job(&tr->workers[0]);
    if (tr->nthreads > 1)
        pthread_barrier_wait(&tr->done);
}

/* Splits n items over the workers as evenly as whole items allow. */
static void split(struct trainer *tr, int n)
{
    for (int t = 0; t < tr->nthreads; t++) {
        tr->workers[t].begin = (int)((long)n * t / tr->nthreads);
        tr->workers[t].count = (int)((long)n * (t + 1) / tr->nthreads) - tr->workers[t].begin;
    }
}

/* ---- one training step and one evaluation ---- */

/* ---- stop and save requests ---- */

static volatile sig_atomic_t got_sigterm;

static void on_sigterm(int sig)
{
    (void)sig;
    got_sigterm = 1;
}

/* 1 when BATON_ELASTIC_FILE changed since the last look and now says state=closing: the
 * launcher ends this generation soon (docs/elastic.md), so save a checkpoint. */
static int elastic_closing(struct trainer *tr)
{
    struct stat st;
    char line[128];
    int closing = 0;
    if (!tr->elastic_file || stat(tr->elastic_file, &st) != 0 ||
        (st.st_mtim.tv_sec == tr->elastic_mtime.tv_sec &&
         st.st_mtim.tv_nsec == tr->elastic_mtime.tv_nsec))
        return 0;
    tr->elastic_mtime = st.st_mtim;
    FILE *f = fopen(tr->elastic_file, "r");
    while (f && fgets(line, sizeof line, f))
        closing |= !strncmp(line, "state=closing", 13);
    if (f)
        fclose(f);
    return closing;
}

/* The step at pos of the current epoch: this rank's slice of the global batch that starts at
 * image pos of the epoch's order, gradient, exchange. */
static int train_step(struct trainer *tr, uint32_t pos)
{
    const uint32_t *g = tr->order + pos + (size_t)tr->rank * tr->batch;
    memcpy(tr->step_idx, g, sizeof(uint32_t) * tr->batch);
    tr->job = JOB_TRAIN;
    split(tr, tr->batch);
    run_all(tr);
    for (int t = 1; t < tr->nthreads; t++) {
        const int64_t *restrict src = tr->workers[t].acc;
        int64_t *restrict dst = tr->xgrads;
        for (size_t i = 0; i < MN_NUM_PARAMS + MN_NUM_STATS; i++)
            dst[i] += src[i];
    }
    tr->xgrads[MN_NUM_PARAMS + MN_STAT_STOP] = got_sigterm != 0;
    tr->xgrads[MN_NUM_PARAMS + MN_STAT_SAVE] = elastic_closing(tr);
    if (tr->overlap) /* the layers' buckets are on their way: now the statistics */
        start_bucket(tr, MN_NUM_PARAMS, MN_NUM_STATS);
    return tr->xchg->apply(tr);
}

/* Accuracy and mean loss of n images of a set; this rank does its 1/world of them. */
static void eval_local(struct trainer *tr, const uint8_t *x, const uint8_t *y, const uint32_t *idx,
                       uint32_t n, float out[2])
{
    uint32_t lo = (uint32_t)((uint64_t)n * tr->rank / tr->world);
    uint32_t hi = (uint32_t)((uint64_t)n * (tr->rank + 1) / tr->world);
    tr->ex = x;
    tr->ey = y;
    tr->eidx = idx;
    tr->job = JOB_EVAL;
    split(tr, (int)(hi - lo));
    for (int t = 0; t < tr->nthreads; t++)
        tr->workers[t].begin += (int)lo;
    run_all(tr);
    double loss = 0, correct = 0;
    for (int t = 0; t < tr->nthreads; t++) {
        loss += tr->workers[t].loss;
        correct += (double)tr->workers[t].correct;
    }
    out[0] = (float)correct;
    out[1] = (float)loss;
}

/* r[0..3] = val accuracy, val loss, test accuracy, test loss over the whole job. */
static int evaluate(struct trainer *tr, double r[4])
{
    const struct mn_data *d = tr->d;
    float s[4];
    eval_local(tr, d->train_x, d->train_y, d->val_idx, d->n_val, s);
    eval_local(tr, d->test_x, d->test_y, NULL, d->n_test, s + 2);
    if (tr->world > 1) {
        int rc = bt_allreduce(tr->comm, s, s, 4, BT_FLOAT32, BT_SUM);
        if (rc != BT_OK)
            return coll_failed(tr, "bt_allreduce of the evaluation", rc);
    }
    double nv = d->n_val ? d->n_val : 1;
    r[0] = s[0] / nv;
    r[1] = s[1] / nv;
    r[2] = s[2] / (double)d->n_test;
    r[3] = s[3] / (double)d->n_test;
    return 0;
}

/* ---- checkpoints ----
 * A file is {struct mn_ckpt_header; params (N floats); m (N); v (N); u32 crc32 of all before},
 * host byte order (little-endian on every machine baton targets). Rank 0 writes
 * DIR/NAME.tmp, fsyncs it and renames it over DIR/NAME, so a reader sees the old file or the
 * new one, never half of one. checkpoint.bin is written after every epoch and when
 * --max-steps stops the run; model.bin at the end. Both resume and evaluate. */

static int write_all(FILE *f, const void *p, size_t n, uLong *crc)
{
    *crc = crc32(*crc, p, (uInt)n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int ckpt_write(struct trainer *tr, const char *name)
{
    const char *dir = tr->o->ckpt_dir;
    char path[4096], tmp[4200];
    struct mn_ckpt_header h = {.version = MN_CKPT_VERSION,
                               .n_params = MN_NUM_PARAMS,
                               .global_step = tr->global_step,
                               .adam_t = tr->adam.t,
                               .rng = tr->rng,
                               .seed = tr->o->seed,
                               .epoch = tr->epoch,
                               .epoch_pos = tr->epoch_pos,
                               .global_batch = (uint32_t)tr->global_batch,
                               .last_loss = tr->last_loss};
    memcpy(h.magic, MN_CKPT_MAGIC, sizeof MN_CKPT_MAGIC);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "mnist_cnn: checkpoint dir %s: %s; training goes on without it\n", dir,
                strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    uLong crc = crc32(0, NULL, 0);
    size_t n = sizeof(float) * MN_NUM_PARAMS;
    int bad = !f || write_all(f, &h, sizeof h, &crc) || write_all(f, tr->params, n, &crc) ||
              write_all(f, tr->m, n, &crc) || write_all(f, tr->v, n, &crc);
    uint32_t c32 = (uint32_t)crc;
    bad = bad || fwrite(&c32, 4, 1, f) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved = errno;
    if (f && fclose(f) != 0)
        bad = 1;
    if (!bad && rename(tmp, path) != 0)
        bad = 1, saved = errno;
    if (bad) {
        fprintf(stderr, "mnist_cnn: writing %s: %s; training goes on without it\n", path,
                strerror(saved));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* What rank 0 tells the others before the state itself: fresh start, loaded, or give up. */
struct start_msg {
    int32_t status; /* 0 fresh, 1 loaded, -1 error (rank 0 has said why) */
    int32_t pad;
    struct mn_ckpt_header h;
};

/* Rank 0 loads path (or initialises when there is none and fresh is allowed), then every
 * rank gets its state. Returns 0, or an exit status. */
static int load_state(struct trainer *tr, const char *path, int must_exist)
{
    struct start_msg msg = {0};
    if (tr->rank == 0) {
        char err[4400];
        int rc = path ? mn_ckpt_read(path, &msg.h, tr->params, tr->adam_state, err, sizeof err) : 1;
        if (rc < 0 || (rc == 1 && must_exist)) {
            if (rc == 1)
                snprintf(err, sizeof err, "%s: not found", path);
            fprintf(stderr, "mnist_cnn: %s\n", err);
            msg.status = -1;
        } else if (rc == 0 && msg.h.epoch_pos > tr->d->n_train) {
            fprintf(stderr,
                    "mnist_cnn: %s: its position (image %u of epoch %u) is past the %u training "
                    "images; hint: another data set? use another --checkpoint-dir\n",
                    path, msg.h.epoch_pos, msg.h.epoch + 1, tr->d->n_train);
            msg.status = -1;
        } else {
            msg.status = rc == 0;
            if (rc == 1) {
                if (path)
                    fprintf(stderr, "mnist_cnn: no checkpoint at %s; starting fresh\n", path);
                mn_init_params(tr->params, tr->o->seed);
                memset(tr->adam_state, 0, sizeof(float) * 2 * MN_NUM_PARAMS);
            }
        }
    }
    if (tr->world > 1) {
        int rc = bt_broadcast(tr->comm, &msg, sizeof msg, BT_UINT8, 0);
        if (rc != BT_OK)
            return coll_failed(tr, "bt_broadcast of the start state", rc);
    }
    if (msg.status < 0)
        return 2;
    if (tr->xchg->sync_state(tr) != 0)
        return 1;
    if (msg.status == 1) {
        tr->global_step = msg.h.global_step;
        tr->adam.t = msg.h.adam_t;
        tr->rng = msg.h.rng;
        tr->epoch = msg.h.epoch;
        tr->epoch_pos = msg.h.epoch_pos;
        tr->last_loss = msg.h.last_loss;
        if (tr->rank == 0 && !tr->o->evaluate)
            printf("resumed from %s: epoch %u, image %u of it, %llu steps done\n", path,
                   msg.h.epoch + 1, msg.h.epoch_pos, (unsigned long long)msg.h.global_step);
        if (tr->rank == 0 && !tr->o->evaluate && msg.h.global_batch != (uint32_t)tr->global_batch)
            printf("resized: the checkpoint was written at a global batch of %u, this run has "
                   "%d (%d rank%s x %d); the epoch goes on from image %u, re-sharded over the "
                   "ranks, and the learning rate stays %g per step\n",
                   msg.h.global_batch, tr->global_batch, tr->world, tr->world > 1 ? "s" : "",
                   tr->batch, msg.h.epoch_pos, tr->o->lr);
    }
    return 0;
}

/* ---- setup ---- */

static void trainer_free(struct trainer *tr)
{
    if (tr->workers) {
        if (tr->nthreads > 1) {
            tr->job = JOB_QUIT;
            pthread_barrier_wait(&tr->go);
            for (int t = 1; t < tr->nthreads; t++)
                pthread_join(tr->workers[t].th, NULL);
            pthread_barrier_destroy(&tr->go);
            pthread_barrier_destroy(&tr->done);
        }
        for (int t = 0; t < tr->nthreads; t++) {
            mn_acts_free(&tr->workers[t].acts);
            free(tr->workers[t].fgrads);
            if (t > 0)
                free(tr->workers[t].acc);
            free(tr->workers[t].labels);
        }
    }
    free(tr->workers);
    free(tr->params);
    free(tr->grads);
    free(tr->xgrads);
    free(tr->adam_state);
    free(tr->order);
    free(tr->step_idx);
}

static int workers_init(struct trainer *tr)
{
    int per = (tr->batch + tr->nthreads - 1) / tr->nthreads;
    if (per > MN_PIECE)
        per = MN_PIECE;
    tr->workers = calloc((size_t)tr->nthreads, sizeof *tr->workers);
    if (!tr->workers)
        return -1;
    for (int t = 0; t < tr->nthreads; t++) {
        struct worker *w = &tr->workers[t];
        w->tr = tr;
        w->id = t;
        w->labels = malloc((size_t)per);
        w->fgrads = malloc(sizeof(float) * MN_NUM_PARAMS);
        w->acc = t > 0 ? malloc(sizeof(int64_t) * (MN_NUM_PARAMS + MN_NUM_STATS)) : tr->xgrads;
        if (mn_acts_init(&w->acts, per) != 0 || !w->labels || !w->fgrads || !w->acc)
            return -1;
        mn_point_params(&w->g, w->fgrads);
    }
    if (tr->nthreads == 1)
        return 0;
    if (pthread_barrier_init(&tr->go, NULL, (unsigned)tr->nthreads) ||
        pthread_barrier_init(&tr->done, NULL, (unsigned)tr->nthreads))
        return -1;
    for (int t = 1; t < tr->nthreads; t++)
        if (pthread_create(&tr->workers[t].th, NULL, worker_main, &tr->workers[t]) != 0) {
            /* the barriers count nthreads: run with the threads we got is not an option */
            fprintf(stderr, "mnist_cnn: cannot start thread %d: %s\n", t, strerror(errno));
            exit(1);
        }
    return 0;
}

static int trainer_init(struct trainer *tr, const struct mn_opts *o, const struct mn_data *d,
                        bt_comm *comm)
{
    memset(tr, 0, sizeof *tr);
    tr->o = o;
    tr->d = d;
    tr->comm = comm;
    bt_comm_rank(comm, &tr->rank);
    bt_comm_size(comm, &tr->world);
    tr->xchg = tr->world > 1 ? &xchg_allreduce : &xchg_local;
    if (o->mode_ps && !o->evaluate)
        tr->xchg = &xchg_ps;
    tr->batch = o->batch;
    tr->global_batch = o->batch * tr->world;
    tr->nthreads = o->threads;
    /* overlap needs the whole rank's gradient in worker 0 (one thread), and a peer */
    tr->overlap = !o->no_overlap && tr->xchg == &xchg_allreduce && o->threads == 1;
    tr->adam = (struct mn_adam){.lr = (float)o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-7f};
    tr->rng = o->seed ^ 0x6E6E697374ull;
    tr->elastic_file = getenv("BATON_ELASTIC_FILE");
    tr->params = malloc(sizeof(float) * MN_NUM_PARAMS);
    tr->grads = calloc(MN_NUM_PARAMS, sizeof(float));
    tr->xgrads = calloc(MN_NUM_PARAMS + MN_NUM_STATS, sizeof(int64_t));
    tr->adam_state = calloc(2 * (size_t)MN_NUM_PARAMS, sizeof(float));
    tr->order = malloc(sizeof(uint32_t) * (d->n_train ? d->n_train : 1));
    tr->step_idx = malloc(sizeof(uint32_t) * o->batch);
    if (!tr->params || !tr->grads || !tr->xgrads || !tr->adam_state || !tr->order || !tr->step_idx)
        return -1;
    tr->m = tr->adam_state;
    tr->v = tr->adam_state + MN_NUM_PARAMS;
    mn_point_params(&tr->p, tr->params);
    return workers_init(tr);
}

/* ---- the loop ---- */

struct run_stats {
    double train_s, loss_sum, acc_sum;
    long steps;
};

/* Rank 0's progress: on a terminal, one line redrawn at most 4 times a second; otherwise (a
 * pipe, as under `baton run`, whose output is tagged line by line) a whole line at each
 * quarter of the epoch, so a person watching a job sees it move. */
static void progress(const struct trainer *tr, uint32_t s, uint32_t spe, const struct run_stats *e,
                     int tty)
{
    static double last;
    double t = now_s();
    if (tty && t - last < 0.25 && s + 1 < spe)
        return;
    if (!tty && (spe < 4 || s + 1 == spe || (s + 1) % ((spe + 3) / 4) != 0))
        return;
    last = t;
    printf("%s  epoch %u [%5u/%u] loss %.4f acc %.4f %6.0f img/s%s", tty ? "\r" : "", tr->epoch + 1,
           s + 1, spe, e->loss_sum / (double)e->steps, e->acc_sum / (double)e->steps,
           (double)e->steps * tr->global_batch / (e->train_s > 0 ? e->train_s : 1e-9),
           tty ? "" : "\n");
    fflush(stdout);
}

/* The stop and save requests of the step just taken (the job's, in allreduce mode): rank 0
 * writes the checkpoint; a stop ends the run (*stopped 2). */
static void requests(struct trainer *tr, int *stopped)
{
    int64_t stop = tr->xgrads[MN_NUM_PARAMS + MN_STAT_STOP];
    int64_t save = tr->xgrads[MN_NUM_PARAMS + MN_STAT_SAVE];
    if (!stop && !save)
        return;
    if (tr->rank == 0 && tr->o->ckpt_dir && ckpt_write(tr, "checkpoint.bin") == 0)
        printf("mnist_cnn: %s: checkpoint written at epoch %u, image %u of it, step %llu\n",
               stop ? "SIGTERM" : "the launcher closes this generation (BATON_ELASTIC_FILE)",
               tr->epoch + 1, tr->epoch_pos, (unsigned long long)tr->global_step);
    fflush(stdout);
    if (stop)
        *stopped = 2, tr->stopping = 1;
}

/* Runs the steps of the current epoch from epoch_pos on; *stopped 1 when --max-steps hit, 2 on
 * a stop request. */
static int run_epoch(struct trainer *tr, uint32_t spe, struct run_stats *e, int *stopped)
{
    int tty = tr->rank == 0 && isatty(STDOUT_FILENO);
    const uint32_t gb = (uint32_t)tr->global_batch;
    while (tr->epoch_pos + gb <= tr->d->n_train && !*stopped) {
        uint32_t s = tr->epoch_pos / gb;
        if (tr->o->max_steps && tr->global_step >= (uint64_t)tr->o->max_steps) {
            *stopped = 1;
            break;
        }
        double t0 = now_s();
        if (train_step(tr, tr->epoch_pos) != 0)
            return 1;
        e->train_s += now_s() - t0;
        e->loss_sum += (double)tr->xgrads[MN_NUM_PARAMS] / (double)(1ull << MN_FIXED_BITS) /
                       tr->global_batch;
        e->acc_sum += (double)tr->xgrads[MN_NUM_PARAMS + 1] / tr->global_batch;
        e->steps++;
        tr->global_step++;
        tr->epoch_pos += gb;
        if (tr->rank == 0)
            progress(tr, s, spe, e, tty);
        requests(tr, stopped);
    }
    if (tty)
        printf("\r\033[K");
    return 0;
}

/* The epoch's order: the training indices, shuffled by the generator's state at its start. */
static void shuffle_epoch(struct trainer *tr, uint64_t *rng_after)
{
    memcpy(tr->order, tr->d->perm_all, sizeof(uint32_t) * tr->d->n_train);
    *rng_after = tr->rng;
    mn_shuffle(tr->order, tr->d->n_train, rng_after);
}

/* --log-csv: one row per epoch (rank 0), the header when the file is new; a resumed or elastic
 * run appends to the same file, so a row's world says how many ranks ran that epoch. A write
 * that fails is one WARN line: the log is not worth the training. */
static void log_csv(const char *path, const struct trainer *tr, unsigned epoch,
                    const struct run_stats *e, const double ev[4], int epochs)
{
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "mnist_cnn: WARN: --log-csv %s: %s; this epoch's row is lost\n", path,
                strerror(errno));
        return;
    }
    if (ftell(f) == 0)
        fprintf(f, "epoch,epochs,world,steps,loss,train_acc,val_acc,val_loss,test_acc,test_loss,"
                   "images_per_s\n");
    fprintf(f, "%u,%d,%d,%ld,%.6f,%.4f,%.4f,%.6f,%.4f,%.6f,%.0f\n", epoch, epochs, tr->world,
            e->steps, tr->last_loss, e->acc_sum / (double)e->steps, ev[0], ev[1], ev[2], ev[3],
            (double)e->steps * tr->global_batch / e->train_s);
    if (fclose(f) != 0)
        fprintf(stderr, "mnist_cnn: WARN: --log-csv %s: %s\n", path, strerror(errno));
}

static int train(struct trainer *tr, struct run_stats *all, double ev[4])
{
    const struct mn_opts *o = tr->o;
    uint32_t spe = tr->d->n_train / (uint32_t)tr->global_batch;
    int stopped = 0;
    if (spe == 0) {
        fprintf(stderr, "mnist_cnn: a global batch of %d is more than the %u training images\n",
                tr->global_batch, tr->d->n_train);
        return 2;
    }
    while (tr->epoch < (uint32_t)o->epochs && !stopped) {
        struct run_stats e = {0};
        uint64_t rng_after;
        double comm0 = tr->comm_s;
        shuffle_epoch(tr, &rng_after);
        if (run_epoch(tr, spe, &e, &stopped) != 0)
            return 1;
        if (stopped == 2) /* a stop request: checkpointed; no evaluation within the grace */
            return 0;
        if (e.steps == 0 && stopped)
            break;
        if (e.steps == 0) { /* resumed at the tail of an epoch, too short for a step now */
            tr->epoch++;
            tr->epoch_pos = 0;
            tr->rng = rng_after;
            continue;
        }
        if (tr->xchg->epoch_end) {
            double st[2] = {e.loss_sum, e.acc_sum};
            if (tr->xchg->epoch_end(tr, st) != 0)
                return 1;
            e.loss_sum = st[0];
            e.acc_sum = st[1];
        }
        if (evaluate(tr, ev) != 0)
            return 1;
        tr->last_loss = (float)(e.loss_sum / (double)e.steps);
        if (!stopped) { /* the epoch is whole: the checkpoint continues with the next */
            tr->epoch++;
            tr->epoch_pos = 0;
            tr->rng = rng_after;
        }
        if (tr->rank == 0) {
            printf("epoch %u/%d: loss=%.6f train_acc=%.4f val_acc=%.4f test_acc=%.4f "
                   "images_per_s=%.0f comm=%.1f%% steps=%ld%s\n",
                   tr->epoch + (stopped ? 1 : 0), o->epochs, tr->last_loss,
                   e.acc_sum / (double)e.steps, ev[0], ev[2],
                   (double)e.steps * tr->global_batch / e.train_s,
                   100.0 * (tr->comm_s - comm0) / e.train_s, e.steps,
                   stopped ? " (stopped by --max-steps)" : "");
            fflush(stdout);
            if (o->log_csv)
                log_csv(o->log_csv, tr, tr->epoch + (stopped ? 1 : 0), &e, ev, o->epochs);
            if (o->ckpt_dir)
                ckpt_write(tr, "checkpoint.bin");
        }
        all->train_s += e.train_s;
        all->steps += e.steps;
    }
    if (all->steps == 0 && evaluate(tr, ev) != 0)
        return 1;
    return 0;
}

int mn_run(const struct mn_opts *o, const struct mn_data *d, bt_comm *comm)
{
    struct trainer tr;
    struct run_stats all = {0};
    double ev[4] = {0};
    char path[4096];
    int rc = 1;
    if (trainer_init(&tr, o, d, comm) != 0) {
        fprintf(stderr, "mnist_cnn: out of memory setting up the trainer\n");
        goto out;
    }
    if (o->evaluate) {
        double t0 = now_s();
        if ((rc = load_state(&tr, o->evaluate, 1)) != 0 || (rc = evaluate(&tr, ev)) != 0)
            goto out;
        if (tr.rank == 0)
            printf("final: test_acc=%.4f val_acc=%.4f loss=%.4f images_per_s=%.0f steps=0\n", ev[2],
                   ev[0], ev[3], (d->n_val + d->n_test) / (now_s() - t0));
        goto out;
    }
    if (tr.xchg == &xchg_ps && (rc = ps_open(&tr)) != 0)
        goto out;
    if (o->ckpt_dir)
        snprintf(path, sizeof path, "%s/checkpoint.bin", o->ckpt_dir);
    if ((rc = load_state(&tr, o->resume && o->ckpt_dir ? path : NULL, 0)) != 0)
        goto out;
    if (tr.rank == 0)
        printf("mnist_cnn: %d rank%s x %d thread%s, batch %d per rank (%d global), %u train / "
               "%u val / %u test images from %s, gemm %s%s%s\n",
               tr.world, tr.world > 1 ? "s" : "", tr.nthreads, tr.nthreads > 1 ? "s" : "", tr.batch,
               tr.global_batch, d->n_train, d->n_val, d->n_test, o->data_dir, mn_gemm_kernel_name(),
               tr.ps ? ", parameter server " : "",
               tr.ps ? (o->ps_consistency ? o->ps_consistency : "sync") : "");
    struct sigaction sa = {.sa_handler = on_sigterm, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if ((rc = train(&tr, &all, ev)) != 0)
        goto out;
    if (tr.stopping) { /* SIGTERM: the checkpoint is written; 128 + SIGTERM, as if killed */
        rc = 128 + SIGTERM;
        goto out;
    }
    if (tr.rank == 0) {
        if (o->ckpt_dir)
            ckpt_write(&tr, "model.bin");
        printf("final: test_acc=%.4f val_acc=%.4f loss=%.4f images_per_s=%.0f steps=%llu\n", ev[2],
               ev[0], tr.last_loss,
               all.train_s > 0 ? (double)all.steps * tr.global_batch / all.train_s : 0.0,
               (unsigned long long)tr.global_step);
        fflush(stdout);
    }
out:
    /* every rank closes; the servers exit 0 once every worker has closed. A rank stopped by
     * SIGTERM only leaves: the next generation of the job will use the servers. */
    int crc = !tr.ps ? BT_OK : tr.stopping ? bt_ps_leave(tr.ps) : bt_ps_close(tr.ps);
    if (crc != BT_OK && rc == 0) {
        fprintf(stderr, "mnist_cnn: rank %d: bt_ps_close: %s\n", tr.rank, bt_strerror(crc));
        rc = 1;
    }
    trainer_free(&tr);
    return rc;
}
