/* train.h: the trainer's options, data and entry point (train.c), used by main.c. */
#ifndef MNIST_TRAIN_H
#define MNIST_TRAIN_H

#include <stdint.h>

#include "baton.h"

#define MN_DEFAULT_DATA "/usr/share/datasets/fashion-mnist" /* Debian dataset-fashion-mnist */
#define MN_DEFAULT_CKPT_DIR "mnist_ckpt"
#define MN_SPLIT_SEED 0x5EEDull /* the validation split does not move with --seed */

struct mn_opts {
    const char *data_dir;
    const char *ckpt_dir;       /* NULL: no checkpoints */
    const char *evaluate;       /* a model file: evaluate only */
    const char *log_csv;        /* --log-csv: rank 0 appends one row per epoch; NULL: none */
    int mode_ps;                /* --mode ps: exchange through baton's parameter server */
    const char *ps_consistency; /* --ps-consistency: sync, async or bounded:S */
    int epochs, batch, threads, resume;
    int no_overlap; /* --no-overlap: one blocking allreduce after backward */
    long max_steps; /* 0: none */
    double lr;
    uint64_t seed;
};

struct mn_data {
    uint8_t *train_x, *train_y; /* (n_train_all, 28, 28) bytes, (n_train_all) labels */
    uint8_t *test_x, *test_y;   /* (n_test, 28, 28), (n_test) */
    uint32_t n_train_all, n_test;
    uint32_t *perm_all; /* the fixed split: train indices, then val indices */
    uint32_t *val_idx;  /* perm_all + n_train */
    uint32_t n_train, n_val;
};

/* Trains (or evaluates) as o says on comm; prints on rank 0; returns the exit status. */
int mn_run(const struct mn_opts *o, const struct mn_data *d, bt_comm *comm);

#endif
