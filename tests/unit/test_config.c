/*
 * test_config.c: the configuration loader (SPEC §2): the built-in default and
 * every examples/ YAML file loads; each class of error names FILE:LINE:COL;
 * ${VAR} expansion; lookups; fallback loops; defaults; allocation failure;
 * and the key tables agree with docs/configuration.md.
 *
 * Run from the repository root (make test does): it reads examples/ and docs/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "config/config_keys.h"
#include "core/buf.h"

/* Loads text; returns the rc and leaves the error text in *errs (caller frees). */
static int load(const char *yaml, sl_config **out, sl_buf *errs)
{
    sl_buf_init(errs, 0);
    return sl_config_load_string("t.yaml", yaml, strlen(yaml), out, errs);
}

/* Asserts that yaml fails and that its error output is exactly want. */
static void expect_errors(const char *yaml, const char *want)
{
    sl_config *c = (sl_config *)1;
    sl_buf e;
    int rc = load(yaml, &c, &e);
    assert_int_equal(rc, SL_EPARSE);
    assert_null(c);
    assert_non_null(e.p);
    assert_string_equal(e.p, want);
    sl_buf_free(&e);
}

static sl_config *load_ok(const char *yaml)
{
    sl_config *c = NULL;
    sl_buf e;
    int rc = load(yaml, &c, &e);
    if (rc) fprintf(stderr, "unexpected errors:\n%s", e.p ? e.p : "(none)\n");
    assert_int_equal(rc, SL_OK);
    assert_non_null(c);
    sl_buf_free(&e);
    return c;
}

#define MOCK_PROVIDER "providers:\n  - {name: mock, type: openai-compatible, base_url: \"http://127.0.0.1:9999/v1\"}\n"

/* ---- loads --------------------------------------------------------------- */

static void test_builtin(void **state)
{
    sl_config *c = load_ok(sl_config_builtin_yaml);
    assert_int_equal(c->server.nlisten, 1);
    assert_string_equal(c->server.listen[0].host, "127.0.0.1");
    assert_int_equal(c->server.listen[0].port, 8080);
    assert_true(c->server.has_admin);
    assert_string_equal(c->server.admin_listen.host, "127.0.0.1");
    assert_int_equal(c->server.admin_listen.port, 9901);
    assert_int_equal(c->nproviders, 1);
    const sl_provider_cfg *p = sl_config_find_provider(c, SL_STR("mock"));
    assert_non_null(p);
    assert_string_equal(p->type, "openai-compatible");
    assert_int_equal(p->proto, SL_PROTO_OPENAI);
    assert_string_equal(p->base_url, "http://127.0.0.1:9999/v1");
    assert_int_equal(p->napi_keys, 0);
    const sl_model_cfg *m = sl_config_find_model(c, SL_STR("demo-chat"));
    assert_non_null(m);
    assert_true(m->is_glob);
    assert_int_equal(m->ntargets, 1);
    assert_ptr_equal(m->targets[0].provider, p);
    assert_null(m->targets[0].model);
    assert_null(sl_config_find_model(c, SL_STR("gpt-4o")));
    sl_config_release(c);
}

