/*
 * buf.h: a growable byte buffer with a hard cap (ARCHITECTURE.md habit 5).
 * Appending past the cap fails with SL_ELIMIT and leaves the buffer as it was,
 * so the caller can answer 413/431 instead of crashing or truncating silently.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include "core/sl.h"

typedef struct sl_buf {
    char *p;
    size_t len, cap;
    size_t max; /* hard cap on len (0 = SIZE_MAX) */
} sl_buf;

static inline void sl_buf_init(sl_buf *b, size_t max) { b->p = NULL, b->len = b->cap = 0, b->max = max; }
int sl_buf_reserve(sl_buf *b, size_t extra);          /* ensure room for extra more bytes */
int sl_buf_append_slow(sl_buf *b, const void *p, size_t n); /* sl_buf_append when it may grow */
/* The common case inline: room already there (and within the cap) is one
 * copy; growth, the cap and allocation failures go through the slow path. */
static inline int sl_buf_append(sl_buf *b, const void *p, size_t n)
{
    if (n < b->cap - b->len && (!b->max || n <= b->max - b->len)) {
        if (n) memcpy(b->p + b->len, p, n);
        b->len += n;
        b->p[b->len] = '\0';
        return SL_OK;
    }
    return sl_buf_append_slow(b, p, n);
}
static inline int sl_buf_append_str(sl_buf *b, sl_str s) { return sl_buf_append(b, s.p, s.n); }
static inline int sl_buf_append_cstr(sl_buf *b, const char *s) { return sl_buf_append(b, s, strlen(s)); }
int sl_buf_appendf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_buf_append_u64(sl_buf *b, uint64_t v);
void sl_buf_consume(sl_buf *b, size_t n);             /* drop n bytes from the front */
static inline void sl_buf_clear(sl_buf *b) { b->len = 0; }
static inline sl_str sl_buf_str(const sl_buf *b) { return (sl_str){b->p, b->len}; }
static inline void sl_buf_free(sl_buf *b)
{
    if (b->p) sl_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
/* Hands the storage to the caller (NUL-terminated); the buffer is left empty. */
char *sl_buf_detach(sl_buf *b, size_t *len);

#endif
