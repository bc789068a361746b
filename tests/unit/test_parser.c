/* test_parser.c: the strict HTTP/1.1 request parser and the chunked decoder (src/http/parser.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/buf.h"
#include "http/parser.h"

static const sl_http_limits LIM = {.max_header_bytes = 16384, .max_headers = 100};

static sl_http_header req_headers[SL_HTTP_MAX_HEADERS_HARD]; /* 8 KiB: keep it off the stack */
static sl_http_request req = {.headers = req_headers};

static int parse(const char *s, size_t n, const sl_http_limits *lim, int *status)
{
    const char *why = NULL;
    *status = -1;
    int rc = sl_http_parse_request(s, n, lim, &req, status, &why);
    if (rc < 0 && rc != SL_EAGAIN) assert_non_null(why);
    return rc;
}

static int parse_cstr(const char *s, int *status) { return parse(s, strlen(s), &LIM, status); }

/* Every strict prefix of a complete request must ask for more bytes. */
static void assert_prefixes_need_more(const char *s, size_t n)
{
    int status;
    for (size_t k = 0; k < n; k++) assert_int_equal(parse(s, k, &LIM, &status), SL_EAGAIN);
}

/* ---- malformed requests ---- */

typedef struct bad_case {
    const char *req;
    int status;
} bad_case;

