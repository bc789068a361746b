/*
 * h1client.h: the native HTTP/1.1 client behind upstream.h, internal to
 * src/http/. sl_upstream_start() hands it every plain http:// request to a
 * numeric address (IPv4, [IPv6]) or "localhost"; everything else (host names,
 * https://) stays on libcurl. Same contract as upstream.h: callbacks,
 * deadlines, back-pressure with redelivery, re-entrancy.
 *
 * Requests of both backends are `sl_up_req *` to the caller; the first byte
 * of either struct is its kind (SL_UP_KIND_*), which is how pause, resume and
 * cancel find the right implementation.
 */
#ifndef SL_H1CLIENT_H
#define SL_H1CLIENT_H

#include "http/upstream.h"

enum { SL_UP_KIND_CURL = 1, SL_UP_KIND_H1 = 2 };

/* The kind of a request of either backend (its first byte). */
static inline uint8_t sl_up__kind(const sl_up_req *q) { return *(const uint8_t *)(const void *)q; }

typedef struct sl_h1 sl_h1;

/* max_total / max_host: connection caps (0 = unlimited); requests over them wait in a queue. */
sl_h1 *sl_h1_new(uv_loop_t *loop, long max_total, long max_host);
/* Cancels every request (no callbacks) and closes every connection; memory goes when the handles close.
 * Safe from inside a callback. */
void sl_h1_free(sl_h1 *h);

/* SL_ENOTFOUND: not a URL for this client (use curl); SL_ENOMEM (no callbacks then); SL_OK with *out set.
 * Invalid requests are reported through on_done on a later loop turn, as with curl. */
int sl_h1_start(sl_h1 *h, const sl_up_request *r, const sl_up_callbacks *cb, void *ud, sl_up_req **out);
void sl_h1_pause(sl_up_req *q);
void sl_h1_resume(sl_up_req *q);
void sl_h1_cancel(sl_up_req *q);

#endif
