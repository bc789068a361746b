/*
 * server.c: listeners and connections of the HTTP/1.1 server: accepting,
 * reading, parsing the header block, collecting the body, timeouts, and
 * handing one exchange at a time to the handler (see server.h for the
 * contract). Output framing and buffering live in server_write.c.
 *
 * Memory: reads land in one shared buffer per server (per loop); a connection
 * keeps only the bytes not yet consumed (a partial header block, pipelined
 * requests; capped) and gives its input buffer back once it is empty, so a
 * connection that waits for a request or holds a stream owns none. A
 * Content-Length body is read straight into the body buffer (no second copy);
 * a chunked body is decoded into it. When an exchange is dispatched its header
 * block and header array are copied into the exchange's arena (the parser
 * fills a per-server scratch array of SL_HTTP_MAX_HEADERS_HARD entries), so the
 * input buffer may grow, move or go while the handler runs (reads go on, to
 * notice a client that goes away).
 */
#include "http/server_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

#define CONN_IN_SLACK (64u * 1024u) /* pipelined bytes kept beyond one header block */
#define READ_CHUNK (64u * 1024u)
/* First block of an exchange's arena. A streamed 1 KB chat request uses about
 * 4.5 KiB of it (header block and array, the gateway's request state, the JSON
 * tokens of the body, the upstream URL and headers): 6 KiB holds that in one
 * block, where 4 KiB overflowed into a second block of 8 KiB. */
#define HX_ARENA_FIRST (6u * 1024u - 32u)

static void conn_process(sl_conn *c);
static void conn_arm_timer(sl_conn *c);
static void on_conn_timer(uv_timer_t *t);

/* ---------------------------------------------------------------- server */

sl_server *sl_server_new(uv_loop_t *loop, const sl_server_limits *lim, sl_hx_handler handler, void *ctx)
{
    sl_server *s = sl_calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->loop = loop;
    s->lim = *lim;
    s->handler = handler;
    s->ctx = ctx;
    s->accepting = true;
    return s;
}

void sl_server_set_limits(sl_server *s, const sl_server_limits *lim) { s->lim = *lim; }
size_t sl_server_connections(const sl_server *s) { return s->nconns; }
size_t sl_server_active_exchanges(const sl_server *s) { return s->nactive; }
uint64_t sl_server_exchanges_started(const sl_server *s) { return s->nstarted; }

static void on_listener_closed(uv_handle_t *h) { sl_free(h); }

static void conn_link(sl_server *s, sl_conn *c)
{
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
}

static void conn_unlink(sl_conn *c)
{
    sl_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
}

/* The server's shared read buffer (one per loop), made on first use. */
static char *shared_rbuf(sl_server *s)
{
    if (!s->rbuf) s->rbuf = sl_malloc(READ_CHUNK + 1); /* + 1: the NUL an sl_buf keeps */
    return s->rbuf;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    SL_UNUSED(suggested);
    sl_conn *c = h->data;
    sl_buf *b = &c->in;
    bool body_direct = c->state == CONN_READING_BODY && !c->body_chunked;
    /* Nothing unconsumed: read into the loop's shared buffer and keep only
     * what is left over after processing (on_read). A connection waiting for
     * a request or holding a stream then owns no read buffer at all. */
    if (!body_direct && b->len == 0 && shared_rbuf(c->srv)) {
        size_t room = b->max ? b->max : READ_CHUNK;
        buf->base = c->srv->rbuf;
        buf->len = room < READ_CHUNK ? room : READ_CHUNK;
        return;
    }
    /* A partial header block or chunked body: grow what is kept. */
    size_t want = c->state == CONN_READING_BODY ? READ_CHUNK : 4096;
    size_t room = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
    if (room >= 2048 && c->state != CONN_READING_BODY) want = room;
    if (body_direct) {
        /* Read the body straight into its buffer, and never past its end. */
        b = &c->body;
        want = c->body_left < READ_CHUNK ? (size_t)c->body_left : READ_CHUNK;
    }
    if (sl_buf_reserve(b, want) != SL_OK) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = b->p + b->len;
    buf->len = want;
}

