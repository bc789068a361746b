/*
 * anthropic.c: the Anthropic Messages codec: request, response and stream
 * event decoders into the IR and encoders out of it (see translate.h for the
 * design, docs/translation.md for the mapping).
 */
#include "protocols/xlat_ir.h"

#define ANT_DEFAULT_MAX_TOKENS 4096

/* ---------------------------------------------------------------- requests */

static int image_block(const sl_json_doc *d, int b, sl_xl_ctx *c, sl_ir_part *p)
{
    int src = sl_xl_get(d, b, "source");
    sl_str type;
    if (!sl_xl_str(d, src, "type", c->a, &type)) return sl_xl_fail(c, "image block without a source");
    p->kind = SL_IR_IMAGE;
    if (sl_str_eq_lit(type, "base64")) {
        sl_xl_str(d, src, "media_type", c->a, &p->mime);
        if (!sl_xl_str(d, src, "data", c->a, &p->data)) return sl_xl_fail(c, "image source without data");
    } else if (sl_str_eq_lit(type, "url")) {
        if (!sl_xl_str(d, src, "url", c->a, &p->url)) return sl_xl_fail(c, "image source without url");
    } else {
        return sl_xl_fail(c, "image source type not supported for translation");
    }
    return 0;
}

/* tool_result content: a string or text blocks (images inside results are dropped: see docs). */
static int tool_result_block(const sl_json_doc *d, int b, sl_xl_ctx *c, sl_ir_part *p)
{
    p->kind = SL_IR_TOOL_RESULT;
    sl_xl_str(d, b, "tool_use_id", c->a, &p->id);
    p->is_error = sl_json_bool(d, sl_xl_get(d, b, "is_error"), false);
    int content = sl_xl_get(d, b, "content");
    if (sl_xl_tok_str(d, content, c->a, &p->text)) return 0;
    if (!sl_xl_is(d, content, SL_JSON_ARRAY)) {
        p->text = SL_STR("");
        return 0;
    }
    sl_ir_msg tmp = {0};
    tmp.parts = sl_arena_calloc(c->a, (d->toks[content].count + 1) * sizeof *tmp.parts);
    if (!tmp.parts) return SL_ENOMEM;
    for (int e = sl_json_first(d, content); e >= 0; e = sl_json_next(d, e)) {
        sl_ir_part *t = &tmp.parts[tmp.nparts];
        if (sl_xl_str(d, e, "text", c->a, &t->text)) t->kind = SL_IR_TEXT, tmp.nparts++;
    }
    p->text = sl_xl_msg_text(c->a, &tmp, SL_STR("\n"));
    return p->text.p ? 0 : SL_ENOMEM;
}

static int content_block(const sl_json_doc *d, int b, sl_xl_ctx *c, sl_ir_msg *m)
{
    sl_str type;
    if (!sl_xl_str(d, b, "type", c->a, &type)) return sl_xl_fail(c, "content block without a type");
    sl_ir_part *p = &m->parts[m->nparts];
    memset(p, 0, sizeof *p);
    int rc = 0;
    if (sl_str_eq_lit(type, "text")) {
        if (!sl_xl_str(d, b, "text", c->a, &p->text)) return sl_xl_fail(c, "text block without text");
        p->kind = SL_IR_TEXT;
        if (p->text.n == 0) return 0;
    } else if (sl_str_eq_lit(type, "image")) {
        rc = image_block(d, b, c, p);
    } else if (sl_str_eq_lit(type, "tool_use")) {
        p->kind = SL_IR_TOOL_CALL;
        sl_xl_str(d, b, "id", c->a, &p->id);
        if (!sl_xl_str(d, b, "name", c->a, &p->name)) return sl_xl_fail(c, "tool_use block without a name");
        int in = sl_xl_get(d, b, "input");
        p->args = sl_xl_is(d, in, SL_JSON_OBJECT) ? sl_json_raw(d, in) : SL_STR("{}");
    } else if (sl_str_eq_lit(type, "tool_result")) {
        rc = tool_result_block(d, b, c, p);
    } else if (sl_str_eq_lit(type, "thinking") || sl_str_eq_lit(type, "redacted_thinking")) {
        return 0; /* signed thinking is only meaningful to Anthropic */
    } else {
        return sl_xl_fail(c, "content block type not supported for translation to this provider");
    }
    if (!rc) m->nparts++;
    return rc;
}

