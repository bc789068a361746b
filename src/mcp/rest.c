/*
 * rest.c: one tools/call of a REST tool (type rest or openapi): arguments
 * checked against the tool's declaration, the upstream request built from
 * the templates (path, query, header and body arguments; upstream_auth added
 * here, so credentials never pass through the model), the answer turned into
 * an MCP tool result. Failures of the upstream are results with isError:
 * true, as the MCP spec asks, not JSON-RPC errors.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"
#include "mcp/mcp_int.h"

#define REST_MAX_HEADERS 64

typedef struct rest_op {
    mcp_call *c;
    const sl_mcp_tool_cfg *t;
    const sl_mcp_server_cfg *srv;
    int args;                      /* arguments object token or -1 */
    sl_up_req *up;
    sl_buf url, body, resp;
    sl_http_header h[REST_MAX_HEADERS];
    size_t nh;
    int status;
    bool resp_too_large;
} rest_op;

static void op_free(rest_op *op)
{
    sl_buf_free(&op->url);
    sl_buf_free(&op->body);
    sl_buf_free(&op->resp);
}

/*
 * Every way out goes through deliver(): the op's buffers are freed before the
 * call completes, because completing may finish the exchange and free the
 * arena that op and c live in.
 */
static void deliver(rest_op *op, sl_buf *res)
{
    mcp_call *c = op->c;
    op_free(op);
    sl_mcp_call_result(c, sl_buf_str(res));
    sl_buf_free(res);
}

