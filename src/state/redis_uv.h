/*
 * redis_uv.h: hiredis async contexts on a libuv loop (redis_uv.c), with
 * replies built in a per-connection pool instead of one malloc per element.
 */
#ifndef SL_STATE_REDIS_UV_H
#define SL_STATE_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/*
 * Drives ac from loop: the socket is watched for reading; commands hiredis
 * buffers while callbacks run are written with one write() just before the
 * loop blocks, after before_flush (may be NULL) has had its chance to add
 * more. Replies come from a pool emptied when hiredis frees each reply.
 * REDIS_OK or REDIS_ERR; hiredis calls the cleanup hook when ac goes.
 */
int sl_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, void (*before_flush)(redisAsyncContext *ac));
/* Asks for a flush before the loop next blocks (commands that wait in the caller, not yet in hiredis). */
void sl_redis_uv_request_flush(redisAsyncContext *ac);

#endif
