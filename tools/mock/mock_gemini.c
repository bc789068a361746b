/*
 * mock_gemini.c: the Gemini surface: POST /v1beta/models/{model}:generateContent
 * and :streamGenerateContent (?alt=sse: one GenerateContentResponse per
 * "data:" event, terminated by CRLF CRLF as Google does; without alt=sse: a
 * JSON array of the same objects). Every chunk carries usageMetadata with the
 * running candidate count; the last token's chunk carries finishReason. A
 * tool call is one whole functionCall part.
 */
#include "mock.h"

static const char *status_name(int status)
{
    switch (status) {
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 499: return "CANCELLED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
    }
}

static void gemini_error_body(sl_buf *out, int status, const char *msg)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "error");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "code");
    sl_jw_int(&w, status);
    sl_jw_key(&w, "message");
    sl_jw_cstr(&w, msg);
    sl_jw_key(&w, "status");
    sl_jw_cstr(&w, status_name(status));
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
}

static void gemini_error_event(sl_buf *out, const char *msg)
{
    sl_buf_append_cstr(out, "data: ");
    gemini_error_body(out, 500, msg);
    sl_buf_append_cstr(out, "\r\n\r\n");
}

const sl_mock_proto sl_mock_proto_gemini = {"gemini", gemini_error_body, gemini_error_event, "\r\n\r\n"};

typedef struct gen {
    sl_mock_run *r;
    sl_str model;
    char id[48];
    uint64_t prompt, output;
    const char *finish;
    bool sse;
    sl_buf ev;
} gen;

/* One GenerateContentResponse with a text part (or the function call) and the running usage. */
static int response(gen *g, sl_buf *out, sl_str text, const sl_mock_tool *t, uint64_t so_far, bool last)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "candidates");
    sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "content");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "parts");
    sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    if (t && t->found) {
        sl_jw_key(&w, "functionCall");
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "name");
        sl_jw_str(&w, t->name);
        sl_jw_key(&w, "args");
        sl_jw_raw(&w, t->args);
        sl_jw_obj_end(&w);
    } else {
        sl_jw_key(&w, "text");
        sl_jw_str(&w, text);
    }
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "role");
    sl_jw_cstr(&w, "model");
    sl_jw_obj_end(&w);
    if (last) {
        sl_jw_key(&w, "finishReason");
        sl_jw_cstr(&w, g->finish);
    }
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "usageMetadata");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "promptTokenCount");
    sl_jw_int(&w, (int64_t)g->prompt);
    sl_jw_key(&w, "candidatesTokenCount");
    sl_jw_int(&w, (int64_t)so_far);
    sl_jw_key(&w, "totalTokenCount");
    sl_jw_int(&w, (int64_t)(g->prompt + so_far));
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "modelVersion");
    sl_jw_str(&w, g->model);
    sl_jw_key(&w, "responseId");
    sl_jw_cstr(&w, g->id);
    sl_jw_obj_end(&w);
    return w.err;
}

/* One streamed chunk as an SSE event, or as an element of the JSON array. */
static int chunk(gen *g, sl_mock_piece_kind kind, sl_str text, const sl_mock_tool *t, uint64_t so_far, bool last,
                 bool first)
{
    sl_buf_clear(&g->ev);
    int rc = response(g, &g->ev, text, t, so_far, last);
    if (rc) return rc;
    if (g->sse) return sl_mock_sse(g->r, kind, NULL, sl_buf_str(&g->ev));
    rc = sl_mock_piece_begin(g->r, kind);
    if (!rc) rc = sl_buf_append_cstr(&g->r->data, first ? "" : ",\r\n");
    if (!rc) rc = sl_buf_append_str(&g->r->data, sl_buf_str(&g->ev));
    return rc ? rc : sl_mock_piece_end(g->r);
}

static int raw_piece(sl_mock_run *r, sl_mock_piece_kind kind, const char *s)
{
    int rc = sl_mock_piece_begin(r, kind);
    if (!rc) rc = sl_buf_append_cstr(&r->data, s);
    return rc ? rc : sl_mock_piece_end(r);
}

static int stream(gen *g, const sl_mock_text *txt, const sl_mock_tool *t)
{
    int rc = g->sse ? 0 : raw_piece(g->r, SL_MOCK_PRE, "[");
    if (t->found) {
        if (!rc) rc = chunk(g, SL_MOCK_TOK, SL_STR_NULL, t, g->output, true, true);
    } else if (txt->n == 0) {
        if (!rc) rc = chunk(g, SL_MOCK_POST, SL_STR(""), NULL, 0, true, true);
    } else {
        for (size_t i = 0; i < txt->n && !rc; i++)
            rc = chunk(g, SL_MOCK_TOK, txt->tok[i], NULL, i + 1, i + 1 == txt->n, i == 0);
    }
    if (!rc && !g->sse) rc = raw_piece(g->r, SL_MOCK_POST, "]");
    return rc;
}

