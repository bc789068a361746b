/*
 * test_mcp.c: the MCP gateway's pure parts (src/mcp/): JSON-RPC message
 * classification and writing, the session record and the memory session
 * store (TTL, bound, lazy expiry), templates (escaping per mode, no second
 * expansion, paths into the answer), the `mcp` config section and its
 * checks, OpenAPI conversion (examples/openapi/petstore.yaml and error
 * cases), `openapi2mcp` output loading back as a config, tool access by
 * mcp_tools globs, and allocation failure in the converter.
 *
 * Run from the repository root (make test does): it reads examples/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "mcp/mcp_int.h"
#include "mcp/session.h"

#define PETSTORE "examples/openapi/petstore.yaml"

/* The buffer's text as a C string (tests only: appends a NUL outside len). */
static const char *sl_buf_cstr(sl_buf *b)
{
    if (sl_buf_reserve(b, 1) != SL_OK) return "";
    b->p[b->len] = '\0';
    return b->p;
}

/* ---- JSON-RPC ------------------------------------------------------------ */

typedef struct {
    const char *json;
    sl_rpc_kind kind;
    const char *method; /* or NULL */
    const char *id;     /* raw id or NULL */
} rpc_case;

static void test_rpc_classify(void **state)
{
    static const rpc_case cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", SL_RPC_REQUEST, "ping", "1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"method\":\"tools/list\",\"params\":{}}", SL_RPC_REQUEST, "tools/list", "\"a\\\"b\""},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", SL_RPC_NOTIFICATION, "notifications/initialized", NULL},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}", SL_RPC_RESPONSE, NULL, "7"},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1,\"message\":\"x\"}}", SL_RPC_RESPONSE, NULL, "7"},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", SL_RPC_INVALID, NULL, NULL},         /* MCP: never null */
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", SL_RPC_INVALID, NULL, NULL},
        {"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", SL_RPC_INVALID, NULL, "1"},
        {"{\"id\":1,\"method\":\"ping\"}", SL_RPC_INVALID, NULL, "1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", SL_RPC_INVALID, NULL, "1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", SL_RPC_INVALID, NULL, "1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":3}", SL_RPC_INVALID, NULL, "1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", SL_RPC_INVALID, NULL, "1"},
        {"{\"jsonrpc\":\"2.0\",\"result\":{}}", SL_RPC_INVALID, NULL, NULL},
        {"[1]", SL_RPC_INVALID, NULL, NULL},
        {"\"ping\"", SL_RPC_INVALID, NULL, NULL},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_arena a;
        sl_arena_init(&a, 1024, 0);
        sl_json_doc d;
        assert_int_equal(sl_json_parse(&d, cases[i].json, strlen(cases[i].json), &a, NULL, NULL), SL_OK);
        sl_rpc_msg m;
        sl_rpc_classify(&d, 0, &a, &m);
        if (m.kind != cases[i].kind) fail_msg("case %zu (%s): kind %d, want %d", i, cases[i].json, m.kind, cases[i].kind);
        if (cases[i].method) assert_true(sl_str_eq_lit(m.method, cases[i].method));
        if (cases[i].id) assert_true(sl_str_eq_lit(m.id, cases[i].id));
        else if (m.kind != SL_RPC_NOTIFICATION) assert_true(sl_str_eq_lit(m.id, "null"));
        if (m.kind == SL_RPC_INVALID) assert_non_null(m.why);
        sl_arena_free(&a);
    }
}

