/*
 * mock.h: sluice-mock, the deterministic stand-in for LLM providers used by
 * tests, the quick start and benchmarks (SPEC §8, docs/mock.md).
 *
 * A request goes through four steps, each in its own file:
 *   router (mock_router.c)   x-mock-* knobs, read-back endpoints, dispatch by path
 *   builder (mock_openai.c, mock_anthropic.c, mock_gemini.c)
 *                            parses the body and renders the whole answer up
 *                            front into a "run": one buffer cut into pieces
 *                            (PRE pieces go with the head, one TOK piece per
 *                            output token, POST pieces after the last token).
 *                            Text streams (OpenAI chat, Anthropic) keep their
 *                            tokens lazy instead: one token event is rendered
 *                            as a template and each token is filled in as it
 *                            is sent, so a stream costs the same to start and
 *                            to hold whatever its length (sl_mock_lazy_tokens)
 *   admission (sl_mock_admit) the hook where an inference-server scheduler
 *                            (queueing, batching, prefix cache) will sit; today
 *                            it starts the run at once
 *   runner (mock_run.c)      plays the pieces out on uv timers (delay, ttft,
 *                            itl), with back-pressure, injected faults and
 *                            client aborts
 * Rendering first keeps the protocol files free of timing and the runner free
 * of protocol details. Text, token counts, tool arguments and embedding
 * vectors are pure functions in mock_gen.c so tests can predict them.
 */
#ifndef SL_MOCK_H
#define SL_MOCK_H

#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/sl.h"
#include "http/server.h"
#include "json/json.h"

#define SL_MOCK_MAX_TOKENS 100000u      /* output tokens per response */
#define SL_MOCK_MAX_MS 3600000u         /* any delay knob */
#define SL_MOCK_MAX_EMBED_DIM 4096u
#define SL_MOCK_MAX_WORKERS 64
#define SL_MOCK_MAX_BODY (64u << 20)    /* request body accepted */
#define SL_MOCK_MAX_OUT (512u << 20)    /* rendered response */
#define SL_MOCK_ARG_FRAGMENT 8          /* bytes of tool-call arguments per streamed fragment */
#define SL_MOCK_MAX_KEY_RULES 64        /* --key-status flags */
#define SL_MOCK_MAX_KEY_LEN 512         /* bytes of one API key in --key-status */

typedef enum {
    SL_MOCK_FAIL_RESET = 0,
    SL_MOCK_FAIL_EVENT,
    SL_MOCK_FAIL_MALFORMED,
    SL_MOCK_FAIL_STALL,
} sl_mock_fail_mode;

/* --key-status KEY=STATUS[:RETRY_AFTER_S]: how requests sent with one API key are answered. */
typedef struct sl_mock_key_rule {
    sl_str key;          /* points into argv */
    int status;          /* 400-599 */
    int64_t retry_after; /* seconds; -1: no retry-after header */
} sl_mock_key_rule;

/* Command-line options: the defaults for every request. */
typedef struct sl_mock_opts {
    const char *host;
    int port;
    int workers;
    uint64_t ttft_ms, itl_ms, tokens;
    int status;
    int64_t fail_after; /* -1: never */
    sl_mock_fail_mode fail_mode;
    uint32_t embedding_dim;
    bool quiet;
    /* inference-server mode (mock_engine.c); max_batch 0 = off */
    uint32_t max_batch, max_queue;
    uint64_t prefill_us_per_token, decode_ms_per_token;
    uint64_t cache_tokens, cache_block_tokens;
    sl_mock_key_rule key_rules[SL_MOCK_MAX_KEY_RULES];
    size_t nkey_rules;
} sl_mock_opts;

/* The options as overridden by one request's x-mock-* headers. */
typedef struct sl_mock_knobs {
    uint64_t ttft_ms, itl_ms, tokens, delay_ms;
    int status;
    int64_t retry_after; /* -1: no retry-after header */
    int64_t fail_after;  /* -1: never */
    sl_mock_fail_mode fail_mode;
    sl_str tool_call;    /* empty: answer with text */
    sl_str text;
    bool has_text, echo;
} sl_mock_knobs;

struct sl_mock_run;

/* What differs between wire protocols when the runner or the router must speak for them. */
typedef struct sl_mock_proto {
    const char *name;
    /* A complete error body in the protocol's shape for an HTTP status. */
    void (*error_body)(sl_buf *out, int status, const char *msg);
    /* The in-stream error event sent by fail-mode "event". */
    void (*error_event)(sl_buf *out, const char *msg);
    const char *sse_end; /* event terminator: "\n\n" or "\r\n\r\n" */
} sl_mock_proto;

extern const sl_mock_proto sl_mock_proto_openai, sl_mock_proto_anthropic, sl_mock_proto_gemini;

typedef enum { SL_MOCK_PRE = 0, SL_MOCK_TOK, SL_MOCK_POST } sl_mock_piece_kind;

typedef struct sl_mock_piece {
    uint32_t off, len; /* into run->data */
    uint8_t kind;
} sl_mock_piece;

