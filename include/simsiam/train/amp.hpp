// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Mixed precision: an autocast guard and a gradient scaler (torch.cuda.amp's defaults),
/// written on device-agnostic tensor operations so they build against any LibTorch.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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
/// scale (backoff after an overflow, growth after `growth_interval` clean steps). As in
/// torch.amp.GradScaler, the scale and the count of clean steps are tensors on the loss's device:
/// the unscale is one fused check-and-unscale per device and dtype (per gradient on the CPU
/// before LibTorch 2.4, which lacks the fused CPU kernel), the update runs on the device, and
/// `step` reads one number from the device to decide. Disabled, it passes everything through.
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {})
      : options(options), initial_scale_(options.init_scale()) {
    TORCH_CHECK(options.init_scale() > 0 && options.growth_factor() > 1 &&
                    options.backoff_factor() > 0 && options.backoff_factor() < 1 &&
                    options.growth_interval() > 0,
                "simsiam::GradScaler: expected init_scale > 0, growth_factor > 1, 0 < "
                "backoff_factor < 1 and growth_interval > 0");
  }

  /// `loss` times the scale; the scale lives on the device of the first loss it scales.
  torch::Tensor scale(const torch::Tensor& loss) {
    if (!options.enabled()) return loss;
    if (!scale_.defined()) {
      scale_ = torch::full({1}, initial_scale_, loss.options().dtype(torch::kFloat));
      clean_steps_ = torch::full({1}, initial_clean_steps_, loss.options().dtype(torch::kInt));
    }
    return loss * scale_.squeeze(0).to(loss.device(), /*non_blocking=*/true);
  }

  /// Unscales the gradients in place, then steps unless one of them is inf/NaN. Returns whether
  /// it stepped. One host read per call.
  bool step(torch::optim::Optimizer& optimizer) {
    if (!options.enabled()) {
      optimizer.step();
      return true;
    }
    TORCH_CHECK(scale_.defined(), "simsiam::GradScaler: step() before scale(loss)");
    found_inf_ = unscale(optimizer);
    const bool skip = found_inf_.item<float>() > 0;
    if (!skip) optimizer.step();
    return !skip;
  }

  /// Adjusts the scale after `step`, on the device (torch.amp's rules).
  void update() {
    if (!options.enabled() || !found_inf_.defined()) return;
    if (fused_kernels(scale_.device())) {
      at::_amp_update_scale_(scale_, clean_steps_, found_inf_, options.growth_factor(),
                             options.backoff_factor(), options.growth_interval());
    } else {
      torch::NoGradGuard no_grad;
      const auto overflow = found_inf_ > 0;
      const auto clean = torch::where(overflow, torch::zeros_like(clean_steps_), clean_steps_ + 1);
      const auto grown = scale_ * options.growth_factor();
      const auto grow = clean.eq(options.growth_interval()).logical_and(torch::isfinite(grown));
      scale_.copy_(torch::where(overflow, scale_ * options.backoff_factor(),
                                torch::where(grow, grown, scale_)));
      clean_steps_.copy_(
          torch::where(clean.eq(options.growth_interval()), torch::zeros_like(clean), clean));
    }
    found_inf_ = torch::Tensor();
  }

  /// The current scale (a host read: for logs and tests).
  double current_scale() const { return scale_.defined() ? scale_.item<double>() : initial_scale_; }
  /// The scale and the clean-step count, for checkpoints.
  torch::Tensor state() const {
    if (!scale_.defined()) {
      return torch::tensor({initial_scale_, static_cast<double>(initial_clean_steps_)},
                           torch::kDouble);
    }
    return torch::cat({scale_.to(torch::kDouble), clean_steps_.to(torch::kDouble)}).cpu();
  }
  void load_state(const torch::Tensor& state) {
    TORCH_CHECK(state.defined() && state.numel() == 2,
                "simsiam::GradScaler: expected a state of 2 values, got ", state.sizes());
    const auto values = state.to(torch::kDouble).contiguous();
    initial_scale_ = values[0].item<double>();
    initial_clean_steps_ = static_cast<int64_t>(values[1].item<double>());
    scale_ = clean_steps_ = found_inf_ = torch::Tensor();  // made again by the next scale()
  }

  GradScalerOptions options;

 private:
  // LibTorch has CPU kernels of the fused check-and-unscale and update from 2.4 on.
  static bool fused_kernels(const torch::Device& device) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    return device.is_cuda() || device.is_cpu();
#else
    return device.is_cuda();
#endif
  }

  /// Divides every gradient by the scale; returns a 1-element float tensor on the scale's
  /// device, positive when some gradient holds inf or NaN.
  torch::Tensor unscale(torch::optim::Optimizer& optimizer) const {
    torch::NoGradGuard no_grad;
    struct Group {
      torch::Device device;
      torch::ScalarType dtype;
      std::vector<torch::Tensor> grads;
    };
    std::vector<Group> groups;
    for (auto& group : optimizer.param_groups()) {
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        const auto& grad = p.grad();
        auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
          return g.device == grad.device() && g.dtype == grad.scalar_type();
        });
        if (it == groups.end())
          it = groups.insert(groups.end(), {grad.device(), grad.scalar_type(), {}});
        it->grads.push_back(grad);
      }
    }
    const auto inv_scale = scale_.to(torch::kDouble).reciprocal().to(torch::kFloat);
    auto found_inf = torch::zeros({1}, scale_.options().dtype(torch::kFloat));
    for (auto& group : groups) {
      auto found = torch::zeros({1}, inv_scale.options().device(group.device));
      const auto inv = inv_scale.to(group.device, /*non_blocking=*/true);
      if (fused_kernels(group.device)) {
        at::_amp_foreach_non_finite_check_and_unscale_(group.grads, found, inv);
      } else {
        for (auto& grad : group.grads) {
          grad.mul_(inv);
          found.add_(torch::isfinite(grad).all().logical_not());
        }
      }
      found_inf.add_(found.to(found_inf.device(), /*non_blocking=*/true));
    }
    return found_inf;
  }

  double initial_scale_;
  int64_t initial_clean_steps_ = 0;
  torch::Tensor scale_, clean_steps_, found_inf_;
};

}  // namespace simsiam
