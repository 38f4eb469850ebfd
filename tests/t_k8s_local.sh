#!/usr/bin/env bash
# t_k8s_local.sh: `baton k8s local`: a job's pods run on this machine with the operator's env.
#
# Loopback mode (no root): a small PyTorchJob of `baton run -- hello` pods, and a failing one;
# emptyDir volumes (subPath, subPathExpr, nested mounts, paths below a mountPath, --opt=PATH);
# the root cause named when worker-1's rank fails but another pod exits first.
# --netns (root and `ip netns`, else skipped visibly): the shipped PyTorchJob trains MNIST
# across 4 namespaces (a short run); a TFJob with chief, workers and ps (mnist --mode ps when the
# trainer has it, else hello with a ps pod that never exits); a worker started before the
# master's name resolves still joins (forced order, and getent inside the namespace shows the
# name appear); each pod's host name is its pod name and resolves to its own address; SIGKILL
# of one pod's process fails the job naming that pod; SIGTERM to
# `baton k8s local` stops everything. After each run no namespace, bridge or /etc/netns dir of
# that run is left.
# timeout: 400
source "$(dirname "$0")/lib.sh"
K8S=$BATON_SRC/k8s
EX=$BATON_BUILD/examples

# job NAME KIND MASTER_TYPE MASTER_CMD WORKERS WORKER_CMD [PS_CMD]: a job file $T_TMP/NAME.yaml.
job() {
    local key=pytorchReplicaSpecs c=pytorch
    [ "$2" = TFJob ] && key=tfReplicaSpecs c=tensorflow
    {
        printf 'apiVersion: kubeflow.org/v1\nkind: %s\nmetadata:\n  name: %s\nspec:\n  %s:\n' "$2" "$1" "$key"
        rs "$3" 1 "$c" "$4"
        rs Worker "$5" "$c" "$6"
        [ -n "${7:-}" ] && rs PS 1 "$c" "$7"
    } >"$T_TMP/$1.yaml"
}
rs() {
    printf '    %s:\n      replicas: %s\n      restartPolicy: Never\n      template:\n        spec:\n' "$1" "$2"
    printf '          containers:\n            - name: %s\n              image: baton:latest\n' "$3"
    printf '              command: %s\n' "$4"
}
# run_local NAME TIMEOUT ARGS...: baton k8s local in the background, output in $T_TMP/NAME.log.
run_local() {
    local name=$1 limit=$2; shift 2
    t_bg "$BATON" k8s local --timeout "$limit" --workdir "$T_TMP/w-$name" "$@" >"$T_TMP/$name.log" 2>&1
    LOCAL_PID=$T_LAST_PID
}
# wait_local LIMIT: waits for the run_local in the background; its exit status in $RC (124 on
# timeout). In this shell, not in $(...), so that wait can reap it.
wait_local() { t_wait "$LOCAL_PID" "$1" >"$T_TMP/rc"; RC=$(cat "$T_TMP/rc"); }
# no_leftovers NAME: nothing of the run in NAME.log is left (namespaces, bridge, /etc/netns).
no_leftovers() {
    local id
    id=$(grep -oE 'namespace bt-[0-9]+-' "$T_TMP/$1.log" | head -1 | grep -oE '[0-9]+')
    if [ -z "$id" ]; then t_fail "$1: no leftovers" "no namespace named in $1.log"; return; fi
    local left
    left=$( (ip netns list; ip -o link; ls /etc/netns 2>/dev/null) | grep -E "bt-$id-|br-bt$id" )
    if [ -z "$left" ]; then t_ok "$1: no namespace, bridge or /etc/netns dir left"; else
        t_fail "$1: no leftovers" "$left"; fi
}
HELLO='[baton, run, --, hello]'

# ---- loopback mode ----
job lo PyTorchJob Master "$HELLO" 2 "$HELLO"
run_local lo 60 "$T_TMP/lo.yaml"
wait_local 90
t_expect_eq "loopback: 3-pod PyTorchJob exit status" "$RC" 0
t_grep "loopback: the env rewrite is shown" 'lo-worker-1 +127\.0\.0\.1 port [0-9]+ .*rewrote.*MASTER_ADDR' "$T_TMP/lo.log"
t_grep "loopback: every pod joined (rank 2 of 3)" '^\[lo-worker-1\] \[2\] hello from rank 2 of 3' "$T_TMP/lo.log"
t_grep "loopback: success by the Master" 'job lo succeeded' "$T_TMP/lo.log"
t_check "loopback: the pods share the run's secret (no WARN about a derived token)" \
    bash -c "! grep -q 'has no secret' '$T_TMP/lo.log'"
