/*
 * server_write.c: the response side of an exchange: status line and headers,
 * Content-Length or chunked framing, and the connection's output buffers.
 *
 * Output is double-buffered: `out` collects what handlers write while
 * `out_inflight` is with the kernel (uv_write). A flush first tries a direct
 * write (uv_try_write), which for small responses is the only syscall made.
 * sl_hx_pending() is the sum of both; producers pause above SL_HX_HIGH_WATER
 * and are called back (on_drain) once it falls to SL_HX_LOW_WATER.
 */
#include <stdio.h>
#include <time.h>

#include "http/server_internal.h"

static void on_write_done(uv_write_t *req, int status);

/*
 * While output waits for a client that does not read and no other deadline
 * runs (the handler owns the exchange, or the connection closes after this
 * response), idle_timeout_ms bounds how long the client may make no progress
 * (neither libuv's write queue nor the kernel's send queue shrinks); past it the connection is closed
 * and the handler told (on_abort). A slow reader that keeps reading is fine.
 * Without it a client that never reads would hold its exchange, and a paused
 * upstream stream, until the upstream's total timeout.
 */
static void arm_write_deadline(sl_conn *c)
{
    if (c->timer_kind != TIMER_NONE || c->state == CONN_CLOSING) return;
    c->write_queued_at_arm = sl_conn_unsent(c);
    sl_conn_set_deadline(c, TIMER_WRITE, c->srv->lim.idle_timeout_ms);
}

static void conn_after_flush(sl_conn *c)
{
    if (c->state == CONN_CLOSING) return;
    /* Never close in the middle of receiving a request (draining must finish what is in progress). */
    bool mid_request = c->state == CONN_READING_BODY || (c->state == CONN_READING_HEAD && c->in.len > 0);
    if (c->close_when_flushed && !c->writing && c->out.len == 0 && !c->hx_active && !mid_request) {
        sl_conn_close(c);
        return;
    }
    if (c->out_blocked && !c->hx_active && sl_conn_pending(c) <= SL_HX_LOW_WATER) {
        c->out_blocked = false;
        sl_conn_process(c); /* goes on with pipelined requests; restarts reading */
        return;
    }
    sl_hx *hx = c->hx;
    if (c->hx_active && hx && hx->on_drain && !hx->finished && sl_hx_pending(hx) <= SL_HX_LOW_WATER) {
        sl_hx_cb cb = hx->on_drain;
        hx->on_drain = NULL; /* one-shot: the producer re-arms it when it blocks again */
        cb(hx, hx->on_drain_arg);
    }
}

/*
 * An output buffer that has been emptied keeps its storage only when small
 * (one SSE event, one response head): a burst (a lagging client, one upstream
 * read's worth of events under sl_hx_cork, a large body) must not stay with
 * every one of 10,000 connections for the rest of their lives.
 */
#define OUT_KEEP_BYTES 4096u

static void out_emptied(sl_buf *b)
{
    if (b->cap > OUT_KEEP_BYTES) sl_buf_free(b);
    else sl_buf_clear(b);
}

void sl_conn_flush(sl_conn *c)
{
    if (c->writing || c->out.len == 0 || c->state == CONN_CLOSING) {
        if (!c->writing) conn_after_flush(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)c->out.len) {
        out_emptied(&c->out);
        conn_after_flush(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        sl_buf_clear(&c->out);
        sl_conn_close(c);
        return;
    }
    if (n > 0) sl_buf_consume(&c->out, (size_t)n);
    /* Swap: what is left goes to the kernel queue; new output collects in the other buffer. */
    sl_buf tmp = c->out_inflight;
    c->out_inflight = c->out;
    c->out = tmp;
    sl_buf_clear(&c->out);
    b = uv_buf_init(c->out_inflight.p, (unsigned)c->out_inflight.len);
    c->wreq.data = c;
    c->writing = true;
    c->refs++;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) != 0) {
        c->writing = false;
        c->refs--;
        sl_conn_close(c);
        return;
    }
    arm_write_deadline(c); /* after uv_write: its queue size is the progress mark */
}

static void on_write_done(uv_write_t *req, int status)
{
    sl_conn *c = req->data;
    c->writing = false;
    if (c->timer_kind == TIMER_WRITE) sl_conn_clear_deadline(c); /* progress: the deadline is for a client that stops reading */
    out_emptied(&c->out_inflight);
    if (status < 0) {
        sl_conn_close(c);
    } else {
        sl_conn_flush(c);
    }
    sl_conn_release(c);
}

int sl_conn_write_raw(sl_conn *c, const void *p, size_t n)
{
    if (c->state == CONN_CLOSING) return SL_ECLOSED;
    return sl_buf_append(&c->out, p, n);
}

