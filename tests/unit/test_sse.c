/* test_sse.c: the text/event-stream reader and writer (src/http/sse.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/buf.h"
#include "http/sse.h"

/* Records events as "name|data\n" lines, plus where the data slice pointed. */
typedef struct rec {
    sl_buf log;
    const char *chunk; /* the chunk being fed, to tell zero-copy slices apart */
    size_t chunk_len;
    int zero_copy;     /* events whose data pointed into the chunk */
    int stop_after;    /* return 1 after this many events (0 = never) */
    int count;
} rec;

static int record(void *ud, sl_str event, sl_str data)
{
    rec *r = ud;
    assert_int_equal(sl_buf_append_str(&r->log, event), 0);
    assert_int_equal(sl_buf_append(&r->log, "|", 1), 0);
    assert_int_equal(sl_buf_append_str(&r->log, data), 0);
    assert_int_equal(sl_buf_append(&r->log, "\n", 1), 0);
    if (data.n && data.p >= r->chunk && data.p + data.n <= r->chunk + r->chunk_len) r->zero_copy++;
    r->count++;
    return r->stop_after && r->count >= r->stop_after ? 1 : 0;
}

static void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    sl_buf_init(&r->log, 0);
}

static int feed(sl_sse_parser *p, rec *r, const char *s, size_t n)
{
    r->chunk = s, r->chunk_len = n;
    return sl_sse_feed(p, s, n, record, r);
}

/* Parses s split at the given cut points; returns the final feed result, log in r. */
static int run_split(const char *s, size_t n, size_t max, size_t cut1, size_t cut2, rec *r, int *finish_rc)
{
    sl_sse_parser p;
    sl_sse_init(&p, max);
    rec_init(r);
    int rc = feed(&p, r, s, cut1);
    if (!rc) rc = feed(&p, r, s + cut1, cut2 - cut1);
    if (!rc) rc = feed(&p, r, s + cut2, n - cut2);
    if (finish_rc) *finish_rc = sl_sse_finish(&p);
    sl_sse_free(&p);
    return rc;
}

/* Parses s at every split into two and three pieces and byte by byte: all must agree with `want`. */
static void expect_events(const char *s, size_t max, int want_rc, const char *want, int want_finish)
{
    size_t n = strlen(s);
    rec r;
    int fin;
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b += (n > 64 ? 7 : 1)) {
            int rc = run_split(s, n, max, a, b, &r, &fin);
            assert_int_equal(rc, want_rc);
            if (want_rc == 0) assert_int_equal(fin, want_finish);
            assert_int_equal(r.log.len, strlen(want));
            if (r.log.len) assert_memory_equal(r.log.p, want, r.log.len);
            sl_buf_free(&r.log);
        }
    }
    sl_sse_parser p;
    sl_sse_init(&p, max);
    rec_init(&r);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = feed(&p, &r, s + i, 1);
    assert_int_equal(rc, want_rc);
    assert_int_equal(r.log.len, strlen(want));
    if (r.log.len) assert_memory_equal(r.log.p, want, r.log.len);
    if (want_rc == 0) assert_int_equal(sl_sse_finish(&p), want_finish);
    sl_sse_free(&p);
    sl_buf_free(&r.log);
}

static void test_openai_stream(void **state)
{
    (void)state;
    const char *s = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
                    "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
                    ": keep-alive\n\n"
                    "data: [DONE]\n\n";
    expect_events(s, 1024, 0,
                  "|{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n"
                  "|{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n"
                  "|[DONE]\n",
                  0);
}

static void test_anthropic_stream(void **state)
{
    (void)state;
    const char *s = "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n"
                    "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
                    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\r\n\r\n"
                    "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    expect_events(s, 1024, 0,
                  "message_start|{\"type\":\"message_start\"}\n"
                  "ping|{\"type\": \"ping\"}\n"
                  "content_block_delta|{\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n"
                  "message_stop|{\"type\":\"message_stop\"}\n",
                  0);
}

