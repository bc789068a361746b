/* sl.c: slices, error strings and the allocation wrapper (see sl.h). */
#include "core/sl.h"

#include <stdatomic.h>
#include <stdlib.h>

static _Atomic long alloc_countdown; /* 0 = never fail */

void sl_alloc_fail_after(long n) { atomic_store(&alloc_countdown, n); }

static bool alloc_should_fail(void)
{
    long left = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
    if (left == 0) return false;
    if (left == 1) return true; /* stays at 1: every later allocation fails too */
    atomic_fetch_sub(&alloc_countdown, 1);
    return false;
}

void *sl_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n ? n : 1); }
void *sl_calloc(size_t count, size_t size) { return alloc_should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1); }
void *sl_realloc(void *p, size_t n) { return alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }
void sl_free(void *p) { free(p); }

char *sl_strndup(const char *s, size_t n)
{
    char *d = sl_malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* ASCII lower case of 8 bytes at once: 0x20 added to every byte in 'A'..'Z', others kept. */
static inline uint64_t lower8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t low7 = w & (0x7f * ones);
    uint64_t above_z = low7 + (0x7f - 'Z') * ones;  /* high bit set where byte > 'Z' */
    uint64_t from_a = low7 + (0x80 - 'A') * ones;   /* high bit set where byte >= 'A' */
    uint64_t upper = (from_a ^ above_z) & ~w & (0x80 * ones);
    return w | (upper >> 2);
}

static inline uint64_t load8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Header names and JSON keys are compared case-insensitively on every request:
 * 8 bytes a step, the last word overlapping the one before it. */
bool sl_str_case_eq(sl_str a, sl_str b)
{
    if (a.n != b.n) return false;
    size_t n = a.n;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a.p[i] != b.p[i] && lower((unsigned char)a.p[i]) != lower((unsigned char)b.p[i])) return false;
        return true;
    }
    for (size_t i = 0;; i += 8) {
        if (i > n - 8) i = n - 8;
        uint64_t x = load8(a.p + i), y = load8(b.p + i);
        if (x != y && lower8(x) != lower8(y)) return false;
        if (i == n - 8) return true;
    }
}

bool sl_str_starts_with(sl_str s, sl_str prefix) { return s.n >= prefix.n && memcmp(s.p, prefix.p, prefix.n) == 0; }

int sl_str_to_u64(sl_str s, uint64_t max, uint64_t *out)
{
    if (s.n == 0 || s.n > 20) return SL_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned d = (unsigned char)s.p[i] - '0';
        if (d > 9) return SL_EINVAL;
        if (d > max || v > (max - d) / 10) return SL_ELIMIT;
        v = v * 10 + d;
    }
    *out = v;
    return SL_OK;
}

bool sl_glob_match(sl_str pat, sl_str s)
{
    size_t pi = 0, si = 0, star_pi = (size_t)-1, star_si = 0;
    while (si < s.n) {
        if (pi < pat.n && (pat.p[pi] == '?' || pat.p[pi] == s.p[si])) {
            pi++, si++;
        } else if (pi < pat.n && pat.p[pi] == '*') {
            star_pi = pi++, star_si = si;
        } else if (star_pi != (size_t)-1) {
            pi = star_pi + 1, si = ++star_si;
        } else {
            return false;
        }
    }
    while (pi < pat.n && pat.p[pi] == '*') pi++;
    return pi == pat.n;
}

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK: return "ok";
    case SL_ENOMEM: return "out of memory";
    case SL_EINVAL: return "invalid argument";
    case SL_ELIMIT: return "limit reached";
    case SL_EAGAIN: return "incomplete";
    case SL_EPARSE: return "malformed input";
    case SL_EIO: return "i/o error";
    case SL_ETIMEOUT: return "timed out";
    case SL_ENOTFOUND: return "not found";
    case SL_ECLOSED: return "peer closed";
    case SL_EEXIST: return "already exists";
    default: return "unknown error";
    }
}
