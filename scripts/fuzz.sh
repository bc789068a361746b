#!/usr/bin/env bash
# fuzz.sh: builds and runs sluice's libFuzzer targets for a short, bounded time.
#
#   scripts/fuzz.sh               every tests/fuzz/fuzz_*.c
#   scripts/fuzz.sh http json     only fuzz_http.c and fuzz_json.c
#   FUZZ_SECONDS=300 scripts/fuzz.sh json    a longer run of one target
#
# Each target names the sources it links on its first line:
#   // fuzz-sources: src/json/json.c src/core/sl.c
# and is built with clang -fsanitize=fuzzer,address,undefined (plus -Isrc and the
# project's pkg-config flags, so any module can be linked). It then runs for
# FUZZ_SECONDS over a scratch copy of tests/fuzz/corpus/NAME/ (new inputs land
# in the copy, the committed seeds stay as they are). A dictionary
# tests/fuzz/NAME.dict is used when present. Crashes, leaks and timeouts are
# written to build/fuzz/artifacts/NAME/; reproduce one with
#   build/fuzz/fuzz_NAME build/fuzz/artifacts/NAME/crash-...
#
# Every target counts as one test; the last line is "N passed, N failed" and
# the exit status is non-zero when any target failed to build or run cleanly.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CLANG=${CLANG:-clang}
OUT=build/fuzz
LOGS=build/test-logs
PKGS="libuv libcurl yaml-0.1 hiredis openssl" # as in the Makefile
mkdir -p "$OUT" "$LOGS"

passed=0
failed=0

# Prints the tail of a log, indented, so a failure is readable inline.
show_tail() { tail -n "${2:-60}" "$1" | sed 's/^/    | /'; }

# The sanitizer or libFuzzer report of a failed run, without the shadow-memory
# dump, then where the input that triggered it was saved.
show_report() {
    local log=$1 start
    start=$(grep -nE '==[0-9]+== ?ERROR|runtime error:|ERROR: libFuzzer|deadly signal' "$log" | head -n 1 | cut -d: -f1)
    if [ -z "$start" ]; then show_tail "$log" 60; return; fi
    local report
    report=$(tail -n "+$start" "$log" |
        grep -vE '^(=>| +)0x[0-9a-f]+:|Shadow byte|^ +[A-Z][A-Za-z -]+: +([0-9a-f]{2} ?)+$|^stat::' | head -n 60)
    printf '%s\n' "$report" | sed 's/^/    | /'
    case $report in *"Test unit written to"*) ;; *) grep -E 'Test unit written to' "$log" | sed 's/^/    | /' ;; esac
}

# The sources listed on the first line of a target, or nothing.
target_sources() { head -n 1 "$1" | sed -n 's|^//[[:space:]]*fuzz-sources:[[:space:]]*||p'; }

build_target() { # name src -> 0 when built
    local name=$1 src=$2 log="$LOGS/fuzz-$1.build.log" sources
    sources=$(target_sources "$src")
    if [ -z "$sources" ]; then
        echo "  FAIL fuzz_$name: first line of $src must be '// fuzz-sources: a.c b.c ...'"
        return 1
    fi
    # shellcheck disable=SC2046,SC2086 # word splitting of the flag and source lists is intended
    if ! "$CLANG" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -DSL_VERSION='"fuzz"' -DSL_GIT_REV='"fuzz"' -DSL_BUILD_FLAGS='"fuzz"' \
        -Isrc $(pkg-config --cflags $PKGS 2>/dev/null) \
        -o "$OUT/fuzz_$name" "$src" $sources \
        $(pkg-config --libs $PKGS 2>/dev/null) -lm -pthread >"$log" 2>&1; then
        echo "  FAIL fuzz_$name: build failed ($log)"
        show_tail "$log" 40
        return 1
    fi
}

run_target() { # name -> 0 when the run ended cleanly
    local name=$1 log="$LOGS/fuzz-$1.log" work="$OUT/corpus-work/$1" art="$OUT/artifacts/$1/"
    local args=()
    rm -rf "$work"
    mkdir -p "$work" "$art"
    if [ -d "tests/fuzz/corpus/$name" ]; then cp -R "tests/fuzz/corpus/$name/." "$work/"; fi
    [ -f "tests/fuzz/$name.dict" ] && args+=("-dict=tests/fuzz/$name.dict")
    # timeout: a hung target cannot stall the whole test run.
    if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 $((FUZZ_SECONDS + 120)) "$OUT/fuzz_$name" \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art" "${args[@]}" "$work" >"$log" 2>&1; then
        echo "  FAIL fuzz_$name (log: $log, artifacts: $art)"
        show_report "$log"
        return 1
    fi
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
    echo "  ok   fuzz_$name (${FUZZ_SECONDS}s, ${execs:-?} runs, corpus $(find "$work" -type f | wc -l) files)"
}

targets=()
if [ $# -gt 0 ]; then
    for n in "$@"; do targets+=("tests/fuzz/fuzz_${n#fuzz_}.c"); done
else
    for f in tests/fuzz/fuzz_*.c; do [ -e "$f" ] && targets+=("$f"); done
fi

if [ ${#targets[@]} -eq 0 ]; then
    echo "  no fuzz targets yet (tests/fuzz/fuzz_*.c)"
elif ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "  FAIL: $CLANG not found (scripts/install-deps.sh installs it)"
    failed=${#targets[@]}
else
    for src in "${targets[@]}"; do
        name=$(basename "$src" .c)
        name=${name#fuzz_}
        if [ ! -f "$src" ]; then
            echo "  FAIL fuzz_$name: $src does not exist"
            failed=$((failed + 1))
        elif build_target "$name" "$src" && run_target "$name"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
