/* series.c: see series.h. */
#include "telemetry/series.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* A value cut at SL_SERIES_MAX_VALUE bytes, backed off to a UTF-8 character boundary. */
static sl_str cut_value(sl_str v)
{
    if (!v.p) return (sl_str){"", 0};
    if (v.n <= SL_SERIES_MAX_VALUE) return v;
    size_t n = SL_SERIES_MAX_VALUE;
    while (n > 0 && ((unsigned char)v.p[n] & 0xC0) == 0x80) n--;
    return (sl_str){v.p, n};
}

int sl_prom_label_value(sl_buf *b, sl_str v)
{
    v = cut_value(v);
    int rc = SL_OK;
    size_t run = 0;
    for (size_t i = 0; i < v.n && rc == SL_OK; i++) {
        const char *esc = v.p[i] == '"' ? "\\\"" : v.p[i] == '\\' ? "\\\\" : v.p[i] == '\n' ? "\\n" : NULL;
        if (!esc) continue;
        rc = sl_buf_append(b, v.p + run, i - run);
        if (rc == SL_OK) rc = sl_buf_append_cstr(b, esc);
        run = i + 1;
    }
    if (rc == SL_OK) rc = sl_buf_append(b, v.p + run, v.n - run);
    return rc;
}

static int render_labels(const sl_family *f, const sl_str *values, sl_buf *b)
{
    int rc = SL_OK;
    for (size_t i = 0; i < f->nlabels && rc == SL_OK; i++) {
        rc = sl_buf_appendf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
        if (rc == SL_OK) rc = sl_prom_label_value(b, values[i]);
        if (rc == SL_OK) rc = sl_buf_append(b, "\"", 1);
    }
    return rc;
}

int sl_family_init(sl_family *f, size_t cap)
{
    if (f->nlabels > SL_SERIES_MAX_LABELS || f->nbounds > SL_SERIES_MAX_BUCKETS || cap == 0 || cap > 1000000)
        return SL_EINVAL;
    f->cap = cap;
    /* histogram: one cell per bucket (+Inf included), then the sum's bits */
    f->width = f->kind == SL_METRIC_HISTOGRAM ? f->nbounds + 2 : 1;
    f->nslots = pow2_at_least(cap * 2);
    atomic_store(&f->nseries, 0);
    f->slots = sl_calloc(f->nslots, sizeof(*f->slots));
    sl_str others[SL_SERIES_MAX_LABELS];
    for (size_t i = 0; i < SL_SERIES_MAX_LABELS; i++) others[i] = SL_STR(SL_SERIES_OTHER);
    sl_buf b;
    sl_buf_init(&b, 4096);
    int rc = render_labels(f, others, &b);
    if (rc == SL_OK && sl_buf_append(&b, "", 1) == SL_OK) f->other_labels = sl_buf_detach(&b, NULL);
    sl_buf_free(&b);
    if (f->kind == SL_METRIC_GAUGE) f->global = sl_calloc(cap + 1, sizeof(uint64_t));
    if (!f->slots || !f->other_labels || (f->kind == SL_METRIC_GAUGE && !f->global)) {
        sl_family_free(f);
        return SL_ENOMEM;
    }
    f->other = (sl_series){.index = (uint32_t)cap, .labels = f->other_labels};
    return SL_OK;
}

void sl_family_free(sl_family *f)
{
    for (size_t i = 0; f->slots && i < f->nslots; i++) sl_free(atomic_load(&f->slots[i]));
    for (size_t i = 0; i < SL_SERIES_MAX_SHARDS; i++) {
        sl_free((void *)atomic_load(&f->shards[i]));
        atomic_store(&f->shards[i], NULL);
    }
    sl_free(f->slots);
    sl_free(f->other_labels);
    sl_free((void *)f->global);
    f->slots = NULL, f->other_labels = NULL, f->global = NULL;
    f->cap = f->nslots = 0;
}

/* FNV-1a over the length-prefixed key. */
static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
    return h;
}

static sl_series *new_series(const sl_family *f, const sl_str *values, const char *key, size_t keylen, uint64_t h)
{
    sl_buf b;
    sl_buf_init(&b, 8192);
    if (render_labels(f, values, &b) != SL_OK || sl_buf_append(&b, "", 1) != SL_OK) {
        sl_buf_free(&b);
        return NULL;
    }
    sl_series *s = sl_malloc(sizeof(*s) + keylen + b.len);
    if (s) {
        char *k = (char *)(s + 1);
        memcpy(k, key, keylen);
        memcpy(k + keylen, b.p, b.len);
        *s = (sl_series){.hash = h, .keylen = (uint16_t)keylen, .key = k, .labels = k + keylen};
    }
    sl_buf_free(&b);
    return s;
}

