/*
 * test_auth.c: consumers and keys (SPEC §2, §3, §5): SHA-256 of keys at
 * load, "sha256:" keys, the key table (every key found, others not, with
 * many consumers), duplicate keys and names refused, auth.required defaults,
 * credentials from every SDK's header and the query, model allow-lists, and
 * the governance sections' errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "config/config.h"
#include "core/buf.h"
#include "filters/governance.h"

static sl_config *load(const char *yaml, sl_buf *errs)
{
    sl_config *c = NULL;
    sl_buf_init(errs, 0);
    sl_config_load_string("t.yaml", yaml, strlen(yaml), &c, errs);
    return c;
}

static sl_config *load_ok(const char *yaml)
{
    sl_buf e;
    sl_config *c = load(yaml, &e);
    if (!c) fprintf(stderr, "unexpected errors:\n%s", e.p ? e.p : "");
    assert_non_null(c);
    sl_buf_free(&e);
    return c;
}

static void expect_error(const char *yaml, const char *want)
{
    sl_buf e;
    sl_config *c = load(yaml, &e);
    assert_null(c);
    assert_non_null(e.p);
    if (!strstr(e.p, want)) fprintf(stderr, "got:\n%s\nwanted: %s\n", e.p, want);
    assert_non_null(strstr(e.p, want));
    sl_buf_free(&e);
}

static const sl_consumer_cfg *by_key(const sl_config *c, const char *key)
{
    uint8_t h[SL_KEY_HASH_LEN];
    sl_key_hash(sl_str_from_cstr(key), h);
    return sl_config_find_key(c, h);
}

static void test_sha256_vector(void **state)
{
    uint8_t h[SL_KEY_HASH_LEN];
    sl_key_hash(SL_STR("password"), h);
    static const uint8_t want[8] = {0x5e, 0x88, 0x48, 0x98, 0xda, 0x28, 0x04, 0x71};
    assert_memory_equal(h, want, sizeof want);
    sl_key_hash(SL_STR(""), h); /* e3b0c442... */
    assert_int_equal(h[0], 0xe3);
    assert_int_equal(h[31], 0x55);
}

static void test_keys_plain_and_hashed(void **state)
{
    sl_config *c = load_ok("consumers:\n"
                           "  - name: alice\n"
                           "    keys: [\"sk-alice-1\", \"sha256:5e884898da28047151d0e56f8dc62927"
                           "73603d0d6aabbdd62a11ef721d1542d8\"]\n"
                           "  - name: bob\n"
                           "    keys: sk-bob\n");
    assert_true(c->auth.required); /* consumers configured: keys required by default */
    assert_int_equal(c->nconsumers, 2);
    assert_string_equal(by_key(c, "sk-alice-1")->name, "alice");
    assert_string_equal(by_key(c, "password")->name, "alice"); /* the sha256: entry */
    assert_string_equal(by_key(c, "sk-bob")->name, "bob");
    assert_null(by_key(c, "sk-alice-2"));
    assert_null(by_key(c, ""));
    assert_null(by_key(c, "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"));
    /* the snapshot keeps no plaintext key */
    assert_null(memmem(c->consumers[0].keys, SL_KEY_HASH_LEN * c->consumers[0].nkeys, "sk-alice-1", 10));
    sl_config_release(c);
}

static void test_many_keys(void **state)
{
    sl_buf y;
    sl_buf_init(&y, 0);
    sl_buf_append_cstr(&y, "consumers:\n");
    for (int i = 0; i < 500; i++) sl_buf_appendf(&y, "  - {name: c%d, keys: [k%d-a, k%d-b]}\n", i, i, i);
    sl_config *c = load_ok(y.p);
    sl_buf_free(&y);
    assert_true(c->auth.nslots >= 2000);
    for (int i = 0; i < 500; i++) {
        char k[32], n[32];
        snprintf(n, sizeof n, "c%d", i);
        snprintf(k, sizeof k, "k%d-a", i);
        assert_string_equal(by_key(c, k)->name, n);
        snprintf(k, sizeof k, "k%d-b", i);
        assert_string_equal(by_key(c, k)->name, n);
        snprintf(k, sizeof k, "k%d-c", i);
        assert_null(by_key(c, k));
    }
    assert_string_equal(sl_config_find_consumer(c, SL_STR("c499"))->name, "c499");
    assert_null(sl_config_find_consumer(c, SL_STR("c500")));
    sl_config_release(c);
}

