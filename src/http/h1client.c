/*
 * h1client.c: a native HTTP/1.1 client on the worker's libuv loop, the fast
 * path behind upstream.h for plain http:// to numeric addresses (see
 * h1client.h). libcurl costs about ten extra syscalls per request here
 * (liveness polls, a poll handle re-created per transfer); this client's
 * steady state is one write and one read per request on a pooled connection,
 * which stays registered for reading for its whole life.
 *
 * Pieces: a pool of keep-alive connections per upstream address (LIFO, capped,
 * idle timeout; an idle connection that turns readable or hits EOF is stale
 * and closed), the request head serialised once at start and written with the
 * body in one uv_try_write, a strict response-head parser (1xx skipped; the
 * head formats of both directions are in h1_wire.c), and
 * body framing by Content-Length, chunked (chunked.c's decoder, delivered as
 * decoded) or connection close. Reads land in one buffer shared by the
 * client's connections; a connection keeps only what is left unconsumed (a
 * partial head or event, bytes held while paused), so 10,000 held streams do
 * not each own a read buffer.
 *
 * Re-entrancy: requests and connections are freed only from libuv close
 * callbacks, never while they may be on the C stack, so every path that calls
 * a user callback just re-checks q->done afterwards. Resume from inside the
 * request's own callback is recorded (want_resume) and done when it returns;
 * start never calls back synchronously (errors go through the request timer).
 */
#include "http/h1client.h"
#include "http/h1_wire.h"

#include <arpa/inet.h>
#include <strings.h>

#include "core/buf.h"
#include "http/upstream_int.h" /* the response header caps, shared with the curl path */

#define H1_MAX_IDLE_PER_HOST 256
#define H1_IDLE_TIMEOUT_MS 60000
#define H1_MAX_HOSTS 256 /* distinct upstream addresses per worker; beyond: curl */
#define H1_RBUF_INIT 4096 /* a kept leftover grows from here on demand */
#define H1_RBUF_MIN_FREE 4096
#define H1_RBUF_MAX (SL_UP_MAX_HEADER_BYTES + 16384)
#define H1_REQ_CACHE 16      /* freed request blocks kept for reuse */
#define H1_REQ_CACHE_MAX 4096 /* only blocks up to this size (struct and head) are kept */

typedef struct h1_conn h1_conn;
typedef struct sl_h1_req sl_h1_req;

typedef struct h1_host {
    struct sockaddr_storage addr;
    h1_conn *idle; /* pooled connections, most recently used first */
    int nidle, nconns;
    struct h1_host *next;
} h1_host;

enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t timer; /* the request's deadlines while it has one, else the pool idle timeout (lazy: see arm) */
    sl_h1 *h;
    h1_host *host;
    sl_h1_req *req;         /* the request on it, NULL when pooled */
    h1_conn *prev, *next;   /* host->idle */
    h1_conn *aprev, *anext; /* h->conns */
    char *rbuf;             /* unconsumed response bytes are rbuf[rpos..rlen) */
    size_t rpos, rlen, rcap;
    size_t hscan; /* bytes after rpos already searched for the end of the head */
    uint32_t nreq;
    uint64_t pooled_at; /* loop time it went back to the pool */
    uint64_t due;       /* loop time the timer is set for, while it is active */
    int open; /* handles not yet closed */
    int err;  /* read error (0: clean EOF) once eof is set */
    bool connecting, reading, writing, eof, pooled, closing;
};

struct sl_h1_req {
    uint8_t kind; /* SL_UP_KIND_H1; must stay first */
    sl_h1 *h;
    sl_h1_req *prev, *next; /* h->reqs */
    sl_h1_req *wnext;       /* h->waiting */
    h1_host *host;
    h1_conn *c;
    sl_up_callbacks cb;
    void *ud;
    uv_timer_t timer; /* deadlines while it has no connection (queued); early errors */
    char *head;       /* the serialised request head: in the same allocation, after the struct */
    size_t head_len;
    size_t alloc_size; /* of the whole block (the struct and room for the head) */
    const char *body;
    size_t body_len;
    uint64_t start_ms, conn_start_ms, last_data_ms;
    uint64_t due; /* loop time the timer is set for, while it is active */
    uint64_t conn_ms, fb_ms, idle_ms, total_ms;
    uint64_t bytes, remaining;
    int status;
    int mode; /* BODY_* */
    sl_http_chunked ck;
    sl_buf dec; /* decoded chunk data not yet accepted by on_data */
    sl_up_error early;
    const char *detail;
    bool head_method, head_done, body_done, keep_alive;
    bool paused, want_resume, in_cb, waiting, reused, done, closing;
};

