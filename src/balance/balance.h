/*
 * balance.h: where an upstream attempt goes, and what the gateway learns from
 * how it went (docs/resilience.md).
 *
 * One sl_balancer per worker, sized per configuration snapshot. It keeps, for
 * every target of every model: the smooth weighted round-robin cursor, the
 * requests in flight, a peak-EWMA of time to first byte, and the outlier
 * state (consecutive failures, ejection with exponential time, half-open
 * trial); for every key of every provider: a bench (cool-down after 401, 403
 * or 429, honouring retry-after); for every provider: the active probe
 * verdict; for every model: a retry budget over the last 10 seconds.
 *
 * Per worker, not shared: the request path takes no lock and touches no
 * shared cache line. The price is that each worker learns on its own (a
 * failing target is ejected by each worker after its own failures); with
 * SO_REUSEPORT spreading connections that costs a few requests per worker.
 * The few fields the admin thread reads for sluice_upstream_healthy are
 * atomics, and the arrays are swapped under `lock`, which the request path
 * never takes.
 *
 * Nothing here reads a clock: callers pass now (milliseconds or nanoseconds
 * of a monotonic clock), so the unit tests drive time.
 */
#ifndef SL_BALANCE_H
#define SL_BALANCE_H

#include <pthread.h>
#include <stdatomic.h>

#include "config/config.h"
#include "core/buf.h"

#define SL_BAL_BUDGET_SLOTS 10      /* one second each: the retry budget's window */
#define SL_BAL_EWMA_TAU_NS 10000000000ull /* peak-EWMA decay constant: 10 s */
#define SL_BAL_MAX_PICK 256         /* targets considered by one pick (models[].targets max_items) */

typedef struct sl_bal_target {
    int64_t wrr;                    /* smooth weighted round-robin current weight */
    uint32_t inflight;
    uint32_t fails;                 /* consecutive failures */
    uint32_t oks;                   /* consecutive successes (reset the ejection count) */
    uint32_t ejections;             /* ejections in a row: the next lasts base << ejections */
    bool trial;                     /* half-open: one trial request is in flight */
    _Atomic uint64_t ejected_until; /* ms; 0 = in service; past = half-open */
    uint64_t ewma_ns;               /* peak-EWMA of time to first byte; 0 = no sample yet */
    uint64_t ewma_at_ns;            /* when it was last updated */
} sl_bal_target;

typedef struct sl_bal_key {
    _Atomic uint64_t benched_until; /* ms; 0 = usable */
    uint32_t strikes;               /* benches in a row (doubles the cool-down) */
} sl_bal_key;

typedef struct sl_bal_provider {
    uint32_t key_base;              /* first of this provider's keys in keys[] (max(1, napi_keys) of them) */
    uint32_t nkeys;
    uint32_t key_cursor;            /* rotation */
    uint32_t probe_fails;           /* consecutive failed active probes */
    _Atomic bool probe_down;
} sl_bal_provider;

typedef struct sl_bal_model {
    uint32_t target_base;           /* first of this model's targets in targets[] */
    uint32_t cursor;                /* rotation among equals (least_request ties) */
    uint64_t slot_sec[SL_BAL_BUDGET_SLOTS];
    uint32_t requests[SL_BAL_BUDGET_SLOTS];
    uint32_t retries[SL_BAL_BUDGET_SLOTS];
} sl_bal_model;

struct sl_lb_model;
struct sl_scraper;
struct sl_lbsync;

typedef struct sl_balancer {
    pthread_mutex_t lock;           /* swap of the arrays vs. sl_bal_health() readers */
    sl_config *cfg;                 /* the snapshot the arrays are sized for (one reference), or NULL */
    sl_bal_model *models;
    sl_bal_target *targets;
    sl_bal_provider *providers;
    sl_bal_key *keys;
    size_t nmodels, ntargets, nproviders, nkeys;
    struct sl_lb_model **lbm;       /* per model: process-wide state of prefix_cache/metrics models, else NULL */
    struct sl_scraper *scraper;     /* engine metrics (metrics_scrape.c); NULL outside a gateway worker */
    struct sl_lbsync *sync;         /* Redis sharing (lbshared_redis.c); NULL outside a gateway worker */
    uint64_t rng;
} sl_balancer;

