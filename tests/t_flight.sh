#!/usr/bin/env bash
# t_flight.sh: the flight recorder and stragglers (docs/launcher.md#the-flight-recorder-and-
# stragglers). A rank stopped by SIGSTOP: the report names it and the call it never entered,
# and --log-dir holds every rank's dump, which `baton trace` reads back to the same words; a
# rank SIGKILLed: every rank's dump (the dead one's too) and the same finding; a stall warning:
# the dumps are written then, in a job that succeeds; a
# rank passing another count: named with both counts; a rank slowed by a sleep in its loop: the
# straggler WARN names it and no other, and a run without one warns of none, nor one whose
# ranks all sleep alike (several periodic looks, each judging and naming nobody), nor one whose
# rank 1 marks each call done 5 ms late (last in every call by what it owes to leaving the one
# before late, none of it its own); the SIGKILLed rank found dead together with the 3 that
# failed on its death (the launcher reaping late) is still the root cause; `baton trace` on
# a torn, a foreign, a garbled (an entry cut short mid-file) and a missing file: one line each,
# exit 2, and a call numbered 9e18 analyzed at once; a recorder-on run of coll_check
# (the previous attempt's SIGSEGV) exits 0. Sub-communicators (--split 2: the even and the odd
# ranks): a rank stopped in the odd one, and a rank passing another count to it, are named with
# that communicator's call and members while the world has no finding; a rank slowed by a sleep
# in the odd ranks' loop is that communicator's straggler, and no other rank or communicator
# is named. Two nodes (two launchers on loopback): a rank of node 1 slowed by a sleep is the
# straggler that node 0 names job-wide, and no other rank is named on either node; a rank of
# node 1 stopped by SIGSTOP is named with its call on both nodes; a rank of
# node 1 passing another reduction (the call completes) is named live by node 0, and one of node
# 1 leaving each call 5 ms late is not named (its gaps travel in node 1's records). The slowed
# rank is named job-wide in an elastic job (--nnodes 2:3) too, in generation 0 of 2 nodes and in
# generation 1 after a third joins, and under --rdzv-backend etcd. A sub-communicator with one
# member on each of two nodes: its slowed member is named job-wide on that communicator. A
# reduction that differs at a call no look compares (thousands of calls a second): named from
# the call-shape hashes of the sampled calls, on one node and across two. bench/flight_bench
# (the recorder's overhead benchmark), run short: exit 0 and its rows.
# timeout: 420
. "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }

"$BATON" run -n 2 -- "$CHECK" --iters 2 >"$T_TMP/c.out" 2>&1
t_expect_eq "coll_check --iters 2 with the recorder on: exit 0" "$?" 0

# ---- rank 2 of 4 stops itself before allreduce #15; BATON_TIMEOUT ends the job
BATON_TIMEOUT=5 "$BATON" run -n 4 --log-dir "$T_TMP/stop" -- "$CHECK" --count 4096 --iters 400 \
    --die-rank 2 --die-at 3 --signal STOP >"$T_TMP/s.out" 2>"$T_TMP/s.err"
t_expect_eq "SIGSTOP: exit 142" "$?" 142
t_grep "SIGSTOP: the report names rank 2 and the call it never entered" \
    "^baton: flight recorder: rank 2 never entered allreduce #15 \(the 3 others did, [0-9.]+ s ago\); its last completed call was allreduce #14$" "$T_TMP/s.err"
t_expect_eq "SIGSTOP: no other rank is named as lagging" \
    "$(grep -c '^baton: flight recorder: rank [013] ' "$T_TMP/s.err")" 0
t_expect_eq "SIGSTOP: --log-dir has the 4 dumps" "$(ls "$T_TMP/stop"/flight.*.txt | wc -l)" 4
"$BATON" trace "$T_TMP/stop"/flight.*.txt >"$T_TMP/trace.out" 2>&1
t_expect_eq "baton trace: exit 0" "$?" 0
t_grep "baton trace: the same finding from the files" \
    "^rank 2 never entered allreduce #15 \(the 3 others did, [0-9.]+ s ago\); its last completed call was allreduce #14$" "$T_TMP/trace.out"
t_grep "baton trace: rank 2's dump ends with its last call, done" \
    "^seq=14 comm=0 op=allreduce dtype=float32 redop=sum count=4096 root=-1 peers=4 .* state=done$" "$T_TMP/stop/flight.2.txt"

