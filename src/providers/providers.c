/* providers.c: upstream URLs and headers per provider type (see providers.h). */
#include "providers/providers.h"

static void add_header(sl_provider_call *c, const char *name, sl_str value)
{
    if (c->nheaders < SL_ARRAY_LEN(c->headers))
        c->headers[c->nheaders++] = (sl_http_header){sl_str_from_cstr(name), value};
}

/* a + b + c joined in the arena: the per-request URL and "Bearer KEY" without printf. */
static char *join3(sl_arena *a, const char *x, const char *y, const char *z)
{
    size_t nx = strlen(x), ny = strlen(y), nz = strlen(z);
    char *o = sl_arena_alloc(a, nx + ny + nz + 1);
    if (!o) return NULL;
    memcpy(o, x, nx);
    memcpy(o + nx, y, ny);
    memcpy(o + nx + ny, z, nz);
    o[nx + ny + nz] = '\0';
    return o;
}

static bool is_azure(const sl_provider_cfg *p) { return strcmp(p->type, "azure") == 0; }

static char *openai_url(const sl_provider_cfg *p, sl_call_kind kind, sl_str model, sl_arena *a)
{
    const char *path = kind == SL_CALL_EMBEDDINGS ? "embeddings" : kind == SL_CALL_RESPONSES ? "responses"
                                                                                              : "chat/completions";
    if (is_azure(p) && kind == SL_CALL_RESPONSES) /* Azure's v1 API: not deployment-scoped, the deployment is "model" */
        return sl_arena_printf(a, "%s/openai/v1/responses", p->base_url);
    if (is_azure(p)) /* deployment-scoped URL; the deployment is the upstream model name */
        return sl_arena_printf(a, "%s/openai/deployments/%.*s/%s?api-version=%s", p->base_url, SL_STR_FMT(model), path,
                               p->api_version ? p->api_version : "2024-10-21");
    return join3(a, p->base_url, "/", path);
}

int sl_provider_build_call(const sl_provider_cfg *p, sl_call_kind kind, sl_str model, bool stream, const char *key,
                           sl_arena *a, sl_provider_call *call)
{
    call->nheaders = 0;
    add_header(call, "content-type", SL_STR("application/json"));
    switch (p->proto) {
    case SL_PROTO_OPENAI:
        call->url = openai_url(p, kind, model, a);
        if (key && is_azure(p)) add_header(call, "api-key", sl_str_from_cstr(key));
        else if (key) add_header(call, "authorization", sl_str_from_cstr(join3(a, "Bearer ", key, "")));
        break;
    case SL_PROTO_ANTHROPIC:
        if (kind != SL_CALL_CHAT) return SL_ENOTFOUND;
        call->url = join3(a, p->base_url, "/messages", "");
        add_header(call, "anthropic-version", SL_STR("2023-06-01"));
        if (key) add_header(call, "x-api-key", sl_str_from_cstr(key));
        break;
    case SL_PROTO_GEMINI:
        if (kind == SL_CALL_RESPONSES) return SL_ENOTFOUND;
        if (kind == SL_CALL_EMBEDDINGS)
            call->url = sl_arena_printf(a, "%s/models/%.*s:batchEmbedContents", p->base_url, SL_STR_FMT(model));
        else
            call->url = sl_arena_printf(a, "%s/models/%.*s:%s", p->base_url, SL_STR_FMT(model),
                                        stream ? "streamGenerateContent?alt=sse" : "generateContent");
        if (key) add_header(call, "x-goog-api-key", sl_str_from_cstr(key));
        break;
    }
    if (!call->url) return SL_ENOMEM;
    if (stream) add_header(call, "accept", SL_STR("text/event-stream"));
    for (size_t i = 0; i < p->nheaders; i++)
        add_header(call, p->headers[i].key, sl_str_from_cstr(p->headers[i].value));
    return SL_OK;
}
