#!/usr/bin/env bash
# t_ps.sh: the parameter server as real processes: `baton ps` servers found through the store,
# two sync workers training a key split across both servers; one server is killed with
# SIGKILL mid-training and restarted from its checkpoint, the workers reconnect by themselves
# and training goes on from the checkpoint (the loss never goes back up to where it started);
# the servers exit 0 once both workers closed; SIGTERM writes a checkpoint and exits 0; the
# chief's shutdown ends the servers; usage errors exit 2 with one line.
# timeout: 150
. "$(dirname "$0")/lib.sh"
P=$BATON_BUILD/tests/progs
export BATON_TOKEN=t-ps-$$ BATON_TIMEOUT=20 BATON_PS_SERVERS=2 BATON_WORLD_SIZE=2
export BATON_PS_PARTITION_BYTES=4K
if [ ! -x "$BATON" ] || [ ! -x "$P/ps_train" ] || [ ! -x "$P/ps_rdzv" ]; then
    t_skip "parameter server processes" "build $BATON and tests/progs first"; t_done; fi

# wait_for FILE PATTERN SECONDS: 0 once a line of FILE matches.
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

t_bg "$P/ps_rdzv" "$T_TMP/port"
wait_for "$T_TMP/port" '^[0-9]+$' 10 || { t_fail "store started"; t_done; }
export BATON_RDZV=127.0.0.1:$(cat "$T_TMP/port")
CK=$T_TMP/ckpt
# expect_exit NAME PID SECONDS WANT: t_wait outside $(...), since a subshell cannot wait.
expect_exit() { t_wait "$2" "$3" >"$T_TMP/rc"; t_expect_eq "$1" "$(cat "$T_TMP/rc")" "$4"; }
server() { t_bg "$BATON" ps --index "$1" --checkpoint-dir "$CK" --checkpoint-steps 1 "${@:2}" \
    2>>"$T_TMP/ps$1.log"; }

server 0; S0=$T_LAST_PID
server 1; S1=$T_LAST_PID
BATON_RANK=0 t_bg "$P/ps_train" 120 3000 sync >"$T_TMP/w0.out" 2>"$T_TMP/w0.err"; W0=$T_LAST_PID
BATON_RANK=1 t_bg "$P/ps_train" 120 3000 sync >"$T_TMP/w1.out" 2>"$T_TMP/w1.err"; W1=$T_LAST_PID
if wait_for "$T_TMP/w0.out" '^step 30 ' 40; then t_ok "two sync workers train through two servers"
else t_fail "two sync workers train through two servers" "$(tail -3 "$T_TMP/w0.err")"; fi

kill -KILL "$S1"
expect_exit "server 1 killed with SIGKILL" "$S1" 10 137
t_check "server 1 left a checkpoint" test -s "$CK/ps-1.ckpt"
server 1; S1=$T_LAST_PID
expect_exit "worker 0 finishes after the restart" "$W0" 60 0
expect_exit "worker 1 finishes after the restart" "$W1" 60 0
t_grep "the restarted server reloaded its checkpoint" 'resumed from .*ps-1.ckpt' "$T_TMP/ps1.log"
t_grep "the workers noticed the restart" 'ps server 1 .* restarted' "$T_TMP/w0.err"
# Training went on from the checkpoint: after the kill (step > 30) the loss stays below the
# loss of step 10, and ends far below where it started.
t_check "training went on from the checkpoint" awk '
    $1 == "step" { loss[$2] = $4; last = $2 }
    END { if (last != 119) exit 1
          for (s = 31; s <= last; s++) if (loss[s] >= loss[10]) exit 1
          exit !(loss[last] < loss[0] * 1e-3) }' "$T_TMP/w0.out"
expect_exit "server 0 exits 0 once every worker closed" "$S0" 15 0
expect_exit "server 1 exits 0 once every worker closed" "$S1" 15 0

# SIGTERM: a checkpoint, then exit 0.
rm -rf "$CK"
export BATON_RESTART_COUNT=1
server 0; S0=$T_LAST_PID
wait_for "$T_TMP/port" . 1
for ((i = 0; i < 100; i++)); do [ -d "$CK" ] && break; sleep 0.1; done
kill -TERM "$S0"
expect_exit "SIGTERM: server exits 0" "$S0" 10 0
t_check "SIGTERM: checkpoint written" test -s "$CK/ps-0.ckpt"

# The chief says the job is done: servers exit at once (worker 1 never closes). Another job
# (one server, not two: the key placement in a job's store is for all its generations), so
# another store.
export BATON_RESTART_COUNT=2 BATON_PS_SERVERS=1 BATON_WORLD_SIZE=1
t_bg "$P/ps_rdzv" "$T_TMP/port2"
wait_for "$T_TMP/port2" '^[0-9]+$' 10 || t_fail "second store started"
export BATON_RDZV=127.0.0.1:$(cat "$T_TMP/port2")
t_bg "$BATON" ps --index 0 2>>"$T_TMP/ps-done.log"; S0=$T_LAST_PID
PS_TRAIN_SHUTDOWN=1 BATON_RANK=0 t_bg "$P/ps_train" 3 10 async >/dev/null 2>"$T_TMP/w-done.err"
expect_exit "the chief's shutdown: worker exits 0" "$T_LAST_PID" 30 0
expect_exit "the chief's shutdown: server exits 0" "$S0" 10 0

# Usage errors: exit 2, one line naming the flag.
"$BATON" ps --port abc >/dev/null 2>"$T_TMP/usage.err"; rc=$?
t_expect_eq "baton ps --port abc exits 2" "$rc" 2
t_grep "the usage error names the flag" "--port 'abc'" "$T_TMP/usage.err"
"$BATON" help ps >"$T_TMP/help.out" 2>&1
t_grep "baton help ps" 'checkpoint-dir' "$T_TMP/help.out"
t_done
