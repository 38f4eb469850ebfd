#!/usr/bin/env bash
# t_mnist_ps.sh: mnist_cnn --mode ps. Usage errors exit 2 with one line and do not wait for a
# server (bad --ps-consistency, --mode ps with no BATON_PS_SERVERS); a store, one `baton ps`
# server and two sync workers started by hand train 200 steps to test accuracy > 0.6 with the
# loss falling, every process exits 0 (the server by itself once both workers closed), rank 0
# saves the model it pulled and --evaluate reproduces its accuracy; async mode under
# `baton run -n 2 --ps 1` (by hand when this baton has no --ps) trains too.
# timeout: 180
. "$(dirname "$0")/lib.sh"
MN=$BATON_BUILD/examples/mnist_cnn
P=$BATON_BUILD/tests/progs
DATA=${MNIST_DATA:-/usr/share/datasets/fashion-mnist}
unset BATON_TOKEN BATON_RDZV BATON_PS_SERVERS BATON_RANK BATON_WORLD_SIZE BATON_RESTART_COUNT TF_CONFIG

if [ ! -x "$MN" ]; then t_skip "mnist_cnn --mode ps" "not built ($MN)"; t_done; fi

# --- usage errors: exit 2, one line naming the problem, at once ---
usage_case() { # NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    timeout 20 "$MN" "$@" >"$T_TMP/out" 2>"$T_TMP/err"; local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T_TMP/err")" -eq 1 ] && grep -qE -- "$pat" "$T_TMP/err"; then
        t_ok "$name"; else t_fail "$name" "rc=$rc, stderr: $(head -c 300 "$T_TMP/err")"; fi
}
usage_case "bad --ps-consistency" "--ps-consistency bounded:x: want sync, async or bounded:S" \
    --mode ps --ps-consistency bounded:x
usage_case "--ps-consistency without --mode ps" "--ps-consistency async needs --mode ps" \
    --ps-consistency async
usage_case "--mode ps without a server: no hang" \
    "--mode ps: not available without a parameter server \(BATON_PS_SERVERS is not set\)" \
    --data "$DATA" --mode ps

if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
    t_skip "ps training" "no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"
    t_done
fi
if [ ! -x "$BATON" ] || [ ! -x "$P/ps_rdzv" ]; then
    t_skip "ps training" "build $BATON and tests/progs first"; t_done; fi

final_field() { sed -n "s/^.*final: .*$2=\([0-9.e+-]*\).*/\1/p" "$1" | tail -1; }
# wait_for FILE PATTERN SECONDS: 0 once a line of FILE matches.
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# expect_exit NAME PID SECONDS WANT: t_wait outside $(...), since a subshell cannot wait.
expect_exit() { t_wait "$2" "$3" >"$T_TMP/rc"; t_expect_eq "$1" "$(cat "$T_TMP/rc")" "$4"; }
learned() { # NAME FILE STEPS
    local re="final: test_acc=0\.[0-9]{4} val_acc=0\.[0-9]{4} loss=[0-9.]+ images_per_s=[0-9]+"
    t_grep "$1: final line" "$re steps=$3\$" "$2"
    local acc loss
    acc=$(final_field "$2" test_acc); loss=$(final_field "$2" loss)
    t_check "$1: test accuracy > 0.6 (got ${acc:-none})" awk -v a="${acc:-0}" 'BEGIN{exit !(a > 0.6)}'
    t_check "$1: loss fell from ln(10)=2.30 (mean over the run: ${loss:-none})" \
        awk -v l="${loss:-9}" 'BEGIN{exit !(l < 1.3)}'
}

# by_hand TAG CONSISTENCY STEPS CKPT-ARGS...: a store, one `baton ps` server and two workers
# started by hand (what `baton run -n 2 --ps 1` does); rank 0's output in $T_TMP/TAG.0.out.
by_hand() {
    local tag=$1 cons=$2 steps=$3 r s0; shift 3
    local -a w
    export BATON_TOKEN=t-mnist-ps-$tag-$$ BATON_TIMEOUT=30 BATON_WORLD_SIZE=2 BATON_PS_SERVERS=1
    t_bg "$P/ps_rdzv" "$T_TMP/$tag.port"
    wait_for "$T_TMP/$tag.port" '^[0-9]+$' 10 || { t_fail "$tag: store started"; return; }
    export BATON_RDZV=127.0.0.1:$(cat "$T_TMP/$tag.port")
    t_bg "$BATON" ps --index 0 2>"$T_TMP/$tag.ps0.log"; s0=$T_LAST_PID
    for r in 0 1; do
        BATON_RANK=$r t_bg "$MN" --data "$DATA" --mode ps --ps-consistency "$cons" \
            --max-steps "$steps" "$@" >"$T_TMP/$tag.$r.out" 2>"$T_TMP/$tag.$r.err"
        w[$r]=$T_LAST_PID
    done
    expect_exit "$tag: rank 0 exits 0" "${w[0]}" 120 0
    expect_exit "$tag: rank 1 exits 0" "${w[1]}" 60 0
    expect_exit "$tag: the server exits 0 once both workers closed" "$s0" 20 0
    [ "$(cat "$T_TMP/rc")" = 0 ] || sed 's/^/    | /' "$T_TMP/$tag.0.err" "$T_TMP/$tag.ps0.log" | tail -8
    unset BATON_TOKEN BATON_RDZV BATON_PS_SERVERS BATON_WORLD_SIZE
}

# --- sync, by hand ---
by_hand sync sync 200 --checkpoint-dir "$T_TMP/ck"
learned "sync, 2 workers, 1 server" "$T_TMP/sync.0.out" 200
t_grep "sync: the banner names the mode" 'parameter server sync$' "$T_TMP/sync.0.out"
t_grep "sync: the epoch line has the comm share (push + pull)" 'comm=[0-9.]+% steps=200' \
    "$T_TMP/sync.0.out"
t_check "sync: rank 0 saved model.bin" test -s "$T_TMP/ck/model.bin"
"$MN" --data "$DATA" --mode ps --evaluate "$T_TMP/ck/model.bin" >"$T_TMP/eval" 2>&1
acc=$(final_field "$T_TMP/sync.0.out" test_acc)
t_expect_eq "--evaluate of the ps model.bin (no server needed) gives rank 0's test_acc" \
    "$(final_field "$T_TMP/eval" test_acc)" "${acc:-none}"

# --- async: under baton run --ps 1 when this baton has it ---
if "$BATON" run --help 2>&1 | grep -q -- '--ps N'; then
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH BATON_TIMEOUT=30 timeout 120 \
        "$BATON" run -n 2 --ps 1 -- "$MN" --data "$DATA" --mode ps --ps-consistency async \
        --max-steps 150 --no-checkpoint >"$T_TMP/async.out" 2>"$T_TMP/async.err"
    t_expect_eq "async under baton run -n 2 --ps 1: exits 0" "$?" 0
    t_grep "async: the server exited 0" 'server ps0 \(pid [0-9]+\) ended with status 0' "$T_TMP/async.err"
else
    by_hand async async 150 --no-checkpoint
    cp "$T_TMP/async.0.out" "$T_TMP/async.out"
fi
learned "async, 2 workers, 1 server" "$T_TMP/async.out" 150
t_grep "async: the banner names the mode" 'parameter server async$' "$T_TMP/async.out"
t_done
