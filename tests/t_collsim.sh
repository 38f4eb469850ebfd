#!/usr/bin/env bash
# t_collsim.sh: the cost model and the collective simulator (tests/progs/collsim.c): the
# simulated schedules of the real algorithm code agree with the formulas the library picks
# by; the model's table meets its goals (the pick within 10% of the best, n = 4,096 near the
# lower bound); `baton tune` writes a file the simulator and the library read; the host model
# replays the committed measurements of bench/collsim_measured.txt (bench/collsim_check.sh
# wrote it on the development VM: the file says when, how and under what load) from their
# calibration rows alone, and comes within 15% of as many rows as docs/performance.md says.
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

# The host model against the committed measurements (bench/collsim_measured.txt, quiet
# 2026-12-03 18:21 UTC, with step, wake and call rows). Issue 20's goal, every row within 15%,
# is not met: 112 of 180 rows are (99 before a rank woken onto a busy node stopped paying an
# idle core's wake-up and a byte's CPU came from the 2-rank exchange at every n;
# docs/performance.md says where and why). This holds the model to what it does now.
M=$BATON_SRC/bench/collsim_measured.txt
"$S" verify "$M" -v >"$T_TMP/verify" 2>&1
sed "s/^/# /" "$T_TMP/verify" | tail -7
t_grep "collsim verify: replays all 180 measured rows" "^180 rows: " "$T_TMP/verify"
within=$(sed -n 's/^180 rows: \([0-9]*\) within 15%.*/\1/p' "$T_TMP/verify")
t_expect_eq "collsim verify: at least 112 rows within 15% (as measured)" "$([ "${within:-0}" -ge 112 ] && echo yes)" yes
t_expect_eq "collsim verify: veth at 1 MiB and up, 52 of the 54 rows within 15%" \
    "$(awk '/ B: real / && $1 == "veth" && $4 >= 1048576 && !/OUTSIDE/' "$T_TMP/verify" | wc -l | tr -d ' ')" 52
t_grep "collsim verify: the committed file has step rows at 8 ranks" '^step lo 8 pairs 4096 ' "$M"
# A second whole table, an hour later (2026-12-03 19:23 UTC), with step_bench's CPU column: the
# model takes the sharing cost w of a step from it. It holds the model to that file's 112 rows
# (104 without the column: docs/performance.md), and the column must change the predictions.
M2=$BATON_SRC/bench/collsim_measured_cpu.txt
"$S" verify "$M2" -v >"$T_TMP/verify2" 2>&1
within2=$(sed -n 's/^180 rows: \([0-9]*\) within 15%.*/\1/p' "$T_TMP/verify2")
t_expect_eq "collsim verify, the file with the CPU column: at least 112 of 180 rows within 15% (as measured)" \
    "$([ "${within2:-0}" -ge 112 ] && echo yes)" yes
awk '/^step lo [0-9]+ pairs / { NF = 6 } { print }' "$M2" >"$T_TMP/m2nocpu"
"$S" verify "$T_TMP/m2nocpu" -v >"$T_TMP/verify2n" 2>&1
t_check "collsim verify: the CPU column changes the 8-rank 4 KiB ring's prediction" \
    test "$(grep 'lo   n=8 ring  *4096 ' "$T_TMP/verify2")" != "$(grep 'lo   n=8 ring  *4096 ' "$T_TMP/verify2n")"
# A third whole table (2026-12-03 21:18 UTC), measured after the model's last change and not
# used to make it: 110 rows within 15% (the model before that change: 99).
M3=$BATON_SRC/bench/collsim_measured_holdout.txt
"$S" verify "$M3" -v >"$T_TMP/verify3" 2>&1
within3=$(sed -n 's/^180 rows: \([0-9]*\) within 15%.*/\1/p' "$T_TMP/verify3")
t_expect_eq "collsim verify, the held-out table: at least 110 of 180 rows within 15% (as measured)" \
    "$([ "${within3:-0}" -ge 110 ] && echo yes)" yes
