/*
 * mock_run.c: plays a rendered answer out on the exchange.
 *
 * Timeline of a stream: [delay] head + PRE pieces, [ttft] token 1, [itl]
 * token 2, ..., POST pieces right after the last token, finish. With itl 0 the
 * tokens go out in batches of about 64 KiB, pausing whenever the server's
 * output backlog is above its high-water mark until on_drain. A whole-body
 * answer waits delay + ttft + itl * tokens and is sent in one write.
 *
 * fail-after N: when N tokens have gone out (N may equal the token count:
 * then the fault replaces the closing events) the fault mode decides the end:
 * reset (TCP RST), event (protocol error event, then end), malformed (a
 * broken data line, then end), stall (nothing more; the exchange stays open
 * until the client leaves).
 *
 * A client abort stops the timer and finishes on the next loop turn, never
 * inside the server's own callback.
 */
#include "mock.h"

#include <stdio.h>
#include <sys/socket.h>

#include "core/log.h"

enum { PH_NEW = 0, PH_BODY, PH_BODY_FAULT, PH_HEAD, PH_TOKENS, PH_STALLED, PH_DONE };

#define BATCH_BYTES (64u * 1024u)

static void step(sl_mock_run *r);

/* ---- rendering helpers ---- */

int sl_mock_piece_begin(sl_mock_run *r, sl_mock_piece_kind kind)
{
    if (r->npieces == r->cap_pieces) {
        size_t cap = r->cap_pieces ? r->cap_pieces * 2 : 32;
        if (cap > SL_MOCK_MAX_TOKENS + 64) return SL_ELIMIT;
        sl_mock_piece *p = sl_realloc(r->pieces, cap * sizeof *p);
        if (!p) return SL_ENOMEM;
        r->pieces = p;
        r->cap_pieces = cap;
    }
    r->pieces[r->npieces] = (sl_mock_piece){(uint32_t)r->data.len, 0, (uint8_t)kind};
    r->open_piece = (int32_t)r->npieces++;
    return SL_OK;
}

int sl_mock_piece_end(sl_mock_run *r)
{
    if (r->open_piece < 0) return SL_EINVAL;
    sl_mock_piece *p = &r->pieces[r->open_piece];
    p->len = (uint32_t)(r->data.len - p->off);
    if (p->kind == SL_MOCK_TOK) r->ntok++;
    r->open_piece = -1;
    return SL_OK;
}

int sl_mock_sse(sl_mock_run *r, sl_mock_piece_kind kind, const char *event, sl_str json)
{
    bool own = r->open_piece < 0; /* else: one more event in the caller's open piece */
    int rc = own ? sl_mock_piece_begin(r, kind) : 0;
    if (!rc && event) {
        rc = sl_buf_append_cstr(&r->data, "event: ");
        if (!rc) rc = sl_buf_append_cstr(&r->data, event);
        if (!rc) rc = sl_buf_append_cstr(&r->data, "\n");
    }
    if (!rc) rc = sl_buf_append_cstr(&r->data, "data: ");
    if (!rc) rc = sl_buf_append_str(&r->data, json);
    if (!rc) rc = sl_buf_append_cstr(&r->data, r->proto->sse_end);
    if (!rc && own) rc = sl_mock_piece_end(r);
    return rc;
}

int sl_mock_add_header(sl_mock_run *r, const char *name, sl_str value)
{
    if (r->nhdrs == SL_MOCK_MAX_HEADERS) return SL_ELIMIT;
    r->hdrs[r->nhdrs++] = (sl_http_header){sl_str_from_cstr(name), value};
    return SL_OK;
}

