// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `SimSiam<Backbone>`: any feature extractor plus the projector and predictor heads.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <type_traits>
#include <utility>
#include <vector>

#include "simsiam/detail/check.hpp"
#include "simsiam/heads/predictor.hpp"
#include "simsiam/heads/projector.hpp"

namespace simsiam {

/// Options of `SimSiam`; the defaults are the official ImageNet model (`builder.py`).
struct SimSiamOptions {
  /// Width of the backbone's features; unset asks the backbone's `feature_dim()`.
  TORCH_ARG(std::optional<int64_t>, feature_dim) = std::nullopt;
  /// Projector output d (`--dim`, 2048).
  TORCH_ARG(int64_t, dim) = 2048;
  /// Predictor bottleneck (`--pred-dim`, 512).
  TORCH_ARG(int64_t, pred_dim) = 512;
  /// Linear layers in the projector: 3 (ImageNet) or 2 (CIFAR variant).
  TORCH_ARG(int64_t, projector_layers) = 3;
};

/// What `SimSiam::forward` returns: predictions p and targets z of both views. z is not detached:
/// the loss applies the stop-gradient (`SymmetricLossOptions::stop_gradient`), in one place.
struct SimSiamOutput {
  torch::Tensor p1, p2, z1, z2;
};

namespace detail {

template <class B, class = void>
struct has_feature_dim : std::false_type {};
template <class B>
struct has_feature_dim<B, std::void_t<decltype(std::declval<B&>()->feature_dim())>>
    : std::true_type {};

template <class Backbone>
int64_t backbone_feature_dim(Backbone& backbone, const SimSiamOptions& options) {
  if (options.feature_dim()) return *options.feature_dim();
  if constexpr (has_feature_dim<Backbone>::value) {
    return backbone->feature_dim();
  } else {
    TORCH_CHECK(false,
                "simsiam::SimSiam: the backbone has no feature_dim(); set "
                "SimSiamOptions().feature_dim(<width of the backbone's output>)");
    return 0;
  }
}

}  // namespace detail

/// Siamese network of the paper (Fig. 1): encoder f = backbone + projector, predictor h.
/// `Backbone` is a module holder (e.g. `ResNet`, `ConvNet`, `torch::nn::Sequential`) whose forward
/// maps images to [B, feature_dim] features.
template <class Backbone>
class SimSiamImpl : public torch::nn::Module {
 public:
  /// Wraps `backbone` and builds the heads from `options`.
  explicit SimSiamImpl(Backbone backbone, const SimSiamOptions& options = {})
      : SimSiamImpl(
            backbone,
            Projector(ProjectorOptions(detail::backbone_feature_dim(backbone, options))
                          .out_features(options.dim())
                          .num_layers(options.projector_layers())),
            Predictor(PredictorOptions(options.dim()).hidden_features(options.pred_dim()))) {}

  /// Wraps the three parts as given, for heads of any shape.
  SimSiamImpl(Backbone backbone, Projector projector, Predictor predictor) {
    const auto z_dim = projector->options.out_features();
    TORCH_CHECK(
        predictor->options.in_features() == z_dim && predictor->spec().out_features == z_dim,
        "simsiam::SimSiam: expected the predictor to map the projector's output width ", z_dim,
        " to itself, got ", predictor->options.in_features(), " -> ",
        predictor->spec().out_features);
    backbone_ = register_module("backbone", std::move(backbone));
    projector_ = register_module("projector", std::move(projector));
    predictor_ = register_module("predictor", std::move(predictor));
  }

  /// Two views [B, ...] to {p1, p2, z1, z2}. The views go through the network in two separate
  /// passes, as the official code does: BN statistics are per view, and one pass over the
  /// concatenated batch would normalise both views together, which is a different model.
  SimSiamOutput forward(const torch::Tensor& x1, const torch::Tensor& x2) {
    TORCH_CHECK(x1.defined() && x2.defined() && x1.sizes() == x2.sizes(),
                "simsiam::SimSiam: expected two views of one shape, got x1 ",
                detail::shape_string(x1), " and x2 ", detail::shape_string(x2));
    auto z1 = encode(x1);
    auto z2 = encode(x2);
    auto p1 = predictor_->forward(z1);
    auto p2 = predictor_->forward(z2);
    return {std::move(p1), std::move(p2), std::move(z1), std::move(z2)};
  }

  /// z = projector(backbone(x)), not detached.
  torch::Tensor encode(const torch::Tensor& x) { return projector_->forward(features(x)); }

  /// Backbone features, the representation that kNN and linear evaluation use.
  torch::Tensor features(const torch::Tensor& x) { return backbone_->forward(x); }

  Backbone& backbone() { return backbone_; }
  Projector& projector() { return projector_; }
  Predictor& predictor() { return predictor_; }

  /// Parameters of the encoder f (backbone + projector), including frozen ones: the official
  /// optimiser gets all of them and SGD skips those without a gradient.
  std::vector<torch::Tensor> encoder_parameters() const {
    auto params = backbone_->parameters();
    for (auto& p : projector_->parameters()) params.push_back(p);
    return params;
  }

  /// Parameters of the predictor h, which `--fix-pred-lr` keeps at the initial learning rate.
  std::vector<torch::Tensor> predictor_parameters() const { return predictor_->parameters(); }

  void pretty_print(std::ostream& stream) const override { stream << "simsiam::SimSiam"; }

 private:
  Backbone backbone_{nullptr};
  Projector projector_{nullptr};
  Predictor predictor_{nullptr};
};

/// Holder for `SimSiamImpl<Backbone>`, used like any LibTorch module holder:
/// `simsiam::SimSiam<simsiam::ResNet> model(simsiam::resnet50());`.
template <class Backbone>
class SimSiam : public torch::nn::ModuleHolder<SimSiamImpl<Backbone>> {
 public:
  using torch::nn::ModuleHolder<SimSiamImpl<Backbone>>::ModuleHolder;
  using Impl = SimSiamImpl<Backbone>;
};

}  // namespace simsiam
