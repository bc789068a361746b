# bench/report.sh: sourced by bench/run.sh; write_report renders the R[]
# results collected there as the markdown of bench/RESULTS.md.

v() { echo "${R[$1]:-}"; }                        # a result, empty when absent
us() { local x; x=$(v "$1"); [ -n "$x" ] && echo "$x" || echo "—"; }
fmt_rps() { local x; x=$(v "$1"); [ -n "$x" ] && calc "$x" 0 || echo "—"; }
fmt_mb() { local x; x=$(v "$1"); [ -n "$x" ] && mb "$x" || echo "—"; }
ratio() { # ratio A B [digits]: A/B or — when either is missing or B is 0
    local a=$1 b=$2
    if [ -z "$a" ] || [ -z "$b" ] || [ "$(calc "$b == 0" 0)" = 1 ]; then echo "—"; else calc "$a / $b" "${3:-2}"; fi
}
added() { # added TARGET METRIC: the target's latency minus direct's, in µs
    local a b; a=$(v "$1.c1.$2"); b=$(v "direct.c1.$2")
    if [ -z "$a" ] || [ -z "$b" ]; then echo ""; else echo $((a - b)); fi
}
has() { [[ " $BENCH_TARGETS " == *" $1 "* ]] && [ "${R[$1.failed]:-0}" != 1 ]; }
verdict() { [ "$(calc "$1" 0)" = 1 ] && echo "met" || echo "**not met**"; }

machine() {
    local cpu; cpu=$(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)
    local rev; rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "- Commit: $rev; sluice $("$SLUICE" --version 2>/dev/null | head -1)"
    echo "- Others: $(nginx -v 2>&1 | sed 's/.*: //'), Portkey gateway $(node -p "require('$ROOT/bench/node_modules/@portkey-ai/gateway/package.json').version" 2>/dev/null || echo '—') on node $(node --version 2>/dev/null) (@hono/node-server $(node -p "require('$ROOT/bench/node_modules/@hono/node-server/package.json').version" 2>/dev/null || echo '—')), $(wrk --version 2>&1 | head -1 | awk '{ print "wrk", $2 }')"
    echo "- Machine load (1/5/15-min load average) at the start: $(v load_start); at the end: $(v load_end). Other jobs were running on this machine unless these are near 0: see the \"others CPU\" column."
    echo "- Processes under test and load generators run at nice $BENCH_NICE (BENCH_NICE)."
    echo "- Steps: $BENCH_STEPS (BENCH_STEPS)."
    echo "- Open-file limit: $FD_LIMIT; run took $(v wall_s) s; BENCH_SECONDS=$BENCH_SECONDS, BENCH_XLAT_SECONDS=$BENCH_XLAT_SECONDS, BENCH_FEAT_SECONDS=$BENCH_FEAT_SECONDS, BENCH_ROUNDS=$BENCH_ROUNDS, streams: a token every $BENCH_ITL_MS ms, opened at up to $BENCH_RAMP a second over at least $BENCH_RAMP_MIN_S s, all open at once for $BENCH_HOLD_S s, stall = a gap over $BENCH_STALL_MS ms"
    if [ "$BENCH_PIN" = 1 ]; then
        echo "- Cores: the gateway under test is pinned to core $GW_CPU (one worker: sluice \`workers: 1\`, nginx \`worker_processes 1\`, Portkey is one node process); wrk, the SSE client and the mock share core $LOAD_CPU. Direct runs put the mock on core $GW_CPU. (taskset)"
    else
        echo "- Cores: not pinned (BENCH_PIN=0)."
    fi
}

section_latency() {
    echo "## Added latency at 1 connection (1 KB chat body, non-streamed)"
    echo
    echo "Latency measured by wrk, one connection, ${BENCH_SECONDS} s, best (lowest p50) of ${BENCH_ROUNDS} interleaved rounds; added = the gateway's percentile minus direct's."
    echo
    echo "| target | p50 µs | p99 µs | added p50 µs | added p99 µs | req/s |"
    echo "|---|---|---|---|---|---|"
    for t in $BENCH_TARGETS; do
        has "$t" || { echo "| $t | failed | | | | |"; continue; }
        local a50 a99; a50=$(added "$t" p50_us); a99=$(added "$t" p99_us)
        [ "$t" = direct ] && a50="(floor)" && a99=""
        echo "| $t | $(us "$t.c1.p50_us") | $(us "$t.c1.p99_us") | ${a50:-—} | ${a99:-—} | $(fmt_rps "$t.c1.rps") |"
    done
    echo
}

