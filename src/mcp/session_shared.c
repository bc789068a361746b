/*
 * session_shared.c: where the session of one exchange is read, written and
 * ended (mcp_int.h, "session store of an exchange").
 *
 * With state.backend redis, Streamable HTTP sessions are one Redis value
 * each, PREFIX "mcp:s:" ID holding the JSON record of jsonrpc.c, with the
 * session TTL, which every read extends; so any instance sharing the Redis
 * serves any session. A sorted set, PREFIX "mcp:sessions" (member: the
 * record's key, score: its expiry in ms since the epoch), bounds how many
 * there are by mcp.max_sessions across all instances. Every call is one Lua
 * script on this worker's sl_state handle (gw->state, opened on first use as
 * the rate limiter does and shared with it); the exchange waits for the
 * reply on its worker and cancels the call if its client goes away.
 *
 * With state.backend memory, and for legacy SSE sessions (they live with the
 * stream that carries them, on one instance), the process's store (session.h).
 *
 * Redis failing (down, slow, an error answer) follows state.redis.on_error:
 *   allow  the call goes to the memory store instead: a new session is kept
 *          on this instance; a session only Redis knows is not found (404:
 *          the client starts a new one); a DELETE of one gets 503 (it may
 *          still exist in Redis).
 *   deny   503 for every request that needs its session.
 * Both are logged once per outage and counted as
 * sluice_state_errors_total{backend="redis",on_error="mcp"}. Sessions kept
 * locally during an outage are still served by this instance once Redis is
 * back: a read or DELETE that Redis answers with "none" looks locally too.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "core/log.h"
#include "gateway/metrics.h"
#include "mcp/mcp_int.h"
#include "state/state.h"

enum { OP_GET = 0, OP_PUT, OP_DEL };

#define MAX_TTL_MS (366ull * 24 * 3600 * 1000)

struct mcp_sess_op {
    sl_gw_req *r;
    int kind;
    sl_str sid, value;  /* arena copies */
    bool create;
    bool retried;       /* once after SL_ECLOSED (the handle was replaced by a reload) */
    bool redis_failed;  /* the memory store answers in Redis' stead */
    sl_mcp_store_cb cb;
    void *ud;
    mcp_sess_op **pending;
    sl_state_op *sop;
};

/* KEYS: record, index. ARGV: ttl ms, expiry. The record or nil; a read extends its life. */
static const char get_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return false end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[1])\n"
    "return v\n";

/*
 * KEYS: record, index. ARGV: value, ttl ms, expiry, now, max (0 = none),
 * create (1: a new session, refused when max are alive; 0: an update, refused
 * when the session is gone, so that a session ended elsewhere stays ended).
 * Returns 1 stored, 0 full, -1 gone.
 */
static const char put_lua[] =
    "if ARGV[6] == '1' then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])\n"
    "  local max = tonumber(ARGV[5])\n"
    "  if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then return 0 end\n"
    "elseif redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return -1\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "return 1\n";

/* KEYS: record, index. Returns how many records were deleted (0 or 1). */
static const char del_lua[] =
    "redis.call('ZREM', KEYS[2], KEYS[1])\n"
    "return redis.call('DEL', KEYS[1])\n";

static uv_once_t scripts_once = UV_ONCE_INIT;
static sl_state_script scripts[3];
static atomic_bool redis_down;

static void scripts_init(void)
{
    sl_state_script_init(&scripts[OP_GET], get_lua);
    sl_state_script_init(&scripts[OP_PUT], put_lua);
    sl_state_script_init(&scripts[OP_DEL], del_lua);
}

/* The worker's state handle, opened (or reopened after a reload changed `state`) on first use. */

static bool shared(const sl_gw_req *r, bool want) { return want && r->cfg->state.backend == SL_STATE_REDIS; }

static void finish(mcp_sess_op *op, int rc, sl_str value)
{
    if (*op->pending == op) *op->pending = NULL;
    op->cb(op->ud, rc, value);
}

