#!/usr/bin/env bash
# t_launch.sh: `baton run` on one node: output tagging, the env contract, failure reports and
# exit statuses, signals to baton, --grace, --max-restarts, --log-dir, usage errors.
# timeout: 180
. "$(dirname "$0")/lib.sh"
PROGS=$BATON_BUILD/tests/progs
W=$PROGS/launch_worker
HELLO=$BATON_BUILD/examples/hello


# ---- 4 ranks of hello
if [ -x "$HELLO" ]; then
    "$BATON" run -n 4 -- "$HELLO" >"$T_TMP/hello.out" 2>"$T_TMP/hello.err"
    t_expect_eq "hello: 4 ranks exit 0" "$?" 0
    n=0
    for r in 0 1 2 3; do grep -qx "\[$r\] hello from rank $r of 4" "$T_TMP/hello.out" && n=$((n + 1)); done
    t_expect_eq "hello: every rank's line, tagged [r]" "$n" 4
else
    t_skip "hello: 4 ranks" "examples/hello not built ($HELLO)"
fi

# ---- output: many long lines from 4 ranks, split at odd places by stdio, one very long line
"$BATON" run -n 4 -- "$PROGS/spam" 3000 5000 200000 >"$T_TMP/spam.out" 2>"$T_TMP/spam.err"
t_expect_eq "spam: exit 0" "$?" 0
if python3 - "$T_TMP/spam.out" "$T_TMP/spam.err" <<'EOF'; then t_ok "spam: every line intact under its own tag, long line split safely"; else t_fail "spam: lines intact"; fi
import re, sys
seen, longx, bad = set(), {}, 0
for path in sys.argv[1:]:
    for ln in open(path, encoding="ascii", errors="replace").read().split("\n")[:-1]:
        m = re.fullmatch(r"\[(\d+)\] (.*)", ln)
        if not m:
            bad += 1; print("untagged:", ln[:80]); continue
        tag, body = int(m.group(1)), m.group(2)
        s = re.fullmatch(r"S (\d+) (\d+) (\d+) ([a-z]+) E", body)
        if s:
            r, i, n, letters = int(s.group(1)), int(s.group(2)), int(s.group(3)), s.group(4)
            want = "".join(chr(97 + (i + j) % 26) for j in range(n))
            if r != tag or letters != want or (r, i) in seen:
                bad += 1; print("corrupt:", ln[:80])
            seen.add((r, i)); continue
        x = re.fullmatch(r"(L(\d+):)?(x+)", body)
        if x and (x.group(2) is None or int(x.group(2)) == tag):
            longx[tag] = longx.get(tag, 0) + len(x.group(3)); continue
        bad += 1; print("unexpected:", ln[:80])
missing = [(r, i) for r in range(4) for i in range(3000) if (r, i) not in seen]
if missing: print("missing lines:", missing[:5], len(missing))
if any(longx.get(r) != 200000 for r in range(4)): print("long line bytes:", longx)
sys.exit(1 if bad or missing or any(longx.get(r) != 200000 for r in range(4)) else 0)
EOF

# ---- the env contract
"$BATON" run -n 3 -- "$W" --env >"$T_TMP/env.out" 2>&1
t_expect_eq "env: exit 0" "$?" 0
ok=1
for r in 0 1 2; do
    line=$(grep "^\[$r\] ENV " "$T_TMP/env.out")
    for kv in "BATON_RANK=$r" "RANK=$r" "BATON_LOCAL_RANK=$r" "LOCAL_RANK=$r" "BATON_WORLD_SIZE=3" \
        "WORLD_SIZE=3" "BATON_LOCAL_WORLD_SIZE=3" "LOCAL_WORLD_SIZE=3" "BATON_NODE_RANK=0" \
        "GROUP_RANK=0" "BATON_NNODES=1" "BATON_ROLE=worker" "BATON_RESTART_COUNT=0" \
        "MASTER_ADDR=127.0.0.1" "BATON_RDZV=127.0.0.1:[0-9]+" "MASTER_PORT=[0-9]+" \
        "BATON_TOKEN=[0-9a-f]{64}" "BATON_JOB_ID=[^ ]+"; do
        echo "$line" | grep -qE " $kv( |\$)" || { ok=0; echo "rank $r: no $kv in: $line"; }
    done
