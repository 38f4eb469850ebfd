#!/usr/bin/env bash
# tcp_profile.sh: where an allreduce over TCP spends, per op, in figures that depend little on
# how busy the machine is: CPU time and context switches of the ranks (the benches' -c line)
# and system calls by name (strace -c), for baton and Open MPI at their defaults.
#
#   bench/tcp_profile.sh [-s SIZE] [-p PROGRAMS] [-n ITERS] [--no-strace]
#       SIZE      message size, nccl-tests syntax (default 64M)
#       PROGRAMS  comma list from: baton_tcp baton_tcp_bound mpi_tcp (default: all three);
#                 baton_tcp_bound is baton_tcp under `baton run --bind core` (mpirun binds by
#                 default, baton run does not)
#       ITERS     timed iterations (default 20)
#   BUILD=build/x bench/tcp_profile.sh -s 1M -n 200
#
# 2 ranks, float32 sum, in place, over loopback; Open MPI as `mpirun -np 2 --mca btl self,tcp`
# (its default binding to cores). CPU: user and system time and context switches over the
# timed ops, summed over both ranks (allreduce_bench -c, mpi_allreduce_bench -c). Open MPI
# polls while it waits, so its CPU time is about its wall time times two. System calls: strace
# -f -c of the whole run (launcher or mpirun included) with -n 2 and with -n 2+ITERS; the
# difference divided by ITERS, so start-up, warm-up and the checked run cancel out.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
size=64M programs="baton_tcp,baton_tcp_bound,mpi_tcp" iters=20 st=1
while [ $# -gt 0 ]; do
    case "$1" in
    -s) size=${2:?-s needs a size}; shift 2 ;;
    -p) programs=${2:?-p needs a list}; shift 2 ;;
    -n) iters=${2:?-n needs a count}; shift 2 ;;
    --no-strace) st=0; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tcp_profile.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "$iters" in '' | *[!0-9]* | 0) echo "tcp_profile.sh: -n wants a positive count" >&2; exit 2 ;; esac
MPIRUN=(mpirun -np 2)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
OUT=$(mktemp -d /tmp/baton-tcpprof.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

cmd_of() { # program -> CMD
    case "$1" in
    baton_tcp) CMD=("$BUILD/baton" run -n 2 --no-tag-output -- "$BUILD/bench/allreduce_bench" --backend tcp) ;;
    baton_tcp_bound) CMD=("$BUILD/baton" run -n 2 --bind core --no-tag-output -- "$BUILD/bench/allreduce_bench" --backend tcp) ;;
    mpi_tcp) CMD=("${MPIRUN[@]}" --mca btl self,tcp "$BUILD/bench/mpi_allreduce_bench") ;;
    *) echo "tcp_profile.sh: unknown program '$1' (baton_tcp baton_tcp_bound mpi_tcp)" >&2; exit 2 ;;
    esac
}

calls() { # strace -c file -> "name calls errors" per line
    awk '$1 ~ /^[0-9.]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" {
        print $NF, $4, (NF == 6 ? $5 : 0) }' "$1" | sort
}

IFS=, read -ra want <<<"$programs"
echo "# tcp_profile: $size, 2 ranks, float32 sum, in place, -n $iters; load $(cut -d' ' -f1-3 /proc/loadavg)"
for p in "${want[@]}"; do
    cmd_of "$p"
    "${CMD[@]}" -b "$size" -e "$size" -n "$iters" -w 2 -c >"$OUT/$p.txt" 2>&1 ||
        { echo "$p: failed: $(tail -2 "$OUT/$p.txt")"; continue; }
    echo "$p: $(awk '$1 ~ /^[0-9]+$/ { printf "%s us per op (median), busbw %s GB/s", $5, $7 }' "$OUT/$p.txt")"
    sed -n 's/^# cpu *[0-9]* B: /    /p' "$OUT/$p.txt"
    [ "$st" = 1 ] || continue
    strace -f -qq -c -o "$OUT/$p.a" "${CMD[@]}" -b "$size" -e "$size" -n 2 -w 1 >/dev/null 2>&1
    strace -f -qq -c -o "$OUT/$p.b" "${CMD[@]}" -b "$size" -e "$size" -n $((2 + iters)) -w 1 >/dev/null 2>&1
    join -a2 -e 0 -o 0,1.2,2.2,1.3,2.3 <(calls "$OUT/$p.a") <(calls "$OUT/$p.b") |
        awk -v n="$iters" '{ d = ($3 - $2) / n; e = ($5 - $4) / n
               if (d >= 0.05) { line = line sprintf(" %s %.1f", $1, d); if (e >= 0.05) line = line sprintf(" (%.1f EAGAIN/errors)", e) }
               t += d }
               END { printf "    system calls per op: %.1f:%s\n", t, line }'
done
