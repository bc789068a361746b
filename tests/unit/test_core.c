/*
 * test_core.c: unit tests for src/core: the slice helpers and glob matcher
 * (sl.c), the arena (arena.c) and the capped buffer (buf.c), including the
 * allocation failure hook that every other module's tests rely on to prove
 * their error paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/sl.h"

/* Every test leaves the failure hook disabled, even when an assertion fails mid-way. */
static int reset_alloc_hook(void **state)
{
    SL_UNUSED(state);
    sl_alloc_fail_after(0);
    return 0;
}

/* ---- sl.c: slices ---- */

static void test_str_basics(void **state)
{
    SL_UNUSED(state);
    assert_true(sl_str_eq(SL_STR("abc"), sl_str_from_cstr("abc")));
    assert_false(sl_str_eq(SL_STR("abc"), SL_STR("abd")));
    assert_false(sl_str_eq(SL_STR("abc"), SL_STR("ab")));
    assert_true(sl_str_eq(SL_STR_NULL, SL_STR(""))); /* empty equals empty, whatever the pointer */
    assert_int_equal(sl_str_from_cstr(NULL).n, 0);
    assert_true(sl_str_eq_lit(SL_STR("x-y"), "x-y"));

    assert_true(sl_str_case_eq(SL_STR("Content-Length"), SL_STR("content-length")));
    assert_false(sl_str_case_eq(SL_STR("Content-Length"), SL_STR("content-lengt")));
    /* Only ASCII letters fold: '[' (0x5B) is not 'z'+1 folded, '@' is not '`'. */
    assert_false(sl_str_case_eq(SL_STR("@"), SL_STR("`")));
    assert_false(sl_str_case_eq(SL_STR("["), SL_STR("{")));
    assert_false(sl_str_case_eq(SL_STR("\xc3\x84"), SL_STR("\xc3\xa4")));

    assert_true(sl_str_starts_with(SL_STR("Bearer abc"), SL_STR("Bearer ")));
    assert_false(sl_str_starts_with(SL_STR("Bear"), SL_STR("Bearer ")));
    assert_true(sl_str_starts_with(SL_STR("x"), SL_STR("")));

    sl_str t = sl_str_trim(SL_STR(" \t value \t"));
    assert_true(sl_str_eq_lit(t, "value"));
    assert_int_equal(sl_str_trim(SL_STR(" \t ")).n, 0);
    assert_int_equal(sl_str_trim(SL_STR_NULL).n, 0);
    /* Only SP and HTAB are optional whitespace in HTTP; CR/LF must stay visible. */
    assert_true(sl_str_eq_lit(sl_str_trim(SL_STR("\r\nv\r")), "\r\nv\r"));
}

/* The word-at-a-time sl_str_case_eq against a byte-at-a-time reference: every length
 * from 0 to 40, a difference (case-only or real) at every position, every byte value. */
static bool ref_case_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y) return false;
    }
    return true;
}

static void test_str_case_eq_words(void **state)
{
    SL_UNUSED(state);
    char a[48], b[48];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t i = 0; i < n; i++) a[i] = (char)('a' + (i * 7) % 26), b[i] = a[i];
        assert_true(sl_str_case_eq((sl_str){a, n}, (sl_str){b, n}));
        for (size_t pos = 0; pos < n; pos++) {
            for (int c = 0; c < 256; c++) {
                b[pos] = (char)c;
                assert_int_equal(sl_str_case_eq((sl_str){a, n}, (sl_str){b, n}), ref_case_eq(a, b, n));
                assert_int_equal(sl_str_case_eq((sl_str){b, n}, (sl_str){a, n}), ref_case_eq(b, a, n));
            }
            b[pos] = (char)(a[pos] - 32); /* upper case of a letter: still equal */
            assert_true(sl_str_case_eq((sl_str){a, n}, (sl_str){b, n}));
            b[pos] = a[pos];
        }
    }
}

