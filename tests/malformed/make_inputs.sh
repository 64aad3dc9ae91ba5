#!/usr/bin/env bash
# Makes the inputs of the malformed-input table (cases.cmake) in OUT_DIR: the generator's files, and a
# qsafe-quantized copy of the tiny model whose layer blobs the generator then corrupts.
#   make_inputs.sh GENERATOR QSAFE OUT_DIR
set -euo pipefail
gen="$1" qsafe="$2" out="$3"
rm -rf "$out"
mkdir -p "$out"
"$gen" "$out"
"$qsafe" quantize -m "$out/tiny.gguf" -r '*=int4-g32-asym' -o "$out/tiny-int4.gguf" -t 1 >/dev/null
"$gen" --quantized "$out/tiny-int4.gguf" "$out"
# An evaluation run whose journal the journal cases damage (3 prompts, 4 tokens each: seconds).
"$qsafe" eval -m "$out/tiny.gguf" --variants fp -d default --limit 3 --max-new-tokens 4 -t 1 \
  -o "$out/eval" >"$out/eval.log" 2>&1 || { cat "$out/eval.log" >&2; exit 1; }
echo "malformed inputs in $out"
