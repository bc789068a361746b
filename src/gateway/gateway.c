/*
 * gateway.c: the data plane's front: routing, request validation, model
 * resolution, target choice, errors in the caller's protocol, and the end of
 * every request (record, access log, metrics). The upstream part is proxy.c.
 */
#include "gateway/gateway.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"
#include "filters/filter.h"
#include "mcp/mcp.h"
#include "state/state.h"
#include "telemetry/telemetry.h"

/* ---------------------------------------------------------------- worker state */

int sl_gateway_worker_init(sl_worker *w)
{
    sl_gw_worker *gw = sl_calloc(1, sizeof(*gw));
    if (!gw) return SL_ENOMEM;
    gw->w = w;
    gw->rng = uv_hrtime() ^ ((uint64_t)(uintptr_t)w << 17) ^ 0x9e3779b97f4a7c15ull;
    if (sl_fo_worker_init(gw) != SL_OK) {
        sl_free(gw);
        return SL_ENOMEM;
    }
    w->gw = gw;
    sl_gateway_config_changed(w);
    return SL_OK;
}

void sl_gateway_worker_free(sl_worker *w)
{
    sl_gw_worker *gw = w->gw;
    if (!gw) return;
    sl_fo_worker_free(gw);
    sl_state *st = gw->state;
    gw->state = NULL;
    sl_state_close(st);
    sl_free(gw);
    w->gw = NULL;
}

/* Balancer, health and probe state is sized per snapshot (balance/balance.h carries health over by name). */
void sl_gateway_config_changed(sl_worker *w)
{
    sl_gw_worker *gw = w->gw;
    if (gw) sl_fo_config_changed(gw, w->config);
}

static uint64_t gw_rand(sl_gw_worker *gw)
{
    uint64_t x = gw->rng; /* xorshift64* */
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    gw->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/*
 * The worker's state-backend handle (limits, MCP sessions, shared balancer
 * state), opened on first use and reopened when a reload changed `state`.
 */
sl_state *sl_gw_state(sl_gw_req *r)
{
    sl_gw_worker *gw = r->gw;
    if (gw->state && sl_state_same_config(gw->state, &r->cfg->state)) return gw->state;
    sl_state *next = sl_state_open(&gw->w->loop, &r->cfg->state);
    if (!next) return gw->state; /* keep the old one rather than none */
    sl_state *old = gw->state;
    gw->state = next; /* first: closing answers the old handle's calls, whose callbacks may come back here */
    sl_state_close(old);
    return next;
}

/* ---------------------------------------------------------------- errors */

/* Builds an error body in protocol p (SPEC §3). */
void sl_gw_error_body(sl_proto p, int status, const char *type, const char *code, const char *msg, sl_buf *out)
{
    sl_xlat_error(p, status, type, code, sl_str_from_cstr(msg), out);
}

void sl_gw_common_headers(sl_gw_req *r, sl_http_header *h, size_t *n, size_t cap)
{
    if (*n < cap) h[(*n)++] = (sl_http_header){SL_STR("x-request-id"), sl_str_from_cstr(r->request_id)};
    if (r->rec.provider.n && *n < cap) h[(*n)++] = (sl_http_header){SL_STR("x-sluice-provider"), r->rec.provider};
    if (r->rec.upstream_model.n && *n < cap) h[(*n)++] = (sl_http_header){SL_STR("x-sluice-model"), r->rec.upstream_model};
    if (r->attempts && *n < cap) { /* decimal digits without printf: this is on every answer */
        char tmp[SL_DEC_MAX];
        sl_str a = sl_arena_str(&r->hx->arena, (sl_str){tmp, sl_u64_dec(tmp, r->attempts)});
        if (a.p) h[(*n)++] = (sl_http_header){SL_STR("x-sluice-attempts"), a};
    }
    for (size_t i = 0; i < r->nextra_headers && *n < cap; i++) h[(*n)++] = r->extra_headers[i];
}

static bool has_header(const sl_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_case_eq(h[i].name, sl_str_from_cstr(name))) return true;
    return false;
}

