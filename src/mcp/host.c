/*
 * host.c: the MCP Streamable HTTP transport on /mcp/{server} and the
 * JSON-RPC dispatch shared with the legacy HTTP+SSE transport (legacy.c).
 *
 *   POST    one JSON-RPC message (or, in revision 2025-03-26, a batch):
 *           requests are answered with application/json, or with an event
 *           stream when a proxied call forwards notifications before its
 *           answer; only notifications/responses get 202.
 *   GET     a standalone event stream for the session (kept open with
 *           comments; this gateway sends no server-initiated requests).
 *   DELETE  ends the session.
 *
 * Sessions: initialize creates one (MCP-Session-Id header); every later
 * request must carry it (400 without, 404 when unknown or expired, or opened
 * on another server or by another consumer). They are kept by
 * session_shared.c: in Redis with state.backend redis (the request then waits
 * for the answer; a client that leaves drops the call), else in memory. Origin
 * (and, when configured, Host) are checked against DNS rebinding before
 * anything else. Errors follow JSON-RPC 2.0 and the MCP transport spec.
 *
 * Limits: once the session is known, the POST's requests (messages with an
 * id) count against the consumer's requests_per_* windows (filters/
 * ratelimit.c); a refusal is HTTP 429 with JSON-RPC error -32029 for each of
 * them, before anything runs.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"
#include "filters/filter.h"
#include "filters/governance.h"
#include "mcp/mcp_int.h"
#include "mcp/session.h"

static void x_complete(mcp_x *x);

/* ---------------------------------------------------------------- plain HTTP answers */

static void respond(sl_gw_req *r, int status, const sl_http_header *extra, size_t nextra, sl_str ctype, sl_str body)
{
    sl_http_header h[12];
    size_t n = 0;
    if (ctype.n) h[n++] = (sl_http_header){SL_STR("content-type"), ctype};
    for (size_t i = 0; i < nextra && n < 8; i++) h[n++] = extra[i];
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = status;
    sl_hx_respond(r->hx, status, h, n, body.p, body.n);
    sl_gw_finish(r);
}

/* An HTTP error whose body is a JSON-RPC error with id null (as the SDKs send). */
static void http_rpc_error(sl_gw_req *r, int status, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void http_rpc_error(sl_gw_req *r, int status, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->rec.error = sl_arena_str(&r->hx->arena, sl_str_from_cstr(msg));
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_rpc_write_error(&b, SL_STR_NULL, code, msg);
    sl_http_header allow = {SL_STR("allow"), SL_STR("GET, POST, DELETE")};
    respond(r, status, &allow, status == 405, SL_STR("application/json"), sl_buf_str(&b));
    sl_buf_free(&b);
}

/* ---------------------------------------------------------------- request checks */

static sl_str header(const sl_gw_req *r, const char *name)
{
    const sl_http_header *h = sl_http_find_header(&r->hx->req, name);
    return h ? h->value : SL_STR_NULL;
}

static bool contains_ci(sl_str hay, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hay.n; i++)
        if (sl_str_case_eq((sl_str){hay.p + i, n}, (sl_str){needle, n})) return true;
    return false;
}

/* host[:port] of an authority: the host part ("[::1]" keeps its brackets). */
static sl_str host_part(sl_str auth)
{
    if (auth.n && auth.p[0] == '[') {
        const char *e = memchr(auth.p, ']', auth.n);
        return e ? (sl_str){auth.p, (size_t)(e - auth.p) + 1} : auth;
    }
    const char *c = memchr(auth.p, ':', auth.n);
    return c ? (sl_str){auth.p, (size_t)(c - auth.p)} : auth;
}

static bool is_localhost(sl_str host)
{
    return sl_str_case_eq(host, SL_STR("localhost")) || sl_str_eq_lit(host, "127.0.0.1") || sl_str_eq_lit(host, "[::1]");
}

static bool listed(char **list, size_t n, sl_str v, sl_str host)
{
    for (size_t i = 0; i < n; i++) {
        sl_str e = sl_str_from_cstr(list[i]);
        if (sl_str_eq_lit(e, "*") || sl_str_case_eq(e, v) || sl_str_case_eq(e, host)) return true;
    }
    return false;
}

/*
 * DNS rebinding defence (MCP transport spec, security warning): a browser
 * page from another origin must not reach a local server. An Origin header
 * must name localhost or a configured origin; when allowed_hosts is set, the
 * Host header must match it (or a localhost name) too.
 */
