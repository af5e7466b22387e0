# ADE20K 160k schedule of the UperNet configs with transformer-style
# backbones (mmseg's Swin recipe): linear warm-up over 1500 iterations from
# 1e-6 x lr, then poly decay (power 1) to 0 at iteration 160k. The leaf
# configs set `param_scheduler = _base_.upernet_160k_param_scheduler`, in
# place of the warm-up-less poly of mmseg's `schedule_160k.py`.
upernet_160k_param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]
