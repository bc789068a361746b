/*
 * upstream_req.c: one upstream request as a curl easy handle: its options
 * (method, headers, body without a copy, HTTP/2, timeouts, protocol limits)
 * and the header and write callbacks that turn curl's byte stream into
 * on_head / on_data calls with back-pressure. The multi side and the request
 * life cycle are in upstream.c; the re-entrancy rule is in upstream_int.h.
 */
#include "http/upstream_int.h"

#include <limits.h>
#include <strings.h>

/* ---- request options ---- */

static bool valid_header_bytes(sl_str s)
{
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] == '\r' || s.p[i] == '\n' || s.p[i] == '\0') return false;
    return true;
}

/* Framing and hop-by-hop headers are curl's job; a caller's copy could desync the body. */
static bool skipped_header(sl_str name)
{
    static const char *const skip[] = {"content-length", "transfer-encoding", "connection", "expect"};
    for (size_t i = 0; i < SL_ARRAY_LEN(skip); i++)
        if (sl_str_case_eq(name, sl_str_from_cstr(skip[i]))) return true;
    return false;
}

/* "Name: value", or "Name;" which is curl's spelling for a header with an empty value. */
static int slist_add(struct curl_slist **list, sl_str name, sl_str value)
{
    if (!name.n || !valid_header_bytes(name) || !valid_header_bytes(value) || memchr(name.p, ':', name.n))
        return SL_EINVAL;
    sl_buf b;
    sl_buf_init(&b, SL_UP_MAX_REQ_HEADER);
    int rc = sl_buf_append_str(&b, name);
    if (!rc && value.n) rc = sl_buf_append(&b, ": ", 2);
    if (!rc) rc = value.n ? sl_buf_append_str(&b, value) : sl_buf_append(&b, ";", 1);
    if (rc) {
        sl_buf_free(&b);
        return rc == SL_ELIMIT ? SL_EINVAL : rc;
    }
    struct curl_slist *n = curl_slist_append(*list, b.p);
    sl_buf_free(&b);
    if (!n) return SL_ENOMEM;
    *list = n;
    return SL_OK;
}

static int build_headers(sl_up_req *q, const sl_up_request *r)
{
    bool have_ae = false;
    for (size_t i = 0; i < r->nheaders; i++) {
        const sl_http_header *h = &r->headers[i];
        if (skipped_header(h->name)) continue;
        if (sl_str_case_eq(h->name, SL_STR("accept-encoding"))) have_ae = true;
        int rc = slist_add(&q->hdrs, h->name, h->value);
        if (rc) return rc;
    }
    /* An empty Expect stops curl from waiting for 100-continue before large bodies. */
    struct curl_slist *n = curl_slist_append(q->hdrs, "Expect:");
    if (!n) return SL_ENOMEM;
    q->hdrs = n;
    /* Bodies pass through as sent unless the caller asked for an encoding. */
    if (!have_ae) return slist_add(&q->hdrs, SL_STR("Accept-Encoding"), SL_STR("identity"));
    return SL_OK;
}

static bool valid_method(const char *m)
{
    if (!m || !*m) return false;
    for (const char *p = m; *p; p++)
        if (*p <= ' ' || *p >= 127) return false;
    return true;
}

static long clamp_ms(uint64_t ms) { return ms > (uint64_t)LONG_MAX ? LONG_MAX : (long)ms; }

static size_t header_cb(char *p, size_t size, size_t nitems, void *ud);
static size_t write_cb(char *p, size_t size, size_t nitems, void *ud);

/* Body handling: POSTFIELDS points at the caller's buffer (no copy), which is why it must outlive the request. */
static CURLcode set_method(CURL *e, const sl_up_request *r)
{
    CURLcode rc = CURLE_OK;
    bool has_body = r->body != NULL || r->body_len > 0;
    bool post = strcmp(r->method, "POST") == 0;
    if (has_body || post) {
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        if (!rc) rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        if (!rc && !post) rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") == 0) {
        rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "HEAD") == 0) {
        rc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    return rc;
}

