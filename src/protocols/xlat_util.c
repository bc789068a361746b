/*
 * xlat_util.c: helpers shared by the three protocol codecs: JSON member
 * access that tolerates absent/mistyped values, tool-call id resolution
 * (Gemini has no ids), data: URLs, schema rewriting, SSE framing and the
 * error shapes of each protocol.
 */
#include <stdio.h>

#include "protocols/xlat_ir.h"

int sl_xl_get(const sl_json_doc *d, int obj, const char *key)
{
    if (obj < 0 || sl_json_type_of(d, obj) != SL_JSON_OBJECT) return -1;
    return sl_json_obj_get(d, obj, key);
}

bool sl_xl_is(const sl_json_doc *d, int t, sl_json_type ty) { return t >= 0 && sl_json_type_of(d, t) == ty; }

bool sl_xl_tok_str(const sl_json_doc *d, int t, sl_arena *a, sl_str *out)
{
    *out = SL_STR_NULL;
    if (!sl_xl_is(d, t, SL_JSON_STRING)) return false;
    if (sl_json_str(d, t, a, out) != 0) {
        *out = SL_STR_NULL;
        return false;
    }
    return true;
}

bool sl_xl_str(const sl_json_doc *d, int obj, const char *key, sl_arena *a, sl_str *out)
{
    return sl_xl_tok_str(d, sl_xl_get(d, obj, key), a, out);
}

bool sl_xl_int(const sl_json_doc *d, int obj, const char *key, int64_t *out)
{
    return sl_xl_tok_int(d, sl_xl_get(d, obj, key), out);
}

bool sl_xl_tok_int(const sl_json_doc *d, int t, int64_t *out)
{
    if (!sl_xl_is(d, t, SL_JSON_NUMBER)) return false;
    if (sl_json_int(d, t, out) == 0) return true;
    double v; /* 1e3 or 12.0: accept when integral and in range */
    if (sl_json_double(d, t, &v) != 0 || v != v || v < -9e15 || v > 9e15 || v != (double)(int64_t)v) return false;
    *out = (int64_t)v;
    return true;
}

bool sl_xl_num(const sl_json_doc *d, int obj, const char *key, double *out)
{
    int t = sl_xl_get(d, obj, key);
    return sl_xl_is(d, t, SL_JSON_NUMBER) && sl_json_double(d, t, out) == 0;
}

int sl_xl_fail(sl_xl_ctx *c, const char *msg)
{
    if (!c->errmsg) c->errmsg = msg;
    return SL_EINVAL;
}

bool sl_xl_parse_object(sl_str text, sl_arena *a, sl_json_doc *doc)
{
    if (text.n == 0 || text.n > UINT32_MAX / 2) return false;
    if (sl_json_parse(doc, text.p, text.n, a, NULL, NULL) != 0) return false;
    return sl_json_type_of(doc, 0) == SL_JSON_OBJECT;
}

sl_str sl_xl_args_from_string(sl_str s, sl_arena *a)
{
    sl_json_doc doc;
    if (sl_xl_parse_object(s, a, &doc)) return s;
    /* Models sometimes emit broken arguments; an object is required on the other side. */
    return SL_STR("{}");
}

static void write_value_lower_types(sl_jw *w, const sl_json_doc *d, int t, sl_arena *a)
{
    sl_json_type ty = sl_json_type_of(d, t);
    if (ty == SL_JSON_OBJECT) {
        sl_jw_obj_begin(w);
        for (int k = sl_json_first(d, t); k >= 0; k = sl_json_next(d, k)) {
            sl_str key;
            if (!sl_xl_tok_str(d, k, a, &key)) {
                w->err = SL_ENOMEM;
                return;
            }
            int v = sl_json_member_value(k);
            sl_jw_key_str(w, key);
            sl_str tv;
            if (sl_str_eq_lit(key, "type") && sl_xl_tok_str(d, v, a, &tv)) {
                char *low = sl_arena_strndup(a, tv.p, tv.n);
                if (!low) {
                    w->err = SL_ENOMEM;
                    return;
                }
                for (size_t i = 0; i < tv.n; i++)
                    if (low[i] >= 'A' && low[i] <= 'Z') low[i] = (char)(low[i] + 32);
                sl_jw_str(w, (sl_str){low, tv.n});
            } else {
                write_value_lower_types(w, d, v, a);
            }
        }
        sl_jw_obj_end(w);
    } else if (ty == SL_JSON_ARRAY) {
        sl_jw_arr_begin(w);
        for (int e = sl_json_first(d, t); e >= 0; e = sl_json_next(d, e)) write_value_lower_types(w, d, e, a);
        sl_jw_arr_end(w);
    } else {
        sl_jw_raw(w, sl_json_raw(d, t));
    }
}

