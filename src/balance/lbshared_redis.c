/*
 * lbshared_redis.c: with state.backend: redis, the prefix index and the
 * in-flight counts of prefix_cache, metrics and least_request models are
 * shared by every gateway instance using the same Redis (docs/balancing.md,
 * "Several instances").
 *
 * Picks stay synchronous and local: they read this process's index and
 * counts, which a sync round brings up to date every SL_LBSHARE_INTERVAL_MS
 * (eventually consistent, one round behind at most). A round is one Lua
 * script per model, run by one worker of the process (the one whose tick
 * claims it), which atomically:
 *
 *   1. appends this process's batch of index inserts since the last round to
 *      the model's log, a ring of SL_LBSHARE_RING entries in one hash
 *      (field "seq" numbers them; entry i lives in field "e" i % ring);
 *   2. reads the entries after this process's cursor (at most
 *      SL_LBSHARE_READ_MAX; a cursor that fell more than a ring behind skips
 *      what was overwritten); the first round reads the whole ring, so a new
 *      instance starts with the others' affinity. A log is named by a random
 *      epoch set by whoever created it: when it is not the one the cursor
 *      counts in (Redis restarted or flushed, the log expired), the cursor
 *      starts over at that log's beginning;
 *   3. writes this process's in-flight counts per target (absolute numbers,
 *      not deltas: nothing drifts when a round is lost) under its instance
 *      id, stamped with Redis' clock, and returns the sum of the other
 *      instances' counts stamped within SL_LBSHARE_COUNT_TTL_MS; older ones
 *      (a crashed instance) are deleted.
 *
 * An insert is published as the blocks that were new to this process's index
 * for that target (the leading SL_LBSHARE_RECORD_MAX of them): a later turn of
 * a conversation costs only its new blocks. Entries of this instance are read
 * back and skipped.
 *
 * When Redis does not answer, the round fails: the remote counts are dropped
 * at once (loads are this process's own), the batch is lost, the failure is
 * logged once per outage and counted (sluice_state_errors_total with
 * on_error="balance"); picks go on from the local index, which keeps
 * learning from this instance's own picks. The next good round resumes.
 *
 * Keys (after state.redis.key_prefix): lb:{SIG}:log and lb:{SIG}:if, SIG the
 * model's signature (lbshared.c) in hex: one Redis Cluster slot per model.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "balance/failover.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "gateway/metrics.h"
#include "state/state.h"

#define TICK_MS 10
#define HEADER_BYTES 10   /* "P", version, instance id */
#define RECORD_HEAD 4     /* target, n */

/* ---------------------------------------------------------------- instance id */

static pthread_once_t id_once = PTHREAD_ONCE_INIT;
static uint64_t instance_id;

static void make_id(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
        close(fd);
    }
    /* no urandom: time and pid, mixed; two instances colliding would only skip each other's entries */
    if (!v) v = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) * 0x9e3779b97f4a7c15ull;
    instance_id = v ? v : 1;
}

uint64_t sl_lbshare_instance(void)
{
    pthread_once(&id_once, make_id);
    return instance_id;
}

/* ---------------------------------------------------------------- encoding */

