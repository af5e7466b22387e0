"""``tools/train.py --resume`` (no path) on the tiny UperNet demo: the newest
checkpoint of the work dir that passes the checkpoint check, one line per
skipped file, and one plain line when there is none."""
import re

from tiny_demo_configs import run_train as _run
from tiny_demo_configs import write_seg_cfg


def _cfg(tmp_path, data_root):
    # no validation in these short runs (val_interval past the end)
    return write_seg_cfg(tmp_path, data_root, max_iters=4)


def test_resume_in_empty_work_dir_says_so(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root)
    work = tmp_path / 'work'
    out = _run([cfg, '--work-dir', str(work), '--resume', '--cfg-options',
                'train_cfg.max_iters=2'], tmp_path)
    lines = [ln for ln in out.splitlines() if '--resume:' in ln]
    assert len(lines) == 1, out[-3000:]
    assert f'--resume: no checkpoint to resume from in {work}; training ' \
        'starts from scratch' in lines[0]
    assert 'Auto resumed' not in out and 'resumed epoch' not in out
    assert re.search(r'Iter\(train\) \[\s*1/2\]', out), out[-3000:]
    assert (work / 'iter_2.pth').is_file()


def test_resume_skips_truncated_latest(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root)
    work = tmp_path / 'work'
    _run([cfg, '--work-dir', str(work)], tmp_path)
    assert (work / 'last_checkpoint').read_text().strip().endswith(
        'iter_4.pth')
    latest = work / 'iter_4.pth'
    data = latest.read_bytes()
    latest.write_bytes(data[:len(data) // 2])  # a save cut off halfway

    out = _run([cfg, '--work-dir', str(work), '--resume', '--cfg-options',
                'train_cfg.max_iters=3'], tmp_path)
    skipped = [ln for ln in out.splitlines() if '--resume: skipped' in ln]
    assert len(skipped) == 1, out[-3000:]
    assert str(latest) in skipped[0]
    assert 'truncated or corrupt checkpoint' in skipped[0]
    assert f'--resume: resuming from {work / "iter_2.pth"}' in out
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert re.search(r'Iter\(train\) \[\s*3/3\]', out), out[-3000:]
    assert not re.search(r'Iter\(train\) \[\s*[12]/3\]', out)
    assert (work / 'iter_3.pth').is_file()
