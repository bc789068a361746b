/*
 * test_translate.c: protocol translation (src/protocols). Fixtures are
 * recorded-style bodies and event sequences of each protocol; outputs are
 * parsed back with the JSON reader and checked field by field, except SSE
 * framing, which is compared exactly where the wire format matters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "protocols/translate.h"

static sl_arena A;
static sl_buf OUT;

static int setup(void **state)
{
    (void)state;
    sl_arena_init(&A, 4096, 0);
    sl_buf_init(&OUT, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_arena_free(&A);
    sl_buf_free(&OUT);
    sl_alloc_fail_after(0);
    return 0;
}

/* ---- helpers ---- */

static sl_json_doc *parse(const char *s, size_t n)
{
    sl_json_doc *d = sl_arena_alloc(&A, sizeof *d);
    assert_non_null(d);
    size_t off = 0;
    int rc = sl_json_parse(d, s, n, &A, NULL, &off);
    if (rc) fprintf(stderr, "parse failed at %zu: %.*s\n", off, (int)n, s);
    assert_int_equal(rc, 0);
    return d;
}

static sl_json_doc *parse_c(const char *s) { return parse(s, strlen(s)); }

/* Token at a dotted path ("choices.0.message.content"); -1 when absent. */
static int J(const sl_json_doc *d, const char *path)
{
    int t = 0;
    while (*path && t >= 0) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        char seg[64];
        assert_true(n < sizeof seg);
        memcpy(seg, path, n);
        seg[n] = '\0';
        if (sl_json_type_of(d, t) == SL_JSON_ARRAY) {
            t = sl_json_arr_get(d, t, (uint32_t)strtoul(seg, NULL, 10));
        } else if (sl_json_type_of(d, t) == SL_JSON_OBJECT) {
            t = sl_json_obj_get(d, t, seg);
        } else {
            t = -1;
        }
        path += n + (dot ? 1 : 0);
    }
    return t;
}

static void check_str(const sl_json_doc *d, const char *path, const char *want)
{
    int t = J(d, path);
    if (t < 0 || sl_json_type_of(d, t) != SL_JSON_STRING) fail_msg("%s: not a string (want \"%s\")", path, want);
    sl_str s;
    assert_int_equal(sl_json_str(d, t, &A, &s), 0);
    if (!sl_str_eq_lit(s, want)) fail_msg("%s: got \"%.*s\", want \"%s\"", path, SL_STR_FMT(s), want);
}

static void check_int(const sl_json_doc *d, const char *path, int64_t want)
{
    int t = J(d, path);
    int64_t v = -12345;
    if (t < 0 || sl_json_int(d, t, &v) != 0) fail_msg("%s: not an integer", path);
    if (v != want) fail_msg("%s: got %lld, want %lld", path, (long long)v, (long long)want);
}

static void check_num(const sl_json_doc *d, const char *path, double want)
{
    int t = J(d, path);
    double v = -1;
    if (t < 0 || sl_json_double(d, t, &v) != 0) fail_msg("%s: not a number", path);
    if (v != want) fail_msg("%s: got %g, want %g", path, v, want);
}

static void check_type(const sl_json_doc *d, const char *path, sl_json_type ty)
{
    int t = J(d, path);
    if (t < 0 || sl_json_type_of(d, t) != ty) fail_msg("%s: wrong type or absent", path);
}

static void check_absent(const sl_json_doc *d, const char *path)
{
    if (J(d, path) >= 0) fail_msg("%s: should be absent", path);
}

static void check_count(const sl_json_doc *d, const char *path, uint32_t n)
{
    int t = J(d, path);
    if (t < 0) fail_msg("%s: absent", path);
    if (d->toks[t].count != n) fail_msg("%s: %u members/elements, want %u", path, d->toks[t].count, n);
}

/* A JSON value given as a string (OpenAI arguments) must parse and have the field. */
static sl_json_doc *inner(const sl_json_doc *d, const char *path)
{
    int t = J(d, path);
    sl_str s;
    assert_true(t >= 0);
    assert_int_equal(sl_json_str(d, t, &A, &s), 0);
    return parse(s.p, s.n);
}

static sl_json_doc *xreq(sl_proto from, sl_proto to, const char *body, const sl_xlat_req_opts *o,
                         sl_xlat_req_info *info)
{
    sl_json_doc *in = parse_c(body);
    const char *err = NULL;
    sl_buf_clear(&OUT);
    int rc = sl_xlat_request(from, to, in, o, &A, &OUT, info, &err);
    if (rc) fail_msg("translate failed: %d %s", rc, err ? err : "");
    char *copy = sl_arena_strndup(&A, OUT.p, OUT.len);
    return parse(copy, OUT.len);
}

static sl_json_doc *xresp(sl_proto from, sl_proto to, const char *body, sl_usage *u, sl_finish *f)
{
    sl_xlat_resp_opts o = {.public_model = SL_STR("pub-model"), .id = SL_STR("req1"), .created = 1700000000};
    sl_buf_clear(&OUT);
    int rc = sl_xlat_response(from, to, body, strlen(body), &o, &A, &OUT, u, f);
    if (rc) fail_msg("response translate failed: %d", rc);
    char *copy = sl_arena_strndup(&A, OUT.p, OUT.len);
    return parse(copy, OUT.len);
}

/* ---- SSE output splitting ---- */

typedef struct ev {
    char name[32];
    const char *data;
    size_t n;
    sl_json_doc *doc; /* NULL for [DONE] */
} ev;

#define MAXEV 64

/* Splits out into events, checking the framing: optional "event: X\n", one "data: ...\n", then "\n". */
static int split(const sl_buf *b, ev *evs)
{
    int n = 0;
    const char *p = b->p, *end = b->p + b->len;
    while (p < end) {
        assert_true(n < MAXEV);
        ev *e = &evs[n++];
        memset(e, 0, sizeof *e);
        if (strncmp(p, "event: ", 7) == 0) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            assert_non_null(nl);
            size_t k = (size_t)(nl - p - 7);
            assert_true(k < sizeof e->name);
            memcpy(e->name, p + 7, k);
            p = nl + 1;
        }
        assert_int_equal(strncmp(p, "data: ", 6), 0);
        p += 6;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        e->data = p;
        e->n = (size_t)(nl - p);
        assert_true(nl + 1 < end && nl[1] == '\n');
        p = nl + 2;
        char *copy = sl_arena_strndup(&A, e->data, e->n);
        if (strcmp(copy, "[DONE]") != 0) e->doc = parse(copy, e->n);
    }
    return n;
}

static void feed(sl_xlat_stream *s, const char *event, const char *data)
{
    int rc = sl_xlat_stream_event(s, sl_str_from_cstr(event), sl_str_from_cstr(data), &OUT);
    if (rc) fail_msg("stream event failed: %d on %s", rc, data);
}

static sl_xlat_stream *new_stream(sl_proto from, sl_proto to, bool usage)
{
    sl_xlat_resp_opts o = {.public_model = SL_STR("pub-model"), .id = SL_STR("req1"), .created = 1700000000};
    sl_xlat_stream *s = sl_xlat_stream_new(from, to, &o, usage);
    assert_non_null(s);
    sl_buf_clear(&OUT);
    return s;
}

/* Concatenation of a string field over events (text deltas, argument fragments). */
static const char *concat(ev *evs, int n, const char *path)
{
    sl_buf b;
    sl_buf_init(&b, 0);
    for (int i = 0; i < n; i++) {
        if (!evs[i].doc) continue;
        int t = J(evs[i].doc, path);
        sl_str s;
        if (t >= 0 && sl_json_type_of(evs[i].doc, t) == SL_JSON_STRING && sl_json_str(evs[i].doc, t, &A, &s) == 0)
            sl_buf_append_str(&b, s);
    }
    char *r = sl_arena_strndup(&A, b.p ? b.p : "", b.len);
    sl_buf_free(&b);
    return r;
}

/* ---- request fixtures ---- */

static const char OPENAI_REQ[] =
    "{\"model\":\"gpt-4o\",\"messages\":["
    "{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Use metric units.\"}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in these images, and the weather?\"},"
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},"
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/cat.jpg\",\"detail\":\"low\"}}]},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_abc\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
    "{\"id\":\"call_def\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_abc\",\"content\":\"18C, sunny\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_def\",\"content\":\"{\\\"time\\\":\\\"12:00\\\"}\"},"
    "{\"role\":\"user\",\"content\":\"Thanks. Summarize.\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather by city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}],"
    "\"tool_choice\":\"required\",\"parallel_tool_calls\":false,"
    "\"temperature\":1.5,\"top_p\":0.9,\"stop\":\"END\",\"max_completion_tokens\":300,"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"user\":\"u-42\"}";

