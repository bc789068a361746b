/*
 * mock_openai.c: the OpenAI surface: chat completions (whole and SSE, text
 * and tool calls, include_usage), embeddings (float or base64), the model
 * list, and a minimal non-streaming Responses API.
 */
#include "mock.h"

#include <time.h>

static void openai_error_json(sl_jw *w, int status, const char *msg)
{
    const char *type = "invalid_request_error", *code = NULL;
    switch (status) {
    case 401: type = "authentication_error", code = "invalid_api_key"; break;
    case 403: type = "permission_error"; break;
    case 404: code = "model_not_found"; break;
    case 429: type = "rate_limit_error", code = "rate_limit_exceeded"; break;
    default:
        if (status >= 500) type = "server_error";
    }
    sl_jw_obj_begin(w);
    sl_jw_key(w, "error");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "message");
    sl_jw_cstr(w, msg);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, type);
    sl_jw_key(w, "param");
    sl_jw_null(w);
    sl_jw_key(w, "code");
    if (code) sl_jw_cstr(w, code);
    else sl_jw_null(w);
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

static void openai_error_body(sl_buf *out, int status, const char *msg)
{
    sl_jw w;
    sl_jw_init(&w, out);
    openai_error_json(&w, status, msg);
}

static void openai_error_event(sl_buf *out, const char *msg)
{
    sl_buf_append_cstr(out, "data: ");
    openai_error_body(out, 500, msg);
    sl_buf_append_cstr(out, "\n\n");
}

const sl_mock_proto sl_mock_proto_openai = {"openai", openai_error_body, openai_error_event, "\n\n"};

/* ---- chat completions ---- */

typedef struct chat {
    sl_mock_run *r;
    char id[48];
    sl_str model;
    int64_t created;
    bool include_usage;
    uint64_t prompt, completion;
    sl_buf ev, delta;
} chat;

static void usage_json(sl_jw *w, const chat *c)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "prompt_tokens");
    sl_jw_int(w, (int64_t)c->prompt);
    sl_jw_key(w, "completion_tokens");
    sl_jw_int(w, (int64_t)c->completion);
    sl_jw_key(w, "total_tokens");
    sl_jw_int(w, (int64_t)(c->prompt + c->completion));
    sl_jw_key(w, "prompt_tokens_details");
    sl_jw_raw(w, SL_STR("{\"cached_tokens\":0}"));
    sl_jw_key(w, "completion_tokens_details");
    sl_jw_raw(w, SL_STR("{\"reasoning_tokens\":0}"));
    sl_jw_obj_end(w);
}

static void head_fields(sl_jw *w, const chat *c, const char *object)
{
    sl_jw_key(w, "id");
    sl_jw_cstr(w, c->id);
    sl_jw_key(w, "object");
    sl_jw_cstr(w, object);
    sl_jw_key(w, "created");
    sl_jw_int(w, c->created);
    sl_jw_key(w, "model");
    sl_jw_str(w, c->model);
    sl_jw_key(w, "system_fingerprint");
    sl_jw_cstr(w, "fp_mock");
}

/* One chat.completion.chunk; delta is raw JSON (NULL: no choices, usage chunk). */
static int chunk(chat *c, sl_mock_piece_kind kind, sl_str delta, const char *finish)
{
    sl_buf_clear(&c->ev);
    sl_jw w;
    sl_jw_init(&w, &c->ev);
    sl_jw_obj_begin(&w);
    head_fields(&w, c, "chat.completion.chunk");
    sl_jw_key(&w, "choices");
    sl_jw_arr_begin(&w);
    if (delta.p) {
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "index");
        sl_jw_int(&w, 0);
        sl_jw_key(&w, "delta");
        sl_jw_raw(&w, delta);
        sl_jw_key(&w, "logprobs");
        sl_jw_null(&w);
        sl_jw_key(&w, "finish_reason");
        if (finish) sl_jw_cstr(&w, finish);
        else sl_jw_null(&w);
        sl_jw_obj_end(&w);
    }
    sl_jw_arr_end(&w);
    if (c->include_usage) {
        sl_jw_key(&w, "usage");
        if (delta.p) sl_jw_null(&w);
        else usage_json(&w, c);
    }
    sl_jw_obj_end(&w);
    return w.err ? w.err : sl_mock_sse(c->r, kind, NULL, sl_buf_str(&c->ev));
}

/* A delta object {"content": s} or {"tool_calls":[...arguments fragment...]}. */
static sl_str delta_text(chat *c, sl_str s)
{
    sl_buf_clear(&c->delta);
    sl_jw w;
    sl_jw_init(&w, &c->delta);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "content");
    sl_jw_str(&w, s);
    sl_jw_obj_end(&w);
    return sl_buf_str(&c->delta);
}