static void test_strerror(void **state)
{
    SL_UNUSED(state);
    const int codes[] = {SL_OK,       SL_ENOMEM,   SL_EINVAL,    SL_ELIMIT,  SL_EAGAIN, SL_EPARSE,
                         SL_EIO,      SL_ETIMEOUT, SL_ENOTFOUND, SL_ECLOSED, SL_EEXIST};
    for (size_t i = 0; i < SL_ARRAY_LEN(codes); i++) {
        const char *s = sl_strerror(codes[i]);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (size_t j = 0; j < i; j++) assert_string_not_equal(s, sl_strerror(codes[j]));
    }
    assert_string_equal(sl_strerror(-12345), "unknown error");
}

/* ---- sl.c: sl_str_to_u64 ---- */

typedef struct u64_case {
    const char *in;
    uint64_t max;
    int rc;
    uint64_t want;
} u64_case;

static void test_str_to_u64_table(void **state)
{
    SL_UNUSED(state);
    static const u64_case cases[] = {
        {"0", 10, SL_OK, 0},
        {"7", 10, SL_OK, 7},
        {"10", 10, SL_OK, 10},  /* max itself is allowed */
        {"11", 10, SL_ELIMIT, 0},
        {"100", 10, SL_ELIMIT, 0},
        {"0010", 10, SL_OK, 10}, /* leading zeros are digits, not octal */
        {"", 10, SL_EINVAL, 0},
        {"-1", 10, SL_EINVAL, 0},
        {"+1", 10, SL_EINVAL, 0},
        {" 1", 10, SL_EINVAL, 0},
        {"1 ", 10, SL_EINVAL, 0},
        {"1a", 100, SL_EINVAL, 0},
        {"0x10", 100, SL_EINVAL, 0},
        {"1.5", 100, SL_EINVAL, 0},
        {"18446744073709551615", UINT64_MAX, SL_OK, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, SL_ELIMIT, 0}, /* one past: overflow, not wraparound */
        {"99999999999999999999", UINT64_MAX, SL_ELIMIT, 0},
        {"000000000000000000001", UINT64_MAX, SL_EINVAL, 0}, /* 21 characters: over the length bound */
        {"9223372036854775807", INT64_MAX, SL_OK, (uint64_t)INT64_MAX},
        {"9223372036854775808", INT64_MAX, SL_ELIMIT, 0},
        {"16384", 16384, SL_OK, 16384},
        {"16385", 16384, SL_ELIMIT, 0},
        {"0", 0, SL_OK, 0},
        {"1", 0, SL_ELIMIT, 0}, /* a digit larger than max must not wrap (max - d) around */
        {"7", 5, SL_ELIMIT, 0},
        {"5", 5, SL_OK, 5},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        uint64_t v = 0xdeadbeef;
        int rc = sl_str_to_u64(sl_str_from_cstr(cases[i].in), cases[i].max, &v);
        if (rc != cases[i].rc) fail_msg("sl_str_to_u64(\"%s\", %llu) = %d, want %d", cases[i].in,
                                        (unsigned long long)cases[i].max, rc, cases[i].rc);
        if (rc == SL_OK) {
            assert_int_equal(v, cases[i].want);
        } else {
            assert_int_equal(v, 0xdeadbeef); /* output untouched on error */
        }
    }
}

static void test_str_to_u64_not_nul_terminated(void **state)
{
    SL_UNUSED(state);
    /* Slices point into larger buffers: digits after n must not be read. */
    const char buf[] = "12345";
    uint64_t v = 0;
    assert_int_equal(sl_str_to_u64((sl_str){buf, 3}, 1000, &v), SL_OK);
    assert_int_equal(v, 123);
}

/* ---- sl.c: sl_glob_match ---- */

typedef struct glob_case {
    const char *pat, *s;
    bool match;
} glob_case;