static void put_le(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int sl_lbshare_encode(sl_buf *batch, uint64_t instance, uint32_t target, const uint64_t *h, size_t n)
{
    if (n == 0 || n > SL_LBSHARE_RECORD_MAX || target > UINT16_MAX) return SL_EINVAL;
    size_t need = RECORD_HEAD + 8 * n + (batch->len ? 0 : HEADER_BYTES);
    if (batch->len + need > batch->max) return SL_ELIMIT;
    if (sl_buf_reserve(batch, need) != SL_OK) return SL_ENOMEM;
    unsigned char *p = (unsigned char *)batch->p + batch->len;
    if (!batch->len) {
        p[0] = 'P', p[1] = 1;
        put_le(p + 2, instance, 8);
        p += HEADER_BYTES;
    }
    put_le(p, target, 2);
    put_le(p + 2, n, 2);
    for (size_t i = 0; i < n; i++) put_le(p + RECORD_HEAD + 8 * i, h[i], 8);
    batch->len += need;
    return SL_OK;
}

int sl_lbshare_apply(sl_prefix_index *ix, uint32_t ntargets, sl_str batch, uint64_t self, size_t *records)
{
    *records = 0;
    const unsigned char *p = (const unsigned char *)batch.p;
    if (batch.n < HEADER_BYTES || p[0] != 'P' || p[1] != 1) return SL_EPARSE;
    if (get_le(p + 2, 8) == self) return SL_OK; /* our own, read back */
    size_t pos = HEADER_BYTES;
    uint64_t h[SL_LBSHARE_RECORD_MAX];
    while (pos < batch.n) {
        if (batch.n - pos < RECORD_HEAD) return SL_EPARSE;
        uint32_t target = (uint32_t)get_le(p + pos, 2);
        size_t n = (size_t)get_le(p + pos + 2, 2);
        pos += RECORD_HEAD;
        if (n == 0 || n > SL_LBSHARE_RECORD_MAX || (batch.n - pos) / 8 < n) return SL_EPARSE;
        for (size_t i = 0; i < n; i++) h[i] = get_le(p + pos + 8 * i, 8);
        pos += 8 * n;
        if (target >= ntargets) continue; /* another instance's model of the same name with more targets: cannot be */
        sl_prefix_insert(ix, h, n, target);
        (*records)++;
    }
    return SL_OK;
}

int sl_lbshare_format_counts(sl_buf *out, const int64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i && sl_buf_append(out, " ", 1) != SL_OK) return SL_ENOMEM;
        if (sl_buf_append_u64(out, v[i] > 0 ? (uint64_t)v[i] : 0) != SL_OK) return SL_ENOMEM;
    }
    return SL_OK;
}

int sl_lbshare_parse_counts(sl_str s, int64_t *out, size_t n)
{
    memset(out, 0, n * sizeof *out);
    size_t k = 0, i = 0;
    while (i < s.n) {
        if (s.p[i] == ' ') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < s.n && s.p[j] != ' ') j++;
        uint64_t v;
        if (sl_str_to_u64((sl_str){s.p + i, j - i}, INT64_MAX, &v) != SL_OK) return SL_EPARSE;
        if (k < n) out[k] = (int64_t)v;
        k++;
        i = j;
    }
    return SL_OK;
}

void sl_lbshare_record(sl_lb_model *lm, uint32_t target, const uint64_t *h, size_t n)
{
    if (!lm->shared || !n) return;
    pthread_mutex_lock(&lm->out_lock);
    if (sl_lbshare_encode(&lm->outbox, sl_lbshare_instance(), target, h, n) != SL_OK) lm->dropped++;
    pthread_mutex_unlock(&lm->out_lock);
}

bool sl_lbshare_remote_fresh(sl_lb_model *lm, uint64_t now_ms)
{
    if (!lm->shared) return false;
    uint64_t at = atomic_load_explicit(&lm->remote_at_ms, memory_order_relaxed);
    return at && now_ms >= at && now_ms - at <= SL_LBSHARE_STALE_MS;
}

/* ---------------------------------------------------------------- the round script */

/*
 * KEYS: log hash, counts hash. ARGV: instance id, batch ('' = none), cursor
 * (-1 = first round), ring, read max, log ttl ms, counts, counts ttl ms, the
 * epoch the cursor counts in, an epoch for a log this round creates.
 * Returns {cursor after, entries skipped, others' counts, epoch, entries...}.
 */
