/*
 * mcp_int.h: what the files of src/mcp/ share: one inbound exchange carrying
 * JSON-RPC (mcp_x), one request inside it (mcp_call), the session record,
 * the template renderer and the upstream MCP client. Not for use outside
 * src/mcp/ (and its unit tests).
 */
#ifndef SL_MCP_INT_H
#define SL_MCP_INT_H

#include "gateway/gateway.h"
#include "json/json.h"
#include "mcp/mcp.h"
#include "mcp/session.h"

#define SL_MCP_MAX_UPSTREAMS 64
#define SL_MCP_MAX_BATCH 64
#define SL_MCP_MAX_NAME 256 /* server and consumer names in a session record */

/* JSON-RPC 2.0 and MCP error codes. */
enum {
    SL_JSONRPC_PARSE_ERROR = -32700,
    SL_JSONRPC_INVALID_REQUEST = -32600,
    SL_JSONRPC_METHOD_NOT_FOUND = -32601,
    SL_JSONRPC_INVALID_PARAMS = -32602,
    SL_JSONRPC_INTERNAL_ERROR = -32603,
    SL_MCP_ERR_SERVER = -32000,        /* transport-level: bad or missing session, bad headers */
    SL_MCP_ERR_SESSION_NOT_FOUND = -32001,
    SL_MCP_ERR_FORBIDDEN = -32003,     /* a tool the caller may not use */
    SL_MCP_ERR_RATE_LIMITED = -32029, /* the consumer's requests_per_* limit refused (HTTP 429) */
    SL_MCP_ERR_CANCELLED = -32800,     /* the request was cancelled (notifications/cancelled); nobody waits for it */
};

/* Protocol revisions, oldest first; the last is the one offered when a client asks for another. */
extern const char *const sl_mcp_versions[];
extern const size_t sl_mcp_nversions;
bool sl_mcp_version_supported(sl_str v);

/* ---- JSON-RPC messages ---- */
typedef enum { SL_RPC_INVALID = 0, SL_RPC_REQUEST, SL_RPC_NOTIFICATION, SL_RPC_RESPONSE } sl_rpc_kind;

typedef struct sl_rpc_msg {
    sl_rpc_kind kind;
    int tok;          /* the message object */
    sl_str id;        /* raw JSON of the id (requests, responses); "null" when unusable */
    sl_str method;    /* decoded (requests, notifications) */
    int params;       /* token or -1 */
    const char *why;  /* for SL_RPC_INVALID */
} sl_rpc_msg;

/* Classifies the message object at token t of d (strings decoded into a). */
void sl_rpc_classify(const sl_json_doc *d, int t, sl_arena *a, sl_rpc_msg *m);
/* Appends {"jsonrpc":"2.0","id":ID,"result":RESULT}. */
int sl_rpc_write_result(sl_buf *out, sl_str id, sl_str result_json);
/* Appends {"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M}}; id empty = null. */
int sl_rpc_write_error(sl_buf *out, sl_str id, int code, const char *msg);
/* The same with "data":DATA in the error object when data_json is not empty (raw JSON). */
int sl_rpc_write_error_data(sl_buf *out, sl_str id, int code, const char *msg, sl_str data_json);

/* ---- session record ---- */
typedef struct mcp_sess {
    char version[16];
    char *up_sid[SL_MCP_MAX_UPSTREAMS]; /* proxy: upstream session ids (arena), NULL = none yet */
    bool initialized;                   /* notifications/initialized was seen */
    char *server;                       /* the server it was opened on (arena), NULL = not recorded */
    char *consumer;                     /* the consumer that opened it (arena), NULL = not recorded */
} mcp_sess;

/*
 * Encodes/decodes the stored form, a small JSON object:
 * {"v":VERSION,"i":INITIALIZED,"u":[UPSTREAM SESSION ID or null, ...],"s":SERVER,"c":CONSUMER}
 * ("s" and "c" only when set; at most SL_MCP_MAX_NAME bytes each, SL_EPARSE otherwise).
 */