# ---- a failure: rank 2 of 4 SIGKILLed before allreduce #15: every rank's dump, the dead one's too
# (its launcher reads the recorder after the rank is gone), and the analysis in the summary
BATON_TIMEOUT=10 "$BATON" run -n 4 --log-dir "$T_TMP/kill" -- "$CHECK" --count 4096 --iters 400 \
    --die-rank 2 --die-at 3 --signal KILL >"$T_TMP/k.out" 2>"$T_TMP/k.err"
t_expect_eq "SIGKILL: exit 137" "$?" 137
t_expect_eq "SIGKILL: --log-dir has the 4 dumps" "$(ls "$T_TMP/kill"/flight.*.txt | wc -l)" 4
t_grep "SIGKILL: the dead rank's dump ends with its last call, done" \
    "^seq=14 comm=0 op=allreduce .* state=done$" "$T_TMP/kill/flight.2.txt"
t_grep "SIGKILL: the summary names the call rank 2 never entered (the others that got to #15 before the teardown's SIGTERM: 1 to 3 under load)" \
    "^baton: flight recorder: rank 2 never entered allreduce #15 \(the [1-3] others? did" "$T_TMP/k.err"

# ---- the same failure found late: the launcher's first reap that finds a worker waits 1.5 s
# (BATON_TEST_REAP_LATE_MS, as a launcher that a loaded machine runs late; the store, a thread
# of its own, goes on), by when the 3 others have failed on rank 2's death. It reaps all 4 at
# once, then handles them by their last sign of life in the recorders: rank 2 (after call #14)
# first. It took them in spawn order until 2026-12-03: rank 0's exit 3 was the root cause, and
# rank 2, counted as stopped by the teardown that began, was not named (the test above did so,
# naming rank 1, in a run under two busy loops)
BATON_TEST_REAP_LATE_MS=1500 "$BATON" run -n 4 -- "$CHECK" --count 4096 --iters 400 \
    --die-rank 2 --die-at 3 --signal KILL >"$T_TMP/kl.out" 2>"$T_TMP/kl.err"
t_expect_eq "launcher late: exit 137 (rank 2's SIGKILL)" "$?" 137
t_grep "launcher late: rank 2, killed by SIGKILL, is the root cause" \
    "^baton: job failed: rank 2 \(node 0, host .*\) was killed by SIGKILL" "$T_TMP/kl.err"
t_expect_eq "launcher late: ranks 0, 1 and 3 are its consequences" \
    "$(grep -cE '^baton: consequence: rank [013] on node 0 .*status 3' "$T_TMP/kl.err")" 3
# the same with the 3 others writing their error files (--record-failure 1) before the late
# reap: the killed rank, which wrote none, takes its last sign of life as its time (the reap's
# was later than their files': one of them was the root cause)
BATON_TEST_REAP_LATE_MS=1500 "$BATON" run -n 4 -- "$CHECK" --count 4096 --iters 400 \
    --die-rank 2 --die-at 3 --signal KILL --record-failure 1 >"$T_TMP/kf.out" 2>"$T_TMP/kf.err"
t_expect_eq "launcher late, error files: exit 137, rank 2 the root cause" \
    "$? $(grep -cE '^baton: job failed: rank 2 \(node 0, host .*\) was killed by SIGKILL' "$T_TMP/kf.err")" "137 1"
t_expect_eq "launcher late, error files: the 3 others its consequences, in their own words" \
    "$(grep -cE '^baton: consequence: rank [013] on node 0 .*status 3\): allreduce #15: ' "$T_TMP/kf.err")" 3

# ---- a stall warning (BATON_STALL_WARN=0.5, rank 1 sleeping 1.5 s before each allreduce): the
# node's dumps are written then, in a job that succeeds
BATON_STALL_WARN=0.5 "$BATON" run -n 2 --log-dir "$T_TMP/stall" -- "$CHECK" --count 1000 --iters 3 \
    --slow-rank 1 --slow-ms 1500 >"$T_TMP/w.out" 2>"$T_TMP/w.err"
t_expect_eq "stall warning: exit 0" "$?" 0
t_expect_eq "stall warning: --log-dir has both ranks' dumps" "$(ls "$T_TMP/stall"/flight.*.txt | wc -l)" 2
"$BATON" trace "$T_TMP/stall"/flight.*.txt >/dev/null 2>"$T_TMP/wt.err"
t_expect_eq "stall warning: baton trace reads them (exit 0)" "$?" 0

