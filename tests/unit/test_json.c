/*
 * test_json.c: the JSON reader, accessors, writer and splice edits.
 *
 * Validity tables follow JSONTestSuite's naming (y_ must parse, n_ must be
 * rejected). Every splice result is re-parsed to prove it is still JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "json/json.h"

static sl_arena A;

static int setup(void **state)
{
    (void)state;
    sl_arena_init(&A, 4096, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_arena_free(&A);
    sl_alloc_fail_after(0);
    return 0;
}

static int parse_n(sl_json_doc *d, const char *s, size_t n) { return sl_json_parse(d, s, n, &A, NULL, NULL); }
static int parse(sl_json_doc *d, const char *s) { return parse_n(d, s, strlen(s)); }

typedef struct {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen */
} json_case;

#define CASE(name, text) {name, text, 0}
#define CASE_N(name, text) {name, text, sizeof(text) - 1}

static const json_case valid_cases[] = {
    CASE("y_array_empty", "[]"),
    CASE("y_object_empty", "{}"),
    CASE("y_ws_around", " \t\r\n[ ]\n "),
    CASE("y_number_zero", "0"),
    CASE("y_number_minus_zero", "-0"),
    CASE("y_number_full", "-0.0e+0"),
    CASE("y_number_capital_E", "[1E10]"),
    CASE("y_number_neg_exp", "[1e-10]"),
    CASE("y_number_frac_exp", "[123.456e78]"),
    CASE("y_number_exp_leading_zero", "[1e007]"),
    CASE("y_number_huge_exp", "[1e999]"),
    CASE("y_number_long_int", "[-123456789012345678901234567890]"),
    CASE("y_string_simple", "\"x\""),
    CASE("y_string_empty", "\"\""),
    CASE("y_true", "true"),
    CASE("y_false", "false"),
    CASE("y_null", "null"),
    CASE("y_nested", "[[[]]]"),
    CASE("y_mixed", "{\"a\":{\"b\":[1,2,{\"c\":null}]},\"d\":[true,false]}"),
    CASE_N("y_string_escaped_nul", "[\"\\u0000\"]"),
    CASE("y_string_surrogate_pair", "[\"\\uD834\\uDD1E\"]"),
    CASE("y_string_max_pair", "[\"\\uDBFF\\uDFFF\"]"),
    CASE("y_string_all_escapes", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
    CASE("y_string_utf8", "[\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"]"),
    CASE("y_string_max_cp", "[\"\xf4\x8f\xbf\xbf\"]"),
    CASE("y_string_noncharacter", "[\"\xef\xbf\xbf\"]"),
    CASE("y_string_u2028", "\"\\u2028\""),
    CASE("y_string_lowercase_hex", "[\"\\u00e9\\uabcd\"]"),
    CASE("y_string_del", "[\"\x7f\"]"),
    CASE("y_object_empty_key", "{\"\":0}"),
    CASE("y_object_duplicate_keys", "{\"a\":1,\"a\":2}"),
    CASE("y_object_ws", "{ \"a\" : 1 , \"b\" : [ 1 , 2 ] }"),
    CASE("y_long_string_simd_tail", "[\"0123456789abcdef0123456789abcdef\\n0123456789abcdef0123456789\"]"),
};

static const json_case invalid_cases[] = {
    CASE("n_array_1_true_without_comma", "[1 true]"),
    CASE("n_array_comma_after_close", "[\"\"],"),
    CASE("n_array_extra_comma", "[\"\",]"),
    CASE("n_array_double_comma", "[1,,2]"),
    CASE("n_array_leading_comma", "[,1]"),
    CASE("n_array_unclosed", "[1"),
    CASE("n_array_unclosed_trailing_comma", "[1,"),
    CASE("n_array_colon_instead_of_comma", "[\"\": 1]"),
    CASE("n_array_incomplete_invalid_value", "[x"),
    CASE("n_object_trailing_comma", "{\"id\":0,}"),
    CASE("n_object_missing_colon", "{\"a\" b}"),
    CASE("n_object_missing_value", "{\"a\":}"),
    CASE("n_object_non_string_key", "{1:1}"),
    CASE("n_object_single_quote", "{'a':0}"),
    CASE("n_object_unquoted_key", "{a: \"b\"}"),
    CASE("n_object_double_colon", "{\"x\"::\"b\"}"),
    CASE("n_object_comment", "{\"a\":\"b\"/**/}"),
    CASE("n_object_missing_key", "{:\"b\"}"),
    CASE("n_object_no_comma", "{\"a\":\"b\" \"c\":\"d\"}"),
    CASE("n_object_lone_key", "{\"a\"}"),
    CASE("n_object_unclosed", "{\"a\":1"),
    CASE("n_structure_line_comment", "[1] // c"),
    CASE("n_structure_hash_comment", "# x\n[1]"),
    CASE("n_number_leading_zero", "[012]"),
    CASE("n_number_minus_leading_zero", "[-01]"),
    CASE("n_number_double_zero", "[00]"),
    CASE("n_number_plus", "[+1]"),
    CASE("n_number_dot_start", "[.5]"),
    CASE("n_number_dot_end", "[1.]"),
    CASE("n_number_exp_empty", "[1e]"),
    CASE("n_number_exp_sign_only", "[1e+]"),
    CASE("n_number_minus_alone", "[-]"),
    CASE("n_number_minus_space", "[- 1]"),
    CASE("n_number_NaN", "[NaN]"),
    CASE("n_number_Infinity", "[Infinity]"),
    CASE("n_number_minus_Infinity", "[-Infinity]"),
    CASE("n_number_hex", "[0x1]"),
    CASE("n_number_trailing_letter", "[1a]"),
    CASE("n_string_single_quote", "['a']"),
    CASE("n_string_unterminated", "[\"abc"),
    CASE("n_string_unterminated_escape", "[\"abc\\"),
    CASE("n_string_control_char", "[\"a\x01z\"]"),
    CASE("n_string_raw_newline", "[\"a\nb\"]"),
    CASE("n_string_raw_tab", "[\"\t\"]"),
    CASE("n_string_bad_escape", "[\"\\x41\"]"),
    CASE("n_string_escape_uppercase_U", "[\"\\U0041\"]"),
    CASE("n_string_incomplete_u", "[\"\\u12\"]"),
    CASE("n_string_bad_hex", "[\"\\uZZZZ\"]"),
    CASE("n_string_lone_high_surrogate", "[\"\\uD800\"]"),
    CASE("n_string_high_surrogate_then_text", "[\"\\uD800abcdef\"]"),
    CASE("n_string_lone_low_surrogate", "[\"\\uDC00\"]"),
    CASE("n_string_two_high_surrogates", "[\"\\uD800\\uD800\"]"),
    CASE("n_string_high_then_escape", "[\"\\uD800\\n\"]"),
    CASE("n_string_invalid_utf8_ff", "[\"\xff\"]"),
    CASE("n_string_overlong_2", "[\"\xc0\xaf\"]"),
    CASE("n_string_overlong_3", "[\"\xe0\x80\xaf\"]"),
    CASE("n_string_overlong_4", "[\"\xf0\x80\x80\xaf\"]"),
    CASE("n_string_utf8_surrogate", "[\"\xed\xa0\x80\"]"),
    CASE("n_string_truncated_utf8", "[\"\xe2\x82\"]"),
    CASE("n_string_past_10ffff", "[\"\xf4\x90\x80\x80\"]"),
    CASE("n_string_lone_continuation", "[\"\x80\"]"),
    CASE("n_string_utf8_at_end", "\"\xe2\x82"),
    CASE("n_literal_tru", "[tru]"),
    CASE("n_literal_True", "[True]"),
    CASE("n_literal_nul", "nul"),
    CASE("n_literal_truex", "truex"),
    CASE("n_structure_empty", ""),
    CASE("n_structure_ws_only", "  \n"),
    CASE("n_structure_trailing_garbage", "{} x"),
    CASE("n_structure_two_values", "1 2"),
    CASE("n_structure_close_unopened", "]"),
    CASE("n_structure_mismatch_array", "[}"),
    CASE("n_structure_mismatch_object", "{]"),
    CASE_N("n_structure_nul_after", "[1]\0"),
    CASE("n_structure_utf8_bom", "\xef\xbb\xbf{}"),
    CASE("n_structure_form_feed_ws", "[\f1]"),
    CASE("n_structure_vertical_tab_ws", "[\v1]"),
    CASE("n_structure_nbsp_ws", "[\xc2\xa0 1]"),
};

static void test_valid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(valid_cases); i++) {
        const json_case *c = &valid_cases[i];
        sl_json_doc d;
        size_t n = c->len ? c->len : strlen(c->text);
        int rc = parse_n(&d, c->text, n);
        if (rc) fail_msg("%s: rc %d", c->name, rc);
        assert_true(d.ntoks >= 1);
        assert_int_equal(d.toks[0].next, d.ntoks);
    }
}