static bool origin_ok(const sl_mcp_cfg *mc, const sl_gw_req *r, const char **why)
{
    sl_str origin = header(r, "origin");
    if (origin.n && !sl_str_eq_lit(origin, "null")) {
        sl_str auth = origin;
        const char *sep = memmem(origin.p, origin.n, "://", 3);
        if (sep) auth = (sl_str){sep + 3, origin.n - (size_t)(sep + 3 - origin.p)};
        if (!is_localhost(host_part(auth)) && !listed(mc->allowed_origins, mc->nallowed_origins, origin, host_part(auth))) {
            *why = "Origin not allowed";
            return false;
        }
    }
    if (mc->nallowed_hosts) {
        sl_str host = r->hx->req.host;
        if (!is_localhost(host_part(host)) && !listed(mc->allowed_hosts, mc->nallowed_hosts, host, host_part(host))) {
            *why = "Host not allowed";
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- call completion */

static void call_done(mcp_call *c)
{
    mcp_x *x = c->x;
    c->done = true;
    c->op = NULL, c->cancel = NULL;
    if (x->transport == MCPX_LEGACY && c->out.len) sl_mcp_legacy_push(x->legacy_id, sl_buf_str(&c->out));
    if (x->npending && --x->npending == 0) x_complete(x);
}

void sl_mcp_call_result(mcp_call *c, sl_str result_json)
{
    if (c->done) return;
    if (sl_rpc_write_result(&c->out, c->m.id, result_json) != SL_OK) {
        sl_buf_clear(&c->out);
        sl_rpc_write_error(&c->out, c->m.id, SL_JSONRPC_INTERNAL_ERROR, "result too large");
    }
    call_done(c);
}

void sl_mcp_call_error(mcp_call *c, int code, const char *fmt, ...)
{
    if (c->done) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_buf_clear(&c->out);
    sl_rpc_write_error(&c->out, c->m.id, code, msg);
    if (!c->x->r->rec.error.n) c->x->r->rec.error = sl_arena_str(c->x->a, sl_str_from_cstr(msg));
    call_done(c);
}

void sl_mcp_call_raw(mcp_call *c, sl_str message_json)
{
    if (c->done) return;
    sl_buf_clear(&c->out);
    if (sl_buf_append_str(&c->out, message_json) != SL_OK) {
        sl_buf_clear(&c->out);
        sl_rpc_write_error(&c->out, c->m.id, SL_JSONRPC_INTERNAL_ERROR, "response too large");
    }
    call_done(c);
}

static void write_sse_message(mcp_x *x, sl_str json)
{
    sl_buf ev;
    sl_buf_init(&ev, 0);
    if (sl_sse_write(&ev, SL_STR("message"), json) == SL_OK) sl_hx_write(x->r->hx, ev.p, ev.len);
    sl_buf_free(&ev);
}

void sl_mcp_call_notify(mcp_call *c, sl_str message_json)
{
    mcp_x *x = c->x;
    if (c->done || x->aborted) return;
    if (x->transport == MCPX_LEGACY) {
        sl_mcp_legacy_push(x->legacy_id, message_json);
        return;
    }
    if (x->batch || !x->accepts_sse) return; /* a JSON answer cannot carry it: dropped */
    if (!x->sse_started) {
        sl_http_header h[12] = {{SL_STR("content-type"), SL_STR("text/event-stream")},
                                {SL_STR("cache-control"), SL_STR("no-cache")}};
        size_t n = 2;
        sl_gw_common_headers(x->r, h, &n, SL_ARRAY_LEN(h)); /* x-ratelimit-* among them */
        x->r->rec.status = 200;
        sl_hx_respond_head(x->r->hx, 200, h, n, -1);
        x->sse_started = true;
    }
    write_sse_message(x, message_json);
}

/* ---------------------------------------------------------------- answering the exchange */

static void free_calls(mcp_x *x)
{
    for (size_t i = 0; i < x->ncalls; i++) sl_buf_free(&x->calls[i].out);
}

static void x_respond(mcp_x *x)
{
    sl_gw_req *r = x->r;
    x->finished = true;
    sl_mcp_inflight_remove(x);
    if (x->aborted) return;
    if (x->transport == MCPX_LEGACY) {
        free_calls(x);
        respond(r, 202, NULL, 0, SL_STR("text/plain"), SL_STR("Accepted"));
        return;
    }
    if (x->sse_started) {
        for (size_t i = 0; i < x->ncalls; i++)
            if (x->calls[i].out.len) write_sse_message(x, sl_buf_str(&x->calls[i].out));
        free_calls(x);
        sl_gw_finish(r);
        return;
    }
    size_t nout = 0;
    for (size_t i = 0; i < x->ncalls; i++) nout += x->calls[i].out.len > 0;
    if (nout == 0) {
        free_calls(x);
        respond(r, 202, NULL, 0, SL_STR_NULL, SL_STR_NULL);
        return;
    }
    sl_buf body;
    sl_buf_init(&body, 0);
    if (x->batch) sl_buf_append(&body, "[", 1);
    size_t k = 0;
    for (size_t i = 0; i < x->ncalls; i++) {
        if (!x->calls[i].out.len) continue;
        if (k++) sl_buf_append(&body, ",", 1);
        sl_buf_append(&body, x->calls[i].out.p, x->calls[i].out.len);
    }
    if (x->batch) sl_buf_append(&body, "]", 1);
    free_calls(x);
    sl_http_header sid = {SL_STR("mcp-session-id"), x->sid};
    respond(r, 200, &sid, x->new_session ? 1 : 0, SL_STR("application/json"), sl_buf_str(&body));
    sl_buf_free(&body);
}

static void on_session_stored(void *ud, int rc, sl_str value)
{
    mcp_x *x = ud;
    if (rc != SL_OK && x->new_session) {
        /* The session could not be kept: the client must not be told it exists. */
        free_calls(x);
        x->finished = true;
        sl_mcp_inflight_remove(x);
        if (!x->aborted)
            http_rpc_error(x->r, 503, SL_JSONRPC_INTERNAL_ERROR, "cannot create a session: %s",
                           rc == SL_ELIMIT ? "too many sessions" : sl_strerror(rc));
        return;
    }
    x_respond(x);
}

static void x_complete(mcp_x *x)
{
    if (x->finished) return;
    if (!x->sess_dirty || !x->have_session || x->aborted) {
        x_respond(x);
        return;
    }
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    int rc = sl_mcp_sess_encode(&x->sess, x->srv->nupstreams, &b);
    if (rc) {
        sl_buf_free(&b);
        on_session_stored(x, rc, SL_STR_NULL);
        return;
    }
    sl_mcp_sess_put(x->r, x->transport == MCPX_HTTP, x->sid, sl_buf_str(&b), x->new_session, on_session_stored, x,
                    &x->store_op);
    sl_buf_free(&b);
}

static void on_x_abort(sl_hx *hx, void *arg)
{
    mcp_x *x = arg;
    if (x->aborted) return;
    x->aborted = true;
    sl_mcp_inflight_remove(x);
    sl_mcp_sess_cancel(&x->store_op); /* a Redis call in flight: its reply finds nobody */
    sl_ratelimit_requests_cancel(&x->rl_op); /* likewise; a reservation admitted meanwhile is given back */
    for (size_t i = 0; i < x->ncalls; i++) {
        mcp_call *c = &x->calls[i];
        if (!c->done && c->cancel) c->cancel(c);
        c->op = NULL, c->cancel = NULL;
    }
    if (x->finished) return; /* answered already; the response path finishes */
    x->finished = true;
    free_calls(x);
    x->r->rec.status = x->sse_started ? 200 : 499;
    sl_gw_finish(x->r);
}

/* ---------------------------------------------------------------- methods of hosted servers */

static void write_tool(sl_jw *w, const sl_mcp_tool_cfg *t)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "name"), sl_jw_cstr(w, t->name);
    if (t->title) sl_jw_key(w, "title"), sl_jw_cstr(w, t->title);
    /* Optional in the spec, but clients show it to the model: the name stands in. */
    sl_jw_key(w, "description"), sl_jw_cstr(w, t->description ? t->description : t->name);
    sl_jw_key(w, "inputSchema"), sl_jw_raw(w, sl_str_from_cstr(t->input_schema ? t->input_schema : "{\"type\":\"object\"}"));
    if (t->output_schema) sl_jw_key(w, "outputSchema"), sl_jw_raw(w, sl_str_from_cstr(t->output_schema));
    sl_jw_obj_end(w);
}

/* Reads params.cursor: an offset written by us. */
static int read_cursor(mcp_call *c, uint64_t max, uint64_t *off)
{
    *off = 0;
    int cur = c->m.params >= 0 ? sl_json_obj_get(c->doc, c->m.params, "cursor") : -1;
    if (cur < 0 || sl_json_type_of(c->doc, cur) == SL_JSON_NULL) return SL_OK;
    sl_str s;
    if (sl_json_type_of(c->doc, cur) != SL_JSON_STRING || sl_json_str(c->doc, cur, c->x->a, &s) != SL_OK ||
        s.n < 2 || s.p[0] != 'o' || s.p[1] != ':' || sl_str_to_u64((sl_str){s.p + 2, s.n - 2}, max, off) != SL_OK)
        return SL_EINVAL;
    return SL_OK;
}

static void tools_list(mcp_call *c)
{
    mcp_x *x = c->x;
    const sl_mcp_server_cfg *s = x->srv;
    uint64_t off;
    if (read_cursor(c, s->ntools, &off) != SL_OK) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Invalid cursor");
        return;
    }
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "tools"), sl_jw_arr_begin(&w);
    uint64_t seen = 0, shown = 0;
    size_t i = 0;
    for (; i < s->ntools; i++) {
        const sl_mcp_tool_cfg *t = &s->tools[i];
        if (!sl_mcp_tool_allowed(x->r, sl_str_from_cstr(s->name), sl_str_from_cstr(t->name))) continue;
        if (seen++ < off) continue;
        if (shown == x->mc->page_size) break;
        write_tool(&w, t);
        shown++;
    }
    sl_jw_arr_end(&w);
    if (i < s->ntools) {
        char cur[32];
        snprintf(cur, sizeof cur, "o:%llu", (unsigned long long)(off + shown));
        sl_jw_key(&w, "nextCursor"), sl_jw_cstr(&w, cur);
    }
    sl_jw_obj_end(&w);
    sl_mcp_call_result(c, sl_buf_str(&b));
    sl_buf_free(&b);
}

