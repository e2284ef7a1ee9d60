// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief What a loader's sources produce: `TwoViewBatch`, `BadImage`; and `LabeledImages`, an
/// in-memory classification set.
#pragma once

#include <torch/torch.h>

#include <string>

namespace simsiam {

/// One batch of two views: float [B, C, S, S] each, labels and dataset indices [B] (int64).
struct TwoViewBatch {
  torch::Tensor view1, view2, labels, indices;
};

/// Images that failed to load while building a batch (skipped, never replaced by zeros).
struct BadImage {
  std::string name, reason;
};

/// Images and labels of a classification set.
struct LabeledImages {
  torch::Tensor images;  ///< uint8 [N, C, H, W]
  torch::Tensor labels;  ///< int64 [N]
};

}  // namespace simsiam
