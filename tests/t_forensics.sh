#!/usr/bin/env bash
# t_forensics.sh: the failure summary. A Python rank raising ValueError under @record on a job of
# two nodes: both nodes name it, with the exception's words and its last frames; a C worker's
# stderr tail when it wrote no error file; bt_error_record's message; the earliest failure by
# time is the root cause (and its status the job's) even when a consequence was posted first;
# the termination-message file, `kubectl logs POD` inside a pod; a rank of node 1 killed by a
# signal is named with it on both nodes; each worker's two error-file names hold one path of its
# own; an unwritable --log-dir or termination path costs one line, not the job.
# timeout: 240
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/launch_worker
PY=/usr/bin/python3

node() { # NAME RANK PORT ARGS...: a launcher in the background, output in $T_TMP/NAME.{out,err}
    local name=$1 rank=$2 port=$3; shift 3
    t_bg "$BATON" run --nnodes 2 --node-rank "$rank" --rdzv "127.0.0.1:$port" "$@" \
        >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
status_of() { t_wait "$1" "$2" >"$T_TMP/rc"; cat "$T_TMP/rc"; }
# pair TAG ARGS...: nodes TAG0 and TAG1 of one job, both run with ARGS; pids in q0 and q1
pair() {
    local tag=$1 port
    shift
    port=$(t_free_port)
    node "${tag}0" 0 "$port" "$@"; q0=$T_LAST_PID
    node "${tag}1" 1 "$port" "$@"; q1=$T_LAST_PID
}
# statuses SECS: waits for q0 and q1 (each within SECS); prints "status0 status1"
statuses() {
    status_of "$q0" "$1" >"$T_TMP/s0"; status_of "$q1" "$1" >"$T_TMP/s1"
    echo "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")"
}

# ---- Python ValueError under @record, rank 2 of 4 (node 1): both nodes name it
if $PY -c 'import torch.distributed.elastic.multiprocessing.errors' 2>/dev/null; then
    cat >"$T_TMP/bad.py" <<'PYEOF'
import os, sys, time
from torch.distributed.elastic.multiprocessing.errors import record

def load(i):
    raise ValueError(f"bad batch {i}")

@record
def main():
    if int(os.environ["RANK"]) == 2:
        load(7)
    time.sleep(60)

if __name__ == "__main__":
    main()
PYEOF
    port=$(t_free_port)
    # each node its own --log-dir, as on two machines (the error files are per local rank in it)
    node p0 0 "$port" -n 2 --log-dir "$T_TMP/plogs0" -- $PY "$T_TMP/bad.py"; q0=$T_LAST_PID
    node p1 1 "$port" -n 2 --log-dir "$T_TMP/plogs1" -- $PY "$T_TMP/bad.py"; q1=$T_LAST_PID
    statuses 90 >"$T_TMP/st"
    t_expect_eq "python ValueError: both launchers exit 1" "$(cat "$T_TMP/st")" "1 1"
    for n in 0 1; do
        t_grep "python ValueError: node $n's summary names rank 2 on node 1 and the exception" \
            "^baton: root cause: rank 2 on node 1 \(host [^)]+\) at [0-9:.]+ UTC: ValueError: bad batch 7$" "$T_TMP/p$n.err"
        t_grep "python ValueError: node $n's summary has the raising frame" \
            '^baton:   \|     raise ValueError\(f"bad batch \{i\}"\)$' "$T_TMP/p$n.err"
        t_grep "python ValueError: node $n's summary says where the output is" \
            "^baton:   full output: /.*/plogs1/rank\.2\.log$" "$T_TMP/p$n.err"
        t_grep "python ValueError: node $n's job-failed line gives rank 2's exit code" \
            "^baton: job failed: rank 2 \(node 1, host [^,]+, pid [0-9]+\) exited with code 1 " "$T_TMP/p$n.err"
    done
else
    t_skip "python ValueError" "torch's elastic errors module is not importable from $PY"
fi

# ---- a C worker with no error file: its stderr tail
"$BATON" run -n 2 -- "$W" --rank 1 --code 3 --say "disk quota exceeded" --sleep 30 \
    >"$T_TMP/c.out" 2>"$T_TMP/c.err"