static int decode_message(const sl_json_doc *d, int msg, sl_xl_ctx *c, sl_ir_msg *m)
{
    sl_str role;
    if (!sl_xl_str(d, msg, "role", c->a, &role)) return sl_xl_fail(c, "message without a role");
    if (sl_str_eq_lit(role, "user"))
        m->role = SL_IR_USER;
    else if (sl_str_eq_lit(role, "assistant"))
        m->role = SL_IR_ASSISTANT;
    else
        return sl_xl_fail(c, "message role must be user or assistant");
    int content = sl_xl_get(d, msg, "content");
    if (sl_xl_is(d, content, SL_JSON_STRING)) {
        m->parts = sl_arena_calloc(c->a, sizeof *m->parts);
        if (!m->parts || !sl_xl_tok_str(d, content, c->a, &m->parts[0].text)) return SL_ENOMEM;
        m->nparts = m->parts[0].text.n ? 1 : 0;
        return 0;
    }
    if (!sl_xl_is(d, content, SL_JSON_ARRAY)) return sl_xl_fail(c, "message content must be a string or an array");
    m->parts = sl_arena_calloc(c->a, (d->toks[content].count + 1) * sizeof *m->parts);
    if (!m->parts) return SL_ENOMEM;
    for (int b = sl_json_first(d, content); b >= 0; b = sl_json_next(d, b)) {
        int rc = content_block(d, b, c, m);
        if (rc) return rc;
    }
    return 0;
}

static int decode_system(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int sys = sl_xl_get(d, 0, "system");
    if (sys < 0) return 0;
    uint32_t n = sl_xl_is(d, sys, SL_JSON_ARRAY) ? d->toks[sys].count : 1;
    r->system = sl_arena_calloc(c->a, (n + 1) * sizeof *r->system);
    if (!r->system) return SL_ENOMEM;
    if (sl_xl_tok_str(d, sys, c->a, &r->system[0])) {
        r->nsystem = r->system[0].n ? 1 : 0;
        return 0;
    }
    if (!sl_xl_is(d, sys, SL_JSON_ARRAY)) return sl_xl_fail(c, "system must be a string or an array");
    for (int b = sl_json_first(d, sys); b >= 0; b = sl_json_next(d, b))
        if (sl_xl_str(d, b, "text", c->a, &r->system[r->nsystem]) && r->system[r->nsystem].n) r->nsystem++;
    return 0;
}

static int decode_tools(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    int tools = sl_xl_get(d, 0, "tools");
    if (sl_xl_is(d, tools, SL_JSON_ARRAY)) {
        r->tools = sl_arena_calloc(c->a, (d->toks[tools].count + 1) * sizeof *r->tools);
        if (!r->tools) return SL_ENOMEM;
        for (int e = sl_json_first(d, tools); e >= 0; e = sl_json_next(d, e)) {
            sl_ir_tool *t = &r->tools[r->ntools];
            sl_str type;
            if (sl_xl_str(d, e, "type", c->a, &type) && !sl_str_eq_lit(type, "custom"))
                return sl_xl_fail(c, "Anthropic server tools cannot be translated to this provider");
            if (!sl_xl_str(d, e, "name", c->a, &t->name)) return sl_xl_fail(c, "tool without a name");
            sl_xl_str(d, e, "description", c->a, &t->description);
            int schema = sl_xl_get(d, e, "input_schema");
            if (sl_xl_is(d, schema, SL_JSON_OBJECT)) t->schema = sl_json_raw(d, schema);
            r->ntools++;
        }
    }
    int tc = sl_xl_get(d, 0, "tool_choice");
    sl_str type;
    if (sl_xl_str(d, tc, "type", c->a, &type)) {
        if (sl_str_eq_lit(type, "any"))
            r->tool_choice = SL_IR_TC_REQUIRED;
        else if (sl_str_eq_lit(type, "none"))
            r->tool_choice = SL_IR_TC_NONE;
        else if (sl_str_eq_lit(type, "tool") && sl_xl_str(d, tc, "name", c->a, &r->tool_choice_name))
            r->tool_choice = SL_IR_TC_TOOL;
        else
            r->tool_choice = SL_IR_TC_AUTO;
        int dp = sl_xl_get(d, tc, "disable_parallel_tool_use");
        if (dp >= 0) r->parallel_tools = sl_json_bool(d, dp, false) ? 0 : 1;
    }
    return 0;
}

