/*
 * parser.c: the strict HTTP/1.1 request-head parser (see parser.h for the
 * contract; the chunked body decoder lives in chunked.c).
 *
 * One forward scan over the header block, no allocation, every byte checked
 * against a class table. An error is reported at the first offending byte, so
 * any prefix of a request either needs more bytes (SL_EAGAIN) or fails exactly
 * like the whole request does; the fuzz target checks this property. Limits are
 * positional: the block may not extend past max_header_bytes, whatever the
 * caller's buffer holds, so the answer does not depend on how reads were split.
 *
 * Status choices worth knowing: 400 for anything malformed or ambiguous, 413
 * for a Content-Length past 2^53, 414 when the limit is reached inside the
 * request-target, 417 for an Expect other than 100-continue, 431 for too many
 * or too large headers, 501 for an unknown transfer coding, CONNECT or an
 * overlong method, 505 for a version other than HTTP/1.0 or HTTP/1.1.
 */
#include "http/parser.h"

#include <limits.h>

#define SL_HTTP_MAX_METHOD 24                   /* longer than any registered method */
#define SL_HTTP_MAX_CONTENT_LENGTH (1ull << 53) /* exact in a double, far past any real body */
#define SL_HTTP_HEADER_BYTES_CEIL (1u << 24)    /* the return value must fit an int */

/* ---- byte classes ---- */

