/*
 * mcp_config.c: the `mcp` configuration section (SPEC §6): key tables for
 * servers, tools, arguments, upstream credentials and proxy upstreams, and
 * the checks and derived values computed once at load (input schemas, where
 * each argument goes, OpenAPI documents converted into tools).
 *
 * The key tables follow config_keys.h; they are documented in docs/mcp.md.
 */
#include <stdio.h>

#include "config/config_keys.h"
#include "json/json.h"
#include "mcp/mcp.h"
#include "mcp/mcp_int.h"

#define ARR(a) a, SL_ARRAY_LEN(a)
#define OFF(type, field) offsetof(type, field)

/* ---- YAML subtree -> JSON text (schemas written in the config) ----------- */

static bool plain_is_json_literal(sl_str v)
{
    if (sl_str_eq_lit(v, "true") || sl_str_eq_lit(v, "false") || sl_str_eq_lit(v, "null")) return true;
    sl_arena a;
    sl_arena_init(&a, 256, 1 << 20);
    sl_json_doc d;
    bool ok = v.n && sl_json_parse(&d, v.p, v.n, &a, NULL, NULL) == SL_OK && sl_json_type_of(&d, 0) == SL_JSON_NUMBER;
    sl_arena_free(&a);
    return ok;
}

void sl_mcp_ynode_to_json(const sl_ynode *n, sl_jw *w)
{
    if (!n) {
        sl_jw_null(w);
        return;
    }
    switch (n->kind) {
    case SL_YN_SCALAR:
        if (n->plain && (sl_yaml_is_null(n) && n->val.n)) sl_jw_null(w);
        else if (n->plain && plain_is_json_literal(n->val)) sl_jw_raw(w, n->val);
        else sl_jw_str(w, n->val);
        break;
    case SL_YN_SEQ:
        sl_jw_arr_begin(w);
        for (const sl_ynode *c = n->first; c; c = c->next) sl_mcp_ynode_to_json(c, w);
        sl_jw_arr_end(w);
        break;
    case SL_YN_MAP:
        sl_jw_obj_begin(w);
        for (const sl_ynode *c = n->first; c; c = c->next) {
            sl_jw_key_str(w, c->key->val);
            sl_mcp_ynode_to_json(c, w);
        }
        sl_jw_obj_end(w);
        break;
    }
}

static void parse_json_schema(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    char **field = (char **)((char *)base + k->offset);
    if (n->kind != SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a mapping (a JSON Schema)", ctx->path);
        return;
    }
    sl_buf b;
    sl_buf_init(&b, 1 << 20);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_mcp_ynode_to_json(n, &w);
    if (w.err) sl_cfg_error(ctx, n, "%s: schema too large", ctx->path);
    else *field = sl_cfg_strdup(ctx, sl_buf_str(&b));
    sl_buf_free(&b);
}

/* ---- key tables ------------------------------------------------------------ */

static const char *const kind_names[] = {"rest", "openapi", "proxy", NULL};
static const char *const in_names[] = {"auto", "path", "query", "header", "body", "cookie", NULL};
static const char *const auth_names[] = {"none", "bearer", "api_key", "basic", NULL};
static const char *const transport_names[] = {"streamable-http", "sse", NULL};

static const sl_ckey arg_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_mcp_arg_cfg, name), .required = true,
     .doc = "Argument name, a property of the tool's input schema."},
    {.name = "key", .type = SL_CK_STRING, .offset = OFF(sl_mcp_arg_cfg, key),
     .doc = "Name sent upstream (query, header, cookie or body) when it differs from name."},
    {.name = "type", .type = SL_CK_STRING, .offset = OFF(sl_mcp_arg_cfg, type), .def = "string",
     .doc = "JSON Schema type: string, number, integer, boolean, array, object."},
    {.name = "description", .type = SL_CK_STRING, .offset = OFF(sl_mcp_arg_cfg, description),
     .doc = "Shown to the model."},
    {.name = "required", .type = SL_CK_BOOL, .offset = OFF(sl_mcp_arg_cfg, required), .def = "false",
     .doc = "The call fails (isError) without it."},
    {.name = "in", .type = SL_CK_ENUM, .offset = OFF(sl_mcp_arg_cfg, in), .enums = in_names, .def = "auto",
     .doc = "Where it goes: path, query, header, cookie, body; auto = path when the URL names it, query for GET/DELETE/HEAD, else body."},
    {.name = "enum", .type = SL_CK_STRLIST, .offset = OFF(sl_mcp_arg_cfg, enum_vals),
     .count_offset = OFF(sl_mcp_arg_cfg, nenum), .max_items = 256, .doc = "Allowed values."},
    {.name = "default", .type = SL_CK_STRING, .offset = OFF(sl_mcp_arg_cfg, def), .doc = "Value used when absent."},
    {.name = "schema", .type = SL_CK_CUSTOM, .parse = parse_json_schema, .offset = OFF(sl_mcp_arg_cfg, schema),
     .type_doc = "JSON Schema", .doc = "Full property schema (overrides type and enum)."},
};
const sl_csection sl_mcp_arg_section = {"mcp.servers[].tools[].args[]", ARR(arg_keys)};

