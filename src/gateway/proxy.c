/*
 * proxy.c: one LLM request's trip upstream and back.
 *
 * Same protocol in and out (the common case): the caller's body is passed
 * through with only the needed edits spliced in (model name; for OpenAI
 * streams, stream_options.include_usage so usage can be counted). Other
 * pairs are translated both ways by protocols/translate.h. Streams are
 * forwarded event by event with back-pressure (a slow client pauses the
 * upstream transfer); the usage chunk the gateway asked for is stripped again
 * when the caller did not ask for it. Non-stream answers are buffered (bounded)
 * so usage can be read and the public model name put back.
 *
 * OpenAI to OpenAI streams take a fast path: a chunk is parsed only when it
 * carries usage or its model name must be rewritten; every other pair goes
 * through an sl_xlat_stream (a pass-through filter when the protocols match).
 *
 * Failures before the first byte reached the caller are retried, on another
 * key, target or fallback model as balance/failover.c decides; after it, they
 * are reported inside the stream (SPEC §3), never as a clean end. The head of
 * a stream is sent to the caller with its first event, not with the
 * upstream's head, so that a stream that dies or stalls before its first
 * event is retried like any other failure (and first_token_ms measures the
 * time to that event).
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "core/log.h"
#include "gateway/gateway.h"
#include "protocols/xlat_ir.h"
#include "providers/providers.h"
#include "telemetry/telemetry.h"
#include "telemetry/trace.h"

static void send_stream_head(sl_gw_req *r);

/* ---------------------------------------------------------------- request body */

static bool need_model_rewrite(const sl_gw_req *r) { return !sl_str_eq(r->upstream_model, r->model); }
static bool same_proto(const sl_gw_req *r) { return r->target->provider->proto == r->in_proto; }
static bool fast_openai(const sl_gw_req *r) { return r->in_proto == SL_PROTO_OPENAI && same_proto(r); }

/* Quoted JSON string for s, in the request arena. */
static sl_str json_quoted(sl_gw_req *r, sl_str s)
{
    if (s.n <= 4096) { /* model names: escaped straight into the arena, no scratch buffer */
        char *o = sl_arena_alloc(&r->hx->arena, SL_JSON_ESCAPE_MAX(s.n) + 2);
        if (!o) return SL_STR_NULL;
        o[0] = '"';
        size_t n = 1 + sl_json_escape_into(o + 1, s);
        o[n++] = '"';
        return (sl_str){o, n};
    }
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_append(&b, "\"", 1);
    sl_json_escape(&b, s);
    sl_buf_append(&b, "\"", 1);
    sl_str out = sl_arena_str(&r->hx->arena, sl_buf_str(&b));
    sl_buf_free(&b);
    return out;
}

/* OpenAI streams: make sure stream_options.include_usage is true. */
static int edit_include_usage(sl_gw_req *r, sl_json_edit *e)
{
    const sl_json_doc *d = &r->doc;
    int so = sl_json_obj_get(d, 0, "stream_options");
    if (so < 0) return sl_json_edit_add_member(d, 0, SL_STR("stream_options"), SL_STR("{\"include_usage\":true}"),
                                               &r->hx->arena, e);
    if (sl_json_type_of(d, so) != SL_JSON_OBJECT) {
        *e = (sl_json_edit){d->toks[so].start, d->toks[so].end, SL_STR("{\"include_usage\":true}")};
        return SL_OK;
    }
    int iu = sl_json_obj_get(d, so, "include_usage");
    if (iu >= 0) {
        *e = (sl_json_edit){d->toks[iu].start, d->toks[iu].end, SL_STR("true")};
        return SL_OK;
    }
    return sl_json_edit_add_member(d, so, SL_STR("include_usage"), SL_STR("true"), &r->hx->arena, e);
}

static int build_passthrough_body(sl_gw_req *r)
{
    sl_json_edit edits[2];
    size_t n = 0;
    if (need_model_rewrite(r) && r->model_tok >= 0) {
        const sl_json_tok *t = &r->doc.toks[r->model_tok];
        edits[n++] = (sl_json_edit){t->start, t->end, json_quoted(r, r->upstream_model)};
    }
    if (r->api == SL_API_CHAT && r->stream && r->in_proto == SL_PROTO_OPENAI && !r->caller_wants_usage) {
        int rc = edit_include_usage(r, &edits[n]);
        if (rc) return rc;
        n++;
    }
    sl_buf_clear(&r->up_body);
    return sl_json_splice(r->hx->body.p, r->hx->body.n, edits, n, &r->up_body);
}

/* Builds the upstream body: spliced when the protocols match, translated otherwise. */
static int build_body(sl_gw_req *r, const char **errmsg)
{
    if (same_proto(r)) return build_passthrough_body(r);
    sl_xlat_req_opts o = {
        .upstream_model = r->upstream_model,
        .default_max_tokens = r->mcfg->default_max_tokens,
        .stream = r->stream,
        .id_prefix = sl_str_from_cstr(r->request_id),
    };
    sl_buf_clear(&r->up_body);
    return sl_xlat_request(r->in_proto, r->target->provider->proto, &r->doc, &o, &r->hx->arena, &r->up_body, NULL,
                           errmsg);
}

/* ---------------------------------------------------------------- stream forwarding */

static void on_client_drain(sl_hx *hx, void *arg)
{
    sl_gw_req *r = arg;
    if (r->paused && r->up) {
        r->paused = false;
        sl_up_req_resume(r->up);
    }
}

static int forward_openai_chunk_parsed(sl_gw_req *r, sl_str event, sl_str data, sl_arena *a);

/* The public model name as a JSON string, made once per request (every rewritten chunk uses it). */
static sl_str public_model_json(sl_gw_req *r)
{
    if (!r->model_json.p) r->model_json = json_quoted(r, r->model);
    return r->model_json;
}

