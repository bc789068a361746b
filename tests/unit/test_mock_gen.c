/*
 * test_mock_gen.c: the pure parts of sluice-mock (tools/mock/mock_gen.c): the
 * generated text, token splitting, prompt token counts, tool arguments from a
 * schema, embedding vectors and base64. These are what docs/mock.md promises
 * tests can compute, so they are pinned here. The mock is not in libsluice.a,
 * so its source is compiled into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../tools/mock/mock_gen.c"

static sl_arena A;

static int setup(void **state)
{
    sl_arena_init(&A, 4096, 0);
    return 0;
}

static int teardown(void **state)
{
    sl_arena_free(&A);
    return 0;
}

static void assert_str(sl_str s, const char *want)
{
    if (!sl_str_eq_lit(s, want)) fail_msg("got \"%.*s\", want \"%s\"", SL_STR_FMT(s), want);
}

static void test_generated_text(void **state)
{
    sl_mock_knobs k = {.tokens = 18};
    sl_mock_text t;
    sl_str text;
    assert_int_equal(sl_mock_text_make(&k, SL_STR_NULL, 100, &A, &t), 0);
    assert_int_equal(t.n, 18);
    assert_false(t.truncated);
    assert_str(t.tok[0], "lorem");
    assert_str(t.tok[1], " ipsum");
    assert_str(t.tok[15], " et");
    assert_str(t.tok[16], " lorem");
    assert_int_equal(sl_mock_text_join(&t, &A, &text), 0);
    assert_str(text, "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
                     "labore et lorem ipsum");
    /* a max_tokens below the count cuts and says so */
    assert_int_equal(sl_mock_text_make(&k, SL_STR_NULL, 3, &A, &t), 0);
    assert_int_equal(t.n, 3);
    assert_true(t.truncated);
    k.tokens = 0;
    assert_int_equal(sl_mock_text_make(&k, SL_STR_NULL, 3, &A, &t), 0);
    assert_int_equal(t.n, 0);
}

static void test_split_words(void **state)
{
    sl_str *tok;
    size_t n;
    assert_int_equal(sl_mock_split_words(SL_STR("a b  c"), &A, &tok, &n), 0);
    assert_int_equal(n, 3);
    assert_str(tok[0], "a");
    assert_str(tok[1], " b");
    assert_str(tok[2], "  c");
    assert_int_equal(sl_mock_split_words(SL_STR("  lead trail "), &A, &tok, &n), 0);
    assert_int_equal(n, 3);
    assert_str(tok[0], "  lead");
    assert_str(tok[1], " trail");
    assert_str(tok[2], " ");
    assert_int_equal(sl_mock_split_words(SL_STR(""), &A, &tok, &n), 0);
    assert_int_equal(n, 0);
    /* echo / x-mock-text go through the same split */
    sl_mock_knobs k = {.echo = true};
    sl_mock_text t;
    assert_int_equal(sl_mock_text_make(&k, SL_STR("{\"a\": 1}"), 100, &A, &t), 0);
    assert_int_equal(t.n, 2);
}

static void test_fragments(void **state)
{
    sl_str *f;
    size_t n;
    assert_int_equal(sl_mock_split_fragments(SL_STR("{\"city\":\"lorem\"}"), &A, &f, &n), 0);
    assert_int_equal(n, 2);
    assert_str(f[0], "{\"city\":");
    assert_str(f[1], "\"lorem\"}");
    /* never cut inside a UTF-8 sequence: "1234567" + "é" (2 bytes) */
    assert_int_equal(sl_mock_split_fragments(SL_STR("1234567\xc3\xa9x"), &A, &f, &n), 0);
    assert_int_equal(n, 2);
    assert_str(f[0], "1234567");
    assert_str(f[1], "\xc3\xa9x");
    assert_int_equal(sl_mock_split_fragments(SL_STR("{}"), &A, &f, &n), 0);
    assert_int_equal(n, 1);
}

static void parse(sl_json_doc *d, const char *s)
{
    assert_int_equal(sl_json_parse(d, s, strlen(s), &A, NULL, NULL), 0);
}

static void test_prompt_tokens(void **state)
{
    assert_int_equal(sl_mock_prompt_tokens(2, 1), 5);
    assert_int_equal(sl_mock_prompt_tokens(0, 0), 0);
    assert_int_equal(sl_mock_prompt_tokens(4, 2), 9);
    sl_json_doc d;
    /* strings, text parts, escapes counted decoded, nested tool_result content */
    parse(&d, "[\"ab\",{\"type\":\"text\",\"text\":\"c\\u00e9\"},{\"type\":\"image\"},"
              "{\"type\":\"tool_result\",\"content\":[{\"type\":\"text\",\"text\":\"xyz\"}]}]");
    assert_int_equal(sl_mock_content_bytes(&d, 0, &A), 2 + 3 + 3);
    assert_int_equal(sl_mock_content_bytes(&d, -1, &A), 0);
}

