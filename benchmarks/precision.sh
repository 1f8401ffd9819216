#!/usr/bin/env bash
# Reduced-precision artifacts against fp32, on trained weights, measured in one zoo bench run
# per model (each runtime x precision in its own worker process), with the accuracy each
# artifact scored on the held-out test split at export. Writes benchmarks/results/
# bench-precision-cpu-MODEL.json; `python benchmarks/targets.py` checks them against the
# targets (which depend on the CPU: AMX, or VNNI without AMX). On 2 cores: about 15 minutes
# for the three small models, 30 for resnet18 (trained two epochs at 224x224 first).
#
#   benchmarks/precision.sh [lenet resnet googlenet resnet18]
#
# Runtimes: eager, ONNX Runtime, .pt2, AOTInductor, and OpenVINO from the example plugin
# (examples/zoo-openvino, installed into a temporary site directory, not into the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
"$PY" -m pip install --quiet --no-deps --no-build-isolation --disable-pip-version-check \
  --target "$runs/site" examples/zoo-openvino
export PYTHONPATH="$runs/site${PYTHONPATH:+:$PYTHONPATH}"
runtimes=eager,onnxruntime,pt2,aoti,openvino
for model in ${@:-lenet resnet googlenet resnet18}; do
  if [ "$model" = resnet18 ]; then
    train=(--epochs 2 --channels-last) batches=1,16
  else
    train=(--epochs 2) batches=1,32
  fi
  "$PY" -m zoo train "$model" --data mnist5k "${train[@]}" --out "$runs/$model" \
    --no-tensorboard --no-progress
  "$PY" -m zoo bench "$model" --checkpoint "$runs/$model" --runtime "$runtimes" \
    --precision fp32,bf16,int8 --batch "$batches" --rounds 2 \
    --json "benchmarks/results/bench-precision-cpu-$model.json"
done