static void test_invalid_table(void **state)
{
    (void)state;
    assert_true(SL_ARRAY_LEN(invalid_cases) >= 40);
    for (size_t i = 0; i < SL_ARRAY_LEN(invalid_cases); i++) {
        const json_case *c = &invalid_cases[i];
        sl_json_doc d;
        size_t n = c->len ? c->len : strlen(c->text), off = 999;
        int rc = sl_json_parse(&d, c->text, n, &A, NULL, &off);
        if (rc != SL_EPARSE) fail_msg("%s: rc %d, want SL_EPARSE", c->name, rc);
        assert_true(off <= n);
    }
}

static void test_token_layout(void **state)
{
    (void)state;
    sl_json_doc d;
    const char *s = "{\"a\":[1,{\"b\":2}],\"c\":\"x\"}";
    assert_int_equal(parse(&d, s), 0);
    assert_int_equal(d.ntoks, 9);
    static const struct { sl_json_type type; uint32_t next, count; } want[] = {
        {SL_JSON_OBJECT, 9, 2}, {SL_JSON_STRING, 2, 0}, {SL_JSON_ARRAY, 7, 2}, {SL_JSON_NUMBER, 4, 0},
        {SL_JSON_OBJECT, 7, 1}, {SL_JSON_STRING, 6, 0}, {SL_JSON_NUMBER, 7, 0}, {SL_JSON_STRING, 8, 0},
        {SL_JSON_STRING, 9, 0},
    };
    for (int i = 0; i < 9; i++) {
        assert_int_equal(sl_json_type_of(&d, i), want[i].type);
        assert_int_equal(d.toks[i].next, want[i].next);
        assert_int_equal(d.toks[i].count, want[i].count);
    }
    sl_str raw = sl_json_raw(&d, 2);
    assert_int_equal(raw.n, strlen("[1,{\"b\":2}]"));
    assert_memory_equal(raw.p, "[1,{\"b\":2}]", raw.n);
    assert_true(sl_str_eq_lit(sl_json_raw(&d, 8), "\"x\""));
    assert_true(sl_str_eq_lit(sl_json_str_raw(&d, 8), "x"));
    assert_int_equal(d.toks[0].start, 0);
    assert_int_equal(d.toks[0].end, strlen(s));
}

