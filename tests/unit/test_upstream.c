/*
 * test_upstream.c: the upstream client (src/http/upstream.c, and the native
 * HTTP/1.1 path in src/http/h1client.c) against a tiny
 * scripted HTTP/1.1 server that runs on the same libuv loop: it reads one
 * request (head + Content-Length body), then plays a script of steps (send
 * bytes, reset, close, hold) with delays between them, and keeps the
 * connection open for the next request. Only 127.0.0.1.
 *
 * Deadlines in the scripts are ordering tools (a 100 ms timeout against a
 * server that never answers), not performance assertions. A generous watchdog
 * turns a hang into a failure instead of a stuck test run.
 *
 * The common suite runs twice: once with curl forced, once on the native path
 * (plain http to 127.0.0.1 goes there by default). The native group adds its
 * own cases: pooling, staleness, framing, 1xx, large bodies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "http/upstream.h"

#define WATCHDOG_MS 20000

/* ---- scripted server ---- */

enum { ACT_SEND = 1, ACT_RESET, ACT_CLOSE, ACT_HOLD };

typedef struct step {
    uint64_t delay_ms;
    int act;
    const char *data; /* ACT_SEND: NUL-terminated, static */
} step;

#define MAX_STEPS 16
typedef struct script {
    step steps[MAX_STEPS];
} script;

typedef struct tconn tconn;

typedef struct tsrv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    const script *scripts; /* request i plays scripts[min(i, nscripts - 1)] */
    int nscripts;
    int served;
    int accepted;
    int eofs; /* connections the client closed (EOF or reset) */
    int pipelined; /* bytes arrived while a script was still playing */
    sl_buf last_head, last_body;
    tconn *conns;
} tsrv;

struct tconn {
    tsrv *s;
    uv_tcp_t tcp;
    uv_timer_t timer;
    sl_buf in;
    const script *sc;
    int step;
    int open; /* handles still to close */
    bool closing;
    tconn *next;
};

static void conn_handle_closed(uv_handle_t *h)
{
    tconn *c = h->data;
    if (--c->open) return;
    sl_buf_free(&c->in);
    sl_free(c);
}

