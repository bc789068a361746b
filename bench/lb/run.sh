#!/usr/bin/env bash
# `make bench-lb`: LLM-aware load balancing measured (docs/balancing.md).
#
# Three sluice-mock engines in inference-server mode (bounded batch, one
# prefill at a time, prefix cache with LRU) behind sluice, driven by the
# multi-turn chat workload of bench/lb/load.mjs, once per balancer, each run
# on fresh engines (empty caches) and a fresh gateway:
#   multi-turn: round-robin (weighted), least_request, prefix_cache, metrics,
#               prefix_cache + metrics
#   hot spot:   the same with a few workers sharing one long document:
#               round-robin, prefix_cache without the overload bound,
#               prefix_cache with it, prefix_cache + metrics
# Prints TTFT p50/p99, requests/s, output tokens/s and the engines' prefix
# cache hit rate (their own vllm:prefix_cache_* counters), and writes the
# tables into bench/RESULTS.md under "## Load balancing (make bench-lb)".
set -euo pipefail
cd "$(dirname "$0")/../.."

SESSIONS=${LB_SESSIONS:-60}
TURNS=${LB_TURNS:-5}
CONC=${LB_CONCURRENCY:-20}
SYSTEM_TOKENS=${LB_SYSTEM_TOKENS:-1000}
USER_TOKENS=${LB_USER_TOKENS:-200}
HOT_WORKERS=${LB_HOT_WORKERS:-8}
HOT_TOKENS=${LB_HOT_TOKENS:-6000}
BASE=${LB_PORT_BASE:-18400}
# one engine: 8 requests in a batch, 100 us of prefill per uncached prompt token
# (a 2000-token prompt: 200 ms), 4 ms per output token, 40k tokens of prefix cache
ENGINE=(--max-batch 8 --prefill-us-per-token 100 --decode-ms-per-token 4 --cache-tokens 40000
        --cache-block-tokens 16 --tokens 24 --quiet)
GW_PORT=$((BASE + 80))
TMP=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

[ -x build/sluice ] && [ -x build/sluice-mock ] || { echo "bench-lb: build first (make all)" >&2; exit 1; }

