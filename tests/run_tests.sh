#!/usr/bin/env bash
# run_tests.sh: runs every test and prints one summary line "N passed, N failed, N skipped".
#
# Tests are build/tests/test_* (cmocka, TAP output) and tests/t_*.sh (shell, TAP lines from
# tests/lib.sh). Each runs with a time limit (a "# timeout: SEC" line in a shell test overrides
# the default) and its output goes to $BUILD/test-logs/NAME.log, shown when it fails.
# Arguments filter by name substring: ./tests/run_tests.sh store launcher
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BATON_BUILD=$PWD/$BUILD BATON_SRC=$PWD
logs=$BUILD/test-logs
mkdir -p "$logs"
passed=0 failed=0 skipped=0
skips=() failures=()

want() { # NAME: true when no filter was given or one matches NAME
    [ -z "$FILTERS" ] && return 0
    local n=$1
    for f in $FILTERS; do case "$n" in *"$f"*) return 0 ;; esac; done
    return 1
}
FILTERS="$*"

run_one() { # name, timeout, command...
    local name=$1 tmo=$2; shift 2
    local log=$logs/$name.log t0=$SECONDS rc
    CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$tmo" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    local ok nok sk
    # A skip is "ok N - name # SKIP reason" (ours) or "not ok N # SKIP" (cmocka's TAP).
    ok=$(grep -E '^ok [0-9]+' "$log" | grep -cvE '# *SKIP' | tr -d ' ')
    sk=$(grep -cE '^(not )?ok [0-9]+.*# *SKIP' "$log" | tr -d ' ')
    nok=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '# *SKIP' | tr -d ' ')
    while IFS= read -r line; do skips+=("$name: $line"); done \
        < <(grep -E '^(not )?ok [0-9]+.*# *SKIP' "$log" | sed -E 's/^(not )?ok [0-9]+ *-? *//')
    local extra=""
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        nok=$((nok + 1)); extra=" (timed out after ${tmo}s)"
    elif [ $rc -ne 0 ] && [ "$nok" -eq 0 ]; then
        nok=$((nok + 1)); extra=" (exited $rc)"
    elif [ $rc -eq 0 ] && [ $((ok + nok + sk)) -eq 0 ]; then
        nok=1; extra=" (reported no result)"
    fi
    passed=$((passed + ok)); failed=$((failed + nok)); skipped=$((skipped + sk))
    if [ "$nok" -gt 0 ]; then
        printf '✗ %-28s %3d ok, %d failed%s  [%ds]\n' "$name" "$ok" "$nok" "$extra" $((SECONDS - t0))
        failures+=("$name")
        grep -E '^not ok' "$log" | head -20 | sed 's/^/    /'
        echo "    --- last lines of $log ---"
        tail -25 "$log" | sed 's/^/    /'
    else
        printf '✓ %-28s %3d ok%s  [%ds]\n' "$name" "$ok" "$([ "$sk" -gt 0 ] && echo ", $sk skipped")" $((SECONDS - t0))
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    want "$name" || continue
    run_one "$name" 600 "$t"
done
for t in tests/t_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    want "$name" || continue
    tmo=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$t" | head -1)
    run_one "$name" "${tmo:-300}" bash "$t"
done

if [ ${#skips[@]} -gt 0 ]; then
    echo "skipped:"
    for s in "${skips[@]}"; do echo "  - $s"; done
fi
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logs/)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
