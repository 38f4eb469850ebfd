/* fuzz_util.h: helpers shared by the libFuzzer targets in tests/fuzz/ (each target is one
 * fuzz_NAME.c with LLVMFuzzerTestOneInput; see docs/testing.md, Fuzzing): the input as a file
 * (a memfd, named /proc/self/fd/N, for readers that take a path), quiet logs, a loopback
 * connection, and reading a peer's answer until it closes. Harness code: it may abort on a
 * broken invariant, never on bad input.
 */
#ifndef BT_FUZZ_UTIL_H
#define BT_FUZZ_UTIL_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Warnings about bad peers and files are expected by the thousand: silence the logger. */
/* A loopback connection to port, through common/sock.c, which retries EINTR (libFuzzer's
 * SIGALRM interrupts calls); aborts, naming who, when it cannot connect. */
static inline int fz_dial(const char *who, int port)
{
    struct bt__connect_opts o = {.deadline_ns = bt__deadline_in(5), .what = "fuzz"};
    struct bt__err err = {0};
    int fd;
    if (bt__sock_connect("127.0.0.1", port, &o, &fd, &err) != BT_OK) {
        fprintf(stderr, "%s: %s\n", who, err.msg);
        abort();
    }
    return fd;
}

static inline void fz_quiet(void)
{
    setenv("BATON_DEBUG", "NONE", 1);
    bt__log_init();
}

/* The input as a file: a memfd holding data; *name gets its "N" (under /proc/self/fd) and
 * path its full name. Returns the fd (the caller closes it). */
static inline int fz_memfile(const uint8_t *data, size_t size, char name[16], char path[40])
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    snprintf(name, 16, "%d", fd);
    snprintf(path, 40, "/proc/self/fd/%d", fd);
    return fd;
}

/* Reads (and drops) what the peer sends until it closes or ms pass with nothing; returns 1
 * when it closed, 0 on the timeout. */
static inline int fz_drain(int fd, int ms)
{
    char sink[4096];
    for (;;) { /* libFuzzer's SIGALRM interrupts calls: EINTR is retried */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 1;
    }
}

#endif
