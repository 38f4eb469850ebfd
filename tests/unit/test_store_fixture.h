/* test_store_fixture.h: a store server on 127.0.0.1 (port 0) for the store tests, and small
 * helpers: connect a client, poll a condition with a bound, count open descriptors. */
#ifndef BT_TEST_STORE_FIXTURE_H
#define BT_TEST_STORE_FIXTURE_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rendezvous/store.h"

#define FX_TOKEN "job-1234-secret"

struct fx {
    struct bt__store_server *srv;
    int port;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct bt__err err = {0};
    assert_non_null(f);
    int rc = bt__store_server_create("127.0.0.1", 0, FX_TOKEN, &f->srv, &f->port, &err);
    if (rc != BT_OK)
        fail_msg("server create: %s", err.msg);
    assert_int_equal(bt__store_server_start(f->srv), BT_OK);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    bt__store_server_destroy(f->srv);
    free(f);
    return 0;
}

static int fx_try_connect(struct fx *f, const char *token, struct bt__store **s,
                          struct bt__err *err)
{
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(10.0), .what = "rendezvous store"};
    return bt__store_connect("127.0.0.1", f->port, token, &o, s, err);
}

static struct bt__store *fx_connect(struct fx *f)
{
    struct bt__store *s = NULL;
    struct bt__err err = {0};
    if (fx_try_connect(f, FX_TOKEN, &s, &err) != BT_OK)
        fail_msg("connect: %s", err.msg);
    return s;
}

/* Polls cond until it holds or seconds pass; returns whether it held. */
static int fx_until(int (*cond)(struct fx *, int), struct fx *f, int arg, double seconds)
{
    int64_t dl = bt__deadline_in(seconds);
    while (!cond(f, arg)) {
        if (bt__now_ns() > dl)
            return 0;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

static int fx_nwaiting_is(struct fx *f, int n)
{
    return bt__store_server_nwaiting(f->srv) == n;
}

static int fx_nclients_is(struct fx *f, int n)
{
    return bt__store_server_nclients(f->srv) == n;
}

static int fx_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#endif
