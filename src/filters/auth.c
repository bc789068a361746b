/*
 * auth.c: the identity filter. Finds the caller's key in any of the places
 * the official SDKs put it (SPEC §3), hashes it (SHA-256) and looks the hash
 * up in the table the config built at load; the match is confirmed with a
 * constant-time compare. The consumer found is the request's for every later
 * filter, the access log and metrics.
 *
 * auth.required: false lets callers without a key (or with one that matches
 * nobody) in as "anonymous", governed by a consumers entry of that name if
 * there is one. Then, once the model is known, the consumer's allow-list
 * decides (403 model_not_allowed). Keys are never forwarded upstream: the
 * proxy builds upstream headers from the provider's own settings.
 */
#include "core/log.h"
#include "filters/governance.h"

#define MAX_KEY_BYTES 1024

static sl_str header_value(const sl_http_request *req, const char *name)
{
    const sl_http_header *h = sl_http_find_header(req, name);
    return h ? sl_str_trim(h->value) : SL_STR_NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Value of parameter name in a query string, percent-decoded into buf. */
static sl_str query_param(sl_str q, const char *name, char *buf, size_t cap)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < q.n;) {
        size_t end = i;
        while (end < q.n && q.p[end] != '&') end++;
        if (end - i > nlen && memcmp(q.p + i, name, nlen) == 0 && q.p[i + nlen] == '=') {
            size_t o = 0;
            for (size_t j = i + nlen + 1; j < end; j++) {
                if (o + 1 >= cap) return SL_STR_NULL; /* longer than any key we accept */
                int hi, lo;
                if (q.p[j] == '%' && j + 2 < end && (hi = hexval(q.p[j + 1])) >= 0 && (lo = hexval(q.p[j + 2])) >= 0) {
                    buf[o++] = (char)(hi << 4 | lo);
                    j += 2;
                } else {
                    buf[o++] = q.p[j] == '+' ? ' ' : q.p[j];
                }
            }
            return (sl_str){buf, o};
        }
        i = end + 1;
    }
    return SL_STR_NULL;
}

sl_str sl_auth_credential(const sl_http_request *req, char *buf, size_t cap)
{
    sl_str v = header_value(req, "authorization");
    if (v.n > 7 && sl_str_case_eq((sl_str){v.p, 7}, SL_STR("Bearer "))) return sl_str_trim((sl_str){v.p + 7, v.n - 7});
    v = header_value(req, "x-api-key");
    if (v.n) return v;
    v = header_value(req, "x-goog-api-key");
    if (v.n) return v;
    return query_param(req->query, "key", buf, cap);
}

static void set_consumer(sl_gw_req *r, const sl_consumer_cfg *c, sl_str name)
{
    r->consumer = c;
    r->rec.consumer = name;
}

static int auth_head(sl_gw_req *r)
{
    const sl_config *cfg = r->cfg;
    char buf[MAX_KEY_BYTES];
    sl_str key = sl_auth_credential(&r->hx->req, buf, sizeof buf);
    if (key.n && key.n <= MAX_KEY_BYTES && cfg->auth.nslots) {
        uint8_t hash[SL_KEY_HASH_LEN];
        sl_key_hash(key, hash);
        const sl_consumer_cfg *c = sl_config_find_key(cfg, hash);
        if (c) {
            set_consumer(r, c, sl_str_from_cstr(c->name));
            return SL_FILTER_NEXT;
        }
    }
    if (cfg->auth.required) {
        if (key.n)
            sl_gw_error(r, 401, "authentication_error", "invalid_api_key", "Incorrect API key provided.");
        else
            sl_gw_error(r, 401, "authentication_error", "invalid_api_key",
                        "You didn't provide an API key. Send it as 'Authorization: Bearer KEY', 'x-api-key: KEY', "
                        "'x-goog-api-key: KEY' or '?key=KEY'.");
        return SL_FILTER_DONE;
    }
    set_consumer(r, sl_config_find_consumer(cfg, SL_STR("anonymous")), SL_STR("anonymous"));
    return SL_FILTER_NEXT;
}

static int auth_request(sl_gw_req *r)
{
    if (sl_consumer_allows_model(r->consumer, r->model)) return SL_FILTER_NEXT;
    sl_gw_error(r, 403, "permission_error", "model_not_allowed", "The model '%.*s' is not allowed for consumer '%.*s'",
                (int)SL_MIN(r->model.n, 200), r->model.p, SL_STR_FMT(r->rec.consumer));
    return SL_FILTER_DONE;
}

const sl_filter sl_filter_auth = {
    .name = "auth",
    .on_request_head = auth_head,
    .on_request = auth_request,
};
