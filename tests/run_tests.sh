#!/usr/bin/env bash
# run_tests.sh: runs every test and prints one summary line "N passed, N failed, N skipped".
#
# Tests are build/tests/test_* (cmocka, TAP output) and tests/t_*.sh (shell, TAP lines from
# tests/lib.sh). Each runs with a time limit (a "# timeout: SEC" line in a shell test overrides
# the default) and its output goes to $BUILD/test-logs/NAME.log, shown when it fails.
# Arguments filter by name substring: ./tests/run_tests.sh store launcher
#
# JOBS=N runs up to N tests at once (1 by default; `make check` passes the number of CPUs), the
# longest first; a shell test with a "# serial" line (one that looks at state the whole machine
# shares, like every name in /dev/shm or every network namespace) runs alone, after the rest.
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

run_one() { # name, timeout, command...: runs one test; its verdict goes to $logs/NAME.res
    local name=$1 tmo=$2; shift 2
    local log=$logs/$name.log res=$logs/$name.res t0=$SECONDS rc
    CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$tmo" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    local ok nok sk
    # A skip is "ok N - name # SKIP reason" (ours) or "not ok N # SKIP" (cmocka's TAP).
    ok=$(grep -E '^ok [0-9]+' "$log" | grep -cvE '# *SKIP' | tr -d ' ')
    sk=$(grep -cE '^(not )?ok [0-9]+.*# *SKIP' "$log" | tr -d ' ')
    nok=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '# *SKIP' | tr -d ' ')
    local extra=""
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        nok=$((nok + 1)); extra=" (timed out after ${tmo}s)"
    elif [ $rc -ne 0 ] && [ "$nok" -eq 0 ]; then
        nok=$((nok + 1)); extra=" (exited $rc)"
    elif [ $rc -eq 0 ] && [ $((ok + nok + sk)) -eq 0 ]; then
        nok=1; extra=" (reported no result)"
    fi
    {
        echo "$ok $nok $sk $((SECONDS - t0))"
        if [ "$nok" -gt 0 ]; then
            printf '✗ %-28s %3d ok, %d failed%s  [%ds]\n' "$name" "$ok" "$nok" "$extra" $((SECONDS - t0))
            grep -E '^not ok' "$log" | head -20 | sed 's/^/    /'
            echo "    --- last lines of $log ---"
            tail -25 "$log" | sed 's/^/    /'
        else
            printf '✓ %-28s %3d ok%s  [%ds]\n' "$name" "$ok" "$([ "$sk" -gt 0 ] && echo ", $sk skipped")" $((SECONDS - t0))
        fi
    } >"$res.tmp"
    mv "$res.tmp" "$res"
}

collect() { # name: prints the test's verdict and adds it to the totals
    local name=$1 res=$logs/$1.res ok nok sk secs line
    read -r ok nok sk secs <"$res"
    tail -n +2 "$res"
    passed=$((passed + ok)); failed=$((failed + nok)); skipped=$((skipped + sk))
    [ "$nok" -gt 0 ] && failures+=("$name")
    while IFS= read -r line; do skips+=("$name: $line"); done \
        < <(grep -E '^(not )?ok [0-9]+.*# *SKIP' "$logs/$name.log" | sed -E 's/^(not )?ok [0-9]+ *-? *//')
}

# The tests to run: "name timeout serial command...". With JOBS > 1 the shell tests go first,
# ordered by their time limit, longest first (a rough stand-in for their length: the long ones
# then overlap the short ones), then the unit tests; one at a time, the unit tests go first.
list=() units=()
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    want "$name" || continue
    units+=("$name 600 0 $t")
done
shells=()
for t in tests/t_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    want "$name" || continue
    tmo=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$t" | head -1)
    serial=0
    grep -q '^# serial' "$t" && serial=1
    shells+=("${tmo:-300} $name $serial $t")
done
JOBS=${JOBS:-1}
if [ "$JOBS" -gt 1 ]; then
    mapfile -t shells < <(printf '%s\n' "${shells[@]}" | sort -k1,1nr -s)
fi
for s in "${shells[@]}"; do
    read -r tmo name serial t <<<"$s"
    list+=("$name $tmo $serial bash $t")
done
if [ "$JOBS" -gt 1 ]; then list+=("${units[@]}"); else list=("${units[@]}" "${list[@]}"); fi

declare -A running=() # pid -> name
reap_one() { # waits for one running test and collects it
    local pid
    wait -n -p pid "${!running[@]}"
    collect "${running[$pid]}"
    unset "running[$pid]"
}
serials=()
for entry in "${list[@]}"; do
    read -r name tmo serial cmd <<<"$entry"
    rm -f "$logs/$name.res"
    if [ "$JOBS" -le 1 ]; then
        # shellcheck disable=SC2086 # cmd is "bash FILE" or a path
        run_one "$name" "$tmo" $cmd
        collect "$name"
        continue
    fi
    [ "$serial" = 1 ] && { serials+=("$entry"); continue; }
    while [ ${#running[@]} -ge "$JOBS" ]; do reap_one; done
    # shellcheck disable=SC2086
    run_one "$name" "$tmo" $cmd &
    running[$!]=$name
done
while [ ${#running[@]} -gt 0 ]; do reap_one; done
for entry in "${serials[@]}"; do
    read -r name tmo serial cmd <<<"$entry"
    # shellcheck disable=SC2086
    run_one "$name" "$tmo" $cmd
    collect "$name"
done

if [ ${#skips[@]} -gt 0 ]; then
    echo "skipped:"
    for s in "${skips[@]}"; do echo "  - $s"; done
fi
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logs/)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
