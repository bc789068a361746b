/*
 * upstream.c: libcurl's multi-socket API on a libuv loop, and the life cycle
 * of a request (start, deadlines, pause/resume, completion, cancel, free).
 *
 * curl tells us which sockets to watch (socket callback -> one uv_poll each)
 * and when to call it back (timer callback -> one uv_timer); we feed readiness
 * back with curl_multi_socket_action() and then collect finished transfers.
 * First-byte, idle and total deadlines are our own per-request uv_timer so
 * that each reports its own error; curl only enforces the connect timeout.
 * Easy handle options and the header/body callbacks live in upstream_req.c.
 */
#include "http/upstream_int.h"

#include <pthread.h>
#include <stdlib.h>

/* ---- deferred work (see upstream_int.h) ---- */

static void defer(sl_upstream *u, sl_up_req *q)
{
    if (q->deferred) return;
    q->deferred = true;
    q->dnext = NULL;
    if (u->dtail) u->dtail->dnext = q;
    else u->dhead = q;
    u->dtail = q;
}

static void maybe_free_upstream(sl_upstream *u)
{
    if (u->freeing && u->open_handles == 0) sl_free(u);
}

static void on_req_timer_closed(uv_handle_t *h)
{
    sl_up_req *q = h->data;
    sl_upstream *u = q->u;
    sl_free(q);
    u->open_handles--;
    maybe_free_upstream(u);
}

/* Frees the request; only ever called when no curl callback is on the stack. */
static void destroy(sl_up_req *q)
{
    sl_upstream *u = q->u;
    if (q->closing) return; /* on_done freed the upstream, which destroyed q already */
    if (q->deferred) { /* still linked from u->dhead: reap() comes back here */
        q->zombie = true;
        return;
    }
    q->closing = true;
    if (q->added) curl_multi_remove_handle(u->multi, q->easy); /* closes a half-used connection */
    q->added = false;
    curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->hdrs);
    sl_buf_free(&q->hraw);
    sl_buf_free(&q->hoff);
    if (q->prev) q->prev->next = q->next;
    else u->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_req_timer_closed);
}

/* Reports the outcome once, then frees the request. */
static void finish(sl_up_req *q, sl_up_error err, const char *detail)
{
    if (q->done) return;
    q->done = true;
    sl_up_result r = {.error = err, .status = q->status, .detail = detail, .bytes_received = q->bytes};
    if (q->added) {
        long nconn = -1;
        char *ip = NULL;
        curl_easy_getinfo(q->easy, CURLINFO_NUM_CONNECTS, &nconn);
        curl_easy_getinfo(q->easy, CURLINFO_PRIMARY_IP, &ip);
        /* No new connection, yet a peer: the transfer rode on a pooled one. */
        r.reused_connection = nconn == 0 && ip && *ip;
        curl_multi_remove_handle(q->u->multi, q->easy);
        q->added = false;
    }
    if (q->cb.on_done) q->cb.on_done(q->ud, &r);
    destroy(q);
}

static sl_up_error map_curl_error(const sl_up_req *q, CURLcode code)
{
    if (q->fail) return q->fail; /* we stopped curl (our abort: WRITE_ERROR -> ABORTED; header cap -> IO) */
    switch (code) {
    case CURLE_OK:
        return SL_UP_OK;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return SL_UP_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        /* Only the connect timeout is curl's; ours are timers. */
        return q->head_done ? SL_UP_ERR_TIMEOUT_TOTAL : SL_UP_ERR_TIMEOUT_CONNECT;
    default: /* RECV_ERROR, SEND_ERROR, PARTIAL_FILE, GOT_NOTHING, HTTP2, HTTP2_STREAM, ... */
        return SL_UP_ERR_IO;
    }
}

static void complete(sl_up_req *q, CURLcode code)
{
    /* A body-less response still gets its on_head before on_done. */
    if (code == CURLE_OK && !q->head_done && sl_up__head_complete(q) != 0) {
        if (!q->done) finish(q, q->fail, q->fail_detail);
        return;
    }
    const char *detail = q->fail ? q->fail_detail : q->errbuf[0] ? q->errbuf : curl_easy_strerror(code);
    finish(q, map_curl_error(q, code), code == CURLE_OK ? NULL : detail);
}

