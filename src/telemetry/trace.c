/* trace.c: see trace.h. OTLP JSON follows the protobuf JSON mapping with hex ids (OTLP/HTTP spec). */
#include "telemetry/trace.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <uv.h>

#include "json/json.h"

/* ---- ids ------------------------------------------------------------------- */

static _Thread_local uint64_t rng_s[2];

static uint64_t rng_next(void)
{
    if (!rng_s[0] && !rng_s[1]) {
        if (getrandom(rng_s, sizeof rng_s, 0) != (ssize_t)sizeof rng_s) {
            rng_s[0] = uv_hrtime() ^ (uint64_t)(uintptr_t)&rng_s;
            rng_s[1] = 0x9e3779b97f4a7c15ull ^ (uint64_t)pthread_self();
        }
        rng_s[0] |= 1;
    }
    uint64_t s1 = rng_s[0], s0 = rng_s[1]; /* xorshift128+ */
    rng_s[0] = s0;
    s1 ^= s1 << 23;
    rng_s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng_s[1] + s0;
}

static bool all_zero(const uint8_t *id, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (id[i]) return false;
    return true;
}

void sl_trace_random_id(uint8_t *id, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = rng_next();
            memcpy(id + i, &v, SL_MIN(8, n - i));
        }
    } while (all_zero(id, n));
}

void sl_hex(char *out, const uint8_t *id, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = digits[id[i] >> 4], out[2 * i + 1] = digits[id[i] & 15];
    out[2 * n] = '\0';
}

static int unhex(const char *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = p[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; /* W3C: lowercase only */
        if (v < 0) return SL_EINVAL;
        if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
        else out[i / 2] |= (uint8_t)v;
    }
    return SL_OK;
}

/* version "-" trace-id(32) "-" parent-id(16) "-" flags(2); later versions may append "-..." */
int sl_traceparent_parse(sl_str h, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags)
{
    h = sl_str_trim(h);
    if (h.n < 55 || h.p[2] != '-' || h.p[35] != '-' || h.p[52] != '-') return SL_EINVAL;
    uint8_t ver, fl;
    if (unhex(h.p, &ver, 1) || ver == 0xff) return SL_EINVAL;
    if (ver == 0 && h.n != 55) return SL_EINVAL;
    if (ver > 0 && h.n > 55 && h.p[55] != '-') return SL_EINVAL;
    if (unhex(h.p + 3, trace_id, 16) || unhex(h.p + 36, parent_id, 8) || unhex(h.p + 53, &fl, 1)) return SL_EINVAL;
    if (all_zero(trace_id, 16) || all_zero(parent_id, 8)) return SL_EINVAL;
    *flags = fl;
    return SL_OK;
}

