/*
 * openapi.c: OpenAPI 3.0/3.1 documents (JSON or YAML: JSON is read as YAML
 * flow style by the same tree builder as the config) to REST tools: one tool
 * per operation, named by operationId (else method_path), arguments from the
 * path/query/header parameters and the request body's properties, local
 * $refs inlined (bounded depth, so cycles end), descriptions carried over,
 * the first usable security scheme mapped to upstream_auth with its secret
 * read from {{config.<scheme>}}.
 *
 * Used at load for `type: openapi` and by `sluice openapi2mcp`, which writes
 * the same tools out as YAML for a person to edit and keep.
 */
#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <stdio.h>

#include "config/yaml_tree.h"
#include "mcp/mcp_int.h"

#define REF_DEPTH 12
#define MAX_OPS 5000

typedef struct conv {
    sl_arena *a;      /* output */
    sl_arena tmp;     /* tree */
    const sl_ynode *root;
    sl_buf *errors;
    int nerr;
    bool oom;
    const char *prefix;
} conv;

static void cerr(conv *c, const sl_ynode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cerr(conv *c, const sl_ynode *at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->nerr++;
    if (!c->errors) return;
    if (at && at->line) sl_buf_appendf(c->errors, "line %d: %s\n", at->line, msg);
    else sl_buf_appendf(c->errors, "%s\n", msg);
}

static void tree_err(void *ud, int line, int col, const char *msg)
{
    conv *c = ud;
    c->nerr++;
    if (c->errors) sl_buf_appendf(c->errors, "line %d col %d: %s\n", line, col, msg);
}

static char *cdup(conv *c, sl_str s)
{
    char *d = sl_arena_strndup(c->a, s.p ? s.p : "", s.n);
    if (!d) c->oom = true;
    return d;
}

static const sl_ynode *get(const sl_ynode *m, const char *k) { return m && m->kind == SL_YN_MAP ? sl_yaml_map_get(m, k) : NULL; }

static const char *scalar(const sl_ynode *n) { return n && n->kind == SL_YN_SCALAR ? n->val.p : NULL; }

/* "#/components/schemas/Pet" -> that node; NULL when not local or absent. JSON pointer escapes ~0 ~1. */
static const sl_ynode *resolve_ref(conv *c, const char *ref)
{
    if (!ref || ref[0] != '#') return NULL;
    const sl_ynode *n = c->root;
    const char *p = ref + 1;
    while (n && *p == '/') {
        p++;
        char seg[256];
        size_t k = 0;
        while (*p && *p != '/' && k + 1 < sizeof seg) {
            if (p[0] == '~' && p[1] == '1') seg[k++] = '/', p += 2;
            else if (p[0] == '~' && p[1] == '0') seg[k++] = '~', p += 2;
            else seg[k++] = *p++;
        }
        seg[k] = '\0';
        n = get(n, seg);
    }
    return *p ? NULL : n;
}

/* Follows $ref chains of a parameter, request body or response object. */
static const sl_ynode *deref(conv *c, const sl_ynode *n)
{
    for (int i = 0; n && i < REF_DEPTH; i++) {
        const char *ref = scalar(get(n, "$ref"));
        if (!ref) return n;
        n = resolve_ref(c, ref);
    }
    return n;
}

/* A schema as JSON with local $refs inlined; past REF_DEPTH a ref becomes {} (any value). */
static void write_schema(conv *c, const sl_ynode *n, int depth, sl_jw *w)
{
    if (n && n->kind == SL_YN_MAP) {
        const char *ref = scalar(get(n, "$ref"));
        if (ref) {
            const sl_ynode *t = depth < REF_DEPTH ? resolve_ref(c, ref) : NULL;
            if (t) write_schema(c, t, depth + 1, w);
            else sl_jw_obj_begin(w), sl_jw_obj_end(w);
            return;
        }
        sl_jw_obj_begin(w);
        for (const sl_ynode *m = n->first; m; m = m->next) {
            sl_jw_key_str(w, m->key->val);
            write_schema(c, m, depth, w);
        }
        sl_jw_obj_end(w);
    } else if (n && n->kind == SL_YN_SEQ) {
        sl_jw_arr_begin(w);
        for (const sl_ynode *m = n->first; m; m = m->next) write_schema(c, m, depth, w);
        sl_jw_arr_end(w);
    } else {
        sl_mcp_ynode_to_json(n, w);
    }
}

static char *schema_json(conv *c, const sl_ynode *schema)
{
    sl_buf b;
    sl_buf_init(&b, 4u << 20);
    sl_jw w;
    sl_jw_init(&w, &b);
    write_schema(c, schema, 0, &w);
    char *s = w.err ? NULL : cdup(c, sl_buf_str(&b));
    if (w.err) c->oom = c->oom || w.err == SL_ENOMEM;
    sl_buf_free(&b);
    return s;
}

/* The JSON Schema type when it is one simple word; NULL otherwise. */
static const char *simple_type(conv *c, const sl_ynode *schema)
{
    const sl_ynode *s = deref(c, schema);
    const char *t = scalar(get(s, "type"));
    static const char *const ok[] = {"string", "number", "integer", "boolean", "array", "object"};
    for (size_t i = 0; t && i < SL_ARRAY_LEN(ok); i++)
        if (!strcmp(t, ok[i])) return ok[i];
    return NULL;
}

/* ---------------------------------------------------------------- operations */

static char *tool_name(conv *c, const char *op_id, const char *method, const char *path)
{
    char buf[160];
    if (op_id && *op_id) snprintf(buf, sizeof buf, "%s%s", c->prefix ? c->prefix : "", op_id);
    else snprintf(buf, sizeof buf, "%s%s%s", c->prefix ? c->prefix : "", method, path);
    size_t n = strlen(buf), o = 0;
    for (size_t i = 0; i < n && o < 128; i++) {
        char ch = buf[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '-' || ch == '.';
        if (!ok && (o == 0 || buf[o - 1] == '_')) continue; /* no runs of '_' from "/{x}/" */
        buf[o++] = ok ? ch : '_';
    }
    while (o > 0 && buf[o - 1] == '_') o--;
    return cdup(c, (sl_str){buf, o});
}

static char *describe(conv *c, const sl_ynode *op)
{
    const char *sum = scalar(get(op, "summary")), *desc = scalar(get(op, "description"));
    if (sum && desc && strcmp(sum, desc)) {
        char *s = sl_arena_printf(c->a, "%s\n\n%s", sum, desc);
        if (!s) c->oom = true;
        return s;
    }
    return sum ? cdup(c, sl_str_from_cstr(sum)) : desc ? cdup(c, sl_str_from_cstr(desc)) : NULL;
}

typedef struct arglist {
    sl_mcp_arg_cfg items[256];
    size_t n;
} arglist;

static sl_mcp_arg_cfg *find_arg(arglist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].name, name)) return &l->items[i];
    return NULL;
}

