/*
 * test_balance.c: the balancers, outlier ejection and half-open recovery, key
 * benching, the retry budget, backoff bounds, retry-after parsing, the health
 * snapshot and health carried over a reload (src/balance/). Time is passed
 * in, never read: no clocks, no sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "balance_fixture.h"

#include "balance/balance.h"
#include "core/buf.h"

static const char yaml[] =
    "providers:\n"
    "  - { name: a, type: openai-compatible, base_url: 'http://127.0.0.1:1/v1', api_keys: [k1, k2] }\n"
    "  - { name: b, type: openai-compatible, base_url: 'http://127.0.0.1:2/v1', key_cooldown_ms: 5000 }\n"
    "models:\n"
    "  - name: w\n"
    "    targets: [ { provider: a, weight: 3 }, { provider: b, weight: 1 } ]\n"
    "    outlier: { consecutive_failures: 2, base_ejection_ms: 1000, max_ejection_ms: 3000 }\n"
    "    retry: { budget_percent: 20, budget_min: 2, backoff_ms: 100, max_backoff_ms: 1000 }\n"
    "  - name: lr\n"
    "    balance: least_request\n"
    "    targets: [ { provider: a }, { provider: b } ]\n"
    "  - name: lat\n"
    "    balance: latency\n"
    "    targets: [ { provider: a }, { provider: b } ]\n";

static int setup(void **state) { return sl_test_bal_setup(state, yaml, 42); }
static int teardown(void **state) { return sl_test_bal_teardown(state); }

static uint32_t pick(fx *f, const sl_model_cfg *m, uint64_t tried, uint64_t now)
{
    uint32_t t = 99;
    uint64_t wait = 0;
    assert_int_equal(sl_bal_pick(&f->b, f->cfg, m, tried, now, &t, &wait), SL_OK);
    return t;
}

/* One attempt on target t of m: begin, then end with outcome o at time now_ms. */
static void attempt(fx *f, const sl_model_cfg *m, uint32_t t, sl_bal_outcome o, uint64_t retry_after, uint64_t now_ms)
{
    sl_bal_attempt a = {.cfg = f->cfg, .model = m, .target = t, .key = 0};
    sl_bal_begin(&f->b, &a, now_ms * 1000000ull);
    a.first_byte_ns = a.start_ns + 1000000;
    sl_bal_end(&f->b, &a, o, retry_after, now_ms * 1000000ull + 1000000);
}

static void test_weighted_is_exact_and_smooth(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    int n[2] = {0};
    int run = 0, longest = 0;
    for (int i = 0; i < 400; i++) {
        uint32_t t = pick(f, m, 0, 1000);
        n[t]++;
        run = t == 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    assert_int_equal(n[0], 300);
    assert_int_equal(n[1], 100);
    assert_true(longest <= 3); /* smooth: never a burst longer than the weight */
}

static void test_tried_targets_are_skipped(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    for (int i = 0; i < 10; i++) assert_int_equal(pick(f, m, 1u << 0, 1000), 1);
    uint32_t t;
    uint64_t wait = 7;
    assert_int_equal(sl_bal_pick(&f->b, f->cfg, m, 3, 1000, &t, &wait), SL_ENOTFOUND);
    assert_int_equal(wait, 0); /* every target was tried: nothing to wait for */
}

static void test_least_request_prefers_idle(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "lr");
    sl_bal_attempt busy = {.cfg = f->cfg, .model = m, .target = 0};
    sl_bal_begin(&f->b, &busy, 1000000000ull);
    for (int i = 0; i < 20; i++) assert_int_equal(pick(f, m, 0, 1000), 1);
    sl_bal_end(&f->b, &busy, SL_BAL_OK, 0, 1100000000ull);
    int n[2] = {0};
    for (int i = 0; i < 20; i++) n[pick(f, m, 0, 1000)]++;
    assert_int_equal(n[0], 10); /* equal load: ties rotate */
}

static void test_latency_prefers_fast(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "lat");
    sl_bal_attempt slow = {.cfg = f->cfg, .model = m, .target = 0};
    sl_bal_begin(&f->b, &slow, 1000000000ull);
    slow.first_byte_ns = slow.start_ns + 300000000ull; /* 300 ms */
    sl_bal_end(&f->b, &slow, SL_BAL_OK, 0, slow.first_byte_ns);
    attempt(f, m, 1, SL_BAL_OK, 0, 1300); /* 1 ms */
    int n[2] = {0};
    for (int i = 0; i < 100; i++) n[pick(f, m, 0, 1400)]++;
    assert_int_equal(n[1], 100); /* two targets: both are drawn every time, the cheaper wins */
}

