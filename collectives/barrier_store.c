/* barrier_store.c: a barrier over the rendezvous store (bt__barrier_store; bt_barrier itself runs
 * over the transports, see coll.c). Used where no transport is set up.
 * Barrier #k: every rank sets "w/<gen>/barrier/<k>/r<rank>" and ADDs 1 to ".../n"; the rank
 * whose ADD returns the world size sets ".../done"; everyone waits for "done". The wait runs in
 * one-second slices so that a failure the launcher posted ("l/<gen>/failure") ends it at once,
 * a stall is reported after BATON_STALL_WARN seconds naming the ranks not yet arrived, and the
 * timeout (BATON_TIMEOUT) names them too. Costs O(world) store round trips at the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/comm.h"
#include "common/log.h"
#include "common/param.h"

BT_PARAM_DBL(stall_warn_s, "BATON_STALL_WARN", 60.0)

/* Writes the ranks whose arrival key for barrier seq is missing into out ("1, 3"). */
static void missing_ranks(struct bt_comm *c, uint64_t seq, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int r = 0; r < c->size && n + 16 < cap; r++) {
        char key[96];
        void *v = NULL;
        size_t len;
        snprintf(key, sizeof(key), "%sbarrier/%llu/r%d", c->prefix, (unsigned long long)seq, r);
        if (bt__store_get(c->store, key, &v, &len, 0.001) == BT_OK) {
            free(v);
            continue;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s%d", n ? ", " : "", r);
    }
}

/* BT_OK with *failure set (malloc'd text) when the launcher posted a job failure. */
static void launcher_failure(struct bt_comm *c, char **failure)
{
    char key[64];
    size_t len;
    snprintf(key, sizeof(key), "l/%d/failure", c->generation);
    if (bt__store_get(c->store, key, (void **)failure, &len, 0.001) != BT_OK)
        *failure = NULL;
}

static int arrive(struct bt_comm *c, uint64_t seq, char *done_key, size_t cap)
{
    char key[96];
    int64_t n;
    snprintf(key, sizeof(key), "%sbarrier/%llu/r%d", c->prefix, (unsigned long long)seq, c->rank);
    if (bt__store_set(c->store, key, "1", 1) != BT_OK)
        return bt__err_set(&c->err, BT_ERR_REMOTE, "barrier #%llu: %s",
                           (unsigned long long)seq, bt__store_error(c->store));
    snprintf(key, sizeof(key), "%sbarrier/%llu/n", c->prefix, (unsigned long long)seq);
    snprintf(done_key, cap, "%sbarrier/%llu/done", c->prefix, (unsigned long long)seq);
    if (bt__store_add(c->store, key, 1, &n) != BT_OK ||
        (n == c->size && bt__store_set(c->store, done_key, "1", 1) != BT_OK))
        return bt__err_set(&c->err, BT_ERR_REMOTE, "barrier #%llu: %s",
                           (unsigned long long)seq, bt__store_error(c->store));
    return BT_OK;
}

int bt__barrier_store(bt_comm *c)
{
    if (!c)
        return BT_ERR_INVALID_ARG;
    if (c->err.code != BT_OK)
        return c->err.code;
    if (c->size == 1)
        return BT_OK;
    uint64_t seq = c->barrier_seq++;
    char done_key[96], who[256];
    BT_CHECK(arrive(c, seq, done_key, sizeof(done_key)));
    const char *keys[1] = {done_key};
    double waited = 0, timeout = bt__comm_timeout_s();
    int warned = 0;
    for (;;) {
        int rc = bt__store_wait(c->store, keys, 1, 1.0);
        if (rc == BT_OK)
            return BT_OK;
        if (rc != BT_ERR_TIMEOUT)
            return bt__err_set(&c->err, rc, "barrier #%llu: %s", (unsigned long long)seq,
                               bt__store_error(c->store));
        waited += 1.0;
        char *failure = NULL;
        launcher_failure(c, &failure);
        if (failure) {
            bt__err_set(&c->err, BT_ERR_REMOTE, "barrier #%llu: the job failed: %s",
                        (unsigned long long)seq, failure);
            free(failure);
            return BT_ERR_REMOTE;
        }
        if (waited >= timeout || (!warned && waited >= bt__param_stall_warn_s())) {
            missing_ranks(c, seq, who, sizeof(who));
            if (waited >= timeout)
                return bt__err_set(&c->err, BT_ERR_TIMEOUT,
                                   "barrier #%llu timed out after %.0f s: rank(s) %s never "
                                   "arrived; hint: BATON_TIMEOUT sets the limit",
                                   (unsigned long long)seq, waited, who);
            BT_WARN(COLL, "barrier #%llu: still waiting after %.0f s for rank(s) %s",
                    (unsigned long long)seq, waited, who);
            warned = 1;
        }
    }
}
