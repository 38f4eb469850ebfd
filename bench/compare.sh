#!/usr/bin/env bash
# compare.sh: baton's allreduce next to Open MPI's and Gloo's, 2 ranks, each run the way its
# users run it, interleaved, with medians and spreads.
#
#   bench/compare.sh [--op OP] [-r ROUNDS] [-p PROGRAMS] [--tuned] [--veth] [--plot FILE.svg]
#                    [-- BENCH ARGS]
#       OP        allreduce (default: allreduce_bench, mpi_allreduce_bench), or alltoall,
#                 sendrecv (ping-pong between ranks 0 and 1) or allgatherv (exchange_bench,
#                 mpi_exchange_bench; programs baton_shm baton_tcp mpi mpi_tcp and the tuned
#                 ones, no Gloo; default BENCH ARGS -b 4K -e 64M -f 4 -n 20 -w 5)
#       ROUNDS    rounds of every program, interleaved A B C A B C ... (default 5)
#       PROGRAMS  comma list from: baton_shm baton_tcp mpi mpi_tcp gloo (default: all five), and
#                 baton_tcp_bound (baton_tcp with --bind core: each rank pinned to its share of
#                 the cores, as mpirun pins by default; baton run does not), and baton_mpi
#                 (--op allreduce: allreduce_bench under `mpirun -np 2`, so bt_allreduce runs on
#                 libbaton's Open MPI backend: the wrapper's overhead against "mpi"),
#                 baton_mpi_poll (the same with BATON_MPI_POLL=1: the backend's MPI_I* calls,
#                 polled), and mpi_nb (--op allreduce: Open MPI's MPI_Iallreduce polled with
#                 MPI_Test, as that backend calls it with BATON_MPI_POLL=1, without baton)
#       --tuned   also run Open MPI tuned (labelled as such): --bind-to none and glibc's mmap
#                 threshold off (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296)
#       --veth    two emulated hosts instead of loopback: network namespaces joined by a veth
#                 pair (198.51.100.1 and .2) with a tbf rate limit (VETH_RATE, default 10gbit),
#                 each side pinned to its own core (taskset); programs baton_tcp, mpi_tcp, gloo.
#                 Open MPI runs with --bind-to none there: both emulated hosts see the same
#                 cores, so its default (bind to the first core) would put both ranks on core 0,
#                 which no two real hosts do. Gloo gets GLOO_SOCKET_IFNAME=bceth0 (both emulated
#                 hosts share one hostname, which resolves to 127.0.0.1, Gloo's default address).
#                 This VM's kernel has no netem, so no added delay.
#       --plot    writes busbw and time against size (log axes, one line per program) with
#                 gnuplot (Debian's gnuplot-nox)
#       BENCH ARGS  nccl-tests flags for every program (default -b 4K -e 256M -f 4 -n 20 -w 5)
#   BUILD=build/x bench/compare.sh -r 3 -- -b 64M -e 64M
#
# The baselines are fair by default: Open MPI is `mpirun -np 2` with its default binding
# (to cores) and its own transport choice (vader on one node); "mpi_tcp" only adds
# `--mca btl self,tcp`, which is how a user forces TCP. Gloo is torch.distributed's defaults.
# (--allow-run-as-root is added when run as root: mpirun refuses root without it.)
# Every program checks its result (#wrong column); a run with #wrong > 0 is reported.
# Prints per size and program the median busbw (GB/s) with the min-max over rounds, the
# median time, and baton's ratios (median of the per-round ratios).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
rounds=5 programs="" tuned=0 plot="" veth=0 op=allreduce
while [ $# -gt 0 ]; do
    case "$1" in
    -r) rounds=${2:?-r needs a count}; shift 2 ;;
    -p) programs=${2:?-p needs a list}; shift 2 ;;
    --tuned) tuned=1; shift ;;
    --veth) veth=1; shift ;;
    --plot) plot=${2:?--plot needs a file}; shift 2 ;;
    --) shift; break ;;
    --op) op=${2:?--op needs allreduce, alltoall, sendrecv or allgatherv}; shift 2 ;;
    -h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
    esac
