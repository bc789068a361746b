/* accesslog.c: see accesslog.h. */
#include "gateway/accesslog.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "json/json.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = 1;
static char *log_path;
static bool log_off;

static int open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) sl_error("cannot open access log %s", path);
    return fd;
}

int sl_accesslog_open(const char *path)
{
    log_off = path && strcmp(path, "off") == 0;
    if (!path || log_off) return SL_OK;
    int fd = open_path(path);
    if (fd < 0) return SL_EIO;
    log_path = sl_strdup(path);
    log_fd = fd;
    return SL_OK;
}

int sl_accesslog_reopen(void)
{
    if (!log_path) return SL_OK;
    int fd = open_path(log_path);
    if (fd < 0) return SL_EIO;
    pthread_mutex_lock(&log_mu);
    int old = log_fd;
    log_fd = fd;
    pthread_mutex_unlock(&log_mu);
    close(old);
    sl_info("access log reopened");
    return SL_OK;
}

void sl_accesslog_close(void)
{
    if (log_path) {
        close(log_fd);
        sl_free(log_path);
        log_path = NULL;
        log_fd = 1;
    }
}

static void key_str(sl_jw *w, const char *k, sl_str v)
{
    sl_jw_key(w, k);
    if (v.p) sl_jw_str(w, v);
    else sl_jw_null(w);
}

/* Milliseconds with microsecond precision ("12.345"), formatted without printf: it is on every request. */
static void key_ms(sl_jw *w, const char *k, uint64_t from, uint64_t to)
{
    sl_jw_key(w, k);
    if (!to || to < from) {
        sl_jw_null(w);
        return;
    }
    uint64_t us = (to - from) / 1000;
    char tmp[32];
    size_t i = sizeof tmp;
    for (int d = 0; d < 3; d++, us /= 10) tmp[--i] = (char)('0' + us % 10);
    tmp[--i] = '.';
    do {
        tmp[--i] = (char)('0' + us % 10);
        us /= 10;
    } while (us);
    sl_jw_raw(w, (sl_str){tmp + i, sizeof tmp - i});
}

/* Lines collect per thread and go out in one write per loop iteration (the
 * worker's uv_check calls sl_accesslog_flush), or sooner when this much is
 * waiting: a syscall per request is a visible cost on the proxy path. */
#define LOG_FLUSH_BYTES (32u << 10)

static _Thread_local sl_buf pending;

void sl_accesslog_flush(void)
{
    if (pending.len == 0) return;
    pthread_mutex_lock(&log_mu);
    size_t off = 0;
    while (off < pending.len) {
        ssize_t n = write(log_fd, pending.p + off, pending.len - off);
        if (n <= 0) break; /* a full disk or a closed pipe: drop rather than block the worker */
        off += (size_t)n;
    }
    pthread_mutex_unlock(&log_mu);
    sl_buf_clear(&pending);
}

void sl_accesslog_thread_done(void)
{
    sl_accesslog_flush();
    sl_buf_free(&pending);
}

void sl_accesslog_write(const sl_req_record *r)
{
    if (log_off) return;
    char ts[40];
    sl_log_timestamp(ts, sizeof ts);
    sl_buf b;
    sl_buf_init(&b, 4u << 20);
    sl_jw w;
    sl_jw_init(&w, &b);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "ts"), sl_jw_cstr(&w, ts);
    key_str(&w, "request_id", r->request_id);
    key_str(&w, "consumer", r->consumer);
    key_str(&w, "api", sl_str_from_cstr(r->api));
    key_str(&w, "model", r->model);
    key_str(&w, "provider", r->provider);
    key_str(&w, "upstream_model", r->upstream_model);
    sl_jw_key(&w, "status"), sl_jw_int(&w, r->status);
    sl_jw_key(&w, "stream"), sl_jw_bool(&w, r->stream);
    sl_jw_key(&w, "input_tokens"), sl_jw_int(&w, r->usage.input_tokens);
    sl_jw_key(&w, "output_tokens"), sl_jw_int(&w, r->usage.output_tokens);
    sl_jw_key(&w, "cached_tokens"), sl_jw_int(&w, r->usage.cached_tokens);
    sl_jw_key(&w, "cost_usd");
    if (r->cost_usd != 0) sl_jw_double(&w, r->cost_usd);
    else sl_jw_raw(&w, SL_STR("0")); /* the common case without pricing: no float formatting */
    key_ms(&w, "ttft_ms", r->start_ns, r->first_byte_ns);
    key_ms(&w, "duration_ms", r->start_ns, r->end_ns);
    sl_jw_key(&w, "attempts"), sl_jw_int(&w, r->attempts);
    key_str(&w, "cache", sl_str_from_cstr(r->cache));
    key_str(&w, "error", r->error.n ? r->error : SL_STR_NULL);
    if (r->content_logged) { /* telemetry.log_content */
        sl_jw_key(&w, "prompt");
        if (r->prompt.n) sl_jw_raw(&w, r->prompt);
        else sl_jw_null(&w);
        key_str(&w, "completion", r->completion.n ? r->completion : SL_STR_NULL);
        sl_jw_key(&w, "content_truncated"), sl_jw_bool(&w, r->content_truncated);
    }
    sl_jw_obj_end(&w);
    sl_buf_append(&b, "\n", 1);
    if (w.err == SL_OK && b.len) {
        if (pending.max == 0) pending.max = 8u << 20;
        if (sl_buf_append(&pending, b.p, b.len) != SL_OK) { /* over the cap: write what waits, then this */
            sl_accesslog_flush();
            sl_buf_append(&pending, b.p, b.len);
        }
        if (pending.len >= LOG_FLUSH_BYTES) sl_accesslog_flush();
    }
    sl_buf_free(&b);
}
