/*
 * metrics.h: Prometheus metrics (SPEC §4). Each worker records into its own
 * shard; the admin thread merges the shards when /metrics is scraped.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include "core/buf.h"
#include "gateway/record.h"
#include "gateway/runtime.h"

void sl_metrics_record(sl_worker *w, const sl_req_record *r);
int sl_metrics_render(sl_runtime *rt, sl_buf *out);
/* Governance counters (filters/ratelimit.c): sluice_ratelimit_rejections_total{consumer,limit} and
 * sluice_state_errors_total{backend,on_error} (a limit check the state backend could not answer). */
void sl_metrics_ratelimit_rejected(sl_str consumer, const char *limit);
void sl_metrics_state_error(const char *backend, const char *on_error);

#endif