done
mp=$(grep -o ' MASTER_PORT=[0-9]*' "$T_TMP/env.out" | sort -u | wc -l)
rp=$(grep -o 'BATON_RDZV=[0-9.:]*' "$T_TMP/env.out" | head -1 | sed 's/.*://')
mport=$(grep -o ' MASTER_PORT=[0-9]*' "$T_TMP/env.out" | head -1 | sed 's/.*=//')
[ "$mp" = 1 ] && [ "$mport" != "$rp" ] || { ok=0; echo "MASTER_PORT $mport (distinct: $mp) vs store $rp"; }
t_expect_eq "env: every worker gets the BATON_* and torchrun contract" "$ok" 1

# ---- workers get the worker token, HMAC-SHA256(job token, "baton worker"), not the job token
BATON_TOKEN=abc "$BATON" run -n 1 -- "$W" --env >"$T_TMP/wtok.out" 2>&1
got=$(grep -oE ' BATON_TOKEN=[^ ]*' "$T_TMP/wtok.out" | sed 's/.*=//')
if command -v openssl >/dev/null; then
    want=$(printf 'baton worker' | openssl dgst -sha256 -hmac abc | sed 's/.*= //')
else
    want=$got # no openssl CLI: only "not the job token" is checked
fi
[ -n "$got" ] && [ "$got" != abc ] && [ "$got" = "$want" ] && ok=1 || ok=0
t_expect_eq "env: BATON_TOKEN is the worker token ($got)" "$ok" 1

# ---- a worker exiting 3: baton exits 3, the report names the rank and the code
t0=$SECONDS
"$BATON" run -n 4 -- "$W" --rank 3 --code 3 --sleep 60 >"$T_TMP/ex3.out" 2>"$T_TMP/ex3.err"
t_expect_eq "exit 3: baton exits 3" "$?" 3
t_grep "exit 3: report names rank, host, pid and code" \
    "job failed: rank 3 \(node 0, host [^,]+, pid [0-9]+\) exited with code 3" "$T_TMP/ex3.err"
t_check "exit 3: the other ranks were stopped at once (< 8 s)" test $((SECONDS - t0)) -lt 8

# ---- a worker killed by SIGKILL: 137, SIGKILL named, OOM hint
"$BATON" run -n 2 -- "$W" --rank 1 --signal 9 --sleep 60 >"$T_TMP/k9.out" 2>"$T_TMP/k9.err"
t_expect_eq "SIGKILL: baton exits 137" "$?" 137
t_grep "SIGKILL: report names the signal and the OOM hint" \
    "rank 1 .* was killed by SIGKILL; hint: possibly killed for memory \(OOM\); check dmesg or kubectl describe pod" \
    "$T_TMP/k9.err"

# ---- a crash: SIGSEGV named, with a backtrace hint
"$BATON" run -n 2 -- "$W" --rank 0 --signal 11 --sleep 60 >/dev/null 2>"$T_TMP/segv.err"
t_expect_eq "SIGSEGV: baton exits 139" "$?" 139
t_grep "SIGSEGV: report names it, with a backtrace hint" "was killed by SIGSEGV.*hint: .*backtrace" \
    "$T_TMP/segv.err"

# ---- SIGTERM to baton: every worker gets SIGTERM, baton exits 143, nothing left
mkdir -p "$T_TMP/term"
t_bg "$BATON" run -n 4 -- "$W" --pidfile "$T_TMP/term" --term-mark "$T_TMP/term" --sleep 60 \
    >"$T_TMP/term.out" 2>"$T_TMP/term.err"
