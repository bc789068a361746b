/*
 * json_access.c: reading values out of a parsed document.
 *
 * Lookups walk the flat token array using each token's `next` to jump over
 * subtrees, so finding "model" in a 260 KB body costs a handful of steps no
 * matter how large "messages" is. Strings are compared and decoded lazily;
 * a string without escapes is returned as a slice of the source (no copy).
 *
 * Duplicate keys: sl_json_obj_get returns the LAST member with that name,
 * which is what the usual upstream parsers (Python, Go, JavaScript) do; use
 * sl_json_obj_key_count to reject ambiguous bodies where that matters.
 */
#include "json/json_internal.h"

#include <errno.h>
#include <stdlib.h>

static inline bool is_tok(const sl_json_doc *d, int t) { return t >= 0 && (uint32_t)t < d->ntoks; }

static inline bool is_type(const sl_json_doc *d, int t, sl_json_type type)
{
    return is_tok(d, t) && d->toks[t].type == type;
}

sl_str sl_json_str_raw(const sl_json_doc *d, int t)
{
    if (!is_type(d, t, SL_JSON_STRING)) return SL_STR_NULL;
    const sl_json_tok *k = &d->toks[t];
    return (sl_str){d->src + k->start + 1, k->end - k->start - 2};
}

/* Compares an escaped string body with lit[0..n) without allocating. */
static bool escaped_eq(sl_str raw, const char *lit, size_t n)
{
    const unsigned char *p = (const unsigned char *)raw.p, *end = p + raw.n;
    const unsigned char *l = (const unsigned char *)lit, *lend = l + n;
    while (p < end) {
        if (*p != '\\') {
            if (l == lend || *l != *p) return false;
            l++, p++;
            continue;
        }
        unsigned char u[4];
        size_t k = json_unescape_one(&p, u);
        if ((size_t)(lend - l) < k || memcmp(l, u, k) != 0) return false;
        l += k;
    }
    return l == lend;
}

static bool str_eq_n(const sl_json_doc *d, int t, const char *lit, size_t n)
{
    sl_str raw = sl_json_str_raw(d, t);
    if (!raw.p) return false;
    if (!d->toks[t].has_escape) return raw.n == n && (n == 0 || memcmp(raw.p, lit, n) == 0);
    if (raw.n < n) return false; /* escapes only ever shrink a string when decoded */
    return escaped_eq(raw, lit, n);
}

bool sl_json_str_eq(const sl_json_doc *d, int t, const char *lit)
{
    return lit && str_eq_n(d, t, lit, strlen(lit));
}

/* Member key token kt equal to key? The raw length decides most misses before any byte is read. */
static inline bool key_eq(const sl_json_doc *d, uint32_t kt, const char *key, size_t n)
{
    const sl_json_tok *t = &d->toks[kt];
    size_t raw = t->end - t->start - 2;
    if (!t->has_escape) /* first byte inline: "model" and "usage" are both 5 long */
        return raw == n && (n == 0 || (d->src[t->start + 1] == key[0] && memcmp(d->src + t->start + 1, key, n) == 0));
    return raw >= n && escaped_eq((sl_str){d->src + t->start + 1, raw}, key, n); /* escapes only shrink */
}

int sl_json_obj_get_str(const sl_json_doc *d, int obj, sl_str key)
{
    if (!is_type(d, obj, SL_JSON_OBJECT)) return -1;
    const sl_json_tok *o = &d->toks[obj];
    int found = -1;
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < o->count; i++) {
        if (key_eq(d, k, key.p, key.n)) found = (int)k + 1;
        k = d->toks[k + 1].next;
    }
    return found;
}

int sl_json_obj_get_counted(const sl_json_doc *d, int obj, sl_str key, int *count)
{
    *count = 0;
    if (!is_type(d, obj, SL_JSON_OBJECT)) return -1;
    const sl_json_tok *o = &d->toks[obj];
    int found = -1;
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < o->count; i++) {
        if (key_eq(d, k, key.p, key.n)) found = (int)k + 1, ++*count;
        k = d->toks[k + 1].next;
    }
    return found;
}

int sl_json_obj_get(const sl_json_doc *d, int obj, const char *key)
{
    return key ? sl_json_obj_get_str(d, obj, sl_str_from_cstr(key)) : -1;
}