static bool same_key(const sl_series *s, uint64_t h, const char *key, size_t keylen)
{
    return s->hash == h && s->keylen == keylen && memcmp(s->key, key, keylen) == 0;
}

long sl_family_series(sl_family *f, const sl_str *values, size_t nvalues)
{
    if (!f->slots || nvalues != f->nlabels) return -1;
    char key[SL_SERIES_MAX_LABELS * (SL_SERIES_MAX_VALUE + 1)];
    size_t keylen = 0;
    for (size_t i = 0; i < nvalues; i++) {
        sl_str v = cut_value(values[i]);
        key[keylen++] = (char)v.n;
        memcpy(key + keylen, v.p, v.n);
        keylen += v.n;
    }
    uint64_t h = hash_key(key, keylen);
    size_t mask = f->nslots - 1;
    sl_series *mine = NULL;
    for (size_t probe = 0; probe < f->nslots; probe++) {
        _Atomic(sl_series *) *slot = &f->slots[(h + probe) & mask];
        sl_series *s = atomic_load_explicit(slot, memory_order_acquire);
        if (s) {
            if (same_key(s, h, key, keylen)) {
                sl_free(mine); /* another worker published the same label set first; its index is kept */
                return s->index;
            }
            continue;
        }
        if (!mine) {
            /* New label set: claim an index first, so the table never holds more than cap series. */
            if (atomic_load_explicit(&f->nseries, memory_order_relaxed) >= f->cap) return (long)f->cap;
            size_t idx = atomic_fetch_add_explicit(&f->nseries, 1, memory_order_relaxed);
            if (idx >= f->cap) return (long)f->cap;
            if (!(mine = new_series(f, values, key, keylen, h))) return -1;
            mine->index = (uint32_t)idx;
        }
        sl_series *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(slot, &expected, mine, memory_order_acq_rel, memory_order_acquire))
            return mine->index;
        if (same_key(expected, h, key, keylen)) {
            sl_free(mine);
            return expected->index;
        }
    }
    sl_free(mine);
    return (long)f->cap; /* unreachable: the table has twice as many slots as series */
}

/* The shard's cells, allocated by its owner on first use. */
static _Atomic uint64_t *shard_cells(sl_family *f, int shard)
{
    if (shard < 0 || shard >= SL_SERIES_MAX_SHARDS || !f->slots) return NULL;
    _Atomic uint64_t *c = atomic_load_explicit(&f->shards[shard], memory_order_acquire);
    if (c) return c;
    c = sl_calloc((f->cap + 1) * f->width, sizeof(uint64_t));
    if (c) atomic_store_explicit(&f->shards[shard], c, memory_order_release);
    return c;
}

/* Single writer per cell: a plain read-modify-write with relaxed atomics, no locked instruction. */
static inline void cell_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static inline uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline void cell_addf(_Atomic uint64_t *c, double v)
{
    double cur = bitsd(atomic_load_explicit(c, memory_order_relaxed));
    atomic_store_explicit(c, dbits(cur + v), memory_order_relaxed);
}

static bool valid(const sl_family *f, long series) { return series >= 0 && (size_t)series <= f->cap; }

void sl_family_add(sl_family *f, int shard, long series, uint64_t v)
{
    _Atomic uint64_t *c = valid(f, series) ? shard_cells(f, shard) : NULL;
    if (c) cell_add(&c[(size_t)series * f->width], v);
}

void sl_family_addf(sl_family *f, int shard, long series, double v)
{
    _Atomic uint64_t *c = valid(f, series) && isfinite(v) ? shard_cells(f, shard) : NULL;
    if (c) cell_addf(&c[(size_t)series * f->width], v);
}

size_t sl_hist_bucket(const double *bounds, size_t nbounds, double v)
{
    size_t i = 0;
    while (i < nbounds && v > bounds[i]) i++;
    return i;
}

void sl_family_observe(sl_family *f, int shard, long series, double v)
{
    _Atomic uint64_t *c = valid(f, series) && !isnan(v) ? shard_cells(f, shard) : NULL;
    if (!c) return;
    _Atomic uint64_t *row = &c[(size_t)series * f->width];
    cell_add(&row[sl_hist_bucket(f->bounds, f->nbounds, v)], 1);
    cell_addf(&row[f->nbounds + 1], v);
}

void sl_family_set(sl_family *f, long series, double v)
{
    if (f->global && valid(f, series)) atomic_store_explicit(&f->global[series], dbits(v), memory_order_relaxed);
}

/* ---- scrape side ---------------------------------------------------------- */

static uint64_t sum_cells(const sl_family *f, size_t cell)
{
    uint64_t t = 0;
    for (size_t s = 0; s < SL_SERIES_MAX_SHARDS; s++) {
        _Atomic uint64_t *c = atomic_load_explicit((_Atomic(_Atomic uint64_t *) *)&f->shards[s], memory_order_acquire);
        if (c) t += atomic_load_explicit(&c[cell], memory_order_relaxed);
    }
    return t;
}

