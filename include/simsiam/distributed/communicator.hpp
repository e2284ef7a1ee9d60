// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Communicator`: the collectives SimSiam's training pieces need (sum, broadcast,
/// barrier, an asynchronous sum), as an interface. `ProcessGroup` implements it over c10d;
/// the core (SyncBatchNorm in the backbones, the trainer, kNN) sees only this header, so it
/// needs LibTorch alone.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "simsiam/detail/check.hpp"

namespace simsiam::distributed {

/// A collective started in the background; `wait()` blocks until its result is in place.
class PendingWork {
 public:
  PendingWork() = default;
  explicit PendingWork(std::function<void()> wait) : wait_(std::move(wait)) {}
  /// Blocks until done (once; later calls return at once).
  void wait() {
    if (wait_) std::exchange(wait_, nullptr)();
  }

 private:
  std::function<void()> wait_;
};

/// The processes of one run. Every rank must call the collectives in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;
  /// Sums `tensors` in place over all ranks.
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  /// Starts summing one contiguous tensor in place over all ranks; the sum is there after
  /// `wait()`.
  virtual PendingWork all_reduce_sum_async(torch::Tensor tensor) = 0;
  /// Rank `root`'s `tensors` copied to every rank, in place.
  virtual void broadcast(std::vector<torch::Tensor>& tensors, int64_t root) = 0;
  /// Waits until every rank reached this point.
  virtual void barrier() = 0;
};

/// The number of ranks, 1 without a communicator.
inline int64_t world_size(const Communicator* communicator) {
  return communicator == nullptr ? 1 : communicator->world_size();
}
/// This process's rank, 0 without a communicator.
inline int64_t rank(const Communicator* communicator) {
  return communicator == nullptr ? 0 : communicator->rank();
}

/// The mean of `value` over all ranks (`value` itself on one rank).
inline double all_reduce_mean(Communicator* communicator, double value) {
  if (world_size(communicator) == 1) return value;
  std::vector<torch::Tensor> sum{torch::full({1}, value, torch::kDouble)};
  communicator->all_reduce_sum(sum);
  return sum[0].item<double>() / static_cast<double>(communicator->world_size());
}

/// The rows of every rank's `rows`, concatenated in rank order (an all-gather of tensors whose
/// first dimension may differ between ranks, as a sum of zero-padded slots). Shape and dtype
/// beyond the first dimension must agree.
inline torch::Tensor gather_rows(Communicator* communicator, const torch::Tensor& rows) {
  TORCH_CHECK(rows.defined() && rows.dim() >= 1,
              "simsiam::distributed::gather_rows: expected a tensor with a first dimension, got ",
              simsiam::detail::shape_string(rows));
  const int64_t world = world_size(communicator);
  if (world == 1) return rows;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> counts{
      torch::zeros({world}, torch::TensorOptions().dtype(torch::kLong).device(rows.device()))};
  counts[0][communicator->rank()] = rows.size(0);
  communicator->all_reduce_sum(counts);
  const auto count = counts[0].cpu();
  const auto* per_rank = count.data_ptr<int64_t>();
  int64_t offset = 0, total = 0;
  for (int64_t r = 0; r < world; ++r) {
    if (r < communicator->rank()) offset += per_rank[r];
    total += per_rank[r];
  }
  auto shape = rows.sizes().vec();
  shape[0] = total;
  // Integer rows are summed exactly; floating rows add zeros, which changes no bit.
  std::vector<torch::Tensor> gathered{torch::zeros(shape, rows.options())};
  gathered[0].slice(0, offset, offset + rows.size(0)).copy_(rows);
  communicator->all_reduce_sum(gathered);
  return gathered[0];
}

}  // namespace simsiam::distributed
