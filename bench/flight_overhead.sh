#!/usr/bin/env bash
# flight_overhead.sh: what the flight recorder and the straggler accounting cost allreduce,
# bounded from both sides.
#
#   bench/flight_overhead.sh [PAIRS] [NPROC] [PAIRS64]
#       (defaults: 100 pairs, 2 ranks, PAIRS / 2 pairs at 64 MiB; about 1 minute quiet;
#        64 MiB pairs take 18 ms each quiet: 2,000 of them 36 s, twice with the control)
#
# 1. In one job (build/bench/flight_bench under `baton run -n NPROC`, shared memory): PAIRS
#    pairs of blocks of allreduces, the recorder on in one block of each pair and paused
#    (bt_flight_pause) in the other, the order swapped each pair; the paired differences give
#    the recorder's cost per call in ns with a 95% confidence interval, and the ratio on / off
#    with its interval. Sizes: 4 bytes (the per-call cost where the collective is cheapest),
#    4 KiB (goal <= 1.05) and 64 MiB (goal <= 1.01). Then the same with BATON_FLIGHT=off (no
#    recorder in either block): the intervals the method gives when there is nothing to find.
#    Each size also gets the median of the pairs' ratios on / off with a 95% bootstrap interval,
#    of the blocks' wall time and of the ranks' CPU time (flight_bench.c): robust to the
#    machine's hiccups, which make the mean's interval wide at 64 MiB.
# 2. The recorder alone: build/tests/progs/flight_cost, ns per call (begin + end) in a tight loop.
# 3. The launcher: its CPU time (all its threads: the once-a-second look at the rings that does
#    the straggler accounting and call-shape checks, the watcher thread, the output relay) per
#    second of a 10 s 4 KiB job, with the recorder on and with BATON_FLIGHT=off, read from
#    /proc/PID/task/*/schedstat while the job runs. On a machine whose cores the ranks keep busy,
#    that CPU is taken from them; a fraction of a core is its upper bound on the slowdown.
set -u
B=${BATON_BUILD:-build}
PAIRS=${1:-100}
NP=${2:-2}
P64=${3:-$(((PAIRS + 1) / 2))}
for p in baton bench/flight_bench tests/progs/flight_cost; do
    [ -x "$B/$p" ] || { echo "flight_overhead: build first (make): $B/$p missing"; exit 2; }
done

paired() { # SETTING SIZE BLOCK PAIRS: flight_bench's result lines (mean, then the medians)
    BATON_FLIGHT=$1 "$B/baton" run -n "$NP" -- "$B/bench/flight_bench" --backend shm -s "$2" \
        -B "$3" -p "$4" -w "$3" 2>/dev/null | awk -v m="BATON_FLIGHT=$1" -v p="$4" '
        $1 == "[0]" && $2 ~ /^[0-9]+$/ {
            sz = $2
            printf " %-17s %9s %6s %11s %11s %11s %-22s %7s %s\n", m, sz, p, $3, $4, $5, $6 " " $7, $8, $9 " " $10}
        $1 == "[0]" && $2 == "median" {
            printf " %-17s %9s %6s %11s %11s %11s %-22s %7s %s\n", m, sz, p, $4, $5, "median", $3, $6, $7 " " $8}'
}

# CPU seconds of process $1 so far: its threads' time on a CPU in ns, from
# /proc/PID/task/*/schedstat (finer than /proc/PID/stat's 10 ms ticks)
cpu_s() {
    [ -d "/proc/$1/task" ] || return 1
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {if (NR) printf "%.4f", ns / 1e9; else exit 1}'
}

launcher_cpu() { # MODE: "cpu_s wall_s" of the launcher over a 10 s job of 4 KiB allreduces
    local t0 pid last=0 wall
    t0=$(date +%s.%N)
    BATON_FLIGHT=$1 "$B/baton" run -n "$NP" -- "$B/bench/flight_bench" --backend shm -s 4K \
        -B 1000 -p 1000000 -w 100 -t 10 >/dev/null 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        last=$(cpu_s "$pid") || break
        sleep 0.2
    done
    wait "$pid"
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    echo "$last $wall"
}

echo "# flight recorder overhead, $NP ranks, shm, $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# 1. paired blocks in one job (on = recorder on, off = paused)"
echo "# (rows 'mean': Student's t over the pairs' differences; rows 'median': the median of the"
echo "#  pairs' ratios on/off with a bootstrap interval, of wall time (wall) and of CPU time (cpu))"
printf '#%-17s %9s %6s %11s %11s %11s %-22s %7s %s\n' setting "size (B)" pairs "off (us)" "on (us)" \
    "on-off (ns)" "(95% CI)" "on/off" "(95% CI)"
for mode in on off; do
    for spec in "4 1000 $PAIRS" "4K 200 $PAIRS" "64M 1 $P64"; do
        set -- $spec
        out=$(paired "$mode" "$1" "$2" "$3")
        echo "${out:- BATON_FLIGHT=$mode $1: failed}"
    done
done
echo "# 2. the recorder alone (begin + end per call, tight loop)"
"$B/tests/progs/flight_cost" 2000000 7
echo "# 3. the launcher's CPU per second of a 4 KiB job"
for mode in on off; do
    read -r c w <<<"$(launcher_cpu "$mode")"
    awk -v m="$mode" -v c="$c" -v w="$w" 'BEGIN {printf "  BATON_FLIGHT=%-3s launcher %.4f s CPU in %.2f s: %.2f ms per s (%.3f%% of a core)\n", m, c, w, c / w * 1e3, c / w * 100}'
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
