#!/usr/bin/env bash
# t_store_bench.sh: 10,000 clients join one rendezvous store (bench/rdzv_bench): every one
# does the HMAC handshake, SET, ADD and WAIT, and the bench checks the counter and the last
# address afterwards. The time is printed, not asserted (the machine is shared); docs/performance.md
# has the figures.
# timeout: 240
source "$(dirname "$0")/lib.sh"

B=$BATON_BUILD/bench/rdzv_bench
if [ ! -x "$B" ]; then
    t_skip "rdzv_bench 10000 clients" "no $B (build it first)"
    t_done
fi
t_bg "$B" --clients 10000 >"$T_TMP/out" 2>&1
t_wait "$T_LAST_PID" 200 >"$T_TMP/rc" # not in $(...): a subshell cannot wait
rc=$(cat "$T_TMP/rc")
t_expect_eq "rdzv_bench --clients 10000 exits 0" "$rc" 0
t_grep "10000 clients joined" '^rdzv_bench: 10000 clients joined in [0-9]+\.[0-9]{3} s$' "$T_TMP/out"
sed "s/^/# /" "$T_TMP/out"
t_done
