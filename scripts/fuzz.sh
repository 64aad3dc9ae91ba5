#!/usr/bin/env bash
# Fuzzes qsafe's file readers with libFuzzer + AddressSanitizer + UBSan (tests/fuzz/):
#   bash scripts/fuzz.sh [SECONDS_PER_HARNESS]      (default 60)
# 1. configures build/fuzz with clang-14 (-DQSAFE_FUZZ=ON; qsafe's tests, tools, examples, benchmarks off),
# 2. builds the harnesses (tests/fuzz/fuzz_*.cpp) and the seed generator, writes fresh seed corpora to
#    build/fuzz/corpus/<harness>/ (small valid files made by qsafe's own writers),
# 3. replays the kept regression inputs tests/fuzz/regressions/<harness>/* (each run once),
# 4. fuzzes each harness for SECONDS on its corpus (new inputs are added to the corpus folder; crashes are
#    written to build/fuzz/artifacts/<harness>/).
# Prints one summary line per harness and exits non-zero if any harness crashed (a regression input or a
# new crash, leak, sanitizer report, timeout or out-of-memory).
# Installs nothing: needs clang-14 / clang++-14 and the libFuzzer runtime (Debian: clang-14, libclang-rt-14-dev,
# libomp-14-dev) besides qsafe's own dependencies (scripts/install_deps.sh).
# Environment: QSAFE_JOBS (build jobs, default nproc), QSAFE_FUZZ_HARNESSES (space-separated subset, e.g.
# "fuzz_gguf fuzz_journal"), QSAFE_FUZZ_ARGS (extra libFuzzer flags), QSAFE_FUZZ_CORPUS (corpus folder,
# default build/fuzz/corpus; give two concurrent runs different ones).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${1:-60}"
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_HARNESS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac
jobs="${QSAFE_JOBS:-$(nproc)}"

for tool in clang-14 clang++-14; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fuzz.sh: $tool not found; libFuzzer needs clang (Debian/Ubuntu: apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)" >&2
    exit 1
  fi
done

build=build/fuzz
start_build=$(date +%s)
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQSAFE_FUZZ=ON \
  -DQSAFE_BUILD_TESTS=OFF -DQSAFE_BUILD_EXAMPLES=OFF -DQSAFE_BUILD_BENCH=OFF -DQSAFE_INSTALL=OFF \
  -DQSAFE_NATIVE=OFF -DQSAFE_OPENBLAS=OFF >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; echo "fuzz.sh: cmake configure failed" >&2; exit 1; }
cmake --build "$build" --target qsafe_fuzz -j "$jobs"
echo "fuzz.sh: build took $(( $(date +%s) - start_build )) s" >&2

if [ -n "${QSAFE_FUZZ_HARNESSES:-}" ]; then
  harnesses="$QSAFE_FUZZ_HARNESSES"
else
  harnesses="$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//' | tr '\n' ' ')"
fi

corpus="${QSAFE_FUZZ_CORPUS:-$build/corpus}"  # separate folders let two runs share one build
rm -rf "$corpus"
"$build/tests/fuzz/qsafe_fuzz_seeds" "$corpus" >&2

# Leaks are bugs too. OpenMP threads are not needed to read files.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

failed=0
summary=()
for h in $harnesses; do
  name="${h#fuzz_}"
  bin="$build/tests/fuzz/$h"
  log_dir="$build/logs"
  artifacts="$build/artifacts/$name"
  mkdir -p "$log_dir" "$artifacts" "$corpus/$name"
  crashes=0

  # Regression inputs: every crash found and fixed, replayed once each.
  regressions=()
  if [ -d "tests/fuzz/regressions/$name" ]; then
    while IFS= read -r -d '' f; do regressions+=("$f"); done < <(find "tests/fuzz/regressions/$name" -type f -print0 | sort -z)
  fi
  if [ "${#regressions[@]}" -gt 0 ]; then
    if ! "$bin" -rss_limit_mb=2048 -timeout=10 "${regressions[@]}" >"$log_dir/$name.regressions.log" 2>&1; then
      echo "fuzz.sh: $h: a regression input crashes again (log: $log_dir/$name.regressions.log)" >&2
      tail -n 40 "$log_dir/$name.regressions.log" >&2
      crashes=$((crashes + 1))
    fi
  fi

  t0=$(date +%s)
  status=0
  # shellcheck disable=SC2086
  "$bin" "$corpus/$name" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" ${QSAFE_FUZZ_ARGS:-} >"$log_dir/$name.log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - t0 ))
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log_dir/$name.log" | grep -oE '[0-9]+$' | tail -n1 || true)"
  if [ -z "$execs" ]; then
    execs="$(grep -oE '^#[0-9]+' "$log_dir/$name.log" | tail -n1 | tr -d '#' || true)"
  fi
  if [ "$status" -ne 0 ]; then
    crashes=$((crashes + 1))
    echo "fuzz.sh: $h crashed (exit $status); log: $log_dir/$name.log, input: $(ls -t "$artifacts" 2>/dev/null | head -n1)" >&2
    grep -E 'ERROR|SUMMARY|terminate called|what\(\)|runtime error' "$log_dir/$name.log" | head -n 20 >&2 || true
  fi
  [ "$crashes" -gt 0 ] && failed=1
  summary+=("$(printf 'fuzz.sh: %-24s executions %10s  seconds %5s  crashes %d  regressions %d  corpus %s files' \
    "$h" "${execs:-0}" "$elapsed" "$crashes" "${#regressions[@]}" "$(ls "$corpus/$name" | wc -l)")")
done

printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: FAILED (crashes above; inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crashes"