static const sl_mcp_tool_cfg *find_tool(const sl_mcp_server_cfg *s, sl_str name)
{
    for (size_t i = 0; i < s->ntools; i++)
        if (sl_str_eq_lit(name, s->tools[i].name)) return &s->tools[i];
    return NULL;
}

static void tools_call(mcp_call *c)
{
    mcp_x *x = c->x;
    const sl_json_doc *d = c->doc;
    int nt = c->m.params >= 0 ? sl_json_obj_get(d, c->m.params, "name") : -1;
    sl_str name;
    if (nt < 0 || sl_json_type_of(d, nt) != SL_JSON_STRING || sl_json_str(d, nt, x->a, &name) != SL_OK) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Invalid params: tools/call needs a tool name");
        return;
    }
    c->tool = name;
    char *full = sl_arena_printf(x->a, "%s/%.*s", x->srv->name, (int)SL_MIN(name.n, 200), name.p);
    if (full) x->r->rec.upstream_model = sl_str_from_cstr(full);
    int args = sl_json_obj_get(d, c->m.params, "arguments");
    if (args >= 0 && sl_json_type_of(d, args) == SL_JSON_NULL) args = -1;
    if (args >= 0 && sl_json_type_of(d, args) != SL_JSON_OBJECT) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Invalid params: arguments must be an object");
        return;
    }
    if (!sl_mcp_tool_allowed(x->r, sl_str_from_cstr(x->srv->name), name)) {
        sl_mcp_call_error(c, SL_MCP_ERR_FORBIDDEN, "Forbidden: tool %.*s is not allowed for this caller",
                          (int)SL_MIN(name.n, 200), name.p);
        return;
    }
    if (x->srv->type == SL_MCP_PROXY) {
        sl_mcp_proxy_tools_call(c, name, args);
        return;
    }
    const sl_mcp_tool_cfg *t = find_tool(x->srv, name);
    if (!t) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Unknown tool: %.*s", (int)SL_MIN(name.n, 200), name.p);
        return;
    }
    sl_mcp_rest_call(c, t, args);
}

