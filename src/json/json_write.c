/*
 * json_write.c: the JSON writer (sl_jw) and string escaping.
 *
 * The writer tracks one bit per open container ("a value was already written
 * here") so callers never write commas themselves; a key clears the bit so
 * its value does not get one. Errors are sticky: the first failed append or
 * misuse is kept in w->err and everything after it is a no-op, so callers
 * check once at the end.
 *
 * Escaping copies clean runs in one append (found with the same fast scan the
 * reader uses) and only handles quotes, backslashes, control bytes and
 * non-ASCII one at a time. Invalid UTF-8 becomes U+FFFD so the output is
 * always valid JSON, whatever bytes a provider or a client sent.
 */
#include "json/json_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define JW_MAX_DEPTH 64

int sl_json_escape(sl_buf *out, sl_str s)
{
    static const char hex[] = "0123456789abcdef";
    if (s.n == 0) return SL_OK; /* also keeps NULL + 0 (undefined behaviour) out of the pointer math */
    const unsigned char *p = (const unsigned char *)s.p, *end = p + s.n;
    int rc;
    while (p < end) {
        const unsigned char *q = json_scan_plain(p, end);
        if (q > p && (rc = sl_buf_append(out, p, (size_t)(q - p))) != 0) return rc;
        p = q;
        if (p == end) break;
        unsigned c = *p;
        char e[6] = {'\\', 0, '0', '0', 0, 0};
        size_t n = 2;
        if (c >= 0x80) {
            int k = json_utf8_seq(p, end);
            if (k) {
                rc = sl_buf_append(out, p, (size_t)k);
                p += k;
            } else {
                rc = sl_buf_append(out, "\xEF\xBF\xBD", 3); /* U+FFFD for each invalid byte */
                p++;
            }
            if (rc) return rc;
            continue;
        }
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            e[1] = 'u', e[4] = hex[c >> 4], e[5] = hex[c & 15];
            n = 6;
            break;
        }
        if ((rc = sl_buf_append(out, e, n)) != 0) return rc;
        p++;
    }
    return SL_OK;
}

size_t sl_json_escape_into(char *dst, sl_str s)
{
    static const char hex[] = "0123456789abcdef";
    if (s.n == 0) return 0;
    const unsigned char *p = (const unsigned char *)s.p, *end = p + s.n;
    char *o = dst;
    while (p < end) {
        const unsigned char *q = json_scan_plain(p, end);
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        p = q;
        if (p == end) break;
        unsigned c = *p;
        if (c >= 0x80) {
            int k = json_utf8_seq(p, end);
            if (k) {
                memcpy(o, p, (size_t)k);
                o += k;
                p += k;
            } else {
                memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD for each invalid byte (3 <= 6 per input byte) */
                o += 3;
                p++;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4], o[4] = hex[c & 15];
            o += 5;
            break;
        }
        p++;
    }
    return (size_t)(o - dst);
}

void sl_jw_init(sl_jw *w, sl_buf *out)
{
    w->out = out;
    w->err = 0;
    w->depth = 0;
    w->need_comma = 0;
}

/* Room for n more bytes and the NUL, within the buffer's cap, without growing it? */
static inline bool jw_room(const sl_buf *b, size_t n)
{
    return b->cap - b->len > n && (!b->max || n <= b->max - b->len);
}

static inline void jw_put(sl_jw *w, const void *p, size_t n)
{
    if (w->err) return;
    sl_buf *b = w->out;
    if (jw_room(b, n)) { /* punctuation, mostly: no call into buf.c */
        memcpy(b->p + b->len, p, n);
        b->len += n;
        b->p[b->len] = '\0';
        return;
    }
    int rc = sl_buf_append(b, p, n);
    if (rc) w->err = rc;
}

/* Called before every value: a comma if this container already has one. */
static bool jw_value_prefix(sl_jw *w)
{
    if (w->err) return false;
    if (w->depth == 0) return true;
    uint64_t bit = 1ull << (w->depth - 1);
    if (w->need_comma & bit) jw_put(w, ",", 1);
    w->need_comma |= bit;
    return !w->err;
}

static void jw_open(sl_jw *w, char c)
{
    if (!jw_value_prefix(w)) return;
    if (w->depth >= JW_MAX_DEPTH) {
        w->err = SL_ELIMIT;
        return;
    }
    jw_put(w, &c, 1);
    w->depth++;
    w->need_comma &= ~(1ull << (w->depth - 1));
}

static void jw_close(sl_jw *w, char c)
{
    if (w->err) return;
    if (w->depth == 0) {
        w->err = SL_EINVAL;
        return;
    }
    w->depth--;
    jw_put(w, &c, 1);
}