/* One scratch arena per worker thread for a chunk's tokens: a loop handles one
 * event at a time, so its streams share it and a held stream owns none (it
 * was 2 KiB per stream). Freed when the thread ends. */
typedef struct {
    sl_arena a;
    bool busy;
    sl_buf out;    /* an event being written: reused, so an event costs no malloc */
    bool out_busy;
} chunk_scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

static void scratch_destroy(void *p)
{
    sl_arena_free(&((chunk_scratch *)p)->a);
    sl_buf_free(&((chunk_scratch *)p)->out);
    sl_free(p);
}
static void scratch_key_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0; }

static chunk_scratch *thread_scratch(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok) return NULL;
    chunk_scratch *s = pthread_getspecific(scratch_key);
    if (s || !(s = sl_calloc(1, sizeof *s))) return s;
    sl_arena_init(&s->a, 2048, 0);
    if (pthread_setspecific(scratch_key, s) != 0) {
        sl_free(s);
        return NULL;
    }
    return s;
}

#define SL_EVENT_BUF_KEEP (64u << 10) /* a thread keeps an event buffer up to this size between events */

/* The thread's reusable event buffer, emptied, or (if it is in use) local, set up empty. */
static sl_buf *event_buf_take(chunk_scratch **sp, sl_buf *local)
{
    chunk_scratch *s = *sp = thread_scratch();
    if (s && !s->out_busy) { /* (busy only if sl_hx_write ever called back into here) */
        s->out_busy = true;
        sl_buf_clear(&s->out);
        return &s->out;
    }
    sl_buf_init(local, 0);
    return local;
}

static void event_buf_give(chunk_scratch *s, sl_buf *b)
{
    if (!s || b != &s->out) {
        sl_buf_free(b);
        return;
    }
    s->out_busy = false;
    if (s->out.cap > SL_EVENT_BUF_KEEP) sl_buf_free(&s->out);
}

/*
 * Writes one SSE event whose data is parts[0..n) joined, through the thread's
 * reusable buffer. one_line: the caller knows there is no CR or LF in them.
 */
static int write_event_parts(sl_gw_req *r, sl_str event, const sl_str *parts, size_t n, bool one_line)
{
    chunk_scratch *s;
    sl_buf local, *out = event_buf_take(&s, &local);
    int rc = one_line ? sl_sse_write_line(out, event, parts, n) : sl_sse_write_parts(out, event, parts, n);
    if (!rc) {
        if (!r->rec.first_byte_ns) r->rec.first_byte_ns = uv_hrtime();
        rc = sl_hx_write(r->hx, out->p, out->len);
        if (rc == SL_ECLOSED) r->client_gone = true;
    }
    event_buf_give(s, out);
    return rc;
}

static int write_event(sl_gw_req *r, sl_str event, sl_str data) { return write_event_parts(r, event, &data, 1, false); }

/* An upstream event passed on (inside on_sse_event): a one-line event needs no line-end check. */
static int forward_event_parts(sl_gw_req *r, sl_str event, const sl_str *parts, size_t n)
{
    return write_event_parts(r, event, parts, n, sl_sse_data_is_one_line(&r->sse));
}
static int forward_event(sl_gw_req *r, sl_str event, sl_str data) { return forward_event_parts(r, event, &data, 1); }

typedef int (*chunk_fn)(sl_gw_req *r, sl_str event, sl_str data, sl_arena *a);

/* Runs fn on one chunk with the thread's scratch arena, reset afterwards: a
 * stream of thousands of chunks must not grow the request's memory. */
static inline int with_scratch(sl_gw_req *r, sl_str event, sl_str data, chunk_fn fn)
{
    chunk_scratch *s = thread_scratch();
    if (!s || s->busy) { /* no thread arena, or (never expected) re-entered: a private one */
        sl_arena a;
        sl_arena_init(&a, 2048, 0);
        int rc = fn(r, event, data, &a);
        sl_arena_free(&a);
        return rc;
    }
    s->busy = true;
    int rc = fn(r, event, data, &s->a);
    s->busy = false;
    sl_arena_reset(&s->a);
    return rc;
}

/* The usage object of a chunk (data is just that object): counted for the request. */
static int note_usage(sl_gw_req *r, sl_str event, sl_str data, sl_arena *a)
{
    (void)event;
    sl_json_doc d;
    if (sl_json_parse(&d, data.p, data.n, a, NULL, NULL) == SL_OK) sl_oai_usage_decode(&d, 0, &r->rec.usage);
    return SL_OK;
}

/*
 * Rewrites the model name in one OpenAI chunk, notes usage, and drops the
 * usage-only chunk if unwanted. Chat and completions chunks have what matters
 * at the top level, so sl_json_top_members finds it without tokenizing the
 * chunk (the same validation and last-key-wins as the parse), and the new
 * name goes straight into the event written: no spliced copy. The Responses
 * API (one level down) and a top-level key with an escape take the parse.
 */
