/*
 * prefix.c: the prefix-cache index behind balance: prefix_cache
 * (docs/balancing.md).
 *
 * An inference engine (vLLM, SGLang) keeps the KV cache of prompts it has
 * prefilled in fixed-size blocks, each identified by the hash of its content
 * chained with the hash of the block before it, and reuses the longest run of
 * leading blocks a new prompt shares with one it has seen. The gateway cannot
 * see those caches, so it keeps its own guess of them: the same kind of chain
 * over the serialized prompt, and an index from block hash to the targets that
 * recently served a prompt with that block.
 *
 * Bounds: every target remembers at most max_entries blocks; inserting one
 * more forgets that target's least recently used block (an LRU list per
 * target, like the engine's own eviction). A request's blocks are touched
 * last block first, so that a prompt's leading blocks, which later turns and
 * other sessions share, are the last to be forgotten.
 *
 * The index is process-wide (sessions reconnect and land on any worker) and
 * guarded by one mutex; a pick holds it for one lookup and one insert of at
 * most SL_PREFIX_MAX_BLOCKS hashes.
 */
#include "balance/balance.h"

#define NIL UINT32_MAX

typedef struct pentry {
    uint64_t h;
    uint32_t bnext;      /* next entry in the hash bucket */
    uint32_t prev, next; /* the target's LRU list: head = most recent */
    uint32_t target;
} pentry;

typedef struct plru {
    uint32_t head, tail, count;
} plru;

struct sl_prefix_index {
    pthread_mutex_t lock;
    uint32_t ntargets, max_entries;
    uint32_t *buckets;
    uint32_t mask;
    pentry *e;
    uint32_t ne, cap_e, max_e;
    plru *lru;
};

/* ---------------------------------------------------------------- hashing */

static uint64_t mix(uint64_t h, uint64_t w)
{
    h ^= w;
    h *= 0x9fb21c651e98df25ull;
    h ^= h >> 28;
    return h;
}

static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* A streaming block hasher over several parts: blocks may straddle parts. */
typedef struct hasher {
    uint64_t chain, cur;
    size_t fill;          /* bytes of the current block consumed */
    unsigned char word[8];
    size_t wn;
} hasher;

size_t sl_prefix_hash(const sl_str *parts, size_t nparts, size_t block_bytes, uint64_t *out, size_t cap)
{
    if (!block_bytes || !cap) return 0;
    hasher hs = {.chain = 0x6a09e667f3bcc909ull, .cur = 0x6a09e667f3bcc909ull};
    size_t n = 0;
    for (size_t pi = 0; pi < nparts && n < cap; pi++) {
        const unsigned char *p = (const unsigned char *)parts[pi].p;
        for (size_t i = 0; i < parts[pi].n && n < cap; i++) {
            hs.word[hs.wn++] = p[i];
            hs.fill++;
            if (hs.wn == 8) hs.cur = mix(hs.cur, load_le(hs.word, 8)), hs.wn = 0;
            if (hs.fill < block_bytes) continue;
            if (hs.wn) hs.cur = mix(hs.cur, load_le(hs.word, hs.wn) ^ ((uint64_t)hs.wn << 56)), hs.wn = 0;
            /* chained: the block's hash covers every byte before it */
            hs.chain = mix(mix(hs.chain, hs.cur), block_bytes);
            out[n++] = hs.chain ? hs.chain : 1;
            hs.cur = hs.chain;
            hs.fill = 0;
        }
    }
    return n; /* a last, partial block is not hashed: engines cache whole blocks only */
}

/* ---------------------------------------------------------------- index */

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < (1u << 22)) p <<= 1;
    return p;
}

sl_prefix_index *sl_prefix_index_new(uint32_t ntargets, uint32_t max_entries)
{
    if (!ntargets || !max_entries) return NULL;
    sl_prefix_index *ix = sl_calloc(1, sizeof *ix);
    if (!ix) return NULL;
    ix->ntargets = ntargets;
    ix->max_entries = max_entries;
    uint64_t total = (uint64_t)ntargets * max_entries;
    ix->max_e = total > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)total;
    ix->mask = pow2_at_least(total) - 1;
    ix->buckets = sl_malloc(((size_t)ix->mask + 1) * sizeof *ix->buckets);
    ix->lru = sl_calloc(ntargets, sizeof *ix->lru);
    if (!ix->buckets || !ix->lru || pthread_mutex_init(&ix->lock, NULL) != 0) {
        sl_free(ix->buckets), sl_free(ix->lru), sl_free(ix);
        return NULL;
    }
    memset(ix->buckets, 0xff, ((size_t)ix->mask + 1) * sizeof *ix->buckets);
    for (uint32_t t = 0; t < ntargets; t++) ix->lru[t] = (plru){NIL, NIL, 0};
    return ix;
}

