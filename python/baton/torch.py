"""baton.torch: `import baton.torch` registers the torch.distributed backend "baton".

    import torch.distributed as dist
    import baton.torch
    dist.init_process_group("baton")                 # under `baton run`; env:// as for gloo
    dist.all_reduce(t)                               # libbaton's allreduce
    g = dist.new_group([0, 1])                       # a sub-communicator of libbaton

The backend is a thin C++ adapter (baton/_torch.so, built from python/baton_torch.cpp by the
Makefile against Debian's libtorch-dev) over the communicator that baton.init() makes. It takes
CPU tensors of float32, float64, float16, bfloat16, int32, int64 and uint8; ops SUM, AVG,
PRODUCT, MIN and MAX; calls return async Work objects.
"""
import os
import zlib

import baton

try:
    import torch
    import torch.distributed as _dist
except ImportError as e:  # torch missing: one clear line
    raise ImportError("baton.torch needs PyTorch (Debian: apt-get install python3-torch; "
                      "its torch is importable from /usr/bin/python3 only): %s" % e) from None

_BUILT_FOR = "@TORCH_VERSION@"  # replaced by the Makefile with the version it compiled against
if not _BUILT_FOR.startswith("@") and torch.__version__.split("+")[0] != _BUILT_FOR.split("+")[0]:
    raise ImportError("baton.torch was built against torch %s but this Python has torch %s; "
                      "rebuild it with `make` (it compiles against the system's libtorch-dev)"
                      % (_BUILT_FOR, torch.__version__))
try:
    from baton import _torch
except ImportError as e:
    raise ImportError("baton.torch: the C++ extension baton/_torch.so is not there or does not "
                      "load (%s); `make` builds it where libtorch-dev and pybind11-dev are "
                      "installed (its summary line says why it did not)" % e) from None

_groups = []  # every ProcessGroupBaton made, stopped before bt_finalize at exit


def _subcomm(comm, ranks, tag):
    """A libbaton communicator of ranks (global ranks, this rank among them): its members call
    bt_comm_create_group with the same list and tag (torch's group id, the same on every rank)."""
    import ctypes
    lib = baton._lib
    arr = (ctypes.c_int * len(ranks))(*ranks)
    out = ctypes.c_void_p()
    lib.bt_comm_create_group.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_int), ctypes.c_uint64,
                                         ctypes.POINTER(ctypes.c_void_p)]
    baton._check(lib.bt_comm_create_group(comm, len(ranks), arr, tag, ctypes.byref(out)),
                 "bt_comm_create_group(%d ranks)" % len(ranks), comm)
    return out.value


def _create(opts, pg_options=None):
    """The creator torch.distributed calls (extended API: it gets the group's global ranks)."""
    timeout = opts.timeout.total_seconds()
    if not baton.initialized() and "BATON_TIMEOUT" not in os.environ:
        os.environ["BATON_TIMEOUT"] = "%g" % timeout  # init_process_group(timeout=...)
    comm = baton.init()
    ranks = list(opts.global_ranks_in_group or [])
    name = str(opts.group_id)
    owned = bool(ranks)  # new_group: a communicator of its own, even over every rank
    if owned:
        tag = int(name) if name.isdigit() else zlib.crc32(name.encode())
        comm = _subcomm(comm, ranks, tag + 1)
    pg = _torch.ProcessGroupBaton(opts.group_rank, opts.group_size, comm, name or "default",
                                  owned)
    _groups.append(pg)
    return pg


def _stop_groups():
    while _groups:
        _groups.pop()._shutdown()


baton._at_shutdown.append(_stop_groups)
if "BATON" not in _dist.Backend._plugins:
    _dist.Backend.register_backend("baton", _create, extended_api=True)