#define SL_MOCK_MAX_HEADERS 8

typedef struct sl_mock_job sl_mock_job;

/* One request from arrival to sl_hx_finish (heap: it outlives hx for the timer's close). */
typedef struct sl_mock_run {
    sl_hx *hx;
    const sl_mock_opts *opts;
    const sl_mock_proto *proto;
    sl_mock_knobs k;
    uint64_t seq; /* request number, also in ids */
    sl_json_doc doc;
    bool have_doc;
    /* the rendered answer */
    int status;
    bool stream, is_error;
    const char *content_type;
    sl_http_header hdrs[SL_MOCK_MAX_HEADERS];
    size_t nhdrs;
    sl_buf data;
    sl_mock_piece *pieces;
    size_t npieces, cap_pieces;
    size_t ntok;          /* TOK pieces (streams) or output tokens (whole bodies) */
    /* lazy tokens (sl_mock_lazy_tokens): token i is tpl[0, tpl_at) + escaped ltok[i] + tpl[tpl_at, len) */
    bool lazy;
    const sl_str *ltok;
    sl_buf tpl, tokbuf;
    size_t tpl_at;
    uint64_t tok_t0;      /* loop time (ms) token 1 was due: token k is due at tok_t0 + (k - 1) * itl */
    sl_buf fault;         /* event bytes for fail-mode "event" */
    const char *malformed;
    int32_t open_piece;   /* piece being written, -1 none */
    /* playing */
    uv_timer_t timer;
    int phase;
    size_t next;          /* next piece to write */
    size_t tok_sent;
    bool aborted, self_reset, done, waiting_drain, timer_live;
    sl_mock_job *job;     /* inference-server mode: the engine's record of this request, or NULL */
} sl_mock_run;

/* ---- router (mock_router.c) ---- */
void sl_mock_handle(sl_hx *hx, void *ctx); /* the server's handler; ctx is the sl_mock_opts */
/* Parses x-mock-* headers over the defaults; on a bad value returns SL_EINVAL with *why set. */
int sl_mock_knobs_parse(const sl_http_request *req, const sl_mock_opts *o, sl_mock_knobs *k, const char **why);
bool sl_mock_fail_mode_parse(sl_str s, sl_mock_fail_mode *out);
/* Parses one --key-status value ("KEY=STATUS[:RETRY_AFTER_S]"; the key is everything before the last '='). */
bool sl_mock_key_rule_parse(sl_str s, sl_mock_key_rule *out);
/* The API key a request carries: Authorization: Bearer, x-api-key, x-goog-api-key or ?key= (first found). */
sl_str sl_mock_request_key(const sl_http_request *req);
/* The rule for the request's key, or NULL. */
const sl_mock_key_rule *sl_mock_key_rule_find(const sl_mock_opts *o, const sl_http_request *req);

/* ---- rendering helpers shared by the builders (mock_run.c) ---- */
int sl_mock_piece_begin(sl_mock_run *r, sl_mock_piece_kind kind);
int sl_mock_piece_end(sl_mock_run *r);
/* Appends `[event: NAME\n]data: ` + json + sse_end as its own piece (or into the open piece). */
int sl_mock_sse(sl_mock_run *r, sl_mock_piece_kind kind, const char *event, sl_str json);
int sl_mock_add_header(sl_mock_run *r, const char *name, sl_str value);
/* The text a builder renders into one token event to make the lazy template; JSON writes it as \u0001. */
#define SL_MOCK_TOKEN_MARK "\x01"
/*
 * Turns the last piece (a TOK event rendered with SL_MOCK_TOKEN_MARK as its text) into the template for
 * n lazy tokens tok[0..n) (they must outlive the run: hx arena or static). Call between the PRE and the
 * POST pieces. The bytes sent are the same as n TOK pieces rendered up front.
 */
int sl_mock_lazy_tokens(sl_mock_run *r, const sl_str *tok, size_t n);
/* Renders an error answer in the run's protocol (no ttft, no faults). Always returns 0. */
int sl_mock_plan_error(sl_mock_run *r, int status, const char *msg);
/* Renders a whole JSON body answer. */
int sl_mock_plan_body(sl_mock_run *r, int status, sl_str body, size_t out_tokens);
/* Parses the request body as JSON into r->doc (400 error planned on failure: returns SL_EPARSE). */
int sl_mock_parse_body(sl_mock_run *r);

/* ---- admission and playing (mock_run.c) ---- */
/* Scheduler hook: called when the answer is rendered; inference-server mode will queue here. */
void sl_mock_admit(sl_mock_run *r);
void sl_mock_run_start(sl_mock_run *r);
sl_mock_run *sl_mock_run_new(sl_hx *hx, const sl_mock_opts *o);
/* Closes the connection with a TCP reset (SO_LINGER 0) and ends the exchange. */
void sl_mock_reset_conn(sl_mock_run *r);

