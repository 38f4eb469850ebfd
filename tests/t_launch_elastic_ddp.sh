#!/usr/bin/env bash
# t_launch_elastic_ddp.sh: a stock PyTorch DDP loop (gloo, env://, tests/progs/ddp_elastic.py)
# survives 3 -> 2 -> 3 nodes under `baton run --nnodes 2:3`: node 1's launcher is SIGKILLed,
# the other two resume from the shared checkpoint as a world of 2; a replacement joins, rank 0
# checkpoints when BATON_ELASTIC_FILE says closing, and all three resume from there. Then the
# same 3 -> 2 -> 3 in place (BATON_ELASTIC_INPLACE=1): the survivors' processes stay (same pids),
# the replacement's worker starts while its launcher waits to be admitted, and the state is kept
# in memory (no checkpoint file is written). Debian's torch is importable only from
# /usr/bin/python3; without it the test is skipped.
# timeout: 420
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! timeout 120 "$PY" -c 'import torch, torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null; then
    t_skip "PyTorch DDP, elastic" "$PY cannot import torch with gloo (make deps installs python3-torch)"
    t_done
fi
export BATON_TOKEN=ddp-$$ BATON_HEARTBEAT_TIMEOUT=2
D=$T_TMP/d; mkdir -p "$D"
port=$(t_free_port)
node() { # NAME ID
    t_bg "$BATON" run --nnodes 2:3 --node-rank "$2" --rdzv "127.0.0.1:$port" -n 1 \
        --rdzv-last-call 1 --grace 5 -- "$PY" "$BATON_SRC/tests/progs/ddp_elastic.py" "$D" \
        >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
field() { cat "$1"/up."$2".* 2>/dev/null | grep -oE "$3=[0-9]+" | sort | uniq -c | tr -s ' ' | xargs; }
node a0 0; p0=$T_LAST_PID
node a1 1; p1=$T_LAST_PID
node a2 2; p2=$T_LAST_PID
t_check "DDP 3 nodes: generation 0 steps" t_wait_files 3 "$D" 120 '^up\.0\.'
t_expect_eq "DDP 3 nodes: world 3" "$(field "$D" 0 world)" "3 world=3"
t_check "DDP: a checkpoint exists before the kill" t_wait_files 1 "$D" 60 '^ckpt\.pt$'
kill -KILL "$p1"
t_check "DDP node 1 killed: the two others step again" t_wait_files 2 "$D" 120 '^up\.1\.'
t_expect_eq "DDP node 1 killed: world 2" "$(field "$D" 1 world)" "2 world=2"
r1=$(cat "$D"/up.1.0 | grep -oE 'resumed=[0-9]+' | cut -d= -f2)
t_check "DDP node 1 killed: resumed from the checkpoint (step $r1 > 0)" test "${r1:-0}" -gt 0
node a1b 1; p1=$T_LAST_PID
t_check "DDP replacement: three step again" t_wait_files 3 "$D" 120 '^up\.2\.'
t_expect_eq "DDP replacement: world 3" "$(field "$D" 2 world)" "3 world=3"
r2=$(cat "$D"/up.2.0 | grep -oE 'resumed=[0-9]+' | cut -d= -f2)
t_check "DDP replacement: resumed later than before (step $r2 > $r1)" test "${r2:-0}" -gt "${r1:-0}"
t_expect_eq "DDP replacement: every rank resumed from the same step" \
    "$(field "$D" 2 resumed)" "3 resumed=$r2"
touch "$D/stop"
for p in "$p0" "$p1" "$p2"; do t_wait "$p" 60 >>"$T_TMP/rcs"; done
t_expect_eq "DDP: the three launchers exit 0" "$(xargs <"$T_TMP/rcs")" "0 0 0"

# ---- in place: the workers outlive the membership changes ----
export BATON_ELASTIC_INPLACE=1
D=$T_TMP/inplace; mkdir -p "$D"
port=$(t_free_port)
pids() { grep -ohE 'pid=[0-9]+' "$1"/up."$2".* 2>/dev/null | sort | xargs; }
node b0 0; p0=$T_LAST_PID
node b1 1; p1=$T_LAST_PID
node b2 2; p2=$T_LAST_PID
t_check "in place, 3 nodes: generation 0 steps" t_wait_files 3 "$D" 120 '^up\.0\.'
t_expect_eq "in place, 3 nodes: world 3" "$(field "$D" 0 world)" "3 world=3"
w0=$(grep -ohE 'pid=[0-9]+' "$D"/up.0.0 "$D"/up.0.2 | sort | xargs)
kill -KILL "$p1"
t_check "in place, node 1 killed: the two others step again" t_wait_files 2 "$D" 120 '^up\.1\.'
t_expect_eq "in place, node 1 killed: world 2" "$(field "$D" 1 world)" "2 world=2"
t_expect_eq "in place, node 1 killed: the survivors' workers are the same processes" \
    "$(pids "$D" 1)" "$w0"
r1=$(grep -oE 'resumed=[0-9]+' "$D"/up.1.0 | cut -d= -f2)
t_check "in place, node 1 killed: resumed from memory (step $r1 > 0)" test "${r1:-0}" -gt 0
t_expect_eq "in place, node 1 killed: both resumed from the same step" \
    "$(field "$D" 1 resumed)" "2 resumed=$r1"
t_grep "in place, node 1 killed: node 0 kept its worker" 'keeps its 1 worker\(s\) running' \
    "$T_TMP/b0.err"
node b1b 1; p1=$T_LAST_PID
t_check "in place, replacement: three step again" t_wait_files 3 "$D" 120 '^up\.2\.'
t_expect_eq "in place, replacement: world 3" "$(field "$D" 2 world)" "3 world=3"
r2=$(grep -oE 'resumed=[0-9]+' "$D"/up.2.0 | cut -d= -f2)
t_check "in place, replacement: resumed later than before (step $r2 > $r1)" \
    test "${r2:-0}" -gt "${r1:-0}"
t_expect_eq "in place, replacement: every rank resumed from the same step" \
    "$(field "$D" 2 resumed)" "3 resumed=$r2"
t_check "in place, replacement: the survivors' workers are still the same processes" \
    test -z "$(comm -23 <(echo "$w0" | tr ' ' '\n') <(pids "$D" 2 | tr ' ' '\n'))"
t_check "in place: no checkpoint was written" test ! -e "$D/ckpt.pt"
t_grep "in place, replacement: its worker started before it was admitted" \
    'generation 1 is running; asked to join' "$T_TMP/b1b.err"
touch "$D/stop"
: >"$T_TMP/rcs"
for p in "$p0" "$p1" "$p2"; do t_wait "$p" 60 >>"$T_TMP/rcs"; done
t_expect_eq "in place: the three launchers exit 0" "$(xargs <"$T_TMP/rcs")" "0 0 0"
t_done
