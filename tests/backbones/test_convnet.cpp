// SPDX-License-Identifier: BSD-3-Clause
// ConvNet: the quick start's small backbone.
#include "simsiam/backbones/convnet.hpp"

#include "support/catch.hpp"

TEST_CASE("ConvNet maps images to feature_dim() features with BN after every conv", "[convnet]") {
  simsiam::ConvNet net(simsiam::ConvNetOptions(1).widths({8, 16, 24}));
  CHECK(net->feature_dim() == 24);
  CHECK(net->forward(torch::randn({5, 1, 28, 28})).sizes() == torch::IntArrayRef({5, 24}));
  size_t convs = 0, norms = 0;
  for (const auto& m : net->modules(false)) {
    convs += m->as<torch::nn::Conv2d>() != nullptr;
    norms += m->as<simsiam::distributed::SyncBatchNorm>() != nullptr;
  }
  CHECK(convs == 3);
  CHECK(norms == 3);
  CHECK(net->named_parameters().contains("stage3.0.weight"));
}

TEST_CASE("bad ConvNet options and inputs fail clearly", "[convnet][errors]") {
  CHECK_THROWS_WITH(simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({})),
                    Contains("expected in_channels > 0 and a non-empty list of positive widths"));
  CHECK_THROWS_WITH(simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({8, 0})),
                    Contains("widths=[8, 0]"));
  simsiam::ConvNet net;
  CHECK_THROWS_WITH(net->forward(torch::randn({2, 3, 28, 28})),
                    Contains("expected images of shape [B, 1, H, W], got [2, 3, 28, 28]"));
}
