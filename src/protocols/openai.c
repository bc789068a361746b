/*
 * openai.c: the OpenAI Chat Completions codec: request, response and stream
 * chunk decoders into the IR and encoders out of it (see translate.h for the
 * design, docs/translation.md for the mapping).
 */
#include "protocols/xlat_ir.h"

/* ---------------------------------------------------------------- requests */

static int image_part(const sl_json_doc *d, int part, sl_xl_ctx *c, sl_ir_part *p)
{
    int iu = sl_xl_get(d, part, "image_url");
    sl_str url;
    if (!sl_xl_tok_str(d, iu, c->a, &url) && !sl_xl_str(d, iu, "url", c->a, &url))
        return sl_xl_fail(c, "image_url part without a url");
    p->kind = SL_IR_IMAGE;
    if (sl_str_starts_with(url, SL_STR("data:"))) {
        if (!sl_xl_data_url(url, &p->mime, &p->data)) return sl_xl_fail(c, "image data URL must be base64");
    } else {
        p->url = url;
    }
    return 0;
}

/* Text (and, for user messages, image) parts of a content value: a string or an array of parts. */
static int content_parts(const sl_json_doc *d, int content, sl_xl_ctx *c, sl_ir_msg *m, bool images)
{
    if (content < 0 || sl_json_type_of(d, content) == SL_JSON_NULL) return 0;
    if (sl_json_type_of(d, content) == SL_JSON_STRING) {
        sl_ir_part *p = &m->parts[m->nparts];
        if (!sl_xl_tok_str(d, content, c->a, &p->text)) return SL_ENOMEM;
        p->kind = SL_IR_TEXT;
        if (p->text.n) m->nparts++;
        return 0;
    }
    if (sl_json_type_of(d, content) != SL_JSON_ARRAY) return sl_xl_fail(c, "message content must be a string or an array");
    for (int e = sl_json_first(d, content); e >= 0; e = sl_json_next(d, e)) {
        sl_str type;
        if (!sl_xl_str(d, e, "type", c->a, &type)) return sl_xl_fail(c, "content part without a type");
        sl_ir_part *p = &m->parts[m->nparts];
        memset(p, 0, sizeof *p);
        if (sl_str_eq_lit(type, "text") || sl_str_eq_lit(type, "refusal")) {
            if (!sl_xl_str(d, e, sl_str_eq_lit(type, "text") ? "text" : "refusal", c->a, &p->text))
                return sl_xl_fail(c, "text part without text");
            p->kind = SL_IR_TEXT;
            if (p->text.n) m->nparts++;
        } else if (sl_str_eq_lit(type, "image_url") && images) {
            int rc = image_part(d, e, c, p);
            if (rc) return rc;
            m->nparts++;
        } else {
            return sl_xl_fail(c, "content part type not supported for translation to this provider");
        }
    }
    return 0;
}

static int tool_calls(const sl_json_doc *d, int arr, sl_xl_ctx *c, sl_ir_msg *m)
{
    for (int e = sl_json_first(d, arr); e >= 0; e = sl_json_next(d, e)) {
        sl_ir_part *p = &m->parts[m->nparts];
        memset(p, 0, sizeof *p);
        int fn = sl_xl_get(d, e, "function");
        sl_str args = SL_STR_NULL;
        if (!sl_xl_str(d, fn, "name", c->a, &p->name)) return sl_xl_fail(c, "tool call without function.name");
        sl_xl_str(d, e, "id", c->a, &p->id);
        sl_xl_str(d, fn, "arguments", c->a, &args);
        p->kind = SL_IR_TOOL_CALL;
        p->args = sl_xl_args_from_string(args, c->a);
        m->nparts++;
    }
    return 0;
}

static int count_parts(const sl_json_doc *d, int msg)
{
    int n = 1, t = sl_xl_get(d, msg, "content");
    if (sl_xl_is(d, t, SL_JSON_ARRAY)) n += (int)d->toks[t].count;
    t = sl_xl_get(d, msg, "tool_calls");
    if (sl_xl_is(d, t, SL_JSON_ARRAY)) n += (int)d->toks[t].count;
    return n + 1; /* + a legacy function_call */
}

static int system_message(const sl_json_doc *d, int msg, sl_xl_ctx *c, sl_ir_req *r)
{
    sl_ir_msg tmp = {0};
    tmp.parts = sl_arena_calloc(c->a, (size_t)count_parts(d, msg) * sizeof *tmp.parts);
    if (!tmp.parts) return SL_ENOMEM;
    int rc = content_parts(d, sl_xl_get(d, msg, "content"), c, &tmp, false);
    if (rc) return rc;
    for (uint32_t i = 0; i < tmp.nparts; i++) r->system[r->nsystem++] = tmp.parts[i].text;
    return 0;
}

