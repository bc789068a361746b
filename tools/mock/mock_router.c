/*
 * mock_router.c: the server's handler. Answers the read-back endpoints under
 * /mock/ itself; every other request is counted and recorded, gets its
 * x-mock-* knobs, is routed by path to a protocol builder (or an injected
 * error), then handed to admission.
 */
#include "mock.h"

typedef enum { EP_NONE = 0, EP_CHAT, EP_EMBED, EP_MODELS, EP_RESPONSES, EP_MESSAGES, EP_GEMINI } endpoint;

typedef struct route {
    endpoint ep;
    const sl_mock_proto *proto;
    sl_str model, action; /* Gemini: from the path */
    bool bad_method;
} route;

/* ---- knobs ---- */

bool sl_mock_fail_mode_parse(sl_str s, sl_mock_fail_mode *out)
{
    static const char *const names[] = {"reset", "event", "malformed", "stall"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        if (sl_str_case_eq(s, sl_str_from_cstr(names[i]))) {
            *out = (sl_mock_fail_mode)i;
            return true;
        }
    }
    return false;
}

static bool knob_u64(sl_str v, uint64_t max, uint64_t *out) { return sl_str_to_u64(v, max, out) == 0; }

static bool knob_fail_after(sl_str v, int64_t *out)
{
    uint64_t n;
    if (sl_str_eq_lit(v, "-1") || sl_str_case_eq(v, SL_STR("off"))) {
        *out = -1;
        return true;
    }
    if (!knob_u64(v, SL_MOCK_MAX_TOKENS, &n)) return false;
    *out = (int64_t)n;
    return true;
}

static bool knob_bool(sl_str v, bool *out)
{
    if (sl_str_eq_lit(v, "1") || sl_str_case_eq(v, SL_STR("true"))) return *out = true, true;
    if (sl_str_eq_lit(v, "0") || sl_str_case_eq(v, SL_STR("false"))) return *out = false, true;
    return false;
}

/* One x-mock-* header; name is without the prefix. Returns false on a bad value. */
static bool knob_one(sl_str name, sl_str v, sl_mock_knobs *k)
{
    uint64_t n = 0;
    bool ok = true;
#define IS(lit) sl_str_case_eq(name, SL_STR(lit))
    if (IS("ttft-ms")) ok = knob_u64(v, SL_MOCK_MAX_MS, &k->ttft_ms);
    else if (IS("itl-ms")) ok = knob_u64(v, SL_MOCK_MAX_MS, &k->itl_ms);
    else if (IS("delay-ms")) ok = knob_u64(v, SL_MOCK_MAX_MS, &k->delay_ms);
    else if (IS("tokens")) ok = knob_u64(v, SL_MOCK_MAX_TOKENS, &k->tokens);
    else if (IS("status")) ok = knob_u64(v, 599, &n) && n >= 200, k->status = ok ? (int)n : k->status;
    else if (IS("retry-after")) ok = knob_u64(v, 86400, &n), k->retry_after = ok ? (int64_t)n : -1;
    else if (IS("fail-after")) ok = knob_fail_after(v, &k->fail_after);
    else if (IS("fail-mode")) ok = sl_mock_fail_mode_parse(v, &k->fail_mode);
    else if (IS("tool-call")) k->tool_call = v;
    else if (IS("text")) k->text = v, k->has_text = true;
    else if (IS("echo")) ok = knob_bool(v, &k->echo);
#undef IS
    return ok;
}

int sl_mock_knobs_parse(const sl_http_request *req, const sl_mock_opts *o, sl_mock_knobs *k, const char **why)
{
    *k = (sl_mock_knobs){
        .ttft_ms = o->ttft_ms,
        .itl_ms = o->itl_ms,
        .tokens = o->tokens,
        .status = o->status,
        .retry_after = -1,
        .fail_after = o->fail_after,
        .fail_mode = o->fail_mode,
    };
    static const sl_str prefix = SL_STR("x-mock-");
    for (size_t i = 0; i < req->nheaders; i++) {
        sl_str name = req->headers[i].name;
        if (name.n <= prefix.n || !sl_str_case_eq((sl_str){name.p, prefix.n}, prefix)) continue;
        name.p += prefix.n, name.n -= prefix.n;
        if (!knob_one(name, req->headers[i].value, k)) {
            *why = "invalid x-mock-* header value";
            return SL_EINVAL;
        }
    }
    return SL_OK;
}

/* ---- per-key answers (--key-status) ---- */

