/* hash.h: FNV-1a (Fowler, Noll, Vo), the project's one non-cryptographic hash: the store's and
 * the parameter server's hash tables, the TCP handshake's job cookie, the token's short form.
 * 64-bit; not for anything an attacker chooses to collide (the store authenticates first).
 */
#ifndef BT_COMMON_HASH_H
#define BT_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define BT_FNV1A_INIT 1469598103934665603ULL

/* Continues hash h over n bytes at p (start with BT_FNV1A_INIT). */
static inline uint64_t bt__fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Continues hash h over the bytes of the string s (without its NUL). */
static inline uint64_t bt__fnv1a_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

#endif