static void test_auth_required_defaults(void **state)
{
    sl_config *c = load_ok("server: {workers: 1}\n");
    assert_false(c->auth.required); /* no consumers: open */
    assert_int_equal(c->auth.nslots, 8);
    assert_null(by_key(c, "anything"));
    sl_config_release(c);
    c = load_ok("auth: {required: false}\nconsumers: [{name: a, keys: [x]}]\n");
    assert_false(c->auth.required);
    sl_config_release(c);
    c = load_ok("auth: {required: true}\n");
    assert_true(c->auth.required);
    sl_config_release(c);
}

static void test_config_errors(void **state)
{
    expect_error("consumers:\n  - {name: a, keys: [same]}\n  - {name: b, keys: [same]}\n",
                 "t.yaml:3:21: consumers[1].keys: a key of consumer 'b' is also a key of consumer 'a'");
    expect_error("consumers:\n  - {name: a}\n  - {name: a}\n", "consumers[1].name: duplicate consumer name 'a'");
    expect_error("consumers:\n  - {name: \"a:b\"}\n", "consumers[0].name: 'a:b': use 1-64 letters");
    expect_error("consumers:\n  - {name: a, keys: [\"sha256:abc\"]}\n", "a hashed key is \"sha256:\" and 64 hex digits");
    expect_error("consumers:\n  - {name: a, limits: {tokens_per_minute: -1}}\n",
                 "consumers[0].limits.tokens_per_minute: must be between 0 and");
    expect_error("consumers:\n  - {name: a, limits: {budget_usd_per_day: lots}}\n",
                 "consumers[0].limits.budget_usd_per_day: expected a number");
    expect_error("consumers:\n  - {name: a, limits: {budget_usd_per_day: -3}}\n", "must be between 0 and");
    expect_error("consumers:\n  - {name: a, limits: {budget_usd_per_day: nan}}\n", "expected a number");
    expect_error("consumers:\n  - {name: a, limitz: {}}\n", "unknown key 'limitz' in consumers[0]");
    expect_error("auth: {required: maybe}\n", "auth.required: expected true or false");
    expect_error("pricing:\n  m: {input: 1, ouput: 2}\n", "unknown key 'ouput' in pricing.m");
    expect_error("pricing: [1]\n", "pricing: expected a mapping");
    expect_error("state: {backend: etcd}\n", "state.backend: must be one of: memory, redis");
    expect_error("state: {redis: {url: \"http://x\"}}\n", "state.redis.url: must start with redis://");
    expect_error("state: {redis: {url: \"redis://redis.example.com:6379\"}}\n", "host must be a numeric address");
    expect_error("state: {redis: {on_error: maybe}}\n", "state.redis.on_error: must be one of: allow, deny");
}

static void test_state_and_pricing(void **state)
{
    sl_config *c = load_ok("state:\n  backend: redis\n  redis: {url: \"redis://:pw@127.0.0.1:7000/3\", timeout_ms: 50, "
                           "on_error: deny}\n"
                           "pricing:\n  gpt-4o-mini: {input: 0.15, output: 0.6, cached_input: 0.075}\n"
                           "  \"claude-*\": {input: 3, output: 15}\n");
    assert_int_equal(c->state.backend, SL_STATE_REDIS);
    assert_string_equal(c->state.redis.host, "127.0.0.1");
    assert_int_equal(c->state.redis.port, 7000);
    assert_int_equal(c->state.redis.db, 3);
    assert_string_equal(c->state.redis.password, "pw");
    assert_int_equal(c->state.redis.timeout_ms, 50);
    assert_int_equal(c->state.redis.on_error, SL_ON_ERROR_DENY);
    assert_string_equal(c->state.redis.key_prefix, "sluice:");
    const sl_price_cfg *p = sl_config_find_price(c, SL_STR("gpt-4o-mini"));
    assert_non_null(p);
    assert_true(p->input == 0.15 && p->output == 0.6 && p->cached_input == 0.075);
    p = sl_config_find_price(c, SL_STR("claude-3-5-haiku"));
    assert_non_null(p);
    assert_true(p->input == 3 && p->cached_input < 0);
    assert_null(sl_config_find_price(c, SL_STR("gpt-4o")));
    sl_config_release(c);
    c = load_ok("server: {workers: 1}\n");
    assert_int_equal(c->state.backend, SL_STATE_MEMORY);
    assert_string_equal(c->state.redis.host, "127.0.0.1");
    assert_int_equal(c->state.redis.port, 6379);
    assert_int_equal(c->state.redis.timeout_ms, 200);
    sl_config_release(c);
}

