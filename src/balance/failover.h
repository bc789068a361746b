/*
 * failover.h: one request's way through targets, keys and fallback models
 * (docs/resilience.md). The gateway's proxy (gateway/proxy.c) runs attempts;
 * this decides where each goes, whether and when another follows, and keeps
 * the balancer told (balance.h).
 *
 * The order of models is the requested one, then its fallbacks depth-first in
 * the order written, each fallback followed by its own fallbacks, a model
 * visited at most once (config_check.c has already refused loops): with
 * a: [b, c] and b: [d], the order is a, b, d, c. Within a model: up to
 * retry.attempts attempts over its targets (first the untried ones, at once;
 * then the same ones again after a jittered backoff or the upstream's
 * retry-after), each retry paid from the model's retry budget. A key
 * answered 401/403/429 is benched and the same target is tried at once with
 * its next key (not counted in retry.attempts, paid from the budget). Moving
 * to a fallback is free and immediate. Nothing is retried once a byte has
 * reached the caller.
 */
#ifndef SL_FAILOVER_H
#define SL_FAILOVER_H

#include "balance/balance.h"

#define SL_FO_MAX_MODELS 16 /* models one request may visit, the requested one included */

struct sl_gw_req;
struct sl_gw_worker;
struct sl_fo_timer;

typedef enum { SL_FO_TIMER_NONE = 0, SL_FO_TIMER_WAIT, SL_FO_TIMER_FIRST_TOKEN } sl_fo_timer_kind;

typedef struct sl_fo_req {
    sl_bal_attempt a;               /* the current (or last) attempt */
    const sl_model_cfg *model;      /* being tried: the requested one, then fallbacks */
    sl_str model_name;              /* its public name, sent upstream when a target names no model */
    uint64_t tried_targets;         /* of model, bit i = targets[i] */
    uint64_t tried_keys;            /* of the current target, since it was last chosen */
    uint32_t model_attempts;        /* attempts on model, counted against retry.attempts */
    uint32_t same_target_retries;   /* retries of already tried targets: the backoff exponent */
    uint32_t nvisited, depth;
    uint32_t visited[SL_FO_MAX_MODELS];
    uint32_t stack[SL_FO_MAX_MODELS];   /* fallback walk: model index per level */
    uint8_t next_fb[SL_FO_MAX_MODELS];  /* next fallback to follow at that level */
    uint64_t retry_after_ms;        /* the last upstream answer's retry-after, 0 = none */
    uint64_t unavailable_ms;        /* soonest return of a target out of service, 0 = none seen */
    bool stale_retried;
    bool rechoose;                  /* the wait was for a target to come back: choose when it ends */             /* the one transparent retry of a stale pooled connection was used */
    struct sl_fo_timer *timer;      /* backoff wait / first-token deadline; heap (closed asynchronously) */
    sl_fo_timer_kind timer_kind;
} sl_fo_req;

/* Why an attempt failed, for sl_fo_retry. */
typedef enum {
    SL_FO_FAILED = 0,   /* retryable by retry.on */
    SL_FO_KEY,          /* 401/403/429: try the next key first; then as retryable if `retryable` */
    SL_FO_STALE,        /* a pooled connection was found dead: once, at once, same target and key */
} sl_fo_why;

/* Per worker: the balancer and active probes. */
int sl_fo_worker_init(struct sl_gw_worker *gw);
void sl_fo_worker_free(struct sl_gw_worker *gw);
void sl_fo_config_changed(struct sl_gw_worker *gw, sl_config *cfg);

/* Chooses the first target (walking the fallbacks when none of the requested model's is in service).
 * Returns true with r->target set; false after answering 503 with retry-after. */
bool sl_fo_begin(struct sl_gw_req *r);
/* The API key for the current attempt, or NULL when the provider has none. */
const char *sl_fo_key(const struct sl_gw_req *r);
void sl_fo_attempt_begin(struct sl_gw_req *r);
/* The first byte (non-stream: response head; stream: first event) arrived: the latency sample. */
void sl_fo_attempt_first_byte(struct sl_gw_req *r);
void sl_fo_attempt_end(struct sl_gw_req *r, sl_bal_outcome o);
/*
 * After a failed attempt (already ended): schedules the next one, at once
 * (sl_proxy_attempt before returning) or after a wait, and returns true; or
 * returns false when nothing more may be tried: the caller answers with the
 * failure. `retryable`: the failure is in retry.on.
 */
bool sl_fo_retry(struct sl_gw_req *r, sl_fo_why why, bool retryable);
/* Client gone: stops a pending wait. True if the request was waiting (the caller then finishes it). */
bool sl_fo_cancel_wait(struct sl_gw_req *r);
/* Streams: a deadline for the first event after the response head (sl_proxy_first_token_timeout on expiry). */
void sl_fo_watch_first_token(struct sl_gw_req *r, uint64_t ms);
void sl_fo_unwatch(struct sl_gw_req *r);
/* At the end of the request: ends an open attempt without a verdict, closes the timer. */
void sl_fo_release(struct sl_gw_req *r);

/* sluice_upstream_healthy for the whole process: one row per provider key; a row is healthy when it is
 * healthy on every worker. Safe from any thread (the admin thread's /metrics). Returns the rows written. */
struct sl_runtime;
size_t sl_health_snapshot(struct sl_runtime *rt, sl_health_entry *out, size_t cap);

/* Active probes (probe.c). */
typedef struct sl_prober sl_prober;
sl_prober *sl_prober_new(struct sl_gw_worker *gw);
void sl_prober_configure(sl_prober *p, sl_config *cfg);
void sl_prober_free(sl_prober *p);

#endif
