/*
 * h1_wire.h: HTTP/1.1 wire formats of the native client (h1_wire.c), shared
 * by h1client.c only.
 */
#ifndef SL_HTTP_H1_WIRE_H
#define SL_HTTP_H1_WIRE_H

#include <stdbool.h>
#include <sys/socket.h>

#include "http/parser.h"
#include "http/upstream.h"

#define H1_MAX_REQ_HEAD (256 * 1024)

/* Where a request goes, parsed from its URL (slices point into the URL). */
typedef struct h1_target {
    struct sockaddr_storage addr;
    sl_str authority; /* for Host */
    sl_str path;      /* origin-form without the leading '/' if the URL had none */
    bool add_slash;
} h1_target;

/* http://host[:port][/path][?query] with a numeric IPv4, [IPv6] or localhost host: SL_OK, else
 * SL_ENOTFOUND (the URL is curl's to serve). */
int sl_h1_parse_url(const char *url, h1_target *t);

/* A method of token characters only. */
bool sl_h1_valid_method(const char *m);

/* The request head's size and the pieces worked out on the way (sl_h1_head_size), then written. */
typedef struct head_plan {
    size_t total, mlen, cl_n;
    bool have_ae, have_accept, with_cl;
    char cl[SL_DEC_MAX]; /* Content-Length digits */
} head_plan;

/* Checks every header (SL_EINVAL for CR, LF, NUL, ':' in a name, or a head over H1_MAX_REQ_HEAD)
 * and sizes the head: hp->total bytes. */
int sl_h1_head_size(const sl_up_request *r, const h1_target *t, head_plan *hp);
/* Writes exactly hp->total bytes and a NUL at o. */
void sl_h1_head_write(char *o, const sl_up_request *r, const h1_target *t, const head_plan *hp);

/* The blank line ending a head in p[0..n), or NULL. */
const char *sl_h1_find_head_end(const char *p, size_t n);
/*
 * Parses a response head from p[0..n): SL_OK with its length in *hlen,
 * SL_EAGAIN when the bytes end before the blank line, SL_EPARSE at the first
 * malformed byte, SL_ELIMIT past SL_UP_MAX_HEADERS headers (hs holds that many).
 * The status is stored as soon as the status line is complete.
 */
int sl_h1_parse_head(const char *p, size_t n, int *status, int *minor, sl_http_header *hs, size_t *nh, size_t *hlen);
/* Does a comma-separated header value hold this token (case-insensitive)? */
bool sl_h1_has_token(sl_str v, const char *tok);
/* The last transfer coding of a Transfer-Encoding value. */
sl_str sl_h1_last_coding(sl_str v);

#endif
