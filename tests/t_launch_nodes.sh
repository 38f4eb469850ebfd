#!/usr/bin/env bash
# t_launch_nodes.sh: `baton run` across nodes, as several launchers on this machine with
# --nnodes/--node-rank/--rdzv 127.0.0.1:PORT: late node 0, heterogeneous -n, a failure on one
# node tearing down the other with the same root cause, a launcher killed by SIGKILL, a wrong
# token, a duplicate node rank, a join timeout (exit 142), peers whose pods are still Pending
# (named by rank and pod, exit 142); the store's TRACE names for a launcher and a worker that
# come through a relay; a relay that cannot start (one WARN, direct connections); the store's
# connections: one per node with 8 workers each (the relay carries the workers and the
# launcher's own two), 2 + 8 per node with the relay off.
# timeout: 180
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/launch_worker
HELLO=$BATON_BUILD/examples/hello

node() { # NAME RANK PORT ARGS...: a launcher in the background, output in $T_TMP/NAME.{out,err}
    local name=$1 rank=$2 port=$3; shift 3
    t_bg "$BATON" run --nnodes 2 --node-rank "$rank" --rdzv "127.0.0.1:$port" "$@" \
        >"$T_TMP/$name.out" 2>"$T_TMP/$name.err"
}
status_of() { t_wait "$1" "$2" >"$T_TMP/rc"; cat "$T_TMP/rc"; } # not in $(...) itself

# ---- node 1 starts first and retries; node 0 comes later; -n 2 and -n 3: ranks 0-1, 2-4
port=$(t_free_port)
node a1 1 "$port" -n 3 -- "$W" --env
p1=$T_LAST_PID
if t_wait_grep "waiting for rendezvous at 127.0.0.1:$port \([0-9]+ s, attempt [0-9]+: " "$T_TMP/a1.err" 15
then t_ok "late node 0: node 1 retries and says so"
else t_fail "late node 0: node 1 progress line"; cat "$T_TMP/a1.err"; fi
node a0 0 "$port" -n 2 -- "$W" --env
p0=$T_LAST_PID
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "two nodes: both launchers exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"
ok=1
for r in 0 1 2 3 4; do
    f=$T_TMP/a0.out; nr=0; lr=$r
    [ $r -ge 2 ] && { f=$T_TMP/a1.out; nr=1; lr=$((r - 2)); }
    line=$(grep "^\[$r\] ENV " "$f")
    for kv in "RANK=$r" "WORLD_SIZE=5" "LOCAL_RANK=$lr" "LOCAL_WORLD_SIZE=$((nr + 2))" \
        "GROUP_RANK=$nr" "BATON_NNODES=2" "MASTER_ADDR=127.0.0.1"; do
        echo "$line" | grep -qE " $kv( |\$)" || { ok=0; echo "rank $r: no $kv in: $line"; }
    done
done
t_expect_eq "two nodes: global ranks are prefix sums (-n 2 and -n 3 -> world 5)" "$ok" 1
t_expect_eq "two nodes: one MASTER_PORT and one token for all" \
    "$(cat "$T_TMP"/a?.out | grep -oE ' (MASTER_PORT|BATON_TOKEN)=[^ ]*' | sort -u | wc -l)" 2

if [ -x "$HELLO" ]; then
    port=$(t_free_port)
    node h0 0 "$port" -n 2 -- "$HELLO"; q0=$T_LAST_PID
    node h1 1 "$port" -n 2 -- "$HELLO"; q1=$T_LAST_PID
    status_of "$q0" 30 >"$T_TMP/s0"; status_of "$q1" 30 >"$T_TMP/s1"
    t_expect_eq "hello on two nodes: exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"
    t_expect_eq "hello on two nodes: 4 lines" "$(cat "$T_TMP"/h?.out | grep -c 'hello from rank [0-3] of 4')" 4
else
    t_skip "hello on two nodes" "examples/hello not built"
fi

