/*
 * state_redis.c: the Redis backend. One hiredis async connection per handle
 * (so per worker loop), driven by the libuv adapter.
 *
 * Every limit check is one Lua script run atomically by Redis (read every
 * window, refuse or add to all of them), so any number of gateways sharing a
 * Redis see one set of counters. Scripts go as EVALSHA; a NOSCRIPT answer
 * (a fresh or flushed server) resends the same call as EVAL, which also
 * loads the script for the next time.
 *
 * Keys: PREFIX "rl:{CONSUMER}:" WINDOW ":" ID, a hash with fields r (requests),
 * t (tokens) and c (nano-USD), expiring a minute after its window ends. The
 * braces keep a consumer's keys in one Redis Cluster slot. Values of
 * get/set/incr/del live under PREFIX "kv:" KEY; the keys of sl_state_eval
 * (other modules' scripts) under PREFIX KEY.
 *
 * Failure handling: replies arrive in the order calls were sent, so calls in
 * flight form a FIFO; one repeating timer fails those past timeout_ms with
 * SL_ETIMEOUT (the reply, when it comes, is then dropped) and drops a
 * connection whose oldest call has waited far too long. A lost connection is
 * retried with exponential backoff (100 ms doubling to 2 s); while it is down
 * calls fail at once with SL_EIO. The caller applies state.redis.on_error.
 */
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/log.h"
#include "state/state_int.h"

/* ---- scripts ------------------------------------------------------------- */

enum { SCRIPT_RESERVE = 0, SCRIPT_SETTLE, SCRIPT_USAGE, SCRIPT_INCR, NSCRIPTS };

/*
 * KEYS: the four window hashes (minute, hour, day, month).
 * ARGV: amounts r t c; then 12 limits (metric-major: r m h d mo, t ..., c ...;
 * 0 = none); then 4 TTLs in seconds. Returns {admitted, metric, window, 12 counts}.
 * The rule is sl_state_check()'s.
 */
static const char reserve_lua[] =
    "local f = {'r','t','c'}\n"
    "local used = {}\n"
    "for w = 1, 4 do\n"
    "  local v = redis.call('HMGET', KEYS[w], 'r', 't', 'c')\n"
    "  for m = 1, 3 do used[(m-1)*4+w] = tonumber(v[m]) or 0 end\n"
    "end\n"
    "for m = 1, 3 do\n"
    "  local a = tonumber(ARGV[m])\n"
    "  for w = 1, 4 do\n"
    "    local lim = tonumber(ARGV[3+(m-1)*4+w])\n"
    "    local u = used[(m-1)*4+w]\n"
    "    if lim > 0 and (u >= lim or a > lim - u) then\n"
    "      local out = {0, m-1, w-1}\n"
    "      for i = 1, 12 do out[3+i] = used[i] end\n"
    "      return out\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for w = 1, 4 do\n"
    "  for m = 1, 3 do\n"
    "    local a = tonumber(ARGV[m])\n"
    "    if a ~= 0 then used[(m-1)*4+w] = redis.call('HINCRBY', KEYS[w], f[m], a) end\n"
    "  end\n"
    "  if redis.call('TTL', KEYS[w]) < 0 then redis.call('EXPIRE', KEYS[w], ARGV[15+w]) end\n"
    "end\n"
    "local out = {1, -1, -1}\n"
    "for i = 1, 12 do out[3+i] = used[i] end\n"
    "return out\n";

/* KEYS: the four window hashes. ARGV: deltas r t c, then 4 TTLs. Counters never go below zero. */
static const char settle_lua[] =
    "local f = {'r','t','c'}\n"
    "for w = 1, 4 do\n"
    "  for m = 1, 3 do\n"
    "    local d = tonumber(ARGV[m])\n"
    "    if d ~= 0 then\n"
    "      if redis.call('HINCRBY', KEYS[w], f[m], d) < 0 then redis.call('HSET', KEYS[w], f[m], 0) end\n"
    "    end\n"
    "  end\n"
    "  if redis.call('TTL', KEYS[w]) == -1 then redis.call('EXPIRE', KEYS[w], ARGV[3+w]) end\n"
    "end\n"
    "return 1\n";