static void test_error_offsets_and_limits(void **state)
{
    (void)state;
    sl_json_doc d;
    size_t off = 0;
    assert_int_equal(sl_json_parse(&d, "[1,2,x]", 7, &A, NULL, &off), SL_EPARSE);
    assert_int_equal(off, 5);
    assert_int_equal(sl_json_parse(&d, "{\"a\":1} x", 9, &A, NULL, &off), SL_EPARSE);
    assert_int_equal(off, 8);

    char deep[200];
    for (int i = 0; i < 64; i++) deep[i] = '[', deep[64 + i] = ']';
    assert_int_equal(parse_n(&d, deep, 128), 0);
    for (int i = 0; i < 65; i++) deep[i] = '[', deep[65 + i] = ']';
    assert_int_equal(parse_n(&d, deep, 130), SL_ELIMIT);
    sl_json_limits lim = {.max_depth = 2};
    assert_int_equal(sl_json_parse(&d, "[[1]]", 5, &A, &lim, NULL), 0);
    assert_int_equal(sl_json_parse(&d, "[[[1]]]", 7, &A, &lim, NULL), SL_ELIMIT);
    lim = (sl_json_limits){.max_depth = 1000};
    char big[2000];
    for (int i = 0; i < 1000; i++) big[i] = '[', big[1000 + i] = ']';
    assert_int_equal(sl_json_parse(&d, big, 2000, &A, &lim, NULL), 0);
    assert_int_equal(d.ntoks, 1000);

    lim = (sl_json_limits){.max_tokens = 3};
    assert_int_equal(sl_json_parse(&d, "[1,2,3]", 7, &A, &lim, NULL), SL_ELIMIT);
    lim.max_tokens = 4;
    assert_int_equal(sl_json_parse(&d, "[1,2,3]", 7, &A, &lim, NULL), 0);

    /* >= 4 GiB is refused before a single byte is read */
    assert_int_equal(sl_json_parse(&d, "[]", (size_t)UINT32_MAX + 1, &A, NULL, NULL), SL_ELIMIT);
}

/* Regression (found by fuzz_json): a syntax error after the token array grew was reported as success. */
static void test_invalid_after_growth(void **state)
{
    (void)state;
    char s[512];
    size_t n = 0;
    s[n++] = '[';
    for (int i = 0; i < 100; i++) s[n++] = '1', s[n++] = ',';
    memcpy(s + n, "1\xa3]", 3);
    n += 3;
    sl_json_doc d;
    size_t off = 0;
    assert_int_equal(sl_json_parse(&d, s, n, &A, NULL, &off), SL_EPARSE);
    assert_int_equal(off, n - 2);
    s[n - 2] = ']';
    assert_int_equal(sl_json_parse(&d, s, n - 1, &A, NULL, NULL), 0);
    assert_int_equal(d.ntoks, 102);
}

/* Many small tokens force the token array to grow several times. */
static void test_token_growth(void **state)
{
    (void)state;
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_append_cstr(&b, "[");
    for (int i = 0; i < 100000; i++) sl_buf_appendf(&b, "%s{\"k\":%d}", i ? "," : "", i);
    sl_buf_append_cstr(&b, "]");
    sl_json_doc d;
    assert_int_equal(parse_n(&d, b.p, b.len), 0);
    assert_int_equal(d.ntoks, 1 + 3 * 100000);
    assert_int_equal(d.toks[0].count, 100000);
    int64_t v = 0;
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, sl_json_arr_get(&d, 0, 99999), "k"), &v), 0);
    assert_int_equal(v, 99999);
    sl_buf_free(&b);
}

