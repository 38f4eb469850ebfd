#!/usr/bin/env bash
# model_plot.sh: the cost model's predicted allreduce times (tests/progs/collsim) as the
# table of docs/collectives.md and the plot docs/img/allreduce_model.svg.
#
#   bench/model_plot.sh [TUNE_FILE]     default bench/devvm.tune (`baton tune` on the dev VM)
#
# Prints the table (simulated up to n = 1,024, formulas beyond) and writes the SVG: time per
# algorithm, the lower bound and baton's pick against size, one panel per n.
set -eu
cd "$(dirname "$0")/.."
out=${OUT:-docs/img/allreduce_model.svg}
term=${TERM_SPEC:-'svg size 1200,800 dynamic font "sans,11"'}
tune=${1:-bench/devvm.tune}
sim=${BUILD:-build}/tests/progs/collsim
dat=$(mktemp)
trap 'rm -f "$dat"' EXIT
"$sim" table --tune "$tune" --dat "$dat"
mkdir -p docs/img
gnuplot <<GP
set terminal $term
set output "$out"
set multiplot layout 2,2 title "baton allreduce, predicted (collsim, α β γ of $tune)"
set logscale xy
set format x "%.0s%cB"
set xlabel "bytes per rank"
set ylabel "seconds"
set key bottom right
do for [i in "0 2 3 4"] {
  idx = int(i)
  n = 64 * 4**idx
  set title sprintf("n = %d%s", n, n > 1024 ? " (formulas)" : " (simulated)")
  plot "$dat" index idx using 2:3 with linespoints title "ring", \
       "" index idx using 2:4 with linespoints title "recursive doubling", \
       "" index idx using 2:5 with linespoints title "Rabenseifner", \
       "" index idx using 2:8 with lines dashtype 3 title "hierarchical, 8 per node", \
       "" index idx using 2:6 with lines dashtype 2 lw 2 title "lower bound", \
       "" index idx using 2:7 with points pt 6 ps 1.5 title "baton's pick"
}
unset multiplot
GP
