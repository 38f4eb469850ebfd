#!/usr/bin/env bash
# t_launch_ps.sh: parameter servers under `baton run`: `--ps 1` and `--ps 2` beside two sync
# workers (tests/progs/ps_train; with --ps 2 the key is split across both servers), output
# tagged [psI], servers that exit by themselves once the workers closed, servers stopped after
# success when they do not, a failing server failing the job with a report naming it, --ps
# usage errors; a TFJob emulated on this machine: four launchers (chief, worker 0, worker 1,
# ps 0) with TF_CONFIG on 127.0.0.1 ports, the ps pod running the server itself; an evaluator
# pod runs its program with no rank env; with --max-restarts a worker failure restarts the
# workers while the server keeps running with its keys in memory, and a lost server is the only
# one started again (it reloads its checkpoint); a server publishes its address through its
# node's relay.
# timeout: 180
. "$(dirname "$0")/lib.sh"
P=$BATON_BUILD/tests/progs
if [ ! -x "$BATON" ] || [ ! -x "$P/ps_train" ]; then
    t_skip "baton run --ps" "build $BATON and tests/progs first"; t_done; fi
export BATON_TIMEOUT=30 BATON_PS_PARTITION_BYTES=4K # 3000 floats = 12 KB: split over servers
unset BATON_TOKEN BATON_RDZV BATON_PS_SERVERS BATON_RANK BATON_WORLD_SIZE TF_CONFIG

# losses_fall FILE RANK STEPS: rank's last step is STEPS-1 and its loss fell 1000-fold.
losses_fall() {
    awk -v tag="[$2]" -v last="$(($3 - 1))" '
        $1 == tag && $2 == "step" { loss[$3] = $5; n = $3 }
        END { exit !(n == last && loss[last] < loss[0] * 1e-3) }' "$1"
}

# --ps 1: two workers train through one server; everything exits 0.
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS,LAUNCH,RDZV timeout 60 "$BATON" run -n 2 --ps 1 \
    --log-dir "$T_TMP/logs" -- "$P/ps_train" 60 3000 sync >"$T_TMP/a.out" 2>"$T_TMP/a.err"
t_expect_eq "--ps 1: baton run exits 0" "$?" 0
t_check "--ps 1: both workers trained (loss fell 1000-fold)" \
    sh -c "$(declare -f losses_fall); losses_fall '$T_TMP/a.out' 0 60 && losses_fall '$T_TMP/a.out' 1 60"
t_grep "--ps 1: server output is tagged [ps0]" '^\[ps0\] .*ps server 0 listening on 127\.0\.0\.1:' \
    "$T_TMP/a.err"
t_grep "--ps 1: the server exits by itself once both workers closed" \
    '^\[ps0\] .*ps server 0 stops \(every worker closed\)' "$T_TMP/a.err"
t_grep "--ps 1: the launcher saw the server exit 0" 'server ps0 \(pid [0-9]+\) ended with status 0' \
    "$T_TMP/a.err"
t_check "--ps 1: --log-dir has ps.0.log" grep -q 'listening on' "$T_TMP/logs/ps.0.log"
t_grep "--ps 1: the server reaches the store through the node's relay" \
    "^\[ps0\] .*joined rendezvous store 127\.0\.0\.1:[0-9]+ through this node's relay @baton-relay-" \
    "$T_TMP/a.err"

# --ps 2: the key (12 KB > 4 KB partitions) is split over both servers; each checkpoints its
# piece at exit.
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS BATON_PS_CKPT_DIR=$T_TMP/ck timeout 60 "$BATON" run -n 2 \
    --ps 2 -- "$P/ps_train" 40 3000 sync >"$T_TMP/b.out" 2>"$T_TMP/b.err"
t_expect_eq "--ps 2: baton run exits 0" "$?" 0
t_check "--ps 2: both workers trained" \
    sh -c "$(declare -f losses_fall); losses_fall '$T_TMP/b.out' 0 40 && losses_fall '$T_TMP/b.out' 1 40"
