/*
 * metrics.c: the SPEC §4 series over telemetry/series.h families.
 *
 * The families are process-wide and created once (sl_metrics_init, or
 * lazily with the default cap); a series, once created, lives as long as the
 * process, so counters stay monotonic across configuration reloads.
 * Recording a request costs one hash lookup per family touched and a few
 * relaxed stores into the worker's own shard.
 */
#include "gateway/metrics.h"

#include <pthread.h>
#include <stdio.h>

#include "balance/failover.h"
#include "telemetry/export.h"
#include "telemetry/series.h"
#include "telemetry/trace.h"

/* OpenTelemetry GenAI semantic conventions: advisory explicit bucket boundaries. */
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                     0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};
static const double tpot_bounds[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5};
static const double duration_bounds[] = {0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64,
                                         1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const double token_bounds[] = {1,      4,       16,      64,       256,      1024,     4096,
                                      16384,  65536,   262144,  1048576,  4194304,  16777216, 67108864};

#define GENAI_LABELS "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"

static sl_family requests = {
    .name = "sluice_requests_total", .help = "Requests answered, by route, public model, provider, consumer and status.",
    .kind = SL_METRIC_COUNTER, .labels = {"route", "model", "provider", "consumer", "status"}, .nlabels = 5};
static sl_family tokens = {
    .name = "sluice_tokens_total", .help = "Tokens reported by providers; type is input, output or cached (part of input).",
    .kind = SL_METRIC_COUNTER, .labels = {"model", "provider", "consumer", "type"}, .nlabels = 4};
static sl_family cost = {
    .name = "sluice_cost_usd_total", .help = "Cost of requests in US dollars, from pricing.",
    .kind = SL_METRIC_FCOUNTER, .labels = {"model", "consumer"}, .nlabels = 2};
static sl_family attempts = {
    .name = "sluice_upstream_attempts_total", .help = "Upstream attempts (first tries, retries, fallbacks) by outcome.",
    .kind = SL_METRIC_COUNTER, .labels = {"provider", "outcome"}, .nlabels = 2};
static sl_family rejections = {
    .name = "sluice_ratelimit_rejections_total", .help = "Requests refused by a consumer limit or budget.",
    .kind = SL_METRIC_COUNTER, .labels = {"consumer", "limit"}, .nlabels = 2};
static sl_family state_errors = {
    .name = "sluice_state_errors_total",
    .help = "Limit checks or usage records the state backend could not answer; on_error is allow, deny or settle.",
    .kind = SL_METRIC_COUNTER, .labels = {"backend", "on_error"}, .nlabels = 2};
static sl_family healthy = {
    .name = "sluice_upstream_healthy", .help = "1 when a provider key is in rotation, 0 when it is benched.",
    .kind = SL_METRIC_GAUGE, .labels = {"provider", "key_index"}, .nlabels = 2};
static sl_family ttft = {
    .name = "gen_ai_server_time_to_first_token_seconds", .help = "Time to the first streamed chunk of successful streams.",
    .kind = SL_METRIC_HISTOGRAM, .labels = {GENAI_LABELS}, .nlabels = 3, .bounds = ttft_bounds,
    .nbounds = SL_ARRAY_LEN(ttft_bounds)};
static sl_family tpot = {
    .name = "gen_ai_server_time_per_output_token_seconds",
    .help = "Time per output token after the first, for successful streams.", .kind = SL_METRIC_HISTOGRAM,
    .labels = {GENAI_LABELS}, .nlabels = 3, .bounds = tpot_bounds, .nbounds = SL_ARRAY_LEN(tpot_bounds)};
static sl_family duration = {
    .name = "gen_ai_client_operation_duration_seconds", .help = "Duration of GenAI operations, request to last byte.",
    .kind = SL_METRIC_HISTOGRAM, .labels = {GENAI_LABELS}, .nlabels = 3, .bounds = duration_bounds,
    .nbounds = SL_ARRAY_LEN(duration_bounds)};
static sl_family usage = {
    .name = "gen_ai_client_token_usage", .help = "Input and output tokens per operation.", .kind = SL_METRIC_HISTOGRAM,
    .labels = {GENAI_LABELS, "gen_ai_token_type"}, .nlabels = 4, .bounds = token_bounds,
    .nbounds = SL_ARRAY_LEN(token_bounds)};

static sl_family *const families[] = {&requests, &tokens,   &cost,  &attempts, &rejections,
                                      &state_errors, &ttft, &tpot, &duration, &usage};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static size_t want_cap = 1000;
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static bool init_ok;

static void init_families(void)
{
    init_ok = sl_family_init(&healthy, want_cap) == SL_OK;
    for (size_t i = 0; i < SL_ARRAY_LEN(families); i++)
        if (sl_family_init(families[i], want_cap) != SL_OK) init_ok = false;
}

int sl_metrics_init(size_t max_series)
{
    pthread_mutex_lock(&init_mu);
    want_cap = max_series ? max_series : 1000;
    pthread_mutex_unlock(&init_mu);
    pthread_once(&once, init_families);
    return init_ok ? SL_OK : SL_ENOMEM;
}

static inline void ensure_init(void) { pthread_once(&once, init_families); }

static sl_str cstr_or_empty(const char *s) { return s ? sl_str_from_cstr(s) : SL_STR(""); }

/*
 * Series indices per label set, remembered per worker thread. A request's
 * labels (route, model, provider, consumer, status, operation) repeat from one
 * request to the next, and a series index never changes once given out
 * (series live as long as the process), so a small memo keyed by the packed
 * label values replaces the ten hash lookups of a request with one compare.
 */
enum { S_REQ, S_DUR, S_TTFT, S_TPOT, S_USE_IN, S_USE_OUT, S_TOK_IN, S_TOK_OUT, S_TOK_CACHED, S_COST, S_N };

#define MEMO_SLOTS 8
#define MEMO_KEY_CAP 384

typedef struct rec_memo {
    uint16_t keylen; /* 0: empty */
    uint16_t have;   /* bit per S_*: idx is known */
    long idx[S_N];
    char key[MEMO_KEY_CAP];
} rec_memo;

static _Thread_local rec_memo memo[MEMO_SLOTS];
static _Thread_local unsigned memo_next;

static bool key_put(char *key, size_t *len, const void *p, size_t n)
{
    if (n > 255 || *len + 1 + n > MEMO_KEY_CAP) return false;
    key[(*len)++] = (char)n;
    if (n) memcpy(key + *len, p, n);
    *len += n;
    return true;
}

/* The memo entry for this record's labels (made if new), or NULL when they are too long to remember. */
static rec_memo *memo_for(const sl_req_record *r)
{
    char key[MEMO_KEY_CAP];
    size_t len = 0;
    const char *api = r->api ? r->api : "", *op = r->operation ? r->operation : "";
    int32_t st = r->status;
    if (!key_put(key, &len, api, strlen(api)) || !key_put(key, &len, op, strlen(op)) ||
        !key_put(key, &len, r->model.p, r->model.n) || !key_put(key, &len, r->provider.p, r->provider.n) ||
        !key_put(key, &len, r->provider_type.p, r->provider_type.n) ||
        !key_put(key, &len, r->consumer.p, r->consumer.n) || !key_put(key, &len, &st, sizeof st))
        return NULL;
    for (unsigned i = 0; i < MEMO_SLOTS; i++)
        if (memo[i].keylen == len && memcmp(memo[i].key, key, len) == 0) return &memo[i];
    rec_memo *m = &memo[memo_next++ % MEMO_SLOTS];
    m->keylen = (uint16_t)len;
    m->have = 0;
    memcpy(m->key, key, len);
    return m;
}

static long series_of(rec_memo *m, int slot, sl_family *f, const sl_str *v, size_t n)
{
    if (m && (m->have & (1u << slot))) return m->idx[slot];
    long idx = sl_family_series(f, v, n);
    if (m) {
        m->idx[slot] = idx;
        m->have |= (uint16_t)(1u << slot);
    }
    return idx;
}

static void count_tokens(int shard, rec_memo *m, int slot, const sl_req_record *r, const char *type, int64_t n)
{
    sl_str v[] = {r->model, r->provider, r->consumer, sl_str_from_cstr(type)};
    sl_family_add(&tokens, shard, series_of(m, slot, &tokens, v, 4), n > 0 ? (uint64_t)n : 0);
}

/* A GenAI series: the provider name (a table lookup) is worked out only when the memo misses. */
static long genai_series(rec_memo *m, int slot, sl_family *f, sl_str *g, size_t n, const sl_req_record *r)
{
    if (m && (m->have & (1u << slot))) return m->idx[slot];
    if (!g[1].p) g[1] = sl_str_from_cstr(sl_genai_provider_name(r->provider_type));
    return series_of(m, slot, f, g, n);
}

static void record_genai(int shard, rec_memo *m, const sl_req_record *r)
{
    sl_str g[] = {cstr_or_empty(r->operation), SL_STR_NULL, r->model, SL_STR_NULL};
    bool ok = r->status >= 200 && r->status < 300;
    if (r->end_ns >= r->start_ns)
        sl_family_observe(&duration, shard, genai_series(m, S_DUR, &duration, g, 3, r),
                          (double)(r->end_ns - r->start_ns) / 1e9);
    if (r->stream && ok && r->first_byte_ns >= r->start_ns && r->first_byte_ns) {
        sl_family_observe(&ttft, shard, genai_series(m, S_TTFT, &ttft, g, 3, r),
                          (double)(r->first_byte_ns - r->start_ns) / 1e9);
        if (r->usage.output_tokens > 1 && r->end_ns > r->first_byte_ns)
            sl_family_observe(&tpot, shard, genai_series(m, S_TPOT, &tpot, g, 3, r),
                              (double)(r->end_ns - r->first_byte_ns) / 1e9 / (double)(r->usage.output_tokens - 1));
    }
    if (r->usage.present) {
        g[3] = SL_STR("input");
        sl_family_observe(&usage, shard, genai_series(m, S_USE_IN, &usage, g, 4, r), (double)r->usage.input_tokens);
        g[3] = SL_STR("output");
        sl_family_observe(&usage, shard, genai_series(m, S_USE_OUT, &usage, g, 4, r), (double)r->usage.output_tokens);
    }
}

void sl_metrics_record(sl_worker *w, const sl_req_record *r)
{
    ensure_init();
    int shard = w->id;
    rec_memo *m = memo_for(r);
    char status[SL_DEC_MAX];
    sl_str rv[] = {cstr_or_empty(r->api), r->model, r->provider, r->consumer, (sl_str){status, sl_i64_dec(status, r->status)}};
    sl_family_add(&requests, shard, series_of(m, S_REQ, &requests, rv, 5), 1);
    if (!r->operation || !r->model.n || strcmp(r->operation, "models") == 0) return;
    record_genai(shard, m, r);
    if (r->usage.present) {
        count_tokens(shard, m, S_TOK_IN, r, "input", r->usage.input_tokens);
        count_tokens(shard, m, S_TOK_OUT, r, "output", r->usage.output_tokens);
        count_tokens(shard, m, S_TOK_CACHED, r, "cached", r->usage.cached_tokens);
    }
    if (r->cost_usd > 0 || r->usage.present) {
        sl_str cv[] = {r->model, r->consumer};
        sl_family_addf(&cost, shard, series_of(m, S_COST, &cost, cv, 2), r->cost_usd);
    }
}

/* Attempts by provider and outcome: the same small per-thread memo idea, keyed by the two values. */
#define ATTEMPT_MEMO_SLOTS 4

typedef struct attempt_memo {
    uint16_t plen, olen; /* plen == UINT16_MAX: empty */
    long idx;
    char provider[SL_SERIES_MAX_VALUE];
    char outcome[32];
} attempt_memo;

static _Thread_local attempt_memo amemo[ATTEMPT_MEMO_SLOTS] = {
    {.plen = UINT16_MAX}, {.plen = UINT16_MAX}, {.plen = UINT16_MAX}, {.plen = UINT16_MAX}};
static _Thread_local unsigned amemo_next;

static long attempt_series(sl_str provider, const char *outcome)
{
    sl_str v[] = {provider, sl_str_from_cstr(outcome)};
    if (provider.n > SL_SERIES_MAX_VALUE || v[1].n > sizeof amemo[0].outcome)
        return sl_family_series(&attempts, v, 2);
    for (unsigned i = 0; i < ATTEMPT_MEMO_SLOTS; i++) {
        const attempt_memo *m = &amemo[i];
        if (m->plen == provider.n && m->olen == v[1].n && (!provider.n || memcmp(m->provider, provider.p, provider.n) == 0) &&
            (!v[1].n || memcmp(m->outcome, v[1].p, v[1].n) == 0))
            return m->idx;
    }
    attempt_memo *m = &amemo[amemo_next++ % ATTEMPT_MEMO_SLOTS];
    m->idx = sl_family_series(&attempts, v, 2);
    m->plen = (uint16_t)provider.n;
    m->olen = (uint16_t)v[1].n;
    if (provider.n) memcpy(m->provider, provider.p, provider.n);
    if (v[1].n) memcpy(m->outcome, v[1].p, v[1].n);
    return m->idx;
}

void sl_metrics_attempt(sl_worker *w, sl_str provider, const char *outcome)
{
    ensure_init();
    sl_family_add(&attempts, w->id, attempt_series(provider, outcome), 1);
}

void sl_metrics_ratelimit_rejected(sl_worker *w, sl_str consumer, const char *limit)
{
    ensure_init();
    sl_str v[] = {consumer, sl_str_from_cstr(limit)};
    sl_family_add(&rejections, w->id, sl_family_series(&rejections, v, 2), 1);
}

void sl_metrics_state_error(sl_worker *w, const char *backend, const char *on_error)
{
    ensure_init();
    sl_str v[] = {sl_str_from_cstr(backend), sl_str_from_cstr(on_error)};
    sl_family_add(&state_errors, w->id, sl_family_series(&state_errors, v, 2), 1);
}

void sl_metrics_set_upstream_healthy(sl_str provider, uint32_t key_index, bool ok)
{
    ensure_init();
    char idx[16];
    snprintf(idx, sizeof idx, "%u", key_index);
    sl_str v[] = {provider, sl_str_from_cstr(idx)};
    sl_family_set(&healthy, sl_family_series(&healthy, v, 2), ok ? 1 : 0);
}

/*
 * sluice_upstream_healthy: the balancer's view, pulled at scrape time (so a provider removed by a reload
 * disappears), plus any row set through sl_metrics_set_upstream_healthy that the balancer does not report.
 */
static int render_health(sl_runtime *rt, sl_buf *out)
{
    enum { MAX_ROWS = 4096 };
    sl_health_entry *rows = rt ? sl_calloc(MAX_ROWS, sizeof(*rows)) : NULL;
    size_t n = rows ? sl_health_snapshot(rt, rows, MAX_ROWS) : 0;
    int rc = sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n", healthy.name, healthy.help, healthy.name);
    for (size_t i = 0; i < n && rc == SL_OK; i++) {
        rc = sl_buf_append_cstr(out, "sluice_upstream_healthy{provider=\"");
        if (rc == SL_OK) rc = sl_prom_label_value(out, sl_str_from_cstr(rows[i].provider));
        if (rc == SL_OK)
            rc = sl_buf_appendf(out, "\",key_index=\"%u\"} %d\n", rows[i].key_index, rows[i].healthy ? 1 : 0);
    }
    for (size_t i = 0; healthy.slots && i < healthy.nslots && rc == SL_OK; i++) {
        const sl_series *s = atomic_load_explicit(&healthy.slots[i], memory_order_acquire);
        if (!s) continue;
        bool dup = false; /* key: <len>provider<len>index */
        for (size_t j = 0; j < n && !dup; j++) {
            char idx[16];
            int k = snprintf(idx, sizeof idx, "%u", rows[j].key_index);
            size_t pl = strlen(rows[j].provider);
            dup = s->keylen == 2 + pl + (size_t)k && (size_t)(unsigned char)s->key[0] == pl &&
                  memcmp(s->key + 1, rows[j].provider, pl) == 0 && memcmp(s->key + 2 + pl, idx, (size_t)k) == 0;
        }
        if (!dup) rc = sl_buf_appendf(out, "%s{%s} %d\n", healthy.name, s->labels, sl_family_value(&healthy, s->index) != 0);
    }
    sl_free(rows);
    return rc;
}

static int render_trace_stats(sl_buf *out)
{
    sl_trace_stats s;
    sl_trace_stats_get(&s);
    return sl_buf_appendf(
        out,
        "# HELP sluice_trace_spans_exported_total Spans accepted by the OTLP endpoint.\n"
        "# TYPE sluice_trace_spans_exported_total counter\nsluice_trace_spans_exported_total %llu\n"
        "# HELP sluice_trace_spans_dropped_total Spans lost: queue full, or their export failed.\n"
        "# TYPE sluice_trace_spans_dropped_total counter\n"
        "sluice_trace_spans_dropped_total{reason=\"queue_full\"} %llu\n"
        "sluice_trace_spans_dropped_total{reason=\"export_failed\"} %llu\n"
        "# HELP sluice_trace_queue_spans Spans waiting for export.\n"
        "# TYPE sluice_trace_queue_spans gauge\nsluice_trace_queue_spans %llu\n",
        (unsigned long long)s.exported, (unsigned long long)s.dropped_queue_full,
        (unsigned long long)s.dropped_export_failed, (unsigned long long)s.queued);
}

int sl_metrics_render(sl_runtime *rt, sl_buf *out)
{
    ensure_init();
    uint64_t inflight = 0;
    for (size_t i = 0; rt && i < rt->nworkers; i++) inflight += atomic_load(&rt->workers[i].inflight);
    int rc = sl_buf_appendf(out, "# HELP sluice_inflight_requests Requests in progress.\n"
                                 "# TYPE sluice_inflight_requests gauge\nsluice_inflight_requests %llu\n",
                            (unsigned long long)inflight);
    for (size_t i = 0; i < SL_ARRAY_LEN(families) && rc == SL_OK; i++) rc = sl_family_render(families[i], out);
    if (rc == SL_OK) rc = render_health(rt, out);
    if (rc == SL_OK) rc = render_trace_stats(out);
    return rc;
}
