#!/usr/bin/env bash
# Installs the Debian 12 packages qsafe needs to build, test and run its demo (skips what is present).
set -euo pipefail

packages=(
  build-essential cmake git python3 python3-pip
  libeigen3-dev libxsimd-dev xtl-dev      # Debian's xsimd CMake target links `xtl`
  doctest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  pkg-config libopenblas-openmp-dev       # fp32 products of calibration (optional to the library)
  clang-14 libclang-rt-14-dev libomp-14-dev  # the libFuzzer harnesses (scripts/fuzz.sh; tests only)
  libopenmpi-dev openmpi-bin              # qsafe eval --mpi (optional: without it the tool is built without --mpi)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_deps: all Debian packages present" >&2
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
echo "install_deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