static void test_rpc_write(void **state)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_rpc_write_result(&b, SL_STR("\"x\""), SL_STR("{\"a\":1}")), SL_OK);
    assert_string_equal(sl_buf_cstr(&b), "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"a\":1}}");
    sl_buf_clear(&b);
    assert_int_equal(sl_rpc_write_error(&b, SL_STR_NULL, -32700, "Parse \"error\""), SL_OK);
    assert_string_equal(sl_buf_cstr(&b), "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse \\\"error\\\"\"}}");
    sl_buf_clear(&b);
    /* a refusal by the consumer's limits: the request's id, and data for clients that read it */
    assert_int_equal(sl_rpc_write_error_data(&b, SL_STR("7"), SL_MCP_ERR_RATE_LIMITED, "Rate limit reached",
                                             SL_STR("{\"limit\":\"requests_per_minute\",\"retry_after\":41}")),
                     SL_OK);
    assert_string_equal(sl_buf_cstr(&b), "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32029,\"message\":\"Rate limit "
                                         "reached\",\"data\":{\"limit\":\"requests_per_minute\",\"retry_after\":41}}}");
    sl_buf_clear(&b);
    assert_int_equal(sl_mcp_write_tool_result(&b, SL_STR("t\n"), SL_STR("{\"k\":2}"), true), SL_OK);
    assert_string_equal(sl_buf_cstr(&b),
                        "{\"content\":[{\"type\":\"text\",\"text\":\"t\\n\"}],\"structuredContent\":{\"k\":2},\"isError\":true}");
    sl_buf_free(&b);
    assert_true(sl_mcp_version_supported(SL_STR("2025-06-18")));
    assert_true(sl_mcp_version_supported(SL_STR("2024-11-05")));
    assert_false(sl_mcp_version_supported(SL_STR("2025-06-1")));
}

/* ---- session record and store --------------------------------------------- */

static void test_session_record(void **state)
{
    mcp_sess s = {0}, t;
    memcpy(s.version, "2025-11-25", 10);
    s.initialized = true;
    s.up_sid[0] = "abc";
    s.up_sid[2] = "";
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_mcp_sess_encode(&s, 3, &b), SL_OK);
    assert_string_equal(sl_buf_cstr(&b), "{\"v\":\"2025-11-25\",\"i\":true,\"u\":[\"abc\",null,\"\"]}");
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    assert_int_equal(sl_mcp_sess_decode(sl_buf_str(&b), &a, &t), SL_OK);
    assert_string_equal(t.version, "2025-11-25");
    assert_true(t.initialized);
    assert_string_equal(t.up_sid[0], "abc");
    assert_null(t.up_sid[1]);
    assert_string_equal(t.up_sid[2], "");
    assert_int_equal(sl_mcp_sess_decode(SL_STR("{}"), &a, &t), SL_EPARSE);
    assert_int_equal(sl_mcp_sess_decode(SL_STR("{\"v\":\"0123456789abcdefXYZ\"}"), &a, &t), SL_EPARSE);
    assert_int_equal(sl_mcp_sess_decode(SL_STR("nope"), &a, &t), SL_EPARSE);
    assert_null(t.server);
    sl_arena_free(&a);
    sl_buf_free(&b);
}

