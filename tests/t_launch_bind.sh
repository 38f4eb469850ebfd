#!/usr/bin/env bash
# t_launch_bind.sh: `baton run --bind`: on the 2-socket 8-GPU fixture (BATON_TOPO_XML), -n 8
# --bind gpu gives rank i CUDA_VISIBLE_DEVICES=i, BATON_GPU=i, CUDA_DEVICE_ORDER=PCI_BUS_ID and
# the plan GPU i / its socket's CPUs / its socket's NIC (the printed plan: the fixture's CPUs
# are not this machine's, so the real affinity is the plan intersected with the CPUs baton may
# use, and a rank left with none is not bound, with one warning); a user's CUDA_VISIBLE_DEVICES
# is mapped through; --bind numa sets BATON_GPU only; two nodes get BATON_SOCKET_IFNAME unless
# it is set; --bind core on this machine pins -n 2 workers to disjoint CPUs; --bind gpu with
# no GPU, a bad --bind value and a broken topology exit 2 before any worker starts; --bind
# none (the default) changes nothing.
# timeout: 120
. "$(dirname "$0")/lib.sh"
FIX=$BATON_SRC/tests/fixtures
if [ ! -x "$BATON" ]; then t_skip "baton run --bind" "build $BATON first"; t_done; fi
unset CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER BATON_GPU BATON_SOCKET_IFNAME BATON_TOPO_XML
SHOW='echo "env $LOCAL_RANK cvd=${CUDA_VISIBLE_DEVICES-unset} gpu=${BATON_GPU-unset}'\
' order=${CUDA_DEVICE_ORDER-unset} if=${BATON_SOCKET_IFNAME-unset}"; '\
'echo "cpus $(sed -n "s/^Cpus_allowed_list:[[:space:]]*//p" /proc/self/status)"'
ALLOWED=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)

# affinity_ok OUT ERR: each rank's affinity is its plan's CPUs within ALLOWED, or all of
# ALLOWED when that intersection is empty (and then the warning was printed).
affinity_ok() {
    python3 - "$1" "$2" "$ALLOWED" <<'EOF'
import re, sys
def cpus(s):
    out = set()
    for part in filter(None, s.split(",")):
        a, _, b = part.partition("-")
        out |= set(range(int(a), int(b or a) + 1))
    return out
allowed = cpus(sys.argv[3])
plan = {int(m.group(1)): cpus(m.group(2)) for m in
        re.finditer(r"local rank (\d+): .* cpus ([0-9,-]+) \(bound", open(sys.argv[2]).read())}
got = {}
for line in open(sys.argv[1]):
    m = re.match(r"\[(\d+)\] cpus (\S+)", line)
    if m: got[int(m.group(1))] = cpus(m.group(2))
warned = "ranks like it are not bound" in open(sys.argv[2]).read()
ok = len(plan) == len(got) > 0
for r, want in plan.items():
    inter = want & allowed
    ok &= got.get(r) == (inter if inter else allowed)
    ok &= bool(inter) or warned
sys.exit(0 if ok else 1)
EOF
}

# 8 ranks on the fixture, --bind gpu.
BATON_TOPO_XML=$FIX/topo-2socket-8gpu.xml BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH \
    timeout 30 "$BATON" run -n 8 --bind gpu -- sh -c "$SHOW" >"$T_TMP/g.out" 2>"$T_TMP/g.err"
t_expect_eq "fixture -n 8 --bind gpu: exit 0" "$?" 0
ok=1
for i in 0 1 2 3 4 5 6 7; do
    grep -qx "\[$i\] env $i cvd=$i gpu=$i order=PCI_BUS_ID if=unset" "$T_TMP/g.out" || ok=0
done
t_check "fixture --bind gpu: rank i sees CUDA_VISIBLE_DEVICES=i, BATON_GPU=i, PCI_BUS_ID order" \
    test $ok = 1