section_rps() {
    echo "## Requests per second (non-streamed chat, 16-token answer)"
    echo
    echo "wrk, one thread, ${BENCH_SECONDS} s per run; the best of ${BENCH_ROUNDS} rounds (targets interleaved, so that other jobs on the machine hit them alike)."
    echo
    echo "| target | 1 KB, 16 conn | 1 KB, 64 conn | 256 KB, 16 conn | 256 KB, 64 conn | 256 KB / 1 KB at 16 |"
    echo "|---|---|---|---|---|---|"
    for t in $BENCH_TARGETS; do
        has "$t" || continue
        echo "| $t | $(fmt_rps "$t.1k.c16.rps") | $(fmt_rps "$t.1k.c64.rps") | $(fmt_rps "$t.256k.c16.rps") | $(fmt_rps "$t.256k.c64.rps") | $(ratio "$(v "$t.256k.c16.rps")" "$(v "$t.1k.c16.rps")") |"
    done
    echo
    echo "Each run in detail (p50/p99 in µs; CPU = share of one core used during the run by the gateway, the mock, wrk, and"
    echo "everything else on the machine (\"others\": other jobs; a high figure there means the run was disturbed);"
    echo "RSS = the gateway's peak during the run, VmHWM):"
    echo
    echo "| run | best round | req/s | p50 | p99 | errors | gateway CPU % | mock CPU % | wrk CPU % | others CPU % | gateway RSS MB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for t in $BENCH_TARGETS; do
        has "$t" || continue
        for k in c1 1k.c16 1k.c64 256k.c16 256k.c64; do
            echo "| $t $k | $(us "$t.$k.round") | $(fmt_rps "$t.$k.rps") | $(us "$t.$k.p50_us") | $(us "$t.$k.p99_us") | $(us "$t.$k.errors") | $(us "$t.$k.gw_cpu") | $(us "$t.$k.mock_cpu") | $(us "$t.$k.load_cpu") | $(us "$t.$k.others_cpu") | $(fmt_mb "$t.$k.hwm_kb") |"
        done
    done
    echo
}

section_streams() {
    echo "## Concurrent SSE streams"
    echo
    echo "bench/sse_load opens N streams at min($BENCH_RAMP, N / $BENCH_RAMP_MIN_S s) a second (ramp column); each stream gets"
    echo "enough tokens, $BENCH_ITL_MS ms apart, to last the whole ramp plus $BENCH_HOLD_S s (tokens column), so all N are open at"
    echo "once (all open: how long they were) and the connection storm of the ramp is part of every stream's life. The"
    echo "mock starts with time to first token 0, on the gateway's core for direct runs, else on the load generator's."
    echo "ok = answered 200 and ended with \`[DONE]\`; stall-free = ok and no gap between two events over $BENCH_STALL_MS ms;"
    echo "max gap = each stream's largest gap between events (expected: $BENCH_ITL_MS ms), its p50/p99/max over the streams;"
    echo "added TTFT p99 = the target's p99 time to first event minus direct's at the same count. RSS = the gateway's peak (VmHWM, all its processes)."
    echo "CPU µs/event = CPU time (user + system) of the gateway, the mock and sse_load over the run, divided by the SSE events"
    echo "sse_load received (connection set-up included); it is lower where streams stall, since late events then go out and"
    echo "are read several to a system call. Stalls at = when (ms after the first stream opened) the stalled streams' largest"
    echo "gaps ended, p10 / p50 / p90: within a few ms of each other, one process (or the machine) paused for everyone."
    echo
    echo "| target | streams | ramp /s | tokens | processes | ok | stall-free | all open s | TTFT p50 ms | TTFT p99 ms | added TTFT p99 ms | max gap p50 / p99 / max ms | stalls at ms | errors | CPU % gateway / mock / whole machine | CPU µs/event gateway / mock / sse_load | RSS MB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for t in $BENCH_TARGETS; do
        has "$t" || continue
        for n in $BENCH_STREAMS; do
            local k=$t.s$n at="—"
            if [ "$t" != direct ] && [ -n "$(v "$k.ttft_p99")" ] && [ -n "$(v "direct.s$n.ttft_p99")" ]; then
                at=$(calc "$(v "$k.ttft_p99") - $(v "direct.s$n.ttft_p99")" 2)
            fi
            local procs; procs=$(us "$k.procs"); [ "$t" = direct ] && procs="—"
            echo "| $t | $n | $(us "$k.ramp") | $(us "$k.tokens") | $procs | $(us "$k.ok") | $(us "$k.stall_free") | $(us "$k.all_open_s") | $(us "$k.ttft_p50") | $(us "$k.ttft_p99") | $at | $(us "$k.gap_p50") / $(us "$k.gap_p99") / $(us "$k.gap_max") | $(stall_at "$k") | $(us "$k.errors") | $(us "$k.gw_cpu") / $(us "$k.mock_cpu") / $(us "$k.busy_cpu") of $((NCPU * 100)) | $(us "$k.gw_us_ev") / $(us "$k.mock_us_ev") / $(us "$k.load_us_ev") | $(fmt_mb "$k.hwm_kb") |"
        done
    done
    echo
    echo "Errors are connect / status / io / timeout / incomplete as counted by sse_load; the raw lines are in the run's log."
    echo
    section_stream_max
}

