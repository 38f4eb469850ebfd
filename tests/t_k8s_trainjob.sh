#!/usr/bin/env bash
# t_k8s_trainjob.sh: Kubeflow Trainer v2 (TrainJob on JobSet) in `baton k8s render|local`.
#
# Render: the shipped TrainJobs (runtime in the same file, and through --runtime) give the
# JobSet, the headless Service, the Job and one Pod per node, with the names, labels and env
# the Trainer and JobSet controllers write (kubeflow/trainer @ 8c0f5059bd51 torch.go,
# jobset @ 08dfbdfd682 jobset_controller.go); every rendered object validates against the
# JobSet CRD and the strict core schemas. Bad input: one line naming the document and field,
# exit 2, nothing written. Local: a TrainJob whose pods check the env they got (PET_NODE_RANK
# = the completion index, HOSTNAME, PET_MASTER_ADDR) and then form the job with `baton run`;
# a failing pod fails the job with its status; with --netns (root) the shipped trainjob-mnist
# trains a short run across 4 namespaces by the pods' DNS names <job>-node-0-<i>.<job>.
# timeout: 300
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
SCHEMAS=$BATON_SRC/../shared/k8s-schemas
K8S=$BATON_SRC/k8s
HAVE_YAML=1
$PY -c 'import yaml, jsonschema' 2>/dev/null || HAVE_YAML=0

# q FILE EXPR: a Python expression over docs (the rendered objects) and pods (the Pods).
q() {
    $PY - "$@" <<'EOF'
import sys, yaml
alls = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
docs = [d for d in alls if d["kind"] != "Secret"] # the job's Secret: secrets
secrets = [d for d in alls if d["kind"] == "Secret"]
pods = [d for d in docs if d["kind"] == "Pod"]
def env(p, c="node", token=False): # BATON_TOKEN (from the job's Secret) only with token=True
    for x in p["spec"]["containers"]:
        if x["name"] == c:
            return {e["name"]: e.get("value", e.get("valueFrom")) for e in x.get("env", [])
                    if token or e["name"] != "BATON_TOKEN"}
print(eval(sys.argv[2]))
EOF
}

# ---- render the shipped TrainJobs ----
R=$T_TMP/mnist.yaml
"$BATON" k8s render "$K8S/trainjob-mnist.yaml" --runtime "$K8S/clustertrainingruntime-baton.yaml" >"$R"
t_expect_eq "render trainjob-mnist.yaml --runtime: exit 0" "$?" 0
if [ $HAVE_YAML = 0 ]; then
    t_skip "rendered objects" "no python3-yaml (make deps)"
    t_done
fi
t_expect_eq "objects: JobSet, Service, Job, 4 Pods" "$(q "$R" '[d["kind"] for d in docs]')" \
    "['JobSet', 'Service', 'Job', 'Pod', 'Pod', 'Pod', 'Pod']"
t_expect_eq "JobSet and Service named after the TrainJob" \
    "$(q "$R" 'docs[0]["metadata"]["name"] + " " + docs[1]["metadata"]["name"]')" "mnist mnist"
t_expect_eq "Service: headless, selects the JobSet's pods, publishes not-ready addresses" \
    "$(q "$R" 'docs[1]["spec"]')" \
    "{'clusterIP': 'None', 'selector': {'jobset.sigs.k8s.io/jobset-name': 'mnist'}, 'publishNotReadyAddresses': True}"
t_expect_eq "Job <job>-node-0, parallelism = completions = numNodes, Indexed" \
    "$(q "$R" '(docs[2]["metadata"]["name"], docs[2]["spec"]["parallelism"], docs[2]["spec"]["completions"], docs[2]["spec"]["completionMode"])')" \
    "('mnist-node-0', 4, 4, 'Indexed')"
t_expect_eq "Pods: generateName <job>-node-0-<i>-, hostname <job>-node-0-<i>, subdomain <job>" \
    "$(q "$R" '[(p["metadata"]["generateName"], p["spec"]["hostname"], p["spec"]["subdomain"]) for p in pods][3]')" \
    "('mnist-node-0-3-', 'mnist-node-0-3', 'mnist')"
