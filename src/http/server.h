/*
 * server.h: the HTTP/1.1 server side: listeners, connections and the
 * exchange (sl_hx) through which a handler answers one request.
 *
 * A connection reads, parses (parser.h), collects the body (Content-Length or
 * chunked, bounded by max_body_bytes, with Expect: 100-continue), then hands
 * the handler one sl_hx. Pipelined requests are answered in order: the next
 * one is dispatched only after the current one finished.
 *
 * Contract for handlers:
 *  - The handler owns the exchange from dispatch until it calls
 *    sl_hx_finish(), which it must do exactly once, also after an abort.
 *  - Request slices (hx->req, hx->body) stay valid until sl_hx_finish().
 *  - sl_hx_write() copies; output is flushed as it comes (SSE events go out
 *    one by one, or one upstream read's worth at a time under sl_hx_cork). Back-pressure: when sl_hx_pending() is above the high-water
 *    mark the producer should stop and wait for the on_drain callback.
 *  - When the client goes away first, on_abort fires once; later writes are
 *    discarded. The handler cancels its upstream work and calls finish.
 */
#ifndef SL_HTTP_SERVER_H
#define SL_HTTP_SERVER_H

#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"
#include "http/parser.h"

typedef struct sl_conn sl_conn;
typedef struct sl_hx sl_hx;
typedef struct sl_server sl_server;

typedef void (*sl_hx_handler)(sl_hx *hx, void *ctx);
typedef void (*sl_hx_cb)(sl_hx *hx, void *arg);

#define SL_HX_HIGH_WATER (256u * 1024u) /* pending output above which producers should pause */
#define SL_HX_LOW_WATER (64u * 1024u)   /* on_drain fires when pending falls to this */

typedef struct sl_server_limits {
    size_t max_header_bytes;
    size_t max_headers;
    size_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_connections; /* per worker share is computed by the caller */
} sl_server_limits;

struct sl_hx {
    sl_http_request req;
    sl_str body;          /* the whole decoded body */
    sl_arena arena;       /* per-request memory; freed after finish */
    uv_loop_t *loop;
    sl_server *server;
    void *worker;         /* the sl_worker that runs this exchange (opaque here) */
    uint64_t start_ns;    /* uv_hrtime() when the header block was complete */
    void *data;           /* free for the handler */
    /* private */
    sl_conn *conn;
    int status;
    bool head_sent, chunked_out, finished, aborted, close_after, close_announced, no_body;
    int64_t out_remaining; /* content-length left to write; -1 if chunked */
    sl_hx_cb on_abort, on_drain;
    void *on_abort_arg, *on_drain_arg;
};

sl_server *sl_server_new(uv_loop_t *loop, const sl_server_limits *lim, sl_hx_handler handler, void *ctx);
/* Listens on host:port with SO_REUSEPORT (so every worker can bind the same address). */
int sl_server_listen(sl_server *s, const char *host, int port);
/*
 * SO_REUSEPORT would also let a second process bind an address this one
 * uses, and the kernel would split the traffic between them. Call this once
 * per address before any worker listens: it fails (SL_EIO, errno set) when
 * anything is bound there already.
 */
int sl_server_probe_free(const char *host, int port);
/* Stops accepting; open connections finish their current exchange and close. */
void sl_server_stop_accepting(sl_server *s);
/* Number of connections currently open / exchanges in progress. */
size_t sl_server_connections(const sl_server *s);
size_t sl_server_active_exchanges(const sl_server *s);
/* Exchanges handed to the handler since the server was made. */
uint64_t sl_server_exchanges_started(const sl_server *s);
/* Closes idle connections now (used while draining). */
void sl_server_close_idle(sl_server *s);
/* Closes everything and frees the server once the handles are closed. */
void sl_server_free(sl_server *s);
void sl_server_set_limits(sl_server *s, const sl_server_limits *lim);

/* ---- answering ---- */
/* Starts the response. content_length < 0 selects chunked encoding (HTTP/1.1) or close-delimited (1.0). */
int sl_hx_respond_head(sl_hx *hx, int status, const sl_http_header *headers, size_t n, int64_t content_length);
int sl_hx_write(sl_hx *hx, const void *p, size_t n);
/*
 * Between sl_hx_cork() and sl_hx_uncork() writes are kept, not flushed, and
 * the uncork flushes them in one system call. A producer that turns one
 * upstream read into several writes (SSE events) corks around it: the bytes
 * and their framing are the same, the client gets them in one write instead
 * of one per event (what matters when a loaded gateway reads several events
 * at a time). Keep a cork short (one callback); head, respond and finish
 * flush regardless.
 */
void sl_hx_cork(sl_hx *hx);
void sl_hx_uncork(sl_hx *hx);
/* Whole response in one call (head + body, one write). */
int sl_hx_respond(sl_hx *hx, int status, const sl_http_header *headers, size_t n, const void *body, size_t len);
size_t sl_hx_pending(const sl_hx *hx);
void sl_hx_on_drain(sl_hx *hx, sl_hx_cb cb, void *arg);
void sl_hx_on_abort(sl_hx *hx, sl_hx_cb cb, void *arg);
/* Ends the response (writes the last chunk if chunked). The exchange must not be used afterwards. */
void sl_hx_finish(sl_hx *hx);
/* Ask for the connection to be closed after this response (e.g. after an error mid-stream). */
static inline void sl_hx_close_after(sl_hx *hx) { hx->close_after = true; }
/* Drops the connection at once with a TCP reset (fault injection); on_abort fires as if the client had left. */
void sl_hx_reset(sl_hx *hx);
/* Peer address as text (for logs). */
void sl_hx_peer(const sl_hx *hx, char *out, size_t n);

#endif
