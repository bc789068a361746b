/*
 * failover.c: one request's way through targets, keys and fallback models,
 * and the worker-side glue of the balancer (see failover.h for the rules).
 *
 * Clocks: the balancer is told uv_hrtime() (monotonic) in ms or ns; waits run
 * on a uv timer of the worker loop, allocated on the heap because a closing
 * uv handle outlives the request's arena by a loop turn.
 */
#include "balance/failover.h"

#include <time.h>

#include "core/log.h"
#include "gateway/gateway.h"

static uint64_t now_ms(void) { return uv_hrtime() / 1000000ull; }
static sl_balancer *bal(const sl_gw_req *r) { return &r->gw->bal; }

/* ---------------------------------------------------------------- worker */

int sl_fo_worker_init(sl_gw_worker *gw)
{
    if (sl_balancer_init(&gw->bal, gw->rng) != SL_OK) return SL_ENOMEM;
    gw->prober = sl_prober_new(gw);
    gw->bal.scraper = gw->prober ? sl_scraper_new(gw) : NULL;
    gw->bal.sync = gw->bal.scraper ? sl_lbsync_new(gw) : NULL;
    if (!gw->bal.sync) {
        sl_scraper_free(gw->bal.scraper);
        gw->bal.scraper = NULL;
        sl_prober_free(gw->prober);
        gw->prober = NULL;
        sl_balancer_free(&gw->bal);
        return SL_ENOMEM;
    }
    return SL_OK;
}

void sl_fo_worker_free(sl_gw_worker *gw)
{
    sl_prober_free(gw->prober);
    gw->prober = NULL;
    sl_scraper_free(gw->bal.scraper);
    gw->bal.scraper = NULL;
    sl_lbsync_free(gw->bal.sync);
    gw->bal.sync = NULL;
    sl_balancer_free(&gw->bal);
}

void sl_fo_config_changed(sl_gw_worker *gw, sl_config *cfg)
{
    if (sl_balancer_configure(&gw->bal, cfg) != SL_OK)
        sl_warn("worker %d: out of memory sizing balancer state; balancing without it", gw->w->id);
    sl_prober_configure(gw->prober, cfg);
    sl_scraper_configure(gw->bal.scraper, cfg);
    sl_lbsync_configure(gw->bal.sync, cfg);
}

size_t sl_health_snapshot(sl_runtime *rt, sl_health_entry *out, size_t cap)
{
    size_t n = 0;
    uint64_t now = now_ms();
    sl_health_entry one[64];
    for (size_t wi = 0; wi < rt->nworkers; wi++) {
        sl_gw_worker *gw = rt->workers[wi].gw;
        if (!gw) continue;
        /* Rows of one worker, in chunks; merged by (provider, key_index): healthy only if healthy everywhere. */
        size_t got = sl_bal_health(&gw->bal, now, one, SL_ARRAY_LEN(one));
        for (size_t i = 0; i < got; i++) {
            size_t j = 0;
            while (j < n && !(out[j].key_index == one[i].key_index && strcmp(out[j].provider, one[i].provider) == 0)) j++;
            if (j < n) out[j].healthy = out[j].healthy && one[i].healthy;
            else if (n < cap) out[n++] = one[i];
        }
    }
    return n;
}

/* ---------------------------------------------------------------- timer */

typedef struct sl_fo_timer {
    uv_timer_t t;
    sl_gw_req *r; /* NULL once the request is gone */
} sl_fo_timer;

static int choose(sl_gw_req *r, uint64_t tried, uint64_t now, uint64_t *wait);

static void on_timer_closed(uv_handle_t *h) { sl_free(h->data); }

static void on_timer(uv_timer_t *t)
{
    sl_fo_timer *ft = t->data;
    sl_gw_req *r = ft->r;
    if (!r) return;
    sl_fo_timer_kind kind = r->fo.timer_kind;
    r->fo.timer_kind = SL_FO_TIMER_NONE;
    if (kind == SL_FO_TIMER_WAIT) {
        uint64_t wait;
        /* if still none is in service the last target is tried anyway: the wait was what it asked for */
        if (r->fo.rechoose) choose(r, 0, now_ms(), &wait);
        r->fo.rechoose = false;
        sl_proxy_attempt(r);
    }
    else if (kind == SL_FO_TIMER_FIRST_TOKEN) sl_proxy_first_token_timeout(r);
}

