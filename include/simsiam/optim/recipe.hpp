// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The official pretraining optimiser in one call: momentum SGD over the encoder and
/// predictor groups with lr = base_lr x batch / 256, and its cosine schedule.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "simsiam/optim/cosine_schedule.hpp"

namespace simsiam {

/// The pretraining optimiser of main_simsiam.py; the defaults are the official ImageNet run.
struct SgdRecipe {
  /// Base lr, scaled by batch / 256 (0.05 ImageNet; 0.03 in the CIFAR recipe).
  TORCH_ARG(double, base_lr) = 0.05;
  /// Total batch over all processes (512 officially: 8 GPUs x 64).
  TORCH_ARG(int64_t, batch_size) = 512;
  TORCH_ARG(double, momentum) = 0.9;
  /// On every parameter, BN included (1e-4 ImageNet, 5e-4 CIFAR).
  TORCH_ARG(double, weight_decay) = 1e-4;
  /// Keep the predictor at the initial lr (`--fix-pred-lr`, on in the official run).
  TORCH_ARG(bool, fix_predictor_lr) = true;
  /// Linear warmup, in schedule positions (0 officially; the paper used 10 epochs for batch >=
  /// 1024).
  TORCH_ARG(int64_t, warmup) = 0;

 public:
  /// lr = base_lr x batch / 256 (the linear scaling rule of Goyal et al., as main_simsiam.py).
  double lr() const { return base_lr() * static_cast<double>(batch_size()) / 256.0; }

  /// Fails with a message naming the bad value.
  void check() const {
    TORCH_CHECK(base_lr() > 0, "simsiam::SgdRecipe: expected base_lr > 0, got ", base_lr());
    TORCH_CHECK(batch_size() > 0, "simsiam::SgdRecipe: expected batch_size > 0, got ",
                batch_size());
    TORCH_CHECK(momentum() >= 0 && weight_decay() >= 0,
                "simsiam::SgdRecipe: expected momentum >= 0 and weight_decay >= 0, got ",
                momentum(), " and ", weight_decay());
    TORCH_CHECK(warmup() >= 0, "simsiam::SgdRecipe: expected warmup >= 0, got ", warmup());
  }
};

/// Index of the predictor's parameter group in the optimiser `make_sgd` builds (the encoder's is
/// 0).
constexpr size_t kPredictorGroup = 1;

/// Momentum SGD with two parameter groups, the encoder (backbone + projector) then the predictor,
/// both at `recipe.lr()`. `Model` is a `SimSiam` holder or anything with `encoder_parameters()`
/// and `predictor_parameters()`.
template <class Model>
torch::optim::SGD make_sgd(Model& model, const SgdRecipe& recipe) {
  recipe.check();
  auto options = torch::optim::SGDOptions(recipe.lr())
                     .momentum(recipe.momentum())
                     .weight_decay(recipe.weight_decay());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(model->encoder_parameters(),
                      std::make_unique<torch::optim::SGDOptions>(options));
  groups.emplace_back(model->predictor_parameters(),
                      std::make_unique<torch::optim::SGDOptions>(options));
  return torch::optim::SGD(std::move(groups), options);
}

/// The official schedule for an optimiser built by `make_sgd`: cosine over `total` positions
/// (epochs, or iterations when stepped per iteration), the predictor group fixed when
/// `recipe.fix_predictor_lr()`.
inline CosineSchedule make_cosine_schedule(torch::optim::Optimizer& optimizer,
                                           const SgdRecipe& recipe, int64_t total) {
  auto options = CosineScheduleOptions(total).warmup(recipe.warmup());
  if (recipe.fix_predictor_lr()) options.fixed_groups({kPredictorGroup});
  return CosineSchedule(optimizer, options);
}

}  // namespace simsiam
