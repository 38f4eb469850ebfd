/* test_store_badpeer.c: peers that do not follow the rendezvous protocol, on raw sockets.
 *
 * Each case checks that the server drops the peer (it reads EOF) with the answer the
 * protocol promises (none, a version refusal, a token refusal), logs why with the peer's
 * address, leaks no descriptor, and that a good client still works afterwards. The client's
 * side of a bad *server* (wrong version, failed proof, not a store) uses a fake server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rendezvous/proto.h"
#include "test_store_fixture.h"

static char log_path[128];

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until the server closes (returns the bytes it sent first, up to cap, in buf) or
 * seconds pass (returns -1). */
static ssize_t raw_until_closed(int fd, void *buf, size_t cap, double seconds)
{
    size_t got = 0;
    char sink[4096];
    int64_t dl = bt__deadline_in(seconds);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, bt__ms_left(dl)) <= 0)
            return -1;
        char *dst = got < cap ? (char *)buf + got : sink;
        size_t room = got < cap ? cap - got : sizeof(sink);
        ssize_t n = recv(fd, dst, room, 0);
        if (n <= 0)
            return (ssize_t)(got < cap ? got : cap);
        got += (size_t)n;
    }
}

static void raw_hello(int fd, uint64_t magic, uint32_t version, uint8_t cn[BT__AUTH_NONCE])
{
    uint8_t h[BT__RDZV_HELLO_LEN];
    memset(cn, 7, BT__AUTH_NONCE);
    bt__rdzv_hello(h, version, BT__RDZV_KIND_CLIENT, cn);
    bt__put_le64(h, magic);
    raw_send(fd, h, sizeof(h));
}

/* A raw connection that completed the handshake. */
static int raw_authed(struct fx *f)
{
    int fd = raw_connect(f->port);
    uint8_t cn[BT__AUTH_NONCE], ch[BT__RDZV_CHALLENGE_LEN], key[32], mac[BT__AUTH_MAC];
    uint8_t res[BT__RDZV_RESULT_LEN];
    raw_hello(fd, BT__RDZV_MAGIC, BT__RDZV_VERSION, cn);
    assert_int_equal(recv(fd, ch, sizeof(ch), MSG_WAITALL), (ssize_t)sizeof(ch));
    bt__auth_key(FX_TOKEN, key);
    assert_int_equal(bt__auth_mac(key, BT__RDZV_LABEL_CLIENT, cn, ch + 16, mac), 0);
    raw_send(fd, mac, sizeof(mac));
    assert_int_equal(recv(fd, res, sizeof(res), MSG_WAITALL), (ssize_t)sizeof(res));
    assert_int_equal(bt__le32(res), BT__ST_OK);
    return fd;
}

static void good_client_works(struct fx *f)
{
    struct bt__store *s = fx_connect(f);
    int64_t v;
    assert_int_equal(bt__store_add(s, "good", 1, &v), BT_OK);
    assert_int_equal(bt__store_set(s, "good/key", "ok", 2), BT_OK);
    bt__store_close(s);
}

static int log_has(const char *a, const char *b)
{
    FILE *fp = fopen(log_path, "r");
    char line[2048];
    int found = 0;
    while (fp && !found && fgets(line, sizeof(line), fp))
        found = strstr(line, a) && (!b || strstr(line, b));
    if (fp)
        fclose(fp);
    return found;
}

static void test_garbage(void **state)
{
    struct fx *f = *state;
    int fd = raw_connect(f->port);
    char junk[200], back[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 11);
    raw_send(fd, junk, sizeof(junk));
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), 0); /* no answer at all */
    close(fd);
    fd = raw_connect(f->port);
    raw_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    /* 27 bytes < a hello: it waits for more, then the handshake limit drops it */
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), 0);
    close(fd);
    good_client_works(f);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    assert_true(log_has("bad magic", "127.0.0.1:"));
    assert_true(log_has("no complete handshake", "127.0.0.1:"));
}

static void test_wrong_magic(void **state)
{
    struct fx *f = *state;
    uint8_t cn[BT__AUTH_NONCE], back[64];
    int fd = raw_connect(f->port);
    raw_hello(fd, 0x1122334455667788ULL, BT__RDZV_VERSION, cn);
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), 0);
    close(fd);
    good_client_works(f);
}

