/* backend/glue.c: linked into every plugin (never into the core): the plugin's entry point,
 * and the bt__ functions of the core that a plugin calls, each forwarding to the core's table
 * (struct bt__core_api) that the entry point receives. So a plugin's sources call
 * bt__comm_fail(), BT_WARN() or bt__store_get() as any file of collectives/ does, and the
 * process keeps one logger, one store connection and one error story.
 *
 * Stateless helpers (common/err.c, common/param.c, collectives/reduce.c) are linked into the
 * plugin as copies instead. Only BT_PLUGIN_ENTRY is exported (backend/plugin.map).
 */
#include <stdarg.h>
#include <stdio.h>

#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "common/log.h"

static const struct bt__core_api *core;

__attribute__((visibility("default"))) const struct bt__plugin *
baton_plugin_v1(const struct bt__core_api *api)
{
    if (!api || api->abi != BT_PLUGIN_ABI || api->comm_bytes != sizeof(struct bt_comm))
        return NULL;
    core = api;
    return &bt__plugin_self;
}

/* ---- logging: the core's level and sink ---- */

int bt__log_level_cur = -1;
unsigned bt__log_subsys_mask;

void bt__log_init(void)
{
    core->log_init();
    bt__log_subsys_mask = *core->log_mask;
    bt__log_level_cur = *core->log_level;
}

void bt__log_set_rank(int rank)
{
    core->log_set_rank(rank);
}

void bt__log_write(int level, unsigned subsys, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    core->log_write(level, subsys, file, line, "%s", msg);
}

/* ---- the communicator ---- */

int bt__comm_fail(struct bt_comm *c, int code, const char *fmt, ...)
{
    char msg[BT__ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return core->comm_fail(c, code, "%s", msg);
}

int bt__host_run(struct bt_comm *c, const struct bt__call *a)
{
    return core->host_run(c, a);
}

size_t bt_dtype_size(bt_dtype dtype)
{
    return core->dtype_size(dtype);
}

size_t bt__call_send_count(const struct bt_comm *c, const struct bt__call *a)
{
    return core->call_send_count(c, a);
}

size_t bt__call_recv_count(const struct bt_comm *c, const struct bt__call *a)
{
    return core->call_recv_count(c, a);
}

void *bt__scratch(struct bt_comm *c, int slot, size_t bytes)
{
    return core->scratch(c, slot, bytes);
}

void bt__wait_start(struct bt_comm *c, struct bt__wait *w)
{
    core->wait_start(c, w);
}

int bt__wait_tick(struct bt_comm *c, struct bt__wait *w,
                  void (*who)(void *arg, char *out, size_t cap), void *arg)
{
    return core->wait_tick(c, w, who, arg);
}

/* ---- the store ---- */

const char *bt__store_error(const struct bt__store *s)
{
    return core->store_error(s);
}

int bt__store_set(struct bt__store *s, const char *key, const void *val, size_t len)
{
    return core->store_set(s, key, val, len);
}

int bt__store_get(struct bt__store *s, const char *key, void **val, size_t *len, double timeout_s)
{
    return core->store_get(s, key, val, len, timeout_s);
}

int bt__store_delete(struct bt__store *s, const char *key, int *deleted)
{
    return core->store_delete(s, key, deleted);
}

/* ---- the device path's pieces that live in the core ---- */

int bt__staged_run(struct bt_comm *c, struct bt__stage *st, const struct bt__call *a)
{
    return core->staged_run(c, st, a);
}

void bt__stage_free(struct bt__stage *st)
{
    core->stage_free(st);
}

int bt__nccl_create(struct bt_comm *c, int dev)
{
    return core->nccl_create(c, dev);
}

int bt__nccl_available(char *why, size_t cap)
{
    return core->nccl_available(why, cap);
}
