#!/usr/bin/env bash
# t_launch_elastic_etcd_lease.sh: under --rdzv-backend etcd a live launcher keeps its lease
# whatever its threads wait on, so a survivor re-forms instead of being declared lost itself.
# Two launchers at --nnodes 1:2 on a one-member etcd, lease TTL 2 s (BATON_HEARTBEAT_TIMEOUT):
#  - node 1 joins node 0's running generation 0; node 0 is SIGKILLed as soon as generation 1
#    formed, while node 1 waits up to 5 s for it in the clock exchange of the straggler look:
#    node 1 re-forms generation 2 alone (it used to exit 1: "this launcher's lease expired",
#    its lease having been renewed only by its requests, none of which came in those 5 s);
#  - workers that ignore SIGTERM, --grace 4: node 1 SIGKILLed, node 0 waits out the grace
#    (longer than the TTL) before its worker dies, and still re-forms alone.
# Every wait is on a line or a file, bounded.
# timeout: 120
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
export BATON_TOKEN=lease-$$ BATON_HEARTBEAT_TIMEOUT=2
t_etcd_need "etcd lease"


t_etcd_one
hc=$T_ETCD_PORT

node() { # NAME ID DIR ARGS... (after --)
    local name=$1 id=$2 dir=$3; shift 3
    t_bg "$BATON" run --nnodes 1:2 --node-rank "$id" --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$hc" \
        -n 1 --rdzv-last-call 1 --join-timeout 30 "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}

# ---- node 0 lost while node 1 waits on it in the clock exchange
export BATON_JOB_ID=lease-$$-a
D=$T_TMP/a; mkdir -p "$D"
node a0 0 "$D" --grace 3 -- "$W" "$D" --ack; p0=$T_LAST_PID
t_check "node 0 runs generation 0 alone" t_wait_files 1 "$D" 30 '^up\.0\.0$'
node a1 1 "$D" --grace 3 -- "$W" "$D" --ack; p1=$T_LAST_PID
t_check "node 1 joins: generation 1 forms" t_wait_grep '^baton: generation 1: 2 node' "$T_TMP/a0.err" 30
kill -KILL "$p0"
t0=$(date +%s.%N)
t_check "node 0 SIGKILLed as generation 1 formed: node 1 runs generation 2 alone" \
    t_wait_files 1 "$D" 30 '^up\.2\.0$'
echo "# node 0 SIGKILLed as generation 1 formed: node 1 ran again $(echo "$(date +%s.%N) - $t0" | bc) s later (lease TTL 2 s)"
t_expect_eq "node 0 SIGKILLed: world 1" "$(t_worlds "$D" 2)" "1 world=1"
t_check "node 1 was not declared lost itself" sh -c "! grep -q 'lease expired' '$T_TMP/a1.err'"
touch "$D/stop"
t_wait "$p1" 20 >"$T_TMP/s1"
t_expect_eq "node 1 exits 0" "$(cat "$T_TMP/s1")" 0

# ---- a grace longer than the TTL: workers that ignore SIGTERM
export BATON_JOB_ID=lease-$$-b
D=$T_TMP/b; mkdir -p "$D"
P=$T_TMP/deaf.sh
cat >"$P" <<'SH'
#!/bin/sh
# deaf.sh DIR: ignores SIGTERM; notes its generation and world, then waits for DIR/stop
trap '' TERM
echo "world=$WORLD_SIZE pid=$$" >"$1/.up.$BATON_RESTART_COUNT.$RANK" && mv "$1/.up.$BATON_RESTART_COUNT.$RANK" "$1/up.$BATON_RESTART_COUNT.$RANK"
while [ ! -e "$1/stop" ]; do sleep 0.1; done
SH
chmod +x "$P"
node b0 0 "$D" --grace 4 -- "$P" "$D"; p0=$T_LAST_PID
node b1 1 "$D" --grace 4 -- "$P" "$D"; p1=$T_LAST_PID
t_check "deaf workers: 2 nodes up" t_wait_files 2 "$D" 30 '^up\.0\.'
t_expect_eq "deaf workers: world 2" "$(t_worlds "$D" 0)" "2 world=2"
kill -KILL "$p1"
t_check "node 1 SIGKILLed: node 0 stops its deaf worker (SIGKILL after 4 s) and runs generation 1 alone" \
    t_wait_files 1 "$D" 30 '^up\.1\.0$'
t_check "node 0 was not declared lost itself" sh -c "! grep -q 'lease expired' '$T_TMP/b0.err'"
touch "$D/stop"
t_wait "$p0" 20 >"$T_TMP/s0"
t_expect_eq "node 0 exits 0" "$(cat "$T_TMP/s0")" 0
t_done
