/*
 * metrics.h: the Prometheus series of SPEC §4, recorded from the request
 * record (record.h) and rendered at /metrics by the admin listener.
 *
 * Each worker writes only its own shard (the worker id); the scraper sums
 * the shards. No lock is taken on the request path: see telemetry/series.h
 * for how, and docs/observability.md for every series, its labels, the
 * bucket bounds (OpenTelemetry GenAI semantic conventions) and the cap on
 * label sets (telemetry.metrics.max_series, overflow labelled "__other__").
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include "core/buf.h"
#include "gateway/record.h"
#include "gateway/runtime.h"

/* Sizes every family for max_series label sets. The first call wins (later
 * ones, e.g. after a reload, change nothing); recording before any call uses
 * 1000. Returns 0 or SL_ENOMEM. */
int sl_metrics_init(size_t max_series);

/* One finished request: requests, tokens, cost, and the GenAI histograms. */
void sl_metrics_record(sl_worker *w, const sl_req_record *r);
/* One upstream attempt ended; outcome is one of the words in docs/observability.md. */
void sl_metrics_attempt(sl_worker *w, sl_str provider, const char *outcome);
/* A request refused by a limit ("requests_per_minute", "budget_usd_per_month", ...). */
void sl_metrics_ratelimit_rejected(sl_worker *w, sl_str consumer, const char *limit);
/* A limit check (on_error "allow" or "deny") or a usage record ("settle") the state backend could not answer. */
void sl_metrics_state_error(sl_worker *w, const char *backend, const char *on_error);
/* Health of one provider key, set by the balancer/health checker from any thread. */
void sl_metrics_set_upstream_healthy(sl_str provider, uint32_t key_index, bool healthy);

/* Appends every series; rt may be NULL (no inflight gauge). */
int sl_metrics_render(sl_runtime *rt, sl_buf *out);

#endif
