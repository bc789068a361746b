/*
 * config_keys.c: the key tables of every section, the top-level section
 * table, and the few value types that need code of their own (listen
 * addresses, provider types, base URLs, target providers, retry conditions).
 *
 * docs/configuration.md documents exactly these tables; test_config.c checks
 * that every key and default written here appears there.
 */
#include "config/config_keys.h"

#include <arpa/inet.h>

#include "mcp/mcp.h"
#include <stdio.h>

#define ARR(a) a, SL_ARRAY_LEN(a)

/* ---- provider types (SPEC §2 provider table) ----------------------------- */

typedef struct provider_type {
    const char *name;
    sl_proto proto;
    const char *base_url; /* NULL: base_url is required */
} provider_type;

static const provider_type provider_types[] = {
    {"openai", SL_PROTO_OPENAI, "https://api.openai.com/v1"},
    {"azure", SL_PROTO_OPENAI, NULL},
    {"anthropic", SL_PROTO_ANTHROPIC, "https://api.anthropic.com/v1"},
    {"gemini", SL_PROTO_GEMINI, "https://generativelanguage.googleapis.com/v1beta"},
    {"deepseek", SL_PROTO_OPENAI, "https://api.deepseek.com/v1"},
    {"qwen", SL_PROTO_OPENAI, "https://dashscope.aliyuncs.com/compatible-mode/v1"},
    {"moonshot", SL_PROTO_OPENAI, "https://api.moonshot.cn/v1"},
    {"zhipu", SL_PROTO_OPENAI, "https://open.bigmodel.cn/api/paas/v4"},
    {"doubao", SL_PROTO_OPENAI, "https://ark.cn-beijing.volces.com/api/v3"},
    {"mistral", SL_PROTO_OPENAI, "https://api.mistral.ai/v1"},
    {"groq", SL_PROTO_OPENAI, "https://api.groq.com/openai/v1"},
    {"together", SL_PROTO_OPENAI, "https://api.together.xyz/v1"},
    {"fireworks", SL_PROTO_OPENAI, "https://api.fireworks.ai/inference/v1"},
    {"openrouter", SL_PROTO_OPENAI, "https://openrouter.ai/api/v1"},
    {"xai", SL_PROTO_OPENAI, "https://api.x.ai/v1"},
    {"ollama", SL_PROTO_OPENAI, "http://127.0.0.1:11434/v1"},
    {"vllm", SL_PROTO_OPENAI, "http://127.0.0.1:8000/v1"},
    {"openai-compatible", SL_PROTO_OPENAI, NULL},
};

static const provider_type *find_provider_type(sl_str name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(provider_types); i++)
        if (sl_str_eq_lit(name, provider_types[i].name)) return &provider_types[i];
    return NULL;
}

/* ---- listen addresses ---------------------------------------------------- */

int sl_cfg_parse_addr(sl_cfg_ctx *ctx, sl_str s, sl_listen_addr *out, const char **why)
{
    sl_str host, port;
    if (s.n && s.p[0] == '[') {
        const char *close = memchr(s.p, ']', s.n);
        if (!close || close + 1 >= s.p + s.n || close[1] != ':') return *why = "expected \"[v6addr]:port\"", SL_EINVAL;
        host = (sl_str){s.p + 1, (size_t)(close - s.p - 1)};
        port = (sl_str){close + 2, (size_t)(s.p + s.n - close - 2)};
    } else {
        const char *colon = memchr(s.p ? s.p : "", ':', s.n);
        if (!colon) return *why = "expected \"host:port\"", SL_EINVAL;
        host = (sl_str){s.p, (size_t)(colon - s.p)};
        port = (sl_str){colon + 1, (size_t)(s.p + s.n - colon - 1)};
        if (memchr(port.p, ':', port.n)) return *why = "IPv6 addresses need brackets, as in \"[::1]:8080\"", SL_EINVAL;
    }
    uint64_t p;
    if (sl_str_to_u64(port, 65535, &p)) return *why = "port must be between 0 and 65535", SL_EINVAL;
    char h[64];
    if (host.n == 0 || host.n >= sizeof h) return *why = "expected a numeric IP address or localhost", SL_EINVAL;
    memcpy(h, host.p, host.n);
    h[host.n] = '\0';
    unsigned char bin[16];
    bool v6 = s.p[0] == '[';
    if (!sl_str_eq_lit(host, "localhost") && inet_pton(v6 ? AF_INET6 : AF_INET, h, bin) != 1)
        return *why = v6 ? "not a valid IPv6 address" : "expected a numeric IP address or localhost", SL_EINVAL;
    if (!(out->host = sl_cfg_strdup(ctx, host))) return SL_ENOMEM;
    out->port = (int)p;
    return SL_OK;
}

