#!/usr/bin/env bash
# qsafe's test command (README.md; CI runs it through .ci/run):
#   1. installs the Debian packages and fetches the default model (for the real-model tests),
#   2. Release build of everything (library tests, tools, examples, benchmarks) and ctest,
#   3. a consumer project built three ways: find_package after install, FetchContent, add_subdirectory,
#   4. an AddressSanitizer + UBSan build without -march=native running the same tests (but the four longest
#      real-model ones),
#   5. the libFuzzer harnesses of every file reader, a short run each (scripts/fuzz.sh).
# Environment: QSAFE_JOBS (default: nproc), QSAFE_DATA_DIR (default ../shared/datasets),
#              QSAFE_CACHE_DIR (model cache, default ~/.cache/qsafe), QSAFE_SKIP_ASAN=1 to skip step 4,
#              QSAFE_SKIP_FUZZ=1 to skip step 5, QSAFE_FUZZ_SECONDS (per harness, default 30).
# Tests that need the model or the shared datasets are skipped without them, counted at the end — except
# under CI (CI=true), where a missing model or dataset fails the run: a green CI means every test ran.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${QSAFE_JOBS:-$(nproc)}"

# Which machine this log comes from: qsafe's kernels and their tests depend on the instruction sets.
cpu_model="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
cpu_sets="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
  grep -xE 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512dq|avx512cd|avx512_vnni|avx512_bf16|avx_vnni|amx_tile|amx_int8|amx_bf16' |
  tr '\n' ' ')"
echo "test.sh: CPU ${cpu_model:-unknown}, $(nproc) cores; instruction sets: ${cpu_sets:-none of AVX2/AVX-512}" >&2

in_ci=0
case "${CI:-}" in true | 1 | yes) in_ci=1 ;; esac

bash scripts/install_deps.sh
if ! model="$(bash scripts/fetch_model.sh)"; then
  if [ "$in_ci" = 1 ]; then
    echo "test.sh: could not fetch the default model, and under CI every real-model test must run" >&2
    exit 1
  fi
  echo "test.sh: could not fetch the default model; real-model tests will be skipped" >&2
else
  echo "test.sh: model at $model" >&2
fi
if [ -z "${QSAFE_DATA_DIR:-}" ] && [ -d "$root/../shared/datasets" ]; then
  export QSAFE_DATA_DIR="$root/../shared/datasets"
fi
if [ -z "${QSAFE_DATA_DIR:-}" ]; then
  if [ "$in_ci" = 1 ]; then
    echo "test.sh: the shared datasets were not found (set QSAFE_DATA_DIR; tried $root/../shared/datasets)," \
         "and under CI every dataset test must run" >&2
    exit 1
  fi
  echo "test.sh: the shared datasets were not found; the tests that read them will be skipped" >&2
fi
# ctest's summary of one stage, kept for the skip count at the end.
mkdir -p build
skipped_log=build/skipped-tests.txt
: > "$skipped_log"
count_skipped() { grep -E '\*\*\*Skipped|\(Skipped\)' "$1" | grep -oE 'Test +#[0-9]+: .*' | sed -E 's/ +\*\*\*Skipped.*//' >> "$skipped_log" || true; }

echo "== Release build and tests" >&2
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs"
ctest --test-dir build/release --output-on-failure -j "$jobs" 2>&1 | tee build/ctest-release.log
count_skipped build/ctest-release.log
# qsafe's own view of the CPU (the level its products run at, each scheme's kernel), and which
# instruction-set units the conformance test ran or skipped on this CPU.
build/release/bin/qsafe info --cpu >&2
grep -h "^instruction sets run:" build/release/Testing/Temporary/LastTest.log | sed 's/^/test.sh: /' >&2 || true

echo "== Consumer projects (find_package, FetchContent, add_subdirectory)" >&2
rm -rf build/consumer build/install
cmake --install build/release --prefix build/install >/dev/null
expect_openblas=OFF
grep -q "^QSAFE_HAS_OPENBLAS:INTERNAL=ON" build/release/CMakeCache.txt && expect_openblas=ON
consumer() {
  local mode="$1"
  cmake -S tests/consumer -B "build/consumer/$mode" -DCMAKE_BUILD_TYPE=Release -DQSAFE_CONSUMER_MODE="$mode" \
        -DQSAFE_CONSUMER_EXPECT_OPENBLAS="$expect_openblas" \
        -DCMAKE_PREFIX_PATH="$root/build/install" -DQSAFE_SOURCE_DIR="$root" >/dev/null
  cmake --build "build/consumer/$mode" >/dev/null
  "build/consumer/$mode/qsafe_consumer"
}
# Three one-file projects: built side by side, each failure reported.
pids=()
for mode in find_package fetch_content add_subdirectory; do
  consumer "$mode" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

if [ "${QSAFE_SKIP_ASAN:-0}" != "1" ]; then
  echo "== AddressSanitizer + UBSan build and tests" >&2
  # -O1: the usual optimisation level for sanitizer builds, and much quicker to compile than -O3.
  # QSAFE_NATIVE=OFF: this stage also proves the portable build, where only the instruction-set units
  # (chosen at run time) use the CPU's wider instructions.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1" -DQSAFE_SANITIZE=ON -DQSAFE_NATIVE=OFF \
        -DQSAFE_BUILD_EXAMPLES=OFF -DQSAFE_BUILD_BENCH=OFF >/dev/null
  cmake --build build/asan -j "$jobs"
  # The longest real-model runs (llama.cpp logits, WikiText-2 perplexity, the evaluator, sequential GPTQ,
  # HQQ, the safety data and int16-activation checks, the PyTorch training references and the SIGKILL-resume
  # training run on SmolLM2) run in the Release stage only: under the sanitizers they take minutes (the whole
  # CI took 67 min on a 2-core Zen 3 with HQQ, safety data and int16 activations still here), and the code they run (GGUF reading, Q4_1
  # blocks, decoder, HQQ, evaluator) is exercised here by the tiny-model tests and by the SmolLM2 judge and
  # tokenizer tests.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build/asan --output-on-failure -j "$jobs" \
      -E "logits agree with llama.cpp|WikiText-2: tokenization and perplexity windows|evaluator on SmolLM2|sequential GPTQ on SmolLM2|HQQ on SmolLM2|safety data on SmolLM2|SmolLM2 int4-g128: int16 activations|SmolLM2 training reference|train killed with SIGKILL" \
      2>&1 | tee build/ctest-asan.log
  count_skipped build/ctest-asan.log
fi
if [ "${QSAFE_SKIP_FUZZ:-0}" != "1" ]; then
  # Every file reader under libFuzzer + ASan + UBSan for a short time, after replaying the kept crash inputs
  # (docs/reliability.md records a long run). QSAFE_FUZZ_SECONDS per harness, default 30.
  echo "== Fuzzing (libFuzzer, ${QSAFE_FUZZ_SECONDS:-30} s per harness)" >&2
  bash scripts/fuzz.sh "${QSAFE_FUZZ_SECONDS:-30}"
fi
skipped_count="$(grep -c . "$skipped_log" || true)"
if [ "$skipped_count" -gt 0 ]; then
  echo "test.sh: all tests that ran passed; $skipped_count tests skipped (no model or no shared datasets):" >&2
  sed 's/^/  /' "$skipped_log" >&2
else
  echo "test.sh: all tests passed, none skipped" >&2
fi
