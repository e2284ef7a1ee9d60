// SPDX-License-Identifier: BSD-3-Clause
// Data parallelism over Gloo on loopback. The program forks a second rank at start (its output
// goes to /dev/null); both run every benchmark with a fixed iteration count, so their
// collectives pair up, and meet at a barrier before each timed loop (so neither rank's set-up
// is timed as the other's waiting) and after it.
//   BM_AllReduce/KiB:n         one all-reduce of n KiB of float32 (0: one float, the latency
//                              SyncBatchNorm pays twice per BN layer and view)
//   BM_ResNet50Gradients/bucket_KiB:b
//                              the averaging of SimSiam ResNet-50's gradients (backbone, 3-layer
//                              projector 2048, predictor 512: 38.2M floats, 153 MB) through
//                              DataParallel in buckets of b KiB (DDP's default 25 MiB = 25600;
//                              1 KiB: about one all-reduce per tensor); bytes/s is the gradient
//                              bytes averaged per second
//   BM_QuickStartStep/processes:p/batch:b/overlap:o/syncbn:s
//                              the quick start's training step (ConvNet 8-16-32-64, d 512) with
//                              1 LibTorch thread per process, batch b per process, DataParallel
//                              when p = 2 (o: all-reduce during backward; s: SyncBN, else
//                              per-process BN); items are images over all processes. p = 1 runs
//                              on rank 0 alone while rank 1 waits.
//   BM_ResNet18CifarStep/overlap:o
//                              ResNet-18 (CIFAR stem, d 2048, pred 512; 11.2M floats of
//                              gradient) on 2 processes, batch 32 each, per-process BN: where the
//                              all-reduce during backward (o = 1) can hide communication
//   BM_QuickStartStepTwoThreads/batch:b
//                              one process with 2 threads: the other use of the same two cores
//
//   build/benchmarks/bench_distributed            (SIMSIAM_BENCH_PORT picks the port, 29731)
#include <benchmark/benchmark.h>

#include "bench_main.hpp"
#include "bench_models.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include <simsiam/backbones/resnet.hpp>
#include <simsiam/distributed/data_parallel.hpp>
#include <simsiam/distributed/process_group.hpp>
#include <simsiam/loss/symmetric_loss.hpp>
#include <simsiam/optim/recipe.hpp>

