/*
 * redis_uv.c: hiredis async contexts driven by a libuv loop, for the Redis
 * state backend (state_redis.c). It replaces hiredis' own libuv adapter for
 * two reasons, both measured per rate-limited request: the adapter changes
 * epoll write interest around every command (four syscalls per round trip),
 * and hiredis' default reply builder mallocs every element of a reply.
 */
#include "state/redis_uv.h"

#include <stddef.h>
#include <string.h>

#include "core/sl.h"

/* ---- replies without an allocation per element ---------------------------- */

/*
 * hiredis builds every reply element with its own malloc (a reservation's
 * answer is 20 of them) and frees them one by one. Here they come from a
 * bump allocator per connection instead: hiredis hands one whole reply to
 * the callback and frees it (only its root) before it parses the next, so
 * the pool is emptied when a root is freed. Chunks are added for big replies
 * and dropped again at that point, all but the first.
 */
#define POOL_CHUNK 16384

typedef struct pchunk {
    struct pchunk *next;
    size_t used, cap;
    max_align_t data[];
} pchunk;

typedef struct rpool {
    pchunk *head; /* the chunk being filled; the first one is last in the list */
} rpool;

typedef struct pobj {
    rpool *pool; /* set on roots only */
    redisReply r;
} pobj;

static void *pool_alloc(rpool *p, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!p->head || p->head->cap - p->head->used < n) {
        size_t cap = SL_MAX((size_t)POOL_CHUNK, n);
        pchunk *c = sl_malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = p->head, c->used = 0, c->cap = cap;
        p->head = c;
    }
    void *at = (char *)p->head->data + p->head->used;
    p->head->used += n;
    return at;
}

static void pool_reset(rpool *p)
{
    while (p->head && p->head->next) {
        pchunk *next = p->head->next;
        sl_free(p->head);
        p->head = next;
    }
    if (p->head) p->head->used = 0;
}

static void pool_free(rpool *p)
{
    pool_reset(p);
    sl_free(p->head);
    p->head = NULL;
}

static redisReply *pool_obj(const redisReadTask *task, int type)
{
    rpool *p = task->privdata;
    pobj *o = pool_alloc(p, sizeof *o);
    if (!o) return NULL;
    memset(o, 0, sizeof *o);
    o->r.type = type;
    if (task->parent) ((redisReply *)task->parent->obj)->element[task->idx] = &o->r;
    else o->pool = p;
    return &o->r;
}

static void *pool_string(const redisReadTask *task, char *str, size_t len)
{
    char *buf = pool_alloc(task->privdata, len + 1);
    redisReply *r = buf ? pool_obj(task, task->type) : NULL;
    if (!r) return NULL;
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf, r->len = len;
    return r;
}

static void *pool_array(const redisReadTask *task, int elements)
{
    redisReply **el = elements > 0 ? pool_alloc(task->privdata, (size_t)elements * sizeof *el) : NULL;
    if (elements > 0 && !el) return NULL;
    redisReply *r = pool_obj(task, REDIS_REPLY_ARRAY);
    if (!r) return NULL;
    if (el) memset(el, 0, (size_t)elements * sizeof *el);
    r->element = el, r->elements = (size_t)SL_MAX(elements, 0);
    return r;
}