static void addr_error(sl_cfg_ctx *ctx, const sl_ynode *n, const char *why)
{
    sl_cfg_error(ctx, n, "%s: '%s': %s", ctx->path, n->val.p, why);
}

static void parse_listen(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_server_cfg *s = base;
    if (n->kind == SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a list of \"host:port\"", ctx->path);
        return;
    }
    const sl_ynode *one = n->kind == SL_YN_SCALAR ? n : NULL;
    size_t total = one ? 1 : n->n;
    if (total == 0) {
        sl_cfg_error(ctx, n, "%s: needs at least one address", ctx->path);
        return;
    }
    if (total > k->max_items) {
        sl_cfg_error(ctx, n, "%s: too many addresses (max %zu)", ctx->path, k->max_items);
        return;
    }
    if (!(s->listen = sl_cfg_calloc(ctx, total, sizeof *s->listen))) return;
    s->nlisten = 0;
    for (const sl_ynode *it = one ? one : n->first; it; it = one ? NULL : it->next) {
        const char *why = NULL;
        if (it->kind != SL_YN_SCALAR) {
            sl_cfg_error(ctx, it, "%s: expected \"host:port\"", ctx->path);
            continue;
        }
        int rc = sl_cfg_parse_addr(ctx, it->val, &s->listen[s->nlisten], &why);
        if (rc == SL_EINVAL) addr_error(ctx, it, why);
        if (rc == SL_OK) s->nlisten++;
    }
}

static void parse_admin_listen(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_server_cfg *s = base;
    s->has_admin = false;
    if (n->kind != SL_YN_SCALAR) {
        sl_cfg_error(ctx, n, "%s: expected \"host:port\" or off", ctx->path);
        return;
    }
    if (n->val.n == 0 || sl_str_eq_lit(n->val, "off")) return;
    const char *why = NULL;
    int rc = sl_cfg_parse_addr(ctx, n->val, &s->admin_listen, &why);
    if (rc == SL_EINVAL) addr_error(ctx, n, why);
    s->has_admin = rc == SL_OK && s->admin_listen.port != 0;
}

/* ---- providers ----------------------------------------------------------- */

static void parse_provider_type(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_provider_cfg *p = base;
    const provider_type *t = n->kind == SL_YN_SCALAR ? find_provider_type(n->val) : NULL;
    if (!t) {
        sl_cfg_error(ctx, n, "%s: unknown provider type; known types: openai, azure, anthropic, gemini, deepseek, "
                             "qwen, moonshot, zhipu, doubao, mistral, groq, together, fireworks, openrouter, xai, "
                             "ollama, vllm, openai-compatible", ctx->path);
        return;
    }
    p->type = (char *)t->name; /* static storage outlives every snapshot */
    p->proto = t->proto;
}

static void parse_base_url(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_provider_cfg *p = base;
    if (n->kind != SL_YN_SCALAR) {
        sl_cfg_error(ctx, n, "%s: expected a URL", ctx->path);
        return;
    }
    sl_str u = sl_str_trim(n->val);
    if (!sl_str_starts_with(u, SL_STR("http://")) && !sl_str_starts_with(u, SL_STR("https://"))) {
        sl_cfg_error(ctx, n, "%s: must start with http:// or https://", ctx->path);
        return;
    }
    for (size_t i = 0; i < u.n; i++) {
        if ((unsigned char)u.p[i] <= ' ' || u.p[i] == 0x7f) {
            sl_cfg_error(ctx, n, "%s: must not contain spaces or control characters", ctx->path);
            return;
        }
    }
    while (u.n > 8 && u.p[u.n - 1] == '/') u.n--; /* paths are appended as "/chat/completions" */
    p->base_url = sl_cfg_strdup(ctx, u);
}