static void conn_close(tconn *c, bool reset)
{
    if (c->closing) return;
    c->closing = true;
    for (tconn **pp = &c->s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    if (reset) uv_tcp_close_reset(&c->tcp, conn_handle_closed);
    else uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    sl_free(w);
}

static void try_request(tconn *c);
static void on_step(uv_timer_t *t);

static void next_step(tconn *c)
{
    if (c->closing) return;
    if (!c->sc || c->step >= MAX_STEPS || !c->sc->steps[c->step].act) {
        c->sc = NULL; /* script over: keep the connection for the next request */
        try_request(c);
        return;
    }
    uv_timer_start(&c->timer, on_step, c->sc->steps[c->step].delay_ms, 0);
}

static void on_step(uv_timer_t *t)
{
    tconn *c = t->data;
    const step *st = &c->sc->steps[c->step++];
    switch (st->act) {
    case ACT_SEND: {
        uv_write_t *w = sl_malloc(sizeof *w);
        uv_buf_t b = uv_buf_init((char *)st->data, (unsigned)strlen(st->data));
        assert_non_null(w);
        assert_int_equal(uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
        next_step(c);
        break;
    }
    case ACT_RESET:
        conn_close(c, true);
        break;
    case ACT_CLOSE:
        conn_close(c, false);
        break;
    default: /* ACT_HOLD: say nothing, keep the socket open */
        break;
    }
}

static size_t find_content_length(sl_str head)
{
    static const char key[] = "\ncontent-length:";
    for (size_t i = 0; i + sizeof key - 1 <= head.n; i++) {
        if (strncasecmp(head.p + i, key, sizeof key - 1) != 0) continue;
        size_t v = 0;
        for (size_t k = i + sizeof key - 1; k < head.n && head.p[k] != '\r'; k++)
            if (head.p[k] >= '0' && head.p[k] <= '9') v = v * 10 + (size_t)(head.p[k] - '0');
        return v;
    }
    return 0;
}

/* A target "/sN" plays scripts[N]; any other plays them in arrival order. */
static int pick_script(const tsrv *s, sl_str head)
{
    const char *sp = memchr(head.p, ' ', head.n);
    if (sp && (size_t)(sp - head.p) + 4 < head.n && sp[1] == '/' && sp[2] == 's' && sp[3] >= '0' && sp[3] <= '9') {
        int n = sp[3] - '0';
        if (n < s->nscripts) return n;
    }
    return s->served < s->nscripts ? s->served : s->nscripts - 1;
}

static void try_request(tconn *c)
{
    if (c->sc || c->closing) return;
    const char *end = c->in.len ? memmem(c->in.p, c->in.len, "\r\n\r\n", 4) : NULL;
    if (!end) return;
    size_t hlen = (size_t)(end - c->in.p) + 4;
    size_t blen = find_content_length((sl_str){c->in.p, hlen});
    if (c->in.len < hlen + blen) return;
    tsrv *s = c->s;
    sl_buf_clear(&s->last_head);
    sl_buf_clear(&s->last_body);
    assert_int_equal(sl_buf_append(&s->last_head, c->in.p, hlen), 0);
    assert_int_equal(sl_buf_append(&s->last_body, c->in.p + hlen, blen), 0);
    int idx = pick_script(s, (sl_str){c->in.p, hlen});
    sl_buf_consume(&c->in, hlen + blen);
    c->sc = &s->scripts[idx];
    s->served++;
    c->step = 0;
    next_step(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char slab[65536];
    b->base = slab;
    b->len = sizeof slab;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    tconn *c = st->data;
    if (n < 0) {
        c->s->eofs++;
        conn_close(c, false);
        return;
    }
    if (c->sc) c->s->pipelined++;
    assert_int_equal(sl_buf_append(&c->in, b->base, (size_t)n), 0);
    try_request(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    tsrv *s = l->data;
    assert_int_equal(status, 0);
    tconn *c = sl_calloc(1, sizeof *c);
    assert_non_null(c);
    c->s = s;
    c->open = 2;
    sl_buf_init(&c->in, 4 << 20);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    c->next = s->conns;
    s->conns = c;
    s->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void srv_start(tsrv *s, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    sl_buf_init(&s->last_head, 1 << 16);
    sl_buf_init(&s->last_body, 4 << 20);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
}

static void srv_stop(tsrv *s)
{
    while (s->conns) conn_close(s->conns, false);
    uv_close((uv_handle_t *)&s->listener, NULL);
    sl_buf_free(&s->last_head);
    sl_buf_free(&s->last_body);
}

/* ---- fixture ---- */

static bool g_force_curl;   /* the group being run */
static long g_max_host = 8; /* per-host connection cap of the next fixture */

typedef struct fx {
    uv_loop_t loop;
    tsrv srv;
    sl_upstream *u;
    uv_timer_t watchdog;
    bool expired;
    char url[64];
} fx;

static void on_watchdog(uv_timer_t *t)
{
    ((fx *)t->data)->expired = true;
}

static int setup(void **state)
{
    fx *f = sl_calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    srv_start(&f->srv, &f->loop);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/x", f->srv.port);
    sl_upstream_opts o = {.max_connections = 16, .max_host_connections = g_max_host, .force_curl = g_force_curl};
    f->u = sl_upstream_new(&f->loop, &o);
    assert_non_null(f->u);
    uv_timer_init(&f->loop, &f->watchdog);
    f->watchdog.data = f;
    uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_upstream_free(f->u);
    srv_stop(&f->srv);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sl_free(f);
    return 0;
}

static void run_until(fx *f, bool (*cond)(void *), void *arg)
{
    while (!cond(arg) && !f->expired) uv_run(&f->loop, UV_RUN_ONCE);
    assert_false(f->expired);
}

/* ---- a request's observer ---- */

typedef struct rctx {
    fx *f;
    sl_up_req *q;
    int heads, datas, dones;
    int status;
    size_t nheaders;
    char ctype[64];
    bool saw_link;
    sl_buf body;
    sl_up_result res;
    int eagain_on;        /* on_data call number (1-based) that returns SL_EAGAIN; 0 none */
    int fail_on;          /* on_data call number that returns SL_EIO */
    bool cancel_in_data;  /* cancel from inside on_data */
    bool resume_inline;   /* resume from a zero timer instead of a later one */
    bool data_before_head;
    int eagain_every;     /* every Nth on_data call returns SL_EAGAIN (resumed from a zero timer) */
    uv_timer_t resume_timer;
} rctx;

static int r_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    rctx *r = ud;
    r->heads++;
    r->status = status;
    r->nheaders = n;
    for (size_t i = 0; i < n; i++) {
        if (sl_str_case_eq(h[i].name, SL_STR("content-type")))
            snprintf(r->ctype, sizeof r->ctype, "%.*s", SL_STR_FMT(h[i].value));
        if (sl_str_case_eq(h[i].name, SL_STR("link"))) r->saw_link = true;
    }
    return 0;
}

static void on_resume_timer(uv_timer_t *t)
{
    rctx *r = t->data;
    sl_up_req_resume(r->q);
}

static int r_data(void *ud, const char *p, size_t n)
{
    rctx *r = ud;
    if (!r->heads) r->data_before_head = true;
    r->datas++;
    if (r->cancel_in_data) {
        sl_up_req_cancel(r->q);
        return 0;
    }
    if (r->datas == r->fail_on) return SL_EIO;
    if (r->datas == r->eagain_on || (r->eagain_every && r->datas % r->eagain_every == 0)) {
        uv_timer_start(&r->resume_timer, on_resume_timer, r->resume_inline ? 0 : 30, 0);
        return SL_EAGAIN;
    }
    assert_int_equal(sl_buf_append(&r->body, p, n), 0);
    return 0;
}

static void r_done(void *ud, const sl_up_result *res)
{
    rctx *r = ud;
    r->dones++;
    r->res = *res;
    r->res.detail = NULL; /* only valid during the call */
}

static const sl_up_callbacks CBS = {r_head, r_data, r_done};

static void rctx_init(rctx *r, fx *f)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    sl_buf_init(&r->body, 4 << 20);
    uv_timer_init(&f->loop, &r->resume_timer);
    r->resume_timer.data = r;
}

static void on_rtimer_closed(uv_handle_t *h)
{
    ((rctx *)h->data)->q = NULL;
}

/* The timer lives on the test's stack: it must be closed before the test returns. */
static void rctx_fini(rctx *r)
{
    sl_buf_free(&r->body);
    r->q = (sl_up_req *)r; /* any non-NULL marker; the close callback clears it */
    uv_close((uv_handle_t *)&r->resume_timer, on_rtimer_closed);
    while (r->q) uv_run(&r->f->loop, UV_RUN_NOWAIT);
}

static bool is_done(void *arg) { return ((rctx *)arg)->dones > 0; }
static bool server_saw_eof(void *arg) { return ((fx *)arg)->srv.eofs > 0; }

static void start(rctx *r, sl_up_request *req)
{
    if (!req->method) req->method = "GET";
    if (!req->url) req->url = r->f->url;
    r->q = sl_upstream_start(r->f->u, req, &CBS, r);
    assert_non_null(r->q);
}

static void expect_body(const rctx *r, const char *s)
{
    assert_int_equal(r->body.len, strlen(s));
    assert_memory_equal(r->body.p, s, r->body.len);
}

/* ---- tests ---- */

static void test_get_200(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_http_header hs[] = {{SL_STR("X-Test"), SL_STR("one")}, {SL_STR("Content-Length"), SL_STR("99")}};
    sl_up_request req = {.headers = hs, .nheaders = 2, .first_byte_timeout_ms = 5000, .idle_timeout_ms = 5000,
                         .total_timeout_ms = 10000, .connect_timeout_ms = 5000};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.dones, 1);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain");
    assert_int_equal(r.nheaders, 2);
    assert_false(r.res.reused_connection);
    assert_int_equal(r.res.bytes_received, 5);
    expect_body(&r, "hello");
    const char *h = f->srv.last_head.p;
    assert_true(strncmp(h, "GET /x HTTP/1.1\r\n", 17) == 0);
    assert_non_null(strstr(h, "\r\nX-Test: one\r\n"));
    assert_non_null(strstr(h, "\r\nAccept-Encoding: identity\r\n"));
    assert_non_null(strstr(h, "\r\nHost: 127.0.0.1:"));
    assert_null(strstr(h, "Content-Length"));
    assert_null(strstr(h, "Expect"));
    rctx_fini(&r);
}

static void test_chunked_stream(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {20, ACT_SEND, "6\r\nhello \r\n"},
        {20, ACT_SEND, "6\r\nworld \r\n"},
        {20, ACT_SEND, "5\r\nagain\r\n"},
        {20, ACT_SEND, "0\r\n\r\n"},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_int_equal(r.heads, 1);
    assert_true(r.datas >= 2);
    assert_false(r.data_before_head);
    expect_body(&r, "hello world again");
    rctx_fini(&r);
}

static void test_reuse(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx a, b;
    rctx_init(&a, f);
    rctx_init(&b, f);
    sl_up_request req = {0};
    start(&a, &req);
    run_until(f, is_done, &a);
    sl_up_request req2 = {0};
    start(&b, &req2);
    run_until(f, is_done, &b);
    assert_int_equal(a.res.error, SL_UP_OK);
    assert_int_equal(b.res.error, SL_UP_OK);
    assert_false(a.res.reused_connection);
    assert_true(b.res.reused_connection);
    assert_int_equal(f->srv.accepted, 1);
    assert_int_equal(f->srv.served, 2);
    rctx_fini(&a);
    rctx_fini(&b);
}

static void test_connect_refused(void **state)
{
    fx *f = *state;
    /* A port that was just free: bind, read the number, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.url = url, .connect_timeout_ms = 5000};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_CONNECT);
    assert_int_equal(r.res.status, 0);
    assert_int_equal(r.heads, 0);
    assert_false(r.res.reused_connection);
    rctx_fini(&r);
}

static void test_connect_timeout(void **state)
{
    fx *f = *state;
    /* A listener with a full accept queue drops SYNs: the connect never completes. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &len);
    assert_int_equal(listen(lfd, 0), 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&a, sizeof a), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.url = url, .connect_timeout_ms = 100, .first_byte_timeout_ms = 10000};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_TIMEOUT_CONNECT);
    assert_int_equal(r.heads, 0);
    close(filler);
    close(lfd);
    rctx_fini(&r);
}

static void test_first_byte_timeout(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_HOLD, NULL}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.first_byte_timeout_ms = 100, .idle_timeout_ms = 50};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_TIMEOUT_FIRST_BYTE);
    assert_int_equal(r.heads, 0);
    assert_int_equal(r.res.status, 0);
    rctx_fini(&r);
}

static void test_idle_timeout(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
        {0, ACT_HOLD, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.first_byte_timeout_ms = 5000, .idle_timeout_ms = 100};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_TIMEOUT_IDLE);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.res.bytes_received, 10);
    run_until(f, server_saw_eof, f); /* the abandoned connection is closed, not pooled */
    rctx_fini(&r);
}

static void test_total_timeout(void **state)
{
    fx *f = *state;
    /* Chunks keep coming (so idle never fires), but the whole takes longer than allowed. */
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {30, ACT_SEND, "1\r\na\r\n"}, {30, ACT_SEND, "1\r\nb\r\n"}, {30, ACT_SEND, "1\r\nc\r\n"},
        {30, ACT_SEND, "1\r\nd\r\n"}, {30, ACT_SEND, "1\r\ne\r\n"}, {30, ACT_SEND, "1\r\nf\r\n"},
        {30, ACT_SEND, "1\r\ng\r\n"}, {30, ACT_SEND, "1\r\nh\r\n"}, {30, ACT_SEND, "1\r\ni\r\n"},
        {30, ACT_SEND, "1\r\nj\r\n"}, {30, ACT_SEND, "1\r\nk\r\n"}, {30, ACT_HOLD, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.first_byte_timeout_ms = 5000, .idle_timeout_ms = 5000, .total_timeout_ms = 120};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_TIMEOUT_TOTAL);
    assert_int_equal(r.heads, 1);
    rctx_fini(&r);
}

static void test_reset_mid_body(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
        {20, ACT_RESET, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_IO);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.res.bytes_received, 10);
    rctx_fini(&r);
}

