/*
 * jsonrpc.c: JSON-RPC 2.0 messages as MCP uses them: classifying what a
 * client sent (request, notification, response, or invalid, and why),
 * writing results and errors, the session record's stored form, and the
 * protocol revisions this gateway speaks.
 */
#include <uv.h>

#include "mcp/mcp_int.h"

/* 2024-11-05 is the revision of the legacy HTTP+SSE transport, kept for its clients. */
const char *const sl_mcp_versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
const size_t sl_mcp_nversions = SL_ARRAY_LEN(sl_mcp_versions);

bool sl_mcp_version_supported(sl_str v)
{
    for (size_t i = 0; i < sl_mcp_nversions; i++)
        if (sl_str_eq_lit(v, sl_mcp_versions[i])) return true;
    return false;
}

void sl_rpc_classify(const sl_json_doc *d, int t, sl_arena *a, sl_rpc_msg *m)
{
    memset(m, 0, sizeof *m);
    m->tok = t;
    m->params = -1;
    m->id = SL_STR("null");
    if (sl_json_type_of(d, t) != SL_JSON_OBJECT) {
        m->why = "a JSON-RPC message must be an object";
        return;
    }
    int id = sl_json_obj_get(d, t, "id");
    if (id >= 0 && (sl_json_type_of(d, id) == SL_JSON_STRING || sl_json_type_of(d, id) == SL_JSON_NUMBER))
        m->id = sl_json_raw(d, id);
    int v = sl_json_obj_get(d, t, "jsonrpc");
    if (v < 0 || !sl_json_str_eq(d, v, "2.0")) {
        m->why = "jsonrpc must be \"2.0\"";
        return;
    }
    int method = sl_json_obj_get(d, t, "method");
    if (method >= 0) {
        if (sl_json_type_of(d, method) != SL_JSON_STRING || sl_json_str(d, method, a, &m->method) != SL_OK ||
            m->method.n == 0) {
            m->why = "method must be a non-empty string";
            return;
        }
        int params = sl_json_obj_get(d, t, "params");
        if (params >= 0 && sl_json_type_of(d, params) != SL_JSON_OBJECT && sl_json_type_of(d, params) != SL_JSON_ARRAY) {
            m->why = "params must be an object";
            return;
        }
        m->params = params >= 0 && sl_json_type_of(d, params) == SL_JSON_OBJECT ? params : -1;
        if (id < 0) {
            m->kind = SL_RPC_NOTIFICATION;
        } else if (sl_json_type_of(d, id) == SL_JSON_STRING || sl_json_type_of(d, id) == SL_JSON_NUMBER) {
            m->kind = SL_RPC_REQUEST;
        } else {
            m->why = "id must be a string or a number"; /* MCP: never null */
        }
        return;
    }
    bool has_result = sl_json_obj_get(d, t, "result") >= 0, has_error = sl_json_obj_get(d, t, "error") >= 0;
    if ((has_result ^ has_error) && id >= 0) {
        m->kind = SL_RPC_RESPONSE;
        return;
    }
    m->why = "not a request, notification or response";
}

static void write_head(sl_jw *w, sl_str id)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "jsonrpc"), sl_jw_cstr(w, "2.0");
    sl_jw_key(w, "id");
    if (id.n) sl_jw_raw(w, id);
    else sl_jw_null(w);
}

int sl_rpc_write_result(sl_buf *out, sl_str id, sl_str result_json)
{
    sl_jw w;
    sl_jw_init(&w, out);
    write_head(&w, id);
    sl_jw_key(&w, "result"), sl_jw_raw(&w, result_json.n ? result_json : SL_STR("{}"));
    sl_jw_obj_end(&w);
    return w.err;
}

int sl_rpc_write_error_data(sl_buf *out, sl_str id, int code, const char *msg, sl_str data_json)
{
    sl_jw w;
    sl_jw_init(&w, out);
    write_head(&w, id);
    sl_jw_key(&w, "error"), sl_jw_obj_begin(&w);
    sl_jw_key(&w, "code"), sl_jw_int(&w, code);
    sl_jw_key(&w, "message"), sl_jw_cstr(&w, msg);
    if (data_json.n) sl_jw_key(&w, "data"), sl_jw_raw(&w, data_json);
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
    return w.err;
}

