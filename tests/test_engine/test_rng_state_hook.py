"""RNGStateHook: every random state of the process and of the hooks'
own generators (SLWS) goes into the checkpoint and comes back at the first
resumed iteration."""
import random
import types

import numpy as np
import torch

from mmssm.engine.hooks import RNGStateHook, SLWSHook


def _draws(slws):
    return (torch.rand(3).tolist(), np.random.rand(2).tolist(),
            random.random(), torch.rand(2, generator=slws.generator).tolist())


def test_states_saved_and_restored_at_the_first_iteration():
    slws = SLWSHook(prob=0.5, seed=1)
    hook = RNGStateHook()
    runner = types.SimpleNamespace(hooks=[hook, slws], logger=types.
                                   SimpleNamespace(info=lambda *a: None,
                                                   warning=lambda *a: None))
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    want = _draws(slws)
    _draws(slws)  # the run goes on; then a new process resumes ...
    hook.after_load_checkpoint(runner, checkpoint)
    torch.rand(5)  # ... and draws while it fast-forwards the data
    hook.before_train_iter(runner, 0)
    assert _draws(slws) == want
    # only the first iteration restores
    after = _draws(slws)
    hook.before_train_iter(runner, 1)
    assert _draws(slws) != after


def test_checkpoint_without_states_changes_nothing():
    hook = RNGStateHook()
    runner = types.SimpleNamespace(hooks=[hook], logger=None)
    hook.after_load_checkpoint(runner, {'meta': {}})
    state = torch.get_rng_state()
    hook.before_train_iter(runner, 0)
    assert torch.equal(torch.get_rng_state(), state)