static void test_line_ends(void **state)
{
    (void)state;
    expect_events("data: a\r\rdata: b\n\ndata: c\r\n\r\ndata: d\r\n\n", 64, 0, "|a\n|b\n|c\n|d\n", 0);
    /* CR CR LF: a CR line end, then a CRLF line end: the event ends at the CRLF */
    expect_events("data: a\r\r\ndata: b\r\r", 64, 0, "|a\n|b\n", 0);
}

static void test_fields(void **state)
{
    (void)state;
    /* multi-line data, one space dropped, no-colon field, comments, unknown fields, name reset */
    expect_events("event: e1\ndata: line1\n: comment\ndata:line2\ndata:  two spaces\ndata\nfoo: bar\n\n"
                  "data: after\n\n",
                  256, 0, "e1|line1\nline2\n two spaces\n\n|after\n", 0);
    /* blocks without data are not dispatched, and do not leak their name */
    expect_events("event: lonely\n\n: only a comment\n\nevent\ndata: x\n\n", 256, 0, "|x\n", 0);
    /* "data:" alone gives an empty data, which is dispatched */
    expect_events("data:\n\n", 64, 0, "|\n", 0);
    expect_events("data\n\n", 64, 0, "|\n", 0);
    /* the last event name wins; a field name is case-sensitive */
    expect_events("event: a\nevent: b\nEvent: c\nDATA: no\ndata: y\n\n", 64, 0, "b|y\n", 0);
    /* a leading BOM is dropped, only once */
    expect_events("\xEF\xBB\xBF" "data: a\n\n\xEF\xBB\xBF" "data: b\n\n", 64, 0, "|a\n", 0);
}

static void test_id_retry(void **state)
{
    (void)state;
    sl_sse_parser p;
    rec r;
    rec_init(&r);
    sl_sse_init(&p, 256);
    assert_int_equal(sl_sse_last_id(&p).n, 0);
    assert_int_equal(p.retry_ms, -1);
    const char *s = "id: 42\nretry: 1500\ndata: a\n\nretry: 12x\nid\ndata: b\n\n";
    assert_int_equal(feed(&p, &r, s, 22), 0); /* up to "data: a" partly */
    assert_true(sl_str_eq_lit(sl_sse_last_id(&p), "42"));
    assert_int_equal(p.retry_ms, 1500);
    assert_int_equal(feed(&p, &r, s + 22, strlen(s) - 22), 0);
    assert_int_equal(p.retry_ms, 1500); /* not all digits: ignored */
    assert_int_equal(sl_sse_last_id(&p).n, 0); /* "id" with no value resets it */
    static const char nul_id[] = "id: a\0b\ndata: c\n\n";
    assert_int_equal(feed(&p, &r, nul_id, sizeof nul_id - 1), 0);
    assert_int_equal(sl_sse_last_id(&p).n, 0); /* an id with NUL is ignored */
    assert_int_equal(sl_sse_finish(&p), 0);
    sl_sse_free(&p);
    sl_buf_free(&r.log);
}

static void test_zero_copy(void **state)
{
    (void)state;
    sl_sse_parser p;
    rec r;
    rec_init(&r);
    sl_sse_init(&p, 256);
    const char *s = "event: x\ndata: whole\n\ndata: sp";
    assert_int_equal(feed(&p, &r, s, strlen(s)), 0);
    assert_int_equal(r.zero_copy, 1);
    /* the rest of the cut event comes later: its data is assembled, not a slice */
    char tail[] = "lit\ndata: two\n\n";
    assert_int_equal(feed(&p, &r, tail, strlen(tail)), 0);
    assert_int_equal(r.zero_copy, 1);
    /* an event whose single line started in the old chunk, even if the next chunk
     * closes it, still comes out right after the old chunk is overwritten */
    char chunk[32];
    memcpy(chunk, "data: abc", 9);
    assert_int_equal(feed(&p, &r, chunk, 9), 0);
    memcpy(chunk, "\n\n", 2);
    memset(chunk + 2, '#', 20);
    assert_int_equal(feed(&p, &r, chunk, 2), 0);
    const char *want = "x|whole\n|split\ntwo\n|abc\n";
    assert_int_equal(r.log.len, strlen(want));
    assert_memory_equal(r.log.p, want, strlen(want));
    /* multi-line data in one chunk is joined in the parser's buffer */
    sl_buf_clear(&r.log);
    r.zero_copy = 0;
    const char *multi = "data: 1\ndata: 2\n\n";
    assert_int_equal(feed(&p, &r, multi, strlen(multi)), 0);
    assert_int_equal(r.zero_copy, 0);
    assert_int_equal(sl_sse_finish(&p), 0);
    sl_sse_free(&p);
    sl_buf_free(&r.log);
}