static const char round_lua[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local ring, rmax = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')\n"
    "local ep = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "if #ARGV[2] > 0 and ep == '' then ep = ARGV[10]; redis.call('HSET', KEYS[1], 'epoch', ep) end\n"
    "if #ARGV[2] > 0 then\n"
    "  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)\n"
    "  redis.call('HSET', KEYS[1], 'e' .. (seq % ring), ARGV[2])\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
    "end\n"
    "local cur, lost = tonumber(ARGV[3]), 0\n"
    "if cur < 0 or cur > seq or ep ~= ARGV[9] then cur = math.max(seq - ring, 0)\n"
    "elseif seq - cur > ring then lost = seq - ring - cur; cur = seq - ring end\n"
    "local to = math.min(seq, cur + rmax)\n"
    "local out = {to, lost, '', ep}\n"
    "for i = cur + 1, to do\n"
    "  local e = redis.call('HGET', KEYS[1], 'e' .. (i % ring))\n"
    "  if e then out[#out + 1] = e end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[8])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', now) .. ' ' .. ARGV[7])\n"
    "redis.call('PEXPIRE', KEYS[2], ttl)\n"
    "local all = redis.call('HGETALL', KEYS[2])\n"
    "local sums = {}\n"
    "for i = 1, #all, 2 do\n"
    "  local ts, rest = string.match(all[i + 1], '^(%d+) ?(.*)$')\n"
    "  if not ts or now - tonumber(ts) > ttl then redis.call('HDEL', KEYS[2], all[i])\n"
    "  elseif all[i] ~= ARGV[1] then\n"
    "    local k = 1\n"
    "    for w in string.gmatch(rest, '%d+') do sums[k] = (sums[k] or 0) + tonumber(w); k = k + 1 end\n"
    "  end\n"
    "end\n"
    "local s = {}\n"
    "for k = 1, #sums do s[k] = string.format('%d', sums[k] or 0) end\n"
    "out[3] = table.concat(s, ' ')\n"
    "return out\n";

static pthread_once_t script_once = PTHREAD_ONCE_INIT;
static sl_state_script round_script;

static void init_script(void) { sl_state_script_init(&round_script, round_lua); }

/* ---------------------------------------------------------------- rounds */

struct sl_lbsync {
    sl_gw_worker *gw;
    uv_timer_t tick;
    sl_config *cfg;       /* one reference, or NULL */
    sl_state *st;         /* this worker's Redis handle for the rounds; NULL when not shared */
};

typedef struct round {
    struct sl_lbsync *s;
    sl_lb_model *lm;      /* one reference */
} round;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000ull; }

static void drop_remote(sl_lb_model *lm)
{
    atomic_store_explicit(&lm->remote_at_ms, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < lm->ntargets; i++) atomic_store_explicit(&lm->t[i].remote, 0, memory_order_relaxed);
}

static void round_failed(round *rd, int err)
{
    sl_lb_model *lm = rd->lm;
    drop_remote(lm);
    if (err == SL_ECLOSED) return; /* the handle closed under it (reload, shutdown): not Redis' fault */
    sl_metrics_state_error(rd->s->gw->w, "redis", "balance");
    if (!atomic_exchange(&lm->share_down, true))
        sl_warn("balance: sharing state through redis failed (%s); balancing on this instance's own state until "
                "it answers again", sl_strerror(err));
}

int sl_lbshare_round_apply(sl_lb_model *lm, uint64_t instance, const sl_state_item *it, size_t n, uint64_t now)
{
    if (n < 4 || !it[0].is_int || !it[1].is_int || it[2].is_int || it[3].is_int || it[3].s.n >= sizeof lm->epoch)
        return SL_EPARSE;
    int64_t sums[SL_BAL_MAX_PICK];
    size_t nt = SL_MIN((size_t)lm->ntargets, SL_ARRAY_LEN(sums));
    if (sl_lbshare_parse_counts(it[2].s, sums, nt) != SL_OK) return SL_EPARSE;
    size_t bad = 0, records = 0;
    for (size_t i = 4; i < n && lm->ix; i++) {
        size_t got = 0;
        if (sl_lbshare_apply(lm->ix, lm->ntargets, it[i].s, instance, &got) != SL_OK) bad++;
        records += got;
    }
    lm->cursor = it[0].num;
    memcpy(lm->epoch, it[3].s.p ? it[3].s.p : "", it[3].s.n);
    lm->epoch[it[3].s.n] = '\0';
    for (size_t i = 0; i < nt; i++) atomic_store_explicit(&lm->t[i].remote, sums[i], memory_order_relaxed);
    atomic_store_explicit(&lm->remote_at_ms, now ? now : 1, memory_order_relaxed);
    if (it[1].num > 0 || bad)
        sl_debug("balance: redis log: %" PRId64 " entries skipped (fell behind), %zu malformed", it[1].num, bad);
    if (records) sl_debug("balance: applied %zu index inserts of other instances", records);
    return SL_OK;
}