t_grep "--ps 2: the workers connected to 2 servers" '^\[1\] .*worker 1 of 2 connected to 2 ps servers' \
    "$T_TMP/b.err"
t_grep "--ps 2: server 0 holds a piece of the key" '^\[ps0\] .*checkpoint of [1-9][0-9]* pieces' \
    "$T_TMP/b.err"
t_grep "--ps 2: server 1 holds a piece of the key" '^\[ps1\] .*checkpoint of [1-9][0-9]* pieces' \
    "$T_TMP/b.err"

# Two nodes (two launchers here): node 0 hosts the server, node 1's worker finds it through
# the store; both exit 0.
RP=$(t_free_port)
for r in 0 1; do
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS t_bg "$BATON" run --nnodes 2 --node-rank $r \
        --rdzv "127.0.0.1:$RP" -n 1 --ps 1 -- "$P/ps_train" 40 3000 sync \
        >"$T_TMP/n$r.out" 2>"$T_TMP/n$r.err"
    [ $r = 0 ] && N0=$T_LAST_PID || N1=$T_LAST_PID
done
t_wait_ok "two nodes --ps 1: both launchers exit 0" 60 "$N0" "$N1"
t_check "two nodes --ps 1: node 0 runs the server, node 1 none" sh -c "
    grep -q '^\[ps0\] .*listening' '$T_TMP/n0.err' && ! grep -q '^\[ps' '$T_TMP/n1.err'"
t_check "two nodes --ps 1: rank 1 (node 1) trained" \
    sh -c "$(declare -f losses_fall); losses_fall '$T_TMP/n1.out' 1 40"

# A program that never uses the servers: they are stopped after the workers succeed.
timeout 60 "$BATON" run -n 2 --ps 1 --grace 5 -- true >"$T_TMP/c.out" 2>"$T_TMP/c.err"
t_expect_eq "unused server: baton run exits 0" "$?" 0
t_grep "unused server: stopped after success" 'workers are done; stopping 1 ps server\(s\)' \
    "$T_TMP/c.err"

# A server that fails (its port is taken by the other) fails the job, named as the root cause.
PORT=$(t_free_port)
BATON_PS_PORT=$PORT timeout 60 "$BATON" run -n 2 --ps 2 --grace 2 -- "$P/ps_train" 20 3000 sync \
    >"$T_TMP/d.out" 2>"$T_TMP/d.err"
t_expect_eq "failing server: baton run exits 1 (the server's code)" "$?" 1
t_grep "failing server: the root cause names it" \
    'job failed: ps server [01] \(node 0, host .*, pid [0-9]+\) exited with code 1; its output is above, tagged \[ps[01]\]' \
    "$T_TMP/d.err"

# Usage errors.
"$BATON" run --ps abc -- true 2>"$T_TMP/u1.err"
t_expect_eq "--ps abc: exit 2" "$?" 2
t_grep "--ps abc: one line naming the flag" "^baton run: --ps 'abc'" "$T_TMP/u1.err"
"$BATON" run --ps 65 -- true 2>/dev/null
t_expect_eq "--ps 65: exit 2" "$?" 2

