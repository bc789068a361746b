/*
 * test_lbshare.c: sharing balancer state between instances through Redis
 * (src/balance/lbshared_redis.c): the log entry encoding and its bounds,
 * merging another instance's inserts into an index (its own skipped,
 * malformed batches refused), the in-flight counts' text form, remote counts
 * in loads (fresh, stale, dropped) and in least_request picks; and, against
 * a real redis-server on a loopback port when one is installed (skipped
 * otherwise), the round script: two "instances" share inserts and counts, a
 * new one starts with the log's past, one that fell a ring behind skips what
 * was overwritten, a lost and refilled log is read from its start, a silent
 * instance's counts expire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_fixture.h"

#include "balance_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "balance/balance.h"
#include "core/buf.h"
#include "state/state.h"

/* ---------------------------------------------------------------- encoding and merging */

static void seq(uint64_t *h, size_t n, uint64_t base)
{
    for (size_t i = 0; i < n; i++) h[i] = base + i * 0x1000001ull;
}

static void test_encode_apply_roundtrip(void **state)
{
    sl_buf b;
    sl_buf_init(&b, SL_LBSHARE_BATCH_MAX);
    uint64_t a[6], c[3];
    seq(a, 6, 0xA000000000000001ull);
    seq(c, 3, 0xC000000000000001ull);
    assert_int_equal(sl_lbshare_encode(&b, 42, 1, a, 6), SL_OK);
    assert_int_equal(b.len, 10 + 4 + 48);
    assert_int_equal(sl_lbshare_encode(&b, 42, 2, c, 3), SL_OK);
    assert_int_equal(b.len, 10 + 4 + 48 + 4 + 24); /* one header per batch */

    sl_prefix_index *ix = sl_prefix_index_new(3, 64);
    size_t records = 99;
    /* read back by the instance that wrote it: nothing */
    assert_int_equal(sl_lbshare_apply(ix, 3, sl_buf_str(&b), 42, &records), SL_OK);
    assert_int_equal(records, 0);
    assert_int_equal(sl_prefix_count(ix, 1), 0);
    /* another instance: both records, matching as the writer's index would */
    assert_int_equal(sl_lbshare_apply(ix, 3, sl_buf_str(&b), 7, &records), SL_OK);
    assert_int_equal(records, 2);
    uint32_t m[3];
    assert_int_equal(sl_prefix_match(ix, a, 6, m), 6);
    assert_int_equal(m[1], 6);
    assert_int_equal(m[0] + m[2], 0);
    assert_int_equal(sl_prefix_match(ix, c, 3, m), 3);
    assert_int_equal(m[2], 3);
    /* applying twice changes nothing but recency */
    assert_int_equal(sl_lbshare_apply(ix, 3, sl_buf_str(&b), 7, &records), SL_OK);
    assert_int_equal(sl_prefix_count(ix, 1), 6);
    /* an index with fewer targets skips the records it cannot hold */
    sl_prefix_index *small = sl_prefix_index_new(2, 64);
    assert_int_equal(sl_lbshare_apply(small, 2, sl_buf_str(&b), 7, &records), SL_OK);
    assert_int_equal(records, 1);
    sl_prefix_index_free(small);
    sl_prefix_index_free(ix);
    sl_buf_free(&b);
}

static void test_encode_bounds(void **state)
{
    static uint64_t h[SL_LBSHARE_RECORD_MAX + 1];
    seq(h, SL_LBSHARE_RECORD_MAX + 1, 1);
    sl_buf b;
    sl_buf_init(&b, SL_LBSHARE_BATCH_MAX);
    assert_int_equal(sl_lbshare_encode(&b, 1, 0, h, 0), SL_EINVAL);
    assert_int_equal(sl_lbshare_encode(&b, 1, 0, h, SL_LBSHARE_RECORD_MAX + 1), SL_EINVAL);
    assert_int_equal(sl_lbshare_encode(&b, 1, 70000, h, 1), SL_EINVAL);
    /* the batch cap: whole records only */
    size_t n = 0;
    while (sl_lbshare_encode(&b, 1, 0, h, SL_LBSHARE_RECORD_MAX) == SL_OK) n++;
    assert_int_equal(n, (SL_LBSHARE_BATCH_MAX - 10) / (4 + 8 * SL_LBSHARE_RECORD_MAX));
    size_t len = b.len;
    assert_int_equal(sl_lbshare_encode(&b, 1, 0, h, SL_LBSHARE_RECORD_MAX), SL_ELIMIT);
    assert_int_equal(b.len, len);
    assert_true(b.len <= SL_LBSHARE_BATCH_MAX);
    sl_buf_free(&b);
}

