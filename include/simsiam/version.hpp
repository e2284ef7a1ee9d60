// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The library version, as macros for the preprocessor and as text. CMake reads its
/// project version from this file, so the package version and the headers always agree.
#pragma once

#define SIMSIAM_VERSION_MAJOR 0
#define SIMSIAM_VERSION_MINOR 2
#define SIMSIAM_VERSION_PATCH 0
/// One integer for comparisons, major x 10000 + minor x 100 + patch (10203 for 1.2.3):
/// `#if SIMSIAM_VERSION >= 200`.
#define SIMSIAM_VERSION \
  (SIMSIAM_VERSION_MAJOR * 10000 + SIMSIAM_VERSION_MINOR * 100 + SIMSIAM_VERSION_PATCH)

namespace simsiam {
/// "major.minor.patch" of these headers.
inline constexpr const char* kVersion = "0.2.0";
static_assert(SIMSIAM_VERSION_MAJOR * 10000 + SIMSIAM_VERSION_MINOR * 100 + SIMSIAM_VERSION_PATCH ==
                  SIMSIAM_VERSION,
              "SIMSIAM_VERSION out of step with its parts");
}  // namespace simsiam
