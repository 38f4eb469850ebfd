/* test_store.c: the rendezvous store's commands through the client API, against a server
 * running on a thread of this process. Blocking calls are woken by other clients on other
 * threads; the bad-peer cases are in test_store_badpeer.c. */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rendezvous/proto.h"

#include "common/auth.h"
#include "test_store_fixture.h"

static void get_str(struct bt__store *s, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    if (bt__store_get(s, key, &v, &n, 5.0) != BT_OK)
        fail_msg("GET %s: %s", key, bt__store_error(s));
    assert_int_equal(n, strlen(want));
    assert_string_equal(v, want); /* NUL-terminated one past the end */
    free(v);
}

static void test_set_get_ping(void **state)
{
    struct bt__store *s = fx_connect(*state);
    assert_int_equal(bt__store_ping(s), BT_OK);
    assert_int_equal(bt__store_set(s, "addr/0", "10.0.0.1:29500", 14), BT_OK);
    get_str(s, "addr/0", "10.0.0.1:29500");
    assert_int_equal(bt__store_set(s, "addr/0", "x", 1), BT_OK); /* overwrite */
    get_str(s, "addr/0", "x");
    assert_int_equal(bt__store_set(s, "empty", "", 0), BT_OK); /* an empty value exists */
    get_str(s, "empty", "");
    bt__store_close(s);
}

static void test_get_timeout_names_key(void **state)
{
    struct bt__store *s = fx_connect(*state);
    void *v = (void *)1;
    size_t n = 7;
    int64_t t0 = bt__now_ns();
    assert_int_equal(bt__store_get(s, "rank/7/addr", &v, &n, 0.2), BT_ERR_TIMEOUT);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    assert_true(took >= 0.19 && took < 3.0);
    assert_null(v);
    assert_non_null(strstr(bt__store_error(s), "rank/7/addr"));
    assert_non_null(strstr(bt__store_error(s), "timed out"));
    /* Not sticky: the same handle keeps working. */
    assert_int_equal(bt__store_ping(s), BT_OK);
    assert_int_equal(bt__store_get(s, "nothing", &v, &n, 0), BT_ERR_TIMEOUT);
    assert_int_equal(bt__store_set(s, "rank/7/addr", "a", 1), BT_OK);
    get_str(s, "rank/7/addr", "a");
    bt__store_close(s);
    assert_true(fx_until(fx_nwaiting_is, *state, 0, 5));
}

struct getter {
    struct fx *f;
    const char *key;
    int rc;
    char val[64];
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    struct bt__store *s = fx_connect(g->f);
    void *v = NULL;
    size_t n;
    g->rc = bt__store_get(s, g->key, &v, &n, 20.0);
    if (g->rc == BT_OK)
        snprintf(g->val, sizeof(g->val), "%s", (char *)v);
    free(v);
    bt__store_close(s);
    return NULL;
}

static void test_get_blocks_until_set(void **state)
{
    struct fx *f = *state;
    struct getter g[3] = {{f, "late", -1, ""}, {f, "late", -1, ""}, {f, "other", -1, ""}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, getter_main, &g[i]);
    assert_true(fx_until(fx_nwaiting_is, f, 3, 10)); /* all three parked on the server */
    struct bt__store *s = fx_connect(f);
    assert_int_equal(bt__store_set(s, "late", "now", 3), BT_OK);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(g[i].rc, BT_OK);
        assert_string_equal(g[i].val, "now");
    }
    assert_true(fx_until(fx_nwaiting_is, f, 1, 10)); /* "other" still waits */
    assert_int_equal(bt__store_set(s, "other", "too", 3), BT_OK);
    pthread_join(th[2], NULL);
    assert_int_equal(g[2].rc, BT_OK);
    assert_string_equal(g[2].val, "too");
    bt__store_close(s);
}

static void test_wait_names_missing_keys(void **state)
{
    struct bt__store *s = fx_connect(*state);
    const char *keys[] = {"w/a", "w/b", "w/c", "w/a"};
    assert_int_equal(bt__store_set(s, "w/a", "1", 1), BT_OK);
    assert_int_equal(bt__store_wait(s, keys, 4, 0.3), BT_ERR_TIMEOUT);
    const char *e = bt__store_error(s);
    assert_non_null(strstr(e, "still missing 2 key(s): w/b, w/c"));
    assert_null(strstr(e, "w/a"));
    assert_int_equal(bt__store_wait(s, keys, 0, 1.0), BT_OK);
    const char *two[] = {"w/b", "w/c"};
    const void *vals[] = {"2", "3"};
    size_t lens[] = {1, 1};
    assert_int_equal(bt__store_multi_set(s, two, 2, vals, lens), BT_OK);
    assert_int_equal(bt__store_wait(s, keys, 4, 1.0), BT_OK);
    bt__store_close(s);
}

