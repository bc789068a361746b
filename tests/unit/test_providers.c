/* test_providers.c: upstream URLs and headers per provider type (src/providers/providers.h, SPEC §2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/arena.h"
#include "providers/providers.h"

static sl_arena A;

static int setup(void **state)
{
    (void)state;
    sl_arena_init(&A, 4096, 1u << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_arena_free(&A);
    return 0;
}

/* The value of header name in call, or NULL. */
static const char *header(const sl_provider_call *c, const char *name)
{
    for (size_t i = 0; i < c->nheaders; i++)
        if (sl_str_eq_lit(c->headers[i].name, name)) {
            char *v = sl_arena_strndup(&A, c->headers[i].value.p, c->headers[i].value.n);
            assert_non_null(v);
            return v;
        }
    return NULL;
}

typedef struct tcase {
    const char *type;
    sl_proto proto;
    const char *base;
    sl_call_kind kind;
    bool stream;
    const char *key;
    int rc;
    const char *url;
    const char *auth_name, *auth_value; /* the one credential header expected (NULL: none) */
} tcase;

static const tcase cases[] = {
    {"openai", SL_PROTO_OPENAI, "https://api.openai.com/v1", SL_CALL_CHAT, false, "k1", 0,
     "https://api.openai.com/v1/chat/completions", "authorization", "Bearer k1"},
    {"openai", SL_PROTO_OPENAI, "https://api.openai.com/v1", SL_CALL_EMBEDDINGS, false, "k1", 0,
     "https://api.openai.com/v1/embeddings", "authorization", "Bearer k1"},
    {"openai", SL_PROTO_OPENAI, "https://api.openai.com/v1", SL_CALL_RESPONSES, true, "k1", 0,
     "https://api.openai.com/v1/responses", "authorization", "Bearer k1"},
    {"deepseek", SL_PROTO_OPENAI, "https://api.deepseek.com/v1", SL_CALL_CHAT, true, "k2", 0,
     "https://api.deepseek.com/v1/chat/completions", "authorization", "Bearer k2"},
    {"ollama", SL_PROTO_OPENAI, "http://127.0.0.1:11434/v1", SL_CALL_CHAT, false, NULL, 0,
     "http://127.0.0.1:11434/v1/chat/completions", NULL, NULL},
    {"azure", SL_PROTO_OPENAI, "https://r.openai.azure.com", SL_CALL_CHAT, false, "k3", 0,
     "https://r.openai.azure.com/openai/deployments/dep-1/chat/completions?api-version=2024-10-21", "api-key", "k3"},
    {"azure", SL_PROTO_OPENAI, "https://r.openai.azure.com", SL_CALL_EMBEDDINGS, false, "k3", 0,
     "https://r.openai.azure.com/openai/deployments/dep-1/embeddings?api-version=2024-10-21", "api-key", "k3"},
    {"azure", SL_PROTO_OPENAI, "https://r.openai.azure.com", SL_CALL_RESPONSES, false, "k3", 0,
     "https://r.openai.azure.com/openai/v1/responses", "api-key", "k3"},
    {"anthropic", SL_PROTO_ANTHROPIC, "https://api.anthropic.com/v1", SL_CALL_CHAT, true, "k4", 0,
     "https://api.anthropic.com/v1/messages", "x-api-key", "k4"},
    {"anthropic", SL_PROTO_ANTHROPIC, "https://api.anthropic.com/v1", SL_CALL_EMBEDDINGS, false, "k4", SL_ENOTFOUND,
     NULL, NULL, NULL},
    {"anthropic", SL_PROTO_ANTHROPIC, "https://api.anthropic.com/v1", SL_CALL_RESPONSES, false, "k4", SL_ENOTFOUND,
     NULL, NULL, NULL},
    {"gemini", SL_PROTO_GEMINI, "https://generativelanguage.googleapis.com/v1beta", SL_CALL_CHAT, false, "k5", 0,
     "https://generativelanguage.googleapis.com/v1beta/models/dep-1:generateContent", "x-goog-api-key", "k5"},
    {"gemini", SL_PROTO_GEMINI, "https://generativelanguage.googleapis.com/v1beta", SL_CALL_CHAT, true, "k5", 0,
     "https://generativelanguage.googleapis.com/v1beta/models/dep-1:streamGenerateContent?alt=sse", "x-goog-api-key",
     "k5"},
    {"gemini", SL_PROTO_GEMINI, "https://generativelanguage.googleapis.com/v1beta", SL_CALL_RESPONSES, false, "k5",
     SL_ENOTFOUND, NULL, NULL, NULL},
};

static const char *const CRED_HEADERS[] = {"authorization", "api-key", "x-api-key", "x-goog-api-key"};

static void test_urls_and_auth(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        const tcase *t = &cases[i];
        sl_provider_cfg p = {.name = "p", .type = (char *)t->type, .proto = t->proto, .base_url = (char *)t->base};
        sl_provider_call c;
        int rc = sl_provider_build_call(&p, t->kind, SL_STR("dep-1"), t->stream, t->key, &A, &c);
        if (rc != t->rc) fail_msg("case %zu (%s): rc %d, want %d", i, t->type, rc, t->rc);
        if (rc) continue;
        assert_string_equal(c.url, t->url);
        assert_string_equal(header(&c, "content-type"), "application/json");
        for (size_t h = 0; h < SL_ARRAY_LEN(CRED_HEADERS); h++) {
            const char *v = header(&c, CRED_HEADERS[h]);
            if (t->auth_name && strcmp(CRED_HEADERS[h], t->auth_name) == 0) assert_string_equal(v, t->auth_value);
            else if (v) fail_msg("case %zu (%s): unexpected %s header", i, t->type, CRED_HEADERS[h]);
        }
        const char *av = header(&c, "anthropic-version");
        if (t->proto == SL_PROTO_ANTHROPIC) assert_string_equal(av, "2023-06-01");
        else assert_null(av);
        const char *acc = header(&c, "accept");
        if (t->stream) assert_string_equal(acc, "text/event-stream");
        else assert_null(acc);
    }
}

static void test_azure_api_version_and_extra_headers(void **state)
{
    (void)state;
    sl_kv extra[] = {{"x-org", "acme"}, {"anthropic-beta", "tools-2024"}};
    sl_provider_cfg p = {.name = "az",
                         .type = "azure",
                         .proto = SL_PROTO_OPENAI,
                         .base_url = "https://r.openai.azure.com",
                         .api_version = "2025-01-01-preview",
                         .headers = extra,
                         .nheaders = 2};
    sl_provider_call c;
    assert_int_equal(sl_provider_build_call(&p, SL_CALL_CHAT, SL_STR("gpt-4o"), false, "k", &A, &c), 0);
    assert_string_equal(c.url, "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
                               "?api-version=2025-01-01-preview");
    assert_string_equal(header(&c, "x-org"), "acme");
    assert_string_equal(header(&c, "anthropic-beta"), "tools-2024");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_urls_and_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azure_api_version_and_extra_headers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