stall_at() { # stall_at KEY: "p10 / p50 / p90" of when stalls ended, or — when no stream stalled
    if [ "$(v "$1.stalled")" = 0 ] || [ -z "$(v "$1.stall_at_p50")" ]; then echo "—"; return; fi
    echo "$(v "$1.stall_at_p10") / $(v "$1.stall_at_p50") / $(v "$1.stall_at_p90")"
}

# The largest count held stall-free, and what 10,000 streams would cost at the measured CPU per event.
section_stream_max() {
    local evs; evs=$(calc "10000 * 1000 / $BENCH_ITL_MS" 0)
    echo "### Largest stream count held stall-free"
    echo
    echo "Counts from BENCH_STREAM_LADDER ($BENCH_STREAM_LADDER), tried from 1000 upwards while every stream was"
    echo "stall-free (downwards when 1000 was not); the same runs fill the table above. CPU per event is from the run at"
    echo "that count, or at 1000 when it is lower (smaller runs pay a wake-up for nearly every event and overstate it);"
    echo "cores for 10,000 streams = µs/event × $evs events/s"
    echo "(10,000 streams × one event every $BENCH_ITL_MS ms) / 10⁶: above 1 for one process, it cannot hold that on one core."
    echo
    echo "| target | largest stall-free count | counts tried (stall-free / streams) | CPU µs/event gateway / mock / sse_load | cores for 10,000 streams: gateway / mock / sse_load |"
    echo "|---|---|---|---|---|"
    local t n
    for t in $BENCH_TARGETS; do
        has "$t" || continue
        [ -n "$(v "$t.stried")" ] || continue
        local tried=""
        for n in $(v "$t.stried"); do tried="$tried $(us "$t.s$n.stall_free")/$n"; done
        local at; at=$(v "$t.smax"); [ "${at:-0}" -ge 1000 ] || at=1000
        local g m l; g=$(v "$t.s$at.gw_us_ev"); m=$(v "$t.s$at.mock_us_ev"); l=$(v "$t.s$at.load_us_ev")
        local cg="—" cm="—" cl="—"
        [ -n "$g" ] && cg=$(calc "$g * $evs / 1e6" 2)
        [ -n "$m" ] && cm=$(calc "$m * $evs / 1e6" 2)
        [ -n "$l" ] && cl=$(calc "$l * $evs / 1e6" 2)
        echo "| $t | $(us "$t.smax") |$tried | ${g:-—} / ${m:-—} / ${l:-—} (at $at) | $cg / $cm / $cl |"
    done
    echo
}

section_memory() {
    echo "## Memory (RSS, MB)"
    echo
    local hdr="| target | idle (after start) | 1 KB c16 | 1 KB c64 | 256 KB c16 | 256 KB c64 |" sep="|---|---|---|---|---|---|"
    for n in $BENCH_STREAMS; do hdr="$hdr $n streams |"; sep="$sep---|"; done
    echo "$hdr"; echo "$sep"
    for t in $BENCH_TARGETS; do
        has "$t" && [ "$t" != direct ] || continue
        local row="| $t | $(fmt_mb "$t.idle_kb") | $(fmt_mb "$t.1k.c16.hwm_kb") | $(fmt_mb "$t.1k.c64.hwm_kb") | $(fmt_mb "$t.256k.c16.hwm_kb") | $(fmt_mb "$t.256k.c64.hwm_kb") |"
        for n in $BENCH_STREAMS; do row="$row $(fmt_mb "$t.s$n.hwm_kb") |"; done
        echo "$row"
    done
    echo
    echo "Under load = peak RSS (VmHWM, reset through /proc/PID/clear_refs before each run); nginx counts master and workers."
    echo
}