static void test_ejection_and_half_open_recovery(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    uint64_t wait = 0;
    attempt(f, m, 0, SL_BAL_FAIL, 0, 1000);
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 0, 1001, &wait));
    attempt(f, m, 0, SL_BAL_FAIL, 0, 1000); /* second in a row: ejected for 1 s */
    assert_false(sl_bal_target_ok(&f->b, f->cfg, m, 0, 1500, &wait));
    assert_true(wait > 0 && wait <= 1000);
    for (int i = 0; i < 10; i++) assert_int_equal(pick(f, m, 0, 1500), 1);
    /* half-open after 1 s: one trial at a time */
    sl_bal_attempt trial = {.cfg = f->cfg, .model = m, .target = 0};
    sl_bal_begin(&f->b, &trial, 2100 * 1000000ull);
    assert_true(trial.trial);
    assert_false(sl_bal_target_ok(&f->b, f->cfg, m, 0, 2100, &wait));
    sl_bal_end(&f->b, &trial, SL_BAL_FAIL, 0, 2100 * 1000000ull); /* failed trial: out for 2 s */
    assert_false(sl_bal_target_ok(&f->b, f->cfg, m, 0, 4000, &wait));
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 0, 4200, &wait));
    sl_bal_begin(&f->b, &trial, 4200 * 1000000ull);
    assert_true(trial.trial);
    sl_bal_end(&f->b, &trial, SL_BAL_OK, 0, 4200 * 1000000ull); /* recovered */
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 0, 4201, &wait));
    attempt(f, m, 0, SL_BAL_OK, 0, 4300);
    attempt(f, m, 0, SL_BAL_FAIL, 0, 4400);
    attempt(f, m, 0, SL_BAL_FAIL, 0, 4400); /* two ok in a row forgot the past: back to 1 s */
    assert_false(sl_bal_target_ok(&f->b, f->cfg, m, 0, 5400, &wait)); /* ejected at 4401 (the attempt's end) */
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 0, 5401, &wait));
}

static void test_ejection_time_is_capped(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    uint64_t now = 1000, wait = 0;
    for (int round = 0; round < 6; round++) {
        attempt(f, m, 0, SL_BAL_FAIL, 0, now);
        attempt(f, m, 0, SL_BAL_FAIL, 0, now);
        while (!sl_bal_target_ok(&f->b, f->cfg, m, 0, now, &wait)) {
            assert_true(wait <= 3001); /* max_ejection_ms, from the attempt's end 1 ms later */
            now += wait;
        }
    }
}

static void test_keys_are_benched(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    const sl_provider_cfg *a = &f->cfg->providers[0], *b = &f->cfg->providers[1];
    uint32_t k;
    uint64_t wait;
    /* key 0 of a answers 429 with retry-after 2 s */
    sl_bal_attempt at = {.cfg = f->cfg, .model = m, .target = 0, .key = 0};
    sl_bal_begin(&f->b, &at, 1000 * 1000000ull);
    sl_bal_end(&f->b, &at, SL_BAL_KEY_LIMITED, 2000, 1000 * 1000000ull);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sl_bal_pick_key(&f->b, f->cfg, a, 0, 1500, &k, &wait), SL_OK);
        assert_int_equal(k, 1);
    }
    assert_int_equal(sl_bal_pick_key(&f->b, f->cfg, a, 1u << 1, 1500, &k, &wait), SL_ENOTFOUND);
    assert_int_equal(wait, 1500);
    assert_int_equal(sl_bal_pick_key(&f->b, f->cfg, a, 1u << 1, 3000, &k, &wait), SL_OK);
    assert_int_equal(k, 0);
    /* b has no keys: one implicit key; a 401 benches it for key_cooldown_ms, and the target with it */
    sl_bal_attempt bt = {.cfg = f->cfg, .model = m, .target = 1, .key = 0};
    sl_bal_begin(&f->b, &bt, 1000 * 1000000ull);
    sl_bal_end(&f->b, &bt, SL_BAL_KEY_REJECTED, 0, 1000 * 1000000ull);
    assert_false(sl_bal_target_ok(&f->b, f->cfg, m, 1, 5999, &wait));
    assert_int_equal(wait, 1);
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 1, 6000, &wait));
    (void)b;
}

static void test_retry_budget(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    /* no requests: budget_min (2) retries */
    assert_true(sl_bal_take_retry(&f->b, f->cfg, m, 1000));
    assert_true(sl_bal_take_retry(&f->b, f->cfg, m, 1000));
    assert_false(sl_bal_take_retry(&f->b, f->cfg, m, 1000));
    /* 50 requests: 20% = 10 retries in the window */
    for (int i = 0; i < 50; i++) sl_bal_note_request(&f->b, f->cfg, m, 2000);
    int got = 0;
    while (sl_bal_take_retry(&f->b, f->cfg, m, 2500)) got++;
    assert_int_equal(got, 8); /* 10 minus the 2 taken a second earlier */
    /* ten seconds later the window has moved on */
    assert_true(sl_bal_take_retry(&f->b, f->cfg, m, 13000));
}