t_expect_eq "Pod labels: jobset name, replicated job, job index, completion index" \
    "$(q "$R" '[(l["jobset.sigs.k8s.io/jobset-name"], l["jobset.sigs.k8s.io/replicatedjob-name"], l["jobset.sigs.k8s.io/job-index"], l["batch.kubernetes.io/job-completion-index"], l["job-name"]) for l in [pods[2]["metadata"]["labels"]]][0]')" \
    "('mnist', 'node', '0', '2', 'mnist-node-0')"
JK=$(printf 'default/mnist-node-0' | sha1sum | cut -c1-40)
t_expect_eq "job-key label = sha1(<ns>/<job>)" "$(q "$R" 'pods[0]["metadata"]["labels"]["jobset.sigs.k8s.io/job-key"]')" "$JK"
t_expect_eq "PET_* env as the torch plugin writes it" \
    "$(q "$R" '" ".join("%s=%s" % (k, v if isinstance(v, str) else v["fieldRef"]["fieldPath"]) for k, v in env(pods[1]).items())')" \
    "PET_NNODES=4 PET_NPROC_PER_NODE=1 PET_NODE_RANK=metadata.annotations['batch.kubernetes.io/job-completion-index'] PET_MASTER_ADDR=mnist-node-0-0.mnist PET_MASTER_PORT=29500 JOB_COMPLETION_INDEX=metadata.labels['batch.kubernetes.io/job-completion-index']"
t_expect_eq "container port 29500 on node" "$(q "$R" 'pods[0]["spec"]["containers"][0]["ports"]')" \
    "[{'containerPort': 29500}]"
t_expect_eq "command from the runtime, args from the TrainJob" \
    "$(q "$R" '" ".join(pods[0]["spec"]["containers"][0]["command"] + pods[0]["spec"]["containers"][0]["args"][:1])')" \
    "baton run --max-restarts 2 -- mnist_cnn"

G=$T_TMP/gpu.yaml
"$BATON" k8s render "$K8S/trainjob-gpu-mnist.yaml" >"$G"
t_expect_eq "render trainjob-gpu-mnist.yaml (runtime in the same file): exit 0" "$?" 0
t_expect_eq "GPU runtime: PET_NPROC_PER_NODE=auto, 2 pods" \
    "$(q "$G" '(env(pods[0])["PET_NPROC_PER_NODE"], len(pods))')" "('auto', 2)"
"$BATON" k8s render - <"$K8S/trainjob-gpu-mnist.yaml" | grep -v '^  token: ' |
    cmp -s - <(grep -v '^  token: ' "$G")
t_expect_eq "stdin renders the same (but for the job's random secret)" "$?" 0
t_expect_eq "the job's Secret: <job>-baton-token, Opaque, a 32-byte random token" \
    "$(q "$R" '[(s["metadata"]["name"], s["type"], len(__import__("base64").b64decode(__import__("base64").b64decode(s["data"]["token"])))) for s in secrets]')" \
    "[('mnist-baton-token', 'Opaque', 32)]"
t_expect_eq "every pod reads BATON_TOKEN from it" \
    "$(q "$R" 'sorted(set(str(env(p, token=True)["BATON_TOKEN"]) for p in pods))')" \
    "[\"{'secretKeyRef': {'name': 'mnist-baton-token', 'key': 'token'}}\"]"

if [ -d "$SCHEMAS" ]; then
    $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$R" "$G" >"$T_TMP/v.log" 2>&1
    t_expect_eq "every rendered object validates (JobSet CRD, strict core schemas)" "$?:$(grep -c '^ok' "$T_TMP/v.log")" "0:14"
    sed 's/^  runtimeRef:/  runtimeReff:/' "$K8S/trainjob-mnist.yaml" >"$T_TMP/typo.yaml"
    if ! $PY "$BATON_SRC/tests/k8s_validate.py" "$SCHEMAS" "$T_TMP/typo.yaml" >"$T_TMP/v.log" 2>&1 &&
        grep -q runtimeReff "$T_TMP/v.log"; then
        t_ok "validator rejects an unknown TrainJob field (strict)"
    else t_fail "validator rejects an unknown TrainJob field" "$(cat "$T_TMP/v.log")"; fi
else
    t_skip "rendered objects validate" "no $SCHEMAS"
fi

