/*
 * sse_load.c: holds many concurrent SSE streams open against one HTTP/1.1
 * endpoint and measures, per stream, the time to first event and the largest
 * gap between two consecutive events. Used by bench/run.sh for the "streams
 * held stall-free" figure (SPEC §9, issue 7).
 *
 * One libuv loop per thread (--threads), streams split evenly between them.
 * Streams are opened at --ramp connections per second so that the listen
 * backlogs of the servers under test are not what is measured; every stream
 * is one connection carrying one POST. The response may be chunked or not;
 * it is de-chunked and scanned for SSE events (a blank line ends an event).
 * Timestamps are taken once per read callback with uv_hrtime().
 *
 * A stream is "ok" when it answered 200 and its last event was `data: [DONE]`
 * or `event: message_stop` before the body ended; "stalled" when some gap
 * between two events exceeded --stall-ms. Output: one line of key=value
 * pairs on stdout (times in milliseconds), parsed by bench/run.sh; cpu_s is
 * this process's own CPU time (user + system), so that run.sh can tell what
 * one event costs the load generator. all_open_s is how long every stream
 * was open at the same time (0: the first ones ended before the last ones
 * started, so the count was never held at once). stall_at_p10/p50/p90: when
 * (ms after the start) the stalled streams' largest gaps ended; close
 * together means one pause of a whole process (or of the machine), not slow
 * streams.
 *
 *   cc -O2 -o build/bench/sse_load bench/sse_load.c $(pkg-config --cflags --libs libuv) -lpthread
 *   sse_load --port 8080 --streams 1000 --body body.json [--path /v1/chat/completions]
 *            [--header 'k: v']... [--ramp 2500] [--stall-ms 100] [--timeout-s 60] [--threads 1]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <uv.h>

#define MAX_HEADERS 16
#define MAX_THREADS 8
#define HEAD_CAP 8192   /* response header block */
#define LINE_KEEP 24    /* bytes of each SSE line kept to spot [DONE] / message_stop */

typedef enum { ST_CONNECTING, ST_HEAD, ST_BODY, ST_DONE } conn_state;
typedef enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END } chunk_state;

typedef struct stream {
    uv_tcp_t tcp;
    uv_connect_t conn_req;
    uv_write_t write_req;
    struct loop_ctx *ctx;
    conn_state st;
    int status;
    bool chunked, has_len, final_seen, ok, open_counted, closing;
    uint64_t body_left;     /* Content-Length bodies */
    chunk_state cs;
    uint64_t chunk_left;
    /* SSE scanner */
    size_t line_len;        /* bytes of the current line so far */
    char line[LINE_KEEP];
    bool event_nonempty, last_was_final;
    uint64_t t_sent, t_first, t_last; /* ns */
    uint64_t max_gap;                 /* ns */
    uint64_t t_gap;                   /* ns: when the largest gap ended */
    uint64_t events;
    char head[HEAD_CAP];
    size_t head_len;
} stream;

typedef struct loop_ctx {
    uv_loop_t loop;
    uv_timer_t ramp_timer, deadline_timer;
    pthread_t th;
    int idx; /* which readbuf */
    stream *streams;
    size_t n, next, finished;
    uint64_t t_start;
    int open_now, open_peak;
    uint64_t t_all_open, t_first_close; /* ns: when open_now reached n; when the first stream ended */
    uint64_t errors_connect, errors_status, errors_io, errors_timeout, errors_incomplete;
} loop_ctx;

static struct {
    const char *host;
    int port;
    const char *path;
    const char *headers[MAX_HEADERS];
    int nheaders;
    const char *body_file;
    size_t streams;
    double ramp;
    double stall_ms;
    double timeout_s;
    int threads;
} opt = {.host = "127.0.0.1", .port = 8080, .path = "/v1/chat/completions", .streams = 100,
         .ramp = 2500, .stall_ms = 100, .timeout_s = 60, .threads = 1};

static char *request;
static size_t request_len;
static struct sockaddr_in addr;
static char readbuf[MAX_THREADS][65536];
static loop_ctx ctxs[MAX_THREADS];

static void die(const char *msg)
{
    fprintf(stderr, "sse_load: %s\n", msg);
    exit(2);
}

/* ---------------------------------------------------------------- finishing */

