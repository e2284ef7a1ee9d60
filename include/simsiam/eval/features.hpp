// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Features of a whole image set, in batches, with the network in eval mode: the input
/// of kNN evaluation and of a linear probe on frozen features.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "simsiam/detail/check.hpp"

namespace simsiam {

/// A network's feature function, e.g. `[&](auto& x) { return model->features(x); }`.
using FeatureFunction = std::function<torch::Tensor(const torch::Tensor&)>;
/// A per-batch input transform, e.g. uint8 -> normalised float.
using BatchTransform = std::function<torch::Tensor(const torch::Tensor&)>;

/// Options of `extract_features`.
struct FeatureOptions {
  /// Images per forward pass.
  TORCH_ARG(int64_t, batch_size) = 1024;
  /// Where the network runs; batches are moved there.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Applied to each batch before the network (after the move to `device`); empty: none.
  TORCH_ARG(BatchTransform, transform) = nullptr;
};

/// `features(transform(images[i:i+b]))` for all images, concatenated [N, D] on `device`. The
/// module is put in eval mode (BN uses its running statistics, as evaluation requires) and
/// restored to its previous mode afterwards; no gradients are recorded.
inline torch::Tensor extract_features(torch::nn::Module& module, const FeatureFunction& features,
                                      const torch::Tensor& images,
                                      const FeatureOptions& options = {}) {
  TORCH_CHECK(images.defined() && images.dim() >= 1 && images.size(0) > 0,
              "simsiam::extract_features: expected a non-empty batch of images [N, ...], got ",
              detail::shape_string(images));
  TORCH_CHECK(options.batch_size() > 0, "simsiam::extract_features: expected batch_size > 0, got ",
              options.batch_size());
  torch::NoGradGuard no_grad;
  const bool was_training = module.is_training();
  module.eval();
  std::vector<torch::Tensor> chunks;
  try {
    for (int64_t start = 0; start < images.size(0); start += options.batch_size()) {
      auto batch = images.slice(0, start, std::min(images.size(0), start + options.batch_size()))
                       .to(options.device(), /*non_blocking=*/true);
      if (options.transform()) batch = options.transform()(batch);
      chunks.push_back(features(batch));
    }
  } catch (...) {
    module.train(was_training);
    throw;
  }
  module.train(was_training);
  return torch::cat(chunks);
}

}  // namespace simsiam
