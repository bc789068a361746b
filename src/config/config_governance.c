/*
 * config_governance.c: the `state`, `pricing`, `consumers` and `auth`
 * sections (SPEC §2), their key tables, and the lookups the governance
 * filters use on every request (key hash -> consumer, model -> price).
 *
 * Plaintext keys are hashed here, while the tree is parsed, so a snapshot
 * never holds them; "sha256:<64 hex>" is taken as an already hashed key.
 */
#include "config/config_keys.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#define ARR(a) a, SL_ARRAY_LEN(a)
#define OFF(type, field) offsetof(type, field)

#define MAX_CONSUMERS 100000
#define MAX_KEYS_PER_CONSUMER 64
#define MAX_PRICING 10000

/* ---- values -------------------------------------------------------------- */

void sl_key_hash(sl_str key, uint8_t out[SL_KEY_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(key.p ? key.p : "", key.n, out, &n, EVP_sha256(), NULL) != 1 || n != SL_KEY_HASH_LEN)
        memset(out, 0, SL_KEY_HASH_LEN); /* cannot happen with a working libcrypto; an all-zero hash matches no key */
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "sha256:<64 hex>" -> hash. */
static bool parse_hashed_key(sl_str s, uint8_t out[SL_KEY_HASH_LEN])
{
    if (s.n != 7 + 2 * SL_KEY_HASH_LEN) return false;
    for (size_t i = 0; i < SL_KEY_HASH_LEN; i++) {
        int hi = hexval(s.p[7 + 2 * i]), lo = hexval(s.p[8 + 2 * i]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* A non-negative decimal number up to max (USD amounts and prices). */
static void parse_number(sl_cfg_ctx *ctx, const sl_ynode *n, double max, double *out)
{
    if (n->kind != SL_YN_SCALAR) {
        sl_cfg_error(ctx, n, "%s: expected a number", ctx->path);
        return;
    }
    char *end = NULL;
    double v = strtod(n->val.p, &end);
    bool digits_only = true; /* no hex floats, "inf" or "nan" */
    for (size_t i = 0; i < n->val.n; i++)
        if (!strchr("0123456789.eE+-", n->val.p[i])) digits_only = false;
    if (!n->val.n || !end || *end || !digits_only || !isfinite(v)) {
        sl_cfg_error(ctx, n, "%s: expected a number", ctx->path);
    } else if (v < 0 || v > max) {
        sl_cfg_error(ctx, n, "%s: must be between 0 and %.0f", ctx->path, max);
    } else {
        *out = v;
    }
}

static void parse_price_value(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    parse_number(ctx, n, 1e6, (double *)((char *)base + k->offset));
}

static void parse_budget(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    parse_number(ctx, n, 1e9, (double *)((char *)base + k->offset));
}

static void parse_keys(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_consumer_cfg *c = base;
    c->keys = NULL, c->nkeys = 0;
    if (n->kind == SL_YN_MAP) {
        sl_cfg_error(ctx, n, "%s: expected a list of keys", ctx->path);
        return;
    }
    const sl_ynode *one = n->kind == SL_YN_SCALAR ? n : NULL;
    size_t total = one ? 1 : n->n;
    if (total > k->max_items) {
        sl_cfg_error(ctx, n, "%s: too many keys (max %zu)", ctx->path, k->max_items);
        return;
    }
    if (total == 0 || !(c->keys = sl_cfg_calloc(ctx, total, SL_KEY_HASH_LEN))) return;
    for (const sl_ynode *it = one ? one : n->first; it; it = one ? NULL : it->next) {
        if (it->kind != SL_YN_SCALAR) {
            sl_cfg_error(ctx, it, "%s: expected a key (a string)", ctx->path);
            continue;
        }
        if (it->val.n == 0) continue; /* an unset ${VAR}: no key */
        if (sl_str_starts_with(it->val, SL_STR("sha256:"))) {
            if (!parse_hashed_key(it->val, c->keys[c->nkeys]))
                sl_cfg_error(ctx, it, "%s: a hashed key is \"sha256:\" and 64 hex digits", ctx->path);
            else c->nkeys++;
            continue;
        }
        sl_key_hash(it->val, c->keys[c->nkeys++]);
    }
}

static void parse_auth_required(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_auth_cfg *a = base;
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off"};
    for (size_t i = 0; n->kind == SL_YN_SCALAR && i < SL_ARRAY_LEN(yes); i++) {
        if (sl_str_eq_lit(n->val, yes[i]) || sl_str_eq_lit(n->val, no[i])) {
            a->required_set = sl_str_eq_lit(n->val, yes[i]);
            return;
        }
    }
    sl_cfg_error(ctx, n, "%s: expected true or false", ctx->path);
}

/* ---- key tables ---------------------------------------------------------- */

static const char *const backend_names[] = {"memory", "redis", NULL};
static const char *const on_error_names[] = {"allow", "deny", NULL};

static const sl_ckey redis_keys[] = {
    {.name = "url", .type = SL_CK_STRING, .offset = OFF(sl_redis_cfg, url), .def = "redis://127.0.0.1:6379/0",
     .doc = "redis://[:password@]host:port[/db]; host is a numeric address or localhost."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_redis_cfg, timeout_ms), .min = 1, .max = 60000,
     .def = "200", .doc = "Longest wait for one Redis call; past it the call fails and on_error decides."},
    {.name = "on_error", .type = SL_CK_ENUM, .offset = OFF(sl_redis_cfg, on_error), .enums = on_error_names,
     .def = "allow", .doc = "allow | deny: what a limit check does while Redis is down or too slow (logged and counted)."},
    {.name = "key_prefix", .type = SL_CK_STRING, .offset = OFF(sl_redis_cfg, key_prefix), .def = "sluice:",
     .doc = "Prefix of every Redis key sluice writes (several gateways or tests can share one Redis)."},
};
const sl_csection sl_cfg_redis_section = {"state.redis", ARR(redis_keys)};

static const sl_ckey state_keys[] = {
    {.name = "backend", .type = SL_CK_ENUM, .offset = OFF(sl_state_cfg, backend), .enums = backend_names,
     .def = "memory", .doc = "memory (in this process) | redis (shared by every instance)."},
    {.name = "redis", .type = SL_CK_SECTION, .offset = OFF(sl_state_cfg, redis), .sub = &sl_cfg_redis_section,
     .doc = "Redis connection, below; used when backend is redis."},
};
const sl_csection sl_cfg_state_section = {"state", ARR(state_keys)};

static const sl_ckey price_keys[] = {
    {.name = "input", .type = SL_CK_CUSTOM, .offset = OFF(sl_price_cfg, input), .parse = parse_price_value, .def = "0",
     .type_doc = "number", .doc = "USD per 1M input tokens."},
    {.name = "output", .type = SL_CK_CUSTOM, .offset = OFF(sl_price_cfg, output), .parse = parse_price_value,
     .def = "0", .type_doc = "number", .doc = "USD per 1M output tokens."},
    {.name = "cached_input", .type = SL_CK_CUSTOM, .offset = OFF(sl_price_cfg, cached_input),
     .parse = parse_price_value, .type_doc = "number",
     .doc = "USD per 1M input tokens served from the provider's prompt cache; absent = the input price."},
};
const sl_csection sl_cfg_price_section = {"pricing.MODEL", ARR(price_keys)};

static const sl_ckey consumer_limits_keys[] = {
    {.name = "requests_per_minute", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, requests_per_minute),
     .min = 0, .max = 1000000000000ull, .doc = "Requests per UTC clock minute; absent or 0 = no limit."},
    {.name = "requests_per_hour", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, requests_per_hour),
     .min = 0, .max = 1000000000000ull, .doc = "Requests per UTC clock hour."},
    {.name = "requests_per_day", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, requests_per_day),
     .min = 0, .max = 1000000000000ull, .doc = "Requests per UTC day."},
    {.name = "tokens_per_minute", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, tokens_per_minute),
     .min = 0, .max = 1000000000000ull, .doc = "Input plus output tokens per UTC clock minute."},
    {.name = "tokens_per_hour", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, tokens_per_hour), .min = 0,
     .max = 1000000000000ull, .doc = "Input plus output tokens per UTC clock hour."},
    {.name = "tokens_per_day", .type = SL_CK_UINT, .offset = OFF(sl_consumer_limits_cfg, tokens_per_day), .min = 0,
     .max = 1000000000000ull, .doc = "Input plus output tokens per UTC day."},
    {.name = "budget_usd_per_day", .type = SL_CK_CUSTOM, .offset = OFF(sl_consumer_limits_cfg, budget_usd_per_day),
     .parse = parse_budget, .type_doc = "number", .doc = "Spend per UTC day, priced with `pricing`."},
    {.name = "budget_usd_per_month", .type = SL_CK_CUSTOM,
     .offset = OFF(sl_consumer_limits_cfg, budget_usd_per_month), .parse = parse_budget, .type_doc = "number",
     .doc = "Spend per UTC calendar month, priced with `pricing`."},
};
const sl_csection sl_cfg_consumer_limits_section = {"consumers[].limits", ARR(consumer_limits_keys)};