int sl_mock_plan_error(sl_mock_run *r, int status, const char *msg)
{
    sl_buf_clear(&r->data);
    r->npieces = 0;
    r->ntok = 0;
    r->open_piece = -1;
    r->stream = false;
    r->is_error = true;
    r->status = status;
    r->content_type = "application/json";
    r->proto->error_body(&r->data, status, msg);
    if (r->k.retry_after >= 0 && r->nhdrs < SL_MOCK_MAX_HEADERS) {
        char *v = sl_arena_printf(&r->hx->arena, "%lld", (long long)r->k.retry_after);
        if (v) sl_mock_add_header(r, "retry-after", sl_str_from_cstr(v));
    }
    return 0;
}

int sl_mock_parse_body(sl_mock_run *r)
{
    size_t off = 0;
    int rc = sl_json_parse(&r->doc, r->hx->body.p, r->hx->body.n, &r->hx->arena, NULL, &off);
    if (rc == 0 && sl_json_type_of(&r->doc, 0) == SL_JSON_OBJECT) {
        r->have_doc = true;
        return SL_OK;
    }
    char *msg = rc ? sl_arena_printf(&r->hx->arena, "invalid JSON body at byte %zu", off)
                   : "the request body must be a JSON object";
    sl_mock_plan_error(r, 400, msg ? msg : "invalid JSON body");
    return SL_EPARSE;
}

/* ---- life cycle ---- */

static void run_free(uv_handle_t *h)
{
    sl_mock_run *r = h->data;
    sl_buf_free(&r->data);
    sl_buf_free(&r->fault);
    sl_free(r->pieces);
    sl_free(r);
}

static void run_finish(sl_mock_run *r)
{
    if (r->done) return;
    r->done = true;
    r->phase = PH_DONE;
    uv_timer_stop(&r->timer);
    if (!r->opts->quiet) {
        sl_info("%.*s %.*s -> %d%s tokens=%zu%s", SL_STR_FMT(r->hx->req.method), SL_STR_FMT(r->hx->req.path),
                r->status, r->stream ? " stream" : "", r->tok_sent, r->aborted ? " aborted" : "");
    }
    sl_mock_stat_add(SL_MOCK_STAT_IN_FLIGHT, -1);
    if (!r->aborted) sl_mock_stat_add(SL_MOCK_STAT_COMPLETED, 1);
    sl_hx_finish(r->hx);
    r->hx = NULL;
    uv_close((uv_handle_t *)&r->timer, run_free);
}

static void finish_cb(uv_timer_t *t) { run_finish(t->data); }

static void abort_cb(sl_hx *hx, void *arg)
{
    sl_mock_run *r = arg;
    if (r->done || r->aborted) return;
    r->aborted = true;
    if (!r->self_reset) sl_mock_stat_add(SL_MOCK_STAT_ABORTED, 1);
    /* finish on the next loop turn: we may be inside one of our own sl_hx_write calls */
    uv_timer_stop(&r->timer);
    uv_timer_start(&r->timer, finish_cb, 0, 0);
}

static void drain_cb(sl_hx *hx, void *arg)
{
    sl_mock_run *r = arg;
    if (!r->waiting_drain || r->done || r->aborted) return;
    r->waiting_drain = false;
    step(r);
}

static void timer_cb(uv_timer_t *t) { step(t->data); }

/* Runs step() after ms (at once when 0). */
static void arm(sl_mock_run *r, uint64_t ms)
{
    if (r->done || r->aborted) return;
    if (ms == 0) {
        step(r);
        return;
    }
    uv_timer_start(&r->timer, timer_cb, ms, 0);
}

sl_mock_run *sl_mock_run_new(sl_hx *hx, const sl_mock_opts *o)
{
    sl_mock_run *r = sl_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->hx = hx;
    r->opts = o;
    r->proto = &sl_mock_proto_openai;
    r->open_piece = -1;
    r->status = 200;
    r->content_type = "application/json";
    sl_buf_init(&r->data, SL_MOCK_MAX_OUT);
    sl_buf_init(&r->fault, 64u * 1024u);
    uv_timer_init(hx->loop, &r->timer);
    r->timer.data = r;
    hx->data = r;
    sl_mock_stat_add(SL_MOCK_STAT_IN_FLIGHT, 1);
    sl_hx_on_abort(hx, abort_cb, r);
    return r;
}

