/*
 * test_state.c: the state interface (src/state): UTC windows, the
 * check-and-reserve rule, the memory backend (limits, settlement, values,
 * many threads on one consumer), and the Redis backend against a real
 * redis-server on a loopback port when one is installed (skipped otherwise):
 * the Lua scripts must decide exactly as sl_state_check() does, NOSCRIPT
 * falls back to EVAL, values, cancel gives a reservation back, a stopped
 * server gives errors and a restarted one is found again, a frozen one
 * times out; the key layout (one hash per consumer, a TTL), gateways whose
 * clocks disagree count into the newest window, long commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "state/state_int.h"

/* 2024-02-29T23:59:30.250Z */
#define T_LEAP 1709251170250ll

static void test_windows(void **state)
{
    assert_int_equal(sl_window_id(SL_WIN_MINUTE, T_LEAP), T_LEAP / 60000);
    assert_int_equal(sl_window_end_ms(SL_WIN_MINUTE, sl_window_id(SL_WIN_MINUTE, T_LEAP)), 1709251200000ll);
    assert_int_equal(sl_window_end_ms(SL_WIN_HOUR, sl_window_id(SL_WIN_HOUR, T_LEAP)), 1709251200000ll);
    assert_int_equal(sl_window_end_ms(SL_WIN_DAY, sl_window_id(SL_WIN_DAY, T_LEAP)), 1709251200000ll);
    int64_t month = sl_window_id(SL_WIN_MONTH, T_LEAP);
    assert_int_equal(month, 2024 * 12 + 1); /* February */
    assert_int_equal(sl_window_start_ms(SL_WIN_MONTH, month), 1706745600000ll); /* 2024-02-01 */
    assert_int_equal(sl_window_end_ms(SL_WIN_MONTH, month), 1709251200000ll);   /* 2024-03-01 */
    assert_int_equal(sl_window_end_ms(SL_WIN_MONTH, 2024 * 12 + 11), 1735689600000ll); /* Dec -> 2025-01-01 */
    /* one ms later every window is a new one */
    for (int w = 0; w < SL_WIN_COUNT; w++)
        assert_int_equal(sl_window_id((sl_window)w, 1709251200000ll), sl_window_id((sl_window)w, T_LEAP) + 1);
    assert_string_equal(sl_window_name(SL_WIN_DAY), "day");
    assert_string_equal(sl_metric_name(SL_MET_COST), "cost");
}

static void test_check_rule(void **state)
{
    int64_t used[SL_MET_COUNT][SL_WIN_COUNT];
    memset(used, 0, sizeof used);
    sl_reserve q;
    memset(&q, 0, sizeof q);
    q.amount[SL_MET_REQUESTS] = 1, q.amount[SL_MET_TOKENS] = 100;
    int m, w;
    assert_true(sl_state_check(used, &q, &m, &w)); /* no limits */
    assert_int_equal(m, -1);
    q.limit[SL_MET_TOKENS][SL_WIN_MINUTE] = 1000;
    used[SL_MET_TOKENS][SL_WIN_MINUTE] = 900;
    assert_true(sl_state_check(used, &q, &m, &w)); /* exactly up to the limit */
    used[SL_MET_TOKENS][SL_WIN_MINUTE] = 901;
    assert_false(sl_state_check(used, &q, &m, &w)); /* would pass it */
    assert_int_equal(m, SL_MET_TOKENS);
    assert_int_equal(w, SL_WIN_MINUTE);
    /* a budget with a zero estimate still refuses once reached */
    used[SL_MET_TOKENS][SL_WIN_MINUTE] = 0;
    q.limit[SL_MET_COST][SL_WIN_DAY] = 5000;
    used[SL_MET_COST][SL_WIN_DAY] = 4999;
    assert_true(sl_state_check(used, &q, &m, &w));
    used[SL_MET_COST][SL_WIN_DAY] = 5000;
    assert_false(sl_state_check(used, &q, &m, &w));
    assert_int_equal(m, SL_MET_COST);
    assert_int_equal(w, SL_WIN_DAY);
    /* no overflow near INT64_MAX */
    q.limit[SL_MET_COST][SL_WIN_DAY] = INT64_MAX;
    used[SL_MET_COST][SL_WIN_DAY] = INT64_MAX - 1;
    q.amount[SL_MET_COST] = INT64_MAX;
    assert_false(sl_state_check(used, &q, &m, &w));
}