# The tbf's burst: a veth message within the bucket passes at once, but the bucket is empty
# when a call starts (the calls before it drained it): 4 KiB waits for the refill, 64 KiB too.
t_grep "collsim verify: the committed file has the tbf burst" '^veth_burst 131072$' "$M"
# Step rows (bench/step_bench; made up here, to test their effect): where ranks outnumber
# cores, a step costs the exchange's time shared out (w) and a message waits for a core (the
# token's hop at n ranks less at 2); without them the one-core ping-pong's w.
{ grep -E '^(cores|sockbuf|cal lo|pp lo)' "$M"
  for n in 2 8; do
      for b in 4096 65536 1048576 16777216; do
          echo "step lo $n pairs $b $(awk -v n=$n -v b=$b 'BEGIN { print (n == 2 ? 1e-05 : 2e-04) + b * 6e-10 * n / 2 }')"
          echo "step lo $n ring $b $(awk -v n=$n 'BEGIN { print n == 2 ? 5e-06 : 4e-05 }')"
      done
  done
  echo "row lo 8 ring 4096 0.001 1"; echo "row lo 2 ring 4096 0.00001 1"
  echo "row lo 8 ring 16777216 0.05 1"; } >"$T_TMP/ms"
grep -v '^step' "$T_TMP/ms" >"$T_TMP/ms0"
"$S" verify "$T_TMP/ms" -v --tol 100 >"$T_TMP/vs" 2>&1
t_expect_eq "collsim verify with step rows: exit 0 (every row within --tol 100)" "$?" 0
"$S" verify "$T_TMP/ms0" -v --tol 100 >"$T_TMP/vs0" 2>&1
sim() { sed -n "s/^$1 .* simulated \([^ ]*\) .*/\1/p" "$2"; }
t_expect_eq "step rows: 8 ranks on 2 cores, 4 KiB ring: slower than with the one-core ping-pong's w" \
    "$(awk -v a="$(sim 'lo   n=8 ring  *4096' "$T_TMP/vs")" -v b="$(sim 'lo   n=8 ring  *4096' "$T_TMP/vs0")" 'BEGIN { print (a > 1.5 * b ? "yes" : a " vs " b) }')" yes
t_expect_eq "step rows: 2 ranks on 2 cores, 4 KiB ring: no sharing cost, as without" \
    "$(awk -v a="$(sim 'lo   n=2 ring' "$T_TMP/vs")" -v b="$(sim 'lo   n=2 ring' "$T_TMP/vs0")" 'BEGIN { d = a / b - 1; print (d < 0.25 && d > -0.25 ? "yes" : a " vs " b) }')" yes
# A byte's CPU is the 2-rank exchange's slope however many ranks share the cores: doubling the
# 8-rank exchange's cost per byte (its rows from 1 MiB; the 4 KiB one gives w) leaves the
# 8-rank 16 MiB ring as it was, doubling the 2-rank one's makes it at least 1.5x slower.
awk '$1 == "step" && $3 == 8 && $4 == "pairs" && $5 >= 1048576 { $6 = 2e-04 + 2 * ($6 - 2e-04) } { print }' "$T_TMP/ms" >"$T_TMP/ms8"
awk '$1 == "step" && $3 == 2 && $4 == "pairs" { $6 = 1e-05 + 2 * ($6 - 1e-05) } { print }' "$T_TMP/ms" >"$T_TMP/ms2"
"$S" verify "$T_TMP/ms8" -v --tol 100 >"$T_TMP/vs8" 2>&1
"$S" verify "$T_TMP/ms2" -v --tol 100 >"$T_TMP/vs2" 2>&1
t_expect_eq "step rows: the 8-rank exchange's slope does not set a byte's cost" \
    "$(sim 'lo   n=8 ring  *16777216' "$T_TMP/vs8")" "$(sim 'lo   n=8 ring  *16777216' "$T_TMP/vs")"
t_expect_eq "step rows: the 2-rank exchange's slope does" \
    "$(awk -v a="$(sim 'lo   n=8 ring  *16777216' "$T_TMP/vs2")" -v b="$(sim 'lo   n=8 ring  *16777216' "$T_TMP/vs")" 'BEGIN { print (a > 1.5 * b ? "yes" : a " vs " b) }')" yes
