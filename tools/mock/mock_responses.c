/*
 * mock_responses.c: a minimal, non-streaming OpenAI Responses API
 * (POST /v1/responses): a "message" output item with output_text, or a
 * "function_call" item with x-mock-tool-call; status "incomplete" when
 * max_output_tokens cuts the text. Enough for pass-through tests.
 */
#include "mock.h"

#include <time.h>

/* input: a string, or items whose "content" is a string or parts with "text". */
static uint64_t input_tokens(sl_mock_run *r)
{
    const sl_json_doc *d = &r->doc;
    sl_arena *a = &r->hx->arena;
    int in = sl_json_obj_get(d, 0, "input"), ins = sl_json_obj_get(d, 0, "instructions");
    uint64_t bytes = 0, n = 0;
    if (ins >= 0 && sl_json_type_of(d, ins) == SL_JSON_STRING) bytes += sl_mock_content_bytes(d, ins, a), n++;
    if (in >= 0 && sl_json_type_of(d, in) == SL_JSON_STRING) {
        bytes += sl_mock_content_bytes(d, in, a), n++;
    } else if (in >= 0 && sl_json_type_of(d, in) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, in); e >= 0; e = sl_json_next(d, e), n++)
            if (sl_json_type_of(d, e) == SL_JSON_OBJECT) bytes += sl_mock_content_bytes(d, e, a);
    }
    return sl_mock_prompt_tokens(bytes, n);
}

/* Responses tools are flat: [{"type":"function","name","parameters"}]. */
static int pick_tool(sl_mock_run *r, sl_mock_tool *t)
{
    const sl_json_doc *d = &r->doc;
    int tools = sl_json_obj_get(d, 0, "tools");
    if (tools >= 0 && sl_json_type_of(d, tools) == SL_JSON_ARRAY) {
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            if (sl_json_type_of(d, e) != SL_JSON_OBJECT) continue;
            if (sl_mock_tool_offer(d, sl_json_obj_get(d, e, "name"), sl_json_obj_get(d, e, "parameters"),
                                   r->k.tool_call, &r->hx->arena, t))
                break;
        }
    }
    return sl_mock_tool_settle(r->k.tool_call, t);
}

static void output_item(sl_jw *w, const sl_mock_run *r, sl_str text, const sl_mock_tool *t)
{
    char id[48];
    sl_jw_obj_begin(w);
    if (t->found) {
        snprintf(id, sizeof id, "fc_mock_%llu", (unsigned long long)r->seq);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, "function_call");
        sl_jw_key(w, "id");
        sl_jw_cstr(w, id);
        snprintf(id, sizeof id, "call_mock_%llu", (unsigned long long)r->seq);
        sl_jw_key(w, "call_id");
        sl_jw_cstr(w, id);
        sl_jw_key(w, "name");
        sl_jw_str(w, t->name);
        sl_jw_key(w, "arguments");
        sl_jw_str(w, t->args);
    } else {
        snprintf(id, sizeof id, "msg_mock_%llu", (unsigned long long)r->seq);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, "message");
        sl_jw_key(w, "id");
        sl_jw_cstr(w, id);
        sl_jw_key(w, "role");
        sl_jw_cstr(w, "assistant");
        sl_jw_key(w, "content");
        sl_jw_arr_begin(w);
        sl_jw_obj_begin(w);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, "output_text");
        sl_jw_key(w, "text");
        sl_jw_str(w, text);
        sl_jw_key(w, "annotations");
        sl_jw_raw(w, SL_STR("[]"));
        sl_jw_obj_end(w);
        sl_jw_arr_end(w);
    }
    sl_jw_key(w, "status");
    sl_jw_cstr(w, "completed");
    sl_jw_obj_end(w);
}

static int render(sl_mock_run *r, sl_str model, sl_str text, const sl_mock_tool *t, bool cut, uint64_t in, uint64_t out)
{
    char id[48];
    snprintf(id, sizeof id, "resp_mock_%llu", (unsigned long long)r->seq);
    sl_jw w;
    sl_jw_init(&w, &r->data);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "id");
    sl_jw_cstr(&w, id);
    sl_jw_key(&w, "object");
    sl_jw_cstr(&w, "response");
    sl_jw_key(&w, "created_at");
    sl_jw_int(&w, (int64_t)time(NULL));
    sl_jw_key(&w, "status");
    sl_jw_cstr(&w, cut ? "incomplete" : "completed");
    sl_jw_key(&w, "error");
    sl_jw_null(&w);
    sl_jw_key(&w, "incomplete_details");
    if (cut) sl_jw_raw(&w, SL_STR("{\"reason\":\"max_output_tokens\"}"));
    else sl_jw_null(&w);
    sl_jw_key(&w, "model");
    sl_jw_str(&w, model);
    sl_jw_key(&w, "output");
    sl_jw_arr_begin(&w);
    output_item(&w, r, text, t);
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "usage");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "input_tokens");
    sl_jw_int(&w, (int64_t)in);
    sl_jw_key(&w, "input_tokens_details");
    sl_jw_raw(&w, SL_STR("{\"cached_tokens\":0}"));
    sl_jw_key(&w, "output_tokens");
    sl_jw_int(&w, (int64_t)out);
    sl_jw_key(&w, "output_tokens_details");
    sl_jw_raw(&w, SL_STR("{\"reasoning_tokens\":0}"));
    sl_jw_key(&w, "total_tokens");
    sl_jw_int(&w, (int64_t)(in + out));
    sl_jw_obj_end(&w);
    sl_jw_obj_end(&w);
    return w.err;
}

void sl_mock_openai_responses(sl_mock_run *r)
{
    if (sl_mock_parse_body(r)) return;
    const sl_json_doc *d = &r->doc;
    sl_str model, text;
    uint64_t max;
    sl_mock_tool tool = {0};
    sl_mock_text txt;
    int in = sl_json_obj_get(d, 0, "input");
    if (sl_mock_json_str(d, 0, "model", &r->hx->arena, &model)) {
        sl_mock_plan_error(r, 400, "you must provide a model parameter");
    } else if (in < 0 || (sl_json_type_of(d, in) != SL_JSON_STRING && sl_json_type_of(d, in) != SL_JSON_ARRAY)) {
        sl_mock_plan_error(r, 400, "'input' must be a string or an array of items");
    } else if (sl_json_bool(d, sl_json_obj_get(d, 0, "stream"), false)) {
        sl_mock_plan_error(r, 400, "mock: streaming is not implemented for /v1/responses");
    } else if (sl_mock_json_u64(d, 0, "max_output_tokens", SL_MOCK_MAX_TOKENS, SL_MOCK_MAX_TOKENS, &max)) {
        sl_mock_plan_error(r, 400, "max_output_tokens must be a non-negative integer");
    } else if (r->k.tool_call.n && pick_tool(r, &tool)) {
        sl_mock_plan_error(r, 400, "x-mock-tool-call: auto, but the request declares no tools");
    } else if (sl_mock_text_make(&r->k, r->hx->body, max, &r->hx->arena, &txt) ||
               sl_mock_text_join(&txt, &r->hx->arena, &text)) {
        sl_mock_plan_error(r, 500, "mock: out of memory");
    } else {
        sl_str *frag;
        size_t nfrag = 0;
        if (tool.found) sl_mock_split_fragments(tool.args, &r->hx->arena, &frag, &nfrag);
        uint64_t out = tool.found ? nfrag : txt.n;
        r->ntok = (size_t)out;
        if (render(r, model, text, &tool, !tool.found && txt.truncated, input_tokens(r), out))
            sl_mock_plan_error(r, 500, "mock: could not render the answer");
    }
}
