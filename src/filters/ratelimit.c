/*
 * ratelimit.c: per-consumer limits and budgets (SPEC §5).
 *
 * Before the call (on_request): the request's input tokens are estimated
 * from its body (ceil(bytes / 4): JSON syntax makes this an over-estimate of
 * the prompt for typical text) and priced with the input price; one request,
 * the tokens and the cost are reserved in every window at once, in one atomic
 * step of the state backend, unless a limit would be passed (429). After the
 * call (on_done): the real usage (r->rec.usage, filled by the proxy for every
 * request, streamed or not) settles the reservation: the difference between
 * what was used and what was reserved is added to the same windows.
 *
 * Windows are fixed and aligned to UTC (clock minute, clock hour, UTC day,
 * calendar month). Within one window, admitted tokens never exceed the limit
 * by more than what the requests in flight use beyond their reservation
 * (mostly their output). Across a window boundary, a burst at the end of one
 * window and one at the start of the next can together reach twice the limit
 * within a minute: that is the fixed window's worst case, accepted for its
 * cost (one counter per window, one script per check) and for being what
 * budgets mean ("per day", "per month").
 *
 * Consumers without limits are not checked (no wait before the call); their
 * usage is still recorded after it, so the usage API reports everyone.
 *
 * MCP requests (sl_ratelimit_requests, called by src/mcp/host.c before it
 * dispatches a POST) reserve their count in the same request windows, with
 * the same rule and backend, and nothing else: they have no tokens or cost.
 */
#include <math.h>
#include <stdio.h>

#include "core/log.h"
#include "filters/governance.h"
#include "gateway/metrics.h"
#include "state/state.h"

typedef struct rl_req {
    sl_gw_req *r;
    sl_state_op *op;
    bool in_call;       /* inside sl_state_reserve (the memory backend answers before it returns) */
    bool answered;
    bool reserved;      /* a reservation to settle */
    bool record;        /* no reservation: record the usage after the call */
    bool aborted;
    sl_reserve q;
    sl_reserve_result res;
} rl_req;

int64_t sl_ratelimit_estimate_tokens(size_t body_bytes)
{
    int64_t t = (int64_t)((body_bytes + 3) / 4);
    return t > 0 ? t : 1;
}

double sl_ratelimit_cost_usd(const sl_price_cfg *p, const sl_usage *u)
{
    if (!p || !u) return 0;
    int64_t cached = SL_MIN(SL_MAX(u->cached_tokens, 0), SL_MAX(u->input_tokens, 0));
    int64_t fresh = SL_MAX(u->input_tokens, 0) - cached;
    double cached_price = p->cached_input >= 0 ? p->cached_input : p->input;
    return ((double)fresh * p->input + (double)cached * cached_price + (double)SL_MAX(u->output_tokens, 0) * p->output) /
           1e6;
}

void sl_ratelimit_format_reset(int64_t ms, char *out, size_t n)
{
    if (ms < 0) ms = 0;
    if (ms < 1000) {
        snprintf(out, n, "%lldms", (long long)ms);
        return;
    }
    int64_t s = (ms + 999) / 1000, h = s / 3600, m = (s % 3600) / 60;
    s %= 60;
    if (h) snprintf(out, n, "%lldh%lldm%llds", (long long)h, (long long)m, (long long)s);
    else if (m) snprintf(out, n, "%lldm%llds", (long long)m, (long long)s);
    else snprintf(out, n, "%llds", (long long)s);
}

static int64_t to_nano(double usd)
{
    double v = usd * SL_NANO_USD;
    return v <= 0 ? 0 : v >= 9e18 ? INT64_MAX : (int64_t)llround(v);
}

/* Price of the request's model: the target's upstream name first (what is billed), then the public name. */
static const sl_price_cfg *price_of(const sl_gw_req *r)
{
    const sl_price_cfg *p = r->rec.upstream_model.n ? sl_config_find_price(r->cfg, r->rec.upstream_model) : NULL;
    if (!p && r->mcfg && r->mcfg->ntargets && r->mcfg->targets[0].model)
        p = sl_config_find_price(r->cfg, sl_str_from_cstr(r->mcfg->targets[0].model));
    return p ? p : sl_config_find_price(r->cfg, r->model);
}

