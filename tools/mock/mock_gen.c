/*
 * mock_gen.c: everything the mock makes up, as pure functions so that tests
 * (and docs/mock.md) can predict it exactly: the reply text and its tokens,
 * prompt token estimates, tool-call arguments from a JSON schema, embedding
 * vectors, ids.
 */
#include "mock.h"

#include <math.h>
#include <stdatomic.h>

/* Generated token i is WORDS[i % 16]; stored with the joining space so tokens concatenate to the text. */
static const char *const WORDS[16] = {
    " lorem", " ipsum", " dolor",   " sit",    " amet",     " consectetur", " adipiscing", " elit",
    " sed",   " do",    " eiusmod", " tempor", " incididunt", " ut",        " labore",     " et",
};

sl_str sl_mock_word(uint64_t i)
{
    sl_str w = sl_str_from_cstr(WORDS[i % SL_ARRAY_LEN(WORDS)]);
    if (i == 0) w.p++, w.n--;
    return w;
}

int sl_mock_split_words(sl_str s, sl_arena *a, sl_str **out, size_t *n)
{
    size_t count = s.n ? 1 : 0;
    for (size_t i = 1; i < s.n; i++)
        if (s.p[i] == ' ' && s.p[i - 1] != ' ') count++;
    *n = count;
    *out = NULL;
    if (!count) return SL_OK;
    sl_str *t = sl_arena_alloc(a, count * sizeof *t);
    if (!t) return SL_ENOMEM;
    size_t k = 0, start = 0;
    for (size_t i = 1; i < s.n; i++) {
        if (s.p[i] == ' ' && s.p[i - 1] != ' ') {
            t[k++] = (sl_str){s.p + start, i - start};
            start = i;
        }
    }
    t[k] = (sl_str){s.p + start, s.n - start};
    *out = t;
    return SL_OK;
}

int sl_mock_split_fragments(sl_str s, sl_arena *a, sl_str **out, size_t *n)
{
    size_t cap = s.n + 1, k = 0; /* fragments are >= 1 byte, so s.n bounds the count */
    sl_str *t = sl_arena_alloc(a, cap * sizeof *t);
    if (!t) return SL_ENOMEM;
    size_t start = 0;
    while (start < s.n) {
        size_t end = SL_MIN(start + SL_MOCK_ARG_FRAGMENT, s.n);
        /* never cut inside a UTF-8 sequence: back off to its lead byte */
        while (end < s.n && end > start + 1 && ((unsigned char)s.p[end] & 0xC0) == 0x80) end--;
        t[k++] = (sl_str){s.p + start, end - start};
        start = end;
    }
    *out = t;
    *n = k;
    return SL_OK;
}

int sl_mock_text_make(const sl_mock_knobs *k, sl_str body, uint64_t max_tokens, sl_arena *a, sl_mock_text *out)
{
    out->truncated = false;
    if (k->echo || k->has_text) {
        int rc = sl_mock_split_words(k->echo ? body : k->text, a, &out->tok, &out->n);
        if (rc) return rc;
    } else {
        out->n = (size_t)k->tokens;
        out->tok = out->n ? sl_arena_alloc(a, out->n * sizeof *out->tok) : NULL;
        if (out->n && !out->tok) return SL_ENOMEM;
        for (size_t i = 0; i < out->n; i++) out->tok[i] = sl_mock_word(i);
    }
    if (out->n > max_tokens) {
        out->n = (size_t)max_tokens;
        out->truncated = true;
    }
    return SL_OK;
}

int sl_mock_text_join(const sl_mock_text *t, sl_arena *a, sl_str *out)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) n += t->tok[i].n;
    char *p = sl_arena_alloc(a, n + 1);
    if (!p) return SL_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->tok[i].n) memcpy(p + o, t->tok[i].p, t->tok[i].n);
        o += t->tok[i].n;
    }
    p[o] = '\0';
    *out = (sl_str){p, o};
    return SL_OK;
}

int sl_mock_tool_offer(const sl_json_doc *d, int name_tok, int schema_tok, sl_str want, sl_arena *a, sl_mock_tool *t)
{
    if (t->found || want.n == 0 || name_tok < 0 || sl_json_type_of(d, name_tok) != SL_JSON_STRING) return 0;
    sl_str name;
    int rc = sl_json_str(d, name_tok, a, &name);
    if (rc) return rc;
    if (!sl_str_eq_lit(want, "auto") && !sl_str_eq(want, name)) return 0;
    rc = sl_mock_tool_args(d, schema_tok, a, &t->args);
    if (rc) return rc;
    t->name = name;
    t->found = true;
    return 1;
}

