/*
 * pick.c: the balancers. Each chooses among the targets still eligible for
 * this attempt (not tried yet, in service):
 *
 *   weighted       smooth weighted round-robin (nginx's): deterministic, and
 *                  heavy weights are spread out rather than sent in bursts
 *   least_request  fewest requests in flight relative to weight; ties rotate
 *   latency        peak-EWMA of time to first byte times (in flight + 1),
 *                  compared for two targets drawn at random (power of two
 *                  choices): a slow or loaded target loses most draws, yet
 *                  is never starved of the samples that show it recovered
 *
 *   prefix_cache   the target holding the longest prefix of the prompt
 *                  (prefix.c), unless its load is above overload_percent of
 *                  (the least load + 1); ties and misses to the least loaded
 *   metrics        the lowest score from the engines' own metrics
 *                  (lbshared.c sl_lb_load), in-flight counts where a scrape
 *                  failed or is stale
 *
 * prefix_cache and metrics read process-wide state (lbshared.c); the others
 * only this worker's, except least_request with state.backend: redis, which
 * compares in-flight counts of every instance (lbshared_redis.c).
 */
#include <math.h>

#include "balance/balance.h"

static bool state_for(const sl_balancer *b, const sl_config *cfg) { return b->cfg == cfg && cfg; }

static bool provider_ok(sl_balancer *b, const sl_provider_cfg *p, uint64_t now, uint64_t *wait)
{
    const sl_bal_provider *bp = &b->providers[p->index];
    if (atomic_load_explicit(&bp->probe_down, memory_order_relaxed)) {
        *wait = p->health_check.interval_ms; /* the next probe may bring it back */
        return false;
    }
    uint64_t soonest = UINT64_MAX;
    for (uint32_t k = 0; k < bp->nkeys; k++) {
        uint64_t until = atomic_load_explicit(&b->keys[bp->key_base + k].benched_until, memory_order_relaxed);
        if (until <= now) return true;
        soonest = SL_MIN(soonest, until - now);
    }
    *wait = soonest;
    return false;
}

bool sl_bal_target_ok(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint32_t ti, uint64_t now_ms,
                      uint64_t *wait_ms)
{
    *wait_ms = 0;
    if (!state_for(b, cfg) || ti >= m->ntargets) return true;
    const sl_bal_target *t = &b->targets[b->models[m->index].target_base + ti];
    uint64_t until = atomic_load_explicit(&t->ejected_until, memory_order_relaxed);
    if (until && now_ms < until) {
        *wait_ms = until - now_ms;
        return false;
    }
    if (until && t->trial) { /* half-open: one trial at a time; its answer decides */
        *wait_ms = SL_MIN(m->outlier.base_ejection_ms, 1000);
        return false;
    }
    return provider_ok(b, m->targets[ti].provider, now_ms, wait_ms);
}

/* Eligible targets: untried and in service. Returns how many; *wait_ms = soonest return of an untried one. */
static size_t candidates(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t tried, uint64_t now,
                         uint16_t *out, uint64_t *wait_ms)
{
    size_t n = 0;
    uint64_t soonest = UINT64_MAX;
    for (uint32_t i = 0; i < m->ntargets && n < SL_BAL_MAX_PICK; i++) {
        if (i < 64 && (tried & (1ull << i))) continue;
        uint64_t w = 0;
        if (sl_bal_target_ok(b, cfg, m, i, now, &w)) out[n++] = (uint16_t)i;
        else soonest = SL_MIN(soonest, w);
    }
    *wait_ms = soonest == UINT64_MAX ? 0 : soonest;
    return n;
}

static uint32_t pick_weighted(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n)
{
    sl_bal_target *t = &b->targets[b->models[m->index].target_base];
    int64_t total = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t w = (int64_t)m->targets[c[i]].weight;
        t[c[i]].wrr += w;
        total += w;
        if (t[c[i]].wrr > t[c[best]].wrr) best = i;
    }
    t[c[best]].wrr -= total;
    return c[best];
}

static uint32_t least_loaded(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n, const double *load);
static void loads_of(sl_lb_model *lm, const sl_model_cfg *m, const uint16_t *c, size_t n, uint64_t now, double *load);

