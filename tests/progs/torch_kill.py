# torch_kill.py: rank 1 is SIGKILLed in the middle of a training step; every other rank must get
# a Python exception naming rank 1 within the timeout (t_torch.sh). SIGTERM (baton run's teardown
# after the kill) is noted and ignored, so the exception, not the signal, ends the rank.
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

import baton.torch  # noqa: F401

signal.signal(signal.SIGTERM, lambda *a: None)
dist.init_process_group("baton")
rank = dist.get_rank()
t = torch.ones(1 << 16)
for step in range(1000):
    if rank == 1 and step == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    t0 = time.monotonic()
    try:
        works = [dist.all_reduce(t, async_op=True) for _ in range(3)]
        for w in works:
            w.wait()
    except RuntimeError as e:
        print("rank %d step %d: %s after %.1f s: %s" % (rank, step, type(e).__name__,
                                                        time.monotonic() - t0, e), flush=True)
        sys.exit(3)
print("rank %d: no exception" % rank, flush=True)
