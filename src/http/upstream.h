/*
 * upstream.h: the client for calls to providers: libcurl's multi-socket API
 * driven by one worker's libuv loop (no threads, no blocking), with a native
 * HTTP/1.1 fast path (h1client.c) for plain http:// to numeric addresses and
 * localhost, which is where the per-request cost of curl showed.
 *
 * One sl_upstream per worker owns a CURLM (connection pool, HTTP/2
 * multiplexing where the server offers it over TLS, TLS session cache). A
 * request streams: the head and each body chunk are handed to callbacks as
 * they arrive. Back-pressure: on_data may return SL_EAGAIN to pause the
 * transfer (curl stops reading the socket); the owner calls
 * sl_up_req_resume() when its client has drained.
 *
 * Timeouts are distinct so the gateway can report which one fired:
 * connect, first byte (time to the response head: "first token" for an LLM),
 * idle (gap between body chunks), total.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <uv.h>

#include "core/sl.h"
#include "http/parser.h"

typedef struct sl_upstream sl_upstream;
typedef struct sl_up_req sl_up_req;

typedef struct sl_upstream_opts {
    long max_connections;      /* total per worker (CURLMOPT_MAX_TOTAL_CONNECTIONS); 0 = unlimited */
    long max_host_connections; /* per host; 0 = unlimited */
    bool force_curl;           /* every request through libcurl (also: SLUICE_FORCE_CURL=1 in the environment) */
} sl_upstream_opts;

typedef enum {
    SL_UP_OK = 0,
    SL_UP_ERR_CONNECT,          /* DNS, refused, TLS handshake */
    SL_UP_ERR_TIMEOUT_CONNECT,
    SL_UP_ERR_TIMEOUT_FIRST_BYTE,
    SL_UP_ERR_TIMEOUT_IDLE,
    SL_UP_ERR_TIMEOUT_TOTAL,
    SL_UP_ERR_IO,               /* reset / truncated / protocol error after connecting */
    SL_UP_ERR_ABORTED,          /* a callback returned an error */
} sl_up_error;

typedef struct sl_up_result {
    sl_up_error error;
    int status;                 /* HTTP status, 0 if none was received */
    const char *detail;         /* curl's or the native client's message, for logs */
    bool reused_connection;     /* the request went over a pooled connection */
    uint64_t bytes_received;    /* body bytes */
} sl_up_result;

typedef struct sl_up_callbacks {
    /* Status and headers (once, before any data). Return 0, or an SL_E* to abort. */
    int (*on_head)(void *ud, int status, const sl_http_header *headers, size_t nheaders);
    /* A chunk of the (de-chunked, decompressed as sent) body. Return 0, SL_EAGAIN to pause, or an SL_E* to abort.
     * SL_EAGAIN means "not consumed": after sl_up_req_resume() on_data is called AGAIN with the same bytes
     * (possibly split differently), so keep nothing from a call that returned SL_EAGAIN. */
    int (*on_data)(void *ud, const char *p, size_t n);
    /* Exactly once per request, unless cancelled first. The request is freed after it returns.
     * r->detail is valid during the call only (NULL on success). */
    void (*on_done)(void *ud, const sl_up_result *r);
} sl_up_callbacks;

typedef struct sl_up_request {
    const char *method;           /* "POST", "GET", ... */
    const char *url;              /* absolute http:// or https:// URL */
    const sl_http_header *headers;/* extra request headers (Host/Content-Length/Connection/Expect/Transfer-Encoding
                                     are the client's own and dropped) */
    size_t nheaders;
    const char *body;             /* must stay valid until on_done or cancel */
    size_t body_len;
    uint64_t connect_timeout_ms;  /* 0 = none for each */
    uint64_t first_byte_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t total_timeout_ms;
} sl_up_request;

sl_upstream *sl_upstream_new(uv_loop_t *loop, const sl_upstream_opts *opts);
/* Cancels every request in flight (no callbacks) and closes handles; the loop must run once more to finish.
 * May be called from inside a callback (then it completes when the callback returns). */
void sl_upstream_free(sl_upstream *u);

/* Starts a request; returns NULL on allocation failure (no callbacks then). An invalid request (bad method
 * or header bytes) is reported as SL_UP_ERR_CONNECT through on_done on a later loop turn, never from inside
 * this call. Header slices given to on_head are valid during that call only.
 * All of pause/resume/cancel/start may be called from inside on_head/on_data/on_done: what curl cannot do
 * from inside its own callbacks is deferred until it returns. Pausing stops the idle deadline (not the
 * first-byte or total ones). Plain http:// is HTTP/1.1; https:// offers h2 via ALPN and multiplexes. */
sl_up_req *sl_upstream_start(sl_upstream *u, const sl_up_request *r, const sl_up_callbacks *cb, void *ud);
void sl_up_req_pause(sl_up_req *q);
void sl_up_req_resume(sl_up_req *q);
/* Stops at once and closes the connection if the transfer was incomplete; no callback follows. */
void sl_up_req_cancel(sl_up_req *q);

/* Process-wide init/cleanup of libcurl (call once from main). libcurl itself is
 * initialised lazily, on the first request that goes through it. */
int sl_upstream_global_init(void);
void sl_upstream_global_cleanup(void);

#endif