static bool header_name_ok(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) && !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static bool provider_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (; *s; s++)
        if (!strchr("-_.", *s) && !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static void check_headers(sl_cfg_ctx *ctx, const sl_ynode *item, const sl_provider_cfg *p)
{
    const sl_ynode *hn = sl_yaml_map_get(item, "headers");
    for (size_t i = 0; i < p->nheaders; i++) {
        const sl_ynode *at = hn;
        for (const sl_ynode *v = hn ? hn->first : NULL; v; v = v->next)
            if (sl_str_eq_lit(v->key->val, p->headers[i].key)) at = v->key;
        if (!header_name_ok(p->headers[i].key))
            sl_cfg_error(ctx, at, "%s.headers: '%s' is not a valid header name", ctx->path, p->headers[i].key);
        else if (strpbrk(p->headers[i].value, "\r\n"))
            sl_cfg_error(ctx, at, "%s.headers.%s: value must not contain line breaks", ctx->path, p->headers[i].key);
    }
}

static void provider_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_provider_cfg *p = elem;
    p->index = (uint32_t)index;
    const sl_ynode *name_node = sl_yaml_map_get(item, "name");
    if (p->name && !provider_name_ok(p->name)) {
        sl_cfg_error(ctx, name_node, "%s.name: '%s': use 1-64 letters, digits, '-', '_' or '.'", ctx->path, p->name);
    }
    if (p->type && !p->base_url) {
        const provider_type *t = find_provider_type(sl_str_from_cstr(p->type));
        if (t->base_url) p->base_url = (char *)t->base_url;
        else sl_cfg_error(ctx, item, "missing required key 'base_url' in %s (type %s has no default)", ctx->path, p->type);
    }
    check_headers(ctx, item, p);
}

/* ---- models -------------------------------------------------------------- */

static void parse_target_provider(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_target_cfg *t = base;
    if (n->kind != SL_YN_SCALAR) {
        sl_cfg_error(ctx, n, "%s: expected a provider name", ctx->path);
        return;
    }
    t->provider = (sl_provider_cfg *)sl_config_find_provider(ctx->cfg, n->val);
    if (!t->provider) sl_cfg_error(ctx, n, "%s: unknown provider '%s'", ctx->path, n->val.p);
}

static const sl_csection target_section;

static void parse_targets(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_model_cfg *m = base;
    m->targets = sl_cfg_parse_list(ctx, n, &target_section, sizeof(sl_target_cfg), k->max_items, &m->ntargets, NULL);
    if (n->kind == SL_YN_SEQ && n->n == 0) sl_cfg_error(ctx, n, "%s: needs at least one target", ctx->path);
}

static void parse_retry_on(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_retry_cfg *r = base;
    r->on_flags = 0, r->on_status = NULL, r->non_status = 0;
    if (n->kind == SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a list", ctx->path);
        return;
    }
    const sl_ynode *one = n->kind == SL_YN_SCALAR ? n : NULL;
    size_t total = one ? 1 : n->n;
    if (total > k->max_items) {
        sl_cfg_error(ctx, n, "%s: too many items (max %zu)", ctx->path, k->max_items);
        return;
    }
    if (total && !(r->on_status = sl_cfg_calloc(ctx, total, sizeof *r->on_status))) return;
    for (const sl_ynode *it = one ? one : n->first; it; it = one ? NULL : it->next) {
        uint64_t st = 0;
        if (it->kind == SL_YN_SCALAR && sl_str_eq_lit(it->val, "timeout")) {
            r->on_flags |= SL_RETRY_ON_TIMEOUT;
        } else if (it->kind == SL_YN_SCALAR && sl_str_eq_lit(it->val, "connect")) {
            r->on_flags |= SL_RETRY_ON_CONNECT;
        } else if (it->kind != SL_YN_SCALAR || sl_cfg_number(it->val, &st) == SL_EINVAL) {
            sl_cfg_error(ctx, it, "%s: expected an HTTP status (400-599), timeout or connect", ctx->path);
        } else if (st < 400 || st > 599) {
            sl_cfg_error(ctx, it, "%s: must be between 400 and 599", ctx->path);
        } else {
            bool seen = false;
            for (size_t i = 0; i < r->non_status; i++) seen |= r->on_status[i] == st;
            if (!seen) r->on_status[r->non_status++] = (uint16_t)st;
        }
    }
}

