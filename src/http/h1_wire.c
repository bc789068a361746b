/*
 * h1_wire.c: the bytes of HTTP/1.1 as the native client (h1client.c) writes
 * and reads them, with no connection state: the target of a request URL, the
 * request head (sized, then written into room allocated once), and the
 * response head (one forward scan, strict). Split from h1client.c so that the
 * client is about connections, pooling, deadlines and body framing.
 */
#include "http/h1_wire.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "http/upstream_int.h" /* the response header caps, shared with the curl path */

#define H1_MAX_HOSTNAME 64

/* The blank line ending a head: memchr to each CR, then the three bytes after it (cheaper than memmem). */
const char *sl_h1_find_head_end(const char *p, size_t n)
{
    const char *end = p + n;
    while (n >= 4 && (p = memchr(p, '\r', (size_t)(end - p) - 3))) {
        if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') return p;
        p++;
        if ((size_t)(end - p) < 4) break;
    }
    return NULL;
}

/* "HTTP/1.x SSS[ reason]", l holding only field-value bytes */
static int parse_status_line(sl_str l, int *status, int *minor)
{
    if (l.n < 12 || memcmp(l.p, "HTTP/1.", 7) != 0 || (l.p[7] != '0' && l.p[7] != '1') || l.p[8] != ' ')
        return SL_EPARSE;
    int st = 0;
    for (size_t k = 9; k < 12; k++) {
        if (l.p[k] < '0' || l.p[k] > '9') return SL_EPARSE;
        st = st * 10 + (l.p[k] - '0');
    }
    if (st < 100 || st > 599 || (l.n > 12 && l.p[12] != ' ')) return SL_EPARSE;
    /* the reason's bytes: the caller found the line's end with sl_http_scan_value, so all are field bytes */
    *status = st;
    *minor = l.p[7] - '0';
    return SL_OK;
}

/* CRLF at p[i]: SL_OK, SL_EAGAIN when the bytes end first, SL_EPARSE for anything else. */
static int crlf_at(const char *p, size_t i, size_t n)
{
    if (i == n) return SL_EAGAIN;
    if (p[i] != '\r') return SL_EPARSE;
    if (i + 1 == n) return SL_EAGAIN;
    return p[i + 1] == '\n' ? SL_OK : SL_EPARSE;
}

/*
 * Parses a response head from p[0..n) in one forward scan: SL_OK with its
 * length in *hlen, SL_EAGAIN when the bytes end before the blank line,
 * SL_EPARSE at the first malformed byte (bare CR or LF, controls, obs-fold,
 * space before ':'), SL_ELIMIT past SL_UP_MAX_HEADERS. The status is stored
 * as soon as the status line is complete.
 */
int sl_h1_parse_head(const char *p, size_t n, int *status, int *minor, sl_http_header *hs, size_t *nh, size_t *hlen)
{
    size_t i = sl_http_scan_value(p, 0, n);
    int rc = crlf_at(p, i, n);
    if (rc) return rc;
    if (parse_status_line((sl_str){p, i}, status, minor)) return SL_EPARSE;
    size_t pos = i + 2, count = 0;
    for (;;) {
        if (pos == n) return SL_EAGAIN;
        if (p[pos] == '\r') break; /* the blank line */
        size_t k = sl_http_scan_token(p, pos, n);
        if (k == n) return SL_EAGAIN;
        if (k == pos || p[k] != ':') return SL_EPARSE; /* also obs-fold and space before ':' */
        size_t v = sl_http_scan_value(p, k + 1, n);
        if ((rc = crlf_at(p, v, n))) return rc;
        if (count >= SL_UP_MAX_HEADERS) return SL_ELIMIT;
        hs[count].name = (sl_str){p + pos, k - pos};
        hs[count].value = sl_str_trim((sl_str){p + k + 1, v - k - 1});
        count++;
        pos = v + 2;
    }
    if ((rc = crlf_at(p, pos, n))) return rc;
    *nh = count;
    *hlen = pos + 2;
    return SL_OK;
}

/* Does a comma-separated header value hold this token (case-insensitive)? */
bool sl_h1_has_token(sl_str v, const char *tok)
{
    sl_str t = sl_str_from_cstr(tok);
    while (v.n) {
        const char *comma = memchr(v.p, ',', v.n);
        size_t len = comma ? (size_t)(comma - v.p) : v.n;
        if (sl_str_case_eq(sl_str_trim((sl_str){v.p, len}), t)) return true;
        v.p += comma ? len + 1 : len;
        v.n -= comma ? len + 1 : len;
    }
    return false;
}