# ---- a worker failing on node 1 tears node 0 down too, same root cause, same status
port=$(t_free_port)
node f0 0 "$port" -n 2 -- "$W" --rank 3 --code 3 --delay 500 --sleep 60; p0=$T_LAST_PID
node f1 1 "$port" -n 2 -- "$W" --rank 3 --code 3 --delay 500 --sleep 60; p1=$T_LAST_PID
t0=$SECONDS
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "failure on node 1: both launchers exit 3" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "3 3"
t_check "failure on node 1: all done within 8 s" test $((SECONDS - t0)) -lt 8
l0=$(grep '^baton: job failed: ' "$T_TMP/f0.err"); l1=$(grep '^baton: job failed: ' "$T_TMP/f1.err")
t_expect_eq "failure on node 1: node 0 prints the same root-cause line" "$l0" "$l1"
t_grep "failure on node 1: it names rank 3 on node 1 and the code" \
    "job failed: rank 3 \(node 1, host [^,]+, pid [0-9]+\) exited with code 3" "$T_TMP/f0.err"

# ---- --max-restarts across nodes: both launchers re-rendezvous as generation 1 together
port=$(t_free_port)
node r0 0 "$port" -n 1 --max-restarts 1 --restart-backoff 0 -- "$W" --fail-until 1 --env; p0=$T_LAST_PID
node r1 1 "$port" -n 1 --max-restarts 1 --restart-backoff 0 -- "$W" --fail-until 1 --env; p1=$T_LAST_PID
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "restart across nodes: both exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"
t_grep "restart across nodes: node 1 restarted too, as generation 1" \
    "^\[1\] ENV .* BATON_RESTART_COUNT=1 " "$T_TMP/r1.out"
t_grep "restart across nodes: node 1 names the cause on node 0" \
    "restarting the workers \(restart 1 of 1\) after: rank 0 \(node 0" "$T_TMP/r1.err"

# ---- SIGKILL of node 1's launcher: node 0 reports the lost node and exits non-zero
port=$(t_free_port)
mkdir -p "$T_TMP/k"
node k0 0 "$port" -n 2 -- "$W" --pidfile "$T_TMP/k" --sleep 60; p0=$T_LAST_PID
node k1 1 "$port" -n 2 -- "$W" --pidfile "$T_TMP/k" --sleep 60; p1=$T_LAST_PID
if t_wait_files 4 "$T_TMP/k" 20 '^pid\.'; then
    kill -KILL "$p1"
    t0=$SECONDS
    status_of "$p0" 20 >/dev/null
    t_expect_eq "lost node: node 0 exits 129 (128+SIGHUP)" "$(cat "$T_TMP/rc")" 129
    t_check "lost node: within 6 s" test $((SECONDS - t0)) -lt 6
    t_grep "lost node: the report names node 1 and its host" \
        "job failed: node 1 \(host [^,]+, pid [0-9]+\) lost contact with the rendezvous store" \
        "$T_TMP/k0.err"
    t_check "lost node: no worker of either node left (by pid)" gone_within 3 $(cat "$T_TMP"/k/pid.*)
else
    t_fail "lost node" "workers did not start"; cat "$T_TMP/k0.err" "$T_TMP/k1.err"
fi

# ---- a wrong token and a duplicate node rank are refused; the job still succeeds
port=$(t_free_port)
mkdir -p "$T_TMP/t"
node t0 0 "$port" -n 1 -- "$W" --pidfile "$T_TMP/t" --sleep 4; p0=$T_LAST_PID
node t1 1 "$port" -n 1 -- "$W" --pidfile "$T_TMP/t" --sleep 4; p1=$T_LAST_PID
if t_wait_files 2 "$T_TMP/t" 20 '^pid\.'; then
    BATON_TOKEN=not-this-job "$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" \
        --join-timeout 10 -- "$W" >/dev/null 2>"$T_TMP/tok.err"
    t_expect_eq "wrong token: the stray launcher exits 1" "$?" 1
    t_grep "wrong token: a clear line" "node 1 \(host [^)]+\): refused by the rendezvous store: .*127.0.0.1:$port.*token" \
        "$T_TMP/tok.err"
    "$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" -- "$W" >/dev/null 2>"$T_TMP/dup.err"
    t_expect_eq "duplicate node rank: refused with exit 1" "$?" 1
    t_grep "duplicate node rank: names the other host" \
        "node rank 1 is already taken by host [^ ]+ \(pid $p1\)" "$T_TMP/dup.err"
