/*
 * runtime.h: the process: one event loop per worker thread, each with its
 * own listeners (SO_REUSEPORT: the kernel spreads connections), its own
 * upstream client and its own copy of per-worker state. Nothing on the
 * request path is shared between workers except reference-counted config
 * snapshots and atomic counters.
 *
 * The main thread owns signals and the admin listener. Reload (SIGHUP): the
 * main thread loads and validates a new snapshot, then posts it to every
 * worker (uv_async); each worker swaps its own pointer, so requests that
 * started on the old snapshot finish on it (they hold a reference). Stop
 * (SIGTERM): workers stop accepting, finish what is in flight (bounded by
 * server.drain_timeout_ms), then their loops end.
 */
#ifndef SL_RUNTIME_H
#define SL_RUNTIME_H

#include <stdatomic.h>
#include <uv.h>

#include "config/config.h"
#include "http/server.h"
#include "http/upstream.h"

typedef struct sl_runtime sl_runtime;

typedef struct sl_worker {
    int id;
    sl_runtime *rt;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wakeup;           /* main -> worker: new config or stop */
    uv_timer_t drain_timer;      /* while stopping: polls in-flight count */
    uv_check_t log_flush;        /* after each loop iteration: write the access log lines it produced */
    uv_timer_t trim_timer;       /* gives memory freed after a burst back to the kernel (runtime.c) */
    uint64_t trim_seen;          /* exchanges started, at the last tick */
    bool trim_due;               /* exchanges ran since the last trim */
    sl_server *server;
    sl_upstream *upstream;
    sl_config *config;           /* this worker's current snapshot (one reference) */
    _Atomic(sl_config *) next_config; /* posted by main, taken by the worker */
    _Atomic bool stop_requested;
    bool stopping;
    uint64_t drain_deadline_ns;
    void *gw;                    /* gateway per-worker state (gateway.h) */
    _Atomic uint64_t inflight;   /* requests in progress (read by the admin thread) */
} sl_worker;

struct sl_runtime {
    sl_worker *workers;
    size_t nworkers;
    _Atomic bool ready;
    sl_config *config;           /* main thread's reference to the current snapshot */
    const char *config_path;     /* NULL = built-in */
};

/* Starts the workers on cfg (takes a reference). Returns 0, or an error after logging why. */
int sl_runtime_start(sl_runtime *rt, sl_config *cfg);
/* Posts a new snapshot to every worker (takes a reference). */
void sl_runtime_swap_config(sl_runtime *rt, sl_config *cfg);
/* Asks every worker to drain and stop; then joins them. */
void sl_runtime_stop(sl_runtime *rt);
void sl_runtime_join(sl_runtime *rt);

/* Gateway hooks, implemented in gateway.c. */
int sl_gateway_worker_init(sl_worker *w);
void sl_gateway_worker_free(sl_worker *w);
void sl_gateway_handle(sl_hx *hx, void *worker);
void sl_gateway_config_changed(sl_worker *w);

#endif