static int decode_message(const sl_json_doc *d, int msg, sl_xl_ctx *c, sl_ir_req *r)
{
    sl_str role;
    if (!sl_xl_str(d, msg, "role", c->a, &role)) return sl_xl_fail(c, "message without a role");
    if (sl_str_eq_lit(role, "system") || sl_str_eq_lit(role, "developer")) return system_message(d, msg, c, r);
    sl_ir_msg *m = &r->msgs[r->nmsgs];
    memset(m, 0, sizeof *m);
    m->parts = sl_arena_calloc(c->a, (size_t)count_parts(d, msg) * sizeof *m->parts);
    if (!m->parts) return SL_ENOMEM;
    int content = sl_xl_get(d, msg, "content"), rc = 0;
    if (sl_str_eq_lit(role, "user")) {
        m->role = SL_IR_USER;
        rc = content_parts(d, content, c, m, true);
    } else if (sl_str_eq_lit(role, "assistant")) {
        m->role = SL_IR_ASSISTANT;
        rc = content_parts(d, content, c, m, false);
        int tc = sl_xl_get(d, msg, "tool_calls");
        if (!rc && sl_xl_is(d, tc, SL_JSON_ARRAY)) rc = tool_calls(d, tc, c, m);
        int fc = sl_xl_get(d, msg, "function_call"); /* legacy single call */
        if (!rc && sl_xl_is(d, fc, SL_JSON_OBJECT)) {
            sl_ir_part *p = &m->parts[m->nparts++];
            sl_str args = SL_STR_NULL;
            sl_xl_str(d, fc, "name", c->a, &p->name);
            sl_xl_str(d, fc, "arguments", c->a, &args);
            p->kind = SL_IR_TOOL_CALL;
            p->args = sl_xl_args_from_string(args, c->a);
        }
    } else if (sl_str_eq_lit(role, "tool") || sl_str_eq_lit(role, "function")) {
        m->role = SL_IR_USER;
        sl_ir_msg tmp = {.parts = m->parts + 1};
        rc = content_parts(d, content, c, &tmp, false);
        if (rc) return rc;
        sl_ir_part *p = &m->parts[0];
        p->kind = SL_IR_TOOL_RESULT;
        p->text = sl_xl_msg_text(c->a, &tmp, SL_STR("\n"));
        if (!p->text.p) return SL_ENOMEM;
        sl_xl_str(d, msg, "tool_call_id", c->a, &p->id);
        sl_xl_str(d, msg, "name", c->a, &p->name);
        m->nparts = 1;
    } else {
        return sl_xl_fail(c, "unknown message role");
    }
    if (rc) return rc;
    r->nmsgs++;
    return 0;
}

static int decode_tools(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int tools = sl_xl_get(d, 0, "tools");
    if (!sl_xl_is(d, tools, SL_JSON_ARRAY)) return 0;
    r->tools = sl_arena_calloc(c->a, (d->toks[tools].count + 1) * sizeof *r->tools);
    if (!r->tools) return SL_ENOMEM;
    for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
        sl_str type;
        if (sl_xl_str(d, e, "type", c->a, &type) && !sl_str_eq_lit(type, "function"))
            return sl_xl_fail(c, "only function tools can be translated to this provider");
        int fn = sl_xl_get(d, e, "function");
        sl_ir_tool *t = &r->tools[r->ntools];
        if (!sl_xl_str(d, fn, "name", c->a, &t->name)) return sl_xl_fail(c, "tool without function.name");
        sl_xl_str(d, fn, "description", c->a, &t->description);
        int params = sl_xl_get(d, fn, "parameters");
        if (sl_xl_is(d, params, SL_JSON_OBJECT)) t->schema = sl_json_raw(d, params);
        r->ntools++;
    }
    int tc = sl_xl_get(d, 0, "tool_choice");
    sl_str s;
    if (sl_xl_tok_str(d, tc, c->a, &s)) {
        r->tool_choice = sl_str_eq_lit(s, "none")       ? SL_IR_TC_NONE
                         : sl_str_eq_lit(s, "required") ? SL_IR_TC_REQUIRED
                                                        : SL_IR_TC_AUTO;
    } else if (sl_xl_str(d, sl_xl_get(d, tc, "function"), "name", c->a, &r->tool_choice_name)) {
        r->tool_choice = SL_IR_TC_TOOL;
    }
    int par = sl_xl_get(d, 0, "parallel_tool_calls");
    if (par >= 0) r->parallel_tools = sl_json_bool(d, par, true) ? 1 : 0;
    return 0;
}

