#!/usr/bin/env bash
# All tests: builds the library's tests, examples and benchmarks (Release), checks formatting,
# runs the Catch2 suite and the find_package/add_subdirectory consumer builds with ctest; then
# builds the suite again with AddressSanitizer + UndefinedBehaviorSanitizer (-O1, in
# build-sanitize/) and runs it there. SIMSIAM_SKIP_SANITIZE=1 skips the second pass.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# python3-torch/-torchvision: the PyTorch side of the weight interoperability test.
ensure_packages "${BASE_PACKAGES[@]}" catch2 nlohmann-json3-dev libbenchmark-dev clang-format \
  dataset-fashion-mnist python3-torch python3-torchvision
configure_and_build -DSIMSIAM_BUILD_TESTS=ON -DSIMSIAM_BUILD_EXAMPLES=ON -DSIMSIAM_BUILD_BENCHMARKS=ON
(cd "$BUILD" && ctest --output-on-failure -j "$(nproc)")

if [[ "${SIMSIAM_SKIP_SANITIZE:-0}" != 1 ]]; then
  SANITIZE_BUILD="${SIMSIAM_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
  cmake -S "$ROOT" -B "$SANITIZE_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
    -DSIMSIAM_SANITIZE=ON -DSIMSIAM_BUILD_EXAMPLES=OFF -DSIMSIAM_BUILD_BENCHMARKS=OFF \
    -DSIMSIAM_INSTALL=OFF
  cmake --build "$SANITIZE_BUILD" -j "$(nproc)"
  (cd "$SANITIZE_BUILD" && ctest --output-on-failure -j "$(nproc)")
fi
