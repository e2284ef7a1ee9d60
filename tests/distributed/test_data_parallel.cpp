// SPDX-License-Identifier: BSD-3-Clause
// Data parallelism end to end on two loopback ranks: convert_sync_batchnorm over the library's
// models, gradient accumulation, a peer that dies, and the trainer itself (identical replicas,
// files from rank 0 only, kNN over shards, a non-finite loss on one rank).
#include "simsiam/distributed/data_parallel.hpp"
#include "simsiam/distributed/process_group.hpp"
#include "simsiam/distributed/sync_batch_norm.hpp"

#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "simsiam/backbones/resnet.hpp"
#include "simsiam/model/simsiam.hpp"
#include "support/catch.hpp"
#include "support/ranks.hpp"
#include "support/tiny_training.hpp"

namespace D = simsiam::distributed;
namespace T = simsiam::testing;

namespace {

D::ProcessGroup join(int rank, int64_t port, int seconds = 30) {
  return D::ProcessGroup(D::DistributedOptions().rank(rank).world_size(2).master_port(port).timeout(
      std::chrono::seconds(seconds)));
}

/// Every parameter and buffer of `module`, flattened into one float64 vector.
torch::Tensor flat_state(const torch::nn::Module& module) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : module.parameters())
    parts.push_back(p.detach().reshape({-1}).to(torch::kDouble));
  for (const auto& b : module.buffers()) parts.push_back(b.reshape({-1}).to(torch::kDouble));
  return torch::cat(parts);
}

/// Whether rank 0's `value` equals this rank's, bit for bit.
bool same_on_all_ranks(D::Communicator& group, const torch::Tensor& value) {
  std::vector<torch::Tensor> from_root{value.clone()};
  group.broadcast(from_root, 0);
  return torch::equal(from_root[0], value);
}

/// The trainer on 48 tiny images, sharded over the ranks; batch 8 per rank.
struct ShardedRun {
  ShardedRun(int rank, D::Communicator* group, const std::string& run_dir, int64_t epochs,
             bool sync_batch_norm = true)
      : model(T::tiny_model(static_cast<uint64_t>(rank) + 1)),  // different inits on purpose
        loader([&] {
          simsiam::LoaderOptions options;
          options.batch_size(8);
          options.workers(0);
          options.seed(1);
          options.pin_memory(false);
          options.rank(rank);
          options.world_size(simsiam::distributed::world_size(group));
          return simsiam::Loader<T::TinySource>(
              T::TinySource{T::tiny_data(), simsiam::augment::simsiam_grayscale(12)}, options);
        }()),
        sgd(simsiam::make_sgd(model, recipe)),
        schedule(simsiam::make_cosine_schedule(sgd, recipe, epochs)),
        trainer(model, loader, sgd, &schedule,
                T::quiet_options(epochs, run_dir)
                    .communicator(group)
                    .sync_batch_norm(sync_batch_norm)) {}

  simsiam::SgdRecipe recipe = simsiam::SgdRecipe().base_lr(0.1).batch_size(16);
  T::TinyModel model;
  simsiam::Loader<T::TinySource> loader;
  torch::optim::SGD sgd;
  simsiam::CosineSchedule schedule;
  simsiam::Trainer<T::TinyModel, simsiam::Loader<T::TinySource>> trainer;
};

/// One process with a stand-in for a peer that holds the same tensors (a sum doubles), which
/// records when each asynchronous all-reduce starts.
struct Twin : D::Communicator {
  int64_t rank() const override { return 0; }
  int64_t world_size() const override { return 2; }
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    ++collectives;
    for (auto& t : tensors) t.mul_(2);
  }
  D::PendingWork all_reduce_sum_async(torch::Tensor tensor) override {
    started.push_back(tensor.numel());
    return D::PendingWork([tensor]() mutable { tensor.mul_(2); });
  }
  void broadcast(std::vector<torch::Tensor>&, int64_t) override { ++collectives; }
  void barrier() override { ++collectives; }
  std::vector<int64_t> started;
  int64_t collectives = 0;
};

