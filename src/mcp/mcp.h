/*
 * mcp.h: the MCP gateway (SPEC §6): MCP servers hosted on /mcp/{server} over
 * Streamable HTTP (revisions 2025-03-26, 2025-06-18, 2025-11-25) and the
 * legacy HTTP+SSE transport, built three ways:
 *
 *   type: rest     tools written as REST request/response templates (rest.c)
 *   type: openapi  tools converted at load from an OpenAPI 3 document (openapi.c)
 *   type: proxy    upstream MCP servers aggregated under one endpoint (proxy.c)
 *
 * The configuration (section `mcp`, parsed by mcp_config.c) is part of the
 * immutable config snapshot; sessions live in a store behind a small
 * interface (session.h) so that a shared backend can serve a cluster.
 */
#ifndef SL_MCP_H
#define SL_MCP_H

#include "config/config.h"
#include "core/buf.h"

struct sl_gw_req;
struct sl_cfg_ctx;
struct sl_ynode;

typedef enum { SL_MCP_REST = 0, SL_MCP_OPENAPI, SL_MCP_PROXY } sl_mcp_kind;
typedef enum { SL_MCP_IN_AUTO = 0, SL_MCP_IN_PATH, SL_MCP_IN_QUERY, SL_MCP_IN_HEADER, SL_MCP_IN_BODY, SL_MCP_IN_COOKIE } sl_mcp_in;
typedef enum { SL_MCP_AUTH_NONE = 0, SL_MCP_AUTH_BEARER, SL_MCP_AUTH_API_KEY, SL_MCP_AUTH_BASIC } sl_mcp_auth_kind;
typedef enum { SL_MCP_UP_STREAMABLE = 0, SL_MCP_UP_SSE } sl_mcp_transport;

/* One tool argument: a property of the tool's input schema and where it goes in the request. */
typedef struct sl_mcp_arg_cfg {
    char *name;
    char *key;           /* the name sent upstream when it differs from name (OpenAPI: a body property
                            named like a parameter is the argument <name>_body, sent as <name>); NULL = name */
    char *type;          /* JSON Schema type: string number integer boolean array object */
    char *description;
    bool required;
    int in;              /* sl_mcp_in; AUTO is resolved at load */
    char **enum_vals;
    size_t nenum;
    char *def;           /* default value (YAML scalar text) or NULL */
    char *schema;        /* JSON text of a full property schema, overriding type/enum (OpenAPI bodies) */
} sl_mcp_arg_cfg;

typedef struct sl_mcp_request_cfg {
    char *method;        /* GET POST PUT PATCH DELETE HEAD */
    char *url;           /* template: {{args.x}}, {{config.x}}, {x} for a path argument */
    sl_kv *headers;      /* values are templates */
    size_t nheaders;
    char *body;          /* template; absent = body arguments as one JSON object */
    char *content_type;  /* default application/json */
} sl_mcp_request_cfg;

typedef struct sl_mcp_response_cfg {
    char *prepend, *append;
    char *template_;     /* text built from {{response.a.b}}, {{body}}, {{status}}, {{args.x}} */
    char **pick;         /* dotted paths of the JSON answer to keep */
    size_t npick;
} sl_mcp_response_cfg;

typedef struct sl_mcp_tool_cfg {
    char *name;
    char *title;
    char *description;
    sl_mcp_arg_cfg *args;
    size_t nargs;
    char *input_schema;  /* JSON, built at load from args */
    char *output_schema; /* JSON or NULL: results then carry structuredContent */
    sl_mcp_request_cfg request;
    sl_mcp_response_cfg response;
    char *error_template; /* for non-2xx answers: {{status}}, {{body}}, {{response.x}} */
    uint64_t timeout_ms;
} sl_mcp_tool_cfg;

typedef struct sl_mcp_auth_cfg {
    int type;            /* sl_mcp_auth_kind */
    int in;              /* api_key: SL_MCP_IN_HEADER or SL_MCP_IN_QUERY */
    char *name;          /* api_key: header or query parameter name */
    char *value;         /* bearer token / api key (template: {{config.x}}) */
    char *username, *password; /* basic */
} sl_mcp_auth_cfg;