static int decode_params(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    r->has_max_tokens = sl_xl_int(d, 0, "max_completion_tokens", &r->max_tokens) ||
                        sl_xl_int(d, 0, "max_tokens", &r->max_tokens);
    r->has_temperature = sl_xl_num(d, 0, "temperature", &r->temperature);
    r->has_top_p = sl_xl_num(d, 0, "top_p", &r->top_p);
    int64_t n = 1;
    if (sl_xl_int(d, 0, "n", &n) && n != 1) return sl_xl_fail(c, "n other than 1 cannot be translated");
    int stop = sl_xl_get(d, 0, "stop");
    if (sl_xl_is(d, stop, SL_JSON_STRING)) {
        r->stop = sl_arena_alloc(c->a, sizeof *r->stop);
        if (!r->stop || !sl_xl_tok_str(d, stop, c->a, &r->stop[0])) return SL_ENOMEM;
        r->nstop = 1;
    } else if (sl_xl_is(d, stop, SL_JSON_ARRAY)) {
        r->stop = sl_arena_alloc(c->a, (d->toks[stop].count + 1) * sizeof *r->stop);
        if (!r->stop) return SL_ENOMEM;
        for (int e = sl_json_first(d, stop); e >= 0; e = sl_json_next(d, e))
            if (sl_xl_tok_str(d, e, c->a, &r->stop[r->nstop])) r->nstop++;
    }
    r->stream = sl_json_bool(d, sl_xl_get(d, 0, "stream"), false);
    r->include_usage = sl_json_bool(d, sl_xl_get(d, sl_xl_get(d, 0, "stream_options"), "include_usage"), false);
    sl_xl_str(d, 0, "user", c->a, &r->user);
    int rf = sl_xl_get(d, 0, "response_format");
    sl_str rft;
    if (sl_xl_str(d, rf, "type", c->a, &rft) && !sl_str_eq_lit(rft, "text")) {
        r->json_mode = true;
        int schema = sl_xl_get(d, sl_xl_get(d, rf, "json_schema"), "schema");
        if (sl_xl_is(d, schema, SL_JSON_OBJECT)) r->json_schema = sl_json_raw(d, schema);
    }
    return 0;
}

int sl_oai_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    if (!sl_xl_is(d, 0, SL_JSON_OBJECT)) return sl_xl_fail(c, "request body must be a JSON object");
    sl_xl_str(d, 0, "model", c->a, &r->model);
    int msgs = sl_xl_get(d, 0, "messages");
    if (!sl_xl_is(d, msgs, SL_JSON_ARRAY)) return sl_xl_fail(c, "messages must be an array");
    uint32_t n = d->toks[msgs].count, nsys = 0;
    for (int e = sl_json_first(d, msgs); e >= 0; e = sl_json_next(d, e)) nsys += (uint32_t)count_parts(d, e);
    r->msgs = sl_arena_calloc(c->a, (n + 1) * sizeof *r->msgs);
    r->system = sl_arena_calloc(c->a, (nsys + 1) * sizeof *r->system);
    if (!r->msgs || !r->system) return SL_ENOMEM;
    for (int e = sl_json_first(d, msgs); e >= 0; e = sl_json_next(d, e)) {
        if (!sl_xl_is(d, e, SL_JSON_OBJECT)) return sl_xl_fail(c, "each message must be an object");
        int rc = decode_message(d, e, c, r);
        if (rc) return rc;
    }
    int rc = decode_tools(d, c, r);
    return rc ? rc : decode_params(d, c, r);
}

static void write_image_url(sl_jw *w, const sl_ir_part *p, sl_arena *a)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "image_url");
    sl_jw_key(w, "image_url");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "url");
    if (p->data.n) {
        sl_str v[4] = {SL_STR("data:"), p->mime.n ? p->mime : SL_STR("image/png"), SL_STR(";base64,"), p->data};
        sl_str url = sl_xl_join(a, v, 4, SL_STR(""));
        if (!url.p) w->err = SL_ENOMEM;
        sl_jw_str(w, url);
    } else {
        sl_jw_str(w, p->url);
    }
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

static void write_user(sl_jw *w, const sl_ir_msg *m, sl_arena *a)
{
    uint32_t other = 0, ntext = 0;
    for (uint32_t i = 0; i < m->nparts; i++) {
        const sl_ir_part *p = &m->parts[i];
        if (p->kind != SL_IR_TOOL_RESULT) {
            other++;
            ntext += p->kind == SL_IR_TEXT;
            continue;
        }
        /* Tool results become "tool" messages, which must directly follow the assistant's calls. */
        sl_jw_obj_begin(w);
        sl_jw_key(w, "role");
        sl_jw_cstr(w, "tool");
        sl_jw_key(w, "tool_call_id");
        sl_jw_str(w, p->id);
        sl_jw_key(w, "content");
        sl_jw_str(w, p->text);
        sl_jw_obj_end(w);
    }
    if (!other) return;
    sl_jw_obj_begin(w);
    sl_jw_key(w, "role");
    sl_jw_cstr(w, "user");
    sl_jw_key(w, "content");
    if (ntext == other) {
        sl_str t = sl_xl_msg_text(a, m, SL_STR("\n"));
        if (!t.p) w->err = SL_ENOMEM;
        sl_jw_str(w, t);
    } else {
        sl_jw_arr_begin(w);
        for (uint32_t i = 0; i < m->nparts; i++) {
            const sl_ir_part *p = &m->parts[i];
            if (p->kind == SL_IR_TEXT) {
                sl_jw_obj_begin(w);
                sl_jw_key(w, "type");
                sl_jw_cstr(w, "text");
                sl_jw_key(w, "text");
                sl_jw_str(w, p->text);
                sl_jw_obj_end(w);
            } else if (p->kind == SL_IR_IMAGE) {
                write_image_url(w, p, a);
            }
        }
        sl_jw_arr_end(w);
    }
    sl_jw_obj_end(w);
}

