/* backend/device.c: the core's side of the device path (cuda.h): loads the CUDA plugin at
 * bt_init and hands it the calls whose buffers are on a GPU. The plugin (backend/cuda.c)
 * decides between NCCL and the staged path on the first such call.
 */
#include "collectives/backend/cuda.h"
#include "collectives/backend/plugin.h"
#include "collectives/comm.h"
#include "common/log.h"

int bt__device_init(struct bt_comm *c, struct bt__err *err)
{
    const struct bt__plugin *p;
    struct bt__err why = {0};
    if (bt__plugin_load("cuda", &p, &why) != BT_OK) {
        if (c->backend_choice == BT_BACKEND_NCCL)
            return bt__err_set(err, BT_ERR_INVALID_USAGE,
                               "BATON_BACKEND=nccl but the CUDA backend is missing: %s", why.msg);
        BT_INFO(INIT, "rank %d: no device path (%s): host buffers only", c->rank, why.msg);
        return BT_OK;
    }
    c->cuda = p;
    return p->device_init(c, err);
}

int bt__device_locate(struct bt_comm *c, const struct bt__call *a, int *dev)
{
    *dev = -1;
    if (!c->cuda || !c->cuda_state || a->kind == BT_COLL_BARRIER)
        return BT_OK;
    return c->cuda->device_locate(c, a, dev);
}

int bt__device_run(struct bt_comm *c, const struct bt__call *a, int dev)
{
    return c->cuda->device_run(c, a, dev);
}

void bt__device_destroy(struct bt_comm *c)
{
    if (c->cuda)
        c->cuda->device_destroy(c);
}
