#!/usr/bin/env bash
# t_timeline.sh: BATON_TIMELINE=PATH (docs/launcher.md#the-timeline). One node and two nodes:
# the file parses as JSON and validates against the trace-event schema below (python3-
# jsonschema); each rank's track holds one event per collective it ran, each inside its
# "generation 0" span, sorted by time and never overlapping; every node's launcher has its
# "rendezvous 0" span; two nodes merge into node 0's file, with node 1's clock offset taken out
# (node 1 run 5 s ahead by an LD_PRELOAD: its last allreduce still ends with node 0's); a sub-communicator's calls (--split
# 2) are on a track of their own per rank, named with the communicator, in order and never
# overlapping; with two ranks a node the hierarchical allreduces have their three phases
# (intra-node reduce, inter-node allreduce, intra-node broadcast) nested in them, in order, and
# not the phases of the leaders' inner allreduce; with BATON_ALGO=ring and =rabenseifner over
# TCP (3 ranks) every allreduce has that algorithm's three phases, nested and in order, and no
# other op but the barrier (a one-byte allreduce) has any; BATON_ALGO=rd over TCP and the shm transport's collectives have none. A
# restart (--max-restarts 1, rank 0 failing once): the launcher track has rendezvous 0 and 1 and
# the instant restart 1, each rank track generation 0 then generation 1.
# An unwritable path: one WARN line, the job's status unchanged.
# timeout: 120
. "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
PY=/usr/bin/python3
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }
$PY -c 'import jsonschema' 2>/dev/null || { t_skip "timeline" "python3-jsonschema missing"; t_done; }

cat >"$T_TMP/check.py" <<'PYEOF'
import json, sys, jsonschema
path, nodes, ranks, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
subcalls = int(sys.argv[5]) if len(sys.argv) > 5 else 0
phased = int(sys.argv[6]) if len(sys.argv) > 6 else 0
doc = json.load(open(path))
num = {"type": "number"}
schema = {
  "type": "object", "required": ["traceEvents"],
  "properties": {"displayTimeUnit": {"enum": ["ms", "ns"]}, "otherData": {"type": "object"},
    "traceEvents": {"type": "array", "items": {"type": "object",
      "required": ["ph", "pid", "tid", "name"],
      "properties": {"ph": {"enum": ["X", "i", "M"]}, "pid": {"type": "integer", "minimum": 1},
        "tid": {"type": "integer", "minimum": 0}, "name": {"type": "string", "minLength": 1},
        "cat": {"type": "string"}, "ts": num, "dur": {"type": "number", "minimum": 0},
        "s": {"enum": ["g", "p", "t"]}, "args": {"type": "object"}},
      "allOf": [
        {"if": {"properties": {"ph": {"const": "X"}}}, "then": {"required": ["ts", "dur", "cat"]}},
        {"if": {"properties": {"ph": {"const": "i"}}}, "then": {"required": ["ts", "s"]}},
        {"if": {"properties": {"ph": {"const": "M"}}},
         "then": {"properties": {"name": {"enum": ["process_name", "thread_name"]},
                                 "args": {"required": ["name"]}}, "required": ["args"]}}]}}}}
jsonschema.validate(doc, schema)
ev = doc["traceEvents"]
bad = []
pids = {e["pid"] for e in ev}
if pids != set(range(1, nodes + 1)): bad.append(f"pids {sorted(pids)}")
tracks = {}
for e in ev:
    if e["ph"] == "X": tracks.setdefault((e["pid"], e["tid"]), []).append(e)
for p in range(1, nodes + 1):
    if not any(e["name"] == "rendezvous 0" for e in tracks.get((p, 0), [])): bad.append(f"no rendezvous on node {p - 1}")