static void test_wait_lists_many_missing(void **state)
{
    struct bt__store *s = fx_connect(*state);
    enum { N = 100 };
    char names[N][16];
    const char *keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "node/%d", i);
        keys[i] = names[i];
    }
    assert_int_equal(bt__store_set(s, "node/0", "up", 2), BT_OK);
    assert_int_equal(bt__store_wait(s, keys, N, 0.1), BT_ERR_TIMEOUT);
    assert_non_null(strstr(bt__store_error(s), "still missing 99 key(s): node/1, node/2"));
    assert_non_null(strstr(bt__store_error(s), "more"));
    bt__store_close(s);
}

static void test_compare_set(void **state)
{
    struct bt__store *s = fx_connect(*state);
    void *a = NULL;
    size_t al = 0;
    /* Missing key, non-empty expected: nothing set. */
    assert_int_equal(bt__store_compare_set(s, "cas", "x", 1, "y", 1, &a, &al), BT_OK);
    assert_int_equal(al, 0);
    assert_string_equal(a, "");
    free(a);
    /* Missing key, empty expected: set. */
    assert_int_equal(bt__store_compare_set(s, "cas", "", 0, "first", 5, &a, &al), BT_OK);
    assert_string_equal(a, "first");
    free(a);
    /* Wrong expected: unchanged, actual is the current value. */
    assert_int_equal(bt__store_compare_set(s, "cas", "nope", 4, "second", 6, &a, &al), BT_OK);
    assert_string_equal(a, "first");
    free(a);
    /* Right expected: swapped. actual may be NULL. */
    assert_int_equal(bt__store_compare_set(s, "cas", "first", 5, "second", 6, NULL, NULL), BT_OK);
    get_str(s, "cas", "second");
    bt__store_close(s);
}

struct adder {
    struct fx *f;
    int n, rc;
};

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    struct bt__store *s = fx_connect(a->f);
    a->rc = BT_OK;
    for (int i = 0; i < a->n && a->rc == BT_OK; i++)
        a->rc = bt__store_add(s, "counter", 1, NULL);
    bt__store_close(s);
    return NULL;
}

static void test_add_concurrent(void **state)
{
    enum { T = 6, N = 300 };
    struct adder a[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        a[i] = (struct adder){*state, N, -1};
        pthread_create(&th[i], NULL, adder_main, &a[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].rc, BT_OK);
    }
    struct bt__store *s = fx_connect(*state);
    int64_t v = -1;
    assert_int_equal(bt__store_add(s, "counter", 0, &v), BT_OK);
    assert_int_equal(v, T * N);
    get_str(s, "counter", "1800"); /* counters are decimal text */
    assert_int_equal(bt__store_add(s, "counter", -1800 - 5, &v), BT_OK);
    assert_int_equal(v, -5);
    assert_int_equal(bt__store_set(s, "text", "abc", 3), BT_OK);
    assert_int_equal(bt__store_add(s, "text", 1, &v), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt__store_error(s), "not an integer"));
    assert_int_equal(bt__store_ping(s), BT_OK); /* a refused request leaves it usable */
    bt__store_close(s);
}

struct mgetter {
    struct fx *f;
    int rc;
    char got[3][8];
};

static void *mgetter_main(void *arg)
{
    struct mgetter *m = arg;
    struct bt__store *s = fx_connect(m->f);
    const char *keys[] = {"m/1", "m/2", "m/3"};
    void *vals[3];
    size_t lens[3];
    m->rc = bt__store_multi_get(s, keys, 3, vals, lens, 20.0);
    for (int i = 0; i < 3 && m->rc == BT_OK; i++) {
        snprintf(m->got[i], sizeof(m->got[i]), "%s", (char *)vals[i]);
        free(vals[i]);
    }
    bt__store_close(s);
    return NULL;
}

