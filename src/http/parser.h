/*
 * parser.h: the strict HTTP/1.1 request parser (RFC 9110/9112), written here
 * because it is the gateway's first line of defence.
 *
 * Zero-copy: every field is a slice into the caller's buffer. The parser is
 * re-entrant and stateless across calls: the caller keeps reading into one
 * buffer and calls sl_http_parse_request() again with the longer buffer until
 * it returns a header length (> 0). (Re-scanning is cheap for header blocks of
 * at most 16 KiB, and keeps the parser simple enough to fuzz thoroughly.)
 *
 * Anything ambiguous is rejected, not guessed at (request smuggling):
 * Content-Length together with Transfer-Encoding, repeated or malformed
 * Content-Length, Transfer-Encoding other than a final "chunked", obsolete line
 * folding, bare CR or LF-only line ends, NUL and other control bytes, invalid
 * token characters in method or header names, whitespace before the colon, a
 * missing or repeated Host on HTTP/1.1, absolute-form targets other than http(s).
 */
#ifndef SL_HTTP_PARSER_H
#define SL_HTTP_PARSER_H

#include "core/sl.h"

typedef struct sl_http_header {
    sl_str name;  /* as sent (compare with sl_str_case_eq) */
    sl_str value; /* leading and trailing whitespace trimmed */
} sl_http_header;

#define SL_HTTP_MAX_HEADERS_HARD 256

typedef struct sl_http_limits {
    size_t max_header_bytes; /* whole header block incl. request line; over it: 431 */
    size_t max_headers;      /* count; over it: 431 */
} sl_http_limits;

typedef struct sl_http_request {
    sl_str method;
    sl_str target; /* request-target as sent */
    sl_str path;   /* target without the query; origin-form */
    sl_str query;  /* after '?', without it; empty if none */
    int minor_version; /* 0 or 1 (HTTP/1.x only) */
    /* Set by the caller before parsing: room for lim->max_headers entries
     * (SL_HTTP_MAX_HEADERS_HARD at most; NULL: no header is accepted). Not
     * inline, so that a request kept for a long exchange (a held stream)
     * carries only the headers it has, not room for 256. */
    sl_http_header *headers;
    size_t nheaders;
    /* Derived while parsing: */
    int64_t content_length; /* -1 if absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* after Connection: close/keep-alive and version defaults */
    bool expect_continue;   /* Expect: 100-continue */
    sl_str host;
} sl_http_request;

/*
 * Returns the length of the header block (request line through the empty
 * line) when complete, SL_EAGAIN when more bytes are needed, or a negative
 * error; then *status is the HTTP status to answer with (400, 413, 414, 431,
 * 501 for an unsupported transfer coding or method syntax, 505 for a version
 * other than HTTP/1.0 or 1.1) and *why a short static reason for the log.
 */
int sl_http_parse_request(const char *buf, size_t len, const sl_http_limits *lim, sl_http_request *req,
                          int *status, const char **why);

/* The first index in [i, end) whose byte may not appear in a field value (HTAB, SP, VCHAR
 * and obs-text may; CR, LF, other controls and DEL may not), or end: 8 bytes a step. */
size_t sl_http_scan_value(const char *b, size_t i, size_t end);
/* The first index in [i, end) whose byte is not a token character (RFC 9110 tchar), or end. */
size_t sl_http_scan_token(const char *b, size_t i, size_t end);

/* First header with this name (case-insensitive) or NULL. */
const sl_http_header *sl_http_find_header(const sl_http_request *req, const char *name);

/*
 * Chunked body decoder (RFC 9112 §7.1): a state machine fed any split of the
 * input. Chunk extensions are skipped (bounded), trailers are read and
 * dropped. Sizes are hex without sign or whitespace, bounded by max_body.
 */
typedef struct sl_http_chunked {
    int state;
    uint64_t remaining;  /* bytes left in the current chunk */
    uint64_t total;      /* body bytes so far */
    uint64_t max_body;   /* over it: SL_ELIMIT (answer 413) */
    uint32_t line_bytes; /* size/extension/trailer line length so far (bounded) */
    uint32_t size_digits;
} sl_http_chunked;

void sl_http_chunked_init(sl_http_chunked *c, uint64_t max_body);
/*
 * Decodes in[0..n): body bytes are appended to out (an sl_buf*, see buf.h);
 * *consumed is how much of in was used. Returns 1 when the body is complete
 * (consumed stops right after the final CRLF), 0 when more input is needed,
 * SL_EPARSE for malformed framing, SL_ELIMIT past max_body, SL_ENOMEM.
 */
struct sl_buf;
int sl_http_chunked_decode(sl_http_chunked *c, const char *in, size_t n, struct sl_buf *out, size_t *consumed);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *sl_http_reason(int status);

#endif