/* KEYS: the four window hashes. Returns 12 counts. */
static const char usage_lua[] =
    "local out = {}\n"
    "for w = 1, 4 do\n"
    "  local v = redis.call('HMGET', KEYS[w], 'r', 't', 'c')\n"
    "  for m = 1, 3 do out[(m-1)*4+w] = tonumber(v[m]) or 0 end\n"
    "end\n"
    "return out\n";

/* KEYS: the value. ARGV: by, ttl ms (0 = none). TTL set only when the key has none. */
static const char incr_lua[] =
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return v\n";

static const char *const scripts[NSCRIPTS] = {reserve_lua, settle_lua, usage_lua, incr_lua};

/* ---- connection and calls ------------------------------------------------ */

enum { OP_RESERVE, OP_SETTLE, OP_USAGE, OP_VALUE, OP_ITEMS, OP_INTERNAL };

#define MAX_ARGS 32
#define MAX_PENDING 100000 /* calls in flight per connection; more fail at once */

typedef struct rconn rconn;

struct sl_state_op {
    rconn *c;
    sl_state_op *prev, *next; /* FIFO of calls in flight */
    int kind;
    int script;               /* SCRIPT_* or -1 for a plain command */
    const char *lua;          /* the script's source (NOSCRIPT: resent as EVAL), or NULL */
    bool answered;            /* the caller's callback ran (or must not run) */
    bool cancelled;
    bool retried_eval;
    uint64_t deadline_ns;
    union {
        sl_reserve_cb reserve;
        sl_usage_cb usage;
        sl_value_cb value;
        sl_items_cb items;
    } cb;
    void *ud;
    int64_t window_id[SL_WIN_COUNT]; /* reserve: where to give back if cancelled and admitted */
    int64_t amount[SL_MET_COUNT];
    char *consumer;                  /* reserve: for the give-back */
    int argc;
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    size_t argoff[MAX_ARGS];         /* where each argument starts in args */
    sl_buf args;                     /* storage of the arguments */
};

struct rconn {
    sl_state base;
    redisAsyncContext *ac;
    bool connected;          /* connect callback said yes */
    bool down_logged;
    bool closing;
    uv_timer_t timer;
    uint64_t tick_ms;
    uint64_t backoff_ms;
    uint64_t next_connect_ns;
    uint64_t connect_started_ns;
    sl_state_op *head, *tail;
    size_t npending;
    char *host, *password;
    int port;
    uint64_t db;
    char sha[NSCRIPTS][41];
};

static void op_free(sl_state_op *op)
{
    sl_buf_free(&op->args);
    sl_free(op->consumer);
    sl_free(op);
}

static void unlink_op(rconn *c, sl_state_op *op)
{
    if (op->prev) op->prev->next = op->next;
    else c->head = op->next;
    if (op->next) op->next->prev = op->prev;
    else c->tail = op->prev;
    op->prev = op->next = NULL;
    c->npending--;
}

/* Tells the caller that the call failed. */
static void fail_op(sl_state_op *op, int err)
{
    if (op->answered) return;
    op->answered = true;
    if (op->cancelled) return;
    if (op->kind == OP_RESERVE) {
        sl_reserve_result res = {.err = err, .denied_metric = -1, .denied_window = -1};
        op->cb.reserve(op->ud, &res);
    } else if (op->kind == OP_USAGE) {
        op->cb.usage(op->ud, err, NULL);
    } else if (op->kind == OP_VALUE && op->cb.value) {
        op->cb.value(op->ud, err, SL_STR_NULL, 0);
    } else if (op->kind == OP_ITEMS && op->cb.items) {
        op->cb.items(op->ud, err, NULL, 0);
    }
}