bool sl_mock_key_rule_parse(sl_str s, sl_mock_key_rule *out)
{
    size_t eq = s.n;
    while (eq > 0 && s.p[eq - 1] != '=') eq--;
    if (eq < 2 || eq - 1 > SL_MOCK_MAX_KEY_LEN) return false; /* no '=', or an empty / overlong key */
    sl_str key = {s.p, eq - 1}, rest = {s.p + eq, s.n - eq};
    const char *colon = memchr(rest.p, ':', rest.n);
    sl_str st = colon ? (sl_str){rest.p, (size_t)(colon - rest.p)} : rest;
    uint64_t status, ra = 0;
    if (!knob_u64(st, 599, &status) || status < 400) return false;
    if (colon && !knob_u64((sl_str){colon + 1, rest.n - st.n - 1}, 86400, &ra)) return false;
    *out = (sl_mock_key_rule){key, (int)status, colon ? (int64_t)ra : -1};
    return true;
}

/* The value of `key=` in a query string, or an empty slice. */
static sl_str query_key(sl_str q)
{
    while (q.n) {
        const char *amp = memchr(q.p, '&', q.n);
        sl_str pair = {q.p, amp ? (size_t)(amp - q.p) : q.n};
        if (sl_str_starts_with(pair, SL_STR("key="))) return (sl_str){pair.p + 4, pair.n - 4};
        if (!amp) break;
        q.n -= pair.n + 1, q.p = amp + 1;
    }
    return SL_STR_NULL;
}

sl_str sl_mock_request_key(const sl_http_request *req)
{
    static const sl_str bearer = SL_STR("bearer ");
    for (size_t i = 0; i < req->nheaders; i++) {
        sl_str n = req->headers[i].name, v = sl_str_trim(req->headers[i].value);
        if (sl_str_case_eq(n, SL_STR("authorization"))) {
            if (v.n > bearer.n && sl_str_case_eq((sl_str){v.p, bearer.n}, bearer))
                return sl_str_trim((sl_str){v.p + bearer.n, v.n - bearer.n});
        } else if (sl_str_case_eq(n, SL_STR("x-api-key")) || sl_str_case_eq(n, SL_STR("x-goog-api-key"))) {
            if (v.n) return v;
        }
    }
    return query_key(req->query);
}

const sl_mock_key_rule *sl_mock_key_rule_find(const sl_mock_opts *o, const sl_http_request *req)
{
    if (!o->nkey_rules) return NULL;
    sl_str key = sl_mock_request_key(req);
    if (!key.n) return NULL;
    for (size_t i = 0; i < o->nkey_rules; i++)
        if (sl_str_eq(key, o->key_rules[i].key)) return &o->key_rules[i];
    return NULL;
}

/* What a provider says about a key it refuses, by status. */
static const char *key_message(int status)
{
    switch (status) {
    case 401: return "mock: invalid API key";
    case 403: return "mock: this API key may not use this endpoint";
    case 429: return "mock: rate limit reached for this API key";
    default: return "mock: injected status for this API key";
    }
}

/* ---- read-back endpoints ---- */

static void reply(sl_hx *hx, int status, sl_buf *b)
{
    sl_http_header h[] = {{SL_STR("content-type"), SL_STR("application/json")}};
    sl_hx_respond(hx, status, b ? h : NULL, b ? 1 : 0, b ? b->p : NULL, b ? b->len : 0);
    sl_hx_finish(hx);
}

static void control(sl_hx *hx)
{
    sl_str m = hx->req.method, p = hx->req.path;
    bool get = sl_str_eq_lit(m, "GET"), del = sl_str_eq_lit(m, "DELETE");
    sl_buf b;
    sl_buf_init(&b, SL_MOCK_MAX_OUT);
    if (sl_str_eq_lit(p, "/mock/requests") && (get || del)) {
        if (del) {
            sl_mock_records_clear();
            reply(hx, 204, NULL);
        } else {
            int rc = sl_mock_records_json(&b);
            reply(hx, rc ? 500 : 200, &b);
        }
    } else if (sl_str_eq_lit(p, "/mock/stats") && (get || del)) {
        if (del) {
            sl_mock_stats_reset();
            reply(hx, 204, NULL);
        } else {
            int rc = sl_mock_stats_json(&b);
            reply(hx, rc ? 500 : 200, &b);
        }
    } else if (sl_str_eq_lit(p, "/mock/health") && get) {
        sl_buf_append_cstr(&b, "{\"status\":\"ok\"}");
        reply(hx, 200, &b);
    } else {
        sl_buf_append_cstr(&b, "{\"error\":\"unknown mock control endpoint\"}");
        reply(hx, 404, &b);
    }
    sl_buf_free(&b);
}

/* ---- routing ---- */