static sl_str delta_tool(chat *c, const sl_mock_tool *t, const char *call_id, sl_str frag)
{
    sl_buf_clear(&c->delta);
    sl_jw w;
    sl_jw_init(&w, &c->delta);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "tool_calls");
    sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    if (call_id) {
        sl_jw_key(&w, "id");
        sl_jw_cstr(&w, call_id);
        sl_jw_key(&w, "type");
        sl_jw_cstr(&w, "function");
    }
    sl_jw_key(&w, "function");
    sl_jw_obj_begin(&w);
    if (call_id) {
        sl_jw_key(&w, "name");
        sl_jw_str(&w, t->name);
    }
    sl_jw_key(&w, "arguments");
    sl_jw_str(&w, frag);
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    return sl_buf_str(&c->delta);
}

static int chat_stream(chat *c, const sl_mock_text *txt, const sl_mock_tool *tool, const char *call_id,
                       const char *finish)
{
    sl_mock_run *r = c->r;
    int rc = chunk(c, SL_MOCK_PRE,
                   tool->found ? SL_STR("{\"role\":\"assistant\",\"content\":null}")
                               : SL_STR("{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}"),
                   NULL);
    if (tool->found) {
        sl_str *frag;
        size_t n;
        if (!rc) rc = sl_mock_split_fragments(tool->args, &r->hx->arena, &frag, &n);
        for (size_t i = 0; i < n && !rc; i++) {
            rc = sl_mock_piece_begin(r, SL_MOCK_TOK);
            if (!rc && i == 0) rc = chunk(c, SL_MOCK_TOK, delta_tool(c, tool, call_id, SL_STR("")), NULL);
            if (!rc) rc = chunk(c, SL_MOCK_TOK, delta_tool(c, tool, NULL, frag[i]), NULL);
            if (!rc) rc = sl_mock_piece_end(r);
        }
    } else {
        /* one token event as the template; the tokens are put in as they are sent (sl_mock_lazy_tokens) */
        if (!rc && txt->n) rc = chunk(c, SL_MOCK_TOK, delta_text(c, SL_STR(SL_MOCK_TOKEN_MARK)), NULL);
        if (!rc && txt->n) rc = sl_mock_lazy_tokens(r, txt->tok, txt->n);
    }
    if (!rc) rc = chunk(c, SL_MOCK_POST, SL_STR("{}"), finish);
    if (!rc && c->include_usage) rc = chunk(c, SL_MOCK_POST, SL_STR_NULL, NULL);
    if (!rc) rc = sl_mock_sse(r, SL_MOCK_POST, NULL, SL_STR("[DONE]"));
    return rc;
}

static int chat_whole(chat *c, sl_str text, const sl_mock_tool *tool, const char *call_id, const char *finish)
{
    sl_jw w;
    sl_jw_init(&w, &c->r->data);
    sl_jw_obj_begin(&w);
    head_fields(&w, c, "chat.completion");
    sl_jw_key(&w, "choices");
    sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    sl_jw_key(&w, "message");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "role");
    sl_jw_cstr(&w, "assistant");
    sl_jw_key(&w, "content");
    if (tool->found) sl_jw_null(&w);
    else sl_jw_str(&w, text);
    sl_jw_key(&w, "refusal");
    sl_jw_null(&w);
    if (tool->found) {
        sl_jw_key(&w, "tool_calls");
        sl_jw_arr_begin(&w);
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "id");
        sl_jw_cstr(&w, call_id);
        sl_jw_key(&w, "type");
        sl_jw_cstr(&w, "function");
        sl_jw_key(&w, "function");
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "name");
        sl_jw_str(&w, tool->name);
        sl_jw_key(&w, "arguments");
        sl_jw_str(&w, tool->args);
        sl_jw_obj_end(&w);
        sl_jw_obj_end(&w);
        sl_jw_arr_end(&w);
    }
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "logprobs");
    sl_jw_null(&w);
    sl_jw_key(&w, "finish_reason");
    sl_jw_cstr(&w, finish);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "usage");
    usage_json(&w, c);
    sl_jw_obj_end(&w);
    return w.err;
}