static void model_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_model_cfg *m = elem;
    m->index = (uint32_t)index;
    if (!m->name) return;
    const sl_ynode *name_node = sl_yaml_map_get(item, "name");
    m->is_glob = strpbrk(m->name, "*?") != NULL;
    if (!m->name[0]) sl_cfg_error(ctx, name_node, "%s.name: must not be empty", ctx->path);
}

/* ---- key tables ---------------------------------------------------------- */

#define OFF(type, field) offsetof(type, field)

static const sl_ckey limits_keys[] = {
    {.name = "max_header_bytes", .type = SL_CK_UINT, .offset = OFF(sl_limits_cfg, max_header_bytes), .min = 1024,
     .max = 1048576, .def = "16384", .doc = "Largest request line plus header block; larger gets 431."},
    {.name = "max_headers", .type = SL_CK_UINT, .offset = OFF(sl_limits_cfg, max_headers), .min = 8, .max = 10000,
     .def = "100", .doc = "Most header fields in one request; more gets 431."},
    {.name = "max_body_bytes", .type = SL_CK_UINT, .offset = OFF(sl_limits_cfg, max_body_bytes), .min = 1024,
     .max = 1073741824, .def = "33554432", .doc = "Largest request body (32 MiB, like Anthropic's limit); larger gets 413."},
    {.name = "header_timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_limits_cfg, header_timeout_ms), .min = 100,
     .max = 3600000, .def = "10000", .doc = "Deadline for the whole request header block (slowloris defence)."},
    {.name = "idle_timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_limits_cfg, idle_timeout_ms), .min = 100,
     .max = 86400000, .def = "75000", .doc = "A keep-alive connection with no request for this long is closed."},
    {.name = "max_connections", .type = SL_CK_UINT, .offset = OFF(sl_limits_cfg, max_connections), .min = 1,
     .max = 10000000, .def = "100000", .doc = "Client connections open at once; more are refused."},
};
static const sl_csection limits_section = {"server.limits", ARR(limits_keys)};

static const sl_ckey server_keys[] = {
    {.name = "listen", .type = SL_CK_CUSTOM, .parse = parse_listen, .max_items = 16, .def = "[\"127.0.0.1:8080\"]",
     .type_doc = "list of host:port",
     .doc = "Data-plane listeners: \"host:port\", IPv6 as \"[::1]:8080\"; host numeric or localhost; port 0 picks a free port."},
    {.name = "admin_listen", .type = SL_CK_CUSTOM, .parse = parse_admin_listen, .type_doc = "host:port",
     .doc = "Admin listener (/healthz /readyz /metrics); absent or off = none."},
    {.name = "workers", .type = SL_CK_UINT, .offset = OFF(sl_server_cfg, workers), .min = 0, .max = 1024, .def = "0",
     .doc = "Worker threads, one event loop each; 0 = one per CPU."},
    {.name = "drain_timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_server_cfg, drain_timeout_ms), .min = 0,
     .max = 3600000, .def = "30000", .doc = "On SIGTERM, how long in-flight requests may finish before exit."},
    {.name = "access_log", .type = SL_CK_STRING, .offset = OFF(sl_server_cfg, access_log),
     .doc = "Access log file (one JSON object a line); absent = stdout; off = none."},
    {.name = "reuse_port", .type = SL_CK_BOOL, .offset = OFF(sl_server_cfg, reuse_port), .def = "false",
     .doc = "Let other processes listen on the same address (SO_REUSEPORT: several sluice processes share the "
            "load, or a new one starts before the old one drains); false = refuse to start on a taken address."},
    {.name = "limits", .type = SL_CK_SECTION, .offset = OFF(sl_server_cfg, limits), .sub = &limits_section,
     .doc = "Client-side limits, below."},
};
static const sl_csection server_section = {"server", ARR(server_keys)};

