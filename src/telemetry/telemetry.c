/* telemetry.c: see telemetry.h. */
#include "telemetry/telemetry.h"

#include "core/log.h"
#include "gateway/accesslog.h"
#include "gateway/metrics.h"
#include "telemetry/export.h"
#include "telemetry/trace.h"

int sl_telemetry_start(sl_config *cfg)
{
    if (sl_metrics_init(cfg->telemetry.metrics.max_series) != SL_OK) return SL_ENOMEM;
    return sl_trace_export_start(cfg);
}

void sl_telemetry_configure(sl_config *cfg) { sl_trace_export_configure(cfg); }

void sl_telemetry_stop(void) { sl_trace_export_stop(); }

/* ---- trace context ------------------------------------------------------------------ */

static sl_str header(const sl_gw_req *r, const char *name)
{
    const sl_http_header *h = sl_http_find_header(&r->hx->req, name);
    return h ? h->value : SL_STR_NULL;
}

void sl_telemetry_begin(sl_gw_req *r)
{
    const sl_traces_cfg *t = &r->cfg->telemetry.traces;
    r->rec.trace = sl_trace_begin(&r->hx->arena, header(r, "traceparent"), header(r, "tracestate"),
                                  t->endpoint != NULL, t->sample_ratio);
}

const char *sl_attempt_outcome(const sl_up_result *res)
{
    switch (res->error) {
    case SL_UP_OK: break;
    case SL_UP_ERR_CONNECT: return "connect_error";
    case SL_UP_ERR_TIMEOUT_CONNECT:
    case SL_UP_ERR_TIMEOUT_FIRST_BYTE:
    case SL_UP_ERR_TIMEOUT_IDLE:
    case SL_UP_ERR_TIMEOUT_TOTAL: return "timeout";
    case SL_UP_ERR_IO: return "io_error";
    case SL_UP_ERR_ABORTED: return "aborted";
    }
    int s = res->status;
    if (s >= 200 && s < 300) return "success";
    if (s == 429) return "rate_limited";
    if (s >= 400 && s < 500) return "client_error";
    if (s >= 500) return "server_error";
    return "other";
}

void sl_telemetry_attempt_start(sl_gw_req *r, sl_http_header *h, size_t *n, size_t cap)
{
    r->rec.attempt_open = true;
    sl_trace_req *t = r->rec.trace;
    if (!t) return;
    const char *tp = sl_trace_attempt_start(t, uv_hrtime(), r->rec.provider, r->rec.provider_type, r->upstream_model);
    if (*n < cap) h[(*n)++] = (sl_http_header){SL_STR("traceparent"), sl_str_from_cstr(tp)};
    if (t->tracestate.n && *n < cap) h[(*n)++] = (sl_http_header){SL_STR("tracestate"), t->tracestate};
}

static void end_attempt(sl_gw_req *r, int status, const char *outcome, sl_str error)
{
    if (!r->rec.attempt_open) return;
    r->rec.attempt_open = false;
    if (r->cfg->telemetry.metrics.enabled) sl_metrics_attempt(r->gw->w, r->rec.provider, outcome);
    if (r->rec.trace) sl_trace_attempt_end(r->rec.trace, uv_hrtime(), status, outcome, error);
}

void sl_telemetry_attempt_end(sl_gw_req *r, const sl_up_result *res)
{
    sl_str err = SL_STR_NULL;
    if (res->error != SL_UP_OK && res->detail && r->rec.trace)
        err = sl_arena_str(&r->hx->arena, sl_str_from_cstr(res->detail)); /* detail lives for the call only */
    end_attempt(r, res->status, sl_attempt_outcome(res), err);
}

/* ---- the end ------------------------------------------------------------------------ */

/*
 * Finish reason (canonical) and the model the provider named, for the span:
 * from the stream translator, or the buffered body. The OpenAI stream fast
 * path filled both already (proxy.c) when it saw them.
 */
