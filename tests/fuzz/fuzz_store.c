/* fuzz_store.c: the rendezvous store server's handshake and frame handling (rendezvous/
 * server.c), fed the input over a loopback connection to a real server on a thread.
 *
 * The first byte picks the mode: even, the bytes go out as soon as the connection is up (a
 * peer that does not speak the handshake, or speaks it wrong); odd, the harness first completes
 * the handshake with the job token and the bytes follow as frames. Then the harness closes its
 * sending side and reads until the server closes: a server that keeps a closed peer's
 * connection (its parked requests, its buffers) for 3 s is a finding (abort). After every
 * input a client connected at start-up pings the server, so an input that breaks the server
 * for others is a finding too.
 */
#include <string.h>
#include <sys/socket.h>

#include "common/auth.h"
#include "common/sock.h"
#include "fuzz_util.h"
#include "rendezvous/proto.h"
#include "rendezvous/store.h"

#define FZ_TOKEN "fuzz-token"

static int port;
static struct bt__store *pinger;

static void start_server(void)
{
    struct bt__store_server *srv; /* runs until the process ends */
    struct bt__err err = {0};
    fz_quiet();
    if (bt__store_server_create("127.0.0.1", 0, FZ_TOKEN, &srv, &port, &err) != BT_OK ||
        bt__store_server_start(srv) != BT_OK ||
        bt__store_connect("127.0.0.1", port, FZ_TOKEN, NULL, &pinger, &err) != BT_OK) {
        fprintf(stderr, "fuzz_store: cannot start the server: %s\n", err.msg);
        abort();
    }
}

/* The client's side of the handshake, as test_store_badpeer's raw_authed does it. */
static void handshake(int fd)
{
    uint8_t h[BT__RDZV_HELLO_LEN], cn[BT__AUTH_NONCE], ch[BT__RDZV_CHALLENGE_LEN];
    uint8_t key[32], mac[BT__AUTH_MAC], res[BT__RDZV_RESULT_LEN];
    struct bt__err err = {0};
    int64_t dl = bt__deadline_in(5);
    memset(cn, 7, sizeof(cn));
    bt__rdzv_hello(h, BT__RDZV_VERSION, BT__RDZV_KIND_CLIENT, cn);
    bt__auth_key(FZ_TOKEN, key);
    if (bt__sock_send_all(fd, h, sizeof(h), dl, &err) != BT_OK ||
        bt__sock_recv_all(fd, ch, sizeof(ch), dl, &err) != BT_OK ||
        bt__auth_mac(key, BT__RDZV_LABEL_CLIENT, cn, ch + 16, mac) != 0 ||
        bt__sock_send_all(fd, mac, sizeof(mac), dl, &err) != BT_OK ||
        bt__sock_recv_all(fd, res, sizeof(res), dl, &err) != BT_OK || bt__le32(res) != BT__ST_OK) {
        fprintf(stderr, "fuzz_store: handshake: %s\n", err.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pinger)
        start_server();
    if (size < 1)
        return 0;
    int fd = fz_dial("fuzz_store", port);
    if (data[0] & 1)
        handshake(fd);
    if (size > 1)
        (void)send(fd, data + 1, size - 1, MSG_NOSIGNAL); /* the server may close first */
    shutdown(fd, SHUT_WR);
    if (!fz_drain(fd, 3000)) {
        fprintf(stderr, "fuzz_store: the server kept a closed peer's connection for 3 s\n");
        abort();
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* no TIME_WAIT: 28K ports go fast */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    if (bt__store_ping(pinger) != BT_OK) {
        fprintf(stderr, "fuzz_store: the server stopped answering: %s\n", bt__store_error(pinger));
        abort();
    }
    return 0;
}