ok=1
for i in 0 1 2 3; do
    grep -qE "local rank $i: gpu $i 0000:1.:00.0, numa 0, cpus 0-7,16-23 .*nic ens1f0" \
        "$T_TMP/g.err" || ok=0
done
for i in 4 5 6 7; do
    grep -qE "local rank $i: gpu $i 0000:9.:00.0, numa 1, cpus 8-15,24-31 .*nic ens2f0" \
        "$T_TMP/g.err" || ok=0
done
t_check "fixture --bind gpu: the plan puts rank i on GPU i, its socket's CPUs and NIC" test $ok = 1
t_check "fixture --bind gpu: affinity = plan within this machine's CPUs (unbound when none)" \
    affinity_ok "$T_TMP/g.out" "$T_TMP/g.err"
t_check "fixture --bind gpu: at most one warning line" \
    test "$(grep -c 'not among the CPUs baton may use' "$T_TMP/g.err")" -le 1

# The user's CUDA_VISIBLE_DEVICES: the plan uses only those GPUs, each rank gets one entry.
CUDA_VISIBLE_DEVICES=6,4 BATON_TOPO_XML=$FIX/topo-2socket-8gpu.xml BATON_DEBUG=INFO \
    BATON_DEBUG_SUBSYS=LAUNCH timeout 30 "$BATON" run -n 2 --bind gpu -- sh -c "$SHOW" \
    >"$T_TMP/m.out" 2>"$T_TMP/m.err"
t_expect_eq "CUDA_VISIBLE_DEVICES=6,4 --bind gpu: exit 0" "$?" 0
t_check "CUDA_VISIBLE_DEVICES=6,4: ranks get GPUs 4 and 6 (PCI order), socket 1's CPUs" sh -c "
    grep -qx '\[0\] env 0 cvd=4 gpu=4 order=PCI_BUS_ID if=unset' '$T_TMP/m.out' &&
    grep -qx '\[1\] env 1 cvd=6 gpu=6 order=PCI_BUS_ID if=unset' '$T_TMP/m.out' &&
    grep -q 'local rank 0: gpu 4 0000:99:00.0, numa 1, cpus 8-15,24-31' '$T_TMP/m.err'"

# --bind numa: BATON_GPU says the rank's GPU; CUDA_VISIBLE_DEVICES is left alone.
BATON_TOPO_XML=$FIX/topo-2socket-8gpu.xml timeout 30 "$BATON" run -n 2 --bind numa -- \
    sh -c "$SHOW" >"$T_TMP/n.out" 2>"$T_TMP/n.err"
t_expect_eq "fixture --bind numa: exit 0" "$?" 0
t_grep "fixture --bind numa: BATON_GPU only" '^\[1\] env 1 cvd=unset gpu=1 order=unset if=unset$' \
    "$T_TMP/n.out"

# Two nodes: each worker gets its planned NIC as BATON_SOCKET_IFNAME, unless the user set one.
two_nodes() { # TAG EXTRA-ENV...: node 0 and node 1 of a 2-node job, -n 2 each, on the fixture
    local tag=$1 port p0 p1; shift
    port=$(t_free_port)
    for r in 0 1; do
        t_bg env "$@" BATON_TOPO_XML="$FIX/topo-2socket-8gpu.xml" "$BATON" run --nnodes 2 \
            --node-rank $r --rdzv "127.0.0.1:$port" -n 2 --bind gpu -- sh -c "$SHOW" \
            >"$T_TMP/$tag$r.out" 2>"$T_TMP/$tag$r.err"
        [ $r = 0 ] && p0=$T_LAST_PID || p1=$T_LAST_PID
    done
    t_wait_ok "two nodes ($tag): both launchers exit 0" 60 "$p0" "$p1"
}
two_nodes nic
t_grep "two nodes: BATON_SOCKET_IFNAME is the planned NIC (exact match)" \
    '^\[3\] env 1 cvd=1 gpu=1 order=PCI_BUS_ID if==ens1f0$' "$T_TMP/nic1.out"