/// Passes everything on to `inner`, counting the blocking collectives (the gradients'
/// asynchronous all-reduces are not counted).
struct Counting : D::Communicator {
  explicit Counting(D::Communicator& inner) : inner(inner) {}
  int64_t rank() const override { return inner.rank(); }
  int64_t world_size() const override { return inner.world_size(); }
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    ++blocking;
    inner.all_reduce_sum(tensors);
  }
  D::PendingWork all_reduce_sum_async(torch::Tensor tensor) override {
    return inner.all_reduce_sum_async(std::move(tensor));
  }
  void broadcast(std::vector<torch::Tensor>& tensors, int64_t root) override {
    ++blocking;
    inner.broadcast(tensors, root);
  }
  void barrier() override {
    ++blocking;
    inner.barrier();
  }
  D::Communicator& inner;
  int64_t blocking = 0;
};

/// A loader that hands out only its first `limit` batches of each epoch while announcing all:
/// a rank whose loader skipped batches of bad images.
struct ShortLoader {
  simsiam::Loader<T::TinySource>& inner;
  int64_t limit;
  int64_t given = 0;
  void set_epoch(int64_t epoch) {
    inner.set_epoch(epoch);
    given = 0;
  }
  int64_t batches_per_epoch() const { return inner.batches_per_epoch(); }
  std::optional<simsiam::TwoViewBatch> next() {
    if (given == limit) {
      while (inner.next()) {
      }
      return std::nullopt;
    }
    ++given;
    return inner.next();
  }
};

}  // namespace

TEST_CASE("convert_sync_batchnorm reaches every BatchNorm of the library's models",
          "[distributed][syncbn]") {
  auto model = simsiam::SimSiam<simsiam::ResNet>(simsiam::resnet18(),
                                                 simsiam::SimSiamOptions().dim(64).pred_dim(16));
  int64_t norms = 0;
  for (const auto& m : model->modules()) norms += m->as<D::SyncBatchNorm>() != nullptr;
  // ResNet-18: stem 1, 8 blocks x 2, 3 downsamples; projector 3; predictor 1.
  CHECK(norms == 1 + 16 + 3 + 3 + 1);
  struct NoPeers : D::Communicator {
    int64_t rank() const override { return 0; }
    int64_t world_size() const override { return 2; }
    void all_reduce_sum(std::vector<torch::Tensor>&) override {}
    D::PendingWork all_reduce_sum_async(torch::Tensor) override { return {}; }
    void broadcast(std::vector<torch::Tensor>&, int64_t) override {}
    void barrier() override {}
  } group;
  CHECK(D::convert_sync_batchnorm(*model, &group) == norms);
  for (const auto& m : model->modules()) {
    if (auto* bn = m->as<D::SyncBatchNorm>()) CHECK(bn->group == &group);
  }
  CHECK(D::convert_sync_batchnorm(*model, nullptr) == norms);
  for (const auto& m : model->modules()) {
    if (auto* bn = m->as<D::SyncBatchNorm>()) CHECK(bn->group == nullptr);
  }
  // Parameter names are torchvision's, as with torch::nn::BatchNorm2d.
  const auto names = model->named_parameters();
  CHECK(names.contains("backbone.layer1.0.bn1.weight"));
  CHECK(model->named_buffers().contains("backbone.bn1.running_var"));

  // LibTorch's own BatchNorm cannot be switched in place: refused, by name.
  torch::nn::Sequential stock(torch::nn::Linear(3, 4), torch::nn::BatchNorm1d(4));
  CHECK_THROWS_WITH(D::convert_sync_batchnorm(*stock, &group),
                    Contains("found torch::nn::BatchNorm at '1'"));
}

