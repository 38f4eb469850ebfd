"""baton: libbaton from Python (ctypes), and a small Horovod-style API.

    import baton
    baton.init()                        # joins the job `baton run` started (a job of one without it)
    y = baton.allreduce(x)              # x: a torch tensor or a numpy array; the average, as Horovod
    baton.allreduce_(x, op="sum")       # in place
    baton.broadcast_(x, root=0)

The arrays are handed to libbaton by address: nothing is copied on the way in or out (a
non-contiguous array is refused; make it contiguous first). `import baton.torch` registers the
torch.distributed backend "baton", which runs over the same communicator.

Errors are baton.BatonError (a RuntimeError) with libbaton's story: which call, which peer,
errno and a hint.
"""
import atexit
import ctypes
import os
import threading

__all__ = ["BatonError", "init", "initialized", "shutdown", "rank", "size", "local_rank",
           "local_size", "allreduce", "allreduce_", "broadcast_", "barrier"]


class BatonError(RuntimeError):
    """A libbaton call failed; str() holds bt_strerror and bt_last_error."""


_HERE = os.path.dirname(os.path.abspath(__file__))
_DTYPES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3, "int32": 4, "int64": 5,
           "uint8": 6}
_OPS = {"sum": 0, "prod": 1, "product": 1, "min": 2, "max": 3, "avg": 4, "average": 4}


def _load():
    """libbaton.so: BATON_LIB, else beside this package in the build tree (build/python/baton ->
    build/) or in an installed prefix (PREFIX/lib/python3.X/dist-packages/baton -> PREFIX/lib),
    else the loader's search path."""
    names = [os.environ.get("BATON_LIB", "")]
    for up in (("..", ".."), ("..", "..", "..")):
        names.append(os.path.join(_HERE, *up, "libbaton.so"))
    names.append("libbaton.so.0")
    errors = []
    for n in names:
        if n and (os.path.exists(n) or "/" not in n):
            try:
                return ctypes.CDLL(n, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                errors.append(str(e))
    raise ImportError("baton: cannot load libbaton.so (%s); build it with `make` or set "
                      "BATON_LIB=/path/to/libbaton.so" % ("; ".join(errors) or "not found"))


_lib = _load()
_lib.bt_strerror.restype = ctypes.c_char_p
_lib.bt_strerror.argtypes = [ctypes.c_int]
_lib.bt_last_error.restype = ctypes.c_char_p
_lib.bt_last_error.argtypes = [ctypes.c_void_p]
for _f in ("bt_comm_rank", "bt_comm_size", "bt_comm_local_rank", "bt_comm_local_size"):
    getattr(_lib, _f).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
_lib.bt_init.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
_lib.bt_finalize.argtypes = [ctypes.c_void_p]
_lib.bt_allreduce.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.c_int, ctypes.c_int]
_lib.bt_broadcast.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                              ctypes.c_int]
_lib.bt_barrier.argtypes = [ctypes.c_void_p]

_lock = threading.Lock()
_comm = None          # the job's communicator (a bt_comm *), made by init()
_at_shutdown = []     # callables run before bt_finalize (baton.torch stops its groups' threads)


def _check(rc, what, comm=None):
    if rc != 0:
        detail = _lib.bt_last_error(comm).decode(errors="replace")
        raise BatonError("baton: %s: %s%s" % (what, _lib.bt_strerror(rc).decode(),
                                                ": " + detail if detail else ""))


def init():
    """Joins the job (bt_init) once per process; returns the communicator's address."""
    global _comm
    with _lock:
        if _comm is None:
            c = ctypes.c_void_p()
            _check(_lib.bt_init(ctypes.byref(c)), "bt_init")
            _comm = c.value
        return _comm


def initialized():
    return _comm is not None


def shutdown(check=True):
    """Leaves the job (bt_finalize); also run at exit, where the communicator's sticky error
    (already raised by the call that met it) is not raised again."""
    global _comm
    while _at_shutdown:
        _at_shutdown.pop()()
    with _lock:
        c, _comm = _comm, None
    if c is not None:
        rc = _lib.bt_finalize(c)
        if check:
            _check(rc, "bt_finalize")


atexit.register(shutdown, check=False)


def _get(fn):
    v = ctypes.c_int()
    _check(getattr(_lib, fn)(init(), ctypes.byref(v)), fn, _comm)
    return v.value


def rank():
    return _get("bt_comm_rank")


def size():
    return _get("bt_comm_size")


def local_rank():
    return _get("bt_comm_local_rank")


def local_size():
    return _get("bt_comm_local_size")


def _buffer(x):
    """(address, element count, bt dtype) of a torch tensor or numpy array, without a copy."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        if x.device.type != "cpu":
            raise ValueError("baton: the tensor is on %s; baton.allreduce takes CPU tensors" % x.device)
        if not x.is_contiguous():
            raise ValueError("baton: the tensor is not contiguous; pass x.contiguous()")
        name = str(x.dtype).replace("torch.", "")
        addr, n = x.data_ptr(), x.numel()
    elif hasattr(x, "__array_interface__"):
        ai = x.__array_interface__
        if not x.flags["C_CONTIGUOUS"]:
            raise ValueError("baton: the array is not C-contiguous; pass numpy.ascontiguousarray(x)")
        if ai["data"][1]:
            raise ValueError("baton: the array is read-only")
        name = x.dtype.name
        addr, n = ai["data"][0], x.size
    else:
        raise TypeError("baton: want a torch tensor or a numpy array, got %s" % type(x).__name__)
    if name not in _DTYPES:
        raise TypeError("baton: dtype %s is not supported; use one of %s" % (name, ", ".join(_DTYPES)))
    return addr, n, _DTYPES[name]


def _op(op):
    try:
        return _OPS[op.lower()]
    except (KeyError, AttributeError):
        raise ValueError("baton: op %r: want one of sum, avg, prod, min, max" % (op,)) from None


def allreduce_(x, op="avg"):
    """Reduces x over every rank, in place; returns x. op: avg (default, as Horovod), sum,
    prod, min, max."""
    addr, n, dt = _buffer(x)
    c = init()
    _check(_lib.bt_allreduce(c, addr, addr, n, dt, _op(op)), "allreduce", c)
    return x


def allreduce(x, op="avg"):
    """Like allreduce_, into a new tensor/array (x is left as it is): libbaton reads x and
    writes the result straight into the new one."""
    addr, n, dt = _buffer(x)
    if type(x).__module__.startswith("torch"):
        import torch
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    else:
        import numpy
        out = numpy.empty_like(x, order="C")
    c = init()
    _check(_lib.bt_allreduce(c, addr, _buffer(out)[0], n, dt, _op(op)), "allreduce", c)
    return out


def broadcast_(x, root=0):
    """Copies root's x into every rank's x, in place; returns x."""
    addr, n, dt = _buffer(x)
    c = init()
    _check(_lib.bt_broadcast(c, addr, n, dt, int(root)), "broadcast", c)
    return x


def barrier():
    c = init()
    _check(_lib.bt_barrier(c), "barrier", c)
