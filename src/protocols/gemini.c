/*
 * gemini.c: the Gemini generateContent codec: request, response and stream
 * chunk decoders into the IR and encoders out of it (see translate.h for the
 * design, docs/translation.md for the mapping). Gemini has no tool call ids:
 * they are synthesized on the way out of Gemini and matched by name on the
 * way in (sl_xl_resolve_tool_ids). The REST API accepts snake_case field
 * names as well as camelCase; the decoders accept both.
 */
#include "protocols/xlat_ir.h"

static int get2(const sl_json_doc *d, int obj, const char *camel, const char *snake)
{
    int t = sl_xl_get(d, obj, camel);
    return t >= 0 ? t : sl_xl_get(d, obj, snake);
}

/* ---------------------------------------------------------------- requests */

static int decode_part(const sl_json_doc *d, int pt, sl_xl_ctx *c, sl_ir_msg *m, bool allow_thought)
{
    sl_ir_part *p = &m->parts[m->nparts];
    memset(p, 0, sizeof *p);
    int t;
    if ((t = sl_xl_get(d, pt, "text")) >= 0) {
        if (!allow_thought && sl_json_bool(d, sl_xl_get(d, pt, "thought"), false)) return 0;
        if (!sl_xl_tok_str(d, t, c->a, &p->text)) return sl_xl_fail(c, "text part must be a string");
        p->kind = SL_IR_TEXT;
        if (p->text.n == 0) return 0;
    } else if ((t = get2(d, pt, "inlineData", "inline_data")) >= 0) {
        p->kind = SL_IR_IMAGE;
        sl_xl_tok_str(d, get2(d, t, "mimeType", "mime_type"), c->a, &p->mime);
        if (!sl_xl_str(d, t, "data", c->a, &p->data)) return sl_xl_fail(c, "inlineData without data");
    } else if ((t = get2(d, pt, "fileData", "file_data")) >= 0) {
        p->kind = SL_IR_IMAGE;
        sl_xl_tok_str(d, get2(d, t, "mimeType", "mime_type"), c->a, &p->mime);
        if (!sl_xl_tok_str(d, get2(d, t, "fileUri", "file_uri"), c->a, &p->url))
            return sl_xl_fail(c, "fileData without fileUri");
    } else if ((t = get2(d, pt, "functionCall", "function_call")) >= 0) {
        p->kind = SL_IR_TOOL_CALL;
        if (!sl_xl_str(d, t, "name", c->a, &p->name)) return sl_xl_fail(c, "functionCall without a name");
        sl_xl_str(d, t, "id", c->a, &p->id);
        int args = sl_xl_get(d, t, "args");
        p->args = sl_xl_is(d, args, SL_JSON_OBJECT) ? sl_json_raw(d, args) : SL_STR("{}");
    } else if ((t = get2(d, pt, "functionResponse", "function_response")) >= 0) {
        p->kind = SL_IR_TOOL_RESULT;
        if (!sl_xl_str(d, t, "name", c->a, &p->name)) return sl_xl_fail(c, "functionResponse without a name");
        sl_xl_str(d, t, "id", c->a, &p->id);
        int resp = sl_xl_get(d, t, "response");
        p->text = sl_xl_is(d, resp, SL_JSON_OBJECT) ? sl_json_raw(d, resp) : SL_STR("{}");
        p->result_json = true;
    } else if (sl_xl_get(d, pt, "thoughtSignature") >= 0 || sl_xl_get(d, pt, "thought_signature") >= 0) {
        return 0; /* a signature alone: meaningful only to Gemini */
    } else {
        return sl_xl_fail(c, "part type not supported for translation to this provider");
    }
    m->nparts++;
    return 0;
}