/* The record kept in Redis (one value per session): who opened it and where, and the bounds of decoding. */
static void test_session_record_owner(void **state)
{
    mcp_sess s = {0}, t;
    memcpy(s.version, "2025-06-18", 10);
    s.server = "hub";
    s.consumer = "team \"a\"";
    s.up_sid[1] = "up-2";
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_mcp_sess_encode(&s, 2, &b), SL_OK);
    assert_string_equal(sl_buf_cstr(&b),
                        "{\"v\":\"2025-06-18\",\"i\":false,\"u\":[null,\"up-2\"],\"s\":\"hub\",\"c\":\"team \\\"a\\\"\"}");
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    assert_int_equal(sl_mcp_sess_decode(sl_buf_str(&b), &a, &t), SL_OK);
    assert_string_equal(t.version, "2025-06-18");
    assert_false(t.initialized);
    assert_null(t.up_sid[0]);
    assert_string_equal(t.up_sid[1], "up-2");
    assert_string_equal(t.server, "hub");
    assert_string_equal(t.consumer, "team \"a\"");
    /* a record written before owners were kept: both unset (any caller on any server) */
    assert_int_equal(sl_mcp_sess_decode(SL_STR("{\"v\":\"2025-03-26\",\"i\":true,\"u\":[]}"), &a, &t), SL_OK);
    assert_null(t.server);
    assert_null(t.consumer);
    /* wrong types and names past the bound are refused */
    assert_int_equal(sl_mcp_sess_decode(SL_STR("{\"v\":\"2025-03-26\",\"s\":7}"), &a, &t), SL_EPARSE);
    assert_int_equal(sl_mcp_sess_decode(SL_STR("{\"v\":\"2025-03-26\",\"c\":null}"), &a, &t), SL_EPARSE);
    sl_buf_clear(&b);
    sl_buf_append_cstr(&b, "{\"v\":\"2025-03-26\",\"c\":\"");
    for (int i = 0; i < SL_MCP_MAX_NAME; i++) sl_buf_append(&b, "x", 1);
    sl_buf_append_cstr(&b, "\"}");
    assert_int_equal(sl_mcp_sess_decode(sl_buf_str(&b), &a, &t), SL_OK); /* exactly the bound */
    assert_int_equal((int)strlen(t.consumer), SL_MCP_MAX_NAME);
    sl_buf_clear(&b);
    sl_buf_append_cstr(&b, "{\"v\":\"2025-03-26\",\"s\":\"");
    for (int i = 0; i <= SL_MCP_MAX_NAME; i++) sl_buf_append(&b, "x", 1);
    sl_buf_append_cstr(&b, "\"}");
    assert_int_equal(sl_mcp_sess_decode(sl_buf_str(&b), &a, &t), SL_EPARSE);
    sl_arena_free(&a);
    sl_buf_free(&b);
}

typedef struct {
    int calls, rc;
    char val[64];
} store_res;

static void store_cb(void *ud, int rc, sl_str v)
{
    store_res *r = ud;
    r->calls++;
    r->rc = rc;
    snprintf(r->val, sizeof r->val, "%.*s", (int)v.n, v.p ? v.p : "");
}

static int store_teardown(void **state)
{
    sl_mcp_memory_store_clear();
    sl_mcp_memory_store_set_clock(0);
    sl_alloc_fail_after(0);
    return 0;
}

static void test_session_store(void **state)
{
    sl_mcp_store *st = sl_mcp_store_get();
    assert_ptr_equal(st->ops, &sl_mcp_memory_store_ops);
    sl_mcp_memory_store_clear();
    sl_mcp_memory_store_set_clock(1000);
    store_res r = {0};
    st->ops->put(st->self, SL_STR("s1"), SL_STR("one"), 100, 2, store_cb, &r);
    assert_int_equal(r.rc, SL_OK);
    st->ops->put(st->self, SL_STR("s2"), SL_STR("two"), 100, 2, store_cb, &r);
    st->ops->put(st->self, SL_STR("s3"), SL_STR("three"), 100, 2, store_cb, &r);
    assert_int_equal(r.rc, SL_ELIMIT); /* bounded */
    st->ops->put(st->self, SL_STR("s2"), SL_STR("TWO"), 100, 2, store_cb, &r);
    assert_int_equal(r.rc, SL_OK); /* replacing is not growing */
    assert_int_equal(sl_mcp_memory_store_count(), 2);
    st->ops->get(st->self, SL_STR("s2"), 100, store_cb, &r);
    assert_int_equal(r.rc, SL_OK);
    assert_string_equal(r.val, "TWO");
    /* s1 expires at 1100; a get at 1090 extends it to 1190 */
    sl_mcp_memory_store_set_clock(1090);
    st->ops->get(st->self, SL_STR("s1"), 100, store_cb, &r);
    assert_int_equal(r.rc, SL_OK);
    sl_mcp_memory_store_set_clock(1150);
    st->ops->get(st->self, SL_STR("s1"), 100, store_cb, &r);
    assert_int_equal(r.rc, SL_OK);
    st->ops->get(st->self, SL_STR("s2"), 100, store_cb, &r); /* expired at 1100 */
    assert_int_equal(r.rc, SL_ENOTFOUND);
    assert_int_equal(sl_mcp_memory_store_count(), 1);
    st->ops->del(st->self, SL_STR("s1"), store_cb, &r);
    assert_int_equal(r.rc, SL_OK);
    st->ops->del(st->self, SL_STR("s1"), store_cb, &r);
    assert_int_equal(r.rc, SL_ENOTFOUND);
    /* allocation failure: reported, nothing kept */
    sl_alloc_fail_after(1);
    st->ops->put(st->self, SL_STR("s4"), SL_STR("x"), 100, 0, store_cb, &r);
    assert_int_equal(r.rc, SL_ENOMEM);
    sl_alloc_fail_after(0);
    assert_int_equal(sl_mcp_memory_store_count(), 0);
}