int sl_ant_decode_req(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_req *r)
{
    if (!sl_xl_is(d, 0, SL_JSON_OBJECT)) return sl_xl_fail(c, "request body must be a JSON object");
    sl_xl_str(d, 0, "model", c->a, &r->model);
    int msgs = sl_xl_get(d, 0, "messages");
    if (!sl_xl_is(d, msgs, SL_JSON_ARRAY)) return sl_xl_fail(c, "messages must be an array");
    r->msgs = sl_arena_calloc(c->a, (d->toks[msgs].count + 1) * sizeof *r->msgs);
    if (!r->msgs) return SL_ENOMEM;
    for (int e = sl_json_first(d, msgs); e >= 0; e = sl_json_next(d, e)) {
        int rc = decode_message(d, e, c, &r->msgs[r->nmsgs]);
        if (rc) return rc;
        r->nmsgs++;
    }
    int rc = decode_system(d, c, r);
    if (!rc) rc = decode_tools(d, c, r);
    if (rc) return rc;
    r->has_max_tokens = sl_xl_int(d, 0, "max_tokens", &r->max_tokens);
    r->has_temperature = sl_xl_num(d, 0, "temperature", &r->temperature);
    r->has_top_p = sl_xl_num(d, 0, "top_p", &r->top_p);
    r->has_top_k = sl_xl_int(d, 0, "top_k", &r->top_k);
    int stop = sl_xl_get(d, 0, "stop_sequences");
    if (sl_xl_is(d, stop, SL_JSON_ARRAY)) {
        r->stop = sl_arena_alloc(c->a, (d->toks[stop].count + 1) * sizeof *r->stop);
        if (!r->stop) return SL_ENOMEM;
        for (int e = sl_json_first(d, stop); e >= 0; e = sl_json_next(d, e))
            if (sl_xl_tok_str(d, e, c->a, &r->stop[r->nstop])) r->nstop++;
    }
    r->stream = sl_json_bool(d, sl_xl_get(d, 0, "stream"), false);
    r->include_usage = true; /* Anthropic streams always carry usage */
    sl_xl_str(d, sl_xl_get(d, 0, "metadata"), "user_id", c->a, &r->user);
    return 0;
}

/* Anthropic ids must match [A-Za-z0-9_-]+; OpenAI ones are free-form. */
static sl_str clean_id(sl_str id, sl_arena *a)
{
    size_t i = 0;
    while (i < id.n && ((id.p[i] >= 'a' && id.p[i] <= 'z') || (id.p[i] >= 'A' && id.p[i] <= 'Z') ||
                        (id.p[i] >= '0' && id.p[i] <= '9') || id.p[i] == '_' || id.p[i] == '-'))
        i++;
    if (i == id.n && id.n) return id;
    if (!id.n) return SL_STR("toolu_none");
    char *p = sl_arena_strndup(a, id.p, id.n);
    if (!p) return SL_STR_NULL;
    for (size_t k = i; k < id.n; k++)
        if (!((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') || (p[k] >= '0' && p[k] <= '9') ||
              p[k] == '-'))
            p[k] = '_';
    return (sl_str){p, id.n};
}

static void write_tool_use(sl_jw *w, const sl_ir_part *p, sl_arena *a)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "tool_use");
    sl_jw_key(w, "id");
    sl_jw_str(w, clean_id(p->id, a));
    sl_jw_key(w, "name");
    sl_jw_str(w, p->name);
    sl_jw_key(w, "input");
    sl_jw_raw(w, p->args.n ? p->args : SL_STR("{}"));
    sl_jw_obj_end(w);
}

static void write_text_block(sl_jw *w, sl_str text)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "text");
    sl_jw_key(w, "text");
    sl_jw_str(w, text);
    sl_jw_obj_end(w);
}

static int write_image(sl_jw *w, const sl_ir_part *p, sl_xl_ctx *c)
{
    bool pdf = sl_str_eq_lit(p->mime, "application/pdf");
    if (p->data.n && !pdf && !sl_str_starts_with(p->mime, SL_STR("image/")))
        return sl_xl_fail(c, "only images and PDFs can be sent to Anthropic");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, pdf ? "document" : "image");
    sl_jw_key(w, "source");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    if (p->data.n) {
        sl_jw_cstr(w, "base64");
        sl_jw_key(w, "media_type");
        sl_jw_str(w, p->mime);
        sl_jw_key(w, "data");
        sl_jw_str(w, p->data);
    } else {
        sl_jw_cstr(w, "url");
        sl_jw_key(w, "url");
        sl_jw_str(w, p->url);
    }
    sl_jw_obj_end(w);
    sl_jw_obj_end(w);
    return 0;
}

