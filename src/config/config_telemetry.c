/*
 * config_telemetry.c: the `telemetry:` section (metrics, traces, content
 * logging; docs/observability.md). Its key tables are listed in
 * sl_config_sections (config_keys.c) so docs/configuration.md is checked
 * against them like every other section.
 */
#include "config/config_keys.h"

#include <math.h>
#include <stdlib.h>

#define ARR(a) a, SL_ARRAY_LEN(a)
#define OFF(type, field) offsetof(type, field)

/* A ratio 0..1 written as a decimal ("0.25", "1", "1e-3"); the key tables have no type for fractions. */
static void parse_ratio(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_traces_cfg *t = base;
    char tmp[64];
    if (n->kind != SL_YN_SCALAR || n->val.n == 0 || n->val.n >= sizeof tmp) {
        sl_cfg_error(ctx, n, "%s: expected a number between 0 and 1", ctx->path);
        return;
    }
    memcpy(tmp, n->val.p, n->val.n);
    tmp[n->val.n] = '\0';
    char *end = NULL;
    double v = strtod(tmp, &end);
    if (end == tmp || *end || !isfinite(v) || v < 0 || v > 1) {
        sl_cfg_error(ctx, n, "%s: expected a number between 0 and 1", ctx->path);
        return;
    }
    t->sample_ratio = v;
}

static void parse_endpoint(sl_cfg_ctx *ctx, const sl_ckey *k, const sl_ynode *n, void *base)
{
    sl_traces_cfg *t = base;
    if (n->kind != SL_YN_SCALAR) {
        sl_cfg_error(ctx, n, "%s: expected a URL", ctx->path);
        return;
    }
    sl_str u = sl_str_trim(n->val);
    if (u.n == 0 || sl_str_eq_lit(u, "off")) return; /* "${OTEL_ENDPOINT}" unset: tracing stays off */
    if (!sl_str_starts_with(u, SL_STR("http://")) && !sl_str_starts_with(u, SL_STR("https://"))) {
        sl_cfg_error(ctx, n, "%s: must start with http:// or https://", ctx->path);
        return;
    }
    for (size_t i = 0; i < u.n; i++) {
        if ((unsigned char)u.p[i] <= ' ' || u.p[i] == 0x7f) {
            sl_cfg_error(ctx, n, "%s: must not contain spaces or control characters", ctx->path);
            return;
        }
    }
    t->endpoint = sl_cfg_strdup(ctx, u);
}

static const sl_ckey metrics_keys[] = {
    {.name = "enabled", .type = SL_CK_BOOL, .offset = OFF(sl_metrics_cfg, enabled), .def = "true",
     .doc = "Record Prometheus metrics (served at /metrics); false skips all recording on the request path."},
    {.name = "max_series", .type = SL_CK_UINT, .offset = OFF(sl_metrics_cfg, max_series), .min = 10, .max = 100000,
     .def = "1000", .doc = "Distinct label sets per metric; later ones are counted under label values \"__other__\". Read at start only."},
};
const sl_csection sl_telemetry_metrics_section = {"telemetry.metrics", ARR(metrics_keys)};

static const sl_ckey traces_keys[] = {
    {.name = "endpoint", .type = SL_CK_CUSTOM, .parse = parse_endpoint, .type_doc = "URL",
     .doc = "OTLP/HTTP JSON traces URL, e.g. http://127.0.0.1:4318/v1/traces; absent, empty or off = no tracing."},
    {.name = "sample_ratio", .type = SL_CK_CUSTOM, .parse = parse_ratio, .def = "1.0", .type_doc = "number 0..1",
     .doc = "Share of requests traced when the caller sent no traceparent; a caller's sampled flag is always followed."},
    {.name = "batch_size", .type = SL_CK_UINT, .offset = OFF(sl_traces_cfg, batch_size), .min = 1, .max = 100000,
     .def = "512", .doc = "Most spans in one export request; a full batch is sent at once."},
    {.name = "queue_size", .type = SL_CK_UINT, .offset = OFF(sl_traces_cfg, queue_size), .min = 1, .max = 10000000,
     .def = "4096", .doc = "Spans waiting for export; when full, new spans are dropped and counted."},
    {.name = "flush_interval_ms", .type = SL_CK_DURATION, .offset = OFF(sl_traces_cfg, flush_interval_ms), .min = 1,
     .max = 3600000, .def = "2000", .doc = "Longest a span waits before a partial batch is sent."},
    {.name = "timeout_ms", .type = SL_CK_DURATION, .offset = OFF(sl_traces_cfg, timeout_ms), .min = 1,
     .max = 600000, .def = "10000", .doc = "Deadline of one export request; a failed batch is dropped and counted."},
    {.name = "headers", .type = SL_CK_STRMAP, .offset = OFF(sl_traces_cfg, headers),
     .count_offset = OFF(sl_traces_cfg, nheaders), .max_items = 32, .doc = "Headers sent with every export (e.g. auth)."},
    {.name = "service_name", .type = SL_CK_STRING, .offset = OFF(sl_traces_cfg, service_name), .def = "sluice",
     .doc = "The service.name resource attribute."},
};
const sl_csection sl_telemetry_traces_section = {"telemetry.traces", ARR(traces_keys)};

static const sl_ckey telemetry_keys[] = {
    {.name = "log_content", .type = SL_CK_BOOL, .offset = OFF(sl_telemetry_cfg, log_content), .def = "false",
     .doc = "Write prompt and completion into the access log (they may hold personal data)."},
    {.name = "log_content_max_bytes", .type = SL_CK_UINT, .offset = OFF(sl_telemetry_cfg, log_content_max_bytes),
     .min = 64, .max = 1048576, .def = "65536", .doc = "Longest prompt or completion logged; longer is cut and flagged."},
    {.name = "metrics", .type = SL_CK_SECTION, .offset = OFF(sl_telemetry_cfg, metrics), .sub = &sl_telemetry_metrics_section,
     .doc = "Prometheus metrics, below."},
    {.name = "traces", .type = SL_CK_SECTION, .offset = OFF(sl_telemetry_cfg, traces), .sub = &sl_telemetry_traces_section,
     .doc = "OpenTelemetry traces, below."},
};
const sl_csection sl_telemetry_section = {"telemetry", ARR(telemetry_keys)};
void sl_cfg_parse_telemetry(sl_cfg_ctx *ctx, const sl_ynode *node, sl_config *cfg)
{
    sl_cfg_parse_section(ctx, &sl_telemetry_section, node, &cfg->telemetry);
    sl_traces_cfg *t = &cfg->telemetry.traces;
    for (size_t i = 0; i < t->nheaders; i++) {
        if (strpbrk(t->headers[i].value, "\r\n") || strpbrk(t->headers[i].key, "\r\n: "))
            sl_cfg_error(ctx, node, "telemetry.traces.headers.%s: names and values must not contain line breaks",
                         t->headers[i].key);
    }
}
