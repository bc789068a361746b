/*
 * legacy.c: the HTTP+SSE transport of protocol revision 2024-11-05, still
 * used by many clients: GET /mcp/{server}/sse opens an event stream whose
 * first event, "endpoint", names the URL to POST messages to
 * (/mcp/{server}/message?sessionId=ID); answers come back on the stream.
 *
 * The POST may arrive on any worker (connections are spread by the kernel)
 * while the stream lives on the worker that accepted it. So streams are in a
 * process-wide registry, and a message for a stream is queued under the
 * stream's mutex and handed to its loop with uv_async_send (thread-safe).
 * A stream is unlinked from the registry (under the registry lock) before
 * its handles close, so no sender can touch it afterwards.
 */
#include <stdio.h>

#include "core/log.h"
#include "mcp/mcp_int.h"
#include "mcp/session.h"

#define LEGACY_QUEUE_MAX (16u << 20) /* bytes waiting for a slow stream; more are dropped with a warning */

typedef struct lstream {
    char id[33];
    uv_async_t async;
    uv_timer_t timer;
    uv_mutex_t mu;
    sl_buf queue;       /* SSE bytes posted by any thread, written by the owner */
    sl_gw_req *r;
    unsigned ticks;
    int open_handles;
    struct lstream *next;
} lstream;

static uv_once_t reg_once = UV_ONCE_INIT;
static uv_mutex_t reg_mu;
static lstream *reg_head;

static void reg_init(void) { uv_mutex_init(&reg_mu); }

static lstream *reg_find(const char *id)
{
    for (lstream *s = reg_head; s; s = s->next)
        if (!strcmp(s->id, id)) return s;
    return NULL;
}

bool sl_mcp_legacy_exists(const char *id)
{
    uv_once(&reg_once, reg_init);
    uv_mutex_lock(&reg_mu);
    bool found = reg_find(id) != NULL;
    uv_mutex_unlock(&reg_mu);
    return found;
}

bool sl_mcp_legacy_push(const char *id, sl_str message_json)
{
    uv_once(&reg_once, reg_init);
    uv_mutex_lock(&reg_mu);
    lstream *s = reg_find(id);
    if (s) {
        uv_mutex_lock(&s->mu);
        size_t before = s->queue.len;
        if (sl_sse_write(&s->queue, SL_STR("message"), message_json) != SL_OK) {
            s->queue.len = before;
            sl_warn("mcp: legacy SSE stream queue full, message dropped");
        }
        uv_mutex_unlock(&s->mu);
        uv_async_send(&s->async);
    }
    uv_mutex_unlock(&reg_mu);
    return s != NULL;
}

static void on_async(uv_async_t *a)
{
    lstream *s = a->data;
    sl_buf out;
    uv_mutex_lock(&s->mu);
    out = s->queue;
    sl_buf_init(&s->queue, LEGACY_QUEUE_MAX);
    uv_mutex_unlock(&s->mu);
    if (out.len && s->r) sl_hx_write(s->r->hx, out.p, out.len);
    sl_buf_free(&out);
}

static void stream_end(lstream *s);

/*
 * Ticks every TICK_MS: a keep-alive comment every KEEPALIVE_TICKS, and the
 * stream ends at once when the worker drains for a stop (its session ends
 * with it; the client reconnects and initializes again).
 */
#define TICK_MS 250
#define KEEPALIVE_TICKS 60

static void on_tick(uv_timer_t *t)
{
    lstream *s = t->data;
    if (!s->r) return;
    if (sl_mcp_draining(s->r)) {
        on_async(&s->async); /* what was queued still goes out */
        sl_hx_close_after(s->r->hx);
        stream_end(s);
        return;
    }
    if (++s->ticks % KEEPALIVE_TICKS) return;
    sl_buf b;
    sl_buf_init(&b, 0);
    if (sl_sse_write_comment(&b, SL_STR("keep-alive")) == SL_OK) sl_hx_write(s->r->hx, b.p, b.len);
    sl_buf_free(&b);
}

static void on_handle_closed(uv_handle_t *h)
{
    lstream *s = h->data;
    if (--s->open_handles > 0) return;
    uv_mutex_destroy(&s->mu);
    sl_buf_free(&s->queue);
    sl_free(s);
}

static void on_stream_abort(sl_hx *hx, void *arg) { stream_end(arg); }

/* Unlists the stream, ends its session and its response; the handles free it once closed. */
static void stream_end(lstream *s)
{
    uv_mutex_lock(&reg_mu);
    for (lstream **pp = &reg_head; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    uv_mutex_unlock(&reg_mu);
    sl_mcp_store *st = sl_mcp_store_get();
    st->ops->del(st->self, sl_str_from_cstr(s->id), NULL, NULL); /* the session ends with its stream */
    sl_gw_req *r = s->r;
    s->r = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    r->rec.status = 200;
    sl_gw_finish(r);
}

void sl_mcp_legacy_open(sl_gw_req *r, const sl_mcp_server_cfg *srv)
{
    uv_once(&reg_once, reg_init);
    lstream *s = sl_calloc(1, sizeof *s);
    char *endpoint = s ? sl_arena_printf(&r->hx->arena, "/mcp/%s/message?sessionId=", srv->name) : NULL;
    if (!s || !endpoint) {
        sl_free(s);
        sl_gw_error(r, 503, "service_unavailable", NULL, "out of memory");
        return;
    }
    sl_mcp_random_id(s->id);
    s->r = r;
    sl_buf_init(&s->queue, LEGACY_QUEUE_MAX);
    uv_mutex_init(&s->mu);
    uv_async_init(r->hx->loop, &s->async, on_async);
    uv_timer_init(r->hx->loop, &s->timer);
    s->async.data = s->timer.data = s;
    s->open_handles = 2;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    sl_hx_on_abort(r->hx, on_stream_abort, s);

    sl_http_header h[6] = {{SL_STR("content-type"), SL_STR("text/event-stream")},
                           {SL_STR("cache-control"), SL_STR("no-cache")}};
    size_t n = 2;
    sl_gw_common_headers(r, h, &n, SL_ARRAY_LEN(h));
    r->rec.status = 200;
    r->rec.operation = "sse";
    sl_hx_respond_head(r->hx, 200, h, n, -1);
    sl_buf ev;
    sl_buf_init(&ev, 0);
    sl_buf data;
    sl_buf_init(&data, 0);
    sl_buf_append_cstr(&data, endpoint);
    sl_buf_append(&data, s->id, 32);
    if (sl_sse_write(&ev, SL_STR("endpoint"), sl_buf_str(&data)) == SL_OK) sl_hx_write(r->hx, ev.p, ev.len);
    sl_buf_free(&ev);
    sl_buf_free(&data);

    uv_mutex_lock(&reg_mu);
    s->next = reg_head;
    reg_head = s;
    uv_mutex_unlock(&reg_mu);
}