static bool arm(sl_gw_req *r, sl_fo_timer_kind kind, uint64_t ms)
{
    sl_fo_req *f = &r->fo;
    if (!f->timer) {
        sl_fo_timer *ft = sl_calloc(1, sizeof *ft);
        if (!ft) return false;
        uv_timer_init(&r->gw->w->loop, &ft->t);
        ft->t.data = ft;
        ft->r = r;
        f->timer = ft;
    }
    f->timer_kind = kind;
    uv_timer_start(&f->timer->t, on_timer, ms, 0);
    return true;
}

static void disarm(sl_gw_req *r)
{
    if (r->fo.timer) uv_timer_stop(&r->fo.timer->t);
    r->fo.timer_kind = SL_FO_TIMER_NONE;
}

void sl_fo_watch_first_token(sl_gw_req *r, uint64_t ms)
{
    if (ms && !arm(r, SL_FO_TIMER_FIRST_TOKEN, ms)) sl_warn("out of memory arming a first-token deadline");
}

void sl_fo_unwatch(sl_gw_req *r)
{
    if (r->fo.timer_kind == SL_FO_TIMER_FIRST_TOKEN) disarm(r);
}

bool sl_fo_cancel_wait(sl_gw_req *r)
{
    if (r->fo.timer_kind != SL_FO_TIMER_WAIT) return false;
    disarm(r);
    return true;
}

void sl_fo_release(sl_gw_req *r)
{
    sl_fo_req *f = &r->fo;
    sl_bal_end(bal(r), &f->a, SL_BAL_NO_VERDICT, 0, uv_hrtime());
    if (f->timer) {
        uv_timer_stop(&f->timer->t);
        f->timer->r = NULL;
        uv_close((uv_handle_t *)&f->timer->t, on_timer_closed);
        f->timer = NULL;
    }
    f->timer_kind = SL_FO_TIMER_NONE;
}

/* ---------------------------------------------------------------- choosing */

/* Points the request at target ti of the current model with key ki. */
static void use_target(sl_gw_req *r, uint32_t ti, uint32_t ki)
{
    sl_fo_req *f = &r->fo;
    if (f->a.cfg != r->cfg || f->a.model != f->model || f->a.target != ti) f->tried_keys = 0;
    f->a.cfg = r->cfg;
    f->a.model = f->model;
    f->a.target = ti;
    f->a.key = ki;
    if (ti < 64) f->tried_targets |= 1ull << ti;
    r->mcfg = f->model;
    r->target_index = ti;
    r->target = &f->model->targets[ti];
    r->upstream_model = r->target->model ? sl_str_from_cstr(r->target->model) : f->model_name;
    r->rec.provider = sl_str_from_cstr(r->target->provider->name);
    r->rec.provider_type = sl_str_from_cstr(r->target->provider->type);
    r->rec.upstream_model = r->upstream_model;
}

/*
 * The prompt as prefix_cache hashes it: the raw JSON text of the members that
 * make up what an engine prefills, in the order an engine's chat template
 * puts them (tools, system, then the conversation, which grows at its end
 * turn after turn). Raw text, not decoded: a client that resends a
 * conversation resends the same bytes, and spans cost no copy.
 */
static void prompt_hint(sl_gw_req *r, sl_bal_hint *hint)
{
    sl_fo_req *f = &r->fo;
    uint32_t block = (uint32_t)(f->model->prefix_cache.block_tokens * 4);
    if (f->hashed_block != block) {
        static const char *const members[] = {"tools", "system", "systemInstruction", "instructions",
                                              "messages", "contents", "input"};
        sl_str parts[SL_ARRAY_LEN(members)];
        size_t np = 0;
        for (size_t i = 0; i < SL_ARRAY_LEN(members); i++) {
            int t = sl_json_obj_get(&r->doc, 0, members[i]);
            if (t >= 0) parts[np++] = sl_json_raw(&r->doc, t);
        }
        size_t total = 0;
        for (size_t i = 0; i < np; i++) total += parts[i].n;
        size_t cap = SL_MIN(total / block, (size_t)SL_PREFIX_MAX_BLOCKS);
        f->nhashes = 0;
        f->hashes = cap ? sl_arena_alloc(&r->hx->arena, cap * sizeof *f->hashes) : NULL;
        if (f->hashes) f->nhashes = (uint32_t)sl_prefix_hash(parts, np, block, f->hashes, cap);
        f->hashed_block = block;
    }
    hint->hashes = f->hashes;
    hint->nhashes = f->nhashes;
}

