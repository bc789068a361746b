/*
 * state_redis.c: the Redis backend. One hiredis async connection per handle
 * (so per worker loop), driven by our own libuv hooks (redis_uv.c).
 *
 * Every limit check runs inside a Lua script run atomically by Redis (read
 * the consumer's windows, refuse or add to all of them), so any number of
 * gateways sharing a Redis see one set of counters. The checks and
 * settlements of one consumer made in one loop turn share one script call
 * ("batches"). Scripts go as EVALSHA; a NOSCRIPT answer (a fresh or flushed
 * server) resends the same call as EVAL, which also loads the script for the
 * next time. Commands are built in the Redis protocol here and handed to
 * hiredis ready to send.
 *
 * Keys: PREFIX "rl:{CONSUMER}", one hash per consumer (fields under
 * "scripts"; docs/governance.md has the layout and why it changed). The
 * braces keep it in one Redis Cluster slot. Values of get/set/incr/del live
 * under PREFIX "kv:" KEY; the keys of sl_state_eval (other modules' scripts)
 * under PREFIX KEY.
 *
 * Failure handling: replies arrive in the order calls were sent, so calls in
 * flight form a FIFO; one repeating timer fails those past timeout_ms with
 * SL_ETIMEOUT (the reply, when it comes, is then dropped) and drops a
 * connection whose oldest call has waited far too long. A lost connection is
 * retried with exponential backoff (100 ms doubling to 2 s); while it is down
 * calls fail at once with SL_EIO. The caller applies state.redis.on_error.
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/log.h"
#include "state/redis_uv.h"
#include "state/state_int.h"

/* ---- scripts ------------------------------------------------------------- */

enum { SCRIPT_LIMITS = 0, SCRIPT_USAGE, SCRIPT_INCR, NSCRIPTS };

/*
 * A consumer's limit counters are one hash (see the top of the file): field
 * W holds the id of window W's current window (as sent by the gateway), W..r,
 * W..t and W..c its counts, W one of m h d M (minute hour day month). Each
 * script reads the 16 fields with one HMGET and writes what changed with one
 * HSET. Measured with callgrind on redis-server 7.0, what costs inside a script
 * is each redis.call (about 8k instructions), each argument (1k) and each
 * tonumber (1.5k, a strtod): so window ids are compared as strings (numbers
 * only when they differ), zero amounts and absent limits are neither sent nor
 * converted, and counts the script did not change go back as the strings
 * Redis stored (the gateway parses them).
 *
 * A window whose stored id is older than the caller's starts again from zero;
 * one whose stored id is newer (another gateway's clock is ahead) is the one
 * counted into, so gateways with skewed clocks never split a window in two.
 * When the month window (re)starts the hash gets a TTL of 32 days: longer
 * than what is left of any month, so counts never vanish while they count.
 */
#define LUA_FIELDS "local F = {'m','h','d','M','mr','hr','dr','Mr','mt','ht','dt','Mt','mc','hc','dc','Mc'}\n"
#define LUA_LOAD "local v = redis.call('HMGET', KEYS[1], unpack(F))\n"
#define LUA_TTL "2764800" /* 32 days */

/*
 * KEYS: the consumer's hash. ARGV: a sequence of operations on it, in the
 * order the gateway issued them (one loop turn's worth, see "batches"):
 *
 *   R, amounts r t c, the window ids of now (minute hour day month), a string
 *      naming the limits that follow (one letter each: 'a' + slot, slot =
 *      metric * 4 + window), those limits: check and reserve. Answers 19
 *      values: admitted, metric, window, the 4 window ids counted in, 12
 *      counts (metric-major; ids and counts may be strings, false for 0).
 *      The rule is sl_state_check()'s: limits are checked in slot order.
 *   S, deltas r t c, the window ids they belong to: settle. A window that
 *      has moved on is left alone; a newer one starts from zero (a usage
 *      record without a reservation). Counters never go below zero. No answer.
 *   r, s: the same without the 4 window ids: those of the operation before.
 */
