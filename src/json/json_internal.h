/*
 * json_internal.h: byte-level helpers shared by the JSON reader, accessors and
 * writer: the fast "find the next interesting byte in a string" scan, UTF-8
 * sequence validation and escape decoding. Private to src/json/.
 *
 * The scan is the hot loop of the whole module: LLM bodies are mostly long
 * string contents, so finding the closing quote 16 bytes at a time (SSE2, or
 * 8 at a time with SWAR elsewhere) is what makes the reader fast.
 */
#ifndef SL_JSON_INTERNAL_H
#define SL_JSON_INTERNAL_H

#include "json/json.h"

#if defined(__SSE2__) && !defined(SL_JSON_NO_SIMD) /* SL_JSON_NO_SIMD: test the SWAR path */
#include <emmintrin.h>
#endif

/* 1 for bytes a string scan must stop at: '"', '\\', controls, non-ASCII. */
extern const unsigned char sl_json_special[256];

/*
 * Returns the first p in [p, end) whose byte is '"', '\\', < 0x20 or >= 0x80,
 * or end. Non-ASCII stops the scan so the caller can validate UTF-8.
 */
static inline const unsigned char *json_scan_plain(const unsigned char *p, const unsigned char *end)
{
#if defined(__SSE2__) && !defined(SL_JSON_NO_SIMD) /* SL_JSON_NO_SIMD: test the SWAR path */
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), sp = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed compare: bytes 0x00-0x1f and 0x80-0xff are both "less than 0x20" */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)), _mm_cmplt_epi8(v, sp));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t xq = x ^ (ones * '"'), xb = x ^ (ones * '\\');
        uint64_t hit = ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | ((x - ones * 0x20) & ~x) | x;
        if (hit & highs) break; /* something in these 8 bytes: locate it below */
        p += 8;
    }
#endif
    while (p < end && !sl_json_special[*p]) p++;
    return p;
}

/*
 * Length (2..4) of the valid UTF-8 sequence starting at p (p[0] >= 0x80), or 0
 * if it is invalid: overlong forms, surrogates and code points past U+10FFFF
 * are rejected, as RFC 3629 requires.
 */
static inline int json_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3) return 0;
        unsigned c1 = p[1];
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return 0;
        return ((c1 & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4) return 0;
        unsigned c1 = p[1];
        if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return 0;
        return ((c1 & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80) ? 4 : 0;
    }
    return 0;
}

static inline int json_hexval(unsigned c)
{
    if (c - '0' < 10) return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6) return (int)(c - 'a' + 10);
    return -1;
}

/* The 4 hex digits at p as a code unit, or -1. The caller guarantees 4 bytes. */
static inline long json_hex4(const unsigned char *p)
{
    int a = json_hexval(p[0]), b = json_hexval(p[1]), c = json_hexval(p[2]), d = json_hexval(p[3]);
    if ((a | b | c | d) < 0) return -1;
    return (long)((a << 12) | (b << 8) | (c << 4) | d);
}

static inline size_t json_put_utf8(unsigned char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decodes the escape at *pp (which points at the backslash) of an already
 * validated string into out[0..4) and advances *pp past it. Returns the
 * number of bytes written. Validation happened in the reader, so no checks.
 */
static inline size_t json_unescape_one(const unsigned char **pp, unsigned char out[4])
{
    const unsigned char *p = *pp + 1;
    unsigned c = *p++;
    size_t n = 1;
    switch (c) {
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u': {
        uint32_t cp = (uint32_t)json_hex4(p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* the reader checked a low surrogate follows */
            uint32_t lo = (uint32_t)json_hex4(p + 2);
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        n = json_put_utf8(out, cp);
        break;
    }
    default: out[0] = (unsigned char)c; break; /* '"', '\\', '/' */
    }
    *pp = p;
    return n;
}

#endif