/* The worker's state handle, opened (or reopened after a reload changed `state`) on first use. */

/* ---- limits and headers -------------------------------------------------- */

static void load_limits(sl_reserve *q, const sl_consumer_limits_cfg *l)
{
    memset(q->limit, 0, sizeof q->limit);
    q->limit[SL_MET_REQUESTS][SL_WIN_MINUTE] = (int64_t)l->requests_per_minute;
    q->limit[SL_MET_REQUESTS][SL_WIN_HOUR] = (int64_t)l->requests_per_hour;
    q->limit[SL_MET_REQUESTS][SL_WIN_DAY] = (int64_t)l->requests_per_day;
    q->limit[SL_MET_TOKENS][SL_WIN_MINUTE] = (int64_t)l->tokens_per_minute;
    q->limit[SL_MET_TOKENS][SL_WIN_HOUR] = (int64_t)l->tokens_per_hour;
    q->limit[SL_MET_TOKENS][SL_WIN_DAY] = (int64_t)l->tokens_per_day;
    q->limit[SL_MET_COST][SL_WIN_DAY] = to_nano(l->budget_usd_per_day);
    q->limit[SL_MET_COST][SL_WIN_MONTH] = to_nano(l->budget_usd_per_month);
}

static const char *limit_name(int m, int w)
{
    static const char *const names[SL_MET_COUNT][SL_WIN_COUNT] = {
        {"requests_per_minute", "requests_per_hour", "requests_per_day", "requests_per_month"},
        {"tokens_per_minute", "tokens_per_hour", "tokens_per_day", "tokens_per_month"},
        {"budget_usd_per_minute", "budget_usd_per_hour", "budget_usd_per_day", "budget_usd_per_month"},
    };
    return m >= 0 && m < SL_MET_COUNT && w >= 0 && w < SL_WIN_COUNT ? names[m][w] : "unknown";
}

static void add_header(sl_gw_req *r, const char *name, char *value)
{
    if (value && r->nextra_headers < SL_ARRAY_LEN(r->extra_headers))
        r->extra_headers[r->nextra_headers++] = (sl_http_header){sl_str_from_cstr(name), sl_str_from_cstr(value)};
}

static int64_t reset_ms(const rl_req *q, int w)
{
    return sl_window_end_ms((sl_window)w, q->res.counts.window_id[w]) - q->q.now_ms;
}

/* x-ratelimit-{limit,remaining,reset}-{requests,tokens}: for the window of each kind with the least left. */
static void add_ratelimit_headers(rl_req *q)
{
    static const char *const suffix[2] = {"requests", "tokens"};
    sl_arena *a = &q->r->hx->arena;
    for (int m = 0; m < 2; m++) {
        int best = -1;
        int64_t best_left = 0;
        for (int w = 0; w < SL_WIN_COUNT; w++) {
            int64_t lim = q->q.limit[m][w];
            if (!lim) continue;
            int64_t left = SL_MAX(lim - q->res.counts.v[m][w], 0);
            if (best < 0 || left < best_left) best = w, best_left = left;
        }
        if (best < 0) continue;
        char reset[32];
        sl_ratelimit_format_reset(reset_ms(q, best), reset, sizeof reset);
        char name[48];
        snprintf(name, sizeof name, "x-ratelimit-limit-%s", suffix[m]);
        add_header(q->r, sl_arena_strndup(a, name, strlen(name)),
                   sl_arena_printf(a, "%lld", (long long)q->q.limit[m][best]));
        snprintf(name, sizeof name, "x-ratelimit-remaining-%s", suffix[m]);
        add_header(q->r, sl_arena_strndup(a, name, strlen(name)), sl_arena_printf(a, "%lld", (long long)best_left));
        snprintf(name, sizeof name, "x-ratelimit-reset-%s", suffix[m]);
        add_header(q->r, sl_arena_strndup(a, name, strlen(name)), sl_arena_strndup(a, reset, strlen(reset)));
    }
}

