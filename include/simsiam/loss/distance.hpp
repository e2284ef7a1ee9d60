// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The per-sample distances D(p, z) that the SimSiam loss averages (lower is closer).
///
/// Both are templated-in policies of `SymmetricLoss`, so a new distance needs no virtual
/// dispatch and no change to the loss: any type with `torch::Tensor operator()(p, z) const`
/// returning one value per row will do.
#pragma once

#include <torch/torch.h>

namespace simsiam {

/// D(p, z) = -cos(p, z), the paper's default (Eq. 1) and the official code's
/// `nn.CosineSimilarity(dim=1, eps=1e-8)` negated; calls the same ATen kernel, so it matches
/// PyTorch bit for bit, including how `eps` guards near-zero norms. Minimum -1.
struct NegativeCosine {
  /// Guard for tiny norms, as in `torch::nn::CosineSimilarityOptions` (official value 1e-8).
  double eps = 1e-8;

  /// Per-row distance, shape [B].
  torch::Tensor operator()(const torch::Tensor& p, const torch::Tensor& z) const {
    namespace F = torch::nn::functional;
    return -F::cosine_similarity(p, z, F::CosineSimilarityFuncOptions().dim(1).eps(eps));
  }
};

/// D(p, z) = -softmax(z) . log_softmax(p): the cross-entropy of the softmax of p against the
/// softmax of z, along the channel dimension. The paper's "cross-entropy similarity" (Sec. 4.5,
/// Table 4: 63.2% vs 68.1% for cosine). Minimum: the entropy of softmax(z).
struct SoftmaxCrossEntropy {
  /// Per-row distance, shape [B].
  torch::Tensor operator()(const torch::Tensor& p, const torch::Tensor& z) const {
    return -(torch::softmax(z, /*dim=*/1) * torch::log_softmax(p, /*dim=*/1)).sum(/*dim=*/1);
  }
};

/// The name of 0.1, which called a distance a similarity.
using CrossEntropySimilarity [[deprecated("renamed SoftmaxCrossEntropy")]] = SoftmaxCrossEntropy;

}  // namespace simsiam
