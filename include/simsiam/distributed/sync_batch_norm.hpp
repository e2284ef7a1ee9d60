// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief SyncBatchNorm on any device: batch statistics over all ranks of a `Communicator`,
/// differentiable (all-reduce in forward and in backward), running statistics updated with the
/// global unbiased variance, as torch.nn.SyncBatchNorm (whose fused kernels are CUDA-only).
///
/// The library's backbones and heads are built with this module: without a communicator it is
/// torch::nn::BatchNorm (same names, same call), and `convert_sync_batchnorm(model, group)`
/// attaches the group to all of them. LibTorch cannot swap a child module the way PyTorch's
/// convert_sync_batchnorm does (`Sequential` keeps its own list, and parents keep holders), so
/// the switch happens inside the module.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "simsiam/distributed/communicator.hpp"

namespace simsiam::distributed {

namespace detail {

/// Dimensions reduced by batch norm: all but the channel dimension 1.
inline std::vector<int64_t> reduce_dims(const torch::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

/// [C] -> [1, C, 1, ...] to broadcast against x.
inline torch::Tensor per_channel(const torch::Tensor& v, const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return v.view(shape);
}

/// The forward and backward of torch/nn/modules/_functions.py's SyncBatchNorm, with sums in
/// place of the fused CUDA kernels. An empty (numel 0) weight or running_mean means none.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                torch::Tensor x, torch::Tensor weight,
                                                torch::Tensor bias, torch::Tensor running_mean,
                                                torch::Tensor running_var, double eps,
                                                double momentum, int64_t group_address) {
    auto* group = reinterpret_cast<Communicator*>(group_address);
    const auto dims = reduce_dims(x);
    const int64_t channels = x.size(1);
    const double n = static_cast<double>(x.numel() / channels);
    // On the host: with at least one value per channel on each of two or more ranks, the ranks
    // hold more than one together (torch.nn.SyncBatchNorm checks the same way).
    TORCH_CHECK(n >= 1,
                "simsiam::distributed::SyncBatchNorm: expected at least one value per channel "
                "on each rank, got an input of shape ",
                x.sizes());
    const auto stats_dtype = torch::promote_types(x.scalar_type(), torch::kFloat);
    const auto xs = x.to(stats_dtype);
    // Each rank's mean and variance (two passes: no cancellation of float32 sums of squares;
    // 6-25x faster on CPU than var_mean's Welford), combined in float64 as counts x [mean,
    // mean^2 + var], with counts exact past 2^24.
    const auto local_mean = xs.mean(dims);
    const auto local_var = (xs - per_channel(local_mean, x)).square_().mean(dims);
    const auto mean64 = local_mean.to(torch::kDouble);
    std::vector<torch::Tensor> packed{
        torch::cat({torch::full({1}, n, mean64.options()), mean64 * n,
                    (local_var.to(torch::kDouble) + mean64.square()) * n})};
    group->all_reduce_sum(packed);
    const auto count = packed[0].slice(0, 0, 1);  // [1] on the device: the host never waits
    const auto mean_all = packed[0].slice(0, 1, 1 + channels) / count;
    const auto var_all =
        (packed[0].slice(0, 1 + channels, 1 + 2 * channels) / count - mean_all.square())
            .clamp_min(0);
    const auto mean = mean_all.to(stats_dtype);
    const auto var = var_all.to(stats_dtype);
    const auto invstd = (var_all + eps).rsqrt().to(stats_dtype);
    {
      torch::NoGradGuard no_grad;
      if (running_mean.numel() > 0) {
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()), momentum);
        running_var.mul_(1 - momentum)
            .add_((var * (count / (count - 1)).to(stats_dtype)).to(running_var.dtype()), momentum);
      }
    }
    auto y = (xs - per_channel(mean, x)) * per_channel(invstd, x);
    if (weight.numel() > 0) y = y * per_channel(weight, x) + per_channel(bias, x);
    ctx->save_for_backward({x, weight, mean, invstd, count.to(stats_dtype)});
    ctx->saved_data["group"] = group_address;
    return {y.to(x.scalar_type())};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& mean = saved[2];
    const auto& invstd = saved[3];
    const auto& count = saved[4];
    auto* group = reinterpret_cast<Communicator*>(ctx->saved_data["group"].toInt());
    const auto dims = reduce_dims(x);
    const int64_t channels = x.size(1);
    const auto dy = grad_outputs[0].to(mean.scalar_type());
    const auto xmu = x.to(mean.scalar_type()) - per_channel(mean, x);
    const auto sum_dy = dy.sum(dims);
    const auto sum_dy_xmu = (dy * xmu).sum(dims);
    // Parameter gradients stay local: data parallelism averages them like any other gradient.
    torch::Tensor grad_weight, grad_bias;
    if (weight.numel() > 0) {
      grad_weight = (sum_dy_xmu * invstd).to(weight.scalar_type());
      grad_bias = sum_dy.to(weight.scalar_type());
    }
    std::vector<torch::Tensor> packed{torch::cat({sum_dy, sum_dy_xmu})};
    group->all_reduce_sum(packed);
    const auto global_sum_dy = packed[0].slice(0, 0, channels);
    const auto global_sum_dy_xmu = packed[0].slice(0, channels, 2 * channels);
    auto scale = invstd;
    if (weight.numel() > 0) scale = scale * weight.to(invstd.scalar_type());
    const auto grad_input = (dy - per_channel(global_sum_dy / count, x) -
                             xmu * per_channel(invstd.square() * global_sum_dy_xmu / count, x)) *
                            per_channel(scale, x);
    return {grad_input.to(x.scalar_type()),
            grad_weight,
            grad_bias,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace detail

/// Options of `SyncBatchNorm`, those of torch::nn::BatchNorm.
struct SyncBatchNormOptions {
  /* implicit */ SyncBatchNormOptions(int64_t num_features) : num_features_(num_features) {}
  TORCH_ARG(int64_t, num_features);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(double, momentum) = 0.1;
  TORCH_ARG(bool, affine) = true;
  TORCH_ARG(bool, track_running_stats) = true;
};

/// Batch norm over [N, C] or [N, C, ...] whose training statistics cover the batches of every
/// rank of `group` (none, or one rank: plain batch norm). Parameters and buffers have
/// torch::nn::BatchNorm's names, so state dicts are interchangeable.
class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  explicit SyncBatchNormImpl(SyncBatchNormOptions options, Communicator* group = nullptr)
      : options(options), group(group) {
    reset();
  }

  void reset() override {
    const auto c = options.num_features();
    TORCH_CHECK(c > 0, "simsiam::distributed::SyncBatchNorm: expected num_features > 0, got ", c);
    if (options.affine()) {
      weight = register_parameter("weight", torch::ones({c}));
      bias = register_parameter("bias", torch::zeros({c}));
    }
    if (options.track_running_stats()) {
      running_mean = register_buffer("running_mean", torch::zeros({c}));
      running_var = register_buffer("running_var", torch::ones({c}));
      num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    TORCH_CHECK(x.dim() >= 2 && x.size(1) == options.num_features(),
                "simsiam::distributed::SyncBatchNorm: expected input [N, ", options.num_features(),
                ", ...], got ", x.sizes());
    const bool use_batch_stats = is_training() || !options.track_running_stats();
    // Statistics are synchronised in training only, as torch.nn.SyncBatchNorm: evaluation
    // (possibly of unequal shards) runs no collective.
    if (is_training() && options.track_running_stats()) num_batches_tracked.add_(1);
    if (!is_training() || group == nullptr || group->world_size() == 1) {
      return torch::batch_norm(x, weight, bias, running_mean, running_var, use_batch_stats,
                               options.momentum(), options.eps(), /*cudnn_enabled=*/true);
    }
    // LibTorch 1.13's custom functions cannot take undefined tensors: absent ones are empty.
    const auto or_empty = [&](const torch::Tensor& t) {
      return t.defined() ? t : torch::empty({0}, x.options());
    };
    return detail::SyncBatchNormFunction::apply(
        x, or_empty(weight), or_empty(bias), or_empty(running_mean), or_empty(running_var),
        options.eps(), options.momentum(), reinterpret_cast<int64_t>(group))[0];
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "simsiam::distributed::SyncBatchNorm(" << options.num_features()
           << ", eps=" << options.eps() << ", momentum=" << options.momentum()
           << ", affine=" << (options.affine() ? "true" : "false")
           << ", track_running_stats=" << (options.track_running_stats() ? "true" : "false")
           << ", world_size=" << world_size(group) << ")";
  }

  SyncBatchNormOptions options;
  /// The ranks whose statistics are combined (none: this process's batch alone); not owned.
  Communicator* group = nullptr;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(SyncBatchNorm);

/// Synchronises the batch statistics of every `SyncBatchNorm` in `module` over `group` (null:
/// back to per-process statistics), as torch.nn.SyncBatchNorm.convert_sync_batchnorm; returns
/// how many it switched. LibTorch's own BatchNorm modules cannot be switched in place, so one
/// found in `module` is an error that names it: per-rank statistics are what SyncBN exists to
/// avoid (build such layers with `SyncBatchNorm`, which is BatchNorm until switched).
inline int64_t convert_sync_batchnorm(torch::nn::Module& module, Communicator* group) {
  int64_t converted = 0;
  std::string stock;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    auto& child = *item.value();
    if (auto* sync = child.as<SyncBatchNormImpl>()) {
      sync->group = group;
      ++converted;
    } else if (child.as<torch::nn::BatchNorm1dImpl>() || child.as<torch::nn::BatchNorm2dImpl>() ||
               child.as<torch::nn::BatchNorm3dImpl>()) {
      stock +=
          (stock.empty() ? "'" : ", '") + (item.key().empty() ? child.name() : item.key()) + "'";
    }
  }
  TORCH_CHECK(group == nullptr || stock.empty(),
              "simsiam::distributed::convert_sync_batchnorm: expected simsiam::distributed::"
              "SyncBatchNorm layers, found torch::nn::BatchNorm at ",
              stock,
              "; LibTorch cannot replace a module in place, so build these layers with "
              "SyncBatchNorm (plain BatchNorm until a group is attached)");
  return converted;
}

}  // namespace simsiam::distributed
