"""Checkpoints and ``last_checkpoint`` are written atomically
(:func:`mmssm.utils.patch_atomic_checkpoint_writes`, applied by
``import mmssm``).

An interrupted save is simulated at the operating-system level: a file size
limit (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored) makes the ``write`` of the
checkpoint fail halfway, whatever file it goes to. Control runs with
mmengine's own writers show that the same interruption leaves a partial file
under the final name there.
"""
import contextlib
import hashlib
import os
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn

import mmssm  # noqa: F401  (applies the patch)

resource = pytest.importorskip('resource')
signal = pytest.importorskip('signal')
if not hasattr(signal, 'SIGXFSZ'):
    pytest.skip('needs SIGXFSZ (POSIX)', allow_module_level=True)


@contextlib.contextmanager
def file_size_limit(nbytes):
    """Writes past ``nbytes`` into any file fail with ``OSError(EFBIG)``."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


LIMIT = 1 << 20  # 1 MiB: the checkpoints below hold 2 MiB of weights


def _toy_runner(work_dir):
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(512 * 1024))

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=((self.w[:4] * inputs).sum() - 1)**2)

    class LimitBeforeSecondSave(Hook):
        """Before iteration 4 (whose checkpoint is the second), record the
        first save and limit the file size."""
        priority = 'LOWEST'
        state = {}

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == 3:
                self.state['iter_2'] = _digest(osp.join(work_dir,
                                                        'iter_2.pth'))
                with open(osp.join(work_dir, 'last_checkpoint')) as f:
                    self.state['last'] = f.read()
                self.state['ctx'] = file_size_limit(LIMIT)
                self.state['ctx'].__enter__()

    loader = torch.utils.data.DataLoader(
        [torch.ones(4)] * 8, batch_size=1,
        collate_fn=lambda b: dict(inputs=torch.stack(b)))
    hook = LimitBeforeSecondSave()
    runner = Runner(
        model=Toy(), work_dir=work_dir, train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[hook], default_scope=None,
        # two runners in the same second would share mmengine's default
        # (timestamp) name and its logger instance, which warns
        experiment_name=f'atomic_{uuid.uuid4().hex}')
    return runner, hook.state


def _interrupted_second_save(work_dir):
    runner, state = _toy_runner(str(work_dir))
    try:
        with pytest.raises(OSError):
            runner.train()
    finally:
        if 'ctx' in state:
            state['ctx'].__exit__(None, None, None)
    assert 'ctx' in state, 'the first checkpoint was not saved'
    return state


def test_interrupted_save_keeps_previous_checkpoint(tmp_path):
    work = tmp_path / 'work'
    state = _interrupted_second_save(work)
    names = sorted(os.listdir(work))
    # no partial file under the final name, no temporary file left behind
    assert 'iter_4.pth' not in names, names
    assert not [n for n in names if n.endswith('.tmp')], names
    # the previous checkpoint and the pointer are untouched and usable
    assert _digest(work / 'iter_2.pth') == state['iter_2']
    assert (work / 'last_checkpoint').read_text() == state['last']
    assert state['last'].strip().endswith('iter_2.pth')
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu',
                      weights_only=True)
    assert ckpt['meta']['iter'] == 2
    from mmssm.utils import read_checkpoint_shapes
    assert read_checkpoint_shapes(str(work / 'iter_2.pth'))['w'] == (
        512 * 1024, )


def test_control_mmengine_put_leaves_partial_file(tmp_path, monkeypatch):
    """The same interruption with mmengine's own ``LocalBackend.put``."""
    from mmengine.fileio.backends.local_backend import LocalBackend

    from mmssm.utils.setup_env import _ORIGINAL
    monkeypatch.setattr(LocalBackend, 'put', _ORIGINAL['put'])
    work = tmp_path / 'work'
    _interrupted_second_save(work)
    assert (work / 'iter_4.pth').stat().st_size == LIMIT


@pytest.mark.parametrize('atomic', [True, False])
def test_interrupted_last_checkpoint_write(tmp_path, atomic):
    """``CheckpointHook`` writes ``last_checkpoint`` with ``open(.., 'w')``
    of its module; interrupted, it keeps the old pointer (atomic) or is left
    cut (mmengine's builtin ``open``, the control)."""
    import builtins

    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    pointer = tmp_path / 'last_checkpoint'
    old = str(tmp_path / 'iter_2.pth')
    pointer.write_text(old)
    opener = checkpoint_hook.open if atomic else builtins.open
    assert (checkpoint_hook.open is not builtins.open)
    with file_size_limit(8):
        with pytest.raises(OSError):
            with opener(str(pointer), 'w') as f:
                f.write(str(tmp_path / 'iter_4.pth'))
    if atomic:
        assert pointer.read_text() == old
        assert os.listdir(tmp_path) == ['last_checkpoint']
    else:
        assert len(pointer.read_text()) <= 8


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    from mmssm.utils import atomic_write
    target = tmp_path / 'a.txt'
    target.write_text('old')
    with atomic_write(target, 'w') as f:
        f.write('new')
        assert target.read_text() == 'old'  # not visible before the rename
    assert target.read_text() == 'new'
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_write(target, 'w') as f:
            f.write('half')
            raise RuntimeError('killed')
    assert target.read_text() == 'new'
    assert os.listdir(tmp_path) == ['a.txt']
