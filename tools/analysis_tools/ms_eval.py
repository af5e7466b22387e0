"""Single-scale and multi-scale (TTA) evaluation of one checkpoint, side by
side.

Usage::

    python tools/analysis_tools/ms_eval.py CONFIG CHECKPOINT \
        [--work-dir DIR] [--out results.json] [--cfg-options k=v ...]

Runs ``tools/test.py CONFIG CHECKPOINT`` (single scale, the config's
``test_pipeline``) and ``tools/test.py CONFIG CHECKPOINT --tta`` (the config's
``tta_model`` and ``tta_pipeline``), each in its own process, reads the metrics
each run reports and prints them in one table:

* detection (mmssm's ``DetTTAModelWithMasks``): ``coco/bbox_mAP*`` and
  ``coco/segm_mAP*``;
* segmentation (mmseg's ``SegTTAModel``): ``mIoU``, ``mAcc``, ``aAcc``.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
TEST_PY = osp.join(ROOT, 'tools', 'test.py')

# "Iter(test) [4/4]    coco/bbox_mAP: 0.1230  coco/bbox_mAP_50: ..."
_FINAL = re.compile(r'Iter\(test\) \[\s*(\d+)/\1\](.*)$', re.M)
_PAIR = re.compile(r'([\w/.-]+): (-?\d+(?:\.\d+)?(?:e-?\d+)?)')
_NOT_METRICS = {'data_time', 'time', 'eta', 'memory'}


def parse_metrics(log: str) -> Dict[str, float]:
    """Metrics of the last ``Iter(test) [N/N]`` line of a test log."""
    found = _FINAL.findall(log)
    if not found:
        raise ValueError('no final "Iter(test) [N/N] ... metric: value" line '
                         'in the test output')
    pairs = _PAIR.findall(found[-1][1])
    return {k: float(v) for k, v in pairs if k not in _NOT_METRICS}


def run_test(config: str, checkpoint: str, work_dir: str, tta: bool,
             cfg_options: Optional[List[str]] = None) -> Dict[str, float]:
    """Run ``tools/test.py`` in a subprocess and return its metrics."""
    cmd = [sys.executable, TEST_PY, config, checkpoint, '--work-dir',
           work_dir]
    if tta:
        cmd.append('--tta')
    if cfg_options:
        cmd += ['--cfg-options'] + list(cfg_options)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = res.stdout + res.stderr
    if res.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{out[-5000:]}')
    return parse_metrics(out)


def side_by_side(single: Dict[str, float], multi: Dict[str, float]) -> str:
    """A markdown table: metric | single-scale | multi-scale | difference."""
    keys = [k for k in single if k in multi]
    width = max([len(k) for k in keys] + [6])
    lines = [
        f'| {"metric":{width}s} | single-scale | multi-scale (TTA) | diff |',
        f'| {"-" * width} | ---: | ---: | ---: |'
    ]
    for k in keys:
        lines.append(f'| {k:{width}s} | {single[k]:.4f} | {multi[k]:.4f} | '
                     f'{multi[k] - single[k]:+.4f} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', help='folder of the two test runs '
                        '(default work_dirs/ms_eval/<config name>)')
    parser.add_argument('--out', help='also write both results to this JSON')
    parser.add_argument('--cfg-options', nargs='+',
                        help='passed on to tools/test.py')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    name = osp.splitext(osp.basename(args.config))[0]
    work = args.work_dir or osp.join('work_dirs', 'ms_eval', name)
    single = run_test(args.config, args.checkpoint, osp.join(work, 'ss'),
                      False, args.cfg_options)
    multi = run_test(args.config, args.checkpoint, osp.join(work, 'ms'),
                     True, args.cfg_options)
    print(f'{name}\n{side_by_side(single, multi)}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                           single_scale=single, multi_scale=multi), f,
                      indent=2)
    return dict(single_scale=single, multi_scale=multi)


if __name__ == '__main__':
    main()
