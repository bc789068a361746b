/*
 * upcall.c: one JSON-RPC exchange with an upstream MCP server (upcall.h),
 * over Streamable HTTP or the legacy HTTP+SSE transport.
 */
#include <stdio.h>

#include "core/log.h"
#include "http/sse.h"
#include "mcp/mcp_int.h"
#include "mcp/upcall.h"

#define UP_MAX_HEADERS 72
#define LEGACY_INIT_ID "\"sluice-init\""

struct mcp_up {
    sl_upstream *u;
    const sl_mcp_upstream_cfg *cfg;
    mcp_up_cbs cbs;
    void *ud;
    sl_up_req *req;               /* streamable: the POST; legacy: the event stream */
    sl_up_req *posts[3];          /* legacy: initialize, initialized, the message */
    sl_http_header h[UP_MAX_HEADERS];
    size_t nh;
    sl_buf strings;               /* header values and the like (stable: reserved once) */
    sl_buf body;
    sl_buf json;                  /* a JSON (not event stream) answer */
    sl_buf endpoint;              /* legacy: where to POST */
    sl_buf want_id;               /* legacy: the answer that ends the exchange */
    sl_buf bodies[3];             /* legacy: POST bodies (must outlive their requests) */
    struct post_ctx {
        struct mcp_up *q;
        int slot;
    } pctx[3];
    sl_sse_parser sse;
    char method[8];
    char version[16];
    char sid[160];
    const char *request_id;
    int status;
    bool is_sse, legacy, finished, too_large;
    /*
     * While the SSE parser runs our callbacks it must not be freed: an end
     * reached inside a callback is carried out once sl_sse_feed returns.
     */
    bool in_feed, done_pending, free_pending;
    const char *pending_err;
    int lphase;                   /* legacy: 0 waiting for endpoint, 1 initialize sent, 2 message sent */
};

static void up_free(mcp_up *q)
{
    sl_buf_free(&q->strings);
    sl_buf_free(&q->body);
    sl_buf_free(&q->json);
    sl_buf_free(&q->endpoint);
    sl_buf_free(&q->want_id);
    for (int i = 0; i < 3; i++) sl_buf_free(&q->bodies[i]);
    sl_sse_free(&q->sse);
    sl_free(q);
}

static void cancel_all(mcp_up *q)
{
    if (q->req) sl_up_req_cancel(q->req);
    q->req = NULL;
    for (int i = 0; i < 3; i++) {
        if (q->posts[i]) sl_up_req_cancel(q->posts[i]);
        q->posts[i] = NULL;
    }
}

static void deliver_done(mcp_up *q, const char *err)
{
    mcp_up_cbs cbs = q->cbs;
    void *ud = q->ud;
    char sid[160];
    memcpy(sid, q->sid, sizeof sid);
    int status = q->status;
    up_free(q);
    cbs.on_done(ud, status, sl_str_from_cstr(sid), err);
}

/* Ends the exchange once: callbacks, then free (deferred while the SSE parser runs). */
static void finish(mcp_up *q, const char *err)
{
    if (q->finished) return;
    q->finished = true;
    cancel_all(q);
    if (q->in_feed) {
        q->done_pending = true;
        q->pending_err = err;
        return;
    }
    deliver_done(q, err);
}

void mcp_up_cancel(mcp_up *q)
{
    if (!q || (q->finished && !q->done_pending)) return;
    q->finished = true;
    cancel_all(q);
    if (q->in_feed) { /* no callback any more; freed when the parser returns */
        q->done_pending = false;
        q->free_pending = true;
        return;
    }
    up_free(q);
}

/* Feeds the SSE parser, then carries out an end that a callback reached. */
static int feed(mcp_up *q, const char *p, size_t n, sl_sse_event_cb cb)
{
    q->in_feed = true;
    int rc = sl_sse_feed(&q->sse, p, n, cb, q);
    q->in_feed = false;
    if (q->done_pending) {
        q->done_pending = false;
        deliver_done(q, q->pending_err);
        return SL_OK; /* the transfer was cancelled: curl stops it */
    }
    if (q->free_pending) {
        up_free(q);
        return SL_OK;
    }
    return rc == SL_OK || rc == 1 ? SL_OK : rc;
}

