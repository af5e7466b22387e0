# The small MambaVision of the CPU demos (detector, segmentors), taken from
# `_base_` by the demo configs: dims 48/96/192/384 (stem 24), depths 1/1/2/2
# (stages 2-3: one MambaVisionMixer then one attention block each), heads
# 2/2/4/8 and 8x8 windows in every stage (at 256x256: 4 windows on the
# stride-16 map, one window = global on the stride-32 map), no drop path.
# `_delete_` because the demos inherit a MambaOut demo's backbone.
mambavision_demo_backbone = dict(
    _delete_=True,
    type='MambaVision',
    arch=dict(dim=48, in_dim=24, depths=[1, 1, 2, 2], num_heads=[2, 2, 4, 8]),
    window_size=(8, 8, 8, 8),
    drop_path_rate=0.0)
