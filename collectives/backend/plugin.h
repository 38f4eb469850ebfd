/* backend/plugin.h: the backends that need a heavy library (Open MPI, CUDA, NCCL) are plugins,
 * shared objects that libbaton loads with dlopen when a job needs them, so that the core links
 * none of those libraries (as NCCL loads its net plugins and Open MPI its MCA components).
 *
 *   libbaton-mpi.so   backend/mpi.c    bt_init under mpirun               links libmpi
 *   libbaton-cuda.so  backend/cuda.c   device buffers (which, where, copies) links libcudart
 *   libbaton-nccl.so  backend/nccl.c   device collectives with one GPU per rank  links libnccl
 *
 * Where a plugin is looked for, in order (the first file that exists is the one loaded):
 *   1. the folders in BATON_PLUGIN_DIR (colon-separated), when it is set: only those;
 *   2. the folder `baton/` beside the shared object that holds libbaton (dladdr), which is
 *      where `make install` puts them: PREFIX/lib/libbaton.so -> PREFIX/lib/baton/;
 *   3. the folders compiled in (BT_PLUGIN_DIRS, the Makefile's): the build tree's plugins/
 *      folder, then PREFIX/lib/baton, for programs that link libbaton.a.
 * A plugin is loaded at most once per process and never unloaded. One that is missing, or
 * whose own library (libmpi, libcudart, libnccl) is, gives one line naming the file and
 * dlopen's reason.
 *
 * A plugin is built from this tree's headers, so it shares struct bt_comm's layout with the
 * core; the ABI number and sizeof(struct bt_comm) are checked at load time. It calls back into
 * the core only through struct bt__core_api, which backend/glue.c turns into the usual bt__
 * functions, so the plugin's sources read like the rest of collectives/.
 */
#ifndef BT_COLLECTIVES_BACKEND_PLUGIN_H
#define BT_COLLECTIVES_BACKEND_PLUGIN_H

#include <stddef.h>

#include "collectives/backend/backend.h"
#include "collectives/backend/staged.h"
#include "rendezvous/store.h"

#define BT_PLUGIN_ABI 2
#define BT_PLUGIN_ENTRY "baton_plugin_v1" /* the one symbol a plugin exports */

/* What a plugin may call in the core. Variadic entries are called with "%s" and a message the
 * plugin formatted itself. */
struct bt__core_api {
    unsigned abi;      /* BT_PLUGIN_ABI */
    size_t comm_bytes; /* sizeof(struct bt_comm) */
    int (*comm_fail)(struct bt_comm *c, int code, const char *fmt, ...);
    void (*log_write)(int level, unsigned subsys, const char *file, int line, const char *fmt, ...);
    void (*log_init)(void);
    const int *log_level;
    const unsigned *log_mask;
    void (*log_set_rank)(int rank);
    int (*host_run)(struct bt_comm *c, const struct bt__call *a);
    size_t (*dtype_size)(bt_dtype dtype);
    size_t (*call_send_count)(const struct bt_comm *c, const struct bt__call *a);
    size_t (*call_recv_count)(const struct bt_comm *c, const struct bt__call *a);
    void *(*scratch)(struct bt_comm *c, int slot, size_t bytes);
    void (*wait_start)(struct bt_comm *c, struct bt__wait *w);
    int (*wait_tick)(struct bt_comm *c, struct bt__wait *w,
                     void (*who)(void *arg, char *out, size_t cap), void *arg);
    const char *(*store_error)(const struct bt__store *s);
    int (*store_set)(struct bt__store *s, const char *key, const void *val, size_t len);
    int (*store_get)(struct bt__store *s, const char *key, void **val, size_t *len,
                     double timeout_s);
    int (*store_delete)(struct bt__store *s, const char *key, int *deleted);
    int (*staged_run)(struct bt_comm *c, struct bt__stage *st, const struct bt__call *a);
    void (*stage_free)(struct bt__stage *st);
    int (*nccl_create)(struct bt_comm *c, int dev);
    int (*nccl_available)(char *why, size_t cap);
};

/* What a plugin offers; the entries of the other plugins are NULL. */
struct bt__plugin {
    unsigned abi;      /* BT_PLUGIN_ABI */
    size_t comm_bytes; /* sizeof(struct bt_comm) as the plugin was built */
    const char *name;
    /* libbaton-mpi.so: see bt__mpi_attach and bt__mpi_derive (backend.h) */
    int (*mpi_attach)(struct bt_comm *c, struct bt__err *err);
    int (*mpi_derive)(struct bt_comm *parent, struct bt_comm *child,
                      const struct bt__mpi_derive *how, int *member, struct bt__err *err);
    /* libbaton-cuda.so: see cuda.h */
    int (*device_init)(struct bt_comm *c, struct bt__err *err);
    int (*device_locate)(struct bt_comm *c, const struct bt__call *a, int *dev);
    int (*device_run)(struct bt_comm *c, const struct bt__call *a, int dev);
    void (*device_destroy)(struct bt_comm *c);
    /* libbaton-nccl.so: makes c's NCCL communicator on device dev (sets c->nccl) */
    int (*nccl_create)(struct bt_comm *c, int dev);
    /* libbaton-nccl.so: see bt__nccl_split (cuda.h) */
    int (*nccl_split)(struct bt_comm *parent, struct bt_comm *child, int color, int key);
};

/* The entry a plugin exports as BT_PLUGIN_ENTRY (defined in backend/glue.c). */
typedef const struct bt__plugin *(*bt__plugin_entry_fn)(const struct bt__core_api *core);

/* Loads plugin name ("mpi", "cuda", "nccl") once per process and returns it in *out; on failure
 * BT_ERR_INVALID_USAGE with one line in err (which file, dlopen's reason, a hint). */
int bt__plugin_load(const char *name, const struct bt__plugin **out, struct bt__err *err);

/* In a plugin: the offer of this plugin (defined by its source file). */
extern const struct bt__plugin bt__plugin_self;

#endif