static void schedule_reconnect(rconn *c)
{
    c->next_connect_ns = uv_hrtime() + c->backoff_ms * 1000000ull;
    c->backoff_ms = SL_MIN(c->backoff_ms * 2, 2000);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (!c || c->ac != ac) return;
    if (status != REDIS_OK) {
        if (!c->down_logged) sl_warn("redis %s:%d: cannot connect: %s", c->host, c->port, ac->errstr);
        c->down_logged = true;
        c->ac = NULL; /* hiredis frees the context after this callback */
        c->connected = false;
        schedule_reconnect(c);
        return;
    }
    c->connected = true;
    c->backoff_ms = 100;
    if (c->down_logged) sl_info("redis %s:%d: connected again", c->host, c->port);
    else sl_info("redis %s:%d: connected", c->host, c->port);
    c->down_logged = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (!c || c->ac != ac) return;
    c->ac = NULL;
    c->connected = false;
    if (c->closing) return;
    sl_warn("redis %s:%d: connection lost (%s); limit checks follow on_error=%s until it is back", c->host, c->port,
            ac->errstr[0] ? ac->errstr : "closed", c->base.on_error == SL_ON_ERROR_DENY ? "deny" : "allow");
    c->down_logged = true;
    schedule_reconnect(c);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    rconn *c = ac->data;
    if (c && reply && reply->type == REDIS_REPLY_ERROR)
        sl_error("redis %s:%d: %s failed: %s", c->host, c->port, (const char *)privdata, reply->str);
}

static void start_connect(rconn *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (!ac) {
        schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        if (!c->down_logged) sl_warn("redis %s:%d: cannot connect: %s", c->host, c->port, ac->errstr);
        c->down_logged = true;
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, c->base.loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    c->ac = ac;
    c->connect_started_ns = uv_hrtime();
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (c->password) redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", c->password);
    if (c->db) redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %llu", (unsigned long long)c->db);
}

/* Drops the connection now: every call in flight is answered (hiredis runs their callbacks). */
static void drop_connection(rconn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac) return;
    if (!c->closing) {
        sl_warn("redis %s:%d: %s; reconnecting", c->host, c->port, why);
        c->down_logged = true;
    }
    c->ac = NULL;
    c->connected = false;
    redisAsyncFree(ac);
    if (!c->closing) schedule_reconnect(c);
}

static void on_tick(uv_timer_t *t)
{
    rconn *c = t->data;
    uint64_t now = uv_hrtime();
    if (!c->ac && !c->closing && now >= c->next_connect_ns) start_connect(c);
    /* hiredis 0.14's libuv adapter drops poll errors (a refused connect reports POLLERR): a connect
     * that neither succeeds nor fails within timeout_ms is abandoned and tried again later. */
    if (c->ac && !c->connected && now > c->connect_started_ns + c->base.timeout_ms * 1000000ull) {
        bool quiet = c->down_logged;
        c->down_logged = true;
        if (!quiet) sl_warn("redis %s:%d: connect timed out", c->host, c->port);
        c->closing = true; /* no "reconnecting" log line for every attempt */
        drop_connection(c, "connect timed out");
        c->closing = false;
        schedule_reconnect(c);
        return;
    }
    for (sl_state_op *op = c->head; op && op->deadline_ns <= now; op = op->next) fail_op(op, SL_ETIMEOUT);
    /* The oldest call long past its deadline: the server is stuck or the link is dead without a reset. */
    uint64_t stuck_ns = SL_MAX(1000ull, c->base.timeout_ms * 5) * 1000000ull;
    if (c->head && now > c->head->deadline_ns + stuck_ns) drop_connection(c, "no answer for too long");
}

/* ---- replies ------------------------------------------------------------- */

static bool int_at(const redisReply *r, size_t i, int64_t *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements || r->element[i]->type != REDIS_REPLY_INTEGER) return false;
    *out = r->element[i]->integer;
    return true;
}

/* Fills counts from 12 integers at offset off (metric-major). */
static bool read_counts(const redisReply *r, size_t off, sl_usage_counts *counts)
{
    for (int m = 0; m < SL_MET_COUNT; m++)
        for (int w = 0; w < SL_WIN_COUNT; w++)
            if (!int_at(r, off + (size_t)(m * SL_WIN_COUNT + w), &counts->v[m][w])) return false;
    return true;
}

