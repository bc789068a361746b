/*
 * session.c: the in-process session store (see session.h): a hash table of
 * id -> (value, expiry) under one mutex, shared by every worker thread since
 * the requests of one session may arrive on any worker's connection.
 */
#include "mcp/session.h"

#include <uv.h>

#define NBUCKETS 4096u

typedef struct entry {
    struct entry *next;
    uint64_t expires_ms;
    size_t idn, valn;
    char *id, *val;
} entry;

typedef struct mem_store {
    uv_mutex_t mu;
    uv_once_t once;
    entry *buckets[NBUCKETS];
    size_t count;
    size_t sweep_at;
    uint64_t fake_now;
} mem_store;

static mem_store g_mem = {.once = UV_ONCE_INIT};
static sl_mcp_store g_store = {&sl_mcp_memory_store_ops, &g_mem};

static void mem_init(void) { uv_mutex_init(&g_mem.mu); }

static uint64_t now_ms(const mem_store *m) { return m->fake_now ? m->fake_now : uv_hrtime() / 1000000u; }

static uint32_t hash(sl_str s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 16777619u;
    return h;
}

static void entry_free(entry *e)
{
    sl_free(e->id);
    sl_free(e->val);
    sl_free(e);
}

/* Finds id in its bucket, dropping expired entries met on the way. */
static entry **find(mem_store *m, sl_str id, uint64_t now)
{
    entry **pp = &m->buckets[hash(id) % NBUCKETS];
    while (*pp) {
        entry *e = *pp;
        if (e->expires_ms <= now) {
            *pp = e->next;
            entry_free(e);
            m->count--;
            continue;
        }
        if (e->idn == id.n && memcmp(e->id, id.p, id.n) == 0) return pp;
        pp = &e->next;
    }
    return pp;
}

/* Drops expired entries from a few buckets, so that abandoned sessions do not pile up. */
static void sweep(mem_store *m, uint64_t now)
{
    for (int k = 0; k < 8; k++) {
        entry **pp = &m->buckets[m->sweep_at++ % NBUCKETS];
        while (*pp) {
            entry *e = *pp;
            if (e->expires_ms <= now) {
                *pp = e->next;
                entry_free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static void mem_get(void *self, sl_str id, uint64_t ttl_ms, sl_mcp_store_cb cb, void *ud)
{
    mem_store *m = self;
    uv_once(&m->once, mem_init);
    uv_mutex_lock(&m->mu);
    uint64_t now = now_ms(m);
    entry **pp = find(m, id, now);
    char *copy = NULL;
    size_t n = 0;
    int rc = SL_ENOTFOUND;
    if (*pp) {
        (*pp)->expires_ms = now + ttl_ms;
        n = (*pp)->valn;
        copy = sl_strndup((*pp)->val, n);
        rc = copy ? SL_OK : SL_ENOMEM;
    }
    uv_mutex_unlock(&m->mu);
    cb(ud, rc, rc == SL_OK ? (sl_str){copy, n} : SL_STR_NULL);
    sl_free(copy);
}

static void mem_put(void *self, sl_str id, sl_str value, uint64_t ttl_ms, uint64_t max_entries, sl_mcp_store_cb cb,
                    void *ud)
{
    mem_store *m = self;
    uv_once(&m->once, mem_init);
    char *v = sl_strndup(value.p ? value.p : "", value.n);
    int rc = v ? SL_OK : SL_ENOMEM;
    uv_mutex_lock(&m->mu);
    uint64_t now = now_ms(m);
    sweep(m, now);
    entry **pp = rc ? NULL : find(m, id, now);
    if (pp && *pp) {
        sl_free((*pp)->val);
        (*pp)->val = v, (*pp)->valn = value.n;
        (*pp)->expires_ms = now + ttl_ms;
        v = NULL;
    } else if (pp && max_entries && m->count >= max_entries) {
        rc = SL_ELIMIT;
    } else if (pp) {
        entry *e = sl_calloc(1, sizeof *e);
        char *idc = sl_strndup(id.p, id.n);
        if (!e || !idc) {
            sl_free(e);
            sl_free(idc);
            rc = SL_ENOMEM;
        } else {
            e->id = idc, e->idn = id.n, e->val = v, e->valn = value.n, e->expires_ms = now + ttl_ms;
            e->next = m->buckets[hash(id) % NBUCKETS];
            m->buckets[hash(id) % NBUCKETS] = e;
            m->count++;
            v = NULL;
        }
    }
    uv_mutex_unlock(&m->mu);
    sl_free(v);
    if (cb) cb(ud, rc, SL_STR_NULL);
}

static void mem_del(void *self, sl_str id, sl_mcp_store_cb cb, void *ud)
{
    mem_store *m = self;
    uv_once(&m->once, mem_init);
    uv_mutex_lock(&m->mu);
    entry **pp = find(m, id, now_ms(m));
    int rc = SL_ENOTFOUND;
    if (*pp) {
        entry *e = *pp;
        *pp = e->next;
        entry_free(e);
        m->count--;
        rc = SL_OK;
    }
    uv_mutex_unlock(&m->mu);
    if (cb) cb(ud, rc, SL_STR_NULL);
}

const sl_mcp_store_ops sl_mcp_memory_store_ops = {.get = mem_get, .put = mem_put, .del = mem_del};

sl_mcp_store *sl_mcp_store_get(void) { return &g_store; }

void sl_mcp_store_set(const sl_mcp_store_ops *ops, void *self)
{
    g_store.ops = ops;
    g_store.self = self;
}

void sl_mcp_memory_store_set_clock(uint64_t now)
{
    uv_once(&g_mem.once, mem_init);
    uv_mutex_lock(&g_mem.mu);
    g_mem.fake_now = now;
    uv_mutex_unlock(&g_mem.mu);
}

size_t sl_mcp_memory_store_count(void)
{
    uv_once(&g_mem.once, mem_init);
    uv_mutex_lock(&g_mem.mu);
    size_t n = g_mem.count;
    uv_mutex_unlock(&g_mem.mu);
    return n;
}

void sl_mcp_memory_store_clear(void)
{
    uv_once(&g_mem.once, mem_init);
    uv_mutex_lock(&g_mem.mu);
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (g_mem.buckets[i]) {
            entry *e = g_mem.buckets[i];
            g_mem.buckets[i] = e->next;
            entry_free(e);
        }
    }
    g_mem.count = 0;
    uv_mutex_unlock(&g_mem.mu);
}
