/*
 * config.h: the validated, immutable configuration snapshot.
 *
 * Loaded from YAML (SPEC §2) by sl_config_load(); everything a snapshot
 * points to lives in its arena and dies with sl_config_release(). Snapshots
 * are reference counted: a request takes a reference at its start and drops
 * it at its end, so SIGHUP can swap in a new snapshot while requests in
 * flight finish on the one they started with.
 *
 * Keys are data (config_keys.c): one table per section drives parsing, bounds,
 * defaults and docs/configuration.md. Unknown keys and bad values are errors
 * reported as "FILE:LINE:COL: message".
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdatomic.h>

#include "config/config_governance.h"
#include "core/arena.h"
#include "core/sl.h"

typedef struct sl_listen_addr {
    char *host; /* numeric IPv4/IPv6 or "localhost" */
    int port;
} sl_listen_addr;

typedef struct sl_limits_cfg {
    uint64_t max_header_bytes;  /* 16384 */
    uint64_t max_headers;       /* 100 */
    uint64_t max_body_bytes;    /* 33554432 */
    uint64_t header_timeout_ms; /* 10000 */
    uint64_t idle_timeout_ms;   /* 75000 */
    uint64_t max_connections;   /* 100000 */
} sl_limits_cfg;

typedef struct sl_server_cfg {
    sl_listen_addr *listen;
    size_t nlisten;
    sl_listen_addr admin_listen; /* port 0 = no admin listener */
    bool has_admin;
    uint64_t workers;            /* 0 = one per CPU */
    uint64_t drain_timeout_ms;   /* 30000 */
    char *access_log;            /* NULL = stdout; "off" disables */
    bool reuse_port;             /* other processes may share the listen addresses */
    sl_limits_cfg limits;
} sl_server_cfg;

typedef enum {
    SL_PROTO_OPENAI = 0,
    SL_PROTO_ANTHROPIC,
    SL_PROTO_GEMINI,
} sl_proto;

typedef struct sl_timeouts_cfg {
    uint64_t connect_ms;     /* 5000 */
    uint64_t first_token_ms; /* 60000 */
    uint64_t idle_ms;        /* 60000 */
    uint64_t total_ms;       /* 600000 */
} sl_timeouts_cfg;

/* Active health checks of a provider (docs/resilience.md). */
typedef struct sl_health_check_cfg {
    char *path;              /* GET base_url + path; NULL = no active checks */
    uint64_t interval_ms;    /* 10000 */
    uint64_t timeout_ms;     /* 2000 */
    uint64_t unhealthy_after;/* consecutive failed probes before the provider is down; 2 */
} sl_health_check_cfg;

typedef struct sl_kv {
    char *key, *value;
} sl_kv;

typedef struct sl_provider_cfg {
    char *name;
    char *type;          /* "openai", "azure", "anthropic", "gemini", "deepseek", ... */
    sl_proto proto;      /* wire protocol implied by type */
    char *base_url;      /* from config, else the type's default; no trailing '/' */
    char **api_keys;     /* expanded; never logged */
    size_t napi_keys;
    sl_kv *headers;      /* extra headers sent upstream */
    size_t nheaders;
    char *api_version;   /* azure: api-version query parameter (default "2024-10-21") */
    sl_timeouts_cfg timeouts;
    uint64_t max_connections; /* 1024 */
    uint64_t key_cooldown_ms; /* a key answered 401/403/429 without retry-after is benched this long; 30000 */
    sl_health_check_cfg health_check;
    uint32_t index;      /* position in the providers array */
} sl_provider_cfg;

typedef struct sl_target_cfg {
    sl_provider_cfg *provider;
    char *model;         /* NULL = pass the requested name through */
    uint64_t weight;     /* 1 */
} sl_target_cfg;

typedef enum {
    SL_BALANCE_WEIGHTED = 0,
    SL_BALANCE_LEAST_REQUEST,
    SL_BALANCE_LATENCY,
    SL_BALANCE_PREFIX_CACHE,
    SL_BALANCE_METRICS,
} sl_balance_kind;

/* Retry "on" conditions, as a bit set. */
enum {
    SL_RETRY_ON_TIMEOUT = 1u << 0,
    SL_RETRY_ON_CONNECT = 1u << 1,
};

typedef struct sl_retry_cfg {
    uint64_t attempts;      /* total tries per target list, 1 = no retry; default 2 */
    uint32_t on_flags;      /* SL_RETRY_ON_* */
    uint16_t *on_status;    /* HTTP statuses that are retried; default 429 500 502 503 504 */
    size_t non_status;
    uint64_t backoff_ms;    /* base of the jittered exponential backoff before retrying a target; 100 */
    uint64_t max_backoff_ms;/* 2000 */
    uint64_t max_retry_after_ms; /* longest upstream retry-after waited for before giving up; 10000 */
    uint64_t budget_percent;/* retries may be at most this share of requests (per worker, 10 s window); 20 */
    uint64_t budget_min;    /* retries always allowed per worker and window, whatever the share; 10 */
} sl_retry_cfg;

