/*
 * state_memory.c: the embedded backend. One table per process, split into
 * shards by key hash, each shard a chained hash table under its own mutex, so
 * workers contend only when they touch keys of the same shard at the same
 * instant. Consumers' counters and small values live in the same table under
 * different key spaces ("c:" and "v:"). Each shard has a cap on entries;
 * expired values are swept when a full shard needs room.
 *
 * The table belongs to the process, not to a config snapshot: counters
 * survive reloads. Calls answer at once (the callback runs before return).
 */
#include <pthread.h>

#include "state/state_int.h"

#define NSHARDS 64
#define SHARD_MAX_ENTRIES 65536
#define SHARD_BUCKETS 1024

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    bool is_counter;
    sl_usage_counts c;   /* counters */
    char *val;           /* values: string (NULL when numeric) */
    size_t vlen;
    int64_t num;
    bool is_num;
    int64_t expires_ms;  /* 0 = never */
    size_t klen;
    char key[];
} entry;

typedef struct shard {
    pthread_mutex_t mu;
    entry *buckets[SHARD_BUCKETS];
    size_t n;
} shard;

static shard shards[NSHARDS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_shards(void)
{
    for (size_t i = 0; i < NSHARDS; i++) pthread_mutex_init(&shards[i].mu, NULL);
}

static uint64_t hash_key(char space, sl_str k)
{
    uint64_t h = 1469598103934665603ull ^ (unsigned char)space; /* FNV-1a */
    for (size_t i = 0; i < k.n; i++) h = (h ^ (unsigned char)k.p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static shard *shard_of(uint64_t h) { return &shards[h % NSHARDS]; }

static void entry_free(entry *e)
{
    sl_free(e->val);
    sl_free(e);
}

/* Removes expired values; called under the shard's lock when it is full. */
static void sweep(shard *s, int64_t now_ms)
{
    for (size_t b = 0; b < SHARD_BUCKETS; b++) {
        for (entry **pp = &s->buckets[b]; *pp;) {
            entry *e = *pp;
            if (!e->is_counter && e->expires_ms && e->expires_ms <= now_ms) {
                *pp = e->next;
                entry_free(e);
                s->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Finds (or with create, adds) the entry of key; NULL when absent or the shard is full. Lock held. */
static entry *lookup(shard *s, uint64_t h, char space, sl_str key, bool create, int64_t now_ms)
{
    entry **pp = &s->buckets[(h / NSHARDS) % SHARD_BUCKETS];
    for (entry *e = *pp; e; e = e->next) {
        if (e->hash == h && e->klen == key.n + 1 && e->key[0] == space && memcmp(e->key + 1, key.p, key.n) == 0) {
            if (!e->is_counter && e->expires_ms && e->expires_ms <= now_ms) {
                sl_free(e->val), e->val = NULL, e->vlen = 0, e->num = 0, e->is_num = false, e->expires_ms = 0;
                if (!create) return NULL;
            }
            return e;
        }
    }
    if (!create) return NULL;
    if (s->n >= SHARD_MAX_ENTRIES) sweep(s, now_ms);
    if (s->n >= SHARD_MAX_ENTRIES) return NULL;
    entry *e = sl_calloc(1, sizeof(*e) + key.n + 2);
    if (!e) return NULL;
    e->hash = h;
    e->klen = key.n + 1;
    e->key[0] = space;
    memcpy(e->key + 1, key.p, key.n);
    e->is_counter = space == 'c';
    e->next = *pp;
    *pp = e;
    s->n++;
    return e;
}

/* Moves a consumer's counters to the windows of now: a window that ended starts again from zero. */
static void roll(sl_usage_counts *c, int64_t now_ms)
{
    for (int w = 0; w < SL_WIN_COUNT; w++) {
        int64_t id = sl_window_id((sl_window)w, now_ms);
        if (c->window_id[w] == id) continue;
        c->window_id[w] = id;
        for (int m = 0; m < SL_MET_COUNT; m++) c->v[m][w] = 0;
    }
}

/* ---- limits -------------------------------------------------------------- */

static int mem_reserve(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('c', q->consumer);
    shard *s = shard_of(hk);
    sl_reserve_result res = {.err = SL_OK};
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'c', q->consumer, true, q->now_ms);
    if (e) {
        roll(&e->c, q->now_ms);
        res.admitted = sl_state_check((const int64_t(*)[SL_WIN_COUNT])e->c.v, q, &res.denied_metric, &res.denied_window);
        if (res.admitted)
            for (int m = 0; m < SL_MET_COUNT; m++)
                for (int w = 0; w < SL_WIN_COUNT; w++) e->c.v[m][w] += q->amount[m];
        res.counts = e->c;
    }
    pthread_mutex_unlock(&s->mu);
    if (!e) return SL_ELIMIT;
    cb(ud, &res);
    return SL_OK;
}

static int mem_settle(sl_state *h, const sl_settle *st)
{
    uint64_t hk = hash_key('c', st->consumer);
    shard *s = shard_of(hk);
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'c', st->consumer, true, 0);
    for (int w = 0; e && w < SL_WIN_COUNT; w++) {
        if (st->window_id[w] < e->c.window_id[w]) continue; /* that window is over: nothing to give back */
        if (st->window_id[w] > e->c.window_id[w]) {
            e->c.window_id[w] = st->window_id[w];
            for (int m = 0; m < SL_MET_COUNT; m++) e->c.v[m][w] = 0;
        }
        for (int m = 0; m < SL_MET_COUNT; m++) {
            e->c.v[m][w] += st->delta[m];
            if (e->c.v[m][w] < 0) e->c.v[m][w] = 0;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return e ? SL_OK : SL_ELIMIT;
}

static int mem_usage(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('c', consumer);
    shard *s = shard_of(hk);
    sl_usage_counts c;
    memset(&c, 0, sizeof c);
    for (int w = 0; w < SL_WIN_COUNT; w++) c.window_id[w] = sl_window_id((sl_window)w, now_ms);
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'c', consumer, false, now_ms);
    for (int w = 0; e && w < SL_WIN_COUNT; w++)
        if (e->c.window_id[w] == c.window_id[w])
            for (int m = 0; m < SL_MET_COUNT; m++) c.v[m][w] = e->c.v[m][w];
    pthread_mutex_unlock(&s->mu);
    cb(ud, SL_OK, &c);
    return SL_OK;
}

/* ---- values -------------------------------------------------------------- */

static int mem_get(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('v', key);
    shard *s = shard_of(hk);
    char small[64], *copy = small;
    size_t n = 0;
    int64_t num = 0;
    int err = SL_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'v', key, false, sl_state_now_ms());
    if (e && (e->val || e->is_num)) {
        err = SL_OK, num = e->num;
        if (e->is_num) {
            int w = snprintf(small, sizeof small, "%lld", (long long)e->num);
            n = w > 0 ? (size_t)w : 0;
        } else {
            n = e->vlen;
            if (n > sizeof small && !(copy = sl_malloc(n))) err = SL_ENOMEM;
            else memcpy(copy, e->val, n);
        }
    }
    pthread_mutex_unlock(&s->mu);
    /* The callback runs without the lock (it may call the state again) on a copy. */
    if (cb) cb(ud, err, err == SL_OK ? (sl_str){copy, n} : SL_STR_NULL, num);
    if (copy != small) sl_free(copy);
    return SL_OK;
}

static int mem_set(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('v', key);
    shard *s = shard_of(hk);
    char *v = sl_malloc(value.n ? value.n : 1);
    if (!v) return SL_ENOMEM;
    memcpy(v, value.p ? value.p : "", value.n);
    int64_t now = sl_state_now_ms();
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'v', key, true, now);
    if (e) {
        sl_free(e->val);
        e->val = v, e->vlen = value.n, e->is_num = false, e->num = 0;
        e->expires_ms = ttl_ms ? now + (int64_t)ttl_ms : 0;
    }
    pthread_mutex_unlock(&s->mu);
    if (!e) {
        sl_free(v);
        return SL_ELIMIT;
    }
    if (cb) cb(ud, SL_OK, value, 0);
    return SL_OK;
}

/* A string value that is a decimal integer counts as that number (as in Redis). */
static bool value_as_num(const entry *e, int64_t *out)
{
    if (e->is_num || !e->val) return *out = e->num, true;
    uint64_t u;
    bool neg = e->vlen > 1 && e->val[0] == '-';
    sl_str digits = {e->val + neg, e->vlen - neg};
    if (sl_str_to_u64(digits, (uint64_t)INT64_MAX, &u) != SL_OK) return false;
    *out = neg ? -(int64_t)u : (int64_t)u;
    return true;
}

static int mem_incr(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('v', key);
    shard *s = shard_of(hk);
    int64_t now = sl_state_now_ms(), num = 0;
    int err = SL_OK;
    pthread_mutex_lock(&s->mu);
    entry *e = lookup(s, hk, 'v', key, true, now);
    if (!e) {
        err = SL_ELIMIT;
    } else if (!value_as_num(e, &num) || (by > 0 && num > INT64_MAX - by) || (by < 0 && num < INT64_MIN - by)) {
        err = SL_EINVAL;
    } else {
        bool fresh = !e->val && !e->is_num;
        sl_free(e->val);
        e->val = NULL, e->vlen = 0;
        e->num = num + by, e->is_num = true, num = e->num;
        if (ttl_ms && (fresh || !e->expires_ms)) e->expires_ms = now + (int64_t)ttl_ms;
    }
    pthread_mutex_unlock(&s->mu);
    if (err == SL_ELIMIT) return err;
    if (cb) cb(ud, err, SL_STR_NULL, num);
    return SL_OK;
}

static int mem_del(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op)
{
    uint64_t hk = hash_key('v', key);
    shard *s = shard_of(hk);
    int64_t removed = 0;
    pthread_mutex_lock(&s->mu);
    for (entry **pp = &s->buckets[(hk / NSHARDS) % SHARD_BUCKETS]; *pp; pp = &(*pp)->next) {
        entry *e = *pp;
        if (e->hash == hk && e->klen == key.n + 1 && e->key[0] == 'v' && memcmp(e->key + 1, key.p, key.n) == 0) {
            removed = !e->expires_ms || e->expires_ms > sl_state_now_ms();
            *pp = e->next;
            entry_free(e);
            s->n--;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (cb) cb(ud, SL_OK, SL_STR_NULL, removed);
    return SL_OK;
}

static void mem_close(sl_state *h) { sl_free(h); }

static const sl_state_vt mem_vt = {
    .name = "memory",
    .reserve = mem_reserve,
    .settle = mem_settle,
    .usage = mem_usage,
    .get = mem_get,
    .set = mem_set,
    .incr = mem_incr,
    .del = mem_del,
    .close = mem_close,
};

sl_state *sl_state_memory_open(uv_loop_t *loop)
{
    pthread_once(&once, init_shards);
    sl_state *h = sl_calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->vt = &mem_vt;
    h->loop = loop;
    return h;
}

void sl_state_memory_reset(void)
{
    pthread_once(&once, init_shards);
    for (size_t i = 0; i < NSHARDS; i++) {
        shard *s = &shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < SHARD_BUCKETS; b++) {
            for (entry *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                entry_free(e);
            }
            s->buckets[b] = NULL;
        }
        s->n = 0;
        pthread_mutex_unlock(&s->mu);
    }
}
