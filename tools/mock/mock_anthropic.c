/*
 * mock_anthropic.c: the Anthropic Messages surface (POST /v1/messages),
 * whole and streamed (message_start, content_block_start, ping,
 * content_block_delta..., content_block_stop, message_delta, message_stop),
 * text or one tool_use block. Like the real API it requires the
 * anthropic-version header, model, max_tokens and messages.
 */
#include "mock.h"

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void error_json(sl_buf *out, const char *type, const char *msg)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, "error");
    sl_jw_key(&w, "error");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, type);
    sl_jw_key(&w, "message");
    sl_jw_cstr(&w, msg);
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
}

static void anthropic_error_body(sl_buf *out, int status, const char *msg) { error_json(out, error_type(status), msg); }

static void anthropic_error_event(sl_buf *out, const char *msg)
{
    sl_buf_append_cstr(out, "event: error\ndata: ");
    error_json(out, "overloaded_error", msg);
    sl_buf_append_cstr(out, "\n\n");
}

const sl_mock_proto sl_mock_proto_anthropic = {"anthropic", anthropic_error_body, anthropic_error_event, "\n\n"};

typedef struct msg {
    sl_mock_run *r;
    char id[48], tool_id[48];
    sl_str model;
    uint64_t input, output;
    const char *stop;
    sl_buf ev;
} msg;

static void usage(sl_jw *w, const msg *m, uint64_t output, bool full)
{
    sl_jw_obj_begin(w);
    if (full) {
        sl_jw_key(w, "input_tokens");
        sl_jw_int(w, (int64_t)m->input);
        sl_jw_key(w, "cache_creation_input_tokens");
        sl_jw_int(w, 0);
        sl_jw_key(w, "cache_read_input_tokens");
        sl_jw_int(w, 0);
    }
    sl_jw_key(w, "output_tokens");
    sl_jw_int(w, (int64_t)output);
    sl_jw_obj_end(w);
}

static void block(sl_jw *w, const msg *m, sl_str text, const sl_mock_tool *t, bool empty)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    if (t->found) {
        sl_jw_cstr(w, "tool_use");
        sl_jw_key(w, "id");
        sl_jw_cstr(w, m->tool_id);
        sl_jw_key(w, "name");
        sl_jw_str(w, t->name);
        sl_jw_key(w, "input");
        sl_jw_raw(w, empty ? SL_STR("{}") : t->args);
    } else {
        sl_jw_cstr(w, "text");
        sl_jw_key(w, "text");
        sl_jw_str(w, empty ? SL_STR("") : text);
    }
    sl_jw_obj_end(w);
}

/* The message object: whole (final content and stop reason) or as in message_start. */
static void message(sl_jw *w, const msg *m, sl_str text, const sl_mock_tool *t, bool start)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "id");
    sl_jw_cstr(w, m->id);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "message");
    sl_jw_key(w, "role");
    sl_jw_cstr(w, "assistant");
    sl_jw_key(w, "model");
    sl_jw_str(w, m->model);
    sl_jw_key(w, "content");
    sl_jw_arr_begin(w);
    if (!start) block(w, m, text, t, false);
    sl_jw_arr_end(w);
    sl_jw_key(w, "stop_reason");
    if (start) sl_jw_null(w);
    else sl_jw_cstr(w, m->stop);
    sl_jw_key(w, "stop_sequence");
    sl_jw_null(w);
    sl_jw_key(w, "usage");
    usage(w, m, start ? 1 : m->output, true);
    sl_jw_obj_end(w);
}

/* Event helpers: ev is rebuilt for each event. */
static sl_jw ev_begin(msg *m, const char *type)
{
    sl_buf_clear(&m->ev);
    sl_jw w;
    sl_jw_init(&w, &m->ev);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, type);
    return w;
}

static int ev_end(msg *m, sl_jw *w, sl_mock_piece_kind kind, const char *type)
{
    sl_jw_obj_end(w);
    return w->err ? w->err : sl_mock_sse(m->r, kind, type, sl_buf_str(&m->ev));
}

static int delta(msg *m, sl_str s, bool tool)
{
    sl_jw w = ev_begin(m, "content_block_delta");
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    sl_jw_key(&w, "delta");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, tool ? "input_json_delta" : "text_delta");
    sl_jw_key(&w, tool ? "partial_json" : "text");
    sl_jw_str(&w, s);
    sl_jw_obj_end(&w);
    return ev_end(m, &w, SL_MOCK_TOK, "content_block_delta");
}

static int stream(msg *m, const sl_mock_text *txt, const sl_mock_tool *t)
{
    sl_jw w = ev_begin(m, "message_start");
    sl_jw_key(&w, "message");
    message(&w, m, SL_STR(""), t, true);
    int rc = ev_end(m, &w, SL_MOCK_PRE, "message_start");
    w = ev_begin(m, "content_block_start");
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    sl_jw_key(&w, "content_block");
    block(&w, m, SL_STR(""), t, true);
    if (!rc) rc = ev_end(m, &w, SL_MOCK_PRE, "content_block_start");
    if (!rc) rc = sl_mock_sse(m->r, SL_MOCK_PRE, "ping", SL_STR("{\"type\": \"ping\"}"));
    if (t->found) {
        sl_str *frag;
        size_t n = 0;
        if (!rc) rc = sl_mock_split_fragments(t->args, &m->r->hx->arena, &frag, &n);
        for (size_t i = 0; i < n && !rc; i++) rc = delta(m, frag[i], true);
    } else {
        /* one token event as the template; the tokens are put in as they are sent (sl_mock_lazy_tokens) */
        if (!rc && txt->n) rc = delta(m, SL_STR(SL_MOCK_TOKEN_MARK), false);
        if (!rc && txt->n) rc = sl_mock_lazy_tokens(m->r, txt->tok, txt->n);
    }
    w = ev_begin(m, "content_block_stop");
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    if (!rc) rc = ev_end(m, &w, SL_MOCK_POST, "content_block_stop");
    w = ev_begin(m, "message_delta");
    sl_jw_key(&w, "delta");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "stop_reason");
    sl_jw_cstr(&w, m->stop);
    sl_jw_key(&w, "stop_sequence");
    sl_jw_null(&w);
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "usage");
    usage(&w, m, m->output, false);
    if (!rc) rc = ev_end(m, &w, SL_MOCK_POST, "message_delta");
    w = ev_begin(m, "message_stop");
    if (!rc) rc = ev_end(m, &w, SL_MOCK_POST, "message_stop");
    return rc;
}