int sl_mock_tool_settle(sl_str want, sl_mock_tool *t)
{
    if (t->found) return SL_OK;
    if (sl_str_eq_lit(want, "auto")) return SL_ENOTFOUND;
    t->name = want;
    t->args = SL_STR("{}");
    t->found = true;
    return SL_OK;
}

uint64_t sl_mock_prompt_tokens(uint64_t text_bytes, uint64_t messages) { return (text_bytes + 3) / 4 + 4 * messages; }

static unsigned hex_digit(unsigned char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/*
 * The decoded byte length of a string token, counted over its raw text
 * without decoding it (prompt estimates only need the length; decoding a
 * 256 KB prompt would copy it once more). The reader has checked the escapes:
 * \uXXXX is 1-3 UTF-8 bytes, a surrogate pair (12 raw bytes) 4, any other
 * escape 1, exactly what sl_json_str() would produce.
 */
static uint64_t str_bytes(const sl_json_doc *d, int t)
{
    sl_str raw = sl_json_str_raw(d, t);
    if (!d->toks[t].has_escape) return raw.n;
    const unsigned char *p = (const unsigned char *)raw.p, *end = p + raw.n;
    uint64_t n = 0;
    while (p < end) {
        const unsigned char *q = memchr(p, '\\', (size_t)(end - p));
        if (!q) {
            n += (uint64_t)(end - p);
            break;
        }
        n += (uint64_t)(q - p);
        if (end - q < 2) break;
        if (q[1] != 'u' || end - q < 6) {
            n += 1;
            p = q + 2;
            continue;
        }
        unsigned cp = hex_digit(q[2]) << 12 | hex_digit(q[3]) << 8 | hex_digit(q[4]) << 4 | hex_digit(q[5]);
        p = q + 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
            n += 4;
            p += 6;
        } else {
            n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
        }
    }
    return n;
}

uint64_t sl_mock_content_bytes(const sl_json_doc *d, int t, sl_arena *a)
{
    (void)a;
    if (t < 0) return 0;
    sl_json_type ty = sl_json_type_of(d, t);
    if (ty == SL_JSON_STRING) return str_bytes(d, t);
    if (ty == SL_JSON_OBJECT) {
        /* a content part: its "text", or (tool results) its nested "content" */
        int txt = sl_json_obj_get(d, t, "text");
        if (txt >= 0 && sl_json_type_of(d, txt) == SL_JSON_STRING) return str_bytes(d, txt);
        int c = sl_json_obj_get(d, t, "content");
        return c >= 0 && sl_json_type_of(d, c) != SL_JSON_OBJECT ? sl_mock_content_bytes(d, c, a) : 0;
    }
    if (ty != SL_JSON_ARRAY) return 0;
    uint64_t sum = 0;
    for (int e = sl_json_first(d, t); e >= 0; e = sl_json_next(d, e)) {
        if (sl_json_type_of(d, e) != SL_JSON_ARRAY) sum += sl_mock_content_bytes(d, e, a);
    }
    return sum;
}

/* Schema type names compare case-insensitively: Gemini writes "STRING", "INTEGER", ... */
static bool type_is(const sl_json_doc *d, int ty, const char *name)
{
    return ty >= 0 && sl_json_type_of(d, ty) == SL_JSON_STRING &&
           sl_str_case_eq(sl_json_str_raw(d, ty), sl_str_from_cstr(name));
}

/* The first "type" of a property schema, skipping "null" in a type list. */
static int schema_type(const sl_json_doc *d, int prop)
{
    int ty = sl_json_obj_get(d, prop, "type");
    if (ty >= 0 && sl_json_type_of(d, ty) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, ty); e >= 0; e = sl_json_next(d, e))
            if (!type_is(d, e, "null")) return e;
        return -1;
    }
    return ty;
}