struct sl_h1 {
    uv_loop_t *loop;
    long max_total, max_host;
    h1_host *hosts;
    int nhosts;
    sl_h1_req *reqs;
    sl_h1_req *whead, *wtail; /* requests waiting for a connection slot */
    h1_conn *conns;
    long nconns;
    uv_timer_t kick; /* hands freed slots to waiting requests on the next turn */
    char *rbuf;      /* shared read buffer (H1_RBUF_MAX): connections keep only leftovers */
    int open_handles;
    bool freeing;
    /* Request blocks freed by their close callback (so never on anyone's stack), kept for the next
     * requests: a worker starts one per proxied request. */
    sl_h1_req *req_cache[H1_REQ_CACHE];
    int nreq_cache;
    /* The last URL parsed: a worker sends request after request to the same provider URL,
     * so its parse (and inet_pton) is done once. Offsets, so a copy of the URL matches too. */
    struct {
        size_t len; /* 0: empty */
        char url[256];
        struct sockaddr_storage addr;
        size_t auth_off, auth_len, path_off, path_len;
        bool add_slash;
    } last_url;
};

static void process(sl_h1_req *q);
static void arm(sl_h1_req *q);
static void finish(sl_h1_req *q, sl_up_error err, const char *detail);
static void kick(sl_h1 *h);

/* ---- life cycle of the client, requests and connections ---- */

static void maybe_free(sl_h1 *h)
{
    if (!h->freeing || h->open_handles) return;
    while (h->hosts) {
        h1_host *ho = h->hosts;
        h->hosts = ho->next;
        sl_free(ho);
    }
    while (h->nreq_cache) sl_free(h->req_cache[--h->nreq_cache]);
    sl_free(h->rbuf);
    sl_free(h);
}

static void on_req_closed(uv_handle_t *hd)
{
    sl_h1_req *q = hd->data;
    sl_h1 *h = q->h;
    sl_buf_free(&q->dec);
    if (!h->freeing && q->alloc_size <= H1_REQ_CACHE_MAX && h->nreq_cache < H1_REQ_CACHE)
        h->req_cache[h->nreq_cache++] = q;
    else
        sl_free(q);
    h->open_handles--;
    maybe_free(h);
}

static void unqueue(sl_h1_req *q)
{
    if (!q->waiting) return;
    sl_h1 *h = q->h;
    sl_h1_req *prev = NULL;
    for (sl_h1_req *w = h->whead; w; prev = w, w = w->wnext) {
        if (w != q) continue;
        if (prev) prev->wnext = w->wnext;
        else h->whead = w->wnext;
        if (h->wtail == w) h->wtail = prev;
        break;
    }
    q->waiting = false;
}

/* The memory goes in the timer's close callback: never while q may be on the stack. */
static void destroy(sl_h1_req *q)
{
    if (q->closing) return;
    q->closing = true;
    sl_h1 *h = q->h;
    unqueue(q);
    if (q->prev) q->prev->next = q->next;
    else h->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_req_closed);
}

static void on_conn_closed(uv_handle_t *hd)
{
    h1_conn *c = hd->data;
    if (--c->open) return;
    sl_h1 *h = c->h;
    sl_free(c->rbuf);
    sl_free(c);
    h->open_handles--;
    maybe_free(h);
}

static void pool_unlink(h1_conn *c)
{
    if (!c->pooled) return;
    if (c->prev) c->prev->next = c->next;
    else c->host->idle = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->pooled = false;
    c->host->nidle--;
    /* The idle timer runs on (a stop and a start again per request cost more than
     * its rare early firing, which finds the connection in use and does nothing). */
}

static void conn_close(h1_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    sl_h1 *h = c->h;
    pool_unlink(c);
    if (c->req) c->req->c = NULL;
    c->req = NULL;
    c->host->nconns--;
    h->nconns--;
    if (c->aprev) c->aprev->anext = c->anext;
    else h->conns = c->anext;
    if (c->anext) c->anext->aprev = c->aprev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed); /* the fd closes now; pending writes are cancelled */
    kick(h);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    SL_UNUSED(suggested);
    h1_conn *c = hd->data;
    if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
    /* Nothing unconsumed: read into the client's shared buffer; on_read keeps
     * only the leftover. A connection holding a stream between two events then
     * owns no read buffer. */
    if (c->rlen == 0) {
        if (c->rbuf) {
            sl_free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
        if (!c->h->rbuf) c->h->rbuf = sl_malloc(H1_RBUF_MAX);
        if (c->h->rbuf) {
            *b = uv_buf_init(c->h->rbuf, H1_RBUF_MAX);
            return;
        }
    }
    if (c->rcap - c->rlen < H1_RBUF_MIN_FREE && c->rpos) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rcap - c->rlen < H1_RBUF_MIN_FREE && c->rcap < H1_RBUF_MAX) {
        size_t ncap = c->rcap ? SL_MIN(c->rcap * 2, (size_t)H1_RBUF_MAX) : H1_RBUF_INIT;
        char *p = sl_realloc(c->rbuf, ncap);
        if (p) c->rbuf = p, c->rcap = ncap;
    }
    /* A full buffer (an oversized head, or no memory) reads 0 bytes: libuv reports UV_ENOBUFS. */
    *b = uv_buf_init(c->rbuf ? c->rbuf + c->rlen : NULL, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

/* Reading runs for the connection's whole life (pooled too: that is how staleness shows), except
 * while its request is paused. Each change costs an epoll_ctl, so only pause/resume change it. */
static void update_reading(h1_conn *c)
{
    bool want = !c->closing && !c->connecting && !c->eof && !(c->req && c->req->paused);
    if (want == c->reading) return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) return;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = want;
}