static int decode_content(const sl_json_doc *d, int ct, sl_xl_ctx *c, sl_ir_msg *m)
{
    sl_str role = SL_STR_NULL;
    sl_xl_str(d, ct, "role", c->a, &role);
    m->role = sl_str_eq_lit(role, "model") ? SL_IR_ASSISTANT : SL_IR_USER;
    int parts = sl_xl_get(d, ct, "parts");
    if (!sl_xl_is(d, parts, SL_JSON_ARRAY)) return sl_xl_fail(c, "content without parts");
    m->parts = sl_arena_calloc(c->a, (d->toks[parts].count + 1) * sizeof *m->parts);
    if (!m->parts) return SL_ENOMEM;
    for (int e = sl_json_first(d, parts); e >= 0; e = sl_json_next(d, e)) {
        int rc = decode_part(d, e, c, m, false);
        if (rc) return rc;
    }
    return 0;
}

static int decode_system(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int si = get2(d, 0, "systemInstruction", "system_instruction");
    if (si < 0) return 0;
    sl_str s;
    if (sl_xl_tok_str(d, si, c->a, &s)) { /* the API also takes a bare string */
        r->system = sl_arena_alloc(c->a, sizeof *r->system);
        if (!r->system) return SL_ENOMEM;
        r->system[0] = s;
        r->nsystem = 1;
        return 0;
    }
    sl_ir_msg m = {0};
    int rc = decode_content(d, si, c, &m);
    if (rc) return rc;
    r->system = sl_arena_alloc(c->a, (m.nparts + 1) * sizeof *r->system);
    if (!r->system) return SL_ENOMEM;
    for (uint32_t i = 0; i < m.nparts; i++)
        if (m.parts[i].kind == SL_IR_TEXT) r->system[r->nsystem++] = m.parts[i].text;
    return 0;
}

static int decode_tools(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int tools = sl_xl_get(d, 0, "tools");
    if (sl_xl_is(d, tools, SL_JSON_ARRAY)) {
        uint32_t n = 0;
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            int fd = get2(d, e, "functionDeclarations", "function_declarations");
            if (!sl_xl_is(d, fd, SL_JSON_ARRAY))
                return sl_xl_fail(c, "only functionDeclarations tools can be translated to this provider");
            n += d->toks[fd].count;
        }
        r->tools = sl_arena_calloc(c->a, (n + 1) * sizeof *r->tools);
        if (!r->tools) return SL_ENOMEM;
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            int fd = get2(d, e, "functionDeclarations", "function_declarations");
            for (int f = sl_json_first(d, fd); f >= 0; f = sl_json_next(d, f)) {
                sl_ir_tool *t = &r->tools[r->ntools];
                if (!sl_xl_str(d, f, "name", c->a, &t->name)) return sl_xl_fail(c, "function declaration without a name");
                sl_xl_str(d, f, "description", c->a, &t->description);
                int js = get2(d, f, "parametersJsonSchema", "parameters_json_schema");
                int ps = sl_xl_get(d, f, "parameters");
                if (sl_xl_is(d, js, SL_JSON_OBJECT)) {
                    t->schema = sl_json_raw(d, js);
                } else if (sl_xl_is(d, ps, SL_JSON_OBJECT)) {
                    t->schema = sl_json_raw(d, ps);
                    t->schema_openapi = true;
                }
                r->ntools++;
            }
        }
    }
    int fcc = get2(d, get2(d, 0, "toolConfig", "tool_config"), "functionCallingConfig", "function_calling_config");
    sl_str mode;
    if (sl_xl_str(d, fcc, "mode", c->a, &mode)) {
        int allowed = get2(d, fcc, "allowedFunctionNames", "allowed_function_names");
        if (sl_str_eq_lit(mode, "NONE")) {
            r->tool_choice = SL_IR_TC_NONE;
        } else if (sl_str_eq_lit(mode, "ANY")) {
            r->tool_choice = SL_IR_TC_REQUIRED;
            /* one allowed name is "call this tool"; several cannot be expressed elsewhere */
            if (sl_xl_is(d, allowed, SL_JSON_ARRAY) && d->toks[allowed].count == 1 &&
                sl_xl_tok_str(d, sl_json_first(d, allowed), c->a, &r->tool_choice_name))
                r->tool_choice = SL_IR_TC_TOOL;
        } else {
            r->tool_choice = SL_IR_TC_AUTO;
        }
    }
    return 0;
}

