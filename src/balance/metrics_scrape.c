/*
 * metrics_scrape.c: reads the engines' own load for balance: metrics (and
 * for prefix_cache when models[].metrics.path is set), docs/balancing.md.
 *
 * Every target of such a model is scraped every metrics.interval_ms: GET
 * origin(base_url) + metrics.path, Prometheus text, through the worker's
 * upstream client (asynchronous; nothing waits for it). The numbers go into
 * the model's process-wide state (lbshared.c), so although every worker runs
 * a scraper, each target is scraped by one worker per interval: the worker
 * whose tick first claims it (a compare-and-swap on next_scrape_ms).
 *
 * A scrape that fails (connect, timeout, status, no vllm:* series) marks the
 * target's metrics bad; a good one that grows older than stale_ms is ignored.
 * Either way the balancer scores that target by in-flight counts.
 */
#include "balance/failover.h"

#include "core/log.h"
#include "gateway/gateway.h"
#include "providers/providers.h"

#define TICK_MS 10
#define MAX_BODY (1u << 20)

typedef struct scrape {
    struct sl_scraper *s;
    sl_lb_model *lm;      /* one reference */
    uint32_t ti;
    sl_up_req *q;
    sl_arena arena;       /* URL and headers */
    sl_buf body;
    int status;
    struct scrape *prev, *next;
} scrape;

struct sl_scraper {
    sl_gw_worker *gw;
    uv_timer_t tick;
    sl_config *cfg;       /* one reference, or NULL */
    scrape *live;
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000ull; }

static void scrape_free(scrape *sc)
{
    struct sl_scraper *s = sc->s;
    if (sc->prev) sc->prev->next = sc->next;
    else s->live = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    sl_buf_free(&sc->body);
    sl_arena_free(&sc->arena);
    sl_lb_model_put(sc->lm);
    sl_free(sc);
}

static int on_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    ((scrape *)ud)->status = status;
    return SL_OK;
}

static int on_data(void *ud, const char *p, size_t n)
{
    scrape *sc = ud;
    return sl_buf_append(&sc->body, p, n) == SL_OK ? SL_OK : SL_ELIMIT;
}

static void on_done(void *ud, const sl_up_result *res)
{
    scrape *sc = ud;
    sl_lb_metrics m = {0};
    bool ok = res->error == SL_UP_OK && sc->status >= 200 && sc->status < 300 &&
              sl_lb_parse_prometheus(sl_buf_str(&sc->body), &m) == SL_OK;
    m.ok = ok;
    m.at_ms = now_ms();
    m.inflight_at = atomic_load_explicit(&sc->lm->t[sc->ti].inflight, memory_order_relaxed);
    bool was_ok = sl_lb_metrics_get(sc->lm, sc->ti).ok;
    sl_lb_metrics_put(sc->lm, sc->ti, &m);
    if (was_ok && !ok)
        sl_info("metrics of target %u: scrape failed (%s); balancing it by in-flight counts", sc->ti,
                res->error ? (res->detail ? res->detail : "error") : sc->status >= 300 ? "bad status" : "no vllm:* gauges");
    scrape_free(sc);
}

static const sl_up_callbacks scrape_cb = {.on_head = on_head, .on_data = on_data, .on_done = on_done};

/* "scheme://host:port" of a base URL (config guarantees the scheme). */
static sl_str origin_of(const char *base)
{
    sl_str u = sl_str_from_cstr(base);
    const char *sep = strstr(base, "://");
    if (!sep) return u;
    const char *slash = memchr(sep + 3, '/', u.n - (size_t)(sep + 3 - base));
    return slash ? (sl_str){base, (size_t)(slash - base)} : u;
}

