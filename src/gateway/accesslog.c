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

/*
 * The line is written straight into the per-thread pending buffer: the keys
 * are constants (no escaping, one append each with their punctuation) and only
 * the values go through the JSON escaper. Building it with the generic sl_jw
 * writer into a fresh buffer and copying it cost ~15,000 instructions a request.
 */
#define PUT(b, lit) sl_buf_append((b), (lit), sizeof(lit) - 1)

/* ,"key": then "value" (escaped) or null: key_lit carries the comma, quotes and colon. */
static int put_str(sl_buf *b, const char *key_lit, size_t key_n, sl_str v)
{
    int rc = sl_buf_append(b, key_lit, key_n);
    if (rc) return rc;
    if (!v.p) return PUT(b, "null");
    if ((rc = PUT(b, "\"")) || (rc = sl_json_escape(b, v))) return rc;
    return PUT(b, "\"");
}
#define PUT_STR(b, key, v) put_str((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))

static int put_int(sl_buf *b, const char *key_lit, size_t key_n, int64_t v)
{
    int rc = sl_buf_append(b, key_lit, key_n);
    if (rc) return rc;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        if ((rc = PUT(b, "-"))) return rc;
        u = 0 - u; /* also right for INT64_MIN */
    }
    return sl_buf_append_u64(b, u);
}
#define PUT_INT(b, key, v) put_int((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))

static int put_bool(sl_buf *b, const char *key_lit, size_t key_n, bool v)
{
    int rc = sl_buf_append(b, key_lit, key_n);
    return rc ? rc : v ? PUT(b, "true") : PUT(b, "false");
}
#define PUT_BOOL(b, key, v) put_bool((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v))

/* Milliseconds with microsecond precision ("12.345"), formatted without printf: it is on every request. */
static int put_ms(sl_buf *b, const char *key_lit, size_t key_n, uint64_t from, uint64_t to)
{
    int rc = sl_buf_append(b, key_lit, key_n);
    if (rc) return rc;
    if (!to || to < from) return PUT(b, "null");
    uint64_t us = (to - from) / 1000;
    char tmp[32];
    size_t i = sizeof tmp;
    for (int d = 0; d < 3; d++, us /= 10) tmp[--i] = (char)('0' + us % 10);
    tmp[--i] = '.';
    do {
        tmp[--i] = (char)('0' + us % 10);
        us /= 10;
    } while (us);
    return sl_buf_append(b, tmp + i, sizeof tmp - i);
}
#define PUT_MS(b, key, from, to) put_ms((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (from), (to))

static sl_str cstr_or_null(const char *s) { return s ? sl_str_from_cstr(s) : SL_STR_NULL; }

