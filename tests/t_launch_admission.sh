#!/usr/bin/env bash
# t_launch_admission.sh: who may join a job. A launcher of another job (another job id or
# node count) is refused by node 0 with exit 2 and one line on both sides, and the running job
# finishes with exit 0; --token-file and BATON_TOKEN_FILE (missing, empty, readable by others);
# the WARN of a multi-node job without a secret; a store that listens on the --rdzv address.
# timeout: 120
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/launch_worker

node() { # NAME RANK PORT ARGS...: a launcher of a 2-node job in the background
    local name=$1 rank=$2 port=$3; shift 3
    t_bg "$BATON" run --nnodes 2 --node-rank "$rank" --rdzv "127.0.0.1:$port" "$@" \
        >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}

# ---- another job's launchers are refused; the running job is not harmed
port=$(t_free_port)
mkdir -p "$T_TMP/j"
node j0 0 "$port" -n 1 -- "$W" --pidfile "$T_TMP/j" --sleep 5; p0=$T_LAST_PID
node j1 1 "$port" -n 1 -- "$W" --pidfile "$T_TMP/j" --sleep 5; p1=$T_LAST_PID
if t_wait_files 2 "$T_TMP/j" 20 '^pid\.'; then
    "$BATON" run --nnodes 3 --node-rank 2 --rdzv "127.0.0.1:$port" --join-timeout 10 -- "$W" \
        >/dev/null 2>"$T_TMP/nn.err"
    t_expect_eq "other node count: the stray launcher exits 2" "$?" 2
    t_grep "other node count: one line names what differs" \
        "^baton: node 2 \(host [^)]+\): refused by node 0: node 2 \(host [^,]+, pid [0-9]+\) says the job is 'baton' with 3 nodes; node 0 runs 'baton' with 2 nodes; .*exit 2$" \
        "$T_TMP/nn.err"
    t_check "other node count: node 0 logs the refused node" \
        t_wait_grep "^baton: node 0 refused a launcher: node 2 .* with 3 nodes; node 0 runs 'baton' with 2 nodes$" "$T_TMP/j0.err" 10
    BATON_JOB_ID=other "$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" \
        --join-timeout 10 -- "$W" >/dev/null 2>"$T_TMP/id.err"
    t_expect_eq "other job id (its derived token differs): refused by the store, exit 1" "$?" 1
    t_grep "other job id: the store names the token" "refused by the rendezvous store: .*token" \
        "$T_TMP/id.err"
else
    t_fail "other job" "the job did not start"; cat "$T_TMP/j0.err" "$T_TMP/j1.err"
fi
t_wait_ok "other job: the running job still exits 0 on both nodes" 30 "$p0" "$p1"

# ---- one shared secret for two jobs: the job id check still tells them apart
port=$(t_free_port)
mkdir -p "$T_TMP/s"
echo "shared-$RANDOM$RANDOM" >"$T_TMP/secret"; chmod 600 "$T_TMP/secret"
node s0 0 "$port" -n 1 --token-file "$T_TMP/secret" -- "$W" --pidfile "$T_TMP/s" --sleep 5
p0=$T_LAST_PID
BATON_TOKEN_FILE=$T_TMP/secret node s1 1 "$port" -n 1 -- "$W" --pidfile "$T_TMP/s" --sleep 5
p1=$T_LAST_PID
if t_wait_files 2 "$T_TMP/s" 20 '^pid\.'; then
    BATON_JOB_ID=other "$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" \
        --token-file "$T_TMP/secret" --join-timeout 10 -- "$W" >/dev/null 2>"$T_TMP/sid.err"
    t_expect_eq "other job id, same secret: exit 2" "$?" 2
    t_grep "other job id, same secret: names both jobs" \
        "says the job is 'other' with 2 nodes; node 0 runs 'baton' with 2 nodes" "$T_TMP/sid.err"
    echo "not-the-secret" >"$T_TMP/wrong"; chmod 600 "$T_TMP/wrong"
    "$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" --token-file "$T_TMP/wrong" \
        --join-timeout 10 -- "$W" >/dev/null 2>"$T_TMP/wt.err"
    t_expect_eq "wrong secret in a token file: exit 1" "$?" 1
    t_grep "wrong secret: refused by the store" "refused by the rendezvous store: .*token" \
        "$T_TMP/wt.err"