/* c->in becomes a view of the first n bytes of the shared read buffer. */
static void in_borrow(sl_conn *c, size_t n)
{
    c->in.p = c->srv->rbuf;
    c->in.len = n;
    c->in.cap = READ_CHUNK + 1;
    c->in_borrowed = true;
}

/* Drops n bytes from the front of c->in: a borrowed view just moves. */
static void in_consume(sl_conn *c, size_t n)
{
    if (!c->in_borrowed) {
        sl_buf_consume(&c->in, n);
        return;
    }
    c->in.p += n;
    c->in.len -= n;
    c->in.cap -= n;
}

/* After processing a borrowed read: copies what is left into the connection's
 * own buffer (nothing, usually). The read was sized to the cap, so only a
 * failed allocation fails here; the bytes are lost, so the connection must not
 * carry another request. */
static void in_keep_leftover(sl_conn *c)
{
    if (!c->in_borrowed) return;
    sl_buf view = c->in;
    c->in_borrowed = false;
    c->in.p = NULL;
    c->in.len = c->in.cap = 0;
    if (view.len == 0 || c->state == CONN_CLOSING) return;
    if (sl_buf_append(&c->in, view.p, view.len) != SL_OK) {
        c->close_when_flushed = true;
        if (c->state == CONN_READING_HEAD) sl_conn_respond_error(c, 431, "input buffer full");
        else if (c->state == CONN_DISPATCHED) { uv_read_stop((uv_stream_t *)&c->tcp); c->read_stopped = true; }
        else sl_conn_close(c);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sl_conn *c = stream->data;
    if (nread == UV_ENOBUFS) { /* input cap reached or allocation failed */
        if (c->state == CONN_READING_HEAD) sl_conn_respond_error(c, 431, "input buffer full");
        else if (c->state == CONN_DISPATCHED) { uv_read_stop(stream); c->read_stopped = true; }
        else sl_conn_close(c);
        return;
    }
    if (nread < 0) {
        c->eof = true;
        uv_read_stop(stream);
        c->read_stopped = true;
        if (c->state == CONN_DISPATCHED && c->hx_active) {
            sl_hx *hx = c->hx;
            if (!hx->aborted && !hx->finished) {
                hx->aborted = true;
                if (hx->on_abort) hx->on_abort(hx, hx->on_abort_arg);
            }
            return; /* closed when the handler finishes */
        }
        sl_conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (buf->base == c->srv->rbuf) {
        /* Read into the shared buffer (c->in was empty): parse the bytes where
         * they are, and keep only what is left unconsumed (a partial head,
         * pipelined requests) in a buffer of the connection's own. */
        in_borrow(c, (size_t)nread);
        conn_process(c);
        in_keep_leftover(c);
        return;
    } else if (c->state == CONN_READING_BODY && !c->body_chunked) {
        c->body.len += (size_t)nread;
        c->body_left -= (uint64_t)nread;
    } else {
        c->in.len += (size_t)nread;
    }
    conn_process(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    sl_conn *c = h->data;
    /* A connection closed under a running exchange (a failed write, a reset):
     * the client is gone; tell the handler, here on a clean stack. */
    if (h == (uv_handle_t *)&c->tcp && c->hx_active && !c->hx->aborted && !c->hx->finished) {
        c->hx->aborted = true;
        if (c->hx->on_abort) c->hx->on_abort(c->hx, c->hx->on_abort_arg);
    }
    sl_conn_release(c);
}

void sl_conn_release(sl_conn *c)
{
    if (--c->refs > 0) return;
    if (!c->in_borrowed) sl_buf_free(&c->in);
    sl_buf_free(&c->body);
    sl_buf_free(&c->out);
    sl_buf_free(&c->out_inflight);
    if (c->hx) {
        sl_arena_free(&c->hx->arena);
        sl_free(c->hx);
    }
    sl_free(c);
}

void sl_conn_close(sl_conn *c)
{
    if (c->state == CONN_CLOSING) return;
    c->state = CONN_CLOSING;
    conn_unlink(c);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    sl_server *s = listener->data;
    if (status < 0) return;
    sl_conn *c = sl_calloc(1, sizeof(*c));
    if (!c) { /* refuse this one: libuv stops watching a listener whose connection is not taken */
        uv_os_fd_t lfd;
        if (uv_fileno((uv_handle_t *)listener, &lfd) == 0) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) close(fd);
        }
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->refs = 2;
    conn_link(s, c);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || !s->accepting) {
        sl_conn_close(c);
        return;
    }
    if (s->lim.max_connections && s->nconns > s->lim.max_connections) {
        sl_conn_close(c); /* over the cap: refuse rather than degrade everyone */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    sl_buf_init(&c->in, s->lim.max_header_bytes + CONN_IN_SLACK);
    sl_buf_init(&c->body, s->lim.max_body_bytes);
    sl_buf_init(&c->out, 0);
    sl_buf_init(&c->out_inflight, 0);
    c->state = CONN_READING_HEAD;
    conn_arm_timer(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static int bind_socket(const char *host, int port, bool reuseport, int *out_fd)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    int family = strchr(h, ':') ? AF_INET6 : AF_INET;
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (uv_ip6_addr(h, port, a) != 0) return SL_EINVAL;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (uv_ip4_addr(h, port, a) != 0) return SL_EINVAL;
        len = sizeof *a;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return SL_EIO;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return SL_EIO;
    }
    *out_fd = fd;
    return SL_OK;
}

int sl_server_probe_free(const char *host, int port)
{
    int fd;
    int rc = bind_socket(host, port, false, &fd);
    if (rc == SL_OK) close(fd);
    return rc;
}

int sl_server_listen(sl_server *s, const char *host, int port)
{
    int fd;
    int rc = bind_socket(host, port, true, &fd);
    if (rc) return rc;
    uv_tcp_t *l = sl_calloc(1, sizeof(*l));
    uv_tcp_t **grown = sl_realloc(s->listeners, (s->nlisteners + 1) * sizeof(*grown));
    if (!l || !grown) {
        sl_free(l);
        if (grown) s->listeners = grown;
        close(fd);
        return SL_ENOMEM;
    }
    s->listeners = grown;
    uv_tcp_init(s->loop, l);
    l->data = s;
    if (uv_tcp_open(l, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)l, on_listener_closed);
        return SL_EIO;
    }
    if (uv_listen((uv_stream_t *)l, 4096, on_connection) != 0) {
        uv_close((uv_handle_t *)l, on_listener_closed); /* closes fd too */
        return SL_EIO;
    }
    s->listeners[s->nlisteners++] = l;
    return SL_OK;
}

void sl_server_stop_accepting(sl_server *s)
{
    s->accepting = false;
    for (size_t i = 0; i < s->nlisteners; i++) uv_close((uv_handle_t *)s->listeners[i], on_listener_closed);
    s->nlisteners = 0;
}

void sl_server_close_idle(sl_server *s)
{
    sl_conn *c = s->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CONN_READING_HEAD && c->in.len == 0 && !c->writing && c->out.len == 0) sl_conn_close(c);
        else c->close_when_flushed = true; /* finish what is in progress, then close */
    }
}

