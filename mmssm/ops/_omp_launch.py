"""Run numba kernels as parallel regions of torch's own OpenMP team.

Why: torch's CPU operators run on a GNU OpenMP (libgomp) thread team whose
workers spin for a while after each parallel region, waiting for the next
one. A numba kernel that follows a torch operator on a thread of another pool
shares its core with that spinning worker, and every hand-off to another pool
costs tens of microseconds (a Python future, a condition variable). On a
2-core machine this made Vim-Ti's scan slower on two threads than on one at
224x224. Launched with ``GOMP_parallel`` on the team torch itself uses, a
kernel runs on the threads that torch's next operator will use, while they
are still awake, and a launch costs ~2 microseconds.

How: the libgomp that torch loaded is found in ``/proc/self/maps`` and opened
with ctypes (the same library, hence the same team). For every
(kernel, argument types) pair a small numba ``cfunc`` trampoline is
generated: it unpacks the kernel's arguments from an int64/float64 block
(array addresses and shapes, integers, floats), asks OpenMP for its thread
number, and calls the kernel on its contiguous range of work items, exactly
as the thread-pool path splits them. The kernel itself is the same compiled
function as on the thread pool, so the results are identical. The
trampoline's source is written to a file (beside numba's cache of mmssm's
kernels, or in the user's cache folder) and compiled with ``cache=True``, so
only the first process on a machine pays its compilation (0.3-1 s a kernel);
the OpenMP entry points are called by name (resolved by numba's linker in the
libgomp torch loaded), which keeps the compiled trampolines cacheable.

Only C-contiguous numpy arrays, bools, ints and floats are passed this way;
any other argument (or no libgomp in the process, e.g. an LLVM/Intel OpenMP
build of torch, or ``MMSSM_CPU_OMP=0``) makes :func:`launcher` return None,
and :func:`mmssm.ops.cpu_threads.run_parallel` keeps its thread pool, as it
does in forked children (GNU OpenMP cannot start a team there).
numba kernels may not raise inside a trampoline: mmssm's kernels have no
raising paths (no bounds checks, ``error_model='numpy'`` or no division).
"""
import ctypes
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading

import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _numba_env  # noqa: F401  (numba's code-generation setting)

#: ``MMSSM_CPU_OMP=0`` keeps the kernels on mmssm's thread pool.
OMP_ENV = 'MMSSM_CPU_OMP'

_LOCK = threading.Lock()
_TRAMPOLINES = {}
_Tensor = torch.Tensor
#: torch dtypes a tensor argument may have, as the kernels' numpy dtypes
_NP_DTYPES = {
    torch.float32: np.dtype('float32'),
    torch.float64: np.dtype('float64'),
    torch.int64: np.dtype('int64'),
    torch.int32: np.dtype('int32'),
    torch.uint8: np.dtype('uint8'),
    torch.bool: np.dtype('bool'),
}
_GOMP = []  # [library or None], resolved once