done
case "$rounds" in '' | *[!0-9]* | 0) echo "compare.sh: -r wants a positive count, not '$rounds'" >&2; exit 2 ;; esac
ARGS=("$@")
case "$op" in
allreduce) BENCH=$BUILD/bench/allreduce_bench M=$BUILD/bench/mpi_allreduce_bench OPARGS=() ;;
alltoall | sendrecv | allgatherv)
    BENCH=$BUILD/bench/exchange_bench M=$BUILD/bench/mpi_exchange_bench OPARGS=(--op "$op")
    [ ${#ARGS[@]} -eq 0 ] && ARGS=(-b 4K -e 64M -f 4 -n 20 -w 5)
    [ -z "$programs" ] && programs="baton_shm,baton_tcp,mpi,mpi_tcp"
    [ "$veth" = 1 ] && { echo "compare.sh: --veth runs --op allreduce only" >&2; exit 2; } ;;
*) echo "compare.sh: --op is allreduce, alltoall, sendrecv or allgatherv, not '$op'" >&2; exit 2 ;;
esac
[ ${#ARGS[@]} -eq 0 ] && ARGS=(-b 4K -e 256M -f 4 -n 20 -w 5)
if [ -z "$programs" ]; then
    programs="baton_shm,baton_tcp,mpi,mpi_tcp,gloo"
    [ "$veth" = 1 ] && programs="baton_tcp,mpi_tcp,gloo"
fi
[ "$tuned" = 1 ] && [ "$veth" = 0 ] && programs="$programs,mpi_tuned,mpi_tcp_tuned"

for f in "$BUILD/baton" "$BENCH"; do
    [ -x "$f" ] || { echo "compare.sh: $f is missing; run make BUILD=$BUILD first" >&2; exit 2; }
done
MPIRUN=(mpirun -np 2)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
TUNED=(--bind-to none -x MALLOC_MMAP_MAX_=0 -x MALLOC_TRIM_THRESHOLD_=4294967296)
have_mpi=0 have_gloo=0
[ -x "$M" ] && command -v mpirun >/dev/null && have_mpi=1
/usr/bin/python3 -c 'import torch.distributed' 2>/dev/null && have_gloo=1

cmd_of() { # program -> its command line in CMD
    case "$1" in
    baton_shm) CMD=("$BUILD/baton" run -n 2 --no-tag-output -- "$BENCH" --backend shm "${OPARGS[@]}") ;;
    baton_tcp) CMD=("$BUILD/baton" run -n 2 --no-tag-output -- "$BENCH" --backend tcp "${OPARGS[@]}") ;;
    baton_tcp_bound) CMD=("$BUILD/baton" run -n 2 --bind core --no-tag-output -- "$BENCH" --backend tcp "${OPARGS[@]}") ;;
    mpi) CMD=("${MPIRUN[@]}" "$M" "${OPARGS[@]}") ;;
    baton_mpi) [ "$op" = allreduce ] || { echo "compare.sh: baton_mpi runs --op allreduce only" >&2; exit 2; }
               CMD=("${MPIRUN[@]}" "$BENCH") ;;
    baton_mpi_poll) [ "$op" = allreduce ] || { echo "compare.sh: baton_mpi_poll runs --op allreduce only" >&2; exit 2; }
                    CMD=("${MPIRUN[@]}" -x BATON_MPI_POLL=1 "$BENCH") ;;
    mpi_nb) [ "$op" = allreduce ] || { echo "compare.sh: mpi_nb runs --op allreduce only" >&2; exit 2; }
            CMD=("${MPIRUN[@]}" "$M" -i) ;;
    mpi_tcp) CMD=("${MPIRUN[@]}" --mca btl self,tcp "$M" "${OPARGS[@]}") ;;
    mpi_tuned) CMD=("${MPIRUN[@]}" "${TUNED[@]}" "$M" "${OPARGS[@]}") ;;
    mpi_tcp_tuned) CMD=("${MPIRUN[@]}" --mca btl self,tcp "${TUNED[@]}" "$M" "${OPARGS[@]}") ;;
    gloo) [ "$op" = allreduce ] || { echo "compare.sh: gloo runs --op allreduce only" >&2; exit 2; }
          CMD=("$BUILD/baton" run -n 2 --no-tag-output -- /usr/bin/python3 bench/gloo_allreduce_bench.py) ;;
    *) echo "compare.sh: unknown program '$1' (baton_shm baton_tcp baton_tcp_bound baton_mpi baton_mpi_poll mpi mpi_nb mpi_tcp gloo mpi_tuned mpi_tcp_tuned)" >&2
       exit 2 ;;
    esac
}
list=()
IFS=, read -ra want <<<"$programs"
for p in "${want[@]}"; do
    cmd_of "$p"
    case "$p" in
    mpi*|baton_mpi*) [ $have_mpi = 1 ] || { echo "== $p: skipped (no mpirun or no $M)"; continue; } ;;
    gloo) [ $have_gloo = 1 ] || { echo "== gloo: skipped (no torch under /usr/bin/python3)"; continue; } ;;
    esac
    list+=("$p")
    echo "== $p: ${CMD[*]} ${ARGS[*]}"