static void process_info(sl_upstream *u)
{
    CURLMsg *m;
    int left;
    while (!u->freeing && u->multi && (m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURLcode code = m->data.result;
        void *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        sl_up_req *q = priv;
        if (q && !q->done) complete(q, code);
    }
}

static void add_to_multi(sl_up_req *q)
{
    if (curl_multi_add_handle(q->u->multi, q->easy) != CURLM_OK) {
        q->early = SL_UP_ERR_CONNECT;
        q->fail_detail = "curl_multi_add_handle failed";
        sl_up__arm(q);
        return;
    }
    q->added = true;
}

static void do_resume(sl_up_req *q)
{
    q->paused = false;
    q->last_data_ms = uv_now(q->u->loop);
    sl_up__arm(q);
    if (!q->added) return;
    /* May run on_data synchronously with the bytes curl kept while paused. */
    CURLcode rc = curl_easy_pause(q->easy, CURLPAUSE_CONT);
    if (rc != CURLE_OK && !q->done) finish(q, q->fail ? q->fail : SL_UP_ERR_IO, q->fail ? q->fail_detail : curl_easy_strerror(rc));
}

/* Does what was asked for from inside curl callbacks, now that curl has returned. */
static void reap(sl_upstream *u)
{
    while (u->dhead) {
        sl_up_req *q = u->dhead;
        u->dhead = q->dnext;
        if (!u->dhead) u->dtail = NULL;
        q->deferred = false;
        if (q->zombie) {
            destroy(q);
            continue;
        }
        if (q->want_add) {
            q->want_add = false;
            add_to_multi(q);
        }
        if (q->want_resume && !q->done) {
            q->want_resume = false;
            do_resume(q);
        }
    }
}

static void finish_free(sl_upstream *u);

static void leave(sl_upstream *u)
{
    reap(u);
    process_info(u);
    reap(u);
    if (--u->busy == 0 && u->free_pending) finish_free(u);
}

static void drive(sl_upstream *u, curl_socket_t fd, int flags)
{
    int running;
    u->busy++;
    curl_multi_socket_action(u->multi, fd, flags, &running);
    leave(u);
}

/* ---- curl's socket and timer callbacks ---- */

static void on_sock_closed(uv_handle_t *h)
{
    sl_up_sock *s = h->data;
    sl_upstream *u = s->u;
    sl_free(s);
    u->open_handles--;
    maybe_free_upstream(u);
}

static void close_sock(sl_upstream *u, sl_up_sock *s)
{
    if (s->prev) s->prev->next = s->next;
    else u->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sl_up_sock *s = h->data;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    drive(s->u, s->fd, flags);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    SL_UNUSED(e);
    sl_upstream *u = userp;
    sl_up_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(u->multi, fd, NULL);
            close_sock(u, s);
        }
        return 0;
    }
    if (!s) {
        s = sl_calloc(1, sizeof *s);
        if (!s) return -1;
        if (uv_poll_init_socket(u->loop, &s->poll, fd) != 0) {
            sl_free(s);
            return -1;
        }
        s->poll.data = s;
        s->u = u;
        s->fd = fd;
        s->next = u->socks;
        if (u->socks) u->socks->prev = s;
        u->socks = s;
        u->open_handles++;
        curl_multi_assign(u->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    SL_UNUSED(m);
    sl_upstream *u = userp;
    if (timeout_ms < 0) uv_timer_stop(&u->timer);
    else uv_timer_start(&u->timer, on_curl_timer, (uint64_t)timeout_ms, 0); /* 0: next loop turn, never re-enter curl */
    return 0;
}

/* ---- per-request deadlines ---- */

static void check_deadlines(sl_up_req *q)
{
    if (q->done) return;
    if (q->early) {
        finish(q, q->early, q->fail_detail);
        return;
    }
    uint64_t now = uv_now(q->u->loop);
    if (q->total_ms && now >= q->start_ms + q->total_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_TOTAL, "total timeout");
    } else if (!q->head_done && q->fb_ms && now >= q->start_ms + q->fb_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_FIRST_BYTE, "first byte timeout");
    } else if (q->head_done && q->idle_ms && !q->paused && now >= q->last_data_ms + q->idle_ms) {
        finish(q, SL_UP_ERR_TIMEOUT_IDLE, "idle timeout");
    } else {
        sl_up__arm(q); /* the idle clock moved since the timer was set */
    }
}

