#!/usr/bin/env bash
# t_torch.sh: the torch.distributed backend "baton" (python/baton_torch.cpp, python/baton/),
# with PyTorch's gloo backend as the reference in the same run: every op and dtype on 1-4
# ranks (tests/progs/torch_backend.py), DDP training of a CNN with each backend
# (tests/progs/torch_ddp.py), several outstanding async works, non-contiguous tensors, the
# Horovod-style baton.allreduce, a rank SIGKILLed mid-step (tests/progs/torch_kill.py), and
# the ImportErrors for a missing torch or a torch of another version. Skipped where the build
# made no extension (the Makefile's "torch" line says why).
# timeout: 900
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
P=$BATON_SRC/tests/progs
PKG=$BATON_BUILD/python
export PYTHON_EXEC=$PY PYTHONPATH=$PKG
unset OMP_NUM_THREADS

# Without torch: `import baton.torch` is one clear ImportError (a torch that fails to import
# plays the machine without it); the ctypes package itself needs no torch.
mkdir -p "$T_TMP/notorch/torch"
echo 'raise ImportError("No module named torch (simulated)")' >"$T_TMP/notorch/torch/__init__.py"
PYTHONPATH=$T_TMP/notorch:$PKG "$PY" -c 'import baton.torch' >"$T_TMP/nt.out" 2>&1
t_grep "torch missing: import baton.torch raises a clear ImportError" \
    '^ImportError: baton.torch needs PyTorch \(Debian: apt-get install python3-torch' "$T_TMP/nt.out"
PYTHONPATH=$T_TMP/notorch:$PKG "$PY" -c 'import baton; print("size", baton.size())' >"$T_TMP/nt2.out" 2>&1
t_grep "the baton package works without torch (a job of one)" '^size 1$' "$T_TMP/nt2.out"

if ! [ -f "$PKG/baton/_torch.so" ]; then
    t_skip "torch.distributed backend" "$PKG/baton/_torch.so not built ($(make -s -C "$BATON_SRC" --no-print-directory features 2>/dev/null | grep ' torch '))"
    t_done
fi

# Another torch version than the one the extension was built for: a clear ImportError.
cp -r "$PKG/baton" "$T_TMP/other" && mkdir -p "$T_TMP/ov" && mv "$T_TMP/other" "$T_TMP/ov/baton"
sed -i 's/^_BUILT_FOR = ".*"/_BUILT_FOR = "9.9.0"/' "$T_TMP/ov/baton/torch.py"
BATON_LIB=$BATON_BUILD/libbaton.so PYTHONPATH=$T_TMP/ov "$PY" -c 'import baton.torch' >"$T_TMP/ov.out" 2>&1
t_grep "another torch version: a clear ImportError" \
    '^ImportError: baton.torch was built against torch 9.9.0 but this Python has torch' "$T_TMP/ov.out"

# Every op and dtype against gloo, 1 to 4 ranks.
for n in 1 2 3 4; do
    "$BATON" run -n $n "$P/torch_backend.py" >"$T_TMP/ops$n.out" 2>&1
    rc=$?
    ok=$(grep -c '^\[[0-9]*\] RESULT rank [0-9]*: ok$' "$T_TMP/ops$n.out")
    if [ $rc = 0 ] && [ "$ok" = $n ]; then
        t_ok "$n rank(s): every op x dtype equals gloo's, async works, non-contiguous, baton.allreduce"
    else
        t_fail "$n rank(s): every op x dtype equals gloo's" "rc $rc, $ok of $n ranks ok"
        grep -E 'FAIL|Error|error' "$T_TMP/ops$n.out" | head -10
    fi
done
t_grep "the checks ran (async, refused dtypes)" '^\[0\] PASS async: 8 outstanding works' "$T_TMP/ops2.out"

# DDP: the same CNN trained with baton and with gloo.
"$BATON" run -n 2 "$P/torch_ddp.py" >"$T_TMP/ddp2.out" 2>&1
t_expect_eq "DDP, 2 ranks: parameters bitwise equal to gloo's on both ranks" \
    "$(grep -c 'parameters bitwise equal.*-> ok' "$T_TMP/ddp2.out")" 2
"$BATON" run -n 3 "$P/torch_ddp.py" >"$T_TMP/ddp3.out" 2>&1
t_expect_eq "DDP, 3 ranks: parameters within 1e-4 of gloo's on every rank" \
    "$(grep -c -- '-> ok$' "$T_TMP/ddp3.out")" 3

# A rank killed mid-step: the others raise a RuntimeError naming it, within BATON_TIMEOUT.
BATON_TIMEOUT=10 "$BATON" run -n 3 "$P/torch_kill.py" >"$T_TMP/kill.out" 2>&1
for r in 0 2; do
    t_grep "rank $r gets a Python exception naming the killed rank 1" \
        "^\[$r\] rank $r step 5: RuntimeError after [0-9.]+ s: baton: allreduce .*rank 1 \(pid [0-9]+" "$T_TMP/kill.out"
    s=$(sed -n "s/^\[$r\] rank $r step 5: RuntimeError after \([0-9.]*\) s.*/\1/p" "$T_TMP/kill.out")
    t_check "... within the timeout (${s:-?} s < 10 s)" awk -v s="${s:-99}" 'BEGIN { exit !(s < 10) }'
done
t_grep "the job's report names the killed rank" '^baton: job failed: rank 1 .*was killed by SIGKILL' "$T_TMP/kill.out"
t_done
