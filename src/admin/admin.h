/*
 * admin.h: the admin listener (server.admin_listen), served by the main
 * thread's loop so that data-plane load never delays a health check or a
 * scrape: /healthz, /readyz, /metrics, and later the admin API.
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "gateway/runtime.h"

typedef struct sl_admin sl_admin;

sl_admin *sl_admin_start(uv_loop_t *loop, sl_runtime *rt, const char *host, int port);
void sl_admin_stop(sl_admin *a);

#endif