# ---- bad input: exit 2, one line naming the document and the field ----
# bad NAME SED_ON_GPU_FILE WANT: edits trainjob-gpu-mnist.yaml, expects WANT in the one line.
bad() {
    sed "$2" "$K8S/trainjob-gpu-mnist.yaml" >"$T_TMP/$1.yaml"
    local rc=0
    "$BATON" k8s render "$T_TMP/$1.yaml" >"$T_TMP/$1.out" 2>"$T_TMP/$1.err" || rc=$?
    if [ $rc = 2 ] && [ ! -s "$T_TMP/$1.out" ] && [ "$(wc -l <"$T_TMP/$1.err")" = 1 ] &&
        grep -qF -- "$3" "$T_TMP/$1.err"; then
        t_ok "bad input: $1"
    else t_fail "bad input: $1" "rc=$rc $(cat "$T_TMP/$1.err")"; fi
}
bad runtime-missing '/^kind: TrainingRuntime/,/^---/d' \
    "TrainJob 'mnist-gpu': spec.runtimeRef: TrainingRuntime 'baton-torch-gpu' is not in"
bad runtime-kind 's/^    kind: TrainingRuntime$/    kind: ClusterTrainingRuntime/' \
    "there is a TrainingRuntime of that name (check runtimeRef.kind)"
bad runtime-name 's/^    name: baton-torch-gpu$/    name: other/' "TrainingRuntime 'other' is not in"
bad framework 's/^    torch: {}$/    jax: {}/' \
    "TrainingRuntime 'baton-torch-gpu': spec.mlPolicy.jax: baton k8s renders torch runtimes only"
bad mpi 's/^    torch: {}$/    mpi: {}/' "spec.mlPolicy.mpi: baton k8s renders torch runtimes only"
bad numnodes-0 's/^    numNodes: 2$/    numNodes: 0/' \
    "TrainJob 'mnist-gpu': spec.trainer.numNodes is 0; a TrainJob needs 1 to"
bad numnodes-negative 's/^    numNodes: 2$/    numNodes: -1/' "spec.trainer.numNodes is -1"
bad jobset-field 's/^      replicatedJobs:$/      coordinator: {replicatedJob: node}\n      replicatedJobs:/' \
    "TrainingRuntime 'baton-torch-gpu': spec.template.spec.coordinator: a JobSet field baton k8s does not support"
bad jobset-subdomain 's/^      replicatedJobs:$/      network: {subdomain: x}\n      replicatedJobs:/' \
    "spec.template.spec.network.subdomain: a JobSet field baton k8s does not support"
rc=0; "$BATON" k8s render "$K8S/trainjob-mnist.yaml" >/dev/null 2>"$T_TMP/err" || rc=$?
t_expect_eq "TrainJob without its runtime: exit 2, names --runtime" "$rc:$(grep -c -- '--runtime FILE' "$T_TMP/err")" "2:1"
rc=0; "$BATON" k8s apply "$K8S/trainjob-gpu-mnist.yaml" >/dev/null 2>"$T_TMP/err" || rc=$?
t_expect_eq "apply of a TrainJob: exit 2 (kubectl applies it where the Trainer runs)" "$rc:$(grep -c 'kubectl apply -f' "$T_TMP/err")" "2:1"
rc=0; "$BATON" k8s render --gang-scheduler volcano "$K8S/trainjob-gpu-mnist.yaml" >/dev/null \
    2>"$T_TMP/err" || rc=$?
t_expect_eq "render of a TrainJob with --gang-scheduler: exit 2, one line" \
    "$rc:$(wc -l <"$T_TMP/err"):$(grep -c 'podGroupPolicy' "$T_TMP/err")" "2:1:1"
rc=0; "$BATON" k8s render --runtime "$K8S/clustertrainingruntime-baton.yaml" \
    "$K8S/trainjob-mnist.yaml" >/dev/null 2>"$T_TMP/err" || rc=$?
t_expect_eq "render of a TrainJob: no runPolicy notes (a TrainJob has no runPolicy)" \
    "$rc:$(wc -c <"$T_TMP/err")" "0:0"

