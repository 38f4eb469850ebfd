/* backend/plugin.c: finds, loads and checks the backend plugins (plugin.h has where it looks),
 * hands each the core's table of calls, and offers the core's side of the Open MPI and NCCL
 * entry points: load the plugin, then call it.
 *
 * Loading happens under one mutex; a plugin that failed to load is not tried again in this
 * process (the same reason is given every time).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "collectives/backend/cuda.h"
#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "common/log.h"
#include "common/param.h"

#ifndef BT_PLUGIN_DIRS
#define BT_PLUGIN_DIRS "/usr/local/lib/baton"
#endif

BT_PARAM_STR(plugin_dir, "BATON_PLUGIN_DIR", NULL)

static const struct bt__core_api core_api = {
    .abi = BT_PLUGIN_ABI,
    .comm_bytes = sizeof(struct bt_comm),
    .comm_fail = bt__comm_fail,
    .log_write = bt__log_write,
    .log_init = bt__log_init,
    .log_level = &bt__log_level_cur,
    .log_mask = &bt__log_subsys_mask,
    .log_set_rank = bt__log_set_rank,
    .host_run = bt__host_run,
    .dtype_size = bt_dtype_size,
    .call_send_count = bt__call_send_count,
    .call_recv_count = bt__call_recv_count,
    .scratch = bt__scratch,
    .wait_start = bt__wait_start,
    .wait_tick = bt__wait_tick,
    .store_error = bt__store_error,
    .store_set = bt__store_set,
    .store_get = bt__store_get,
    .store_delete = bt__store_delete,
    .staged_run = bt__staged_run,
    .stage_free = bt__stage_free,
    .nccl_create = bt__nccl_create,
    .nccl_available = bt__nccl_available,
};

#define BT_PLUGIN_NAMES 3
static const char *const plugin_names[BT_PLUGIN_NAMES] = {"mpi", "cuda", "nccl"};

static struct {
    pthread_mutex_t mu;
    int tried[BT_PLUGIN_NAMES];
    const struct bt__plugin *plugin[BT_PLUGIN_NAMES];
    struct bt__err why[BT_PLUGIN_NAMES];
} loaded = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Appends dir/libbaton-name.so to the candidates when it exists; 1 when it was found. */
static int found_in(const char *dir, size_t dlen, const char *name, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%.*s/libbaton-%s.so", (int)dlen, dir, name);
    return n > 0 && (size_t)n < cap && access(path, F_OK) == 0;
}

/* Searches the colon-separated folders in dirs; 1 with the file in path when found. */
static int search_dirs(const char *dirs, const char *name, char *path, size_t cap)
{
    for (const char *p = dirs; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && found_in(p, len, name, path, cap))
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The folder `baton/` beside the object that holds this code (libbaton.so once installed). */
static int search_beside_lib(const char *name, char *path, size_t cap)
{
    Dl_info info;
    if (!dladdr((void *)&core_api, &info) || !info.dli_fname)
        return 0;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash)
        return 0;
    char dir[4096];
    int n = snprintf(dir, sizeof(dir), "%.*s/baton", (int)(slash - info.dli_fname), info.dli_fname);
    return n > 0 && (size_t)n < sizeof(dir) && found_in(dir, (size_t)n, name, path, cap);
}

static int find(const char *name, char *path, size_t cap, struct bt__err *err)
{
    const char *env = bt__param_plugin_dir();
    if (env && *env) {
        if (search_dirs(env, name, path, cap))
            return BT_OK;
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "libbaton-%s.so is not in BATON_PLUGIN_DIR=%s; hint: point it at the "
                           "folder holding the plugins (build/plugins, or PREFIX/lib/baton)",
                           name, env);
    }
    if (search_beside_lib(name, path, cap) || search_dirs(BT_PLUGIN_DIRS, name, path, cap))
        return BT_OK;
    return bt__err_set(err, BT_ERR_INVALID_USAGE,
                       "libbaton-%s.so was not built or installed (looked beside libbaton and "
                       "in %s); hint: build where its library is found (see `make`'s summary) "
                       "or set BATON_PLUGIN_DIR",
                       name, BT_PLUGIN_DIRS);
}

