// SPDX-License-Identifier: BSD-3-Clause
// The process group on loopback: two forked processes meet through a TCPStore or a FileStore,
// all-reduce and broadcast; a peer that never joins makes the other fail within the timeout with
// a message naming the rank and the address.
#include "simsiam/distributed/data_parallel.hpp"
#include "simsiam/distributed/process_group.hpp"
#include "simsiam/distributed/sync_batch_norm.hpp"

#include "support/ranks.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "support/catch.hpp"

namespace D = simsiam::distributed;
using simsiam::testing::run_ranks;
using simsiam::testing::test_port;

TEST_CASE("two processes all-reduce and broadcast over a TCPStore on loopback", "[distributed]") {
  const int64_t port = test_port(1);
  const auto codes = run_ranks(2, [&](int rank) {
    D::ProcessGroup group(
        D::DistributedOptions().rank(rank).world_size(2).master_port(port).timeout(
            std::chrono::seconds(20)));
    std::vector<torch::Tensor> sum{torch::full({5}, rank + 1.0)};
    group.all_reduce_sum(sum);
    std::vector<torch::Tensor> from_root{torch::full({3}, rank == 0 ? 7.0 : -1.0)};
    group.broadcast(from_root, 0);
    group.barrier();
    return torch::equal(sum[0], torch::full({5}, 3.0)) &&
           torch::equal(from_root[0], torch::full({3}, 7.0));
  });
  CHECK(codes == std::vector<int>{0, 0});
}

TEST_CASE("two processes meet through a shared FileStore", "[distributed]") {
  const auto file =
      std::filesystem::temp_directory_path() / ("simsiam_filestore_" + std::to_string(getpid()));
  std::filesystem::remove(file);
  const auto codes = run_ranks(2, [&](int rank) {
    D::ProcessGroup group(D::DistributedOptions()
                              .rank(rank)
                              .world_size(2)
                              .file_store(file.string())
                              .timeout(std::chrono::seconds(20)));
    std::vector<torch::Tensor> sum{torch::full({2}, rank + 1.0)};
    group.all_reduce_sum(sum);
    return torch::equal(sum[0], torch::full({2}, 3.0));
  });
  CHECK(codes == std::vector<int>{0, 0});
  std::filesystem::remove(file);
}

TEST_CASE("a peer that never joins fails the others within the timeout, naming rank and address",
          "[distributed]") {
  const int64_t port = test_port(2);
  const auto failure = simsiam::testing::run_ranks_expecting_error(1, [&](int) {
    D::ProcessGroup group(D::DistributedOptions().rank(0).world_size(2).master_port(port).timeout(
        std::chrono::seconds(2)));
  });
  CHECK(failure.codes == std::vector<int>{0});
  CHECK(failure.seconds < 15.0);
  CHECK_THAT(failure.message,
             Contains("rank 0 of 2 could not join the gloo process group at 127.0.0.1:" +
                      std::to_string(port)) &&
                 Contains("within 2000 ms"));
}

TEST_CASE("distributed options from the environment are checked", "[distributed]") {
  setenv("WORLD_SIZE", "4", 1);
  setenv("RANK", "2", 1);
  setenv("LOCAL_RANK", "0", 1);
  setenv("MASTER_ADDR", "10.0.0.5", 1);
  setenv("MASTER_PORT", "23456", 1);
  const auto options = D::DistributedOptions::from_env();
  CHECK(options.rank() == 2);
  CHECK(options.world_size() == 4);
  CHECK(options.local_rank() == 0);
  CHECK(options.master_addr() == "10.0.0.5");
  CHECK(options.master_port() == 23456);
  setenv("RANK", "4", 1);
  CHECK_THROWS_WITH(D::DistributedOptions::from_env(),
                    Contains("expected 0 <= RANK < WORLD_SIZE (4), got 4"));
  setenv("RANK", "two", 1);
  CHECK_THROWS_WITH(D::DistributedOptions::from_env(),
                    Contains("expected an integer in RANK, got 'two'"));
  for (const char* name : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    unsetenv(name);
  }
  CHECK(D::DistributedOptions::from_env().world_size() == 1);
}

