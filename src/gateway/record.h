/*
 * record.h: what is known about one finished request: the single record
 * that the access log, metrics, limits settlement and (later) billing read.
 * Filled by the gateway as the request goes; handed out once, at the end.
 */
#ifndef SL_RECORD_H
#define SL_RECORD_H

#include "core/sl.h"
#include "protocols/translate.h" /* sl_usage */

typedef struct sl_req_record {
    uint64_t start_ns;        /* header block complete (uv_hrtime) */
    uint64_t first_byte_ns;   /* first response byte to the caller; 0 = none */
    uint64_t end_ns;
    sl_str request_id;
    sl_str consumer;          /* "anonymous" when auth is off */
    const char *api;          /* "chat.completions", "embeddings", "models", "messages", "generateContent", ... */
    const char *operation;    /* GenAI operation name: "chat", "embeddings", "text_completion", ... */
    sl_str model;             /* public model name as requested */
    sl_str provider;          /* provider that answered (or was tried last) */
    sl_str provider_type;
    sl_str upstream_model;
    int status;               /* status sent to the caller */
    bool stream;
    sl_usage usage;
    double cost_usd;
    uint32_t attempts;
    const char *cache;        /* "hit" | "miss" | "skip" | NULL */
    sl_str error;             /* short error text, empty if none */
    sl_str finish_reason;     /* canonical (OpenAI spelling); filled for traced requests */
    sl_str response_model;    /* the model the provider named in its answer; filled for traced requests */
    /* telemetry (src/telemetry/telemetry.c) */
    struct sl_trace_req *trace; /* trace state; NULL when not traced and no traceparent came in */
    bool attempt_open;        /* an upstream attempt started and has not ended yet */
    bool content_logged;      /* telemetry.log_content: prompt and completion below go to the access log */
    bool content_truncated;
    sl_str prompt;            /* raw JSON of the request's messages/contents/input */
    sl_str completion;        /* text of the answer (streamed: from stream_text) */
    sl_text_capture stream_text; /* a streamed answer's text as it goes by; max 0 unless content is logged */
    bool watch_chunks;        /* OpenAI stream fast path: chunks are read for the above (proxy.c) */
} sl_req_record;

#endif
