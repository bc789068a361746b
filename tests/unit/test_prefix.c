/*
 * test_prefix.c: the LLM-aware balancers' pieces (src/balance/prefix.c,
 * lbshared.c, pick.c): chained block hashes, the prefix index (matching,
 * LRU eviction per target, bounds), prefix_cache picks (stickiness, the
 * overload bound, misses to the least loaded, affinity kept over a reload),
 * metrics scores (fresh, stale, failed) and the Prometheus parser. Time is
 * passed in: no clocks, no sleeps, no network.
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
    "  - { name: a, type: openai-compatible, base_url: 'http://127.0.0.1:1/v1' }\n"
    "  - { name: b, type: openai-compatible, base_url: 'http://127.0.0.1:2/v1' }\n"
    "  - { name: c, type: openai-compatible, base_url: 'http://127.0.0.1:3/v1' }\n"
    "models:\n"
    "  - name: pc\n"
    "    balance: prefix_cache\n"
    "    prefix_cache: { block_tokens: 4, max_entries: 64, overload_percent: 200 }\n"
    "    targets: [ { provider: a }, { provider: b }, { provider: c } ]\n"
    "  - name: met\n"
    "    balance: metrics\n"
    "    metrics: { stale_ms: 100, weights: { queue: 100, kv_cache: 100, running: 10 } }\n"
    "    targets: [ { provider: a }, { provider: b }, { provider: c } ]\n";

static int setup(void **state) { return sl_test_bal_setup(state, yaml, 7); }
static int teardown(void **state) { return sl_test_bal_teardown(state); }

/* Hashes of a prompt text in 16-byte blocks (block_tokens 4). */
static size_t hashes(const char *text, uint64_t *out, size_t cap)
{
    sl_str part = sl_str_from_cstr(text);
    return sl_prefix_hash(&part, 1, 16, out, cap);
}

static uint32_t pick(fx *f, const sl_model_cfg *m, const char *prompt, uint64_t now)
{
    uint64_t h[64];
    sl_bal_hint hint = {h, prompt ? hashes(prompt, h, 64) : 0};
    uint32_t t = 99;
    uint64_t wait = 0;
    assert_int_equal(sl_bal_pick_hint(&f->b, f->cfg, m, &hint, 0, now, &t, &wait), SL_OK);
    return t;
}

/* An attempt left open on target t (counted in flight until ended). */
static sl_bal_attempt *hold(fx *f, const sl_model_cfg *m, uint32_t t)
{
    sl_bal_attempt *a = calloc(1, sizeof *a);
    *a = (sl_bal_attempt){.cfg = f->cfg, .model = m, .target = t};
    sl_bal_begin(&f->b, a, 1000000000ull);
    return a;
}

static void release(fx *f, sl_bal_attempt *a)
{
    sl_bal_end(&f->b, a, SL_BAL_OK, 0, 2000000000ull);
    free(a);
}

/* ---------------------------------------------------------------- hashing */

static void test_hash_chain_and_blocks(void **state)
{
    uint64_t a[8], b[8], c[8];
    assert_int_equal(hashes("0123456789abcdefGHIJKLMNOPQRSTUVwxyz", a, 8), 2); /* the partial third block is not hashed */
    assert_int_equal(hashes("0123456789abcdefGHIJKLMNOPQRSTUV--different tail--", b, 8), 3);
    assert_true(a[0] == b[0] && a[1] == b[1]);
    assert_int_equal(hashes("X123456789abcdefGHIJKLMNOPQRSTUV", c, 8), 2);
    /* chained: a different first block changes every later hash, even of identical bytes */
    assert_true(c[0] != a[0] && c[1] != a[1]);
    /* the same bytes split over parts differently hash the same */
    sl_str parts[3] = {SL_STR("0123456"), SL_STR("789abcdefGHIJ"), SL_STR("KLMNOPQRSTUVwxyz")};
    uint64_t d[8];
    assert_int_equal(sl_prefix_hash(parts, 3, 16, d, 8), 2);
    assert_true(d[0] == a[0] && d[1] == a[1]);
    /* capped */
    assert_int_equal(hashes("0123456789abcdefGHIJKLMNOPQRSTUV", d, 1), 1);
    assert_int_equal(sl_prefix_hash(parts, 3, 0, d, 8), 0);
}

/* ---------------------------------------------------------------- index */

static void test_index_longest_match(void **state)
{
    sl_prefix_index *ix = sl_prefix_index_new(3, 64);
    uint64_t h[6] = {11, 12, 13, 14, 15, 16}, other[2] = {11, 99};
    uint32_t m[3];
    assert_int_equal(sl_prefix_match(ix, h, 6, m), 0);
    assert_int_equal(sl_prefix_insert(ix, h, 5, 0), SL_OK);
    assert_int_equal(sl_prefix_insert(ix, h, 2, 1), SL_OK);
    assert_int_equal(sl_prefix_match(ix, h, 6, m), 5);
    assert_int_equal(m[0], 5);
    assert_int_equal(m[1], 2);
    assert_int_equal(m[2], 0);
    /* a run must be unbroken: a gap ends it */
    uint64_t gap[3] = {11, 77, 13};
    assert_int_equal(sl_prefix_match(ix, gap, 3, m), 1);
    assert_int_equal(sl_prefix_match(ix, other, 2, m), 1);
    assert_int_equal(m[0], 1);
    assert_int_equal(m[1], 1);
    /* inserting the same blocks again adds nothing */
    assert_int_equal(sl_prefix_insert(ix, h, 5, 0), SL_OK);
    assert_int_equal(sl_prefix_count(ix, 0), 5);
    assert_int_equal(sl_prefix_insert(ix, h, 1, 3), SL_EINVAL);
    sl_prefix_index_free(ix);
}

