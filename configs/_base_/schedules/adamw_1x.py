# The common COCO 1x recipe of the mmssm detectors: mmdet's 1x schedule (12
# epochs, steps at 8 and 11, 500-iteration linear warm-up) with AdamW lr 1e-4,
# betas (0.9, 0.999), wd 0.05, and mmssm's optimizer constructor: no weight
# decay on norms, 1-D parameters (biases) and the parameters the layers flag
# `_no_weight_decay` (SSM A/D, position embeddings, tokens). Layer-wise lr
# decay 1 (none) suits the hierarchical backbones; a plain backbone sets its
# `layer_decay_rate`.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0, norm_decay_mult=0.0, flat_decay_mult=0.0))
