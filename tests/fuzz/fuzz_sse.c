// fuzz-sources: src/http/sse.c src/core/buf.c src/core/sl.c
/*
 * fuzz_sse.c: the text/event-stream reader and writer on arbitrary bytes.
 *
 * Input layout: byte 0 picks a split point, byte 1 the event size limit; the
 * rest is the stream. Checks: the stream gives the same events and results
 * whole, split in two at the chosen point, and byte by byte; and every event
 * read, written back with sl_sse_write() and read again, comes out the same.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "http/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Events serialised as length-prefixed name and data, so logs compare exactly. */
static int record(void *ud, sl_str event, sl_str data)
{
    sl_buf *log = ud;
    uint64_t lens[2] = {event.n, data.n};
    if (sl_buf_append(log, lens, sizeof lens) || sl_buf_append_str(log, event) || sl_buf_append_str(log, data)) abort();
    return 0;
}

typedef struct outcome {
    int feed_rc, finish_rc;
    sl_buf log;
} outcome;

static outcome run(const char *buf, size_t len, size_t max, size_t split, size_t step)
{
    outcome o = {0};
    sl_buf_init(&o.log, 0);
    sl_sse_parser p;
    sl_sse_init(&p, max);
    if (step) {
        for (size_t i = 0; i < len && !o.feed_rc; i += step)
            o.feed_rc = sl_sse_feed(&p, buf + i, SL_MIN(step, len - i), record, &o.log);
    } else {
        o.feed_rc = sl_sse_feed(&p, buf, split, record, &o.log);
        if (!o.feed_rc) o.feed_rc = sl_sse_feed(&p, buf + split, len - split, record, &o.log);
    }
    o.finish_rc = sl_sse_finish(&p);
    sl_sse_free(&p);
    return o;
}

static bool same(const outcome *a, const outcome *b)
{
    return a->feed_rc == b->feed_rc && a->finish_rc == b->finish_rc && a->log.len == b->log.len &&
           (a->log.len == 0 || memcmp(a->log.p, b->log.p, a->log.len) == 0);
}

/* Writes every recorded event back out and reads it again: the log must match. */
static void round_trip(const sl_buf *log)
{
    sl_buf out;
    sl_buf_init(&out, 0);
    size_t off = 0;
    while (off < log->len) {
        uint64_t lens[2];
        memcpy(lens, log->p + off, sizeof lens);
        off += sizeof lens;
        sl_str event = {log->p + off, lens[0]};
        sl_str data = {log->p + off + lens[0], lens[1]};
        off += lens[0] + lens[1];
        if (sl_sse_write(&out, event, data)) abort();
    }
    sl_buf again;
    sl_buf_init(&again, 0);
    sl_sse_parser p;
    sl_sse_init(&p, out.len + 1);
    if (sl_sse_feed(&p, out.p ? out.p : "", out.len, record, &again)) abort();
    if (sl_sse_finish(&p)) abort();
    if (again.len != log->len || (log->len && memcmp(again.p, log->p, log->len))) abort();
    sl_sse_free(&p);
    sl_buf_free(&again);
    sl_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    const char *buf = (const char *)data + 2;
    size_t len = size - 2;
    size_t split = len * data[0] / 255;
    size_t max = data[1] < 128 ? 1u + data[1] : 65536;
    outcome whole = run(buf, len, max, len, 0);
    outcome two = run(buf, len, max, split, 0);
    if (!same(&whole, &two)) abort();
    if (len <= 2048) {
        outcome bytes = run(buf, len, max, 0, 1);
        if (!same(&whole, &bytes)) abort();
        sl_buf_free(&bytes.log);
    }
    round_trip(&whole.log);
    sl_buf_free(&whole.log);
    sl_buf_free(&two.log);
    return 0;
}