void sl_xl_write_schema(sl_jw *w, const sl_ir_tool *t, sl_arena *a)
{
    if (t->schema.n == 0) {
        sl_jw_raw(w, SL_STR("{\"type\":\"object\",\"properties\":{}}"));
        return;
    }
    if (!t->schema_openapi) {
        sl_jw_raw(w, t->schema);
        return;
    }
    sl_json_doc doc;
    if (!sl_xl_parse_object(t->schema, a, &doc)) {
        sl_jw_raw(w, SL_STR("{\"type\":\"object\",\"properties\":{}}"));
        return;
    }
    write_value_lower_types(w, &doc, 0, a);
}

sl_str sl_xl_new_call_id(sl_xl_ctx *c, sl_str prefix)
{
    uint32_t n = c->next_call_id++;
    char *s = prefix.n ? sl_arena_printf(c->a, "call_%.*s_%u", (int)SL_MIN(prefix.n, 64), prefix.p, n)
                       : sl_arena_printf(c->a, "call_%u", n);
    if (!s) return SL_STR_NULL;
    /* Keep ids within [A-Za-z0-9_-]: Anthropic rejects anything else. */
    for (char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-'))
            *p = '_';
    return sl_str_from_cstr(s);
}

#define RESOLVE_WINDOW 256 /* messages searched back for a matching call; results follow calls closely */

static sl_ir_part *find_call(sl_ir_req *r, uint32_t mi, sl_str id, sl_str name)
{
    uint32_t lo = mi > RESOLVE_WINDOW ? mi - RESOLVE_WINDOW : 0;
    for (uint32_t m = mi + 1; m-- > lo;) {
        sl_ir_msg *msg = &r->msgs[m];
        if (msg->role != SL_IR_ASSISTANT) continue;
        for (uint32_t i = 0; i < msg->nparts; i++) {
            sl_ir_part *p = &msg->parts[i];
            if (p->kind != SL_IR_TOOL_CALL) continue;
            if (id.n ? sl_str_eq(p->id, id) : (!p->matched && sl_str_eq(p->name, name))) return p;
        }
    }
    return NULL;
}

int sl_xl_resolve_tool_ids(sl_ir_req *r, sl_xl_ctx *c)
{
    sl_str prefix = c->ro ? c->ro->id_prefix : SL_STR_NULL;
    for (uint32_t m = 0; m < r->nmsgs; m++) {
        for (uint32_t i = 0; i < r->msgs[m].nparts; i++) {
            sl_ir_part *p = &r->msgs[m].parts[i];
            if (p->kind == SL_IR_TOOL_CALL && p->id.n == 0) {
                p->id = sl_xl_new_call_id(c, prefix);
                if (!p->id.p) return SL_ENOMEM;
            } else if (p->kind == SL_IR_TOOL_RESULT) {
                if (p->id.n == 0 && p->name.n == 0) return sl_xl_fail(c, "tool result without id or name");
                sl_ir_part *call = find_call(r, m, p->id, p->name);
                if (call) {
                    call->matched = true;
                    if (p->name.n == 0) p->name = call->name;
                    if (p->id.n == 0) p->id = call->id;
                } else if (p->id.n == 0) {
                    p->id = sl_xl_new_call_id(c, prefix);
                    if (!p->id.p) return SL_ENOMEM;
                } else if (p->name.n == 0) {
                    p->name = SL_STR("tool"); /* Gemini needs a name; the call is not in the history */
                }
            }
        }
    }
    return 0;
}

bool sl_xl_data_url(sl_str url, sl_str *mime, sl_str *b64)
{
    if (!sl_str_starts_with(url, SL_STR("data:"))) return false;
    const char *p = url.p + 5, *end = url.p + url.n;
    const char *comma = memchr(p, ',', (size_t)(end - p));
    if (!comma) return false;
    sl_str meta = {p, (size_t)(comma - p)};
    static const char b64tag[] = ";base64";
    if (meta.n < sizeof b64tag - 1 || memcmp(meta.p + meta.n - (sizeof b64tag - 1), b64tag, sizeof b64tag - 1) != 0)
        return false; /* only base64 payloads travel as inline data */
    meta.n -= sizeof b64tag - 1;
    const char *semi = memchr(meta.p, ';', meta.n); /* drop parameters like ;charset= */
    if (semi) meta.n = (size_t)(semi - meta.p);
    *mime = meta;
    *b64 = (sl_str){comma + 1, (size_t)(end - comma - 1)};
    return true;
}

int sl_xl_sse_begin(sl_buf *out, const char *event)
{
    int rc = 0;
    if (event) {
        rc = sl_buf_append_cstr(out, "event: ");
        if (!rc) rc = sl_buf_append_cstr(out, event);
        if (!rc) rc = sl_buf_append_cstr(out, "\n");
    }
    if (!rc) rc = sl_buf_append_cstr(out, "data: ");
    return rc;
}

int sl_xl_sse_finish(sl_buf *out, const sl_jw *w)
{
    if (w->err) return w->err;
    return sl_buf_append_cstr(out, "\n\n");
}

/* ---- errors ---- */

const char *sl_xlat_openai_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 502: return "upstream_error";
    case 503: return "service_unavailable";
    case 504: return "timeout";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

const char *sl_xlat_anthropic_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

const char *sl_xlat_gemini_error_status(int status)
{
    switch (status) {
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 502:
    case 503:
    case 529: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
    }
}

static const struct {
    const char *type;
    int status;
} type_status[] = {
    {"invalid_request_error", 400}, {"authentication_error", 401}, {"permission_error", 403},
    {"not_found_error", 404},       {"request_too_large", 413},    {"rate_limit_error", 429},
    {"api_error", 500},             {"overloaded_error", 529},     {"upstream_error", 502},
    {"service_unavailable", 503},   {"timeout", 504},              {"INVALID_ARGUMENT", 400},
    {"FAILED_PRECONDITION", 400},   {"OUT_OF_RANGE", 400},         {"UNAUTHENTICATED", 401},
    {"PERMISSION_DENIED", 403},     {"NOT_FOUND", 404},            {"RESOURCE_EXHAUSTED", 429},
    {"INTERNAL", 500},              {"UNAVAILABLE", 503},          {"DEADLINE_EXCEEDED", 504},
    {"CANCELLED", 499},             {"insufficient_quota", 429},   {"server_error", 500},
};

int sl_xl_status_from_type(sl_str type)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(type_status); i++)
        if (sl_str_eq_lit(type, type_status[i].type)) return type_status[i].status;
    return 0;
}

