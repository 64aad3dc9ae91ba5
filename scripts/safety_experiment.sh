#!/usr/bin/env bash
# The safety-aware quantization experiment of docs/safety-aware-quantization.md, end to end: plain RTN,
# magnitude-chosen and safety-critical fp16 outliers, and safety- and utility-driven bit allocation, at
# about 3.5 and 2.5 bits per weight in the transformer blocks, evaluated against the fp model on 100
# AdvBench and 100 HarmBench-test prompts. Every step skips what already exists and the evaluation resumes
# its journal, so an interrupted run continues where it stopped.
#   bash scripts/safety_experiment.sh [output folder, default results/safety-experiment]
# Environment: QSAFE (the qsafe binary, default build/release/bin/qsafe), QSAFE_THREADS (default 2),
# QSAFE_DATA_DIR (the shared datasets). About 3 hours on two idle cores, most of it the two sensitivity
# tables (630 measurements each).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/results/safety-experiment}"
qsafe="${QSAFE:-$root/build/release/bin/qsafe}"
threads="${QSAFE_THREADS:-2}"
if [ -z "${QSAFE_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets" ]; then export QSAFE_DATA_DIR="$root/../shared/datasets"; fi
mkdir -p "$out"

# Safety data: the fp model's 64-token answers to the 60 HarmBench validation prompts, none of which is
# among the evaluation prompts. Utility statistics: 32 WikiText-2 windows (the calibration half).
safety=(--safety-set "$out/safety.jsonl" --safety-exclude advbench,harmbench-test --calib-samples 32)
# Allocation: three candidate widths; sensitivity over 512 scored tokens for both drivers (the 8 shortest
# safety conversations x 64 answer tokens; 2 WikiText-2 windows x 256 tokens).
allocation=(--candidates int2-g64-asym,int3-g128-asym,int4-g128-asym -r '*=int3-g128-asym')

quantize() {
  local name=$1; shift
  [ -f "$out/$name.gguf" ] || "$qsafe" quantize -t "$threads" "$@" -o "$out/$name.gguf"
}
quantize plain-int3g64 "${safety[@]}" -r '*=int3-g64-asym'
quantize magnitude-int3g128-1pct "${safety[@]}" -r '*=int3-g128-asym' --protect magnitude --protect-fraction 'blk.*=1%'
quantize safety-int3g128-1pct "${safety[@]}" -r '*=int3-g128-asym' --protect safety --protect-fraction 'blk.*=1%' \
  --utility-exclusion 'blk.*=1%'
quantize plain-int2g64 "${safety[@]}" -r '*=int2-g64-asym'
quantize magnitude-int2g64-0.2pct "${safety[@]}" -r '*=int2-g64-asym' --protect magnitude --protect-fraction 'blk.*=0.2%'
quantize safety-int2g64-0.2pct "${safety[@]}" -r '*=int2-g64-asym' --protect safety --protect-fraction 'blk.*=0.2%' \
  --utility-exclusion 'blk.*=1%'
for bpw in 3.5 2.5; do
  quantize "alloc-safety-$bpw" --safety-set "$out/safety.jsonl" --safety-exclude advbench,harmbench-test "${allocation[@]}" \
    --sensitivity-prompts 8 --target-bpw "$bpw" --allocate safety --sensitivity-cache "$out/sens-safety.jsonl" \
    --allocation-report "$out/alloc-safety-$bpw.json"
  quantize "alloc-utility-$bpw" "${allocation[@]}" --sensitivity-windows 2 --target-bpw "$bpw" --allocate utility \
    --sensitivity-cache "$out/sens-utility.jsonl" --allocation-report "$out/alloc-utility-$bpw.json"
done

variants=fp
for name in plain-int3g64 magnitude-int3g128-1pct safety-int3g128-1pct plain-int2g64 magnitude-int2g64-0.2pct \
            safety-int2g64-0.2pct alloc-safety-3.5 alloc-safety-2.5 alloc-utility-3.5 alloc-utility-2.5; do
  variants="$variants,$out/$name.gguf"
done
"$qsafe" eval -t "$threads" --variants "$variants" --dataset advbench,harmbench-test --limit 100 --seed 1 \
  --max-new-tokens 64 --batch 50 --quality-windows 8 --out "$out/eval" --resume
echo "safety_experiment.sh: report in $out/eval/report.md" >&2
