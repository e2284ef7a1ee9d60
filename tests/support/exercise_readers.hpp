// SPDX-License-Identifier: BSD-3-Clause
// Feeds one input to every reader that parses untrusted bytes (JPEG, PNG, any image, IDX raw or
// gzip, CIFAR-10). Each must either decode or fail with a c10::Error; anything else (a crash, a
// sanitizer report, another exception) is a bug. Shared by the libFuzzer target (fuzz/) and the
// test that replays the kept inputs (tests/data/test_fuzz_regressions.cpp).
#pragma once

#include <string>

#include "simsiam/data/cifar.hpp"
#include "simsiam/data/idx.hpp"
#include "simsiam/data/image.hpp"

namespace simsiam::testing {

/// Returns how many readers accepted the input.
inline int exercise_readers(const std::string& bytes) {
  int accepted = 0;
  const auto attempt = [&](auto&& read) {
    try {
      read();
      ++accepted;
    } catch (const c10::Error&) {
    }
  };
  attempt([&] { simsiam::decode_image(bytes, "input"); });
  attempt([&] { simsiam::decode_png(bytes, "input"); });
  attempt([&] { simsiam::decode_jpeg(bytes, "input", 1); });
  attempt([&] { simsiam::decode_jpeg(bytes, "input", 4); });
  attempt([&] { simsiam::jpeg_header(bytes, "input"); });
  attempt([&] { simsiam::decode_idx(bytes, "input"); });
  attempt([&] { simsiam::decode_cifar10(bytes, "input"); });
  return accepted;
}

}  // namespace simsiam::testing
