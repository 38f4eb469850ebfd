/* test_common.c: errors, params, endpoints, the logger's filters, and the socket layer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/param.h"
#include "common/sock.h"

static void test_strerror_table(void **state)
{
    (void)state;
    assert_string_equal(bt_strerror(BT_OK), "success");
    assert_string_equal(bt_strerror(BT_ERR_REMOTE),
                        "a remote peer failed or closed the connection");
    assert_string_equal(bt_strerror(BT_ERR_AUTH), "authentication failed");
    assert_string_equal(bt_strerror(9999), "unknown error code");
    assert_string_equal(bt_strerror(-1), "unknown error code");
}

static void test_err_sticky(void **state)
{
    (void)state;
    struct bt__err e = {0};
    assert_int_equal(bt__err_set(&e, BT_ERR_TIMEOUT, "first %d", 1), BT_ERR_TIMEOUT);
    assert_int_equal(bt__err_set(&e, BT_ERR_REMOTE, "second"), BT_ERR_REMOTE);
    assert_int_equal(e.code, BT_ERR_TIMEOUT);
    assert_string_equal(e.msg, "first 1");
    bt__err_reset(&e, BT_ERR_AUTH, "third");
    assert_string_equal(e.msg, "third");
    bt__err_clear(&e);
    assert_int_equal(e.code, BT_OK);
    assert_int_equal(bt__err_set(NULL, BT_ERR_SYSTEM, "x"), BT_ERR_SYSTEM);
}

static void test_parse_int(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(bt__parse_int("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(bt__parse_int("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(bt__parse_int("64M", &v), 0);
    assert_int_equal(v, 64LL << 20);
    assert_int_equal(bt__parse_int("4k", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(bt__parse_int("1G", &v), 0);
    assert_int_equal(v, 1LL << 30);
    assert_int_equal(bt__parse_int("", &v), -1);
    assert_int_equal(bt__parse_int("abc", &v), -1);
    assert_int_equal(bt__parse_int("12x", &v), -1);
    assert_int_equal(bt__parse_int("99999999999999999999", &v), -1);
    assert_int_equal(bt__parse_int("9999999999999G", &v), -1);
    double d;
    assert_int_equal(bt__parse_dbl("2.5", &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(bt__parse_dbl("nan", &d), -1);
    assert_int_equal(bt__parse_dbl("1e", &d), -1);
}

static void test_env_params(void **state)
{
    (void)state;
    setenv("BT_TEST_KNOB", "17", 1);
    assert_int_equal(bt__env_int("BT_TEST_KNOB", 3), 17);
    setenv("BT_TEST_KNOB", "bogus", 1);
    assert_int_equal(bt__env_int("BT_TEST_KNOB", 3), 3); /* malformed: default, with a WARN */
    unsetenv("BT_TEST_KNOB");
    assert_int_equal(bt__env_int("BT_TEST_KNOB", 3), 3);
    setenv("BT_TEST_KNOB", "0.25", 1);
    assert_true(bt__env_dbl("BT_TEST_KNOB", 1.0) == 0.25);
    assert_string_equal(bt__env_str("BT_TEST_KNOB", "d"), "0.25");
    setenv("BT_TEST_KNOB", "", 1);
    assert_string_equal(bt__env_str("BT_TEST_KNOB", "d"), "d");
}

static void test_parse_endpoint(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(bt__parse_endpoint("mnist-master-0:23457", host, sizeof(host), &port), 0);
    assert_string_equal(host, "mnist-master-0");
    assert_int_equal(port, 23457);
    assert_int_equal(bt__parse_endpoint("[::1]:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(bt__parse_endpoint("host", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint(":80", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint("h:70000", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint("h:-1", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint("h:12ab", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint("[::1]80", host, sizeof(host), &port), -1);
    assert_int_equal(bt__parse_endpoint(NULL, host, sizeof(host), &port), -1);
}

static void test_deadlines(void **state)
{
    (void)state;
    assert_int_equal(bt__ms_left(BT_DEADLINE_NONE), -1);
    assert_int_equal(bt__ms_left(bt__now_ns() - 1000), 0);
    int ms = bt__ms_left(bt__deadline_in(2.0));
    assert_true(ms > 1900 && ms <= 2000);
    assert_int_equal(bt__deadline_in(-1), BT_DEADLINE_NONE);
}

/* A listener on 127.0.0.1 port 0 and a connected pair through it. */
static void make_pair(int *lfd, int *cfd, int *sfd)
{
    struct bt__err err = {0};
    int port;
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 16, lfd, &port, &err), BT_OK);
    assert_true(port > 0);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5), .what = "test"};
    assert_int_equal(bt__sock_connect("127.0.0.1", port, &o, cfd, &err), BT_OK);
    struct pollfd p = {.fd = *lfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(bt__sock_accept(*lfd, sfd, &err), BT_OK);
    assert_true(*sfd >= 0);
}

