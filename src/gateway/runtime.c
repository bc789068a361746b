/* runtime.c: worker threads, config distribution, draining (see runtime.h). */
#include "gateway/runtime.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/log.h"
#include "gateway/accesslog.h"

static sl_server_limits limits_from(const sl_config *cfg, size_t nworkers)
{
    const sl_limits_cfg *l = &cfg->server.limits;
    sl_server_limits s = {
        .max_header_bytes = l->max_header_bytes,
        .max_headers = l->max_headers,
        .max_body_bytes = l->max_body_bytes,
        .header_timeout_ms = l->header_timeout_ms,
        .idle_timeout_ms = l->idle_timeout_ms,
        .max_connections = (l->max_connections + nworkers - 1) / nworkers,
    };
    return s;
}

static void worker_take_config(sl_worker *w)
{
    sl_config *next = atomic_exchange(&w->next_config, NULL);
    if (!next) return;
    sl_config *old = w->config;
    w->config = next;
    if (!w->server) { /* already shut down */
        if (old) sl_config_release(old);
        return;
    }
    sl_server_limits lim = limits_from(next, w->rt->nworkers);
    sl_server_set_limits(w->server, &lim);
    sl_gateway_config_changed(w);
    if (old) sl_config_release(old);
}

/*
 * glibc keeps the heap pages a burst freed (10,000 streams leave their peak
 * RSS behind for good). Once a worker that ran exchanges has been quiet for a
 * whole tick (none in progress, none started), they go back to the kernel:
 * one malloc_trim per quiet spell, never under load.
 */
#define TRIM_TICK_MS 2000

