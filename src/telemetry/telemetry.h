/*
 * telemetry.h: where the gateway hands requests to observability. One call
 * at each point of a request's life; each reads the request's own config
 * snapshot (telemetry:), so a reload applies to requests started after it.
 *
 *   sl_telemetry_begin          request head known: W3C trace context
 *   sl_telemetry_attempt_start  before each upstream attempt: child span,
 *                               traceparent/tracestate headers for upstream
 *   sl_telemetry_attempt_end    each attempt's end: span end, attempt metric
 *   sl_telemetry_finish         the request is over: access log, metrics,
 *                               spans queued for export
 *
 * main.c calls start/configure/stop around the process's life.
 */
#ifndef SL_TELEMETRY_H
#define SL_TELEMETRY_H

#include "gateway/gateway.h"

int sl_telemetry_start(sl_config *cfg);
void sl_telemetry_configure(sl_config *cfg);
void sl_telemetry_stop(void);

void sl_telemetry_begin(sl_gw_req *r);
void sl_telemetry_attempt_start(sl_gw_req *r, sl_http_header *headers, size_t *nheaders, size_t cap);
void sl_telemetry_attempt_end(sl_gw_req *r, const sl_up_result *res);
void sl_telemetry_finish(sl_gw_req *r);

/* The attempts metric's outcome word for an upstream result. */
const char *sl_attempt_outcome(const sl_up_result *res);

#endif
