/*
 * json_bench.c: sluice's JSON reader and splice against cJSON on realistic
 * OpenAI chat request bodies (~1 KB, ~27 KB, ~260 KB: a system prompt,
 * alternating user/assistant turns with escapes and non-ASCII text, a tools
 * array). Two operations are measured:
 *   parse:   sl_json_parse            vs cJSON_Parse + cJSON_Delete
 *   gateway: parse, find "model", splice a new name in
 *            vs cJSON_Parse, replace "model", cJSON_PrintUnformatted
 * Prints a markdown table. Build and run (optional argument: seconds per cell):
 */
//   cc -O2 -Isrc bench/json_bench.c src/json/*.c src/core/*.c $(pkg-config --cflags --libs libcjson)
//      -o build/json_bench && build/json_bench
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "json/json.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const snippets[] = {
    "Can you explain how the \\\"retry\\\" logic works in this function?\\n\\n```python\\ndef call(x):\\n    "
    "for i in range(3):\\n        try:\\n            return api(x)\\n        except Timeout:\\n            "
    "time.sleep(2 ** i)\\n```\\n",
    "Sure. The loop tries the call three times; on a timeout it waits 1, 2 then 4 seconds (exponential "
    "backoff) before trying again. If all attempts fail, the function falls off the end and returns None, "
    "which is probably a bug: you likely want to re-raise the last exception.\\n\\n",
    "Traduis en fran\xc3\xa7" "ais : \\\"The caf\xc3\xa9 is closed on Sundays.\\\" Merci ! \xf0\x9f\x99\x82 ",
    "\xe8\xaf\xb7\xe7\x94\xa8\xe4\xb8\xad\xe6\x96\x87\xe5\x9b\x9e\xe7\xad\x94\xef\xbc\x9a\xe4\xbb\x80\xe4\xb9\x88"
    "\xe6\x98\xaf\xe8\xb4\x9f\xe8\xbd\xbd\xe5\x9d\x87\xe8\xa1\xa1\xef\xbc\x9f \\u00e9\\u00e8 \\ud83d\\ude80 ",
    "Here is the table you asked for:\\n\\n| name | value |\\n|---|---|\\n| alpha | 0.25 |\\n| beta | 1e-3 |\\n"
    "Tab\\tseparated\\tcolumns and a path C:\\\\Users\\\\me\\\\file.txt. ",
};

static void add_tools(sl_buf *b, int ntools)
{
    sl_buf_append_cstr(b, ",\"tools\":[");
    const char *names[] = {"get_weather", "search_docs", "run_sql"};
    for (int i = 0; i < ntools; i++) {
        sl_buf_appendf(b,
                       "%s{\"type\":\"function\",\"function\":{\"name\":\"%s\",\"description\":\"Look things up "
                       "for the user; returns JSON.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
                       "\"query\":{\"type\":\"string\",\"description\":\"What to look for\"},\"limit\":{\"type\":"
                       "\"integer\",\"minimum\":1,\"maximum\":100},\"units\":{\"type\":\"string\",\"enum\":"
                       "[\"metric\",\"imperial\"]}},\"required\":[\"query\"]}}}",
                       i ? "," : "", names[i]);
    }
    sl_buf_append_cstr(b, "]");
}

/* A chat body of about target bytes. */
static void make_body(sl_buf *b, size_t target)
{
    sl_buf_clear(b);
    sl_buf_append_cstr(b, "{\"model\":\"gpt-4o-mini\",\"temperature\":0.7,\"max_tokens\":1024,\"stream\":true,"
                          "\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}");
    int ntools = target < 4096 ? 1 : 3;
    size_t tools_len = 40 + 380 * (size_t)ntools;
    for (int i = 0; b->len + tools_len < target; i++) {
        sl_buf_appendf(b, ",{\"role\":\"%s\",\"content\":\"", i % 2 ? "assistant" : "user");
        size_t want = 200 + (size_t)(i * 397) % 1800; /* contents of varying length */
        size_t start = b->len;
        for (int k = i; b->len - start < want && b->len + tools_len < target; k++)
            sl_buf_append_cstr(b, snippets[k % SL_ARRAY_LEN(snippets)]);
        sl_buf_append_cstr(b, "\"}");
    }
    sl_buf_append_cstr(b, "]");
    add_tools(b, ntools);
    sl_buf_append_cstr(b, ",\"user\":\"user-1234\"}");
}

