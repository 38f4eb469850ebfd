#!/usr/bin/env bash
# compare.sh: baton's allreduce next to Open MPI's and Gloo's, 2 ranks on this machine.
#
#   bench/compare.sh [BENCH ARGS]        (default: -b 4K -e 256M -f 4 -n 20 -w 5)
#   BUILD=build/x bench/compare.sh -b 64M -e 64M
#
# Runs, one after the other: baton over shm and over TCP (build/bench/allreduce_bench under
# `baton run -n 2`), Open MPI's MPI_Allreduce (build/bench/mpi_allreduce_bench) over shared
# memory (--mca btl self,vader) and over TCP (--mca btl self,tcp), each twice: with defaults
# and with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296 (which removes glibc's
# mmap/munmap of Open MPI's large temporary buffers, a page-fault cliff on this VM), and
# PyTorch Gloo (bench/gloo_allreduce_bench.py). Every program checks its results (#wrong).
# Prints each table, then per size the busbw of each and baton's ratio to the baselines
# (shm vs MPI shm with mmap disabled; tcp vs MPI tcp with mmap disabled and vs Gloo).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(-b 4K -e 256M -f 4 -n 20 -w 5)
OUT=$(mktemp -d /tmp/baton-compare.XXXXXX)
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none)
NOMMAP=(-x MALLOC_MMAP_MAX_=0 -x MALLOC_TRIM_THRESHOLD_=4294967296)

for f in "$BUILD/baton" "$BUILD/bench/allreduce_bench"; do
    [ -x "$f" ] || { echo "compare.sh: $f is missing; run make BUILD=$BUILD first" >&2; exit 2; }
done

run() { # name, command...
    local name=$1; shift
    echo "== $name: $*"
    if ! timeout 900 "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"; then
        echo "   FAILED (exit $?): $(tail -3 "$OUT/$name.err" | tr '\n' ' ')"
    fi
    cat "$OUT/$name.txt"
}

run baton_shm "$BUILD/baton" run -n 2 --no-tag-output -- "$BUILD/bench/allreduce_bench" \
    --backend shm "${ARGS[@]}"
run baton_tcp "$BUILD/baton" run -n 2 --no-tag-output -- "$BUILD/bench/allreduce_bench" \
    --backend tcp "${ARGS[@]}"
if [ -x "$BUILD/bench/mpi_allreduce_bench" ] && command -v mpirun >/dev/null; then
    M=$BUILD/bench/mpi_allreduce_bench
    run mpi_shm "${MPI[@]}" --mca btl self,vader "$M" "${ARGS[@]}"
    run mpi_shm_nommap "${MPI[@]}" --mca btl self,vader "${NOMMAP[@]}" "$M" "${ARGS[@]}"
    run mpi_tcp "${MPI[@]}" --mca btl self,tcp "$M" "${ARGS[@]}"
    run mpi_tcp_nommap "${MPI[@]}" --mca btl self,tcp "${NOMMAP[@]}" "$M" "${ARGS[@]}"
else
    echo "== Open MPI: skipped (no mpirun or no $BUILD/bench/mpi_allreduce_bench)"
fi
if /usr/bin/python3 -c 'import torch.distributed' 2>/dev/null; then
    run gloo "$BUILD/baton" run -n 2 --no-tag-output -- /usr/bin/python3 \
        bench/gloo_allreduce_bench.py "${ARGS[@]}"
else
    echo "== Gloo: skipped (no torch under /usr/bin/python3)"
fi

# size -> busbw of each run, then the ratios.
echo
echo "busbw in GB/s (time in us); ratio = baton / baseline"
awk -v dir="$OUT" '
function load(name,   f, line, a) {
    f = dir "/" name ".txt"
    while ((getline line < f) > 0) {
        if (line ~ /^ *#/ || split(line, a, " ") < 8) continue
        bw[name, a[1]] = a[7]; us[name, a[1]] = a[5]; sizes[a[1]] = 1
    }
    close(f)
}
function cell(name, s) { return ((name, s) in bw) ? sprintf("%7.2f (%8.1f)", bw[name, s], us[name, s]) : sprintf("%18s", "-") }
function ratio(a, b, s) { return ((a, s) in bw && (b, s) in bw && bw[b, s] > 0) ? sprintf("%6.2fx", bw[a, s] / bw[b, s]) : sprintf("%7s", "-") }
BEGIN {
    n = split("baton_shm mpi_shm mpi_shm_nommap baton_tcp mpi_tcp mpi_tcp_nommap gloo", names, " ")
    for (i = 1; i <= n; i++) load(names[i])
    printf "%10s %18s %18s %18s %8s | %18s %18s %18s %18s %8s %8s\n", "bytes", "baton shm", \
        "mpi shm", "mpi shm nommap", "ratio", "baton tcp", "mpi tcp", "mpi tcp nommap", \
        "gloo", "vs mpi", "vs gloo"
    m = 0
    for (s in sizes) order[++m] = s + 0
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (order[j] < order[i]) { t = order[i]; order[i] = order[j]; order[j] = t }
    for (i = 1; i <= m; i++) {
        s = order[i]
        printf "%10d %s %s %s %8s | %s %s %s %s %8s %8s\n", s, cell("baton_shm", s), \
            cell("mpi_shm", s), cell("mpi_shm_nommap", s), ratio("baton_shm", "mpi_shm_nommap", s), \
            cell("baton_tcp", s), cell("mpi_tcp", s), cell("mpi_tcp_nommap", s), cell("gloo", s), \
            ratio("baton_tcp", "mpi_tcp_nommap", s), ratio("baton_tcp", "gloo", s)
    }
}'
echo "(raw outputs in $OUT)"
