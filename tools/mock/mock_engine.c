/*
 * mock_engine.c: sluice-mock's inference-server mode (SPEC §8,
 * docs/mock.md "Inference-server mode"), so that load balancing can be
 * measured without GPUs.
 *
 * The model of one engine, deliberately small:
 *   batch     at most --max-batch requests run at once; the rest wait in a
 *             FIFO queue (bounded: past --max-queue the answer is a 503)
 *   prefill   one prefill at a time (the GPU's compute is shared): a request
 *             that starts running waits for the prefills before it, then
 *             for its own, --prefill-us-per-token for every prompt token not
 *             in the prefix cache
 *   decode    then one output token every --decode-ms-per-token
 *   cache     --cache-tokens of prefix cache in blocks of --cache-block-tokens:
 *             chained block hashes over the serialized prompt (the same
 *             scheme as the gateway's, src/balance/prefix.c), a hit is the
 *             longest run of leading blocks present, LRU eviction
 * A prompt token is 4 bytes of the raw JSON of tools, system and messages
 * (the members an engine's chat template would render).
 *
 * /metrics exposes vllm:num_requests_running, vllm:num_requests_waiting,
 * vllm:kv_cache_usage_perc (tokens of running requests over the cache size),
 * vllm:prefix_cache_queries_total and vllm:prefix_cache_hits_total (tokens).
 *
 * The engine is one loop's state: the mode runs a single worker.
 */
#include "mock.h"

#include <stdio.h>

#include "balance/balance.h"

#define NIL UINT32_MAX

struct sl_mock_job {
    sl_mock_run *r;
    uint64_t prompt_tokens, out_tokens;
    uint64_t *hashes;
    size_t nhashes;
    bool queued, running;
    struct sl_mock_job *qnext;
};

typedef struct centry {
    uint64_t h;
    uint32_t bnext, prev, next;
} centry;

typedef struct engine {
    const sl_mock_opts *o;
    uint32_t running, waiting;
    sl_mock_job *qhead, *qtail;
    uint64_t prefill_free_us;  /* when the prefill lane is next free (uv_hrtime in us) */
    uint64_t kv_tokens;        /* tokens held by running requests */
    uint64_t hits, queries;    /* tokens */
    uint64_t requests;
    /* prefix cache: hash table + LRU list of blocks */
    centry *e;
    uint32_t ne, cap;
    uint32_t *buckets, mask;
    uint32_t head, tail;
} engine;

static engine eng;

bool sl_mock_engine_on(const sl_mock_opts *o) { return o->max_batch > 0; }

static uint64_t now_us(void) { return uv_hrtime() / 1000ull; }

/* ---- prefix cache ---- */

static int cache_init(const sl_mock_opts *o)
{
    uint64_t blocks = o->cache_tokens / o->cache_block_tokens;
    eng.cap = (uint32_t)SL_MIN(blocks, (uint64_t)(1u << 24));
    uint32_t nb = 16;
    while (nb < eng.cap && nb < (1u << 24)) nb <<= 1;
    eng.mask = nb - 1;
    eng.buckets = sl_malloc((size_t)nb * sizeof *eng.buckets);
    eng.e = eng.cap ? sl_malloc((size_t)eng.cap * sizeof *eng.e) : NULL;
    if (!eng.buckets || (eng.cap && !eng.e)) return SL_ENOMEM;
    memset(eng.buckets, 0xff, (size_t)nb * sizeof *eng.buckets);
    eng.head = eng.tail = NIL;
    return SL_OK;
}

static uint32_t *bucket(uint64_t h) { return &eng.buckets[(h ^ (h >> 32)) & eng.mask]; }

static uint32_t cfind(uint64_t h)
{
    for (uint32_t i = *bucket(h); i != NIL; i = eng.e[i].bnext)
        if (eng.e[i].h == h) return i;
    return NIL;
}

