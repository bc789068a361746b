/*
 * json_read.c: the validating JSON reader (RFC 8259, strict).
 *
 * One pass over the bytes, no recursion: an explicit stack of open container
 * token indices drives a small goto state machine (value, key, after-value).
 * Every token is written once, in document order; a container's `end`,
 * `next` and `count` are filled in when it closes. Strings are scanned with
 * json_scan_plain() (16 bytes a step) and only slow down for escapes and
 * non-ASCII, which are validated in place. Nothing is copied or decoded here.
 *
 * Tokens live in the arena. Their number is unknown until the end, so the
 * array starts small (relative to the body size) and doubles with a copy; the
 * arena keeps the old copies, which bounds the waste by the final size.
 *
 * sl_json_top_members walks the same grammar with the same helpers but writes
 * no tokens: it only notes where a few top-level members' values are. It is
 * the stream fast path's look at each chunk (fuzz_json checks it agrees with
 * the parse).
 */
#include "json/json_internal.h"

const unsigned char sl_json_special[256] = {
    /* 0x00-0x1f: control characters must be escaped inside strings */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
    /* 0x80-0xff: start or middle of a UTF-8 sequence, validated separately */
    [0x80 ... 0xff] = 1,
};

#define JSON_DEFAULT_DEPTH 64

typedef struct jp {
    const unsigned char *base;
    sl_arena *a;
    sl_json_tok *toks;
    uint32_t ntoks, cap, max_tokens;
} jp;

static int tok_grow(jp *j)
{
    if (j->cap >= j->max_tokens) return SL_ELIMIT;
    uint64_t ncap = j->cap ? (uint64_t)j->cap * 2 : 16;
    if (ncap > j->max_tokens) ncap = j->max_tokens;
    if (ncap > SIZE_MAX / sizeof(sl_json_tok)) return SL_ENOMEM;
    sl_json_tok *t = sl_arena_alloc(j->a, (size_t)ncap * sizeof(sl_json_tok));
    if (!t) return SL_ENOMEM;
    if (j->ntoks) memcpy(t, j->toks, j->ntoks * sizeof(sl_json_tok));
    j->toks = t;
    j->cap = (uint32_t)ncap;
    return SL_OK;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p > ' ') return p; /* the usual case (compact JSON): one compare, not four */
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* Validates the escape at *pp (the backslash). On failure *pp is the bad byte. */
static bool scan_escape(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp + 1;
    if (p == end) goto bad;
    switch (*p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        *pp = p + 1;
        return true;
    case 'u': break;
    default: goto bad;
    }
    if (end - p < 5) goto bad;
    long cp = json_hex4(p + 1);
    if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) goto bad; /* bad hex, or a lone low surrogate */
    p += 5;
    if (cp >= 0xD800 && cp <= 0xDBFF) { /* high surrogate: a low one must follow */
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u') goto bad;
        long lo = json_hex4(p + 2);
        if (lo < 0xDC00 || lo > 0xDFFF) goto bad;
        p += 6;
    }
    *pp = p;
    return true;
bad:
    *pp = p;
    return false;
}

/*
 * Scans a string body from *pp (just after the opening quote). On success *pp
 * is one past the closing quote; on failure it is the offending byte.
 */
static inline __attribute__((always_inline)) bool scan_string(const unsigned char **pp, const unsigned char *end,
                                                              unsigned *has_esc)
{
    const unsigned char *p = *pp;
    for (;;) {
        p = json_scan_plain(p, end);
        if (p == end) goto bad;
        unsigned c = *p;
        if (c == '"') {
            *pp = p + 1;
            return true;
        }
        if (c == '\\') {
            *has_esc = 1;
            if (!scan_escape(&p, end)) goto bad;
            continue;
        }
        if (c < 0x20) goto bad;
        do { /* a run of non-ASCII text (CJK, emoji) stays in this loop */
            int n = json_utf8_seq(p, end);
            if (!n) goto bad;
            p += n;
        } while (p < end && *p >= 0x80);
    }
bad:
    *pp = p;
    return false;
}

static inline bool is_digit(unsigned c) { return c - '0' < 10; }