/* ---- memory backend ------------------------------------------------------ */

typedef struct got {
    int calls;
    sl_reserve_result res;
    int err;
    sl_usage_counts counts;
    char val[128];
    size_t vlen;
    int64_t num;
} got;

static void on_res(void *ud, const sl_reserve_result *r)
{
    got *g = ud;
    g->calls++;
    g->res = *r;
}

static void on_usage(void *ud, int err, const sl_usage_counts *c)
{
    got *g = ud;
    g->calls++;
    g->err = err;
    if (c) g->counts = *c;
}

static void on_value(void *ud, int err, sl_str v, int64_t num)
{
    got *g = ud;
    g->calls++;
    g->err = err;
    g->vlen = SL_MIN(v.n, sizeof g->val);
    if (v.n) memcpy(g->val, v.p, g->vlen);
    g->num = num;
}

static sl_reserve tokens_req(const char *consumer, int64_t now, int64_t est, int64_t tpm)
{
    sl_reserve q;
    memset(&q, 0, sizeof q);
    q.consumer = sl_str_from_cstr(consumer);
    q.now_ms = now;
    q.amount[SL_MET_REQUESTS] = 1;
    q.amount[SL_MET_TOKENS] = est;
    q.limit[SL_MET_TOKENS][SL_WIN_MINUTE] = tpm;
    return q;
}

static sl_state *mem(void)
{
    sl_state_cfg cfg = {.backend = SL_STATE_MEMORY};
    sl_state *h = sl_state_open(NULL, &cfg);
    assert_non_null(h);
    return h;
}

static void test_memory_reserve_settle(void **state)
{
    sl_state_memory_reset();
    sl_state *h = mem();
    assert_string_equal(sl_state_backend_name(h), "memory");
    got g = {0};
    sl_reserve q = tokens_req("alice", T_LEAP, 400, 1000);
    sl_state_op *op = (sl_state_op *)1;
    assert_int_equal(sl_state_reserve(h, &q, on_res, &g, &op), SL_OK);
    assert_null(op);
    assert_int_equal(g.calls, 1); /* answered before returning */
    assert_true(g.res.admitted);
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 400);
    assert_int_equal(g.res.counts.v[SL_MET_REQUESTS][SL_WIN_MONTH], 1);
    assert_int_equal(sl_state_reserve(h, &q, on_res, &g, NULL), SL_OK);
    assert_true(g.res.admitted); /* 800 */
    assert_int_equal(sl_state_reserve(h, &q, on_res, &g, NULL), SL_OK);
    assert_false(g.res.admitted); /* 1200 > 1000: refused, nothing added */
    assert_int_equal(g.res.denied_metric, SL_MET_TOKENS);
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 800);
    assert_int_equal(g.res.counts.v[SL_MET_REQUESTS][SL_WIN_MINUTE], 2);
    /* the first call used 100 of its 400: give back 300 */
    sl_settle s = {.consumer = SL_STR("alice"), .delta = {0, -300, 0}};
    memcpy(s.window_id, g.res.counts.window_id, sizeof s.window_id);
    assert_int_equal(sl_state_settle(h, &s), SL_OK);
    assert_int_equal(sl_state_reserve(h, &q, on_res, &g, NULL), SL_OK);
    assert_true(g.res.admitted); /* 500 + 400 */
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 900);
    /* a minute later the minute window starts again; the hour keeps counting */
    q.now_ms += 60000;
    assert_int_equal(sl_state_reserve(h, &q, on_res, &g, NULL), SL_OK);
    assert_true(g.res.admitted);
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 400);
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_HOUR], 400); /* T_LEAP+60s is a new hour too */
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MONTH], 400);
    /* settling into the old minute changes nothing now */
    assert_int_equal(sl_state_settle(h, &s), SL_OK);
    got u = {0};
    assert_int_equal(sl_state_usage(h, SL_STR("alice"), q.now_ms, on_usage, &u, NULL), SL_OK);
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 400);
    assert_int_equal(u.counts.v[SL_MET_REQUESTS][SL_WIN_MINUTE], 1);
    /* other consumers are apart; an unknown one reads as zero */
    assert_int_equal(sl_state_usage(h, SL_STR("bob"), q.now_ms, on_usage, &u, NULL), SL_OK);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 0);
    /* a settlement never takes a counter below zero */
    s.delta[SL_MET_TOKENS] = -100000;
    memcpy(s.window_id, g.res.counts.window_id, sizeof s.window_id);
    sl_state_settle(h, &s);
    sl_state_usage(h, SL_STR("alice"), q.now_ms, on_usage, &u, NULL);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 0);
    sl_state_close(h);
}

