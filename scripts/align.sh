#!/usr/bin/env bash
# align.sh - make the safety-aligned SmolLM2 (docs/training.md): LoRA SFT + DPO on a fixed split of the
# shared datasets, merged into ~/.cache/qsafe/SmolLM2-135M-Instruct-aligned.gguf. Never committed: this
# command makes it. Prints the model's path on stdout (diagnostics on stderr), like fetch_model.sh.
#
# Idempotent: an existing aligned model is reused; an interrupted run continues from its journal and
# checkpoints in ~/.cache/qsafe/aligned/. Needs the qsafe tool (built here if missing) and the shared
# datasets (QSAFE_DATA_DIR, default ../shared/datasets).
# Environment: QSAFE_CACHE_DIR, QSAFE_DATA_DIR, QSAFE_JOBS (build), QSAFE_REALIGN=1 (rebuild the model).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${QSAFE_CACHE_DIR:-$HOME/.cache/qsafe}"
model="$cache/SmolLM2-135M-Instruct-aligned.gguf"
if [ -f "$model" ] && [ "${QSAFE_REALIGN:-0}" != "1" ]; then
  echo "align: reusing $model" >&2
  echo "$model"
  exit 0
fi
if [ -z "${QSAFE_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets" ]; then
  export QSAFE_DATA_DIR="$root/../shared/datasets"
fi
base="$(bash scripts/fetch_model.sh)"
qsafe="$root/build/release/bin/qsafe"
if [ ! -x "$qsafe" ]; then
  bash scripts/install_deps.sh
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/release -j "${QSAFE_JOBS:-$(nproc)}" --target qsafe_cli
fi
rm -f "$model.partial"
"$qsafe" align --model "$base" --out "$cache/aligned" -o "$model.partial" >&2
mv "$model.partial" "$model"
echo "$model"