static void write_tool_result(sl_jw *w, const sl_ir_part *p, sl_arena *a)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, "tool_result");
    sl_jw_key(w, "tool_use_id");
    sl_jw_str(w, clean_id(p->id, a));
    sl_jw_key(w, "content");
    sl_jw_str(w, p->text);
    if (p->is_error) {
        sl_jw_key(w, "is_error");
        sl_jw_bool(w, true);
    }
    sl_jw_obj_end(w);
}

/* Writes the blocks of one part; pass 0 writes only tool results (they must lead a user message). */
static int write_part(sl_jw *w, const sl_ir_part *p, sl_ir_role role, int pass, sl_xl_ctx *c)
{
    if ((pass == 0) != (p->kind == SL_IR_TOOL_RESULT)) return 0;
    switch (p->kind) {
    case SL_IR_TEXT: write_text_block(w, p->text); return 0;
    case SL_IR_IMAGE: return role == SL_IR_USER ? write_image(w, p, c) : 0;
    case SL_IR_TOOL_CALL:
        if (role == SL_IR_ASSISTANT) write_tool_use(w, p, c->a);
        return 0;
    case SL_IR_TOOL_RESULT: write_tool_result(w, p, c->a); return 0;
    }
    return 0;
}

/* Consecutive IR messages with the same role become one Anthropic message (roles must alternate). */
static int write_messages(sl_jw *w, const sl_ir_req *r, sl_xl_ctx *c)
{
    sl_jw_key(w, "messages");
    sl_jw_arr_begin(w);
    for (uint32_t i = 0; i < r->nmsgs;) {
        uint32_t j = i, nparts = 0;
        while (j < r->nmsgs && r->msgs[j].role == r->msgs[i].role) nparts += r->msgs[j++].nparts;
        if (nparts) {
            sl_jw_obj_begin(w);
            sl_jw_key(w, "role");
            sl_jw_cstr(w, r->msgs[i].role == SL_IR_USER ? "user" : "assistant");
            sl_jw_key(w, "content");
            sl_jw_arr_begin(w);
            for (int pass = 0; pass < 2; pass++)
                for (uint32_t k = i; k < j; k++)
                    for (uint32_t q = 0; q < r->msgs[k].nparts; q++) {
                        int rc = write_part(w, &r->msgs[k].parts[q], r->msgs[k].role, pass, c);
                        if (rc) return rc;
                    }
            sl_jw_arr_end(w);
            sl_jw_obj_end(w);
        }
        i = j;
    }
    sl_jw_arr_end(w);
    return 0;
}

static void write_tools(sl_jw *w, const sl_ir_req *r, sl_arena *a)
{
    sl_jw_key(w, "tools");
    sl_jw_arr_begin(w);
    for (uint32_t i = 0; i < r->ntools; i++) {
        sl_jw_obj_begin(w);
        sl_jw_key(w, "name");
        sl_jw_str(w, r->tools[i].name);
        if (r->tools[i].description.n) {
            sl_jw_key(w, "description");
            sl_jw_str(w, r->tools[i].description);
        }
        sl_jw_key(w, "input_schema");
        sl_xl_write_schema(w, &r->tools[i], a);
        sl_jw_obj_end(w);
    }
    sl_jw_arr_end(w);
    if (r->tool_choice == SL_IR_TC_UNSET && r->parallel_tools != 0) return;
    sl_jw_key(w, "tool_choice");
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, r->tool_choice == SL_IR_TC_NONE       ? "none"
                  : r->tool_choice == SL_IR_TC_REQUIRED ? "any"
                  : r->tool_choice == SL_IR_TC_TOOL     ? "tool"
                                                        : "auto");
    if (r->tool_choice == SL_IR_TC_TOOL) {
        sl_jw_key(w, "name");
        sl_jw_str(w, r->tool_choice_name);
    }
    if (r->parallel_tools == 0 && r->tool_choice != SL_IR_TC_NONE) {
        sl_jw_key(w, "disable_parallel_tool_use");
        sl_jw_bool(w, true);
    }
    sl_jw_obj_end(w);
}