/* The last transfer coding of the last Transfer-Encoding header. */
sl_str sl_h1_last_coding(sl_str v)
{
    const char *comma = v.n ? memrchr(v.p, ',', v.n) : NULL;
    if (comma) v = (sl_str){comma + 1, v.n - (size_t)(comma + 1 - v.p)};
    return sl_str_trim(v);
}


static bool clean_bytes(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) return false;
    return true;
}

/* http://host[:port][/path][?query]: host numeric IPv4, [IPv6] or localhost. SL_ENOTFOUND otherwise. */
int sl_h1_parse_url(const char *url, h1_target *t)
{
    size_t n = strlen(url);
    if (n < 8 || strncasecmp(url, "http://", 7) != 0) return SL_ENOTFOUND;
    const char *a = url + 7, *end = url + n, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?' && *ae != '#') ae++;
    size_t alen = (size_t)(ae - a);
    if (!alen || !clean_bytes(a, alen) || memchr(a, '@', alen)) return SL_ENOTFOUND;
    sl_str host, port = SL_STR_NULL;
    bool v6 = a[0] == '[';
    if (v6) {
        const char *rb = memchr(a, ']', alen);
        if (!rb) return SL_ENOTFOUND;
        host = (sl_str){a + 1, (size_t)(rb - a - 1)};
        if (rb + 1 < ae) {
            if (rb[1] != ':') return SL_ENOTFOUND;
            port = (sl_str){rb + 2, (size_t)(ae - rb - 2)};
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        host = (sl_str){a, colon ? (size_t)(colon - a) : alen};
        if (colon) port = (sl_str){colon + 1, (size_t)(ae - colon - 1)};
    }
    uint64_t pn = 80;
    if (port.n && (sl_str_to_u64(port, 65535, &pn) != SL_OK || pn == 0)) return SL_ENOTFOUND;
    char hb[H1_MAX_HOSTNAME];
    if (!host.n || host.n >= sizeof hb) return SL_ENOTFOUND;
    memcpy(hb, host.p, host.n);
    hb[host.n] = '\0';
    memset(&t->addr, 0, sizeof t->addr);
    if (v6) {
        if (uv_ip6_addr(hb, (int)pn, (struct sockaddr_in6 *)&t->addr) != 0) return SL_ENOTFOUND;
    } else {
        struct in_addr ia;
        const char *ip = strcasecmp(hb, "localhost") == 0 ? "127.0.0.1" : hb;
        if (inet_pton(AF_INET, ip, &ia) != 1) return SL_ENOTFOUND; /* a host name: curl resolves it */
        struct sockaddr_in *sin = (struct sockaddr_in *)&t->addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pn);
        sin->sin_addr = ia;
    }
    const char *pe = memchr(ae, '#', (size_t)(end - ae));
    t->path = (sl_str){ae, (size_t)((pe ? pe : end) - ae)};
    if (!clean_bytes(t->path.p, t->path.n)) return SL_ENOTFOUND; /* curl refuses it with its own message */
    t->add_slash = t->path.n == 0 || t->path.p[0] != '/';
    t->authority = (sl_str){a, alen};
    return SL_OK;
}

bool sl_h1_valid_method(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    return n && sl_http_scan_token(m, 0, n) == n;
}

/* CR, LF and NUL would split or cut a request header: a table lookup a byte (every header of every request). */
static const bool header_stop[256] = {['\r'] = true, ['\n'] = true, ['\0'] = true};

