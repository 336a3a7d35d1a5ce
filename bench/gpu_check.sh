#!/usr/bin/env bash
# The prepared GPU check: one command on a bare GPU machine (see bench/gpu.py for what it measures).
#
#   bench/fetch_wheels.sh                # where pip can reach PyPI: the wheels a bare CUDA image lacks, into .whl/
#   bench/gpu_check.sh [--budget-s 300]  # on the GPU machine, with .whl/ copied along (pytest ~75 s, then the budget)
#
# Writes into $OUT (else bench/results): gpu-<card>-<date>.json, pytest-gpu.log, gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
echo "== pytest -m gpu"
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest-gpu.log"
echo "== bench.gpu"
python3 -m bench.gpu --out "$out" "$@" 2>&1 | tee "$out/gpu-check.log"