static void test_sock_roundtrip_large(void **state)
{
    (void)state;
    int lfd, cfd, sfd;
    make_pair(&lfd, &cfd, &sfd);
    size_t n = 8 << 20; /* larger than socket buffers: exercises short writes and reads */
    char *a = malloc(n), *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        a[i] = (char)(i * 7 + 3);
    size_t soff = 0, roff = 0;
    struct bt__err err = {0};
    int64_t dl = bt__deadline_in(10);
    while (soff < n || roff < n) {
        assert_int_equal(bt__sock_progress(cfd, BT_SOCK_SEND, a, n, &soff, &err), BT_OK);
        assert_int_equal(bt__sock_progress(sfd, BT_SOCK_RECV, b, n, &roff, &err), BT_OK);
        assert_true(bt__now_ns() < dl);
    }
    assert_memory_equal(a, b, n);
    free(a);
    free(b);
    close(cfd);
    close(sfd);
    close(lfd);
}

static int tcp_opt(int fd, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, opt, &v, &len), 0);
    return v;
}

/* Every socket the layer tunes (both ends of a connection, and a bare one) gets the keepalive
 * knobs (set in main: 5, 2, 4) and TCP_USER_TIMEOUT = their span, (5 + 2 * 4) s. The TCP
 * transport's peer connections raise the latter to BATON_TIMEOUT (test_p2p.c). */
static void test_sock_keepalive_user_timeout(void **state)
{
    (void)state;
    int lfd, fds[3];
    make_pair(&lfd, &fds[0], &fds[1]);
    fds[2] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[2] >= 0);
    bt__sock_tune(fds[2]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tcp_opt(fds[i], TCP_KEEPIDLE), 5);
        assert_int_equal(tcp_opt(fds[i], TCP_KEEPINTVL), 2);
        assert_int_equal(tcp_opt(fds[i], TCP_KEEPCNT), 4);
        assert_int_equal(tcp_opt(fds[i], TCP_USER_TIMEOUT), 13000);
        close(fds[i]);
    }
    close(lfd);
}

static void test_sock_peer_close_is_remote(void **state)
{
    (void)state;
    int lfd, cfd, sfd;
    make_pair(&lfd, &cfd, &sfd);
    close(cfd);
    char buf[16];
    struct bt__err err = {0};
    assert_int_equal(bt__sock_recv_all(sfd, buf, sizeof(buf), bt__deadline_in(5), &err),
                     BT_ERR_REMOTE);
    assert_non_null(strstr(err.msg, "closed by peer"));
    /* Sending to a closed peer: EPIPE/ECONNRESET (never SIGPIPE), reported as remote. */
    struct bt__err err2 = {0};
    char big[65536] = {0};
    int rc = BT_OK;
    for (int i = 0; i < 100 && rc == BT_OK; i++)
        rc = bt__sock_send_all(sfd, big, sizeof(big), bt__deadline_in(2), &err2);
    assert_int_equal(rc, BT_ERR_REMOTE);
    close(sfd);
    close(lfd);
}

static void test_sock_timeout_and_abort(void **state)
{
    (void)state;
    int lfd, cfd, sfd;
    make_pair(&lfd, &cfd, &sfd);
    char buf[4];
    size_t off = 0;
    struct bt__err err = {0};
    int64_t t0 = bt__now_ns();
    assert_int_equal(bt__sock_wait(sfd, BT_SOCK_RECV, buf, 4, &off, bt__deadline_in(0.2), NULL,
                                   &err),
                     BT_ERR_TIMEOUT);
    assert_true(bt__now_ns() - t0 >= 150000000LL);
    volatile int abort_flag = 1;
    struct bt__err err2 = {0};
    assert_int_equal(bt__sock_wait(sfd, BT_SOCK_RECV, buf, 4, &off, BT_DEADLINE_NONE, &abort_flag,
                                   &err2),
                     BT_ERR_REMOTE);
    close(cfd);
    close(sfd);
    close(lfd);
}

static void test_connect_refused_retries_then_times_out(void **state)
{
    (void)state;
    int lfd, port;
    struct bt__err err = {0};
    /* Bind a port and close it, so nothing listens there. */
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 1, &lfd, &port, &err), BT_OK);
    close(lfd);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(0.5),
                                 .what = "store",
                                 .hint = "is the master pod running?"};
    int fd;
    assert_int_equal(bt__sock_connect("127.0.0.1", port, &o, &fd, &err), BT_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "Connection refused"));
    assert_non_null(strstr(err.msg, "hint: is the master pod running?"));
    assert_non_null(strstr(err.msg, "attempt"));
}