static void on_closed(uv_handle_t *h) { (void)h; }

static void finish(stream *s, bool ok)
{
    if (s->st == ST_DONE) return;
    loop_ctx *c = s->ctx;
    if (s->open_counted) {
        c->open_now--;
        if (!c->t_first_close) c->t_first_close = uv_hrtime();
    }
    s->st = ST_DONE;
    s->ok = ok;
    c->finished++;
    if (!uv_is_closing((uv_handle_t *)&s->tcp)) uv_close((uv_handle_t *)&s->tcp, on_closed);
    if (c->finished == c->n) {
        uv_timer_stop(&c->ramp_timer);
        uv_timer_stop(&c->deadline_timer);
    }
}

/* ---------------------------------------------------------------- SSE scanning */

static void event_end(stream *s, uint64_t now)
{
    if (!s->event_nonempty) return;
    s->event_nonempty = false;
    s->events++;
    if (s->events == 1) s->t_first = now;
    else if (now - s->t_last > s->max_gap) s->max_gap = now - s->t_last, s->t_gap = now;
    s->t_last = now;
    s->final_seen = s->last_was_final;
}

static void line_end(stream *s, uint64_t now)
{
    if (s->line_len == 0) {
        event_end(s, now);
        return;
    }
    size_t k = s->line_len < LINE_KEEP ? s->line_len : LINE_KEEP;
    s->event_nonempty = true;
    if (k >= 12 && !memcmp(s->line, "data: [DONE]", 12)) s->last_was_final = true;
    else if (k >= 19 && !memcmp(s->line, "event: message_stop", 19)) s->last_was_final = true;
    else if (k >= 5 && !memcmp(s->line, "data:", 5)) s->last_was_final = false;
    s->line_len = 0;
}

static void sse_feed(stream *s, const char *p, size_t n, uint64_t now)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\r') continue; /* CRLF and LF both end a line; a lone CR is not produced by these servers */
        if (ch == '\n') {
            line_end(s, now);
            continue;
        }
        if (s->line_len < LINE_KEEP) s->line[s->line_len] = ch;
        s->line_len++;
    }
}

/* ---------------------------------------------------------------- HTTP body */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Returns false on a framing error; sets *ended when the body is complete. */
static bool body_feed(stream *s, const char *p, size_t n, uint64_t now, bool *ended)
{
    if (!s->chunked) {
        size_t take = n;
        if (s->has_len && take > s->body_left) take = (size_t)s->body_left;
        sse_feed(s, p, take, now);
        if (s->has_len) {
            s->body_left -= take;
            if (s->body_left == 0) *ended = true;
        }
        return true;
    }
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        switch (s->cs) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (s->chunk_left > (UINT64_MAX >> 4)) return false;
                s->chunk_left = s->chunk_left * 16 + (uint64_t)v;
            } else if (ch == ';' || ch == '\r') s->cs = CH_EXT;
            else if (ch == '\n') s->cs = s->chunk_left ? CH_DATA : CH_END;
            else return false;
            i++;
            break;
        }
        case CH_EXT:
            if (ch == '\n') s->cs = s->chunk_left ? CH_DATA : CH_END;
            i++;
            break;
        case CH_DATA: {
            size_t take = n - i;
            if (take > s->chunk_left) take = (size_t)s->chunk_left;
            sse_feed(s, p + i, take, now);
            s->chunk_left -= take;
            i += take;
            if (s->chunk_left == 0) s->cs = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch == '\r') s->cs = CH_DATA_LF;
            else if (ch == '\n') s->cs = CH_SIZE;
            else return false;
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return false;
            s->cs = CH_SIZE;
            i++;
            break;
        case CH_END: /* trailers are not awaited: the last chunk ends the stream */
            *ended = true;
            return true;
        }
    }
    if (s->cs == CH_END) *ended = true;
    return true;
}

/* ---------------------------------------------------------------- HTTP head */

static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return false;
    const char *v = line + k + 1;
    const char *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

