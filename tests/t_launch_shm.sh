#!/usr/bin/env bash
# t_launch_shm.sh: a shared-memory segment name left in /dev/shm by a worker that died (a
# local rank 0 killed while its node's ranks were still attaching) is removed by the launcher
# when it reaps that worker; names of other processes are left alone; a real shm job leaves
# nothing behind; and while a job runs, the segments of the world and of its children (split,
# dup, create_group) have no name left once every member mapped them (split_check --shm-names).
# serial: looks at every /dev/shm name or network namespace on the machine
# timeout: 60
source "$(dirname "$0")/lib.sh"

# A worker that names a segment the way transport/shm.c does, then dies by SIGKILL.
other=/dev/shm/baton-2147483646-0-g0-n0 # a pid that cannot be ours
: >"$other"
out=$T_TMP/dead.log
timeout 30 "$BATON" run -n 1 -- sh -c \
    'echo $$ >'"$T_TMP"'/pid; : >/dev/shm/baton-$$-deadbeef-g0-n0; kill -9 $$' >"$out" 2>&1
t_expect_eq "worker SIGKILLed: exit status 137" "$?" 137
pid=$(cat "$T_TMP/pid" 2>/dev/null)
t_check "the worker wrote its pid" test -n "$pid"
t_check "its segment name is gone after the launcher reaped it" \
    test ! -e "/dev/shm/baton-$pid-deadbeef-g0-n0"
t_check "another process's segment name is left alone" test -e "$other"
rm -f "$other" "/dev/shm/baton-$pid-deadbeef-g0-n0"

# A real 2-rank shm job: nothing of it stays in /dev/shm.
before=$(ls /dev/shm | grep -c '^baton-')
CHECK=$BATON_BUILD/tests/progs/coll_check
timeout 60 "$BATON" run -n 2 -- "$CHECK" --iters 2 >"$T_TMP/ok.log" 2>&1
t_expect_eq "2 ranks over shm: exit status" "$?" 0
t_expect_eq "no baton-* names added to /dev/shm" "$(ls /dev/shm | grep -c '^baton-')" "$before"

# While the job runs (the launcher's clean-up at its end does not count): the last rank to map
# a segment removes its name, the world's and each child communicator's.
BATON_TRANSPORT=shm timeout 60 "$BATON" run -n 3 -- "$BATON_BUILD/tests/progs/split_check" --shm-names \
    >"$T_TMP/names.log" 2>&1
t_expect_eq "split_check --shm-names over shm: exit status" "$?" 0
t_expect_eq "... no segment name of the job left while its children live, every rank ok" \
    "$(grep -c 'shm name left' "$T_TMP/names.log") $(grep -cE 'rank [0-9]+ split ok$' "$T_TMP/names.log")" "0 3"
t_done