/* ---- playing ---- */

static bool fault_due(const sl_mock_run *r)
{
    return !r->is_error && r->k.fail_after >= 0 && (uint64_t)r->k.fail_after <= r->ntok &&
           r->tok_sent == (uint64_t)r->k.fail_after;
}

void sl_mock_run_start(sl_mock_run *r)
{
    if (r->is_error) sl_mock_stat_add(SL_MOCK_STAT_ERRORS, 1);
    if (r->stream && !r->is_error) {
        sl_mock_stat_add(SL_MOCK_STAT_STREAMS, 1);
        if (r->k.fail_after >= 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "mock: injected failure after %lld tokens", (long long)r->k.fail_after);
            r->proto->error_event(&r->fault, msg);
            r->malformed = r->proto->sse_end[0] == '\r' ? "data: {not json\r\n\r\n" : "data: {not json\n\n";
        }
        r->phase = PH_HEAD;
        arm(r, r->k.delay_ms);
        return;
    }
    uint64_t wait = r->k.delay_ms, toks = r->ntok;
    bool fault = !r->is_error && r->k.fail_after >= 0 && (uint64_t)r->k.fail_after < r->ntok;
    if (fault) toks = (uint64_t)r->k.fail_after;
    if (!r->is_error) wait += r->k.ttft_ms + r->k.itl_ms * toks;
    r->phase = fault ? PH_BODY_FAULT : PH_BODY;
    arm(r, wait);
}

void sl_mock_admit(sl_mock_run *r) { sl_mock_run_start(r); }

static size_t head_headers(const sl_mock_run *r, sl_http_header *h)
{
    size_t n = 0;
    h[n++] = (sl_http_header){SL_STR("content-type"), sl_str_from_cstr(r->content_type)};
    if (r->stream && !r->is_error) h[n++] = (sl_http_header){SL_STR("cache-control"), SL_STR("no-cache")};
    for (size_t i = 0; i < r->nhdrs; i++) h[n++] = r->hdrs[i];
    return n;
}

static void respond_whole(sl_mock_run *r, int status, sl_str body)
{
    sl_http_header h[SL_MOCK_MAX_HEADERS + 2];
    size_t n = head_headers(r, h);
    r->status = status;
    sl_hx_respond(r->hx, status, h, n, body.p, body.n);
    run_finish(r);
}

static void fault_whole(sl_mock_run *r)
{
    sl_mock_stat_add(SL_MOCK_STAT_FAULTS, 1);
    switch (r->k.fail_mode) {
    case SL_MOCK_FAIL_RESET:
        sl_mock_reset_conn(r);
        break;
    case SL_MOCK_FAIL_EVENT: {
        sl_buf_clear(&r->data);
        r->proto->error_body(&r->data, 500, "mock: injected failure");
        respond_whole(r, 500, sl_buf_str(&r->data));
        break;
    }
    case SL_MOCK_FAIL_MALFORMED:
        respond_whole(r, 200, SL_STR("{not json"));
        break;
    case SL_MOCK_FAIL_STALL:
        r->phase = PH_STALLED;
        break;
    }
}

static void write_pieces(sl_mock_run *r, size_t from, size_t to)
{
    if (from >= to) return;
    const sl_mock_piece *a = &r->pieces[from], *b = &r->pieces[to - 1];
    sl_hx_write(r->hx, r->data.p + a->off, (size_t)(b->off + b->len - a->off));
}

static void fault_stream(sl_mock_run *r)
{
    sl_mock_stat_add(SL_MOCK_STAT_FAULTS, 1);
    switch (r->k.fail_mode) {
    case SL_MOCK_FAIL_RESET:
        sl_mock_reset_conn(r);
        return;
    case SL_MOCK_FAIL_EVENT:
        sl_hx_write(r->hx, r->fault.p, r->fault.len);
        break;
    case SL_MOCK_FAIL_MALFORMED:
        sl_hx_write(r->hx, r->malformed, strlen(r->malformed));
        break;
    case SL_MOCK_FAIL_STALL:
        r->phase = PH_STALLED;
        return;
    }
    if (!r->aborted) run_finish(r);
}