@intrinsic
def _as_voidptr(typingctx, addr):
    """An int64 address as a ``void*`` (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(types.int64), codegen


def _omp_int_call(name):
    """An intrinsic calling the C function ``int name(void)`` by name."""

    @intrinsic
    def call(typingctx):

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.IntType(32), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            return builder.sext(builder.call(fn, []), ir.IntType(64))

        return types.int64(), codegen

    return call


omp_thread_num = _omp_int_call('omp_get_thread_num')
omp_num_threads = _omp_int_call('omp_get_num_threads')


def _libgomp():
    """The libgomp torch loaded (ctypes handle with typed entry points), or
    None."""
    if _GOMP:
        return _GOMP[0]
    lib = None
    try:
        import torch  # noqa: F401  (loads torch's OpenMP runtime)
        with open('/proc/self/maps') as f:
            paths = sorted({
                line.split()[-1]
                for line in f if 'libgomp' in line.rsplit('/', 1)[-1]
                and line.split()[-1].startswith('/')
            })
        if len(paths) == 1:  # two runtimes: no way to know which is torch's
            cand = ctypes.CDLL(paths[0])
            cand.GOMP_parallel.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint
            ]
            cand.GOMP_parallel.restype = None
            for name in ('omp_get_thread_num', 'omp_get_num_threads'):
                getattr(cand, name)  # AttributeError if missing
            # numba's linker resolves the trampolines' calls by name here
            import llvmlite.binding as llvm
            llvm.load_library_permanently(paths[0])
            lib = cand
    except (OSError, AttributeError, RuntimeError):
        lib = None
    _GOMP.append(lib)
    return lib


def _build(kernel, kinds):
    """Generate and compile the trampoline of ``kernel`` for ``kinds``."""
    lines = ['def trampoline(data):']
    nint = 2  # [0]: address of the float block, [1]: number of work items
    nflt = 0
    names = []
    body = []
    for k, kind in enumerate(kinds):
        name = f'a{k}'
        names.append(name)
        if isinstance(kind, tuple):
            dtype, ndim = kind
            if dtype.kind not in 'fiub':
                return None
            dtype = dtype.str
            shape = ', '.join(f'ib[{nint + 1 + d}]' for d in range(ndim))
            body.append(f'    {name} = carray(_as_voidptr(ib[{nint}]), '
                        f'({shape},), dtype=np.dtype("{dtype}"))')
            nint += 1 + ndim
        elif kind == 'b':
            body.append(f'    {name} = ib[{nint}] != 0')
            nint += 1
        elif kind == 'i':
            body.append(f'    {name} = ib[{nint}]')
            nint += 1
        else:
            body.append(f'    {name} = fb[{nflt}]')
            nflt += 1
    lines.append(f'    ib = carray(data, {nint}, dtype=np.int64)')
    if nflt:
        lines.append(f'    fb = carray(_as_voidptr(ib[0]), {nflt}, '
                     'dtype=np.float64)')
    lines += [
        '    nthr = omp_num_threads()', '    tid = omp_thread_num()',
        '    items = ib[1]', '    begin = items * tid // nthr',
        '    end = items * (tid + 1) // nthr', *body, '    if begin < end:',
        f'        _kernel({", ".join(names + ["begin", "end"])})'
    ]
    func = '\n'.join(lines) + '\n'
    module, name = kernel.__module__, kernel.__name__
    importable = getattr(sys.modules.get(module), name, None) is kernel
    if importable:
        source = (
            '# generated by mmssm.ops._omp_launch: the OpenMP trampoline of '
            f'{module}.{name}\n'
            f'# kernel sources {_kernel_fingerprint(kernel)}\n'
            'import numpy as np\nfrom numba import carray, cfunc, types\n'
            'from mmssm.ops._omp_launch import (_as_voidptr, omp_num_threads,'
            '\n                                   omp_thread_num)\n'
            f'from {module} import {name} as _kernel\n\n\n'
            '@cfunc(types.void(types.voidptr), cache=True)\n' + func)
        path = _source_file(source)
        if path is not None:
            modname = 'mmssm_omp_' + _stem(path)
            mod = sys.modules.get(modname)
            if mod is None:
                spec = importlib.util.spec_from_file_location(modname, path)
                mod = importlib.util.module_from_spec(spec)
                # registered first: numba's cache finds the module by name
                sys.modules[modname] = mod
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    del sys.modules[modname]
                    raise
            return mod.trampoline, nint, nflt
    # a kernel that is not importable by name (or no writable folder):
    # compiled in memory, once per process
    scope = dict(
        carray=carray,
        np=np,
        _as_voidptr=_as_voidptr,
        omp_num_threads=omp_num_threads,
        omp_thread_num=omp_thread_num,
        _kernel=kernel)
    exec(compile(func, f'<mmssm trampoline {name}>', 'exec'), scope)
    compiled = cfunc(types.void(types.voidptr))(scope['trampoline'])
    return compiled, nint, nflt


def _kernel_fingerprint(kernel):
    """Hash of the kernel's module file and of mmssm's numba kernel modules:
    numba's cache of a trampoline does not notice a change of the kernel it
    calls, so a changed kernel must give the trampoline another file."""
    import glob
    import inspect
    import numba
    files = set(glob.glob(os.path.join(os.path.dirname(__file__),
                                       '_*numba*.py')))
    try:
        files.add(inspect.getfile(kernel.py_func))
    except TypeError:
        pass
    digest = hashlib.sha1(numba.__version__.encode())
    for path in sorted(files):
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _cache_dirs():
    yield os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       '__pycache__', 'omp_trampolines')
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
        os.path.expanduser('~'), '.cache')
    yield os.path.join(base, 'mmssm', 'omp_trampolines')
    yield os.path.join(tempfile.gettempdir(), f'mmssm-{getattr(os, "getuid", lambda: 0)()}',
                       'omp_trampolines')


def _source_file(source):
    """Path of a file holding ``source`` (written atomically on first use),
    named by its hash, in the first writable cache folder; None if none."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    for folder in _cache_dirs():
        path = os.path.join(folder, f't_{digest}.py')
        try:
            with open(path) as f:
                if f.read() == source:
                    return path
        except OSError:
            pass
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
            with os.fdopen(fd, 'w') as f:
                f.write(source)
            os.replace(tmp, path)
            return path
        except OSError:
            continue
    return None


