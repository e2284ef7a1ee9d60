// SPDX-License-Identifier: BSD-3-Clause
// ResNets against torchvision 0.14: names, shapes, counts, initialisation, forward and backward.
#include "simsiam/backbones/resnet.hpp"

#include "support/catch.hpp"

#include "support/fixtures.hpp"

namespace {

using simsiam::testing::core_fixtures;
using simsiam::testing::det_fill;
using simsiam::testing::tensor_of;

using NamedShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

template <class Items>
NamedShapes named_shapes(const Items& items) {
  NamedShapes out;
  for (const auto& item : items) out.emplace_back(item.key(), item.value().sizes().vec());
  return out;
}

NamedShapes fixture_shapes(const nlohmann::json& list) {
  NamedShapes out;
  for (const auto& entry : list) {
    out.emplace_back(entry.at(0).get<std::string>(), entry.at(1).get<std::vector<int64_t>>());
  }
  return out;
}

}  // namespace

TEST_CASE("ResNet parameter and buffer names, shapes and counts equal torchvision's", "[resnet]") {
  for (const int depth : {18, 34, 50, 101}) {
    INFO("resnet" << depth);
    const auto& expected =
        core_fixtures().at("resnet_structure").at("resnet" + std::to_string(depth));
    simsiam::ResNet net{simsiam::ResNetOptions(depth)};
    CHECK(named_shapes(net->named_parameters()) == fixture_shapes(expected.at("parameters")));
    CHECK(named_shapes(net->named_buffers()) == fixture_shapes(expected.at("buffers")));
    int64_t count = 0;
    for (const auto& p : net->parameters()) count += p.numel();
    CHECK(count == expected.at("count").get<int64_t>());
  }
}

TEST_CASE("ResNet-50 without fc has 23,508,032 parameters, 25,557,032 with a 1000-way fc",
          "[resnet]") {
  const auto count = [](simsiam::ResNet net) {
    int64_t n = 0;
    for (const auto& p : net->parameters()) n += p.numel();
    return n;
  };
  CHECK(count(simsiam::resnet50()) == 23508032);
  CHECK(count(simsiam::ResNet(simsiam::ResNetOptions(50).num_classes(1000))) == 25557032);
  CHECK(simsiam::resnet50()->feature_dim() == 2048);
  CHECK(simsiam::resnet18()->feature_dim() == 512);
}

TEST_CASE("zero_init_residual zeroes the last BN gamma of every block and nothing else",
          "[resnet]") {
  for (const int depth : {18, 50}) {
    INFO("resnet" << depth);
    const std::string last_bn = depth == 18 ? ".bn2.weight" : ".bn3.weight";
    simsiam::ResNet net{simsiam::ResNetOptions(depth)};
    size_t zeroed = 0;
    for (const auto& p : net->named_parameters()) {
      const auto& name = p.key();
      const bool is_last_bn =
          name.size() > last_bn.size() &&
          name.compare(name.size() - last_bn.size(), last_bn.size(), last_bn) == 0;
      if (is_last_bn) {
        CHECK(p.value().abs().max().item<float>() == 0.0f);
        ++zeroed;
      } else if (name.find("bn") != std::string::npos &&
                 name.find(".weight") != std::string::npos) {
        CHECK(p.value().min().item<float>() == 1.0f);
      }
    }
    CHECK(zeroed == (depth == 18 ? 8u : 16u));
    simsiam::ResNet plain{simsiam::ResNetOptions(depth).zero_init_residual(false)};
    CHECK(plain->named_parameters()["layer1.0" + last_bn].min().item<float>() == 1.0f);
  }
}

TEST_CASE("ResNet convolutions follow torchvision's Kaiming-normal fan-out init", "[resnet]") {
  torch::manual_seed(0);
  auto net = simsiam::resnet50();
  const auto w = net->named_parameters()["layer3.0.conv2.weight"];  // 256 x 256 x 3 x 3
  const double expected_std = std::sqrt(2.0 / (256 * 9));
  CHECK(w.std().item<double>() == Approx(expected_std).epsilon(0.02));
  CHECK(std::abs(w.mean().item<double>()) < 1e-3);
}

TEST_CASE("ResNet forward and backward equal torchvision's", "[resnet]") {
  struct Case {
    const char* name;
    int depth;
    simsiam::ResNetStem stem;
  };
  for (const Case& c : {Case{"resnet18_cifar", 18, simsiam::ResNetStem::kCifar},
                        Case{"resnet18_imagenet", 18, simsiam::ResNetStem::kImageNet},
                        Case{"resnet50_imagenet", 50, simsiam::ResNetStem::kImageNet}}) {
    INFO(c.name);
    const auto& expected = core_fixtures().at("resnet_forward").at(c.name);
    simsiam::ResNet net(simsiam::ResNetOptions(c.depth).stem(c.stem));
    net->to(torch::kDouble);  // float64 fixture: independent of the BLAS's summation order
    simsiam::testing::fill_named(*net, 0.1);
    net->train();
    const int64_t size = expected.at("input_size").get<int64_t>();
    const auto features = net->forward(det_fill({2, 3, size, size}, 0.2, 1.0));
    const auto reference = tensor_of(expected.at("features"));
    CHECK_TENSOR_NEAR(features, reference, 1e-9 * (1.0 + reference.abs().max().item<double>()));
    (features * det_fill(features.sizes().vec(), 1.7, 1.0)).sum().backward();
    for (const auto& p : net->named_parameters()) {
      INFO("gradient of " << p.key());
      const auto grad = p.value().grad().to(torch::kDouble);
      const double sum = expected.at("grad_sum").at(p.key()).get<double>();
      const double sq = expected.at("grad_sq").at(p.key()).get<double>();
      CHECK(grad.sum().item<double>() == Approx(sum).margin(1e-9 * (1.0 + std::sqrt(sq))));
      CHECK(grad.pow(2).sum().item<double>() == Approx(sq).epsilon(1e-9).margin(1e-15));
    }
  }
}

TEST_CASE("CIFAR stem keeps 32x32 inputs at full resolution until layer2", "[resnet]") {
  auto net = simsiam::resnet18(simsiam::ResNetStem::kCifar);
  CHECK(net->conv1->options.kernel_size()->at(0) == 3);
  CHECK(net->conv1->options.stride()->at(0) == 1);
  CHECK(net->forward(torch::randn({2, 3, 32, 32})).sizes() == torch::IntArrayRef({2, 512}));
}

TEST_CASE("bad ResNet options and inputs fail clearly", "[resnet][errors]") {
  CHECK_THROWS_WITH(simsiam::ResNetOptions(20),
                    Contains("expected depth 18, 34, 50, 101 or 152, got 20"));
  CHECK_THROWS_WITH(
      simsiam::ResNet(simsiam::ResNetOptions(simsiam::ResNetBlock::kBasic, {2, 2, 2})),
      Contains("expected 4 stages of at least one block each, got [2, 2, 2]"));
  auto net = simsiam::resnet18();
  CHECK_THROWS_WITH(net->forward(torch::randn({2, 1, 32, 32})),
                    Contains("expected images of shape [B, 3, H, W], got [2, 1, 32, 32]"));
}