int sl_json_obj_key_count(const sl_json_doc *d, int obj, const char *key)
{
    if (!is_type(d, obj, SL_JSON_OBJECT) || !key) return 0;
    size_t n = strlen(key);
    int c = 0;
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < d->toks[obj].count; i++) {
        c += str_eq_n(d, (int)k, key, n);
        k = d->toks[k + 1].next;
    }
    return c;
}

int sl_json_arr_get(const sl_json_doc *d, int arr, uint32_t i)
{
    if (!is_type(d, arr, SL_JSON_ARRAY) || i >= d->toks[arr].count) return -1;
    uint32_t t = (uint32_t)arr + 1;
    while (i--) t = d->toks[t].next;
    return (int)t;
}

int sl_json_first(const sl_json_doc *d, int c)
{
    if (!is_tok(d, c)) return -1;
    const sl_json_tok *k = &d->toks[c];
    if ((k->type != SL_JSON_ARRAY && k->type != SL_JSON_OBJECT) || k->count == 0) return -1;
    return c + 1;
}

static const char *skip_blank(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/*
 * Tokens carry no parent link, so whether a sibling follows is read from the
 * source: after a member or element comes ',' (another one) or a closing
 * bracket. A ':' after a string means it was a key: skip its value first.
 */
int sl_json_next(const sl_json_doc *d, int t)
{
    if (!is_tok(d, t)) return -1;
    const char *end = d->src + d->len;
    const char *p = skip_blank(d->src + d->toks[t].end, end);
    uint32_t last = (uint32_t)t;
    if (p < end && *p == ':') {
        last = (uint32_t)t + 1;
        p = skip_blank(d->src + d->toks[last].end, end);
    }
    if (p == end || *p != ',') return -1;
    return (int)d->toks[last].next;
}

int sl_json_str(const sl_json_doc *d, int t, sl_arena *a, sl_str *out)
{
    sl_str raw = sl_json_str_raw(d, t);
    if (!raw.p) return SL_EINVAL;
    if (!d->toks[t].has_escape) {
        *out = raw;
        return SL_OK;
    }
    unsigned char *o = sl_arena_alloc(a, raw.n + 1), *w = o; /* decoding never grows a string */
    if (!o) return SL_ENOMEM;
    const unsigned char *p = (const unsigned char *)raw.p, *end = p + raw.n;
    while (p < end) {
        const unsigned char *q = memchr(p, '\\', (size_t)(end - p));
        if (!q) q = end;
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        p = q;
        if (p < end) w += json_unescape_one(&p, w);
    }
    *w = '\0';
    *out = (sl_str){(const char *)o, (size_t)(w - o)};
    return SL_OK;
}

int sl_json_int(const sl_json_doc *d, int t, int64_t *out)
{
    if (!is_type(d, t, SL_JSON_NUMBER)) return SL_EINVAL;
    sl_str s = sl_json_raw(d, t);
    bool neg = s.p[0] == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t lim10 = lim / 10, limd = lim % 10; /* one division, not one a digit */
    for (size_t i = neg; i < s.n; i++) {
        unsigned c = (unsigned char)s.p[i] - '0';
        if (c > 9) return SL_EINVAL; /* '.', 'e': not an integer */
        if (v > lim10 || (v == lim10 && c > limd)) return SL_EINVAL;
        v = v * 10 + c;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return SL_OK;
}

int sl_json_double(const sl_json_doc *d, int t, double *out)
{
    if (!is_type(d, t, SL_JSON_NUMBER)) return SL_EINVAL;
    sl_str s = sl_json_raw(d, t);
    char small[64], *buf = small;
    if (s.n >= sizeof small && !(buf = sl_malloc(s.n + 1))) return SL_ENOMEM;
    memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    errno = 0;
    double v = strtod(buf, NULL);
    int rc = (errno == ERANGE && (v > 1.0 || v < -1.0)) ? SL_ELIMIT : SL_OK; /* overflow; underflow is fine */
    if (buf != small) sl_free(buf);
    if (rc == SL_OK) *out = v;
    return rc;
}

bool sl_json_bool(const sl_json_doc *d, int t, bool dflt)
{
    if (!is_tok(d, t)) return dflt;
    if (d->toks[t].type == SL_JSON_TRUE) return true;
    if (d->toks[t].type == SL_JSON_FALSE) return false;
    return dflt;
}