static void test_wrong_version(void **state)
{
    struct fx *f = *state;
    uint8_t cn[BT__AUTH_NONCE], back[64];
    int fd = raw_connect(f->port);
    raw_hello(fd, BT__RDZV_MAGIC, 99, cn);
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), BT__RDZV_CHALLENGE_LEN);
    assert_int_equal(bt__le32(back + 12), BT__ST_BAD_VERSION);
    close(fd);
    good_client_works(f);
    assert_true(log_has("protocol version 99", "127.0.0.1:"));
}

static void test_wrong_token_raw(void **state)
{
    struct fx *f = *state;
    uint8_t cn[BT__AUTH_NONCE], back[128], proof[BT__AUTH_MAC] = {0};
    int fd = raw_connect(f->port);
    raw_hello(fd, BT__RDZV_MAGIC, BT__RDZV_VERSION, cn);
    assert_int_equal(recv(fd, back, BT__RDZV_CHALLENGE_LEN, MSG_WAITALL), BT__RDZV_CHALLENGE_LEN);
    assert_int_equal(bt__le32(back + 12), BT__ST_OK);
    raw_send(fd, proof, sizeof(proof));
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), BT__RDZV_RESULT_LEN);
    assert_int_equal(bt__le32(back), BT__ST_BAD_TOKEN);
    close(fd);
    good_client_works(f);
}

static void test_bad_frames(void **state)
{
    struct fx *f = *state;
    uint8_t back[64];
    /* {length, command, payload} cases, each on a fresh authenticated connection. */
    const uint8_t cases[][12] = {
        {0xff, 0xff, 0xff, 0xff, BT__RDZV_SET},                         /* length 4 GiB */
        {0x01, 0x00, 0x00, 0x05, BT__RDZV_SET},                         /* 80 MiB, over the cap */
        {0x00, 0x00, 0x00, 0x00},                                       /* length 0 */
        {0x01, 0x00, 0x00, 0x00, 0xee},                                 /* unknown command */
        {0x08, 0x00, 0x00, 0x00, BT__RDZV_SET, 0xff, 0, 0, 0, 1, 2, 3}, /* key past the end */
        {0x02, 0x00, 0x00, 0x00, BT__RDZV_PING, 0},                     /* PING with a payload */
    };
    const size_t lens[] = {5, 5, 4, 5, 12, 6};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        int fd = raw_authed(f);
        raw_send(fd, cases[i], lens[i]);
        assert_true(raw_until_closed(fd, back, sizeof(back), 5) >= 0);
        close(fd);
        good_client_works(f);
    }
    assert_true(log_has("frame of length 4294967295", "127.0.0.1:"));
    assert_true(log_has("unknown command 238", NULL));
    assert_true(log_has("malformed SET", NULL));
}

static void test_half_frames_then_close(void **state)
{
    struct fx *f = *state;
    /* Half a hello, then gone. */
    int fd = raw_connect(f->port);
    raw_send(fd, "\x42\x54\x4f\x4e\x52", 5);
    close(fd);
    /* Half a frame after the handshake, then gone. */
    fd = raw_authed(f);
    uint8_t half[4 + 1 + 20] = {100, 0, 0, 0, BT__RDZV_SET};
    raw_send(fd, half, sizeof(half));
    close(fd);
    /* Half a length field. */
    fd = raw_authed(f);
    raw_send(fd, half, 2);
    close(fd);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    good_client_works(f);
    assert_true(log_has("lost mid-frame (25 bytes of a 104-byte frame)", "127.0.0.1:"));
}

static void test_silent_peers_dropped(void **state)
{
    struct fx *f = *state;
    uint8_t back[64];
    int quiet = raw_connect(f->port); /* says nothing */
    int half = raw_connect(f->port);  /* half a hello, then silence */
    raw_send(half, "\x42\x54\x4f", 3);
    int authed = raw_authed(f); /* half a frame after auth, then silence */
    uint8_t part[3] = {50, 0, 0};
    raw_send(authed, part, sizeof(part));
    good_client_works(f); /* meanwhile the store serves others */
    int64_t t0 = bt__now_ns();
    assert_int_equal(raw_until_closed(quiet, back, sizeof(back), 5), 0);
    assert_int_equal(raw_until_closed(half, back, sizeof(back), 5), 0);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    assert_true(took < 4.0); /* BATON_RDZV_AUTH_TIMEOUT is 0.5 s here */
    /* An authenticated peer's partial frame has BATON_RDZV_IO_TIMEOUT (10 s here), not the
     * handshake's limit (test_stalled_frame_dropped). */
    struct pollfd p = {.fd = authed, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 100), 0);
    good_client_works(f);
    close(quiet);
    close(half);
    close(authed);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
}