# ---- bad input to baton trace
head -c 300 "$T_TMP/stop/flight.0.txt" >"$T_TMP/torn.txt"
printf 'hello\n' >"$T_TMP/foreign.txt"
# an entry cut short mid-file is torn (until fuzz_trace found it, the reader took the missing
# fields from the next line and the file passed, with a bogus finding; and a short line's error
# quoted 60 bytes, past its end: two lines)
awk '/^seq=/ && !done {print "seq=1 x"; done = 1; next} {print}' "$T_TMP/stop/flight.0.txt" >"$T_TMP/garbled.txt"
cp "$T_TMP/stop/flight.1.txt" "$T_TMP/flight.1.ok"
for f in torn.txt foreign.txt garbled.txt missing.txt; do
    "$BATON" trace "$T_TMP/flight.1.ok" "$T_TMP/$f" >/dev/null 2>"$T_TMP/tr.err"
    t_expect_eq "baton trace $f: exit 2 with one line" "$? $(wc -l <"$T_TMP/tr.err")" "2 1"
done
# a dump whose last call is numbered 9e18: the analysis looks at the calls held, not at every
# number up to it (it counted to 9e18, for ever, until fuzz_trace found it)
sed '$s/^seq=[0-9]*/seq=9000000000000000000/' "$T_TMP/flight.1.ok" >"$T_TMP/far.txt"
timeout 20 "$BATON" trace "$T_TMP/flight.1.ok" "$T_TMP/far.txt" >/dev/null 2>&1
t_expect_eq "baton trace: a call numbered 9e18 is analyzed at once (exit 0)" "$?" 0
"$BATON" trace "$T_TMP/torn.txt" 2>"$T_TMP/tr.err" >/dev/null
t_grep "baton trace: a torn dump is named as torn" "^baton trace: .*torn\.txt: (torn|line [0-9]+: a torn)" "$T_TMP/tr.err"
"$BATON" trace "$T_TMP/foreign.txt" 2>"$T_TMP/tr.err" >/dev/null
t_grep "baton trace: a foreign file is named as not a dump" "^baton trace: .*foreign\.txt: not a baton flight-recorder dump" "$T_TMP/tr.err"

# ---- rank 2 passes 4072 floats to allreduce #17 where the others pass 4096: over shared
# memory the call fails on every rank (transport/shm.c checks the shapes at the first sync
# point), and the flight recorder's report names the counts too
"$BATON" run -n 4 -- "$CHECK" --count 4096 --iters 50 --bad-count-rank 2 --bad-count-at 5 \
    >"$T_TMP/b.out" 2>"$T_TMP/b.err"
t_expect_eq "mismatched counts: the job fails (exit 3, the ranks' BT_ERR_INVALID_USAGE)" "$?" 3
t_grep "mismatched counts: rank 2's call fails naming both counts" \
    "^\[2\] .* allreduce #17 on communicator world: rank [013] called it with count 4096, dtype 0, op 0, root -1, this rank with count 4072, .*hint: every rank passes the same count" "$T_TMP/b.err"
t_grep "mismatched counts: the flight recorder's report names both counts" \
    "^baton: flight recorder: ranks disagree on the count of allreduce #17 \(rank 2: 4072, others: 4096\)" "$T_TMP/b.err"

# The median lag a straggler check wants for a rank that sleeps 20 ms before each call: the
# lag that counts is the rank's own (launcher/straggler.h: its gap before the call less the
# longest gap of the others), so 20 ms less what the others spend between calls, which on a
# loaded machine reaches a few ms (a CI run named rank 3 at 18 ms); 15 ms or more.
LAG='(1[5-9]|[2-9][0-9])'

# ---- rank 1 sleeps 20 ms before each allreduce: the straggler, and no other
BATON_STRAGGLER_SECS=2 "$BATON" run -n 4 -- "$CHECK" --count 1024 --iters 200 --slow-rank 1 \
    --slow-ms 20 >"$T_TMP/g.out" 2>"$T_TMP/g.err"
t_expect_eq "straggler: exit 0" "$?" 0
t_grep "straggler: the WARN names rank 1 with its lag" \
    "^baton: WARN: straggler: rank 1 arrived last in [0-9]+ of the last 100 allreduces, median $LAG ms after the others" "$T_TMP/g.err"