static void test_memory_values(void **state)
{
    sl_state_memory_reset();
    sl_state *h = mem();
    got g = {0};
    assert_int_equal(sl_state_get(h, SL_STR("k"), on_value, &g, NULL), SL_OK);
    assert_int_equal(g.err, SL_ENOTFOUND);
    assert_int_equal(sl_state_set(h, SL_STR("k"), SL_STR("hello"), 0, on_value, &g, NULL), SL_OK);
    assert_int_equal(sl_state_get(h, SL_STR("k"), on_value, &g, NULL), SL_OK);
    assert_int_equal(g.err, SL_OK);
    assert_int_equal(g.vlen, 5);
    assert_memory_equal(g.val, "hello", 5);
    assert_int_equal(sl_state_incr(h, SL_STR("k"), 1, 0, on_value, &g, NULL), SL_OK);
    assert_int_equal(g.err, SL_EINVAL); /* not a number */
    assert_int_equal(sl_state_incr(h, SL_STR("n"), 5, 0, on_value, &g, NULL), SL_OK);
    assert_int_equal(g.num, 5);
    assert_int_equal(sl_state_incr(h, SL_STR("n"), -7, 0, on_value, &g, NULL), SL_OK);
    assert_int_equal(g.num, -2);
    assert_int_equal(sl_state_get(h, SL_STR("n"), on_value, &g, NULL), SL_OK);
    assert_int_equal(g.vlen, 2);
    assert_memory_equal(g.val, "-2", 2);
    sl_state_set(h, SL_STR("s"), SL_STR("41"), 0, NULL, NULL, NULL);
    sl_state_incr(h, SL_STR("s"), 1, 0, on_value, &g, NULL);
    assert_int_equal(g.num, 42);
    /* an expired value is gone (a ttl of 1 ms, then wait past it without asserting on time) */
    sl_state_set(h, SL_STR("t"), SL_STR("x"), 1, NULL, NULL, NULL);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    sl_state_get(h, SL_STR("t"), on_value, &g, NULL);
    assert_int_equal(g.err, SL_ENOTFOUND);
    sl_state_del(h, SL_STR("k"), on_value, &g, NULL);
    assert_int_equal(g.num, 1);
    sl_state_get(h, SL_STR("k"), on_value, &g, NULL);
    assert_int_equal(g.err, SL_ENOTFOUND);
    sl_state_del(h, SL_STR("k"), on_value, &g, NULL);
    assert_int_equal(g.num, 0);
    /* bounds */
    char big[SL_STATE_MAX_KEY + 1];
    memset(big, 'k', sizeof big);
    assert_int_equal(sl_state_get(h, (sl_str){big, sizeof big}, on_value, &g, NULL), SL_EINVAL);
    assert_int_equal(sl_state_get(h, SL_STR(""), on_value, &g, NULL), SL_EINVAL);
    sl_state_close(h);
}

/* Many threads reserve against one consumer at once: exactly the limit is admitted. */
#define THREADS 8
#define PER_THREAD 2000
#define RPM_LIMIT 5000

static _Atomic int admitted_total;

static void on_res_count(void *ud, const sl_reserve_result *r)
{
    if (r->admitted) atomic_fetch_add(&admitted_total, 1);
}

