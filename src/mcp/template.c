/*
 * template.c: the {{...}} templates of REST tools (see mcp_int.h for the
 * names and the escaping modes). Values are never interpreted as templates
 * themselves (one pass), so an argument cannot smuggle {{config.secret}}
 * into a request.
 */
#include <stdio.h>

#include "mcp/mcp_int.h"

int sl_url_encode(sl_buf *out, sl_str s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                    c == '.' || c == '~';
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        int rc = keep ? sl_buf_append(out, &s.p[i], 1) : sl_buf_append(out, enc, 3);
        if (rc) return rc;
    }
    return SL_OK;
}

int sl_json_path(const sl_json_doc *d, int t, sl_str path)
{
    size_t i = 0;
    while (t >= 0 && i < path.n) {
        size_t e = i;
        while (e < path.n && path.p[e] != '.') e++;
        sl_str seg = {path.p + i, e - i};
        if (sl_json_type_of(d, t) == SL_JSON_OBJECT) {
            t = sl_json_obj_get_str(d, t, seg);
        } else if (sl_json_type_of(d, t) == SL_JSON_ARRAY) {
            uint64_t idx;
            t = sl_str_to_u64(seg, UINT32_MAX, &idx) == SL_OK ? sl_json_arr_get(d, t, (uint32_t)idx) : -1;
        } else {
            t = -1;
        }
        i = e + 1;
    }
    return t;
}

static int write_str(sl_buf *out, sl_str s, sl_tpl_mode mode)
{
    switch (mode) {
    case SL_TPL_URL: return sl_url_encode(out, s);
    case SL_TPL_JSON: return sl_json_escape(out, s);
    default: return sl_buf_append_str(out, s);
    }
}

/* A JSON value: strings decoded (then escaped per mode), others as their JSON text. */
static int write_tok(sl_buf *out, const sl_json_doc *d, int t, sl_tpl_mode mode)
{
    if (sl_json_type_of(d, t) == SL_JSON_STRING) {
        sl_arena a;
        sl_arena_init(&a, 1024, 0);
        sl_str s;
        int rc = sl_json_str(d, t, &a, &s);
        if (!rc) rc = write_str(out, s, mode);
        sl_arena_free(&a);
        return rc;
    }
    sl_str raw = sl_json_raw(d, t);
    return mode == SL_TPL_URL ? sl_url_encode(out, raw) : sl_buf_append_str(out, raw);
}

static int render_name(sl_str name, const sl_tpl_ctx *ctx, sl_tpl_mode mode, sl_buf *out)
{
    name = sl_str_trim(name);
    if (sl_str_starts_with(name, SL_STR("args."))) {
        sl_str k = {name.p + 5, name.n - 5};
        int t = ctx->args && ctx->args_tok >= 0 ? sl_json_obj_get_str(ctx->args, ctx->args_tok, k) : -1;
        return t >= 0 ? write_tok(out, ctx->args, t, mode) : SL_OK;
    }
    if (sl_str_starts_with(name, SL_STR("config."))) {
        sl_str k = {name.p + 7, name.n - 7};
        for (size_t i = 0; i < ctx->nconfig; i++)
            if (sl_str_eq_lit(k, ctx->config[i].key)) /* trusted: a base URL from config stays a URL */
                return write_str(out, sl_str_from_cstr(ctx->config[i].value), mode == SL_TPL_URL ? SL_TPL_RAW : mode);
        return SL_OK;
    }
    if (sl_str_eq_lit(name, "response")) return ctx->resp && ctx->resp_tok >= 0 ? write_tok(out, ctx->resp, ctx->resp_tok, mode) : SL_OK;
    if (sl_str_starts_with(name, SL_STR("response."))) {
        int t = ctx->resp && ctx->resp_tok >= 0 ? sl_json_path(ctx->resp, ctx->resp_tok, (sl_str){name.p + 9, name.n - 9}) : -1;
        return t >= 0 ? write_tok(out, ctx->resp, t, mode) : SL_OK;
    }
    if (sl_str_eq_lit(name, "body")) return write_str(out, ctx->body, mode);
    if (sl_str_eq_lit(name, "status")) return sl_buf_appendf(out, "%d", ctx->status);
    return SL_OK;
}

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

int sl_tpl_render(sl_str tpl, const sl_tpl_ctx *ctx, sl_tpl_mode mode, sl_buf *out)
{
    int rc = SL_OK;
    size_t i = 0;
    while (i < tpl.n && !rc) {
        if (tpl.p[i] == '{' && i + 1 < tpl.n && tpl.p[i + 1] == '{') {
            const char *end = memmem(tpl.p + i + 2, tpl.n - i - 2, "}}", 2);
            if (end) {
                rc = render_name((sl_str){tpl.p + i + 2, (size_t)(end - tpl.p) - i - 2}, ctx, mode, out);
                i = (size_t)(end - tpl.p) + 2;
                continue;
            }
        } else if (tpl.p[i] == '{' && mode == SL_TPL_URL) {
            /* {name}: an OpenAPI-style path parameter. */
            size_t e = i + 1;
            while (e < tpl.n && ident_char(tpl.p[e])) e++;
            if (e < tpl.n && tpl.p[e] == '}' && e > i + 1) {
                char name[160];
                int n = snprintf(name, sizeof name, "args.%.*s", (int)(e - i - 1), tpl.p + i + 1);
                if (n > 0 && (size_t)n < sizeof name) rc = render_name((sl_str){name, (size_t)n}, ctx, mode, out);
                i = e + 1;
                continue;
            }
        }
        rc = sl_buf_append(out, &tpl.p[i], 1);
        i++;
    }
    return rc;
}