static int forward_openai_chunk(sl_gw_req *r, sl_str event, sl_str data)
{
    bool rewrite = need_model_rewrite(r);
    if (!rewrite && !memmem(data.p, data.n, "\"usage\"", 7)) return forward_event(r, event, data);
    if (r->api == SL_API_RESPONSES) return with_scratch(r, event, data, forward_openai_chunk_parsed);
    sl_json_member m[3] = {{.key = SL_STR("model")}, {.key = SL_STR("usage")}, {.key = SL_STR("choices")}};
    int rc = sl_json_top_members(data.p, data.n, m, SL_ARRAY_LEN(m));
    if (rc == SL_EAGAIN) return with_scratch(r, event, data, forward_openai_chunk_parsed);
    if (rc) return forward_event(r, event, data); /* not ours to judge: pass it on */
    if (m[1].found && m[1].type == SL_JSON_OBJECT) {
        with_scratch(r, event, (sl_str){data.p + m[1].start, m[1].end - m[1].start}, note_usage);
        bool usage_only = !m[2].found || (m[2].type == SL_JSON_ARRAY && m[2].empty);
        if (r->api == SL_API_CHAT && usage_only && !r->caller_wants_usage) return SL_OK;
    }
    if (!m[0].found || !rewrite) return forward_event(r, event, data);
    sl_str parts[3] = {{data.p, m[0].start}, public_model_json(r), {data.p + m[0].end, data.n - m[0].end}};
    return forward_event_parts(r, event, parts, 3);
}

/* ---- what telemetry wants from the fast path (only for a recorded span or logged content) */

#define SL_MODEL_NAME_MAX 256 /* a provider's model name kept for the span; longer is cut */

