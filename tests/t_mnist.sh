#!/usr/bin/env bash
# t_mnist.sh: the example trainer end to end: bad flags and bad data give one line and exit 2;
# a short single-rank training learns (loss falls, test accuracy past 0.6); checkpoints
# resume exactly and --evaluate reproduces the accuracy; and, once `baton run` and
# bt_allreduce work, 1, 2 and 4 ranks with the same global batch agree after 50 steps.
# timeout: 600
. "$(dirname "$0")/lib.sh"
MN=$BATON_BUILD/examples/mnist_cnn
DATA=${MNIST_DATA:-/usr/share/datasets/fashion-mnist}

if [ ! -x "$MN" ]; then t_skip "mnist_cnn" "not built ($MN)"; t_done; fi

# --- usage errors: exit 2, one line naming the problem ---
usage_case() { # NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    "$MN" "$@" >"$T_TMP/out" 2>"$T_TMP/err"; local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T_TMP/err")" -eq 1 ] && grep -qE -- "$pat" "$T_TMP/err"; then
        t_ok "$name"; else t_fail "$name" "rc=$rc, stderr: $(head -c 300 "$T_TMP/err")"; fi
}
usage_case "unknown flag" "unknown flag --frobnicate" --frobnicate
usage_case "bad number" "--batch 0: want 1..4096" --batch 0
usage_case "missing value" "--epochs needs a value" --epochs
usage_case "an unwritable --log-csv" "--log-csv /nonexistent/log.csv: No such file or directory; give a writable file" \
    --log-csv /nonexistent/log.csv
usage_case "mode ps without a parameter server" "--mode ps: not available without a parameter server" --mode ps
usage_case "missing data dir" "/nonexistent/train-images-idx3-ubyte\[.gz\]: not found" \
    --data /nonexistent
mkdir -p "$T_TMP/bad"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp "$DATA/$f.gz" "$T_TMP/bad/" 2>/dev/null
done
if [ -f "$T_TMP/bad/train-labels-idx1-ubyte.gz" ]; then
    cp "$T_TMP/bad/train-labels-idx1-ubyte.gz" "$T_TMP/bad/t10k-images-idx3-ubyte.gz"
    usage_case "wrong magic" "t10k-images-idx3-ubyte.gz: bad magic 0x00000801" --data "$T_TMP/bad"
    head -c 3000 "$DATA/t10k-images-idx3-ubyte.gz" >"$T_TMP/bad/t10k-images-idx3-ubyte.gz"
    usage_case "truncated file" "t10k-images-idx3-ubyte.gz: truncated" --data "$T_TMP/bad"
else
    t_skip "bad data files" "no Fashion-MNIST at $DATA"
fi
# Headers that claim more than the file holds: refused, or read into memory that grows only
# with the data (the reader used to allocate the claimed size, up to 2^48 bytes, first).
idx_header() { # FILE COUNT ROWS COLS [DATA BYTES]
    python3 -c 'import struct, sys; a = [int(x) for x in sys.argv[2:]]
open(sys.argv[1], "wb").write(struct.pack(">I3I", 0x803, *a[:3]) + bytes(a[3] if len(a) > 3 else 0))' "$@"
}
mkdir -p "$T_TMP/huge"
idx_header "$T_TMP/huge/train-images-idx3-ubyte" 16777216 28 28
usage_case "a header claiming 13 GB" \
    "train-images-idx3-ubyte: the header claims 13153337344 bytes of data, more than the 1073741824 allowed" \
    --data "$T_TMP/huge"
idx_header "$T_TMP/huge/train-images-idx3-ubyte" 1000000 2 3 600
usage_case "2x3 images: refused before their data is read" \
    "train-images-idx3-ubyte: images are 2x3, the model wants 28x28$" --data "$T_TMP/huge"
if nm "$MN" 2>/dev/null | grep -q __asan_init; then
    t_skip "a header claiming 784 MB in 300 MB of address space" "ASan reserves more address space than ulimit -v allows"
