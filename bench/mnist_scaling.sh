#!/usr/bin/env bash
# mnist_scaling.sh: the example CNN's 1 -> 2 rank scaling efficiency, with a control.
#
#   bench/mnist_scaling.sh [STEPS=600] [ROUNDS=5]      (BUILD=build by default)
#
# Each round runs, in alternating order (odd rounds 1 2 C, even rounds C 2 1):
#   1  one rank alone:        build/examples/mnist_cnn --max-steps STEPS --no-checkpoint
#   2  the 2-rank job:        build/baton run -n 2 -- (the same)
#   C  the control: two 1-rank trainers started together, with no communication at all
# and prints their images/s (the `final:` line), the round's scaling (2-rank / (2 x 1-rank))
# and the control's ((a + b) / (2 x 1-rank)): what the machine gave two independent trainers
# in the same minute; and the control's lockstep figure (2 x min(a, b) / (2 x 1-rank)): a
# 2-rank data-parallel job waits for its slower rank every step, so when the host slows one
# vCPU for a while the job runs at that vCPU's pace (whole-run minimum; per step it is worse).
# The summary is the median (min-max) of the per-round figures. Same
# per-rank batch (32) in all; the machine is shared and noisy: repeat, and read the scaling
# beside the control.
set -uo pipefail
steps=${1:-600}
rounds=${2:-5}
build=${BUILD:-build}
mn=$build/examples/mnist_cnn
for f in "$mn" "$build/baton"; do
    [ -x "$f" ] || { echo "mnist_scaling: $f not built; run make first" >&2; exit 2; }
done
case "$steps$rounds" in *[!0-9]*|'') echo "mnist_scaling: STEPS and ROUNDS are numbers" >&2; exit 2;; esac
field() { sed -n 's/.*final:.*images_per_s=\([0-9.]*\).*/\1/p' | tail -1; }
stats() { sort -n | awk '{v[NR]=$1} END {if (!NR) {print "?"; exit}
    m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.0f (%.0f-%.0f)\n", m, v[1], v[NR]}'; }
one() { "$mn" --max-steps "$steps" --no-checkpoint 2>&1 | field; }
two() { "$build/baton" run -n 2 -- "$mn" --max-steps "$steps" --no-checkpoint 2>&1 | field; }
ctl() {
    local ta tb
    ta=$(mktemp) tb=$(mktemp)
    one >"$ta" & local pa=$!
    one >"$tb" & local pb=$!
    wait "$pa" "$pb"
    echo "$(cat "$ta") $(cat "$tb")"
    rm -f "$ta" "$tb"
}
s1=() s2=() sc=() eff=() effc=() effl=()
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then a=$(one); c=$(ctl); b=$(two); else c=$(ctl); b=$(two); a=$(one); fi
    read -r ca cb <<<"$c"
    if [ -z "$a" ] || [ -z "$b" ] || [ -z "${ca:-}" ] || [ -z "${cb:-}" ]; then
        echo "mnist_scaling: round $r: a run printed no final: line (1 rank '$a', 2 ranks '$b'," \
            "control '$c'); run it by hand to see why" >&2
        exit 1
    fi
    e=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.1f", 100 * b / (2 * a)}')
    ec=$(awk -v a="$a" -v x="$ca" -v y="$cb" 'BEGIN{printf "%.1f", 100 * (x + y) / (2 * a)}')
    el=$(awk -v a="$a" -v x="$ca" -v y="$cb" 'BEGIN{printf "%.1f", 100 * (x < y ? x : y) / a}')
    s1+=("$a") s2+=("$b") sc+=("$ca" "$cb") eff+=("$e") effc+=("$ec") effl+=("$el")
    echo "round $r: 1 rank $a  2 ranks $b  control $ca + $cb images/s;" \
        "scaling $e%  control $ec%  lockstep $el%"
done
echo "median (min-max) of $rounds rounds, $steps steps:"
echo "  1 rank           $(printf '%s\n' "${s1[@]}" | stats) images/s"
echo "  2 ranks          $(printf '%s\n' "${s2[@]}" | stats) images/s"
echo "  control, each    $(printf '%s\n' "${sc[@]}" | stats) images/s"
echo "  2-rank scaling   $(printf '%s\n' "${eff[@]}" | stats) %"
echo "  control          $(printf '%s\n' "${effc[@]}" | stats) %"
echo "  control lockstep $(printf '%s\n' "${effl[@]}" | stats) %"