void sl_traceparent_format(char out[56], const uint8_t trace_id[16], const uint8_t span_id[8], bool sampled)
{
    memcpy(out, "00-", 3);
    sl_hex(out + 3, trace_id, 16);
    out[35] = '-';
    sl_hex(out + 36, span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = sampled ? '1' : '0';
    out[55] = '\0';
}

/* ---- per request --------------------------------------------------------------- */

sl_trace_req *sl_trace_begin(sl_arena *a, sl_str traceparent, sl_str tracestate, bool record, double ratio)
{
    uint8_t tid[16], pid[8], flags = 0;
    bool has_parent = traceparent.n && sl_traceparent_parse(traceparent, tid, pid, &flags) == SL_OK;
    if (!record && !has_parent) return NULL;
    sl_trace_req *t = sl_arena_calloc(a, sizeof(*t));
    if (!t) return NULL;
    t->open = -1;
    if (has_parent) {
        memcpy(t->trace_id, tid, 16);
        memcpy(t->parent_id, pid, 8);
        t->has_parent = true;
        t->sampled = flags & 1;
        if (tracestate.n && tracestate.n <= 512) t->tracestate = sl_arena_str(a, tracestate);
    } else {
        sl_trace_random_id(t->trace_id, 16);
        /* The low 56 bits of the trace id are random (W3C level 2): compare them with the ratio. */
        uint64_t r = 0;
        for (int i = 9; i < 16; i++) r = (r << 8) | t->trace_id[i];
        t->sampled = ratio >= 1.0 || (double)r < ratio * 72057594037927936.0; /* 2^56 */
    }
    sl_trace_random_id(t->span_id, 8);
    t->recording = record && t->sampled;
    return t;
}

const char *sl_trace_attempt_start(sl_trace_req *t, uint64_t now_ns, sl_str provider, sl_str provider_type,
                                   sl_str model)
{
    if (t->open >= 0) sl_trace_attempt_end(t, now_ns, 0, "cancelled", SL_STR_NULL);
    uint8_t id[8];
    sl_trace_random_id(id, 8);
    if (t->natt < SL_TRACE_MAX_ATTEMPTS) {
        sl_span_attempt *s = &t->att[t->natt];
        *s = (sl_span_attempt){.start_ns = now_ns, .provider = provider, .provider_type = provider_type, .model = model};
        memcpy(s->span_id, id, 8);
        t->open = (int)t->natt++;
    } else {
        t->ndropped++;
    }
    /* Without recording, the upstream still gets a fresh span id: the caller's trace continues through us. */
    sl_traceparent_format(t->up_traceparent, t->trace_id, t->recording ? id : t->span_id, t->sampled);
    return t->up_traceparent;
}

void sl_trace_attempt_end(sl_trace_req *t, uint64_t now_ns, int status, const char *outcome, sl_str error)
{
    if (t->open < 0) return;
    sl_span_attempt *s = &t->att[t->open];
    s->end_ns = now_ns;
    s->status = status;
    s->outcome = outcome;
    s->error = error;
    t->open = -1;
}

const char *sl_genai_provider_name(sl_str type)
{
    static const struct {
        const char *type, *name;
    } map[] = {
        {"azure", "azure.ai.openai"}, {"gemini", "gcp.gemini"}, {"mistral", "mistral_ai"},
        {"xai", "x_ai"},              {"qwen", "alibaba.dashscope"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(map); i++)
        if (sl_str_eq_lit(type, map[i].type)) return map[i].name;
    static _Thread_local char buf[64];
    size_t n = SL_MIN(type.n, sizeof buf - 1);
    if (n) memcpy(buf, type.p, n);
    buf[n] = '\0';
    return buf;
}

static int64_t wall_offset(void)
{
    static _Atomic int64_t off;
    static _Atomic bool set;
    if (atomic_load_explicit(&set, memory_order_acquire)) return atomic_load_explicit(&off, memory_order_relaxed);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t o = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - (int64_t)uv_hrtime();
    atomic_store_explicit(&off, o, memory_order_relaxed);
    atomic_store_explicit(&set, true, memory_order_release);
    return o;
}

uint64_t sl_trace_wall_ns(uint64_t hr_ns) { return (uint64_t)((int64_t)hr_ns + wall_offset()); }

/* ---- OTLP JSON ------------------------------------------------------------------------ */

static void attr_begin(sl_jw *w, const char *key)
{
    sl_jw_obj_begin(w);
    sl_jw_key(w, "key"), sl_jw_cstr(w, key);
    sl_jw_key(w, "value"), sl_jw_obj_begin(w);
}

static void attr_end(sl_jw *w) { sl_jw_obj_end(w), sl_jw_obj_end(w); }

static void attr_str(sl_jw *w, const char *key, sl_str v)
{
    if (!v.p || !v.n) return;
    attr_begin(w, key);
    sl_jw_key(w, "stringValue"), sl_jw_str(w, v);
    attr_end(w);
}

/* int64 is a JSON string in the protobuf mapping. */
static void attr_int(sl_jw *w, const char *key, int64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    attr_begin(w, key);
    sl_jw_key(w, "intValue"), sl_jw_cstr(w, tmp);
    attr_end(w);
}

static void attr_double(sl_jw *w, const char *key, double v)
{
    attr_begin(w, key);
    sl_jw_key(w, "doubleValue"), sl_jw_double(w, v);
    attr_end(w);
}

static void attr_bool(sl_jw *w, const char *key, bool v)
{
    attr_begin(w, key);
    sl_jw_key(w, "boolValue"), sl_jw_bool(w, v);
    attr_end(w);
}

static void attr_str_array(sl_jw *w, const char *key, sl_str v)
{
    if (!v.n) return;
    attr_begin(w, key);
    sl_jw_key(w, "arrayValue"), sl_jw_obj_begin(w);
    sl_jw_key(w, "values"), sl_jw_arr_begin(w);
    sl_jw_obj_begin(w), sl_jw_key(w, "stringValue"), sl_jw_str(w, v), sl_jw_obj_end(w);
    sl_jw_arr_end(w);
    sl_jw_obj_end(w);
    attr_end(w);
}

static void id_field(sl_jw *w, const char *key, const uint8_t *id, size_t n)
{
    char hex[33];
    sl_hex(hex, id, n);
    sl_jw_key(w, key), sl_jw_cstr(w, hex);
}

static void time_field(sl_jw *w, const char *key, uint64_t hr_ns)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)sl_trace_wall_ns(hr_ns));
    sl_jw_key(w, key), sl_jw_cstr(w, tmp);
}