static const sl_ckey timeouts_keys[] = {
    {.name = "connect_ms", .type = SL_CK_DURATION, .offset = OFF(sl_timeouts_cfg, connect_ms), .min = 1, .max = 600000,
     .def = "5000", .doc = "TCP plus TLS connect to the provider."},
    {.name = "first_token_ms", .type = SL_CK_DURATION, .offset = OFF(sl_timeouts_cfg, first_token_ms), .min = 1,
     .max = 3600000, .def = "60000", .doc = "Request sent to first response byte (first token when streaming)."},
    {.name = "idle_ms", .type = SL_CK_DURATION, .offset = OFF(sl_timeouts_cfg, idle_ms), .min = 1, .max = 3600000,
     .def = "60000", .doc = "Longest silence between two chunks of a response."},
    {.name = "total_ms", .type = SL_CK_DURATION, .offset = OFF(sl_timeouts_cfg, total_ms), .min = 1, .max = 86400000,
     .def = "600000", .doc = "Whole upstream attempt, first byte sent to last byte received."},
};
static const sl_csection timeouts_section = {"providers[].timeouts", ARR(timeouts_keys)};

static const sl_ckey health_check_keys[] = {
    {.name = "path", .type = SL_CK_STRING, .offset = OFF(sl_health_check_cfg, path),
     .doc = "Path probed with GET under base_url (e.g. /models); absent = no active checks."},
    {.name = "interval_ms", .type = SL_CK_DURATION, .offset = OFF(sl_health_check_cfg, interval_ms), .min = 100,
     .max = 3600000, .def = "10000", .doc = "Time between two probes (each worker probes on its own)."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_health_check_cfg, timeout_ms), .min = 1,
     .max = 600000, .def = "2000", .doc = "A probe not answered within this is a failure."},
    {.name = "unhealthy_after", .type = SL_CK_UINT, .offset = OFF(sl_health_check_cfg, unhealthy_after), .min = 1,
     .max = 100, .def = "2", .doc = "Failed probes in a row that take the provider out; one good probe brings it back."},
};
static const sl_csection health_check_section = {"providers[].health_check", ARR(health_check_keys)};

static const sl_ckey provider_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_provider_cfg, name), .required = true,
     .doc = "Unique name (letters, digits, - _ .), used by models[].targets[].provider and in metrics."},
    {.name = "type", .type = SL_CK_CUSTOM, .parse = parse_provider_type, .required = true, .type_doc = "provider type",
     .doc = "Provider type (table below); decides wire protocol, auth header and default base_url."},
    {.name = "base_url", .type = SL_CK_CUSTOM, .parse = parse_base_url, .type_doc = "URL",
     .doc = "API root, trailing '/' removed; defaults per type; required for azure and openai-compatible."},
    {.name = "api_keys", .type = SL_CK_STRLIST, .offset = OFF(sl_provider_cfg, api_keys),
     .count_offset = OFF(sl_provider_cfg, napi_keys), .max_items = 64,
     .doc = "Keys, rotated; empty entries (an unset ${VAR}) are dropped; none = no auth header sent."},
    {.name = "headers", .type = SL_CK_STRMAP, .offset = OFF(sl_provider_cfg, headers),
     .count_offset = OFF(sl_provider_cfg, nheaders), .max_items = 64, .doc = "Extra headers sent upstream."},
    {.name = "api_version", .type = SL_CK_STRING, .offset = OFF(sl_provider_cfg, api_version), .def = "2024-10-21",
     .doc = "azure only: the api-version query parameter."},
    {.name = "timeouts", .type = SL_CK_SECTION, .offset = OFF(sl_provider_cfg, timeouts), .sub = &timeouts_section,
     .doc = "Upstream timeouts, below."},
    {.name = "max_connections", .type = SL_CK_UINT, .offset = OFF(sl_provider_cfg, max_connections), .min = 1,
     .max = 100000, .def = "1024", .doc = "Connections open to this provider at once (per process)."},
    {.name = "key_cooldown_ms", .type = SL_CK_DURATION, .offset = OFF(sl_provider_cfg, key_cooldown_ms), .min = 1,
     .max = 86400000, .def = "30000",
     .doc = "A key answered 401, 403 or 429 is benched this long (doubling while it keeps failing); retry-after wins."},
    {.name = "health_check", .type = SL_CK_SECTION, .offset = OFF(sl_provider_cfg, health_check),
     .sub = &health_check_section, .doc = "Optional active health checks, below."},
};
static const sl_csection provider_section = {"providers[]", ARR(provider_keys)};

