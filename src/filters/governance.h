/*
 * governance.h: the consumer filters (SPEC §5) and what other modules call
 * of them.
 *
 *   auth       (auth.c)      who is calling: the caller's key -> a consumer
 *                            (401 otherwise); may this consumer use the
 *                            model (403)
 *   ratelimit  (ratelimit.c) requests, tokens and spend per consumer and
 *                            window: reserve an estimate before the call,
 *                            settle with the real usage after it (429)
 */
#ifndef SL_FILTERS_GOVERNANCE_H
#define SL_FILTERS_GOVERNANCE_H

#include "filters/filter.h"

extern const sl_filter sl_filter_auth;
extern const sl_filter sl_filter_ratelimit;

/*
 * The caller's key: Authorization: Bearer, x-api-key, x-goog-api-key, or the
 * query parameter key (percent-decoded into buf), first found in that order.
 * Empty when none.
 */
sl_str sl_auth_credential(const sl_http_request *req, char *buf, size_t cap);

/* Input tokens estimated from a request body before the call: ceil(bytes / 4), at least 1. */
int64_t sl_ratelimit_estimate_tokens(size_t body_bytes);
/* USD for usage at price p (cached input tokens at the cached price when set, else the input price). */
double sl_ratelimit_cost_usd(const sl_price_cfg *p, const sl_usage *u);
/* Formats a duration the way OpenAI's x-ratelimit-reset-* headers do: "250ms", "6s", "1m30s", "2h0m5s". */
void sl_ratelimit_format_reset(int64_t ms, char *out, size_t n);

/*
 * GET /admin/api/consumers/{name}/usage, answered on the admin (main) loop:
 * requests, tokens and spend of the consumer in each current window, with
 * its limits. Finishes hx (now, or when the state backend answers).
 */
void sl_governance_usage_api(sl_hx *hx, uv_loop_t *loop, sl_config *cfg, sl_str name);
/* Closes the admin loop's state handle (at admin stop). */
void sl_governance_admin_close(void);

#endif
