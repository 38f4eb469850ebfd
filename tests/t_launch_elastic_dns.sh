#!/usr/bin/env bash
# t_launch_elastic_dns.sh: the store's host comes back under the same name, as a Kubernetes pod
# recreated behind its headless Service does: nodes in network namespaces find the store by a
# name that is only in their /etc/hosts (`ip netns exec` bind-mounts /etc/netns/<ns>/hosts over
# it); every other name goes to a DNS server (tests/progs/nxdomain.py, in the hub namespace)
# that answers NXDOMAIN. 3 nodes at 2:3 run; the store's name is removed from the survivors'
# hosts files and node 0 SIGKILLed: the survivors say they lost the store and that its name does
# not resolve, and keep retrying; a new node 0 starts in a fourth namespace at another address
# and the name comes back pointing there: the survivors re-form with it (world 3). Then the name
# goes away for good: the survivors give up at --join-timeout with exit 142 naming the name.
# Needs root and `ip netns`; skips visibly otherwise.
# timeout: 150
source "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/elastic_worker
t_netns d$$ 4
STORE=store-$$.baton-test.svc
JT=20 # --join-timeout: the survivors retry the store's name this long

# hosts NODE [ADDR]: node NODE's /etc/hosts: localhost, and the store's name at ADDR when given.
# Rewritten in place (the bind mount holds the file, not its name).
hosts() {
    printf '127.0.0.1\tlocalhost\n%s' "${2:+$2	$STORE
}" >"/etc/netns/${T_NS[$1]}/hosts"
}
for i in 0 1 2 3; do
    mkdir -p "/etc/netns/${T_NS[i]}"
    printf 'nameserver 198.51.100.254\noptions timeout:1 attempts:2\n' >"/etc/netns/${T_NS[i]}/resolv.conf"
done
hosts 0 198.51.100.1; hosts 1 198.51.100.1; hosts 2 198.51.100.1; hosts 3 198.51.100.4
ip -n "$T_NS_HUB" addr add 198.51.100.254/24 dev br0
t_bg ip netns exec "$T_NS_HUB" python3 "$BATON_SRC/tests/progs/nxdomain.py" 198.51.100.254 \
    >"$T_TMP/dns.out" 2>&1

wait_world() { # DIR N SEC: until N workers of one generation after 0 say world=N
    local i=0 g
    while :; do
        for g in $(ls "$1" | sed -n 's/^up\.\([1-9][0-9]*\)\..*/\1/p' | sort -u); do
            [ "$(t_worlds "$1" "$g")" = "$2 world=$2" ] && return 0
        done
        [ $i -ge $(($3 * 10)) ] && return 1
        sleep 0.1; i=$((i + 1))
    done
}
resolves() { ip netns exec "${T_NS[$1]}" getent ahosts "$STORE" >/dev/null; }

t_check "the DNS server answers" t_wait_grep '^ready' "$T_TMP/dns.out" 10
t_check "node 1 resolves the store's name from its hosts file" resolves 1
ip netns exec "${T_NS[1]}" getent ahosts "nosuch-$$.baton-test.svc" >/dev/null 2>&1
t_expect_eq "any other name: NXDOMAIN (getent exit 2: not found)" "$?" 2

D=$T_TMP/d; mkdir -p "$D"
port=$(t_free_port)
node() { # NODE ID: a launcher in namespace NODE with identity ID, output in $T_TMP/nNODE.{out,err}
    t_bg env BATON_TOKEN=dns-$$ BATON_HEARTBEAT_TIMEOUT=2 ip netns exec "${T_NS[$1]}" \
        "$BATON" run --nnodes 2:3 --node-rank "$2" --rdzv "$STORE:$port" -n 1 --rdzv-last-call 1 \
        --grace 3 --join-timeout $JT -- "$W" "$D" >"$T_TMP/n$1.out" 2>"$T_TMP/n$1.err"
    P[$1]=$T_LAST_PID
}
node 0 0; node 1 1; node 2 2
t_check "3 nodes at 2:3 by the store's name: generation 0 runs" t_wait_files 3 "$D" 30 '^up\.0\.'
t_expect_eq "3 nodes: world 3" "$(t_worlds "$D" 0)" "3 world=3"

# The store's pod is deleted: its name goes first (NXDOMAIN), then its launcher.
hosts 1; hosts 2
if resolves 1; then t_fail "the name is gone: node 1 no longer resolves it"; else
    t_ok "the name is gone: node 1 no longer resolves it"; fi
kill -KILL "${P[0]}"
t_check "store host killed: node 1 says it lost the store and retries it" \
    t_wait_grep "node 1: lost the rendezvous store at $STORE:$port; retrying it for up to $JT s" "$T_TMP/n1.err" 10
t_check "while the name does not resolve: a line says so (NXDOMAIN: EAI_NONAME)" \
    t_wait_grep "waiting for rendezvous at $STORE:$port .*name '$STORE' does not resolve \(Name or service not known\)" \
    "$T_TMP/n1.err" 15
t_check "node 2 says so too" \
    t_wait_grep "name '$STORE' does not resolve \(Name or service not known\)" "$T_TMP/n2.err" 15
t_expect_eq "no generation formed without the store" "$(ls "$D" | grep -c '^up\.1\.')" 0

# A new pod for node 0, at another address; its name comes back pointing there.
node 3 0
hosts 1 198.51.100.4; hosts 2 198.51.100.4
t_check "the name is back: the survivors re-form with the new node 0 (world 3)" wait_world "$D" 3 40
t_grep "node 0 is the new one: its launcher joined" "generation [1-9][0-9]*: 3 node\(s\)" "$T_TMP/n3.err"

# The name goes away for good: the survivors give up at --join-timeout.
hosts 1; hosts 2
kill -KILL "${P[3]}"
t_wait "${P[1]}" $((JT + 30)) >"$T_TMP/rc1"; t_wait "${P[2]}" $((JT + 30)) >"$T_TMP/rc2"
t_expect_eq "name gone for good: both survivors exit 142 (retryable) within --join-timeout" \
    "$(cat "$T_TMP/rc1") $(cat "$T_TMP/rc2")" "142 142"
t_grep "... naming the name that does not resolve and the flag" \
    "name '$STORE' does not resolve \(Name or service not known\), attempt [0-9]+, gave up after [0-9.]+ s; .*--join-timeout.*exit 142" \
    "$T_TMP/n1.err"
t_done
