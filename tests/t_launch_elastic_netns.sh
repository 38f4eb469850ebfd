#!/usr/bin/env bash
# t_launch_elastic_netns.sh: an elastic job (--nnodes 2:3) across three network namespaces
# (198.51.100.1-3/24 on veths to a bridge in a fourth namespace; the host's network is never
# touched). Node 2's link is taken down: the store stops hearing its heartbeat lease
# (BATON_HEARTBEAT_TIMEOUT=2), nodes 0 and 1 go on as a world of 2, and the cut node stops its
# own workers; the link comes back: node 2 rejoins and the job is 3 again. Needs root and
# `ip netns`; skips visibly otherwise.
# timeout: 120
source "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
t_netns e$$ 3

D=$T_TMP/d; mkdir -p "$D"
port=$(t_free_port)
for i in 0 1 2; do
    t_bg env BATON_TOKEN=netns-$$ BATON_HEARTBEAT_TIMEOUT=2 BATON_KEEPALIVE_IDLE=1 \
        BATON_KEEPALIVE_INTVL=1 BATON_KEEPALIVE_CNT=2 \
        ip netns exec "${T_NS[i]}" "$BATON" run --nnodes 2:3 --node-rank $i \
        --rdzv 198.51.100.1:$port -n 1 --rdzv-last-call 1 --grace 3 -- "$W" "$D" \
        >"$T_TMP/n$i.out" 2>"$T_TMP/n$i.err"
    P[$i]=$T_LAST_PID
done
t_check "3 namespaces at 2:3: generation 0 runs" t_wait_files 3 "$D" 30 '^up\.0\.'
t_expect_eq "3 namespaces: world 3" "$(t_worlds "$D" 0)" "3 world=3"
w2=$(grep -oE 'pid=[0-9]+' "$D/up.0.2" | cut -d= -f2)
ip -n "${T_NS[2]}" link set "${T_VETH[2]}" down
t0=$(date +%s.%N)
t_check "node 2 cut off: nodes 0 and 1 run as generation 1" t_wait_files 2 "$D" 20 '^up\.1\.'
echo "# cut link to the survivors running again: $(echo "$(date +%s.%N) - $t0" | bc) s (heartbeat 2 s)"
t_expect_eq "node 2 cut off: world 2" "$(t_worlds "$D" 1)" "2 world=2"
t_grep "node 2 cut off: its lease ran out, the survivors name it" \
    "generation 0 ended: node 2 \(host [^,]+, pid [0-9]+\) lost contact" "$T_TMP/n0.err"
t_check "node 2 cut off: it stops its own worker" gone_within 15 "$w2"
t_check "node 2 cut off: it says it lost the store and retries" t_wait_grep \
    "node 2: lost the rendezvous store at 198.51.100.1:$port; retrying" "$T_TMP/n2.err" 10
ip -n "${T_NS[2]}" link set "${T_VETH[2]}" up
t_check "link back: node 2 rejoins, 3 nodes again" t_wait_files 3 "$D" 30 '^up\.2\.'
t_expect_eq "link back: world 3" "$(t_worlds "$D" 2)" "3 world=3"
touch "$D/stop"
for i in 0 1 2; do t_wait "${P[$i]}" 30 >"$T_TMP/rc$i"; done
t_expect_eq "every launcher exits 0" "$(cat "$T_TMP"/rc0) $(cat "$T_TMP"/rc1) $(cat "$T_TMP"/rc2)" "0 0 0"
t_done
