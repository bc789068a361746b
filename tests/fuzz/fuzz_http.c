// fuzz-sources: src/http/parser.c src/http/chunked.c src/core/buf.c src/core/sl.c
/*
 * fuzz_http.c: the request parser and the chunked decoder on arbitrary bytes.
 *
 * Input layout: byte 0 picks a split point (as a fraction of the rest), byte 1
 * small limits or the defaults; the rest is the stream. Besides "no crash",
 * it checks the properties the connection code relies on: a prefix of the
 * stream never succeeds with a different length nor fails differently (it
 * needs more or gives the same answer); a header length never exceeds the
 * input or the limit; every slice lies inside the input; the chunked decoder
 * gives the same body and result fed in two pieces as in one and byte by byte.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_http_header hdrs[SL_HTTP_MAX_HEADERS_HARD], hdrs2[SL_HTTP_MAX_HEADERS_HARD];
static sl_http_request req = {.headers = hdrs}, req2 = {.headers = hdrs2};

static void check_slice(sl_str s, const char *buf, size_t len)
{
    if (s.n == 0) return;
    if (s.p < buf || s.p + s.n > buf + len) {
        /* absolute-form without a path points path at a static "/" */
        if (!(s.n == 1 && s.p[0] == '/')) abort();
    }
}

static void fuzz_parser(const char *buf, size_t len, size_t split, const sl_http_limits *lim)
{
    int status = 0, status2 = 0;
    const char *why = NULL, *why2 = NULL;
    int rc = sl_http_parse_request(buf, len, lim, &req, &status, &why);
    if (rc > 0) {
        if ((size_t)rc > len || (lim && lim->max_header_bytes && (size_t)rc > lim->max_header_bytes)) abort();
        check_slice(req.method, buf, len);
        check_slice(req.target, buf, len);
        check_slice(req.path, buf, len);
        check_slice(req.query, buf, len);
        check_slice(req.host, buf, len);
        if (req.nheaders > SL_HTTP_MAX_HEADERS_HARD) abort();
        for (size_t i = 0; i < req.nheaders; i++) {
            check_slice(req.headers[i].name, buf, len);
            check_slice(req.headers[i].value, buf, len);
            if (req.headers[i].name.n == 0) abort();
        }
        if (req.chunked && req.content_length >= 0) abort();
    } else if (rc != SL_EAGAIN) {
        if (status < 400 || status > 505 || !why) abort();
    }
    /* the prefix property */
    int rc2 = sl_http_parse_request(buf, split, lim, &req2, &status2, &why2);
    if (rc > 0 && split < (size_t)rc && rc2 != SL_EAGAIN) abort();
    if (rc > 0 && split >= (size_t)rc && rc2 != rc) abort();
    if (rc < 0 && rc2 != SL_EAGAIN && (rc2 != rc || status2 != status)) abort();
    if (rc == SL_EAGAIN && rc2 != SL_EAGAIN) abort();
}

typedef struct outcome {
    int rc;
    size_t consumed;
    sl_buf body;
} outcome;

/* Feeds buf in pieces cut at the given points (step 0: one split at `split`). */
static outcome run_chunked(const char *buf, size_t len, size_t split, size_t step)
{
    outcome o = {0};
    sl_buf_init(&o.body, 1 << 20);
    sl_http_chunked c;
    sl_http_chunked_init(&c, 1 << 16);
    size_t off = 0;
    for (;;) {
        size_t piece = step ? SL_MIN(step, len - off) : (off < split ? split - off : len - off);
        size_t used = 0;
        o.rc = sl_http_chunked_decode(&c, buf + off, piece, &o.body, &used);
        if (used > piece) abort();
        off += used;
        if (o.rc != 0 || off == len) break;
        if (used != piece) abort(); /* 0 must mean "all taken, need more" */
    }
    o.consumed = off;
    return o;
}

static void fuzz_chunked(const char *buf, size_t len, size_t split)
{
    outcome a = run_chunked(buf, len, len, 0);
    outcome b = run_chunked(buf, len, split, 0);
    outcome c = run_chunked(buf, len, 0, 1);
    if (a.rc != b.rc || a.rc != c.rc) abort();
    if (a.rc == 1 && (a.consumed != b.consumed || a.consumed != c.consumed)) abort();
    if (a.body.len != b.body.len || a.body.len != c.body.len) abort();
    if (a.body.len && (memcmp(a.body.p, b.body.p, a.body.len) || memcmp(a.body.p, c.body.p, a.body.len))) abort();
    sl_buf_free(&a.body);
    sl_buf_free(&b.body);
    sl_buf_free(&c.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    const char *buf = (const char *)data + 2;
    size_t len = size - 2;
    size_t split = len * data[0] / 255;
    sl_http_limits small = {.max_header_bytes = 64u + (data[1] & 0x7f), .max_headers = 1u + (data[1] & 7)};
    const sl_http_limits *lim = (data[1] & 0x80) ? &small : NULL;
    fuzz_parser(buf, len, split, lim);
    if (len <= 4096) fuzz_chunked(buf, len, split);
    return 0;
}
