# torch_ddp.py: the same DDP training of a CNN with backend "baton" and with "gloo", in one run
# (t_torch.sh). Two copies of one model, one wrapped by DDP over the default group (baton),
# one by DDP over a gloo group of the same ranks, trained on the same per-rank batches with
# small buckets (several allreduces in flight during the backward pass). With 2 ranks a sum of
# two floats does not depend on the order, so the parameters must be bitwise equal; with more
# ranks the two backends add the ranks' gradients in different orders, the last bits differ and
# momentum carries them on: they must agree within 1e-4 (absolute and relative) after 8 steps.
import copy
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

import baton.torch  # noqa: F401


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    torch.set_num_threads(1)
    dist.init_process_group("baton")
    rank, world = dist.get_rank(), dist.get_world_size()
    gloo = dist.new_group(backend="gloo")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 11 * 11, 32), nn.ReLU(),
                        nn.Linear(32, 10))
    models = {}
    for name, group in (("baton", None), ("gloo", gloo)):
        m = copy.deepcopy(net)
        ddp = nn.parallel.DistributedDataParallel(m, process_group=group, bucket_cap_mb=0.01)
        models[name] = (ddp, torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9))
    g = torch.Generator().manual_seed(100 + rank)
    for step in range(steps):
        x = torch.randn(16, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        for ddp, opt in models.values():
            opt.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
    pb = list(models["baton"][0].parameters())
    pg = list(models["gloo"][0].parameters())
    exact = all(torch.equal(a, b) for a, b in zip(pb, pg))
    close = all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(pb, pg))
    worst = max(float((a - b).abs().max()) for a, b in zip(pb, pg))
    ok = exact if world == 2 else close
    print("DDP rank %d of %d, %d steps: parameters %s (max abs diff %.3g) -> %s" % (
        rank, world, steps, "bitwise equal" if exact else "within 1e-4" if close else "DIFFER",
        worst, "ok" if ok else "FAIL"), flush=True)
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