static const char limits_lua[] = LUA_FIELDS LUA_LOAD
    "local dirty, fresh, out, p = {}, false, {}, 1\n"
    "local function newer(w, want)\n"
    "  return v[w] ~= want and (not v[w] or tonumber(v[w]) < tonumber(want))\n"
    "end\n"
    "local function restart(w, want)\n"
    "  v[w] = want; v[4+w] = 0; v[8+w] = 0; v[12+w] = 0\n"
    "  dirty[w] = true; dirty[4+w] = true; dirty[8+w] = true; dirty[12+w] = true\n"
    "  if w == 4 then fresh = true end\n"
    "end\n"
    "local ids = {}\n"
    "while p <= #ARGV do\n"
    "  local kind, q = ARGV[p], p + 4\n"
    "  if kind == 'R' or kind == 'S' then\n"
    "    ids[1] = ARGV[q]; ids[2] = ARGV[q+1]; ids[3] = ARGV[q+2]; ids[4] = ARGV[q+3]; q = q + 4\n"
    "  end\n"
    "  if kind == 'R' or kind == 'r' then\n"
    "    for w = 1, 4 do local want = ids[w]; if newer(w, want) then restart(w, want) end end\n"
    "    local amt = {0, 0, 0}\n"
    "    for m = 1, 3 do if ARGV[p+m] ~= '0' then amt[m] = tonumber(ARGV[p+m]) end end\n"
    "    local lims = ARGV[q]\n"
    "    local ok, n = 1, #out\n"
    "    out[n+2] = -1; out[n+3] = -1\n"
    "    for j = 1, #lims do\n"
    "      local s = string.byte(lims, j) - 97\n"
    "      local lim = tonumber(ARGV[q+j])\n"
    "      local u = tonumber(v[5+s]) or 0\n"
    "      local w = s % 4\n"
    "      local m = (s - w) / 4\n"
    "      if u >= lim or amt[m+1] > lim - u then ok = 0; out[n+2] = m; out[n+3] = w; break end\n"
    "    end\n"
    "    if ok == 1 then\n"
    "      for m = 1, 3 do\n"
    "        local a = amt[m]\n"
    "        if a ~= 0 then\n"
    "          for w = 1, 4 do local i = 4 + (m-1)*4 + w; v[i] = (tonumber(v[i]) or 0) + a; dirty[i] = true end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    out[n+1] = ok\n"
    "    for i = 1, 16 do out[n+3+i] = v[i] end\n"
    "    p = q + 1 + #lims\n"
    "  else\n"
    "    local d = {}\n"
    "    for m = 1, 3 do d[m] = ARGV[p+m] ~= '0' and tonumber(ARGV[p+m]) end\n"
    "    for w = 1, 4 do\n"
    "      local want = ids[w]\n"
    "      if newer(w, want) then restart(w, want) end\n"
    "      if v[w] == want then\n"
    "        for m = 1, 3 do\n"
    "          if d[m] then\n"
    "            local i = 4 + (m-1)*4 + w\n"
    "            local u = (tonumber(v[i]) or 0) + d[m]\n"
    "            if u < 0 then u = 0 end\n"
    "            v[i] = u; dirty[i] = true\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    p = q\n"
    "  end\n"
    "end\n"
    "local set, n = {}, 0\n"
    "for i = 1, 16 do if dirty[i] then n = n + 2; set[n-1] = F[i]; set[n] = v[i] end end\n"
    "if n > 0 then redis.call('HSET', KEYS[1], unpack(set)) end\n"
    "if fresh then redis.call('EXPIRE', KEYS[1], " LUA_TTL ") end\n"
    "return out\n";

/* KEYS: the consumer's hash. ARGV: the window ids of now. Returns 12 counts (0 for another window; strings). */
static const char usage_lua[] = LUA_FIELDS LUA_LOAD
    "local out = {}\n"
    "for m = 0, 2 do for w = 1, 4 do\n"
    "  out[m*4+w] = v[w] == ARGV[w] and v[4+m*4+w] or 0\n"
    "end end\n"
    "return out\n";