static void test_req_openai_to_anthropic(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("claude-sonnet-4")};
    sl_xlat_req_info info;
    sl_json_doc *d = xreq(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, OPENAI_REQ, &o, &info);
    assert_true(info.stream);
    assert_true(info.include_usage);
    assert_true(sl_str_eq_lit(info.model, "gpt-4o"));
    check_str(d, "model", "claude-sonnet-4");
    check_int(d, "max_tokens", 300);
    check_str(d, "system.0.text", "You are terse.");
    check_str(d, "system.1.text", "Use metric units.");
    check_num(d, "temperature", 1.0); /* clamped to Anthropic's range */
    check_num(d, "top_p", 0.9);
    check_str(d, "stop_sequences.0", "END");
    check_type(d, "stream", SL_JSON_TRUE);
    check_absent(d, "stream_options");
    check_str(d, "metadata.user_id", "u-42");
    /* user, assistant(tool_use x2), user(tool_result x2 + text) */
    check_count(d, "messages", 3);
    check_str(d, "messages.0.role", "user");
    check_str(d, "messages.0.content.0.text", "What is in these images, and the weather?");
    check_str(d, "messages.0.content.1.type", "image");
    check_str(d, "messages.0.content.1.source.type", "base64");
    check_str(d, "messages.0.content.1.source.media_type", "image/png");
    check_str(d, "messages.0.content.1.source.data", "iVBORw0KGgo=");
    check_str(d, "messages.0.content.2.source.type", "url");
    check_str(d, "messages.0.content.2.source.url", "https://example.com/cat.jpg");
    check_str(d, "messages.1.role", "assistant");
    check_str(d, "messages.1.content.0.type", "tool_use");
    check_str(d, "messages.1.content.0.id", "call_abc");
    check_str(d, "messages.1.content.0.name", "get_weather");
    check_str(d, "messages.1.content.0.input.city", "Paris");
    check_type(d, "messages.1.content.1.input", SL_JSON_OBJECT); /* "" arguments -> {} */
    check_str(d, "messages.2.role", "user");
    check_str(d, "messages.2.content.0.type", "tool_result");
    check_str(d, "messages.2.content.0.tool_use_id", "call_abc");
    check_str(d, "messages.2.content.0.content", "18C, sunny");
    check_str(d, "messages.2.content.1.tool_use_id", "call_def");
    check_str(d, "messages.2.content.2.text", "Thanks. Summarize.");
    check_str(d, "tools.0.name", "get_weather");
    check_str(d, "tools.0.description", "Weather by city");
    check_str(d, "tools.0.input_schema.properties.city.type", "string");
    check_str(d, "tools.1.input_schema.type", "object"); /* no parameters: an empty object schema */
    check_str(d, "tool_choice.type", "any");
    check_type(d, "tool_choice.disable_parallel_tool_use", SL_JSON_TRUE);
}

static void test_req_openai_to_gemini(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("gemini-2.5-flash")};
    sl_xlat_req_info info;
    sl_json_doc *d = xreq(SL_PROTO_OPENAI, SL_PROTO_GEMINI, OPENAI_REQ, &o, &info);
    assert_true(info.stream); /* goes in the URL for Gemini */
    check_absent(d, "model");
    check_absent(d, "stream");
    check_str(d, "systemInstruction.parts.0.text", "You are terse.");
    check_str(d, "systemInstruction.parts.1.text", "Use metric units.");
    check_count(d, "contents", 3);
    check_str(d, "contents.0.role", "user");
    check_str(d, "contents.0.parts.1.inlineData.mimeType", "image/png");
    check_str(d, "contents.0.parts.1.inlineData.data", "iVBORw0KGgo=");
    check_str(d, "contents.0.parts.2.fileData.fileUri", "https://example.com/cat.jpg");
    check_str(d, "contents.0.parts.2.fileData.mimeType", "image/jpeg");
    check_str(d, "contents.1.role", "model");
    check_str(d, "contents.1.parts.0.functionCall.name", "get_weather");
    check_str(d, "contents.1.parts.0.functionCall.args.city", "Paris");
    check_str(d, "contents.2.role", "user");
    /* names come from the matching tool_call_id; text results are wrapped, JSON objects kept */
    check_str(d, "contents.2.parts.0.functionResponse.name", "get_weather");
    check_str(d, "contents.2.parts.0.functionResponse.response.output", "18C, sunny");
    check_str(d, "contents.2.parts.1.functionResponse.name", "get_time");
    check_str(d, "contents.2.parts.1.functionResponse.response.time", "12:00");
    check_str(d, "contents.2.parts.2.text", "Thanks. Summarize.");
    check_str(d, "tools.0.functionDeclarations.0.name", "get_weather");
    check_str(d, "tools.0.functionDeclarations.0.parametersJsonSchema.properties.city.type", "string");
    check_str(d, "toolConfig.functionCallingConfig.mode", "ANY");
    check_num(d, "generationConfig.temperature", 1.5);
    check_num(d, "generationConfig.topP", 0.9);
    check_int(d, "generationConfig.maxOutputTokens", 300);
    check_str(d, "generationConfig.stopSequences.0", "END");
}

static const char ANTHROPIC_REQ[] =
    "{\"model\":\"claude-sonnet-4\",\"max_tokens\":1024,"
    "\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
    "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Look:\"},"
    "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/4AAQ\"}},"
    "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/a.png\"}}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"x\"},"
    "{\"type\":\"text\",\"text\":\"Checking.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"lookup\",\"input\":{\"q\":\"cats\",\"n\":2}}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_01\",\"is_error\":true,"
    "\"content\":[{\"type\":\"text\",\"text\":\"not\"},{\"type\":\"text\",\"text\":\"found\"}]},"
    "{\"type\":\"text\",\"text\":\"Try again\"}]}],"
    "\"tools\":[{\"name\":\"lookup\",\"description\":\"Search\",\"input_schema\":{\"type\":\"object\","
    "\"properties\":{\"q\":{\"type\":\"string\"}}}}],"
    "\"tool_choice\":{\"type\":\"tool\",\"name\":\"lookup\",\"disable_parallel_tool_use\":true},"
    "\"temperature\":0.2,\"top_k\":40,\"stop_sequences\":[\"###\",\"STOP\"],\"stream\":true,"
    "\"metadata\":{\"user_id\":\"abc\"}}";

static void test_req_anthropic_to_openai(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("gpt-4o")};
    sl_json_doc *d = xreq(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, ANTHROPIC_REQ, &o, NULL);
    check_str(d, "model", "gpt-4o");
    check_int(d, "max_tokens", 1024);
    check_num(d, "temperature", 0.2);
    check_absent(d, "top_k");
    check_str(d, "stop.1", "STOP");
    check_type(d, "stream", SL_JSON_TRUE);
    check_type(d, "stream_options.include_usage", SL_JSON_TRUE);
    check_str(d, "user", "abc");
    check_str(d, "messages.0.role", "system");
    check_str(d, "messages.0.content", "Be brief.");
    check_str(d, "messages.1.role", "user");
    check_str(d, "messages.1.content.0.text", "Look:");
    check_str(d, "messages.1.content.1.type", "image_url");
    check_str(d, "messages.1.content.1.image_url.url", "data:image/jpeg;base64,/9j/4AAQ");
    check_str(d, "messages.1.content.2.image_url.url", "https://example.com/a.png");
    check_str(d, "messages.2.role", "assistant");
    check_str(d, "messages.2.content", "Checking.");
    check_str(d, "messages.2.tool_calls.0.id", "toolu_01");
    check_str(d, "messages.2.tool_calls.0.type", "function");
    check_str(d, "messages.2.tool_calls.0.function.name", "lookup");
    sl_json_doc *args = inner(d, "messages.2.tool_calls.0.function.arguments");
    check_str(args, "q", "cats");
    check_int(args, "n", 2);
    check_str(d, "messages.3.role", "tool");
    check_str(d, "messages.3.tool_call_id", "toolu_01");
    check_str(d, "messages.3.content", "not\nfound");
    check_str(d, "messages.4.role", "user");
    check_str(d, "messages.4.content", "Try again");
    check_count(d, "messages", 5);
    check_str(d, "tools.0.type", "function");
    check_str(d, "tools.0.function.name", "lookup");
    check_str(d, "tools.0.function.parameters.properties.q.type", "string");
    check_str(d, "tool_choice.type", "function");
    check_str(d, "tool_choice.function.name", "lookup");
    check_type(d, "parallel_tool_calls", SL_JSON_FALSE);
}

