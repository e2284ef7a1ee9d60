// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `shard_indices`: the indices of one rank in one epoch, as PyTorch's DistributedSampler.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace simsiam {

/// PyTorch's DistributedSampler: the indices one rank sees in an epoch. With `shuffle`, a
/// permutation of [0, n) from a generator seeded with seed + epoch (torch.randperm, the same
/// permutation as Python for the same seed); without, 0..n-1. Without `drop_tail` the list is
/// padded by repeating its start to a multiple of `world_size`; with it, the remainder is
/// dropped. Rank r takes every world_size-th index from r.
inline std::vector<int64_t> shard_indices(int64_t n, int64_t rank, int64_t world_size,
                                          uint64_t seed, int64_t epoch, bool shuffle = true,
                                          bool drop_tail = false) {
  TORCH_CHECK(world_size > 0 && rank >= 0 && rank < world_size,
              "simsiam::shard_indices: expected 0 <= rank < world_size, got rank ", rank,
              " and world_size ", world_size);
  TORCH_CHECK(n > 0, "simsiam::shard_indices: expected a non-empty dataset");
  std::vector<int64_t> order(static_cast<size_t>(n));
  if (shuffle) {
    auto generator = at::detail::createCPUGenerator(seed + static_cast<uint64_t>(epoch));
    const auto perm = torch::randperm(n, generator, torch::kLong);
    std::copy(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n, order.begin());
  } else {
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  }
  const int64_t per_rank = drop_tail ? n / world_size : (n + world_size - 1) / world_size;
  const int64_t total = per_rank * world_size;
  for (int64_t i = n; i < total; ++i) order.push_back(order[static_cast<size_t>(i - n)]);
  order.resize(static_cast<size_t>(total));
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank));
  for (int64_t i = rank; i < total; i += world_size) mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

}  // namespace simsiam
