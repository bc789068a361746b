/*
 * xlat_ir.h: the canonical intermediate form shared by the protocol codecs
 * (openai.c, anthropic.c, gemini.c) and the dispatcher (translate.c). Not for
 * use outside src/protocols.
 *
 * Everything in the IR lives in the request arena or points into the parsed
 * input. Strings are decoded (unescaped) text; fields holding JSON (tool
 * arguments, schemas, Gemini function responses) are raw, valid JSON text.
 */
#ifndef SL_XLAT_IR_H
#define SL_XLAT_IR_H

#include "protocols/translate.h"

typedef enum {
    SL_IR_TEXT = 0,
    SL_IR_IMAGE,
    SL_IR_TOOL_CALL,
    SL_IR_TOOL_RESULT,
} sl_ir_part_kind;

typedef struct sl_ir_part {
    sl_ir_part_kind kind;
    sl_str text;      /* TEXT; TOOL_RESULT: the result (raw JSON object when result_json) */
    sl_str mime;      /* IMAGE: media type (may be empty for URLs) */
    sl_str data;      /* IMAGE: base64 payload, or empty */
    sl_str url;       /* IMAGE: remote URL when data is empty */
    sl_str id;        /* TOOL_CALL / TOOL_RESULT: call id */
    sl_str name;      /* TOOL_CALL / TOOL_RESULT: function name */
    sl_str args;      /* TOOL_CALL: arguments, always a JSON object text */
    bool is_error;    /* TOOL_RESULT */
    bool result_json; /* TOOL_RESULT: text is a JSON object (Gemini functionResponse.response) */
    bool matched;     /* TOOL_CALL: already paired with a result (id resolution) */
} sl_ir_part;

/* Tool results travel in USER messages (Anthropic's model); OpenAI's "tool" role maps there. */
typedef enum { SL_IR_USER = 0, SL_IR_ASSISTANT } sl_ir_role;

typedef struct sl_ir_msg {
    sl_ir_role role;
    sl_ir_part *parts;
    uint32_t nparts;
} sl_ir_msg;

typedef struct sl_ir_tool {
    sl_str name, description;
    sl_str schema;       /* raw JSON schema object, or empty */
    bool schema_openapi; /* Gemini `parameters`: OpenAPI subset with upper-case types */
} sl_ir_tool;

typedef enum {
    SL_IR_TC_UNSET = 0,
    SL_IR_TC_AUTO,
    SL_IR_TC_NONE,
    SL_IR_TC_REQUIRED,
    SL_IR_TC_TOOL, /* tool_choice_name */
} sl_ir_tool_choice;

typedef struct sl_ir_req {
    sl_str model;
    sl_str *system; /* system/developer text, in order */
    uint32_t nsystem;
    sl_ir_msg *msgs;
    uint32_t nmsgs;
    sl_ir_tool *tools;
    uint32_t ntools;
    sl_ir_tool_choice tool_choice;
    sl_str tool_choice_name;
    int parallel_tools; /* -1 unset, 0 no, 1 yes */
    bool has_temperature, has_top_p, has_top_k, has_max_tokens;
    double temperature, top_p;
    int64_t top_k, max_tokens;
    sl_str *stop;
    uint32_t nstop;
    bool stream, include_usage;
    sl_str user;
    bool json_mode;        /* OpenAI response_format json_object/json_schema, Gemini responseMimeType json */
    sl_str json_schema;    /* raw schema when given */
} sl_ir_req;

typedef struct sl_ir_resp {
    sl_str id, model;
    sl_ir_part *parts; /* TEXT and TOOL_CALL */
    uint32_t nparts;
    sl_finish finish;
    sl_usage usage;
} sl_ir_resp;

/* Translation context: arena, options, and the error message for a 400. */
typedef struct sl_xl_ctx {
    sl_arena *a;
    const sl_xlat_req_opts *ro;
    const sl_xlat_resp_opts *po;
    const char *errmsg;
    uint32_t next_call_id; /* for synthesized tool call ids */
} sl_xl_ctx;

/* ---- stream events in canonical form ---- */
typedef enum {
    SL_EV_START = 0, /* id (may be empty) */
    SL_EV_TEXT,      /* text */
    SL_EV_TOOL_START,/* tool, id, name */
    SL_EV_TOOL_ARGS, /* tool, text = arguments fragment */
    SL_EV_FINISH,    /* finish */
    SL_EV_USAGE,     /* usage updated in the stream state */
    SL_EV_END,       /* upstream's own end marker */
    SL_EV_ERROR,     /* status, text = message */
} sl_ev_kind;

typedef struct sl_ir_ev {
    sl_ev_kind kind;
    sl_str text, id, name;
    uint32_t tool; /* tool call index within the response, 0-based */
    sl_finish finish;
    int status;
} sl_ir_ev;

#define SL_XL_MAX_TOOLS 128             /* tool calls per streamed response */
#define SL_XL_MAX_STREAM_BUF (8u << 20) /* bytes of buffered tool arguments per stream */

/* Encoder state for a pending (Gemini-bound) tool call, and for Anthropic blocks. */
typedef struct sl_xl_tool_state {
    char *id, *name;
    sl_buf args;
    int block; /* Anthropic content block index, -1 none */
    bool flushed;
} sl_xl_tool_state;

