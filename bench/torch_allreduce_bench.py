#!/usr/bin/python3
"""torch_allreduce_bench.py: torch.distributed.all_reduce over the "baton" backend and over gloo,
in one run, interleaved (bench/torch_compare.sh runs it under `baton run -n 2`).

The default group is "baton"; a gloo group spans the same ranks. For each size (float32, SUM,
in place) the two backends take turns, ROUNDS rounds each (A B A B ...); a round times ITERS
back-to-back calls after a barrier and keeps the mean per call. Before timing, each backend's
result is checked against the exact sum (the data are small integers). Prints the nccl-tests
style table per backend (median of the rounds, and their min-max), busbw = algbw * 2(n-1)/n.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.distributed as dist

import baton.torch  # noqa: F401


def sizes(lo, hi):
    s = lo
    while s <= hi:
        yield s
        s *= 4


def parse_size(v):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(v[:-1]) * mult[v[-1].upper()] if v[-1].upper() in mult else int(v)


def one_round(t, group, iters):
    dist.barrier(group=group)
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(t, group=group)
    return (time.perf_counter() - t0) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", default="4K", help="smallest size in bytes (K, M suffixes)")
    ap.add_argument("-e", default="256M", help="largest size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per round (about)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("baton")
    rank, n = dist.get_rank(), dist.get_world_size()
    gloo = dist.new_group(backend="gloo")
    groups = {"baton": None, "gloo": gloo}
    if rank == 0:
        print("# torch.distributed.all_reduce, float32 sum, in place, %d ranks; median of %d "
              "interleaved rounds (min-max)" % (n, args.rounds))
        print("%12s %10s  %-6s %12s %22s %10s %8s" % ("size", "count", "backend", "time(us)",
                                                      "min-max(us)", "busbw", "#wrong"))
    for size in sizes(parse_size(args.b), parse_size(args.e)):
        count = size // 4
        t = {}
        wrong = {}
        for name, g in groups.items():  # check before timing
            x = torch.full((count,), float(rank + 1))
            dist.all_reduce(x, group=g)
            wrong[name] = int((x != n * (n + 1) / 2).sum())
            t[name] = torch.ones(count)
        # iterations per round from a first timed call (the slower backend sets it)
        probe = max(one_round(t[name], g, 1) for name, g in groups.items())
        iters = torch.tensor([max(1, min(2000, int(args.budget / max(probe, 1e-7))))])
        dist.all_reduce(iters, group=gloo, op=dist.ReduceOp.MIN)
        times = {k: [] for k in groups}
        for _ in range(args.rounds):
            for name, g in groups.items():
                times[name].append(one_round(t[name], g, int(iters)))
        if rank == 0:
            for name in groups:
                med = statistics.median(times[name])
                busbw = size / med * 2 * (n - 1) / n / 1e9
                print("%12d %10d  %-6s %12.1f %22s %8.2f GB/s %5d" % (
                    size, count, name, med * 1e6,
                    "%.1f-%.1f" % (min(times[name]) * 1e6, max(times[name]) * 1e6), busbw,
                    wrong[name]), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