static void on_trim_tick(uv_timer_t *t)
{
    sl_worker *w = t->data;
    if (!w->server) return;
    uint64_t started = sl_server_exchanges_started(w->server);
    bool quiet = started == w->trim_seen && sl_server_active_exchanges(w->server) == 0;
    if (started != w->trim_seen) w->trim_due = true;
    w->trim_seen = started;
    if (!quiet || !w->trim_due) return;
    w->trim_due = false;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void worker_shutdown(sl_worker *w)
{
    uv_timer_stop(&w->drain_timer);
    sl_server_free(w->server); /* aborts whatever is still in flight */
    w->server = NULL;
    sl_gateway_worker_free(w);
    sl_upstream_free(w->upstream);
    w->upstream = NULL;
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
    uv_close((uv_handle_t *)&w->log_flush, NULL);
    uv_close((uv_handle_t *)&w->trim_timer, NULL);
}

static void on_drain_tick(uv_timer_t *t)
{
    sl_worker *w = t->data;
    sl_server_close_idle(w->server);
    if (sl_server_active_exchanges(w->server) == 0 || uv_hrtime() >= w->drain_deadline_ns) {
        if (sl_server_active_exchanges(w->server))
            sl_warn("worker %d: drain timeout, aborting %zu requests", w->id, sl_server_active_exchanges(w->server));
        worker_shutdown(w);
    }
}

static void on_wakeup(uv_async_t *a)
{
    sl_worker *w = a->data;
    worker_take_config(w);
    if (atomic_load(&w->stop_requested) && !w->stopping) {
        w->stopping = true;
        sl_server_stop_accepting(w->server);
        sl_server_close_idle(w->server);
        w->drain_deadline_ns = uv_hrtime() + w->config->server.drain_timeout_ms * 1000000ull;
        uv_timer_start(&w->drain_timer, on_drain_tick, 0, 20);
    }
}

static void worker_main(void *arg)
{
    sl_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Anything left (e.g. handles of a module that forgot one) is closed so the loop can be freed. */
    uv_walk(&w->loop, on_walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0) sl_warn("worker %d: loop not empty at exit", w->id);
    if (w->config) sl_config_release(w->config);
    w->config = NULL;
    sl_accesslog_thread_done();
}

static void on_log_flush(uv_check_t *h) { sl_accesslog_flush(); }

static int worker_init(sl_runtime *rt, sl_worker *w, int id, sl_config *cfg)
{
    w->id = id;
    w->rt = rt;
    if (uv_loop_init(&w->loop) != 0) return SL_ENOMEM;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    uv_timer_init(&w->loop, &w->drain_timer);
    uv_check_init(&w->loop, &w->log_flush);
    uv_check_start(&w->log_flush, on_log_flush);
    uv_timer_init(&w->loop, &w->trim_timer);
    uv_timer_start(&w->trim_timer, on_trim_tick, TRIM_TICK_MS, TRIM_TICK_MS);
    uv_unref((uv_handle_t *)&w->trim_timer); /* never what keeps the loop alive */
    w->wakeup.data = w->drain_timer.data = w->trim_timer.data = w;
    w->config = sl_config_retain(cfg);
    sl_server_limits lim = limits_from(cfg, rt->nworkers);
    w->server = sl_server_new(&w->loop, &lim, sl_gateway_handle, w);
    sl_upstream_opts uo = {.max_connections = 0, .max_host_connections = 0};
    w->upstream = sl_upstream_new(&w->loop, &uo);
    if (!w->server || !w->upstream) return SL_ENOMEM;
    for (size_t i = 0; i < cfg->server.nlisten; i++) {
        const sl_listen_addr *a = &cfg->server.listen[i];
        int rc = sl_server_listen(w->server, a->host, a->port);
        if (rc) {
            sl_error("cannot listen on %s:%d: %s", a->host, a->port, rc == SL_EIO ? strerror(errno) : sl_strerror(rc));
            return rc;
        }
    }
    return sl_gateway_worker_init(w);
}

int sl_runtime_start(sl_runtime *rt, sl_config *cfg)
{
    size_t n = cfg->server.workers;
    if (n == 0) {
        uv_cpu_info_t *ci;
        int count = 0;
        n = uv_cpu_info(&ci, &count) == 0 && count > 0 ? (size_t)count : 1;
        if (count > 0) uv_free_cpu_info(ci, count);
    }
    rt->nworkers = n;
    rt->workers = sl_calloc(n, sizeof(sl_worker));
    if (!rt->workers) return SL_ENOMEM;
    rt->config = sl_config_retain(cfg);
    for (size_t i = 0; i < cfg->server.nlisten && !cfg->server.reuse_port; i++) {
        const sl_listen_addr *a = &cfg->server.listen[i];
        if (sl_server_probe_free(a->host, a->port) != SL_OK) {
            sl_error("cannot listen on %s:%d: %s", a->host, a->port, strerror(errno));
            return SL_EIO;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int rc = worker_init(rt, &rt->workers[i], (int)i, cfg);
        if (rc) return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (uv_thread_create(&rt->workers[i].thread, worker_main, &rt->workers[i]) != 0) return SL_ENOMEM;
    }
    atomic_store(&rt->ready, true);
    return SL_OK;
}

void sl_runtime_swap_config(sl_runtime *rt, sl_config *cfg)
{
    for (size_t i = 0; i < rt->nworkers; i++) {
        sl_worker *w = &rt->workers[i];
        sl_config *prev = atomic_exchange(&w->next_config, sl_config_retain(cfg));
        if (prev) sl_config_release(prev); /* a snapshot the worker never picked up */
        uv_async_send(&w->wakeup);
    }
    sl_config *old = rt->config;
    rt->config = sl_config_retain(cfg);
    sl_config_release(old);
}

void sl_runtime_stop(sl_runtime *rt)
{
    atomic_store(&rt->ready, false);
    for (size_t i = 0; i < rt->nworkers; i++) {
        atomic_store(&rt->workers[i].stop_requested, true);
        uv_async_send(&rt->workers[i].wakeup);
    }
}

void sl_runtime_join(sl_runtime *rt)
{
    for (size_t i = 0; i < rt->nworkers; i++) {
        uv_thread_join(&rt->workers[i].thread);
        sl_config *pending = atomic_exchange(&rt->workers[i].next_config, NULL);
        if (pending) sl_config_release(pending);
    }
    sl_free(rt->workers);
    rt->workers = NULL;
    if (rt->config) sl_config_release(rt->config);
    rt->config = NULL;
}
