#!/usr/bin/env bash
# t_coll_fault.sh: a rank dies or stops in the middle of a large allreduce; the others must
# fail with the right error, naming it, quickly. coll_check --fork is its own launcher here,
# so the test controls exactly which rank dies and when, and nothing tears the survivors down
# before they noticed.
# timeout: 180
source "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }

# survivors NAME LOG N PATTERN MAXSEC: N ranks failed, each message matches PATTERN, each
# noticed within MAXSEC seconds of the fault.
survivors() {
    local name=$1 log=$2 n=$3 pat=$4 max=$5
    local lines; lines=$(grep -E 'collective failed after' "$log")
    t_expect_eq "$name: $n survivors failed" "$(grep -c . <<<"$lines")" "$n"
    if grep -vqE -- "$pat" <<<"$lines"; then t_fail "$name: every message names the rank" \
        "$(grep -vE -- "$pat" <<<"$lines" | head -2)"; else t_ok "$name: every message names the rank"; fi
    local slow; slow=$(awk -v m="$max" '{ for (i = 1; i < NF; i++) if ($i == "after") t = $(i + 1);
        if (t + 0 > m) print }' <<<"$lines")
    if [ -z "$slow" ]; then t_ok "$name: noticed within $max s"; else t_fail "$name: noticed within $max s" "$slow"; fi
}

log=$T_TMP/shm_kill.log
timeout 60 "$CHECK" --fork 4 --count 4194304 --iters 400 --die-rank 2 --die-at 3 \
    --signal KILL >"$log" 2>&1
survivors "shm, SIGKILL rank 2" "$log" 3 'rank 2 \(pid [0-9]+, this node\) died' 1.5
t_grep "shm, SIGKILL: the error is BT_ERR_REMOTE" 'code a remote peer failed' "$log"

log=$T_TMP/tcp_kill.log
BATON_TRANSPORT=tcp timeout 60 "$CHECK" --fork 4 --count 4194304 --iters 400 --die-rank 2 \
    --die-at 3 --signal KILL >"$log" 2>&1
survivors "tcp, SIGKILL rank 2" "$log" 3 'rank 2: ' 1.5

log=$T_TMP/hier_kill.log
timeout 60 "$CHECK" --fork 4 --nnodes 2 --count 4194304 --iters 400 --die-rank 3 --die-at 3 \
    --signal KILL >"$log" 2>&1
survivors "hierarchical, SIGKILL rank 3" "$log" 3 'rank 3' 1.5

# The same with 4 nonblocking allreduces outstanding per rank: every bt_wait of every
# survivor returns an error naming the dead rank, quickly.
for tr in shm tcp; do
    log=$T_TMP/${tr}_requests.log
    BATON_TRANSPORT=$tr timeout 60 "$CHECK" --fork 4 --count 4194304 --iters 400 --die-rank 2 \
        --die-at 3 --signal KILL --requests 4 >"$log" 2>&1
    lines=$(grep -E 'request [0-9] failed after' "$log")
    t_expect_eq "$tr, SIGKILL with requests outstanding: 12 failed waits" \
        "$(grep -c . <<<"$lines")" 12
    t_expect_eq "$tr, SIGKILL with requests outstanding: every one names rank 2" \
        "$(grep -cE 'rank 2[: ]' <<<"$lines")" 12
    slow=$(awk '{ for (i = 1; i < NF; i++) if ($i == "after") t = $(i + 1); if (t + 0 > 1.5) print }' \
        <<<"$lines")
    t_expect_eq "$tr, SIGKILL with requests outstanding: all within 1.5 s" "$slow" ""
done

log=$T_TMP/shm_stop.log
BATON_TIMEOUT=3 timeout 60 "$CHECK" --fork 3 --count 1048576 --iters 400 --die-rank 1 \
    --die-at 3 --signal STOP >"$log" 2>&1
survivors "shm, SIGSTOP rank 1, BATON_TIMEOUT=3" "$log" 2 'rank\(s\) 1 \(pid' 5
t_grep "shm, SIGSTOP: BT_ERR_TIMEOUT" 'code timed out' "$log"
t_grep "shm, SIGSTOP: the stopped rank was reaped" 'child 1: signal 9' "$log"

log=$T_TMP/tcp_stop.log
BATON_TIMEOUT=3 BATON_TRANSPORT=tcp timeout 60 "$CHECK" --fork 3 --count 1048576 --iters 400 \
    --die-rank 1 --die-at 3 --signal STOP >"$log" 2>&1
survivors "tcp, SIGSTOP rank 1, BATON_TIMEOUT=3" "$log" 2 'rank' 5
t_grep "tcp, SIGSTOP: a survivor names rank 1" 'waiting for rank\(s\) 1 ' "$log"

log=$T_TMP/stall.log
BATON_TIMEOUT=4 BATON_STALL_WARN=1 timeout 60 "$CHECK" --fork 2 --count 1024 --iters 400 \
    --die-rank 1 --die-at 2 --signal STOP >"$log" 2>&1
t_grep "stall warning names the missing rank" 'still waiting after [0-9]+ s for rank\(s\) 1' "$log"
t_done
