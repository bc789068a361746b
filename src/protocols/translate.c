/*
 * translate.c: the dispatcher. Picks the decoder of the inbound protocol and
 * the encoder of the outbound one (the IR sits between them), owns the
 * stream state, writes mid-stream errors, and extracts usage and finish
 * reasons for the same-protocol path. See translate.h.
 */
#include <time.h>

#include "protocols/xlat_ir.h"

typedef struct codec {
    int (*decode_req)(const sl_json_doc *, sl_xl_ctx *, sl_ir_req *);
    int (*encode_req)(const sl_ir_req *, sl_xl_ctx *, sl_buf *);
    int (*decode_resp)(const sl_json_doc *, sl_xl_ctx *, sl_ir_resp *);
    int (*encode_resp)(const sl_ir_resp *, sl_xl_ctx *, sl_buf *);
    int (*stream_decode)(sl_xlat_stream *, sl_str, sl_str, sl_buf *);
    int (*stream_encode)(sl_xlat_stream *, const sl_ir_ev *, sl_buf *);
} codec;

static const codec codecs[] = {
    [SL_PROTO_OPENAI] = {sl_oai_decode_req, sl_oai_encode_req, sl_oai_decode_resp, sl_oai_encode_resp,
                         sl_oai_stream_decode, sl_oai_stream_encode},
    [SL_PROTO_ANTHROPIC] = {sl_ant_decode_req, sl_ant_encode_req, sl_ant_decode_resp, sl_ant_encode_resp,
                            sl_ant_stream_decode, sl_ant_stream_encode},
    [SL_PROTO_GEMINI] = {sl_gem_decode_req, sl_gem_encode_req, sl_gem_decode_resp, sl_gem_encode_resp,
                         sl_gem_stream_decode, sl_gem_stream_encode},
};

static bool proto_ok(sl_proto p) { return (unsigned)p < SL_ARRAY_LEN(codecs); }

/* ---- finish reasons ---- */

static const char *const finish_names[3][7] = {
    [SL_PROTO_OPENAI] = {"stop", "stop", "length", "tool_calls", "content_filter", "stop", "stop"},
    [SL_PROTO_ANTHROPIC] = {"end_turn", "end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence", "end_turn"},
    [SL_PROTO_GEMINI] = {"STOP", "STOP", "MAX_TOKENS", "STOP", "SAFETY", "STOP", "OTHER"},
};

const char *sl_finish_name(sl_proto p, sl_finish f)
{
    if (!proto_ok(p) || (unsigned)f > SL_FINISH_ERROR) return "stop";
    return finish_names[p][f];
}

static const struct {
    sl_proto p;
    const char *name;
    sl_finish f;
} finish_parse_tab[] = {
    {SL_PROTO_OPENAI, "length", SL_FINISH_LENGTH},
    {SL_PROTO_OPENAI, "tool_calls", SL_FINISH_TOOL_CALLS},
    {SL_PROTO_OPENAI, "function_call", SL_FINISH_TOOL_CALLS},
    {SL_PROTO_OPENAI, "content_filter", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_ANTHROPIC, "max_tokens", SL_FINISH_LENGTH},
    {SL_PROTO_ANTHROPIC, "model_context_window_exceeded", SL_FINISH_LENGTH},
    {SL_PROTO_ANTHROPIC, "tool_use", SL_FINISH_TOOL_CALLS},
    {SL_PROTO_ANTHROPIC, "stop_sequence", SL_FINISH_STOP_SEQUENCE},
    {SL_PROTO_ANTHROPIC, "refusal", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "MAX_TOKENS", SL_FINISH_LENGTH},
    {SL_PROTO_GEMINI, "SAFETY", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "RECITATION", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "BLOCKLIST", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "PROHIBITED_CONTENT", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "SPII", SL_FINISH_CONTENT_FILTER},
    {SL_PROTO_GEMINI, "IMAGE_SAFETY", SL_FINISH_CONTENT_FILTER},
};

sl_finish sl_finish_parse(sl_proto p, sl_str s)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(finish_parse_tab); i++)
        if (finish_parse_tab[i].p == p && sl_str_eq_lit(s, finish_parse_tab[i].name)) return finish_parse_tab[i].f;
    return SL_FINISH_STOP;
}

