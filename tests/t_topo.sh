#!/usr/bin/env bash
# t_topo.sh: `baton topo` on the hand-written 2-socket, 8-GPU fixture and on this machine: the
# plan table (rank i -> GPU i -> its socket's NUMA node, CPUs and NIC), --json, BATON_TOPO_XML,
# and one clear line with exit 2 for each kind of bad input.
# timeout: 60
source "$(dirname "$0")/lib.sh"
FX=$BATON_SRC/tests/fixtures
out=$T_TMP/out err=$T_TMP/err

if [ ! -x "$BATON" ]; then
    t_skip "baton topo" "no $BATON (build it first)"
    t_done
fi
hwloc=1
"$BATON" topo --xml "$FX/topo-2socket-8gpu.xml" >"$out" 2>"$err" || hwloc=0
if [ $hwloc = 0 ] && grep -q 'built without hwloc' "$err"; then
    t_skip "fixture topologies" "baton was built without hwloc (WITH_HWLOC=0 or no libhwloc-dev)"
else
    t_expect_eq "fixture loads (exit 0, nothing on stderr)" "$hwloc:$(wc -c <"$err")" "1:0"
    t_grep "inventory line" '^topology of .*topo-2socket-8gpu.xml \(host fixture-2s8g\): 2 packages, 2 NUMA nodes, 16 cores, 32 CPUs, 8 GPUs, 2 NICs$' "$out"
    t_grep "NIC of socket 1 with its locality" '^  ens2f0 \(mlx5_1\) +0000:9d:00.0 package 1 +numa 1 +cpus 8-15,24-31$' "$out"
    t_grep "default plan: 8 ranks, --bind gpu" '^plan for 8 local ranks \(--bind gpu\):$' "$out"
    ok=1 bus=(19 1a 1b 1c 99 9a 9b 9c)
    for r in 0 1 2 3 4 5 6 7; do
        s=$((r / 4)); cpus=$([ $s = 0 ] && echo 0-7,16-23 || echo 8-15,24-31)
        grep -qE "^  $r +$r +0000:${bus[r]}:00.0 +$s +$cpus +ens$((s + 1))f0$" "$out" || {
            ok=0; echo "# rank $r: no row '$r $r 0000:${bus[r]}:00.0 $s $cpus ens$((s + 1))f0'"; }
    done
    t_expect_eq "rank i -> GPU i, its socket's NUMA node, CPUs and NIC" $ok 1
    "$BATON" topo --xml "$FX/topo-2socket-8gpu.xml" -n 8 --bind core >"$out" 2>&1
    t_grep "--bind core: rank 5 gets 2 cores of socket 1" '^  5 +5 +0000:9a:00.0 +1 +10-11,26-27 +ens2f0$' "$out"
    "$BATON" topo --xml "$FX/topo-2socket-8gpu.xml" -n 10 >"$out" 2>&1
    t_grep "more ranks than GPUs: noted" '^note: 10 ranks on 8 GPUs' "$out"
    t_grep "rank 9 shares GPU 1" '^  9 +1 +0000:1a:00.0 ' "$out"

    "$BATON" topo --xml "$FX/topo-2socket-8gpu.xml" --json -n 8 >"$out" 2>"$err"
    t_check "--json is one valid JSON object with the plan" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["gpus"]) == 8 and len(d["nics"]) == 2, d
ranks = d["plan"]["ranks"]
assert d["plan"]["bind"] == "gpu" and len(ranks) == 8
for r in ranks:
    i = r["local_rank"]; s = i // 4
    assert r["gpu"] == i and r["gpu_busid"] == d["gpus"][i]["busid"], r
    assert r["numa"] == s and r["package"] == s, r
    assert r["cpus"] == d["packages"][s]["cpus"], r
    assert r["nic"] == ("ens1f0", "ens2f0")[s], r
' "$out"

    BATON_TOPO_XML=$FX/topo-2socket-cpu.xml "$BATON" topo -n 2 >"$out" 2>&1
    t_grep "BATON_TOPO_XML is read" 'topo-2socket-cpu.xml \(host fixture-2s\): .* 0 GPUs, 2 NICs$' "$out"
    t_grep "no GPU, N=2: default --bind core" '^plan for 2 local ranks \(--bind core\):$' "$out"
    t_grep "no GPU, N=2: rank 1 on socket 1 with its NIC" '^  1 +- +- +1 +8-15,24-31 +ens2f0$' "$out"
fi

# expect_bad NAME WANT_LINE_REGEX ARGS...: exit 2, nothing on stdout, exactly one stderr line.
expect_bad() {
    local name=$1 want=$2; shift 2
    "$@" >"$out" 2>"$err"
    local rc=$?
    if [ $rc = 2 ] && [ ! -s "$out" ] && [ "$(wc -l <"$err")" = 1 ] && grep -qE -- "$want" "$err"; then
        t_ok "$name"
    else
        t_fail "$name" "exit $rc, stdout $(wc -c <"$out") bytes, stderr: $(head -3 "$err")"
    fi
}
expect_bad "missing file" '^baton topo: cannot load topology from /nonexistent/t.xml: No such file or directory$' \
    "$BATON" topo --xml /nonexistent/t.xml
expect_bad "file that does not parse" '^baton topo: cannot load topology from .*topo-broken.xml: (not a valid hwloc XML topology|baton was built without hwloc)' \
    "$BATON" topo --xml "$FX/topo-broken.xml"
expect_bad "BATON_TOPO_XML naming a missing file" 'from /nonexistent/t.xml \(BATON_TOPO_XML\): No such file' \
    env BATON_TOPO_XML=/nonexistent/t.xml "$BATON" topo
expect_bad "a directory" 'cannot load topology from /tmp: not a regular file$' "$BATON" topo --xml /tmp
if [ $hwloc = 1 ]; then
    expect_bad "--bind gpu without GPU" '^baton topo: --bind gpu: no GPU found on this node \(hwloc saw none\); use --bind core or none$' \
        "$BATON" topo --xml "$FX/topo-2socket-cpu.xml" --bind gpu
fi
expect_bad "-n 0" "^baton topo: -n '0': expected auto or a number of local ranks in 1..4096$" "$BATON" topo -n 0
expect_bad "-n abc" "^baton topo: -n 'abc'" "$BATON" topo -n abc
expect_bad "-n without a value" '^baton topo: -n needs a value' "$BATON" topo -n
expect_bad "--bind socket" "^baton topo: --bind 'socket': expected none, core, numa or gpu$" "$BATON" topo --bind socket
expect_bad "unknown option" "^baton topo: unknown option '--frob'" "$BATON" topo --frob

# This machine: loads, plans one rank per GPU (or 1), and the JSON parses.
"$BATON" topo >"$out" 2>"$err"
t_expect_eq "this machine: exit 0, nothing on stderr" "$?:$(wc -c <"$err")" "0:0"
t_grep "this machine: inventory" '^topology of this machine' "$out"
sed 's/^/# /' "$out"
"$BATON" topo -n 3 --bind numa --json >"$out" 2>"$err"
t_check "this machine: --json -n 3 --bind numa parses" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["source"].startswith("this machine") and len(d["plan"]["ranks"]) == 3, d
assert all(r["cpus"] for r in d["plan"]["ranks"]), d
' "$out"
"$BATON" help topo >"$out" 2>&1
t_grep "baton help topo" '^usage: baton topo ' "$out"
t_done