int sl_balancer_init(sl_balancer *b, uint64_t seed);
void sl_balancer_free(sl_balancer *b);
/*
 * Sizes the state for cfg (takes a reference; drops the old one). Health
 * carries over by name: a provider's key benches and probe verdict, and a
 * model's target outlier state and latency when its target list kept its
 * length. On SL_ENOMEM the old state stays (callers then see a snapshot
 * mismatch and every function below degrades to stateless choices).
 */
int sl_balancer_configure(sl_balancer *b, sl_config *cfg);
uint64_t sl_bal_rand(sl_balancer *b);

/* ---- choosing (pick.c) ---- */

/*
 * A target of m for the next attempt, by m->balance, among those not in
 * tried (bit i = targets[i]; targets past 63 are never excluded) and in
 * service: not ejected (an expired ejection admits one trial at a time), the
 * provider not down by active probes, and some key of the provider not
 * benched. SL_OK with *target, or SL_ENOTFOUND with *wait_ms = the time until
 * the first untried target comes back (0 when every target was tried).
 */
int sl_bal_pick(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t tried, uint64_t now_ms,
                uint32_t *target, uint64_t *wait_ms);
/* What the request tells the LLM-aware balancers: the chained block hashes of its prompt (prefix.c). */
typedef struct sl_bal_hint {
    const uint64_t *hashes;
    size_t nhashes;
} sl_bal_hint;
/* sl_bal_pick with a hint (NULL = none); prefix_cache records the chosen target for the hint's blocks. */
int sl_bal_pick_hint(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, const sl_bal_hint *hint,
                     uint64_t tried, uint64_t now_ms, uint32_t *target, uint64_t *wait_ms);
/* A key index of p, rotated, skipping benched keys and those in tried. Same results as sl_bal_pick. */
int sl_bal_pick_key(sl_balancer *b, const sl_config *cfg, const sl_provider_cfg *p, uint64_t tried, uint64_t now_ms,
                    uint32_t *key, uint64_t *wait_ms);
/* Whether target ti of m is in service now (ignores tried). */
bool sl_bal_target_ok(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint32_t ti, uint64_t now_ms,
                      uint64_t *wait_ms);

/* ---- attempts and what they teach (health.c) ---- */

typedef enum {
    SL_BAL_OK = 0,          /* an answer: 2xx, or a 4xx that is the caller's own */
    SL_BAL_FAIL,            /* the target failed: 5xx, timeout, connect, broken stream */
    SL_BAL_KEY_REJECTED,    /* 401 / 403: the key is benched */
    SL_BAL_KEY_LIMITED,     /* 429: the key is benched for retry-after */
    SL_BAL_NO_VERDICT,      /* cancelled, stale pooled connection, our own error: nothing learnt */
} sl_bal_outcome;

typedef struct sl_bal_attempt {
    const sl_config *cfg;   /* snapshot it started on: state of another snapshot is left alone */
    const sl_model_cfg *model;
    uint32_t target;
    uint32_t key;           /* index into the provider's keys (0 when it has none) */
    uint64_t start_ns;
    uint64_t first_byte_ns; /* 0 = none yet */
    bool open;              /* counted in flight: ended exactly once */
    struct sl_lb_model *lbm;/* process-wide in-flight count taken (one reference), or NULL */
    bool trial;             /* the half-open trial of an ejected target */
} sl_bal_attempt;

