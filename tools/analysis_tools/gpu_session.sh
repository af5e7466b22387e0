#!/usr/bin/env bash
# The GPU measurements of issue #21 in two steps, each under 10 minutes on
# one H200 (run from the repository root, with the pure-Python mmengine /
# mmcv-lite / addict / termcolor / yapf / platformdirs wheels on PYTHONPATH):
#
#   bash tools/analysis_tools/gpu_session.sh scan  OUT   # tune_scan + gpu_check (~7 min)
#   bash tools/analysis_tools/gpu_session.sh models OUT  # benchmark --suite gpu + conv1d (~4 min)
#
# Everything goes to OUT (default work_dirs/gpu): JSON and the printed logs.
set -u -o pipefail
step=${1:?usage: gpu_session.sh scan|models [OUT]}
out=${2:-work_dirs/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
case "$step" in
  scan)
    python3 tools/analysis_tools/tune_scan.py --out "$out/tune.json" \
      --budget-s 150 2>&1 | tee "$out/tune.log"
    python3 tools/analysis_tools/gpu_check.py --skip-models \
      --out "$out/check.json" --budget-s 240 2>&1 | tee "$out/check.log" ;;
  models)
    python3 tools/analysis_tools/gpu_check.py --skip-correctness \
      --skip-bench --out "$out/train.json" --budget-s 120 2>&1 \
      | tee "$out/train.log"
    python3 tools/analysis_tools/benchmark.py --suite gpu --device cuda \
      --out "$out/suite" 2>&1 | tee "$out/suite.log"
    python3 tools/analysis_tools/benchmark_conv1d.py \
      --json "$out/conv1d.json" 2>&1 | tee "$out/conv1d.log" ;;
  *)
    echo "gpu_session.sh: step must be 'scan' or 'models', got '$step'" >&2
    exit 2 ;;
esac