int sl_mcp_sess_encode(const mcp_sess *s, size_t nup, sl_buf *out);
int sl_mcp_sess_decode(sl_str text, sl_arena *a, mcp_sess *s);

/*
 * ---- the session store of an exchange (session_shared.c) ----
 * shared: the session may live in the state backend (Streamable HTTP); false
 * for legacy SSE sessions, which stay with their stream on this instance.
 * With state.backend redis, shared sessions are kept in Redis and a call
 * answers later on the worker's loop: *pending is set meanwhile, and
 * sl_mcp_sess_cancel(pending) drops the call (its callback never runs), as
 * the exchange must when its client goes away. Otherwise the memory store
 * (session.h) answers before the call returns. The callback gets the codes
 * of sl_mcp_store_cb; SL_EIO when Redis fails and state.redis.on_error is deny.
 */
typedef struct mcp_sess_op mcp_sess_op;
void sl_mcp_sess_get(sl_gw_req *r, bool shared, sl_str sid, sl_mcp_store_cb cb, void *ud, mcp_sess_op **pending);
/* create: a new session (bounded by mcp.max_sessions); else an update, SL_ENOTFOUND when it has ended meanwhile. */
void sl_mcp_sess_put(sl_gw_req *r, bool shared, sl_str sid, sl_str value, bool create, sl_mcp_store_cb cb, void *ud,
                     mcp_sess_op **pending);
void sl_mcp_sess_del(sl_gw_req *r, bool shared, sl_str sid, sl_mcp_store_cb cb, void *ud, mcp_sess_op **pending);
void sl_mcp_sess_cancel(mcp_sess_op **pending);

/* ---- one inbound exchange ---- */
typedef struct mcp_x mcp_x;
typedef struct mcp_call mcp_call;

struct mcp_call {
    mcp_x *x;
    const sl_json_doc *doc;
    sl_rpc_msg m;
    bool done;
    sl_buf out;               /* the JSON-RPC response once done */
    void *op;                 /* the operation in flight (rest.c, proxy.c) */
    void (*cancel)(mcp_call *c); /* stops op without callbacks */
    uint64_t start_ns;
    sl_str tool;              /* tools/call: the tool name */
};

enum { MCPX_HTTP = 0, MCPX_LEGACY };

struct mcp_x {
    sl_gw_req *r;
    sl_arena *a;
    const sl_mcp_cfg *mc;
    const sl_mcp_server_cfg *srv;
    int transport;            /* MCPX_* */
    sl_str sid;               /* session id */
    mcp_sess sess;
    bool sess_dirty, new_session, have_session;
    sl_json_doc doc;
    mcp_call *calls;
    size_t ncalls, npending;
    bool batch, aborted, finished;
    bool accepts_sse;         /* the client's Accept allows an event stream answer */
    bool sse_started;         /* the answer became an event stream (notifications forwarded) */
    char legacy_id[40];       /* 32 hex characters */       /* legacy transport: the stream that gets the answers */
    void *proxy;              /* proxy.c state for this exchange (initialize fan-out) */
    void *inflight;           /* cancel.c registration, NULL when not listed */
    mcp_sess_op *store_op;    /* a session store call in flight (Redis), cancelled when the client goes away */
    struct sl_rl_wait *rl_op; /* the rate limit check in flight (Redis), cancelled likewise */
};

/* ---- notifications/cancelled across exchanges and workers (cancel.c) ---- */
/* Lists x (it has a session id) so that its requests can be cancelled from another POST. */
int sl_mcp_inflight_add(mcp_x *x);
/* Unlists x (idempotent); must run before x's arena goes. */
void sl_mcp_inflight_remove(mcp_x *x);
/* Cancels request id (raw JSON) of session sid wherever it runs; false when none is in flight. */
bool sl_mcp_inflight_cancel(sl_str sid, sl_str id);

/* True while the worker of r drains for a stop: long-lived streams end then (clients reconnect). */
bool sl_mcp_draining(const sl_gw_req *r);