static void *hammer(void *arg)
{
    sl_state *h = mem();
    int64_t now = *(int64_t *)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        sl_reserve q = tokens_req("shared", now, 3, 0);
        q.limit[SL_MET_REQUESTS][SL_WIN_MINUTE] = RPM_LIMIT;
        sl_state_reserve(h, &q, on_res_count, NULL, NULL);
        char other[32];
        snprintf(other, sizeof other, "own-%d", i % 50); /* traffic on other shards too */
        sl_reserve o = tokens_req(other, now, 1, 0);
        sl_state_reserve(h, &o, on_res_count, NULL, NULL);
        sl_state_incr(h, SL_STR("counter"), 1, 0, NULL, NULL, NULL);
    }
    sl_state_close(h);
    return NULL;
}

static void test_memory_threads(void **state)
{
    sl_state_memory_reset();
    atomic_store(&admitted_total, 0);
    int64_t now = T_LEAP - 20000; /* the middle of a minute */
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, &now), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    /* every "own-*" reservation (no limit) plus exactly RPM_LIMIT of the shared ones */
    assert_int_equal(atomic_load(&admitted_total), THREADS * PER_THREAD + RPM_LIMIT);
    sl_state *h = mem();
    got u = {0};
    sl_state_usage(h, SL_STR("shared"), now, on_usage, &u, NULL);
    assert_int_equal(u.counts.v[SL_MET_REQUESTS][SL_WIN_MINUTE], RPM_LIMIT);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_DAY], RPM_LIMIT * 3);
    got g = {0};
    sl_state_get(h, SL_STR("counter"), on_value, &g, NULL);
    assert_int_equal(g.num, THREADS * PER_THREAD);
    sl_state_close(h);
}

/* ---- redis backend (a real redis-server on loopback) --------------------- */

static char redis_url[64];

static int redis_setup(void **state)
{
    sl_test_redis_setup(state);
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d/0", sl_test_redis_port);
    return 0;
}

static uv_loop_t loop;

static sl_state *redis_open(const char *prefix, uint64_t timeout_ms)
{
    sl_state_cfg cfg = {.backend = SL_STATE_REDIS};
    cfg.redis.url = redis_url;
    cfg.redis.host = "127.0.0.1";
    cfg.redis.port = sl_test_redis_port;
    cfg.redis.timeout_ms = timeout_ms;
    cfg.redis.key_prefix = (char *)prefix;
    sl_state *h = sl_state_open(&loop, &cfg);
    assert_non_null(h);
    return h;
}

/* Runs the loop until *calls reaches want (or a generous bound, so a bug cannot hang the suite). */
static void run_until(int *calls, int want)
{
    for (int i = 0; i < 20000 && *calls < want; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (*calls < want) sl_test_sleep_ms(1);
    }
    assert_true(*calls >= want);
}

static void run_for(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        sl_test_sleep_ms(1);
    }
}

#define SKIP_WITHOUT_REDIS()                                                                                           \
    do {                                                                                                               \
        if (sl_test_redis_pid <= 0) {                                                                                          \
            fprintf(stderr, "redis-server not available: skipped\n");                                                  \
            skip();                                                                                                    \
        }                                                                                                              \
    } while (0)

