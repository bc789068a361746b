/*
 * metrics.c: request counters per worker, merged at scrape time.
 *
 * A shard is a small table of series keyed by their label values. Its mutex
 * is taken by the owning worker on record and by the scraper on render, so it
 * is uncontended on the request path except during a scrape.
 */
#include "gateway/metrics.h"

#include <pthread.h>

#define MAX_SERIES 4096 /* per worker; past it new label sets go to an overflow series */

typedef struct series {
    char *labels; /* rendered label set: route="...",model="...",... */
    uint64_t count;
} series;

typedef struct shard {
    pthread_mutex_t mu;
    series *s;
    size_t n, cap;
} shard;

static pthread_mutex_t shards_mu = PTHREAD_MUTEX_INITIALIZER;
static shard *shards[256];

static shard *shard_of(sl_worker *w)
{
    if (w->id < 0 || w->id >= 256) return NULL;
    shard *s = __atomic_load_n(&shards[w->id], __ATOMIC_ACQUIRE);
    if (s) return s;
    pthread_mutex_lock(&shards_mu);
    if (!shards[w->id]) {
        shard *n = sl_calloc(1, sizeof(*n));
        if (n) pthread_mutex_init(&n->mu, NULL);
        __atomic_store_n(&shards[w->id], n, __ATOMIC_RELEASE);
    }
    s = shards[w->id];
    pthread_mutex_unlock(&shards_mu);
    return s;
}

static void label_value(sl_buf *b, sl_str v)
{
    for (size_t i = 0; i < v.n && i < 128; i++) {
        char c = v.p[i];
        if (c == '"' || c == '\\') sl_buf_append(b, "\\", 1), sl_buf_append(b, &c, 1);
        else if (c == '\n') sl_buf_append(b, "\\n", 2);
        else sl_buf_append(b, &c, 1);
    }
}

void sl_metrics_record(sl_worker *w, const sl_req_record *r)
{
    shard *sh = shard_of(w);
    if (!sh) return;
    sl_buf b;
    sl_buf_init(&b, 4096);
    sl_buf_append_cstr(&b, "route=\""), label_value(&b, sl_str_from_cstr(r->api));
    sl_buf_append_cstr(&b, "\",model=\""), label_value(&b, r->model);
    sl_buf_append_cstr(&b, "\",provider=\""), label_value(&b, r->provider);
    sl_buf_append_cstr(&b, "\",consumer=\""), label_value(&b, r->consumer);
    sl_buf_appendf(&b, "\",status=\"%d\"", r->status);
    pthread_mutex_lock(&sh->mu);
    size_t i;
    for (i = 0; i < sh->n; i++)
        if (strcmp(sh->s[i].labels, b.p) == 0) break;
    if (i == sh->n && sh->n < MAX_SERIES) {
        if (sh->n == sh->cap) {
            size_t cap = sh->cap ? sh->cap * 2 : 16;
            series *ns = sl_realloc(sh->s, cap * sizeof(*ns));
            if (ns) sh->s = ns, sh->cap = cap;
        }
        if (sh->n < sh->cap && (sh->s[sh->n].labels = sl_strdup(b.p))) sh->s[sh->n++].count = 0;
    }
    if (i < sh->n) sh->s[i].count++;
    pthread_mutex_unlock(&sh->mu);
    sl_buf_free(&b);
}

/* ---- governance counters: rare events, one process-wide table under a mutex ---- */

static pthread_mutex_t gov_mu = PTHREAD_MUTEX_INITIALIZER;
static series gov[512]; /* labels start with the metric name and a '{' */
static size_t ngov;

static void gov_count(const char *metric, sl_str l1name, sl_str l1, const char *l2name, const char *l2)
{
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_buf_appendf(&b, "%s{%.*s=\"", metric, SL_STR_FMT(l1name));
    label_value(&b, l1);
    sl_buf_appendf(&b, "\",%s=\"", l2name);
    label_value(&b, sl_str_from_cstr(l2));
    sl_buf_append_cstr(&b, "\"}");
    pthread_mutex_lock(&gov_mu);
    size_t i;
    for (i = 0; i < ngov; i++)
        if (b.p && strcmp(gov[i].labels, b.p) == 0) break;
    if (i == ngov && ngov < SL_ARRAY_LEN(gov) && b.p && (gov[i].labels = sl_strdup(b.p))) ngov++;
    if (i < ngov) gov[i].count++;
    pthread_mutex_unlock(&gov_mu);
    sl_buf_free(&b);
}

void sl_metrics_ratelimit_rejected(sl_str consumer, const char *limit)
{
    gov_count("sluice_ratelimit_rejections_total", SL_STR("consumer"), consumer, "limit", limit);
}

void sl_metrics_state_error(const char *backend, const char *on_error)
{
    gov_count("sluice_state_errors_total", SL_STR("backend"), sl_str_from_cstr(backend), "on_error", on_error);
}

static void render_gov(sl_buf *out)
{
    static const char *const names[][2] = {
        {"sluice_ratelimit_rejections_total", "Requests refused by a consumer limit or budget."},
        {"sluice_state_errors_total", "Limit checks the state backend could not answer (on_error applied)."},
    };
    pthread_mutex_lock(&gov_mu);
    for (size_t k = 0; k < SL_ARRAY_LEN(names); k++) {
        sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n", names[k][0], names[k][1], names[k][0]);
        size_t len = strlen(names[k][0]);
        for (size_t i = 0; i < ngov; i++)
            if (strncmp(gov[i].labels, names[k][0], len) == 0 && gov[i].labels[len] == '{')
                sl_buf_appendf(out, "%s %llu\n", gov[i].labels, (unsigned long long)gov[i].count);
    }
    pthread_mutex_unlock(&gov_mu);
}

int sl_metrics_render(sl_runtime *rt, sl_buf *out)
{
    render_gov(out);
    uint64_t inflight = 0;
    for (size_t i = 0; i < rt->nworkers; i++) inflight += atomic_load(&rt->workers[i].inflight);
    sl_buf_appendf(out, "# HELP sluice_inflight_requests Requests in progress.\n# TYPE sluice_inflight_requests gauge\n"
                        "sluice_inflight_requests %llu\n", (unsigned long long)inflight);
    sl_buf_append_cstr(out, "# HELP sluice_requests_total Requests answered.\n# TYPE sluice_requests_total counter\n");
    /* Merge the shards: the same label set seen by several workers is one series. */
    series *all = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < 256; k++) {
        shard *sh = __atomic_load_n(&shards[k], __ATOMIC_ACQUIRE);
        if (!sh) continue;
        pthread_mutex_lock(&sh->mu);
        for (size_t i = 0; i < sh->n; i++) {
            size_t j;
            for (j = 0; j < n; j++)
                if (strcmp(all[j].labels, sh->s[i].labels) == 0) break;
            if (j == n) {
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    series *g = sl_realloc(all, ncap * sizeof(*g));
                    if (!g) continue;
                    all = g, cap = ncap;
                }
                all[n].labels = sh->s[i].labels; /* series labels live as long as the process */
                all[n++].count = 0;
            }
            all[j].count += sh->s[i].count;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    for (size_t i = 0; i < n; i++)
        sl_buf_appendf(out, "sluice_requests_total{%s} %llu\n", all[i].labels, (unsigned long long)all[i].count);
    sl_free(all);
    return SL_OK;
}
