"""ddp_allreduce.py: a PyTorch DDP program as users write it, run under `baton run -n N`
(tests/t_launch_ddp.sh) and as a PyTorchJob under `baton k8s local --netns`
(tests/t_k8s_local_ddp.sh). It reads only the torchrun env (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT via init_method="env://"), allreduces a tensor and checks the sum, then takes one
DistributedDataParallel step and checks every rank ends with the same weights.

--checkpoint-dir DIR: rank 0 then saves the model's state_dict to DIR/model.pt (DIR made as
needed). --exit-rank R --exit-code C: rank R exits with C right after joining the group, so
the others fail in their allreduce (a root-cause test)."""
import argparse
import os
import sys

import torch
import torch.distributed as dist


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint-dir")
    ap.add_argument("--exit-rank", type=int, default=-1)
    ap.add_argument("--exit-code", type=int, default=1)
    args = ap.parse_args()
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
    if rank == args.exit_rank:
        print(f"ddp rank {rank}: exiting with {args.exit_code} as asked", flush=True)
        os._exit(args.exit_code)
    t = torch.arange(4, dtype=torch.float32) + rank
    dist.all_reduce(t)
    want = torch.arange(4, dtype=torch.float32) * world + world * (world - 1) / 2
    if not torch.equal(t, want):
        print(f"ddp rank {rank}: allreduce got {t.tolist()}, want {want.tolist()}")
        return 1
    torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 8) + rank
    model(x).square().mean().backward()
    opt.step()
    w = model.module.weight.detach().clone()
    ws = [torch.empty_like(w) for _ in range(world)]
    dist.all_gather(ws, w)
    if not all(torch.equal(ws[0], v) for v in ws):
        print(f"ddp rank {rank}: weights differ across ranks after a DDP step")
        return 1
    if args.checkpoint_dir and rank == 0:
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        path = os.path.join(args.checkpoint_dir, "model.pt")
        torch.save(model.module.state_dict(), path)
        print(f"ddp rank 0: saved {path}")
    print(f"ddp rank {rank} of {world}: allreduce sum ok, DDP step ok")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