/* Errors found before a request reaches a handler (framing, limits, timeouts) are
 * answered here, in OpenAI's error shape: the protocol is not known yet, and
 * OpenAI's is the default of the data plane (SPEC §3). */
static const char *error_code(int status)
{
    switch (status) {
    case 408: return "request_timeout";
    case 413: return "request_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "request_header_fields_too_large";
    case 501: return "not_implemented";
    case 505: return "http_version_not_supported";
    default: return "bad_request";
    }
}

void sl_conn_respond_error(sl_conn *c, int status, const char *why)
{
    char body[256];
    int blen = snprintf(body, sizeof body,
                        "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"%s\"}}",
                        why, error_code(status));
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n",
                        status, sl_http_reason(status), blen);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_stopped = true;
    sl_conn_write_raw(c, head, (size_t)hlen);
    sl_conn_write_raw(c, body, (size_t)blen);
    c->close_when_flushed = true;
    c->state = CONN_DISPATCHED; /* parse nothing more */
    sl_conn_clear_deadline(c);
    sl_conn_flush(c);
}

/* "Date:" value, formatted at most once a second per thread. */
static const char *http_date(void)
{
    static _Thread_local char buf[40];
    static _Thread_local time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

#define PUT_LIT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) += sizeof(lit) - 1)
#define PUT(o, p, n) (memcpy((o), (p), (n)), (o) += (n))

/*
 * The response head in two passes: the first settles the framing and the
 * connection header and adds up the exact size, the second copies into room
 * reserved once (with `extra` more for a body that follows), with no capacity
 * check per piece: this runs for every response.
 */
static int append_head(sl_hx *hx, sl_buf *o, int status, const sl_http_header *h, size_t n, int64_t clen, size_t extra)
{
    bool http10 = hx->req.minor_version == 0;
    const char *reason = sl_http_reason(status);
    size_t reason_n = strlen(reason);
    const char *date = http_date();
    size_t date_n = strlen(date);
    char st[SL_DEC_MAX], cl[SL_DEC_MAX];
    size_t st_n = sl_u64_dec(st, (uint64_t)(status < 0 ? 0 : status));
    size_t cl_n = 0;
    size_t total = sizeof("HTTP/1.1 ") - 1 + st_n + 1 + reason_n + sizeof("\r\ndate: ") - 1 + date_n +
                   sizeof("\r\nserver: sluice\r\n") - 1 + 2;
    for (size_t i = 0; i < n; i++) total += h[i].name.n + 2 + h[i].value.n + 2;
    if (clen >= 0) {
        cl_n = sl_u64_dec(cl, (uint64_t)clen);
        total += sizeof("content-length: ") - 1 + cl_n + 2;
    } else if (!http10) {
        total += sizeof("transfer-encoding: chunked\r\n") - 1;
    } else {
        hx->close_after = true; /* HTTP/1.0: the end of the body is the end of the connection */
    }
    bool closing = hx->close_after || !hx->req.keep_alive || hx->conn->close_when_flushed || !hx->server->accepting;
    if (closing) total += sizeof("connection: close\r\n") - 1;
    else if (http10) total += sizeof("connection: keep-alive\r\n") - 1;
    if (extra > SIZE_MAX - total || sl_buf_reserve(o, total + extra) != SL_OK) return SL_ENOMEM;
    if (closing) {
        hx->close_after = true;
        hx->close_announced = true;
    }
    char *w = o->p + o->len;
    if (http10) PUT_LIT(w, "HTTP/1.0 ");
    else PUT_LIT(w, "HTTP/1.1 ");
    PUT(w, st, st_n);
    *w++ = ' ';
    PUT(w, reason, reason_n);
    PUT_LIT(w, "\r\ndate: ");
    PUT(w, date, date_n);
    PUT_LIT(w, "\r\nserver: sluice\r\n");
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.n) PUT(w, h[i].name.p, h[i].name.n);
        PUT_LIT(w, ": ");
        if (h[i].value.n) PUT(w, h[i].value.p, h[i].value.n);
        PUT_LIT(w, "\r\n");
    }
    if (clen >= 0) {
        PUT_LIT(w, "content-length: ");
        PUT(w, cl, cl_n);
        PUT_LIT(w, "\r\n");
    } else if (!http10) {
        PUT_LIT(w, "transfer-encoding: chunked\r\n");
    }
    if (closing) PUT_LIT(w, "connection: close\r\n");
    else if (http10) PUT_LIT(w, "connection: keep-alive\r\n");
    PUT_LIT(w, "\r\n");
    o->len += total;
    o->p[o->len] = '\0';
    return w == o->p + o->len ? SL_OK : SL_EINVAL; /* the two passes agree (they always should) */
}