static int pick_tool(sl_mock_run *r, sl_mock_tool *t)
{
    const sl_json_doc *d = &r->doc;
    int tools = sl_json_obj_get(d, 0, "tools");
    if (tools >= 0 && sl_json_type_of(d, tools) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, tools); e >= 0 && !t->found; e = sl_json_next(d, e)) {
            int decls = sl_json_type_of(d, e) == SL_JSON_OBJECT ? sl_json_obj_get(d, e, "functionDeclarations") : -1;
            if (decls < 0 || sl_json_type_of(d, decls) != SL_JSON_ARRAY) continue;
            for (int f = sl_json_first(d, decls); f >= 0; f = sl_json_next(d, f)) {
                if (sl_json_type_of(d, f) != SL_JSON_OBJECT) continue;
                int schema = sl_json_obj_get(d, f, "parameters");
                if (schema < 0) schema = sl_json_obj_get(d, f, "parametersJsonSchema");
                if (sl_mock_tool_offer(d, sl_json_obj_get(d, f, "name"), schema, r->k.tool_call, &r->hx->arena, t))
                    break;
            }
        }
    }
    return sl_mock_tool_settle(r->k.tool_call, t);
}

/* contents[].parts[].text, plus systemInstruction.parts as one more message. */
static uint64_t prompt_tokens(sl_mock_run *r, int contents)
{
    const sl_json_doc *d = &r->doc;
    int sys = sl_json_obj_get(d, 0, "systemInstruction");
    uint64_t bytes = 0, n = 0;
    if (sys >= 0 && sl_json_type_of(d, sys) == SL_JSON_OBJECT)
        bytes += sl_mock_content_bytes(d, sl_json_obj_get(d, sys, "parts"), &r->hx->arena), n++;
    for (int e = sl_json_first(d, contents); e >= 0; e = sl_json_next(d, e), n++)
        if (sl_json_type_of(d, e) == SL_JSON_OBJECT)
            bytes += sl_mock_content_bytes(d, sl_json_obj_get(d, e, "parts"), &r->hx->arena);
    return sl_mock_prompt_tokens(bytes, n);
}

static bool query_has(sl_str q, const char *param)
{
    sl_str want = sl_str_from_cstr(param);
    while (q.n) {
        const char *amp = memchr(q.p, '&', q.n);
        size_t len = amp ? (size_t)(amp - q.p) : q.n;
        if (sl_str_eq((sl_str){q.p, len}, want)) return true;
        q.p += len, q.n -= len;
        if (q.n) q.p++, q.n--;
    }
    return false;
}

static int render(gen *g, int contents, const sl_mock_text *txt, const sl_mock_tool *t, sl_str text, bool streaming)
{
    sl_mock_run *r = g->r;
    sl_str *frag;
    size_t nfrag = 0;
    if (t->found && sl_mock_split_fragments(t->args, &r->hx->arena, &frag, &nfrag)) return SL_ENOMEM;
    snprintf(g->id, sizeof g->id, "mock-%llu", (unsigned long long)r->seq);
    g->prompt = prompt_tokens(r, contents);
    g->output = t->found ? nfrag : txt->n;
    g->finish = !t->found && txt->truncated ? "MAX_TOKENS" : "STOP";
    if (streaming) {
        r->stream = true;
        g->sse = query_has(r->hx->req.query, "alt=sse");
        r->content_type = g->sse ? "text/event-stream" : "application/json";
        return stream(g, txt, t);
    }
    r->ntok = (size_t)g->output;
    return response(g, &r->data, text, t, g->output, true);
}

void sl_mock_gemini(sl_mock_run *r, sl_str model, sl_str action)
{
    bool streaming = sl_str_eq_lit(action, "streamGenerateContent");
    if (!streaming && !sl_str_eq_lit(action, "generateContent")) {
        sl_mock_plan_error(r, 404, "mock: unknown model action");
        return;
    }
    if (sl_mock_parse_body(r)) return;
    const sl_json_doc *d = &r->doc;
    gen g = {.r = r, .model = model};
    sl_buf_init(&g.ev, 1u << 20);
    int contents = sl_json_obj_get(d, 0, "contents"), gc = sl_json_obj_get(d, 0, "generationConfig");
    uint64_t max;
    sl_mock_tool tool = {0};
    sl_mock_text txt;
    sl_str text;
    if (contents < 0 || sl_json_type_of(d, contents) != SL_JSON_ARRAY || sl_json_first(d, contents) < 0) {
        sl_mock_plan_error(r, 400, "* GenerateContentRequest.contents: contents is not specified");
    } else if (sl_mock_json_u64(d, gc, "maxOutputTokens", SL_MOCK_MAX_TOKENS, SL_MOCK_MAX_TOKENS, &max)) {
        sl_mock_plan_error(r, 400, "generationConfig.maxOutputTokens must be a non-negative integer");
    } else if (r->k.tool_call.n && pick_tool(r, &tool)) {
        sl_mock_plan_error(r, 400, "x-mock-tool-call: auto, but the request declares no tools");
    } else if (sl_mock_text_make(&r->k, r->hx->body, max, &r->hx->arena, &txt) ||
               sl_mock_text_join(&txt, &r->hx->arena, &text)) {
        sl_mock_plan_error(r, 500, "mock: out of memory");
    } else if (render(&g, contents, &txt, &tool, text, streaming)) {
        sl_mock_plan_error(r, 500, "mock: could not render the answer");
    }
    sl_buf_free(&g.ev);
}
