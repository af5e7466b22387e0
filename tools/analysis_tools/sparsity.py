"""Per-layer and total sparsity (share of exact zeros) of a checkpoint's
weights.

Usage::

    python tools/analysis_tools/sparsity.py CONFIG CKPT \
        [--layer-types Linear Conv] [--include RE ...] [--exclude RE ...] \
        [--json out.json]

The model of CONFIG is built (no weights loaded into it) to know which
state-dict entries are the ``weight`` of a layer of the chosen types; the
filters are those of :class:`mmssm.engine.hooks.MagnitudePruningHook`
(``--include``/``--exclude``: regular expressions on the module names), so
the table covers the layers such a hook prunes. Counted are the zeros of the
weights as stored (``tools/model_converters/prune2dense.py`` bakes masks in;
the pruning hooks already store masked weights); when the checkpoint also
holds the hook's masks (``mmssm_pruning``) their sparsity is shown beside.
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mmssm  # noqa: E402,F401
from mmssm.apis import build_model  # noqa: E402
from mmssm.engine.hooks.pruning import (LAYER_TYPES, PRUNING_KEY,  # noqa: E402
                                        select_layers)
from mmssm.utils.checkpoint import (load_checkpoint_file,  # noqa: E402
                                    unwrap_state_dict)


def sparsity_table(model, checkpoint, layer_types=('Linear', 'Conv'),
                   include=None, exclude=None):
    """``{'layers': [{name, shape, zeros, numel, sparsity, mask_sparsity}],
    'zeros', 'numel', 'sparsity'}`` for the selected layers' weights in
    ``checkpoint`` (a loaded checkpoint dict or a flat state dict)."""
    state_dict = unwrap_state_dict(checkpoint)
    masks = (checkpoint.get(PRUNING_KEY) or {}).get('masks', {}) if (
        isinstance(checkpoint, dict)) else {}
    rows = []
    missing = []
    for name in select_layers(model, layer_types, include, exclude):
        key = f'{name}.weight'
        if key not in state_dict:
            missing.append(key)
            continue
        w = state_dict[key]
        zeros = int((w == 0).sum())
        row = OrderedDict(name=name, shape=list(w.shape), zeros=zeros,
                          numel=w.numel(), sparsity=zeros / w.numel())
        if name in masks:
            m = masks[name]
            row['mask_sparsity'] = float((~m.bool()).sum()) / m.numel()
        rows.append(row)
    zeros = sum(r['zeros'] for r in rows)
    numel = sum(r['numel'] for r in rows)
    return dict(layers=rows, zeros=zeros, numel=numel,
                sparsity=zeros / numel if numel else 0.0, missing=missing)


def format_table(res) -> str:
    has_mask = any('mask_sparsity' in r for r in res['layers'])
    width = max([len(r['name']) for r in res['layers']] + [5])
    head = (f'{"layer":<{width}}  {"shape":<18} {"zeros":>10} '
            f'{"numel":>10} {"sparsity":>9}' + ('  mask' if has_mask else ''))
    lines = [head, '-' * len(head)]
    for r in res['layers']:
        line = (f'{r["name"]:<{width}}  {str(tuple(r["shape"])):<18} '
                f'{r["zeros"]:>10} {r["numel"]:>10} {r["sparsity"]:>9.4f}')
        if 'mask_sparsity' in r:
            line += f'  {r["mask_sparsity"]:.4f}'
        lines.append(line)
    lines.append('-' * len(head))
    lines.append(f'{"total":<{width}}  {"":<18} {res["zeros"]:>10} '
                 f'{res["numel"]:>10} {res["sparsity"]:>9.4f}')
    if res['missing']:
        lines.append(f'not in the checkpoint: {", ".join(res["missing"])}')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--layer-types', nargs='+', default=['Linear', 'Conv'],
                        choices=list(LAYER_TYPES))
    parser.add_argument('--include', nargs='+', default=None,
                        help='keep only layers whose name matches one of '
                        'these regular expressions')
    parser.add_argument('--exclude', nargs='+', default=None,
                        help='drop layers whose name matches one of these')
    parser.add_argument('--json', help='also write the table as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = build_model(args.config)
    ckpt = load_checkpoint_file(args.checkpoint)
    res = sparsity_table(model, ckpt, args.layer_types, args.include,
                         args.exclude)
    print(format_table(res))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