static void test_glob_table(void **state)
{
    SL_UNUSED(state);
    static const glob_case cases[] = {
        {"", "", true},
        {"", "a", false},
        {"a", "", false},
        {"*", "", true},
        {"*", "anything", true},
        {"**", "", true},
        {"gpt-4o", "gpt-4o", true},
        {"gpt-4o", "gpt-4o-mini", false},
        {"gpt-4o", "GPT-4o", false}, /* model names are case-sensitive */
        {"deepseek-*", "deepseek-chat", true},
        {"deepseek-*", "deepseek-", true},
        {"deepseek-*", "deepseek", false},
        {"*-mini", "gpt-4o-mini", true},
        {"*-mini", "gpt-4o-mini-2", false},
        {"demo-?", "demo-a", true},
        {"demo-?", "demo-", false},
        {"demo-?", "demo-ab", false},
        {"?", "", false},
        {"a*b*c", "abc", true},
        {"a*b*c", "aXXbYYc", true},
        {"a*b*c", "aXXbYY", false},
        {"a*b*c", "acb", false},
        {"*a*", "bab", true},
        {"*a*", "bbb", false},
        {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, /* backtracking stays bounded */
        {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true},
        {"weather/*", "weather/get_weather", true},
        {"weather/*", "weatherx/get", false},
        {"*/get_*", "weather/get_weather", true},
        {"*.*", "v1.2", true},
        {"*x", "xxxx", true},
        {"x*", "x", true},
        {"*?", "", false},
        {"*?", "a", true},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        bool got = sl_glob_match(sl_str_from_cstr(cases[i].pat), sl_str_from_cstr(cases[i].s));
        if (got != cases[i].match)
            fail_msg("glob(\"%s\", \"%s\") = %d, want %d", cases[i].pat, cases[i].s, got, cases[i].match);
    }
}

static void test_glob_slices(void **state)
{
    SL_UNUSED(state);
    /* Pattern and subject are slices: characters past n are not part of them. */
    const char pat[] = "demo-*XYZ";
    const char s[] = "demo-chatQQQ";
    assert_true(sl_glob_match((sl_str){pat, 6}, (sl_str){s, 9}));
    assert_false(sl_glob_match((sl_str){pat, 5}, (sl_str){s, 9}));
}

/* ---- allocation wrapper and failure hook ---- */

static void test_alloc_fail_hook(void **state)
{
    SL_UNUSED(state);
    sl_alloc_fail_after(3);
    void *a = sl_malloc(8);
    void *b = sl_calloc(2, 8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(sl_malloc(8));      /* the 3rd fails */
    assert_null(sl_calloc(1, 1));   /* and every one after it */
    assert_null(sl_strndup("x", 1));
    void *r = sl_realloc(a, 64);
    assert_null(r);                  /* a failed realloc leaves the old block valid */
    sl_alloc_fail_after(0);
    void *c = sl_malloc(8);
    assert_non_null(c);
    sl_free(a);
    sl_free(b);
    sl_free(c);
    sl_free(NULL);

    sl_alloc_fail_after(1);
    assert_null(sl_malloc(1));       /* 1 = the very next allocation */
    sl_alloc_fail_after(0);
}

static void test_alloc_zero_sizes(void **state)
{
    SL_UNUSED(state);
    /* Zero-sized requests return a freeable non-NULL pointer, so NULL always means failure. */
    void *a = sl_malloc(0);
    void *b = sl_calloc(0, 0);
    void *c = sl_realloc(NULL, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    sl_free(a);
    sl_free(b);
    sl_free(c);
}

static void test_strndup(void **state)
{
    SL_UNUSED(state);
    char *d = sl_strndup("hello world", 5);
    assert_string_equal(d, "hello");
    sl_free(d);
    d = sl_strndup(NULL, 0);
    assert_string_equal(d, "");
    sl_free(d);
    d = sl_strdup("abc");
    assert_string_equal(d, "abc");
    sl_free(d);
}

/* ---- arena.c ---- */

static void test_arena_alignment_and_reuse(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 256, 0);
    for (size_t n = 0; n < 40; n++) {
        unsigned char *p = sl_arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xAB, n);
    }
    char *z = sl_arena_calloc(&a, 100);
    for (int i = 0; i < 100; i++) assert_int_equal(z[i], 0);
    sl_arena_free(&a);
    assert_null(a.head);
    assert_int_equal(a.total, 0);
}

static void test_arena_growth(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 64, 0);
    /* Allocations larger than the next block size get a block big enough for them. */
    char *big = sl_arena_alloc(&a, 10000);
    assert_non_null(big);
    memset(big, 1, 10000);
    assert_true(a.total >= 10000);
    /* Many small allocations: blocks grow geometrically, so total stays within a small factor. */
    size_t asked = 10000;
    for (int i = 0; i < 5000; i++) {
        char *p = sl_arena_alloc(&a, 32);
        assert_non_null(p);
        p[0] = (char)i, p[31] = (char)i;
        asked += 32;
    }
    assert_true(a.total >= asked);
    assert_true(a.total <= 4 * asked);
    /* Data written earlier survives later growth (blocks are chained, not moved). */
    for (int i = 0; i < 10000; i++) assert_int_equal(big[i], 1);
    sl_arena_free(&a);
}

