#!/usr/bin/env bash
# t_torchrun.sh: `baton run` as a drop-in for torchrun (docs/pytorch.md). The same script runs
# under torch's own launcher (/usr/bin/python3 -m torch.distributed.run) and under `baton run`
# with the same torchrun flags, and the variables torchrun's agent sets are diffed; then
# torchrun's spellings, -m/--run-path/--no-python, @record's per-rank error files, the bad
# input lines, and (no torch needed) gpu/auto/--standalone and the variables after a restart.
# Without Debian's torch the torch-dependent checks are skipped.
# timeout: 300
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
P=$BATON_SRC/tests/progs
export PYTHON_EXEC=$PY
unset OMP_NUM_THREADS NCCL_ASYNC_ERROR_HANDLING

# Bad input first: needs no torch.
"$BATON" run --nproc-per-nod 2 x.py >/dev/null 2>"$T_TMP/e1"
t_expect_eq "unknown torchrun flag: exit 2" "$?" 2
t_grep "unknown flag named, with the nearest match" \
    "^baton run: unknown option '--nproc-per-nod'; did you mean --nproc-per-node\?" "$T_TMP/e1"
"$BATON" run --max_restart 1 x.py >/dev/null 2>"$T_TMP/e1b"
t_grep "underscore spelling: nearest match" "did you mean --max-restarts\?" "$T_TMP/e1b"
"$BATON" run -n 2 "$T_TMP/nothere.py" >/dev/null 2>"$T_TMP/e2"
t_expect_eq "a .py script that is not there: exit 127" "$?" 127
t_grep "the script is named" "^baton run: .*/nothere.py: script not found" "$T_TMP/e2"
"$BATON" run --rdzv_backend zookeeper x.py >/dev/null 2>"$T_TMP/e3"
t_grep "--rdzv-backend: the values it takes" "^baton run: --rdzv-backend 'zookeeper': want c10d" "$T_TMP/e3"
"$BATON" run --no-python -m mod >/dev/null 2>"$T_TMP/e4"
t_expect_eq "-m with --no-python: exit 2" "$?" 2
"$BATON" run --standalone --nnodes 2 -- true >/dev/null 2>"$T_TMP/e5"
t_expect_eq "--standalone with --nnodes 2: exit 2" "$?" 2
t_grep "--standalone with --nnodes 2: says why" '^baton run: --standalone is one node' "$T_TMP/e5"
CUDA_VISIBLE_DEVICES= "$BATON" run --nproc-per-node gpu -- true >/dev/null 2>"$T_TMP/e6"
t_expect_eq "--nproc-per-node gpu without a GPU: exit 2" "$?" 2
t_grep "--nproc-per-node gpu without a GPU: says so" '^baton run: --nproc-per-node gpu: no GPU' "$T_TMP/e6"
CUDA_VISIBLE_DEVICES= "$BATON" run --nproc_per_node auto -- sh -c 'echo "W=$WORLD_SIZE"' \
    >"$T_TMP/auto.out" 2>&1
t_expect_eq "--nproc_per_node auto without a GPU: one worker per CPU" \
    "$(grep -c "^\[[0-9]*\] W=$(nproc)\$" "$T_TMP/auto.out")" "$(nproc)"

# The variables torchrun sets from its flags, after a restart (no torch needed): attempt 0
# fails, attempt 1 sees TORCHELASTIC_RESTART_COUNT=1 and exits 0.
"$BATON" run -n 2 --max_restarts 2 --master_addr 127.0.0.2 --master_port 29777 --role r1 -- \
    sh -c 'echo "ENV $RANK $TORCHELASTIC_RESTART_COUNT $TORCHELASTIC_MAX_RESTARTS $MASTER_ADDR $MASTER_PORT $ROLE_NAME $ROLE_RANK $ROLE_WORLD_SIZE $GROUP_RANK $GROUP_WORLD_SIZE"
           [ "$TORCHELASTIC_RESTART_COUNT" = 1 ]' >"$T_TMP/rs.out" 2>&1
