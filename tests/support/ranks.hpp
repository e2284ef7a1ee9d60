// SPDX-License-Identifier: BSD-3-Clause
// Several ranks on loopback in one test: forked processes, each running the same body, and a
// port per test process so that tests running in parallel do not meet.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <c10/util/Exception.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

namespace simsiam::testing {

/// A port derived from the process id, so parallel test processes do not collide; below
/// Linux's ephemeral range (32768+), where outgoing connections take their ports.
inline int64_t test_port(int64_t offset) { return 20000 + (getpid() * 7 + offset) % 12000; }

/// Runs `body(rank)` in `world` forked processes; returns their exit codes (0: body returned
/// true; 1: false or an exception, printed to stderr with the rank).
inline std::vector<int> run_ranks(int world, const std::function<bool(int)>& body) {
  std::vector<pid_t> children;
  std::fflush(nullptr);  // or the children would print the parent's buffered output again
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      bool ok = false;
      try {
        ok = body(rank);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        ok = false;
      }
      std::fflush(nullptr);
      _exit(ok ? 0 : 1);
    }
    children.push_back(pid);
  }
  std::vector<int> codes;
  for (const pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128);
  }
  return codes;
}

/// What `run_ranks_expecting_error` saw.
struct RankFailure {
  std::vector<int> codes;  ///< 0 for the ranks whose body threw a c10::Error
  double seconds = 0.0;    ///< for all ranks to end
  std::string message;     ///< the error, without backtrace (the last rank that wrote one)
};

/// Runs `body(rank)` in `world` forked processes, expecting it to throw a c10::Error; a rank
/// exits 0 when it did, 1 when the body returned, or with whatever code the body exits with.
inline RankFailure run_ranks_expecting_error(int world, const std::function<void(int)>& body) {
  const auto file =
      std::filesystem::temp_directory_path() / ("simsiam_rank_error_" + std::to_string(getpid()));
  std::filesystem::remove(file);
  const auto start = std::chrono::steady_clock::now();
  RankFailure failure;
  failure.codes = run_ranks(world, [&](int rank) {
    try {
      body(rank);
    } catch (const c10::Error& e) {
      std::ofstream(file) << e.what_without_backtrace();
      return true;
    }
    return false;
  });
  failure.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ifstream in(file);
  failure.message.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::filesystem::remove(file);
  return failure;
}

}  // namespace simsiam::testing