static void arg_value(const sl_json_doc *d, int prop, sl_jw *w)
{
    int en = -1, cst = -1, ty = -1;
    if (prop >= 0 && sl_json_type_of(d, prop) == SL_JSON_OBJECT) {
        en = sl_json_obj_get(d, prop, "enum");
        cst = sl_json_obj_get(d, prop, "const");
        ty = schema_type(d, prop);
    }
    if (en >= 0 && sl_json_type_of(d, en) == SL_JSON_ARRAY && sl_json_first(d, en) >= 0)
        sl_jw_raw(w, sl_json_raw(d, sl_json_first(d, en)));
    else if (cst >= 0)
        sl_jw_raw(w, sl_json_raw(d, cst));
    else if (type_is(d, ty, "string"))
        sl_jw_cstr(w, "lorem");
    else if (type_is(d, ty, "integer") || type_is(d, ty, "number"))
        sl_jw_int(w, 1);
    else if (type_is(d, ty, "boolean"))
        sl_jw_bool(w, true);
    else if (type_is(d, ty, "array"))
        sl_jw_raw(w, SL_STR("[]"));
    else if (type_is(d, ty, "object"))
        sl_jw_raw(w, SL_STR("{}"));
    else
        sl_jw_null(w);
}

int sl_mock_tool_args(const sl_json_doc *d, int schema, sl_arena *a, sl_str *out)
{
    int props = schema >= 0 && sl_json_type_of(d, schema) == SL_JSON_OBJECT ? sl_json_obj_get(d, schema, "properties")
                                                                            : -1;
    if (props < 0 || sl_json_type_of(d, props) != SL_JSON_OBJECT) {
        *out = SL_STR("{}");
        return SL_OK;
    }
    sl_buf b;
    sl_buf_init(&b, 1u << 20);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_jw_obj_begin(&w);
    int n = 0;
    for (int key = sl_json_first(d, props); key >= 0 && n < 16; key = sl_json_next(d, key), n++) {
        sl_str name;
        if (sl_json_str(d, key, a, &name)) continue;
        sl_jw_key_str(&w, name);
        arg_value(d, sl_json_member_value(key), &w);
    }
    sl_jw_obj_end(&w);
    int rc = w.err;
    if (!rc) {
        *out = sl_arena_str(a, sl_buf_str(&b));
        if (!out->p) rc = SL_ENOMEM;
    }
    sl_buf_free(&b);
    return rc;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void sl_mock_embedding(sl_str input, uint32_t dim, float *out)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < input.n; i++) h = (h ^ (unsigned char)input.p[i]) * 0x100000001b3ull;
    double norm = 0;
    for (uint32_t j = 0; j < dim; j++) {
        uint64_t x = splitmix64(h + j * 0x9E3779B97F4A7C15ull);
        double v = (double)(x >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
        out[j] = (float)v;
        norm += v * v;
    }
    if (norm <= 0) {
        if (dim) out[0] = 1.0f;
        return;
    }
    double inv = 1.0 / sqrt(norm);
    for (uint32_t j = 0; j < dim; j++) out[j] = (float)(out[j] * inv);
}

int sl_mock_base64(sl_buf *out, const void *p, size_t n)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    int rc = sl_buf_reserve(out, (n + 2) / 3 * 4);
    if (rc) return rc;
    char *o = out->p + out->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = T[v >> 18], *o++ = T[(v >> 12) & 63], *o++ = T[(v >> 6) & 63], *o++ = T[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = T[v >> 18], *o++ = T[(v >> 12) & 63];
        *o++ = i + 1 < n ? T[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - out->p);
    out->p[out->len] = '\0';
    return SL_OK;
}

int sl_mock_json_u64(const sl_json_doc *d, int obj, const char *key, uint64_t max, uint64_t dflt, uint64_t *out)
{
    int t = obj >= 0 && sl_json_type_of(d, obj) == SL_JSON_OBJECT ? sl_json_obj_get(d, obj, key) : -1;
    *out = dflt;
    if (t < 0 || sl_json_type_of(d, t) == SL_JSON_NULL) return SL_OK;
    int64_t v;
    if (sl_json_type_of(d, t) != SL_JSON_NUMBER || sl_json_int(d, t, &v) || v < 0) return SL_EINVAL;
    *out = (uint64_t)v > max ? max : (uint64_t)v;
    return SL_OK;
}

int sl_mock_json_str(const sl_json_doc *d, int obj, const char *key, sl_arena *a, sl_str *out)
{
    int t = obj >= 0 && sl_json_type_of(d, obj) == SL_JSON_OBJECT ? sl_json_obj_get(d, obj, key) : -1;
    if (t < 0 || sl_json_type_of(d, t) != SL_JSON_STRING) return SL_ENOTFOUND;
    return sl_json_str(d, t, a, out);
}

static _Atomic uint64_t next_id = 1;

uint64_t sl_mock_next_id(void) { return atomic_fetch_add(&next_id, 1); }
