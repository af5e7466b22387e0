"""Fixes for the pinned OpenMMLab stack, applied when :mod:`mmssm` is imported.

Five traps of torch 2.14 / mmengine 0.10.7 / setuptools are handled here:

* ``pkg_resources``: mmengine resolves ``mmdet::``/``mmseg::``/``mmpretrain::``
  base configs through :mod:`pkg_resources`, which setuptools >= 82 no longer
  ships. :func:`patch_mmengine_package_lookup` swaps mmengine's two lookup
  functions for :mod:`importlib.metadata` based ones when ``pkg_resources`` is
  missing (the install script also pins ``setuptools<82``).
* ``weights_only``: since torch 2.6, :func:`torch.load` refuses any pickled
  object outside an allow-list. mmengine training checkpoints hold
  :class:`~mmengine.logging.HistoryBuffer` objects and numpy arrays (``--resume``
  and ``tools/test.py`` break), and official Vim checkpoints hold an
  :class:`argparse.Namespace`. :func:`register_torch_safe_globals` adds exactly
  these plain data containers to torch's allow-list instead of turning the
  safety check off.
* Torn checkpoints: mmengine writes ``iter_N.pth`` (``LocalBackend.put``) and
  ``last_checkpoint`` (``CheckpointHook``) in place, so a kill while saving
  leaves a truncated file under the final name, or a ``last_checkpoint``
  naming one. :func:`patch_atomic_checkpoint_writes` makes both writes go to
  a temporary file in the same directory, fsync it and ``os.replace`` it into
  place (:func:`atomic_write`).
* Orphaned data workers: a DataLoader worker notices a dead parent only
  while it waits on its queue, and a killed training's workers were seen
  alive a minute later. :func:`patch_dataloader_worker_death` makes
  mmengine's default ``worker_init_fn`` ask Linux to SIGKILL the worker when
  the process that started it dies (``prctl(PR_SET_PDEATHSIG)``).
* CPU multi-process runs: :class:`CPUDistributedDataParallel` lets mmengine's
  runner wrap a CPU model for a ``gloo`` process group (mmengine always passes
  ``device_ids=[LOCAL_RANK]``, which torch rejects for CPU modules).
"""
import argparse
import builtins
import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import os.path as osp
import stat
import uuid

import numpy as np
import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

_PATCHED = {
    'package_lookup': False,
    'safe_globals': False,
    'atomic_writes': False
}