/* ---- requests ---- */

int sl_xlat_request_info(sl_proto p, const sl_json_doc *in, const sl_xlat_req_opts *o, sl_xlat_req_info *info)
{
    memset(info, 0, sizeof *info);
    if (!proto_ok(p)) return SL_EINVAL;
    if (p == SL_PROTO_GEMINI) {
        info->stream = o && o->stream;
        return 0;
    }
    if (!sl_xl_is(in, 0, SL_JSON_OBJECT)) return SL_EINVAL;
    info->stream = sl_json_bool(in, sl_xl_get(in, 0, "stream"), false);
    int so = sl_xl_get(in, 0, "stream_options");
    info->include_usage = p == SL_PROTO_ANTHROPIC || sl_json_bool(in, sl_xl_get(in, so, "include_usage"), false);
    int m = sl_xl_get(in, 0, "model");
    if (sl_xl_is(in, m, SL_JSON_STRING)) info->model = sl_json_str_raw(in, m);
    return 0;
}

int sl_xlat_request(sl_proto from, sl_proto to, const sl_json_doc *in, const sl_xlat_req_opts *o, sl_arena *a,
                    sl_buf *out, sl_xlat_req_info *info, const char **errmsg)
{
    sl_xl_ctx c = {.a = a, .ro = o};
    sl_ir_req r;
    memset(&r, 0, sizeof r);
    r.parallel_tools = -1;
    int rc = SL_EINVAL;
    if (!proto_ok(from) || !proto_ok(to)) goto done;
    rc = codecs[from].decode_req(in, &c, &r);
    if (rc) goto done;
    if (info) {
        info->stream = r.stream;
        info->include_usage = r.include_usage;
        info->model = r.model;
    }
    if (o && o->upstream_model.n) r.model = o->upstream_model;
    if (!r.model.n && to != SL_PROTO_GEMINI) {
        rc = sl_xl_fail(&c, "model is required");
        goto done;
    }
    rc = sl_xl_resolve_tool_ids(&r, &c);
    if (!rc) rc = codecs[to].encode_req(&r, &c, out);
done:
    if (errmsg) *errmsg = rc == SL_EINVAL ? (c.errmsg ? c.errmsg : "invalid request") : NULL;
    return rc;
}

/* ---- responses ---- */

static int parse_body(const char *body, size_t len, sl_arena *a, sl_json_doc *d)
{
    if (len == 0 || len > UINT32_MAX / 2) return SL_EPARSE;
    int rc = sl_json_parse(d, body, len, a, NULL, NULL);
    if (rc == SL_ENOMEM) return rc;
    return rc || !sl_xl_is(d, 0, SL_JSON_OBJECT) ? SL_EPARSE : 0;
}

static bool gemini_has_call(const sl_json_doc *d, int cand)
{
    int parts = sl_xl_get(d, sl_xl_get(d, cand, "content"), "parts");
    for (int e = sl_xl_is(d, parts, SL_JSON_ARRAY) ? sl_json_first(d, parts) : -1; e >= 0; e = sl_json_next(d, e))
        if (sl_xl_get(d, e, "functionCall") >= 0) return true;
    return false;
}

int sl_xlat_parse_response(const char *body, size_t len, sl_arena *a, sl_json_doc *d)
{
    return parse_body(body, len, a, d);
}

int sl_xlat_response_usage_doc(sl_proto p, const sl_json_doc *d, sl_arena *a, sl_usage *usage, sl_finish *finish)
{
    sl_usage u = {0};
    sl_finish f = SL_FINISH_NONE;
    sl_str fr;
    /* The finish reason only when asked for: the proxy path wants usage alone. */
    if (p == SL_PROTO_OPENAI) {
        sl_oai_usage_decode(d, sl_xl_get(d, 0, "usage"), &u);
        int ch = finish ? sl_xl_get(d, 0, "choices") : -1;
        if (sl_xl_is(d, ch, SL_JSON_ARRAY) && sl_xl_str(d, sl_json_first(d, ch), "finish_reason", a, &fr))
            f = sl_finish_parse(p, fr);
    } else if (p == SL_PROTO_ANTHROPIC) {
        sl_ant_usage_decode(d, sl_xl_get(d, 0, "usage"), &u);
        if (finish && sl_xl_str(d, 0, "stop_reason", a, &fr)) f = sl_finish_parse(p, fr);
    } else if (p == SL_PROTO_GEMINI) {
        sl_gem_usage_decode(d, sl_xl_get(d, 0, "usageMetadata"), &u);
        int cands = finish ? sl_xl_get(d, 0, "candidates") : -1;
        int cand = sl_xl_is(d, cands, SL_JSON_ARRAY) ? sl_json_first(d, cands) : -1;
        if (sl_xl_str(d, cand, "finishReason", a, &fr)) {
            f = sl_finish_parse(p, fr);
            if (f == SL_FINISH_STOP && gemini_has_call(d, cand)) f = SL_FINISH_TOOL_CALLS;
        }
    } else {
        return SL_EINVAL;
    }
    if (usage) *usage = u;
    if (finish) *finish = f;
    return 0;
}

