/*
 * config_check.c: checks across models entries, done once all are parsed:
 * every fallback must name a models entry, and following fallbacks must
 * never come back to where it started (A -> B -> A would bounce a failing
 * request forever). Fallback names resolve like requests do: the first entry
 * in file order whose name or glob matches.
 */
#include "config/config_keys.h"

#include <stdio.h>

/* The YAML node of models[mi].fallbacks[fi] (counting only non-empty items, as the loader keeps them). */
static const sl_ynode *fallback_node(const sl_ynode *models, size_t mi, size_t fi)
{
    const sl_ynode *item = models->first;
    for (size_t i = 0; item && i < mi; i++) item = item->next;
    const sl_ynode *fb = sl_yaml_map_get(item, "fallbacks");
    if (!fb || fb->kind != SL_YN_SEQ) return fb;
    size_t k = 0;
    for (const sl_ynode *it = fb->first; it; it = it->next) {
        if (it->kind == SL_YN_SCALAR && it->val.n == 0) continue;
        if (k++ == fi) return it;
    }
    return fb;
}

typedef struct walk {
    int32_t *edge;   /* edge[i * SL_FB_MAX + j]: entry that models[i].fallbacks[j] resolves to, or -1 */
    uint8_t *color;  /* 0 unseen, 1 on the current path, 2 done */
    uint32_t *stack; /* current path (entry indices) */
    uint32_t *next;  /* per path element: next fallback to follow */
} walk;

#define SL_FB_MAX 16 /* models[].fallbacks max_items */

static void report_loop(sl_cfg_ctx *ctx, const sl_ynode *models, const walk *w, size_t depth, uint32_t to, size_t fi)
{
    char msg[400];
    size_t used = 0, start = 0;
    while (w->stack[start] != to) start++;
    for (size_t i = start; i <= depth; i++) {
        uint32_t e = i < depth ? w->stack[i] : to;
        int n = snprintf(msg + used, sizeof msg - used, "%s%s", i > start ? " -> " : "", ctx->cfg->models[e].name);
        if (n < 0 || (size_t)n >= sizeof msg - used) break;
        used += (size_t)n;
    }
    uint32_t from = w->stack[depth - 1];
    size_t saved = sl_cfg_path_push(ctx, NULL, (long)from);
    sl_cfg_error(ctx, fallback_node(models, from, fi), "%s.fallbacks: fallback loop: %s", ctx->path, msg);
    sl_cfg_path_pop(ctx, saved);
}

/* Depth-first search from root without recursion (up to 10000 entries deep). */
static void walk_from(sl_cfg_ctx *ctx, const sl_ynode *models, walk *w, uint32_t root)
{
    size_t depth = 0;
    w->stack[depth] = root, w->next[depth] = 0, depth++;
    w->color[root] = 1;
    while (depth) {
        uint32_t cur = w->stack[depth - 1];
        uint32_t j = w->next[depth - 1]++;
        if (j >= ctx->cfg->models[cur].nfallbacks) {
            w->color[cur] = 2;
            depth--;
            continue;
        }
        int32_t to = w->edge[cur * SL_FB_MAX + j];
        if (to < 0 || w->color[to] == 2) continue;
        if (w->color[to] == 1) {
            report_loop(ctx, models, w, depth, (uint32_t)to, j);
            continue;
        }
        w->color[to] = 1;
        w->stack[depth] = (uint32_t)to, w->next[depth] = 0, depth++;
    }
}

void sl_cfg_check_models(sl_cfg_ctx *ctx, const sl_ynode *models)
{
    const sl_config *c = ctx->cfg;
    size_t n = c->nmodels;
    if (!n || !models) return;
    walk w = {
        .edge = sl_arena_alloc(ctx->tmp, n * SL_FB_MAX * sizeof(int32_t)),
        .color = sl_arena_calloc(ctx->tmp, n),
        .stack = sl_arena_alloc(ctx->tmp, n * sizeof(uint32_t)),
        .next = sl_arena_alloc(ctx->tmp, n * sizeof(uint32_t)),
    };
    if (!w.edge || !w.color || !w.stack || !w.next) {
        ctx->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < SL_FB_MAX; j++) w.edge[i * SL_FB_MAX + j] = -1;
        for (size_t j = 0; j < c->models[i].nfallbacks && j < SL_FB_MAX; j++) {
            const char *fb = c->models[i].fallbacks[j];
            const sl_model_cfg *to = sl_config_find_model(c, sl_str_from_cstr(fb));
            if (to) {
                w.edge[i * SL_FB_MAX + j] = (int32_t)to->index;
                continue;
            }
            size_t saved = sl_cfg_path_push(ctx, NULL, (long)i);
            sl_cfg_error(ctx, fallback_node(models, i, j), "%s.fallbacks: '%s' matches no models entry", ctx->path, fb);
            sl_cfg_path_pop(ctx, saved);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!w.color[i]) walk_from(ctx, models, &w, (uint32_t)i);
}