#define SETOPT(opt, val)                                   \
    do {                                                   \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK)     \
            return SL_EINVAL;                              \
    } while (0)

int sl_up__setup_easy(sl_up_req *q, const sl_up_request *r)
{
    if (!r->url || !valid_method(r->method)) return SL_EINVAL;
    CURL *e = q->easy;
    int rc = build_headers(q, r);
    if (rc) return rc;
    SETOPT(CURLOPT_URL, r->url);
    if (set_method(e, r) != CURLE_OK) return SL_EINVAL;
    SETOPT(CURLOPT_HTTPHEADER, q->hdrs);
    SETOPT(CURLOPT_PRIVATE, (void *)q);
    SETOPT(CURLOPT_ERRORBUFFER, q->errbuf);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, (void *)q);
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, (void *)q);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    /* Proxies come from configuration, never from the environment of the process. */
    SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_TCP_NODELAY, 1L);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_TCP_KEEPIDLE, 60L);
    SETOPT(CURLOPT_TCP_KEEPINTVL, 15L);
    if (q->u->share) SETOPT(CURLOPT_SHARE, q->u->share);
    if (strncasecmp(r->url, "https://", 8) == 0) {
        /* h2 via ALPN (a curl without nghttp2 stays on 1.1), and wait for a pooled
         * connection's ALPN answer so that parallel requests share one h2 connection. */
        (void)curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        SETOPT(CURLOPT_PIPEWAIT, 1L);
    } else {
        /* Plain http is HTTP/1.1 here. With PIPEWAIT (or an h2 wish) curl would hold every
         * new request until the first connection's response head proved it is 1.1. */
        SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    if (r->connect_timeout_ms) SETOPT(CURLOPT_CONNECTTIMEOUT_MS, clamp_ms(r->connect_timeout_ms));
    /* The total deadline is our own timer, so that curl's OPERATION_TIMEDOUT only ever means "connect". */
    return SL_OK;
}

/* ---- response head ---- */

static void reset_head(sl_up_req *q)
{
    sl_buf_clear(&q->hraw);
    sl_buf_clear(&q->hoff);
    q->status = 0;
}

static int parse_status_line(sl_str line)
{
    const char *sp = memchr(line.p, ' ', line.n);
    if (!sp) return 0;
    size_t i = (size_t)(sp - line.p) + 1;
    if (line.n - i < 3) return 0;
    int st = 0;
    for (size_t k = 0; k < 3; k++) {
        char c = line.p[i + k];
        if (c < '0' || c > '9') return 0;
        st = st * 10 + (c - '0');
    }
    if (line.n - i > 3 && line.p[i + 3] != ' ' && line.p[i + 3] != '\r') return 0;
    return st;
}

static int store_header(sl_up_req *q, sl_str line)
{
    const char *colon = memchr(line.p, ':', line.n);
    if (!colon) return SL_OK; /* obsolete folding or junk: curl already judged the framing */
    sl_str name = sl_str_trim((sl_str){line.p, (size_t)(colon - line.p)});
    sl_str value = sl_str_trim((sl_str){colon + 1, line.n - (size_t)(colon - line.p) - 1});
    if (q->hoff.len / sizeof(sl_up_hoff) >= SL_UP_MAX_HEADERS) return SL_ELIMIT;
    sl_up_hoff h = {(uint32_t)q->hraw.len, (uint32_t)name.n, (uint32_t)(q->hraw.len + name.n), (uint32_t)value.n};
    int rc = sl_buf_append_str(&q->hraw, name);
    if (!rc) rc = sl_buf_append_str(&q->hraw, value);
    if (!rc) rc = sl_buf_append(&q->hoff, &h, sizeof h);
    return rc;
}