static void test_apply_refuses_malformed(void **state)
{
    uint64_t h[4];
    seq(h, 4, 5);
    sl_buf b;
    sl_buf_init(&b, SL_LBSHARE_BATCH_MAX);
    assert_int_equal(sl_lbshare_encode(&b, 9, 0, h, 2), SL_OK);
    assert_int_equal(sl_lbshare_encode(&b, 9, 1, h, 4), SL_OK);
    sl_prefix_index *ix = sl_prefix_index_new(2, 64);
    size_t records;
    /* cut inside the second record: the first is applied, the batch is reported bad */
    assert_int_equal(sl_lbshare_apply(ix, 2, (sl_str){b.p, b.len - 3}, 1, &records), SL_EPARSE);
    assert_int_equal(records, 1);
    assert_int_equal(sl_prefix_count(ix, 0), 2);
    assert_int_equal(sl_prefix_count(ix, 1), 0);
    /* cut inside a record head, a bad magic or version, an empty record, a count past the bound */
    assert_int_equal(sl_lbshare_apply(ix, 2, (sl_str){b.p, 12}, 1, &records), SL_EPARSE);
    assert_int_equal(sl_lbshare_apply(ix, 2, SL_STR("Q\x01" "abcdefgh"), 1, &records), SL_EPARSE);
    assert_int_equal(sl_lbshare_apply(ix, 2, SL_STR("P\x02" "abcdefgh"), 1, &records), SL_EPARSE);
    assert_int_equal(sl_lbshare_apply(ix, 2, SL_STR("P\x01" "abc"), 1, &records), SL_EPARSE);
    assert_int_equal(sl_lbshare_apply(ix, 2, (sl_str){"P\x01" "abcdefgh" "\0\0\0\0", 14}, 1, &records), SL_EPARSE);
    assert_int_equal(sl_lbshare_apply(ix, 2, (sl_str){"P\x01" "abcdefgh" "\0\0\xff\x7f", 14}, 1, &records), SL_EPARSE);
    /* a header alone is an empty batch */
    assert_int_equal(sl_lbshare_apply(ix, 2, SL_STR("P\x01" "abcdefgh"), 1, &records), SL_OK);
    assert_int_equal(records, 0);
    sl_prefix_index_free(ix);
    sl_buf_free(&b);
}

static void test_counts_text(void **state)
{
    sl_buf b;
    sl_buf_init(&b, 1024);
    int64_t v[4] = {3, 0, -2, 1234567890123}, out[4];
    assert_int_equal(sl_lbshare_format_counts(&b, v, 4), SL_OK);
    assert_int_equal(b.len, strlen("3 0 0 1234567890123"));
    assert_memory_equal(b.p, "3 0 0 1234567890123", b.len); /* negative (a transient) is sent as 0 */
    assert_int_equal(sl_lbshare_parse_counts(sl_buf_str(&b), out, 4), SL_OK);
    assert_true(out[0] == 3 && out[1] == 0 && out[2] == 0 && out[3] == 1234567890123);
    /* fewer than targets: the rest 0; more: ignored; empty: all 0 */
    assert_int_equal(sl_lbshare_parse_counts(SL_STR("5"), out, 4), SL_OK);
    assert_true(out[0] == 5 && out[1] == 0 && out[3] == 0);
    assert_int_equal(sl_lbshare_parse_counts(SL_STR("1 2 3 4 5 6"), out, 2), SL_OK);
    assert_true(out[0] == 1 && out[1] == 2);
    assert_int_equal(sl_lbshare_parse_counts(SL_STR(""), out, 4), SL_OK);
    assert_int_equal(out[0], 0);
    assert_int_equal(sl_lbshare_parse_counts(SL_STR("1 -2"), out, 4), SL_EPARSE);
    assert_int_equal(sl_lbshare_parse_counts(SL_STR("1 x"), out, 4), SL_EPARSE);
    assert_int_equal(sl_lbshare_parse_counts(SL_STR("99999999999999999999"), out, 4), SL_EPARSE);
    sl_buf_free(&b);
}