/* One access-log line, newline included, appended to b. */
static int put_line(sl_buf *b, const sl_req_record *r)
{
    char ts[40];
    sl_log_timestamp(ts, sizeof ts);
    int rc;
    if ((rc = PUT(b, "{\"ts\":\"")) || (rc = sl_json_escape(b, sl_str_from_cstr(ts))) || (rc = PUT(b, "\"")) ||
        (rc = PUT_STR(b, "request_id", r->request_id)) || (rc = PUT_STR(b, "consumer", r->consumer)) ||
        (rc = PUT_STR(b, "api", cstr_or_null(r->api))) || (rc = PUT_STR(b, "model", r->model)) ||
        (rc = PUT_STR(b, "provider", r->provider)) || (rc = PUT_STR(b, "upstream_model", r->upstream_model)) ||
        (rc = PUT_INT(b, "status", r->status)) || (rc = PUT_BOOL(b, "stream", r->stream)) ||
        (rc = PUT_INT(b, "input_tokens", r->usage.input_tokens)) ||
        (rc = PUT_INT(b, "output_tokens", r->usage.output_tokens)) ||
        (rc = PUT_INT(b, "cached_tokens", r->usage.cached_tokens)) || (rc = PUT(b, ",\"cost_usd\":")))
        return rc;
    if (r->cost_usd != 0) {
        sl_jw w; /* at depth 0 the writer adds no comma: just the shortest round-tripping number */
        sl_jw_init(&w, b);
        sl_jw_double(&w, r->cost_usd);
        if ((rc = w.err)) return rc;
    } else if ((rc = PUT(b, "0"))) { /* the common case without pricing: no float formatting */
        return rc;
    }
    if ((rc = PUT_MS(b, "ttft_ms", r->start_ns, r->first_byte_ns)) ||
        (rc = PUT_MS(b, "duration_ms", r->start_ns, r->end_ns)) || (rc = PUT_INT(b, "attempts", r->attempts)) ||
        (rc = PUT_STR(b, "cache", cstr_or_null(r->cache))) ||
        (rc = PUT_STR(b, "error", r->error.n ? r->error : SL_STR_NULL)))
        return rc;
    if (r->content_logged) { /* telemetry.log_content */
        if ((rc = PUT(b, ",\"prompt\":"))) return rc;
        rc = r->prompt.n ? sl_buf_append(b, r->prompt.p, r->prompt.n) : PUT(b, "null");
        if (rc || (rc = PUT_STR(b, "completion", r->completion.n ? r->completion : SL_STR_NULL)) ||
            (rc = PUT_BOOL(b, "content_truncated", r->content_truncated)))
            return rc;
    }
    return PUT(b, "}\n");
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

/*
 * The common line (no logged content, no cost) in one pass over memory
 * reserved once: the room is bounded by the escaped worst case of the
 * strings, so no per-field capacity checks are needed.
 */
#define RAW(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) += sizeof(lit) - 1)

static char *raw_str(char *o, sl_str v)
{
    if (!v.p) {
        RAW(o, "null");
        return o;
    }
    *o++ = '"';
    o += sl_json_escape_into(o, v);
    *o++ = '"';
    return o;
}

static char *raw_u64(char *o, uint64_t v) { return o + sl_u64_dec(o, v); }
static char *raw_int(char *o, int64_t v) { return o + sl_i64_dec(o, v); }

static char *raw_ms(char *o, uint64_t from, uint64_t to)
{
    if (!to || to < from) {
        RAW(o, "null");
        return o;
    }
    uint64_t us = (to - from) / 1000;
    o = raw_u64(o, us / 1000);
    *o++ = '.';
    us %= 1000;
    o[0] = (char)('0' + us / 100), o[1] = (char)('0' + us / 10 % 10), o[2] = (char)('0' + us % 10);
    return o + 3;
}

static bool fast_line_ok(const sl_req_record *r) { return !r->content_logged && r->cost_usd == 0; }

/* Room for the constant text, the numbers and the escaped strings. */
static size_t fast_line_room(const sl_req_record *r, sl_str api, sl_str cache, sl_str err)
{
    size_t strs = r->request_id.n + r->consumer.n + api.n + r->model.n + r->provider.n + r->upstream_model.n +
                  cache.n + err.n + 40 /* ts */;
    return 512 + SL_JSON_ESCAPE_MAX(strs);
}

static size_t fast_line(char *start, const sl_req_record *r, sl_str api, sl_str cache, sl_str err)
{
    char ts[40];
    sl_log_timestamp(ts, sizeof ts);
    char *o = start;
    RAW(o, "{\"ts\":");
    o = raw_str(o, sl_str_from_cstr(ts));
    RAW(o, ",\"request_id\":"), o = raw_str(o, r->request_id);
    RAW(o, ",\"consumer\":"), o = raw_str(o, r->consumer);
    RAW(o, ",\"api\":"), o = raw_str(o, api);
    RAW(o, ",\"model\":"), o = raw_str(o, r->model);
    RAW(o, ",\"provider\":"), o = raw_str(o, r->provider);
    RAW(o, ",\"upstream_model\":"), o = raw_str(o, r->upstream_model);
    RAW(o, ",\"status\":"), o = raw_int(o, r->status);
    if (r->stream) RAW(o, ",\"stream\":true");
    else RAW(o, ",\"stream\":false");
    RAW(o, ",\"input_tokens\":"), o = raw_int(o, r->usage.input_tokens);
    RAW(o, ",\"output_tokens\":"), o = raw_int(o, r->usage.output_tokens);
    RAW(o, ",\"cached_tokens\":"), o = raw_int(o, r->usage.cached_tokens);
    RAW(o, ",\"cost_usd\":0,\"ttft_ms\":"), o = raw_ms(o, r->start_ns, r->first_byte_ns);
    RAW(o, ",\"duration_ms\":"), o = raw_ms(o, r->start_ns, r->end_ns);
    RAW(o, ",\"attempts\":"), o = raw_u64(o, r->attempts);
    RAW(o, ",\"cache\":"), o = raw_str(o, cache);
    RAW(o, ",\"error\":"), o = raw_str(o, err);
    RAW(o, "}\n");
    return (size_t)(o - start);
}

/* A line longer than this is dropped (a runaway logged prompt must not stall the worker). */
#define LOG_LINE_MAX (4u << 20)

void sl_accesslog_write(const sl_req_record *r)
{
    if (log_off) return;
    if (pending.max == 0) pending.max = 8u << 20;
    if (fast_line_ok(r)) {
        sl_str api = cstr_or_null(r->api), cache = cstr_or_null(r->cache), err = r->error.n ? r->error : SL_STR_NULL;
        size_t room = fast_line_room(r, api, cache, err);
        if (room <= LOG_LINE_MAX && pending.len + room >= pending.max) sl_accesslog_flush();
        if (room <= LOG_LINE_MAX && sl_buf_reserve(&pending, room) == SL_OK) {
            pending.len += fast_line(pending.p + pending.len, r, api, cache, err);
            pending.p[pending.len] = '\0';
            if (pending.len >= LOG_FLUSH_BYTES) sl_accesslog_flush();
            return;
        }
    }
    size_t start = pending.len;
    int rc = put_line(&pending, r);
    if (rc != SL_OK && start > 0) { /* over the cap: write what waits, then this line on its own */
        pending.len = start;
        sl_accesslog_flush();
        start = 0;
        rc = put_line(&pending, r);
    }
    if (rc != SL_OK || pending.len - start > LOG_LINE_MAX) {
        pending.len = start; /* never a partial line */
        if (pending.p) pending.p[start] = '\0';
    }
    if (pending.len >= LOG_FLUSH_BYTES) sl_accesslog_flush();
}