void sl_server_free(sl_server *s)
{
    sl_server_stop_accepting(s);
    while (s->conns) {
        sl_conn *c = s->conns;
        if (c->hx_active && !c->hx->aborted) {
            c->hx->aborted = true;
            if (c->hx->on_abort) c->hx->on_abort(c->hx, c->hx->on_abort_arg);
        }
        sl_conn_close(c);
    }
    sl_free(s->listeners);
    sl_free(s->rbuf);
    sl_free(s->hscratch);
    sl_free(s);
}

/* ---------------------------------------------------------------- timers */

/*
 * Lazy deadlines: c->deadline is when the running kind's deadline passes, and
 * the uv timer may be set earlier than that. A deadline that moves later (the
 * idle timeout re-armed after every request, a body read) does not restart
 * the timer: when it fires early it re-arms for what is left. So the moves of
 * every keep-alive request (idle -> none while the handler runs -> idle again)
 * cost no timer operation; only a deadline that moves earlier (idle -> the
 * header deadline) restarts it.
 */
void sl_conn_set_deadline(sl_conn *c, conn_timer kind, uint64_t ms)
{
    uint64_t now = uv_now(c->srv->loop);
    c->timer_kind = kind;
    c->deadline = now + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline) return;
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void on_conn_timer(uv_timer_t *t)
{
    sl_conn *c = t->data;
    if (c->timer_kind == TIMER_NONE) return;
    uint64_t now = uv_now(c->srv->loop);
    if (now < c->deadline) { /* set before the deadline moved later: wait for the rest */
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_conn_timer, c->deadline - now, 0);
        return;
    }
    if (c->state == CONN_READING_HEAD && c->in.len > 0) {
        sl_conn_respond_error(c, 408, "header timeout");
    } else if (c->state == CONN_READING_BODY) {
        sl_conn_respond_error(c, 408, "body timeout");
    } else if (c->timer_kind == TIMER_WRITE) {
        size_t queued = sl_conn_unsent(c);
        if (queued == 0 && c->state == CONN_READING_HEAD && !c->writing && c->out.len == 0) {
            sl_conn_set_deadline(c, TIMER_IDLE, c->srv->lim.idle_timeout_ms); /* all delivered: idle from now */
            return;
        }
        if (queued < c->write_queued_at_arm) { /* slow, but reading: give it another period */
            c->write_queued_at_arm = queued;
            sl_conn_set_deadline(c, TIMER_WRITE, c->srv->lim.idle_timeout_ms);
            return;
        }
        sl_conn_close(c); /* the client stopped reading: treat it as gone (on_abort fires on close) */
    } else if (c->state == CONN_READING_HEAD) {
        if (c->writing || c->out.len) { /* not idle: a response is still going out */
            sl_conn_set_deadline(c, c->timer_kind, c->srv->lim.idle_timeout_ms);
            return;
        }
        size_t queued = sl_conn_unsent(c);
        if (queued) {
            /* The kernel still holds part of the last response (a large one read slowly):
             * closing now could lose it. Idle only once the client stops reading it. */
            c->write_queued_at_arm = queued;
            sl_conn_set_deadline(c, TIMER_WRITE, c->srv->lim.idle_timeout_ms);
            return;
        }
        sl_conn_close(c); /* idle keep-alive connection */
    }
}

