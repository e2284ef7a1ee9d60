#!/usr/bin/env bash
# The quick start: SimSiam pretraining on the real Fashion-MNIST (Debian's
# dataset-fashion-mnist), on the CPU. Extra arguments go to the program (try --help).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_packages "${BASE_PACKAGES[@]}" dataset-fashion-mnist
TARGETS=fashion_mnist configure_and_build
exec "$BUILD/examples/fashion_mnist" "$@"
