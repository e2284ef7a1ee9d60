// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Lars`: SGD with layer-wise adaptive rate scaling, as the official linear evaluation
/// runs it (apex `LARC(SGD, trust_coefficient=0.001, clip=False)` in main_lincls.py).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "simsiam/optim/detail/param_state.hpp"

namespace simsiam {

/// Options of a `Lars` parameter group.
struct LarsOptions : public torch::optim::OptimizerCloneableOptions<LarsOptions> {
  /* implicit */ LarsOptions(double lr = 0.1) : lr_(lr) {}
  /// Global lr (official linear evaluation: 0.1 x 4096 / 256 = 1.6).
  TORCH_ARG(double, lr);
  TORCH_ARG(double, momentum) = 0.9;
  /// Added to the gradient before the adaptive scaling, as LARC does (0 in linear evaluation).
  TORCH_ARG(double, weight_decay) = 0.0;
  /// eta in trust = eta ||w|| / (||g|| + wd ||w|| + eps) (LARC's 0.001).
  TORCH_ARG(double, trust_coefficient) = 0.001;
  TORCH_ARG(double, eps) = 1e-8;
  /// Clip the local lr at the global one: min(trust / lr, 1) (LARC's `clip`, off officially).
  TORCH_ARG(bool, clip) = false;
  /// Scale this group's updates; false makes it plain momentum SGD (see `lars_param_groups`).
  TORCH_ARG(bool, adapt) = true;

 public:
  void serialize(torch::serialize::OutputArchive& archive) const override {
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(trust_coefficient);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(clip);
    _TORCH_OPTIM_SERIALIZE_TORCH_ARG(adapt);
  }
  void serialize(torch::serialize::InputArchive& archive) override {
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, momentum);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, trust_coefficient);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, clip);
    _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, adapt);
  }
  double get_lr() const override { return lr_; }
  void set_lr(const double lr) override { lr_ = lr; }
};

/// LARS/LARC over momentum SGD. For each parameter w with gradient g, when ||w|| and ||g|| are
/// both non-zero:
///   trust = eta ||w|| / (||g|| + wd ||w|| + eps)   (min(trust / lr, 1) with `clip`)
///   g <- (g + wd w) * trust
/// otherwise g is left as it is (no weight decay either, as in LARC); then
///   buf <- momentum buf + g (buf = g at the first step),  w <- w - lr buf.
/// The norms stay on the device: no host synchronisation per parameter. Momentum buffers are
/// `SGDParamState`s, so `save`/`load` use LibTorch's optimizer archive format.
class Lars : public torch::optim::Optimizer {
 public:
  explicit Lars(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                LarsOptions defaults = {})
      : torch::optim::Optimizer(std::move(param_groups), std::make_unique<LarsOptions>(defaults)) {
    for (const auto& group : this->param_groups()) {
      const auto& o = static_cast<const LarsOptions&>(group.options());
      TORCH_CHECK(o.lr() >= 0 && o.momentum() >= 0 && o.weight_decay() >= 0 &&
                      o.trust_coefficient() > 0 && o.eps() >= 0,
                  "simsiam::Lars: expected lr >= 0, momentum >= 0, weight_decay >= 0, "
                  "trust_coefficient > 0 and eps >= 0, got lr ",
                  o.lr(), ", momentum ", o.momentum(), ", weight_decay ", o.weight_decay(),
                  ", trust_coefficient ", o.trust_coefficient(), ", eps ", o.eps());
    }
  }
  explicit Lars(std::vector<torch::Tensor> params, LarsOptions defaults = {})
      : Lars({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    torch::Tensor loss;
    if (closure) {
      at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    for (auto& group : param_groups_) {
      const auto& o = static_cast<const LarsOptions&>(group.options());
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto d_p = p.grad();
        if (o.adapt()) {
          const auto w_norm = p.norm();
          const auto g_norm = d_p.norm();
          auto trust =
              o.trust_coefficient() * w_norm / (g_norm + o.weight_decay() * w_norm + o.eps());
          if (o.clip()) trust = (trust / o.lr()).clamp_max(1.0);
          const auto scaled =
              o.weight_decay() != 0 ? (d_p + o.weight_decay() * p) * trust : d_p * trust;
          d_p = torch::where(w_norm.ne(0).logical_and(g_norm.ne(0)), scaled, d_p);
        } else if (o.weight_decay() != 0) {
          d_p = d_p.add(p, o.weight_decay());
        }
        if (o.momentum() != 0) {
          auto& slot = state_[detail::param_state_key<decltype(state_)>(p)];
          if (!slot) {
            auto state = std::make_unique<torch::optim::SGDParamState>();
            state->momentum_buffer(d_p.clone().detach());
            slot = std::move(state);
          } else {
            auto& buffer = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
            buffer.mul_(o.momentum()).add_(d_p);
          }
          d_p = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
        }
        p.add_(d_p, -o.lr());
      }
    }
    return loss;
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    torch::optim::serialize<torch::optim::SGDParamState, LarsOptions>(archive, *this);
  }
  void load(torch::serialize::InputArchive& archive) override {
    torch::optim::serialize<torch::optim::SGDParamState, LarsOptions>(archive, *this);
  }
};

/// Parameter groups for `Lars`: with `exclude_bias_and_norm`, parameters of one dimension
/// (biases, BatchNorm/LayerNorm weights) go to a second group with `adapt(false)`, the common
/// LARS variant (BYOL, MoCo v3); without it, one group as the official linear evaluation uses.
inline std::vector<torch::optim::OptimizerParamGroup> lars_param_groups(
    const std::vector<torch::Tensor>& params, const LarsOptions& options,
    bool exclude_bias_and_norm) {
  std::vector<torch::Tensor> adapted, plain;
  for (const auto& p : params) {
    (exclude_bias_and_norm && p.dim() <= 1 ? plain : adapted).push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(adapted, std::make_unique<LarsOptions>(options));
  if (!plain.empty()) {
    auto plain_options = options;
    plain_options.adapt(false);
    groups.emplace_back(plain, std::make_unique<LarsOptions>(plain_options));
  }
  return groups;
}

}  // namespace simsiam