static void *pool_integer(const redisReadTask *task, long long value)
{
    redisReply *r = pool_obj(task, REDIS_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *pool_nil(const redisReadTask *task) { return pool_obj(task, REDIS_REPLY_NIL); }

static void pool_free_reply(void *reply)
{
    pobj *o = (pobj *)((char *)reply - offsetof(pobj, r));
    if (o->pool) pool_reset(o->pool);
}

static redisReplyObjectFunctions pool_fns = {pool_string, pool_array, pool_integer, pool_nil, pool_free_reply};

/* The hiredis event hooks on libuv (see below). */
typedef struct uvev {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;       /* what the poll handle watches */
    void (*before_flush)(redisAsyncContext *ac); /* sends what waited for the flush (the limit batches) */
    bool want_write;  /* commands wait in hiredis' buffer for the next flush */
    bool in_flush;
    int open_handles; /* freed when both handles have closed */
    rpool pool;       /* the replies' storage */
} uvev;

/* ---- event loop ----------------------------------------------------------- */

/*
 * hiredis' own libuv adapter turns write interest on for every command and
 * off after every write: two epoll_ctl changes (four syscalls with libuv's
 * ADD-then-MOD) per round trip. Here the socket is watched for reading only;
 * commands queued while the loop runs its callbacks are written with one
 * write() from a prepare handle, just before the loop blocks again. Write
 * interest is asked for only while connecting and when the socket's buffer
 * is full. A poll error is handed to hiredis as readiness, so that it reads
 * the socket's error (a refused connect) instead of waiting for a timeout.
 */
static void ev_on_poll(uv_poll_t *h, int status, int events)
{
    uvev *e = h->data;
    if (status < 0) events = e->events; /* let hiredis find the error */
    if (e->ac && (events & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void ev_watch(uvev *e, int events)
{
    if (events == e->events || !e->ac) return;
    e->events = events;
    if (events) uv_poll_start(&e->poll, events, ev_on_poll);
    else uv_poll_stop(&e->poll);
}

static void ev_on_flush(uv_prepare_t *h)
{
    uvev *e = h->data;
    if (e->ac && e->before_flush) e->before_flush(e->ac);
    uv_prepare_stop(h);
    if (!e->ac || !e->want_write) return;
    e->want_write = false;
    e->in_flush = true;
    redisAsyncHandleWrite(e->ac); /* may free the context: e stays until its handles close */
    e->in_flush = false;
}

static void ev_add_read(void *p) { uvev *e = p; ev_watch(e, e->events | UV_READABLE); }
static void ev_del_read(void *p) { uvev *e = p; ev_watch(e, e->events & ~UV_READABLE); }

static void ev_add_write(void *p)
{
    uvev *e = p;
    if (!e->ac) return;
    /* Connecting, or a write that did not finish: wait for the socket. Otherwise: the next flush. */
    if (e->in_flush || !(e->ac->c.flags & REDIS_CONNECTED) || (e->events & UV_WRITABLE)) {
        ev_watch(e, e->events | UV_WRITABLE);
        return;
    }
    if (!e->want_write) {
        e->want_write = true;
        uv_prepare_start(&e->flush, ev_on_flush);
    }
}

static void ev_del_write(void *p)
{
    uvev *e = p;
    e->want_write = false;
    ev_watch(e, e->events & ~UV_WRITABLE);
}

static void ev_on_closed(uv_handle_t *h)
{
    uvev *e = h->data;
    if (--e->open_handles) return;
    pool_free(&e->pool);
    sl_free(e);
}

static void ev_cleanup(void *p)
{
    uvev *e = p;
    if (!e) return;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_on_closed);
    uv_close((uv_handle_t *)&e->flush, ev_on_closed);
}

/* Asks for a flush before the loop next blocks (commands that wait in the caller, not in hiredis). */
void sl_redis_uv_request_flush(redisAsyncContext *ac)
{
    uvev *e = ac->ev.data;
    if (e && !uv_is_active((uv_handle_t *)&e->flush)) uv_prepare_start(&e->flush, ev_on_flush);
}

int sl_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, void (*before_flush)(redisAsyncContext *ac))
{
    if (ac->ev.data) return REDIS_ERR;
    uvev *e = sl_calloc(1, sizeof *e);
    if (!e) return REDIS_ERR;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        sl_free(e);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &e->flush);
    uv_unref((uv_handle_t *)&e->flush);
    e->poll.data = e->flush.data = e;
    e->open_handles = 2;
    e->ac = ac;
    e->before_flush = before_flush;
    ac->c.reader->fn = &pool_fns; /* nothing parsed yet: the default functions made nothing to free */
    ac->c.reader->privdata = &e->pool;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return REDIS_OK;
}
