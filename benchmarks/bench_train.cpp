// SPDX-License-Identifier: BSD-3-Clause
// Full SimSiam training step on the CPU: two views already in memory (random, fixed seed, made
// once outside the timed loop), model->forward(x1, x2) (two separate passes, as the official
// code), SymmetricLoss, zero_grad, backward, SGD step (momentum 0.9, wd 5e-4, lr 0.05, encoder and
// predictor in two parameter groups as the official --fix-pred-lr). Items are images; one item is
// both views of an image.
//   (a) the quick start's ConvNet (widths 8-16-32-64), d 512, predictor 512-128-512, 2-layer
//       projector, [256, 1, 28, 28]
//   (b) ResNet-18 with the CIFAR stem, d 2048, predictor 2048-512-2048, 2-layer projector
//       (the paper's CIFAR variant), [64, 3, 32, 32]
// The "params" counter (and a line on stderr, once per case) gives the model's parameter count,
// to check against benchmarks/bench_train_reference.py, which runs the same networks in PyTorch.
//
// SIMSIAM_DEFAULT_MALLOC=1 keeps glibc's default malloc thresholds (see bench_main.hpp).
//
//   build/benchmarks/bench_train --benchmark_min_time=3
#include <benchmark/benchmark.h>

#include "bench_main.hpp"
#include "bench_models.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <simsiam/simsiam.hpp>