/* Keeps s in q->strings (reserved up front so earlier slices stay valid). */
static sl_str keep(mcp_up *q, sl_str s)
{
    if (q->strings.cap - q->strings.len < s.n + 1) return SL_STR_NULL;
    char *p = q->strings.p + q->strings.len;
    memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    q->strings.len += s.n + 1;
    return (sl_str){p, s.n};
}

static void add_header(mcp_up *q, const char *name, sl_str value)
{
    sl_str v = keep(q, value);
    if (v.p && q->nh < UP_MAX_HEADERS) q->h[q->nh++] = (sl_http_header){sl_str_from_cstr(name), v};
}

static void base_headers(mcp_up *q, bool post)
{
    q->nh = 0;
    for (size_t i = 0; i < q->cfg->nheaders && q->nh < UP_MAX_HEADERS - 6; i++) {
        sl_str v = keep(q, sl_str_from_cstr(q->cfg->headers[i].value));
        if (v.p) q->h[q->nh++] = (sl_http_header){sl_str_from_cstr(q->cfg->headers[i].key), v};
    }
    if (post) add_header(q, "content-type", SL_STR("application/json"));
    add_header(q, "accept", post ? SL_STR("application/json, text/event-stream") : SL_STR("text/event-stream"));
    if (q->request_id) add_header(q, "x-request-id", sl_str_from_cstr(q->request_id));
}

static void emit(mcp_up *q, sl_str msg)
{
    if (!q->finished && msg.n) q->cbs.on_msg(q->ud, msg);
}

/* ---------------------------------------------------------------- Streamable HTTP */

static int s_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    mcp_up *q = ud;
    q->status = status;
    for (size_t i = 0; i < n; i++) {
        if (sl_str_case_eq(h[i].name, SL_STR("content-type")))
            q->is_sse = sl_str_starts_with(h[i].value, SL_STR("text/event-stream"));
        else if (sl_str_case_eq(h[i].name, SL_STR("mcp-session-id")) && h[i].value.n < sizeof q->sid) {
            memcpy(q->sid, h[i].value.p, h[i].value.n);
            q->sid[h[i].value.n] = '\0';
        }
    }
    return SL_OK;
}

static int s_event(void *ud, sl_str event, sl_str data)
{
    mcp_up *q = ud;
    if (event.n == 0 || sl_str_eq_lit(event, "message")) emit(q, data);
    return q->finished ? 1 : 0;
}

static int s_data(void *ud, const char *p, size_t n)
{
    mcp_up *q = ud;
    if (q->is_sse && q->status >= 200 && q->status < 300) return feed(q, p, n, s_event);
    if (sl_buf_append(&q->json, p, n) != SL_OK) {
        q->too_large = true;
        return SL_ELIMIT;
    }
    return SL_OK;
}

/* A JSON answer: one message or a batch. */
static void emit_json(mcp_up *q)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 0);
    sl_json_doc d;
    if (sl_json_parse(&d, q->json.p, q->json.len, &a, NULL, NULL) == SL_OK) {
        if (sl_json_type_of(&d, 0) == SL_JSON_ARRAY) {
            for (int e = sl_json_first(&d, 0); e >= 0 && !q->finished; e = sl_json_next(&d, e)) emit(q, sl_json_raw(&d, e));
        } else {
            emit(q, sl_json_raw(&d, 0));
        }
    }
    sl_arena_free(&a);
}

static void s_done(void *ud, const sl_up_result *r)
{
    mcp_up *q = ud;
    q->req = NULL;
    if (q->too_large) {
        finish(q, "upstream answer too large");
        return;
    }
    if (r->error != SL_UP_OK) {
        finish(q, r->detail ? r->detail : "upstream request failed");
        return;
    }
    if (!q->is_sse && q->status >= 200 && q->status < 300 && q->json.len) emit_json(q);
    finish(q, NULL);
}

static const sl_up_callbacks s_cbs = {.on_head = s_head, .on_data = s_data, .on_done = s_done};

