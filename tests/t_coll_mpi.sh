#!/usr/bin/env bash
# t_coll_mpi.sh: the Open MPI backend under mpirun: every collective x dtype x op checked
# against a reference (tests/progs/coll_sweep) at 1, 2, 3, 4, 5 and 7 ranks (oversubscribed),
# with the log saying the MPI backend was chosen; unchanged programs (coll_check, hello) under
# mpirun; the same sweep and sub-communicator checks with BATON_MPI_POLL=1 (MPI_I* calls polled
# instead of MPI's blocking ones); `mpirun ... baton run` keeping the native path; bad
# BATON_BACKEND choices failing with
# one line; sub-communicators (MPI_Comm_split, MPI_Comm_dup, MPI_Comm_create_group) and grouped
# calls, exchange collectives and point-to-point (MPI_Isend/MPI_Irecv) on the MPI backend
# (tests/progs/split_check), and point-to-point past its limits (split_check --mpi-bad:
# INT_MAX + 1 bytes and a tag over MPI_TAG_UB are BT_ERR_INVALID_ARG, a truncated receive
# BT_ERR_INVALID_USAGE); an MPI error (ranks disagreeing on a
# broadcast) becoming a baton error with MPI's text; a SIGKILLed rank ending the job quickly;
# a SIGSTOPped one making the others time out (BATON_TIMEOUT): the watchdog ends a blocking
# call's process with status 142, a polled call returns the error; and no rank process left
# behind.
# timeout: 240
source "$(dirname "$0")/lib.sh"
SWEEP=$BATON_BUILD/tests/progs/coll_sweep
CHECK=$BATON_BUILD/tests/progs/coll_check
HELLO=$BATON_BUILD/examples/hello
SPLIT=$BATON_BUILD/tests/progs/split_check
for p in "$SWEEP" "$CHECK" "$HELLO" "$SPLIT"; do
    [ -x "$p" ] || { t_fail "build" "$p missing"; t_done; }
done
# Ranks run through links under $T_TMP, so the last check can find any that outlived a test.
mkdir -p "$T_TMP/bin"
ln -s "$SWEEP" "$T_TMP/bin/coll_sweep"; ln -s "$CHECK" "$T_TMP/bin/coll_check"
ln -s "$HELLO" "$T_TMP/bin/hello"; ln -s "$SPLIT" "$T_TMP/bin/split_check"
SWEEP=$T_TMP/bin/coll_sweep CHECK=$T_TMP/bin/coll_check HELLO=$T_TMP/bin/hello
SPLIT=$T_TMP/bin/split_check

# one_line NAME PATTERN CMD...: CMD exits 3 (bt_init failed) with one stdout line matching.
one_line() {
    local name=$1 pat=$2; shift 2
    "$@" >"$T_TMP/out" 2>"$T_TMP/err"; local rc=$?
    if [ $rc -eq 3 ] && [ "$(wc -l <"$T_TMP/out")" -eq 1 ] && grep -qE -- "$pat" "$T_TMP/out"; then
        t_ok "$name"; else t_fail "$name" "rc=$rc, out: $(head -c 400 "$T_TMP/out")"; fi
}

one_line "BATON_BACKEND=mpi outside mpirun: one line, exit 3" \
    '^bt_init failed: BATON_BACKEND=mpi but this process was not started by mpirun \(no OMPI_COMM_WORLD_RANK or PMIX_RANK\); hint: ' \
    env BATON_BACKEND=mpi "$SWEEP"
one_line "BATON_BACKEND=bogus: one line, exit 3" \
    "^bt_init failed: BATON_BACKEND='bogus' is not one of auto\|baton\|mpi\|nccl$" \
    env BATON_BACKEND=bogus "$SWEEP"

