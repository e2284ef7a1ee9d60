// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief A small, fast convolutional backbone for CPU experiments (the quick start).
///
/// ResNets are the paper's backbones but cost ~1.8 GFLOPs (ResNet-18) per 224x224 image; on a
/// laptop CPU the quick start needs something a hundred times cheaper that still has BN after
/// every conv, which SimSiam's dynamics rely on (paper Sec. 4.3).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "simsiam/distributed/sync_batch_norm.hpp"

namespace simsiam {

/// Options of `ConvNet`.
struct ConvNetOptions {
  /* implicit */ ConvNetOptions(int64_t in_channels = 1) : in_channels_(in_channels) {}

  /// Input channels (1 for Fashion-MNIST, 3 for RGB).
  TORCH_ARG(int64_t, in_channels);
  /// Output channels of each stage; every stage halves the resolution (28 -> 14 -> 7 -> 4 -> 2).
  TORCH_ARG(std::vector<int64_t>, widths) = std::vector<int64_t>{32, 64, 128, 256};
};

/// Stages of conv3x3/2-BN-ReLU, then global average pooling. All convolutions are strided: on
/// CPU, stride-1 3x3 convolutions at full resolution cost several times more than the rest of
/// the network together, for little gain on 28x28 images.
class ConvNetImpl : public torch::nn::Cloneable<ConvNetImpl> {
 public:
  explicit ConvNetImpl(ConvNetOptions options = {}) : options(std::move(options)) { reset(); }

  void reset() override {
    const auto& widths = options.widths();
    TORCH_CHECK(!widths.empty() && options.in_channels() > 0 &&
                    std::all_of(widths.begin(), widths.end(), [](int64_t w) { return w > 0; }),
                "simsiam::ConvNet: expected in_channels > 0 and a non-empty list of positive "
                "widths, got in_channels=",
                options.in_channels(), ", widths=", torch::IntArrayRef(widths));
    stages_.clear();
    int64_t in = options.in_channels();
    for (size_t i = 0; i < widths.size(); ++i) {
      torch::nn::Sequential stage(
          torch::nn::Conv2d(
              torch::nn::Conv2dOptions(in, widths[i], 3).stride(2).padding(1).bias(false)),
          distributed::SyncBatchNorm(widths[i]), torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      stages_.push_back(register_module("stage" + std::to_string(i + 1), stage));
      in = widths[i];
    }
    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      }
    }
  }

  /// Images [B, C, H, W] to pooled features [B, feature_dim()].
  torch::Tensor forward(const torch::Tensor& x) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(),
                "simsiam::ConvNet: expected images of shape [B, ", options.in_channels(),
                ", H, W], got ", x.sizes());
    auto out = x;
    for (auto& stage : stages_) out = stage->forward(out);
    return torch::adaptive_avg_pool2d(out, {1, 1}).flatten(1);
  }

  /// Width of the pooled features: the last stage's width.
  int64_t feature_dim() const { return options.widths().back(); }

  void pretty_print(std::ostream& stream) const override {
    stream << "simsiam::ConvNet(in_channels=" << options.in_channels()
           << ", widths=" << torch::IntArrayRef(options.widths()) << ")";
  }

  /// The options the network was built with.
  ConvNetOptions options;

 private:
  std::vector<torch::nn::Sequential> stages_;
};
TORCH_MODULE(ConvNet);

}  // namespace simsiam