static sl_up_req *start_http(mcp_up *q, const char *method, const char *url, sl_str body, const sl_up_callbacks *cb,
                             void *ud)
{
    sl_up_request r = {
        .method = method,
        .url = url,
        .headers = q->h,
        .nheaders = q->nh,
        .body = body.n ? body.p : NULL,
        .body_len = body.n,
        .connect_timeout_ms = SL_MIN(q->cfg->timeout_ms, 10000),
        .total_timeout_ms = q->cfg->timeout_ms,
    };
    return sl_upstream_start(q->u, &r, cb, ud);
}

/* ---------------------------------------------------------------- legacy HTTP+SSE */

static int p_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    return status >= 200 && status < 300 ? SL_OK : SL_EIO;
}

static int p_data(void *ud, const char *p, size_t n) { return SL_OK; }

static void p_done(void *ud, const sl_up_result *r)
{
    struct post_ctx *pc = ud;
    mcp_up *q = pc->q;
    q->posts[pc->slot] = NULL; /* freed after this returns: never cancel it */
    if (r->error != SL_UP_OK) finish(q, "upstream rejected a message POST");
}

static const sl_up_callbacks p_cbs = {.on_head = p_head, .on_data = p_data, .on_done = p_done};

static void legacy_post(mcp_up *q, int slot, sl_str body)
{
    sl_buf_clear(&q->bodies[slot]);
    if (sl_buf_append_str(&q->bodies[slot], body) != SL_OK || sl_buf_reserve(&q->endpoint, 1) != SL_OK) {
        finish(q, "out of memory");
        return;
    }
    q->endpoint.p[q->endpoint.len] = '\0';
    base_headers(q, true);
    q->pctx[slot] = (struct post_ctx){q, slot};
    q->posts[slot] = start_http(q, "POST", q->endpoint.p, sl_buf_str(&q->bodies[slot]), &p_cbs, &q->pctx[slot]);
    if (!q->posts[slot]) finish(q, "cannot start the upstream POST");
}

/* The endpoint event: absolute, or relative to the stream's URL (kept without its NUL). */
static int set_endpoint(mcp_up *q, sl_str data)
{
    sl_buf_clear(&q->endpoint);
    data = sl_str_trim(data);
    if (sl_str_starts_with(data, SL_STR("http://")) || sl_str_starts_with(data, SL_STR("https://")))
        return sl_buf_append_str(&q->endpoint, data);
    const char *url = q->cfg->url;
    const char *scheme_end = strstr(url, "://");
    const char *path = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
    size_t origin_len = path ? (size_t)(path - url) : strlen(url);
    int rc;
    if (data.n && data.p[0] == '/') {
        rc = sl_buf_append(&q->endpoint, url, origin_len);
    } else { /* relative to the stream URL's directory */
        const char *last = path ? strrchr(path, '/') : NULL;
        rc = last ? sl_buf_append(&q->endpoint, url, (size_t)(last - url) + 1)
                  : (sl_buf_append(&q->endpoint, url, origin_len) ? SL_ENOMEM : sl_buf_append(&q->endpoint, "/", 1));
    }
    if (!rc) rc = sl_buf_append_str(&q->endpoint, data);
    return rc;
}