/* A request finished: result is the JSON of "result" (copied). */
void sl_mcp_call_result(mcp_call *c, sl_str result_json);
void sl_mcp_call_error(mcp_call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A whole JSON-RPC message to hand on as is (proxy: the upstream's response, id already the caller's). */
void sl_mcp_call_raw(mcp_call *c, sl_str message_json);
/* A message sent before the response (a notification, e.g. progress): forwarded when the transport can. */
void sl_mcp_call_notify(mcp_call *c, sl_str message_json);
/* tools/call result helpers: one text content, optionally structured, optionally an error. */
int sl_mcp_write_tool_result(sl_buf *out, sl_str text, sl_str structured_json, bool is_error);

/* ---- templates ---- */
typedef struct sl_tpl_ctx {
    const sl_json_doc *args; int args_tok;      /* tool arguments (object) or -1 */
    const sl_kv *config; size_t nconfig;        /* server config values */
    const sl_json_doc *resp; int resp_tok;      /* parsed upstream answer or -1 */
    sl_str body;                                /* raw upstream answer */
    int status;
} sl_tpl_ctx;

typedef enum { SL_TPL_RAW = 0, SL_TPL_URL, SL_TPL_JSON } sl_tpl_mode;

/*
 * Renders tpl: {{args.x}}, {{config.x}}, {{response.a.b}} (also a.0.b for
 * arrays), {{body}}, {{status}}; with mode URL values are percent-encoded,
 * with JSON string values are JSON-escaped (no quotes) and other values are
 * written as JSON; in RAW mode strings are written as they are and other
 * values as JSON. {x} (single braces) is the path argument x in URL mode.
 * Unknown names render as nothing. Returns 0 or the sl_buf error.
 */
int sl_tpl_render(sl_str tpl, const sl_tpl_ctx *ctx, sl_tpl_mode mode, sl_buf *out);
/* Token at a dotted path ("a.b.0.c") under t, or -1. */
int sl_json_path(const sl_json_doc *d, int t, sl_str path);
/* Appends the percent-encoding of s (RFC 3986 unreserved kept). */
int sl_url_encode(sl_buf *out, sl_str s);

/* ---- operations ---- */
void sl_mcp_rest_call(mcp_call *c, const sl_mcp_tool_cfg *t, int args_tok);
/* Proxy servers: initialize fan-out, tools/list merge, tools/call and other methods forwarded. */
void sl_mcp_proxy_initialize(mcp_x *x, mcp_call *c, sl_str client_version);
void sl_mcp_proxy_tools_list(mcp_call *c);
void sl_mcp_proxy_tools_call(mcp_call *c, sl_str tool, int args_tok);
void sl_mcp_proxy_forward(mcp_call *c);
void sl_mcp_proxy_delete(mcp_x *x);
/* Ends the session in the store and answers the DELETE (host.c). */
void sl_mcp_delete_local(mcp_x *x);

/* The initialize result of a hosted (rest/openapi) server. */
int sl_mcp_write_initialize(const sl_mcp_server_cfg *s, sl_str version, sl_str capabilities_json, sl_buf *out);

/* Legacy HTTP+SSE transport (legacy.c). */
void sl_mcp_legacy_open(sl_gw_req *r, const sl_mcp_server_cfg *srv);
/* Delivers one message to the legacy stream id; false if it is gone. */
bool sl_mcp_legacy_push(const char *id, sl_str message_json);
bool sl_mcp_legacy_exists(const char *id);
/* Runs the JSON-RPC messages of a legacy POST (host.c). */
void sl_mcp_dispatch_legacy(sl_gw_req *r, const sl_mcp_server_cfg *srv, sl_str stream_id);

/* YAML subtree -> JSON (schemas in config and OpenAPI documents). */
struct sl_ynode;
void sl_mcp_ynode_to_json(const struct sl_ynode *n, sl_jw *w);
int sl_mcp_build_input_schema(const sl_mcp_arg_cfg *args, size_t nargs, sl_buf *out);

/* Random id: 32 hex characters + NUL into out (>= 33 bytes). */
void sl_mcp_random_id(char *out);

#endif