void sl_gw_error(sl_gw_req *r, int status, const char *type, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->rec.status = status;
    r->rec.error = sl_arena_str(&r->hx->arena, sl_str_from_cstr(msg));
    sl_buf body;
    sl_buf_init(&body, 0);
    sl_gw_error_body(r->in_proto, status, type, code, msg, &body);
    sl_http_header h[24] = {{SL_STR("content-type"), SL_STR("application/json")}};
    size_t n = 1;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h) - 1);
    if ((status == 429 || status == 503) && !has_header(h, n, "retry-after")) { /* a filter may have set its own */
        char *ra = r->retry_after_s > 1 ? sl_arena_printf(&r->hx->arena, "%u", r->retry_after_s) : NULL;
        h[n++] = (sl_http_header){SL_STR("retry-after"), ra ? sl_str_from_cstr(ra) : SL_STR("1")};
    }
    sl_hx_respond(r->hx, status, h, n, body.p, body.len);
    sl_buf_free(&body);
    sl_gw_finish(r);
}

/* ---------------------------------------------------------------- end of a request */

void sl_gw_finish(sl_gw_req *r)
{
    sl_worker *w = r->gw->w;
    r->rec.end_ns = uv_hrtime();
    if (!r->rec.status) r->rec.status = r->hx->status ? r->hx->status : 499;
    if (r->hx->aborted && !r->rec.error.n) r->rec.error = SL_STR("client closed the connection");
    r->rec.attempts = r->attempts;
    r->rec.request_id = sl_str_from_cstr(r->request_id);
    sl_fo_release(r); /* an open attempt ends without a verdict; a pending wait stops */
    sl_filters_run_done(r);
    sl_telemetry_finish(r); /* access log, metrics, spans */
    sl_buf_free(&r->up_body);
    sl_buf_free(&r->resp);
    sl_sse_free(&r->sse);
    sl_xlat_stream_free(r->xs);
    r->xs = NULL;
    sl_config_release(r->cfg);
    atomic_fetch_sub(&w->inflight, 1);
    sl_hx_finish(r->hx);
}

/* ---------------------------------------------------------------- routing */

static void make_request_id(sl_gw_req *r)
{
    const sl_http_header *h = sl_http_find_header(&r->hx->req, "x-request-id");
    if (h && h->value.n > 0 && h->value.n < sizeof r->request_id) {
        bool ok = true;
        for (size_t i = 0; i < h->value.n; i++) {
            unsigned char c = (unsigned char)h->value.p[i];
            if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') ok = false;
        }
        if (ok) {
            memcpy(r->request_id, h->value.p, h->value.n);
            r->request_id[h->value.n] = '\0';
            return;
        }
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {gw_rand(r->gw), gw_rand(r->gw)};
    for (int w = 0; w < 2; w++) /* most significant nibble first, from the end of each half */
        for (int i = 15; i >= 0; i--, v[w] >>= 4) r->request_id[w * 16 + i] = hex[v[w] & 15];
    r->request_id[32] = '\0';
}

typedef struct route {
    const char *method, *path;
    sl_api api;
    sl_proto proto;
    const char *name, *operation;
} route;

static const route routes[] = {
    {"POST", "/v1/chat/completions", SL_API_CHAT, SL_PROTO_OPENAI, "chat.completions", "chat"},
    {"POST", "/v1/embeddings", SL_API_EMBEDDINGS, SL_PROTO_OPENAI, "embeddings", "embeddings"},
    {"GET", "/v1/models", SL_API_MODELS, SL_PROTO_OPENAI, "models", "models"},
    {"POST", "/v1/responses", SL_API_RESPONSES, SL_PROTO_OPENAI, "responses", "chat"},
    {"POST", "/v1/messages", SL_API_MESSAGES, SL_PROTO_ANTHROPIC, "messages", "chat"},
};

static const route gemini_generate = {"POST", NULL, SL_API_GEMINI, SL_PROTO_GEMINI, "generateContent", "chat"};
static const route gemini_stream = {"POST", NULL, SL_API_GEMINI, SL_PROTO_GEMINI, "streamGenerateContent", "chat"};

/* Gemini puts the model and the call in the path: /v1beta/models/{model}:{generateContent|streamGenerateContent}. */
static const route *find_gemini_route(sl_str path, sl_str *model)
{
    sl_str prefix = SL_STR("/v1beta/models/");
    if (!sl_str_starts_with(path, prefix)) return NULL;
    sl_str rest = {path.p + prefix.n, path.n - prefix.n};
    const char *colon = memchr(rest.p, ':', rest.n);
    if (!colon || colon == rest.p) return NULL;
    *model = (sl_str){rest.p, (size_t)(colon - rest.p)};
    sl_str call = {colon + 1, rest.n - model->n - 1};
    if (sl_str_eq_lit(call, "generateContent")) return &gemini_generate;
    if (sl_str_eq_lit(call, "streamGenerateContent")) return &gemini_stream;
    return NULL;
}

static const route *find_route(sl_str method, sl_str path, bool *path_known, sl_str *path_model)
{
    *path_known = false;
    const route *g = find_gemini_route(path, path_model);
    if (g) {
        *path_known = true;
        return sl_str_eq_lit(method, "POST") ? g : NULL;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(routes); i++) {
        if (!sl_str_eq_lit(path, routes[i].path)) continue;
        *path_known = true;
        if (sl_str_eq_lit(method, routes[i].method)) return &routes[i];
    }
    return NULL;
}

static void on_client_abort(sl_hx *hx, void *arg);

static void handle_models(sl_gw_req *r)
{
    sl_buf out;
    sl_buf_init(&out, 0);
    sl_jw w;
    sl_jw_init(&w, &out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "object"), sl_jw_cstr(&w, "list");
    sl_jw_key(&w, "data"), sl_jw_arr_begin(&w);
    for (size_t i = 0; i < r->cfg->nmodels; i++) {
        const sl_model_cfg *m = &r->cfg->models[i];
        if (m->is_glob) continue; /* a pattern is not a model a client can list */
        if (!sl_consumer_allows_model(r->consumer, sl_str_from_cstr(m->name))) continue;
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "id"), sl_jw_cstr(&w, m->name);
        sl_jw_key(&w, "object"), sl_jw_cstr(&w, "model");
        sl_jw_key(&w, "created"), sl_jw_int(&w, 0);
        sl_jw_key(&w, "owned_by"), sl_jw_cstr(&w, m->ntargets ? m->targets[0].provider->name : "sluice");
        sl_jw_obj_end(&w);
    }
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    sl_http_header h[24] = {{SL_STR("content-type"), SL_STR("application/json")}};
    size_t n = 1;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = 200;
    sl_hx_respond(r->hx, 200, h, n, out.p, out.len);
    sl_buf_free(&out);
    sl_gw_finish(r);
}