static void fail(rest_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(rest_op *op, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_mcp_write_tool_result(&b, sl_str_from_cstr(msg), SL_STR_NULL, true);
    if (!op->c->x->r->rec.error.n) op->c->x->r->rec.error = sl_arena_str(op->c->x->a, sl_str_from_cstr(msg));
    deliver(op, &b);
}

/* ---------------------------------------------------------------- arguments */

static bool type_matches(const sl_json_doc *d, int t, const char *type)
{
    sl_json_type jt = sl_json_type_of(d, t);
    if (!type || !strcmp(type, "string")) return jt == SL_JSON_STRING;
    if (!strcmp(type, "number")) return jt == SL_JSON_NUMBER;
    if (!strcmp(type, "integer")) {
        int64_t v;
        return jt == SL_JSON_NUMBER && sl_json_int(d, t, &v) == SL_OK;
    }
    if (!strcmp(type, "boolean")) return jt == SL_JSON_TRUE || jt == SL_JSON_FALSE;
    if (!strcmp(type, "array")) return jt == SL_JSON_ARRAY;
    if (!strcmp(type, "object")) return jt == SL_JSON_OBJECT;
    return true;
}

/* Checks required arguments and declared types; on a problem writes an isError result and returns false. */
static bool check_args(rest_op *op)
{
    const sl_json_doc *d = op->c->doc;
    for (size_t i = 0; i < op->t->nargs; i++) {
        const sl_mcp_arg_cfg *a = &op->t->args[i];
        int v = op->args >= 0 ? sl_json_obj_get(d, op->args, a->name) : -1;
        if (v >= 0 && sl_json_type_of(d, v) == SL_JSON_NULL) v = -1;
        if (v < 0) {
            if (a->required && !a->def) {
                fail(op, "Invalid arguments: missing required argument '%s'", a->name);
                return false;
            }
            continue;
        }
        if (!a->schema && !type_matches(d, v, a->type)) {
            fail(op, "Invalid arguments: '%s' must be of type %s", a->name, a->type ? a->type : "string");
            return false;
        }
        if (!a->schema && a->nenum && sl_json_type_of(d, v) == SL_JSON_STRING) {
            bool ok = false;
            for (size_t k = 0; k < a->nenum && !ok; k++) ok = sl_json_str_eq(d, v, a->enum_vals[k]);
            if (!ok) {
                fail(op, "Invalid arguments: '%s' is not one of the allowed values", a->name);
                return false;
            }
        }
    }
    return true;
}

/* The value of argument a as text (strings decoded, others as JSON), or its default; false when absent. */
static bool arg_text(rest_op *op, const sl_mcp_arg_cfg *a, int v, sl_str *out)
{
    const sl_json_doc *d = op->c->doc;
    if (v < 0) {
        if (!a->def) return false;
        *out = sl_str_from_cstr(a->def);
        return true;
    }
    if (sl_json_type_of(d, v) == SL_JSON_STRING) return sl_json_str(d, v, op->c->x->a, out) == SL_OK;
    *out = sl_json_raw(d, v);
    return true;
}

/* The name an argument has upstream: its key when the config gives one. */
static sl_str up_name(const sl_mcp_arg_cfg *a) { return sl_str_from_cstr(a->key ? a->key : a->name); }

static int arg_tok(rest_op *op, const sl_mcp_arg_cfg *a)
{
    int v = op->args >= 0 ? sl_json_obj_get(op->c->doc, op->args, a->name) : -1;
    return v >= 0 && sl_json_type_of(op->c->doc, v) == SL_JSON_NULL ? -1 : v;
}

static int add_query(rest_op *op, bool *first, sl_str name, sl_str value)
{
    bool has_q = memchr(op->url.p, '?', op->url.len) != NULL;
    int rc = sl_buf_append(&op->url, *first && !has_q ? "?" : "&", 1);
    *first = false;
    if (!rc) rc = sl_url_encode(&op->url, name);
    if (!rc) rc = sl_buf_append(&op->url, "=", 1);
    if (!rc) rc = sl_url_encode(&op->url, value);
    return rc;
}

static int build_query(rest_op *op)
{
    bool first = true;
    int rc = SL_OK;
    for (size_t i = 0; i < op->t->nargs && !rc; i++) {
        const sl_mcp_arg_cfg *a = &op->t->args[i];
        if (a->in != SL_MCP_IN_QUERY) continue;
        int v = arg_tok(op, a);
        const sl_json_doc *d = op->c->doc;
        if (v >= 0 && sl_json_type_of(d, v) == SL_JSON_ARRAY) { /* form style, exploded: a=1&a=2 */
            for (int e = sl_json_first(d, v); e >= 0 && !rc; e = sl_json_next(d, e)) {
                sl_str s = sl_json_raw(d, e);
                if (sl_json_type_of(d, e) == SL_JSON_STRING && sl_json_str(d, e, op->c->x->a, &s) != SL_OK) return SL_ENOMEM;
                rc = add_query(op, &first, up_name(a), s);
            }
            continue;
        }
        sl_str s;
        if (arg_text(op, a, v, &s)) rc = add_query(op, &first, up_name(a), s);
    }
    const sl_mcp_auth_cfg *au = &op->srv->auth;
    if (!rc && au->type == SL_MCP_AUTH_API_KEY && au->in == SL_MCP_IN_QUERY) {
        sl_buf v;
        sl_buf_init(&v, 1 << 16);
        sl_tpl_ctx tc = {.args_tok = -1, .config = op->srv->config, .nconfig = op->srv->nconfig, .resp_tok = -1};
        rc = sl_tpl_render(sl_str_from_cstr(au->value), &tc, SL_TPL_RAW, &v);
        if (!rc) rc = add_query(op, &first, sl_str_from_cstr(au->name), sl_buf_str(&v));
        sl_buf_free(&v);
    }
    return rc;
}

/* A header value without CR, LF or NUL (a value must not add headers). */
static sl_str clean_header(rest_op *op, sl_str v)
{
    char *p = sl_arena_strndup(op->c->x->a, v.p ? v.p : "", v.n);
    if (!p) return SL_STR_NULL;
    for (size_t i = 0; i < v.n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') p[i] = ' ';
    return (sl_str){p, v.n};
}

static int add_header(rest_op *op, sl_str name, sl_str value)
{
    if (op->nh >= REST_MAX_HEADERS) return SL_ELIMIT;
    sl_str v = clean_header(op, value);
    if (!v.p) return SL_ENOMEM;
    op->h[op->nh++] = (sl_http_header){name, v};
    return SL_OK;
}

static int render_to_arena(rest_op *op, const char *tpl, const sl_tpl_ctx *tc, sl_str *out)
{
    sl_buf b;
    sl_buf_init(&b, 1 << 20);
    int rc = sl_tpl_render(sl_str_from_cstr(tpl), tc, SL_TPL_RAW, &b);
    if (!rc) {
        *out = sl_arena_str(op->c->x->a, sl_buf_str(&b));
        if (!out->p) rc = SL_ENOMEM;
    }
    sl_buf_free(&b);
    return rc;
}

static int base64(sl_buf *out, sl_str s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = SL_OK;
    for (size_t i = 0; i < s.n && !rc; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s.p[i] << 16;
        if (i + 1 < s.n) v |= (uint32_t)(unsigned char)s.p[i + 1] << 8;
        if (i + 2 < s.n) v |= (unsigned char)s.p[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63], i + 1 < s.n ? tbl[(v >> 6) & 63] : '=',
                     i + 2 < s.n ? tbl[v & 63] : '='};
        rc = sl_buf_append(out, q, 4);
    }
    return rc;
}

static int add_auth(rest_op *op, const sl_tpl_ctx *tc)
{
    const sl_mcp_auth_cfg *au = &op->srv->auth;
    sl_str v = SL_STR_NULL;
    int rc = SL_OK;
    switch (au->type) {
    case SL_MCP_AUTH_BEARER:
        if ((rc = render_to_arena(op, au->value, tc, &v))) return rc;
        {
            char *hv = sl_arena_printf(op->c->x->a, "Bearer %.*s", SL_STR_FMT(v));
            return hv ? add_header(op, SL_STR("authorization"), sl_str_from_cstr(hv)) : SL_ENOMEM;
        }
    case SL_MCP_AUTH_API_KEY:
        if (au->in != SL_MCP_IN_HEADER) return SL_OK; /* query: added with the query */
        if ((rc = render_to_arena(op, au->value, tc, &v))) return rc;
        return add_header(op, sl_str_from_cstr(au->name), v);
    case SL_MCP_AUTH_BASIC: {
        sl_str pw = SL_STR("");
        if ((rc = render_to_arena(op, au->username, tc, &v))) return rc;
        if (au->password && (rc = render_to_arena(op, au->password, tc, &pw))) return rc;
        sl_buf up, enc;
        sl_buf_init(&up, 1 << 16), sl_buf_init(&enc, 1 << 17);
        sl_buf_append_cstr(&enc, "Basic ");
        rc = sl_buf_appendf(&up, "%.*s:%.*s", SL_STR_FMT(v), SL_STR_FMT(pw));
        if (!rc) rc = base64(&enc, sl_buf_str(&up));
        sl_str hv = rc ? SL_STR_NULL : sl_arena_str(op->c->x->a, sl_buf_str(&enc));
        sl_buf_free(&up), sl_buf_free(&enc);
        if (rc) return rc;
        return hv.p ? add_header(op, SL_STR("authorization"), hv) : SL_ENOMEM;
    }
    default: return SL_OK;
    }
}

/* Cookie arguments as one Cookie header: name=value pairs, values percent-encoded (cookie-octets only). */
static int build_cookie(rest_op *op)
{
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    int rc = SL_OK;
    for (size_t i = 0; i < op->t->nargs && !rc; i++) {
        const sl_mcp_arg_cfg *a = &op->t->args[i];
        sl_str s;
        if (a->in != SL_MCP_IN_COOKIE || !arg_text(op, a, arg_tok(op, a), &s)) continue;
        if (b.len) rc = sl_buf_append(&b, "; ", 2);
        if (!rc) rc = sl_buf_append_str(&b, up_name(a));
        if (!rc) rc = sl_buf_append(&b, "=", 1);
        if (!rc) rc = sl_url_encode(&b, s);
    }
    if (!rc && b.len) {
        sl_str v = sl_arena_str(op->c->x->a, sl_buf_str(&b));
        rc = v.p ? add_header(op, SL_STR("cookie"), v) : SL_ENOMEM;
    }
    sl_buf_free(&b);
    return rc;
}

static bool has_body_args(const sl_mcp_tool_cfg *t)
{
    for (size_t i = 0; i < t->nargs; i++)
        if (t->args[i].in == SL_MCP_IN_BODY) return true;
    return false;
}

/* Body arguments as one JSON object (absent ones skipped, defaults used). */
static int build_json_body(rest_op *op)
{
    sl_jw w;
    sl_jw_init(&w, &op->body);
    sl_jw_obj_begin(&w);
    for (size_t i = 0; i < op->t->nargs; i++) {
        const sl_mcp_arg_cfg *a = &op->t->args[i];
        if (a->in != SL_MCP_IN_BODY) continue;
        int v = arg_tok(op, a);
        if (v >= 0) {
            sl_jw_key_str(&w, up_name(a)), sl_jw_raw(&w, sl_json_raw(op->c->doc, v));
        } else if (a->def) {
            sl_jw_key_str(&w, up_name(a));
            if (a->type && strcmp(a->type, "string")) sl_jw_raw(&w, sl_str_from_cstr(a->def));
            else sl_jw_cstr(&w, a->def);
        }
    }
    sl_jw_obj_end(&w);
    return w.err;
}

static int build_form_body(rest_op *op)
{
    int rc = SL_OK;
    bool first = true;
    for (size_t i = 0; i < op->t->nargs && !rc; i++) {
        const sl_mcp_arg_cfg *a = &op->t->args[i];
        sl_str s;
        if (a->in != SL_MCP_IN_BODY || !arg_text(op, a, arg_tok(op, a), &s)) continue;
        if (!first) rc = sl_buf_append(&op->body, "&", 1);
        first = false;
        if (!rc) rc = sl_url_encode(&op->body, up_name(a));
        if (!rc) rc = sl_buf_append(&op->body, "=", 1);
        if (!rc) rc = sl_url_encode(&op->body, s);
    }
    return rc;
}

static int build_request(rest_op *op)
{
    const sl_mcp_tool_cfg *t = op->t;
    sl_tpl_ctx tc = {.args = op->c->doc, .args_tok = op->args, .config = op->srv->config, .nconfig = op->srv->nconfig,
                     .resp_tok = -1};
    int rc = sl_tpl_render(sl_str_from_cstr(t->request.url), &tc, SL_TPL_URL, &op->url);
    if (!rc) rc = build_query(op);
    if (!rc) rc = sl_buf_append(&op->url, "", 0);
    for (size_t i = 0; i < t->request.nheaders && !rc; i++) {
        sl_str v;
        if (!(rc = render_to_arena(op, t->request.headers[i].value, &tc, &v)))
            rc = add_header(op, sl_str_from_cstr(t->request.headers[i].key), v);
    }
    for (size_t i = 0; i < t->nargs && !rc; i++) {
        const sl_mcp_arg_cfg *a = &t->args[i];
        sl_str s;
        if (a->in == SL_MCP_IN_HEADER && arg_text(op, a, arg_tok(op, a), &s)) rc = add_header(op, up_name(a), s);
    }
    if (!rc) rc = build_cookie(op);
    if (!rc) rc = add_auth(op, &tc);
    const char *ct = t->request.content_type ? t->request.content_type : "application/json";
    bool form = strstr(ct, "x-www-form-urlencoded") != NULL, json = strstr(ct, "json") != NULL;
    bool body = false;
    if (!rc && t->request.body) {
        rc = sl_tpl_render(sl_str_from_cstr(t->request.body), &tc, json ? SL_TPL_JSON : SL_TPL_RAW, &op->body);
        body = true;
    } else if (!rc && has_body_args(t)) {
        rc = form ? build_form_body(op) : build_json_body(op);
        body = true;
    }
    if (!rc && body) rc = add_header(op, SL_STR("content-type"), sl_str_from_cstr(ct));
    if (!rc) rc = add_header(op, SL_STR("accept"), SL_STR("application/json, */*;q=0.5"));
    if (!rc) rc = add_header(op, SL_STR("x-request-id"), sl_str_from_cstr(op->c->x->r->request_id));
    if (!rc) rc = sl_buf_append(&op->url, "\0", 1); /* curl wants a C string */
    return rc;
}

/* ---------------------------------------------------------------- the answer */

/* Keeps the picked paths: one path gives its value, several an object keyed by path. */
static int pick_fields(const sl_mcp_tool_cfg *t, const sl_json_doc *d, sl_buf *out, bool *is_string, sl_arena *a)
{
    *is_string = false;
    if (t->response.npick == 1) {
        int v = sl_json_path(d, 0, sl_str_from_cstr(t->response.pick[0]));
        if (v < 0) return sl_buf_append_cstr(out, "null");
        if (sl_json_type_of(d, v) == SL_JSON_STRING) {
            sl_str s;
            *is_string = true;
            return sl_json_str(d, v, a, &s) ? SL_ENOMEM : sl_buf_append_str(out, s);
        }
        return sl_buf_append_str(out, sl_json_raw(d, v));
    }
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    for (size_t i = 0; i < t->response.npick; i++) {
        int v = sl_json_path(d, 0, sl_str_from_cstr(t->response.pick[i]));
        sl_jw_key(&w, t->response.pick[i]);
        if (v >= 0) sl_jw_raw(&w, sl_json_raw(d, v));
        else sl_jw_null(&w);
    }
    sl_jw_obj_end(&w);
    return w.err;
}

static void finish_success(rest_op *op)
{
    const sl_mcp_tool_cfg *t = op->t;
    sl_arena *a = op->c->x->a;
    sl_str body = sl_buf_str(&op->resp);
    sl_json_doc d;
    bool is_json = body.n && sl_json_parse(&d, body.p, body.n, a, NULL, NULL) == SL_OK;
    sl_buf text, structured;
    sl_buf_init(&text, 0);
    sl_buf_init(&structured, 0);
    int rc = SL_OK;
    if (t->response.prepend) rc = sl_buf_append_cstr(&text, t->response.prepend);
    sl_tpl_ctx tc = {.args = op->c->doc, .args_tok = op->args, .config = op->srv->config, .nconfig = op->srv->nconfig,
                     .resp = is_json ? &d : NULL, .resp_tok = is_json ? 0 : -1, .body = body, .status = op->status};
    if (!rc && t->response.template_) {
        rc = sl_tpl_render(sl_str_from_cstr(t->response.template_), &tc, SL_TPL_RAW, &text);
    } else if (!rc && t->response.npick && is_json) {
        sl_buf picked;
        sl_buf_init(&picked, 0);
        bool is_string;
        rc = pick_fields(t, &d, &picked, &is_string, a);
        if (!rc) rc = sl_buf_append(&text, picked.p, picked.len);
        if (!rc && t->output_schema && !is_string && picked.len && picked.p[0] == '{') rc = sl_buf_append(&structured, picked.p, picked.len);
        sl_buf_free(&picked);
    } else if (!rc) {
        rc = sl_buf_append_str(&text, body);
    }
    if (!rc && t->output_schema && !structured.len && is_json && sl_json_type_of(&d, 0) == SL_JSON_OBJECT)
        rc = sl_buf_append_str(&structured, body);
    if (!rc && t->response.append) rc = sl_buf_append_cstr(&text, t->response.append);
    /*
     * A tool with an output schema must return structured content (clients
     * check it against the schema): an answer that is no JSON object is
     * reported as a failed call rather than as a result the client rejects.
     */
    bool bad_shape = !rc && t->output_schema && !structured.len;
    if (bad_shape) {
        sl_buf_clear(&text);
        rc = sl_buf_appendf(&text, "upstream answer is not a JSON object, as the tool's output schema requires: %.*s",
                            (int)SL_MIN(body.n, 2000), body.p ? body.p : "");
    }
    sl_buf res;
    sl_buf_init(&res, 0);
    if (!rc) rc = sl_mcp_write_tool_result(&res, sl_buf_str(&text), sl_buf_str(&structured), bad_shape);
    sl_buf_free(&text);
    sl_buf_free(&structured);
    if (rc) {
        sl_buf_free(&res);
        fail(op, "cannot build the tool result: %s", sl_strerror(rc));
    } else {
        deliver(op, &res);
    }
}

static void finish_http_error(rest_op *op)
{
    sl_arena *a = op->c->x->a;
    sl_str body = sl_buf_str(&op->resp);
    sl_buf text;
    sl_buf_init(&text, 0);
    if (op->t->error_template) {
        sl_json_doc d;
        bool is_json = body.n && sl_json_parse(&d, body.p, body.n, a, NULL, NULL) == SL_OK;
        sl_tpl_ctx tc = {.args = op->c->doc, .args_tok = op->args, .config = op->srv->config,
                         .nconfig = op->srv->nconfig, .resp = is_json ? &d : NULL, .resp_tok = is_json ? 0 : -1,
                         .body = body, .status = op->status};
        sl_tpl_render(sl_str_from_cstr(op->t->error_template), &tc, SL_TPL_RAW, &text);
    } else {
        sl_buf_appendf(&text, "upstream returned HTTP %d", op->status);
        if (body.n) sl_buf_appendf(&text, ": %.*s", (int)SL_MIN(body.n, 2000), body.p);
    }
    sl_buf res;
    sl_buf_init(&res, 0);
    sl_mcp_write_tool_result(&res, sl_buf_str(&text), SL_STR_NULL, true);
    char *e = sl_arena_printf(a, "tool upstream HTTP %d", op->status);
    if (e && !op->c->x->r->rec.error.n) op->c->x->r->rec.error = sl_str_from_cstr(e);
    sl_buf_free(&text);
    deliver(op, &res);
}

static int up_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    rest_op *op = ud;
    op->status = status;
    return SL_OK;
}

