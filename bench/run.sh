#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs (SPEC §9, issue 7). One machine, one run,
# side by side against the same sluice-mock:
#   direct   wrk -> mock                        (the floor)
#   nginx    wrk -> nginx (plain reverse proxy, upstream keep-alive) -> mock
#   portkey  wrk -> Portkey's gateway 1.15.2 (node) -> mock
#   sluice   wrk -> sluice (model mapping, usage accounting, metrics, access log) -> mock
# then what sluice's features cost per request (metrics, tracing, limits in
# memory and in Redis, each against all off), and writes bench/RESULTS.md.
# Everything listens on 127.0.0.1 only; every process started here is stopped
# on exit (trap). See docs/benchmarks.md.
#
# Knobs (environment), defaults in brackets:
#   BENCH_SECONDS [4]        seconds per wrk run (latency and requests/s)
#   BENCH_XLAT_SECONDS [3]   seconds per translation-cost run
#   BENCH_ROUNDS [3]         rounds of those runs, targets interleaved; the best round is reported
#   BENCH_STREAMS ["1000 5000 10000"]  concurrent SSE stream counts reported for every target
#   BENCH_STREAM_LADDER ["250 500 1000 2000 3000 5000 7000 10000"]  counts tried, from 1000 up while every
#                            stream is stall-free (down when 1000 is not), for "the largest stall-free count"
#   BENCH_ITL_MS [20]        between tokens
#   BENCH_STALL_MS [100]     a gap between two events longer than this is a stall
#   BENCH_RAMP [2500]        new streams per second while ramping up, at most; the ramp takes at least
#                            BENCH_RAMP_MIN_S [1] s (N streams open at min(BENCH_RAMP, N / BENCH_RAMP_MIN_S) a second)
#   BENCH_HOLD_S [2]         seconds all N streams are open at once: each stream is given enough tokens to
#                            last the ramp plus this (BENCH_STREAM_TOKENS, if set, fixes the count instead)
#   BENCH_TARGETS ["direct nginx portkey sluice"]
#   BENCH_STEPS ["requests translation features streams json"]  which steps run; a run of some of them only
#                            writes build/bench/RESULTS.md (not bench/RESULTS.md) unless BENCH_OUT says otherwise
#   BENCH_FEAT_SECONDS [3]   seconds per feature-cost run
#   BENCH_PIN [1]            pin processes to cores with taskset (0: let them float)
#   BENCH_PROFILE [1]        perf profile of sluice under 1 KB / 16 connections (if perf exists)
#   BENCH_JSON_SECONDS [0.3] seconds per JSON benchmark cell
#   BENCH_NICE [-10 as root, else 0] nice level of every process under test and of the load generators, so
#                            that other jobs on a shared machine disturb the runs less (the same for every target)
#   BENCH_OUT [bench/RESULTS.md, or build/bench/RESULTS.md for a partial BENCH_STEPS]; BENCH_KEEP [0] keep the temp dir (logs, configs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-4}
BENCH_XLAT_SECONDS=${BENCH_XLAT_SECONDS:-3}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_STREAMS=${BENCH_STREAMS:-"1000 5000 10000"}
BENCH_STREAM_LADDER=${BENCH_STREAM_LADDER:-"250 500 1000 2000 3000 5000 7000 10000"}
BENCH_STREAM_TOKENS=${BENCH_STREAM_TOKENS:-}
BENCH_ITL_MS=${BENCH_ITL_MS:-20}
BENCH_STALL_MS=${BENCH_STALL_MS:-100}
BENCH_RAMP=${BENCH_RAMP:-2500}
BENCH_RAMP_MIN_S=${BENCH_RAMP_MIN_S:-1}
BENCH_HOLD_S=${BENCH_HOLD_S:-2}
BENCH_TARGETS=${BENCH_TARGETS:-"direct nginx portkey sluice"}
ALL_STEPS="requests translation features streams json"
BENCH_STEPS=${BENCH_STEPS:-$ALL_STEPS}
BENCH_FEAT_SECONDS=${BENCH_FEAT_SECONDS:-3}
BENCH_PIN=${BENCH_PIN:-1}
BENCH_PROFILE=${BENCH_PROFILE:-1}
BENCH_JSON_SECONDS=${BENCH_JSON_SECONDS:-0.3}
if [ "$(echo $BENCH_STEPS | tr ' ' '\n' | sort | xargs)" = "$(echo $ALL_STEPS | tr ' ' '\n' | sort | xargs)" ]; then
    BENCH_OUT=${BENCH_OUT:-bench/RESULTS.md}
else # a partial run must not overwrite the full report
    BENCH_OUT=${BENCH_OUT:-build/bench/RESULTS.md}
fi
BENCH_KEEP=${BENCH_KEEP:-0}
if [ "$(id -u)" = 0 ]; then BENCH_NICE=${BENCH_NICE:--10}; else BENCH_NICE=${BENCH_NICE:-0}; fi

SLUICE=$ROOT/build/sluice
MOCK=$ROOT/build/sluice-mock
PORTKEY_JS=$ROOT/bench/node_modules/@portkey-ai/gateway/build/start-server.js

# Core layout on this 2-core machine: the gateway under test gets core 0 to
# itself; the load generator and the mock share core 1. Direct runs put the
# mock on core 0 instead. With more cores, nothing changes (they stay unused).
GW_CPU=0
LOAD_CPU=1
NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then BENCH_PIN=0; fi

ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)

T=$(mktemp -d /tmp/sluice-bench.XXXXXX)
PIDS=()
declare -A R   # results: R[target.metric]=value