static void test_req_anthropic_to_gemini(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("gemini-2.5-pro")};
    sl_xlat_req_info info;
    sl_json_doc *d = xreq(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI, ANTHROPIC_REQ, &o, &info);
    assert_true(info.stream);
    check_str(d, "systemInstruction.parts.0.text", "Be brief.");
    check_str(d, "contents.0.parts.1.inlineData.mimeType", "image/jpeg");
    check_str(d, "contents.0.parts.2.fileData.mimeType", "image/png");
    check_str(d, "contents.1.role", "model");
    check_str(d, "contents.1.parts.0.text", "Checking.");
    check_int(d, "contents.1.parts.1.functionCall.args.n", 2);
    check_str(d, "contents.2.parts.0.functionResponse.name", "lookup");
    check_str(d, "contents.2.parts.0.functionResponse.response.error", "not\nfound");
    check_str(d, "contents.2.parts.1.text", "Try again");
    check_str(d, "toolConfig.functionCallingConfig.mode", "ANY");
    check_str(d, "toolConfig.functionCallingConfig.allowedFunctionNames.0", "lookup");
    check_int(d, "generationConfig.topK", 40);
    check_int(d, "generationConfig.maxOutputTokens", 1024);
    check_str(d, "generationConfig.stopSequences.0", "###");
}

static const char GEMINI_REQ[] =
    "{\"systemInstruction\":{\"parts\":[{\"text\":\"You are a bot.\"}]},"
    "\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Weather in Rome and Oslo?\"},"
    "{\"inlineData\":{\"mimeType\":\"image/webp\",\"data\":\"UklGR\"}}]},"
    "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Rome\"}}},"
    "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Oslo\"}}}]},"
    "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"t\":25}}},"
    "{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"t\":3}}}]}],"
    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"OBJECT\",\"properties\":{\"city\":{\"type\":\"STRING\"},"
    "\"type\":{\"type\":\"STRING\"}}}}]}],"
    "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"AUTO\"}},"
    "\"generationConfig\":{\"temperature\":0.7,\"topP\":0.95,\"topK\":20,\"stopSequences\":[\"x\"]}}";

static void test_req_gemini_to_openai(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("gpt-4o-mini"), .stream = true, .id_prefix = SL_STR("r9")};
    sl_xlat_req_info info;
    sl_json_doc *d = xreq(SL_PROTO_GEMINI, SL_PROTO_OPENAI, GEMINI_REQ, &o, &info);
    assert_true(info.stream);
    check_str(d, "model", "gpt-4o-mini");
    check_type(d, "stream_options.include_usage", SL_JSON_TRUE);
    check_str(d, "messages.0.role", "system");
    check_str(d, "messages.0.content", "You are a bot.");
    check_str(d, "messages.1.content.1.image_url.url", "data:image/webp;base64,UklGR");
    check_str(d, "messages.2.role", "assistant");
    check_type(d, "messages.2.content", SL_JSON_NULL);
    /* synthesized ids, and results matched to calls in order */
    check_str(d, "messages.2.tool_calls.0.id", "call_r9_0");
    check_str(d, "messages.2.tool_calls.1.id", "call_r9_1");
    check_str(inner(d, "messages.2.tool_calls.1.function.arguments"), "city", "Oslo");
    check_str(d, "messages.3.role", "tool");
    check_str(d, "messages.3.tool_call_id", "call_r9_0");
    check_int(inner(d, "messages.3.content"), "t", 25);
    check_str(d, "messages.4.tool_call_id", "call_r9_1");
    check_int(inner(d, "messages.4.content"), "t", 3);
    check_count(d, "messages", 5);
    /* OpenAPI upper-case types become JSON Schema ones; a property named "type" is left alone */
    check_str(d, "tools.0.function.parameters.type", "object");
    check_str(d, "tools.0.function.parameters.properties.city.type", "string");
    check_str(d, "tools.0.function.parameters.properties.type.type", "string");
    check_str(d, "tool_choice", "auto");
    check_num(d, "temperature", 0.7);
    check_absent(d, "max_tokens");
}

static void test_req_gemini_to_anthropic(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("claude-haiku"), .default_max_tokens = 2048};
    sl_json_doc *d = xreq(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC, GEMINI_REQ, &o, NULL);
    check_int(d, "max_tokens", 2048);
    check_absent(d, "stream");
    check_str(d, "system", "You are a bot.");
    check_str(d, "messages.0.content.1.source.media_type", "image/webp");
    check_str(d, "messages.1.content.0.type", "tool_use");
    check_str(d, "messages.1.content.0.input.city", "Rome");
    check_str(d, "messages.2.content.0.type", "tool_result");
    check_str(d, "messages.1.content.0.id", "call_0");
    check_str(d, "messages.2.content.0.tool_use_id", "call_0");
    check_str(d, "messages.2.content.1.tool_use_id", "call_1");
    check_str(d, "tools.0.input_schema.type", "object");
    check_str(d, "tool_choice.type", "auto");
    check_int(d, "top_k", 20);

    /* no default configured: 4096 */
    sl_xlat_req_opts o2 = {.upstream_model = SL_STR("claude-haiku")};
    d = xreq(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}",
             &o2, NULL);
    check_int(d, "max_tokens", 4096);
    check_str(d, "messages.0.content.0.text", "hi");
    /* Gemini's maxOutputTokens wins over the default */
    d = xreq(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC,
             "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],\"generationConfig\":{\"maxOutputTokens\":77}}", &o,
             NULL);
    check_int(d, "max_tokens", 77);
}

static void test_req_roundtrip_and_snake_case(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("m")};
    /* snake_case Gemini fields are accepted (the REST API allows them) */
    sl_json_doc *d = xreq(SL_PROTO_GEMINI, SL_PROTO_OPENAI,
                          "{\"system_instruction\":{\"parts\":[{\"text\":\"S\"}]},\"contents\":[{\"role\":\"user\","
                          "\"parts\":[{\"inline_data\":{\"mime_type\":\"image/png\",\"data\":\"AA==\"}}]}],"
                          "\"generation_config\":{\"max_output_tokens\":5,\"response_mime_type\":\"application/json\"}}",
                          &o, NULL);
    check_str(d, "messages.0.content", "S");
    check_str(d, "messages.1.content.0.image_url.url", "data:image/png;base64,AA==");
    check_int(d, "max_tokens", 5);
    check_str(d, "response_format.type", "json_object");
    /* OpenAI response_format json_schema -> Gemini responseJsonSchema */
    d = xreq(SL_PROTO_OPENAI, SL_PROTO_GEMINI,
             "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":"
             "\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{\"type\":\"object\"}}}}",
             &o, NULL);
    check_str(d, "generationConfig.responseMimeType", "application/json");
    check_str(d, "generationConfig.responseJsonSchema.type", "object");
    /* no upstream model: the caller's is kept */
    sl_xlat_req_opts none = {0};
    d = xreq(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI,
             "{\"model\":\"keep-me\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &none,
             NULL);
    check_str(d, "model", "keep-me");
    check_str(d, "messages.0.content", "hi");
    check_absent(d, "stream");
}

static void expect_req_error(sl_proto from, sl_proto to, const char *body, const sl_xlat_req_opts *o, const char *want)
{
    sl_json_doc *in = parse_c(body);
    const char *err = NULL;
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_request(from, to, in, o, &A, &OUT, NULL, &err), SL_EINVAL);
    assert_non_null(err);
    if (!strstr(err, want)) fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_req_errors(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("m")};
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, "{\"model\":\"x\"}", &o, "messages");
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, "[1]", &o, "object");
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_GEMINI, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", &o,
                     "role");
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_GEMINI,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", &o, "n other than 1");
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC,
                     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", &o,
                     "not supported");
    expect_req_error(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI,
                     "{\"messages\":[],\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}", &o,
                     "server tools");
    expect_req_error(SL_PROTO_GEMINI, SL_PROTO_OPENAI, "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}]}", NULL,
                     "model is required");
    expect_req_error(SL_PROTO_GEMINI, SL_PROTO_OPENAI,
                     "{\"contents\":[],\"tools\":[{\"googleSearch\":{}}]}", &o, "functionDeclarations");
    expect_req_error(SL_PROTO_OPENAI, SL_PROTO_GEMINI,
                     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                     "\"data:image/png,rawbytes\"}}]}]}",
                     &o, "base64");
}

