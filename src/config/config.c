/*
 * config.c: loading a configuration snapshot: file -> YAML tree -> the key
 * tables' generic walker -> sl_config; plus release and lookups.
 *
 * Every problem is reported as "FILE:LINE:COL: message" (at most
 * SL_CFG_MAX_ERRORS of them) and loading goes on after one, so that a user
 * fixes a file in one round. Allocation failure stops nothing early either
 * but is remembered (ctx->oom) and wins over parse errors in the result.
 */
#include "config/config_keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/buf.h"

/* ---- context helpers ----------------------------------------------------- */

static void add_error_line(sl_cfg_ctx *ctx, int line, int col, const char *msg)
{
    if (ctx->nerr++ >= SL_CFG_MAX_ERRORS) return;
    sl_cfg_msg *m = &ctx->msgs[ctx->nerr - 1];
    m->line = line, m->col = col;
    if (!(m->msg = sl_arena_strndup(ctx->tmp, msg, strlen(msg)))) ctx->oom = true;
}

/* Writes the kept messages in file order (stable: same position keeps discovery order). */
static void flush_errors(sl_cfg_ctx *ctx)
{
    size_t n = (size_t)SL_MIN(ctx->nerr, SL_CFG_MAX_ERRORS);
    for (size_t i = 1; i < n; i++) {
        sl_cfg_msg m = ctx->msgs[i];
        size_t j = i;
        for (; j > 0 && (ctx->msgs[j - 1].line > m.line || (ctx->msgs[j - 1].line == m.line && ctx->msgs[j - 1].col > m.col)); j--)
            ctx->msgs[j] = ctx->msgs[j - 1];
        ctx->msgs[j] = m;
    }
    for (size_t i = 0; i < n && ctx->errors; i++) {
        const sl_cfg_msg *m = &ctx->msgs[i];
        if (!m->msg) continue;
        int rc = m->line > 0 ? sl_buf_appendf(ctx->errors, "%s:%d:%d: %s\n", ctx->file, m->line, m->col, m->msg)
                             : sl_buf_appendf(ctx->errors, "%s: %s\n", ctx->file, m->msg);
        if (rc == SL_ENOMEM) ctx->oom = true;
    }
    if (ctx->nerr > SL_CFG_MAX_ERRORS && ctx->errors &&
        sl_buf_appendf(ctx->errors, "%s: too many errors (%d), only the first %d shown\n", ctx->file, ctx->nerr,
                       SL_CFG_MAX_ERRORS) == SL_ENOMEM)
        ctx->oom = true;
}

void sl_cfg_error(sl_cfg_ctx *ctx, const sl_ynode *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    add_error_line(ctx, at ? at->line : 0, at ? at->col : 0, msg);
}

static void tree_error(void *ud, int line, int col, const char *msg) { add_error_line(ud, line, col, msg); }

size_t sl_cfg_path_push(sl_cfg_ctx *ctx, const char *name, long index)
{
    size_t old = ctx->pathlen, room = sizeof ctx->path - old;
    int n = name ? snprintf(ctx->path + old, room, "%s%s", old ? "." : "", name)
                 : snprintf(ctx->path + old, room, "[%ld]", index);
    ctx->pathlen = n < 0 || (size_t)n >= room ? sizeof ctx->path - 1 : old + (size_t)n;
    return old;
}

const char *sl_cfg_where(const sl_cfg_ctx *ctx) { return ctx->pathlen ? ctx->path : "the top level"; }

char *sl_cfg_strdup(sl_cfg_ctx *ctx, sl_str s)
{
    char *d = sl_arena_strndup(ctx->a, s.p ? s.p : "", s.n);
    if (!d) ctx->oom = true;
    return d;
}

void *sl_cfg_calloc(sl_cfg_ctx *ctx, size_t count, size_t size)
{
    if (count && size > SIZE_MAX / count) return ctx->oom = true, NULL;
    void *p = sl_arena_calloc(ctx->a, count * size);
    if (!p) ctx->oom = true;
    return p;
}

/* ---- the generic walker -------------------------------------------------- */

static bool is_absent(const sl_ynode *n) { return !n || sl_yaml_is_null(n); }

static bool want_scalar(sl_cfg_ctx *ctx, const sl_ynode *n, const char *what)
{
    if (n->kind == SL_YN_SCALAR) return true;
    sl_cfg_error(ctx, n, "%s: expected %s", ctx->path, what);
    return false;
}

int sl_cfg_number(sl_str v, uint64_t *out)
{
    *out = 0;
    bool negative = v.n > 1 && v.p[0] == '-' && v.p[1] >= '0' && v.p[1] <= '9';
    if (negative) return SL_ELIMIT;
    int rc = sl_str_to_u64(v, UINT64_MAX, out);
    if (rc == SL_EINVAL && v.n > 20 && strspn(v.p, "0123456789") == v.n) rc = SL_ELIMIT; /* too many digits */
    return rc;
}

