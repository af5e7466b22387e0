"""Generate the model zoo table of the README from the configs.

Usage::

    python tools/analysis_tools/model_zoo.py          # params, cached FLOPs
    python tools/analysis_tools/model_zoo.py --flops  # + FLOPs not cached
    python tools/analysis_tools/model_zoo.py --flops --only mambaout-tiny
    python tools/analysis_tools/model_zoo.py --check      # exit 1 on drift

For every entry of :data:`ENTRIES` (classifiers, Mask R-CNN, Cascade Mask
R-CNN, UperNet of every mmssm backbone) it builds the model of the config
(no weights) and counts its parameters, reads or measures the FLOPs
(multiply-adds, :mod:`tools.analysis_tools.get_flops`, selective scan
included) at the paper's input size (classification 224x224, COCO 1280x800,
ADE20K 512x2048), and writes

* ``docs/model_zoo.json``: the measured parameters and FLOPs (the FLOPs are
  cached there: measuring the dense models takes minutes on a CPU);
* the table between ``<!-- model-zoo:start -->`` and ``<!-- model-zoo:end -->``
  in ``README.md``, with the papers' figures beside ours.

Parameters of classifiers exclude a distillation teacher (it is not part of
the deployed model).
"""
import argparse
import json
import os.path as osp
import re
import sys
import time
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch.nn as nn  # noqa: E402
from mmengine.config import Config  # noqa: E402

JSON_PATH = osp.join(ROOT, 'docs', 'model_zoo.json')
README_PATH = osp.join(ROOT, 'README.md')
START, END = '<!-- model-zoo:start -->', '<!-- model-zoo:end -->'

CLS, DET, CASCADE, SEG = ('cls', 'mask-rcnn', 'cascade-mask-rcnn', 'upernet')
SHAPES = {CLS: (224, 224), DET: (800, 1280), CASCADE: (800, 1280),
          SEG: (512, 2048)}
FAMILY_NOTES = {
    DET: 'FLOPs of the mode=\'tensor\' forward: backbone, neck, RPN, box '
    'head on the RPN proposals (up to 1000), mask head on the first 100.',
    CASCADE: 'FLOPs of mmdet\'s mode=\'tensor\' forward, which runs the '
    'box AND mask heads of all 3 stages on every RPN proposal (up to 1000); '
    'real inference runs the mask heads on at most 100 detections, so these '
    'figures overstate the inference cost by over 1000G.',
}
FAMILY_TITLES = {
    CLS: 'ImageNet-1k classification (224x224)',
    DET: 'COCO Mask R-CNN (FLOPs at 1280x800)',
    CASCADE: 'COCO Cascade Mask R-CNN (FLOPs at 1280x800)',
    SEG: 'ADE20K UperNet (FLOPs at 512x2048)',
}


def _e(family, config, paper_params=None, paper_flops=None, source=None):
    return dict(family=family, config=config, paper_params=paper_params,
                paper_flops=paper_flops, source=source)


