#!/usr/bin/env bash
# t_metrics.sh: `baton run --metrics-port PORT` (docs/launcher.md#metrics). /metrics scraped with
# curl while two ranks linger after known work parses with python3-prometheus-client's parser,
# and its counters match that work (calls and bytes per op, the histogram's count, workers
# running); one worker done and one running: baton_workers by state; with rank 1 slowed,
# baton_straggler_last_total counts it last in each slowed call and rank 0's stall warnings are
# counted; after a restart, baton_restarts_total and baton_generation are 1; any other path is
# a 404; a port already in use is one WARN line and the job runs.
# timeout: 120
. "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/coll_check
PY=/usr/bin/python3
[ -x "$CHECK" ] || { t_fail "build" "$CHECK missing"; t_done; }
command -v curl >/dev/null || { t_skip "metrics" "curl is not installed (make deps)"; t_done; }
$PY -c 'import prometheus_client.parser' 2>/dev/null ||
    { t_skip "metrics" "python3-prometheus-client is not installed (make deps)"; t_done; }

port=$(t_free_port)
t_bg "$BATON" run -n 2 --metrics-port "$port" -- "$CHECK" --count 1000 --iters 10 --linger 20 \
    >"$T_TMP/m.out" 2>"$T_TMP/m.err"
job=$T_LAST_PID
i=0
until [ "$(grep -c '^\[[01]\] rank [01] ok$' "$T_TMP/m.out")" = 2 ] || [ $i -ge 300 ]; do
    sleep 0.1; i=$((i + 1)); done
curl -sS --max-time 5 "http://127.0.0.1:$port/metrics" >"$T_TMP/metrics.txt" 2>"$T_TMP/curl.err"
t_expect_eq "curl /metrics: exit 0" "$?" 0
curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other" >"$T_TMP/code"
t_expect_eq "another path: 404" "$(cat "$T_TMP/code")" 404
kill -TERM "$job"; t_wait "$job" 30 >/dev/null

# the scrape named by argv[1], parsed by Debian's prometheus_client; val() one sample's value
cat >"$T_TMP/prom.py" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def val(fam, suffix="", **labels):
    for s in fams[fam].samples:
        if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise SystemExit(f"no sample {fam}{suffix} {labels}")
PYEOF

# coll_check's work per rank: 5 checked allreduces (0, 1, 7, 1000, 65539 floats) and 5
# broadcasts of the same, a barrier, then 10 allreduces of 1000 floats.
cat >"$T_TMP/check.py" <<'PYEOF'
from prom import val
small = 4 * (0 + 1 + 7 + 1000 + 65539)
want = {("allreduce", "calls"): 15, ("broadcast", "calls"): 5, ("barrier", "calls"): 1,
        ("allreduce", "bytes"): small + 10 * 1000 * 4, ("broadcast", "bytes"): small}
bad = []
for rank in ("0", "1"):
    for (op, what), w in want.items():
        fam = "baton_collectives" if what == "calls" else "baton_collective_bytes"
        got = val(fam, "_total", rank=rank, op=op)
        if got != w: bad.append(f"rank {rank} {op} {what}: {got} != {w}")
    hc = val("baton_collective_seconds", "_count", rank=rank, op="allreduce")
    inf = val("baton_collective_seconds", "_bucket", rank=rank, op="allreduce", le="+Inf")
    if hc != 15 or inf != 15: bad.append(f"rank {rank} histogram count {hc}, +Inf {inf}")
    if val("baton_collective_failures", "_total", rank=rank, op="allreduce") != 0: bad.append("failures")
    if val("baton_stalls", "_total", rank=rank) != 0: bad.append("stalls")
if val("baton_workers", state="running") != 2: bad.append("running workers")
if val("baton_generation") != 0 or val("baton_restarts", "_total") != 0: bad.append("generation")
print("\n".join(bad) if bad else "ok")
PYEOF
PYTHONPATH="$T_TMP" $PY "$T_TMP/check.py" "$T_TMP/metrics.txt" >"$T_TMP/check.out" 2>&1
t_expect_eq "the scrape parses and its counters match the work done" "$(cat "$T_TMP/check.out")" ok

# ---- a slow rank: rank 1 sleeps 150 ms before each of 20 allreduces, so it enters last in each
# of them, and with BATON_STALL_WARN=0.05 rank 0's waits are stall warnings (a waiting rank
# looks every 100 ms)
port=$(t_free_port)
BATON_STALL_WARN=0.05 t_bg "$BATON" run -n 2 --metrics-port "$port" -- "$CHECK" --count 1000 \
    --iters 20 --slow-rank 1 --slow-ms 150 --linger 20 >"$T_TMP/s.out" 2>"$T_TMP/s.err"
job=$T_LAST_PID
i=0
until [ "$(grep -c '^\[[01]\] rank [01] ok$' "$T_TMP/s.out")" = 2 ] || [ $i -ge 600 ]; do
    sleep 0.1; i=$((i + 1)); done
