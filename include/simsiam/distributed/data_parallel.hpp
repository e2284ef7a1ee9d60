// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Data parallelism over a `Communicator`: parameters and buffers broadcast from rank 0,
/// gradients averaged in flattened buckets whose all-reduce starts during backward, as soon as
/// the bucket's gradients are ready (torch.nn.parallel.DistributedDataParallel's reducer).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "simsiam/distributed/communicator.hpp"

namespace simsiam::distributed {

/// Options of `DataParallel`.
struct DataParallelOptions {
  /// Bytes per all-reduce bucket (DDP's default 25 MiB).
  TORCH_ARG(int64_t, bucket_bytes) = 25 * 1024 * 1024;
  /// Start each bucket's all-reduce from backward, as soon as its gradients are ready, so
  /// communication overlaps the rest of backward; off: everything after backward.
  TORCH_ARG(bool, overlap) = true;
  /// Exchange which parameters got a gradient, and leave those that got none on any rank
  /// without one (as a single process would, so weight decay and momentum leave them alone).
  /// Costs one more small all-reduce per step; off (DDP's default), a parameter without a
  /// gradient on a rank counts as zeros there and every rank gets the average.
  TORCH_ARG(bool, find_unused_parameters) = false;
};

/// Keeps the replicas of one module identical across the ranks of a group: construct it after
/// freezing what stays frozen, call `broadcast_state()` once, and `synchronize_gradients()`
/// after every backward, before the optimiser step.
///
/// Parameters that do not require grad at construction are skipped. Buckets hold parameters in
/// reverse registration order (backward computes the last layers first) and start strictly in
/// bucket order, so every rank issues the same collectives in the same order; as with DDP, the
/// graph must be the same on every rank. Gradients are divided by the world size before the sum
/// (no float16 overflow from the sum itself).
class DataParallel {
 public:
  DataParallel(torch::nn::Module& module, Communicator& group, DataParallelOptions options = {})
      : module_(module), group_(group), options_(options) {
    TORCH_CHECK(options_.bucket_bytes() > 0,
                "simsiam::distributed::DataParallel: expected bucket_bytes > 0, got ",
                options_.bucket_bytes());
    const auto named = module_.named_parameters();
    for (auto it = named.end(); it != named.begin();) {
      --it;
      if (!it->value().requires_grad()) continue;
      params_.push_back(it->value());
      names_.push_back(it->key());
    }
    build_buckets();
    if (options_.overlap() && group_.world_size() > 1) {
      for (size_t i = 0; i < params_.size(); ++i) {
        hooks_.push_back(params_[i].register_hook(
            [this, i](const torch::Tensor& grad) { on_gradient(i, grad); }));
      }
    }
  }
  ~DataParallel() {
    for (size_t i = 0; i < hooks_.size(); ++i) params_[i].remove_hook(hooks_[i]);
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// Rank 0's parameters and buffers to every rank (DDP does this at construction).
  void broadcast_state() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = module_.parameters();
    for (const auto& b : module_.buffers()) tensors.push_back(b);
    for (auto& bucket : cut_buckets(tensors)) group_.broadcast(bucket, 0);
  }
  /// Rank 0's buffers (BatchNorm running statistics) to every rank.
  void broadcast_buffers() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = module_.buffers();
    for (auto& bucket : cut_buckets(tensors)) group_.broadcast(bucket, 0);
  }

  /// With `sync` false, backward passes only accumulate local gradients (DDP's no_sync, for
  /// gradient accumulation); the next synchronised backward averages the accumulated sum.
  void require_sync(bool sync) { sync_ = sync; }