static void on_round(void *ud, int err, const sl_state_item *it, size_t n)
{
    round *rd = ud;
    if (err == SL_OK) err = sl_lbshare_round_apply(rd->lm, sl_lbshare_instance(), it, n, now_ms());
    if (err != SL_OK) round_failed(rd, err);
    else if (atomic_exchange(&rd->lm->share_down, false)) sl_info("balance: sharing state through redis again");
    atomic_store(&rd->lm->syncing, false);
    sl_lb_model_put(rd->lm);
    sl_free(rd);
}

/* Takes the outbox (the inserts since the last round). */
static void take_outbox(sl_lb_model *lm, sl_buf *batch)
{
    pthread_mutex_lock(&lm->out_lock);
    *batch = lm->outbox;
    sl_buf_init(&lm->outbox, SL_LBSHARE_BATCH_MAX);
    if (lm->dropped) sl_debug("balance: %" PRIu64 " index inserts did not fit in a round's batch", lm->dropped);
    lm->dropped = 0;
    pthread_mutex_unlock(&lm->out_lock);
}

int sl_lbshare_round_start(sl_state *st, sl_lb_model *lm, uint64_t instance, sl_items_cb cb, void *ud)
{
    pthread_once(&script_once, init_script);
    sl_buf batch, counts;
    take_outbox(lm, &batch); /* a round that fails loses it: Redis is down, the others cannot learn it anyway */
    sl_buf_init(&counts, 8192);
    int64_t mine[SL_BAL_MAX_PICK];
    size_t nt = SL_MIN((size_t)lm->ntargets, SL_ARRAY_LEN(mine));
    for (size_t i = 0; i < nt; i++) mine[i] = atomic_load_explicit(&lm->t[i].inflight, memory_order_relaxed);
    char id[24], cur[24], ring[16], rmax[16], lttl[24], cttl[24], klog[64], kif[64], fresh[24];
    snprintf(id, sizeof id, "%016" PRIx64, instance);
    snprintf(fresh, sizeof fresh, "%016" PRIx64, (uint64_t)((instance ^ uv_hrtime()) * 0x9e3779b97f4a7c15ull));
    snprintf(cur, sizeof cur, "%" PRId64, lm->cursor);
    snprintf(ring, sizeof ring, "%d", SL_LBSHARE_RING);
    snprintf(rmax, sizeof rmax, "%d", SL_LBSHARE_READ_MAX);
    snprintf(lttl, sizeof lttl, "%d", SL_LBSHARE_LOG_TTL_MS);
    snprintf(cttl, sizeof cttl, "%d", SL_LBSHARE_COUNT_TTL_MS);
    snprintf(klog, sizeof klog, "lb:{%016" PRIx64 "}:log", lm->share_sig);
    snprintf(kif, sizeof kif, "lb:{%016" PRIx64 "}:if", lm->share_sig);
    int rc = sl_lbshare_format_counts(&counts, mine, nt);
    if (rc == SL_OK) {
        sl_str keys[2] = {sl_str_from_cstr(klog), sl_str_from_cstr(kif)};
        sl_str args[10] = {sl_str_from_cstr(id),   sl_buf_str(&batch),     sl_str_from_cstr(cur),
                           sl_str_from_cstr(ring), sl_str_from_cstr(rmax), sl_str_from_cstr(lttl),
                           sl_buf_str(&counts),    sl_str_from_cstr(cttl), sl_str_from_cstr(lm->epoch),
                           sl_str_from_cstr(fresh)};
        if (!args[1].p) args[1] = SL_STR("");
        if (!args[6].p) args[6] = SL_STR("");
        rc = sl_state_eval(st, &round_script, keys, 2, args, 10, cb, ud, NULL);
    }
    sl_buf_free(&batch);
    sl_buf_free(&counts);
    return rc;
}