namespace {

/// lr 0.05 at batch 256, momentum 0.9, wd 5e-4, encoder and predictor groups.
const auto kRecipe = simsiam::SgdRecipe().base_lr(0.05).batch_size(256).weight_decay(5e-4);

/// Sets the "params" counter and prints the parameter counts to stderr the first time a case runs.
void report_parameters(benchmark::State& state, const std::string& name,
                       const torch::nn::Module& model) {
  int64_t total = 0, trainable = 0;
  for (const auto& p : model.parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  state.counters["params"] = static_cast<double>(total);
  static std::set<std::string> printed;
  if (printed.insert(name).second) {
    std::fprintf(stderr, "%s: %lld parameters (%lld trainable)\n", name.c_str(),
                 static_cast<long long>(total), static_cast<long long>(trainable));
  }
}

/// Times the official training step of `model` on two fixed views of shape `input_shape`.
template <class Backbone>
void run_training_steps(benchmark::State& state, const std::string& name,
                        simsiam::SimSiam<Backbone> model, std::vector<int64_t> input_shape) {
  report_parameters(state, name, *model);
  auto sgd = simsiam::make_sgd(model, kRecipe);
  simsiam::SymmetricLoss<> criterion;
  const auto x1 = torch::randn(input_shape);
  const auto x2 = torch::randn(input_shape);
  const auto step = [&] { return training_step(model, sgd, criterion, x1, x2, [] {}); };
  // Untimed warm-up: the first step allocates the gradients and momentum buffers and starts the
  // thread pool, and takes up to 10x a later step (this Google Benchmark has no MinWarmUpTime).
  step();
  for (auto _ : state) {
    auto loss = step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * input_shape[0]);
}

void BM_TrainStepConvNet28(benchmark::State& state) {
  use_threads(state);
  run_training_steps(state, "ConvNet 8-16-32-64, d 512, pred 128", quick_start_model(),
                     {256, 1, 28, 28});
}

/// Hands out the same two views `steps` times per epoch: the trainer's loop without data cost.
struct RepeatedBatch {
  struct Batch {
    torch::Tensor view1, view2;
  };
  Batch batch;
  int64_t steps = 0, given = 0;
  void set_epoch(int64_t /*epoch*/) { given = 0; }
  int64_t batches_per_epoch() const { return steps; }
  std::optional<Batch> next() {
    if (given == steps) return std::nullopt;
    ++given;
    return batch;
  }
};

/// The quick-start step through `simsiam::Trainer` (one epoch of 256 steps per iteration) with its
/// built-in hooks: the collapse monitor every step, the progress line every 50 steps and, with
/// state.range(1) = 1, a run folder: metrics log rows every 50 steps, then a checkpoint and the
/// gnuplot plot at the end. Against BM_TrainStepConvNet28, the trainer's overhead.
void BM_TrainerConvNet28(benchmark::State& state) {
  use_threads(state);
  const bool files = state.range(1) != 0;
  auto model = quick_start_model();
  report_parameters(state, "ConvNet 8-16-32-64, d 512, pred 128", *model);
  constexpr int64_t kSteps = 256;
  RepeatedBatch loader{{torch::randn({256, 1, 28, 28}), torch::randn({256, 1, 28, 28})}, kSteps};
  auto sgd = simsiam::make_sgd(model, kRecipe);
  const auto run_dir = std::filesystem::temp_directory_path() / "simsiam_bench_trainer";
  static std::FILE* null_stream = std::fopen("/dev/null", "w");
  for (auto _ : state) {
    auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 1);
    simsiam::Trainer trainer(
        model, loader, sgd, &schedule,
        simsiam::TrainerOptions()
            .epochs(1)
            .run_dir(files ? run_dir.string() : "")
            .progress(simsiam::ProgressBarOptions().plain(true).stream(null_stream)));
    const auto result = trainer.fit();
    benchmark::DoNotOptimize(result.steps);
  }
  std::filesystem::remove_all(run_dir);
  state.SetItemsProcessed(state.iterations() * kSteps * 256);
}

/// The built-in hooks' work per step alone (collapse monitor, progress line and metrics row every
/// 50 steps, as the trainer runs them), on the quick start's z of batch 256 x 512: a direct
/// measure of the overhead that BM_TrainerConvNet28 shows within the machine's noise.
void BM_DefaultHooksPerStep(benchmark::State& state) {
  use_threads(state);
  const auto run_dir = std::filesystem::temp_directory_path() / "simsiam_bench_hooks";
  std::filesystem::create_directories(run_dir);
  static std::FILE* null_stream = std::fopen("/dev/null", "w");
  std::vector<std::shared_ptr<simsiam::Hook>> hooks{
      std::make_shared<simsiam::CollapseMonitor>(), std::make_shared<simsiam::MetricsLog>(),
      std::make_shared<simsiam::ProgressBar>(
          simsiam::ProgressBarOptions().plain(true).stream(null_stream))};
  simsiam::TrainState train_state;
  train_state.run_dir = run_dir.string();
  train_state.epochs = 8;
  train_state.steps_per_epoch = 468;
  train_state.z1 = torch::randn({256, 512});
  train_state.z2 = torch::randn({256, 512});
  train_state.lrs = {0.15, 0.15};
  for (auto& hook : hooks) hook->on_train_begin(train_state);
  for (auto& hook : hooks) hook->on_epoch_begin(train_state);
  for (auto _ : state) {
    ++train_state.global_step;
    train_state.step_in_epoch = train_state.global_step % 468;
    train_state.step_metrics.clear();
    for (auto& hook : hooks) hook->on_step_end(train_state);
  }
  std::filesystem::remove_all(run_dir);
  state.SetItemsProcessed(state.iterations() * 256);
}

void BM_TrainStepResNet18Cifar(benchmark::State& state) {
  use_threads(state);
  torch::manual_seed(0);
  simsiam::ResNet backbone(simsiam::ResNetOptions(18).stem(simsiam::ResNetStem::kCifar));
  simsiam::SimSiam<simsiam::ResNet> model(
      backbone, simsiam::SimSiamOptions().dim(2048).pred_dim(512).projector_layers(2));
  run_training_steps(state, "ResNet-18 CIFAR stem, d 2048, pred 512", std::move(model),
                     {64, 3, 32, 32});
}

}  // namespace

BENCHMARK(BM_TrainStepConvNet28)->Apply(with_1_and_2_threads)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TrainerConvNet28)
    ->ArgNames({"threads", "files"})
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DefaultHooksPerStep)->Apply(with_1_and_2_threads)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainStepResNet18Cifar)->Apply(with_1_and_2_threads)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return run_benchmarks(argc, argv); }
