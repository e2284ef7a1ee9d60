// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `TensorSource`: two-view batches from in-memory images (CIFAR, MNIST); needs no codec.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "simsiam/data/batch.hpp"

namespace simsiam {

/// Builds two-view batches from in-memory uint8 images [N, C, H, W] (CIFAR, MNIST) with an
/// augmentation pipeline (e.g. `augment::simsiam_cifar()`).
template <class Pipeline>
struct TensorSource {
  LabeledImages data;
  Pipeline pipeline;

  int64_t size() const { return data.images.size(0); }

  TwoViewBatch operator()(const std::vector<int64_t>& indices, torch::Generator& generator,
                          std::vector<BadImage>& /*bad*/) const {
    const auto index = torch::tensor(indices, torch::kLong);
    const auto images = data.images.index_select(0, index);
    auto first = pipeline(images, generator);  // the worker's thread: no chunking needed
    auto second = pipeline(images, generator);
    return {std::move(first), std::move(second), data.labels.index_select(0, index), index};
  }
};

}  // namespace simsiam
