// SPDX-License-Identifier: BSD-3-Clause
// Weighted kNN against a direct transcription of the monitor in the SimSiam/MoCo CIFAR demos.
#include "simsiam/eval/knn.hpp"

#include <chrono>

#include "simsiam/distributed/process_group.hpp"
#include "support/catch.hpp"
#include "support/ranks.hpp"

namespace {

/// knn_predict of the demos: one-hot labels weighted by exp(sim / t), summed over the top k.
torch::Tensor reference_scores(const torch::Tensor& queries, const torch::Tensor& bank,
                               const torch::Tensor& labels, int64_t classes, int64_t k, double t) {
  namespace F = torch::nn::functional;
  const auto q = F::normalize(queries, F::NormalizeFuncOptions().dim(1));
  const auto b = F::normalize(bank, F::NormalizeFuncOptions().dim(1));
  auto [weight, index] = q.matmul(b.t()).topk(k, -1);
  const auto neighbour = labels.expand({q.size(0), -1}).gather(-1, index);
  const auto one_hot =
      torch::zeros({q.size(0) * k, classes}).scatter(-1, neighbour.reshape({-1, 1}), 1.0);
  return (one_hot.view({q.size(0), -1, classes}) * (weight / t).exp().unsqueeze(-1)).sum(1);
}

}  // namespace

TEST_CASE("kNN scores equal the demos' knn_predict, whatever the query batch size", "[knn]") {
  torch::manual_seed(3);
  const auto bank = torch::randn({300, 16});
  const auto labels = torch::randint(0, 7, {300}, torch::kLong);
  const auto queries = torch::randn({50, 16});
  const auto expected = reference_scores(queries, bank, labels, 7, 20, 0.1);
  for (const int64_t batch : {1, 7, 1024}) {
    // Bank chunks smaller than k, not dividing the bank, and the whole bank.
    for (const int64_t bank_batch : {5, 33, 65536}) {
      INFO("batch " << batch << ", bank batch " << bank_batch);
      const auto scores = simsiam::knn_scores(
          queries, bank, labels, 7,
          simsiam::KnnOptions().k(20).temperature(0.1).batch_size(batch).bank_batch_size(
              bank_batch));
      CHECK(torch::allclose(scores, expected, 1e-5, 1e-5));
    }
  }
}

TEST_CASE("kNN votes by similarity weight, not by count", "[knn]") {
  // One very close neighbour of class 1 outweighs two distant ones of class 0 at t = 0.1.
  const auto bank = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {0.0f, -1.0f}});
  const auto labels = torch::tensor({1L, 0L, 0L});
  const auto query = torch::tensor({{1.0f, 0.05f}});
  const auto options = simsiam::KnnOptions().k(3).temperature(0.1);
  CHECK(simsiam::knn_scores(query, bank, labels, 2, options).argmax(1).item<int64_t>() == 1);
  CHECK(simsiam::knn_accuracy(query, torch::tensor({1L}), bank, labels, 2, options) == 1.0);
  // k larger than the bank is capped, as a 10-image bank cannot give 200 neighbours.
  CHECK_NOTHROW(simsiam::knn_scores(query, bank, labels, 2, simsiam::KnnOptions()));
}

TEST_CASE("kNN recovers well separated clusters", "[knn]") {
  torch::manual_seed(5);
  const auto centres = 4.0 * torch::randn({4, 8});
  const auto labels = torch::arange(4).repeat_interleave(50);
  const auto bank = centres.index_select(0, labels) + 0.3 * torch::randn({200, 8});
  const auto query_labels = torch::arange(4).repeat(10);
  const auto queries = centres.index_select(0, query_labels) + 0.3 * torch::randn({40, 8});
  CHECK(simsiam::knn_accuracy(queries, query_labels, bank, labels, 4,
                              simsiam::KnnOptions().k(20)) == 1.0);
}

TEST_CASE("bad kNN inputs fail clearly", "[knn][errors]") {
  const auto bank = torch::randn({10, 4});
  const auto labels = torch::zeros({10}, torch::kLong);
  CHECK_THROWS_WITH(simsiam::knn_scores(torch::randn({3, 5}), bank, labels, 2),
                    Contains("expected queries [Q, D] and bank [N, D] with one D, got "
                             "queries [3, 5] and bank [10, 4]"));
  CHECK_THROWS_WITH(simsiam::knn_scores(torch::randn({3, 4}), bank, labels.slice(0, 0, 9), 2),
                    Contains("expected bank_labels [10], got [9]"));
  CHECK_THROWS_WITH(simsiam::knn_scores(torch::randn({3, 4}), bank, labels + 2, 2),
                    Contains("expected bank_labels in [0, 2), got values in [2, 2]"));
  CHECK_THROWS_WITH(
      simsiam::knn_scores(torch::randn({3, 4}), bank, labels, 2, simsiam::KnnOptions().k(0)),
      Contains("expected k > 0, temperature > 0, batch_size > 0 and bank_batch_size > 0, got k=0"));
}