static void check_deadlines(sl_h1_req *q);

/* The connection's timer: its request's deadlines, or the pool idle timeout. */
static void on_conn_timer(uv_timer_t *t)
{
    h1_conn *c = t->data;
    if (c->req) {
        check_deadlines(c->req);
        return;
    }
    if (!c->pooled) return; /* pool_put starts it again */
    uint64_t now = uv_now(c->h->loop);
    if (now >= c->pooled_at + H1_IDLE_TIMEOUT_MS) {
        conn_close(c);
        return;
    }
    c->due = c->pooled_at + H1_IDLE_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_conn_timer, c->due - now, 0);
}

static h1_conn *conn_new(sl_h1 *h, h1_host *ho)
{
    h1_conn *c = sl_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->h = h;
    c->host = ho;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c->creq.data = c->wreq.data = c;
    c->open = 2;
    h->open_handles++;
    uv_tcp_nodelay(&c->tcp, 1);    /* applied when the socket is created */
    uv_tcp_keepalive(&c->tcp, 1, 60);
    c->anext = h->conns;
    if (h->conns) h->conns->aprev = c;
    h->conns = c;
    h->nconns++;
    ho->nconns++;
    return c;
}

/* A finished request's connection goes back to the pool (or closes if it cannot be reused). */
static void pool_put(h1_conn *c)
{
    sl_h1 *h = c->h;
    h1_host *ho = c->host;
    c->req = NULL;
    if (h->freeing || c->eof || ho->nidle >= H1_MAX_IDLE_PER_HOST) {
        conn_close(c);
        return;
    }
    c->pooled = true;
    c->prev = NULL;
    c->next = ho->idle;
    if (ho->idle) ho->idle->prev = c;
    ho->idle = c;
    ho->nidle++;
    c->pooled_at = uv_now(h->loop);
    /* Still running (for the last request, or an earlier stay in the pool): it fires
     * before the new deadline and re-arms. */
    if (!uv_is_active((uv_handle_t *)&c->timer)) {
        c->due = c->pooled_at + H1_IDLE_TIMEOUT_MS;
        uv_timer_start(&c->timer, on_conn_timer, H1_IDLE_TIMEOUT_MS, 0);
    }
    update_reading(c);
    if (h->whead) kick(h);
}

/* ---- sending ---- */

static void detach_close(sl_h1_req *q)
{
    h1_conn *c = q->c;
    if (!c) return;
    q->c = NULL;
    c->req = NULL;
    conn_close(c);
}

/* Errors found where no callback may run (inside start, or inside another request's callback):
 * the request timer reports them on a later turn. */
static void fail_later(sl_h1_req *q, sl_up_error err, const char *detail)
{
    detach_close(q);
    if (q->early) return;
    q->early = err;
    q->detail = detail;
    arm(q);
}

static void on_write(uv_write_t *w, int status)
{
    h1_conn *c = w->data;
    c->writing = false;
    if (c->closing || status == 0) return;
    sl_h1_req *q = c->req;
    if (q && !q->done) finish(q, SL_UP_ERR_IO, "send failed");
    else conn_close(c);
}

/* Head and body in one write; the kernel takes both at once unless the body is large. */
static void send_request(sl_h1_req *q)
{
    h1_conn *c = q->c;
    uv_buf_t b[2] = {uv_buf_init(q->head, (unsigned)q->head_len), uv_buf_init((char *)q->body, (unsigned)q->body_len)};
    unsigned nb = q->body_len ? 2 : 1;
    c->nreq++;
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        fail_later(q, SL_UP_ERR_IO, "send failed");
        return;
    }
    size_t left = (size_t)n;
    unsigned i = 0;
    while (i < nb && left >= b[i].len) left -= b[i++].len;
    if (i == nb) return;
    b[i].base += left;
    b[i].len -= left;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b + i, nb - i, on_write) != 0) {
        fail_later(q, SL_UP_ERR_IO, "send failed");
        return;
    }
    c->writing = true;
}

static void on_connect(uv_connect_t *cr, int status)
{
    h1_conn *c = cr->data;
    c->connecting = false;
    if (c->closing) return;
    sl_h1_req *q = c->req;
    if (status < 0 || !q) {
        if (q && !q->done) finish(q, SL_UP_ERR_CONNECT, uv_strerror(status));
        else conn_close(c);
        return;
    }
    update_reading(c);
    arm(q); /* the connect deadline is met */
    send_request(q);
}