static void write_tool_call(sl_jw *w, const sl_ir_part *p, int index)
{
    sl_jw_obj_begin(w);
    if (index >= 0) {
        sl_jw_key(w, "index");
        sl_jw_int(w, index);
    }
    sl_jw_key(w, "id");
    sl_jw_str(w, p->id);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "function");
    sl_jw_key(w, "function");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "name");
    sl_jw_str(w, p->name);
    sl_jw_key(w, "arguments");
    sl_jw_str(w, p->args);
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

/* The assistant message object shared by requests (history) and responses. */
static void write_assistant(sl_jw *w, const sl_ir_part *parts, uint32_t nparts, sl_arena *a)
{
    sl_ir_msg m = {SL_IR_ASSISTANT, (sl_ir_part *)parts, nparts};
    uint32_t ncalls = 0, ntext = 0;
    for (uint32_t i = 0; i < nparts; i++) {
        ncalls += parts[i].kind == SL_IR_TOOL_CALL;
        ntext += parts[i].kind == SL_IR_TEXT;
    }
    sl_jw_obj_begin(w);
    sl_jw_key(w, "role");
    sl_jw_cstr(w, "assistant");
    sl_jw_key(w, "content");
    if (ntext) {
        sl_str t = sl_xl_msg_text(a, &m, SL_STR(""));
        if (!t.p) w->err = SL_ENOMEM;
        sl_jw_str(w, t);
    } else {
        sl_jw_null(w);
    }
    if (ncalls) {
        sl_jw_key(w, "tool_calls");
        sl_jw_arr_begin(w);
        for (uint32_t i = 0; i < nparts; i++)
            if (parts[i].kind == SL_IR_TOOL_CALL) write_tool_call(w, &parts[i], -1);
        sl_jw_arr_end(w);
    }
    sl_jw_obj_end(w);
}

static void write_tools(sl_jw *w, const sl_ir_req *r, sl_arena *a)
{
    sl_jw_key(w, "tools");
    sl_jw_arr_begin(w);
    for (uint32_t i = 0; i < r->ntools; i++) {
        const sl_ir_tool *t = &r->tools[i];
        sl_jw_obj_begin(w);
        sl_jw_key(w, "type");
        sl_jw_cstr(w, "function");
        sl_jw_key(w, "function");
        sl_jw_obj_begin(w);
        sl_jw_key(w, "name");
        sl_jw_str(w, t->name);
        if (t->description.n) {
            sl_jw_key(w, "description");
            sl_jw_str(w, t->description);
        }
        sl_jw_key(w, "parameters");
        sl_xl_write_schema(w, t, a);
        sl_jw_obj_end(w);
        sl_jw_obj_end(w);
    }
    sl_jw_arr_end(w);
    if (r->tool_choice != SL_IR_TC_UNSET) {
        sl_jw_key(w, "tool_choice");
        if (r->tool_choice == SL_IR_TC_TOOL) {
            sl_jw_obj_begin(w);
            sl_jw_key(w, "type");
            sl_jw_cstr(w, "function");
            sl_jw_key(w, "function");
            sl_jw_obj_begin(w);
            sl_jw_key(w, "name");
            sl_jw_str(w, r->tool_choice_name);
            sl_jw_obj_end(w);
            sl_jw_obj_end(w);
        } else {
            sl_jw_cstr(w, r->tool_choice == SL_IR_TC_NONE       ? "none"
                          : r->tool_choice == SL_IR_TC_REQUIRED ? "required"
                                                                : "auto");
        }
    }
    if (r->parallel_tools >= 0) {
        sl_jw_key(w, "parallel_tool_calls");
        sl_jw_bool(w, r->parallel_tools == 1);
    }
}

static void write_params(sl_jw *w, const sl_ir_req *r, const sl_xl_ctx *c)
{
    if (r->has_max_tokens) {
        sl_jw_key(w, c->ro && c->ro->openai_max_completion_tokens ? "max_completion_tokens" : "max_tokens");
        sl_jw_int(w, r->max_tokens);
    }
    if (r->has_temperature) sl_jw_key(w, "temperature"), sl_jw_double(w, r->temperature);
    if (r->has_top_p) sl_jw_key(w, "top_p"), sl_jw_double(w, r->top_p);
    if (r->nstop) {
        sl_jw_key(w, "stop");
        sl_jw_arr_begin(w);
        for (uint32_t i = 0; i < r->nstop; i++) sl_jw_str(w, r->stop[i]);
        sl_jw_arr_end(w);
    }
    if (r->stream) {
        sl_jw_key(w, "stream");
        sl_jw_bool(w, true);
        sl_jw_key(w, "stream_options");
        sl_jw_raw(w, SL_STR("{\"include_usage\":true}"));
    }
    if (r->user.n) sl_jw_key(w, "user"), sl_jw_str(w, r->user);
    if (r->json_mode) {
        sl_jw_key(w, "response_format");
        if (r->json_schema.n) {
            sl_jw_obj_begin(w);
            sl_jw_key(w, "type");
            sl_jw_cstr(w, "json_schema");
            sl_jw_key(w, "json_schema");
            sl_jw_obj_begin(w);
            sl_jw_key(w, "name");
            sl_jw_cstr(w, "response");
            sl_jw_key(w, "schema");
            sl_jw_raw(w, r->json_schema);
            sl_jw_obj_end(w);
            sl_jw_obj_end(w);
        } else {
            sl_jw_raw(w, SL_STR("{\"type\":\"json_object\"}"));
        }
    }
}