int sl_mcp_write_initialize(const sl_mcp_server_cfg *s, sl_str version, sl_str capabilities_json, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "protocolVersion"), sl_jw_str(&w, version);
    sl_jw_key(&w, "capabilities"), sl_jw_raw(&w, capabilities_json);
    sl_jw_key(&w, "serverInfo"), sl_jw_obj_begin(&w);
    sl_jw_key(&w, "name"), sl_jw_cstr(&w, s->name);
    if (s->title) sl_jw_key(&w, "title"), sl_jw_cstr(&w, s->title);
    sl_jw_key(&w, "version"), sl_jw_cstr(&w, s->version ? s->version : "1.0.0");
    sl_jw_obj_end(&w);
    if (s->instructions) sl_jw_key(&w, "instructions"), sl_jw_cstr(&w, s->instructions);
    sl_jw_obj_end(&w);
    return w.err;
}

/* initialize: negotiates the revision and opens a session. */
static void initialize(mcp_call *c)
{
    mcp_x *x = c->x;
    const sl_json_doc *d = c->doc;
    int pv = c->m.params >= 0 ? sl_json_obj_get(d, c->m.params, "protocolVersion") : -1;
    sl_str asked;
    if (pv < 0 || sl_json_type_of(d, pv) != SL_JSON_STRING || sl_json_str(d, pv, x->a, &asked) != SL_OK) {
        sl_mcp_call_error(c, SL_JSONRPC_INVALID_PARAMS, "Invalid params: protocolVersion is required");
        return;
    }
    /* The client's revision when we speak it, else our latest (the client then decides). */
    const char *v = sl_mcp_versions[sl_mcp_nversions - 1];
    for (size_t i = 0; i < sl_mcp_nversions; i++)
        if (sl_str_eq_lit(asked, sl_mcp_versions[i])) v = sl_mcp_versions[i];
    char *sid = sl_arena_alloc(x->a, 33);
    if (!sid) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    if (x->transport == MCPX_LEGACY) memcpy(sid, x->legacy_id, 33); /* the stream's id names the session */
    else sl_mcp_random_id(sid);
    sid[32] = '\0';
    x->sid = sl_str_from_cstr(sid);
    memset(&x->sess, 0, sizeof x->sess);
    memcpy(x->sess.version, v, strlen(v));
    /* Who opened it, on which server: another server or consumer presenting the id does not find it. */
    x->sess.server = x->srv->name;
    x->sess.consumer = sl_arena_strndup(x->a, x->r->rec.consumer.p, SL_MIN(x->r->rec.consumer.n, SL_MCP_MAX_NAME));
    x->have_session = x->new_session = x->sess_dirty = true;
    if (x->srv->type == SL_MCP_PROXY) {
        sl_mcp_proxy_initialize(x, c, sl_str_from_cstr(v));
        return;
    }
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_mcp_write_initialize(x->srv, sl_str_from_cstr(v), SL_STR("{\"tools\":{\"listChanged\":false}}"), &b);
    sl_mcp_call_result(c, sl_buf_str(&b));
    sl_buf_free(&b);
}