t_grep "straggler: the final report names it" "^baton: straggler: rank 1 arrived last" "$T_TMP/g.err"
t_expect_eq "straggler: no other rank is named" "$(grep -c 'straggler: rank [023] ' "$T_TMP/g.err")" 0
BATON_STRAGGLER_SECS=1 "$BATON" run -n 4 -- "$CHECK" --count 1024 --iters 3000 \
    >"$T_TMP/n.out" 2>"$T_TMP/n.err"
t_expect_eq "no straggler: exit 0 and no straggler line" "$? $(grep -c 'straggler' "$T_TMP/n.err")" "0 0"
# every rank sleeping 2 ms before each allreduce, for several looks (BATON_STRAGGLER_SECS=1):
# whoever is last is so by chance; each look judges (its INFO line) and names nobody
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH BATON_STRAGGLER_SECS=1 "$BATON" run -n 4 -- "$CHECK" \
    --count 1024 --iters 1500 --slow-rank all --slow-ms 2 >"$T_TMP/na.out" 2>"$T_TMP/na.err"
t_expect_eq "all ranks slowed alike: exit 0, no straggler named" \
    "$? $(grep -cE '^baton: (WARN: )?straggler' "$T_TMP/na.err")" "0 0"
t_grep "all ranks slowed alike: a periodic look judged them (INFO)" \
    "straggler look: allreduces: none named; last most often: rank [0-3], [0-9]+ of 100 \(chance 25, p [0-9.e+-]+\)" "$T_TMP/na.err"
# rank 1 marks each allreduce done 5 ms after it completed (BATON_TEST_FLIGHT_LATE_END: as the
# rank woken last from its wait on an oversubscribed machine), so it enters every next one ~5 ms
# last without being any slower: its own time between the calls is the others'; the arrival
# lags alone named it (100 of 100, median 5 ms) until 2026-12-03
BATON_TEST_FLIGHT_LATE_END=1:5 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH BATON_STRAGGLER_SECS=1 \
    "$BATON" run -n 4 -- "$CHECK" --count 1024 --iters 600 >"$T_TMP/ll.out" 2>"$T_TMP/ll.err"
t_expect_eq "left each call late: exit 0, no straggler named" \
    "$? $(grep -cE '^baton: (WARN: )?straggler' "$T_TMP/ll.err")" "0 0"
t_grep "left each call late: the look saw rank 1 last most often, with none of the lag its own" \
    "straggler look: allreduces: none named; last most often: rank 1, ([4-9][0-9]|100) of 100 \(chance 25, p [0-9.e+-]+\), median 0\.[0-9] ms after the others" "$T_TMP/ll.err"

# ---- sub-communicators: the odd ranks {1, 3, 5} of 6; rank 3 stops before its 4th allreduce
SUB='on communicator c[0-9a-f]{8} \(world ranks 1, 3, 5\)'
BATON_TIMEOUT=5 "$BATON" run -n 6 --log-dir "$T_TMP/sub" -- "$CHECK" --count 4096 --iters 400 \
    --split 2 --die-rank 3 --die-at 3 --signal STOP >"$T_TMP/sub.out" 2>"$T_TMP/sub.err"
t_check "split, SIGSTOP: the job fails" test "$?" -ne 0
t_grep "split, SIGSTOP: the report names rank 3, the odd ranks' call #4 and its members" \
    "^baton: flight recorder: rank 3 never entered allreduce #4 $SUB \(the 2 others did, [0-9.]+ s ago\); its last completed call was allreduce #3$" "$T_TMP/sub.err"
t_grep "split, SIGSTOP: the hang names the waiting world rank and the communicator's call" \
    "^baton: job failed: job hung: rank 3 .* stalled; rank [15] \(node 0\) waited for it in allreduce #4 $SUB for" "$T_TMP/sub.err"
t_expect_eq "split, SIGSTOP: no finding on the world or the even ranks' communicator" \
    "$(grep '^baton: flight recorder: ' "$T_TMP/sub.err" | grep -vcE "$SUB")" 0
t_grep "split: rank 3's dump describes the world and its communicator" \
    "^comm=c[0-9a-f]{8} size=3 rank=1 name=c[0-9a-f]{8} \(world ranks 1, 3, 5\)$" "$T_TMP/sub/flight.3.txt"
"$BATON" trace "$T_TMP/sub"/flight.*.txt >"$T_TMP/subtrace.out" 2>&1
t_grep "split: baton trace names the same call of the same communicator" \
    "^rank 3 never entered allreduce #4 $SUB \(the 2 others did" "$T_TMP/subtrace.out"
