#!/usr/bin/env bash
# qsafe beside llama.cpp on the same SmolLM2 weights, on this machine, in one run: checks the peer's
# WikiText-2 perplexity first (a fast wrong kernel is no baseline), then prefill (128 tokens) and decode (32
# tokens after a 64-token prompt) at 2 threads, and prints a markdown table naming the CPU.
# RUN BY HAND ONLY (builds llama.cpp: tools/reference/build_llama_cpp.sh). From the repository root, after a
# Release build (build/release):
#
#   bash tools/reference/peer_speed.sh > peer.md
#
# Files: the Q4_1 file qsafe fetches, and Q4_0, Q8_0 and F32 files llama-quantize makes from it
# (--allow-requantize: the same weights, rounded once more). qsafe runs Q4_0 and Q8_0 in their own values
# (bench_decode's "file" scheme: int4-g32-sym / int8-g32-sym, no value changed), F32 as fp32, and its own
# int4-g128-asym / int8-pc-sym / int2-g32-asym re-quantizations for reference.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="${THREADS:-2}"
bin="$(bash "$root/tools/reference/build_llama_cpp.sh")"
model="$(bash "$root/scripts/fetch_model.sh")"
dir="$(dirname "$model")/peer"
mkdir -p "$dir"
for type in Q4_0 Q8_0 F32; do
  [ -f "$dir/smollm2-$type.gguf" ] || "$bin/llama-quantize" --allow-requantize "$model" "$dir/smollm2-$type.gguf" "$type" >/dev/null 2>&1
done
wiki="${QSAFE_DATA_DIR:-$root/../shared/datasets}/wikitext2/test.txt"
cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "CPU: $cpu; $threads threads; $(date -u +%F)"
echo
echo "| file | llama.cpp ppl (8 x 512) | qsafe ppl (8 x 512) |"
echo "|---|--:|--:|"
for f in "$model" "$dir/smollm2-Q4_0.gguf" "$dir/smollm2-Q8_0.gguf"; do
  lp="$("$bin/llama-perplexity" -m "$f" -f "$wiki" -c 512 --chunks 8 -t "$threads" 2>&1 | grep -o 'Final estimate: PPL = [0-9.]*' | awk '{print $NF}')"
  qp="$(QSAFE_MODEL="$f" "$root/build/release/bin/qsafe" perplexity --model "$f" --chunks 8 2>&1 | grep -o 'perplexity[^0-9]*[0-9.]*' | tail -1 | awk '{print $NF}')"
  echo "| $(basename "$f") | $lp | $qp |"
done
echo
echo "| engine, weights | prefill 128, tok/s | decode 32, tok/s |"
echo "|---|--:|--:|"
for f in "$model" "$dir/smollm2-Q4_0.gguf" "$dir/smollm2-Q8_0.gguf" "$dir/smollm2-F32.gguf"; do
  "$bin/llama-bench" -m "$f" -p 128 -n 32 -t "$threads" -r 5 -o csv 2>/dev/null |
    awk -F, -v name="llama.cpp $(basename "$f")" 'NR==1 {for (i=1;i<=NF;i++) {gsub(/"/,"",$i); col[$i]=i}}
      NR>1 {gsub(/"/,""); p=$col["n_prompt"]; n=$col["n_gen"]; ts=$col["avg_ts"];
            if (p>0) pp=ts; else tg=ts} END {printf "| %s | %.1f | %.1f |\n", name, pp, tg}'
done
bench="$root/build/release/bench/bench_decode"
run_qsafe() {  # label, model file, scheme index, activations (0 fp32, 1 automatic/int16, 2 int8)
  QSAFE_MODEL="$2" "$bench" --benchmark_filter="bm_(prefill|decode)/scheme:$3/threads:$threads/act:$4/" \
    --benchmark_min_time=1 --benchmark_format=csv 2>/dev/null |
    awk -F, -v name="$1" '/bm_prefill/ {pp=$0} /bm_decode/ {tg=$0} END {
      split(pp,a,","); split(tg,b,","); printf "| %s | %.1f | %.1f |\n", name, a[7], b[7]}'
}
run_qsafe "qsafe smollm2-Q4_0.gguf as stored, fp32 activations" "$dir/smollm2-Q4_0.gguf" 4 0
run_qsafe "qsafe smollm2-Q4_0.gguf as stored, int16 activations" "$dir/smollm2-Q4_0.gguf" 4 1
run_qsafe "qsafe smollm2-Q4_0.gguf as stored, int8 activations" "$dir/smollm2-Q4_0.gguf" 4 2
run_qsafe "qsafe smollm2-Q8_0.gguf as stored, int16 activations" "$dir/smollm2-Q8_0.gguf" 4 1
run_qsafe "qsafe smollm2-Q8_0.gguf as stored, int8 activations" "$dir/smollm2-Q8_0.gguf" 4 2
run_qsafe "qsafe fp32" "$model" 0 0
run_qsafe "qsafe int4-g128-asym (from Q4_1), int16 activations" "$model" 2 1
run_qsafe "qsafe int8-pc-sym (from Q4_1), int16 activations" "$model" 1 1