int sl_xlat_response_usage(sl_proto p, const char *body, size_t len, sl_arena *a, sl_usage *usage, sl_finish *finish)
{
    sl_json_doc doc;
    int rc = parse_body(body, len, a, &doc);
    return rc ? rc : sl_xlat_response_usage_doc(p, &doc, a, usage, finish);
}

static int64_t now_or(int64_t t) { return t ? t : (int64_t)time(NULL); }

int sl_xlat_response(sl_proto from, sl_proto to, const char *body, size_t len, const sl_xlat_resp_opts *o,
                     sl_arena *a, sl_buf *out, sl_usage *usage, sl_finish *finish)
{
    if (!proto_ok(from) || !proto_ok(to)) return SL_EINVAL;
    if (from == to) {
        int rc = sl_xlat_response_usage(from, body, len, a, usage, finish);
        return rc ? rc : sl_buf_append(out, body, len);
    }
    sl_xlat_resp_opts po = o ? *o : (sl_xlat_resp_opts){0};
    po.created = now_or(po.created);
    sl_xl_ctx c = {.a = a, .po = &po};
    sl_ir_resp r;
    memset(&r, 0, sizeof r);
    sl_json_doc d;
    int rc = parse_body(body, len, a, &d);
    if (!rc) rc = codecs[from].decode_resp(&d, &c, &r);
    if (rc) return rc == SL_EINVAL ? SL_EPARSE : rc;
    if (po.public_model.n) r.model = po.public_model;
    if (!r.id.n) r.id = po.id.n ? po.id : SL_STR("sluice");
    if (usage) *usage = r.usage;
    if (finish) *finish = r.finish;
    return codecs[to].encode_resp(&r, &c, out);
}

/* ---- streams ---- */

#define STREAM_ARENA_MAX (64u << 20)

static char *dup_str(sl_str s, const char *dflt)
{
    return s.n ? sl_strndup(s.p, s.n) : sl_strdup(dflt);
}

sl_xlat_stream *sl_xlat_stream_new(sl_proto from, sl_proto to, const sl_xlat_resp_opts *o, bool caller_wants_usage)
{
    if (!proto_ok(from) || !proto_ok(to)) return NULL;
    sl_xlat_stream *s = sl_calloc(1, sizeof *s);
    if (!s) return NULL;
    sl_xlat_resp_opts po = o ? *o : (sl_xlat_resp_opts){0};
    s->from = from;
    s->to = to;
    s->passthrough = from == to;
    s->wants_usage = caller_wants_usage;
    sl_arena_init(&s->arena, 4096, STREAM_ARENA_MAX);
    s->model = dup_str(po.public_model, "");
    s->id = dup_str(po.id, "sluice");
    s->id_hint = dup_str(po.id, "");
    s->created = now_or(po.created);
    s->enc_block = -1;
    s->dec_cur_tool = -1;
    for (size_t i = 0; i < SL_XL_MAX_TOOLS; i++) s->tools[i].block = -1;
    if (!s->model || !s->id || !s->id_hint) {
        sl_xlat_stream_free(s);
        return NULL;
    }
    return s;
}

void sl_xlat_stream_free(sl_xlat_stream *s)
{
    if (!s) return;
    for (uint32_t i = 0; i < SL_XL_MAX_TOOLS; i++) {
        sl_free(s->tools[i].id);
        sl_free(s->tools[i].name);
        sl_buf_free(&s->tools[i].args);
    }
    sl_free(s->model);
    sl_free(s->up_model);
    sl_free(s->id);
    sl_free(s->id_hint);
    sl_arena_free(&s->arena);
    sl_free(s);
}