/*
 * A refusal's retry-after header, metric and message (into msg); true when
 * the limit that refused is a budget. Shared by the LLM endpoints and MCP.
 */
static bool refusal(rl_req *q, char *msg, size_t cap)
{
    sl_gw_req *r = q->r;
    int m = q->res.denied_metric, w = q->res.denied_window;
    int64_t wait_ms = reset_ms(q, w >= 0 ? w : 0);
    add_header(r, "retry-after", sl_arena_printf(&r->hx->arena, "%lld", (long long)SL_MAX((wait_ms + 999) / 1000, 1)));
    const char *lname = limit_name(m, w);
    sl_metrics_ratelimit_rejected(r->gw->w, r->rec.consumer, lname);
    char reset[32];
    sl_ratelimit_format_reset(wait_ms, reset, sizeof reset);
    if (m == SL_MET_COST) {
        snprintf(msg, cap, "Budget reached for consumer '%.*s' (%s: %.2f USD, spent %.6f USD). Try again in %s.",
                 SL_STR_FMT(r->rec.consumer), lname, (double)q->q.limit[m][w] / SL_NANO_USD,
                 (double)q->res.counts.v[m][w] / SL_NANO_USD, reset);
        return true;
    }
    snprintf(msg, cap, "Rate limit reached for consumer '%.*s' on %s: limit %lld, used %lld, requested %lld. Try again in %s.",
             SL_STR_FMT(r->rec.consumer), lname, (long long)q->q.limit[m][w], (long long)q->res.counts.v[m][w],
             (long long)q->q.amount[m], reset);
    return false;
}

static int refuse(rl_req *q)
{
    char msg[512];
    bool budget = refusal(q, msg, sizeof msg);
    sl_gw_error(q->r, 429, "rate_limit_error", budget ? "budget_exceeded" : "rate_limit_exceeded", "%s", msg);
    return SL_FILTER_DONE;
}

/* The backend could not answer: logged and counted; true when state.redis.on_error is deny. */
static bool backend_denies(sl_gw_req *r, sl_state *st, int err)
{
    bool deny = st && sl_state_on_error(st) == SL_ON_ERROR_DENY;
    const char *backend = st ? sl_state_backend_name(st) : "none";
    sl_metrics_state_error(r->gw->w, backend, deny ? "deny" : "allow");
    sl_debug("limits for consumer %.*s not checked (%s: %s); on_error=%s", SL_STR_FMT(r->rec.consumer), backend,
             sl_strerror(err), deny ? "deny" : "allow");
    return deny;
}

/* The backend could not answer: state.redis.on_error decides (503, or through unchecked). */
static int backend_failed(rl_req *q, sl_state *st, int err)
{
    sl_gw_req *r = q->r;
    if (backend_denies(r, st, err)) {
        sl_gw_error(r, 503, "service_unavailable", NULL, "rate limit state is unavailable (%s); try again", sl_strerror(err));
        return SL_FILTER_DONE;
    }
    q->record = true; /* let it through, and still try to count what it uses */
    return SL_FILTER_NEXT;
}

static int decide(rl_req *q)
{
    if (q->res.err != SL_OK) return backend_failed(q, q->r->gw->state, q->res.err);
    add_ratelimit_headers(q);
    if (!q->res.admitted) return refuse(q);
    q->reserved = true;
    return SL_FILTER_NEXT;
}

static void on_reserved(void *ud, const sl_reserve_result *res)
{
    rl_req *q = ud;
    q->res = *res;
    q->answered = true;
    q->op = NULL;
    if (q->in_call) return; /* answered at once: rl_request goes on */
    sl_gw_req *r = q->r;
    r->wait_cancel = NULL;
    if (decide(q) == SL_FILTER_NEXT) sl_filter_resume(r);
}

