// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Monitors the community runs next to SimSiam: `CollapseMonitor` (std of l2-normalised z)
/// and `KnnMonitor` (weighted kNN accuracy of backbone features every few epochs).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "simsiam/eval/collapse.hpp"
#include "simsiam/eval/features.hpp"
#include "simsiam/eval/knn.hpp"
#include "simsiam/train/hook.hpp"

namespace simsiam {

/// Options of `CollapseMonitor`.
struct CollapseMonitorOptions {
  /// Threshold as a fraction of 1/sqrt(d), the value of outputs spread over the sphere
  /// (paper Fig. 2: collapsed outputs go to 0).
  TORCH_ARG(double, threshold_ratio) = 0.1;
  /// Consecutive steps under the threshold before it warns (or stops).
  TORCH_ARG(int64_t, patience) = 100;
  /// End the run when it fires, instead of only warning.
  TORCH_ARG(bool, stop) = false;
  /// Read the values from the device every `every` steps (global step a multiple of it) and at
  /// each epoch's end, in one copy: the steps between add no host synchronisation. The step
  /// metric is there on those steps, and a warning comes at most `every - 1` steps late.
  TORCH_ARG(int64_t, every) = 50;
};

/// Computes `functional::collapse_std(z1)` every step (metric "collapse_std" on the steps it
/// reads, its epoch mean in the epoch metrics) and fires when it stays under
/// threshold_ratio / sqrt(d) for `patience` consecutive steps: a warning on stderr, and with
/// `stop` the end of the run.
class CollapseMonitor : public Hook {
 public:
  explicit CollapseMonitor(CollapseMonitorOptions options = {}) : options(options) {
    TORCH_CHECK(options.threshold_ratio() > 0 && options.patience() > 0 && options.every() > 0,
                "simsiam::CollapseMonitor: expected threshold_ratio > 0, patience > 0 and "
                "every > 0, got ",
                options.threshold_ratio(), ", ", options.patience(), " and ", options.every());
  }

  void on_epoch_begin(TrainState& /*state*/) override {
    sum_ = 0.0;
    count_ = 0;
  }

  void on_step_end(TrainState& state) override {
    if (!state.z1.defined()) return;
    pending_.push_back(functional::collapse_std(state.z1).reshape({1}));  // stays on the device
    pending_steps_.push_back(state.global_step);
    dim_ = state.z1.size(1);
    if (state.global_step % options.every() == 0) read(state, /*step_metric=*/true);
  }

  void on_epoch_end(TrainState& state) override { read(state, /*step_metric=*/false); }

  /// Whether the std is currently under the threshold for `patience` steps or more.
  bool fired() const { return fired_; }
  const std::string& message() const { return last_message_; }

  CollapseMonitorOptions options;

 private:
  /// The pending values in one device-to-host copy, observed in order.
  void read(TrainState& state, bool step_metric) {
    if (pending_.empty()) return;
    const auto values = torch::cat(pending_).to(torch::kCPU, torch::kDouble).contiguous();
    const double* value = values.data_ptr<double>();
    for (size_t i = 0; i < pending_.size(); ++i) observe(value[i], pending_steps_[i], state);
    if (step_metric) state.step_metrics[metrics::kCollapseStd] = value[pending_.size() - 1];
    state.epoch_metrics[metrics::kCollapseStd] = sum_ / static_cast<double>(count_);
    pending_.clear();
    pending_steps_.clear();
  }

  void observe(double value, int64_t step, TrainState& state) {
    sum_ += value;
    ++count_;
    const double healthy = 1.0 / std::sqrt(static_cast<double>(dim_));
    threshold_ = options.threshold_ratio() * healthy;
    low_steps_ = value < threshold_ ? low_steps_ + 1 : 0;
    if (low_steps_ < options.patience()) {
      fired_ = false;
      return;
    }
    if (fired_) return;
    fired_ = true;
    char message[320];
    std::snprintf(message, sizeof message,
                  "collapse: the std of l2-normalised z has stayed under %.2g for %lld steps "
                  "(now %.3g; outputs spread over the sphere give 1/sqrt(%lld) = %.3g) at epoch "
                  "%lld, step %lld",
                  threshold_, static_cast<long long>(low_steps_), value,
                  static_cast<long long>(dim_), healthy, static_cast<long long>(state.epoch + 1),
                  static_cast<long long>(step));
    last_message_ = message;
    std::fprintf(stderr, "\nwarning: %s\n", message);
    if (options.stop()) {
      state.stop = true;
      state.stop_reason = last_message_;
    }
  }