/* One deadline per connection: the header deadline while a header block is
 * partial (counted from its first byte: slowloris), the idle timeout between
 * requests and between body reads; none while the handler owns the exchange
 * (the handler's own timeouts apply then). */
static void conn_arm_timer(sl_conn *c)
{
    const sl_server_limits *l = &c->srv->lim;
    conn_timer want = TIMER_NONE;
    if (c->state == CONN_READING_HEAD) want = c->in.len > 0 ? TIMER_HEADER : TIMER_IDLE;
    else if (c->state == CONN_READING_BODY) want = TIMER_BODY;
    if (want == c->timer_kind && want != TIMER_BODY) return; /* keep the running deadline */
    if (want == TIMER_NONE) sl_conn_clear_deadline(c);
    else sl_conn_set_deadline(c, want, want == TIMER_HEADER ? l->header_timeout_ms : l->idle_timeout_ms);
}

/* ---------------------------------------------------------------- requests */

static void rebase(sl_str *s, const char *old_base, size_t len, char *new_base)
{
    if (s->p >= old_base && s->p <= old_base + len) s->p = new_base + (s->p - old_base);
}

/* Copies the header block and the parsed header array (from the server's
 * scratch array) into the exchange's arena and points every slice there. */
static int hx_own_head(sl_hx *hx, const char *head, size_t len)
{
    sl_http_request *r = &hx->req;
    char *copy = sl_arena_alloc(&hx->arena, len);
    sl_http_header *hs = r->nheaders ? sl_arena_alloc(&hx->arena, r->nheaders * sizeof(*hs)) : NULL;
    if (!copy || (r->nheaders && !hs)) return SL_ENOMEM;
    memcpy(copy, head, len);
    if (hs) memcpy(hs, r->headers, r->nheaders * sizeof(*hs));
    r->headers = hs;
    rebase(&r->method, head, len, copy);
    rebase(&r->target, head, len, copy);
    rebase(&r->path, head, len, copy);
    rebase(&r->query, head, len, copy);
    rebase(&r->host, head, len, copy);
    for (size_t i = 0; i < r->nheaders; i++) {
        rebase(&r->headers[i].name, head, len, copy);
        rebase(&r->headers[i].value, head, len, copy);
    }
    return SL_OK;
}