/* Validates a number at *pp: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool scan_number(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    if (*p == '-' && ++p == end) goto bad;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (++p < end && is_digit(*p)) {}
    } else {
        goto bad;
    }
    if (p < end && *p == '.') {
        if (++p == end || !is_digit(*p)) goto bad;
        while (++p < end && is_digit(*p)) {}
    }
    if (p < end && (*p | 0x20) == 'e') {
        if (++p < end && (*p == '+' || *p == '-')) p++;
        if (p == end || !is_digit(*p)) goto bad;
        while (++p < end && is_digit(*p)) {}
    }
    *pp = p; /* "01" or "1x" are caught by the caller: the next byte must be a delimiter */
    return true;
bad:
    *pp = p;
    return false;
}

static bool scan_literal(const unsigned char **pp, const unsigned char *end, const char *lit, size_t n)
{
    const unsigned char *p = *pp;
    if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0) return false;
    *pp = p + n;
    return true;
}

static inline void set_tok(sl_json_tok *t, sl_json_type type, uint32_t start, uint32_t end, uint32_t next)
{
    t->type = type;
    t->has_escape = 0;
    t->start = start;
    t->end = end;
    t->next = next;
    t->count = 0;
}

static int parse_doc(jp *j, const unsigned char *p, const unsigned char *end, uint32_t *stack,
                     uint32_t max_depth, size_t *err_off)
{
    const unsigned char *base = j->base;
    uint32_t depth = 0;
    int rc = SL_EPARSE;
    sl_json_tok *t;

value:
    p = skip_ws(p, end);
    if (p == end) goto fail;
    if (j->ntoks == j->cap && (rc = tok_grow(j)) != 0) goto fail;
    rc = SL_EPARSE; /* a successful grow must not turn a later syntax error into success */
    t = &j->toks[j->ntoks];
    switch (*p) {
    case '"': {
        const unsigned char *s = p++;
        unsigned esc = 0;
        if (!scan_string(&p, end, &esc)) goto fail;
        set_tok(t, SL_JSON_STRING, (uint32_t)(s - base), (uint32_t)(p - base), j->ntoks + 1);
        t->has_escape = esc;
        j->ntoks++;
        goto after_value;
    }
    case '{':
    case '[': {
        if (depth >= max_depth) {
            rc = SL_ELIMIT;
            goto fail;
        }
        bool obj = *p == '{';
        set_tok(t, obj ? SL_JSON_OBJECT : SL_JSON_ARRAY, (uint32_t)(p - base), 0, 0);
        stack[depth++] = j->ntoks++;
        p = skip_ws(p + 1, end);
        if (p == end) goto fail;
        if (*p == (obj ? '}' : ']')) {
            t->end = (uint32_t)(++p - base);
            t->next = j->ntoks;
            depth--;
            goto after_value;
        }
        if (obj) goto key;
        goto value;
    }
    case 't':
        if (!scan_literal(&p, end, "true", 4)) goto fail;
        set_tok(t, SL_JSON_TRUE, (uint32_t)(p - base) - 4, (uint32_t)(p - base), j->ntoks + 1);
        j->ntoks++;
        goto after_value;
    case 'f':
        if (!scan_literal(&p, end, "false", 5)) goto fail;
        set_tok(t, SL_JSON_FALSE, (uint32_t)(p - base) - 5, (uint32_t)(p - base), j->ntoks + 1);
        j->ntoks++;
        goto after_value;
    case 'n':
        if (!scan_literal(&p, end, "null", 4)) goto fail;
        set_tok(t, SL_JSON_NULL, (uint32_t)(p - base) - 4, (uint32_t)(p - base), j->ntoks + 1);
        j->ntoks++;
        goto after_value;
    default: {
        const unsigned char *s = p;
        if (!scan_number(&p, end)) goto fail;
        set_tok(t, SL_JSON_NUMBER, (uint32_t)(s - base), (uint32_t)(p - base), j->ntoks + 1);
        j->ntoks++;
        goto after_value;
    }
    }

key: /* p is at a non-blank byte inside an object */
    if (*p != '"') goto fail;
    if (j->ntoks == j->cap && (rc = tok_grow(j)) != 0) goto fail;
    rc = SL_EPARSE;
    {
        const unsigned char *s = p++;
        unsigned esc = 0;
        if (!scan_string(&p, end, &esc)) goto fail;
        t = &j->toks[j->ntoks];
        set_tok(t, SL_JSON_STRING, (uint32_t)(s - base), (uint32_t)(p - base), j->ntoks + 1);
        t->has_escape = esc;
        j->ntoks++;
    }
    p = skip_ws(p, end);
    if (p == end || *p != ':') goto fail;
    p++;
    goto value;

after_value:
    if (depth == 0) goto done;
    p = skip_ws(p, end);
    if (p == end) goto fail;
    t = &j->toks[stack[depth - 1]];
    t->count++;
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (p == end) goto fail;
        if (t->type == SL_JSON_OBJECT) goto key;
        goto value;
    }
    if (*p != (t->type == SL_JSON_OBJECT ? '}' : ']')) goto fail;
    t->end = (uint32_t)(++p - base);
    t->next = j->ntoks;
    depth--;
    goto after_value;