int sl_oai_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "model");
    sl_jw_str(&w, r->model);
    sl_jw_key(&w, "messages");
    sl_jw_arr_begin(&w);
    if (r->nsystem) {
        sl_str sys = sl_xl_join(c->a, r->system, r->nsystem, SL_STR("\n\n"));
        if (!sys.p) return SL_ENOMEM;
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "role");
        sl_jw_cstr(&w, "system");
        sl_jw_key(&w, "content");
        sl_jw_str(&w, sys);
        sl_jw_obj_end(&w);
    }
    for (uint32_t i = 0; i < r->nmsgs; i++) {
        const sl_ir_msg *m = &r->msgs[i];
        if (m->role == SL_IR_USER)
            write_user(&w, m, c->a);
        else if (m->nparts)
            write_assistant(&w, m->parts, m->nparts, c->a);
    }
    sl_jw_arr_end(&w);
    if (r->ntools) write_tools(&w, r, c->a);
    write_params(&w, r, c);
    sl_jw_obj_end(&w);
    return w.err;
}

/* --------------------------------------------------------------- responses */

/*
 * The usage members the decoder reads, found in one walk over the object
 * (it runs on every answer); the last of duplicate keys wins, as with
 * sl_json_obj_get.
 */
enum { U_PROMPT, U_COMPLETION, U_PROMPT_DET, U_CACHE_HIT, U_COMPLETION_DET, U_INPUT, U_OUTPUT, U_INPUT_DET, U_OUTPUT_DET, U_N };
static const struct {
    const char *name;
    size_t n;
} usage_keys[U_N] = {
#define K(s) {s, sizeof(s) - 1}
    [U_PROMPT] = K("prompt_tokens"),
    [U_COMPLETION] = K("completion_tokens"),
    [U_PROMPT_DET] = K("prompt_tokens_details"),
    [U_CACHE_HIT] = K("prompt_cache_hit_tokens"),
    [U_COMPLETION_DET] = K("completion_tokens_details"),
    [U_INPUT] = K("input_tokens"),
    [U_OUTPUT] = K("output_tokens"),
    [U_INPUT_DET] = K("input_tokens_details"),
    [U_OUTPUT_DET] = K("output_tokens_details"),
#undef K
};

static void usage_members(const sl_json_doc *d, int u, int at[U_N])
{
    for (int i = 0; i < U_N; i++) at[i] = -1;
    uint32_t k = (uint32_t)u + 1;
    for (uint32_t m = 0; m < d->toks[u].count; m++, k = d->toks[k + 1].next) {
        const sl_json_tok *t = &d->toks[k];
        size_t n = t->end - t->start - 2;
        for (int i = 0; i < U_N; i++) {
            bool eq = t->has_escape ? sl_json_str_eq(d, (int)k, usage_keys[i].name)
                                    : n == usage_keys[i].n && memcmp(d->src + t->start + 1, usage_keys[i].name, n) == 0;
            if (eq) {
                at[i] = (int)k + 1;
                break;
            }
        }
    }
}

void sl_oai_usage_decode(const sl_json_doc *d, int u, sl_usage *out)
{
    if (!sl_xl_is(d, u, SL_JSON_OBJECT)) return;
    memset(out, 0, sizeof *out);
    out->present = true;
    int at[U_N];
    usage_members(d, u, at);
    if (!sl_xl_tok_int(d, at[U_PROMPT], &out->input_tokens)) {
        /* The Responses API (passed through, never translated) spells them input/output. */
        sl_xl_tok_int(d, at[U_INPUT], &out->input_tokens);
        sl_xl_tok_int(d, at[U_OUTPUT], &out->output_tokens);
        sl_xl_int(d, at[U_INPUT_DET], "cached_tokens", &out->cached_tokens);
        sl_xl_int(d, at[U_OUTPUT_DET], "reasoning_tokens", &out->reasoning_tokens);
        return;
    }
    sl_xl_tok_int(d, at[U_COMPLETION], &out->output_tokens);
    if (!sl_xl_int(d, at[U_PROMPT_DET], "cached_tokens", &out->cached_tokens))
        sl_xl_tok_int(d, at[U_CACHE_HIT], &out->cached_tokens); /* DeepSeek */
    sl_xl_int(d, at[U_COMPLETION_DET], "reasoning_tokens", &out->reasoning_tokens);
}

