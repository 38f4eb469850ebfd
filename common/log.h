/* log.h: the one logger.
 *
 * BATON_DEBUG=WARN|INFO|TRACE (default WARN), BATON_DEBUG_SUBSYS=INIT,NET,COLL,SHM,PS,LAUNCH,RDZV
 * (default all; a leading ^ excludes), BATON_DEBUG_FILE=path with %h (host) and %p (pid).
 * Lines look like `host:pid [rank] file:line LEVEL SUBSYS message` and go to stderr or the file,
 * never stdout. The level test happens before the arguments are evaluated.
 */
#ifndef BT_COMMON_LOG_H
#define BT_COMMON_LOG_H

enum bt__log_level { BT_LOG_NONE = 0, BT_LOG_WARN = 1, BT_LOG_INFO = 2, BT_LOG_TRACE = 3 };

enum bt__log_subsys {
    BT_SUB_INIT = 1 << 0,
    BT_SUB_NET = 1 << 1,
    BT_SUB_COLL = 1 << 2,
    BT_SUB_SHM = 1 << 3,
    BT_SUB_PS = 1 << 4,
    BT_SUB_LAUNCH = 1 << 5,
    BT_SUB_RDZV = 1 << 6,
    BT_SUB_ALL = 0x7f
};

extern int bt__log_level_cur; /* -1 until the env was read */
extern unsigned bt__log_subsys_mask;

void bt__log_init(void);
/* The rank shown in each line's prefix (-1: none). */
void bt__log_set_rank(int rank);
void bt__log_write(int level, unsigned subsys, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static inline int bt__log_on(int level, unsigned subsys)
{
    if (bt__log_level_cur < 0)
        bt__log_init();
    return level <= bt__log_level_cur && (subsys & bt__log_subsys_mask);
}

#define BT_LOG(level, subsys, ...)                                                                 \
    do {                                                                                           \
        if (bt__log_on((level), (subsys)))                                                         \
            bt__log_write((level), (subsys), __FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)
#define BT_WARN(subsys, ...) BT_LOG(BT_LOG_WARN, BT_SUB_##subsys, __VA_ARGS__)
#define BT_INFO(subsys, ...) BT_LOG(BT_LOG_INFO, BT_SUB_##subsys, __VA_ARGS__)
#define BT_TRACE(subsys, ...) BT_LOG(BT_LOG_TRACE, BT_SUB_##subsys, __VA_ARGS__)

#endif
