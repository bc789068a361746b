/*
 * cancel.c: notifications/cancelled across exchanges. A client cancels a
 * request it sent on another POST, which may be running on another worker
 * thread. Exchanges with requests in flight are listed here under their
 * session id; a cancellation marks the request and wakes its worker
 * (uv_async_send, thread-safe), which stops the request's work and answers
 * it with an error the client no longer waits for.
 *
 * The record is heap-allocated because its async handle outlives the
 * exchange: it is freed by the handle's close callback. The exchange is
 * unlinked under the registry lock before its arena can go, so a canceller
 * never reads a freed request id.
 */
#include "mcp/mcp_int.h"

typedef struct inflight {
    struct inflight *next;
    mcp_x *x;                /* NULL once removed */
    uv_async_t async;
    uint64_t cancel_mask;    /* calls of x to cancel (bit i = x->calls[i]); under reg_mu */
} inflight;

static uv_once_t reg_once = UV_ONCE_INIT;
static uv_mutex_t reg_mu;
static inflight *reg_head;

static void reg_init(void) { uv_mutex_init(&reg_mu); }

static void on_closed(uv_handle_t *h) { sl_free(h->data); }

static void on_cancel_async(uv_async_t *a)
{
    inflight *f = a->data;
    uv_mutex_lock(&reg_mu);
    uint64_t mask = f->cancel_mask;
    f->cancel_mask = 0;
    mcp_x *x = f->x;
    uv_mutex_unlock(&reg_mu);
    for (size_t i = 0; x && i < x->ncalls && i < 64; i++) {
        if (!(mask & (1ull << i))) continue;
        mcp_call *c = &x->calls[i];
        if (c->done) continue;
        if (c->cancel) c->cancel(c);
        c->op = NULL, c->cancel = NULL;
        /* Completing may finish x (and remove f from the registry): stop looking at x then. */
        sl_mcp_call_error(c, SL_MCP_ERR_CANCELLED, "Request cancelled");
        if (!f->x) break;
    }
}

int sl_mcp_inflight_add(mcp_x *x)
{
    if (x->inflight || !x->sid.n || x->ncalls > 64) return SL_OK;
    uv_once(&reg_once, reg_init);
    inflight *f = sl_calloc(1, sizeof *f);
    if (!f) return SL_ENOMEM;
    f->x = x;
    if (uv_async_init(x->r->hx->loop, &f->async, on_cancel_async) != 0) {
        sl_free(f);
        return SL_EIO;
    }
    f->async.data = f;
    uv_mutex_lock(&reg_mu);
    f->next = reg_head;
    reg_head = f;
    uv_mutex_unlock(&reg_mu);
    x->inflight = f;
    return SL_OK;
}

void sl_mcp_inflight_remove(mcp_x *x)
{
    inflight *f = x->inflight;
    if (!f) return;
    x->inflight = NULL;
    uv_mutex_lock(&reg_mu);
    for (inflight **pp = &reg_head; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    f->x = NULL;
    uv_mutex_unlock(&reg_mu);
    uv_close((uv_handle_t *)&f->async, on_closed);
}

bool sl_mcp_inflight_cancel(sl_str sid, sl_str id)
{
    if (!sid.n || !id.n) return false;
    uv_once(&reg_once, reg_init);
    bool found = false;
    uv_mutex_lock(&reg_mu);
    for (inflight *f = reg_head; f && !found; f = f->next) {
        mcp_x *x = f->x;
        if (!x || !sl_str_eq(x->sid, sid)) continue;
        for (size_t i = 0; i < x->ncalls && i < 64; i++) {
            const mcp_call *c = &x->calls[i];
            if (c->m.kind == SL_RPC_REQUEST && sl_str_eq(c->m.id, id)) {
                f->cancel_mask |= 1ull << i;
                uv_async_send(&f->async);
                found = true;
                break;
            }
        }
    }
    uv_mutex_unlock(&reg_mu);
    return found;
}