static void parse_uint(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, uint64_t *out)
{
    if (!want_scalar(ctx, n, "a number")) return;
    uint64_t x = 0;
    int rc = sl_cfg_number(n->val, &x);
    if (rc == SL_EINVAL) {
        sl_cfg_error(ctx, n, "%s: expected a number", ctx->path);
    } else if (rc || x < k->min || x > k->max) {
        sl_cfg_error(ctx, n, "%s: must be between %llu and %llu", ctx->path, (unsigned long long)k->min,
                     (unsigned long long)k->max);
    } else {
        *out = x;
    }
}

static void parse_bool(sl_cfg_ctx *ctx, const sl_ynode *n, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off"};
    if (!want_scalar(ctx, n, "true or false")) return;
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++) {
        if (sl_str_eq_lit(n->val, yes[i]) || sl_str_eq_lit(n->val, no[i])) {
            *out = sl_str_eq_lit(n->val, yes[i]);
            return;
        }
    }
    sl_cfg_error(ctx, n, "%s: expected true or false", ctx->path);
}

static void parse_enum(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, int *out)
{
    if (!want_scalar(ctx, n, "a string")) return;
    char names[256];
    size_t used = 0;
    names[0] = '\0';
    for (int i = 0; k->enums[i]; i++) {
        if (sl_str_eq_lit(n->val, k->enums[i])) {
            *out = i;
            return;
        }
        int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", k->enums[i]);
        if (w > 0 && (size_t)w < sizeof names - used) used += (size_t)w;
    }
    sl_cfg_error(ctx, n, "%s: must be one of: %s", ctx->path, names);
}

static void parse_strlist(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    char ***items = (char ***)((char *)base + k->offset);
    size_t *count = (size_t *)((char *)base + k->count_offset);
    *items = NULL, *count = 0;
    if (n->kind == SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a list of strings", ctx->path);
        return;
    }
    const sl_ynode *one = n->kind == SL_YN_SCALAR ? n : NULL; /* a lone string is a list of one */
    size_t total = one ? 1 : n->n;
    if (total > k->max_items) {
        sl_cfg_error(ctx, n, "%s: too many items (max %zu)", ctx->path, k->max_items);
        return;
    }
    if (total == 0 || !(*items = sl_cfg_calloc(ctx, total, sizeof(char *)))) return;
    for (const sl_ynode *it = one ? one : n->first; it; it = one ? NULL : it->next) {
        if (it->kind != SL_YN_SCALAR) {
            sl_cfg_error(ctx, it, "%s: expected a string", ctx->path);
            continue;
        }
        if (it->val.n == 0) continue; /* "${UNSET}" expands to nothing: no item */
        if (!((*items)[*count] = sl_cfg_strdup(ctx, it->val))) return;
        (*count)++;
    }
}

static void parse_strmap(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_kv **kv = (sl_kv **)((char *)base + k->offset);
    size_t *count = (size_t *)((char *)base + k->count_offset);
    *kv = NULL, *count = 0;
    if (n->kind != SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a mapping", ctx->path);
        return;
    }
    if (n->n > k->max_items) {
        sl_cfg_error(ctx, n, "%s: too many entries (max %zu)", ctx->path, k->max_items);
        return;
    }
    if (n->n == 0 || !(*kv = sl_cfg_calloc(ctx, n->n, sizeof(sl_kv)))) return;
    for (const sl_ynode *v = n->first; v; v = v->next) {
        if (v->kind != SL_YN_SCALAR) {
            sl_cfg_error(ctx, v, "%s.%s: expected a string", ctx->path, v->key->val.p);
            continue;
        }
        if (v->val.n == 0) continue; /* "${UNSET}" expands to nothing: the entry is left out */
        sl_kv *e = &(*kv)[*count];
        if (!(e->key = sl_cfg_strdup(ctx, v->key->val)) || !(e->value = sl_cfg_strdup(ctx, v->val))) return;
        (*count)++;
    }
}

static void parse_value(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    void *field = (char *)base + k->offset;
    switch (k->type) {
    case SL_CK_STRING:
        if (want_scalar(ctx, n, "a string")) *(char **)field = sl_cfg_strdup(ctx, n->val);
        break;
    case SL_CK_UINT:
    case SL_CK_DURATION: parse_uint(ctx, k, n, field); break;
    case SL_CK_BOOL: parse_bool(ctx, n, field); break;
    case SL_CK_ENUM: parse_enum(ctx, k, n, field); break;
    case SL_CK_STRLIST: parse_strlist(ctx, k, n, base); break;
    case SL_CK_STRMAP: parse_strmap(ctx, k, n, base); break;
    case SL_CK_SECTION: sl_cfg_parse_section(ctx, k->sub, n, field); break;
    case SL_CK_CUSTOM: k->parse(ctx, k, n, base); break;
    }
}