static void dispatch_request(mcp_call *c)
{
    mcp_x *x = c->x;
    sl_str m = c->m.method;
    if (!x->r->rec.operation) x->r->rec.operation = sl_arena_strndup(x->a, m.p, SL_MIN(m.n, 64));
    if (sl_str_eq_lit(m, "initialize")) {
        if (x->have_session && !x->new_session)
            sl_mcp_call_error(c, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: the session is already initialized");
        else initialize(c);
    } else if (sl_str_eq_lit(m, "ping")) {
        sl_mcp_call_result(c, SL_STR("{}"));
    } else if (sl_str_eq_lit(m, "tools/list")) {
        if (x->srv->type == SL_MCP_PROXY) sl_mcp_proxy_tools_list(c);
        else tools_list(c);
    } else if (sl_str_eq_lit(m, "tools/call")) {
        tools_call(c);
    } else if (x->srv->type == SL_MCP_PROXY) {
        sl_mcp_proxy_forward(c);
    } else {
        sl_mcp_call_error(c, SL_JSONRPC_METHOD_NOT_FOUND, "Method not found: %.*s", (int)SL_MIN(m.n, 100), m.p);
    }
}

static void dispatch_notification(mcp_call *c)
{
    mcp_x *x = c->x;
    if (sl_str_eq_lit(c->m.method, "notifications/initialized") && x->have_session && !x->sess.initialized) {
        x->sess.initialized = true;
        x->sess_dirty = true;
    }
    /*
     * notifications/cancelled: the request it names runs on its own POST,
     * perhaps on another worker: cancel.c finds it by session and id. Other
     * notifications need no answer.
     */
    if (sl_str_eq_lit(c->m.method, "notifications/cancelled") && x->have_session && c->m.params >= 0) {
        int rid = sl_json_obj_get(c->doc, c->m.params, "requestId");
        if (rid >= 0 && (sl_json_type_of(c->doc, rid) == SL_JSON_STRING || sl_json_type_of(c->doc, rid) == SL_JSON_NUMBER))
            sl_mcp_inflight_cancel(x->sid, sl_json_raw(c->doc, rid));
    }
    c->done = true;
}

/* Runs every message of the exchange; answers once the last request is done. */
static void dispatch_now(mcp_x *x)
{
    x->npending = 1; /* held until every call has been started */
    bool has_request = false;
    for (size_t i = 0; i < x->ncalls; i++) has_request |= x->calls[i].m.kind == SL_RPC_REQUEST;
    /* Requests of an established session may be cancelled from another POST (not initialize's). */
    if (has_request && x->have_session && !x->new_session && sl_mcp_inflight_add(x) != SL_OK)
        sl_warn("mcp: cannot list a request for cancellation (out of memory)");
    for (size_t i = 0; i < x->ncalls && !x->aborted; i++) {
        mcp_call *c = &x->calls[i];
        c->start_ns = uv_hrtime();
        switch (c->m.kind) {
        case SL_RPC_REQUEST:
            x->npending++;
            dispatch_request(c);
            break;
        case SL_RPC_NOTIFICATION: dispatch_notification(c); break;
        case SL_RPC_RESPONSE: c->done = true; break; /* answers to requests we never send */
        case SL_RPC_INVALID:
            x->npending++;
            sl_mcp_call_error(c, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: %s", c->m.why);
            break;
        }
    }
    if (x->aborted) return;
    if (--x->npending == 0) x_complete(x);
}

/*
 * The consumer's request limits refused (429) or could not be checked with
 * on_error deny (503): every request of the POST gets the JSON-RPC error
 * (one object, or an array of them for a batch), over HTTP with the status,
 * retry-after and the x-ratelimit-* headers. Nothing was dispatched.
 */
static void refuse_limits(mcp_x *x, const sl_rl_verdict *v)
{
    sl_gw_req *r = x->r;
    x->finished = true;
    free_calls(x);
    r->rec.error = sl_arena_str(x->a, sl_str_from_cstr(v->message));
    int code = v->status == 429 ? SL_MCP_ERR_RATE_LIMITED : SL_JSONRPC_INTERNAL_ERROR;
    char data[128];
    int dn = v->status == 429 ? snprintf(data, sizeof data, "{\"limit\":\"%s\",\"retry_after\":%u}",
                                         v->limit ? v->limit : "requests", v->retry_after_s)
                              : snprintf(data, sizeof data, "{\"retry_after\":%u}", v->retry_after_s);
    sl_str dj = dn > 0 && (size_t)dn < sizeof data ? (sl_str){data, (size_t)dn} : SL_STR_NULL;
    sl_buf b;
    sl_buf_init(&b, 0);
    if (x->batch) sl_buf_append(&b, "[", 1);
    size_t k = 0;
    for (size_t i = 0; i < x->ncalls; i++) {
        if (x->calls[i].m.kind != SL_RPC_REQUEST) continue;
        if (k++) sl_buf_append(&b, ",", 1);
        sl_rpc_write_error_data(&b, x->calls[i].m.id, code, v->message, dj);
    }
    if (x->batch) sl_buf_append(&b, "]", 1);
    respond(r, v->status, NULL, 0, SL_STR("application/json"), sl_buf_str(&b));
    sl_buf_free(&b);
}

static void on_limits_checked(void *ud, const sl_rl_verdict *v)
{
    mcp_x *x = ud;
    x->rl_op = NULL;
    if (v->status == 0) dispatch_now(x);
    else refuse_limits(x, v);
}

/*
 * Limits first (SPEC §5, docs/governance.md): each request of the POST (a
 * message with a method and an id: initialize, tools/list, tools/call, ping,
 * ...) counts one against the consumer's requests_per_{minute,hour,day};
 * notifications and responses are free. One atomic reservation for all of
 * them, in the state backend the LLM endpoints use; with Redis the exchange
 * waits for it here (a client that leaves cancels it in on_x_abort).
 */
static void dispatch_all(mcp_x *x)
{
    int64_t n = 0;
    for (size_t i = 0; i < x->ncalls; i++) n += x->calls[i].m.kind == SL_RPC_REQUEST;
    if (!n) {
        dispatch_now(x);
        return;
    }
    sl_ratelimit_requests(x->r, n, on_limits_checked, x, &x->rl_op);
}

/* ---------------------------------------------------------------- POST */

static mcp_x *x_new(sl_gw_req *r, const sl_mcp_server_cfg *srv, int transport)
{
    mcp_x *x = sl_arena_calloc(&r->hx->arena, sizeof *x);
    if (!x) return NULL;
    x->r = r;
    x->a = &r->hx->arena;
    x->mc = r->cfg->mcp;
    x->srv = srv;
    x->transport = transport;
    sl_hx_on_abort(r->hx, on_x_abort, x);
    return x;
}

/* Parses the body into calls. Answers the HTTP error itself and returns false on failure. */
static bool parse_messages(mcp_x *x)
{
    sl_gw_req *r = x->r;
    size_t err_off = 0;
    sl_json_limits lim = {.max_depth = 64};
    int rc = sl_json_parse(&x->doc, r->hx->body.p, r->hx->body.n, x->a, &lim, &err_off);
    if (rc == SL_ENOMEM) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return false;
    }
    if (rc) {
        http_rpc_error(r, 400, SL_JSONRPC_PARSE_ERROR, "Parse error: invalid JSON at byte %zu", err_off);
        return false;
    }
    sl_json_type t = sl_json_type_of(&x->doc, 0);
    x->batch = t == SL_JSON_ARRAY;
    size_t n = x->batch ? x->doc.toks[0].count : 1;
    if (x->batch && n == 0) {
        http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: empty batch");
        return false;
    }
    if (n > SL_MCP_MAX_BATCH) {
        http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: batch of more than %d messages", SL_MCP_MAX_BATCH);
        return false;
    }
    x->calls = sl_arena_calloc(x->a, n * sizeof(mcp_call));
    if (!x->calls) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return false;
    }
    x->ncalls = n;
    int tok = x->batch ? sl_json_first(&x->doc, 0) : 0;
    for (size_t i = 0; i < n; i++, tok = x->batch ? sl_json_next(&x->doc, tok) : -1) {
        mcp_call *c = &x->calls[i];
        c->x = x;
        c->doc = &x->doc;
        sl_buf_init(&c->out, 64u << 20);
        sl_rpc_classify(&x->doc, tok, x->a, &c->m);
    }
    if (!x->batch && x->calls[0].m.kind == SL_RPC_INVALID) {
        http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: %s", x->calls[0].m.why);
        return false;
    }
    return true;
}

