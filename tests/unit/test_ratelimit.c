/*
 * test_ratelimit.c: the limit arithmetic of src/filters/ratelimit.c: the
 * token estimate, prices (cached input at its own price), the reset header
 * format, and the bound the reserve-then-settle scheme promises (SPEC §5):
 * in one window, admitted tokens never exceed the limit by more than what the
 * requests in flight used beyond their reservations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "filters/governance.h"
#include "state/state_int.h"

static void test_estimate(void **state)
{
    assert_int_equal(sl_ratelimit_estimate_tokens(0), 1);
    assert_int_equal(sl_ratelimit_estimate_tokens(1), 1);
    assert_int_equal(sl_ratelimit_estimate_tokens(4), 1);
    assert_int_equal(sl_ratelimit_estimate_tokens(5), 2);
    assert_int_equal(sl_ratelimit_estimate_tokens(4000), 1000);
}

static void test_cost(void **state)
{
    sl_price_cfg p = {.input = 0.15, .output = 0.60, .cached_input = 0.075};
    sl_usage u = {.input_tokens = 1000000, .output_tokens = 1000000, .present = true};
    assert_true(fabs(sl_ratelimit_cost_usd(&p, &u) - 0.75) < 1e-12);
    u.cached_tokens = 400000; /* part of the input, at the cached price */
    assert_true(fabs(sl_ratelimit_cost_usd(&p, &u) - (0.6 * 0.15 + 0.4 * 0.075 + 0.60)) < 1e-12);
    p.cached_input = -1; /* no cached price: the input price */
    assert_true(fabs(sl_ratelimit_cost_usd(&p, &u) - 0.75) < 1e-12);
    u.cached_tokens = 5000000; /* more cached than input: capped at the input */
    p.cached_input = 0;
    assert_true(fabs(sl_ratelimit_cost_usd(&p, &u) - 0.60) < 1e-12);
    assert_true(sl_ratelimit_cost_usd(NULL, &u) == 0);
    sl_usage neg = {.input_tokens = -5, .output_tokens = -5};
    assert_true(sl_ratelimit_cost_usd(&p, &neg) == 0);
}

static void expect_reset(int64_t ms, const char *want)
{
    char b[32];
    sl_ratelimit_format_reset(ms, b, sizeof b);
    assert_string_equal(b, want);
}

static void test_reset_format(void **state)
{
    expect_reset(-5, "0ms");
    expect_reset(250, "250ms");
    expect_reset(1000, "1s");
    expect_reset(1001, "2s"); /* rounded up: never tells a caller to come back too early */
    expect_reset(59999, "1m0s");
    expect_reset(90000, "1m30s");
    expect_reset(7205000, "2h0m5s");
}

/*
 * 50 requests arrive at once against tokens_per_minute; each reserves its
 * estimate; the admitted ones then settle with real usage (more than the
 * estimate: the output). Admitted real tokens <= limit + sum(actual - estimate)
 * over admitted requests, and at least limit - one estimate is used.
 */
typedef struct res_slot {
    bool admitted;
    sl_usage_counts counts;
} res_slot;

static void on_res(void *ud, const sl_reserve_result *r)
{
    res_slot *s = ud;
    s->admitted = r->admitted;
    s->counts = r->counts;
}

static void on_usage(void *ud, int err, const sl_usage_counts *c)
{
    if (err == SL_OK && c) *(sl_usage_counts *)ud = *c;
}

static void test_burst_bound(void **state)
{
    sl_state_memory_reset();
    sl_state_cfg cfg = {.backend = SL_STATE_MEMORY};
    sl_state *h = sl_state_open(NULL, &cfg);
    const int64_t limit = 2000, now = 1709251170250ll - 20000;
    res_slot slots[50];
    int64_t est[50], actual[50];
    for (int i = 0; i < 50; i++) {
        est[i] = sl_ratelimit_estimate_tokens((size_t)(100 + 37 * i));
        actual[i] = est[i] - 3 + 20; /* a little less input than estimated, plus 20 output tokens */
        sl_reserve q;
        memset(&q, 0, sizeof q);
        q.consumer = SL_STR("burst");
        q.now_ms = now;
        q.amount[SL_MET_REQUESTS] = 1;
        q.amount[SL_MET_TOKENS] = est[i];
        q.limit[SL_MET_TOKENS][SL_WIN_MINUTE] = limit;
        sl_state_reserve(h, &q, on_res, &slots[i], NULL);
    }
    int64_t admitted_actual = 0, beyond = 0, admitted_est = 0;
    int admitted = 0;
    for (int i = 0; i < 50; i++) {
        if (!slots[i].admitted) continue;
        admitted++;
        admitted_actual += actual[i];
        admitted_est += est[i];
        beyond += SL_MAX(actual[i] - est[i], 0);
        sl_settle s = {.consumer = SL_STR("burst"), .delta = {0, actual[i] - est[i], 0}};
        memcpy(s.window_id, slots[i].counts.window_id, sizeof s.window_id);
        sl_state_settle(h, &s);
    }
    assert_true(admitted > 0 && admitted < 50);
    assert_true(admitted_est <= limit);
    assert_true(admitted_actual <= limit + beyond);
    /* and the counter now holds exactly what was used */
    sl_usage_counts c;
    memset(&c, 0, sizeof c);
    assert_int_equal(sl_state_usage(h, SL_STR("burst"), now, on_usage, &c, NULL), SL_OK);
    assert_int_equal(c.v[SL_MET_TOKENS][SL_WIN_MINUTE], admitted_actual);
    assert_int_equal(c.v[SL_MET_REQUESTS][SL_WIN_MINUTE], admitted);
    sl_state_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_reset_format),
        cmocka_unit_test(test_burst_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