/* KEYS: the value. ARGV: by, ttl ms (0 = none). TTL set only when the key has none. */
static const char incr_lua[] =
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return v\n";

static const char *const scripts[NSCRIPTS] = {limits_lua, usage_lua, incr_lua};

/* ---- connection and calls ------------------------------------------------ */

enum { OP_RESERVE, OP_USAGE, OP_VALUE, OP_ITEMS, OP_BATCH };

#define MAX_BATCHES 32      /* consumers with limit calls waiting for the next flush, per connection */
#define BATCH_MAX_OPS 64    /* reservations and settlements in one script call */
#define BATCH_MAX_BYTES 16384

#define MAX_PENDING 100000 /* calls in flight per connection; more fail at once */
#define CMD_MAX (1u << 20) /* longest command (set values are at most SL_STATE_MAX_VALUE) */
#define CMD_INLINE 400     /* a limit call fits here: no allocation for its command */
#define CMD_HEAD 16        /* room in front of the arguments for "*N\r\n" */

typedef struct rconn rconn;

/*
 * A call's command, built directly in the Redis protocol (RESP) so that
 * hiredis only copies it: arguments are appended after CMD_HEAD bytes of room
 * where the "*N" line goes once their number is known.
 */
typedef struct cmd {
    char *p;            /* inl, or allocated when a command outgrows it */
    size_t len, cap;    /* len counts from p */
    int argc;
    bool failed;        /* an append did not fit under CMD_MAX or memory ran out */
    size_t start;       /* where the finished command begins in p */
    size_t rest;        /* scripts: where the arguments after the SHA begin (NOSCRIPT resends as EVAL) */
    size_t key, keylen; /* limit calls: the consumer's hash (a cancelled reservation's give-back) */
    char inl[CMD_INLINE];
} cmd;

struct sl_state_op {
    rconn *c;
    sl_state_op *prev, *next; /* FIFO of calls in flight */
    sl_state_op *mhead, *mtail, *mnext; /* a batch's reservations, in order; mnext links them */
    int nops;                 /* a batch: reservations and settlements in it */
    bool has_ids;             /* a batch: window_id holds the ids its last operation sent */
    int kind;
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
    int64_t window_id[SL_WIN_COUNT]; /* usage: the windows of now */
    int64_t amount[SL_MET_COUNT];    /* reserve: what to give back if cancelled and admitted */
    int64_t now_ms;
    cmd cmd;
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
    sl_state_op *batch[MAX_BATCHES]; /* limit calls of this loop turn, one script call per consumer */
    int nbatches;
    char *host, *password;
    int port;
    uint64_t db;
    char sha[NSCRIPTS][41];
};