static void on_req_timer(uv_timer_t *t)
{
    sl_up_req *q = t->data;
    sl_upstream *u = q->u;
    u->busy++; /* on_done may free the upstream: make that wait for leave() */
    check_deadlines(q);
    leave(u);
}

void sl_up__arm(sl_up_req *q)
{
    if (q->done) return;
    uint64_t next = UINT64_MAX;
    if (q->early) next = 0;
    if (q->total_ms) next = SL_MIN(next, q->start_ms + q->total_ms);
    if (!q->head_done && q->fb_ms) next = SL_MIN(next, q->start_ms + q->fb_ms);
    if (q->head_done && q->idle_ms && !q->paused) next = SL_MIN(next, q->last_data_ms + q->idle_ms);
    if (next == UINT64_MAX) {
        uv_timer_stop(&q->timer);
        return;
    }
    uint64_t now = uv_now(q->u->loop);
    uv_timer_start(&q->timer, on_req_timer, next > now ? next - now : 0, 0);
}

/* ---- public API ---- */

/*
 * libcurl (and through it OpenSSL and GnuTLS) is initialised on the first
 * request that needs it, not at start: with only plain http:// upstreams at
 * numeric addresses (the native client) it never is, which keeps about 2.5 MB
 * of library state out of an idle gateway. Workers may get there at the same
 * time: pthread_once.
 */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_ok;

static void curl_init_once(void) { curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

static bool curl_ready(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_ok;
}

int sl_upstream_global_init(void) { return SL_OK; }

void sl_upstream_global_cleanup(void)
{
    if (curl_ok) curl_global_cleanup();
    curl_ok = false;
}

/* The multi handle, made with the first request that goes through curl. */
static int ensure_multi(sl_upstream *u)
{
    if (u->multi) return SL_OK;
    if (!curl_ready() || !(u->multi = curl_multi_init())) return SL_ENOMEM;
    u->share = curl_share_init(); /* optional: without it each handle keeps its own TLS sessions */
    if (u->share) curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    long total = u->max_total, per_host = u->max_host;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, total > 0 ? total : 0L);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host > 0 ? per_host : 0L);
    /* The idle pool must hold every connection we allow, or keep-alive is lost under load. */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, total > 0 ? total : 1024L);
    return SL_OK;
}

/* SLUICE_FORCE_CURL=1 in the environment does what opts->force_curl does (for comparisons). */
static bool force_curl(const sl_upstream_opts *opts)
{
    if (opts && opts->force_curl) return true;
    const char *e = getenv("SLUICE_FORCE_CURL");
    return e && *e && strcmp(e, "0") != 0;
}

sl_upstream *sl_upstream_new(uv_loop_t *loop, const sl_upstream_opts *opts)
{
    sl_upstream *u = sl_calloc(1, sizeof *u);
    if (!u) return NULL;
    u->loop = loop;
    long total = opts ? opts->max_connections : 0, per_host = opts ? opts->max_host_connections : 0;
    u->max_total = total;
    u->max_host = per_host;
    if (!force_curl(opts)) {
        u->h1 = sl_h1_new(loop, total, per_host);
        if (!u->h1) {
            sl_free(u);
            return NULL;
        }
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    u->open_handles = 1;
    return u;
}

static void on_timer_closed(uv_handle_t *h)
{
    sl_upstream *u = h->data;
    u->open_handles--;
    maybe_free_upstream(u);
}

static void finish_free(sl_upstream *u)
{
    u->free_pending = false;
    for (sl_up_req *q = u->dhead; q; q = q->dnext) q->deferred = false; /* all are zombies now */
    u->dhead = u->dtail = NULL;
    while (u->reqs) destroy(u->reqs);
    if (u->multi) curl_multi_cleanup(u->multi); /* closes pooled connections; may call socket_cb with REMOVE */
    u->multi = NULL;
    if (u->share) curl_share_cleanup(u->share);
    u->share = NULL;
    while (u->socks) close_sock(u, u->socks);
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, on_timer_closed);
}