enum { KIND_SERVER = 2, KIND_CLIENT = 3, STATUS_ERROR = 2 };

static void span_head(sl_jw *w, const sl_trace_req *t, const uint8_t *span_id, const uint8_t *parent, const char *name,
                      int kind, uint64_t start, uint64_t end)
{
    sl_jw_obj_begin(w);
    id_field(w, "traceId", t->trace_id, 16);
    id_field(w, "spanId", span_id, 8);
    if (parent) id_field(w, "parentSpanId", parent, 8);
    if (t->tracestate.n) sl_jw_key(w, "traceState"), sl_jw_str(w, t->tracestate);
    sl_jw_key(w, "name"), sl_jw_cstr(w, name);
    sl_jw_key(w, "kind"), sl_jw_int(w, kind);
    time_field(w, "startTimeUnixNano", start);
    time_field(w, "endTimeUnixNano", end >= start ? end : start);
}

static void span_status(sl_jw *w, bool error, sl_str msg)
{
    if (!error) return;
    sl_jw_key(w, "status"), sl_jw_obj_begin(w);
    sl_jw_key(w, "code"), sl_jw_int(w, STATUS_ERROR);
    if (msg.n) sl_jw_key(w, "message"), sl_jw_str(w, msg);
    sl_jw_obj_end(w);
}

static const char *error_type(int status)
{
    static _Thread_local char buf[16];
    snprintf(buf, sizeof buf, "%d", status);
    return buf;
}

static void request_span(sl_jw *w, const sl_trace_req *t, const sl_req_record *r, sl_arena *a)
{
    const char *op = r->operation ? r->operation : "request";
    char name[200];
    snprintf(name, sizeof name, "%s %.*s", op, (int)SL_MIN(r->model.n, 150), r->model.p ? r->model.p : "");
    if (!r->model.n) name[strlen(op)] = '\0';
    span_head(w, t, t->span_id, t->has_parent ? t->parent_id : NULL, name, KIND_SERVER, r->start_ns, r->end_ns);
    sl_jw_key(w, "attributes"), sl_jw_arr_begin(w);
    attr_str(w, "gen_ai.operation.name", sl_str_from_cstr(op));
    if (r->provider_type.n) attr_str(w, "gen_ai.provider.name", sl_str_from_cstr(sl_genai_provider_name(r->provider_type)));
    attr_str(w, "gen_ai.request.model", r->model);
    attr_str(w, "gen_ai.response.model", r->response_model.n ? r->response_model : r->upstream_model);
    if (r->usage.present) {
        attr_int(w, "gen_ai.usage.input_tokens", r->usage.input_tokens);
        attr_int(w, "gen_ai.usage.output_tokens", r->usage.output_tokens);
        if (r->usage.cached_tokens) attr_int(w, "gen_ai.usage.cache_read.input_tokens", r->usage.cached_tokens);
    }
    attr_str_array(w, "gen_ai.response.finish_reasons", r->finish_reason);
    if (r->first_byte_ns && r->first_byte_ns >= r->start_ns && r->stream)
        attr_double(w, "gen_ai.response.time_to_first_chunk", (double)(r->first_byte_ns - r->start_ns) / 1e9);
    attr_bool(w, "gen_ai.request.stream", r->stream);
    attr_str(w, "gen_ai.response.id", r->request_id);
    attr_int(w, "http.response.status_code", r->status);
    attr_str(w, "sluice.api", r->api ? sl_str_from_cstr(r->api) : SL_STR_NULL);
    attr_str(w, "sluice.consumer", r->consumer);
    attr_str(w, "sluice.provider", r->provider);
    attr_int(w, "sluice.attempts", r->attempts);
    if (r->cost_usd > 0) attr_double(w, "sluice.cost_usd", r->cost_usd);
    if (r->cache) attr_str(w, "sluice.cache", sl_str_from_cstr(r->cache));
    if (r->status >= 400) attr_str(w, "error.type", sl_str_from_cstr(error_type(r->status)));
    sl_jw_arr_end(w);
    span_status(w, r->status >= 500, r->error); /* a caller's mistake (4xx) is not a server error */
    sl_jw_obj_end(w);
    SL_UNUSED(a);
}