static void add_param(conv *c, arglist *l, const sl_ynode *pn)
{
    const sl_ynode *p = deref(c, pn);
    const char *name = scalar(get(p, "name")), *in = scalar(get(p, "in"));
    if (!name || !in) {
        cerr(c, pn, "parameter without name or in");
        return;
    }
    int where = !strcmp(in, "path") ? SL_MCP_IN_PATH : !strcmp(in, "query") ? SL_MCP_IN_QUERY
              : !strcmp(in, "header") ? SL_MCP_IN_HEADER : !strcmp(in, "cookie") ? SL_MCP_IN_COOKIE : -1;
    if (where < 0) {
        cerr(c, pn, "parameter '%s': unknown location in: %s", name, in);
        return;
    }
    sl_mcp_arg_cfg *a = find_arg(l, name); /* an operation's parameter overrides the path's */
    if (!a) {
        if (l->n == SL_ARRAY_LEN(l->items)) return;
        a = &l->items[l->n++];
    }
    memset(a, 0, sizeof *a);
    a->name = cdup(c, sl_str_from_cstr(name));
    a->in = where;
    const sl_ynode *req = get(p, "required");
    a->required = where == SL_MCP_IN_PATH || (scalar(req) && !strcmp(scalar(req), "true"));
    const char *d = scalar(get(p, "description"));
    if (d) a->description = cdup(c, sl_str_from_cstr(d));
    const sl_ynode *schema = get(p, "schema");
    const char *t = simple_type(c, schema);
    a->type = (char *)(t ? t : "string");
    const sl_ynode *rs = deref(c, schema);
    bool simple = t && (!strcmp(t, "string") || !strcmp(t, "integer") || !strcmp(t, "number") || !strcmp(t, "boolean")) &&
                  !get(rs, "enum") && !get(rs, "format");
    if (!simple && schema) {
        /* Keep the whole schema, with the parameter's description inside it. */
        a->schema = schema_json(c, schema);
        sl_json_doc jd;
        sl_json_edit e;
        sl_buf b;
        sl_buf_init(&b, 4u << 20);
        if (a->schema && d && sl_json_parse(&jd, a->schema, strlen(a->schema), &c->tmp, NULL, NULL) == SL_OK &&
            sl_json_type_of(&jd, 0) == SL_JSON_OBJECT && sl_json_obj_get(&jd, 0, "description") < 0) {
            sl_buf q;
            sl_buf_init(&q, 0);
            sl_jw w;
            sl_jw_init(&w, &q);
            sl_jw_cstr(&w, d);
            if (!w.err && sl_json_edit_add_member(&jd, 0, SL_STR("description"), sl_buf_str(&q), &c->tmp, &e) == SL_OK &&
                sl_json_splice(a->schema, strlen(a->schema), &e, 1, &b) == SL_OK)
                a->schema = cdup(c, sl_buf_str(&b));
            sl_buf_free(&q);
        }
        sl_buf_free(&b);
    }
}