static void test_multi_get_blocks(void **state)
{
    struct fx *f = *state;
    struct mgetter m = {f, -1, {""}};
    pthread_t th;
    pthread_create(&th, NULL, mgetter_main, &m);
    assert_true(fx_until(fx_nwaiting_is, f, 1, 10));
    struct bt__store *s = fx_connect(f);
    assert_int_equal(bt__store_set(s, "m/2", "two", 3), BT_OK);
    const char *rest[] = {"m/1", "m/3"};
    const void *vals[] = {"one", "three"};
    size_t lens[] = {3, 5};
    assert_int_equal(bt__store_multi_set(s, rest, 2, vals, lens), BT_OK);
    pthread_join(th, NULL);
    assert_int_equal(m.rc, BT_OK);
    assert_string_equal(m.got[0], "one");
    assert_string_equal(m.got[1], "two");
    assert_string_equal(m.got[2], "three");
    bt__store_close(s);
}

static void test_delete(void **state)
{
    struct bt__store *s = fx_connect(*state);
    int del = -1;
    assert_int_equal(bt__store_set(s, "d", "v", 1), BT_OK);
    assert_int_equal(bt__store_delete(s, "d", &del), BT_OK);
    assert_int_equal(del, 1);
    assert_int_equal(bt__store_delete(s, "d", &del), BT_OK);
    assert_int_equal(del, 0);
    void *v;
    size_t n;
    assert_int_equal(bt__store_get(s, "d", &v, &n, 0.05), BT_ERR_TIMEOUT);
    /* A WAIT that saw d, then lost it to a DELETE, waits again. */
    const char *keys[] = {"d", "e"};
    assert_int_equal(bt__store_set(s, "d", "v", 1), BT_OK);
    assert_int_equal(bt__store_delete(s, "d", NULL), BT_OK);
    assert_int_equal(bt__store_set(s, "e", "v", 1), BT_OK);
    assert_int_equal(bt__store_wait(s, keys, 2, 0.05), BT_ERR_TIMEOUT);
    assert_non_null(strstr(bt__store_error(s), "missing 1 key(s): d"));
    bt__store_close(s);
}

static void test_last_will(void **state)
{
    struct fx *f = *state;
    struct bt__store *w = fx_connect(f);
    void *v;
    size_t n;
    /* Abandoned: the will fires. */
    struct bt__store *a = fx_connect(f);
    assert_int_equal(bt__store_last_will(a, "failed/a", "rank 3 died", 11), BT_OK);
    bt__store_abandon(a);
    get_str(w, "failed/a", "rank 3 died");
    /* Closed with goodbye: it does not. */
    struct bt__store *b = fx_connect(f);
    assert_int_equal(bt__store_last_will(b, "failed/b", "x", 1), BT_OK);
    bt__store_close(b);
    assert_true(fx_until(fx_nclients_is, f, 1, 5));
    assert_int_equal(bt__store_get(w, "failed/b", &v, &n, 0.1), BT_ERR_TIMEOUT);
    /* Cancelled with an empty value: it does not. */
    struct bt__store *c = fx_connect(f);
    assert_int_equal(bt__store_last_will(c, "failed/c", "x", 1), BT_OK);
    assert_int_equal(bt__store_last_will(c, "failed/c", NULL, 0), BT_OK);
    bt__store_abandon(c);
    assert_true(fx_until(fx_nclients_is, f, 1, 5));
    assert_int_equal(bt__store_get(w, "failed/c", &v, &n, 0.1), BT_ERR_TIMEOUT);
    /* First failure wins: a second will on the same key leaves the first value. */
    struct bt__store *d = fx_connect(f);
    assert_int_equal(bt__store_last_will(d, "failed/a", "later", 5), BT_OK);
    bt__store_abandon(d);
    assert_true(fx_until(fx_nclients_is, f, 1, 5));
    get_str(w, "failed/a", "rank 3 died");
    /* Two wills on different keys both fire; a will for a key already willed replaces it; a
     * third key is refused; an empty value cancels both. */
    struct bt__store *g = fx_connect(f);
    assert_int_equal(bt__store_last_will(g, "two/outcome", "old", 3), BT_OK);
    assert_int_equal(bt__store_last_will(g, "two/lost", "g lost", 6), BT_OK);
    assert_int_equal(bt__store_last_will(g, "two/outcome", "L 129", 5), BT_OK);
    assert_int_equal(bt__store_last_will(g, "two/third", "x", 1), BT_ERR_INVALID_ARG);
    bt__store_abandon(g);
    get_str(w, "two/outcome", "L 129");
    get_str(w, "two/lost", "g lost");
    assert_int_equal(bt__store_get(w, "two/third", &v, &n, 0.1), BT_ERR_TIMEOUT);
    struct bt__store *h = fx_connect(f);
    assert_int_equal(bt__store_last_will(h, "two/h1", "x", 1), BT_OK);
    assert_int_equal(bt__store_last_will(h, "two/h2", "x", 1), BT_OK);
    assert_int_equal(bt__store_last_will(h, "x", NULL, 0), BT_OK);
    bt__store_abandon(h);
    assert_true(fx_until(fx_nclients_is, f, 1, 5));
    assert_int_equal(bt__store_get(w, "two/h1", &v, &n, 0.1), BT_ERR_TIMEOUT);
    assert_int_equal(bt__store_get(w, "two/h2", &v, &n, 0.1), BT_ERR_TIMEOUT);
    bt__store_close(w);
}