BATON_TIMEOUT=10 "$BATON" run -n 6 -- "$CHECK" --count 4096 --iters 50 --split 2 \
    --bad-count-rank 3 --bad-count-at 5 >"$T_TMP/subb.out" 2>"$T_TMP/subb.err"
t_grep "split, mismatched counts: the call fails naming the communicator and both counts" \
    "^\[3\] .* allreduce #6 on communicator c[0-9a-f]{8} \(world ranks 1, 3, 5\): rank [02] called it with count 4096, dtype 0, op 0, root -1, this rank with count 4072" "$T_TMP/subb.err"
t_grep "split, mismatched counts: the report names the communicator and both counts" \
    "^baton: flight recorder: ranks disagree on the count of allreduce #6 $SUB \(rank 3: 4072, others: 4096\)" "$T_TMP/subb.err"

# ---- sub-communicators: rank 3 sleeps 20 ms before each allreduce on the odd ranks' one
BATON_STRAGGLER_SECS=2 "$BATON" run -n 6 -- "$CHECK" --count 1024 --iters 200 --split 2 \
    --slow-rank 3 --slow-ms 20 >"$T_TMP/ss.out" 2>"$T_TMP/ss.err"
t_expect_eq "split, straggler: exit 0" "$?" 0
t_grep "split, straggler: the WARN names rank 3 on the odd ranks' communicator" \
    "^baton: WARN: straggler: rank 3 arrived last in [0-9]+ of the last 100 allreduces $SUB, median $LAG ms after the others \(node 0, 3 members here; chance would be 33\)" "$T_TMP/ss.err"
t_grep "split, straggler: the final report names it" "^baton: straggler: rank 3 arrived last in [0-9]+ of the last 100 allreduces $SUB" "$T_TMP/ss.err"
t_expect_eq "split, straggler: no other rank, no other communicator" \
    "$(grep 'straggler: rank' "$T_TMP/ss.err" | grep -vcE "^baton: (WARN: )?straggler: rank 3 .* $SUB")" 0

# ---- two nodes of 2 ranks: rank 3 (node 1) sleeps 20 ms before each allreduce
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=2 "$BATON" run --nnodes 2 --node-rank $n \
        --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 1024 --iters 300 --slow-rank 3 \
        --slow-ms 20 >"$T_TMP/x.$n.out" 2>"$T_TMP/x.$n.err"
    xp[$n]=$T_LAST_PID
done
t_wait_ok "two nodes, straggler: both exit 0" 120 "${xp[0]}" "${xp[1]}"
t_grep "two nodes: node 0 names rank 3 of node 1, job-wide" \
    "^baton: WARN: straggler: rank 3 arrived last in [0-9]+ of the last 100 allreduces, median $LAG ms after the others \(job-wide, 2 nodes; chance would be 25\)" "$T_TMP/x.0.err"
t_expect_eq "two nodes: no other rank is named, on either node" \
    "$(cat "$T_TMP/x.0.err" "$T_TMP/x.1.err" | grep -c 'straggler: rank [012] ')" 0
# ---- two nodes of 2 ranks: rank 3 (node 1) stops before allreduce #15: both nodes' summaries
# name it, from the dumps gathered through the store
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_TIMEOUT=5 "$BATON" run --nnodes 2 --node-rank $n --rdzv "127.0.0.1:$port" -n 2 -- \
        "$CHECK" --count 4096 --iters 400 --die-rank 3 --die-at 3 --signal STOP \
        >"$T_TMP/xh.$n.out" 2>"$T_TMP/xh.$n.err"
    hp[$n]=$T_LAST_PID
done
t_wait "${hp[0]}" 90 >"$T_TMP/xh.rc0"; t_wait "${hp[1]}" 90 >"$T_TMP/xh.rc1"
t_expect_eq "two nodes, SIGSTOP: both exit 142" "$(cat "$T_TMP/xh.rc0") $(cat "$T_TMP/xh.rc1")" "142 142"
for n in 0 1; do
    t_grep "two nodes, SIGSTOP: node $n's summary names rank 3 and the call it never entered" \
        "^baton: flight recorder: rank 3 never entered allreduce #15 \(the 3 others did, [0-9.]+ s ago\); its last completed call was allreduce #14$" "$T_TMP/xh.$n.err"
done

