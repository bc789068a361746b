/*
 * gateway.h: the request life cycle of the data plane.
 *
 *   sl_gateway_handle()  route -> parse -> resolve model -> pick target
 *   proxy.c               build the upstream request, stream or buffer the
 *                         answer back, retry before the first byte
 *   sl_gw_finish()        record (access log, metrics), release, finish
 *
 * One sl_gw_req per request, allocated in the exchange's arena: everything
 * parsed from the request hangs off it and dies with it.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include "balance/failover.h"
#include "config/config.h"
#include "gateway/record.h"
#include "gateway/runtime.h"
#include "http/sse.h"
#include "json/json.h"
#include "protocols/translate.h"

typedef enum {
    SL_API_CHAT,        /* POST /v1/chat/completions */
    SL_API_EMBEDDINGS,  /* POST /v1/embeddings */
    SL_API_MODELS,      /* GET /v1/models */
    SL_API_RESPONSES,   /* POST /v1/responses */
    SL_API_MESSAGES,    /* POST /v1/messages (Anthropic) */
    SL_API_GEMINI,      /* POST /v1beta/models/{model}:generateContent | :streamGenerateContent */
} sl_api;

/* Per-worker gateway state: balancer (targets, keys, health, retry budget), active probes, RNG. */
typedef struct sl_gw_worker {
    sl_worker *w;
    uint64_t rng;
    int64_t *wrr_current;  /* smooth weighted round-robin state, one per target of every model */
    size_t nwrr;
    uint32_t *key_cursor;  /* per provider: next api key */
    size_t nkeys;
    sl_config *state_for;  /* the snapshot the arrays above were sized for */
    struct sl_state *state; /* governance counters on this worker's loop (filters/ratelimit.c) */
    sl_balancer bal;       /* balance/balance.h */
    sl_prober *prober;     /* balance/failover.h; NULL when no provider has health_check */
} sl_gw_worker;

typedef struct sl_gw_req {
    sl_hx *hx;
    sl_gw_worker *gw;
    sl_config *cfg;               /* the snapshot this request runs on (one reference) */
    sl_api api;
    sl_proto in_proto;            /* the caller's protocol */
    sl_json_doc doc;
    int model_tok;                /* token of the "model" value, or -1 (Gemini: in the path) */
    sl_str model;                 /* public name requested */
    const sl_model_cfg *mcfg;
    const sl_target_cfg *target;
    uint32_t target_index;
    sl_str upstream_model;
    bool stream;
    bool caller_wants_usage;      /* OpenAI: stream_options.include_usage was set by the caller */
    /* upstream attempt */
    sl_up_req *up;
    sl_buf up_body;
    int up_status;
    bool up_is_sse;
    sl_sse_parser sse;
    sl_xlat_stream *xs;           /* stream translator / filter (NULL on the OpenAI fast path) */
    bool stream_done;             /* the upstream stream's terminal event was seen */
    bool stream_started;          /* the upstream stream's first token event was seen (proxy.c preamble) */
    bool preamble_over;           /* held preamble replayed: later bytes go straight to the stream parser */
    bool client_gone;             /* a write to the caller failed: its connection is closing */
    sl_str model_json;            /* the public model name as a JSON string, once made */
    sl_buf resp;                  /* buffered non-stream response body */
    bool client_head_sent;
    bool paused;
    uint32_t attempts;            /* upstream attempts, retries and fallbacks included (x-sluice-attempts) */
    sl_fo_req fo;                 /* where attempts go: balance/failover.h */
    sl_up_error last_error;       /* the last attempt's transport outcome */
    const char *last_detail;      /* its detail (arena), for the caller's error */
    uint32_t retry_after_s;       /* retry-after sent with a 429/503 answer; 0 = 1 second */
    uint32_t filter_pos;          /* next filter to run after a wait (filter.c) */
    sl_req_record rec;
    /* governance (filters/auth.c, filters/ratelimit.c) */
    const sl_consumer_cfg *consumer;  /* NULL: anonymous, with no consumers entry */
    void *limits;                     /* ratelimit.c's per-request state */
    void (*wait_cancel)(struct sl_gw_req *r); /* set while a filter waits; called when the client goes away */
    size_t nextra_headers;
    /* Not zeroed when the request starts (sl_gateway_handle zeroes everything above):
     * written before they are read. */
    char request_id[128];         /* echoed from the caller (up to 127 bytes) or generated */
    sl_http_header extra_headers[10]; /* added to every answer by sl_gw_common_headers (x-ratelimit-*, retry-after): [0, nextra_headers) */
} sl_gw_req;

/* gateway.c */
void sl_gw_error(sl_gw_req *r, int status, const char *type, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void sl_gw_finish(sl_gw_req *r);
/* The worker's state-backend handle for this request's snapshot (opened or reopened on demand; may be NULL). */
struct sl_state *sl_gw_state(sl_gw_req *r);
/* An error body in protocol p (SPEC §3), appended to out. */
void sl_gw_error_body(sl_proto p, int status, const char *type, const char *code, const char *msg, sl_buf *out);
void sl_gw_common_headers(sl_gw_req *r, sl_http_header *h, size_t *n, size_t cap);
/* proxy.c */
void sl_proxy_start(sl_gw_req *r);
/* Starts the attempt balance/failover.c chose (r->target, r->fo). */
void sl_proxy_attempt(sl_gw_req *r);
/* The first-token deadline of a stream passed: the attempt fails as a first-token timeout. */
void sl_proxy_first_token_timeout(sl_gw_req *r);
/* Nothing more can be tried: answers with the last attempt's failure. */
void sl_proxy_give_up(sl_gw_req *r);

#endif