section_ratios() {
    echo "## Ratios"
    echo
    echo "| measure | sluice / nginx | sluice / Portkey |"
    echo "|---|---|---|"
    for k in 1k.c16 1k.c64 256k.c16 256k.c64; do
        echo "| req/s $k (higher is better) | $(ratio "$(v sluice.$k.rps)" "$(v nginx.$k.rps)") | $(ratio "$(v sluice.$k.rps)" "$(v portkey.$k.rps)" 1) |"
    done
    for m in p50_us p99_us; do
        echo "| added latency ${m%_us} at 1 conn (lower is better) | $(ratio "$(added sluice $m)" "$(added nginx $m)") | $(ratio "$(added sluice $m)" "$(added portkey $m)" 3) |"
    done
    echo "| RSS idle (lower is better) | $(ratio "$(v sluice.idle_kb)" "$(v nginx.idle_kb)") | $(ratio "$(v sluice.idle_kb)" "$(v portkey.idle_kb)") |"
    echo "| RSS at 1 KB c64 (lower is better) | $(ratio "$(v sluice.1k.c64.hwm_kb)" "$(v nginx.1k.c64.hwm_kb)") | $(ratio "$(v sluice.1k.c64.hwm_kb)" "$(v portkey.1k.c64.hwm_kb)") |"
    echo
}

section_translation() {
    has sluice || return 0
    echo "## Translation cost (sluice)"
    echo
    echo "Same 1 KB conversation; the mock answers 16 tokens in the protocol it is asked in. Pass-through rows are the baselines. Best of ${BENCH_ROUNDS} rounds of ${BENCH_XLAT_SECONDS} s."
    echo
    echo "| inbound -> provider | c1 p50 µs | c1 p99 µs | req/s c16 | vs pass-through | streamed req/s c16 | vs pass-through | errors c1/c16/streamed | sluice CPU % c16 / streamed |"
    echo "|---|---|---|---|---|---|---|---|---|"
    local name base
    for pair in oa-oa oa-an an-an an-oa; do
        case $pair in
        oa-oa) name="OpenAI -> OpenAI (pass-through)"; base=oa-oa ;;
        oa-an) name="OpenAI -> Anthropic"; base=oa-oa ;;
        an-an) name="Anthropic -> Anthropic (pass-through)"; base=an-an ;;
        an-oa) name="Anthropic -> OpenAI"; base=an-an ;;
        esac
        echo "| $name | $(us "x.$pair.c1.p50_us") | $(us "x.$pair.c1.p99_us") | $(fmt_rps "x.$pair.c16.rps") | $(ratio "$(v "x.$pair.c16.rps")" "$(v "x.$base.c16.rps")") | $(fmt_rps "x.$pair.s16.rps") | $(ratio "$(v "x.$pair.s16.rps")" "$(v "x.$base.s16.rps")") | $(us "x.$pair.c1.errors")/$(us "x.$pair.c16.errors")/$(us "x.$pair.s16.errors") | $(us "x.$pair.c16.gw_cpu") / $(us "x.$pair.s16.gw_cpu") |"
    done
    local e=0
    for pair in oa-oa oa-an an-an an-oa; do for k in c1 c16 s16; do e=$((e + ${R[x.$pair.$k.errors]:-0})); done; done
    echo
    echo "Errors over all translation runs: $e."
    echo
}

feat_label() {
    case $1 in
    bare) echo "(a) bare: metrics off, no traces, access log off, no consumers" ;;
    metrics) echo "(b) + metrics" ;;
    tracing) echo "(c) + metrics + tracing (sample_ratio 1.0)" ;;
    limits-memory) echo "(d) + limits, state.backend memory" ;;
    limits-redis) echo "(e) + limits, state.backend redis" ;;
    *) echo "$1" ;;
    esac
}
cpu_per_req() { # cpu_per_req KEY: sluice CPU time per request in µs during the run KEY (empty when unknown)
    local t n; t=$(v "$1.gw_ticks"); n=$(v "$1.requests")
    if [ -z "$t" ] || [ -z "$n" ] || [ "$n" = 0 ]; then echo ""; else calc "$t * 1000000 / $CLK_TCK / $n" 1; fi
}
minus() { # minus A B [digits]: A - B, or — when either is missing
    if [ -z "$1" ] || [ -z "$2" ]; then echo "—"; else calc "$1 - $2" "${3:-1}"; fi
}

