/* export.c: see export.h. */
#include "telemetry/export.h"

#include <pthread.h>
#include <uv.h>

#include "core/buf.h"
#include "core/log.h"
#include "http/upstream.h"
#include "telemetry/trace.h"

#define MAX_EXPORT_HEADERS 40
#define MAX_BODY (64u << 20)
#define STOP_MAX_MS 2000 /* on exit, queued spans get at most this long to leave */

typedef struct item {
    struct item *next;
    uint32_t nspans;
    size_t len;
    char json[];
} item;

/* The queue: producers are workers, the consumer is the exporter thread. */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static item *q_head, *q_tail;
static uint64_t q_spans;

static _Atomic uint64_t st_exported, st_drop_full, st_drop_fail, st_requests, st_queued;
static _Atomic uint64_t wake_at = 512; /* batch_size of the current snapshot */

typedef struct exporter {
    bool started;
    _Atomic bool running;
    _Atomic bool stop;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer;
    uint64_t interval_ms;
    sl_upstream *up;
    pthread_mutex_t cfg_mu;
    sl_config *cfg;           /* the latest snapshot (one reference), under cfg_mu */
    /* the export in flight */
    sl_up_req *req;
    sl_config *req_cfg;
    sl_buf body;
    sl_http_header hdrs[MAX_EXPORT_HEADERS];
    uint32_t req_spans;
    uint64_t stop_deadline;
    uint64_t failures;
} exporter;