bp=$T_LAST_PID
if t_wait_files 4 "$T_TMP/term" 20 '^pid\.'; then
    kill -TERM "$bp"
    t_wait "$bp" 20 >"$T_TMP/rc" # not in $(...): a subshell cannot wait for our child
    t_expect_eq "SIGTERM to baton: exits 143" "$(cat "$T_TMP/rc")" 143
    t_expect_eq "SIGTERM to baton: every worker got SIGTERM" \
        "$(ls "$T_TMP/term" | grep -c '^term\.')" 4
    t_check "SIGTERM to baton: no worker left (by pid)" gone_within 2 $(cat "$T_TMP"/term/pid.*)
else
    t_fail "SIGTERM to baton" "workers did not start"; cat "$T_TMP/term.err"
fi

# ---- SIGKILL to baton: PDEATHSIG leaves no worker running
mkdir -p "$T_TMP/kill"
t_bg "$BATON" run -n 4 -- "$W" --pidfile "$T_TMP/kill" --sleep 60 >/dev/null 2>&1
bp=$T_LAST_PID
if t_wait_files 4 "$T_TMP/kill" 20 '^pid\.'; then
    kill -KILL "$bp"
    t_wait "$bp" 5 >/dev/null
    t_check "SIGKILL to baton: every worker gone within 2 s (by pid)" \
        gone_within 2 $(cat "$T_TMP"/kill/pid.*)
else
    t_fail "SIGKILL to baton" "workers did not start"
fi

# ---- --grace: a worker ignoring SIGTERM is SIGKILLed after the grace period
t0=$SECONDS
"$BATON" run -n 2 --grace 1 -- "$W" --ignore-term --rank 0 --code 1 --sleep 60 \
    >/dev/null 2>"$T_TMP/grace.err"
t_expect_eq "--grace: exit status of the first failure" "$?" 1
t_grep "--grace: the stubborn rank is named and SIGKILLed" "rank\(s\) 1 still running; sent SIGKILL" \
    "$T_TMP/grace.err"
t_check "--grace 1: done within 6 s" test $((SECONDS - t0)) -lt 6

# ---- --max-restarts: a worker failing in restarts 0 and 1 succeeds in restart 2
"$BATON" run -n 2 --max-restarts 2 --restart-backoff 0 -- "$W" --fail-until 2 >"$T_TMP/rs.out" 2>"$T_TMP/rs.err"
t_expect_eq "--max-restarts 2: succeeds on the third try" "$?" 0
t_grep "--max-restarts: BATON_RESTART_COUNT reaches 2" "^\[1\] restart 2 ok" "$T_TMP/rs.out"
t_grep "--max-restarts: says why it restarts" \
    "restarting the workers \(restart 2 of 2\) after: rank 0 .* exited with code 7" "$T_TMP/rs.err"
"$BATON" run -n 2 --max-restarts 1 --restart-backoff 0 -- "$W" --fail-until 2 >/dev/null 2>"$T_TMP/rs1.err"
t_expect_eq "--max-restarts 1: gives up with the failure's code" "$?" 7

# ---- --restart-backoff: the waits between restarts grow (0.3 s, 0.6 s), each one announced
cat >"$T_TMP/stamp.sh" <<'EOS'
#!/bin/sh
date +%s%N >>"$1/start.$BATON_RESTART_COUNT"
[ "$BATON_RESTART_COUNT" -ge 2 ] || exit 7
EOS
chmod +x "$T_TMP/stamp.sh"
mkdir -p "$T_TMP/bo"
"$BATON" run -n 1 --max-restarts 2 --restart-backoff 0.3 -- "$T_TMP/stamp.sh" "$T_TMP/bo" \
    >/dev/null 2>"$T_TMP/bo.err"
t_expect_eq "--restart-backoff 0.3: succeeds on the third try" "$?" 0
t_grep "--restart-backoff: announces the first wait" \
    "restarting the workers in 0.3 s \(restart 1 of 2\) after: rank 0 .* exited with code 7" \
    "$T_TMP/bo.err"
