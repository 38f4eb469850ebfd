#!/usr/bin/env bash
# collsim_check.sh: measures what tests/t_collsim.sh holds the simulator to. Writes a table
# (default bench/collsim_measured.txt) with the command, date, load and machine, the
# calibration microbenchmarks (2-rank TCP ping-pongs and a float32 sum: `baton tune`'s TCP
# step, on two cores, on one core, and across the veth pair; bench/step_bench's exchanges in
# pairs and token rounds at 2, 4 and 8 ranks on loopback, and its wake ping-pong, the cost of
# waking a blocked rank by how long it was idle, on loopback and across the veth pair, and its
# call pattern, what a collective call costs beyond its transfers), and the median time of every
# algorithm BATON_ALGO can force at 2, 4 and 8 ranks and 4 KiB ... 256 MiB (by 16x), over
# loopback (all ranks on this machine's cores, unbound) and over a veth pair between two
# network namespaces (n/2 ranks in each, each namespace pinned to its own core, tbf rate
# VETH_RATE on both ends; this kernel has no netem, so no added delay). `collsim verify FILE`
# then replays every row with the model calibrated from the calibration rows only.
#
#   bench/collsim_check.sh [-o FILE] [-r ROUNDS] [--until HH:MM] [--max BYTES] [--nets lo,veth]
#                          [--ns 2,4,8] [--cal-only]
#       ROUNDS   rounds of the sizes up to 16 MiB (default 3); 256 MiB runs once, after the
#                second
#       --until  UTC time after which no new run starts (the rows so far are kept)
#       --max    the largest size (default 256M; below 256M the 256 MiB pass is left out);
#                --nets, --ns: a subset (a quick try); --cal-only: the calibration rows only
#
# Runs are interleaved: round by round, every (net, n, algorithm) once at 4 KiB .. 16 MiB, in
# an order that rotates between rounds; after the second round 256 MiB once each, smallest n
# first (--until may cut that pass or the rounds after it). Each run is
# `allreduce_bench --op OP -s -T 0.3 -n 9 -w 1` (a
# barrier before each timed op; fewer than 9 ops, at least 3, where 9 would take longer than
# 0.3 s); a row holds the median over rounds of the runs' medians. Needs root for veth (it is
# skipped, and says so, without). The full run takes about 12 minutes on the 2-core development VM
# (693 s with --until cutting the last 2 runs and the third round); run it
# on a quiet machine. The calibration alone (--cal-only) takes about 2.5 minutes.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUTF=bench/collsim_measured.txt rounds=3 until="" maxb=256M nets=lo,veth nlist=2,4,8 calonly=0
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
    -o) OUTF=$2; shift 2 ;;
    -r) rounds=$2; shift 2 ;;
    --until) until=$2; shift 2 ;;
    --max) maxb=$2; shift 2 ;;
    --nets) nets=$2; shift 2 ;;
    --ns) nlist=$2; shift 2 ;;
    --cal-only) calonly=1; shift ;;
    *) echo "collsim_check.sh: unknown argument '$1' (see the comment at the top)" >&2; exit 2 ;;
    esac
done
B=$BUILD/bench/allreduce_bench
for f in "$BUILD/baton" "$B" "$BUILD/tests/progs/collsim"; do
    [ -x "$f" ] || { echo "collsim_check.sh: $f is missing; run make first" >&2; exit 2; }
done
T=$(mktemp -d /tmp/baton-collsim.XXXXXX)
NSA=bcsa$$ NSB=bcsb$$ VETH_RATE=${VETH_RATE:-2gbit} VETH_BURST=${VETH_BURST:-128kb}
veth_down() { ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null; }
trap 'veth_down; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
. bench/veth.sh
# on NET N CMD...: runs CMD under baton with N ranks, rank 0's stdout to $T/out.
on() {
    local net=$1 n=$2 port pid rc; shift 2
    if [ "$net" = lo ]; then
        timeout 300 "$BUILD/baton" run -n "$n" --no-tag-output -- "$@" >"$T/out" 2>"$T/err"
        return
    fi
    port=$((20000 + RANDOM % 9000))
    ip netns exec $NSB taskset -c 1 timeout 300 "$BUILD/baton" run --nnodes 2 --node-rank 1 \
        --rdzv 198.51.100.1:$port -n $((n / 2)) --no-tag-output -- "$@" >/dev/null 2>"$T/err1" &
    pid=$!
    ip netns exec $NSA taskset -c 0 timeout 300 "$BUILD/baton" run --nnodes 2 --node-rank 0 \
        --rdzv 198.51.100.1:$port -n $((n / 2)) --no-tag-output -- "$@" >"$T/out" 2>"$T/err"
    rc=$?
    wait $pid || rc=$?
    return $rc
}
past() { [ -n "$until" ] && [ "$(date -u +%H:%M)" \> "$until" ] || [ "$(date -u +%H:%M)" = "$until" ]; }