static void test_model_allow_list(void **state)
{
    sl_config *c = load_ok("consumers:\n"
                           "  - {name: a, keys: [ka], models: [gpt-4o-mini, \"deepseek-*\"]}\n"
                           "  - {name: b, keys: [kb]}\n"
                           "  - {name: c, keys: [kc], models: []}\n");
    const sl_consumer_cfg *a = by_key(c, "ka"), *b = by_key(c, "kb"), *n = by_key(c, "kc");
    assert_true(sl_consumer_allows_model(a, SL_STR("gpt-4o-mini")));
    assert_true(sl_consumer_allows_model(a, SL_STR("deepseek-chat")));
    assert_false(sl_consumer_allows_model(a, SL_STR("gpt-4o")));
    assert_false(sl_consumer_allows_model(a, SL_STR("gpt-4o-mini-2")));
    assert_true(sl_consumer_allows_model(b, SL_STR("anything")));
    assert_false(sl_consumer_allows_model(n, SL_STR("gpt-4o-mini"))); /* an empty list allows nothing */
    assert_true(sl_consumer_allows_model(NULL, SL_STR("x")));          /* anonymous without an entry */
    assert_false(a->has_limits);
    sl_config_release(c);
}

static void set_headers(sl_http_request *req, const char *query, const char *const *kv, size_t n)
{
    static sl_http_header hdrs[16];
    assert_true(n / 2 <= 16);
    memset(req, 0, sizeof *req);
    req->headers = hdrs;
    req->query = sl_str_from_cstr(query);
    for (size_t i = 0; i + 1 < n; i += 2)
        req->headers[req->nheaders++] = (sl_http_header){sl_str_from_cstr(kv[i]), sl_str_from_cstr(kv[i + 1])};
}

static void expect_cred(const char *query, const char *const *kv, size_t n, const char *want)
{
    static sl_http_request req;
    char buf[64];
    set_headers(&req, query, kv, n);
    sl_str got = sl_auth_credential(&req, buf, sizeof buf);
    assert_int_equal(got.n, strlen(want));
    if (got.n) assert_memory_equal(got.p, want, got.n);
}

static void test_credentials(void **state)
{
    const char *bearer[] = {"Authorization", "Bearer sk-1"};
    expect_cred("", bearer, 2, "sk-1");
    const char *lower[] = {"authorization", "bearer   sk-2"};
    expect_cred("", lower, 2, "sk-2");
    const char *basic[] = {"Authorization", "Basic abc"};
    expect_cred("", basic, 2, "");
    const char *xapi[] = {"X-Api-Key", "sk-3"};
    expect_cred("", xapi, 2, "sk-3");
    const char *goog[] = {"x-goog-api-key", "sk-4"};
    expect_cred("", goog, 2, "sk-4");
    expect_cred("alt=sse&key=sk-5", NULL, 0, "sk-5");
    expect_cred("key=a%2Bb%3d&x=1", NULL, 0, "a+b=");
    expect_cred("keys=no&mykey=no", NULL, 0, "");
    expect_cred("key=%zz", NULL, 0, "%zz");
    /* first found wins: Authorization, then x-api-key, x-goog-api-key, ?key= */
    const char *both[] = {"x-api-key", "sk-x", "Authorization", "Bearer sk-b"};
    expect_cred("key=sk-q", both, 4, "sk-b");
    const char *two[] = {"x-goog-api-key", "sk-g", "x-api-key", "sk-x"};
    expect_cred("key=sk-q", two, 4, "sk-x");
    /* a query key longer than the buffer is no key */
    expect_cred("key=0123456789012345678901234567890123456789012345678901234567890123456789", NULL, 0, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vector),
        cmocka_unit_test(test_keys_plain_and_hashed),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_auth_required_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_state_and_pricing),
        cmocka_unit_test(test_model_allow_list),
        cmocka_unit_test(test_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
