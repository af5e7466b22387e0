# Short iteration-based schedule for the CPU demos (from scratch, no
# pretrained weights): AdamW with linear warm-up and cosine decay, one
# validation and one checkpoint at the end.
max_iters = 600
warmup_iters = 50
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.05),
    # No global gradient clipping: in constant (padded) regions the
    # LayerNorms of LN-based backbones see ~zero variance and give the biases
    # before them huge gradients; a global clip would then scale every other
    # gradient to ~0, while AdamW's per-parameter normalisation bounds them.
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
         begin=warmup_iters, end=max_iters)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
