#!/usr/bin/env bash
# One-command setup for mmssm: creates .venv/ at the repository root and installs a
# pinned, known-good OpenMMLab stack plus mmssm (editable).
#
#   bash tools/install.sh            # CPU stack (torch 2.14.1 + mmcv 2.1.0 with CPU ops)
#
# Environment:
#   PYTHON          interpreter used to create the venv (default: python3.11, else python3)
#   MMSSM_WHEELS    folder holding a prebuilt mmcv-2.1.0 wheel (default: ../shared/wheels)
#   MMSSM_VENV      venv location (default: <repo>/.venv)
# A GPU user installs a CUDA build of torch and an mmcv wheel from OpenMMLab's index
# instead (see README.md, "Install with a GPU").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMSSM_VENV:-$ROOT/.venv}
WHEELS=${MMSSM_WHEELS:-$ROOT/../shared/wheels}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}

echo "[mmssm] creating $VENV with $PY"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

# setuptools < 80 still ships pkg_resources without a deprecation warning; mmengine uses it to resolve
# `mmdet::`/`mmseg::` base configs; mmcv's setup.py needs < 70 only when built from source.
"${PIP[@]}" -q --upgrade "pip>=23" "setuptools>=69,<80" wheel

# torch + torchvision: these exact releases import together on the CPU.
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1

# numpy < 2: mmcv 2.1.0 / mmdet 3.3.0 / mmseg 1.2.2 predate numpy 2 (opencv pinned to a
# release that still accepts numpy 1.x).
"${PIP[@]}" "numpy==1.26.4" "opencv-python==4.10.0.84" "mmengine==0.10.7"

# mmcv 2.1.0: mmdet 3.3.0 / mmseg 1.2.2 refuse mmcv >= 2.2.0, and PyPI only has its sdist.
whl=$(ls "$WHEELS"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$whl" ]; then
    echo "[mmssm] mmcv from prebuilt wheel $whl"
    "${PIP[@]}" --no-deps "$whl"
else
    echo "[mmssm] no mmcv wheel in $WHEELS: building mmcv 2.1.0 from source (~45 CPU-minutes)"
    "${PIP[@]}" "setuptools<70"
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip download --no-deps --no-binary :all: -d "$tmp" mmcv==2.1.0
    tar -xzf "$tmp"/mmcv-2.1.0.tar.gz -C "$tmp"
    # torch 2.14's headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$tmp"/mmcv-2.1.0/setup.py
    (cd "$tmp"/mmcv-2.1.0 && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
        "$VENV/bin/python" -m pip wheel --no-deps --no-cache-dir --no-build-isolation -w "$tmp/dist" .)
    "${PIP[@]}" --no-deps "$tmp"/dist/mmcv-2.1.0-*.whl
    "${PIP[@]}" "setuptools>=69,<80"
fi
# mmcv's own runtime requirements (installed --no-deps above).
"${PIP[@]}" addict packaging Pillow pyyaml yapf

"${PIP[@]}" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" \
    triton "numba==0.68.1" pycocotools ftfy regex scipy shapely terminaltables prettytable \
    matplotlib pytest "numpy==1.26.4" "mmcv==2.1.0" "mmengine==0.10.7" \
    "torch==2.14.1" "torchvision==0.29.1"

# ONNX export (tools/deployment/pytorch2onnx.py) and timm (TimmClassifier of the GroupMamba ImageNet
# configs). numpy stays 1.x: ml_dtypes < 0.6 is the last series that accepts it (onnx and onnxscript
# need ml_dtypes; a newer one pulls numpy 2, which mmcv 2.1.0 cannot import).
"${PIP[@]}" "onnx==1.23.2" "onnxscript==0.7.2" "onnxruntime==1.32.0" "ml_dtypes<0.6" "timm==1.0.31" \
    "numpy==1.26.4" "torch==2.14.1" "torchvision==0.29.1"

"${PIP[@]}" --no-deps -e "$ROOT"
"$VENV/bin/python" -c "import torch, torchvision, mmcv, mmengine, mmdet, mmseg, mmpretrain, mmssm; \
print('[mmssm] ok: torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, \
'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__)"