/* A default's text as a node: flow YAML for lists and maps, else a plain scalar. */
static const sl_ynode *default_node(sl_cfg_ctx *ctx, const char *text)
{
    sl_ynode *n = NULL;
    if (text[0] == '[' || text[0] == '{') {
        int rc = sl_yaml_tree_parse(ctx->tmp, text, strlen(text), false, &n, tree_error, ctx);
        if (rc == SL_ENOMEM) ctx->oom = true;
        return rc ? NULL : n;
    }
    if (!(n = sl_yaml_scalar(ctx->tmp, text))) ctx->oom = true;
    return n;
}

void sl_cfg_parse_key(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *node, void *base)
{
    size_t saved = sl_cfg_path_push(ctx, k->name, 0);
    if (!is_absent(node)) {
        parse_value(ctx, k, node, base);
    } else if (k->type == SL_CK_SECTION) {
        sl_cfg_parse_section(ctx, k->sub, NULL, (char *)base + k->offset);
    } else if (k->def && !ctx->oom) {
        const sl_ynode *d = default_node(ctx, k->def);
        if (d) parse_value(ctx, k, d, base);
    }
    sl_cfg_path_pop(ctx, saved);
}

static const sl_ckey *find_key(const sl_csection *sec, sl_str name)
{
    for (size_t i = 0; i < sec->nkeys; i++)
        if (sl_str_eq_lit(name, sec->keys[i].name)) return &sec->keys[i];
    return NULL;
}

void sl_cfg_parse_section(sl_cfg_ctx *ctx, const sl_csection *sec, const sl_ynode *map, void *base)
{
    if (is_absent(map)) {
        map = NULL;
    } else if (map->kind != SL_YN_MAP) {
        sl_cfg_error(ctx, map, "%s: expected a mapping", sl_cfg_where(ctx));
        map = NULL;
    }
    for (const sl_ynode *v = map ? map->first : NULL; v; v = v->next)
        if (!find_key(sec, v->key->val))
            sl_cfg_error(ctx, v->key, "unknown key '%s' in %s", v->key->val.p, sl_cfg_where(ctx));
    for (size_t i = 0; i < sec->nkeys && !ctx->oom; i++) {
        const sl_ckey *k = &sec->keys[i];
        const sl_ynode *n = sl_yaml_map_get(map, k->name);
        if (k->required && is_absent(n)) {
            sl_cfg_error(ctx, n ? n : map, "missing required key '%s' in %s", k->name, sl_cfg_where(ctx));
            continue;
        }
        sl_cfg_parse_key(ctx, k, n, base);
    }
}

void *sl_cfg_parse_list(sl_cfg_ctx *ctx, const sl_ynode *seq, const sl_csection *sec, size_t elem_size,
                        size_t max_items, size_t *n,
                        void (*finish)(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index))
{
    *n = 0;
    if (is_absent(seq)) return NULL;
    if (seq->kind != SL_YN_SEQ) return sl_cfg_error(ctx, seq, "%s: expected a list", sl_cfg_where(ctx)), NULL;
    if (seq->n > max_items)
        return sl_cfg_error(ctx, seq, "%s: too many entries (max %zu)", sl_cfg_where(ctx), max_items), NULL;
    if (seq->n == 0) return NULL;
    char *arr = sl_cfg_calloc(ctx, seq->n, elem_size);
    if (!arr) return NULL;
    size_t i = 0;
    for (const sl_ynode *it = seq->first; it && !ctx->oom; it = it->next, i++) {
        size_t saved = sl_cfg_path_push(ctx, NULL, (long)i);
        if (it->kind != SL_YN_MAP) {
            sl_cfg_error(ctx, it, "%s: expected a mapping", ctx->path);
        } else {
            sl_cfg_parse_section(ctx, sec, it, arr + i * elem_size);
            if (finish && !ctx->oom) finish(ctx, it, arr + i * elem_size, i);
        }
        sl_cfg_path_pop(ctx, saved);
    }
    *n = i;
    return arr;
}

/* ---- load / release / lookup --------------------------------------------- */

