// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Mixed precision: an autocast guard and a gradient scaler (torch.cuda.amp's defaults),
/// written on device-agnostic tensor operations so they build against any LibTorch.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstdint>

namespace simsiam {

/// Autocast for one device type within a scope, restoring the previous setting on exit (as
/// `with torch.autocast(device_type, dtype)`). Half precision is the usual dtype on CUDA,
/// bfloat16 on CPU.
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, bool enabled, torch::ScalarType dtype)
      : device_(device), active_(enabled) {
    if (!active_) return;  // a disabled guard is a no-op on any device
    TORCH_CHECK(device == torch::kCPU || device == torch::kCUDA,
                "simsiam::AutocastGuard: expected a CPU or CUDA device, got ", device);
    previous_enabled_ = is_enabled();
    previous_dtype_ = get_dtype();
    set(true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    // Leaving the outermost autocast region frees the cast weights it cached.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set(previous_enabled_, previous_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  // LibTorch 2.4 replaced the per-device functions by ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  bool is_enabled() const { return at::autocast::is_autocast_enabled(device_); }
  torch::ScalarType get_dtype() const { return at::autocast::get_autocast_dtype(device_); }
  void set(bool enabled, torch::ScalarType dtype) const {
    at::autocast::set_autocast_enabled(device_, enabled);
    at::autocast::set_autocast_dtype(device_, dtype);
  }
#else
  bool is_enabled() const {
    return device_ == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  }
  torch::ScalarType get_dtype() const {
    return device_ == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                                   : at::autocast::get_autocast_cpu_dtype();
  }
  void set(bool enabled, torch::ScalarType dtype) const {
    if (device_ == torch::kCUDA) {
      at::autocast::set_enabled(enabled);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_cpu_enabled(enabled);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
  }
#endif

  torch::DeviceType device_;
  bool active_;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
};

/// Options of `GradScaler`; the defaults are torch.cuda.amp.GradScaler's.
struct GradScalerOptions {
  TORCH_ARG(double, init_scale) = 65536.0;
  TORCH_ARG(double, growth_factor) = 2.0;
  TORCH_ARG(double, backoff_factor) = 0.5;
  /// Steps without inf/NaN gradients before the scale grows.
  TORCH_ARG(int64_t, growth_interval) = 2000;
  TORCH_ARG(bool, enabled) = true;
};

/// Dynamic loss scaling for float16 training: `scale(loss).backward()`, then `step(optimizer)`
/// unscales the gradients and skips the step when any is inf/NaN, and `update()` adjusts the
/// scale (backoff after an overflow, growth after `growth_interval` clean steps). Disabled, it
/// passes everything through.
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {})
      : options(options), scale_(options.init_scale()) {
    TORCH_CHECK(options.init_scale() > 0 && options.growth_factor() > 1 &&
                    options.backoff_factor() > 0 && options.backoff_factor() < 1 &&
                    options.growth_interval() > 0,
                "simsiam::GradScaler: expected init_scale > 0, growth_factor > 1, 0 < "
                "backoff_factor < 1 and growth_interval > 0");
  }

  torch::Tensor scale(const torch::Tensor& loss) const {
    return options.enabled() ? loss * scale_ : loss;
  }

  /// Unscales the gradients in place, then steps unless one of them is inf/NaN. Returns whether
  /// it stepped. One host synchronisation per call.
  bool step(torch::optim::Optimizer& optimizer) {
    if (!options.enabled()) {
      optimizer.step();
      return true;
    }
    torch::NoGradGuard no_grad;
    torch::Tensor all_finite;
    for (auto& group : optimizer.param_groups()) {
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        p.grad().mul_(1.0 / scale_);
        const auto finite = torch::isfinite(p.grad()).all();
        all_finite = all_finite.defined() ? all_finite.logical_and(finite) : finite;
      }
    }
    found_inf_ = all_finite.defined() && !all_finite.item<bool>();
    if (!found_inf_) optimizer.step();
    return !found_inf_;
  }

  /// Adjusts the scale after `step`.
  void update() {
    if (!options.enabled()) return;
    if (found_inf_) {
      scale_ *= options.backoff_factor();
      clean_steps_ = 0;
    } else if (++clean_steps_ == options.growth_interval()) {
      scale_ *= options.growth_factor();
      clean_steps_ = 0;
    }
  }

  double current_scale() const { return scale_; }
  /// The scale and the clean-step count, for checkpoints.
  torch::Tensor state() const {
    return torch::tensor({scale_, static_cast<double>(clean_steps_)}, torch::kDouble);
  }
  void load_state(const torch::Tensor& state) {
    TORCH_CHECK(state.defined() && state.numel() == 2,
                "simsiam::GradScaler: expected a state of 2 values, got ", state.sizes());
    const auto values = state.to(torch::kDouble).contiguous();
    scale_ = values[0].item<double>();
    clean_steps_ = static_cast<int64_t>(values[1].item<double>());
  }

  GradScalerOptions options;

 private:
  double scale_;
  int64_t clean_steps_ = 0;
  bool found_inf_ = false;
};

}  // namespace simsiam
