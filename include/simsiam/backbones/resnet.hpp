// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief ResNet-18/34/50/101/152 with torchvision's parameter names, as SimSiam's backbone.
///
/// Module and parameter names, shapes and initialisation follow `torchvision.models.resnet`
/// (v0.14) exactly, so a state dict can move between this and PyTorch by name. The pooled feature
/// vector is the output when `num_classes` is 0 (the SimSiam use: the projector replaces fc).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "simsiam/distributed/sync_batch_norm.hpp"

namespace simsiam {

/// Residual block type: BasicBlock (ResNet-18/34) or Bottleneck (ResNet-50 and deeper).
enum class ResNetBlock { kBasic, kBottleneck };

/// The first layers: ImageNet (7x7/2 conv + 3x3/2 max-pool) or CIFAR (3x3/1 conv, no pool),
/// the latter as in the paper's CIFAR experiments (Appendix D, "ResNet-18 variant").
enum class ResNetStem { kImageNet, kCifar };

/// Options of `ResNet`; `ResNetOptions(50)` is torchvision's `resnet50` as SimSiam builds it.
struct ResNetOptions {
  /// Depth 18, 34, 50, 101 or 152 picks torchvision's block type and layer counts.
  explicit ResNetOptions(int64_t depth) {
    switch (depth) {
      case 18:
        block_ = ResNetBlock::kBasic, layers_ = {2, 2, 2, 2};
        break;
      case 34:
        block_ = ResNetBlock::kBasic, layers_ = {3, 4, 6, 3};
        break;
      case 50:
        block_ = ResNetBlock::kBottleneck, layers_ = {3, 4, 6, 3};
        break;
      case 101:
        block_ = ResNetBlock::kBottleneck, layers_ = {3, 4, 23, 3};
        break;
      case 152:
        block_ = ResNetBlock::kBottleneck, layers_ = {3, 8, 36, 3};
        break;
      default:
        TORCH_CHECK(false, "simsiam::ResNetOptions: expected depth 18, 34, 50, 101 or 152, got ",
                    depth);
    }
  }
  /// Any block type and number of blocks per stage (four stages).
  ResNetOptions(ResNetBlock block, std::vector<int64_t> layers)
      : block_(block), layers_(std::move(layers)) {}

  /// BasicBlock or Bottleneck.
  TORCH_ARG(ResNetBlock, block);
  /// Blocks in each of the four stages.
  TORCH_ARG(std::vector<int64_t>, layers);
  /// Width of the fc classifier; 0 leaves fc out and returns the pooled features.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// Zero the last BN gamma of each residual block, so blocks start as identities
  /// (Goyal et al. 2017). The official SimSiam builds its encoder with `zero_init_residual=True`;
  /// torchvision's default is false.
  TORCH_ARG(bool, zero_init_residual) = true;
  /// ImageNet or CIFAR stem.
  TORCH_ARG(ResNetStem, stem) = ResNetStem::kImageNet;
  /// Input channels (3 for RGB).
  TORCH_ARG(int64_t, in_channels) = 3;
};

namespace detail {

/// torchvision's conv3x3 / conv1x1: no bias, padding keeps the size at stride 1.
inline torch::nn::Conv2d resnet_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

/// torchvision's shortcut projection (conv1x1 + BN), registered as "downsample" only when the
/// block changes the resolution or the width; otherwise the shortcut is the identity.
inline torch::nn::Sequential register_downsample(torch::nn::Module& block, int64_t in, int64_t out,
                                                 int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return block.register_module(
      "downsample",
      torch::nn::Sequential(resnet_conv(in, out, 1, stride), distributed::SyncBatchNorm(out)));
}

}  // namespace detail

/// torchvision's `BasicBlock`: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.
class BasicBlockImpl : public torch::nn::Cloneable<BasicBlockImpl> {
 public:
  /// Output channels are `planes` (expansion 1).
  static constexpr int64_t kExpansion = 1;

  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride)
      : inplanes_(inplanes), planes_(planes), stride_(stride) {
    reset();
  }