static const sl_ynode *pick_media(const sl_ynode *content, const char **ctype)
{
    static const char *const pref[] = {"application/json", "application/x-www-form-urlencoded", "text/plain"};
    for (size_t i = 0; i < SL_ARRAY_LEN(pref); i++) {
        const sl_ynode *m = get(content, pref[i]);
        if (m) return *ctype = pref[i], m;
    }
    for (const sl_ynode *m = content && content->kind == SL_YN_MAP ? content->first : NULL; m; m = m->next)
        if (strstr(m->key->val.p, "json")) return *ctype = m->key->val.p, m;
    return NULL;
}

/* Request body: properties of an object schema become body arguments; any other schema one argument "body". */
static void add_body(conv *c, arglist *l, sl_mcp_tool_cfg *t, const sl_ynode *rbn)
{
    const sl_ynode *rb = deref(c, rbn);
    const char *ctype = NULL;
    const sl_ynode *media = pick_media(get(rb, "content"), &ctype);
    if (!media) return;
    t->request.content_type = cdup(c, sl_str_from_cstr(ctype));
    const sl_ynode *schema = deref(c, get(media, "schema"));
    const sl_ynode *props = get(schema, "properties");
    bool body_required = scalar(get(rb, "required")) && !strcmp(scalar(get(rb, "required")), "true");
    if (props && props->kind == SL_YN_MAP && !get(schema, "allOf") && !get(schema, "oneOf") && !get(schema, "anyOf")) {
        const sl_ynode *req = get(schema, "required");
        for (const sl_ynode *p = props->first; p && l->n < SL_ARRAY_LEN(l->items); p = p->next) {
            const char *pname = p->key->val.p;
            /*
             * A property named like a parameter becomes the argument
             * <name>_body (one input schema cannot hold both), and is still
             * sent upstream under its own name (key).
             */
            bool clash = find_arg(l, pname) != NULL;
            char *name = clash ? sl_arena_printf(c->a, "%s_body", pname) : cdup(c, p->key->val);
            if (!name) return (void)(c->oom = true);
            if (clash && find_arg(l, name)) {
                cerr(c, p, "request body property '%s': both '%s' and '%s' are taken", pname, pname, name);
                continue;
            }
            sl_mcp_arg_cfg *a = &l->items[l->n++];
            memset(a, 0, sizeof *a);
            a->name = name;
            if (clash) a->key = cdup(c, p->key->val);
            a->in = SL_MCP_IN_BODY;
            for (const sl_ynode *r = req && req->kind == SL_YN_SEQ ? req->first : NULL; r; r = r->next)
                if (scalar(r) && !strcmp(scalar(r), pname)) a->required = true;
            const char *ty = simple_type(c, p);
            a->type = (char *)(ty ? ty : "object");
            a->schema = schema_json(c, p);
        }
        return;
    }
    if (l->n == SL_ARRAY_LEN(l->items)) return;
    sl_mcp_arg_cfg *a = &l->items[l->n++];
    memset(a, 0, sizeof *a);
    a->name = cdup(c, find_arg(l, "body") ? SL_STR("request_body") : SL_STR("body"));
    a->in = SL_MCP_IN_BODY;
    a->required = body_required;
    const char *ty = simple_type(c, schema);
    a->type = (char *)(ty ? ty : "object");
    a->schema = schema ? schema_json(c, get(media, "schema")) : NULL;
    const char *d = scalar(get(rb, "description"));
    if (d) a->description = cdup(c, sl_str_from_cstr(d));
    char *tpl = sl_arena_printf(c->a, "{{args.%s}}", a->name);
    if (!tpl) c->oom = true;
    t->request.body = tpl;
}