wait_port() { # port
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench-lb: nothing listens on $1" >&2; exit 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

config() { # balance extra-yaml-lines
  cat <<YAML
server:
  listen: ["127.0.0.1:$GW_PORT"]
  admin_listen: "127.0.0.1:$((GW_PORT + 1))"
  workers: 1
  access_log: "off"
providers:
$(for i in 1 2 3; do echo "  - { name: e$i, type: vllm, base_url: 'http://127.0.0.1:$((BASE + i))/v1' }"; done)
models:
  - name: m
    targets: [ { provider: e1 }, { provider: e2 }, { provider: e3 } ]
    balance: $1
    retry: { attempts: 1 }
$2
YAML
}

# engine counters summed over the three: "hits queries"
cache_counts() {
  local h=0 q=0
  for i in 1 2 3; do
    local m; m=$(curl -s "http://127.0.0.1:$((BASE + i))/metrics")
    h=$((h + $(echo "$m" | awk '/^vllm:prefix_cache_hits_total/ {print int($2)}')))
    q=$((q + $(echo "$m" | awk '/^vllm:prefix_cache_queries_total/ {print int($2)}')))
  done
  echo "$h $q"
}

run_one() { # label balance extra hot
  stop_all
  for i in 1 2 3; do
    build/sluice-mock --port $((BASE + i)) "${ENGINE[@]}" >/dev/null &
    pids+=($!)
  done
  config "$2" "$3" >"$TMP/gw.yaml"
  build/sluice -c "$TMP/gw.yaml" >"$TMP/gw.log" 2>&1 &
  pids+=($!)
  for i in 1 2 3; do wait_port $((BASE + i)); done
  wait_port "$GW_PORT"
  local out
  out=$(node bench/lb/load.mjs --url "http://127.0.0.1:$GW_PORT" --model m --sessions "$SESSIONS" --turns "$TURNS" \
        --concurrency "$CONC" --system-tokens "$SYSTEM_TOKENS" --user-tokens "$USER_TOKENS" --hot "$4" \
        --hot-tokens "$HOT_TOKENS")
  read -r hits queries < <(cache_counts)
  local rate; rate=$(awk -v h="$hits" -v q="$queries" 'BEGIN { printf "%.1f", q ? 100 * h / q : 0 }')
  node -e '
    const r = JSON.parse(process.argv[1]);
    const row = [process.argv[2], r.ttft_p50_ms, r.ttft_p99_ms, r.hot_ttft_p99_ms ?? "", r.req_per_s,
                 r.out_tok_per_s, process.argv[3] + "%", r.requests, r.errors];
    console.log("| " + row.join(" | ") + " |");' "$out" "$1" "$rate" | tee -a "$TMP/rows"
  stop_all
}

HDR="| balancer | TTFT p50 ms | TTFT p99 ms | hot-session TTFT p99 ms | requests/s | output tok/s | cache hit rate | requests | errors |
|---|---|---|---|---|---|---|---|---|"
PC_METRICS="    metrics: { path: /metrics, interval_ms: 50 }"

ONLY=${LB_ONLY:-}   # multi | hot: one scenario only (for tuning; RESULTS.md then gets an empty table)
: >"$TMP/multi"; : >"$TMP/hot"
if [ "$ONLY" != hot ]; then
echo "bench-lb: multi-turn, $SESSIONS sessions x $TURNS turns, concurrency $CONC, system prompt $SYSTEM_TOKENS tokens"
echo "$HDR"
: >"$TMP/rows"
run_one "round-robin (weighted)" weighted "" 0
run_one "least_request" least_request "" 0
run_one "prefix_cache" prefix_cache "" 0
run_one "metrics" metrics "    metrics: { interval_ms: 50 }" 0
run_one "prefix_cache + metrics" prefix_cache "$PC_METRICS" 0
cp "$TMP/rows" "$TMP/multi"
fi
if [ "$ONLY" != multi ]; then
echo
echo "bench-lb: hot spot, $HOT_WORKERS of $CONC workers share a $HOT_TOKENS-token document"
echo "$HDR"
: >"$TMP/rows"
run_one "round-robin (weighted)" weighted "" "$HOT_WORKERS"
run_one "prefix_cache, no overload bound" prefix_cache "    prefix_cache: { overload_percent: 100000 }" "$HOT_WORKERS"
run_one "prefix_cache (overload_percent 200)" prefix_cache "" "$HOT_WORKERS"
run_one "prefix_cache + metrics" prefix_cache "$PC_METRICS" "$HOT_WORKERS"
cp "$TMP/rows" "$TMP/hot"
fi

# bench/RESULTS.md: this section only (replaced on each run); the rest of the file is left as it is
{
  echo "## Load balancing (make bench-lb)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Three \`sluice-mock\` engines (\`${ENGINE[*]}\`) behind sluice (1 worker);"
  echo "bench/lb/load.mjs: $SESSIONS sessions x $TURNS turns, concurrency $CONC, shared system prompt of"
  echo "$SYSTEM_TOKENS tokens, $USER_TOKENS-token user turns, 24 output tokens, streaming. Cache hit rate: prompt"
  echo "tokens served from the engines' prefix caches (their vllm:prefix_cache_* counters). Fresh engines per row."
  echo
  echo "Multi-turn:"
  echo
  echo "$HDR"
  cat "$TMP/multi"
  echo
  echo "Hot spot: $HOT_WORKERS of the $CONC concurrent workers play sessions that share one $HOT_TOKENS-token document:"
  echo
  echo "$HDR"
  cat "$TMP/hot"
} >"$TMP/section"
touch bench/RESULTS.md
python3 - "$TMP/section" <<'PY'
import re, sys
sec = open(sys.argv[1]).read().rstrip() + "\n"
path = "bench/RESULTS.md"
doc = open(path).read()
m = re.search(r"^## Load balancing \(make bench-lb\)\n.*?(?=^## |\Z)", doc, flags=re.S | re.M)
if m:
    doc = doc[:m.start()] + sec + ("\n" if doc[m.end():] else "") + doc[m.end():]
else:
    doc = (doc.rstrip() + "\n\n" if doc.strip() else "") + sec
open(path, "w").write(doc)
PY
echo
echo "bench-lb: written to bench/RESULTS.md"
