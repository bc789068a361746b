/*
 * server_internal.h: the connection struct shared by server.c (reading,
 * parsing, dispatch) and server_write.c (response head, framing, output
 * buffers, back-pressure). Not for use outside src/http/.
 */
#ifndef SL_HTTP_SERVER_INTERNAL_H
#define SL_HTTP_SERVER_INTERNAL_H

#include "http/server.h"

typedef enum {
    CONN_READING_HEAD,
    CONN_READING_BODY,
    CONN_DISPATCHED, /* the handler owns the exchange */
    CONN_CLOSING,
} conn_state;

typedef enum { TIMER_NONE, TIMER_HEADER, TIMER_IDLE, TIMER_BODY, TIMER_WRITE } conn_timer;

struct sl_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    sl_server *srv;
    sl_conn *prev, *next;
    int refs;              /* tcp handle + timer handle + active exchange */
    conn_state state;
    conn_timer timer_kind; /* which deadline runs (TIMER_NONE: none, whatever the uv timer does) */
    uint64_t deadline;     /* loop time (ms) when it passes */
    uint64_t timer_due;    /* loop time the uv timer is set for, while it is active (<= deadline) */
    sl_buf in;             /* unparsed input: header bytes and pipelined data */
    bool in_borrowed;      /* in.p points into the server's shared read buffer (inside on_read only) */
    sl_buf body;           /* body being collected */
    sl_http_chunked chunked;
    uint64_t body_left;    /* Content-Length bytes still to read */
    bool body_chunked;
    sl_hx *hx;             /* current exchange (also kept for reuse between requests) */
    bool hx_active;
    bool in_process;       /* inside conn_process(): finish must not recurse into it */
    bool read_stopped;
    bool eof;
    bool close_when_flushed;
    bool writing;
    uint8_t corked;        /* sl_hx_cork depth: sl_hx_write does not flush while > 0 */
    size_t write_queued_at_arm; /* unsent bytes (sl_conn_unsent) when the write deadline was (re)armed */
    bool out_blocked;      /* parsing paused until pending output drains (pipelining) */
    sl_buf out;            /* produced, not yet handed to the kernel */
    sl_buf out_inflight;   /* handed to uv_write, waiting for its callback */
};

struct sl_server {
    uv_loop_t *loop;
    sl_server_limits lim;
    sl_hx_handler handler;
    void *ctx;
    uv_tcp_t **listeners;
    size_t nlisteners;
    sl_conn *conns;        /* intrusive list of open connections */
    size_t nconns;
    size_t nactive;
    uint64_t nstarted;     /* exchanges dispatched, ever */
    bool accepting;
    bool freeing;
    char *rbuf;            /* shared read buffer (server.c on_alloc): connections keep only leftovers */
    sl_http_header *hscratch; /* the parser's header array (SL_HTTP_MAX_HEADERS_HARD); copied to the exchange */
};

/* server_write.c */
void sl_conn_flush(sl_conn *c);
int sl_conn_write_raw(sl_conn *c, const void *p, size_t n);
void sl_conn_respond_error(sl_conn *c, int status, const char *why);
/* server.c */
void sl_conn_close(sl_conn *c);
void sl_conn_release(sl_conn *c);
void sl_conn_exchange_done(sl_conn *c);
void sl_conn_process(sl_conn *c);
void sl_conn_set_deadline(sl_conn *c, conn_timer kind, uint64_t ms);
/* No deadline: a running timer is left to fire and find nothing to do (cheaper than a stop and a later start). */
static inline void sl_conn_clear_deadline(sl_conn *c) { c->timer_kind = TIMER_NONE; }
size_t sl_conn_unsent(sl_conn *c);
static inline size_t sl_conn_pending(const sl_conn *c) { return c->out.len + c->out_inflight.len; }

#endif