TEST_CASE("gradients accumulated without sync then averaged equal one process's whole batch",
          "[distributed][ddp]") {
  const int64_t port = T::test_port(11);
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    torch::manual_seed(rank + 3);
    torch::nn::Sequential model(torch::nn::Linear(6, 5), torch::nn::Tanh(),
                                torch::nn::Linear(5, 2));
    D::DataParallel parallel(*model, group, D::DataParallelOptions().bucket_bytes(48));
    CHECK(parallel.bucket_count() > 1);
    parallel.broadcast_state();
    auto generator = at::detail::createCPUGenerator(9);
    const auto x = torch::randn({16, 6}, generator);
    const auto loss = [&](torch::nn::Sequential& net, const torch::Tensor& rows) {
      return net->forward(rows).square().sum();
    };
    // Two micro-batches of 4 per rank: the first only accumulates.
    for (int micro = 0; micro < 2; ++micro) {
      parallel.require_sync(micro == 1);
      loss(model, x.slice(0, 8 * rank + 4 * micro, 8 * rank + 4 * micro + 4)).backward();
      parallel.synchronize_gradients();
    }
    auto reference =
        torch::nn::Sequential(torch::nn::Linear(6, 5), torch::nn::Tanh(), torch::nn::Linear(5, 2));
    {
      torch::NoGradGuard no_grad;
      auto to = reference->parameters();
      const auto from = model->parameters();
      for (size_t i = 0; i < to.size(); ++i) to[i].copy_(from[i]);
    }
    loss(reference, x).backward();
    bool equal = true;
    const auto a = model->parameters(), b = reference->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      // The sum over 16 rows, averaged over 2 ranks: half the one-process sum.
      equal = equal && torch::allclose(a[i].grad(), b[i].grad() / 2, 1e-5, 1e-6);
    }
    return equal;
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("a peer that dies makes the other fail within the timeout, naming its rank",
          "[distributed]") {
  const int64_t port = T::test_port(12);
  const auto failure = T::run_ranks_expecting_error(2, [&](int rank) {
    auto group = join(rank, port, 3);
    // Joining turned the default SIGPIPE into "ignore", or writing to the dead peer would kill
    // rank 0 (exit 128 + SIGPIPE) before any error could name the rank.
    struct sigaction pipe {};
    sigaction(SIGPIPE, nullptr, &pipe);
    if (pipe.sa_handler != SIG_IGN) _exit(4);
    if (rank == 1) _exit(3);  // dies without a word
    // Large enough that Gloo writes into the closed socket rather than only waiting to read.
    for (int i = 0; i < 4; ++i) {
      std::vector<torch::Tensor> sum{torch::ones({1 << 20})};
      group.all_reduce_sum(sum);
    }
  });
  CHECK(failure.codes == std::vector<int>{0, 3});
  CHECK(failure.seconds < 15.0);
  CHECK_THAT(failure.message, Contains("all_reduce failed on rank 0 of 2"));
}

