// SPDX-License-Identifier: BSD-3-Clause
// Core throughput: the SimSiam loss and the projector + predictor heads, forward + backward, at
// the official sizes (batch 256, d 2048, ResNet-50 features 2048, predictor 512). Items are
// images; one item is both views of an image.
//
// SIMSIAM_DEFAULT_MALLOC=1 keeps glibc's default malloc thresholds (see bench_main.hpp).
//
//   build/benchmarks/bench_core --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <cstdlib>
#include <simsiam/simsiam.hpp>

namespace {

constexpr int64_t kBatch = 256;
constexpr int64_t kDim = 2048;

void BM_LossForwardBackward(benchmark::State& state) {
  use_threads(state);
  torch::manual_seed(0);
  auto p1 = torch::randn({kBatch, kDim}, torch::requires_grad());
  auto p2 = torch::randn({kBatch, kDim}, torch::requires_grad());
  const auto z1 = torch::randn({kBatch, kDim});
  const auto z2 = torch::randn({kBatch, kDim});
  simsiam::SymmetricLoss<> criterion;
  for (auto _ : state) {
    auto loss = criterion(p1, p2, z1, z2);
    loss.backward();
    benchmark::DoNotOptimize(p1.grad().data_ptr());
    p1.mutable_grad().reset();
    p2.mutable_grad().reset();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_HeadsForwardBackward(benchmark::State& state) {
  use_threads(state);
  torch::manual_seed(0);
  simsiam::Projector projector(kDim);  // 2048 -> 2048 -> 2048 -> 2048, official ResNet-50 head
  simsiam::Predictor predictor;        // 2048 -> 512 -> 2048
  const auto f1 = torch::randn({kBatch, kDim});
  const auto f2 = torch::randn({kBatch, kDim});
  simsiam::SymmetricLoss<> criterion;
  for (auto _ : state) {
    auto z1 = projector(f1);
    auto z2 = projector(f2);
    auto loss = criterion(predictor(z1), predictor(z2), z1, z2);
    loss.backward();
    for (auto& p : projector->parameters()) p.mutable_grad().reset();
    for (auto& p : predictor->parameters()) p.mutable_grad().reset();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

}  // namespace

BENCHMARK(BM_LossForwardBackward)->Apply(with_1_and_2_threads)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_HeadsForwardBackward)->Apply(with_1_and_2_threads)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return run_benchmarks(argc, argv); }