static bool room_for_new(sl_h1 *h, h1_host *ho)
{
    if (h->max_host > 0 && ho->nconns >= h->max_host) return false;
    if (h->max_total <= 0 || h->nconns < h->max_total) return true;
    /* At the total cap: an idle connection to another host gives way (the oldest one of the first). */
    for (h1_host *o = h->hosts; o; o = o->next) {
        if (o == ho || !o->idle) continue;
        h1_conn *c = o->idle;
        while (c->next) c = c->next;
        conn_close(c);
        return h->nconns < h->max_total;
    }
    return false;
}

/* A pooled connection, a new one, or a place in the queue. 0 or an error for the caller to report. */
static int acquire(sl_h1_req *q)
{
    sl_h1 *h = q->h;
    h1_host *ho = q->host;
    h1_conn *c = ho->idle;
    if (c) {
        pool_unlink(c);
        c->req = q;
        q->c = c;
        q->reused = true;
        send_request(q);
        return SL_OK;
    }
    if (!room_for_new(h, ho)) {
        q->waiting = true;
        q->wnext = NULL;
        if (h->wtail) h->wtail->wnext = q;
        else h->whead = q;
        h->wtail = q;
        return SL_OK;
    }
    c = conn_new(h, ho);
    if (!c) return SL_ENOMEM;
    c->req = q;
    q->c = c;
    q->reused = false;
    q->conn_start_ms = uv_now(h->loop);
    c->connecting = true;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ho->addr, on_connect);
    if (rc) {
        c->connecting = false;
        fail_later(q, SL_UP_ERR_CONNECT, uv_strerror(rc));
    }
    return SL_OK;
}

static void on_kick(uv_timer_t *t)
{
    sl_h1 *h = t->data;
    /* One pass over the queue as it is now; requests that still find no room go back in order. */
    sl_h1_req *w = h->whead;
    h->whead = h->wtail = NULL;
    while (w && !h->freeing) {
        sl_h1_req *next = w->wnext;
        w->waiting = false;
        if (acquire(w) == SL_ENOMEM) fail_later(w, SL_UP_ERR_CONNECT, "out of memory");
        arm(w);
        w = next;
    }
}

static void kick(sl_h1 *h)
{
    if (h->whead && !h->freeing) uv_timer_start(&h->kick, on_kick, 0, 0);
}

/* ---- deadlines ---- */

static void check_deadlines(sl_h1_req *q)
{
    if (q->done) return;
    if (q->early) {
        finish(q, q->early, q->detail);
        return;
    }
    uint64_t now = uv_now(q->h->loop);
    if (q->total_ms && now >= q->start_ms + q->total_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_TOTAL, "total timeout");
    } else if (q->c && q->c->connecting && q->conn_ms && now >= q->conn_start_ms + q->conn_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_CONNECT, "connect timeout");
    } else if (!q->head_done && q->fb_ms && now >= q->start_ms + q->fb_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_FIRST_BYTE, "first byte timeout");
    } else if (q->head_done && q->idle_ms && !q->paused && now >= q->last_data_ms + q->idle_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_IDLE, "idle timeout");
    } else {
        arm(q); /* the idle clock moved since the timer was set */
    }
}

static void on_req_timer(uv_timer_t *t) { check_deadlines(t->data); }

/*
 * One timer per request, set to the nearest deadline; chunks only move a
 * timestamp. While the request has a connection, the timer is the
 * connection's (its pool idle timer when pooled): a keep-alive connection
 * keeps one timer running across requests instead of a start and a stop per
 * request. Lazy: a timer already set for an earlier time is left alone (it
 * fires, check_deadlines finds nothing due and re-arms), so neither a request
 * starting on a pooled connection nor the move from the first-byte deadline to
 * the idle one after the head costs a timer operation when the new deadline
 * is later.
 */
static void arm(sl_h1_req *q)
{
    if (q->done) return;
    uint64_t next = UINT64_MAX;
    if (q->early) next = 0;
    if (q->total_ms) next = SL_MIN(next, q->start_ms + q->total_ms);
    if (q->c && q->c->connecting && q->conn_ms) next = SL_MIN(next, q->conn_start_ms + q->conn_ms);
    if (!q->head_done && q->fb_ms) next = SL_MIN(next, q->start_ms + q->fb_ms);
    if (q->head_done && q->idle_ms && !q->paused) next = SL_MIN(next, q->last_data_ms + q->idle_ms);
    if (next == UINT64_MAX) return; /* a running timer finds nothing due when it fires */
    bool on_conn = q->c && !q->early;
    uv_timer_t *t = on_conn ? &q->c->timer : &q->timer;
    uint64_t *due = on_conn ? &q->c->due : &q->due;
    if (uv_is_active((uv_handle_t *)t) && *due <= next) return;
    uint64_t now = uv_now(q->h->loop);
    *due = next;
    uv_timer_start(t, on_conn ? on_conn_timer : on_req_timer, next > now ? next - now : 0, 0);
}