else
    idx_header "$T_TMP/huge/train-images-idx3-ubyte" 1000000 28 28 100
    MN_REAL=$MN MN=$T_TMP/mn-ulimit
    printf '#!/bin/sh\nulimit -v 300000\nexec "%s" "$@"\n' "$MN_REAL" >"$MN" && chmod +x "$MN"
    usage_case "a header claiming 784 MB in 300 MB of address space: truncated, not out of memory" \
        "train-images-idx3-ubyte: truncated: the header promises 784000000 bytes of data, the file has 100$" \
        --data "$T_TMP/huge"
    MN=$MN_REAL
fi

if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
    t_skip "training" "no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"
    t_done
fi

final_field() { sed -n "s/^final: .*$2=\([0-9.e+-]*\).*/\1/p" "$1" | tail -1; }

# --- a short training learns ---
"$MN" --data "$DATA" --max-steps 300 --checkpoint-dir "$T_TMP/ck" >"$T_TMP/short" 2>&1
rc=$?
t_expect_eq "300-step run exits 0" "$rc" 0
t_grep "final line" '^final: test_acc=0\.[0-9]{4} val_acc=0\.[0-9]{4} loss=[0-9.]+ images_per_s=[0-9]+ steps=300$' "$T_TMP/short"
acc=$(final_field "$T_TMP/short" test_acc); loss=$(final_field "$T_TMP/short" loss)
t_check "test accuracy after 300 steps > 0.6 (got ${acc:-none})" awk -v a="${acc:-0}" 'BEGIN{exit !(a > 0.6)}'
t_check "loss fell below ln(10)=2.30 (mean over the run: ${loss:-none})" awk -v l="${loss:-9}" 'BEGIN{exit !(l < 1.3)}'
t_check "model.bin and checkpoint.bin written" test -s "$T_TMP/ck/model.bin" -a -s "$T_TMP/ck/checkpoint.bin"

# --- --evaluate reproduces the accuracy from the saved model ---
"$MN" --data "$DATA" --evaluate "$T_TMP/ck/model.bin" >"$T_TMP/eval" 2>&1
t_expect_eq "--evaluate model.bin gives the same test_acc" "$(final_field "$T_TMP/eval" test_acc)" "$acc"
printf 'junk' >"$T_TMP/junk.bin"
"$MN" --data "$DATA" --evaluate "$T_TMP/junk.bin" >"$T_TMP/out" 2>"$T_TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "junk.bin: truncated" "$T_TMP/err"; then t_ok "--evaluate junk: exit 2, one line"
else t_fail "--evaluate junk: exit 2, one line" "rc=$rc: $(cat "$T_TMP/err")"; fi
mkdir -p "$T_TMP/dirck/checkpoint.bin"
usage_case "--resume with a directory named checkpoint.bin: said so, not \"truncated\"" \
    "checkpoint.bin: is a directory, not a model or checkpoint file$" \
    --data "$DATA" --resume --checkpoint-dir "$T_TMP/dirck"

# --- resume: 100 steps, then 100 more from the checkpoint == 200 straight ---
"$MN" --data "$DATA" --max-steps 200 --no-checkpoint >"$T_TMP/straight" 2>&1
"$MN" --data "$DATA" --max-steps 100 --checkpoint-dir "$T_TMP/rs" >/dev/null 2>&1
BATON_RESTART_COUNT=1 "$MN" --data "$DATA" --max-steps 200 --checkpoint-dir "$T_TMP/rs" >"$T_TMP/resumed" 2>&1
t_grep "restart resumes from the checkpoint" '^resumed from .*checkpoint.bin: epoch 1, image 3200 of it, 100 steps done' "$T_TMP/resumed"
t_expect_eq "resumed run ends where a straight run does (test_acc)" \
    "$(final_field "$T_TMP/resumed" test_acc)" "$(final_field "$T_TMP/straight" test_acc)"

# --- progress: through a pipe (as under `baton run`), a whole line at each quarter of the epoch ---
"$MN" --data "$DATA" --batch 1024 --max-steps 16 --no-checkpoint --log-csv "$T_TMP/log.csv" \
    >"$T_TMP/prog" 2>&1
t_grep "progress through a pipe: a line at the first quarter of the epoch" \
    '^  epoch 1 \[   13/52\] loss [0-9.]+ acc [0-9.]+ +[0-9]+ img/s$' "$T_TMP/prog"