# The backend is a plugin: where it is missing, asking for MPI under mpirun's env says so.
mkdir -p "$T_TMP/noplugins"
one_line "no MPI plugin: BATON_BACKEND=mpi under mpirun's env says which file is missing" \
    'BATON_BACKEND=mpi but the Open MPI backend is missing: libbaton-mpi.so is not in BATON_PLUGIN_DIR=.*; hint: ' \
    env BATON_PLUGIN_DIR="$T_TMP/noplugins" BATON_BACKEND=mpi OMPI_COMM_WORLD_RANK=0 \
    OMPI_COMM_WORLD_SIZE=2 "$SWEEP"
if [ ! -f "$BATON_BUILD/plugins/libbaton-mpi.so" ]; then
    t_skip "Open MPI backend" "the MPI plugin was not built (WITH_MPI=0 or no mpicc)"
    t_done
fi
if ! command -v mpirun >/dev/null; then
    t_skip "Open MPI backend" "mpirun not found (apt-get install openmpi-bin)"; t_done
fi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
# Open MPI's leak reports are about libmpi's own allocations, not baton's (see docs/testing.md).
[ "${SANITIZER:-}" = address ] && export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

# Open MPI's thread level here decides the mode (blocking calls need MPI_THREAD_MULTIPLE).
BATON_MPI_POLL=0 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 60 "${MPIRUN[@]}" -np 1 \
    -x BATON_DEBUG -x BATON_DEBUG_SUBSYS -x BATON_MPI_POLL "$HELLO" >"$T_TMP/mode" 2>&1
BLOCKING=0
grep -q 'thread level 3' "$T_TMP/mode" && BLOCKING=1
t_check "the backend blocks (MPI_THREAD_MULTIPLE) or polls, as the thread level says" \
    grep -qE "thread level 3, blocking calls under a watchdog|thread level [0-2], nonblocking calls polled" "$T_TMP/mode"
[ $BLOCKING = 1 ] || t_skip "blocking calls" "Open MPI gives less than MPI_THREAD_MULTIPLE here: $(grep -o 'thread level [0-9]' "$T_TMP/mode")"