/* ---- templates -------------------------------------------------------------- */

static void render(const char *tpl, sl_tpl_mode mode, const char *args, const char *resp, const char *want)
{
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    sl_json_doc ad, rd;
    int at = -1, rt = -1;
    if (args) assert_int_equal(sl_json_parse(&ad, args, strlen(args), &a, NULL, NULL), SL_OK), at = 0;
    if (resp) assert_int_equal(sl_json_parse(&rd, resp, strlen(resp), &a, NULL, NULL), SL_OK), rt = 0;
    sl_kv cfg[] = {{"key", "s3cr{{args.x}}t"}, {"base", "http://h:1/p"}};
    sl_tpl_ctx c = {.args = args ? &ad : NULL, .args_tok = at, .config = cfg, .nconfig = 2,
                    .resp = resp ? &rd : NULL, .resp_tok = rt, .body = SL_STR("raw body"), .status = 418};
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_tpl_render(sl_str_from_cstr(tpl), &c, mode, &b), SL_OK);
    if (strcmp(sl_buf_cstr(&b), want)) fail_msg("render %s: got '%s', want '%s'", tpl, sl_buf_cstr(&b), want);
    sl_buf_free(&b);
    sl_arena_free(&a);
}

static void test_templates(void **state)
{
    const char *args = "{\"x\":\"a b/&\\\"{{config.key}}\",\"n\":5,\"o\":{\"k\":[1,2]},\"t\":true}";
    render("{{base}}{{config.base}}/{{args.x}}?n={{ args.n }}", SL_TPL_URL, args, NULL,
           "http://h:1/p/a%20b%2F%26%22%7B%7Bconfig.key%7D%7D?n=5");
    render("/pets/{x}/{n}/{missing}", SL_TPL_URL, args, NULL, "/pets/a%20b%2F%26%22%7B%7Bconfig.key%7D%7D/5/");
    render("{\"q\":\"{{args.x}}\",\"n\":{{args.n}},\"o\":{{args.o}},\"t\":{{args.t}}}", SL_TPL_JSON, args, NULL,
           "{\"q\":\"a b/&\\\"{{config.key}}\",\"n\":5,\"o\":{\"k\":[1,2]},\"t\":true}");
    render("{{args.x}}|{{config.key}}", SL_TPL_RAW, args, NULL, "a b/&\"{{config.key}}|s3cr{{args.x}}t"); /* one pass */
    render("{{response.a.b.1}} {{response.a.c}} {{response}} {{status}} {{body}} {{nope}} {{", SL_TPL_RAW, NULL,
           "{\"a\":{\"b\":[\"x\",\"y\"],\"c\":{\"d\":null}}}",
           "y {\"d\":null} {\"a\":{\"b\":[\"x\",\"y\"],\"c\":{\"d\":null}}} 418 raw body  {{");
    render("{single}", SL_TPL_RAW, args, NULL, "{single}"); /* {x} is a path argument only in URLs */

    sl_buf b;
    sl_buf_init(&b, 0);
    sl_url_encode(&b, SL_STR("AZaz09-_.~ /%\xc3\xa9"));
    assert_string_equal(sl_buf_cstr(&b), "AZaz09-_.~%20%2F%25%C3%A9");
    sl_buf_free(&b);
    sl_arena a;
    sl_arena_init(&a, 1024, 0);
    sl_json_doc d;
    const char *j = "{\"a\":[{\"b\":1},{\"b\":2}]}";
    assert_int_equal(sl_json_parse(&d, j, strlen(j), &a, NULL, NULL), SL_OK);
    assert_true(sl_str_eq_lit(sl_json_raw(&d, sl_json_path(&d, 0, SL_STR("a.1.b"))), "2"));
    assert_int_equal(sl_json_path(&d, 0, SL_STR("a.2.b")), -1);
    assert_int_equal(sl_json_path(&d, 0, SL_STR("a.x")), -1);
    assert_int_equal(sl_json_path(&d, 0, SL_STR("a.0.b.c")), -1);
    sl_arena_free(&a);
}

