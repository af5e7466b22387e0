"""Every leaf config in configs/ builds its model after the README install
(timm included: the GroupMamba ImageNet configs' teacher is a
``TimmClassifier``), with no checkpoint files (backbone ``init_cfg`` and the
distillation teacher's checkpoint dropped)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from config_helpers import CONFIG_DIR, build_model

LEAVES = sorted(
    p for p in glob.glob(osp.join(CONFIG_DIR, '*', '*.py'))
    if osp.basename(osp.dirname(p)) != '_base_')


def test_the_leaf_configs_are_all_found():
    # 57 leaf configs at the time of writing; a failed glob would pass the
    # parametrized test below vacuously
    assert len(LEAVES) >= 57, len(LEAVES)


@pytest.mark.parametrize('path', LEAVES,
                         ids=[osp.relpath(p, CONFIG_DIR) for p in LEAVES])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    if 'teacher_checkpoint' in cfg.model:
        cfg.model.teacher_checkpoint = None
    model = build_model(cfg)
    want = cfg.model.backbone.type.split('.')[-1]
    assert type(model.backbone).__name__ == want
    assert sum(p.numel() for p in model.parameters()) > 0