void sl_jw_obj_begin(sl_jw *w) { jw_open(w, '{'); }
void sl_jw_obj_end(sl_jw *w) { jw_close(w, '}'); }
void sl_jw_arr_begin(sl_jw *w) { jw_open(w, '['); }
void sl_jw_arr_end(sl_jw *w) { jw_close(w, ']'); }

/*
 * pre (if not 0), s quoted, post (if not 0), in one reservation when s needs
 * no escaping: the usual key or value. Returns false (nothing written) when it
 * does, or on error.
 */
static bool jw_quoted_plain(sl_jw *w, char pre, sl_str s, char post)
{
    if (w->err) return false;
    const unsigned char *p = (const unsigned char *)s.p;
    if (s.n && json_scan_plain(p, p + s.n) != p + s.n) return false;
    int rc = sl_buf_reserve(w->out, s.n + 2 + (pre != 0) + (post != 0)); /* exact: a capped buffer may be just full */
    if (rc) {
        w->err = rc;
        return false;
    }
    char *o = w->out->p + w->out->len;
    if (pre) *o++ = pre;
    *o++ = '"';
    if (s.n) memcpy(o, s.p, s.n);
    o += s.n;
    *o++ = '"';
    if (post) *o++ = post;
    *o = '\0';
    w->out->len = (size_t)(o - w->out->p);
    return true;
}

static void jw_quoted(sl_jw *w, sl_str s)
{
    if (jw_quoted_plain(w, 0, s, 0) || w->err) return;
    jw_put(w, "\"", 1);
    if (!w->err) {
        int rc = sl_json_escape(w->out, s);
        if (rc) w->err = rc;
    }
    jw_put(w, "\"", 1);
}

void sl_jw_key_str(sl_jw *w, sl_str key)
{
    if (w->err) return;
    if (w->depth == 0) {
        w->err = SL_EINVAL;
        return;
    }
    uint64_t bit = 1ull << (w->depth - 1);
    char comma = w->need_comma & bit ? ',' : 0;
    w->need_comma &= ~bit; /* the value that follows must not add a comma */
    if (jw_quoted_plain(w, comma, key, ':') || w->err) return;
    if (comma) jw_put(w, ",", 1);
    jw_quoted(w, key);
    jw_put(w, ":", 1);
}

void sl_jw_key(sl_jw *w, const char *key) { sl_jw_key_str(w, sl_str_from_cstr(key)); }

void sl_jw_str(sl_jw *w, sl_str s)
{
    if (jw_value_prefix(w)) jw_quoted(w, s);
}

void sl_jw_cstr(sl_jw *w, const char *s)
{
    if (!s) {
        sl_jw_null(w);
        return;
    }
    sl_jw_str(w, sl_str_from_cstr(s));
}

void sl_jw_int(sl_jw *w, int64_t v)
{
    if (!jw_value_prefix(w)) return;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        jw_put(w, "-", 1);
        u = 0 - u; /* also right for INT64_MIN */
    }
    if (!w->err) {
        int rc = sl_buf_append_u64(w->out, u);
        if (rc) w->err = rc;
    }
}

static bool round_trips(double v, int prec, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%.*g", prec, v);
    return n > 0 && (size_t)n < cap && strtod(buf, NULL) == v;
}

/*
 * Shortest "%.Ng" that reads back as the same double. More digits never hurt
 * a round trip, so binary search finds N in ~5 tries; the final check (and
 * the linear fallback) make the result correct even at binade edges.
 */
static size_t format_double(double v, char *buf, size_t cap)
{
    if (v == trunc(v) && fabs(v) < 1e15) { /* integral: "100", not "1e+02" */
        return (size_t)snprintf(buf, cap, "%.0f", v); /* keeps the sign of -0 */
    }
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (round_trips(v, mid, buf, cap))
            hi = mid;
        else
            lo = mid + 1;
    }
    while (lo < 17 && !round_trips(v, lo, buf, cap)) lo++;
    return (size_t)snprintf(buf, cap, "%.*g", lo, v);
}

void sl_jw_double(sl_jw *w, double v)
{
    if (!isfinite(v)) {
        sl_jw_null(w);
        return;
    }
    if (!jw_value_prefix(w)) return;
    char buf[40];
    size_t n = format_double(v, buf, sizeof buf);
    jw_put(w, buf, n);
}

void sl_jw_bool(sl_jw *w, bool v)
{
    if (jw_value_prefix(w)) jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

void sl_jw_null(sl_jw *w)
{
    if (jw_value_prefix(w)) jw_put(w, "null", 4);
}

void sl_jw_raw(sl_jw *w, sl_str json)
{
    if (jw_value_prefix(w)) jw_put(w, json.p, json.n);
}