IFS=, read -r -a NETS <<<"$nets"
IFS=, read -r -a NS <<<"$nlist"
for net in "${NETS[@]}"; do
    [ "$net" = veth ] || continue
    if [ "$(id -u)" != 0 ] || ! veth_up 2>"$T/veth.err"; then
        echo "collsim_check.sh: veth skipped: needs root and ip netns ($(head -1 "$T/veth.err" 2>/dev/null))" >&2
        NETS=("${NETS[@]/veth/}")
    fi
done

{
    echo "# collsim_check.sh: real times for tests/t_collsim.sh (collsim verify); seconds"
    echo "# command: bench/collsim_check.sh $ARGS"
    echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "# veth: tbf rate $VETH_RATE burst $VETH_BURST on both ends, no delay (no netem); namespace A on core 0, B on core 1"
    echo "# cal NET CORES ALPHA BETA GAMMA: baton tune's TCP step (one-way 8 B and 4 MiB ping-pong, a 4 MiB sum)"
    echo "# pp NET CORES BYTES SECONDS: one-way time of a 2-rank ping-pong (exchange_bench --op sendrecv -n 7 -w 1, median)"
    echo "# step lo N PATTERN BYTES SECONDS [CPU]: bench/step_bench over loopback, N ranks on the $(nproc) cores (unbound), -n 15 -w 3 (256 MiB: -n 3 -w 1): pairs, one exchange with rank^1 after a barrier (send and receive at once), the largest of the ranks' medians, then [CPU] the CPU time of a rank's process in it (the median per rank, the mean over the ranks); ring, one hop of a token going round (median round / N)"
    echo "# wake NET 2 DELAY SECONDS: bench/step_bench --pattern wake -b 4K -n 101 -w 5, 2 ranks (lo: unbound; veth: one in each namespace): the median one-way time when each rank works DELAY seconds before it replies"
    echo "# call lo 2 ALLREDUCE XFER: bench/step_bench --pattern call -n 301 -w 20, 2 ranks unbound: the median 1-element bt_allreduce and the median bare 4-byte exchange, seconds"
    echo "# veth_burst BYTES: the tbf burst (a message within it passes at the veth's own speed)"
    echo "# row NET N ALGO BYTES SECONDS RUNS: median over RUNS runs of each run's median"
} >"$T/head"
: >"$T/cal"
cal() { # NET CORES: baton tune's TCP step, 2 ranks
    local net=$1 cores=$2 pre=()
    rm -f "$T/tune.txt"
    [ "$net" = lo ] && [ "$cores" = 1 ] && pre=(taskset -c 0)
    if [ "$net" = lo ]; then
        BATON_TUNE_PHASE=tcp BATON_TRANSPORT=tcp "${pre[@]}" timeout 120 "$BUILD/baton" run -n 2 \
            -- "$PWD/$BUILD/baton" tune -o "$T/tune.txt" >/dev/null 2>"$T/err"
    else
        BATON_TUNE_PHASE=tcp BATON_TRANSPORT=tcp on veth 2 "$PWD/$BUILD/baton" tune -o "$T/tune.txt"
    fi
    [ -s "$T/tune.txt" ] || { echo "collsim_check.sh: tune on $net/$cores failed: $(tail -1 "$T/err")" >&2; return 1; }
    echo "cal $net $cores $(awk '/^tcp_alpha/{a=$2} /^tcp_beta/{b=$2} /^tcp_gamma/{g=$2} END{print a, b, g}' "$T/tune.txt")" | tee -a "$T/cal"
}
pp() { # NET CORES: 2-rank ping-pongs (exchange_bench --op sendrecv, bt_send/bt_recv) by size
    local net=$1 cores=$2 pre=()
    [ "$net" = lo ] && [ "$cores" = 1 ] && pre=(taskset -c 0)
    if [ "$net" = lo ]; then
        "${pre[@]}" timeout 120 "$BUILD/baton" run -n 2 --no-tag-output -- "$PWD/$BUILD/bench/exchange_bench" \
            --op sendrecv --backend tcp -b 4K -e "$maxb" -f 16 -n 7 -w 1 >"$T/out" 2>"$T/err"
    else
        on veth 2 "$PWD/$BUILD/bench/exchange_bench" --op sendrecv --backend tcp -b 4K -e "$maxb" \
            -f 16 -n 7 -w 1
    fi || { echo "collsim_check.sh: ping-pong on $net/$cores failed: $(tail -1 "$T/err")" >&2; return 1; }
    awk -v net="$net" -v c="$cores" '/^ +[0-9]+ / { print "pp", net, c, $1, $5 / 1e6 }' "$T/out" | tee -a "$T/cal"
}
step() { # PATTERN N: bench/step_bench over loopback, N ranks unbound; 4K .. 16M, then 256M
    local pat=$1 n=$2 lo=4K hi=16M it=15 w=3
    for pass in small big; do
        if [ $pass = big ]; then
            [ "$(numfmt --from=iec "$maxb")" -ge $((256 << 20)) ] || break
            lo=256M hi=256M it=3 w=1
        fi
        BATON_TRANSPORT=tcp timeout 120 "$BUILD/baton" run -n "$n" --no-tag-output -- \
            "$PWD/$BUILD/bench/step_bench" --pattern "$pat" -b $lo -e $hi -f 16 -n $it -w $w \
            >"$T/out" 2>"$T/err" ||
            { echo "collsim_check.sh: step_bench $pat n=$n failed: $(tail -1 "$T/err")" >&2; return 1; }
        awk -v n="$n" -v p="$pat" '/^[0-9]+ / { printf "step lo %s %s %s %g%s\n", n, p, $1, $2 / 1e6, (NF > 2 ? sprintf(" %g", $3 / 1e6) : "") }' "$T/out" | tee -a "$T/cal"
    done
}
wake() { # NET: bench/step_bench's wake ping-pong, 2 ranks (as the rows: unbound on loopback,
    # one in each namespace, on its own core, across the veth pair)
    local net=$1 cmd=("$PWD/$BUILD/bench/step_bench" --pattern wake -b 4K -n 101 -w 5)
    if [ "$net" = lo ]; then
        BATON_TRANSPORT=tcp timeout 60 "$BUILD/baton" run -n 2 --no-tag-output -- "${cmd[@]}" \
            >"$T/out" 2>"$T/err"
    else
        BATON_TRANSPORT=tcp on veth 2 "${cmd[@]}"
    fi || { echo "collsim_check.sh: step_bench wake on $net failed: $(tail -1 "$T/err")" >&2; return 1; }
    awk -v net="$net" '/^[0-9]+ / { print "wake", net, 2, $1 / 1e6, $2 / 1e6 }' "$T/out" | tee -a "$T/cal"
}
callcost() { # a collective call's own cost: a 1-element allreduce against its bare exchange
    BATON_TRANSPORT=tcp timeout 60 "$BUILD/baton" run -n 2 --no-tag-output -- \
        "$PWD/$BUILD/bench/step_bench" --pattern call -n 301 -w 20 >"$T/out" 2>"$T/err" ||
        { echo "collsim_check.sh: step_bench call failed: $(tail -1 "$T/err")" >&2; return 1; }
    awk '/^call / { print "call lo 2", $2 / 1e6, $3 / 1e6 }' "$T/out" | tee -a "$T/cal"
}
# the loopback calibration always (the model's CPU costs come from it), veth's when measured
cal lo 2 && cal lo 1 && pp lo 2 && pp lo 1
wake lo
callcost
for n in "${NS[@]}"; do step pairs "$n" && step ring "$n"; done
for net in "${NETS[@]}"; do
    [ "$net" = veth ] && cal veth 1 && pp veth 1 && echo "veth_burst $(numfmt --from=iec "$(tr a-z A-Z <<<"${VETH_BURST%b}")")" >>"$T/cal" && wake veth
