/*
 * chunked.c: the chunked transfer-coding decoder (RFC 9112 §7.1), declared in
 * parser.h.
 *
 * A byte-driven state machine, so that any split of the input gives the same
 * result: the state after n bytes never depends on how they were delivered.
 * Data bytes are copied in runs (one append per run), everything else is
 * checked byte by byte. Every line is bounded: a size line with its extensions
 * to SL_HTTP_CHUNK_LINE_MAX, the whole trailer section to SL_HTTP_TRAILER_MAX,
 * a size to 16 hex digits (so it cannot overflow), and the body to max_body.
 * Errors are sticky: once framing is broken the connection cannot be resynced.
 */
#include "core/buf.h"
#include "http/parser.h"

#define SL_HTTP_CHUNK_LINE_MAX 4096u /* chunk-size line including extensions */
#define SL_HTTP_TRAILER_MAX 8192u    /* all trailer lines together */
#define SL_HTTP_CHUNK_SIZE_DIGITS 16u

enum {
    CK_SIZE,     /* hex digits of chunk-size */
    CK_SIZE_BWS, /* whitespace after the size, before ';' (BWS) */
    CK_EXT,      /* chunk extensions: skipped up to CR */
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TR_START, /* start of a trailer line or of the final empty line */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF,
    CK_DONE,
    CK_ERR_PARSE,
    CK_ERR_LIMIT,
};

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool is_tchar(char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && memchr(extra, ch, sizeof extra - 1) != NULL);
}

/* field-vchar, SP, HTAB or obs-text: what an extension or a trailer value may hold */
static bool is_text(char ch)
{
    unsigned char u = (unsigned char)ch;
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

void sl_http_chunked_init(sl_http_chunked *c, uint64_t max_body)
{
    memset(c, 0, sizeof *c);
    c->state = CK_SIZE;
    c->max_body = max_body;
}

/* Size line complete up to its digits: check the bound before any byte of data arrives. */
static int end_of_size(sl_http_chunked *c)
{
    if (c->size_digits == 0) return CK_ERR_PARSE;
    if (c->remaining > c->max_body - c->total) return CK_ERR_LIMIT;
    return -1;
}

/* One non-data byte; returns the next state. */
static int step(sl_http_chunked *c, char ch)
{
    switch (c->state) {
    case CK_SIZE: {
        int d = hexval(ch);
        if (d >= 0) {
            if (++c->size_digits > SL_HTTP_CHUNK_SIZE_DIGITS) return CK_ERR_PARSE;
            c->remaining = c->remaining << 4 | (uint64_t)d;
            return CK_SIZE;
        }
        int e = end_of_size(c);
        if (e >= 0) return e;
        if (ch == ' ' || ch == '\t') return CK_SIZE_BWS;
        if (ch == ';') return CK_EXT;
        if (ch == '\r') return CK_SIZE_LF;
        return CK_ERR_PARSE;
    }
    case CK_SIZE_BWS:
        if (ch == ' ' || ch == '\t') return CK_SIZE_BWS;
        return ch == ';' ? CK_EXT : CK_ERR_PARSE; /* whitespace may only precede an extension */
    case CK_EXT:
        if (ch == '\r') return CK_SIZE_LF;
        return is_text(ch) ? CK_EXT : CK_ERR_PARSE;
    case CK_SIZE_LF:
        if (ch != '\n') return CK_ERR_PARSE;
        if (c->remaining == 0) {
            c->line_bytes = 0; /* from here on it counts the trailer section */
            return CK_TR_START;
        }
        return CK_DATA;
    case CK_DATA_CR:
        return ch == '\r' ? CK_DATA_LF : CK_ERR_PARSE;
    case CK_DATA_LF:
        if (ch != '\n') return CK_ERR_PARSE;
        c->line_bytes = 0;
        c->size_digits = 0;
        return CK_SIZE;
    case CK_TR_START:
        if (ch == '\r') return CK_END_LF;
        return is_tchar(ch) ? CK_TR_NAME : CK_ERR_PARSE; /* SP/HT here would be obs-fold */
    case CK_TR_NAME:
        if (ch == ':') return CK_TR_VALUE;
        return is_tchar(ch) ? CK_TR_NAME : CK_ERR_PARSE;
    case CK_TR_VALUE:
        if (ch == '\r') return CK_TR_LF;
        return is_text(ch) ? CK_TR_VALUE : CK_ERR_PARSE;
    case CK_TR_LF:
        return ch == '\n' ? CK_TR_START : CK_ERR_PARSE;
    case CK_END_LF:
        return ch == '\n' ? CK_DONE : CK_ERR_PARSE;
    default:
        return CK_ERR_PARSE;
    }
}

static int sticky(int state) { return state == CK_ERR_LIMIT ? SL_ELIMIT : SL_EPARSE; }

int sl_http_chunked_decode(sl_http_chunked *c, const char *in, size_t n, struct sl_buf *out, size_t *consumed)
{
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        if (c->state == CK_DONE || c->state == CK_ERR_PARSE || c->state == CK_ERR_LIMIT) break;
        if (c->state == CK_DATA) {
            size_t take = (size_t)SL_MIN((uint64_t)(n - i), c->remaining);
            if (out) {
                rc = sl_buf_append(out, in + i, take);
                if (rc) break; /* state untouched: the caller may retry after making room */
            }
            i += take;
            c->remaining -= take;
            c->total += take;
            if (c->remaining == 0) c->state = CK_DATA_CR;
            continue;
        }
        uint32_t cap = c->state >= CK_TR_START ? SL_HTTP_TRAILER_MAX : SL_HTTP_CHUNK_LINE_MAX;
        if (c->state != CK_DATA_CR && c->state != CK_DATA_LF && ++c->line_bytes > cap) {
            c->state = CK_ERR_PARSE;
            break;
        }
        c->state = step(c, in[i]);
        if (c->state == CK_ERR_PARSE || c->state == CK_ERR_LIMIT) break;
        i++;
    }
    if (consumed) *consumed = i;
    if (rc) return rc;
    if (c->state == CK_DONE) return 1;
    if (c->state == CK_ERR_PARSE || c->state == CK_ERR_LIMIT) return sticky(c->state);
    return 0;
}