/* Passive outlier ejection of a model's targets (docs/resilience.md). */
typedef struct sl_outlier_cfg {
    uint64_t consecutive_failures; /* failures in a row that eject a target; 0 = never eject; 5 */
    uint64_t base_ejection_ms;     /* first ejection; doubles on each ejection in a row; 10000 */
    uint64_t max_ejection_ms;      /* 300000 */
} sl_outlier_cfg;

/* balance: prefix_cache (docs/balancing.md). */
typedef struct sl_prefix_cfg {
    uint64_t block_tokens;     /* tokens per hashed block (a token is estimated as 4 bytes of prompt); 64 */
    uint64_t max_entries;      /* blocks remembered per target (LRU); 65536 */
    uint64_t overload_percent; /* the best match is skipped when its load is above this % of (least load + 1); 200 */
} sl_prefix_cfg;

/* Weights of the metrics score (per unit; lower score wins). */
typedef struct sl_scrape_weights_cfg {
    uint64_t queue;            /* per waiting request; 100 */
    uint64_t kv_cache;         /* at 100% KV-cache use; 100 */
    uint64_t running;          /* per running request; 10 */
} sl_scrape_weights_cfg;

/* Engine metrics scraped for balance: metrics (docs/balancing.md). */
typedef struct sl_scrape_cfg {
    char *path;                /* Prometheus endpoint under the provider's origin; NULL = not scraped
                                  (balance: metrics then uses "/metrics") */
    uint64_t interval_ms;      /* 75 */
    uint64_t stale_ms;         /* a scrape older than this is ignored; 500 */
    uint64_t timeout_ms;       /* 250 */
    sl_scrape_weights_cfg weights;
} sl_scrape_cfg;

typedef struct sl_model_cfg {
    char *name;          /* exact or glob */
    bool is_glob;
    sl_target_cfg *targets;
    size_t ntargets;
    sl_balance_kind balance;
    sl_retry_cfg retry;
    sl_outlier_cfg outlier;
    sl_prefix_cfg prefix_cache;
    sl_scrape_cfg metrics;
    char **fallbacks;    /* other public model names, in order */
    size_t nfallbacks;
    uint64_t default_max_tokens; /* defaults.max_tokens; 0 = unset */
    uint32_t index;
} sl_model_cfg;

/* telemetry: (config_telemetry.c, docs/observability.md) */
typedef struct sl_traces_cfg {
    char *endpoint;              /* OTLP/HTTP JSON traces URL; NULL = tracing off */
    double sample_ratio;         /* 1.0; for requests without a sampled parent */
    uint64_t batch_size;         /* 512 spans per export request */
    uint64_t queue_size;         /* 4096 spans waiting; more are dropped (counted) */
    uint64_t flush_interval_ms;  /* 2000 */
    uint64_t timeout_ms;         /* 10000 per export request */
    sl_kv *headers;              /* sent with every export request (auth) */
    size_t nheaders;
    char *service_name;          /* "sluice" */
} sl_traces_cfg;

typedef struct sl_metrics_cfg {
    bool enabled;                /* true */
    uint64_t max_series;         /* 1000 label sets per metric; more go to "__other__" */
} sl_metrics_cfg;

typedef struct sl_telemetry_cfg {
    bool log_content;            /* prompt and completion in the access log */
    uint64_t log_content_max_bytes; /* 65536 each */
    sl_metrics_cfg metrics;
    sl_traces_cfg traces;
} sl_telemetry_cfg;

typedef struct sl_config {
    _Atomic int refs;
    sl_arena arena;      /* owns everything below */
    char *path;          /* file it came from, or "<builtin>" */
    sl_server_cfg server;
    sl_provider_cfg *providers;
    size_t nproviders;
    sl_model_cfg *models;
    size_t nmodels;
    /* governance (config_governance.c) */
    sl_state_cfg state;
    sl_price_cfg *pricing;
    size_t npricing;
    sl_consumer_cfg *consumers;
    size_t nconsumers;
    sl_auth_cfg auth;
    sl_telemetry_cfg telemetry;
    struct sl_mcp_cfg *mcp;  /* section mcp (src/mcp/mcp.h); never NULL after loading */
} sl_config;

/*
 * Loads and validates. On success *out has one reference. On failure returns
 * SL_EPARSE (or SL_ENOMEM / SL_EIO) and appends one "FILE:LINE:COL: message"
 * line per problem to errors (an sl_buf*; may be NULL); it reports every
 * problem it can find, not just the first.
 */
struct sl_buf;
int sl_config_load_file(const char *path, sl_config **out, struct sl_buf *errors);
int sl_config_load_string(const char *name, const char *yaml, size_t len, sl_config **out, struct sl_buf *errors);
/* The configuration used when no -c is given and ./sluice.yaml is absent. */
extern const char sl_config_builtin_yaml[];

static inline sl_config *sl_config_retain(sl_config *c) { atomic_fetch_add(&c->refs, 1); return c; }
void sl_config_release(sl_config *c);

/* First model entry (file order) whose name or glob matches; NULL if none. */
const sl_model_cfg *sl_config_find_model(const sl_config *c, sl_str name);
const sl_provider_cfg *sl_config_find_provider(const sl_config *c, sl_str name);

#endif