for r in range(ranks):
    t = [e for k, v in tracks.items() if k[1] == r + 1 for e in v]
    gen = [e for e in t if e["name"] == "generation 0"]
    coll = [e for e in t if "#" in e["name"]]
    ph = [e for e in t if e.get("cat") == "phase"]
    if len(ph) % 3 or len(ph) < 3 * phased: bad.append(f"rank {r}: {len(ph)} phase events, want 3 for each of >= {phased} calls")
    for i in range(0, len(ph) - 2, 3):
        p3, outer = ph[i:i + 3], [e for e in coll if e["name"] == ph[i]["args"]["of"]]
        if [e["args"]["phase"] for e in p3] != [1, 2, 3] or len(outer) != 1: bad.append(f"rank {r}: phases {[e['name'] for e in p3]} not 1, 2, 3 of one call"); break
        o = outer[0]
        if p3[0]["ts"] < o["ts"] - 0.002 or p3[2]["ts"] + p3[2]["dur"] > o["ts"] + o["dur"] + 0.002: bad.append(f"rank {r}: phases outside {o['name']}"); break
        if any(b["ts"] < a["ts"] + a["dur"] - 0.002 for a, b in zip(p3, p3[1:])): bad.append(f"rank {r}: phases of {o['name']} overlap"); break
    if len(gen) != 1: bad.append(f"rank {r}: {len(gen)} generation spans"); continue
    g = gen[0]
    if len(coll) != calls: bad.append(f"rank {r}: {len(coll)} collectives, want {calls}")
    seqs = [int(e["name"].split("#")[1]) for e in coll]
    if seqs != list(range(1, calls + 1)): bad.append(f"rank {r}: call numbers out of order")
    for a, b in zip(coll, coll[1:]):
        if b["ts"] < a["ts"] + a["dur"] - 0.002: bad.append(f"rank {r}: {a['name']} overlaps {b['name']}"); break
    for e in coll:
        if e["ts"] < g["ts"] or e["ts"] + e["dur"] > g["ts"] + g["dur"] + 0.002:
            bad.append(f"rank {r}: {e['name']} outside its generation"); break
    ts = [e["ts"] for e in t]
    if ts != sorted(ts): bad.append(f"rank {r}: events not in time order")
    if not subcalls: continue
    names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    sub = [k for k in tracks if k[1] > 1000000 and (k[1] - 1) % 1000000 == r]
    if len(sub) != 1: bad.append(f"rank {r}: {len(sub)} sub-communicator tracks"); continue
    s = tracks[sub[0]]
    if not names.get(sub[0][1], "").startswith(f"rank {r}: c"): bad.append(f"rank {r}: sub track named {names.get(sub[0][1])!r}")
    if [int(e["name"].split("#")[1]) for e in s] != list(range(1, subcalls + 1)): bad.append(f"rank {r}: sub-communicator calls {len(s)}, want 1..{subcalls} in order")
    if any(e["args"]["comm"] == "world" for e in s): bad.append(f"rank {r}: a world call on the sub track")
    for a, b in zip(s, s[1:]):
        if b["ts"] < a["ts"] + a["dur"] - 0.002: bad.append(f"rank {r}: sub {a['name']} overlaps {b['name']}"); break
print("\n".join(bad) if bad else "ok")
PYEOF

# 11 checked calls (5 allreduces, 5 broadcasts, a barrier) + 20 allreduces per rank
BATON_TIMELINE="$T_TMP/one.json" "$BATON" run -n 2 -- "$CHECK" --count 1000 --iters 20 \
    >/dev/null 2>"$T_TMP/one.err"
t_expect_eq "one node: exit 0" "$?" 0
$PY "$T_TMP/check.py" "$T_TMP/one.json" 1 2 31 >"$T_TMP/one.chk" 2>&1
t_expect_eq "one node: valid trace-event JSON, nested and ordered, one event per call" "$(cat "$T_TMP/one.chk")" ok