void sl_bal_begin(sl_balancer *b, sl_bal_attempt *a, uint64_t now_ns);
/*
 * Ends an open attempt (no-op when not open): in-flight count, latency sample
 * (successes with a first byte), outlier state, key bench. retry_after_ms is
 * the upstream's retry-after (0 = none): a 429 benches the key that long, or
 * 1 s doubling per strike up to key_cooldown_ms; a 401/403 benches it
 * key_cooldown_ms doubling per strike (at most 16 times).
 */
void sl_bal_end(sl_balancer *b, sl_bal_attempt *a, sl_bal_outcome o, uint64_t retry_after_ms, uint64_t now_ns);
/* An active probe's verdict for provider p. */
void sl_bal_probe_result(sl_balancer *b, const sl_config *cfg, const sl_provider_cfg *p, bool ok);

/* One row of sluice_upstream_healthy{provider,key_index}. */
typedef struct sl_health_entry {
    char provider[72];
    uint32_t key_index;
    bool healthy;           /* probe not down, key not benched, and some target using the provider in service */
} sl_health_entry;

/* Fills out with one row per provider key (providers without keys: key_index 0); returns the rows written.
 * Safe from any thread. */
size_t sl_bal_health(sl_balancer *b, uint64_t now_ms, sl_health_entry *out, size_t cap);

/* ---- retries (budget.c) ---- */

/* Counts a request of m in the budget window. */
void sl_bal_note_request(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t now_ms);
/* Takes one retry from m's budget: true when retries in the window stay within
 * max(budget_min, budget_percent of requests); false (nothing taken) otherwise. */
bool sl_bal_take_retry(sl_balancer *b, const sl_config *cfg, const sl_model_cfg *m, uint64_t now_ms);
/* Jittered exponential backoff before retry number n (1 = first): uniform in [d/2, d],
 * d = min(max_backoff_ms, backoff_ms << (n - 1)). */
uint64_t sl_bal_backoff_ms(sl_balancer *b, const sl_retry_cfg *rc, uint32_t n);
/* A retry-after value: delta seconds or an HTTP-date (now_unix_s: the wall clock), as milliseconds;
 * capped at one day. SL_EINVAL when it is neither. */
int sl_bal_parse_retry_after(sl_str v, int64_t now_unix_s, uint64_t *ms);

/* ---- prefix-cache index (prefix.c) ---- */

#define SL_PREFIX_MAX_BLOCKS 4096   /* blocks hashed per request: longer prompts are matched on their start */

/*
 * Chained block hashes over the concatenation of parts: out[i] stands for
 * bytes [0, (i + 1) * block_bytes), so equal hashes mean equal prefixes. Only
 * whole blocks are hashed. Returns how many were written (at most cap).
 */
size_t sl_prefix_hash(const sl_str *parts, size_t nparts, size_t block_bytes, uint64_t *out, size_t cap);

typedef struct sl_prefix_index sl_prefix_index;
/* An index for ntargets targets remembering at most max_entries blocks each. Thread-safe. NULL on ENOMEM. */
sl_prefix_index *sl_prefix_index_new(uint32_t ntargets, uint32_t max_entries);
void sl_prefix_index_free(sl_prefix_index *ix);
/* matched[t] (ntargets of them) = how many leading blocks of h target t holds; returns the largest. */
uint32_t sl_prefix_match(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t *matched);
/* Records that target holds blocks h[0..n): each becomes its most recent (h[0] last). SL_ENOMEM leaves some out. */
int sl_prefix_insert(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t target);
/* sl_prefix_insert that also lists (in h's order, at most cap) the blocks target did not hold yet. */
int sl_prefix_insert_new(sl_prefix_index *ix, const uint64_t *h, size_t n, uint32_t target, uint64_t *added,
                         size_t cap, size_t *nadded);
/* Blocks remembered for target. */
size_t sl_prefix_count(sl_prefix_index *ix, uint32_t target);

/* ---- process-wide state of LLM-aware models (lbshared.c) ---- */

