#!/usr/bin/env bash
# `make run`: the bundled mock LLM on 127.0.0.1:9999 (serves the demo-* models,
# offline) and the gateway on 127.0.0.1:8080 with examples/quickstart.yaml.
# Real providers in that file are used when their *_API_KEY variables are set.
set -euo pipefail
cd "$(dirname "$0")/.."
MOCK_PORT=${SLUICE_MOCK_PORT:-9999}
CONFIG=${SLUICE_CONFIG:-examples/quickstart.yaml}

build/sluice-mock --port "$MOCK_PORT" --quiet &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true' EXIT
sleep 0.2
if ! kill -0 "$mock_pid" 2>/dev/null; then
  echo "sluice: the mock LLM could not start on 127.0.0.1:$MOCK_PORT (port in use? set SLUICE_MOCK_PORT)" >&2
  exit 1
fi
echo "sluice: mock LLM on 127.0.0.1:$MOCK_PORT; gateway on 127.0.0.1:8080 (admin 127.0.0.1:9901); Ctrl-C stops both"
echo "try:  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\"
echo "        -d '{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'"
build/sluice -c "$CONFIG" &
gw_pid=$!
trap 'kill "$gw_pid" "$mock_pid" 2>/dev/null || true' EXIT INT TERM
wait "$gw_pid"