static void test_pipelined_while_parked(void **state)
{
    struct fx *f = *state;
    int fd = raw_authed(f);
    struct bt__wbuf b = {0};
    size_t fr = bt__wbuf_frame_begin(&b, BT__RDZV_WAIT);
    bt__wbuf_u32(&b, 100); /* ms */
    bt__wbuf_u32(&b, 1);
    bt__wbuf_bytes(&b, "absent", 6);
    bt__wbuf_frame_end(&b, fr);
    fr = bt__wbuf_frame_begin(&b, BT__RDZV_PING);
    bt__wbuf_frame_end(&b, fr);
    raw_send(fd, b.p, b.len);
    uint8_t r[64];
    size_t want = 4 + 1 + 8 + 4 + 6 + 4 + 1; /* TIMEOUT {1, 1, "absent"} then OK */
    assert_int_equal(recv(fd, r, want, MSG_WAITALL), (ssize_t)want);
    assert_int_equal(r[4], BT__ST_TIMEOUT);
    assert_int_equal(r[want - 1], BT__ST_OK);
    /* A client that floods while parked is dropped. */
    b.len = 0;
    fr = bt__wbuf_frame_begin(&b, BT__RDZV_WAIT);
    bt__wbuf_u32(&b, BT__RDZV_NO_TIMEOUT);
    bt__wbuf_u32(&b, 1);
    bt__wbuf_bytes(&b, "absent", 6);
    bt__wbuf_frame_end(&b, fr);
    for (int i = 0; i < 20000; i++) {
        fr = bt__wbuf_frame_begin(&b, BT__RDZV_PING);
        bt__wbuf_frame_end(&b, fr);
    }
    raw_send(fd, b.p, b.len);
    assert_int_equal(raw_until_closed(fd, r, sizeof(r), 5), 0);
    close(fd);
    bt__wbuf_free(&b);
    assert_true(fx_until(fx_nwaiting_is, f, 0, 5));
    good_client_works(f);
}

static void test_many_connections_no_leak(void **state)
{
    struct fx *f = *state;
    good_client_works(f);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    int before = fx_count_fds();
    for (int round = 0; round < 4; round++) {
        int fds[128];
        for (int i = 0; i < 128; i++) {
            fds[i] = raw_connect(f->port);
            if (i % 4 == 1)
                raw_send(fds[i], "\x42\x54", 2);
            if (i % 4 == 2)
                raw_send(fds[i], "garbage garbage garbage garbage garbage garbage garb", 52);
        }
        for (int i = 0; i < 128; i++)
            close(fds[i]);
    }
    assert_true(fx_until(fx_nclients_is, f, 0, 10));
    assert_int_equal(fx_count_fds(), before);
    good_client_works(f);
}

/* ---- a fake server, for the client's view of a bad store ---- */

enum { FAKE_BAD_VERSION, FAKE_BAD_PROOF, FAKE_NOT_A_STORE, FAKE_CLOSE };

struct fake {
    int lfd, port, mode;
};

static void *fake_main(void *arg)
{
    struct fake *fk = arg;
    struct pollfd p = {.fd = fk->lfd, .events = POLLIN}; /* the listener is non-blocking */
    int fd = poll(&p, 1, 5000) == 1 ? accept(fk->lfd, NULL, NULL) : -1;
    uint8_t hello[BT__RDZV_HELLO_LEN], out[BT__RDZV_CHALLENGE_LEN], sn[BT__AUTH_NONCE] = {1};
    uint8_t proof[BT__AUTH_MAC], res[BT__RDZV_RESULT_LEN] = {0};
    if (fd < 0)
        return NULL;
    if (recv(fd, hello, sizeof(hello), MSG_WAITALL) == (ssize_t)sizeof(hello)) {
        if (fk->mode == FAKE_NOT_A_STORE) {
            send(fd, "HTTP/1.1 400 Bad Request\r\n\r\n0123456789012345678901", 48, MSG_NOSIGNAL);
        } else if (fk->mode == FAKE_BAD_VERSION) {
            bt__auth_challenge(&bt__rdzv_auth, BT__ST_BAD_VERSION, sn, out);
            bt__put_le32(out + 8, 2);
            send(fd, out, sizeof(out), MSG_NOSIGNAL);
        } else if (fk->mode == FAKE_BAD_PROOF) {
            bt__auth_challenge(&bt__rdzv_auth, BT__ST_OK, sn, out);
            send(fd, out, sizeof(out), MSG_NOSIGNAL);
            if (recv(fd, proof, sizeof(proof), MSG_WAITALL) == (ssize_t)sizeof(proof))
                send(fd, res, sizeof(res), MSG_NOSIGNAL); /* OK, with an all-zero MAC */
        }
    }
    close(fd);
    return NULL;
}