static void test_arena_cap(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 1024, 4096);
    size_t got = 0;
    while (sl_arena_alloc(&a, 512)) got += 512;
    assert_true(got >= 2048);        /* the cap is usable, not just the first block */
    assert_true(a.total <= 4096);    /* and never exceeded */
    assert_null(sl_arena_alloc(&a, 8192));
    assert_true(a.total <= 4096);
    sl_arena_free(&a);

    /* One allocation larger than the whole cap fails at once, without a partial block. */
    sl_arena_init(&a, 64, 1000);
    assert_null(sl_arena_alloc(&a, 2000));
    assert_int_equal(a.total, 0);
    sl_arena_free(&a);
}

static void test_arena_reset(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 128, 0);
    void *first = sl_arena_alloc(&a, 16);
    for (int i = 0; i < 100; i++) assert_non_null(sl_arena_alloc(&a, 100));
    size_t before = a.total;
    sl_arena_reset(&a);
    assert_true(a.total < before);
    assert_int_equal(a.total, 128); /* only the first block is kept */
    assert_non_null(a.head);
    /* After reset the kept block is reused from its start, without a new heap block. */
    void *again = sl_arena_alloc(&a, 16);
    assert_ptr_equal(again, first);
    assert_int_equal(a.total, 128);
    sl_arena_free(&a);

    /* An arena reset per request keeps one overflow block as a spare: the next request
     * that overflows the first block reuses it instead of allocating. */
    sl_arena_init(&a, 256, 0);
    assert_non_null(sl_arena_alloc(&a, 200));
    assert_non_null(sl_arena_alloc(&a, 200)); /* overflow: a second block of 512 */
    assert_int_equal(a.total, 256 + 512);
    sl_arena_reset(&a);
    assert_int_equal(a.total, 256);
    assert_non_null(a.spare);
    for (int round = 0; round < 5; round++) {
        sl_alloc_fail_after(1); /* no heap allocation from here: the spare must serve */
        assert_non_null(sl_arena_alloc(&a, 200));
        assert_non_null(sl_arena_alloc(&a, 200));
        sl_alloc_fail_after(0);
        assert_int_equal(a.total, 256 + 512);
        sl_arena_reset(&a);
        assert_int_equal(a.total, 256);
    }
    /* A need larger than the spare gets a new block; the larger one is kept after reset. */
    assert_non_null(sl_arena_alloc(&a, 200));
    assert_non_null(sl_arena_alloc(&a, 2000));
    sl_arena_reset(&a);
    sl_alloc_fail_after(1);
    assert_non_null(sl_arena_alloc(&a, 200));
    assert_non_null(sl_arena_alloc(&a, 2000));
    sl_alloc_fail_after(0);
    sl_arena_free(&a);
    assert_null(a.spare);

    sl_arena_init(&a, 128, 0);
    sl_arena_reset(&a); /* reset of an empty arena is a no-op */
    assert_null(a.head);
    sl_arena_free(&a);
}