/*
 * The tool's output schema: the JSON schema of the first 2xx answer, when it
 * describes an object (MCP's structuredContent is an object); else none.
 */
static void add_output_schema(conv *c, sl_mcp_tool_cfg *t, const sl_ynode *op)
{
    const sl_ynode *resps = get(op, "responses");
    for (const sl_ynode *rn = resps && resps->kind == SL_YN_MAP ? resps->first : NULL; rn; rn = rn->next) {
        const char *code = rn->key->val.p;
        if (code[0] != '2') continue;
        const char *ctype = NULL;
        const sl_ynode *media = pick_media(get(deref(c, rn), "content"), &ctype);
        if (!media || !strstr(ctype, "json")) return;
        const sl_ynode *schema = get(media, "schema"), *rs = deref(c, schema);
        const char *ty = scalar(get(rs, "type"));
        if (!rs || !ty || strcmp(ty, "object") || get(rs, "oneOf") || get(rs, "anyOf")) return;
        t->output_schema = schema_json(c, schema);
        return;
    }
}

static void add_operation(conv *c, sl_mcp_tool_cfg *t, const char *base, const char *path, const char *method,
                          const sl_ynode *item, const sl_ynode *op)
{
    char upper[8];
    size_t k = 0;
    for (; method[k] && k + 1 < sizeof upper; k++) upper[k] = (char)(method[k] - ('a' <= method[k] && method[k] <= 'z' ? 32 : 0));
    upper[k] = '\0';
    memset(t, 0, sizeof *t);
    t->name = tool_name(c, scalar(get(op, "operationId")), method, path);
    t->description = describe(c, op);
    t->request.method = cdup(c, sl_str_from_cstr(upper));
    char *url = sl_arena_printf(c->a, "%s%s", base, path);
    if (!url) c->oom = true;
    t->request.url = url;
    t->timeout_ms = 30000;
    static arglist l; /* large: not on the stack; the converter runs on the main thread only */
    l.n = 0;
    const sl_ynode *pp = get(item, "parameters"), *op_params = get(op, "parameters");
    for (const sl_ynode *p = pp && pp->kind == SL_YN_SEQ ? pp->first : NULL; p; p = p->next) add_param(c, &l, p);
    for (const sl_ynode *p = op_params && op_params->kind == SL_YN_SEQ ? op_params->first : NULL; p; p = p->next)
        add_param(c, &l, p);
    const sl_ynode *rb = get(op, "requestBody");
    if (rb) add_body(c, &l, t, rb);
    add_output_schema(c, t, op);
    if (l.n) {
        t->args = sl_arena_alloc(c->a, l.n * sizeof(sl_mcp_arg_cfg));
        if (!t->args) return (void)(c->oom = true);
        memcpy(t->args, l.items, l.n * sizeof(sl_mcp_arg_cfg));
        t->nargs = l.n;
    }
    sl_buf b;
    sl_buf_init(&b, 8u << 20);
    if (sl_mcp_build_input_schema(t->args, t->nargs, &b) == SL_OK) t->input_schema = cdup(c, sl_buf_str(&b));
    else c->oom = true;
    sl_buf_free(&b);
}