static void start_scrape(struct sl_scraper *s, const sl_model_cfg *m, sl_lb_model *lm, uint32_t ti)
{
    const sl_provider_cfg *p = m->targets[ti].provider;
    scrape *sc = sl_calloc(1, sizeof *sc);
    if (!sc) return;
    sc->s = s;
    atomic_fetch_add(&lm->refs, 1);
    sc->lm = lm;
    sc->ti = ti;
    sl_arena_init(&sc->arena, 1024, 1u << 20);
    sl_buf_init(&sc->body, MAX_BODY);
    sc->next = s->live;
    if (s->live) s->live->prev = sc;
    s->live = sc;
    const char *path = sl_lb_metrics_path(m);
    sl_str origin = origin_of(p->base_url);
    char *url = sl_arena_printf(&sc->arena, "%.*s%s%s", SL_STR_FMT(origin), path[0] == '/' ? "" : "/", path);
    sl_provider_call call;
    const char *key = p->napi_keys ? p->api_keys[0] : NULL;
    if (!url || sl_provider_build_call(p, SL_CALL_CHAT, SL_STR("metrics"), false, key, &sc->arena, &call) != SL_OK) {
        scrape_free(sc);
        return;
    }
    size_t nh = 0; /* the provider's auth and extra headers; a GET has no content-type */
    for (size_t i = 0; i < call.nheaders; i++)
        if (!sl_str_case_eq(call.headers[i].name, SL_STR("content-type"))) call.headers[nh++] = call.headers[i];
    sl_up_request req = {
        .method = "GET",
        .url = url,
        .headers = call.headers,
        .nheaders = nh,
        .connect_timeout_ms = m->metrics.timeout_ms,
        .first_byte_timeout_ms = m->metrics.timeout_ms,
        .total_timeout_ms = m->metrics.timeout_ms,
    };
    sc->q = sl_upstream_start(s->gw->w->upstream, &req, &scrape_cb, sc);
    if (!sc->q) scrape_free(sc);
}

static void on_tick(uv_timer_t *t)
{
    struct sl_scraper *s = t->data;
    sl_balancer *b = &s->gw->bal;
    if (!s->cfg || !s->gw->w->upstream || s->gw->w->stopping || b->cfg != s->cfg || !b->lbm) return;
    uint64_t now = now_ms();
    for (size_t mi = 0; mi < s->cfg->nmodels; mi++) {
        const sl_model_cfg *m = &s->cfg->models[mi];
        sl_lb_model *lm = b->lbm[mi];
        if (!lm || !sl_lb_uses_metrics(m)) continue;
        for (uint32_t ti = 0; ti < lm->ntargets; ti++) {
            uint64_t next = atomic_load_explicit(&lm->t[ti].next_scrape_ms, memory_order_relaxed);
            if (now < next) continue;
            /* one worker per target and interval: the one whose swap succeeds */
            if (!atomic_compare_exchange_strong(&lm->t[ti].next_scrape_ms, &next, now + m->metrics.interval_ms))
                continue;
            start_scrape(s, m, lm, ti);
        }
    }
}

struct sl_scraper *sl_scraper_new(sl_gw_worker *gw)
{
    struct sl_scraper *s = sl_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->gw = gw;
    uv_timer_init(&gw->w->loop, &s->tick);
    s->tick.data = s;
    return s;
}

void sl_scraper_configure(struct sl_scraper *s, sl_config *cfg)
{
    if (!s || s->cfg == cfg) return;
    if (s->cfg) sl_config_release(s->cfg);
    s->cfg = sl_config_retain(cfg);
    bool any = false;
    for (size_t i = 0; i < cfg->nmodels; i++) any |= sl_lb_uses_metrics(&cfg->models[i]);
    /* scrapes of the old snapshot finish on their own: they write to state that outlives them */
    if (any) uv_timer_start(&s->tick, on_tick, 0, TICK_MS);
    else uv_timer_stop(&s->tick);
}

static void on_tick_closed(uv_handle_t *h) { sl_free(h->data); }

void sl_scraper_free(struct sl_scraper *s)
{
    if (!s) return;
    while (s->live) {
        if (s->live->q) sl_up_req_cancel(s->live->q);
        scrape_free(s->live);
    }
    uv_timer_stop(&s->tick);
    if (s->cfg) sl_config_release(s->cfg);
    s->cfg = NULL;
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
}
