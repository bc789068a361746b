/*
 * sse.h: the text/event-stream codec (WHATWG HTML §9.2 "server-sent events"),
 * used to read providers' streaming responses and to write ours.
 *
 * The reader is push-based and handles any split of the stream: bytes go in as
 * they arrive from the upstream, and on_event() is called once per complete
 * event (a blank line ends an event). Fields: "event:" sets the event name,
 * "data:" lines are joined with "\n", "id:" sets the last event ID (kept across
 * events, read it with sl_sse_last_id()), "retry:" sets retry_ms; lines starting
 * with ':' are comments; one space after the colon is dropped; a line without a
 * colon is a field with an empty value; unknown fields are ignored; CRLF, LF and
 * CR line ends are all accepted; one leading UTF-8 BOM is dropped. As in the
 * spec, a block without any data line (e.g. only comments or "event:") is not
 * dispatched.
 *
 * The event name passed to on_event is empty when the event had no "event:"
 * field (the spec's default type "message"); callers decide what that means.
 *
 * Zero-copy: when an event lies entirely in one fed chunk and has a single data
 * line, the slices point into the caller's chunk; otherwise they point into the
 * parser's own buffers. Either way they are valid only during the callback.
 *
 * Bounds: an event's raw size (its lines, each line end counted as one byte)
 * may not exceed max_event_bytes, so memory per stream is a small multiple of
 * it whatever the upstream sends.
 *
 * Errors are sticky: after sl_sse_feed() returns nonzero (SL_ELIMIT, SL_ENOMEM
 * or the callback's own nonzero value, which means "stop"), every later call
 * returns the same value; the rest of that chunk was not parsed.
 */
#ifndef SL_HTTP_SSE_H
#define SL_HTTP_SSE_H

#include "core/buf.h"
#include "core/sl.h"

/* Called per event; return 0 to go on, nonzero to stop (sl_sse_feed returns it). */
typedef int (*sl_sse_event_cb)(void *ud, sl_str event, sl_str data);

typedef struct sl_sse_parser {
    size_t max_event_bytes;
    size_t event_bytes;  /* raw bytes of the current event so far */
    sl_buf line;         /* a line cut by the end of a chunk, completed by the next */
    sl_buf data;         /* joined data when it is not a slice of the input */
    sl_buf event;        /* event name when it is not a slice of the input */
    sl_buf id;           /* last event ID buffer */
    sl_str data_ref;     /* zero-copy data (one line, in the chunk being fed) */
    sl_str event_ref;    /* zero-copy event name */
    size_t ndata;        /* data lines in the current event */
    bool data_owned;     /* data is in p->data, not data_ref */
    bool event_owned;    /* event name is in p->event, not event_ref */
    bool cr_pending;     /* the last chunk ended with CR: a leading LF belongs to it */
    bool started;        /* past the first line (where a BOM may be) */
    bool fields_pending; /* a field line was seen since the last blank line */
    int err;             /* sticky result after an error or a stop */
    int64_t retry_ms;    /* last valid "retry:" value; -1 if none */
} sl_sse_parser;

void sl_sse_init(sl_sse_parser *p, size_t max_event_bytes);

/* Inside on_event: the data came from one "data:" line, so it holds no CR or LF (nor does the event name). */
static inline bool sl_sse_data_is_one_line(const sl_sse_parser *p) { return p->ndata == 1; }

/*
 * Feeds bytes. Returns 0, SL_ELIMIT if an event exceeds max_event_bytes,
 * SL_ENOMEM, or the callback's nonzero return (stop). Events completed before
 * the failure point have been dispatched.
 */
int sl_sse_feed(sl_sse_parser *p, const char *buf, size_t n, sl_sse_event_cb on_event, void *ud);

/*
 * End of stream. Following the spec, an event not closed by a blank line is
 * NOT dispatched; then this returns SL_EPARSE so that the caller can report a
 * truncated stream. Returns 0 when the stream ended cleanly (nothing pending
 * but perhaps an unterminated comment), or the sticky error.
 */
int sl_sse_finish(sl_sse_parser *p);

/* Last event ID buffer (persists across events; empty if none was sent). */
sl_str sl_sse_last_id(const sl_sse_parser *p);

void sl_sse_free(sl_sse_parser *p);

/*
 * Writer: appends "event: X\n" (when X is non-empty), one "data: ...\n" per
 * line of data (split at CRLF, LF or CR; so CR and CRLF come out as "\n" to a
 * reader) and the closing "\n". An empty data gives one empty "data:" line, so
 * the event is still dispatched by readers. Returns 0, SL_EINVAL when the
 * event name holds CR or LF, or the sl_buf error; on error out is unchanged.
 */
int sl_sse_write(sl_buf *out, sl_str event, sl_str data);

/*
 * As sl_sse_write, with the data given as pieces written one after another
 * (e.g. a chunk with its model name replaced, written without joining it
 * first). Same output as sl_sse_write of the concatenation.
 */
int sl_sse_write_parts(sl_buf *out, sl_str event, const sl_str *parts, size_t nparts);

/*
 * As sl_sse_write_parts for a caller that knows that neither event nor parts
 * hold CR or LF (an event just read, see sl_sse_data_is_one_line): the check
 * for line ends, two scans of the data, is skipped.
 */
int sl_sse_write_line(sl_buf *out, sl_str event, const sl_str *parts, size_t nparts);

/* Appends a comment line block (": text\n\n"), e.g. as a keep-alive; text must not hold CR or LF. */
int sl_sse_write_comment(sl_buf *out, sl_str text);

#endif