static const sl_ckey target_keys[] = {
    {.name = "provider", .type = SL_CK_CUSTOM, .parse = parse_target_provider, .required = true,
     .type_doc = "provider name", .doc = "A providers[].name."},
    {.name = "model", .type = SL_CK_STRING, .offset = OFF(sl_target_cfg, model),
     .doc = "Model name sent upstream; absent = the requested name passed through."},
    {.name = "weight", .type = SL_CK_UINT, .offset = OFF(sl_target_cfg, weight), .min = 1, .max = 1000000, .def = "1",
     .doc = "Share of traffic for the weighted balancer."},
};
static const sl_csection target_section = {"models[].targets[]", ARR(target_keys)};

static const sl_ckey retry_keys[] = {
    {.name = "attempts", .type = SL_CK_UINT, .offset = OFF(sl_retry_cfg, attempts), .min = 1, .max = 10, .def = "2",
     .doc = "Total tries over the target list; 1 = no retry."},
    {.name = "on", .type = SL_CK_CUSTOM, .parse = parse_retry_on, .max_items = 64,
     .def = "[429, 500, 502, 503, 504, timeout, connect]", .type_doc = "list of status or word",
     .doc = "What is retried: HTTP statuses 400-599, timeout, connect (connection failed)."},
    {.name = "backoff_ms", .type = SL_CK_DURATION, .offset = OFF(sl_retry_cfg, backoff_ms), .min = 0, .max = 60000,
     .def = "100", .doc = "Base of the jittered exponential backoff before trying the same target again."},
    {.name = "max_backoff_ms", .type = SL_CK_DURATION, .offset = OFF(sl_retry_cfg, max_backoff_ms), .min = 0,
     .max = 600000, .def = "2000", .doc = "Cap of that backoff."},
    {.name = "max_retry_after_ms", .type = SL_CK_DURATION, .offset = OFF(sl_retry_cfg, max_retry_after_ms), .min = 0,
     .max = 600000, .def = "10000",
     .doc = "Longest upstream retry-after the gateway waits out; longer ones end the request (or move to a fallback)."},
    {.name = "budget_percent", .type = SL_CK_UINT, .offset = OFF(sl_retry_cfg, budget_percent), .min = 0, .max = 100,
     .def = "20", .doc = "Retries may be at most this share of this model's requests (per worker, last 10 s)."},
    {.name = "budget_min", .type = SL_CK_UINT, .offset = OFF(sl_retry_cfg, budget_min), .min = 0, .max = 1000000,
     .def = "10", .doc = "Retries always allowed per worker in those 10 s, whatever the share."},
};
static const sl_csection retry_section = {"models[].retry", ARR(retry_keys)};

static const sl_ckey model_defaults_keys[] = {
    {.name = "max_tokens", .type = SL_CK_UINT, .offset = OFF(sl_model_cfg, default_max_tokens), .min = 1,
     .max = 10000000, .doc = "max_tokens sent when the caller gave none and the target protocol needs one (Anthropic)."},
};
static const sl_csection model_defaults_section = {"models[].defaults", ARR(model_defaults_keys)};

static const sl_ckey outlier_keys[] = {
    {.name = "consecutive_failures", .type = SL_CK_UINT, .offset = OFF(sl_outlier_cfg, consecutive_failures), .min = 0,
     .max = 1000, .def = "5", .doc = "Failures in a row (5xx, timeout, connect, broken stream) that eject a target; 0 = never."},
    {.name = "base_ejection_ms", .type = SL_CK_DURATION, .offset = OFF(sl_outlier_cfg, base_ejection_ms), .min = 1,
     .max = 86400000, .def = "10000", .doc = "First ejection; each ejection in a row doubles it."},
    {.name = "max_ejection_ms", .type = SL_CK_DURATION, .offset = OFF(sl_outlier_cfg, max_ejection_ms), .min = 1,
     .max = 86400000, .def = "300000", .doc = "Cap of the ejection time."},
};
static const sl_csection outlier_section = {"models[].outlier", ARR(outlier_keys)};

