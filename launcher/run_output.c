/* run_output.c: worker output, line by line.
 *
 * Each worker's stdout and stderr come through a pipe into a BT_RUN_LINE_MAX buffer. Complete
 * lines go to baton's stdout (or stderr) as "[rank] line\n", all the lines of one read in one
 * write, so lines of different ranks never interleave mid-line: baton is the only writer. A
 * line longer than the buffer is cut (never inside a UTF-8 sequence) and each piece is tagged
 * and ended with a newline; a partial last line is flushed with a newline at EOF. With
 * --log-dir each rank's lines also go, untagged, to DIR/rank.<rank>.log (a parameter
 * server's to DIR/ps.<index>.log; stdout and stderr together, appended across restarts).
 * This file does not poll; run_supervise.c does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "launcher/run.h"

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) { /* someone made our stdout non-blocking */
            usleep(1000);
            continue;
        }
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int obuf_reserve(struct bt__run *r, size_t need)
{
    if (need <= r->obuf_cap)
        return 0;
    size_t cap = r->obuf_cap ? r->obuf_cap : 2 * BT_RUN_LINE_MAX;
    while (cap < need)
        cap *= 2;
    char *p = realloc(r->obuf, cap);
    if (!p)
        return -1;
    r->obuf = p;
    r->obuf_cap = cap;
    return 0;
}

/* Appends "[rank] " (or "[psI] ") + p[0..n) + (newline unless p ends with one) to the output
 * scratch. */
static size_t append_line(struct bt__run *r, size_t olen, const char *tag, const char *p, size_t n)
{
    size_t tl = r->o.tag_output ? strlen(tag) : 0;
    if (obuf_reserve(r, olen + tl + n + 1) != 0)
        return olen; /* out of memory: drop the line rather than the job */
    memcpy(r->obuf + olen, tag, tl);
    memcpy(r->obuf + olen + tl, p, n);
    olen += tl + n;
    if (n == 0 || p[n - 1] != '\n')
        r->obuf[olen++] = '\n';
    return olen;
}

