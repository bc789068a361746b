/*
 * mock_record.c: the read-back API's state, shared by all worker threads.
 *
 * Every non-control request is kept in a ring (at most RING_MAX entries and
 * RING_BYTES bytes; the oldest go first): its small head (seq, time, method,
 * path, query, headers) rendered as JSON at once, its body as raw bytes in
 * the same allocation. The body is checked and escaped only when GET
 * /mock/requests asks for it: recording a 256 KB body is then one memcpy,
 * not a UTF-8 check, an escape and a grown copy on every request (the
 * benchmarks send bodies this size). Bodies that are not valid UTF-8 are
 * shown as body_base64 instead of body. Counters are atomics.
 */
#include "mock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define RING_MAX 256
#define RING_BYTES (64u << 20)
#define BODY_MAX (8u << 20)

typedef struct entry {
    char *mem;              /* head JSON, then the body bytes */
    size_t head_len, body_len;
    bool cut;               /* the body was longer than BODY_MAX */
} entry;

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static entry ring[RING_MAX];
static size_t ring_head, ring_count, ring_bytes; /* head: index of the oldest */

static bool utf8_valid(sl_str s)
{
    const unsigned char *p = (const unsigned char *)s.p, *e = p + s.n;
    while (p < e) {
        unsigned c = *p++;
        if (c < 0x80) continue;
        int more = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
        if (more < 0 || c > 0xF4 || e - p < more) return false;
        unsigned cp = c & (0x3Fu >> more);
        for (int i = 0; i < more; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (more == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        p += more;
    }
    return true;
}

/* Headers as an object with lower-case names; repeated headers joined with ", ". */
static void write_headers(sl_jw *w, const sl_http_request *req)
{
    sl_buf name, val;
    sl_buf_init(&name, 1u << 16);
    sl_buf_init(&val, 1u << 20);
    sl_jw_obj_begin(w);
    for (size_t i = 0; i < req->nheaders; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = sl_str_case_eq(req->headers[j].name, req->headers[i].name);
        if (seen) continue;
        sl_buf_clear(&name);
        sl_buf_clear(&val);
        for (size_t c = 0; c < req->headers[i].name.n; c++) {
            char ch = req->headers[i].name.p[c];
            sl_buf_append(&name, &(char){ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch}, 1);
        }
        for (size_t j = i; j < req->nheaders; j++) {
            if (!sl_str_case_eq(req->headers[j].name, req->headers[i].name)) continue;
            if (val.len) sl_buf_append_cstr(&val, ", ");
            sl_buf_append_str(&val, req->headers[j].value);
        }
        sl_jw_key_str(w, sl_buf_str(&name));
        sl_jw_str(w, sl_buf_str(&val));
    }
    sl_jw_obj_end(w);
    sl_buf_free(&name);
    sl_buf_free(&val);
}

/* The record's JSON up to and including the headers object, without the closing brace. */
static int render_head(const sl_hx *hx, uint64_t seq, sl_buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sl_jw w;
    sl_jw_init(&w, b);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "seq");
    sl_jw_int(&w, (int64_t)seq);
    sl_jw_key(&w, "time_ms");
    sl_jw_int(&w, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    sl_jw_key(&w, "method");
    sl_jw_str(&w, hx->req.method);
    sl_jw_key(&w, "path");
    sl_jw_str(&w, hx->req.path);
    sl_jw_key(&w, "query");
    sl_jw_str(&w, hx->req.query);
    sl_jw_key(&w, "headers");
    write_headers(&w, &hx->req);
    return w.err;
}

/* The rest of a record: ,"body":...,"body_truncated":...} */
static int render_tail(const entry *e, sl_buf *out)
{
    sl_str body = {e->mem + e->head_len, e->body_len};
    int rc;
    if (utf8_valid(body)) {
        rc = sl_buf_append_cstr(out, ",\"body\":\"");
        if (!rc) rc = sl_json_escape(out, body);
        if (!rc) rc = sl_buf_append_cstr(out, "\"");
    } else {
        rc = sl_buf_append_cstr(out, ",\"body\":null,\"body_base64\":\"");
        if (!rc) rc = sl_mock_base64(out, body.p, body.n);
        if (!rc) rc = sl_buf_append_cstr(out, "\"");
    }
    if (!rc) rc = sl_buf_append_cstr(out, e->cut ? ",\"body_truncated\":true}" : ",\"body_truncated\":false}");
    return rc;
}

static void drop_oldest(void)
{
    entry *e = &ring[ring_head];
    ring_bytes -= e->head_len + e->body_len;
    sl_free(e->mem);
    *e = (entry){0};
    ring_head = (ring_head + 1) % RING_MAX;
    ring_count--;
}

void sl_mock_record(const sl_hx *hx, uint64_t seq)
{
    sl_buf head;
    sl_buf_init(&head, RING_BYTES);
    sl_str body = hx->body;
    bool cut = body.n > BODY_MAX;
    if (cut) body.n = BODY_MAX;
    if (render_head(hx, seq, &head)) {
        sl_buf_free(&head);
        return;
    }
    /* one right-sized block: head (a few hundred bytes), then the body as it came */
    size_t len = head.len + body.n;
    entry e = {.mem = sl_malloc(len + 1), .head_len = head.len, .body_len = body.n, .cut = cut};
    if (e.mem) {
        memcpy(e.mem, head.p, head.len);
        if (body.n) memcpy(e.mem + head.len, body.p, body.n);
        e.mem[len] = '\0';
    }
    sl_buf_free(&head);
    if (!e.mem) return;
    pthread_mutex_lock(&ring_lock);
    while (ring_count && (ring_count == RING_MAX || ring_bytes + len > RING_BYTES)) drop_oldest();
    ring[(ring_head + ring_count) % RING_MAX] = e;
    ring_count++;
    ring_bytes += len;
    pthread_mutex_unlock(&ring_lock);
}

int sl_mock_records_json(sl_buf *out)
{
    int rc = sl_buf_append_cstr(out, "[");
    pthread_mutex_lock(&ring_lock);
    for (size_t i = 0; i < ring_count && !rc; i++) {
        const entry *e = &ring[(ring_head + i) % RING_MAX];
        if (i) rc = sl_buf_append_cstr(out, ",");
        if (!rc) rc = sl_buf_append(out, e->mem, e->head_len);
        if (!rc) rc = render_tail(e, out);
    }
    pthread_mutex_unlock(&ring_lock);
    return rc ? rc : sl_buf_append_cstr(out, "]");
}

void sl_mock_records_clear(void)
{
    pthread_mutex_lock(&ring_lock);
    while (ring_count) drop_oldest();
    ring_head = 0;
    pthread_mutex_unlock(&ring_lock);
}

/* ---- counters ---- */

static _Atomic int64_t stats[SL_MOCK_STAT__COUNT];
static const char *const STAT_NAMES[SL_MOCK_STAT__COUNT] = {
    "requests", "in_flight", "aborted", "streams", "completed", "errors", "faults",
};

void sl_mock_stat_add(sl_mock_stat s, int64_t delta) { atomic_fetch_add_explicit(&stats[s], delta, memory_order_relaxed); }

int sl_mock_stats_json(sl_buf *out)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    for (int i = 0; i < SL_MOCK_STAT__COUNT; i++) {
        sl_jw_key(&w, STAT_NAMES[i]);
        sl_jw_int(&w, atomic_load_explicit(&stats[i], memory_order_relaxed));
    }
    sl_jw_obj_end(&w);
    return w.err;
}

void sl_mock_stats_reset(void)
{
    for (int i = 0; i < SL_MOCK_STAT__COUNT; i++)
        if (i != SL_MOCK_STAT_IN_FLIGHT) atomic_store(&stats[i], 0);
}
