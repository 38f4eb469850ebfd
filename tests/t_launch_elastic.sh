#!/usr/bin/env bash
# t_launch_elastic.sh: elastic membership (--nnodes MIN:MAX), each node a launcher on this
# machine: bad MIN:MAX, 3 nodes at 2:3, one SIGKILLed -> the other two go on as a world of 2
# (dense, stable node ranks, its worker gone too), a replacement -> back to 3 after the workers
# were told (BATON_ELASTIC_FILE); membership changes do not use --max-restarts; a SIGSTOPped
# launcher is declared lost and rejoins when SIGCONTed; the store's host killed and started
# again: the others retry it and re-form with it; a second launcher with a node's identity
# and another job's launcher are refused; fewer than MIN past --join-timeout -> exit 142 naming
# the missing node; workers that acknowledge the closing file end a 60 s grace early;
# PET_NNODES=2:3 from a worker-only PyTorchJob's env. Every wait is on a file or a line, bounded.
# timeout: 150
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
export BATON_TOKEN=elastic-test-$$ BATON_HEARTBEAT_TIMEOUT=2

node() { # NAME ID PORT DIR ARGS...: an elastic launcher, output in $T_TMP/NAME.{out,err}
    local name=$1 id=$2 port=$3 dir=$4; shift 4
    t_bg "$BATON" run --nnodes 2:3 --node-rank "$id" --rdzv "127.0.0.1:$port" -n 1 \
        --rdzv-last-call 1 --grace 3 "$@" -- "$W" "$dir" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
status_of() { t_wait "$1" "$2" >"$T_TMP/rc"; cat "$T_TMP/rc"; } # not in $(...) itself
wait_world() { # DIR N SEC: until N workers of one generation after 0 say world=N
    local i=0 g
    while :; do
        for g in $(ls "$1" | sed -n 's/^up\.\([1-9][0-9]*\)\..*/\1/p' | sort -u); do
            [ "$(t_worlds "$1" "$g")" = "$2 world=$2" ] && return 0
        done
        [ $i -ge $(($3 * 10)) ] && return 1
        sleep 0.1; i=$((i + 1))
    done
}

# ---- bad input: one line each, exit 2
for bad in 3:2 0:2 a:b 2: :3; do
    "$BATON" run --nnodes "$bad" --node-rank 0 --rdzv 127.0.0.1:1 -- true >"$T_TMP/o" 2>"$T_TMP/e"
    rc=$?
    t_expect_eq "--nnodes $bad: exit 2 with one line naming it" \
        "$rc $(wc -l <"$T_TMP/e") $(grep -c -- "--nnodes '$bad'" "$T_TMP/e")" "2 1 1"
done
"$BATON" run --nnodes 2:3 --rdzv 127.0.0.1:1 -- true 2>"$T_TMP/e"
t_expect_eq "--nnodes 2:3 without --node-rank: exit 2" "$?" 2
t_grep "--nnodes 2:3 without --node-rank: says what to add" "needs --node-rank" "$T_TMP/e"

# ---- 3 nodes at 2:3; node 1 SIGKILLed; a replacement; then everyone stops
D=$T_TMP/a; mkdir -p "$D"
port=$(t_free_port)
node a0 0 "$port" "$D"; p0=$T_LAST_PID
node a1 1 "$port" "$D"; p1=$T_LAST_PID
node a2 2 "$port" "$D"; p2=$T_LAST_PID
t_check "3 nodes at 2:3: generation 0 runs with world 3" t_wait_files 3 "$D" 30 '^up\.0\.'
t_expect_eq "3 nodes at 2:3: every worker sees world 3" "$(t_worlds "$D" 0)" "3 world=3"
t_grep "3 nodes: node 2 has node rank 2 in generation 0" "node 2 has node rank 2," "$T_TMP/a2.err"
w1=$(grep -oE 'pid=[0-9]+' "$D/up.0.1" | cut -d= -f2)
t0=$(date +%s.%N)
kill -KILL "$p1"
t_check "node 1 killed: the two others run again as generation 1" t_wait_files 2 "$D" 20 '^up\.1\.'
t1=$(date +%s.%N)
echo "# re-form after a SIGKILLed launcher: $(echo "$t1 - $t0" | bc) s"
t_expect_eq "node 1 killed: world 2 in generation 1" "$(t_worlds "$D" 1)" "2 world=2"
t_check "node 1 killed: its worker is gone too (no orphan)" gone_within 5 "$w1"
t_grep "node 1 killed: node 2 moves to node rank 1 (dense)" "generation 1: .* node 2 has node rank 1," "$T_TMP/a2.err"
t_grep "node 1 killed: node 0 keeps node rank 0 (stable)" "generation 1: .* node 0 has node rank 0," "$T_TMP/a0.err"
t_grep "node 1 killed: the survivors name it and re-form" \
    "generation 0 ended: node 1 \(host [^,]+, pid $p1\) lost contact.*re-forming" "$T_TMP/a0.err"

node a1b 1 "$port" "$D"; p1=$T_LAST_PID
t0=$(date +%s.%N)
t_check "replacement node 1: back to 3 nodes (generation 2)" t_wait_files 3 "$D" 20 '^up\.2\.'
t1=$(date +%s.%N)
echo "# a joiner's arrival to its worker running: $(echo "$t1 - $t0" | bc) s"
t_expect_eq "replacement: world 3 again" "$(t_worlds "$D" 2)" "3 world=3"
t_check "replacement: the running workers were told first (state=closing)" \
    t_wait_files 2 "$D" 1 '^ckpt\.1\.'
t_grep "replacement: held until the next generation" "generation 1 is running; asked to join" "$T_TMP/a1b.err"
t_grep "replacement: node 2 keeps node rank 1, node 1 takes 2" "generation 2: .* node 2 has node rank 1," "$T_TMP/a2.err"

# ---- a second launcher claiming node 2's identity, and another job's launcher: refused
"$BATON" run --nnodes 2:3 --node-rank 2 --rdzv "127.0.0.1:$port" -n 1 --join-timeout 10 \
    -- "$W" "$D" >"$T_TMP/dup.out" 2>"$T_TMP/dup.err"
t_expect_eq "same identity as a running node: exit 2" "$?" 2
t_grep "same identity: one line naming the holder" "node 2 is already taken in generation 2 .* by host .*pid $p2" "$T_TMP/dup.err"
"$BATON" run --nnodes 2:4 --node-rank 3 --rdzv "127.0.0.1:$port" -n 1 --join-timeout 10 \
    -- "$W" "$D" >"$T_TMP/other.out" 2>"$T_TMP/other.err"
t_expect_eq "another job (2:4) at the same store: exit 2" "$?" 2
t_grep "another job: refused, naming both" "refused by the rendezvous: .*--nnodes 2:4.*E 2 3" "$T_TMP/other.err"
t_expect_eq "after the refusals: still generation 2, no membership change" "$(ls "$D" | grep -c '^up\.3\.')" 0

touch "$D/stop"
status_of "$p0" 20 >"$T_TMP/s0"; status_of "$p2" 20 >"$T_TMP/s2"; status_of "$p1" 20 >"$T_TMP/s1"
t_expect_eq "stop: the three launchers exit 0 (no --max-restarts was needed)" \
    "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1") $(cat "$T_TMP/s2")" "0 0 0"

