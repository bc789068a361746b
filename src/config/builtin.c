/*
 * builtin.c: the configuration used when sluice starts with no -c and no
 * ./sluice.yaml. It routes demo-* models to the bundled mock provider
 * (sluice-mock's default port) so a fresh checkout answers requests offline;
 * examples/quickstart.yaml is the same plus real providers.
 */
#include "config/config.h"

const char sl_config_builtin_yaml[] =
    "# sluice built-in default configuration\n"
    "server:\n"
    "  listen: [\"127.0.0.1:8080\"]\n"
    "  admin_listen: \"127.0.0.1:9901\"\n"
    "\n"
    "providers:\n"
    "  - name: mock\n"
    "    type: openai-compatible\n"
    "    base_url: http://127.0.0.1:9999/v1\n"
    "\n"
    "models:\n"
    "  - name: \"demo-*\"\n"
    "    targets: [ { provider: mock } ]\n";
