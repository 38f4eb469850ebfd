# veth.sh: sourced by compare.sh and collsim_check.sh (both cd to the repository root first).
# veth_up makes the network namespaces $NSA and $NSB joined by one veth pair, its ends named
# bceth0 with 198.51.100.1 and 198.51.100.2, loopback up in each, and both ends rate-limited by
# tbf to $VETH_RATE with burst $VETH_BURST. The caller names the namespaces, sets the two
# limits and removes the namespaces (ip netns del) when it is done.
veth_up() {
    ip netns add "$NSA" && ip netns add "$NSB" &&
        ip link add va$$ netns "$NSA" type veth peer name vb$$ netns "$NSB" &&
        ip -n "$NSA" link set va$$ name bceth0 && ip -n "$NSB" link set vb$$ name bceth0 &&
        ip -n "$NSA" addr add 198.51.100.1/24 dev bceth0 &&
        ip -n "$NSB" addr add 198.51.100.2/24 dev bceth0 &&
        ip -n "$NSA" link set bceth0 up && ip -n "$NSB" link set bceth0 up &&
        ip -n "$NSA" link set lo up && ip -n "$NSB" link set lo up &&
        tc -n "$NSA" qdisc add dev bceth0 root tbf rate "$VETH_RATE" burst "$VETH_BURST" latency 10ms &&
        tc -n "$NSB" qdisc add dev bceth0 root tbf rate "$VETH_RATE" burst "$VETH_BURST" latency 10ms
}
