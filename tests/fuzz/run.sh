#!/usr/bin/env bash
# run.sh SECONDS [NAME...]: runs each libFuzzer target of build/fuzz/fuzz/ (every one, or those
# named) for SECONDS on its corpus, one target at a time, and prints one line per target.
#
# The seeds in tests/fuzz/corpus/NAME are read, never written: new inputs go to
# build/fuzz/corpus/NAME (or $FUZZ_WORK/NAME; the first directory libFuzzer is given), and a crash, leak or
# timeout leaves its input in build/fuzz/artifacts/ and the log in build/fuzz/logs/NAME.log.
# FUZZ_SEEDS_ONLY=1 runs the corpus once, without mutations; FUZZ_NET_RUNS=N caps the inputs of
# the two targets that connect over loopback (t_fuzz.sh sets it). Exit 0 when every target ran
# clean.
set -u
cd "$(dirname "$0")/../.."
SECS=${1:-60}
shift
FB=${FUZZ_BUILD:-build/fuzz}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do names+=("$(basename "$f" .c)"); done
fi
max_len() { # the largest input worth trying per target
    case $1 in
    fuzz_yaml) echo 16384 ;;
    fuzz_idx | fuzz_ps) echo 8192 ;;
    *) echo 4096 ;;
    esac
}
mkdir -p "$FB/logs" "$FB/artifacts"
bad=0
for n in "${names[@]}"; do
    bin=$FB/fuzz/$n seeds=tests/fuzz/corpus/$n work=${FUZZ_WORK:-$FB/corpus}/$n log=$FB/logs/$n.log
    mkdir -p "$work"
    if [ ! -x "$bin" ]; then
        printf '✗ %-11s not built (%s); make fuzz-build\n' "$n" "$bin"
        bad=1
        continue
    fi
    t0=$SECONDS
    limit=-max_total_time=$SECS
    [ -n "${FUZZ_SEEDS_ONLY:-}" ] && limit=-runs=0 # the corpus only, no mutations
    # FUZZ_NET_RUNS caps the targets that open a loopback connection per input: each closed
    # connection stays in TIME_WAIT for 60 s (fuzz_store made ~13,600 in 3 s).
    case $n in fuzz_store | fuzz_ps) [ -n "${FUZZ_NET_RUNS:-}" ] && limit="$limit -runs=$FUZZ_NET_RUNS" ;; esac
    # shellcheck disable=SC2086
    "$bin" $limit -max_len="$(max_len "$n")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$FB/artifacts/$n-" "$work" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -eq 0 ]; then
        printf '✓ %-11s %4ds, %s runs, coverage %s edges, corpus %s + %s seeds\n' "$n" \
            $((SECONDS - t0)) "${runs:-?}" "${cov:-?}" "$(ls "$work" | wc -l)" "$(ls "$seeds" | wc -l)"
    else
        what=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer)[^(]*|runtime error: .*|deadly signal|fuzz_[a-z]+: .*' "$log" | head -1)
        printf '✗ %-11s exit %d after %ds: %s; input in %s, log %s\n' "$n" "$rc" $((SECONDS - t0)) \
            "${what:-see the log}" "$(ls -t "$FB/artifacts/$n-"* 2>/dev/null | head -1)" "$log"
        bad=1
    fi
done
exit $bad
