"""Setup script of mmssm.

The Triton kernels live in the top-level ``kernels/`` folder of the repository and
are installed as the subpackage ``mmssm.kernels`` so that no generic top-level name
is claimed in site-packages.

A wheel also carries the configs and the model index (``model-index.yml`` and
the ``configs/*/metafile.yml`` it imports) as ``mmssm/.mim/``, the place
OpenMMLab's ``mim`` reads them from for an installed package (as mmdet,
mmseg and mmpretrain ship theirs); an editable install reads them from the
repository. ``tests/test_install_wheel.py`` builds and installs a wheel.
"""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
#: What the wheel ships under ``mmssm/.mim/`` (paths from the repository root).
MIM_FILES = ('model-index.yml', 'configs')


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` to ``mmssm/.mim``."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the repository's own files are the ones used
        dst_root = os.path.join(self.build_lib, 'mmssm', '.mim')
        if os.path.isdir(dst_root):
            shutil.rmtree(dst_root)  # no file left from an earlier build
        for name in MIM_FILES:
            src = os.path.join(HERE, name)
            if not os.path.exists(src):
                raise FileNotFoundError(f'{src} is missing: the wheel ships '
                                        'it as mmssm/.mim/' + name)
            dst = os.path.join(dst_root, name)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    '__pycache__', '*.pyc'))
            else:
                os.makedirs(dst_root, exist_ok=True)
                shutil.copy2(src, dst)


def get_version():
    scope = {}
    with open('mmssm/version.py', encoding='utf-8') as f:
        exec(compile(f.read(), 'mmssm/version.py', 'exec'), scope)
    return scope['__version__']


setup(
    name='mmssm',
    version=get_version(),
    description='Vision state-space backbones for OpenMMLab dense prediction',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mmssm', 'mmssm.*']) + ['mmssm.kernels'],
    package_dir={'mmssm.kernels': 'kernels'},
    include_package_data=True,
    # What mmssm imports outside mmssm/det, mmssm/seg, mmssm/cls (checked by
    # tests/test_install_requires.py): numba is optional at run time (the
    # torch engine replaces the compiled CPU kernels without it) but is the
    # CPU fast path, so it is installed by default.
    install_requires=[
        'torch>=2.1', 'mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0rc4,<2.2.0',
        'numpy<2', 'opencv-python', 'numba'
    ],
    extras_require={
        'det': ['mmdet==3.3.0'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        'triton': ['triton'],
        'safetensors': ['safetensors'],  # .safetensors checkpoints (timm, HF)
        # tools/deployment/pytorch2onnx.py: torch.onnx's exporter, --verify
        'onnx': ['onnx', 'onnxscript', 'onnxruntime'],
        'tests': ['pytest', 'pycocotools'],
    },
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
