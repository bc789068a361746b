// fuzz-sources: src/json/json_read.c src/json/json_access.c src/json/json_write.c src/json/json_splice.c src/core/sl.c src/core/arena.c src/core/buf.c
/*
 * fuzz_json.c: the JSON reader, accessors, writer and splice helpers.
 *
 * For any input: parse. If it is valid, walk every token (iteration, lookups,
 * number accessors), decode every string, re-serialize the tree with the
 * writer and require the output to parse to the same shape; then remove and
 * add a member of the root object (if it is one) and require valid JSON.
 * Inputs that are rejected must be rejected with a parse/limit code only.
 * sl_json_top_members must agree with the parse: same verdict, and the same
 * member (span, type, emptiness) as sl_json_obj_get for a few key names.
 */
#include <stdio.h>
#include <stdlib.h>

#include "json/json.h"

#define CHECK(c)                                                                                           \
    do {                                                                                                   \
        if (!(c)) {                                                                                        \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                         \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-serializes token t, decoding strings; checks the accessors agree with the token tree. */
static void write_tok(const sl_json_doc *d, int t, sl_jw *w, sl_arena *a)
{
    sl_str s;
    switch (sl_json_type_of(d, t)) {
    case SL_JSON_OBJECT: {
        uint32_t n = 0;
        sl_jw_obj_begin(w);
        for (int k = sl_json_first(d, t); k >= 0; k = sl_json_next(d, k), n++) {
            CHECK(sl_json_type_of(d, k) == SL_JSON_STRING);
            CHECK(sl_json_str(d, k, a, &s) == 0);
            CHECK(sl_json_obj_get_str(d, t, s) >= 0); /* every key is found (maybe a later duplicate) */
            sl_jw_key_str(w, s);
            write_tok(d, sl_json_member_value(k), w, a);
        }
        CHECK(n == d->toks[t].count);
        sl_jw_obj_end(w);
        break;
    }
    case SL_JSON_ARRAY: {
        uint32_t n = 0;
        sl_jw_arr_begin(w);
        for (int e = sl_json_first(d, t); e >= 0; e = sl_json_next(d, e), n++) {
            CHECK(sl_json_arr_get(d, t, n) == e);
            write_tok(d, e, w, a);
        }
        CHECK(n == d->toks[t].count);
        sl_jw_arr_end(w);
        break;
    }
    case SL_JSON_STRING:
        CHECK(sl_json_str(d, t, a, &s) == 0);
        CHECK(s.n <= d->toks[t].end - d->toks[t].start - 2);
        sl_jw_str(w, s);
        break;
    case SL_JSON_NUMBER: {
        int64_t i;
        double x;
        (void)sl_json_int(d, t, &i);
        if (sl_json_double(d, t, &x) == 0 && (t & 1))
            sl_jw_double(w, x); /* exercise the shortest-double writer on half of them */
        else
            sl_jw_raw(w, sl_json_raw(d, t));
        break;
    }
    default: sl_jw_raw(w, sl_json_raw(d, t)); break;
    }
}

static void check_edit(const uint8_t *data, size_t size, sl_json_edit *e, sl_arena *a)
{
    sl_buf out;
    sl_buf_init(&out, 0);
    CHECK(sl_json_splice((const char *)data, size, e, 1, &out) == 0);
    sl_json_doc d2;
    CHECK(sl_json_parse(&d2, out.p, out.len, a, NULL, NULL) == 0);
    sl_buf_free(&out);
}

/* The tokenless scan agrees with the parse (rc: sl_json_parse's result). */
static void check_top_members(const uint8_t *data, size_t size, int rc, const sl_json_doc *d)
{
    sl_json_member m[] = {{.key = SL_STR("model")}, {.key = SL_STR("usage")}, {.key = SL_STR("a")}, {.key = SL_STR("")}};
    int trc = sl_json_top_members((const char *)data, size, m, 4);
    if (rc) { /* the parse's token bound can turn its EPARSE into ELIMIT on a broken document */
        CHECK(trc == SL_EPARSE || trc == SL_ELIMIT);
        CHECK(trc == rc || rc == SL_ELIMIT);
        return;
    }
    if (sl_json_type_of(d, 0) != SL_JSON_OBJECT) {
        CHECK(trc == SL_EINVAL);
        return;
    }
    CHECK(trc == SL_OK || trc == SL_EAGAIN);
    if (trc == SL_EAGAIN) return;
    for (size_t i = 0; i < 4; i++) {
        int t = sl_json_obj_get_str(d, 0, m[i].key);
        CHECK(m[i].found == (t >= 0));
        if (t < 0) continue;
        CHECK(m[i].start == d->toks[t].start && m[i].end == d->toks[t].end);
        CHECK(m[i].type == sl_json_type_of(d, t));
        bool container = m[i].type == SL_JSON_ARRAY || m[i].type == SL_JSON_OBJECT;
        CHECK(m[i].empty == (container && d->toks[t].count == 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_arena a;
    sl_arena_init(&a, 4096, 64u << 20);
    sl_json_doc d;
    size_t off = 0;
    int rc = sl_json_parse(&d, (const char *)data, size, &a, NULL, &off);
    check_top_members(data, size, rc, &d);
    if (rc) {
        CHECK(rc == SL_EPARSE || rc == SL_ELIMIT);
        CHECK(off <= size);
        sl_arena_free(&a);
        return 0;
    }
    CHECK(d.ntoks >= 1 && d.toks[0].next == d.ntoks);
    for (uint32_t i = 0; i < d.ntoks; i++) {
        const sl_json_tok *t = &d.toks[i];
        CHECK(t->start < t->end && t->end <= size);
        CHECK(t->next > i && t->next <= d.ntoks);
    }

    sl_buf b;
    sl_buf_init(&b, 0);
    sl_jw w;
    sl_jw_init(&w, &b);
    write_tok(&d, 0, &w, &a);
    CHECK(w.err == 0 && w.depth == 0);
    sl_json_doc d2;
    CHECK(sl_json_parse(&d2, b.p, b.len, &a, NULL, NULL) == 0);
    CHECK(d2.ntoks == d.ntoks);
    for (uint32_t i = 0; i < d.ntoks; i++) {
        sl_json_type t1 = sl_json_type_of(&d, (int)i), t2 = sl_json_type_of(&d2, (int)i);
        CHECK(t1 == t2);
        CHECK(d.toks[i].next == d2.toks[i].next && d.toks[i].count == d2.toks[i].count);
    }
    sl_buf_free(&b);

    if (sl_json_type_of(&d, 0) == SL_JSON_OBJECT) {
        sl_json_edit e;
        CHECK(sl_json_edit_add_member(&d, 0, SL_STR("k\"\x01\xff"), SL_STR("[1]"), &a, &e) == 0);
        check_edit(data, size, &e, &a);
        int k = sl_json_first(&d, 0);
        for (int n = 0; k >= 0; k = sl_json_next(&d, k), n++) {
            if (n > 8) break; /* first few members are enough to cover first/middle/last */
            CHECK(sl_json_edit_remove_member(&d, 0, k, &e) == 0);
            check_edit(data, size, &e, &a);
        }
    }
    sl_arena_free(&a);
    return 0;
}