static void attempt_span(sl_jw *w, const sl_trace_req *t, const sl_req_record *r, const sl_span_attempt *s,
                         uint32_t index)
{
    const char *op = r->operation ? r->operation : "request";
    char name[200];
    snprintf(name, sizeof name, "%s %.*s", op, (int)SL_MIN(s->model.n, 150), s->model.p ? s->model.p : "");
    span_head(w, t, s->span_id, t->span_id, name, KIND_CLIENT, s->start_ns, s->end_ns ? s->end_ns : r->end_ns);
    sl_jw_key(w, "attributes"), sl_jw_arr_begin(w);
    attr_str(w, "gen_ai.operation.name", sl_str_from_cstr(op));
    attr_str(w, "gen_ai.provider.name", sl_str_from_cstr(sl_genai_provider_name(s->provider_type)));
    attr_str(w, "gen_ai.request.model", s->model);
    attr_str(w, "sluice.provider", s->provider);
    attr_int(w, "sluice.attempt", index + 1);
    attr_str(w, "sluice.attempt.outcome", sl_str_from_cstr(s->outcome ? s->outcome : "cancelled"));
    if (s->status) attr_int(w, "http.response.status_code", s->status);
    bool failed = !s->outcome || strcmp(s->outcome, "success") != 0;
    if (failed) attr_str(w, "error.type", sl_str_from_cstr(s->outcome ? s->outcome : "cancelled"));
    sl_jw_arr_end(w);
    span_status(w, failed, s->error);
    sl_jw_obj_end(w);
}

int sl_otlp_encode_spans(const sl_trace_req *t, const sl_req_record *r, sl_buf *out, uint32_t *nspans)
{
    sl_jw w;
    sl_jw_init(&w, out);
    request_span(&w, t, r, NULL);
    uint32_t n = 1;
    for (uint32_t i = 0; i < t->natt && w.err == SL_OK; i++, n++) {
        if (sl_buf_append(out, ",", 1) != SL_OK) return SL_ENOMEM;
        sl_jw_init(&w, out); /* each span is a fresh top-level value in the list */
        attempt_span(&w, t, r, &t->att[i], i);
    }
    *nspans = n;
    return w.err;
}

int sl_otlp_wrap(sl_buf *out, sl_str spans, const char *service_name, const char *service_version)
{
    sl_jw w;
    sl_jw_init(&w, out);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "resourceSpans"), sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "resource"), sl_jw_obj_begin(&w);
    sl_jw_key(&w, "attributes"), sl_jw_arr_begin(&w);
    attr_str(&w, "service.name", sl_str_from_cstr(service_name));
    attr_str(&w, "service.version", sl_str_from_cstr(service_version));
    attr_str(&w, "telemetry.sdk.name", SL_STR("sluice"));
    attr_str(&w, "telemetry.sdk.language", SL_STR("c"));
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "scopeSpans"), sl_jw_arr_begin(&w);
    sl_jw_obj_begin(&w);
    sl_jw_key(&w, "scope"), sl_jw_obj_begin(&w);
    sl_jw_key(&w, "name"), sl_jw_cstr(&w, "sluice");
    sl_jw_key(&w, "version"), sl_jw_cstr(&w, service_version);
    sl_jw_obj_end(&w);
    sl_jw_key(&w, "spans"), sl_jw_arr_begin(&w);
    sl_jw_raw(&w, spans);
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    sl_jw_arr_end(&w);
    sl_jw_obj_end(&w);
    return w.err;
}
