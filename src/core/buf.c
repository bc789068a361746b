/* buf.c: see buf.h. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>

int sl_buf_reserve(sl_buf *b, size_t extra)
{
    size_t max = b->max ? b->max : SIZE_MAX - 1;
    if (extra > max - b->len) return SL_ELIMIT;
    size_t need = b->len + extra + 1; /* +1 keeps room for a NUL terminator */
    if (need <= b->cap) return SL_OK;
    /* A first reservation is taken as the size wanted (a body of known length,
     * a spliced request): exactly that, not the next power of two. Growth after
     * it doubles, so appending stays linear. */
    size_t cap = b->cap ? b->cap : SL_MAX(need, (size_t)256);
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = sl_realloc(b->p, cap);
    if (!p) return SL_ENOMEM;
    b->p = p;
    b->cap = cap;
    return SL_OK;
}

int sl_buf_append_slow(sl_buf *b, const void *p, size_t n)
{
    int rc = sl_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return SL_OK;
}

int sl_buf_appendf(sl_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return SL_EINVAL;
    if ((size_t)n < sizeof small) return sl_buf_append(b, small, (size_t)n);
    int rc = sl_buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SL_OK;
}

int sl_buf_append_u64(sl_buf *b, uint64_t v)
{
    char tmp[SL_DEC_MAX];
    return sl_buf_append(b, tmp, sl_u64_dec(tmp, v));
}

void sl_buf_consume(sl_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p) b->p[b->len] = '\0';
}

char *sl_buf_detach(sl_buf *b, size_t *len)
{
    if (!b->p && sl_buf_reserve(b, 0)) return NULL;
    b->p[b->len] = '\0';
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