step() { [[ " $BENCH_STEPS " == *" $1 "* ]]; } # step NAME: is NAME in BENCH_STEPS
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$BENCH_KEEP" = 1 ] || [ $rc -ne 0 ]; then log "logs and configs kept in $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin() { # pin CPU cmd... : run cmd on CPU when pinning is on, at BENCH_NICE
    local cpu=$1; shift
    if [ "$BENCH_PIN" = 1 ]; then nice -n "$BENCH_NICE" taskset -c "$cpu" "$@"; else nice -n "$BENCH_NICE" "$@"; fi
}
repin() { # repin CPU PID: move every thread of PID
    if [ "$BENCH_PIN" = 1 ]; then taskset -a -p -c "$1" "$2" >/dev/null; fi
}

port_busy() { ss -Htan "( sport = :$1 )" 2>/dev/null | grep -q .; }
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if ! port_busy "$p" && ! [[ " ${USED_PORTS:-} " == *" $p "* ]]; then
            USED_PORTS="${USED_PORTS:-} $p"
            echo "$p"
            return 0
        fi
    done
    log "no free port found"; return 1
}

wait_port() { # wait_port PORT PID: until something listens (and PID still lives)
    for _ in $(seq 150); do
        if ss -Htln "( sport = :$1 )" | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || { log "process $2 died while starting (port $1)"; return 1; }
        sleep 0.1
    done
    log "nothing listens on $1"; return 1
}

start_bg() { # start_bg LOG CPU cmd... ; sets BG_PID (the program's own PID: exec, no shell in between)
    local logf=$1 cpu=$2; shift 2
    if [ "$BENCH_PIN" = 1 ]; then exec_in_bg "$logf" nice -n "$BENCH_NICE" taskset -c "$cpu" "$@"
    else exec_in_bg "$logf" nice -n "$BENCH_NICE" "$@"; fi
}
exec_in_bg() {
    local logf=$1; shift
    ( exec "$@" >"$logf" 2>&1 ) &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=()
    for p in "${PIDS[@]}"; do if [ "$p" != "$pid" ]; then keep+=("$p"); fi; done
    PIDS=("${keep[@]}")
}

# ---- process measurements (/proc) ----

