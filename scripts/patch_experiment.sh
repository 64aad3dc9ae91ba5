#!/usr/bin/env bash
# The safety-patching experiment of docs/safety-patching.md, end to end: the safety-aligned SmolLM2 (made by
# scripts/align.sh when missing), one RTN variant (default int3-g128-asym; PATCH_SCHEME=int2-g64-asym ...),
# the same variant patched with `qsafe patch`, and — at the same bits per weight — the variant with the same
# share of weights kept in fp16 by the data-free magnitude and Wanda choices; all evaluated on every
# HarmBench-test and JailbreakBench prompt (never trained on: the split keeps them out), with WikiText-2
# perplexity.
# Every step skips what already exists and the evaluation resumes its journal.
#   bash scripts/patch_experiment.sh [output folder, default results/patch-experiment]
# Environment: QSAFE (the qsafe binary, default build/release/bin/qsafe), QSAFE_THREADS (default 2),
# QSAFE_DATA_DIR (the shared datasets), PATCH_SCHEME, PATCH_FRACTION (default 0.2%), PATCH_ARGS (more
# `qsafe patch` options).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/results/patch-experiment}"
qsafe="${QSAFE:-$root/build/release/bin/qsafe}"
threads="${QSAFE_THREADS:-2}"
scheme="${PATCH_SCHEME:-int3-g128-asym}"
fraction="${PATCH_FRACTION:-0.2%}"
if [ -z "${QSAFE_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets" ]; then export QSAFE_DATA_DIR="$root/../shared/datasets"; fi
mkdir -p "$out"
aligned="$HOME/.cache/qsafe/SmolLM2-135M-Instruct-aligned.gguf"
[ -f "$aligned" ] || aligned="$(bash "$root/scripts/align.sh")"
rules="*=$scheme,output=int8-g32-sym"

quantize() {
  local name=$1; shift
  [ -f "$out/$name.gguf" ] || "$qsafe" quantize -t "$threads" -m "$aligned" -r "$rules" "$@" -o "$out/$name.gguf"
}
quantize "$scheme"
quantize "$scheme-magnitude" --protect magnitude --protect-fraction "blk.*=$fraction"
quantize "$scheme-wanda" --protect wanda --protect-fraction "blk.*=$fraction" --calib-samples 32
# shellcheck disable=SC2086
[ -f "$out/$scheme-patched.gguf" ] || "$qsafe" patch -t "$threads" -m "$aligned" --variant "$out/$scheme.gguf" \
  --mask-fraction "$fraction" --out "$out/patch-$scheme" -o "$out/$scheme-patched.gguf" ${PATCH_ARGS:-}

"$qsafe" eval -t "$threads" -m "$aligned" -d harmbench-test,jailbreakbench --max-new-tokens 48 --quality-windows 16 --resume \
  --variants "fp,$out/$scheme.gguf,$out/$scheme-patched.gguf,$out/$scheme-magnitude.gguf,$out/$scheme-wanda.gguf" \
  --out "$out/eval-$scheme"
echo "report: $out/eval-$scheme/report.md"