static double sum_cells_f(const sl_family *f, size_t cell)
{
    double t = 0;
    for (size_t s = 0; s < SL_SERIES_MAX_SHARDS; s++) {
        _Atomic uint64_t *c = atomic_load_explicit((_Atomic(_Atomic uint64_t *) *)&f->shards[s], memory_order_acquire);
        if (c) t += bitsd(atomic_load_explicit(&c[cell], memory_order_relaxed));
    }
    return t;
}

uint64_t sl_family_bucket(const sl_family *f, long series, size_t b)
{
    if (!valid(f, series) || f->kind != SL_METRIC_HISTOGRAM || b > f->nbounds) return 0;
    return sum_cells(f, (size_t)series * f->width + b);
}

uint64_t sl_family_count(const sl_family *f, long series)
{
    if (!valid(f, series)) return 0;
    if (f->kind != SL_METRIC_HISTOGRAM) return sum_cells(f, (size_t)series * f->width);
    uint64_t n = 0;
    for (size_t b = 0; b <= f->nbounds; b++) n += sl_family_bucket(f, series, b);
    return n;
}

double sl_family_value(const sl_family *f, long series)
{
    if (!valid(f, series)) return 0;
    if (f->kind == SL_METRIC_GAUGE) return bitsd(atomic_load_explicit(&f->global[series], memory_order_relaxed));
    if (f->kind == SL_METRIC_HISTOGRAM) return sum_cells_f(f, (size_t)series * f->width + f->nbounds + 1);
    if (f->kind == SL_METRIC_FCOUNTER) return sum_cells_f(f, (size_t)series * f->width);
    return (double)sum_cells(f, (size_t)series * f->width);
}

/* Numbers as Prometheus reads them: integers without exponent, others shortest round-trip. */
static int append_num(sl_buf *out, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) return sl_buf_appendf(out, "%.0f", v);
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    return sl_buf_append_cstr(out, tmp);
}

static int render_histogram(const sl_family *f, const sl_series *s, sl_buf *out)
{
    uint64_t cum = 0;
    int rc = SL_OK;
    for (size_t b = 0; b <= f->nbounds && rc == SL_OK; b++) {
        cum += sl_family_bucket(f, s->index, b);
        rc = sl_buf_appendf(out, "%s_bucket{%s%sle=\"", f->name, s->labels, f->nlabels ? "," : "");
        if (rc == SL_OK) rc = b < f->nbounds ? append_num(out, f->bounds[b]) : sl_buf_append_cstr(out, "+Inf");
        if (rc == SL_OK) rc = sl_buf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
    }
    if (rc == SL_OK) rc = sl_buf_appendf(out, "%s_sum{%s} ", f->name, s->labels);
    if (rc == SL_OK) rc = append_num(out, sl_family_value(f, s->index));
    if (rc == SL_OK) rc = sl_buf_appendf(out, "\n%s_count{%s} %llu\n", f->name, s->labels, (unsigned long long)cum);
    return rc;
}

static int render_series(const sl_family *f, const sl_series *s, sl_buf *out)
{
    if (f->kind == SL_METRIC_HISTOGRAM) return render_histogram(f, s, out);
    int rc = sl_buf_appendf(out, "%s{%s} ", f->name, s->labels);
    if (rc == SL_OK && f->kind == SL_METRIC_COUNTER)
        rc = sl_buf_appendf(out, "%llu", (unsigned long long)sl_family_count(f, s->index));
    else if (rc == SL_OK) rc = append_num(out, sl_family_value(f, s->index));
    if (rc == SL_OK) rc = sl_buf_append(out, "\n", 1);
    return rc;
}

int sl_family_render(const sl_family *f, sl_buf *out)
{
    static const char *const types[] = {"counter", "counter", "gauge", "histogram"};
    int rc = sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
    for (size_t i = 0; f->slots && i < f->nslots && rc == SL_OK; i++) {
        const sl_series *s = atomic_load_explicit((_Atomic(sl_series *) *)&f->slots[i], memory_order_acquire);
        if (s) rc = render_series(f, s, out);
    }
    /* The overflow series appears once something landed in it. */
    if (rc == SL_OK && f->slots && atomic_load(&f->nseries) >= f->cap) {
        bool used = f->kind == SL_METRIC_GAUGE ? sl_family_value(f, (long)f->cap) != 0
                                               : sl_family_count(f, (long)f->cap) != 0 || sl_family_value(f, (long)f->cap) != 0;
        if (used) rc = render_series(f, &f->other, out);
    }
    return rc;
}
