/*
 * series.h: Prometheus metric families with per-worker shards and no lock on
 * the request path (docs/observability.md, "How metrics are recorded").
 *
 * A family (counter, float counter, gauge or histogram) has a fixed list of
 * label names. Its label sets ("series") live in one process-wide hash table
 * of fixed size, shared by every worker: a series is published once, with a
 * compare-and-swap into an empty slot, and never changes or moves after that,
 * so lookups are plain loads. Each series gets a dense index.
 *
 * Values live in shards, one per worker: an array of 64-bit cells indexed by
 * series index, written by that worker only (a relaxed load and store, no
 * locked instruction) and read by the scraper, which sums the shards at
 * scrape time. Counters never go backwards; a scrape may see one request's
 * histogram buckets before its sum, never a count that disagrees with its
 * buckets (the count is rendered as the sum of the buckets).
 *
 * Cardinality is capped: at most `cap` label sets per family; later ones are
 * counted in one overflow series whose every label is "__other__". Label
 * values are cut at SL_SERIES_MAX_VALUE bytes.
 *
 * Gauges are process-wide values set from any thread (no shards).
 */
#ifndef SL_SERIES_H
#define SL_SERIES_H

#include <stdatomic.h>

#include "core/buf.h"
#include "core/sl.h"

#define SL_SERIES_MAX_SHARDS 1024  /* server.workers max; the gateway uses worker id as shard */
#define SL_SERIES_MAX_LABELS 6
#define SL_SERIES_MAX_VALUE 128    /* bytes of one label value */
#define SL_SERIES_MAX_BUCKETS 32
#define SL_SERIES_OTHER "__other__"

typedef enum {
    SL_METRIC_COUNTER = 0,  /* uint64 */
    SL_METRIC_FCOUNTER,     /* double, e.g. USD */
    SL_METRIC_GAUGE,        /* double, set */
    SL_METRIC_HISTOGRAM,    /* double observations, explicit bucket bounds */
} sl_metric_kind;

typedef struct sl_series {
    uint64_t hash;
    uint32_t index;
    uint16_t keylen;
    const char *key;     /* length-prefixed label values, for lookup */
    const char *labels;  /* rendered: name="value",... */
} sl_series;

typedef struct sl_family {
    const char *name, *help;
    sl_metric_kind kind;
    const char *labels[SL_SERIES_MAX_LABELS];
    size_t nlabels;
    const double *bounds; /* histogram upper bounds, ascending, +Inf implied */
    size_t nbounds;
    /* set by sl_family_init */
    size_t cap, width, nslots;
    _Atomic(sl_series *) *slots;
    _Atomic size_t nseries;
    sl_series other;       /* the overflow series, index == cap */
    char *other_labels;
    _Atomic(_Atomic uint64_t *) shards[SL_SERIES_MAX_SHARDS];
    _Atomic uint64_t *global; /* gauges */
} sl_family;

/* Sizes f for cap label sets. 0, or SL_ENOMEM / SL_EINVAL. */
int sl_family_init(sl_family *f, size_t cap);
/* Frees everything; no other thread may use f (tests, shutdown). */
void sl_family_free(sl_family *f);

/*
 * The series of these label values (nvalues == f->nlabels), created if new,
 * or the overflow series. Returns its index (cap = overflow), or -1 when f
 * is not initialized or memory ran out (the observation is then lost).
 */
long sl_family_series(sl_family *f, const sl_str *values, size_t nvalues);

/* Writes: only the thread that owns `shard` may write to it. */
void sl_family_add(sl_family *f, int shard, long series, uint64_t v);       /* COUNTER */
void sl_family_addf(sl_family *f, int shard, long series, double v);        /* FCOUNTER */
void sl_family_observe(sl_family *f, int shard, long series, double v);     /* HISTOGRAM */
void sl_family_set(sl_family *f, long series, double v);                    /* GAUGE, any thread */

/* Bucket of v: the first bound >= v, or nbounds for +Inf. */
size_t sl_hist_bucket(const double *bounds, size_t nbounds, double v);

/* Scrape-side reads (sum over shards). */
uint64_t sl_family_count(const sl_family *f, long series);     /* COUNTER; HISTOGRAM: observations */
double sl_family_value(const sl_family *f, long series);       /* FCOUNTER, GAUGE; HISTOGRAM: sum */
uint64_t sl_family_bucket(const sl_family *f, long series, size_t b); /* HISTOGRAM, not cumulative */

/* Appends HELP, TYPE and every series of f in Prometheus text format 0.0.4. */
int sl_family_render(const sl_family *f, sl_buf *out);
/* Appends a label value escaped for the text format (\\, \", \n), cut at SL_SERIES_MAX_VALUE. */
int sl_prom_label_value(sl_buf *b, sl_str v);

#endif