t_expect_eq "a job whose first attempt fails and second succeeds: exit 0" "$?" 0
t_expect_eq "after one restart: TORCHELASTIC_RESTART_COUNT 1, MAX_RESTARTS 2, --master-addr/-port, --role" \
    "$(grep -c '^\[[01]\] ENV [01] 1 2 127.0.0.2 29777 r1 [01] 2 0 1$' "$T_TMP/rs.out")" 2
BATON_DEBUG=INFO "$BATON" run -n 2 -- true >"$T_TMP/omp.out" 2>&1
t_grep "OMP_NUM_THREADS=1 is logged" 'INFO LAUNCH OMP_NUM_THREADS=1 for each of the 2 workers' "$T_TMP/omp.out"

if ! timeout 120 "$PY" -c 'import torch.distributed.run' 2>/dev/null; then
    t_skip "torchrun parity" "$PY cannot import torch (make deps installs python3-torch)"
    t_done
fi

# env_of FILE: the "ENV {...}" lines of FILE, one per rank, with what must differ between two
# launchers normalised: the error file's base folder (torchrun: a mkdtemp of its own), and
# MASTER_ADDR/MASTER_PORT (each launcher picks a free port; both are checked to work below).
env_of() {
    "$PY" - "$1" <<'EOF'
import json, re, sys
for line in open(sys.argv[1]):
    m = re.search(r"ENV (\{.*\})", line)
    if not m:
        continue
    d = json.loads(m.group(1))
    d["TORCHELASTIC_ERROR_FILE"] = re.sub(r".*/(attempt_\d+/\d+/error\.json)$", r"\1",
                                          d.get("TORCHELASTIC_ERROR_FILE", "-"))
    d.pop("MASTER_ADDR"); d.pop("MASTER_PORT")
    print(json.dumps(d, sort_keys=True))
EOF
}

# torch 1.13's torchrun on Python 3.11 cannot parse its own default --redirects/--tee ("0":
# IntFlag no longer iterates NONE), so it runs with --redirects 2 --tee 2 (stderr to a file and
# the console), which changes no worker variable.
port=$(t_free_port)
timeout 120 "$PY" -m torch.distributed.run --redirects 2 --tee 2 --nproc_per_node=2 \
    --rdzv_backend=c10d --rdzv_endpoint=127.0.0.1:$port --rdzv_id=job42 --role trainer \
    --max_restarts=3 "$P/torch_env.py" a --b >"$T_TMP/tr.out" 2>"$T_TMP/tr.err"
t_expect_eq "torchrun runs the env script" "$?" 0
port=$(t_free_port)
"$BATON" run --nproc_per_node=2 --rdzv_backend=c10d --rdzv_endpoint=127.0.0.1:$port \
    --rdzv_id=job42 --role trainer --max_restarts=3 "$P/torch_env.py" a --b \
    >"$T_TMP/bt.out" 2>"$T_TMP/bt.err"
t_expect_eq "baton run with the same torchrun flags runs it (a .py under python)" "$?" 0
env_of "$T_TMP/tr.out" | sort >"$T_TMP/tr.env"
env_of "$T_TMP/bt.out" | sort >"$T_TMP/bt.env"
if [ -s "$T_TMP/tr.env" ] && [ "$(wc -l <"$T_TMP/tr.env")" = 2 ] &&
    diff "$T_TMP/tr.env" "$T_TMP/bt.env" >"$T_TMP/diff"; then
    t_ok "the 2 workers' env under baton run equals torchrun's"
else
    t_fail "the 2 workers' env under baton run equals torchrun's" "$(cat "$T_TMP/diff" | head -8)"
fi
t_grep "is_torchelastic_launched() is True, OMP_NUM_THREADS=1, the role" \
    '"OMP_NUM_THREADS": "1".*"ROLE_NAME": "trainer".*"TORCHELASTIC_RUN_ID": "job42".*"is_torchelastic_launched": true' \
    "$T_TMP/bt.env"

# A set OMP_NUM_THREADS is kept; one worker gets none; --standalone: a random UUID run id;
# --master-addr/--master-port reach the workers.
port=$(t_free_port)
OMP_NUM_THREADS=3 "$BATON" run --standalone --nproc-per-node 2 --master-port "$port" \
    "$P/torch_env.py" >"$T_TMP/sa.out" 2>&1
