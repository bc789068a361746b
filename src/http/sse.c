/*
 * sse.c: the text/event-stream reader and writer (see sse.h).
 *
 * The reader works a line at a time. A line that lies wholly in the chunk
 * being fed is parsed in place, and its field values are kept as slices of the
 * chunk; only when the chunk ends with an event still open are those slices
 * copied into the parser's buffers ("materialised"), so the common case (an
 * OpenAI or Anthropic event arriving in one read) copies nothing. A line cut by
 * the end of a chunk is assembled in p->line and its values copied at once.
 *
 * The size bound counts each line's content plus one byte per line end (CRLF
 * too), so the result never depends on where the input was split.
 *
 * The writer's usual case is data on one line: its size is known, so it is
 * written with one reservation and plain copies (sl_sse_write_line skips even
 * the line-end check when the caller knows, e.g. an event just read).
 */
#include "http/sse.h"

#define SL_SSE_RETRY_MAX 86400000ll /* a day in ms: anything larger is not a real retry hint */

static void reset_event(sl_sse_parser *p)
{
    p->ndata = 0;
    p->data_owned = p->event_owned = false;
    p->data_ref = p->event_ref = SL_STR("");
    sl_buf_clear(&p->data);
    sl_buf_clear(&p->event);
    p->event_bytes = 0;
    p->fields_pending = false;
}

void sl_sse_init(sl_sse_parser *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof *p);
    p->max_event_bytes = max_event_bytes;
    sl_buf_init(&p->line, max_event_bytes);
    sl_buf_init(&p->data, max_event_bytes);
    sl_buf_init(&p->event, max_event_bytes);
    sl_buf_init(&p->id, max_event_bytes);
    p->retry_ms = -1;
    reset_event(p);
}

void sl_sse_free(sl_sse_parser *p)
{
    sl_buf_free(&p->line);
    sl_buf_free(&p->data);
    sl_buf_free(&p->event);
    sl_buf_free(&p->id);
}

static sl_str owned(const sl_buf *b) { return b->p ? sl_buf_str(b) : SL_STR(""); }

sl_str sl_sse_last_id(const sl_sse_parser *p) { return owned(&p->id); }

static int dispatch(sl_sse_parser *p, sl_sse_event_cb on_event, void *ud)
{
    int rc = 0;
    if (p->ndata && on_event) {
        sl_str data = p->data_owned ? owned(&p->data) : p->data_ref;
        sl_str event = p->event_owned ? owned(&p->event) : p->event_ref;
        rc = on_event(ud, event, data);
    }
    reset_event(p);
    return rc;
}

static int copy_to(sl_buf *b, sl_str s)
{
    sl_buf_clear(b);
    return sl_buf_append_str(b, s);
}

static int on_data(sl_sse_parser *p, sl_str v, bool stable)
{
    if (p->ndata == 0 && stable) {
        p->data_ref = v;
        p->data_owned = false;
        p->ndata = 1;
        return SL_OK;
    }
    int rc = SL_OK;
    if (p->ndata == 0) sl_buf_clear(&p->data);
    else if (!p->data_owned) rc = copy_to(&p->data, p->data_ref);
    if (!rc && p->ndata) rc = sl_buf_append(&p->data, "\n", 1);
    if (!rc) rc = sl_buf_append_str(&p->data, v);
    if (rc) return rc;
    p->data_owned = true;
    p->ndata++;
    return SL_OK;
}

static int on_event_name(sl_sse_parser *p, sl_str v, bool stable)
{
    if (stable) {
        p->event_ref = v;
        p->event_owned = false;
        return SL_OK;
    }
    p->event_owned = true;
    return copy_to(&p->event, v);
}

static void on_retry(sl_sse_parser *p, sl_str v)
{
    if (v.n == 0) return;
    int64_t ms = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return; /* spec: ignore unless all ASCII digits */
        ms = ms * 10 + (v.p[i] - '0');
        if (ms > SL_SSE_RETRY_MAX) return;
    }
    p->retry_ms = ms;
}