  /// Waits for the all-reduces started during backward (first starting, in order, those whose
  /// gradients never arrived; without `overlap`, all of them) and leaves the averaged gradients
  /// in `.grad()`.
  void synchronize_gradients() {
    if (!sync_ || group_.world_size() == 1) return;
    torch::NoGradGuard no_grad;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t b = next_launch_; b < buckets_.size(); ++b) {
        for (const size_t i : buckets_[b].params) {
          if (!ready_[i]) fill_slot(i, torch::Tensor());
        }
        buckets_[b].ready = static_cast<int64_t>(buckets_[b].params.size());
      }
      launch_ready_buckets();
    }
    std::vector<char> used(used_.begin(), used_.end());
    if (options_.find_unused_parameters()) {
      std::vector<torch::Tensor> mask{
          torch::tensor(std::vector<double>(used_.begin(), used_.end()), torch::kDouble)};
      group_.all_reduce_sum(mask);
      const auto any = mask[0].accessor<double, 1>();
      for (size_t i = 0; i < used.size(); ++i) used[i] = any[static_cast<int64_t>(i)] > 0;
    }
    for (auto& bucket : buckets_) {
      bucket.work.wait();
      for (size_t j = 0; j < bucket.params.size(); ++j) {
        const size_t i = bucket.params[j];
        auto& p = params_[i];
        if (!used[i] && options_.find_unused_parameters()) continue;
        const auto slot =
            bucket.flat.slice(0, bucket.offsets[j], bucket.offsets[j] + p.numel()).view_as(p);
        if (p.grad().defined()) {
          p.mutable_grad().copy_(slot);
        } else {
          p.mutable_grad() = slot.clone();
        }
      }
      bucket.ready = 0;
    }
    std::fill(ready_.begin(), ready_.end(), 0);
    std::fill(used_.begin(), used_.end(), 0);
    next_launch_ = 0;
  }

  /// The number of gradient buckets.
  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // of each parameter in `flat`
    int64_t numel = 0;
    torch::Tensor flat;
    int64_t ready = 0;
    PendingWork work;
  };

  void build_buckets() {
    int64_t bytes = 0;
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& p = params_[i];
      const int64_t size = static_cast<int64_t>(p.numel() * p.element_size());
      if (buckets_.empty() || bytes + size > options_.bucket_bytes() ||
          p.scalar_type() != params_[buckets_.back().params[0]].scalar_type() ||
          p.device() != params_[buckets_.back().params[0]].device()) {
        buckets_.emplace_back();
        bytes = 0;
      }
      auto& bucket = buckets_.back();
      bucket.params.push_back(i);
      bucket.offsets.push_back(bucket.numel);
      bucket.numel += p.numel();
      bytes += size;
    }
    bucket_of_.resize(params_.size());
    slot_of_.resize(params_.size());
    for (size_t b = 0; b < buckets_.size(); ++b) {
      for (size_t j = 0; j < buckets_[b].params.size(); ++j) {
        bucket_of_[buckets_[b].params[j]] = b;
        slot_of_[buckets_[b].params[j]] = j;
      }
    }
    ready_.assign(params_.size(), 0);
    used_.assign(params_.size(), 0);
  }

  /// Called by autograd with parameter i's gradient of this backward, before it is added to
  /// `.grad()`: the bucket slot gets gradient + what `.grad()` already holds.
  void on_gradient(size_t i, const torch::Tensor& grad) {
    if (!sync_) return;
    torch::NoGradGuard no_grad;
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(!ready_[i], "simsiam::distributed::DataParallel: the gradient of '", names_[i],
                "' arrived twice before synchronize_gradients(); call it after every backward, "
                "or require_sync(false) for the backward passes that only accumulate");
    TORCH_CHECK(!grad.is_sparse(),
                "simsiam::distributed::DataParallel: expected a dense gradient "
                "for '",
                names_[i], "', got a sparse one");
    fill_slot(i, grad);
    auto& bucket = buckets_[bucket_of_[i]];
    if (++bucket.ready == static_cast<int64_t>(bucket.params.size())) launch_ready_buckets();
  }

  /// Bucket slot of parameter i = (`grad` (may be undefined) + the parameter's current
  /// `.grad()`) / world size, so that the all-reduce's sum is the average.
  void fill_slot(size_t i, const torch::Tensor& grad) {
    auto& bucket = buckets_[bucket_of_[i]];
    const auto& p = params_[i];
    if (!bucket.flat.defined()) bucket.flat = torch::empty({bucket.numel}, p.options());
    const int64_t offset = bucket.offsets[slot_of_[i]];
    auto slot = bucket.flat.slice(0, offset, offset + p.numel());
    const auto& existing = p.grad();
    const double scale = 1.0 / static_cast<double>(group_.world_size());
    if (grad.defined()) {
      slot.copy_(grad.reshape({-1})).mul_(scale);
      if (existing.defined()) slot.add_(existing.reshape({-1}), scale);
    } else if (existing.defined()) {
      slot.copy_(existing.reshape({-1})).mul_(scale);
    } else {
      slot.zero_();
    }
    used_[i] = grad.defined() || existing.defined();
    ready_[i] = 1;
  }

  /// Starts the all-reduce of each complete bucket, in bucket order.
  void launch_ready_buckets() {
    while (next_launch_ < buckets_.size() &&
           buckets_[next_launch_].ready ==
               static_cast<int64_t>(buckets_[next_launch_].params.size())) {
      auto& bucket = buckets_[next_launch_++];
      bucket.work = group_.all_reduce_sum_async(bucket.flat);
    }
  }

  /// Cuts `tensors` into runs of one dtype and device of at most bucket_bytes.
  std::vector<std::vector<torch::Tensor>> cut_buckets(std::vector<torch::Tensor>& tensors) const {
    std::vector<std::vector<torch::Tensor>> buckets;
    int64_t bytes = 0;
    for (auto& t : tensors) {
      const int64_t size = static_cast<int64_t>(t.numel() * t.element_size());
      if (buckets.empty() || bytes + size > options_.bucket_bytes() ||
          t.scalar_type() != buckets.back()[0].scalar_type() ||
          t.device() != buckets.back()[0].device()) {
        buckets.emplace_back();
        bytes = 0;
      }
      buckets.back().push_back(t);
      bytes += size;
    }
    return buckets;
  }

  torch::nn::Module& module_;
  Communicator& group_;
  DataParallelOptions options_;
  std::vector<torch::Tensor> params_;  // requiring grad, in reverse registration order
  std::vector<std::string> names_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<char> ready_, used_;
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0;
  bool sync_ = true;
  std::mutex mutex_;
};

}  // namespace simsiam::distributed
