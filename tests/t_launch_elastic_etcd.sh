#!/usr/bin/env bash
# t_launch_elastic_etcd.sh: --rdzv-backend etcd against a real 3-member etcd cluster on
# 127.0.0.1 (free ports, data dirs under the test's temp dir, removed at exit): bad backend
# flags; an unreachable etcd (exit 142, one line); 3 nodes at 2:3 where node 0 (the store host
# under the own backend) is SIGKILLed: the two others go on as a world of 2; an etcd member is
# killed mid-job and a replacement node 0 still joins (back to 3); a finished job's keys are not
# reused; the workers reach node rank 0's store through their node's relay (one connection per
# node); every member killed: the launchers give up at --join-timeout (142), no worker left.
# timeout: 150
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
export BATON_TOKEN=etcd-test-$$ BATON_HEARTBEAT_TIMEOUT=2 BATON_JOB_ID=etcd-$$
t_etcd_need "etcd backend"

status_of() { t_wait "$1" "$2" >"$T_TMP/rc"; cat "$T_TMP/rc"; }

# ---- bad input
"$BATON" run --nnodes 2:3 --node-rank 0 --rdzv-backend zookeeper --rdzv-endpoint 127.0.0.1:1 -- true 2>"$T_TMP/e"
t_expect_eq "--rdzv-backend zookeeper: exit 2, one line" "$? $(wc -l <"$T_TMP/e")" "2 1"
t_grep "--rdzv-backend zookeeper: names the choices" "want c10d .* or etcd" "$T_TMP/e"
"$BATON" run --nnodes 2:3 --node-rank 0 --rdzv-backend etcd -- true 2>"$T_TMP/e"
t_expect_eq "etcd without --rdzv-endpoint: exit 2" "$?" 2
t_grep "etcd without --rdzv-endpoint: says what to add" "needs --rdzv-endpoint" "$T_TMP/e"
dead=$(t_free_port)
t_bg "$BATON" run --nnodes 2:3 --node-rank 0 --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$dead" \
    --join-timeout 2 -n 1 -- "$W" "$T_TMP" 2>"$T_TMP/e"
status_of "$T_LAST_PID" 15 >"$T_TMP/s"
t_expect_eq "unreachable etcd: exit 142 after --join-timeout" "$(cat "$T_TMP/s")" 142
t_grep "unreachable etcd: one line naming it and the flag" \
    "gave up after 2 s \(--join-timeout\): etcd at 127.0.0.1:$dead: .*hint: is etcd running .*--rdzv-endpoint" "$T_TMP/e"

# ---- a 3-member etcd cluster
cluster="" eps="" declare -a EPID
for m in 0 1 2; do
    cp[$m]=$(t_free_port); pp[$m]=$(t_free_port)
    cluster+="${cluster:+,}e$m=http://127.0.0.1:${pp[$m]}"; eps+="${eps:+,}127.0.0.1:${cp[$m]}"
done
for m in 0 1 2; do
    t_etcd_member "e$m" "${cp[$m]}" "${pp[$m]}" "$cluster"
    EPID[$m]=$T_LAST_PID
done
t_check "3-member etcd cluster healthy" t_etcd_wait 15 "${cp[@]}"

D=$T_TMP/a; mkdir -p "$D"
node() { # NAME ID ARGS...
    local name=$1 id=$2; shift 2
    t_bg "$BATON" run --nnodes 2:3 --node-rank "$id" --rdzv-backend etcd --rdzv-endpoint "$eps" -n 1 \
        --rdzv-last-call 1 --grace 3 "$@" -- "$W" "$D" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
node n0 0; p0=$T_LAST_PID
node n1 1; p1=$T_LAST_PID
node n2 2; p2=$T_LAST_PID
t_check "etcd: 3 nodes at 2:3 run generation 0" t_wait_files 3 "$D" 30 '^up\.0\.'
t_expect_eq "etcd: world 3" "$(t_worlds "$D" 0)" "3 world=3"
# The workers' store is node rank 0's; each node's workers reach it through their relay.
wp=$(grep -oE 'pid=[0-9]+' "$D/up.0.1" | cut -d= -f2)
wenv() { tr '\0' '\n' <"/proc/$wp/environ" | sed -n "s/^$1=//p"; }
t_check "etcd: a worker reaches the workers' store through its node's relay" test -n "$(wenv BATON_RDZV_RELAY)"
w0=$(grep -oE 'pid=[0-9]+' "$D/up.0.0" | cut -d= -f2)
kill -KILL "$p0"
t0=$(date +%s.%N)
t_check "etcd: node 0 killed, the others run as generation 1" t_wait_files 2 "$D" 20 '^up\.1\.'
echo "# etcd: re-form after node 0's SIGKILL: $(echo "$(date +%s.%N) - $t0" | bc) s (lease TTL 2 s)"
t_expect_eq "etcd: node 0 killed: world 2" "$(t_worlds "$D" 1)" "2 world=2"
t_check "etcd: node 0 killed: its worker is gone" gone_within 5 "$w0"
t_grep "etcd: node 0 killed: its lease's will names it" \
    "generation 0 ended: node 0 \(host [^,]+, pid $p0\) lost contact" "$T_TMP/n1.err"

kill -KILL "${EPID[0]}"  # the first endpoint every launcher talks to
node n0b 0; p0=$T_LAST_PID
t_check "etcd member killed, replacement node 0: back to 3 (generation 2)" t_wait_files 3 "$D" 30 '^up\.2\.'
t_expect_eq "etcd: world 3 again" "$(t_worlds "$D" 2)" "3 world=3"
t_expect_eq "etcd: no other generation began (the member's death was no membership change)" \
    "$(ls "$D" | grep -c '^up\.3\.')" 0
touch "$D/stop"
status_of "$p0" 20 >"$T_TMP/s0"; status_of "$p1" 20 >"$T_TMP/s1"; status_of "$p2" 20 >"$T_TMP/s2"
t_expect_eq "etcd: all three exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1") $(cat "$T_TMP/s2")" "0 0 0"

