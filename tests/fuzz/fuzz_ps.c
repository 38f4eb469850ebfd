/* fuzz_ps.c: the parameter server's handshake and frames (collectives/ps/server.c, with the
 * optimizers and shards behind them), fed the input over a loopback connection to a real
 * server on a thread.
 *
 * The first byte picks the mode: bit 1 clear, the bytes go out as soon as the connection is
 * up (a peer that does not speak the handshake); set, the harness first completes the
 * handshake (bt__ps_handshake) as worker rank (bit 0) of 2, and the bytes follow as frames
 * (INIT, PUSH, PULL, CLOSE, PING, or junk). Then the harness closes its sending side and
 * reads until the server closes: keeping a closed peer's connection for 3 s is a finding
 * (abort), and so is a server that a fresh worker can no longer ping afterwards.
 */
#include <string.h>
#include <sys/socket.h>

#include "collectives/ps/ps.h"
#include "common/sock.h"
#include "fuzz_util.h"

#define FZ_TOKEN "fuzz-token"

static struct bt__ps_server *srv;
static int port;

static void start_server(void)
{
    struct bt__ps_server_cfg cfg = {.host = "127.0.0.1",
                                    .index = 0,
                                    .token = FZ_TOKEN,
                                    .timeout_s = 1.0};
    struct bt__err err = {0};
    fz_quiet();
    if (bt__ps_server_create(&cfg, &srv, &port, &err) != BT_OK ||
        bt__ps_server_start(srv) != BT_OK) {
        fprintf(stderr, "fuzz_ps: cannot start the server: %s\n", err.msg);
        abort();
    }
}

/* A fresh worker's PING gets OK: the server still serves. */
static void ping(void)
{
    uint8_t f[5], r[5];
    struct bt__err err = {0};
    uint32_t idx;
    uint64_t inst;
    int fd = fz_dial("fuzz_ps", port);
    bt__put_le32(f, 1);
    f[4] = BT__PS_PING;
    int64_t dl = bt__deadline_in(5);
    if (bt__ps_handshake(fd, 0, 2, FZ_TOKEN, dl, &idx, &inst, &err) != BT_OK ||
        bt__sock_send_all(fd, f, 5, dl, &err) != BT_OK ||
        bt__sock_recv_all(fd, r, 5, dl, &err) != BT_OK || r[4] != BT__ST_OK) {
        fprintf(stderr, "fuzz_ps: the server stopped answering: %s\n", err.msg);
        abort();
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        start_server();
    if (size < 1)
        return 0;
    int fd = fz_dial("fuzz_ps", port);
    struct bt__err err = {0};
    uint32_t idx;
    uint64_t inst;
    if ((data[0] & 2) && bt__ps_handshake(fd, data[0] & 1, 2, FZ_TOKEN, bt__deadline_in(5), &idx,
                                          &inst, &err) != BT_OK) {
        fprintf(stderr, "fuzz_ps: handshake: %s\n", err.msg);
        abort();
    }
    if (size > 1)
        (void)send(fd, data + 1, size - 1, MSG_NOSIGNAL); /* the server may close first */
    shutdown(fd, SHUT_WR);
    if (!fz_drain(fd, 3000)) {
        fprintf(stderr, "fuzz_ps: the server kept a closed peer's connection for 3 s\n");
        abort();
    }
    close(fd);
    ping();
    return 0;
}