with_children() { # processes and their descendants (nginx workers)
    for p in "$@"; do
        echo "$p"
        local c
        for c in $(pgrep -P "$p" 2>/dev/null || true); do with_children "$c"; done
    done
}
status_kb() { # status_kb FIELD PIDS... : sum of a /proc/PID/status field in kB
    local f=$1 sum=0 v; shift
    for p in $(with_children "$@"); do
        v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
reset_hwm() { for p in $(with_children "$@"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
cpu_ticks() { # user+system clock ticks of PIDS and children
    local sum=0 v
    for p in $(with_children "$@"); do
        v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; } # all cores, ticks
# others_cpu BUSY0 BUSY1 OURS_TICKS SECS: CPU % (of one core) used by processes not under test during a run
others_cpu() { calc "(($2 - $1) - $3) * 100 / ($CLK_TCK * $4) < 0 ? 0 : (($2 - $1) - $3) * 100 / ($CLK_TCK * $4)" 0; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; }

# ---- request bodies ----

make_bodies() {
    node - "$T" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
const words = 'the quick brown fox jumps over the lazy dog while a gateway counts tokens and streams ' +
    'events back to the caller; caf\u00e9 na\u00efve \u6a21\u578b \ud83d\ude80 "quoted" back\\slash\n';
function text(bytes) { let s = ''; while (Buffer.byteLength(s) < bytes) s += words; return s; }
function chat(total, stream, model) {
    const base = { model, stream, max_tokens: 256, messages: [
        { role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: '' } ] };
    const overhead = Buffer.byteLength(JSON.stringify(base));
    base.messages[1].content = text(Math.max(0, total - overhead - 64));
    let s = JSON.stringify(base);
    while (Buffer.byteLength(s) > total) { base.messages[1].content = base.messages[1].content.slice(0, -8); s = JSON.stringify(base); }
    return s;
}
function anthropic(total, stream, model) {
    const base = { model, max_tokens: 256, stream, system: 'You are a helpful assistant.',
                   messages: [{ role: 'user', content: '' }] };
    const overhead = Buffer.byteLength(JSON.stringify(base));
    base.messages[0].content = text(Math.max(0, total - overhead - 64));
    return JSON.stringify(base);
}
fs.writeFileSync(`${dir}/chat-1k.json`, chat(1024, false, 'demo'));
fs.writeFileSync(`${dir}/chat-256k.json`, chat(256 * 1024, false, 'demo'));
fs.writeFileSync(`${dir}/chat-stream.json`, chat(1024, true, 'demo'));
for (const [name, model] of [['oa-oa', 'demo'], ['oa-an', 'demo-anthropic']]) {
    fs.writeFileSync(`${dir}/x-${name}.json`, chat(1024, false, model));
    fs.writeFileSync(`${dir}/x-${name}-s.json`, chat(1024, true, model));
}
for (const [name, model] of [['an-an', 'demo-anthropic'], ['an-oa', 'demo']]) {
    fs.writeFileSync(`${dir}/x-${name}.json`, anthropic(1024, false, model));
    fs.writeFileSync(`${dir}/x-${name}-s.json`, anthropic(1024, true, model));
}
EOF
}

# ---- servers ----

MOCK_PID=""; MOCK_PORT=""
start_mock() { # start_mock CPU extra-flags...
    local cpu=$1; shift
    MOCK_PORT=$(free_port)
    start_bg "$T/mock-$MOCK_PORT.log" "$cpu" "$MOCK" --port "$MOCK_PORT" --workers 1 --quiet "$@"
    MOCK_PID=$BG_PID
    wait_port "$MOCK_PORT" "$MOCK_PID"
}

write_sluice_config() { # FILE PORT ADMIN_PORT
    cat >"$1" <<EOF
# sluice under benchmark: model mapping (demo -> mock-model), usage accounting
# (stream_options.include_usage added and stripped), metrics, access log.
server:
  listen: ["127.0.0.1:$2"]
  admin_listen: "127.0.0.1:$3"
  workers: 1
  reuse_port: true   # the 10,000-stream step runs two processes on one port (open-file limit)
  access_log: "$T/sluice-access-$2.log"
providers:
  - name: mock
    type: openai-compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    max_connections: 30000
  - name: mock-anthropic
    type: anthropic
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    max_connections: 30000
models:
  - name: demo
    targets: [ { provider: mock, model: mock-model } ]
  - name: demo-anthropic
    targets: [ { provider: mock-anthropic, model: claude-mock } ]
    defaults: { max_tokens: 1024 }
EOF
}

write_nginx_config() { # DIR PORT WORKERS
    local d=$1
    mkdir -p "$d/logs" "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
# nginx as a plain reverse proxy with upstream keep-alive (not the system service).
daemon off;
master_process on;
worker_processes $3;
worker_rlimit_nofile $FD_LIMIT;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections $((FD_LIMIT - 64)); }
http {
  access_log $d/logs/access.log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  client_max_body_size 64m;
  client_body_buffer_size 1m;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  upstream mock {
    server 127.0.0.1:$MOCK_PORT;
    keepalive 512;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;        # SSE must flow event by event
    }
  }
}
EOF
}

# start_gw TARGET [PROCS]: sets GW_PORT, GW_PIDS (measured), GW_HEADERS
GW_PIDS=(); GW_PORT=""; GW_HEADERS=""
start_gw() {
    local target=$1 procs=${2:-1}
    GW_PIDS=(); GW_HEADERS=""
    case $target in
    direct)
        GW_PORT=$MOCK_PORT ;;
    nginx)
        GW_PORT=$(free_port)
        write_nginx_config "$T/nginx-$GW_PORT" "$GW_PORT" "$procs"
        start_bg "$T/nginx-$GW_PORT/stdout.log" "$GW_CPU" nginx -p "$T/nginx-$GW_PORT" -c "$T/nginx-$GW_PORT/nginx.conf" \
            -e "$T/nginx-$GW_PORT/logs/error.log"
        GW_PIDS=("$BG_PID")
        wait_port "$GW_PORT" "$BG_PID" ;;
    portkey)
        GW_PORT=$(free_port)
        start_bg "$T/portkey-$GW_PORT.log" "$GW_CPU" env NODE_ENV=production node \
            --require "$ROOT/bench/portkey-loopback.cjs" "$PORTKEY_JS" --port="$GW_PORT" --headless
        GW_PIDS=("$BG_PID")
        GW_HEADERS=$'x-portkey-provider: openai\nx-portkey-custom-host: http://127.0.0.1:'"$MOCK_PORT"$'/v1\nAuthorization: Bearer bench'
        wait_port "$GW_PORT" "$BG_PID" ;;
    sluice)
        GW_PORT=$(free_port)
        local i
        for ((i = 0; i < procs; i++)); do # extra processes share the port (SO_REUSEPORT): see docs/benchmarks.md
            local admin; admin=$(free_port)
            write_sluice_config "$T/sluice-$GW_PORT-$i.yaml" "$GW_PORT" "$admin"
            start_bg "$T/sluice-$GW_PORT-$i.log" "$GW_CPU" "$SLUICE" -c "$T/sluice-$GW_PORT-$i.yaml"
            GW_PIDS+=("$BG_PID")
            wait_port "$admin" "$BG_PID"
        done
        SLUICE_ADMIN=$admin ;;
    esac
    sleep 0.5
}
stop_gw() { for p in "${GW_PIDS[@]}"; do stop_pid "$p"; done; GW_PIDS=(); }

check_answer() { # one request through the gateway must answer 200 with a completion
    local out
    out=$(curl -s -m 10 -o "$T/check.out" -w '%{http_code}' "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
        -H 'content-type: application/json' "${CURL_H[@]}" --data-binary @"$T/chat-1k.json" || true)
    if [ "$out" != 200 ] || ! grep -q chat.completion "$T/check.out"; then
        log "$1: check request failed (HTTP $out): $(head -c 300 "$T/check.out")"
        return 1
    fi
}
curl_headers() {
    CURL_H=()
    while IFS= read -r h; do if [ -n "$h" ]; then CURL_H+=(-H "$h"); fi; done <<<"$GW_HEADERS"
}

# ---- load runs ----