static void test_index_lru_eviction_per_target(void **state)
{
    sl_prefix_index *ix = sl_prefix_index_new(2, 16);
    uint64_t a[8], b[12], big[40];
    for (int i = 0; i < 8; i++) a[i] = 100 + (uint64_t)i;
    for (int i = 0; i < 12; i++) b[i] = 200 + (uint64_t)i;
    for (int i = 0; i < 40; i++) big[i] = 300 + (uint64_t)i;
    uint32_t m[2];
    sl_prefix_insert(ix, a, 8, 0);
    sl_prefix_insert(ix, a, 8, 1);
    sl_prefix_insert(ix, b, 12, 0); /* 20 blocks > 16: four of a's go, its trailing ones first */
    assert_int_equal(sl_prefix_count(ix, 0), 16);
    assert_int_equal(sl_prefix_match(ix, a, 8, m), 8);
    assert_int_equal(m[0], 4); /* a's leading blocks survived */
    assert_int_equal(m[1], 8); /* the other target's memory is its own */
    assert_int_equal(sl_prefix_match(ix, b, 12, m), 12);
    assert_int_equal(m[0], 12);
    /* a prompt longer than the whole budget keeps its first 16 blocks, never more */
    sl_prefix_insert(ix, big, 40, 1);
    assert_int_equal(sl_prefix_count(ix, 1), 16);
    assert_int_equal(sl_prefix_match(ix, big, 40, m), 16);
    assert_int_equal(m[1], 16);
    assert_int_equal(sl_prefix_match(ix, a, 8, m), 4);
    assert_int_equal(m[1], 0);
    /* matching refreshes nothing; inserting a again makes it most recent for target 0 */
    sl_prefix_insert(ix, a, 8, 0);
    assert_int_equal(sl_prefix_count(ix, 0), 16);
    assert_int_equal(sl_prefix_match(ix, a, 8, m), 8);
    assert_int_equal(m[0], 8);
    sl_prefix_index_free(ix);
    assert_null(sl_prefix_index_new(0, 16));
}

/* ---------------------------------------------------------------- prefix_cache picks */

#define SYS "You are a helpful assistant. Answer briefly. "
#define S1 SYS "[session one] user: hello there, how are you today?"
#define S2 SYS "[session two] user: what is the capital of France, please?"

static void test_session_sticks_to_its_target(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "pc");
    uint32_t t1 = pick(f, m, S1, 1000);
    uint32_t t2 = pick(f, m, S2, 1000);
    /* later turns extend the prompt: the longest match wins every time */
    for (int turn = 0; turn < 10; turn++) {
        assert_int_equal(pick(f, m, S1 " assistant: fine. user: and then? more words here", 1000), t1);
        assert_int_equal(pick(f, m, S2 " assistant: Paris. user: and Spain? more words here", 1000), t2);
    }
    /* a new session shares only the system prompt with both: it goes to the least loaded (a tie: either) */
    uint32_t t3 = pick(f, m, SYS "[session three] user: something completely new", 1000);
    assert_true(t3 < 3);
}

static void test_miss_goes_to_least_loaded(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "pc");
    sl_bal_attempt *a0 = hold(f, m, 0), *a1 = hold(f, m, 0), *b0 = hold(f, m, 1);
    assert_int_equal(pick(f, m, "no block in common with anything seen before, long enough", 1000), 2);
    assert_int_equal(pick(f, m, NULL, 1000), 2); /* no prompt at all: the same rule */
    release(f, a0), release(f, a1), release(f, b0);
}

static void test_overload_bound_spills(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "pc");
    uint32_t t = pick(f, m, S1, 1000);
    sl_bal_attempt *held[8];
    /* overload_percent 200: the best match may carry up to 2 * (least + 1) = 2 while the others are idle */
    held[0] = hold(f, m, t);
    held[1] = hold(f, m, t);
    assert_int_equal(pick(f, m, S1 " next turn", 1000), t);
    held[2] = hold(f, m, t);
    uint32_t u = pick(f, m, S1 " next turn", 1000);
    assert_int_not_equal(u, t); /* 3 > 2: spilled to the least loaded */
    /* the spill target now holds the prefix too: the two share it, least loaded first */
    held[3] = hold(f, m, u);
    held[4] = hold(f, m, u);
    held[5] = hold(f, m, u);
    assert_int_equal(pick(f, m, S1 " next turn", 1000), 3 - t - u); /* both over the bound: the third */
    for (int i = 0; i < 6; i++) release(f, held[i]);
}