static bool has_initialize(const mcp_x *x)
{
    for (size_t i = 0; i < x->ncalls; i++)
        if (x->calls[i].m.kind == SL_RPC_REQUEST && sl_str_eq_lit(x->calls[i].m.method, "initialize")) return true;
    return false;
}

/* After the session was found: version header, batch rules, then the calls. */
static void run_in_session(mcp_x *x)
{
    sl_gw_req *r = x->r;
    sl_str pv = header(r, "mcp-protocol-version");
    if (pv.n && !sl_mcp_version_supported(pv)) {
        http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: Unsupported protocol version: %.*s (supported: %s to %s)",
                       (int)SL_MIN(pv.n, 40), pv.p, sl_mcp_versions[0], sl_mcp_versions[sl_mcp_nversions - 1]);
        return;
    }
    if (x->batch && strcmp(x->sess.version, "2025-03-26") != 0 && strcmp(x->sess.version, "2024-11-05") != 0) {
        http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST,
                       "Invalid Request: JSON-RPC batches are not supported in protocol version %s", x->sess.version);
        return;
    }
    dispatch_all(x);
}

/*
 * A store answer for x's session: decodes it into x->sess and returns true,
 * or answers 404 (none, or one opened on another server or by another
 * consumer) or 503 (the store failed) and returns false.
 */