#define H11 " HTTP/1.1\r\nHost: a\r\n"
static const bad_case bad[] = {
    /* request line */
    {"GET  /" H11 "\r\n", 400},                               /* two spaces */
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},              /* two spaces before version */
    {" GET /" H11 "\r\n", 400},                               /* leading space */
    {"GET\t/" H11 "\r\n", 400},                               /* tab as separator */
    {"G(T /" H11 "\r\n", 400},                                /* non-token method */
    {"GET /a b" H11 "\r\n", 400},                             /* space in target */
    {"GET /a\x01" H11 "\r\n", 400},                           /* control char in target */
    {"GET /a\x7f" H11 "\r\n", 400},                           /* DEL in target */
    {"GET /\xc3\xa9" H11 "\r\n", 400},                        /* raw UTF-8 in target */
    {"GET /a#frag" H11 "\r\n", 400},                          /* fragment */
    {"GET a/b" H11 "\r\n", 400},                              /* relative target */
    {"GET *" H11 "\r\n", 400},                                /* asterisk-form not for GET */
    {"GET ftp://x/y" H11 "\r\n", 400},                        /* absolute-form other than http(s) */
    {"GET http:///y" H11 "\r\n", 400},                        /* empty authority */
    {"GET http://u@evil/y" H11 "\r\n", 400},                  /* userinfo */
    {"CONNECT a:443" H11 "\r\n", 501},                        /* CONNECT */
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},               /* HTTP/2 text */
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400},                /* h2 preface: '*' not for PRI */
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},              /* trailing space */
    {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},                 /* bare LF after request line */
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", 400},                 /* bare CR */
    {"GET /\r\n\r\n", 400},                                   /* HTTP/0.9 style */
    {"\nGET /" H11 "\r\n", 400},                              /* leading bare LF */
    {"ABCDEFGHIJKLMNOPQRSTUVWXYZ /" H11 "\r\n", 501},         /* absurd method */
    /* header lines */
    {"GET /" H11 "X-A : b\r\n\r\n", 400},                     /* whitespace before colon */
    {"GET /" H11 "X-A\t: b\r\n\r\n", 400},
    {"GET /" H11 ": b\r\n\r\n", 400},                         /* empty name */
    {"GET /" H11 "X A: b\r\n\r\n", 400},                      /* space in name */
    {"GET /" H11 "X-A b\r\n\r\n", 400},                       /* no colon */
    {"GET /" H11 "X-\xc3\xa9: b\r\n\r\n", 400},               /* non-token name */
    {"GET /" H11 "X-A: b\r\n c\r\n\r\n", 400},                /* obs-fold */
    {"GET /" H11 "X-A: b\r\n\tc\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},              /* whitespace before first header */
    {"GET /" H11 "X-A: b\nX-B: c\r\n\r\n", 400},              /* bare LF in headers */
    {"GET /" H11 "X-A: b\r\n\n", 400},                        /* bare LF ends the block */
    {"GET /" H11 "X-A: b\rc\r\n\r\n", 400},                   /* bare CR in value */
    {"GET /" H11 "X-A: b\x01\r\n\r\n", 400},                  /* CTL in value */
    {"GET /" H11 "X-A: b\x7f\r\n\r\n", 400},                  /* DEL in value */
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", 400},                          /* missing Host */
    {"GET /" H11 "Host: b\r\n\r\n", 400},                     /* repeated Host */
    {"GET /" H11 "HOST: a\r\n\r\n", 400},                     /* repeated Host, other case */
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},             /* malformed Host */
    {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
    /* Content-Length */
    {"POST /" H11 "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", 400}, /* repeated, even equal */
    {"POST /" H11 "Content-Length: 1,1\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: +1\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: -1\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: 0x10\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: 1 2\r\n\r\n", 400},
    {"POST /" H11 "Content-Length:\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: 9007199254740993\r\n\r\n", 413},
    {"POST /" H11 "Content-Length: 99999999999999999999999999\r\n\r\n", 413},
    /* Transfer-Encoding */
    {"POST /" H11 "Transfer-Encoding: gzip\r\n\r\n", 501},
    {"POST /" H11 "Transfer-Encoding: identity\r\n\r\n", 501},
    {"POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
    {"POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400},    /* chunked not last */
    {"POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"POST /" H11 "Transfer-Encoding: chunked;x=1\r\n\r\n", 400},
    {"POST /" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400},
    {"POST /" H11 "Transfer-Encoding: ,\r\n\r\n", 400},
    {"POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
    {"POST /" H11 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    /* Connection, Expect */
    {"GET /" H11 "Connection: close x\r\n\r\n", 400},
    {"POST /" H11 "Expect: 200-ok\r\n\r\n", 417},
};

static void test_malformed_table(void **state)
{
    (void)state;
    assert_true(SL_ARRAY_LEN(bad) >= 30);
    for (size_t k = 0; k < SL_ARRAY_LEN(bad); k++) {
        const char *s = bad[k].req;
        size_t n = strlen(s); /* NUL in a value is tested on its own below */
        int status;
        int rc = parse(s, n, &LIM, &status);
        if (rc >= 0 || status != bad[k].status) print_error("case %zu: rc=%d status=%d want %d: %s\n", k, rc, status, bad[k].status, s);
        assert_true(rc < 0 && rc != SL_EAGAIN);
        assert_int_equal(status, bad[k].status);
        assert_int_equal(rc, (status == 413 || status == 414 || status == 431) ? SL_ELIMIT : SL_EPARSE);
    }
}

static void test_nul_in_value(void **state)
{
    (void)state;
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
    int status;
    assert_int_equal(parse(s, sizeof s - 1, &LIM, &status), SL_EPARSE);
    assert_int_equal(status, 400);
    /* and the error is seen before the block is complete */
    assert_int_equal(parse(s, 33, &LIM, &status), SL_EPARSE);
}

/* Header values are scanned 8 bytes at a time: put the odd byte at every offset. */
static void test_value_bytes_at_every_offset(void **state)
{
    (void)state;
    static const char bytes[] = {'\t', '\x01', '\x7f', '\x1f', '\n', '\0', '\xff', '\x80', ' '};
    for (size_t b = 0; b < sizeof bytes; b++) {
        for (size_t pos = 0; pos < 24; pos++) {
            char s[128];
            char value[25];
            memset(value, 'v', 24);
            value[pos] = bytes[b];
            static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX-V: ";
            size_t n = sizeof head - 1;
            memcpy(s, head, n);
            memcpy(s + n, value, 24);
            n += 24;
            memcpy(s + n, "\r\n\r\n", 4);
            n += 4;
            int status;
            int rc = parse(s, n, &LIM, &status);
            bool ok = bytes[b] == '\t' || bytes[b] == ' ' || (unsigned char)bytes[b] >= 0x80;
            if (ok) {
                assert_int_equal(rc, (int)n);
                /* OWS at either end is trimmed */
                bool ows = bytes[b] == '\t' || bytes[b] == ' ';
                size_t lo = (pos == 0 && ows) ? 1 : 0, hi = (pos == 23 && ows) ? 1 : 0;
                assert_int_equal(req.headers[1].value.n, 24 - lo - hi);
                assert_memory_equal(req.headers[1].value.p, value + lo, 24 - lo - hi);
            } else {
                assert_int_equal(rc, SL_EPARSE);
                assert_int_equal(status, 400);
            }
        }
    }
}

/* HTAB then another byte in the same value, at every pair of offsets: the word scan steps over
 * the tab and must still stop at a control byte after it (in the same word or a later one). */
static void test_value_tab_then_byte(void **state)
{
    (void)state;
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX-V: ";
    for (size_t t = 1; t < 23; t++) {
        for (size_t pos = t + 1; pos < 23; pos++) {
            for (int is_bad = 0; is_bad < 2; is_bad++) {
                char s[128], value[24];
                memset(value, 'v', 24);
                value[t] = '\t';
                value[pos] = is_bad ? '\x01' : '\t';
                size_t n = sizeof head - 1;
                memcpy(s, head, n);
                memcpy(s + n, value, 24);
                n += 24;
                memcpy(s + n, "\r\n\r\n", 4);
                n += 4;
                int status;
                int rc = parse(s, n, &LIM, &status);
                if (is_bad) {
                    assert_int_equal(rc, SL_EPARSE);
                    assert_int_equal(status, 400);
                } else {
                    assert_int_equal(rc, (int)n);
                    assert_int_equal(req.headers[1].value.n, 24);
                }
            }
        }
    }
}

/* Every byte value at every offset of a 20-byte header name: the word-at-a-time name scan
 * must accept exactly the token characters (RFC 9110 tchar) and stop at anything else. */
static bool ref_tchar(int ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static void test_name_bytes_at_every_offset(void **state)
{
    (void)state;
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (size_t pos = 0; pos < 20; pos++) {
        for (int ch = 0; ch < 256; ch++) {
            char s[128], name[20];
            memcpy(name, "X-Abcdefghij-0123456", 20);
            name[pos] = (char)ch;
            size_t n = sizeof head - 1;
            memcpy(s, head, n);
            memcpy(s + n, name, 20);
            n += 20;
            memcpy(s + n, ": v\r\n\r\n", 7);
            n += 7;
            int status;
            int rc = parse(s, n, &LIM, &status);
            if (ref_tchar(ch)) {
                assert_int_equal(rc, (int)n);
                assert_int_equal(req.headers[1].name.n, 20);
            } else if (ch == ':' && pos > 0) {
                assert_int_equal(rc, (int)n); /* the name ends there; the rest is the value */
                assert_int_equal(req.headers[1].name.n, pos);
            } else {
                assert_true(rc < 0);
            }
        }
    }
}

/* ---- valid requests ---- */

static void test_get(void **state)
{
    (void)state;
    const char *s = "GET /v1/models?limit=2&x=y HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent:  curl/8 \t\r\n"
                    "Accept: */*\r\nX-Obs: caf\xc3\xa9\r\n\r\n";
    int status;
    int rc = parse_cstr(s, &status);
    assert_int_equal(rc, (int)strlen(s));
    assert_true(sl_str_eq_lit(req.method, "GET"));
    assert_true(sl_str_eq_lit(req.target, "/v1/models?limit=2&x=y"));
    assert_true(sl_str_eq_lit(req.path, "/v1/models"));
    assert_true(sl_str_eq_lit(req.query, "limit=2&x=y"));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.nheaders, 4);
    assert_true(sl_str_eq_lit(req.host, "example.com:8080"));
    assert_true(sl_str_eq_lit(req.headers[1].name, "User-Agent"));
    assert_true(sl_str_eq_lit(req.headers[1].value, "curl/8"));
    assert_true(sl_str_eq_lit(req.headers[3].value, "caf\xc3\xa9"));
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    const sl_http_header *h = sl_http_find_header(&req, "user-agent");
    assert_non_null(h);
    assert_ptr_equal(h, &req.headers[1]);
    assert_null(sl_http_find_header(&req, "content-type"));
    assert_prefixes_need_more(s, strlen(s));
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *s = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                    "Content-Length: 0012\r\nExpect: 100-Continue\r\nConnection: Keep-Alive, Close\r\n\r\n"
                    "{\"model\":1}x";
    int status;
    int rc = parse_cstr(s, &status);
    assert_int_equal(rc, (int)(strstr(s, "\r\n\r\n") - s + 4));
    assert_int_equal(req.content_length, 12);
    assert_true(req.expect_continue);
    assert_false(req.keep_alive); /* close wins */
    assert_true(sl_str_eq_lit(req.query, ""));
    assert_non_null(req.query.p);
}

static void test_chunked_request(void **state)
{
    (void)state;
    const char *s = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , Chunked\r\n\r\n";
    int status;
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
}

static void test_http10(void **state)
{
    (void)state;
    int status;
    const char *s = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_int_equal(req.minor_version, 0);
    assert_false(req.keep_alive);
    assert_non_null(req.host.p);
    assert_int_equal(req.host.n, 0);
    s = "GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: whatever\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(req.keep_alive);
    assert_false(req.expect_continue); /* ignored on 1.0 */
}

static void test_target_forms(void **state)
{
    (void)state;
    int status;
    const char *s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(sl_str_eq_lit(req.path, "*"));
    s = "GET HTTPS://api.example.com:443/v1/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(sl_str_eq_lit(req.host, "api.example.com:443"));
    assert_true(sl_str_eq_lit(req.path, "/v1/x"));
    assert_true(sl_str_eq_lit(req.query, "q=1"));
    s = "GET http://[::1]:80 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(sl_str_eq_lit(req.host, "[::1]:80"));
    assert_true(sl_str_eq_lit(req.path, "/"));
    assert_int_equal(req.query.n, 0);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    int status;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse_cstr(s, &status), (int)strlen(s));
    assert_true(sl_str_eq_lit(req.method, "GET"));
    assert_prefixes_need_more(s, strlen(s));
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *s = "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: b\r\n\r\n";
    int status;
    int rc = parse_cstr(s, &status);
    assert_int_equal(rc, (int)strlen(first));
    assert_true(sl_str_eq_lit(req.path, "/one"));
    rc = parse(s + rc, strlen(s) - (size_t)rc, &LIM, &status);
    assert_int_equal(rc, (int)(strlen(s) - strlen(first)));
    assert_true(sl_str_eq_lit(req.path, "/two"));
    assert_true(sl_str_eq_lit(req.host, "b"));
}

/* Errors come at the first bad byte: every prefix fails the same way or needs more. */
static void test_incremental_errors(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(bad); k++) {
        const char *s = bad[k].req;
        size_t n = strlen(s);
        int status;
        for (size_t j = 0; j <= n; j++) {
            int rc = parse(s, j, &LIM, &status);
            assert_true(rc == SL_EAGAIN || (rc < 0 && status == bad[k].status));
        }
    }
}

/* ---- limits ---- */

static void test_limits(void **state)
{
    (void)state;
    sl_http_limits small = {.max_header_bytes = 64, .max_headers = 3};
    char big[512];
    int status;

    /* a long target: 414, as soon as the limit is passed */
    memset(big, 0, sizeof big);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 100);
    assert_int_equal(parse(big, 64, &small, &status), SL_EAGAIN);
    assert_int_equal(parse(big, 65, &small, &status), SL_ELIMIT);
    assert_int_equal(status, 414);

    /* a header block past the limit without a complete block: 431 */
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_int_equal(parse(s, 64, &small, &status), SL_EAGAIN);
    assert_int_equal(parse(s, 65, &small, &status), SL_ELIMIT);
    assert_int_equal(status, 431);
    assert_int_equal(parse(s, strlen(s), &small, &status), SL_ELIMIT);
    assert_int_equal(status, 431);

    /* exactly at the limit is fine */
    s = "GET / HTTP/1.1\r\nHost: a\r\nX: 01234567890123456789012345678901\r\n\r\n";
    assert_int_equal(strlen(s), 64);
    assert_int_equal(parse(s, strlen(s), &small, &status), 64);
    assert_int_equal(parse(s, strlen(s) - 1, &small, &status), SL_EAGAIN);

    /* header count */
    s = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_int_equal(parse(s, strlen(s), &small, &status), (int)strlen(s));
    s = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_int_equal(parse(s, strlen(s), &small, &status), SL_ELIMIT);
    assert_int_equal(status, 431);

    /* the hard cap applies even when the configured limit is higher */
    sl_http_limits lots = {.max_header_bytes = 65536, .max_headers = 100000};
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_append_cstr(&b, "GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    for (int k = 0; k < SL_HTTP_MAX_HEADERS_HARD; k++) assert_int_equal(sl_buf_appendf(&b, "X-%d: v\r\n", k), 0);
    assert_int_equal(sl_buf_append_cstr(&b, "\r\n"), 0);
    assert_int_equal(parse(b.p, b.len, &lots, &status), SL_ELIMIT);
    assert_int_equal(status, 431);
    sl_buf_free(&b);

    /* defaults when limits are zero or absent */
    s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse(s, strlen(s), NULL, &status), (int)strlen(s));
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(sl_http_reason(200), "OK");
    assert_string_equal(sl_http_reason(400), "Bad Request");
    assert_string_equal(sl_http_reason(404), "Not Found");
    assert_string_equal(sl_http_reason(413), "Content Too Large");
    assert_string_equal(sl_http_reason(414), "URI Too Long");
    assert_string_equal(sl_http_reason(429), "Too Many Requests");
    assert_string_equal(sl_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sl_http_reason(502), "Bad Gateway");
    assert_string_equal(sl_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(sl_http_reason(299), "Success");
    assert_string_equal(sl_http_reason(42), "Unknown");
}

/* ---- chunked decoder ---- */

typedef struct chunk_result {
    int rc;
    size_t consumed;
    sl_buf body;
} chunk_result;

/* Feeds s in pieces of at most step bytes (0 = all at once), as a connection would. */
static chunk_result decode(const char *s, size_t n, uint64_t max_body, size_t step)
{
    chunk_result r = {0};
    sl_buf_init(&r.body, 0);
    sl_http_chunked c;
    sl_http_chunked_init(&c, max_body);
    size_t off = 0;
    for (;;) {
        size_t piece = step ? SL_MIN(step, n - off) : n - off;
        size_t used = 0;
        r.rc = sl_http_chunked_decode(&c, s + off, piece, &r.body, &used);
        assert_true(used <= piece);
        off += used;
        if (r.rc != 0 || off == n) break;
        assert_int_equal(used, piece); /* 0 means it wanted everything it was given */
    }
    r.consumed = off;
    return r;
}

static void expect_body(const char *s, uint64_t max_body, int rc, const char *body, size_t consumed)
{
    size_t n = strlen(s);
    for (size_t step = 0; step <= 3; step++) {
        chunk_result r = decode(s, n, max_body, step);
        assert_int_equal(r.rc, rc);
        if (rc == 1) {
            assert_int_equal(r.consumed, consumed);
            assert_int_equal(r.body.len, strlen(body));
            assert_memory_equal(r.body.p ? r.body.p : "", body, strlen(body));
        }
        sl_buf_free(&r.body);
    }
}

static void test_chunked_valid(void **state)
{
    (void)state;
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET";
    expect_body(s, 1000, 1, "hello world", strlen(s) - 3);
    expect_body("0\r\n\r\n", 0, 1, "", 5);
    expect_body("A\r\n0123456789\r\n0\r\n\r\n", 10, 1, "0123456789", 20);
    expect_body("a\r\n0123456789\r\n000\r\n\r\n", 10, 1, "0123456789", 22);
    expect_body("3\r\nabc\r\n", 100, 0, "", 0); /* not finished */
}

static void test_chunked_byte_by_byte(void **state)
{
    (void)state;
    const char *s = "4;name=val;x=\"q;uoted\"\r\nwiki\r\n5 ; a\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                    "0;last\r\nExpires: never\r\nX-Trailer: \xff ok\r\n\r\nnext";
    const char *body = "wikipedia in\r\n\r\nchunks.";
    size_t n = strlen(s);
    for (size_t step = 1; step <= n; step++) {
        chunk_result r = decode(s, n, 1 << 20, step);
        assert_int_equal(r.rc, 1);
        assert_int_equal(r.consumed, n - 4);
        assert_int_equal(r.body.len, strlen(body));
        assert_memory_equal(r.body.p, body, strlen(body));
        sl_buf_free(&r.body);
    }
}

static void test_chunked_errors(void **state)
{
    (void)state;
    static const char *const bad_chunks[] = {
        "\r\nabc\r\n0\r\n\r\n",           /* empty size */
        "x\r\n",                          /* not hex */
        "0x5\r\nhello\r\n0\r\n\r\n",      /* 0x prefix */
        "+5\r\nhello\r\n0\r\n\r\n",       /* sign */
        "-5\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",       /* leading space */
        "5 \r\nhello\r\n0\r\n\r\n",       /* BWS not followed by an extension */
        "5\nhello\r\n0\r\n\r\n",          /* bare LF after size */
        "5\rhello\r\n0\r\n\r\n",          /* bare CR */
        "5\r\nhelloX\r\n0\r\n\r\n",       /* data longer than its size: CRLF missing */
        "5\r\nhello0\r\n\r\n",            /* CRLF after data missing */
        "5\r\nhello\n0\r\n\r\n",          /* LF only after data */
        "5;a\x01\r\nhello\r\n0\r\n\r\n",  /* control char in extension */
        "00000000000000001\r\nx\r\n0\r\n\r\n", /* 17 digits */
        "1ffffffffffffffff\r\n",          /* overflow */
        "0\r\n bad\r\n\r\n",              /* obs-fold in trailers */
        "0\r\nX-A b\r\n\r\n",             /* trailer without colon */
        "0\r\nX-A: b\x01\r\n\r\n",        /* control char in trailer */
        "0\r\nX-A: b\n\r\n",              /* bare LF in trailer */
        "0\r\n\n",                        /* bare LF at the end */
        "0\r\n\rX",
    };
    for (size_t k = 0; k < SL_ARRAY_LEN(bad_chunks); k++) expect_body(bad_chunks[k], 1 << 20, SL_EPARSE, "", 0);
}

static void test_chunked_limits(void **state)
{
    (void)state;
    /* past max_body: known from the size line, before any data */
    expect_body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 10, SL_ELIMIT, "", 0);
    expect_body("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 10, 1, "helloworld", 25);
    expect_body("ffffffffffffffff\r\n", UINT64_MAX - 1, SL_ELIMIT, "", 0);

    /* extensions are bounded (4 KiB per size line), trailers too (8 KiB in all) */
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_append_cstr(&b, "1;"), 0);
    for (int k = 0; k < 5000; k++) assert_int_equal(sl_buf_append_cstr(&b, "x"), 0);
    assert_int_equal(sl_buf_append_cstr(&b, "\r\na\r\n0\r\n\r\n"), 0);
    expect_body(b.p, 100, SL_EPARSE, "", 0);
    sl_buf_clear(&b);
    assert_int_equal(sl_buf_append_cstr(&b, "1;"), 0);
    for (int k = 0; k < 4000; k++) assert_int_equal(sl_buf_append_cstr(&b, "x"), 0);
    assert_int_equal(sl_buf_append_cstr(&b, "\r\na\r\n0\r\n\r\n"), 0);
    expect_body(b.p, 100, 1, "a", b.len);
    sl_buf_clear(&b);
    assert_int_equal(sl_buf_append_cstr(&b, "0\r\n"), 0);
    for (int k = 0; k < 1000; k++) assert_int_equal(sl_buf_append_cstr(&b, "X-Trailer: 01234\r\n"), 0);
    assert_int_equal(sl_buf_append_cstr(&b, "\r\n"), 0);
    expect_body(b.p, 100, SL_EPARSE, "", 0);
    sl_buf_free(&b);

    /* the output buffer's own cap is reported as is */
    sl_http_chunked c;
    sl_http_chunked_init(&c, 100);
    sl_buf out;
    sl_buf_init(&out, 3);
    size_t used;
    assert_int_equal(sl_http_chunked_decode(&c, "5\r\nhello\r\n", 10, &out, &used), SL_ELIMIT);
    assert_int_equal(used, 3);
    sl_buf_free(&out);
}

static void test_chunked_sticky_and_done(void **state)
{
    (void)state;
    sl_http_chunked c;
    sl_http_chunked_init(&c, 100);
    size_t used;
    assert_int_equal(sl_http_chunked_decode(&c, "0\r\n\r\nrest", 9, NULL, &used), 1);
    assert_int_equal(used, 5);
    assert_int_equal(sl_http_chunked_decode(&c, "rest", 4, NULL, &used), 1);
    assert_int_equal(used, 0);
    sl_http_chunked_init(&c, 100);
    assert_int_equal(sl_http_chunked_decode(&c, "z", 1, NULL, &used), SL_EPARSE);
    assert_int_equal(used, 0);
    assert_int_equal(sl_http_chunked_decode(&c, "0\r\n\r\n", 5, NULL, &used), SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_nul_in_value),
        cmocka_unit_test(test_value_bytes_at_every_offset),
        cmocka_unit_test(test_value_tab_then_byte),
        cmocka_unit_test(test_name_bytes_at_every_offset),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incremental_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_byte_by_byte),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_chunked_sticky_and_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
