#!/bin/bash
# The allocator comparison of the README (Page faults). Needs Debian's libjemalloc2 and
# libtcmalloc-minimal4; writes the .out tables and .json results beside this script.
cd "$(dirname "$0")/../../.."  # the project root
declare -A CFG
CFG[default]=""
CFG[glibc-thresholds]="MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296"
CFG[glibc-hugetlb]="GLIBC_TUNABLES=glibc.malloc.hugetlb=1"
CFG[jemalloc]="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
CFG[tcmalloc]="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
for name in default glibc-thresholds glibc-hugetlb jemalloc tcmalloc; do
  env ${CFG[$name]} .venv/bin/zoo bench bam --runtime eager,torchscript,onnxruntime,pt2,aoti --batch 32 --rounds 2 --min-iters 10 --min-time 0.5 --device cpu --json benchmarks/results/allocators/$name-bam.json > benchmarks/results/allocators/$name-bam.out 2>&1
  env ${CFG[$name]} .venv/bin/zoo bench resnet18 resnet50 --runtime eager,torchscript,onnxruntime --batch 16 --rounds 2 --min-iters 5 --min-time 1 --warmup 2 --device cpu --json benchmarks/results/allocators/$name-resnet.json > benchmarks/results/allocators/$name-resnet.out 2>&1
done