static void test_close_mid_body(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
        {20, ACT_CLOSE, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_IO); /* PARTIAL_FILE */
    rctx_fini(&r);
}

static const script STREAM[] = {{{
    {0, ACT_SEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {10, ACT_SEND, "5\r\nalpha\r\n"},
    {20, ACT_SEND, "4\r\nbeta\r\n"},
    {20, ACT_SEND, "5\r\ngamma\r\n"},
    {20, ACT_SEND, "5\r\ndelta\r\n0\r\n\r\n"},
}}};

static void pause_resume(fx *f, bool inline_resume, int eagain_on)
{
    f->srv.scripts = STREAM, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    r.eagain_on = eagain_on;
    r.resume_inline = inline_resume;
    sl_up_request req = {.idle_timeout_ms = 5000};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    expect_body(&r, "alphabetagammadelta");
    assert_int_equal(r.res.bytes_received, 19);
    assert_true(r.datas >= 3); /* the refused chunk came back */
    rctx_fini(&r);
}

static void test_pause_resume(void **state)
{
    pause_resume(*state, false, 1);
}

static void test_pause_resume_later_chunk(void **state)
{
    pause_resume(*state, true, 2);
}

/* Pausing from outside (sl_up_req_pause) holds the body back until resume. */
static int hold_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    rctx *r = ud;
    sl_up_req_pause(r->q);
    uv_timer_start(&r->resume_timer, on_resume_timer, 60, 0);
    return r_head(ud, status, h, n);
}