# --- the whole sweep at several world sizes (and 3 and 5 polled); the log names the backend ---
for run in 1 2 3 4 5 7 p3 p5; do
    n=${run#p} big=() what="" poll=0 mode="blocking calls under a watchdog"
    [ $BLOCKING = 1 ] || mode="nonblocking calls polled"
    if [ "$run" != "$n" ]; then poll=1 mode="nonblocking calls polled" what=", BATON_MPI_POLL=1"; fi
    if [ $n = 2 ] || [ $n = 5 ]; then big=(--big); what="$what (+1M sample)"; fi
    out=$T_TMP/sweep$run.log
    BATON_MPI_POLL=$poll BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 120 "${MPIRUN[@]}" \
        -np $n -x BATON_DEBUG -x BATON_DEBUG_SUBSYS -x BATON_MPI_POLL "$SWEEP" "${big[@]}" \
        >"$out" 2>&1
    t_expect_eq "sweep, $n rank(s)$what: mpirun exit status" "$?" 0
    t_expect_eq "sweep, $n rank(s)$what: every rank checked every call" \
        "$(grep -cE '^rank [0-9]+ sweep ok: 6[0-9]{2} calls$' "$out")" "$n"
    t_expect_eq "sweep, $n rank(s)$what: every rank logged the MPI backend, $mode" \
        "$(grep -cE "INFO INIT rank [0-9]+: backend mpi \(Open MPI v[0-9.]+, MPI_COMM_WORLD of $n ranks on 1 node.*, $mode\)" "$out")" "$n"
    grep -E 'sweep ok|differs|failed' "$out" | grep -v 'sweep ok' | head -3 | sed 's/^/    | /'
done

# --- unchanged programs ---
out=$T_TMP/check.log
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 60 "${MPIRUN[@]}" -np 4 -x BATON_DEBUG \
    -x BATON_DEBUG_SUBSYS "$CHECK" --iters 5 --count 300000 >"$out" 2>&1
t_expect_eq "coll_check under mpirun -np 4: exit status" "$?" 0
t_expect_eq "coll_check under mpirun -np 4: 4 ranks report ok" "$(grep -cE '^rank [0-9]+ ok$' "$out")" 4
t_expect_eq "coll_check under mpirun: local ranks and the one node found" \
    "$(grep -cE 'rank [0-3] of 4 \(local [0-3] of 4, node 0 of 1\) joined$' "$out")" 4
timeout 60 "${MPIRUN[@]}" -np 3 "$HELLO" >"$T_TMP/hello" 2>&1
t_expect_eq "hello under mpirun -np 3: exit status" "$?" 0
t_expect_eq "hello under mpirun -np 3: each rank knows its place" \
    "$(grep -cE '^hello from rank [0-2] of 3$' "$T_TMP/hello")" 3
timeout 60 "${MPIRUN[@]}" -np 2 -x BATON_BACKEND=mpi "$HELLO" >"$T_TMP/hello2" 2>&1
t_expect_eq "BATON_BACKEND=mpi under mpirun -np 2: hello works" \
    "$(grep -cE '^hello from rank [01] of 2$' "$T_TMP/hello2")" 2

# Ranks that would wait differently (one with BATON_MPI_POLL=1, one without) all poll: MPI never
# matches a blocking collective with a nonblocking one.
if [ $BLOCKING = 1 ]; then
    out=$T_TMP/mixed.log
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 120 "${MPIRUN[@]}" -x BATON_DEBUG \
        -x BATON_DEBUG_SUBSYS -np 1 env BATON_MPI_POLL=1 "$SWEEP" : -np 1 env BATON_MPI_POLL=0 \
        "$SWEEP" >"$out" 2>&1
    t_expect_eq "BATON_MPI_POLL=1 on rank 0 only: mpirun exit status" "$?" 0
    t_expect_eq "BATON_MPI_POLL=1 on rank 0 only: both ranks checked every call" \
        "$(grep -cE '^rank [01] sweep ok: 6[0-9]{2} calls$' "$out")" 2
    t_expect_eq "BATON_MPI_POLL=1 on rank 0 only: both ranks poll" \
        "$(grep -cE 'INFO INIT rank [01]: backend mpi .*, nonblocking calls polled\)' "$out")" 2
    t_grep "BATON_MPI_POLL=1 on rank 0 only: rank 1 says why it polls" \
        'WARN INIT rank 1: another rank polls its MPI calls \(BATON_MPI_POLL=1 there, or MPI gave it less than MPI_THREAD_MULTIPLE\), so every rank does; hint: ' "$out"
fi

# --- sub-communicators and grouped calls on the MPI backend (and 3 ranks polled) ---
for run in 1 2 3 5 p3; do
    n=${run#p} poll=0 what=""
    [ "$run" != "$n" ] && poll=1 what=", BATON_MPI_POLL=1"
    out=$T_TMP/split$run.log
    BATON_MPI_POLL=$poll BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 60 "${MPIRUN[@]}" \
        -np $n -x BATON_DEBUG -x BATON_DEBUG_SUBSYS -x BATON_MPI_POLL "$SPLIT" >"$out" 2>&1
    t_expect_eq "split/dup/create_group/group/exchange/point-to-point under mpirun -np $n$what: exit status" "$?" 0
    t_expect_eq "split under mpirun -np $n$what: every rank checked its children" \
        "$(grep -cE '^rank [0-9]+ split ok$' "$out")" "$n"
    t_check "split under mpirun -np $n$what: children made by MPI_Comm_split and MPI_Comm_dup" \
        bash -c "grep -q '(MPI_Comm_split): rank' '$out' && grep -q '(MPI_Comm_dup): rank' '$out'"
    grep -E '^rank [0-9]+: ' "$out" | head -3 | sed 's/^/    | /'
done
t_grep "create_group under mpirun -np 5: MPI_Comm_create_group of world ranks 0 and 4" \
    '\(MPI_Comm_create_group\): rank [01] of 2' "$T_TMP/split5.log"

# --- point-to-point past the MPI backend's limits (split_check --mpi-bad): over INT_MAX bytes
# and a tag over MPI_TAG_UB are BT_ERR_INVALID_ARG, a message larger than its receive is
# BT_ERR_INVALID_USAGE (MPI_ERR_TRUNCATE)
out=$T_TMP/mpibad.log
timeout 60 "${MPIRUN[@]}" -np 2 "$SPLIT" --mpi-bad >"$out" 2>&1
t_expect_eq "p2p limits under mpirun -np 2: exit status" "$?" 0
t_expect_eq "p2p limits: INT_MAX + 1 bytes refused, a receive too small refused, both ranks ok" \
    "$(grep -cE '^rank [01] mpi-bad ok$' "$out")" 2
if grep -q 'MPI_TAG_UB is INT_MAX here' "$out"; then
    t_skip "p2p limits: a tag over MPI_TAG_UB refused" "this MPI's MPI_TAG_UB is INT_MAX: no int tag is over it"
else
    t_ok "p2p limits: a tag over MPI_TAG_UB refused"
fi
grep -E '^rank [0-9]+: ' "$out" | head -3 | sed 's/^/    | /'

# --- mpirun starting `baton run`: its workers keep baton's own path ---
out=$T_TMP/nested.log
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT timeout 60 "${MPIRUN[@]}" -np 2 -x BATON_DEBUG \
    -x BATON_DEBUG_SUBSYS "$BATON" run -n 1 --rdzv 127.0.0.1:"$(t_free_port)" -- "$SWEEP" \
    >"$out" 2>&1
t_expect_eq "mpirun -np 2 baton run: exit status" "$?" 0
t_expect_eq "mpirun -np 2 baton run: both workers checked every call" \
    "$(grep -cE 'rank [01] sweep ok' "$out")" 2
t_check "mpirun -np 2 baton run: workers did not take the MPI backend" \
    bash -c "grep -q 'transports tcp' '$out' && ! grep -q 'backend mpi' '$out'"

# --- bad choices under mpirun ---
"${MPIRUN[@]}" -np 2 -x BATON_BACKEND=baton "$SWEEP" >"$T_TMP/out" 2>/dev/null
rc=$?
if [ $rc -ne 0 ] && [ "$(grep -c 'BATON_BACKEND=baton but mpirun started this process as one of 2 ranks' "$T_TMP/out")" = 2 ]; then
    t_ok "BATON_BACKEND=baton under mpirun -np 2: refused, one line per rank"
else t_fail "BATON_BACKEND=baton under mpirun -np 2: refused, one line per rank" "rc=$rc: $(head -c 300 "$T_TMP/out")"; fi

# --- an MPI error becomes a baton error with MPI's text; mpirun then ends the job ---
out=$T_TMP/mismatch.log
# (rank 1 also writes its line to a file: mpirun, ending the job on rank 1's exit 5, can drop
# that rank's last stdout line, as under load it once did)
timeout 60 "${MPIRUN[@]}" -np 2 "$SWEEP" --mismatch --mismatch-log "$T_TMP/mm" >"$out" 2>&1
rc=$?
t_check "ranks disagreeing on a broadcast: mpirun exits non-zero (got $rc), no hang" \
    test $rc -ne 0 -a $rc -ne 124
t_grep "ranks disagreeing: the error names the call, number and MPI's text" \
    '^rank 1: mismatched broadcast: invalid usage: broadcast #1: MPI_I?[Bb]cast failed: MPI_ERR_TRUNCATE: message truncated; hint: ' "$T_TMP/mm.1"

# --- a SIGKILLed rank: mpirun ends the whole job within seconds ---
out=$T_TMP/kill.log
start=$SECONDS
timeout 60 "${MPIRUN[@]}" -np 3 "$CHECK" --count 1048576 --iters 400 --die-rank 1 --die-at 3 \
    --signal KILL >"$out" 2>&1
rc=$?
t_check "SIGKILL of rank 1 under mpirun: mpirun exits non-zero (got $rc), not by timeout" \
    test $rc -ne 0 -a $rc -ne 124
t_check "SIGKILL under mpirun: over within 20 s ($((SECONDS - start)) s)" \
    test $((SECONDS - start)) -le 20

# --- a stopped rank: BATON_TIMEOUT and BATON_STALL_WARN apply under mpirun too. A blocking
# call is watched: the stall is reported, and at the timeout the process ends with status 142
# (a blocking MPI call cannot be abandoned). A polled call (BATON_MPI_POLL=1) returns the error.
for poll in 0 1; do
    what=", blocking calls" out=$T_TMP/stop$poll.log
    [ $poll = 1 ] && what=", BATON_MPI_POLL=1"
    [ $poll = 0 ] && [ $BLOCKING = 0 ] && continue
    start=$SECONDS
    timeout 60 "${MPIRUN[@]}" -np 3 -x BATON_TIMEOUT=3 -x BATON_STALL_WARN=1 \
        -x BATON_MPI_POLL=$poll "$CHECK" --count 1000 --iters 400 --die-rank 1 --die-at 3 \
        --signal STOP >"$out" 2>&1
    rc=$?
    if [ $poll = 0 ]; then
        t_expect_eq "SIGSTOP of rank 1 under mpirun$what, BATON_TIMEOUT=3: mpirun exits with the watchdog's 142" "$rc" 142
    else
        t_check "SIGSTOP of rank 1 under mpirun$what, BATON_TIMEOUT=3: mpirun exits non-zero (got $rc), not by timeout" \
            test $rc -ne 0 -a $rc -ne 124
    fi
    t_grep "SIGSTOP under mpirun$what: a waiting rank warns of the stall after BATON_STALL_WARN" \
        'allreduce #[0-9]+ on communicator world: still waiting after [1-2] s for rank\(s\) \? \(Open MPI does not say which\)' "$out"
    t_grep "SIGSTOP under mpirun$what: a waiting rank's allreduce times out after BATON_TIMEOUT" \
        'allreduce #[0-9]+ on communicator world timed out after [3-9] s' "$out"
    if [ $poll = 0 ]; then
        t_grep "SIGSTOP under mpirun$what: the watchdog ends the waiting rank with status 142" \
            'rank [02]: MPI_Allreduce is a blocking Open MPI call and cannot be abandoned: exiting with status 142 so that mpirun ends the job' "$out"
    else
        t_grep "SIGSTOP under mpirun$what: the program gets the error back" \
            '^rank [02]: collective failed after [0-9.]+ s: .*timed out after [3-9] s' "$out"
    fi
    t_check "SIGSTOP under mpirun$what: over within 30 s ($((SECONDS - start)) s)" \
        test $((SECONDS - start)) -le 30
done

# --- with blocking calls the watchdog bounds a split too: a rank stopped before it ---
if [ $BLOCKING = 1 ]; then
    out=$T_TMP/stopsplit.log
    start=$SECONDS
    timeout 60 "${MPIRUN[@]}" -np 3 -x BATON_TIMEOUT=3 "$CHECK" --count 1000 --iters 5 --split 2 \
        --die-rank 1 --die-at split --signal STOP >"$out" 2>&1
    rc=$?
    t_expect_eq "SIGSTOP of rank 1 before bt_comm_split under mpirun: mpirun exits with 142" "$rc" 142
    t_grep "SIGSTOP before the split: a waiting rank's split times out after BATON_TIMEOUT" \
        'comm_split #[0-9]+ on communicator world timed out after [3-9] s' "$out"
    t_grep "SIGSTOP before the split: the watchdog ends the waiting rank with status 142" \
        'rank [02]: MPI_Comm_split is a blocking Open MPI call and cannot be abandoned: exiting with status 142' "$out"
    t_check "SIGSTOP before the split: over within 30 s ($((SECONDS - start)) s)" \
        test $((SECONDS - start)) -le 30
fi

# --- nothing left behind: no process runs a program from $T_TMP ---
left() { ps -eo pid=,stat=,args= | D="$T_TMP/bin/" awk 'index($0, ENVIRON["D"]) && $2 !~ /^Z/'; }
for _ in $(seq 1 50); do [ -z "$(left)" ] && break; sleep 0.1; done
t_expect_eq "no rank process outlives its mpirun" "$(left)" ""
t_done