def available() -> bool:
    """Whether kernels can be launched on torch's OpenMP team here."""
    return os.environ.get(OMP_ENV, '1') != '0' and _libgomp() is not None


def launcher(kernel, args):
    """A callable ``launch(num_items, threads)`` that runs
    ``kernel(*args, begin, end)`` over the work items on ``threads`` threads
    of torch's OpenMP team, or None where that is not possible (see the
    module docstring). ``args`` may hold C-contiguous CPU tensors in place
    of the numpy arrays the kernel takes (the same trampoline serves both).
    Called once per kernel launch, so kept lean (~10 microseconds for a
    kernel with a dozen tensor arguments)."""
    if not hasattr(kernel, 'py_func') or not available():
        return None
    kinds = []
    ints = [0, 0]  # the float block's address, the number of work items
    floats = []
    for arg in args:
        kind = type(arg)
        if kind is _Tensor or isinstance(arg, _Tensor):
            # a CPU tensor is taken as the array it views: its address and
            # shape cost ~0.3 us, a numpy array's ~2.5 us (the
            # __array_interface__ dict), which added up to ~3 % of Vim-Ti's
            # time at 224x224
            dtype = _NP_DTYPES.get(arg.dtype)
            if dtype is None or not arg.is_cpu or not arg.is_contiguous():
                return None
            kinds.append((dtype, arg.dim()))
            ints.append(arg.data_ptr())
            ints.extend(arg.shape)
        elif kind is np.ndarray:
            if not arg.flags.c_contiguous:
                return None
            kinds.append((arg.dtype, arg.ndim))
            ints.append(arg.__array_interface__['data'][0])
            ints.extend(arg.shape)
        elif kind is bool or kind is np.bool_:
            kinds.append('b')
            ints.append(int(arg))
        elif kind is int or isinstance(arg, np.integer):
            kinds.append('i')
            ints.append(int(arg))
        elif kind is float or isinstance(arg, np.floating):
            kinds.append('f')
            floats.append(float(arg))
        else:
            return None
    key = (kernel, tuple(kinds))
    try:
        entry = _TRAMPOLINES[key]
    except KeyError:
        with _LOCK:
            entry = _TRAMPOLINES.get(key)
            if entry is None:
                entry = _build(kernel, kinds)
                # the cfunc (kept alive here), its argument counts and its
                # address; (None, 0): an array numba cannot take this way
                entry = (None, 0) if entry is None else \
                    (*entry, entry[0].address)
                _TRAMPOLINES[key] = entry
    address = entry[-1]
    if not address:
        return None
    fb = None
    if floats:  # (the trampoline reads no float block when there is none)
        fb = np.array(floats, dtype=np.float64)
        ints[0] = fb.ctypes.data
    ib = np.array(ints, dtype=np.int64)
    data = ib.ctypes.data
    parallel = _libgomp().GOMP_parallel

    def launch(num_items, threads):
        ib[1] = num_items
        # ctypes releases the GIL for the call; ``args`` and the blocks are
        # referenced here, so they stay alive until it returns
        parallel(address, data, threads, 0)
        return args, fb, ib

    return launch