void sl_oai_usage_encode(sl_jw *w, const sl_usage *u)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "prompt_tokens");
    sl_jw_int(w, u->input_tokens);
    sl_jw_key(w, "completion_tokens");
    sl_jw_int(w, u->output_tokens);
    sl_jw_key(w, "total_tokens");
    sl_jw_int(w, u->input_tokens + u->output_tokens);
    sl_jw_key(w, "prompt_tokens_details");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "cached_tokens");
    sl_jw_int(w, u->cached_tokens);
    sl_jw_obj_end(w);
    sl_jw_key(w, "completion_tokens_details");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "reasoning_tokens");
    sl_jw_int(w, u->reasoning_tokens);
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
}

int sl_oai_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r)
{
    int choices = sl_xl_get(d, 0, "choices");
    if (!sl_xl_is(d, choices, SL_JSON_ARRAY)) return SL_EPARSE;
    sl_xl_str(d, 0, "id", c->a, &r->id);
    sl_xl_str(d, 0, "model", c->a, &r->model);
    sl_oai_usage_decode(d, sl_xl_get(d, 0, "usage"), &r->usage);
    int ch = sl_json_first(d, choices);
    if (ch < 0) return 0;
    sl_str fr;
    if (sl_xl_str(d, ch, "finish_reason", c->a, &fr)) r->finish = sl_finish_parse(SL_PROTO_OPENAI, fr);
    int msg = sl_xl_get(d, ch, "message");
    sl_ir_msg m = {0};
    m.parts = sl_arena_calloc(c->a, (size_t)count_parts(d, msg) * sizeof *m.parts);
    if (!m.parts) return SL_ENOMEM;
    int rc = content_parts(d, sl_xl_get(d, msg, "content"), c, &m, false);
    if (rc == SL_EINVAL) return SL_EPARSE;
    if (rc) return rc;
    sl_ir_part *p = &m.parts[m.nparts];
    if (m.nparts == 0 && sl_xl_str(d, msg, "refusal", c->a, &p->text) && p->text.n) p->kind = SL_IR_TEXT, m.nparts++;
    int tc = sl_xl_get(d, msg, "tool_calls");
    if (sl_xl_is(d, tc, SL_JSON_ARRAY) && (rc = tool_calls(d, tc, c, &m)) != 0) return rc == SL_EINVAL ? SL_EPARSE : rc;
    for (uint32_t i = 0; i < m.nparts; i++)
        if (m.parts[i].kind == SL_IR_TOOL_CALL && m.parts[i].id.n == 0) {
            m.parts[i].id = sl_xl_new_call_id(c, c->po ? c->po->id : SL_STR_NULL);
            if (!m.parts[i].id.p) return SL_ENOMEM;
        }
    r->parts = m.parts;
    r->nparts = m.nparts;
    return 0;
}

int sl_oai_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "id");
    sl_jw_str(&w, r->id);
    sl_jw_key(&w, "object");
    sl_jw_cstr(&w, "chat.completion");
    sl_jw_key(&w, "created");
    sl_jw_int(&w, c->po->created);
    sl_jw_key(&w, "model");
    sl_jw_str(&w, r->model);
    sl_jw_key(&w, "choices");
    sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "index");
    sl_jw_int(&w, 0);
    sl_jw_key(&w, "message");
    write_assistant(&w, r->parts, r->nparts, c->a);
    sl_jw_key(&w, "logprobs");
    sl_jw_null(&w);
    sl_jw_key(&w, "finish_reason");
    sl_jw_cstr(&w, sl_finish_name(SL_PROTO_OPENAI, r->finish ? r->finish : SL_FINISH_STOP));
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    if (r->usage.present) {
        sl_jw_key(&w, "usage");
        sl_oai_usage_encode(&w, &r->usage);
    }
    sl_jw_obj_end(&w);
    return w.err;
}

/* ----------------------------------------------------------------- streams */

static int start_tool(sl_xlat_stream *s, uint32_t idx, sl_str id, sl_str name, sl_buf *out)
{
    s->dec_seen[idx] = 1;
    s->dec_tools++;
    sl_ir_ev ev = {.kind = SL_EV_TOOL_START, .tool = idx, .id = id, .name = name};
    return sl_xl_emit(s, &ev, out);
}

