"""ddp_elastic.py: a stock PyTorch DDP training loop (gloo, init_method="env://") as users write
it for an elastic job: run under `baton run --nnodes MIN:MAX` (tests/t_launch_elastic_ddp.sh)
and under torchrun (bench/elastic_bench.sh). It reads only RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT (and, where set, BATON_ELASTIC_FILE / TORCHELASTIC_RESTART_COUNT).

ddp_elastic.py DIR: resumes from DIR/ckpt.pt (step and model state) when it exists, then steps a
small DDP model every 50 ms; rank 0 saves the checkpoint every 10 steps, and at once when
BATON_ELASTIC_FILE says state=closing (a node is about to join); then every rank acknowledges
(creates BATON_ELASTIC_FILE.ack.LOCAL_RANK, rank 0 after its checkpoint), so that the
generation ends without waiting out BATON_ELASTIC_GRACE. After its first step in a
generation each rank writes DIR/up.<generation>.<rank>: "world=W step=S resumed=R pid=P", where
R is the step it resumed from. All ranks exit 0 once DIR/stop exists.

In place (BATON_ELASTIC_INPLACE=1 in its env, docs/elastic.md): the process outlives membership
changes. It reads its generation, rank (first_rank + LOCAL_RANK), world size, MASTER_ADDR and
MASTER_PORT from BATON_ELASTIC_FILE once it says state=running, writes the generation to
BATON_ELASTIC_FILE.gen.LOCAL_RANK (it takes it up), and joins with init_process_group. When a
collective fails (a peer died) or the file says state=closing (a node joins), it acknowledges
the closing, destroys its process group and waits for the next generation, keeping the model
and the step in memory: no checkpoint is written or read. A new generation starts from the
state of the lowest rank with the most steps (broadcast to the others)."""
import datetime
import os
import socket
import sys
import time

import torch
import torch.distributed as dist


def closing():
    path = os.environ.get("BATON_ELASTIC_FILE")
    try:
        with open(path) as f:
            return "state=closing\n" in f.read()
    except (TypeError, OSError):
        return False


def acknowledge():
    path = os.environ.get("BATON_ELASTIC_FILE")
    if path:
        open(path + ".ack." + os.environ.get("LOCAL_RANK", "0"), "w").close()


def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)


class Leave(Exception):
    """The generation is closing: leave it at this step boundary."""


def elastic():
    kv = {}
    try:
        with open(os.environ["BATON_ELASTIC_FILE"]) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                kv[k] = v
    except OSError:
        pass
    return kv


def next_generation(after):
    """Waits until BATON_ELASTIC_FILE says a generation later than `after` runs."""
    while True:
        kv = elastic()
        if kv.get("state") == "running" and int(kv.get("generation", "-1")) > after:
            return kv
        time.sleep(0.01)


def listening(addr, port, limit_s):
    """Waits until rank 0's TCPStore accepts: torch 1.13's client retries a refused connect only
    after 1 s, which a new generation's ranks would otherwise often pay."""
    end = time.time() + limit_s
    while time.time() < end:
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)


def train_step(ddp, opt, step, resumed, d, gen):
    """One DDP step; the first after (re)starting at `resumed` leaves up.GEN.RANK in d. The new step."""
    x = torch.randn(16, 8)
    opt.zero_grad()
    ddp(x).square().mean().backward()
    opt.step()
    step += 1
    if step == resumed + 1:
        rank, world = dist.get_rank(), dist.get_world_size()
        put(os.path.join(d, f"up.{gen}.{rank}"),
            f"world={world} step={step} resumed={resumed} pid={os.getpid()}")
    return step


def in_place(d):
    local = int(os.environ.get("LOCAL_RANK", "0"))
    path = os.environ["BATON_ELASTIC_FILE"]
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    step, gen = 0, -1
    while True:
        kv = next_generation(gen)
        gen = int(kv["generation"])
        rank, world = int(kv["first_rank"]) + local, int(kv["world_size"])
        put(f"{path}.gen.{local}", str(gen))  # taken up: the launcher's BATON_ELASTIC_ADOPT
        ddp = None
        if rank != 0:
            listening(kv["master_addr"], int(kv["master_port"]), 120)
        try:
            dist.init_process_group(
                "gloo", init_method=f"tcp://{kv['master_addr']}:{kv['master_port']}",
                rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
            # the state of the lowest rank with the most steps goes to every rank
            t = torch.tensor([step])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            src = torch.tensor([rank if step == t.item() else world])
            dist.all_reduce(src, op=dist.ReduceOp.MIN)
            for p in model.state_dict().values():
                dist.broadcast(p, int(src.item()))
            step = resumed = int(t.item())
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
            while True:
                step = train_step(ddp, opt, step, resumed, d, gen)
                kv = elastic()
                if kv.get("state") == "closing" and kv.get("generation") == str(gen):
                    raise Leave()
                flag = torch.tensor([1.0 if os.path.exists(os.path.join(d, "stop")) else 0.0])
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if flag.item() > 0:
                    dist.destroy_process_group()
                    return 0
                time.sleep(0.05)
        except (RuntimeError, Leave):
            if elastic().get("state") == "closing":
                acknowledge()
            del ddp
            try:
                dist.destroy_process_group()
            except (RuntimeError, AssertionError, ValueError):
                pass


def main():
    d = sys.argv[1]
    if os.environ.get("BATON_ELASTIC_INPLACE") == "1" and os.environ.get("BATON_ELASTIC_FILE"):
        return in_place(d)
    gen = os.environ.get("BATON_RESTART_COUNT", os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    step = 0
    ckpt = os.path.join(d, "ckpt.pt")
    if os.path.exists(ckpt):
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        step = state["step"]
    resumed = step
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    saved_closing = False
    acked = False
    while True:
        step = train_step(ddp, opt, step, resumed, d, gen)
        want = rank == 0 and (step % 10 == 0 or (closing() and not saved_closing))
        if want:
            saved_closing = saved_closing or closing()
            tmp = ckpt + ".tmp"
            torch.save({"model": model.state_dict(), "step": step}, tmp)
            os.replace(tmp, ckpt)
        if not acked and (saved_closing if rank == 0 else closing()):
            acknowledge()
            acked = True
        flag = torch.tensor([1.0 if os.path.exists(os.path.join(d, "stop")) else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            break
        time.sleep(0.05)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