static void fake_case(int mode, int want_rc, const char *want_msg)
{
    struct fake fk = {.mode = mode};
    struct bt__err err = {0};
    assert_int_equal(bt__sock_listen("127.0.0.1", 0, 4, &fk.lfd, &fk.port, &err), BT_OK);
    pthread_t th;
    pthread_create(&th, NULL, fake_main, &fk);
    struct bt__store *s = NULL;
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5.0), .what = "rendezvous store"};
    int rc = bt__store_connect("127.0.0.1", fk.port, FX_TOKEN, &o, &s, &err);
    pthread_join(th, NULL);
    close(fk.lfd);
    assert_null(s);
    assert_int_equal(rc, want_rc);
    if (!strstr(err.msg, want_msg))
        fail_msg("error '%s' lacks '%s'", err.msg, want_msg);
}

static void test_client_sees_bad_store(void **state)
{
    (void)state;
    fake_case(FAKE_BAD_VERSION, BT_ERR_AUTH, "speaks protocol version 2, we speak 1");
    fake_case(FAKE_BAD_PROOF, BT_ERR_AUTH, "could not prove it holds our job token");
    fake_case(FAKE_NOT_A_STORE, BT_ERR_REMOTE, "not a baton rendezvous store");
    fake_case(FAKE_CLOSE, BT_ERR_REMOTE, "closed the connection during the handshake");
}

/* Limits small enough to test: a frame must arrive whole within 0.5 s, is at most 1 MiB, and
 * all buffers together hold at most 8 MiB. */
#define TIGHT_FRAME (1u << 20)
#define TIGHT_BUDGET ((size_t)8 << 20)

static int fx_setup_limits(void **state, double frame_timeout_s)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct bt__err err = {0};
    assert_non_null(f);
    if (bt__store_server_create("127.0.0.1", 0, FX_TOKEN, &f->srv, &f->port, &err) != BT_OK)
        fail_msg("server create: %s", err.msg);
    struct bt__store_limits l = {.frame_timeout_s = frame_timeout_s,
                                 .max_frame = TIGHT_FRAME,
                                 .max_buffered = TIGHT_BUDGET};
    bt__store_server_set_limits(f->srv, &l);
    assert_int_equal(bt__store_server_start(f->srv), BT_OK);
    *state = f;
    return 0;
}

static int fx_setup_tight(void **state)
{
    return fx_setup_limits(state, 0.5);
}

/* The same with a frame deadline that does not interfere with the budget's test. */
static int fx_setup_budget(void **state)
{
    return fx_setup_limits(state, 30);
}

static int log_count(const char *a)
{
    FILE *fp = fopen(log_path, "r");
    char line[2048];
    int n = 0;
    while (fp && fgets(line, sizeof(line), fp))
        n += strstr(line, a) != NULL;
    if (fp)
        fclose(fp);
    return n;
}

static int fx_buffered_is(struct fx *f, int n)
{
    return bt__store_server_buffered(f->srv) == (size_t)n;
}

/* A frame header, then part of the payload. */
static void raw_partial(int fd, uint32_t len, size_t sent)
{
    uint8_t *buf = calloc(1, 5 + sent);
    assert_non_null(buf);
    bt__put_le32(buf, len);
    buf[4] = BT__RDZV_SET;
    raw_send(fd, buf, 5 + sent);
    free(buf);
}

/* A client that starts a frame and stalls, or trickles it a byte at a time, is dropped once
 * the frame's deadline passes, logged once with its address; the others carry on. */
