"""Run a trained mmssm detector, segmentor or classifier on one image and
write the image with the predictions drawn on it.

The OpenMMLab inferencer is chosen from the config's ``default_scope``:

* ``mmdet``: mmdet's ``DetInferencer`` draws the boxes, masks, class names
  and scores of the detections scoring at least ``--score-thr`` into
  ``OUT_DIR/vis/<image file name>`` (same name and format as the image);
* ``mmseg``: mmseg's ``MMSegInferencer`` blends the predicted class map, with
  the class names, over the image into ``OUT_DIR/vis/<image file name>``;
* ``mmpretrain``: mmpretrain's ``ImageClassificationInferencer`` writes the
  predicted class and score on the image into ``OUT_DIR/<image stem>.png``.

These are the inferencers' own naming conventions: a file of that name from an
earlier run is replaced (the script says so on stderr). Only the drawn image
is written, not the inferencers' prediction files. The config must import
mmssm (``custom_imports = dict(imports=['mmssm', ...])``, as every mmssm config
does). When the checkpoint holds no ``dataset_meta`` (class names, palette),
those of the config's test dataset are used instead of the inferencers'
default COCO / Cityscapes names. The checkpoint must fit the model key for key
and shape for shape (``--non-strict`` draws with what fits, as
``tools/test.py``).

Prints one line summarising the prediction, then the path of the drawn image
(last line of stdout).

Examples::

    W=work_dirs/mask-rcnn_mambaout-femto_fpn_demo_coco-shapes
    python demo/image_demo.py \\
        data/synthetic/coco_shapes/val/000000000001.jpg \\
        configs/mambaout/mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py \\
        $W/iter_1400.pth --out-dir work_dirs/image_demo --score-thr 0.5
    python demo/image_demo.py IMAGE CONFIG CHECKPOINT --device cuda:0
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmssm  # noqa: E402,F401  (stack fixes before any config is parsed)

#: The inferencer of each task, by the config's default_scope.
INFERENCERS = {
    'mmdet': 'mmdet.apis.DetInferencer',
    'mmseg': 'mmseg.apis.MMSegInferencer',
    'mmpretrain': 'mmpretrain.apis.ImageClassificationInferencer',
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the predictions of an mmssm detector, segmentor or '
        'classifier on an image (OpenMMLab inferencers)')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='mmdet, mmseg or mmpretrain config')
    parser.add_argument('checkpoint', help='checkpoint file of the config')
    parser.add_argument(
        '--out-dir', default=osp.join('work_dirs', 'image_demo'),
        help='output folder (default: work_dirs/image_demo); detection and '
        'segmentation write OUT_DIR/vis/<image name>, classification '
        'OUT_DIR/<image stem>.png')
    parser.add_argument(
        '--device', default=None,
        help="device, e.g. 'cpu' or 'cuda:0' (default: cuda:0 when "
        'available, else cpu)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='detection: draw the instances scoring at least this '
        '(default 0.3); ignored by the other tasks')
    parser.add_argument(
        '--non-strict', action='store_true',
        help='draw with the weights of the checkpoint that fit the model '
        '(default: stop, naming the keys that do not fit)')
    return parser.parse_args(argv)


def _check_file(flag: str, path: str) -> None:
    if not osp.exists(path):
        raise FileNotFoundError(f'{flag} {path!r} does not exist')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{flag} {path!r} is not a file')


def check_inputs(image: str, config: str, checkpoint: str):
    """Check the three positional arguments before any model is built.

    Returns:
        tuple: The loaded config (``mmengine.Config``; its ``custom_imports``
        are imported), its task (the ``default_scope``: ``'mmdet'``,
        ``'mmseg'`` or ``'mmpretrain'``) and the checkpoint's weight shapes.

    Raises:
        FileNotFoundError: IMAGE, CONFIG or CHECKPOINT does not exist (named).
        ValueError: IMAGE is not a readable image, CONFIG's scope is none of
            the three, or CHECKPOINT is no readable checkpoint (named).
    """
    import cv2
    from mmengine.config import Config

    from mmssm.utils.checkpoint import CheckpointError, read_checkpoint_shapes
    for flag, path in (('IMAGE', image), ('CONFIG', config),
                       ('CHECKPOINT', checkpoint)):
        _check_file(flag, path)
    if cv2.imread(image, cv2.IMREAD_UNCHANGED) is None:
        raise ValueError(f'IMAGE {image!r} ({osp.getsize(image)} bytes) is '
                         'not a readable image')
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', None)
    if scope not in INFERENCERS:
        raise ValueError(
            f'CONFIG {config!r} has default_scope={scope!r}; image_demo.py '
            'runs configs of ' + ', '.join(
                f'{s} ({v.rsplit(".", 1)[1]})'
                for s, v in INFERENCERS.items()) +
            ' (they set it in their default_runtime)')
    try:
        shapes = read_checkpoint_shapes(checkpoint)
    except CheckpointError as e:
        raise ValueError(f'CHECKPOINT: {e}') from None
    return cfg, scope, shapes


def _config_dataset_meta(cfg, task: str) -> dict:
    """``classes`` and ``palette`` of the config's test dataset (built
    lazily: no file is read)."""
    import copy
    if task == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    dataset = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset['lazy_init'] = True
    dataset['pipeline'] = []  # only the metainfo is used
    meta = DATASETS.build(dataset).metainfo
    return {k: meta[k] for k in ('classes', 'palette') if k in meta}


def build_inferencer(cfg, task: str, checkpoint: str, device: str):
    """The task's OpenMMLab inferencer for ``cfg`` with the weights of
    ``checkpoint``; a detector or segmentor whose checkpoint has no
    ``dataset_meta`` gets the class names and palette of the config's test
    dataset."""
    import importlib
    module, name = INFERENCERS[task].rsplit('.', 1)
    base = getattr(importlib.import_module(module), name)
    if task == 'mmpretrain':
        return base(model=cfg, pretrained=checkpoint, device=device)

    class Inferencer(base):

        def _load_weights_to_model(self, model, ckpt, cfg):
            if ckpt is not None:
                meta = ckpt.setdefault('meta', {})
                if meta.get('dataset_meta') is None:
                    meta['dataset_meta'] = _config_dataset_meta(cfg, task)
            super()._load_weights_to_model(model, ckpt, cfg)

    inferencer = Inferencer(
        model=cfg, weights=checkpoint, device=device, scope=task)
    inferencer.show_progress = False
    return inferencer


def output_path(task: str, image: str, out_dir: str) -> str:
    """Where the task's inferencer writes the drawn ``image``."""
    if task == 'mmpretrain':
        stem = osp.splitext(osp.basename(image))[0]
        return osp.join(out_dir, stem + '.png')
    return osp.join(out_dir, 'vis', osp.basename(image))


