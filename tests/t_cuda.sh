#!/usr/bin/env bash
# t_cuda.sh: device (CUDA) buffers: BATON_BACKEND=nccl as bad input where it cannot work (runs
# everywhere), then, on a machine with a GPU, NCCL at world size 1, the staged path at 2 and 4
# ranks on one GPU (small and default segments), device-buffer correctness for every
# collective x dtype x op (tests/progs/cuda_check.c), mixed host/device buffers, NCCL refused
# for two ranks on one GPU, the benchmark's nccl/staged backends, and a dup with grouped device
# allreduces (ncclCommSplit and ncclGroupStart/End on NCCL). Without a GPU those are
# skipped with the reason (e.g. "no CUDA device: cudaGetDeviceCount returned 35 (...)").
# timeout: 600
source "$(dirname "$0")/lib.sh"
CHECK=$BATON_BUILD/tests/progs/cuda_check
COLL=$BATON_BUILD/tests/progs/coll_check
BENCH=$BATON_BUILD/bench/allreduce_bench
[ -x "$CHECK" ] && [ -x "$COLL" ] || { t_fail "build" "$CHECK or $COLL missing"; t_done; }
nccl_built=0
[ -f "$BATON_BUILD/plugins/libbaton-nccl.so" ] && nccl_built=1
"$CHECK" --probe >"$T_TMP/probe" 2>&1
probe_rc=$?
have_gpu=0
[ $probe_rc = 0 ] && have_gpu=1

# ---- bad input: BATON_BACKEND=nccl where NCCL cannot run (no GPU, no NCCL, host buffers) ----
if [ $have_gpu = 0 ] || [ $nccl_built = 0 ]; then
    out=$T_TMP/nccl_bad.log
    BATON_BACKEND=nccl timeout 60 "$BATON" run -n 2 -- "$COLL" --iters 1 >"$out" 2>&1
    rc=$?
    t_check "BATON_BACKEND=nccl without GPU/NCCL: non-zero exit ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
    t_grep "BATON_BACKEND=nccl without GPU/NCCL: one clear line" \
        'bt_init failed: BATON_BACKEND=nccl but (rank [0-9]+ sees no CUDA device: .*|the (CUDA|NCCL) backend is missing: .*); hint:' "$out"
    BATON_BACKEND=nccl timeout 30 "$COLL" --iters 1 >"$out" 2>&1
    rc=$?
    t_check "BATON_BACKEND=nccl, a job of one: bt_init fails ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
else
    out=$T_TMP/nccl_host.log
    BATON_BACKEND=nccl timeout 60 "$BATON" run -n 1 -- "$COLL" --iters 1 >"$out" 2>&1
    rc=$?
    t_check "BATON_BACKEND=nccl with host buffers: non-zero exit ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
    t_grep "BATON_BACKEND=nccl with host buffers: one clear line" \
        'BATON_BACKEND=nccl takes device \(CUDA\) buffers' "$out"
fi

# ---- the CUDA plugin missing (a host-only install): host buffers work, nccl says why ----
mkdir -p "$T_TMP/noplugins"
out=$T_TMP/noplugin.log
BATON_PLUGIN_DIR="$T_TMP/noplugins" timeout 60 "$BATON" run -n 2 -- "$COLL" --iters 1 >"$out" 2>&1
t_expect_eq "no CUDA plugin: host collectives run (exit status)" "$?" 0
BATON_PLUGIN_DIR="$T_TMP/noplugins" BATON_BACKEND=nccl timeout 30 "$COLL" --iters 1 >"$out" 2>&1
rc=$?
t_check "no CUDA plugin, BATON_BACKEND=nccl: bt_init fails ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
t_grep "no CUDA plugin, BATON_BACKEND=nccl: the line names the missing plugin" \
    'BATON_BACKEND=nccl but the CUDA backend is missing: libbaton-cuda.so is not in BATON_PLUGIN_DIR=.*; hint:' "$out"

out=$T_TMP/bench_bad.log
"$BENCH" --backend nccl -b 4K -e 4K >"$out" 2>&1
rc=$?
if [ $have_gpu = 0 ]; then
    t_expect_eq "allreduce_bench --backend nccl without a GPU: exit status 2" "$rc" 2
    t_grep "allreduce_bench --backend nccl without a GPU: one line" \
        'needs a GPU, and (there is none|this build has no CUDA)' "$out"
fi

# ---- with a GPU ----
if [ $have_gpu = 0 ]; then
    why=$(head -1 "$T_TMP/probe")
    for name in "NCCL at world size 1" "staged path, 2 ranks on one GPU" \
        "staged path, 4 ranks on one GPU" "staged path, one-element segments" \
        "BATON_BACKEND=baton at world size 1" "mixed host/device buffers rejected" \
        "BATON_BACKEND=nccl refuses two ranks on one GPU" "allreduce_bench --backend nccl|staged" \
        "NCCL: dup by ncclCommSplit, grouped device allreduces" \
        "staged path: dup and grouped device allreduces"; do
        t_skip "$name" "${why:-cuda_check --probe exited $probe_rc}"
    done
    t_done