static void test_examples_load(void **state)
{
    glob_t g;
    assert_int_equal(glob("examples/*.yaml", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    bool quickstart = false;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        sl_config *c = NULL;
        sl_buf e;
        sl_buf_init(&e, 0);
        int rc = sl_config_load_file(g.gl_pathv[i], &c, &e);
        if (rc) fprintf(stderr, "%s:\n%s", g.gl_pathv[i], e.p ? e.p : "");
        assert_int_equal(rc, SL_OK);
        if (strstr(g.gl_pathv[i], "quickstart")) {
            quickstart = true;
            const sl_model_cfg *m = sl_config_find_model(c, SL_STR("claude-sonnet-4-5"));
            assert_non_null(m);
            assert_string_equal(m->targets[0].provider->name, "anthropic");
            assert_int_equal(m->targets[0].provider->proto, SL_PROTO_ANTHROPIC);
            assert_string_equal(sl_config_find_model(c, SL_STR("demo-x"))->targets[0].provider->name, "mock");
            assert_string_equal(sl_config_find_model(c, SL_STR("qwen-max"))->targets[0].provider->base_url,
                                "https://dashscope.aliyuncs.com/compatible-mode/v1");
        }
        sl_config_release(c);
        sl_buf_free(&e);
    }
    assert_true(quickstart);
    globfree(&g);
}

static void test_empty_file_gives_defaults(void **state)
{
    sl_config *c = load_ok("");
    assert_int_equal(c->server.nlisten, 1);
    assert_int_equal(c->server.listen[0].port, 8080);
    assert_false(c->server.has_admin);
    assert_int_equal(c->nproviders, 0);
    assert_int_equal(c->nmodels, 0);
    assert_null(c->server.access_log);
    sl_config_release(c);
}

static void test_limits_defaults(void **state)
{
    sl_config *c = load_ok("server: { limits: { max_headers: 50 } }\n");
    const sl_limits_cfg *l = &c->server.limits;
    assert_int_equal(l->max_header_bytes, 16384);
    assert_int_equal(l->max_headers, 50);
    assert_int_equal(l->max_body_bytes, 33554432);
    assert_int_equal(l->header_timeout_ms, 10000);
    assert_int_equal(l->idle_timeout_ms, 75000);
    assert_int_equal(l->max_connections, 100000);
    assert_int_equal(c->server.workers, 0);
    assert_int_equal(c->server.drain_timeout_ms, 30000);
    sl_config_release(c);
}

static void test_provider_and_model_defaults(void **state)
{
    sl_config *c = load_ok("providers:\n  - name: a\n    type: anthropic\n"
                           "models:\n  - name: m\n    targets: [{provider: a}]\n");
    const sl_provider_cfg *p = &c->providers[0];
    assert_string_equal(p->base_url, "https://api.anthropic.com/v1");
    assert_string_equal(p->api_version, "2024-10-21");
    assert_int_equal(p->timeouts.connect_ms, 5000);
    assert_int_equal(p->timeouts.first_token_ms, 60000);
    assert_int_equal(p->timeouts.idle_ms, 60000);
    assert_int_equal(p->timeouts.total_ms, 600000);
    assert_int_equal(p->max_connections, 1024);
    const sl_model_cfg *m = &c->models[0];
    assert_false(m->is_glob);
    assert_int_equal(m->targets[0].weight, 1);
    assert_int_equal(m->balance, SL_BALANCE_WEIGHTED);
    assert_int_equal(m->retry.attempts, 2);
    assert_int_equal(m->retry.on_flags, SL_RETRY_ON_TIMEOUT | SL_RETRY_ON_CONNECT);
    assert_int_equal(m->retry.non_status, 5);
    const uint16_t want[] = {429, 500, 502, 503, 504};
    for (size_t i = 0; i < 5; i++) assert_int_equal(m->retry.on_status[i], want[i]);
    assert_int_equal(m->nfallbacks, 0);
    assert_int_equal(m->default_max_tokens, 0);
    sl_config_release(c);
}

static void test_full_values(void **state)
{
    sl_config *c = load_ok("server:\n"
                           "  listen: [\"[::1]:8081\", \"0.0.0.0:0\", \"localhost:80\"]\n"
                           "  admin_listen: off\n"
                           "  access_log: /tmp/a.log\n"
                           "providers:\n"
                           "  - name: az\n    type: azure\n    base_url: \"https://x.openai.azure.com///\"\n"
                           "    headers: {X-A: b, X-Empty: \"\"}\n    api_version: \"2025-01-01\"\n"
                           "  - {name: g, type: gemini, timeouts: {total_ms: 1000}}\n"
                           "models:\n"
                           "  - name: m\n    targets:\n      - {provider: az, model: dep, weight: 3}\n"
                           "      - {provider: g}\n"
                           "    balance: least_request\n    retry: {attempts: 1, on: [429, 429, connect]}\n"
                           "    defaults: {max_tokens: 4096}\n");
    assert_int_equal(c->server.nlisten, 3);
    assert_string_equal(c->server.listen[0].host, "::1");
    assert_int_equal(c->server.listen[0].port, 8081);
    assert_int_equal(c->server.listen[1].port, 0);
    assert_string_equal(c->server.listen[2].host, "localhost");
    assert_false(c->server.has_admin);
    assert_string_equal(c->server.access_log, "/tmp/a.log");
    assert_string_equal(c->providers[0].base_url, "https://x.openai.azure.com");
    assert_int_equal(c->providers[0].nheaders, 1);
    assert_string_equal(c->providers[0].headers[0].key, "X-A");
    assert_string_equal(c->providers[0].api_version, "2025-01-01");
    assert_int_equal(c->providers[1].proto, SL_PROTO_GEMINI);
    assert_int_equal(c->providers[1].index, 1);
    assert_int_equal(c->providers[1].timeouts.total_ms, 1000);
    assert_int_equal(c->providers[1].timeouts.connect_ms, 5000);
    const sl_model_cfg *m = &c->models[0];
    assert_int_equal(m->ntargets, 2);
    assert_string_equal(m->targets[0].model, "dep");
    assert_int_equal(m->targets[0].weight, 3);
    assert_int_equal(m->balance, SL_BALANCE_LEAST_REQUEST);
    assert_int_equal(m->retry.attempts, 1);
    assert_int_equal(m->retry.non_status, 1);
    assert_int_equal(m->retry.on_flags, SL_RETRY_ON_CONNECT);
    assert_int_equal(m->default_max_tokens, 4096);
    sl_config_release(c);
}

/* ---- errors -------------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    expect_errors("server:\n  limits:\n    foo: 1\n", "t.yaml:3:5: unknown key 'foo' in server.limits\n");
    expect_errors("nonsense: {backend: memory}\n", "t.yaml:1:1: unknown key 'nonsense' at the top level\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock, wieght: 2}]}\n",
                  "t.yaml:4:42: unknown key 'wieght' in models[0].targets[0]\n");
}

static void test_type_and_bound_errors(void **state)
{
    expect_errors("server:\n  workers: many\n", "t.yaml:2:12: server.workers: expected a number\n");
    expect_errors("server:\n  workers: -1\n", "t.yaml:2:12: server.workers: must be between 0 and 1024\n");
    expect_errors("server: {limits: {max_headers: 99999999999999999999999}}\n",
                  "t.yaml:1:32: server.limits.max_headers: must be between 8 and 10000\n");
    expect_errors("server: {limits: [1]}\n", "t.yaml:1:18: server.limits: expected a mapping\n");
    expect_errors("server: {listen: \"::1:80\"}\n",
                  "t.yaml:1:18: server.listen: '::1:80': IPv6 addresses need brackets, as in \"[::1]:8080\"\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock}], balance: random}\n",
                  "t.yaml:4:53: models[0].balance: must be one of: weighted, least_request, latency, "
                  "prefix_cache, metrics\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock}], retry: {attempts: 11, on: [399, x]}}\n",
                  "t.yaml:4:62: models[0].retry.attempts: must be between 1 and 10\n"
                  "t.yaml:4:71: models[0].retry.on: must be between 400 and 599\n"
                  "t.yaml:4:76: models[0].retry.on: expected an HTTP status (400-599), timeout or connect\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock}], retry: {on: 99999999999999999999999}}\n",
                  "t.yaml:4:56: models[0].retry.on: must be between 400 and 599\n");
}

static void test_provider_errors(void **state)
{
    expect_errors("providers:\n  - {name: a, type: azure}\n",
                  "t.yaml:2:5: missing required key 'base_url' in providers[0] (type azure has no default)\n");
    expect_errors("providers:\n  - {name: a, type: openai}\n  - {name: a, type: openai}\n",
                  "t.yaml:3:12: providers[1].name: duplicate provider name 'a' (first at providers[0])\n");
    expect_errors("providers:\n  - {type: openai, base_url: \"ftp://x\"}\n",
                  "t.yaml:2:5: missing required key 'name' in providers[0]\n"
                  "t.yaml:2:30: providers[0].base_url: must start with http:// or https://\n");
    expect_errors("providers:\n  - {name: a, type: openai, headers: {\"bad header\": x}}\n",
                  "t.yaml:2:39: providers[0].headers: 'bad header' is not a valid header name\n");
}

static void test_model_errors(void **state)
{
    /* the unknown provider is reported at its name */
    expect_errors(MOCK_PROVIDER "models:\n  - name: m\n    targets:\n      - { provider: mokc }\n",
                  "t.yaml:6:21: models[0].targets[0].provider: unknown provider 'mokc'\n");
    expect_errors(MOCK_PROVIDER "models:\n  - name: m\n", "t.yaml:4:5: missing required key 'targets' in models[0]\n");
    expect_errors(MOCK_PROVIDER "models:\n  - name: m\n    targets: []\n",
                  "t.yaml:5:14: models[0].targets: needs at least one target\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock}]}\n"
                                "  - {name: m, targets: [{provider: mock}]}\n",
                  "t.yaml:5:12: models[1].name: duplicate model name 'm' (first at models[0])\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: m, targets: [{provider: mock}], fallbacks: [nope]}\n",
                  "t.yaml:4:56: models[0].fallbacks: 'nope' matches no models entry\n");
}