static void test_arena_strings(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 64, 0);
    char *s = sl_arena_strndup(&a, "gateway!", 7);
    assert_string_equal(s, "gateway");
    sl_str c = sl_arena_str(&a, SL_STR("slice"));
    assert_true(sl_str_eq_lit(c, "slice"));
    assert_int_equal(c.p[c.n], '\0');
    char *f = sl_arena_printf(&a, "%s-%d", "demo", 42);
    assert_string_equal(f, "demo-42");
    /* Longer than the first block: printf measures first, then allocates. */
    char longs[3000];
    memset(longs, 'q', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    char *l = sl_arena_printf(&a, "<%s>", longs);
    assert_int_equal(strlen(l), sizeof longs + 1);
    assert_int_equal(l[0], '<');
    assert_int_equal(l[sizeof longs], '>');
    sl_arena_free(&a);
}

static void test_arena_alloc_failure(void **state)
{
    SL_UNUSED(state);
    sl_arena a;
    sl_arena_init(&a, 64, 0);
    assert_non_null(sl_arena_alloc(&a, 16));
    sl_alloc_fail_after(1);
    assert_null(sl_arena_alloc(&a, 4096)); /* needs a new block: fails */
    assert_non_null(sl_arena_alloc(&a, 16)); /* fits the current block: no heap call */
    assert_null(sl_arena_printf(&a, "%4096d", 1));
    sl_str s = sl_arena_str(&a, (sl_str){(const char[5000]){0}, 5000});
    assert_null(s.p);
    assert_int_equal(s.n, 0);
    sl_alloc_fail_after(0);
    sl_arena_free(&a);
}

/* ---- buf.c ---- */

static void test_buf_append_basic(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_append_cstr(&b, "hello"), SL_OK);
    assert_int_equal(sl_buf_append_str(&b, SL_STR(", ")), SL_OK);
    assert_int_equal(sl_buf_append(&b, "world!!", 5), SL_OK);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.p, "hello, world"); /* always NUL-terminated */
    assert_int_equal(sl_buf_append(&b, NULL, 0), SL_OK);
    assert_true(sl_str_eq_lit(sl_buf_str(&b), "hello, world"));
    sl_buf_clear(&b);
    assert_int_equal(b.len, 0);
    sl_buf_free(&b);
    assert_null(b.p);
    sl_buf_free(&b); /* double free of an emptied buffer is harmless */
}

static void test_buf_u64(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_append_u64(&b, 0), SL_OK);
    assert_int_equal(sl_buf_append_cstr(&b, " "), SL_OK);
    assert_int_equal(sl_buf_append_u64(&b, 1234567890), SL_OK);
    assert_int_equal(sl_buf_append_cstr(&b, " "), SL_OK);
    assert_int_equal(sl_buf_append_u64(&b, UINT64_MAX), SL_OK);
    assert_string_equal(b.p, "0 1234567890 18446744073709551615");
    sl_buf_free(&b);
}

