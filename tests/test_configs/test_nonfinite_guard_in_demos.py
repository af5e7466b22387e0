"""NonFiniteGuardHook is on in every demo config, and adding it changed
nothing else: each resolved demo config equals, but for the guard in
``custom_hooks``, the same config resolved from a copy of configs/ with the
guard taken out."""
import glob
import os.path as osp
import re
import shutil

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GUARD = dict(type='NonFiniteGuardHook')


def _strip_guard(configs_dir):
    n = 0
    for path in glob.glob(osp.join(configs_dir, '**', '*.py'),
                          recursive=True):
        with open(path) as f:
            text = f.read()
        new = re.sub(r"\ncustom_hooks = \[dict\(type='NonFiniteGuardHook'\)\]"
                     r'\n', '\n', text)
        new = re.sub(r",\s*dict\(type='NonFiniteGuardHook'\)", '', new)
        assert 'NonFiniteGuardHook' not in new.replace(
            '# stop at the first non-finite loss or gradient '
            '(mmssm.NonFiniteGuardHook);', ''), path
        if new != text:
            n += 1
            with open(path, 'w') as f:
                f.write(new)
    return n


def test_guard_in_every_demo_and_nothing_else_changed(tmp_path):
    demos = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*demo*.py')))
    assert len(demos) >= 10
    copy = tmp_path / 'configs'
    shutil.copytree(osp.join(ROOT, 'configs'), copy)
    assert _strip_guard(str(copy)) >= 5
    for path in demos:
        cfg = Config.fromfile(path).to_dict()
        ref = Config.fromfile(
            str(copy / osp.relpath(path, osp.join(ROOT, 'configs')))).to_dict()
        hooks = cfg.pop('custom_hooks')
        assert hooks.count(GUARD) == 1, path
        hooks.remove(GUARD)
        assert hooks == ref.pop('custom_hooks', []), path
        assert cfg == ref, path