static int decode_gen_config(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int gc = get2(d, 0, "generationConfig", "generation_config");
    if (gc < 0) return 0;
    int64_t n = 1;
    if ((sl_xl_int(d, gc, "candidateCount", &n) || sl_xl_int(d, gc, "candidate_count", &n)) && n != 1)
        return sl_xl_fail(c, "candidateCount other than 1 cannot be translated");
    r->has_temperature = sl_xl_num(d, gc, "temperature", &r->temperature);
    r->has_top_p = sl_xl_num(d, gc, "topP", &r->top_p) || sl_xl_num(d, gc, "top_p", &r->top_p);
    r->has_top_k = sl_xl_int(d, gc, "topK", &r->top_k) || sl_xl_int(d, gc, "top_k", &r->top_k);
    r->has_max_tokens = sl_xl_int(d, gc, "maxOutputTokens", &r->max_tokens) ||
                        sl_xl_int(d, gc, "max_output_tokens", &r->max_tokens);
    int stop = get2(d, gc, "stopSequences", "stop_sequences");
    if (sl_xl_is(d, stop, SL_JSON_ARRAY)) {
        r->stop = sl_arena_alloc(c->a, (d->toks[stop].count + 1) * sizeof *r->stop);
        if (!r->stop) return SL_ENOMEM;
        for (int e = sl_json_first(d, stop); e >= 0; e = sl_json_next(d, e))
            if (sl_xl_tok_str(d, e, c->a, &r->stop[r->nstop])) r->nstop++;
    }
    sl_str mime;
    if (sl_xl_tok_str(d, get2(d, gc, "responseMimeType", "response_mime_type"), c->a, &mime) &&
        sl_str_eq_lit(mime, "application/json")) {
        r->json_mode = true;
        int js = get2(d, gc, "responseJsonSchema", "response_json_schema");
        if (sl_xl_is(d, js, SL_JSON_OBJECT)) r->json_schema = sl_json_raw(d, js);
    }
    return 0;
}

int sl_gem_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    if (!sl_xl_is(d, 0, SL_JSON_OBJECT)) return sl_xl_fail(c, "request body must be a JSON object");
    int contents = sl_xl_get(d, 0, "contents");
    if (!sl_xl_is(d, contents, SL_JSON_ARRAY)) return sl_xl_fail(c, "contents must be an array");
    r->msgs = sl_arena_calloc(c->a, (d->toks[contents].count + 1) * sizeof *r->msgs);
    if (!r->msgs) return SL_ENOMEM;
    for (int e = sl_json_first(d, contents); e >= 0; e = sl_json_next(d, e)) {
        int rc = decode_content(d, e, c, &r->msgs[r->nmsgs]);
        if (rc) return rc;
        r->nmsgs++;
    }
    int rc = decode_system(d, c, r);
    if (!rc) rc = decode_tools(d, c, r);
    if (!rc) rc = decode_gen_config(d, c, r);
    r->stream = c->ro && c->ro->stream;
    r->include_usage = true;
    return rc;
}

/* A mime type for a URL when none is known: Gemini requires one on fileData. */
static sl_str guess_mime(sl_str url)
{
    static const struct {
        const char *ext, *mime;
    } tab[] = {{".png", "image/png"},   {".gif", "image/gif"},      {".webp", "image/webp"},
               {".pdf", "application/pdf"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"}};
    const char *q = memchr(url.p, '?', url.n);
    size_t n = q ? (size_t)(q - url.p) : url.n;
    for (size_t i = 0; i < SL_ARRAY_LEN(tab); i++) {
        size_t el = strlen(tab[i].ext);
        if (n >= el && sl_str_case_eq((sl_str){url.p + n - el, el}, sl_str_from_cstr(tab[i].ext)))
            return sl_str_from_cstr(tab[i].mime);
    }
    return SL_STR("image/jpeg");
}

static void write_function_call(sl_jw *w, sl_str name, sl_str args)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "functionCall");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "name");
    sl_jw_str(w, name);
    sl_jw_key(w, "args");
    sl_jw_raw(w, args.n ? args : SL_STR("{}"));
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

