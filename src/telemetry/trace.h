/*
 * trace.h: OpenTelemetry spans for one request (docs/observability.md).
 *
 * A request traced by the gateway gets a SERVER span named
 * "{gen_ai.operation.name} {gen_ai.request.model}" with gen_ai.* attributes,
 * and one CLIENT child span per upstream attempt. W3C trace context: an
 * incoming `traceparent` makes the request span its child and its sampled
 * flag decides; otherwise sample_ratio does, from the trace id. Each attempt
 * sends `traceparent` (and the caller's `tracestate`) upstream with the
 * attempt span as parent, so provider-side spans join the same trace.
 *
 * The state lives in the request arena (sl_trace_req); at the end the spans
 * are encoded as OTLP/HTTP JSON span objects (sl_otlp_encode_spans) and
 * queued for the exporter (export.h). Nothing here blocks or locks.
 */
#ifndef SL_TRACE_H
#define SL_TRACE_H

#include "core/arena.h"
#include "core/buf.h"
#include "gateway/record.h"

#define SL_TRACE_MAX_ATTEMPTS 16 /* attempt spans kept per request; later ones are counted, not kept */

typedef struct sl_span_attempt {
    uint8_t span_id[8];
    uint64_t start_ns, end_ns;   /* uv_hrtime */
    sl_str provider, provider_type, model;
    int status;                  /* HTTP status, 0 if none */
    const char *outcome;         /* see sl_attempt_outcome */
    sl_str error;
} sl_span_attempt;

typedef struct sl_trace_req {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    bool has_parent;
    bool sampled;                /* W3C sampled flag we propagate */
    bool recording;              /* spans are exported (sampled and an endpoint is set) */
    sl_str tracestate;           /* the caller's, passed on unchanged */
    sl_span_attempt att[SL_TRACE_MAX_ATTEMPTS];
    uint32_t natt, ndropped;
    int open;                    /* index of the attempt in flight, or -1 */
    char up_traceparent[56];     /* header value for the attempt in flight */
} sl_trace_req;

/* Parses a W3C traceparent (version 00, or a later version read as 00). 0 or SL_EINVAL. */
int sl_traceparent_parse(sl_str h, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags);
/* Writes "00-<trace>-<span>-<flags>" (55 chars + NUL) into out[56]. */
void sl_traceparent_format(char out[56], const uint8_t trace_id[16], const uint8_t span_id[8], bool sampled);
/* Random non-zero ids from a per-thread generator seeded from the OS. */
void sl_trace_random_id(uint8_t *id, size_t n);
/* Lowercase hex of n bytes into out (2n chars + NUL). */
void sl_hex(char *out, const uint8_t *id, size_t n);

/*
 * Starts the trace state of a request: traceparent/tracestate are the
 * caller's headers (empty if absent); record says whether spans are exported
 * at all (an endpoint is configured); ratio is telemetry.traces.sample_ratio.
 * Returns NULL (nothing to do) when not recording and there is no incoming
 * traceparent to pass on, or when the arena is exhausted.
 */
sl_trace_req *sl_trace_begin(sl_arena *a, sl_str traceparent, sl_str tracestate, bool record, double ratio);
/* An attempt starts now: returns the traceparent value to send upstream (valid for the request). */
const char *sl_trace_attempt_start(sl_trace_req *t, uint64_t now_ns, sl_str provider, sl_str provider_type,
                                   sl_str model);
/* The attempt in flight ended (no-op if none). */
void sl_trace_attempt_end(sl_trace_req *t, uint64_t now_ns, int status, const char *outcome, sl_str error);

/* The gen_ai.provider.name of a provider type ("azure" -> "azure.ai.openai", "gemini" -> "gcp.gemini"). */
const char *sl_genai_provider_name(sl_str provider_type);

/* Wall clock (Unix ns) of a uv_hrtime value. */
uint64_t sl_trace_wall_ns(uint64_t hr_ns);

/*
 * Appends the request span and its attempt spans as comma-separated OTLP
 * JSON span objects (no enclosing array) and returns how many in *nspans.
 */
int sl_otlp_encode_spans(const sl_trace_req *t, const sl_req_record *r, sl_buf *out, uint32_t *nspans);
/* Wraps comma-separated span objects into an ExportTraceServiceRequest body. */
int sl_otlp_wrap(sl_buf *out, sl_str spans, const char *service_name, const char *service_version);

#endif