# ---- SIGSTOP: declared lost after the heartbeat timeout; SIGCONT: it rejoins
D=$T_TMP/b; mkdir -p "$D"
port=$(t_free_port)
node b0 0 "$port" "$D"; p0=$T_LAST_PID
node b1 1 "$port" "$D"; p1=$T_LAST_PID
node b2 2 "$port" "$D"; p2=$T_LAST_PID
t_check "SIGSTOP: 3 nodes up" t_wait_files 3 "$D" 30 '^up\.0\.'
kill -STOP "$p2"
t_check "SIGSTOP node 2: the others re-form as 2" t_wait_files 2 "$D" 20 '^up\.1\.'
t_expect_eq "SIGSTOP node 2: world 2" "$(t_worlds "$D" 1)" "2 world=2"
kill -CONT "$p2"
t_check "SIGCONT: node 2 rejoins, 3 nodes again" t_wait_files 3 "$D" 20 '^up\.2\.'
t_expect_eq "SIGCONT: world 3, generation 1 was not disturbed" "$(t_worlds "$D" 1) / $(t_worlds "$D" 2)" \
    "2 world=2 / 3 world=3"
t_grep "SIGCONT: node 2 says it lost the store and retries" "node 2: lost the rendezvous store" "$T_TMP/b2.err"
touch "$D/stop"
status_of "$p0" 20 >"$T_TMP/s0"; status_of "$p1" 20 >"$T_TMP/s1"; status_of "$p2" 20 >"$T_TMP/s2"
t_expect_eq "SIGSTOP/SIGCONT: all three exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1") $(cat "$T_TMP/s2")" "0 0 0"

