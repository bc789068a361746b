/*
 * balance.c: the per-worker balancer state: sizing it for a configuration
 * snapshot and carrying health over a reload (see balance.h).
 */
#include "balance/balance.h"

int sl_balancer_init(sl_balancer *b, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    return pthread_mutex_init(&b->lock, NULL) == 0 ? SL_OK : SL_ENOMEM;
}

static void put_lbm(sl_lb_model **lbm, size_t n)
{
    for (size_t i = 0; lbm && i < n; i++) sl_lb_model_put(lbm[i]);
    sl_free(lbm);
}

static void free_arrays(sl_balancer *b)
{
    put_lbm(b->lbm, b->nmodels);
    b->lbm = NULL;
    sl_free(b->models);
    sl_free(b->targets);
    sl_free(b->providers);
    sl_free(b->keys);
    b->models = NULL, b->targets = NULL, b->providers = NULL, b->keys = NULL;
    b->nmodels = b->ntargets = b->nproviders = b->nkeys = 0;
}

void sl_balancer_free(sl_balancer *b)
{
    pthread_mutex_lock(&b->lock);
    free_arrays(b);
    if (b->cfg) sl_config_release(b->cfg);
    b->cfg = NULL;
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_destroy(&b->lock);
}

uint64_t sl_bal_rand(sl_balancer *b)
{
    uint64_t x = b->rng; /* xorshift64* */
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    b->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

typedef struct fresh {
    sl_bal_model *models;
    sl_bal_target *targets;
    sl_bal_provider *providers;
    sl_bal_key *keys;
    sl_lb_model **lbm;
    size_t nt, nk;
} fresh;

static int alloc_fresh(const sl_config *c, fresh *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < c->nmodels; i++) f->nt += c->models[i].ntargets;
    for (size_t i = 0; i < c->nproviders; i++) f->nk += c->providers[i].napi_keys ? c->providers[i].napi_keys : 1;
    f->models = sl_calloc(c->nmodels ? c->nmodels : 1, sizeof *f->models);
    f->targets = sl_calloc(f->nt ? f->nt : 1, sizeof *f->targets);
    f->providers = sl_calloc(c->nproviders ? c->nproviders : 1, sizeof *f->providers);
    f->keys = sl_calloc(f->nk ? f->nk : 1, sizeof *f->keys);
    f->lbm = sl_calloc(c->nmodels ? c->nmodels : 1, sizeof *f->lbm);
    bool ok = f->models && f->targets && f->providers && f->keys && f->lbm;
    /* taken before the old snapshot's are dropped, so that a reload finds the same shared state */
    bool shared = c->state.backend == SL_STATE_REDIS; /* shared with the other instances (lbshared_redis.c) */
    for (size_t i = 0; ok && i < c->nmodels; i++) {
        const sl_model_cfg *m = &c->models[i];
        if (!sl_lb_needs_state(m->balance, shared)) continue;
        if (!(f->lbm[i] = sl_lb_model_get(m, shared))) ok = false;
    }
    if (ok) return SL_OK;
    put_lbm(f->lbm, c->nmodels);
    sl_free(f->models), sl_free(f->targets), sl_free(f->providers), sl_free(f->keys);
    return SL_ENOMEM;
}

static void layout(const sl_config *c, fresh *f)
{
    uint32_t base = 0;
    for (size_t i = 0; i < c->nmodels; i++) {
        f->models[i].target_base = base;
        base += (uint32_t)c->models[i].ntargets;
    }
    base = 0;
    for (size_t i = 0; i < c->nproviders; i++) {
        f->providers[i].key_base = base;
        f->providers[i].nkeys = c->providers[i].napi_keys ? (uint32_t)c->providers[i].napi_keys : 1;
        base += f->providers[i].nkeys;
    }
}

/* Carries learnt health from the old snapshot to the new one, matched by name. */
static void carry_over(const sl_balancer *b, const sl_config *c, fresh *f)
{
    const sl_config *o = b->cfg;
    if (!o || b->nproviders != o->nproviders || b->nmodels != o->nmodels) return;
    for (size_t i = 0; i < c->nproviders; i++) {
        const sl_provider_cfg *old = sl_config_find_provider(o, sl_str_from_cstr(c->providers[i].name));
        if (!old) continue;
        const sl_bal_provider *op = &b->providers[old->index];
        sl_bal_provider *np = &f->providers[i];
        np->probe_fails = op->probe_fails;
        atomic_store(&np->probe_down, atomic_load(&op->probe_down));
        for (uint32_t k = 0; k < np->nkeys && k < op->nkeys; k++) {
            atomic_store(&f->keys[np->key_base + k].benched_until, atomic_load(&b->keys[op->key_base + k].benched_until));
            f->keys[np->key_base + k].strikes = b->keys[op->key_base + k].strikes;
        }
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        const sl_model_cfg *nm = &c->models[i];
        for (size_t j = 0; j < o->nmodels; j++) {
            const sl_model_cfg *om = &o->models[j];
            if (strcmp(om->name, nm->name) != 0 || om->ntargets != nm->ntargets) continue;
            for (size_t t = 0; t < nm->ntargets; t++) {
                const sl_bal_target *ot = &b->targets[b->models[j].target_base + t];
                sl_bal_target *nt = &f->targets[f->models[i].target_base + t];
                nt->fails = ot->fails, nt->oks = ot->oks, nt->ejections = ot->ejections;
                nt->ewma_ns = ot->ewma_ns, nt->ewma_at_ns = ot->ewma_at_ns;
                atomic_store(&nt->ejected_until, atomic_load(&ot->ejected_until));
                /* in-flight counts and trials belong to requests of the old snapshot: not carried */
            }
            break;
        }
    }
}

int sl_balancer_configure(sl_balancer *b, sl_config *cfg)
{
    if (b->cfg == cfg) return SL_OK;
    fresh f;
    if (alloc_fresh(cfg, &f) != SL_OK) return SL_ENOMEM;
    layout(cfg, &f);
    carry_over(b, cfg, &f);
    pthread_mutex_lock(&b->lock);
    free_arrays(b);
    sl_config *old = b->cfg;
    b->models = f.models, b->targets = f.targets, b->providers = f.providers, b->keys = f.keys, b->lbm = f.lbm;
    b->nmodels = cfg->nmodels, b->ntargets = f.nt, b->nproviders = cfg->nproviders, b->nkeys = f.nk;
    b->cfg = sl_config_retain(cfg);
    pthread_mutex_unlock(&b->lock);
    if (old) sl_config_release(old);
    return SL_OK;
}