static void give_back(rconn *c, const sl_state_op *op);

static void deliver_reserve(rconn *c, sl_state_op *op, const redisReply *r)
{
    sl_reserve_result res = {.err = SL_OK};
    int64_t admitted = 0, m = -1, w = -1;
    if (!int_at(r, 0, &admitted) || !int_at(r, 1, &m) || !int_at(r, 2, &w) || !read_counts(r, 3, &res.counts)) {
        fail_op(op, SL_EPARSE);
        return;
    }
    res.admitted = admitted == 1;
    if (op->answered) { /* timed out or cancelled: nobody will settle an admitted reservation, so give it back */
        if (res.admitted) give_back(c, op);
        return;
    }
    op->answered = true;
    res.denied_metric = (int)m, res.denied_window = (int)w;
    memcpy(res.counts.window_id, op->window_id, sizeof op->window_id);
    op->cb.reserve(op->ud, &res);
}

static void item_of(const redisReply *e, sl_state_item *it)
{
    memset(it, 0, sizeof *it);
    if (e->type == REDIS_REPLY_INTEGER) {
        it->is_int = true;
        it->num = e->integer;
    } else if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
        it->s = (sl_str){e->str, e->len};
    }
}

/* A script's answer as items: a flat array's elements (nested arrays count as nil), or the one value. */
static void deliver_items(sl_state_op *op, const redisReply *r)
{
    op->answered = true;
    if (!op->cb.items) return;
    if (r->type != REDIS_REPLY_ARRAY) {
        sl_state_item it;
        item_of(r, &it);
        op->cb.items(op->ud, SL_OK, &it, 1);
        return;
    }
    if (r->elements > SL_STATE_MAX_ITEMS) {
        op->cb.items(op->ud, SL_ELIMIT, NULL, 0);
        return;
    }
    sl_state_item *items = sl_calloc(r->elements ? r->elements : 1, sizeof *items);
    if (!items) {
        op->cb.items(op->ud, SL_ENOMEM, NULL, 0);
        return;
    }
    for (size_t i = 0; i < r->elements; i++) item_of(r->element[i], &items[i]);
    op->cb.items(op->ud, SL_OK, items, r->elements);
    sl_free(items);
}

static void deliver(rconn *c, sl_state_op *op, const redisReply *r)
{
    if (op->kind == OP_RESERVE) {
        deliver_reserve(c, op, r);
        return;
    }
    if (op->answered) return;
    if (op->kind == OP_USAGE) {
        sl_usage_counts counts;
        memset(&counts, 0, sizeof counts);
        memcpy(counts.window_id, op->window_id, sizeof op->window_id);
        if (!read_counts(r, 0, &counts)) {
            fail_op(op, SL_EPARSE);
            return;
        }
        op->answered = true;
        op->cb.usage(op->ud, SL_OK, &counts);
    } else if (op->kind == OP_ITEMS) {
        deliver_items(op, r);
    } else if (op->kind == OP_VALUE) {
        op->answered = true;
        if (!op->cb.value) return;
        if (r->type == REDIS_REPLY_NIL) op->cb.value(op->ud, SL_ENOTFOUND, SL_STR_NULL, 0);
        else if (r->type == REDIS_REPLY_INTEGER) op->cb.value(op->ud, SL_OK, SL_STR_NULL, r->integer);
        else op->cb.value(op->ud, SL_OK, (sl_str){r->str, r->len}, 0);
    }
}

