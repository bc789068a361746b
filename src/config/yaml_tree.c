/*
 * yaml_tree.c: libyaml events -> sl_ynode tree (see yaml_tree.h).
 *
 * Structural problems (syntax errors, aliases, tags, depth) stop the build at
 * once: what follows them cannot be trusted. Problems that leave the tree
 * well formed (a duplicate key, a bad ${...}) are reported and the build goes
 * on, so that the loader can report them together with validation errors.
 */
#include "config/yaml_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>

/* A map with more keys than this is surely not a configuration (and keeps the duplicate check cheap). */
#define MAP_MAX_KEYS 10000

typedef struct tree_builder {
    sl_arena *a;
    bool expand;
    sl_yaml_err_fn err;
    void *ud;
    sl_ynode *stack[SL_YAML_MAX_DEPTH];
    sl_ynode *pending_key[SL_YAML_MAX_DEPTH]; /* map levels: key waiting for its value */
    int depth;
    size_t nodes;
    int nerr;
    bool oom;
    sl_ynode *root;
} tree_builder;

static void tb_error(tree_builder *tb, int line, int col, const char *msg)
{
    tb->nerr++;
    if (tb->err) tb->err(tb->ud, line, col, msg);
}

static sl_ynode *node_new(sl_arena *a, sl_yn_kind kind, int line, int col)
{
    sl_ynode *n = sl_arena_calloc(a, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

sl_ynode *sl_yaml_scalar(sl_arena *a, const char *text)
{
    sl_ynode *n = node_new(a, SL_YN_SCALAR, 0, 0);
    if (!n) return NULL;
    n->val = sl_arena_str(a, sl_str_from_cstr(text));
    if (!n->val.p) return NULL;
    n->plain = true;
    return n;
}

static sl_ynode *map_find(const sl_ynode *map, sl_str key)
{
    if (!map || map->kind != SL_YN_MAP) return NULL;
    for (sl_ynode *v = map->first; v; v = v->next)
        if (sl_str_eq(v->key->val, key)) return v;
    return NULL;
}

sl_ynode *sl_yaml_map_get(const sl_ynode *map, const char *key) { return map_find(map, sl_str_from_cstr(key)); }

bool sl_yaml_is_null(const sl_ynode *n)
{
    if (!n || n->kind != SL_YN_SCALAR || !n->plain) return false;
    sl_str v = n->val;
    return v.n == 0 || sl_str_eq_lit(v, "~") || sl_str_eq_lit(v, "null") || sl_str_eq_lit(v, "Null") ||
           sl_str_eq_lit(v, "NULL");
}

/* ---- ${VAR} expansion ---------------------------------------------------- */

static bool var_name_ok(sl_str name)
{
    if (name.n == 0 || name.n > 255) return false;
    for (size_t i = 0; i < name.n; i++) {
        unsigned char c = (unsigned char)name.p[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/* One pass over s: measures (out == NULL) or writes the expansion. */
static int expand_pass(sl_str s, char *out, size_t cap, size_t *len, const char **why)
{
    size_t o = 0;
    for (size_t i = 0; i < s.n;) {
        const char *piece = s.p + i;
        size_t piece_n = 1;
        if (s.p[i] == '$' && i + 2 < s.n && s.p[i + 1] == '$' && s.p[i + 2] == '{') {
            piece = "${", piece_n = 2, i += 3; /* "$${" escapes a literal "${" */
        } else if (s.p[i] == '$' && i + 1 < s.n && s.p[i + 1] == '{') {
            const char *end = memchr(s.p + i + 2, '}', s.n - i - 2);
            if (!end) return *why = "unterminated '${' (missing '}')", SL_EPARSE;
            sl_str body = {s.p + i + 2, (size_t)(end - (s.p + i + 2))};
            sl_str name = body, def = SL_STR_NULL;
            bool has_def = false;
            for (size_t k = 0; k + 1 < body.n; k++) {
                if (body.p[k] == ':' && body.p[k + 1] == '-') {
                    name.n = k, def = (sl_str){body.p + k + 2, body.n - k - 2}, has_def = true;
                    break;
                }
            }
            if (!var_name_ok(name)) return *why = "invalid variable name in '${...}'", SL_EPARSE;
            char nbuf[256];
            memcpy(nbuf, name.p, name.n);
            nbuf[name.n] = '\0';
            const char *v = getenv(nbuf);
            if (has_def && (!v || !*v)) {
                piece = def.p, piece_n = def.n;
            } else {
                piece = v ? v : "", piece_n = v ? strlen(v) : 0;
            }
            i = (size_t)(end - s.p) + 1;
        } else {
            i++;
        }
        if (piece_n > SL_YAML_MAX_EXPANDED - o) return *why = "value too long after ${...} expansion", SL_EPARSE;
        if (out && piece_n > cap - o) return *why = "environment changed during expansion", SL_EPARSE;
        if (out && piece_n) memcpy(out + o, piece, piece_n);
        o += piece_n;
    }
    *len = o;
    return SL_OK;
}

int sl_yaml_expand_env(sl_arena *a, sl_str s, sl_str *out, const char **why)
{
    if (!memchr(s.p ? s.p : "", '$', s.n)) {
        *out = s;
        return SL_OK;
    }
    size_t n;
    int rc = expand_pass(s, NULL, 0, &n, why);
    if (rc) return rc;
    char *d = sl_arena_alloc(a, n + 1);
    if (!d) return SL_ENOMEM;
    /* The write pass is bounded by the measured size in case another thread changed the environment. */
    if ((rc = expand_pass(s, d, n, &n, why))) return rc;
    d[n] = '\0';
    *out = (sl_str){d, n};
    return SL_OK;
}

/* ---- events -> tree ------------------------------------------------------ */

static bool at_key_position(const tree_builder *tb)
{
    if (tb->depth == 0) return false;
    const sl_ynode *parent = tb->stack[tb->depth - 1];
    return parent->kind == SL_YN_MAP && !tb->pending_key[tb->depth - 1];
}

/* Adds node under the open container (or as the root). Returns false to stop. */
static bool attach(tree_builder *tb, sl_ynode *node)
{
    if (++tb->nodes > SL_YAML_MAX_NODES) {
        tb_error(tb, node->line, node->col, "document too large (more than 200000 nodes)");
        return false;
    }
    if (tb->depth == 0) {
        tb->root = node;
        return true;
    }
    int d = tb->depth - 1;
    sl_ynode *parent = tb->stack[d];
    if (parent->kind == SL_YN_MAP) {
        if (!tb->pending_key[d]) {
            if (node->kind != SL_YN_SCALAR) {
                tb_error(tb, node->line, node->col, "mapping keys must be plain strings");
                return false;
            }
            if (parent->n >= MAP_MAX_KEYS) {
                tb_error(tb, node->line, node->col, "mapping has too many keys (max 10000)");
                return false;
            }
            if (map_find(parent, node->val)) {
                char msg[160];
                snprintf(msg, sizeof msg, "duplicate key '%.100s'", node->val.p);
                tb_error(tb, node->line, node->col, msg);
            }
            tb->pending_key[d] = node;
            return true;
        }
        node->key = tb->pending_key[d];
        tb->pending_key[d] = NULL;
    }
    if (parent->last) parent->last->next = node;
    else parent->first = node;
    parent->last = node;
    parent->n++;
    return true;
}

static bool reject_anchor_tag(tree_builder *tb, const yaml_event_t *ev, const unsigned char *anchor,
                              const unsigned char *tag)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (anchor) {
        tb_error(tb, line, col, "YAML anchors (&name) are not allowed");
        return false;
    }
    if (tag) {
        tb_error(tb, line, col, "YAML tags (!tag) are not allowed");
        return false;
    }
    return true;
}

static bool on_scalar(tree_builder *tb, const yaml_event_t *ev)
{
    if (!reject_anchor_tag(tb, ev, ev->data.scalar.anchor, ev->data.scalar.tag)) return false;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    sl_ynode *n = node_new(tb->a, SL_YN_SCALAR, line, col);
    if (!n) return tb->oom = true, false;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    sl_str raw = {(const char *)ev->data.scalar.value, ev->data.scalar.length};
    if (memchr(raw.p, '\0', raw.n)) {
        tb_error(tb, line, col, "NUL characters are not allowed in values");
        raw.n = strlen(raw.p);
    }
    n->val = sl_arena_str(tb->a, raw);
    if (!n->val.p) return tb->oom = true, false;
    if (tb->expand && !at_key_position(tb)) {
        const char *why = NULL;
        int rc = sl_yaml_expand_env(tb->a, n->val, &n->val, &why);
        if (rc == SL_ENOMEM) return tb->oom = true, false;
        if (rc) tb_error(tb, line, col, why);
    }
    return attach(tb, n);
}

static bool on_start(tree_builder *tb, const yaml_event_t *ev, sl_yn_kind kind)
{
    bool ok = kind == SL_YN_MAP ? reject_anchor_tag(tb, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag)
                                : reject_anchor_tag(tb, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag);
    if (!ok) return false;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (tb->depth >= SL_YAML_MAX_DEPTH) {
        tb_error(tb, line, col, "nesting is too deep (max 64 levels)");
        return false;
    }
    sl_ynode *n = node_new(tb->a, kind, line, col);
    if (!n) return tb->oom = true, false;
    if (!attach(tb, n)) return false;
    tb->stack[tb->depth] = n;
    tb->pending_key[tb->depth] = NULL;
    tb->depth++;
    return true;
}

static void report_syntax(tree_builder *tb, const yaml_parser_t *p)
{
    char msg[256];
    const yaml_mark_t *m = &p->problem_mark;
    if (p->context)
        snprintf(msg, sizeof msg, "YAML syntax error: %s %s", p->problem ? p->problem : "error", p->context);
    else
        snprintf(msg, sizeof msg, "YAML syntax error: %s", p->problem ? p->problem : "error");
    tb_error(tb, (int)m->line + 1, (int)m->column + 1, msg);
}

/* Handles one event; false stops the build (error reported or done). */
static bool on_event(tree_builder *tb, const yaml_event_t *ev, int *docs, bool *done)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT: *done = true; return false;
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1) {
            tb_error(tb, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                     "only one YAML document is allowed");
            return false;
        }
        return true;
    case YAML_ALIAS_EVENT:
        tb_error(tb, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                 "YAML aliases (*name) are not allowed");
        return false;
    case YAML_SCALAR_EVENT: return on_scalar(tb, ev);
    case YAML_SEQUENCE_START_EVENT: return on_start(tb, ev, SL_YN_SEQ);
    case YAML_MAPPING_START_EVENT: return on_start(tb, ev, SL_YN_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (tb->depth > 0) tb->depth--;
        return true;
    default: return true;
    }
}

int sl_yaml_tree_parse(sl_arena *a, const char *text, size_t len, bool expand_env, sl_ynode **root,
                       sl_yaml_err_fn err, void *ud)
{
    *root = NULL;
    if (len > SL_YAML_MAX_BYTES) {
        if (err) err(ud, 1, 1, "file too large (max 4 MiB)");
        return SL_EPARSE;
    }
    tree_builder tb = {.a = a, .expand = expand_env, .err = err, .ud = ud};
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return SL_ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int docs = 0;
    bool done = false;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.error == YAML_MEMORY_ERROR) tb.oom = true;
            else report_syntax(&tb, &p);
            break;
        }
        bool more = on_event(&tb, &ev, &docs, &done);
        yaml_event_delete(&ev);
        if (!more) break;
    }
    yaml_parser_delete(&p);
    if (tb.oom) return SL_ENOMEM;
    if (done) *root = tb.root; /* complete, even if some values were reported as bad */
    return tb.nerr || !done ? SL_EPARSE : SL_OK;
}