void sl_xl_error_body(sl_jw *w, sl_proto p, int status, const char *type, const char *code, sl_str msg)
{
    sl_jw_obj_begin(w);
    if (p == SL_PROTO_ANTHROPIC) {
        sl_jw_key(w, "type");
        sl_jw_cstr(w, "error");
        sl_jw_key(w, "error");
        sl_jw_obj_begin(w);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, sl_xlat_anthropic_error_type(status));
        sl_jw_key(w, "message");
        sl_jw_str(w, msg);
        sl_jw_obj_end(w);
    } else if (p == SL_PROTO_GEMINI) {
        sl_jw_key(w, "error");
        sl_jw_obj_begin(w);
        sl_jw_key(w, "code");
        sl_jw_int(w, status);
        sl_jw_key(w, "message");
        sl_jw_str(w, msg);
        sl_jw_key(w, "status");
        sl_jw_cstr(w, sl_xlat_gemini_error_status(status));
        sl_jw_obj_end(w);
    } else {
        sl_jw_key(w, "error");
        sl_jw_obj_begin(w);
        sl_jw_key(w, "message");
        sl_jw_str(w, msg);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, type ? type : sl_xlat_openai_error_type(status));
        sl_jw_key(w, "param");
        sl_jw_null(w);
        sl_jw_key(w, "code");
        if (code)
            sl_jw_cstr(w, code);
        else
            sl_jw_null(w);
        sl_jw_obj_end(w);
    }
    sl_jw_obj_end(w);
}

