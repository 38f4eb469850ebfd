#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora of tests/fuzz/corpus/ (run from the repository root).

Each seed is a real input in the form its target reads (see each fuzz_NAME.c): the first byte
is the target's mode byte. The files are small on purpose (a few KB per corpus)."""
import gzip, os, struct, zlib

C = "tests/fuzz/corpus"


def put(target, name, data):
    os.makedirs(f"{C}/{target}", exist_ok=True)
    with open(f"{C}/{target}/{name}", "wb") as f:
        f.write(data)


# fuzz_spec: mode byte (0 auto, 3 tfjob, ...), then NAME=VALUE lines
CL = ('{"cluster":{"chief":["mnist-chief-0.default.svc:2222"],"ps":["mnist-ps-0.default.svc:2222"],'
      '"worker":["mnist-worker-0.default.svc:2222","mnist-worker-1.default.svc:2222"]},')
put("fuzz_spec", "tf-worker", b"\0TF_CONFIG=" + (CL + '"task":{"type":"worker","index":1},"environment":"cloud"}').encode())
put("fuzz_spec", "tf-ps", b"\3TF_CONFIG=" + (CL + '"task":{"type":"ps","index":0}}').encode())
put("fuzz_spec", "tf-sparse", b"\0BATON_NNODES=3\nTF_CONFIG="
    b'{"cluster":{"worker":{"1":"sp-worker-1.default.svc:2222"},"ps":["sp-ps-0.default.svc:2222"]},'
    b'"task":{"type":"worker","index":1}}')
put("fuzz_spec", "pytorch", b"\0MASTER_ADDR=pt-master-0\nMASTER_PORT=23456\nWORLD_SIZE=12\nRANK=1\n"
    b"PET_NPROC_PER_NODE=4\nPET_NNODES=3\nPET_NODE_RANK=1\n")
put("fuzz_spec", "slurm", b"\0SLURM_JOB_ID=42\nSLURM_NNODES=4\nSLURM_NODEID=2\n"
    b"SLURM_JOB_NODELIST=node[01-03,07]\nSLURM_NTASKS_PER_NODE=2\n")
put("fuzz_spec", "mpi", b"\0OMPI_COMM_WORLD_SIZE=4\nOMPI_COMM_WORLD_RANK=3\nOMPI_COMM_WORLD_LOCAL_RANK=1\n"
    b"OMPI_COMM_WORLD_LOCAL_SIZE=2\nOMPI_COMM_WORLD_NODE_RANK=1\n")
put("fuzz_spec", "indexed", b"\0JOB_COMPLETION_INDEX=2\nBATON_NNODES=4\nBATON_RDZV=job-0.job:29400\n")

# fuzz_yaml: mode byte (gang scheduler), then a job file
for y, g in (("pytorchjob-elastic-mnist.yaml", 0), ("tfjob-mnist-ps.yaml", 1), ("trainjob-mnist.yaml", 0),
             ("mpijob-mnist.yaml", 2)):
    put("fuzz_yaml", y.replace(".yaml", ""), bytes([g]) + open(f"k8s/{y}", "rb").read())
put("fuzz_yaml", "anchors", b"\0a: &a {x: [1, 2, \"3\"], y: |\n  two\n  lines\n}\nb: *a\nc: [*a, *a]\n")


# fuzz_store: mode byte (odd: handshake first), then frames {u32 len, u8 cmd, payload}
def frame(cmd, payload=b""):
    return struct.pack("<IB", len(payload) + 1, cmd) + payload


def s(b):
    return struct.pack("<I", len(b)) + b


put("fuzz_store", "set-get-add", b"\1" + frame(1, s(b"k") + s(b"v")) + frame(2, struct.pack("<I", 100) + s(b"k"))
    + frame(3, s(b"n") + struct.pack("<q", 5)) + frame(9))