/* OpenAI chat tools: [{"type":"function","function":{"name","parameters"}}]. */
static int chat_tool(sl_mock_run *r, sl_mock_tool *t)
{
    const sl_json_doc *d = &r->doc;
    int tools = sl_json_obj_get(d, 0, "tools");
    if (tools >= 0 && sl_json_type_of(d, tools) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            int fn = sl_json_type_of(d, e) == SL_JSON_OBJECT ? sl_json_obj_get(d, e, "function") : -1;
            if (fn < 0 || sl_json_type_of(d, fn) != SL_JSON_OBJECT) continue;
            int rc = sl_mock_tool_offer(d, sl_json_obj_get(d, fn, "name"), sl_json_obj_get(d, fn, "parameters"),
                                        r->k.tool_call, &r->hx->arena, t);
            if (rc) break;
        }
    }
    return sl_mock_tool_settle(r->k.tool_call, t);
}

static uint64_t chat_prompt_tokens(sl_mock_run *r, int msgs)
{
    uint64_t bytes = 0, n = 0;
    for (int m = sl_json_first(&r->doc, msgs); m >= 0; m = sl_json_next(&r->doc, m), n++)
        if (sl_json_type_of(&r->doc, m) == SL_JSON_OBJECT)
            bytes += sl_mock_content_bytes(&r->doc, sl_json_obj_get(&r->doc, m, "content"), &r->hx->arena);
    return sl_mock_prompt_tokens(bytes, n);
}

static void chat_free(chat *c)
{
    sl_buf_free(&c->ev);
    sl_buf_free(&c->delta);
}

void sl_mock_openai_chat(sl_mock_run *r)
{
    if (sl_mock_parse_body(r)) return;
    const sl_json_doc *d = &r->doc;
    chat c = {.r = r, .created = (int64_t)time(NULL)};
    sl_buf_init(&c.ev, 1u << 20);
    sl_buf_init(&c.delta, 1u << 20);
    int msgs = sl_json_obj_get(d, 0, "messages");
    uint64_t max1, max2;
    sl_mock_tool tool = {0};
    sl_mock_text txt = {0};
    sl_str text = SL_STR("");
    int rc;
    if (sl_mock_json_str(d, 0, "model", &r->hx->arena, &c.model)) {
        sl_mock_plan_error(r, 400, "you must provide a model parameter");
    } else if (msgs < 0 || sl_json_type_of(d, msgs) != SL_JSON_ARRAY || sl_json_first(d, msgs) < 0) {
        sl_mock_plan_error(r, 400, "'messages' must be a non-empty array");
    } else if (sl_mock_json_u64(d, 0, "max_tokens", SL_MOCK_MAX_TOKENS, SL_MOCK_MAX_TOKENS, &max1) ||
               sl_mock_json_u64(d, 0, "max_completion_tokens", SL_MOCK_MAX_TOKENS, max1, &max2)) {
        sl_mock_plan_error(r, 400, "max_tokens must be a non-negative integer");
    } else if (r->k.tool_call.n && (rc = chat_tool(r, &tool)) != 0) {
        sl_mock_plan_error(r, 400, "x-mock-tool-call: auto, but the request declares no tools");
    } else if (sl_mock_text_make(&r->k, r->hx->body, max2, &r->hx->arena, &txt) ||
               sl_mock_text_join(&txt, &r->hx->arena, &text)) {
        sl_mock_plan_error(r, 500, "mock: out of memory");
    } else {
        int st = sl_json_obj_get(d, 0, "stream_options");
        r->stream = sl_json_bool(d, sl_json_obj_get(d, 0, "stream"), false);
        c.include_usage = r->stream && st >= 0 && sl_json_type_of(d, st) == SL_JSON_OBJECT &&
                          sl_json_bool(d, sl_json_obj_get(d, st, "include_usage"), false);
        snprintf(c.id, sizeof c.id, "chatcmpl-mock-%llu", (unsigned long long)r->seq);
        char call_id[40];
        snprintf(call_id, sizeof call_id, "call_mock_%llu", (unsigned long long)r->seq);
        sl_str *frag;
        size_t nfrag = 0;
        if (tool.found) sl_mock_split_fragments(tool.args, &r->hx->arena, &frag, &nfrag);
        c.prompt = chat_prompt_tokens(r, msgs);
        c.completion = tool.found ? nfrag : txt.n;
        const char *finish = tool.found ? "tool_calls" : txt.truncated ? "length" : "stop";
        if (r->stream) {
            r->content_type = "text/event-stream";
            rc = chat_stream(&c, &txt, &tool, call_id, finish);
        } else {
            rc = chat_whole(&c, text, &tool, call_id, finish);
            r->ntok = (size_t)c.completion;
        }
        if (rc) sl_mock_plan_error(r, 500, "mock: could not render the answer");
    }
    chat_free(&c);
}