/* ---- completion ---- */

static bool reusable(const sl_h1_req *q, const h1_conn *c)
{
    /* Leftover bytes mean the server sent more than one response: never trust that connection. */
    return q->keep_alive && q->mode != BODY_CLOSE && !c->writing && !c->eof && !c->closing && c->rpos == c->rlen;
}

/* Reports once, then frees. The connection is pooled before on_done so that a retry started
 * from on_done can ride it. */
static void finish(sl_h1_req *q, sl_up_error err, const char *detail)
{
    if (q->done) return;
    q->done = true;
    h1_conn *c = q->c;
    if (c) {
        q->c = NULL;
        c->req = NULL;
        if (err == SL_UP_OK && reusable(q, c)) pool_put(c);
        else conn_close(c);
    }
    unqueue(q);
    uv_timer_stop(&q->timer);
    sl_up_result r = {.error = err, .status = q->status, .detail = err ? detail : NULL,
                      .reused_connection = q->reused, .bytes_received = q->bytes};
    if (q->cb.on_done) q->cb.on_done(q->ud, &r);
    destroy(q);
}

static void set_paused(sl_h1_req *q)
{
    q->paused = true;
    if (q->c) update_reading(q->c);
    arm(q); /* the idle clock stops while the client drains */
}

static void unpause(sl_h1_req *q)
{
    q->paused = false;
    q->want_resume = false;
    q->last_data_ms = uv_now(q->h->loop);
    if (q->c) update_reading(q->c);
    arm(q);
}

/* ---- response head ---- */

/* Body framing and keep-alive from the final response head (RFC 9112 §6.3, §9.3). */
static const char *framing(sl_h1_req *q, int minor, const sl_http_header *hs, size_t nh)
{
    bool te = false, chunked = false, have_cl = false, conn_close = false, conn_ka = false;
    uint64_t cl = 0;
    for (size_t i = 0; i < nh; i++) {
        sl_str name = hs[i].name, v = hs[i].value;
        if (name.n != 17 && name.n != 14 && name.n != 10) continue; /* none of the three below */
        if (sl_str_case_eq(name, SL_STR("transfer-encoding"))) {
            te = true;
            chunked = sl_str_case_eq(sl_h1_last_coding(v), SL_STR("chunked"));
        } else if (sl_str_case_eq(name, SL_STR("content-length"))) {
            uint64_t x;
            if (sl_str_to_u64(v, UINT64_MAX / 2, &x) != SL_OK || (have_cl && x != cl)) return "bad Content-Length";
            have_cl = true;
            cl = x;
        } else if (sl_str_case_eq(name, SL_STR("connection"))) {
            conn_close |= sl_h1_has_token(v, "close");
            conn_ka |= sl_h1_has_token(v, "keep-alive");
        }
    }
    q->keep_alive = !conn_close && (minor == 1 || conn_ka);
    if (q->head_method || q->status == 204 || q->status == 304) {
        q->mode = BODY_NONE;
    } else if (te) {
        q->mode = chunked ? BODY_CHUNKED : BODY_CLOSE;
        if (have_cl) q->keep_alive = false; /* both: smuggling-shaped, do not reuse */
        sl_http_chunked_init(&q->ck, UINT64_MAX);
    } else if (have_cl) {
        q->mode = BODY_LENGTH;
        q->remaining = cl;
    } else {
        q->mode = BODY_CLOSE;
    }
    return NULL;
}

static void consume(h1_conn *c, size_t n)
{
    c->rpos += n;
    if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
}

/* Step results: more input needed, go on, or stop (finished, paused, cancelled). */
enum { STEP_MORE, STEP_AGAIN, STEP_STOP };