/* ---------------------------------------------------------------- document */

static char *base_url(conv *c, const char *override)
{
    if (override) return cdup(c, sl_str_from_cstr(override));
    const sl_ynode *servers = get(c->root, "servers");
    const sl_ynode *s0 = servers && servers->kind == SL_YN_SEQ ? servers->first : NULL;
    const char *url = scalar(get(s0, "url"));
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        cerr(c, s0 ? s0 : servers, "servers[0].url is missing or not absolute: give base_url (--base-url)");
        return NULL;
    }
    /* Server variables take their defaults. */
    sl_buf b;
    sl_buf_init(&b, 8192);
    const sl_ynode *vars = get(s0, "variables");
    for (const char *p = url; *p;) {
        const char *e = *p == '{' ? strchr(p, '}') : NULL;
        if (e) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(e - p - 1), p + 1);
            const char *def = scalar(get(get(vars, name), "default"));
            sl_buf_append_cstr(&b, def ? def : "");
            p = e + 1;
        } else {
            sl_buf_append(&b, p++, 1);
        }
    }
    while (b.len && b.p[b.len - 1] == '/') b.len--;
    char *out = cdup(c, sl_buf_str(&b));
    sl_buf_free(&b);
    return out;
}

/* The first security requirement whose scheme maps to upstream_auth. */
static void map_security(conv *c, sl_openapi_result *out)
{
    const sl_ynode *schemes = get(get(c->root, "components"), "securitySchemes");
    const sl_ynode *sec = get(c->root, "security");
    const sl_ynode *order = sec && sec->kind == SL_YN_SEQ ? sec->first : NULL;
    const sl_ynode *cand = schemes && schemes->kind == SL_YN_MAP ? schemes->first : NULL;
    for (const sl_ynode *s = order && order->kind == SL_YN_MAP && order->first ? order->first : cand; s; s = s->next) {
        const char *sname = s->key ? s->key->val.p : NULL;
        const sl_ynode *def = deref(c, get(schemes, sname));
        const char *type = scalar(get(def, "type")), *scheme = scalar(get(def, "scheme"));
        if (!type || !sname) continue;
        char *val = sl_arena_printf(c->a, "{{config.%s}}", sname);
        if (!val) return (void)(c->oom = true);
        sl_mcp_auth_cfg *au = &out->auth;
        if (!strcmp(type, "apiKey") && scalar(get(def, "name")) && scalar(get(def, "in")) &&
            strcmp(scalar(get(def, "in")), "cookie")) {
            au->type = SL_MCP_AUTH_API_KEY;
            au->in = !strcmp(scalar(get(def, "in")), "query") ? SL_MCP_IN_QUERY : SL_MCP_IN_HEADER;
            au->name = cdup(c, sl_str_from_cstr(scalar(get(def, "name"))));
            au->value = val;
        } else if (!strcmp(type, "http") && scheme && !strcasecmp(scheme, "basic")) {
            au->type = SL_MCP_AUTH_BASIC;
            au->username = sl_arena_printf(c->a, "{{config.%s_username}}", sname);
            au->password = sl_arena_printf(c->a, "{{config.%s_password}}", sname);
        } else if ((!strcmp(type, "http") && scheme && !strcasecmp(scheme, "bearer")) || !strcmp(type, "oauth2") ||
                   !strcmp(type, "openIdConnect")) {
            au->type = SL_MCP_AUTH_BEARER;
            au->value = val;
        } else {
            continue;
        }
        out->auth_config_key = cdup(c, sl_str_from_cstr(sname));
        return;
    }
}