static void test_insert_new_lists_only_new(void **state)
{
    uint64_t h[8], added[8];
    seq(h, 8, 77);
    sl_prefix_index *ix = sl_prefix_index_new(2, 64);
    size_t n = 99;
    assert_int_equal(sl_prefix_insert_new(ix, h, 5, 0, added, 8, &n), SL_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(added, h, 5 * sizeof *h);
    /* the next turn: only its new blocks, in prompt order */
    assert_int_equal(sl_prefix_insert_new(ix, h, 8, 0, added, 8, &n), SL_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(added, h + 5, 3 * sizeof *h);
    /* per target; and capped to the leading ones */
    assert_int_equal(sl_prefix_insert_new(ix, h, 8, 1, added, 2, &n), SL_OK);
    assert_int_equal(n, 2);
    assert_true(added[0] == h[0] && added[1] == h[1]);
    assert_int_equal(sl_prefix_count(ix, 1), 8); /* all inserted all the same */
    sl_prefix_index_free(ix);
}

/* ---------------------------------------------------------------- loads and picks */

static const char yaml[] =
    "state: { backend: redis, redis: { url: 'redis://127.0.0.1:1/0' } }\n"
    "providers:\n"
    "  - { name: a, type: openai-compatible, base_url: 'http://127.0.0.1:1/v1' }\n"
    "  - { name: b, type: openai-compatible, base_url: 'http://127.0.0.1:2/v1' }\n"
    "models:\n"
    "  - name: lr\n"
    "    balance: least_request\n"
    "    targets: [ { provider: a }, { provider: b } ]\n"
    "  - name: pc\n"
    "    balance: prefix_cache\n"
    "    prefix_cache: { block_tokens: 4, max_entries: 64 }\n"
    "    targets: [ { provider: a }, { provider: b } ]\n"
    "  - name: w\n"
    "    targets: [ { provider: a }, { provider: b } ]\n";

static int setup(void **state) { return sl_test_bal_setup(state, yaml, 7); }
static int teardown(void **state) { return sl_test_bal_teardown(state); }

/* A round's answer as the script gives it: cursor, skipped, the others' counts, epoch, entries. */
static int answer(sl_lb_model *lm, const char *counts, const sl_str *entries, size_t n, uint64_t now)
{
    sl_state_item it[8] = {{.is_int = true, .num = 5}, {.is_int = true}, {.s = sl_str_from_cstr(counts)}, {.s = SL_STR("ep")}};
    for (size_t i = 0; i < n; i++) it[4 + i].s = entries[i];
    return sl_lbshare_round_apply(lm, 1, it, 4 + n, now);
}

static void test_remote_counts_in_loads(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "lr");
    sl_lb_model *lm = f->b.lbm[m->index];
    assert_non_null(lm); /* least_request keeps process-wide state only with the redis backend */
    assert_true(lm->shared);
    assert_null(f->b.lbm[model(f, "w")->index]);
    bool fresh;
    assert_int_equal(answer(lm, "4 1", NULL, 0, 1000), SL_OK);
    assert_int_equal(lm->cursor, 5);
    assert_true(sl_lb_load(lm, m, 0, 1000, &fresh) == 4.0);
    assert_true(sl_lb_load(lm, m, 1, 1000 + SL_LBSHARE_STALE_MS, &fresh) == 1.0);
    /* B: 4 elsewhere on a, 1 on b -> b, every time, until b has 4 of its own */
    uint32_t t;
    uint64_t wait;
    sl_bal_attempt *held[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sl_bal_pick(&f->b, f->cfg, m, 0, 1000, &t, &wait), SL_OK);
        assert_int_equal(t, 1);
        held[i] = calloc(1, sizeof *held[i]);
        *held[i] = (sl_bal_attempt){.cfg = f->cfg, .model = m, .target = t};
        sl_bal_begin(&f->b, held[i], 1000000000ull);
    }
    assert_true(sl_lb_load(lm, m, 1, 1000, &fresh) == 4.0); /* 1 remote + 3 here */
    /* stale: this process's own counts alone */
    assert_true(sl_lb_load(lm, m, 0, 1001 + SL_LBSHARE_STALE_MS, &fresh) == 0.0);
    assert_int_equal(sl_bal_pick(&f->b, f->cfg, m, 0, 1001 + SL_LBSHARE_STALE_MS, &t, &wait), SL_OK);
    assert_int_equal(t, 0);
    /* a malformed answer changes nothing */
    assert_int_equal(answer(lm, "x", NULL, 0, 2000), SL_EPARSE);
    sl_state_item one = {.is_int = true, .num = 1};
    assert_int_equal(sl_lbshare_round_apply(lm, 1, &one, 1, 2000), SL_EPARSE);
    for (int i = 0; i < 3; i++) {
        sl_bal_end(&f->b, held[i], SL_BAL_OK, 0, 2000000000ull);
        free(held[i]);
    }
}

