/* log.c: the logger behind log.h. One write(2) per line, so lines from threads and processes
 * sharing a file never interleave mid-line. */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"

int bt__log_level_cur = -1;
unsigned bt__log_subsys_mask = BT_SUB_ALL;

static int log_fd = 2;
static _Atomic int log_rank = -1; /* ranks as threads (tests) each set it */
static char log_host[64];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static const struct {
    const char *name;
    unsigned bit;
} subsys_names[] = {{"INIT", BT_SUB_INIT}, {"NET", BT_SUB_NET}, {"COLL", BT_SUB_COLL},
                    {"SHM", BT_SUB_SHM},   {"PS", BT_SUB_PS},   {"LAUNCH", BT_SUB_LAUNCH},
                    {"RDZV", BT_SUB_RDZV}, {"ALL", BT_SUB_ALL}};

static unsigned subsys_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(subsys_names) / sizeof(subsys_names[0]); i++)
        if (strlen(subsys_names[i].name) == len && !strncasecmp(name, subsys_names[i].name, len))
            return subsys_names[i].bit;
    return 0;
}

static const char *subsys_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(subsys_names) / sizeof(subsys_names[0]); i++)
        if (subsys_names[i].bit == bit)
            return subsys_names[i].name;
    return "?";
}

/* "INIT,NET" selects those; "^SHM" selects all but those. */
static unsigned parse_subsys(const char *s)
{
    int exclude = (*s == '^');
    unsigned mask = 0;
    for (const char *p = s + exclude; *p;) {
        size_t len = strcspn(p, ",");
        mask |= subsys_bit(p, len);
        p += len + (p[len] == ',');
    }
    return exclude ? (BT_SUB_ALL & ~mask) : mask;
}

/* Expands %h to the host name and %p to the pid in a BATON_DEBUG_FILE pattern. */
static void expand_path(const char *pat, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = pat; *p && n + 1 < cap; p++) {
        if (p[0] == '%' && (p[1] == 'h' || p[1] == 'p')) {
            int w = p[1] == 'h' ? snprintf(out + n, cap - n, "%s", log_host)
                                : snprintf(out + n, cap - n, "%d", (int)getpid());
            n += (w > 0 && (size_t)w < cap - n) ? (size_t)w : 0;
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static void log_init_once(void)
{
    if (gethostname(log_host, sizeof(log_host)) != 0)
        strcpy(log_host, "?");
    log_host[sizeof(log_host) - 1] = '\0';
    const char *lvl = getenv("BATON_DEBUG");
    int level = BT_LOG_WARN;
    if (lvl && *lvl) {
        if (!strcasecmp(lvl, "NONE") || !strcasecmp(lvl, "OFF"))
            level = BT_LOG_NONE;
        else if (!strcasecmp(lvl, "INFO"))
            level = BT_LOG_INFO;
        else if (!strcasecmp(lvl, "TRACE"))
            level = BT_LOG_TRACE;
    }
    const char *sub = getenv("BATON_DEBUG_SUBSYS");
    if (sub && *sub)
        bt__log_subsys_mask = parse_subsys(sub);
    const char *file = getenv("BATON_DEBUG_FILE");
    if (file && *file) {
        char path[512];
        expand_path(file, path, sizeof(path));
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            log_fd = fd;
    }
    __atomic_store_n(&bt__log_level_cur, level, __ATOMIC_RELEASE);
}

void bt__log_init(void)
{
    pthread_once(&log_once, log_init_once);
}

void bt__log_set_rank(int rank)
{
    log_rank = rank;
}

void bt__log_write(int level, unsigned subsys, const char *file, int line, const char *fmt, ...)
{
    static const char *level_names[] = {"", "WARN", "INFO", "TRACE"};
    char buf[2048];
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    int n;
    int rank = atomic_load_explicit(&log_rank, memory_order_relaxed);
    if (rank >= 0)
        n = snprintf(buf, sizeof(buf), "%s:%d [%d] %s:%d %s %s ", log_host, (int)getpid(), rank,
                     base, line, level_names[level], subsys_name(subsys));
    else
        n = snprintf(buf, sizeof(buf), "%s:%d %s:%d %s %s ", log_host, (int)getpid(), base, line,
                     level_names[level], subsys_name(subsys));
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + ((size_t)m < sizeof(buf) - (size_t)n - 1
                                  ? (size_t)m
                                  : sizeof(buf) - (size_t)n - 2);
    buf[len++] = '\n';
    ssize_t w = write(log_fd, buf, len);
    (void)w;
}