/* Parses the complete head in s->head[0..end). */
static bool parse_head(stream *s, size_t end)
{
    if (end < 12 || memcmp(s->head, "HTTP/1.", 7) != 0) return false;
    s->status = (s->head[9] - '0') * 100 + (s->head[10] - '0') * 10 + (s->head[11] - '0');
    const char *p = memchr(s->head, '\n', end);
    while (p && (size_t)(p - s->head) + 1 < end) {
        const char *line = p + 1;
        const char *nl = memchr(line, '\n', end - (size_t)(line - s->head));
        if (!nl) break;
        size_t n = (size_t)(nl - line);
        const char *v;
        size_t vl;
        if (header_is(line, n, "transfer-encoding", &v, &vl) && vl >= 7 && !strncasecmp(v + vl - 7, "chunked", 7))
            s->chunked = true;
        else if (header_is(line, n, "content-length", &v, &vl)) {
            uint64_t x = 0;
            for (size_t i = 0; i < vl && i < 19; i++) {
                if (v[i] < '0' || v[i] > '9') return false;
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            s->has_len = true;
            s->body_left = x;
        }
        p = nl;
    }
    return true;
}

static void feed(stream *s, const char *p, size_t n, uint64_t now)
{
    loop_ctx *c = s->ctx;
    if (s->st == ST_HEAD) {
        size_t room = HEAD_CAP - s->head_len;
        size_t take = n < room ? n : room;
        memcpy(s->head + s->head_len, p, take);
        size_t scan_from = s->head_len >= 3 ? s->head_len - 3 : 0;
        s->head_len += take;
        char *e = memmem(s->head + scan_from, s->head_len - scan_from, "\r\n\r\n", 4);
        if (!e) {
            if (s->head_len == HEAD_CAP) c->errors_io++, finish(s, false);
            return;
        }
        size_t end = (size_t)(e - s->head) + 4;
        if (!parse_head(s, end)) {
            c->errors_io++;
            finish(s, false);
            return;
        }
        if (s->status != 200) {
            c->errors_status++;
            finish(s, false);
            return;
        }
        s->st = ST_BODY;
        size_t used_from_p = end - (s->head_len - take);
        p += used_from_p;
        n -= used_from_p;
        if (s->has_len && s->body_left == 0) {
            c->errors_incomplete++;
            finish(s, false);
            return;
        }
    }
    bool ended = false;
    if (!body_feed(s, p, n, now, &ended)) {
        c->errors_io++;
        finish(s, false);
        return;
    }
    if (ended) {
        if (!s->final_seen) c->errors_incomplete++;
        finish(s, s->final_seen);
    }
}

/* ---------------------------------------------------------------- libuv plumbing */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    stream *s = h->data;
    buf->base = readbuf[s->ctx->idx];
    buf->len = sizeof readbuf[s->ctx->idx];
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    stream *s = h->data;
    if (s->st == ST_DONE) return;
    if (nread < 0) {
        if (nread == UV_EOF && s->st == ST_BODY && !s->chunked && !s->has_len) {
            if (!s->final_seen) s->ctx->errors_incomplete++;
            finish(s, s->final_seen);
        } else {
            s->ctx->errors_io++;
            finish(s, false);
        }
        return;
    }
    if (nread == 0) return;
    feed(s, buf->base, (size_t)nread, uv_hrtime());
}