  void reset() override {
    conv1 = register_module("conv1", detail::resnet_conv(inplanes_, planes_, 3, stride_));
    bn1 = register_module("bn1", distributed::SyncBatchNorm(planes_));
    conv2 = register_module("conv2", detail::resnet_conv(planes_, planes_, 3, 1));
    bn2 = register_module("bn2", distributed::SyncBatchNorm(planes_));
    downsample = detail::register_downsample(*this, inplanes_, planes_ * kExpansion, stride_);
  }

  // In-place ReLUs and residual sum, as torchvision: BN's backward needs its input, not its
  // output, so this saves two activations per block without changing a value.
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out));
    return out.add_(downsample ? downsample->forward(x) : x).relu_();
  }

  /// The BN whose gamma `zero_init_residual` zeroes.
  distributed::SyncBatchNorm& last_bn() { return bn2; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  distributed::SyncBatchNorm bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  int64_t inplanes_, planes_, stride_;
};
TORCH_MODULE(BasicBlock);

/// torchvision's `Bottleneck` (ResNet v1.5: the stride is on the 3x3 conv).
class BottleneckImpl : public torch::nn::Cloneable<BottleneckImpl> {
 public:
  /// Output channels are 4 * `planes`.
  static constexpr int64_t kExpansion = 4;

  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride)
      : inplanes_(inplanes), planes_(planes), stride_(stride) {
    reset();
  }

  void reset() override {
    conv1 = register_module("conv1", detail::resnet_conv(inplanes_, planes_, 1, 1));
    bn1 = register_module("bn1", distributed::SyncBatchNorm(planes_));
    conv2 = register_module("conv2", detail::resnet_conv(planes_, planes_, 3, stride_));
    bn2 = register_module("bn2", distributed::SyncBatchNorm(planes_));
    conv3 = register_module("conv3", detail::resnet_conv(planes_, planes_ * kExpansion, 1, 1));
    bn3 = register_module("bn3", distributed::SyncBatchNorm(planes_ * kExpansion));
    downsample = detail::register_downsample(*this, inplanes_, planes_ * kExpansion, stride_);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out)).relu_();
    out = bn3(conv3(out));
    return out.add_(downsample ? downsample->forward(x) : x).relu_();
  }

  /// The BN whose gamma `zero_init_residual` zeroes.
  distributed::SyncBatchNorm& last_bn() { return bn3; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  distributed::SyncBatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  int64_t inplanes_, planes_, stride_;
};
TORCH_MODULE(Bottleneck);

/// ResNet as in torchvision: conv1 bn1 relu [maxpool] layer1..layer4 avgpool [fc].
class ResNetImpl : public torch::nn::Cloneable<ResNetImpl> {
 public:
  explicit ResNetImpl(ResNetOptions options) : options(std::move(options)) { reset(); }