static void test_buf_cap(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 10);
    assert_int_equal(sl_buf_append_cstr(&b, "0123456"), SL_OK);
    char *before_p = b.p;
    size_t before_cap = b.cap;
    /* Over the cap: SL_ELIMIT and the buffer is exactly as it was. */
    assert_int_equal(sl_buf_append_cstr(&b, "7890"), SL_ELIMIT);
    assert_int_equal(b.len, 7);
    assert_ptr_equal(b.p, before_p);
    assert_int_equal(b.cap, before_cap);
    assert_string_equal(b.p, "0123456");
    assert_int_equal(sl_buf_appendf(&b, "%s", "toolong"), SL_ELIMIT);
    assert_string_equal(b.p, "0123456");
    assert_int_equal(sl_buf_append_u64(&b, 12345), SL_ELIMIT);
    assert_string_equal(b.p, "0123456");
    assert_int_equal(sl_buf_reserve(&b, 4), SL_ELIMIT);
    /* Up to the cap exactly is allowed. */
    assert_int_equal(sl_buf_append_cstr(&b, "789"), SL_OK);
    assert_int_equal(b.len, 10);
    assert_int_equal(sl_buf_append(&b, "x", 1), SL_ELIMIT);
    assert_int_equal(sl_buf_append(&b, "", 0), SL_OK);
    assert_string_equal(b.p, "0123456789");
    /* A huge request cannot overflow the length arithmetic. */
    assert_int_equal(sl_buf_reserve(&b, SIZE_MAX), SL_ELIMIT);
    sl_buf_free(&b);

    sl_buf_init(&b, 0); /* 0 = no cap, but SIZE_MAX still fails cleanly */
    assert_int_equal(sl_buf_reserve(&b, SIZE_MAX), SL_ELIMIT);
    sl_buf_free(&b);
}

static void test_buf_appendf_long(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_appendf(&b, "[%d]", 1), SL_OK);
    /* Longer than appendf's stack buffer: takes the reserve-then-print path. */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sl_buf_appendf(&b, "<%s>", big), SL_OK);
    assert_int_equal(b.len, 3 + 1 + 999 + 1);
    assert_int_equal(b.p[b.len], '\0');
    assert_memory_equal(b.p, "[1]<zzz", 7);
    assert_int_equal(b.p[b.len - 1], '>');
    /* Exactly at the stack buffer's edge (255 and 256 characters). */
    sl_buf_clear(&b);
    assert_int_equal(sl_buf_appendf(&b, "%255d", 7), SL_OK);
    assert_int_equal(b.len, 255);
    sl_buf_clear(&b);
    assert_int_equal(sl_buf_appendf(&b, "%256d", 7), SL_OK);
    assert_int_equal(b.len, 256);
    assert_int_equal(b.p[255], '7');
    assert_int_equal(b.p[256], '\0');
    sl_buf_free(&b);

    /* Long output against a cap it does not fit: refused whole. */
    sl_buf_init(&b, 500);
    assert_int_equal(sl_buf_appendf(&b, "%s", big), SL_ELIMIT);
    assert_int_equal(b.len, 0);
    sl_buf_free(&b);
}

static void test_buf_consume(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_consume(&b, 5); /* on an empty, unallocated buffer: no-op */
    assert_int_equal(b.len, 0);
    assert_int_equal(sl_buf_append_cstr(&b, "GET / HTTP/1.1\r\n"), SL_OK);
    sl_buf_consume(&b, 4);
    assert_string_equal(b.p, "/ HTTP/1.1\r\n");
    sl_buf_consume(&b, 0);
    assert_string_equal(b.p, "/ HTTP/1.1\r\n");
    sl_buf_consume(&b, b.len);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    assert_int_equal(sl_buf_append_cstr(&b, "abc"), SL_OK);
    sl_buf_consume(&b, 1000); /* more than held: empties */
    assert_int_equal(b.len, 0);
    sl_buf_free(&b);
}

static void test_buf_detach(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 100);
    assert_int_equal(sl_buf_append_cstr(&b, "payload"), SL_OK);
    size_t len = 0;
    char *p = sl_buf_detach(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 7);
    assert_string_equal(p, "payload");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100); /* the cap survives: the buffer can be reused */
    sl_free(p);

    /* Detaching a never-used buffer gives an empty string, not NULL. */
    p = sl_buf_detach(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 0);
    assert_string_equal(p, "");
    sl_free(p);
    p = sl_buf_detach(&b, NULL);
    sl_free(p);
    sl_buf_free(&b);
}

