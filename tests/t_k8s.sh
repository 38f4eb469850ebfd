#!/usr/bin/env bash
# t_k8s.sh: the manifests in k8s/ and `baton k8s render|apply|delete`.
#
# Schemas: every manifest validates against the Kubeflow CRDs and the strict core schemas in
# $BATON_SRC/../shared/k8s-schemas, and so does every object `baton k8s render` writes (skipped,
# not passed, when that folder is absent). Render: names, labels, ports, env (the exact examples
# of shared/k8s-operator-facts.md), TF_CONFIG byte for byte, restartPolicy mapping, the
# operator's validation errors (exit 2, one line, nothing written), apply/delete through a fake
# kubectl, and a clear error when kubectl is missing.
# timeout: 180
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
SCHEMAS=$BATON_SRC/../shared/k8s-schemas
K8S=$BATON_SRC/k8s
HAVE_YAML=1
$PY -c 'import yaml, jsonschema' 2>/dev/null || HAVE_YAML=0

# penv FILE POD: the env of POD's framework container in a rendered stream, NAME=VALUE lines.
penv() {
    $PY - "$1" "$2" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Pod" and d["metadata"]["name"] == sys.argv[2]:
        for c in d["spec"]["containers"]:
            if c["name"] in ("pytorch", "tensorflow"):
                for e in c.get("env", []):
                    if e["name"] != "BATON_TOKEN": # from the job's Secret: tested apart
                        print("%s=%s" % (e["name"], e.get("value", "")))
EOF
}
# pget FILE KIND NAME EXPR: a Python expression over the object o.
pget() {
    $PY - "$@" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == sys.argv[2] and d["metadata"]["name"] == sys.argv[3]:
        o = d
        print(eval(sys.argv[4]))
EOF
}

# job NAME KIND SPECS_YAML: a job file in $T_TMP/NAME.yaml (SPECS_YAML: the replica specs).
job() {
    local key=pytorchReplicaSpecs
    [ "$2" = TFJob ] && key=tfReplicaSpecs
    printf 'apiVersion: kubeflow.org/v1\nkind: %s\nmetadata:\n  name: %s\nspec:\n%s  %s:\n%s\n' \
        "$2" "$1" "${EXTRA_SPEC:-}" "$key" "$3" >"$T_TMP/$1.yaml"
}
# rs TYPE REPLICAS CONTAINER [RESTART]: one replica spec, indented for job().
rs() {
    printf '    %s:\n      replicas: %s\n%s      template:\n        spec:\n          containers:\n' \
        "$1" "$2" "${4:+      restartPolicy: $4
}"
    printf '            - name: %s\n              image: baton:latest\n' "$3"
    printf '              command: [baton, run, --, mnist_cnn, --epochs, "1"]\n'
}

