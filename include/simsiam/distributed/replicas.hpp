// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Replicas`: the ranks of a run as a training loop sees them. Without a communicator (one
/// process) every call is a no-op, so single-process code reads as if the ranks did not exist.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "simsiam/distributed/communicator.hpp"
#include "simsiam/distributed/data_parallel.hpp"
#include "simsiam/distributed/sync_batch_norm.hpp"

namespace simsiam::distributed {

/// What one rank brings to the exchange before a step.
struct StepReport {
  bool has_batch = true;  ///< its loader gave a batch
  bool stop = false;      ///< it asked to stop
  /// The first global step whose loss it read as not finite (0: none), and that loss.
  int64_t bad_step = 0;
  double bad_value = 0.0;
  /// A number summed over the ranks (the trainer's epoch loss, at the epoch's end).
  double sum = 0.0;
};

/// What the ranks agreed on before a step.
struct StepAgreement {
  int64_t ranks_with_batch = 1;  ///< ranks whose loader gave a batch
  bool stop = false;             ///< some rank asked to stop
  /// The rank that read the earliest non-finite loss (the lowest on a tie), or -1; its step
  /// and value.
  int64_t bad_rank = -1;
  int64_t bad_step = 0;
  double bad_value = 0.0;
  double sum = 0.0;  ///< of the ranks' `StepReport::sum`
};

/// A model attached to the ranks (see `Replicas::attach`): while it lives, rank 0's state has
/// been copied to every rank, its BatchNorms are synchronised (with `sync_batch_norm`) and
/// `synchronize_gradients` averages gradients. Destroying it makes the model per-process again.
class Attachment {
 public:
  Attachment() = default;  // one process: nothing to do
  Attachment(torch::nn::Module& model, Communicator& ranks, bool sync_batch_norm,
             const DataParallelOptions& options)
      : model_(&model), sync_batch_norm_(sync_batch_norm) {
    if (sync_batch_norm_) convert_sync_batchnorm(model, &ranks);
    parallel_ = std::make_unique<DataParallel>(model, ranks, options);
    parallel_->broadcast_state();
  }
  ~Attachment() {
    parallel_.reset();
    if (sync_batch_norm_) convert_sync_batchnorm(*model_, nullptr);
  }
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;

  /// Waits for (or runs) the gradient all-reduces of the last backward.
  void synchronize_gradients() {
    if (parallel_) parallel_->synchronize_gradients();
  }
  /// Per-process BatchNorm lets the replicas' running statistics drift apart: rank 0's go to all
  /// (DDP's broadcast_buffers). Nothing to do when they are synchronised.
  void align_buffers() {
    if (parallel_ && !sync_batch_norm_) parallel_->broadcast_buffers();
  }

 private:
  torch::nn::Module* model_ = nullptr;
  bool sync_batch_norm_ = false;
  std::unique_ptr<DataParallel> parallel_;
};

/// The ranks of a run, or one process (a null communicator).
class Replicas {
 public:
  explicit Replicas(Communicator* communicator = nullptr) : communicator_(communicator) {}

  Communicator* communicator() const { return communicator_; }
  int64_t size() const { return world_size(communicator_); }
  int64_t rank() const { return distributed::rank(communicator_); }
  /// Rank 0, the one that writes files and prints.
  bool is_main() const { return rank() == 0; }

  /// The mean of `value` over the ranks.
  double mean(double value) const { return all_reduce_mean(communicator_, value); }
  /// Whether `flag` holds on some rank.
  bool any(bool flag) const { return mean(flag ? 1.0 : 0.0) > 0; }
  /// One exchange before a step: whether each rank has a batch (a loader that skips bad images
  /// may run short) and whether some rank asked to stop. Every rank then takes the same branch,
  /// and the collectives stay paired.
  StepAgreement agree(bool has_batch, bool stop) const {
    StepReport report;
    report.has_batch = has_batch;
    report.stop = stop;
    return agree(report);
  }
  /// The same exchange, also carrying each rank's non-finite loss, if it read one, and a sum:
  /// still one collective (a rank's step and value go in its own slots, the others add zeros).
  StepAgreement agree(const StepReport& report) const {
    StepAgreement agreed;
    agreed.ranks_with_batch = report.has_batch ? 1 : 0;
    agreed.stop = report.stop;
    agreed.sum = report.sum;
    if (size() == 1) {
      if (report.bad_step > 0) {
        agreed.bad_rank = 0;
        agreed.bad_step = report.bad_step;
        agreed.bad_value = report.bad_value;
      }
      return agreed;
    }
    constexpr int64_t kFixed = 3;  // has_batch, stop, sum; then (bad_step, bad_value) per rank
    std::vector<torch::Tensor> values{torch::zeros({kFixed + 2 * size()}, torch::kDouble)};
    auto* v = values[0].data_ptr<double>();
    v[0] = report.has_batch ? 1.0 : 0.0;
    v[1] = report.stop ? 1.0 : 0.0;
    v[2] = report.sum;
    if (report.bad_step > 0) {
      v[kFixed + 2 * rank()] = static_cast<double>(report.bad_step);
      v[kFixed + 2 * rank() + 1] = report.bad_value;  // nan + 0 and inf + 0 keep their value
    }
    communicator_->all_reduce_sum(values);
    v = values[0].data_ptr<double>();
    agreed.ranks_with_batch = static_cast<int64_t>(v[0]);
    agreed.stop = v[1] > 0;
    agreed.sum = v[2];
    for (int64_t r = 0; r < size(); ++r) {
      const auto step = static_cast<int64_t>(v[kFixed + 2 * r]);
      if (step > 0 && (agreed.bad_rank < 0 || step < agreed.bad_step)) {
        agreed.bad_rank = r;
        agreed.bad_step = step;
        agreed.bad_value = v[kFixed + 2 * r + 1];
      }
    }
    return agreed;
  }
  /// `value` of every rank, in rank order.
  std::vector<int64_t> gather(int64_t value) const {
    const auto all = gather_rows(communicator_, torch::full({1}, value, torch::kLong));
    return {all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel()};
  }
  /// `model` attached to the ranks until the result is destroyed (nothing for one process).
  std::unique_ptr<Attachment> attach(torch::nn::Module& model, bool sync_batch_norm,
                                     const DataParallelOptions& options) const {
    if (size() == 1) return std::make_unique<Attachment>();
    return std::make_unique<Attachment>(model, *communicator_, sync_batch_norm, options);
  }

 private:
  Communicator* communicator_;
};

}  // namespace simsiam::distributed
