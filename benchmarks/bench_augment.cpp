// SPDX-License-Identifier: BSD-3-Clause
// Augmentation throughput: two SimSiam views per image, batched, on the CPU.
//   (a) CIFAR: uint8 [512, 3, 32, 32] through simsiam_cifar(32)
//   (b) ImageNet: 64 decoded images of ~400x350 (sizes vary) through simsiam_imagenet(224)
// Items are images (each producing two views). cpu_chunk -1 is TwoViewsOptions::kAutoChunk (the
// default), 0 the whole batch at once. Compare with benchmarks/bench_augment_reference.py.
//
//   build/benchmarks/bench_augment --benchmark_repetitions=3
//   --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <simsiam/augment/presets.hpp>

namespace {

namespace A = simsiam::augment;

void BM_TwoViewsCifar32(benchmark::State& state) {
  use_threads(state);
  auto gen = at::detail::createCPUGenerator(0);
  const auto images = torch::randint(0, 256, {512, 3, 32, 32}, gen, torch::kUInt8);
  A::TwoViews<decltype(A::simsiam_cifar())> views(A::simsiam_cifar(32),
                                                  A::TwoViewsOptions(0).cpu_chunk(state.range(1)));
  for (auto _ : state) {
    auto [v1, v2] = views(images, gen);
    benchmark::DoNotOptimize(v1.data_ptr());
    benchmark::DoNotOptimize(v2.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * images.size(0));
}

void BM_TwoViewsImageNet224(benchmark::State& state) {
  use_threads(state);
  auto gen = at::detail::createCPUGenerator(0);
  std::vector<torch::Tensor> images;
  for (int i = 0; i < 64; ++i) {
    const int64_t h = 330 + (i * 7) % 41, w = 380 + (i * 11) % 41;  // ~350 x 400, all different
    images.push_back(torch::randint(0, 256, {3, h, w}, gen, torch::kUInt8));
  }
  A::TwoViews<decltype(A::simsiam_imagenet())> views(
      A::simsiam_imagenet(224), A::TwoViewsOptions(0).cpu_chunk(state.range(1)));
  for (auto _ : state) {
    auto [v1, v2] = views(images, gen);
    benchmark::DoNotOptimize(v1.data_ptr());
    benchmark::DoNotOptimize(v2.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(images.size()));
}

}  // namespace

void threads_and_chunks(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "cpu_chunk"})->ArgsProduct({{1, 2}, {-1, 0}})->UseRealTime();
}
BENCHMARK(BM_TwoViewsCifar32)->Apply(threads_and_chunks)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TwoViewsImageNet224)->Apply(threads_and_chunks)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return run_benchmarks(argc, argv); }
