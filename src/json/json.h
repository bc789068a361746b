/*
 * json.h: the JSON reader, writer and splice edits.
 *
 * Reader: one validating pass (RFC 8259, strict: no trailing commas, no
 * comments, no leading zeros, valid UTF-8 and escapes, bounded depth) that
 * produces a flat array of tokens. Each token is a span (offsets) into the
 * caller's buffer; nothing is copied until someone asks for a decoded string.
 * Tokens are laid out in document order, so a container's children follow it,
 * and each token records where its subtree ends, making "skip this value" O(1).
 *
 * Writer: appends to an sl_buf with escaping; used to build bodies the
 * gateway creates (errors, translations).
 *
 * Splice: a list of (start, end, replacement) edits applied to the original
 * text in one copy, so "change the model name" on a 260 KB body touches only
 * the bytes that change (SPEC §3: pass-through is spliced, not re-serialized).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include "core/arena.h"
#include "core/buf.h"
#include "core/sl.h"

typedef enum {
    SL_JSON_NULL = 0,
    SL_JSON_FALSE,
    SL_JSON_TRUE,
    SL_JSON_NUMBER,
    SL_JSON_STRING, /* span covers the quotes */
    SL_JSON_ARRAY,
    SL_JSON_OBJECT,
} sl_json_type;

typedef struct sl_json_tok {
    uint32_t type : 3;
    uint32_t has_escape : 1; /* strings: contains a backslash escape */
    uint32_t start;          /* offset of first byte of the value */
    uint32_t end;            /* offset one past its last byte */
    uint32_t next;           /* index of the token after this whole subtree */
    uint32_t count;          /* arrays: elements; objects: members (key+value pairs) */
} sl_json_tok;

typedef struct sl_json_doc {
    const char *src;
    size_t len;
    sl_json_tok *toks;
    uint32_t ntoks;
} sl_json_doc;

typedef struct sl_json_limits {
    uint32_t max_depth;  /* default 64 (also when 0 or lim is NULL) */
    uint32_t max_tokens; /* default: len/2 + 16 (also when 0) */
} sl_json_limits;

/* Object members are stored as key token (a STRING) followed by the value's subtree. */

/*
 * Parses src[0..len) (one JSON value with optional surrounding whitespace).
 * Tokens are allocated from the arena. Returns 0, or SL_EPARSE / SL_ELIMIT /
 * SL_ENOMEM; on error *err_off (if non-NULL) is the byte offset of the problem.
 */
int sl_json_parse(sl_json_doc *doc, const char *src, size_t len, sl_arena *a, const sl_json_limits *lim,
                  size_t *err_off);

/*
 * A cheaper look at a document whose top level is an object, for code that
 * only wants a few of its members (a stream chunk's "model" and "usage"):
 * the same validation as sl_json_parse with default limits, but no tokens.
 * m[i].key are plain names (nothing that needs escaping), nm <= 16; on SL_OK each m[i]
 * says whether a top-level member has that name and, if so, the value's span
 * and type: the LAST such member, as sl_json_obj_get finds it.
 * Returns SL_OK for a valid object; SL_EPARSE or SL_ELIMIT (too deep) where
 * sl_json_parse fails (not always the same one: the parse's token bound, which
 * no valid document reaches, is not counted), SL_EINVAL for a valid document
 * that is not an object,
 * and SL_EAGAIN when a top-level key holds an escape (then use sl_json_parse,
 * which compares keys unescaped).
 */
typedef struct sl_json_member {
    sl_str key;          /* in */
    bool found;          /* out: the rest is set only when found */
    bool empty;          /* an array or object with no members */
    sl_json_type type;
    uint32_t start, end; /* the value's span (a string's covers its quotes) */
} sl_json_member;
int sl_json_top_members(const char *src, size_t len, sl_json_member *m, size_t nm);

