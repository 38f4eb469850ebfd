/* main.c: mnist_cnn, the example trainer: the Keras tutorial CNN on (Fashion-)MNIST, data
 * parallel over a baton job.
 *
 *   baton run -n 2 -- build/examples/mnist_cnn --epochs 10
 *
 * What a training program does with baton, in order: bt_init() joins the job (a process
 * started without `baton run` is a job of one); rank 0's initial parameters (or its
 * checkpoint) are broadcast so every rank starts equal; every step each rank computes the
 * gradient of its shard of the global batch, one bt_allreduce(AVG) of the gradient buffer
 * makes them the gradient of the global batch, and every rank applies the same Adam update;
 * evaluation is sharded and its counts summed with one more allreduce; rank 0 writes the
 * checkpoints and prints; bt_finalize() leaves.
 *
 * The global batch of step s is the same whatever the number of ranks: epoch e's shuffle
 * comes from one seeded generator, the global batch is the next (batch * world) indices, and
 * rank r takes its r-th slice of them. So 1 rank with --batch 128 and 4 ranks with --batch 32
 * take the same steps, up to the order of float sums.
 *
 * How gradients meet is behind a small table (struct exchange_ops) in train.c. With --mode ps
 * they go through baton's parameter server instead (include/baton_ps.h):
 *
 *   baton run -n 2 --ps 1 -- build/examples/mnist_cnn --mode ps
 *
 * each rank pushes the mean gradient of its images and pulls the parameters; the servers
 * average the workers' gradients and apply Adam (sync), or apply each push as it arrives
 * (--ps-consistency async|bounded:S).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton.h"
#include "baton_ps.h"
#include "mnist.h"
#include "train.h"

/* ---- flags ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mnist_cnn [--data DIR] [--mode allreduce|ps] [--ps-consistency C]\n"
            "                 [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N]\n"
            "                 [--max-steps N]\n"
            "                 [--checkpoint-dir DIR] [--no-checkpoint] [--resume]\n"
            "                 [--evaluate MODEL]\n"
            "  --data DIR            IDX files, plain or .gz (default %s)\n"
            "  --mode M              gradient exchange: allreduce (default), or ps: through\n"
            "                        baton's parameter server (baton run --ps N)\n"
            "  --ps-consistency C    ps mode: sync (default), async or bounded:S\n"
            "  --epochs N            passes over the training set (default 10)\n"
            "  --batch N             images per rank per step (default 32)\n"
            "  --lr X                Adam learning rate (default 0.001)\n"
            "  --seed N              initialisation and shuffle seed (default 1)\n"
            "  --threads N           threads per rank (default 1)\n"
            "  --no-overlap          one blocking allreduce after backward, instead of one\n"
            "                        per layer started as backward produces it (1 thread)\n"
            "  --max-steps N         stop after N steps in all (default: no limit)\n"
            "  --checkpoint-dir DIR  where checkpoint.bin and model.bin go (default %s)\n"
            "  --no-checkpoint       write neither\n"
            "  --resume              continue from DIR/checkpoint.bin (automatic when\n"
            "                        BATON_RESTART_COUNT > 0)\n"
            "  --evaluate MODEL      only evaluate MODEL (a model.bin or checkpoint.bin)\n"
            "  --log-csv FILE        rank 0 appends a row per epoch (loss, accuracies,\n"
            "                        images/s, world size); bench/plot_mnist.sh plots it\n",
            MN_DEFAULT_DATA, MN_DEFAULT_CKPT_DIR);
}

/* Parses a whole decimal number in [lo, hi]; -1 when it is not one. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int bad_flag(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "mnist_cnn: %s %s: %s; see mnist_cnn --help\n", flag, value, want);
    return 2;
}

/* What the flags cannot say one at a time; 0 or 2 (reported). */
static int check_flags(const struct mn_opts *o)
{
    if (o->log_csv) { /* an unwritable log is said before training, not after the first epoch */
        FILE *f = fopen(o->log_csv, "a");
        if (!f) {
            fprintf(stderr, "mnist_cnn: --log-csv %s: %s; give a writable file\n", o->log_csv,
                    strerror(errno));
            return 2;
        }
        fclose(f);
    }
    if (o->ps_consistency && !o->mode_ps) {
        fprintf(stderr, "mnist_cnn: --ps-consistency %s needs --mode ps\n", o->ps_consistency);
        return 2;
    }
    /* Without a server count the client would wait BATON_TIMEOUT for a server to appear. */
    const char *nps = getenv("BATON_PS_SERVERS");
    if (o->mode_ps && !o->evaluate && (!nps || !*nps || strcmp(nps, "0") == 0)) {
        fprintf(stderr,
                "mnist_cnn: --mode ps: not available without a parameter server "
                "(BATON_PS_SERVERS is not set); run it as `baton run -n 2 --ps 1 -- mnist_cnn "
                "--mode ps`, or start `baton ps` and set BATON_PS_SERVERS\n");
        return 2;
    }
    if (o->threads > o->batch) {
        fprintf(stderr,
                "mnist_cnn: --threads %d is more than --batch %d; use at most one thread "
                "per image\n",
                o->threads, o->batch);
        return 2;
    }
    return 0;
}