section_features() {
    [ -n "$(v f.bare.c16.rps)" ] || return 0
    echo "## Feature cost (sluice)"
    echo
    echo "Issues 5 and 6: what metrics, tracing and limits cost per request. The same mock and 1 KB chat body as above;"
    echo "sluice (one worker, core $GW_CPU) in five variants, each a fresh process, run in ${BENCH_ROUNDS} interleaved rounds of"
    echo "${BENCH_FEAT_SECONDS} s per figure (best round: most req/s at 16 connections, lowest p50 at 1). Every variant keeps the"
    echo "model mapping and turns the access log off; (b)-(e) each add one feature to (a). Tracing exports every request"
    echo "(a SERVER span and a CLIENT span per attempt) to a local OTLP/HTTP receiver (bench/otlp_sink.cjs, answers 200);"
    echo "limits: one consumer whose key wrk sends, with requests_per_minute and tokens_per_minute far above what a run"
    echo "reaches, so every request is authenticated, checked, reserved and settled and none is refused; Redis is a local"
    echo "\`redis-server\` (no persistence, \`on_error: deny\`). The OTLP receiver and Redis share core $LOAD_CPU with wrk and the mock."
    echo
    echo "Cost per request against (a), in µs: *from req/s* = 1e6/req/s − 1e6/req/s of (a) at 16 connections (the time the"
    echo "one core spends per request, when sluice's core is the bottleneck: see its CPU column); *CPU* = sluice's CPU time"
    echo "per request at 16 connections (user + system, from /proc) minus (a)'s; *p50* = p50 at 1 connection minus (a)'s."
    echo "The CPU figure is the steadiest when other jobs disturb the run (\"others\": CPU used by everything not under test)."
    echo
    echo "| variant | req/s c16 | cost from req/s µs | sluice CPU µs/req c16 | cost from CPU µs | p50 c1 µs | cost from p50 µs | p99 c1 µs | p50 / p99 c16 µs | errors c1/c16 | CPU % c16: sluice / mock / wrk / OTLP receiver or Redis / others |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    local rb cb pb var
    rb=$(v f.bare.c16.rps); cb=$(cpu_per_req f.bare.c16); pb=$(v f.bare.c1.p50_us)
    for var in $FEAT_VARIANTS; do
        local k=f.$var
        if [ "${R[$k.failed]:-0}" = 1 ] && [ -z "$(v "$k.c16.rps")" ]; then
            echo "| $(feat_label "$var") | not run: ${R[$k.why]:-failed} | | | | | | | | | |"
            continue
        fi
        local r c p cr cc cp aux oth
        aux=$(v "$k.c16.aux_cpu"); oth=$(v "$k.c16.others_cpu")
        if [ -n "$aux" ] && [ -n "$oth" ]; then oth=$(calc "$oth > $aux ? $oth - $aux : 0" 0); fi
        r=$(v "$k.c16.rps"); c=$(cpu_per_req "$k.c16"); p=$(v "$k.c1.p50_us")
        if [ "$var" = bare ]; then cr="(base)"; cc="(base)"; cp="(base)"
        else
            cr="—"; if [ -n "$r" ] && [ -n "$rb" ] && [ "$(calc "$r > 0 && $rb > 0" 0)" = 1 ]; then cr=$(calc "1000000 / $r - 1000000 / $rb" 1); fi
            cc=$(minus "$c" "$cb"); cp=$(minus "$p" "$pb" 0)
        fi
        echo "| $(feat_label "$var") | $(fmt_rps "$k.c16.rps") | $cr | ${c:-—} | $cc | $(us "$k.c1.p50_us") | $cp | $(us "$k.c1.p99_us") | $(us "$k.c16.p50_us") / $(us "$k.c16.p99_us") | $(us "$k.c1.errors")/$(us "$k.c16.errors") | $(us "$k.c16.gw_cpu") / $(us "$k.c16.mock_cpu") / $(us "$k.c16.load_cpu") / ${aux:-—} / ${oth:-—} |"
    done
    echo
    echo "What shows each feature was on in its variant's last round (sluice's /metrics, its usage API; OTLP receiver: $(v f.sink)):"
    echo
    for var in $FEAT_VARIANTS; do
        [ -n "$(v "f.$var.evidence")" ] && echo "- $(feat_label "$var"): $(v "f.$var.evidence")"
    done
    echo
}

