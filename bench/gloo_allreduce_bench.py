#!/usr/bin/python3
"""gloo_allreduce_bench.py: PyTorch's Gloo allreduce timed like allreduce_bench.c.

    baton run -n 2 -- /usr/bin/python3 bench/gloo_allreduce_bench.py [-b 4K] [-e 256M]
                                                                     [-f 2] [-n 20] [-w 5]

Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (baton run sets them). float32 sum in place,
median per op (max over ranks), then one checked run per size. Rank 0 prints the table.
"""
import argparse
import os
import time

import torch
import torch.distributed as dist


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-b", type=size_arg, default=4096)
    p.add_argument("-e", type=size_arg, default=256 << 20)
    p.add_argument("-f", type=float, default=2)
    p.add_argument("-n", type=int, default=20)
    p.add_argument("-w", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://")
    rank, size = dist.get_rank(), dist.get_world_size()
    buf = torch.zeros(a.e // 4, dtype=torch.float32)
    if rank == 0:
        print(f"# gloo_allreduce_bench: {size} ranks, float32 sum, in place")
        print("#%12s %12s %8s %6s %10s %8s %8s %7s" %
              ("size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong"))
    sz, bw_sum, nsizes = float(a.b), 0.0, 0
    while sz <= a.e * 1.0001:
        count = int(sz) // 4
        view = buf[:count]
        for _ in range(a.w):
            dist.all_reduce(view)
        ts = []
        for _ in range(a.n):
            t0 = time.perf_counter()
            dist.all_reduce(view)
            ts.append((time.perf_counter() - t0) * 1e6)
        ts.sort()
        med = torch.tensor([ts[len(ts) // 2]], dtype=torch.float64)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)
        us = med.item()
        idx = torch.arange(count)
        view.copy_(((rank + idx % 7) % 5).float())
        dist.all_reduce(view)
        want = sum(((r + idx % 7) % 5).float() for r in range(size))
        wrong = torch.tensor([int((view != want).sum())], dtype=torch.int64)
        dist.all_reduce(wrong)
        algbw = count * 4 / us / 1e3
        busbw = algbw * 2 * (size - 1) / size
        bw_sum += busbw
        nsizes += 1
        if rank == 0:
            print(" %12d %12d %8s %6s %10.2f %8.2f %8.2f %7d" %
                  (count * 4, count, "float", "sum", us, algbw, busbw, wrong.item()), flush=True)
        sz *= a.f
    if rank == 0 and nsizes:
        print("# Avg bus bandwidth    : %.3f" % (bw_sum / nsizes))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