/* ---- non-stream responses ---- */

static const char OPENAI_RESP[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-2024\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Let me check.\","
    "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
    "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":30,\"total_tokens\":130,"
    "\"prompt_tokens_details\":{\"cached_tokens\":60},\"completion_tokens_details\":{\"reasoning_tokens\":10}}}";

static const char ANTHROPIC_RESP[] =
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\","
    "\"content\":[{\"type\":\"thinking\",\"thinking\":\"...\",\"signature\":\"s\"},"
    "{\"type\":\"text\",\"text\":\"Let me check.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":60,"
    "\"output_tokens\":30}}";

static const char GEMINI_RESP[] =
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"thinking...\",\"thought\":true},"
    "{\"text\":\"Let me check.\"},{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}}]},"
    "\"finishReason\":\"STOP\",\"index\":0}],"
    "\"usageMetadata\":{\"promptTokenCount\":100,\"candidatesTokenCount\":20,\"thoughtsTokenCount\":10,"
    "\"cachedContentTokenCount\":60,\"totalTokenCount\":130},\"modelVersion\":\"gemini-2.5-flash\","
    "\"responseId\":\"resp-abc\"}";

static void check_openai_resp(sl_json_doc *d, const char *id)
{
    check_str(d, "id", id);
    check_str(d, "object", "chat.completion");
    check_int(d, "created", 1700000000);
    check_str(d, "model", "pub-model");
    check_str(d, "choices.0.message.role", "assistant");
    check_str(d, "choices.0.message.content", "Let me check.");
    check_str(d, "choices.0.message.tool_calls.0.function.name", "get_weather");
    check_str(inner(d, "choices.0.message.tool_calls.0.function.arguments"), "city", "Paris");
    check_str(d, "choices.0.finish_reason", "tool_calls");
    check_int(d, "usage.prompt_tokens", 100);
    check_int(d, "usage.completion_tokens", 30);
    check_int(d, "usage.total_tokens", 130);
    check_int(d, "usage.prompt_tokens_details.cached_tokens", 60);
}

static void test_resp_to_openai(void **state)
{
    (void)state;
    sl_usage u;
    sl_finish f;
    sl_json_doc *d = xresp(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, ANTHROPIC_RESP, &u, &f);
    check_openai_resp(d, "msg_01");
    check_str(d, "choices.0.message.tool_calls.0.id", "toolu_9");
    assert_int_equal(f, SL_FINISH_TOOL_CALLS);
    assert_true(u.present);
    assert_int_equal(u.input_tokens, 100);
    assert_int_equal(u.cached_tokens, 60);
    assert_int_equal(u.cache_write_tokens, 20);

    d = xresp(SL_PROTO_GEMINI, SL_PROTO_OPENAI, GEMINI_RESP, &u, &f);
    check_openai_resp(d, "resp-abc");
    check_int(d, "usage.completion_tokens_details.reasoning_tokens", 10);
    check_str(d, "choices.0.message.tool_calls.0.id", "call_req1_0");
    assert_int_equal(f, SL_FINISH_TOOL_CALLS); /* Gemini says STOP; calls make it tool_calls */
    assert_int_equal(u.output_tokens, 30);
    assert_int_equal(u.reasoning_tokens, 10);
}

static void test_resp_to_anthropic(void **state)
{
    (void)state;
    sl_usage u;
    sl_json_doc *d = xresp(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, OPENAI_RESP, &u, NULL);
    check_str(d, "id", "chatcmpl-1");
    check_str(d, "type", "message");
    check_str(d, "role", "assistant");
    check_str(d, "model", "pub-model");
    check_str(d, "content.0.type", "text");
    check_str(d, "content.0.text", "Let me check.");
    check_str(d, "content.1.type", "tool_use");
    check_str(d, "content.1.id", "call_1");
    check_str(d, "content.1.input.city", "Paris");
    check_str(d, "stop_reason", "tool_use");
    check_type(d, "stop_sequence", SL_JSON_NULL);
    check_int(d, "usage.input_tokens", 40); /* 100 prompt - 60 cached */
    check_int(d, "usage.cache_read_input_tokens", 60);
    check_int(d, "usage.output_tokens", 30);
    assert_int_equal(u.input_tokens, 100);
    assert_int_equal(u.reasoning_tokens, 10);

    d = xresp(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC, GEMINI_RESP, NULL, NULL);
    check_count(d, "content", 2); /* the thought part is dropped */
    check_str(d, "content.1.name", "get_weather");
    check_str(d, "stop_reason", "tool_use");
    check_int(d, "usage.input_tokens", 40);
    check_int(d, "usage.output_tokens", 30);
}

static void test_resp_to_gemini(void **state)
{
    (void)state;
    sl_json_doc *d = xresp(SL_PROTO_OPENAI, SL_PROTO_GEMINI, OPENAI_RESP, NULL, NULL);
    check_str(d, "candidates.0.content.role", "model");
    check_str(d, "candidates.0.content.parts.0.text", "Let me check.");
    check_str(d, "candidates.0.content.parts.1.functionCall.name", "get_weather");
    check_str(d, "candidates.0.content.parts.1.functionCall.args.city", "Paris");
    check_str(d, "candidates.0.finishReason", "STOP");
    check_int(d, "candidates.0.index", 0);
    check_int(d, "usageMetadata.promptTokenCount", 100);
    check_int(d, "usageMetadata.candidatesTokenCount", 20);
    check_int(d, "usageMetadata.thoughtsTokenCount", 10);
    check_int(d, "usageMetadata.cachedContentTokenCount", 60);
    check_int(d, "usageMetadata.totalTokenCount", 130);
    check_str(d, "modelVersion", "pub-model");

    d = xresp(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI, ANTHROPIC_RESP, NULL, NULL);
    check_str(d, "candidates.0.content.parts.1.functionCall.args.city", "Paris");
    check_int(d, "usageMetadata.promptTokenCount", 100);
    check_int(d, "usageMetadata.cachedContentTokenCount", 60);

    /* finish reasons */
    d = xresp(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI,
              "{\"id\":\"m\",\"content\":[{\"type\":\"text\",\"text\":\"abc\"}],\"stop_reason\":\"max_tokens\","
              "\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}",
              NULL, NULL);
    check_str(d, "candidates.0.finishReason", "MAX_TOKENS");
    d = xresp(SL_PROTO_GEMINI, SL_PROTO_OPENAI,
              "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"finishReason\":\"SAFETY\"}]}", NULL, NULL);
    check_str(d, "choices.0.finish_reason", "content_filter");
    check_type(d, "choices.0.message.content", SL_JSON_NULL);
    d = xresp(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC,
              "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}", NULL,
              NULL);
    check_str(d, "stop_reason", "max_tokens");
    /* a blocked prompt: no candidates */
    d = xresp(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC,
              "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}", NULL,
              NULL);
    check_str(d, "stop_reason", "refusal");
    check_count(d, "content", 0);

    /* a body that is not a response of the protocol */
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_response(SL_PROTO_OPENAI, SL_PROTO_GEMINI, "{\"x\":1}", 7, NULL, &A, &OUT, NULL, NULL),
                     SL_EPARSE);
    assert_int_equal(sl_xlat_response(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI, "nope", 4, NULL, &A, &OUT, NULL, NULL),
                     SL_EPARSE);
}

