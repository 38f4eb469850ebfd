/* test_store_relay.c: a node's relay (rendezvous/relay.c) in front of the store: many
 * workers, one store connection, which the launcher's own two connections ride on too; the worker
 * token's rule holds per channel; a GET parked by one worker does not hold the others; a dead relay
 * or a lost store fails the workers' next request with BT_ERR_REMOTE, and a worker that cannot
 * reach the relay is told so. */
#include <pthread.h>
#include <stdio.h>

#include "common/auth.h"
#include "test_store_fixture.h"

#define NW 16

static struct bt__store *relay_client(struct fx *f, const char *addr, const char *token)
{
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(10.0), .what = "rendezvous store"};
    setenv("BATON_RDZV_RELAY", addr, 1);
    int rc = bt__store_connect_worker("127.0.0.1", f->port, token, &o, &s, &err);
    unsetenv("BATON_RDZV_RELAY");
    if (rc != BT_OK)
        fail_msg("connect through the relay: %s", err.msg);
    return s;
}

static struct bt__store_relay *relay_start(struct fx *f)
{
    struct bt__store_relay *r = NULL;
    struct bt__err err = {0};
    if (bt__store_relay_create("127.0.0.1", f->port, FX_TOKEN, &r, &err) != BT_OK)
        fail_msg("relay: %s", err.msg);
    return r;
}

static void wtoken(char out[BT__AUTH_WORKER_TOKEN])
{
    assert_int_equal(bt__auth_worker_token(FX_TOKEN, out), 0);
}

/* NW workers through one relay: the store holds one connection; every request works. */
static void test_one_connection_per_node(void **state)
{
    struct fx *f = *state;
    struct bt__store_relay *r = relay_start(f);
    char tok[BT__AUTH_WORKER_TOKEN];
    wtoken(tok);
    struct bt__store *w[NW];
    for (int i = 0; i < NW; i++) {
        char k[32], v[32];
        w[i] = relay_client(f, bt__store_relay_address(r), tok);
        snprintf(k, sizeof(k), "w/addr/%d", i);
        snprintf(v, sizeof(v), "10.0.0.%d", i);
        assert_int_equal(bt__store_set(w[i], k, v, strlen(v)), BT_OK);
    }
    assert_int_equal(bt__store_server_nclients(f->srv), 1);
    assert_int_equal(bt__store_relay_nclients(r), NW);
    int64_t n = 0;
    for (int i = 0; i < NW; i++)
        assert_int_equal(bt__store_add(w[i], "w/count", 1, &n), BT_OK);
    assert_int_equal(n, NW);
    const char *keys[NW];
    char names[NW][32];
    void *vals[NW];
    size_t lens[NW];
    for (int i = 0; i < NW; i++) {
        snprintf(names[i], sizeof(names[i]), "w/addr/%d", i);
        keys[i] = names[i];
    }
    assert_int_equal(bt__store_multi_get(w[3], keys, NW, vals, lens, 1.0), BT_OK);
    assert_memory_equal(vals[7], "10.0.0.7", 8);
    for (int i = 0; i < NW; i++)
        free(vals[i]);
    /* The worker token's rule, enforced by the store per channel. */
    assert_int_equal(bt__store_set(w[0], "l/0/outcome", "F 1", 3), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt__store_error(w[0]), "a worker's token may not write it"));
    assert_int_equal(bt__store_ping(w[0]), BT_OK);
    /* A timed-out GET names its key, as without the relay. */
    void *got = NULL;
    size_t glen;
    assert_int_equal(bt__store_get(w[1], "w/never", &got, &glen, 0.05), BT_ERR_TIMEOUT);
    assert_non_null(strstr(bt__store_error(w[1]), "w/never"));
    for (int i = 0; i < NW; i++)
        bt__store_close(w[i]);
    assert_true(fx_until(fx_nclients_is, f, 1, 5.0)); /* goodbyes closed channels only */
    bt__store_relay_destroy(r);
    assert_true(fx_until(fx_nclients_is, f, 0, 5.0));
}

struct getter {
    struct bt__store *s;
    int rc;
    char val[16];
};

static void *get_thread(void *arg)
{
    struct getter *g = arg;
    void *v = NULL;
    size_t len;
    g->rc = bt__store_get(g->s, "w/go", &v, &len, 10.0);
    if (g->rc == BT_OK)
        snprintf(g->val, sizeof(g->val), "%s", (char *)v);
    free(v);
    return NULL;
}