static uint32_t pick_least_request(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n, uint64_t now)
{
    sl_lb_model *lm = b->lbm ? b->lbm[m->index] : NULL;
    if (lm && lm->shared) { /* global counts: this process's and the other instances' */
        double load[SL_BAL_MAX_PICK];
        loads_of(lm, m, c, n, now, load);
        return least_loaded(b, m, c, n, load);
    }
    sl_bal_model *bm = &b->models[m->index];
    const sl_bal_target *t = &b->targets[bm->target_base];
    size_t start = bm->cursor++ % n, best = start;
    for (size_t k = 1; k < n; k++) {
        size_t i = (start + k) % n;
        /* inflight / weight, compared without division */
        uint64_t lhs = (uint64_t)t[c[i]].inflight * m->targets[c[best]].weight;
        uint64_t rhs = (uint64_t)t[c[best]].inflight * m->targets[c[i]].weight;
        if (lhs < rhs) best = i;
    }
    return c[best];
}

/* Peak-EWMA decayed to now, plus 1 ms so that an unsampled target costs its load, times (in flight + 1). */
static double latency_cost(const sl_bal_target *t, uint64_t weight, uint64_t now_ns)
{
    double ewma = (double)t->ewma_ns;
    if (t->ewma_ns && now_ns > t->ewma_at_ns) ewma *= exp(-(double)(now_ns - t->ewma_at_ns) / (double)SL_BAL_EWMA_TAU_NS);
    return (ewma + 1e6) * (double)(t->inflight + 1) / (double)(weight ? weight : 1);
}

static uint32_t pick_latency(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n, uint64_t now_ms)
{
    if (n == 1) return c[0];
    const sl_bal_target *t = &b->targets[b->models[m->index].target_base];
    size_t i = (size_t)(sl_bal_rand(b) % n), j = (size_t)(sl_bal_rand(b) % (n - 1));
    if (j >= i) j++;
    uint64_t now_ns = now_ms * 1000000ull;
    double ci = latency_cost(&t[c[i]], m->targets[c[i]].weight, now_ns);
    double cj = latency_cost(&t[c[j]], m->targets[c[j]].weight, now_ns);
    return ci <= cj ? c[i] : c[j];
}

/* The least loaded of c (loads given); ties rotate. */
static uint32_t least_loaded(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n, const double *load)
{
    size_t start = b->models[m->index].cursor++ % n, best = start;
    for (size_t k = 1; k < n; k++) {
        size_t i = (start + k) % n;
        if (load[i] < load[best]) best = i;
    }
    return c[best];
}

static void loads_of(sl_lb_model *lm, const sl_model_cfg *m, const uint16_t *c, size_t n, uint64_t now, double *load)
{
    bool fresh;
    for (size_t i = 0; i < n; i++) load[i] = sl_lb_load(lm, m, c[i], now, &fresh);
}

static uint32_t pick_metrics(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n, uint64_t now)
{
    sl_lb_model *lm = b->lbm ? b->lbm[m->index] : NULL;
    if (!lm) return pick_least_request(b, m, c, n, now);
    double load[SL_BAL_MAX_PICK];
    loads_of(lm, m, c, n, now, load);
    return least_loaded(b, m, c, n, load);
}

/*
 * Longest prefix match among the targets that are not overloaded: a target
 * whose load is above overload_percent of (least + 1) is left out, so one hot
 * prefix spills over to the least loaded target (which then holds it too, and
 * the two share it from there on). Ties: least loaded, then rotation.
 */