void sl_xl_stream_mark_done(sl_xlat_stream *s) { s->done = true; }

void sl_xl_note_model(sl_xlat_stream *s, const sl_json_doc *d, int obj, const char *key)
{
    sl_str m;
    if (s->up_model || !sl_xl_str(d, obj, key, &s->arena, &m) || !m.n) return;
    size_t n = SL_MIN(m.n, 256); /* a name, not a payload: bounded, on a UTF-8 boundary */
    while (n < m.n && n > 0 && ((unsigned char)m.p[n] & 0xC0) == 0x80) n--;
    s->up_model = sl_strndup(m.p, n);
}

/* ---- text capture (access log content) ---- */

void sl_text_capture_init(sl_text_capture *c, size_t max)
{
    sl_buf_init(&c->buf, max);
    c->max = max;
    c->truncated = false;
}

void sl_text_capture_add(sl_text_capture *c, sl_str text)
{
    if (!c || !c->max || c->truncated || !text.n) return;
    size_t room = c->max - c->buf.len;
    if (text.n > room) { /* the rest is left out: cut before the character that does not fit */
        size_t n = room;
        while (n > 0 && ((unsigned char)text.p[n] & 0xC0) == 0x80) n--;
        text.n = n;
        c->truncated = true;
    }
    if (text.n && sl_buf_append(&c->buf, text.p, text.n) != SL_OK) c->truncated = true;
}

void sl_text_capture_free(sl_text_capture *c)
{
    sl_buf_free(&c->buf);
    c->max = 0;
}

sl_str sl_xlat_stream_upstream_model(const sl_xlat_stream *s)
{
    return s->up_model ? sl_str_from_cstr(s->up_model) : SL_STR_NULL;
}

void sl_xlat_stream_capture_text(sl_xlat_stream *s, sl_text_capture *c) { s->text_cap = c; }

static int write_stream_error(sl_xlat_stream *s, int status, sl_str msg, sl_buf *out)
{
    if (!msg.n) msg = SL_STR("upstream error");
    if (status < 400 || status > 599) status = 500;
    int rc = sl_xl_sse_begin(out, s->to == SL_PROTO_ANTHROPIC ? "error" : NULL);
    if (rc) return rc;
    sl_jw w;
    sl_jw_init(&w, out);
    sl_xl_error_body(&w, s->to, status, NULL, NULL, msg);
    rc = sl_xl_sse_finish(out, &w);
    s->finish = SL_FINISH_ERROR;
    s->done = true;
    return rc;
}

int sl_xl_emit(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    switch (ev->kind) {
    case SL_EV_START:
        if (ev->id.n && !s->enc_started) {
            char *id = sl_strndup(ev->id.p, ev->id.n);
            if (!id) return SL_ENOMEM;
            sl_free(s->id);
            s->id = id;
        }
        break;
    case SL_EV_TOOL_START:
    case SL_EV_TOOL_ARGS:
        if (ev->tool >= SL_XL_MAX_TOOLS) return SL_ELIMIT;
        break;
    case SL_EV_TEXT: sl_text_capture_add(s->text_cap, ev->text); break;
    case SL_EV_FINISH: s->finish = ev->finish; break;
    case SL_EV_ERROR:
        if (s->passthrough) { /* already in the caller's shape: forwarded as is */
            s->finish = SL_FINISH_ERROR;
            s->done = true;
            return 0;
        }
        return write_stream_error(s, ev->status, ev->text, out);
    case SL_EV_END:
        if (s->passthrough) s->done = true;
        break;
    default: break;
    }
    return s->passthrough ? 0 : codecs[s->to].stream_encode(s, ev, out);
}