/* The client went away while the check was in flight: stop waiting and finish (nothing to settle). */
static void rl_cancel(sl_gw_req *r)
{
    rl_req *q = r->limits;
    r->wait_cancel = NULL;
    if (!q) return;
    sl_state_cancel(q->op); /* the backend gives back a reservation admitted after this */
    q->op = NULL;
    q->aborted = true;
    r->rec.status = 499;
    sl_gw_finish(r);
}

static int rl_request(sl_gw_req *r)
{
    rl_req *q = sl_arena_calloc(&r->hx->arena, sizeof(*q));
    if (!q) {
        sl_gw_error(r, 503, "service_unavailable", NULL, "out of memory");
        return SL_FILTER_DONE;
    }
    q->r = r;
    r->limits = q;
    q->q.consumer = r->rec.consumer;
    q->q.now_ms = sl_state_now_ms();
    q->q.amount[SL_MET_REQUESTS] = 1;
    q->q.amount[SL_MET_TOKENS] = sl_ratelimit_estimate_tokens(r->hx->body.n);
    const sl_price_cfg *p = price_of(r);
    q->q.amount[SL_MET_COST] = p ? to_nano((double)q->q.amount[SL_MET_TOKENS] * p->input / 1e6) : 0;
    if (!r->consumer || !r->consumer->has_limits) {
        q->record = true;
        return SL_FILTER_NEXT;
    }
    load_limits(&q->q, &r->consumer->limits);
    sl_state *st = sl_gw_state(r);
    if (!st) return backend_failed(q, NULL, SL_ENOMEM);
    q->in_call = true;
    int rc = sl_state_reserve(st, &q->q, on_reserved, q, &q->op);
    q->in_call = false;
    if (rc != SL_OK) return backend_failed(q, st, rc);
    if (q->answered) return decide(q);
    r->wait_cancel = rl_cancel;
    return SL_FILTER_WAIT;
}

/*
 * The window ids of a moment, kept per thread for the current second: every
 * window boundary falls on a whole second, and the month's id costs a
 * gmtime_r, which the usage record of every request would otherwise pay.
 */
static void window_ids(int64_t now_ms, int64_t ids[SL_WIN_COUNT])
{
    static _Thread_local int64_t sec = -1, cached[SL_WIN_COUNT];
    if (now_ms >= 0 && now_ms / 1000 == sec) {
        memcpy(ids, cached, sizeof cached);
        return;
    }
    for (int w = 0; w < SL_WIN_COUNT; w++) ids[w] = sl_window_id((sl_window)w, now_ms);
    if (now_ms >= 0) {
        sec = now_ms / 1000;
        memcpy(cached, ids, sizeof cached);
    }
}

/* After the call: the cost, and the settlement (or record) of what was used. */
static void rl_done(sl_gw_req *r)
{
    const sl_usage *u = &r->rec.usage;
    const sl_price_cfg *p = u->present ? price_of(r) : NULL;
    if (p) r->rec.cost_usd = sl_ratelimit_cost_usd(p, u);
    rl_req *q = r->limits;
    if (!q || q->aborted || (!q->reserved && !q->record)) return;
    int64_t tokens = u->present ? SL_MAX(u->input_tokens, 0) + SL_MAX(u->output_tokens, 0) : 0;
    int64_t cost = to_nano(r->rec.cost_usd);
    sl_settle s = {.consumer = r->rec.consumer};
    if (q->reserved) {
        memcpy(s.window_id, q->res.counts.window_id, sizeof s.window_id);
        s.delta[SL_MET_TOKENS] = tokens - q->q.amount[SL_MET_TOKENS];
        s.delta[SL_MET_COST] = cost - q->q.amount[SL_MET_COST];
    } else {
        window_ids(q->q.now_ms, s.window_id);
        s.delta[SL_MET_REQUESTS] = 1;
        s.delta[SL_MET_TOKENS] = tokens;
        s.delta[SL_MET_COST] = cost;
    }
    if (!s.delta[SL_MET_REQUESTS] && !s.delta[SL_MET_TOKENS] && !s.delta[SL_MET_COST]) return;
    sl_state *st = sl_gw_state(r);
    int rc = st ? sl_state_settle(st, &s) : SL_ENOMEM;
    if (rc != SL_OK) {
        sl_metrics_state_error(r->gw->w, st ? sl_state_backend_name(st) : "none", "settle");
        sl_debug("usage of consumer %.*s not recorded: %s", SL_STR_FMT(r->rec.consumer), sl_strerror(rc));
    }
}

