// SPDX-License-Identifier: BSD-3-Clause
// libFuzzer target for the readers of untrusted files: JPEG, PNG, IDX (raw/gzip), CIFAR-10.
// Build and run with scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>

#include "support/exercise_readers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  simsiam::testing::exercise_readers(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