# the same job id again: etcd still holds the finished job
"$BATON" run --nnodes 2:3 --node-rank 0 --rdzv-backend etcd --rdzv-endpoint "$eps" -n 1 \
    --join-timeout 5 -- "$W" "$D" 2>"$T_TMP/again.err"
t_expect_eq "a finished job's id again: exit 2" "$?" 2
t_grep "a finished job's id again: says how to fix it" "etcd already holds a finished job 'etcd-$$'.*BATON_JOB_ID" "$T_TMP/again.err"

# ---- the workers' store under etcd (node rank 0's): 2 nodes of 4 workers, each holding its
# store connection; one connection per node through the relays, 4 per node with the relay off
# (the launchers talk to etcd, not to that store)
conns() { # RELAY_ON: runs the job, prints the workers' store's established connections
    local d=$T_TMP/conn$1 pa pb wp n k
    mkdir -p "$d"
    for k in 0 1; do
        BATON_JOB_ID=etcd-$$-conn$1 BATON_RDZV_RELAY_ON=$1 t_bg "$BATON" run --nnodes 2 \
            --node-rank $k --rdzv-backend etcd --rdzv-endpoint "$eps" -n 4 -- "$W" "$d" \
            >"$T_TMP/k$k.out" 2>"$T_TMP/k$k.err"
        [ $k = 0 ] && pa=$T_LAST_PID || pb=$T_LAST_PID
    done
    if t_wait_files 8 "$d" 60 '^up\.0\.'; then
        wp=$(grep -oE 'pid=[0-9]+' "$d/up.0.5" | cut -d= -f2)
        n=$(ss -Htn state established "( sport = :$(tr '\0' '\n' <"/proc/$wp/environ" |
            sed -n 's/^BATON_RDZV=.*://p') )" | wc -l)
    else n="(not all 8 workers up)"; fi
    touch "$d/stop"
    t_wait "$pa" 30 >/dev/null; t_wait "$pb" 30 >/dev/null
    echo "$n"
}
t_expect_eq "etcd, 4 workers per node, relay on: the workers' store holds 1 connection per node" \
    "$(conns 1)" 2
t_expect_eq "etcd, relay off (BATON_RDZV_RELAY_ON=0): 4 per node" "$(conns 0)" 8

# ---- etcd dies mid-job: the launchers stop their workers and give up at --join-timeout
export BATON_JOB_ID=etcd-$$-b
D=$T_TMP/b; mkdir -p "$D"
node m0 0 --join-timeout 3; p0=$T_LAST_PID
node m1 1 --join-timeout 3; p1=$T_LAST_PID
t_check "etcd dies: 2 nodes up" t_wait_files 2 "$D" 30 '^up\.0\.'
ws="$(cat "$D"/up.0.* | grep -oE 'pid=[0-9]+' | cut -d= -f2 | xargs)"
kill -KILL "${EPID[1]}" "${EPID[2]}"
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "etcd dies: both launchers exit 142 (retryable)" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "142 142"
t_grep "etcd dies: the line names etcd and the endpoints" "gave up after 3 s \(--join-timeout\): etcd at 127.0.0.1:" "$T_TMP/m0.err"
t_check "etcd dies: no worker left behind" gone_within 5 $ws
# ---- etcd hangs mid-job (SIGSTOP): connections open, no answer. The launchers stop their
# workers and end as for a dead etcd, naming the endpoint; nothing waits forever.
export BATON_JOB_ID=etcd-$$-c
t_etcd_one
hc=$T_ETCD_PORT HPID=$T_ETCD_PID
t_on_exit 'kill -CONT $HPID 2>/dev/null'
D=$T_TMP/c; mkdir -p "$D"
hnode() { # NAME ID
    t_bg "$BATON" run --nnodes 2:3 --node-rank "$2" --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$hc" \
        -n 1 --rdzv-last-call 1 --grace 3 --join-timeout 3 -- "$W" "$D" >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
hnode h0 0; p0=$T_LAST_PID
hnode h1 1; p1=$T_LAST_PID
t_check "etcd hangs: 2 nodes up" t_wait_files 2 "$D" 30 '^up\.0\.'
ws="$(cat "$D"/up.0.* | grep -oE 'pid=[0-9]+' | cut -d= -f2 | xargs)"
kill -STOP "$HPID"
status_of "$p0" 60 >"$T_TMP/s0"; status_of "$p1" 60 >"$T_TMP/s1"
t_expect_eq "etcd hangs: both launchers end, exit 142 (retryable), not a hang" \
    "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "142 142"
t_grep "etcd hangs: the generation ends naming etcd, not node 0" \
    "generation 0 ended: node [01] \(host [^)]+\) lost contact with etcd at 127.0.0.1:$hc: .*hint: is etcd running" "$T_TMP/h0.err"
t_grep "etcd hangs: the last line names the etcd endpoint and that it did not answer" \
    "etcd at 127.0.0.1:$hc: .*(Timeout|timed out)" "$T_TMP/h0.err"
t_check "etcd hangs: not reported as a hang of the workers (outcome H)" \
    sh -c "! grep -q 'job hung' '$T_TMP/h0.err' '$T_TMP/h1.err'"
t_check "etcd hangs: no worker left behind" gone_within 5 $ws
kill -CONT "$HPID"
t_done
