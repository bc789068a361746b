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

typedef struct sl_balancer {
    pthread_mutex_t lock;           /* swap of the arrays vs. sl_bal_health() readers */
    sl_config *cfg;                 /* the snapshot the arrays are sized for (one reference), or NULL */
    sl_bal_model *models;
    sl_bal_target *targets;
    sl_bal_provider *providers;
    sl_bal_key *keys;
    size_t nmodels, ntargets, nproviders, nkeys;
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

#endif
