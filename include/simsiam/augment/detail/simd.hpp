// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Four-lane float vectors for the CPU pixel loops (GCC/Clang vector extensions).
///
/// GCC does not auto-vectorise loops whose selects need ordered float comparisons (with the
/// default -ftrapping-math it keeps them as branches), so the hue loop is written once as a
/// template over the lane type: `float` for the scalar tail (and for compilers without vector
/// extensions) and `Floats` for four pixels at a time. Every lane computes the same IEEE
/// operations as the scalar code, so both give identical bits. 16-byte vectors are SSE2/NEON
/// registers: no -march flag is needed and the ABI is the same everywhere.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) || defined(__clang__)
#define SIMSIAM_HAVE_VECTOR_EXTENSIONS 1
#else
#define SIMSIAM_HAVE_VECTOR_EXTENSIONS 0
#endif

namespace simsiam::augment::detail::simd {

#if SIMSIAM_HAVE_VECTOR_EXTENSIONS
using Floats = float __attribute__((vector_size(16)));
using Ints = int32_t __attribute__((vector_size(16)));
constexpr int64_t kLanes = 4;

inline Floats load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Floats v) { std::memcpy(p, &v, sizeof v); }
inline Ints to_int(Floats x) { return __builtin_convertvector(x, Ints); }
inline Floats to_float(Ints x) { return __builtin_convertvector(x, Floats); }
#endif

inline int32_t to_int(float x) { return static_cast<int32_t>(x); }
inline float to_float(int32_t x) { return static_cast<float>(x); }

/// max/min as `a < b ? b : a` on scalars or lanes (inputs here are never NaN).
template <class F>
F max(F a, F b) {
  return a < b ? b : a;
}
template <class F>
F min(F a, F b) {
  return b < a ? b : a;
}

}  // namespace simsiam::augment::detail::simd