static void test_usage_extract(void **state)
{
    (void)state;
    sl_usage u;
    sl_finish f;
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_OPENAI, OPENAI_RESP, strlen(OPENAI_RESP), &A, &u, &f), 0);
    assert_true(u.present);
    assert_int_equal(u.input_tokens, 100);
    assert_int_equal(u.output_tokens, 30);
    assert_int_equal(u.cached_tokens, 60);
    assert_int_equal(u.reasoning_tokens, 10);
    assert_int_equal(f, SL_FINISH_TOOL_CALLS);
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_ANTHROPIC, ANTHROPIC_RESP, strlen(ANTHROPIC_RESP), &A, &u, &f), 0);
    assert_int_equal(u.input_tokens, 100);
    assert_int_equal(u.output_tokens, 30);
    assert_int_equal(u.cached_tokens, 60);
    assert_int_equal(u.cache_write_tokens, 20);
    assert_int_equal(f, SL_FINISH_TOOL_CALLS);
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_GEMINI, GEMINI_RESP, strlen(GEMINI_RESP), &A, &u, &f), 0);
    assert_int_equal(u.input_tokens, 100);
    assert_int_equal(u.output_tokens, 30);
    assert_int_equal(u.cached_tokens, 60);
    assert_int_equal(u.reasoning_tokens, 10);
    assert_int_equal(f, SL_FINISH_TOOL_CALLS);
    /* same protocol: copied unchanged, usage still extracted */
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_response(SL_PROTO_OPENAI, SL_PROTO_OPENAI, OPENAI_RESP, strlen(OPENAI_RESP), NULL, &A,
                                      &OUT, &u, &f),
                     0);
    assert_memory_equal(OUT.p, OPENAI_RESP, strlen(OPENAI_RESP));
    assert_int_equal(u.output_tokens, 30);
    /* DeepSeek's cache field */
    const char *ds = "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"prompt_cache_hit_tokens\":4}}";
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_OPENAI, ds, strlen(ds), &A, &u, &f), 0);
    assert_int_equal(u.cached_tokens, 4);
    assert_int_equal(f, SL_FINISH_NONE);
    /* no usage */
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_GEMINI, "{}", 2, &A, &u, &f), 0);
    assert_false(u.present);
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_GEMINI, "{", 1, &A, &u, &f), SL_EPARSE);
}

/* ---- streams ---- */

static void feed_openai_upstream(sl_xlat_stream *s)
{
    const char *base = "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",";
    char buf[1024];
#define OAI(choices) (snprintf(buf, sizeof buf, "%s\"choices\":[%s]}", base, choices), buf)
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"content\":\"lo \\\"you\\\"\"},\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_X\",\"type\":\"function\","
                    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]},"
                    "\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\": "
                    "\\\"Paris\\\"}\"}}]},\"finish_reason\":null}"));
    feed(s, "", OAI("{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}"));
    feed(s, "", (snprintf(buf, sizeof buf,
                          "%s\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":12,"
                          "\"total_tokens\":62,\"prompt_tokens_details\":{\"cached_tokens\":8}}}",
                          base),
                 buf));
    feed(s, "", "[DONE]");
#undef OAI
}

static void test_stream_openai_to_anthropic(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, true);
    feed_openai_upstream(s);
    assert_true(sl_xlat_stream_done(s));
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0); /* idempotent after message_stop */
    ev e[MAXEV];
    int n = split(&OUT, e);
    const char *want[] = {"message_start", "ping", "content_block_start", "content_block_delta",
                          "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                          "content_block_delta", "content_block_stop", "message_delta", "message_stop"};
    assert_int_equal(n, (int)SL_ARRAY_LEN(want));
    for (int i = 0; i < n; i++) {
        assert_string_equal(e[i].name, want[i]);
        check_str(e[i].doc, "type", want[i]);
    }
    check_str(e[0].doc, "message.id", "chatcmpl-9");
    check_str(e[0].doc, "message.model", "pub-model");
    check_str(e[0].doc, "message.role", "assistant");
    check_str(e[2].doc, "content_block.type", "text");
    check_int(e[2].doc, "index", 0);
    check_str(e[3].doc, "delta.type", "text_delta");
    assert_string_equal(concat(e, n, "delta.text"), "Hello \"you\"");
    check_str(e[6].doc, "content_block.type", "tool_use");
    check_str(e[6].doc, "content_block.id", "call_X");
    check_str(e[6].doc, "content_block.name", "get_weather");
    check_int(e[6].doc, "index", 1);
    check_str(e[7].doc, "delta.type", "input_json_delta");
    check_int(e[7].doc, "index", 1);
    sl_json_doc *args = parse_c(concat(e, n, "delta.partial_json"));
    check_str(args, "city", "Paris");
    check_str(e[10].doc, "delta.stop_reason", "tool_use");
    check_int(e[10].doc, "usage.output_tokens", 12);
    check_int(e[10].doc, "usage.input_tokens", 42);
    check_int(e[10].doc, "usage.cache_read_input_tokens", 8);
    /* exact framing of the first event header */
    const char *head = "event: message_start\ndata: {\"type\":\"message_start\",";
    assert_int_equal(strncmp(OUT.p, head, strlen(head)), 0);
    const sl_usage *u = sl_xlat_stream_usage(s);
    assert_int_equal(u->input_tokens, 50);
    assert_int_equal(u->output_tokens, 12);
    assert_int_equal(sl_xlat_stream_finish(s), SL_FINISH_TOOL_CALLS);
    sl_xlat_stream_free(s);
}

static void test_stream_openai_to_gemini(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_OPENAI, SL_PROTO_GEMINI, true);
    feed_openai_upstream(s);
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    ev e[MAXEV];
    int n = split(&OUT, e);
    assert_int_equal(n, 3); /* two text chunks, then the call with finish and usage */
    for (int i = 0; i < n; i++) {
        assert_string_equal(e[i].name, "");
        check_str(e[i].doc, "candidates.0.content.role", "model");
        check_str(e[i].doc, "modelVersion", "pub-model");
        check_int(e[i].doc, "candidates.0.index", 0);
    }
    assert_string_equal(concat(e, n, "candidates.0.content.parts.0.text"), "Hello \"you\"");
    check_absent(e[0].doc, "candidates.0.finishReason");
    check_str(e[2].doc, "candidates.0.content.parts.0.functionCall.name", "get_weather");
    check_str(e[2].doc, "candidates.0.content.parts.0.functionCall.args.city", "Paris");
    check_str(e[2].doc, "candidates.0.finishReason", "STOP");
    check_int(e[2].doc, "usageMetadata.promptTokenCount", 50);
    check_int(e[2].doc, "usageMetadata.candidatesTokenCount", 12);
    check_int(e[2].doc, "usageMetadata.cachedContentTokenCount", 8);
    assert_true(sl_xlat_stream_done(s));
    sl_xlat_stream_free(s);
}

static void feed_anthropic_upstream(sl_xlat_stream *s)
{
    feed(s, "message_start",
         "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_7\",\"type\":\"message\",\"role\":\"assistant\","
         "\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{"
         "\"input_tokens\":30,\"cache_read_input_tokens\":10,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}");
    feed(s, "ping", "{\"type\": \"ping\"}");
    feed(s, "content_block_start",
         "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}");
    feed(s, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
    feed(s, "content_block_start",
         "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \"}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}");
    feed(s, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}");
    feed(s, "content_block_start",
         "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_A\","
         "\"name\":\"lookup\",\"input\":{}}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
         "\"{\\\"q\\\": \\\"ca\"}}");
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
         "\"ts\\\"}\"}}");
    feed(s, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":2}");
    feed(s, "message_delta",
         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
         "\"usage\":{\"output_tokens\":25}}");
    feed(s, "message_stop", "{\"type\":\"message_stop\"}");
}

