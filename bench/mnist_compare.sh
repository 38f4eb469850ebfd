#!/usr/bin/env bash
# mnist_compare.sh: the example CNN trained by baton (examples/mnist, 2 ranks) and by PyTorch
# DDP over Gloo (bench/torch_mnist_cnn.py, 2 processes, 1 thread each), same model, recipe,
# batch 32 per rank, for a fixed number of steps; prints images/s of each and the ratio, plus
# baton's 1-rank figure and its 2-rank scaling efficiency (same per-rank batch).
#
#   bench/mnist_compare.sh [STEPS=300] [REPEATS=3]      (BUILD=build by default)
# Each figure is the median of REPEATS runs (the machine is shared and noisy: repeat).
set -uo pipefail
steps=${1:-300}
repeats=${2:-3}
build=${BUILD:-build}
mn=$build/examples/mnist_cnn
for f in "$mn" "$build/baton"; do
    [ -x "$f" ] || { echo "mnist_compare: $f not built; run make first" >&2; exit 2; }
done
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -1; }
median() { sort -n | awk '{v[NR]=$1} END {if (NR) print (NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

b2=() b1=() pt=()
for r in $(seq "$repeats"); do
    b2+=("$("$build/baton" run -n 2 -- "$mn" --max-steps "$steps" --no-checkpoint 2>&1 |
            grep 'final:' | field images_per_s)")
    b1+=("$("$mn" --max-steps "$steps" --no-checkpoint 2>&1 | grep 'final:' | field images_per_s)")
    pt+=("$(/usr/bin/python3 "$(dirname "$0")/torch_mnist_cnn.py" --nproc 2 --steps "$steps" 2>&1 |
            grep '^torch:' | field images_per_s)")
    echo "run $r: baton 2 ranks ${b2[-1]:-?}  baton 1 rank ${b1[-1]:-?}  torch DDP 2 procs ${pt[-1]:-?} images/s"
done
B2=$(printf '%s\n' "${b2[@]}" | median); B1=$(printf '%s\n' "${b1[@]}" | median)
PT=$(printf '%s\n' "${pt[@]}" | median)
printf '%-34s %10s\n' "median of $repeats, $steps steps" "images/s"
printf '%-34s %10s\n' "baton, 2 ranks x 1 thread" "$B2" "baton, 1 rank x 1 thread" "$B1" \
    "PyTorch DDP gloo, 2 procs x 1 thread" "$PT"
awk -v b2="$B2" -v b1="$B1" -v pt="$PT" 'BEGIN{
    if (pt > 0) printf "ratio baton / PyTorch: %.2fx\n", b2 / pt;
    if (b1 > 0) printf "2-rank scaling efficiency: %.0f%%\n", 100 * b2 / (2 * b1) }'
