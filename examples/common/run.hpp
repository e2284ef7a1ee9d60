// SPDX-License-Identifier: BSD-3-Clause
// What every example program shares: its run folder, exact numbers in its recorded settings, and
// one line on stderr for a failure.
#pragma once

#include <c10/util/Exception.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <string>

namespace examples {

/// A number as text that tells any two doubles apart.
inline std::string exact(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

/// A new folder OUT/NAME-YYYYmmdd-HHMMSS (with a suffix if it exists).
inline std::string new_run_dir(const std::string& out, const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  std::string dir = out + "/" + name + "-" + stamp;
  for (int i = 2; std::filesystem::exists(dir); ++i) {
    dir = out + "/" + name + "-" + stamp + "-" + std::to_string(i);
  }
  return dir;
}

/// The run folder of rank 0: a new OUT/NAME-..., or the folder of the checkpoint to resume; the
/// other ranks write nothing ("").
inline std::string run_folder(const std::string& out, const std::string& name,
                              const std::string& resume, bool main_rank) {
  if (!main_rank) return "";
  if (resume.empty()) return new_run_dir(out, name);
  return std::filesystem::absolute(resume).parent_path().string();
}

/// Minutes since `start`.
inline double minutes_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
}

/// Runs `body`; a failure becomes one line on stderr and exit status 1.
template <class Body>
int report_failures(const char* program, Body&& body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
  }
  return 1;
}

}  // namespace examples