TEST_CASE("SyncBatchNorm on two ranks equals BatchNorm on the concatenated batch",
          "[distributed][syncbn]") {
  const int64_t port = test_port(3);
  for (const bool image : {true, false}) {
    INFO("2-D " << image);
    const auto codes = run_ranks(2, [&](int rank) {
      D::ProcessGroup group(D::DistributedOptions()
                                .rank(rank)
                                .world_size(2)
                                .master_port(port + (image ? 0 : 1))
                                .timeout(std::chrono::seconds(20)));
      auto generator = at::detail::createCPUGenerator(11);
      const auto shape = image ? std::vector<int64_t>{8, 3, 4, 5} : std::vector<int64_t>{8, 3};
      const auto x_all = torch::randn(shape, generator) * 2 + 1;
      const auto g_all = torch::randn(shape, generator);
      const auto w = torch::rand({3}, generator) + 0.5;
      const auto b = torch::randn({3}, generator);
      // Reference: plain batch norm over all 8 rows.
      auto x_ref = x_all.clone().requires_grad_();
      auto w_ref = w.clone().requires_grad_();
      auto b_ref = b.clone().requires_grad_();
      auto mean_ref = torch::zeros({3}), var_ref = torch::ones({3});
      (torch::batch_norm(x_ref, w_ref, b_ref, mean_ref, var_ref, true, 0.1, 1e-5, false) * g_all)
          .sum()
          .backward();
      // This rank's half through SyncBatchNorm.
      D::SyncBatchNorm bn(D::SyncBatchNormOptions(3), &group);
      {
        torch::NoGradGuard no_grad;
        bn->weight.copy_(w);
        bn->bias.copy_(b);
      }
      auto x = x_all.slice(0, 4 * rank, 4 * rank + 4).clone().requires_grad_();
      const auto y = bn(x);
      (y * g_all.slice(0, 4 * rank, 4 * rank + 4)).sum().backward();
      std::vector<torch::Tensor> grads{bn->weight.grad().clone(), bn->bias.grad().clone()};
      group.all_reduce_sum(grads);  // parameter gradients are local sums
      const auto rows = x_ref.grad().slice(0, 4 * rank, 4 * rank + 4);
      return torch::allclose(x.grad(), rows, 1e-5, 1e-5) &&
             torch::allclose(grads[0], w_ref.grad(), 1e-4, 1e-5) &&
             torch::allclose(grads[1], b_ref.grad(), 1e-4, 1e-5) &&
             torch::allclose(bn->running_mean, mean_ref, 1e-5, 1e-6) &&
             torch::allclose(bn->running_var, var_ref, 1e-5, 1e-6);
    });
    CHECK(codes == std::vector<int>{0, 0});
  }
}

TEST_CASE("two ranks with batch B and SyncBatchNorm give the gradients of one rank with 2B",
          "[distributed][ddp]") {
  // A projector-like MLP; with plain BatchNorm the two-rank gradients differ (per-rank batch
  // statistics), which is why the paper synchronises BN.
  const int64_t port = test_port(5);
  for (const auto& [sync, overlap] : {std::pair{true, true}, {true, false}, {false, true}}) {
    INFO("SyncBatchNorm " << sync << ", all-reduce during backward " << overlap);
    const auto codes = run_ranks(2, [&, sync = sync, overlap = overlap](int rank) {
      D::ProcessGroup group(D::DistributedOptions()
                                .rank(rank)
                                .world_size(2)
                                .master_port(port + (sync ? 0 : 1) + (overlap ? 0 : 2))
                                .timeout(std::chrono::seconds(20)));
      auto make = [&](D::ProcessGroup* bn_group) {
        torch::manual_seed(rank == 0 ? 1 : 2);  // different inits: the broadcast must align them
        return torch::nn::Sequential(torch::nn::Linear(6, 5),
                                     D::SyncBatchNorm(D::SyncBatchNormOptions(5), bn_group),
                                     torch::nn::ReLU(), torch::nn::Linear(5, 4));
      };
      auto model = make(sync ? &group : nullptr);
      D::DataParallel parallel(*model, group,
                               D::DataParallelOptions().bucket_bytes(64).overlap(overlap));
      parallel.broadcast_state();
      auto generator = at::detail::createCPUGenerator(5);
      const auto x = torch::randn({16, 6}, generator);
      const auto target = torch::randn({16, 4}, generator);
      model->forward(x.slice(0, 8 * rank, 8 * rank + 8))
          .sub(target.slice(0, 8 * rank, 8 * rank + 8))
          .square()
          .mean()
          .backward();
      parallel.synchronize_gradients();
      // One process, the whole batch, from rank 0's initial weights.
      auto reference = make(nullptr);
      {
        torch::NoGradGuard no_grad;
        const auto from = model->parameters();
        auto to = reference->parameters();
        // Rank 0's initial weights, which the broadcast gave this rank too.
        for (size_t i = 0; i < to.size(); ++i) to[i].copy_(from[i]);
      }
      reference->forward(x).sub(target).square().mean().backward();
      bool equal = true;
      const auto a = model->parameters(), b = reference->parameters();
      for (size_t i = 0; i < a.size(); ++i) {
        equal = equal && torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6);
      }
      return sync ? equal : !equal;
    });
    CHECK(codes == std::vector<int>{0, 0});
  }
}