static int stream_tool_deltas(sl_xlat_stream *s, const sl_json_doc *d, int arr, sl_buf *out)
{
    uint32_t pos = 0;
    for (int e = sl_json_first(d, arr); e >= 0; e = sl_json_next(d, e), pos++) {
        int64_t idx = pos;
        sl_xl_int(d, e, "index", &idx);
        if (idx < 0 || idx >= SL_XL_MAX_TOOLS) return SL_ELIMIT;
        int fn = sl_xl_get(d, e, "function");
        sl_str id, name, args;
        sl_xl_str(d, e, "id", &s->arena, &id);
        sl_xl_str(d, fn, "name", &s->arena, &name);
        sl_xl_str(d, fn, "arguments", &s->arena, &args);
        int rc = 0;
        if (!s->dec_seen[idx]) {
            if (!id.n) {
                sl_xl_ctx c = {.a = &s->arena, .next_call_id = (uint32_t)idx};
                id = sl_xl_new_call_id(&c, sl_str_from_cstr(s->id_hint));
                if (!id.p) return SL_ENOMEM;
            }
            rc = start_tool(s, (uint32_t)idx, id, name, out);
        }
        if (!rc && args.n) {
            sl_ir_ev ev = {.kind = SL_EV_TOOL_ARGS, .tool = (uint32_t)idx, .text = args};
            rc = sl_xl_emit(s, &ev, out);
        }
        if (rc) return rc;
    }
    return 0;
}

static int stream_choice(sl_xlat_stream *s, const sl_json_doc *d, int ch, sl_buf *out)
{
    int delta = sl_xl_get(d, ch, "delta"), rc = 0;
    sl_str text, fr;
    if (sl_xl_str(d, delta, "content", &s->arena, &text) && text.n) {
        sl_ir_ev ev = {.kind = SL_EV_TEXT, .text = text};
        rc = sl_xl_emit(s, &ev, out);
    }
    int tc = sl_xl_get(d, delta, "tool_calls");
    if (!rc && sl_xl_is(d, tc, SL_JSON_ARRAY)) rc = stream_tool_deltas(s, d, tc, out);
    if (!rc && sl_xl_str(d, ch, "finish_reason", &s->arena, &fr)) {
        sl_ir_ev ev = {.kind = SL_EV_FINISH, .finish = sl_finish_parse(SL_PROTO_OPENAI, fr)};
        rc = sl_xl_emit(s, &ev, out);
    }
    return rc;
}

/* Pass-through for a caller that did not ask for usage: drop or trim what carries it. */
static int strip_usage(sl_xlat_stream *s, const sl_json_doc *d, int usage, int choices)
{
    if (!sl_xl_is(d, choices, SL_JSON_ARRAY) || d->toks[choices].count == 0) {
        s->drop_event = true;
        return 0;
    }
    sl_json_edit e;
    sl_buf b;
    sl_buf_init(&b, 0);
    int rc = sl_json_edit_remove_member(d, 0, usage - 1, &e);
    if (!rc) rc = sl_json_splice(d->src, d->len, &e, 1, &b);
    if (!rc) s->replace_event = sl_arena_str(&s->arena, sl_buf_str(&b));
    sl_buf_free(&b);
    if (!rc && !s->replace_event.p) rc = SL_ENOMEM;
    return rc;
}

int sl_oai_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out)
{
    SL_UNUSED(event);
    sl_str t = sl_str_trim(data);
    if (sl_str_eq_lit(t, "[DONE]")) {
        sl_ir_ev ev = {.kind = SL_EV_END};
        return sl_xl_emit(s, &ev, out);
    }
    sl_json_doc doc;
    if (sl_json_parse(&doc, data.p, data.n, &s->arena, NULL, NULL) != 0 || !sl_xl_is(&doc, 0, SL_JSON_OBJECT))
        return SL_EPARSE;
    const sl_json_doc *d = &doc;
    int err = sl_xl_get(d, 0, "error");
    if (sl_xl_is(d, err, SL_JSON_OBJECT)) {
        sl_ir_ev ev = {.kind = SL_EV_ERROR, .status = 500};
        sl_str type;
        sl_xl_str(d, err, "message", &s->arena, &ev.text);
        if (sl_xl_str(d, err, "type", &s->arena, &type) && sl_xl_status_from_type(type))
            ev.status = sl_xl_status_from_type(type);
        return sl_xl_emit(s, &ev, out);
    }
    int rc = 0;
    if (!s->up_model) sl_xl_note_model(s, d, 0, "model");
    if (!s->dec_started) {
        s->dec_started = true;
        sl_ir_ev ev = {.kind = SL_EV_START};
        sl_xl_str(d, 0, "id", &s->arena, &ev.id);
        rc = sl_xl_emit(s, &ev, out);
    }
    int choices = sl_xl_get(d, 0, "choices");
    int ch = sl_xl_is(d, choices, SL_JSON_ARRAY) ? sl_json_first(d, choices) : -1;
    if (!rc && ch >= 0) rc = stream_choice(s, d, ch, out);
    int usage = sl_xl_get(d, 0, "usage");
    if (!rc && sl_xl_is(d, usage, SL_JSON_OBJECT)) {
        sl_oai_usage_decode(d, usage, &s->usage);
        sl_ir_ev ev = {.kind = SL_EV_USAGE};
        rc = sl_xl_emit(s, &ev, out);
        if (!rc && s->passthrough && !s->wants_usage) rc = strip_usage(s, d, usage, choices);
    }
    return rc;
}