/* The last good scrape of one target's engine metrics. */
typedef struct sl_lb_metrics {
    bool ok;                /* the last scrape succeeded */
    uint64_t at_ms;         /* when it answered (monotonic) */
    double waiting, running, kv;  /* vllm:num_requests_waiting, _running, kv_cache_usage_perc (0..1) */
    double hits, queries;   /* vllm:prefix_cache_hits_total, _queries_total */
    int64_t inflight_at;    /* the process-wide in-flight count at that moment */
} sl_lb_metrics;

typedef struct sl_lb_target {
    _Atomic int64_t inflight;      /* this process's requests in flight to the target */
    _Atomic uint64_t next_scrape_ms; /* claimed by the worker that scrapes next */
    pthread_mutex_t lock;          /* guards met */
    sl_lb_metrics met;
    _Atomic int64_t remote;        /* requests in flight to it from the other instances (Redis), as last read */
} sl_lb_target;

/* One model's state shared by every worker; found again by signature after a reload. */
typedef struct sl_lb_model {
    struct sl_lb_model *next;
    uint64_t sig;
    _Atomic uint32_t refs;
    uint32_t ntargets;
    sl_prefix_index *ix;    /* balance: prefix_cache only */
    sl_lb_target *t;
    /* sharing with other instances through Redis (lbshared_redis.c) */
    bool shared;                   /* state.backend: redis */
    uint64_t share_sig;            /* names the model's Redis keys: the same on every instance with the same model */
    pthread_mutex_t out_lock;      /* guards outbox and dropped */
    sl_buf outbox;                 /* index inserts not yet published: one encoded batch */
    uint64_t dropped;              /* inserts that did not fit in the outbox */
    _Atomic uint64_t next_sync_ms; /* claimed by the worker that syncs next */
    _Atomic bool syncing;          /* a round is in flight: only its worker touches cursor */
    int64_t cursor;                /* last log entry applied; -1 = none yet */
    char epoch[24];                /* the log the cursor counts in ("" = none yet) */
    _Atomic uint64_t remote_at_ms; /* when the remote counts were read (monotonic); 0 = not usable */
    _Atomic bool share_down;       /* the last round failed (logged once per outage) */
} sl_lb_model;

/* The state for m (one reference), shared with every worker configured with the same model; NULL on ENOMEM or
 * when m's balancer needs none. shared: state.backend is redis (least_request then gets state too, for its
 * global in-flight counts). */
sl_lb_model *sl_lb_model_get(const sl_model_cfg *m, bool shared);
/* Whether a model with balance kind k keeps process-wide state. */
bool sl_lb_needs_state(sl_balance_kind k, bool shared);
void sl_lb_model_put(sl_lb_model *lm);
/* Whether m's targets are scored by scraped metrics, and the path scraped. */
bool sl_lb_uses_metrics(const sl_model_cfg *m);
const char *sl_lb_metrics_path(const sl_model_cfg *m);
/* Copy of target ti's metrics (under its lock). */
sl_lb_metrics sl_lb_metrics_get(sl_lb_model *lm, uint32_t ti);
void sl_lb_metrics_put(sl_lb_model *lm, uint32_t ti, const sl_lb_metrics *m);

/*
 * The load pick compares for target ti of m (lower is better): with fresh
 * metrics (metrics balance or prefix_cache with metrics.path), the score
 * (queue * waiting + kv_cache * kv + running * running) / 100 plus the
 * requests this process sent or finished since that scrape; otherwise the
 * process-wide in-flight count, plus the other instances' (shared models,
 * while their counts are fresh). Divided by the target's weight.
 */
double sl_lb_load(sl_lb_model *lm, const sl_model_cfg *m, uint32_t ti, uint64_t now_ms, bool *fresh);

/* Parses a Prometheus text exposition for the vllm:* gauges and counters (summing labelled series). */
int sl_lb_parse_prometheus(sl_str text, sl_lb_metrics *out);

/* ---- sharing with other instances through Redis (lbshared_redis.c) ---- */

