/*
 * lbshared.c: the state of prefix_cache and metrics models that every worker
 * shares (balance.h, docs/balancing.md): the prefix index, the in-flight
 * count of each target across the whole process, and the last scrape of each
 * target's engine metrics.
 *
 * Why process-wide when the other balancers are per worker: a conversation's
 * turns arrive on different connections, which SO_REUSEPORT spreads over the
 * workers; an index per worker would split each session's affinity across
 * them. Lookups take one mutex for microseconds, in-flight counts are atomics.
 *
 * A registry keyed by a signature of the model (name, targets, index sizes)
 * lets a reloaded configuration find the index it had: affinity survives
 * SIGHUP unless the target list, the index sizes or the state backend
 * changed. With state.backend: redis the same signature names the model's
 * keys in Redis, so instances with the same model share them
 * (lbshared_redis.c); weights are not part of it (they only scale loads).
 */
#include <math.h>
#include <stdlib.h>

#include "balance/balance.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_lb_model *reg;

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator, so "ab","c" != "a","bc" */
}

bool sl_lb_uses_metrics(const sl_model_cfg *m)
{
    return m->balance == SL_BALANCE_METRICS || (m->balance == SL_BALANCE_PREFIX_CACHE && m->metrics.path);
}

const char *sl_lb_metrics_path(const sl_model_cfg *m) { return m->metrics.path ? m->metrics.path : "/metrics"; }

static uint64_t signature(const sl_model_cfg *m)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, m->name);
    for (size_t i = 0; i < m->ntargets; i++) {
        h = fnv(h, m->targets[i].provider->name);
        h = fnv(h, m->targets[i].provider->base_url);
        h = fnv(h, m->targets[i].model);
    }
    h = (h ^ m->ntargets) * 0x100000001b3ull;
    h = (h ^ (uint64_t)m->balance) * 0x100000001b3ull;
    if (m->balance == SL_BALANCE_PREFIX_CACHE) {
        h = (h ^ m->prefix_cache.block_tokens) * 0x100000001b3ull;
        h = (h ^ m->prefix_cache.max_entries) * 0x100000001b3ull;
        h = (h ^ 0x5a) * 0x100000001b3ull;
    }
    return h;
}

bool sl_lb_needs_state(sl_balance_kind k, bool shared)
{
    return k == SL_BALANCE_PREFIX_CACHE || k == SL_BALANCE_METRICS || (shared && k == SL_BALANCE_LEAST_REQUEST);
}

static void lb_free(sl_lb_model *lm)
{
    pthread_mutex_destroy(&lm->out_lock);
    sl_buf_free(&lm->outbox);
    for (uint32_t i = 0; lm->t && i < lm->ntargets; i++) pthread_mutex_destroy(&lm->t[i].lock);
    sl_free(lm->t);
    sl_prefix_index_free(lm->ix);
    sl_free(lm);
}

static sl_lb_model *lb_new(const sl_model_cfg *m, uint64_t sig, bool shared)
{
    sl_lb_model *lm = sl_calloc(1, sizeof *lm);
    if (!lm) return NULL;
    lm->sig = sig;
    lm->share_sig = sig;
    lm->shared = shared;
    lm->cursor = -1;
    pthread_mutex_init(&lm->out_lock, NULL);
    sl_buf_init(&lm->outbox, SL_LBSHARE_BATCH_MAX);
    lm->ntargets = (uint32_t)m->ntargets;
    lm->t = sl_calloc(m->ntargets, sizeof *lm->t);
    if (!lm->t) {
        sl_free(lm);
        return NULL;
    }
    for (uint32_t i = 0; i < lm->ntargets; i++) pthread_mutex_init(&lm->t[i].lock, NULL);
    if (m->balance == SL_BALANCE_PREFIX_CACHE) {
        lm->ix = sl_prefix_index_new(lm->ntargets, (uint32_t)m->prefix_cache.max_entries);
        if (!lm->ix) {
            lb_free(lm);
            return NULL;
        }
    }
    atomic_store(&lm->refs, 1);
    return lm;
}

sl_lb_model *sl_lb_model_get(const sl_model_cfg *m, bool shared)
{
    if (!sl_lb_needs_state(m->balance, shared)) return NULL;
    uint64_t sig = signature(m);
    pthread_mutex_lock(&reg_lock);
    sl_lb_model *lm = reg;
    while (lm && !(lm->sig == sig && lm->ntargets == m->ntargets && lm->shared == shared)) lm = lm->next;
    if (lm) {
        atomic_fetch_add(&lm->refs, 1);
    } else if ((lm = lb_new(m, sig, shared))) {
        lm->next = reg;
        reg = lm;
    }
    pthread_mutex_unlock(&reg_lock);
    return lm;
}

void sl_lb_model_put(sl_lb_model *lm)
{
    if (!lm) return;
    pthread_mutex_lock(&reg_lock);
    if (atomic_fetch_sub(&lm->refs, 1) == 1) {
        sl_lb_model **p = &reg;
        while (*p && *p != lm) p = &(*p)->next;
        if (*p) *p = lm->next;
        lb_free(lm);
    }
    pthread_mutex_unlock(&reg_lock);
}

