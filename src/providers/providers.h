/*
 * providers.h: what differs between provider types on the wire: endpoint
 * paths, how the key is sent, required headers (SPEC §2 provider table).
 * The body format follows the type's protocol (protocols/); this module only
 * builds the URL and the headers of an upstream call.
 */
#ifndef SL_PROVIDERS_H
#define SL_PROVIDERS_H

#include "config/config.h"
#include "http/parser.h"

typedef enum {
    SL_CALL_CHAT,        /* chat completions / messages / generateContent */
    SL_CALL_EMBEDDINGS,
    SL_CALL_RESPONSES,
} sl_call_kind;

typedef struct sl_provider_call {
    char *url;
    sl_http_header headers[16];
    size_t nheaders;
} sl_provider_call;

/*
 * Fills call with the URL and headers (content-type, auth with key when
 * non-NULL, the protocol's required headers, the provider's extra headers).
 * Strings are allocated in a. Returns SL_ENOTFOUND when the provider's
 * protocol has no such endpoint (e.g. embeddings on Anthropic).
 */
int sl_provider_build_call(const sl_provider_cfg *p, sl_call_kind kind, sl_str upstream_model, bool stream,
                           const char *key, sl_arena *a, sl_provider_call *call);

#endif