/* A GET parked on one channel leaves the others free: the SET that wakes it comes through
 * the same relay connection. A job-token client of the relay may write l/ keys. */
static void test_parked_get_does_not_block_others(void **state)
{
    struct fx *f = *state;
    struct bt__store_relay *r = relay_start(f);
    char tok[BT__AUTH_WORKER_TOKEN];
    wtoken(tok);
    struct getter g = {.s = relay_client(f, bt__store_relay_address(r), tok), .rc = -1};
    struct bt__store *b = relay_client(f, bt__store_relay_address(r), FX_TOKEN);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_thread, &g), 0);
    assert_true(fx_until(fx_nwaiting_is, f, 1, 5.0));
    assert_int_equal(bt__store_set(b, "l/0/ok", "1", 1), BT_OK);
    assert_int_equal(bt__store_set(b, "w/go", "yes", 3), BT_OK);
    pthread_join(t, NULL);
    assert_int_equal(g.rc, BT_OK);
    assert_string_equal(g.val, "yes");
    bt__store_close(g.s);
    bt__store_close(b);
    bt__store_relay_destroy(r);
}

/* A worker's last will fires when it dies without goodbye (its relay says CHAN_LOST); when
 * the relay dies, a parked worker gets BT_ERR_REMOTE at once, and a new worker is told it
 * cannot reach the relay. */
static void test_dead_relay_and_last_will(void **state)
{
    struct fx *f = *state;
    struct bt__store_relay *r = relay_start(f);
    char tok[BT__AUTH_WORKER_TOKEN], addr[128];
    wtoken(tok);
    snprintf(addr, sizeof(addr), "%s", bt__store_relay_address(r));
    struct bt__store *gone = relay_client(f, addr, tok);
    assert_int_equal(bt__store_last_will(gone, "w/lost/5", "rank 5", 6), BT_OK);
    bt__store_abandon(gone);
    struct bt__store *w = relay_client(f, addr, tok);
    void *got = NULL;
    size_t glen;
    assert_int_equal(bt__store_get(w, "w/lost/5", &got, &glen, 5.0), BT_OK);
    assert_string_equal(got, "rank 5");
    free(got);
    struct getter g = {.s = w, .rc = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_thread, &g), 0);
    assert_true(fx_until(fx_nwaiting_is, f, 1, 5.0));
    int64_t t0 = bt__now_ns();
    bt__store_relay_destroy(r);
    pthread_join(t, NULL);
    assert_int_equal(g.rc, BT_ERR_REMOTE);
    assert_true(bt__now_ns() - t0 < 3000000000LL);
    assert_true(fx_until(fx_nclients_is, f, 0, 5.0));
    assert_true(fx_until(fx_nwaiting_is, f, 0, 5.0)); /* its channel's GET went with it */
    bt__store_close(w);
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    setenv("BATON_RDZV_RELAY", addr, 1);
    assert_int_equal(bt__store_connect_worker("127.0.0.1", f->port, tok, NULL, &s, &err),
                     BT_ERR_REMOTE);
    unsetenv("BATON_RDZV_RELAY");
    assert_null(s);
    assert_non_null(strstr(err.msg, "cannot reach this node's relay"));
    assert_non_null(strstr(err.msg, "baton run"));
}

/* The store goes away: the relay hangs up on its workers (BT_ERR_REMOTE on their next
 * request), and a wrong token is refused by the relay as by the store. */
static void test_lost_store_and_wrong_token(void **state)
{
    struct fx *f = *state;
    struct bt__store_relay *r = relay_start(f);
    char tok[BT__AUTH_WORKER_TOKEN];
    wtoken(tok);
    struct bt__store *w = relay_client(f, bt__store_relay_address(r), tok);
    assert_int_equal(bt__store_ping(w), BT_OK);
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    setenv("BATON_RDZV_RELAY", bt__store_relay_address(r), 1);
    assert_int_equal(bt__store_connect_worker("127.0.0.1", f->port, "another-job", NULL, &s, &err),
                     BT_ERR_AUTH);
    unsetenv("BATON_RDZV_RELAY");
    bt__store_server_destroy(f->srv);
    f->srv = NULL;
    void *got = NULL;
    size_t glen;
    assert_int_equal(bt__store_get(w, "w/x", &got, &glen, 5.0), BT_ERR_REMOTE);
    bt__store_close(w);
    bt__store_relay_destroy(r);
}

