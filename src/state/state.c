/*
 * state.c: what both backends share: UTC windows, the check-and-reserve
 * rule, and the dispatch from the public calls to the backend's table.
 */
#include "state/state_int.h"

#include <time.h>

/* ---- windows ------------------------------------------------------------- */

static const int64_t fixed_ms[] = {60000, 3600000, 86400000};

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

int64_t sl_window_id(sl_window w, int64_t now_ms)
{
    if (w != SL_WIN_MONTH) return floor_div(now_ms, fixed_ms[w]);
    time_t t = (time_t)floor_div(now_ms, 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

int64_t sl_window_start_ms(sl_window w, int64_t id)
{
    if (w != SL_WIN_MONTH) return id * fixed_ms[w];
    struct tm tm = {.tm_year = (int)(floor_div(id, 12) - 1900), .tm_mon = (int)(id - floor_div(id, 12) * 12), .tm_mday = 1};
    return (int64_t)timegm(&tm) * 1000;
}

int64_t sl_window_end_ms(sl_window w, int64_t id) { return sl_window_start_ms(w, id + 1); }

const char *sl_window_name(sl_window w)
{
    static const char *const n[] = {"minute", "hour", "day", "month"};
    return (unsigned)w < SL_WIN_COUNT ? n[w] : "?";
}

const char *sl_metric_name(sl_metric m)
{
    static const char *const n[] = {"requests", "tokens", "cost"};
    return (unsigned)m < SL_MET_COUNT ? n[m] : "?";
}

int64_t sl_state_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The rule: a limit refuses when it is already reached, or when this
 * request's amount would take it past. Checked for every limit before
 * anything is added, so a refused request reserves nothing.
 */
bool sl_state_check(const int64_t used[SL_MET_COUNT][SL_WIN_COUNT], const sl_reserve *q, int *metric, int *window)
{
    for (int m = 0; m < SL_MET_COUNT; m++) {
        for (int w = 0; w < SL_WIN_COUNT; w++) {
            int64_t lim = q->limit[m][w], u = used[m][w];
            if (lim > 0 && (u >= lim || q->amount[m] > lim - u)) {
                *metric = m, *window = w;
                return false;
            }
        }
    }
    *metric = *window = -1;
    return true;
}

/* ---- handles ------------------------------------------------------------- */

static bool str_eq_null(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

sl_state *sl_state_open(uv_loop_t *loop, const sl_state_cfg *cfg)
{
    sl_state *h = cfg->backend == SL_STATE_REDIS ? sl_state_redis_open(loop, cfg) : sl_state_memory_open(loop);
    if (!h) return NULL;
    h->backend = cfg->backend;
    h->timeout_ms = cfg->redis.timeout_ms;
    h->on_error = cfg->redis.on_error;
    h->url = cfg->redis.url ? sl_strdup(cfg->redis.url) : NULL;
    h->prefix = sl_strdup(cfg->redis.key_prefix ? cfg->redis.key_prefix : "sluice:");
    if ((cfg->redis.url && !h->url) || !h->prefix) {
        sl_state_close(h);
        return NULL;
    }
    return h;
}

bool sl_state_same_config(const sl_state *h, const sl_state_cfg *cfg)
{
    if (!h || h->backend != cfg->backend) return false;
    if (cfg->backend == SL_STATE_MEMORY) return true;
    return str_eq_null(h->url, cfg->redis.url) && h->timeout_ms == cfg->redis.timeout_ms &&
           h->on_error == cfg->redis.on_error && str_eq_null(h->prefix, cfg->redis.key_prefix);
}

void sl_state_close(sl_state *h)
{
    if (!h) return;
    sl_free(h->url);
    sl_free(h->prefix);
    h->url = h->prefix = NULL;
    h->vt->close(h); /* frees h, now or once its handles are closed */
}

const char *sl_state_backend_name(const sl_state *h) { return h->vt->name; }
sl_on_error sl_state_on_error(const sl_state *h) { return h->on_error == SL_ON_ERROR_DENY ? SL_ON_ERROR_DENY : SL_ON_ERROR_ALLOW; }

static void no_op(sl_state_op **op)
{
    if (op) *op = NULL;
}

int sl_state_reserve(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    return h->vt->reserve(h, q, cb, ud, op);
}

int sl_state_settle(sl_state *h, const sl_settle *s) { return h->vt->settle(h, s); }

int sl_state_usage(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    return h->vt->usage(h, consumer, now_ms, cb, ud, op);
}

static bool key_ok(sl_str key) { return key.n > 0 && key.n <= SL_STATE_MAX_KEY; }

int sl_state_get(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    return key_ok(key) ? h->vt->get(h, key, cb, ud, op) : SL_EINVAL;
}

int sl_state_set(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    if (!key_ok(key) || value.n > SL_STATE_MAX_VALUE) return SL_EINVAL;
    return h->vt->set(h, key, value, ttl_ms, cb, ud, op);
}

int sl_state_incr(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    return key_ok(key) ? h->vt->incr(h, key, by, ttl_ms, cb, ud, op) : SL_EINVAL;
}

int sl_state_del(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    return key_ok(key) ? h->vt->del(h, key, cb, ud, op) : SL_EINVAL;
}

void sl_state_script_init(sl_state_script *s, const char *lua)
{
    s->lua = lua;
    sl_state_sha1_hex(lua, s->sha1);
}

int sl_state_eval(sl_state *h, const sl_state_script *s, const sl_str *keys, size_t nkeys, const sl_str *args,
                  size_t nargs, sl_items_cb cb, void *ud, sl_state_op **op)
{
    no_op(op);
    if (!h->vt->eval || !s->lua || nkeys + nargs > SL_STATE_MAX_EVAL_ARGS) return SL_EINVAL;
    for (size_t i = 0; i < nkeys; i++)
        if (!key_ok(keys[i])) return SL_EINVAL;
    return h->vt->eval(h, s, keys, nkeys, args, nargs, cb, ud, op);
}

void sl_state_cancel(sl_state_op *op)
{
    if (op) sl_state_redis_cancel(op); /* only redis has calls in flight */
}