static const sl_ckey consumer_keys[] = {
    {.name = "name", .type = SL_CK_STRING, .offset = OFF(sl_consumer_cfg, name), .required = true,
     .doc = "Unique name (letters, digits, - _ . @), shown in logs, metrics and the usage API; `anonymous` is the "
            "keyless caller when auth.required is false."},
    {.name = "keys", .type = SL_CK_CUSTOM, .parse = parse_keys, .max_items = MAX_KEYS_PER_CONSUMER,
     .type_doc = "list of key",
     .doc = "API keys: plaintext (hashed with SHA-256 at load) or \"sha256:<64 hex>\"; empty entries are dropped."},
    {.name = "models", .type = SL_CK_STRLIST, .offset = OFF(sl_consumer_cfg, models),
     .count_offset = OFF(sl_consumer_cfg, nmodels), .max_items = 1024,
     .doc = "Allow-list of public model names or globs; absent = every model."},
    {.name = "mcp_tools", .type = SL_CK_STRLIST, .offset = OFF(sl_consumer_cfg, mcp_tools),
     .count_offset = OFF(sl_consumer_cfg, nmcp_tools), .max_items = 1024,
     .doc = "MCP server/tool globs this consumer may list and call; \"*\" = every tool."},
    {.name = "limits", .type = SL_CK_SECTION, .offset = OFF(sl_consumer_cfg, limits), .sub = &sl_cfg_consumer_limits_section,
     .doc = "Rate limits and budgets, below."},
};
const sl_csection sl_cfg_consumer_section = {"consumers[]", ARR(consumer_keys)};

