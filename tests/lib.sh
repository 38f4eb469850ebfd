# lib.sh: helpers for shell tests (sourced). TAP lines for tests/run_tests.sh, a private temp
# dir, and processes that are always reaped: every pid started with t_bg is killed (by pid,
# never by name) and waited for on exit, whatever happened.
set -u
BATON_BUILD=${BATON_BUILD:-$PWD/build}
BATON_SRC=${BATON_SRC:-$PWD}
BATON=$BATON_BUILD/baton
T_N=0
T_FAILED=0
T_PIDS=()
T_TMP=$(mktemp -d /tmp/baton-test.XXXXXX)
T_CLEANUPS=()

t_ok()   { T_N=$((T_N + 1)); echo "ok $T_N - $1"; }
t_fail() { T_N=$((T_N + 1)); T_FAILED=1; echo "not ok $T_N - $1${2:+: $2}"; }
t_skip() { T_N=$((T_N + 1)); echo "ok $T_N - $1 # SKIP $2"; }
# t_check NAME CMD...: ok when CMD exits 0.
t_check() { local n=$1; shift; if "$@"; then t_ok "$n"; else t_fail "$n" "command failed: $*"; fi; }
# t_expect_eq NAME GOT WANT
t_expect_eq() { if [ "$2" == "$3" ]; then t_ok "$1"; else t_fail "$1" "got '$2', want '$3'"; fi; }
# t_grep NAME PATTERN FILE: ok when the extended regex matches a line of FILE.
t_grep() {
    if grep -qE -- "$2" "$3"; then t_ok "$1"; else
        t_fail "$1" "no line matches /$2/ in $3"; sed 's/^/    | /' "$3" | tail -15; fi
}
t_on_exit() { T_CLEANUPS+=("$1"); }

# t_bg CMD...: start CMD in the background; its pid is in $T_LAST_PID and is reaped at exit.
t_bg() { "$@" & T_LAST_PID=$!; T_PIDS+=("$T_LAST_PID"); }

# t_wait PID SECONDS: waits for a t_bg child; prints its exit status, or 124 on timeout
# (the child is then killed), and also leaves it in $T_RC. Call it directly (`t_wait P 5 >f` or
# `t_wait P 5 >/dev/null; echo $T_RC`), never inside $(...): a subshell cannot reap our child.
t_wait() {
    local pid=$1 limit=$2 i=0
    while kill -0 "$pid" 2>/dev/null; do
        if ! ps -o stat= -p "$pid" 2>/dev/null | grep -q Z && [ $i -ge $((limit * 10)) ]; then
            kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; T_RC=124; echo 124; return; fi
        ps -o stat= -p "$pid" 2>/dev/null | grep -q Z && break
        sleep 0.1; i=$((i + 1))
    done
    wait "$pid" 2>/dev/null; T_RC=$?; echo $T_RC
}

# t_wait_ok NAME SEC PID...: waits for each PID (SEC seconds at most each, as t_wait) and checks
# that every one exited 0. Call it directly, not in $(...).
t_wait_ok() {
    local name=$1 limit=$2 codes="" want="" pid
    shift 2
    for pid in "$@"; do
        t_wait "$pid" "$limit" >/dev/null
        codes+=$T_RC want+=0
    done
    t_expect_eq "$name" "$codes" "$want"
}

# t_free_port: a port the kernel handed out for port 0, free right now.
# t_free_port: a port free on every address, from below the kernel's ephemeral range, so that
# no outgoing connection of another process can take it between this and the test's bind (a
# port the kernel hands out for bind(0) can be given to a connect() a moment later).
t_free_port() {
    python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(10000, max(lo, 10001)), min(200, max(lo - 10000, 1))):
    s = socket.socket()
    try:
        s.bind(("", port)); print(port); break
    except OSError:
        pass
    finally:
        s.close()
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
'
}

# t_wait_files N DIR SEC [REGEX]: until DIR holds N files whose names match REGEX (default:
# every name but *.tmp, the half-written ones); 0 when they are there, 1 after SEC seconds.
t_wait_files() {
    local n=$1 dir=$2 sec=$3 re=${4:-} i=0 c
    while :; do
        if [ -n "$re" ]; then c=$(ls "$dir" 2>/dev/null | grep -cE "$re")
        else c=$(ls "$dir" 2>/dev/null | grep -vc '\.tmp$'); fi
        [ "$c" -ge "$n" ] && return 0
        [ $i -ge $((sec * 20)) ] && return 1
        sleep 0.05; i=$((i + 1))
    done
}