static exporter ex = {.cfg_mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- producer side ------------------------------------------------------------ */

void sl_trace_export_push(const char *json, size_t len, uint32_t nspans, uint64_t queue_size)
{
    if (!atomic_load_explicit(&ex.running, memory_order_acquire)) {
        atomic_fetch_add(&st_drop_full, nspans);
        return;
    }
    item *it = sl_malloc(sizeof(*it) + len);
    if (!it) {
        atomic_fetch_add(&st_drop_full, nspans);
        return;
    }
    it->next = NULL, it->nspans = nspans, it->len = len;
    memcpy(it->json, json, len);
    pthread_mutex_lock(&q_mu);
    bool fits = q_spans + nspans <= queue_size;
    if (fits) {
        if (q_tail) q_tail->next = it;
        else q_head = it;
        q_tail = it;
        q_spans += nspans;
        atomic_store_explicit(&st_queued, q_spans, memory_order_relaxed);
    }
    bool wake = fits && q_spans >= atomic_load_explicit(&wake_at, memory_order_relaxed);
    pthread_mutex_unlock(&q_mu);
    if (!fits) {
        atomic_fetch_add(&st_drop_full, nspans);
        sl_free(it);
    } else if (wake) {
        uv_async_send(&ex.wake);
    }
}

void sl_trace_stats_get(sl_trace_stats *s)
{
    s->exported = atomic_load(&st_exported);
    s->dropped_queue_full = atomic_load(&st_drop_full);
    s->dropped_export_failed = atomic_load(&st_drop_fail);
    s->queued = atomic_load(&st_queued);
    s->export_requests = atomic_load(&st_requests);
}

/* Takes items off the queue until about max_spans spans (at least one item). */
static item *pop_batch(uint64_t max_spans, uint32_t *nspans)
{
    pthread_mutex_lock(&q_mu);
    item *first = q_head, *last = NULL;
    uint64_t n = 0;
    for (item *it = q_head; it && (n == 0 || n + it->nspans <= max_spans); it = it->next) n += it->nspans, last = it;
    if (last) {
        q_head = last->next;
        if (!q_head) q_tail = NULL;
        last->next = NULL;
        q_spans -= n;
        atomic_store_explicit(&st_queued, q_spans, memory_order_relaxed);
    } else {
        first = NULL;
    }
    pthread_mutex_unlock(&q_mu);
    *nspans = (uint32_t)n;
    return first;
}

static bool queue_empty(void)
{
    pthread_mutex_lock(&q_mu);
    bool e = q_head == NULL;
    pthread_mutex_unlock(&q_mu);
    return e;
}

static void free_items(item *it)
{
    while (it) {
        item *next = it->next;
        sl_free(it);
        it = next;
    }
}

/* ---- exporter thread ------------------------------------------------------------ */

static sl_config *current_cfg(void)
{
    pthread_mutex_lock(&ex.cfg_mu);
    sl_config *c = ex.cfg ? sl_config_retain(ex.cfg) : NULL;
    pthread_mutex_unlock(&ex.cfg_mu);
    return c;
}

static void flush(void);
static void shutdown_loop(void);

static void export_done(void *ud, const sl_up_result *res)
{
    bool ok = res->error == SL_UP_OK && res->status >= 200 && res->status < 300;
    atomic_fetch_add(&st_requests, 1);
    atomic_fetch_add(ok ? &st_exported : &st_drop_fail, ex.req_spans);
    if (!ok && (ex.failures++ % 100) == 0)
        sl_warn("trace export to %s failed (%s%d); %u spans dropped", ex.req_cfg->telemetry.traces.endpoint,
                res->error == SL_UP_OK ? "status " : "", res->error == SL_UP_OK ? res->status : (int)res->error,
                ex.req_spans);
    ex.req = NULL;
    sl_config_release(ex.req_cfg);
    ex.req_cfg = NULL;
    sl_buf_clear(&ex.body);
    flush(); /* more waiting, or stopping */
}

static int ignore_head(void *ud, int status, const sl_http_header *h, size_t n) { return SL_OK; }
static int ignore_data(void *ud, const char *p, size_t n) { return SL_OK; }

static const sl_up_callbacks export_cb = {.on_head = ignore_head, .on_data = ignore_data, .on_done = export_done};

/* Builds and sends one batch. */
static void send_batch(sl_config *cfg, item *items, uint32_t nspans)
{
    const sl_traces_cfg *t = &cfg->telemetry.traces;
    sl_buf spans;
    sl_buf_init(&spans, MAX_BODY);
    int rc = SL_OK;
    for (item *it = items; it && rc == SL_OK; it = it->next) {
        if (it != items) rc = sl_buf_append(&spans, ",", 1);
        if (rc == SL_OK) rc = sl_buf_append(&spans, it->json, it->len);
    }
    free_items(items);
    sl_buf_clear(&ex.body);
    if (rc == SL_OK) rc = sl_otlp_wrap(&ex.body, sl_buf_str(&spans), t->service_name ? t->service_name : "sluice", SL_VERSION);
    sl_buf_free(&spans);
    size_t nh = 0;
    ex.hdrs[nh++] = (sl_http_header){SL_STR("content-type"), SL_STR("application/json")};
    for (size_t i = 0; i < t->nheaders && nh < MAX_EXPORT_HEADERS; i++)
        ex.hdrs[nh++] = (sl_http_header){sl_str_from_cstr(t->headers[i].key), sl_str_from_cstr(t->headers[i].value)};
    sl_up_request r = {.method = "POST", .url = t->endpoint, .headers = ex.hdrs, .nheaders = nh,
                       .body = ex.body.p, .body_len = ex.body.len, .connect_timeout_ms = t->timeout_ms,
                       .total_timeout_ms = t->timeout_ms};
    ex.req_spans = nspans;
    ex.req_cfg = cfg;
    ex.req = rc == SL_OK ? sl_upstream_start(ex.up, &r, &export_cb, NULL) : NULL;
    if (!ex.req) {
        atomic_fetch_add(&st_drop_fail, nspans);
        ex.req_cfg = NULL;
        sl_config_release(cfg);
    }
}

static void flush(void)
{
    bool stopping = atomic_load(&ex.stop);
    if (ex.req) return; /* one export at a time; its end calls flush again */
    if (stopping && (uv_hrtime() > ex.stop_deadline || queue_empty())) {
        uint32_t n;
        item *rest;
        while ((rest = pop_batch(UINT64_MAX, &n))) { /* out of time: what is left is lost, and counted */
            atomic_fetch_add(&st_drop_fail, n);
            free_items(rest);
        }
        shutdown_loop();
        return;
    }
    sl_config *cfg = current_cfg();
    if (!cfg || !cfg->telemetry.traces.endpoint) {
        if (cfg) sl_config_release(cfg);
        if (stopping) ex.stop_deadline = 0, flush();
        return;
    }
    uint32_t n = 0;
    item *batch = pop_batch(cfg->telemetry.traces.batch_size, &n);
    if (!batch) {
        sl_config_release(cfg);
        if (stopping) shutdown_loop();
        return;
    }
    send_batch(cfg, batch, n);
    if (!ex.req && stopping) flush();
}

/* Stopping and out of time: the export in flight is given up (its spans counted as dropped). */
static void give_up_in_flight(void)
{
    if (!ex.req || !atomic_load(&ex.stop) || uv_hrtime() <= ex.stop_deadline) return;
    sl_up_req_cancel(ex.req);
    ex.req = NULL;
    atomic_fetch_add(&st_drop_fail, ex.req_spans);
    sl_config_release(ex.req_cfg);
    ex.req_cfg = NULL;
}

static void on_timer(uv_timer_t *t)
{
    if (atomic_load(&ex.stop)) {
        give_up_in_flight();
        flush();
        return;
    }
    sl_config *cfg = current_cfg();
    if (cfg) {
        uint64_t iv = cfg->telemetry.traces.flush_interval_ms;
        atomic_store(&wake_at, cfg->telemetry.traces.batch_size);
        sl_config_release(cfg);
        if (iv != ex.interval_ms) { /* a reload changed it */
            ex.interval_ms = iv;
            uv_timer_start(&ex.timer, on_timer, iv, iv);
        }
    }
    flush();
}

static void on_wake(uv_async_t *a)
{
    if (atomic_load(&ex.stop) && !ex.stop_deadline) {
        sl_config *cfg = current_cfg();
        uint64_t ms = cfg ? SL_MIN(cfg->telemetry.traces.timeout_ms, STOP_MAX_MS) : 1000;
        if (cfg) sl_config_release(cfg);
        ex.stop_deadline = uv_hrtime() + ms * 1000000ull;
        uv_timer_start(&ex.timer, on_timer, 20, 20); /* checks the deadline while an export is in flight */
    }
    flush();
}

static void shutdown_loop(void)
{
    if (!ex.up) return;
    sl_upstream_free(ex.up);
    ex.up = NULL;
    uv_timer_stop(&ex.timer);
    uv_close((uv_handle_t *)&ex.timer, NULL);
    uv_close((uv_handle_t *)&ex.wake, NULL);
}

static void exporter_main(void *arg)
{
    uv_run(&ex.loop, UV_RUN_DEFAULT);
    uv_loop_close(&ex.loop);
}

static int start_thread(const sl_config *cfg)
{
    if (uv_loop_init(&ex.loop) != 0) return SL_ENOMEM;
    sl_upstream_opts uo = {.max_connections = 4, .max_host_connections = 2};
    ex.up = sl_upstream_new(&ex.loop, &uo);
    if (!ex.up) {
        uv_loop_close(&ex.loop);
        return SL_ENOMEM;
    }
    sl_buf_init(&ex.body, MAX_BODY);
    uv_async_init(&ex.loop, &ex.wake, on_wake);
    uv_timer_init(&ex.loop, &ex.timer);
    ex.interval_ms = cfg->telemetry.traces.flush_interval_ms;
    atomic_store(&wake_at, cfg->telemetry.traces.batch_size);
    uv_timer_start(&ex.timer, on_timer, ex.interval_ms, ex.interval_ms);
    atomic_store(&ex.running, true);
    if (uv_thread_create(&ex.thread, exporter_main, NULL) != 0) {
        atomic_store(&ex.running, false);
        return SL_ENOMEM;
    }
    ex.started = true;
    return SL_OK;
}

void sl_trace_export_configure(sl_config *cfg)
{
    pthread_mutex_lock(&ex.cfg_mu);
    sl_config *old = ex.cfg;
    ex.cfg = sl_config_retain(cfg);
    pthread_mutex_unlock(&ex.cfg_mu);
    if (old) sl_config_release(old);
    if (!ex.started && cfg->telemetry.traces.endpoint) {
        if (start_thread(cfg) != SL_OK) sl_error("cannot start the trace exporter");
    } else if (ex.started) {
        uv_async_send(&ex.wake);
    }
}

int sl_trace_export_start(sl_config *cfg)
{
    sl_trace_export_configure(cfg);
    return cfg->telemetry.traces.endpoint && !ex.started ? SL_ENOMEM : SL_OK;
}

void sl_trace_export_stop(void)
{
    if (ex.started) {
        atomic_store(&ex.stop, true);
        uv_async_send(&ex.wake);
        uv_thread_join(&ex.thread);
        atomic_store(&ex.running, false);
        ex.started = false;
        sl_buf_free(&ex.body);
    }
    uint32_t n;
    item *rest;
    while ((rest = pop_batch(UINT64_MAX, &n))) free_items(rest);
    pthread_mutex_lock(&ex.cfg_mu);
    sl_config *old = ex.cfg;
    ex.cfg = NULL;
    pthread_mutex_unlock(&ex.cfg_mu);
    if (old) sl_config_release(old);
}