static struct bt__store *own_channel(struct fx *f, const char *addr)
{
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(10.0), .what = "rendezvous store"};
    if (bt__store_connect_relay(addr, "127.0.0.1", f->port, FX_TOKEN, &o, &s, &err) != BT_OK)
        fail_msg("a launcher's channel: %s", err.msg);
    return s;
}

/* What `baton run` does on a node of 8 workers: it connects to the store itself, hands the
 * connection to its relay, and rides on it as two channels (main, watcher) beside the
 * workers'. The store holds one connection; the launcher's channels keep their capability, two
 * last wills and a heartbeat lease each: a watcher channel that falls silent loses its lease
 * and its wills fire while the connection and the other channels go on. A new connection
 * handed over replaces the old (after the store's host was lost): the old channels are hung
 * up on, new ones work. */
static void test_launcher_rides_the_relay(void **state)
{
    struct fx *f = *state;
    struct bt__store_relay *r = relay_start(f);
    char tok[BT__AUTH_WORKER_TOKEN], addr[128];
    wtoken(tok);
    snprintf(addr, sizeof(addr), "%s", bt__store_relay_address(r));
    bt__store_relay_adopt(r, bt__store_detach(fx_connect(f)));
    struct bt__store *main_ch = own_channel(f, addr), *watch = own_channel(f, addr);
    struct bt__store *w[8];
    for (int i = 0; i < 8; i++) {
        char k[32];
        w[i] = relay_client(f, addr, tok);
        snprintf(k, sizeof(k), "w/0/addr/%d", i);
        assert_int_equal(bt__store_set(w[i], k, "x", 1), BT_OK);
    }
    assert_int_equal(bt__store_server_nclients(f->srv), 1); /* nodes: 1 */
    assert_int_equal(bt__store_set(main_ch, "l/0/node/1", "8 100 0 h1", 10), BT_OK);
    assert_int_equal(bt__store_last_will(main_ch, "l/0/outcome", "L 129\tmain", 10), BT_OK);
    assert_int_equal(bt__store_last_will(watch, "l/0/outcome", "L 129\twatch", 11), BT_OK);
    assert_int_equal(bt__store_last_will(watch, "l/0/lost/1", "lost", 4), BT_OK);
    assert_int_equal(bt__store_heartbeat(watch, 0.3), BT_OK);
    void *v = NULL;
    size_t len;
    /* The watcher sends nothing: its lease runs out although main and the workers talk. */
    assert_int_equal(bt__store_get(main_ch, "l/0/lost/1", &v, &len, 10.0), BT_OK);
    assert_string_equal(v, "lost");
    free(v);
    assert_int_equal(bt__store_get(w[2], "l/0/outcome", &v, &len, 1.0), BT_OK);
    assert_string_equal(v, "L 129\twatch");
    free(v);
    assert_int_equal(bt__store_ping(watch), BT_ERR_REMOTE); /* the store closed its channel */
    assert_int_equal(bt__store_ping(main_ch), BT_OK);
    assert_int_equal(bt__store_server_nclients(f->srv), 1);
    /* A new connection handed over: the old one's channels are hung up on. */
    bt__store_relay_adopt(r, bt__store_detach(fx_connect(f)));
    struct bt__store *main2 = own_channel(f, addr);
    assert_int_equal(bt__store_ping(main2), BT_OK);
    assert_int_equal(bt__store_ping(main_ch), BT_ERR_REMOTE);
    assert_int_equal(bt__store_ping(w[0]), BT_ERR_REMOTE);
    assert_true(fx_until(fx_nclients_is, f, 1, 5.0));
    for (int i = 0; i < 8; i++)
        bt__store_close(w[i]);
    bt__store_close(watch);
    bt__store_close(main_ch);
    bt__store_close(main2);
    bt__store_relay_destroy(r);
    assert_true(fx_until(fx_nclients_is, f, 0, 5.0));
}

int main(void)
{
    (void)fx_connect; /* the fixture's helpers this file does not need */
    (void)fx_count_fds;
    setenv("BATON_RDZV_IO_TIMEOUT", "10", 1);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
        T(test_one_connection_per_node),  T(test_parked_get_does_not_block_others),
        T(test_dead_relay_and_last_will), T(test_lost_store_and_wrong_token),
        T(test_launcher_rides_the_relay),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
