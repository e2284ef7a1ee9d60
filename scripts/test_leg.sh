#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# One platform's part of scripts/test.sh, run on this machine (Debian 12) or inside the Debian 13
# chroot: installs what it needs, builds the tests, examples, benchmarks and tools (Release) in
# $SIMSIAM_BUILD_DIR (default build/), runs the Catch2 suite and the other ctest tests; then,
# unless SIMSIAM_SKIP_SANITIZE=1, builds the suite again with AddressSanitizer +
# UndefinedBehaviorSanitizer (-O1, in build-sanitize/) and runs it there.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# clang-format: the formatting check, only where its version is the one .clang-format was
# written for (SIMSIAM_FORMAT_CHECK=0 leaves it out).
packages=("${TEST_PACKAGES[@]}")
[[ "${SIMSIAM_FORMAT_CHECK:-1}" == 1 ]] && packages+=(clang-format)
ensure_packages "${packages[@]}"
echo "== $(leg_description): building in $BUILD"
configure_and_build -DSIMSIAM_BUILD_TESTS=ON -DSIMSIAM_BUILD_EXAMPLES=ON \
  -DSIMSIAM_BUILD_BENCHMARKS=ON -DSIMSIAM_FORMAT_CHECK="${SIMSIAM_FORMAT_CHECK:-1}"
(cd "$BUILD" && ctest --output-on-failure -j "$(nproc)")

if [[ "${SIMSIAM_SKIP_SANITIZE:-0}" != 1 ]]; then
  SANITIZE_BUILD="${SIMSIAM_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
  cmake -S "$ROOT" -B "$SANITIZE_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
    -DSIMSIAM_SANITIZE=ON -DSIMSIAM_BUILD_EXAMPLES=OFF -DSIMSIAM_BUILD_BENCHMARKS=OFF \
    -DSIMSIAM_INSTALL=OFF
  cmake --build "$SANITIZE_BUILD" -j "$(nproc)"
  (cd "$SANITIZE_BUILD" && ctest --output-on-failure -j "$(nproc)")
fi
