# SPDX-License-Identifier: BSD-3-Clause
# Shared by scripts/quickstart.sh and scripts/test.sh: install missing Debian packages, then
# configure and build SimSiam++ (Release) in build/. Meant to be sourced.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SIMSIAM_BUILD_DIR:-$ROOT/build}"

# Packages every build needs. libopenblas0-openmp matters for speed: Debian's LibTorch calls
# whatever libblas.so.3 provides, and the reference BLAS is ~10x slower on the heads and kNN.
BASE_PACKAGES=(g++ cmake ninja-build zlib1g-dev libturbojpeg0-dev libcli11-dev nlohmann-json3-dev gnuplot-nox
  libopenblas0-openmp libgloo-dev)

# Your own LibTorch instead of Debian's (docs/install.md): SIMSIAM_LIBTORCH=/path/to/libtorch, an
# unzipped pytorch.org archive or pip torch's torch.utils.cmake_prefix_path, becomes Torch_DIR
# and CMAKE_PREFIX_PATH; else Torch_DIR and CMAKE_PREFIX_PATH from the environment are passed on.
# Best with a build folder of its own (SIMSIAM_BUILD_DIR): CMake's cache remembers a LibTorch.
TORCH_CMAKE_ARGS=()
_prefixes="${CMAKE_PREFIX_PATH:-}"
if [[ -n "${SIMSIAM_LIBTORCH:-}" ]]; then
  # TorchConfig.cmake's folder: share/cmake/Torch in an archive, Torch under pip's prefix path.
  _torch_dir=""
  for _dir in "$SIMSIAM_LIBTORCH"/{share/cmake/Torch,Torch,}; do
    if [[ -z "$_torch_dir" && -f "$_dir/TorchConfig.cmake" ]]; then _torch_dir="${_dir%/}"; fi
  done
  if [[ -z "$_torch_dir" ]]; then
    echo "SIMSIAM_LIBTORCH=$SIMSIAM_LIBTORCH: expected TorchConfig.cmake in share/cmake/Torch/," \
      "Torch/ or the folder itself (a LibTorch archive's root, or" \
      "torch.utils.cmake_prefix_path)" >&2
    exit 1
  fi
  TORCH_CMAKE_ARGS+=(-DTorch_DIR="$_torch_dir")
  _prefixes="$SIMSIAM_LIBTORCH${_prefixes:+:$_prefixes}"
else
  BASE_PACKAGES+=(libtorch-dev)
  if [[ -n "${Torch_DIR:-}" ]]; then TORCH_CMAKE_ARGS+=(-DTorch_DIR="$Torch_DIR"); fi
fi
# The environment's list is ':'-separated, CMake's ';'-separated.
if [[ -n "$_prefixes" ]]; then TORCH_CMAKE_ARGS+=(-DCMAKE_PREFIX_PATH="${_prefixes//:/;}"); fi
unset _prefixes _torch_dir _dir

# What scripts/test_leg.sh needs besides: Catch2, JSON for the fixtures, Google Benchmark, the
# real Fashion-MNIST, PyTorch for the weight interoperability test (never used by the library).
TEST_PACKAGES=("${BASE_PACKAGES[@]}" catch2 libbenchmark-dev
  dataset-fashion-mnist python3-torch python3-torchvision)

# Installs the packages in "$@" that are not installed yet (as root; apt-get update first).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# "Debian 12, LibTorch 1.13.1, g++ 12.2.0": what this platform builds with.
leg_description() {
  local os torch gxx
  os="$(. /etc/os-release && echo "$NAME $VERSION_ID")"
  torch="$(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null | sed 's/[+~-].*//')"
  gxx="$(g++ -dumpfullversion 2>/dev/null)"
  echo "$os, LibTorch ${torch:-?}, g++ ${gxx:-?}"
}

# Configures build/ (Release) with the options in "$@" (and the LibTorch above) and builds the
# targets in $TARGETS.
configure_and_build() {
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    ${TORCH_CMAKE_ARGS[@]+"${TORCH_CMAKE_ARGS[@]}"} "$@"
  cmake --build "$BUILD" -j "$(nproc)" ${TARGETS:+--target $TARGETS}
}