/* Returns 0, 1 for --help (exit 0), or 2 (usage error, already reported). */
static int parse_flags(int argc, char **argv, struct mn_opts *o)
{
    enum {
        O_DATA = 256,
        O_MODE,
        O_PSCONS,
        O_EPOCHS,
        O_BATCH,
        O_LR,
        O_SEED,
        O_THREADS,
        O_MAXSTEPS,
        O_CKPT,
        O_NOCKPT,
        O_RESUME,
        O_EVAL,
        O_NO_OVERLAP,
        O_CSV,
        O_HELP
    };
    static const struct option longopts[] = {{"data", 1, 0, O_DATA},
                                             {"mode", 1, 0, O_MODE},
                                             {"epochs", 1, 0, O_EPOCHS},
                                             {"ps-consistency", 1, 0, O_PSCONS},
                                             {"batch", 1, 0, O_BATCH},
                                             {"lr", 1, 0, O_LR},
                                             {"seed", 1, 0, O_SEED},
                                             {"threads", 1, 0, O_THREADS},
                                             {"no-overlap", 0, 0, O_NO_OVERLAP},
                                             {"max-steps", 1, 0, O_MAXSTEPS},
                                             {"checkpoint-dir", 1, 0, O_CKPT},
                                             {"no-checkpoint", 0, 0, O_NOCKPT},
                                             {"resume", 0, 0, O_RESUME},
                                             {"evaluate", 1, 0, O_EVAL},
                                             {"log-csv", 1, 0, O_CSV},
                                             {"help", 0, 0, O_HELP},
                                             {0, 0, 0, 0}};
    long v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DATA: o->data_dir = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "allreduce") != 0 && strcmp(optarg, "ps") != 0)
                return bad_flag("--mode", optarg, "want allreduce or ps");
            o->mode_ps = optarg[0] == 'p';
            break;
        case O_PSCONS: {
            bt_ps_opt po;
            if (bt_ps_consistency_parse(optarg, &po) != BT_OK)
                return bad_flag("--ps-consistency", optarg, "want sync, async or bounded:S");
            o->ps_consistency = optarg;
            break;
        }
        case O_EPOCHS:
            if (parse_long(optarg, 1, 100000, &v))
                return bad_flag("--epochs", optarg, "want 1..100000");
            o->epochs = (int)v;
            break;
        case O_BATCH:
            if (parse_long(optarg, 1, 4096, &v))
                return bad_flag("--batch", optarg, "want 1..4096");
            o->batch = (int)v;
            break;
        case O_LR: {
            char *end;
            o->lr = strtod(optarg, &end);
            if (end == optarg || *end || !(o->lr > 0 && o->lr < 10))
                return bad_flag("--lr", optarg, "want a number in (0, 10)");
            break;
        }
        case O_SEED:
            if (parse_long(optarg, 0, LONG_MAX, &v))
                return bad_flag("--seed", optarg, "want a number >= 0");
            o->seed = (uint64_t)v;
            break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &v))
                return bad_flag("--threads", optarg, "want 1..256");
            o->threads = (int)v;
            break;
        case O_NO_OVERLAP: o->no_overlap = 1; break;
        case O_MAXSTEPS:
            if (parse_long(optarg, 1, LONG_MAX, &v))
                return bad_flag("--max-steps", optarg, "want a number >= 1");
            o->max_steps = v;
            break;
        case O_CKPT: o->ckpt_dir = optarg; break;
        case O_NOCKPT: o->ckpt_dir = NULL; break;
        case O_RESUME: o->resume = 1; break;
        case O_EVAL: o->evaluate = optarg; break;
        case O_CSV: o->log_csv = optarg; break;
        case 'h':
        case O_HELP: usage(stdout); return 1;
        case ':':
            fprintf(stderr, "mnist_cnn: %s needs a value; see mnist_cnn --help\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "mnist_cnn: unknown flag %s; see mnist_cnn --help\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mnist_cnn: unexpected argument '%s'; see mnist_cnn --help\n",
                argv[optind]);
        return 2;
    }
    return check_flags(o);
}

