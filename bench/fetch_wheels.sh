#!/usr/bin/env bash
# Download the wheels the GPU check needs and the device image lacks (CPython 3.12, manylinux x86-64)
# into .whl/ (git-ignored). The image has torch, transformers, typer, rich, numpy, scipy, pillow,
# pytest and hypothesis; composer also needs these. Versions follow this machine's .venv.
#
#   bench/fetch_wheels.sh            # then: device run with carry [".whl"] and bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0 ruamel.yaml==0.19.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
  soxr==1.1.0 pyloudnorm==0.2.0
)
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls .whl
