#!/usr/bin/env bash
# t_spec.sh: `baton spec` end to end: the JSON for the facts file's PyTorchJob pod pt-worker-1,
# the human-readable report, and malformed or contradictory env (exit 2, one line on stderr).
# timeout: 60
source "$(dirname "$0")/lib.sh"

if [ ! -x "$BATON" ]; then
    t_skip "baton spec" "no $BATON (build it first)"
    t_done
fi
# A clean env, so a CI runner's own variables (SLURM_*, OMPI_*) cannot leak in.
spec() { env -i PATH="$PATH" "$@"; }
PT=(MASTER_ADDR=pt-master-0 MASTER_PORT=23456 WORLD_SIZE=12 RANK=2 PET_NODE_RANK=2
    PET_NPROC_PER_NODE=4 PET_NNODES=3 PYTHONUNBUFFERED=1)

spec "${PT[@]}" "$BATON" spec --json >"$T_TMP/pt.json" 2>"$T_TMP/pt.err"
t_expect_eq "spec --json exits 0 for a PyTorchJob pod" "$?" 0
t_check "spec --json: the facts file's pt-worker-1 example" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
want = {"source": "pytorchjob", "job_id": "pt", "role": "worker", "node_rank": 2, "nnodes": 3,
        "nproc_per_node": 4, "world_size": 12, "first_rank": 8, "rdzv_host": "pt-master-0",
        "rdzv_port": 23457, "master_addr": "pt-master-0", "master_port": 23456}
bad = {k: (d.get(k), v) for k, v in want.items() if d.get(k) != v}
assert not bad, bad
assert "RANK" in d["from"] and "MASTER_ADDR" in d["from"], d["from"]
' "$T_TMP/pt.json"

spec "${PT[@]}" "$BATON" spec --json --rdzv-port 31000 -n 2 >"$T_TMP/pt2.json"
t_check "spec --json: --rdzv-port and -n override" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["rdzv_port"], d["nproc_per_node"], d["world_size"], d["first_rank"]) == (31000, 2, 6, 4), d
' "$T_TMP/pt2.json"

spec "${PT[@]}" "$BATON" spec >"$T_TMP/pt.txt"
t_grep "spec: human-readable report names its sources" '^ +from +MASTER_ADDR, MASTER_PORT' "$T_TMP/pt.txt"

# expect_usage_error NAME WORD ENV... -- ARGS: exit 2, stdout empty, one stderr line with WORD
expect_usage_error() {
    local name=$1 word=$2; shift 2
    spec "$@" >"$T_TMP/o" 2>"$T_TMP/e"
    local rc=$? lines
    lines=$(wc -l <"$T_TMP/e")
    if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && [ ! -s "$T_TMP/o" ] && grep -qF -- "$word" "$T_TMP/e"; then
        t_ok "$name"
    else
        t_fail "$name" "rc $rc, $lines stderr line(s): $(head -c 300 "$T_TMP/e")"
    fi
}
expect_usage_error "malformed TF_CONFIG: exit 2, one line naming TF_CONFIG" "TF_CONFIG" \
    TF_CONFIG='{"cluster":{"worker":["a:1"]' "$BATON" spec --json
expect_usage_error "TF_CONFIG task index out of range" "task index 3 is out of range" \
    TF_CONFIG='{"cluster":{"worker":["a:1"]},"task":{"type":"worker","index":3}}' "$BATON" spec
expect_usage_error "RANK and PET_NODE_RANK disagree" "PET_NODE_RANK=1" \
    MASTER_ADDR=pt-master-0 MASTER_PORT=23456 WORLD_SIZE=3 RANK=2 PET_NODE_RANK=1 "$BATON" spec
expect_usage_error "WORLD_SIZE not a multiple of nproc" "WORLD_SIZE=7" \
    MASTER_ADDR=pt-master-0 MASTER_PORT=23456 WORLD_SIZE=7 RANK=0 PET_NPROC_PER_NODE=2 \
    "$BATON" spec
expect_usage_error "--nnodes 0 is refused" "--nnodes" "$BATON" spec --nnodes 0
expect_usage_error "unknown --spec source" "--spec 'k8s'" "$BATON" spec --spec k8s

spec PET_RDZV_ENDPOINT=el-worker-0:23456 PET_NNODES=1:4 HOSTNAME=el-worker-3 \
    "$BATON" spec --json >"$T_TMP/el.json"
t_check "spec --json: elastic worker-only pod takes its index from HOSTNAME" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["node_rank"], d["elastic"], d["nnodes_min"], d["nnodes_max"], d["rdzv_port"]) == \
    (3, True, 1, 4, 23457), d
' "$T_TMP/el.json"
# -n auto is what `baton run -n auto` does (no GPU: one per CPU); no -n keeps one per GPU, else 1
spec "$BATON" spec -n auto >"$T_TMP/na.out" 2>&1
t_grep "spec -n auto: one per GPU, else one per CPU, as baton run -n auto" \
    '^  nproc per node  auto \(one per GPU, else one per CPU\)$' "$T_TMP/na.out"
spec "$BATON" spec >"$T_TMP/nn.out" 2>&1
t_grep "spec without -n: one per GPU, else 1" '^  nproc per node  auto \(one per GPU, else 1\)$' \
    "$T_TMP/nn.out"
t_done