static void test_stalled_frame_dropped(void **state)
{
    struct fx *f = *state;
    uint8_t back[64];
    int before = log_count("stalled mid-frame");
    int stall = raw_authed(f), trickle = raw_authed(f);
    int64_t t0 = bt__now_ns();
    raw_partial(stall, 100, 10);
    raw_partial(trickle, 100, 0);
    for (int i = 0; i < 20; i++) { /* 2 s of a byte every 100 ms: never whole */
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        if (send(trickle, "x", 1, MSG_NOSIGNAL) != 1)
            break;
    }
    good_client_works(f);
    assert_int_equal(raw_until_closed(stall, back, sizeof(back), 5), 0);
    assert_true(raw_until_closed(trickle, back, sizeof(back), 5) >= 0);
    double took = (double)(bt__now_ns() - t0) / 1e9;
    assert_true(took < 4.0);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    assert_true(
        log_has("stalled mid-frame: 15 bytes of a 104-byte frame after 0.5 s", "127.0.0.1:"));
    assert_int_equal(log_count("stalled mid-frame") - before, 2);
    /* A frame that does arrive whole, in pieces within the bound, is served. */
    int ok = raw_authed(f);
    uint8_t ping[5] = {1, 0, 0, 0, BT__RDZV_PING}, rep[5];
    raw_send(ok, ping, 3);
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    raw_send(ok, ping + 3, 2);
    assert_int_equal(recv(ok, rep, sizeof(rep), MSG_WAITALL), (ssize_t)sizeof(rep));
    assert_int_equal(rep[4], BT__ST_OK);
    close(stall);
    close(trickle);
    close(ok);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    good_client_works(f);
}

/* Many clients with large partial frames: each frame is given room for all of it at once,
 * and those that do not fit the budget are dropped, so the store's buffers never pass it. A
 * frame over the per-connection cap is refused before any of it is buffered. */
static void test_buffer_budget(void **state)
{
    struct fx *f = *state;
    enum { N = 12, FRAME = 900 << 10, FIT = (8 << 20) / FRAME }; /* 9 fit */
    int fds[N], dropped = 0;
    uint8_t back[64];
    size_t most = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = raw_authed(f);
        raw_partial(fds[i], FRAME, 256 << 10); /* 256 KiB sent of each */
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        size_t b = bt__store_server_buffered(f->srv);
        most = b > most ? b : most;
    }
    assert_true(most <= TIGHT_BUDGET);
    assert_true(most >= (size_t)(FIT - 1) * FRAME); /* the first frames got all their room */
    for (int i = 0; i < N; i++)
        if (raw_until_closed(fds[i], back, sizeof(back), 0.2) >= 0)
            dropped++;
    assert_int_equal(dropped, N - FIT);
    assert_true(log_has("does not fit the store's buffer budget", "127.0.0.1:"));
    good_client_works(f); /* small buffers still fit */
    /* Over the per-connection cap: refused from its length alone. */
    int big = raw_authed(f);
    raw_partial(big, TIGHT_FRAME + 1, 0);
    assert_int_equal(raw_until_closed(big, back, sizeof(back), 5), 0);
    assert_true(log_has("sent a frame of length 1048577 (1 to 1048576 allowed)", NULL));
    assert_true(bt__store_server_buffered(f->srv) <= TIGHT_BUDGET);
    close(big);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    assert_true(fx_until(fx_nclients_is, f, 0, 5));
    assert_true(fx_until(fx_buffered_is, f, 0, 5)); /* every byte given back */
}

/* A summary every 3 s instead of every minute, so the test sees one (the flood below fits in
 * one window). */
static int fx_setup_drops(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct bt__err err = {0};
    assert_non_null(f);
    if (bt__store_server_create("127.0.0.1", 0, FX_TOKEN, &f->srv, &f->port, &err) != BT_OK)
        fail_msg("server create: %s", err.msg);
    struct bt__store_limits l = {.drop_log_interval_s = 3};
    bt__store_server_set_limits(f->srv, &l);
    assert_int_equal(bt__store_server_start(f->srv), BT_OK);
    *state = f;
    return 0;
}

static int fx_summary_logged(struct fx *f, int unused)
{
    (void)f, (void)unused;
    return log_has("200 more connection(s) dropped", "190 bad magic, 10 failed auth");
}

/* A flood of bad peers (a port scanner, a job with the wrong token) gives a bounded number of
 * WARN lines: the first few in full, then one summary that counts the rest by reason. */
/* The store sends its refusal before it counts the drop, so the client may see the refusal
 * first: wait for the count rather than read it at once. */
static int fx_auth_drops_are(struct fx *f, int n)
{
    return bt__store_server_drops(f->srv, BT__DROP_AUTH) == (uint64_t)n;
}