/* ---- data ---- */

/* Loads the four files; on failure prints one line and returns -1. */
static int load_data(const char *dir, struct mn_data *d)
{
    static const struct {
        const char *name;
        uint32_t magic;
        int test, labels;
    } files[] = {{"train-images-idx3-ubyte", 0x803, 0, 0},
                 {"train-labels-idx1-ubyte", 0x801, 0, 1},
                 {"t10k-images-idx3-ubyte", 0x803, 1, 0},
                 {"t10k-labels-idx1-ubyte", 0x801, 1, 1}};
    uint32_t n[4], r, c;
    char err[4200];
    memset(d, 0, sizeof *d);
    for (int i = 0; i < 4; i++) {
        uint8_t **dst = files[i].test ? (files[i].labels ? &d->test_y : &d->test_x)
                                      : (files[i].labels ? &d->train_y : &d->train_x);
        if (mn_idx_load(dir, files[i].name, files[i].magic, (const uint32_t[2]){28, 28}, dst, &n[i],
                        &r, &c, err, sizeof err)) {
            fprintf(stderr, "mnist_cnn: %s\n", err);
            return -1;
        }
    }
    if (n[0] != n[1] || n[2] != n[3] || n[0] < 10 || n[2] < 1) {
        fprintf(stderr,
                "mnist_cnn: %s: %u training images but %u labels, %u test images but %u "
                "labels\n",
                dir, n[0], n[1], n[2], n[3]);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        const uint8_t *y = i ? d->test_y : d->train_y;
        for (uint32_t k = 0; k < n[2 * i + 1]; k++)
            if (y[k] > 9) {
                fprintf(stderr, "mnist_cnn: %s/%s: label %u of item %u is not a class 0..9\n", dir,
                        files[2 * i + 1].name, y[k], k);
                return -1;
            }
    }
    d->n_train_all = n[0];
    d->n_test = n[2];
    /* the validation split: a fixed permutation, its last 10% held out */
    d->perm_all = malloc(sizeof(uint32_t) * n[0]);
    if (!d->perm_all)
        return -1;
    for (uint32_t i = 0; i < n[0]; i++)
        d->perm_all[i] = i;
    uint64_t rng = MN_SPLIT_SEED;
    mn_shuffle(d->perm_all, n[0], &rng);
    d->n_val = n[0] / 10;
    d->n_train = n[0] - d->n_val;
    d->val_idx = d->perm_all + d->n_train;
    return 0;
}

static void free_data(struct mn_data *d)
{
    free(d->train_x);
    free(d->train_y);
    free(d->test_x);
    free(d->test_y);
    free(d->perm_all);
}

int main(int argc, char **argv)
{
    struct mn_opts o = {.data_dir = MN_DEFAULT_DATA,
                        .ckpt_dir = MN_DEFAULT_CKPT_DIR,
                        .epochs = 10,
                        .batch = 32,
                        .lr = 1e-3,
                        .seed = 1,
                        .threads = 1};
    setvbuf(stdout, NULL, _IOLBF, 0); /* epoch lines appear as they happen, also through pipes */
    int rc = parse_flags(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    const char *rc_env = getenv("BATON_RESTART_COUNT");
    if (rc_env && atoi(rc_env) > 0)
        o.resume = 1;

    struct mn_data data;
    if (load_data(o.data_dir, &data) != 0) {
        free_data(&data);
        return 2;
    }
    bt_comm *comm = NULL;
    rc = bt_init(&comm);
    if (rc != BT_OK) {
        fprintf(stderr, "mnist_cnn: bt_init: %s: %s\n", bt_strerror(rc), bt_last_error(NULL));
        free_data(&data);
        return 1;
    }
    rc = mn_run(&o, &data, comm);
    int frc = bt_finalize(comm);
    free_data(&data);
    if (rc == 0 && frc != BT_OK)
        rc = 1;
    return rc;
}