put("fuzz_store", "cas-delete", b"\1" + frame(4, s(b"k") + s(b"") + s(b"x")) + frame(8, s(b"k")) + frame(11))
put("fuzz_store", "wait-multi", b"\1" + frame(7, struct.pack("<I", 2) + s(b"a") + s(b"1") + s(b"b") + s(b"2"))
    + frame(6, struct.pack("<II", 50, 2) + s(b"a") + s(b"b")) + frame(5, struct.pack("<II", 20, 1) + s(b"zz"))
    + frame(10, s(b"dead") + s(b"1")))
put("fuzz_store", "raw-hello", b"\0" + struct.pack("<QII", 0x565A44524E4F5442, 1, 1) + bytes(32))


# fuzz_ps: mode byte (bit 1: handshake first; bit 0: rank), then frames
def opt(kind=0, cons=1):
    return struct.pack("<IIIfffff", kind, cons, 0, 0.01, 0.9, 0.9, 0.999, 1e-8)


init = s(b"w") + struct.pack("<IIQQI", 0, 1, 4, 0, 4) + opt() + struct.pack("<4f", 1, 2, 3, 4)
push = struct.pack("<QI", 1, 1) + s(b"w") + struct.pack("<II", 0, 4) + struct.pack("<4f", .5, .5, .5, .5)
pull = struct.pack("<I", 1) + s(b"w") + struct.pack("<II", 0, 4)
put("fuzz_ps", "init-push-pull", b"\2" + frame(1, init) + frame(2, push) + frame(3, pull) + frame(5) + frame(4, struct.pack("<I", 0)))
put("fuzz_ps", "adam-sync", b"\3" + frame(1, s(b"a") + struct.pack("<IIQQI", 0, 1, 2, 0, 2) + opt(2, 0)
    + struct.pack("<2f", 1, 1)) + frame(2, struct.pack("<QI", 0, 1) + s(b"a") + struct.pack("<II", 0, 2) + struct.pack("<2f", 1, 1)))
put("fuzz_ps", "raw", b"\0" + struct.pack("<QIIIIIQ", 0x565253504E4F5442, 2, 0, 2, 0, 0, 7) + bytes(32))
put("fuzz_ps", "resend-leave", b"\2" + frame(1, init) + frame(2, push) + frame(2, push) + frame(3, pull)
    + frame(4, struct.pack("<I", 2)))


# fuzz_idx: mode byte (bit 0: want 28x28), then an IDX file
def idx(n, r, c):
    return struct.pack(">IIII", 0x803, n, r, c) + bytes((i % 251) for i in range(n * r * c))


put("fuzz_idx", "images-2x3", b"\0" + idx(5, 2, 3))
put("fuzz_idx", "images-2x3.gz", b"\0" + gzip.compress(idx(5, 2, 3), mtime=0))
put("fuzz_idx", "image-28x28.gz", b"\1" + gzip.compress(idx(1, 28, 28), mtime=0))
put("fuzz_idx", "labels", b"\0" + struct.pack(">II", 0x801, 3) + b"\7\10\11")


# fuzz_ckpt: a PS checkpoint with one entry (its CRC trailer included), and a trainer header
def entry(name, count):
    return (s(name) + struct.pack("<IIQQI", 0, 1, count, 0, count) + opt(2) + struct.pack("<Q", 3)
            + struct.pack(f"<{3 * count}f", *range(3 * count)))


body = struct.pack("<QIIQ", 0x4B4350534E4F5442, 1, 0, 2) + entry(b"w", 3) + entry(b"b", 1)
put("fuzz_ckpt", "ps-2-entries", body + struct.pack("<I", zlib.crc32(body)))
put("fuzz_ckpt", "ps-no-trailer", body)


# version 2: the generation and two workers' push numbers; entries with counts and acc
def entry2(name, count):
    return (entry(name, count) + struct.pack("<II", 1, 1) + struct.pack("<QQ", 4, 3)
            + struct.pack(f"<{count}f", *range(count)))


body2 = (struct.pack("<QIIQII", 0x4B4350534E4F5442, 2, 0, 2, 1, 2) + struct.pack("<QQQI", 7, 4, 0, 0)
         + struct.pack("<QQQI", 8, 3, 4, 1) + entry2(b"w", 3) + entry2(b"b", 1))
