#!/usr/bin/env bash
# test.sh: the one test entry (`make test` runs it after scripts/install-deps.sh).
#
#   scripts/test.sh                  every step below, in order
#   scripts/test.sh unit e2e         only the named steps (build is implied)
#
# Steps:
#   build     release build: make all unit-bins
#   unit      every build/tests/test_* (cmocka)
#   asan      ASan+UBSan build (make asan), every build/asan/tests/test_*
#   fuzz      scripts/fuzz.sh: each tests/fuzz/fuzz_*.c for FUZZ_SECONDS (default 20)
#   e2e       node --test tests/e2e/ against build/sluice + build/sluice-mock
#   e2e-asan  the files listed in tests/e2e/asan-subset.txt against build/asan/*
#
# The console shows a header per step, one line per passing binary or target,
# and failures in full; verbose logs go to build/test-logs/. Pieces that do not
# exist yet (no src/main.c, no mock, no fuzz targets, no e2e tests) are
# reported and skipped, not counted. Every result is counted, and the last line
# is "N passed, N failed"; the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

JOBS=${JOBS:-2}
LOGS=build/test-logs
# Same flags as the Makefile's asan target (used when only part of the tree exists yet).
ASAN_SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
E2E_CONCURRENCY=${E2E_CONCURRENCY:-2} # test files in parallel; each test picks free ports
E2E_TIMEOUT=${E2E_TIMEOUT:-600}       # seconds for one whole node --test run

rm -rf "$LOGS"
mkdir -p "$LOGS"

total_pass=0
total_fail=0
summary=() # one line per step, printed at the end

header() { printf '\n==> %s\n' "$*"; }
note() { printf '  %s\n' "$*"; }
indent() { sed 's/^/    | /'; }
# Drops ASan's shadow-memory dump from a report: long, and never what one reads.
strip_shadow() { grep -vE '^(=>| +)0x[0-9a-f]+:|Shadow byte|^ +[A-Z][A-Za-z -]+: +([0-9a-f]{2} ?)+$'; }
count() { # passed failed step-label
    total_pass=$((total_pass + $1))
    total_fail=$((total_fail + $2))
    summary+=("$(printf '%-24s %4d passed, %d failed' "$3" "$1" "$2")")
}