# ---- two nodes of 1 rank: rank 1 passes max for sum to allreduce #17 (the call completes, no
# node sees both shapes): node 0 names it live, comparing the nodes' records
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=2 "$BATON" run --nnodes 2 --node-rank $n --rdzv "127.0.0.1:$port" \
        -n 1 -- "$CHECK" --count 4096 --iters 50 --bad-op-rank 1 --bad-op-at 5 --linger 4 \
        >"$T_TMP/mm.$n.out" 2>"$T_TMP/mm.$n.err"
    mp[$n]=$T_LAST_PID
done
t_wait_ok "two nodes, mismatched reduction: both exit 0" 60 "${mp[0]}" "${mp[1]}"
t_grep "two nodes, mismatched reduction: node 0 names it live, across the nodes" \
    "^baton: WARN: flight recorder: ranks disagree on the reduction of allreduce #17 \(rank 1: max, rank 0: sum\) \(across 2 nodes\)$" "$T_TMP/mm.0.err"
t_expect_eq "two nodes, mismatched reduction: one such line, none on node 1" \
    "$(grep -c 'disagree' "$T_TMP/mm.0.err") $(grep -c 'disagree' "$T_TMP/mm.1.err")" "1 0"

# ---- elastic (--nnodes 2:3): nodes 0 and 1 form generation 0, node 2 joins and generation 1
# has 3; rank 3 (node 1) sleeps 20 ms: named job-wide in each generation, no other rank
port=$(t_free_port)
el() { # NODE [BACKEND FLAGS...] (SLOW_MS: rank 3's sleep, 20 by default)
    local n=$1; shift
    t_bg env BATON_STRAGGLER_SECS=2 "$BATON" run --nnodes 2:3 --node-rank "$n" "$@" \
        --rdzv-last-call 1 -n 2 -- "$CHECK" --count 1024 --iters $((8000 / ${SLOW_MS:-20})) \
        --slow-rank 3 --slow-ms "${SLOW_MS:-20}" >"$T_TMP/el.$n.out" 2>"$T_TMP/el.$n.err"
    ep[$n]=$T_LAST_PID
}
el 0 --rdzv "127.0.0.1:$port"
el 1 --rdzv "127.0.0.1:$port"
t_check "elastic, generation 0: node 0 names rank 3 job-wide among 2 nodes" \
    t_wait_grep "^baton: WARN: straggler: rank 3 arrived last in [0-9]+ of the last [0-9]+ allreduces, median $LAG ms after the others \(job-wide, 2 nodes" "$T_TMP/el.0.err" 60
el 2 --rdzv "127.0.0.1:$port"
t_wait_ok "elastic: the 3 nodes exit 0" 120 "${ep[0]}" "${ep[1]}" "${ep[2]}"
t_grep "elastic, generation 1: node 0 names rank 3 job-wide among 3 nodes" \
    "^baton: (WARN: )?straggler: rank 3 arrived last in [0-9]+ of the last [0-9]+ allreduces, median (19|[2-9][0-9]|[1-9][0-9]{2,}) ms after the others \(job-wide, 3 nodes; chance would be [0-9]+\)" "$T_TMP/el.0.err"
t_expect_eq "elastic: no other rank is named, on any node" \
    "$(cat "$T_TMP"/el.[012].err | grep -c 'straggler: rank [01245] ')" 0

# ---- the same under --rdzv-backend etcd (one etcd member), two nodes
if command -v etcd >/dev/null && command -v curl >/dev/null &&
    "$BATON" run --rdzv-backend etcd --rdzv-endpoint 127.0.0.1:1 --join-timeout 0.2 -- true 2>&1 |
    grep -q 'etcd at'; then
    hc=$(t_free_port) hp=$(t_free_port)
    t_bg etcd --name h --data-dir "$T_TMP/etcd" --listen-client-urls "http://127.0.0.1:$hc" \
        --advertise-client-urls "http://127.0.0.1:$hc" --listen-peer-urls "http://127.0.0.1:$hp" \
        --initial-advertise-peer-urls "http://127.0.0.1:$hp" --initial-cluster "h=http://127.0.0.1:$hp" \
        >"$T_TMP/etcd.log" 2>&1
    t_on_exit 'rm -rf "$T_TMP/etcd"'
    i=0; until curl -sf "http://127.0.0.1:$hc/health" | grep -q '"true"'; do [ $i -ge 150 ] && break; sleep 0.1; i=$((i + 1)); done
    export BATON_TOKEN=flight-etcd-$$ BATON_JOB_ID=flight-etcd-$$
    # the clocks are compared through etcd, whose round trip (20 ms and more under load) bounds
    # the offset's error: rank 3 sleeps 100 ms, so that the error cannot hide it
    SLOW_MS=100 el 0 --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$hc"
    SLOW_MS=100 el 1 --rdzv-backend etcd --rdzv-endpoint "127.0.0.1:$hc"
    t_wait_ok "etcd: both nodes exit 0" 120 "${ep[0]}" "${ep[1]}"
    t_grep "etcd: node 0 names rank 3 job-wide" \
        "^baton: (WARN: )?straggler: rank 3 arrived last in [0-9]+ of the last [0-9]+ allreduces, median [0-9]+ ms after the others \(job-wide, 2 nodes; chance would be [0-9]+\)" "$T_TMP/el.0.err"
    t_expect_eq "etcd: no other rank is named" "$(cat "$T_TMP"/el.[01].err | grep -c 'straggler: rank [012] ')" 0
    unset BATON_TOKEN BATON_JOB_ID