static const sl_ckey auth_keys[] = {
    {.name = "required", .type = SL_CK_CUSTOM, .offset = 0, .parse = parse_auth_required, .type_doc = "bool",
     .doc = "Callers must present a consumer key; default true when any consumer is configured, else false. "
            "false: callers without a key are the consumer `anonymous`."},
};
const sl_csection sl_cfg_auth_section = {"auth", ARR(auth_keys)};


/* ---- redis url ----------------------------------------------------------- */

int sl_redis_url_parse(sl_arena *a, const char *url, sl_redis_cfg *cfg, const char **why)
{
    sl_str s = sl_str_from_cstr(url);
    if (!sl_str_starts_with(s, SL_STR("redis://"))) return *why = "must start with redis://", SL_EINVAL;
    s.p += 8, s.n -= 8;
    const char *at = memchr(s.p, '@', s.n);
    cfg->password = NULL;
    if (at) {
        sl_str auth = {s.p, (size_t)(at - s.p)};
        const char *colon = memchr(auth.p, ':', auth.n);
        sl_str pw = colon ? (sl_str){colon + 1, (size_t)(auth.p + auth.n - colon - 1)} : auth;
        if (pw.n && !(cfg->password = sl_arena_strndup(a, pw.p, pw.n))) return SL_ENOMEM;
        s.n -= (size_t)(at + 1 - s.p), s.p = at + 1;
    }
    const char *slash = memchr(s.p, '/', s.n);
    sl_str hostport = slash ? (sl_str){s.p, (size_t)(slash - s.p)} : s;
    cfg->db = 0;
    if (slash) {
        sl_str db = {slash + 1, (size_t)(s.p + s.n - slash - 1)};
        if (db.n && sl_str_to_u64(db, 65535, &cfg->db) != SL_OK) return *why = "database must be a number", SL_EINVAL;
    }
    const char *colon = memchr(hostport.p, ':', hostport.n);
    uint64_t port = 6379;
    sl_str host = colon ? (sl_str){hostport.p, (size_t)(colon - hostport.p)} : hostport;
    if (colon && sl_str_to_u64((sl_str){colon + 1, (size_t)(hostport.p + hostport.n - colon - 1)}, 65535, &port))
        return *why = "port must be between 1 and 65535", SL_EINVAL;
    if (host.n == 0 || port == 0) return *why = "expected redis://host:port", SL_EINVAL;
    for (size_t i = 0; i < host.n; i++)
        if (!strchr("0123456789.abcdefABCDEF:", host.p[i]) && !sl_str_eq_lit(host, "localhost"))
            return *why = "host must be a numeric address or localhost (no blocking DNS lookups)", SL_EINVAL;
    if (sl_str_eq_lit(host, "localhost")) host = SL_STR("127.0.0.1");
    if (!(cfg->host = sl_arena_strndup(a, host.p, host.n))) return SL_ENOMEM;
    cfg->port = (int)port;
    return SL_OK;
}