/* ---- inference-server mode (mock_engine.c) ---- */
bool sl_mock_engine_on(const sl_mock_opts *o);
/* Queues or starts r on the engine; false when the engine does not take it (then start it as usual). */
bool sl_mock_engine_admit(sl_mock_run *r);
/* r finished or was aborted: frees its batch slot or queue place. */
void sl_mock_engine_done(sl_mock_run *r);
/* The /metrics page (Prometheus text, vllm:* names). */
int sl_mock_engine_metrics(sl_buf *out);

/* ---- builders ---- */
void sl_mock_openai_chat(sl_mock_run *r);
void sl_mock_openai_embeddings(sl_mock_run *r);
void sl_mock_openai_models(sl_mock_run *r);
void sl_mock_openai_responses(sl_mock_run *r);
void sl_mock_anthropic_messages(sl_mock_run *r);
/* model: from the path; action: "generateContent" or "streamGenerateContent". */
void sl_mock_gemini(sl_mock_run *r, sl_str model, sl_str action);

/* ---- generation (mock_gen.c): pure functions ---- */
/* Token i of generated text: a word, with a leading space for i > 0. */
sl_str sl_mock_word(uint64_t i);
/* The reply text cut into tokens: k->text / echo body / generated words. */
typedef struct sl_mock_text {
    sl_str *tok;
    size_t n;
    bool truncated; /* cut by max_tokens */
} sl_mock_text;
int sl_mock_text_make(const sl_mock_knobs *k, sl_str body, uint64_t max_tokens, sl_arena *a, sl_mock_text *out);
/* The whole reply text (tokens joined). */
int sl_mock_text_join(const sl_mock_text *t, sl_arena *a, sl_str *out);
/* The tool a call is made to: x-mock-tool-call NAME, or "auto" = the request's first tool. */
typedef struct sl_mock_tool {
    sl_str name, args; /* args: compact JSON object text */
    bool found;
} sl_mock_tool;
/*
 * Offers one tool of the request (its name token and schema token, -1 if none)
 * to the choice; returns 1 once chosen (then stop offering), 0 if not, or an error.
 */
int sl_mock_tool_offer(const sl_json_doc *d, int name_tok, int schema_tok, sl_str want, sl_arena *a, sl_mock_tool *t);
/* After the offers: a named tool the request did not declare gets "{}"; "auto" without tools is SL_ENOTFOUND. */
int sl_mock_tool_settle(sl_str want, sl_mock_tool *t);
/* Splits s into tokens: a new token starts at each space that follows a non-space. */
int sl_mock_split_words(sl_str s, sl_arena *a, sl_str **out, size_t *n);
/* Splits tool-call arguments into fragments of at most SL_MOCK_ARG_FRAGMENT bytes (UTF-8 safe). */
int sl_mock_split_fragments(sl_str s, sl_arena *a, sl_str **out, size_t *n);
/* Prompt token estimate: (text bytes + 3) / 4 + 4 * messages. */
uint64_t sl_mock_prompt_tokens(uint64_t text_bytes, uint64_t messages);
/* The decoded byte length of string token t, or of every "text" string in an array of parts (counted, not decoded: a is unused, kept for callers). */
uint64_t sl_mock_content_bytes(const sl_json_doc *d, int t, sl_arena *a);
/* Arguments for a tool call from its JSON schema ("parameters" / "input_schema"); "{}" if none. */
int sl_mock_tool_args(const sl_json_doc *d, int schema, sl_arena *a, sl_str *out);
/* Deterministic unit vector of dim floats for the input text. */
void sl_mock_embedding(sl_str input, uint32_t dim, float *out);
/* Standard base64 of n bytes appended to out. */
int sl_mock_base64(sl_buf *out, const void *p, size_t n);
/* Optional integer member of an object (absent: dflt; present but bad: SL_EINVAL). */
int sl_mock_json_u64(const sl_json_doc *d, int obj, const char *key, uint64_t max, uint64_t dflt, uint64_t *out);
/* String member decoded into the arena; SL_ENOTFOUND if absent or not a string. */
int sl_mock_json_str(const sl_json_doc *d, int obj, const char *key, sl_arena *a, sl_str *out);
uint64_t sl_mock_next_id(void);

/* ---- read-back and counters (mock_record.c) ---- */
void sl_mock_record(const sl_hx *hx, uint64_t seq);
int sl_mock_records_json(sl_buf *out);
void sl_mock_records_clear(void);
typedef enum {
    SL_MOCK_STAT_REQUESTS = 0,
    SL_MOCK_STAT_IN_FLIGHT,
    SL_MOCK_STAT_ABORTED,
    SL_MOCK_STAT_STREAMS,
    SL_MOCK_STAT_COMPLETED,
    SL_MOCK_STAT_ERRORS,   /* error answers (status knob, validation) */
    SL_MOCK_STAT_FAULTS,   /* fail-after faults injected */
    SL_MOCK_STAT__COUNT,
} sl_mock_stat;
void sl_mock_stat_add(sl_mock_stat s, int64_t delta);
int sl_mock_stats_json(sl_buf *out);
void sl_mock_stats_reset(void);

#endif