static int up_data(void *ud, const char *p, size_t n)
{
    rest_op *op = ud;
    if (sl_buf_append(&op->resp, p, n) != SL_OK) {
        op->resp_too_large = true;
        return SL_ELIMIT;
    }
    return SL_OK;
}

static void up_done(void *ud, const sl_up_result *res)
{
    rest_op *op = ud;
    op->up = NULL;
    op->c->op = NULL, op->c->cancel = NULL;
    if (op->resp_too_large) fail(op, "upstream answer larger than %zu bytes", op->resp.max);
    else if (res->error == SL_UP_ERR_TIMEOUT_CONNECT || res->error == SL_UP_ERR_TIMEOUT_FIRST_BYTE ||
             res->error == SL_UP_ERR_TIMEOUT_IDLE || res->error == SL_UP_ERR_TIMEOUT_TOTAL)
        fail(op, "upstream timed out");
    else if (res->error != SL_UP_OK) fail(op, "upstream request failed: %s", res->detail ? res->detail : "error");
    else if (op->status >= 200 && op->status < 300) finish_success(op);
    else finish_http_error(op);
}

static const sl_up_callbacks rest_cb = {.on_head = up_head, .on_data = up_data, .on_done = up_done};

static void rest_cancel(mcp_call *c)
{
    rest_op *op = c->op;
    if (op->up) sl_up_req_cancel(op->up);
    op->up = NULL;
    op_free(op);
}