want() { # is step $1 selected?
    [ ${#STEPS[@]} -eq 0 ] && return 0
    local s
    for s in "${STEPS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

have_gateway() { [ -f src/main.c ]; }
have_mock() { compgen -G 'tools/mock/*.c' >/dev/null; }

# Targets that exist in this tree for a build dir: the unit tests always, the
# binaries when their sources are there.
build_targets() {
    local b=$1 t=(unit-bins)
    have_gateway && t+=("$b/sluice")
    have_mock && t+=("$b/sluice-mock")
    echo "${t[@]}"
}

run_make() { # label log make-args...
    local label=$1 log=$2
    shift 2
    # A build that works is not a test result; one that fails counts as a failure.
    if make -k -j"$JOBS" "$@" >"$log" 2>&1; then
        note "ok   $label"
        return 0
    fi
    note "FAIL $label (log: $log)"
    grep -E 'error|Error|undefined reference' "$log" | head -n 40 | indent
    count 0 1 "$label"
    return 1
}

# Runs one cmocka binary, counts its results, shows its failures.
run_cmocka() { # binary label env...
    local bin=$1 label=$2
    shift 2
    local name log rc pass fail
    name=$(basename "$bin")
    log="$LOGS/$label-$name.log"
    # (the subshell keeps bash's "Aborted" job message off the console)
    (env "$@" timeout -k 10 600 "$bin" >"$log" 2>&1) 2>/dev/null
    rc=$?
    pass=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) test\(s\)\.?.*/\1/p' "$log" | tail -n 1)
    fail=$(sed -nE 's/^\[  FAILED  \] ([0-9]+) test\(s\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$pass" ] && [ -z "$fail" ]; then
        # No summary: it crashed (sanitizer abort, signal) or hung. Count what
        # finished, and the crash as one failure.
        pass=$(grep -c '^\[       OK \]' "$log")
        fail=1
        local last
        last=$(sed -nE 's/^\[ RUN +\] //p' "$log" | tail -n 1)
        if [ "$rc" -eq 124 ]; then
            note "FAIL $name: timed out in ${last:-?} (log: $log)"
        else
            note "FAIL $name: crashed in ${last:-?}, exit $rc (log: $log)"
        fi
    else
        pass=${pass:-0}
        fail=${fail:-0}
        # A clean summary but a bad exit (e.g. a leak found at exit) is still a failure.
        [ "$fail" -eq 0 ] && [ "$rc" -ne 0 ] && fail=1
        if [ "$fail" -eq 0 ]; then
            note "ok   $name ($pass passed)"
        else
            note "FAIL $name ($pass passed, $fail failed; exit $rc; log: $log)"
        fi
    fi
    if [ "$fail" -ne 0 ]; then
        grep -vE '^\[ RUN +\]|^\[ +OK \]' "$log" | strip_shadow | tail -n 120 | indent
    fi
    count "$pass" "$fail" "$label:$name"
}

run_unit_dir() { # build-dir label env...
    local dir=$1 label=$2 src bin ran=0
    shift 2
    for src in tests/unit/test_*.c; do
        [ -e "$src" ] || continue
        bin="$dir/tests/$(basename "$src" .c)"
        ran=1
        if [ -x "$bin" ]; then
            run_cmocka "$bin" "$label" "$@"
        else
            note "FAIL $(basename "$bin"): not built (see the build log above)"
            count 0 1 "$label:$(basename "$bin")"
        fi
    done
    [ "$ran" -eq 1 ] || note "no unit tests yet (tests/unit/test_*.c)"
}

# Runs node --test over the given files with the given binaries.
run_e2e() { # label sluice-bin mock-bin files...
    local label=$1 sbin=$2 mbin=$3
    shift 3
    local tap="$LOGS/$label.tap" res pass fail
    if ! command -v node >/dev/null 2>&1; then
        note "FAIL: node not found (scripts/install-deps.sh installs it)"
        count 0 1 "$label"
        return
    fi
    if [ ! -d tests/e2e/node_modules ]; then
        note "FAIL: tests/e2e/node_modules missing (run scripts/install-deps.sh)"
        count 0 1 "$label"
        return
    fi
    if [ ! -x "$sbin" ] || [ ! -x "$mbin" ]; then
        local why="src/main.c or tools/mock/ not in the tree yet"
        have_gateway && have_mock && why="build failed"
        note "skipped: $sbin or $mbin missing ($why)"
        if have_gateway && have_mock; then count 0 1 "$label"; fi
        return
    fi
    SLUICE_BIN="$PWD/$sbin" SLUICE_MOCK_BIN="$PWD/$mbin" SLUICE_TEST_LOGS="$PWD/$LOGS/$label" \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        timeout -k 10 "$E2E_TIMEOUT" node --test --test-concurrency="$E2E_CONCURRENCY" \
        --test-timeout=180000 --test-reporter=tap --test-reporter-destination="$tap" "$@" \
        >"$LOGS/$label.out" 2>&1
    local rc=$?
    [ -s "$tap" ] || { echo "(no TAP output)" >"$tap"; }
    res=$(node tests/e2e/lib/tap-failures.js "$tap")
    printf '%s\n' "$res" | grep -v '^RESULT ' || true
    read -r _ pass fail <<<"$(printf '%s\n' "$res" | grep '^RESULT ' | tail -n 1)"
    pass=${pass:-0}
    fail=${fail:-1}
    if [ "$rc" -eq 124 ]; then
        note "FAIL: node --test did not finish within ${E2E_TIMEOUT}s"
        fail=$((fail + 1))
    elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        note "FAIL: node --test exited $rc without a failing test (log: $LOGS/$label.out)"
        tail -n 40 "$LOGS/$label.out" | indent
        fail=1
    fi
    note "$([ "$fail" -eq 0 ] && echo ok || echo FAIL)   $pass passed, $fail failed (TAP: $tap, process logs: $LOGS/$label/)"
    count "$pass" "$fail" "$label"
}

e2e_files() {
    local f
    for f in tests/e2e/*.test.js; do [ -e "$f" ] && echo "$f"; done
}

asan_subset_files() {
    local line
    [ -f tests/e2e/asan-subset.txt ] || return 0
    while IFS= read -r line; do
        line=${line%%#*}
        line=$(echo "$line" | tr -d '[:space:]')
        [ -n "$line" ] || continue
        if [ -f "tests/e2e/$line" ]; then echo "tests/e2e/$line"; else note "asan-subset.txt names a missing file: $line" >&2; fi
    done <tests/e2e/asan-subset.txt
}

STEPS=("$@")
for s in "${STEPS[@]}"; do
    case $s in build | unit | asan | fuzz | e2e | e2e-asan) ;;
    *) echo "test.sh: unknown step '$s' (build unit asan fuzz e2e e2e-asan)" >&2; exit 2 ;;
    esac
done

start=$SECONDS
have_gateway || note "note: src/main.c is not in the tree yet: build/sluice is not built, e2e tests are skipped"
have_mock || note "note: tools/mock/ is not in the tree yet: build/sluice-mock is not built"

if want build || want unit || want e2e; then
    header "build (release): make $(build_targets build)"
    # shellcheck disable=SC2046
    run_make build "$LOGS/build-release.log" $(build_targets build)
fi

if want unit; then
    header "unit tests (release): build/tests/test_*"
    run_unit_dir build unit
fi

if want asan || want e2e-asan; then
    if have_gateway && have_mock; then
        header "build (asan+ubsan): make asan"
        run_make build-asan "$LOGS/build-asan.log" asan
    else
        header "build (asan+ubsan): make BUILD=build/asan $(build_targets build/asan)"
        # shellcheck disable=SC2046
        run_make build-asan "$LOGS/build-asan.log" BUILD=build/asan OPT=-O1 SAN="$ASAN_SAN" $(build_targets build/asan)
    fi
fi

if want asan; then
    header "unit tests (asan+ubsan): build/asan/tests/test_*"
    run_unit_dir build/asan asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

if want fuzz; then
    header "fuzz: scripts/fuzz.sh (${FUZZ_SECONDS:-20}s per target)"
    fuzz_out=$(scripts/fuzz.sh 2>&1)
    fuzz_rc=$?
    printf '%s\n' "$fuzz_out" | sed '$d'
    last=$(printf '%s\n' "$fuzz_out" | tail -n 1)
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        fp=${BASH_REMATCH[1]}
        ff=${BASH_REMATCH[2]}
        [ "$fuzz_rc" -ne 0 ] && [ "$ff" -eq 0 ] && ff=1
        count "$fp" "$ff" fuzz
    else
        note "FAIL: scripts/fuzz.sh ended without a summary (exit $fuzz_rc)"
        count 0 1 fuzz
    fi
fi

if want e2e; then
    header "e2e: node --test tests/e2e/ (SLUICE_BIN=build/sluice)"
    mapfile -t files < <(e2e_files)
    if [ ${#files[@]} -eq 0 ]; then
        note "no e2e tests yet (tests/e2e/*.test.js)"
    else
        run_e2e e2e build/sluice build/sluice-mock "${files[@]}"
    fi
fi

if want e2e-asan; then
    header "e2e under asan: tests/e2e/asan-subset.txt (SLUICE_BIN=build/asan/sluice)"
    mapfile -t files < <(asan_subset_files)
    if [ ${#files[@]} -eq 0 ]; then
        note "no files listed in tests/e2e/asan-subset.txt"
    else
        run_e2e e2e-asan build/asan/sluice build/asan/sluice-mock "${files[@]}"
    fi
fi

header "summary ($((SECONDS - start))s; logs in $LOGS/)"
for line in "${summary[@]}"; do note "$line"; done
# Also kept in a file: a caller that prints something after us (make's own
# "Error 1" line) can repeat it as the last line of its output.
echo "$total_pass passed, $total_fail failed" | tee "$LOGS/summary.txt"
[ "$total_fail" -eq 0 ]