t_check "... and no carriage return" sh -c "! grep -q \"$(printf '\r')\" '$T_TMP/prog'"

# --- --log-csv: a header and the epoch's row, the figures the epoch line printed ---
t_grep "--log-csv: the header" '^epoch,epochs,world,steps,loss,train_acc,val_acc,val_loss,test_acc,test_loss,images_per_s$' "$T_TMP/log.csv"
csv_acc=$(awk -F, 'NR == 2 {print $9}' "$T_TMP/log.csv")
t_expect_eq "--log-csv: the row's test_acc is the epoch line's" "$csv_acc" \
    "$(sed -n 's/^epoch 1\/.* test_acc=\([0-9.]*\).*/\1/p' "$T_TMP/prog")"
t_check "--log-csv: epoch 1 of a 1-rank run, 16 steps" grep -q '^1,[0-9]*,1,16,' "$T_TMP/log.csv"
if command -v gnuplot >/dev/null; then
    t_check "bench/plot_mnist.sh draws it" "$BATON_SRC/bench/plot_mnist.sh" "$T_TMP/log.csv" "$T_TMP/mn.svg"
    t_grep "... an SVG" '<svg' "$T_TMP/mn.svg"
else
    t_skip "bench/plot_mnist.sh" "no gnuplot (make deps installs gnuplot-nox)"
fi

# --- threads give the same steps (only the order of float sums differs) ---
"$MN" --data "$DATA" --max-steps 200 --threads 2 --no-checkpoint >"$T_TMP/threads" 2>&1
t_check "--threads 2 agrees with 1 thread (test_acc within 0.005)" awk \
    -v a="$(final_field "$T_TMP/threads" test_acc)" -v b="$(final_field "$T_TMP/straight" test_acc)" \
    'BEGIN{d=a-b; if(d<0)d=-d; exit !(a!="" && d<=0.005)}'

# --- equivalence over ranks: same global batch (128), 50 steps ---
if [ ! -x "$BATON" ]; then
    t_skip "1 vs 2 vs 4 ranks" "build/baton not built"; t_done
fi
run_ranks() { # N BATCH OUT
    "$BATON" run -n "$1" -- "$MN" --data "$DATA" --batch "$2" --max-steps 50 --no-checkpoint \
        >"$3" 2>&1
}
run_ranks 1 128 "$T_TMP/r1"
run_ranks 2 64 "$T_TMP/r2"
if grep -qE "has no bt_allreduce|bt_allreduce: |bt_init: " "$T_TMP/r2" || ! grep -q '^.*final:' "$T_TMP/r2"; then
    t_skip "1 vs 2 vs 4 ranks" "baton run or bt_allreduce not functional yet: $(grep -m1 -E 'mnist_cnn|baton' "$T_TMP/r2")"
    t_done
fi
# --- overlap (one bt_iallreduce per layer during backward) == --no-overlap, bit for bit ---
for ov in "" --no-overlap; do
    "$BATON" run -n 2 -- "$MN" --data "$DATA" --max-steps 20 --checkpoint-dir "$T_TMP/ov$ov" \
        $ov >"$T_TMP/ov$ov.log" 2>&1
done
t_check "2 ranks: overlapped and blocking allreduce give the same model.bin, bit for bit" \
    cmp "$T_TMP/ov/model.bin" "$T_TMP/ov--no-overlap/model.bin"
run_ranks 4 32 "$T_TMP/r4"
ranks_loss() { sed -n 's/^.*epoch [0-9/]*: loss=\([0-9.]*\).*/\1/p' "$1" | tail -1; }
l1=$(ranks_loss "$T_TMP/r1"); l2=$(ranks_loss "$T_TMP/r2"); l4=$(ranks_loss "$T_TMP/r4")
for pair in "2:$l2" "4:$l4"; do
    n=${pair%%:*}; l=${pair#*:}
    t_check "$n ranks x batch $((128 / n)) match 1 rank x 128 after 50 steps (loss $l vs $l1, 1e-4 rel)" \
        awk -v a="${l:-x}" -v b="${l1:-y}" 'BEGIN{d=(a-b)/b; if(d<0)d=-d; exit !(a!="" && b>0 && d<=1e-4)}'
done
t_done