static void test_limits(void **state)
{
    (void)state;
    /* "data: 0123456789\n\n" is 17 + 1 bytes: 16 content + 1 end, then 0 + 1 */
    const char *s = "data: 0123456789\n\ndata: 0123456789x\n\n";
    expect_events(s, 18, SL_ELIMIT, "|0123456789\n", 0);
    expect_events(s, 19, 0, "|0123456789\n|0123456789x\n", 0);
    /* many short lines add up: the event, not the line, is bounded */
    expect_events("data: a\ndata: b\ndata: c\ndata: d\n\n", 30, SL_ELIMIT, "", 0);
    /* comments between events do not accumulate */
    expect_events(": 123456789\n\n: 123456789\n\n: 123456789\n\ndata: ok\n\n", 14, 0, "|ok\n", 0);
    /* a line that never ends is stopped */
    sl_sse_parser p;
    rec r;
    rec_init(&r);
    sl_sse_init(&p, 100);
    char big[64];
    memset(big, 'a', sizeof big);
    assert_int_equal(feed(&p, &r, big, sizeof big), 0);
    assert_int_equal(feed(&p, &r, big, sizeof big), SL_ELIMIT);
    assert_int_equal(feed(&p, &r, "\n\n", 2), SL_ELIMIT); /* sticky */
    assert_int_equal(sl_sse_finish(&p), SL_ELIMIT);
    sl_sse_free(&p);
    sl_buf_free(&r.log);
}

static void test_stop_and_finish(void **state)
{
    (void)state;
    sl_sse_parser p;
    rec r;
    rec_init(&r);
    r.stop_after = 1;
    sl_sse_init(&p, 256);
    const char *s = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(feed(&p, &r, s, strlen(s)), 1);
    assert_int_equal(r.count, 1);
    assert_int_equal(feed(&p, &r, s, strlen(s)), 1);
    assert_int_equal(r.count, 1);
    sl_sse_free(&p);

    /* truncated streams: the last event is not dispatched and finish says so */
    expect_events("data: 1\n\ndata: [DONE]\n", 64, 0, "|1\n", SL_EPARSE);
    expect_events("data: 1\n\ndata: [DO", 64, 0, "|1\n", SL_EPARSE);
    expect_events("data: 1\n\nevent: x\n", 64, 0, "|1\n", SL_EPARSE);
    /* a clean end, or one with only a comment pending, is fine */
    expect_events("data: 1\n\n: bye", 64, 0, "|1\n", 0);
    expect_events("data: 1\r\n\r\n", 64, 0, "|1\n", 0);
    expect_events("", 64, 0, "", 0);
    sl_buf_free(&r.log);
}