/* Where to cut a full buffer with no newline: not inside a UTF-8 sequence. */
static size_t utf8_cut(const char *buf, size_t len)
{
    size_t i = len;
    while (i > 0 && len - i < 4 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0 || len - i >= 4)
        return len;
    unsigned char lead = (unsigned char)buf[i - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (i - 1) + want > len ? i - 1 : len;
}

/* Keeps the dynamic loader's complaint from a worker's stderr: its exit code (127) alone
 * reads like "command not found" (run_report.c). */
static void note_line(struct bt__worker *w, const struct bt__linebuf *lb, const char *p, size_t n)
{
    static const char what[] = "error while loading shared libraries: ";
    if (lb->console != 2 || w->loader_err[0] || n < sizeof(what))
        return;
    const char *at = memmem(p, n, what, sizeof(what) - 1);
    if (!at)
        return;
    at += sizeof(what) - 1;
    size_t len = n - (size_t)(at - p);
    while (len && (at[len - 1] == '\n' || at[len - 1] == '\r'))
        len--;
    snprintf(w->loader_err, sizeof(w->loader_err), "%.*s", (int)len, at);
}

/* Emits the complete lines of lb (all of it when eof), keeps the rest. */
static void emit(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb, int eof)
{
    size_t start = 0, olen = 0;
    char *nl;
    while (start < lb->len && (nl = memchr(lb->buf + start, '\n', lb->len - start))) {
        note_line(w, lb, lb->buf + start, (size_t)(nl - lb->buf) + 1 - start);
        if (lb->console == 2)
            bt__run_forensics_tail(w, lb->buf + start, (size_t)(nl - lb->buf) + 1 - start);
        olen = append_line(r, olen, w->tag, lb->buf + start, (size_t)(nl - lb->buf) + 1 - start);
        start = (size_t)(nl - lb->buf) + 1;
    }
    size_t end = start;
    if (start == 0 && lb->len == BT_RUN_LINE_MAX)
        end = utf8_cut(lb->buf, lb->len);
    if (eof)
        end = lb->len;
    if (end > start) {
        olen = append_line(r, olen, w->tag, lb->buf + start, end - start);
        if (lb->console == 2)
            bt__run_forensics_tail(w, lb->buf + start, end - start);
    }
    if (olen && !r->console_dead[lb->console] && write_all(lb->console, r->obuf, olen) != 0)
        r->console_dead[lb->console] = 1;
    if (w->log_fd >= 0 && end > 0) {
        struct iovec v[2] = {{lb->buf, end}, {"\n", 1}};
        int cnt = lb->buf[end - 1] == '\n' ? 1 : 2;
        if (writev(w->log_fd, v, cnt) < 0)
            w->log_fd = (close(w->log_fd), -1);
    }
    memmove(lb->buf, lb->buf + end, lb->len - end);
    lb->len -= end;
}

int bt__run_output_read(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb)
{
    ssize_t n = read(lb->fd, lb->buf + lb->len, BT_RUN_LINE_MAX - lb->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        emit(r, w, lb, 1);
        close(lb->fd);
        lb->fd = -1;
        return -1;
    }
    lb->len += (size_t)n;
    emit(r, w, lb, 0);
    return 0;
}

/* Reads what a pipe holds now (non-blocking), in at most 64 reads. */
static void drain_now(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb)
{
    for (int i = 0; i < 64 && lb->fd >= 0; i++) {
        size_t before = lb->len;
        int fd = lb->fd;
        if (bt__run_output_read(r, w, lb) != 0)
            return; /* EOF: emitted and closed */
        if (lb->fd == fd && lb->len == before && before < BT_RUN_LINE_MAX) {
            int avail = 0;
            if (ioctl(fd, FIONREAD, &avail) != 0 || avail == 0)
                return;
        }
    }
}

void bt__run_output_drain(struct bt__run *r, struct bt__worker *w)
{
    drain_now(r, w, &w->out);
    drain_now(r, w, &w->err);
}

void bt__run_output_eof(struct bt__run *r, struct bt__worker *w, struct bt__linebuf *lb)
{
    if (lb->fd < 0)
        return;
    emit(r, w, lb, 1);
    close(lb->fd);
    lb->fd = -1;
}

static int open_log(struct bt__run *r, struct bt__worker *w, struct bt__err *err)
{
    char path[PATH_MAX];
    if (mkdir(r->o.log_dir, 0755) != 0 && errno != EEXIST)
        return bt__err_set(err, BT_ERR_SYSTEM, "--log-dir %s: %s", r->o.log_dir, strerror(errno));
    if (w->ps_index >= 0)
        snprintf(path, sizeof(path), "%s/ps.%d.log", r->o.log_dir, w->ps_index);
    else
        snprintf(path, sizeof(path), "%s/rank.%d.log", r->o.log_dir, w->rank);
    w->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (w->log_fd < 0)
        return bt__err_set(err, BT_ERR_SYSTEM, "--log-dir: %s: %s", path, strerror(errno));
    if (r->restart > 0)
        dprintf(w->log_fd, "=== baton: restart %d ===\n", r->restart);
    return BT_OK;
}

int bt__run_output_open(struct bt__run *r, struct bt__worker *w, struct bt__err *err)
{
    w->log_fd = -1;
    w->loader_err[0] = 0;
    w->out.fd = w->err.fd = -1;
    w->out.len = w->err.len = 0;
    w->out.console = 1;
    w->err.console = 2;
    if (!w->out.buf)
        w->out.buf = malloc(BT_RUN_LINE_MAX);
    if (!w->err.buf)
        w->err.buf = malloc(BT_RUN_LINE_MAX);
    if (!w->out.buf || !w->err.buf)
        return bt__err_set(err, BT_ERR_SYSTEM, "out of memory for output buffers");
    return r->o.log_dir ? open_log(r, w, err) : BT_OK;
}

void bt__run_output_close(struct bt__run *r, struct bt__worker *w)
{
    (void)r;
    if (w->out.fd >= 0)
        close(w->out.fd);
    if (w->err.fd >= 0)
        close(w->err.fd);
    if (w->log_fd >= 0)
        close(w->log_fd);
    w->out.fd = w->err.fd = w->log_fd = -1;
    free(w->out.buf);
    free(w->err.buf);
    w->out.buf = w->err.buf = NULL;
}