static bool session_found(mcp_x *x, int rc, sl_str value)
{
    if (rc == SL_OK && sl_mcp_sess_decode(value, x->a, &x->sess) == SL_OK) {
        bool mine = (!x->sess.server || strcmp(x->sess.server, x->srv->name) == 0) &&
                    (!x->sess.consumer || sl_str_eq_lit(x->r->rec.consumer, x->sess.consumer));
        if (mine) return true;
        rc = SL_ENOTFOUND;
    }
    if (rc == SL_ENOTFOUND) http_rpc_error(x->r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
    else http_rpc_error(x->r, 503, SL_JSONRPC_INTERNAL_ERROR, "session store unavailable");
    return false;
}

static void on_session_loaded(void *ud, int rc, sl_str value)
{
    mcp_x *x = ud;
    if (!session_found(x, rc, value)) return;
    x->have_session = true;
    run_in_session(x);
}

/* Session id from the header (or the legacy stream's id); NULL slice when absent or malformed. */
static bool valid_sid(sl_str s)
{
    if (s.n == 0 || s.n > 128) return false;
    for (size_t i = 0; i < s.n; i++)
        if ((unsigned char)s.p[i] < 0x21 || (unsigned char)s.p[i] > 0x7e) return false;
    return true;
}

static void load_session(mcp_x *x, sl_str sid)
{
    x->sid = sid;
    sl_mcp_sess_get(x->r, x->transport == MCPX_HTTP, sid, on_session_loaded, x, &x->store_op);
}

static void handle_post(sl_gw_req *r, const sl_mcp_server_cfg *srv)
{
    sl_str ct = header(r, "content-type");
    if (!contains_ci(ct, "application/json")) {
        http_rpc_error(r, 415, SL_MCP_ERR_SERVER, "Unsupported Media Type: Content-Type must be application/json");
        return;
    }
    sl_str accept = header(r, "accept");
    if (accept.n && !contains_ci(accept, "application/json") && !contains_ci(accept, "text/event-stream") &&
        !contains_ci(accept, "*/*")) {
        http_rpc_error(r, 406, SL_MCP_ERR_SERVER,
                       "Not Acceptable: Client must accept application/json and text/event-stream");
        return;
    }
    mcp_x *x = x_new(r, srv, MCPX_HTTP);
    if (!x) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    x->accepts_sse = contains_ci(accept, "text/event-stream");
    if (!parse_messages(x)) return;
    if (has_initialize(x)) {
        if (x->batch) {
            http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch");
            return;
        }
        dispatch_all(x);
        return;
    }
    sl_str sid = header(r, "mcp-session-id");
    if (!sid.n) {
        http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    if (!valid_sid(sid)) {
        http_rpc_error(r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
        return;
    }
    load_session(x, sid);
}

void sl_mcp_dispatch_legacy(sl_gw_req *r, const sl_mcp_server_cfg *srv, sl_str stream_id)
{
    mcp_x *x = x_new(r, srv, MCPX_LEGACY);
    if (!x) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    memcpy(x->legacy_id, stream_id.p, SL_MIN(stream_id.n, sizeof x->legacy_id - 1));
    if (!sl_mcp_legacy_exists(x->legacy_id)) {
        http_rpc_error(r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
        return;
    }
    if (!parse_messages(x)) return;
    if (has_initialize(x)) {
        if (x->batch) {
            http_rpc_error(r, 400, SL_JSONRPC_INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch");
            return;
        }
        /* The legacy stream's id is the session id: the store record is keyed by it. */
        dispatch_all(x);
        return;
    }
    load_session(x, stream_id);
}

/* ---------------------------------------------------------------- GET (standalone stream) and DELETE */

/*
 * The stream's timer ticks every TICK_MS: a keep-alive comment every
 * KEEPALIVE_TICKS, and at once when the worker drains for a stop, the stream
 * ends (the client reconnects, to this or another instance) instead of
 * holding the drain until drain_timeout_ms.
 */
#define TICK_MS 250
#define KEEPALIVE_TICKS 60

typedef struct get_stream {
    uv_timer_t timer;
    sl_gw_req *r;
    unsigned ticks;
} get_stream;

bool sl_mcp_draining(const sl_gw_req *r)
{
    const sl_worker *w = r->gw->w;
    return w->stopping || atomic_load(&w->stop_requested);
}

static void on_timer_closed(uv_handle_t *h) { sl_free(h->data); }

static void write_keepalive(sl_gw_req *r)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    if (sl_sse_write_comment(&b, SL_STR("keep-alive")) == SL_OK) sl_hx_write(r->hx, b.p, b.len);
    sl_buf_free(&b);
}

static void get_stream_end(get_stream *g)
{
    sl_gw_req *r = g->r;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_timer_closed);
    r->rec.status = 200;
    sl_gw_finish(r);
}

static void on_get_tick(uv_timer_t *t)
{
    get_stream *g = t->data;
    if (sl_mcp_draining(g->r)) {
        sl_hx_close_after(g->r->hx);
        get_stream_end(g);
        return;
    }
    if (++g->ticks % KEEPALIVE_TICKS == 0) write_keepalive(g->r);
}

static void on_get_abort(sl_hx *hx, void *arg) { get_stream_end(arg); }

static void on_get_session(void *ud, int rc, sl_str value)
{
    mcp_x *x = ud;
    sl_gw_req *r = x->r;
    if (!session_found(x, rc, value)) return;
    x->finished = true; /* the stream takes over the exchange (and its abort) */
    get_stream *g = sl_calloc(1, sizeof *g);
    if (!g) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    g->r = r;
    uv_timer_init(r->hx->loop, &g->timer);
    g->timer.data = g;
    uv_timer_start(&g->timer, on_get_tick, TICK_MS, TICK_MS);
    sl_hx_on_abort(r->hx, on_get_abort, g);
    sl_http_header h[6] = {{SL_STR("content-type"), SL_STR("text/event-stream")},
                           {SL_STR("cache-control"), SL_STR("no-cache")}};
    size_t n = 2;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = 200;
    sl_hx_respond_head(r->hx, 200, h, n, -1);
    /* A comment at once, so that clients and proxies see the stream is open. */
    write_keepalive(r);
    /* The stream stays open until the client closes it (on_get_abort) or the worker drains. */
}

static void handle_get(sl_gw_req *r, const sl_mcp_server_cfg *srv)
{
    if (!contains_ci(header(r, "accept"), "text/event-stream")) {
        http_rpc_error(r, 406, SL_MCP_ERR_SERVER, "Not Acceptable: Client must accept text/event-stream");
        return;
    }
    sl_str sid = header(r, "mcp-session-id");
    if (!sid.n) {
        http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    sl_str pv = header(r, "mcp-protocol-version");
    if (pv.n && !sl_mcp_version_supported(pv)) {
        http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: Unsupported protocol version");
        return;
    }
    if (!valid_sid(sid)) {
        http_rpc_error(r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
        return;
    }
    mcp_x *x = x_new(r, srv, MCPX_HTTP); /* its abort handler cancels a store call in flight */
    if (!x) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    x->sid = sid;
    sl_mcp_sess_get(r, true, sid, on_get_session, x, &x->store_op);
}

static void on_deleted(void *ud, int rc, sl_str value)
{
    mcp_x *x = ud;
    if (rc == SL_ENOTFOUND) http_rpc_error(x->r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
    else if (rc) http_rpc_error(x->r, 503, SL_JSONRPC_INTERNAL_ERROR, "session store unavailable");
    else respond(x->r, 200, NULL, 0, SL_STR_NULL, SL_STR_NULL);
}

/* Called by proxy.c once upstream sessions are closed (or right away for hosted servers). */
void sl_mcp_delete_local(mcp_x *x)
{
    sl_mcp_sess_del(x->r, true, x->sid, on_deleted, x, &x->store_op);
}

static void on_delete_loaded(void *ud, int rc, sl_str value)
{
    mcp_x *x = ud;
    if (!session_found(x, rc, value)) return;
    if (x->srv->type == SL_MCP_PROXY) sl_mcp_proxy_delete(x);
    else sl_mcp_delete_local(x);
}

static void handle_delete(sl_gw_req *r, const sl_mcp_server_cfg *srv)
{
    sl_str sid = header(r, "mcp-session-id");
    if (!sid.n) {
        http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    if (!valid_sid(sid)) {
        http_rpc_error(r, 404, SL_MCP_ERR_SESSION_NOT_FOUND, "Session not found");
        return;
    }
    mcp_x *x = x_new(r, srv, MCPX_HTTP);
    if (!x) {
        http_rpc_error(r, 503, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    x->sid = sid;
    sl_mcp_sess_get(r, true, sid, on_delete_loaded, x, &x->store_op);
}

/* ---------------------------------------------------------------- entry */

/*
 * The consumer's mcp_tools globs against "server/tool" (SPEC §5, §6). No
 * consumer (no consumers configured, or an anonymous caller without a
 * consumers entry) and a consumer without mcp_tools may use every tool, as
 * `models` absent allows every model. A name too long to match is denied.
 */
bool sl_mcp_tool_allowed(const sl_gw_req *r, sl_str server, sl_str tool)
{
    const sl_consumer_cfg *c = r->consumer;
    if (!c || !c->nmcp_tools) return true;
    char full[512];
    if (server.n + 1 + tool.n > sizeof full) return false;
    memcpy(full, server.p, server.n);
    full[server.n] = '/';
    memcpy(full + server.n + 1, tool.p, tool.n);
    sl_str name = {full, server.n + 1 + tool.n};
    for (size_t i = 0; i < c->nmcp_tools; i++)
        if (sl_glob_match(sl_str_from_cstr(c->mcp_tools[i]), name)) return true;
    return false;
}

static sl_str query_param(sl_str q, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < q.n;) {
        size_t e = i;
        while (e < q.n && q.p[e] != '&') e++;
        sl_str kv = {q.p + i, e - i};
        if (kv.n > n && kv.p[n] == '=' && memcmp(kv.p, name, n) == 0) return (sl_str){kv.p + n + 1, kv.n - n - 1};
        i = e + 1;
    }
    return SL_STR_NULL;
}

void sl_mcp_handle(sl_gw_req *r)
{
    sl_hx *hx = r->hx;
    r->rec.api = "mcp";
    r->rec.operation = NULL;
    sl_str path = hx->req.path, rest = {path.p + 5, path.n - 5}; /* after "/mcp/" */
    const char *slash = memchr(rest.p, '/', rest.n);
    sl_str name = slash ? (sl_str){rest.p, (size_t)(slash - rest.p)} : rest;
    sl_str sub = slash ? (sl_str){slash, rest.n - name.n} : SL_STR_NULL;
    r->rec.model = name;
    /*
     * The head filters first (auth: who is calling, 401 otherwise), as for
     * the LLM endpoints; r->consumer then decides tool access. The body
     * filters (model access, limits) do not run for MCP: the consumer's
     * request limits are checked by dispatch_all, per JSON-RPC request. A
     * head filter that waits is not supported here: today none does.
     */
    if (sl_filters_run_head(r) != SL_FILTER_NEXT) return;
    const sl_mcp_cfg *mc = r->cfg->mcp;
    const sl_mcp_server_cfg *srv = mc ? sl_mcp_find_server(mc, name) : NULL;
    if (!srv) {
        http_rpc_error(r, 404, SL_MCP_ERR_SERVER, "Not Found: no MCP server '%.*s'", (int)SL_MIN(name.n, 100), name.p);
        return;
    }
    const char *why = NULL;
    if (!origin_ok(mc, r, &why)) {
        http_rpc_error(r, 403, SL_MCP_ERR_SERVER, "Forbidden: %s", why);
        return;
    }
    sl_str method = hx->req.method;
    if (sub.n == 0 || sl_str_eq_lit(sub, "/")) {
        if (sl_str_eq_lit(method, "POST")) handle_post(r, srv);
        else if (sl_str_eq_lit(method, "GET")) handle_get(r, srv);
        else if (sl_str_eq_lit(method, "DELETE")) handle_delete(r, srv);
        else http_rpc_error(r, 405, SL_MCP_ERR_SERVER, "Method Not Allowed");
    } else if (sl_str_eq_lit(sub, "/sse")) {
        if (sl_str_eq_lit(method, "GET")) sl_mcp_legacy_open(r, srv);
        else http_rpc_error(r, 405, SL_MCP_ERR_SERVER, "Method Not Allowed");
    } else if (sl_str_eq_lit(sub, "/message")) {
        sl_str id = query_param(hx->req.query, "sessionId");
        if (!sl_str_eq_lit(method, "POST")) http_rpc_error(r, 405, SL_MCP_ERR_SERVER, "Method Not Allowed");
        else if (!valid_sid(id)) http_rpc_error(r, 400, SL_MCP_ERR_SERVER, "Bad Request: sessionId is required");
        else if (!contains_ci(header(r, "content-type"), "application/json"))
            http_rpc_error(r, 415, SL_MCP_ERR_SERVER, "Unsupported Media Type: Content-Type must be application/json");
        else sl_mcp_dispatch_legacy(r, srv, id);
    } else {
        http_rpc_error(r, 404, SL_MCP_ERR_SERVER, "Not Found");
    }
}
