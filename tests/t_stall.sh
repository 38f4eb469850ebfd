#!/usr/bin/env bash
# t_stall.sh: hangs and freezes under `baton run`, with short limits (BATON_TIMEOUT=5,
# BATON_HEARTBEAT_TIMEOUT=3): a SIGSTOPped rank on one node and across two nodes ends the job
# with 142 naming it (the ranks that timed out are its consequences); a rank that never
# reaches bt_init is named by its rank; a SIGSTOPped launcher of node 1 is declared lost by
# node 0 (129); a store host frozen at the end of a successful job leaves a success.
# timeout: 180
. "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
W=$BATON_BUILD/tests/progs/launch_worker
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }
export BATON_TIMEOUT=5 BATON_HEARTBEAT_TIMEOUT=3

node() { # NAME RANK PORT ARGS...: a launcher of a 2-node job in the background
    local name=$1 rank=$2 port=$3; shift 3
    t_bg "$BATON" run --nnodes 2 --node-rank "$rank" --rdzv "127.0.0.1:$port" "$@" \
        >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
STOP2=(-- "$CHECK" --count 1048576 --iters 400 --die-rank 2 --die-at 3 --signal STOP)

# ---- one node: rank 2 of 4 stops itself in the middle of the allreduces
t0=$SECONDS
t_bg "$BATON" run -n 4 "${STOP2[@]}" >"$T_TMP/one.out" 2>"$T_TMP/one.err"
t_wait "$T_LAST_PID" 60 >/dev/null
t_expect_eq "SIGSTOP rank 2: exit 142 (retryable hang)" "$T_RC" 142
t_check "SIGSTOP rank 2: ends within BATON_TIMEOUT + 6 s" test $((SECONDS - t0)) -le 11
t_grep "SIGSTOP rank 2: the root cause names rank 2 as stopped, and the collective" \
    "^baton: job failed: job hung: rank 2 \(node 0, host [^,]+, pid [0-9]+, stopped: SIGSTOP; .*\) stalled; rank [013] \(node 0\) waited for it in allreduce #[0-9]+ for 5 s; rank [013] .* because of it \(a consequence, not the cause\)" \
    "$T_TMP/one.err"
t_grep "SIGSTOP rank 2: the launcher named the stopped rank when it saw it" \
    "^baton: rank 2 \(node 0, pid [0-9]+\) is stopped \(state T" "$T_TMP/one.err"

# ---- two nodes: rank 2 (node 1's first) stops; both launchers name it and exit 142
port=$(t_free_port)
t0=$SECONDS
node s0 0 "$port" -n 2 "${STOP2[@]}"; p0=$T_LAST_PID
node s1 1 "$port" -n 2 "${STOP2[@]}"; p1=$T_LAST_PID
t_wait "$p0" 60 >"$T_TMP/rc0"; t_wait "$p1" 60 >"$T_TMP/rc1"
t_expect_eq "two nodes, SIGSTOP rank 2: both exit 142" "$(cat "$T_TMP/rc0") $(cat "$T_TMP/rc1")" "142 142"
t_check "two nodes, SIGSTOP rank 2: within BATON_TIMEOUT + 8 s" test $((SECONDS - t0)) -le 13
t_grep "two nodes: node 0 names rank 2 on node 1, stopped" \
    "^baton: job failed: job hung: rank 2 \(node 1, host [^,]+, pid [0-9]+, stopped: SIGSTOP" "$T_TMP/s0.err"
t_expect_eq "two nodes: the same root-cause line on both" \
    "$(grep '^baton: job failed' "$T_TMP/s0.err")" "$(grep '^baton: job failed' "$T_TMP/s1.err")"

# ---- a rank that never reaches bt_init is named by its real rank
cat >"$T_TMP/late.sh" <<EOF
#!/bin/sh
[ "\$BATON_RANK" = 1 ] && exec sleep 60
exec "$CHECK" --count 1024 --iters 10
EOF
chmod +x "$T_TMP/late.sh"
t_bg "$BATON" run -n 3 -- "$T_TMP/late.sh" >"$T_TMP/late.out" 2>"$T_TMP/late.err"
t_wait "$T_LAST_PID" 60 >/dev/null
t_expect_eq "never attached: exit 142" "$T_RC" 142
t_grep "never attached: rank 1 named as never reaching bt_init" \
    "job hung: rank 1 \(node 0, host [^,]+, pid [0-9]+; never reached bt_init\) stalled" "$T_TMP/late.err"
t_expect_eq "never attached: no 'rank 0 (pid 0)'" "$(grep -c 'rank(s) 0 (pid 0' "$T_TMP/late.err")" 0

# ---- node 1's launcher is SIGSTOPped: node 0 declares it lost within the heartbeat bound
port=$(t_free_port)
mkdir -p "$T_TMP/f"
node f0 0 "$port" -n 2 -- "$W" --pidfile "$T_TMP/f" --sleep 60; p0=$T_LAST_PID
node f1 1 "$port" -n 2 -- "$W" --pidfile "$T_TMP/f" --sleep 60; p1=$T_LAST_PID
if t_wait_files 4 "$T_TMP/f" 20 '^pid\.'; then
    kill -STOP "$p1"
    t0=$SECONDS
    t_wait "$p0" 30 >/dev/null
    t_expect_eq "frozen node 1: node 0 exits 129" "$T_RC" 129
    t_check "frozen node 1: within BATON_HEARTBEAT_TIMEOUT + 3 s" test $((SECONDS - t0)) -le 6
    t_grep "frozen node 1: node 0 names node 1 and the heartbeat" \
        "^baton: job failed: node 1 \(host [^,]+, pid $p1\) lost contact with the rendezvous store \(its connection closed, or no heartbeat for 3 s\)" \
        "$T_TMP/f0.err"
    t_check "frozen node 1: node 0's workers are gone" gone_within 3 "$(cat "$T_TMP/f/pid.0")" "$(cat "$T_TMP/f/pid.1")"
    kill -CONT "$p1"
    t_wait "$p1" 30 >/dev/null
    t_check "frozen node 1: after SIGCONT it ends too, non-zero" test "$T_RC" -ge 128
else
    t_fail "frozen node 1" "workers did not start"
fi

# ---- the store host (node 0) freezes while the job finishes: node 1 succeeds, and so does
# node 0 once continued; no internal wording leaks
port=$(t_free_port)
mkdir -p "$T_TMP/e"
node e0 0 "$port" -n 2 -- "$W" --pidfile "$T_TMP/e" --sleep 2; p0=$T_LAST_PID
node e1 1 "$port" -n 2 -- "$W" --pidfile "$T_TMP/e" --sleep 2; p1=$T_LAST_PID
if t_wait_files 4 "$T_TMP/e" 20 '^pid\.'; then
    kill -STOP "$p0"
    t_wait "$p1" 30 >/dev/null
    t_expect_eq "frozen store host at the end: node 1 exits 0" "$T_RC" 0
    t_grep "frozen store host: node 1 says its part succeeded" \
        "^baton: every worker on node 1 exited 0; then the rendezvous store \(node 0\) stopped answering" \
        "$T_TMP/e1.err"
    kill -CONT "$p0"
    t_wait "$p0" 30 >/dev/null
    t_expect_eq "frozen store host: node 0, continued, exits 0" "$T_RC" 0
    t_expect_eq "frozen store host: no internal message" "$(cat "$T_TMP/e0.err" "$T_TMP/e1.err" | grep -c 'connect again')" 0
else
    t_fail "frozen store host" "workers did not start"
fi
t_done