static const sl_ckey request_keys[] = {
    {.name = "method", .type = SL_CK_STRING, .offset = OFF(sl_mcp_request_cfg, method), .def = "GET",
     .doc = "HTTP method."},
    {.name = "url", .type = SL_CK_STRING, .offset = OFF(sl_mcp_request_cfg, url), .required = true,
     .doc = "URL template: {{args.x}}, {{config.x}}, {x} for a path argument."},
    {.name = "headers", .type = SL_CK_STRMAP, .offset = OFF(sl_mcp_request_cfg, headers),
     .count_offset = OFF(sl_mcp_request_cfg, nheaders), .max_items = 64, .doc = "Header templates."},
    {.name = "body", .type = SL_CK_STRING, .offset = OFF(sl_mcp_request_cfg, body),
     .doc = "Body template; absent = the body arguments as one JSON object."},
    {.name = "content_type", .type = SL_CK_STRING, .offset = OFF(sl_mcp_request_cfg, content_type),
     .def = "application/json", .doc = "Content-Type of the body."},
};
const sl_csection sl_mcp_request_section = {"mcp.servers[].tools[].request", ARR(request_keys)};

static const sl_ckey response_keys[] = {
    {.name = "prepend", .type = SL_CK_STRING, .offset = OFF(sl_mcp_response_cfg, prepend), .doc = "Text put before the answer."},
    {.name = "append", .type = SL_CK_STRING, .offset = OFF(sl_mcp_response_cfg, append), .doc = "Text put after the answer."},
    {.name = "template", .type = SL_CK_STRING, .offset = OFF(sl_mcp_response_cfg, template_),
     .doc = "Text built from {{response.a.b}}, {{body}}, {{status}}, {{args.x}}, {{config.x}}."},
    {.name = "pick", .type = SL_CK_STRLIST, .offset = OFF(sl_mcp_response_cfg, pick),
     .count_offset = OFF(sl_mcp_response_cfg, npick), .max_items = 64,
     .doc = "Dotted paths of the JSON answer to keep (one: that value; several: an object)."},
};
const sl_csection sl_mcp_response_section = {"mcp.servers[].tools[].response", ARR(response_keys)};

static const sl_ckey error_keys[] = {
    {.name = "template", .type = SL_CK_STRING, .offset = 0,
     .doc = "Error text for a non-2xx answer: {{status}}, {{body}}, {{response.x}}."},
};
const sl_csection sl_mcp_error_section = {"mcp.servers[].tools[].error", ARR(error_keys)};

static void parse_args(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base);