static void write_function_response(sl_jw *w, const sl_ir_part *p, sl_arena *a)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "functionResponse");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "name");
    sl_jw_str(w, p->name);
    sl_jw_key(w, "response");
    sl_json_doc doc;
    if (p->result_json || sl_xl_parse_object(p->text, a, &doc)) {
        sl_jw_raw(w, p->text);
    } else { /* Gemini's convention: "output" for results, "error" for failures */
        sl_jw_obj_begin(w);
        sl_jw_key(w, p->is_error ? "error" : "output");
        sl_jw_str(w, p->text);
        sl_jw_obj_end(w);
    }
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

static void write_part(sl_jw *w, const sl_ir_part *p, sl_arena *a)
{
    switch (p->kind) {
    case SL_IR_TEXT:
        sl_jw_obj_begin(w);
        sl_jw_key(w, "text");
        sl_jw_str(w, p->text);
        sl_jw_obj_end(w);
        return;
    case SL_IR_IMAGE:
        sl_jw_obj_begin(w);
        sl_jw_key(w, p->data.n ? "inlineData" : "fileData");
        sl_jw_obj_begin(w);
        sl_jw_key(w, "mimeType");
        sl_jw_str(w, p->mime.n ? p->mime : p->data.n ? SL_STR("image/png") : guess_mime(p->url));
        sl_jw_key(w, p->data.n ? "data" : "fileUri");
        sl_jw_str(w, p->data.n ? p->data : p->url);
        sl_jw_obj_end(w);
        sl_jw_obj_end(w);
        return;
    case SL_IR_TOOL_CALL: write_function_call(w, p->name, p->args); return;
    case SL_IR_TOOL_RESULT: write_function_response(w, p, a); return;
    }
}

static void write_contents(sl_jw *w, const sl_ir_req *r, sl_arena *a)
{
    sl_jw_key(w, "contents");
    sl_jw_arr_begin(w);
    for (uint32_t i = 0; i < r->nmsgs;) { /* merge runs of one role: parallel function responses share a turn */
        uint32_t j = i, nparts = 0;
        while (j < r->nmsgs && r->msgs[j].role == r->msgs[i].role) nparts += r->msgs[j++].nparts;
        if (nparts) {
            sl_jw_obj_begin(w);
            sl_jw_key(w, "role");
            sl_jw_cstr(w, r->msgs[i].role == SL_IR_USER ? "user" : "model");
            sl_jw_key(w, "parts");
            sl_jw_arr_begin(w);
            for (uint32_t k = i; k < j; k++)
                for (uint32_t q = 0; q < r->msgs[k].nparts; q++) write_part(w, &r->msgs[k].parts[q], a);
            sl_jw_arr_end(w);
            sl_jw_obj_end(w);
        }
        i = j;
    }
    sl_jw_arr_end(w);
}

static void write_tools(sl_jw *w, const sl_ir_req *r, sl_arena *a)
{
    sl_jw_key(w, "tools");
    sl_jw_arr_begin(w);
    sl_jw_obj_begin(w);
    sl_jw_key(w, "functionDeclarations");
    sl_jw_arr_begin(w);
    for (uint32_t i = 0; i < r->ntools; i++) {
        const sl_ir_tool *t = &r->tools[i];
        sl_jw_obj_begin(w);
        sl_jw_key(w, "name");
        sl_jw_str(w, t->name);
        if (t->description.n) sl_jw_key(w, "description"), sl_jw_str(w, t->description);
        if (t->schema_openapi) { /* it came from Gemini: give it back as it was */
            sl_jw_key(w, "parameters");
            sl_jw_raw(w, t->schema);
        } else {
            sl_jw_key(w, "parametersJsonSchema");
            sl_xl_write_schema(w, t, a);
        }
        sl_jw_obj_end(w);
    }
    sl_jw_arr_end(w);
    sl_jw_obj_end(w);
    sl_jw_arr_end(w);
    if (r->tool_choice == SL_IR_TC_UNSET) return;
    sl_jw_key(w, "toolConfig");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "functionCallingConfig");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "mode");
    sl_jw_cstr(w, r->tool_choice == SL_IR_TC_NONE ? "NONE" : r->tool_choice == SL_IR_TC_AUTO ? "AUTO" : "ANY");
    if (r->tool_choice == SL_IR_TC_TOOL) {
        sl_jw_key(w, "allowedFunctionNames");
        sl_jw_arr_begin(w);
        sl_jw_str(w, r->tool_choice_name);
        sl_jw_arr_end(w);
    }
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

