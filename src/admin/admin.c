/* admin.c: /healthz, /readyz, /metrics on the admin listener (see admin.h). */
#include "admin/admin.h"

#include "core/buf.h"
#include "core/log.h"
#include "filters/governance.h"
#include "gateway/metrics.h"

struct sl_admin {
    sl_server *server;
    sl_runtime *rt;
    uv_loop_t *loop;
};

static const sl_http_header json_ct[] = {{SL_STR("content-type"), SL_STR("application/json")}};
static const sl_http_header text_ct[] = {{SL_STR("content-type"), SL_STR("text/plain; version=0.0.4; charset=utf-8")}};

static void respond_json(sl_hx *hx, int status, const char *body)
{
    sl_hx_respond(hx, status, json_ct, 1, body, strlen(body));
    sl_hx_finish(hx);
}

static void handle_metrics(sl_admin *a, sl_hx *hx)
{
    sl_buf out;
    sl_buf_init(&out, 64u << 20);
    if (sl_metrics_render(a->rt, &out) != SL_OK) {
        sl_buf_free(&out);
        respond_json(hx, 500, "{\"error\":\"metrics rendering failed\"}");
        return;
    }
    sl_hx_respond(hx, 200, text_ct, 1, out.p, out.len);
    sl_hx_finish(hx);
    sl_buf_free(&out);
}

static void admin_handle(sl_hx *hx, void *ctx)
{
    sl_admin *a = ctx;
    sl_str path = hx->req.path;
    bool get = sl_str_eq_lit(hx->req.method, "GET") || sl_str_eq_lit(hx->req.method, "HEAD");
    if (!get) {
        respond_json(hx, 405, "{\"error\":\"method not allowed\"}");
    } else if (sl_str_eq_lit(path, "/healthz")) {
        respond_json(hx, 200, "{\"status\":\"ok\"}");
    } else if (sl_str_eq_lit(path, "/readyz")) {
        bool ready = atomic_load(&a->rt->ready);
        respond_json(hx, ready ? 200 : 503, ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not ready\"}");
    } else if (sl_str_eq_lit(path, "/metrics")) {
        handle_metrics(a, hx);
    } else if (sl_str_starts_with(path, SL_STR("/admin/api/consumers/")) && path.n > 27 &&
               sl_str_eq_lit((sl_str){path.p + path.n - 6, 6}, "/usage")) {
        sl_str name = {path.p + 21, path.n - 27}; /* /admin/api/consumers/{name}/usage */
        sl_governance_usage_api(hx, a->loop, a->rt->config, name);
    } else {
        respond_json(hx, 404, "{\"error\":\"not found\"}");
    }
}

sl_admin *sl_admin_start(uv_loop_t *loop, sl_runtime *rt, const char *host, int port)
{
    sl_admin *a = sl_calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->rt = rt;
    a->loop = loop;
    sl_server_limits lim = {.max_header_bytes = 16384, .max_headers = 100, .max_body_bytes = 1 << 20,
                            .header_timeout_ms = 10000, .idle_timeout_ms = 75000, .max_connections = 1024};
    a->server = sl_server_new(loop, &lim, admin_handle, a);
    if (!a->server || sl_server_listen(a->server, host, port) != SL_OK) {
        if (a->server) sl_server_free(a->server);
        sl_free(a);
        return NULL;
    }
    return a;
}

void sl_admin_stop(sl_admin *a)
{
    if (!a) return;
    sl_server_free(a->server);
    sl_governance_admin_close();
    sl_free(a);
}