t_expect_eq "loopback: the run's secret reached every pod (BATON_TOKEN in its env)" \
    "$(grep -c 'lo-[a-z]*-[0-9] .*valueFrom: not set' "$T_TMP/lo.log")" 0

job lofail PyTorchJob Master "$HELLO" 1 '[sh, -c, "exit 3"]'
run_local lofail 60 "$T_TMP/lofail.yaml"
wait_local 90
t_expect_eq "loopback: a worker exiting 3 fails the job with 3" "$RC" 3
t_grep "loopback: the report names the pod" 'job lofail failed: pod lofail-worker-0 exited with status 3' "$T_TMP/lofail.log"

# worker-1's rank 4 exits 3 once its other rank ignores SIGTERM, so worker-1's `baton run` ends
# 3 s later (--grace 3). The other nodes' `baton run` wait for its failure records (every node's
# summary names the same root cause), so which pod ends first would be a race: worker-1's pod
# (RANK 2) waits, after its `baton run`, until baton k8s local has seen another pod exit. The
# root cause is still worker-1.
cat >"$T_TMP/rc.sh" <<EOS
if [ \$BATON_NODE_RANK = 2 ]; then
    if [ \$BATON_LOCAL_RANK = 0 ]; then until [ -e $T_TMP/rc.trap ]; do sleep 0.1; done; exit 3; fi
    trap '' TERM; echo > $T_TMP/rc.trap
fi
exec sleep 60
EOS
RC4="[sh, -c, \"baton run -n 2 --grace 3 -- sh $T_TMP/rc.sh; rc=\$?; if [ \$RANK = 2 ]; then for i in \$(seq 300); do grep -q ' exited with status' $T_TMP/rc.log && break; sleep 0.1; done; fi; exit \$rc\"]"
job rc PyTorchJob Master "$RC4" 2 "$RC4"
run_local rc 60 "$T_TMP/rc.yaml"
wait_local 90
t_expect_eq "loopback: worker-1's rank exits 3: the job's status is 3" "$RC" 3
t_grep "loopback: another pod exited first (the old culprit)" '^baton k8s local: +[0-9.]+ s  rc-(master|worker)-0 exited with status 3$' <(grep -m1 ' exited with status' "$T_TMP/rc.log")
t_grep "loopback: the summary names worker-1 (the root cause), its status and baton run's report" \
    'job rc failed: pod rc-worker-1 exited with status 3; baton run.s report: rank 4 \(node 2, host [^,]*, pid [0-9]+\) exited with code 3.*; the first pod to fail was rc-(master|worker)-0 \(status 3\)$' "$T_TMP/rc.log"

# Worker-1's shell exits 3 once every node's worker runs, its `baton run` living on: no pod
# reports a failure until baton k8s local's SIGTERM (10 s later), and the "job failed: baton on
# node N ... received SIGTERM" reports then printed do not count: worker-1 is named.
FRZ="[sh, -c, \"if [ \$RANK = 2 ]; then baton run -- sh -c 'echo > $T_TMP/frz.up; exec sleep 60' & until [ -e $T_TMP/frz.up ]; do sleep 0.1; done; exit 3; fi; exec baton run -- sleep 60\"]"
job frz PyTorchJob Master '[baton, run, --, sleep, "60"]' 2 "$FRZ"
run_local frz 60 "$T_TMP/frz.yaml"
wait_local 90
t_expect_eq "loopback: a pod's shell exits 3 with no report: the job's status is 3" "$RC" 3
t_grep "loopback: the pods' baton run reported the SIGTERM they got" '^\[frz-master-0\] baton: job failed: baton on node [0-9] .*received SIGTERM' "$T_TMP/frz.log"
t_grep "loopback: those reports do not count: worker-1 is named, alone" 'job frz failed: pod frz-worker-1 exited with status 3$' "$T_TMP/frz.log"

