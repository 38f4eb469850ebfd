#!/usr/bin/env bash
# t_store_bench.sh: 10,000 clients join one rendezvous store (bench/rdzv_bench): every one
# does the HMAC handshake, SET, ADD and WAIT, and the bench checks the counter and the last
# address afterwards; then 2,000 clients through node relays of 8 (--per-node 8), each relay's
# connection its launcher's, which joins first as two channels of it: the store must hold one
# connection per node. The time is printed, not asserted (the machine is shared); docs/performance.md
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
# 8 clients per node through node relays: the store holds one connection per node (and,
# briefly, the bench's verifying client).
"$B" --clients 2000 --per-node 8 >"$T_TMP/relay" 2>&1
t_expect_eq "rdzv_bench --clients 2000 --per-node 8 exits 0" "$?" 0
t_grep "through relays: 250 launchers joined on their relays' connections" \
    '^rdzv_bench: 250 launchers joined as 2 channels each of their relay.s connection in ' "$T_TMP/relay"
most=$(sed -n 's/.*the store held at most \([0-9]*\) connections for 250 nodes.*/\1/p' "$T_TMP/relay")
t_expect_eq "through relays: the store held 250 connections for 250 nodes (+1 verifier)" \
    "$([ -n "$most" ] && [ "$most" -ge 250 ] && [ "$most" -le 251 ] && echo yes)" yes
sed "s/^/# /" "$T_TMP/relay"
t_done