int sl_ant_encode_req(const sl_ir_req *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "model");
    sl_jw_str(&w, r->model);
    int64_t max = r->has_max_tokens                          ? r->max_tokens
                  : c->ro && c->ro->default_max_tokens       ? (int64_t)SL_MIN(c->ro->default_max_tokens, INT64_MAX)
                                                             : ANT_DEFAULT_MAX_TOKENS;
    sl_jw_key(&w, "max_tokens");
    sl_jw_int(&w, max);
    if (r->nsystem == 1) {
        sl_jw_key(&w, "system");
        sl_jw_str(&w, r->system[0]);
    } else if (r->nsystem > 1) {
        sl_jw_key(&w, "system");
        sl_jw_arr_begin(&w);
        for (uint32_t i = 0; i < r->nsystem; i++) write_text_block(&w, r->system[i]);
        sl_jw_arr_end(&w);
    }
    int rc = write_messages(&w, r, c);
    if (rc) return rc;
    if (r->ntools) write_tools(&w, r, c->a);
    if (r->has_temperature) /* Anthropic's range is 0..1, OpenAI's and Gemini's 0..2 */
        sl_jw_key(&w, "temperature"), sl_jw_double(&w, r->temperature > 1.0 ? 1.0 : r->temperature);
    if (r->has_top_p) sl_jw_key(&w, "top_p"), sl_jw_double(&w, r->top_p);
    if (r->has_top_k) sl_jw_key(&w, "top_k"), sl_jw_int(&w, r->top_k);
    if (r->nstop) {
        sl_jw_key(&w, "stop_sequences");
        sl_jw_arr_begin(&w);
        for (uint32_t i = 0; i < r->nstop; i++) sl_jw_str(&w, r->stop[i]);
        sl_jw_arr_end(&w);
    }
    if (r->stream) sl_jw_key(&w, "stream"), sl_jw_bool(&w, true);
    if (r->user.n) {
        sl_jw_key(&w, "metadata");
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "user_id");
        sl_jw_str(&w, r->user);
        sl_jw_obj_end(&w);
    }
    sl_jw_obj_end(&w);
    return w.err;
}

/* --------------------------------------------------------------- responses */

/* Anthropic's input_tokens excludes cache reads and writes; ours includes them. */
static void usage_fix(sl_usage *u, int64_t in, int64_t cread, int64_t cwrite)
{
    u->input_tokens = in + cread + cwrite;
    u->cached_tokens = cread;
    u->cache_write_tokens = cwrite;
}

void sl_ant_usage_decode(const sl_json_doc *d, int u, sl_usage *out)
{
    if (!sl_xl_is(d, u, SL_JSON_OBJECT)) return;
    int64_t in = 0, cr = 0, cw = 0;
    memset(out, 0, sizeof *out);
    out->present = true;
    sl_xl_int(d, u, "input_tokens", &in);
    sl_xl_int(d, u, "cache_read_input_tokens", &cr);
    sl_xl_int(d, u, "cache_creation_input_tokens", &cw);
    sl_xl_int(d, u, "output_tokens", &out->output_tokens);
    usage_fix(out, in, cr, cw);
}

void sl_ant_usage_encode(sl_jw *w, const sl_usage *u)
{
    int64_t in = u->input_tokens - u->cached_tokens - u->cache_write_tokens;
    sl_jw_obj_begin(w);
    sl_jw_key(w, "input_tokens");
    sl_jw_int(w, in > 0 ? in : 0);
    sl_jw_key(w, "cache_creation_input_tokens");
    sl_jw_int(w, u->cache_write_tokens);
    sl_jw_key(w, "cache_read_input_tokens");
    sl_jw_int(w, u->cached_tokens);
    sl_jw_key(w, "output_tokens");
    sl_jw_int(w, u->output_tokens);
    sl_jw_obj_end(w);
}

int sl_ant_decode_resp(const sl_json_doc *d, sl_xl_ctx *c, sl_ir_resp *r)
{
    int content = sl_xl_get(d, 0, "content");
    if (!sl_xl_is(d, content, SL_JSON_ARRAY)) return SL_EPARSE;
    sl_xl_str(d, 0, "id", c->a, &r->id);
    sl_xl_str(d, 0, "model", c->a, &r->model);
    sl_ant_usage_decode(d, sl_xl_get(d, 0, "usage"), &r->usage);
    sl_str sr;
    if (sl_xl_str(d, 0, "stop_reason", c->a, &sr)) r->finish = sl_finish_parse(SL_PROTO_ANTHROPIC, sr);
    sl_ir_msg m = {SL_IR_ASSISTANT, NULL, 0};
    m.parts = sl_arena_calloc(c->a, (d->toks[content].count + 1) * sizeof *m.parts);
    if (!m.parts) return SL_ENOMEM;
    for (int b = sl_json_first(d, content); b >= 0; b = sl_json_next(d, b)) {
        sl_str type;
        sl_xl_str(d, b, "type", c->a, &type);
        if (!sl_str_eq_lit(type, "text") && !sl_str_eq_lit(type, "tool_use")) continue; /* thinking etc. */
        int rc = content_block(d, b, c, &m);
        if (rc) return rc == SL_EINVAL ? SL_EPARSE : rc;
    }
    r->parts = m.parts;
    r->nparts = m.nparts;
    return 0;
}

