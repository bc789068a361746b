/*
 * openapi_yaml.c: `sluice openapi2mcp SPEC`: converts an OpenAPI document
 * (openapi.c) and writes one `type: rest` entry of mcp.servers[] as YAML,
 * checked by loading it back as a configuration before it is printed, so
 * that what comes out passes `sluice --check`.
 *
 * Strings are written as JSON strings (valid YAML double-quoted scalars) with
 * "${" doubled to "$${" so that the loader's environment expansion gives
 * the text back unchanged; schemas are written as JSON flow mappings.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "mcp/mcp_int.h"

static int qstr(sl_buf *out, const char *s)
{
    sl_buf esc;
    sl_buf_init(&esc, 0);
    int rc = sl_json_escape(&esc, sl_str_from_cstr(s ? s : ""));
    rc = rc ? rc : sl_buf_append(out, "\"", 1);
    for (size_t i = 0; !rc && i < esc.len; i++) {
        if (esc.p[i] == '$' && i + 1 < esc.len && esc.p[i + 1] == '{') rc = sl_buf_append(out, "$", 1);
        if (!rc) rc = sl_buf_append(out, &esc.p[i], 1);
    }
    if (!rc) rc = sl_buf_append(out, "\"", 1);
    sl_buf_free(&esc);
    return rc;
}

/* A schema (JSON) written as a YAML flow mapping, with "${" escaped as in strings. */
static int flow(sl_buf *out, const char *json)
{
    int rc = SL_OK;
    for (const char *p = json; *p && !rc; p++) {
        if (p[0] == '$' && p[1] == '{') rc = sl_buf_append(out, "$", 1);
        if (!rc) rc = sl_buf_append(out, p, 1);
    }
    return rc;
}

static const char *in_name(int in)
{
    switch (in) {
    case SL_MCP_IN_PATH: return "path";
    case SL_MCP_IN_QUERY: return "query";
    case SL_MCP_IN_HEADER: return "header";
    case SL_MCP_IN_BODY: return "body";
    case SL_MCP_IN_COOKIE: return "cookie";
    default: return "auto";
    }
}

static void write_auth(const sl_openapi_result *res, sl_buf *o)
{
    const sl_mcp_auth_cfg *a = &res->auth;
    if (a->type == SL_MCP_AUTH_NONE) return;
    const char *key = res->auth_config_key;
    sl_buf_appendf(o, "  # the credential is read from config; set the environment variable before starting sluice\n");
    if (a->type == SL_MCP_AUTH_BASIC)
        sl_buf_appendf(o, "  config: { %s_username: \"${MCP_%s_USERNAME}\", %s_password: \"${MCP_%s_PASSWORD}\" }\n", key,
                       key, key, key);
    else sl_buf_appendf(o, "  config: { %s: \"${MCP_%s}\" }\n", key, key);
    sl_buf_appendf(o, "  upstream_auth:\n");
    switch (a->type) {
    case SL_MCP_AUTH_BEARER:
        sl_buf_appendf(o, "    type: bearer\n    value: "), qstr(o, a->value), sl_buf_appendf(o, "\n");
        break;
    case SL_MCP_AUTH_API_KEY:
        sl_buf_appendf(o, "    type: api_key\n    in: %s\n    name: ", in_name(a->in));
        qstr(o, a->name), sl_buf_appendf(o, "\n    value: "), qstr(o, a->value), sl_buf_appendf(o, "\n");
        break;
    default:
        sl_buf_appendf(o, "    type: basic\n    username: "), qstr(o, a->username);
        sl_buf_appendf(o, "\n    password: "), qstr(o, a->password), sl_buf_appendf(o, "\n");
    }
}

static void write_tool(const sl_mcp_tool_cfg *t, sl_buf *o)
{
    sl_buf_appendf(o, "    - name: "), qstr(o, t->name), sl_buf_appendf(o, "\n");
    if (t->description) sl_buf_appendf(o, "      description: "), qstr(o, t->description), sl_buf_appendf(o, "\n");
    if (t->nargs) sl_buf_appendf(o, "      args:\n");
    for (size_t i = 0; i < t->nargs; i++) {
        const sl_mcp_arg_cfg *a = &t->args[i];
        sl_buf_appendf(o, "        - name: "), qstr(o, a->name);
        if (a->key) sl_buf_appendf(o, "\n          key: "), qstr(o, a->key);
        sl_buf_appendf(o, "\n          type: %s\n          in: %s\n", a->type ? a->type : "string", in_name(a->in));
        if (a->required) sl_buf_appendf(o, "          required: true\n");
        if (a->description) sl_buf_appendf(o, "          description: "), qstr(o, a->description), sl_buf_appendf(o, "\n");
        if (a->schema) sl_buf_appendf(o, "          schema: "), flow(o, a->schema), sl_buf_appendf(o, "\n");
    }
    if (t->output_schema) sl_buf_appendf(o, "      output_schema: "), flow(o, t->output_schema), sl_buf_appendf(o, "\n");
    sl_buf_appendf(o, "      request:\n        method: %s\n        url: ", t->request.method);
    qstr(o, t->request.url);
    sl_buf_appendf(o, "\n");
    if (t->request.content_type && strcmp(t->request.content_type, "application/json"))
        sl_buf_appendf(o, "        content_type: "), qstr(o, t->request.content_type), sl_buf_appendf(o, "\n");
    if (t->request.body) sl_buf_appendf(o, "        body: "), qstr(o, t->request.body), sl_buf_appendf(o, "\n");
}