static void test_obj_get(void **state)
{
    (void)state;
    sl_json_doc d;
    const char *s = "{\"model\":\"gpt-4o\",\"mo\\u0064el2\":1,\"a\\\"b\":2,\"messages\":[{\"x\":1}],"
                    "\"dup\":1,\"dup\":2,\"\\ud83d\\ude00\":3,\"\":4}";
    assert_int_equal(parse(&d, s), 0);
    int m = sl_json_obj_get(&d, 0, "model");
    assert_true(m > 0);
    assert_true(sl_json_str_eq(&d, m, "gpt-4o"));
    assert_false(sl_json_str_eq(&d, m, "gpt-4"));
    assert_false(sl_json_str_eq(&d, m, "gpt-4oo"));
    int64_t v = 0;
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, 0, "model2"), &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, 0, "a\"b"), &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, 0, "dup"), &v), 0);
    assert_int_equal(v, 2); /* last wins */
    assert_int_equal(sl_json_obj_key_count(&d, 0, "dup"), 2);
    assert_int_equal(sl_json_obj_key_count(&d, 0, "model"), 1);
    int cnt = -1;
    assert_int_equal(sl_json_obj_get_counted(&d, 0, SL_STR("dup"), &cnt), sl_json_obj_get(&d, 0, "dup"));
    assert_int_equal(cnt, 2);
    assert_int_equal(sl_json_obj_get_counted(&d, 0, SL_STR("model"), &cnt), m);
    assert_int_equal(cnt, 1);
    assert_int_equal(sl_json_obj_get_counted(&d, 0, SL_STR("\xf0\x9f\x98\x80"), &cnt), sl_json_obj_get(&d, 0, "\xf0\x9f\x98\x80"));
    assert_int_equal(cnt, 1); /* an escaped key matches its decoded form */
    assert_int_equal(sl_json_obj_get_counted(&d, 0, SL_STR("missing"), &cnt), -1);
    assert_int_equal(cnt, 0);
    assert_int_equal(sl_json_obj_get_counted(&d, m, SL_STR("x"), &cnt), -1); /* not an object */
    assert_int_equal(cnt, 0);
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, 0, "\xf0\x9f\x98\x80"), &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(sl_json_int(&d, sl_json_obj_get(&d, 0, ""), &v), 0);
    assert_int_equal(v, 4);
    assert_int_equal(sl_json_obj_get(&d, 0, "missing"), -1);
    assert_int_equal(sl_json_obj_get(&d, 0, "mode"), -1);
    assert_int_equal(sl_json_obj_get(&d, m, "x"), -1);  /* not an object */
    assert_int_equal(sl_json_obj_get(&d, -1, "x"), -1); /* absent stays absent */
    int msgs = sl_json_obj_get(&d, 0, "messages");
    assert_int_equal(sl_json_type_of(&d, msgs), SL_JSON_ARRAY);
    assert_int_equal(sl_json_obj_get(&d, sl_json_arr_get(&d, msgs, 0), "x"), msgs + 3);
    assert_int_equal(sl_json_arr_get(&d, msgs, 1), -1);
    assert_int_equal(sl_json_obj_get_str(&d, 0, SL_STR("model")), m);
}

static void test_iteration(void **state)
{
    (void)state;
    sl_json_doc d;
    const char *s = "{ \"a\" : [ 1 , [2, 3] , { \"z\" : [] } ] ,\n \"b\" : { } , \"c\":\"s\" }";
    assert_int_equal(parse(&d, s), 0);
    const char *keys[] = {"a", "b", "c"};
    int n = 0;
    for (int k = sl_json_first(&d, 0); k >= 0; k = sl_json_next(&d, k)) {
        assert_true(n < 3);
        assert_true(sl_json_str_eq(&d, k, keys[n]));
        n++;
    }
    assert_int_equal(n, 3);
    int arr = sl_json_obj_get(&d, 0, "a");
    sl_json_type types[] = {SL_JSON_NUMBER, SL_JSON_ARRAY, SL_JSON_OBJECT};
    n = 0;
    for (int e = sl_json_first(&d, arr); e >= 0; e = sl_json_next(&d, e)) {
        assert_int_equal(sl_json_type_of(&d, e), types[n]);
        assert_int_equal(sl_json_arr_get(&d, arr, (uint32_t)n), e);
        n++;
    }
    assert_int_equal(n, 3);
    assert_int_equal(sl_json_first(&d, sl_json_obj_get(&d, 0, "b")), -1);
    assert_int_equal(sl_json_first(&d, sl_json_obj_get(&d, 0, "c")), -1);
    assert_int_equal(sl_json_next(&d, 0), -1); /* root has no siblings */
    /* a string element is not mistaken for a key */
    assert_int_equal(parse(&d, "[\"a\",\"b\"]"), 0);
    assert_int_equal(sl_json_next(&d, 1), 2);
    assert_int_equal(sl_json_next(&d, 2), -1);
}

static void test_str_decode(void **state)
{
    (void)state;
    sl_json_doc d;
    const char *s = "[\"plain\",\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\",\"\\u00e9\\u4e2d\\uD83D\\uDE00\\u0041\","
                    "\"\\u0000x\",\"\xe4\xb8\xad\"]";
    assert_int_equal(parse(&d, s), 0);
    sl_str out;
    int t = sl_json_arr_get(&d, 0, 0);
    assert_int_equal(sl_json_str(&d, t, &A, &out), 0);
    assert_ptr_equal(out.p, s + 2); /* zero-copy */
    assert_int_equal(out.n, 5);
    assert_int_equal(sl_json_str(&d, sl_json_arr_get(&d, 0, 1), &A, &out), 0);
    assert_int_equal(out.n, strlen("a\"b\\c/d\b\f\n\r\t"));
    assert_memory_equal(out.p, "a\"b\\c/d\b\f\n\r\t", out.n);
    assert_int_equal(out.p[out.n], '\0');
    assert_int_equal(sl_json_str(&d, sl_json_arr_get(&d, 0, 2), &A, &out), 0);
    const char *want = "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80" "A";
    assert_int_equal(out.n, strlen(want));
    assert_memory_equal(out.p, want, out.n);
    assert_int_equal(sl_json_str(&d, sl_json_arr_get(&d, 0, 3), &A, &out), 0);
    assert_int_equal(out.n, 2);
    assert_memory_equal(out.p, "\0x", 2);
    assert_int_equal(sl_json_str(&d, sl_json_arr_get(&d, 0, 4), &A, &out), 0);
    assert_true(sl_str_eq_lit(out, "\xe4\xb8\xad"));
    assert_int_equal(sl_json_str(&d, 0, &A, &out), SL_EINVAL); /* not a string */
    assert_true(sl_json_str_eq(&d, sl_json_arr_get(&d, 0, 2), want));
}