int sl_ant_encode_resp(const sl_ir_resp *r, sl_xl_ctx *c, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "id");
    sl_jw_str(&w, r->id);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, "message");
    sl_jw_key(&w, "role");
    sl_jw_cstr(&w, "assistant");
    sl_jw_key(&w, "model");
    sl_jw_str(&w, r->model);
    sl_jw_key(&w, "content");
    sl_jw_arr_begin(&w);
    for (uint32_t i = 0; i < r->nparts; i++) {
        if (r->parts[i].kind == SL_IR_TEXT)
            write_text_block(&w, r->parts[i].text);
        else if (r->parts[i].kind == SL_IR_TOOL_CALL)
            write_tool_use(&w, &r->parts[i], c->a);
    }
    sl_jw_arr_end(&w);
    sl_jw_key(&w, "stop_reason");
    sl_jw_cstr(&w, sl_finish_name(SL_PROTO_ANTHROPIC, r->finish ? r->finish : SL_FINISH_STOP));
    sl_jw_key(&w, "stop_sequence");
    sl_jw_null(&w);
    sl_jw_key(&w, "usage");
    sl_ant_usage_encode(&w, &r->usage);
    sl_jw_obj_end(&w);
    return w.err;
}

/* ----------------------------------------------------------------- streams */

static void stream_usage(sl_xlat_stream *s, const sl_json_doc *d, int u)
{
    if (!sl_xl_is(d, u, SL_JSON_OBJECT)) return;
    s->usage.present = true;
    sl_xl_int(d, u, "input_tokens", &s->a_in);
    sl_xl_int(d, u, "cache_read_input_tokens", &s->a_cache_read);
    sl_xl_int(d, u, "cache_creation_input_tokens", &s->a_cache_write);
    sl_xl_int(d, u, "output_tokens", &s->usage.output_tokens);
    usage_fix(&s->usage, s->a_in, s->a_cache_read, s->a_cache_write);
}

static int dec_block_start(sl_xlat_stream *s, const sl_json_doc *d, sl_buf *out)
{
    int cb = sl_xl_get(d, 0, "content_block");
    sl_str type, text;
    sl_xl_str(d, cb, "type", &s->arena, &type);
    s->dec_cur_tool = -1;
    if (sl_str_eq_lit(type, "text")) {
        if (!sl_xl_str(d, cb, "text", &s->arena, &text) || !text.n) return 0;
        sl_ir_ev ev = {.kind = SL_EV_TEXT, .text = text};
        return sl_xl_emit(s, &ev, out);
    }
    if (!sl_str_eq_lit(type, "tool_use")) return 0;
    if (s->dec_tools >= SL_XL_MAX_TOOLS) return SL_ELIMIT;
    s->dec_cur_tool = (int)s->dec_tools++;
    sl_ir_ev ev = {.kind = SL_EV_TOOL_START, .tool = (uint32_t)s->dec_cur_tool};
    sl_xl_str(d, cb, "id", &s->arena, &ev.id);
    sl_xl_str(d, cb, "name", &s->arena, &ev.name);
    int rc = sl_xl_emit(s, &ev, out);
    int in = sl_xl_get(d, cb, "input");
    if (!rc && sl_xl_is(d, in, SL_JSON_OBJECT) && d->toks[in].count) { /* whole input up front */
        sl_ir_ev args = {.kind = SL_EV_TOOL_ARGS, .tool = ev.tool, .text = sl_json_raw(d, in)};
        rc = sl_xl_emit(s, &args, out);
    }
    return rc;
}

