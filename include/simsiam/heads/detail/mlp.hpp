// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal: the Linear/BN/ReLU stack shared by the projector and the predictor.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "simsiam/detail/check.hpp"
#include "simsiam/distributed/sync_batch_norm.hpp"

namespace simsiam::detail {

/// Shape of an MLP head, validated by `build_mlp`.
struct MlpSpec {
  const char* name;  ///< "simsiam::Projector" or "simsiam::Predictor", for messages.
  int64_t in_features;
  int64_t hidden_features;
  int64_t out_features;
  int64_t num_layers;
  bool hidden_batch_norm;
  bool output_batch_norm;
};

/// Freezes the bias of the last Linear when an output BN follows it (see `build_mlp`).
inline void freeze_output_bias(const MlpSpec& spec, torch::nn::Sequential& layers) {
  if (!spec.output_batch_norm) return;
  const auto last = layers->ptr(layers->size() - 2);
  last->as<torch::nn::Linear>()->bias.set_requires_grad(false);
}

/// Builds the layers as `nn.Sequential` does in the official `builder.py`, so that child names
/// ("0", "1", ...) and thus parameter names match the official state dict: each hidden layer is
/// Linear(bias = !hidden_batch_norm) [BN] ReLU; the output layer is Linear(bias=true) followed by
/// BatchNorm1d(affine=false) when `output_batch_norm`. Its bias is then frozen: the BN that
/// follows removes any constant, so the official code sets `requires_grad = False` on it.
inline torch::nn::Sequential build_mlp(const MlpSpec& spec) {
  TORCH_CHECK(spec.num_layers >= 1, spec.name, ": expected num_layers >= 1, got ", spec.num_layers);
  TORCH_CHECK(spec.in_features > 0 && spec.hidden_features > 0 && spec.out_features > 0, spec.name,
              ": expected positive widths, got in_features=", spec.in_features,
              ", hidden_features=", spec.hidden_features, ", out_features=", spec.out_features);
  torch::nn::Sequential layers;
  int64_t width = spec.in_features;
  for (int64_t i = 0; i + 1 < spec.num_layers; ++i) {
    layers->push_back(torch::nn::Linear(
        torch::nn::LinearOptions(width, spec.hidden_features).bias(!spec.hidden_batch_norm)));
    if (spec.hidden_batch_norm) layers->push_back(distributed::SyncBatchNorm(spec.hidden_features));
    layers->push_back(torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)));
    width = spec.hidden_features;
  }
  layers->push_back(
      torch::nn::Linear(torch::nn::LinearOptions(width, spec.out_features).bias(true)));
  if (spec.output_batch_norm) {
    layers->push_back(distributed::SyncBatchNorm(
        distributed::SyncBatchNormOptions(spec.out_features).affine(false)));
  }
  freeze_output_bias(spec, layers);
  return layers;
}

/// Registers the children of `layers` on `owner` under their own names ("0", "1", ...).
inline void register_layers(torch::nn::Module& owner, const torch::nn::Sequential& layers) {
  for (const auto& child : layers->named_children())
    owner.register_module(child.key(), child.value());
}

/// Checks that a head's input is [B, in_features] and runs it.
inline torch::Tensor forward_mlp(const MlpSpec& spec, torch::nn::Sequential& layers,
                                 const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == spec.in_features, spec.name,
              ": expected input of shape [B, ", spec.in_features, "], got ", shape_string(x));
  return layers->forward(x);
}

/// "in_features=.., hidden_features=.., ..." for `pretty_print`.
inline std::string describe_mlp(const MlpSpec& spec) {
  std::ostringstream out;
  out << spec.name << "(in_features=" << spec.in_features
      << ", hidden_features=" << spec.hidden_features << ", out_features=" << spec.out_features
      << ", num_layers=" << spec.num_layers
      << ", hidden_batch_norm=" << (spec.hidden_batch_norm ? "true" : "false")
      << ", output_batch_norm=" << (spec.output_batch_norm ? "true" : "false") << ")";
  return out.str();
}

}  // namespace simsiam::detail

namespace simsiam::detail {

/// CRTP base of `ProjectorImpl` and `PredictorImpl`: both are an MLP described by an `MlpSpec`
/// that the derived class computes from its own options (`Derived::spec()`).
template <class Derived>
class MlpHead : public torch::nn::Cloneable<Derived> {
 public:
  void reset() override {
    layers_ = build_mlp(derived().spec());
    register_layers(*this, layers_);
  }

  /// Maps [B, in_features] to [B, out_features].
  torch::Tensor forward(const torch::Tensor& x) {
    return forward_mlp(derived().spec(), layers_, x);
  }

  void pretty_print(std::ostream& stream) const override {
    stream << describe_mlp(derived().spec());
  }

  /// A deep copy. LibTorch's clone re-creates parameters with requires_grad = true; the frozen
  /// output bias stays frozen in the copy, as `copy.deepcopy` keeps it in PyTorch.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override {
    auto copy = torch::nn::Cloneable<Derived>::clone(device);
    auto& head = dynamic_cast<MlpHead&>(*copy);
    freeze_output_bias(derived().spec(), head.layers_);
    return copy;
  }

  /// The layers in order, as a Sequential that shares this module's children.
  const torch::nn::Sequential& layers() const { return layers_; }

 private:
  const Derived& derived() const { return static_cast<const Derived&>(*this); }

  torch::nn::Sequential layers_{nullptr};
};

}  // namespace simsiam::detail
