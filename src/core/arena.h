/*
 * arena.h: a bump allocator for things that live exactly as long as one
 * request (or one config snapshot). Freed all at once; nothing inside is freed
 * alone. Blocks grow geometrically up to a cap so a huge request costs a few
 * allocations, not thousands.
 */
#ifndef SL_ARENA_H
#define SL_ARENA_H

#include "core/sl.h"

typedef struct sl_arena_block sl_arena_block;
struct sl_arena_block {
    sl_arena_block *prev;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

typedef struct sl_arena {
    sl_arena_block *head;  /* current block; older ones chained behind it */
    size_t next_size;      /* size of the next block to allocate */
    size_t total;          /* bytes allocated from the heap, all blocks */
    size_t max_total;      /* cap (0 = none); allocation past it fails */
    sl_arena_block *spare; /* one block kept by sl_arena_reset for the next growth (not in total) */
} sl_arena;

void sl_arena_init(sl_arena *a, size_t first_block, size_t max_total);
void *sl_arena_alloc_slow(sl_arena *a, size_t n); /* sl_arena_alloc when the current block is full */
/* 16-byte aligned; NULL on failure. Inline: room in the current block is a bump of its offset. */
static inline void *sl_arena_alloc(sl_arena *a, size_t n)
{
    size_t r = (n + 15) & ~(size_t)15;
    sl_arena_block *b = a->head;
    if (r && r >= n && b && b->size - b->used >= r) {
        void *p = b->data + b->used;
        b->used += r;
        return p;
    }
    return sl_arena_alloc_slow(a, n);
}
void *sl_arena_calloc(sl_arena *a, size_t n);
char *sl_arena_strndup(sl_arena *a, const char *s, size_t n); /* NUL-terminated copy */
sl_str sl_arena_str(sl_arena *a, sl_str s);       /* copy of a slice (p NULL on failure) */
char *sl_arena_printf(sl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Keeps the first block, and one more (up to 64 KiB) for the next time the first overflows:
 * an arena reset per request (an exchange's) then stops allocating once it has seen its load. */
void sl_arena_reset(sl_arena *a);
void sl_arena_free(sl_arena *a);

#endif
