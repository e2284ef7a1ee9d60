/// @file
/// @brief Data parallelism over a `ProcessGroup`: parameters and buffers broadcast from rank 0,
/// gradients averaged after backward in flattened buckets (frozen parameters skipped).
/// Synchronous: the all-reduce runs after backward, not overlapped with it yet.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "simsiam/distributed/process_group.hpp"

namespace simsiam::distributed {

/// Options of `DataParallel`.
struct DataParallelOptions {
  /// Bytes per all-reduce bucket (DDP's default 25 MiB).
  TORCH_ARG(int64_t, bucket_bytes) = 25 * 1024 * 1024;
};

/// Keeps the replicas of one module identical across the ranks of a group.
class DataParallel {
 public:
  DataParallel(torch::nn::Module& module, ProcessGroup& group, DataParallelOptions options = {})
      : module_(module), group_(group), options_(options) {
    TORCH_CHECK(options_.bucket_bytes() > 0,
                "simsiam::distributed::DataParallel: expected bucket_bytes > 0, got ",
                options_.bucket_bytes());
  }

  /// Rank 0's parameters and buffers to every rank (DDP does this at construction).
  void broadcast_state() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = module_.parameters();
    for (const auto& b : module_.buffers()) tensors.push_back(b);
    for_each_bucket(tensors, [&](std::vector<torch::Tensor>& bucket) { group_.broadcast(bucket); });
  }

  /// Gradients averaged over the ranks, in place: call after backward, before the optimiser
  /// step. Parameters that do not require grad, or have no gradient, are skipped.
  void average_gradients() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    for (auto& p : module_.parameters()) {
      if (p.requires_grad() && p.grad().defined()) grads.push_back(p.mutable_grad());
    }
    const double scale = 1.0 / static_cast<double>(group_.world_size());
    for_each_bucket(grads, [&](std::vector<torch::Tensor>& bucket) {
      group_.all_reduce_sum(bucket);
      for (auto& g : bucket) g.mul_(scale);
    });
  }

 private:
  /// Cuts `tensors` into runs of one dtype and device of at most bucket_bytes.
  template <class Fn>
  void for_each_bucket(std::vector<torch::Tensor>& tensors, Fn&& fn) {
    std::vector<torch::Tensor> bucket;
    int64_t bytes = 0;
    auto flush = [&] {
      if (!bucket.empty()) fn(bucket);
      bucket.clear();
      bytes = 0;
    };
    for (auto& t : tensors) {
      const int64_t size = static_cast<int64_t>(t.numel() * t.element_size());
      if (!bucket.empty() &&
          (bytes + size > options_.bucket_bytes() || t.scalar_type() != bucket[0].scalar_type() ||
           t.device() != bucket[0].device())) {
        flush();
      }
      bucket.push_back(t);
      bytes += size;
    }
    flush();
  }

  torch::nn::Module& module_;
  ProcessGroup& group_;
  DataParallelOptions options_;
};

}  // namespace simsiam::distributed
