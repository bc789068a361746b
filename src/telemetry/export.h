/*
 * export.h: the OTLP/HTTP JSON span exporter: a bounded queue filled by the
 * workers and one exporter thread with its own libuv loop and upstream
 * client (http/upstream.h) that sends batches to telemetry.traces.endpoint.
 *
 * Workers never wait on export: sl_trace_export_push() takes a short mutex
 * to append a pointer, or drops the spans (counted) when the queue is full.
 * The exporter sends a batch when batch_size spans are waiting or every
 * flush_interval_ms, one request at a time (like the OpenTelemetry batch
 * span processor); a failed batch is dropped and counted, not retried, so a
 * dead collector costs a bounded amount of memory and nothing else.
 */
#ifndef SL_TRACE_EXPORT_H
#define SL_TRACE_EXPORT_H

#include "config/config.h"
#include "core/sl.h"

typedef struct sl_trace_stats {
    uint64_t exported;              /* spans the endpoint accepted (2xx) */
    uint64_t dropped_queue_full;
    uint64_t dropped_export_failed;
    uint64_t queued;                /* spans waiting now */
    uint64_t export_requests;       /* export requests finished, any result */
} sl_trace_stats;

/* Starts the exporter thread if cfg has an endpoint (or later gets one); takes its own reference. */
int sl_trace_export_start(sl_config *cfg);
/* A new snapshot (reload): endpoint, headers, batch and interval come from it from now on. */
void sl_trace_export_configure(sl_config *cfg);
/* Sends what is queued (bounded by the export timeout), stops the thread. */
void sl_trace_export_stop(void);

/* Queues nspans comma-separated OTLP span objects (copied). Drops them when the queue would pass queue_size. */
void sl_trace_export_push(const char *json, size_t len, uint32_t nspans, uint64_t queue_size);

void sl_trace_stats_get(sl_trace_stats *s);

#endif