port=$(t_free_port)
for n in 0 1; do
    t_bg env BATON_TIMELINE="$T_TMP/two.$n.json" "$BATON" run --nnodes 2 --node-rank $n \
        --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 1000 --iters 20 >/dev/null 2>"$T_TMP/two.$n.err"
    pids[$n]=$T_LAST_PID
done
t_wait_ok "two nodes: both exit 0" 60 "${pids[0]}" "${pids[1]}"
t_check "two nodes: only node 0 writes the file" test -f "$T_TMP/two.0.json" -a ! -e "$T_TMP/two.1.json"
# 2 ranks a node: the allreduces are hierarchical, each with its 3 phases nested in it
$PY "$T_TMP/check.py" "$T_TMP/two.0.json" 2 4 31 0 20 >"$T_TMP/two.chk" 2>&1
t_expect_eq "two nodes: one merged file, both nodes' tracks, valid and nested, phases inside their calls" "$(cat "$T_TMP/two.chk")" ok
phase_names() { # FILE: the names of its phase events, sorted, one line
    $PY -c 'import json, sys; print(", ".join(sorted({e["name"] for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("cat") == "phase"})))' "$1"
}
t_expect_eq "two nodes: the hierarchical phases, not the leaders' inner algorithm's" "$(phase_names "$T_TMP/two.0.json")" \
    "allreduce (inter-node), broadcast (intra-node), reduce (intra-node)"

# node 1's clock 5 s ahead (an LD_PRELOAD adds 5 s to CLOCK_REALTIME in its launcher and its
# workers): the offset node 1 measures through the store takes it out, so in the merged file
# the last allreduce ends on all 4 ranks within 0.5 s (5 s apart without it)
cat >"$T_TMP/skew.c" <<'EOF2'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>
int clock_gettime(clockid_t id, struct timespec *ts)
{
    int (*real)(clockid_t, struct timespec *) =
        (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && id == CLOCK_REALTIME)
        ts->tv_sec += 5;
    return rc;
}
EOF2
if cc -shared -fPIC -o "$T_TMP/skew.so" "$T_TMP/skew.c" -ldl 2>"$T_TMP/skew.log"; then
    port=$(t_free_port)
    for n in 0 1; do
        pre=(); [ $n = 1 ] && pre=(env LD_PRELOAD="$T_TMP/skew.so")
        t_bg "${pre[@]}" env BATON_TIMELINE="$T_TMP/skew.$n.json" "$BATON" run --nnodes 2 \
            --node-rank $n --rdzv "127.0.0.1:$port" -n 2 -- "$CHECK" --count 1000 --iters 20 \
            >/dev/null 2>"$T_TMP/skew.$n.err"
        pids[$n]=$T_LAST_PID
    done
    t_wait_ok "clock skew: both exit 0" 60 "${pids[0]}" "${pids[1]}"
    $PY - "$T_TMP/skew.0.json" >"$T_TMP/skew.chk" 2>&1 <<'PYEOF'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X" and e["name"].startswith("allreduce #")]
last = max(int(e["name"].split("#")[1].split()[0]) for e in ev)
ends = {e["pid"] * 100 + e["tid"]: e["ts"] + e["dur"] for e in ev if e["name"].split("#")[1].split()[0] == str(last)}
spread = (max(ends.values()) - min(ends.values())) / 1e6
print("ok" if len(ends) == 4 and spread < 0.5 else "allreduce #%d ends on %d tracks, %.3f s apart" % (last, len(ends), spread))
PYEOF
    t_expect_eq "clock skew: node 1's clock 5 s ahead is taken out (the last allreduce ends alike on 4 ranks)" "$(cat "$T_TMP/skew.chk")" ok
else
    t_skip "clock skew" "no C compiler for the LD_PRELOAD ($(head -1 "$T_TMP/skew.log"))"
fi

