/*
 * governance.h: the consumer filters (SPEC §5) and what other modules call
 * of them.
 *
 *   auth       (auth.c)      who is calling: the caller's key -> a consumer
 *                            (401 otherwise); may this consumer use the
 *                            model (403)
 *   ratelimit  (ratelimit.c) requests, tokens and spend per consumer and
 *                            window: reserve an estimate before the call,
 *                            settle with the real usage after it (429);
 *                            MCP requests against the request windows
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
 * MCP (src/mcp/host.c): the n JSON-RPC requests of one POST count against
 * the consumer's requests_per_{minute,hour,day}, in the windows and state
 * backend the LLM endpoints use (one atomic reservation of n). Token and
 * spend limits do not apply: nothing is reserved for them and a spent
 * budget does not refuse. Consumers without request limits (and anonymous
 * callers) are not checked; their requests are recorded for the usage API.
 *
 * done runs exactly once with the verdict: before the call returns (memory
 * backend, nothing to check) or later on the worker's loop (Redis), unless
 * sl_ratelimit_requests_cancel(pending) runs first (the client went away: a
 * reservation admitted after that is given back). *pending is set while the
 * answer is awaited. The x-ratelimit-*-requests headers (and retry-after on a
 * refusal) are added to r->extra_headers for the answer to carry.
 */
typedef struct sl_rl_verdict {
    int status;             /* 0 admitted; 429 a limit refused; 503 the backend failed and on_error is deny */
    const char *limit;      /* 429: the limit that refused ("requests_per_minute") */
    uint32_t retry_after_s; /* 429, 503: seconds until a retry may pass */
    const char *message;    /* 429, 503: what to tell the caller (arena) */
} sl_rl_verdict;
typedef struct sl_rl_wait sl_rl_wait;
typedef void (*sl_rl_done_cb)(void *ud, const sl_rl_verdict *v);
void sl_ratelimit_requests(sl_gw_req *r, int64_t n, sl_rl_done_cb done, void *ud, sl_rl_wait **pending);
void sl_ratelimit_requests_cancel(sl_rl_wait **pending);

/*
 * GET /admin/api/consumers/{name}/usage, answered on the admin (main) loop:
 * requests, tokens and spend of the consumer in each current window, with
 * its limits. Finishes hx (now, or when the state backend answers).
 */
void sl_governance_usage_api(sl_hx *hx, uv_loop_t *loop, sl_config *cfg, sl_str name);
/* Closes the admin loop's state handle (at admin stop). */
void sl_governance_admin_close(void);

#endif
