/*
 * upcall.h: the gateway as an MCP client of an upstream MCP server (proxy
 * servers). One mcp_up is one JSON-RPC exchange with an upstream:
 *
 *  - Streamable HTTP: one POST (or DELETE) carrying our session id; the
 *    answer is JSON or an event stream; every message in it is handed to
 *    on_msg as it arrives, and the upstream's MCP-Session-Id is reported.
 *  - Legacy HTTP+SSE: a fresh stream per exchange (GET, "endpoint" event),
 *    then initialize + notifications/initialized + the message, answered on
 *    the stream; the stream is closed once the answer with want_id came.
 *
 * Heap-allocated and freed after on_done (or by mcp_up_cancel, after which no
 * callback comes).
 */
#ifndef SL_MCP_UPCALL_H
#define SL_MCP_UPCALL_H

#include "http/upstream.h"
#include "json/json.h"
#include "mcp/mcp.h"

typedef struct mcp_up mcp_up;

typedef struct mcp_up_cbs {
    /* A JSON-RPC message from the upstream (raw text, valid during the call). */
    void (*on_msg)(void *ud, sl_str msg);
    /* The end: HTTP status (0 when none), the upstream session id if it sent one, an error text or NULL. */
    void (*on_done)(void *ud, int status, sl_str session_id, const char *err);
} mcp_up_cbs;

typedef struct mcp_up_req {
    const sl_mcp_upstream_cfg *cfg;
    const char *method;      /* "POST" or "DELETE" */
    sl_str session_id;       /* streamable: ours with the upstream, or empty */
    sl_str version;          /* MCP-Protocol-Version to send, or empty */
    sl_str body;             /* the JSON-RPC message (copied) */
    sl_str want_id;          /* legacy: raw JSON id of the answer that ends the exchange */
    const char *request_id;  /* x-request-id */
    size_t max_bytes;
} mcp_up_req;

mcp_up *mcp_up_start(sl_upstream *u, const mcp_up_req *req, const mcp_up_cbs *cbs, void *ud);
void mcp_up_cancel(mcp_up *q);

#endif