const sl_filter sl_filter_ratelimit = {
    .name = "ratelimit",
    .on_request = rl_request,
    .on_done = rl_done,
};

/* ---- MCP: JSON-RPC requests against the request windows ------------------ */

struct sl_rl_wait {
    rl_req q;
    sl_rl_done_cb done;
    void *ud;
    sl_rl_wait **pending; /* the caller's handle, cleared when the answer comes */
};

static void mcp_answer(sl_rl_wait *w, int status, const char *limit, uint32_t retry_after_s, const char *msg)
{
    sl_rl_verdict v = {.status = status, .limit = limit, .retry_after_s = retry_after_s, .message = msg};
    w->done(w->ud, &v);
}

/* Counted without a check (no request limits, or the backend failed and on_error is allow). */
static void mcp_record(sl_rl_wait *w)
{
    sl_gw_req *r = w->q.r;
    sl_settle s = {.consumer = r->rec.consumer};
    window_ids(w->q.q.now_ms, s.window_id);
    s.delta[SL_MET_REQUESTS] = w->q.q.amount[SL_MET_REQUESTS];
    sl_state *st = sl_gw_state(r);
    int rc = st ? sl_state_settle(st, &s) : SL_ENOMEM;
    if (rc != SL_OK) {
        sl_metrics_state_error(r->gw->w, st ? sl_state_backend_name(st) : "none", "settle");
        sl_debug("mcp requests of consumer %.*s not recorded: %s", SL_STR_FMT(r->rec.consumer), sl_strerror(rc));
    }
}

static void mcp_backend_failed(sl_rl_wait *w, sl_state *st, int err)
{
    sl_gw_req *r = w->q.r;
    if (!backend_denies(r, st, err)) {
        mcp_record(w);
        mcp_answer(w, 0, NULL, 0, NULL);
        return;
    }
    add_header(r, "retry-after", "1");
    char *msg = sl_arena_printf(&r->hx->arena, "rate limit state is unavailable (%s); try again", sl_strerror(err));
    mcp_answer(w, 503, NULL, 1, msg ? msg : "rate limit state is unavailable");
}

static void mcp_decide(sl_rl_wait *w)
{
    rl_req *q = &w->q;
    if (q->res.err != SL_OK) {
        mcp_backend_failed(w, q->r->gw->state, q->res.err);
        return;
    }
    add_ratelimit_headers(q);
    if (q->res.admitted) {
        mcp_answer(w, 0, NULL, 0, NULL);
        return;
    }
    char msg[512];
    refusal(q, msg, sizeof msg);
    int win = q->res.denied_window >= 0 ? q->res.denied_window : 0;
    int64_t wait_s = SL_MAX((reset_ms(q, win) + 999) / 1000, 1);
    char *m = sl_arena_strndup(&q->r->hx->arena, msg, strlen(msg));
    mcp_answer(w, 429, limit_name(q->res.denied_metric, q->res.denied_window), (uint32_t)SL_MIN(wait_s, 40 * 86400),
               m ? m : "Rate limit reached");
}

static void on_mcp_reserved(void *ud, const sl_reserve_result *res)
{
    sl_rl_wait *w = ud;
    w->q.res = *res;
    w->q.answered = true;
    w->q.op = NULL;
    if (w->q.in_call) return; /* answered at once: sl_ratelimit_requests goes on */
    if (w->pending && *w->pending == w) *w->pending = NULL;
    mcp_decide(w);
}