# A TFJob on this machine: chief, worker 0, worker 1 and ps 0, each a launcher with its own
# TF_CONFIG. The chief hosts the store at its port + 1; each task's port must be free.
free_pair() { # a free port whose successor is free too
    local p i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        p=$(t_free_port)
        python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p+1))" 2>/dev/null &&
            { echo "$p"; return; }
    done
    echo 0
}
C=$(free_pair) W0=$(t_free_port) W1=$(t_free_port) PS=$(t_free_port)
CLUSTER="{\"chief\":[\"127.0.0.1:$C\"],\"worker\":[\"127.0.0.1:$W0\",\"127.0.0.1:$W1\"],\"ps\":[\"127.0.0.1:$PS\"]}"
tf() { echo "{\"cluster\":$CLUSTER,\"task\":{\"type\":\"$1\",\"index\":$2}}"; }
pod() { # NAME TYPE INDEX: a launcher of that TF task, in the background
    TF_CONFIG=$(tf "$2" "$3") BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS t_bg "$BATON" run \
        --join-timeout 60 -- "$P/ps_train" 40 3000 sync >"$T_TMP/tf-$1.out" 2>"$T_TMP/tf-$1.err"
}
pod ps ps 0; PPS=$T_LAST_PID # first: it waits for the chief's store
pod w0 worker 0; PW0=$T_LAST_PID
pod w1 worker 1; PW1=$T_LAST_PID
pod chief chief 0; PC=$T_LAST_PID
for n in chief:$PC w0:$PW0 w1:$PW1 ps:$PPS; do
    t_wait "${n#*:}" 90 >"$T_TMP/rc"
    t_expect_eq "TFJob: the ${n%%:*} pod exits 0" "$(cat "$T_TMP/rc")" 0
done
t_check "TFJob: chief and workers trained through the ps pod" sh -c "$(declare -f losses_fall);
    losses_fall '$T_TMP/tf-chief.out' 0 40 && losses_fall '$T_TMP/tf-w0.out' 1 40 &&
    losses_fall '$T_TMP/tf-w1.out' 2 40"
t_grep "TFJob: the ps pod says it runs the server, not the program" \
    'is TF ps task 0 of job .*running baton.s parameter server.*ps_train is not started' \
    "$T_TMP/tf-ps.err"
t_grep "TFJob: the ps server listens on its TF_CONFIG port" "ps server 0 listening on .*:$PS\$" \
    "$T_TMP/tf-ps.err"
t_grep "TFJob: the ps server served the 3 workers" 'serving a job of 3 workers' "$T_TMP/tf-ps.err"
t_check "TFJob: the ps pod did not run the program" sh -c "! grep -q step '$T_TMP/tf-ps.out'"

# An evaluator pod (listed in the cluster, as the operator does) runs its program, not a rank
# and not a PS worker.
CLUSTER="${CLUSTER%\}},\"evaluator\":[\"127.0.0.1:$(t_free_port)\"]}"
TF_CONFIG=$(tf evaluator 0) timeout 30 "$BATON" run -- sh -c \
    'echo "role=$BATON_ROLE rank=${BATON_RANK-none} ps=${BATON_PS_SERVERS-none}"' \
    >"$T_TMP/ev.out" 2>"$T_TMP/ev.err"
t_expect_eq "TFJob: the evaluator pod exits 0" "$?" 0
t_grep "TFJob: the evaluator runs without rank or ps env" '^\[0\] role=evaluator rank=none ps=none$' \
    "$T_TMP/ev.out"

# The per-process TF_CONFIG keeps the operator's "environment":"cloud" (dense form).
TF_CONFIG="{\"cluster\":{\"worker\":[\"127.0.0.1:$(t_free_port)\"]},\"task\":{\"type\":\"worker\",\"index\":0},\"environment\":\"cloud\"}" \
    timeout 30 "$BATON" run -- sh -c 'echo "TF_CONFIG=$TF_CONFIG"' >"$T_TMP/env.out" 2>&1
t_grep "TFJob: the worker's TF_CONFIG keeps \"environment\":\"cloud\"" \
    '^\[0\] TF_CONFIG=\{"cluster":\{"worker":\["127.0.0.1:[0-9]+"\]\},"task":\{"type":"worker","index":0\},"environment":"cloud"\}$' \
    "$T_TMP/env.out"
# --max-restarts: a worker failure restarts the workers, not the server. Generation 0: rank 0
# pushes 10 async steps and fails; generation 1 reads the key: 10, from the server's memory
# (no checkpoint directory), and the launcher says it kept the server.
cat >"$T_TMP/restart.sh" <<'EOS'
if [ "$BATON_RESTART_COUNT" = 0 ]; then
    [ "$BATON_RANK" = 0 ] || exec sleep 60
    PS_COUNT_END=leave "$1/ps_count" f 10 64 async; exit 1
