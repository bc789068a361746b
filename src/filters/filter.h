/*
 * filter.h: features are filters (ARCHITECTURE.md habit 2). A filter is a
 * table of optional hooks, called in chain order at fixed points of a
 * request's life:
 *
 *   on_request_head  headers known, body not parsed yet (auth: 401 before 400)
 *   on_request       body parsed, model resolved (model access, limits, cache lookup, guards)
 *   on_done          the answer is complete or failed (settle reservations, fill caches)
 *
 * A request hook returns SL_FILTER_NEXT to go on, SL_FILTER_DONE when it has
 * answered the request itself (e.g. sl_gw_error), or SL_FILTER_WAIT when it
 * started asynchronous work (Redis, an embedding call): it then calls
 * sl_filter_resume(r) once, on the same worker, to go on from the next filter.
 */
#ifndef SL_FILTER_H
#define SL_FILTER_H

#include "gateway/gateway.h"

enum { SL_FILTER_NEXT = 0, SL_FILTER_DONE = 1, SL_FILTER_WAIT = 2 };

typedef struct sl_filter {
    const char *name;
    int (*on_request_head)(sl_gw_req *r);
    int (*on_request)(sl_gw_req *r);
    void (*on_done)(sl_gw_req *r);
} sl_filter;

/* Runs the chain for a phase from filter index `from`; returns as the hooks do. */
int sl_filters_run_head(sl_gw_req *r);
/* Runs on_request hooks, then starts the upstream call unless a filter answered or waits. */
void sl_filters_run_request(sl_gw_req *r);
/* Continues after SL_FILTER_WAIT. */
void sl_filter_resume(sl_gw_req *r);
void sl_filters_run_done(sl_gw_req *r);

#endif