static void write_gen_config(sl_jw *w, const sl_ir_req *r)
{
    if (!r->has_temperature && !r->has_top_p && !r->has_top_k && !r->has_max_tokens && !r->nstop && !r->json_mode)
        return;
    sl_jw_key(w, "generationConfig");
    sl_jw_obj_begin(w);
    if (r->has_temperature) sl_jw_key(w, "temperature"), sl_jw_double(w, r->temperature);
    if (r->has_top_p) sl_jw_key(w, "topP"), sl_jw_double(w, r->top_p);
    if (r->has_top_k) sl_jw_key(w, "topK"), sl_jw_int(w, r->top_k);
    if (r->has_max_tokens) sl_jw_key(w, "maxOutputTokens"), sl_jw_int(w, r->max_tokens);
    if (r->nstop) {
        sl_jw_key(w, "stopSequences");
        sl_jw_arr_begin(w);
        for (uint32_t i = 0; i < r->nstop; i++) sl_jw_str(w, r->stop[i]);
        sl_jw_arr_end(w);
    }
    if (r->json_mode) {
        sl_jw_key(w, "responseMimeType");
        sl_jw_cstr(w, "application/json");
        if (r->json_schema.n) sl_jw_key(w, "responseJsonSchema"), sl_jw_raw(w, r->json_schema);
    }
    sl_jw_obj_end(w);
}

int sl_gem_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    write_contents(&w, r, c->a);
    if (r->nsystem) {
        sl_jw_key(&w, "systemInstruction");
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "parts");
        sl_jw_arr_begin(&w);
        for (uint32_t i = 0; i < r->nsystem; i++) {
            sl_jw_obj_begin(&w);
            sl_jw_key(&w, "text");
            sl_jw_str(&w, r->system[i]);
            sl_jw_obj_end(&w);
        }
        sl_jw_arr_end(&w);
        sl_jw_obj_end(&w);
    }
    if (r->ntools) write_tools(&w, r, c->a);
    write_gen_config(&w, r);
    sl_jw_obj_end(&w);
    return w.err;
}

/* --------------------------------------------------------------- responses */

void sl_gem_usage_decode(const sl_json_doc *d, int u, sl_usage *out)
{
    if (!sl_xl_is(d, u, SL_JSON_OBJECT)) return;
    int64_t prompt = 0, tool_prompt = 0, cand = 0, thoughts = 0;
    memset(out, 0, sizeof *out);
    out->present = true;
    sl_xl_int(d, u, "promptTokenCount", &prompt);
    sl_xl_int(d, u, "toolUsePromptTokenCount", &tool_prompt);
    sl_xl_int(d, u, "candidatesTokenCount", &cand);
    sl_xl_int(d, u, "thoughtsTokenCount", &thoughts);
    sl_xl_int(d, u, "cachedContentTokenCount", &out->cached_tokens);
    out->input_tokens = prompt + tool_prompt;
    out->output_tokens = cand + thoughts; /* Gemini counts thoughts apart from candidates */
    out->reasoning_tokens = thoughts;
}

void sl_gem_usage_encode(sl_jw *w, const sl_usage *u)
{
    int64_t cand = u->output_tokens - u->reasoning_tokens;
    sl_jw_obj_begin(w);
    sl_jw_key(w, "promptTokenCount");
    sl_jw_int(w, u->input_tokens);
    sl_jw_key(w, "candidatesTokenCount");
    sl_jw_int(w, cand > 0 ? cand : 0);
    sl_jw_key(w, "totalTokenCount");
    sl_jw_int(w, u->input_tokens + u->output_tokens);
    if (u->cached_tokens) sl_jw_key(w, "cachedContentTokenCount"), sl_jw_int(w, u->cached_tokens);
    if (u->reasoning_tokens) sl_jw_key(w, "thoughtsTokenCount"), sl_jw_int(w, u->reasoning_tokens);
    sl_jw_obj_end(w);
}