else
    t_fail "token file job" "the job did not start"; cat "$T_TMP/s0.err" "$T_TMP/s1.err"
fi
t_wait_ok "token file job: both nodes exit 0" 30 "$p0" "$p1"
t_check "token file job: no WARN about a missing secret" \
    bash -c "! grep -q 'has no secret' '$T_TMP/s0.err' '$T_TMP/s1.err'"
t_check "a job without a secret: the WARN says what it exposes" \
    grep -q "^baton: WARN: job 'baton' has no secret .*anyone who can reach the store's port and knows the job name can join or end this job; give every node the same secret with --token-file or BATON_TOKEN$" \
    "$T_TMP/j0.err"
"$BATON" run -n 1 -- "$W" >/dev/null 2>"$T_TMP/one.err"
t_check "one node: no WARN (its token is random)" bash -c "! grep -q 'has no secret' '$T_TMP/one.err'"

# ---- token files that cannot be used: one line, exit 2
printf 'abc\n' >"$T_TMP/open"; chmod 644 "$T_TMP/open"
"$BATON" run --token-file "$T_TMP/open" -- "$W" >/dev/null 2>"$T_TMP/e1"
t_expect_eq "token file readable by others: exit 2" "$?" 2
t_grep "token file readable by others: says so, hints chmod 600" \
    "^baton run: --token-file .*/open: readable by others \(mode 644\); hint: chmod 600" "$T_TMP/e1"
: >"$T_TMP/empty"; chmod 600 "$T_TMP/empty"
"$BATON" run --token-file "$T_TMP/empty" -- "$W" >/dev/null 2>"$T_TMP/e2"
t_expect_eq "empty token file: exit 2" "$?" 2
t_grep "empty token file: one line" "^baton run: --token-file .*/empty: empty" "$T_TMP/e2"
BATON_TOKEN_FILE=$T_TMP/missing "$BATON" run -- "$W" >/dev/null 2>"$T_TMP/e3"
t_expect_eq "missing BATON_TOKEN_FILE: exit 2" "$?" 2
t_grep "missing BATON_TOKEN_FILE: one line" \
    "^baton run: BATON_TOKEN_FILE .*/missing: No such file or directory$" "$T_TMP/e3"
t_expect_eq "usage errors are one line each" "$(cat "$T_TMP"/e1 "$T_TMP"/e2 "$T_TMP"/e3 | wc -l)" 3
printf 'tok-x\n' >"$T_TMP/tok"; chmod 600 "$T_TMP/tok"
"$BATON" run --token-file "$T_TMP/tok" -- "$W" --env >"$T_TMP/tok.out" 2>/dev/null
# The workers get the worker token derived from the job token (rendezvous.md): HMAC of "tok-x".
if command -v openssl >/dev/null; then
    want=$(printf 'baton worker' | openssl dgst -sha256 -hmac tok-x | sed 's/.*= //')
    t_grep "token file: its secret, trailing newline dropped, is the job token" \
        " BATON_TOKEN=$want( |$)" "$T_TMP/tok.out"
else
    t_skip "token file: its secret is the job token" "no openssl command to derive the worker token"
fi

# ---- node 0's store listens on the --rdzv address, not on every address
port=$(t_free_port)
mkdir -p "$T_TMP/b"
node b0 0 "$port" -n 1 -- "$W" --pidfile "$T_TMP/b" --sleep 3; p0=$T_LAST_PID
node b1 1 "$port" -n 1 -- "$W" --pidfile "$T_TMP/b" --sleep 3; p1=$T_LAST_PID
if t_wait_files 2 "$T_TMP/b" 20 '^pid\.'; then
    t_check "bind: the store listens on 127.0.0.1:$port only" \
        bash -c "ss -Hltn 'sport = :$port' | awk '{print \$4}' | grep -qx '127.0.0.1:$port'"
else
    t_fail "bind" "the job did not start"
fi
t_wait_ok "bind: the job exits 0" 30 "$p0" "$p1"
t_done