put("fuzz_ckpt", "ps-v2-workers", body2 + struct.pack("<I", zlib.crc32(body2)))
put("fuzz_ckpt", "mnist-header", b"BTMNIST\0" + struct.pack("<IIQQQQIIIf", 1, 93322, 100, 100, 7, 42, 1, 3, 128, 0.5))


# fuzz_trace: flight-recorder dumps (launcher/trace.c's text), several separated by NUL bytes
def dump(rank, size, calls, comms=((0, "world"),), last_state="done"):
    lines = ["# baton flight recorder 2",
             f"rank={rank} size={size} node=0 host=vm pid={100 + rank} dumped_ns=1796280925545730280 "
             f"entries={len(calls)} comms={len(comms)}"]
    lines += [f"comm={c} size={size} rank={rank} name={n}" for c, n in comms]
    for i, (seq, comm, op, count) in enumerate(calls):
        state = last_state if i == len(calls) - 1 else "done"
        lines.append(f"seq={seq} comm={comm} op={op} dtype=float32 redop=sum count={count} root=-1 "
                     f"peers={size} start_ns={1796280922507864451 + 1000 * seq} "
                     f"end_ns={1796280922507865834 + 1000 * seq} state={state}")
    return ("\n".join(lines) + "\n").encode()


ahead = [(13, 0, "allreduce", 16), (14, 0, "allreduce", 16), (15, 0, "allreduce", 16)]
behind = [(13, 0, "allreduce", 16), (14, 0, "allreduce", 16)]
put("fuzz_trace", "never-entered", dump(0, 2, ahead, last_state="failed") + b"\0" + dump(1, 2, behind))
put("fuzz_trace", "counts-differ", dump(0, 2, behind) + b"\0"
    + dump(1, 2, [(13, 0, "allreduce", 16), (14, 0, "allreduce", 12)]))
sub = ((0, "world"), (3288334664, "c3e0a9b12 (world ranks 1, 3)"))
put("fuzz_trace", "sub-communicator", dump(1, 4, [(4, 3288334664, "allreduce", 8)], sub) + b"\0"
    + dump(3, 4, [(3, 3288334664, "allreduce", 8)], sub))
put("fuzz_trace", "torn", dump(0, 2, ahead)[:-80])


# fuzz_xs: a node's published records (launcher/run_flight.c xs_serialize): u32 version 4, u32
# sections; each section u32 id, size, local members, records, a 96-byte name, then 80-byte
# records (seq, tmax, tsecond, last, op, count, root, srank, dtype, redop, has_hash, hash,
# gap_last, gap_other: the gaps in ns, INT64_MIN unknown, INT64_MIN + 1 none)
def xs_rec(seq, last, op=0, count=1024, h=0, gaps=(2000000, 1990000)):
    r = struct.pack("<QqqiiQii", seq, 1796280922507864451 + 1000 * seq, 1796280922507860000 + 1000 * seq,
                    last, op, count, -1, 0)
    return r + bytes([0, 0, 1 if h else 0, 0, 0, 0, 0, 0]) + struct.pack("<Qqq", h, *gaps)


def xs_sec(cid, size, nlocal, name, recs):
    return struct.pack("<IIII", cid, size, nlocal, len(recs)) + name.encode().ljust(96, b"\0") + b"".join(recs)


put("fuzz_xs", "world", struct.pack("<II", 4, 1) + xs_sec(0, 4, 2, "world", [xs_rec(64, 1), xs_rec(128, 3, h=0x9e3779b97f4a7c15)]))
put("fuzz_xs", "world-and-child", struct.pack("<II", 4, 2) + xs_sec(0, 4, 2, "world", [xs_rec(17, 2, gaps=(-2**63, 5))])
    + xs_sec(3288334664, 2, 1, "c3e0a9b12 (world ranks 1, 3)", [xs_rec(5, 3, gaps=(7, -2**63 + 1)), xs_rec(6, 3), xs_rec(7, 1)]))
put("fuzz_xs", "cut", (struct.pack("<II", 4, 1) + xs_sec(0, 2, 1, "world", [xs_rec(9, 0)]))[:-10])