static int dec_block_delta(sl_xlat_stream *s, const sl_json_doc *d, sl_buf *out)
{
    int delta = sl_xl_get(d, 0, "delta");
    sl_str type;
    sl_xl_str(d, delta, "type", &s->arena, &type);
    sl_ir_ev ev = {.kind = SL_EV_TEXT};
    if (sl_str_eq_lit(type, "text_delta")) {
        sl_xl_str(d, delta, "text", &s->arena, &ev.text);
    } else if (sl_str_eq_lit(type, "input_json_delta") && s->dec_cur_tool >= 0) {
        ev.kind = SL_EV_TOOL_ARGS;
        ev.tool = (uint32_t)s->dec_cur_tool;
        sl_xl_str(d, delta, "partial_json", &s->arena, &ev.text);
    }
    return ev.text.n ? sl_xl_emit(s, &ev, out) : 0;
}

int sl_ant_stream_decode(sl_xlat_stream *s, sl_str event, sl_str data, sl_buf *out)
{
    sl_json_doc doc;
    if (sl_json_parse(&doc, data.p, data.n, &s->arena, NULL, NULL) != 0 || !sl_xl_is(&doc, 0, SL_JSON_OBJECT))
        return SL_EPARSE;
    const sl_json_doc *d = &doc;
    sl_str type;
    if (!sl_xl_str(d, 0, "type", &s->arena, &type)) type = event;
    int rc = 0;
    if (sl_str_eq_lit(type, "message_start")) {
        int msg = sl_xl_get(d, 0, "message");
        sl_xl_note_model(s, d, msg, "model");
        stream_usage(s, d, sl_xl_get(d, msg, "usage"));
        sl_ir_ev ev = {.kind = SL_EV_START};
        sl_xl_str(d, msg, "id", &s->arena, &ev.id);
        s->dec_started = true;
        rc = sl_xl_emit(s, &ev, out);
    } else if (sl_str_eq_lit(type, "content_block_start")) {
        rc = dec_block_start(s, d, out);
    } else if (sl_str_eq_lit(type, "content_block_delta")) {
        rc = dec_block_delta(s, d, out);
    } else if (sl_str_eq_lit(type, "content_block_stop")) {
        s->dec_cur_tool = -1;
    } else if (sl_str_eq_lit(type, "message_delta")) {
        sl_str sr;
        stream_usage(s, d, sl_xl_get(d, 0, "usage"));
        sl_ir_ev ev = {.kind = SL_EV_USAGE};
        rc = sl_xl_emit(s, &ev, out);
        if (!rc && sl_xl_str(d, sl_xl_get(d, 0, "delta"), "stop_reason", &s->arena, &sr)) {
            sl_ir_ev fin = {.kind = SL_EV_FINISH, .finish = sl_finish_parse(SL_PROTO_ANTHROPIC, sr)};
            rc = sl_xl_emit(s, &fin, out);
        }
    } else if (sl_str_eq_lit(type, "message_stop")) {
        sl_ir_ev ev = {.kind = SL_EV_END};
        rc = sl_xl_emit(s, &ev, out);
    } else if (sl_str_eq_lit(type, "error")) {
        int err = sl_xl_get(d, 0, "error");
        sl_ir_ev ev = {.kind = SL_EV_ERROR, .status = 500};
        sl_str et;
        sl_xl_str(d, err, "message", &s->arena, &ev.text);
        if (sl_xl_str(d, err, "type", &s->arena, &et) && sl_xl_status_from_type(et))
            ev.status = sl_xl_status_from_type(et);
        rc = sl_xl_emit(s, &ev, out);
    }
    return rc; /* ping and unknown events carry nothing to translate */
}

static int begin_event(sl_buf *out, const char *name, sl_jw *w)
{
    int rc = sl_xl_sse_begin(out, name);
    if (rc) return rc;
    sl_jw_init(w, out);
    sl_jw_obj_begin(w);
    sl_jw_key(w, "type");
    sl_jw_cstr(w, name);
    return 0;
}

static int end_event(sl_buf *out, sl_jw *w)
{
    sl_jw_obj_end(w);
    return sl_xl_sse_finish(out, w);
}

static int ensure_started(sl_xlat_stream *s, sl_buf *out)
{
    if (s->enc_started) return 0;
    s->enc_started = true;
    sl_jw w;
    int rc = begin_event(out, "message_start", &w);
    if (rc) return rc;
    sl_jw_key(&w, "message");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "id");
    sl_jw_cstr(&w, s->id);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, "message");
    sl_jw_key(&w, "role");
    sl_jw_cstr(&w, "assistant");
    sl_jw_key(&w, "model");
    sl_jw_cstr(&w, s->model);
    sl_jw_key(&w, "content");
    sl_jw_raw(&w, SL_STR("[]"));
    sl_jw_key(&w, "stop_reason");
    sl_jw_null(&w);
    sl_jw_key(&w, "stop_sequence");
    sl_jw_null(&w);
    sl_jw_key(&w, "usage");
    sl_ant_usage_encode(&w, &s->usage);
    sl_jw_obj_end(&w);
    rc = end_event(out, &w);
    if (!rc) rc = sl_buf_append_cstr(out, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    return rc;
}

