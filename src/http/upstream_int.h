/*
 * upstream_int.h: private structures shared by upstream.c (the libcurl multi
 * handle on the libuv loop, request life cycle) and upstream_req.c (one easy
 * handle: options, header and body callbacks). Not for other modules.
 *
 * Re-entrancy rule used throughout: libcurl forbids multi API calls (add,
 * remove, socket_action) from inside its callbacks, and unpausing can run the
 * write callback synchronously. So every user callback we call from inside a
 * curl callback runs with u->in_cb > 0, and anything the user asks for then
 * (cancel, resume, start) is put on u's deferred list and done by reap() once
 * curl has returned to us. A request is never freed while it may be on the C
 * stack below us.
 */
#ifndef SL_UPSTREAM_INT_H
#define SL_UPSTREAM_INT_H

#include <curl/curl.h>

#include "core/buf.h"
#include "http/h1client.h"
#include "http/upstream.h"

#define SL_UP_MAX_HEADER_BYTES (64 * 1024) /* response header block, per response */
#define SL_UP_MAX_HEADERS 128              /* response header count */
#define SL_UP_MAX_REQ_HEADER 16384         /* one request header line */

/* One socket curl asked us to watch. */
typedef struct sl_up_sock {
    uv_poll_t poll;
    sl_upstream *u;
    curl_socket_t fd;
    struct sl_up_sock *prev, *next; /* u->socks, so free can close strays */
} sl_up_sock;

/* Where a response header's name and value sit in hraw (offsets survive realloc). */
typedef struct sl_up_hoff {
    uint32_t name_off, name_len, value_off, value_len;
} sl_up_hoff;

struct sl_up_req {
    uint8_t kind; /* SL_UP_KIND_CURL; must stay first (h1client.h) */
    sl_upstream *u;
    sl_up_req *prev, *next; /* u->reqs: every live request */
    sl_up_req *dnext;       /* u->deferred */
    CURL *easy;
    struct curl_slist *hdrs;
    sl_up_callbacks cb;
    void *ud;
    uv_timer_t timer; /* first-byte, idle and total deadlines; also reports early errors */

    uint64_t start_ms, fb_ms, idle_ms, total_ms;
    uint64_t last_data_ms; /* idle clock: head arrival, each chunk, each resume */
    uint64_t bytes;        /* body bytes accepted by on_data */

    sl_buf hraw; /* header names and values of the current response */
    sl_buf hoff; /* sl_up_hoff records into hraw */
    int status;

    sl_up_error early;  /* error found before curl ran; reported from the timer */
    sl_up_error fail;   /* error we caused curl to stop with (abort, header cap) */
    const char *fail_detail;

    bool added;        /* easy handle is in the multi */
    bool head_done;    /* on_head was called (or is being called) */
    bool paused;       /* paused by us: on_data said SL_EAGAIN or sl_up_req_pause */
    bool done;         /* no more user callbacks: finished or cancelled */
    bool zombie;       /* cancelled; destroy at the next reap */
    bool deferred;     /* on u->deferred */
    bool want_add;     /* started from inside a curl callback */
    bool want_resume;  /* resumed from inside a curl callback */
    bool closing;      /* destroyed; memory goes when the timer handle closes */
    char errbuf[CURL_ERROR_SIZE];
};

struct sl_upstream {
    uv_loop_t *loop;
    sl_h1 *h1; /* the native HTTP/1.1 path; NULL when curl is forced */
    CURLM *multi;
    CURLSH *share; /* TLS session cache across easy handles */
    long max_total, max_host; /* connection caps for the multi handle, made on first use (ensure_multi) */
    uv_timer_t timer; /* curl's single timeout */
    sl_up_req *reqs;
    sl_up_req *dhead, *dtail; /* deferred work, see upstream_int.h */
    sl_up_sock *socks;
    int in_cb;        /* depth of curl callbacks we are inside */
    int busy;         /* depth of our own calls into curl (free waits for 0) */
    int open_handles; /* uv handles not yet closed; u is freed at 0 after free */
    bool freeing;
    bool free_pending; /* sl_upstream_free called while busy */
};

/* upstream_req.c */
int sl_up__setup_easy(sl_up_req *q, const sl_up_request *r);
/* Calls on_head with the collected headers; 0, or -1 if the request must stop. */
int sl_up__head_complete(sl_up_req *q);
/* Idle/first-byte/total deadlines: (re)arms q->timer for the nearest one. */
void sl_up__arm(sl_up_req *q);

#endif