void sl_upstream_free(sl_upstream *u)
{
    if (!u || u->freeing) return;
    u->freeing = true;
    sl_h1_free(u->h1); /* its memory goes with its own handles */
    u->h1 = NULL;
    for (sl_up_req *q = u->reqs; q; q = q->next) {
        q->done = true; /* no callback from here on */
        q->zombie = true;
    }
    if (u->busy) { /* called from a callback: curl is below us on the stack */
        u->free_pending = true;
        return;
    }
    finish_free(u);
}

sl_up_req *sl_upstream_start(sl_upstream *u, const sl_up_request *r, const sl_up_callbacks *cb, void *ud)
{
    if (u->freeing) return NULL;
    if (u->h1) { /* plain http to a numeric address: the native client; anything else: curl */
        sl_up_req *nq = NULL;
        int hrc = sl_h1_start(u->h1, r, cb, ud, &nq);
        if (hrc == SL_OK) return nq;
        if (hrc != SL_ENOTFOUND) return NULL;
    }
    if (ensure_multi(u) != SL_OK) return NULL;
    sl_up_req *q = sl_calloc(1, sizeof *q);
    if (!q) return NULL;
    q->kind = SL_UP_KIND_CURL;
    q->easy = curl_easy_init();
    if (!q->easy) {
        sl_free(q);
        return NULL;
    }
    q->u = u;
    q->cb = *cb;
    q->ud = ud;
    sl_buf_init(&q->hraw, SL_UP_MAX_HEADER_BYTES);
    sl_buf_init(&q->hoff, SL_UP_MAX_HEADERS * sizeof(sl_up_hoff));
    uv_timer_init(u->loop, &q->timer);
    q->timer.data = q;
    u->open_handles++;
    q->next = u->reqs;
    if (u->reqs) u->reqs->prev = q;
    u->reqs = q;
    q->start_ms = uv_now(u->loop);
    q->fb_ms = r->first_byte_timeout_ms;
    q->idle_ms = r->idle_timeout_ms;
    q->total_ms = r->total_timeout_ms;
    int rc = sl_up__setup_easy(q, r);
    if (rc == SL_ENOMEM) {
        q->done = true;
        destroy(q);
        return NULL;
    }
    if (rc) { /* reported from the timer, so on_done never runs before we return q */
        q->early = SL_UP_ERR_CONNECT;
        q->fail_detail = "invalid request (method, URL or header bytes)";
        sl_up__arm(q);
        return q;
    }
    sl_up__arm(q);
    if (u->in_cb) { /* curl refuses add_handle from inside its callbacks */
        q->want_add = true;
        defer(u, q);
    } else {
        add_to_multi(q);
    }
    return q;
}

void sl_up_req_pause(sl_up_req *q)
{
    if (q && sl_up__kind(q) == SL_UP_KIND_H1) {
        sl_h1_pause(q);
        return;
    }
    if (!q || q->done || q->paused) return;
    q->paused = true;
    q->want_resume = false;
    if (q->added) curl_easy_pause(q->easy, CURLPAUSE_RECV);
    sl_up__arm(q);
}

void sl_up_req_resume(sl_up_req *q)
{
    if (q && sl_up__kind(q) == SL_UP_KIND_H1) {
        sl_h1_resume(q);
        return;
    }
    if (!q || q->done || !q->paused) return;
    sl_upstream *u = q->u;
    if (u->in_cb) {
        q->want_resume = true;
        defer(u, q);
        return;
    }
    u->busy++;
    do_resume(q);
    leave(u);
}

void sl_up_req_cancel(sl_up_req *q)
{
    if (q && sl_up__kind(q) == SL_UP_KIND_H1) {
        sl_h1_cancel(q);
        return;
    }
    if (!q || q->done) return;
    q->done = true;
    q->zombie = true;
    if (q->u->in_cb) {
        defer(q->u, q);
        return;
    }
    destroy(q);
}