static void fill_response(sl_gw_req *r)
{
    sl_finish f = SL_FINISH_NONE;
    sl_arena *a = &r->hx->arena;
    if (r->xs) {
        f = sl_xlat_stream_finish(r->xs);
        if (!r->rec.response_model.n) r->rec.response_model = sl_arena_str(a, sl_xlat_stream_upstream_model(r->xs));
    } else if (!r->stream && r->resp.len && r->target && r->up_status >= 200 && r->up_status < 300) {
        sl_proto up = r->target->provider->proto;
        sl_json_doc d;
        sl_usage u;
        if (sl_xlat_parse_response(r->resp.p, r->resp.len, a, &d) == SL_OK) {
            sl_xlat_response_usage_doc(up, &d, a, &u, &f);
            int m = sl_json_obj_get(&d, 0, up == SL_PROTO_GEMINI ? "modelVersion" : "model");
            sl_str s;
            if (m >= 0 && sl_json_type_of(&d, m) == SL_JSON_STRING && sl_json_str(&d, m, a, &s) == SL_OK && s.n)
                r->rec.response_model = s;
        }
    }
    if (f != SL_FINISH_NONE) r->rec.finish_reason = sl_str_from_cstr(sl_finish_name(SL_PROTO_OPENAI, f));
}

static sl_str cut(sl_gw_req *r, sl_str s)
{
    size_t max = r->cfg->telemetry.log_content_max_bytes;
    if (s.n <= max) return s;
    r->rec.content_truncated = true;
    size_t n = max;
    while (n > 0 && ((unsigned char)s.p[n] & 0xC0) == 0x80) n--; /* whole UTF-8 characters */
    return (sl_str){s.p, n};
}

/* A Responses API answer's text: its output_text parts, in order (what a stream's output_text deltas add up to). */
static sl_str responses_text(sl_gw_req *r, const sl_json_doc *d)
{
    sl_text_capture c;
    sl_text_capture_init(&c, r->cfg->telemetry.log_content_max_bytes + 1); /* one byte over: cut() flags it */
    int out = sl_json_obj_get(d, 0, "output");
    for (int it = out >= 0 && sl_json_type_of(d, out) == SL_JSON_ARRAY ? sl_json_first(d, out) : -1; it >= 0;
         it = sl_json_next(d, it)) {
        int parts = sl_json_type_of(d, it) == SL_JSON_OBJECT ? sl_json_obj_get(d, it, "content") : -1;
        for (int p = parts >= 0 && sl_json_type_of(d, parts) == SL_JSON_ARRAY ? sl_json_first(d, parts) : -1; p >= 0;
             p = sl_json_next(d, p)) {
            int ty = sl_json_type_of(d, p) == SL_JSON_OBJECT ? sl_json_obj_get(d, p, "type") : -1;
            int t = ty >= 0 && sl_json_str_eq(d, ty, "output_text") ? sl_json_obj_get(d, p, "text") : -1;
            sl_str s;
            if (t >= 0 && sl_json_type_of(d, t) == SL_JSON_STRING && sl_json_str(d, t, &r->hx->arena, &s) == SL_OK)
                sl_text_capture_add(&c, s);
        }
    }
    sl_str text = c.buf.len ? sl_arena_str(&r->hx->arena, sl_buf_str(&c.buf)) : SL_STR_NULL;
    if (c.truncated) r->rec.content_truncated = true;
    sl_text_capture_free(&c);
    return text;
}

