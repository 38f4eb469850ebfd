#!/usr/bin/env bash
# torch_compare.sh: PyTorch over the "baton" backend against PyTorch over gloo, in one run,
# interleaved, 2 ranks under `baton run`:
#   1. torch.distributed.all_reduce busbw and latency, 4 KiB ... 256 MiB (float32 sum, in
#      place): bench/torch_allreduce_bench.py, which alternates the two backends round by round
#      inside one job (median of ROUNDS rounds, min-max);
#   2. images/s of the same PyTorch DDP CNN script (bench/torch_mnist_cnn.py) with
#      --backend baton and --backend gloo, alternated REPEATS times (A B A B ...): median,
#      min-max and the ratio.
#
#   bench/torch_compare.sh [ROUNDS=5] [REPEATS=3] [STEPS=300]      (BUILD=build by default)

set -uo pipefail
rounds=${1:-5}
repeats=${2:-3}
steps=${3:-300}
build=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$build/python/baton/_torch.so" ] || {
    echo "torch_compare: $build/python/baton/_torch.so not built (make; see its torch line)" >&2
    exit 2
}
export PYTHONPATH=$PWD/$build/python${PYTHONPATH:+:$PYTHONPATH} PYTHON_EXEC=/usr/bin/python3
baton=$build/baton
echo "== all_reduce through torch.distributed, 2 ranks (median of $rounds interleaved rounds)"
"$baton" run -n 2 --no-tag-output "$here/torch_allreduce_bench.py" -b 4K -e 256M --rounds "$rounds" |
    tee /tmp/torch_compare.$$.ar
awk '$3 == "baton" || $3 == "gloo" { t[$1, $3] = $4 }
     END {
       for (s = 4096; s <= 268435456; s *= 4) {
         k = sprintf("%d", s)
         if (t[k, "gloo"] > 0)
           printf "%12s B: baton/gloo time %.3fx, busbw %.2fx\n", k, t[k, "baton"] / t[k, "gloo"],
                  t[k, "gloo"] / t[k, "baton"] } }' /tmp/torch_compare.$$.ar
rm -f /tmp/torch_compare.$$.ar

echo "== DDP CNN (bench/torch_mnist_cnn.py, $steps steps, batch 32 per rank), $repeats x (baton, gloo)"
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -1; }
stats() { sort -n | awk '{v[NR]=$1} END {if (NR) printf "%s %s %s\n", (NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2), v[1], v[NR]}'; }
b=() g=()
for r in $(seq "$repeats"); do
    for be in baton gloo; do
        v=$("$baton" run -n 2 "$here/torch_mnist_cnn.py" --backend $be --steps "$steps" 2>&1 |
            grep 'torch:' | field images_per_s)
        if [ $be = baton ]; then b+=("${v:-0}"); else g+=("${v:-0}"); fi
    done
    echo "run $r: baton ${b[-1]}  gloo ${g[-1]} images/s"
done
read -r bm blo bhi < <(printf '%s\n' "${b[@]}" | stats)
read -r gm glo ghi < <(printf '%s\n' "${g[@]}" | stats)
printf 'DDP images/s, median (min-max): baton %s (%s-%s), gloo %s (%s-%s), ratio %s\n' \
    "$bm" "$blo" "$bhi" "$gm" "$glo" "$ghi" "$(awk -v a="$bm" -v b="$gm" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