int sl_hx_respond_head(sl_hx *hx, int status, const sl_http_header *headers, size_t n, int64_t content_length)
{
    if (hx->head_sent || hx->finished) return SL_EINVAL;
    hx->head_sent = true;
    hx->status = status;
    if (hx->aborted) return SL_ECLOSED;
    hx->no_body = status == 204 || status == 304 || (status >= 100 && status < 200) ||
                  sl_str_eq_lit(hx->req.method, "HEAD");
    hx->chunked_out = content_length < 0 && hx->req.minor_version == 1 && !hx->no_body;
    hx->out_remaining = content_length;
    int rc = append_head(hx, &hx->conn->out, status, headers, n, content_length, 0);
    if (rc) return rc;
    sl_conn_flush(hx->conn);
    return SL_OK;
}

int sl_hx_write(sl_hx *hx, const void *p, size_t n)
{
    if (hx->aborted || hx->conn->state == CONN_CLOSING) return SL_ECLOSED;
    if (!hx->head_sent || hx->finished) return SL_EINVAL;
    if (n == 0 || hx->no_body) return SL_OK; /* HEAD, 204, 304: the framing has no body */
    sl_buf *o = &hx->conn->out;
    int rc = 0;
    if (hx->chunked_out) {
        /* "<hex size>\r\n<data>\r\n", reserved once (one SSE event per call when streaming) */
        char size[24];
        size_t k = sizeof size - 2;
        size[k] = '\r', size[k + 1] = '\n';
        for (size_t v = n; v; v >>= 4) size[--k] = "0123456789abcdef"[v & 15];
        size_t sn = sizeof size - k;
        if (n > SIZE_MAX - sn - 2 || sl_buf_reserve(o, sn + n + 2) != SL_OK) return SL_ENOMEM;
        char *w = o->p + o->len;
        PUT(w, size + k, sn);
        PUT(w, p, n);
        PUT_LIT(w, "\r\n");
        o->len += sn + n + 2;
        o->p[o->len] = '\0';
    } else {
        if (hx->out_remaining >= 0) {
            if ((int64_t)n > hx->out_remaining) return SL_EINVAL; /* more than announced */
            hx->out_remaining -= (int64_t)n;
        }
        rc = sl_buf_append(o, p, n);
    }
    if (rc) return SL_ENOMEM;
    if (!hx->conn->corked) sl_conn_flush(hx->conn);
    return SL_OK;
}

void sl_hx_cork(sl_hx *hx)
{
    if (hx->conn->corked < UINT8_MAX) hx->conn->corked++;
}

void sl_hx_uncork(sl_hx *hx)
{
    sl_conn *c = hx->conn;
    if (c->corked && --c->corked == 0) sl_conn_flush(c);
}

int sl_hx_respond(sl_hx *hx, int status, const sl_http_header *headers, size_t n, const void *body, size_t len)
{
    if (hx->head_sent || hx->finished) return SL_EINVAL;
    hx->head_sent = true;
    hx->status = status;
    hx->out_remaining = 0;
    if (hx->aborted) return SL_ECLOSED;
    hx->no_body = status == 204 || status == 304 || sl_str_eq_lit(hx->req.method, "HEAD");
    sl_buf *o = &hx->conn->out;
    size_t mark = o->len;
    int rc = append_head(hx, o, status, headers, n, (int64_t)len, hx->no_body ? 0 : len);
    if (!rc && len && !hx->no_body) rc = sl_buf_append(o, body, len);
    if (rc) { /* nothing half-built goes out: the connection closes instead */
        o->len = mark;
        hx->close_after = true;
        return rc;
    }
    sl_conn_flush(hx->conn);
    return rc;
}

size_t sl_hx_pending(const sl_hx *hx) { return hx->conn->out.len + hx->conn->out_inflight.len; }

void sl_hx_on_drain(sl_hx *hx, sl_hx_cb cb, void *arg)
{
    hx->on_drain = cb;
    hx->on_drain_arg = arg;
}

void sl_hx_on_abort(sl_hx *hx, sl_hx_cb cb, void *arg)
{
    hx->on_abort = cb;
    hx->on_abort_arg = arg;
}

void sl_hx_finish(sl_hx *hx)
{
    if (hx->finished) return;
    hx->finished = true;
    sl_conn *c = hx->conn;
    if (!hx->aborted && c->state != CONN_CLOSING) {
        if (!hx->head_sent) {
            static const sl_http_header none[1];
            sl_hx_respond(hx, 500, none, 0, NULL, 0);
        } else if (hx->chunked_out && (!hx->close_after || hx->close_announced)) {
            sl_conn_write_raw(c, "0\r\n\r\n", 5);
            sl_conn_flush(c);
        } /* else: a close decided after a keep-alive head: leave the body unterminated, so the
           * client sees a cut response instead of reusing a connection that is going away */ else if (hx->out_remaining > 0) {
            hx->close_after = true; /* announced more than was written: the framing is broken, close */
        }
    }
    sl_conn_exchange_done(c);
}