def _is_installed(package: str) -> bool:
    """``importlib.metadata`` replacement of mmengine's ``is_installed``."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def _package2module(package: str) -> str:
    """Top-level module of an installed distribution (``mmsegmentation`` ->
    ``mmseg``), read from its metadata."""
    dist = importlib.metadata.distribution(package)
    top_level = dist.read_text('top_level.txt')
    if top_level:
        return top_level.split()[0]
    for name, dists in importlib.metadata.packages_distributions().items():
        if dist.metadata['Name'] in dists:
            return name
    raise ValueError(f'cannot infer the module name of {package}')


def _get_installed_path(package: str) -> str:
    """``importlib.metadata`` replacement of mmengine's ``get_installed_path``.

    Returns the folder of the importable module that ``package`` names
    (``mmsegmentation`` -> ``.../site-packages/mmseg``).
    """
    module = _package2module(package) if _is_installed(package) else package
    spec = importlib.util.find_spec(module)
    if spec is None:
        spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise importlib.metadata.PackageNotFoundError(
            f'{package} is not installed (or is a namespace package)')
    return osp.dirname(spec.origin)


def patch_mmengine_package_lookup(force: bool = False) -> bool:
    """Make mmengine's base-config lookup work without ``pkg_resources``.

    Whether ``pkg_resources`` is there is found without importing it
    (``importlib.util.find_spec``; a module set to None in ``sys.modules``
    counts as missing).

    Args:
        force (bool): Patch even when ``pkg_resources`` is importable.
            Defaults to False.

    Returns:
        bool: Whether mmengine's functions were replaced.
    """
    # find_spec, not an import: importing pkg_resources emits setuptools'
    # DeprecationWarning and takes ~0.3 s
    if not force and importlib.util.find_spec('pkg_resources') is not None:
        return False
    import mmengine.config.config as config_module
    import mmengine.utils as utils_module
    import mmengine.utils.package_utils as package_utils
    package_utils.package2module = _package2module
    for module in (package_utils, utils_module, config_module):
        if hasattr(module, 'is_installed'):
            module.is_installed = _is_installed
        if hasattr(module, 'get_installed_path'):
            module.get_installed_path = _get_installed_path
    _PATCHED['package_lookup'] = True
    return True


def _numpy_safe_globals():
    """numpy objects that pickled arrays and scalars reference."""
    if int(np.__version__.split('.')[0]) >= 2:
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    objs = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of numpy.dtypes.*DType
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        objs += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
        ]
    return objs


def _history_buffer_getstate(self) -> dict:
    """Pickle a HistoryBuffer as plain data.

    mmengine 0.10.7 also pickles its ``_statistics_methods`` (functions,
    stored through ``getattr``), which ``weights_only`` loading must refuse.
    They are class-level and re-registered at import, so they are left out.
    """
    return {
        k: v
        for k, v in self.__dict__.items() if k != 'statistics_methods'
    }


def register_torch_safe_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine and official
    checkpoints.

    Allow-lists the plain data containers they hold (HistoryBuffer, numpy
    arrays and scalars, argparse.Namespace) and makes HistoryBuffer pickle
    without function references. Checkpoints written by plain mmengine
    0.10.7 (with those function references) are still refused by torch.
    """
    if _PATCHED['safe_globals']:
        return
    from mmengine.logging.history_buffer import HistoryBuffer as _HB
    _HB.__getstate__ = _history_buffer_getstate
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 has no allow-list and loads everything
        return
    from mmengine.logging.history_buffer import HistoryBuffer
    add([HistoryBuffer, argparse.Namespace] + _numpy_safe_globals())
    _PATCHED['safe_globals'] = True


