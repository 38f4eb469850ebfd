#!/usr/bin/env bash
# t_collsim.sh: the cost model and the collective simulator (tests/progs/collsim.c): the
# simulated schedules of the real algorithm code agree with the formulas the library picks
# by; the model's table meets its goals (the pick within 10% of the best, n = 4,096 near the
# lower bound); `baton tune` writes a file the simulator and the library read. How close real
# runs come to the simulator is a measurement, not a test: bench/collsim_check.sh.
# timeout: 240
source "$(dirname "$0")/lib.sh"

S=$BATON_BUILD/tests/progs/collsim
B=$BATON_BUILD/bench/allreduce_bench

t_check "collsim check: simulator and formulas agree" "$S" check
"$S" table --max-sim 256 --size-step 16 >"$T_TMP/table" 2>&1
t_expect_eq "collsim table: the goals are met (exit 0)" "$?" 0
t_grep "collsim table: the pick is within 10% of the best" "pick within 10% of the best everywhere: yes" "$T_TMP/table"
sed "s/^/# /" "$T_TMP/table" | tail -3
"$S" one ring 8 nonsense >"$T_TMP/o" 2>"$T_TMP/e"
t_expect_eq "collsim one with a bad size: exit 2" "$?" 2

(cd "$T_TMP" && "$BATON" tune -o tune.txt >out 2>err)
t_expect_eq "baton tune: exits 0" "$?" 0
t_grep "baton tune: writes tcp_alpha" '^tcp_alpha [0-9.e+-]+$' "$T_TMP/tune.txt"
t_grep "baton tune: writes shm_beta" '^shm_beta [0-9.e+-]+$' "$T_TMP/tune.txt"
echo "tcp_alpha lots" >"$T_TMP/bad.txt"
BATON_TUNE_FILE=$T_TMP/bad.txt "$BATON" run -n 2 -- "$BATON_BUILD/tests/progs/coll_check" \
    >"$T_TMP/o" 2>"$T_TMP/e"
t_expect_eq "a malformed BATON_TUNE_FILE: the job fails" "$([ $? -ne 0 ] && echo yes)" yes
t_grep "a malformed BATON_TUNE_FILE: named with its line" "BATON_TUNE_FILE=.*bad.txt line 1" "$T_TMP/e"
BATON_TUNE_FILE=$T_TMP/tune.txt BATON_TRANSPORT=tcp "$BATON" run -n 3 -- \
    "$BATON_BUILD/tests/progs/coll_check" >"$T_TMP/o" 2>"$T_TMP/e"
t_expect_eq "3 ranks over TCP with the tune file: coll_check passes" "$?" 0

t_done