static const sl_ckey tool_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_mcp_tool_cfg, name), .required = true,
     .doc = "Tool name (1-128 of A-Z a-z 0-9 _ - .)."},
    {.name = "title", .type = SL_CK_STRING, .offset = OFF(sl_mcp_tool_cfg, title), .doc = "Display name."},
    {.name = "description", .type = SL_CK_STRING, .offset = OFF(sl_mcp_tool_cfg, description), .doc = "Shown to the model."},
    {.name = "args", .type = SL_CK_CUSTOM, .parse = parse_args, .max_items = 256, .type_doc = "list of arg",
     .doc = "Arguments, below."},
    {.name = "output_schema", .type = SL_CK_CUSTOM, .parse = parse_json_schema,
     .offset = OFF(sl_mcp_tool_cfg, output_schema), .type_doc = "JSON Schema",
     .doc = "When set, results carry structuredContent (the JSON answer)."},
    {.name = "request", .type = SL_CK_SECTION, .offset = OFF(sl_mcp_tool_cfg, request), .sub = &sl_mcp_request_section,
     .required = true, .doc = "The upstream request, below."},
    {.name = "response", .type = SL_CK_SECTION, .offset = OFF(sl_mcp_tool_cfg, response), .sub = &sl_mcp_response_section,
     .doc = "How the answer becomes the result, below."},
    {.name = "error", .type = SL_CK_SECTION, .offset = OFF(sl_mcp_tool_cfg, error_template), .sub = &sl_mcp_error_section,
     .doc = "How a non-2xx answer becomes an isError result."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_mcp_tool_cfg, timeout_ms), .min = 1,
     .max = 3600000, .def = "30000", .doc = "Whole upstream call."},
};

const sl_csection sl_mcp_tool_section = {"mcp.servers[].tools[]", ARR(tool_keys)};

static const sl_ckey auth_keys[] = {
    {.name = "type", .type = SL_CK_ENUM, .offset = OFF(sl_mcp_auth_cfg, type), .enums = auth_names, .def = "none",
     .doc = "none, bearer (Authorization: Bearer), api_key (a header or query parameter) or basic."},
    {.name = "in", .type = SL_CK_ENUM, .offset = OFF(sl_mcp_auth_cfg, in), .enums = in_names, .def = "header",
     .doc = "api_key: header or query."},
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_mcp_auth_cfg, name), .doc = "api_key: header or parameter name."},
    {.name = "value", .type = SL_CK_STRING, .offset = OFF(sl_mcp_auth_cfg, value),
     .doc = "bearer token or api key; may be {{config.x}}."},
    {.name = "username", .type = SL_CK_STRING, .offset = OFF(sl_mcp_auth_cfg, username), .doc = "basic."},
    {.name = "password", .type = SL_CK_STRING, .offset = OFF(sl_mcp_auth_cfg, password), .doc = "basic; may be {{config.x}}."},
};
const sl_csection sl_mcp_auth_section = {"mcp.servers[].upstream_auth", ARR(auth_keys)};

static const sl_ckey upstream_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_mcp_upstream_cfg, name), .required = true,
     .doc = "Upstream name; the default tool prefix is name_."},
    {.name = "url", .type = SL_CK_STRING, .offset = OFF(sl_mcp_upstream_cfg, url), .required = true,
     .doc = "Streamable HTTP endpoint, or the SSE endpoint for transport sse."},
    {.name = "transport", .type = SL_CK_ENUM, .offset = OFF(sl_mcp_upstream_cfg, transport), .enums = transport_names,
     .def = "streamable-http", .doc = "streamable-http, or sse for the legacy HTTP+SSE transport."},
    {.name = "prefix", .type = SL_CK_STRING, .offset = OFF(sl_mcp_upstream_cfg, prefix),
     .doc = "Tool name prefix; absent = name_; \"\" = none (one upstream)."},
    {.name = "headers", .type = SL_CK_STRMAP, .offset = OFF(sl_mcp_upstream_cfg, headers),
     .count_offset = OFF(sl_mcp_upstream_cfg, nheaders), .max_items = 64, .doc = "Headers sent upstream."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_mcp_upstream_cfg, timeout_ms), .min = 1,
     .max = 3600000, .def = "60000", .doc = "Whole upstream call."},
};
const sl_csection sl_mcp_upstream_section = {"mcp.servers[].upstreams[]", ARR(upstream_keys)};

static void parse_tools(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base);
static void parse_upstreams(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base);