static void test_yaml_errors(void **state)
{
    expect_errors("server:\n  workers: [1\n", "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' "
                                              "while parsing a flow sequence\n");
    expect_errors("a: &x {b: 1}\nc: *x\n", "t.yaml:1:4: YAML anchors (&name) are not allowed\n");
    expect_errors("server: *x\n", "t.yaml:1:9: YAML aliases (*name) are not allowed\n");
    expect_errors("server: !!map {}\n", "t.yaml:1:9: YAML tags (!tag) are not allowed\n");
    expect_errors("server: {}\n---\nserver: {}\n", "t.yaml:2:1: only one YAML document is allowed\n");
    expect_errors("server: {workers: 1}\nserver: {}\n", "t.yaml:2:1: duplicate key 'server'\n");
    expect_errors("- a\n", "t.yaml:1:1: the top level must be a mapping (server:, providers:, models:)\n");
    expect_errors("{[a]: 1}\n", "t.yaml:1:2: mapping keys must be plain strings\n");
}

static void test_depth_and_size_caps(void **state)
{
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++) deep[n++] = '[';
    for (int i = 0; i < 100; i++) deep[n++] = ']';
    deep[n] = '\0';
    expect_errors(deep, "t.yaml:1:65: nesting is too deep (max 64 levels)\n");

    size_t big = SL_YAML_MAX_BYTES + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    expect_errors(text, "t.yaml:1:1: file too large (max 4 MiB)\n");
    free(text);
}