/* Index helpers. The root is token 0. -1 means "absent". */
static inline sl_json_type sl_json_type_of(const sl_json_doc *d, int t) { return (sl_json_type)d->toks[t].type; }
static inline sl_str sl_json_raw(const sl_json_doc *d, int t) /* the value's exact source text */
{
    return (sl_str){d->src + d->toks[t].start, d->toks[t].end - d->toks[t].start};
}
/* Value token or -1. With duplicate keys the LAST one wins (as in Python, Go, JS parsers). */
int sl_json_obj_get(const sl_json_doc *d, int obj, const char *key);        /* value token or -1 */
int sl_json_obj_get_str(const sl_json_doc *d, int obj, sl_str key);
/* How many members of obj are named key (after unescaping): >1 means an ambiguous body. */
int sl_json_obj_key_count(const sl_json_doc *d, int obj, const char *key);
/* sl_json_obj_get_str and sl_json_obj_key_count in one walk: the last member named key, *count of them. */
int sl_json_obj_get_counted(const sl_json_doc *d, int obj, sl_str key, int *count);
int sl_json_arr_get(const sl_json_doc *d, int arr, uint32_t i);             /* element token or -1 */
/* Iteration: first child (array element, or object KEY) and the next sibling. -1 at end. */
int sl_json_first(const sl_json_doc *d, int container);
int sl_json_next(const sl_json_doc *d, int t); /* from an element, or from an object KEY to the next KEY */
static inline int sl_json_member_value(int key) { return key + 1; }
/* For an object member key token: the key's raw text without quotes (escapes left as is). */
sl_str sl_json_str_raw(const sl_json_doc *d, int t);
/* True if token t is a string equal (after unescaping) to lit. */
bool sl_json_str_eq(const sl_json_doc *d, int t, const char *lit);
/*
 * Decodes a string token into the arena (NUL-terminated); zero-copy when it
 * has no escapes: then *out is a slice of the source and is NOT NUL-terminated.
 */
int sl_json_str(const sl_json_doc *d, int t, sl_arena *a, sl_str *out);
int sl_json_int(const sl_json_doc *d, int t, int64_t *out);     /* SL_EINVAL if not an integer in range */
int sl_json_double(const sl_json_doc *d, int t, double *out);
bool sl_json_bool(const sl_json_doc *d, int t, bool dflt);     /* dflt when t < 0 or not a bool */

/* ---- writer ---- */
typedef struct sl_jw {
    sl_buf *out;
    int err;          /* first error (sticky); check once at the end */
    uint32_t depth;
    uint64_t need_comma; /* bit per depth level: a value was already written at this level */
} sl_jw;

void sl_jw_init(sl_jw *w, sl_buf *out);
void sl_jw_obj_begin(sl_jw *w);
void sl_jw_obj_end(sl_jw *w);
void sl_jw_arr_begin(sl_jw *w);
void sl_jw_arr_end(sl_jw *w);
void sl_jw_key(sl_jw *w, const char *key);        /* next value belongs to this key */
void sl_jw_key_str(sl_jw *w, sl_str key);
void sl_jw_str(sl_jw *w, sl_str s);               /* escaped */
void sl_jw_cstr(sl_jw *w, const char *s);
void sl_jw_int(sl_jw *w, int64_t v);
void sl_jw_double(sl_jw *w, double v);            /* shortest round-trip form; non-finite -> null */
void sl_jw_bool(sl_jw *w, bool v);
void sl_jw_null(sl_jw *w);
void sl_jw_raw(sl_jw *w, sl_str json);            /* already-valid JSON value, copied verbatim */
/* Appends s JSON-escaped (no quotes) to out. */
int sl_json_escape(sl_buf *out, sl_str s);
/* Writes s JSON-escaped (no quotes) to dst, which has room for SL_JSON_ESCAPE_MAX(s.n) bytes; returns the count.
 * The same bytes as sl_json_escape, for callers that reserved their room once (the access log). */
#define SL_JSON_ESCAPE_MAX(n) ((n) * 6)
size_t sl_json_escape_into(char *dst, sl_str s);

/* ---- splice edits ---- */
typedef struct sl_json_edit {
    uint32_t start, end; /* replace src[start..end) (start == end: insert) */
    sl_str text;         /* with this */
} sl_json_edit;

/*
 * Applies edits (any order; sorted internally; must not overlap) to
 * src[0..len) and appends the result to out.
 */
int sl_json_splice(const char *src, size_t len, sl_json_edit *edits, size_t nedits, sl_buf *out);
/* The same into the arena (NUL-terminated): for a result that lives as long as the request. */
int sl_json_splice_arena(const char *src, size_t len, sl_json_edit *edits, size_t nedits, sl_arena *a, sl_str *out);
/*
 * Helpers to build edits against a parsed doc:
 *  - replace a member's value: {tok.start, tok.end, new}
 *  - add a member to an object: sl_json_edit_add_member builds the insertion
 *    right after '{' (",": handled: adds a trailing comma when the object is non-empty).
 *  - remove a member (key and value and one adjoining comma).
 * Text for added members is written into the arena.
 */
int sl_json_edit_add_member(const sl_json_doc *d, int obj, sl_str key, sl_str raw_value, sl_arena *a,
                            sl_json_edit *out);
int sl_json_edit_remove_member(const sl_json_doc *d, int obj, int key, sl_json_edit *out);

#endif
