# torch_backend.py: the torch.distributed backend "baton" against gloo, in one run (t_torch.sh).
#
# Under `baton run -n N`: the default group is "baton", a second group over the same ranks is
# gloo; every op and dtype runs on both and the results must be equal bitwise. The data are
# small integers (|x| <= 3), so that every sum, product, min and max is exact in every dtype
# and the order of the reduction cannot matter; AVG is checked against gloo's SUM divided as
# libbaton documents it (floating: the sum divided by N; integers: truncated). gloo lacks some
# (reduce_scatter, AVG, bfloat16 in places): there the reference is gloo's all_gather of the
# inputs, reduced here in float64. Prints "PASS <what>" lines and one "FAIL ..." per mismatch.
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import baton
import baton.torch  # noqa: F401  registers "baton"

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64,
          torch.uint8]
OPS = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.AVG, "product": dist.ReduceOp.PRODUCT,
       "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
fails = 0


def check(what, got, want):
    global fails
    if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
        fails += 1
        print("FAIL %s: got %s want %s" % (what, got.flatten()[:6].tolist(),
                                          want.flatten()[:6].tolist()), flush=True)


def data(dtype, n, seed):
    g = torch.Generator().manual_seed(seed)
    lo = 0 if dtype == torch.uint8 else -3
    return torch.randint(lo, 4, (n,), generator=g).to(dtype)


def ref_reduce(xs, op, dtype, world):
    """The reduction of the ranks' xs (a list of tensors), in float64, as libbaton defines it."""
    s = torch.stack([x.double() for x in xs])
    r = {"sum": s.sum(0), "product": s.prod(0), "min": s.min(0).values,
         "max": s.max(0).values, "avg": s.sum(0)}[op]
    if op == "avg":
        r = torch.div(r, world, rounding_mode="trunc") if not dtype.is_floating_point else r / world
    if dtype == torch.uint8 and op in ("sum", "product", "avg"):
        r = torch.remainder(r, 256)  # libbaton and gloo wrap uint8
    return r.to(dtype)


def gathered(x, gloo, world):
    out = [torch.empty_like(x.double()) for _ in range(world)]
    dist.all_gather(out, x.double(), group=gloo)
    return out


