# The ImageNet-1k recipe shared by the mmssm classifiers: mmpretrain's Swin
# schedule (AdamW, 300 epochs, cosine) with mmssm's optimizer constructor
# instead of name-based custom_keys: no weight decay on norms, 1-D parameters
# (biases) and the parameters the layers flag `_no_weight_decay` (SSM A/D,
# position embeddings, tokens); no layer-wise lr decay. Leaf configs set the
# lr, warm-up and batch size of their paper.
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py']

optim_wrapper = dict(
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=1.0,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0))
