#!/usr/bin/env bash
# t_ps_elastic.sh: every push applied exactly once, and the servers serve every generation,
# with real processes: two `baton ps` servers (--checkpoint-sync) that drop the reply of every
# 5th push they apply (BATON_PS_FAULT_DROP_REPLY, so the workers resend it) and are killed
# with SIGKILL mid-run and restarted from their checkpoints. ps_count's key counts the updates
# applied to it: generation 0 (2 sync workers) checks the count after every step and leaves
# (bt_ps_leave: the servers stay); generation 1 (3 bounded:2 workers) finds the same servers;
# generation 2's reader finds generation 0's count (40 steps) and generation 1's (3 x 30
# pushes, each applied once); a generation-1 worker coming back after generation 2 started is
# refused with one line; the chief's shutdown ends the servers with 0. Then `baton run --ps 1`
# in an elastic job (--nnodes 2:3): the server outlives a scale-down and a scale-up, its keys in
# memory, and every push is counted once.
# timeout: 300
. "$(dirname "$0")/lib.sh"
P=$BATON_BUILD/tests/progs
export BATON_TOKEN=t-ps-el-$$ BATON_TIMEOUT=30 BATON_PS_SERVERS=2 BATON_PS_PARTITION_BYTES=4K
unset BATON_RESTART_COUNT BATON_RANK BATON_WORLD_SIZE TF_CONFIG
if [ ! -x "$BATON" ] || [ ! -x "$P/ps_count" ] || [ ! -x "$P/ps_rdzv" ]; then
    t_skip "parameter server exactly once" "build $BATON and tests/progs first"; t_done; fi

# wait_for FILE PATTERN SECONDS: 0 once a line of FILE matches (bounded).
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
expect_exit() { t_wait "$2" "$3" >"$T_TMP/rc"; t_expect_eq "$1" "$(cat "$T_TMP/rc")" "$4"; }

t_bg "$P/ps_rdzv" "$T_TMP/port"
wait_for "$T_TMP/port" '^[0-9]+$' 10 || { t_fail "store started"; t_done; }
export BATON_RDZV=127.0.0.1:$(cat "$T_TMP/port")
CK=$T_TMP/ckpt
S=()
server() { # INDEX: (re)starts server INDEX, its log appended to ps$INDEX.log
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS BATON_PS_FAULT_DROP_REPLY=5 t_bg "$BATON" ps \
        --index "$1" --checkpoint-dir "$CK" --checkpoint-sync 2>>"$T_TMP/ps$1.log"
    S[$1]=$T_LAST_PID
}
# workers GEN N KEY STEPS CONSISTENCY: N ps_count workers of generation GEN; pids in W[].
workers() {
    local r
    W=()
    for ((r = 0; r < $2; r++)); do
        BATON_RESTART_COUNT=$1 BATON_WORLD_SIZE=$2 BATON_RANK=$r t_bg "$P/ps_count" "$3" "$4" 2000 \
            "$5" >"$T_TMP/g$1.w$r.out" 2>"$T_TMP/g$1.w$r.err"
        W[$r]=$T_LAST_PID
    done
}
# kill_restart INDEX FILE PATTERN HOLD: once FILE shows PATTERN (the workers, started with
# PS_COUNT_HOLD=T:HOLD, wait there), SIGKILL server INDEX, release the workers (their next push
# finds no server and retries) and restart the server: the kill lands mid-run however fast the
# workers step.
kill_restart() {
    if wait_for "$2" "$3" 60; then t_ok "mid-run: $2 reached '$3'"; else t_fail "mid-run: $2 reached '$3'"; fi
    kill -KILL "${S[$1]}"
    expect_exit "server $1 killed with SIGKILL" "${S[$1]}" 10 137
    touch "$4"
    server "$1"
}

server 0
server 1
# --- generation 0: 2 sync workers; each checks the count after every step ---
PS_COUNT_HOLD=15:$T_TMP/go0 PS_COUNT_END=leave workers 0 2 c 40 sync
kill_restart 1 "$T_TMP/g0.w0.out" '^step 15 ' "$T_TMP/go0"
expect_exit "generation 0: worker 0 counted every step exactly (exits 0)" "${W[0]}" 90 0
expect_exit "generation 0: worker 1 counted every step exactly (exits 0)" "${W[1]}" 30 0
[ "$T_RC" = 0 ] || sed 's/^/    | /' "$T_TMP/g0.w0.err" | tail -5
t_grep "generation 0: final count 40" '^final c 40$' "$T_TMP/g0.w0.out"
t_grep "server 1 reloaded its checkpoint" 'resumed from .*ps-1.ckpt' "$T_TMP/ps1.log"
t_grep "replies were dropped (fault injection)" 'reply dropped' "$T_TMP/ps0.log"
t_grep "resent pushes were acknowledged, not applied" 'resent push [0-9]+ .*acknowledged, not applied' \
    "$T_TMP/ps0.log" "$T_TMP/ps1.log"
t_check "the servers keep serving after generation 0 left" t_alive "${S[0]}"
t_grep "the servers logged the leave" 'worker 1 leaves generation 0' "$T_TMP/ps0.log"

# --- generation 1: 3 bounded:2 workers find the same servers; server 0 restarts mid-run ---
PS_COUNT_HOLD=10:$T_TMP/go1 PS_COUNT_END=leave workers 1 3 b 30 bounded:2
kill_restart 0 "$T_TMP/g1.w2.out" '^step 10 ' "$T_TMP/go1"
t_wait_ok "generation 1: the 3 bounded workers exit 0" 90 "${W[@]}"
t_grep "server 0 moved to generation 1" 'generation 1 of the job \(3 workers\) replaces generation 0' \
    "$T_TMP/ps0.log" "$T_TMP/ps1.log"