# ---- the store's host (node 0) SIGKILLed and started again at the same address: the others
# retry it and re-form with it
D=$T_TMP/s; mkdir -p "$D"
port=$(t_free_port)
node s0 0 "$port" "$D"; p0=$T_LAST_PID
node s1 1 "$port" "$D"; p1=$T_LAST_PID
node s2 2 "$port" "$D"; p2=$T_LAST_PID
t_check "store host: 3 nodes up" t_wait_files 3 "$D" 30 '^up\.0\.'
kill -KILL "$p0"
t_check "store host killed: the others say they retry it" \
    t_wait_grep "node 1: lost the rendezvous store at 127.0.0.1:$port; retrying" "$T_TMP/s1.err" 10
node s0b 0 "$port" "$D"; p0=$T_LAST_PID
# (the survivors may form a generation of 2 before node 0 is back; it then joins the next one)
t_check "store host back: 3 nodes run again" wait_world "$D" 3 30
touch "$D/stop"
status_of "$p0" 20 >"$T_TMP/s0"; status_of "$p1" 20 >"$T_TMP/s1"; status_of "$p2" 20 >"$T_TMP/s2"
t_expect_eq "store host back: all three exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1") $(cat "$T_TMP/s2")" "0 0 0"

# ---- the same from a worker-only PyTorchJob's env: PET_NNODES=2:3, the pod index from HOSTNAME
D=$T_TMP/p; mkdir -p "$D"
port=$(t_free_port)
for i in 0 1; do
    t_bg env PET_NNODES=2:3 PET_RDZV_ENDPOINT="127.0.0.1:$((port - 1))" HOSTNAME="pj$$-worker-$i" \
        "$BATON" run -n 1 --rdzv-last-call 1 -- "$W" "$D" >"$T_TMP/p$i.out" 2>"$T_TMP/p$i.err"
    pp[$i]=$T_LAST_PID
done
t_check "PET_NNODES=2:3: two pods form a generation after the last call" t_wait_files 2 "$D" 30 '^up\.0\.'
t_expect_eq "PET_NNODES=2:3: world 2" "$(t_worlds "$D" 0)" "2 world=2"
touch "$D/stop"
status_of "${pp[0]}" 20 >"$T_TMP/s0"; status_of "${pp[1]}" 20 >"$T_TMP/s1"
t_expect_eq "PET_NNODES=2:3: both exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"

# ---- workers that acknowledge (BATON_ELASTIC_FILE.ack.<local rank>) end the grace early
D=$T_TMP/k; mkdir -p "$D"
port=$(t_free_port)
ack_node() { # ID
    t_bg env BATON_ELASTIC_GRACE=60 "$BATON" run --nnodes 2:3 --node-rank "$1" \
        --rdzv "127.0.0.1:$port" -n 1 --rdzv-last-call 1 -- "$W" "$D" --ack \
        >"$T_TMP/k$1.out" 2>"$T_TMP/k$1.err"
}
ack_node 0; k0=$T_LAST_PID
ack_node 1; k1=$T_LAST_PID
t_check "acks: 2 nodes up" t_wait_files 2 "$D" 30 '^up\.0\.'
ack_node 2; k2=$T_LAST_PID
t_check "acks: the joiner runs long before BATON_ELASTIC_GRACE=60 is over" t_wait_files 3 "$D" 15 '^up\.1\.'
t_expect_eq "acks: world 3" "$(t_worlds "$D" 1)" "3 world=3"
touch "$D/stop"
for p in "$k0" "$k1" "$k2"; do t_wait "$p" 20 >>"$T_TMP/ks"; done
t_expect_eq "acks: all three exit 0" "$(xargs <"$T_TMP/ks")" "0 0 0"

# ---- fewer than MIN longer than --join-timeout: exit 142 naming the missing node
D=$T_TMP/c; mkdir -p "$D"
port=$(t_free_port)
node c0 0 "$port" "$D" --join-timeout 3; p0=$T_LAST_PID
node c1 1 "$port" "$D" --join-timeout 3; p1=$T_LAST_PID
t_check "2 nodes at 2:3 up (after the last call)" t_wait_files 2 "$D" 30 '^up\.0\.'
t_grep "the last call is logged" "generation 0: 2 of 2\.\.3 nodes joined; last call for more: 1 s" "$T_TMP/c0.err"
kill -KILL "$p1"
status_of "$p0" 20 >"$T_TMP/s0"
t_expect_eq "1 of min 2 past --join-timeout: exit 142 (retryable)" "$(cat "$T_TMP/s0")" 142
t_grep "fewer than MIN: names the missing node" \
    "gave up after 3 s \(--join-timeout\) with 1 of at least 2 nodes .*missing: node 1 \(host [^,]+, pid $p1\)" \
    "$T_TMP/c0.err"
t_done