int sl_rpc_write_error(sl_buf *out, sl_str id, int code, const char *msg)
{
    return sl_rpc_write_error_data(out, id, code, msg, SL_STR_NULL);
}

int sl_mcp_write_tool_result(sl_buf *out, sl_str text, sl_str structured_json, bool is_error)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "content"), sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type"), sl_jw_cstr(&w, "text");
    sl_jw_key(&w, "text"), sl_jw_str(&w, text);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    if (structured_json.n) sl_jw_key(&w, "structuredContent"), sl_jw_raw(&w, structured_json);
    sl_jw_key(&w, "isError"), sl_jw_bool(&w, is_error);
    sl_jw_obj_end(&w);
    return w.err;
}

/* ---- session record: {"v":"2025-06-18","i":true,"u":["sid",null,...],"s":"weather","c":"team-a"} ---- */

int sl_mcp_sess_encode(const mcp_sess *s, size_t nup, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "v"), sl_jw_cstr(&w, s->version);
    sl_jw_key(&w, "i"), sl_jw_bool(&w, s->initialized);
    sl_jw_key(&w, "u"), sl_jw_arr_begin(&w);
    for (size_t i = 0; i < nup && i < SL_MCP_MAX_UPSTREAMS; i++) {
        if (s->up_sid[i]) sl_jw_cstr(&w, s->up_sid[i]);
        else sl_jw_null(&w);
    }
    sl_jw_arr_end(&w);
    if (s->server) sl_jw_key(&w, "s"), sl_jw_cstr(&w, s->server);
    if (s->consumer) sl_jw_key(&w, "c"), sl_jw_cstr(&w, s->consumer);
    sl_jw_obj_end(&w);
    return w.err;
}

/* An optional string member k of the record's object, at most max bytes: *out NULL when absent. */
static int opt_name(const sl_json_doc *d, const char *k, size_t max, sl_arena *a, char **out)
{
    *out = NULL;
    int t = sl_json_obj_get(d, 0, k);
    if (t < 0) return SL_OK;
    sl_str v;
    if (sl_json_type_of(d, t) != SL_JSON_STRING || sl_json_str(d, t, a, &v) != SL_OK || v.n > max) return SL_EPARSE;
    *out = sl_arena_strndup(a, v.p, v.n);
    return *out ? SL_OK : SL_ENOMEM;
}

int sl_mcp_sess_decode(sl_str text, sl_arena *a, mcp_sess *s)
{
    memset(s, 0, sizeof *s);
    sl_json_doc d;
    if (sl_json_parse(&d, text.p, text.n, a, NULL, NULL) != SL_OK || sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return SL_EPARSE;
    int v = sl_json_obj_get(&d, 0, "v");
    sl_str vs;
    if (v < 0 || sl_json_type_of(&d, v) != SL_JSON_STRING || sl_json_str(&d, v, a, &vs) != SL_OK ||
        vs.n >= sizeof s->version)
        return SL_EPARSE;
    memcpy(s->version, vs.p, vs.n);
    s->initialized = sl_json_bool(&d, sl_json_obj_get(&d, 0, "i"), false);
    int u = sl_json_obj_get(&d, 0, "u");
    if (u >= 0 && sl_json_type_of(&d, u) == SL_JSON_ARRAY) {
        size_t i = 0;
        for (int e = sl_json_first(&d, u); e >= 0 && i < SL_MCP_MAX_UPSTREAMS; e = sl_json_next(&d, e), i++) {
            sl_str sid;
            if (sl_json_type_of(&d, e) == SL_JSON_STRING && sl_json_str(&d, e, a, &sid) == SL_OK)
                s->up_sid[i] = sl_arena_strndup(a, sid.p, sid.n);
        }
    }
    int rc = opt_name(&d, "s", SL_MCP_MAX_NAME, a, &s->server);
    return rc ? rc : opt_name(&d, "c", SL_MCP_MAX_NAME, a, &s->consumer);
}

void sl_mcp_random_id(char *out)
{
    unsigned char b[16];
    if (uv_random(NULL, NULL, b, sizeof b, 0, NULL) != 0) {
        uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 131);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) out[2 * i] = hex[b[i] >> 4], out[2 * i + 1] = hex[b[i] & 15];
    out[32] = '\0';
}