static void close_and_drain(sl_state *h)
{
    sl_state_close(h);
    run_for(5);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* The script decides as sl_state_check() does: the same random sequence on both backends. */
static void test_redis_matches_memory(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state_memory_reset();
    sl_state *r = redis_open("t1:", 2000), *m = mem();
    int64_t now = sl_state_now_ms();
    for (int i = 0; i < 300; i++) {
        sl_reserve q;
        memset(&q, 0, sizeof q);
        q.consumer = (i % 3) ? SL_STR("c-a") : SL_STR("c{b}");
        q.now_ms = now;
        q.amount[SL_MET_REQUESTS] = 1;
        q.amount[SL_MET_TOKENS] = (int64_t)(next_rand() % 500);
        q.amount[SL_MET_COST] = (int64_t)(next_rand() % 3000);
        q.limit[SL_MET_REQUESTS][SL_WIN_MINUTE] = 150;
        q.limit[SL_MET_TOKENS][SL_WIN_HOUR] = 20000;
        q.limit[SL_MET_COST][SL_WIN_DAY] = 200000;
        got gr = {0}, gm = {0};
        sl_state_op *op = NULL;
        assert_int_equal(sl_state_reserve(r, &q, on_res, &gr, &op), SL_OK);
        assert_non_null(op);
        run_until(&gr.calls, 1);
        sl_state_reserve(m, &q, on_res, &gm, NULL);
        assert_int_equal(gr.res.err, SL_OK);
        assert_int_equal(gr.res.admitted, gm.res.admitted);
        assert_int_equal(gr.res.denied_metric, gm.res.denied_metric);
        assert_int_equal(gr.res.denied_window, gm.res.denied_window);
        assert_memory_equal(gr.res.counts.v, gm.res.counts.v, sizeof gm.res.counts.v);
        assert_memory_equal(gr.res.counts.window_id, gm.res.counts.window_id, sizeof gm.res.counts.window_id);
        if (gr.res.admitted && i % 4 == 0) { /* settle some: used less, or more, than reserved */
            sl_settle s = {.consumer = q.consumer};
            memcpy(s.window_id, gm.res.counts.window_id, sizeof s.window_id);
            s.delta[SL_MET_TOKENS] = (int64_t)(next_rand() % 400) - 200;
            s.delta[SL_MET_COST] = (int64_t)(next_rand() % 2000) - 1000;
            assert_int_equal(sl_state_settle(r, &s), SL_OK);
            sl_state_settle(m, &s);
        }
    }
    got ur = {0}, um = {0};
    sl_state_usage(r, SL_STR("c-a"), now, on_usage, &ur, NULL);
    run_until(&ur.calls, 1);
    sl_state_usage(m, SL_STR("c-a"), now, on_usage, &um, NULL);
    assert_int_equal(ur.err, SL_OK);
    assert_memory_equal(ur.counts.v, um.counts.v, sizeof um.counts.v);
    sl_state_close(m);
    close_and_drain(r);
    uv_loop_close(&loop);
}

static void test_redis_values_and_cancel(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state *r = redis_open("t2:", 2000);
    got g = {0};
    sl_state_get(r, SL_STR("k"), on_value, &g, NULL);
    run_until(&g.calls, 1);
    assert_int_equal(g.err, SL_ENOTFOUND);
    sl_state_set(r, SL_STR("k"), SL_STR("v1"), 60000, on_value, &g, NULL);
    run_until(&g.calls, 2);
    sl_state_get(r, SL_STR("k"), on_value, &g, NULL);
    run_until(&g.calls, 3);
    assert_int_equal(g.err, SL_OK);
    assert_int_equal(g.vlen, 2);
    assert_memory_equal(g.val, "v1", 2);
    sl_state_incr(r, SL_STR("n"), 3, 60000, on_value, &g, NULL);
    run_until(&g.calls, 4);
    sl_state_incr(r, SL_STR("n"), 4, 60000, on_value, &g, NULL);
    run_until(&g.calls, 5);
    assert_int_equal(g.num, 7);
    sl_state_del(r, SL_STR("n"), on_value, &g, NULL);
    run_until(&g.calls, 6);
    assert_int_equal(g.num, 1);
    /* a cancelled reservation never calls back, and what the server admitted is given back */
    int64_t now = sl_state_now_ms();
    sl_reserve q = tokens_req("cancel-me", now, 77, 1000);
    got c = {0};
    sl_state_op *op = NULL;
    assert_int_equal(sl_state_reserve(r, &q, on_res, &c, &op), SL_OK);
    sl_state_cancel(op);
    got u = {0};
    sl_state_usage(r, SL_STR("cancel-me"), now, on_usage, &u, NULL); /* sent after the give-back */
    run_until(&u.calls, 1);
    run_for(5);
    assert_int_equal(c.calls, 0);
    assert_int_equal(u.counts.v[SL_MET_REQUESTS][SL_WIN_MINUTE], 1); /* admitted before the give-back was sent */
    /* the give-back is sent when the reply comes, after the usage call: ask again */
    got u2 = {0};
    sl_state_usage(r, SL_STR("cancel-me"), now, on_usage, &u2, NULL);
    run_until(&u2.calls, 1);
    assert_int_equal(u2.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 0);
    assert_int_equal(u2.counts.v[SL_MET_REQUESTS][SL_WIN_DAY], 0);
    close_and_drain(r);
    uv_loop_close(&loop);
}

/* Redis stopped: calls fail (at once, or with an error callback); started again: found again. Frozen: timeouts. */
static void test_redis_down_and_back(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state *r = redis_open("t3:", 100);
    int64_t now = sl_state_now_ms();
    got g = {0};
    sl_reserve q = tokens_req("d", now, 1, 0);
    sl_state_reserve(r, &q, on_res, &g, NULL);
    run_until(&g.calls, 1);
    assert_int_equal(g.res.err, SL_OK);

    sl_test_redis_stop();
    int failures = 0;
    for (int i = 0; i < 200 && failures < 3; i++) { /* the loss is noticed; then calls fail */
        got f = {0};
        int rc = sl_state_reserve(r, &q, on_res, &f, NULL);
        if (rc == SL_OK) run_until(&f.calls, 1);
        if (rc != SL_OK || f.res.err != SL_OK) failures++;
        run_for(2);
    }
    assert_int_equal(failures, 3);

    assert_true(sl_test_redis_start());
    bool back = false;
    for (int i = 0; i < 500 && !back; i++) { /* reconnect backoff is at most 2 s */
        got f = {0};
        if (sl_state_reserve(r, &q, on_res, &f, NULL) == SL_OK) {
            run_until(&f.calls, 1);
            back = f.res.err == SL_OK && f.res.admitted;
        }
        if (!back) run_for(10);
    }
    assert_true(back);

    /* frozen server: the call times out with SL_ETIMEOUT */
    kill(sl_test_redis_pid, SIGSTOP);
    got t = {0};
    assert_int_equal(sl_state_reserve(r, &q, on_res, &t, NULL), SL_OK);
    run_until(&t.calls, 1);
    assert_int_equal(t.res.err, SL_ETIMEOUT);
    kill(sl_test_redis_pid, SIGCONT);
    run_for(20);
    close_and_drain(r);
    uv_loop_close(&loop);
}

/* A plain blocking connection to the test server, to look at what the backend stored. */
static redisContext *peek(void)
{
    redisContext *rc = redisConnect("127.0.0.1", sl_test_redis_port);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    return rc;
}

static long long peek_int(redisContext *rc, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(rc, fmt, arg);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -999;
    freeReplyObject(r);
    return v;
}

/* One hash per consumer with window ids and counts; a TTL covering the month; EVAL again after SCRIPT FLUSH. */
static void test_redis_layout(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state *r = redis_open("t4:", 2000);
    redisContext *rc = peek();
    int64_t now = sl_state_now_ms();
    got g = {0};
    sl_reserve q = tokens_req("lay", now, 40, 1000);
    assert_int_equal(sl_state_reserve(r, &q, on_res, &g, NULL), SL_OK);
    run_until(&g.calls, 1);
    assert_true(g.res.admitted);
    assert_int_equal(peek_int(rc, "HGET %s mt", "t4:rl:{lay}"), 40);
    assert_int_equal(peek_int(rc, "HGET %s Mr", "t4:rl:{lay}"), 1);
    assert_int_equal(peek_int(rc, "HGET %s mc", "t4:rl:{lay}"), 0);
    assert_int_equal(peek_int(rc, "HGET %s m", "t4:rl:{lay}"), sl_window_id(SL_WIN_MINUTE, now));
    assert_int_equal(peek_int(rc, "HGET %s M", "t4:rl:{lay}"), sl_window_id(SL_WIN_MONTH, now));
    assert_int_equal(peek_int(rc, "HLEN %s", "t4:rl:{lay}"), 16);
    long long ttl = peek_int(rc, "TTL %s", "t4:rl:{lay}");
    int64_t month_left_s = (sl_window_end_ms(SL_WIN_MONTH, sl_window_id(SL_WIN_MONTH, now)) - now) / 1000;
    assert_true(ttl > month_left_s && ttl <= 32 * 86400);
    /* the server forgets its scripts: calls go as EVAL once and work */
    freeReplyObject(redisCommand(rc, "SCRIPT FLUSH"));
    sl_settle s = {.consumer = SL_STR("lay"), .delta = {0, -15, 7}};
    memcpy(s.window_id, g.res.counts.window_id, sizeof s.window_id);
    assert_int_equal(sl_state_settle(r, &s), SL_OK);
    got u = {0};
    sl_state_usage(r, SL_STR("lay"), now, on_usage, &u, NULL);
    run_until(&u.calls, 1);
    assert_int_equal(u.err, SL_OK);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_DAY], 25);
    assert_int_equal(u.counts.v[SL_MET_COST][SL_WIN_MONTH], 7);
    assert_int_equal(u.counts.v[SL_MET_REQUESTS][SL_WIN_HOUR], 1);
    /* a settlement of nothing sends nothing */
    sl_settle zero = {.consumer = SL_STR("lay")};
    memcpy(zero.window_id, g.res.counts.window_id, sizeof zero.window_id);
    assert_int_equal(sl_state_settle(r, &zero), SL_OK);
    redisFree(rc);
    close_and_drain(r);
    uv_loop_close(&loop);
}

