// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Durable, atomic file writes for programs' own results (what checkpoints and logs use).
#pragma once

#include <string>

#include "simsiam/detail/file.hpp"

namespace simsiam {

/// Writes `bytes` to `path` so that readers see the old contents or the new, never a torn file,
/// even after a power loss: a temporary file next to it, fsync, rename, fsync of the folder.
/// Fails with the path and the reason (a missing folder, a full disk).
inline void write_file_atomically(const std::string& bytes, const std::string& path) {
  detail::write_file_atomically(bytes, path, "simsiam::write_file_atomically");
}

}  // namespace simsiam