two_nodes user BATON_SOCKET_IFNAME=lo
t_grep "two nodes: the user's BATON_SOCKET_IFNAME is kept" '^\[2\] env 0 cvd=0 gpu=0 .* if=lo$' \
    "$T_TMP/user1.out"

# This machine, --bind core, -n 2: two disjoint, non-empty CPU sets.
if [ "$(nproc)" -ge 2 ]; then
    timeout 30 "$BATON" run -n 2 --bind core -- sh -c "$SHOW" >"$T_TMP/c.out" 2>"$T_TMP/c.err"
    t_expect_eq "this machine --bind core -n 2: exit 0" "$?" 0
    t_check "this machine --bind core: each worker has its own CPUs" python3 - "$T_TMP/c.out" <<'EOF'
import re, sys
sets = []
for line in open(sys.argv[1]):
    m = re.match(r"\[\d\] cpus (\S+)", line)
    if m:
        s = set()
        for part in m.group(1).split(","):
            a, _, b = part.partition("-"); s |= set(range(int(a), int(b or a) + 1))
        sets.append(s)
sys.exit(0 if len(sets) == 2 and all(sets) and not (sets[0] & sets[1]) else 1)
EOF
else
    t_skip "this machine --bind core" "one CPU"
fi

# --bind gpu without a GPU: one line, exit 2, no worker started.
BATON_TOPO_XML=$FIX/topo-2socket-cpu.xml "$BATON" run -n 2 --bind gpu -- touch "$T_TMP/ran" \
    2>"$T_TMP/e1.err"
t_expect_eq "--bind gpu on a GPU-less fixture: exit 2" "$?" 2
t_grep "--bind gpu without GPU: the topology's message" \
    '^baton run: --bind gpu: no GPU found on this node .*; use --bind core or none$' "$T_TMP/e1.err"
t_check "--bind gpu without GPU: no worker started" test ! -e "$T_TMP/ran"
if "$BATON" topo --json 2>/dev/null | grep -q '"gpus": *\[\]'; then
    "$BATON" run -n 1 --bind gpu -- touch "$T_TMP/ran" 2>"$T_TMP/e2.err"
    t_expect_eq "--bind gpu on this GPU-less machine: exit 2" "$?" 2
    t_grep "--bind gpu on this machine: one line" '^baton run: --bind gpu: no GPU found' "$T_TMP/e2.err"
else
    t_skip "--bind gpu on this machine without GPU" "this machine has a GPU (or baton topo failed)"
fi
"$BATON" run --bind bogus -- touch "$T_TMP/ran" 2>"$T_TMP/e3.err"
t_expect_eq "--bind bogus: exit 2" "$?" 2
t_grep "--bind bogus: one line naming the value" "^baton run: --bind 'bogus': want none, core, numa or gpu" \
    "$T_TMP/e3.err"
BATON_TOPO_XML=$FIX/topo-broken.xml "$BATON" run --bind core -- touch "$T_TMP/ran" 2>"$T_TMP/e4.err"
t_expect_eq "--bind core with a broken BATON_TOPO_XML: exit 2" "$?" 2
t_grep "broken topology: one line" '^baton run: --bind core: cannot load topology from ' "$T_TMP/e4.err"
t_check "bad --bind input: no worker started" test ! -e "$T_TMP/ran"

# --bind none (the default): nothing set, affinity unchanged.
BATON_TOPO_XML=$FIX/topo-2socket-8gpu.xml timeout 30 "$BATON" run -n 2 -- sh -c "$SHOW" \
    >"$T_TMP/d.out" 2>&1
t_grep "default --bind none: no GPU env" '^\[1\] env 1 cvd=unset gpu=unset order=unset if=unset$' \
    "$T_TMP/d.out"
t_grep "default --bind none: affinity unchanged" "^\[1\] cpus $ALLOWED\$" "$T_TMP/d.out"
t_done
