// SPDX-License-Identifier: BSD-3-Clause
// Projector: the official builder.py layer stack, names, frozen bias, options and errors.
#include "simsiam/heads/projector.hpp"

#include "support/catch.hpp"

#include "support/fixtures.hpp"

namespace {

std::vector<std::pair<std::string, std::vector<int64_t>>> named_shapes(torch::nn::Module& m) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value().sizes().vec());
  return out;
}

}  // namespace

TEST_CASE("default projector is the official 3-layer head", "[heads]") {
  simsiam::Projector projector(2048);
  using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;
  // encoder.fc of builder.py: 0 Linear, 1 BN, 2 ReLU, 3 Linear, 4 BN, 5 ReLU, 6 Linear, 7 BN.
  CHECK((named_shapes(*projector) == Shapes{{"0.weight", {2048, 2048}},
                                            {"1.weight", {2048}},
                                            {"1.bias", {2048}},
                                            {"3.weight", {2048, 2048}},
                                            {"4.weight", {2048}},
                                            {"4.bias", {2048}},
                                            {"6.weight", {2048, 2048}},
                                            {"6.bias", {2048}}}));
  auto output_bn = projector->named_modules()["7"]->as<simsiam::distributed::SyncBatchNorm>();
  REQUIRE(output_bn != nullptr);
  CHECK_FALSE(output_bn->options.affine());
  CHECK(projector->named_buffers().contains("7.running_mean"));
  CHECK_FALSE(projector->named_parameters()["6.bias"].requires_grad());
  CHECK(projector->named_parameters()["6.weight"].requires_grad());
}

TEST_CASE("CIFAR projector has 2 layers and configurable widths", "[heads]") {
  simsiam::Projector projector(
      simsiam::ProjectorOptions(512).num_layers(2).hidden_features(256).out_features(128));
  const auto params = projector->named_parameters();
  CHECK(params.size() == 5);  // 0.weight, 1.weight, 1.bias, 3.weight, 3.bias
  CHECK(params["0.weight"].sizes() == torch::IntArrayRef({256, 512}));
  CHECK(params["3.weight"].sizes() == torch::IntArrayRef({128, 256}));
  CHECK(projector->forward(torch::randn({4, 512})).sizes() == torch::IntArrayRef({4, 128}));
}

TEST_CASE("projector without output BN keeps a trainable last bias", "[heads]") {
  simsiam::Projector projector(
      simsiam::ProjectorOptions(8).out_features(4).output_batch_norm(false));
  const auto params = projector->named_parameters();
  CHECK(params["6.bias"].requires_grad());
  CHECK_FALSE(projector->named_modules().contains("7"));
}

TEST_CASE("projector without hidden BN puts biases on hidden layers (ablation)", "[heads]") {
  simsiam::Projector projector(
      simsiam::ProjectorOptions(8).out_features(4).hidden_batch_norm(false));
  const auto params = projector->named_parameters();
  CHECK(params.contains("0.bias"));  // Linear ReLU Linear ReLU Linear BN -> 0, 2, 4, 5
  CHECK(params.contains("2.bias"));
  CHECK_FALSE(params["4.bias"].requires_grad());
}

TEST_CASE("frozen projector bias gets no gradient and no SGD update", "[heads]") {
  simsiam::Projector projector(simsiam::ProjectorOptions(8).out_features(6));
  const auto bias_before = projector->named_parameters()["6.bias"].clone();
  torch::optim::SGD sgd(projector->parameters(),
                        torch::optim::SGDOptions(0.5).momentum(0.9).weight_decay(1e-4));
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    projector->forward(torch::randn({16, 8})).pow(3).sum().backward();
    sgd.step();
  }
  const auto bias = projector->named_parameters()["6.bias"];
  CHECK_FALSE(bias.grad().defined());
  CHECK(torch::equal(bias, bias_before));
}

TEST_CASE("bad projector options and inputs fail clearly", "[heads][errors]") {
  CHECK_THROWS_WITH(simsiam::Projector(simsiam::ProjectorOptions(8).num_layers(0)),
                    Contains("simsiam::Projector: expected num_layers >= 1, got 0"));
  CHECK_THROWS_WITH(simsiam::Projector(simsiam::ProjectorOptions(8).out_features(0)),
                    Contains("expected positive widths, got in_features=8, "
                             "hidden_features=8, out_features=0"));
  CHECK_THROWS_WITH(simsiam::Projector(simsiam::ProjectorOptions(8).hidden_features(0)),
                    Contains("hidden_features=0"));
  simsiam::Projector projector(simsiam::ProjectorOptions(8).out_features(4));
  CHECK_THROWS_WITH(projector->forward(torch::randn({4, 6})),
                    Contains("simsiam::Projector: expected input of shape [B, 8], got [4, 6]"));
}

TEST_CASE("projector clones into an independent copy", "[heads]") {
  simsiam::Projector projector(simsiam::ProjectorOptions(8).out_features(4));
  auto copy = std::dynamic_pointer_cast<simsiam::ProjectorImpl>(projector->clone());
  REQUIRE(copy);
  CHECK(copy->named_parameters().keys() == projector->named_parameters().keys());
  CHECK_FALSE(copy->named_parameters()["6.bias"].requires_grad());
  torch::NoGradGuard no_grad;
  copy->named_parameters()["0.weight"].fill_(1.0);
  CHECK_FALSE(torch::equal(copy->named_parameters()["0.weight"],
                           projector->named_parameters()["0.weight"]));
}
