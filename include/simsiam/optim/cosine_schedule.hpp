// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `CosineSchedule`: the official cosine learning-rate decay, per epoch or per step, with
/// an optional linear warmup and parameter groups kept at their initial lr (`--fix-pred-lr`).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "simsiam/optim/schedule.hpp"

namespace simsiam {

namespace functional {

/// The lr at scheduler position t of T: base * 0.5 * (1 + cos(pi * t / T)), as
/// `adjust_learning_rate` in main_simsiam.py. With W > 0 warmup positions it first rises linearly
/// as base * (t + 1) / W (the paper's 10-epoch warmup for batches of 1024 and more), then decays
/// over the remaining T - W positions. Positions past T stay at the end value, 0.
inline double cosine_lr(double base_lr, int64_t t, int64_t total, int64_t warmup = 0) {
  TORCH_CHECK(total > 0 && warmup >= 0 && warmup < total,
              "simsiam::cosine_lr: expected total > 0 and 0 <= warmup < total, got total ", total,
              " and warmup ", warmup);
  constexpr double kPi = 3.14159265358979323846;
  if (t < warmup) return base_lr * static_cast<double>(t + 1) / static_cast<double>(warmup);
  const double progress =
      std::min(1.0, static_cast<double>(t - warmup) / static_cast<double>(total - warmup));
  return base_lr * 0.5 * (1.0 + std::cos(kPi * progress));
}

}  // namespace functional

/// Options of `CosineSchedule`.
struct CosineScheduleOptions {
  /// `total` scheduler positions: the epochs when stepped once per epoch (official), or
  /// epochs x steps per epoch when stepped before every iteration.
  /* implicit */ CosineScheduleOptions(int64_t total) : total_(total) {}
  /// Positions over which the lr decays to 0.
  TORCH_ARG(int64_t, total);
  /// Positions of linear warmup before the decay (0 in the official code).
  TORCH_ARG(int64_t, warmup) = 0;
  /// Indices of parameter groups that keep their initial lr: the predictor's with
  /// `--fix-pred-lr` (paper Table 1: 68.1 vs 67.7 when it decays too).
  TORCH_ARG(std::vector<size_t>, fixed_groups) = {};
};

/// Cosine decay on LibTorch's `LRScheduler` model. Call `step()` before each epoch (or each
/// iteration): the k-th call sets every group's lr to `functional::cosine_lr(initial, k - 1, ...)`,
/// so the first epoch trains at the initial lr, as the official loop does. The initial lrs are
/// the optimizer's lrs at construction.
class CosineSchedule : public Schedule {
 public:
  CosineSchedule(torch::optim::Optimizer& optimizer, CosineScheduleOptions options)
      : Schedule(optimizer), options(std::move(options)), initial_lrs_(get_current_lrs()) {
    TORCH_CHECK(this->options.total() > 0 && this->options.warmup() >= 0 &&
                    this->options.warmup() < this->options.total(),
                "simsiam::CosineSchedule: expected total > 0 and 0 <= warmup < total, got total ",
                this->options.total(), " and warmup ", this->options.warmup());
    for (const size_t group : this->options.fixed_groups()) {
      TORCH_CHECK(group < initial_lrs_.size(), "simsiam::CosineSchedule: fixed group ", group,
                  " does not exist; the optimizer has ", initial_lrs_.size(), " parameter groups");
    }
  }

  /// The lrs that the (t + 1)-th `step()` sets, one per parameter group.
  std::vector<double> lrs_at(int64_t t) const {
    std::vector<double> lrs = initial_lrs_;
    const auto& fixed = options.fixed_groups();
    for (size_t g = 0; g < lrs.size(); ++g) {
      if (std::find(fixed.begin(), fixed.end(), g) == fixed.end()) {
        lrs[g] = functional::cosine_lr(initial_lrs_[g], t, options.total(), options.warmup());
      }
    }
    return lrs;
  }

  std::string name() const override { return "cosine schedule"; }
  std::string description() const override {
    std::string fixed;
    for (const auto g : options.fixed_groups()) {
      fixed += (fixed.empty() ? "" : ",") + std::to_string(g);
    }
    return "cosine total " + std::to_string(options.total()) + " warmup " +
           std::to_string(options.warmup()) + " fixed {" + fixed + "}";
  }
  int64_t positions() const override { return options.total(); }

  /// The lrs at construction.
  const std::vector<double>& initial_lrs() const { return initial_lrs_; }

  CosineScheduleOptions options;

 protected:
  std::vector<double> get_lrs() override { return lrs_at(position()); }

 private:
  std::vector<double> initial_lrs_;
};

}  // namespace simsiam