static uint32_t pick_prefix(sl_balancer *b, const sl_model_cfg *m, const uint16_t *c, size_t n,
                            const sl_bal_hint *hint, uint64_t now)
{
    sl_lb_model *lm = b->lbm ? b->lbm[m->index] : NULL;
    if (!lm || !lm->ix) return pick_least_request(b, m, c, n, now);
    double load[SL_BAL_MAX_PICK];
    loads_of(lm, m, c, n, now, load);
    uint32_t matched[SL_BAL_MAX_PICK] = {0};
    uint32_t longest = 0;
    if (hint && hint->nhashes) longest = sl_prefix_match(lm->ix, hint->hashes, hint->nhashes, matched);
    uint32_t pick;
    if (!longest) {
        pick = least_loaded(b, m, c, n, load);
    } else {
        double least = load[0];
        for (size_t i = 1; i < n; i++) least = SL_MIN(least, load[i]);
        double limit = (double)m->prefix_cache.overload_percent / 100.0 * (least + 1.0);
        size_t start = b->models[m->index].cursor++ % n, best = SIZE_MAX;
        for (size_t k = 0; k < n; k++) {
            size_t i = (start + k) % n;
            if (load[i] > limit) continue;
            if (best == SIZE_MAX || matched[c[i]] > matched[c[best]] ||
                (matched[c[i]] == matched[c[best]] && load[i] < load[best]))
                best = i;
        }
        pick = c[best]; /* never SIZE_MAX: the least loaded is always within the limit */
    }
    if (hint && hint->nhashes) {
        if (lm->shared) { /* what the other instances do not know from this index yet: the blocks new to it */
            uint64_t added[SL_LBSHARE_RECORD_MAX];
            size_t nadded = 0;
            sl_prefix_insert_new(lm->ix, hint->hashes, hint->nhashes, pick, added, SL_ARRAY_LEN(added), &nadded);
            sl_lbshare_record(lm, pick, added, nadded);
        } else {
            sl_prefix_insert(lm->ix, hint->hashes, hint->nhashes, pick);
        }
    }
    return pick;
}

int sl_bal_pick(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t tried, uint64_t now_ms,
                uint32_t *target, uint64_t *wait_ms)
{
    return sl_bal_pick_hint(b, cfg, m, NULL, tried, now_ms, target, wait_ms);
}

int sl_bal_pick_hint(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, const sl_bal_hint *hint,
                     uint64_t tried, uint64_t now_ms, uint32_t *target, uint64_t *wait_ms)
{
    uint16_t c[SL_BAL_MAX_PICK];
    size_t n = candidates(b, cfg, m, tried, now_ms, c, wait_ms);
    if (n == 0) return SL_ENOTFOUND;
    *wait_ms = 0;
    if (!state_for(b, cfg)) {
        *target = c[sl_bal_rand(b) % n];
        return SL_OK;
    }
    switch (m->balance) {
    case SL_BALANCE_LEAST_REQUEST: *target = pick_least_request(b, m, c, n, now_ms); break;
    case SL_BALANCE_LATENCY: *target = pick_latency(b, m, c, n, now_ms); break;
    case SL_BALANCE_PREFIX_CACHE: *target = pick_prefix(b, m, c, n, hint, now_ms); break;
    case SL_BALANCE_METRICS: *target = pick_metrics(b, m, c, n, now_ms); break;
    default: *target = n == 1 ? c[0] : pick_weighted(b, m, c, n); break;
    }
    return SL_OK;
}

int sl_bal_pick_key(sl_balancer *b, const sl_config *cfg, const sl_provider_cfg *p, uint64_t tried, uint64_t now_ms,
                    uint32_t *key, uint64_t *wait_ms)
{
    uint32_t n = p->napi_keys ? (uint32_t)p->napi_keys : 1;
    *wait_ms = 0;
    if (!state_for(b, cfg)) {
        *key = (uint32_t)(sl_bal_rand(b) % n);
        return SL_OK;
    }
    sl_bal_provider *bp = &b->providers[p->index];
    uint64_t soonest = UINT64_MAX;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (bp->key_cursor + k) % n;
        if (i < 64 && (tried & (1ull << i))) continue;
        uint64_t until = atomic_load_explicit(&b->keys[bp->key_base + i].benched_until, memory_order_relaxed);
        if (until > now_ms) {
            soonest = SL_MIN(soonest, until - now_ms);
            continue;
        }
        bp->key_cursor = i + 1;
        *key = i;
        return SL_OK;
    }
    *wait_ms = soonest == UINT64_MAX ? 0 : soonest;
    return SL_ENOTFOUND;
}