else
    t_skip "etcd: stragglers job-wide" "no etcd or curl, or baton built without libcurl/cJSON"
fi

# ---- two nodes of 2 ranks, --split 2: the odd ranks' communicator {1, 3} has one member on
# each node; rank 3 (node 1) sleeps 20 ms before each of its allreduces: node 0 names it on that
# communicator job-wide, and no other rank or communicator is named on either node
SUB2='on communicator c[0-9a-f]{8} \(world ranks 1, 3\)'
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=2 "$BATON" run --nnodes 2 --node-rank $n \
        --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 1024 --iters 200 --split 2 \
        --slow-rank 3 --slow-ms 20 >"$T_TMP/xs.$n.out" 2>"$T_TMP/xs.$n.err"
    sp[$n]=$T_LAST_PID
done
t_wait_ok "two nodes, split, straggler: both exit 0" 120 "${sp[0]}" "${sp[1]}"
# (how many calls the first WARN's look holds depends on when it ran: "90 of the last 90 ...
# chance would be 45" under load; the final report has all 100)
t_grep "two nodes, split: node 0 names rank 3 on the odd ranks' communicator, job-wide" \
    "^baton: WARN: straggler: rank 3 arrived last in [0-9]+ of the last [0-9]+ allreduces $SUB2, median $LAG ms after the others \(job-wide, 2 nodes; chance would be [0-9]+\)$" "$T_TMP/xs.0.err"
t_grep "two nodes, split: the final report names it" \
    "^baton: straggler: rank 3 arrived last in [0-9]+ of the last 100 allreduces $SUB2" "$T_TMP/xs.0.err"
t_expect_eq "two nodes, split: no other rank or communicator is named, on either node" \
    "$(cat "$T_TMP/xs.0.err" "$T_TMP/xs.1.err" | grep 'straggler: rank' | grep -vcE "^baton: (WARN: )?straggler: rank 3 .* $SUB2, ")" 0

# ---- a reduction that differs at a call no look compares: 1-float allreduces as fast as they
# go (thousands a second; a look takes the last 256 calls and the sampled ones, every 64th),
# rank 1 passes max for sum to call #3012 (iteration 3000): its call-shape hash differs from
# the sampled call #3072 on, so the WARN names the span, on one node and across two (on one
# node over TCP: over shared memory the call itself fails, as above)
BATON_TRANSPORT=tcp "$BATON" run -n 2 -- "$CHECK" --count 1 --iters 40000 --bad-op-rank 1 \
    --bad-op-at 3000 >"$T_TMP/hh.out" 2>"$T_TMP/hh.err"
t_expect_eq "unseen mismatch, one node: exit 0" "$?" 0
t_grep "unseen mismatch, one node: named by the call-shape hashes" \
    "^baton: WARN: flight recorder: ranks disagree on (the reduction of allreduce #3012 \(rank 1: max, (others|rank 0): sum\)|the shape of a call up to allreduce #(3072|[3-9][0-9]{3}|[1-9][0-9]{4}) \(rank [01] passed another op, count, dtype, reduction or root than rank [01] to a call( after #(2[0-9]{3}|300[0-8]), where they agreed)?; their call-shape hashes differ\)) \(node 0\)$" "$T_TMP/hh.err"
t_expect_eq "unseen mismatch, one node: one such line" "$(grep -c 'disagree' "$T_TMP/hh.err")" 1
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=2 "$BATON" run --nnodes 2 --node-rank $n --rdzv "127.0.0.1:$port" \
        -n 1 -- "$CHECK" --count 1 --iters 40000 --bad-op-rank 1 --bad-op-at 3000 --linger 3 \
        >"$T_TMP/hx.$n.out" 2>"$T_TMP/hx.$n.err"
    hp[$n]=$T_LAST_PID
