#!/usr/bin/python3
"""torch_mnist_cnn.py: the baseline for bench/mnist_compare.sh: the same CNN, recipe and data
as examples/mnist (Conv 32 -> pool -> Conv 64 -> pool -> Conv 64 -> Dense 64 -> Dense 10,
Adam 1e-3/0.9/0.999/1e-7, batch 32 per process), trained with PyTorch DDP over Gloo, one
thread per process, for a fixed number of steps; prints the throughput.

    /usr/bin/python3 bench/torch_mnist_cnn.py --nproc 2 --steps 300     # spawns its processes
    baton run -n 2 -- /usr/bin/python3 bench/torch_mnist_cnn.py --steps 300   # env:// init
    baton run -n 2 -- /usr/bin/python3 bench/torch_mnist_cnn.py --backend baton   # libbaton

Last line: `torch: images_per_s=N steps=S world=W`.
"""
import argparse
import gzip
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn


def load_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def find(data_dir, name):
    for p in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")):
        if os.path.exists(p):
            return p
    sys.exit(f"torch_mnist_cnn: {data_dir}/{name}[.gz]: not found")


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))


def train(rank, world, args):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if world > 1:
        if args.backend == "baton":
            import baton.torch  # noqa: F401  (PYTHONPATH=build/python)
            dist.init_process_group("baton")
        else:
            dist.init_process_group("gloo", rank=rank, world_size=world)
    x = load_idx(find(args.data, "train-images-idx3-ubyte"))
    y = load_idx(find(args.data, "train-labels-idx1-ubyte"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(y.astype(np.int64))
    net = model()
    ddp = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(54000, generator=gen)
    gb = args.batch * world
    t0 = None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            t0 = time.perf_counter()
        s = (step * gb) % (54000 - gb)
        idx = order[s + rank * args.batch:s + (rank + 1) * args.batch]
        opt.zero_grad()
        loss = lossf(ddp(x[idx]), y[idx])
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    if rank == 0:
        print(f"torch: images_per_s={args.steps * gb / dt:.0f} steps={args.steps} world={world} "
              f"backend={args.backend if world > 1 else 'none'} "
              f"loss={loss.item():.4f}", flush=True)
    if world > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nproc", type=int, default=0, help="spawn this many processes (0: use env)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=("gloo", "baton"), default="gloo",
                    help="torch.distributed backend of DDP (baton: only under baton run)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    if args.nproc == 0 and "WORLD_SIZE" in os.environ:
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), args)
        return
    world = max(args.nproc, 1)
    if world == 1:
        train(0, 1, args)
        return
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(s.getsockname()[1])
    s.close()
    mp.spawn(train, args=(world, args), nprocs=world)


if __name__ == "__main__":
    main()
