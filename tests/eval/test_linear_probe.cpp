// SPDX-License-Identifier: BSD-3-Clause
// The linear probe: the official classifier initialisation, top-k accuracy, and a problem with
// a known answer.
#include "simsiam/eval/linear_probe.hpp"

#include "support/catch.hpp"

#include "simsiam/eval/features.hpp"

TEST_CASE("the probe's classifier is initialised N(0, 0.01) with zero bias", "[eval][probe]") {
  torch::manual_seed(0);
  const auto fc = simsiam::make_linear_classifier(512, 100);
  CHECK(fc->weight.std().item<double>() == Approx(0.01).epsilon(0.02));
  CHECK(fc->weight.mean().item<double>() == Approx(0.0).margin(2e-4));
  CHECK(torch::equal(fc->bias, torch::zeros({100})));
  CHECK_THROWS_WITH(simsiam::make_linear_classifier(0, 10), Contains("in_features > 0"));
}

TEST_CASE("topk_accuracy counts labels among the k highest logits", "[eval][probe]") {
  const auto logits = torch::tensor({{0.1, 0.5, 0.4}, {0.9, 0.05, 0.05}, {0.2, 0.3, 0.5}});
  const auto labels = torch::tensor({2L, 0L, 0L});
  CHECK(simsiam::topk_accuracy(logits, labels, 1) == Approx(1.0 / 3));
  CHECK(simsiam::topk_accuracy(logits, labels, 2) == Approx(2.0 / 3));
  CHECK(simsiam::topk_accuracy(logits, labels, 5) == Approx(1.0));  // capped at 3 classes
  CHECK_THROWS_WITH(simsiam::topk_accuracy(logits, torch::tensor({1L}), 1),
                    Contains("expected logits [N, C] and labels [N]"));
}

TEST_CASE("the probe separates linearly separable classes, with LARS and with SGD",
          "[eval][probe]") {
  // Four classes at the corners of a 16-d simplex, noise 0.1: a linear classifier is exact.
  auto generator = at::detail::createCPUGenerator(3);
  const auto centres = torch::eye(16).slice(0, 0, 4) * 3;
  auto make = [&](int64_t n) {
    const auto labels = torch::randint(0, 4, {n}, generator, torch::kLong);
    const auto features = centres.index_select(0, labels) + 0.1 * torch::randn({n, 16}, generator);
    return std::make_pair(features, labels);
  };
  const auto [train_x, train_y] = make(512);
  const auto [test_x, test_y] = make(256);
  // LARS moves each weight by about lr x trust (0.001) x 10 (momentum) of its norm per step: at
  // lr 10 that is 10% of the small N(0, 0.01) initial weights, enough in 240 steps.
  for (const auto optimizer : {simsiam::ProbeOptimizer::kLars, simsiam::ProbeOptimizer::kSgd}) {
    INFO("LARS " << (optimizer == simsiam::ProbeOptimizer::kLars));
    const auto result = simsiam::linear_probe(
        train_x, train_y, test_x, test_y, 4,
        simsiam::LinearProbeOptions().epochs(30).batch_size(64).optimizer(optimizer).base_lr(
            optimizer == simsiam::ProbeOptimizer::kLars ? 40.0 : 0.5));
    CHECK(result.top1 == 1.0);
    CHECK(result.top5 == 1.0);
    CHECK(result.classifier->weight.sizes() == torch::IntArrayRef({4, 16}));
  }
  // Random labels cannot be learnt: chance level on the test set.
  const auto shuffled = torch::randint(0, 4, {256}, generator, torch::kLong);
  const auto chance = simsiam::linear_probe(train_x, train_y, test_x, shuffled, 4,
                                            simsiam::LinearProbeOptions().epochs(5).batch_size(64));
  CHECK(chance.top1 < 0.45);
  CHECK_THROWS_WITH(simsiam::linear_probe(train_x, train_y, test_x, test_y, 4,
                                          simsiam::LinearProbeOptions().epochs(0)),
                    Contains("expected epochs > 0"));
  CHECK_THROWS_WITH(simsiam::linear_probe(train_x, train_y.slice(0, 0, 10), test_x, test_y, 4),
                    Contains("one label per feature row"));
}

TEST_CASE("extract_features runs in eval mode in batches and restores the mode",
          "[eval][features]") {
  torch::nn::Sequential net(torch::nn::Linear(3, 4), torch::nn::BatchNorm1d(4));
  net->train();
  const auto x = torch::randn({10, 3});
  const auto all = simsiam::extract_features(
      *net, [&](const torch::Tensor& b) { return net->forward(b); }, x,
      simsiam::FeatureOptions().batch_size(3));
  CHECK(net->is_training());
  net->eval();
  CHECK(torch::allclose(all, net->forward(x)));  // running statistics, batch by batch
  CHECK(all.sizes() == torch::IntArrayRef({10, 4}));
  CHECK_THROWS_WITH(simsiam::extract_features(
                        *net, [&](const torch::Tensor& b) { return b; }, torch::Tensor()),
                    Contains("expected a non-empty batch of images"));
}