t_expect_eq "C worker: exit 3" "$?" 3
t_grep "C worker: the root cause is rank 1" "^baton: root cause: rank 1 on node 0 " "$T_TMP/c.err"
t_grep "C worker: its stderr tail is in the summary" "^baton:   \| step 12: disk quota exceeded$" "$T_TMP/c.err"
t_grep "C worker: ... up to its last line" "^baton:   \| launch_worker: giving up$" "$T_TMP/c.err"
t_check "C worker: no consequence listed (rank 0 was stopped by baton)" \
    bash -c "! grep -q '^baton: consequence' '$T_TMP/c.err'"

# ---- a rank of node 1 killed by a signal: both nodes' summaries name the signal and the rank
pair k -n 1 -- "$W" --rank 1 --signal 9 --sleep 30
statuses 30 >"$T_TMP/st"
t_expect_eq "signal: both launchers exit 137" "$(cat "$T_TMP/st")" "137 137"
for n in 0 1; do
    t_grep "signal: node $n's job-failed line names rank 1 and SIGKILL" \
        "^baton: job failed: rank 1 \(node 1, host [^,]+, pid [0-9]+\) was killed by SIGKILL" "$T_TMP/k$n.err"
    t_grep "signal: node $n's root cause is rank 1 on node 1" \
        "^baton: root cause: rank 1 on node 1 \(host [^)]+\) at [0-9:.]+ UTC" "$T_TMP/k$n.err"
done

# ---- each worker's error file: BATON_ERROR_FILE and TORCHELASTIC_ERROR_FILE, one path, its own
"$BATON" run -n 2 -- sh -c 'echo "EF $RANK $BATON_ERROR_FILE $TORCHELASTIC_ERROR_FILE"' \
    >"$T_TMP/ef.out" 2>&1
t_expect_eq "error file: both names set, the same path, one per rank" \
    "$(awk '$2 == "EF" && $4 != "" && $4 == $5 {print $4}' "$T_TMP/ef.out" | sort -u | wc -l)" 2

# ---- bt_error_record, and the earliest failure wins though a consequence is posted first:
# rank 1 records its error at once and would exit 4 after 1.5 s; rank 0 exits 5 after 0.3 s,
# and the teardown that follows stops rank 1 (SIGTERM) before it exits by itself. The root
# cause is rank 1 (its error file is the earliest failure); the job's status is 5, the first
# status a failing worker gave itself, on both nodes: never the teardown's 143 or 137.
pair e -n 1 -- "$W" --rank 1 --record "checkpoint shard 3 is corrupt" --code 4 --delay 1500 \
    --also 0:5:300 --sleep 30
statuses 30 >"$T_TMP/st"
t_expect_eq "earliest failure: both exit 5 (rank 1 never gave itself a status)" \
    "$(cat "$T_TMP/st")" "5 5"
for n in 0 1; do
    t_grep "earliest failure: node $n names rank 1 with bt_error_record's message" \
        "^baton: root cause: rank 1 on node 1 \(host [^)]+\) at [0-9:.]+ UTC: checkpoint shard 3 is corrupt$" "$T_TMP/e$n.err"
    t_grep "earliest failure: node $n lists rank 0 as a consequence" \
        "^baton: consequence: rank 0 on node 0 failed [0-9.]+ s later \(status 5\)" "$T_TMP/e$n.err"
    t_grep "earliest failure: node $n's root-cause line is rank 1's" \
        "^baton: job failed: rank 1 \(node 1, host [^,]+, pid [0-9]+\) wrote its error file and was then stopped by baton \(SIGTERM\)" "$T_TMP/e$n.err"
done

# ---- the termination message: a file named by BATON_TERMINATION_LOG; kubectl logs in a pod
KUBERNETES_SERVICE_HOST=10.0.0.1 HOSTNAME=mnist-worker-0 BATON_TERMINATION_LOG="$T_TMP/term" \
    "$BATON" run -n 2 -- "$W" --rank 0 --code 6 --say "no GPU" --sleep 30 >/dev/null 2>"$T_TMP/k.err"