int sl_openapi_write_yaml(const sl_openapi_result *res, const char *name, sl_buf *o)
{
    sl_buf_appendf(o, "- name: "), qstr(o, name), sl_buf_appendf(o, "\n  type: rest\n");
    if (res->title) sl_buf_appendf(o, "  title: "), qstr(o, res->title), sl_buf_appendf(o, "\n");
    write_auth(res, o);
    sl_buf_appendf(o, "  tools:\n");
    for (size_t i = 0; i < res->ntools; i++) write_tool(&res->tools[i], o);
    return o->len && o->p ? SL_OK : SL_ENOMEM;
}

/* Loads the entry back under mcp.servers: what is printed must pass --check. */
static int validate(const sl_buf *entry, sl_buf *errors)
{
    sl_buf cfg;
    sl_buf_init(&cfg, 0);
    sl_buf_append_cstr(&cfg, "mcp:\n  servers:\n");
    size_t start = 0;
    for (size_t i = 0; i <= entry->len; i++) {
        if (i == entry->len || entry->p[i] == '\n') {
            if (i > start) {
                sl_buf_append_cstr(&cfg, "    ");
                sl_buf_append(&cfg, entry->p + start, i - start);
                sl_buf_append(&cfg, "\n", 1);
            }
            start = i + 1;
        }
    }
    sl_config *c = NULL;
    int rc = sl_config_load_string("<openapi2mcp>", cfg.p, cfg.len, &c, errors);
    if (c) sl_config_release(c);
    sl_buf_free(&cfg);
    return rc;
}

int sl_openapi2mcp_main(int argc, char **argv)
{
    const char *spec = NULL, *prefix = NULL, *name = NULL, *base = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--prefix") && i + 1 < argc) prefix = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--base-url") && i + 1 < argc) base = argv[++i];
        else if (argv[i][0] != '-' && !spec) spec = argv[i];
        else {
            fprintf(stderr, "usage: sluice openapi2mcp SPEC [--prefix P] [--name N] [--base-url URL]\n");
            return 2;
        }
    }
    if (!spec) {
        fprintf(stderr, "usage: sluice openapi2mcp SPEC [--prefix P] [--name N] [--base-url URL]\n");
        return 2;
    }
    sl_arena a;
    sl_arena_init(&a, 64 * 1024, 0);
    sl_openapi_result res;
    sl_buf errs, out;
    sl_buf_init(&errs, 1 << 20);
    sl_buf_init(&out, 0);
    int rc = sl_openapi_convert_file(&a, spec, prefix, base, &res, &errs);
    if (rc == SL_OK) {
        /* The server name: --name, else the document's title made into a name, else "api". */
        char nm[65];
        size_t k = 0;
        for (const char *p = name ? name : res.title ? res.title : "api"; *p && k < 64; p++) {
            char ch = *p;
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                      ch == '_' || ch == '.';
            ch = ok ? (name ? ch : (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch)) : '-';
            if (ch == '-' && (k == 0 || nm[k - 1] == '-')) continue;
            nm[k++] = ch;
        }
        while (k && nm[k - 1] == '-') k--;
        nm[k] = '\0';
        rc = sl_openapi_write_yaml(&res, k ? nm : "api", &out);
        if (!rc) rc = validate(&out, &errs);
    }
    int code = 0;
    if (rc) {
        fprintf(stderr, "%s: %s\n", spec, rc == SL_ENOMEM ? "out of memory" : "cannot convert");
        fwrite(errs.p ? errs.p : "", 1, errs.len, stderr);
        code = 1;
    } else {
        fwrite(out.p, 1, out.len, stdout);
    }
    sl_buf_free(&errs);
    sl_buf_free(&out);
    sl_arena_free(&a);
    return code;
}