/* "/v1beta/models/{model}:{action}" (also /v1/models/... on POST, Gemini's v1 surface). */
static bool gemini_path(sl_str p, sl_str *model, sl_str *action)
{
    sl_str pre[] = {SL_STR("/v1beta/models/"), SL_STR("/v1/models/")};
    for (size_t i = 0; i < SL_ARRAY_LEN(pre); i++) {
        if (!sl_str_starts_with(p, pre[i])) continue;
        sl_str rest = {p.p + pre[i].n, p.n - pre[i].n};
        const char *colon = memchr(rest.p, ':', rest.n);
        if (!colon || colon == rest.p || memchr(rest.p, '/', rest.n)) return false;
        *model = (sl_str){rest.p, (size_t)(colon - rest.p)};
        *action = (sl_str){colon + 1, rest.n - (size_t)(colon - rest.p) - 1};
        return true;
    }
    return false;
}

static route route_of(const sl_http_request *req)
{
    route rt = {.ep = EP_NONE, .proto = &sl_mock_proto_openai};
    sl_str p = req->path;
    bool post = sl_str_eq_lit(req->method, "POST");
    if (sl_str_eq_lit(p, "/v1/chat/completions")) rt.ep = EP_CHAT;
    else if (sl_str_eq_lit(p, "/v1/embeddings")) rt.ep = EP_EMBED;
    else if (sl_str_eq_lit(p, "/v1/responses")) rt.ep = EP_RESPONSES;
    else if (sl_str_eq_lit(p, "/v1/messages")) rt.ep = EP_MESSAGES, rt.proto = &sl_mock_proto_anthropic;
    else if (sl_str_eq_lit(p, "/v1/models")) rt.ep = EP_MODELS;
    else if (gemini_path(p, &rt.model, &rt.action)) rt.ep = EP_GEMINI, rt.proto = &sl_mock_proto_gemini;
    else if (sl_str_starts_with(p, SL_STR("/v1beta/"))) rt.proto = &sl_mock_proto_gemini;
    if (rt.ep == EP_MODELS) rt.bad_method = !sl_str_eq_lit(req->method, "GET");
    else if (rt.ep != EP_NONE) rt.bad_method = !post;
    return rt;
}

static void build(sl_mock_run *r, const route *rt)
{
    switch (rt->ep) {
    case EP_CHAT: sl_mock_openai_chat(r); break;
    case EP_EMBED: sl_mock_openai_embeddings(r); break;
    case EP_MODELS: sl_mock_openai_models(r); break;
    case EP_RESPONSES: sl_mock_openai_responses(r); break;
    case EP_MESSAGES: sl_mock_anthropic_messages(r); break;
    case EP_GEMINI: sl_mock_gemini(r, rt->model, rt->action); break;
    case EP_NONE: sl_mock_plan_error(r, 404, "mock: unknown endpoint"); break;
    }
}

void sl_mock_handle(sl_hx *hx, void *ctx)
{
    const sl_mock_opts *o = ctx;
    if (sl_mock_engine_on(o) && sl_str_eq_lit(hx->req.path, "/metrics") && sl_str_eq_lit(hx->req.method, "GET")) {
        sl_buf b;
        sl_buf_init(&b, 64u * 1024u);
        int rc = sl_mock_engine_metrics(&b);
        sl_http_header h[] = {{SL_STR("content-type"), SL_STR("text/plain; version=0.0.4")}};
        sl_hx_respond(hx, rc ? 500 : 200, h, 1, b.p, b.len);
        sl_hx_finish(hx);
        sl_buf_free(&b);
        return;
    }
    if (sl_str_starts_with(hx->req.path, SL_STR("/mock/"))) {
        control(hx);
        return;
    }
    uint64_t seq = sl_mock_next_id();
    sl_mock_stat_add(SL_MOCK_STAT_REQUESTS, 1);
    sl_mock_record(hx, seq);
    sl_mock_run *r = sl_mock_run_new(hx, o);
    if (!r) {
        reply(hx, 503, NULL);
        return;
    }
    r->seq = seq;
    route rt = route_of(&hx->req);
    r->proto = rt.proto;
    const char *why = NULL;
    const sl_mock_key_rule *kr = NULL;
    if (sl_mock_knobs_parse(&hx->req, o, &r->k, &why)) {
        sl_mock_plan_error(r, 400, why);
    } else if (rt.bad_method) {
        sl_mock_plan_error(r, 405, "mock: method not allowed");
    } else if (rt.ep != EP_NONE && (kr = sl_mock_key_rule_find(o, &hx->req))) {
        /* a provider checks the key before anything else in the request */
        if (kr->retry_after >= 0) r->k.retry_after = kr->retry_after;
        sl_mock_plan_error(r, kr->status, key_message(kr->status));
    } else if (rt.ep != EP_NONE && r->k.status >= 400) {
        char *msg = sl_arena_printf(&hx->arena, "mock: injected status %d", r->k.status);
        sl_mock_plan_error(r, r->k.status, msg ? msg : "mock: injected status");
    } else {
        build(r, &rt);
        if (!r->is_error) r->status = r->k.status;
    }
    sl_mock_admit(r);
}