static void test_stream_anthropic_to_openai(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, true);
    feed_anthropic_upstream(s);
    assert_true(sl_xlat_stream_done(s));
    ev e[MAXEV];
    int n = split(&OUT, e);
    /* role, 2 text, tool start, 2 arg fragments, finish, usage, [DONE] */
    assert_int_equal(n, 9);
    for (int i = 0; i < n - 1; i++) {
        check_str(e[i].doc, "object", "chat.completion.chunk");
        check_str(e[i].doc, "id", "msg_7");
        check_str(e[i].doc, "model", "pub-model");
        check_int(e[i].doc, "created", 1700000000);
    }
    check_str(e[0].doc, "choices.0.delta.role", "assistant");
    check_type(e[0].doc, "choices.0.finish_reason", SL_JSON_NULL);
    assert_string_equal(concat(e, n, "choices.0.delta.content"), "Hi there");
    check_str(e[3].doc, "choices.0.delta.tool_calls.0.id", "toolu_A");
    check_str(e[3].doc, "choices.0.delta.tool_calls.0.type", "function");
    check_str(e[3].doc, "choices.0.delta.tool_calls.0.function.name", "lookup");
    check_int(e[3].doc, "choices.0.delta.tool_calls.0.index", 0);
    check_int(e[4].doc, "choices.0.delta.tool_calls.0.index", 0);
    check_str(parse_c(concat(e, n, "choices.0.delta.tool_calls.0.function.arguments")), "q", "cats");
    check_str(e[6].doc, "choices.0.finish_reason", "tool_calls");
    check_count(e[7].doc, "choices", 0);
    check_int(e[7].doc, "usage.prompt_tokens", 40);
    check_int(e[7].doc, "usage.completion_tokens", 25);
    check_int(e[7].doc, "usage.prompt_tokens_details.cached_tokens", 10);
    assert_null(e[8].doc);
    assert_int_equal(OUT.len > 14, 1);
    assert_memory_equal(OUT.p + OUT.len - 14, "data: [DONE]\n\n", 14);
    assert_int_equal(sl_xlat_stream_usage(s)->output_tokens, 25);
    sl_xlat_stream_free(s);

    /* the caller did not ask for usage: no usage chunk, usage still recorded */
    s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, false);
    feed_anthropic_upstream(s);
    n = split(&OUT, e);
    assert_int_equal(n, 8);
    for (int i = 0; i < n - 1; i++) check_absent(e[i].doc, "usage");
    assert_int_equal(sl_xlat_stream_usage(s)->input_tokens, 40);
    sl_xlat_stream_free(s);
}

static void test_stream_anthropic_to_gemini(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI, false);
    feed_anthropic_upstream(s);
    ev e[MAXEV];
    int n = split(&OUT, e);
    assert_int_equal(n, 3);
    check_str(e[0].doc, "candidates.0.content.parts.0.text", "Hi ");
    check_int(e[0].doc, "usageMetadata.promptTokenCount", 40);
    check_str(e[0].doc, "responseId", "msg_7");
    check_str(e[2].doc, "candidates.0.content.parts.0.functionCall.name", "lookup");
    check_str(e[2].doc, "candidates.0.content.parts.0.functionCall.args.q", "cats");
    check_str(e[2].doc, "candidates.0.finishReason", "STOP");
    check_int(e[2].doc, "usageMetadata.candidatesTokenCount", 25);
    check_int(e[2].doc, "usageMetadata.totalTokenCount", 65);
    sl_xlat_stream_free(s);
}

static void feed_gemini_upstream(sl_xlat_stream *s)
{
    feed(s, "",
         "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me \"}],\"role\":\"model\"},\"index\":0}],"
         "\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12},\"modelVersion\":\"gemini-2.5-flash\","
         "\"responseId\":\"gem-1\"}");
    feed(s, "",
         "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"look.\"}],\"role\":\"model\"},\"index\":0}],"
         "\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":3,\"totalTokenCount\":15},"
         "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"gem-1\"}");
    feed(s, "",
         "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":"
         "\"Oslo\"}}},{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}],\"role\":\"model\"},"
         "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,"
         "\"candidatesTokenCount\":9,\"thoughtsTokenCount\":4,\"totalTokenCount\":25},"
         "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"gem-1\"}");
}

static void test_stream_gemini_to_openai(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_GEMINI, SL_PROTO_OPENAI, true);
    feed_gemini_upstream(s);
    assert_false(sl_xlat_stream_done(s));
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0); /* Gemini has no end marker */
    assert_true(sl_xlat_stream_done(s));
    ev e[MAXEV];
    int n = split(&OUT, e);
    /* role, 2 text, 2 x (tool start + whole args), finish, usage, [DONE] */
    assert_int_equal(n, 10);
    check_str(e[0].doc, "id", "gem-1");
    assert_string_equal(concat(e, n, "choices.0.delta.content"), "Let me look.");
    check_str(e[3].doc, "choices.0.delta.tool_calls.0.function.name", "get_weather");
    check_str(e[3].doc, "choices.0.delta.tool_calls.0.id", "call_req1_0");
    check_str(parse_c(concat(e, 5, "choices.0.delta.tool_calls.0.function.arguments")), "city", "Oslo");
    check_int(e[5].doc, "choices.0.delta.tool_calls.0.index", 1);
    check_str(e[5].doc, "choices.0.delta.tool_calls.0.function.name", "get_time");
    check_str(e[7].doc, "choices.0.finish_reason", "tool_calls");
    check_int(e[8].doc, "usage.prompt_tokens", 12);
    check_int(e[8].doc, "usage.completion_tokens", 13);
    check_int(e[8].doc, "usage.completion_tokens_details.reasoning_tokens", 4);
    assert_null(e[9].doc);
    sl_xlat_stream_free(s);
}

static void test_stream_gemini_to_anthropic(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC, true);
    feed_gemini_upstream(s);
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    ev e[MAXEV];
    int n = split(&OUT, e);
    const char *want[] = {"message_start",       "ping",
                          "content_block_start", "content_block_delta",
                          "content_block_delta", "content_block_stop",
                          "content_block_start", "content_block_delta",
                          "content_block_stop",  "content_block_start",
                          "content_block_delta", "content_block_stop",
                          "message_delta",       "message_stop"};
    assert_int_equal(n, (int)SL_ARRAY_LEN(want));
    for (int i = 0; i < n; i++) assert_string_equal(e[i].name, want[i]);
    check_int(e[0].doc, "message.usage.input_tokens", 12); /* known from the first chunk */
    check_str(e[0].doc, "message.id", "gem-1");
    check_str(e[6].doc, "content_block.name", "get_weather");
    check_int(e[6].doc, "index", 1);
    check_str(parse_c(concat(e + 7, 1, "delta.partial_json")), "city", "Oslo");
    check_int(e[9].doc, "index", 2);
    check_str(e[12].doc, "delta.stop_reason", "tool_use");
    check_int(e[12].doc, "usage.output_tokens", 13);
    sl_xlat_stream_free(s);
}

static void test_stream_passthrough(void **state)
{
    (void)state;
    /* OpenAI -> OpenAI, caller without include_usage: the usage-only chunk is dropped, usage recorded */
    sl_xlat_stream *s = new_stream(SL_PROTO_OPENAI, SL_PROTO_OPENAI, false);
    const char *c1 = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}";
    const char *c2 = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],\"usage\":null}";
    const char *c3 = "{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
    feed(s, "", c1);
    feed(s, "", c2);
    feed(s, "", c3);
    feed(s, "", "[DONE]");
    char want[1024];
    snprintf(want, sizeof want, "data: %s\n\ndata: %s\n\ndata: [DONE]\n\n", c1, c2);
    assert_int_equal(OUT.len, strlen(want));
    assert_memory_equal(OUT.p, want, OUT.len);
    assert_int_equal(sl_xlat_stream_usage(s)->output_tokens, 4);
    assert_int_equal(sl_xlat_stream_finish(s), SL_FINISH_LENGTH);
    assert_true(sl_xlat_stream_done(s));
    sl_xlat_stream_free(s);

    /* usage on a chunk that also has choices (some compatible providers): the member is removed */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_OPENAI, false);
    feed(s, "", "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}");
    ev e[MAXEV];
    int n = split(&OUT, e);
    assert_int_equal(n, 1);
    check_absent(e[0].doc, "usage");
    check_str(e[0].doc, "choices.0.finish_reason", "stop");
    assert_int_equal(sl_xlat_stream_usage(s)->output_tokens, 2);
    sl_xlat_stream_free(s);

    /* the caller asked for usage: everything forwarded */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_OPENAI, true);
    feed(s, "", c3);
    snprintf(want, sizeof want, "data: %s\n\n", c3);
    assert_string_equal(OUT.p, want);
    sl_xlat_stream_free(s);

    /* Anthropic -> Anthropic keeps event names and multi-line data */
    s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_ANTHROPIC, false);
    feed(s, "message_delta", "{\"type\":\"message_delta\",\n\"delta\":{\"stop_reason\":\"end_turn\"},"
                             "\"usage\":{\"output_tokens\":7}}");
    assert_string_equal(OUT.p, "event: message_delta\ndata: {\"type\":\"message_delta\",\ndata: "
                               "\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n");
    assert_int_equal(sl_xlat_stream_usage(s)->output_tokens, 7);
    assert_int_equal(sl_xlat_stream_finish(s), SL_FINISH_STOP);
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    sl_xlat_stream_free(s);

    /* Gemini -> Gemini: usage from the cumulative usageMetadata */
    s = new_stream(SL_PROTO_GEMINI, SL_PROTO_GEMINI, false);
    feed_gemini_upstream(s);
    assert_int_equal(sl_xlat_stream_usage(s)->output_tokens, 13);
    assert_int_equal(sl_xlat_stream_finish(s), SL_FINISH_TOOL_CALLS);
    n = split(&OUT, e);
    assert_int_equal(n, 3);
    sl_xlat_stream_free(s);
}