fi

# all_ok NAME LOG N: every one of N ranks printed "rank R ok".
all_ok() {
    local n=$(grep -cE 'rank [0-9]+ ok' "$3")
    t_expect_eq "$1: $2 ranks report ok" "$n" "$2"
}

gpu_run() { # NAME N LOG [ENV...] -- runs cuda_check on N ranks with env, checks exit and ok lines
    local name=$1 n=$2 log=$3; shift 3
    env BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=COLL,INIT "$@" timeout 240 "$BATON" run -n "$n" -- \
        "$CHECK" ${CHECK_ARGS:-} >"$log" 2>&1
    t_expect_eq "$name: exit status" "$?" 0
    all_ok "$name" "$n" "$log"
}

if [ $nccl_built = 1 ]; then
    gpu_run "NCCL at world size 1" 1 "$T_TMP/nccl1.log" BATON_BACKEND=nccl
    t_grep "NCCL at world size 1: NCCL used" 'NCCL [0-9]+ communicator of 1 rank' "$T_TMP/nccl1.log"
    CHECK_ARGS=--split-group gpu_run "NCCL: dup by ncclCommSplit, grouped device allreduces" 1 \
        "$T_TMP/nccl_split.log" BATON_BACKEND=nccl
    t_grep "NCCL: the dup's communicator came from ncclCommSplit" \
        'NCCL communicator by ncclCommSplit on GPU' "$T_TMP/nccl_split.log"
else
    t_skip "NCCL at world size 1" "built without NCCL"
    t_skip "NCCL: dup by ncclCommSplit, grouped device allreduces" "built without NCCL"
fi
CHECK_ARGS=--split-group gpu_run "staged path: dup and grouped device allreduces" 2 \
    "$T_TMP/st_split.log" CUDA_VISIBLE_DEVICES=0
gpu_run "staged path, 2 ranks on one GPU" 2 "$T_TMP/st2.log" CUDA_VISIBLE_DEVICES=0
t_grep "staged path, 2 ranks: staged path taken" 'take the staged path' "$T_TMP/st2.log"
gpu_run "staged path, 4 ranks on one GPU" 4 "$T_TMP/st4.log" CUDA_VISIBLE_DEVICES=0 \
    BATON_STAGE_BYTES=65536
gpu_run "staged path, one-element segments" 2 "$T_TMP/st1.log" CUDA_VISIBLE_DEVICES=0 \
    BATON_STAGE_BYTES=8 BATON_TRANSPORT=tcp
gpu_run "BATON_BACKEND=baton at world size 1" 1 "$T_TMP/baton1.log" BATON_BACKEND=baton

out=$T_TMP/mixed.log
timeout 60 "$BATON" run -n 1 -- "$CHECK" --mixed >"$out" 2>&1
t_expect_eq "mixed host/device buffers rejected: exit status" "$?" 0
t_grep "mixed host/device buffers rejected: the line" 'send is device memory but recv is host memory' "$out"

if [ $nccl_built = 1 ]; then
    out=$T_TMP/nccl_shared.log
    CUDA_VISIBLE_DEVICES=0 BATON_BACKEND=nccl timeout 120 "$BATON" run -n 2 -- "$CHECK" >"$out" 2>&1
    rc=$?
    t_check "BATON_BACKEND=nccl refuses two ranks on one GPU: non-zero exit ($rc)" \
        test "$rc" -ne 0 -a "$rc" -ne 124
    t_grep "BATON_BACKEND=nccl refuses two ranks on one GPU: the line" \
        'BATON_BACKEND=nccl but ranks 0 and 1 share one GPU' "$out"
fi
if [ "$(sed -n 's/^cuda devices: //p' "$T_TMP/probe")" -ge 2 ] 2>/dev/null && [ $nccl_built = 1 ]; then
    gpu_run "NCCL at 2 ranks on 2 GPUs" 2 "$T_TMP/nccl2.log"
    t_grep "NCCL at 2 ranks: NCCL used" 'NCCL [0-9]+ communicator of 2 rank' "$T_TMP/nccl2.log"
fi

for b in nccl staged; do
    [ $b = nccl ] && [ $nccl_built = 0 ] && continue
    out=$T_TMP/bench_$b.log
    n=1; [ $b = staged ] && n=2
    CUDA_VISIBLE_DEVICES=0 timeout 120 "$BATON" run -n $n -- "$BENCH" --backend $b -b 4K -e 16M \
        -f 4 -n 5 -w 2 >"$out" 2>&1
    t_expect_eq "allreduce_bench --backend $b: exit status" "$?" 0
    t_grep "allreduce_bench --backend $b: table with #wrong 0" '^ +16777216 +4194304 .* 0$' "$out"
done
t_done
