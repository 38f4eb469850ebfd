#!/usr/bin/env bash
# t_bench.sh: bench/compare.sh runs every allreduce program it offers on one node and prints
# their table: baton shm and TCP, Open MPI at its defaults and over TCP, bt_allreduce on the Open
# MPI backend (baton_mpi) and Open MPI's MPI_Iallreduce + MPI_Test (mpi_nb), each result
# checked (#wrong 0), with the ratio rows; Open MPI run as `mpirun -np 2` runs it (nothing
# added but `--mca btl self,tcp` for mpi_tcp); --plot writes an SVG with a labelled line per
# program; --op alltoall, sendrecv and allgatherv run and check baton shm and Open MPI; an
# unknown program is one line and exit 2; overlap_bench runs and checks its results;
# bench/mnist_scaling.sh runs its three programs a round and prints every figure, and bad
# arguments or a missing build are one line and exit 2. The figures themselves are not judged here
# (docs/performance.md says how they are measured).
# timeout: 180
. "$(dirname "$0")/lib.sh"
cd "$BATON_SRC" || exit 1
# overlap_bench (no Open MPI needed): a row per size, every result checked, hidden a number
"$BATON_BUILD/baton" run -n 2 -- "$BATON_BUILD/bench/overlap_bench" -b 64K -e 1M -f 4 -n 3 -w 1 \
    >"$T_TMP/o.out" 2>"$T_TMP/o.err"
t_expect_eq "overlap_bench: exit 0" "$?" 0
t_expect_eq "overlap_bench: 3 sizes, each with its times and hidden fraction, #wrong 0" \
    "$(grep -cE '^\[0\] +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +-?[0-9.]+ +0$' "$T_TMP/o.out")" 3
"$BATON_BUILD/bench/overlap_bench" -b 1M -e 64K >"$T_TMP/o.out" 2>"$T_TMP/o.err"
t_expect_eq "overlap_bench: a bad range is exit 2" "$?" 2
# mnist_scaling.sh: 1 rank, the control pair and the 2-rank job each print images/s
BUILD=$BATON_BUILD timeout 60 bench/mnist_scaling.sh 20 1 >"$T_TMP/s.out" 2>"$T_TMP/s.err"
t_expect_eq "mnist_scaling.sh: exit 0" "$?" 0
t_grep "mnist_scaling.sh: a round with the four runs' images/s and its three ratios" \
    '^round 1: 1 rank [0-9]+  2 ranks [0-9]+  control [0-9]+ \+ [0-9]+ images/s; scaling [0-9.]+%  control [0-9.]+%  lockstep [0-9.]+%$' \
    "$T_TMP/s.out"
t_expect_eq "mnist_scaling.sh: six summary lines, each a median (min-max)" \
    "$(grep -cE '^  [a-z0-9, -]+ +[0-9]+ \([0-9]+-[0-9]+\) (images/s|%)$' "$T_TMP/s.out")" 6
bench/mnist_scaling.sh 20 x >"$T_TMP/s.out" 2>"$T_TMP/s.err"
t_expect_eq "mnist_scaling.sh: a bad ROUNDS is one line and exit 2" "$? $(wc -l <"$T_TMP/s.err")" "2 1"
BUILD=$T_TMP/nosuch bench/mnist_scaling.sh 20 1 >"$T_TMP/s.out" 2>"$T_TMP/s.err"
t_expect_eq "mnist_scaling.sh: no build is exit 2 naming what is missing" \
    "$? $(grep -c 'nosuch/examples/mnist_cnn not built' "$T_TMP/s.err")" "2 1"
if ! command -v mpirun >/dev/null || [ ! -x "$BATON_BUILD/bench/mpi_allreduce_bench" ]; then
    t_skip "bench/compare.sh" "no mpirun or no mpi_allreduce_bench"
    t_done