# 3 ranks over TCP, the algorithm forced: every allreduce (25) holds the ring's or
# Rabenseifner's 3 phases (3 ranks: Rabenseifner folds one rank away)
for algo in ring rabenseifner; do
    BATON_ALGO=$algo BATON_TRANSPORT=tcp BATON_TIMELINE="$T_TMP/$algo.json" "$BATON" run -n 3 -- \
        "$CHECK" --count 1000 --iters 20 >/dev/null 2>"$T_TMP/$algo.err"
    t_expect_eq "$algo: exit 0" "$?" 0
    $PY "$T_TMP/check.py" "$T_TMP/$algo.json" 1 3 31 0 25 >"$T_TMP/$algo.chk" 2>&1
    t_expect_eq "$algo: valid, 3 phases nested in order in each allreduce" "$(cat "$T_TMP/$algo.chk")" ok
done
t_expect_eq "ring: its phases' names" "$(phase_names "$T_TMP/ring.json")" \
    "allgather (ring), later segments (ring), reduce-scatter (ring)"
t_expect_eq "rabenseifner: its phases' names" "$(phase_names "$T_TMP/rabenseifner.json")" \
    "allgather (doubling), reduce-scatter (halving), unfold"
phase_ops() { # FILE: the ops of the calls that hold phase events, sorted, one line
    $PY -c 'import json, sys; print(", ".join(sorted({e["args"]["of"].split(" #")[0] for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("cat") == "phase"})))' "$1"
}
# the barrier over TCP is an allreduce of one byte (coll.c: native_barrier): it has them too
t_expect_eq "ring and rabenseifner: only the allreduces and the barrier have phases (not the broadcasts)" \
    "$(phase_ops "$T_TMP/ring.json"; phase_ops "$T_TMP/rabenseifner.json")" "allreduce, barrier"$'\n'"allreduce, barrier"

# no phases: recursive doubling over TCP, and the shared-memory transport's own collectives
# (BATON_ALGO=ring does not reach them)
BATON_ALGO=rd BATON_TRANSPORT=tcp BATON_TIMELINE="$T_TMP/rd.json" "$BATON" run -n 3 -- \
    "$CHECK" --count 1000 --iters 20 >/dev/null 2>"$T_TMP/rd.err"
t_expect_eq "rd: exit 0" "$?" 0
$PY "$T_TMP/check.py" "$T_TMP/rd.json" 1 3 31 >"$T_TMP/rd.chk" 2>&1
t_expect_eq "rd: valid, one event per call" "$(cat "$T_TMP/rd.chk")" ok
t_expect_eq "rd: no phase events" "$(phase_names "$T_TMP/rd.json")" ""
BATON_ALGO=ring BATON_TRANSPORT=shm BATON_TIMELINE="$T_TMP/shm.json" "$BATON" run -n 3 -- \
    "$CHECK" --count 1000 --iters 20 >/dev/null 2>"$T_TMP/shm.err"
t_expect_eq "shm: exit 0" "$?" 0
$PY "$T_TMP/check.py" "$T_TMP/shm.json" 1 3 31 >"$T_TMP/shm.chk" 2>&1
t_expect_eq "shm: valid, one event per call" "$(cat "$T_TMP/shm.chk")" ok
t_expect_eq "shm: no phase events" "$(phase_names "$T_TMP/shm.json")" ""

# 11 checked calls and the split on the world, 20 allreduces on the sub-communicator
BATON_TIMELINE="$T_TMP/sub.json" "$BATON" run -n 4 -- "$CHECK" --count 1000 --iters 20 --split 2 \
    >/dev/null 2>"$T_TMP/sub.err"
t_expect_eq "split: exit 0" "$?" 0
$PY "$T_TMP/check.py" "$T_TMP/sub.json" 1 4 12 20 >"$T_TMP/sub.chk" 2>&1
t_expect_eq "split: the world's calls on each rank's track, the sub-communicator's on its own" "$(cat "$T_TMP/sub.chk")" ok

