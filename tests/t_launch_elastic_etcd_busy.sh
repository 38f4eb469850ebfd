#!/usr/bin/env bash
# t_launch_elastic_etcd_busy.sh: etcd answering HTTP 503 for a while (its members electing a
# leader, a disk too slow for its fsyncs) is no lost contact. Two launchers at --nnodes 1:2 talk
# to a real one-member etcd through tests/progs/etcd_busy.py, a proxy that answers 503 to every
# request in a window the test opens. A window of 1 s (shorter than a request's budget,
# BATON_HEARTBEAT_TIMEOUT = 3 s): the generation goes on (no generation ends, the workers keep
# their pids), and a node SIGKILLed afterwards is still seen lost (the other re-forms alone).
# A window of 8 s: the launcher says "HTTP 503 (...), still after N s of retries", and once
# the window is over it rejoins and runs again. Every wait is on a line or a file, bounded.
# timeout: 120
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
export BATON_TOKEN=busy-$$ BATON_HEARTBEAT_TIMEOUT=3 BATON_JOB_ID=busy-$$
t_etcd_need "etcd 503"

pid_of() { grep -oE 'pid=[0-9]+' "$1" | cut -d= -f2; }

px=$(t_free_port)
t_etcd_one
hc=$T_ETCD_PORT
CTL=$T_TMP/busy
t_bg python3 "$BATON_SRC/tests/progs/etcd_busy.py" "$px" "127.0.0.1:$hc" "$CTL" \
    >"$T_TMP/proxy.out" 2>"$T_TMP/proxy.err"
t_check "etcd and the 503 proxy up" t_wait_grep '^ready' "$T_TMP/proxy.out" 15

D=$T_TMP/d; mkdir -p "$D"
node() { # NAME ID
    t_bg "$BATON" run --nnodes 1:2 --node-rank "$2" --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$px" \
        -n 1 --rdzv-last-call 1 --grace 3 --join-timeout 60 -- "$W" "$D" >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
node n0 0; p0=$T_LAST_PID
node n1 1; p1=$T_LAST_PID
t_check "2 nodes up through the proxy" t_wait_files 2 "$D" 30 '^up\.0\.'
t_expect_eq "world 2" "$(t_worlds "$D" 0)" "2 world=2"
w0=$(pid_of "$D/up.0.0") w1=$(pid_of "$D/up.0.1")

# ---- 1 s of 503: asked again, nothing ends
echo 1 >"$CTL"
t_check "503 window of 1 s: requests refused, then passed again" t_wait_grep '^pass after [0-9]+' "$T_TMP/proxy.err" 20
n=$(sed -n 's/^pass after //p' "$T_TMP/proxy.err" | head -1)
t_check "503 window of 1 s: the launchers asked again ($n requests refused)" test "${n:-0}" -ge 4
t_check "503 window of 1 s: no generation ended" \
    sh -c "! grep -h 'generation 0 ended\|lost contact\|lost etcd' '$T_TMP/n0.err' '$T_TMP/n1.err'"
t_check "503 window of 1 s: both workers still run (same pids)" kill -0 "$w0" "$w1"
t_expect_eq "503 window of 1 s: no generation 1" "$(ls "$D" | grep -c '^up\.1\.')" 0

# ---- then a node is lost: still seen
kill -KILL "$p1"
t_check "node 1 SIGKILLed after the window: node 0 re-forms alone" t_wait_files 1 "$D" 20 '^up\.1\.'
t_expect_eq "node 1 SIGKILLed after the window: world 1" "$(t_worlds "$D" 1)" "1 world=1"

# ---- 8 s of 503: longer than the budget; said so, then back
rm -f "$CTL"
echo 8 >"$CTL"
t_check "503 window of 8 s: node 0 gives up on the request, naming the answer and the retries" \
    t_wait_grep "etcd http://127.0.0.1:$px/v3/[a-z/]+: HTTP 503 \(etcdserver: leader changed\), still after [3-9]\.[0-9] s of retries" \
    "$T_TMP/n0.err" 20
t_check "503 window of 8 s: node 0 runs again once it is over" t_wait_files 1 "$D" 40 '^up\.([2-9]|[1-9][0-9])\.'
touch "$D/stop"
t_wait "$p0" 20 >"$T_TMP/s0"
t_expect_eq "node 0 exits 0" "$(cat "$T_TMP/s0")" 0
t_done
