/*
 * test_metrics.c: metric families (telemetry/series.h) and the SPEC §4
 * series (gateway/metrics.h): histogram buckets, the merge of per-worker
 * shards (also with writers running while the scraper reads), the cap on
 * label sets with its "__other__" series, escaping, and the text format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <pthread.h>

#include "gateway/metrics.h"
#include "telemetry/series.h"

static const double bounds[] = {1, 4, 16};

static void test_hist_bucket(void **state)
{
    assert_int_equal(sl_hist_bucket(bounds, 3, 0), 0);
    assert_int_equal(sl_hist_bucket(bounds, 3, 1), 0); /* le: a value equal to a bound is in its bucket */
    assert_int_equal(sl_hist_bucket(bounds, 3, 1.5), 1);
    assert_int_equal(sl_hist_bucket(bounds, 3, 16), 2);
    assert_int_equal(sl_hist_bucket(bounds, 3, 17), 3); /* +Inf */
    assert_int_equal(sl_hist_bucket(bounds, 0, 5), 0);
}

static void test_histogram_render(void **state)
{
    sl_family f = {.name = "h", .help = "x", .kind = SL_METRIC_HISTOGRAM, .labels = {"m"}, .nlabels = 1,
                   .bounds = bounds, .nbounds = 3};
    assert_int_equal(sl_family_init(&f, 10), SL_OK);
    sl_str v[] = {SL_STR("a")};
    long s = sl_family_series(&f, v, 1);
    assert_true(s >= 0);
    double obs[] = {0.5, 1, 3, 100, 16};
    for (size_t i = 0; i < 5; i++) sl_family_observe(&f, (int)i % 2, s, obs[i]); /* two shards */
    assert_int_equal(sl_family_count(&f, s), 5);
    assert_true(sl_family_value(&f, s) == 120.5);
    sl_buf out;
    sl_buf_init(&out, 0);
    assert_int_equal(sl_family_render(&f, &out), SL_OK);
    sl_buf_append(&out, "", 1);
    const char *want = "# HELP h x\n# TYPE h histogram\n"
                       "h_bucket{m=\"a\",le=\"1\"} 2\n"
                       "h_bucket{m=\"a\",le=\"4\"} 3\n"
                       "h_bucket{m=\"a\",le=\"16\"} 4\n"
                       "h_bucket{m=\"a\",le=\"+Inf\"} 5\n"
                       "h_sum{m=\"a\"} 120.5\n"
                       "h_count{m=\"a\"} 5\n";
    assert_string_equal(out.p, want);
    sl_buf_free(&out);
    sl_family_free(&f);
}

static void test_shard_merge(void **state)
{
    sl_family f = {.name = "c_total", .help = "x", .kind = SL_METRIC_COUNTER, .labels = {"a", "b"}, .nlabels = 2};
    sl_family g = {.name = "usd_total", .help = "x", .kind = SL_METRIC_FCOUNTER, .labels = {"a"}, .nlabels = 1};
    assert_int_equal(sl_family_init(&f, 100), SL_OK);
    assert_int_equal(sl_family_init(&g, 100), SL_OK);
    sl_str v1[] = {SL_STR("x"), SL_STR("y")}, v2[] = {SL_STR("x"), SL_STR("z")}, v3[] = {SL_STR("xy"), SL_STR("")};
    long s1 = sl_family_series(&f, v1, 2), s2 = sl_family_series(&f, v2, 2), s3 = sl_family_series(&f, v3, 2);
    assert_true(s1 != s2 && s1 != s3 && s2 != s3);
    assert_int_equal(sl_family_series(&f, v1, 2), s1); /* same label set, same series */
    for (int shard = 0; shard < 8; shard++) {
        sl_family_add(&f, shard, s1, 1);
        sl_family_add(&f, shard * 100, s2, 2);
        sl_family_addf(&g, shard, sl_family_series(&g, v1, 1), 0.25);
    }
    assert_int_equal(sl_family_count(&f, s1), 8);
    assert_int_equal(sl_family_count(&f, s2), 16);
    assert_int_equal(sl_family_count(&f, s3), 0);
    assert_true(sl_family_value(&g, sl_family_series(&g, v1, 1)) == 2.0);
    sl_family_add(&f, SL_SERIES_MAX_SHARDS, s1, 1); /* out of range: ignored, not a crash */
    sl_family_add(&f, 0, -1, 1);
    assert_int_equal(sl_family_count(&f, s1), 8);
    sl_family_free(&f);
    sl_family_free(&g);
}

