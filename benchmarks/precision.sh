#!/usr/bin/env bash
# Reduced-precision artifacts against fp32, on trained weights, measured in one zoo bench run
# per model (each runtime x precision in its own worker process), with the accuracy each
# artifact scored on the held-out test split at export. Writes benchmarks/results/
# bench-precision-cpu-MODEL.json. About 15 minutes on 2 cores.
#
#   benchmarks/precision.sh [lenet resnet googlenet]
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${ZOO:-.venv/bin/zoo}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for model in "${@:-lenet resnet googlenet}"; do
  for m in $model; do
    "$ZOO" train "$m" --data mnist5k --epochs 2 --out "$runs/$m" --no-tensorboard --no-progress
    "$ZOO" bench "$m" --checkpoint "$runs/$m" --runtime eager,onnxruntime,pt2 \
      --precision fp32,bf16,int8 --batch 1,32 --rounds 2 \
      --json "benchmarks/results/bench-precision-cpu-$m.json"
  done
done