static void parse_root(sl_cfg_ctx *ctx, const sl_ynode *root)
{
    if (root && !sl_yaml_is_null(root) && root->kind != SL_YN_MAP) {
        sl_cfg_error(ctx, root, "the top level must be a mapping (server:, providers:, models:)");
        return;
    }
    if (root && root->kind != SL_YN_MAP) root = NULL;
    for (const sl_ynode *v = root ? root->first : NULL; v; v = v->next) {
        bool known = false;
        for (size_t i = 0; i < sl_config_ntop && !known; i++) known = sl_str_eq_lit(v->key->val, sl_config_top[i].name);
        if (!known) sl_cfg_error(ctx, v->key, "unknown key '%s' at the top level", v->key->val.p);
    }
    for (size_t i = 0; i < sl_config_ntop && !ctx->oom; i++) {
        const sl_ynode *n = sl_yaml_map_get(root, sl_config_top[i].name);
        size_t saved = sl_cfg_path_push(ctx, sl_config_top[i].name, 0);
        sl_config_top[i].parse(ctx, is_absent(n) ? NULL : n, ctx->cfg);
        sl_cfg_path_pop(ctx, saved);
    }
}

int sl_config_load_string(const char *name, const char *yaml, size_t len, sl_config **out, struct sl_buf *errors)
{
    *out = NULL;
    if (!yaml) yaml = "", len = 0;
    sl_config *cfg = sl_calloc(1, sizeof *cfg);
    if (!cfg) return SL_ENOMEM;
    sl_arena_init(&cfg->arena, 4096, 0);
    sl_arena tmp;
    sl_arena_init(&tmp, 8192, 0);
    sl_cfg_ctx ctx = {.file = name ? name : "<string>", .cfg = cfg, .a = &cfg->arena, .tmp = &tmp, .errors = errors};
    cfg->path = sl_cfg_strdup(&ctx, sl_str_from_cstr(ctx.file));

    sl_ynode *root = NULL;
    int rc = ctx.oom ? SL_ENOMEM : sl_yaml_tree_parse(&tmp, yaml, len, true, &root, tree_error, &ctx);
    if (rc != SL_ENOMEM && (rc == SL_OK || root)) parse_root(&ctx, root);
    if (!ctx.oom && rc != SL_ENOMEM) flush_errors(&ctx);
    sl_arena_free(&tmp);

    if (ctx.oom || rc == SL_ENOMEM) rc = SL_ENOMEM;
    else if (rc || ctx.nerr) rc = SL_EPARSE;
    if (rc) {
        sl_arena_free(&cfg->arena);
        sl_free(cfg);
        return rc;
    }
    atomic_init(&cfg->refs, 1);
    *out = cfg;
    return SL_OK;
}

/* Reads at most SL_YAML_MAX_BYTES + 1 bytes: one more than allowed tells "too large". */
static int read_file(const char *path, char **text, size_t *len, struct sl_buf *errors)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errors) sl_buf_appendf(errors, "%s: cannot open: %s\n", path, strerror(errno));
        return SL_EIO;
    }
    sl_buf b;
    sl_buf_init(&b, SL_YAML_MAX_BYTES + 1);
    int rc = SL_OK;
    char chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        size_t take = SL_MIN(n, b.max - b.len);
        if ((rc = sl_buf_append(&b, chunk, take)) || b.len == b.max) break;
    }
    if (!rc && ferror(f)) {
        if (errors) sl_buf_appendf(errors, "%s: cannot read: %s\n", path, strerror(errno));
        rc = SL_EIO;
    }
    fclose(f);
    if (!rc && b.len > SL_YAML_MAX_BYTES) {
        if (errors) sl_buf_appendf(errors, "%s: file too large (max 4 MiB)\n", path);
        rc = SL_EPARSE;
    }
    if (rc) {
        sl_buf_free(&b);
        return rc;
    }
    *text = sl_buf_detach(&b, len);
    return *text ? SL_OK : SL_ENOMEM;
}

int sl_config_load_file(const char *path, sl_config **out, struct sl_buf *errors)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, errors);
    if (rc) return rc;
    rc = sl_config_load_string(path, text, len, out, errors);
    sl_free(text);
    return rc;
}

void sl_config_release(sl_config *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    sl_arena_free(&c->arena);
    sl_free(c);
}

const sl_model_cfg *sl_config_find_model(const sl_config *c, sl_str name)
{
    for (size_t i = 0; i < c->nmodels; i++) {
        const sl_model_cfg *m = &c->models[i];
        if (!m->name) continue; /* only while loading a file with errors */
        sl_str pat = sl_str_from_cstr(m->name);
        if (m->is_glob ? sl_glob_match(pat, name) : sl_str_eq(pat, name)) return m;
    }
    return NULL;
}

const sl_provider_cfg *sl_config_find_provider(const sl_config *c, sl_str name)
{
    for (size_t i = 0; i < c->nproviders; i++)
        if (c->providers[i].name && sl_str_eq_lit(name, c->providers[i].name)) return &c->providers[i];
    return NULL;
}