static void op_free(sl_state_op *op)
{
    for (sl_state_op *m = op->mhead, *next; m; m = next) {
        next = m->mnext;
        op_free(m);
    }
    if (op->cmd.p != op->cmd.inl) sl_free(op->cmd.p);
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
    if (op->kind == OP_BATCH) {
        for (sl_state_op *m = op->mhead; m; m = m->mnext) fail_op(m, err);
        op->answered = true;
        return;
    }
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

static void fail_batches(rconn *c, int err);

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
        fail_batches(c, SL_EIO);
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
    fail_batches(c, c->closing ? SL_ECLOSED : SL_EIO);
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

static void flush_hook(redisAsyncContext *ac);

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
    if (sl_redis_uv_attach(ac, c->base.loop, flush_hook) != REDIS_OK) {
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
    fail_batches(c, c->closing ? SL_ECLOSED : SL_EIO);
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

static int parse_i64(sl_str t, int64_t *out)
{
    bool neg = t.n > 0 && t.p[0] == '-';
    uint64_t u = 0;
    int rc = sl_str_to_u64(neg ? (sl_str){t.p + 1, t.n - 1} : t, (uint64_t)INT64_MAX, &u);
    if (rc == SL_OK) *out = neg ? -(int64_t)u : (int64_t)u;
    return rc;
}

/* A number the scripts answer: an integer, the decimal string Redis stored, or nil (false in Lua) for 0. */
static bool num_at(const redisReply *r, size_t i, int64_t *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return false;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER) *out = e->integer;
    else if (e->type == REDIS_REPLY_NIL) *out = 0;
    else if (e->type != REDIS_REPLY_STRING || parse_i64((sl_str){e->str, e->len}, out) != SL_OK) return false;
    return true;
}

/* Fills counts from 12 numbers at offset off (metric-major). */
static bool read_counts(const redisReply *r, size_t off, sl_usage_counts *counts)
{
    for (int m = 0; m < SL_MET_COUNT; m++)
        for (int w = 0; w < SL_WIN_COUNT; w++)
            if (!num_at(r, off + (size_t)(m * SL_WIN_COUNT + w), &counts->v[m][w])) return false;
    return true;
}

static void give_back(rconn *c, sl_str key, const sl_state_op *op);

#define RESERVE_ANSWER 19 /* values the script answers per reservation */

/* One reservation's answer: RESERVE_ANSWER values at off in the batch's answer. */
static void deliver_reserve(rconn *c, sl_state_op *op, const redisReply *r, size_t off, sl_str key)
{
    sl_reserve_result res = {.err = SL_OK};
    int64_t admitted = 0, m = -1, w = -1;
    bool ok = int_at(r, off, &admitted) && int_at(r, off + 1, &m) && int_at(r, off + 2, &w) &&
              read_counts(r, off + 7, &res.counts);
    for (int i = 0; ok && i < SL_WIN_COUNT; i++) ok = num_at(r, off + 3 + (size_t)i, &op->window_id[i]);
    if (!ok) {
        fail_op(op, SL_EPARSE);
        return;
    }
    res.admitted = admitted == 1;
    if (op->answered) { /* timed out or cancelled: nobody will settle an admitted reservation, so give it back */
        if (res.admitted) give_back(c, key, op);
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
    if (op->kind == OP_BATCH) {
        sl_str key = {op->cmd.p + op->cmd.key, op->cmd.keylen};
        size_t off = 0;
        for (sl_state_op *m = op->mhead; m; m = m->mnext, off += RESERVE_ANSWER) deliver_reserve(c, m, r, off, key);
        op->answered = true;
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

static void on_reply(redisAsyncContext *ac, void *rp, void *privdata);

/* The same call as EVAL with the script's source: a new command (rare: once per script and server). */
static int resend_as_eval(redisAsyncContext *ac, sl_state_op *op)
{
    size_t lualen = strlen(op->lua);
    sl_buf b;
    sl_buf_init(&b, CMD_MAX + lualen + 64);
    char head[64];
    int n = snprintf(head, sizeof head, "*%d\r\n$4\r\nEVAL\r\n$%zu\r\n", op->cmd.argc, lualen);
    bool ok = sl_buf_append(&b, head, (size_t)n) == SL_OK && sl_buf_append(&b, op->lua, lualen) == SL_OK &&
              sl_buf_append(&b, "\r\n", 2) == SL_OK &&
              sl_buf_append(&b, op->cmd.p + op->cmd.rest, op->cmd.len - op->cmd.rest) == SL_OK;
    int rc = ok ? redisAsyncFormattedCommand(ac, on_reply, op, b.p, b.len) : REDIS_ERR;
    sl_buf_free(&b);
    return rc;
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
        if (resend_as_eval(ac, op) == REDIS_OK) return;
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

static sl_state_op *op_new(rconn *c, int kind, const char *lua)
{
    sl_state_op *op = sl_malloc(sizeof(*op));
    if (!op) return NULL;
    memset(op, 0, offsetof(sl_state_op, cmd) + offsetof(cmd, inl)); /* the inline command bytes need no clearing */
    op->c = c;
    op->kind = kind;
    op->lua = lua;
    op->cmd.p = op->cmd.inl;
    op->cmd.cap = CMD_INLINE;
    op->cmd.len = CMD_HEAD;
    return op;
}

/* n more bytes at the end of the command; NULL (and the command marked failed) when they do not fit. */
static char *cmd_room(cmd *m, size_t n)
{
    if (m->failed) return NULL;
    if (m->len + n > m->cap) {
        size_t cap = SL_MAX(m->cap * 2, m->len + n);
        char *p = m->len + n <= CMD_MAX ? sl_malloc(cap) : NULL;
        if (!p) {
            m->failed = true;
            return NULL;
        }
        memcpy(p, m->p, m->len);
        if (m->p != m->inl) sl_free(m->p);
        m->p = p, m->cap = cap;
    }
    char *at = m->p + m->len;
    m->len += n;
    return at;
}


/* Starts an argument of n bytes ("$n\r\n" and the closing "\r\n" written); returns where its bytes go. */
static char *arg_begin(cmd *m, size_t n)
{
    char head[24];
    head[0] = '$';
    size_t h = 1 + sl_u64_dec(head + 1, n);
    head[h++] = '\r', head[h++] = '\n';
    char *p = cmd_room(m, h + n + 2);
    if (!p) return NULL;
    memcpy(p, head, h);
    p[h + n] = '\r', p[h + n + 1] = '\n';
    m->argc++;
    return p + h;
}

static void arg(cmd *m, sl_str s)
{
    char *p = arg_begin(m, s.n);
    if (p && s.n) memcpy(p, s.p, s.n);
}

static void arg_i64(cmd *m, int64_t v)
{
    char b[24];
    arg(m, (sl_str){b, sl_i64_dec(b, v)});
}

/* An argument made of three pieces (a key: prefix, kind, name). */
static char *arg3(cmd *m, sl_str a, sl_str b, sl_str c)
{
    char *p = arg_begin(m, a.n + b.n + c.n);
    if (!p) return NULL;
    if (a.n) memcpy(p, a.p, a.n);
    if (b.n) memcpy(p + a.n, b.p, b.n);
    if (c.n) memcpy(p + a.n + b.n, c.p, c.n);
    return p;
}

static sl_str prefix_of(const rconn *c) { return sl_str_from_cstr(c->base.prefix); }

/* Values: PREFIX "kv:" KEY. */
static void value_key(cmd *m, const rconn *c, sl_str key)
{
    arg3(m, prefix_of(c), SL_STR("kv:"), (sl_str){key.p, SL_MIN(key.n, SL_STATE_MAX_KEY)});
}

/* A consumer's limit counters: PREFIX "rl:{" CONSUMER "}" (remembered for a give-back). */
static void limit_key(cmd *m, const rconn *c, sl_str consumer)
{
    char tag[SL_STATE_MAX_KEY + 2];
    size_t n = SL_MIN(consumer.n, SL_STATE_MAX_KEY);
    if (n) memcpy(tag, consumer.p, n);
    tag[n++] = '}';
    char *p = arg3(m, prefix_of(c), SL_STR("rl:{"), (sl_str){tag, n});
    if (!p) return;
    m->key = (size_t)(p - m->p);
    m->keylen = prefix_of(c).n + 4 + n;
}

/* EVALSHA SHA NKEYS: the arguments after the SHA are what an EVAL resend keeps. */
static void script_head(cmd *m, const char *sha, int nkeys)
{
    arg(m, SL_STR("EVALSHA"));
    arg(m, (sl_str){sha, 40});
    m->rest = m->len;
    arg_i64(m, nkeys);
}

static void window_args(cmd *m, const int64_t id[SL_WIN_COUNT])
{
    for (int w = 0; w < SL_WIN_COUNT; w++) arg_i64(m, id[w]);
}

/* Puts "*argc\r\n" right in front of the arguments. */
static void cmd_finish(cmd *m)
{
    char head[CMD_HEAD];
    head[0] = '*';
    size_t h = 1 + sl_u64_dec(head + 1, (uint64_t)m->argc);
    head[h++] = '\r', head[h++] = '\n';
    m->start = CMD_HEAD - h;
    memcpy(m->p + m->start, head, h);
}

/* Sends op now (after nothing else). */
static int send_cmd(rconn *c, sl_state_op *op)
{
    if (op->cmd.failed) return op->cmd.len > CMD_MAX / 2 ? SL_ELIMIT : SL_ENOMEM;
    cmd_finish(&op->cmd);
    if (unusable(c)) return SL_EIO;
    if (c->npending >= MAX_PENDING) return SL_ELIMIT;
    op->deadline_ns = uv_hrtime() + c->base.timeout_ms * 1000000ull;
    const char *p = op->cmd.p + op->cmd.start;
    if (redisAsyncFormattedCommand(c->ac, on_reply, op, p, op->cmd.len - op->cmd.start) != REDIS_OK) return SL_EIO;
    op->prev = c->tail;
    if (c->tail) c->tail->next = op;
    else c->head = op;
    c->tail = op;
    c->npending++;
    return SL_OK;
}

static void flush_batches(rconn *c);

/* Sends op after the limit calls waiting for the flush, so that calls reach Redis in the order they were made. */
static int send_op(rconn *c, sl_state_op *op)
{
    flush_batches(c);
    return send_cmd(c, op);
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

/*
 * Batches: the reservations and settlements of one consumer made during one
 * turn of the event loop go to Redis as one call of the limits script, which
 * runs them in the order they were made (so each is as atomic as on its own,
 * and other gateways' calls come before or after the whole batch). The batch
 * is sent from the flush that writes the turn's commands anyway, or earlier
 * when any other call is made (order kept), when it is full, or when too many
 * consumers have one open. Nothing waits longer than it did before; what a
 * batch saves is Redis' cost per call (parsing, the script's start, one HMGET
 * and one HSET instead of one each per operation).
 */
static void send_batch(rconn *c, sl_state_op *b)
{
    int rc = send_cmd(c, b);
    if (rc != SL_OK) {
        fail_op(b, rc == SL_ENOMEM ? SL_ENOMEM : SL_EIO);
        op_free(b);
    }
}

static void flush_batches(rconn *c)
{
    if (!c->nbatches) return;
    sl_state_op *todo[MAX_BATCHES];
    int n = c->nbatches;
    memcpy(todo, c->batch, sizeof(todo[0]) * (size_t)n);
    c->nbatches = 0; /* callbacks of failed batches may open new ones */
    for (int i = 0; i < n; i++) send_batch(c, todo[i]);
}

static void flush_hook(redisAsyncContext *ac)
{
    rconn *c = ac->data;
    if (c && c->ac == ac) flush_batches(c);
}

/* Fails the batches not sent yet (closing). */
static void fail_batches(rconn *c, int err)
{
    while (c->nbatches) {
        sl_state_op *b = c->batch[--c->nbatches];
        fail_op(b, err);
        op_free(b);
    }
}

/* PREFIX "rl:{" CONSUMER "}" into buf (at least SL_STATE_MAX_KEY + prefix + 8 bytes). */
static sl_str limit_key_of(const rconn *c, sl_str consumer, char *buf, size_t cap)
{
    sl_str pre = prefix_of(c);
    size_t n = SL_MIN(consumer.n, SL_STATE_MAX_KEY);
    if (pre.n + n + 5 > cap) return SL_STR_NULL;
    memcpy(buf, pre.p, pre.n);
    memcpy(buf + pre.n, "rl:{", 4);
    if (n) memcpy(buf + pre.n + 4, consumer.p, n);
    buf[pre.n + 4 + n] = '}';
    return (sl_str){buf, pre.n + 5 + n};
}

/* The open batch of key, or a new one. NULL when out of memory. */
static sl_state_op *batch_for(rconn *c, sl_str key)
{
    for (int i = 0; i < c->nbatches; i++) {
        const cmd *m = &c->batch[i]->cmd;
        if (m->keylen == key.n && memcmp(m->p + m->key, key.p, key.n) == 0) return c->batch[i];
    }
    if (c->nbatches == MAX_BATCHES) flush_batches(c);
    sl_state_op *b = op_new(c, OP_BATCH, limits_lua);
    if (!b) return NULL;
    script_head(&b->cmd, c->sha[SCRIPT_LIMITS], 1);
    char *p = arg_begin(&b->cmd, key.n);
    if (p) {
        memcpy(p, key.p, key.n);
        b->cmd.key = (size_t)(p - b->cmd.p), b->cmd.keylen = key.n;
    }
    c->batch[c->nbatches++] = b;
    sl_redis_uv_request_flush(c->ac);
    return b;
}

/* An operation's kind, amounts and window ids (left out, lower-case kind, when the operation before sent the same). */
static void op_head(sl_state_op *b, char kind, const int64_t amount[SL_MET_COUNT], const int64_t id[SL_WIN_COUNT])
{
    bool same = b->has_ids && memcmp(b->window_id, id, sizeof b->window_id) == 0;
    char k = same ? (char)(kind - 'A' + 'a') : kind;
    arg(&b->cmd, (sl_str){&k, 1});
    for (int i = 0; i < SL_MET_COUNT; i++) arg_i64(&b->cmd, amount[i]);
    if (same) return;
    window_args(&b->cmd, id);
    memcpy(b->window_id, id, sizeof b->window_id);
    b->has_ids = true;
}

/* An operation was added to b: send it now when full. */
static void batch_added(rconn *c, sl_state_op *b)
{
    if (++b->nops < BATCH_MAX_OPS && b->cmd.len < BATCH_MAX_BYTES) return;
    for (int i = 0; i < c->nbatches; i++)
        if (c->batch[i] == b) {
            c->batch[i] = c->batch[--c->nbatches];
            break;
        }
    send_batch(c, b);
}

static int r_reserve(sl_state *h, const sl_reserve *q, sl_reserve_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    char kb[SL_STATE_MAX_KEY + 256];
    sl_str key = limit_key_of(c, q->consumer, kb, sizeof kb);
    if (!key.p) return SL_ELIMIT;
    sl_state_op *op = op_new(c, OP_RESERVE, NULL), *b = op ? batch_for(c, key) : NULL;
    if (!b) {
        if (op) op_free(op);
        return SL_ENOMEM;
    }
    op->cb.reserve = cb, op->ud = ud;
    for (int w = 0; w < SL_WIN_COUNT; w++) op->window_id[w] = sl_window_id((sl_window)w, q->now_ms);
    memcpy(op->amount, q->amount, sizeof op->amount);
    cmd *m = &b->cmd;
    op_head(b, 'R', q->amount, op->window_id);
    char slots[SL_MET_COUNT * SL_WIN_COUNT];
    size_t n = 0;
    for (int i = 0; i < SL_MET_COUNT; i++)
        for (int w = 0; w < SL_WIN_COUNT; w++)
            if (q->limit[i][w] > 0) slots[n++] = (char)('a' + i * SL_WIN_COUNT + w);
    arg(m, (sl_str){slots, n});
    for (int i = 0; i < SL_MET_COUNT; i++)
        for (int w = 0; w < SL_WIN_COUNT; w++)
            if (q->limit[i][w] > 0) arg_i64(m, q->limit[i][w]);
    if (b->mtail) b->mtail->mnext = op;
    else b->mhead = op;
    b->mtail = op;
    if (out) *out = op;
    batch_added(c, b);
    return SL_OK;
}

/* Adds a settlement of key to its batch. */
static int settle_key(rconn *c, sl_str key, const int64_t id[SL_WIN_COUNT], const int64_t delta[SL_MET_COUNT])
{
    sl_state_op *b = batch_for(c, key);
    if (!b) return SL_ENOMEM;
    op_head(b, 'S', delta, id);
    batch_added(c, b);
    return SL_OK;
}

static int r_settle(sl_state *h, const sl_settle *s)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    if (!s->delta[SL_MET_REQUESTS] && !s->delta[SL_MET_TOKENS] && !s->delta[SL_MET_COST]) return SL_OK; /* nothing to add */
    char kb[SL_STATE_MAX_KEY + 256];
    sl_str key = limit_key_of(c, s->consumer, kb, sizeof kb);
    return key.p ? settle_key(c, key, s->window_id, s->delta) : SL_ELIMIT;
}

/* A reservation admitted after its caller stopped waiting: undo it (in the windows the script counted it in). */
static void give_back(rconn *c, sl_str key, const sl_state_op *op)
{
    int64_t delta[SL_MET_COUNT];
    for (int i = 0; i < SL_MET_COUNT; i++) delta[i] = -op->amount[i];
    if (!c->closing && c->ac) settle_key(c, key, op->window_id, delta);
}

static int r_usage(sl_state *h, sl_str consumer, int64_t now_ms, sl_usage_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    sl_state_op *op = op_new(c, OP_USAGE, usage_lua);
    if (!op) return SL_ENOMEM;
    op->cb.usage = cb, op->ud = ud;
    for (int w = 0; w < SL_WIN_COUNT; w++) op->window_id[w] = sl_window_id((sl_window)w, now_ms);
    script_head(&op->cmd, c->sha[SCRIPT_USAGE], 1);
    limit_key(&op->cmd, c, consumer);
    for (int w = 0; w < SL_WIN_COUNT; w++) arg_i64(&op->cmd, op->window_id[w]);
    return submit(c, op, out);
}

static sl_state_op *value_op(rconn *c, const char *lua, sl_value_cb cb, void *ud)
{
    sl_state_op *op = op_new(c, OP_VALUE, lua);
    if (op) op->cb.value = cb, op->ud = ud;
    return op;
}

static int r_get(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, NULL, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(&op->cmd, SL_STR("GET"));
    value_key(&op->cmd, c, key);
    return submit(c, op, out);
}

static int r_set(sl_state *h, sl_str key, sl_str value, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, NULL, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(&op->cmd, SL_STR("SET"));
    value_key(&op->cmd, c, key);
    arg(&op->cmd, value);
    if (ttl_ms) {
        arg(&op->cmd, SL_STR("PX"));
        arg_i64(&op->cmd, (int64_t)ttl_ms);
    }
    return submit(c, op, out);
}

static int r_incr(sl_state *h, sl_str key, int64_t by, uint64_t ttl_ms, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, incr_lua, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    script_head(&op->cmd, c->sha[SCRIPT_INCR], 1);
    value_key(&op->cmd, c, key);
    arg_i64(&op->cmd, by);
    arg_i64(&op->cmd, (int64_t)ttl_ms);
    return submit(c, op, out);
}

static int r_del(sl_state *h, sl_str key, sl_value_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    sl_state_op *op = !unusable(c) ? value_op(c, NULL, cb, ud) : NULL;
    if (!op) return !unusable(c) ? SL_ENOMEM : SL_EIO;
    arg(&op->cmd, SL_STR("DEL"));
    value_key(&op->cmd, c, key);
    return submit(c, op, out);
}

static int r_eval(sl_state *h, const sl_state_script *s, const sl_str *keys, size_t nkeys, const sl_str *args,
                  size_t nargs, sl_items_cb cb, void *ud, sl_state_op **out)
{
    rconn *c = (rconn *)h;
    if (unusable(c)) return SL_EIO;
    sl_state_op *op = op_new(c, OP_ITEMS, s->lua);
    if (!op) return SL_ENOMEM;
    op->cb.items = cb, op->ud = ud;
    script_head(&op->cmd, s->sha1, (int)nkeys);
    for (size_t i = 0; i < nkeys; i++)
        arg3(&op->cmd, prefix_of(c), SL_STR_NULL, (sl_str){keys[i].p, SL_MIN(keys[i].n, SL_STATE_MAX_KEY)});
    for (size_t i = 0; i < nargs; i++) arg(&op->cmd, args[i]);
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
    fail_batches(c, SL_ECLOSED);
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