done
t_wait_ok "unseen mismatch, two nodes: both exit 0" 120 "${hp[0]}" "${hp[1]}"
t_grep "unseen mismatch, two nodes: node 0 names it across the nodes" \
    "^baton: WARN: flight recorder: ranks disagree on (the reduction of allreduce #3012 \(rank 1: max, rank 0: sum\)|the shape of a call up to allreduce #(3072|[3-9][0-9]{3}|[1-9][0-9]{4}) \(rank 1 passed another op, count, dtype, reduction or root than rank 0 to a call( after #(2[0-9]{3}|300[0-8]), where they agreed)?; their call-shape hashes differ\)) \(across 2 nodes\)$" "$T_TMP/hx.0.err"
t_expect_eq "unseen mismatch, two nodes: one such line, none on node 1" \
    "$(grep -c 'disagree' "$T_TMP/hx.0.err") $(grep -c 'disagree' "$T_TMP/hx.1.err")" "1 0"

# ---- two nodes, no slow rank, ~1,500 calls a second: node 0 compares sampled calls, names none
# (--linger 2: on a quiet machine the 6,000 calls take ~1 s, less than a look's period)
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=1 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH "$BATON" run \
        --nnodes 2 --node-rank $n --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 65536 \
        --iters 6000 --linger 2 >"$T_TMP/y.$n.out" 2>"$T_TMP/y.$n.err"
    yp[$n]=$T_LAST_PID
done
t_wait_ok "two nodes, no straggler: both exit 0" 120 "${yp[0]}" "${yp[1]}"
t_grep "two nodes, no straggler: node 0 compared calls of both nodes" \
    "job-wide straggler look: [1-9][0-9]* world call\(s\) compared across 2 nodes" "$T_TMP/y.0.err"
t_expect_eq "two nodes, no straggler: no straggler named" \
    "$(cat "$T_TMP/y.0.err" "$T_TMP/y.1.err" | grep -c 'straggler: rank')" 0

# ---- two nodes, rank 3 (node 1's second) leaves each world call 5 ms late: node 0's job-wide
# look sees it last, and from the gaps in node 1's records, none of the lag its own (--linger 2:
# looks after the last call, with node 1's last records; under load the first looks of a
# loaded run compared no calls yet)
port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_STRAGGLER_SECS=1 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH \
        BATON_TEST_FLIGHT_LATE_END=3:5 "$BATON" run --nnodes 2 --node-rank $n \
        --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 1024 --iters 600 --linger 2 \
        >"$T_TMP/yl.$n.out" 2>"$T_TMP/yl.$n.err"
    yp[$n]=$T_LAST_PID
done
t_wait_ok "two nodes, left each call late: both exit 0" 120 "${yp[0]}" "${yp[1]}"
t_grep "two nodes, left each call late: node 0 saw rank 3 last most often, none of the lag its own" \
    "straggler look: allreduces: none named; last most often: rank 3, ([4-9][0-9]|100) of 100 \(chance 25, p [0-9.e+-]+\), median 0\.[0-9] ms after the others" "$T_TMP/yl.0.err"
t_expect_eq "two nodes, left each call late: no straggler named" \
    "$(cat "$T_TMP/yl.0.err" "$T_TMP/yl.1.err" | grep -c 'straggler: rank')" 0

# ---- bench/flight_overhead.sh's program, run short: its sums checked, its rows printed (the
# figures are not judged here; docs/performance.md has them)
if [ -x "$BATON_BUILD/bench/flight_bench" ]; then
    "$BATON" run -n 2 -- "$BATON_BUILD/bench/flight_bench" -s 4K -B 10 -p 4 -w 10 >"$T_TMP/fb.out" 2>&1
    t_expect_eq "flight_bench: a short run exits 0 (its allreduce checked before timing)" "$?" 0
    t_expect_eq "flight_bench: the on/off row at 4 KiB and the wall and cpu medians" \
        "$(grep -cE '^\[0\] +(4096 +[0-9.]+ +[0-9.]+ |median (wall|cpu) +[0-9.]+ +[0-9.]+ +[0-9.]+ \[)' "$T_TMP/fb.out")" 3
else
    t_skip "flight_bench" "build/bench/flight_bench not built"
fi

t_done