static sl_str message_id(sl_arena *a, sl_str msg, bool *is_response)
{
    sl_json_doc d;
    *is_response = false;
    if (sl_json_parse(&d, msg.p, msg.n, a, NULL, NULL) != SL_OK || sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return SL_STR_NULL;
    int id = sl_json_obj_get(&d, 0, "id");
    *is_response = id >= 0 && sl_json_obj_get(&d, 0, "method") < 0;
    return id >= 0 ? sl_json_raw(&d, id) : SL_STR_NULL;
}

static void legacy_send_initialize(mcp_up *q)
{
    char body[400];
    int n = snprintf(body, sizeof body,
                     "{\"jsonrpc\":\"2.0\",\"id\":" LEGACY_INIT_ID ",\"method\":\"initialize\",\"params\":{"
                     "\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"sluice\",\"version\":\"%s\"}}}",
                     q->version[0] ? q->version : "2024-11-05", SL_VERSION);
    q->lphase = 1;
    legacy_post(q, 0, (sl_str){body, (size_t)n});
}

static int l_event(void *ud, sl_str event, sl_str data)
{
    mcp_up *q = ud;
    if (q->finished) return 1;
    if (sl_str_eq_lit(event, "endpoint")) {
        if (q->lphase == 0) {
            if (set_endpoint(q, data) != SL_OK) finish(q, "bad endpoint event");
            else legacy_send_initialize(q);
        }
        return q->finished ? 1 : 0;
    }
    if (event.n && !sl_str_eq_lit(event, "message")) return 0;
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    bool is_resp;
    sl_str id = message_id(&a, data, &is_resp);
    if (q->lphase == 1 && is_resp && sl_str_eq_lit(id, LEGACY_INIT_ID)) {
        q->lphase = 2;
        legacy_post(q, 1, SL_STR("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
        if (!q->finished) legacy_post(q, 2, sl_buf_str(&q->body));
        if (!q->finished && q->want_id.len == 0) { /* a notification: nothing will answer */
            q->status = 202;
            sl_arena_free(&a);
            finish(q, NULL);
            return 1;
        }
    } else if (q->lphase == 2) {
        emit(q, data);
        if (!q->finished && is_resp && sl_str_eq(id, sl_buf_str(&q->want_id))) {
            q->status = 200;
            sl_arena_free(&a);
            finish(q, NULL);
            return 1;
        }
    }
    sl_arena_free(&a);
    return q->finished ? 1 : 0;
}

static int l_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    mcp_up *q = ud;
    q->status = status;
    return status >= 200 && status < 300 ? SL_OK : SL_EIO;
}

static int l_data(void *ud, const char *p, size_t n)
{
    return feed(ud, p, n, l_event);
}

static void l_done(void *ud, const sl_up_result *r)
{
    mcp_up *q = ud;
    q->req = NULL;
    finish(q, r->error != SL_UP_OK ? (r->detail ? r->detail : "upstream stream failed")
                                   : "upstream stream ended before the answer");
}

static const sl_up_callbacks l_cbs = {.on_head = l_head, .on_data = l_data, .on_done = l_done};

/* ---------------------------------------------------------------- start */

mcp_up *mcp_up_start(sl_upstream *u, const mcp_up_req *req, const mcp_up_cbs *cbs, void *ud)
{
    mcp_up *q = sl_calloc(1, sizeof *q);
    if (!q) return NULL;
    q->u = u, q->cfg = req->cfg, q->cbs = *cbs, q->ud = ud, q->request_id = req->request_id;
    q->legacy = req->cfg->transport == SL_MCP_UP_SSE;
    snprintf(q->method, sizeof q->method, "%s", req->method ? req->method : "POST");
    snprintf(q->version, sizeof q->version, "%.*s", (int)SL_MIN(req->version.n, 15), req->version.p ? req->version.p : "");
    sl_buf_init(&q->strings, 0);
    sl_buf_init(&q->body, 0);
    sl_buf_init(&q->json, req->max_bytes);
    sl_buf_init(&q->endpoint, 8192);
    sl_buf_init(&q->want_id, 1024);
    for (int i = 0; i < 3; i++) sl_buf_init(&q->bodies[i], 0);
    sl_sse_init(&q->sse, req->max_bytes ? req->max_bytes : (8u << 20));
    if (sl_buf_reserve(&q->strings, 64 * 1024) != SL_OK || sl_buf_append_str(&q->body, req->body) != SL_OK ||
        sl_buf_append_str(&q->want_id, req->want_id) != SL_OK) {
        up_free(q);
        return NULL;
    }
    if (q->legacy) {
        if (!strcmp(q->method, "DELETE")) { /* legacy sessions end with their stream: nothing to delete */
            up_free(q);
            return NULL;
        }
        base_headers(q, false);
        q->req = start_http(q, "GET", q->cfg->url, SL_STR_NULL, &l_cbs, q);
    } else {
        base_headers(q, true);
        if (req->session_id.n) add_header(q, "mcp-session-id", req->session_id);
        if (req->version.n) add_header(q, "mcp-protocol-version", req->version);
        q->req = start_http(q, q->method, q->cfg->url, sl_buf_str(&q->body), &s_cbs, q);
    }
    if (!q->req) {
        up_free(q);
        return NULL;
    }
    return q;
}