static const sl_ckey prefix_keys[] = {
    {.name = "block_tokens", .type = SL_CK_UINT, .offset = OFF(sl_prefix_cfg, block_tokens), .min = 4, .max = 4096,
     .def = "64", .doc = "Prompt tokens per hashed block (a token counted as 4 bytes of the serialized prompt)."},
    {.name = "max_entries", .type = SL_CK_UINT, .offset = OFF(sl_prefix_cfg, max_entries), .min = 16,
     .max = 4194304, .def = "65536", .doc = "Blocks remembered per target; the least recently used is forgotten first."},
    {.name = "overload_percent", .type = SL_CK_UINT, .offset = OFF(sl_prefix_cfg, overload_percent), .min = 100,
     .max = 100000, .def = "200",
     .doc = "The longest match is skipped when its load exceeds this percentage of (the least load + 1)."},
};
static const sl_csection prefix_section = {"models[].prefix_cache", ARR(prefix_keys)};

static const sl_ckey metrics_weights_keys[] = {
    {.name = "queue", .type = SL_CK_UINT, .offset = OFF(sl_scrape_weights_cfg, queue), .max = 1000000, .def = "100",
     .doc = "Score per waiting request (vllm:num_requests_waiting)."},
    {.name = "kv_cache", .type = SL_CK_UINT, .offset = OFF(sl_scrape_weights_cfg, kv_cache), .max = 1000000,
     .def = "100", .doc = "Score at a full KV cache (vllm:kv_cache_usage_perc, scaled)."},
    {.name = "running", .type = SL_CK_UINT, .offset = OFF(sl_scrape_weights_cfg, running), .max = 1000000,
     .def = "10", .doc = "Score per running request (vllm:num_requests_running)."},
};
static const sl_csection metrics_weights_section = {"models[].metrics.weights", ARR(metrics_weights_keys)};

static const sl_ckey metrics_keys[] = {
    {.name = "path", .type = SL_CK_STRING, .offset = OFF(sl_scrape_cfg, path),
     .doc = "Prometheus endpoint under each target provider's origin; absent = not scraped (balance: metrics uses /metrics)."},
    {.name = "interval_ms", .type = SL_CK_DURATION, .offset = OFF(sl_scrape_cfg, interval_ms), .min = 10,
     .max = 60000, .def = "75", .doc = "Time between two scrapes of a target (each worker scrapes on its own)."},
    {.name = "stale_ms", .type = SL_CK_DURATION, .offset = OFF(sl_scrape_cfg, stale_ms), .min = 10,
     .max = 600000, .def = "500", .doc = "Metrics older than this are ignored: the target is scored by in-flight counts."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_scrape_cfg, timeout_ms), .min = 1,
     .max = 60000, .def = "250", .doc = "A scrape not answered within this fails."},
    {.name = "weights", .type = SL_CK_SECTION, .offset = OFF(sl_scrape_cfg, weights), .sub = &metrics_weights_section,
     .doc = "Weights of the score, below."},
};
static const sl_csection metrics_section = {"models[].metrics", ARR(metrics_keys)};

static const char *const balance_names[] = {"weighted", "least_request", "latency", "prefix_cache", "metrics", NULL};

static const sl_ckey model_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_model_cfg, name), .required = true,
     .doc = "Public model name: exact, or a glob with * and ?; the first entry in file order that matches wins."},
    {.name = "targets", .type = SL_CK_CUSTOM, .parse = parse_targets, .required = true, .max_items = 256,
     .type_doc = "list of target", .doc = "Where requests for this name may go (at least one), below."},
    {.name = "balance", .type = SL_CK_ENUM, .offset = OFF(sl_model_cfg, balance), .enums = balance_names,
     .def = "weighted", .doc = "Balancer over the targets: weighted, least_request, latency, prefix_cache or metrics."},
    {.name = "retry", .type = SL_CK_SECTION, .offset = OFF(sl_model_cfg, retry), .sub = &retry_section,
     .doc = "Retries over the targets, below."},
    {.name = "outlier", .type = SL_CK_SECTION, .offset = OFF(sl_model_cfg, outlier), .sub = &outlier_section,
     .doc = "Passive outlier ejection of the targets, below."},
    {.name = "prefix_cache", .type = SL_CK_SECTION, .offset = OFF(sl_model_cfg, prefix_cache), .sub = &prefix_section,
     .doc = "Prefix-cache affinity (balance: prefix_cache), below."},
    {.name = "metrics", .type = SL_CK_SECTION, .offset = OFF(sl_model_cfg, metrics), .sub = &metrics_section,
     .doc = "Engine metrics scraping (balance: metrics; with prefix_cache: its load signal), below."},
    {.name = "fallbacks", .type = SL_CK_STRLIST, .offset = OFF(sl_model_cfg, fallbacks),
     .count_offset = OFF(sl_model_cfg, nfallbacks), .max_items = 16,
     .doc = "Other public model names tried in order after every target failed; each must match a models entry; loops are errors."},
    {.name = "defaults", .type = SL_CK_SECTION, .offset = 0, .sub = &model_defaults_section,
     .doc = "Request defaults, below."},
};
static const sl_csection model_section = {"models[]", ARR(model_keys)};

