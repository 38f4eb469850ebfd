#!/usr/bin/env bash
# flight_overhead.sh: what the flight recorder and the straggler accounting cost allreduce.
#
#   bench/flight_overhead.sh [ROUNDS] [NPROC]      (defaults: 7 rounds, 2 ranks)
#
# For 4 KiB and 64 MiB (float32 sum, in place, shared memory), each round runs
# build/bench/allreduce_bench under `baton run -n NPROC` twice: with BATON_FLIGHT=off (no
# recorder: the hook in coll.c returns at once, the launcher reads nothing) and on (the
# default: each call recorded, the launcher accounting stragglers once a second); the order
# alternates between rounds (off on, on off, ...). Each run reports the median time per op
# (the slowest rank's median). Printed per size: the median over the rounds and the spread
# (min-max) of off and on, and the ratio of the medians (on / off). Goal: <= 1.05 at 4 KiB,
# <= 1.01 at 64 MiB.
set -u
B=${BATON_BUILD:-build}
ROUNDS=${1:-7}
NP=${2:-2}
[ -x "$B/bench/allreduce_bench" ] || { echo "flight_overhead: build first (make)"; exit 2; }

one() { # MODE SIZE ITERS WARMUP: prints the median us per op
    BATON_FLIGHT=$1 "$B/baton" run -n "$NP" -- "$B/bench/allreduce_bench" --backend shm \
        -b "$2" -e "$2" -n "$3" -w "$4" 2>/dev/null | awk '$1 == "[0]" && $2 ~ /^[0-9]+$/ {print $6}'
}
stats() { # values...: median min max
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.2f %.2f %.2f", m, v[1], v[NR]}'
}

printf '# flight recorder overhead, %d ranks, %d rounds (off/on alternating), allreduce float32 sum in place, shm\n' "$NP" "$ROUNDS"
printf '# %8s %22s %22s %8s\n' size "off us (min-max)" "on us (min-max)" on/off
for spec in "4K 4000 400" "64M 8 2"; do
    set -- $spec
    off=() on=()
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then off+=("$(one off "$1" "$2" "$3")"); on+=("$(one on "$1" "$2" "$3")")
        else on+=("$(one on "$1" "$2" "$3")"); off+=("$(one off "$1" "$2" "$3")"); fi
    done
    read -r om omin omax <<<"$(stats "${off[@]}")"
    read -r nm nmin nmax <<<"$(stats "${on[@]}")"
    printf '  %8s %8s (%s-%s) %8s (%s-%s) %8.3f\n' "$1" "$om" "$omin" "$omax" "$nm" "$nmin" "$nmax" \
        "$(awk -v a="$nm" -v b="$om" 'BEGIN {print a / b}')"
done
