#!/usr/bin/env bash
# The one prepared script a session runs on the device machine (NVIDIA H200, Python 3.12,
# torch preinstalled, no package registry), from the repository root, with $OUT set to the
# folder whose files come back. How a session uses it:
#
#   1. here, where pip reaches PyPI:   benchmarks/gpu_wheels.sh    (fills .whl/, about 4 MiB)
#   2. through the run tool:           command "bash benchmarks/gpu_run.sh", carry [".whl"],
#                                      timeout_s 480 (the budget's 420 s and some margin)
#   3. read $OUT/gpu-check.md (printed at the end), gpu-check.json, the zoo bench records
#      and log.txt (everything every step printed).
#
# It installs the carried wheels into /tmp/site (on PYTHONPATH), zoo itself with
# `pip install --no-deps -e .`, then runs benchmarks/gpu_check.py with --started set to when
# this script began, so the install counts against the budget: BUDGET seconds in all
# (default 420, that is 7 minutes of the window of about 15). Arguments are passed on to
# gpu_check.py, e.g. a rerun of what did not fit in a second window:
#
#   BUDGET=400 bash benchmarks/gpu_run.sh --only amp-fp32,precision-lenet,precision-resnet18
#
# Exit status: gpu_check.py's (0: nothing failed, 1: a check failed, 2: no CUDA device), or 3
# when the install failed.
set -uo pipefail
started=$(date +%s)
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the records go to}"
mkdir -p "$OUT"

run() {
    echo "== gpu_run.sh: install ($(date -u +%H:%M:%S) UTC)"
    shopt -s nullglob
    local wheels=(.whl/*.whl)
    if ((${#wheels[@]})); then
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
            --target /tmp/site "${wheels[@]}" || return 3
    else
        echo "gpu_run.sh: no .whl/*.whl carried (benchmarks/gpu_wheels.sh makes them)"
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    python3 -m pip install -q --no-deps --no-build-isolation -e . || return 3
    echo "== gpu_run.sh: installed in $(($(date +%s) - started)) s"
    python3 benchmarks/gpu_check.py --out "$OUT" --started "$started" \
        --budget "${BUDGET:-420}" "$@"
    local status=$?
    echo "== gpu_run.sh: gpu_check.py exit $status after $(($(date +%s) - started)) s"
    if [ -f "$OUT/gpu-check.md" ]; then
        cat "$OUT/gpu-check.md"
    fi
    return "$status"
}

run "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