/* A target and key of the current model among those not in tried; SL_ENOTFOUND with *wait. */
static int choose(sl_gw_req *r, uint64_t tried, uint64_t now, uint64_t *wait)
{
    sl_fo_req *f = &r->fo;
    uint32_t ti, ki = 0;
    sl_bal_hint hint = {0};
    if (f->model->balance == SL_BALANCE_PREFIX_CACHE && r->doc.toks) prompt_hint(r, &hint);
    int rc = sl_bal_pick_hint(bal(r), r->cfg, f->model, &hint, tried, now, &ti, wait);
    if (rc != SL_OK) return rc;
    uint64_t kw;
    if (sl_bal_pick_key(bal(r), r->cfg, f->model->targets[ti].provider, 0, now, &ki, &kw) != SL_OK) ki = 0;
    use_target(r, ti, ki);
    return SL_OK;
}

static void note_unavailable(sl_fo_req *f, uint64_t wait)
{
    if (wait && (!f->unavailable_ms || wait < f->unavailable_ms)) f->unavailable_ms = wait;
}

static bool visited(const sl_fo_req *f, uint32_t mi)
{
    for (uint32_t i = 0; i < f->nvisited; i++)
        if (f->visited[i] == mi) return true;
    return false;
}

static void enter_model(sl_gw_req *r, const sl_model_cfg *m, sl_str name)
{
    sl_fo_req *f = &r->fo;
    f->model = m;
    f->model_name = name;
    f->tried_targets = 0;
    f->tried_keys = 0;
    f->model_attempts = 0;
    f->same_target_retries = 0;
    f->visited[f->nvisited++] = m->index;
    if (f->depth < SL_FO_MAX_MODELS) f->stack[f->depth] = m->index, f->next_fb[f->depth] = 0, f->depth++;
    sl_bal_note_request(bal(r), r->cfg, m, now_ms());
}

/* The next model of the depth-first fallback walk, entered; false when the walk is over. */
static bool next_model(sl_gw_req *r)
{
    sl_fo_req *f = &r->fo;
    while (f->depth && f->nvisited < SL_FO_MAX_MODELS) {
        const sl_model_cfg *cur = &r->cfg->models[f->stack[f->depth - 1]];
        uint32_t j = f->next_fb[f->depth - 1]++;
        if (j >= cur->nfallbacks) {
            f->depth--;
            continue;
        }
        sl_str name = sl_str_from_cstr(cur->fallbacks[j]);
        const sl_model_cfg *to = sl_config_find_model(r->cfg, name);
        if (!to || visited(f, to->index)) continue;
        enter_model(r, to, name);
        return true;
    }
    return false;
}

/* From the current model on, the first model with a target in service, chosen; false when none is left. */
static bool choose_here_or_later(sl_gw_req *r)
{
    uint64_t wait = 0;
    uint64_t now = now_ms();
    for (;;) {
        if (choose(r, r->fo.tried_targets, now, &wait) == SL_OK) return true;
        note_unavailable(&r->fo, wait);
        if (!next_model(r)) return false;
    }
}

bool sl_fo_begin(sl_gw_req *r)
{
    sl_fo_req *f = &r->fo;
    memset(f, 0, sizeof *f);
    enter_model(r, r->mcfg, r->model);
    if (choose_here_or_later(r)) return true;
    uint64_t s = (f->unavailable_ms + 999) / 1000;
    r->retry_after_s = (uint32_t)SL_MIN(SL_MAX(s, 1), 86400);
    sl_gw_error(r, 503, "service_unavailable", NULL, "no healthy target for model '%.*s'; retry in %u s",
                (int)SL_MIN(r->model.n, 200), r->model.p, r->retry_after_s);
    return false;
}

