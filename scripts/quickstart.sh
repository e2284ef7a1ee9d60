#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The quick start: SimSiam pretraining on the real Fashion-MNIST (Debian's
# dataset-fashion-mnist), on the CPU. Extra arguments go to the program (try --help).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_packages "${BASE_PACKAGES[@]}" dataset-fashion-mnist
# Only the example: tests and benchmarks (and their packages) are scripts/test.sh's business.
TARGETS=fashion_mnist configure_and_build -DSIMSIAM_BUILD_EXAMPLES=ON -DSIMSIAM_BUILD_TESTS=OFF \
  -DSIMSIAM_BUILD_BENCHMARKS=OFF
exec "$BUILD/examples/fashion_mnist" "$@"