static int close_block(sl_xlat_stream *s, sl_buf *out)
{
    if (s->enc_block < 0) return 0;
    sl_jw w;
    int rc = begin_event(out, "content_block_stop", &w);
    if (rc) return rc;
    sl_jw_key(&w, "index");
    sl_jw_int(&w, s->enc_block);
    s->enc_block = -1;
    return end_event(out, &w);
}

static int open_block(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    int rc = close_block(s, out);
    sl_jw w;
    if (!rc) rc = begin_event(out, "content_block_start", &w);
    if (rc) return rc;
    s->enc_block = s->enc_next_block++;
    s->enc_block_text = ev->kind == SL_EV_TEXT;
    sl_jw_key(&w, "index");
    sl_jw_int(&w, s->enc_block);
    sl_jw_key(&w, "content_block");
    if (s->enc_block_text) {
        sl_jw_raw(&w, SL_STR("{\"type\":\"text\",\"text\":\"\"}"));
    } else {
        s->tools[ev->tool].block = s->enc_block;
        sl_ir_part p = {.id = ev->id, .name = ev->name, .args = SL_STR("{}")};
        write_tool_use(&w, &p, &s->arena);
    }
    return end_event(out, &w);
}

static int block_delta(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    int block = s->enc_block;
    if (ev->kind == SL_EV_TOOL_ARGS) {
        block = s->tools[ev->tool].block;
        if (block < 0) { /* arguments for a call never started: start it without a name */
            sl_ir_ev start = {.kind = SL_EV_TOOL_START, .tool = ev->tool, .id = SL_STR("toolu_none")};
            int rc = open_block(s, &start, out);
            if (rc) return rc;
            block = s->enc_block;
        }
    } else if (block < 0 || !s->enc_block_text) {
        int rc = open_block(s, ev, out);
        if (rc) return rc;
        block = s->enc_block;
    }
    sl_jw w;
    int rc = begin_event(out, "content_block_delta", &w);
    if (rc) return rc;
    sl_jw_key(&w, "index");
    sl_jw_int(&w, block);
    sl_jw_key(&w, "delta");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type");
    sl_jw_cstr(&w, ev->kind == SL_EV_TEXT ? "text_delta" : "input_json_delta");
    sl_jw_key(&w, ev->kind == SL_EV_TEXT ? "text" : "partial_json");
    sl_jw_str(&w, ev->text);
    sl_jw_obj_end(&w);
    return end_event(out, &w);
}

static int enc_end(sl_xlat_stream *s, sl_buf *out)
{
    int rc = ensure_started(s, out);
    if (!rc) rc = close_block(s, out);
    sl_jw w;
    if (!rc) rc = begin_event(out, "message_delta", &w);
    if (rc) return rc;
    sl_jw_key(&w, "delta");
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "stop_reason");
    sl_jw_cstr(&w, sl_finish_name(SL_PROTO_ANTHROPIC, s->finish ? s->finish : SL_FINISH_STOP));
    sl_jw_key(&w, "stop_sequence");
    sl_jw_null(&w);
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "usage");
    sl_ant_usage_encode(&w, &s->usage);
    rc = end_event(out, &w);
    if (!rc) rc = begin_event(out, "message_stop", &w);
    if (!rc) rc = end_event(out, &w);
    if (!rc) sl_xl_stream_mark_done(s);
    return rc;
}

int sl_ant_stream_encode(sl_xlat_stream *s, const sl_ir_ev *ev, sl_buf *out)
{
    int rc = 0;
    if (ev->kind != SL_EV_USAGE && ev->kind != SL_EV_FINISH && ev->kind != SL_EV_ERROR) rc = ensure_started(s, out);
    if (rc) return rc;
    switch (ev->kind) {
    case SL_EV_TEXT:
    case SL_EV_TOOL_ARGS: return block_delta(s, ev, out);
    case SL_EV_TOOL_START: return open_block(s, ev, out);
    case SL_EV_END: return enc_end(s, out);
    default: return 0; /* finish and usage are written at the end, in message_delta */
    }
}
