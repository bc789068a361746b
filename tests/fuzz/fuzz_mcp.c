// fuzz-sources: src/mcp/jsonrpc.c src/mcp/template.c src/json/json_read.c src/json/json_access.c src/json/json_write.c src/json/json_splice.c src/core/sl.c src/core/arena.c src/core/buf.c
/*
 * fuzz_mcp.c: what the MCP host does with a POST body before any I/O.
 *
 * For any input: parse it as JSON-RPC the way host.c does (depth bound,
 * one message or a batch), classify every message, read the params the
 * methods read (protocolVersion, cursor, name, arguments, requestId), write
 * the result or error each would get, and render request templates with the
 * arguments in every escaping mode (URL output must be percent-encoded
 * ASCII, JSON output must parse inside a string). The same bytes are also
 * read as a stored session record. Crashes, leaks and sanitizer reports are
 * the failures; the asserts check the escaping promises.
 */
#include <stdint.h>
#include <stdlib.h>

#include "mcp/mcp_int.h"

static void check_url(const sl_buf *b)
{
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') abort(); /* an argument broke out of the URL */
    }
}

static void check_json_string(const sl_buf *b, sl_arena *a)
{
    sl_buf q;
    sl_buf_init(&q, 0);
    sl_buf_append(&q, "\"", 1);
    sl_buf_append(&q, b->p, b->len);
    sl_buf_append(&q, "\"", 1);
    sl_json_doc d;
    if (sl_json_parse(&d, q.p, q.len, a, NULL, NULL) != SL_OK) abort(); /* an argument broke out of the string */
    sl_buf_free(&q);
}

static void use_args(const sl_json_doc *d, int args, sl_arena *a)
{
    static const char *const tpls[] = {"{{args.x}}", "{{ args.y }}/{x}", "{{args.}}{{config.k}}{{response.a.0}}{{status}}"};
    sl_kv cfg[] = {{"k", "v"}};
    sl_tpl_ctx c = {.args = d, .args_tok = args, .config = cfg, .nconfig = 1, .resp = d, .resp_tok = args};
    for (size_t i = 0; i < SL_ARRAY_LEN(tpls); i++) {
        for (int mode = SL_TPL_RAW; mode <= SL_TPL_JSON; mode++) {
            sl_buf b;
            sl_buf_init(&b, 1 << 20);
            if (sl_tpl_render(sl_str_from_cstr(tpls[i]), &c, (sl_tpl_mode)mode, &b) == SL_OK && i == 0) {
                if (mode == SL_TPL_URL) check_url(&b);
                int x = sl_json_obj_get(d, args, "x");
                if (mode == SL_TPL_JSON && x >= 0 && sl_json_type_of(d, x) == SL_JSON_STRING) check_json_string(&b, a);
            }
            sl_buf_free(&b);
        }
    }
    for (int m = sl_json_first(d, args); m >= 0; m = sl_json_next(d, m)) {
        sl_str k = sl_json_str_raw(d, m);
        (void)sl_json_path(d, args, (sl_str){k.p, k.n > 1 ? k.n - 1 : 0});
    }
}

static void one_message(const sl_json_doc *d, int t, sl_arena *a)
{
    sl_rpc_msg m;
    sl_rpc_classify(d, t, a, &m);
    sl_buf out;
    sl_buf_init(&out, 1 << 20);
    if (m.kind == SL_RPC_INVALID) {
        sl_rpc_write_error(&out, m.id, SL_JSONRPC_INVALID_REQUEST, m.why);
    } else if (m.params >= 0) {
        static const char *const keys[] = {"protocolVersion", "cursor", "name", "requestId"};
        for (size_t i = 0; i < SL_ARRAY_LEN(keys); i++) {
            int v = sl_json_obj_get(d, m.params, keys[i]);
            sl_str s;
            if (v >= 0 && sl_json_type_of(d, v) == SL_JSON_STRING && sl_json_str(d, v, a, &s) == SL_OK) {
                (void)sl_mcp_version_supported(s);
                sl_mcp_write_tool_result(&out, s, SL_STR_NULL, true);
            }
        }
        int args = sl_json_obj_get(d, m.params, "arguments");
        if (args >= 0 && sl_json_type_of(d, args) == SL_JSON_OBJECT) use_args(d, args, a);
    }
    if (m.kind == SL_RPC_REQUEST) sl_rpc_write_result(&out, m.id, sl_json_raw(d, t));
    if (m.kind != SL_RPC_NOTIFICATION && out.len && out.p[out.len - 1] != '}') abort(); /* a message was cut short */
    sl_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 64u << 20);
    sl_json_doc d;
    sl_json_limits lim = {.max_depth = 64};
    if (sl_json_parse(&d, (const char *)data, size, &a, &lim, NULL) == SL_OK) {
        if (sl_json_type_of(&d, 0) == SL_JSON_ARRAY) {
            size_t n = 0;
            for (int t = sl_json_first(&d, 0); t >= 0 && n < SL_MCP_MAX_BATCH; t = sl_json_next(&d, t), n++) one_message(&d, t, &a);
        } else {
            one_message(&d, 0, &a);
        }
    }
    mcp_sess s;
    if (sl_mcp_sess_decode((sl_str){(const char *)data, size}, &a, &s) == SL_OK) {
        sl_buf b;
        sl_buf_init(&b, 1 << 20);
        sl_mcp_sess_encode(&s, SL_MCP_MAX_UPSTREAMS, &b);
        sl_buf_free(&b);
    }
    sl_arena_free(&a);
    return 0;
}
