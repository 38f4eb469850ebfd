#!/usr/bin/env bash
# t_launch_tree.sh: baton owns every descendant of its workers. Each worker runs behind a
# wrapper script that leaves two processes behind: one in the background of the same process
# group, and one that calls setsid from a subshell that exits (an orphan in its own session,
# reparented to baton, the subreaper). Each records its pid in a file. After a normal end, a
# failing rank's teardown, SIGTERM to baton and kill -9 of baton (with the job's cgroup, and
# again with BATON_CGROUP=off), none of the recorded pids runs and no /dev/shm/baton-<baton's
# pid>-* name is left; a local rank 0 SIGKILLed before its peers attach leaves nothing either;
# the watchdog exits with baton; a process the test started outside the job survives; a
# worker still running at a failing rank's teardown is sent SIGTERM once, not once per way
# baton reaches it (its group, the cgroup, the walk of its descendants), and a SIGINT to baton
# is forwarded to each worker once.
# Every wait is a poll with a deadline; only processes this test started are ended, by pid.
# timeout: 180
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/launch_worker
WRAP=$T_TMP/wrap.sh
cat >"$WRAP" <<'EOF'
#!/bin/sh
# wrap.sh DIR CMD...: leaves two processes behind, records pids in DIR, then runs CMD.
d=$1; shift
sleep 1000 & echo $! >"$d/bg.$BATON_RANK"
( setsid sh -c 'echo $$ >"$0/ss.$1.tmp" && mv "$0/ss.$1.tmp" "$0/ss.$1"; exec sleep 1000' "$d" "$BATON_RANK" & )
i=0; while [ ! -s "$d/ss.$BATON_RANK" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
exec "$@"
EOF
chmod +x "$WRAP"

# no_shm PID: no /dev/shm/baton-PID-* name.
no_shm() { ! ls /dev/shm 2>/dev/null | grep -q "^baton-$1-"; }
# check_gone NAME DIR BATON_PID: every pid recorded in DIR gone within 5 s, no shm name left.
check_gone() {
    local pids
    pids=$(cat "$2"/* 2>/dev/null)
    t_check "$1: every process of the job gone ($(echo $pids | wc -w) pids)" gone_within 5 $pids
    t_check "$1: no /dev/shm/baton-$3-* left" no_shm "$3"
}
# run_bg NAME N ARGS...: baton run -n N in the background with the wrapper and DIR=$T_TMP/NAME.
run_bg() {
    local name=$1 n=$2; shift 2
    mkdir -p "$T_TMP/$name"
    t_bg "$BATON" run -n "$n" -- "$WRAP" "$T_TMP/$name" "$@" >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}

t_bg sleep 1000
bystander=$T_LAST_PID

# ---- normal end: the workers exit 0, what they left is stopped; the watchdog exits too
export BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH
run_bg ok 2 "$W" --pidfile "$T_TMP/ok"
bp=$T_LAST_PID
t_wait "$bp" 30 >/dev/null
t_expect_eq "normal end: exit 0" "$T_RC" 0
t_expect_eq "normal end: every wrapper ran (6 pid files)" "$(ls "$T_TMP/ok" | grep -vc tmp)" 6
check_gone "normal end" "$T_TMP/ok" "$bp"
t_grep "the log says how the tree is owned and names the watchdog" \
    "process tree: (cgroup v2 .* holds every process of the job|no cgroup .*); watchdog pid [0-9]+" "$T_TMP/ok.err"
dog=$(grep -o 'watchdog pid [0-9]*' "$T_TMP/ok.err" | grep -o '[0-9]*$')
t_check "the watchdog exited with baton (pid ${dog:-?})" gone_within 2 ${dog:-0}
mode=$(grep -q 'process tree: cgroup v2' "$T_TMP/ok.err" && echo cgroup || echo proc)
echo "# process tree mode on this machine: $mode"
unset BATON_DEBUG BATON_DEBUG_SUBSYS

# ---- a failing rank: the others and everything they started are torn down
# Rank 2 exits 3 once the others' 8 pid files are there (bounded).
run_bg fail 3 sh -c 'if [ "$BATON_RANK" = 2 ]; then i=0
    while [ "$(ls "$1" | grep -vc tmp)" -lt 8 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    exit 3; fi; exec "$0" --pidfile "$1" --sleep 60' "$W" "$T_TMP/fail"
bp=$T_LAST_PID
t_wait "$bp" 30 >/dev/null
t_expect_eq "failing rank: exit 3" "$T_RC" 3
t_expect_eq "failing rank: every wrapper ran (8 pid files)" "$(ls "$T_TMP/fail" | grep -vc tmp)" 8
check_gone "failing rank" "$T_TMP/fail" "$bp"

# ---- SIGTERM to baton
run_bg term 2 "$W" --pidfile "$T_TMP/term" --sleep 60
bp=$T_LAST_PID
if t_wait_files 6 "$T_TMP/term" 20; then
    kill -TERM "$bp"
    t_wait "$bp" 20 >/dev/null
    t_expect_eq "SIGTERM to baton: exit 143" "$T_RC" 143
    check_gone "SIGTERM to baton" "$T_TMP/term" "$bp"
else
    t_fail "SIGTERM to baton" "the workers did not start"; cat "$T_TMP/term.err"
fi

# ---- kill -9 of baton: the watchdog cleans up, with a shm name of the job in /dev/shm
# kill9 NAME: a 2-rank job whose workers name a segment as rank 0 would, then kill -9 baton.
kill9() {
    local name=$1
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH run_bg "$name" 2 sh -c ': >/dev/shm/baton-$BATON_LAUNCHER_PID-feed-g0-n$BATON_RANK; exec "$0" "$@"' \
        "$W" --pidfile "$T_TMP/$name" --sleep 60
    local bp=$T_LAST_PID
    if t_wait_files 6 "$T_TMP/$name" 20; then
        t_check "$name: the job's shm names exist before" test -e "/dev/shm/baton-$bp-feed-g0-n1"
        kill -KILL "$bp"
        t_wait "$bp" 5 >/dev/null
        check_gone "$name" "$T_TMP/$name" "$bp"
        local dog
        dog=$(grep -o 'watchdog pid [0-9]*' "$T_TMP/$name.err" | grep -o '[0-9]*$')
        t_check "$name: the watchdog (pid ${dog:-?}) exits once done" gone_within 5 ${dog:-0}
        t_grep "$name: the watchdog says what it did" \
            "baton watchdog: baton \(pid $bp\) ended without stopping its job; sent SIGKILL" "$T_TMP/$name.err"
    else
        t_fail "$name" "the workers did not start"; cat "$T_TMP/$name.err"
    fi
    rm -f /dev/shm/baton-"$bp"-feed-g0-n*
}
kill9 kill9
BATON_CGROUP=off kill9 kill9-nocgroup

# ---- local rank 0 SIGKILLed before its peer attached: its name is removed
# Local rank 0 runs, as a child of its wrapper, a process that names the segment as
# transport/shm.c would and is SIGKILLed; the wrapper exits with its status.
run_bg r0 2 sh -c 'if [ "$BATON_LOCAL_RANK" = 0 ]; then
    sh -c ": >/dev/shm/baton-$BATON_LAUNCHER_PID-r0-g0-n0; kill -9 \$\$"; exit $?; fi
    exec "$0" --pidfile "$1" --sleep 60' "$W" "$T_TMP/r0"
bp=$T_LAST_PID
t_wait "$bp" 30 >/dev/null
t_expect_eq "rank 0 SIGKILLed before attach: the job fails with 137" "$T_RC" 137
check_gone "rank 0 SIGKILLed before attach" "$T_TMP/r0" "$bp"

# ---- a failing rank's teardown: the other worker is sent SIGTERM once (a second one would cut
# short a SIGTERM handler's clean-up, e.g. torch's @record writing its error file). Signals sent
# microseconds apart merge in the receiver, so what is counted is baton's kill calls (strace).
# A call another traced process interrupts is printed as "kill(-P, SIGTERM <unfinished ...>".
cat >"$T_TMP/terms.sh" <<'EOF'
#!/bin/sh
# terms.sh DIR: rank 0 writes its pid to DIR/pid and waits; rank 1 exits 3 once it is there.
if [ "$RANK" = 1 ]; then
    for _ in $(seq 200); do [ -s "$1/pid" ] && exit 3; sleep 0.05; done
    exit 4
fi
echo $$ >"$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"
for _ in $(seq 300); do sleep 0.05; done
EOF
chmod +x "$T_TMP/terms.sh"
mkdir -p "$T_TMP/terms"
if command -v strace >/dev/null; then
    strace -f -e trace=kill -e signal=none -o "$T_TMP/terms.st" "$BATON" run -n 2 --grace 10 -- \
        "$T_TMP/terms.sh" "$T_TMP/terms" >"$T_TMP/terms.out" 2>&1
    t_expect_eq "a failing rank's teardown: the job exits 3" "$?" 3
    p0=$(cat "$T_TMP/terms/pid" 2>/dev/null)
    t_expect_eq "... and baton sent the other worker (pid ${p0:-?}) SIGTERM once, to its group" \
        "$(grep -cE "kill\(-?${p0:-none}, SIGTERM[) ]" "$T_TMP/terms.st")" 1
    # ---- SIGINT to baton: it is forwarded to each worker once, like a teardown's SIGTERM.
    cat >"$T_TMP/ints.sh" <<'EOF'
#!/bin/sh
# ints.sh DIR: each rank writes its pid to DIR/pid.RANK (rank 0 baton's too) and waits.
[ "$RANK" = 0 ] && echo "$BATON_LAUNCHER_PID" >"$1/baton.tmp" && mv "$1/baton.tmp" "$1/baton"
echo $$ >"$1/pid.$RANK.tmp" && mv "$1/pid.$RANK.tmp" "$1/pid.$RANK"
for _ in $(seq 300); do sleep 0.05; done
EOF
    chmod +x "$T_TMP/ints.sh"
    mkdir -p "$T_TMP/ints"
    t_bg strace -f -e trace=kill -e signal=none -o "$T_TMP/ints.st" "$BATON" run -n 2 --grace 10 -- \
        "$T_TMP/ints.sh" "$T_TMP/ints" >"$T_TMP/ints.out" 2>&1
    sp=$T_LAST_PID
    if t_wait_files 3 "$T_TMP/ints" 20 '^(pid\.[01]|baton)$'; then
        kill -INT "$(cat "$T_TMP/ints/baton")"
        t_wait "$sp" 20 >/dev/null
        t_expect_eq "SIGINT to baton: the job exits 130" "$T_RC" 130
        for r in 0 1; do
            p=$(cat "$T_TMP/ints/pid.$r")
            t_expect_eq "... and baton forwarded SIGINT once to worker $r (pid $p)" \
                "$(grep -cE "kill\(-?$p, SIGINT[) ]" "$T_TMP/ints.st")" 1
        done
    else
        t_fail "SIGINT to baton" "the workers did not start"; cat "$T_TMP/ints.out"
    fi
else
    t_skip "SIGTERM once at teardown" "no strace (make deps installs it)"
    t_skip "a forwarded SIGINT once" "no strace (make deps installs it)"
fi

t_check "a process outside the job (started by this test) is untouched" t_alive "$bystander"
t_done
