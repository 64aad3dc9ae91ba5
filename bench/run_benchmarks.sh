#!/usr/bin/env bash
# Runs the representative benchmark subset behind docs/benchmarks.md (about 5 minutes on 2 cores) and
# writes Google Benchmark JSON to OUT_DIR, then prints the markdown tables (bench/benchmarks_table.py).
#   bench/run_benchmarks.sh [BUILD_DIR] [OUT_DIR]      defaults: build-kern, bench-results
# Build first: cmake -S . -B build-kern -DCMAKE_BUILD_TYPE=Release -DQSAFE_BUILD_BENCH=ON && cmake --build build-kern -j2
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build-kern}"
out="${2:-bench-results}"
mkdir -p "$out"
min_time="${QSAFE_BENCH_MIN_TIME:-0.3}"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/load.txt"
"$build/bench/bench_bandwidth" --benchmark_out="$out/bandwidth.json" --benchmark_out_format=json

run() {  # name filter
    "$build/bench/bench_matmul" --benchmark_filter="$2" --benchmark_min_time="$min_time" \
        --benchmark_out="$out/matmul_$1.json" --benchmark_out_format=json
}
# Batch 1 for every scheme on the square shape, cold and hot, 1 and 2 threads.
run b1_square 'matmul/[^/]+/4096x4096/b1/'
# Batches 8 and 32 for the main schemes.
run batch_square 'matmul/(int2-g32-asym|int4-g32-sym|int4-g128-asym|int4-g128-asym-int8act|int8-pc-sym|nf4-g64|eigen-fp32)/4096x4096/b(8|32)/'
# The LLM-shaped rectangles, cold, batch 1 and 8.
run rect 'matmul/(int2-g32-asym|int2-g32-asym-int8act|int4-g128-asym|int4-g128-asym-int8act|int8-pc-sym|int8-pc-sym-int8act|eigen-fp32)/(4096x14336|14336x4096)/b(1|8)/cold/'
# Small (cache-resident) shapes.
run small 'matmul/(int4-g128-asym|int8-pc-sym|eigen-fp32)/(576x1536|1536x576)/b(1|8)/'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.txt"

python3 "$here/benchmarks_table.py" "$out"/bandwidth.json "$out"/matmul_*.json
