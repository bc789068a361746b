/*
 * test_trace.c: W3C traceparent parsing and formatting, sampling decisions,
 * attempt spans, and the OTLP/HTTP JSON encoding (read back with the JSON
 * reader: ids, parent links, kinds, times, attributes, status).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "json/json.h"
#include "telemetry/trace.h"

static void test_traceparent_parse(void **state)
{
    uint8_t t[16], p[8], f;
    assert_int_equal(sl_traceparent_parse(SL_STR("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), t, p, &f), SL_OK);
    assert_int_equal(t[0], 0x4b);
    assert_int_equal(t[15], 0x36);
    assert_int_equal(p[7], 0xb7);
    assert_int_equal(f, 1);
    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",        /* short */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     /* zero parent */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* forbidden version */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",  /* v00 has nothing after */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl_traceparent_parse(sl_str_from_cstr(bad[i]), t, p, &f), SL_EINVAL);
    /* a later version may carry more fields */
    assert_int_equal(sl_traceparent_parse(SL_STR("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"), t, p, &f), SL_OK);
    assert_int_equal(f, 0);
    char out[56];
    assert_int_equal(sl_traceparent_parse(SL_STR("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), t, p, &f), SL_OK);
    sl_traceparent_format(out, t, p, true);
    assert_string_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

static void test_begin_and_sampling(void **state)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 1 << 20);
    /* not recording and no caller context: nothing to do */
    assert_null(sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, false, 1.0));
    /* caller context without recording: kept, so it is passed on upstream */
    sl_str tp = SL_STR("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    sl_trace_req *t = sl_trace_begin(&a, tp, SL_STR("k=v"), false, 1.0);
    assert_non_null(t);
    assert_true(t->has_parent && t->sampled && !t->recording);
    const char *up = sl_trace_attempt_start(t, 10, SL_STR("p"), SL_STR("openai"), SL_STR("m"));
    assert_memory_equal(up, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
    assert_string_not_equal(up, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /* the caller's sampled flag wins over the ratio, both ways */
    t = sl_trace_begin(&a, SL_STR("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), SL_STR_NULL, true, 1.0);
    assert_false(t->sampled || t->recording);
    t = sl_trace_begin(&a, tp, SL_STR_NULL, true, 0.0);
    assert_true(t->sampled && t->recording);
    /* ratio 0 and 1 without a caller; 0.5 samples about half */
    assert_false(sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, true, 0.0)->recording);
    assert_true(sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, true, 1.0)->recording);
    int yes = 0;
    for (int i = 0; i < 2000; i++) {
        sl_arena_reset(&a);
        yes += sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, true, 0.5)->recording;
    }
    assert_true(yes > 800 && yes < 1200);
    sl_arena_free(&a);
}

static void test_attempts(void **state)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 1 << 20);
    sl_trace_req *t = sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, true, 1.0);
    char tid[33], sid[17];
    sl_hex(tid, t->trace_id, 16);
    for (int i = 0; i < SL_TRACE_MAX_ATTEMPTS + 3; i++) {
        const char *up = sl_trace_attempt_start(t, 100 + i, SL_STR("p"), SL_STR("openai"), SL_STR("m"));
        assert_memory_equal(up + 3, tid, 32);
        if (i < SL_TRACE_MAX_ATTEMPTS) {
            sl_hex(sid, t->att[i].span_id, 8);
            assert_memory_equal(up + 36, sid, 16); /* upstream's parent is this attempt's span */
        }
        sl_trace_attempt_end(t, 200 + i, 503, "server_error", SL_STR_NULL);
    }
    assert_int_equal(t->natt, SL_TRACE_MAX_ATTEMPTS);
    assert_int_equal(t->ndropped, 3);
    /* starting an attempt while one is open closes it as cancelled */
    sl_trace_req *u = sl_trace_begin(&a, SL_STR_NULL, SL_STR_NULL, true, 1.0);
    sl_trace_attempt_start(u, 1, SL_STR("p"), SL_STR("openai"), SL_STR("m"));
    sl_trace_attempt_start(u, 2, SL_STR("q"), SL_STR("openai"), SL_STR("m"));
    assert_string_equal(u->att[0].outcome, "cancelled");
    assert_int_equal(u->att[0].end_ns, 2);
    sl_arena_free(&a);
}

static int attr(const sl_json_doc *d, int span, const char *key)
{
    int attrs = sl_json_obj_get(d, span, "attributes");
    for (int e = sl_json_first(d, attrs); e >= 0; e = sl_json_next(d, e)) {
        if (sl_json_str_eq(d, sl_json_obj_get(d, e, "key"), key)) return sl_json_obj_get(d, e, "value");
    }
    return -1;
}