/* Some byte of w equal to c (the classic zero-byte test on w ^ c...c). */
static inline uint64_t has_byte(uint64_t w, uint8_t c)
{
    uint64_t x = w ^ (0x0101010101010101ull * c);
    return (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
}

static bool valid_header_bytes(sl_str s)
{
    size_t i = 0;
    for (; s.n - i >= 8; i += 8) { /* 8 bytes a step: every header of every request */
        uint64_t w;
        memcpy(&w, s.p + i, 8);
        if (has_byte(w, '\r') | has_byte(w, '\n') | has_byte(w, 0)) return false;
    }
    for (; i < s.n; i++)
        if (header_stop[(unsigned char)s.p[i]]) return false;
    return true;
}

/* Framing, hop-by-hop and Host are ours; a caller's copy could desync the body or the target. */
static bool skipped_header(sl_str name)
{
    switch (name.n) { /* the length rules out all but one name, cheaply: this runs for every header */
    case 14: return sl_str_case_eq(name, SL_STR("content-length"));
    case 17: return sl_str_case_eq(name, SL_STR("transfer-encoding"));
    case 10: return sl_str_case_eq(name, SL_STR("connection"));
    case 6: return sl_str_case_eq(name, SL_STR("expect"));
    case 4: return sl_str_case_eq(name, SL_STR("host"));
    default: return false;
    }
}


/*
 * The request head in two passes: the first (head_size) checks every header
 * and adds up the exact size, the second (head_write) copies into room
 * allocated once, with the request itself (no capacity check per piece: this
 * runs for every upstream request).
 */
#define PUT_LIT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) += sizeof(lit) - 1)
#define PUT_STR(o, s) ((s).n ? (memcpy((o), (s).p, (s).n), (o) += (s).n) : (o))

static const char ae_line[] = "Accept-Encoding: identity\r\n", accept_line[] = "Accept: */*\r\n";

int sl_h1_head_size(const sl_up_request *r, const h1_target *t, head_plan *hp)
{
    hp->have_ae = hp->have_accept = false;
    hp->mlen = strlen(r->method);
    size_t total = hp->mlen + (t->add_slash ? 2 : 1) + t->path.n + sizeof(" HTTP/1.1\r\nHost: ") - 1 + t->authority.n + 2;
    for (size_t i = 0; i < r->nheaders; i++) {
        const sl_http_header *hd = &r->headers[i];
        if (!hd->name.n || !valid_header_bytes(hd->name) || !valid_header_bytes(hd->value) ||
            memchr(hd->name.p, ':', hd->name.n))
            return SL_EINVAL;
        if (skipped_header(hd->name)) continue;
        hp->have_ae |= hd->name.n == 15 && sl_str_case_eq(hd->name, SL_STR("accept-encoding"));
        hp->have_accept |= hd->name.n == 6 && sl_str_case_eq(hd->name, SL_STR("accept"));
        total += hd->name.n + (hd->value.n ? 2 : 1) + hd->value.n + 2;
    }
    /* What curl would send: bodies pass through as sent, and a default Accept. */
    if (!hp->have_ae) total += sizeof ae_line - 1;
    if (!hp->have_accept) total += sizeof accept_line - 1;
    hp->cl_n = 0;
    hp->with_cl = r->body || r->body_len || strcmp(r->method, "POST") == 0;
    if (hp->with_cl) {
        hp->cl_n = sl_u64_dec(hp->cl, r->body_len);
        total += sizeof("Content-Length: ") - 1 + hp->cl_n + 2;
    }
    total += 2;
    if (total > H1_MAX_REQ_HEAD) return SL_EINVAL;
    hp->total = total;
    return SL_OK;
}

/* Writes exactly hp->total bytes (and a NUL) at o. */
void sl_h1_head_write(char *o, const sl_up_request *r, const h1_target *t, const head_plan *hp)
{
    memcpy(o, r->method, hp->mlen), o += hp->mlen;
    if (t->add_slash) PUT_LIT(o, " /");
    else PUT_LIT(o, " ");
    PUT_STR(o, t->path);
    PUT_LIT(o, " HTTP/1.1\r\nHost: ");
    PUT_STR(o, t->authority);
    PUT_LIT(o, "\r\n");
    for (size_t i = 0; i < r->nheaders; i++) {
        const sl_http_header *hd = &r->headers[i];
        if (skipped_header(hd->name)) continue;
        PUT_STR(o, hd->name);
        if (hd->value.n) PUT_LIT(o, ": ");
        else PUT_LIT(o, ":");
        PUT_STR(o, hd->value);
        PUT_LIT(o, "\r\n");
    }
    if (!hp->have_ae) PUT_LIT(o, ae_line);
    if (!hp->have_accept) PUT_LIT(o, accept_line);
    if (hp->with_cl) {
        PUT_LIT(o, "Content-Length: ");
        memcpy(o, hp->cl, hp->cl_n), o += hp->cl_n;
        PUT_LIT(o, "\r\n");
    }
    PUT_LIT(o, "\r\n");
    *o = '\0';
}