# With the CPU column (step_bench's CPU time in an exchange), a step's sharing cost w comes from
# that CPU, not from the exchange's time shared out: the same 8-rank rows with each rank
# spending 1e-5 s + 6e-10 s/B of CPU (as at 2 ranks) make the 4 KiB ring at least 1.5x faster.
awk '/^step lo [0-9]+ pairs / { print $0, 1e-05 + $5 * 6e-10; next } { print }' "$T_TMP/ms" >"$T_TMP/msc"
"$S" verify "$T_TMP/msc" -v --tol 100 >"$T_TMP/vsc" 2>&1
t_expect_eq "step rows with CPU: exit 0 (every row within --tol 100)" "$?" 0
t_expect_eq "step rows with CPU: 8 ranks, 4 KiB ring: the CPU measured, not the wall time shared out" \
    "$(awk -v a="$(sim 'lo   n=8 ring  *4096' "$T_TMP/vsc")" -v b="$(sim 'lo   n=8 ring  *4096' "$T_TMP/vs")" 'BEGIN { print (1.5 * a < b ? "yes" : a " vs " b) }')" yes
# Wake rows (bench/step_bench --pattern wake): a rank idle past the transport's spin when its
# message comes runs the wake-up's cost later. 4 ranks, 4 KiB ring: a 50 us wake-up after 1 us
# idle makes the call slower than without wake rows; a wake-up that costs nothing changes nothing.
CAL='cores 2\ncal lo 2 5.6e-06 2.8e-10 3.5e-11\ncal lo 1 1.7e-05 4.7e-10 3.4e-11\n'
variants() { # NAME ROWS BIG ZERO: verifies CAL+ROWS ($T_TMP/vNAME0), with BIG (vNAMEb), with ZERO (vNAMEz)
    printf "$CAL$2" >"$T_TMP/${1}0"
    { cat "$T_TMP/${1}0"; printf "$3"; } >"$T_TMP/${1}b"
    { cat "$T_TMP/${1}0"; printf "$4"; } >"$T_TMP/${1}z"
    for f in 0 b z; do "$S" verify "$T_TMP/$1$f" -v --tol 100 >"$T_TMP/v$1$f" 2>&1; done
}
variants w 'row lo 4 ring 4096 1e-04 1\n' 'wake lo 2 0 6e-06\nwake lo 2 1e-06 5.6e-05\n' \
    'wake lo 2 0 6e-06\nwake lo 2 1e-06 6e-06\n'
t_expect_eq "wake rows: 4 ranks, 4 KiB ring: 50 us wake-ups make it at least twice as slow" \
    "$(awk -v a="$(sim 'lo   n=4 ring' "$T_TMP/vwb")" -v b="$(sim 'lo   n=4 ring' "$T_TMP/vw0")" 'BEGIN { print (a > 2 * b ? "yes" : a " vs " b) }')" yes
t_expect_eq "wake rows: wake-ups that cost nothing change nothing" \
    "$(sim 'lo   n=4 ring' "$T_TMP/vwz")" "$(sim 'lo   n=4 ring' "$T_TMP/vw0")"
# The wake rows are a rank woken onto an idle core; where every core of the node has other work
# the woken rank only waits its turn. 8 ranks on 2 cores, 4 KiB ring: the same 50 us wake-ups
# cost at most 10% (they are paid only where a core is idle: at the call's start and end).
variants w8 'row lo 8 ring 4096 1e-03 1
' 'wake lo 2 0 6e-06
wake lo 2 1e-06 5.6e-05
' ''
t_expect_eq "wake rows: 8 ranks on 2 cores, 4 KiB ring: a busy node's ranks do not pay the idle core's wake-up" \
    "$(awk -v a="$(sim 'lo   n=8 ring' "$T_TMP/vw8b")" -v b="$(sim 'lo   n=8 ring' "$T_TMP/vw80")" 'BEGIN { print (a < 1.1 * b ? "yes" : a " vs " b) }')" yes