typedef struct sl_mcp_upstream_cfg {
    char *name;
    char *url;
    int transport;       /* sl_mcp_transport */
    char *prefix;        /* tool name prefix; default "<name>_"; "" keeps names as they are */
    sl_kv *headers;
    size_t nheaders;
    uint64_t timeout_ms;
} sl_mcp_upstream_cfg;

typedef struct sl_mcp_server_cfg {
    char *name;
    int type;            /* sl_mcp_kind */
    char *title;
    char *version;
    char *instructions;
    sl_kv *config;       /* values for {{config.x}} (secrets: never logged) */
    size_t nconfig;
    sl_mcp_auth_cfg auth;
    sl_mcp_tool_cfg *tools;
    size_t ntools;
    char *spec;          /* openapi: path of the document */
    char *base_url;      /* openapi: overrides servers[0].url */
    char *tool_prefix;   /* openapi: prefix for generated tool names */
    sl_mcp_upstream_cfg *upstreams;
    size_t nupstreams;
} sl_mcp_server_cfg;

typedef struct sl_mcp_cfg {
    sl_mcp_server_cfg *servers;
    size_t nservers;
    uint64_t session_ttl_ms;     /* idle sessions expire after this */
    uint64_t max_sessions;
    uint64_t page_size;          /* tools/list page size */
    uint64_t max_response_bytes; /* upstream answer cap */
    char **allowed_origins;      /* besides localhost; "*" = any */
    size_t nallowed_origins;
    char **allowed_hosts;        /* when set, the Host header must be one of these (or localhost) */
    size_t nallowed_hosts;
} sl_mcp_cfg;

/* Config row: parses `mcp` (node NULL = absent). */
/* The key tables of `mcp`, listed in sl_config_sections (docs/configuration.md is checked against them). */
extern const struct sl_csection sl_mcp_section, sl_mcp_server_section, sl_mcp_auth_section, sl_mcp_upstream_section,
    sl_mcp_tool_section, sl_mcp_arg_section, sl_mcp_request_section, sl_mcp_response_section, sl_mcp_error_section;
void sl_mcp_parse_config(struct sl_cfg_ctx *ctx, const struct sl_ynode *node, sl_config *cfg);
const sl_mcp_server_cfg *sl_mcp_find_server(const sl_mcp_cfg *m, sl_str name);

/* Data plane: every request whose path starts with /mcp/. */
void sl_mcp_handle(struct sl_gw_req *r);

/*
 * Access control hook: may the caller of r see and call tool of server?
 * Today it allows everything; the consumer system (SPEC §5) fills it in with
 * the consumer's mcp_tools globs ("server/tool"). Used by tools/list (filter)
 * and tools/call (JSON-RPC error -32003 when denied).
 */
bool sl_mcp_tool_allowed(const struct sl_gw_req *r, sl_str server, sl_str tool);

/*
 * OpenAPI 3.0/3.1 (JSON or YAML text) -> tools. Tools and everything they
 * point to are allocated in a (the snapshot's arena at load). base_url, when
 * set, replaces servers[0].url. Problems are appended to errors as lines;
 * returns 0, SL_EPARSE or SL_ENOMEM.
 */
typedef struct sl_openapi_result {
    sl_mcp_tool_cfg *tools;
    size_t ntools;
    char *title;
    char *description;
    char *base_url;
    sl_mcp_auth_cfg auth;         /* from the first usable security scheme */
    char *auth_config_key;        /* config key the credential is read from, e.g. "apiKey" */
} sl_openapi_result;

int sl_openapi_convert(sl_arena *a, const char *text, size_t len, const char *prefix, const char *base_url,
                       sl_openapi_result *out, sl_buf *errors);
/* Loads a file and converts it. */
int sl_openapi_convert_file(sl_arena *a, const char *path, const char *prefix, const char *base_url,
                            sl_openapi_result *out, sl_buf *errors);
/* Writes one `type: rest` entry of mcp.servers[] (YAML) for name. */
int sl_openapi_write_yaml(const sl_openapi_result *res, const char *name, sl_buf *out);
/* `sluice openapi2mcp SPEC [--prefix P] [--name N]`: prints the YAML; returns the exit code. */
int sl_openapi2mcp_main(int argc, char **argv);

#endif