static void on_local(void *ud, int rc, sl_str value)
{
    mcp_sess_op *op = ud;
    /* A DELETE Redis could not answer: not knowing the session here does not mean it is gone. */
    if (op->kind == OP_DEL && op->redis_failed && rc == SL_ENOTFOUND) rc = SL_EIO;
    finish(op, rc, value);
}

/* The same call on the memory store (answers before it returns). */
static void run_local(mcp_sess_op *op)
{
    const sl_mcp_cfg *mc = op->r->cfg->mcp;
    sl_mcp_store *st = sl_mcp_store_get();
    if (op->kind == OP_GET) st->ops->get(st->self, op->sid, mc->session_ttl_ms, on_local, op);
    else if (op->kind == OP_PUT) st->ops->put(st->self, op->sid, op->value, mc->session_ttl_ms, mc->max_sessions, on_local, op);
    else st->ops->del(st->self, op->sid, on_local, op);
}

static void redis_failed(mcp_sess_op *op, int err)
{
    bool deny = op->r->cfg->state.redis.on_error == SL_ON_ERROR_DENY;
    if (err != SL_ECLOSED) /* a handle closed under the call (reload, stop) is no outage */
        sl_metrics_state_error(op->r->gw->w, "redis", "mcp");
    if (err != SL_ECLOSED && !atomic_exchange(&redis_down, true))
        sl_warn("mcp: the session store in redis failed (%s); %s until it answers again", sl_strerror(err),
                deny ? "requests that need a session get 503" : "new sessions are kept on this instance");
    if (deny) {
        finish(op, SL_EIO, SL_STR_NULL);
        return;
    }
    op->redis_failed = true;
    run_local(op);
}

static int start_redis(mcp_sess_op *op, sl_state *st);

static void on_reply(void *ud, int err, const sl_state_item *it, size_t n)
{
    mcp_sess_op *op = ud;
    op->sop = NULL;
    /* The handle was replaced by one for a reloaded config: once more on the new one (none: the worker stops). */
    sl_state *next = op->r->gw->state;
    if (err == SL_ECLOSED && !op->retried && next) {
        op->retried = true;
        if (start_redis(op, next) == SL_OK) return;
    }
    if (err == SL_OK && (n != 1 || (op->kind != OP_GET) != it[0].is_int)) err = SL_EPARSE;
    if (err != SL_OK) {
        redis_failed(op, err);
        return;
    }
    if (atomic_exchange(&redis_down, false)) sl_info("mcp: the session store in redis answers again");
    if (op->kind == OP_GET) {
        if (it[0].s.n) finish(op, SL_OK, it[0].s);
        else run_local(op); /* a session kept here while Redis was down, or none */
    } else if (op->kind == OP_PUT) {
        finish(op, it[0].num == 1 ? SL_OK : it[0].num == 0 ? SL_ELIMIT : SL_ENOTFOUND, SL_STR_NULL);
    } else {
        if (it[0].num > 0) finish(op, SL_OK, SL_STR_NULL);
        else run_local(op);
    }
}