static void test_big_values_and_caps(void **state)
{
    struct bt__store *s = fx_connect(*state);
    size_t big = BT__RDZV_MAX_VALUE;
    char *buf = malloc(big + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < big + 1; i++)
        buf[i] = (char)('a' + i % 26);
    assert_int_equal(bt__store_set(s, "big", buf, big), BT_OK);
    void *v = NULL;
    size_t n = 0;
    assert_int_equal(bt__store_get(s, "big", &v, &n, 5.0), BT_OK);
    assert_int_equal(n, big);
    assert_memory_equal(v, buf, big);
    free(v);
    assert_int_equal(bt__store_set(s, "big2", buf, big + 1), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt__store_error(s), "cap"));
    char key[BT__RDZV_MAX_KEY + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(bt__store_set(s, key, "v", 1), BT_ERR_INVALID_ARG);
    key[BT__RDZV_MAX_KEY] = '\0'; /* exactly the cap is fine */
    assert_int_equal(bt__store_set(s, key, "v", 1), BT_OK);
    get_str(s, key, "v");
    assert_int_equal(bt__store_set(s, "", "v", 1), BT_ERR_INVALID_ARG);
    assert_int_equal(bt__store_ping(s), BT_OK);
    free(buf);
    bt__store_close(s);
}

static void test_wrong_token_refused(void **state)
{
    struct fx *f = *state;
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    assert_int_equal(fx_try_connect(f, "another-job", &s, &err), BT_ERR_AUTH);
    assert_null(s);
    assert_non_null(strstr(err.msg, "refused our token"));
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    struct bt__err e2 = {0};
    assert_int_equal(fx_try_connect(f, "", &s, &e2), BT_ERR_AUTH);
    s = fx_connect(f); /* the right token still gets in */
    assert_int_equal(bt__store_ping(s), BT_OK);
    bt__store_close(s);
}

static void test_empty_token(void **state)
{
    (void)state;
    struct bt__store_server *srv;
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    int port;
    assert_int_equal(bt__store_server_create("127.0.0.1", 0, "", &srv, &port, &err), BT_OK);
    assert_int_equal(bt__store_server_start(srv), BT_OK);
    assert_int_equal(bt__store_connect("127.0.0.1", port, "", NULL, &s, &err), BT_OK);
    assert_int_equal(bt__store_ping(s), BT_OK);
    bt__store_close(s);
    bt__store_server_destroy(srv);
}

static void test_no_fd_leak(void **state)
{
    struct fx *f = *state;
    struct bt__store *warm = fx_connect(f);
    bt__store_close(warm);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    int before = fx_count_fds();
    for (int i = 0; i < 300; i++) {
        struct bt__store *s = fx_connect(f);
        if (i % 3 == 0) {
            const char *k[] = {"never"};
            assert_int_equal(bt__store_wait(s, k, 1, 0), BT_ERR_TIMEOUT);
        }
        if (i % 2)
            bt__store_close(s);
        else
            bt__store_abandon(s);
    }
    assert_true(fx_until(fx_nclients_is, f, 0, 10));
    assert_int_equal(fx_count_fds(), before);
}

/* A process that forks while it hosts the store (baton run, ps_bench) gives its children copies
 * of the server's client sockets. When such a client leaves, the server's close() alone would
 * leave the socket in the epoll set (its file lives on in the child) with a pointer to the freed
 * connection: the loop must remove it first. Under ASan the old bug is a use-after-free. */