static void on_reply(redisAsyncContext *ac, void *rp, void *privdata)
{
    redisReply *r = rp;
    sl_state_op *op = privdata;
    rconn *c = op->c;
    if (r && r->type == REDIS_REPLY_ERROR && op->lua && !op->retried_eval &&
        sl_str_starts_with((sl_str){r->str, r->len}, SL_STR("NOSCRIPT")) && c->ac == ac) {
        /* The server does not know the script yet: the same call as EVAL (which also caches it). */
        op->retried_eval = true;
        op->argv[0] = "EVAL", op->argvlen[0] = 4;
        op->argv[1] = op->lua, op->argvlen[1] = strlen(op->lua);
        if (redisAsyncCommandArgv(ac, on_reply, op, op->argc, op->argv, op->argvlen) == REDIS_OK) return;
    }
    unlink_op(c, op);
    if (!r) {
        fail_op(op, c->closing ? SL_ECLOSED : SL_EIO);
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (!op->answered) sl_warn("redis %s:%d: %.*s", c->host, c->port, (int)SL_MIN(r->len, 200), r->str);
        fail_op(op, SL_EIO);
    } else {
        deliver(c, op, r);
    }
    op_free(op);
}

/* ---- building calls ------------------------------------------------------ */

/* No connection to send on: none at all, or one being re-established after a failure (fail fast then,
 * so on_error applies at once instead of after timeout_ms). */
static bool unusable(const rconn *c) { return !c->ac || c->closing || (!c->connected && c->down_logged); }


static sl_state_op *op_new(rconn *c, int kind, int script)
{
    sl_state_op *op = sl_calloc(1, sizeof(*op));
    if (!op) return NULL;
    op->c = c;
    op->kind = kind;
    op->script = script;
    op->lua = script >= 0 ? scripts[script] : NULL;
    sl_buf_init(&op->args, 1u << 20);
    return op;
}

/* Arguments are appended to one buffer, then pointed at once it no longer moves. */
static void arg(sl_state_op *op, sl_str s)
{
    if (op->argc >= MAX_ARGS) return;
    if (sl_buf_reserve(&op->args, s.n + 1) != SL_OK) {
        op->argc = MAX_ARGS; /* marks the call as broken: send_op refuses it */
        return;
    }
    op->argvlen[op->argc] = s.n;
    op->argoff[op->argc] = op->args.len;
    op->argc++;
    sl_buf_append(&op->args, s.p ? s.p : "", s.n);
}

static void arg_i64(sl_state_op *op, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    arg(op, (sl_str){b, (size_t)n});
}

static void arg_key(sl_state_op *op, const char *prefix, const char *kind, sl_str a, const char *win, int64_t id)
{
    char b[SL_STATE_MAX_KEY + 160];
    int n = id >= 0 ? snprintf(b, sizeof b, "%s%s%.*s%s:%lld", prefix, kind, SL_STR_FMT(a), win, (long long)id)
                    : snprintf(b, sizeof b, "%s%s%.*s", prefix, kind, SL_STR_FMT(a));
    arg(op, (sl_str){b, (size_t)SL_MIN((size_t)SL_MAX(n, 0), sizeof b - 1)});
}

static void window_keys(sl_state_op *op, rconn *c, sl_str consumer, const int64_t id[SL_WIN_COUNT])
{
    char tag[SL_STATE_MAX_KEY + 8];
    int n = snprintf(tag, sizeof tag, "{%.*s}:", (int)SL_MIN(consumer.n, SL_STATE_MAX_KEY), consumer.p);
    for (int w = 0; w < SL_WIN_COUNT; w++)
        arg_key(op, c->base.prefix, "rl:", (sl_str){tag, (size_t)n}, sl_window_name((sl_window)w), id[w]);
}

static void ttl_args(sl_state_op *op, const int64_t id[SL_WIN_COUNT], int64_t now_ms)
{
    for (int w = 0; w < SL_WIN_COUNT; w++) {
        int64_t left = (sl_window_end_ms((sl_window)w, id[w]) - now_ms) / 1000;
        arg_i64(op, SL_MAX(left, 0) + 60); /* a minute of slack for late settlements */
    }
}