/* The text of a non-streamed chat answer, read through the OpenAI shape (translated when needed). */
static sl_str completion_text(sl_gw_req *r)
{
    if (r->stream || !r->resp.len || !r->target || r->up_status < 200 || r->up_status >= 300 || r->api == SL_API_EMBEDDINGS)
        return SL_STR_NULL;
    sl_arena *a = &r->hx->arena;
    sl_str body = sl_buf_str(&r->resp);
    sl_buf tmp;
    sl_buf_init(&tmp, 64u << 20);
    sl_proto up = r->target->provider->proto;
    if (up != SL_PROTO_OPENAI) {
        sl_xlat_resp_opts o = {.public_model = r->model, .id = sl_str_from_cstr(r->request_id)};
        if (sl_xlat_response(up, SL_PROTO_OPENAI, body.p, body.n, &o, a, &tmp, NULL, NULL) == SL_OK)
            body = sl_arena_str(a, sl_buf_str(&tmp));
    }
    sl_buf_free(&tmp);
    sl_json_doc d;
    sl_str text = SL_STR_NULL;
    if (!body.p || sl_json_parse(&d, body.p, body.n, a, NULL, NULL) != SL_OK || sl_json_type_of(&d, 0) != SL_JSON_OBJECT)
        return text;
    if (r->api == SL_API_RESPONSES) return responses_text(r, &d);
    int ch = sl_json_obj_get(&d, 0, "choices");
    int c0 = ch >= 0 && sl_json_type_of(&d, ch) == SL_JSON_ARRAY ? sl_json_arr_get(&d, ch, 0) : -1;
    int msg = c0 >= 0 && sl_json_type_of(&d, c0) == SL_JSON_OBJECT ? sl_json_obj_get(&d, c0, "message") : -1;
    int content = msg >= 0 && sl_json_type_of(&d, msg) == SL_JSON_OBJECT ? sl_json_obj_get(&d, msg, "content") : -1;
    if (content >= 0 && sl_json_type_of(&d, content) == SL_JSON_STRING) sl_json_str(&d, content, a, &text);
    return text;
}

static void fill_content(sl_gw_req *r)
{
    r->rec.content_logged = true;
    if (r->doc.toks && r->doc.ntoks && sl_json_type_of(&r->doc, 0) == SL_JSON_OBJECT) {
        static const char *const fields[] = {"messages", "contents", "input"};
        for (size_t i = 0; i < SL_ARRAY_LEN(fields); i++) {
            int t = sl_json_obj_get(&r->doc, 0, fields[i]);
            if (t < 0) continue;
            sl_str raw = sl_json_raw(&r->doc, t);
            if (raw.n <= r->cfg->telemetry.log_content_max_bytes) r->rec.prompt = raw;
            else r->rec.content_truncated = true; /* cut JSON is no JSON: leave it out */
            break;
        }
    }
    if (r->stream) { /* collected as it went by, already cut (proxy.c, the stream translator) */
        const sl_text_capture *tc = &r->rec.stream_text;
        if (tc->buf.len) r->rec.completion = sl_buf_str(&tc->buf);
        if (tc->truncated) r->rec.content_truncated = true;
        return;
    }
    sl_str c = completion_text(r);
    if (c.n) r->rec.completion = cut(r, c);
}

static void export_spans(sl_gw_req *r)
{
    sl_trace_req *t = r->rec.trace;
    fill_response(r);
    sl_buf b;
    sl_buf_init(&b, 1u << 20);
    uint32_t n = 0;
    if (sl_otlp_encode_spans(t, &r->rec, &b, &n) == SL_OK)
        sl_trace_export_push(b.p, b.len, n, r->cfg->telemetry.traces.queue_size);
    else
        sl_debug("trace spans of %s too large to encode", r->request_id);
    sl_buf_free(&b);
}

void sl_telemetry_finish(sl_gw_req *r)
{
    if (r->rec.attempt_open) end_attempt(r, 0, r->hx->aborted ? "cancelled" : "aborted", r->rec.error);
    const sl_telemetry_cfg *tc = &r->cfg->telemetry;
    if (tc->log_content) fill_content(r);
    sl_accesslog_write(&r->rec);
    sl_text_capture_free(&r->rec.stream_text); /* the completion pointed into it: the line is written */
    r->rec.completion = SL_STR_NULL;
    if (tc->metrics.enabled) sl_metrics_record(r->gw->w, &r->rec);
    if (r->rec.trace && r->rec.trace->recording) export_spans(r);
}
