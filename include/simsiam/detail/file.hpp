/// @file
/// @brief Internal: writing a file so that readers see the old or the new contents, never a torn
/// one (a temporary file, then a rename).
#pragma once

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace simsiam::detail {

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename, so
/// an existing file is never left half-written.
inline void write_file_atomically(const std::string& bytes, const std::string& path,
                                  const char* where) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out, where, ": cannot create '", temporary, "': ", std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    TORCH_CHECK(out, where, ": cannot write '", temporary, "': ", std::strerror(errno));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  TORCH_CHECK(!error, where, ": cannot rename '", temporary, "' to '", path,
              "': ", error.message());
}

}  // namespace simsiam::detail
