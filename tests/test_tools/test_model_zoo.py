"""The model zoo (docs/model_zoo.json and the README block) matches the
configs: parameters measured by building a fast-to-build subset of the models
must equal the recorded ones; the README block is the rendering of the JSON;
the recorded MambaOut-T FLOPs are within 3% of the paper."""
import json
import os.path as osp

import pytest
from tiny_demo_configs import ROOT, load_tool

# one model per backbone and family; each builds in a few seconds
FAST = [
    'mambaout-tiny_in1k',
    'configs/vim/vim-tiny_8xb128_in1k.py',
    'configs/groupmamba/groupmamba-tiny_distill-regnety160_8xb128_in1k.py',
    'configs/mambaout/mask-rcnn_mambaout-tiny_fpn_1x_coco.py',
    'configs/groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'configs/vim/cascade-mask-rcnn_vim-tiny_simple-fpn_lsj-100e_coco.py',
    'configs/mambaout/upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py',
    'configs/vim/upernet_vim-tiny_plain-taps_8xb2-160k_ade20k-512x512.py',
]


zoo = load_tool('model_zoo')
RECORDED = json.load(open(osp.join(ROOT, 'docs', 'model_zoo.json')))


def test_every_entry_is_recorded_and_rendered_in_readme():
    names = [e['config'] for e in zoo.ENTRIES]
    assert set(FAST) <= set(names)
    assert sorted(RECORDED) == sorted(names)
    for e in zoo.ENTRIES:
        if e['config'].endswith('.py'):
            assert osp.isfile(osp.join(ROOT, e['config'])), e['config']
    readme = open(osp.join(ROOT, 'README.md')).read()
    block = readme.split(zoo.START, 1)[1].split(zoo.END, 1)[0]
    assert block.strip() == zoo.render_table(RECORDED).strip(), (
        'README model zoo is stale: run tools/analysis_tools/model_zoo.py')


@pytest.mark.parametrize('name', FAST)
def test_params_do_not_drift(name):
    entry = next(e for e in zoo.ENTRIES if e['config'] == name)
    got = zoo.count_params(zoo.build_entry(name))
    assert got == RECORDED[name]['params'], (
        f'{name}: {got} parameters, docs/model_zoo.json has '
        f'{RECORDED[name]["params"]}; rerun tools/analysis_tools/'
        'model_zoo.py if the change is intended')
    if entry['paper_params'] is not None:
        # and the table's figure is the paper's up to its rounding (10%)
        assert abs(got / 1e6 - entry['paper_params']) <= (
            0.1 * entry['paper_params'])


def test_recorded_flops_of_mambaout_tiny_match_the_paper():
    for name, paper in (
        ('mambaout-tiny_in1k', 4.5),
        ('configs/mambaout/mask-rcnn_mambaout-tiny_fpn_1x_coco.py', 262),
        ('configs/mambaout/upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py',
         938),
    ):
        flops = RECORDED[name]['flops'] / 1e9
        assert abs(flops - paper) / paper < 0.03, (name, flops, paper)