done:
    p = skip_ws(p, end);
    if (p != end) goto fail; /* trailing garbage */
    return SL_OK;

fail:
    if (err_off) *err_off = (size_t)(p - base);
    return rc;
}

int sl_json_parse(sl_json_doc *doc, const char *src, size_t len, sl_arena *a, const sl_json_limits *lim,
                  size_t *err_off)
{
    doc->src = src;
    doc->len = len;
    doc->toks = NULL;
    doc->ntoks = 0;
    if (err_off) *err_off = 0;
    if (len > UINT32_MAX) return SL_ELIMIT; /* offsets are 32-bit */
    if (!src && len) return SL_EINVAL;

    uint32_t max_depth = lim && lim->max_depth ? lim->max_depth : JSON_DEFAULT_DEPTH;
    uint64_t max_tokens = lim && lim->max_tokens ? lim->max_tokens : (uint64_t)len / 2 + 16;
    if (max_tokens > UINT32_MAX - 1) max_tokens = UINT32_MAX - 1;

    /* Depth cannot exceed the byte count, so a huge configured limit costs nothing on small bodies. */
    uint32_t stack_local[JSON_DEFAULT_DEPTH];
    uint32_t *stack = stack_local;
    uint64_t stack_n = SL_MIN((uint64_t)max_depth, (uint64_t)len + 1);
    if (stack_n > JSON_DEFAULT_DEPTH) {
        if (!(stack = sl_arena_alloc(a, (size_t)stack_n * sizeof(uint32_t)))) return SL_ENOMEM;
    }

    jp j = {.base = (const unsigned char *)src, .a = a, .max_tokens = (uint32_t)max_tokens};
    /* Chat bodies are mostly long strings: ~1 token per 64 bytes is a good first guess. Small
     * documents (answers, usage chunks) are dense: room for 1 per 8 bytes costs little and saves a grow. */
    uint64_t first = SL_MIN(max_tokens, (uint64_t)len / (len <= 4096 ? 8 : 64) + 16);
    if (!(j.toks = sl_arena_alloc(a, (size_t)first * sizeof(sl_json_tok)))) return SL_ENOMEM;
    j.cap = (uint32_t)first;

    int rc = parse_doc(&j, j.base, j.base + len, stack, max_depth, err_off);
    if (rc) return rc;
    doc->toks = j.toks;
    doc->ntoks = j.ntoks;
    return SL_OK;
}

/* ---- sl_json_top_members: parse_doc's walk without tokens ---- */

static sl_json_type type_at(unsigned c)
{
    switch (c) {
    case '"': return SL_JSON_STRING;
    case '{': return SL_JSON_OBJECT;
    case '[': return SL_JSON_ARRAY;
    case 't': return SL_JSON_TRUE;
    case 'f': return SL_JSON_FALSE;
    case 'n': return SL_JSON_NULL;
    default: return SL_JSON_NUMBER;
    }
}

#define SL_JSON_TOP_MAX 16 /* members one sl_json_top_members call can look for */

/* Which of m[] is named k[0..n)? lens has bit L set when some wanted key is L bytes long
 * (64 and more share bit 63): most keys of a chunk are ruled out by their length alone. */