sleep 2 # the launcher's look at the rings runs once a second
curl -sS --max-time 5 "http://127.0.0.1:$port/metrics" >"$T_TMP/slow.txt" 2>"$T_TMP/curl.err"
t_expect_eq "slow rank: curl /metrics: exit 0" "$?" 0
kill -TERM "$job"; t_wait "$job" 30 >/dev/null
PYTHONPATH="$T_TMP" $PY - "$T_TMP/slow.txt" >"$T_TMP/slow.out" 2>&1 <<'PYEOF'
from prom import val
bad = []
# 31 calls: 11 checked, 20 slowed; rank 1 enters last in the 20 and maybe in some of the 11
last = {r: val("baton_straggler_last", "_total", rank=r) for r in ("0", "1")}
if not (20 <= last["1"] <= 31 and last["0"] <= 11 and last["0"] + last["1"] <= 31): bad.append(f"last {last}")
if val("baton_stalls", "_total", rank="0") < 1: bad.append("rank 0 logged no stall")
print("\n".join(bad) if bad else "ok")
PYEOF
t_expect_eq "slow rank: straggler counts match (rank 1 last in the 20 slowed calls) and stalls counted" \
    "$(cat "$T_TMP/slow.out")" ok

# ---- workers by state: rank 1 exits 0 at once, rank 0 sleeps: one succeeded, one running
port=$(t_free_port)
t_bg "$BATON" run -n 2 --metrics-port "$port" -- "$BATON_BUILD/tests/progs/launch_worker" \
    --rank 1 --code 0 --delay 0 --sleep 30 >"$T_TMP/w.out" 2>"$T_TMP/w.err"
job=$T_LAST_PID
i=0
until curl -s --max-time 5 "http://127.0.0.1:$port/metrics" >"$T_TMP/states.txt" 2>/dev/null &&
    grep -qx 'baton_workers{state="succeeded"} 1' "$T_TMP/states.txt" || [ $i -ge 300 ]; do
    sleep 0.1; i=$((i + 1)); done
kill -TERM "$job"; t_wait "$job" 30 >/dev/null
PYTHONPATH="$T_TMP" $PY - "$T_TMP/states.txt" >"$T_TMP/states.out" 2>&1 <<'PYEOF'
from prom import val
got = tuple(val("baton_workers", state=s) for s in ("running", "succeeded", "failed"))
print("ok" if got == (1, 1, 0) else f"running, succeeded, failed: {got}")
PYEOF
t_expect_eq "workers by state: 1 running, 1 succeeded, 0 failed, parsed" "$(cat "$T_TMP/states.out")" ok

# ---- a restart: rank 0 exits 7 in generation 0 (launch_worker --fail-until 1); scraped while
# generation 1's two workers sleep: one restart, generation 1, two running
port=$(t_free_port)
t_bg "$BATON" run -n 2 --metrics-port "$port" --max-restarts 1 --restart-backoff 0 -- \
    "$BATON_BUILD/tests/progs/launch_worker" --fail-until 1 --sleep 30 >"$T_TMP/r.out" 2>"$T_TMP/r.err"
job=$T_LAST_PID
i=0 # (the workers' "restart 1 ok" sits in their stdout buffers while they sleep)
until curl -s --max-time 5 "http://127.0.0.1:$port/metrics" >"$T_TMP/restart.txt" 2>/dev/null &&
    grep -qx 'baton_generation 1' "$T_TMP/restart.txt" &&
    grep -qx 'baton_workers{state="running"} 2' "$T_TMP/restart.txt" || [ $i -ge 300 ]; do
    sleep 0.1; i=$((i + 1)); done
t_check "restart: /metrics reaches generation 1 with 2 workers running" \
    grep -qx 'baton_workers{state="running"} 2' "$T_TMP/restart.txt"
kill -TERM "$job"; t_wait "$job" 30 >/dev/null
PYTHONPATH="$T_TMP" $PY - "$T_TMP/restart.txt" >"$T_TMP/restart.out" 2>&1 <<'PYEOF'
from prom import val
got = (val("baton_restarts", "_total"), val("baton_generation"), val("baton_workers", state="running"))
print("ok" if got == (1, 1, 2) else f"restarts, generation, running: {got}")
PYEOF
t_expect_eq "restart: baton_restarts_total 1, baton_generation 1, 2 workers running, parsed" \
    "$(cat "$T_TMP/restart.out")" ok

# ---- a port in use: one line, the job unaffected
$PY -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("up", flush=True); time.sleep(60)' \
    "$port" >"$T_TMP/hold.out" &
holder=$!; T_PIDS+=("$holder")
i=0; until grep -q up "$T_TMP/hold.out" || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
"$BATON" run -n 2 --metrics-port "$port" -- "$CHECK" --count 100 --iters 3 >/dev/null 2>"$T_TMP/u.err"
t_expect_eq "port in use: the job exits 0" "$?" 0
t_expect_eq "port in use: one WARN line names the port" \
    "$(grep -c "^baton: WARN: --metrics-port $port: .*; the job runs without /metrics$" "$T_TMP/u.err")" 1
kill "$holder"

t_done