# ---- baton k8s local, loopback mode ----
# tj NAME NODES COMMAND: a TrainingRuntime + TrainJob file $T_TMP/NAME.yaml.
tj() {
    cat >"$T_TMP/$1.yaml" <<EOF
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainingRuntime
metadata: {name: rt}
spec:
  mlPolicy: {torch: {}}
  template:
    spec:
      replicatedJobs:
        - name: node
          template:
            metadata:
              labels: {trainer.kubeflow.org/trainjob-ancestor-step: trainer}
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers:
                    - {name: node, image: baton:latest}
---
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata: {name: $1}
spec:
  runtimeRef: {name: rt, kind: TrainingRuntime}
  trainer:
    numNodes: $2
    command: $3
EOF
}
# Each pod checks what the controllers gave it, then forms the job with `baton run`.
CHECK='[sh, -c, '"'"'test "$PET_NODE_RANK" = "$JOB_COMPLETION_INDEX" && test "$HOSTNAME" = "tjl-node-0-$PET_NODE_RANK" && test "$PET_NNODES" = 3 && test "$PET_NPROC_PER_NODE" = 1 && echo "env ok: node $PET_NODE_RANK of $PET_NNODES, master $PET_MASTER_ADDR:$PET_MASTER_PORT" && exec baton run -- hello'"'"']'
tj tjl 3 "$CHECK"
rc=0; timeout 90 "$BATON" k8s local --timeout 60 --workdir "$T_TMP/w1" "$T_TMP/tjl.yaml" >"$T_TMP/tjl.log" 2>&1 || rc=$?
t_expect_eq "local: 3-node TrainJob exit status" "$rc" 0
t_check "local: every pod saw its env (PET_NODE_RANK = completion index, HOSTNAME)" \
    test "$(grep -c '^\[tjl-node-0-[0-2]\] env ok: node [0-2] of 3, master 127\.0\.0\.1:[0-9]*$' "$T_TMP/tjl.log")" = 3
t_grep "local: PET_MASTER_ADDR and PET_MASTER_PORT rewritten to node 0's address" 'tjl-node-0-1 +127\.0\.0\.1 port [0-9]+ .*rewrote PET_MASTER_ADDR PET_MASTER_PORT' "$T_TMP/tjl.log"
t_grep "local: baton run formed the job (rank 2 of 3)" '^\[tjl-node-0-2\] \[2\] hello from rank 2 of 3' "$T_TMP/tjl.log"
t_grep "local: success by the JobSet's rule (all nodes)" 'job tjl succeeded' "$T_TMP/tjl.log"

tj tjf 2 '[sh, -c, '"'"'if [ "$PET_NODE_RANK" = 1 ]; then exit 3; fi; exec sleep 30'"'"']'
rc=0; timeout 90 "$BATON" k8s local --timeout 60 --workdir "$T_TMP/w2" "$T_TMP/tjf.yaml" >"$T_TMP/tjf.log" 2>&1 || rc=$?
t_expect_eq "local: a node exiting 3 fails the TrainJob with 3" "$rc" 3
t_grep "local: the report names the pod" 'job tjf failed: pod tjf-node-0-1 exited with status 3' "$T_TMP/tjf.log"

# ---- --netns: the shipped TrainJob, by the pods' DNS names ----
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add "btprobe$$" 2>/dev/null; then
    t_skip "--netns: trainjob-mnist.yaml" "needs root and iproute2 (ip netns)"
    t_done
fi
ip netns del "btprobe$$"
rc=0
timeout 200 "$BATON" k8s local --netns --timeout 150 --workdir "$T_TMP/w3" \
    --runtime "$K8S/clustertrainingruntime-baton.yaml" \
    --add-args "--epochs 1 --max-steps 30 --no-checkpoint --threads 1" \
    "$K8S/trainjob-mnist.yaml" >"$T_TMP/nn.log" 2>&1 || rc=$?
t_expect_eq "netns: trainjob-mnist.yaml exit status" "$rc" 0
t_check "netns: 4 pods in 4 namespaces" test "$(grep -c 'in namespace bt-' "$T_TMP/nn.log")" = 4
t_grep "netns: MNIST trained to the end on 4 ranks" '^\[mnist-node-0-0\] \[0\] final: test_acc=' "$T_TMP/nn.log"
t_grep "netns: the trainer ran on 4 ranks" 'mnist_cnn: 4 ranks' "$T_TMP/nn.log"
t_grep "netns: success by the JobSet's rule" 'job mnist succeeded' "$T_TMP/nn.log"
t_done
