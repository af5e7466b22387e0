"""Data workers die with their parent (``mmssm.utils.setup_env``).

A worker that asked for ``PR_SET_PDEATHSIG`` is killed by Linux when its
parent dies; one that did not (the control) outlives it. And mmengine's
runner hands that request to every DataLoader worker it seeds.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason='prctl(PR_SET_PDEATHSIG) is Linux only')

PARENT = textwrap.dedent('''
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, '-c', {child!r}])
    print(child.pid, flush=True)
    time.sleep(60)
''')

CHILD = textwrap.dedent('''
    import time
    if {ask}:
        from mmssm.utils.setup_env import die_with_parent
        assert die_with_parent()
    print('ready', flush=True)
    time.sleep(60)
''')


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split()[2] != 'Z'
    except FileNotFoundError:
        return False


def _orphan_after_parent_kill(ask: bool) -> bool:
    """Kill a parent whose child did (or did not) ask to die with it;
    return whether the child is still alive 3 s later."""
    code = PARENT.format(child=CHILD.format(ask=ask))
    parent = subprocess.Popen([sys.executable, '-c', code],
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    # the child shares the parent's stdout: wait for its 'ready' (written
    # after it imported mmssm and asked), not for a fixed time, which a
    # loaded machine can overrun (the child then asks after the kill)
    assert parent.stdout.readline().strip() == 'ready'
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 3
    while time.time() < deadline and _alive(child_pid):
        time.sleep(0.1)
    alive = _alive(child_pid)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    return alive


def test_child_dies_with_parent_and_control_does_not():
    assert not _orphan_after_parent_kill(ask=True)
    assert _orphan_after_parent_kill(ask=False)   # what happened before


class _PdeathsigDataset:
    """Each item is the worker's parent-death signal (PR_GET_PDEATHSIG)."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        sig = ctypes.c_int(-1)
        assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0
        return sig.value


def test_runner_dataloader_workers_ask_to_die_with_parent():
    import mmssm  # noqa: F401  (applies the patch)
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(
        dict(batch_size=1, num_workers=2,
             sampler=dict(type='DefaultSampler', shuffle=False),
             dataset=_PdeathsigDataset(),
             collate_fn=dict(type='default_collate')),
        seed=0)
    got = [int(x) for batch in loader for x in batch]
    assert got == [int(signal.SIGKILL)] * 4
    # the main process itself is untouched
    assert _PdeathsigDataset()[0] == 0
