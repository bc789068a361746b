/*
 * main.c: sluice-mock's command line and workers.
 *
 * Each worker is a thread with its own uv loop and its own listener on the
 * same host:port (the server binds with SO_REUSEPORT, so the kernel spreads
 * connections). The main thread blocks SIGTERM/SIGINT for everyone, waits for
 * every listener to be up, prints the ready line, then sigwait()s and exits 0:
 * the mock holds nothing that needs a graceful drain.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "mock.h"

typedef struct worker {
    pthread_t th;
    uv_loop_t loop;
    sl_server *srv;
    const sl_mock_opts *o;
    int rc;
} worker;

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready_count;

static void usage(FILE *f)
{
    fputs("usage: sluice-mock [--host 127.0.0.1] [--port 9999] [--workers 1] [--ttft-ms 0] [--itl-ms 0]\n"
          "                   [--tokens 16] [--status 200] [--fail-after N] [--fail-mode reset|event|malformed|stall]\n"
          "                   [--embedding-dim 8] [--key-status KEY=STATUS[:RETRY_AFTER_S]]... [--quiet]\n"
          "  inference-server mode: [--max-batch N] [--max-queue 1024] [--prefill-us-per-token 0]\n"
          "                   [--decode-ms-per-token 0] [--cache-tokens 0] [--cache-block-tokens 16]\n"
          "See docs/mock.md for the x-mock-* request headers and the /mock/ read-back API.\n",
          f);
}

static void die_usage(const char *flag, const char *why)
{
    fprintf(stderr, "sluice-mock: %s: %s\n", flag, why);
    usage(stderr);
    exit(2);
}

static uint64_t num(const char *flag, const char *v, uint64_t min, uint64_t max)
{
    uint64_t n;
    if (sl_str_to_u64(sl_str_from_cstr(v), max, &n) || n < min) die_usage(flag, "bad number");
    return n;
}

static void parse_args(int argc, char **argv, sl_mock_opts *o)
{
    *o = (sl_mock_opts){.host = "127.0.0.1", .port = 9999, .workers = 1, .tokens = 16, .status = 200,
                        .fail_after = -1, .fail_mode = SL_MOCK_FAIL_RESET, .embedding_dim = 8,
                        .max_queue = 1024, .cache_block_tokens = 16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--version")) {
            printf("sluice-mock %s (%s)\n", SL_VERSION, SL_GIT_REV);
            exit(0);
        }
        if (i + 1 >= argc) die_usage(a, "unknown flag or missing value");
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) o->port = (int)num(a, v, 1, 65535);
        else if (!strcmp(a, "--workers")) o->workers = (int)num(a, v, 1, SL_MOCK_MAX_WORKERS);
        else if (!strcmp(a, "--ttft-ms")) o->ttft_ms = num(a, v, 0, SL_MOCK_MAX_MS);
        else if (!strcmp(a, "--itl-ms")) o->itl_ms = num(a, v, 0, SL_MOCK_MAX_MS);
        else if (!strcmp(a, "--tokens")) o->tokens = num(a, v, 0, SL_MOCK_MAX_TOKENS);
        else if (!strcmp(a, "--status")) o->status = (int)num(a, v, 200, 599);
        else if (!strcmp(a, "--fail-after")) o->fail_after = !strcmp(v, "-1") ? -1 : (int64_t)num(a, v, 0, SL_MOCK_MAX_TOKENS);
        else if (!strcmp(a, "--fail-mode")) {
            if (!sl_mock_fail_mode_parse(sl_str_from_cstr(v), &o->fail_mode)) die_usage(a, "reset|event|malformed|stall");
        } else if (!strcmp(a, "--key-status")) {
            if (o->nkey_rules == SL_MOCK_MAX_KEY_RULES) die_usage(a, "too many (at most 64)");
            if (!sl_mock_key_rule_parse(sl_str_from_cstr(v), &o->key_rules[o->nkey_rules++]))
                die_usage(a, "KEY=STATUS[:RETRY_AFTER_S], status 400-599, retry-after 0-86400");
        } else if (!strcmp(a, "--embedding-dim")) o->embedding_dim = (uint32_t)num(a, v, 1, SL_MOCK_MAX_EMBED_DIM);
        else if (!strcmp(a, "--max-batch")) o->max_batch = (uint32_t)num(a, v, 1, 4096);
        else if (!strcmp(a, "--max-queue")) o->max_queue = (uint32_t)num(a, v, 0, 1000000);
        else if (!strcmp(a, "--prefill-us-per-token")) o->prefill_us_per_token = num(a, v, 0, 1000000);
        else if (!strcmp(a, "--decode-ms-per-token")) o->decode_ms_per_token = num(a, v, 0, 10000);
        else if (!strcmp(a, "--cache-tokens")) o->cache_tokens = num(a, v, 0, 1ull << 32);
        else if (!strcmp(a, "--cache-block-tokens")) o->cache_block_tokens = num(a, v, 1, 4096);
        else die_usage(a, "unknown flag");
    }
    if (o->max_batch) o->workers = 1; /* the engine is one loop's state */
}

static void report_ready(worker *w, int rc)
{
    pthread_mutex_lock(&ready_lock);
    w->rc = rc;
    ready_count++;
    pthread_cond_signal(&ready_cond);
    pthread_mutex_unlock(&ready_lock);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sl_server_limits lim = {
        .max_header_bytes = 64u * 1024u,
        .max_headers = SL_HTTP_MAX_HEADERS_HARD,
        .max_body_bytes = SL_MOCK_MAX_BODY,
        .header_timeout_ms = 30000,
        .idle_timeout_ms = 300000,
        .max_connections = 100000,
    };
    int rc = uv_loop_init(&w->loop);
    if (rc) {
        report_ready(w, SL_EIO);
        return NULL;
    }
    w->srv = sl_server_new(&w->loop, &lim, sl_mock_handle, (void *)w->o);
    rc = w->srv ? sl_server_listen(w->srv, w->o->host, w->o->port) : SL_ENOMEM;
    report_ready(w, rc);
    if (rc) return NULL;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

int main(int argc, char **argv)
{
    static sl_mock_opts o;
    static worker workers[SL_MOCK_MAX_WORKERS];
    parse_args(argc, argv, &o);
    sl_log_set_level(o.quiet ? SL_LOG_WARN : SL_LOG_INFO);
    signal(SIGPIPE, SIG_IGN);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* inherited by the workers: only sigwait() sees them */

    if (sl_server_probe_free(o.host, o.port) != SL_OK) { /* SO_REUSEPORT would otherwise share it silently */
        fprintf(stderr, "sluice-mock: cannot listen on %s:%d: address in use\n", o.host, o.port);
        return 1;
    }
    for (int i = 0; i < o.workers; i++) {
        workers[i].o = &o;
        if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i])) {
            fprintf(stderr, "sluice-mock: cannot start worker thread\n");
            return 1;
        }
    }
    pthread_mutex_lock(&ready_lock);
    while (ready_count < o.workers) pthread_cond_wait(&ready_cond, &ready_lock);
    pthread_mutex_unlock(&ready_lock);
    for (int i = 0; i < o.workers; i++) {
        if (workers[i].rc) {
            fprintf(stderr, "sluice-mock: cannot listen on %s:%d: %s\n", o.host, o.port, sl_strerror(workers[i].rc));
            return 1;
        }
    }
    printf("sluice-mock listening on %s:%d\n", o.host, o.port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    fflush(stdout);
    exit(0);
}