static void test_flood_rate_limited(void **state)
{
    enum { BAD = 200, WRONG_TOKEN = 10 };
    struct fx *f = *state;
    uint8_t cn[BT__AUTH_NONCE], back[64];
    int before = log_count("closing connection from");
    for (int i = 0; i < BAD; i++) {
        int fd = raw_connect(f->port);
        raw_hello(fd, 0x1122334455667788ULL, BT__RDZV_VERSION, cn);
        assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), 0);
        close(fd);
    }
    for (int i = 0; i < WRONG_TOKEN; i++) {
        struct bt__store *s = NULL;
        struct bt__err err = {0};
        assert_int_not_equal(fx_try_connect(f, "another-job", &s, &err), BT_OK);
    }
    assert_int_equal(bt__store_server_drops(f->srv, BT__DROP_BAD_MAGIC), BAD);
    assert_true(fx_until(fx_auth_drops_are, f, WRONG_TOKEN, 10));
    assert_int_equal(bt__store_server_drops(f->srv, BT__DROP_AUTH), WRONG_TOKEN);
    int full = log_count("closing connection from") - before;
    assert_int_equal(full, BT__DROP_BURST); /* BATON_DEBUG=INFO: the rest are at TRACE */
    assert_true(fx_until(fx_summary_logged, f, 0, 10));
    good_client_works(f);
    /* The next window starts over: a new bad peer is logged in full again. */
    int fd = raw_connect(f->port);
    raw_hello(fd, 0x1122334455667788ULL, BT__RDZV_VERSION, cn);
    assert_int_equal(raw_until_closed(fd, back, sizeof(back), 5), 0);
    close(fd);
    assert_int_equal(log_count("closing connection from") - before, BT__DROP_BURST + 1);
}

/* A client that sends requests but never reads the replies is dropped before its unsent
 * output passes two frames' worth. */
static void test_unread_replies_dropped(void **state)
{
    struct fx *f = *state;
    struct bt__store *s = fx_connect(f);
    size_t vlen = 900 << 10;
    char *val = calloc(1, vlen);
    assert_non_null(val);
    assert_int_equal(bt__store_set(s, "big", val, vlen), BT_OK);
    free(val);
    int fd = raw_authed(f);
    uint8_t get[4 + 1 + 4 + 4 + 3] = {12, 0, 0, 0, BT__RDZV_GET, 0,   0,  0, 0,
                                      3,  0, 0, 0, 'b',          'i', 'g'};
    size_t most = 0;
    for (int i = 0; i < 200; i++) { /* 180 MB of replies asked for, none read */
        if (send(fd, get, sizeof(get), MSG_NOSIGNAL) != (ssize_t)sizeof(get))
            break;
        size_t b = bt__store_server_buffered(f->srv);
        most = b > most ? b : most;
    }
    assert_true(fx_until(fx_nclients_is, f, 1, 5));
    assert_true(log_has("does not read its replies", "127.0.0.1:"));
    assert_true(most <= TIGHT_BUDGET);
    assert_int_equal(bt__store_ping(s), BT_OK);
    close(fd);
    bt__store_close(s);
}

int main(void)
{
    snprintf(log_path, sizeof(log_path), "/tmp/bt_test_store_badpeer.%d.log", (int)getpid());
    unlink(log_path);
    setenv("BATON_DEBUG_FILE", log_path, 1);
    setenv("BATON_DEBUG", "INFO", 1);
    setenv("BATON_DEBUG_SUBSYS", "RDZV", 1);
    setenv("BATON_RDZV_AUTH_TIMEOUT", "0.5", 1);
    setenv("BATON_RDZV_IO_TIMEOUT", "10", 1);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
        T(test_garbage),
        T(test_wrong_magic),
        T(test_wrong_version),
        T(test_wrong_token_raw),
        T(test_bad_frames),
        T(test_half_frames_then_close),
        T(test_silent_peers_dropped),
        T(test_pipelined_while_parked),
        T(test_many_connections_no_leak),
        cmocka_unit_test_setup_teardown(test_stalled_frame_dropped, fx_setup_tight, fx_teardown),
        cmocka_unit_test_setup_teardown(test_buffer_budget, fx_setup_budget, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unread_replies_dropped, fx_setup_tight, fx_teardown),
        cmocka_unit_test_setup_teardown(test_flood_rate_limited, fx_setup_drops, fx_teardown),
        cmocka_unit_test(test_client_sees_bad_store),
#undef T
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(log_path);
    return rc;
}
