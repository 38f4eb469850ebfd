#!/usr/bin/env bash
# t_coll_netns.sh: collectives across real interfaces: three network namespaces, each a
# "node" with one veth link (198.51.100.1-3/24) to a bridge that lives in a fourth namespace,
# so the host's own network is never touched. Checks that the TCP transport picks the veth
# (not lo), that the job runs, and that a node whose link goes down makes the others fail
# within a few seconds. Needs root and `ip netns`; skips visibly otherwise.
# timeout: 180
source "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
t_netns c$$ 3

# start_job NAME ARGS...: one `baton run` per namespace; pids in JOB_PIDS.
start_job() {
    local name=$1; shift
    JOB_PIDS=()
    for i in 2 1 0; do
        t_bg env BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=NET BATON_KEEPALIVE_IDLE=1 \
            BATON_KEEPALIVE_INTVL=1 BATON_KEEPALIVE_CNT=2 \
            ip netns exec "${T_NS[i]}" timeout 120 "$BATON" run --nnodes 3 --node-rank $i \
            --rdzv 198.51.100.1:29400 -n 1 -- "$CHECK" "$@" >"$T_TMP/$name.$i.log" 2>&1
        JOB_PIDS[$i]=$T_LAST_PID
    done
}

start_job ok --iters 5
for i in 0 1 2; do t_wait "${JOB_PIDS[$i]}" 90 >"$T_TMP/rc$i"; done
for i in 0 1 2; do t_expect_eq "3 namespaces: node $i exit status" "$(cat "$T_TMP/rc$i")" 0; done
t_grep "3 namespaces: rank 0 ok" 'rank 0 ok' "$T_TMP/ok.0.log"
t_grep "3 namespaces: rank 2 ok" 'rank 2 ok' "$T_TMP/ok.2.log"
t_grep "3 namespaces: TCP on the veth, chosen by the route to the store" \
    "TCP on interface ${T_VETH[1]} address 198.51.100.2 \(the route" "$T_TMP/ok.1.log"

# Link down in the middle of a long run of large allreduces.
start_job down --count 4194304 --iters 100000
for _ in $(seq 1 300); do
    [ "$(cat "$T_TMP"/down.*.log 2>/dev/null | grep -c 'loop started')" -ge 3 ] && break
    sleep 0.1
done
ip -n "${T_NS[2]}" link set "${T_VETH[2]}" down
t0=$SECONDS
t_wait "${JOB_PIDS[0]}" 60 >"$T_TMP/rc0"; t_wait "${JOB_PIDS[1]}" 60 >"$T_TMP/rc1"
rc0=$(cat "$T_TMP/rc0"); rc1=$(cat "$T_TMP/rc1")
took=$((SECONDS - t0))
t_check "link down: nodes 0 and 1 failed (exit $rc0, $rc1)" test "$rc0" != 0 -a "$rc1" != 0 \
    -a "$rc0" != 124 -a "$rc1" != 124
t_check "link down: noticed within 15 s (took $took s)" test "$took" -le 15
cat "$T_TMP"/down.0.log "$T_TMP"/down.1.log >"$T_TMP/down.log"
t_grep "link down: a survivor's collective failed with a reason" \
    'collective failed after|failed|lost' "$T_TMP/down.log"
t_wait "${JOB_PIDS[2]}" 30 >/dev/null
t_done