static inline int wanted(const sl_json_member *m, size_t nm, uint64_t lens, const unsigned char *k, size_t n)
{
    if (!((lens >> (n < 63 ? n : 63)) & 1)) return -1;
    for (size_t i = 0; i < nm; i++)
        if (m[i].key.n == n && (n == 0 || (m[i].key.p[0] == (char)k[0] && memcmp(m[i].key.p, k, n) == 0)))
            return (int)i;
    return -1;
}

static void note_member(sl_json_member *m, const unsigned char *base, const unsigned char *v, const unsigned char *p)
{
    m->found = true;
    m->type = type_at(*v);
    m->start = (uint32_t)(v - base);
    m->end = (uint32_t)(p - base);
    m->empty = (*v == '{' || *v == '[') && skip_ws(v + 1, p) == p - 1;
}

int sl_json_top_members(const char *src, size_t len, sl_json_member *m, size_t nm)
{
    if (nm > SL_JSON_TOP_MAX) return SL_EINVAL;
    uint64_t lens = 0;
    for (size_t i = 0; i < nm; i++) {
        m[i].found = false;
        lens |= 1ull << (m[i].key.n < 63 ? m[i].key.n : 63);
    }
    if (len > UINT32_MAX) return SL_ELIMIT;
    if (!src) return len ? SL_EINVAL : SL_EPARSE;
    const unsigned char *base = (const unsigned char *)src, *p = base, *end = base + len, *v = NULL;
    uint64_t objs = 0; /* bit d: the container at depth d+1 is an object (depth <= 64) */
    uint32_t depth = 0;
    int cur = -1; /* the wanted member whose value is being read */
    bool top_obj = false, escaped_key = false;

value:
    p = skip_ws(p, end);
    if (p == end) return SL_EPARSE;
    if (depth == 1) v = p;
    switch (*p) {
    case '"': {
        unsigned esc = 0;
        p++;
        if (!scan_string(&p, end, &esc)) return SL_EPARSE;
        goto after_value;
    }
    case '{':
    case '[': {
        if (depth >= JSON_DEFAULT_DEPTH) return SL_ELIMIT;
        bool obj = *p == '{';
        if (depth == 0) top_obj = obj;
        objs = obj ? objs | (1ull << depth) : objs & ~(1ull << depth);
        depth++;
        p = skip_ws(p + 1, end);
        if (p == end) return SL_EPARSE;
        if (*p == (obj ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (obj) goto key;
        goto value;
    }
    case 't':
        if (!scan_literal(&p, end, "true", 4)) return SL_EPARSE;
        goto after_value;
    case 'f':
        if (!scan_literal(&p, end, "false", 5)) return SL_EPARSE;
        goto after_value;
    case 'n':
        if (!scan_literal(&p, end, "null", 4)) return SL_EPARSE;
        goto after_value;
    default:
        if (!scan_number(&p, end)) return SL_EPARSE;
        goto after_value;
    }

key: /* p is at a non-blank byte inside an object */
    if (*p != '"') return SL_EPARSE;
    {
        const unsigned char *k = ++p;
        unsigned esc = 0;
        if (!scan_string(&p, end, &esc)) return SL_EPARSE;
        if (depth == 1) {
            escaped_key = escaped_key || esc; /* still validated to the end: the verdict must match the parse */
            cur = esc ? -1 : wanted(m, nm, lens, k, (size_t)(p - 1 - k));
        }
    }
    p = skip_ws(p, end);
    if (p == end || *p != ':') return SL_EPARSE;
    p++;
    goto value;

after_value:
    if (depth == 1 && cur >= 0) { /* a top-level member's value is complete */
        note_member(&m[cur], base, v, p);
        cur = -1;
    }
    if (depth == 0) goto done;
    p = skip_ws(p, end);
    if (p == end) return SL_EPARSE;
    {
        bool obj = (objs >> (depth - 1)) & 1;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p == end) return SL_EPARSE;
            if (obj) goto key;
            goto value;
        }
        if (*p != (obj ? '}' : ']')) return SL_EPARSE;
    }
    p++;
    depth--;
    goto after_value;

done:
    p = skip_ws(p, end);
    if (p != end) return SL_EPARSE;
    if (!top_obj) return SL_EINVAL;
    return escaped_key ? SL_EAGAIN : SL_OK;
}
