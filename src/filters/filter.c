/*
 * filter.c: the filter chain (see filter.h). The table below is the one
 * place a new feature is registered; order matters: identity first, then
 * access, then limits, then anything that may answer from the gateway itself.
 */
#include "filters/filter.h"

#include "filters/governance.h"

static const sl_filter *const chain[] = {
    &sl_filter_auth,      /* who is calling; may they use this model (401, 403) */
    &sl_filter_ratelimit, /* requests, tokens, budgets (429); settles usage on done */
};

#define CHAIN_LEN SL_ARRAY_LEN(chain)

int sl_filters_run_head(sl_gw_req *r)
{
    for (size_t i = 0; i < CHAIN_LEN; i++) {
        if (!chain[i] || !chain[i]->on_request_head) continue;
        int rc = chain[i]->on_request_head(r);
        if (rc != SL_FILTER_NEXT) return rc;
    }
    return SL_FILTER_NEXT;
}

static void run_request_from(sl_gw_req *r, size_t from)
{
    for (size_t i = from; i < CHAIN_LEN; i++) {
        if (!chain[i] || !chain[i]->on_request) continue;
        r->filter_pos = (uint32_t)i + 1;
        int rc = chain[i]->on_request(r);
        if (rc != SL_FILTER_NEXT) return; /* answered, or resumes later */
    }
    sl_proxy_start(r);
}

void sl_filters_run_request(sl_gw_req *r) { run_request_from(r, 0); }
void sl_filter_resume(sl_gw_req *r) { run_request_from(r, r->filter_pos); }

void sl_filters_run_done(sl_gw_req *r)
{
    for (size_t i = 0; i < CHAIN_LEN; i++)
        if (chain[i] && chain[i]->on_done) chain[i]->on_done(r);
}