static void test_all_errors_reported_and_capped(void **state)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_append_cstr(&b, "server:\n");
    for (int i = 0; i < 60; i++) sl_buf_appendf(&b, "  bad%d: 1\n", i);
    sl_config *c = NULL;
    sl_buf e;
    sl_buf_init(&e, 0);
    assert_int_equal(sl_config_load_string("t.yaml", b.p, b.len, &c, &e), SL_EPARSE);
    size_t lines = 0;
    for (size_t i = 0; i < e.len; i++) lines += e.p[i] == '\n';
    assert_int_equal(lines, SL_CFG_MAX_ERRORS + 1);
    assert_non_null(strstr(e.p, "t.yaml:2:3: unknown key 'bad0' in server\n"));
    assert_non_null(strstr(e.p, "t.yaml: too many errors (60), only the first 50 shown\n"));
    sl_buf_free(&b);
    sl_buf_free(&e);
}

static void test_load_file_errors(void **state)
{
    sl_config *c = NULL;
    sl_buf e;
    sl_buf_init(&e, 0);
    assert_int_equal(sl_config_load_file("/nonexistent/sluice.yaml", &c, &e), SL_EIO);
    assert_null(c);
    assert_non_null(strstr(e.p, "/nonexistent/sluice.yaml: cannot open: "));
    sl_buf_free(&e);
}

