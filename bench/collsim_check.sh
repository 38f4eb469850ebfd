#!/usr/bin/env bash
# collsim_check.sh: the simulator against real runs. Runs `baton tune`, then times real TCP
# allreduces (allreduce_bench, median of 15 after 2 warm-up) with each algorithm forced, at
# 2 and 4 ranks and 64 KiB and 4 MiB, next to `collsim one` for the same tune file, and
# prints each real/simulated ratio and the worst |ratio - 1| (issue 20's goal: within 15%).
#
#   bench/collsim_check.sh          (BUILD=build by default; run on a quiet machine)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
S=$BUILD/tests/progs/collsim B=$BUILD/bench/allreduce_bench
for f in "$BUILD/baton" "$S" "$B"; do
    [ -x "$f" ] || { echo "collsim_check.sh: $f is missing; run make first" >&2; exit 2; }
done
T=$(mktemp -d /tmp/baton-collsim.XXXXXX)
trap 'rm -rf "$T"' EXIT
(cd "$T" && "$PWD/$BUILD/baton" tune -o tune.txt >/dev/null 2>"$T/tune.err") ||
    { echo "collsim_check.sh: baton tune failed: $(tail -1 "$T/tune.err")" >&2; exit 1; }
echo "tune: $(tr '\n' ' ' <"$T/tune.txt")  (load $(cut -d' ' -f1 /proc/loadavg))"
worst=0
for n in 2 4; do
    for a in ring rd rabenseifner; do
        for bytes in 65536 4194304; do
            BATON_ALGO=$a "$BUILD/baton" run -n "$n" -- "$B" --backend tcp -b "$bytes" -e "$bytes" \
                -n 15 -w 2 >"$T/b" 2>&1
            real=$(grep -E '^\[0\] +[0-9]+ ' "$T/b" | awk '{print $6 / 1e6}' | tail -1)
            sim=$("$S" one "$a" "$n" "$bytes" --tune "$T/tune.txt" | cut -d' ' -f1)
            r=$(awk -v r="${real:-0}" -v s="$sim" 'BEGIN { printf "%.3f", r / s }')
            printf 'n=%d %-13s %8d B: real %-10s s, simulated %-10s s, ratio %s\n' "$n" "$a" \
                "$bytes" "${real:-none}" "$sim" "$r"
            worst=$(awk -v r="$r" -v w="$worst" 'BEGIN { d = r - 1; if (d < 0) d = -d; print (d > w ? d : w) }')
        done
    done
done
echo "worst |real/simulated - 1| = $worst (goal <= 0.15)"