/* ---- configuration ------------------------------------------------------------ */

static int load(const char *yaml, sl_config **c, sl_buf *e)
{
    sl_buf_init(e, 0);
    return sl_config_load_string("t.yaml", yaml, strlen(yaml), c, e);
}

static void test_config_section(void **state)
{
    const char *ok = "mcp:\n"
                     "  page_size: 7\n"
                     "  servers:\n"
                     "    - name: w\n"
                     "      upstream_auth: { type: basic, username: u, password: p }\n"
                     "      tools:\n"
                     "        - name: t\n"
                     "          args:\n"
                     "            - { name: id, type: integer, required: true }\n"
                     "            - { name: q }\n"
                     "            - { name: h, in: header, key: X-H, enum: [a, b], default: a }\n"
                     "            - { name: c, in: cookie }\n"
                     "          request: { url: \"http://x/{id}\" }\n"
                     "        - name: u\n"
                     "          args: [ { name: v, type: number } ]\n"
                     "          request: { method: POST, url: \"http://x/\" }\n"
                     "    - name: p\n"
                     "      type: proxy\n"
                     "      upstreams: [ { name: a, url: \"http://u/mcp\" }, { name: b, url: \"http://v/sse\", transport: sse, prefix: \"\" } ]\n";
    sl_config *c = NULL;
    sl_buf e;
    int rc = load(ok, &c, &e);
    if (rc) fail_msg("%s", e.p);
    const sl_mcp_cfg *m = c->mcp;
    assert_int_equal(m->page_size, 7);
    assert_int_equal(m->session_ttl_ms, 3600000);
    const sl_mcp_server_cfg *w = sl_mcp_find_server(m, SL_STR("w"));
    assert_non_null(w);
    assert_int_equal(w->auth.type, SL_MCP_AUTH_BASIC);
    const sl_mcp_tool_cfg *t = &w->tools[0];
    assert_int_equal(t->args[0].in, SL_MCP_IN_PATH);  /* auto: the URL names it */
    assert_int_equal(t->args[1].in, SL_MCP_IN_QUERY); /* auto: GET */
    assert_string_equal(t->args[2].key, "X-H");
    assert_int_equal(t->args[3].in, SL_MCP_IN_COOKIE);
    assert_int_equal(w->tools[1].args[0].in, SL_MCP_IN_BODY); /* auto: POST */
    assert_string_equal(t->input_schema,
                        "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"q\":{\"type\":\"string\"},"
                        "\"h\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"],\"default\":\"a\"},\"c\":{\"type\":\"string\"}},"
                        "\"required\":[\"id\"]}");
    const sl_mcp_server_cfg *p = sl_mcp_find_server(m, SL_STR("p"));
    assert_string_equal(p->upstreams[0].prefix, "a_");
    assert_string_equal(p->upstreams[1].prefix, "");
    assert_int_equal(p->upstreams[1].transport, SL_MCP_UP_SSE);
    assert_null(sl_mcp_find_server(m, SL_STR("nope")));
    sl_config_release(c);
    sl_buf_free(&e);

    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"mcp: { servers: [ { name: \"a b\", tools: [] } ] }\n", "use 1-64 letters"},
        {"mcp: { servers: [ { name: a }, { name: a } ] }\n", "duplicate server name"},
        {"mcp: { servers: [ { name: a, tools: [ { name: t, request: { url: \"http://x\" } }, { name: t, request: { url: \"http://y\" } } ] } ] }\n",
         "duplicate tool name"},
        {"mcp: { servers: [ { name: a, tools: [ { name: t, request: { url: \"ftp://x\" } } ] } ] }\n", "must start with http"},
        {"mcp: { servers: [ { name: a, tools: [ { name: t, request: { method: FETCH, url: \"http://x\" } } ] } ] }\n",
         "is not an HTTP method"},
        {"mcp: { servers: [ { name: a, tools: [ { name: t, args: [ { name: x, type: float } ], request: { url: \"http://x\" } } ] } ] }\n",
         "must be one of string"},
        {"mcp: { servers: [ { name: a, tools: [ { name: t, args: [ { name: x }, { name: x } ], request: { url: \"http://x\" } } ] } ] }\n",
         "duplicate argument"},
        {"mcp: { servers: [ { name: a, type: openapi } ] }\n", "missing required key 'spec'"},
        {"mcp: { servers: [ { name: a, type: openapi, spec: /nonexistent.yaml } ] }\n", "cannot open"},
        {"mcp: { servers: [ { name: a, type: proxy } ] }\n", "needs at least one upstream"},
        {"mcp: { servers: [ { name: a, upstream_auth: { type: bearer } } ] }\n", "value is required"},
        {"mcp: { servers: [ { name: a, upstream_auth: { type: api_key, value: v, name: n, in: body } } ] }\n", "header or query"},
        {"mcp: { page_size: 0 }\n", "page_size"},
        {"mcp: { servers: [ { name: a, bogus: 1 } ] }\n", "bogus"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        c = NULL;
        rc = load(bad[i].yaml, &c, &e);
        if (rc != SL_EPARSE || !e.p || !strstr(e.p, bad[i].want))
            fail_msg("case %zu: rc %d, errors:\n%s\nwanted '%s'", i, rc, e.p ? e.p : "", bad[i].want);
        sl_buf_free(&e);
    }
}