/* ---- ${VAR} -------------------------------------------------------------- */

static void test_env_expansion(void **state)
{
    setenv("SL_TEST_KEY", "sk-123", 1);
    setenv("SL_TEST_EMPTY", "", 1);
    unsetenv("SL_TEST_UNSET");
    setenv("SL_TEST_PORT", "8181", 1);
    sl_config *c = load_ok("server:\n  listen: [\"127.0.0.1:${SL_TEST_PORT}\"]\n"
                           "  workers: \"${SL_TEST_UNSET:-3}\"\n"
                           "providers:\n"
                           "  - name: p\n    type: openai\n"
                           "    api_keys: [\"${SL_TEST_KEY}\", \"${SL_TEST_UNSET}\", \"x-${SL_TEST_EMPTY:-d}-$${LIT}\"]\n"
                           "  - name: q\n    type: ollama\n    api_keys: [\"${SL_TEST_UNSET}\"]\n");
    assert_int_equal(c->server.listen[0].port, 8181);
    assert_int_equal(c->server.workers, 3);
    assert_int_equal(c->providers[0].napi_keys, 2);
    assert_string_equal(c->providers[0].api_keys[0], "sk-123");
    assert_string_equal(c->providers[0].api_keys[1], "x-d-${LIT}");
    assert_int_equal(c->providers[1].napi_keys, 0); /* an unset key: no key sent */
    sl_config_release(c);

    expect_errors("server:\n  access_log: \"/var/${SL_TEST_KEY\"\n",
                  "t.yaml:2:15: unterminated '${' (missing '}')\n");
    expect_errors("server:\n  access_log: ${1BAD}\n", "t.yaml:2:15: invalid variable name in '${...}'\n");
    /* keys are never expanded */
    expect_errors("server:\n  ${SL_TEST_KEY}: 1\n", "t.yaml:2:3: unknown key '${SL_TEST_KEY}' in server\n");
    unsetenv("SL_TEST_KEY");
    unsetenv("SL_TEST_EMPTY");
    unsetenv("SL_TEST_PORT");
}

/* ---- lookups and fallbacks ----------------------------------------------- */

static void test_find_model_order(void **state)
{
    sl_config *c = load_ok(MOCK_PROVIDER "models:\n"
                                         "  - {name: \"gpt-4o*\", targets: [{provider: mock, model: a}]}\n"
                                         "  - {name: gpt-4o-mini, targets: [{provider: mock, model: b}]}\n"
                                         "  - {name: \"gpt-?\", targets: [{provider: mock, model: c}]}\n"
                                         "  - {name: \"*\", targets: [{provider: mock, model: d}]}\n");
    assert_string_equal(sl_config_find_model(c, SL_STR("gpt-4o-mini"))->targets[0].model, "a"); /* first wins */
    assert_string_equal(sl_config_find_model(c, SL_STR("gpt-4o"))->targets[0].model, "a");
    assert_string_equal(sl_config_find_model(c, SL_STR("gpt-5"))->targets[0].model, "c");
    assert_string_equal(sl_config_find_model(c, SL_STR("gpt-55"))->targets[0].model, "d");
    assert_string_equal(sl_config_find_model(c, SL_STR(""))->targets[0].model, "d");
    assert_int_equal(sl_config_find_model(c, SL_STR("x"))->index, 3);
    assert_null(sl_config_find_provider(c, SL_STR("mock2")));
    assert_null(sl_config_find_provider(c, SL_STR("moc")));
    sl_config_release(c);
}