int sl_xlat_error(sl_proto to, int http_status, const char *type, const char *code, sl_str message, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_xl_error_body(&w, to, http_status, type, code, message);
    return w.err;
}

/*
 * Finds message/type in any of the three error shapes (they overlap:
 * {"error":{"message",...}} for OpenAI and Gemini, {"type":"error","error":
 * {...}} for Anthropic), so the sender's protocol matters little.
 */
static void upstream_error_fields(const sl_json_doc *d, sl_arena *a, sl_str *msg, sl_str *type, sl_str *code)
{
    int e = sl_xl_get(d, 0, "error");
    if (sl_xl_is(d, e, SL_JSON_ARRAY)) e = sl_json_first(d, e); /* some proxies wrap it in a list */
    if (!sl_xl_is(d, e, SL_JSON_OBJECT)) {
        sl_xl_str(d, 0, "message", a, msg);
        if (sl_xl_is(d, e, SL_JSON_STRING)) sl_xl_tok_str(d, e, a, msg);
        return;
    }
    sl_xl_str(d, e, "message", a, msg);
    if (!sl_xl_str(d, e, "type", a, type)) sl_xl_str(d, e, "status", a, type);
    sl_xl_str(d, e, "code", a, code);
}

int sl_xlat_error_from_upstream(sl_proto from, sl_proto to, int http_status, const char *body, size_t len,
                                sl_arena *a, sl_buf *out)
{
    SL_UNUSED(from);
    sl_str msg = SL_STR_NULL, type = SL_STR_NULL, code = SL_STR_NULL;
    sl_json_doc d;
    if (len && len < UINT32_MAX / 2 && sl_json_parse(&d, body, len, a, NULL, NULL) == 0)
        upstream_error_fields(&d, a, &msg, &type, &code);
    if (msg.n == 0) {
        char *m = sl_arena_printf(a, "upstream returned HTTP %d", http_status);
        if (!m) return SL_ENOMEM;
        msg = sl_str_from_cstr(m);
    }
    /* Keep the upstream's OpenAI-style type/code only when the caller speaks OpenAI and it is a known one. */
    const char *otype = NULL, *ocode = NULL;
    if (to == SL_PROTO_OPENAI) {
        int ts = sl_xl_status_from_type(type);
        if (ts && type.p[0] >= 'a' && type.p[0] <= 'z') otype = sl_arena_strndup(a, type.p, type.n);
        if (code.n) ocode = sl_arena_strndup(a, code.p, code.n);
    }
    return sl_xlat_error(to, http_status, otype, ocode, msg, out);
}

const char *sl_proto_name(sl_proto p)
{
    switch (p) {
    case SL_PROTO_OPENAI: return "openai";
    case SL_PROTO_ANTHROPIC: return "anthropic";
    case SL_PROTO_GEMINI: return "gemini";
    }
    return "unknown";
}

sl_str sl_xl_join(sl_arena *a, const sl_str *parts, uint32_t n, sl_str sep)
{
    if (n == 1) return parts[0];
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += parts[i].n + (i ? sep.n : 0);
    char *p = sl_arena_alloc(a, total + 1);
    if (!p) return SL_STR_NULL;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i && sep.n) memcpy(p + off, sep.p, sep.n), off += sep.n;
        if (parts[i].n) memcpy(p + off, parts[i].p, parts[i].n), off += parts[i].n;
    }
    p[off] = '\0';
    return (sl_str){p, off};
}

sl_str sl_xl_msg_text(sl_arena *a, const sl_ir_msg *m, sl_str sep)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->nparts; i++) n += m->parts[i].kind == SL_IR_TEXT;
    if (n == 0) return SL_STR("");
    sl_str *v = sl_arena_alloc(a, n * sizeof *v);
    if (!v) return SL_STR_NULL;
    n = 0;
    for (uint32_t i = 0; i < m->nparts; i++)
        if (m->parts[i].kind == SL_IR_TEXT) v[n++] = m->parts[i].text;
    return sl_xl_join(a, v, n, sep);
}
