/// @file
/// @brief The library version.
#pragma once

#define SIMSIAM_VERSION_MAJOR 0
#define SIMSIAM_VERSION_MINOR 1
#define SIMSIAM_VERSION_PATCH 0

namespace simsiam {
/// "major.minor.patch" of these headers.
inline constexpr const char* kVersion = "0.1.0";
}  // namespace simsiam