/* Pass-through: the event goes out as it came (data lines split again on '\n'). */
static int reframe(sl_str event, sl_str data, sl_buf *out)
{
    int rc = 0;
    if (event.n) {
        rc = sl_buf_append_cstr(out, "event: ");
        if (!rc) rc = sl_buf_append_str(out, event);
        if (!rc) rc = sl_buf_append_cstr(out, "\n");
    }
    while (!rc) {
        const char *nl = data.n ? memchr(data.p, '\n', data.n) : NULL;
        size_t n = nl ? (size_t)(nl - data.p) : data.n;
        rc = sl_buf_append_cstr(out, "data: ");
        if (!rc) rc = sl_buf_append(out, data.p, n);
        if (!rc) rc = sl_buf_append_cstr(out, "\n");
        if (!nl) break;
        data.p += n + 1;
        data.n -= n + 1;
    }
    return rc ? rc : sl_buf_append_cstr(out, "\n");
}

/*
 * Pass-through: the caller sees the public model name it asked for, not the
 * upstream's (OpenAI "model", Anthropic message_start "message.model", Gemini
 * "modelVersion" of every chunk). *io is the event data (maybe already
 * edited); on a rewrite it is replaced by a copy in the stream arena.
 */
static int passthrough_model(sl_xlat_stream *s, sl_str *io)
{
    const char *key = s->from == SL_PROTO_GEMINI ? "modelVersion" : "model";
    size_t klen = strlen(key);
    if (!s->model[0] || io->n < klen || !memmem(io->p, io->n, key, klen)) return 0;
    sl_json_doc d;
    if (sl_json_parse(&d, io->p, io->n, &s->arena, NULL, NULL) || sl_json_type_of(&d, 0) != SL_JSON_OBJECT) return 0;
    int obj = s->from == SL_PROTO_ANTHROPIC ? sl_json_obj_get(&d, 0, "message") : 0;
    if (obj < 0 || sl_json_type_of(&d, obj) != SL_JSON_OBJECT) return 0;
    int m = sl_json_obj_get(&d, obj, key);
    if (m < 0 || sl_json_type_of(&d, m) != SL_JSON_STRING || sl_json_str_eq(&d, m, s->model)) return 0;
    sl_buf q, spliced;
    sl_buf_init(&q, 0);
    sl_buf_init(&spliced, 0);
    int rc = sl_buf_append(&q, "\"", 1);
    if (!rc) rc = sl_json_escape(&q, sl_str_from_cstr(s->model));
    if (!rc) rc = sl_buf_append(&q, "\"", 1);
    sl_json_edit e = {d.toks[m].start, d.toks[m].end, sl_buf_str(&q)};
    if (!rc) rc = sl_json_splice(io->p, io->n, &e, 1, &spliced);
    if (!rc) {
        sl_str copy = sl_arena_str(&s->arena, sl_buf_str(&spliced));
        if (copy.p) *io = copy;
        else rc = SL_ENOMEM;
    }
    sl_buf_free(&q);
    sl_buf_free(&spliced);
    return rc;
}

int sl_xlat_stream_event(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out)
{
    if (s->done) return 0;
    if (data.n > UINT32_MAX / 2) return SL_ELIMIT;
    sl_arena_reset(&s->arena);
    s->drop_event = false;
    s->replace_event = SL_STR_NULL;
    size_t mark = out->len;
    int rc = codecs[s->from].stream_decode(s, event, data, out);
    if (rc) {
        out->len = mark; /* no half-written events */
        if (out->p) out->p[mark] = '\0';
        return rc;
    }
    if (!s->passthrough || s->drop_event) return 0;
    sl_str fwd = s->replace_event.p ? s->replace_event : data;
    rc = passthrough_model(s, &fwd);
    return rc ? rc : reframe(event, fwd, out);
}

int sl_xlat_stream_end(sl_xlat_stream *s, sl_buf *out)
{
    if (s->done) return 0;
    if (s->passthrough) {
        s->done = true;
        return 0;
    }
    sl_arena_reset(&s->arena);
    sl_ir_ev ev = {.kind = SL_EV_END};
    return codecs[s->to].stream_encode(s, &ev, out);
}

int sl_xlat_stream_error(sl_xlat_stream *s, int http_status, sl_str message, sl_buf *out)
{
    if (s->done) return 0;
    return write_stream_error(s, http_status, message, out);
}

const sl_usage *sl_xlat_stream_usage(const sl_xlat_stream *s) { return &s->usage; }
sl_finish sl_xlat_stream_finish(const sl_xlat_stream *s) { return s->finish; }
bool sl_xlat_stream_done(const sl_xlat_stream *s) { return s->done; }
