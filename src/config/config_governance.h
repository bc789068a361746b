/*
 * config_governance.h: the configuration of governance (SPEC §2 and §5):
 * `state` (where shared counters live), `pricing` (USD per 1M tokens),
 * `consumers` (keys, model allow-lists, limits) and `auth`.
 *
 * Keys are never kept in plaintext: they are hashed (SHA-256) while the
 * config loads, and the snapshot holds an open-addressing table from key
 * hash to consumer, built once at load, so a request's key is found with one
 * hash and one constant-time compare.
 */
#ifndef SL_CONFIG_GOVERNANCE_H
#define SL_CONFIG_GOVERNANCE_H

#include "core/sl.h"

typedef enum { SL_STATE_MEMORY = 0, SL_STATE_REDIS } sl_state_backend;
typedef enum { SL_ON_ERROR_ALLOW = 0, SL_ON_ERROR_DENY } sl_on_error;

typedef struct sl_redis_cfg {
    char *url;           /* redis://[:password@]host:port[/db] */
    uint64_t timeout_ms; /* 200: one call, sent to answered */
    int on_error;        /* sl_on_error, while redis is down or slow */
    char *key_prefix;    /* "sluice:" */
    /* parsed from url */
    char *host;
    int port;
    uint64_t db;
    char *password;      /* NULL = none; never logged */
} sl_redis_cfg;

typedef struct sl_state_cfg {
    int backend; /* sl_state_backend */
    sl_redis_cfg redis;
} sl_state_cfg;

/* One pricing entry: USD per 1M tokens. */
typedef struct sl_price_cfg {
    char *model;          /* exact or glob, matched against the upstream then the public model name */
    bool is_glob;
    double input, output;
    double cached_input;  /* < 0: not set, input price applies */
} sl_price_cfg;

typedef struct sl_consumer_limits_cfg {
    uint64_t requests_per_minute, requests_per_hour, requests_per_day; /* 0 = none */
    uint64_t tokens_per_minute, tokens_per_hour, tokens_per_day;
    double budget_usd_per_day, budget_usd_per_month;                  /* 0 = none */
} sl_consumer_limits_cfg;

#define SL_KEY_HASH_LEN 32

typedef struct sl_consumer_cfg {
    char *name;
    uint8_t (*keys)[SL_KEY_HASH_LEN]; /* SHA-256 of each key */
    size_t nkeys;
    char **models;                    /* allow-list globs; NULL (none given) = all */
    size_t nmodels;
    bool has_models;                  /* `models:` given (an empty list allows nothing) */
    char **mcp_tools;                 /* server/tool globs (MCP, section 6) */
    size_t nmcp_tools;
    sl_consumer_limits_cfg limits;
    bool has_limits;                  /* any limit above is set */
    uint32_t index;
} sl_consumer_cfg;

/* Slot of the key table: hash -> consumer index; consumer == UINT32_MAX marks an empty slot. */
typedef struct sl_key_slot {
    uint8_t hash[SL_KEY_HASH_LEN];
    uint32_t consumer;
} sl_key_slot;

typedef struct sl_auth_cfg {
    bool required;        /* resolved: explicit value, else "any consumer configured" */
    int required_set;     /* -1 = not written in the file */
    sl_key_slot *keys;    /* power-of-two sized open-addressing table */
    size_t nslots;
} sl_auth_cfg;

struct sl_config;
/* Consumer by name, or NULL. */
const sl_consumer_cfg *sl_config_find_consumer(const struct sl_config *c, sl_str name);
/* Consumer whose key hashes to hash (compared in constant time), or NULL. */
const sl_consumer_cfg *sl_config_find_key(const struct sl_config *c, const uint8_t hash[SL_KEY_HASH_LEN]);
/* SHA-256 of a key. */
void sl_key_hash(sl_str key, uint8_t out[SL_KEY_HASH_LEN]);
/* Pricing entry for a model name (first entry in file order that matches), or NULL. */
const sl_price_cfg *sl_config_find_price(const struct sl_config *c, sl_str model);
/* True when the consumer may use model (allow-list globs; no list = all). */
bool sl_consumer_allows_model(const sl_consumer_cfg *c, sl_str model);

/* Parses a redis URL into cfg's host/port/db/password (in arena a). 0 or SL_EINVAL with *why. */
struct sl_arena;
int sl_redis_url_parse(struct sl_arena *a, const char *url, sl_redis_cfg *cfg, const char **why);

#endif