/* ---- top-level sections -------------------------------------------------- */

static void parse_server(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    sl_cfg_parse_section(ctx, &server_section, node, &cfg->server);
}

/* Names must be unique: checked once the whole list is parsed. */
static void check_unique_names(sl_cfg_ctx *ctx, const sl_ynode *seq, const char *list, const char *what, char *arr,
                               size_t elem_size,
                               size_t name_offset, size_t n)
{
    const sl_ynode *it = seq ? seq->first : NULL;
    for (size_t i = 0; i < n && it; i++, it = it->next) {
        const char *name = *(char **)(arr + i * elem_size + name_offset);
        for (size_t j = 0; name && j < i; j++) {
            const char *other = *(char **)(arr + j * elem_size + name_offset);
            if (!other || strcmp(name, other) != 0) continue;
            size_t saved = sl_cfg_path_push(ctx, NULL, (long)i);
            sl_cfg_error(ctx, sl_yaml_map_get(it, "name"), "%s.name: duplicate %s name '%s' (first at %s[%zu])", ctx->path,
                         what, name, list, j);
            sl_cfg_path_pop(ctx, saved);
            break;
        }
    }
}

static void parse_providers(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    cfg->providers = sl_cfg_parse_list(ctx, node, &provider_section, sizeof(sl_provider_cfg), 1000, &cfg->nproviders,
                                       provider_finish);
    check_unique_names(ctx, node, "providers", "provider", (char *)cfg->providers, sizeof(sl_provider_cfg),
                       offsetof(sl_provider_cfg, name), cfg->nproviders);
}

static void parse_models(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    cfg->models = sl_cfg_parse_list(ctx, node, &model_section, sizeof(sl_model_cfg), 10000, &cfg->nmodels, model_finish);
    check_unique_names(ctx, node, "models", "model", (char *)cfg->models, sizeof(sl_model_cfg), offsetof(sl_model_cfg, name),
                       cfg->nmodels);
    if (!ctx->oom) sl_cfg_check_models(ctx, node);
}

/*
 * Top-level sections, parsed in this order whatever the file order. Later
 * features add a row here (and their key tables to sl_config_sections).
 */
const sl_ctop sl_config_top[] = {
    {"server", parse_server},
    {"providers", parse_providers},
    {"models", parse_models},
    {"state", sl_cfg_parse_state},
    {"pricing", sl_cfg_parse_pricing},
    {"consumers", sl_cfg_parse_consumers},
    {"auth", sl_cfg_parse_auth}, /* after consumers: its default depends on them */
    {"telemetry", sl_cfg_parse_telemetry},
    {"mcp", sl_mcp_parse_config},
};
const size_t sl_config_ntop = SL_ARRAY_LEN(sl_config_top);

const sl_csection *const sl_config_sections[] = {
    &server_section, &limits_section, &provider_section, &timeouts_section,
    &model_section,  &target_section, &retry_section,    &model_defaults_section,
    &sl_cfg_state_section, &sl_cfg_redis_section, &sl_cfg_price_section, &sl_cfg_consumer_section,
    &sl_cfg_consumer_limits_section, &sl_cfg_auth_section,
    &sl_telemetry_section, &sl_telemetry_metrics_section, &sl_telemetry_traces_section,
    &health_check_section, &outlier_section, &prefix_section, &metrics_section, &metrics_weights_section,
    &sl_mcp_section, &sl_mcp_server_section, &sl_mcp_auth_section, &sl_mcp_upstream_section, &sl_mcp_tool_section,
    &sl_mcp_arg_section, &sl_mcp_request_section, &sl_mcp_response_section, &sl_mcp_error_section,
};
const size_t sl_config_nsections = SL_ARRAY_LEN(sl_config_sections);