# 8 communicators dup'd and kept: 6 get rings (tracks) of their own, the last 2 share one
BATON_TIMELINE="$T_TMP/dups.json" "$BATON" run -n 2 -- "$CHECK" --count 10 --iters 1 --dups 8 \
    >/dev/null 2>"$T_TMP/dups.err"
t_expect_eq "8 dups: exit 0" "$?" 0
$PY - "$T_TMP/dups.json" >"$T_TMP/dups.chk" 2>&1 <<'PYEOF'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
bad = []
for r in range(2):
    own = [t for t, n in names.items() if n.startswith(f"rank {r}: c") and t > 1000000]
    shared = [t for t, n in names.items() if n == f"rank {r}: other communicators"]
    if len(own) != 6 or len(shared) != 1: bad.append(f"rank {r}: {len(own)} own tracks, {len(shared)} shared"); continue
    calls = [e for e in ev if e["ph"] == "X" and e["tid"] in own + shared]
    if len({e["args"]["comm"] for e in calls}) != 8 or len(calls) != 8: bad.append(f"rank {r}: {len(calls)} calls of {len({e['args']['comm'] for e in calls})} communicators, want 8 of 8")
    if len([e for e in calls if e["tid"] in shared]) != 2: bad.append(f"rank {r}: not 2 calls on the shared track")
print("\n".join(bad) if bad else "ok")
PYEOF
t_expect_eq "8 dups: 6 communicators with tracks of their own, 2 on the shared one, told apart" "$(cat "$T_TMP/dups.chk")" ok

# a restart: rank 0 exits 7 in generation 0 (launch_worker --fail-until 1), --max-restarts 1
BATON_TIMELINE="$T_TMP/rs.json" "$BATON" run -n 2 --max-restarts 1 --restart-backoff 0 -- \
    "$BATON_BUILD/tests/progs/launch_worker" --fail-until 1 >/dev/null 2>"$T_TMP/rs.err"
t_expect_eq "restart: exit 0" "$?" 0
$PY - "$T_TMP/rs.json" >"$T_TMP/rs.chk" 2>&1 <<'PYEOF'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
bad = []
l = {e["name"]: e for e in ev if e["ph"] in ("X", "i") and e["tid"] == 0}
for n in ("rendezvous 0", "rendezvous 1", "restart 1"):
    if n not in l: bad.append(f"launcher track lacks {n!r}")
if "restart 1" in l and l["restart 1"]["ph"] != "i": bad.append("restart 1 is not an instant")
for r in range(2):
    g = {e["name"]: e for e in ev if e["ph"] == "X" and e["tid"] == r + 1 and e["name"].startswith("generation ")}
    if set(g) != {"generation 0", "generation 1"}: bad.append(f"rank {r}: spans {sorted(g)}"); continue
    if g["generation 1"]["ts"] < g["generation 0"]["ts"] + g["generation 0"]["dur"] - 0.002: bad.append(f"rank {r}: generation 1 starts before generation 0 ends")
    if "restart 1" in l and not g["generation 0"]["ts"] <= l["restart 1"]["ts"] <= g["generation 1"]["ts"] + 0.002: bad.append(f"rank {r}: restart 1 not between its generations")
print("\n".join(bad) if bad else "ok")
PYEOF
t_expect_eq "restart: the launcher's rendezvous 0 and 1 and restart 1, each rank's two generations in order" \
    "$(cat "$T_TMP/rs.chk")" ok

BATON_TIMELINE=/proc/nonexistent/tl.json "$BATON" run -n 2 -- "$CHECK" --count 10 --iters 2 \
    >/dev/null 2>"$T_TMP/bad.err"
t_expect_eq "unwritable path: the job exits 0" "$?" 0
t_expect_eq "unwritable path: one WARN line" \
    "$(grep -c '^baton: WARN: BATON_TIMELINE=/proc/nonexistent/tl.json: cannot write it: ' "$T_TMP/bad.err")" 1

t_done