static int step_head(sl_h1_req *q, h1_conn *c)
{
    size_t n = c->rlen - c->rpos;
    if (n == 0) { /* nothing read yet (there may be no buffer at all) */
        c->hscan = 0;
        return STEP_MORE;
    }
    const char *p = c->rbuf + c->rpos;
    if (c->hscan) {
        /* An earlier read ended inside this head: look for its end in the new bytes
         * only before parsing it again (a head dripping in stays linear). */
        size_t from = c->hscan > 3 ? c->hscan - 3 : 0;
        if (n <= from || !sl_h1_find_head_end(p + from, n - from)) {
            c->hscan = n;
            if (n <= SL_UP_MAX_HEADER_BYTES) return STEP_MORE;
            finish(q, SL_UP_ERR_IO, "response header block too large");
            return STEP_STOP;
        }
    }
    sl_http_header hs[SL_UP_MAX_HEADERS];
    size_t nh = 0, hlen = 0;
    int status = 0, minor = 1;
    int rc = sl_h1_parse_head(p, SL_MIN(n, (size_t)SL_UP_MAX_HEADER_BYTES), &status, &minor, hs, &nh, &hlen);
    if (rc == SL_EAGAIN) {
        c->hscan = n;
        if (n <= SL_UP_MAX_HEADER_BYTES) return STEP_MORE;
        finish(q, SL_UP_ERR_IO, "response header block too large");
        return STEP_STOP;
    }
    c->hscan = 0;
    if (status && status < 200) q->status = 0; /* an interim status is not the answer */
    else q->status = status;
    if (rc) {
        finish(q, SL_UP_ERR_IO, rc == SL_ELIMIT ? "response header block too large" : "malformed response head");
        return STEP_STOP;
    }
    if (status < 200) {
        if (status == 101) {
            finish(q, SL_UP_ERR_IO, "unexpected 101 Switching Protocols");
            return STEP_STOP;
        }
        consume(c, hlen); /* interim (100 Continue, 103 Early Hints): dropped */
        return STEP_AGAIN;
    }
    const char *bad = framing(q, minor, hs, nh);
    if (bad) {
        finish(q, SL_UP_ERR_IO, bad);
        return STEP_STOP;
    }
    q->head_done = true;
    q->last_data_ms = uv_now(q->h->loop);
    arm(q); /* first-byte deadline met; the idle one starts */
    q->in_cb = true;
    rc = q->cb.on_head ? q->cb.on_head(q->ud, q->status, hs, nh) : 0;
    q->in_cb = false;
    consume(c, hlen); /* the header slices pointed into rbuf until now */
    if (q->done) return STEP_STOP;
    if (rc < 0) {
        finish(q, SL_UP_ERR_ABORTED, rc == SL_ENOMEM ? "out of memory" : "aborted by on_head");
        return STEP_STOP;
    }
    if (q->want_resume) unpause(q);
    if (q->mode == BODY_NONE || (q->mode == BODY_LENGTH && q->remaining == 0)) {
        finish(q, SL_UP_OK, NULL);
        return STEP_STOP;
    }
    return q->paused ? STEP_STOP : STEP_AGAIN;
}

/* Hands bytes to on_data. 0: accepted; SL_EAGAIN: not consumed (paused, or resumed at once: the
 * caller's loop redelivers); SL_ECLOSED: the request is over. */
static int deliver(sl_h1_req *q, const char *p, size_t n)
{
    q->in_cb = true;
    int rc = q->cb.on_data ? q->cb.on_data(q->ud, p, n) : 0;
    q->in_cb = false;
    if (q->done) return SL_ECLOSED;
    if (rc == SL_EAGAIN) {
        set_paused(q);
    } else if (rc < 0) {
        finish(q, SL_UP_ERR_ABORTED, "aborted by on_data");
        return SL_ECLOSED;
    } else {
        q->bytes += n;
        q->last_data_ms = uv_now(q->h->loop);
    }
    if (q->want_resume && q->paused) unpause(q);
    q->want_resume = false;
    return rc == SL_EAGAIN ? SL_EAGAIN : SL_OK;
}

static int step_raw_body(sl_h1_req *q, h1_conn *c)
{
    size_t avail = c->rlen - c->rpos;
    if (avail == 0) return STEP_MORE;
    size_t n = q->mode == BODY_LENGTH ? (size_t)SL_MIN((uint64_t)avail, q->remaining) : avail;
    int rc = deliver(q, c->rbuf + c->rpos, n);
    if (rc == SL_ECLOSED) return STEP_STOP;
    if (rc == SL_EAGAIN) return STEP_AGAIN; /* the loop stops if still paused */
    consume(c, n);
    if (q->mode == BODY_LENGTH && (q->remaining -= n) == 0) {
        finish(q, SL_UP_OK, NULL);
        return STEP_STOP;
    }
    return STEP_AGAIN;
}

static int step_chunked(sl_h1_req *q, h1_conn *c)
{
    if (q->dec.len) {
        int rc = deliver(q, q->dec.p, q->dec.len);
        if (rc == SL_ECLOSED) return STEP_STOP;
        if (rc == SL_EAGAIN) return STEP_AGAIN;
        sl_buf_clear(&q->dec);
    }
    if (q->body_done) {
        finish(q, SL_UP_OK, NULL);
        return STEP_STOP;
    }
    size_t avail = c->rlen - c->rpos, used = 0;
    if (avail == 0) return STEP_MORE;
    int rc = sl_http_chunked_decode(&q->ck, c->rbuf + c->rpos, avail, &q->dec, &used);
    consume(c, used);
    if (rc < 0) {
        finish(q, SL_UP_ERR_IO, rc == SL_ENOMEM ? "out of memory" : "malformed chunked body");
        return STEP_STOP;
    }
    if (rc == 1) q->body_done = true;
    return q->dec.len || q->body_done ? STEP_AGAIN : STEP_MORE;
}