/* ---- top-level sections -------------------------------------------------- */

void sl_cfg_parse_state(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    sl_cfg_parse_section(ctx, &sl_cfg_state_section, node, &cfg->state);
    if (ctx->oom || !cfg->state.redis.url) return;
    const char *why = NULL;
    int rc = sl_redis_url_parse(ctx->a, cfg->state.redis.url, &cfg->state.redis, &why);
    if (rc == SL_ENOMEM) ctx->oom = true;
    if (rc == SL_EINVAL) {
        const sl_ynode *r = sl_yaml_map_get(node, "redis");
        const sl_ynode *u = sl_yaml_map_get(r, "url");
        sl_cfg_error(ctx, u ? u : node, "state.redis.url: %s", why);
    }
}

void sl_cfg_parse_pricing(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    if (!node) return;
    if (node->kind != SL_YN_MAP) {
        sl_cfg_error(ctx, node, "pricing: expected a mapping of model name to prices");
        return;
    }
    if (node->n > MAX_PRICING) {
        sl_cfg_error(ctx, node, "pricing: too many entries (max %d)", MAX_PRICING);
        return;
    }
    if (node->n == 0 || !(cfg->pricing = sl_cfg_calloc(ctx, node->n, sizeof(sl_price_cfg)))) return;
    for (const sl_ynode *v = node->first; v && !ctx->oom; v = v->next) {
        sl_price_cfg *p = &cfg->pricing[cfg->npricing++];
        p->cached_input = -1;
        p->model = sl_cfg_strdup(ctx, v->key->val);
        p->is_glob = p->model && strpbrk(p->model, "*?") != NULL;
        size_t saved = sl_cfg_path_push(ctx, v->key->val.p, 0);
        sl_cfg_parse_section(ctx, &sl_cfg_price_section, v, p);
        sl_cfg_path_pop(ctx, saved);
    }
}