void sl_mcp_rest_call(mcp_call *c, const sl_mcp_tool_cfg *t, int args_tok)
{
    mcp_x *x = c->x;
    rest_op *op = sl_arena_calloc(x->a, sizeof *op);
    if (!op) {
        sl_mcp_call_error(c, SL_JSONRPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    op->c = c, op->t = t, op->srv = x->srv, op->args = args_tok;
    sl_buf_init(&op->url, 64 * 1024);
    sl_buf_init(&op->body, x->r->cfg->server.limits.max_body_bytes);
    sl_buf_init(&op->resp, x->mc->max_response_bytes);
    if (!check_args(op)) return;
    int rc = build_request(op);
    if (rc) {
        fail(op, "cannot build the upstream request: %s", sl_strerror(rc));
        return;
    }
    sl_up_request req = {
        .method = t->request.method ? t->request.method : "GET",
        .url = op->url.p,
        .headers = op->h,
        .nheaders = op->nh,
        .body = op->body.len ? op->body.p : NULL,
        .body_len = op->body.len,
        .connect_timeout_ms = SL_MIN(t->timeout_ms, 10000),
        .total_timeout_ms = t->timeout_ms,
    };
    c->op = op;
    c->cancel = rest_cancel;
    op->up = sl_upstream_start(x->r->gw->w->upstream, &req, &rest_cb, op);
    if (!op->up) {
        c->op = NULL, c->cancel = NULL;
        fail(op, "cannot start the upstream request");
    }
}