else
    t_fail "wrong token / duplicate" "job did not start"
fi
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "wrong token / duplicate: the job still succeeds" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"

# ---- nobody at the rendezvous: a bounded wait with a clear end
port=$(t_free_port)
t0=$SECONDS
"$BATON" run --nnodes 2 --node-rank 1 --rdzv "127.0.0.1:$port" --join-timeout 2 -- "$W" \
    >/dev/null 2>"$T_TMP/jt.err"
t_expect_eq "join timeout: exit 142 (retryable: node 0 may be Pending)" "$?" 142
t_check "join timeout: gives up after ~2 s" test $((SECONDS - t0)) -lt 6
t_grep "join timeout: says where it waited and names node 0" \
    "waiting for 1 of 2 nodes: node 0 never started the rendezvous store: .*127.0.0.1:$port.*its pod may be Pending.*exit 142 \(retryable\)" \
    "$T_TMP/jt.err"

# ---- pods still Pending: node 0 of a PyTorchJob (1 master + 2 workers) alone; every 5 s it
# names the missing nodes by rank and pod name, and at --join-timeout exits 142 with one line
port=$(t_free_port)
t0=$SECONDS
env -u TF_CONFIG MASTER_ADDR=pt-master-0 MASTER_PORT="$port" WORLD_SIZE=3 RANK=0 PET_NNODES=3 \
    PET_NODE_RANK=0 PET_NPROC_PER_NODE=1 "$BATON" run --join-timeout 7 -- "$W" \
    >/dev/null 2>"$T_TMP/pend.err"
t_expect_eq "pending peers: exit 142 at the join timeout" "$?" 142
t_check "pending peers: gives up after ~7 s" test $((SECONDS - t0)) -lt 12
t_grep "pending peers: a progress line names the missing nodes and pods" \
    "^baton: node 0 still waiting \([0-9]+ s of 7 s\) for 2 of 3 nodes to join: node 1 \(pod pt-worker-0\), node 2 \(pod pt-worker-1\); hint: .*Pending" \
    "$T_TMP/pend.err"
t_grep "pending peers: one last line names them, hints Pending, says 142" \
    "^baton: node 0 \(host [^)]+\): gave up after 7 s \(--join-timeout\) waiting for 2 of 3 nodes to join: node 1 \(pod pt-worker-0\), node 2 \(pod pt-worker-1\); hint: .*pod still Pending \(unschedulable.*kubectl describe pod pt-worker-0; exit 142 \(retryable\)$" \
    "$T_TMP/pend.err"
# ---- the store's names for relayed channels (BATON_DEBUG=TRACE on node 0, which hosts it):
# node 1's launcher as "launcher pid P via relay H:P", its worker as "pid P via relay H:P",
# both through node 1's one relay connection
port=$(t_free_port)
BATON_DEBUG=TRACE BATON_DEBUG_SUBSYS=RDZV node l0 0 "$port" -n 1 -- "$HELLO"; p0=$T_LAST_PID
node l1 1 "$port" -n 1 -- sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0"; exec "$1"' "$T_TMP/l1.pid" "$HELLO"
p1=$T_LAST_PID
status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
t_expect_eq "relay names: both launchers exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"
relay=$(sed -n "s/.* RDZV launcher pid $p1 via relay \(127\.0\.0\.1:[0-9]*\) joined as a launcher$/\1/p" \
    "$T_TMP/l0.err" | head -1)
t_check "relay names: node 1's launcher (pid $p1) is 'launcher pid $p1 via relay ${relay:-?}'" test -n "$relay"
w1=$(cat "$T_TMP/l1.pid" 2>/dev/null)
t_grep "relay names: its worker (pid ${w1:-?}) is 'pid ${w1:-?} via relay ${relay:-?}'" \
    " RDZV pid ${w1:-none} via relay ${relay:-none} joined as a worker$" "$T_TMP/l0.err"