TEST_CASE("two ranks train to identical weights; rank 0 alone writes; kNN over shards is exact",
          "[distributed][trainer]") {
  const int64_t port = T::test_port(13);
  T::ScratchDir dir("ddp_trainer");
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    const auto run_dir = dir / ("rank" + std::to_string(rank));
    ShardedRun run(rank, &group, run_dir, 2);
    const auto data = T::tiny_data();
    const auto to_float = [](const torch::Tensor& x) { return x.to(torch::kFloat).div(255); };
    auto knn = std::make_shared<simsiam::KnnMonitor>(
        data.images, data.labels, data.images.slice(0, 0, 20), data.labels.slice(0, 0, 20), 4,
        simsiam::KnnMonitorOptions().knn(simsiam::KnnOptions().k(5)).transform(to_float));
    run.trainer.add_hook(knn);
    const auto result = run.trainer.fit();
    bool ok = result.steps == 6;  // 24 images per rank, batch 8, 2 epochs
    // Replicas: every parameter and BN running statistic bit-identical on both ranks.
    ok = ok && same_on_all_ranks(group, flat_state(*run.model));
    // The BatchNorms are per-process again after fit.
    for (const auto& m : run.model->modules()) {
      if (auto* bn = m->as<D::SyncBatchNorm>()) ok = ok && bn->group == nullptr;
    }
    // The distributed kNN of the last epoch is the one-process kNN of the final weights.
    const double alone = knn->evaluate(
        *run.model, [&](const torch::Tensor& x) { return run.model->features(x); }, torch::kCPU,
        nullptr);
    ok = ok && knn->last() >= 0 && std::abs(knn->last() - alone) < 1e-12;
    // Files from rank 0 only.
    if (rank == 0) {
      ok = ok && std::filesystem::exists(run_dir + "/checkpoint.pt") &&
           std::filesystem::exists(run_dir + "/metrics.csv");
    } else {
      ok = ok && !std::filesystem::exists(run_dir);
    }
    return ok;
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("a non-finite loss on one rank stops both with the same error",
          "[distributed][trainer]") {
  const int64_t port = T::test_port(14);
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    // Per-rank BatchNorm: rank 0's own loss stays finite, only the mean over ranks is not.
    ShardedRun run(rank, &group, "", 1, /*sync_batch_norm=*/false);
    try {
      // Rank 1's weights turn NaN after the broadcast from rank 0, as the first epoch begins.
      struct Poison : simsiam::Hook {
        explicit Poison(bool on) : on(on) {}
        void on_epoch_begin(simsiam::TrainState& state) override {
          if (!on) return;
          torch::NoGradGuard no_grad;
          state.model->parameters()[0].fill_(std::numeric_limits<float>::quiet_NaN());
        }
        bool on;
      };
      run.trainer.add_hook(std::make_shared<Poison>(rank == 1));
      run.trainer.fit();
    } catch (const c10::Error& e) {
      const std::string message = e.what_without_backtrace();
      // Both name rank 1's step, the earliest (rank 0's own loss turns NaN one step later),
      // and both went back to the weights broadcast at the start.
      const auto state = flat_state(*run.model);
      const bool rolled_back =
          torch::isfinite(state).all().item<bool>() && same_on_all_ranks(group, state);
      if (message.find("nan at epoch 1, step 1 of 3 (global step 1) on rank 1") !=
              std::string::npos &&
          rolled_back)
        return true;
      std::fprintf(stderr, "rank %d (rolled back: %d): %s\n", rank, rolled_back ? 1 : 0,
                   message.c_str());
    }
    return false;
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("the trainer's ranks exchange one message per step", "[distributed][trainer]") {
  const int64_t port = T::test_port(19);
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    Counting counting(group);
    // Per-process BatchNorm: SyncBatchNorm's own collectives are not the trainer's.
    ShardedRun run(rank, &counting, "", 2, /*sync_batch_norm=*/false);
    struct Count : simsiam::Hook {
      explicit Count(const Counting& c) : counting(c) {}
      void on_step_end(simsiam::TrainState&) override { at_step.push_back(counting.blocking); }
      const Counting& counting;
      std::vector<int64_t> at_step;
    };
    auto count = std::make_shared<Count>(counting);
    run.trainer.add_hook(count);
    const auto result = run.trainer.fit();
    bool ok = count->at_step.size() == 6;  // 3 steps per epoch
    for (size_t i : {1, 2, 4, 5}) ok = ok && count->at_step[i] - count->at_step[i - 1] == 1;
    // The epoch's loss is the same on both ranks (their mean).
    ok = ok &&
         same_on_all_ranks(group, torch::tensor({result.last_epoch.at("loss")}, torch::kDouble));
    if (!ok) {
      for (const auto c : count->at_step)
        std::fprintf(stderr, "rank %d: %lld\n", rank, static_cast<long long>(c));
    }
    return ok;
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("bucket all-reduces start during backward in bucket order", "[distributed][ddp]") {
  // One process with a stand-in for a peer that holds the same gradients.
  Twin twin;
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(3, 4), torch::nn::Tanh(), torch::nn::Linear(4, 5));
  D::DataParallel parallel(*model, twin, D::DataParallelOptions().bucket_bytes(4 * 20));
  // Reverse registration order, at most 80 bytes each: {2.bias: 5 floats}, {2.weight: 20},
  // {0.bias: 4, 0.weight: 12}.
  REQUIRE(parallel.bucket_count() == 3);
  auto x = torch::randn({6, 3}).requires_grad_();
  size_t started_before_input_grad = 0;
  x.register_hook([&](const torch::Tensor&) { started_before_input_grad = twin.started.size(); });
  model->forward(x).square().sum().backward();
  // The input's gradient comes last in backward: by then the last layer's buckets had started.
  CHECK(started_before_input_grad >= 2);
  CHECK(twin.started == std::vector<int64_t>{5, 20, 16});
  std::vector<torch::Tensor> expected;
  for (const auto& p : model->parameters()) expected.push_back(p.grad().clone());
  parallel.synchronize_gradients();
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(torch::allclose(params[i].grad(), expected[i]));  // (g + g) / 2
  }
  // A second step works the same (the bucket state was reset).
  model->zero_grad();
  model->forward(x).square().sum().backward();
  parallel.synchronize_gradients();
  CHECK(twin.started.size() == 6);
}

TEST_CASE("find_unused_parameters leaves a parameter no rank used without a gradient",
          "[distributed][ddp]") {
  for (const bool find_unused : {false, true}) {
    INFO("find_unused_parameters " << find_unused);
    Twin twin;
    torch::nn::Sequential model(torch::nn::Linear(3, 2), torch::nn::Linear(2, 2));
    D::DataParallel parallel(*model, twin,
                             D::DataParallelOptions().find_unused_parameters(find_unused));
    // Only the first layer takes part.
    model[0]->as<torch::nn::Linear>()->forward(torch::randn({4, 3})).sum().backward();
    parallel.synchronize_gradients();
    const auto unused = model[1]->as<torch::nn::Linear>()->weight.grad();
    CHECK(model[0]->as<torch::nn::Linear>()->weight.grad().defined());
    if (find_unused) {
      CHECK_FALSE(unused.defined());
    } else {
      REQUIRE(unused.defined());
      CHECK(torch::equal(unused, torch::zeros({2, 2})));
    }
  }
}

TEST_CASE("SyncBatchNorm runs no collective in evaluation", "[distributed][syncbn]") {
  Twin twin;
  D::SyncBatchNorm bn(D::SyncBatchNormOptions(3), &twin);
  bn->eval();
  bn(torch::randn({4, 3}));
  CHECK(twin.collectives == 0);
  bn->train();
  bn(torch::randn({4, 3}));
  CHECK(twin.collectives == 1);
}

TEST_CASE("a rank whose loader runs short ends the epoch for every rank",
          "[distributed][trainer]") {
  const int64_t port = T::test_port(15);
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    ShardedRun run(rank, &group, "", 1);
    ShortLoader short_loader{run.loader, rank == 1 ? 1 : 3};
    simsiam::Trainer<T::TinyModel, ShortLoader> trainer(
        run.model, short_loader, run.sgd, &run.schedule,
        T::quiet_options(1, "").communicator(&group));
    const auto result = trainer.fit();
    return result.steps == 1 && same_on_all_ranks(group, flat_state(*run.model));
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("a checkpoint rank 0 cannot write stops every rank with a clear error",
          "[distributed][trainer]") {
  const int64_t port = T::test_port(16);
  T::ScratchDir dir("ddp_unwritable");
  std::filesystem::create_directories(dir / "rank0/checkpoint.pt");  // a folder in the way
  const auto codes = T::run_ranks(2, [&](int rank) {
    auto group = join(rank, port);
    ShardedRun run(rank, &group, dir / ("rank" + std::to_string(rank)), 1);
    try {
      run.trainer.fit();
    } catch (const c10::Error& e) {
      const std::string message = e.what_without_backtrace();
      const char* expected =
          rank == 0 ? "checkpoint.pt" : "rank 0 could not write the checkpoint after epoch 1";
      if (message.find(expected) != std::string::npos) return true;
      std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
    }
    return false;
  });
  CHECK(codes == std::vector<int>{0, 0});
}