static void test_fallback_loops(void **state)
{
    expect_errors(MOCK_PROVIDER "models:\n"
                                "  - {name: a, targets: [{provider: mock}], fallbacks: [b]}\n"
                                "  - {name: b, targets: [{provider: mock}], fallbacks: [a]}\n",
                  "t.yaml:5:56: models[1].fallbacks: fallback loop: a -> b -> a\n");
    expect_errors(MOCK_PROVIDER "models:\n  - {name: \"x-*\", targets: [{provider: mock}], fallbacks: [x-1]}\n",
                  "t.yaml:4:60: models[0].fallbacks: fallback loop: x-* -> x-*\n");
    expect_errors(MOCK_PROVIDER "models:\n"
                                "  - {name: a, targets: [{provider: mock}], fallbacks: [z, b]}\n"
                                "  - {name: b, targets: [{provider: mock}], fallbacks: [c-1]}\n"
                                "  - {name: \"c-*\", targets: [{provider: mock}], fallbacks: [a]}\n"
                                "  - {name: z, targets: [{provider: mock}]}\n",
                  "t.yaml:6:60: models[2].fallbacks: fallback loop: a -> b -> c-* -> a\n");
    /* a diamond is not a loop */
    sl_config *c = load_ok(MOCK_PROVIDER "models:\n"
                                         "  - {name: a, targets: [{provider: mock}], fallbacks: [b, c]}\n"
                                         "  - {name: b, targets: [{provider: mock}], fallbacks: [d]}\n"
                                         "  - {name: c, targets: [{provider: mock}], fallbacks: [d, \"${SL_TEST_UNSET}\"]}\n"
                                         "  - {name: d, targets: [{provider: mock}]}\n");
    assert_int_equal(c->models[0].nfallbacks, 2);
    assert_int_equal(c->models[2].nfallbacks, 1);
    sl_config_release(c);
}

/* ---- life cycle ---------------------------------------------------------- */