def _fsync_dir(dirname: str) -> None:
    """Make a rename in ``dirname`` durable (best effort: not on Windows)."""
    try:
        fd = os.open(dirname or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode: str = 'wb', **kwargs):
    """Open ``path`` for writing so that it is replaced all at once or not at
    all.

    The data goes to a hidden temporary file in the same directory
    (``.NAME.<random>.tmp``, created with the umask's permissions); on a
    clean exit it is flushed, fsynced and renamed over ``path``
    (``os.replace``) and the directory is fsynced. When the body raises, the
    temporary file is removed and ``path`` is left as it was. A process
    killed in between leaves at most the hidden temporary file, never a
    partial ``path``.

    Args:
        path (str | Path): The file to (re)write.
        mode (str): ``'w'``/``'wb'`` (or with ``'+'``). Defaults to ``'wb'``.
        **kwargs: Passed to :func:`open` (``encoding`` ...).

    Yields:
        The open temporary file.
    """
    path = os.fspath(path)
    dirname, name = osp.split(osp.abspath(path))
    tmp = osp.join(dirname, f'.{name}.{uuid.uuid4().hex[:12]}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dirname)


def _replaceable(path) -> bool:
    """Whether ``path`` may be replaced by a rename: missing, or a regular
    file that is not a symlink (devices, FIFOs and links are written in
    place, as before)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode)


def _atomic_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` writing through :func:`atomic_write`."""
    if not _replaceable(filepath):
        return _ORIGINAL['put'](self, obj, filepath)
    os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
    with atomic_write(filepath, 'wb') as f:
        f.write(obj)


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """``open`` as seen by mmengine's ``checkpoint_hook`` module.

    Its only use is writing ``WORK_DIR/last_checkpoint``; writes of that file
    go through :func:`atomic_write`, anything else to :func:`open`.
    """
    if osp.basename(os.fspath(file)) == 'last_checkpoint' and \
            mode.startswith('w') and _replaceable(file):
        return atomic_write(file, mode, *args, **kwargs)
    return builtins.open(file, mode, *args, **kwargs)


_ORIGINAL = {}


def patch_atomic_checkpoint_writes() -> bool:
    """Make mmengine's checkpoint and ``last_checkpoint`` writes atomic.

    ``mmengine.runner.checkpoint.save_checkpoint`` (used by
    ``Runner.save_checkpoint``, hence ``CheckpointHook``, best-checkpoint
    saving and the strategies) serialises the whole checkpoint into memory
    and then calls the file backend's ``put``; :class:`LocalBackend`'s
    ``put`` is replaced by one writing through :func:`atomic_write` (for
    every local file written with ``put``, checkpoints included). The
    ``last_checkpoint`` pointer written by ``CheckpointHook`` after each
    save goes through :func:`atomic_write` too, so it only ever names a
    completely written checkpoint. Remote backends are untouched.

    Returns:
        bool: Whether the patch was applied now (False when it already was).
    """
    if _PATCHED['atomic_writes']:
        return False
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    from mmengine.fileio.backends.local_backend import LocalBackend
    _ORIGINAL['put'] = LocalBackend.put
    LocalBackend.put = _atomic_put
    checkpoint_hook.open = _checkpoint_hook_open
    _PATCHED['atomic_writes'] = True
    return True


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for models on the CPU (``gloo`` backend).

    mmengine's runner passes ``device_ids=[LOCAL_RANK]`` to every
    ``DistributedDataParallel`` subclass; torch only accepts ``None`` for a
    CPU module, so it is dropped here. ``tools/train.py`` selects this wrapper
    when a launcher is used without a GPU.

    Args:
        module (nn.Module): The model to wrap.
        device_ids (list[int], optional): Kept for GPU modules only.
        **kwargs: Passed to :class:`MMDistributedDataParallel`.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(
            module=module, device_ids=None if on_cpu else device_ids, **kwargs)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Have Linux SIGKILL this process when the thread that started it
    exits (``prctl(PR_SET_PDEATHSIG, SIGKILL)``). Returns whether the request
    was made (False off Linux or without libc). A parent that dies between
    the worker's start and this call is not covered (torch's own check,
    while the worker waits on its queue, still is)."""
    import ctypes
    import ctypes.util
    import signal
    import sys
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6',
                           use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0,
                          0) == 0
    except (OSError, AttributeError):
        return False


class _ParentDeathInit:
    """mmengine's ``default_worker_init_fn`` preceded by
    :func:`die_with_parent` (a picklable callable: workers may be started
    with ``spawn``)."""

    def __init__(self, init_fn):
        self.init_fn = init_fn

    def __call__(self, worker_id, *args, **kwargs):
        die_with_parent()
        return self.init_fn(worker_id, *args, **kwargs)


def patch_dataloader_worker_death() -> bool:
    """Make the data workers of mmengine runners die with their parent.

    mmengine's runner builds every DataLoader's ``worker_init_fn`` from
    ``default_worker_init_fn`` (seeding) unless a config names its own; the
    runner module's reference is wrapped so that each worker first calls
    :func:`die_with_parent`. Without it, a worker of a killed training
    lives on until it next checks its parent while waiting on its queue.
    Configs with their own ``worker_init_fn`` are left as they are.
    Idempotent; returns whether the wrapper is in place.
    """
    from mmengine.runner import runner as runner_module
    current = runner_module.default_worker_init_fn
    if not isinstance(current, _ParentDeathInit):
        runner_module.default_worker_init_fn = _ParentDeathInit(current)
    return True


def setup_env() -> None:
    """Apply every stack fix (idempotent)."""
    patch_mmengine_package_lookup()
    register_torch_safe_globals()
    patch_atomic_checkpoint_writes()
    patch_dataloader_worker_death()