/* Two gateways a minute apart: the late one counts into the window the early one opened, never back. */
static void test_redis_skewed_clocks(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state *a = redis_open("t5:", 2000), *b = redis_open("t5:", 2000);
    int64_t now = sl_state_now_ms();
    got ga = {0}, gb = {0};
    sl_reserve qa = tokens_req("skew", now + 60000, 100, 250), qb = tokens_req("skew", now, 100, 250);
    sl_state_reserve(a, &qa, on_res, &ga, NULL);
    run_until(&ga.calls, 1);
    sl_state_reserve(b, &qb, on_res, &gb, NULL);
    run_until(&gb.calls, 1);
    assert_true(gb.res.admitted);
    assert_int_equal(gb.res.counts.window_id[SL_WIN_MINUTE], sl_window_id(SL_WIN_MINUTE, now + 60000));
    assert_int_equal(gb.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 200);
    got gc = {0};
    sl_state_reserve(b, &qb, on_res, &gc, NULL); /* 300 > 250 in the shared window */
    run_until(&gc.calls, 1);
    assert_false(gc.res.admitted);
    assert_int_equal(gc.res.denied_metric, SL_MET_TOKENS);
    assert_int_equal(gc.res.denied_window, SL_WIN_MINUTE);
    /* b settles into the window it was counted in */
    sl_settle s = {.consumer = SL_STR("skew"), .delta = {0, -60, 0}};
    memcpy(s.window_id, gb.res.counts.window_id, sizeof s.window_id);
    sl_state_settle(b, &s);
    got u = {0}; /* on b: after its settlement (one connection answers in order) */
    sl_state_usage(b, SL_STR("skew"), now + 60000, on_usage, &u, NULL);
    run_until(&u.calls, 1);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 140);
    close_and_drain(a);
    close_and_drain(b);
    uv_loop_close(&loop);
}

