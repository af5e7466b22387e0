# UperNet with light heads for CPU demos (BN instead of SyncBN, 128 channels).
# The backbone and in_channels are set by the leaf config.
_base_ = ['mmseg::_base_/models/upernet_swin.py']

norm_cfg = dict(type='BN', requires_grad=True)
num_classes = 7
model = dict(
    pretrained=None,
    decode_head=dict(
        channels=128, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(
        channels=64, num_classes=num_classes, norm_cfg=norm_cfg))
