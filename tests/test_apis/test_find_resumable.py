"""mmssm.apis.find_resumable_checkpoint: which checkpoint ``--resume``
(no path) takes."""
import os

import torch

from mmssm.apis import find_resumable_checkpoint


def _save(path, mtime):
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {}}, str(path))
    os.utime(path, ns=(mtime, mtime))


def test_newest_that_loads(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    s = 10**9
    _save(work / 'iter_5.pth', 1 * s)
    _save(work / 'iter_2.pth', 2 * s)  # newer than iter_5: taken
    _save(work / 'iter_10.pth', 3 * s)
    data = (work / 'iter_10.pth').read_bytes()
    (work / 'iter_10.pth').write_bytes(data[:len(data) // 2])
    os.utime(work / 'iter_10.pth', ns=(3 * s, 3 * s))
    (work / 'epoch_9.pth').write_text('not a checkpoint')
    os.utime(work / 'epoch_9.pth', ns=(4 * s, 4 * s))
    # not candidates, although newest and valid
    for name in ('best_mIoU_iter_3.pth', 'last_finite_iter_12.pth',
                 '.iter_12.pth.0123456789ab.tmp', 'iter_x.pth'):
        _save(work / name, 9 * s)

    path, skipped = find_resumable_checkpoint(str(work))
    assert path == str(work / 'iter_2.pth')
    assert len(skipped) == 2
    assert 'epoch_9.pth' in skipped[0] and 'text file' in skipped[0]
    assert 'iter_10.pth' in skipped[1] and 'truncated' in skipped[1]
    assert all(line.startswith('--resume: skipped checkpoint ')
               for line in skipped)

    # last_checkpoint may name a checkpoint outside the work dir (out_dir)
    out = tmp_path / 'out'
    out.mkdir()
    _save(out / 'ckpt_7.pth', 5 * s)
    (work / 'last_checkpoint').write_text(str(out / 'ckpt_7.pth'))
    assert find_resumable_checkpoint(str(work))[0] == str(out / 'ckpt_7.pth')


def test_none(tmp_path):
    assert find_resumable_checkpoint(str(tmp_path / 'missing')) == (None, [])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert path is None
    assert len(skipped) == 1 and 'not found' in skipped[0]