sl_lb_metrics sl_lb_metrics_get(sl_lb_model *lm, uint32_t ti)
{
    sl_lb_metrics m;
    pthread_mutex_lock(&lm->t[ti].lock);
    m = lm->t[ti].met;
    pthread_mutex_unlock(&lm->t[ti].lock);
    return m;
}

void sl_lb_metrics_put(sl_lb_model *lm, uint32_t ti, const sl_lb_metrics *m)
{
    pthread_mutex_lock(&lm->t[ti].lock);
    if (m->ok) {
        lm->t[ti].met = *m;
    } else {
        lm->t[ti].met.ok = false; /* keep the last numbers for the record; they are not used */
    }
    pthread_mutex_unlock(&lm->t[ti].lock);
}

double sl_lb_load(sl_lb_model *lm, const sl_model_cfg *m, uint32_t ti, uint64_t now_ms, bool *fresh)
{
    int64_t inflight = atomic_load_explicit(&lm->t[ti].inflight, memory_order_relaxed);
    /* the other instances' requests, while Redis answers; without it this instance's alone */
    int64_t remote = sl_lbshare_remote_fresh(lm, now_ms) ? atomic_load_explicit(&lm->t[ti].remote, memory_order_relaxed) : 0;
    double w = (double)(m->targets[ti].weight ? m->targets[ti].weight : 1);
    *fresh = false;
    if (sl_lb_uses_metrics(m)) {
        sl_lb_metrics met = sl_lb_metrics_get(lm, ti);
        if (met.ok && now_ms >= met.at_ms && now_ms - met.at_ms <= m->metrics.stale_ms) {
            const sl_scrape_weights_cfg *wt = &m->metrics.weights;
            double score = ((double)wt->queue * met.waiting + (double)wt->kv_cache * met.kv +
                            (double)wt->running * met.running) / 100.0;
            /* what this process sent (or saw finish) since the scrape: the scrape cannot know it yet */
            score += (double)(inflight - met.inflight_at);
            *fresh = true;
            return (score < 0 ? 0 : score) / w;
        }
    }
    inflight += remote > 0 ? remote : 0;
    return (double)(inflight < 0 ? 0 : inflight) / w;
}

/* ---------------------------------------------------------------- Prometheus text */

static bool name_is(sl_str line, const char *name, sl_str *rest)
{
    size_t n = strlen(name);
    if (line.n <= n || memcmp(line.p, name, n) != 0) return false;
    char c = line.p[n];
    if (c != ' ' && c != '{' && c != '\t') return false;
    *rest = (sl_str){line.p + n, line.n - n};
    return true;
}

/* The sample value of a line's remainder: after the labels, before an optional timestamp. */
static bool sample_value(sl_str rest, double *v)
{
    size_t i = 0;
    if (i < rest.n && rest.p[i] == '{') {
        bool quoted = false;
        for (i++; i < rest.n; i++) {
            char c = rest.p[i];
            if (quoted && c == '\\') i++;
            else if (c == '"') quoted = !quoted;
            else if (!quoted && c == '}') break;
        }
        if (i >= rest.n) return false;
        i++;
    }
    while (i < rest.n && (rest.p[i] == ' ' || rest.p[i] == '\t')) i++;
    char buf[64];
    size_t k = 0;
    while (i < rest.n && rest.p[i] != ' ' && rest.p[i] != '\t' && k < sizeof buf - 1) buf[k++] = rest.p[i++];
    if (k == 0 || k == sizeof buf - 1) return false;
    buf[k] = 0;
    char *end = NULL;
    double d = strtod(buf, &end);
    if (end != buf + k || !isfinite(d) || d < 0) return false;
    *v = d;
    return true;
}

int sl_lb_parse_prometheus(sl_str text, sl_lb_metrics *out)
{
    static const char *const names[] = {"vllm:num_requests_waiting", "vllm:num_requests_running",
                                        "vllm:kv_cache_usage_perc",  "vllm:gpu_cache_usage_perc",
                                        "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"};
    double sum[SL_ARRAY_LEN(names)] = {0};
    bool seen[SL_ARRAY_LEN(names)] = {0};
    size_t pos = 0;
    while (pos < text.n) {
        const char *nl = memchr(text.p + pos, '\n', text.n - pos);
        size_t end = nl ? (size_t)(nl - text.p) : text.n;
        sl_str line = {text.p + pos, end - pos};
        pos = end + 1;
        if (line.n && line.p[line.n - 1] == '\r') line.n--;
        if (!line.n || line.p[0] == '#') continue;
        for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
            sl_str rest;
            double v;
            if (!name_is(line, names[i], &rest)) continue;
            if (!sample_value(rest, &v)) return SL_EPARSE;
            sum[i] += v; /* one series per engine (model_name label): a target's total */
            seen[i] = true;
            break;
        }
    }
    /* the queue and the KV cache are what the score needs; older vLLM calls the latter gpu_cache_usage_perc */
    if (!seen[0] || !(seen[2] || seen[3])) return SL_ENOTFOUND;
    out->waiting = sum[0];
    out->running = sum[1];
    out->kv = seen[2] ? sum[2] : sum[3];
    if (out->kv > 1.0) out->kv = 1.0;
    out->hits = sum[4];
    out->queries = sum[5];
    return SL_OK;
}