/* The connection is at EOF (or reset) and every buffered byte has been handled. */
static void on_eof(sl_h1_req *q, h1_conn *c)
{
    if (q->head_done && q->mode == BODY_CLOSE && c->err == 0) {
        finish(q, SL_UP_OK, NULL);
        return;
    }
    const char *why = c->err == UV_ENOBUFS ? "response header block too large"
                      : c->err            ? "connection reset"
                      : q->head_done      ? "connection closed mid-body"
                      : c->rlen > c->rpos ? "connection closed in the response head"
                                          : "connection closed before a response";
    finish(q, SL_UP_ERR_IO, why);
}

/* Runs the response state machine over the buffered bytes until it needs more, pauses or ends. */
static void process(sl_h1_req *q)
{
    while (!q->done && !q->paused && q->c) {
        h1_conn *c = q->c;
        int st = !q->head_done ? step_head(q, c) : q->mode == BODY_CHUNKED ? step_chunked(q, c) : step_raw_body(q, c);
        if (st == STEP_STOP) return;
        if (st == STEP_MORE) {
            if (c->eof && !q->done && q->c == c) on_eof(q, c);
            return;
        }
    }
}

/* After a read into the shared buffer has been processed: copies what is
 * left (a partial head or event, or bytes held back while paused) into a
 * buffer of the connection's own. */
static void keep_leftover(h1_conn *c)
{
    if (c->rbuf != c->h->rbuf) return;
    size_t n = c->rlen - c->rpos;
    char *own = n ? sl_malloc(n + H1_RBUF_MIN_FREE) : NULL;
    if (own) memcpy(own, c->rbuf + c->rpos, n);
    c->rbuf = own;
    c->rcap = own ? n + H1_RBUF_MIN_FREE : 0;
    c->rpos = 0;
    c->rlen = own ? n : 0;
    if (n && !own) { /* the bytes cannot be kept: the response is lost */
        if (c->req && !c->req->done) finish(c->req, SL_UP_ERR_IO, "out of memory");
        conn_close(c);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    h1_conn *c = st->data;
    bool shared = b->base && b->base == c->h->rbuf;
    if (c->closing || n == 0) return;
    if (n > 0 && shared && !c->req) { /* pooled and readable: stale (see below) */
        conn_close(c);
        return;
    }
    if (n > 0 && shared) {
        c->rbuf = b->base; /* borrowed until keep_leftover() */
        c->rcap = H1_RBUF_MAX;
        c->rpos = 0;
        c->rlen = (size_t)n;
    } else if (n > 0) {
        c->rlen += (size_t)n;
    } else {
        c->eof = true;
        c->err = n == UV_EOF ? 0 : (int)n;
        update_reading(c);
    }
    sl_h1_req *q = c->req;
    if (!q) { /* pooled: the server closed it or talks out of turn, either way it is stale */
        conn_close(c);
        return;
    }
    process(q);
    if (shared) keep_leftover(c);
}

/* ---- the request ---- */

static int parse_url_cached(sl_h1 *h, const char *url, h1_target *t)
{
    size_t n = strlen(url);
    if (n && n == h->last_url.len && memcmp(url, h->last_url.url, n) == 0) {
        t->addr = h->last_url.addr;
        t->authority = (sl_str){url + h->last_url.auth_off, h->last_url.auth_len};
        t->path = (sl_str){url + h->last_url.path_off, h->last_url.path_len};
        t->add_slash = h->last_url.add_slash;
        return SL_OK;
    }
    int rc = sl_h1_parse_url(url, t);
    if (rc == SL_OK && n < sizeof h->last_url.url) {
        memcpy(h->last_url.url, url, n);
        h->last_url.len = n;
        h->last_url.addr = t->addr;
        h->last_url.auth_off = (size_t)(t->authority.p - url), h->last_url.auth_len = t->authority.n;
        h->last_url.path_off = (size_t)(t->path.p - url), h->last_url.path_len = t->path.n;
        h->last_url.add_slash = t->add_slash;
    }
    return rc;
}

static bool same_addr(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
    if (x->ss_family != y->ss_family) return false;
    if (x->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)x, *b = (const void *)y;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const void *)x, *b = (const void *)y;
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
}

/* Hosts live as long as the client: a worker talks to a handful of addresses (capped). */
static int get_host(sl_h1 *h, const h1_target *t, h1_host **out)
{
    for (h1_host *ho = h->hosts; ho; ho = ho->next)
        if (same_addr(&ho->addr, &t->addr)) {
            *out = ho;
            return SL_OK;
        }
    if (h->nhosts >= H1_MAX_HOSTS) return SL_ENOTFOUND;
    h1_host *ho = sl_calloc(1, sizeof *ho);
    if (!ho) return SL_ENOMEM;
    ho->addr = t->addr;
    ho->next = h->hosts;
    h->hosts = ho;
    h->nhosts++;
    *out = ho;
    return SL_OK;
}