static int send_op(rconn *c, sl_state_op *op)
{
    if (!op->args.p || op->argc >= MAX_ARGS) return SL_ENOMEM; /* an append failed, or too many arguments */
    for (int i = 0; i < op->argc; i++) op->argv[i] = op->args.p + op->argoff[i];
    if (unusable(c)) return SL_EIO;
    if (c->npending >= MAX_PENDING) return SL_ELIMIT;
    op->deadline_ns = uv_hrtime() + c->base.timeout_ms * 1000000ull;
    if (redisAsyncCommandArgv(c->ac, on_reply, op, op->argc, op->argv, op->argvlen) != REDIS_OK) return SL_EIO;
    op->prev = c->tail;
    if (c->tail) c->tail->next = op;
    else c->head = op;
    c->tail = op;
    c->npending++;
    return SL_OK;
}

/* Starts op as EVALSHA script with nkeys keys (the keys and arguments follow, added by the caller). */
static void script_head(sl_state_op *op, rconn *c, int script, int nkeys)
{
    arg(op, SL_STR("EVALSHA"));
    arg(op, (sl_str){c->sha[script], 40});
    arg_i64(op, nkeys);
}

static int submit(rconn *c, sl_state_op *op, sl_state_op **out)
{
    int rc = send_op(c, op);
    if (rc != SL_OK) {
        op_free(op);
        return rc;
    }
    if (out) *out = op;
    return SL_OK;
}

/* ---- backend functions --------------------------------------------------- */

static int r_reserve(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    sl_state_op *op = op_new(c, OP_RESERVE, SCRIPT_RESERVE);
    if (!op) return SL_ENOMEM;
    op->cb.reserve = cb, op->ud = ud;
    for (int w = 0; w < SL_WIN_COUNT; w++) op->window_id[w] = sl_window_id((sl_window)w, q->now_ms);
    memcpy(op->amount, q->amount, sizeof op->amount);
    if (!(op->consumer = sl_strndup(q->consumer.p ? q->consumer.p : "", q->consumer.n))) {
        op_free(op);
        return SL_ENOMEM;
    }
    script_head(op, c, SCRIPT_RESERVE, SL_WIN_COUNT);
    window_keys(op, c, q->consumer, op->window_id);
    for (int m = 0; m < SL_MET_COUNT; m++) arg_i64(op, q->amount[m]);
    for (int m = 0; m < SL_MET_COUNT; m++)
        for (int w = 0; w < SL_WIN_COUNT; w++) arg_i64(op, q->limit[m][w]);
    ttl_args(op, op->window_id, q->now_ms);
    return submit(c, op, out);
}

static int settle_args(rconn *c, const sl_settle *s)
{
    sl_state_op *op = op_new(c, OP_SETTLE, SCRIPT_SETTLE);
    if (!op) return SL_ENOMEM;
    op->answered = true; /* nobody waits for it */
    script_head(op, c, SCRIPT_SETTLE, SL_WIN_COUNT);
    window_keys(op, c, s->consumer, s->window_id);
    for (int m = 0; m < SL_MET_COUNT; m++) arg_i64(op, s->delta[m]);
    ttl_args(op, s->window_id, sl_state_now_ms());
    return submit(c, op, NULL);
}

static int r_settle(sl_state *h, const sl_settle *s)
{
    rconn *c = (rconn *)h;
    return !unusable(c) ? settle_args(c, s) : SL_EIO;
}

/* A reservation admitted after its caller stopped waiting: undo it. */
static void give_back(rconn *c, const sl_state_op *op)
{
    sl_settle s = {.consumer = sl_str_from_cstr(op->consumer)};
    memcpy(s.window_id, op->window_id, sizeof s.window_id);
    for (int m = 0; m < SL_MET_COUNT; m++) s.delta[m] = -op->amount[m];
    if (!c->closing && c->ac) settle_args(c, &s);
}

static int r_usage(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    sl_state_op *op = op_new(c, OP_USAGE, SCRIPT_USAGE);
    if (!op) return SL_ENOMEM;
    op->cb.usage = cb, op->ud = ud;
    for (int w = 0; w < SL_WIN_COUNT; w++) op->window_id[w] = sl_window_id((sl_window)w, now_ms);
    script_head(op, c, SCRIPT_USAGE, SL_WIN_COUNT);
    window_keys(op, c, consumer, op->window_id);
    return submit(c, op, out);
}