static void test_refcount(void **state)
{
    sl_config *c = load_ok(sl_config_builtin_yaml);
    assert_ptr_equal(sl_config_retain(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    sl_config_release(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    sl_config_release(c); /* frees: ASan reports a leak otherwise */
    sl_config_release(NULL);
}

static void test_alloc_failure(void **state)
{
    FILE *f = fopen("examples/quickstart.yaml", "rb");
    assert_non_null(f);
    static char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    const char *bad = "server: {workers: x}\nmodels: [{name: a, targets: [{provider: nope}]}]\n";
    bool ok_seen = false;
    for (long n = 1; n < 100000 && !ok_seen; n++) {
        sl_config *c = NULL, *c_bad = NULL;
        sl_buf e;
        sl_buf_init(&e, 0);
        sl_alloc_fail_after(n);
        int rc = sl_config_load_string("q.yaml", text, len, &c, &e);
        int rc_bad = sl_config_load_string("b.yaml", bad, strlen(bad), &c_bad, &e);
        sl_alloc_fail_after(0);
        assert_null(c_bad);
        assert_true(rc == SL_OK || rc == SL_ENOMEM);
        assert_true(rc_bad == SL_EPARSE || rc_bad == SL_ENOMEM);
        if (rc == SL_OK) {
            ok_seen = true;
            assert_int_equal(c->nproviders, 6);
            sl_config_release(c);
        } else {
            assert_null(c);
        }
        sl_buf_free(&e);
    }
    assert_true(ok_seen);

    /* A big file makes both arenas grow many times: a failure at each growth. */
    sl_buf big;
    sl_buf_init(&big, 0);
    sl_buf_append_cstr(&big, "providers:\n");
    for (int i = 0; i < 200; i++) sl_buf_appendf(&big, "  - {name: p%d, type: openai, api_keys: [k%d]}\n", i, i);
    sl_buf_append_cstr(&big, "models:\n");
    for (int i = 0; i < 500; i++)
        sl_buf_appendf(&big, "  - {name: m%d, targets: [{provider: p%d}], fallbacks: [m%d]}\n", i, i % 200, (i + 1) % 500 ? i + 1 : 0);
    long failures = 0;
    for (long n = 1; n < 100000; n++) {
        sl_config *c = NULL;
        sl_buf e;
        sl_buf_init(&e, 0);
        sl_alloc_fail_after(n);
        int rc = sl_config_load_string("big.yaml", big.p, big.len, &c, &e);
        sl_alloc_fail_after(0);
        sl_buf_free(&e);
        if (rc == SL_EPARSE) break; /* the fallback chain closes a loop: reported once memory suffices */
        assert_int_equal(rc, SL_ENOMEM);
        assert_null(c);
        failures++;
    }
    assert_true(failures > 10);
    sl_buf_free(&big);
}

/* ---- the key tables agree with docs/configuration.md --------------------- */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/*
 * Each table has a heading "### `PATH`" and each key a row starting
 * "| `NAME` |" before the next heading; the row shows the default as
 * "`DEFAULT`" (or "—" for none).
 */
static void test_docs_cover_every_key(void **state)
{
    const char *doc = read_all("docs/configuration.md");
    assert_non_null(doc);
    for (size_t s = 0; s < sl_config_nsections; s++) {
        const sl_csection *sec = sl_config_sections[s];
        char heading[128];
        snprintf(heading, sizeof heading, "### `%s`", sec->path);
        const char *start = strstr(doc, heading);
        if (!start) fprintf(stderr, "docs/configuration.md: no heading %s\n", heading);
        assert_non_null(start);
        const char *end = strstr(start + strlen(heading), "\n### ");
        if (!end) end = start + strlen(start);
        for (size_t i = 0; i < sec->nkeys; i++) {
            const sl_ckey *k = &sec->keys[i];
            char row[128];
            snprintf(row, sizeof row, "\n| `%s` |", k->name);
            const char *r = strstr(start, row);
            if (!r || r > end) fail_msg("docs/configuration.md: no row for %s.%s", sec->path, k->name);
            const char *eol = strchr(r + 1, '\n');
            size_t rowlen = eol ? (size_t)(eol - r) : strlen(r);
            char want[160];
            snprintf(want, sizeof want, k->def ? "`%s`" : "—", k->def ? k->def : "");
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)SL_MIN(rowlen, sizeof line - 1), r);
            if (!strstr(line, want)) fail_msg("docs/configuration.md: row for %s.%s lacks default %s", sec->path, k->name, want);
        }
    }
    for (size_t t = 0; t < sl_config_ntop; t++) {
        char heading[128];
        snprintf(heading, sizeof heading, "`%s`", sl_config_top[t].name);
        assert_non_null(strstr(doc, heading));
    }
}

/* The example at the end of docs/configuration.md loads. */
static void test_docs_example_loads(void **state)
{
    const char *doc = read_all("docs/configuration.md");
    assert_non_null(doc);
    const char *start = strstr(doc, "```yaml\n");
    assert_non_null(start);
    start += 8;
    const char *end = strstr(start, "```");
    assert_non_null(end);
    sl_config *c = NULL;
    sl_buf e;
    sl_buf_init(&e, 0);
    int rc = sl_config_load_string("docs", start, (size_t)(end - start), &c, &e);
    if (rc) fprintf(stderr, "%s", e.p);
    assert_int_equal(rc, SL_OK);
    sl_config_release(c);
    sl_buf_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_empty_file_gives_defaults),
        cmocka_unit_test(test_limits_defaults),
        cmocka_unit_test(test_provider_and_model_defaults),
        cmocka_unit_test(test_full_values),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_type_and_bound_errors),
        cmocka_unit_test(test_provider_errors),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_depth_and_size_caps),
        cmocka_unit_test(test_all_errors_reported_and_capped),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_find_model_order),
        cmocka_unit_test(test_fallback_loops),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_docs_cover_every_key),
        cmocka_unit_test(test_docs_example_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
