// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal: whole-file reads, and durable atomic writes: readers see the old or the new
/// contents, never a torn file, even after a power loss (temporary file, fsync, rename, fsync of
/// the folder).
#pragma once

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#if defined(_WIN32)
#include <io.h>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

namespace simsiam::detail {

/// The bytes of the file at `path`; fails naming `where` and the file.
inline std::string read_file_bytes(const std::string& path, const char* where) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), where, ": cannot open '", path,
              "': no such file");
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, where, ": cannot open '", path, "': ", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TORCH_CHECK(!in.bad(), where, ": cannot read '", path, "': ", std::strerror(errno));
  return bytes;
}

#if !defined(_WIN32)
/// Flushes the folder entry of `path` (its rename) to the disk; a no-op where folders cannot be
/// opened.
inline void sync_parent_folder(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
#endif

/// Writes `bytes` to `path` durably and atomically: a temporary file `path.tmp` in the same
/// folder, written in full and fsynced, then renamed over `path`, then the folder fsynced. An
/// existing file is never left half-written; on failure (a full disk) the temporary file is
/// removed, the old file stays as it was, and the error names the file and the reason.
inline void write_file_atomically(const std::string& bytes, const std::string& path,
                                  const char* where) {
  const std::string temporary = path + ".tmp";
  const auto fail = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    TORCH_CHECK(false, where, ": cannot ", what, " '", temporary, "': ", reason);
  };
#if defined(_WIN32)
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail("write");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) fail("write");
  }
#else
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("write");
  for (size_t written = 0; written < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail("write");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    fail("write");
  }
  if (::close(fd) != 0) fail("close");
#endif
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    TORCH_CHECK(false, where, ": cannot rename '", temporary, "' to '", path,
                "': ", error.message());
  }
#if !defined(_WIN32)
  sync_parent_folder(path);
#endif
}

/// Copies the file `from` to `to` with `write_file_atomically`'s guarantees.
inline void copy_file_atomically(const std::string& from, const std::string& to,
                                 const char* where) {
  write_file_atomically(read_file_bytes(from, where), to, where);
}

}  // namespace simsiam::detail