static int watch_openai_chunk_parsed(sl_gw_req *r, sl_str event, sl_str data, sl_arena *a)
{
    sl_json_doc d;
    if (sl_json_parse(&d, data.p, data.n, a, NULL, NULL) != SL_OK || sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return SL_OK;
    bool responses = r->api == SL_API_RESPONSES;
    sl_str s;
    if (!r->rec.response_model.n && r->rec.trace && r->rec.trace->recording) {
        int obj = responses ? sl_json_obj_get(&d, 0, "response") : 0;
        int m = obj >= 0 && sl_json_type_of(&d, obj) == SL_JSON_OBJECT ? sl_json_obj_get(&d, obj, "model") : -1;
        if (m >= 0 && sl_json_type_of(&d, m) == SL_JSON_STRING && sl_json_str(&d, m, a, &s) == SL_OK && s.n) {
            size_t n = SL_MIN(s.n, SL_MODEL_NAME_MAX);
            while (n < s.n && n > 0 && ((unsigned char)s.p[n] & 0xC0) == 0x80) n--;
            r->rec.response_model = sl_arena_str(&r->hx->arena, (sl_str){s.p, n});
        }
    }
    if (responses) { /* response.output_text.delta: {"delta": "..."} */
        int t = sl_str_eq_lit(event, "response.output_text.delta") ? sl_json_obj_get(&d, 0, "delta") : -1;
        if (t >= 0 && sl_json_type_of(&d, t) == SL_JSON_STRING && sl_json_str(&d, t, a, &s) == SL_OK)
            sl_text_capture_add(&r->rec.stream_text, s);
        return SL_OK;
    }
    int ch = sl_json_obj_get(&d, 0, "choices");
    int c0 = ch >= 0 && sl_json_type_of(&d, ch) == SL_JSON_ARRAY ? sl_json_arr_get(&d, ch, 0) : -1;
    if (c0 < 0 || sl_json_type_of(&d, c0) != SL_JSON_OBJECT) return SL_OK;
    int delta = sl_json_obj_get(&d, c0, "delta");
    int t = delta >= 0 && sl_json_type_of(&d, delta) == SL_JSON_OBJECT ? sl_json_obj_get(&d, delta, "content") : -1;
    if (t >= 0 && sl_json_type_of(&d, t) == SL_JSON_STRING && sl_json_str(&d, t, a, &s) == SL_OK)
        sl_text_capture_add(&r->rec.stream_text, s);
    int f = sl_json_obj_get(&d, c0, "finish_reason");
    if (f >= 0 && sl_json_type_of(&d, f) == SL_JSON_STRING && sl_json_str(&d, f, a, &s) == SL_OK && s.n)
        r->rec.finish_reason = sl_str_from_cstr(sl_finish_name(SL_PROTO_OPENAI, sl_finish_parse(SL_PROTO_OPENAI, s)));
    return SL_OK;
}

/*
 * Does the chunk have a "finish_reason" with a string value (only the last
 * chunks of a stream do; the others say null)? Found from the '_' bytes,
 * which are few in a chunk, looking backwards: the key closes a choice, near
 * the end of the chunk, so this is usually one short memrchr instead of a
 * memmem over the whole chunk. A false positive costs one parse.
 */
static bool has_finish_reason(sl_str data)
{
    const char *start = data.p, *end = data.p + data.n, *p;
    for (const char *q = end; q > start && (p = memrchr(start, '_', (size_t)(q - start))); q = p) {
        if (p - start < 7 || end - p < 8 || memcmp(p - 7, "\"finish", 7) != 0 || memcmp(p + 1, "reason\"", 7) != 0)
            continue;
        const char *v = p + 8;
        while (v < end && (*v == ' ' || *v == ':')) v++;
        return v < end && *v == '"';
    }
    return false;
}

/*
 * A chunk is parsed here only when it may hold something still wanted: text
 * (content logged: nearly every chunk), the provider's model name (span
 * recorded: the first chunk), a finish reason (span recorded: the last
 * chunks). An unobserved request never comes here: the fast path's cost is
 * one flag test per chunk.
 */
static void watch_openai_chunk(sl_gw_req *r, sl_str event, sl_str data)
{
    bool traced = r->rec.trace && r->rec.trace->recording;
    bool responses = r->api == SL_API_RESPONSES;
    bool want_text = r->rec.stream_text.max && !r->rec.stream_text.truncated &&
                     (!responses || sl_str_eq_lit(event, "response.output_text.delta"));
    bool want_model = traced && !r->rec.response_model.n && memmem(data.p, data.n, "\"model\"", 7);
    bool want_finish = traced && !responses && has_finish_reason(data);
    if (want_text || want_model || want_finish) with_scratch(r, event, data, watch_openai_chunk_parsed);
}

static int forward_openai_chunk_parsed(sl_gw_req *r, sl_str event, sl_str data, sl_arena *a)
{
    sl_json_doc d;
    if (sl_json_parse(&d, data.p, data.n, a, NULL, NULL) != SL_OK || sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return write_event(r, event, data); /* not ours to judge: pass it on */
    /* Responses API events carry the response object (usage, model) one level down. */
    int obj = r->api == SL_API_RESPONSES ? sl_json_obj_get(&d, 0, "response") : 0;
    if (obj < 0 || sl_json_type_of(&d, obj) != SL_JSON_OBJECT) return write_event(r, event, data);
    int u = sl_json_obj_get(&d, obj, "usage");
    if (u >= 0 && sl_json_type_of(&d, u) == SL_JSON_OBJECT) {
        sl_oai_usage_decode(&d, u, &r->rec.usage);
        int ch = sl_json_obj_get(&d, 0, "choices");
        bool usage_only = ch < 0 || (sl_json_type_of(&d, ch) == SL_JSON_ARRAY && d.toks[ch].count == 0);
        if (r->api == SL_API_CHAT && usage_only && !r->caller_wants_usage) return SL_OK;
    }
    int m = sl_json_obj_get(&d, obj, "model");
    if (m < 0 || !need_model_rewrite(r)) return write_event(r, event, data);
    sl_json_edit e = {d.toks[m].start, d.toks[m].end, public_model_json(r)};
    sl_buf out;
    sl_buf_init(&out, 0);
    int rc = sl_json_splice(data.p, data.n, &e, 1, &out);
    if (!rc) rc = write_event(r, event, sl_buf_str(&out));
    sl_buf_free(&out);
    return rc;
}

static int write_out(sl_gw_req *r, sl_buf *out)
{
    if (out->len == 0) return SL_OK;
    if (!r->rec.first_byte_ns) r->rec.first_byte_ns = uv_hrtime();
    int rc = sl_hx_write(r->hx, out->p, out->len);
    if (rc == SL_ECLOSED) r->client_gone = true;
    return rc;
}

static int on_sse_event(void *ud, sl_str event, sl_str data)
{
    sl_gw_req *r = ud;
    if (!r->client_head_sent) { /* the first event: now the caller gets its head, and retrying is over */
        sl_fo_unwatch(r);
        sl_fo_attempt_first_byte(r);
        send_stream_head(r);
    }
    if (!r->xs) {
        if (sl_str_eq_lit(data, "[DONE]")) r->stream_done = true;
        /* A Responses API stream has no [DONE]: it ends with its terminal event. */
        if (r->api == SL_API_RESPONSES && (sl_str_eq_lit(event, "response.completed") ||
                                           sl_str_eq_lit(event, "response.incomplete") ||
                                           sl_str_eq_lit(event, "response.failed")))
            r->stream_done = true;
        if (sl_str_starts_with(data, SL_STR("{\"error\""))) { /* the upstream's own in-stream error ends it */
            r->stream_done = true;
            r->rec.error = SL_STR("upstream error inside the stream");
            r->rec.finish_reason = sl_str_from_cstr(sl_finish_name(SL_PROTO_OPENAI, SL_FINISH_ERROR));
        } else if (r->rec.watch_chunks && data.n && data.p[0] == '{') {
            watch_openai_chunk(r, event, data);
        }
        if (data.n && data.p[0] == '{') return forward_openai_chunk(r, event, data);
        return forward_event(r, event, data);
    }
    chunk_scratch *s;
    sl_buf local, *out = event_buf_take(&s, &local);
    int rc = sl_xlat_stream_event(r->xs, event, data, out);
    if (rc == SL_EPARSE) {
        sl_buf_clear(out);
        sl_xlat_stream_error(r->xs, 502, SL_STR("upstream sent an event that is not valid for its protocol"), out);
        r->rec.error = SL_STR("malformed upstream event"); /* the connection stays usable: see stream_error */
    }
    int wrc = write_out(r, out);
    event_buf_give(s, out);
    if (sl_xlat_stream_done(r->xs)) r->stream_done = true;
    return rc ? rc : wrc;
}

static void send_stream_head(sl_gw_req *r)
{
    sl_http_header h[24] = {
        {SL_STR("content-type"), SL_STR("text/event-stream")},
        {SL_STR("cache-control"), SL_STR("no-cache")},
    };
    size_t n = 2;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = 200;
    r->client_head_sent = true;
    if (!fast_openai(r)) {
        sl_xlat_resp_opts o = {.public_model = r->model, .id = sl_str_from_cstr(r->request_id)};
        r->xs = sl_xlat_stream_new(r->target->provider->proto, r->in_proto, &o, r->caller_wants_usage);
    }
    if (r->cfg->telemetry.log_content) { /* the answer's text for the access log (telemetry.c) */
        sl_text_capture_init(&r->rec.stream_text, r->cfg->telemetry.log_content_max_bytes);
        if (r->xs) sl_xlat_stream_capture_text(r->xs, &r->rec.stream_text);
    }
    r->rec.watch_chunks = !r->xs && (r->rec.stream_text.max || (r->rec.trace && r->rec.trace->recording));
    sl_hx_respond_head(r->hx, 200, h, n, -1);
}

/* Reports a failure inside a stream that has already started (SPEC §3). */
static void stream_error(sl_gw_req *r, int status, const char *type, const char *msg)
{
    sl_buf body;
    sl_buf_init(&body, 0);
    if (r->xs) {
        sl_xlat_stream_error(r->xs, status, sl_str_from_cstr(msg), &body);
        write_out(r, &body);
    } else {
        sl_gw_error_body(r->in_proto, status, type, NULL, msg, &body);
        write_event(r, r->in_proto == SL_PROTO_ANTHROPIC ? SL_STR("error") : SL_STR("") /* not NULL: sse.c memchr()s it */, sl_buf_str(&body));
    }
    sl_buf_free(&body);
    r->rec.error = sl_arena_str(&r->hx->arena, sl_str_from_cstr(msg));
    /*
     * The connection is kept: the error event says what happened and the
     * chunked body still ends properly. Closing it here, after a head that did
     * not announce "connection: close", made clients that pool connections
     * send their next request into a socket being closed: it failed without
     * ever reaching the gateway (seen with the openai SDK, onapi_edges.test.js).
     */
}

/* ---------------------------------------------------------------- upstream callbacks */

static int up_on_head(void *ud, int status, const sl_http_header *h, size_t n)
{
    sl_gw_req *r = ud;
    r->up_status = status;
    r->up_is_sse = false;
    for (size_t i = 0; i < n; i++) { /* name lengths first: most headers are neither */
        size_t nl = h[i].name.n;
        if (nl == 12 && sl_str_case_eq(h[i].name, SL_STR("content-type")))
            r->up_is_sse = sl_str_starts_with(h[i].value, SL_STR("text/event-stream"));
        else if (nl == 11 && sl_str_case_eq(h[i].name, SL_STR("retry-after")))
            sl_bal_parse_retry_after(h[i].value, (int64_t)time(NULL), &r->fo.retry_after_ms);
    }
    if (status >= 200 && status < 300 && r->up_is_sse && r->stream) {
        /* The caller's head waits for the first event; so does the first-token deadline. */
        uint64_t budget = r->target->provider->timeouts.first_token_ms;
        uint64_t spent = (uv_hrtime() - r->fo.a.start_ns) / 1000000ull;
        sl_fo_watch_first_token(r, budget > spent ? budget - spent : 1);
    } else {
        r->up_is_sse = false; /* buffered: a non-2xx answer, or a non-stream one */
        sl_fo_attempt_first_byte(r);
    }
    return SL_OK;
}

/*
 * Until the first token, a stream's events are held back (in r->resp) and
 * only scanned: the preamble a provider sends at once (OpenAI's role chunk,
 * Anthropic's message_start and ping, Responses' response.created) says
 * nothing about whether tokens will come. When the first event that carries
 * output (or an error, or the end) arrives, the caller gets its head and
 * everything held is replayed; until then the attempt may still be retried
 * and the first-token deadline runs.
 */
#define SL_PREAMBLE_MAX (64u << 10) /* a longer preamble is taken as the start of the answer */

static bool has_nonempty(sl_str data, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = data.p, *end = data.p + data.n; (p = memmem(p, (size_t)(end - p), key, kl)); p += kl) {
        const char *v = p + kl;
        while (v < end && (*v == ' ' || *v == ':')) v++;
        if (v < end && *v != 'n' && !(v + 1 < end && v[0] == '"' && v[1] == '"') && *v != '[' && *v != '{') return true;
        if (v + 1 < end && *v == '[' && v[1] != ']') return true;
    }
    return false;
}

static bool is_first_token(sl_gw_req *r, sl_str event, sl_str data)
{
    if (r->target->provider->proto == SL_PROTO_GEMINI) return true; /* every event carries candidates */
    if (event.n) /* Anthropic, Responses: content_block_delta, message_delta, response.output_text.delta, error, ... */
        return memmem(event.p, event.n, "delta", 5) || sl_str_eq_lit(event, "error") ||
               sl_str_eq_lit(event, "message_stop") || sl_str_starts_with(event, SL_STR("response.completed")) ||
               sl_str_starts_with(event, SL_STR("response.failed")) || sl_str_starts_with(event, SL_STR("response.incomplete"));
    if (!data.n || data.p[0] != '{') return true; /* [DONE] or something we do not know: not a preamble */
    return has_nonempty(data, "\"content\"") || has_nonempty(data, "\"reasoning_content\"") ||
           has_nonempty(data, "\"tool_calls\"") || has_nonempty(data, "\"finish_reason\"") ||
           memmem(data.p, data.n, "\"error\"", 7) || has_nonempty(data, "\"refusal\"");
}

static int scan_event(void *ud, sl_str event, sl_str data)
{
    sl_gw_req *r = ud;
    if (!is_first_token(r, event, data)) return SL_OK;
    r->stream_started = true;
    return SL_ECLOSED; /* stop scanning: what is held is replayed through a fresh parser */
}

static int hold_preamble(sl_gw_req *r, const char *p, size_t n)
{
    size_t from = r->resp.len;
    int rc = sl_buf_append(&r->resp, p, n);
    if (rc) return rc;
    rc = sl_sse_feed(&r->sse, r->resp.p + from, n, scan_event, r);
    if (rc != SL_OK && rc != SL_ECLOSED) return rc;
    if (!r->stream_started && r->resp.len < SL_PREAMBLE_MAX) return SL_OK;
    /* go: replay what was held through a fresh parser; the first event sends the caller's head.
     * From here on bytes go to that parser, which may hold the start of an event not yet complete. */
    r->preamble_over = true;
    sl_sse_free(&r->sse);
    sl_sse_init(&r->sse, 8u << 20);
    rc = sl_sse_feed(&r->sse, r->resp.p, r->resp.len, on_sse_event, r);
    sl_buf_free(&r->resp); /* not used again by a stream: do not hold it for the stream's life */
    return rc == SL_OK || rc == SL_ECLOSED ? SL_OK : rc;
}

static int up_on_data(void *ud, const char *p, size_t n)
{
    sl_gw_req *r = ud;
    if (r->client_gone) return SL_ECLOSED; /* stop the transfer: nobody reads the answer */
    if (!r->up_is_sse) {
        int rc = sl_buf_append(&r->resp, p, n);
        return rc == SL_OK ? SL_OK : rc;
    }
    if (!r->client_head_sent && !r->preamble_over) return hold_preamble(r, p, n);
    if (sl_hx_pending(r->hx) > SL_HX_HIGH_WATER) {
        r->paused = true;
        sl_hx_on_drain(r->hx, on_client_drain, r);
        return SL_EAGAIN; /* not consumed: delivered again after resume */
    }
    /* One upstream read may carry several events (a loaded gateway reads late): they
     * go to the client in one write. */
    sl_hx_cork(r->hx);
    int rc = sl_sse_feed(&r->sse, p, n, on_sse_event, r);
    sl_hx_uncork(r->hx);
    return rc == SL_OK || rc == SL_ECLOSED ? SL_OK : rc;
}

static bool status_retryable(const sl_gw_req *r, int status)
{
    const sl_retry_cfg *rc = &r->mcfg->retry;
    for (size_t i = 0; i < rc->non_status; i++)
        if (rc->on_status[i] == status) return true;
    return false;
}

/* A transport failure before anything reached the caller: is it in retry.on? */
static bool error_retryable(const sl_gw_req *r, const sl_up_result *res)
{
    uint32_t on = r->mcfg->retry.on_flags;
    switch (res->error) {
    case SL_UP_ERR_CONNECT: return on & SL_RETRY_ON_CONNECT;
    case SL_UP_ERR_TIMEOUT_CONNECT: return on & (SL_RETRY_ON_CONNECT | SL_RETRY_ON_TIMEOUT);
    case SL_UP_ERR_TIMEOUT_FIRST_BYTE:
    case SL_UP_ERR_TIMEOUT_IDLE:
    case SL_UP_ERR_TIMEOUT_TOTAL: return on & SL_RETRY_ON_TIMEOUT;
    /* reset or cut: before a status it is a failed connection, after one a bad answer */
    case SL_UP_ERR_IO: return res->status ? status_retryable(r, 502) : (on & SL_RETRY_ON_CONNECT) != 0;
    default: return false;
    }
}

/* The upstream message of an error body in any protocol, for the caller's error. */
static sl_str upstream_error_message(sl_gw_req *r)
{
    sl_json_doc d;
    if (r->resp.len == 0 || sl_json_parse(&d, r->resp.p, r->resp.len, &r->hx->arena, NULL, NULL) != SL_OK ||
        sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return SL_STR_NULL;
    int e = sl_json_obj_get(&d, 0, "error");
    int m = e >= 0 && sl_json_type_of(&d, e) == SL_JSON_OBJECT ? sl_json_obj_get(&d, e, "message") : -1;
    sl_str s = SL_STR_NULL;
    if (m >= 0 && sl_json_type_of(&d, m) == SL_JSON_STRING) sl_json_str(&d, m, &r->hx->arena, &s);
    return s;
}

static void respond_upstream_error(sl_gw_req *r)
{
    int st = r->up_status;
    if (st == 429 && r->fo.retry_after_ms) r->retry_after_s = (uint32_t)SL_MIN((r->fo.retry_after_ms + 999) / 1000, 86400);
    sl_str msg = upstream_error_message(r);
    int mlen = (int)SL_MIN(msg.n, 400);
    /* The caller's own mistakes keep their status; failures of ours or the provider's become 502. */
    if (st == 400 || st == 404 || st == 413 || st == 422)
        sl_gw_error(r, st, "invalid_request_error", NULL, "%.*s", mlen ? mlen : 8, mlen ? msg.p : "rejected");
    else if (st == 429)
        sl_gw_error(r, 429, "rate_limit_error", "rate_limit_exceeded", "upstream rate limit: %.*s", mlen, msg.p ? msg.p : "");
    else
        sl_gw_error(r, 502, "upstream_error", NULL, "upstream %.*s returned %d%s%.*s", SL_STR_FMT(r->rec.provider), st,
                    mlen ? ": " : "", mlen, msg.p ? msg.p : "");
}

static void respond_buffered(sl_gw_req *r)
{
    sl_json_doc d;
    sl_str body = sl_buf_str(&r->resp);
    sl_buf out;
    sl_buf_init(&out, 0);
    sl_proto up = r->target->provider->proto;
    if (!same_proto(r)) {
        sl_xlat_resp_opts o = {.public_model = r->model, .id = sl_str_from_cstr(r->request_id)};
        if (sl_xlat_response(up, r->in_proto, body.p, body.n, &o, &r->hx->arena, &out, &r->rec.usage, NULL) != SL_OK) {
            sl_buf_free(&out);
            sl_gw_error(r, 502, "upstream_error", NULL, "upstream %.*s returned a response that cannot be translated",
                        SL_STR_FMT(r->rec.provider));
            return;
        }
        body = sl_buf_str(&out);
    } else if (sl_xlat_parse_response(body.p, body.n, &r->hx->arena, &d) == SL_OK &&
               sl_xlat_response_usage_doc(up, &d, &r->hx->arena, &r->rec.usage, NULL) == SL_OK) {
        /* The public name back, spliced in with the tokens usage was read from (one parse). */
        if (need_model_rewrite(r)) {
            int m = sl_json_obj_get(&d, 0, up == SL_PROTO_GEMINI ? "modelVersion" : "model");
            if (m >= 0) {
                sl_json_edit e = {d.toks[m].start, d.toks[m].end, public_model_json(r)};
                sl_str spliced;
                /* A small answer goes into the request arena (no malloc); a large one into the buffer. */
                if (body.n <= (64u << 10) && sl_json_splice_arena(body.p, body.n, &e, 1, &r->hx->arena, &spliced) == SL_OK)
                    body = spliced;
                else if (sl_json_splice(body.p, body.n, &e, 1, &out) == SL_OK)
                    body = sl_buf_str(&out);
            }
        }
    } else {
        sl_buf_free(&out);
        sl_gw_error(r, 502, "upstream_error", NULL, "upstream %.*s returned a body that is not JSON",
                    SL_STR_FMT(r->rec.provider));
        return;
    }
    sl_http_header h[24] = {{SL_STR("content-type"), SL_STR("application/json")}};
    size_t n = 1;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = r->up_status;
    r->rec.first_byte_ns = uv_hrtime();
    sl_hx_respond(r->hx, r->up_status, h, n, body.p, body.n);
    sl_buf_free(&out);
    sl_gw_finish(r);
}

/* The upstream closed the stream cleanly at the HTTP level: was it complete? */
static void finish_stream(sl_gw_req *r)
{
    bool truncated = sl_sse_finish(&r->sse) == SL_EPARSE;
    if (r->xs && !truncated && !r->stream_done) {
        sl_buf out;
        sl_buf_init(&out, 0);
        /* Anthropic and OpenAI streams have an explicit end; Gemini's ends with the body. */
        if (r->target->provider->proto == SL_PROTO_GEMINI) sl_xlat_stream_end(r->xs, &out);
        else truncated = true;
        write_out(r, &out);
        sl_buf_free(&out);
    } else if (!r->xs && !r->stream_done) {
        truncated = true;
    }
    if (r->xs) {
        const sl_usage *u = sl_xlat_stream_usage(r->xs);
        if (u->present) r->rec.usage = *u;
        if (sl_xlat_stream_finish(r->xs) == SL_FINISH_ERROR && !r->rec.error.n)
            r->rec.error = SL_STR("upstream error inside the stream");
    }
    /* A caller that went away says nothing about the target: no verdict for the balancer. */
    bool caller_gone = r->client_gone || r->hx->aborted;
    sl_fo_attempt_end(r, caller_gone ? SL_BAL_NO_VERDICT : truncated ? SL_BAL_FAIL : SL_BAL_OK);
    if (truncated && !caller_gone) stream_error(r, 502, "upstream_error", "upstream stream ended before it was complete");
    sl_gw_finish(r);
}

/* The caller's message for a transport failure: each timeout says which deadline passed. */
static void failure_message(sl_gw_req *r, sl_up_error e, const char *detail, char *msg, size_t cap)
{
    const char *name = r->target->provider->name;
    const sl_timeouts_cfg *t = &r->target->provider->timeouts;
    switch (e) {
    case SL_UP_ERR_TIMEOUT_CONNECT:
        snprintf(msg, cap, "upstream %s timed out: no connection within %llu ms (connect_ms)", name,
                 (unsigned long long)t->connect_ms);
        break;
    case SL_UP_ERR_TIMEOUT_FIRST_BYTE:
        snprintf(msg, cap, "upstream %s timed out: no first token within %llu ms (first_token_ms)", name,
                 (unsigned long long)t->first_token_ms);
        break;
    case SL_UP_ERR_TIMEOUT_IDLE:
        snprintf(msg, cap, "upstream %s timed out: nothing received for %llu ms (idle_ms)", name,
                 (unsigned long long)t->idle_ms);
        break;
    case SL_UP_ERR_TIMEOUT_TOTAL:
        snprintf(msg, cap, "upstream %s timed out: the answer took longer than %llu ms (total_ms)", name,
                 (unsigned long long)t->total_ms);
        break;
    default: snprintf(msg, cap, "upstream %s failed: %s", name, detail ? detail : "error"); break;
    }
}

static bool is_timeout(sl_up_error e) { return e >= SL_UP_ERR_TIMEOUT_CONNECT && e <= SL_UP_ERR_TIMEOUT_TOTAL; }

void sl_proxy_give_up(sl_gw_req *r)
{
    char msg[300];
    if (r->last_error != SL_UP_OK) {
        failure_message(r, r->last_error, r->last_detail, msg, sizeof msg);
        if (is_timeout(r->last_error)) sl_gw_error(r, 504, "timeout", "timeout", "%s", msg);
        else sl_gw_error(r, 502, "upstream_error", NULL, "%s", msg);
    } else if (r->up_is_sse) {
        sl_gw_error(r, 502, "upstream_error", NULL, "upstream %s ended its stream before the first event",
                    r->target->provider->name);
    } else {
        respond_upstream_error(r);
    }
}

/* A transport failure. After the caller's head it ends the stream with an error event; before, it may be retried. */
static void on_failure(sl_gw_req *r, const sl_up_result *res)
{
    r->last_error = res->error;
    r->last_detail = res->detail ? sl_arena_strndup(&r->hx->arena, res->detail, strlen(res->detail)) : NULL;
    if (r->client_head_sent) {
        sl_fo_attempt_end(r, res->error == SL_UP_ERR_ABORTED ? SL_BAL_NO_VERDICT : SL_BAL_FAIL);
        char msg[300];
        failure_message(r, res->error, res->detail, msg, sizeof msg);
        bool t = is_timeout(res->error);
        stream_error(r, t ? 504 : 502, t ? "timeout" : "upstream_error", msg);
        sl_gw_finish(r);
        return;
    }
    sl_fo_why why = SL_FO_FAILED;
    bool retryable;
    if (res->error == SL_UP_ERR_ABORTED) { /* we stopped it (a cap): nothing to learn, nothing to retry */
        sl_fo_attempt_end(r, SL_BAL_NO_VERDICT);
        retryable = false;
    } else if (res->error == SL_UP_ERR_IO && res->reused_connection && !res->status && !r->fo.stale_retried) {
        sl_fo_attempt_end(r, SL_BAL_NO_VERDICT); /* a pooled connection the server had closed */
        why = SL_FO_STALE;
        retryable = true;
    } else {
        sl_fo_attempt_end(r, SL_BAL_FAIL);
        retryable = error_retryable(r, res);
    }
    if (retryable && sl_fo_retry(r, why, true)) return;
    sl_proxy_give_up(r);
}

/* A complete HTTP answer before anything reached the caller. */
static void on_answer(sl_gw_req *r)
{
    int st = r->up_status;
    r->last_error = SL_UP_OK;
    if (r->up_is_sse) { /* a 2xx stream that ended without one event */
        sl_fo_attempt_end(r, SL_BAL_FAIL);
        if (!sl_fo_retry(r, SL_FO_FAILED, status_retryable(r, 502))) sl_proxy_give_up(r);
        return;
    }
    if (st >= 200 && st < 300) {
        sl_fo_attempt_end(r, SL_BAL_OK);
        respond_buffered(r);
        return;
    }
    sl_fo_why why = SL_FO_FAILED;
    sl_bal_outcome o = SL_BAL_OK; /* other 4xx: the caller's request, not the target, is at fault */
    if (st == 401 || st == 403) o = SL_BAL_KEY_REJECTED, why = SL_FO_KEY;
    else if (st == 429) o = SL_BAL_KEY_LIMITED, why = SL_FO_KEY;
    else if (st >= 500) o = SL_BAL_FAIL;
    sl_fo_attempt_end(r, o);
    bool retryable = status_retryable(r, st);
    if ((retryable || why == SL_FO_KEY) && sl_fo_retry(r, why, retryable)) return;
    respond_upstream_error(r);
}

static void up_on_done(void *ud, const sl_up_result *res)
{
    sl_gw_req *r = ud;
    r->up = NULL;
    sl_fo_unwatch(r);
    sl_telemetry_attempt_end(r, res);
    if (res->error != SL_UP_OK) on_failure(r, res);
    else if (r->client_head_sent) finish_stream(r); /* a stream that ended */
    else on_answer(r);
}

void sl_proxy_first_token_timeout(sl_gw_req *r)
{
    if (!r->up) return;
    sl_up_req_cancel(r->up);
    r->up = NULL;
    sl_up_result res = {.error = SL_UP_ERR_TIMEOUT_FIRST_BYTE, .status = r->up_status, .detail = "no first event"};
    sl_telemetry_attempt_end(r, &res);
    on_failure(r, &res);
}

static const sl_up_callbacks up_callbacks = {
    .on_head = up_on_head,
    .on_data = up_on_data,
    .on_done = up_on_done,
};

static sl_call_kind call_kind(sl_api api)
{
    return api == SL_API_EMBEDDINGS ? SL_CALL_EMBEDDINGS : api == SL_API_RESPONSES ? SL_CALL_RESPONSES : SL_CALL_CHAT;
}

void sl_proxy_attempt(sl_gw_req *r)
{
    const sl_provider_cfg *p = r->target->provider;
    r->up_status = 0;
    r->up_is_sse = false;
    r->stream_started = false;
    r->preamble_over = false;
    sl_buf_clear(&r->resp);
    if (!same_proto(r) && r->api != SL_API_CHAT && r->api != SL_API_MESSAGES && r->api != SL_API_GEMINI) {
        sl_gw_error(r, 404, "invalid_request_error", "unsupported_endpoint",
                    "model '%.*s' is served by provider '%s', which does not offer this API", SL_STR_FMT(r->model),
                    p->name);
        return;
    }
    const char *errmsg = NULL;
    int brc = build_body(r, &errmsg);
    if (brc == SL_EINVAL) {
        sl_gw_error(r, 400, "invalid_request_error", NULL, "%s", errmsg ? errmsg : "the request cannot be translated");
        return;
    }
    if (brc != SL_OK) {
        sl_gw_error(r, 503, "service_unavailable", NULL, "cannot build the upstream request");
        return;
    }
    sl_provider_call call;
    if (sl_provider_build_call(p, call_kind(r->api), r->upstream_model, r->stream, sl_fo_key(r), &r->hx->arena,
                               &call) != SL_OK) {
        sl_gw_error(r, 404, "invalid_request_error", "unsupported_endpoint", "provider '%s' does not offer this endpoint",
                    p->name);
        return;
    }
    if (call.nheaders < SL_ARRAY_LEN(call.headers))
        call.headers[call.nheaders++] = (sl_http_header){SL_STR("x-request-id"), sl_str_from_cstr(r->request_id)};
    sl_telemetry_attempt_start(r, call.headers, &call.nheaders, SL_ARRAY_LEN(call.headers));
    sl_sse_free(&r->sse);
    sl_sse_init(&r->sse, 8u << 20);
    sl_xlat_stream_free(r->xs);
    r->xs = NULL;
    r->stream_done = false;
    sl_up_request req = {
        .method = "POST",
        .url = call.url,
        .headers = call.headers,
        .nheaders = call.nheaders,
        .body = r->up_body.p,
        .body_len = r->up_body.len,
        .connect_timeout_ms = p->timeouts.connect_ms,
        .first_byte_timeout_ms = p->timeouts.first_token_ms,
        .idle_timeout_ms = p->timeouts.idle_ms,
        .total_timeout_ms = p->timeouts.total_ms,
    };
    r->attempts++;
    sl_fo_attempt_begin(r);
    r->up = sl_upstream_start(r->gw->w->upstream, &req, &up_callbacks, r);
    if (!r->up) sl_gw_error(r, 503, "service_unavailable", NULL, "cannot start the upstream request");
}

void sl_proxy_start(sl_gw_req *r)
{
    if (sl_fo_begin(r)) sl_proxy_attempt(r);
}