const char *sl_fo_key(const sl_gw_req *r)
{
    const sl_provider_cfg *p = r->target->provider;
    return p->napi_keys ? p->api_keys[r->fo.a.key % p->napi_keys] : NULL;
}

void sl_fo_attempt_begin(sl_gw_req *r)
{
    sl_fo_req *f = &r->fo;
    f->model_attempts++;
    f->retry_after_ms = 0;
    if (f->a.key < 64) f->tried_keys |= 1ull << f->a.key;
    sl_bal_begin(bal(r), &f->a, uv_hrtime());
}

void sl_fo_attempt_first_byte(sl_gw_req *r)
{
    if (r->fo.a.open && !r->fo.a.first_byte_ns) r->fo.a.first_byte_ns = uv_hrtime();
}

void sl_fo_attempt_end(sl_gw_req *r, sl_bal_outcome o)
{
    sl_bal_end(bal(r), &r->fo.a, o, r->fo.retry_after_ms, uv_hrtime());
}

/* ---------------------------------------------------------------- what next */

static void go_now(sl_gw_req *r) { sl_proxy_attempt(r); }

static bool go_later(sl_gw_req *r, uint64_t ms)
{
    if (ms == 0) {
        go_now(r);
        return true;
    }
    return arm(r, SL_FO_TIMER_WAIT, ms);
}

/* Same target, another key (after 401/403/429). */
static bool next_key(sl_gw_req *r, uint64_t now)
{
    sl_fo_req *f = &r->fo;
    uint32_t ki;
    uint64_t wait;
    const sl_provider_cfg *p = f->model->targets[f->a.target].provider;
    if (sl_bal_pick_key(bal(r), r->cfg, p, f->tried_keys, now, &ki, &wait) != SL_OK) return false;
    if (!sl_bal_take_retry(bal(r), r->cfg, f->model, now)) return false;
    f->model_attempts--; /* a key change is not one of retry.attempts */
    use_target(r, f->a.target, ki);
    go_now(r);
    return true;
}

/* Another attempt on the current model: an untried target at once, or a tried one after a wait. */
static bool retry_in_model(sl_gw_req *r, uint64_t now)
{
    sl_fo_req *f = &r->fo;
    const sl_retry_cfg *rc = &f->model->retry;
    if (f->model_attempts >= rc->attempts || !sl_bal_take_retry(bal(r), r->cfg, f->model, now)) return false;
    uint64_t wait = 0;
    if (choose(r, f->tried_targets, now, &wait) == SL_OK) {
        go_now(r);
        return true;
    }
    /* Every target was tried: the same ones again, after the backoff (or the retry-after they asked for). */
    if (f->retry_after_ms > rc->max_retry_after_ms) return false;
    uint64_t delay = SL_MAX(sl_bal_backoff_ms(bal(r), rc, ++f->same_target_retries), f->retry_after_ms);
    if (choose(r, 0, now, &wait) == SL_OK) return go_later(r, delay);
    /* None in service now (a benched key, an ejection): wait for the first to come back, if that is soon. */
    note_unavailable(f, wait);
    if (!wait || wait > rc->max_retry_after_ms) return false;
    f->rechoose = true; /* the target is chosen when the wait ends */
    return arm(r, SL_FO_TIMER_WAIT, SL_MAX(delay, wait + 2));
}

bool sl_fo_retry(sl_gw_req *r, sl_fo_why why, bool retryable)
{
    sl_fo_req *f = &r->fo;
    if (r->client_head_sent || r->hx->aborted) return false;
    uint64_t now = now_ms();
    if (why == SL_FO_STALE) {
        if (f->stale_retried) return false;
        f->stale_retried = true;
        f->model_attempts--; /* transparent: not one of retry.attempts */
        go_now(r);
        return true;
    }
    if (why == SL_FO_KEY && next_key(r, now)) return true;
    if (!retryable) return false;
    if (retry_in_model(r, now)) return true;
    /* This model is done: the fallbacks, in order. */
    if (!next_model(r)) return false;
    if (!choose_here_or_later(r)) return false;
    go_now(r);
    return true;
}