static const sl_ckey server_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, name), .required = true,
     .doc = "Served at /mcp/{name}; letters, digits, - _ ."},
    {.name = "type", .type = SL_CK_ENUM, .offset = OFF(sl_mcp_server_cfg, type), .enums = kind_names, .def = "rest",
     .doc = "How the tools are made: rest templates, an openapi document, or a proxy of upstream MCP servers."},
    {.name = "title", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, title), .doc = "serverInfo.title."},
    {.name = "version", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, version), .def = "1.0.0",
     .doc = "serverInfo.version."},
    {.name = "instructions", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, instructions),
     .doc = "Sent in the initialize result."},
    {.name = "config", .type = SL_CK_STRMAP, .offset = OFF(sl_mcp_server_cfg, config),
     .count_offset = OFF(sl_mcp_server_cfg, nconfig), .max_items = 256, .doc = "Values for {{config.x}}."},
    {.name = "upstream_auth", .type = SL_CK_SECTION, .offset = OFF(sl_mcp_server_cfg, auth), .sub = &sl_mcp_auth_section,
     .doc = "Credentials added to every upstream request, never seen by the model."},
    {.name = "tools", .type = SL_CK_CUSTOM, .parse = parse_tools, .max_items = 10000, .type_doc = "list of tool",
     .doc = "rest: the tools, below."},
    {.name = "spec", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, spec),
     .doc = "openapi: path of the OpenAPI 3 document (JSON or YAML)."},
    {.name = "base_url", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, base_url),
     .doc = "openapi: overrides the document's servers[0].url."},
    {.name = "tool_prefix", .type = SL_CK_STRING, .offset = OFF(sl_mcp_server_cfg, tool_prefix),
     .doc = "openapi: prefix for the generated tool names."},
    {.name = "upstreams", .type = SL_CK_CUSTOM, .parse = parse_upstreams, .max_items = 64,
     .type_doc = "list of upstream", .doc = "proxy: the upstream MCP servers, below."},
};
const sl_csection sl_mcp_server_section = {"mcp.servers[]", ARR(server_keys)};

static void parse_servers(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base);

static const sl_ckey mcp_keys[] = {
    {.name = "servers", .type = SL_CK_CUSTOM, .parse = parse_servers, .max_items = 1000, .type_doc = "list of server",
     .doc = "The MCP servers, below."},
    {.name = "session_ttl_ms", .type = SL_CK_DURATION, .offset = OFF(sl_mcp_cfg, session_ttl_ms), .min = 1000,
     .max = 604800000, .def = "3600000", .doc = "An idle session expires after this (then 404)."},
    {.name = "max_sessions", .type = SL_CK_UINT, .offset = OFF(sl_mcp_cfg, max_sessions), .min = 1, .max = 10000000,
     .def = "100000", .doc = "Sessions kept at once (memory backend); more are refused with 503."},
    {.name = "page_size", .type = SL_CK_UINT, .offset = OFF(sl_mcp_cfg, page_size), .min = 1, .max = 100000,
     .def = "100", .doc = "tools/list page size (nextCursor beyond)."},
    {.name = "max_response_bytes", .type = SL_CK_UINT, .offset = OFF(sl_mcp_cfg, max_response_bytes), .min = 1024,
     .max = 1073741824, .def = "8388608", .doc = "Largest upstream answer read for a tool call."},
    {.name = "allowed_origins", .type = SL_CK_STRLIST, .offset = OFF(sl_mcp_cfg, allowed_origins),
     .count_offset = OFF(sl_mcp_cfg, nallowed_origins), .max_items = 256,
     .doc = "Origins accepted besides localhost, 127.0.0.1 and [::1] (DNS rebinding defence); \"*\" = any."},
    {.name = "allowed_hosts", .type = SL_CK_STRLIST, .offset = OFF(sl_mcp_cfg, allowed_hosts),
     .count_offset = OFF(sl_mcp_cfg, nallowed_hosts), .max_items = 256,
     .doc = "When set, the Host header must be one of these (host or host:port) or a localhost name."},
};
const sl_csection sl_mcp_section = {"mcp", ARR(mcp_keys)};

/* ---- checks and derived values --------------------------------------------- */

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

static bool method_ok(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++)
        if (!strcmp(m, ok[i])) return true;
    return false;
}

static bool url_names_arg(const char *url, const char *name)
{
    char a[160], b[160];
    snprintf(a, sizeof a, "{{args.%s}}", name);
    snprintf(b, sizeof b, "{%s}", name);
    return strstr(url, a) || strstr(url, b);
}

static const sl_ynode *args_node_of(const sl_ynode *tool_item) { return sl_yaml_map_get(tool_item, "args"); }