t_grep "OMP_NUM_THREADS of the user is kept" '"OMP_NUM_THREADS": "3"' "$T_TMP/sa.out"
t_grep "--standalone: a UUID run id" '"TORCHELASTIC_RUN_ID": "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"' "$T_TMP/sa.out"
t_grep "--master-port: MASTER_PORT" "\"MASTER_PORT\": \"$port\"" "$T_TMP/sa.out"
"$BATON" run --nproc_per_node 1 "$P/torch_env.py" >"$T_TMP/one.out" 2>&1
if grep -q OMP_NUM_THREADS "$T_TMP/one.out"; then t_fail "one worker per node: no OMP_NUM_THREADS"
else t_ok "one worker per node: no OMP_NUM_THREADS"; fi
ncpu=$(nproc)
"$BATON" run --nproc_per_node cpu "$P/torch_env.py" >"$T_TMP/cpu.out" 2>&1
t_expect_eq "--nproc_per_node cpu: one worker per CPU" "$(grep -c '^\[[0-9]*\] ENV' "$T_TMP/cpu.out")" "$ncpu"

# -m MODULE, --run-path, --no-python: the program torchrun would run.
PYTHONPATH=$P "$BATON" run -m torch_env x >"$T_TMP/m.out" 2>&1
t_grep "-m MODULE runs under python -m" '^\[0\] ENV .*"argv": \["x"\]' "$T_TMP/m.out"
"$BATON" run --run-path "$P/torch_env.py" y >"$T_TMP/rp.out" 2>&1
t_grep "--run-path runs the script with runpy" '^\[0\] ENV .*"argv": \["y"\].*"main": "__main__"' "$T_TMP/rp.out"
cp "$P/torch_env.py" "$T_TMP/exe.py"
sed -i "1i #!$PY" "$T_TMP/exe.py" && chmod +x "$T_TMP/exe.py"
"$BATON" run --no_python "$T_TMP/exe.py" z >"$T_TMP/np.out" 2>&1
t_grep "--no-python runs the .py itself" '^\[0\] ENV .*"argv": \["z"\]' "$T_TMP/np.out"

# @record: each rank's exception in its own error file; the report quotes the first failure's.
mkdir -p "$T_TMP/sync"
RECORD_SYNC=$T_TMP/sync "$BATON" run -n 2 --log-dir "$T_TMP/logs" "$P/torch_record.py" >"$T_TMP/rec.out" 2>"$T_TMP/rec.err"
t_expect_eq "@record script: the job fails with rank 1's code" "$?" 1
for r in 0 1; do
    f=$T_TMP/logs/torchelastic/attempt_0/$r/error.json
    if [ -s "$f" ] && "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "message" in d["message"]' "$f"; then
        t_ok "rank $r's @record error file is written"
    else
        t_fail "rank $r's @record error file is written" "$f: $(cat "$f" 2>&1 | head -c 200)"
    fi
done
t_grep "rank 1's error file holds its exception" 'boom from rank 1' "$T_TMP/logs/torchelastic/attempt_0/1/error.json"
t_grep "the root-cause line quotes the exception" \
    '^baton: job failed: rank 1 .*exited with code 1 \(ValueError: boom from rank 1\)' "$T_TMP/rec.err"
ls -d /tmp/baton-errors-* 2>/dev/null >"$T_TMP/left" || true
"$BATON" run -n 1 "$P/torch_env.py" >"$T_TMP/tmp.out" 2>&1
errf=$(sed -n 's/.*"TORCHELASTIC_ERROR_FILE": "\([^"]*\)".*/\1/p' "$T_TMP/tmp.out")
base=${errf%/attempt_0/0/error.json}
if [ -n "$errf" ] && [ "$base" != "$errf" ] && ! [ -e "$base" ]; then
    t_ok "without --log-dir the error files' temporary folder is removed at exit"
else
    t_fail "without --log-dir the error files' temporary folder is removed at exit" "errf='$errf'"
fi
t_done