static sl_hx *conn_new_exchange(sl_conn *c)
{
    sl_hx *hx = c->hx;
    if (!hx) {
        hx = sl_malloc(sizeof(*hx));
        if (!hx) return NULL;
        memset(hx, 0, sizeof(*hx));
        sl_arena_init(&hx->arena, HX_ARENA_FIRST, 0);
        c->hx = hx;
    } else {
        sl_arena_reset(&hx->arena);
    }
    sl_arena saved = hx->arena;
    memset((char *)hx + offsetof(sl_hx, body), 0, sizeof(*hx) - offsetof(sl_hx, body));
    hx->arena = saved;
    hx->conn = c;
    hx->server = c->srv;
    hx->loop = c->srv->loop;
    hx->out_remaining = -1;
    return hx;
}

static void conn_dispatch(sl_conn *c)
{
    sl_hx *hx = c->hx;
    hx->body = (sl_str){c->body.p ? c->body.p : "", c->body.len};
    c->state = CONN_DISPATCHED;
    c->hx_active = true;
    c->refs++;
    c->srv->nactive++;
    c->srv->nstarted++;
    conn_arm_timer(c);
    c->srv->handler(hx, c->srv->ctx);
}

static void send_continue(sl_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    sl_conn_write_raw(c, cont, sizeof cont - 1);
    sl_conn_flush(c);
}

/* Parses a header block at the front of c->in. Returns true if processing should go on. */
static bool conn_parse_head(sl_conn *c)
{
    sl_server *s = c->srv;
    sl_hx *hx = conn_new_exchange(c);
    if (!hx) {
        sl_conn_respond_error(c, 503, "out of memory");
        return false;
    }
    if (!s->hscratch && !(s->hscratch = sl_malloc(SL_HTTP_MAX_HEADERS_HARD * sizeof(sl_http_header)))) {
        sl_conn_respond_error(c, 503, "out of memory");
        return false;
    }
    hx->req.headers = s->hscratch; /* until hx_own_head() copies what was parsed */
    sl_http_limits lim = {s->lim.max_header_bytes, s->lim.max_headers};
    int status = 0;
    const char *why = NULL;
    int n = sl_http_parse_request(c->in.p, c->in.len, &lim, &hx->req, &status, &why);
    if (n == SL_EAGAIN) {
        conn_arm_timer(c);
        return false;
    }
    if (n < 0) {
        sl_conn_respond_error(c, status ? status : 400, why ? why : "bad request");
        return false;
    }
    if (hx_own_head(hx, c->in.p, (size_t)n) != SL_OK) {
        sl_conn_respond_error(c, 503, "out of memory");
        return false;
    }
    in_consume(c, (size_t)n);
    hx->start_ns = uv_hrtime();
    sl_buf_clear(&c->body);
    c->body.max = s->lim.max_body_bytes;
    c->body_chunked = hx->req.chunked;
    if (hx->req.chunked) {
        sl_http_chunked_init(&c->chunked, s->lim.max_body_bytes);
    } else {
        int64_t cl = hx->req.content_length;
        if (cl > 0 && (uint64_t)cl > s->lim.max_body_bytes) {
            sl_conn_respond_error(c, 413, "body too large");
            return false;
        }
        c->body_left = cl > 0 ? (uint64_t)cl : 0;
        /* One allocation of the announced size instead of doublings and copies; up to 4 MiB
         * only, so a client announcing a large body and sending nothing cannot reserve much. */
        if (c->body_left && sl_buf_reserve(&c->body, (size_t)SL_MIN(c->body_left, 4u << 20)) != SL_OK) {
            sl_conn_respond_error(c, 503, "out of memory");
            return false;
        }
    }
    c->state = CONN_READING_BODY;
    bool body_pending = hx->req.chunked || c->body_left > c->in.len;
    if (hx->req.expect_continue && body_pending && hx->req.minor_version == 1) send_continue(c);
    conn_arm_timer(c);
    return true;
}

