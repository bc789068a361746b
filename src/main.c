/*
 * main.c: the command line (SPEC §1), signals and the life of the process.
 *
 *   sluice [-c FILE]            run the gateway
 *   sluice --check [-c FILE]    validate the configuration and exit
 *   sluice --version            version and build flags
 *   sluice openapi2mcp SPEC     MCP server config (YAML) from an OpenAPI 3 document
 *
 * Without -c: ./sluice.yaml if it exists, else the built-in default.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "gateway/accesslog.h"
#include "gateway/runtime.h"
#include "http/upstream.h"
#include "telemetry/telemetry.h"
#include "mcp/mcp.h"

#include <curl/curl.h>

typedef struct cli {
    const char *config_path;
    bool check;
    bool version;
} cli;

typedef struct app {
    uv_loop_t *loop;
    sl_runtime rt;
    sl_admin *admin;
    uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
    bool stopping;
} app;

static void usage(FILE *f)
{
    fputs("usage: sluice [-c FILE] [--check] [--version]\n"
          "       sluice openapi2mcp SPEC [--prefix P] [--name N] [--base-url URL]\n"
          "  -c, --config FILE   configuration (default ./sluice.yaml, else built-in)\n"
          "      --check         validate the configuration and exit (0 ok, 1 errors)\n"
          "  -v, --version       print version and build flags\n",
          f);
}

static int parse_cli(int argc, char **argv, cli *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) c->config_path = argv[++i];
        else if (!strcmp(a, "--check")) c->check = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--version")) c->version = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else { fprintf(stderr, "sluice: unknown argument '%s'\n", a); usage(stderr); return -1; }
    }
    if (!c->config_path && access("sluice.yaml", R_OK) == 0) c->config_path = "sluice.yaml";
    return 0;
}

/* Loads the configuration; on failure prints the FILE:LINE:COL lines to stderr. */
static sl_config *load_config(const char *path)
{
    sl_config *cfg = NULL;
    sl_buf errs;
    sl_buf_init(&errs, 1 << 20);
    int rc = path ? sl_config_load_file(path, &cfg, &errs)
                  : sl_config_load_string("<builtin>", sl_config_builtin_yaml, strlen(sl_config_builtin_yaml), &cfg, &errs);
    if (rc != SL_OK) {
        if (errs.len) fwrite(errs.p, 1, errs.len, stderr);
        else fprintf(stderr, "%s: %s\n", path ? path : "<builtin>", sl_strerror(rc));
        cfg = NULL;
    }
    sl_buf_free(&errs);
    return cfg;
}

static void on_sighup(uv_signal_t *s, int signum)
{
    app *a = s->data;
    if (a->stopping) return;
    sl_info("reloading configuration from %s", a->rt.config_path ? a->rt.config_path : "<builtin>");
    sl_config *cfg = load_config(a->rt.config_path);
    if (!cfg) {
        sl_error("reload rejected: the configuration has errors; still serving the previous one");
        return;
    }
    sl_runtime_swap_config(&a->rt, cfg);
    sl_telemetry_configure(cfg);
    sl_config_release(cfg);
    sl_info("configuration reloaded");
}

static void on_sigterm(uv_signal_t *s, int signum)
{
    app *a = s->data;
    if (a->stopping) return;
    a->stopping = true;
    sl_info("signal %d: draining and stopping", signum);
    sl_runtime_stop(&a->rt);
    /* The main loop ends once the admin listener and signal handles are closed. */
    sl_admin_stop(a->admin);
    a->admin = NULL;
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    uv_close((uv_handle_t *)&a->sig_usr1, NULL);
}

static void on_sigusr1(uv_signal_t *s, int signum)
{
    sl_accesslog_reopen();
}

static void watch_signal(app *a, uv_signal_t *h, uv_signal_cb cb, int signum)
{
    uv_signal_init(a->loop, h);
    h->data = a;
    uv_signal_start(h, cb, signum);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "openapi2mcp")) return sl_openapi2mcp_main(argc - 2, argv + 2);
    cli c;
    if (parse_cli(argc, argv, &c) != 0) return 2;
    if (c.version) {
        printf("sluice %s (%s) build: %s, libuv %s, %s\n", SL_VERSION, SL_GIT_REV, SL_BUILD_FLAGS, uv_version_string(),
               curl_version());
        return 0;
    }
    sl_config *cfg = load_config(c.config_path);
    if (c.check) {
        if (!cfg) return 1;
        printf("%s: ok\n", c.config_path ? c.config_path : "<builtin>");
        sl_config_release(cfg);
        return 0;
    }
    if (!cfg) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (sl_upstream_global_init() != SL_OK) return 1;
    if (sl_accesslog_open(cfg->server.access_log) != SL_OK) return 1;
    if (sl_telemetry_start(cfg) != SL_OK) return 1;

    app a;
    memset(&a, 0, sizeof a);
    a.loop = uv_default_loop();
    a.rt.config_path = c.config_path;
    if (sl_runtime_start(&a.rt, cfg) != SL_OK) return 1;
    if (cfg->server.has_admin) {
        a.admin = sl_admin_start(a.loop, &a.rt, cfg->server.admin_listen.host, cfg->server.admin_listen.port);
        if (!a.admin) {
            sl_error("cannot listen on admin %s:%d", cfg->server.admin_listen.host, cfg->server.admin_listen.port);
            return 1;
        }
    }
    watch_signal(&a, &a.sig_hup, on_sighup, SIGHUP);
    watch_signal(&a, &a.sig_term, on_sigterm, SIGTERM);
    watch_signal(&a, &a.sig_int, on_sigterm, SIGINT);
    watch_signal(&a, &a.sig_usr1, on_sigusr1, SIGUSR1);
    for (size_t i = 0; i < cfg->server.nlisten; i++)
        sl_info("listening on %s:%d (%zu workers)", cfg->server.listen[i].host, cfg->server.listen[i].port,
                a.rt.nworkers);
    sl_config_release(cfg);

    uv_run(a.loop, UV_RUN_DEFAULT);
    sl_runtime_join(&a.rt);
    sl_telemetry_stop(); /* after the workers: flushes the spans they queued */
    uv_loop_close(a.loop);
    sl_accesslog_close();
    sl_upstream_global_cleanup();
    sl_info("stopped");
    return 0;
}