static void test_fork_keeps_sockets_alive(void **state)
{
    struct fx *f = *state;
    struct bt__store *a = fx_connect(f);
    assert_int_equal(bt__store_set(a, "k", "v", 1), BT_OK);
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t child = fork();
    if (child == 0) { /* holds the server's sockets (not the clients') until the gate closes */
        char b;
        close(gate[1]);
        for (int fd = 3; fd < 4096; fd++) {
            struct sockaddr_in peer;
            socklen_t len = sizeof(peer);
            if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
                peer.sin_family == AF_INET && ntohs(peer.sin_port) == f->port)
                close(fd);
        }
        while (read(gate[0], &b, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    close(gate[0]);
    bt__store_close(a);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    int spare[16]; /* reuse the freed fd numbers for things that are not sockets */
    for (int i = 0; i < 16; i++)
        spare[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < 20; i++) {
        struct bt__store *s = fx_connect(f);
        void *v = NULL;
        size_t len;
        assert_int_equal(bt__store_get(s, "k", &v, &len, 5), BT_OK);
        assert_memory_equal(v, "v", 1);
        free(v);
        bt__store_close(s);
    }
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    close(gate[1]);
    waitpid(child, NULL, 0);
    for (int i = 0; i < 16; i++)
        if (spare[i] >= 0)
            close(spare[i]);
}

static void test_abandon_while_parked(void **state)
{
    struct fx *f = *state;
    struct getter g = {f, "never", -1, ""};
    pthread_t th;
    pthread_create(&th, NULL, getter_main, &g);
    assert_true(fx_until(fx_nwaiting_is, f, 1, 10));
    /* Stopping the server under a parked client: the client fails, it does not hang. */
    bt__store_server_destroy(f->srv);
    pthread_join(th, NULL);
    assert_int_equal(g.rc, BT_ERR_REMOTE);
    struct bt__err err = {0};
    assert_int_equal(bt__store_server_create("127.0.0.1", 0, FX_TOKEN, &f->srv, &f->port, &err),
                     BT_OK); /* for the teardown */
}

static void test_stop_and_run_on_caller(void **state)
{
    (void)state;
    struct bt__store_server *srv;
    struct bt__err err = {0};
    int port;
    assert_int_equal(bt__store_server_create(NULL, 0, "t", &srv, &port, &err), BT_OK);
    bt__store_server_stop(srv); /* before run: run returns at once */
    assert_int_equal(bt__store_server_run(srv), BT_OK);
    bt__store_server_destroy(srv);
    bt__store_server_destroy(NULL);
    bt__store_close(NULL);
    bt__store_abandon(NULL);
}

/* A heartbeat lease: a client that keeps sending stays; one that goes silent (alive, socket
 * open) is closed after the lease and its will fires; a cancelled lease never fires. */
static void test_heartbeat_lease(void **state)
{
    struct fx *f = *state;
    struct bt__store *w = fx_connect(f), *a = fx_connect(f), *b = fx_connect(f);
    void *v;
    size_t n;
    assert_int_equal(bt__store_last_will(a, "lost/a", "a froze", 7), BT_OK);
    assert_int_equal(bt__store_heartbeat(a, 0.3), BT_OK);
    assert_int_equal(bt__store_last_will(b, "lost/b", "b froze", 7), BT_OK);
    assert_int_equal(bt__store_heartbeat(b, 0.3), BT_OK);
    for (int i = 0; i < 5; i++) /* b beats: 5 GETs of 0.1 s, 0.5 s in all */
        assert_int_equal(bt__store_get(b, "nothing", &v, &n, 0.1), BT_ERR_TIMEOUT);
    assert_int_equal(bt__store_heartbeat(b, 0), BT_OK);
    get_str(w, "lost/a", "a froze"); /* a sent nothing since: its lease ran out */
    assert_true(fx_until(fx_nclients_is, f, 2, 5));
    assert_int_equal(bt__store_get(w, "lost/b", &v, &n, 0.5), BT_ERR_TIMEOUT);
    assert_int_equal(bt__store_ping(b), BT_OK);
    bt__store_abandon(a);
    bt__store_close(b);
    bt__store_close(w);
}

/* The audit's case: a worker holding BATON_TOKEN (the worker token) cannot end the launchers
 * by setting l/<g>/outcome, nor touch any other launcher key; it writes its own keys and reads
 * everything; the launcher (job token) writes l/ keys as before. */
static void test_worker_capability(void **state)
{
    struct fx *f = *state;
    char wtoken[BT__AUTH_WORKER_TOKEN];
    struct bt__store *w = NULL;
    struct bt__err err = {0};
    int64_t v;
    int existed = -1;
    assert_int_equal(bt__auth_worker_token(FX_TOKEN, wtoken), 0);
    assert_int_equal(strlen(wtoken), 64);
    assert_string_not_equal(wtoken, FX_TOKEN);
    if (fx_try_connect(f, wtoken, &w, &err) != BT_OK)
        fail_msg("worker connect: %s", err.msg);
    assert_int_equal(bt__store_set(w, "l/0/outcome", "F 1", 3), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt__store_error(w), "l/0/outcome"));
    assert_non_null(strstr(bt__store_error(w), "a worker's token may not write it"));
    assert_int_equal(bt__store_broken(w), 0);
    assert_int_equal(bt__store_add(w, "l/0/joined", 1, &v), BT_ERR_INVALID_ARG);
    assert_int_equal(bt__store_compare_set(w, "l/0/stopped", "", 0, "3", 1, NULL, NULL),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt__store_delete(w, "l/0/node/0", &existed), BT_ERR_INVALID_ARG);
    assert_int_equal(bt__store_last_will(w, "l/0/outcome", "L 129", 5), BT_ERR_INVALID_ARG);
    const char *keys[] = {"w/0/a", "l/0/done"};
    const void *vals[] = {"1", "1"};
    size_t lens[] = {1, 1};
    assert_int_equal(bt__store_multi_set(w, keys, 2, vals, lens), BT_ERR_INVALID_ARG);
    void *got = NULL;
    size_t glen;
    assert_int_equal(bt__store_get(w, "w/0/a", &got, &glen, 0), BT_ERR_TIMEOUT); /* none set */
    /* Its own keys, as today; "l" without the slash is not a launcher key. */
    assert_int_equal(bt__store_set(w, "w/0/rank/3", "addr", 4), BT_OK);
    assert_int_equal(bt__store_add(w, "ps/0/next_index", 1, &v), BT_OK);
    assert_int_equal(bt__store_set(w, "l", "x", 1), BT_OK);
    assert_int_equal(bt__store_last_will(w, "w/0/lost", "x", 1), BT_OK);
    assert_int_equal(bt__store_last_will(w, "l/0/outcome", NULL, 0), BT_OK); /* cancel: fine */
    /* The launcher writes l/ keys; the worker reads them. */
    struct bt__store *l = fx_connect(f);
    assert_int_equal(bt__store_set(l, "l/0/outcome", "S 0", 3), BT_OK);
    assert_int_equal(bt__store_get(w, "l/0/outcome", &got, &glen, 1.0), BT_OK);
    assert_string_equal(got, "S 0");
    free(got);
    assert_int_equal(bt__store_delete(l, "l/0/outcome", &existed), BT_OK);
    assert_int_equal(existed, 1);
    bt__store_close(w);
    bt__store_close(l);
    /* A token derived from another job's is still refused. */
    char other[BT__AUTH_WORKER_TOKEN];
    assert_int_equal(bt__auth_worker_token("another-job", other), 0);
    assert_int_equal(fx_try_connect(f, other, &w, &err), BT_ERR_AUTH);
    assert_null(w);
}

int main(void)
{
    setenv("BATON_RDZV_IO_TIMEOUT", "10", 1);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
        T(test_set_get_ping),
        T(test_get_timeout_names_key),
        T(test_get_blocks_until_set),
        T(test_wait_names_missing_keys),
        T(test_wait_lists_many_missing),
        T(test_compare_set),
        T(test_add_concurrent),
        T(test_multi_get_blocks),
        T(test_delete),
        T(test_last_will),
        T(test_heartbeat_lease),
        T(test_big_values_and_caps),
        T(test_wrong_token_refused),
        T(test_worker_capability),
        cmocka_unit_test(test_empty_token),
        T(test_no_fd_leak),
        T(test_fork_keeps_sockets_alive),
        T(test_abandon_while_parked),
        cmocka_unit_test(test_stop_and_run_on_caller),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