int sl_openapi_convert(sl_arena *a, const char *text, size_t len, const char *prefix, const char *base,
                       sl_openapi_result *out, sl_buf *errors)
{
    memset(out, 0, sizeof *out);
    conv c = {.a = a, .errors = errors, .prefix = prefix};
    sl_arena_init(&c.tmp, 64 * 1024, 0);
    sl_ynode *root = NULL;
    int rc = sl_yaml_tree_parse(&c.tmp, text, len, false, &root, tree_err, &c);
    if (rc == SL_ENOMEM) goto done;
    if (!root || root->kind != SL_YN_MAP) {
        if (!c.nerr) cerr(&c, root, "not an OpenAPI document (expected a mapping)");
        rc = SL_EPARSE;
        goto done;
    }
    c.root = root;
    const char *ver = scalar(get(root, "openapi"));
    if (!ver || strncmp(ver, "3.", 2)) {
        cerr(&c, root, "only OpenAPI 3.0 and 3.1 are supported (openapi: 3.x)%s", get(root, "swagger") ? "; this is Swagger 2" : "");
        rc = SL_EPARSE;
        goto done;
    }
    const sl_ynode *info = get(root, "info");
    if (scalar(get(info, "title"))) out->title = cdup(&c, sl_str_from_cstr(scalar(get(info, "title"))));
    if (scalar(get(info, "description"))) out->description = cdup(&c, sl_str_from_cstr(scalar(get(info, "description"))));
    out->base_url = base_url(&c, base);
    map_security(&c, out);
    const sl_ynode *paths = get(root, "paths");
    size_t nops = 0;
    static const char *const methods[] = {"get", "put", "post", "delete", "patch", "head", "options"};
    for (const sl_ynode *p = paths && paths->kind == SL_YN_MAP ? paths->first : NULL; p; p = p->next)
        for (size_t m = 0; m < SL_ARRAY_LEN(methods); m++) nops += get(p, methods[m]) != NULL;
    if (nops > MAX_OPS) {
        cerr(&c, paths, "too many operations (%zu, max %d)", nops, MAX_OPS);
        rc = SL_EPARSE;
        goto done;
    }
    if (nops && out->base_url) {
        out->tools = sl_arena_calloc(a, nops * sizeof(sl_mcp_tool_cfg));
        if (!out->tools) c.oom = true;
    }
    for (const sl_ynode *p = paths && paths->kind == SL_YN_MAP ? paths->first : NULL; p && out->tools && !c.oom; p = p->next) {
        const sl_ynode *item = deref(&c, p);
        for (size_t m = 0; m < SL_ARRAY_LEN(methods) && !c.oom; m++) {
            const sl_ynode *op = get(item, methods[m]);
            if (!op) continue;
            sl_mcp_tool_cfg *t = &out->tools[out->ntools];
            add_operation(&c, t, out->base_url, p->key->val.p, methods[m], item, op);
            bool dupname = false;
            for (size_t i = 0; i < out->ntools && t->name; i++) dupname |= !strcmp(out->tools[i].name, t->name);
            if (!t->name || !t->name[0]) cerr(&c, op, "%s %s: cannot make a tool name", methods[m], p->key->val.p);
            else if (dupname) cerr(&c, op, "%s %s: duplicate tool name '%s'", methods[m], p->key->val.p, t->name);
            else out->ntools++;
        }
    }
    if (!nops) cerr(&c, root, "the document has no operations under paths");
    rc = c.oom ? SL_ENOMEM : c.nerr ? SL_EPARSE : SL_OK;
done:
    sl_arena_free(&c.tmp);
    return c.oom ? SL_ENOMEM : rc;
}

int sl_openapi_convert_file(sl_arena *a, const char *path, const char *prefix, const char *base, sl_openapi_result *out,
                            sl_buf *errors)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errors) sl_buf_appendf(errors, "cannot open %s: %s\n", path, strerror(errno));
        return SL_EPARSE;
    }
    sl_buf b;
    sl_buf_init(&b, SL_YAML_MAX_BYTES + 1);
    char chunk[16384];
    size_t n;
    int rc = SL_OK;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = sl_buf_append(&b, chunk, n);
    fclose(f);
    if (rc == SL_ELIMIT) {
        if (errors) sl_buf_appendf(errors, "%s: larger than 4 MiB\n", path);
        sl_buf_free(&b);
        return SL_EPARSE;
    }
    if (!rc) rc = sl_openapi_convert(a, b.p ? b.p : "", b.len, prefix, base, out, errors);
    sl_buf_free(&b);
    return rc;
}