/* Moves body bytes already in c->in into the body. Returns 1 when complete, 0 for more, <0 after an error reply. */
static int conn_take_body(sl_conn *c)
{
    if (c->body_chunked) {
        size_t used = 0;
        int rc = sl_http_chunked_decode(&c->chunked, c->in.p, c->in.len, &c->body, &used);
        in_consume(c, used);
        if (rc == SL_ELIMIT) sl_conn_respond_error(c, 413, "body too large");
        else if (rc < 0) sl_conn_respond_error(c, 400, "bad chunked body");
        return rc;
    }
    size_t take = c->in.len < c->body_left ? c->in.len : (size_t)c->body_left;
    if (take) {
        if (sl_buf_append(&c->body, c->in.p, take) != SL_OK) {
            sl_conn_respond_error(c, 413, "body too large");
            return SL_ELIMIT;
        }
        in_consume(c, take);
        c->body_left -= take;
    }
    return c->body_left == 0;
}

void sl_conn_process(sl_conn *c) { conn_process(c); }

static void conn_process(sl_conn *c)
{
    if (c->in_process) return;
    c->in_process = true;
    for (;;) {
        if (c->state == CONN_READING_HEAD && sl_conn_pending(c) > SL_HX_HIGH_WATER) {
            /* Pipelined requests answered faster than the client reads: stop
             * taking new ones until it drains (conn_after_flush resumes). */
            if (!c->read_stopped) uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = true;
            c->out_blocked = true;
            break;
        }
        if (c->state == CONN_READING_HEAD) {
            if (c->in.len == 0) {
                conn_arm_timer(c);
                break;
            }
            if (!conn_parse_head(c)) break;
        }
        if (c->state == CONN_READING_BODY) {
            int rc = conn_take_body(c);
            if (rc <= 0) {
                if (rc == 0) conn_arm_timer(c);
                break;
            }
            conn_dispatch(c);
        }
        if (c->state != CONN_READING_HEAD) break; /* dispatched (not yet finished) or closing */
    }
    c->in_process = false;
    /* Everything consumed (the usual case once a request is dispatched): give
     * the input buffer back; the next read goes to the shared buffer. */
    if (c->in.len == 0 && c->in.p && !c->in_borrowed) sl_buf_free(&c->in);
    if (c->state == CONN_READING_HEAD && c->read_stopped && !c->eof && !c->out_blocked) {
        c->read_stopped = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* Called by sl_hx_finish(): the exchange is over; go on with the connection. */
void sl_conn_exchange_done(sl_conn *c)
{
    sl_hx *hx = c->hx;
    c->hx_active = false;
    c->srv->nactive--;
    bool keep = hx->req.keep_alive && !hx->close_after && !hx->aborted && !c->close_when_flushed && !c->eof &&
                c->srv->accepting;
    if (c->state == CONN_CLOSING) {
        sl_conn_release(c);
        return;
    }
    if (!keep) {
        /* Stay in DISPATCHED (parse nothing more) until the output is flushed, then close. */
        c->close_when_flushed = true;
        sl_conn_flush(c);
        sl_conn_release(c);
        return;
    }
    c->state = CONN_READING_HEAD;
    sl_conn_release(c);
    conn_process(c);
}

/* Bytes on their way to the client: libuv's queue plus the kernel's send queue. */
size_t sl_conn_unsent(sl_conn *c)
{
    size_t n = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    uv_os_fd_t fd;
    int kq = 0;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &kq) == 0 && kq > 0) n += (size_t)kq;
    return n;
}

void sl_hx_reset(sl_hx *hx)
{
    sl_conn *c = hx->conn;
    if (c->state == CONN_CLOSING) return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        struct linger lg = {1, 0}; /* close() now sends RST instead of FIN */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    sl_buf_clear(&c->out);
    sl_conn_close(c);
    if (!hx->aborted && !hx->finished) { /* same contract as a client that went away */
        hx->aborted = true;
        if (hx->on_abort) hx->on_abort(hx, hx->on_abort_arg);
    }
}

void sl_hx_peer(const sl_hx *hx, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(&hx->conn->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, out, n);
    else uv_ip6_name((struct sockaddr_in6 *)&ss, out, n);
}