# Volumes: an emptyDir with subPathExpr, a persistentVolumeClaim (a per-pod dir all the same)
# with a nested mount and a subPath; each pod writes below a mountPath; an --opt=PATH argument
# and an env value are mapped too.
VOLCMD='[sh, -c, "echo host $$(hostname); mkdir $1 && echo saved > $1/model.txt && echo opt $2 && test -d $3 && test -d $CACHE && echo vol ok", sh, /ckpt/run1, --out=/ckpt/run1/x.pt, /data, /data/cache/f]'
{
    printf 'apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata:\n  name: vol\nspec:\n  pytorchReplicaSpecs:\n'
    for rt in Master Worker; do
        printf '    %s:\n      replicas: 1\n      restartPolicy: Never\n      template:\n        spec:\n' $rt
        printf '          containers:\n            - name: pytorch\n              image: baton:latest\n'
        printf '              command: %s\n              env: [{name: CACHE, value: /data/cache}]\n' "$VOLCMD"
        printf '              volumeMounts:\n                - {name: ckpt, mountPath: /ckpt, subPathExpr: "n$(PET_NODE_RANK)"}\n'
        printf '                - {name: data, mountPath: /data}\n                - {name: data, mountPath: /data/cache/, subPath: c}\n'
        printf '          volumes: [{name: ckpt, emptyDir: {}}, {name: data, persistentVolumeClaim: {claimName: d}}]\n'
    done
} >"$T_TMP/vol.yaml"
run_local vol 60 "$T_TMP/vol.yaml"
wait_local 90
W=$T_TMP/w-vol
t_expect_eq "loopback: volumes job exit status" "$RC" 0
t_grep "loopback: the volume dirs are shown (subPathExpr from the pod's env)" "vol-worker-0 +/ckpt is $W/vol-worker-0/ckpt/n1\$" "$T_TMP/vol.log"
t_check "loopback: each pod wrote below its own /ckpt (subPathExpr n\$(PET_NODE_RANK))" \
    test -s "$W/vol-master-0/ckpt/n0/run1/model.txt" -a -s "$W/vol-worker-0/ckpt/n1/run1/model.txt"
t_grep "loopback: an --opt=PATH argument is mapped" "^\[vol-master-0\] opt --out=$W/vol-master-0/ckpt/n0/run1/x.pt\$" "$T_TMP/vol.log"
t_grep "loopback: the deepest mount wins (/data/cache, subPath c) in an env value" '^\[vol-worker-0\] vol ok$' "$T_TMP/vol.log"
t_check "loopback: the nested mount's dir is the volume's subPath" test -d "$W/vol-worker-0/data/c"
t_grep "loopback: a pod's host name is this machine's" "^\\[vol-master-0\\] host $(hostname)\$" "$T_TMP/vol.log"
sed 's/subPath: c}/subPath: ..\/c}/' "$T_TMP/vol.yaml" >"$T_TMP/badvol.yaml"
run_local badvol 60 "$T_TMP/badvol.yaml"
wait_local 30
t_check "loopback: a subPath with .. is refused (status 2), no pod started" test "$RC" = 2 -a "$(grep -c ' started ' "$T_TMP/badvol.log")" = 0
t_grep "loopback: the refusal names the pod and the volumeMount" "pod vol-master-0: volumeMount data: subPath '../c' must be a relative path" "$T_TMP/badvol.log"

"$BATON" k8s local --bogus x.yaml >"$T_TMP/bad.log" 2>&1
t_expect_eq "an unknown option is a usage error" "$?" 2

# ---- network namespaces ----
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    t_skip "--netns runs" "needs root and iproute2"; t_done; fi
if ! ip netns add "btprobe$$" 2>"$T_TMP/probe.err"; then
    t_skip "--netns runs" "ip netns add failed: $(head -1 "$T_TMP/probe.err")"; t_done; fi
ip netns del "btprobe$$"

# The shipped PyTorchJob, 1 master + 3 workers, a short run.
SHORT="--epochs 1 --max-steps 30 --no-checkpoint --threads 1"
run_local pt 150 --netns --add-args "$SHORT" "$K8S/pytorchjob-mnist.yaml"
wait_local 180
t_expect_eq "netns: pytorchjob-mnist.yaml exit status" "$RC" 0
t_check "netns: 4 pods in 4 namespaces" test "$(grep -c 'in namespace bt-' "$T_TMP/pt.log")" = 4
t_grep "netns: MNIST trained to the end on 4 ranks" '^\[mnist-master-0\] \[0\] final: test_acc=' "$T_TMP/pt.log"
t_grep "netns: the trainer ran on 4 ranks" 'mnist_cnn: 4 ranks' "$T_TMP/pt.log"
t_grep "netns: success by the Master" 'job mnist succeeded' "$T_TMP/pt.log"
no_leftovers pt

# TFJob with chief, 2 workers, 1 ps.
if "$EX/mnist_cnn" --help 2>&1 | grep -q 'ps is not in this build'; then
    job tf TFJob Chief "$HELLO" 2 "$HELLO" '[sh, -c, "echo ps up; exec sleep 300"]'
    run_local tf 90 --netns "$T_TMP/tf.yaml"
    t_skip "netns: tfjob-mnist-ps.yaml" "mnist_cnn has no --mode ps in this build; a hello TFJob instead"
    TFNAME=tf
