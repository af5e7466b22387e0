# CPU demo: the MambaOut-Femto Mask R-CNN demo
# (mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py, same data, model, seed and
# 1400-iteration schedule) trained with dynamic magnitude pruning to 60 %
# sparsity, the schedule of papers/improving-ssm-vim-mambavision.txt (seed 002):
# unstructured masks on every Conv and Linear weight of the detector (backbone,
# FPN, RPN and RoI heads), ranked globally by |w|, the sparsity following a
# cosine from 0 at iteration 200 (after warm-up and the first steps of
# learning) to 60 % at iteration 1000, a pruning step every 50 iterations;
# the first selected layer (the stem's convolution) and the last (the mask
# head's logits) at half of it ('auto' exemption); 400 iterations of training
# at the final masks. Results next to the dense demo: README, "Pruning".
_base_ = [
    './mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py',
    '../_base_/schedules/magnitude-pruning-60.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

custom_hooks = [
    dict(_base_.magnitude_pruning_60, begin=200, end=1000, interval=50),
    dict(type='NonFiniteGuardHook')
]
