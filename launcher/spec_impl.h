/* spec_impl.h: what the spec sources (launcher/spec_*.c) share. Not for use outside spec*.c.
 *
 * Each source is a pair of functions behind struct bt__spec_source_ops: present() says whether
 * its env is there (auto mode tries the sources in table order), fill() derives the spec from
 * that env or returns BT_ERR_INVALID_USAGE with one line naming the variable and the problem.
 * spec.c then lays the flags over the result, computes world size and first rank, and checks.
 */
#ifndef BT_LAUNCHER_SPEC_IMPL_H
#define BT_LAUNCHER_SPEC_IMPL_H

#include <stddef.h>

#include "launcher/spec.h"

/* Ports baton assumes where a spec names none: torchrun's MASTER_PORT default, the store on +1. */
#define BT_SPEC_DEFAULT_MASTER_PORT 29500
#define BT_SPEC_PYTORCHJOB_PORT 23456 /* the operator's pytorchjob-port */

struct bt__spec_ctx {
    const struct bt__spec_flags *flags; /* never NULL */
    bt__getenv_fn getenv_fn;            /* NULL: the real getenv */
    void *arg;
    struct bt__spec *spec;
    struct bt__err *err;
};

struct bt__spec_source_ops {
    enum bt__spec_source source;
    int (*present)(struct bt__spec_ctx *c); /* 1 when this source's env is there */
    int (*fill)(struct bt__spec_ctx *c);    /* BT_OK or BT_ERR_INVALID_USAGE */
};

/* The value of env name, or NULL when unset or empty. bt__spec_use also records the name in
 * spec->from when it is set. */
const char *bt__spec_env(struct bt__spec_ctx *c, const char *name);
const char *bt__spec_use(struct bt__spec_ctx *c, const char *name);
void bt__spec_from(struct bt__spec *spec, const char *what);

/* Strict decimal in [min, max] (no suffix, no spaces); on failure an error naming name=val. */
int bt__spec_int(struct bt__spec_ctx *c, const char *name, const char *val, int min, int max,
                 int *out);
/* bt__spec_use + bt__spec_int. Unset: BT_OK and *out untouched, unless required (then an error
 * "NAME is not set" + why). */
int bt__spec_env_int(struct bt__spec_ctx *c, const char *name, int min, int max, int *out,
                     const char *required_why);
/* "host:port" or "[v6]:port" into host and port. port_required == 0 leaves *port untouched
 * when there is no ":port". Errors name what. */
int bt__spec_hostport(struct bt__spec_ctx *c, const char *what, const char *val, char *host,
                      size_t hostsz, int *port, int port_required);
/* The store's port: --rdzv-port when given, else base + 1 (what names base's variable). */
int bt__spec_store_port(struct bt__spec_ctx *c, const char *what, int base, int *out);
/* This pod's hostname: HOSTNAME through the lookup; gethostname() only with the real getenv.
 * Returns 0 and fills buf, or -1. */
int bt__spec_hostname(struct bt__spec_ctx *c, char *buf, size_t n);

/* "<job>-<type>-<i>[.domain][:port]": job and i. Returns 0 on a match, -1 otherwise. */
int bt__spec_split_name(const char *host, const char *type, char *job, size_t jobsz, int *index);
/* The first DNS label of host (before '.', ':'), into out. */
void bt__spec_first_label(const char *host, char *out, size_t n);
/* Sets spec->job_id: BATON_JOB_ID when set, else id (or "" when id is NULL). */
void bt__spec_set_job(struct bt__spec_ctx *c, const char *id);
/* BATON_RDZV=host:port or BATON_RDZV_HOST [+ BATON_RDZV_PORT]: baton's own endpoint env (the
 * store's endpoint, like --rdzv). Returns 1 when found (spec->rdzv_* filled), 0 when absent,
 * or a negative error code. */
int bt__spec_baton_rdzv(struct bt__spec_ctx *c);
void bt__spec_copy(char *dst, size_t n, const char *src);

/* Sources, one file each (spec_pytorch.c, spec_tf.c, spec_mpi.c, spec_slurm.c, spec_k8s.c). */
extern const struct bt__spec_source_ops bt__spec_pytorch_ops, bt__spec_tf_ops, bt__spec_mpi_ops,
    bt__spec_slurm_ops, bt__spec_jax_ops, bt__spec_trainer_ops, bt__spec_indexed_ops;

/* Slurm hostlist expressions ("gpu[01-04,07]", "a[1-3],b5"): writes up to max names into
 * names[i] (each BT_SPEC_HOST_MAX bytes; names may be NULL to count) and returns how many the
 * expression names, or -1 when it is malformed. */
int bt__slurm_nodelist_expand(const char *expr, char (*names)[BT_SPEC_HOST_MAX], int max);

#endif