static sl_finish gem_finish(const sl_json_doc *d, int cand, bool had_calls, sl_arena *a)
{
    sl_str fr;
    if (!sl_xl_str(d, cand, "finishReason", a, &fr)) return SL_FINISH_NONE;
    sl_finish f = sl_finish_parse(SL_PROTO_GEMINI, fr);
    return f == SL_FINISH_STOP && had_calls ? SL_FINISH_TOOL_CALLS : f; /* Gemini says STOP after calls */
}

int sl_gem_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r)
{
    if (!sl_xl_is(d, 0, SL_JSON_OBJECT)) return SL_EPARSE;
    int cands = sl_xl_get(d, 0, "candidates");
    sl_xl_str(d, 0, "responseId", c->a, &r->id);
    sl_xl_str(d, 0, "modelVersion", c->a, &r->model);
    sl_gem_usage_decode(d, sl_xl_get(d, 0, "usageMetadata"), &r->usage);
    int cand = sl_xl_is(d, cands, SL_JSON_ARRAY) ? sl_json_first(d, cands) : -1;
    if (cand < 0) {
        if (sl_xl_get(d, sl_xl_get(d, 0, "promptFeedback"), "blockReason") >= 0) r->finish = SL_FINISH_CONTENT_FILTER;
        else if (!sl_xl_is(d, cands, SL_JSON_ARRAY) && !r->usage.present) return SL_EPARSE;
        return 0;
    }
    int parts = sl_xl_get(d, sl_xl_get(d, cand, "content"), "parts");
    sl_ir_msg m = {SL_IR_ASSISTANT, NULL, 0};
    uint32_t n = sl_xl_is(d, parts, SL_JSON_ARRAY) ? d->toks[parts].count : 0;
    m.parts = sl_arena_calloc(c->a, (n + 1) * sizeof *m.parts);
    if (!m.parts) return SL_ENOMEM;
    bool calls = false;
    for (int e = n ? sl_json_first(d, parts) : -1; e >= 0; e = sl_json_next(d, e)) {
        int rc = decode_part(d, e, c, &m, false);
        if (rc == SL_EINVAL) continue; /* executable code and the like: not representable, dropped */
        if (rc) return rc;
    }
    for (uint32_t i = 0; i < m.nparts; i++) {
        sl_ir_part *p = &m.parts[i];
        if (p->kind != SL_IR_TOOL_CALL) continue;
        calls = true;
        if (!p->id.n && !(p->id = sl_xl_new_call_id(c, c->po ? c->po->id : SL_STR_NULL)).p) return SL_ENOMEM;
    }
    c->errmsg = NULL;
    r->parts = m.parts;
    r->nparts = m.nparts;
    r->finish = gem_finish(d, cand, calls, c->a);
    return 0;
}

static void candidate_begin(sl_jw *w)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "candidates");
    sl_jw_arr_begin(w);
    sl_jw_obj_begin(w);
    sl_jw_key(w, "content");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "role");
    sl_jw_cstr(w, "model");
    sl_jw_key(w, "parts");
    sl_jw_arr_begin(w);
}

static void candidate_end(sl_jw *w, sl_finish f, const sl_usage *u, sl_str model, sl_str id)
{
    sl_jw_arr_end(w);
    sl_jw_obj_end(w);
    if (f) sl_jw_key(w, "finishReason"), sl_jw_cstr(w, sl_finish_name(SL_PROTO_GEMINI, f));
    sl_jw_key(w, "index");
    sl_jw_int(w, 0);
    sl_jw_obj_end(w);
    sl_jw_arr_end(w);
    if (u && u->present) sl_jw_key(w, "usageMetadata"), sl_gem_usage_encode(w, u);
    sl_jw_key(w, "modelVersion");
    sl_jw_str(w, model);
    if (id.n) sl_jw_key(w, "responseId"), sl_jw_str(w, id);
    sl_jw_obj_end(w);
}