static void lru_unlink(uint32_t i)
{
    centry *c = &eng.e[i];
    if (c->prev != NIL) eng.e[c->prev].next = c->next;
    else eng.head = c->next;
    if (c->next != NIL) eng.e[c->next].prev = c->prev;
    else eng.tail = c->prev;
}

static void lru_front(uint32_t i)
{
    centry *c = &eng.e[i];
    c->prev = NIL;
    c->next = eng.head;
    if (eng.head != NIL) eng.e[eng.head].prev = i;
    eng.head = i;
    if (eng.tail == NIL) eng.tail = i;
}

static void cache_put(uint64_t h)
{
    uint32_t i = cfind(h);
    if (i != NIL) {
        lru_unlink(i);
        lru_front(i);
        return;
    }
    if (!eng.cap) return;
    if (eng.ne < eng.cap) {
        i = eng.ne++;
    } else { /* evict the least recently used block */
        i = eng.tail;
        lru_unlink(i);
        uint32_t *p = bucket(eng.e[i].h);
        while (*p != i) p = &eng.e[*p].bnext;
        *p = eng.e[i].bnext;
    }
    uint32_t *b = bucket(h);
    eng.e[i] = (centry){.h = h, .bnext = *b};
    *b = i;
    lru_front(i);
}

/* Leading blocks of the prompt in the cache; then every block of it is made most recent (last block first). */
static size_t cache_lookup_fill(const uint64_t *h, size_t n)
{
    size_t hit = 0;
    while (hit < n && cfind(h[hit]) != NIL) hit++;
    for (size_t k = n; k-- > 0;) cache_put(h[k]);
    return hit;
}

/* ---- scheduling ---- */

static void start_job(sl_mock_job *j)
{
    const sl_mock_opts *o = eng.o;
    sl_mock_run *r = j->r;
    j->running = true;
    eng.running++;
    size_t hit = cache_lookup_fill(j->hashes, j->nhashes);
    uint64_t cached = SL_MIN((uint64_t)hit * o->cache_block_tokens, j->prompt_tokens);
    eng.hits += cached;
    eng.queries += j->prompt_tokens;
    eng.kv_tokens += j->prompt_tokens + j->out_tokens;
    uint64_t now = now_us();
    uint64_t begin = SL_MAX(now, eng.prefill_free_us);
    eng.prefill_free_us = begin + (j->prompt_tokens - cached) * o->prefill_us_per_token;
    uint64_t wait_ms = (eng.prefill_free_us - now + 999) / 1000;
    /* the run's own timers play it out: first token after the prefill and one decode step; a request's own
     * x-mock-ttft-ms / x-mock-itl-ms (or --ttft-ms / --itl-ms) apply where they are slower */
    r->k.ttft_ms = wait_ms + SL_MAX(o->decode_ms_per_token, r->k.ttft_ms);
    r->k.itl_ms = SL_MAX(o->decode_ms_per_token, r->k.itl_ms);
    sl_mock_run_start(r);
}

static void pump_queue(void)
{
    while (eng.qhead && eng.running < eng.o->max_batch) {
        sl_mock_job *j = eng.qhead;
        eng.qhead = j->qnext;
        if (!eng.qhead) eng.qtail = NULL;
        j->queued = false;
        eng.waiting--;
        start_job(j);
    }
}

/* The serialized prompt: raw JSON of the members a chat template renders, in template order. */
static size_t prompt_parts(const sl_mock_run *r, sl_str *parts, size_t cap)
{
    static const char *const members[] = {"tools", "system", "systemInstruction", "instructions",
                                          "messages", "contents", "input"};
    size_t n = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(members) && n < cap; i++) {
        int t = sl_json_obj_get(&r->doc, 0, members[i]);
        if (t >= 0) parts[n++] = sl_json_raw(&r->doc, t);
    }
    return n;
}