/* Commands longer than the inline buffer: a long consumer name, a large value. */
static void test_redis_long_commands(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state *r = redis_open("t6:", 2000);
    static char name[SL_STATE_MAX_KEY], value[SL_STATE_MAX_VALUE];
    memset(name, 'n', sizeof name);
    memset(value, 'v', sizeof value);
    int64_t now = sl_state_now_ms();
    got g = {0};
    sl_reserve q = tokens_req("x", now, 5, 100);
    q.consumer = (sl_str){name, sizeof name};
    sl_state_reserve(r, &q, on_res, &g, NULL);
    run_until(&g.calls, 1);
    assert_int_equal(g.res.err, SL_OK);
    assert_int_equal(g.res.counts.v[SL_MET_TOKENS][SL_WIN_MONTH], 5);
    got v = {0};
    sl_state_set(r, SL_STR("big"), (sl_str){value, sizeof value}, 0, on_value, &v, NULL);
    run_until(&v.calls, 1);
    assert_int_equal(v.err, SL_OK);
    close_and_drain(r);
    uv_loop_close(&loop);
}

/* Calls made in one loop turn share script calls: order and limits hold, per consumer, past every batch cap. */
static void test_redis_batches(void **state)
{
    SKIP_WITHOUT_REDIS();
    uv_loop_init(&loop);
    sl_state_memory_reset();
    sl_state *r = redis_open("t7:", 2000), *m = mem();
    int64_t now = sl_state_now_ms();
    enum { N = 150, NC = 40 }; /* more than one batch holds, more consumers than batches stay open */
    static got gr[N], gm[N];
    memset(gr, 0, sizeof gr);
    memset(gm, 0, sizeof gm);
    char names[NC][8];
    for (int i = 0; i < N; i++) {
        int k = i % 3 ? 0 : 1 + i % (NC - 1); /* consumer 0 most of the time, others between */
        snprintf(names[k], sizeof names[k], "b%d", k);
        sl_reserve q = tokens_req(names[k], now, 30, 2000);
        q.limit[SL_MET_REQUESTS][SL_WIN_HOUR] = 80;
        q.consumer = sl_str_from_cstr(names[k]);
        assert_int_equal(sl_state_reserve(r, &q, on_res, &gr[i], NULL), SL_OK);
        sl_state_reserve(m, &q, on_res, &gm[i], NULL);
        if (i % 7 == 0) { /* a settlement between reservations, in the same turn */
            sl_settle s = {.consumer = q.consumer, .delta = {0, -20, 5}};
            memcpy(s.window_id, gm[i].res.counts.window_id, sizeof s.window_id);
            assert_int_equal(sl_state_settle(r, &s), SL_OK);
            sl_state_settle(m, &s);
        }
    }
    assert_int_equal(gr[0].calls, 0); /* nothing answered before the loop runs */
    for (int i = 0; i < N; i++) {
        run_until(&gr[i].calls, 1);
        assert_int_equal(gr[i].res.err, SL_OK);
        assert_int_equal(gr[i].res.admitted, gm[i].res.admitted);
        assert_int_equal(gr[i].res.denied_metric, gm[i].res.denied_metric);
        assert_memory_equal(gr[i].res.counts.v, gm[i].res.counts.v, sizeof gm[i].res.counts.v);
    }
    /* a reservation cancelled while its batch waits: no callback, and it is given back */
    got c = {0}, c2 = {0};
    sl_reserve q = tokens_req("b-cancel", now, 10, 1000);
    sl_state_op *op = NULL;
    sl_state_reserve(r, &q, on_res, &c, &op);
    sl_state_reserve(r, &q, on_res, &c2, NULL);
    sl_state_cancel(op);
    run_until(&c2.calls, 1);
    assert_int_equal(c2.res.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 20);
    got u = {0};
    sl_state_usage(r, SL_STR("b-cancel"), now, on_usage, &u, NULL);
    run_until(&u.calls, 1);
    assert_int_equal(c.calls, 0);
    assert_int_equal(u.counts.v[SL_MET_TOKENS][SL_WIN_MINUTE], 10);
    sl_state_close(m);
    close_and_drain(r);
    uv_loop_close(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_check_rule),
        cmocka_unit_test(test_memory_reserve_settle),
        cmocka_unit_test(test_memory_values),
        cmocka_unit_test(test_memory_threads),
        cmocka_unit_test(test_redis_matches_memory),
        cmocka_unit_test(test_redis_values_and_cancel),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_redis_layout),
        cmocka_unit_test(test_redis_skewed_clocks),
        cmocka_unit_test(test_redis_long_commands),
        cmocka_unit_test(test_redis_batches),
    };
    return cmocka_run_group_tests(tests, redis_setup, sl_test_redis_teardown);
}