/* ---- OpenAPI ------------------------------------------------------------------ */

static const sl_mcp_tool_cfg *tool(const sl_openapi_result *r, const char *name)
{
    for (size_t i = 0; i < r->ntools; i++)
        if (!strcmp(r->tools[i].name, name)) return &r->tools[i];
    fail_msg("no tool %s", name);
    return NULL;
}

static const sl_mcp_arg_cfg *arg(const sl_mcp_tool_cfg *t, const char *name)
{
    for (size_t i = 0; i < t->nargs; i++)
        if (!strcmp(t->args[i].name, name)) return &t->args[i];
    fail_msg("tool %s: no argument %s", t->name, name);
    return NULL;
}

static void test_openapi_petstore(void **state)
{
    sl_arena a;
    sl_arena_init(&a, 64 * 1024, 0);
    sl_buf errs;
    sl_buf_init(&errs, 0);
    sl_openapi_result r;
    int rc = sl_openapi_convert_file(&a, PETSTORE, "ps_", NULL, &r, &errs);
    if (rc) fail_msg("%s", errs.p);
    assert_int_equal(r.ntools, 5);
    assert_string_equal(r.title, "Petstore");
    assert_string_equal(r.base_url, "http://127.0.0.1:9001/v1"); /* server variable default */
    assert_int_equal(r.auth.type, SL_MCP_AUTH_API_KEY);
    assert_int_equal(r.auth.in, SL_MCP_IN_HEADER);
    assert_string_equal(r.auth.name, "X-API-Key");
    assert_string_equal(r.auth.value, "{{config.petKey}}");

    const sl_mcp_tool_cfg *get = tool(&r, "ps_getPetById");
    assert_string_equal(get->request.method, "GET");
    assert_string_equal(get->request.url, "http://127.0.0.1:9001/v1/pets/{id}");
    assert_int_equal(arg(get, "id")->in, SL_MCP_IN_PATH);
    assert_true(arg(get, "id")->required);
    assert_int_equal(arg(get, "locale")->in, SL_MCP_IN_COOKIE);
    assert_non_null(get->output_schema);
    assert_non_null(strstr(get->output_schema, "\"required\":[\"id\",\"name\"]"));

    const sl_mcp_tool_cfg *upd = tool(&r, "ps_updatePet");
    const sl_mcp_arg_cfg *idb = arg(upd, "id_body"); /* named like the path parameter */
    assert_string_equal(idb->key, "id");             /* ... and sent upstream as "id" */
    assert_int_equal(idb->in, SL_MCP_IN_BODY);
    assert_true(idb->required);
    assert_null(arg(upd, "name")->key);
    assert_string_equal(upd->description, "Replace a pet\n\nThe body repeats the pet's id.");

    const sl_mcp_tool_cfg *list = tool(&r, "ps_listPets");
    assert_null(list->output_schema); /* an array is no structuredContent */
    assert_int_equal(arg(list, "limit")->in, SL_MCP_IN_QUERY);
    assert_string_equal(arg(list, "limit")->type, "integer");
    assert_int_equal(arg(tool(&r, "ps_deletePet"), "X-Reason")->in, SL_MCP_IN_HEADER);
    const sl_mcp_tool_cfg *add = tool(&r, "ps_addPet");
    assert_true(arg(add, "name")->required);
    assert_false(arg(add, "tag")->required);
    assert_non_null(strstr(add->input_schema, "\"enum\":[\"available\",\"pending\",\"sold\"]"));

    /* The YAML entry loads back as a config, with the same tools. */
    sl_buf y, cfg;
    sl_buf_init(&y, 0);
    sl_buf_init(&cfg, 0);
    assert_int_equal(sl_openapi_write_yaml(&r, "pets", &y), SL_OK);
    sl_buf_append_cstr(&cfg, "mcp:\n  servers:\n");
    for (char *line = strtok(y.p, "\n"); line; line = strtok(NULL, "\n")) sl_buf_appendf(&cfg, "    %s\n", line);
    sl_config *c = NULL;
    sl_buf e;
    sl_buf_init(&e, 0);
    setenv("MCP_petKey", "k", 1);
    rc = sl_config_load_string("gen.yaml", cfg.p, cfg.len, &c, &e);
    if (rc) fail_msg("%s\n%s", e.p, cfg.p);
    const sl_mcp_server_cfg *s = sl_mcp_find_server(c->mcp, SL_STR("pets"));
    assert_int_equal(s->ntools, 5);
    for (size_t i = 0; i < s->ntools; i++) {
        const sl_mcp_tool_cfg *o = tool(&r, s->tools[i].name);
        assert_string_equal(s->tools[i].input_schema, o->input_schema);
        if (o->output_schema) assert_string_equal(s->tools[i].output_schema, o->output_schema);
    }
    sl_config_release(c);
    sl_buf_free(&e);
    sl_buf_free(&y);
    sl_buf_free(&cfg);
    sl_buf_free(&errs);
    sl_arena_free(&a);
}