enum {
    C_TOKEN = 1,  /* tchar (RFC 9110 §5.6.2): method, header names, list elements */
    C_VALUE = 2,  /* field-vchar, SP, HTAB, obs-text: header values */
    C_TARGET = 4, /* visible ASCII except '#': request-target */
    C_HOST = 8,   /* reg-name, IP-literal and port characters: Host, authority */
};

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TCHAR(c)                                                                                             \
    (IS_DIGIT(c) || IS_ALPHA(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' ||         \
     (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||          \
     (c) == '`' || (c) == '|' || (c) == '~')
#define IS_HOSTCHAR(c)                                                                                          \
    (IS_DIGIT(c) || IS_ALPHA(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '!' ||         \
     (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' || (c) == '+' ||          \
     (c) == ',' || (c) == ';' || (c) == '=' || (c) == ':' || (c) == '[' || (c) == ']' || (c) == '%')
#define CLS(c)                                                                                                  \
    ((IS_TCHAR(c) ? C_TOKEN : 0) | (((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f)) ? C_VALUE : 0) |            \
     (((c) > 0x20 && (c) < 0x7f && (c) != '#') ? C_TARGET : 0) | (IS_HOSTCHAR(c) ? C_HOST : 0))
#define CLS4(b) CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define CLS16(b) CLS4(b), CLS4((b) + 4), CLS4((b) + 8), CLS4((b) + 12)
#define CLS64(b) CLS16(b), CLS16((b) + 16), CLS16((b) + 32), CLS16((b) + 48)

static const uint8_t cls[256] = {CLS64(0), CLS64(64), CLS64(128), CLS64(192)};

static inline bool is(char ch, int cl) { return (cls[(uint8_t)ch] & cl) != 0; }

static bool all_of(sl_str s, int cl)
{
    for (size_t i = 0; i < s.n; i++)
        if (!is(s.p[i], cl)) return false;
    return true;
}

/*
 * Header values are most of a request's bytes: skip them 8 at a time while a
 * word holds no byte below 0x20 and no DEL (obs-text, >= 0x80, is allowed),
 * then finish byte by byte at the first word that needs a closer look (HTAB
 * passes there, CR or another control stops the scan).
 */
static uint64_t word_needs_look(const char *p) /* nonzero: the flags of the bytes to look at */
{
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t ctl = (w - 0x2020202020202020ull) & ~w & 0x8080808080808080ull;
    uint64_t x = w ^ 0x7f7f7f7f7f7f7f7full;
    uint64_t del = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
    return ctl | del;
}

size_t sl_http_scan_value(const char *b, size_t i, size_t end)
{
    for (;;) {
        uint64_t look = 0;
        while (end - i >= 8 && !(look = word_needs_look(b + i))) i += 8;
        if (look) {
            /* The lowest flagged byte is exact (the flags above it may be borrows): the
             * first control byte or DEL. HTAB is allowed: step over it and go on. */
            i += (size_t)__builtin_ctzll(look) / 8;
            if (b[i] != '\t') return i;
            i++;
            continue;
        }
        while (i < end && is(b[i], C_VALUE)) i++;
        return i;
    }
}

/*
 * Header names are the other bytes scanned on every request: 8 at a time while
 * all are letters, digits or '-' (what real names are made of), byte by byte
 * through the token table where one is not. Range tests on 7-bit bytes cannot
 * carry into the next byte, so every byte's flag is exact.
 */
static inline uint64_t in_range8(uint64_t x, uint8_t lo, uint8_t hi) /* x: bytes < 0x80 */
{
    const uint64_t ones = 0x0101010101010101ull;
    return (x + ones * (uint8_t)(0x80 - lo)) & ~(x + ones * (uint8_t)(0x7f - hi)) & (ones * 0x80);
}

static inline uint64_t not_alnum_dash(const char *p) /* flags the bytes outside [A-Za-z0-9-] */
{
    const uint64_t high = 0x8080808080808080ull;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t x = w & ~high;
    uint64_t ok = in_range8(x | 0x2020202020202020ull, 'a', 'z') | in_range8(x, '0', '9') | in_range8(x, '-', '-');
    return (~ok & high) | (w & high);
}

size_t sl_http_scan_token(const char *b, size_t i, size_t end)
{
    for (;;) {
        uint64_t look = 0;
        while (end - i >= 8 && !(look = not_alnum_dash(b + i))) i += 8;
        if (look) {
            i += (size_t)__builtin_ctzll(look) / 8;
            if (!is(b[i], C_TOKEN)) return i;
            i++; /* another token byte ('_', '.', ...): go on */
            continue;
        }
        while (i < end && is(b[i], C_TOKEN)) i++;
        return i;
    }
}

/* ---- scan context ---- */

typedef struct pctx {
    const char *b;
    size_t end;  /* min(len, max_header_bytes): the scan never looks past it */
    bool capped; /* len > max_header_bytes: running out of bytes means "too large" */
    int *status;
    const char **why;
} pctx;

static int fail(pctx *c, int status, const char *why)
{
    *c->status = status;
    *c->why = why;
    return (status == 413 || status == 414 || status == 431) ? SL_ELIMIT : SL_EPARSE;
}

/* The scan reached c->end: either the caller must read more, or the limit is hit. */
static int need_more(pctx *c, int status, const char *why)
{
    return c->capped ? fail(c, status, why) : SL_EAGAIN;
}

/* Expects CRLF at *i; a CR followed by anything else is a bare CR. */
static int expect_crlf(pctx *c, size_t *i)
{
    if (*i == c->end) return need_more(c, 431, "header block too large");
    if (c->b[*i] != '\r') return fail(c, 400, c->b[*i] == '\n' ? "bare LF line end" : "malformed line");
    if (++*i == c->end) return need_more(c, 431, "header block too large");
    if (c->b[*i] != '\n') return fail(c, 400, "bare CR");
    ++*i;
    return SL_OK;
}

/* ---- request line ---- */

static int parse_absolute_target(pctx *c, sl_http_request *req)
{
    sl_str t = req->target;
    size_t skip;
    if (t.n >= 7 && sl_str_case_eq((sl_str){t.p, 7}, SL_STR("http://")))
        skip = 7;
    else if (t.n >= 8 && sl_str_case_eq((sl_str){t.p, 8}, SL_STR("https://")))
        skip = 8;
    else
        return fail(c, 400, "unsupported request-target form");
    size_t a = skip;
    while (a < t.n && t.p[a] != '/' && t.p[a] != '?') a++;
    sl_str authority = {t.p + skip, a - skip};
    if (authority.n == 0) return fail(c, 400, "empty authority in absolute-form");
    /* userinfo ('@') is deprecated and a classic phishing/smuggling vector */
    if (!all_of(authority, C_HOST)) return fail(c, 400, "bad authority in absolute-form");
    req->host = authority; /* RFC 9112 §3.2.2: the target's authority wins over Host */
    size_t q = a;
    while (q < t.n && t.p[q] != '?') q++;
    req->path = q > a ? (sl_str){t.p + a, q - a} : SL_STR("/");
    req->query = q < t.n ? (sl_str){t.p + q + 1, t.n - q - 1} : (sl_str){t.p + t.n, 0};
    return SL_OK;
}

static int classify_target(pctx *c, sl_http_request *req)
{
    sl_str t = req->target;
    if (sl_str_eq_lit(req->method, "CONNECT")) return fail(c, 501, "CONNECT not supported");
    if (t.p[0] == '/') {
        size_t q = 0;
        while (q < t.n && t.p[q] != '?') q++;
        req->path = (sl_str){t.p, q};
        req->query = q < t.n ? (sl_str){t.p + q + 1, t.n - q - 1} : (sl_str){t.p + t.n, 0};
        return SL_OK;
    }
    if (t.n == 1 && t.p[0] == '*') {
        if (!sl_str_eq_lit(req->method, "OPTIONS")) return fail(c, 400, "asterisk-form is for OPTIONS only");
        req->path = t;
        req->query = (sl_str){t.p + 1, 0};
        return SL_OK;
    }
    return parse_absolute_target(c, req);
}

/* "HTTP/" DIGIT "." DIGIT CRLF, checked byte by byte so garbage fails early. */
static int parse_version(pctx *c, size_t *pos, sl_http_request *req)
{
    static const char pattern[] = "HTTP/9.9";
    const char *b = c->b;
    size_t i = *pos;
    int major = 0;
    for (size_t k = 0; k < 8; k++, i++) {
        if (i == c->end) return need_more(c, 431, "request line too long");
        char want = pattern[k];
        if (want == '9') {
            if (!IS_DIGIT(b[i])) return fail(c, 400, "malformed HTTP version");
            if (k == 5) major = b[i] - '0';
            else req->minor_version = b[i] - '0';
        } else if (b[i] != want) {
            return fail(c, 400, "malformed HTTP version");
        }
    }
    if (major != 1 || req->minor_version > 1) return fail(c, 505, "HTTP version not supported");
    int rc = expect_crlf(c, &i);
    if (rc) return rc;
    *pos = i;
    return SL_OK;
}

static int parse_request_line(pctx *c, size_t *pos, sl_http_request *req)
{
    const char *b = c->b;
    size_t i = *pos, m0 = i;
    while (i < c->end && is(b[i], C_TOKEN)) {
        if (i - m0 >= SL_HTTP_MAX_METHOD) return fail(c, 501, "method too long");
        i++;
    }
    if (i == c->end) return need_more(c, 431, "request line too long");
    if (b[i] != ' ' || i == m0) return fail(c, 400, "malformed method");
    req->method = (sl_str){b + m0, i - m0};

    size_t t0 = ++i;
    while (i < c->end && is(b[i], C_TARGET)) i++;
    if (i == c->end) return need_more(c, 414, "request-target too long");
    if (b[i] != ' ' || i == t0) return fail(c, 400, "malformed request-target");
    req->target = (sl_str){b + t0, i - t0};
    int rc = classify_target(c, req);
    if (rc) return rc;
    i++;
    rc = parse_version(c, &i, req);
    if (rc) return rc;
    *pos = i;
    return SL_OK;
}

/* ---- header semantics ---- */

typedef struct hstate {
    bool host, cl, te, chunked, conn_close, conn_keep_alive;
} hstate;

/* Next element of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed; empty elements are skipped. */
static bool next_element(sl_str *rest, sl_str *elem)
{
    while (rest->n) {
        size_t k = 0;
        while (k < rest->n && rest->p[k] != ',') k++;
        *elem = sl_str_trim((sl_str){rest->p, k});
        size_t adv = k < rest->n ? k + 1 : k;
        rest->p += adv, rest->n -= adv;
        if (elem->n) return true;
    }
    return false;
}

static int on_content_length(pctx *c, sl_http_request *req, hstate *st, sl_str v)
{
    /* Strict: a second Content-Length is rejected even when equal (RFC 9112 §6.3 would allow
     * merging equal values; we refuse so that no proxy in front of us can disagree). */
    if (st->cl) return fail(c, 400, "repeated Content-Length");
    if (st->te) return fail(c, 400, "Content-Length with Transfer-Encoding");
    if (v.n == 0) return fail(c, 400, "empty Content-Length");
    uint64_t n = 0;
    bool big = false;
    for (size_t i = 0; i < v.n; i++) {
        if (!IS_DIGIT(v.p[i])) return fail(c, 400, "malformed Content-Length");
        if (!big) {
            n = n * 10 + (uint64_t)(v.p[i] - '0');
            big = n > SL_HTTP_MAX_CONTENT_LENGTH; /* stops accumulating before it could overflow */
        }
    }
    if (big) return fail(c, 413, "Content-Length too large");
    st->cl = true;
    req->content_length = (int64_t)n;
    return SL_OK;
}

static int on_transfer_encoding(pctx *c, sl_http_request *req, hstate *st, sl_str v)
{
    if (req->minor_version == 0) return fail(c, 400, "Transfer-Encoding on HTTP/1.0");
    if (st->cl) return fail(c, 400, "Transfer-Encoding with Content-Length");
    st->te = true;
    sl_str rest = v, e;
    bool any = false;
    while (next_element(&rest, &e)) {
        any = true;
        if (!all_of(e, C_TOKEN)) return fail(c, 400, "malformed Transfer-Encoding");
        /* chunked must be applied once and last: anything after it is framing ambiguity */
        if (st->chunked) return fail(c, 400, "Transfer-Encoding after chunked");
        if (!sl_str_case_eq(e, SL_STR("chunked"))) return fail(c, 501, "unsupported transfer coding");
        st->chunked = true;
    }
    if (!any) return fail(c, 400, "empty Transfer-Encoding");
    req->chunked = true;
    return SL_OK;
}

static int on_connection(pctx *c, hstate *st, sl_str v)
{
    sl_str rest = v, e;
    while (next_element(&rest, &e)) {
        if (!all_of(e, C_TOKEN)) return fail(c, 400, "malformed Connection");
        if (sl_str_case_eq(e, SL_STR("close"))) st->conn_close = true;
        else if (sl_str_case_eq(e, SL_STR("keep-alive"))) st->conn_keep_alive = true;
    }
    return SL_OK;
}

static int on_header(pctx *c, sl_http_request *req, hstate *st, const sl_http_header *h)
{
    sl_str n = h->name;
    switch (n.n) { /* the length picks the candidate before any byte compare */
    case 4:
        if (!sl_str_case_eq(n, SL_STR("host"))) return SL_OK;
        if (st->host) return fail(c, 400, "repeated Host");
        if (!all_of(h->value, C_HOST)) return fail(c, 400, "malformed Host");
        st->host = true;
        if (!req->host.p) req->host = h->value; /* absolute-form already set it */
        return SL_OK;
    case 6:
        if (!sl_str_case_eq(n, SL_STR("expect"))) return SL_OK;
        if (req->minor_version == 0) return SL_OK; /* RFC 9110 §10.1.1: ignored on HTTP/1.0 */
        if (!sl_str_case_eq(h->value, SL_STR("100-continue"))) return fail(c, 417, "unsupported expectation");
        req->expect_continue = true;
        return SL_OK;
    case 10:
        return sl_str_case_eq(n, SL_STR("connection")) ? on_connection(c, st, h->value) : SL_OK;
    case 14:
        return sl_str_case_eq(n, SL_STR("content-length")) ? on_content_length(c, req, st, h->value) : SL_OK;
    case 17:
        return sl_str_case_eq(n, SL_STR("transfer-encoding")) ? on_transfer_encoding(c, req, st, h->value) : SL_OK;
    default:
        return SL_OK;
    }
}

/* ---- header block ---- */

/* One "name: value CRLF" line starting at *pos (not an empty line). */
static int parse_header_line(pctx *c, size_t *pos, sl_http_header *h)
{
    const char *b = c->b;
    size_t i = sl_http_scan_token(b, *pos, c->end), n0 = *pos;
    if (i == c->end) return need_more(c, 431, "header block too large");
    if (b[i] != ':') return fail(c, 400, (b[i] == ' ' || b[i] == '\t') ? "whitespace before colon" : "malformed header name");
    if (i == n0) return fail(c, 400, "empty header name");
    h->name = (sl_str){b + n0, i - n0};
    i++;
    while (i < c->end && (b[i] == ' ' || b[i] == '\t')) i++;
    size_t v0 = i;
    i = sl_http_scan_value(b, i, c->end);
    if (i == c->end) return need_more(c, 431, "header block too large");
    if (b[i] != '\r') return fail(c, 400, b[i] == '\n' ? "bare LF line end" : "control character in header value");
    size_t v1 = i;
    while (v1 > v0 && (b[v1 - 1] == ' ' || b[v1 - 1] == '\t')) v1--;
    h->value = (sl_str){b + v0, v1 - v0};
    int rc = expect_crlf(c, &i);
    if (rc) return rc;
    *pos = i;
    return SL_OK;
}

static int parse_headers(pctx *c, size_t *pos, size_t max_headers, sl_http_request *req, hstate *st)
{
    size_t i = *pos;
    for (;;) {
        if (i == c->end) return need_more(c, 431, "header block too large");
        char ch = c->b[i];
        if (ch == '\r' || ch == '\n') break;
        if (ch == ' ' || ch == '\t') return fail(c, 400, "obsolete line folding");
        if (req->nheaders >= max_headers) return fail(c, 431, "too many headers");
        sl_http_header *h = &req->headers[req->nheaders];
        int rc = parse_header_line(c, &i, h);
        if (rc) return rc;
        req->nheaders++;
        rc = on_header(c, req, st, h);
        if (rc) return rc;
    }
    int rc = expect_crlf(c, &i);
    if (rc) return rc;
    *pos = i;
    return SL_OK;
}

/* RFC 9112 §2.2: empty lines before the request line may be ignored; they must still be CRLF. */
static int skip_leading_empty_lines(pctx *c, size_t *pos)
{
    size_t i = *pos;
    while (i < c->end && (c->b[i] == '\r' || c->b[i] == '\n')) {
        int rc = expect_crlf(c, &i);
        if (rc) return rc;
    }
    *pos = i;
    return SL_OK;
}

static void request_reset(sl_http_request *req)
{
    /* not memset: the header array belongs to the caller */
    req->method = req->target = req->path = req->query = req->host = SL_STR_NULL;
    req->minor_version = 0;
    req->nheaders = 0;
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = false;
}

int sl_http_parse_request(const char *buf, size_t len, const sl_http_limits *lim, sl_http_request *req,
                          int *status, const char **why)
{
    int st_dummy;
    const char *why_dummy;
    size_t max_bytes = lim && lim->max_header_bytes ? lim->max_header_bytes : 16384;
    size_t max_headers = lim && lim->max_headers ? lim->max_headers : SL_HTTP_MAX_HEADERS_HARD;
    if (max_bytes > SL_HTTP_HEADER_BYTES_CEIL) max_bytes = SL_HTTP_HEADER_BYTES_CEIL;
    if (max_headers > SL_HTTP_MAX_HEADERS_HARD) max_headers = SL_HTTP_MAX_HEADERS_HARD;
    if (!req->headers) max_headers = 0;
    pctx c = {buf, SL_MIN(len, max_bytes), len > max_bytes, status ? status : &st_dummy, why ? why : &why_dummy};
    *c.status = 0;
    *c.why = NULL;
    request_reset(req);

    size_t i = 0;
    hstate st = {0};
    int rc = skip_leading_empty_lines(&c, &i);
    if (!rc) rc = parse_request_line(&c, &i, req);
    if (!rc) rc = parse_headers(&c, &i, max_headers, req, &st);
    if (rc) return rc;
    if (req->minor_version == 1 && !st.host) return fail(&c, 400, "missing Host");
    req->keep_alive = !st.conn_close && (req->minor_version == 1 || st.conn_keep_alive);
    if (!req->host.p) req->host = (sl_str){buf + i, 0}; /* HTTP/1.0 without Host: empty, not NULL */
    return (int)i;
}

const sl_http_header *sl_http_find_header(const sl_http_request *req, const char *name)
{
    sl_str n = sl_str_from_cstr(name);
    for (size_t i = 0; i < req->nheaders; i++) /* the length first: most names differ there */
        if (req->headers[i].name.n == n.n && sl_str_case_eq(req->headers[i].name, n)) return &req->headers[i];
    return NULL;
}

const char *sl_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: break;
    }
    /* RFC 9110 §15: an unknown code is treated like x00 of its class */
    if (status >= 100 && status < 200) return "Informational";
    if (status >= 200 && status < 300) return "Success";
    if (status >= 300 && status < 400) return "Redirection";
    if (status >= 400 && status < 500) return "Client Error";
    if (status >= 500 && status < 600) return "Server Error";
    return "Unknown";
}