static sl_state_op *value_op(rconn *c, int script, sl_value_cb cb, void *ud)
{
    sl_state_op *op = op_new(c, OP_VALUE, script);
    if (op) op->cb.value = cb, op->ud = ud;
    return op;
}

static int r_get(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, -1, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(op, SL_STR("GET"));
    arg_key(op, c->base.prefix, "kv:", key, "", -1);
    return submit(c, op, out);
}

static int r_set(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, -1, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(op, SL_STR("SET"));
    arg_key(op, c->base.prefix, "kv:", key, "", -1);
    arg(op, value);
    if (ttl_ms) {
        arg(op, SL_STR("PX"));
        arg_i64(op, (int64_t)ttl_ms);
    }
    return submit(c, op, out);
}

static int r_incr(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, SCRIPT_INCR, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    script_head(op, c, SCRIPT_INCR, 1);
    arg_key(op, c->base.prefix, "kv:", key, "", -1);
    arg_i64(op, by);
    arg_i64(op, (int64_t)ttl_ms);
    return submit(c, op, out);
}

static int r_del(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, -1, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(op, SL_STR("DEL"));
    arg_key(op, c->base.prefix, "kv:", key, "", -1);
    return submit(c, op, out);
}

static int r_eval(sl_state *h, const sl_state_script *s, const sl_str *keys, size_t nkeys, const sl_str *args,
                  size_t nargs, sl_items_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    sl_state_op *op = op_new(c, OP_ITEMS, -1);
    if (!op) return SL_ENOMEM;
    op->cb.items = cb, op->ud = ud;
    op->lua = s->lua;
    arg(op, SL_STR("EVALSHA"));
    arg(op, (sl_str){s->sha1, 40});
    arg_i64(op, (int64_t)nkeys);
    for (size_t i = 0; i < nkeys; i++) arg_key(op, c->base.prefix, "", keys[i], "", -1);
    for (size_t i = 0; i < nargs; i++) arg(op, args[i]);
    return submit(c, op, out);
}

void sl_state_redis_cancel(sl_state_op *op)
{
    op->cancelled = true;
    op->answered = true;
}

static void on_timer_closed(uv_handle_t *h)
{
    rconn *c = h->data;
    sl_free(c->host);
    sl_free(c->password);
    sl_free(c);
}

static void r_close(sl_state *h)
{
    rconn *c = (rconn *)h;
    c->closing = true;
    drop_connection(c, "closing");
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static const sl_state_vt redis_vt = {
    .name = "redis",
    .reserve = r_reserve,
    .settle = r_settle,
    .usage = r_usage,
    .get = r_get,
    .set = r_set,
    .incr = r_incr,
    .del = r_del,
    .eval = r_eval,
    .close = r_close,
};

void sl_state_sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < 20 && i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[40] = '\0';
}

sl_state *sl_state_redis_open(uv_loop_t *loop, const sl_state_cfg *cfg)
{
    rconn *c = sl_calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->base.vt = &redis_vt;
    c->base.loop = loop;
    c->base.timeout_ms = cfg->redis.timeout_ms ? cfg->redis.timeout_ms : 200;
    c->base.on_error = cfg->redis.on_error;
    c->host = sl_strdup(cfg->redis.host ? cfg->redis.host : "127.0.0.1");
    c->password = cfg->redis.password ? sl_strdup(cfg->redis.password) : NULL;
    c->port = cfg->redis.port ? cfg->redis.port : 6379;
    c->db = cfg->redis.db;
    c->backoff_ms = 100;
    if (!c->host || (cfg->redis.password && !c->password)) {
        sl_free(c->host);
        sl_free(c->password);
        sl_free(c);
        return NULL;
    }
    for (int i = 0; i < NSCRIPTS; i++) sl_state_sha1_hex(scripts[i], c->sha[i]);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->tick_ms = SL_MAX(5, SL_MIN(100, c->base.timeout_ms / 4));
    uv_timer_start(&c->timer, on_tick, c->tick_ms, c->tick_ms);
    start_connect(c);
    return &c->base;
}