# --- generation 2: a reader finds both keys with every push counted once ---
PS_COUNT_END=leave BATON_RESTART_COUNT=2 BATON_WORLD_SIZE=1 BATON_RANK=0 "$P/ps_count" c 0 2000 >"$T_TMP/r.out" 2>&1
t_grep "generation 2 finds generation 0's key: 40 sync steps" '^final c 40$' "$T_TMP/r.out"
PS_COUNT_END=leave BATON_RESTART_COUNT=2 BATON_WORLD_SIZE=1 BATON_RANK=0 "$P/ps_count" b 0 2000 >"$T_TMP/r.out" 2>&1
t_grep "generation 2 finds generation 1's key: 3 x 30 pushes, each applied once" '^final b 90$' \
    "$T_TMP/r.out"

# --- a stale worker of generation 1: refused, one line ---
BATON_RESTART_COUNT=1 BATON_WORLD_SIZE=3 BATON_RANK=1 timeout 60 "$P/ps_count" b 1 2000 \
    >/dev/null 2>"$T_TMP/stale.err"; rc=$?
t_expect_eq "a stale worker (generation 1) exits 1" "$rc" 1
t_grep "... with the reason" 'serves generation 2 of this job, and this worker \(rank 1\) is of generation 1: a stale worker' \
    "$T_TMP/stale.err"
t_expect_eq "... on one line" "$(wc -l <"$T_TMP/stale.err")" 1

# --- the end: the chief of generation 2 shuts the servers down ---
PS_COUNT_END=shutdown BATON_RESTART_COUNT=2 BATON_WORLD_SIZE=1 BATON_RANK=0 \
    "$P/ps_count" b 0 2000 >/dev/null 2>&1
expect_exit "server 0 exits 0 on the shutdown" "${S[0]}" 15 0
expect_exit "server 1 exits 0 on the shutdown" "${S[1]}" 15 0
# --- baton run --ps 1 in an elastic job (--nnodes 2:3): the server outlives the generations ---
# Node 0's launcher runs the server; one sync ps_count worker per node steps until the count
# in a stop file. Node 1 is SIGKILLed (2 workers), a replacement joins (3 again): the server keeps its
# pid, each generation's workers start from the count the last one reached (kept in memory: no
# checkpoint dir), every step is counted once (ps_count checks each step's value).
D=$T_TMP/el; mkdir -p "$D"
rport=$(t_free_port)
enode() { # NAME ID
    t_bg env -u BATON_RDZV -u BATON_PS_SERVERS -u BATON_PS_PARTITION_BYTES BATON_HEARTBEAT_TIMEOUT=2 \
        BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=PS PS_COUNT_STOP="$D/stop" "$BATON" run --nnodes 2:3 --node-rank "$2" --rdzv "127.0.0.1:$rport" \
        -n 1 --ps 1 --rdzv-last-call 1 --grace 3 -- "$P/ps_count" e 1000000 64 sync \
        >"$T_TMP/$1.out" 2>"$T_TMP/$1.err"
}
O=$T_TMP/e0.out # node 0 keeps node rank 0: its worker is rank 0 throughout
srv() { ps -o pid=,args= --ppid "$e0" | awk '$3 == "ps" && $4 == "--index" { print $1 }'; }
enode e0 0; e0=$T_LAST_PID
enode e1 1; e1=$T_LAST_PID
enode e2 2; e2=$T_LAST_PID
t_check "--ps 1, 2:3: three sync workers step (generation 0)" t_ps_wait "$O" 1 60
spid=$(srv)
t_check "--ps 1, 2:3: node 0 runs the server" test -n "$spid"
kill -KILL "$e1"
t_check "node 1 killed: the two others step again (generation 1)" t_ps_wait "$O" 2 60
t_expect_eq "node 1 killed: the server is the same process" "$(srv)" "$spid"
t_grep "node 1 killed: the launcher kept it" "ps server 0 \(pid $spid\) keeps running into generation 1" "$T_TMP/e0.err"
t_grep "node 1 killed: the server serves generation 1 (2 workers)" \
    '^\[ps0\] .*generation 1 of the job \(2 workers\) replaces generation 0 \(3 workers\)' "$T_TMP/e0.err"
t_check "generation 1 starts where generation 0 ended: $(t_ps_last "$O" 1) -> $(t_ps_start "$O" 2), no push lost or doubled" t_ps_once "$O" 2
enode e1b 1; e1=$T_LAST_PID
t_check "replacement: three workers step again (generation 2)" t_ps_wait "$O" 3 60
t_expect_eq "replacement: the server is still the same process" "$(srv)" "$spid"
t_check "generation 2 starts where generation 1 ended: $(t_ps_last "$O" 2) -> $(t_ps_start "$O" 3)" t_ps_once "$O" 3
echo $(($(t_ps_last "$O" 3) + 200)) >"$D/.stop" && mv "$D/.stop" "$D/stop" # all stop at this count
t_wait_ok "stop: the three launchers exit 0" 30 "$e0" "$e1" "$e2"
[ "$T_RC" = 0 ] || grep -v '^\[[0-9]\] step' "$T_TMP/e0.err" "$T_TMP/e0.out" | tail -25 | sed 's/^/    | /'
t_grep "stop: the server exits by itself once the 3 workers closed" \
    '^\[ps0\] .*ps server 0 stops \(every worker closed\)' "$T_TMP/e0.err"
t_check "the server never restarted (no checkpoint was reloaded)" \
    sh -c "! grep -qE 'resumed from|starting it again' '$T_TMP/e0.err'"
t_done
