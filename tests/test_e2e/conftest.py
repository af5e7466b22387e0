"""Shared fixtures of the end-to-end tests."""
import pytest


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    """The synthetic COCO-shapes and ADE-shapes sets (6 train / 4 val
    images each, seed 3), generated once per test session; read only."""
    from mmssm.datasets import generate_all
    root = tmp_path_factory.mktemp('synthetic')
    generate_all(str(root), seed=3, num_train=6, num_val=4)
    return root
