// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The trainer's way back from a step it learns about late: a copy of the weights,
/// buffers and optimiser state on the device (`detail::TrainingSnapshot`), and each step's loss
/// kept on the device until one copy reads them all (`detail::PendingLosses`).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <typeinfo>
#include <utility>
#include <vector>

#include "simsiam/optim/detail/param_state.hpp"
#include "simsiam/optim/lars.hpp"

namespace simsiam::detail {

/// A deep copy of one parameter's optimiser state, for the optimisers whose state types are
/// known here (LibTorch's SGD, Adam, AdamW, Adagrad and RMSprop; `Lars`); null for others.
inline std::unique_ptr<torch::optim::OptimizerParamState> copy_param_state(
    const torch::optim::OptimizerParamState& state) {
  namespace optim = torch::optim;
  const auto copy = [](const torch::Tensor& t) { return t.defined() ? t.clone() : t; };
  if (const auto* s = dynamic_cast<const optim::SGDParamState*>(&state)) {
    auto out = std::make_unique<optim::SGDParamState>(*s);
    out->momentum_buffer(copy(s->momentum_buffer()));
    return out;
  }
  // AdamW's state is not an Adam state: two branches with the same body.
  const auto adam_like = [&](const auto& s) {
    auto out = std::make_unique<std::decay_t<decltype(s)>>(s);
    out->exp_avg(copy(s.exp_avg())).exp_avg_sq(copy(s.exp_avg_sq()));
    out->max_exp_avg_sq(copy(s.max_exp_avg_sq()));
    return std::unique_ptr<optim::OptimizerParamState>(std::move(out));
  };
  if (const auto* s = dynamic_cast<const optim::AdamParamState*>(&state)) return adam_like(*s);
  if (const auto* s = dynamic_cast<const optim::AdamWParamState*>(&state)) return adam_like(*s);
  if (const auto* s = dynamic_cast<const optim::AdagradParamState*>(&state)) {
    auto out = std::make_unique<optim::AdagradParamState>(*s);
    out->sum(copy(s->sum()));
    return out;
  }
  if (const auto* s = dynamic_cast<const optim::RMSpropParamState*>(&state)) {
    auto out = std::make_unique<optim::RMSpropParamState>(*s);
    out->square_avg(copy(s->square_avg()))
        .momentum_buffer(copy(s->momentum_buffer()))
        .grad_avg(copy(s->grad_avg()));
    return out;
  }
  return nullptr;
}

/// A model's parameters and buffers and its optimiser's per-parameter state as they were at one
/// step, kept on their devices (one more copy of each), to put back when a later read shows
/// that a step after it saw a non-finite loss.
class TrainingSnapshot {
 public:
  /// Whether the state of `optimizer` can be copied: exactly one of LibTorch's SGD, Adam,
  /// AdamW, Adagrad, RMSprop, or `Lars` (a type derived from them may hold other state).
  static bool supports(const torch::optim::Optimizer& optimizer) {
    const auto& type = typeid(optimizer);
    return type == typeid(torch::optim::SGD) || type == typeid(torch::optim::Adam) ||
           type == typeid(torch::optim::AdamW) || type == typeid(torch::optim::Adagrad) ||
           type == typeid(torch::optim::RMSprop) || type == typeid(Lars);
  }

  /// Copies the current state, made after `step` optimiser steps.
  void take(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
            int64_t step) {
    torch::NoGradGuard no_grad;
    params_.clear();
    buffers_.clear();
    states_.clear();
    for (const auto& p : model.parameters()) params_.push_back(p.detach().clone());
    for (const auto& b : model.buffers()) buffers_.push_back(b.clone());
    const auto& state = optimizer.state();
    for (const auto& group : optimizer.param_groups()) {
      for (const auto& p : group.params()) {
        const auto it = state.find(param_state_key<std::decay_t<decltype(state)>>(p));
        if (it == state.end()) continue;
        auto copy = copy_param_state(*it->second);
        TORCH_CHECK(copy, "simsiam::Trainer: cannot copy the state of a ",
                    c10::demangle(typeid(optimizer).name()), " (read_every(1) needs no copy)");
        states_.emplace_back(p, std::move(copy));
      }
    }
    step_ = step;
  }

  /// Puts the copy back: parameters and buffers in place, the optimiser state as it was
  /// (state made since is dropped).
  void restore(torch::nn::Module& model, torch::optim::Optimizer& optimizer) const {
    torch::NoGradGuard no_grad;
    const auto params = model.parameters();
    const auto buffers = model.buffers();
    TORCH_CHECK(params.size() == params_.size() && buffers.size() == buffers_.size(),
                "simsiam::Trainer: the model changed its parameters since the snapshot");
    for (size_t i = 0; i < params.size(); ++i) params[i].detach().copy_(params_[i]);
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(buffers_[i]);
    auto& state = optimizer.state();
    state.clear();
    for (const auto& [param, param_state] : states_) {
      state[param_state_key<std::decay_t<decltype(state)>>(param)] = copy_param_state(*param_state);
    }
  }

  /// The optimiser steps done when the copy was taken.
  int64_t step() const { return step_; }

 private:
  std::vector<torch::Tensor> params_, buffers_;
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::OptimizerParamState>>> states_;
  int64_t step_ = 0;
};

/// Each step's loss, kept on its device until `read` copies them all to the host at once.
class PendingLosses {
 public:
  /// What one read found.
  struct Read {
    std::vector<double> values;  ///< in step order
    std::vector<int64_t> steps;  ///< the global step of each value (1-based)
    /// The first value that is not finite, and its index; -1 when all are finite.
    int64_t first_bad = -1;
  };

  void add(const torch::Tensor& loss, int64_t step) {
    losses_.push_back(loss.detach().reshape({1}));  // no kernel; float64 only on the host
    steps_.push_back(step);
  }
  bool empty() const { return losses_.empty(); }

  /// The values since the last read, in one device-to-host copy.
  Read read() {
    Read out;
    if (losses_.empty()) return out;
    const auto host = torch::cat(losses_).to(torch::kCPU).to(torch::kDouble).contiguous();
    const double* value = host.data_ptr<double>();
    out.values.assign(value, value + host.numel());
    out.steps = std::move(steps_);
    for (size_t i = 0; i < out.values.size() && out.first_bad < 0; ++i) {
      if (!std::isfinite(out.values[i])) out.first_bad = static_cast<int64_t>(i);
    }
    losses_.clear();
    steps_.clear();
    return out;
  }

 private:
  std::vector<torch::Tensor> losses_;
  std::vector<int64_t> steps_;
};

}  // namespace simsiam::detail