int sl_up__head_complete(sl_up_req *q)
{
    q->head_done = true;
    if (!q->status) {
        long code = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &code);
        q->status = (int)code;
    }
    q->last_data_ms = uv_now(q->u->loop);
    sl_up__arm(q); /* first-byte deadline met; the idle one starts */
    size_t n = q->hoff.len / sizeof(sl_up_hoff);
    sl_http_header *hs = n ? sl_calloc(n, sizeof *hs) : NULL;
    int rc = SL_OK;
    if (n && !hs) {
        rc = SL_ENOMEM;
    } else {
        const sl_up_hoff *o = (const sl_up_hoff *)(const void *)q->hoff.p;
        for (size_t i = 0; i < n; i++) {
            hs[i].name = (sl_str){q->hraw.p + o[i].name_off, o[i].name_len};
            hs[i].value = (sl_str){q->hraw.p + o[i].value_off, o[i].value_len};
        }
        q->u->in_cb++;
        rc = q->cb.on_head ? q->cb.on_head(q->ud, q->status, hs, n) : 0;
        q->u->in_cb--;
    }
    sl_free(hs);
    sl_buf_free(&q->hraw); /* trailers are not collected: the head is all we keep */
    sl_buf_free(&q->hoff);
    if (q->done) return -1; /* cancelled inside on_head */
    if (rc < 0) {
        q->fail = SL_UP_ERR_ABORTED;
        q->fail_detail = rc == SL_ENOMEM ? "out of memory" : "aborted by on_head";
        return -1;
    }
    return 0;
}

/* Called for every header line of every response, 1xx and trailers included. */
static size_t header_cb(char *p, size_t size, size_t nitems, void *ud)
{
    sl_up_req *q = ud;
    size_t len = size * nitems;
    if (q->done) return 0; /* cancelled: make curl stop */
    if (q->head_done) return len; /* trailers */
    sl_str line = {p, len};
    while (line.n && (line.p[line.n - 1] == '\n' || line.p[line.n - 1] == '\r')) line.n--;
    if (sl_str_starts_with(line, SL_STR("HTTP/"))) {
        reset_head(q);
        q->status = parse_status_line(line);
        return len;
    }
    if (line.n == 0) {
        if (q->status >= 100 && q->status < 200) { /* interim (100 Continue, 103 Early Hints) */
            reset_head(q);
            return len;
        }
        return sl_up__head_complete(q) == 0 ? len : 0;
    }
    if (store_header(q, line) != SL_OK) {
        q->fail = SL_UP_ERR_IO;
        q->fail_detail = "response header block too large";
        return 0;
    }
    return len;
}

/*
 * Body bytes. SL_EAGAIN from on_data pauses the transfer and the bytes are
 * NOT consumed: curl keeps them and hands them to this callback again after
 * curl_easy_pause(CONT), so on_data sees them again then.
 */
static size_t write_cb(char *p, size_t size, size_t nitems, void *ud)
{
    sl_up_req *q = ud;
    size_t len = size * nitems;
    if (q->done) return CURL_WRITEFUNC_ERROR;
    if (!q->head_done && sl_up__head_complete(q) != 0) return CURL_WRITEFUNC_ERROR;
    if (len == 0) return 0;
    /* Paused by sl_up_req_pause before curl's transfer state existed: keep the promise anyway. */
    if (q->paused) return CURL_WRITEFUNC_PAUSE;
    q->u->in_cb++;
    int rc = q->cb.on_data ? q->cb.on_data(q->ud, p, len) : 0;
    q->u->in_cb--;
    if (q->done) return CURL_WRITEFUNC_ERROR;
    if (rc == SL_EAGAIN) {
        q->paused = true;
        sl_up__arm(q); /* the idle clock stops while the client drains */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (rc < 0) {
        q->fail = SL_UP_ERR_ABORTED;
        q->fail_detail = "aborted by on_data";
        return CURL_WRITEFUNC_ERROR;
    }
    q->bytes += len;
    q->last_data_ms = uv_now(q->u->loop);
    return len;
}
