#!/usr/bin/env bash
# t_k8s_local_ddp.sh: a stock PyTorch DDP script (tests/progs/ddp_allreduce.py: gloo,
# init_method="env://") runs as a 3-pod PyTorchJob (`baton run` the entrypoint) under
# `baton k8s local --netns` with no extra env: no GLOO_SOCKET_IFNAME, so gloo finds its address
# from the pod's own host name. Rank 0 saves the model to --checkpoint-dir /ckpt/run1, an
# emptyDir mounted at /ckpt with subPath ddp-a; the test finds it in the master pod's directory
# and loads it. Then worker-1's rank exits 3 and the summary names worker-1 and its status.
# Last, the same script as a Trainer v2 TrainJob of 3 nodes, its checkpoint in an emptyDir subPath.
# Needs root, `ip netns` and /usr/bin/python3 with torch (gloo); skipped with the reason otherwise.
# timeout: 300
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    t_skip "DDP under baton k8s local --netns" "needs root and iproute2"; t_done; fi
if ! ip netns add "btprobe$$" 2>"$T_TMP/probe.err"; then
    t_skip "DDP under baton k8s local --netns" "ip netns add failed: $(head -1 "$T_TMP/probe.err")"; t_done; fi
ip netns del "btprobe$$"
if ! [ -x "$PY" ] || ! timeout 120 "$PY" -c 'import torch, torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null; then
    t_skip "DDP under baton k8s local --netns" "$PY cannot import torch with gloo (make deps installs python3-torch)"
    t_done
fi

# job NAME: $T_TMP/NAME.yaml, 1 master + 2 workers running the DDP script, an emptyDir at /ckpt.
job() {
    printf 'apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata:\n  name: %s\nspec:\n  pytorchReplicaSpecs:\n' "$1" >"$T_TMP/$1.yaml"
    for rt in Master:1 Worker:2; do
        cat >>"$T_TMP/$1.yaml" <<YAML
    ${rt%:*}:
      replicas: ${rt#*:}
      restartPolicy: Never
      template:
        spec:
          containers:
            - name: pytorch
              image: baton:latest
              command: [baton, run, --, $PY, $BATON_SRC/tests/progs/ddp_allreduce.py]
              args: [--checkpoint-dir, /ckpt/run1]
              volumeMounts:
                - {name: ckpt, mountPath: /ckpt, subPath: ddp-a}
          volumes:
            - {name: ckpt, emptyDir: {}}
YAML
    done
}
# no_leftovers NAME: nothing of the run in NAME.log is left (namespaces, bridge, /etc/netns).
no_leftovers() {
    local id left
    id=$(grep -oE 'namespace bt-[0-9]+-' "$T_TMP/$1.log" | head -1 | grep -oE '[0-9]+')
    if [ -z "$id" ]; then t_fail "$1: no leftovers" "no namespace named in $1.log"; return; fi
    left=$( (ip netns list; ip -o link; ls /etc/netns 2>/dev/null) | grep -E "bt-$id-|br-bt$id" )
    if [ -z "$left" ]; then t_ok "$1: no namespace, bridge or /etc/netns dir left"; else
        t_fail "$1: no leftovers" "$left"; fi
}
# run_local NAME ARGS...: baton k8s local --netns, waited for (bounded); its status in $RC.
run_local() {
    local name=$1; shift
    t_bg "$BATON" k8s local --netns --timeout 150 --workdir "$T_TMP/w-$name" "$@" \
        "$T_TMP/$name.yaml" >"$T_TMP/$name.log" 2>&1
    t_wait "$T_LAST_PID" 180 >/dev/null
    RC=$T_RC
}

job ddp
run_local ddp
t_expect_eq "DDP PyTorchJob (3 pods, gloo, env://, no extra env) under --netns: exit status" "$RC" 0
[ "$RC" = 0 ] || tail -30 "$T_TMP/ddp.log"
for p in master-0:0 worker-0:1 worker-1:2; do
    t_grep "ddp-${p%:*}: rank ${p#*:} allreduced and stepped" "^\[ddp-${p%:*}\] \[${p#*:}\] ddp rank ${p#*:} of 3: allreduce sum ok, DDP step ok" "$T_TMP/ddp.log"
done
CK=$T_TMP/w-ddp/ddp-master-0/ckpt/ddp-a/run1/model.pt
t_grep "the volume of each pod is shown" "ddp-worker-1 +/ckpt is $T_TMP/w-ddp/ddp-worker-1/ckpt/ddp-a\$" "$T_TMP/ddp.log"
t_check "rank 0's checkpoint is in the master pod's emptyDir subPath ($CK)" test -s "$CK"
t_check "the checkpoint loads: weight (2, 8), bias (2)" "$PY" -c \
    "import sys, torch; d = torch.load(sys.argv[1]); assert tuple(d['weight'].shape) == (2, 8) and tuple(d['bias'].shape) == (2,), d" "$CK"
t_check "each worker pod has its own empty volume dir" \
    test -d "$T_TMP/w-ddp/ddp-worker-0/ckpt/ddp-a" -a ! -e "$T_TMP/w-ddp/ddp-worker-0/ckpt/ddp-a/run1/model.pt"
no_leftovers ddp

# worker-1's rank (rank 2) exits 3; the others fail in their allreduce and stop.
job ddpf
run_local ddpf --add-args "--exit-rank 2 --exit-code 3"
t_expect_eq "DDP, rank 2 exits 3: the job's status is 3" "$RC" 3
t_grep "the summary names worker-1, its status and baton run's report (host = pod name)" \
    'job ddpf failed: pod ddpf-worker-1 exited with status 3; baton run.s report: rank 2 \(node 2, host ddpf-worker-1, ' "$T_TMP/ddpf.log"
no_leftovers ddpf

# ---- the same script as a Kubeflow Trainer v2 TrainJob (3 nodes) on a TrainingRuntime whose
# node container mounts an emptyDir at /ckpt (subPath ddp-t) ----
cat >"$T_TMP/tjddp.yaml" <<YAML
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainingRuntime
metadata: {name: ddp-rt}
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
                    - name: node
                      image: baton:latest
                      volumeMounts:
                        - {name: ckpt, mountPath: /ckpt, subPath: ddp-t}
                  volumes:
                    - {name: ckpt, emptyDir: {}}
---
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata: {name: tjddp}
spec:
  runtimeRef: {name: ddp-rt, kind: TrainingRuntime}
  trainer:
    numNodes: 3
    command: [baton, run, --, $PY, $BATON_SRC/tests/progs/ddp_allreduce.py]
    args: [--checkpoint-dir, /ckpt/run1]
YAML
run_local tjddp
t_expect_eq "DDP TrainJob (3 nodes, gloo, env://, no extra env) under --netns: exit status" "$RC" 0
[ "$RC" = 0 ] || tail -30 "$T_TMP/tjddp.log"
for r in 0 1 2; do
    t_grep "tjddp-node-0-$r: rank $r allreduced and stepped" "^\[tjddp-node-0-$r\] \[$r\] ddp rank $r of 3: allreduce sum ok, DDP step ok" "$T_TMP/tjddp.log"
done
CK=$T_TMP/w-tjddp/tjddp-node-0-0/ckpt/ddp-t/run1/model.pt
t_check "TrainJob: rank 0's checkpoint is in node 0's emptyDir subPath ($CK)" test -s "$CK"
no_leftovers tjddp
t_done