static bool parse_body(sl_gw_req *r)
{
    size_t err_off = 0;
    sl_json_limits lim = {.max_depth = 128, .max_tokens = 0};
    int rc = sl_json_parse(&r->doc, r->hx->body.p, r->hx->body.n, &r->hx->arena, &lim, &err_off);
    if (rc == SL_ENOMEM) {
        sl_gw_error(r, 503, "service_unavailable", NULL, "out of memory");
        return false;
    }
    if (rc != SL_OK) {
        sl_gw_error(r, 400, "invalid_request_error", NULL, "request body is not valid JSON (at byte %zu)", err_off);
        return false;
    }
    if (sl_json_type_of(&r->doc, 0) != SL_JSON_OBJECT) {
        sl_gw_error(r, 400, "invalid_request_error", NULL, "request body must be a JSON object");
        return false;
    }
    return true;
}

static bool resolve_model(sl_gw_req *r, sl_str path_model)
{
    if (r->in_proto == SL_PROTO_GEMINI) {
        r->model_tok = -1;
        r->model = path_model;
    } else {
        int nmodel = 0; /* one walk finds the member and counts its duplicates */
        r->model_tok = sl_json_obj_get_counted(&r->doc, 0, SL_STR("model"), &nmodel);
        if (r->model_tok < 0 || sl_json_type_of(&r->doc, r->model_tok) != SL_JSON_STRING ||
            sl_json_str(&r->doc, r->model_tok, &r->hx->arena, &r->model) != SL_OK || r->model.n == 0) {
            sl_gw_error(r, 400, "invalid_request_error", NULL, "you must provide a model parameter");
            return false;
        }
        /* Two "model" members could route on one and bill or run on the other: refuse. */
        if (nmodel != 1) {
            sl_gw_error(r, 400, "invalid_request_error", NULL, "the request names 'model' more than once");
            return false;
        }
    }
    r->rec.model = r->model;
    r->mcfg = sl_config_find_model(r->cfg, r->model);
    if (!r->mcfg) {
        sl_gw_error(r, 404, "invalid_request_error", "model_not_found", "The model '%.*s' does not exist",
                    (int)SL_MIN(r->model.n, 200), r->model.p);
        return false;
    }
    return true;
}