int sl_gem_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    candidate_begin(&w);
    uint32_t written = 0;
    for (uint32_t i = 0; i < r->nparts; i++)
        if (r->parts[i].kind == SL_IR_TEXT || r->parts[i].kind == SL_IR_TOOL_CALL) {
            write_part(&w, &r->parts[i], c->a);
            written++;
        }
    if (!written) sl_jw_raw(&w, SL_STR("{\"text\":\"\"}"));
    candidate_end(&w, r->finish ? r->finish : SL_FINISH_STOP, &r->usage, r->model, r->id);
    return w.err;
}

/* ----------------------------------------------------------------- streams */

static int dec_parts(sl_xlat_stream *s, const sl_json_doc *d, int parts, sl_buf *out)
{
    for (int e = sl_json_first(d, parts); e >= 0; e = sl_json_next(d, e)) {
        int t, rc = 0;
        sl_str text;
        if ((t = sl_xl_get(d, e, "text")) >= 0) {
            if (sl_json_bool(d, sl_xl_get(d, e, "thought"), false) || !sl_xl_tok_str(d, t, &s->arena, &text) ||
                !text.n)
                continue;
            sl_ir_ev ev = {.kind = SL_EV_TEXT, .text = text};
            rc = sl_xl_emit(s, &ev, out);
        } else if ((t = sl_xl_get(d, e, "functionCall")) >= 0) {
            if (s->dec_tools >= SL_XL_MAX_TOOLS) return SL_ELIMIT;
            sl_ir_ev ev = {.kind = SL_EV_TOOL_START, .tool = s->dec_tools++};
            sl_xl_str(d, t, "name", &s->arena, &ev.name);
            if (!sl_xl_str(d, t, "id", &s->arena, &ev.id)) {
                sl_xl_ctx c = {.a = &s->arena, .next_call_id = ev.tool};
                if (!(ev.id = sl_xl_new_call_id(&c, sl_str_from_cstr(s->id_hint))).p) return SL_ENOMEM;
            }
            rc = sl_xl_emit(s, &ev, out);
            int args = sl_xl_get(d, t, "args");
            sl_ir_ev a = {.kind = SL_EV_TOOL_ARGS, .tool = ev.tool,
                          .text = sl_xl_is(d, args, SL_JSON_OBJECT) ? sl_json_raw(d, args) : SL_STR("{}")};
            if (!rc) rc = sl_xl_emit(s, &a, out);
        }
        if (rc) return rc;
    }
    return 0;
}

int sl_gem_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out)
{
    SL_UNUSED(event);
    sl_json_doc doc;
    if (sl_json_parse(&doc, data.p, data.n, &s->arena, NULL, NULL) != 0 || !sl_xl_is(&doc, 0, SL_JSON_OBJECT))
        return SL_EPARSE;
    const sl_json_doc *d = &doc;
    int err = sl_xl_get(d, 0, "error"), rc = 0;
    if (sl_xl_is(d, err, SL_JSON_OBJECT)) {
        sl_ir_ev ev = {.kind = SL_EV_ERROR, .status = 500};
        int64_t code;
        sl_xl_str(d, err, "message", &s->arena, &ev.text);
        if (sl_xl_int(d, err, "code", &code) && code >= 400 && code <= 599) ev.status = (int)code;
        return sl_xl_emit(s, &ev, out);
    }
    int um = sl_xl_get(d, 0, "usageMetadata");
    if (sl_xl_is(d, um, SL_JSON_OBJECT)) sl_gem_usage_decode(d, um, &s->usage); /* cumulative: replace */
    if (!s->up_model) sl_xl_note_model(s, d, 0, "modelVersion");
    if (!s->dec_started) {
        s->dec_started = true;
        sl_ir_ev ev = {.kind = SL_EV_START};
        sl_xl_str(d, 0, "responseId", &s->arena, &ev.id);
        rc = sl_xl_emit(s, &ev, out);
    }
    int cands = sl_xl_get(d, 0, "candidates");
    int cand = sl_xl_is(d, cands, SL_JSON_ARRAY) ? sl_json_first(d, cands) : -1;
    int parts = sl_xl_get(d, sl_xl_get(d, cand, "content"), "parts");
    if (!rc && sl_xl_is(d, parts, SL_JSON_ARRAY)) rc = dec_parts(s, d, parts, out);
    if (!rc && sl_xl_is(d, um, SL_JSON_OBJECT)) {
        sl_ir_ev ev = {.kind = SL_EV_USAGE};
        rc = sl_xl_emit(s, &ev, out);
    }
    sl_finish f = gem_finish(d, cand, s->dec_tools > 0, &s->arena);
    if (cand < 0 && sl_xl_get(d, sl_xl_get(d, 0, "promptFeedback"), "blockReason") >= 0) f = SL_FINISH_CONTENT_FILTER;
    if (!rc && f) {
        sl_ir_ev ev = {.kind = SL_EV_FINISH, .finish = f};
        rc = sl_xl_emit(s, &ev, out);
    }
    return rc;
}