/* The answer's text is captured as it goes by (cut on a UTF-8 boundary); the upstream's model name is noted. */
static void test_stream_text_capture_and_model(void **state)
{
    (void)state;
    /* text capture on its own: "é" is 2 bytes, "模" 3: a cut never splits one */
    sl_text_capture c;
    sl_text_capture_init(&c, 5);
    sl_text_capture_add(&c, SL_STR("ab"));
    sl_text_capture_add(&c, SL_STR("c\xc3\xa9\xe6\xa8\xa1")); /* c é 模: only "cé" fits */
    assert_int_equal(c.buf.len, 5);
    assert_memory_equal(c.buf.p, "abc\xc3\xa9", 5);
    assert_true(c.truncated);
    sl_text_capture_add(&c, SL_STR("x")); /* nothing after a cut */
    assert_int_equal(c.buf.len, 5);
    sl_text_capture_free(&c);
    sl_text_capture_init(&c, 4);
    sl_text_capture_add(&c, SL_STR("abc\xc3\xa9")); /* the 2-byte character across the limit is left out */
    assert_int_equal(c.buf.len, 3);
    assert_true(c.truncated);
    sl_text_capture_free(&c);
    sl_text_capture_init(&c, 0); /* off */
    sl_text_capture_add(&c, SL_STR("abc"));
    assert_int_equal(c.buf.len, 0);
    assert_false(c.truncated);
    sl_text_capture_free(&c);

    /* OpenAI -> Anthropic: content deltas of the first choice, no tool arguments; model from the first chunk */
    sl_xlat_stream *s = new_stream(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, false);
    sl_text_capture_init(&c, 1024);
    sl_xlat_stream_capture_text(s, &c);
    feed(s, "", "{\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":"
                "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}");
    feed(s, "", "{\"id\":\"c\",\"model\":\"other\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\u00e9\"}}]}");
    feed(s, "", "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t\","
                "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}");
    feed(s, "", "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}");
    assert_int_equal(c.buf.len, 6);
    assert_memory_equal(c.buf.p, "Hi \xc3\xa9!", 6);
    assert_false(c.truncated);
    sl_str m = sl_xlat_stream_upstream_model(s);
    assert_true(sl_str_eq_lit(m, "gpt-4o-2024-08-06"));
    sl_xlat_stream_free(s);
    sl_text_capture_free(&c);

    /* Anthropic pass-through: text deltas, model from message_start; thinking is not the answer's text */
    s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_ANTHROPIC, false);
    sl_text_capture_init(&c, 1024);
    sl_xlat_stream_capture_text(s, &c);
    assert_int_equal(sl_xlat_stream_upstream_model(s).n, 0);
    feed(s, "message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-x-1\","
                             "\"usage\":{\"input_tokens\":1}}}");
    feed(s, "content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
                                   "\"thinking\":\"hmm\"}}");
    feed(s, "content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
                                   "\"text\":\"Hello\"}}");
    assert_true(sl_str_eq_lit(sl_xlat_stream_upstream_model(s), "claude-x-1"));
    assert_int_equal(c.buf.len, 5);
    assert_memory_equal(c.buf.p, "Hello", 5);
    sl_xlat_stream_free(s);
    sl_text_capture_free(&c);

    /* Gemini -> OpenAI: modelVersion of the first chunk that has one; thought parts left out */
    s = new_stream(SL_PROTO_GEMINI, SL_PROTO_OPENAI, false);
    sl_text_capture_init(&c, 1024);
    sl_xlat_stream_capture_text(s, &c);
    feed(s, "", "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"plan\",\"thought\":true},{\"text\":\"A\"}]}}]}");
    feed(s, "", "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"B\"}]},\"finishReason\":\"STOP\"}],"
                "\"modelVersion\":\"gemini-2.0-flash-001\"}");
    assert_true(sl_str_eq_lit(sl_xlat_stream_upstream_model(s), "gemini-2.0-flash-001"));
    assert_int_equal(c.buf.len, 2);
    assert_memory_equal(c.buf.p, "AB", 2);
    sl_xlat_stream_free(s);
    sl_text_capture_free(&c);
}

/* Pass-through streams put the public model name back; the Responses API's usage spelling is read. */
static void test_passthrough_model_and_responses_usage(void **state)
{
    (void)state;
    sl_xlat_stream *s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_ANTHROPIC, false);
    feed(s, "message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"up-model\","
                             "\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}");
    assert_string_equal(OUT.p, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
                               "\"model\":\"pub-model\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n");
    assert_int_equal(sl_xlat_stream_usage(s)->input_tokens, 5);
    sl_xlat_stream_free(s);

    s = new_stream(SL_PROTO_GEMINI, SL_PROTO_GEMINI, false);
    feed(s, "", "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":\"model\"}}],"
                "\"modelVersion\":\"gemini-up\"}");
    assert_string_equal(OUT.p, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":\"model\"}}],"
                               "\"modelVersion\":\"pub-model\"}\n\n");
    sl_xlat_stream_free(s);

    /* already the public name, or a "model" that is not the response's: forwarded byte for byte */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_OPENAI, true);
    const char *same = "{\"id\":\"c\", \"model\" : \"pub-model\",\"choices\":[]}";
    feed(s, "", same);
    char want[256];
    snprintf(want, sizeof want, "data: %s\n\n", same);
    assert_string_equal(OUT.p, want);
    sl_xlat_stream_free(s);
    s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_ANTHROPIC, false);
    const char *delta = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"model\"}}";
    feed(s, "content_block_delta", delta);
    snprintf(want, sizeof want, "event: content_block_delta\ndata: %s\n\n", delta);
    assert_string_equal(OUT.p, want);
    sl_xlat_stream_free(s);

    /* a Responses API answer (passed through to OpenAI providers) */
    const char *resp = "{\"object\":\"response\",\"model\":\"m\",\"usage\":{\"input_tokens\":11,"
                       "\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":7,"
                       "\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":18}}";
    sl_usage u;
    assert_int_equal(sl_xlat_response_usage(SL_PROTO_OPENAI, resp, strlen(resp), &A, &u, NULL), 0);
    assert_true(u.present);
    assert_int_equal(u.input_tokens, 11);
    assert_int_equal(u.output_tokens, 7);
    assert_int_equal(u.cached_tokens, 4);
    assert_int_equal(u.reasoning_tokens, 2);
}