fi
BUILD=$BATON_BUILD timeout 150 bench/compare.sh -r 2 -p baton_shm,baton_tcp,mpi,mpi_tcp,baton_mpi,mpi_nb \
    --plot "$T_TMP/c.svg" -- -b 4K -e 64K -f 16 -n 3 -w 1 >"$T_TMP/c.out" 2>"$T_TMP/c.err"
t_expect_eq "compare.sh: exit 0" "$?" 0
# Fair by default: Open MPI as `mpirun -np 2` runs it (its binding, its allocator), no tuning.
t_grep "Open MPI runs at its defaults: mpirun -np 2, nothing added" \
    "^== mpi: mpirun -np 2 (--allow-run-as-root )?[^ ]*/mpi_allreduce_bench -b 4K" "$T_TMP/c.out"
t_grep "Open MPI TCP adds only --mca btl self,tcp" \
    "^== mpi_tcp: mpirun -np 2 (--allow-run-as-root )?--mca btl self,tcp [^ ]*/mpi_allreduce_bench -b 4K" \
    "$T_TMP/c.out"
if command -v gnuplot >/dev/null; then
    t_expect_eq "--plot: an SVG with one line per program in each of its two plots, labelled" \
        "$(grep -cE '<title>(baton shm|baton TCP|Open MPI \(defaults\)|Open MPI TCP \(defaults\)|baton on Open MPI|Open MPI MPI_Iallreduce\+MPI_Test)</title>' "$T_TMP/c.svg")" 12
else
    t_skip "--plot: an SVG with one line per program" "no gnuplot (make deps installs gnuplot-nox)"
fi
raw=$(sed -n 's/^(raw outputs in \(.*\))$/\1/p' "$T_TMP/c.out")
t_expect_eq "every program's rounds checked their results: 12 runs x 2 sizes, #wrong 0" \
    "$(cat "$raw"/*.txt 2>/dev/null | awk '$1 ~ /^[0-9]+$/ && NF >= 8 && $NF == 0' | wc -l)" 24
t_grep "the table has a column per program" \
    '^\| bytes \| baton shm \| baton TCP \| Open MPI \(defaults\) \| Open MPI TCP \(defaults\) \| baton on Open MPI \| Open MPI MPI_Iallreduce\+MPI_Test \|$' "$T_TMP/c.out"
t_grep "the ratio table holds baton on Open MPI against both Open MPI programs" \
    '^\| bytes \|.*baton on Open MPI / Open MPI \(defaults\) \| baton on Open MPI / Open MPI MPI_Iallreduce\+MPI_Test \|$' "$T_TMP/c.out"
t_expect_eq "two sizes in each table" "$(grep -c '^| [46]' "$T_TMP/c.out")" 4
rm -rf "$raw"
# The exchange collectives' programs (issue 14's alltoall/ping-pong/allgatherv tables).
for op in alltoall sendrecv allgatherv; do
    BUILD=$BATON_BUILD timeout 100 bench/compare.sh --op $op -r 1 -p baton_shm,mpi \
        -- -b 4K -e 16K -f 4 -n 3 -w 1 >"$T_TMP/$op.out" 2>&1
    raw=$(sed -n 's/^(raw outputs in \(.*\))$/\1/p' "$T_TMP/$op.out")
    t_expect_eq "--op $op: baton shm and Open MPI checked their results, 2 sizes, #wrong 0" \
        "$(cat "$raw"/*.txt 2>/dev/null | awk '$1 ~ /^[0-9]+$/ && NF >= 8 && $NF == 0' | wc -l)" 4
    [ -n "$raw" ] && rm -rf "$raw"
done
bench/compare.sh -p nosuch >"$T_TMP/u.out" 2>"$T_TMP/u.err"
t_expect_eq "unknown program: exit 2" "$?" 2
t_expect_eq "unknown program: one line naming it" \
    "$(wc -l <"$T_TMP/u.err") $(grep -c "unknown program 'nosuch'" "$T_TMP/u.err")" "1 1"
t_done
