# mmseg runtime + the short CPU demo schedule: log every 10 iterations,
# checkpoint every 200 iterations and at the end.
_base_ = ['mmseg::_base_/default_runtime.py', './schedules/demo_iter.py']

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=200,
        max_keep_ckpts=2, save_last=True))
log_processor = dict(by_epoch=False)
# stop at the first non-finite loss or gradient (mmssm.NonFiniteGuardHook);
# demo configs that set their own custom_hooks list it again
custom_hooks = [dict(type='NonFiniteGuardHook')]