static void start_stream(sl_mock_run *r)
{
    sl_http_header h[SL_MOCK_MAX_HEADERS + 2];
    size_t n = head_headers(r, h);
    sl_hx_respond_head(r->hx, r->status, h, n, -1);
    size_t pre = 0;
    while (pre < r->npieces && r->pieces[pre].kind == SL_MOCK_PRE) pre++;
    if (!r->aborted) write_pieces(r, 0, pre);
    r->next = pre;
    r->phase = PH_TOKENS;
    arm(r, r->k.ttft_ms);
}

/* Writes tokens (one per timer tick, or batches when itl is 0) until a wait, a fault or the end. */
static void pump(sl_mock_run *r)
{
    while (!r->aborted && !r->done) {
        if (fault_due(r)) {
            fault_stream(r);
            return;
        }
        if (r->tok_sent == r->ntok) {
            write_pieces(r, r->next, r->npieces);
            if (!r->aborted) run_finish(r);
            return;
        }
        if (sl_hx_pending(r->hx) > SL_HX_HIGH_WATER) {
            r->waiting_drain = true;
            sl_hx_on_drain(r->hx, drain_cb, r);
            return;
        }
        size_t end = r->next + 1;
        if (r->k.itl_ms == 0) {
            uint64_t limit = r->k.fail_after >= 0 ? SL_MIN((uint64_t)r->k.fail_after, r->ntok) : r->ntok;
            size_t bytes = r->pieces[r->next].len;
            while (r->tok_sent + (end - r->next) < limit && bytes < BATCH_BYTES) bytes += r->pieces[end++].len;
        }
        write_pieces(r, r->next, end);
        r->tok_sent += end - r->next;
        r->next = end;
        if (r->k.itl_ms && r->tok_sent < r->ntok) {
            arm(r, r->k.itl_ms);
            return;
        }
    }
}

static void step(sl_mock_run *r)
{
    if (r->done || r->aborted) return;
    switch (r->phase) {
    case PH_BODY:
        respond_whole(r, r->status, sl_buf_str(&r->data));
        break;
    case PH_BODY_FAULT:
        fault_whole(r);
        break;
    case PH_HEAD:
        start_stream(r);
        break;
    case PH_TOKENS:
        pump(r);
        break;
    default:
        break;
    }
}

/* ---- connection reset ---- */

typedef struct find_tcp {
    const void *conn;
    uv_os_fd_t fd;
    bool found;
} find_tcp;

static void find_cb(uv_handle_t *h, void *arg)
{
    find_tcp *f = arg;
    if (!f->found && h->type == UV_TCP && h->data == f->conn && !uv_is_closing(h) && uv_fileno(h, &f->fd) == 0)
        f->found = true;
}

/*
 * server.h has no "reset" call, so: find the exchange's socket among the
 * loop's handles (the server points each connection handle's data at its
 * sl_conn), set SO_LINGER {1, 0} so the close sends RST, and shut down the
 * read side. The server's read then sees EOF, aborts the exchange (abort_cb
 * finishes it without the terminating chunk) and closes the socket: RST.
 */
void sl_mock_reset_conn(sl_mock_run *r)
{
    find_tcp f = {.conn = r->hx->conn};
    r->self_reset = true;
    r->phase = PH_STALLED;
    uv_walk(r->hx->loop, find_cb, &f);
    if (f.found) {
        struct linger lg = {1, 0};
        setsockopt(f.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        shutdown(f.fd, SHUT_RD);
        return;
    }
    /* no socket found: the best left is to close without finishing the framing */
    sl_hx_close_after(r->hx);
    r->aborted = true;
    run_finish(r);
}
