/*
 * translate.h: protocol translation between OpenAI Chat Completions,
 * Anthropic Messages and Gemini generateContent, both directions, streaming
 * included. Pure data transformation: no I/O, no clocks unless asked.
 *
 * Design: every body goes through one canonical intermediate form (the IR,
 * src/protocols/xlat_ir.h). Each protocol has a decoder (its JSON -> IR) and
 * an encoder (IR -> its JSON) for requests, non-stream responses and stream
 * events, so three decoders and three encoders cover all nine pairs. The IR
 * keeps what the three protocols have in common (system text, text and image
 * parts, tool definitions/calls/results, tool choice, sampling parameters,
 * stop reasons, usage); what only one side has is dropped and listed in
 * docs/translation.md.
 *
 * Same protocol in and out is not translated: the gateway splices the
 * original body. The gateway still needs usage and the finish reason of every
 * request, so the "extract" functions below work on any protocol, and a
 * stream created with from == to is a pass-through filter that re-frames each
 * event unchanged while watching usage (and, for OpenAI, strips the final
 * usage-only chunk when the caller did not ask for usage).
 *
 * Usage is always reported in one convention (sl_usage below): input counts
 * every prompt token including cached ones, output counts every generated
 * token including reasoning ones (OpenAI's convention; Anthropic's and
 * Gemini's numbers are converted).
 */
#ifndef SL_TRANSLATE_H
#define SL_TRANSLATE_H

#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/sl.h"
#include "json/json.h"

typedef struct sl_usage {
    int64_t input_tokens;       /* all prompt tokens, cached ones included */
    int64_t output_tokens;      /* all generated tokens, reasoning included */
    int64_t cached_tokens;      /* prompt tokens read from a prompt cache */
    int64_t cache_write_tokens; /* prompt tokens written to a cache (Anthropic cache_creation) */
    int64_t reasoning_tokens;   /* part of output_tokens spent thinking */
    bool present;               /* the upstream reported usage at all */
} sl_usage;

/* Why generation stopped, in canonical form. */
typedef enum {
    SL_FINISH_NONE = 0,       /* not known (yet) */
    SL_FINISH_STOP,           /* natural end */
    SL_FINISH_LENGTH,         /* max tokens reached */
    SL_FINISH_TOOL_CALLS,     /* the model wants tool results */
    SL_FINISH_CONTENT_FILTER, /* safety / refusal */
    SL_FINISH_STOP_SEQUENCE,  /* a caller stop sequence matched (OpenAI reports it as "stop") */
    SL_FINISH_ERROR,          /* the stream ended with an error */
} sl_finish;

/* The protocol's spelling of f ("stop", "end_turn", "STOP", ...). */
const char *sl_finish_name(sl_proto p, sl_finish f);
/* The canonical form of a protocol's finish reason; unknown strings give SL_FINISH_STOP. */
sl_finish sl_finish_parse(sl_proto p, sl_str s);
const char *sl_proto_name(sl_proto p);

/* ---- requests ---- */

typedef struct sl_xlat_req_opts {
    sl_str upstream_model;    /* model for the target; empty = keep the caller's (impossible from Gemini) */
    uint64_t default_max_tokens; /* to Anthropic when the caller gave none; 0 = 4096 */
    bool stream;              /* inbound Gemini only: true for :streamGenerateContent (it is in the URL) */
    bool openai_max_completion_tokens; /* to OpenAI: write max_completion_tokens instead of max_tokens */
    sl_str id_prefix;         /* makes synthesized tool call ids unique (Gemini has none); e.g. request id */
} sl_xlat_req_opts;

typedef struct sl_xlat_req_info {
    bool stream;        /* the caller asked for a stream */
    bool include_usage; /* OpenAI caller set stream_options.include_usage */
    sl_str model;       /* the model named in the body (empty for Gemini, whose model is in the URL) */
} sl_xlat_req_info;

/*
 * Request body of protocol `from` (parsed in `in`) -> body for protocol `to`,
 * appended to out. For to == GEMINI the model and the stream flag belong in
 * the URL (:generateContent / :streamGenerateContent?alt=sse): take them from
 * opts->upstream_model and info->stream. For to == OPENAI with a stream,
 * stream_options.include_usage is set so the gateway can count tokens. For to
 * == ANTHROPIC max_tokens is required: the caller's max_tokens /
 * max_completion_tokens / maxOutputTokens, else default_max_tokens, else 4096.
 * Strings in the output may point into `in` or the arena, so keep both alive
 * while out is used. info may be NULL. On invalid input returns SL_EINVAL with
 * *errmsg (arena or static) fit for a 400 reply.
 * from == to is allowed (a normalizing re-encode) but the gateway splices instead.
 */
int sl_xlat_request(sl_proto from, sl_proto to, const sl_json_doc *in, const sl_xlat_req_opts *opts, sl_arena *a,
                    sl_buf *out, sl_xlat_req_info *info, const char **errmsg);
/* Only the info (stream flag, usage flag, model) of a request, for the same-protocol path. */
int sl_xlat_request_info(sl_proto p, const sl_json_doc *in, const sl_xlat_req_opts *opts, sl_xlat_req_info *info);

/* ---- non-stream responses ---- */

typedef struct sl_xlat_resp_opts {
    sl_str public_model; /* the model name shown to the caller */
    sl_str id;           /* response id when the upstream gives none; prefix of synthesized tool call ids */
    int64_t created;     /* OpenAI "created" (unix seconds); 0 = the current time */
} sl_xlat_resp_opts;