void sl_ratelimit_requests(sl_gw_req *r, int64_t n, sl_rl_done_cb done, void *ud, sl_rl_wait **pending)
{
    *pending = NULL;
    sl_rl_wait *w = sl_arena_calloc(&r->hx->arena, sizeof *w);
    if (!w) {
        sl_rl_verdict v = {.status = 503, .retry_after_s = 1, .message = "out of memory"};
        done(ud, &v);
        return;
    }
    w->done = done, w->ud = ud;
    rl_req *q = &w->q;
    q->r = r;
    q->q.consumer = r->rec.consumer;
    q->q.now_ms = sl_state_now_ms();
    q->q.amount[SL_MET_REQUESTS] = SL_MAX(n, 1);
    if (r->consumer && r->consumer->has_limits) load_limits(&q->q, &r->consumer->limits);
    /* Only the request windows: MCP uses no tokens and costs nothing, and a spent budget does not stop tools. */
    memset(q->q.limit[SL_MET_TOKENS], 0, sizeof q->q.limit[SL_MET_TOKENS]);
    memset(q->q.limit[SL_MET_COST], 0, sizeof q->q.limit[SL_MET_COST]);
    bool limited = false;
    for (int win = 0; win < SL_WIN_COUNT; win++) limited |= q->q.limit[SL_MET_REQUESTS][win] > 0;
    if (!limited) {
        mcp_record(w);
        mcp_answer(w, 0, NULL, 0, NULL);
        return;
    }
    sl_state *st = sl_gw_state(r);
    if (!st) {
        mcp_backend_failed(w, NULL, SL_ENOMEM);
        return;
    }
    q->in_call = true;
    int rc = sl_state_reserve(st, &q->q, on_mcp_reserved, w, &q->op);
    q->in_call = false;
    if (rc != SL_OK) {
        mcp_backend_failed(w, st, rc);
        return;
    }
    if (q->answered) {
        mcp_decide(w);
        return;
    }
    w->pending = pending;
    *pending = w;
}

void sl_ratelimit_requests_cancel(sl_rl_wait **pending)
{
    sl_rl_wait *w = *pending;
    if (!w) return;
    *pending = NULL;
    w->pending = NULL;
    sl_state_cancel(w->q.op); /* the backend gives back a reservation admitted after this; w lives in the arena */
    w->q.op = NULL;
}

/* ---- GET /admin/api/consumers/{name}/usage ------------------------------- */

static sl_state *admin_state;

typedef struct usage_call {
    sl_hx *hx;
    sl_state_op *op;
    const sl_consumer_cfg *consumer;
    sl_reserve limits;
    char name[80];
    int64_t now_ms;
    bool done;
} usage_call;

static void respond(sl_hx *hx, int status, sl_buf *body)
{
    static const sl_http_header ct[] = {{SL_STR("content-type"), SL_STR("application/json")}};
    sl_hx_respond(hx, status, ct, 1, body->p, body->len);
    sl_hx_finish(hx);
}