static void test_prefix_inserts_are_published_and_merged(void **state)
{
    fx *f = *state;
    const sl_model_cfg *m = model(f, "pc");
    sl_lb_model *lm = f->b.lbm[m->index];
    assert_true(lm && lm->shared && lm->ix);
    uint64_t h[6];
    sl_str prompt = SL_STR("0123456789abcdefGHIJKLMNOPQRSTUVwxyz0123456789ABCDEFghijklmnopqrstuvWXYZ");
    size_t n = sl_prefix_hash(&prompt, 1, 16, h, 6);
    assert_int_equal(n, 4);
    /* a pick records its blocks in the outbox: one record with the 4 new blocks */
    sl_bal_hint hint = {h, n};
    uint32_t t;
    uint64_t wait;
    assert_int_equal(sl_bal_pick_hint(&f->b, f->cfg, m, &hint, 0, 1000, &t, &wait), SL_OK);
    assert_int_equal(lm->outbox.len, 10 + 4 + 4 * 8);
    /* the same prompt again: nothing new to publish */
    assert_int_equal(sl_bal_pick_hint(&f->b, f->cfg, m, &hint, 0, 1000, &t, &wait), SL_OK);
    assert_int_equal(lm->outbox.len, 10 + 4 + 4 * 8);
    /* another instance's batch for the other target, merged: a longer prompt of its own follows it */
    uint64_t other[6];
    sl_str p2 = SL_STR("zzzzzzzzzzzzzzzzyyyyyyyyyyyyyyyyxxxxxxxxxxxxxxxx");
    size_t n2 = sl_prefix_hash(&p2, 1, 16, other, 6);
    sl_buf b;
    sl_buf_init(&b, SL_LBSHARE_BATCH_MAX);
    assert_int_equal(sl_lbshare_encode(&b, 1234, 1 - t, other, n2), SL_OK);
    sl_str e = sl_buf_str(&b);
    assert_int_equal(answer(lm, "", &e, 1, 1000), SL_OK);
    sl_bal_hint hint2 = {other, n2};
    uint32_t t2;
    assert_int_equal(sl_bal_pick_hint(&f->b, f->cfg, m, &hint2, 0, 1000, &t2, &wait), SL_OK);
    assert_int_equal(t2, 1 - t);
    sl_buf_free(&b);
}

/* ---------------------------------------------------------------- against redis-server */

static uv_loop_t loop;

typedef struct got {
    int calls, err;
    sl_lb_model *lm;
    uint64_t instance;
    int apply_rc;
    int64_t skipped;
    size_t entries;
} got;

static void on_round(void *ud, int err, const sl_state_item *it, size_t n)
{
    got *g = ud;
    g->calls++;
    g->err = err;
    if (err) return;
    g->skipped = n > 1 ? it[1].num : -1;
    g->entries = n > 4 ? n - 4 : 0;
    g->apply_rc = sl_lbshare_round_apply(g->lm, g->instance, it, n, 1000);
}