/* Resolves in: auto and checks the argument names of one tool. */
static void check_args(sl_cfg_ctx *ctx, const sl_ynode *item, sl_mcp_tool_cfg *t)
{
    const sl_ynode *an = args_node_of(item);
    const sl_ynode *it = an && an->kind == SL_YN_SEQ ? an->first : NULL;
    for (size_t i = 0; i < t->nargs; i++, it = it ? it->next : NULL) {
        sl_mcp_arg_cfg *a = &t->args[i];
        if (!a->name) continue;
        if (!name_ok(a->name, 128)) sl_cfg_error(ctx, it, "%s.args[%zu].name: '%s': use letters, digits, - _ .", ctx->path, i, a->name);
        for (size_t j = 0; j < i; j++)
            if (t->args[j].name && !strcmp(t->args[j].name, a->name))
                sl_cfg_error(ctx, it, "%s.args[%zu]: duplicate argument '%s'", ctx->path, i, a->name);
        static const char *const types[] = {"string", "number", "integer", "boolean", "array", "object"};
        bool type_ok = false;
        for (size_t k = 0; k < SL_ARRAY_LEN(types) && a->type; k++) type_ok |= !strcmp(a->type, types[k]);
        if (!type_ok) sl_cfg_error(ctx, it, "%s.args[%zu].type: must be one of string number integer boolean array object", ctx->path, i);
        if (a->in == SL_MCP_IN_AUTO && t->request.url && t->request.method) {
            const char *m = t->request.method;
            if (url_names_arg(t->request.url, a->name)) a->in = SL_MCP_IN_PATH;
            else if (!strcmp(m, "GET") || !strcmp(m, "DELETE") || !strcmp(m, "HEAD")) a->in = SL_MCP_IN_QUERY;
            else a->in = SL_MCP_IN_BODY;
        }
    }
}

static void write_default(sl_jw *w, const sl_mcp_arg_cfg *a)
{
    sl_str d = sl_str_from_cstr(a->def);
    bool literal = a->type && strcmp(a->type, "string") != 0 && plain_is_json_literal(d);
    if (literal) sl_jw_raw(w, d);
    else sl_jw_str(w, d);
}

/* The tool's inputSchema, from its arguments. */
int sl_mcp_build_input_schema(const sl_mcp_arg_cfg *args, size_t nargs, sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "type"), sl_jw_cstr(&w, "object");
    sl_jw_key(&w, "properties"), sl_jw_obj_begin(&w);
    for (size_t i = 0; i < nargs; i++) {
        const sl_mcp_arg_cfg *a = &args[i];
        if (!a->name) continue;
        sl_jw_key(&w, a->name);
        if (a->schema) {
            sl_jw_raw(&w, sl_str_from_cstr(a->schema));
            continue;
        }
        sl_jw_obj_begin(&w);
        sl_jw_key(&w, "type"), sl_jw_cstr(&w, a->type ? a->type : "string");
        if (a->description) sl_jw_key(&w, "description"), sl_jw_cstr(&w, a->description);
        if (a->nenum) {
            sl_jw_key(&w, "enum"), sl_jw_arr_begin(&w);
            for (size_t k = 0; k < a->nenum; k++) sl_jw_cstr(&w, a->enum_vals[k]);
            sl_jw_arr_end(&w);
        }
        if (a->def) sl_jw_key(&w, "default"), write_default(&w, a);
        sl_jw_obj_end(&w);
    }
    sl_jw_obj_end(&w);
    bool any_required = false;
    for (size_t i = 0; i < nargs; i++) any_required |= args[i].required && args[i].name;
    if (any_required) {
        sl_jw_key(&w, "required"), sl_jw_arr_begin(&w);
        for (size_t i = 0; i < nargs; i++)
            if (args[i].required && args[i].name) sl_jw_cstr(&w, args[i].name);
        sl_jw_arr_end(&w);
    }
    sl_jw_obj_end(&w);
    return w.err;
}