static void usage_json(usage_call *u, const sl_usage_counts *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "consumer"), sl_jw_cstr(&w, u->name);
    sl_jw_key(&w, "backend"), sl_jw_cstr(&w, admin_state ? sl_state_backend_name(admin_state) : "none");
    sl_jw_key(&w, "windows"), sl_jw_obj_begin(&w);
    for (int win = 0; win < SL_WIN_COUNT; win++) {
        sl_jw_key(&w, sl_window_name((sl_window)win)), sl_jw_obj_begin(&w);
        sl_jw_key(&w, "requests"), sl_jw_int(&w, c->v[SL_MET_REQUESTS][win]);
        sl_jw_key(&w, "tokens"), sl_jw_int(&w, c->v[SL_MET_TOKENS][win]);
        sl_jw_key(&w, "cost_usd"), sl_jw_double(&w, (double)c->v[SL_MET_COST][win] / SL_NANO_USD);
        int64_t end = sl_window_end_ms((sl_window)win, c->window_id[win]);
        sl_jw_key(&w, "reset_seconds"), sl_jw_int(&w, SL_MAX((end - u->now_ms + 999) / 1000, 0));
        sl_jw_key(&w, "limits"), sl_jw_obj_begin(&w);
        if (u->limits.limit[SL_MET_REQUESTS][win]) sl_jw_key(&w, "requests"), sl_jw_int(&w, u->limits.limit[SL_MET_REQUESTS][win]);
        if (u->limits.limit[SL_MET_TOKENS][win]) sl_jw_key(&w, "tokens"), sl_jw_int(&w, u->limits.limit[SL_MET_TOKENS][win]);
        if (u->limits.limit[SL_MET_COST][win])
            sl_jw_key(&w, "budget_usd"), sl_jw_double(&w, (double)u->limits.limit[SL_MET_COST][win] / SL_NANO_USD);
        sl_jw_obj_end(&w);
        sl_jw_obj_end(&w);
    }
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
}

static void on_usage(void *ud, int err, const sl_usage_counts *c)
{
    usage_call *u = ud;
    u->op = NULL;
    u->done = true;
    sl_buf body;
    sl_buf_init(&body, 1 << 20);
    if (err != SL_OK) {
        sl_buf_appendf(&body, "{\"error\":\"state backend unavailable: %s\"}", sl_strerror(err));
        respond(u->hx, 503, &body);
    } else {
        usage_json(u, c, &body);
        respond(u->hx, 200, &body);
    }
    sl_buf_free(&body);
}

static void on_usage_abort(sl_hx *hx, void *arg)
{
    usage_call *u = arg;
    if (u->done) return;
    u->done = true;
    sl_state_cancel(u->op);
    u->op = NULL;
    sl_hx_finish(hx);
}

static void respond_msg(sl_hx *hx, int status, const char *msg)
{
    sl_buf body;
    sl_buf_init(&body, 4096);
    sl_jw w;
    sl_jw_init(&w, &body);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "error"), sl_jw_cstr(&w, msg);
    sl_jw_obj_end(&w);
    respond(hx, status, &body);
    sl_buf_free(&body);
}

void sl_governance_usage_api(sl_hx *hx, uv_loop_t *loop, sl_config *cfg, sl_str name)
{
    const sl_consumer_cfg *c = sl_config_find_consumer(cfg, name);
    if (!c && !sl_str_eq_lit(name, "anonymous")) {
        respond_msg(hx, 404, "no such consumer");
        return;
    }
    if (!admin_state || !sl_state_same_config(admin_state, &cfg->state)) {
        sl_state *next = sl_state_open(loop, &cfg->state);
        if (next) {
            sl_state *old = admin_state;
            admin_state = next;
            sl_state_close(old);
        }
    }
    usage_call *u = sl_arena_calloc(&hx->arena, sizeof(*u));
    if (!u || !admin_state) {
        respond_msg(hx, 503, "out of memory");
        return;
    }
    u->hx = hx;
    u->consumer = c;
    u->now_ms = sl_state_now_ms();
    snprintf(u->name, sizeof u->name, "%.*s", (int)SL_MIN(name.n, 64), name.p);
    if (c) load_limits(&u->limits, &c->limits);
    sl_hx_on_abort(hx, on_usage_abort, u);
    int rc = sl_state_usage(admin_state, sl_str_from_cstr(u->name), u->now_ms, on_usage, u, &u->op);
    if (rc != SL_OK) {
        u->done = true;
        char msg[96];
        snprintf(msg, sizeof msg, "state backend unavailable: %s", sl_strerror(rc));
        respond_msg(hx, 503, msg);
    }
}

void sl_governance_admin_close(void)
{
    sl_state *old = admin_state;
    admin_state = NULL;
    sl_state_close(old);
}