bool sl_mock_engine_admit(sl_mock_run *r)
{
    const sl_mock_opts *o = r->opts;
    if (!sl_mock_engine_on(o) || r->is_error || !r->have_doc) return false;
    if (!eng.o) {
        eng.o = o;
        if (cache_init(o) != SL_OK) return false;
    }
    if (eng.waiting >= o->max_queue) {
        sl_mock_plan_error(r, 503, "mock engine: queue full");
        return false;
    }
    sl_mock_job *j = sl_calloc(1, sizeof *j);
    if (!j) return false;
    j->r = r;
    sl_str parts[8];
    size_t np = prompt_parts(r, parts, SL_ARRAY_LEN(parts));
    uint64_t bytes = 0;
    for (size_t i = 0; i < np; i++) bytes += parts[i].n;
    j->prompt_tokens = (bytes + 3) / 4;
    j->out_tokens = r->ntok;
    size_t block = (size_t)o->cache_block_tokens * 4, cap = (size_t)(bytes / block);
    if (cap) {
        j->hashes = sl_malloc(cap * sizeof *j->hashes);
        if (j->hashes) j->nhashes = sl_prefix_hash(parts, np, block, j->hashes, cap);
    }
    r->job = j;
    eng.requests++;
    if (eng.running < o->max_batch) {
        start_job(j);
    } else {
        j->queued = true;
        eng.waiting++;
        if (eng.qtail) eng.qtail->qnext = j;
        else eng.qhead = j;
        eng.qtail = j;
    }
    return true;
}

void sl_mock_engine_done(sl_mock_run *r)
{
    sl_mock_job *j = r->job;
    if (!j) return;
    r->job = NULL;
    if (j->queued) { /* the client left while waiting */
        sl_mock_job **p = &eng.qhead, *prev = NULL;
        while (*p && *p != j) prev = *p, p = &(*p)->qnext;
        if (*p) *p = j->qnext;
        if (eng.qtail == j) eng.qtail = prev;
        eng.waiting--;
    }
    if (j->running) {
        eng.running--;
        eng.kv_tokens -= SL_MIN(eng.kv_tokens, j->prompt_tokens + j->out_tokens);
    }
    sl_free(j->hashes);
    sl_free(j);
    pump_queue();
}

int sl_mock_engine_metrics(sl_buf *out)
{
    const sl_mock_opts *o = eng.o;
    double kv = o && o->cache_tokens ? (double)eng.kv_tokens / (double)o->cache_tokens : 0.0;
    if (kv > 1.0) kv = 1.0;
    char buf[1536];
    int n = snprintf(buf, sizeof buf,
                     "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                     "# TYPE vllm:num_requests_running gauge\n"
                     "vllm:num_requests_running{model_name=\"mock\"} %u\n"
                     "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                     "# TYPE vllm:num_requests_waiting gauge\n"
                     "vllm:num_requests_waiting{model_name=\"mock\"} %u\n"
                     "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
                     "# TYPE vllm:kv_cache_usage_perc gauge\n"
                     "vllm:kv_cache_usage_perc{model_name=\"mock\"} %.6f\n"
                     "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.\n"
                     "# TYPE vllm:prefix_cache_queries_total counter\n"
                     "vllm:prefix_cache_queries_total{model_name=\"mock\"} %llu\n"
                     "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
                     "# TYPE vllm:prefix_cache_hits_total counter\n"
                     "vllm:prefix_cache_hits_total{model_name=\"mock\"} %llu\n"
                     "# HELP sluice_mock_engine_requests_total Requests admitted by the engine.\n"
                     "# TYPE sluice_mock_engine_requests_total counter\n"
                     "sluice_mock_engine_requests_total %llu\n",
                     eng.running, eng.waiting, kv, (unsigned long long)eng.queries, (unsigned long long)eng.hits,
                     (unsigned long long)eng.requests);
    if (n < 0 || (size_t)n >= sizeof buf) return SL_ELIMIT;
    return sl_buf_append(out, buf, (size_t)n);
}