static void test_explicit_pause(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n"},
        {0, ACT_SEND, "alphabetagammadelta"},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_callbacks cb = {hold_head, r_data, r_done};
    sl_up_request req = {.method = "GET", .url = f->url, .idle_timeout_ms = 30};
    r.q = sl_upstream_start(f->u, &req, &cb, &r);
    assert_non_null(r.q);
    run_until(f, is_done, &r);
    /* The 30 ms idle deadline did not fire during the 60 ms pause: it is not running then. */
    assert_int_equal(r.res.error, SL_UP_OK);
    expect_body(&r, "alphabetagammadelta");
    rctx_fini(&r);
}

static void test_cancel_in_data(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
        {0, ACT_HOLD, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    r.cancel_in_data = true;
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, server_saw_eof, f);
    assert_int_equal(r.dones, 0);
    assert_int_equal(r.datas, 1);
    rctx_fini(&r);
}

static void on_cancel_timer(uv_timer_t *t)
{
    rctx *r = t->data;
    sl_up_req_cancel(r->q);
}

static void test_cancel_from_loop(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
        {0, ACT_HOLD, NULL},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.idle_timeout_ms = 5000, .total_timeout_ms = 10000};
    start(&r, &req);
    uv_timer_start(&r.resume_timer, on_cancel_timer, 50, 0);
    run_until(f, server_saw_eof, f);
    assert_int_equal(r.dones, 0);
    assert_int_equal(r.heads, 1);
    rctx_fini(&r);
}

static void test_post_1mb(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    size_t n = 1 << 20;
    char *body = sl_malloc(n);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    rctx r;
    rctx_init(&r, f);
    sl_http_header hs[] = {{SL_STR("Content-Type"), SL_STR("application/json")}};
    sl_up_request req = {.method = "POST", .body = body, .body_len = n, .headers = hs, .nheaders = 1};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_int_equal(r.res.status, 201);
    assert_int_equal(r.heads, 1); /* empty body: on_head still came, before on_done */
    assert_true(strncmp(f->srv.last_head.p, "POST /x HTTP/1.1\r\n", 18) == 0);
    assert_non_null(strstr(f->srv.last_head.p, "\r\nContent-Length: 1048576\r\n"));
    assert_int_equal(f->srv.last_body.len, n);
    assert_memory_equal(f->srv.last_body.p, body, n);
    sl_free(body);
    rctx_fini(&r);
}

static void test_interim_response(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{
        {0, ACT_SEND, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"},
        {10, ACT_SEND, "HTTP/1.1 404 Not Found\r\nContent-Type: text/x\r\nContent-Length: 2\r\n\r\nno"},
    }}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.status, 404);
    assert_false(r.saw_link);
    assert_string_equal(r.ctype, "text/x");
    expect_body(&r, "no");
    rctx_fini(&r);
}

static void test_abort_from_data(void **state)
{
    fx *f = *state;
    f->srv.scripts = STREAM, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    r.fail_on = 1;
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_ABORTED);
    assert_int_equal(r.dones, 1);
    rctx_fini(&r);
}

static void test_invalid_header_reported_async(void **state)
{
    fx *f = *state;
    rctx r;
    rctx_init(&r, f);
    sl_http_header hs[] = {{SL_STR("X-Bad"), SL_STR("a\r\nInjected: 1")}};
    sl_up_request req = {.headers = hs, .nheaders = 1};
    start(&r, &req);
    assert_int_equal(r.dones, 0); /* never from inside sl_upstream_start */
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_CONNECT);
    assert_int_equal(f->srv.served, 0);
    rctx_fini(&r);
}

static void test_free_in_flight(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_HOLD, NULL}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    while (f->srv.served < 1 && !f->expired) uv_run(&f->loop, UV_RUN_ONCE);
    sl_upstream_free(f->u);
    f->u = NULL;
    run_until(f, server_saw_eof, f);
    assert_int_equal(r.dones, 0);
    rctx_fini(&r);
}

/* A retry started from on_done rides the same connection. */
static void done_then_retry(void *ud, const sl_up_result *res)
{
    rctx *r = ud;
    r_done(ud, res);
    if (r->dones == 1) {
        sl_up_request req = {.method = "GET", .url = r->f->url};
        sl_up_callbacks cb = {r_head, r_data, done_then_retry};
        r->q = sl_upstream_start(r->f->u, &req, &cb, r);
        assert_non_null(r->q);
    }
}

static bool two_done(void *arg) { return ((rctx *)arg)->dones == 2; }

static void test_start_from_on_done(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_callbacks cb = {r_head, r_data, done_then_retry};
    sl_up_request req = {.method = "GET", .url = f->url};
    r.q = sl_upstream_start(f->u, &req, &cb, &r);
    run_until(f, two_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_true(r.res.reused_connection);
    expect_body(&r, "okok");
    rctx_fini(&r);
}

static int cancel_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    rctx *r = ud;
    r_head(ud, status, h, n);
    sl_up_req_cancel(r->q);
    sl_up_req_cancel(r->q); /* twice is harmless */
    return 0;
}

static int abort_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    r_head(ud, status, h, n);
    return SL_EIO;
}

static const script HELD_BODY[] = {{{
    {0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
    {0, ACT_HOLD, NULL},
}}};

static void test_cancel_in_head(void **state)
{
    fx *f = *state;
    f->srv.scripts = HELD_BODY, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_callbacks cb = {cancel_head, r_data, r_done};
    sl_up_request req = {.method = "GET", .url = f->url};
    r.q = sl_upstream_start(f->u, &req, &cb, &r);
    run_until(f, server_saw_eof, f);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.datas, 0);
    assert_int_equal(r.dones, 0);
    rctx_fini(&r);
}

