#!/usr/bin/env bash
# t_mnist_mpi.sh: the MPIJob of k8s/mpijob-mnist.yaml on this machine: its launcher's command
# (`mpirun --allow-run-as-root -np 8 --bind-to core -x BATON_BACKEND=mpi mnist_cnn --epochs 10
# --data ... --checkpoint-dir ...`), shortened to 2 ranks and 60 steps. It trains to the end
# (exit 0, the final line, rank 0's checkpoint), and takes exactly the steps that `baton run
# -n 2` takes: gradients meet as an int64 sum, exact on either backend, so the saved models
# are the same bytes.
# timeout: 300
. "$(dirname "$0")/lib.sh"
MN=$BATON_BUILD/examples/mnist_cnn
DATA=${MNIST_DATA:-/usr/share/datasets/fashion-mnist}

if [ ! -x "$MN" ]; then t_skip "mnist_cnn under mpirun" "not built ($MN)"; t_done; fi
if [ ! -f "$BATON_BUILD/plugins/libbaton-mpi.so" ]; then
    t_skip "mnist_cnn under mpirun" "the MPI plugin was not built (WITH_MPI=0 or no mpicc)"; t_done
fi
if ! command -v mpirun >/dev/null; then
    t_skip "mnist_cnn under mpirun" "mpirun not found (apt-get install openmpi-bin)"; t_done
fi
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
    t_skip "mnist_cnn under mpirun" "no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"
    t_done
fi
[ "${SANITIZER:-}" = address ] && export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
# Two ranks bound to a core each need two cores; on a smaller machine they may share.
bind=(--bind-to core)
[ "$(nproc)" -ge 2 ] || bind=(--bind-to none --oversubscribe)
ARGS=(--epochs 10 --max-steps 60 --data "$DATA")

out=$T_TMP/mpi.log
timeout 240 mpirun --allow-run-as-root -np 2 "${bind[@]}" -x BATON_BACKEND=mpi \
    "$MN" "${ARGS[@]}" --checkpoint-dir "$T_TMP/ck-mpi" >"$out" 2>&1
t_expect_eq "MPIJob command, 2 ranks, 60 steps: mpirun exit status" "$?" 0
t_grep "MPIJob command: 2 ranks trained to the final line" \
    '^final: test_acc=0\.[0-9]{4} val_acc=0\.[0-9]{4} loss=[0-9.]+ images_per_s=[0-9]+ steps=60$' "$out"
t_grep "MPIJob command: the trainer saw 2 ranks" '^mnist_cnn: 2 ranks x ' "$out"
t_check "MPIJob command: rank 0 wrote model.bin and checkpoint.bin" \
    test -s "$T_TMP/ck-mpi/model.bin" -a -s "$T_TMP/ck-mpi/checkpoint.bin"
acc=$(sed -n 's/^final: test_acc=\([0-9.]*\).*/\1/p' "$out" | tail -1)
t_check "MPIJob command: it learned (test_acc ${acc:-none} > 0.5 after 60 steps)" \
    awk -v a="${acc:-0}" 'BEGIN{exit !(a > 0.5)}'

if [ ! -x "$BATON" ]; then t_skip "same steps as baton run" "build/baton not built"; t_done; fi
nat=$T_TMP/native.log
timeout 240 "$BATON" run -n 2 -- "$MN" "${ARGS[@]}" --checkpoint-dir "$T_TMP/ck-nat" >"$nat" 2>&1
t_expect_eq "baton run -n 2, same command: exit status" "$?" 0
# The last epoch line without its speed and comm share (under mpirun it may follow the
# progress line's \r on the same line).
steps() { grep -aoE 'epoch [0-9]+/[0-9]+: loss=[0-9.]+ train_acc=[0-9.]+ val_acc=[0-9.]+ test_acc=[0-9.]+' "$1" | tail -1; }
t_expect_eq "mpirun and baton run end on the same loss and accuracies" "$(steps "$out")" "$(steps "$nat")"
t_check "mpirun and baton run save the same model, byte for byte" \
    cmp -s "$T_TMP/ck-mpi/model.bin" "$T_TMP/ck-nat/model.bin"
t_done