section_targets() {
    echo "## Issue 7 targets"
    echo
    local s16 n16 p16; s16=$(v sluice.1k.c16.rps); n16=$(v nginx.1k.c16.rps); p16=$(v portkey.1k.c16.rps)
    local sa50 na50 sa99 na99; sa50=$(added sluice p50_us); na50=$(added nginx p50_us); sa99=$(added sluice p99_us); na99=$(added nginx p99_us)
    local big; big=$(echo "$BENCH_STREAMS" | tr ' ' '\n' | sort -n | tail -1)
    echo "| target | figure | verdict |"
    echo "|---|---|---|"
    [ -n "$s16" ] && [ -n "$n16" ] && echo "| req/s at 16 conn ≥ nginx's | $(calc "$s16" 0) vs $(calc "$n16" 0) ($(ratio "$s16" "$n16")×) | $(verdict "$s16 >= $n16") |"
    [ -n "$s16" ] && [ -n "$p16" ] && echo "| req/s at 16 conn ≥ 20× Portkey's | $(ratio "$s16" "$p16" 1)× | $(verdict "$s16 >= 20 * $p16") |"
    [ -n "$sa50" ] && [ -n "$na50" ] && echo "| added p50 at 1 conn ≤ nginx's | $sa50 µs vs $na50 µs | $(verdict "$sa50 <= $na50") |"
    if [ -n "$sa99" ] && [ -n "$na99" ]; then
        if [ "$sa99" -lt 0 ] || [ "$na99" -lt 0 ]; then
            echo "| added p99 at 1 conn ≤ 1.2× nginx's | $sa99 µs vs $na99 µs | inconclusive (direct's p99 was the highest: noise) |"
        else
            echo "| added p99 at 1 conn ≤ 1.2× nginx's | $sa99 µs vs $na99 µs | $(verdict "$sa99 <= 1.2 * $na99") |"
        fi
    fi
    if [ -n "$(v "sluice.s$big.ok")" ]; then
        echo "| $big streams, every one stall-free | $(v "sluice.s$big.stall_free") of $big stall-free ($(v "sluice.s$big.procs") process(es)) | $(verdict "$(v "sluice.s$big.stall_free") >= $big") |"
        echo "| RSS < 256 MB while holding $big streams | $(fmt_mb "sluice.s$big.hwm_kb") MB | $(verdict "$(v "sluice.s$big.hwm_kb") < 262144") |"
    fi
    [ -n "$(v sluice.idle_kb)" ] && echo "| idle RSS < 10 MB | $(fmt_mb sluice.idle_kb) MB | $(verdict "$(v sluice.idle_kb) < 10240") |"
    [ -n "$(v sluice.256k.c16.rps)" ] && echo "| 256 KB req/s within 2× of 1 KB | $(ratio "$(v sluice.1k.c16.rps)" "$(v sluice.256k.c16.rps)")× slower | $(verdict "$(v sluice.256k.c16.rps) * 2 >= $s16") |"
    echo
}

section_profile() {
    [ -s "$T/perf-flat.txt" ] || return 0
    echo "## Profile: sluice under 1 KB bodies, 16 connections"
    echo
    echo "\`perf record -F 999 -g\` on the sluice process during a wrk run; self time by symbol (≥ 1.5 %):"
    echo
    echo '```'
    cat "$T/perf-flat.txt"
    echo '```'
    echo
    echo "Self time by binary:"
    echo
    echo '```'
    cat "$T/perf-dso.txt"
    echo '```'
    echo
    echo "User-space functions including their callees (≥ 2 %; the kernel time they cause is in these figures):"
    echo
    echo '```'
    cat "$T/perf-children.txt"
    echo '```'
    echo
}

write_report() {
    echo "# Benchmark results"
    echo
    echo "Written by \`make bench\` (bench/run.sh; method in docs/benchmarks.md). Every figure below comes from one run"
    echo "on one machine against the same sluice-mock. Absolute numbers move with the machine and whatever else runs"
    echo "on it; the ratios between targets measured in the same run are the meaningful part."
    echo
    machine
    echo
    if step requests; then section_latency; section_rps; section_ratios; fi
    if step streams; then section_streams; fi
    if step requests || step streams; then section_memory; fi
    if step translation; then section_translation; fi
    if step features; then section_features; fi
    if step requests || step streams; then section_targets; fi
    if step json; then
        echo "## JSON (sluice's reader and splice vs cJSON)"
        echo
        echo "bench/json_bench.c, ${BENCH_JSON_SECONDS} s per cell, pinned to core $LOAD_CPU:"
        echo
        cat "$T/json.md"
        echo
    fi
    section_profile
}