void sl_prefix_index_free(sl_prefix_index *ix)
{
    if (!ix) return;
    pthread_mutex_destroy(&ix->lock);
    sl_free(ix->buckets);
    sl_free(ix->lru);
    sl_free(ix->e);
    sl_free(ix);
}

static uint32_t *bucket(sl_prefix_index *ix, uint64_t h) { return &ix->buckets[(h ^ (h >> 32)) & ix->mask]; }

static uint32_t find(sl_prefix_index *ix, uint64_t h, uint32_t target)
{
    for (uint32_t i = *bucket(ix, h); i != NIL; i = ix->e[i].bnext)
        if (ix->e[i].h == h && ix->e[i].target == target) return i;
    return NIL;
}

static void lru_unlink(sl_prefix_index *ix, uint32_t i)
{
    pentry *e = &ix->e[i];
    plru *l = &ix->lru[e->target];
    if (e->prev != NIL) ix->e[e->prev].next = e->next;
    else l->head = e->next;
    if (e->next != NIL) ix->e[e->next].prev = e->prev;
    else l->tail = e->prev;
    e->prev = e->next = NIL;
}

static void lru_push_front(sl_prefix_index *ix, uint32_t i)
{
    pentry *e = &ix->e[i];
    plru *l = &ix->lru[e->target];
    e->prev = NIL;
    e->next = l->head;
    if (l->head != NIL) ix->e[l->head].prev = i;
    l->head = i;
    if (l->tail == NIL) l->tail = i;
}

static void bucket_unlink(sl_prefix_index *ix, uint32_t i)
{
    uint32_t *p = bucket(ix, ix->e[i].h);
    while (*p != NIL && *p != i) p = &ix->e[*p].bnext;
    if (*p == i) *p = ix->e[i].bnext;
}

/* An entry for a new (hash, target): a fresh one, or the target's least recently used one, recycled. */
static uint32_t take_entry(sl_prefix_index *ix, uint32_t target)
{
    plru *l = &ix->lru[target];
    if (l->count >= ix->max_entries) {
        uint32_t i = l->tail;
        lru_unlink(ix, i);
        bucket_unlink(ix, i);
        l->count--;
        return i;
    }
    if (ix->ne == ix->cap_e) {
        if (ix->cap_e >= ix->max_e) return NIL;
        uint32_t cap = ix->cap_e ? ix->cap_e * 2 : 256;
        if (cap > ix->max_e) cap = ix->max_e;
        pentry *e = sl_realloc(ix->e, (size_t)cap * sizeof *e);
        if (!e) return NIL;
        ix->e = e;
        ix->cap_e = cap;
    }
    return ix->ne++;
}

uint32_t sl_prefix_match(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t *matched)
{
    pthread_mutex_lock(&ix->lock);
    memset(matched, 0, ix->ntargets * sizeof *matched);
    uint32_t best = 0;
    for (size_t k = 0; k < n; k++) {
        bool advanced = false;
        for (uint32_t i = *bucket(ix, h[k]); i != NIL; i = ix->e[i].bnext) {
            const pentry *e = &ix->e[i];
            if (e->h != h[k] || matched[e->target] != k) continue;
            matched[e->target] = (uint32_t)k + 1;
            advanced = true;
        }
        if (!advanced) break;
        best = (uint32_t)k + 1;
    }
    pthread_mutex_unlock(&ix->lock);
    return best;
}

int sl_prefix_insert(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t target)
{
    return sl_prefix_insert_new(ix, h, n, target, NULL, 0, NULL);
}

int sl_prefix_insert_new(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t target, uint64_t *added,
                         size_t cap, size_t *nadded)
{
    if (nadded) *nadded = 0;
    if (target >= ix->ntargets) return SL_EINVAL;
    int rc = SL_OK;
    pthread_mutex_lock(&ix->lock);
    /* first the new ones, in prompt order: the leading ones matter most when there are more than cap */
    for (size_t k = 0; added && nadded && k < n && *nadded < cap; k++)
        if (find(ix, h[k], target) == NIL) added[(*nadded)++] = h[k];
    for (size_t k = n; k-- > 0;) { /* last block first: the leading blocks end up most recent */
        uint32_t i = find(ix, h[k], target);
        if (i != NIL) {
            lru_unlink(ix, i);
            lru_push_front(ix, i);
            continue;
        }
        i = take_entry(ix, target);
        if (i == NIL) {
            rc = SL_ENOMEM;
            break;
        }
        uint32_t *b = bucket(ix, h[k]);
        ix->e[i] = (pentry){.h = h[k], .bnext = *b, .prev = NIL, .next = NIL, .target = target};
        *b = i;
        lru_push_front(ix, i);
        ix->lru[target].count++;
    }
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

size_t sl_prefix_count(sl_prefix_index *ix, uint32_t target)
{
    pthread_mutex_lock(&ix->lock);
    size_t n = target < ix->ntargets ? ix->lru[target].count : 0;
    pthread_mutex_unlock(&ix->lock);
    return n;
}