/* Writes the function calls collected so far as parts; they are sent whole, never as fragments. */
static void write_pending_calls(sl_xlat_stream *s, sl_jw *w, uint32_t *written)
{
    for (uint32_t i = 0; i < s->ntools; i++) {
        sl_xl_tool_state *t = &s->tools[i];
        if (t->flushed || !t->name) continue;
        t->flushed = true;
        sl_str args = sl_buf_str(&t->args);
        sl_json_doc doc;
        if (!sl_xl_parse_object(args, &s->arena, &doc)) args = SL_STR("{}");
        write_function_call(w, sl_str_from_cstr(t->name), args);
        (*written)++;
    }
}

static int enc_chunk(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    bool final = ev->kind == SL_EV_END;
    sl_jw w;
    int rc = sl_xl_sse_begin(out, NULL);
    if (rc) return rc;
    sl_jw_init(&w, out);
    candidate_begin(&w);
    uint32_t written = 0;
    write_pending_calls(s, &w, &written);
    if (ev->kind == SL_EV_TEXT) {
        sl_ir_part p = {.kind = SL_IR_TEXT, .text = ev->text};
        write_part(&w, &p, &s->arena);
        written++;
    }
    if (!written) sl_jw_raw(&w, SL_STR("{\"text\":\"\"}"));
    candidate_end(&w, final ? (s->finish ? s->finish : SL_FINISH_STOP) : SL_FINISH_NONE, &s->usage,
                  sl_str_from_cstr(s->model), sl_str_from_cstr(s->id));
    rc = sl_xl_sse_finish(out, &w);
    if (!rc && final) sl_xl_stream_mark_done(s);
    return rc;
}

static int tool_start(sl_xlat_stream *s, const sl_ir_ev *ev)
{
    sl_xl_tool_state *t = &s->tools[ev->tool];
    if (t->name) return 0;
    t->name = sl_strndup(ev->name.p ? ev->name.p : "", ev->name.n);
    if (!t->name) return SL_ENOMEM;
    sl_buf_init(&t->args, SL_XL_MAX_STREAM_BUF);
    if (ev->tool >= s->ntools) s->ntools = ev->tool + 1;
    return 0;
}

int sl_gem_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    switch (ev->kind) {
    case SL_EV_TEXT:
    case SL_EV_END: return enc_chunk(s, ev, out);
    case SL_EV_TOOL_START: return tool_start(s, ev);
    case SL_EV_TOOL_ARGS: {
        sl_xl_tool_state *t = &s->tools[ev->tool];
        if (!t->name) {
            sl_ir_ev st = {.kind = SL_EV_TOOL_START, .tool = ev->tool};
            int rc = tool_start(s, &st);
            if (rc) return rc;
        }
        if (s->buffered + ev->text.n > SL_XL_MAX_STREAM_BUF) return SL_ELIMIT;
        s->buffered += ev->text.n;
        return sl_buf_append_str(&t->args, ev->text);
    }
    default: return 0; /* finish and usage go in the last chunk, with any calls still pending */
    }
}
