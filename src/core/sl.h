/*
 * sl.h: the few things every sluice module uses: slices, error codes and the
 * allocation wrapper.
 *
 * Errors follow one convention (ARCHITECTURE.md, habit 7): functions return 0
 * or a negative SL_E* code; messages for users are built at the edge, in the
 * caller's protocol. All heap allocation goes through sl_malloc() and friends
 * so that tests can make the Nth allocation fail and prove the error paths.
 */
#ifndef SL_SL_H
#define SL_SL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A slice: a pointer and a length into someone else's buffer. Never owns. */
typedef struct sl_str {
    const char *p;
    size_t n;
} sl_str;

#define SL_STR(lit) ((sl_str){(lit), sizeof(lit) - 1})
#define SL_STR_NULL ((sl_str){NULL, 0})
#define SL_STR_FMT(s) (int)(s).n, (s).p /* printf("%.*s", SL_STR_FMT(s)) */

static inline sl_str sl_str_from_cstr(const char *s) { return (sl_str){s, s ? strlen(s) : 0}; }
static inline bool sl_str_eq(sl_str a, sl_str b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }
static inline bool sl_str_eq_lit(sl_str a, const char *lit) { return sl_str_eq(a, sl_str_from_cstr(lit)); }
bool sl_str_case_eq(sl_str a, sl_str b);
bool sl_str_starts_with(sl_str s, sl_str prefix);
/* Without leading and trailing SP and HTAB (HTTP's optional whitespace). */
static inline sl_str sl_str_trim(sl_str s)
{
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) s.p++, s.n--;
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t')) s.n--;
    return s;
}
/* Parses a non-negative decimal integer that fits in max; rejects signs, spaces, empty. */
int sl_str_to_u64(sl_str s, uint64_t max, uint64_t *out);
/* Glob match supporting '*' and '?' (model names, tool globs). */
bool sl_glob_match(sl_str pattern, sl_str s);

enum {
    SL_OK = 0,
    SL_ENOMEM = -1,   /* allocation failed */
    SL_EINVAL = -2,   /* bad argument or input */
    SL_ELIMIT = -3,   /* a configured cap was reached */
    SL_EAGAIN = -4,   /* need more input / would block */
    SL_EPARSE = -5,   /* malformed input */
    SL_EIO = -6,      /* I/O error */
    SL_ETIMEOUT = -7, /* deadline passed */
    SL_ENOTFOUND = -8,
    SL_ECLOSED = -9,  /* peer went away */
    SL_EEXIST = -10,
};
const char *sl_strerror(int err);

void *sl_malloc(size_t n);
void *sl_calloc(size_t count, size_t size);
void *sl_realloc(void *p, size_t n);
void sl_free(void *p);
char *sl_strndup(const char *s, size_t n);
static inline char *sl_strdup(const char *s) { return sl_strndup(s, strlen(s)); }
/* Test hook: the nth allocation from now (1-based) and all after it fail; 0 disables. */
void sl_alloc_fail_after(long n);

/*
 * Decimal digits without printf (they are on every request: lengths, status,
 * counters). out needs SL_DEC_MAX bytes; no NUL is written; the count is
 * returned.
 */
#define SL_DEC_MAX 21 /* a uint64 (20 digits), or an int64 with its sign */
static inline size_t sl_u64_dec(char *out, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
    return n;
}
static inline size_t sl_i64_dec(char *out, int64_t v)
{
    if (v >= 0) return sl_u64_dec(out, (uint64_t)v);
    out[0] = '-';
    return 1 + sl_u64_dec(out + 1, (uint64_t)0 - (uint64_t)v);
}

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SL_UNUSED(x) (void)(x)
#define SL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