static void tool_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_mcp_tool_cfg *t = elem;
    if (t->name && !name_ok(t->name, 128))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "name"), "%s.name: '%s': use 1-128 letters, digits, - _ .", ctx->path, t->name);
    if (t->request.method && !method_ok(t->request.method))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "request"), "%s.request.method: '%s' is not an HTTP method", ctx->path,
                     t->request.method);
    if (t->request.url && strncmp(t->request.url, "http://", 7) && strncmp(t->request.url, "https://", 8) &&
        strncmp(t->request.url, "{{", 2))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "request"), "%s.request.url: must start with http:// or https://", ctx->path);
    check_args(ctx, item, t);
    sl_buf b;
    sl_buf_init(&b, 1 << 20);
    if (sl_mcp_build_input_schema(t->args, t->nargs, &b) == SL_OK) t->input_schema = sl_cfg_strdup(ctx, sl_buf_str(&b));
    else ctx->oom = true;
    sl_buf_free(&b);
}

static void parse_args(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_mcp_tool_cfg *t = base;
    t->args = sl_cfg_parse_list(ctx, n, &sl_mcp_arg_section, sizeof(sl_mcp_arg_cfg), k->max_items, &t->nargs, NULL);
}

static void check_unique_tools(sl_cfg_ctx *ctx, const sl_ynode *seq, const sl_mcp_tool_cfg *tools, size_t n)
{
    const sl_ynode *it = seq && seq->kind == SL_YN_SEQ ? seq->first : NULL;
    for (size_t i = 0; i < n; i++, it = it ? it->next : NULL)
        for (size_t j = 0; j < i && tools[i].name; j++)
            if (tools[j].name && !strcmp(tools[i].name, tools[j].name)) {
                sl_cfg_error(ctx, it, "%s[%zu].name: duplicate tool name '%s'", ctx->path, i, tools[i].name);
                break;
            }
}

static void parse_tools(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_mcp_server_cfg *s = base;
    s->tools = sl_cfg_parse_list(ctx, n, &sl_mcp_tool_section, sizeof(sl_mcp_tool_cfg), k->max_items, &s->ntools, tool_finish);
    check_unique_tools(ctx, n, s->tools, s->ntools);
}

static void upstream_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_mcp_upstream_cfg *u = elem;
    if (u->name && !name_ok(u->name, 64))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "name"), "%s.name: use 1-64 letters, digits, - _ .", ctx->path);
    if (u->url && strncmp(u->url, "http://", 7) && strncmp(u->url, "https://", 8))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "url"), "%s.url: must start with http:// or https://", ctx->path);
    if (!u->prefix && u->name) {
        char p[80];
        snprintf(p, sizeof p, "%s_", u->name);
        u->prefix = sl_cfg_strdup(ctx, sl_str_from_cstr(p));
    }
}

static void parse_upstreams(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_mcp_server_cfg *s = base;
    s->upstreams = sl_cfg_parse_list(ctx, n, &sl_mcp_upstream_section, sizeof(sl_mcp_upstream_cfg), k->max_items,
                                     &s->nupstreams, upstream_finish);
}

/* Reads an OpenAPI document next to the config file when the path is relative and not found as is. */
static int load_openapi(sl_cfg_ctx *ctx, const sl_ynode *at, sl_mcp_server_cfg *s)
{
    sl_openapi_result res;
    sl_buf errs;
    sl_buf_init(&errs, 1 << 16);
    char alt[1024];
    const char *path = s->spec;
    FILE *f = fopen(path, "rb");
    if (!f && path[0] != '/' && ctx->file && strrchr(ctx->file, '/')) {
        int dl = (int)(strrchr(ctx->file, '/') - ctx->file);
        snprintf(alt, sizeof alt, "%.*s/%s", dl, ctx->file, path);
        if ((f = fopen(alt, "rb"))) path = alt;
    }
    if (f) fclose(f);
    int rc = sl_openapi_convert_file(ctx->a, path, s->tool_prefix, s->base_url, &res, &errs);
    if (rc == SL_ENOMEM) ctx->oom = true;
    else if (rc) {
        /* One config error per converter line, at the spec key. */
        sl_str all = sl_buf_str(&errs);
        size_t start = 0, shown = 0;
        for (size_t i = 0; i <= all.n && shown < 10; i++) {
            if (i == all.n || all.p[i] == '\n') {
                if (i > start) sl_cfg_error(ctx, at, "%s.spec: %.*s", ctx->path, (int)(i - start), all.p + start), shown++;
                start = i + 1;
            }
        }
        if (!shown) sl_cfg_error(ctx, at, "%s.spec: cannot convert '%s'", ctx->path, s->spec);
    } else {
        s->tools = res.tools, s->ntools = res.ntools;
        if (!s->title && res.title) s->title = res.title;
        if (s->auth.type == SL_MCP_AUTH_NONE && res.auth.type != SL_MCP_AUTH_NONE) s->auth = res.auth;
    }
    sl_buf_free(&errs);
    return rc;
}

