// SPDX-License-Identifier: BSD-3-Clause
// Predictor: the official bottleneck head (2048 -> 512 -> 2048, BN+ReLU on the hidden layer).
#include "simsiam/heads/predictor.hpp"

#include "support/catch.hpp"

#include "support/fixtures.hpp"

TEST_CASE("default predictor is the official bottleneck", "[heads]") {
  simsiam::Predictor predictor;
  std::vector<std::string> names;
  for (const auto& p : predictor->named_parameters()) {
    names.push_back(p.key());
    CHECK(p.value().requires_grad());
  }
  CHECK(
      (names == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "3.weight", "3.bias"}));
  const auto params = predictor->named_parameters();
  CHECK(params["0.weight"].sizes() == torch::IntArrayRef({512, 2048}));
  CHECK(params["3.weight"].sizes() == torch::IntArrayRef({2048, 512}));
  CHECK(predictor->named_modules().size() == 5);  // itself + Linear, BN, ReLU, Linear
}

TEST_CASE("predictor output BN ablation adds a non-affine BN", "[heads]") {
  simsiam::Predictor predictor(
      simsiam::PredictorOptions(16).hidden_features(4).output_batch_norm(true));
  auto bn = predictor->named_modules()["4"]->as<simsiam::distributed::SyncBatchNorm>();
  REQUIRE(bn != nullptr);
  CHECK_FALSE(bn->options.affine());
  CHECK(predictor->forward(torch::randn({5, 16})).sizes() == torch::IntArrayRef({5, 16}));
}

TEST_CASE("bad predictor options and inputs fail clearly", "[heads][errors]") {
  CHECK_THROWS_WITH(simsiam::Predictor(simsiam::PredictorOptions(16).hidden_features(0)),
                    Contains("simsiam::Predictor: expected positive widths"));
  CHECK_THROWS_WITH(simsiam::Predictor(simsiam::PredictorOptions(0)), Contains("in_features=0"));
  simsiam::Predictor predictor(simsiam::PredictorOptions(16).hidden_features(4));
  CHECK_THROWS_WITH(predictor->forward(torch::randn({5})),
                    Contains("expected input of shape [B, 16], got [5]"));
}