_MO = 'configs/mambaout/'
_GM = 'configs/groupmamba/'
_VIM = 'configs/vim/'
#: Every entry: config path (or ``mambaout-<arch>_in1k`` for the MambaOut
#: classifiers, which have no training config here), the paper's parameters
#: (M) and FLOPs (G) and where they come from.
ENTRIES: List[dict] = [
    _e(CLS, 'mambaout-femto_in1k', 7.3, 1.2, 'MambaOut Tab. 1'),
    _e(CLS, 'mambaout-tiny_in1k', 26.5, 4.5, 'MambaOut Tab. 1'),
    _e(CLS, 'mambaout-small_in1k', 48.5, 9.0, 'MambaOut Tab. 1'),
    _e(CLS, 'mambaout-base_in1k', 84.8, 15.8, 'MambaOut Tab. 1'),
    _e(CLS, _GM + 'groupmamba-tiny_distill-regnety160_8xb128_in1k.py', 23,
       4.5, 'GroupMamba Tab. 1'),
    _e(CLS, _GM + 'groupmamba-small_distill-regnety160_8xb128_in1k.py', 34,
       7.0, 'GroupMamba Tab. 1'),
    _e(CLS, _GM + 'groupmamba-base_distill-regnety160_8xb128_in1k.py', 57,
       14, 'GroupMamba Tab. 1'),
    _e(CLS, _GM + 'groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py'),
    _e(CLS, _VIM + 'vim-tiny_8xb128_in1k.py', 7, 1.5,
       'Vim Tab. 1 (FLOPs: MambaOut Tab. 1)'),
    _e(CLS, _VIM + 'vim-small_8xb64_in1k.py', 26, 5.1,
       'Vim Tab. 1 (FLOPs: MambaOut Tab. 1)'),
    _e(CLS, _VIM + 'vim-base_8xb128_in1k.py', 98, None, 'Vim Tab. 1'),
    _e(CLS, _VIM + 'shufflemamba-middle_slws_16xb128_in1k.py'),
    _e(CLS, _VIM + 'shufflemamba-base_slws_16xb128_in1k.py'),
    _e(CLS, _VIM + 'shufflemamba-large_slws_8xb128_in1k.py'),
    _e(DET, _MO + 'mask-rcnn_mambaout-tiny_fpn_1x_coco.py', 43, 262,
       'MambaOut Tab. 2'),
    _e(DET, _MO + 'mask-rcnn_mambaout-small_fpn_1x_coco.py', 65, 354,
       'MambaOut Tab. 2'),
    _e(DET, _MO + 'mask-rcnn_mambaout-base_fpn_1x_coco.py', 100, 495,
       'MambaOut Tab. 2'),
    _e(DET, _GM + 'mask-rcnn_groupmamba-tiny_fpn_1x_coco.py', 40, 279,
       'GroupMamba Tab. 2'),
    _e(DET, _GM + 'mask-rcnn_groupmamba-small_fpn_1x_coco.py'),
    _e(DET, _GM + 'mask-rcnn_groupmamba-base_fpn_1x_coco.py'),
    _e(DET, _GM + 'mask-rcnn_groupmamba-ss2d4-tiny_fpn_1x_coco.py'),
    _e(DET, _VIM + 'mask-rcnn_vim-tiny_simple-fpn_1x_coco.py'),
    _e(DET, _VIM + 'mask-rcnn_vim-small_simple-fpn_1x_coco.py'),
    _e(CASCADE,
       _VIM + 'cascade-mask-rcnn_vim-tiny_simple-fpn_lsj-100e_coco.py'),
    _e(CASCADE,
       _VIM + 'cascade-mask-rcnn_vim-small_simple-fpn_lsj-100e_coco.py'),
    _e(SEG, _MO + 'upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py', 54,
       938, 'MambaOut Tab. 3'),
    _e(SEG, _MO + 'upernet_mambaout-small_4xb4-160k_ade20k-512x512.py', 76,
       1032, 'MambaOut Tab. 3'),
    _e(SEG, _MO + 'upernet_mambaout-base_4xb4-160k_ade20k-512x512.py', 112,
       1178, 'MambaOut Tab. 3'),
    _e(SEG, _GM + 'upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py', 49,
       955, 'GroupMamba Tab. 3'),
    _e(SEG, _GM + 'upernet_groupmamba-small_8xb2-160k_ade20k-512x512.py'),
    _e(SEG, _GM + 'upernet_groupmamba-base_8xb2-160k_ade20k-512x512.py'),
    _e(SEG, _GM + 'upernet_groupmamba-ss2d4-tiny_8xb2-160k_ade20k-512x512.py'),
    _e(SEG, _VIM + 'upernet_vim-tiny_plain-taps_8xb2-160k_ade20k-512x512.py',
       13, None, 'Vim Tab. 2'),
    _e(SEG, _VIM + 'upernet_vim-small_plain-taps_8xb2-160k_ade20k-512x512.py',
       46, None, 'Vim Tab. 2'),
]

_MAMBAOUT_CLS = re.compile(r'^mambaout-(\w+)_in1k$')
_MAMBAOUT_DIMS = dict(femto=288, kobe=288, tiny=576, small=576, base=768)


def entry_config(name: str) -> Config:
    """The config of an entry (a file, or a built-in MambaOut classifier)."""
    match = _MAMBAOUT_CLS.match(name)
    if match:
        arch = match.group(1)
        return Config(
            dict(
                default_scope='mmpretrain',
                custom_imports=dict(
                    imports=['mmssm', 'mmssm.cls'],
                    allow_failed_imports=False),
                model=dict(
                    type='ImageClassifier',
                    backbone=dict(
                        type='MambaOut',
                        arch=arch,
                        out_indices=(3, ),
                        gap_before_final_norm=True),
                    head=dict(
                        type='MambaOutHead',
                        num_classes=1000,
                        in_channels=_MAMBAOUT_DIMS[arch]))))
    cfg = Config.fromfile(osp.join(ROOT, name))
    if 'teacher' in cfg.model:
        # the deployed student: the same backbone and head, no teacher
        cfg.model.pop('teacher')
        cfg.model.pop('teacher_checkpoint', None)
        cfg.model.type = 'ImageClassifier'
    return cfg


