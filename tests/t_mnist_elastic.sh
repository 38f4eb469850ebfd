#!/usr/bin/env bash
# t_mnist_elastic.sh: the trainer at a changing world size. A 1-epoch run of 3 ranks is stopped
# with SIGTERM (to `baton run`, which forwards it) a quarter into the epoch: the ranks agree on
# the step, rank 0 writes checkpoint.bin, they exit 143. It resumes on 2 ranks (the data
# re-sharded from the same image of the epoch, the per-rank batch and learning rate kept) for
# 250 steps, then on 3 ranks to the end of the epoch; its final test accuracy is within 0.01 of
# a fixed 3-rank run of the same epoch. A torn checkpoint.bin on --resume is one line, exit 2.
# timeout: 1800
. "$(dirname "$0")/lib.sh"
MN=$BATON_BUILD/examples/mnist_cnn
DATA=${MNIST_DATA:-/usr/share/datasets/fashion-mnist}
unset BATON_TOKEN BATON_RDZV BATON_PS_SERVERS BATON_RANK BATON_WORLD_SIZE BATON_RESTART_COUNT
unset BATON_ELASTIC_FILE TF_CONFIG
if [ ! -x "$MN" ] || [ ! -x "$BATON" ]; then t_skip "mnist elastic" "not built"; t_done; fi
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
    t_skip "mnist elastic" "no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"; t_done; fi
export BATON_TIMEOUT=600
final_field() { sed -n "s/^.*final: .*$2=\([0-9.e+-]*\).*/\1/p" "$1" | tail -1; }
# wait_for FILE PATTERN SECONDS: 0 once a line of FILE matches (bounded).
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
run() { # OUT NPROC ARGS...: baton run -n NPROC mnist_cnn on one epoch
    local out=$1 n=$2; shift 2
    "$BATON" run -n "$n" -- "$MN" --data "$DATA" --epochs 1 "$@" >"$out" 2>&1
}

# --- the fixed-size run ---
run "$T_TMP/fixed" 3 --checkpoint-dir "$T_TMP/fixed.ck"
t_expect_eq "fixed 3-rank run exits 0" "$?" 0
A=$(final_field "$T_TMP/fixed" test_acc)

# --- 3 ranks, SIGTERM a quarter in ---
E=$T_TMP/el.ck
t_bg "$BATON" run -n 3 -- "$MN" --data "$DATA" --epochs 1 --checkpoint-dir "$E" >"$T_TMP/p1" 2>&1
L=$T_LAST_PID
if wait_for "$T_TMP/p1" 'epoch 1 \[ *[0-9]+/562\]' 1200; then t_ok "3 ranks: training"
else t_fail "3 ranks: training" "$(tail -3 "$T_TMP/p1")"; fi
kill -TERM "$L"
t_wait "$L" 60 >"$T_TMP/rc"
t_expect_eq "SIGTERM: baton run exits 143" "$(cat "$T_TMP/rc")" 143
t_grep "SIGTERM: rank 0 wrote the checkpoint at the step every rank stopped at" \
    'SIGTERM: checkpoint written at epoch 1, image [0-9]+ of it, step [0-9]+' "$T_TMP/p1"
S=$(sed -n 's/.*SIGTERM: checkpoint written .* step \([0-9]*\)$/\1/p' "$T_TMP/p1" | head -1)

# --- 2 ranks for 250 steps ---
run "$T_TMP/p2" 2 --checkpoint-dir "$E" --resume --max-steps $((${S:-0} + 250))
t_expect_eq "2 ranks: resumed run exits 0" "$?" 0
t_grep "2 ranks: resumed from the 3-rank checkpoint" 'resumed from .*checkpoint.bin: epoch 1, image [0-9]+' "$T_TMP/p2"
t_grep "2 ranks: the data is re-sharded, the learning rate kept" \
    'resized: .*global batch of 96, this run has 64 \(2 ranks x 32\); the epoch goes on from image [0-9]+, re-sharded over the ranks, and the learning rate stays 0.001 per step' \
    "$T_TMP/p2"

# --- 3 ranks to the end of the epoch ---
run "$T_TMP/p3" 3 --checkpoint-dir "$E" --resume
t_expect_eq "3 ranks again: exits 0" "$?" 0
t_grep "3 ranks again: resized from 64" 'resized: .*global batch of 64, this run has 96' "$T_TMP/p3"
B=$(final_field "$T_TMP/p3" test_acc)
t_check "3 -> 2 -> 3 ranks ends within 0.01 test accuracy of the fixed run (${B:-none} vs ${A:-none})" \
    awk -v a="${A:-0}" -v b="${B:-9}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0.6 && d <= 0.01) }'

# --- a torn checkpoint: one line, exit 2 ---
head -c 1000 "$E/checkpoint.bin" >"$T_TMP/torn.bin" && mv "$T_TMP/torn.bin" "$E/checkpoint.bin"
"$MN" --data "$DATA" --checkpoint-dir "$E" --resume >/dev/null 2>"$T_TMP/torn.err"
t_expect_eq "a torn checkpoint.bin: exit 2" "$?" 2
t_grep "... naming it" 'checkpoint.bin: truncated' "$T_TMP/torn.err"
t_expect_eq "... on one line" "$(wc -l <"$T_TMP/torn.err")" 1
t_done