static void test_label_cap(void **state)
{
    sl_family f = {.name = "r_total", .help = "x", .kind = SL_METRIC_COUNTER, .labels = {"model", "status"}, .nlabels = 2};
    assert_int_equal(sl_family_init(&f, 10), SL_OK);
    char name[32];
    for (int i = 0; i < 25; i++) {
        snprintf(name, sizeof name, "model-%d", i);
        sl_str v[] = {sl_str_from_cstr(name), SL_STR("200")};
        long s = sl_family_series(&f, v, 2);
        assert_int_equal(s, i < 10 ? i : 10);
        sl_family_add(&f, 0, s, 1);
    }
    sl_str early[] = {SL_STR("model-3"), SL_STR("200")};
    assert_int_equal(sl_family_series(&f, early, 2), 3); /* known sets keep their series after the cap */
    sl_buf out;
    sl_buf_init(&out, 0);
    assert_int_equal(sl_family_render(&f, &out), SL_OK);
    sl_buf_append(&out, "", 1);
    assert_non_null(strstr(out.p, "r_total{model=\"__other__\",status=\"__other__\"} 15\n"));
    size_t lines = 0;
    for (const char *p = out.p; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 2 + 11);
    sl_buf_free(&out);
    sl_family_free(&f);
}

static void test_label_escaping_and_cut(void **state)
{
    sl_family f = {.name = "e_total", .help = "x", .kind = SL_METRIC_COUNTER, .labels = {"v"}, .nlabels = 1};
    assert_int_equal(sl_family_init(&f, 10), SL_OK);
    sl_str v[] = {SL_STR("a\"b\\c\nd")};
    sl_family_add(&f, 0, sl_family_series(&f, v, 1), 1);
    /* a long value is cut at 128 bytes on a UTF-8 boundary: 127 'x' then a 2-byte character */
    char longv[200];
    memset(longv, 'x', 127);
    memcpy(longv + 127, "\xc3\xa9yyyy", 6);
    sl_str lv[] = {{longv, 133}};
    long s = sl_family_series(&f, lv, 1);
    sl_str lv2[] = {{longv, 150}}; /* differs only after the cut: the same series */
    assert_int_equal(sl_family_series(&f, lv2, 1), s);
    sl_family_add(&f, 0, s, 1);
    sl_buf out;
    sl_buf_init(&out, 0);
    sl_family_render(&f, &out);
    sl_buf_append(&out, "", 1);
    assert_non_null(strstr(out.p, "e_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    char want[200];
    snprintf(want, sizeof want, "e_total{v=\"%.127s\"} 1\n", longv);
    if (!strstr(out.p, want)) fail_msg("got:\n%s", out.p);
    sl_buf_free(&out);
    sl_family_free(&f);
}

static void test_gauge(void **state)
{
    sl_family f = {.name = "g", .help = "x", .kind = SL_METRIC_GAUGE, .labels = {"p"}, .nlabels = 1};
    assert_int_equal(sl_family_init(&f, 10), SL_OK);
    sl_str v[] = {SL_STR("a")};
    long s = sl_family_series(&f, v, 1);
    sl_family_set(&f, s, 1);
    sl_family_set(&f, s, 0);
    sl_family_set(&f, s, 3);
    assert_true(sl_family_value(&f, s) == 3);
    sl_family_free(&f);
}

/* Writers on their own shards while a scraper reads: the final sums are exact. */
typedef struct writer_arg {
    sl_family *f;
    int shard;
} writer_arg;

enum { WRITERS = 4, PER_WRITER = 20000 };

static void *writer(void *p)
{
    writer_arg *a = p;
    char name[16];
    for (int i = 0; i < PER_WRITER; i++) {
        snprintf(name, sizeof name, "m%d", i % 7);
        sl_str v[] = {sl_str_from_cstr(name)};
        sl_family_observe(a->f, a->shard, sl_family_series(a->f, v, 1), (double)(i % 20));
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    sl_family f = {.name = "h", .help = "x", .kind = SL_METRIC_HISTOGRAM, .labels = {"m"}, .nlabels = 1,
                   .bounds = bounds, .nbounds = 3};
    assert_int_equal(sl_family_init(&f, 100), SL_OK);
    pthread_t t[WRITERS];
    writer_arg args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (writer_arg){&f, i};
        pthread_create(&t[i], NULL, writer, &args[i]);
    }
    sl_buf out;
    sl_buf_init(&out, 0);
    for (int i = 0; i < 20; i++) { /* scrapes during the writes must not crash or tear series */
        sl_buf_clear(&out);
        assert_int_equal(sl_family_render(&f, &out), SL_OK);
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(t[i], NULL);
    uint64_t total = 0;
    for (int m = 0; m < 7; m++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", m);
        sl_str v[] = {sl_str_from_cstr(name)};
        total += sl_family_count(&f, sl_family_series(&f, v, 1));
    }
    assert_int_equal(total, WRITERS * PER_WRITER);
    /* racing first inserts publish one series per label set (a loser's index is left unused) */
    sl_buf_clear(&out);
    sl_family_render(&f, &out);
    sl_buf_append(&out, "", 1);
    size_t counts = 0;
    for (const char *p = out.p; (p = strstr(p, "h_count{")); p++) counts++;
    assert_int_equal(counts, 7);
    sl_buf_free(&out);
    sl_family_free(&f);
}

/* The SPEC series from one request record. */
static void test_record_and_render(void **state)
{
    assert_int_equal(sl_metrics_init(1000), SL_OK);
    sl_worker w = {.id = 3};
    sl_req_record r = {
        .start_ns = 1000000000ull,
        .first_byte_ns = 1050000000ull,
        .end_ns = 1250000000ull,
        .consumer = SL_STR("alice"),
        .api = "chat.completions",
        .operation = "chat",
        .model = SL_STR("gpt-x"),
        .provider = SL_STR("azure-east"),
        .provider_type = SL_STR("azure"),
        .status = 200,
        .stream = true,
        .usage = {.input_tokens = 10, .output_tokens = 5, .cached_tokens = 2, .present = true},
        .cost_usd = 0.5,
    };
    sl_metrics_record(&w, &r);
    sl_metrics_record(&w, &r);
    sl_metrics_attempt(&w, SL_STR("azure-east"), "success");
    sl_metrics_ratelimit_rejected(&w, SL_STR("alice"), "tokens_per_minute");
    sl_metrics_set_upstream_healthy(SL_STR("azure-east"), 1, false);
    sl_buf out;
    sl_buf_init(&out, 0);
    assert_int_equal(sl_metrics_render(NULL, &out), SL_OK);
    sl_buf_append(&out, "", 1);
    const char *want[] = {
        "sluice_requests_total{route=\"chat.completions\",model=\"gpt-x\",provider=\"azure-east\",consumer=\"alice\",status=\"200\"} 2\n",
        "sluice_tokens_total{model=\"gpt-x\",provider=\"azure-east\",consumer=\"alice\",type=\"input\"} 20\n",
        "sluice_tokens_total{model=\"gpt-x\",provider=\"azure-east\",consumer=\"alice\",type=\"cached\"} 4\n",
        "sluice_cost_usd_total{model=\"gpt-x\",consumer=\"alice\"} 1\n",
        "sluice_upstream_attempts_total{provider=\"azure-east\",outcome=\"success\"} 1\n",
        "sluice_ratelimit_rejections_total{consumer=\"alice\",limit=\"tokens_per_minute\"} 1\n",
        "sluice_upstream_healthy{provider=\"azure-east\",key_index=\"1\"} 0\n",
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",le=\"0.16\"} 0\n",
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",le=\"0.32\"} 2\n",
        "gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",le=\"0.06\"} 2\n",
        /* (1.25 - 1.05) s over 4 tokens after the first = 0.05 s */
        "gen_ai_server_time_per_output_token_seconds_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",le=\"0.05\"} 2\n",
        "gen_ai_client_token_usage_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",gen_ai_token_type=\"input\",le=\"16\"} 2\n",
        "gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"azure.ai.openai\",gen_ai_request_model=\"gpt-x\",gen_ai_token_type=\"output\"} 2\n",
        "sluice_trace_spans_dropped_total{reason=\"queue_full\"} 0\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++)
        if (!strstr(out.p, want[i])) fail_msg("missing: %s\n--- got:\n%s", want[i], out.p);
    sl_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_bucket),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_shard_merge),
        cmocka_unit_test(test_label_cap),
        cmocka_unit_test(test_label_escaping_and_cut),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_record_and_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
