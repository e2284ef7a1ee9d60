// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal: splitmix64 seed mixing, one independent stream per index.
#pragma once

#include <cstdint>

namespace simsiam::detail {

/// splitmix64: a well-mixed 64-bit seed for stream `index` of a family whose seed is `base`.
inline uint64_t mix_seed(uint64_t base, uint64_t index) {
  uint64_t z = base + 0x9E3779B97F4A7C15ULL * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace simsiam::detail