# ---- a relay that cannot start (node 1's launcher runs with an LD_PRELOAD that fails the bind of
# "@baton-relay-*"): one WARN, the job runs, node 1's worker has no BATON_RDZV_RELAY and
# node 1's launcher and worker reach the store directly (node 0's store, TRACE: not via relay)
cat >"$T_TMP/norelay.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    if (sa->sa_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) + 13 &&
        !memcmp(un->sun_path, "\0baton-relay-", 13)) {
        errno = EACCES;
        return -1;
    }
    int (*real)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    return real(fd, sa, len);
}
EOF
if cc -shared -fPIC -o "$T_TMP/norelay.so" "$T_TMP/norelay.c" -ldl 2>"$T_TMP/norelay.log"; then
    port=$(t_free_port)
    BATON_DEBUG=TRACE BATON_DEBUG_SUBSYS=RDZV node n0 0 "$port" -n 1 -- "$HELLO"; p0=$T_LAST_PID
    LD_PRELOAD=$T_TMP/norelay.so node n1 1 "$port" -n 1 -- env -u LD_PRELOAD sh -c \
        'echo "$$ ${BATON_RDZV_RELAY-unset}" >"$0.tmp" && mv "$0.tmp" "$0"; exec "$1"' "$T_TMP/n1.env" "$HELLO"
    p1=$T_LAST_PID
    status_of "$p0" 30 >"$T_TMP/s0"; status_of "$p1" 30 >"$T_TMP/s1"
    t_expect_eq "no relay on node 1: both launchers exit 0" "$(cat "$T_TMP/s0") $(cat "$T_TMP/s1")" "0 0"
    t_expect_eq "no relay on node 1: one WARN" \
        "$(grep -c '^baton: WARN: no store relay on this node (relay: listen on @baton-relay-[0-9]*-[0-9a-f]*: Permission denied); ' "$T_TMP/n1.err")" 1
    w1=$(cut -d' ' -f1 "$T_TMP/n1.env" 2>/dev/null)
    t_expect_eq "no relay on node 1: its worker has no BATON_RDZV_RELAY" "$(cut -d' ' -f2 "$T_TMP/n1.env" 2>/dev/null)" unset
    t_expect_eq "no relay on node 1: its launcher and worker reach the store directly" \
        "$(grep -cE " RDZV (launcher )?pid ($p1|${w1:-none}) via relay " "$T_TMP/n0.err")" 0
    t_grep "... and authenticate as a worker there" " RDZV 127\.0\.0\.1:[0-9]+ authenticated as a worker$" "$T_TMP/n0.err"
    # a restart does not try again (one WARN for the job, not one per generation)
    LD_PRELOAD=$T_TMP/norelay.so "$BATON" run -n 2 --max-restarts 1 --restart-backoff 0 -- "$W" --fail-until 1 \
        >/dev/null 2>"$T_TMP/nr.err"
    t_expect_eq "no relay, a restart: exit 0" "$?" 0
    t_expect_eq "no relay, a restart: still one WARN" "$(grep -c '^baton: WARN: no store relay on this node' "$T_TMP/nr.err")" 1
else
    t_skip "a relay that cannot start" "no C compiler: $(head -1 "$T_TMP/norelay.log")"
fi

# ---- store connections: 2 nodes of 8 workers, each worker holding its store connection (it
# allreduces until told to stop): one per node through the relay, 2 + 8 per node without it
EW=$BATON_BUILD/tests/progs/elastic_worker
conns() { # RELAY_ON: runs the job, prints the store's established connections, stops it
    local port d pa pb n
    port=$(t_free_port); d=$T_TMP/conn$1; mkdir -p "$d"
    BATON_RDZV_RELAY_ON=$1 node c0 0 "$port" -n 8 -- "$EW" "$d"; pa=$T_LAST_PID
    BATON_RDZV_RELAY_ON=$1 node c1 1 "$port" -n 8 -- "$EW" "$d"; pb=$T_LAST_PID
    if t_wait_files 16 "$d" 60 '^up\.0\.'; then
        n=$(ss -Htn state established "( sport = :$port )" | wc -l)
    else n="(not all 16 workers up)"; fi
    touch "$d/stop"
    t_wait "$pa" 30 >/dev/null; t_wait "$pb" 30 >/dev/null
    echo "$n"
}
t_expect_eq "8 workers per node, relay on: the store holds 1 connection per node" "$(conns 1)" 2
t_expect_eq "relay off (BATON_RDZV_RELAY_ON=0): 2 + 8 per node" "$(conns 0)" 20
t_done