#define SL_LBSHARE_INTERVAL_MS 50       /* one sync round per model and process this often */
#define SL_LBSHARE_RING 256             /* log entries (batches) Redis keeps per model */
#define SL_LBSHARE_READ_MAX 32          /* entries read per round */
#define SL_LBSHARE_BATCH_MAX 32768      /* bytes of one batch; inserts past it are dropped (counted) */
#define SL_LBSHARE_RECORD_MAX 512       /* blocks published per insert (the leading new ones) */
#define SL_LBSHARE_LOG_TTL_MS 600000    /* a model's log is forgotten after 10 minutes without inserts */
#define SL_LBSHARE_COUNT_TTL_MS 3000    /* an instance silent this long no longer counts (crashed) */
#define SL_LBSHARE_STALE_MS 2000        /* remote counts older than this are not used */

/* This process's instance id (random, fixed for its life). */
uint64_t sl_lbshare_instance(void);
/*
 * Log entry encoding: a batch is "P" 0x01, the instance id (8 bytes little
 * endian), then records: target (u16 LE), n (u16 LE), n block hashes (u64 LE).
 * Appends one record to batch (the header first when batch is empty);
 * SL_ELIMIT when it would not fit in the batch's cap, SL_EINVAL for n or
 * target out of bounds.
 */
int sl_lbshare_encode(sl_buf *batch, uint64_t instance, uint32_t target, const uint64_t *h, size_t n);
/* Applies a batch to ix (targets past ntargets of ix are skipped); batches of instance self are ignored.
 * *records = records applied. SL_EPARSE when malformed (the records before the fault are applied). */
int sl_lbshare_apply(sl_prefix_index *ix, uint32_t ntargets, sl_str batch, uint64_t self, size_t *records);
/* In-flight counts as Redis keeps them: decimal numbers separated by spaces. */
int sl_lbshare_format_counts(sl_buf *out, const int64_t *v, size_t n);
/* Parses up to n counts (missing ones are 0); SL_EPARSE on anything else than digits and spaces. */
int sl_lbshare_parse_counts(sl_str s, int64_t *out, size_t n);
/* The pick path: queues "target now holds h[0..n)" for the next round (no-op unless lm->shared). */
void sl_lbshare_record(sl_lb_model *lm, uint32_t target, const uint64_t *h, size_t n);
/* Whether lm's remote counts are usable at now_ms. */
bool sl_lbshare_remote_fresh(sl_lb_model *lm, uint64_t now_ms);
/* One sync round of lm on st (see lbshared_redis.c): publishes the outbox and this process's counts
 * as instance, reads the others'; cb gets the script's answer, for sl_lbshare_round_apply. */
struct sl_state;
struct sl_state_item;
int sl_lbshare_round_start(struct sl_state *st, sl_lb_model *lm, uint64_t instance,
                           void (*cb)(void *ud, int err, const struct sl_state_item *items, size_t n), void *ud);
/* Applies a round's answer: the other instances' index inserts and counts (remote, fresh as of now_ms). */
int sl_lbshare_round_apply(sl_lb_model *lm, uint64_t instance, const struct sl_state_item *items, size_t n,
                           uint64_t now_ms);

/* Per gateway worker: runs the sync rounds on its loop (one worker per model and round). */
struct sl_gw_worker;
struct sl_lbsync *sl_lbsync_new(struct sl_gw_worker *gw);
void sl_lbsync_configure(struct sl_lbsync *s, sl_config *cfg);
void sl_lbsync_free(struct sl_lbsync *s);

/* ---- metrics scraping (metrics_scrape.c), per gateway worker ---- */
struct sl_gw_worker;
struct sl_scraper *sl_scraper_new(struct sl_gw_worker *gw);
void sl_scraper_configure(struct sl_scraper *s, sl_config *cfg);
void sl_scraper_free(struct sl_scraper *s);

#endif