/*
 * Upstream 2xx response body of protocol `from` -> body in protocol `to`,
 * appended to out. usage and finish (either may be NULL) receive what the
 * upstream reported. from == to copies the body unchanged (the gateway
 * splices the model name itself). SL_EPARSE when the body is not a response
 * of protocol `from`.
 */
int sl_xlat_response(sl_proto from, sl_proto to, const char *body, size_t len, const sl_xlat_resp_opts *opts,
                     sl_arena *a, sl_buf *out, sl_usage *usage, sl_finish *finish);
/* Usage and finish reason of a response body, without translating it. */
int sl_xlat_response_usage(sl_proto p, const char *body, size_t len, sl_arena *a, sl_usage *usage, sl_finish *finish);
/* The same in two steps, for a caller that also edits the body: parse once (SL_EPARSE unless a JSON object),
 * then read usage (and finish, when not NULL) from the tokens. */
int sl_xlat_parse_response(const char *body, size_t len, sl_arena *a, sl_json_doc *d);
int sl_xlat_response_usage_doc(sl_proto p, const sl_json_doc *d, sl_arena *a, sl_usage *usage, sl_finish *finish);

/* ---- streams ---- */

typedef struct sl_xlat_stream sl_xlat_stream;

/*
 * The text of a streamed answer as it goes by, for the access log
 * (telemetry.log_content): at most max bytes, cut on a UTF-8 boundary, with
 * truncated set once something was left out. Initialise with
 * sl_text_capture_init; release with sl_text_capture_free.
 */
typedef struct sl_text_capture {
    sl_buf buf;
    size_t max;     /* 0 = off: adding does nothing */
    bool truncated; /* text was left out (over max, or out of memory) */
} sl_text_capture;

void sl_text_capture_init(sl_text_capture *c, size_t max);
void sl_text_capture_add(sl_text_capture *c, sl_str text);
void sl_text_capture_free(sl_text_capture *c);

/*
 * A stateful translator from upstream SSE events (protocol `from`) to SSE
 * events in the caller's protocol `to`. from == to makes a pass-through
 * filter: events are re-framed unchanged but for the model name (set to
 * opts->public_model when that is not empty: OpenAI "model", Anthropic
 * message_start "message.model", Gemini "modelVersion"), usage and finish are
 * recorded, and for OpenAI the usage-only chunk is dropped (and a usage member
 * on a chunk with choices removed) unless caller_wants_usage. NULL on
 * allocation failure.
 */
sl_xlat_stream *sl_xlat_stream_new(sl_proto from, sl_proto to, const sl_xlat_resp_opts *opts,
                                   bool caller_wants_usage);
/*
 * One upstream event: its name (may be empty) and its data (the data lines
 * joined by '\n'). Appends zero or more complete SSE events to out. An
 * upstream error event is translated into the caller's error event and ends
 * the stream. Returns 0, SL_EPARSE for a data payload that is not valid for
 * the protocol (the caller should then call sl_xlat_stream_error), or
 * SL_ELIMIT / SL_ENOMEM.
 */
int sl_xlat_stream_event(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out);
/* Upstream ended cleanly: emits the closing events ([DONE], message_stop, last Gemini chunk) if not yet sent. */
int sl_xlat_stream_end(sl_xlat_stream *s, sl_buf *out);
/*
 * Emits a mid-stream error in the caller's shape (OpenAI: a data error object
 * and no [DONE]; Anthropic: event: error; Gemini: a data error object) and
 * ends the stream. http_status picks the error type (e.g. 502, 504).
 */
int sl_xlat_stream_error(sl_xlat_stream *s, int http_status, sl_str message, sl_buf *out);
const sl_usage *sl_xlat_stream_usage(const sl_xlat_stream *s);
sl_finish sl_xlat_stream_finish(const sl_xlat_stream *s);
/* The model the upstream named in its stream (OpenAI "model", Anthropic message_start "message.model",
 * Gemini "modelVersion"), from the first event that had one; empty if none did. */
sl_str sl_xlat_stream_upstream_model(const sl_xlat_stream *s);
/* From now on the answer's text (what a non-stream answer has as choices[0].message.content: text deltas of
 * the first choice or candidate, no reasoning, no tool arguments) is added to c, which must outlive s. */
void sl_xlat_stream_capture_text(sl_xlat_stream *s, sl_text_capture *c);
/* A terminal event ([DONE], message_stop, error, final Gemini chunk) has been emitted. */
bool sl_xlat_stream_done(const sl_xlat_stream *s);
void sl_xlat_stream_free(sl_xlat_stream *s);

/* ---- errors ---- */

/*
 * Appends a gateway error body in protocol `to`. type/code are OpenAI-style
 * (SPEC §3 table; either may be NULL: type then follows the status); the
 * Anthropic type and the Gemini status are derived from http_status.
 */
int sl_xlat_error(sl_proto to, int http_status, const char *type, const char *code, sl_str message, sl_buf *out);
/*
 * An upstream error body (protocol `from`, any shape or none) -> the same
 * error in protocol `to`, keeping the upstream message where one is found.
 */
int sl_xlat_error_from_upstream(sl_proto from, sl_proto to, int http_status, const char *body, size_t len,
                                sl_arena *a, sl_buf *out);
const char *sl_xlat_openai_error_type(int http_status);
const char *sl_xlat_anthropic_error_type(int http_status);
const char *sl_xlat_gemini_error_status(int http_status);

#endif