static void chunk_begin(sl_xlat_stream *s, sl_jw *w)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "id");
    sl_jw_cstr(w, s->id);
    sl_jw_key(w, "object");
    sl_jw_cstr(w, "chat.completion.chunk");
    sl_jw_key(w, "created");
    sl_jw_int(w, s->created);
    sl_jw_key(w, "model");
    sl_jw_cstr(w, s->model);
    sl_jw_key(w, "choices");
}

/* One chunk: choices[0].delta is written by the caller between begin and end. */
static void delta_begin(sl_xlat_stream *s, sl_jw *w)
{
    chunk_begin(s, w);
    sl_jw_arr_begin(w);
    sl_jw_obj_begin(w);
    sl_jw_key(w, "index");
    sl_jw_int(w, 0);
    sl_jw_key(w, "delta");
    sl_jw_obj_begin(w);
}

static int delta_end(sl_jw *w, sl_buf *out, const char *finish)
{
    sl_jw_obj_end(w);
    sl_jw_key(w, "finish_reason");
    if (finish)
        sl_jw_cstr(w, finish);
    else
        sl_jw_null(w);
    sl_jw_obj_end(w);
    sl_jw_arr_end(w);
    sl_jw_obj_end(w);
    return sl_xl_sse_finish(out, w);
}

static int ensure_started(sl_xlat_stream *s, sl_buf *out)
{
    if (s->enc_started) return 0;
    s->enc_started = true;
    sl_jw w;
    int rc = sl_xl_sse_begin(out, NULL);
    if (rc) return rc;
    sl_jw_init(&w, out);
    delta_begin(s, &w);
    sl_jw_key(&w, "role");
    sl_jw_cstr(&w, "assistant");
    sl_jw_key(&w, "content");
    sl_jw_cstr(&w, "");
    return delta_end(&w, out, NULL);
}

static int enc_tool(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    sl_jw w;
    int rc = sl_xl_sse_begin(out, NULL);
    if (rc) return rc;
    sl_jw_init(&w, out);
    delta_begin(s, &w);
    sl_jw_key(&w, "tool_calls");
    sl_jw_arr_begin(&w);
    if (ev->kind == SL_EV_TOOL_START) {
        sl_ir_part p = {.id = ev->id, .name = ev->name, .args = SL_STR("")};
        write_tool_call(&w, &p, (int)ev->tool);
    } else {
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "index");
        sl_jw_int(&w, ev->tool);
        sl_jw_key(&w, "function");
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "arguments");
        sl_jw_str(&w, ev->text);
        sl_jw_obj_end(&w);
        sl_jw_obj_end(&w);
    }
    sl_jw_arr_end(&w);
    return delta_end(&w, out, NULL);
}

static int enc_finish(sl_xlat_stream *s, sl_finish f, sl_buf *out)
{
    if (s->finish_sent) return 0;
    s->finish_sent = true;
    sl_jw w;
    int rc = sl_xl_sse_begin(out, NULL);
    if (rc) return rc;
    sl_jw_init(&w, out);
    delta_begin(s, &w);
    return delta_end(&w, out, sl_finish_name(SL_PROTO_OPENAI, f ? f : SL_FINISH_STOP));
}

static int enc_end(sl_xlat_stream *s, sl_buf *out)
{
    int rc = ensure_started(s, out);
    if (!rc) rc = enc_finish(s, s->finish, out);
    if (!rc && s->wants_usage && s->usage.present) {
        sl_jw w;
        rc = sl_xl_sse_begin(out, NULL);
        if (rc) return rc;
        sl_jw_init(&w, out);
        chunk_begin(s, &w);
        sl_jw_arr_begin(&w);
        sl_jw_arr_end(&w);
        sl_jw_key(&w, "usage");
        sl_oai_usage_encode(&w, &s->usage);
        sl_jw_obj_end(&w);
        rc = sl_xl_sse_finish(out, &w);
    }
    if (!rc) rc = sl_buf_append_cstr(out, "data: [DONE]\n\n");
    if (!rc) sl_xl_stream_mark_done(s);
    return rc;
}

int sl_oai_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    int rc;
    switch (ev->kind) {
    case SL_EV_START: return ensure_started(s, out);
    case SL_EV_TEXT:
        if ((rc = ensure_started(s, out)) != 0) return rc;
        sl_jw w;
        if ((rc = sl_xl_sse_begin(out, NULL)) != 0) return rc;
        sl_jw_init(&w, out);
        delta_begin(s, &w);
        sl_jw_key(&w, "content");
        sl_jw_str(&w, ev->text);
        return delta_end(&w, out, NULL);
    case SL_EV_TOOL_START:
    case SL_EV_TOOL_ARGS:
        if ((rc = ensure_started(s, out)) != 0) return rc;
        return enc_tool(s, ev, out);
    case SL_EV_FINISH:
        if ((rc = ensure_started(s, out)) != 0) return rc;
        return enc_finish(s, ev->finish, out);
    case SL_EV_USAGE: return 0;
    case SL_EV_END: return enc_end(s, out);
    case SL_EV_ERROR: break;
    }
    return 0; /* errors are written by translate.c in the caller's shape */
}
