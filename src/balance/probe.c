/*
 * probe.c: active health checks. For every provider with health_check.path,
 * each worker sends GET base_url + path (with the provider's auth headers)
 * every interval_ms over its own upstream client. A 2xx answer within
 * timeout_ms is a success; anything else a failure; unhealthy_after failures
 * in a row take the provider out of service for this worker (every target on
 * it), one success brings it back (balance.h sl_bal_probe_result).
 *
 * Each worker probing on its own multiplies probes by the worker count, but
 * keeps the request path free of shared state, and checks the connections
 * that worker's requests will use.
 */
#include "balance/failover.h"

#include "core/log.h"
#include "gateway/gateway.h"
#include "providers/providers.h"

#define TICK_MS 100

typedef struct probe {
    sl_prober *pr;
    sl_config *cfg;       /* one reference: the provider below lives in it */
    const sl_provider_cfg *p;
    sl_up_req *q;
    sl_arena arena;       /* URL and headers */
    struct probe *prev, *next;
} probe;

struct sl_prober {
    sl_gw_worker *gw;
    uv_timer_t tick;
    sl_config *cfg;       /* one reference, or NULL */
    uint64_t *next_at;    /* per provider, ms */
    bool *busy;           /* a probe of that provider is in flight (of this snapshot) */
    size_t n;
    probe *live;
    bool any;             /* some provider has a health check */
};

static void probe_free(probe *pb)
{
    sl_prober *pr = pb->pr;
    if (pb->prev) pb->prev->next = pb->next;
    else pr->live = pb->next;
    if (pb->next) pb->next->prev = pb->prev;
    sl_arena_free(&pb->arena);
    sl_config_release(pb->cfg);
    sl_free(pb);
}

static int on_head(void *ud, int status, const sl_http_header *h, size_t n) { return SL_OK; }
static int on_data(void *ud, const char *p, size_t n) { return SL_OK; /* the body is not read */ }

static void on_done(void *ud, const sl_up_result *res)
{
    probe *pb = ud;
    sl_prober *pr = pb->pr;
    bool ok = res->error == SL_UP_OK && res->status >= 200 && res->status < 300;
    if (pr->cfg == pb->cfg) {
        pr->busy[pb->p->index] = false;
        bool was_down = atomic_load(&pr->gw->bal.providers[pb->p->index].probe_down);
        sl_bal_probe_result(&pr->gw->bal, pb->cfg, pb->p, ok);
        bool down = atomic_load(&pr->gw->bal.providers[pb->p->index].probe_down);
        if (down != was_down)
            sl_info("worker %d: provider %s is %s (health check %s: %s)", pr->gw->w->id, pb->p->name,
                    down ? "down" : "up again", pb->p->health_check.path,
                    res->error ? (res->detail ? res->detail : "error") : ok ? "ok" : "bad status");
    }
    probe_free(pb);
}

static const sl_up_callbacks probe_cb = {.on_head = on_head, .on_data = on_data, .on_done = on_done};

static void start_probe(sl_prober *pr, const sl_provider_cfg *p)
{
    probe *pb = sl_calloc(1, sizeof *pb);
    if (!pb) return;
    pb->pr = pr;
    pb->cfg = sl_config_retain(pr->cfg);
    pb->p = p;
    sl_arena_init(&pb->arena, 1024, 1u << 20);
    pb->next = pr->live;
    if (pr->live) pr->live->prev = pb;
    pr->live = pb;
    sl_provider_call call;
    const char *key = p->napi_keys ? p->api_keys[0] : NULL;
    char *url = sl_arena_printf(&pb->arena, "%s%s%s", p->base_url, p->health_check.path[0] == '/' ? "" : "/",
                                p->health_check.path);
    if (!url || sl_provider_build_call(p, SL_CALL_CHAT, SL_STR("probe"), false, key, &pb->arena, &call) != SL_OK) {
        probe_free(pb);
        return;
    }
    size_t nh = 0; /* every header but content-type: a GET has no body */
    for (size_t i = 0; i < call.nheaders; i++)
        if (!sl_str_case_eq(call.headers[i].name, SL_STR("content-type"))) call.headers[nh++] = call.headers[i];
    sl_up_request req = {
        .method = "GET",
        .url = url,
        .headers = call.headers,
        .nheaders = nh,
        .connect_timeout_ms = SL_MIN(p->timeouts.connect_ms, p->health_check.timeout_ms),
        .first_byte_timeout_ms = p->health_check.timeout_ms,
        .total_timeout_ms = p->health_check.timeout_ms,
    };
    pb->q = sl_upstream_start(pr->gw->w->upstream, &req, &probe_cb, pb);
    if (!pb->q) {
        probe_free(pb);
        return;
    }
    pr->busy[p->index] = true;
}

static void on_tick(uv_timer_t *t)
{
    sl_prober *pr = t->data;
    if (!pr->cfg || !pr->gw->w->upstream || pr->gw->w->stopping) return;
    uint64_t now = uv_hrtime() / 1000000ull;
    for (size_t i = 0; i < pr->n; i++) {
        const sl_provider_cfg *p = &pr->cfg->providers[i];
        if (!p->health_check.path || pr->busy[i] || now < pr->next_at[i]) continue;
        pr->next_at[i] = now + p->health_check.interval_ms;
        start_probe(pr, p);
    }
}

sl_prober *sl_prober_new(sl_gw_worker *gw)
{
    sl_prober *pr = sl_calloc(1, sizeof *pr);
    if (!pr) return NULL;
    pr->gw = gw;
    uv_timer_init(&gw->w->loop, &pr->tick);
    pr->tick.data = pr;
    return pr;
}

void sl_prober_configure(sl_prober *pr, sl_config *cfg)
{
    if (!pr || pr->cfg == cfg) return;
    size_t n = cfg->nproviders;
    uint64_t *next_at = sl_calloc(n ? n : 1, sizeof *next_at);
    bool *busy = sl_calloc(n ? n : 1, sizeof *busy);
    if (!next_at || !busy) {
        sl_free(next_at), sl_free(busy);
        sl_warn("worker %d: out of memory: health checks keep the previous configuration", pr->gw->w->id);
        return;
    }
    sl_free(pr->next_at), sl_free(pr->busy);
    if (pr->cfg) sl_config_release(pr->cfg);
    pr->cfg = sl_config_retain(cfg);
    pr->next_at = next_at, pr->busy = busy, pr->n = n;
    pr->any = false;
    for (size_t i = 0; i < n; i++) pr->any |= cfg->providers[i].health_check.path != NULL;
    /* probes of the old snapshot finish on their own and are not counted */
    if (pr->any) uv_timer_start(&pr->tick, on_tick, 0, TICK_MS);
    else uv_timer_stop(&pr->tick);
}

static void on_tick_closed(uv_handle_t *h) { sl_free(h->data); }

void sl_prober_free(sl_prober *pr)
{
    if (!pr) return;
    while (pr->live) {
        if (pr->live->q) sl_up_req_cancel(pr->live->q);
        probe_free(pr->live);
    }
    uv_timer_stop(&pr->tick);
    sl_free(pr->next_at), sl_free(pr->busy);
    if (pr->cfg) sl_config_release(pr->cfg);
    pr->cfg = NULL;
    uv_close((uv_handle_t *)&pr->tick, on_tick_closed);
}