/* A zeroed request block with room for need bytes: a cached one if one is big enough. */
static sl_h1_req *req_alloc(sl_h1 *h, size_t need)
{
    sl_h1_req *q = NULL;
    size_t size = need;
    for (int i = h->nreq_cache - 1; i >= 0; i--) {
        if (h->req_cache[i]->alloc_size < need) continue;
        q = h->req_cache[i];
        size = q->alloc_size;
        h->req_cache[i] = h->req_cache[--h->nreq_cache];
        break;
    }
    if (!q && !(q = sl_malloc(size))) return NULL;
    memset(q, 0, sizeof *q);
    q->alloc_size = size;
    return q;
}

int sl_h1_start(sl_h1 *h, const sl_up_request *r, const sl_up_callbacks *cb, void *ud, sl_up_req **out)
{
    *out = NULL;
    h1_target t;
    h1_host *ho;
    if (!r->url || h->freeing || parse_url_cached(h, r->url, &t) != SL_OK) return SL_ENOTFOUND;
    int rc = get_host(h, &t, &ho);
    if (rc) return rc;
    head_plan hp;
    rc = sl_h1_valid_method(r->method) ? sl_h1_head_size(r, &t, &hp) : SL_EINVAL;
    /* The request and its head in one allocation; an invalid request has none (it fails from the timer). */
    size_t need = sizeof(sl_h1_req) + (rc ? 0 : hp.total + 1);
    sl_h1_req *q = req_alloc(h, need);
    if (!q) return SL_ENOMEM;
    if (!rc) {
        q->head = (char *)(q + 1);
        q->head_len = hp.total;
        sl_h1_head_write(q->head, r, &t, &hp);
    }
    q->kind = SL_UP_KIND_H1;
    q->h = h;
    q->host = ho;
    q->cb = *cb;
    q->ud = ud;
    q->body = r->body;
    q->body_len = r->body_len;
    q->start_ms = uv_now(h->loop);
    q->conn_ms = r->connect_timeout_ms;
    q->fb_ms = r->first_byte_timeout_ms;
    q->idle_ms = r->idle_timeout_ms;
    q->total_ms = r->total_timeout_ms;
    sl_buf_init(&q->dec, H1_RBUF_MAX);
    q->head_method = r->method && strcmp(r->method, "HEAD") == 0;
    uv_timer_init(h->loop, &q->timer);
    q->timer.data = q;
    h->open_handles++;
    q->next = h->reqs;
    if (h->reqs) h->reqs->prev = q;
    h->reqs = q;
    if (rc) { /* reported from the timer, so on_done never runs before we return q */
        fail_later(q, SL_UP_ERR_CONNECT, "invalid request (method, URL or header bytes)");
    } else if (acquire(q) == SL_ENOMEM) {
        q->done = true;
        destroy(q);
        return SL_ENOMEM;
    }
    arm(q);
    *out = (sl_up_req *)(void *)q;
    return SL_OK;
}

void sl_h1_pause(sl_up_req *uq)
{
    sl_h1_req *q = (sl_h1_req *)(void *)uq;
    if (!q || q->done || q->paused) return;
    q->want_resume = false;
    set_paused(q);
}

void sl_h1_resume(sl_up_req *uq)
{
    sl_h1_req *q = (sl_h1_req *)(void *)uq;
    if (!q || q->done || !q->paused) return;
    if (q->in_cb) { /* its own callback is on the stack: done when it returns */
        q->want_resume = true;
        return;
    }
    unpause(q);
    if (q->c && !q->c->connecting) process(q); /* may call on_data with the bytes held back */
}

void sl_h1_cancel(sl_up_req *uq)
{
    sl_h1_req *q = (sl_h1_req *)(void *)uq;
    if (!q || q->done) return;
    q->done = true;
    detach_close(q); /* half-used: never pooled again */
    destroy(q);
}

sl_h1 *sl_h1_new(uv_loop_t *loop, long max_total, long max_host)
{
    sl_h1 *h = sl_calloc(1, sizeof *h);
    if (!h) return NULL;
    h->loop = loop;
    h->max_total = max_total;
    h->max_host = max_host;
    uv_timer_init(loop, &h->kick);
    h->kick.data = h;
    h->open_handles = 1;
    return h;
}

static void on_kick_closed(uv_handle_t *hd)
{
    sl_h1 *h = hd->data;
    h->open_handles--;
    maybe_free(h);
}

void sl_h1_free(sl_h1 *h)
{
    if (!h || h->freeing) return;
    h->freeing = true;
    while (h->reqs) {
        sl_h1_req *q = h->reqs;
        q->done = true; /* no callback from here on */
        destroy(q);
    }
    h->whead = h->wtail = NULL;
    while (h->conns) conn_close(h->conns);
    uv_timer_stop(&h->kick);
    uv_close((uv_handle_t *)&h->kick, on_kick_closed);
}