/* One complete line (without its line end). stable: s lies in the caller's chunk. */
static int process_line(sl_sse_parser *p, sl_str s, bool stable, sl_sse_event_cb on_event, void *ud)
{
    if (s.n + 1 > p->max_event_bytes - p->event_bytes) return SL_ELIMIT;
    p->event_bytes += s.n + 1;
    if (!p->started) {
        p->started = true;
        if (s.n >= 3 && memcmp(s.p, "\xEF\xBB\xBF", 3) == 0) s.p += 3, s.n -= 3;
    }
    if (s.n == 0) return dispatch(p, on_event, ud);
    if (s.p[0] == ':') return SL_OK; /* comment */
    p->fields_pending = true;
    const char *colon = memchr(s.p, ':', s.n);
    sl_str field = colon ? (sl_str){s.p, (size_t)(colon - s.p)} : s;
    sl_str value = colon ? (sl_str){colon + 1, s.n - field.n - 1} : (sl_str){s.p + s.n, 0};
    if (value.n && value.p[0] == ' ') value.p++, value.n--;
    switch (field.n) {
    case 2:
        if (sl_str_eq_lit(field, "id") && !memchr(value.p, '\0', value.n)) return copy_to(&p->id, value);
        return SL_OK;
    case 4:
        return sl_str_eq_lit(field, "data") ? on_data(p, value, stable) : SL_OK;
    case 5:
        if (sl_str_eq_lit(field, "event")) return on_event_name(p, value, stable);
        if (sl_str_eq_lit(field, "retry")) on_retry(p, value);
        return SL_OK;
    default:
        return SL_OK; /* unknown fields are ignored */
    }
}

/* Keeps the start of a line that the chunk cut off; counts a line end to come. */
static int keep_partial(sl_sse_parser *p, const char *s, size_t n)
{
    if (p->line.len + n + 1 > p->max_event_bytes - p->event_bytes) return SL_ELIMIT;
    return sl_buf_append(&p->line, s, n);
}

/* Before returning to the caller: nothing may point into its chunk any more. */
static int materialise(sl_sse_parser *p)
{
    if (p->ndata && !p->data_owned) {
        int rc = copy_to(&p->data, p->data_ref);
        if (rc) return rc;
        p->data_owned = true;
    }
    if (!p->event_owned && p->event_ref.n) {
        int rc = copy_to(&p->event, p->event_ref);
        if (rc) return rc;
        p->event_owned = true;
    }
    p->event_ref = p->data_ref = SL_STR("");
    return SL_OK;
}

/*
 * The first CR or LF at or after i (n if none). Streams use LF: one memchr
 * (vectorised) finds it, and a second memchr over the line only checks that no
 * CR comes earlier; a byte loop here was the parser's main cost. *lf caches
 * the next LF at or after i (SIZE_MAX: not looked for yet), so that a CR-only
 * stream does not search the rest of the chunk again for every line.
 */
static size_t find_eol(const char *buf, size_t i, size_t n, size_t *lf)
{
    if (i >= n) return n;
    if (*lf == SIZE_MAX || *lf < i) {
        const char *q = memchr(buf + i, '\n', n - i);
        *lf = q ? (size_t)(q - buf) : n;
    }
    size_t j = *lf;
    const char *cr = j > i ? memchr(buf + i, '\r', j - i) : NULL;
    return cr ? (size_t)(cr - buf) : j;
}

int sl_sse_feed(sl_sse_parser *p, const char *buf, size_t n, sl_sse_event_cb on_event, void *ud)
{
    if (p->err) return p->err;
    size_t i = 0;
    int rc = SL_OK;
    if (p->cr_pending && n) {
        p->cr_pending = false;
        if (buf[0] == '\n') i = 1; /* the LF of a CRLF split across chunks */
    }
    size_t lf = SIZE_MAX;
    while (i < n && !rc) {
        size_t j = find_eol(buf, i, n, &lf);
        if (j == n) {
            rc = keep_partial(p, buf + i, n - i);
            break;
        }
        size_t next = j + 1;
        if (buf[j] == '\r') {
            if (next < n && buf[next] == '\n') next++;
            else if (next == n) p->cr_pending = true;
        }
        if (p->line.len) {
            rc = keep_partial(p, buf + i, j - i);
            if (!rc) rc = process_line(p, sl_buf_str(&p->line), false, on_event, ud);
            sl_buf_clear(&p->line);
        } else {
            rc = process_line(p, (sl_str){buf + i, j - i}, true, on_event, ud);
        }
        i = next;
    }
    if (!rc) rc = materialise(p);
    if (rc) p->err = rc;
    return rc;
}

int sl_sse_finish(sl_sse_parser *p)
{
    if (p->err) return p->err;
    sl_str s = sl_buf_str(&p->line);
    if (!p->started && s.n >= 3 && memcmp(s.p, "\xEF\xBB\xBF", 3) == 0) s.p += 3, s.n -= 3;
    bool truncated = p->fields_pending || (s.n > 0 && s.p[0] != ':');
    sl_buf_clear(&p->line);
    reset_event(p);
    return truncated ? SL_EPARSE : SL_OK;
}