static void test_backoff_bounds(void **state)
{
    fx *f = *state;
    const sl_retry_cfg *rc = &model(f, "w")->retry;
    for (uint32_t n = 1; n <= 30; n++) {
        uint64_t d = n < 5 ? 100ull << (n - 1) : 1000;
        for (int i = 0; i < 50; i++) {
            uint64_t ms = sl_bal_backoff_ms(&f->b, rc, n);
            assert_true(ms >= d / 2 && ms <= d);
        }
    }
}

static void test_retry_after_parsing(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(sl_bal_parse_retry_after(SL_STR(" 3 "), 0, &ms), SL_OK);
    assert_int_equal(ms, 3000);
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("99999999999"), 0, &ms), SL_OK);
    assert_int_equal(ms, 86400000); /* capped at a day */
    /* 1994-11-06 08:49:37 UTC is 784111777 */
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("Sun, 06 Nov 1994 08:49:37 GMT"), 784111770, &ms), SL_OK);
    assert_int_equal(ms, 7000);
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("Sun, 06 Nov 1994 08:49:37 GMT"), 784111800, &ms), SL_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("soon"), 0, &ms), SL_EINVAL);
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("-1"), 0, &ms), SL_EINVAL);
    assert_int_equal(sl_bal_parse_retry_after(SL_STR("Sun, 06 Foo 1994 08:49:37 GMT"), 0, &ms), SL_EINVAL);
}

static void test_health_snapshot(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    sl_health_entry e[8];
    size_t n = sl_bal_health(&f->b, 1000, e, 8);
    assert_int_equal(n, 3); /* a: 2 keys, b: 1 implicit */
    assert_string_equal(e[0].provider, "a");
    assert_int_equal(e[1].key_index, 1);
    assert_true(e[0].healthy && e[1].healthy && e[2].healthy);
    sl_bal_attempt at = {.cfg = f->cfg, .model = m, .target = 0, .key = 1};
    sl_bal_begin(&f->b, &at, 1000 * 1000000ull);
    sl_bal_end(&f->b, &at, SL_BAL_KEY_REJECTED, 0, 1000 * 1000000ull);
    n = sl_bal_health(&f->b, 1001, e, 8);
    assert_true(e[0].healthy);
    assert_false(e[1].healthy);
    /* probes: two failures take b down */
    sl_bal_probe_result(&f->b, f->cfg, &f->cfg->providers[1], false);
    n = sl_bal_health(&f->b, 1001, e, 8);
    assert_true(e[2].healthy);
    sl_bal_probe_result(&f->b, f->cfg, &f->cfg->providers[1], false);
    n = sl_bal_health(&f->b, 1001, e, 8);
    assert_false(e[2].healthy);
    for (int i = 0; i < 10; i++) assert_int_equal(pick(f, m, 0, 1001), 0);
    sl_bal_probe_result(&f->b, f->cfg, &f->cfg->providers[1], true);
    n = sl_bal_health(&f->b, 1001, e, 8);
    assert_true(e[2].healthy);
    assert_int_equal(sl_bal_health(&f->b, 1001, e, 2), 2); /* cap respected */
}

static void test_reload_carries_health_over(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "w");
    attempt(f, m, 0, SL_BAL_FAIL, 0, 1000);
    attempt(f, m, 0, SL_BAL_FAIL, 0, 1000); /* ejected until 2000 */
    sl_config *c2 = sl_test_load_config(yaml);
    assert_int_equal(sl_balancer_configure(&f->b, c2), SL_OK);
    uint64_t wait;
    const sl_model_cfg *m2 = sl_config_find_model(c2, SL_STR("w"));
    assert_false(sl_bal_target_ok(&f->b, c2, m2, 0, 1500, &wait));
    /* the old snapshot's requests no longer touch the state */
    attempt(f, m, 1, SL_BAL_FAIL, 0, 1500);
    attempt(f, m, 1, SL_BAL_FAIL, 0, 1500);
    assert_true(sl_bal_target_ok(&f->b, c2, m2, 1, 1500, &wait));
    assert_true(sl_bal_target_ok(&f->b, f->cfg, m, 0, 1500, &wait)); /* old snapshot: stateless */
    sl_config_release(f->cfg);
    f->cfg = c2;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_weighted_is_exact_and_smooth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tried_targets_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_request_prefers_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_prefers_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ejection_and_half_open_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ejection_time_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_are_benched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_bounds, setup, teardown),
        cmocka_unit_test(test_retry_after_parsing),
        cmocka_unit_test_setup_teardown(test_health_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_carries_health_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