static void start_round(struct sl_lbsync *s, sl_lb_model *lm)
{
    round *rd = sl_calloc(1, sizeof *rd);
    int rc = SL_ENOMEM;
    if (rd) {
        rd->s = s, rd->lm = lm;
        atomic_fetch_add(&lm->refs, 1);
        rc = sl_lbshare_round_start(s->st, lm, sl_lbshare_instance(), on_round, rd);
        if (rc == SL_OK) return; /* on_round ends it */
        sl_lb_model_put(lm);
        round_failed(rd, rc);
        sl_free(rd);
    }
    atomic_store(&lm->syncing, false);
}

static void on_tick(uv_timer_t *t)
{
    struct sl_lbsync *s = t->data;
    sl_balancer *b = &s->gw->bal;
    if (!s->cfg || !s->st || s->gw->w->stopping || b->cfg != s->cfg || !b->lbm) return;
    uint64_t now = now_ms();
    for (size_t mi = 0; mi < s->cfg->nmodels; mi++) {
        sl_lb_model *lm = b->lbm[mi];
        if (!lm || !lm->shared) continue;
        uint64_t next = atomic_load_explicit(&lm->next_sync_ms, memory_order_relaxed);
        if (now < next) continue;
        /* one worker per model and round: the one whose swap succeeds, and only when the last round is over */
        if (!atomic_compare_exchange_strong(&lm->next_sync_ms, &next, now + SL_LBSHARE_INTERVAL_MS)) continue;
        bool idle = false;
        if (!atomic_compare_exchange_strong(&lm->syncing, &idle, true)) continue;
        start_round(s, lm);
    }
}

struct sl_lbsync *sl_lbsync_new(sl_gw_worker *gw)
{
    /* The script's hash is made by the first round (sl_lbshare_round_start):
     * hashing here would start OpenSSL (~2 MB RSS) in every worker even
     * when nothing is shared through Redis. */
    struct sl_lbsync *s = sl_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->gw = gw;
    uv_timer_init(&gw->w->loop, &s->tick);
    s->tick.data = s;
    return s;
}

static bool any_shared(const sl_config *cfg)
{
    if (cfg->state.backend != SL_STATE_REDIS) return false;
    for (size_t i = 0; i < cfg->nmodels; i++)
        if (sl_lb_needs_state(cfg->models[i].balance, true)) return true;
    return false;
}

void sl_lbsync_configure(struct sl_lbsync *s, sl_config *cfg)
{
    if (!s || s->cfg == cfg) return;
    if (s->cfg) sl_config_release(s->cfg);
    s->cfg = sl_config_retain(cfg);
    if (!any_shared(cfg)) {
        uv_timer_stop(&s->tick);
        sl_state_close(s->st); /* rounds in flight end with SL_ECLOSED */
        s->st = NULL;
        return;
    }
    if (!s->st || !sl_state_same_config(s->st, &cfg->state)) {
        sl_state *next = sl_state_open(&s->gw->w->loop, &cfg->state);
        if (next || !s->st) {
            sl_state *old = s->st;
            s->st = next;
            sl_state_close(old);
        }
        if (!s->st) sl_warn("worker %d: out of memory opening redis for balancing; not sharing", s->gw->w->id);
    }
    uv_timer_start(&s->tick, on_tick, 0, TICK_MS);
}

static void on_tick_closed(uv_handle_t *h) { sl_free(h->data); }

void sl_lbsync_free(struct sl_lbsync *s)
{
    if (!s) return;
    uv_timer_stop(&s->tick);
    sl_state_close(s->st);
    s->st = NULL;
    if (s->cfg) sl_config_release(s->cfg);
    s->cfg = NULL;
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
}