static void test_write(void **state)
{
    (void)state;
    sl_buf out;
    sl_buf_init(&out, 0);
    assert_int_equal(sl_sse_write(&out, SL_STR(""), SL_STR("{\"a\":1}")), 0);
    assert_int_equal(sl_sse_write(&out, SL_STR("message_start"), SL_STR("x\ny\r\nz\rw")), 0);
    assert_int_equal(sl_sse_write(&out, SL_STR("e"), SL_STR("")), 0);
    assert_int_equal(sl_sse_write(&out, SL_STR(""), SL_STR("tail\n")), 0);
    assert_int_equal(sl_sse_write_comment(&out, SL_STR("ping")), 0);
    const char *want = "data: {\"a\":1}\n\n"
                       "event: message_start\ndata: x\ndata: y\ndata: z\ndata: w\n\n"
                       "event: e\ndata:\n\n"
                       "data: tail\ndata:\n\n"
                       ": ping\n\n";
    assert_string_equal(out.p, want);
    /* and a reader gets the events back (CR and CRLF come back as LF) */
    expect_events(out.p, 256, 0, "|{\"a\":1}\nmessage_start|x\ny\nz\nw\ne|\n|tail\n\n", 0);

    size_t len = out.len;
    assert_int_equal(sl_sse_write(&out, SL_STR("a\nb"), SL_STR("x")), SL_EINVAL);
    assert_int_equal(sl_sse_write_comment(&out, SL_STR("a\rb")), SL_EINVAL);
    assert_int_equal(out.len, len);
    sl_buf_free(&out);

    /* all or nothing at the buffer's cap */
    sl_buf_init(&out, 20);
    assert_int_equal(sl_sse_write(&out, SL_STR("ev"), SL_STR("0123456789")), SL_ELIMIT);
    assert_int_equal(out.len, 0);
    assert_int_equal(sl_sse_write(&out, SL_STR(""), SL_STR("0123")), 0);
    assert_string_equal(out.p, "data: 0123\n\n");
    sl_buf_free(&out);
}

/* sl_sse_write_parts / sl_sse_write_line write what sl_sse_write writes for the joined data. */
static void test_write_parts(void **state)
{
    (void)state;
    static const char *const datas[][3] = {
        {"{\"model\":", "\"pub\"", ",\"x\":1}"}, {"", "", ""}, {"a\n", "b", "\r\nc"}, {"a", "\r", ""}, {"x", "", "y"},
    };
    for (size_t i = 0; i < sizeof datas / sizeof datas[0]; i++) {
        sl_str parts[3];
        sl_buf joined, want, got;
        sl_buf_init(&joined, 0);
        sl_buf_init(&want, 0);
        sl_buf_init(&got, 0);
        for (size_t k = 0; k < 3; k++) {
            parts[k] = sl_str_from_cstr(datas[i][k]);
            assert_int_equal(sl_buf_append_str(&joined, parts[k]), 0);
        }
        assert_int_equal(sl_sse_write(&want, SL_STR("ev"), sl_buf_str(&joined)), 0);
        assert_int_equal(sl_sse_write_parts(&got, SL_STR("ev"), parts, 3), 0);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.p, want.p, want.len);
        if (!memchr(joined.p ? joined.p : "", '\n', joined.len) && !memchr(joined.p ? joined.p : "", '\r', joined.len)) {
            sl_buf_clear(&got);
            assert_int_equal(sl_sse_write_line(&got, SL_STR("ev"), parts, 3), 0);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(got.p, want.p, want.len);
        }
        sl_buf_free(&joined);
        sl_buf_free(&want);
        sl_buf_free(&got);
    }
    sl_buf out;
    sl_buf_init(&out, 16); /* all or nothing at the cap */
    sl_str two[2] = {SL_STR("0123"), SL_STR("456789")};
    assert_int_equal(sl_sse_write_line(&out, SL_STR(""), two, 2), SL_ELIMIT);
    assert_int_equal(out.len, 0);
    assert_int_equal(sl_sse_write_parts(&out, SL_STR("a\n"), two, 2), SL_EINVAL);
    sl_buf_free(&out);
}

/* On a CR-only stream the line search must not rescan the chunk for an LF per line (it finds them all). */
static void test_cr_only_lines(void **state)
{
    (void)state;
    expect_events("data: a\r\rdata: b\r\rdata: c\r\r", 64, 0, "|a\n|b\n|c\n", 0);
}

static void test_enomem(void **state)
{
    (void)state;
    sl_sse_parser p;
    rec r;
    rec_init(&r);
    sl_sse_init(&p, 256);
    sl_alloc_fail_after(1);
    int rc = feed(&p, &r, "data: cut", 9); /* must copy: allocation fails */
    sl_alloc_fail_after(0);
    assert_int_equal(rc, SL_ENOMEM);
    assert_int_equal(sl_sse_finish(&p), SL_ENOMEM);
    sl_sse_free(&p);
    sl_buf_free(&r.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_id_retry),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stop_and_finish),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_write_parts),
        cmocka_unit_test(test_cr_only_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