  double sum_ = 0.0, threshold_ = 0.0;
  int64_t count_ = 0, low_steps_ = 0, dim_ = 1;
  bool fired_ = false;
  std::string last_message_;
  std::vector<torch::Tensor> pending_;
  std::vector<int64_t> pending_steps_;
};

/// Options of `KnnMonitor`.
struct KnnMonitorOptions {
  /// Evaluate after every `every` epochs, and after the last.
  TORCH_ARG(int64_t, every) = 1;
  TORCH_ARG(KnnOptions, knn) = {};
  /// Feature extraction batch and input transform (e.g. uint8 -> normalised float).
  TORCH_ARG(int64_t, batch_size) = 1024;
  TORCH_ARG(BatchTransform, transform) = nullptr;
  /// With several ranks: the images given are already this rank's share (each rank holds
  /// only its part of a large bank), so they are embedded as they are; none may be empty.
  TORCH_ARG(bool, presharded) = false;
};

/// The weighted kNN top-1 of backbone features (bank: labelled training images; queries:
/// held-out images) after every few epochs, in the epoch metrics as "knn_top1" (in [0, 1]).
/// In a data-parallel run it is a collective: add it on every rank, with the same images.
class KnnMonitor : public Hook {
 public:
  KnnMonitor(torch::Tensor bank_images, torch::Tensor bank_labels, torch::Tensor query_images,
             torch::Tensor query_labels, int64_t num_classes, KnnMonitorOptions options = {})
      : options(std::move(options)),
        bank_images_(std::move(bank_images)),
        bank_labels_(std::move(bank_labels)),
        query_images_(std::move(query_images)),
        query_labels_(std::move(query_labels)),
        num_classes_(num_classes) {
    TORCH_CHECK(this->options.every() > 0, "simsiam::KnnMonitor: expected every > 0, got ",
                this->options.every());
    TORCH_CHECK(bank_images_.defined() && bank_labels_.defined() &&
                    bank_images_.size(0) == bank_labels_.size(0) && query_images_.defined() &&
                    query_labels_.defined() && query_images_.size(0) == query_labels_.size(0),
                "simsiam::KnnMonitor: expected one label per bank image and per query image, got "
                "bank images ",
                detail::shape_string(bank_images_), ", bank labels ",
                detail::shape_string(bank_labels_), ", query images ",
                detail::shape_string(query_images_), ", query labels ",
                detail::shape_string(query_labels_));
  }

  void on_epoch_end(TrainState& state) override {
    if ((state.epoch + 1) % options.every() != 0 && state.epoch + 1 != state.epochs) return;
    TORCH_CHECK(state.model != nullptr && state.features,
                "simsiam::KnnMonitor: the trainer gave no model to evaluate");
    last_ = evaluate(*state.model, state.features, state.device, state.communicator);
    state.epoch_metrics[metrics::kKnnTop1] = last_;
  }

  /// kNN top-1 in [0, 1] of the given network now. With several ranks each one embeds every
  /// world_size-th bank and query image (starting at its rank) and the ranks score the whole
  /// query set together (`knn_accuracy` with a communicator): all ranks get the same value.
  double evaluate(torch::nn::Module& module, const FeatureFunction& features, torch::Device device,
                  distributed::Communicator* communicator = nullptr) const {
    const auto feature_options = FeatureOptions()
                                     .batch_size(options.batch_size())
                                     .device(device)
                                     .transform(options.transform());
    const int64_t world = distributed::world_size(communicator);
    // The same check on every rank, before any collective: no rank may hold an empty shard.
    const int64_t needed = options.presharded() ? 1 : world;
    TORCH_CHECK(bank_images_.size(0) >= needed && query_images_.size(0) >= needed,
                "simsiam::KnnMonitor: expected at least one bank and one query image per rank (",
                world, " ranks), got ", bank_images_.size(0), " bank and ", query_images_.size(0),
                " query images");
    const auto shard = [&](const torch::Tensor& rows) {
      if (world == 1 || options.presharded()) return rows;
      return rows.index_select(
          0, torch::arange(distributed::rank(communicator), rows.size(0), world,
                           torch::TensorOptions().dtype(torch::kLong).device(rows.device())));
    };
    const auto bank = extract_features(module, features, shard(bank_images_), feature_options);
    const auto queries = extract_features(module, features, shard(query_images_), feature_options);
    return knn_accuracy(communicator, queries, shard(query_labels_), bank, shard(bank_labels_),
                        num_classes_, options.knn());
  }

  /// The last accuracy measured, or -1.
  double last() const { return last_; }

  KnnMonitorOptions options;

 private:
  torch::Tensor bank_images_, bank_labels_, query_images_, query_labels_;
  int64_t num_classes_;
  double last_ = -1.0;
};

}  // namespace simsiam
