// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The collapse statistic: per-channel std of l2-normalised outputs over the batch.
///
/// SimSiam's failure mode is a constant output (paper Sec. 4.1, Fig. 2): the std of
/// z / ||z|| over the batch then drops to 0, while for outputs spread over the unit sphere it
/// is about 1/sqrt(d). The loss alone cannot tell the two apart early (both decrease).
#pragma once

#include <torch/torch.h>

#include "simsiam/detail/check.hpp"

namespace simsiam::functional {

/// Mean over channels of the unbiased std over the batch of l2-normalised rows of z [B, d].
/// ~1/sqrt(d) when healthy, -> 0 when collapsed (paper Fig. 2, middle).
inline torch::Tensor collapse_std(const torch::Tensor& z) {
  TORCH_CHECK(z.defined() && z.dim() == 2 && z.size(0) > 1 && z.size(1) > 0,
              "simsiam::collapse_std: expected z of shape [B, d] with B > 1, got ",
              detail::shape_string(z));
  torch::NoGradGuard no_grad;
  namespace F = torch::nn::functional;
  // At least float32: a std of ~0.02 over a batch is below what float16 sums resolve well.
  const auto zf = z.to(torch::promote_types(z.scalar_type(), torch::kFloat));
  // Two passes written out rather than Tensor::std over dim 0: the same value, and several
  // times faster on CPU, where the trainer computes it every step (docs/performance.md).
  const auto normalized = F::normalize(zf, F::NormalizeFuncOptions().dim(1));
  const auto centred = normalized - normalized.mean(0, /*keepdim=*/true);
  return (centred.square().sum(0) / static_cast<double>(z.size(0) - 1)).sqrt().mean();
}

}  // namespace simsiam::functional