def build_entry(name: str) -> nn.Module:
    """Build the model of an entry, without loading any weights."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = entry_config(name)
    if 'custom_imports' in cfg:
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def count_params(model: nn.Module) -> int:
    """Trainable + frozen parameters, excluding a distillation teacher."""
    return sum(p.numel() for n, p in model.named_parameters()
               if not n.startswith('teacher'))


def measure(entry: dict, with_flops: bool) -> dict:
    """Parameters (and FLOPs) of one entry."""
    from get_flops import get_flops
    model = build_entry(entry['config'])
    out = dict(params=count_params(model))
    if with_flops:
        shape = SHAPES[entry['family']]
        t0 = time.time()
        res = get_flops(model, shape)
        out.update(flops=res['flops'], flops_shape=list(shape),
                   flops_seconds=round(time.time() - t0, 1))
    return out


def load_json(path: str = JSON_PATH) -> Dict[str, dict]:
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save_json(data: Dict[str, dict], path: str = JSON_PATH) -> dict:
    """Write the figures of the known entries, in :data:`ENTRIES` order."""
    data = {e['config']: data[e['config']] for e in ENTRIES
            if e['config'] in data}
    with open(path, 'w') as f:
        json.dump(data, f, indent=2)
        f.write('\n')
    return data


def _m(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.1f}M'


def _g(v: Optional[float]) -> str:
    if v is None:
        return '-'
    return f'{v:.1f}G' if v >= 100 else f'{v:.2f}G'


def _name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def render_table(data: Dict[str, dict]) -> str:
    """The markdown model zoo, one table per family."""
    lines = [
        'Generated by `python tools/analysis_tools/model_zoo.py` from the '
        'configs (do not edit by hand). Params: measured by building the '
        'model; FLOPs: multiply-adds counted by '
        '`tools/analysis_tools/get_flops.py` (selective scan included) at the '
        'paper\'s input size; "paper" columns: the figures the papers report; '
        '"-": not reported / not measured yet.', ''
    ]
    for family in (CLS, DET, CASCADE, SEG):
        rows = [e for e in ENTRIES if e['family'] == family]
        lines += [f'**{FAMILY_TITLES[family]}**', '']
        if family in FAMILY_NOTES:
            lines += [FAMILY_NOTES[family], '']
        lines += [
            '| config | params | paper params | FLOPs | paper FLOPs | '
            'paper source |', '| --- | ---: | ---: | ---: | ---: | --- |'
        ]
        for e in rows:
            got = data.get(e['config'], {})
            params = got.get('params')
            flops = got.get('flops')
            cfg = e['config']
            shown = (f'[{_name(cfg)}]({cfg})' if cfg.endswith('.py') else
                     f'{cfg} (MambaOut + MambaOutHead)')
            lines.append(
                f'| {shown} | {_m(params / 1e6 if params else None)} | '
                f'{_m(e["paper_params"])} | '
                f'{_g(flops / 1e9 if flops else None)} | '
                f'{_g(e["paper_flops"])} | {e["source"] or "-"} |')
        lines.append('')
    return '\n'.join(lines).rstrip() + '\n'


def write_readme(table: str, path: str = README_PATH) -> None:
    """Replace the text between the model-zoo markers of the README."""
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text:
        raise ValueError(f'{path} has no {START} ... {END} block')
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, 'w') as f:
        f.write(head + START + '\n' + table + END + tail)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--flops', action='store_true',
                        help='measure the FLOPs that are not cached yet')
    parser.add_argument('--recompute', action='store_true',
                        help='with --flops: measure cached FLOPs again')
    parser.add_argument('--only', help='regex: only entries whose config '
                        'matches (the others keep their cached figures)')
    parser.add_argument('--check', action='store_true',
                        help='only compare measured params with the JSON; '
                        'exit 1 on any drift')
    parser.add_argument('--no-readme', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    data = load_json()
    entries = [
        e for e in ENTRIES
        if args.only is None or re.search(args.only, e['config'])
    ]
    drift = []
    for e in entries:
        key = e['config']
        cached = data.get(key, {})
        want_flops = args.flops and not args.check and (
            args.recompute or 'flops' not in cached)
        t0 = time.time()
        got = measure(e, want_flops)
        msg = f'{key}: {got["params"] / 1e6:.3f}M params'
        if 'flops' in got:
            msg += f', {got["flops"] / 1e9:.2f}G FLOPs'
        print(f'{msg} ({time.time() - t0:.0f}s)', flush=True)
        if args.check:
            if cached.get('params') != got['params']:
                drift.append(f'{key}: {got["params"]} params, table has '
                             f'{cached.get("params")}')
            continue
        cached.update(got)
        data[key] = cached
        save_json(data)  # after every entry: FLOPs runs are long
    if args.check:
        if drift:
            print('Model zoo drift:\n  ' + '\n  '.join(drift))
            sys.exit(1)
        print('model zoo: no drift')
        return data
    data = save_json(data)
    if not args.no_readme:
        write_readme(render_table(data))
    return data


if __name__ == '__main__':
    main()