static int open_plugin(const char *name, const struct bt__plugin **out, struct bt__err *err)
{
    char path[4200];
    BT_CHECK(find(name, path, sizeof(path), err));
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "cannot load %s: %s; hint: install the library it needs, or leave "
                           "this backend out (BATON_BACKEND)",
                           path, dlerror());
    bt__plugin_entry_fn entry = (bt__plugin_entry_fn)dlsym(h, BT_PLUGIN_ENTRY);
    const struct bt__plugin *p = entry ? entry(&core_api) : NULL;
    if (!p || p->abi != BT_PLUGIN_ABI || p->comm_bytes != sizeof(struct bt_comm) ||
        strcmp(p->name, name) != 0) {
        dlclose(h);
        return bt__err_set(err, BT_ERR_INVALID_USAGE,
                           "%s is not a libbaton %s plugin of this build (ABI %u); hint: "
                           "rebuild and reinstall libbaton and its plugins together",
                           path, BATON_VERSION_STRING, BT_PLUGIN_ABI);
    }
    BT_INFO(INIT, "loaded the %s plugin from %s", name, path);
    *out = p;
    return BT_OK;
}

int bt__plugin_load(const char *name, const struct bt__plugin **out, struct bt__err *err)
{
    int i = 0;
    while (i < BT_PLUGIN_NAMES && strcmp(plugin_names[i], name) != 0)
        i++;
    if (i == BT_PLUGIN_NAMES)
        return bt__err_set(err, BT_ERR_INTERNAL, "no plugin is called '%s'", name);
    pthread_mutex_lock(&loaded.mu);
    if (!loaded.tried[i]) {
        loaded.tried[i] = 1;
        open_plugin(name, &loaded.plugin[i], &loaded.why[i]);
    }
    *out = loaded.plugin[i];
    if (!*out)
        bt__err_set(err, loaded.why[i].code, "%s", loaded.why[i].msg);
    pthread_mutex_unlock(&loaded.mu);
    return *out ? BT_OK : err->code;
}

/* ---- the core's side of the plugins' entry points ---- */

int bt__mpi_attach(struct bt_comm *c, struct bt__err *err)
{
    const struct bt__plugin *p;
    struct bt__err why = {0};
    if (bt__plugin_load("mpi", &p, &why) != BT_OK)
        return bt__err_set(err, BT_ERR_INVALID_USAGE, "%s but the Open MPI backend is missing: %s",
                           c->backend_choice == BT_BACKEND_MPI
                               ? "BATON_BACKEND=mpi"
                               : "this process was started by mpirun",
                           why.msg);
    return p->mpi_attach(c, err);
}

int bt__mpi_derive(struct bt_comm *parent, struct bt_comm *child, const struct bt__mpi_derive *how,
                   int *member, struct bt__err *err)
{
    const struct bt__plugin *p;
    BT_CHECK(bt__plugin_load("mpi", &p, err)); /* loaded already: the parent uses it */
    return p->mpi_derive(parent, child, how, member, err);
}

int bt__nccl_split(struct bt_comm *parent, struct bt_comm *child, int color, int key)
{
    const struct bt__plugin *p;
    struct bt__err err = {0};
    if (bt__plugin_load("nccl", &p, &err) != BT_OK)
        return bt__comm_fail(parent, err.code, "%s", err.msg);
    return p->nccl_split(parent, child, color, key);
}

int bt__nccl_available(char *why, size_t cap)
{
    const struct bt__plugin *p;
    struct bt__err err = {0};
    if (bt__plugin_load("nccl", &p, &err) == BT_OK)
        return 1;
    snprintf(why, cap, "%s", err.msg);
    return 0;
}

int bt__nccl_create(struct bt_comm *c, int dev)
{
    const struct bt__plugin *p;
    struct bt__err err = {0};
    if (bt__plugin_load("nccl", &p, &err) != BT_OK)
        return bt__comm_fail(c, err.code, "%s", err.msg);
    return p->nccl_create(c, dev);
}