static void test_numbers(void **state)
{
    (void)state;
    sl_json_doc d;
    const char *s = "[42,-9223372036854775808,9223372036854775807,9223372036854775808,"
                    "-9223372036854775809,1.0,1e2,-0,\"7\",1.5e3,1e999,1e-999,"
                    "0.1000000000000000055511151231257827021181583404541015625000000000000000001,true,false,null]";
    assert_int_equal(parse(&d, s), 0);
    int64_t v;
    assert_int_equal(sl_json_int(&d, 1, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(sl_json_int(&d, 2, &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(sl_json_int(&d, 3, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(sl_json_int(&d, 4, &v), SL_EINVAL);
    assert_int_equal(sl_json_int(&d, 5, &v), SL_EINVAL);
    assert_int_equal(sl_json_int(&d, 6, &v), SL_EINVAL);
    assert_int_equal(sl_json_int(&d, 7, &v), SL_EINVAL);
    assert_int_equal(sl_json_int(&d, 8, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sl_json_int(&d, 9, &v), SL_EINVAL);
    double x;
    assert_int_equal(sl_json_double(&d, 10, &x), 0);
    assert_true(x == 1500.0);
    assert_int_equal(sl_json_double(&d, 6, &x), 0);
    assert_true(x == 1.0);
    assert_int_equal(sl_json_double(&d, 11, &x), SL_ELIMIT);
    assert_int_equal(sl_json_double(&d, 12, &x), 0);
    assert_true(x == 0.0);
    assert_int_equal(sl_json_double(&d, 13, &x), 0); /* longer than the stack copy */
    assert_true(x == 0.1);
    assert_int_equal(sl_json_double(&d, 9, &x), SL_EINVAL);
    assert_true(sl_json_bool(&d, 14, false));
    assert_false(sl_json_bool(&d, 15, true));
    assert_true(sl_json_bool(&d, 16, true));
    assert_false(sl_json_bool(&d, -1, false));
}

/* ---- writer ---- */

static void test_writer_structure(void **state)
{
    (void)state;
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "a");
    sl_jw_int(&w, 1);
    sl_jw_key(&w, "b");
    sl_jw_arr_begin(&w);
    sl_jw_bool(&w, true);
    sl_jw_bool(&w, false);
    sl_jw_null(&w);
    sl_jw_cstr(&w, "x\n");
    sl_jw_obj_begin(&w);
    sl_jw_obj_end(&w);
    sl_jw_arr_begin(&w);
    sl_jw_arr_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "c");
    sl_jw_obj_begin(&w);
    sl_jw_key_str(&w, SL_STR("q\"k"));
    sl_jw_raw(&w, SL_STR("[1, 2]"));
    sl_jw_key(&w, "n");
    sl_jw_int(&w, INT64_MIN);
    sl_jw_key(&w, "m");
    sl_jw_int(&w, INT64_MAX);
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "d");
    sl_jw_double(&w, 0.5);
    sl_jw_obj_end(&w);
    assert_int_equal(w.err, 0);
    assert_int_equal(w.depth, 0);
    const char *want = "{\"a\":1,\"b\":[true,false,null,\"x\\n\",{},[]],\"c\":{\"q\\\"k\":[1, 2],"
                       "\"n\":-9223372036854775808,\"m\":9223372036854775807},\"d\":0.5}";
    assert_string_equal(b.p, want);
    sl_json_doc d;
    assert_int_equal(parse_n(&d, b.p, b.len), 0);
    sl_buf_free(&b);
}

static void test_writer_escapes(void **state)
{
    (void)state;
    sl_buf b;
    sl_buf_init(&b, 0);
    const char in[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f"
                      "\xc3\xa9\xf0\x9f\x98\x80" /* valid UTF-8 passes through */
                      "\xff\xc3(\xed\xa0\x80" /* invalid bytes become U+FFFD, one each */
                      "0123456789abcdef0123456789abcdef";
    assert_int_equal(sl_json_escape(&b, (sl_str){in, sizeof in - 1}), 0);
    const char *want = "q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f"
                       "\xc3\xa9\xf0\x9f\x98\x80"
                       "\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                       "0123456789abcdef0123456789abcdef";
    assert_string_equal(b.p, want);
    /* the reserve-once variant writes the same bytes, within its stated room */
    char raw[SL_JSON_ESCAPE_MAX(sizeof in - 1) + 1];
    size_t rn = sl_json_escape_into(raw, (sl_str){in, sizeof in - 1});
    assert_true(rn <= SL_JSON_ESCAPE_MAX(sizeof in - 1));
    raw[rn] = '\0';
    assert_string_equal(raw, want);
    const char worst[] = "\x01\xff\"";
    assert_int_equal(sl_json_escape_into(raw, (sl_str){worst, 3}), 11);
    assert_int_equal(sl_json_escape_into(raw, SL_STR_NULL), 0);
    sl_buf_clear(&b);
    const char nul[] = "a\0b";
    assert_int_equal(sl_json_escape(&b, (sl_str){nul, 3}), 0);
    assert_string_equal(b.p, "a\\u0000b");
    sl_buf_free(&b);
}

static void check_double(double v, const char *want)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_jw_double(&w, v);
    assert_int_equal(w.err, 0);
    if (strcmp(b.p, want) != 0) fail_msg("double %.17g: got %s want %s", v, b.p, want);
    if (isfinite(v)) assert_true(strtod(b.p, NULL) == v);
    sl_buf_free(&b);
}

static void test_writer_doubles(void **state)
{
    (void)state;
    check_double(0.1, "0.1");
    check_double(1.0 / 3, "0.3333333333333333");
    check_double(2.0 / 3, "0.6666666666666666");
    check_double(1e300, "1e+300");
    check_double(100, "100");
    check_double(-42, "-42");
    check_double(0, "0");
    check_double(-0.0, "-0");
    check_double(123456.789, "123456.789");
    check_double(5e-324, "5e-324");
    check_double(1.7976931348623157e308, "1.7976931348623157e+308");
    check_double(0.7, "0.7");
    check_double(1e-7, "1e-07");
    check_double(NAN, "null");
    check_double(INFINITY, "null");
    check_double(-INFINITY, "null");
}

static void test_writer_errors(void **state)
{
    (void)state;
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_jw w;
    sl_jw_init(&w, &b);
    for (int i = 0; i < 64; i++) sl_jw_arr_begin(&w);
    assert_int_equal(w.err, 0);
    sl_jw_arr_begin(&w); /* 65th level */
    assert_int_equal(w.err, SL_ELIMIT);
    sl_jw_init(&w, &b);
    sl_jw_obj_end(&w);
    assert_int_equal(w.err, SL_EINVAL);
    sl_jw_init(&w, &b);
    sl_jw_key(&w, "top-level key");
    assert_int_equal(w.err, SL_EINVAL);
    sl_buf_free(&b);

    sl_buf_init(&b, 8); /* a capped buffer: the error sticks, the buffer stays bounded */
    sl_jw_init(&w, &b);
    sl_jw_arr_begin(&w);
    sl_jw_cstr(&w, "this is too long");
    sl_jw_int(&w, 1);
    sl_jw_arr_end(&w);
    assert_int_equal(w.err, SL_ELIMIT);
    assert_true(b.len <= 8);
    sl_buf_free(&b);
}

/* Writes token t of d with the writer: strings decoded then re-escaped. */
static void write_tok(const sl_json_doc *d, int t, sl_jw *w)
{
    sl_str s;
    switch (sl_json_type_of(d, t)) {
    case SL_JSON_OBJECT:
        sl_jw_obj_begin(w);
        for (int k = sl_json_first(d, t); k >= 0; k = sl_json_next(d, k)) {
            assert_int_equal(sl_json_str(d, k, &A, &s), 0);
            sl_jw_key_str(w, s);
            write_tok(d, sl_json_member_value(k), w);
        }
        sl_jw_obj_end(w);
        break;
    case SL_JSON_ARRAY:
        sl_jw_arr_begin(w);
        for (int e = sl_json_first(d, t); e >= 0; e = sl_json_next(d, e)) write_tok(d, e, w);
        sl_jw_arr_end(w);
        break;
    case SL_JSON_STRING:
        assert_int_equal(sl_json_str(d, t, &A, &s), 0);
        sl_jw_str(w, s);
        break;
    default: sl_jw_raw(w, sl_json_raw(d, t)); break;
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        {" { \"a\" : [ 1 , 2.5e3 , true , null ] , \"b\" : { } } ", "{\"a\":[1,2.5e3,true,null],\"b\":{}}"},
        {"[\"\\u0041\\/\\ud83d\\ude00\\u001F\"]", "[\"A/\xf0\x9f\x98\x80\\u001f\"]"},
        {"\"\\u2028\"", "\"\xe2\x80\xa8\""},
        {"[[[[]]],{}]", "[[[[]]],{}]"},
        {"{\"k\\\"\":\"v\\\\\"}", "{\"k\\\"\":\"v\\\\\"}"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_json_doc d, d2;
        assert_int_equal(parse(&d, cases[i].in), 0);
        sl_buf b;
        sl_buf_init(&b, 0);
        sl_jw w;
        sl_jw_init(&w, &b);
        write_tok(&d, 0, &w);
        assert_int_equal(w.err, 0);
        assert_string_equal(b.p, cases[i].out);
        assert_int_equal(parse_n(&d2, b.p, b.len), 0);
        assert_int_equal(d2.ntoks, d.ntoks);
        sl_buf_free(&b);
    }
}

/* ---- splice ---- */

/* Applies edits to src, checks the result equals want and parses. */
static void check_splice(const char *src, sl_json_edit *e, size_t n, const char *want)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_json_splice(src, strlen(src), e, n, &b), 0);
    if (strcmp(b.p, want) != 0) fail_msg("splice: got %s want %s", b.p, want);
    sl_json_doc d;
    assert_int_equal(parse_n(&d, b.p, b.len), 0);
    sl_buf_free(&b);
    /* the arena variant gives the same bytes, NUL-terminated */
    sl_str s = SL_STR_NULL;
    assert_int_equal(sl_json_splice_arena(src, strlen(src), e, n, &A, &s), 0);
    assert_int_equal(s.n, strlen(want));
    assert_string_equal(s.p, want);
}

static void test_splice_model(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"there\\\"\"}],"
                       "\"stream\":true}";
    sl_json_doc d;
    assert_int_equal(parse(&d, body), 0);
    int m = sl_json_obj_get(&d, 0, "model");
    sl_json_edit e = {d.toks[m].start, d.toks[m].end, SL_STR("\"claude-3-5-sonnet\"")};
    check_splice(body, &e, 1,
                 "{\"model\":\"claude-3-5-sonnet\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"there\\\"\"}],"
                 "\"stream\":true}");

    /* several edits, given out of order: replace, remove, add */
    int s = sl_json_obj_get(&d, 0, "stream");
    sl_json_edit es[3];
    es[0] = (sl_json_edit){d.toks[s].start, d.toks[s].end, SL_STR("false")};
    es[1] = (sl_json_edit){d.toks[m].start, d.toks[m].end, SL_STR("\"x\"")};
    assert_int_equal(sl_json_edit_add_member(&d, 0, SL_STR("user"), SL_STR("\"u1\""), &A, &es[2]), 0);
    check_splice(body, es, 3,
                 "{\"user\":\"u1\",\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"there\\\"\"}],"
                 "\"stream\":false}");
}

static void test_splice_add_member(void **state)
{
    (void)state;
    sl_json_doc d;
    sl_json_edit e;
    const char *src = "{\"a\":1}";
    assert_int_equal(parse(&d, src), 0);
    assert_int_equal(sl_json_edit_add_member(&d, 0, SL_STR("k\"\n"), SL_STR("[1]"), &A, &e), 0);
    check_splice(src, &e, 1, "{\"k\\\"\\n\":[1],\"a\":1}");
    src = "{}";
    assert_int_equal(parse(&d, src), 0);
    assert_int_equal(sl_json_edit_add_member(&d, 0, SL_STR("k"), SL_STR("true"), &A, &e), 0);
    check_splice(src, &e, 1, "{\"k\":true}");
    src = "[ { } ]";
    assert_int_equal(parse(&d, src), 0);
    assert_int_equal(sl_json_edit_add_member(&d, 1, SL_STR("k"), SL_STR("null"), &A, &e), 0);
    check_splice(src, &e, 1, "[ {\"k\":null } ]");
    assert_int_equal(sl_json_edit_add_member(&d, 0, SL_STR("k"), SL_STR("null"), &A, &e), SL_EINVAL);
}

static void check_remove(const char *src, const char *key, const char *want)
{
    sl_json_doc d;
    sl_json_edit e;
    assert_int_equal(parse(&d, src), 0);
    int v = sl_json_obj_get(&d, 0, key);
    assert_true(v > 0);
    assert_int_equal(sl_json_edit_remove_member(&d, 0, v - 1, &e), 0);
    check_splice(src, &e, 1, want);
}

static void test_splice_remove_member(void **state)
{
    (void)state;
    const char *src = "{\"a\":1,\"b\":[2],\"c\":{\"x\":3}}";
    check_remove(src, "a", "{\"b\":[2],\"c\":{\"x\":3}}");
    check_remove(src, "b", "{\"a\":1,\"c\":{\"x\":3}}");
    check_remove(src, "c", "{\"a\":1,\"b\":[2]}");
    check_remove("{\"only\":\"x\"}", "only", "{}");
    const char *pretty = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
    check_remove(pretty, "a", "{\n  \"b\": 2,\n  \"c\": 3\n}");
    check_remove(pretty, "b", "{\n  \"a\": 1,\n  \"c\": 3\n}");
    check_remove(pretty, "c", "{\n  \"a\": 1,\n  \"b\": 2\n}");
    check_remove("{ \"only\" : 1 }", "only", "{  }");

    sl_json_doc d;
    sl_json_edit e;
    assert_int_equal(parse(&d, src), 0);
    assert_int_equal(sl_json_edit_remove_member(&d, 0, 2, &e), SL_EINVAL); /* a value, not a key */
    assert_int_equal(sl_json_edit_remove_member(&d, 2, 1, &e), SL_EINVAL); /* not an object */
}

static void test_splice_errors(void **state)
{
    (void)state;
    sl_buf b;
    sl_buf_init(&b, 0);
    const char *src = "[1,2,3]";
    sl_json_edit e[2] = {{1, 3, SL_STR("9")}, {2, 4, SL_STR("8")}};
    assert_int_equal(sl_json_splice(src, 7, e, 2, &b), SL_EINVAL); /* overlap */
    e[0] = (sl_json_edit){5, 9, SL_STR("x")};
    assert_int_equal(sl_json_splice(src, 7, e, 1, &b), SL_EINVAL); /* past the end */
    e[0] = (sl_json_edit){4, 3, SL_STR("x")};
    assert_int_equal(sl_json_splice(src, 7, e, 1, &b), SL_EINVAL); /* reversed */
    assert_int_equal(b.len, 0);
    /* an insert next to a replacement at the same offset is not an overlap */
    e[0] = (sl_json_edit){1, 2, SL_STR("7")};
    e[1] = (sl_json_edit){1, 1, SL_STR("0,")};
    assert_int_equal(sl_json_splice(src, 7, e, 2, &b), 0);
    assert_string_equal(b.p, "[0,7,2,3]");
    sl_buf_clear(&b);
    assert_int_equal(sl_json_splice(src, 7, NULL, 0, &b), 0);
    assert_string_equal(b.p, src);
    sl_buf_free(&b);
    sl_buf_init(&b, 4);
    assert_int_equal(sl_json_splice(src, 7, NULL, 0, &b), SL_ELIMIT);
    sl_buf_free(&b);
}

/* ---- allocation failure: every failure point returns SL_ENOMEM and leaks nothing (ASan) ---- */

static void test_alloc_failure(void **state)
{
    (void)state;
    sl_buf body;
    sl_buf_init(&body, 0);
    sl_buf_append_cstr(&body, "{\"model\":\"m\",\"messages\":[");
    for (int i = 0; i < 3000; i++) sl_buf_appendf(&body, "%s{\"role\":\"user\",\"content\":\"x\\n%d\"}", i ? "," : "", i);
    sl_buf_append_cstr(&body, "]}");

    int enomem = 0, ok = 0;
    for (long n = 1; n < 64 && !ok; n++) {
        sl_arena a;
        sl_arena_init(&a, 1024, 0);
        sl_alloc_fail_after(n);
        sl_json_doc d;
        int rc = sl_json_parse(&d, body.p, body.len, &a, NULL, NULL);
        sl_json_edit e;
        sl_buf out;
        sl_buf_init(&out, 0);
        if (rc == 0) rc = sl_json_edit_add_member(&d, 0, SL_STR("user"), SL_STR("\"u\""), &a, &e);
        if (rc == 0) rc = sl_json_splice(body.p, body.len, &e, 1, &out);
        if (rc == 0) {
            sl_str s;
            rc = sl_json_str(&d, sl_json_obj_get(&d, sl_json_arr_get(&d, sl_json_obj_get(&d, 0, "messages"), 5),
                                                 "content"), &a, &s);
        }
        sl_alloc_fail_after(0);
        if (rc == SL_ENOMEM)
            enomem++;
        else if (rc == 0)
            ok = 1;
        else
            fail_msg("fail after %ld: rc %d", n, rc);
        sl_buf_free(&out);
        sl_arena_free(&a);
    }
    assert_true(enomem > 3); /* growth steps, splice buffer, add_member, decode all failed once */
    assert_true(ok);
    sl_buf_free(&body);
}

/* sl_json_top_members agrees with parse + sl_json_obj_get, without tokens. */
static void test_top_members(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{\"id\":\"x\",\"model\":\"m\",\"choices\":[{\"delta\":{\"model\":\"inner\"}}],\"usage\":null}",
        "{\"usage\":{\"prompt_tokens\":1},\"choices\":[ ],\"model\":\"a\",\"model\":\"b\"}",
        " { \"model\" : \"\\\"q\" , \"x\" : [1, {\"usage\":{}}] } ",
        "{\"choices\":[{}],\"usage\":{}}",
        "{}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        sl_json_member m[3] = {{.key = SL_STR("model")}, {.key = SL_STR("usage")}, {.key = SL_STR("choices")}};
        assert_int_equal(sl_json_top_members(docs[i], strlen(docs[i]), m, 3), 0);
        sl_json_doc d;
        assert_int_equal(parse(&d, docs[i]), 0);
        for (size_t k = 0; k < 3; k++) {
            int t = sl_json_obj_get_str(&d, 0, m[k].key);
            assert_int_equal(m[k].found, t >= 0);
            if (t < 0) continue;
            assert_int_equal(m[k].start, d.toks[t].start);
            assert_int_equal(m[k].end, d.toks[t].end);
            assert_int_equal(m[k].type, sl_json_type_of(&d, t));
            bool container = m[k].type == SL_JSON_ARRAY || m[k].type == SL_JSON_OBJECT;
            assert_int_equal(m[k].empty, container && d.toks[t].count == 0);
        }
    }
    sl_json_member m[1] = {{.key = SL_STR("model")}};
    assert_int_equal(sl_json_top_members("{\"model\":\"a\",}", 15, m, 1), SL_EPARSE);
    assert_int_equal(sl_json_top_members("{\"model\":\"a\"} x", 17, m, 1), SL_EPARSE);
    assert_int_equal(sl_json_top_members("{\"model\":\"\xff\"}", 14, m, 1), SL_EPARSE);
    assert_int_equal(sl_json_top_members("[1]", 3, m, 1), SL_EINVAL);
    assert_int_equal(sl_json_top_members("{\"mod\\u0065l\":1}", 16, m, 1), SL_EAGAIN); /* escaped key: parse */
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    assert_int_equal(sl_json_top_members(deep, 200, m, 1), SL_ELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_offsets_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_after_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_obj_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iteration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_str_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_structure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_add_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_remove_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_top_members, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