fi
exec "$1/ps_count" f 0 64 async
EOS
timeout 60 "$BATON" run -n 2 --ps 1 --max-restarts 1 --grace 2 -- sh "$T_TMP/restart.sh" "$P" \
    >"$T_TMP/r.out" 2>"$T_TMP/r.err"
t_expect_eq "--ps 1 --max-restarts 1: a worker fails once, then the job exits 0" "$?" 0
t_grep "--max-restarts: the server keeps running into generation 1" \
    'ps server 0 \(pid [0-9]+\) keeps running into generation 1 with its keys in memory' "$T_TMP/r.err"
t_grep "--max-restarts: generation 1 reads generation 0's 10 steps from the server's memory" \
    '^\[0\] start f 10$' "$T_TMP/r.out"
t_check "--max-restarts: the server was not started again" sh -c "! grep -q 'starting it again' '$T_TMP/r.err'"
# --max-restarts and a lost server: ps1 SIGKILLed mid-run fails generation 0; generation 1
# starts ps1 again (it reloads its checkpoint) while ps0 keeps running, and the job ends 0.
cat >"$T_TMP/lost.sh" <<'EOS'
[ "$BATON_RESTART_COUNT" = 0 ] && exec "$1/ps_count" f 1000000 3000 async
exec "$1/ps_count" g 20 3000 sync
EOS
BATON_PS_CKPT_DIR=$T_TMP/lostck BATON_PS_CKPT_SYNC=1 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS t_bg "$BATON" run \
    -n 2 --ps 2 --max-restarts 1 --grace 2 -- sh "$T_TMP/lost.sh" "$P" >"$T_TMP/l.out" 2>"$T_TMP/l.err"
L=$T_LAST_PID
for _ in $(seq 300); do grep -q '^\[0\] step 20 ' "$T_TMP/l.out" 2>/dev/null && break; sleep 0.1; done
ps1=$(ps -o pid=,args= --ppid "$L" | awk '$3 == "ps" && $5 == 1 { print $1 }')
t_check "lost server: ps1 found while generation 0 steps" test -n "$ps1"
kill -KILL "$ps1"
t_wait "$L" 60 >"$T_TMP/rc"
t_expect_eq "lost server: the job restarts once and exits 0" "$(cat "$T_TMP/rc")" 0
t_grep "lost server: ps1 is started again and reloads its checkpoint" \
    "ps server 1 \(pid $ps1\) ended; starting it again for generation 1" "$T_TMP/l.err"
t_grep "lost server: ... from its checkpoint file" '^\[ps1\] .*resumed from .*ps-1.ckpt' "$T_TMP/l.err"
t_grep "lost server: ps0 keeps running with its keys in memory" \
    'ps server 0 \(pid [0-9]+\) keeps running into generation 1' "$T_TMP/l.err"
t_grep "lost server: generation 1's workers finish their 20 sync steps" '^\[1\] final g 20$' "$T_TMP/l.out"
# ---- bench/ps_bench: each run (size, servers) declares its own key in the store all runs share;
# it reused "model" and every size after the first failed with a shape mismatch
timeout 120 "$BATON_BUILD/bench/ps_bench" --sizes 100K,4M --servers 1,2 --iters 2 \
    >"$T_TMP/bench.out" 2>"$T_TMP/bench.err"
t_expect_eq "ps_bench: exit 0" "$?" 0
t_expect_eq "ps_bench: 6 rows (2 sizes x 1 and 2 servers, and allreduce), none FAILED, #wrong 0" \
    "$(awk '$1 ~ /^[0-9]+$/ && $NF == 0' "$T_TMP/bench.out" | wc -l) $(grep -c FAILED "$T_TMP/bench.out")" "6 0"
t_done
