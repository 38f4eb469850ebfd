/* param.h: typed knobs read from the environment once.
 *
 *   BT_PARAM_INT(timeout_s, "BATON_TIMEOUT", 300)   defines  int64_t bt__param_timeout_s(void)
 *   BT_PARAM_DBL(stall_warn_s, "BATON_STALL_WARN", 60.0)
 *   BT_PARAM_STR(algo, "BATON_ALGO", "auto")        defines  const char *bt__param_algo(void)
 *
 * Precedence is flag > env > default: the launcher turns its flags into env for the workers.
 * A set value is logged at INFO with its source; a malformed one at WARN, and the default is
 * used (library code cannot exit; the launcher validates its own flags strictly). Every knob
 * is listed in docs/knobs.md's table (tests/t_docs.sh checks it).
 */
#ifndef BT_COMMON_PARAM_H
#define BT_COMMON_PARAM_H

#include <stdint.h>

/* Reads env name: an integer with an optional k/K/m/M/g/G suffix (powers of 1024). */
int64_t bt__env_int(const char *name, int64_t deflt);
double bt__env_dbl(const char *name, double deflt);
/* Returns the env value, or deflt when unset or empty. */
const char *bt__env_str(const char *name, const char *deflt);

/* Strict parsers for flags and env validation: 0 on success, -1 when s is not a number. */
int bt__parse_int(const char *s, int64_t *out);
int bt__parse_dbl(const char *s, double *out);

#define BT__PARAM_DEF(type, fn, name, env, deflt)                                                  \
    static inline type bt__param_##name(void)                                                      \
    {                                                                                              \
        static type cached;                                                                        \
        static int ready;                                                                          \
        type v;                                                                                    \
        if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {                                           \
            __atomic_load(&cached, &v, __ATOMIC_RELAXED);                                          \
            return v;                                                                              \
        }                                                                                          \
        v = fn(env, deflt); /* threads racing here read the same env */                            \
        __atomic_store(&cached, &v, __ATOMIC_RELAXED);                                             \
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);                                             \
        return v;                                                                                  \
    }
#define BT_PARAM_INT(name, env, deflt) BT__PARAM_DEF(int64_t, bt__env_int, name, env, deflt)
#define BT_PARAM_DBL(name, env, deflt) BT__PARAM_DEF(double, bt__env_dbl, name, env, deflt)
#define BT_PARAM_STR(name, env, deflt) BT__PARAM_DEF(const char *, bt__env_str, name, env, deflt)

#endif
