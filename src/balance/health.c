/*
 * health.c: what an attempt teaches. Passive outlier ejection per target:
 * `consecutive_failures` failures in a row eject it for base_ejection_ms,
 * doubled for each ejection in a row (capped at max_ejection_ms). When the
 * time is up the target is half-open: one trial request goes through; a
 * success puts it back in service, a failure ejects it again for twice as
 * long. As many successes in a row as the failure threshold forget the past
 * ejections. Keys are benched after 401/403/429, honouring retry-after.
 * Active probes (probe.c) mark a whole provider down or up.
 */
#include <math.h>
#include <stdio.h>

#include "balance/balance.h"

static bool state_for(const sl_balancer *b, const sl_config *cfg) { return b->cfg == cfg && cfg; }

static sl_bal_target *target_of(sl_balancer *b, const sl_bal_attempt *a)
{
    return &b->targets[b->models[a->model->index].target_base + a->target];
}

void sl_bal_begin(sl_balancer *b, sl_bal_attempt *a, uint64_t now_ns)
{
    a->start_ns = now_ns;
    a->first_byte_ns = 0;
    a->open = true;
    a->trial = false;
    if (!state_for(b, a->cfg)) return;
    sl_bal_target *t = target_of(b, a);
    t->inflight++;
    uint64_t until = atomic_load_explicit(&t->ejected_until, memory_order_relaxed);
    if (until && until <= now_ns / 1000000ull) a->trial = t->trial = true;
}

static void ewma_sample(sl_bal_target *t, uint64_t sample_ns, uint64_t now_ns)
{
    if (sample_ns >= t->ewma_ns || !t->ewma_ns) { /* peak: a slower sample is believed at once */
        t->ewma_ns = sample_ns;
    } else {
        double dt = now_ns > t->ewma_at_ns ? (double)(now_ns - t->ewma_at_ns) : 0.0;
        double w = exp(-dt / (double)SL_BAL_EWMA_TAU_NS);
        t->ewma_ns = (uint64_t)((double)t->ewma_ns * w + (double)sample_ns * (1.0 - w));
    }
    t->ewma_at_ns = now_ns;
}

static void eject(sl_bal_target *t, const sl_outlier_cfg *o, uint64_t now_ms)
{
    uint32_t shift = SL_MIN(t->ejections, 20u);
    uint64_t d = o->base_ejection_ms << shift;
    if (d > o->max_ejection_ms || (d >> shift) != o->base_ejection_ms) d = o->max_ejection_ms;
    t->ejections++;
    t->fails = 0;
    atomic_store_explicit(&t->ejected_until, now_ms + (d ? d : 1), memory_order_relaxed);
}

static void target_verdict(sl_bal_target *t, const sl_bal_attempt *a, bool ok, uint64_t now_ns)
{
    const sl_outlier_cfg *o = &a->model->outlier;
    uint64_t now_ms = now_ns / 1000000ull;
    if (ok) {
        t->fails = 0;
        t->oks++;
        if (a->trial) atomic_store_explicit(&t->ejected_until, 0, memory_order_relaxed);
        if (t->oks >= SL_MAX(o->consecutive_failures, 1)) t->ejections = 0;
        if (a->first_byte_ns > a->start_ns) ewma_sample(t, a->first_byte_ns - a->start_ns, now_ns);
        return;
    }
    t->oks = 0;
    t->fails++;
    if (a->trial) eject(t, o, now_ms); /* the trial failed: out again, for longer */
    else if (o->consecutive_failures && t->fails >= o->consecutive_failures &&
             !atomic_load_explicit(&t->ejected_until, memory_order_relaxed))
        eject(t, o, now_ms);
}

static void bench_key(sl_balancer *b, const sl_bal_attempt *a, bool limited, uint64_t retry_after_ms, uint64_t now_ms)
{
    const sl_provider_cfg *p = a->model->targets[a->target].provider;
    const sl_bal_provider *bp = &b->providers[p->index];
    if (a->key >= bp->nkeys) return;
    sl_bal_key *k = &b->keys[bp->key_base + a->key];
    uint32_t shift = SL_MIN(k->strikes, 4u); /* at most 16 times the base */
    k->strikes++;
    uint64_t d = retry_after_ms;
    if (!d) d = limited ? SL_MIN(1000ull << shift, p->key_cooldown_ms) : p->key_cooldown_ms << shift;
    atomic_store_explicit(&k->benched_until, now_ms + d, memory_order_relaxed);
}

void sl_bal_end(sl_balancer *b, sl_bal_attempt *a, sl_bal_outcome o, uint64_t retry_after_ms, uint64_t now_ns)
{
    if (!a->open) return;
    a->open = false;
    if (!state_for(b, a->cfg)) return;
    sl_bal_target *t = target_of(b, a);
    if (t->inflight) t->inflight--;
    if (a->trial) t->trial = false;
    uint64_t now_ms = now_ns / 1000000ull;
    switch (o) {
    case SL_BAL_OK: {
        target_verdict(t, a, true, now_ns);
        const sl_bal_provider *bp = &b->providers[a->model->targets[a->target].provider->index];
        if (a->key < bp->nkeys) b->keys[bp->key_base + a->key].strikes = 0;
        break;
    }
    case SL_BAL_FAIL: target_verdict(t, a, false, now_ns); break;
    case SL_BAL_KEY_REJECTED: bench_key(b, a, false, retry_after_ms, now_ms); break;
    case SL_BAL_KEY_LIMITED: bench_key(b, a, true, retry_after_ms, now_ms); break;
    case SL_BAL_NO_VERDICT: break;
    }
}

void sl_bal_probe_result(sl_balancer *b, const sl_config *cfg, const sl_provider_cfg *p, bool ok)
{
    if (!state_for(b, cfg)) return;
    sl_bal_provider *bp = &b->providers[p->index];
    if (ok) {
        bp->probe_fails = 0;
        atomic_store_explicit(&bp->probe_down, false, memory_order_relaxed);
    } else if (++bp->probe_fails >= p->health_check.unhealthy_after) {
        atomic_store_explicit(&bp->probe_down, true, memory_order_relaxed);
    }
}

/* Whether any target (of any model) on provider pi is in service; true when none uses it. */
static bool provider_targets_ok(const sl_balancer *b, uint32_t pi, uint64_t now_ms)
{
    bool used = false;
    for (size_t i = 0; i < b->cfg->nmodels; i++) {
        const sl_model_cfg *m = &b->cfg->models[i];
        for (size_t j = 0; j < m->ntargets; j++) {
            if (m->targets[j].provider->index != pi) continue;
            used = true;
            uint64_t until = atomic_load_explicit(&b->targets[b->models[i].target_base + j].ejected_until,
                                                  memory_order_relaxed);
            if (!until || until <= now_ms) return true;
        }
    }
    return !used;
}

size_t sl_bal_health(sl_balancer *b, uint64_t now_ms, sl_health_entry *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; b->cfg && i < b->nproviders && n < cap; i++) {
        const sl_provider_cfg *p = &b->cfg->providers[i];
        const sl_bal_provider *bp = &b->providers[i];
        bool up = !atomic_load_explicit(&bp->probe_down, memory_order_relaxed) && provider_targets_ok(b, (uint32_t)i, now_ms);
        for (uint32_t k = 0; k < bp->nkeys && n < cap; k++, n++) {
            uint64_t until = atomic_load_explicit(&b->keys[bp->key_base + k].benched_until, memory_order_relaxed);
            snprintf(out[n].provider, sizeof out[n].provider, "%s", p->name);
            out[n].key_index = k;
            out[n].healthy = up && until <= now_ms;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return n;
}