static void test_stream_errors(void **state)
{
    (void)state;
    /* Anthropic upstream error event -> OpenAI error data, no [DONE] */
    sl_xlat_stream *s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, true);
    feed(s, "message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}");
    feed(s, "error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
    feed(s, "message_stop", "{\"type\":\"message_stop\"}"); /* ignored after the error */
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    ev e[MAXEV];
    int n = split(&OUT, e);
    assert_int_equal(n, 2);
    check_str(e[1].doc, "error.message", "Overloaded");
    check_str(e[1].doc, "error.type", "api_error");
    assert_null(strstr(OUT.p, "[DONE]"));
    assert_int_equal(sl_xlat_stream_finish(s), SL_FINISH_ERROR);
    sl_xlat_stream_free(s);

    /* OpenAI upstream error chunk -> Anthropic event: error (exact framing) */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, false);
    feed(s, "", "{\"error\":{\"message\":\"Rate limited\",\"type\":\"rate_limit_error\",\"code\":null}}");
    assert_string_equal(OUT.p, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                               "\"message\":\"Rate limited\"}}\n\n");
    sl_xlat_stream_free(s);

    /* gateway error mid-stream, in each caller shape */
    s = new_stream(SL_PROTO_ANTHROPIC, SL_PROTO_GEMINI, false);
    feed(s, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}");
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_stream_error(s, 504, SL_STR("upstream timed out"), &OUT), 0);
    assert_string_equal(OUT.p, "data: {\"error\":{\"code\":504,\"message\":\"upstream timed out\","
                               "\"status\":\"DEADLINE_EXCEEDED\"}}\n\n");
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    assert_int_equal(sl_xlat_stream_error(s, 502, SL_STR("again"), &OUT), 0);
    assert_null(strstr(OUT.p, "again"));
    sl_xlat_stream_free(s);

    s = new_stream(SL_PROTO_GEMINI, SL_PROTO_OPENAI, false);
    assert_int_equal(sl_xlat_stream_error(s, 502, SL_STR("connection reset"), &OUT), 0);
    assert_string_equal(OUT.p, "data: {\"error\":{\"message\":\"connection reset\",\"type\":\"upstream_error\","
                               "\"param\":null,\"code\":null}}\n\n");
    sl_xlat_stream_free(s);

    /* Gemini upstream error object -> OpenAI */
    s = new_stream(SL_PROTO_GEMINI, SL_PROTO_OPENAI, false);
    feed(s, "", "{\"error\":{\"code\":429,\"message\":\"Quota\",\"status\":\"RESOURCE_EXHAUSTED\"}}");
    n = split(&OUT, e);
    assert_int_equal(n, 1);
    check_str(e[0].doc, "error.type", "rate_limit_error");
    sl_xlat_stream_free(s);

    /* malformed data: SL_EPARSE and nothing written */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_GEMINI, false);
    assert_int_equal(sl_xlat_stream_event(s, SL_STR(""), SL_STR("{not json"), &OUT), SL_EPARSE);
    assert_int_equal(OUT.len, 0);
    sl_xlat_stream_free(s);

    /* an upstream ending without a finish reason still closes properly */
    s = new_stream(SL_PROTO_OPENAI, SL_PROTO_ANTHROPIC, false);
    feed(s, "", "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}");
    assert_int_equal(sl_xlat_stream_end(s, &OUT), 0);
    n = split(&OUT, e);
    assert_string_equal(e[n - 1].name, "message_stop");
    check_str(e[n - 2].doc, "delta.stop_reason", "end_turn");
    sl_xlat_stream_free(s);
}

static void test_error_shapes(void **state)
{
    (void)state;
    sl_json_doc *d;
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error(SL_PROTO_OPENAI, 404, NULL, "model_not_found", SL_STR("no \"x\""), &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_str(d, "error.message", "no \"x\"");
    check_str(d, "error.type", "invalid_request_error");
    check_str(d, "error.code", "model_not_found");
    check_type(d, "error.param", SL_JSON_NULL);
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error(SL_PROTO_ANTHROPIC, 404, NULL, "model_not_found", SL_STR("m"), &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_str(d, "type", "error");
    check_str(d, "error.type", "not_found_error");
    check_str(d, "error.message", "m");
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error(SL_PROTO_GEMINI, 429, "rate_limit_error", "budget_exceeded", SL_STR("m"), &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_int(d, "error.code", 429);
    check_str(d, "error.status", "RESOURCE_EXHAUSTED");

    static const struct {
        int status;
        const char *oai, *ant, *gem;
    } tab[] = {
        {400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"},
        {401, "authentication_error", "authentication_error", "UNAUTHENTICATED"},
        {403, "permission_error", "permission_error", "PERMISSION_DENIED"},
        {404, "invalid_request_error", "not_found_error", "NOT_FOUND"},
        {413, "invalid_request_error", "request_too_large", "INVALID_ARGUMENT"},
        {429, "rate_limit_error", "rate_limit_error", "RESOURCE_EXHAUSTED"},
        {500, "api_error", "api_error", "INTERNAL"},
        {502, "upstream_error", "api_error", "UNAVAILABLE"},
        {503, "service_unavailable", "overloaded_error", "UNAVAILABLE"},
        {504, "timeout", "api_error", "DEADLINE_EXCEEDED"},
        {529, "api_error", "overloaded_error", "UNAVAILABLE"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(tab); i++) {
        assert_string_equal(sl_xlat_openai_error_type(tab[i].status), tab[i].oai);
        assert_string_equal(sl_xlat_anthropic_error_type(tab[i].status), tab[i].ant);
        assert_string_equal(sl_xlat_gemini_error_status(tab[i].status), tab[i].gem);
    }

    /* upstream errors carried over */
    const char *ant = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad temp\"}}";
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error_from_upstream(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, 400, ant, strlen(ant), &A, &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_str(d, "error.message", "bad temp");
    check_str(d, "error.type", "invalid_request_error");
    const char *gem = "{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":\"PERMISSION_DENIED\"}}";
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error_from_upstream(SL_PROTO_GEMINI, SL_PROTO_ANTHROPIC, 403, gem, strlen(gem), &A, &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_str(d, "error.type", "permission_error");
    check_str(d, "error.message", "denied");
    sl_buf_clear(&OUT);
    assert_int_equal(sl_xlat_error_from_upstream(SL_PROTO_OPENAI, SL_PROTO_GEMINI, 502, "<html>", 6, &A, &OUT), 0);
    d = parse(OUT.p, OUT.len);
    check_str(d, "error.message", "upstream returned HTTP 502");
    check_str(d, "error.status", "UNAVAILABLE");
}

static void test_finish_names(void **state)
{
    (void)state;
    assert_string_equal(sl_finish_name(SL_PROTO_OPENAI, SL_FINISH_STOP_SEQUENCE), "stop");
    assert_string_equal(sl_finish_name(SL_PROTO_ANTHROPIC, SL_FINISH_STOP_SEQUENCE), "stop_sequence");
    assert_string_equal(sl_finish_name(SL_PROTO_GEMINI, SL_FINISH_LENGTH), "MAX_TOKENS");
    assert_int_equal(sl_finish_parse(SL_PROTO_GEMINI, SL_STR("RECITATION")), SL_FINISH_CONTENT_FILTER);
    assert_int_equal(sl_finish_parse(SL_PROTO_ANTHROPIC, SL_STR("end_turn")), SL_FINISH_STOP);
    assert_int_equal(sl_finish_parse(SL_PROTO_OPENAI, SL_STR("function_call")), SL_FINISH_TOOL_CALLS);
    /* Anthropic stop_sequence -> OpenAI stop */
    sl_json_doc *d = xresp(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI,
                           "{\"id\":\"m\",\"content\":[],\"stop_reason\":\"stop_sequence\",\"usage\":{}}", NULL, NULL);
    check_str(d, "choices.0.finish_reason", "stop");
}

/* Every allocation failure along a translation path returns an error, never crashes or leaks. */
static void test_alloc_failure(void **state)
{
    (void)state;
    sl_xlat_req_opts o = {.upstream_model = SL_STR("m")};
    for (long n = 1; n < 200; n++) {
        sl_arena a;
        sl_arena_init(&a, 256, 0);
        sl_json_doc in;
        sl_buf out;
        sl_buf_init(&out, 0);
        int rc = sl_json_parse(&in, OPENAI_REQ, strlen(OPENAI_REQ), &a, NULL, NULL);
        if (rc == 0) {
            sl_alloc_fail_after(n);
            const char *err;
            rc = sl_xlat_request(SL_PROTO_OPENAI, SL_PROTO_GEMINI, &in, &o, &a, &out, NULL, &err);
            sl_alloc_fail_after(0);
        }
        sl_buf_free(&out);
        sl_arena_free(&a);
        if (rc == 0) break;
    }
    for (long n = 1; n < 100; n++) {
        sl_alloc_fail_after(n);
        sl_xlat_stream *s = sl_xlat_stream_new(SL_PROTO_ANTHROPIC, SL_PROTO_OPENAI, NULL, true);
        sl_buf out;
        sl_buf_init(&out, 0);
        int rc = s ? sl_xlat_stream_event(s, SL_STR(""), SL_STR("{\"type\":\"content_block_delta\",\"delta\":{\"type\":"
                                                                "\"text_delta\",\"text\":\"x\"}}"),
                                          &out)
                   : SL_ENOMEM;
        if (!rc) rc = sl_xlat_stream_end(s, &out);
        sl_alloc_fail_after(0);
        sl_xlat_stream_free(s);
        sl_buf_free(&out);
        if (rc == 0) break;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_req_openai_to_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_openai_to_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_anthropic_to_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_anthropic_to_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_gemini_to_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_gemini_to_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_roundtrip_and_snake_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_to_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_to_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_to_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_extract, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_openai_to_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_openai_to_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_anthropic_to_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_anthropic_to_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_gemini_to_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_gemini_to_anthropic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_passthrough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_text_capture_and_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passthrough_model_and_responses_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