struct sl_xlat_stream {
    sl_proto from, to;
    bool passthrough, wants_usage;
    sl_arena arena; /* scratch, reset for every event */
    char *model;    /* public model */
    char *id;       /* response id (upstream's, else opts) */
    char *id_hint;
    int64_t created;
    sl_usage usage;
    sl_finish finish;
    char *up_model;       /* the model the upstream named, from its first event that had one; NULL until then */
    sl_text_capture *text_cap; /* NULL unless sl_xlat_stream_capture_text */
    bool drop_event;      /* pass-through: do not forward the current event */
    sl_str replace_event; /* pass-through: forward this instead (non-empty) */
    /* decoder */
    bool dec_started;
    uint32_t dec_tools;   /* tool calls seen upstream */
    int dec_cur_tool;     /* Anthropic: tool index of the open tool_use block, -1 none */
    uint8_t dec_seen[SL_XL_MAX_TOOLS]; /* OpenAI: tool index already started */
    int64_t a_in, a_cache_read, a_cache_write;
    /* encoder */
    bool enc_started, finish_sent, done;
    int enc_block;        /* Anthropic: open content block index, -1 none */
    bool enc_block_text;  /* the open block is text */
    int enc_next_block;
    sl_xl_tool_state tools[SL_XL_MAX_TOOLS];
    uint32_t ntools;
    size_t buffered;
};

/* ---- per-protocol codecs ---- */
int sl_oai_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r);
int sl_oai_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out);
int sl_oai_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r);
int sl_oai_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out);
int sl_oai_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out);
int sl_oai_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out);
void sl_oai_usage_decode(const sl_json_doc *d, int u, sl_usage *out);
void sl_oai_usage_encode(sl_jw *w, const sl_usage *u);

int sl_ant_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r);
int sl_ant_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out);
int sl_ant_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r);
int sl_ant_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out);
int sl_ant_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out);
int sl_ant_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out);
void sl_ant_usage_decode(const sl_json_doc *d, int u, sl_usage *out);
void sl_ant_usage_encode(sl_jw *w, const sl_usage *u);

int sl_gem_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r);
int sl_gem_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out);
int sl_gem_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r);
int sl_gem_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out);
int sl_gem_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out);
int sl_gem_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out);
void sl_gem_usage_decode(const sl_json_doc *d, int u, sl_usage *out);
void sl_gem_usage_encode(sl_jw *w, const sl_usage *u);

/* ---- shared helpers (xlat_util.c) ---- */
/* Member of obj (or -1 when obj is absent or not an object). */
int sl_xl_get(const sl_json_doc *d, int obj, const char *key);
/* Decoded string member; false (and *out empty) when absent or not a string. */
bool sl_xl_str(const sl_json_doc *d, int obj, const char *key, sl_arena *a, sl_str *out);
bool sl_xl_tok_str(const sl_json_doc *d, int t, sl_arena *a, sl_str *out);
bool sl_xl_int(const sl_json_doc *d, int obj, const char *key, int64_t *out);
bool sl_xl_tok_int(const sl_json_doc *d, int t, int64_t *out); /* the same for a token already found */
bool sl_xl_num(const sl_json_doc *d, int obj, const char *key, double *out);
bool sl_xl_is(const sl_json_doc *d, int t, sl_json_type ty);
int sl_xl_fail(sl_xl_ctx *c, const char *msg); /* sets errmsg, returns SL_EINVAL */
/* Parses text as JSON into the arena; true when it is an object (doc filled). */
bool sl_xl_parse_object(sl_str text, sl_arena *a, sl_json_doc *doc);
/* The args of a tool call given as a JSON string (OpenAI): valid object text, "{}" when invalid. */
sl_str sl_xl_args_from_string(sl_str s, sl_arena *a);
/* Writes a JSON schema; when openapi, lower-cases "type" values (Gemini OpenAPI subset -> JSON Schema). */
void sl_xl_write_schema(sl_jw *w, const sl_ir_tool *t, sl_arena *a);
/* Fills tool result names from earlier tool calls by id, and missing ids by name (Gemini). */
int sl_xl_resolve_tool_ids(sl_ir_req *r, sl_xl_ctx *c);
/* A fresh tool call id: "call_<prefix>_<n>". */
sl_str sl_xl_new_call_id(sl_xl_ctx *c, sl_str prefix);
/* Concatenates parts with sep between them, into the arena (p NULL on failure). */
sl_str sl_xl_join(sl_arena *a, const sl_str *parts, uint32_t n, sl_str sep);
/* Joins the TEXT parts of a message. */
sl_str sl_xl_msg_text(sl_arena *a, const sl_ir_msg *m, sl_str sep);
/* Splits a data: URL ("data:image/png;base64,AAAA"); false if not one. */
bool sl_xl_data_url(sl_str url, sl_str *mime, sl_str *b64);
/* Appends `data: <json>\n\n` (event name when non-NULL) around what fn writes. */
int sl_xl_sse_begin(sl_buf *out, const char *event);
int sl_xl_sse_finish(sl_buf *out, const sl_jw *w);
/* Notes the upstream's model name (string member key of obj) unless one was noted already. */
void sl_xl_note_model(sl_xlat_stream *s, const sl_json_doc *d, int obj, const char *key);
/* Ends the stream state after a terminal event. */
void sl_xl_stream_mark_done(sl_xlat_stream *s);
/* Stream decoders hand canonical events here; it routes them to the encoder. */
int sl_xl_emit(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out);
/* Writes a whole error object in protocol p's shape. */
void sl_xl_error_body(sl_jw *w, sl_proto p, int status, const char *type, const char *code, sl_str msg);
/* Error status from a protocol's own error type / status string. */
int sl_xl_status_from_type(sl_str type);

#endif
