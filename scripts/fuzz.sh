#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fuzzes the JPEG/PNG/IDX/CIFAR readers with libFuzzer for a bounded time (default 120 s):
#   bash scripts/fuzz.sh [seconds]
# Builds build-fuzz/ with clang (-fsanitize=fuzzer,address,undefined), seeds the corpus with the
# test fixtures, and runs. A crashing input is written to build-fuzz/ as crash-*; after the fix,
# copy it to tests/fuzz/regressions/ so that the test suite replays it.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SECONDS_TO_RUN="${1:-120}"
ensure_packages "${BASE_PACKAGES[@]}" clang libclang-rt-14-dev
FUZZ_BUILD="$ROOT/build-fuzz"
cmake -S "$ROOT" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DSIMSIAM_BUILD_FUZZERS=ON -DSIMSIAM_BUILD_TESTS=OFF \
  -DSIMSIAM_BUILD_EXAMPLES=OFF -DSIMSIAM_BUILD_BENCHMARKS=OFF -DSIMSIAM_INSTALL=OFF
cmake --build "$FUZZ_BUILD" --target fuzz_readers
CORPUS="$FUZZ_BUILD/corpus"
mkdir -p "$CORPUS"
cp -n "$ROOT"/tests/fixtures/images/* "$ROOT"/tests/fuzz/regressions/* "$CORPUS"/ 2>/dev/null || true
cd "$FUZZ_BUILD"
ASAN_OPTIONS=detect_leaks=0 ./fuzz/fuzz_readers "$CORPUS" -max_total_time="$SECONDS_TO_RUN" \
  -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