typedef struct {
    double mbps, ops;
} result;

/* Runs fn until ~budget seconds have passed; returns throughput. */
#define MEASURE(res, len, budget, ...)                                                                      \
    do {                                                                                                     \
        long iters_ = 0;                                                                                     \
        double t0_ = now(), el_;                                                                             \
        do {                                                                                                 \
            for (int r_ = 0; r_ < 16; r_++) {                                                                \
                __VA_ARGS__;                                                                                 \
            }                                                                                                \
            iters_ += 16;                                                                                    \
        } while ((el_ = now() - t0_) < (budget));                                                            \
        (res).ops = (double)iters_ / el_;                                                                    \
        (res).mbps = (res).ops * (double)(len) / 1e6;                                                        \
    } while (0)

static int bench_size(size_t target, double budget)
{
    sl_buf body;
    sl_buf_init(&body, 0);
    make_body(&body, target);
    const char *src = body.p;
    size_t len = body.len;

    /* sanity: both parsers accept it, and the spliced body is valid and has the new model */
    sl_arena a;
    sl_arena_init(&a, 64 * 1024, 0);
    sl_json_doc d;
    if (sl_json_parse(&d, src, len, &a, NULL, NULL) != 0) {
        fprintf(stderr, "sl_json_parse failed on the %zu-byte body\n", len);
        return 1;
    }
    uint32_t ntoks = d.ntoks;
    cJSON *cj = cJSON_ParseWithLength(src, len);
    if (!cj) {
        fprintf(stderr, "cJSON failed on the %zu-byte body\n", len);
        return 1;
    }
    cJSON_Delete(cj);
    sl_arena_reset(&a);

    result sl_parse, cj_parse, sl_gw, cj_gw;
    volatile size_t sink = 0;
    MEASURE(sl_parse, len, budget, {
        sl_json_parse(&d, src, len, &a, NULL, NULL);
        sink += d.ntoks;
        sl_arena_reset(&a);
    });
    MEASURE(cj_parse, len, budget, {
        cJSON *j = cJSON_ParseWithLength(src, len);
        sink += j != NULL;
        cJSON_Delete(j);
    });
    MEASURE(sl_gw, len, budget, {
        sl_buf out;
        sl_buf_init(&out, 0);
        if (sl_json_parse(&d, src, len, &a, NULL, NULL) == 0) {
            int m = sl_json_obj_get(&d, 0, "model");
            sl_json_edit e = {d.toks[m].start, d.toks[m].end, SL_STR("\"claude-3-5-sonnet\"")};
            sl_json_splice(src, len, &e, 1, &out);
        }
        sink += out.len;
        sl_buf_free(&out);
        sl_arena_reset(&a);
    });
    MEASURE(cj_gw, len, budget, {
        cJSON *j = cJSON_ParseWithLength(src, len);
        cJSON_ReplaceItemInObject(j, "model", cJSON_CreateString("claude-3-5-sonnet"));
        char *s = cJSON_PrintUnformatted(j);
        sink += strlen(s);
        free(s);
        cJSON_Delete(j);
    });
    (void)sink;

    printf("| %6.1f KB | %5u | %8.0f MB/s | %9.0f | %8.0f MB/s | %9.0f | **%4.1fx** | %8.0f MB/s | %8.0f MB/s | "
           "**%4.1fx** |\n",
           (double)len / 1024, ntoks, sl_parse.mbps, sl_parse.ops, cj_parse.mbps, cj_parse.ops,
           sl_parse.ops / cj_parse.ops, sl_gw.mbps, cj_gw.mbps, sl_gw.ops / cj_gw.ops);
    sl_arena_free(&a);
    sl_buf_free(&body);
    return 0;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? strtod(argv[1], NULL) : 0.5; /* seconds per measurement */
    printf("| body | tokens | sl_json_parse | parses/s | cJSON_Parse+Delete | parses/s | parse speedup "
           "| sl gateway op | cJSON gateway op | gateway speedup |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    const size_t sizes[] = {1024, 27 * 1024, 260 * 1024};
    for (size_t i = 0; i < SL_ARRAY_LEN(sizes); i++)
        if (bench_size(sizes[i], budget)) return 1;
    printf("\ngateway op: sluice = parse + find \"model\" + splice; cJSON = parse + replace + PrintUnformatted "
           "+ free.\n");
    return 0;
}
