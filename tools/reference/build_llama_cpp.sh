#!/usr/bin/env bash
# Builds llama.cpp's CPU tools (llama-bench, llama-perplexity, llama-quantize) from the sources shipped in
# the llama-cpp-python sdist on PyPI, as the peer of qsafe's speed measurements (docs/benchmarks.md).
# RUN BY HAND ONLY; nothing in qsafe's build or tests needs it. Prints the build's bin/ folder.
#
#   bash tools/reference/build_llama_cpp.sh            # -> ~/.cache/qsafe/peer/llama.cpp-<version>/build/bin
#
# Instruction sets: the CPU's own, read from /proc/cpuinfo, but never AMX. llama.cpp's AMX path for
# Q4_0 / Q4_1 computed wrong results on a Sapphire Rapids Xeon (WikiText-2 perplexity 396 instead of 21.6),
# and a fast wrong kernel is no baseline: check the peer's perplexity (peer_speed.sh) before timing it.
# Environment: LLAMA_CPP_PYTHON_VERSION (default 0.3.36), QSAFE_CACHE_DIR (default ~/.cache/qsafe), JOBS.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${QSAFE_CACHE_DIR:-$HOME/.cache/qsafe}/peer"
src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
build="$cache/llama.cpp-$version/build"
jobs="${JOBS:-$(nproc)}"
mkdir -p "$cache"

if [ ! -f "$src/CMakeLists.txt" ]; then
  python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
  tar xzf "$cache/llama_cpp_python-$version.tar.gz" -C "$cache"
fi

flags="$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=ON \
      -DGGML_SSE42=ON -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)" \
      -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)" \
      -DGGML_AVX512="$(has avx512bw)" -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)" \
      -DGGML_AVX512_BF16="$(has avx512_bf16)" \
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >&2
cmake --build "$build" -j "$jobs" --target llama-bench llama-perplexity llama-quantize >&2
echo "$build/bin"