TEST_CASE("kNN follows the bank's dtype and takes labels of any integer type", "[knn]") {
  torch::manual_seed(4);
  const auto bank = torch::randn({40, 6}, torch::kDouble);
  const auto labels = torch::randint(0, 3, {40}, torch::kInt);
  const auto queries = torch::randn({5, 6});
  const auto scores = simsiam::knn_scores(queries, bank, labels, 3, simsiam::KnnOptions().k(7));
  CHECK(scores.scalar_type() == torch::kDouble);
  const auto expected =
      reference_scores(queries, bank.to(torch::kFloat), labels.to(torch::kLong), 3, 7, 0.1);
  CHECK(torch::allclose(scores.to(torch::kFloat), expected, 1e-5, 1e-5));
}

TEST_CASE("kNN scores half-precision features in float32 without overflow", "[knn]") {
  // Five identical neighbours of class 1: 5 * exp(1 / 0.1) = 110,130 > float16's 65,504.
  const auto bank =
      torch::tensor(
          {{1.0f, 0.0f}, {1.0f, 0.0f}, {1.0f, 0.0f}, {1.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}})
          .to(torch::kHalf);
  const auto labels = torch::tensor({1L, 1L, 1L, 1L, 1L, 0L});
  const auto query = torch::tensor({{1.0f, 0.0f}}).to(torch::kHalf);
  const auto scores = simsiam::knn_scores(query, bank, labels, 2, simsiam::KnnOptions().k(6));
  CHECK(scores.scalar_type() == torch::kFloat);
  CHECK(torch::isfinite(scores).all().item<bool>());
  CHECK(scores[0][1].item<double>() == Approx(5 * std::exp(10.0)).epsilon(1e-3));
}

TEST_CASE("kNN refuses float labels and empty queries", "[knn][errors]") {
  const auto bank = torch::randn({10, 4});
  CHECK_THROWS_WITH(simsiam::knn_scores(torch::randn({3, 4}), bank, torch::zeros({10}), 2),
                    Contains("expected integer bank_labels (class indices), got Float"));
  const auto labels = torch::zeros({10}, torch::kLong);
  CHECK_THROWS_WITH(
      simsiam::knn_accuracy(torch::randn({0, 4}), torch::zeros({0}, torch::kLong), bank, labels, 2),
      Contains("expected queries [Q, D] with Q > 0, got [0, 4]"));
  CHECK_THROWS_WITH(simsiam::knn_accuracy(torch::randn({4}), labels, bank, labels, 2),
                    Contains("expected queries [Q, D] with Q > 0, got [4]"));
}

TEST_CASE("kNN over two ranks' shards equals kNN over the whole bank", "[eval][knn][distributed]") {
  // Uneven shards, one smaller than k: each rank's candidates are padded with weight 0.
  auto generator = at::detail::createCPUGenerator(21);
  const auto bank = torch::randn({23, 6}, generator);
  const auto bank_labels = torch::randint(0, 3, {23}, generator, torch::kLong);
  const auto queries = torch::randn({31, 6}, generator);
  const auto query_labels = torch::randint(0, 3, {31}, generator, torch::kLong);
  const auto options = simsiam::KnnOptions().k(7).temperature(0.2).batch_size(5).bank_batch_size(4);
  const double whole = simsiam::knn_accuracy(queries, query_labels, bank, bank_labels, 3, options);
  const int64_t port = simsiam::testing::test_port(31);
  const auto codes = simsiam::testing::run_ranks(2, [&](int rank) {
    simsiam::distributed::ProcessGroup group(simsiam::distributed::DistributedOptions()
                                                 .rank(rank)
                                                 .world_size(2)
                                                 .master_port(port)
                                                 .timeout(std::chrono::seconds(30)));
    const int64_t bank_cut = 19, query_cut = 10;  // rank 1 holds 4 bank rows, fewer than k
    const auto mine = [&](const torch::Tensor& t, int64_t cut) {
      return rank == 0 ? t.slice(0, 0, cut) : t.slice(0, cut, t.size(0));
    };
    const double shared =
        simsiam::knn_accuracy(&group, mine(queries, query_cut), mine(query_labels, query_cut),
                              mine(bank, bank_cut), mine(bank_labels, bank_cut), 3, options);
    return shared == whole;
  });
  CHECK(codes == std::vector<int>{0, 0});
  CHECK(whole > 0.0);
}
