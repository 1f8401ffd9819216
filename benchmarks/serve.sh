#!/usr/bin/env bash
# The server scenario over the wire (issue 25): zoo bench runs each model's server scenario
# in-process, then again against zoo serve (--serve: started by the run on a free loopback port,
# one replica, after the in-process rows, so the two never share the CPUs). Each wire row says
# what it kept of the in-process QPS (detail.in_process.qps_ratio) and the microseconds the
# wire added to one request alone (detail.in_process.overhead_us). Writes benchmarks/results/
#   bench-serve-cpu-resnet18.json           fp32 and int8 (trained one epoch on mnist5k first,
#                                            for int8's accuracy gate), p99 <= 100 ms
#   bench-serve-cpu-MODEL-bB-wW.json        lenet and the course ResNet (fp32, as initialised),
#                                            p99 <= 10 ms, zoo serve --max-batch B
#                                            --batch-wait-ms W for (B, W) in (1, 0) (8, 2) (32, 5)
# Clients, replica and runtime share this machine's CPUs: on 2 cores the client's threads take
# CPU the replica would use. Needs a quiet machine; on 2 cores about 35 minutes.
#
#   benchmarks/serve.sh [resnet18 lenet resnet]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=benchmarks/results
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
threads=$(nproc)
for model in ${@:-resnet18 lenet resnet}; do
  if [ "$model" = resnet18 ]; then
    "$PY" -m zoo train resnet18 --data mnist5k --epochs 1 --channels-last --out "$runs/resnet18" \
      --no-tensorboard --no-progress
    # Longer windows (400 requests, 2 s) as in scenarios.sh: resnet18's rates near the bound
    # need them to repeat.
    "$PY" -m zoo bench resnet18 --checkpoint "$runs/resnet18" --runtime onnxruntime \
      --precision fp32,int8 --scenario server --splits "1x$threads" --latency-bound 100 \
      --server-requests 400 --min-time 2 --serve \
      --serve-args "--threads $threads --max-batch 4 --batch-wait-ms 2" \
      --json "$out/bench-serve-cpu-resnet18.json"
    continue
  fi
  for setting in "1 0" "8 2" "32 5"; do
    read -r batch wait <<<"$setting"
    "$PY" -m zoo bench "$model" --runtime onnxruntime --scenario server --splits "1x$threads" \
      --latency-bound 10 --serve \
      --serve-args "--threads $threads --max-batch $batch --batch-wait-ms $wait" \
      --json "$out/bench-serve-cpu-$model-b$batch-w$wait.json"
  done
done