static void test_abort_in_head(void **state)
{
    fx *f = *state;
    f->srv.scripts = HELD_BODY, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_callbacks cb = {abort_head, r_data, r_done};
    sl_up_request req = {.method = "GET", .url = f->url};
    r.q = sl_upstream_start(f->u, &req, &cb, &r);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_ABORTED);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.datas, 0);
    run_until(f, server_saw_eof, f); /* the half-read connection is not pooled */
    rctx_fini(&r);
}

/* Pause and resume both from inside on_head: the resume is deferred until curl returns. */
static int pause_resume_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    rctx *r = ud;
    sl_up_req_pause(r->q);
    sl_up_req_resume(r->q);
    return r_head(ud, status, h, n);
}

static void test_resume_inside_callback(void **state)
{
    fx *f = *state;
    f->srv.scripts = STREAM, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_callbacks cb = {pause_resume_head, r_data, r_done};
    sl_up_request req = {.method = "GET", .url = f->url};
    r.q = sl_upstream_start(f->u, &req, &cb, &r);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    expect_body(&r, "alphabetagammadelta");
    rctx_fini(&r);
}

/* Starting a request from inside on_data (curl forbids add_handle there: it is deferred). */
typedef struct nested {
    rctx outer, inner;
    char url[64];
} nested;

static int start_in_data(void *ud, const char *p, size_t n)
{
    nested *ns = ud;
    if (!ns->inner.q) {
        sl_up_request req = {.method = "GET", .url = ns->url};
        ns->inner.q = sl_upstream_start(ns->outer.f->u, &req, &CBS, &ns->inner);
        assert_non_null(ns->inner.q);
    }
    return r_data(&ns->outer, p, n);
}

static int nested_head(void *ud, int st, const sl_http_header *h, size_t n) { return r_head(&((nested *)ud)->outer, st, h, n); }
static void nested_done(void *ud, const sl_up_result *res) { r_done(&((nested *)ud)->outer, res); }
static bool both_done(void *arg) { return ((nested *)arg)->outer.dones && ((nested *)arg)->inner.dones; }

static void test_start_inside_data(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nouter"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ninner"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    nested ns;
    rctx_init(&ns.outer, f);
    rctx_init(&ns.inner, f);
    snprintf(ns.url, sizeof ns.url, "http://127.0.0.1:%d/s1", f->srv.port);
    char url0[64];
    snprintf(url0, sizeof url0, "http://127.0.0.1:%d/s0", f->srv.port);
    sl_up_callbacks cb = {nested_head, start_in_data, nested_done};
    sl_up_request req = {.method = "GET", .url = url0};
    ns.outer.q = sl_upstream_start(f->u, &req, &cb, &ns);
    run_until(f, both_done, &ns);
    assert_int_equal(ns.outer.res.error, SL_UP_OK);
    assert_int_equal(ns.inner.res.error, SL_UP_OK);
    expect_body(&ns.outer, "outer");
    expect_body(&ns.inner, "inner");
    rctx_fini(&ns.outer);
    rctx_fini(&ns.inner);
}

/* Freeing the upstream from on_done while another request is in flight: no further callback. */
typedef struct freer {
    rctx a, b;
} freer;

static void free_in_done(void *ud, const sl_up_result *res)
{
    freer *fr = ud;
    r_done(&fr->a, res);
    sl_upstream_free(fr->a.f->u);
    fr->a.f->u = NULL;
}

static int freer_head(void *ud, int st, const sl_http_header *h, size_t n) { return r_head(&((freer *)ud)->a, st, h, n); }
static int freer_data(void *ud, const char *p, size_t n) { return r_data(&((freer *)ud)->a, p, n); }

static void test_free_from_on_done(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}},
        {{{0, ACT_HOLD, NULL}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    freer fr;
    rctx_init(&fr.a, f);
    rctx_init(&fr.b, f);
    char u0[64], u1[64];
    snprintf(u0, sizeof u0, "http://127.0.0.1:%d/s0", f->srv.port);
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/s1", f->srv.port);
    sl_up_request rb = {.method = "GET", .url = u1};
    fr.b.q = sl_upstream_start(f->u, &rb, &CBS, &fr.b);
    while (f->srv.served < 1 && !f->expired) uv_run(&f->loop, UV_RUN_ONCE);
    sl_up_callbacks cb = {freer_head, freer_data, free_in_done};
    sl_up_request ra = {.method = "GET", .url = u0};
    fr.a.q = sl_upstream_start(f->u, &ra, &cb, &fr);
    run_until(f, is_done, &fr.a);
    while (f->srv.eofs < 2 && !f->expired) uv_run(&f->loop, UV_RUN_ONCE); /* both connections closed */
    assert_false(f->expired);
    assert_int_equal(fr.a.res.error, SL_UP_OK);
    assert_int_equal(fr.b.dones, 0);
    rctx_fini(&fr.a);
    rctx_fini(&fr.b);
}

static char many_headers[8192];

static void test_header_cap(void **state)
{
    fx *f = *state;
    size_t off = (size_t)snprintf(many_headers, sizeof many_headers, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
    for (int i = 0; i < 200; i++)
        off += (size_t)snprintf(many_headers + off, sizeof many_headers - off, "X-H%d: v\r\n", i);
    snprintf(many_headers + off, sizeof many_headers - off, "\r\n");
    static script sc[1];
    sc[0].steps[0] = (step){0, ACT_SEND, many_headers};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {0};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_ERR_IO);
    assert_int_equal(r.heads, 0);
    rctx_fini(&r);
}

static void test_methods(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 204 No Content\r\n\r\n"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    rctx r;
    rctx_init(&r, f);
    sl_up_request req = {.method = "DELETE"};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.status, 204);
    assert_int_equal(r.heads, 1);
    assert_true(strncmp(f->srv.last_head.p, "DELETE /x HTTP/1.1\r\n", 20) == 0);
    rctx_fini(&r);
    rctx_init(&r, f);
    sl_up_request put = {.method = "PUT", .body = "abc", .body_len = 3};
    start(&r, &put);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    assert_true(strncmp(f->srv.last_head.p, "PUT /x HTTP/1.1\r\n", 17) == 0);
    assert_int_equal(f->srv.last_body.len, 3);
    assert_memory_equal(f->srv.last_body.p, "abc", 3);
    rctx_fini(&r);
}