static int pick_tool(sl_mock_run *r, sl_mock_tool *t)
{
    const sl_json_doc *d = &r->doc;
    int tools = sl_json_obj_get(d, 0, "tools");
    if (tools >= 0 && sl_json_type_of(d, tools) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            if (sl_json_type_of(d, e) != SL_JSON_OBJECT) continue;
            if (sl_mock_tool_offer(d, sl_json_obj_get(d, e, "name"), sl_json_obj_get(d, e, "input_schema"),
                                   r->k.tool_call, &r->hx->arena, t))
                break;
        }
    }
    return sl_mock_tool_settle(r->k.tool_call, t);
}

static uint64_t input_tokens(sl_mock_run *r, int msgs)
{
    const sl_json_doc *d = &r->doc;
    int sys = sl_json_obj_get(d, 0, "system");
    uint64_t bytes = 0, n = 0;
    if (sys >= 0 && sl_json_type_of(d, sys) != SL_JSON_NULL) bytes += sl_mock_content_bytes(d, sys, &r->hx->arena), n++;
    for (int e = sl_json_first(d, msgs); e >= 0; e = sl_json_next(d, e), n++)
        if (sl_json_type_of(d, e) == SL_JSON_OBJECT)
            bytes += sl_mock_content_bytes(d, sl_json_obj_get(d, e, "content"), &r->hx->arena);
    return sl_mock_prompt_tokens(bytes, n);
}

static int render(msg *m, int msgs, const sl_mock_text *txt, const sl_mock_tool *t, sl_str text)
{
    sl_mock_run *r = m->r;
    sl_str *frag;
    size_t nfrag = 0;
    if (t->found && sl_mock_split_fragments(t->args, &r->hx->arena, &frag, &nfrag)) return SL_ENOMEM;
    snprintf(m->id, sizeof m->id, "msg_mock_%llu", (unsigned long long)r->seq);
    snprintf(m->tool_id, sizeof m->tool_id, "toolu_mock_%llu", (unsigned long long)r->seq);
    m->input = input_tokens(r, msgs);
    m->output = t->found ? nfrag : txt->n;
    m->stop = t->found ? "tool_use" : txt->truncated ? "max_tokens" : "end_turn";
    r->stream = sl_json_bool(&r->doc, sl_json_obj_get(&r->doc, 0, "stream"), false);
    if (r->stream) {
        r->content_type = "text/event-stream";
        return stream(m, txt, t);
    }
    sl_jw w;
    sl_jw_init(&w, &r->data);
    message(&w, m, text, t, false);
    r->ntok = (size_t)m->output;
    return w.err;
}

void sl_mock_anthropic_messages(sl_mock_run *r)
{
    if (!sl_http_find_header(&r->hx->req, "anthropic-version")) {
        sl_mock_plan_error(r, 400, "anthropic-version: header is required");
        return;
    }
    if (sl_mock_parse_body(r)) return;
    const sl_json_doc *d = &r->doc;
    msg m = {.r = r};
    sl_buf_init(&m.ev, 1u << 20);
    int msgs = sl_json_obj_get(d, 0, "messages"), mt = sl_json_obj_get(d, 0, "max_tokens");
    uint64_t max;
    sl_mock_tool tool = {0};
    sl_mock_text txt;
    sl_str text;
    if (sl_mock_json_str(d, 0, "model", &r->hx->arena, &m.model)) {
        sl_mock_plan_error(r, 400, "model: Field required");
    } else if (mt < 0) {
        sl_mock_plan_error(r, 400, "max_tokens: Field required");
    } else if (sl_mock_json_u64(d, 0, "max_tokens", SL_MOCK_MAX_TOKENS, 0, &max)) {
        sl_mock_plan_error(r, 400, "max_tokens: Input should be a valid integer");
    } else if (msgs < 0 || sl_json_type_of(d, msgs) != SL_JSON_ARRAY) {
        sl_mock_plan_error(r, 400, "messages: Field required");
    } else if (r->k.tool_call.n && pick_tool(r, &tool)) {
        sl_mock_plan_error(r, 400, "x-mock-tool-call: auto, but the request declares no tools");
    } else if (sl_mock_text_make(&r->k, r->hx->body, max, &r->hx->arena, &txt) ||
               sl_mock_text_join(&txt, &r->hx->arena, &text)) {
        sl_mock_plan_error(r, 500, "mock: out of memory");
    } else if (render(&m, msgs, &txt, &tool, text)) {
        sl_mock_plan_error(r, 500, "mock: could not render the answer");
    }
    sl_buf_free(&m.ev);
}