# A call row (bench/step_bench --pattern call): what a collective call costs beyond its
# transfers, CPU at each call's first step: 50 us of it makes a 2-rank 4 KiB tree broadcast
# at least 40 us slower (the ranks' costs overlap a little); equal times (nothing beyond the
# transfers) change nothing.
variants c 'row lo 2 tree_bcast 4096 1e-05 1\n' 'call lo 2 5.6e-05 6e-06\n' 'call lo 2 6e-06 6e-06\n'
t_expect_eq "call rows: 50 us a call makes a 2-rank 4 KiB tree broadcast at least 40 us slower" \
    "$(awk -v a="$(sim 'lo   n=2 tree_bcast' "$T_TMP/vcb")" -v b="$(sim 'lo   n=2 tree_bcast' "$T_TMP/vc0")" 'BEGIN { print (a >= b + 4e-05 ? "yes" : a " vs " b) }')" yes
t_expect_eq "call rows: a call that costs nothing beyond its transfers changes nothing" \
    "$(sim 'lo   n=2 tree_bcast' "$T_TMP/vcz")" "$(sim 'lo   n=2 tree_bcast' "$T_TMP/vc0")"
BATON_TRANSPORT=tcp "$BATON" run -n 2 --no-tag-output -- "$BATON_BUILD/bench/step_bench" \
    --pattern call -n 5 -w 1 >"$T_TMP/call" 2>"$T_TMP/e"
t_grep "step_bench --pattern call: the allreduce's and the exchange's medians" \
    '^call [0-9.]+ [0-9.]+$' "$T_TMP/call"
# The probe itself: 2 ranks, each delay from 0 to 512 us once, a one-way time each.
BATON_TRANSPORT=tcp "$BATON" run -n 2 --no-tag-output -- "$BATON_BUILD/bench/step_bench" \
    --pattern wake -b 4K -n 5 -w 1 >"$T_TMP/wake" 2>"$T_TMP/e"
t_expect_eq "step_bench --pattern wake: exits 0" "$?" 0
t_expect_eq "step_bench --pattern wake: a one-way time for each of the 19 delays, 0 to 512 us" \
    "$(awk '$2 > 0 { k++ } END { print k }' "$T_TMP/wake") $(head -1 "$T_TMP/wake" | cut -d' ' -f1) $(tail -1 "$T_TMP/wake" | cut -d' ' -f1)" "19 0 512"
BATON_TRANSPORT=tcp "$BATON" run -n 2 --no-tag-output -- "$BATON_BUILD/bench/step_bench" \
    --pattern pingpong -b 4K -e 64K -f 16 -n 3 -w 1 >"$T_TMP/pp" 2>"$T_TMP/e"
t_expect_eq "step_bench --pattern pingpong: a one-way time for 4 KiB and 64 KiB" \
    "$(awk '$2 > 0 { print $1 }' "$T_TMP/pp" | tr '\n' ' ')" "4096 65536 "
printf 'cores 2\ncal lo 2 1e-05 1e-09 3e-11\ncal lo 1 2e-05 1e-09 3e-11\nstep lo 3 pairs 4096 1e-05\n' >"$T_TMP/m3"
"$S" verify "$T_TMP/m3" >"$T_TMP/o" 2>&1
t_expect_eq "collsim verify with a step row for 3 ranks: exit 2" "$?" 2
t_grep "collsim verify names the bad step row's line" "line 4: a step row" "$T_TMP/o"
printf 'cores 2\ncal lo 2 1e-05 1e-09 3e-11\nrow lo 2 ring 4096 0.001 1\n' >"$T_TMP/m1"
"$S" verify "$T_TMP/m1" >"$T_TMP/o" 2>&1
t_expect_eq "collsim verify without the one-core calibration: exit 2" "$?" 2
printf 'cores 2\ncal lo 2 1e-05 1e-09 3e-11\ncal lo 1 2e-05 1e-09 3e-11\nrow lo 2 ring 4096 bad 1\n' >"$T_TMP/m2"
"$S" verify "$T_TMP/m2" >"$T_TMP/o" 2>&1
t_expect_eq "collsim verify with a malformed row: exit 2" "$?" 2
t_grep "collsim verify names the malformed line" "line 4" "$T_TMP/o"

t_done
