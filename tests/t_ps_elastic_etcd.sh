#!/usr/bin/env bash
# t_ps_elastic_etcd.sh: `baton run --ps 1` in an elastic job (--nnodes 2:3) under
# --rdzv-backend etcd, a real one-member etcd on 127.0.0.1. There the server runs on the node at
# node rank 0 of the generation and publishes in that node's store for workers (launcher/run_ps.c);
# its checkpoint (BATON_PS_CKPT_DIR, BATON_PS_CKPT_SYNC=1) is in a directory every node shares.
# One sync tests/progs/ps_count worker per node steps until the count in a stop file:
#  - node 1 (not node rank 0) SIGKILLed: the server keeps its pid, the two others go on from
#    the count generation 0 reached; a replacement node 1 joins (node rank 2);
#  - node 0 (node rank 0: the server's host and the workers' store) SIGKILLed: its server dies
#    with it; the new node rank 0 (the replacement node 1: node 2 keeps its node rank 1) starts
#    the server again, which reloads its shards, and the workers go on from the count reached:
#    every push applied once;
#  - a replacement node 0 joins (3 nodes again): the server stays where it is (same pid).
# Every wait is on a line or a file, bounded.
# timeout: 180
. "$(dirname "$0")/lib.sh"
P=$BATON_BUILD/tests/progs
export BATON_TOKEN=psetcd-$$ BATON_HEARTBEAT_TIMEOUT=2 BATON_JOB_ID=psetcd-$$
t_etcd_need "--ps under etcd"
t_etcd_one

D=$T_TMP/d; mkdir -p "$D"
node() { # NAME ID
    t_bg env -u BATON_RDZV -u BATON_PS_SERVERS -u BATON_PS_PARTITION_BYTES BATON_DEBUG=INFO \
        BATON_DEBUG_SUBSYS=PS BATON_PS_CKPT_DIR="$D/ckpt" BATON_PS_CKPT_SYNC=1 PS_COUNT_STOP="$D/stop" \
        "$BATON" run --nnodes 2:3 --node-rank "$2" --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$T_ETCD_PORT" \
        -n 1 --ps 1 --rdzv-last-call 1 --grace 3 --join-timeout 60 -- "$P/ps_count" e 1000000 64 sync \
        >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
srv() { ps -o pid=,args= --ppid "$1" | awk '$3 == "ps" && $4 == "--index" { print $1 }'; }
O=$T_TMP/n2.out # node 2 lives throughout: its worker starts once in every generation
node n0 0; p0=$T_LAST_PID
node n1 1; p1=$T_LAST_PID
node n2 2; p2=$T_LAST_PID
t_check "etcd, --ps 1, 2:3: three sync workers step (generation 0)" t_ps_wait "$O" 1 60
s0=$(srv "$p0")
t_check "node 0 (node rank 0) runs the server" test -n "$s0"
t_expect_eq "no other node runs one" "$(srv "$p1")$(srv "$p2")" ""

kill -KILL "$p1"
t_check "node 1 killed: the two others step again (generation 1)" t_ps_wait "$O" 2 60
t_expect_eq "node 1 killed: the server is the same process" "$(srv "$p0")" "$s0"
t_grep "node 1 killed: the server serves generation 1 (2 workers)" \
    '^\[ps0\] .*generation 1 of the job \(2 workers\) replaces generation 0 \(3 workers\)' "$T_TMP/n0.err"
t_check "generation 1 starts where generation 0 ended: $(t_ps_last "$O" 1) -> $(t_ps_start "$O" 2)" t_ps_once "$O" 2
node n1b 1; p1=$T_LAST_PID
t_check "replacement node 1: three workers step (generation 2)" t_ps_wait "$O" 3 60
t_expect_eq "replacement node 1: the server is still node 0's" "$(srv "$p0")" "$s0"
t_check "generation 2 starts where generation 1 ended: $(t_ps_last "$O" 2) -> $(t_ps_start "$O" 3)" t_ps_once "$O" 3

kill -KILL "$p0"
t_check "node 0 killed: its server dies with it" gone_within 10 "$s0"
t_check "node 0 killed: the two others step again (generation 3)" t_ps_wait "$O" 4 60
s1=$(srv "$p1")
t_check "the replacement node 1, node rank 0 now, runs the server" test -n "$s1"
t_expect_eq "node 2 does not" "$(srv "$p2")" ""
t_grep "node 1 says it starts the server" \
    "^baton: node 1 is node rank 0 of generation 3: starting ps server 0 here" "$T_TMP/n1b.err"
t_grep "the new server reloaded its shards" '^\[ps0\] .*ps server 0 resumed from .*/ckpt/ps-0\.ckpt' "$T_TMP/n1b.err"
t_check "generation 3 starts where generation 2 ended: $(t_ps_last "$O" 3) -> $(t_ps_start "$O" 4)" t_ps_once "$O" 4

node n0b 0; p0=$T_LAST_PID
t_check "replacement node 0: three workers step (generation 4)" t_ps_wait "$O" 5 60
t_expect_eq "replacement node 0: the server is still node 1's" "$(srv "$p1")" "$s1"
t_expect_eq "replacement node 0: it runs no server" "$(srv "$p0")" ""
t_check "generation 4 starts where generation 3 ended: $(t_ps_last "$O" 4) -> $(t_ps_start "$O" 5)" t_ps_once "$O" 5
echo $(($(t_ps_last "$O" 5) + 100)) >"$D/.stop" && mv "$D/.stop" "$D/stop" # all stop at this count
t_wait_ok "stop: the three launchers exit 0" 60 "$p0" "$p1" "$p2"
[ "$T_RC" = 0 ] || grep -vh '^\[[0-9]\] step' "$T_TMP"/n*.err | tail -25 | sed 's/^/    | /'
final=$(sed -n 's/^\[[0-9]*\] final e //p' "$T_TMP"/n*.out | sort -u | xargs)
t_expect_eq "every worker ends at the stop count" "$final" "$(cat "$D/stop")"
t_check "the server is gone" gone_within 5 "$s1"
t_done
