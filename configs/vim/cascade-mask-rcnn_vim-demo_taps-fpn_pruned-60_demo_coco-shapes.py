# CPU demo: the Vim taps-FPN Cascade Mask R-CNN demo
# (cascade-mask-rcnn_vim-demo_taps-fpn_demo_coco-shapes.py: same data, model,
# SLWS and 600-iteration schedule) trained with dynamic magnitude pruning to
# 60 % sparsity, the schedule of papers/improving-ssm-vim-mambavision.txt
# (seed 002), scaled to the 600 iterations: unstructured masks on every Conv
# and Linear weight of the detector, ranked globally by |w|, a cosine from 0
# at iteration 100 to 60 % at iteration 450, a pruning step every 25
# iterations, the first and the last selected layer (the patch embedding and
# the last mask head's logits) at half ('auto' exemption), 150 iterations at
# the final masks. The base's SLWS and non-finite guard hooks are kept.
# Not trained here (see README, "Pruning", for the MambaOut demo's figures).
_base_ = [
    './cascade-mask-rcnn_vim-demo_taps-fpn_demo_coco-shapes.py',
    '../_base_/schedules/magnitude-pruning-60.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

custom_hooks = [
    dict(type='SLWSHook', prob=0.2, log_interval=100),
    dict(_base_.magnitude_pruning_60, begin=100, end=450, interval=25),
    dict(type='NonFiniteGuardHook')
]