static bool consumer_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (; *s; s++)
        if (!strchr("-_.@", *s) && !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static void consumer_finish(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index)
{
    sl_consumer_cfg *c = elem;
    c->index = (uint32_t)index;
    c->has_models = sl_yaml_map_get(item, "models") != NULL;
    if (c->name && !consumer_name_ok(c->name))
        sl_cfg_error(ctx, sl_yaml_map_get(item, "name"), "%s.name: '%s': use 1-64 letters, digits, '-', '_', '.' or '@'",
                     ctx->path, c->name);
    const sl_consumer_limits_cfg *l = &c->limits;
    c->has_limits = l->requests_per_minute || l->requests_per_hour || l->requests_per_day || l->tokens_per_minute ||
                    l->tokens_per_hour || l->tokens_per_day || l->budget_usd_per_day > 0 || l->budget_usd_per_month > 0;
}

static uint64_t slot_of(const uint8_t *hash, size_t nslots)
{
    uint64_t h;
    memcpy(&h, hash, sizeof h); /* SHA-256 output is uniform: its first bytes are a fine hash */
    return h & (nslots - 1);
}

/* Builds the key table; a key given to two consumers (or twice) is an error. */
static void build_key_table(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    size_t total = 0;
    for (size_t i = 0; i < cfg->nconsumers; i++) total += cfg->consumers[i].nkeys;
    size_t nslots = 8;
    while (nslots < total * 2) nslots <<= 1; /* load factor <= 1/2 */
    sl_key_slot *t = sl_cfg_calloc(ctx, nslots, sizeof *t);
    if (!t) return;
    for (size_t i = 0; i < nslots; i++) t[i].consumer = UINT32_MAX;
    const sl_ynode *item = node ? node->first : NULL;
    for (size_t i = 0; i < cfg->nconsumers; i++, item = item ? item->next : NULL) {
        const sl_consumer_cfg *c = &cfg->consumers[i];
        for (size_t k = 0; k < c->nkeys; k++) {
            uint64_t s = slot_of(c->keys[k], nslots);
            while (t[s].consumer != UINT32_MAX && memcmp(t[s].hash, c->keys[k], SL_KEY_HASH_LEN) != 0)
                s = (s + 1) & (nslots - 1);
            if (t[s].consumer != UINT32_MAX) {
                sl_cfg_error(ctx, item ? sl_yaml_map_get(item, "keys") : node,
                             "consumers[%zu].keys: a key of consumer '%s' is also a key of consumer '%s'", i, c->name,
                             cfg->consumers[t[s].consumer].name);
                continue;
            }
            memcpy(t[s].hash, c->keys[k], SL_KEY_HASH_LEN);
            t[s].consumer = (uint32_t)i;
        }
    }
    cfg->auth.keys = t;
    cfg->auth.nslots = nslots;
}

void sl_cfg_parse_consumers(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    cfg->consumers = sl_cfg_parse_list(ctx, node, &sl_cfg_consumer_section, sizeof(sl_consumer_cfg), MAX_CONSUMERS,
                                       &cfg->nconsumers, consumer_finish);
    const sl_ynode *it = node ? node->first : NULL;
    for (size_t i = 0; i < cfg->nconsumers && it; i++, it = it->next) {
        for (size_t j = 0; cfg->consumers[i].name && j < i; j++) {
            if (!cfg->consumers[j].name || strcmp(cfg->consumers[i].name, cfg->consumers[j].name) != 0) continue;
            sl_cfg_error(ctx, sl_yaml_map_get(it, "name"), "consumers[%zu].name: duplicate consumer name '%s' (first at consumers[%zu])",
                         i, cfg->consumers[i].name, j);
            break;
        }
    }
    if (!ctx->oom) build_key_table(ctx, node, cfg);
}

void sl_cfg_parse_auth(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    cfg->auth.required_set = -1;
    sl_cfg_parse_section(ctx, &sl_cfg_auth_section, node, &cfg->auth);
    cfg->auth.required = cfg->auth.required_set >= 0 ? cfg->auth.required_set == 1 : cfg->nconsumers > 0;
}

/* ---- lookups ------------------------------------------------------------- */

const sl_consumer_cfg *sl_config_find_consumer(const sl_config *c, sl_str name)
{
    for (size_t i = 0; i < c->nconsumers; i++)
        if (sl_str_eq_lit(name, c->consumers[i].name)) return &c->consumers[i];
    return NULL;
}

const sl_consumer_cfg *sl_config_find_key(const sl_config *c, const uint8_t hash[SL_KEY_HASH_LEN])
{
    const sl_auth_cfg *a = &c->auth;
    if (!a->nslots) return NULL;
    uint64_t s = slot_of(hash, a->nslots);
    /* Probing reveals only where a hash lands, never the key; the final compare is constant-time. */
    for (size_t probes = 0; probes < a->nslots && a->keys[s].consumer != UINT32_MAX; probes++) {
        if (CRYPTO_memcmp(a->keys[s].hash, hash, SL_KEY_HASH_LEN) == 0) return &c->consumers[a->keys[s].consumer];
        s = (s + 1) & (a->nslots - 1);
    }
    return NULL;
}

const sl_price_cfg *sl_config_find_price(const sl_config *c, sl_str model)
{
    for (size_t i = 0; i < c->npricing; i++) {
        const sl_price_cfg *p = &c->pricing[i];
        if (p->is_glob ? sl_glob_match(sl_str_from_cstr(p->model), model) : sl_str_eq_lit(model, p->model)) return p;
    }
    return NULL;
}

bool sl_consumer_allows_model(const sl_consumer_cfg *c, sl_str model)
{
    if (!c || !c->has_models) return true;
    for (size_t i = 0; i < c->nmodels; i++)
        if (sl_glob_match(sl_str_from_cstr(c->models[i]), model)) return true;
    return false;
}