  void reset() override {
    TORCH_CHECK(options.layers().size() == 4 &&
                    std::all_of(options.layers().begin(), options.layers().end(),
                                [](int64_t n) { return n >= 1; }),
                "simsiam::ResNet: expected 4 stages of at least one block each, got ",
                torch::IntArrayRef(options.layers()));
    TORCH_CHECK(options.in_channels() > 0 && options.num_classes() >= 0,
                "simsiam::ResNet: expected in_channels > 0 and num_classes >= 0, got in_channels=",
                options.in_channels(), ", num_classes=", options.num_classes());
    const bool cifar = options.stem() == ResNetStem::kCifar;
    conv1 = register_module(
        "conv1", cifar ? detail::resnet_conv(options.in_channels(), 64, 3, 1)
                       : torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), 64, 7)
                                               .stride(2)
                                               .padding(3)
                                               .bias(false)));
    bn1 = register_module("bn1", distributed::SyncBatchNorm(64));
    inplanes_ = 64;
    const int64_t widths[] = {64, 128, 256, 512};
    for (int64_t stage = 0; stage < 4; ++stage) {
      stages_[stage] =
          register_module("layer" + std::to_string(stage + 1),
                          make_stage(widths[stage], options.layers()[stage], stage == 0 ? 1 : 2));
    }
    if (options.num_classes() > 0) {
      fc = register_module("fc", torch::nn::Linear(feature_dim(), options.num_classes()));
    }
    initialize();
  }

  /// Images [B, C, H, W] to pooled features [B, feature_dim()] (or logits when fc is present).
  torch::Tensor forward(torch::Tensor x) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(),
                "simsiam::ResNet: expected images of shape [B, ", options.in_channels(),
                ", H, W], got ", x.sizes());
    x = bn1(conv1(x)).relu_();
    if (options.stem() == ResNetStem::kImageNet) {
      x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
    }
    for (auto& stage : stages_) x = stage->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc ? fc(x) : x;
  }

  /// Width of the pooled features: 512 for ResNet-18/34, 2048 for ResNet-50 and deeper.
  int64_t feature_dim() const { return 512 * expansion(); }

  void pretty_print(std::ostream& stream) const override {
    stream << "simsiam::ResNet(block="
           << (options.block() == ResNetBlock::kBasic ? "basic" : "bottleneck")
           << ", layers=" << torch::IntArrayRef(options.layers())
           << ", stem=" << (options.stem() == ResNetStem::kCifar ? "cifar" : "imagenet")
           << ", num_classes=" << options.num_classes() << ")";
  }

  /// The options the network was built with.
  ResNetOptions options;

  torch::nn::Conv2d conv1{nullptr};
  distributed::SyncBatchNorm bn1{nullptr};
  torch::nn::Linear fc{nullptr};

  /// Stages layer1..layer4.
  const std::array<torch::nn::Sequential, 4>& stages() const { return stages_; }

 private:
  int64_t expansion() const {
    return options.block() == ResNetBlock::kBasic ? BasicBlockImpl::kExpansion
                                                  : BottleneckImpl::kExpansion;
  }

  torch::nn::Sequential make_stage(int64_t planes, int64_t blocks, int64_t stride) {
    torch::nn::Sequential stage;
    for (int64_t i = 0; i < blocks; ++i) {
      if (options.block() == ResNetBlock::kBasic) {
        stage->push_back(BasicBlock(inplanes_, planes, i == 0 ? stride : 1));
      } else {
        stage->push_back(Bottleneck(inplanes_, planes, i == 0 ? stride : 1));
      }
      inplanes_ = planes * expansion();
    }
    return stage;
  }

  /// torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convs, BN gamma 1 beta 0,
  /// and with `zero_init_residual` the last BN gamma of each block 0. fc keeps Linear's default.
  void initialize() {
    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = module->as<distributed::SyncBatchNorm>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      }
    }
    if (!options.zero_init_residual()) return;
    for (auto& stage : stages_) {
      for (auto& block : stage->children()) {
        if (auto* basic = block->as<BasicBlock>())
          torch::nn::init::zeros_(basic->last_bn()->weight);
        if (auto* bottleneck = block->as<Bottleneck>()) {
          torch::nn::init::zeros_(bottleneck->last_bn()->weight);
        }
      }
    }
  }

  std::array<torch::nn::Sequential, 4> stages_{nullptr, nullptr, nullptr, nullptr};
  int64_t inplanes_ = 64;
};
TORCH_MODULE(ResNet);

/// torchvision-equivalent constructors; `stem` picks the ImageNet or CIFAR first layers.
inline ResNet resnet18(ResNetStem stem = ResNetStem::kImageNet) {
  return ResNet(ResNetOptions(18).stem(stem));
}
inline ResNet resnet34(ResNetStem stem = ResNetStem::kImageNet) {
  return ResNet(ResNetOptions(34).stem(stem));
}
inline ResNet resnet50(ResNetStem stem = ResNetStem::kImageNet) {
  return ResNet(ResNetOptions(50).stem(stem));
}
inline ResNet resnet101(ResNetStem stem = ResNetStem::kImageNet) {
  return ResNet(ResNetOptions(101).stem(stem));
}

}  // namespace simsiam