namespace {

namespace D = simsiam::distributed;

std::unique_ptr<D::ProcessGroup> group;  // both ranks, joined in main

/// Waits for the other rank where it is made and where it ends: around each timed loop.
struct Meet {
  Meet() { group->barrier(); }
  ~Meet() { group->barrier(); }
  Meet(const Meet&) = delete;
  Meet& operator=(const Meet&) = delete;
};

void BM_AllReduce(benchmark::State& state) {
  torch::set_num_threads(1);
  const int64_t floats = std::max<int64_t>(1, state.range(0) * 1024 / 4);
  auto buffer = torch::ones({floats});
  for (int i = 0; i < 3; ++i) group->all_reduce_sum_async(buffer).wait();  // warm-up
  Meet meet;
  for (auto _ : state) {
    group->all_reduce_sum_async(buffer).wait();
  }
  state.SetBytesProcessed(state.iterations() * floats * 4);
}

void BM_ResNet50Gradients(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  simsiam::SimSiam<simsiam::ResNet> model(simsiam::resnet50(),
                                          simsiam::SimSiamOptions().dim(2048).pred_dim(512));
  int64_t bytes = 0;
  for (auto& p : model->parameters()) {
    if (!p.requires_grad()) continue;
    p.mutable_grad() = torch::randn_like(p);
    bytes += p.numel() * 4;
  }
  D::DataParallel parallel(
      *model, *group, D::DataParallelOptions().bucket_bytes(state.range(0) * 1024).overlap(false));
  parallel.synchronize_gradients();  // warm-up
  Meet meet;
  for (auto _ : state) parallel.synchronize_gradients();
  state.counters["buckets"] = static_cast<double>(parallel.bucket_count());
  state.SetBytesProcessed(state.iterations() * bytes);
}

/// The training step of `model` on fixed views of shape `view` (batch per process first).
template <class Backbone>
void train_steps(benchmark::State& state, simsiam::SimSiam<Backbone> model,
                 std::vector<int64_t> view, int64_t processes, bool overlap, bool sync_bn,
                 int threads) {
  torch::set_num_threads(threads);
  const bool active = processes == 2 || group->rank() == 0;
  auto sgd = simsiam::make_sgd(model, simsiam::SgdRecipe().base_lr(0.05).batch_size(256));
  simsiam::SymmetricLoss<> criterion;
  std::unique_ptr<D::DataParallel> parallel;
  if (processes == 2) {
    if (sync_bn) D::convert_sync_batchnorm(*model, group.get());
    parallel = std::make_unique<D::DataParallel>(*model, *group,
                                                 D::DataParallelOptions().overlap(overlap));
    parallel->broadcast_state();
  }
  torch::manual_seed(static_cast<uint64_t>(group->rank()));
  const auto x1 = torch::randn(view);
  const auto x2 = torch::randn(view);
  const auto step = [&] {
    training_step(model, sgd, criterion, x1, x2, [&] {
      if (parallel) parallel->synchronize_gradients();
    });
  };
  if (active) step();  // warm-up, untimed
  Meet meet;
  for (auto _ : state) {
    if (active) step();
  }
  state.SetItemsProcessed(state.iterations() * view[0] * processes);
}

void BM_QuickStartStep(benchmark::State& state) {
  train_steps(state, quick_start_model(), {state.range(1), 1, 28, 28}, state.range(0),
              state.range(2) != 0, state.range(3) != 0, 1);
}

void BM_ResNet18CifarStep(benchmark::State& state) {
  torch::manual_seed(0);
  simsiam::SimSiam<simsiam::ResNet> model(
      simsiam::ResNet(simsiam::ResNetOptions(18).stem(simsiam::ResNetStem::kCifar)),
      simsiam::SimSiamOptions().dim(2048).pred_dim(512).projector_layers(2));
  train_steps(state, std::move(model), {32, 3, 32, 32}, 2, state.range(0) != 0, false, 1);
}

void BM_QuickStartStepTwoThreads(benchmark::State& state) {
  train_steps(state, quick_start_model(), {state.range(0), 1, 28, 28}, 1, false, false, 2);
}

}  // namespace

BENCHMARK(BM_AllReduce)
    ->ArgName("KiB")
    ->Arg(0)
    ->Arg(1024)
    ->Arg(25600)
    ->Iterations(40)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ResNet50Gradients)
    ->ArgName("bucket_KiB")
    ->Arg(1)
    ->Arg(1024)
    ->Arg(25600)
    ->Iterations(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuickStartStep)
    ->ArgNames({"processes", "batch", "overlap", "syncbn"})
    ->Args({1, 256, 0, 0})
    ->Args({2, 256, 1, 1})
    ->Args({2, 256, 0, 1})
    ->Args({2, 256, 1, 0})
    ->Args({2, 128, 1, 1})
    ->Iterations(60)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ResNet18CifarStep)
    ->ArgName("overlap")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(6)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QuickStartStepTwoThreads)
    ->ArgName("batch")
    ->Arg(256)
    ->Iterations(60)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  const char* port_text = std::getenv("SIMSIAM_BENCH_PORT");
  const int64_t port = port_text != nullptr ? std::atoll(port_text) : 29731;
  std::fflush(nullptr);
  const pid_t peer = fork();
  const int rank = peer == 0 ? 1 : 0;
  if (rank == 1 && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  group = std::make_unique<D::ProcessGroup>(
      D::DistributedOptions().rank(rank).world_size(2).master_port(port).timeout(
          std::chrono::minutes(5)));
  benchmark::AddCustomContext("ranks", "2 processes on 127.0.0.1, Gloo");
  const int code = run_benchmarks(argc, argv);
  group.reset();
  if (rank == 1) _exit(code);
  int status = 0;
  waitpid(peer, &status, 0);
  return code != 0 ? code : (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