# ---- metrics: every pod template that starts `baton run` serves /metrics (--metrics-port P)
# and says so to Prometheus (prometheus.io/scrape, /port P, /path) with a containerPort P. The
# TrainJob runtimes (ClusterTrainingRuntime, TrainingRuntime, TrainJob) are not yet covered:
# left out by kind.
if [ $HAVE_YAML = 1 ]; then
    $PY - "$K8S"/*.yaml >"$T_TMP/metrics.chk" 2>&1 <<'PYEOF'
import sys, yaml
bad, seen = [], 0
def templates(node):
    if isinstance(node, dict):
        if isinstance(node.get("spec"), dict) and "containers" in node["spec"]:
            yield node
        for v in node.values(): yield from templates(v)
    elif isinstance(node, list):
        for v in node: yield from templates(v)
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") in ("ClusterTrainingRuntime", "TrainingRuntime", "TrainJob"): continue
        for t in templates(doc):
            for c in t["spec"]["containers"]:
                cmd = [str(x) for x in c.get("command", [])]
                if cmd[:2] != ["baton", "run"]: continue
                seen += 1
                where = f"{path.split('/')[-1]} {c['name']}"
                port = cmd[cmd.index("--metrics-port") + 1] if "--metrics-port" in cmd else None
                ann = (t.get("metadata") or {}).get("annotations") or {}
                ports = [str(p.get("containerPort")) for p in c.get("ports", [])]
                if not port: bad.append(f"{where}: no --metrics-port")
                elif ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != port or ann.get("prometheus.io/path") != "/metrics": bad.append(f"{where}: annotations {ann}")
                elif port not in ports: bad.append(f"{where}: no containerPort {port}")
print("\n".join(bad) if bad else f"ok {seen}")
PYEOF
    t_expect_eq "metrics: every baton run pod template has --metrics-port, its annotations and port" \
        "$(sed 's/^ok [0-9]*$/ok/' "$T_TMP/metrics.chk")" ok
    t_check "metrics: the check saw the 9 templates" test "$(sed -n 's/^ok //p' "$T_TMP/metrics.chk")" -ge 9
else
    t_skip "metrics: every baton run pod template has --metrics-port" "no python3-yaml (make deps)"
fi

# ---- every manifest against the schemas ----
if [ ! -d "$SCHEMAS" ]; then
    t_skip "manifests validate against the CRD and core schemas" "no $SCHEMAS (shared/ beside the repo)"
elif [ $HAVE_YAML = 0 ]; then
    t_skip "manifests validate against the CRD and core schemas" "no python3-yaml/jsonschema (make deps)"
else
    $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$K8S"/*.yaml "$K8S"/gang/*.yaml >"$T_TMP/v.log" 2>&1
    for f in "$K8S"/*.yaml "$K8S"/gang/*.yaml; do
        if grep -q "^ok $f " "$T_TMP/v.log" && ! grep -q "^FAIL $f " "$T_TMP/v.log"; then
            t_ok "$(basename "$f") validates ($(grep -c "^ok $f " "$T_TMP/v.log") objects)"
        else
            t_fail "$(basename "$f") validates" "$(grep -v '^ok' "$T_TMP/v.log" | head -5)"
        fi
    done
    # The validator itself rejects an unknown field (strict), so the passes above mean something.
    sed 's/^  runPolicy:/  runPolicyTypo:/' "$K8S/pytorchjob-mnist.yaml" >"$T_TMP/typo.yaml"
    if ! $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$T_TMP/typo.yaml" >"$T_TMP/v.log" 2>&1 &&
        grep -q runPolicyTypo "$T_TMP/v.log"; then
        t_ok "validator rejects an unknown field"
    else t_fail "validator rejects an unknown field" "$(cat "$T_TMP/v.log")"; fi
    # ... and so do the field lists of the kinds shared/ has no schema for
    sed 's/minMember:/minMembers:/' "$K8S/gang/coscheduling-podgroup.yaml" >"$T_TMP/pg.yaml"
    sed 's/nominalQuota: 16Gi/nominalQuota: lots/' "$K8S/gang/kueue-queues.yaml" >"$T_TMP/kq.yaml"
    sed 's/^value:/valu:/' "$K8S/gang/volcano-queue.yaml" >"$T_TMP/vq.yaml"
    $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$T_TMP/pg.yaml" "$T_TMP/kq.yaml" "$T_TMP/vq.yaml" \
        >"$T_TMP/v.log" 2>&1
    t_expect_eq "validator rejects a misspelt PodGroup field, a bad Kueue quota, a misspelt PriorityClass" \
        "$(grep '^FAIL .*\(minMembers\|lots\|valu\)' "$T_TMP/v.log" | cut -d: -f1 | sort -u | wc -l)" 3
fi

# ---- render the shipped jobs; every object against the strict core schemas ----
rendered=()
for f in pytorchjob-mnist pytorchjob-elastic-mnist pytorchjob-gpu-mnist tfjob-mnist-ps; do
    if "$BATON" k8s render "$K8S/$f.yaml" >"$T_TMP/$f.out" 2>"$T_TMP/err"; then
        t_ok "render $f ($(grep -c '^kind: Pod' "$T_TMP/$f.out") pods)"; rendered+=("$T_TMP/$f.out")
    else t_fail "render $f" "$(cat "$T_TMP/err")"; fi
done
if [ ! -d "$SCHEMAS" ] || [ $HAVE_YAML = 0 ]; then
    t_skip "rendered Pods and Services validate against pod-v1/service-v1" "no schemas or python3-yaml"
elif $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "${rendered[@]}" >"$T_TMP/v.log" 2>&1; then
    t_ok "rendered objects validate against the strict core schemas ($(grep -c '^ok' "$T_TMP/v.log") objects)"
else t_fail "rendered objects validate" "$(grep -v '^ok' "$T_TMP/v.log" | head -5)"; fi
t_expect_eq "pytorchjob-mnist renders 4 pods" "$(grep -c '^kind: Pod' "$T_TMP/pytorchjob-mnist.out")" 4
t_expect_eq "tfjob-mnist-ps renders 4 services" "$(grep -c '^kind: Service' "$T_TMP/tfjob-mnist-ps.out")" 4

if [ $HAVE_YAML = 0 ]; then
    t_skip "render: env, labels, TF_CONFIG" "no python3-yaml (make deps)"
    t_done
fi

# ---- PyTorchJob env: the facts file's example, job pt, 1 master + 2 workers ----
job pt PyTorchJob "$(rs Master 1 pytorch ExitCode)
$(rs Worker 2 pytorch)"
"$BATON" k8s render "$T_TMP/pt.yaml" >"$T_TMP/pt.out"
want="PYTHONUNBUFFERED=1 MASTER_PORT=23456 PET_MASTER_PORT=23456 MASTER_ADDR=pt-master-0"
want+=" PET_MASTER_ADDR=pt-master-0 WORLD_SIZE=3 RANK=2 PET_NODE_RANK=2 PET_NNODES=3"
want+=" PET_NPROC_PER_NODE=auto"
t_expect_eq "pt-worker-1 env as the operator sets it" "$(penv "$T_TMP/pt.out" pt-worker-1 | xargs)" "$want"
t_expect_eq "pt-master-0 RANK" "$(penv "$T_TMP/pt.out" pt-master-0 | grep -E '^(RANK|PET_NODE_RANK)=' | xargs)" \
    "RANK=0 PET_NODE_RANK=0"
t_expect_eq "pt-worker-0 RANK" "$(penv "$T_TMP/pt.out" pt-worker-0 | grep '^RANK=')" "RANK=1"
EXTRA_SPEC='  nprocPerNode: "4"
' job pt4 PyTorchJob "$(rs Master 1 pytorch)
$(rs Worker 2 pytorch)"
"$BATON" k8s render "$T_TMP/pt4.yaml" >"$T_TMP/pt4.out"
t_expect_eq "nprocPerNode 4: WORLD_SIZE=12, RANK still the pod's" \
    "$(penv "$T_TMP/pt4.out" pt4-worker-1 | grep -E '^(WORLD_SIZE|RANK|PET_NPROC_PER_NODE)=' | xargs)" \
    "WORLD_SIZE=12 RANK=2 PET_NPROC_PER_NODE=4"
t_expect_eq "pod names" "$(grep -A1 '^metadata:' "$T_TMP/pt.out" | sed -n 's/^  name: //p' | xargs)" \
    "pt-baton-token pt-master-0 pt-master-0 pt-worker-0 pt-worker-0 pt-worker-1 pt-worker-1"

# ---- the job's secret: one Secret, every pod's BATON_TOKEN from it, new on every render ----
secret_of() { # FILE: "secrets name type token-bytes refs pods"
    $PY - "$1" <<'EOF'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
s = [d for d in docs if d["kind"] == "Secret"]
refs = 0
for d in docs:
    if d["kind"] == "Pod":
        for c in d["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"] == "BATON_TOKEN" and e["valueFrom"]["secretKeyRef"] == \
                        {"name": s[0]["metadata"]["name"], "key": "token"}:
                    refs += 1
print(len(s), s[0]["metadata"]["name"], s[0]["type"],
      len(base64.b64decode(base64.b64decode(s[0]["data"]["token"]))), refs,
      sum(d["kind"] == "Pod" for d in docs))
EOF
}
t_expect_eq "secret: one Secret <job>-baton-token, Opaque, 32 random bytes; all 3 pods read it" \
    "$(secret_of "$T_TMP/pt.out")" "1 pt-baton-token Opaque 32 3 3"
t_check "secret: the Secret comes before the pods that read it" \
    test "$(grep -m1 '^kind: ' "$T_TMP/pt.out")" = "kind: Secret"
"$BATON" k8s render "$T_TMP/pt.yaml" >"$T_TMP/pt2.out"
t_check "secret: a re-render makes a new one" \
    bash -c "test \"\$(grep '^  token: ' '$T_TMP/pt.out')\" != \"\$(grep '^  token: ' '$T_TMP/pt2.out')\""
"$BATON" k8s render "$T_TMP/pt.yaml" --token s3cret >"$T_TMP/pt3.out"
t_expect_eq "secret: --token VALUE keeps it (base64 in data)" \
    "$(sed -n 's/^  token: //p' "$T_TMP/pt3.out")" "$(printf s3cret | base64)"

# The shipped manifests read BATON_TOKEN from <job>-baton-token themselves (optional: true, for
# the operator); the render replaces that entry by its own: one per framework container.
one_token() { # FILE JOB: "ok", or what is wrong
    $PY - "$1" "$2" <<'EOF'
import sys, yaml
want = {"name": sys.argv[2] + "-baton-token", "key": "token"}
bad = []
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d or d["kind"] != "Pod":
        continue
    for c in d["spec"]["containers"]:
        toks = [e for e in c.get("env", []) if e["name"] == "BATON_TOKEN"]
        if len(toks) != 1 or toks[0].get("valueFrom", {}).get("secretKeyRef") != want:
            bad.append("%s/%s: %r" % (d["metadata"]["name"], c["name"], toks))
print("; ".join(bad) or "ok")
EOF
}
for f in pytorchjob-mnist:mnist pytorchjob-elastic-mnist:mnist-elastic \
    pytorchjob-gpu-mnist:mnist-gpu tfjob-mnist-ps:mnist-ps \
    gang/pytorchjob-mnist-coscheduling:mnist-coscheduling gang/pytorchjob-mnist-kueue:mnist-kueue \
    gang/pytorchjob-mnist-volcano:mnist-volcano indexedjob-mnist:mnist-indexed; do
    grep -q "name: ${f#*:}-baton-token, key: token, optional: true" "$K8S/${f%%:*}.yaml"
    t_expect_eq "secret: ${f%%:*}.yaml reads BATON_TOKEN from its Secret (optional)" "$?" 0
    [ "${f%%:*}" = indexedjob-mnist ] && continue # a plain Job: not rendered
    "$BATON" k8s render "$K8S/${f%%:*}.yaml" >"$T_TMP/tok.out" 2>"$T_TMP/err"
    t_expect_eq "secret: render of ${f%%:*}: exactly one BATON_TOKEN per container, the render's" \
        "$(one_token "$T_TMP/tok.out" "${f#*:}")" ok
done

# ---- labels, ports, services ----
L=training.kubeflow.org
t_expect_eq "master pod labels" "$(pget "$T_TMP/pt.out" Pod pt-master-0 \
    "sorted((k, v) for k, v in o['metadata']['labels'].items())")" \
    "[('$L/job-name', 'pt'), ('$L/job-role', 'master'), ('$L/operator-name', 'pytorchjob-controller'), ('$L/replica-index', '0'), ('$L/replica-type', 'master')]"
t_expect_eq "worker pods carry no job-role" "$(pget "$T_TMP/pt.out" Pod pt-worker-0 \
    "'$L/job-role' in o['metadata']['labels']")" False
t_expect_eq "service: headless, publishNotReadyAddresses, selects its pod" "$(pget "$T_TMP/pt.out" Service pt-worker-1 \
    "(o['spec']['clusterIP'], o['spec']['publishNotReadyAddresses'], o['spec']['selector']['$L/replica-index'], o['spec']['selector']['$L/replica-type'], o['spec']['ports'])")" \
    "('None', True, '1', 'worker', [{'name': 'pytorchjob-port', 'port': 23456}])"
t_expect_eq "default port added to the pytorch container" "$(pget "$T_TMP/pt.out" Pod pt-worker-0 \
    "o['spec']['containers'][0]['ports']")" "[{'name': 'pytorchjob-port', 'containerPort': 23456}]"
t_expect_eq "template preserved (command)" "$(pget "$T_TMP/pt.out" Pod pt-worker-0 \
    "o['spec']['containers'][0]['command']")" "['baton', 'run', '--', 'mnist_cnn', '--epochs', '1']"

# ---- restartPolicy: ExitCode -> Never; default OnFailure (PyTorchJob) / Never (TFJob) ----
t_expect_eq "ExitCode -> pod Never; default OnFailure" \
    "$(pget "$T_TMP/pt.out" Pod pt-master-0 "o['spec']['restartPolicy']") $(pget "$T_TMP/pt.out" Pod pt-worker-0 "o['spec']['restartPolicy']")" \
    "Never OnFailure"
job rp TFJob "$(rs Chief 1 tensorflow Always)
$(rs Worker 1 tensorflow OnFailure)
$(rs PS 1 tensorflow)
$(rs Evaluator 1 tensorflow Never)"
"$BATON" k8s render "$T_TMP/rp.yaml" >"$T_TMP/rp.out"
t_expect_eq "TFJob Always/OnFailure/default/Never kept" "$(for p in rp-chief-0 rp-worker-0 rp-ps-0 rp-evaluator-0; do
    pget "$T_TMP/rp.out" Pod $p "o['spec']['restartPolicy']"; done | xargs)" "Always OnFailure Never Never"

# ---- TF_CONFIG byte for byte: the facts file's job mnist ----
job mnist TFJob "$(rs Chief 1 tensorflow)
$(rs Evaluator 1 tensorflow)
$(rs PS 1 tensorflow)
$(rs Worker 2 tensorflow)"
"$BATON" k8s render "$T_TMP/mnist.yaml" >"$T_TMP/mnist.out"
want='{"cluster":{"chief":["mnist-chief-0.default.svc:2222"],"evaluator":["mnist-evaluator-0.default.svc:2222"],"ps":["mnist-ps-0.default.svc:2222"],"worker":["mnist-worker-0.default.svc:2222","mnist-worker-1.default.svc:2222"]},"task":{"type":"worker","index":1},"environment":"cloud"}'
t_expect_eq "mnist-worker-1 TF_CONFIG byte for byte" "$(penv "$T_TMP/mnist.out" mnist-worker-1 | sed -n 's/^TF_CONFIG=//p')" "$want"
t_expect_eq "TF_CONFIG is the only env the operator adds to a TFJob" "$(penv "$T_TMP/mnist.out" mnist-ps-0 | cut -d= -f1 | xargs)" TF_CONFIG
t_expect_eq "TFJob master role is the chief" "$(pget "$T_TMP/mnist.out" Pod mnist-chief-0 \
    "o['metadata']['labels'].get('$L/job-role')") $(pget "$T_TMP/mnist.out" Pod mnist-worker-0 \
    "o['metadata']['labels'].get('$L/job-role')")" "master None"
job solo TFJob "$(rs Worker 1 tensorflow)"
"$BATON" k8s render "$T_TMP/solo.yaml" >"$T_TMP/solo.out"
t_expect_eq "no TF_CONFIG for a one-replica TFJob" "$(penv "$T_TMP/solo.out" solo-worker-0 | wc -l)" 0
EXTRA_SPEC='  enableDynamicWorker: true
' job dyn TFJob "$(rs Worker 2 tensorflow)
$(rs PS 2 tensorflow)"
"$BATON" k8s render "$T_TMP/dyn.yaml" >"$T_TMP/dyn.out"
t_expect_eq "enableDynamicWorker: sparse TF_CONFIG" "$(penv "$T_TMP/dyn.out" dyn-worker-1 | sed -n 's/^TF_CONFIG=//p')" \
    '{"cluster":{"worker":{"1":"dyn-worker-1.default.svc:2222"},"ps":["dyn-ps-0.default.svc:2222","dyn-ps-1.default.svc:2222"]},"task":{"type":"worker","index":1}}'

# ---- elastic PyTorchJob: worker-only, PET_* and no RANK ----
"$BATON" k8s render "$K8S/pytorchjob-elastic-mnist.yaml" >"$T_TMP/el.out"
t_expect_eq "elastic worker env" "$(penv "$T_TMP/el.out" mnist-elastic-worker-2 | xargs)" \
    "PYTHONUNBUFFERED=1 PET_RDZV_ENDPOINT=mnist-elastic-worker-0:23456 PET_RDZV_BACKEND=c10d PET_NNODES=2:4 PET_MAX_RESTARTS=3 PET_NPROC_PER_NODE=1"
t_expect_eq "elastic: worker 0 has the master role" "$(pget "$T_TMP/el.out" Pod mnist-elastic-worker-0 \
    "o['metadata']['labels'].get('$L/job-role')")" master

# ---- the operator's validation: one line, exit 2, nothing written ----
reject() { # NAME PATTERN FILE
    local rc=0
    "$BATON" k8s render "$3" >"$T_TMP/rej.out" 2>"$T_TMP/rej.err" || rc=$?
    if [ $rc -eq 2 ] && [ ! -s "$T_TMP/rej.out" ] && [ "$(wc -l <"$T_TMP/rej.err")" -eq 1 ] &&
        grep -qE -- "$2" "$T_TMP/rej.err"; then t_ok "rejects: $1 ($(cat "$T_TMP/rej.err"))"
    else t_fail "rejects: $1" "rc=$rc out=$(wc -c <"$T_TMP/rej.out")B err=$(cat "$T_TMP/rej.err")"; fi
}
sed 's/^kind: PyTorchJob/kind: MPIJob/' "$T_TMP/pt.yaml" >"$T_TMP/k.yaml"
reject "unknown kind" "unknown kind 'MPIJob'" "$T_TMP/k.yaml"
job rt PyTorchJob "$(rs Master 1 pytorch)
$(rs Chief 1 pytorch)"
reject "unknown replica type" "PyTorchJob 'rt': unknown replica type 'Chief'" "$T_TMP/rt.yaml"
job nc PyTorchJob "$(rs Master 1 pytorch)
$(rs Worker 2 trainer)"
reject "no container named pytorch" "PyTorchJob 'nc': Worker: no container named 'pytorch'" "$T_TMP/nc.yaml"
job ntf TFJob "$(rs Chief 1 tensorflow)
$(rs Worker 2 pytorch)"
reject "no container named tensorflow" "TFJob 'ntf': Worker: no container named 'tensorflow'" "$T_TMP/ntf.yaml"
job m2 PyTorchJob "$(rs Master 2 pytorch)
$(rs Worker 2 pytorch)"
reject "Master replicas 2" "PyTorchJob 'm2': Master has 2 replicas" "$T_TMP/m2.yaml"
job c2 TFJob "$(rs Chief 2 tensorflow)
$(rs Worker 2 tensorflow)"
reject "two Chief replicas" "TFJob 'c2': Chief has 2 replicas" "$T_TMP/c2.yaml"
job cm TFJob "$(rs Chief 1 tensorflow)
$(rs Master 1 tensorflow)"
reject "Chief and Master" "TFJob 'cm': both Chief and Master" "$T_TMP/cm.yaml"
job ni PyTorchJob "$(rs Master 1 pytorch)"
sed -i '/image:/d' "$T_TMP/ni.yaml"
reject "container without image" "Master: container 'pytorch' has no image" "$T_TMP/ni.yaml"
job bp PyTorchJob "$(rs Master 1 pytorch Sometimes)"
reject "unknown restartPolicy" "restartPolicy 'Sometimes'" "$T_TMP/bp.yaml"
printf 'kind: PyTorchJob\n  - x: [\n' >"$T_TMP/syn.yaml"
reject "YAML syntax error" "syn.yaml:[0-9]+:[0-9]+: YAML" "$T_TMP/syn.yaml"
reject "missing file" "nonexistent.yaml: No such file" "$T_TMP/nonexistent.yaml"
rc=0; "$BATON" k8s render >/dev/null 2>&1 || rc=$?
t_expect_eq "no JOB.yaml: usage error" $rc 2

# ---- apply / delete through a fake kubectl ----
cat >"$T_TMP/kubectl" <<EOF
#!/bin/sh
echo "\$*" >"$T_TMP/kubectl.args"
[ "\$1" = apply ] && cat >"$T_TMP/kubectl.stdin"
exit 0
EOF
chmod +x "$T_TMP/kubectl"
rc=0; PATH=$T_TMP:$PATH "$BATON" k8s apply "$T_TMP/pt.yaml" -- --dry-run=client >/dev/null 2>&1 || rc=$?
t_expect_eq "apply runs kubectl apply -f - (extra args passed)" "$rc $(cat "$T_TMP/kubectl.args")" "0 apply -f - --dry-run=client"
t_check "apply feeds kubectl exactly the render (but for the job's random secret)" \
    cmp -s <(grep -v '^  token: ' "$T_TMP/kubectl.stdin") <(grep -v '^  token: ' "$T_TMP/pt.out")
rm -f "$T_TMP/kubectl.args"
rc=0; KUBECTL=$T_TMP/kubectl "$BATON" k8s apply "$T_TMP/m2.yaml" >/dev/null 2>&1 || rc=$?
t_expect_eq "invalid job: kubectl not run, exit 2" "$rc $([ -e "$T_TMP/kubectl.args" ] && echo ran)" "2 "
rc=0; KUBECTL=$T_TMP/kubectl "$BATON" k8s delete "$T_TMP/pt.yaml" >/dev/null 2>&1 || rc=$?
t_expect_eq "delete by the job-name label" "$rc $(cat "$T_TMP/kubectl.args")" \
    "0 delete pods,services,secrets -n default -l training.kubeflow.org/job-name=pt"
rc=0; "$BATON" k8s apply --kubectl "$T_TMP/no-such-kubectl" "$T_TMP/pt.yaml" >/dev/null 2>"$T_TMP/err" || rc=$?
if [ $rc -eq 127 ] && grep -q "not found" "$T_TMP/err" && grep -q "baton k8s render" "$T_TMP/err"; then
    t_ok "missing kubectl: exit 127 with a hint"
else t_fail "missing kubectl: exit 127 with a hint" "rc=$rc $(cat "$T_TMP/err")"; fi

# ---- runPolicy: one note per field on stderr (render and apply), activeDeadlineSeconds on the pods
EXTRA_SPEC='  runPolicy:
    backoffLimit: 3
    activeDeadlineSeconds: 600
    ttlSecondsAfterFinished: 60
    cleanPodPolicy: All
    schedulingPolicy: {minAvailable: 2}
' job rpol PyTorchJob "$(rs Master 1 pytorch ExitCode)
$(rs Worker 2 pytorch OnFailure)"
"$BATON" k8s render "$T_TMP/rpol.yaml" >"$T_TMP/rpol.out" 2>"$T_TMP/rpol.err"
t_expect_eq "runPolicy notes: render exits 0, one line per field" "$? $(wc -l <"$T_TMP/rpol.err")" "0 7"
for want in "runPolicy.backoffLimit 3: not honoured" \
    "runPolicy.activeDeadlineSeconds 600: set on each Pod as spec.activeDeadlineSeconds" \
    "runPolicy.ttlSecondsAfterFinished 60: not honoured" "runPolicy.cleanPodPolicy All: not honoured" \
    "restartPolicy ExitCode \(Master\): the pods get restartPolicy Never.*no controller recreates" \
    "restartPolicy OnFailure \(Worker\): kubelet restarts the container in place" \
    "runPolicy.schedulingPolicy: ignored, as by an operator started without --gang-scheduler-name"; do
    t_grep "runPolicy note: ${want%%:*}" "^baton k8s render: PyTorchJob 'rpol': $want" "$T_TMP/rpol.err"
done
t_expect_eq "activeDeadlineSeconds set on every pod" "$(for p in rpol-master-0 rpol-worker-0 rpol-worker-1; do
    pget "$T_TMP/rpol.out" Pod $p "o['spec']['activeDeadlineSeconds']"; done | xargs)" "600 600 600"
t_expect_eq "schedulingPolicy alone adds no scheduler fields" "$(pget "$T_TMP/rpol.out" Pod rpol-worker-0 \
    "(o['spec'].get('schedulerName'), o['metadata'].get('annotations'))")" "(None, None)"
sed 's/^          containers:/          activeDeadlineSeconds: 300\n          containers:/' "$T_TMP/rpol.yaml" >"$T_TMP/rpol2.yaml"
"$BATON" k8s render "$T_TMP/rpol2.yaml" 2>/dev/null >"$T_TMP/rpol2.out"
t_expect_eq "a template's smaller activeDeadlineSeconds is kept" \
    "$(pget "$T_TMP/rpol2.out" Pod rpol-worker-1 "o['spec']['activeDeadlineSeconds']")" 300
"$BATON" k8s render "$T_TMP/pt.yaml" >/dev/null 2>"$T_TMP/pt.err"
t_expect_eq "restartPolicy notes name the replica types (default OnFailure counts)" "$(cut -d: -f3 "$T_TMP/pt.err" | xargs)" \
    "restartPolicy ExitCode (Master) restartPolicy OnFailure (Worker)"
"$BATON" k8s render "$T_TMP/rp.yaml" >/dev/null 2>"$T_TMP/rp.err"
t_grep "restartPolicy Always noted" "restartPolicy Always \(Chief\): kubelet restarts" "$T_TMP/rp.err"
t_expect_eq "restartPolicy Never: nothing to note" "$(grep -c 'Never (' "$T_TMP/rp.err")" 0
rm -f "$T_TMP/kubectl.args"
PATH=$T_TMP:$PATH "$BATON" k8s apply "$T_TMP/rpol.yaml" >/dev/null 2>"$T_TMP/apply.err"
t_expect_eq "apply: the same notes, prefixed 'baton k8s apply:'" \
    "$(grep -c "^baton k8s apply: PyTorchJob 'rpol': " "$T_TMP/apply.err") $(cat "$T_TMP/kubectl.args")" "7 apply -f -"
if [ -d "$SCHEMAS" ]; then
    $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$T_TMP/rpol.out" >"$T_TMP/v.log" 2>&1
    t_expect_eq "pods with activeDeadlineSeconds validate" "$? $(grep -c '^ok' "$T_TMP/v.log")" "0 7"
fi
EXTRA_SPEC='  runPolicy: {suspend: true}
' job sus PyTorchJob "$(rs Master 1 pytorch)"
rc=0; "$BATON" k8s render "$T_TMP/sus.yaml" >"$T_TMP/sus.out" 2>"$T_TMP/sus.err" || rc=$?
t_expect_eq "suspend: render writes nothing, exits 0, says why" \
    "$rc $(wc -c <"$T_TMP/sus.out") $(grep -c 'runPolicy.suspend true: honoured' "$T_TMP/sus.err")" "0 0 1"
rm -f "$T_TMP/kubectl.args"
rc=0; PATH=$T_TMP:$PATH "$BATON" k8s apply "$T_TMP/sus.yaml" >/dev/null 2>&1 || rc=$?
t_expect_eq "suspend: apply runs no kubectl" "$rc $([ -e "$T_TMP/kubectl.args" ] && echo ran)" "0 "
for bad in "backoffLimit: -1" "activeDeadlineSeconds: 0" "cleanPodPolicy: Sometimes" "suspend: maybe"; do
    EXTRA_SPEC="  runPolicy: {$bad}
" job badrp PyTorchJob "$(rs Master 1 pytorch)"
    reject "runPolicy $bad" "PyTorchJob 'badrp': runPolicy.${bad%%:*} '" "$T_TMP/badrp.yaml"
done

# ---- gang scheduling: --gang-scheduler as the operator's --gang-scheduler-name
G=$K8S/gang
"$BATON" k8s render --gang-scheduler volcano "$G/pytorchjob-mnist-volcano.yaml" >"$T_TMP/vol.out" 2>"$T_TMP/vol.err"
t_expect_eq "volcano: the PodGroup first, as the operator makes it" "$(pget "$T_TMP/vol.out" PodGroup mnist-volcano \
    "(o['apiVersion'], o['metadata']['namespace'], o['spec'])")" \
    "('scheduling.volcano.sh/v1beta1', 'default', {'minMember': 4, 'queue': 'mnist', 'priorityClassName': 'mnist-training'})"
t_expect_eq "volcano: each pod's schedulerName and group annotations" "$(pget "$T_TMP/vol.out" Pod mnist-volcano-worker-2 \
    "(o['spec']['schedulerName'], o['metadata']['annotations'])")" \
    "('volcano', {'scheduling.k8s.io/group-name': 'mnist-volcano', 'volcano.sh/task-spec': 'worker'})"
t_expect_eq "volcano: task-spec is the replica type" "$(pget "$T_TMP/vol.out" Pod mnist-volcano-master-0 \
    "o['metadata']['annotations']['volcano.sh/task-spec']")" master
t_grep "volcano: minResources noted" "PodGroup mnist-volcano: rendered for --gang-scheduler volcano with minMember 4 and no minResources" "$T_TMP/vol.err"
"$BATON" k8s render --gang-scheduler scheduler-plugins-scheduler "$G/pytorchjob-mnist-coscheduling.yaml" \
    >"$T_TMP/cos.out" 2>/dev/null
t_expect_eq "scheduler-plugins: PodGroup minMember and scheduleTimeoutSeconds" "$(pget "$T_TMP/cos.out" PodGroup mnist-coscheduling \
    "(o['apiVersion'], o['spec'])")" "('scheduling.x-k8s.io/v1alpha1', {'minMember': 4, 'scheduleTimeoutSeconds': 300})"
t_expect_eq "scheduler-plugins: the pod-group label and schedulerName" "$(pget "$T_TMP/cos.out" Pod mnist-coscheduling-worker-0 \
    "(o['spec']['schedulerName'], o['metadata']['labels']['scheduling.x-k8s.io/pod-group'])")" \
    "('scheduler-plugins-scheduler', 'mnist-coscheduling')"
"$BATON" k8s render "$G/pytorchjob-mnist-coscheduling.yaml" >"$T_TMP/cos0.out" 2>/dev/null
t_expect_eq "coscheduling without --gang-scheduler: the template's label and scheduler kept, no PodGroup" \
    "$(grep -c '^kind: PodGroup' "$T_TMP/cos0.out") $(pget "$T_TMP/cos0.out" Pod mnist-coscheduling-master-0 \
    "(o['spec']['schedulerName'], o['metadata']['labels']['scheduling.x-k8s.io/pod-group'])")" \
    "0 ('scheduler-plugins-scheduler', 'mnist-coscheduling')"
"$BATON" k8s render --gang-scheduler volcano "$T_TMP/pt.yaml" >"$T_TMP/ptv.out" 2>/dev/null
t_expect_eq "no schedulingPolicy: minMember = every replica, queue default" "$(pget "$T_TMP/ptv.out" PodGroup pt \
    "o['spec']")" "{'minMember': 3, 'queue': 'default'}"
"$BATON" k8s render "$G/pytorchjob-mnist-kueue.yaml" >"$T_TMP/kue.out" 2>"$T_TMP/kue.err"
t_expect_eq "kueue: queue label, pod group name and total count on each pod" "$(pget "$T_TMP/kue.out" Pod mnist-kueue-worker-1 \
    "(o['metadata']['labels']['kueue.x-k8s.io/queue-name'], o['metadata']['labels']['kueue.x-k8s.io/pod-group-name'], o['metadata']['annotations'])")" \
    "('mnist', 'mnist-kueue', {'kueue.x-k8s.io/pod-group-total-count': '4'})"
t_grep "kueue: noted" "label kueue.x-k8s.io/queue-name=mnist: put on each Pod" "$T_TMP/kue.err"
if [ -d "$SCHEMAS" ]; then
    "$BATON" k8s render --gang-scheduler scheduler-plugins-scheduler "$G/pytorchjob-mnist-volcano.yaml" \
        >"$T_TMP/vol2.out" 2>/dev/null
    $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$T_TMP/vol.out" "$T_TMP/vol2.out" "$T_TMP/cos.out" \
        "$T_TMP/kue.out" >"$T_TMP/v.log" 2>&1
    t_expect_eq "rendered PodGroups and gang/Kueue pods validate" "$? $(grep -c '^ok .*PodGroup' "$T_TMP/v.log")" "0 3"
fi
# 200 KB of nested `[` (libyaml's scanner is quadratic in the depth: this took 26 s) is refused
# at the first level past 64, in one line naming the file; `timeout` bounds a regression.
$PY -c "print('a: ' + '[' * 200000)" >"$T_TMP/deep.yaml"
t0=$EPOCHREALTIME
timeout 10 "$BATON" k8s render "$T_TMP/deep.yaml" >"$T_TMP/deep.out" 2>"$T_TMP/deep.err"
rc=$?
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "# deep nesting: render took %.3f s\n", b - a }'
t_expect_eq "200 KB of nested [ is refused (exit 2), not parsed for seconds" "$rc" 2
t_grep "deep nesting: one line naming the file and the depth" \
    "^baton k8s render: .*/deep\.yaml:1: YAML nested deeper than 64 levels$" "$T_TMP/deep.err"
t_done