static void test_connect_unresolvable_name(void **state)
{
    (void)state;
    struct bt__err err = {0};
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(0.3), .what = "store"};
    int fd;
    assert_int_equal(bt__sock_connect("no-such-host.invalid", 1234, &o, &fd, &err), BT_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "does not resolve"));
}

struct late_listener {
    int port;
    double delay_s;
};

static void *listen_late(void *arg)
{
    struct late_listener *l = arg;
    usleep((useconds_t)(l->delay_s * 1e6));
    int lfd, sfd = -1;
    struct bt__err err = {0};
    if (bt__sock_listen("127.0.0.1", l->port, 4, &lfd, NULL, &err) != BT_OK)
        return NULL;
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, 5000) == 1)
        bt__sock_accept(lfd, &sfd, &err);
    if (sfd >= 0)
        close(sfd);
    close(lfd);
    return NULL;
}

/* A peer that starts listening after we began connecting (a master pod that starts late). */
static void test_connect_retries_until_listener_appears(void **state)
{
    (void)state;
    int lfd, port;
    struct bt__err err = {0};
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 1, &lfd, &port, &err), BT_OK);
    close(lfd);
    struct late_listener l = {port, 0.4};
    pthread_t th;
    pthread_create(&th, NULL, listen_late, &l);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5), .what = "store"};
    int fd;
    assert_int_equal(bt__sock_connect("127.0.0.1", port, &o, &fd, &err), BT_OK);
    close(fd);
    pthread_join(th, NULL);
}

struct abort_later {
    volatile int flag;
    double delay_s;
};

static void *set_flag_later(void *arg)
{
    struct abort_later *a = arg;
    usleep((useconds_t)(a->delay_s * 1e6));
    a->flag = 1;
    return NULL;
}

/* A connect that hangs (the listener's accept queue is full, so the kernel drops our SYNs, as
 * for a host that vanished) is given up within 100 ms of the abort flag, not after 5 s: how a
 * relay's teardown stops its dial (relay.c up_connect). */
static void test_connect_hanging_is_aborted(void **state)
{
    (void)state;
    int lfd, port, held[8], nheld = 0, hangs = 0;
    struct bt__err err = {0};
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 0, &lfd, &port, &err), BT_OK);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (nheld < 8 && !hangs) { /* fill the accept queue until a connect does not complete */
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(c >= 0);
        connect(c, (struct sockaddr *)&sa, sizeof(sa));
        struct pollfd p = {.fd = c, .events = POLLOUT};
        hangs = poll(&p, 1, 300) == 0;
        held[nheld++] = c;
    }
    assert_true(hangs);
    struct abort_later a = {0, 0.3};
    pthread_t th;
    pthread_create(&th, NULL, set_flag_later, &a);
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(20),
                                 .what = "store",
                                 .abort_flag = &a.flag};
    int fd = -1;
    int64_t t0 = bt__now_ns();
    assert_int_not_equal(bt__sock_connect("127.0.0.1", port, &o, &fd, &err), BT_OK);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    pthread_join(th, NULL);
    assert_int_equal(fd, -1);
    assert_true(took >= 0.25);
    assert_true(took < 2.5); /* 5 s (one attempt's bound) before the flag was looked at */
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    close(lfd);
}

static void test_listen_port_in_use_hint(void **state)
{
    (void)state;
    int lfd, port, lfd2;
    struct bt__err err = {0};
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 1, &lfd, &port, &err), BT_OK);
    assert_int_equal(bt__sock_listen("127.0.0.1", port, 1, &lfd2, NULL, &err), BT_ERR_SYSTEM);
    assert_non_null(strstr(err.msg, "Address already in use"));
    assert_non_null(strstr(err.msg, "hint:"));
    close(lfd);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* the layer must not rely on SIGPIPE being ignored */
    /* not the defaults: test_sock_keepalive_user_timeout sees the span follow the knobs */
    setenv("BATON_KEEPALIVE_IDLE", "5", 1);
    setenv("BATON_KEEPALIVE_INTVL", "2", 1);
    setenv("BATON_KEEPALIVE_CNT", "4", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_table),
        cmocka_unit_test(test_err_sticky),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_env_params),
        cmocka_unit_test(test_parse_endpoint),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_sock_roundtrip_large),
        cmocka_unit_test(test_sock_keepalive_user_timeout),
        cmocka_unit_test(test_sock_peer_close_is_remote),
        cmocka_unit_test(test_sock_timeout_and_abort),
        cmocka_unit_test(test_connect_refused_retries_then_times_out),
        cmocka_unit_test(test_connect_unresolvable_name),
        cmocka_unit_test(test_connect_retries_until_listener_appears),
        cmocka_unit_test(test_connect_hanging_is_aborted),
        cmocka_unit_test(test_listen_port_in_use_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