def main():
    dist.init_process_group("baton")
    rank, world = dist.get_rank(), dist.get_world_size()
    gloo = dist.new_group(backend="gloo")
    assert dist.get_backend() == "baton", dist.get_backend()
    for n in (1, 37, 70001):
        for dt in DTYPES:
            x = data(dt, n, 1000 * rank + n)
            xs = gathered(x, gloo, world)
            for name, op in OPS.items():
                b = x.clone()
                dist.all_reduce(b, op=op)
                want = ref_reduce(xs, name, dt, world)
                if name != "avg":
                    g = x.clone()
                    try:
                        dist.all_reduce(g, op=op, group=gloo)
                        check("gloo itself, allreduce %s %s n=%d" % (name, dt, n), g, want)
                        want = g
                    except RuntimeError:
                        pass  # gloo lacks it: the float64 reference stands
                check("allreduce %s %s n=%d" % (name, dt, n), b, want)
                root = (n + len(name)) % world
                r = x.clone()
                dist.reduce(r, root, op=op)
                if rank == root:
                    check("reduce %s %s n=%d root %d" % (name, dt, n, root), r, want)
            for root in range(world):
                b, g = x.clone(), x.clone()
                dist.broadcast(b, root)
                try:
                    dist.broadcast(g, root, group=gloo)
                except RuntimeError:  # gloo lacks the dtype (bfloat16)
                    g = xs[root].to(dt)
                check("broadcast %s n=%d root %d" % (dt, n, root), b, g)
            outs = [torch.empty_like(x) for _ in range(world)]
            dist.all_gather(outs, x)
            for i in range(world):
                check("all_gather %s n=%d block %d" % (dt, n, i), outs[i], xs[i].to(dt))
            flat = torch.empty(world * n, dtype=dt)
            getattr(dist, "all_gather_into_tensor", dist._all_gather_base)(flat, x)
            check("all_gather_into_tensor %s n=%d" % (dt, n), flat, torch.cat(xs).to(dt))
            ins = [data(dt, n, 7 * rank + j + n) for j in range(world)]
            out = torch.empty(n, dtype=dt)
            dist.reduce_scatter(out, ins, op=dist.ReduceOp.SUM)
            blocks = [gathered(ins[j], gloo, world) for j in range(world)]
            check("reduce_scatter sum %s n=%d" % (dt, n), out, ref_reduce(blocks[rank], "sum", dt, world))
            big = torch.cat(ins)
            out2 = torch.empty(n, dtype=dt)
            getattr(dist, "reduce_scatter_tensor", dist._reduce_scatter_base)(out2, big, op=dist.ReduceOp.MAX)
            check("reduce_scatter_tensor max %s n=%d" % (dt, n), out2, ref_reduce(blocks[rank], "max", dt, world))
        print("PASS ops n=%d: allreduce/reduce (5 ops), broadcast, all_gather, reduce_scatter; %d dtypes"
              % (n, len(DTYPES)), flush=True)
    dist.barrier()

    # async_op=True: several outstanding works, waited in reverse, each result right.
    ts = [torch.full((1000 + i,), float(rank + i)) for i in range(8)]
    works = [dist.all_reduce(t, async_op=True) for t in ts]
    fut = works[3].get_future()
    for w in reversed(works):
        w.wait()
    for i, t in enumerate(ts):
        check("async allreduce %d" % i, t, torch.full((1000 + i,), float(sum(r + i for r in range(world)))))
    check("a work's future holds its tensor", fut.value()[0], ts[3])
    print("PASS async: 8 outstanding works", flush=True)

    # A non-contiguous tensor is reduced in place through a copy.
    base = torch.arange(24.0).reshape(4, 6) * (rank + 1)
    view = base[:, ::2]
    dist.all_reduce(view)
    check("non-contiguous allreduce", base[:, ::2], torch.arange(24.0).reshape(4, 6)[:, ::2] * sum(range(1, world + 1)))
    check("non-contiguous: the other elements untouched", base[:, 1::2], torch.arange(24.0).reshape(4, 6)[:, 1::2] * (rank + 1))
    print("PASS non-contiguous tensors", flush=True)

    # Refused with a message: bool, a bitwise op.
    for what, fn in (("bool", lambda: dist.all_reduce(torch.ones(2, dtype=torch.bool))),
                     ("BAND", lambda: dist.all_reduce(torch.ones(2, dtype=torch.int32), op=dist.ReduceOp.BAND))):
        try:
            fn()
            check("%s refused" % what, torch.ones(1), torch.zeros(1))
        except ValueError as e:
            if "baton" not in str(e):
                check("%s refused with baton's message (%s)" % (what, e), torch.ones(1), torch.zeros(1))
    print("PASS refused: bool dtype, bitwise ops", flush=True)

    # alltoall: equal blocks, given splits, lists of uneven tensors; gloo's result as reference.
    for dt in (torch.float32, torch.int64, torch.bfloat16):
        x = (torch.arange(world * 3) + 100 * rank).to(dt)
        b, g = torch.empty_like(x), torch.empty_like(x)
        dist.all_to_all_single(b, x)
        try:
            dist.all_to_all_single(g, x, group=gloo)
        except RuntimeError:  # gloo lacks the dtype
            g = torch.cat([(torch.arange(3) + 3 * rank + 100 * p).to(dt) for p in range(world)])
        check("all_to_all_single %s" % dt, b, g)
    ins_split = [p + 1 for p in range(world)]          # rank r sends p+1 rows to rank p
    outs_split = [rank + 1] * world                    # and gets rank+1 rows from each
    x = torch.cat([torch.full((p + 1, 2), float(10 * rank + p)) for p in range(world)])
    out = torch.empty(world * (rank + 1), 2)
    dist.all_to_all_single(out, x, outs_split, ins_split)
    want = torch.cat([torch.full((rank + 1, 2), float(10 * p + rank)) for p in range(world)])
    check("all_to_all_single with splits", out, want)
    ins = [torch.full((rank + p + 1,), rank * 10 + p, dtype=torch.int32) for p in range(world)]
    outs = [torch.empty(p + rank + 1, dtype=torch.int32) for p in range(world)]
    dist.all_to_all(outs, ins)
    for p in range(world):
        check("all_to_all list from %d" % p, outs[p], torch.full((p + rank + 1,), p * 10 + rank, dtype=torch.int32))
    print("PASS alltoall: equal, splits, lists", flush=True)

    # send/recv around a ring, isend/irecv outstanding together; blocking send/recv pairs.
    if world > 1:
        right, left = (rank + 1) % world, (rank - 1) % world
        s, r = torch.full((70001,), float(rank)), torch.empty(70001)
        works = [dist.isend(s, right, tag=7), dist.irecv(r, left, tag=7)]
        for w in works:
            w.wait()
        check("isend/irecv ring", r, torch.full((70001,), float(left)))
        t = torch.arange(5, dtype=torch.float64) * (rank + 1)
        if rank == 0:
            dist.send(t, 1)
            dist.recv(t, 1)
            check("send/recv back and forth", t, torch.arange(5, dtype=torch.float64) * 2)
        elif rank == 1:
            got = torch.empty(5, dtype=torch.float64)
            dist.recv(got, 0)
            check("recv", got, torch.arange(5, dtype=torch.float64))
            dist.send(t, 0)
    print("PASS send/recv", flush=True)

    # new_group: a subset (first and last rank), the rest, and every rank, each over a libbaton
    # communicator of its own (bt_comm_create_group), beside the default group.
    ends = sorted({0, world - 1})
    sub = dist.new_group(ends)
    rest = dist.new_group(list(range(1, world))) if world > 1 else None
    full = dist.new_group(list(range(world)))
    if rank in ends:
        t = torch.full((9,), float(rank + 1))
        dist.all_reduce(t, group=sub)
        check("new_group %s allreduce" % ends, t, torch.full((9,), float(sum(e + 1 for e in ends))))
        check("new_group rank", torch.tensor(dist.get_rank(sub)), torch.tensor(ends.index(rank)))
    if rest is not None and rank >= 1:
        t = torch.full((9,), float(rank))
        w = dist.all_reduce(t, group=rest, async_op=True)
        w.wait()
        check("new_group 1..%d allreduce" % (world - 1), t, torch.full((9,), float(sum(range(1, world)))))
    t = torch.full((4,), float(rank))
    dist.all_reduce(t, group=full, op=dist.ReduceOp.MAX)
    check("new_group of every rank", t, torch.full((4,), float(world - 1)))
    dist.barrier()
    print("PASS new_group: subsets %s and 1..%d, every rank" % (ends, world - 1), flush=True)

    # The Horovod-style API over the same communicator.
    a = np.full(5, rank + 1, dtype=np.float32)
    avg = baton.allreduce(a)
    check("baton.allreduce(ndarray) averages", torch.from_numpy(avg), torch.full((5,), (world + 1) / 2))
    check("baton.allreduce leaves its input", torch.from_numpy(a), torch.full((5,), float(rank + 1)))
    t = torch.full((3,), rank + 1, dtype=torch.int64)
    baton.allreduce_(t, op="sum")
    check("baton.allreduce_(tensor, sum)", t, torch.full((3,), world * (world + 1) // 2, dtype=torch.int64))
    print("PASS Horovod-style baton.allreduce on ndarray and tensor", flush=True)

    dist.barrier()
    print("RESULT rank %d: %s" % (rank, "ok" if fails == 0 else "%d failures" % fails), flush=True)
    dist.destroy_process_group()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