# t_wait_grep PATTERN FILE SEC: until a line of FILE matches the extended regex PATTERN; 0 when
# one does, 1 after SEC seconds.
t_wait_grep() {
    local i=0
    until grep -qE -- "$1" "$2" 2>/dev/null; do
        [ $i -ge $(($3 * 10)) ] && return 1
        sleep 0.1; i=$((i + 1))
    done
}

# t_alive PID: 0 when PID exists and is not a zombie.
t_alive() { kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" 2>/dev/null | grep -q Z; }

# gone_within SEC PID...: 0 when every PID is gone within SEC seconds.
gone_within() {
    local lim=$1 i=0 p left; shift
    while :; do
        left=0
        for p in "$@"; do t_alive "$p" && left=1; done
        [ $left = 0 ] && return 0
        [ $i -ge $((lim * 10)) ] && return 1
        sleep 0.1; i=$((i + 1))
    done
}

# t_netns TAG N: N network namespaces bt<TAG>n0 .. bt<TAG>n<N-1>, the "nodes": node i has
# 198.51.100.<i+1>/24 on veth v<TAG>i, whose other end p<TAG>i is on the bridge br0 of a hub
# namespace bt<TAG>h, so the host's own network is never touched. Sets T_NS_HUB, T_NS[i] and
# T_VETH[i]; everything (and /etc/netns/<ns>, which a test may fill) is removed at exit. Use a
# TAG unique to the test and the run (a letter and $$). Without root or iproute2, or when the
# setup fails, the test is skipped visibly and ends here.
t_netns() {
    local tag=$1 n=$2 i
    if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
        t_skip "network namespaces" "needs root and iproute2"; t_done; fi
    T_NS_HUB=bt${tag}h T_NS=() T_VETH=()
    for ((i = 0; i < n; i++)); do T_NS[i]=bt${tag}n$i T_VETH[i]=v${tag}$i; done
    t_on_exit t_netns_del
    if ! t_netns_add "$tag" 2>"$T_TMP/netns.err"; then
        t_skip "network namespaces" "ip netns setup failed: $(head -1 "$T_TMP/netns.err")"; t_done; fi
}
t_netns_add() {
    local i
    ip netns add "$T_NS_HUB" && ip -n "$T_NS_HUB" link add br0 type bridge &&
        ip -n "$T_NS_HUB" link set br0 up || return 1
    for i in "${!T_NS[@]}"; do
        ip netns add "${T_NS[i]}" &&
            ip link add "${T_VETH[i]}" type veth peer name "p$1$i" &&
            ip link set "${T_VETH[i]}" netns "${T_NS[i]}" && ip link set "p$1$i" netns "$T_NS_HUB" &&
            ip -n "$T_NS_HUB" link set "p$1$i" master br0 up &&
            ip -n "${T_NS[i]}" addr add "198.51.100.$((i + 1))/24" dev "${T_VETH[i]}" &&
            ip -n "${T_NS[i]}" link set "${T_VETH[i]}" up && ip -n "${T_NS[i]}" link set lo up ||
            return 1
    done
}
t_netns_del() {
    local ns
    for ns in "${T_NS[@]}" "$T_NS_HUB"; do
        ip netns del "$ns" 2>/dev/null
        [ -n "$ns" ] && rm -rf "/etc/netns/$ns"
    done
}

# t_worlds DIR G: "N world=W" counts of the world sizes in the up.G.* files that
# tests/progs/elastic_worker writes into DIR in generation G (e.g. "3 world=3").
t_worlds() { cat "$1"/up."$2".* 2>/dev/null | grep -oE 'world=[0-9]+' | sort | uniq -c | tr -s ' ' | xargs; }

# ---- etcd, for the --rdzv-backend etcd tests: real members on 127.0.0.1, free ports, data
# dirs under $T_TMP (removed at exit with it).
# t_etcd_need NAME: ends the test with a visible skip when etcd is not installed or baton was
# built without libcurl/cJSON.
t_etcd_need() {
    if ! command -v etcd >/dev/null; then t_skip "$1" "no etcd (make deps installs etcd-server)"; t_done; fi
    if ! "$BATON" run --rdzv-backend etcd --rdzv-endpoint 127.0.0.1:1 --join-timeout 0.2 \
        -- true 2>&1 | grep -q 'etcd at'; then
        t_skip "$1" "baton built without libcurl/cJSON"; t_done
    fi
}
# t_etcd_member NAME CLIENT_PORT PEER_PORT CLUSTER: starts member NAME of the cluster CLUSTER
# ("n0=http://127.0.0.1:P0,..."), data dir $T_TMP/etcd-NAME, log $T_TMP/etcd-NAME.log; its pid
# is in $T_LAST_PID (t_bg).
t_etcd_member() {
    t_bg etcd --name "$1" --data-dir "$T_TMP/etcd-$1" --initial-cluster "$4" \
        --initial-cluster-state new --initial-cluster-token "t$$" \
        --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
        --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
        >"$T_TMP/etcd-$1.log" 2>&1
}
# t_etcd_healthy PORT...: 0 when the member at each client port says it is healthy.
t_etcd_healthy() {
    local p
    for p in "$@"; do curl -sf "http://127.0.0.1:$p/health" | grep -q '"true"' || return 1; done
}
# t_etcd_wait SEC PORT...: until t_etcd_healthy PORT...; 1 after SEC seconds.
t_etcd_wait() {
    local i=0 sec=$1; shift
    until t_etcd_healthy "$@"; do [ $i -ge $((sec * 10)) ] && return 1; sleep 0.1; i=$((i + 1)); done
}
# t_etcd_one: a one-member etcd; its client port in $T_ETCD_PORT, its pid in $T_ETCD_PID; checks
# (a test line) that it is up within 15 s.
t_etcd_one() {
    local pp
    T_ETCD_PORT=$(t_free_port) pp=$(t_free_port)
    t_etcd_member one "$T_ETCD_PORT" "$pp" "one=http://127.0.0.1:$pp"
    T_ETCD_PID=$T_LAST_PID
    t_check "etcd up" t_etcd_wait 15 "$T_ETCD_PORT"
}

# ---- tests/progs/ps_count's lines ("[R] start KEY V", "[R] step T V") in a launcher's stdout
# FILE of one worker, whose rank R may change from one generation to the next.
# t_ps_steps FILE N: the steps after its N-th start.
t_ps_steps() {
    awk -v n="$2" '/^\[[0-9]+\] start /{ s++ } s == n && /^\[[0-9]+\] step /{ k++ } END { print k + 0 }' "$1"
}
# t_ps_start FILE N: the count its N-th start began from.
t_ps_start() { awk -v n="$2" '/^\[[0-9]+\] start /{ if (++s == n) print $4 }' "$1"; }
# t_ps_last FILE N: the count after the last step of its N-th start.
t_ps_last() {
    awk -v n="$2" '/^\[[0-9]+\] start /{ s++ } s == n && /^\[[0-9]+\] step /{ v = $4 } END { print v }' "$1"
}
# t_ps_wait FILE N SEC: until it started N times and stepped 5 times since; 1 after SEC seconds.
t_ps_wait() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do [ "$(t_ps_steps "$1" "$2")" -ge 5 ] && return 0; sleep 0.1; done
    return 1
}
# t_ps_once FILE N: its N-th start began from the count its (N-1)-th reached (+1: a sync step
# that was applied once every worker pushed it, after this worker's last line), and above 0:
# no push lost or applied twice across the generations.
t_ps_once() {
    local a b
    a=$(t_ps_last "$1" $(($2 - 1))) b=$(t_ps_start "$1" "$2")
    [ -n "$a" ] && [ -n "$b" ] && { [ "$b" = "$a" ] || [ "$b" = $((a + 1)) ]; } && [ "$b" -gt 0 ]
}

t_cleanup() {
    local p c
    for p in "${T_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${T_PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    for c in "${T_CLEANUPS[@]}"; do eval "$c"; done
    rm -rf "$T_TMP"
}
trap t_cleanup EXIT
trap 'exit 130' INT TERM

# t_done: last line of a test script; exit status tells the runner whether anything failed.
t_done() { exit $T_FAILED; }
