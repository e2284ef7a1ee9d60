// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `FolderSource`: two-view batches decoded from an `ImageFolder` (PNG via zlib, JPEG via
/// libjpeg-turbo: target `SimSiam::data`).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "simsiam/data/batch.hpp"
#include "simsiam/data/image_folder.hpp"

namespace simsiam {

/// Builds two-view batches from an `ImageFolder`: each file decoded (at a reduced DCT scale when
/// its two crops allow, see `DecodedViews`), cropped twice, then `post` (the rest of the recipe,
/// e.g. jitter, grayscale, blur, flip, normalise) applied to each view batch. Files that fail to
/// read or decode are reported and left out of the batch.
template <class Post>
struct FolderSource {
  ImageFolder folder;
  DecodedViews crop;
  Post post;

  int64_t size() const { return folder.size(); }

  TwoViewBatch operator()(const std::vector<int64_t>& indices, torch::Generator& generator,
                          std::vector<BadImage>& bad) const {
    std::vector<torch::Tensor> first, second;
    std::vector<int64_t> kept, labels;
    for (const int64_t i : indices) {
      const auto name = "'" + folder.path(i) + "'";
      try {
        auto [a, b] = crop(folder.read(i), name, generator);
        first.push_back(std::move(a));
        second.push_back(std::move(b));
        kept.push_back(i);
        labels.push_back(folder.label(i));
      } catch (const c10::Error& error) {
        bad.push_back({folder.path(i), error.what_without_backtrace()});
      }
    }
    if (kept.empty()) return {};
    auto view1 = post(torch::stack(first), generator);
    auto view2 = post(torch::stack(second), generator);
    return {std::move(view1), std::move(view2), torch::tensor(labels, torch::kLong),
            torch::tensor(kept, torch::kLong)};
  }
};

}  // namespace simsiam