static void server_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_mcp_server_cfg *s = elem;
    if (s->name && !name_ok(s->name, 64))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "name"), "%s.name: '%s': use 1-64 letters, digits, - _ .", ctx->path, s->name);
    const sl_ynode *tools = sl_yaml_map_get(item, "tools"), *spec = sl_yaml_map_get(item, "spec"),
                   *ups = sl_yaml_map_get(item, "upstreams");
    switch (s->type) {
    case SL_MCP_REST:
        if (spec || ups) sl_cfg_error(ctx, spec ? spec : ups, "%s: spec and upstreams are for types openapi and proxy", ctx->path);
        break;
    case SL_MCP_OPENAPI:
        if (!s->spec) sl_cfg_error(ctx, item, "missing required key 'spec' in %s (type openapi)", ctx->path);
        else if (tools) sl_cfg_error(ctx, tools, "%s.tools: type openapi makes its tools from spec", ctx->path);
        else load_openapi(ctx, spec, s);
        break;
    case SL_MCP_PROXY:
        if (!s->nupstreams) sl_cfg_error(ctx, ups ? ups : item, "%s: type proxy needs at least one upstream", ctx->path);
        if (tools) sl_cfg_error(ctx, tools, "%s.tools: type proxy takes its tools from its upstreams", ctx->path);
        break;
    }
    const sl_mcp_auth_cfg *au = &s->auth;
    const sl_ynode *an = sl_yaml_map_get(item, "upstream_auth");
    if ((au->type == SL_MCP_AUTH_BEARER || au->type == SL_MCP_AUTH_API_KEY) && !au->value)
        sl_cfg_error(ctx, an, "%s.upstream_auth: value is required for %s", ctx->path, auth_names[au->type]);
    if (au->type == SL_MCP_AUTH_API_KEY && !au->name)
        sl_cfg_error(ctx, an, "%s.upstream_auth: name is required for api_key", ctx->path);
    if (au->type == SL_MCP_AUTH_API_KEY && au->in != SL_MCP_IN_HEADER && au->in != SL_MCP_IN_QUERY)
        sl_cfg_error(ctx, an, "%s.upstream_auth.in: header or query", ctx->path);
    if (au->type == SL_MCP_AUTH_BASIC && !au->username)
        sl_cfg_error(ctx, an, "%s.upstream_auth: username is required for basic", ctx->path);
}

static void parse_servers(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_mcp_cfg *m = base;
    m->servers = sl_cfg_parse_list(ctx, n, &sl_mcp_server_section, sizeof(sl_mcp_server_cfg), k->max_items, &m->nservers,
                                   server_finish);
    const sl_ynode *it = n->kind == SL_YN_SEQ ? n->first : NULL;
    for (size_t i = 0; i < m->nservers; i++, it = it ? it->next : NULL)
        for (size_t j = 0; j < i && m->servers[i].name; j++)
            if (m->servers[j].name && !strcmp(m->servers[i].name, m->servers[j].name)) {
                sl_cfg_error(ctx, sl_yaml_map_get(it, "name"), "%s[%zu].name: duplicate server name '%s'", ctx->path, i,
                             m->servers[i].name);
                break;
            }
}

void sl_mcp_parse_config(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    sl_mcp_cfg *m = sl_cfg_calloc(ctx, 1, sizeof *m);
    if (!m) return;
    cfg->mcp = m;
    sl_cfg_parse_section(ctx, &sl_mcp_section, node, m);
}

const sl_mcp_server_cfg *sl_mcp_find_server(const sl_mcp_cfg *m, sl_str name)
{
    for (size_t i = 0; m && i < m->nservers; i++)
        if (m->servers[i].name && sl_str_eq_lit(name, m->servers[i].name)) return &m->servers[i];
    return NULL;
}