done

CASES=(ring:allreduce rd:allreduce rabenseifner:allreduce tree:broadcast scatter_allgather:broadcast tree:reduce)
simname() { case "$1" in tree:broadcast) echo tree_bcast ;; scatter_allgather:*) echo sa_bcast ;;
    tree:reduce) echo tree_reduce ;; *) echo "${1%%:*}" ;; esac; }
: >"$T/runs"
start=$(date +%s)
# run NET N CASE MIN MAX: one allreduce_bench run, its rows into $T/runs
run() {
    local net=$1 n=$2 c=$3 algo=${3%%:*} op=${3#*:} rc
    BATON_ALGO=$algo on "$net" "$n" "$PWD/$B" --backend tcp --op "$op" -b "$4" -e "$5" -f 16 \
        -n 9 -w 1 -T 0.3 -s
    rc=$?
    if [ $rc != 0 ] || grep -qE '^ +[0-9]+ .* [1-9][0-9]*$' "$T/out"; then
        echo "collsim_check.sh: $net n=$n $c $4-$5 failed (exit $rc): $(tail -2 "$T/err" | tr '\n' ' ')" >&2
        echo "# failed: $net n=$n $c $4-$5 (exit $rc): $(tail -1 "$T/err")" >>"$T/failed"
        return
    fi
    awk -v net="$net" -v n="$n" -v a="$(simname "$c")" '/^ +[0-9]+ / { print net, n, a, $1, $5 / 1e6 }' \
        "$T/out" >>"$T/runs"
    printf '%s n=%s %-28s %s-%s done (%ds)\n' "$net" "$n" "$c" "$4" "$5" $(($(date +%s) - start)) >&2
}
list=()
for net in "${NETS[@]}"; do
    [ -n "$net" ] || continue
    for n in "${NS[@]}"; do
        for c in "${CASES[@]}"; do list+=("$net $n $c"); done
    done
done
k=${#list[@]} step=7
[ $((k % 7)) = 0 ] && step=1
: >"$T/failed"
# small ROUND: one round of 4 KiB .. 16 MiB (or --max, if smaller), in a rotated order
# (step prime to k).
small=16M
[ "$(numfmt --from=iec "$maxb")" -lt $((16 << 20)) ] && small=$maxb
small() {
    local i net n c
    for ((i = 0; i < k; i++)); do
        past && { echo "collsim_check.sh: --until $until reached; stopping" >&2; return 1; }
        read -r net n c <<<"${list[$((($1 * 5 + i * step) % k))]}"
        run "$net" "$n" "$c" 4K "$small"
    done
}
# big: 256 MiB once each, smallest n first.
big() {
    local i net n c
    for ((i = 0; i < k; i++)); do
        past && { echo "collsim_check.sh: --until $until reached; stopping" >&2; return 1; }
        read -r net n c <<<"$(printf '%s\n' "${list[@]}" | sort -k2,2n -s | sed -n "$((i + 1))p")"
        run "$net" "$n" "$c" 256M "$maxb"
    done
}
# Two rounds of the small sizes, then 256 MiB, then the other rounds, as long as --until allows.
[ $calonly = 1 ] && rounds=0
for ((round = 1; round <= rounds && round <= 2; round++)); do small $round || break; done
if [ $calonly = 0 ] && ! past && [ "$(numfmt --from=iec "$maxb")" -ge $((256 << 20)) ]; then big; fi
for ((round = 3; round <= rounds; round++)); do small $round || break; done
{
    cat "$T/head"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); measuring took $(($(date +%s) - start)) s"
    cat "$T/failed"
    echo "cores $(nproc)"
    echo "sockbuf $((2 * 2 * (4 << 20)))"
    cat "$T/cal"
    sort -k1,1 -k2,2n -k3,3 -k4,4n -k5,5g "$T/runs" | awk '
        function flush() { if (m) printf "row %s %.6g %d\n", key, (m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2), m; m = 0 }
        { k = $1 " " $2 " " $3 " " $4; if (k != key) { flush(); key = k }; v[++m] = $5 }
        END { flush() }'
} >"$OUTF"
echo "collsim_check.sh: wrote $OUTF ($(grep -c '^row' "$OUTF") rows)" >&2
