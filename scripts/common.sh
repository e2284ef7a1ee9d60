# SPDX-License-Identifier: BSD-3-Clause
# Shared by scripts/quickstart.sh and scripts/test.sh: install missing Debian packages, then
# configure and build SimSiam++ (Release) in build/. Meant to be sourced.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SIMSIAM_BUILD_DIR:-$ROOT/build}"

# Packages every build needs. libopenblas0-openmp matters for speed: Debian's LibTorch calls
# whatever libblas.so.3 provides, and the reference BLAS is ~10x slower on the heads and kNN.
BASE_PACKAGES=(g++ cmake ninja-build libtorch-dev zlib1g-dev libturbojpeg0-dev libcli11-dev gnuplot-nox
  libopenblas0-openmp libgloo-dev)

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

# Configures build/ (Release) with the options in "$@" and builds the targets in $TARGETS.
configure_and_build() {
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$BUILD" -j "$(nproc)" ${TARGETS:+--target $TARGETS}
}