static void test_affinity_survives_reload(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "pc");
    uint32_t t = pick(f, m, S2, 1000);
    sl_config *c2 = sl_test_load_config(yaml);
    assert_int_equal(sl_balancer_configure(&f->b, c2), SL_OK);
    sl_config_release(f->cfg);
    f->cfg = c2;
    m = model(f, "pc");
    for (int i = 0; i < 5; i++) assert_int_equal(pick(f, m, S2 " and more", 1000), t);
}

/* ---------------------------------------------------------------- metrics */

static void put(fx *f, const sl_model_cfg *m, uint32_t ti, bool ok, uint64_t at, double waiting, double running, double kv)
{
    sl_lb_metrics met = {.ok = ok, .at_ms = at, .waiting = waiting, .running = running, .kv = kv};
    sl_lb_metrics_put(f->b.lbm[m->index], ti, &met);
}

static void test_metrics_scores(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "met");
    put(f, m, 0, true, 1000, 3, 8, 0.9);  /* 3 + 0.9 + 0.8 = 4.7 */
    put(f, m, 1, true, 1000, 0, 8, 0.5);  /* 0 + 0.5 + 0.8 = 1.3 */
    put(f, m, 2, true, 1000, 1, 2, 0.1);  /* 1 + 0.1 + 0.2 = 1.3 */
    bool fresh;
    assert_true(sl_lb_load(f->b.lbm[m->index], m, 0, 1050, &fresh) > 4.6);
    assert_true(fresh);
    uint32_t t = pick(f, m, NULL, 1050);
    assert_true(t == 1 || t == 2);
    /* a request sent since the scrape counts until the next scrape shows it */
    sl_bal_attempt *a = hold(f, m, t);
    assert_int_equal(pick(f, m, NULL, 1050), t == 1 ? 2 : 1);
    release(f, a);
    /* stale (older than stale_ms 100): in-flight counts instead */
    sl_bal_attempt *b = hold(f, m, 1), *c = hold(f, m, 2);
    assert_int_equal(pick(f, m, NULL, 1200), 0);
    assert_false(sl_lb_load(f->b.lbm[m->index], m, 0, 1200, &fresh) != 0);
    assert_false(fresh);
    /* a failed scrape: in-flight counts at once, whatever the age of the last good one */
    put(f, m, 0, true, 1200, 9, 9, 1.0);
    put(f, m, 1, true, 1200, 0, 0, 0);
    put(f, m, 2, true, 1200, 0, 0, 0);
    sl_bal_attempt *d = hold(f, m, 1), *e = hold(f, m, 2);
    assert_int_not_equal(pick(f, m, NULL, 1210), 0); /* fresh: 0 is the busiest */
    put(f, m, 0, false, 1210, 0, 0, 0);
    assert_int_equal(pick(f, m, NULL, 1210), 0);     /* failed: 0 in flight beats 2 and 2 */
    release(f, b), release(f, c), release(f, d), release(f, e);
}

static void test_prometheus_parse(void **state)
{
    const char *text = "# HELP vllm:num_requests_waiting x\n"
                       "# TYPE vllm:num_requests_waiting gauge\n"
                       "vllm:num_requests_waiting{model_name=\"a\"} 2\n"
                       "vllm:num_requests_waiting{model_name=\"b\",x=\"}\\\"\"} 3 1700000000000\r\n"
                       "vllm:num_requests_running{model_name=\"a\"} 7.0\n"
                       "vllm:num_requests_waiting_by_reason{reason=\"x\"} 100\n"
                       "vllm:kv_cache_usage_perc 0.25\n"
                       "vllm:prefix_cache_hits_total 10\n"
                       "vllm:prefix_cache_queries_total 40\n";
    sl_lb_metrics m = {0};
    assert_int_equal(sl_lb_parse_prometheus(sl_str_from_cstr(text), &m), SL_OK);
    assert_true(m.waiting == 5 && m.running == 7 && m.kv == 0.25 && m.hits == 10 && m.queries == 40);
    /* older vLLM: gpu_cache_usage_perc */
    assert_int_equal(sl_lb_parse_prometheus(SL_STR("vllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 0.5\n"), &m),
                     SL_OK);
    assert_true(m.kv == 0.5);
    assert_int_equal(sl_lb_parse_prometheus(SL_STR("up 1\n"), &m), SL_ENOTFOUND);
    assert_int_equal(sl_lb_parse_prometheus(SL_STR("vllm:num_requests_waiting{a=\"b\" 1\n"), &m), SL_EPARSE);
    assert_int_equal(sl_lb_parse_prometheus(SL_STR("vllm:num_requests_waiting nan\n"), &m), SL_EPARSE);
    assert_int_equal(sl_lb_parse_prometheus(SL_STR("vllm:num_requests_waiting -1\n"), &m), SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_chain_and_blocks),
        cmocka_unit_test(test_index_longest_match),
        cmocka_unit_test(test_index_lru_eviction_per_target),
        cmocka_unit_test_setup_teardown(test_session_sticks_to_its_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_goes_to_least_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overload_bound_spills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_affinity_survives_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_scores, setup, teardown),
        cmocka_unit_test(test_prometheus_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