/* Plain-http requests in parallel never wait on each other (no PIPEWAIT there). */
static void test_parallel_while_one_is_slow(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast"}}},
        {{{0, ACT_HOLD, NULL}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    rctx slow, fast;
    rctx_init(&slow, f);
    rctx_init(&fast, f);
    char u0[64], u1[64];
    snprintf(u0, sizeof u0, "http://127.0.0.1:%d/s0", f->srv.port);
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/s1", f->srv.port);
    sl_up_request rs = {.url = u1};
    start(&slow, &rs);
    while (f->srv.served < 1 && !f->expired) uv_run(&f->loop, UV_RUN_ONCE);
    sl_up_request rf = {.url = u0};
    start(&fast, &rf);
    run_until(f, is_done, &fast);
    assert_int_equal(fast.res.error, SL_UP_OK);
    expect_body(&fast, "fast");
    assert_int_equal(slow.dones, 0);
    assert_int_equal(f->srv.accepted, 2);
    rctx_fini(&slow);
    rctx_fini(&fast);
}

/* Every allocation in sl_upstream_start failing in turn: NULL and no callback, or a normal request. */
static void test_start_alloc_failures(void **state)
{
    fx *f = *state;
    static const script sc[] = {{{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}}};
    f->srv.scripts = sc, f->srv.nscripts = 1;
    sl_http_header hs[] = {{SL_STR("X-A"), SL_STR("1")}, {SL_STR("X-B"), SL_STR("")}};
    int nulls = 0;
    for (long n = 1; n <= 12; n++) {
        rctx r;
        rctx_init(&r, f);
        sl_up_request req = {.method = "GET", .url = f->url, .headers = hs, .nheaders = 2};
        sl_alloc_fail_after(n);
        r.q = sl_upstream_start(f->u, &req, &CBS, &r);
        sl_alloc_fail_after(0);
        if (!r.q) {
            nulls++;
        } else {
            run_until(f, is_done, &r);
            assert_int_equal(r.dones, 1);
            assert_int_equal(r.res.error, SL_UP_OK);
        }
        for (int i = 0; i < 3; i++) uv_run(&f->loop, UV_RUN_NOWAIT); /* let closed handles go */
        assert_int_equal(r.dones, r.q ? 1 : 0);
        rctx_fini(&r);
    }
    assert_true(nulls > 0);
}

/* ---- native HTTP/1.1 path only ---- */

static const script OK2[] = {{{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}}};

/* One request on the fixture's URL (or url), run to completion. */
static void run_one(fx *f, rctx *r, const char *method, const char *url)
{
    rctx_init(r, f);
    sl_up_request req = {.method = method, .url = url};
    start(r, &req);
    run_until(f, is_done, r);
}

static void test_native_pool_reuse(void **state)
{
    fx *f = *state;
    f->srv.scripts = OK2, f->srv.nscripts = 1;
    for (int i = 0; i < 5; i++) {
        rctx r;
        run_one(f, &r, "GET", NULL);
        assert_int_equal(r.res.error, SL_UP_OK);
        assert_int_equal(r.res.reused_connection, i > 0);
        expect_body(&r, "ok");
        rctx_fini(&r);
    }
    assert_int_equal(f->srv.accepted, 1);
    assert_int_equal(f->srv.served, 5);
    assert_int_equal(f->srv.pipelined, 0);
}

static bool srv_has_no_conns(void *arg) { return ((fx *)arg)->srv.conns == NULL; }

/* The server closes a pooled connection while it is idle: the client notices and connects afresh. */
static void test_native_stale_idle_closed(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, {5, ACT_CLOSE, NULL}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    rctx a, b;
    run_one(f, &a, "GET", NULL);
    assert_int_equal(a.res.error, SL_UP_OK);
    run_until(f, srv_has_no_conns, f);
    for (int i = 0; i < 3; i++) uv_run(&f->loop, UV_RUN_NOWAIT); /* the FIN is already there to read */
    run_one(f, &b, "GET", NULL);
    assert_int_equal(b.res.error, SL_UP_OK);
    assert_false(b.res.reused_connection);
    expect_body(&b, "new");
    assert_int_equal(f->srv.accepted, 2);
    rctx_fini(&a);
    rctx_fini(&b);
}

/* The server drops a pooled connection as the next request arrives: IO with reused=true, no status
 * (what the gateway retries once). */
static void test_native_stale_reused_io(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}},
        {{{0, ACT_RESET, NULL}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 3;
    rctx a, b, c;
    run_one(f, &a, "GET", NULL);
    run_one(f, &b, "POST", NULL);
    assert_int_equal(b.res.error, SL_UP_ERR_IO);
    assert_true(b.res.reused_connection);
    assert_int_equal(b.res.status, 0);
    assert_int_equal(b.heads, 0);
    run_one(f, &c, "GET", NULL); /* the retry */
    assert_int_equal(c.res.error, SL_UP_OK);
    assert_false(c.res.reused_connection);
    rctx_fini(&a);
    rctx_fini(&b);
    rctx_fini(&c);
}

/* With one connection per host, a second request waits for the first to finish: no pipelining. */
static int setup_one_per_host(void **state)
{
    g_max_host = 1;
    int rc = setup(state);
    g_max_host = 8;
    return rc;
}

static void test_native_no_pipelining(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{30, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    rctx a, b;
    rctx_init(&a, f);
    rctx_init(&b, f);
    char u0[64], u1[64];
    snprintf(u0, sizeof u0, "http://127.0.0.1:%d/s0", f->srv.port);
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/s1", f->srv.port);
    sl_up_request ra = {.url = u0}, rb = {.url = u1};
    start(&a, &ra);
    start(&b, &rb);
    run_until(f, is_done, &b);
    assert_int_equal(a.dones, 1);
    expect_body(&a, "first");
    expect_body(&b, "second");
    assert_true(b.res.reused_connection);
    assert_int_equal(f->srv.accepted, 1);
    assert_int_equal(f->srv.pipelined, 0);
    rctx_fini(&a);
    rctx_fini(&b);
}

static void test_native_1xx(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-A: 1\r\n\r\n"
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"}}},
        {{{0, ACT_SEND, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    rctx a, b;
    run_one(f, &a, "GET", NULL);
    assert_int_equal(a.res.error, SL_UP_OK);
    assert_int_equal(a.heads, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.nheaders, 1);
    expect_body(&a, "hi");
    run_one(f, &b, "GET", NULL);
    assert_int_equal(b.res.error, SL_UP_ERR_IO); /* we never ask for an upgrade */
    assert_int_equal(b.heads, 0);
    rctx_fini(&a);
    rctx_fini(&b);
}

/* The same chunked response split in two at every byte (head included), on one pooled connection. */
static void test_native_chunked_every_split(void **state)
{
    fx *f = *state;
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    size_t n = sizeof resp - 1;
    script *sc = sl_calloc(n - 1, sizeof *sc);
    char **parts = sl_calloc(2 * (n - 1), sizeof *parts);
    assert_non_null(sc);
    assert_non_null(parts);
    for (size_t k = 1; k < n; k++) {
        parts[2 * (k - 1)] = sl_strndup(resp, k);
        parts[2 * (k - 1) + 1] = sl_strndup(resp + k, n - k);
        sc[k - 1].steps[0] = (step){0, ACT_SEND, parts[2 * (k - 1)]};
        sc[k - 1].steps[1] = (step){1, ACT_SEND, parts[2 * (k - 1) + 1]};
    }
    f->srv.scripts = sc, f->srv.nscripts = (int)(n - 1);
    for (size_t k = 1; k < n; k++) {
        rctx r;
        run_one(f, &r, "GET", NULL);
        assert_int_equal(r.res.error, SL_UP_OK);
        expect_body(&r, "hello world");
        assert_int_equal(r.res.bytes_received, 11);
        rctx_fini(&r);
    }
    assert_int_equal(f->srv.accepted, 1);
    for (size_t i = 0; i < 2 * (n - 1); i++) sl_free(parts[i]);
    sl_free(parts);
    sl_free(sc);
}

/* No length, no chunking: the body ends with the connection, which is then not reused. */
static void test_native_close_delimited(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc"},
          {5, ACT_SEND, "def"},
          {5, ACT_CLOSE, NULL}}},
        {{{0, ACT_SEND, "HTTP/1.0 200 OK\r\n\r\nold"}, {5, ACT_CLOSE, NULL}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 3;
    rctx a, b, c;
    run_one(f, &a, "GET", NULL);
    assert_int_equal(a.res.error, SL_UP_OK);
    expect_body(&a, "abcdef");
    run_one(f, &b, "GET", NULL);
    assert_int_equal(b.res.error, SL_UP_OK);
    expect_body(&b, "old");
    run_one(f, &c, "GET", NULL);
    assert_int_equal(c.res.error, SL_UP_OK);
    assert_false(c.res.reused_connection);
    assert_int_equal(f->srv.accepted, 3);
    rctx_fini(&a);
    rctx_fini(&b);
    rctx_fini(&c);
}

static bool server_saw_eof_or_done(void *arg) { return ((fx *)arg)->srv.eofs > 0; }

static void test_native_connection_close(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 2;
    rctx a, b;
    run_one(f, &a, "GET", NULL);
    assert_int_equal(a.res.error, SL_UP_OK);
    expect_body(&a, "ok");
    run_until(f, server_saw_eof_or_done, f); /* the client closed it (the server kept it open) */
    run_one(f, &b, "GET", NULL);
    assert_int_equal(b.res.error, SL_UP_OK);
    assert_false(b.res.reused_connection);
    expect_body(&b, "two");
    assert_int_equal(f->srv.accepted, 2);
    rctx_fini(&a);
    rctx_fini(&b);
}

/* HEAD and 304 carry a Content-Length but no body; the connection stays in step. */
static void test_native_no_body_responses(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"}}},
        {{{0, ACT_SEND, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 3;
    rctx a, b, c;
    run_one(f, &a, "HEAD", NULL);
    assert_int_equal(a.res.error, SL_UP_OK);
    assert_int_equal(a.heads, 1);
    assert_int_equal(a.datas, 0);
    run_one(f, &b, "GET", NULL);
    assert_int_equal(b.res.error, SL_UP_OK);
    assert_int_equal(b.status, 304);
    run_one(f, &c, "GET", NULL);
    assert_int_equal(c.res.error, SL_UP_OK);
    expect_body(&c, "body");
    assert_true(c.res.reused_connection);
    assert_int_equal(f->srv.accepted, 1);
    rctx_fini(&a);
    rctx_fini(&b);
    rctx_fini(&c);
}

static void test_native_malformed(void **state)
{
    fx *f = *state;
    static const script sc[] = {
        {{{0, ACT_SEND, "HTTP/2 200 OK\r\n\r\n"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"}}},
        {{{0, ACT_SEND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}}},
    };
    f->srv.scripts = sc, f->srv.nscripts = 4;
    for (int i = 0; i < 4; i++) {
        rctx r;
        run_one(f, &r, "GET", NULL);
        assert_int_equal(r.res.error, SL_UP_ERR_IO);
        rctx_fini(&r);
    }
}

static char *big_response(bool chunked, size_t n, char **body_out)
{
    char *body = sl_malloc(n);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + (i * 13 + i / 777) % 26);
    sl_buf b;
    sl_buf_init(&b, 0);
    if (!chunked) {
        assert_int_equal(sl_buf_appendf(&b, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n), 0);
        assert_int_equal(sl_buf_append(&b, body, n), 0);
    } else {
        assert_int_equal(sl_buf_append_cstr(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
        for (size_t off = 0; off < n; off += 50000) {
            size_t k = SL_MIN((size_t)50000, n - off);
            assert_int_equal(sl_buf_appendf(&b, "%zx\r\n", k), 0);
            assert_int_equal(sl_buf_append(&b, body + off, k), 0);
            assert_int_equal(sl_buf_append(&b, "\r\n", 2), 0);
        }
        assert_int_equal(sl_buf_append_cstr(&b, "0\r\n\r\n"), 0);
    }
    *body_out = body;
    return sl_buf_detach(&b, NULL);
}

/* 1 MB responses (length and chunked) read with on_data refusing every third call. */
static void test_native_large_pause_resume(void **state)
{
    fx *f = *state;
    size_t n = 1 << 20;
    char *body1, *body2;
    char *r1 = big_response(false, n, &body1), *r2 = big_response(true, n, &body2);
    script sc[2] = {{{{0, ACT_SEND, r1}}}, {{{0, ACT_SEND, r2}}}};
    f->srv.scripts = sc, f->srv.nscripts = 2;
    for (int i = 0; i < 2; i++) {
        rctx r;
        rctx_init(&r, f);
        r.eagain_every = 3;
        r.resume_inline = true;
        sl_up_request req = {.idle_timeout_ms = 10000};
        start(&r, &req);
        run_until(f, is_done, &r);
        assert_int_equal(r.res.error, SL_UP_OK);
        assert_int_equal(r.res.bytes_received, n);
        assert_int_equal(r.body.len, n);
        assert_memory_equal(r.body.p, i ? body2 : body1, n);
        assert_true(r.datas >= 3);
        rctx_fini(&r);
    }
    assert_int_equal(f->srv.accepted, 1);
    sl_free(r1);
    sl_free(r2);
    sl_free(body1);
    sl_free(body2);
}

/* "localhost" is 127.0.0.1 on the native path; Host keeps the name, a caller's Host is dropped. */
static void test_native_localhost_host_header(void **state)
{
    fx *f = *state;
    f->srv.scripts = OK2, f->srv.nscripts = 1;
    char url[64], want[64];
    snprintf(url, sizeof url, "http://LocalHost:%d?q=1", f->srv.port);
    snprintf(want, sizeof want, "\r\nHost: LocalHost:%d\r\n", f->srv.port);
    rctx r;
    rctx_init(&r, f);
    sl_http_header hs[] = {{SL_STR("Host"), SL_STR("evil")}, {SL_STR("Connection"), SL_STR("close")},
                           {SL_STR("X-Empty"), SL_STR("")}};
    sl_up_request req = {.method = "POST", .url = url, .headers = hs, .nheaders = 3};
    start(&r, &req);
    run_until(f, is_done, &r);
    assert_int_equal(r.res.error, SL_UP_OK);
    const char *h = f->srv.last_head.p;
    assert_true(strncmp(h, "POST /?q=1 HTTP/1.1\r\n", 21) == 0);
    assert_non_null(strstr(h, want));
    assert_null(strstr(h, "evil"));
    assert_null(strstr(h, "Connection"));
    assert_non_null(strstr(h, "\r\nX-Empty:\r\n"));
    assert_non_null(strstr(h, "\r\nContent-Length: 0\r\n"));
    rctx_fini(&r);
}

#define COMMON_TESTS                                                                      \
    cmocka_unit_test_setup_teardown(test_get_200, setup, teardown),                       \
    cmocka_unit_test_setup_teardown(test_chunked_stream, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_reuse, setup, teardown),                         \
    cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),               \
    cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),               \
    cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),            \
    cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),                  \
    cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),                 \
    cmocka_unit_test_setup_teardown(test_reset_mid_body, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_close_mid_body, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),                  \
    cmocka_unit_test_setup_teardown(test_pause_resume_later_chunk, setup, teardown),      \
    cmocka_unit_test_setup_teardown(test_explicit_pause, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_cancel_in_data, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_cancel_from_loop, setup, teardown),              \
    cmocka_unit_test_setup_teardown(test_post_1mb, setup, teardown),                      \
    cmocka_unit_test_setup_teardown(test_interim_response, setup, teardown),              \
    cmocka_unit_test_setup_teardown(test_abort_from_data, setup, teardown),               \
    cmocka_unit_test_setup_teardown(test_invalid_header_reported_async, setup, teardown), \
    cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_start_from_on_done, setup, teardown),            \
    cmocka_unit_test_setup_teardown(test_cancel_in_head, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_abort_in_head, setup, teardown),                 \
    cmocka_unit_test_setup_teardown(test_resume_inside_callback, setup, teardown),        \
    cmocka_unit_test_setup_teardown(test_start_inside_data, setup, teardown),             \
    cmocka_unit_test_setup_teardown(test_free_from_on_done, setup, teardown),             \
    cmocka_unit_test_setup_teardown(test_header_cap, setup, teardown),                    \
    cmocka_unit_test_setup_teardown(test_methods, setup, teardown),                       \
    cmocka_unit_test_setup_teardown(test_parallel_while_one_is_slow, setup, teardown),    \
    cmocka_unit_test_setup_teardown(test_start_alloc_failures, setup, teardown)

int main(void)
{
    sl_upstream_global_init();
    const struct CMUnitTest curl_tests[] = {COMMON_TESTS};
    const struct CMUnitTest native_tests[] = {
        COMMON_TESTS,
        cmocka_unit_test_setup_teardown(test_native_pool_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_stale_idle_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_stale_reused_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_no_pipelining, setup_one_per_host, teardown),
        cmocka_unit_test_setup_teardown(test_native_1xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_chunked_every_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_close_delimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_connection_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_no_body_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_large_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_localhost_host_header, setup, teardown),
    };
    g_force_curl = true;
    int rc = cmocka_run_group_tests_name("upstream via libcurl", curl_tests, NULL, NULL);
    g_force_curl = false;
    rc += cmocka_run_group_tests_name("upstream via the native HTTP/1.1 client", native_tests, NULL, NULL);
    sl_upstream_global_cleanup();
    return rc;
}