/* ---- writer ---- */

static bool has_line_end(sl_str s) { return s.n && (memchr(s.p, '\n', s.n) || memchr(s.p, '\r', s.n)); }

static int write_data_lines(sl_buf *out, sl_str data)
{
    size_t i = 0, lf = SIZE_MAX;
    for (;;) {
        size_t j = find_eol(data.p, i, data.n, &lf);
        int rc = sl_buf_append(out, j > i ? "data: " : "data:", j > i ? 6 : 5);
        if (!rc) rc = sl_buf_append(out, data.p + i, j - i);
        if (!rc) rc = sl_buf_append(out, "\n", 1);
        if (rc) return rc;
        if (j == data.n) return SL_OK;
        i = j + 1;
        if (data.p[j] == '\r' && i < data.n && data.p[i] == '\n') i++;
    }
}

/* The general case: data with line ends becomes several data lines. */
static int write_split(sl_buf *out, sl_str event, sl_str data)
{
    int rc = SL_OK;
    if (event.n) {
        rc = sl_buf_append(out, "event: ", 7);
        if (!rc) rc = sl_buf_append_str(out, event);
        if (!rc) rc = sl_buf_append(out, "\n", 1);
    }
    if (!rc) rc = write_data_lines(out, data);
    if (!rc) rc = sl_buf_append(out, "\n", 1);
    return rc;
}

static inline char *put(char *o, const char *s, size_t n)
{
    if (n) memcpy(o, s, n);
    return o + n;
}

/* The usual case, data on one line: the event's size is known, so one reservation and plain copies. */
static int write_one_line(sl_buf *out, sl_str event, const sl_str *parts, size_t nparts, size_t total)
{
    size_t need = (event.n ? event.n + 8 : 0) + (total ? 6 : 5) + total + 2;
    if (need < total) return SL_ELIMIT;
    int rc = sl_buf_reserve(out, need);
    if (rc) return rc;
    char *o = out->p + out->len;
    if (event.n) {
        o = put(o, "event: ", 7);
        o = put(o, event.p, event.n);
        *o++ = '\n';
    }
    o = put(o, "data: ", total ? 6 : 5);
    for (size_t i = 0; i < nparts; i++) o = put(o, parts[i].p, parts[i].n);
    o = put(o, "\n\n", 2);
    out->len = (size_t)(o - out->p);
    return SL_OK;
}

int sl_sse_write_parts(sl_buf *out, sl_str event, const sl_str *parts, size_t nparts)
{
    if (has_line_end(event)) return SL_EINVAL;
    size_t mark = out->len, total = 0;
    bool lines = false;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].n > SIZE_MAX / 2 - total) return SL_ELIMIT;
        total += parts[i].n;
        lines = lines || has_line_end(parts[i]);
    }
    int rc;
    if (!lines) {
        rc = write_one_line(out, event, parts, nparts, total);
    } else if (nparts == 1) {
        rc = write_split(out, event, parts[0]);
    } else { /* rare: a multi-line document being edited; join it first */
        sl_buf joined;
        sl_buf_init(&joined, 0);
        rc = SL_OK;
        for (size_t i = 0; i < nparts && !rc; i++) rc = sl_buf_append_str(&joined, parts[i]);
        if (!rc) rc = write_split(out, event, sl_buf_str(&joined));
        sl_buf_free(&joined);
    }
    if (rc) out->len = mark; /* all or nothing: a half event would corrupt the stream */
    if (out->p) out->p[out->len] = '\0';
    return rc;
}

int sl_sse_write_line(sl_buf *out, sl_str event, const sl_str *parts, size_t nparts)
{
    size_t total = 0;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].n > SIZE_MAX / 2 - total) return SL_ELIMIT;
        total += parts[i].n;
    }
    size_t mark = out->len;
    int rc = write_one_line(out, event, parts, nparts, total);
    if (rc) out->len = mark;
    if (out->p) out->p[out->len] = '\0';
    return rc;
}

int sl_sse_write(sl_buf *out, sl_str event, sl_str data) { return sl_sse_write_parts(out, event, &data, 1); }

int sl_sse_write_comment(sl_buf *out, sl_str text)
{
    if (has_line_end(text)) return SL_EINVAL;
    size_t mark = out->len;
    int rc = sl_buf_append(out, ": ", 2);
    if (!rc) rc = sl_buf_append_str(out, text);
    if (!rc) rc = sl_buf_append(out, "\n\n", 2);
    if (rc) out->len = mark;
    if (out->p) out->p[out->len] = '\0';
    return rc;
}