static bool attr_str_is(const sl_json_doc *d, int span, const char *key, const char *want)
{
    int v = attr(d, span, key);
    return v >= 0 && sl_json_str_eq(d, sl_json_obj_get(d, v, "stringValue"), want);
}

static bool str_is(const sl_json_doc *d, int obj, const char *key, const char *want)
{
    return sl_json_str_eq(d, sl_json_obj_get(d, obj, key), want);
}

static void test_otlp_encoding(void **state)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 1 << 22);
    sl_trace_req *t = sl_trace_begin(&a, SL_STR("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                                      SL_STR("v=1"), true, 1.0);
    sl_trace_attempt_start(t, 1100, SL_STR("az"), SL_STR("azure"), SL_STR("deploy-1"));
    sl_trace_attempt_end(t, 1200, 503, "server_error", SL_STR("upstream said \"no\""));
    sl_trace_attempt_start(t, 1300, SL_STR("oa"), SL_STR("openai"), SL_STR("gpt-x"));
    sl_trace_attempt_end(t, 1900, 200, "success", SL_STR_NULL);
    sl_req_record r = {
        .start_ns = 1000, .first_byte_ns = 1500, .end_ns = 2000, .request_id = SL_STR("rid-1"),
        .consumer = SL_STR("alice"), .api = "chat.completions", .operation = "chat", .model = SL_STR("m-\"x\""),
        .provider = SL_STR("oa"), .provider_type = SL_STR("openai"), .upstream_model = SL_STR("gpt-x"), .status = 200,
        .stream = true, .usage = {.input_tokens = 7, .output_tokens = 3, .present = true}, .attempts = 2,
        .finish_reason = SL_STR("stop"),
    };
    sl_buf spans, body;
    sl_buf_init(&spans, 0);
    sl_buf_init(&body, 0);
    uint32_t n = 0;
    assert_int_equal(sl_otlp_encode_spans(t, &r, &spans, &n), SL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(sl_otlp_wrap(&body, sl_buf_str(&spans), "svc", "1.2.3"), SL_OK);
    sl_json_doc d;
    assert_int_equal(sl_json_parse(&d, body.p, body.len, &a, NULL, NULL), SL_OK);
    int rs = sl_json_arr_get(&d, sl_json_obj_get(&d, 0, "resourceSpans"), 0);
    int res = sl_json_obj_get(&d, rs, "resource");
    assert_true(attr_str_is(&d, res, "service.name", "svc"));
    assert_true(attr_str_is(&d, res, "service.version", "1.2.3"));
    int ss = sl_json_arr_get(&d, sl_json_obj_get(&d, rs, "scopeSpans"), 0);
    assert_true(str_is(&d, sl_json_obj_get(&d, ss, "scope"), "name", "sluice"));
    int list = sl_json_obj_get(&d, ss, "spans");
    assert_int_equal(d.toks[list].count, 3);
    int root = sl_json_arr_get(&d, list, 0), c1 = sl_json_arr_get(&d, list, 1), c2 = sl_json_arr_get(&d, list, 2);

    char sid[17];
    sl_hex(sid, t->span_id, 8);
    assert_true(str_is(&d, root, "traceId", "4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_true(str_is(&d, root, "parentSpanId", "00f067aa0ba902b7"));
    assert_true(str_is(&d, root, "spanId", sid));
    assert_true(str_is(&d, root, "traceState", "v=1"));
    assert_true(str_is(&d, root, "name", "chat m-\"x\""));
    int64_t kind = 0;
    sl_json_int(&d, sl_json_obj_get(&d, root, "kind"), &kind);
    assert_int_equal(kind, 2);
    sl_str st;
    sl_json_str(&d, sl_json_obj_get(&d, root, "startTimeUnixNano"), &a, &st);
    uint64_t start = 0, end = 0;
    assert_int_equal(sl_str_to_u64(st, UINT64_MAX, &start), SL_OK);
    sl_json_str(&d, sl_json_obj_get(&d, root, "endTimeUnixNano"), &a, &st);
    assert_int_equal(sl_str_to_u64(st, UINT64_MAX, &end), SL_OK);
    assert_int_equal(end - start, 1000);
    assert_true(start > 1600000000ull * 1000000000ull); /* wall clock, not uptime */
    assert_true(attr_str_is(&d, root, "gen_ai.operation.name", "chat"));
    assert_true(attr_str_is(&d, root, "gen_ai.provider.name", "openai"));
    assert_true(attr_str_is(&d, root, "gen_ai.request.model", "m-\"x\""));
    assert_true(attr_str_is(&d, root, "gen_ai.response.model", "gpt-x"));
    assert_true(str_is(&d, attr(&d, root, "gen_ai.usage.input_tokens"), "intValue", "7"));
    assert_true(str_is(&d, attr(&d, root, "gen_ai.usage.output_tokens"), "intValue", "3"));
    int fr = sl_json_obj_get(&d, sl_json_obj_get(&d, attr(&d, root, "gen_ai.response.finish_reasons"), "arrayValue"), "values");
    assert_true(str_is(&d, sl_json_arr_get(&d, fr, 0), "stringValue", "stop"));
    double ttfc = 0;
    sl_json_double(&d, sl_json_obj_get(&d, attr(&d, root, "gen_ai.response.time_to_first_chunk"), "doubleValue"), &ttfc);
    assert_true(ttfc == 500e-9);
    assert_int_equal(sl_json_obj_get(&d, root, "status"), -1); /* success: status left unset */
    { /* the model the provider named in its answer wins over the configured one */
        sl_req_record r2 = r;
        r2.response_model = SL_STR("gpt-x-2024-08-06");
        sl_buf s2;
        sl_buf_init(&s2, 0);
        uint32_t n2 = 0;
        sl_buf_append(&s2, "[", 1); /* the spans come comma-separated: made a JSON array here */
        assert_int_equal(sl_otlp_encode_spans(t, &r2, &s2, &n2), SL_OK);
        sl_buf_append(&s2, "]", 1);
        sl_json_doc d2;
        assert_int_equal(sl_json_parse(&d2, s2.p, s2.len, &a, NULL, NULL), SL_OK);
        assert_true(attr_str_is(&d2, sl_json_arr_get(&d2, 0, 0), "gen_ai.response.model", "gpt-x-2024-08-06"));
        sl_buf_free(&s2);
    }

    char c1id[17];
    sl_hex(c1id, t->att[0].span_id, 8);
    assert_true(str_is(&d, c1, "spanId", c1id));
    assert_true(str_is(&d, c1, "parentSpanId", sid));
    assert_true(str_is(&d, c1, "name", "chat deploy-1"));
    sl_json_int(&d, sl_json_obj_get(&d, c1, "kind"), &kind);
    assert_int_equal(kind, 3);
    assert_true(attr_str_is(&d, c1, "gen_ai.provider.name", "azure.ai.openai"));
    assert_true(attr_str_is(&d, c1, "sluice.attempt.outcome", "server_error"));
    assert_true(attr_str_is(&d, c1, "error.type", "server_error"));
    assert_true(str_is(&d, attr(&d, c1, "http.response.status_code"), "intValue", "503"));
    int status = sl_json_obj_get(&d, c1, "status");
    assert_true(str_is(&d, status, "message", "upstream said \"no\""));
    assert_true(attr_str_is(&d, c2, "sluice.attempt.outcome", "success"));
    assert_int_equal(sl_json_obj_get(&d, c2, "status"), -1);
    assert_true(str_is(&d, attr(&d, c2, "sluice.attempt"), "intValue", "2"));

    /* an error response: status ERROR with the message, error.type the status code */
    sl_buf_clear(&spans);
    r.status = 502;
    r.error = SL_STR("upstream failed");
    assert_int_equal(sl_otlp_encode_spans(t, &r, &spans, &n), SL_OK);
    sl_json_doc e;
    sl_buf_append(&spans, "", 0);
    char *wrapped = sl_arena_printf(&a, "[%.*s]", (int)spans.len, spans.p);
    assert_int_equal(sl_json_parse(&e, wrapped, strlen(wrapped), &a, NULL, NULL), SL_OK);
    int er = sl_json_arr_get(&e, 0, 0);
    assert_true(attr_str_is(&e, er, "error.type", "502"));
    int64_t code = 0;
    sl_json_int(&e, sl_json_obj_get(&e, sl_json_obj_get(&e, er, "status"), "code"), &code);
    assert_int_equal(code, 2);
    sl_buf_free(&spans);
    sl_buf_free(&body);
    sl_arena_free(&a);
}

static void test_genai_provider_names(void **state)
{
    assert_string_equal(sl_genai_provider_name(SL_STR("openai")), "openai");
    assert_string_equal(sl_genai_provider_name(SL_STR("gemini")), "gcp.gemini");
    assert_string_equal(sl_genai_provider_name(SL_STR("azure")), "azure.ai.openai");
    assert_string_equal(sl_genai_provider_name(SL_STR("anthropic")), "anthropic");
    assert_string_equal(sl_genai_provider_name(SL_STR_NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_parse),
        cmocka_unit_test(test_begin_and_sampling),
        cmocka_unit_test(test_attempts),
        cmocka_unit_test(test_otlp_encoding),
        cmocka_unit_test(test_genai_provider_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