t_grep "--restart-backoff: announces the doubled wait" \
    "restarting the workers in 0.6 s \(restart 2 of 2\)" "$T_TMP/bo.err"
if [ -f "$T_TMP/bo/start.0" ] && [ -f "$T_TMP/bo/start.1" ] && [ -f "$T_TMP/bo/start.2" ]; then
    gap1=$(( $(cat "$T_TMP/bo/start.1") - $(cat "$T_TMP/bo/start.0") ))
    gap2=$(( $(cat "$T_TMP/bo/start.2") - $(cat "$T_TMP/bo/start.1") ))
    t_check "--restart-backoff: the first gap is at least the base (${gap1} ns)" \
        test "$gap1" -ge 300000000
    t_check "--restart-backoff: the second gap is at least the first (${gap2} ns)" \
        test "$gap2" -ge "$gap1"
else
    t_fail "--restart-backoff: gaps" "a generation did not start: $(ls "$T_TMP/bo")"
fi

# ---- SIGTERM during the wait before a restart: baton exits 143 at once
t_bg "$BATON" run -n 1 --max-restarts 3 --restart-backoff 60 -- "$W" --rank 0 --code 7 \
    >/dev/null 2>"$T_TMP/bot.err"
bp=$T_LAST_PID
for _ in $(seq 100); do
    grep -q "restarting the workers in 60 s" "$T_TMP/bot.err" && break
    sleep 0.1
done
t0=$SECONDS
kill -TERM "$bp"
t_wait "$bp" 10 >"$T_TMP/rc"
t_expect_eq "SIGTERM during the restart backoff: exits 143" "$(cat "$T_TMP/rc")" 143
t_check "SIGTERM during the restart backoff: gone within 5 s" test $((SECONDS - t0)) -lt 5
t_grep "SIGTERM during the restart backoff: names the failure" "job failed: rank 0 .* code 7" \
    "$T_TMP/bot.err"

# ---- --log-dir and --no-tag-output
"$BATON" run -n 2 --log-dir "$T_TMP/logs" -- "$W" --env >"$T_TMP/ld.out" 2>&1
t_expect_eq "--log-dir: exit 0" "$?" 0
t_grep "--log-dir: rank 1's file holds its output, untagged" "^ENV BATON_RANK=1 " "$T_TMP/logs/rank.1.log"
t_grep "--log-dir: the console still gets tagged lines" "^\[0\] ENV BATON_RANK=0 " "$T_TMP/ld.out"
"$BATON" run -n 2 --no-tag-output -- "$W" --env >"$T_TMP/nt.out" 2>&1
t_expect_eq "--no-tag-output: lines untagged" "$(grep -c '^ENV BATON_RANK=' "$T_TMP/nt.out")" 2

# ---- programs that cannot run, and usage errors
"$BATON" run -n 2 -- "$T_TMP/no-such-program" >/dev/null 2>"$T_TMP/nf.err"
t_expect_eq "missing program: exit 127" "$?" 127
t_grep "missing program: a clear line" "no-such-program: program not found" "$T_TMP/nf.err"
printf 'not a program\n' >"$T_TMP/plain"
"$BATON" run -- "$T_TMP/plain" >/dev/null 2>"$T_TMP/nx.err"
t_expect_eq "not executable: exit 126" "$?" 126
bad=0
for args in "--bogus -- true" "-n zero -- true" "-n 0 -- true" "--grace x -- true" "--rdzv nohost -- true" \
    "--spec k8s -- true" "--max-restarts -1 -- true" "-n 2 --" "--nnodes 2 -- true" "-n"; do
    # shellcheck disable=SC2086
    "$BATON" run $args >/dev/null 2>"$T_TMP/usage.err"
    rc=$? lines=$(wc -l <"$T_TMP/usage.err")
    if [ $rc != 2 ] || [ "$lines" != 1 ]; then
        bad=1; echo "baton run $args: exit $rc, $lines lines:"; cat "$T_TMP/usage.err"; fi
done
t_expect_eq "bad flags: exit 2 with one line each" "$bad" 0
t_done
