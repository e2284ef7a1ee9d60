#!/usr/bin/env bash
# All tests: builds the library's tests, examples and benchmarks (Release), checks formatting,
# then runs the Catch2 suite and the find_package/add_subdirectory consumer builds with ctest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_packages "${BASE_PACKAGES[@]}" catch2 nlohmann-json3-dev libbenchmark-dev clang-format \
  dataset-fashion-mnist
configure_and_build -DSIMSIAM_BUILD_TESTS=ON -DSIMSIAM_BUILD_EXAMPLES=ON -DSIMSIAM_BUILD_BENCHMARKS=ON
cd "$BUILD"
ctest --output-on-failure -j "$(nproc)"
