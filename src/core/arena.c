/* arena.c: see arena.h. */
#include "core/arena.h"

#include <stdarg.h>
#include <stdio.h>

#define ARENA_MAX_BLOCK (1u << 20)
#define ARENA_MAX_SPARE (64u * 1024u)

void sl_arena_init(sl_arena *a, size_t first_block, size_t max_total)
{
    a->head = NULL;
    a->next_size = first_block ? first_block : 1024;
    a->total = 0;
    a->max_total = max_total;
    a->spare = NULL;
}

/* The spare block kept by the last reset, if it is big enough and within the cap. */
static sl_arena_block *take_spare(sl_arena *a, size_t need)
{
    sl_arena_block *b = a->spare;
    if (!b || b->size < need || (a->max_total && a->total + b->size > a->max_total)) return NULL;
    a->spare = NULL;
    b->prev = a->head;
    b->used = 0;
    a->head = b;
    a->total += b->size;
    if (a->next_size < ARENA_MAX_BLOCK) a->next_size *= 2;
    return b;
}

static sl_arena_block *arena_grow(sl_arena *a, size_t need)
{
    sl_arena_block *spare = take_spare(a, need);
    if (spare) return spare;
    size_t size = a->next_size;
    while (size < need) size *= 2;
    if (a->max_total && a->total + size > a->max_total) {
        if (a->total + need > a->max_total) return NULL;
        size = need;
    }
    sl_arena_block *b = sl_malloc(sizeof(*b) + size);
    if (!b) return NULL;
    b->prev = a->head;
    b->size = size;
    b->used = 0;
    a->head = b;
    a->total += size;
    if (a->next_size < ARENA_MAX_BLOCK) a->next_size *= 2;
    return b;
}

void *sl_arena_alloc_slow(sl_arena *a, size_t n)
{
    if (n > SIZE_MAX - 15) return NULL; /* would wrap to a tiny size */
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    sl_arena_block *b = a->head;
    if (!b || b->size - b->used < n) {
        if (!(b = arena_grow(a, n))) return NULL;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void *sl_arena_calloc(sl_arena *a, size_t n)
{
    void *p = sl_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

char *sl_arena_strndup(sl_arena *a, const char *s, size_t n)
{
    char *d = sl_arena_alloc(a, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

sl_str sl_arena_str(sl_arena *a, sl_str s)
{
    char *d = sl_arena_strndup(a, s.p, s.n);
    return (sl_str){d, d ? s.n : 0};
}

char *sl_arena_printf(sl_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *d = sl_arena_alloc(a, (size_t)n + 1);
    if (!d) return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void sl_arena_reset(sl_arena *a)
{
    sl_arena_block *b = a->head;
    if (!b) return;
    while (b->prev) {
        sl_arena_block *prev = b->prev;
        a->total -= b->size;
        /* The largest block up to ARENA_MAX_SPARE stays for the next overflow. */
        if (b->size <= ARENA_MAX_SPARE && (!a->spare || b->size > a->spare->size)) {
            sl_free(a->spare);
            a->spare = b;
        } else {
            sl_free(b);
        }
        b = prev;
    }
    b->used = 0;
    a->head = b;
    /* Growth starts over from the first block, as after the first allocation: a
     * long-lived arena reset per request does not double its way to huge blocks. */
    a->next_size = b->size < ARENA_MAX_BLOCK ? b->size * 2 : b->size;
}

void sl_arena_free(sl_arena *a)
{
    sl_arena_block *b = a->head;
    while (b) {
        sl_arena_block *prev = b->prev;
        sl_free(b);
        b = prev;
    }
    sl_free(a->spare);
    a->spare = NULL;
    a->head = NULL;
    a->total = 0;
}