static void tool_args(const char *schema, const char *want)
{
    sl_json_doc d;
    sl_str out;
    parse(&d, schema);
    assert_int_equal(sl_mock_tool_args(&d, 0, &A, &out), 0);
    assert_str(out, want);
}

static void test_tool_args(void **state)
{
    tool_args("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]},"
              "\"n\":{\"type\":\"integer\"},\"ok\":{\"type\":[\"null\",\"boolean\"]},\"l\":{\"type\":\"array\"},"
              "\"o\":{\"type\":\"object\"},\"k\":{\"const\":7},\"x\":{}}}",
              "{\"city\":\"lorem\",\"unit\":\"c\",\"n\":1,\"ok\":true,\"l\":[],\"o\":{},\"k\":7,\"x\":null}");
    tool_args("{\"type\":\"OBJECT\",\"properties\":{\"q\":{\"type\":\"STRING\"},\"f\":{\"type\":\"NUMBER\"}}}",
              "{\"q\":\"lorem\",\"f\":1}");
    tool_args("{\"type\":\"object\"}", "{}");
    sl_str out;
    sl_json_doc d;
    parse(&d, "1");
    assert_int_equal(sl_mock_tool_args(&d, -1, &A, &out), 0);
    assert_str(out, "{}");
}

static void test_tool_choice(void **state)
{
    sl_json_doc d;
    parse(&d, "[{\"name\":\"a\",\"s\":{}},{\"name\":\"b\",\"s\":{\"properties\":{\"z\":{\"type\":\"boolean\"}}}}]");
    int first = sl_json_arr_get(&d, 0, 0), second = sl_json_arr_get(&d, 0, 1);
    sl_mock_tool t = {0};
    assert_int_equal(sl_mock_tool_offer(&d, sl_json_obj_get(&d, first, "name"), sl_json_obj_get(&d, first, "s"),
                                        SL_STR("b"), &A, &t),
                     0);
    assert_int_equal(sl_mock_tool_offer(&d, sl_json_obj_get(&d, second, "name"), sl_json_obj_get(&d, second, "s"),
                                        SL_STR("b"), &A, &t),
                     1);
    assert_int_equal(sl_mock_tool_settle(SL_STR("b"), &t), 0);
    assert_str(t.name, "b");
    assert_str(t.args, "{\"z\":true}");
    sl_mock_tool u = {0};
    assert_int_equal(sl_mock_tool_offer(&d, sl_json_obj_get(&d, first, "name"), -1, SL_STR("auto"), &A, &u), 1);
    assert_str(u.name, "a");
    sl_mock_tool none = {0};
    assert_int_equal(sl_mock_tool_settle(SL_STR("auto"), &none), SL_ENOTFOUND);
    assert_int_equal(sl_mock_tool_settle(SL_STR("undeclared"), &none), 0);
    assert_true(none.found);
    assert_str(none.args, "{}");
}

static void test_embedding(void **state)
{
    float a[16], b[16], c[16];
    sl_mock_embedding(SL_STR("hello"), 16, a);
    sl_mock_embedding(SL_STR("hello"), 16, b);
    sl_mock_embedding(SL_STR("hellp"), 16, c);
    double norm = 0;
    int same = 0;
    for (int i = 0; i < 16; i++) {
        norm += (double)a[i] * a[i];
        assert_true(a[i] == b[i]);
        same += a[i] == c[i];
    }
    assert_true(norm > 0.9999 && norm < 1.0001);
    assert_true(same < 16);
}

static void test_base64(void **state)
{
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < SL_ARRAY_LEN(in); i++) {
        sl_buf b;
        sl_buf_init(&b, 0);
        assert_int_equal(sl_mock_base64(&b, in[i], strlen(in[i])), 0);
        assert_str(sl_buf_str(&b), want[i]);
        sl_buf_free(&b);
    }
}

static void test_json_helpers(void **state)
{
    sl_json_doc d;
    uint64_t v;
    sl_str s;
    parse(&d, "{\"n\":5,\"big\":99999999,\"neg\":-1,\"f\":1.5,\"z\":null,\"s\":\"x\"}");
    assert_int_equal(sl_mock_json_u64(&d, 0, "n", 100, 7, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(sl_mock_json_u64(&d, 0, "big", 100, 7, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(sl_mock_json_u64(&d, 0, "absent", 100, 7, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(sl_mock_json_u64(&d, 0, "z", 100, 7, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(sl_mock_json_u64(&d, 0, "neg", 100, 7, &v), SL_EINVAL);
    assert_int_equal(sl_mock_json_u64(&d, 0, "f", 100, 7, &v), SL_EINVAL);
    assert_int_equal(sl_mock_json_u64(&d, 0, "s", 100, 7, &v), SL_EINVAL);
    assert_int_equal(sl_mock_json_str(&d, 0, "s", &A, &s), 0);
    assert_str(s, "x");
    assert_int_equal(sl_mock_json_str(&d, 0, "n", &A, &s), SL_ENOTFOUND);
    assert_int_equal(sl_mock_json_u64(&d, -1, "n", 100, 7, &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generated_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prompt_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_choice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embedding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_helpers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
