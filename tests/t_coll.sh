#!/usr/bin/env bash
# t_coll.sh: collectives in real processes under `baton run`: one node over shm, TCP forced,
# a job of one, and two "nodes" on loopback (hierarchical allreduce: shm within, TCP across);
# split_check (sub-communicators, grouped calls, exchange collectives) over shm and TCP, and a
# dup whose member cannot listen failing at once on every rank; a rank
# alive but 5 s late into a large TCP allreduce does not time its peer's connection out.
# timeout: 240
source "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }

# all_ok NAME LOG N: every one of N ranks printed "rank R ok".
all_ok() {
    local n=$(grep -cE 'rank [0-9]+ ok' "$3")
    t_expect_eq "$1: $2 ranks report ok" "$n" "$2"
}

out=$T_TMP/shm.log
timeout 120 "$BATON" run -n 4 -- "$CHECK" --iters 5 >"$out" 2>&1
t_expect_eq "shm, 4 ranks: exit status" "$?" 0
all_ok "shm" 4 "$out"

out=$T_TMP/tcp.log
BATON_TRANSPORT=tcp BATON_NSOCKS=3 timeout 120 "$BATON" run -n 3 -- "$CHECK" --iters 5 >"$out" 2>&1
t_expect_eq "tcp forced, 3 ranks: exit status" "$?" 0
all_ok "tcp" 3 "$out"

out=$T_TMP/one.log
timeout 60 "$BATON" run -n 1 -- "$CHECK" --iters 2 >"$out" 2>&1
t_expect_eq "a job of one: exit status" "$?" 0
all_ok "one" 1 "$out"

# Two nodes on this machine, 2 ranks each: the store is on 127.0.0.1 (so `lo` is right).
port=$(t_free_port)
t_bg timeout 120 "$BATON" run --nnodes 2 --node-rank 1 --rdzv 127.0.0.1:$port -n 2 -- \
    "$CHECK" --iters 5 >"$T_TMP/node1.log" 2>&1
n1=$T_LAST_PID
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT,NET timeout 120 "$BATON" run --nnodes 2 --node-rank 0 \
    --rdzv 127.0.0.1:$port -n 2 -- "$CHECK" --iters 5 >"$T_TMP/node0.log" 2>&1
t_expect_eq "2 nodes x 2 ranks: node 0 exit status" "$?" 0
t_wait "$n1" 60 >"$T_TMP/rc1" # not in $(...): a subshell cannot reap our child
t_expect_eq "2 nodes x 2 ranks: node 1 exit status" "$(cat "$T_TMP/rc1")" 0
cat "$T_TMP/node0.log" "$T_TMP/node1.log" >"$T_TMP/nodes.log"
all_ok "2 nodes" 4 "$T_TMP/nodes.log"
t_grep "2 nodes: hierarchical allreduce chosen" 'transports shm\+tcp \(hierarchical' "$T_TMP/node0.log"
t_grep "2 nodes: interface choice logged" 'TCP on interface lo address 127.0.0.1' "$T_TMP/node0.log"

# Sub-communicators, grouped calls and the exchange collectives in real processes
# (tests/progs/split_check, which t_coll_mpi runs under mpirun too), over shm and TCP.
# Over shm with BATON_SHM_CMA_BYTES=64K, its 20,011-element alltoall reads with CMA.
for tr in shm tcp; do
    out=$T_TMP/split_$tr.log
    BATON_SHM_CMA_BYTES=64K BATON_TRANSPORT=$tr timeout 60 "$BATON" run -n 3 -- \
        "$BATON_BUILD/tests/progs/split_check" \
        >"$out" 2>&1
    t_expect_eq "split_check under baton run -n 3 ($tr): exit status" "$?" 0
    t_expect_eq "split_check ($tr): every rank checked its children" \
        "$(grep -cE 'rank [0-9]+ split ok$' "$out")" 3
    t_check "split_check ($tr): create_group (members only) leaves the world's call numbers alike" \
        bash -c "! grep -q 'ranks disagree' '$out'"
done

# A member that cannot open the child's listening socket (rank 1 out of descriptors): every
# rank's dup fails at once naming it, rather than the others waiting out BATON_TIMEOUT (60 s:
# the `timeout 40` ends a run that waits).
out=$T_TMP/split_listen.log
BATON_TRANSPORT=tcp BATON_TIMEOUT=60 timeout 40 "$BATON" run -n 2 -- \
    "$BATON_BUILD/tests/progs/split_check" --listen-fail 1 >"$out" 2>&1
t_expect_eq "split_check --listen-fail 1: exit status" "$?" 0
t_expect_eq "split_check --listen-fail 1: both ranks' dup failed naming rank 1 and the reason" \
    "$(grep -cE '^\[[01]\] rank [01] listen-fail: .*rank 1 could not open a listening socket for the child: .*Too many open files; hint: see' "$out")" 2

# CMA reads refused (BATON_TEST_CMA_FAIL, as under Yama ptrace_scope 2): the shm alltoall
# falls back to the segment's slots, with the same results, and says so once per rank.
out=$T_TMP/split_nocma.log
BATON_SHM_CMA_BYTES=64K BATON_TEST_CMA_FAIL=1 timeout 60 "$BATON" run -n 3 -- \
    "$BATON_BUILD/tests/progs/split_check" \
    >"$out" 2>&1
t_expect_eq "split_check with CMA refused: exit status" "$?" 0
t_expect_eq "split_check with CMA refused: every rank checked its children" \
    "$(grep -cE 'rank [0-9]+ split ok$' "$out")" 3
t_grep "split_check with CMA refused: the fallback is logged" \
    'process_vm_readv from rank .*alltoall copies through the shared segment' "$out"

# A rank that is alive but 5 s late into a 64 MiB TCP allreduce, with keepalive knobs that make
# TCP_USER_TIMEOUT 2 s: its peer's connection sits at a zero window meanwhile, which Linux
# counts against that timeout; the peer connections take BATON_TIMEOUT instead, so the job ends
# well, not with "Connection timed out".
out=$T_TMP/late.log
BATON_TRANSPORT=tcp BATON_KEEPALIVE_IDLE=1 BATON_KEEPALIVE_INTVL=1 BATON_KEEPALIVE_CNT=1 \
    timeout 60 "$BATON" run -n 2 -- "$BATON_BUILD/tests/progs/coll_check" --count 16777216 \
    --iters 2 --slow-rank 1 --slow-ms 5000 >"$out" 2>&1
t_expect_eq "a rank 5 s late into a 64 MiB TCP allreduce (user timeout 2 s): exit 0" "$?" 0
t_check "... no connection timed out" bash -c "! grep -q 'timed out' '$out'"

# A SIGKILLed rank under baton: the job ends quickly with 137, nobody waits for the timeout.
out=$T_TMP/kill.log
start=$SECONDS
BATON_TIMEOUT=100 timeout 60 "$BATON" run -n 3 -- "$CHECK" --count 4194304 --iters 400 \
    --die-rank 1 --die-at 3 --signal KILL >"$out" 2>&1
rc=$?
t_expect_eq "SIGKILL under baton run: exit status 137" "$rc" 137
t_check "SIGKILL under baton run: over within 15 s ($((SECONDS - start)) s)" \
    test $((SECONDS - start)) -le 15
t_done
