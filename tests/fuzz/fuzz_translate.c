// fuzz-sources: src/protocols/translate.c src/protocols/openai.c src/protocols/anthropic.c src/protocols/gemini.c src/protocols/xlat_util.c src/json/json_read.c src/json/json_access.c src/json/json_write.c src/json/json_splice.c src/core/sl.c src/core/arena.c src/core/buf.c
/*
 * fuzz_translate.c: protocol translation on hostile input.
 *
 * The first byte picks the pair (from, to) and what the rest is: a request
 * body, a response body, or a stream (one event per line, "name|data" or
 * just data). Whatever comes in, a successful request or response
 * translation must be valid JSON, and streams must not crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>

#include "protocols/translate.h"

static void must_parse(const sl_buf *b)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 0);
    sl_json_doc d;
    if (b->len && sl_json_parse(&d, b->p, b->len, &a, NULL, NULL) != 0) abort();
    sl_arena_free(&a);
}

static void fuzz_stream(sl_proto from, sl_proto to, const char *p, size_t n)
{
    sl_xlat_resp_opts o = {.public_model = SL_STR("m"), .id = SL_STR("r"), .created = 1};
    sl_xlat_stream *s = sl_xlat_stream_new(from, to, &o, n & 1);
    if (!s) return;
    sl_buf out;
    sl_buf_init(&out, 1 << 20);
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *bar = memchr(p, '|', len);
        sl_str ev = bar ? (sl_str){p, (size_t)(bar - p)} : SL_STR_NULL;
        sl_str data = bar ? (sl_str){bar + 1, len - (size_t)(bar - p) - 1} : (sl_str){p, len};
        if (sl_xlat_stream_event(s, ev, data, &out) == SL_EPARSE) sl_xlat_stream_error(s, 502, SL_STR("bad"), &out);
        p += len + (nl ? 1 : 0);
    }
    sl_xlat_stream_end(s, &out);
    sl_buf_free(&out);
    sl_xlat_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20)) return 0;
    sl_proto from = (sl_proto)(data[0] % 3), to = (sl_proto)((data[0] / 3) % 3);
    int kind = (data[0] / 9) % 3;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    sl_arena a;
    sl_arena_init(&a, 4096, 0);
    sl_buf out;
    sl_buf_init(&out, 8 << 20);
    if (kind == 0) {
        sl_json_doc d;
        if (sl_json_parse(&d, p, n, &a, NULL, NULL) == 0) {
            sl_xlat_req_opts o = {.upstream_model = SL_STR("m"), .stream = n & 1, .id_prefix = SL_STR("x")};
            const char *err;
            if (sl_xlat_request(from, to, &d, &o, &a, &out, NULL, &err) == 0) must_parse(&out);
        }
    } else if (kind == 1) {
        sl_xlat_resp_opts o = {.public_model = SL_STR("m"), .id = SL_STR("r"), .created = 1};
        sl_usage u;
        sl_finish f;
        if (sl_xlat_response(from, to, p, n, &o, &a, &out, &u, &f) == 0 && from != to) must_parse(&out);
    } else {
        fuzz_stream(from, to, p, n);
    }
    sl_buf_free(&out);
    sl_arena_free(&a);
    return 0;
}