static void test_openapi_errors(void **state)
{
    static const struct {
        const char *doc, *want;
    } cases[] = {
        {"swagger: \"2.0\"\npaths: {}\n", "this is Swagger 2"},
        {"openapi: 3.0.0\nservers: [ { url: /rel } ]\npaths: { /a: { get: {} } }\n", "give base_url"},
        {"openapi: 3.1.0\nservers: [ { url: \"http://h\" } ]\npaths: {}\n", "no operations"},
        {"openapi: 3.1.0\nservers: [ { url: \"http://h\" } ]\npaths: { /a: { get: { operationId: x } }, /b: { get: { operationId: x } } }\n",
         "duplicate tool name 'x'"},
        {"openapi: 3.1.0\nservers: [ { url: \"http://h\" } ]\npaths: { /a: { get: { parameters: [ { name: p, in: body } ] } } }\n",
         "unknown location"},
        {"[1, 2]\n", "not an OpenAPI document"},
        {"openapi: [\n", "line"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_arena a;
        sl_arena_init(&a, 4096, 0);
        sl_buf e;
        sl_buf_init(&e, 0);
        sl_openapi_result r;
        int rc = sl_openapi_convert(&a, cases[i].doc, strlen(cases[i].doc), NULL, NULL, &r, &e);
        if (rc != SL_EPARSE || !e.p || !strstr(e.p, cases[i].want))
            fail_msg("case %zu: rc %d, errors '%s', wanted '%s'", i, rc, e.p ? e.p : "", cases[i].want);
        sl_buf_free(&e);
        sl_arena_free(&a);
    }
    /* names from method and path when there is no operationId; $ref cycles end */
    const char *doc = "openapi: 3.0.0\nservers: [ { url: \"http://h/\" } ]\n"
                      "paths:\n  /a/{id}/b:\n    post:\n      requestBody:\n        content:\n          application/json:\n"
                      "            schema: { $ref: \"#/components/schemas/N\" }\n"
                      "components:\n  schemas:\n    N: { type: object, properties: { next: { $ref: \"#/components/schemas/N\" } } }\n";
    sl_arena a;
    sl_arena_init(&a, 4096, 0);
    sl_openapi_result r;
    assert_int_equal(sl_openapi_convert(&a, doc, strlen(doc), NULL, NULL, &r, NULL), SL_OK);
    assert_string_equal(r.tools[0].name, "post_a_id_b");
    assert_string_equal(r.tools[0].request.url, "http://h/a/{id}/b");
    assert_string_equal(r.tools[0].args[0].name, "next");
    sl_arena_free(&a);
}

static void test_openapi_alloc_failure(void **state)
{
    for (long n = 1;; n++) {
        sl_arena a;
        sl_arena_init(&a, 4096, 0);
        sl_openapi_result r;
        sl_alloc_fail_after(n);
        int rc = sl_openapi_convert_file(&a, PETSTORE, NULL, NULL, &r, NULL);
        sl_alloc_fail_after(0);
        sl_arena_free(&a);
        if (rc == SL_OK) break;
        if (rc != SL_ENOMEM && rc != SL_EPARSE) fail_msg("allocation %ld: rc %d", n, rc);
        assert_true(n < 100000);
    }
}

/* ---- access ---------------------------------------------------------------------- */

static void test_tool_access(void **state)
{
    char *globs[] = {"weather/get_*", "hub/*"};
    sl_consumer_cfg alice = {.name = "alice", .mcp_tools = globs, .nmcp_tools = 2}, bob = {.name = "bob"};
    sl_gw_req r = {0};
    assert_true(sl_mcp_tool_allowed(&r, SL_STR("weather"), SL_STR("anything"))); /* no consumer */
    r.consumer = &bob;
    assert_true(sl_mcp_tool_allowed(&r, SL_STR("weather"), SL_STR("anything"))); /* no mcp_tools */
    r.consumer = &alice;
    assert_true(sl_mcp_tool_allowed(&r, SL_STR("weather"), SL_STR("get_text")));
    assert_false(sl_mcp_tool_allowed(&r, SL_STR("weather"), SL_STR("admin")));
    assert_true(sl_mcp_tool_allowed(&r, SL_STR("hub"), SL_STR("ev_echo")));
    assert_false(sl_mcp_tool_allowed(&r, SL_STR("other"), SL_STR("get_x")));
    char big[600];
    memset(big, 'a', sizeof big);
    assert_false(sl_mcp_tool_allowed(&r, SL_STR("hub"), (sl_str){big, sizeof big}));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpc_classify),
        cmocka_unit_test(test_rpc_write),
        cmocka_unit_test(test_session_record),
        cmocka_unit_test(test_session_record_owner),
        cmocka_unit_test_teardown(test_session_store, store_teardown),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_config_section),
        cmocka_unit_test(test_openapi_petstore),
        cmocka_unit_test(test_openapi_errors),
        cmocka_unit_test_teardown(test_openapi_alloc_failure, store_teardown),
        cmocka_unit_test(test_tool_access),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
