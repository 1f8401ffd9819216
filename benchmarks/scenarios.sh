#!/usr/bin/env bash
# The offline and server scenarios (issue 14) for LeNet, the course ResNet and resnet18 in
# eager, TorchScript and ONNX Runtime, over every thread split of the machine's cores, and the
# stability rule beside a CPU hog. Writes benchmarks/results/:
#   bench-scenarios-cpu-MODEL.json (+ .png)   offline and server, p99 bound 10 ms (small
#                                              models) or 100 ms (resnet18)
#   bench-stability-cpu-{quiet,hog}.json       LeNet single-stream, alone and beside one busy
#                                              process per CPU
# `python benchmarks/targets.py` checks the server targets. Needs a quiet machine (nothing else
# running: the rows say when something was); on 2 cores about 30 minutes.
#
#   benchmarks/scenarios.sh [lenet resnet resnet18] [--no-hog]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=benchmarks/results
models=() hog=1
for arg in "$@"; do
  if [ "$arg" = --no-hog ]; then hog=0; else models+=("$arg"); fi
done
[ ${#models[@]} -gt 0 ] || models=(lenet resnet resnet18)
runtimes=eager,torchscript,onnxruntime
for model in "${models[@]}"; do
  # resnet18: longer windows (400 requests, 2 s): with 200 its rates near the bound passed
  # once and not again, and its figures moved by a third between runs.
  if [ "$model" = resnet18 ]; then
    bound=100 batches=1,8,16 windows=(--server-requests 400 --min-time 2)
  else
    bound=10 batches=1,8,32 windows=()
  fi
  "$PY" -m zoo bench "$model" --runtime "$runtimes" --scenario offline,server \
    --batch "$batches" --latency-bound "$bound" "${windows[@]}" \
    --json "$out/bench-scenarios-cpu-$model.json" --plot "$out/bench-scenarios-cpu-$model.png"
done
if [ "$hog" = 1 ]; then
  args=(lenet --runtime eager,onnxruntime --batch 1,8,32 --max-rounds 5)
  start=$(date +%s)
  "$PY" -m zoo bench "${args[@]}" --json "$out/bench-stability-cpu-quiet.json"
  quiet_s=$(( $(date +%s) - start ))
  pids=()
  for _ in $(seq "$(nproc)"); do "$PY" -c 'while True: pass' & pids+=($!); done
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  start=$(date +%s)
  "$PY" -m zoo bench "${args[@]}" --json "$out/bench-stability-cpu-hog.json"
  echo "wall seconds: quiet $quiet_s, beside $(nproc) busy processes $(( $(date +%s) - start ))"
fi