static void round_of(sl_state *st, sl_lb_model *lm, uint64_t instance, got *g)
{
    *g = (got){.lm = lm, .instance = instance};
    assert_int_equal(sl_lbshare_round_start(st, lm, instance, on_round, g), SL_OK);
    for (int i = 0; i < 20000 && !g->calls; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (!g->calls) sl_test_sleep_ms(1);
    }
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->err, SL_OK);
    assert_int_equal(g->apply_rc, SL_OK);
}

static const char plant_lua[] = "redis.call('HSET', KEYS[1], 'dead', '1 50 50') return 1\n";
static sl_state_script plant;

static const char wipe_lua[] = "redis.call('DEL', KEYS[1]) return 1\n";
static sl_state_script wipe;

static void on_planted(void *ud, int err, const sl_state_item *it, size_t n) { *(int *)ud = err == SL_OK ? 1 : -1; }

static void test_redis_two_instances(void **state)
{
    if (sl_test_redis_pid <= 0) {
        fprintf(stderr, "redis-server not available: skipped\n");
        skip();
    }
    fx *f = *state;
    uv_loop_init(&loop);
    sl_state_cfg sc = f->cfg->state;
    char pfx[64];
    snprintf(pfx, sizeof pfx, "t%d:", (int)getpid());
    sc.redis.host = "127.0.0.1";
    sc.redis.port = sl_test_redis_port;
    sc.redis.key_prefix = pfx;
    sc.redis.timeout_ms = 2000;
    sl_state *st = sl_state_open(&loop, &sc);
    assert_non_null(st);

    /* A (this balancer's state) and B (a second state object for the same model, as another process has) */
    const sl_model_cfg *m = model(f, "pc");
    sl_lb_model *a = f->b.lbm[m->index];
    sl_lb_model *b = sl_lb_model_get(m, true); /* the registry hands out A's: make a distinct one */
    assert_ptr_equal(b, a);
    sl_lb_model_put(b);
    static const char yaml2[] =
        "state: { backend: redis, redis: { url: 'redis://127.0.0.1:1/0' } }\n"
        "providers:\n"
        "  - { name: a, type: openai-compatible, base_url: 'http://127.0.0.1:1/v1' }\n"
        "  - { name: b, type: openai-compatible, base_url: 'http://127.0.0.1:2/v1' }\n"
        "models:\n"
        "  - name: pc2\n"
        "    balance: prefix_cache\n"
        "    prefix_cache: { block_tokens: 4, max_entries: 64 }\n"
        "    targets: [ { provider: a }, { provider: b } ]\n";
    sl_config *cfg2 = sl_test_load_config(yaml2);
    b = sl_lb_model_get(&cfg2->models[0], true);
    assert_true(b && b != a);
    b->share_sig = a->share_sig; /* the same model on another instance: the same keys (A writes as this process, B as instance 2) */

    uint64_t h[4];
    seq(h, 4, 0x5151);
    got g;
    round_of(st, b, 2, &g); /* B first: an empty log */
    assert_int_equal(g.entries, 0);
    sl_lbshare_record(a, 1, h, 4);
    atomic_store(&a->t[1].inflight, 3);
    round_of(st, a, sl_lbshare_instance(), &g); /* A publishes; reads its own entry back and skips it */
    assert_int_equal(g.entries, 1);
    assert_int_equal(sl_prefix_count(a->ix, 1), 0); /* only the pick path inserts locally; the record alone does not */
    round_of(st, b, 2, &g); /* B learns A's insert and counts */
    assert_int_equal(g.entries, 1);
    uint32_t mt[2];
    assert_int_equal(sl_prefix_match(b->ix, h, 4, mt), 4);
    assert_int_equal(mt[1], 4);
    assert_int_equal(atomic_load(&b->t[1].remote), 3);
    assert_int_equal(atomic_load(&b->t[0].remote), 0);
    round_of(st, a, sl_lbshare_instance(), &g); /* and A B's (zero) counts */
    assert_int_equal(atomic_load(&a->t[1].remote), 0);

    /* a silent instance's counts (stamped long ago) are dropped, not summed */
    sl_state_script_init(&plant, plant_lua);
    char kif[64];
    snprintf(kif, sizeof kif, "lb:{%016llx}:if", (unsigned long long)a->share_sig);
    int planted = 0;
    sl_str key = sl_str_from_cstr(kif);
    assert_int_equal(sl_state_eval(st, &plant, &key, 1, NULL, 0, on_planted, &planted, NULL), SL_OK);
    for (int i = 0; i < 20000 && !planted; i++) uv_run(&loop, UV_RUN_NOWAIT), sl_test_sleep_ms(1);
    assert_int_equal(planted, 1);
    round_of(st, b, 2, &g);
    assert_int_equal(atomic_load(&b->t[1].remote), 3);

    /* a new instance starts from the log's past */
    int64_t saved = b->cursor;
    b->cursor = -1;
    sl_prefix_index_free(b->ix);
    b->ix = sl_prefix_index_new(2, 64);
    round_of(st, b, 2, &g);
    assert_int_equal(sl_prefix_match(b->ix, h, 4, mt), 4);
    assert_true(b->cursor >= saved);

    /* B falls more than a ring behind: what was overwritten is skipped, and it catches up */
    for (int i = 0; i < SL_LBSHARE_RING + 10; i++) {
        uint64_t x = 0x9000 + (uint64_t)i;
        sl_lbshare_record(a, 0, &x, 1);
        round_of(st, a, sl_lbshare_instance(), &g);
    }
    round_of(st, b, 2, &g);
    assert_int_equal(g.skipped, 10);
    assert_int_equal(g.entries, SL_LBSHARE_READ_MAX);
    int rounds = 0;
    while (g.entries == SL_LBSHARE_READ_MAX && rounds++ < 100) round_of(st, b, 2, &g);
    uint64_t last = 0x9000 + SL_LBSHARE_RING + 9;
    assert_int_equal(sl_prefix_match(b->ix, &last, 1, mt), 1);
    assert_int_equal(mt[0], 1);

    /* the log lost (Redis restarted, flushed, expired) and refilled past B's cursor: its new epoch tells */
    char klog[64];
    snprintf(klog, sizeof klog, "lb:{%016llx}:log", (unsigned long long)a->share_sig);
    sl_state_script_init(&wipe, wipe_lua);
    key = sl_str_from_cstr(klog);
    planted = 0;
    assert_int_equal(sl_state_eval(st, &wipe, &key, 1, NULL, 0, on_planted, &planted, NULL), SL_OK);
    for (int i = 0; i < 20000 && !planted; i++) uv_run(&loop, UV_RUN_NOWAIT), sl_test_sleep_ms(1);
    assert_int_equal(planted, 1);
    for (int i = 0; i < 3; i++) {
        uint64_t x = 0x7000 + (uint64_t)i;
        sl_lbshare_record(a, 1, &x, 1);
        round_of(st, a, sl_lbshare_instance(), &g);
    }
    b->cursor = 1; /* a cursor that the new log's seq (3) has passed */
    round_of(st, b, 2, &g);
    assert_int_equal(g.entries, 3);
    assert_int_equal(b->cursor, 3);
    uint64_t first = 0x7000;
    assert_int_equal(sl_prefix_match(b->ix, &first, 1, mt), 1);

    /* the memory backend runs no scripts */
    sl_state_cfg mem = {.backend = SL_STATE_MEMORY};
    sl_state *ms = sl_state_open(&loop, &mem);
    assert_int_equal(sl_lbshare_round_start(ms, b, 2, on_round, &g), SL_EINVAL);
    sl_state_close(ms);

    sl_lb_model_put(b);
    sl_config_release(cfg2);
    sl_state_close(st);
    for (int i = 0; i < 10; i++) uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_apply_roundtrip),
        cmocka_unit_test(test_encode_bounds),
        cmocka_unit_test(test_apply_refuses_malformed),
        cmocka_unit_test(test_counts_text),
        cmocka_unit_test(test_insert_new_lists_only_new),
        cmocka_unit_test_setup_teardown(test_remote_counts_in_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_inserts_are_published_and_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_two_instances, setup, teardown),
    };
    return cmocka_run_group_tests(tests, sl_test_redis_setup, sl_test_redis_teardown);
}