static void test_buf_alloc_failure(void **state)
{
    SL_UNUSED(state);
    sl_buf b;
    sl_buf_init(&b, 0);
    assert_int_equal(sl_buf_append_cstr(&b, "keep"), SL_OK);
    size_t cap = b.cap;
    char big[4096];
    memset(big, 'x', sizeof big);
    sl_alloc_fail_after(1);
    assert_int_equal(sl_buf_append(&b, big, sizeof big), SL_ENOMEM);
    assert_int_equal(b.len, 4); /* unchanged on failure */
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.p, "keep");
    assert_int_equal(sl_buf_append_cstr(&b, "!"), SL_OK); /* fits: no allocation needed */
    assert_int_equal(sl_buf_appendf(&b, "%2000d", 1), SL_ENOMEM);
    assert_string_equal(b.p, "keep!");
    sl_alloc_fail_after(0);
    sl_buf_free(&b);

    sl_buf_init(&b, 0);
    sl_alloc_fail_after(1);
    assert_null(sl_buf_detach(&b, NULL)); /* needs an allocation for the empty string */
    sl_alloc_fail_after(0);
    sl_buf_free(&b);
}

/*
 * The pattern other modules' tests use: fail the 1st, 2nd, ... allocation
 * until the operation succeeds; each failing run must report SL_ENOMEM and
 * leak nothing (ASan's leak checker verifies the latter).
 */
static int build_three(sl_buf *out)
{
    sl_arena a;
    sl_arena_init(&a, 16, 0);
    int rc = SL_OK;
    for (int i = 0; i < 3 && rc == SL_OK; i++) {
        char *s = sl_arena_printf(&a, "part-%d-%0200d;", i, i);
        rc = s ? sl_buf_append_cstr(out, s) : SL_ENOMEM;
    }
    sl_arena_free(&a);
    return rc;
}

static void test_alloc_failure_sweep(void **state)
{
    SL_UNUSED(state);
    int failures = 0;
    for (long n = 1; n < 100; n++) {
        sl_buf b;
        sl_buf_init(&b, 0);
        sl_alloc_fail_after(n);
        int rc = build_three(&b);
        sl_alloc_fail_after(0);
        sl_buf_free(&b);
        if (rc == SL_OK) break;
        assert_int_equal(rc, SL_ENOMEM);
        failures++;
    }
    assert_true(failures > 0);
    assert_true(failures < 99); /* the sweep reached success */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_str_basics, reset_alloc_hook),
        cmocka_unit_test_teardown(test_str_case_eq_words, reset_alloc_hook),
        cmocka_unit_test_teardown(test_strerror, reset_alloc_hook),
        cmocka_unit_test_teardown(test_str_to_u64_table, reset_alloc_hook),
        cmocka_unit_test_teardown(test_str_to_u64_not_nul_terminated, reset_alloc_hook),
        cmocka_unit_test_teardown(test_glob_table, reset_alloc_hook),
        cmocka_unit_test_teardown(test_glob_slices, reset_alloc_hook),
        cmocka_unit_test_teardown(test_alloc_fail_hook, reset_alloc_hook),
        cmocka_unit_test_teardown(test_alloc_zero_sizes, reset_alloc_hook),
        cmocka_unit_test_teardown(test_strndup, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_alignment_and_reuse, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_growth, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_cap, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_reset, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_strings, reset_alloc_hook),
        cmocka_unit_test_teardown(test_arena_alloc_failure, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_append_basic, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_u64, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_cap, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_appendf_long, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_consume, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_detach, reset_alloc_hook),
        cmocka_unit_test_teardown(test_buf_alloc_failure, reset_alloc_hook),
        cmocka_unit_test_teardown(test_alloc_failure_sweep, reset_alloc_hook),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