# run_wrk KEY CONNS BODY PATH SECONDS: fills R[KEY.*]
run_wrk() {
    local key=$1 conns=$2 body=$3 path=$4 secs=$5
    local gwp=("${GW_PIDS[@]}")
    if [ ${#gwp[@]} -gt 0 ]; then reset_hwm "${gwp[@]}"; fi
    local g0 m0 b0; g0=$([ ${#gwp[@]} -gt 0 ] && cpu_ticks "${gwp[@]}" || echo 0); m0=$(cpu_ticks "$MOCK_PID"); b0=$(machine_busy)
    local TIMEFORMAT='%U %S' w0; w0=$(date +%s.%N)
    { time (BENCH_BODY="$body" BENCH_HEADERS="$GW_HEADERS" pin "$LOAD_CPU" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s \
        -s "$ROOT/bench/chat.lua" "http://127.0.0.1:$GW_PORT$path" >"$T/wrk.out" 2>&1); } 2>"$T/wrk.time" || true
    local g1 m1 b1; g1=$([ ${#gwp[@]} -gt 0 ] && cpu_ticks "${gwp[@]}" || echo 0); m1=$(cpu_ticks "$MOCK_PID"); b1=$(machine_busy)
    secs=$(calc "$(date +%s.%N) - $w0" 3) # CPU shares over the wall time the run really took
    local line; line=$(grep '^RESULT' "$T/wrk.out" || true)
    if [ -z "$line" ]; then log "$key: wrk gave no result: $(head -c 300 "$T/wrk.out")"; R[$key.rps]=0; return 0; fi
    for kv in ${line#RESULT }; do R[$key.${kv%%=*}]=${kv#*=}; done
    R[$key.errors]=$(( ${R[$key.err_connect]} + ${R[$key.err_read]} + ${R[$key.err_write]} + ${R[$key.err_timeout]} + ${R[$key.non2xx]} ))
    local load_ticks; load_ticks=$(awk -v hz="$CLK_TCK" '{ printf "%d", ($1 + $2) * hz }' "$T/wrk.time")
    R[$key.gw_cpu]=$(calc "($g1 - $g0) * 100 / ($CLK_TCK * $secs)" 0)
    R[$key.gw_ticks]=$((g1 - g0))
    R[$key.mock_cpu]=$(calc "($m1 - $m0) * 100 / ($CLK_TCK * $secs)" 0)
    R[$key.load_cpu]=$(calc "$load_ticks * 100 / ($CLK_TCK * $secs)" 0)
    R[$key.others_cpu]=$(others_cpu "$b0" "$b1" "$(( g1 - g0 + m1 - m0 + load_ticks ))" "$secs")
    if [ ${#gwp[@]} -gt 0 ]; then R[$key.hwm_kb]=$(status_kb VmHWM "${gwp[@]}"); fi
    log "$key: ${R[$key.rps]} req/s, p50 ${R[$key.p50_us]} us, p99 ${R[$key.p99_us]} us, errors ${R[$key.errors]}, cpu gw ${R[$key.gw_cpu]}% mock ${R[$key.mock_cpu]}% wrk ${R[$key.load_cpu]}% others ${R[$key.others_cpu]}%"
}

# stream_plan N: sets PLAN_RAMP (streams/s) and PLAN_TOKENS for N streams: the ramp takes at least
# BENCH_RAMP_MIN_S, and every stream lasts the whole ramp plus BENCH_HOLD_S, so that all N are open at
# once for BENCH_HOLD_S and the ramp's connection storm is over well before the first stream ends.
stream_plan() {
    local n=$1
    PLAN_RAMP=$(calc "$n / $BENCH_RAMP_MIN_S < $BENCH_RAMP ? $n / $BENCH_RAMP_MIN_S : $BENCH_RAMP" 0)
    if [ "$PLAN_RAMP" -lt 1 ]; then PLAN_RAMP=1; fi
    if [ -n "$BENCH_STREAM_TOKENS" ]; then PLAN_TOKENS=$BENCH_STREAM_TOKENS; return; fi
    PLAN_TOKENS=$(calc "int(((${n} / $PLAN_RAMP) + $BENCH_HOLD_S) * 1000 / $BENCH_ITL_MS + 0.999) + 1" 0)
}

# run_streams KEY N: fills R[KEY.*] (the mock is already started with the plan's token count)
run_streams() {
    local key=$1 n=$2
    local gwp=("${GW_PIDS[@]}")
    if [ ${#gwp[@]} -gt 0 ]; then reset_hwm "${gwp[@]}"; fi
    local g0 m0 b0; g0=$([ ${#gwp[@]} -gt 0 ] && cpu_ticks "${gwp[@]}" || echo 0); m0=$(cpu_ticks "$MOCK_PID"); b0=$(machine_busy)
    # streams not done 10 s after their due end count as failed
    local timeout; timeout=$(calc "$n / $PLAN_RAMP + $PLAN_TOKENS * $BENCH_ITL_MS / 1000 + 10" 0)
    local hargs=()
    while IFS= read -r h; do if [ -n "$h" ]; then hargs+=(--header "$h"); fi; done <<<"$GW_HEADERS"
    local t0 line; t0=$(date +%s.%N)
    line=$(pin "$LOAD_CPU" "$ROOT/build/bench/sse_load" --port "$GW_PORT" --streams "$n" --body "$T/chat-stream.json" \
        --ramp "$PLAN_RAMP" --stall-ms "$BENCH_STALL_MS" --timeout-s "$timeout" "${hargs[@]}" 2>"$T/sse-$key.err" || true)
    local secs; secs=$(calc "$(date +%s.%N) - $t0" 2)
    local g1 m1 b1; g1=$([ ${#gwp[@]} -gt 0 ] && cpu_ticks "${gwp[@]}" || echo 0); m1=$(cpu_ticks "$MOCK_PID"); b1=$(machine_busy)
    R[$key.ramp]=$PLAN_RAMP
    R[$key.tokens]=$PLAN_TOKENS
    R[$key.mock_cpu]=$(calc "($m1 - $m0) * 100 / ($CLK_TCK * $secs)" 0)
    R[$key.busy_cpu]=$(calc "($b1 - $b0) * 100 / ($CLK_TCK * $secs)" 0)
    if [ -z "$line" ]; then log "$key: sse_load gave no result: $(head -c 300 "$T/sse-$key.err")"; R[$key.ok]=0; R[$key.stall_free]=0; return 0; fi
    for kv in $line; do R[$key.${kv%%=*}]=${kv#*=}; done
    R[$key.errors]=$(( ${R[$key.err_connect]} + ${R[$key.err_status]} + ${R[$key.err_io]} + ${R[$key.err_timeout]} + ${R[$key.err_incomplete]} ))
    R[$key.gw_cpu]=$(calc "($g1 - $g0) * 100 / ($CLK_TCK * $secs)" 0)
    # CPU per SSE event received (µs): what each process spends to carry one event, start-up included
    local ev=${R[$key.events]:-0}
    if [ "$ev" -gt 0 ]; then
        R[$key.mock_us_ev]=$(calc "($m1 - $m0) * 1e6 / $CLK_TCK / $ev" 1)
        R[$key.load_us_ev]=$(calc "${R[$key.cpu_s]:-0} * 1e6 / $ev" 1)
        if [ ${#gwp[@]} -gt 0 ]; then R[$key.gw_us_ev]=$(calc "($g1 - $g0) * 1e6 / $CLK_TCK / $ev" 1); fi
    fi
    if [ ${#gwp[@]} -gt 0 ]; then R[$key.hwm_kb]=$(status_kb VmHWM "${gwp[@]}"); fi
    log "$key: ramp $PLAN_RAMP/s, $PLAN_TOKENS tokens, all open ${R[$key.all_open_s]} s; cpu gw ${R[$key.gw_cpu]}% mock ${R[$key.mock_cpu]}% machine ${R[$key.busy_cpu]}% of $((NCPU * 100))%; µs/event gw ${R[$key.gw_us_ev]:-—} mock ${R[$key.mock_us_ev]:-—} sse_load ${R[$key.load_us_ev]:-—}"
    log "$key: ok ${R[$key.ok]}/$n, stall-free ${R[$key.stall_free]}, peak open ${R[$key.peak_open]}, TTFT p99 ${R[$key.ttft_p99]} ms, max gap p99 ${R[$key.gap_p99]} ms, errors ${R[$key.errors]}"
}

# ---- phases ----

# best_of KEY ROUNDS BY: copy the fields of the best round (BY=rps: most requests/s; BY=p50: lowest p50) of
# KEY.rN.* to KEY.*; the peak RSS is the largest of all rounds.
best_of() {
    local key=$1 rounds=$2 by=$3 best="" bv="" r v hwm=0
    for ((r = 1; r <= rounds; r++)); do
        v=${R[$key.r$r.rps]:-}
        [ -n "$v" ] || continue
        if [ "$by" = p50 ]; then v=${R[$key.r$r.p50_us]}; fi
        if [ -z "$best" ] || { [ "$by" = rps ] && [ "$(calc "$v > $bv" 0)" = 1 ]; } ||
            { [ "$by" = p50 ] && [ "$(calc "$v < $bv" 0)" = 1 ]; }; then best=$r; bv=$v; fi
        if [ "${R[$key.r$r.hwm_kb]:-0}" -gt "$hwm" ]; then hwm=${R[$key.r$r.hwm_kb]}; fi
    done
    [ -n "$best" ] || return 0
    local f
    for f in rps requests p50_us p90_us p99_us max_us errors gw_cpu gw_ticks mock_cpu load_cpu others_cpu aux_cpu; do
        R[$key.$f]=${R[$key.r$best.$f]:-}
    done
    R[$key.round]=$best
    if [ "$hwm" -gt 0 ]; then R[$key.hwm_kb]=$hwm; fi
}

phase_requests() { # latency and requests/s, non-streamed, for every target, in BENCH_ROUNDS interleaved rounds
    log "phase 1: latency and requests per second (${BENCH_ROUNDS} rounds of ${BENCH_SECONDS}s per figure)"
    start_mock "$LOAD_CPU"
    local round t k
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for t in $BENCH_TARGETS; do
            if [ "${R[$t.failed]:-0}" = 1 ]; then continue; fi
            if [ "$t" = direct ]; then repin "$GW_CPU" "$MOCK_PID"; else repin "$LOAD_CPU" "$MOCK_PID"; fi
            start_gw "$t"
            curl_headers
            check_answer "$t" || { R[$t.failed]=1; stop_gw; continue; }
            if [ "$round" = 1 ] && [ ${#GW_PIDS[@]} -gt 0 ]; then R[$t.idle_kb]=$(status_kb VmRSS "${GW_PIDS[@]}"); fi
            run_wrk "$t.warm" 16 "$T/chat-1k.json" /v1/chat/completions 2 >/dev/null 2>&1
            run_wrk "$t.c1.r$round" 1 "$T/chat-1k.json" /v1/chat/completions "$BENCH_SECONDS"
            for c in 16 64; do
                run_wrk "$t.1k.c$c.r$round" "$c" "$T/chat-1k.json" /v1/chat/completions "$BENCH_SECONDS"
                run_wrk "$t.256k.c$c.r$round" "$c" "$T/chat-256k.json" /v1/chat/completions "$BENCH_SECONDS"
            done
            if [ "$t" = sluice ] && [ "$round" = "$BENCH_ROUNDS" ]; then
                curl -s -m 5 "http://127.0.0.1:$SLUICE_ADMIN/metrics" >"$T/sluice-metrics.txt" || true
                if [ "$BENCH_PROFILE" = 1 ] && command -v perf >/dev/null; then profile_sluice; fi
            fi
            stop_gw
        done
    done
    for t in $BENCH_TARGETS; do
        best_of "$t.c1" "$BENCH_ROUNDS" p50
        for k in 1k.c16 1k.c64 256k.c16 256k.c64; do best_of "$t.$k" "$BENCH_ROUNDS" rps; done
    done
    stop_pid "$MOCK_PID"
}

profile_sluice() {
    log "perf profile of sluice, 1 KB body, 16 connections"
    local secs=$(( BENCH_SECONDS < 6 ? BENCH_SECONDS : 6 ))
    perf record -F 999 -g -p "${GW_PIDS[0]}" -o "$T/perf.data" -- sleep "$secs" >/dev/null 2>&1 &
    local perf_pid=$!
    sleep 0.3
    BENCH_BODY="$T/chat-1k.json" BENCH_HEADERS="" pin "$LOAD_CPU" wrk -t1 -c16 -d"${secs}s" -s "$ROOT/bench/chat.lua" \
        "http://127.0.0.1:$GW_PORT/v1/chat/completions" >/dev/null 2>&1 || true
    wait "$perf_pid" || true
    perf report -i "$T/perf.data" --stdio --no-children --sort symbol --percent-limit 1.5 -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -30 >"$T/perf-flat.txt" || true
    perf report -i "$T/perf.data" --stdio --children --sort symbol --percent-limit 2 -g none 2>/dev/null \
        | grep -F '[.]' | head -30 >"$T/perf-children.txt" || true
    perf report -i "$T/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -8 >"$T/perf-dso.txt" || true
}

phase_translation() { # sluice only: translation cost against pass-through, interleaved rounds
    [[ " $BENCH_TARGETS " == *" sluice "* ]] || return 0
    log "phase 2: translation cost (${BENCH_ROUNDS} rounds of ${BENCH_XLAT_SECONDS}s per figure)"
    start_mock "$LOAD_CPU"
    local round pair k
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for pair in oa-oa oa-an an-an an-oa; do
            # A fresh sluice per pair: the streams aborted at the end of a run must not carry over (see docs/benchmarks.md)
            start_gw sluice
            local path=/v1/chat/completions
            if [[ $pair == an-* ]]; then path=/v1/messages; fi
            run_wrk "x.$pair.warm" 16 "$T/x-$pair.json" "$path" 1 >/dev/null 2>&1
            run_wrk "x.$pair.c1.r$round" 1 "$T/x-$pair.json" "$path" "$BENCH_XLAT_SECONDS"
            run_wrk "x.$pair.c16.r$round" 16 "$T/x-$pair.json" "$path" "$BENCH_XLAT_SECONDS"
            run_wrk "x.$pair.s16.r$round" 16 "$T/x-$pair-s.json" "$path" "$BENCH_XLAT_SECONDS"
            stop_gw
        done
    done
    for pair in oa-oa oa-an an-an an-oa; do
        best_of "x.$pair.c1" "$BENCH_ROUNDS" p50
        best_of "x.$pair.c16" "$BENCH_ROUNDS" rps
        best_of "x.$pair.s16" "$BENCH_ROUNDS" rps
    done
    stop_pid "$MOCK_PID"
}

# ---- feature cost (issues 5 and 6) ----

# Variants of sluice on the same mock, each one feature on top of "bare" (model mapping only; metrics off, no
# traces, access log off, no consumers), so that each row minus bare is that feature's cost.
FEAT_VARIANTS="bare metrics tracing limits-memory limits-redis"
FEAT_KEY=sk-bench-feature-cost
SINK_PID=""; SINK_PORT=""; REDIS_PID=""; REDIS_PORT=""

write_feature_config() { # FILE PORT ADMIN_PORT VARIANT
    local port=$2 admin=$3 variant=$4 metrics=false
    case $variant in metrics | tracing) metrics=true ;; esac
    {
        cat <<EOC
# sluice in the feature-cost step, variant "$variant": model mapping only (metrics off, no traces,
# access log off, no consumers), plus the one feature this variant measures.
server:
  listen: ["127.0.0.1:$port"]
  admin_listen: "127.0.0.1:$admin"
  workers: 1
  access_log: "off"
providers:
  - name: mock
    type: openai-compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    max_connections: 30000
models:
  - name: demo
    targets: [ { provider: mock, model: mock-model } ]
telemetry:
  metrics: { enabled: $metrics }
EOC
        if [ "$variant" = tracing ]; then
            echo "  traces: { endpoint: \"http://127.0.0.1:$SINK_PORT/v1/traces\", sample_ratio: 1.0 }"
        fi
        case $variant in
        limits-memory) echo "state: { backend: memory }" ;;
        limits-redis) # deny: a Redis that does not answer must show as errors, not as free limits
            echo "state:"
            echo "  backend: redis"
            echo "  redis: { url: \"redis://127.0.0.1:$REDIS_PORT/0\", on_error: deny, key_prefix: \"sluice-bench:\" }" ;;
        esac
        case $variant in
        limits-*) # limits far above what a run can reach: every request is checked, reserved and settled, none refused
            cat <<EOC
consumers:
  - name: bench
    keys: ["$FEAT_KEY"]
    limits: { requests_per_minute: 1000000000, tokens_per_minute: 100000000000 }
EOC
            ;;
        esac
    } >"$1"
}

start_feature_gw() { # start_feature_gw VARIANT: like start_gw sluice, one process
    local variant=$1 admin
    GW_PIDS=(); GW_HEADERS=""
    GW_PORT=$(free_port); admin=$(free_port)
    write_feature_config "$T/feat-$variant-$GW_PORT.yaml" "$GW_PORT" "$admin" "$variant"
    start_bg "$T/feat-$variant-$GW_PORT.log" "$GW_CPU" "$SLUICE" -c "$T/feat-$variant-$GW_PORT.yaml"
    GW_PIDS=("$BG_PID")
    SLUICE_ADMIN=$admin
    wait_port "$admin" "$BG_PID" || return 1
    if [[ $variant == limits-* ]]; then GW_HEADERS="Authorization: Bearer $FEAT_KEY"; fi
    sleep 0.5
}

# feature_evidence VARIANT: what shows that the feature was really on (or off) in the variant's last run:
# requests counted in /metrics, spans exported, the consumer's usage as the limits saw it.
feature_evidence() {
    local v=$1 m ev
    m=$(curl -s -m 5 "http://127.0.0.1:$SLUICE_ADMIN/metrics" || true)
    ev="requests in /metrics: $(awk '$1 ~ /^sluice_requests_total/ { s += $NF } END { printf "%d", s }' <<<"$m")"
    if [ "$v" = tracing ]; then
        local exported dropped queued
        exported=$(awk '$1 == "sluice_trace_spans_exported_total" { printf "%d", $NF }' <<<"$m")
        dropped=$(awk '$1 ~ /^sluice_trace_spans_dropped_total/ { s += $NF } END { printf "%d", s }' <<<"$m")
        queued=$(awk '$1 == "sluice_trace_queue_spans" { printf "%d", $NF }' <<<"$m")
        ev="$ev; spans exported ${exported:-?}, queued ${queued:-?}, dropped ${dropped:-?}"
    fi
    if [[ $v == limits-* ]]; then
        local u backend reqs
        u=$(curl -s -m 5 "http://127.0.0.1:$SLUICE_ADMIN/admin/api/consumers/bench/usage" || true)
        backend=$(grep -o '"backend":"[a-z]*"' <<<"$u" | head -1 | cut -d'"' -f4 || true)
        reqs=$(grep -o '"day":{"requests":[0-9]*' <<<"$u" | head -1 | grep -o '[0-9]*$' || true)
        ev="$ev; consumer bench: backend ${backend:-?}, ${reqs:-?} requests counted today"
    fi
    R[f.$v.evidence]=$ev
    log "feature $v: $ev"
}

phase_features() { # sluice only: what metrics, tracing and limits cost per request, interleaved rounds
    [[ " $BENCH_TARGETS " == *" sluice "* ]] || return 0
    log "feature cost: $FEAT_VARIANTS (${BENCH_ROUNDS} rounds of ${BENCH_FEAT_SECONDS}s per figure)"
    start_mock "$LOAD_CPU"
    # The OTLP receiver and Redis stand for services on other machines: they share core 1 with wrk and the mock.
    SINK_PORT=$(free_port)
    start_bg "$T/otlp-sink.log" "$LOAD_CPU" node "$ROOT/bench/otlp_sink.cjs" "$SINK_PORT"
    SINK_PID=$BG_PID
    wait_port "$SINK_PORT" "$SINK_PID"
    if command -v redis-server >/dev/null; then
        REDIS_PORT=$(free_port)
        start_bg "$T/redis.log" "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
            --appendonly no --daemonize no
        REDIS_PID=$BG_PID
        wait_port "$REDIS_PORT" "$REDIS_PID" || { R[f.limits-redis.failed]=1; R[f.limits-redis.why]="redis-server did not start"; }
    else
        R[f.limits-redis.failed]=1; R[f.limits-redis.why]="redis-server not installed"
    fi
    local round v
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for v in $FEAT_VARIANTS; do
            if [ "${R[f.$v.failed]:-0}" = 1 ]; then continue; fi
            start_feature_gw "$v" || { R[f.$v.failed]=1; R[f.$v.why]="sluice did not start"; stop_gw; continue; }
            curl_headers
            check_answer "feature $v" || { R[f.$v.failed]=1; R[f.$v.why]="check request failed"; stop_gw; continue; }
            # no separate warm-up: the 1-connection run warms the process for the 16-connection one, and its
            # first requests do not move its p50
            run_wrk "f.$v.c1.r$round" 1 "$T/chat-1k.json" /v1/chat/completions "$BENCH_FEAT_SECONDS"
            # the helper's CPU (OTLP receiver or Redis) during the 16-connection run, apart from "others"
            local aux="" a0 w0
            case $v in tracing) aux=$SINK_PID ;; limits-redis) aux=$REDIS_PID ;; esac
            if [ -n "$aux" ]; then a0=$(cpu_ticks "$aux"); w0=$(date +%s.%N); fi
            run_wrk "f.$v.c16.r$round" 16 "$T/chat-1k.json" /v1/chat/completions "$BENCH_FEAT_SECONDS"
            if [ -n "$aux" ]; then
                R[f.$v.c16.r$round.aux_cpu]=$(calc "($(cpu_ticks "$aux") - $a0) * 100 / ($CLK_TCK * ($(date +%s.%N) - $w0))" 0)
            fi
            if [ "$round" = "$BENCH_ROUNDS" ]; then feature_evidence "$v"; fi
            stop_gw
        done
    done
    for v in $FEAT_VARIANTS; do
        best_of "f.$v.c1" "$BENCH_ROUNDS" p50
        best_of "f.$v.c16" "$BENCH_ROUNDS" rps
    done
    local sink_stats; sink_stats=$(curl -s -m 5 "http://127.0.0.1:$SINK_PORT/stats" || true)
    R[f.sink]=$sink_stats
    log "OTLP sink: $sink_stats"
    if [ -n "$REDIS_PID" ]; then stop_pid "$REDIS_PID"; fi
    stop_pid "$SINK_PID"
    stop_pid "$MOCK_PID"
}

# stream_run TARGET N: one stream run (fresh mock with the plan's tokens, fresh gateway), unless done already
stream_run() {
    local t=$1 n=$2
    if [ -n "${R[$t.s$n.stall_free]:-}" ]; then return 0; fi
    stream_plan "$n"
    # the mock sits on the gateway's core for direct runs, else on the load generator's
    local mcpu=$LOAD_CPU
    if [ "$t" = direct ]; then mcpu=$GW_CPU; fi
    start_mock "$mcpu" --itl-ms "$BENCH_ITL_MS" --tokens "$PLAN_TOKENS"
    # A proxied stream holds two sockets in the gateway; one process cannot hold more than the
    # open-file limit, so nginx and sluice then run two processes on the same core (Portkey cannot).
    local procs=1
    if [ $((2 * n + 256)) -gt "$FD_LIMIT" ] && [ "$t" != direct ] && [ "$t" != portkey ]; then procs=2; fi
    R[$t.s$n.procs]=$procs
    start_gw "$t" "$procs"
    run_streams "$t.s$n" "$n"
    stop_gw
    stop_pid "$MOCK_PID"
    sleep 1
}

stream_free() { # stream_free TARGET N: were all N streams stall-free?
    [ "${R[$1.s$2.stall_free]:-0}" -ge "$2" ]
}

phase_streams() {
    log "phase 3: concurrent SSE streams (tokens every ${BENCH_ITL_MS} ms, all open at once for ${BENCH_HOLD_S} s)"
    local ladder; ladder=$(echo "$BENCH_STREAM_LADDER" | tr ' ' '\n' | sort -n | xargs)
    for t in $BENCH_TARGETS; do
        if [ "${R[$t.failed]:-0}" = 1 ]; then continue; fi
        # the largest stall-free count: up the ladder from 1000 while every stream is stall-free,
        # down from it when 1000 is not; each count is run once and also serves the table below
        local best=0 tried="" n
        for n in $ladder; do
            [ "$n" -ge 1000 ] || continue
            stream_run "$t" "$n"; tried="$tried $n"
            if stream_free "$t" "$n"; then best=$n; else break; fi
        done
        if [ "$best" = 0 ]; then
            for n in $(echo "$ladder" | tr ' ' '\n' | sort -rn); do
                [ "$n" -lt 1000 ] || continue
                stream_run "$t" "$n"; tried="$tried $n"
                if stream_free "$t" "$n"; then best=$n; break; fi
            done
        fi
        R[$t.smax]=$best
        R[$t.stried]=$(echo "$tried" | tr ' ' '\n' | sort -n | xargs)
        log "$t: largest stall-free stream count $best (tried: ${R[$t.stried]})"
        for n in $BENCH_STREAMS; do stream_run "$t" "$n"; done
    done
}

phase_json() {
    log "phase 4: JSON reader/splice vs cJSON"
    mkdir -p build/bench
    # shellcheck disable=SC2046
    cc -std=c11 -D_GNU_SOURCE -O2 -Isrc bench/json_bench.c src/json/*.c src/core/*.c \
        $(pkg-config --cflags --libs libcjson) -lm -o build/bench/json_bench
    pin "$LOAD_CPU" build/bench/json_bench "$BENCH_JSON_SECONDS" >"$T/json.md"
}

. "$ROOT/bench/report.sh"

main() {
    for b in "$SLUICE" "$MOCK"; do [ -x "$b" ] || { log "$b missing: run make all"; exit 1; }; done
    command -v wrk >/dev/null || { log "wrk missing: run make deps"; exit 1; }
    local s
    for s in $BENCH_STEPS; do
        [[ " $ALL_STEPS " == *" $s "* ]] || { log "unknown step '$s' in BENCH_STEPS (known: $ALL_STEPS)"; exit 1; }
    done
    if [[ " $BENCH_TARGETS " == *" portkey "* ]] && { step requests || step streams; }; then
        local stamp=bench/node_modules/.sluice-lock-stamp
        if [ ! -f "$stamp" ] || ! cmp -s bench/package-lock.json "$stamp"; then
            log "npm ci in bench/ (Portkey's gateway)"
            (cd bench && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
            cp bench/package-lock.json "$stamp"
        fi
    fi
    mkdir -p build/bench "$(dirname "$BENCH_OUT")"
    if step streams; then
        cc -std=c11 -O2 -g -Wall -Wextra -o build/bench/sse_load bench/sse_load.c $(pkg-config --cflags --libs libuv) -lpthread
    fi
    make_bodies
    local t0=$SECONDS
    R[load_start]=$(cut -d' ' -f1-3 /proc/loadavg)
    if step requests; then phase_requests; fi
    if step translation; then phase_translation; fi
    if step features; then phase_features; fi
    if step streams; then phase_streams; fi
    if step json; then phase_json; fi
    R[wall_s]=$((SECONDS - t0))
    R[load_end]=$(cut -d' ' -f1-3 /proc/loadavg)
    # The "Load balancing (make bench-lb)" section belongs to bench/lb/run.sh: keep it.
    lb_section=$(sed -n '/^## Load balancing (make bench-lb)/,$p' "$BENCH_OUT" 2>/dev/null || true)
    write_report >"$BENCH_OUT" || true  # (errexit off inside: a missing figure must not end the run)
    if [ -n "$lb_section" ]; then printf '\n%s\n' "$lb_section" >>"$BENCH_OUT"; fi
    log "wrote $BENCH_OUT in ${R[wall_s]}s"
}
main "$@"