t_expect_eq "in a pod: exit 6" "$?" 6
t_grep "in a pod: the termination message has the root cause" "^baton: root cause: rank 0 on node 0 " "$T_TMP/term"
t_grep "in a pod: it says kubectl logs POD" "^baton:   full output: kubectl logs mnist-worker-0$" "$T_TMP/term"
t_grep "in a pod: and the exit status" "^baton: node 0 \(host [^)]+\) exits with status 6$" "$T_TMP/term"
t_check "in a pod: at most 4096 bytes" test "$(stat -c %s "$T_TMP/term")" -le 4096

BATON_TERMINATION_LOG=/proc/nonexistent/term \
    "$BATON" run -n 1 -- "$W" --rank 0 --code 6 --sleep 30 >/dev/null 2>"$T_TMP/k2.err"
t_expect_eq "unwritable termination path: the job's status is unchanged" "$?" 6
t_expect_eq "unwritable termination path: one line says so" \
    "$(grep -c 'cannot write the failure summary to the termination-message path /proc/nonexistent/term' "$T_TMP/k2.err")" 1

# ---- an unwritable --log-dir: one line, the job runs
mkdir -p "$T_TMP/ro" && chmod 500 "$T_TMP/ro"
if [ "$(id -u)" = 0 ]; then logdir=/proc/baton-no-such-dir; else logdir=$T_TMP/ro/logs; fi
"$BATON" run -n 2 --log-dir "$logdir" -- "$W" --env >"$T_TMP/l.out" 2>"$T_TMP/l.err"
t_expect_eq "unwritable --log-dir: the job exits 0" "$?" 0
t_expect_eq "unwritable --log-dir: one line names it" "$(grep -c "^baton run: WARN: --log-dir $logdir: " "$T_TMP/l.err")" 1
t_expect_eq "unwritable --log-dir: both ranks ran" "$(grep -c '^\[[01]\] ENV ' "$T_TMP/l.out")" 2
chmod 700 "$T_TMP/ro"

# ---- a node lost while another fails: the survivors do not wait out --grace for its records.
# Rank 0 exits 7 while node 2's launcher is stopped (SIGSTOP): node 2's heartbeat lapses, its
# watcher's last will marks it lost, and nodes 0 and 1 end with the summary long before the
# 60 s --grace + 3 s that a node which never settles would cost.
port=$(t_free_port)
for n in 0 1 2; do
    t_bg "$BATON" run --nnodes 3 --node-rank $n --rdzv "127.0.0.1:$port" -n 1 --grace 60 \
        -- sh -c 'if [ "$RANK" = 0 ]; then until [ -e "$0.stopped" ]; do sleep 0.05; done; exit 7; fi; exec sleep 120' \
        "$T_TMP/lost" >"$T_TMP/lost.$n.log" 2>&1
    lost_pid[$n]=$T_LAST_PID
done
for _ in $(seq 1 300); do # until node 2's worker (sleep 120) runs: the job has formed. Not any
    # child: the launcher's watchdog is one from its start, before the node has joined.
    [ -n "$(pgrep -P "${lost_pid[2]}" -x sleep)" ] && break
    sleep 0.1
done
kill -STOP "${lost_pid[2]}"
: >"$T_TMP/lost.stopped"
t_wait "${lost_pid[0]}" 40 >"$T_TMP/lost.rc0"
t_wait "${lost_pid[1]}" 40 >"$T_TMP/lost.rc1"
kill -CONT "${lost_pid[2]}"
t_wait "${lost_pid[2]}" 40 >/dev/null
t_expect_eq "a node lost while rank 0 fails: node 0 ends with the root cause's status, not waiting out --grace" "$(cat "$T_TMP/lost.rc0")" 7
t_expect_eq "a node lost while rank 0 fails: node 1 too" "$(cat "$T_TMP/lost.rc1")" 7
t_grep "a node lost while rank 0 fails: the summary names rank 0" 'root cause: rank 0 on node 0' "$T_TMP/lost.1.log"

t_done