def _classes(inferencer, task):
    if task == 'mmpretrain':
        return inferencer.classes
    return (inferencer.model.dataset_meta or {}).get('classes')


def _name(classes, label: int) -> str:
    return str(classes[label]) if classes is not None and label < len(
        classes) else str(label)


def summarize(task: str, pred, classes, score_thr: float) -> str:
    """One line describing the prediction (a data sample)."""
    import numpy as np
    if task == 'mmdet':
        inst = pred.pred_instances
        keep = inst.scores >= score_thr
        found = [f'{_name(classes, int(label))} {float(score):.2f}'
                 for label, score in zip(inst.labels[keep], inst.scores[keep])]
        return (f'mmdet: {len(found)} of {len(inst)} detections with score >= '
                f'{score_thr:g}' + (': ' + ', '.join(found) if found else ''))
    if task == 'mmseg':
        seg = pred.pred_sem_seg.data[0].cpu().numpy()
        counts = np.bincount(seg.ravel())
        order = np.argsort(-counts)
        parts = [
            f'{_name(classes, int(c))} {100.0 * counts[c] / seg.size:.1f}%'
            for c in order if counts[c]
        ]
        return (f'mmseg: class map of {seg.shape[1]}x{seg.shape[0]} pixels: ' +
                ', '.join(parts))
    score = pred.pred_score
    label = int(score.argmax())
    return (f'mmpretrain: {_name(classes, label)} '
            f'(class {label}, score {float(score[label]):.3f})')


def _first(result):
    """The data sample of one image, whatever the inferencer returned."""
    if isinstance(result, dict):
        result = result['predictions']
    if isinstance(result, (list, tuple)):
        result = result[0]
    return result


def run(args, cfg, task: str, shapes: dict) -> str:
    """Run the inferencer on ``args.image`` (inputs from
    :func:`check_inputs`); return the drawn image's path.

    The checkpoint is compared with the model key for key and shape for
    shape by :func:`mmssm.apis.check_checkpoint_fits` (what ``tools/train.py``
    and ``tools/test.py`` run): a checkpoint that does not fit stops the demo
    unless ``--non-strict``, which draws with the weights that fit and logs
    the others.
    """
    from mmssm.apis import check_checkpoint_fits
    device = args.device
    if device is None:
        import torch
        device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    inferencer = build_inferencer(cfg, task, args.checkpoint, device)
    # the inferencer loaded what fits; say what did not (strict: stop)
    check_checkpoint_fits(inferencer.model, shapes, args.checkpoint,
                          strict=not args.non_strict)

    out = output_path(task, args.image, args.out_dir)
    replaced = osp.exists(out)
    if task == 'mmdet':
        result = inferencer(
            args.image, out_dir=args.out_dir, pred_score_thr=args.score_thr,
            no_save_pred=True, return_datasamples=True)
    elif task == 'mmseg':
        result = inferencer(
            args.image, out_dir=args.out_dir, return_datasamples=True)
    else:
        os.makedirs(args.out_dir, exist_ok=True)
        result = inferencer(
            args.image, show_dir=args.out_dir, return_datasamples=True)
    if not osp.isfile(out):
        raise RuntimeError(f'the {task} inferencer wrote no {out!r}')
    print(summarize(task, _first(result), _classes(inferencer, task),
                    args.score_thr))
    if replaced:
        print(f'replaced the existing {out}', file=sys.stderr)
    return out


def main(argv=None) -> str:
    args = parse_args(argv)
    try:
        inputs = check_inputs(args.image, args.config, args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'image_demo.py: error: {type(e).__name__}: {e}')
    out = run(args, *inputs)
    print(out)
    return out


if __name__ == '__main__':
    main()
