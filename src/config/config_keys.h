/*
 * config_keys.h: the configuration key tables and the loader's internals
 * shared by the files of src/config/ (and read by tests/unit/test_config.c).
 *
 * Keys are data (ARCHITECTURE.md habit 3): every section is a table of
 * sl_ckey {name, type, offset, bounds, default text, doc}. One generic walker,
 * sl_cfg_parse_section(), uses a table to reject unknown keys, check types and
 * bounds, and fill defaults; the same tables are checked against
 * docs/configuration.md by a unit test.
 *
 * Adding a top-level section: write a parse function (node NULL means the
 * section is absent: fill its defaults) and add one row to sl_config_top[] in
 * config_keys.c. Rows are parsed in table order, whatever the file order, so
 * a section may use what earlier rows filled (models resolve providers).
 */
#ifndef SL_CONFIG_KEYS_H
#define SL_CONFIG_KEYS_H

#include "config/config.h"
#include "config/yaml_tree.h"

struct sl_buf;
typedef struct sl_cfg_ctx sl_cfg_ctx;
typedef struct sl_ckey sl_ckey;

typedef enum {
    SL_CK_STRING = 0, /* char * */
    SL_CK_UINT,       /* uint64_t, min..max */
    SL_CK_DURATION,   /* uint64_t milliseconds, min..max */
    SL_CK_BOOL,       /* bool */
    SL_CK_ENUM,       /* int: index into enums[] */
    SL_CK_STRLIST,    /* char ** at offset, size_t count at count_offset; empty items dropped */
    SL_CK_STRMAP,     /* sl_kv * at offset, size_t count at count_offset; empty values dropped */
    SL_CK_SECTION,    /* nested table sub, struct at offset */
    SL_CK_CUSTOM,     /* parse() does it; type_doc names the type in the docs */
} sl_ckey_type;

/* Parses node (never NULL: defaults arrive as synthesized nodes) into the struct at base. */
typedef void (*sl_ckey_parse_fn)(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *node, void *base);

struct sl_ckey {
    const char *name;
    sl_ckey_type type;
    size_t offset;
    size_t count_offset;            /* STRLIST, STRMAP */
    uint64_t min, max;              /* UINT, DURATION */
    size_t max_items;               /* STRLIST, STRMAP, CUSTOM lists */
    const char *def;                /* default as YAML text (flow style for lists); NULL = none */
    bool required;
    const char *const *enums;       /* ENUM: NULL-terminated */
    const struct sl_csection *sub;  /* SECTION */
    sl_ckey_parse_fn parse;         /* CUSTOM */
    const char *type_doc;           /* CUSTOM */
    const char *doc;
};

typedef struct sl_csection {
    const char *path; /* as documented: "server.limits", "providers[].timeouts" */
    const sl_ckey *keys;
    size_t nkeys;
} sl_csection;

/* A top-level section. node is NULL when the file has none. */
typedef struct sl_ctop {
    const char *name;
    void (*parse)(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);
} sl_ctop;

extern const sl_ctop sl_config_top[];
extern const size_t sl_config_ntop;
/* Every key table, for the docs check. */
extern const sl_csection *const sl_config_sections[];
extern const size_t sl_config_nsections;

#define SL_CFG_MAX_ERRORS 50

typedef struct sl_cfg_msg {
    int line, col;
    char *msg; /* in tmp */
} sl_cfg_msg;

struct sl_cfg_ctx {
    const char *file;
    sl_config *cfg;
    sl_arena *a;           /* the snapshot's arena */
    sl_arena *tmp;         /* tree and scratch; freed after loading */
    struct sl_buf *errors;
    int nerr;
    bool oom;
    sl_cfg_msg msgs[SL_CFG_MAX_ERRORS]; /* kept until the end, then written sorted by position */
    char path[256];        /* key path for messages: "providers[0].timeouts" */
    size_t pathlen;
};

void sl_cfg_error(sl_cfg_ctx *ctx, const sl_ynode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends ".name" (or "[i]" when name is NULL) to ctx->path; returns the length to restore. */
size_t sl_cfg_path_push(sl_cfg_ctx *ctx, const char *name, long index);
static inline void sl_cfg_path_pop(sl_cfg_ctx *ctx, size_t len) { ctx->pathlen = len, ctx->path[len] = '\0'; }
/* ctx->path, or "the top level" when empty. */
const char *sl_cfg_where(const sl_cfg_ctx *ctx);

/* Copies into the snapshot arena; sets ctx->oom and returns NULL on failure. */
char *sl_cfg_strdup(sl_cfg_ctx *ctx, sl_str s);
void *sl_cfg_calloc(sl_cfg_ctx *ctx, size_t count, size_t size);

/* A decimal number: SL_EINVAL when not one, SL_ELIMIT when negative or over UINT64_MAX. */
int sl_cfg_number(sl_str v, uint64_t *out);

/* Walks map (NULL = absent) with sec: unknown keys, types, bounds, defaults. */
void sl_cfg_parse_section(sl_cfg_ctx *ctx, const sl_csection *sec, const sl_ynode *map, void *base);
/* Parses one value with key k, or its default when node is NULL or null. */
void sl_cfg_parse_key(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *node, void *base);

/*
 * Parses a sequence of maps with sec into a fresh array of elem_size
 * elements; finish (may be NULL) runs on each after its keys. Returns the
 * array (NULL when empty or on error) and its length in *n.
 */
void *sl_cfg_parse_list(sl_cfg_ctx *ctx, const sl_ynode *seq, const sl_csection *sec, size_t elem_size,
                        size_t max_items, size_t *n,
                        void (*finish)(sl_cfg_ctx *ctx, const sl_ynode *item, void *elem, size_t index));

/* "host:port", "[v6]:port": 0, or SL_EINVAL with *why set. */
int sl_cfg_parse_addr(sl_cfg_ctx *ctx, sl_str s, sl_listen_addr *out, const char **why);

/* Governance sections (config_governance.c). */
extern const sl_csection sl_cfg_state_section, sl_cfg_redis_section, sl_cfg_price_section, sl_cfg_consumer_section,
    sl_cfg_consumer_limits_section, sl_cfg_auth_section;
void sl_cfg_parse_state(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);
void sl_cfg_parse_pricing(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);
void sl_cfg_parse_consumers(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);
void sl_cfg_parse_auth(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);
/* telemetry: (config_telemetry.c) */
extern const sl_csection sl_telemetry_section, sl_telemetry_metrics_section, sl_telemetry_traces_section;
void sl_cfg_parse_telemetry(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg);

/* Cross-section checks done once every section is parsed. */
void sl_cfg_check_models(sl_cfg_ctx *ctx, const sl_ynode *models_node);

#endif