else
    run_local tf 150 --netns --add-args "$SHORT" "$K8S/tfjob-mnist-ps.yaml"
    TFNAME=mnist-ps
fi
wait_local 180
t_expect_eq "netns: TFJob (chief, 2 workers, ps) exit status" "$RC" 0
t_grep "netns: TFJob succeeded by the chief" "job $TFNAME succeeded" "$T_TMP/tf.log"
t_grep "netns: the ps pod ended (SIGTERM or by itself)" "$TFNAME-ps-0 exited" "$T_TMP/tf.log"
if [ "$TFNAME" = mnist-ps ]; then
    t_grep "netns: the chief trained MNIST through the parameter server" \
        '^\[mnist-ps-chief-0\] \[0\] final: test_acc=' "$T_TMP/tf.log"
    t_grep "netns: the ps pod served instead of training" '^\[mnist-ps-ps-0\]' "$T_TMP/tf.log"
fi
no_leftovers tf

# A worker that starts 2 s before the master: its name does not resolve, then it does.
LATE='[sh, -c, "getent hosts late-master-0 && exit 9; until getent hosts late-master-0 >/dev/null; do sleep 0.1; done; echo master resolved; exec baton run -- hello"]'
job late PyTorchJob Master "$HELLO" 1 "$LATE"
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=NET run_local late 60 --netns --order late-worker-0,late-master-0 --stagger 2 "$T_TMP/late.yaml"
wait_local 90
t_expect_eq "netns: worker first, master 2 s later: exit status" "$RC" 0
t_grep "netns: the master's name appeared in the running worker's namespace" '^\[late-worker-0\] master resolved' "$T_TMP/late.log"
t_grep "netns: the late worker joined (rank 1 of 2)" '^\[late-worker-0\] \[1\] hello from rank 1 of 2' "$T_TMP/late.log"
no_leftovers late

# Each pod's host name is its pod name (a UTS namespace) and resolves to its own address.
HN='[sh, -c, "echo hostname=$$(hostname); getent hosts $$(hostname)"]'
job hn PyTorchJob Master "$HN" 1 "$HN"
host_before=$(hostname)
run_local hn 60 --netns "$T_TMP/hn.yaml"
wait_local 90
t_expect_eq "netns: hostname job exit status" "$RC" 0
t_grep "netns: the master pod's hostname is its pod name" '^\[hn-master-0\] hostname=hn-master-0$' "$T_TMP/hn.log"
t_grep "netns: the worker pod's hostname resolves to its own address" '^\[hn-worker-0\] 198\.51\.100\.3 +hn-worker-0' "$T_TMP/hn.log"
t_expect_eq "netns: this machine's hostname is unchanged" "$(hostname)" "$host_before"
no_leftovers hn

# SIGKILL one pod's process in the middle of training.
# The trainer's stdout is a pipe (buffered), so its INFO lines on stderr say when all 4 ranks
# are up; the run is 421 steps, long after that.
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=NET run_local kill 150 --netns --add-args "--epochs 1 --no-checkpoint" "$K8S/pytorchjob-mnist.yaml"
for _ in $(seq 1 600); do [ "$(grep -c 'TCP on interface' "$T_TMP/kill.log")" -ge 4 ] && break; sleep 0.1; done
victim=$(sed -n 's/.*started mnist-worker-1 (pid \([0-9]*\)).*/\1/p' "$T_TMP/kill.log")
[ -n "$victim" ] && kill -KILL "$victim"
wait_local 90
t_expect_eq "netns: SIGKILL of mnist-worker-1: the job's status is 137" "$RC" 137
t_grep "netns: the report names the killed pod" 'job mnist failed: pod mnist-worker-1 exited with status 137' "$T_TMP/kill.log"
t_grep "netns: ... with baton run's report, which names it by its host name" "job mnist failed: .*; baton run's report: node 2 \\(host mnist-worker-1, pid $victim\\) lost contact" "$T_TMP/kill.log"
no_leftovers kill

# SIGTERM to baton k8s local itself: everything is stopped and removed.
SLEEPER='[sh, -c, "echo up; exec sleep 300"]'
job term PyTorchJob Master "$SLEEPER" 1 "$SLEEPER"
run_local term 150 --netns "$T_TMP/term.yaml"
for _ in $(seq 1 300); do [ "$(grep -c '] up$' "$T_TMP/term.log")" = 2 ] && break; sleep 0.1; done
kill -TERM $LOCAL_PID
wait_local 30
t_expect_eq "netns: SIGTERM to baton k8s local: status 143" "$RC" 143
no_leftovers term
t_done