/* Chat-style requests of every protocol: the conversation must be there; note stream and usage flags. */
static bool validate_chat(sl_gw_req *r, const route *rt)
{
    const char *field = r->in_proto == SL_PROTO_GEMINI ? "contents" : "messages";
    if (r->api != SL_API_RESPONSES) {
        int msgs = sl_json_obj_get(&r->doc, 0, field);
        if (msgs < 0 || sl_json_type_of(&r->doc, msgs) != SL_JSON_ARRAY) {
            sl_gw_error(r, 400, "invalid_request_error", NULL, "'%s' is a required property and must be an array", field);
            return false;
        }
    }
    sl_xlat_req_opts o = {.stream = rt == &gemini_stream};
    sl_xlat_req_info info;
    if (sl_xlat_request_info(r->in_proto, &r->doc, &o, &info) != SL_OK) {
        sl_gw_error(r, 400, "invalid_request_error", NULL, "the request body is not a valid %s request",
                    sl_proto_name(r->in_proto));
        return false;
    }
    r->stream = info.stream;
    r->caller_wants_usage = info.include_usage;
    return true;
}

static bool validate_embeddings(sl_gw_req *r)
{
    int in = sl_json_obj_get(&r->doc, 0, "input");
    if (in < 0) {
        sl_gw_error(r, 400, "invalid_request_error", NULL, "'input' is a required property");
        return false;
    }
    return true;
}

void sl_gateway_handle(sl_hx *hx, void *worker)
{
    sl_worker *w = worker;
    sl_gw_req *r = sl_arena_alloc(&hx->arena, sizeof(*r));
    if (r) memset(r, 0, offsetof(sl_gw_req, request_id)); /* the rest is written before it is read */
    if (!r) {
        static const sl_http_header none[1];
        sl_hx_respond(hx, 503, none, 0, NULL, 0);
        sl_hx_finish(hx);
        return;
    }
    r->hx = hx;
    r->gw = w->gw;
    r->cfg = sl_config_retain(w->config);
    r->in_proto = SL_PROTO_OPENAI;
    r->rec.start_ns = hx->start_ns;
    r->rec.consumer = SL_STR("anonymous");
    sl_buf_init(&r->up_body, 0);
    sl_buf_init(&r->resp, 64u << 20);
    sl_sse_init(&r->sse, 8u << 20);
    atomic_fetch_add(&w->inflight, 1);
    make_request_id(r);
    sl_telemetry_begin(r);
    sl_hx_on_abort(hx, on_client_abort, r);

    if (sl_str_starts_with(hx->req.path, SL_STR("/mcp/"))) {
        sl_mcp_handle(r); /* MCP speaks JSON-RPC, not an LLM protocol: src/mcp/ */
        return;
    }
    bool known = false;
    sl_str path_model = SL_STR_NULL;
    const route *rt = find_route(hx->req.method, hx->req.path, &known, &path_model);
    if (!rt) {
        r->rec.api = "unknown";
        if (known) sl_gw_error(r, 405, "invalid_request_error", NULL, "method %.*s not allowed here", SL_STR_FMT(hx->req.method));
        else sl_gw_error(r, 404, "invalid_request_error", "unknown_url", "Unknown request URL: %.*s %.*s",
                         SL_STR_FMT(hx->req.method), (int)SL_MIN(hx->req.path.n, 200), hx->req.path.p);
        return;
    }
    r->api = rt->api;
    r->in_proto = rt->proto;
    r->rec.api = rt->name;
    r->rec.operation = rt->operation;
    if (sl_filters_run_head(r) != SL_FILTER_NEXT) return;
    if (rt->api == SL_API_MODELS) {
        handle_models(r);
        return;
    }
    if (!parse_body(r) || !resolve_model(r, path_model)) return;
    if (rt->api != SL_API_EMBEDDINGS && !validate_chat(r, rt)) return;
    if (rt->api == SL_API_EMBEDDINGS && !validate_embeddings(r)) return;
    r->rec.stream = r->stream;
    sl_filters_run_request(r);
}

static void on_client_abort(sl_hx *hx, void *arg)
{
    sl_gw_req *r = arg;
    if (r->up) {
        /* at once: the provider stops generating (and billing) for nobody */
        sl_up_req_cancel(r->up);
        r->up = NULL;
        r->rec.status = r->client_head_sent ? r->rec.status : 499;
        sl_gw_finish(r);
    } else if (r->wait_cancel) {
        r->wait_cancel(r); /* a filter was waiting (e.g. for Redis): it stops and finishes the request */
    } else if (sl_fo_cancel_wait(r)) { /* between two attempts (backoff or retry-after) */
        r->rec.status = 499;
        sl_gw_finish(r);
    }
    /* Otherwise the request is finishing on its own path. */
}
