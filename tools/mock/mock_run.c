/*
 * mock_run.c: plays a rendered answer out on the exchange.
 *
 * Timeline of a stream: [delay] head + PRE pieces, [ttft] token 1, [itl]
 * token 2, ..., POST pieces right after the last token, finish. Token k is
 * due at a fixed time, ttft + (k - 1) * itl after the head, not itl after
 * the previous timer fired: a loop that falls behind (thousands of streams)
 * sends each late stream's overdue tokens in one write and the streams keep
 * the phases they started with, instead of all waking on the same tick after
 * the delay. With itl 0 the tokens go out in batches of about 64 KiB,
 * pausing whenever the server's output backlog is above its high-water mark
 * until on_drain. A whole-body answer waits delay + ttft + itl * tokens and
 * is sent in one write.
 *
 * Lazy tokens (text streams): the TOK events are not rendered up front; each
 * is the builder's template with the token's escaped text put in, rendered
 * into tokbuf as it is sent.
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
        const size_t max = SL_MOCK_MAX_TOKENS + 64; /* tokens plus the few framing events */
        if (r->cap_pieces >= max) return SL_ELIMIT;
        size_t cap = SL_MIN(r->cap_pieces ? r->cap_pieces * 2 : 32, max);
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

int sl_mock_lazy_tokens(sl_mock_run *r, const sl_str *tok, size_t n)
{
    if (r->open_piece >= 0 || r->npieces == 0 || r->pieces[r->npieces - 1].kind != SL_MOCK_TOK) return SL_EINVAL;
    const sl_mock_piece *p = &r->pieces[r->npieces - 1];
    sl_str ev = {r->data.p + p->off, p->len};
    static const sl_str mark = SL_STR("\\u0001"); /* SL_MOCK_TOKEN_MARK as JSON writes it */
    size_t at = ev.n;
    /* the last one: the text is the last variable field of a token event (a model name could hold one too) */
    for (size_t i = ev.n >= mark.n ? ev.n - mark.n + 1 : 0; i-- > 0;) {
        if (memcmp(ev.p + i, mark.p, mark.n) == 0) {
            at = i;
            break;
        }
    }
    if (at == ev.n) return SL_EINVAL;
    sl_buf_clear(&r->tpl);
    int rc = sl_buf_append(&r->tpl, ev.p, at);
    if (!rc) rc = sl_buf_append(&r->tpl, ev.p + at + mark.n, ev.n - at - mark.n);
    if (rc) return rc;
    r->tpl_at = at;
    r->data.len = p->off; /* drop the template's piece */
    r->data.p[r->data.len] = '\0';
    r->npieces--;
    r->ntok = n;
    r->ltok = tok;
    r->lazy = true;
    return SL_OK;
}

int sl_mock_plan_error(sl_mock_run *r, int status, const char *msg)
{
    sl_buf_clear(&r->data);
    r->npieces = 0;
    r->ntok = 0;
    r->lazy = false;
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
    sl_buf_free(&r->tpl);
    sl_buf_free(&r->tokbuf);
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
                r->status, r->stream ? " stream" : "", r->stream ? r->tok_sent : r->ntok, r->aborted ? " aborted" : "");
    }
    sl_mock_stat_add(SL_MOCK_STAT_IN_FLIGHT, -1);
    if (!r->aborted) sl_mock_stat_add(SL_MOCK_STAT_COMPLETED, 1);
    sl_hx_finish(r->hx);
    r->hx = NULL;
    uv_close((uv_handle_t *)&r->timer, run_free);
    sl_mock_engine_done(r); /* last: it may start queued runs */
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
    sl_buf_init(&r->tpl, 1u << 20);
    sl_buf_init(&r->tokbuf, SL_MOCK_MAX_OUT);
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

void sl_mock_admit(sl_mock_run *r)
{
    if (!sl_mock_engine_admit(r)) sl_mock_run_start(r);
}

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
    r->tok_t0 = uv_now(r->timer.loop) + r->k.ttft_ms;
    arm(r, r->k.ttft_ms);
}

/* Renders lazy tokens [from, to) into tokbuf and writes them in one go; false (connection reset) on failure. */
static bool write_lazy(sl_mock_run *r, size_t from, size_t to)
{
    sl_buf *b = &r->tokbuf;
    sl_buf_clear(b);
    int rc = SL_OK;
    for (size_t i = from; i < to && !rc; i++) {
        rc = sl_buf_append(b, r->tpl.p, r->tpl_at);
        if (!rc) rc = sl_json_escape(b, r->ltok[i]);
        if (!rc) rc = sl_buf_append(b, r->tpl.p + r->tpl_at, r->tpl.len - r->tpl_at);
    }
    if (rc) { /* out of memory or over the cap: end the stream the way a dying upstream would */
        sl_mock_reset_conn(r);
        return false;
    }
    sl_hx_write(r->hx, b->p, b->len);
    return true;
}

/* Sends tokens tok_sent .. tok_sent + count - 1. */
static bool send_tokens(sl_mock_run *r, size_t count)
{
    if (r->lazy) {
        if (!write_lazy(r, r->tok_sent, r->tok_sent + count)) return false;
    } else {
        write_pieces(r, r->next, r->next + count);
        r->next += count;
    }
    r->tok_sent += count;
    return true;
}

/* Bytes token i takes on the wire (for batching with itl 0). */
static size_t token_bytes(const sl_mock_run *r, size_t i)
{
    return r->lazy ? r->tpl.len + r->ltok[i].n : r->pieces[r->next + (i - r->tok_sent)].len;
}

/* How many tokens go out now (limit > tok_sent): with itl 0 a batch of about BATCH_BYTES, else every token due. */
static size_t tokens_now(const sl_mock_run *r, uint64_t limit)
{
    size_t n = 1;
    if (r->k.itl_ms == 0) {
        size_t bytes = token_bytes(r, r->tok_sent);
        while (r->tok_sent + n < limit && bytes < BATCH_BYTES) bytes += token_bytes(r, r->tok_sent + n++);
        return n;
    }
    uint64_t now = uv_now(r->timer.loop);
    if (now > r->tok_t0) {
        uint64_t due = (now - r->tok_t0) / r->k.itl_ms + 1; /* tokens due by now, in all */
        if (due > r->tok_sent + n) n = (size_t)(SL_MIN(due, limit) - r->tok_sent);
    }
    return n;
}

/* Writes tokens (when due, or batches when itl is 0) until a wait, a fault or the end. */
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
        uint64_t limit = r->k.fail_after >= 0 ? SL_MIN((uint64_t)r->k.fail_after, r->ntok) : r->ntok;
        if (!send_tokens(r, tokens_now(r, limit > r->tok_sent ? limit : r->tok_sent + 1))) return;
        if (r->k.itl_ms && r->tok_sent < r->ntok) {
            uint64_t due = r->tok_t0 + r->tok_sent * r->k.itl_ms, now = uv_now(r->timer.loop);
            if (due > now) {
                arm(r, due - now);
                return;
            }
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

/* A reset closes the connection with RST; the server then aborts the exchange and abort_cb finishes it. */
void sl_mock_reset_conn(sl_mock_run *r)
{
    r->self_reset = true;
    r->phase = PH_STALLED;
    sl_hx_reset(r->hx);
}
