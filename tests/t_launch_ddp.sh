#!/usr/bin/env bash
# t_launch_ddp.sh: an unchanged PyTorch DDP program (gloo, init_method="env://") runs under
# `baton run -n 2`: the torchrun env (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) is enough.
# Debian's torch is importable only from /usr/bin/python3; without it the test is skipped.
# timeout: 240
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! timeout 120 "$PY" -c 'import torch, torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null; then
    t_skip "PyTorch DDP under baton run" "$PY cannot import torch with gloo (make deps installs python3-torch)"
    t_done
fi
"$BATON" run -n 2 -- "$PY" "$BATON_SRC/tests/progs/ddp_allreduce.py" >"$T_TMP/ddp.out" 2>"$T_TMP/ddp.err"
rc=$?
t_expect_eq "DDP: baton run -n 2 exits 0" "$rc" 0
[ $rc = 0 ] || tail -20 "$T_TMP/ddp.err"
for r in 0 1; do
    t_grep "DDP: rank $r allreduced and stepped correctly" "^\[$r\] ddp rank $r of 2: allreduce sum ok, DDP step ok" "$T_TMP/ddp.out"
done
t_done