done
OUT=$(mktemp -d /tmp/baton-compare.XXXXXX) # after the checks that exit 2: none left behind

# --veth: two namespaces, one veth pair, a rate limit; removed on exit.
NSA=bcmpa$$ NSB=bcmpb$$
VETH_RATE=${VETH_RATE:-10gbit} VETH_BURST=4mb
. bench/veth.sh
veth_down() { ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null; rm -f "$OUT/rsh"; }
two_nodes() { # output file, program... : node 0 in NSA on core 0, node 1 in NSB on core 1
    local out=$1 port; shift
    port=$((20000 + RANDOM % 9000))
    ip netns exec $NSB taskset -c 1 "$BUILD/baton" run --nnodes 2 --node-rank 1 \
        --rdzv 198.51.100.1:$port -n 1 --no-tag-output -- "$@" >/dev/null 2>"$out.node1" &
    local pid=$!
    ip netns exec $NSA taskset -c 0 "$BUILD/baton" run --nnodes 2 --node-rank 0 \
        --rdzv 198.51.100.1:$port -n 1 --no-tag-output -- "$@" >"$out"
    local rc=$?
    wait $pid || rc=$?
    return $rc
}
if [ "$veth" = 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "compare.sh: --veth needs root (ip netns)" >&2; exit 2; }
    trap veth_down EXIT
    veth_up || { echo "compare.sh: could not create the namespaces and veth pair (see above)" >&2; exit 1; }
    printf '#!/bin/sh\nhost=$1; shift\ncase "$host" in 198.51.100.2) ns=%s cpu=1 ;; *) ns=%s cpu=0 ;; esac\nexec ip netns exec "$ns" taskset -c $cpu sh -c "$*"\n' \
        $NSB $NSA >"$OUT/rsh"
    chmod +x "$OUT/rsh"
    echo "== veth: $NSA 198.51.100.1 (core 0) <-> $NSB 198.51.100.2 (core 1), tbf $VETH_RATE"
fi
run_prog() { # program, round
    local p=$1 f=$OUT/$1.$2.txt
    if [ "$veth" = 1 ]; then
        case "$p" in
        baton_tcp) two_nodes "$f" "$BUILD/bench/allreduce_bench" --backend tcp "${ARGS[@]}" ;;
        gloo) GLOO_SOCKET_IFNAME=bceth0 two_nodes "$f" /usr/bin/python3 bench/gloo_allreduce_bench.py "${ARGS[@]}" ;;
        mpi_tcp)
            OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ip netns exec $NSA taskset -c 0 \
                mpirun -np 2 --bind-to none --host 198.51.100.1,198.51.100.2 \
                --mca plm_rsh_agent "$OUT/rsh" --mca btl self,tcp \
                --mca btl_tcp_if_include 198.51.100.0/24 --mca oob_tcp_if_include 198.51.100.0/24 \
                "$PWD/$M" "${ARGS[@]}" >"$f" ;;
        *) echo "compare.sh: $p does not run with --veth (baton_tcp mpi_tcp gloo)" >&2; return 2 ;;
        esac
    else
        cmd_of "$p"
        "${CMD[@]}" "${ARGS[@]}" >"$f"
    fi
}

for r in $(seq "$rounds"); do
    for p in "${list[@]}"; do
        if ! run_prog "$p" "$r" 2>"$OUT/$p.$r.err"; then
            echo "   round $r $p FAILED: $(tail -3 "$OUT/$p.$r.err" | tr '\n' ' ')"
        fi
    done
    echo "   round $r of $rounds done ($(cut -d' ' -f1 /proc/loadavg) load)"
done
COMPARE_VETH=$veth COMPARE_OP=$op /usr/bin/python3 bench/compare_table.py "$OUT" "$rounds" "${plot:-}" "${list[@]}"
echo "(raw outputs in $OUT)"
