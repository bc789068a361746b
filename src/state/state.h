/*
 * state.h: shared state (counters, small values with a time to live) behind
 * one interface with two backends:
 *
 *   memory  one table per process, sharded by key, each shard under its own
 *           mutex; answers at once (the callback runs before the call returns)
 *   redis   hiredis async on the caller's libuv loop; every check-and-reserve
 *           runs atomically in a Lua script (EVALSHA, EVAL when the server
 *           does not know it yet; a consumer's calls of one loop turn share
 *           one script call); reconnects with backoff; each call has a deadline
 *
 * An sl_state is a handle bound to one event loop (a worker's, or the main
 * thread's for the admin API); it is used from that loop's thread only. The
 * memory backend's table is process-wide and survives config reloads.
 *
 * Callbacks run exactly once per call that returned SL_OK, unless the call
 * is cancelled with sl_state_cancel() first. They may run before the call
 * returns (memory) or later on the loop (redis). A call that fails to start
 * returns an error and never calls back.
 *
 * Limits use fixed windows aligned to UTC: the clock minute, the clock hour,
 * the UTC day and the UTC calendar month. A reservation adds its amounts to
 * every window at once; a settlement adds the difference between what was
 * used and what was reserved to the windows the reservation went to.
 */
#ifndef SL_STATE_H
#define SL_STATE_H

#include <uv.h>

#include "config/config.h"

typedef enum { SL_WIN_MINUTE = 0, SL_WIN_HOUR, SL_WIN_DAY, SL_WIN_MONTH, SL_WIN_COUNT } sl_window;
/* What is counted: requests, tokens (input + output), spend in nano-USD (1e-9 USD). */
typedef enum { SL_MET_REQUESTS = 0, SL_MET_TOKENS, SL_MET_COST, SL_MET_COUNT } sl_metric;

#define SL_NANO_USD 1000000000.0

/* Window id of now: minutes/hours/days since the epoch, months as year * 12 + month. */
int64_t sl_window_id(sl_window w, int64_t now_ms);
/* Start and end (exclusive) of window id, in ms since the epoch. */
int64_t sl_window_start_ms(sl_window w, int64_t id);
int64_t sl_window_end_ms(sl_window w, int64_t id);
const char *sl_window_name(sl_window w);   /* "minute", "hour", "day", "month" */
const char *sl_metric_name(sl_metric m);   /* "requests", "tokens", "cost" */
int64_t sl_state_now_ms(void);             /* wall clock, ms since the epoch */

/* Counters of one consumer in the current windows. */
typedef struct sl_usage_counts {
    int64_t window_id[SL_WIN_COUNT];
    int64_t v[SL_MET_COUNT][SL_WIN_COUNT];
} sl_usage_counts;

typedef struct sl_reserve {
    sl_str consumer;
    int64_t now_ms;
    int64_t amount[SL_MET_COUNT];              /* 1 request, estimated tokens, estimated nano-USD */
    int64_t limit[SL_MET_COUNT][SL_WIN_COUNT]; /* 0 = no limit */
} sl_reserve;

typedef struct sl_reserve_result {
    int err;                  /* SL_OK; else the backend failed (the caller applies on_error) */
    bool admitted;
    int denied_metric;        /* when !admitted: the first limit that refused */
    int denied_window;
    sl_usage_counts counts;   /* after the reservation; when refused: as they were */
} sl_reserve_result;

/*
 * Settlement of a reservation (or a plain record of usage when amount was
 * never reserved): adds delta to the windows window_id (the reservation's).
 * Windows that have ended and been dropped are left alone.
 */
typedef struct sl_settle {
    sl_str consumer;
    int64_t window_id[SL_WIN_COUNT];
    int64_t delta[SL_MET_COUNT];
} sl_settle;

typedef struct sl_state sl_state;
typedef struct sl_state_op sl_state_op; /* a call in flight (redis); NULL when already answered */

typedef void (*sl_reserve_cb)(void *ud, const sl_reserve_result *res);
typedef void (*sl_usage_cb)(void *ud, int err, const sl_usage_counts *counts);
/* get: value (empty and err SL_ENOTFOUND when absent); incr: num is the new value. */
typedef void (*sl_value_cb)(void *ud, int err, sl_str value, int64_t num);

/* Opens a handle for cfg on loop (redis: connects in the background). NULL on allocation failure. */
sl_state *sl_state_open(uv_loop_t *loop, const sl_state_cfg *cfg);
/* True when h was opened with a configuration equal to cfg (so a reload can keep it). */
bool sl_state_same_config(const sl_state *h, const sl_state_cfg *cfg);
/* Closes: calls in flight are answered with SL_ECLOSED (redis), then the handle is freed. */
void sl_state_close(sl_state *h);
const char *sl_state_backend_name(const sl_state *h);
/* What limit checks do while the backend fails (state.redis.on_error). */
sl_on_error sl_state_on_error(const sl_state *h);

int sl_state_reserve(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **op);
/* Fire and forget: failures are logged and counted, never reported back. */
int sl_state_settle(sl_state *h, const sl_settle *s);
int sl_state_usage(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **op);

/* Small shared values (MCP sessions, balancer counters). ttl_ms 0 = no expiry. */
int sl_state_get(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op);
int sl_state_set(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op);
int sl_state_incr(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **op);
int sl_state_del(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **op);

/*
 * Lua scripts of other modules (the balancers' shared state): run atomically
 * by Redis, sent as EVALSHA with EVAL when the server does not know them yet.
 * The script object must outlive every call that uses it (a static).
 */
typedef struct sl_state_script {
    const char *lua;
    char sha1[41];
} sl_state_script;
void sl_state_script_init(sl_state_script *s, const char *lua);

/* One element of a script's answer: a string (nil: empty), or an integer. */
typedef struct sl_state_item {
    sl_str s;
    int64_t num;
    bool is_int;
} sl_state_item;
/* items are valid during the call only. A flat array answer is its elements; any other answer one item. */
typedef void (*sl_items_cb)(void *ud, int err, const sl_state_item *items, size_t n);

#define SL_STATE_MAX_EVAL_ARGS 24 /* keys + arguments of one sl_state_eval */
#define SL_STATE_MAX_ITEMS 100000 /* elements of an answer; longer ones fail with SL_ELIMIT */

/*
 * Runs s with keys (the handle's key prefix prepended to each) and args.
 * Redis only: the memory backend answers SL_EINVAL at once (one process has
 * nothing to share with).
 */
int sl_state_eval(sl_state *h, const sl_state_script *s, const sl_str *keys, size_t nkeys, const sl_str *args,
                  size_t nargs, sl_items_cb cb, void *ud, sl_state_op **op);

/*
 * Cancels a call in flight: its callback will not run. A cancelled
 * reservation that the backend admits anyway is given back at once.
 */
void sl_state_cancel(sl_state_op *op);

/* The pure check-and-reserve rule shared by both backends (and mirrored by the Lua script). */
bool sl_state_check(const int64_t used[SL_MET_COUNT][SL_WIN_COUNT], const sl_reserve *q, int *metric, int *window);

#define SL_STATE_MAX_KEY 512     /* longest key of get/set/incr/del */
#define SL_STATE_MAX_VALUE 65536 /* longest value of set */

#endif