/* Sends op's script on st; SL_OK when the reply will come to on_reply. */
static int start_redis(mcp_sess_op *op, sl_state *st)
{
    if (!st) return SL_ENOMEM;
    const sl_mcp_cfg *mc = op->r->cfg->mcp;
    char key[16 + 160], ttl[24], exp[24], now[24], max[24];
    int kn = snprintf(key, sizeof key, "mcp:s:%.*s", (int)op->sid.n, op->sid.p);
    if (kn < 0 || (size_t)kn >= sizeof key) return SL_EINVAL;
    int64_t t = sl_state_now_ms();
    uint64_t ttl_ms = SL_MAX(SL_MIN(mc->session_ttl_ms, MAX_TTL_MS), 1); /* what PX accepts, whatever the config */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    snprintf(exp, sizeof exp, "%lld", (long long)(t + (int64_t)ttl_ms));
    snprintf(now, sizeof now, "%lld", (long long)t);
    snprintf(max, sizeof max, "%llu", (unsigned long long)mc->max_sessions);
    sl_str keys[2] = {{key, (size_t)kn}, SL_STR("mcp:sessions")};
    sl_str args[6];
    size_t nargs = 0;
    if (op->kind == OP_GET) {
        args[nargs++] = sl_str_from_cstr(ttl);
        args[nargs++] = sl_str_from_cstr(exp);
    } else if (op->kind == OP_PUT) {
        args[nargs++] = op->value;
        args[nargs++] = sl_str_from_cstr(ttl);
        args[nargs++] = sl_str_from_cstr(exp);
        args[nargs++] = sl_str_from_cstr(now);
        args[nargs++] = sl_str_from_cstr(max);
        args[nargs++] = op->create ? SL_STR("1") : SL_STR("0");
    }
    uv_once(&scripts_once, scripts_init);
    return sl_state_eval(st, &scripts[op->kind], keys, 2, args, nargs, on_reply, op, &op->sop);
}

static void start(sl_gw_req *r, int kind, sl_str sid, sl_str value, bool create, sl_mcp_store_cb cb, void *ud,
                  mcp_sess_op **pending)
{
    sl_arena *a = &r->hx->arena;
    mcp_sess_op *op = sl_arena_calloc(a, sizeof *op);
    char *sc = op ? sl_arena_strndup(a, sid.p, sid.n) : NULL;
    char *vc = sc && kind == OP_PUT ? sl_arena_strndup(a, value.p ? value.p : "", value.n) : sc;
    if (!op || !sc || !vc) {
        cb(ud, SL_ENOMEM, SL_STR_NULL);
        return;
    }
    op->r = r, op->kind = kind, op->create = create, op->cb = cb, op->ud = ud, op->pending = pending;
    op->sid = (sl_str){sc, sid.n};
    if (kind == OP_PUT) op->value = (sl_str){vc, value.n};
    int rc = start_redis(op, sl_gw_state(r));
    if (rc == SL_OK) {
        *pending = op;
        return;
    }
    redis_failed(op, rc);
}

void sl_mcp_sess_get(sl_gw_req *r, bool want_shared, sl_str sid, sl_mcp_store_cb cb, void *ud, mcp_sess_op **pending)
{
    if (shared(r, want_shared)) {
        start(r, OP_GET, sid, SL_STR_NULL, false, cb, ud, pending);
        return;
    }
    sl_mcp_store *st = sl_mcp_store_get();
    st->ops->get(st->self, sid, r->cfg->mcp->session_ttl_ms, cb, ud);
}

void sl_mcp_sess_put(sl_gw_req *r, bool want_shared, sl_str sid, sl_str value, bool create, sl_mcp_store_cb cb, void *ud,
                     mcp_sess_op **pending)
{
    if (shared(r, want_shared)) {
        start(r, OP_PUT, sid, value, create, cb, ud, pending);
        return;
    }
    const sl_mcp_cfg *mc = r->cfg->mcp;
    sl_mcp_store *st = sl_mcp_store_get();
    st->ops->put(st->self, sid, value, mc->session_ttl_ms, mc->max_sessions, cb, ud);
}

void sl_mcp_sess_del(sl_gw_req *r, bool want_shared, sl_str sid, sl_mcp_store_cb cb, void *ud, mcp_sess_op **pending)
{
    if (shared(r, want_shared)) {
        start(r, OP_DEL, sid, SL_STR_NULL, false, cb, ud, pending);
        return;
    }
    sl_mcp_store *st = sl_mcp_store_get();
    st->ops->del(st->self, sid, cb, ud);
}

void sl_mcp_sess_cancel(mcp_sess_op **pending)
{
    mcp_sess_op *op = *pending;
    if (!op) return;
    *pending = NULL;
    sl_state_cancel(op->sop); /* its reply is dropped; op lives in the exchange's arena */
    op->sop = NULL;
}