static void on_written(uv_write_t *w, int status)
{
    stream *s = w->data;
    if (status < 0 && s->st != ST_DONE) {
        s->ctx->errors_io++;
        finish(s, false);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    stream *s = req->data;
    loop_ctx *c = s->ctx;
    if (s->st == ST_DONE) return;
    if (status < 0) {
        c->errors_connect++;
        finish(s, false);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    s->st = ST_HEAD;
    s->open_counted = true;
    if (++c->open_now > c->open_peak) c->open_peak = c->open_now;
    if ((size_t)c->open_now == c->n && !c->t_all_open) c->t_all_open = uv_hrtime();
    s->write_req.data = s;
    uv_buf_t b = uv_buf_init(request, (unsigned)request_len);
    s->t_sent = uv_hrtime();
    int rc = uv_write(&s->write_req, (uv_stream_t *)&s->tcp, &b, 1, on_written);
    if (rc == 0) rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc) {
        c->errors_io++;
        finish(s, false);
    }
}

static void start_stream(loop_ctx *c, stream *s)
{
    s->ctx = c;
    s->st = ST_CONNECTING;
    s->cs = CH_SIZE;
    int rc = uv_tcp_init(&c->loop, &s->tcp);
    if (rc) {
        c->errors_connect++;
        s->st = ST_DONE;
        c->finished++;
        return;
    }
    s->tcp.data = s;
    s->conn_req.data = s;
    rc = uv_tcp_connect(&s->conn_req, &s->tcp, (const struct sockaddr *)&addr, on_connect);
    if (rc) {
        c->errors_connect++;
        finish(s, false);
    }
}

static void on_ramp(uv_timer_t *t)
{
    loop_ctx *c = t->data;
    double per_thread_rate = opt.ramp / opt.threads;
    double elapsed_s = (double)(uv_hrtime() - c->t_start) / 1e9;
    size_t due = (size_t)(per_thread_rate * elapsed_s) + 1;
    if (due > c->n) due = c->n;
    while (c->next < due) start_stream(c, &c->streams[c->next++]);
    if (c->next == c->n) uv_timer_stop(t);
}

static void on_deadline(uv_timer_t *t)
{
    loop_ctx *c = t->data;
    uv_timer_stop(&c->ramp_timer);
    for (size_t i = 0; i < c->n; i++) {
        stream *s = &c->streams[i];
        if (i >= c->next) {
            c->errors_timeout++;
            c->finished++;
            s->st = ST_DONE;
            continue;
        }
        if (s->st != ST_DONE) {
            c->errors_timeout++;
            finish(s, false);
        }
    }
}

static void *thread_main(void *arg)
{
    loop_ctx *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---------------------------------------------------------------- setup and report */

static void load_request(void)
{
    FILE *f = fopen(opt.body_file, "rb");
    if (!f) die("cannot open --body file");
    static char body[4 << 20];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    size_t cap = blen + 4096;
    request = malloc(cap);
    if (!request) die("out of memory");
    int n = snprintf(request, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Accept: text/event-stream\r\nContent-Length: %zu\r\n",
                     opt.path, opt.host, opt.port, blen);
    for (int i = 0; i < opt.nheaders; i++)
        n += snprintf(request + n, cap - (size_t)n, "%s\r\n", opt.headers[i]);
    n += snprintf(request + n, cap - (size_t)n, "\r\n");
    if ((size_t)n + blen > cap) die("headers too long");
    memcpy(request + n, body, blen);
    request_len = (size_t)n + blen;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

/* This process's CPU time so far (user + system), in seconds. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void report(double wall_s)
{
    size_t total = 0, ok = 0, stalled = 0, nt = 0;
    uint64_t events = 0, errs[5] = {0};
    int peak = 0;
    double all_open_s = -1; /* the shortest over the threads */
    uint64_t *ttft = malloc(sizeof(uint64_t) * opt.streams);
    uint64_t *gap = malloc(sizeof(uint64_t) * opt.streams);
    uint64_t *gap_at = malloc(sizeof(uint64_t) * opt.streams); /* when stalled streams' largest gaps ended */
    size_t ngat = 0;
    if (!ttft || !gap || !gap_at) die("out of memory");
    uint64_t stall_ns = (uint64_t)(opt.stall_ms * 1e6);
    for (int t = 0; t < opt.threads; t++) {
        loop_ctx *c = &ctxs[t];
        peak += c->open_peak; /* upper bound: the threads' peaks need not coincide */
        double held = c->t_all_open && c->t_first_close > c->t_all_open
                          ? (double)(c->t_first_close - c->t_all_open) / 1e9 : 0;
        if (all_open_s < 0 || held < all_open_s) all_open_s = held;
        errs[0] += c->errors_connect, errs[1] += c->errors_status, errs[2] += c->errors_io;
        errs[3] += c->errors_timeout, errs[4] += c->errors_incomplete;
        for (size_t i = 0; i < c->n; i++) {
            stream *s = &c->streams[i];
            total++;
            events += s->events;
            if (s->events) ttft[nt] = s->t_first - s->t_sent, gap[nt] = s->max_gap, nt++;
            if (!s->ok) continue;
            ok++;
            if (s->max_gap > stall_ns) stalled++, gap_at[ngat++] = s->t_gap - c->t_start;
        }
    }
    qsort(ttft, nt, sizeof *ttft, cmp_u64);
    qsort(gap, nt, sizeof *gap, cmp_u64);
    qsort(gap_at, ngat, sizeof *gap_at, cmp_u64);
    printf("streams=%zu ok=%zu stalled=%zu stall_free=%zu peak_open=%d events=%llu "
           "ttft_p50=%.2f ttft_p99=%.2f ttft_max=%.2f gap_p50=%.2f gap_p99=%.2f gap_max=%.2f "
           "err_connect=%llu err_status=%llu err_io=%llu err_timeout=%llu err_incomplete=%llu wall_s=%.1f "
           "cpu_s=%.3f all_open_s=%.2f stall_at_p10=%.0f stall_at_p50=%.0f stall_at_p90=%.0f\n",
           total, ok, stalled, ok - stalled, peak, (unsigned long long)events, pct_ms(ttft, nt, 50),
           pct_ms(ttft, nt, 99), nt ? (double)ttft[nt - 1] / 1e6 : 0, pct_ms(gap, nt, 50), pct_ms(gap, nt, 99),
           nt ? (double)gap[nt - 1] / 1e6 : 0, (unsigned long long)errs[0], (unsigned long long)errs[1],
           (unsigned long long)errs[2], (unsigned long long)errs[3], (unsigned long long)errs[4], wall_s,
           cpu_seconds(), all_open_s < 0 ? 0 : all_open_s, pct_ms(gap_at, ngat, 10), pct_ms(gap_at, ngat, 50),
           pct_ms(gap_at, ngat, 90));
    free(gap_at);
    free(ttft);
    free(gap);
}

static double num_arg(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || x < lo || x > hi) {
        fprintf(stderr, "sse_load: bad value for %s\n", flag);
        exit(2);
    }
    return x;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) die("missing value");
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = (int)num_arg(a, v, 1, 65535);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--header")) {
            if (opt.nheaders == MAX_HEADERS) die("too many --header");
            opt.headers[opt.nheaders++] = v;
        } else if (!strcmp(a, "--body")) opt.body_file = v;
        else if (!strcmp(a, "--streams")) opt.streams = (size_t)num_arg(a, v, 1, 1000000);
        else if (!strcmp(a, "--ramp")) opt.ramp = num_arg(a, v, 1, 1e6);
        else if (!strcmp(a, "--stall-ms")) opt.stall_ms = num_arg(a, v, 0, 1e6);
        else if (!strcmp(a, "--timeout-s")) opt.timeout_s = num_arg(a, v, 1, 86400);
        else if (!strcmp(a, "--threads")) opt.threads = (int)num_arg(a, v, 1, MAX_THREADS);
        else die("unknown flag");
    }
    if (!opt.body_file) die("--body is required");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < opt.streams + 64) fprintf(stderr, "sse_load: warning: open-file limit %llu < streams\n",
                                                    (unsigned long long)rl.rlim_cur);
    }
    if (uv_ip4_addr(opt.host, opt.port, &addr)) die("bad --host");
    load_request();
    stream *all = calloc(opt.streams, sizeof *all);
    if (!all) die("out of memory");
    uint64_t t0 = uv_hrtime();
    size_t off = 0;
    for (int t = 0; t < opt.threads; t++) {
        loop_ctx *c = &ctxs[t];
        size_t n = opt.streams / (size_t)opt.threads + ((size_t)t < opt.streams % (size_t)opt.threads);
        c->streams = all + off;
        c->n = n;
        off += n;
        c->t_start = t0;
        c->idx = t;
        if (uv_loop_init(&c->loop)) die("uv_loop_init");
        uv_timer_init(&c->loop, &c->ramp_timer);
        uv_timer_init(&c->loop, &c->deadline_timer);
        c->ramp_timer.data = c->deadline_timer.data = c;
        uv_timer_start(&c->ramp_timer, on_ramp, 0, 1);
        uv_timer_start(&c->deadline_timer, on_deadline, (uint64_t)(opt.timeout_s * 1000), 0);
        uv_unref((uv_handle_t *)&c->deadline_timer);
    }
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&ctxs[t].th, NULL, thread_main, &ctxs[t])) die("pthread_create");
    for (int t = 0; t < opt.threads; t++) pthread_join(ctxs[t].th, NULL);
    report((double)(uv_hrtime() - t0) / 1e9);
    return 0;
}
