// SPDX-License-Identifier: BSD-3-Clause
// Shared main of the benchmark programs. glibc's default malloc returns freed activations to the
// OS every step; the programs keep them (simsiam::keep_freed_memory) unless
// SIMSIAM_DEFAULT_MALLOC=1 is set, to show the difference. The choice is printed in the context.
#pragma once

#include <benchmark/benchmark.h>

#include <torch/torch.h>
#include <cstdlib>
#include <simsiam/train/allocator.hpp>
#include <string>

/// Runs a benchmark with 1 and 2 LibTorch threads (argument "threads"), timed in real time.
/// Use with `->Apply(with_1_and_2_threads)`; the benchmark body calls `use_threads(state)`.
inline void with_1_and_2_threads(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
}

/// Sets LibTorch's intra-op threads to the benchmark's "threads" argument.
inline void use_threads(const benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
}

inline int run_benchmarks(int argc, char** argv) {
  const char* keep_default = std::getenv("SIMSIAM_DEFAULT_MALLOC");
  const bool tuned =
      !(keep_default && std::string(keep_default) == "1") && simsiam::keep_freed_memory();
  benchmark::AddCustomContext("malloc", tuned ? "keep_freed_memory" : "glibc default");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
